//! Processing a projection update for dataset D in one transaction (SPEC §5.3).

use std::collections::HashMap;

use tracing::instrument;

use super::{new_id, request, Context};
use crate::domain::events::ProjectionUpdate;
use crate::in_transaction;
use crate::store::runs::NewRun;
use crate::store::{catalog, event_log, pending, runs, updates, StoreError, Transaction};

/// What processing one update did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateSummary {
    /// The idempotency key was already recorded: nothing was done.
    pub duplicate: bool,
    pub update_id: Option<String>,
    /// Enabled metrics that depend on the dataset.
    pub dependent_metrics: usize,
    pub runs_created: usize,
    pub runs_queued: usize,
    /// Runs of dependent metrics still waiting for other datasets.
    pub runs_pending: usize,
    /// Outbox rows written (publish them right after commit).
    pub outbox_ids: Vec<i64>,
    pub queued_run_ids: Vec<String>,
}

/// Processes one update; retried transparently when it loses a race.
#[instrument(skip_all, fields(dataset_id = %update.dataset_id, event_key = %update.event_key()))]
pub async fn process(ctx: &Context, update: &ProjectionUpdate) -> Result<UpdateSummary, StoreError> {
    let summary = in_transaction!(ctx.pool, StoreError, |tx| process_in(&tx, ctx, update).await?)?;
    tracing::debug!(
        duplicate = summary.duplicate,
        dependent = summary.dependent_metrics,
        queued = summary.runs_queued,
        pending = summary.runs_pending,
        "projection update processed"
    );
    Ok(summary)
}

async fn process_in(tx: &Transaction<'_>, ctx: &Context, update: &ProjectionUpdate) -> Result<UpdateSummary, StoreError> {
    // 1 + 5: the key is recorded first so that a concurrent duplicate waits
    // on it and then sees it; it commits with everything else or not at all.
    let key = update.event_key();
    if !event_log::record(tx, &key, "projection_update", &update.to_json(), None).await? {
        return Ok(UpdateSummary {
            duplicate: true,
            ..UpdateSummary::default()
        });
    }
    // 2 + 3
    let inserted = updates::insert(tx, &new_id(), update).await?;
    let mut summary = UpdateSummary {
        update_id: Some(inserted.id.clone()),
        ..UpdateSummary::default()
    };
    // 4: dependent metrics, locked in id order.
    let metrics = catalog::lock_dependent_metrics(tx, &update.dataset_id).await?;
    summary.dependent_metrics = metrics.len();
    if metrics.is_empty() {
        return Ok(summary);
    }
    let new_ids: Vec<String> = metrics.iter().map(|_| new_id()).collect();
    let open = runs::open_pending_runs(tx, &metrics, &new_ids).await?;
    summary.runs_created = open.iter().filter(|r| r.created).count();
    let run_ids: Vec<String> = open.iter().map(|r| r.id.clone()).collect();
    pending::absorb(tx, &run_ids, &update.dataset_id, &inserted).await?;
    let complete = pending::complete_runs(tx, &run_ids).await?;
    summary.runs_queued = complete.len();
    summary.runs_pending = open.len() - complete.len();
    if complete.is_empty() {
        return Ok(summary);
    }
    let keyed: Vec<(String, String)> = complete.iter().map(|(id, ups)| (id.clone(), ups.join(","))).collect();
    runs::queue_pending(tx, &keyed).await?;
    let metric_of: HashMap<&str, &str> = open.iter().map(|r| (r.id.as_str(), r.metric_id.as_str())).collect();
    let code_of: HashMap<&str, &str> = metrics.iter().map(|m| (m.id.as_str(), m.code.as_str())).collect();
    let new_runs: Vec<NewRun> = complete
        .iter()
        .map(|(id, _)| {
            let metric_id = metric_of.get(id.as_str()).copied().unwrap_or_default();
            NewRun {
                id: id.clone(),
                metric_id: metric_id.to_string(),
                metric_code: code_of.get(metric_id).copied().unwrap_or_default().to_string(),
                attempt: 1,
            }
        })
        .collect();
    summary.outbox_ids = request::enqueue(tx, &new_runs, inserted.created_at, &ctx.settings).await?;
    summary.queued_run_ids = new_runs.into_iter().map(|r| r.id).collect();
    Ok(summary)
}
