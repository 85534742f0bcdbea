//! Processing a projection update for dataset D in one transaction
//! (docs/semantics.md).
//!
//! Round trips: (1) record the event key and insert the update, (2) lock the
//! dependent metrics in id order, (3) read their pending runs, sources and
//! the newest update of each required dataset, then decide every run in
//! memory ([`absorb`]) and (4) send all writes in one pipeline. Locks are
//! held only for (3), (4) and the commit.

use std::collections::HashMap;

use tracing::instrument;

use super::{request, Context};
use crate::domain::events::ProjectionUpdate;
use crate::domain::ids::{DatasetId, MetricId, RunId, UpdateId};
use crate::domain::pending_run::{absorb, is_complete, update_set_key, Received, Slot};
use crate::domain::run_request::{self, RunRequest, RunRequestInput, UsedUpdate};
use crate::in_transaction;
use crate::store::catalog::{self, LockedMetric, SeriesSources};
pub use crate::store::outbox::Origin;
use crate::store::runs::CreatedRun;
use crate::store::updates::InsertedUpdate;
use crate::store::{event_log, pending, runs, updates, StoreError, Transaction};

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
    let summary = in_transaction!(ctx.pool, StoreError, |tx| process_in(
        &tx, ctx, update, origin
    )
    .await?)?;
    tracing::debug!(
        duplicate = summary.duplicate,
        dependent = summary.dependent_metrics,
        queued = summary.runs_queued,
        pending = summary.runs_pending,
        "projection update processed"
    );
    Ok(summary)
}

/// One dependent metric's run after the update, before it is written.
struct Decided<'m> {
    metric: &'m LockedMetric,
    run_id: RunId,
    created: bool,
    slots: Vec<Slot>,
    changed: Vec<usize>,
}

async fn process_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    update: &ProjectionUpdate,
    origin: &Origin,
) -> Result<UpdateSummary, StoreError> {
    // Steps 1, 2, 3 and 5: the key is recorded first, so that a concurrent
    // duplicate waits on it and then sees it; all commits together or not at all.
    let key = update.event_key();
    let payload = update.to_json();
    let update_id = UpdateId::generate();
    let (fresh, inserted) = futures::try_join!(
        event_log::record(tx, &key, "projection_update", &payload, None),
        updates::insert(tx, &update_id, update)
    )?;
    let (true, Some(inserted)) = (fresh, inserted) else {
        return Ok(UpdateSummary {
            duplicate: true,
            ..UpdateSummary::default()
        });
    };
    let mut summary = UpdateSummary {
        update_id: Some(inserted.id.clone()),
        ..UpdateSummary::default()
    };

    // Step 4: dependent metrics, locked in id order.
    let metrics = catalog::lock_dependent_metrics(tx, &update.dataset_id).await?;
    summary.dependent_metrics = metrics.len();
    if metrics.is_empty() {
        return Ok(summary);
    }
    let ids: Vec<MetricId> = metrics.iter().map(|m| m.id.clone()).collect();
    let (open, sources, newest) = futures::try_join!(
        pending::open_runs(tx, &ids),
        catalog::series_sources(tx, &ids),
        updates::newest_for_metrics(tx, &ids)
    )?;
    let decided = decide(&metrics, open, &sources, &newest, update, &inserted);

    let complete: Vec<&Decided> = decided.iter().filter(|d| is_complete(&d.slots)).collect();
    summary.runs_created = decided.iter().filter(|d| d.created).count();
    summary.runs_queued = complete.len();
    summary.runs_pending = decided.len() - complete.len();
    let requests = build_requests(tx, ctx, &complete, &sources, &newest, &inserted).await?;
    summary.outbox_ids = write(tx, &decided, &requests, origin).await?;
    summary.queued_run_ids = complete.iter().map(|d| d.run_id.clone()).collect();
    Ok(summary)
}

fn decide<'m>(
    metrics: &'m [LockedMetric],
    open: Vec<pending::OpenPending>,
    sources: &HashMap<MetricId, SeriesSources>,
    newest: &HashMap<DatasetId, UsedUpdate>,
    update: &ProjectionUpdate,
    inserted: &InsertedUpdate,
) -> Vec<Decided<'m>> {
    let newest: HashMap<DatasetId, Received> = newest
        .iter()
        .map(|(d, u)| {
            (
                d.clone(),
                Received {
                    update_id: u.update_id.clone(),
                    at: u.created_at,
                },
            )
        })
        .collect();
    let own = Received {
        update_id: inserted.id.clone(),
        at: inserted.created_at,
    };
    let mut open: HashMap<MetricId, pending::OpenPending> =
        open.into_iter().map(|o| (o.metric_id.clone(), o)).collect();
    metrics
        .iter()
        .map(|m| {
            let (run_id, created, mut slots) = match open.remove(&m.id) {
                Some(o) => (o.run_id, false, o.slots),
                None => {
                    let required = sources
                        .get(&m.id)
                        .map(SeriesSources::required_datasets)
                        .unwrap_or_default();
                    let slots = required
                        .into_iter()
                        .map(|dataset_id| Slot {
                            dataset_id,
                            required_days: m.required_days,
                            received: None,
                        })
                        .collect();
                    (RunId::generate(), true, slots)
                }
            };
            let changed = absorb(
                &mut slots,
                &update.dataset_id,
                &own,
                &newest,
                inserted.created_at,
            );
            Decided {
                metric: m,
                run_id,
                created,
                slots,
                changed,
            }
        })
        .collect()
}

async fn build_requests<'m>(
    tx: &Transaction<'_>,
    ctx: &Context,
    complete: &[&'m Decided<'m>],
    sources: &HashMap<MetricId, SeriesSources>,
    newest: &HashMap<DatasetId, UsedUpdate>,
    inserted: &InsertedUpdate,
) -> Result<Vec<RunRequest<'m>>, StoreError> {
    let mut known: HashMap<UpdateId, UsedUpdate> = newest
        .values()
        .map(|u| (u.update_id.clone(), u.clone()))
        .collect();
    let missing: Vec<UpdateId> = complete
        .iter()
        .flat_map(|d| {
            d.slots
                .iter()
                .filter_map(|s| s.received.as_ref().map(|r| r.update_id.clone()))
        })
        .filter(|id| !known.contains_key(id))
        .collect();
    if !missing.is_empty() {
        // A run kept an older, still fresh update: look its details up.
        known.extend(updates::by_ids(tx, &missing).await?);
    }
    let empty = SeriesSources::default();
    let empty = &empty;
    complete
        .iter()
        .map(|d| {
            let used: Vec<UsedUpdate> = d
                .slots
                .iter()
                .filter_map(|s| s.received.as_ref().and_then(|r| known.get(&r.update_id)).cloned())
                .collect();
            if used.len() != d.slots.len() {
                return Err(StoreError::Corrupt(format!("run {} uses an update that does not exist", d.run_id)));
            }
            let src = sources.get(&d.metric.id).unwrap_or(empty);
            if !src.orphan_series.is_empty() {
                tracing::debug!(run_id = %d.run_id, metric_code = %d.metric.code, series = ?src.orphan_series,
                    "metric references series that no dataset provides");
            }
            Ok(run_request::build(
                &RunRequestInput {
                    run_id: &d.run_id,
                    metric_code: &d.metric.code,
                    expression_type: &d.metric.expression_type,
                    expression_json: &d.metric.expression_json,
                    attempt: 1,
                    requested_at: inserted.created_at,
                    series_datasets: &src.series_datasets,
                    updates: &used,
                },
                &ctx.settings,
            ))
        })
        .collect()
}

/// All writes of the update, pipelined in one round trip.
async fn write(
    tx: &Transaction<'_>,
    decided: &[Decided<'_>],
    requests: &[RunRequest<'_>],
    origin: &Origin,
) -> Result<Vec<i64>, StoreError> {
    let keys: Vec<Option<String>> = decided
        .iter()
        .map(|d| is_complete(&d.slots).then(|| update_set_key(&d.slots)))
        .collect();
    let created: Vec<CreatedRun<'_>> = decided
        .iter()
        .zip(&keys)
        .filter(|(d, _)| d.created)
        .map(|(d, key)| CreatedRun {
            id: &d.run_id,
            metric_id: &d.metric.id,
            metric_code: &d.metric.code,
            queued_with_key: key.as_deref(),
        })
        .collect();
    // A run complete at creation never waits: it gets no pending rows (its
    // inputs are recorded in run_dataset_updates like every requested run's).
    let new_rows: Vec<pending::SlotRow<'_>> = decided
        .iter()
        .filter(|d| d.created && !is_complete(&d.slots))
        .flat_map(|d| {
            d.slots.iter().map(move |slot| pending::SlotRow {
                run_id: &d.run_id,
                slot,
            })
        })
        .collect();
    let changed_rows: Vec<pending::SlotRow<'_>> = decided
        .iter()
        .filter(|d| !d.created)
        .flat_map(|d| {
            d.changed.iter().map(move |&i| pending::SlotRow {
                run_id: &d.run_id,
                slot: &d.slots[i],
            })
        })
        .collect();
    let to_queue: Vec<runs::Completed<'_>> = decided
        .iter()
        .zip(&keys)
        .filter(|(d, _)| !d.created)
        .filter_map(|(d, key)| {
            key.as_deref().map(|update_set_key| runs::Completed {
                run_id: &d.run_id,
                update_set_key,
            })
        })
        .collect();
    let used: Vec<runs::Use<'_>> = decided
        .iter()
        .filter(|d| is_complete(&d.slots))
        .flat_map(|d| {
            d.slots.iter().filter_map(move |s| {
                s.received.as_ref().map(|r| runs::Use {
                    run_id: &d.run_id,
                    update_id: &r.update_id,
                })
            })
        })
        .collect();
    // Sent in this order; each statement only needs rows of the ones before it.
    crate::store::prepare_update_writes(tx).await?;
    let (_, _, _, _, _, outbox_ids) = futures::try_join!(
        runs::insert_created(tx, &created),
        pending::insert_rows(tx, &new_rows),
        pending::update_rows(tx, &changed_rows),
        runs::queue_pending(tx, &to_queue),
        runs::record_used(tx, &used),
        request::write(tx, requests, origin),
    )?;
    Ok(outbox_ids)
}
