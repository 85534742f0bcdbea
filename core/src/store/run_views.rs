//! Operator queries on runs, through the views of `migrations/V2` that
//! operators query too: `run_status` (one row per run) and
//! `run_status_counts`; and the dataset updates a run uses.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Pool, StoreError, StoreResult, Transaction};
use crate::domain::ids::{DatasetId, RunId, UpdateId};
use crate::domain::run_state::RunStatus;

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub metric_code: Option<String>,
    /// Runs created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Runs older than this one (keyset pagination, newest first).
    pub before: Option<RunId>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: RunId,
    pub metric_code: String,
    pub status: RunStatus,
    pub attempt: i32,
    pub retry_of: Option<RunId>,
    pub created_at: DateTime<Utc>,
    pub requested_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub progress: Option<f64>,
    pub error: Option<String>,
    pub version_ts: Option<String>,
    pub manifest_path: Option<String>,
    pub row_count: Option<i64>,
    /// What a run requested under a trigger policy went without
    /// (`{"stale": [...], "missing": [...]}`).
    pub degraded: Option<serde_json::Value>,
    /// The definition version it was requested with (`None`: requested
    /// before versions existed, or not requested yet).
    pub definition_version: Option<i32>,
    /// What its runner said it executed.
    pub code_version: Option<String>,
}

// Read through the `run_status` view (migrations/V2), which operators query too.
const RUN_COLUMNS: &str = "run_id, metric_code, status, attempt, retry_of, created_at, requested_at, dispatched_at,
    started_at, finished_at, last_heartbeat_at, progress, error, version_ts, manifest_path, row_count, degraded,
    definition_version, code_version";

fn run_row(r: &tokio_postgres::Row) -> StoreResult<RunRow> {
    Ok(RunRow {
        id: r.get(0),
        metric_code: r.get(1),
        status: super::runs::status_of(r.get(2))?,
        attempt: r.get(3),
        retry_of: r.get(4),
        created_at: r.get(5),
        requested_at: r.get(6),
        dispatched_at: r.get(7),
        started_at: r.get(8),
        finished_at: r.get(9),
        last_heartbeat_at: r.get(10),
        progress: r.get(11),
        error: r.get(12),
        version_ts: r.get(13),
        manifest_path: r.get(14),
        row_count: r.get(15),
        degraded: r.get(16),
        definition_version: r.get(17),
        code_version: r.get(18),
    })
}

pub async fn list(pool: &Pool, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
    let client = pool.get().await?;
    // Only the filters given are in the statement: each combination is
    // prepared once per connection and keeps a good generic plan.
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    let status = filter.status.map(RunStatus::as_str);
    if let Some(s) = &status {
        params.push(s);
        conds.push(format!("status = ${}", params.len()));
    }
    if let Some(m) = &filter.metric_code {
        params.push(m);
        conds.push(format!("metric_code = ${}", params.len()));
    }
    if let Some(t) = &filter.since {
        params.push(t);
        conds.push(format!("created_at >= ${}", params.len()));
    }
    if let Some(b) = &filter.before {
        params.push(b);
        conds.push(format!("run_id < ${}", params.len()));
    }
    let limit = filter.limit.max(1);
    params.push(&limit);
    let filter_sql = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM run_status {filter_sql} ORDER BY run_id DESC LIMIT ${}",
        params.len()
    );
    let stmt = client.prepare_cached(&sql).await?;
    let rows = client.query(&stmt, &params).await?;
    rows.iter().map(run_row).collect()
}

/// A used dataset update, for `show`.
#[derive(Debug, Clone, Serialize)]
pub struct UsedUpdateRow {
    pub dataset_id: DatasetId,
    pub update_id: UpdateId,
    pub version_manifest_path: String,
    pub created_at: DateTime<Utc>,
}

/// One run's row of `run_status`.
pub async fn get(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Option<RunRow>> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM run_status WHERE run_id = $1");
    let stmt = tx.prepare_cached(&sql).await?;
    tx.query_opt(&stmt, &[&run_id])
        .await?
        .as_ref()
        .map(run_row)
        .transpose()
}

/// The dataset updates a run uses, by dataset.
pub async fn used_updates(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Vec<UsedUpdateRow>> {
    let stmt = tx
        .prepare_cached(
            "SELECT du.dataset_id, du.id, du.version_manifest_path, du.created_at
               FROM run_inputs rdu JOIN dataset_updates du ON du.id = rdu.dataset_update_id
              WHERE rdu.run_id = $1 ORDER BY du.dataset_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&run_id]).await?;
    Ok(rows
        .iter()
        .map(|r| UsedUpdateRow {
            dataset_id: r.get(0),
            update_id: r.get(1),
            version_manifest_path: r.get(2),
            created_at: r.get(3),
        })
        .collect())
}

/// The retries queued for a run.
pub async fn retries_of(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Vec<RunId>> {
    let stmt = tx
        .prepare_cached("SELECT id FROM metric_runs WHERE retry_of = $1 ORDER BY id")
        .await?;
    Ok(tx
        .query(&stmt, &[&run_id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Runs per status (the `run_status_counts` view), in lifecycle order.
pub async fn counts(pool: &Pool) -> Result<Vec<(RunStatus, i64)>, StoreError> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT status, runs FROM run_status_counts", &[])
        .await?;
    let mut out: Vec<(RunStatus, i64)> = rows
        .iter()
        .filter_map(|r| {
            let s: String = r.get(0);
            s.parse().ok().map(|st| (st, r.get(1)))
        })
        .collect();
    out.sort_by_key(|(s, _)| *s as u8);
    Ok(out)
}
