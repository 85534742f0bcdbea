//! Processing a projection update for dataset D (docs/semantics.md).
//!
//! In one transaction: (1) record the event key and insert the update,
//! (2) claim the dependent metrics without waiting (`SKIP LOCKED`); for each
//! one another transaction holds, (3) write a backlog row, and evaluate the
//! claimed ones (`evaluate::settle`): their backlog first, then this
//! update, then rows other transactions added meanwhile. After the commit,
//! (4) evaluate whatever backlog the dependent metrics still have
//! ([`backlog::drain`]): rows this transaction wrote, and rows others wrote
//! just before it committed.

use std::time::Duration;

use tracing::instrument;

use super::evaluate::{self, Evaluated, OwnUpdate};
use super::{backlog, freshness, Context};
use crate::domain::events::EventType;
use crate::domain::events::ProjectionUpdate;
use crate::domain::ids::{MetricId, OutboxId, UpdateId};
use crate::in_transaction;
use crate::store::catalog;
use crate::store::freshness as store_freshness;
pub use crate::store::requests::Origin;
use crate::store::{backlog as backlog_rows, event_log, updates, StoreError, Transaction};

/// What processing one update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// The idempotency key was already recorded: nothing was done.
    pub duplicate: bool,
    pub update_id: Option<UpdateId>,
    /// Enabled metrics that depend on the dataset.
    pub dependent_metrics: usize,
    /// Dependent metrics another transaction held: this update went to
    /// their backlog.
    pub deferred: usize,
    /// What the update's transaction evaluated (its own update, the
    /// backlog of its metrics and of those handed off to it) and the
    /// backlog drained after its commit. `outbox_ids` are published right
    /// after the commit.
    pub evaluated: Evaluated,
    /// How many updates its transaction committed together (1: alone).
    pub batch: usize,
    /// The alert of a late dataset that this update put back on time,
    /// queued in its transaction; published after the commit.
    pub alerts: Vec<OutboxId>,
}

/// The log line's `detail`.
impl std::fmt::Display for UpdateSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.evaluated;
        write!(
            f,
            "update {}: {} dependent metrics; runs created {}, queued {}, pending {}",
            self.update_id.as_ref().map_or("-", |u| u.as_str()),
            self.dependent_metrics,
            e.runs_created,
            e.runs_queued,
            e.runs_pending
        )?;
        if self.batch > 1 {
            write!(f, "; committed with {} other updates", self.batch - 1)?;
        }
        Ok(())
    }
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
pub async fn process_with(
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
) -> Result<UpdateSummary, StoreError> {
    process_with_then(ctx, update, origin, |_| ()).await
}

/// [`process_with`], calling `committed` with the summary as soon as the
/// update is committed (before the after-commit backlog check), so that a
/// caller can hand its run requests to the relay without waiting for it.
#[instrument(skip_all, fields(dataset_id = %update.dataset_id, event_key = %update.event_key()))]
pub async fn process_with_then(
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
    committed: impl FnOnce(&mut [UpdateSummary]),
) -> Result<UpdateSummary, StoreError> {
    let summary = process_batch_then(ctx, &[(update, origin)], committed)
        .await?
        .pop()
        .ok_or_else(|| StoreError::Corrupt("an update without a summary".into()))?;
    tracing::debug!(
        duplicate = summary.duplicate,
        dependent = summary.dependent_metrics,
        queued = summary.evaluated.runs_queued,
        pending = summary.evaluated.runs_pending,
        deferred = summary.deferred,
        backlog = summary.evaluated.backlog_evaluated,
        "projection update processed"
    );
    Ok(summary)
}

/// Processes several updates in one transaction, in order (one commit for
/// all): what each did, in the same order. Any failure fails them all and
/// commits nothing; the caller then processes each alone
/// ([`process_with`]), so that one bad update never fails the others.
pub async fn process_batch(
    ctx: &Context,
    updates: &[(&ProjectionUpdate, &Origin)],
) -> Result<Vec<UpdateSummary>, StoreError> {
    process_batch_then(ctx, updates, |_| ()).await
}

/// [`process_batch`], calling `committed` with the summaries (in the same
/// order) as soon as the transaction is committed, before the after-commit
/// backlog check: the worker hands the run requests to its relay there.
#[instrument(skip_all, fields(updates = updates.len()))]
pub async fn process_batch_then(
    ctx: &Context,
    updates: &[(&ProjectionUpdate, &Origin)],
    committed: impl FnOnce(&mut [UpdateSummary]),
) -> Result<Vec<UpdateSummary>, StoreError> {
    let handed_off = ctx
        .handoff
        .as_ref()
        .map(|c| c.take(Duration::ZERO))
        .unwrap_or_default();
    let result = in_transaction!(ctx.pool, StoreError, |tx| {
        let mut summaries = Vec::with_capacity(updates.len());
        let mut to_recheck = Vec::new();
        for (i, (update, origin)) in updates.iter().enumerate() {
            // The handed-off backlog goes with the first update only.
            let handed: &[MetricId] = if i == 0 { &handed_off } else { &[] };
            let (mut summary, dependents) = process_in(&tx, ctx, update, origin, handed).await?;
            summary.batch = updates.len();
            summaries.push(summary);
            to_recheck.extend(dependents);
        }
        (summaries, to_recheck)
    });
    let (mut summaries, mut to_recheck) = match result {
        Ok(done) => done,
        Err(e) => {
            // Nothing was taken: the handed-off metrics wait for the next update.
            if let Some(handoff) = &ctx.handoff {
                handoff.add(handed_off);
            }
            return Err(e);
        }
    };
    committed(&mut summaries);
    to_recheck.extend(handed_off);
    to_recheck.sort();
    to_recheck.dedup();
    // The updates are committed: a failure from here on loses nothing (the
    // rows stay in the backlog for the sweep), so it is reported, not returned.
    if let Some(last) = summaries.last_mut() {
        if let Err(e) = after_commit(ctx, to_recheck, last).await {
            tracing::warn!(error = %e, "evaluating the backlog after the commit failed; the backlog sweep will");
        }
    }
    Ok(summaries)
}

/// Step 4: the metrics still with a backlog are handed off to this worker's
/// next update, or drained now when no handoff is kept (outside a worker).
async fn after_commit(
    ctx: &Context,
    to_recheck: Vec<MetricId>,
    summary: &mut UpdateSummary,
) -> Result<(), StoreError> {
    if to_recheck.is_empty() {
        return Ok(());
    }
    if let Some(handoff) = &ctx.handoff {
        handoff.add(backlog_rows::metrics_with_backlog(&ctx.pool, &to_recheck).await?);
        return Ok(());
    }
    // Written after the hook: no relay was handed these rows, so they are
    // not born leased (the sweeper claims them).
    let unleased = Context {
        publish_lease: None,
        ..ctx.clone()
    };
    summary.evaluated += backlog::drain(&unleased, to_recheck).await?;
    Ok(())
}

/// Steps 1–3, and the backlog of the `handed_off` metrics; returns the summary
/// and the dependent metrics to check again after the commit.
async fn process_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
    handed_off: &[MetricId],
) -> Result<(UpdateSummary, Vec<MetricId>), StoreError> {
    // The key is recorded first, so that a concurrent duplicate waits on it
    // and then sees it; all commits together or not at all. The claim is
    // pipelined behind them (one round trip for the three): the server runs
    // them in this order. When this process has seen the dataset before, the
    // state of the metrics its last claim found is read behind the claim, in
    // the same round trip.
    let key = update.event_key();
    let payload = update.to_json();
    let update_id = UpdateId::generate();
    let guessed = ctx.dependents.guess(&update.dataset_id);
    updates::prepare_receipt(tx).await?;
    let (fresh, inserted, (claimed, read), late) = futures::try_join!(
        event_log::record(
            tx,
            &key,
            EventType::ProjectionUpdate.as_str(),
            &payload,
            None
        ),
        updates::insert(tx, &update_id, update),
        evaluate::claim_then_read(tx, &update.dataset_id, guessed.as_deref(), Some(&update_id)),
        store_freshness::on_update(tx, &update.dataset_id),
    )?;
    ctx.dependents.learn(
        &update.dataset_id,
        claimed.locked.iter().map(|m| &m.id).chain(&claimed.skipped),
    );
    let (true, Some(inserted)) = (fresh, inserted) else {
        // A duplicate evaluates nothing, but it held the metrics it claimed
        // until its commit: backlog rows written meanwhile are looked at
        // after the commit, as an update's own dependents are.
        let duplicate = UpdateSummary {
            duplicate: true,
            ..UpdateSummary::default()
        };
        let held = claimed.locked.into_iter().map(|m| m.id).collect();
        return Ok((duplicate, held));
    };
    let (_, done) = futures::try_join!(
        backlog_rows::insert(tx, &claimed.skipped, &inserted.id, origin),
        evaluate::settle(
            tx,
            ctx,
            &claimed.locked,
            Some(OwnUpdate {
                update: &inserted.used,
                origin,
            }),
            read,
        )
    )?;
    let handed_off = take_handed_off(tx, ctx, handed_off, &claimed).await?;
    let alerts = match late {
        Some(late) => freshness::on_time_again(tx, ctx, late, inserted.created_at).await?,
        None => Vec::new(),
    };
    let mut evaluated = done;
    evaluated += handed_off;
    let summary = UpdateSummary {
        duplicate: false,
        update_id: Some(inserted.id.clone()),
        dependent_metrics: claimed.locked.len() + claimed.skipped.len(),
        deferred: claimed.skipped.len(),
        evaluated,
        batch: 1,
        alerts,
    };
    let mut dependents: Vec<MetricId> = claimed.locked.into_iter().map(|m| m.id).collect();
    dependents.extend(claimed.skipped);
    Ok((summary, dependents))
}

/// Evaluates, in this transaction, the backlog of handed-off metrics that are
/// not among the update's own (whose backlog is evaluated with it).
async fn take_handed_off(
    tx: &Transaction<'_>,
    ctx: &Context,
    handed_off: &[MetricId],
    claimed: &catalog::Claimed,
) -> Result<Evaluated, StoreError> {
    let others: Vec<MetricId> = handed_off
        .iter()
        .filter(|id| !claimed.locked.iter().any(|m| &m.id == *id))
        .filter(|id| !claimed.skipped.contains(id))
        .cloned()
        .collect();
    if others.is_empty() {
        return Ok(Evaluated::default());
    }
    Ok(evaluate::claim_and_settle(tx, ctx, &others).await?.1)
}
