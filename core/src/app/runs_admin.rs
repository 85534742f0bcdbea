//! Operator queries and actions on runs: list, show, cancel.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::run_state::RunStatus;
use crate::in_transaction;
use crate::store::pending::{self, PendingDataset};
use crate::store::tx::TxError;
use crate::store::{outbox, runs, Pool, StoreError, Transaction};

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub metric_code: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub metric_code: String,
    pub status: String,
    pub attempt: i32,
    pub retry_of: Option<String>,
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
}

// Read through the `run_status` view (migrations/V2), which operators query too.
const RUN_COLUMNS: &str = "run_id, metric_code, status, attempt, retry_of, created_at, requested_at, dispatched_at,
    started_at, finished_at, last_heartbeat_at, progress, error, version_ts, manifest_path, row_count";

fn run_row(r: &tokio_postgres::Row) -> RunRow {
    RunRow {
        id: r.get(0),
        metric_code: r.get(1),
        status: r.get(2),
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
    }
}

pub async fn list(pool: &Pool, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM run_status
          WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR metric_code = $2)
          ORDER BY run_id DESC LIMIT $3"
    );
    let status = filter.status.map(RunStatus::as_str);
    let rows = client
        .query(&sql, &[&status, &filter.metric_code, &filter.limit.max(1)])
        .await?;
    Ok(rows.iter().map(run_row).collect())
}

/// A used dataset update, for `show`.
#[derive(Debug, Clone, Serialize)]
pub struct UsedUpdateRow {
    pub dataset_id: String,
    pub update_id: String,
    pub version_manifest_path: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    /// For a pending run: every required dataset, received or still awaited.
    pub pending_datasets: Vec<PendingDataset>,
    pub used_updates: Vec<UsedUpdateRow>,
    /// The run request as written to the outbox (absent while pending).
    pub request: Option<serde_json::Value>,
}

impl RunDetail {
    pub fn waiting_for(&self) -> Vec<&str> {
        self.pending_datasets
            .iter()
            .filter(|p| !p.received)
            .map(|p| p.dataset_id.as_str())
            .collect()
    }
}

pub async fn show(pool: &Pool, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
    in_transaction!(pool, StoreError, |tx| show_in(&tx, run_id).await?)
}

async fn show_in(tx: &Transaction<'_>, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM run_status WHERE run_id = $1");
    let Some(row) = tx.query_opt(&sql, &[&run_id]).await? else {
        return Ok(None);
    };
    let run = run_row(&row);
    let pending_datasets = if run.status == RunStatus::PendingDependencies.as_str() {
        pending::for_run(tx, run_id).await?
    } else {
        Vec::new()
    };
    let used = tx
        .query(
            "SELECT du.dataset_id, du.id, du.version_manifest_path, du.created_at
               FROM run_dataset_updates rdu JOIN dataset_updates du ON du.id = rdu.dataset_update_id
              WHERE rdu.run_id = $1 ORDER BY du.dataset_id",
            &[&run_id],
        )
        .await?;
    let request = outbox::payload_of(tx, run_id)
        .await?
        .and_then(|p| serde_json::from_str(&p).ok());
    Ok(Some(RunDetail {
        run,
        request,
        pending_datasets,
        used_updates: used
            .iter()
            .map(|r| UsedUpdateRow {
                dataset_id: r.get(0),
                update_id: r.get(1),
                version_manifest_path: r.get(2),
                created_at: r.get(3),
            })
            .collect(),
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no run with id {0}")]
    NotFound(String),
    #[error("run {id} is {status}; only pending_dependencies, queued, dispatched or running runs can be canceled")]
    NotCancelable { id: String, status: RunStatus },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError for CancelError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            CancelError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// Cancels a run that has not ended; returns the status it had.
pub async fn cancel(pool: &Pool, run_id: &str, reason: &str) -> Result<RunStatus, CancelError> {
    in_transaction!(pool, CancelError, |tx| cancel_in(&tx, run_id, reason)
        .await?)
}

async fn cancel_in(
    tx: &Transaction<'_>,
    run_id: &str,
    reason: &str,
) -> Result<RunStatus, CancelError> {
    let run = runs::get(tx, run_id)
        .await?
        .ok_or_else(|| CancelError::NotFound(run_id.to_string()))?;
    if !run.status.is_cancelable() {
        return Err(CancelError::NotCancelable {
            id: run.id,
            status: run.status,
        });
    }
    if !runs::cancel(tx, run_id, run.status, reason).await? {
        return Err(
            StoreError::Conflict(format!("run {run_id} left {} meanwhile", run.status)).into(),
        );
    }
    Ok(run.status)
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
