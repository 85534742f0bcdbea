//! Backfills through the API (docs/semantics.md, "Backfills"):
//! `GET /api/v1/backfills`, `GET /api/v1/backfills/{id}` (progress and a
//! page of points), and behind the token `POST /api/v1/backfills` (create,
//! or plan with `dryRun`) and `POST /api/v1/backfills/{id}/{pause|resume|cancel}`.

use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actor::Actor;
use super::dto;
use super::error::{ApiError, ApiResult};
use super::extract::{PathParam, QueryParams};
use super::params::Params;
use super::ApiState;
use crate::app::backfill::{self, BackfillError, Create, Shown};
use crate::domain::backfill::{self as rules, Asked, Control};
use crate::domain::ids::BackfillId;

/// A backfill as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillDto {
    pub id: String,
    pub status: String,
    pub metric_codes: Vec<String>,
    pub downstream: bool,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `runs`, `updates`, `daily` or a cron schedule.
    pub points: String,
    pub reprocess: String,
    pub max_in_flight: i32,
    pub created_by: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub progress: ProgressDto,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProgressDto {
    /// Points computed, or kept as they were (current, unready).
    pub done: i64,
    pub running: i64,
    pub failed: i64,
    pub left: i64,
    pub canceled: i64,
    pub total: i64,
    /// 0–100.
    pub percent: f64,
    /// Points finished per minute over the last five minutes.
    pub per_minute: f64,
    pub eta_seconds: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointDto {
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    /// What the plan found: missing, failed, stale, current or unready.
    pub found: String,
    /// waiting, requested, succeeded, failed, skipped or canceled.
    pub status: String,
    /// The input updates current at `asOf`.
    pub inputs: Vec<String>,
    pub run_id: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillDetail {
    #[serde(flatten)]
    pub backfill: BackfillDto,
    /// A page of its points in order (moment, then dependency depth).
    pub points_page: Vec<PointDto>,
    pub offset: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackfillList {
    pub items: Vec<BackfillDto>,
}

/// `POST /api/v1/backfills`: what to compute. Unknown keys are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBody {
    pub metrics: Vec<String>,
    #[serde(default)]
    pub downstream: bool,
    /// RFC 3339, a date (2026-01-31), or an age (90d).
    pub from: String,
    /// Default `now`.
    pub to: Option<String>,
    /// Default `runs`.
    pub points: Option<String>,
    /// Default `missing`.
    pub reprocess: Option<String>,
    pub max_in_flight: Option<i64>,
    #[serde(default)]
    pub dry_run: bool,
    /// The same key is the same backfill, ever.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedDto {
    /// Null for a dry run.
    pub id: Option<String>,
    /// The same request was made before: that backfill, nothing new written.
    pub existing: bool,
    pub dry_run: bool,
    /// Points per plan status (missing, failed, stale, current, unready).
    pub found: std::collections::BTreeMap<String, usize>,
    /// Points this backfill computes.
    pub selected: usize,
    pub total: usize,
    /// The first 500 points of the plan.
    pub points: Vec<PlannedDto>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedDto {
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    pub found: String,
    pub selected: bool,
    pub inputs: Vec<String>,
    pub why: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ControlledDto {
    pub id: String,
    pub status: String,
}

fn dto_of(s: Shown) -> BackfillDto {
    let b = s.backfill;
    let p = s.progress;
    BackfillDto {
        id: b.id.to_string(),
        status: b.status,
        metric_codes: b.metrics,
        downstream: b.downstream,
        from: b.from,
        to: b.to,
        points: b.points,
        reprocess: b.reprocess,
        max_in_flight: b.max_in_flight,
        created_by: b.created_by,
        reason: b.reason,
        created_at: b.created_at,
        finished_at: b.finished_at,
        progress: ProgressDto {
            done: p.counts.done,
            running: p.counts.running,
            failed: p.counts.failed,
            left: p.counts.left,
            canceled: p.counts.canceled,
            total: p.counts.total(),
            percent: p.percent,
            per_minute: p.per_minute,
            eta_seconds: p.eta_secs,
        },
    }
}

fn error_of(e: BackfillError) -> ApiError {
    match e {
        BackfillError::Unknown(id) => ApiError::not_found(format!("no backfill {id}")),
        e @ BackfillError::UnknownMetrics(_) => ApiError::bad_request(e.to_string()),
        BackfillError::Invalid(m) => ApiError::conflict(m),
        BackfillError::Store(e) => e.into(),
    }
}

#[utoipa::path(get, path = "/api/v1/backfills", tag = "backfills",
    params(("limit" = Option<i64>, Query, description = "1 to 500 (default 50): the newest first")),
    responses((status = 200, body = BackfillList), (status = 400, body = dto::ErrorBody)))]
pub async fn list(State(s): State<ApiState>, q: QueryParams) -> ApiResult<BackfillList> {
    let p = Params::new(q, &["limit"])?;
    let limit = p.limit()?;
    let items = backfill::list(&s.pool, limit).await.map_err(error_of)?;
    Ok(Json(BackfillList {
        items: items.into_iter().map(dto_of).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/backfills/{id}", tag = "backfills",
    params(("id" = String, Path, description = "backfill id"),
           ("offset" = Option<i64>, Query, description = "first point of the page (default 0)"),
           ("limit" = Option<i64>, Query, description = "points in the page, 1 to 500 (default 50)")),
    responses((status = 200, body = BackfillDetail), (status = 400, body = dto::ErrorBody),
              (status = 404, body = dto::ErrorBody)))]
pub async fn get(
    State(s): State<ApiState>,
    PathParam(id): PathParam,
    q: QueryParams,
) -> ApiResult<BackfillDetail> {
    let p = Params::new(q, &["offset", "limit"])?;
    let limit = p.limit()?;
    let offset = p.parsed::<i64>("offset")?.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::bad_request("offset must be 0 or more"));
    }
    let id = BackfillId::new(id);
    let shown = backfill::show(&s.pool, &id).await.map_err(error_of)?;
    let points = backfill::points(&s.pool, &id, offset, limit)
        .await
        .map_err(error_of)?;
    Ok(Json(BackfillDetail {
        backfill: dto_of(shown),
        offset,
        points_page: points
            .into_iter()
            .map(|p| PointDto {
                metric_code: p.metric_code,
                as_of: p.as_of,
                found: p.found,
                status: p.status,
                inputs: p.inputs,
                run_id: p.run_id,
                detail: p.detail,
            })
            .collect(),
    }))
}

/// Longest idempotency key accepted.
const MAX_KEY: usize = 200;

#[utoipa::path(post, path = "/api/v1/backfills", tag = "actions",
    request_body = CreateBody,
    security(("bearer" = [])),
    responses((status = 200, body = CreatedDto), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody), (status = 403, body = dto::ErrorBody),
              (status = 409, body = dto::ErrorBody, description = "the plan cannot be made (a disabled metric, too many points, a dependency cycle)")))]
pub async fn create(
    State(s): State<ApiState>,
    Extension(actor): Extension<Actor>,
    body: Bytes,
) -> ApiResult<CreatedDto> {
    let b: CreateBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("body: {e}")))?;
    if b.idempotency_key
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > MAX_KEY)
    {
        return Err(ApiError::bad_request(format!(
            "idempotencyKey must be 1 to {MAX_KEY} characters"
        )));
    }
    let now = backfill::now(&s.pool).await.map_err(error_of)?;
    let asked = Asked {
        metrics: b.metrics.iter().map(String::as_str).collect(),
        downstream: b.downstream,
        from: &b.from,
        to: b.to.as_deref().unwrap_or("now"),
        points: b.points.as_deref(),
        reprocess: b.reprocess.as_deref(),
        max_in_flight: b.max_in_flight,
    };
    let request = rules::request(&asked, now).map_err(ApiError::bad_request)?;
    let by = actor.to_string();
    let created = backfill::create(
        &s.pool,
        &Create {
            request,
            key: b.idempotency_key.as_deref(),
            by: Some(&by),
            reason: None,
            dry_run: b.dry_run,
        },
    )
    .await
    .map_err(error_of)?;
    if let Some(id) = &created.id {
        tracing::info!(action = "backfill create", %actor, backfill_id = %id, existing = created.existing,
            points = created.plan.selected, "backfill created through the API");
    }
    let plan = created.plan;
    Ok(Json(CreatedDto {
        id: created.id.map(|i| i.to_string()),
        existing: created.existing,
        dry_run: b.dry_run,
        found: plan
            .found
            .iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect(),
        selected: plan.selected,
        total: plan.points.len(),
        points: plan
            .points
            .into_iter()
            .take(500)
            .map(|p| PlannedDto {
                metric_code: p.metric_code,
                as_of: p.as_of,
                found: p.found.to_string(),
                selected: p.selected,
                inputs: p.inputs,
                why: p.why,
            })
            .collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/backfills/{id}/{action}", tag = "actions",
    params(("id" = String, Path, description = "backfill id"),
           ("action" = String, Path, description = "pause, resume or cancel")),
    security(("bearer" = [])),
    responses((status = 200, body = ControlledDto), (status = 401, body = dto::ErrorBody),
              (status = 403, body = dto::ErrorBody), (status = 404, body = dto::ErrorBody),
              (status = 409, body = dto::ErrorBody, description = "not possible from its status")))]
pub async fn control(
    State(s): State<ApiState>,
    Extension(actor): Extension<Actor>,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
) -> ApiResult<ControlledDto> {
    let c: Control = action.parse().map_err(|e: String| ApiError::not_found(e))?;
    let bid = BackfillId::new(id.clone());
    let status = backfill::control(&s.pool, &bid, c)
        .await
        .map_err(error_of)?;
    tracing::info!(action = %format!("backfill {}", c.as_str()), %actor, backfill_id = %bid,
        to = status.as_str(), "backfill changed through the API");
    Ok(Json(ControlledDto {
        id,
        status: status.as_str().into(),
    }))
}
