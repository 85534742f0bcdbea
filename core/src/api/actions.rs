//! The actions: `POST /api/v1/runs/{id}/cancel` and
//! `POST /api/v1/metrics/{code}/trigger`. Each needs `Authorization: Bearer
//! <API_TOKEN>` (checked by [`super::auth`] before the handler runs);
//! without `API_TOKEN` on the server they are off (403). Every action is
//! logged with what it changed.

use axum::extract::State;
use axum::Json;

use super::dto::{self, Canceled, Triggered, UsedUpdateRef};
use super::error::{ApiError, ApiResult};
use super::extract::PathParam;
use super::ApiState;
use crate::app::runs_admin::{self, CancelError};
use crate::app::trigger::{self, TriggerError};
use crate::domain::ids::RunId;
use crate::domain::run_state::RunStatus;

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "actions",
    params(("id" = String, Path, description = "run id")),
    security(("bearer" = [])),
    responses((status = 200, body = Canceled), (status = 401, body = dto::ErrorBody),
              (status = 403, body = dto::ErrorBody), (status = 404, body = dto::ErrorBody),
              (status = 409, body = dto::ErrorBody)))]
pub async fn cancel(State(s): State<ApiState>, PathParam(id): PathParam) -> ApiResult<Canceled> {
    let run_id = RunId::from(id.as_str());
    match runs_admin::cancel(&s.pool, &run_id, "canceled through the operator API").await {
        Ok(previous) => {
            tracing::info!(action = "cancel", run_id = %run_id, from = %previous, to = %RunStatus::Canceled, "run canceled through the API");
            Ok(Json(Canceled {
                run_id: id,
                previous_status: previous.as_str().into(),
                status: RunStatus::Canceled.as_str().into(),
            }))
        }
        Err(CancelError::NotFound(_)) => Err(ApiError::not_found(format!("no run with id {id:?}"))),
        Err(e @ CancelError::NotCancelable { .. }) => Err(ApiError::conflict(e.to_string())),
        Err(CancelError::Store(e)) => Err(e.into()),
    }
}

#[utoipa::path(post, path = "/api/v1/metrics/{code}/trigger", tag = "actions",
    params(("code" = String, Path, description = "metric code")),
    security(("bearer" = [])),
    responses((status = 200, body = Triggered), (status = 401, body = dto::ErrorBody),
              (status = 403, body = dto::ErrorBody), (status = 404, body = dto::ErrorBody),
              (status = 409, body = dto::ErrorBody), (status = 503, body = dto::ErrorBody)))]
pub async fn trigger(
    State(s): State<ApiState>,
    PathParam(code): PathParam,
) -> ApiResult<Triggered> {
    let Some(ctx) = &s.ctx else {
        return Err(ApiError::unavailable(
            "trigger needs OUTPUT_BUCKET (and OUTPUT_PREFIX / OUTPUT_PATH_STYLE) on the server to write the run request",
        ));
    };
    match trigger::trigger(ctx, &code).await {
        Ok(t) => {
            tracing::info!(action = "trigger", run_id = %t.run_id, metric_code = %t.metric_code, to = %RunStatus::Queued, "run triggered through the API");
            Ok(Json(Triggered {
                run_id: t.run_id.to_string(),
                metric_code: t.metric_code,
                status: RunStatus::Queued.as_str().into(),
                updates: t
                    .updates
                    .into_iter()
                    .map(|(d, u)| UsedUpdateRef {
                        dataset_id: d.to_string(),
                        update_id: u.to_string(),
                    })
                    .collect(),
            }))
        }
        Err(TriggerError::UnknownMetric(_)) => {
            Err(ApiError::not_found(format!("no metric with code {code:?}")))
        }
        Err(e @ (TriggerError::Disabled(_) | TriggerError::NotReady { .. })) => {
            Err(ApiError::conflict(e.to_string()))
        }
        Err(TriggerError::Store(e)) => Err(e.into()),
    }
}
