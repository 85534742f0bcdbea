//! Trigger policies over time (docs/semantics.md, "Trigger policies"): the
//! sweep that asks a pending run's policy again when the time it named has
//! come, and the operator's hold and resume. Both go through the same
//! claim-and-evaluate as projection updates, so a run is requested by one
//! transaction holding the metric's lock, with its request in the outbox.

use tracing::instrument;

use super::evaluate::{self, Evaluated};
use super::Context;
use crate::domain::ids::MetricId;
use crate::in_transaction;
use crate::store::trigger_policies::{self, HoldChange};
use crate::store::{pending, runs, StoreError};

/// Due metrics taken per sweep transaction.
const SWEEP_BATCH: i64 = 500;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PolicySweep {
    /// Metrics whose timer had come.
    pub due: usize,
    /// Of those, claimed by this sweep (another holder takes the rest).
    pub claimed: usize,
    pub evaluated: Evaluated,
}

/// Asks the policy of every pending run whose timer has come at the
/// context's clock. Two sweeps at once claim each metric once (`SKIP
/// LOCKED`), and a run is requested by a guarded `pending → queued`.
#[instrument(skip_all)]
pub async fn sweep(ctx: &Context) -> Result<PolicySweep, StoreError> {
    let now = ctx.now();
    let mut total = PolicySweep::default();
    loop {
        let batch = in_transaction!(ctx.pool, StoreError, |tx| {
            let due = pending::due_metrics(&tx, now, SWEEP_BATCH).await?;
            let (claimed, evaluated) = evaluate::claim_and_settle(&tx, ctx, &due).await?;
            PolicySweep {
                due: due.len(),
                claimed: claimed.len(),
                evaluated,
            }
        })?;
        let more = batch.due as i64 == SWEEP_BATCH && batch.claimed > 0;
        total.due += batch.due;
        total.claimed += batch.claimed;
        total.evaluated += batch.evaluated;
        if !more {
            return Ok(total);
        }
    }
}

/// What an operator's hold or resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldOutcome {
    Held(MetricId),
    Resumed {
        metric: MetricId,
        evaluated: Evaluated,
        /// Runs canceled by `--drop`.
        dropped: Vec<crate::domain::ids::RunId>,
    },
    /// Already held (by whom) or already running freely.
    Unchanged {
        metric: MetricId,
        held_by: Option<String>,
    },
    NotFound,
}

/// Holds a metric: its updates are still evaluated, its runs wait.
#[instrument(skip(ctx))]
pub async fn hold(ctx: &Context, code: &str, by: &str) -> Result<HoldOutcome, StoreError> {
    in_transaction!(ctx.pool, StoreError, |tx| {
        match trigger_policies::hold(&tx, code, by).await? {
            HoldChange::Done(id) => HoldOutcome::Held(id),
            HoldChange::Already { id, held_by } => HoldOutcome::Unchanged {
                metric: id,
                held_by,
            },
            HoldChange::NotFound => HoldOutcome::NotFound,
        }
    })
}

/// Resumes a held metric: its waiting run is asked again now (one run with
/// the newest inputs), or canceled with `drop`.
#[instrument(skip(ctx))]
pub async fn resume(ctx: &Context, code: &str, drop: bool) -> Result<HoldOutcome, StoreError> {
    in_transaction!(ctx.pool, StoreError, |tx| {
        match trigger_policies::resume(&tx, code).await? {
            HoldChange::Done(id) => {
                let ids = [id.clone()];
                let dropped = if drop {
                    runs::cancel_pending_of(
                        &tx,
                        &ids,
                        "canceled: dropped when the metric was resumed",
                    )
                    .await?
                } else {
                    Vec::new()
                };
                // If an update holds the metric right now, the sweep asks
                // again at its next pass.
                pending::due_now(&tx, &id).await?;
                let (_, evaluated) = evaluate::claim_and_settle(&tx, ctx, &ids).await?;
                HoldOutcome::Resumed {
                    metric: id,
                    evaluated,
                    dropped,
                }
            }
            HoldChange::Already { id, held_by } => HoldOutcome::Unchanged {
                metric: id,
                held_by,
            },
            HoldChange::NotFound => HoldOutcome::NotFound,
        }
    })
}
