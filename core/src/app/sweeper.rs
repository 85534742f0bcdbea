//! Timeouts and retries (docs/semantics.md), run periodically by the run-lifecycle
//! worker; safe with many replicas (rows are claimed with SKIP LOCKED and
//! moved with conditional updates).

use std::time::Duration;

use tracing::instrument;

use super::{request, Context};
use crate::domain::alert::{self, Alert, RunFailure};
use crate::domain::ids::{OutboxId, RunId};
use crate::domain::run_state::RunStatus;
use crate::in_transaction;
use crate::store::{db_now, outbox, runs, StoreError, Transaction};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// A `running` run with no start or heartbeat received for this long
    /// times out; `None` for runners that send no heartbeats (a metric's
    /// `run_timeout_secs` then bounds its runs).
    pub heartbeat: Option<Duration>,
    /// A `queued` or `dispatched` run not started for this long times out.
    pub start: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            heartbeat: Some(Duration::from_secs(600)),
            start: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub timed_out: Vec<RunId>,
    pub retries: Vec<RunId>,
    pub outbox_ids: Vec<OutboxId>,
}

/// Rows handled per transaction: keeps each one short.
const BATCH: i64 = 200;

/// Times out every overdue run and queues the retries they earn.
#[instrument(skip_all)]
pub async fn sweep(ctx: &Context, timeouts: Timeouts) -> Result<SweepSummary, StoreError> {
    let mut total = SweepSummary::default();
    loop {
        let batch = in_transaction!(ctx.pool, StoreError, |tx| sweep_batch(&tx, ctx, timeouts)
            .await?)?;
        let done = (batch.timed_out.len() as i64) < BATCH;
        for id in &batch.timed_out {
            tracing::info!(run_id = %id, "run timed out");
        }
        total.timed_out.extend(batch.timed_out);
        total.retries.extend(batch.retries);
        total.outbox_ids.extend(batch.outbox_ids);
        if done {
            return Ok(total);
        }
    }
}

async fn sweep_batch(
    tx: &Transaction<'_>,
    ctx: &Context,
    t: Timeouts,
) -> Result<SweepSummary, StoreError> {
    let timed = runs::time_out_overdue(
        tx,
        t.heartbeat.map(|h| h.as_secs_f64()),
        t.start.as_secs_f64(),
        BATCH,
    )
    .await?;
    if timed.is_empty() {
        return Ok(SweepSummary::default());
    }
    let to_retry: Vec<runs::Retry> = timed
        .iter()
        .map(|r| runs::Retry {
            of: r.id.clone(),
            id: RunId::generate(),
        })
        .collect();
    let retries = runs::create_retries(tx, &to_retry).await?;
    let now = db_now(tx).await?;
    let mut outbox_ids = if retries.is_empty() {
        Vec::new()
    } else {
        request::enqueue(tx, &retries, now, &ctx.settings, &Default::default()).await?
    };
    if ctx.alerts {
        // A run with no retry was its metric's last attempt.
        let last: Vec<Alert> = timed
            .iter()
            .zip(&to_retry)
            .filter(|(_, asked)| !retries.iter().any(|r| r.id == asked.id))
            .map(|(t, _)| t)
            .map(|t| {
                alert::run_failed(&RunFailure {
                    run_id: &t.id,
                    metric_code: &t.metric_code,
                    attempt: t.attempt,
                    max_attempts: t.max_attempts,
                    status: RunStatus::TimedOut.as_str(),
                    error: Some(&t.reason),
                    traceparent: None,
                    at: now,
                })
            })
            .collect();
        outbox_ids.extend(outbox::insert_alerts(tx, &last).await?);
    }
    Ok(SweepSummary {
        timed_out: timed.into_iter().map(|r| r.id).collect(),
        retries: retries.into_iter().map(|r| r.id).collect(),
        outbox_ids,
    })
}
