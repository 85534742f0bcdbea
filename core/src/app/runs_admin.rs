//! Operator queries and actions on runs: list, show, cancel (the SQL is in
//! `store::run_views` and `store::runs`).

use serde::Serialize;

use crate::domain::ids::RunId;

use crate::domain::run_state::RunStatus;
use crate::in_transaction;
use crate::store::pending::{self, PendingDataset};
pub use crate::store::run_views::{counts, list, RunFilter, RunRow, UsedUpdateRow};
use crate::store::tx::TxError;
use crate::store::{outbox, run_views, runs, Pool, StoreError, Transaction};

#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    /// For a pending run: every required dataset, received or still awaited.
    pub pending_datasets: Vec<PendingDataset>,
    pub used_updates: Vec<UsedUpdateRow>,
    /// Retries queued for this run.
    pub retries: Vec<RunId>,
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

pub async fn show(pool: &Pool, run_id: &RunId) -> Result<Option<RunDetail>, StoreError> {
    in_transaction!(pool, StoreError, |tx| show_in(&tx, run_id).await?)
}

async fn show_in(tx: &Transaction<'_>, run_id: &RunId) -> Result<Option<RunDetail>, StoreError> {
    let Some(run) = run_views::get(tx, run_id).await? else {
        return Ok(None);
    };
    let pending_datasets = if run.status == RunStatus::PendingDependencies {
        pending::for_run(tx, run_id).await?
    } else {
        Vec::new()
    };
    let used_updates = run_views::used_updates(tx, run_id).await?;
    let retries = run_views::retries_of(tx, run_id).await?;
    let request = outbox::payload_of(tx, run_id)
        .await?
        .and_then(|p| serde_json::from_str(&p).ok());
    Ok(Some(RunDetail {
        run,
        request,
        pending_datasets,
        used_updates,
        retries,
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no run with id {0}")]
    NotFound(String),
    #[error("run {id} is {status}; only pending_dependencies, queued, dispatched or running runs can be canceled")]
    NotCancelable { id: RunId, status: RunStatus },
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
pub async fn cancel(pool: &Pool, run_id: &RunId, reason: &str) -> Result<RunStatus, CancelError> {
    in_transaction!(pool, CancelError, |tx| cancel_in(&tx, run_id, reason)
        .await?)
}

async fn cancel_in(
    tx: &Transaction<'_>,
    run_id: &RunId,
    reason: &str,
) -> Result<RunStatus, CancelError> {
    let run = runs::get(tx, run_id)
        .await?
        .ok_or_else(|| CancelError::NotFound(run_id.to_string()))?;
    let Some(to) = crate::domain::run_state::cancel(run.status) else {
        return Err(CancelError::NotCancelable {
            id: run.id,
            status: run.status,
        });
    };
    let transition = runs::Transition {
        run_id,
        from: run.status,
        to,
    };
    if !runs::cancel(tx, transition, reason).await? {
        return Err(
            StoreError::Conflict(format!("run {run_id} left {} meanwhile", run.status)).into(),
        );
    }
    Ok(run.status)
}
