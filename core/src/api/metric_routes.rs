//! `GET /api/v1/metrics` and `GET /api/v1/metrics/{code}`.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;

use super::dto::{self, Input, Metric, MetricDetail, Page, SeriesSource};
use super::error::{ApiError, ApiResult};
use super::extract::{PathParam, QueryParams};
use super::params::Params;
use super::runs::run_dto;
use super::ApiState;
use crate::domain::freshness_state::MetricState;
use crate::domain::ids::{DatasetId, MetricId};
use crate::domain::metric_status::{status, waiting_text, MetricStatus};
use crate::domain::pending_run::Received;
use crate::domain::staleness::{judge, OutputFacts, OutputStatus, Reason, ReasonKind};
use crate::domain::trigger;
use crate::store::metric_views::{self, Freshness, MetricQuery, MetricSummary};
use crate::store::run_views::{self, RunFilter};
use crate::store::staleness;

/// A metric's output as the API shows it.
fn output_dto(f: &OutputFacts) -> dto::Output {
    let s = judge(f);
    dto::Output {
        status: s.as_str().to_string(),
        run_id: f.run.as_ref().map(ToString::to_string),
        definition_version: f.run.as_ref().map(|_| f.run_version),
        reasons: s
            .reasons()
            .iter()
            .map(|r| {
                let (from, to, inputs) = match r {
                    Reason::DefinitionChanged { from, to } | Reason::PolicyChanged { from, to } => {
                        (Some(*from), Some(*to), Vec::new())
                    }
                    Reason::InputUpdated { inputs } => (None, None, inputs.clone()),
                };
                dto::StaleReason {
                    reason: r.kind().as_str().to_string(),
                    text: r.to_string(),
                    from_version: from,
                    to_version: to,
                    inputs: inputs
                        .into_iter()
                        .map(|i| dto::NewerInput {
                            dataset_id: i.dataset_id.to_string(),
                            newer_updates: i.updates,
                            since: i.since,
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

pub fn metric_dto(m: MetricSummary, output: &OutputFacts) -> Metric {
    let st = status(m.facts());
    let pending_run = m.pending_run.clone().map(|id| {
        let waiting: Vec<String> = m.waiting_for.iter().map(|d| d.to_string()).collect();
        dto::PendingRun {
            id: id.to_string(),
            summary: waiting_text(&waiting, m.required_datasets.len()),
            waiting_for: waiting,
        }
    });
    Metric {
        id: m.id.to_string(),
        code: m.code,
        expression_type: m.expression_type,
        enabled: m.enabled,
        required_days: m.required_days,
        max_attempts: m.max_attempts,
        run_timeout_secs: m.run_timeout_secs,
        required_datasets: m.required_datasets.iter().map(|d| d.to_string()).collect(),
        status: st.as_str().to_string(),
        last_run: m.last_run.map(|r| dto::LastRun {
            id: r.id.to_string(),
            status: r.status.as_str().to_string(),
            finished_at: r.finished_at,
        }),
        last_success_at: m.last_success_at,
        pending_run,
        expectation: m.expectation,
        freshness: m.freshness.map(freshness_dto),
        trigger_policy: m.policy.as_ref().map(ToString::to_string),
        held: m.timing.hold.map(|h| dto::Held {
            since: h.since,
            by: h.by,
        }),
        definition_version: output.current_version,
        output: output_dto(output),
    }
}

/// What the metric's pending run's policy will do, from its rows, its
/// timers and the newest update of each input.
fn next_decision(
    m: &MetricSummary,
    pending: &metric_views::PendingTrigger,
    inputs: &[metric_views::InputState],
) -> dto::NextDecision {
    let newest: HashMap<DatasetId, Received> = inputs
        .iter()
        .filter_map(|i| {
            Some((
                i.dataset_id.clone(),
                Received {
                    update_id: i.update_id.clone()?,
                    at: i.received_at?,
                },
            ))
        })
        .collect();
    let policy = m.policy.clone().unwrap_or_default();
    let decision = trigger::decide(
        &policy,
        &pending.slots,
        &pending.timers,
        &newest,
        &m.timing,
        chrono::Utc::now(),
    );
    dto::NextDecision {
        text: trigger::describe(&decision, pending.folded.max(0) as usize),
        at: match &decision {
            trigger::Decision::Wait { until, .. } => *until,
            trigger::Decision::Request { .. } => None,
        },
        folded_updates: pending.folded,
    }
}

pub fn freshness_dto<S: std::fmt::Display>(f: Freshness<S>) -> dto::Freshness {
    let now = chrono::Utc::now();
    dto::Freshness {
        state: f.state.to_string(),
        since: f.since,
        overdue_since: f.overdue_since,
        overdue_seconds: f
            .overdue_since
            .map(|t| ((now - t).num_milliseconds().max(0) as f64) / 1e3),
        blocking: f.blocking.iter().map(ToString::to_string).collect(),
    }
}

/// Metrics are read in code order in batches; those whose status matches are
/// kept until the page is full (the status rule is in one place, in Rust).
const BATCH: i64 = 500;

#[utoipa::path(get, path = "/api/v1/metrics", tag = "metrics",
    params(
        ("dataset" = Option<String>, Query, description = "only metrics that require this dataset"),
        ("status" = Option<String>, Query, description = "ok | pending | stale | failing | disabled"),
        ("freshness" = Option<String>, Query, description = "pass | warn | fail | unknown: metrics with an expectation in this freshness state"),
        ("output" = Option<String>, Query, description = "current | stale | no_output: metrics whose newest succeeded output is in this state"),
        ("stale_reason" = Option<String>, Query, description = "definition_changed | input_updated | policy_changed: metrics whose output is stale for this reason"),
        ("limit" = Option<i64>, Query, description = "page size, 1 to 500 (default 50)"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses((status = 200, body = Page<Metric>), (status = 400, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn list(State(s): State<ApiState>, q: QueryParams) -> ApiResult<Page<Metric>> {
    let p = Params::new(
        q,
        &[
            "dataset",
            "status",
            "freshness",
            "output",
            "stale_reason",
            "limit",
            "cursor",
        ],
    )?;
    let wanted: Option<MetricStatus> = p.parsed("status")?;
    let freshness: Option<MetricState> = p.parsed("freshness")?;
    let output: Option<OutputStatus> = p.parsed("output")?;
    let reason: Option<ReasonKind> = p.parsed("stale_reason")?;
    let limit = p.limit()?;
    let by_output = output.is_some() || reason.is_some();
    let mut query = MetricQuery {
        dataset: p.text("dataset")?.map(Into::into),
        only_pending: wanted == Some(MetricStatus::Pending),
        only_disabled: wanted == Some(MetricStatus::Disabled),
        freshness,
        after_code: p.text("cursor")?,
        // Pre-filtered in SQL (or unfiltered): one page is enough; otherwise
        // batches, filtered here.
        limit: match wanted {
            None | Some(MetricStatus::Pending | MetricStatus::Disabled) if !by_output => {
                Page::<Metric>::rows_to_read(limit)
            }
            _ => BATCH.max(Page::<Metric>::rows_to_read(limit)),
        },
    };
    let mut rows = Vec::new();
    loop {
        let batch = metric_views::list(&s.pool, &query).await?;
        let exhausted = (batch.len() as i64) < query.limit;
        query.after_code = batch.last().map(|m| m.code.clone());
        let ids: Vec<MetricId> = batch.iter().map(|m| m.id.clone()).collect();
        let mut facts = staleness::of_metrics(&s.pool, &ids).await?;
        rows.extend(batch.into_iter().filter_map(|m| {
            let f = facts.remove(&m.id).unwrap_or_default();
            let judged = judge(&f);
            let keep = wanted.is_none_or(|w| status(m.facts()) == w)
                && output.is_none_or(|o| judged.status() == o)
                && reason.is_none_or(|k| judged.has(k));
            keep.then_some((m, f))
        }));
        if rows.len() as i64 > limit || exhausted {
            break;
        }
    }
    Ok(Json(Page::keyset(
        rows,
        limit,
        |(m, _)| m.code.clone(),
        |(m, f)| metric_dto(m, &f),
    )))
}

#[utoipa::path(get, path = "/api/v1/metrics/{code}", tag = "metrics",
    params(("code" = String, Path, description = "metric code")),
    responses((status = 200, body = MetricDetail), (status = 404, body = dto::ErrorBody),
              (status = 401, body = dto::ErrorBody, description = "API_AUTH=all and no valid bearer token"),
              (status = 503, body = dto::ErrorBody, description = "the database is unreachable, or the server is past API_MAX_IN_FLIGHT or API_REQUEST_TIMEOUT_SECS; see Retry-After")))]
pub async fn get(State(s): State<ApiState>, PathParam(code): PathParam) -> ApiResult<MetricDetail> {
    let m = metric_views::by_code(&s.pool, &code)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no metric with code {code:?}")))?;
    let id = m.id.clone();
    let pending = match &m.pending_run {
        Some(run) => metric_views::pending_trigger(&s.pool, run).await?,
        None => None,
    };
    let recent = RunFilter {
        metric_code: Some(code.clone()),
        limit: 20,
        ..RunFilter::default()
    };
    let ids = [id.clone()];
    let (def, inputs, runs, mut output) = futures::try_join!(
        metric_views::definition(&s.pool, &id),
        metric_views::inputs(&s.pool, &id),
        run_views::list(&s.pool, &recent),
        staleness::of_metrics(&s.pool, &ids)
    )?;
    let def = def.ok_or_else(|| ApiError::not_found(format!("no metric with code {code:?}")))?;
    let next = pending.map(|p| next_decision(&m, &p, &inputs));
    Ok(Json(MetricDetail {
        next,
        metric: metric_dto(m, &output.remove(&id).unwrap_or_default()),
        expression_json: def.expression_json,
        frequency: def.frequency,
        unit: def.unit,
        description: def.description,
        series: def
            .series
            .into_iter()
            .map(|(code, ds)| SeriesSource {
                code,
                datasets: ds.iter().map(|d| d.to_string()).collect(),
            })
            .collect(),
        inputs: inputs
            .into_iter()
            .map(|i| Input {
                dataset_id: i.dataset_id.to_string(),
                update_id: i.update_id.map(|u| u.to_string()),
                received_at: i.received_at,
                age_seconds: i.age_secs,
                fresh: i.fresh,
            })
            .collect(),
        runs: runs.into_iter().map(run_dto).collect(),
    }))
}
