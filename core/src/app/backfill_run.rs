//! Requesting a backfill's points (docs/semantics.md, "Backfills"): each
//! tick a worker locks the running and paused backfills no other worker
//! holds and, for each, settles the points whose runs ended, fails the
//! points downstream of a failed one, requests the next ready points in
//! order up to its `max_in_flight`, and finishes it when nothing is left.
//! Its runs go through the outbox like any run; it takes no metric's lock
//! and never touches a metric's live pending run.

use chrono::{DateTime, Utc};

use crate::app::{request, Context};
use crate::domain::alert::{self, Alert, BackfillEvent, FailedPoint};
use crate::domain::backfill::{Counts, Status};
use crate::domain::ids::{BackfillId, OutboxId, RunId};
use crate::in_transaction;
use crate::store::backfills::{self, Active, Ended};
use crate::store::runs::{self, NewRun, QueuedRun};
use crate::store::{db_now, outbox, StoreError, Transaction};

/// Backfills one tick looks at, at most.
pub const PER_TICK: i64 = 16;

/// How often a worker advances the running backfills: a point's run that
/// ends is settled, and the next requested, within one tick (an idle tick
/// is one indexed read).
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// What one tick did.
#[derive(Debug, Default, Clone)]
pub struct Advanced {
    pub backfills: usize,
    pub requested: Vec<RunId>,
    /// Points whose runs ended (succeeded, failed, canceled).
    pub settled: usize,
    pub finished: Vec<(BackfillId, Status)>,
    /// Outbox rows to publish: the runs' requests and the alerts.
    pub outbox_ids: Vec<OutboxId>,
}

/// Advances up to `limit` backfills in one transaction.
pub async fn advance(ctx: &Context, limit: i64) -> Result<Advanced, StoreError> {
    in_transaction!(ctx.pool, StoreError, |tx| advance_in(&tx, ctx, limit)
        .await?)
}

async fn advance_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    limit: i64,
) -> Result<Advanced, StoreError> {
    let active = backfills::claim_active(tx, limit).await?;
    let mut out = Advanced {
        backfills: active.len(),
        ..Default::default()
    };
    if active.is_empty() {
        return Ok(out);
    }
    let now = db_now(tx).await?;
    let mut alerts = Vec::new();
    for b in &active {
        let ended = backfills::settle(tx, &b.id).await?;
        out.settled += ended.len();
        for e in &ended {
            tracing::debug!(backfill = %b.id, metric = %e.metric_code, as_of = %e.as_of, run_id = %e.run_id,
                status = %e.status, "backfill point ended");
        }
        if backfills::has_edges(tx, &b.id).await? {
            backfills::fail_downstream_of_failed(tx, &b.id).await?;
        }
        let failed = ended.iter().find(|e| e.status == "failed");
        if let Some(f) = failed {
            if backfills::first_failure(tx, &b.id).await? && ctx.alerts {
                alerts.push(event(tx, b, Status::Running, Some(f), now).await?);
            }
        }
        if b.status == Status::Running {
            let (ids, requested) = request_next(tx, ctx, b, now).await?;
            out.outbox_ids.extend(ids);
            out.requested.extend(requested);
        }
        if let Some(status) = backfills::finish_if_done(tx, &b.id).await? {
            tracing::info!(backfill = %b.id, status = status.as_str(), "backfill finished");
            // A failure was alerted when its point failed; a backfill whose
            // runs an operator canceled is alerted as failed here.
            let alert = match status {
                Status::Completed => true,
                _ => backfills::first_failure(tx, &b.id).await?,
            };
            if alert && ctx.alerts {
                alerts.push(event(tx, b, status, None, now).await?);
            }
            out.finished.push((b.id.clone(), status));
        }
    }
    out.outbox_ids
        .extend(outbox::insert_alerts(tx, &alerts).await?);
    Ok(out)
}

/// Requests the next ready points of a running backfill, up to its free slots.
async fn request_next(
    tx: &Transaction<'_>,
    ctx: &Context,
    b: &Active,
    now: DateTime<Utc>,
) -> Result<(Vec<OutboxId>, Vec<RunId>), StoreError> {
    let slots = i64::from(b.max_in_flight) - backfills::in_flight(tx, &b.id).await?;
    if slots <= 0 {
        return Ok(Default::default());
    }
    let ready = backfills::ready(tx, &b.id, slots).await?;
    if ready.is_empty() {
        return Ok(Default::default());
    }
    let new_runs: Vec<NewRun> = ready
        .iter()
        .map(|p| NewRun {
            id: RunId::generate(),
            metric_id: p.metric_id.clone(),
            metric_code: p.metric_code.clone(),
            attempt: 1,
            trigger: None,
        })
        .collect();
    let rows: Vec<QueuedRun> = ready
        .iter()
        .zip(&new_runs)
        .map(|(p, run)| QueuedRun {
            run,
            inputs: &p.inputs,
            backfill: Some((&b.id, p.as_of)),
        })
        .collect();
    runs::insert_queued(tx, &rows).await?;
    let ids = request::enqueue(tx, &new_runs, now, &ctx.settings, &Default::default()).await?;
    let marked: Vec<_> = ready
        .iter()
        .zip(&new_runs)
        .map(|(p, r)| (&p.metric_id, p.as_of, &r.id))
        .collect();
    backfills::mark_requested(tx, &b.id, &marked).await?;
    for (p, r) in ready.iter().zip(&new_runs) {
        tracing::info!(backfill = %b.id, metric = %p.metric_code, as_of = %p.as_of, run_id = %r.id,
            outcome = "requested", "backfill point");
    }
    Ok((ids, new_runs.into_iter().map(|r| r.id).collect()))
}

async fn event(
    tx: &Transaction<'_>,
    b: &Active,
    status: Status,
    failed: Option<&Ended>,
    now: DateTime<Utc>,
) -> Result<Alert, StoreError> {
    let counts = backfills::counts(tx, std::slice::from_ref(&b.id), 60.0)
        .await?
        .remove(&b.id)
        .map(|c| c.0)
        .unwrap_or(Counts::default());
    let as_of = failed.map(|f| alert::moment(f.as_of));
    Ok(alert::backfill(&BackfillEvent {
        backfill_id: &b.id,
        metrics: &b.metrics,
        counts,
        status: status.as_str(),
        failed: failed.zip(as_of.as_deref()).map(|(f, as_of)| FailedPoint {
            metric_code: &f.metric_code,
            as_of: as_of.to_string(),
            run_id: Some(f.run_id.as_str()),
            error: f.error.as_deref(),
        }),
        at: now,
    }))
}
