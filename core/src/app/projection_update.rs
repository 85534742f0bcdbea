//! Processing a projection update for dataset D (docs/semantics.md).
//!
//! In one transaction: (1) record the event key and insert the update,
//! (2) claim the dependent metrics without waiting (`SKIP LOCKED`); for each
//! one another transaction holds, (3) write a backlog row, and evaluate the
//! claimed ones ([`evaluate`]): their backlog first, then this update. After
//! the commit, (4) evaluate whatever backlog the dependent metrics still have
//! ([`backlog::drain`]): rows this transaction wrote, and rows others wrote
//! while it held their metrics.

use tracing::instrument;

use super::evaluate::{self, Own};
use super::{backlog, Context};
use crate::domain::events::ProjectionUpdate;
use crate::domain::ids::{MetricId, RunId, UpdateId};
use crate::in_transaction;
use crate::store::catalog;
pub use crate::store::outbox::Origin;
use crate::store::{backlog as backlog_rows, event_log, updates, StoreError, Transaction};

/// What processing one update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// The idempotency key was already recorded: nothing was done.
    pub duplicate: bool,
    pub update_id: Option<UpdateId>,
    /// Enabled metrics that depend on the dataset.
    pub dependent_metrics: usize,
    pub runs_created: usize,
    pub runs_queued: usize,
    /// Runs of dependent metrics still waiting for other datasets.
    pub runs_pending: usize,
    /// Dependent metrics another transaction held: this update went to
    /// their backlog.
    pub deferred: usize,
    /// Backlog rows evaluated, in this transaction and after its commit.
    pub backlog_evaluated: usize,
    /// Outbox rows written (publish them right after commit).
    pub outbox_ids: Vec<i64>,
    pub queued_run_ids: Vec<RunId>,
}

/// Processes one update; retried transparently when it loses a race.
pub async fn process(
    ctx: &Context,
    update: &ProjectionUpdate,
) -> Result<UpdateSummary, StoreError> {
    process_with(ctx, update, &Origin::default()).await
}

/// [`process`], with where the update came from (trace context, send time)
/// recorded on the run requests it causes.
#[instrument(skip_all, fields(dataset_id = %update.dataset_id, event_key = %update.event_key()))]
pub async fn process_with(
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
) -> Result<UpdateSummary, StoreError> {
    let (mut summary, dependents) = in_transaction!(ctx.pool, StoreError, |tx| process_in(
        &tx, ctx, update, origin
    )
    .await?)?;
    if !dependents.is_empty() {
        // The update is committed: a failure here loses nothing (the rows stay
        // in the backlog for the sweep), so it is reported, not returned.
        match backlog::drain(ctx, dependents).await {
            Ok(d) => {
                summary.backlog_evaluated += d.backlog_evaluated;
                summary.outbox_ids.extend(d.outbox_ids);
                summary.queued_run_ids.extend(d.queued_run_ids);
            }
            Err(e) => {
                tracing::warn!(error = %e, "evaluating the backlog after the commit failed; the backlog sweep will")
            }
        }
    }
    tracing::debug!(
        duplicate = summary.duplicate,
        dependent = summary.dependent_metrics,
        queued = summary.runs_queued,
        pending = summary.runs_pending,
        deferred = summary.deferred,
        backlog = summary.backlog_evaluated,
        "projection update processed"
    );
    Ok(summary)
}

/// Steps 1–3; returns the summary and the dependent metrics to look at
/// after the commit.
async fn process_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
) -> Result<(UpdateSummary, Vec<MetricId>), StoreError> {
    // The key is recorded first, so that a concurrent duplicate waits on it
    // and then sees it; all commits together or not at all.
    let key = update.event_key();
    let payload = update.to_json();
    let update_id = UpdateId::generate();
    let (fresh, inserted) = futures::try_join!(
        event_log::record(tx, &key, "projection_update", &payload, None),
        updates::insert(tx, &update_id, update)
    )?;
    let (true, Some(inserted)) = (fresh, inserted) else {
        let duplicate = UpdateSummary {
            duplicate: true,
            ..UpdateSummary::default()
        };
        return Ok((duplicate, Vec::new()));
    };
    let claimed = catalog::claim_dependent_metrics(tx, &update.dataset_id).await?;
    let (_, done) = futures::try_join!(
        backlog_rows::insert(tx, &claimed.skipped, &inserted.id, origin),
        evaluate::settle(
            tx,
            ctx,
            &claimed.locked,
            Some(Own {
                update: &inserted.used,
                origin,
            }),
        )
    )?;
    let summary = UpdateSummary {
        duplicate: false,
        update_id: Some(inserted.id.clone()),
        dependent_metrics: claimed.locked.len() + claimed.skipped.len(),
        runs_created: done.runs_created,
        runs_queued: done.runs_queued,
        runs_pending: done.runs_pending,
        deferred: claimed.skipped.len(),
        backlog_evaluated: done.backlog_evaluated,
        outbox_ids: done.outbox_ids,
        queued_run_ids: done.queued_run_ids,
    };
    let mut dependents: Vec<MetricId> = claimed.locked.into_iter().map(|m| m.id).collect();
    dependents.extend(claimed.skipped);
    Ok((summary, dependents))
}
