//! Run lifecycle events (docs/semantics.md): started, heartbeat, completed.

use serde_json::Value;
use sha2::{Digest, Sha256};
use tracing::instrument;

use super::{request, Context};
use crate::domain::alert::{self, RunFailure};
use crate::domain::events::LifecycleEvent;
use crate::domain::ids::{OutboxId, RunId};
use crate::domain::run_state::{decide, should_retry, Decision, IgnoreReason, RunStatus};
use crate::domain::trace::TraceContext;
use crate::in_transaction;
use crate::store::{db_now, event_log, outbox, runs, StoreError, Transaction};

/// What an event did to its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleOutcome {
    Applied {
        from: RunStatus,
        to: RunStatus,
        /// The retry queued because the run failed with attempts left.
        retry_run_id: Option<RunId>,
        outbox_ids: Vec<OutboxId>,
    },
    /// The run's state did not allow the event; logged and counted.
    Ignored(IgnoreReason),
    /// No run has this id; recorded in `event_log`.
    UnknownRun,
}

/// The `event_log` key of a lifecycle event: its type, run and content, so
/// that a redelivered copy is recorded once.
pub fn event_key(event: &LifecycleEvent, raw: &Value) -> String {
    let digest = Sha256::digest(raw.to_string().as_bytes());
    format!(
        "{}:{}:{}",
        event.kind().as_str(),
        event.run_id(),
        hex::encode(&digest[..12])
    )
}

pub async fn handle(
    ctx: &Context,
    event: &LifecycleEvent,
    raw: &Value,
) -> Result<LifecycleOutcome, StoreError> {
    handle_traced(ctx, event, raw, None).await
}

/// [`handle`], with the trace context of the message that carried the
/// event (put on the alert of a run's last failed attempt; written out only
/// then).
#[instrument(skip_all, fields(run_id = %event.run_id(), event_type = event.kind().as_str()))]
pub async fn handle_traced(
    ctx: &Context,
    event: &LifecycleEvent,
    raw: &Value,
    trace: Option<&TraceContext>,
) -> Result<LifecycleOutcome, StoreError> {
    let outcome = in_transaction!(ctx.pool, StoreError, |tx| handle_in(
        &tx, ctx, event, raw, trace
    )
    .await?)?;
    match &outcome {
        LifecycleOutcome::Applied {
            from,
            to,
            retry_run_id,
            ..
        } => {
            tracing::debug!(%from, %to, retry = ?retry_run_id, "lifecycle event applied");
        }
        LifecycleOutcome::Ignored(reason) => tracing::debug!(%reason, "lifecycle event ignored"),
        LifecycleOutcome::UnknownRun => {
            tracing::debug!("lifecycle event for an unknown run ignored")
        }
    }
    Ok(outcome)
}

async fn handle_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    event: &LifecycleEvent,
    raw: &Value,
    trace: Option<&TraceContext>,
) -> Result<LifecycleOutcome, StoreError> {
    let run_id = event.run_id();
    event_log::record(
        tx,
        &event_key(event, raw),
        event.kind().as_str(),
        raw,
        Some(run_id),
    )
    .await?;
    let Some(run) = runs::get(tx, run_id).await? else {
        return Ok(LifecycleOutcome::UnknownRun);
    };
    let to = match decide(run.status, event.kind()) {
        Decision::Ignore(reason) => return Ok(LifecycleOutcome::Ignored(reason)),
        Decision::Apply(to) => to,
    };
    let transition = runs::Transition {
        run_id,
        from: run.status,
        to,
    };
    let changed = match event {
        LifecycleEvent::Started { started_at, .. } => {
            runs::mark_started(tx, transition, *started_at).await?
        }
        LifecycleEvent::Heartbeat { ts, progress, .. } => {
            runs::mark_heartbeat(tx, transition, *ts, *progress).await?
        }
        LifecycleEvent::Completed(c) => runs::mark_completed(tx, transition, c).await?,
    };
    if !changed {
        // Another worker changed the run between our read and our update:
        // run the transaction again so the decision is made on fresh state.
        return Err(StoreError::Conflict(format!(
            "run {run_id} left {} meanwhile",
            run.status
        )));
    }
    let (mut retry_run_id, mut outbox_ids) = (None, Vec::new());
    if should_retry(to, run.attempt, run.max_attempts) {
        let retry = runs::Retry {
            of: run.id.clone(),
            id: RunId::generate(),
        };
        let retries = runs::create_retries(tx, &[retry]).await?;
        if let Some(retry) = retries.first() {
            let now = db_now(tx).await?;
            outbox_ids =
                request::enqueue(tx, &retries, now, &ctx.settings, &Default::default()).await?;
            retry_run_id = Some(retry.id.clone());
        }
    } else if ctx.alerts && to == RunStatus::Failed {
        let error = match event {
            LifecycleEvent::Completed(c) => c.error.as_deref(),
            _ => None,
        };
        let traceparent = trace.map(ToString::to_string);
        let failed = alert::run_failed(&RunFailure {
            run_id,
            metric_code: &run.metric_code,
            attempt: run.attempt,
            max_attempts: run.max_attempts,
            status: to.as_str(),
            error,
            traceparent: traceparent.as_deref(),
            at: db_now(tx).await?,
        });
        outbox_ids = outbox::insert_alerts(tx, &[failed]).await?;
    }
    Ok(LifecycleOutcome::Applied {
        from: run.status,
        to,
        retry_run_id,
        outbox_ids,
    })
}
