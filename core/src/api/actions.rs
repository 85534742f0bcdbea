//! The actions: `POST /api/v1/runs/{id}/cancel` and
//! `POST /api/v1/metrics/{code}/trigger`. Each needs `Authorization: Bearer
//! <API_TOKEN>`; without `API_TOKEN` on the server they are off (403).
//! Every action is logged with what it changed.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;

use super::dto::{self, Canceled, Triggered, UsedUpdateRef};
use super::error::{ApiError, ApiResult};
use super::ApiState;
use crate::app::runs_admin::{self, CancelError};
use crate::app::trigger::{self, TriggerError};
use crate::domain::ids::RunId;
use crate::domain::run_state::RunStatus;

fn authorize(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &s.token else {
        return Err(ApiError::forbidden(
            "actions are off: the server has no API_TOKEN; set it to enable cancel and trigger",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("an action needs the header Authorization: Bearer <API_TOKEN>")
        })?;
    if !constant_time_eq::constant_time_eq(given.trim().as_bytes(), token.as_bytes()) {
        return Err(ApiError::unauthorized(
            "the bearer token is not the server's API_TOKEN",
        ));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/cancel", tag = "actions",
    params(("id" = String, Path, description = "run id")),
    security(("bearer" = [])),
    responses((status = 200, body = Canceled), (status = 401, body = dto::ErrorBody),
              (status = 403, body = dto::ErrorBody), (status = 404, body = dto::ErrorBody),
              (status = 409, body = dto::ErrorBody)))]
pub async fn cancel(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Canceled> {
    authorize(&s, &headers)?;
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
    headers: HeaderMap,
    Path(code): Path<String>,
) -> ApiResult<Triggered> {
    authorize(&s, &headers)?;
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
