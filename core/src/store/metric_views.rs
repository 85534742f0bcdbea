//! Operator reads of metrics for the HTTP API and console: the facts a
//! metric's status is decided from (`domain::metric_status`), its inputs'
//! freshness, its series and the lineage graph. Read-only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Pool, StoreError, StoreResult};
use crate::domain::expectation::MetricExpectation;
use crate::domain::freshness_state::MetricState;
use crate::domain::ids::{DatasetId, MetricId, RunId, UpdateId};
use crate::domain::metric_status::StatusFacts;
use crate::domain::pending_run::{Received, Slot};
use crate::domain::run_state::RunStatus;
use crate::domain::trigger::{Hold, MetricTiming, Timers};
use crate::domain::trigger_policy::TriggerPolicy;

#[derive(Debug, Clone, Default)]
pub struct MetricQuery {
    /// Only metrics that require this dataset.
    pub dataset: Option<DatasetId>,
    /// Only enabled metrics with a pending run (a cheap pre-filter).
    pub only_pending: bool,
    /// Only disabled metrics.
    pub only_disabled: bool,
    /// Only metrics in this freshness state.
    pub freshness: Option<MetricState>,
    /// Codes after this one (keyset pagination).
    pub after_code: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub struct LastRun {
    pub id: RunId,
    pub status: RunStatus,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct MetricSummary {
    pub id: MetricId,
    pub code: String,
    pub expression_type: String,
    pub enabled: bool,
    pub required_days: i32,
    pub max_attempts: i32,
    pub run_timeout_secs: Option<i32>,
    pub required_datasets: Vec<DatasetId>,
    pub last_run: Option<LastRun>,
    pub last_finished: Option<RunStatus>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub pending_run: Option<RunId>,
    /// Datasets the pending run has no update for yet.
    pub waiting_for: Vec<DatasetId>,
    pub inputs_fresh: bool,
    /// Its freshness expectation, as `catalog apply` prints it.
    pub expectation: Option<String>,
    /// Its freshness state, when it has an expectation and was swept.
    pub freshness: Option<Freshness<MetricState>>,
    /// Its trigger policy; `None`: the default rule.
    pub policy: Option<TriggerPolicy>,
    pub timing: MetricTiming,
}

/// A freshness state as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Freshness<S> {
    pub state: S,
    pub since: DateTime<Utc>,
    pub overdue_since: Option<DateTime<Utc>>,
    /// Metrics: the datasets that block a warning or failing one.
    pub blocking: Vec<DatasetId>,
}

impl MetricSummary {
    pub fn facts(&self) -> StatusFacts {
        StatusFacts {
            enabled: self.enabled,
            has_pending_run: self.pending_run.is_some(),
            last_finished: self.last_finished,
            inputs_fresh: self.inputs_fresh,
        }
    }
}

/// `page` yields metric rows with their pending run's id (`pending_id`).
/// Per metric, each an index probe: its newest run that is not the pending
/// one, newest finished run, newest success (`metric_runs_success_idx`),
/// what the pending run waits for, and whether the newest update of every
/// required dataset is fresh. The probes a common case does
/// not need sit in CASE branches, which PostgreSQL evaluates only when taken:
/// the newest run usually is the newest finished one (and the newest
/// success); freshness decides nothing for a disabled or pending metric.
const SUMMARY: &str = "
SELECT m.id, m.code, m.expression_type, m.enabled, m.required_days, m.max_attempts, m.run_timeout_secs,
       ARRAY(SELECT r.dataset_id FROM metric_required_datasets r WHERE r.metric_id = m.id ORDER BY 1) AS required,
       lr.id, lr.status, lr.finished_at,
       CASE WHEN lr.status IS NULL THEN NULL
            WHEN lr.status IN ('succeeded', 'failed', 'timed_out') THEN lr.status
            ELSE (SELECT f.status FROM metric_runs f
                   WHERE f.metric_code = m.code AND f.status IN ('succeeded', 'failed', 'timed_out')
                   ORDER BY f.created_at DESC LIMIT 1) END AS last_finished,
       CASE WHEN lr.status IS NULL THEN NULL
            WHEN lr.status = 'succeeded' THEN lr.finished_at
            ELSE (SELECT s.finished_at FROM metric_runs s
                   WHERE s.metric_code = m.code AND s.status = 'succeeded'
                   ORDER BY s.created_at DESC LIMIT 1) END AS last_success_at,
       m.pending_id,
       CASE WHEN m.pending_id IS NULL THEN '{}'::text[]
            ELSE ARRAY(SELECT d.dataset_id FROM metric_run_pending_datasets d
                        WHERE d.run_id = m.pending_id AND NOT d.received ORDER BY 1) END AS waiting_for,
       CASE WHEN m.pending_id IS NOT NULL OR NOT m.enabled THEN true
            ELSE COALESCE((SELECT bool_and(nu.created_at IS NOT NULL AND update_is_fresh(nu.created_at, m.required_days))
                   FROM metric_required_datasets r
                   LEFT JOIN LATERAL (SELECT u.created_at FROM dataset_updates u WHERE u.dataset_id = r.dataset_id
                                       ORDER BY u.created_at DESC, u.id DESC LIMIT 1) nu ON true
                  WHERE r.metric_id = m.id), true) END AS inputs_fresh,
       f.state AS freshness, f.since AS freshness_since, f.overdue_since, f.blocking,
       m.max_age_warn_secs, m.max_age_fail_secs, m.expected_by, m.expectation_grace_secs,
       m.trigger_policy, m.held_at, m.held_by, m.last_auto_requested_at
  FROM page m
  LEFT JOIN metric_freshness f ON f.metric_id = m.id
  LEFT JOIN LATERAL (SELECT x.id, x.status, x.finished_at FROM metric_runs x
                      WHERE x.metric_code = m.code AND x.status <> 'pending_dependencies'
                      ORDER BY x.created_at DESC LIMIT 1) lr ON true
 ORDER BY m.code";

/// Metrics joined to their pending run, if any, for `page`.
const WITH_PENDING: &str = "metrics m LEFT JOIN metric_runs p
    ON p.metric_id = m.id AND p.status = 'pending_dependencies'";

fn status(s: Option<String>) -> StoreResult<Option<RunStatus>> {
    s.map(|s| super::runs::status_of(&s)).transpose()
}

/// The state, since, overdue-since and blocking columns from `first` on.
pub(super) fn freshness<S>(
    r: &tokio_postgres::Row,
    first: usize,
    parse: fn(&str) -> Option<S>,
) -> StoreResult<Option<Freshness<S>>> {
    let Some(text) = r.get::<_, Option<String>>(first) else {
        return Ok(None);
    };
    let state = parse(&text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown freshness state {text:?}")))?;
    Ok(Some(Freshness {
        state,
        since: r.get(first + 1),
        overdue_since: r.get(first + 2),
        blocking: r
            .get::<_, Option<Vec<DatasetId>>>(first + 3)
            .unwrap_or_default(),
    }))
}

fn summary(r: &tokio_postgres::Row) -> StoreResult<MetricSummary> {
    let last_run = match (r.get::<_, Option<RunId>>(8), status(r.get(9))?) {
        (Some(id), Some(status)) => Some(LastRun {
            id,
            status,
            finished_at: r.get(10),
        }),
        _ => None,
    };
    Ok(MetricSummary {
        id: r.get(0),
        code: r.get(1),
        expression_type: r.get(2),
        enabled: r.get(3),
        required_days: r.get(4),
        max_attempts: r.get(5),
        run_timeout_secs: r.get(6),
        required_datasets: r.get(7),
        last_run,
        last_finished: status(r.get(11))?,
        last_success_at: r.get(12),
        pending_run: r.get(13),
        waiting_for: r.get(14),
        inputs_fresh: r.get(15),
        freshness: freshness(r, 16, MetricState::parse)?,
        expectation: {
            let by: Option<String> = r.get(22);
            MetricExpectation::from_columns((r.get(20), r.get(21), by.as_deref(), r.get(23)))
                .map_err(StoreError::Corrupt)?
                .map(|e| e.to_string())
        },
        policy: r
            .get::<_, Option<Value>>(24)
            .map(|v| TriggerPolicy::from_json(&v))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("stored trigger policy: {e}")))?,
        timing: MetricTiming {
            hold: r.get::<_, Option<DateTime<Utc>>>(25).map(|since| Hold {
                since,
                by: r.get::<_, Option<String>>(26).unwrap_or_default(),
            }),
            last_requested_at: r.get(27),
        },
    })
}

/// A pending run as its trigger policy sees it, for the operator's "what
/// happens next".
#[derive(Debug, Clone)]
pub struct PendingTrigger {
    pub slots: Vec<Slot>,
    pub timers: Timers,
    /// Updates it folded in so far.
    pub folded: i64,
}

pub async fn pending_trigger(
    pool: &Pool,
    run_id: &RunId,
) -> Result<Option<PendingTrigger>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT p.dataset_id, p.required_days, p.received_update_id, p.received_at,
                    COALESCE(t.opened_at, r.created_at), t.ready_at, t.last_trigger_at,
                    (SELECT count(*) FROM metric_run_folded_updates f WHERE f.run_id = r.id)
               FROM metric_runs r
               JOIN metric_run_pending_datasets p ON p.run_id = r.id
               LEFT JOIN metric_run_timers t ON t.run_id = r.id
              WHERE r.id = $1 AND r.status = 'pending_dependencies'
              ORDER BY p.dataset_id",
        )
        .await?;
    let rows = client.query(&stmt, &[&run_id]).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(PendingTrigger {
        slots: rows
            .iter()
            .map(|r| Slot {
                dataset_id: r.get(0),
                required_days: r.get(1),
                received: match (r.get::<_, Option<UpdateId>>(2), r.get(3)) {
                    (Some(update_id), Some(at)) => Some(Received { update_id, at }),
                    _ => None,
                },
            })
            .collect(),
        timers: Timers {
            opened_at: first.get(4),
            ready_at: first.get(5),
            last_trigger_at: first.get(6),
        },
        folded: first.get(7),
    }))
}

/// One page of metrics in code order, after the cheap pre-filters. The
/// statement holds only the filters given, so that each combination is
/// prepared once per connection and keeps a good generic plan.
pub async fn list(pool: &Pool, q: &MetricQuery) -> Result<Vec<MetricSummary>, StoreError> {
    let client = pool.get().await?;
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    // Pending metrics are found from their pending run, in code order
    // (metric_runs_pending_code_idx): the page stops after its last row.
    let (from, order) = if q.only_pending {
        conds.push("p.status = 'pending_dependencies' AND m.enabled".into());
        (
            "metric_runs p JOIN metrics m ON m.id = p.metric_id",
            "p.metric_code",
        )
    } else {
        (WITH_PENDING, "m.code")
    };
    if let Some(after) = &q.after_code {
        params.push(after);
        conds.push(format!("{order} > ${}", params.len()));
    }
    if let Some(d) = &q.dataset {
        params.push(d);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM metric_required_datasets r WHERE r.metric_id = m.id AND r.dataset_id = ${})",
            params.len()
        ));
    }
    if q.only_disabled {
        conds.push("NOT m.enabled".into());
    }
    let freshness = q.freshness.map(MetricState::as_str);
    if let Some(state) = &freshness {
        params.push(state);
        conds.push(format!(
            "EXISTS (SELECT 1 FROM metric_freshness f WHERE f.metric_id = m.id AND f.state = ${})",
            params.len()
        ));
    }
    let limit = q.limit.max(1);
    params.push(&limit);
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "WITH page AS MATERIALIZED (SELECT m.*, p.id AS pending_id FROM {from} {filter} ORDER BY {order} LIMIT ${})
         {SUMMARY}",
        params.len()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    rows.iter().map(summary).collect()
}

/// One metric's summary by code.
pub async fn by_code(pool: &Pool, code: &str) -> Result<Option<MetricSummary>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "WITH page AS (SELECT m.*, p.id AS pending_id FROM {WITH_PENDING} WHERE m.code = $1) {SUMMARY}"
    );
    let stmt = client.prepare_cached(&sql).await?;
    client
        .query_opt(&stmt, &[&code])
        .await?
        .as_ref()
        .map(summary)
        .transpose()
}

#[derive(Debug, Clone)]
pub struct MetricDefinition {
    pub expression_json: Value,
    pub frequency: Option<String>,
    pub unit: Option<String>,
    pub description: Option<String>,
    /// Each series the metric references, with the datasets that provide it.
    pub series: Vec<(String, Vec<DatasetId>)>,
}

pub async fn definition(
    pool: &Pool,
    id: &MetricId,
) -> Result<Option<MetricDefinition>, StoreError> {
    let client = pool.get().await?;
    let def = client
        .prepare_cached(
            "SELECT expression_json, frequency, unit, description FROM metrics WHERE id = $1",
        )
        .await?;
    let series = client
        .prepare_cached(
            "SELECT md.series_code,
                    ARRAY(SELECT ds.dataset_id FROM dataset_series ds
                           WHERE ds.series_code = md.series_code ORDER BY 1)
               FROM metric_dependencies md WHERE md.metric_id = $1 ORDER BY 1",
        )
        .await?;
    let Some(m) = client.query_opt(&def, &[&id]).await? else {
        return Ok(None);
    };
    let series = client
        .query(&series, &[&id])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(Some(MetricDefinition {
        expression_json: m.get(0),
        frequency: m.get(1),
        unit: m.get(2),
        description: m.get(3),
        series,
    }))
}

/// The newest update of one required dataset, and how old it is.
#[derive(Debug, Clone)]
pub struct InputState {
    pub dataset_id: DatasetId,
    pub update_id: Option<UpdateId>,
    pub received_at: Option<DateTime<Utc>>,
    pub age_secs: Option<f64>,
    pub fresh: bool,
}

pub async fn inputs(pool: &Pool, id: &MetricId) -> Result<Vec<InputState>, StoreError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT r.dataset_id, nu.id, nu.created_at, EXTRACT(EPOCH FROM now() - nu.created_at)::float8,
                    nu.created_at IS NOT NULL AND update_is_fresh(nu.created_at, m.required_days)
               FROM metric_required_datasets r JOIN metrics m ON m.id = r.metric_id
               LEFT JOIN LATERAL (SELECT u.id, u.created_at FROM dataset_updates u WHERE u.dataset_id = r.dataset_id
                                   ORDER BY u.created_at DESC, u.id DESC LIMIT 1) nu ON true
              WHERE r.metric_id = $1 ORDER BY 1",
        )
        .await?;
    let rows = client.query(&stmt, &[&id]).await?;
    Ok(rows
        .iter()
        .map(|r| InputState {
            dataset_id: r.get(0),
            update_id: r.get(1),
            received_at: r.get(2),
            age_secs: r.get(3),
            fresh: r.get(4),
        })
        .collect())
}

/// Dataset → metric edges, all or around one metric code or dataset id;
/// at most `limit`, and whether more exist.
pub async fn lineage(
    pool: &Pool,
    around: Option<&str>,
    limit: i64,
) -> Result<(Vec<(DatasetId, String)>, bool), StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT r.dataset_id, m.code FROM metric_required_datasets r JOIN metrics m ON m.id = r.metric_id
              WHERE $1::text IS NULL OR m.code = $1 OR r.dataset_id = $1
              ORDER BY 1, 2 LIMIT $2",
            &[&around, &(limit + 1)],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    Ok((
        rows.iter()
            .take(limit as usize)
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        more,
    ))
}

/// Whether `name` is a metric code or a dataset id (for `around`).
pub async fn exists(pool: &Pool, name: &str) -> Result<bool, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM metrics WHERE code = $1) OR EXISTS (SELECT 1 FROM datasets WHERE id = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

/// Dataset names, for lineage nodes.
pub async fn dataset_names(
    pool: &Pool,
    ids: &[DatasetId],
) -> Result<HashMap<DatasetId, Option<String>>, StoreError> {
    let client = pool.get().await?;
    Ok(client
        .query("SELECT id, name FROM datasets WHERE id = ANY($1)", &[&ids])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
