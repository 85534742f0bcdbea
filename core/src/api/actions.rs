//! The actions: `POST /api/v1/runs/{id}/cancel`,
//! `POST /api/v1/metrics/{code}/trigger`, `…/hold` and `…/resume`. Each needs `Authorization: Bearer
//! <API_TOKEN>` (checked by [`super::auth`] before the handler runs);
//! without `API_TOKEN` on the server they are off (403). Every action is
//! logged with what it changed.

use axum::extract::State;
use axum::{Extension, Json};

use super::actor::Actor;
use super::dto::{self, Canceled, HoldChanged, Triggered, UsedUpdateRef};
use super::error::{ApiError, ApiResult};
use super::extract::{PathParam, QueryParams};
use super::params::Params;
use super::ApiState;
use crate::app::policy::{self, HoldOutcome};
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
pub async fn cancel(
    State(s): State<ApiState>,
    Extension(actor): Extension<Actor>,
    PathParam(id): PathParam,
) -> ApiResult<Canceled> {
    let run_id = RunId::from(id.as_str());
    let reason = format!("canceled through the operator API by {actor}");
    match runs_admin::cancel(&s.pool, &run_id, &reason).await {
        Ok(previous) => {
            tracing::info!(action = "cancel", %actor, run_id = %run_id, from = %previous, to = %RunStatus::Canceled, "run canceled through the API");
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
    Extension(actor): Extension<Actor>,
    PathParam(code): PathParam,
) -> ApiResult<Triggered> {
    let Some(ctx) = &s.ctx else {
        return Err(ApiError::unavailable(
            "trigger needs OUTPUT_BUCKET (and OUTPUT_PREFIX / OUTPUT_PATH_STYLE) on the server to write the run request",
        ));
    };
    match trigger::trigger(ctx, &code).await {
        Ok(t) => {
            tracing::info!(action = "trigger", %actor, run_id = %t.run_id, metric_code = %t.metric_code, to = %RunStatus::Queued, "run triggered through the API");
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

/// Longest `by` a hold records.
const MAX_HOLDER: usize = 200;

#[utoipa::path(post, path = "/api/v1/metrics/{code}/hold", tag = "actions",
    params(("code" = String, Path, description = "metric code"),
           ("by" = Option<String>, Query, description = "who holds it, when the load balancer has not signed someone in (default: api); a signed-in person is recorded as themselves")),
    security(("bearer" = [])),
    responses((status = 200, body = HoldChanged), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody), (status = 403, body = dto::ErrorBody),
              (status = 404, body = dto::ErrorBody), (status = 503, body = dto::ErrorBody)))]
pub async fn hold(
    State(s): State<ApiState>,
    Extension(actor): Extension<Actor>,
    PathParam(code): PathParam,
    query: QueryParams,
) -> ApiResult<HoldChanged> {
    let params = Params::new(query, &["by"])?;
    let stated = params.text("by")?;
    let by = match actor.holder() {
        Some(person) => person.to_string(),
        None => stated.clone().unwrap_or_else(|| "api".into()),
    };
    if by.chars().count() > MAX_HOLDER {
        return Err(ApiError::bad_request(format!(
            "by must be at most {MAX_HOLDER} characters"
        )));
    }
    let ctx = policy_context(&s)?;
    let outcome = policy::hold(ctx, &code, &by).await?;
    tracing::info!(action = "hold", %actor, metric_code = %code, by = %by, stated_by = ?stated, outcome = ?outcome, "metric hold through the API");
    changed(&code, outcome)
}

#[utoipa::path(post, path = "/api/v1/metrics/{code}/resume", tag = "actions",
    params(("code" = String, Path, description = "metric code"),
           ("drop" = Option<bool>, Query, description = "cancel the waiting run instead of requesting it")),
    security(("bearer" = [])),
    responses((status = 200, body = HoldChanged), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody), (status = 403, body = dto::ErrorBody),
              (status = 404, body = dto::ErrorBody), (status = 503, body = dto::ErrorBody)))]
pub async fn resume(
    State(s): State<ApiState>,
    Extension(actor): Extension<Actor>,
    PathParam(code): PathParam,
    query: QueryParams,
) -> ApiResult<HoldChanged> {
    let params = Params::new(query, &["drop"])?;
    let drop = params.parsed::<bool>("drop")?.unwrap_or(false);
    let ctx = policy_context(&s)?;
    let outcome = policy::resume(ctx, &code, drop).await?;
    tracing::info!(action = "resume", %actor, metric_code = %code, drop, outcome = ?outcome, "metric resumed through the API");
    changed(&code, outcome)
}

fn policy_context(s: &ApiState) -> Result<&crate::app::Context, ApiError> {
    s.ctx.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "hold and resume need OUTPUT_BUCKET (and OUTPUT_PREFIX / OUTPUT_PATH_STYLE) on the server to write the run request a resume may make",
        )
    })
}

fn changed(code: &str, outcome: HoldOutcome) -> ApiResult<HoldChanged> {
    let ids = |v: &[crate::domain::ids::RunId]| v.iter().map(ToString::to_string).collect();
    let body = match outcome {
        HoldOutcome::NotFound => {
            return Err(ApiError::not_found(format!("no metric with code {code:?}")))
        }
        HoldOutcome::Held(_) => HoldChanged {
            metric_code: code.into(),
            held: true,
            changed: true,
            queued_runs: vec![],
            dropped_runs: vec![],
        },
        HoldOutcome::Unchanged { held_by, .. } => HoldChanged {
            metric_code: code.into(),
            held: held_by.is_some(),
            changed: false,
            queued_runs: vec![],
            dropped_runs: vec![],
        },
        HoldOutcome::Resumed {
            evaluated, dropped, ..
        } => HoldChanged {
            metric_code: code.into(),
            held: false,
            changed: true,
            queued_runs: ids(&evaluated.queued_run_ids),
            dropped_runs: ids(&dropped),
        },
    };
    Ok(Json(body))
}
