//! Evaluating metric backlogs (docs/semantics.md, "Contention").
//!
//! An update whose dependent metric is held by another transaction leaves a
//! backlog row instead of waiting. Every row is taken by a live handler:
//! a row committed before the metric's holder commits is seen by that
//! holder's [`drain`] after its commit; a row committed later is seen by its
//! own writer's [`drain`], which either claims the metric or finds it held by
//! a transaction whose own drain comes after. Rows of a handler that stopped
//! in between, or of a metric held by a transaction that does not drain
//! (a trigger, a catalog apply), are taken by the periodic [`sweep`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::instrument;

use super::evaluate::{self, Evaluated};
use super::Context;
use crate::domain::ids::MetricId;
use crate::in_transaction;
use crate::store::{backlog, StoreError};

/// Evaluates the backlog of these metrics, one transaction per round, until
/// none of them has a backlog or every one that has is held by another
/// transaction (whose own drain will take it).
#[instrument(skip_all, fields(metrics = metrics.len()))]
pub async fn drain(ctx: &Context, metrics: Vec<MetricId>) -> Result<Evaluated, StoreError> {
    let mut total = Evaluated::default();
    let mut ids = backlog::metrics_with_backlog(&ctx.pool, &metrics).await?;
    while !ids.is_empty() {
        let (claimed, done) = in_transaction!(ctx.pool, StoreError, |tx| {
            evaluate::claim_and_settle(&tx, ctx, &ids).await?
        })?;
        total += done;
        if claimed.is_empty() {
            break;
        }
        // Rows written while this transaction held the metrics.
        ids = backlog::metrics_with_backlog(&ctx.pool, &claimed).await?;
    }
    Ok(total)
}

/// Metrics whose backlog a worker's next projection update takes in its
/// own transaction instead of a separate one after each commit: under
/// contention most updates leave a few backlog rows, and a transaction of
/// their own per update doubled the commits (BENCHMARKS.md). A metric no
/// update takes within [`HANDOFF_WAIT`] is drained by [`drain_handoff_now`] (the worker's
/// handoff drain task).
#[derive(Debug, Default)]
pub struct BacklogHandoff {
    since: Mutex<BTreeMap<MetricId, Instant>>,
}

/// How long a handed off metric waits for the next update before it is drained
/// on its own.
pub const HANDOFF_WAIT: Duration = Duration::from_millis(50);

impl BacklogHandoff {
    /// Adds metrics to hand off (an entry keeps its first time).
    pub fn add(&self, ids: Vec<MetricId>) {
        let now = Instant::now();
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            since.entry(id).or_insert(now);
        }
    }

    /// Takes the metrics handed off for at least `age`.
    pub fn take(&self, age: Duration) -> Vec<MetricId> {
        let now = Instant::now();
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let due: Vec<MetricId> = since
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= age)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            since.remove(id);
        }
        due
    }
}

/// Drains the handed off metrics that waited at least `age` (all with
/// `Duration::ZERO`); on failure they stay handed off.
pub async fn drain_handoff_now(ctx: &Context, age: Duration) -> Result<Evaluated, StoreError> {
    let Some(handoff) = &ctx.handoff else {
        return Ok(Evaluated::default());
    };
    let due = handoff.take(age);
    if due.is_empty() {
        return Ok(Evaluated::default());
    }
    drain(ctx, due.clone())
        .await
        .inspect_err(|_| handoff.add(due))
}

/// Metrics taken per sweep round.
const SWEEP_BATCH: i64 = 500;

/// Drains every metric with a backlog row older than `older_than`.
pub async fn sweep(ctx: &Context, older_than: Duration) -> Result<Evaluated, StoreError> {
    let mut total = Evaluated::default();
    loop {
        let ids = backlog::stale_metrics(&ctx.pool, older_than.as_secs_f64(), SWEEP_BATCH).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let done = drain(ctx, ids).await?;
        if done.backlog_evaluated == 0 {
            // Everything left is held by live transactions: their drains take it.
            return Ok(total);
        }
        total += done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_off_metrics_are_taken_once_and_only_when_due() {
        let handoff = BacklogHandoff::default();
        handoff.add(vec!["m2".into(), "m1".into()]);
        handoff.add(vec!["m1".into()]);
        assert!(
            handoff.take(Duration::from_secs(3600)).is_empty(),
            "not due yet"
        );
        assert_eq!(
            handoff.take(Duration::ZERO),
            vec![MetricId::from("m1"), MetricId::from("m2")],
            "each once, in id order"
        );
        assert!(handoff.take(Duration::ZERO).is_empty(), "taken");
    }
}
