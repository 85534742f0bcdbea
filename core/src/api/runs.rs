//! `GET /api/v1/runs` and `GET /api/v1/runs/{id}`.

use axum::extract::State;
use axum::Json;

use super::dto::{self, Page, Run, RunDetail, RunResult, Timeline, UsedInput};
use super::error::{ApiError, ApiResult};
use super::extract::{PathParam, QueryParams};
use super::params::Params;
use super::ApiState;
use crate::app::runs_admin;
use crate::domain::ids::RunId;
use crate::domain::run_state::RunStatus;
use crate::store::run_views::{self, RunFilter, RunRow};

pub fn run_dto(r: RunRow) -> Run {
    Run {
        id: r.id.to_string(),
        metric_code: r.metric_code,
        status: r.status.as_str().to_string(),
        attempt: r.attempt,
        retry_of: r.retry_of.map(|x| x.to_string()),
        created_at: r.created_at,
        requested_at: r.requested_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        progress: r.progress,
        error: r.error,
        degraded: degraded(r.degraded),
        definition_version: r.definition_version,
        code_version: r.code_version,
    }
}

/// The stored record of what a run went without, as the API shows it (a
/// record that does not read as one is left out rather than guessed at).
fn degraded(v: Option<serde_json::Value>) -> Option<dto::Degraded> {
    v.and_then(|v| serde_json::from_value(v).ok())
}

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs",
    params(
        ("status" = Option<String>, Query, description = "a run status, e.g. pending_dependencies"),
        ("metric" = Option<String>, Query, description = "metric code"),
        ("since" = Option<String>, Query, description = "RFC 3339: runs created at or after"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses((status = 200, body = Page<Run>), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn list(State(s): State<ApiState>, q: QueryParams) -> ApiResult<Page<Run>> {
    let p = Params::new(q, &["status", "metric", "since", "limit", "cursor"])?;
    let limit = p.limit()?;
    let filter = RunFilter {
        status: p.parsed::<RunStatus>("status")?,
        metric_code: p.text("metric")?,
        since: p.time("since")?,
        before: p.text("cursor")?.map(RunId::from),
        limit: Page::<Run>::rows_to_read(limit),
    };
    let rows = run_views::list(&s.pool, &filter).await?;
    Ok(Json(Page::keyset(
        rows,
        limit,
        |r| r.id.to_string(),
        run_dto,
    )))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "run id")),
    responses((status = 200, body = RunDetail), (status = 404, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn get(State(s): State<ApiState>, PathParam(id): PathParam) -> ApiResult<RunDetail> {
    let d = runs_admin::show(&s.pool, &RunId::from(id.as_str()))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id:?}")))?;
    let waiting_for = d.waiting_for().iter().map(|s| s.to_string()).collect();
    let r = d.run;
    Ok(Json(RunDetail {
        id: r.id.to_string(),
        metric_code: r.metric_code,
        status: r.status.as_str().to_string(),
        attempt: r.attempt,
        retry_of: r.retry_of.map(|x| x.to_string()),
        retries: d.retries.iter().map(|x| x.to_string()).collect(),
        timeline: Timeline {
            created: r.created_at,
            requested: r.requested_at,
            dispatched: r.dispatched_at,
            started: r.started_at,
            last_heartbeat: r.last_heartbeat_at,
            finished: r.finished_at,
        },
        progress: r.progress,
        error: r.error,
        degraded: degraded(r.degraded),
        definition_version: r.definition_version,
        code_version: r.code_version.clone(),
        result: RunResult {
            version_ts: r.version_ts,
            output_manifest: r.manifest_path,
            row_count: r.row_count,
        },
        inputs: d
            .used_updates
            .into_iter()
            .map(|u| UsedInput {
                dataset_id: u.dataset_id.to_string(),
                update_id: u.update_id.to_string(),
                manifest_path: u.version_manifest_path,
                received_at: u.created_at,
            })
            .collect(),
        waiting_for,
        request: d.request,
    }))
}
