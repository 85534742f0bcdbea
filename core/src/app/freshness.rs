//! The freshness sweep (docs/semantics.md, "Freshness expectations"): judges
//! every expectation against the clock, writes the states that changed and
//! queues one alert per transition, in one transaction that one replica at
//! a time runs. Both workers run it periodically; the clock is the
//! database's, or the one a caller passes (tests).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::Context;
use crate::domain::alert::{self, Alert, AlertType, DatasetChange, MetricChange};
use crate::domain::freshness_state::{
    assess_dataset, assess_metric, blocking, dataset_alert, metric_alert, DatasetState, MetricState,
};
use crate::domain::ids::{DatasetId, OutboxId};
use crate::in_transaction;
use crate::store::freshness::{self, DatasetFacts, MetricFacts, StateWrite};
use crate::store::{db_now, outbox, StoreError, Transaction};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreshnessReport {
    /// Another replica held the sweep: nothing was done.
    pub skipped: bool,
    pub datasets: usize,
    pub metrics: usize,
    /// States written (changed, or first found).
    pub changed: usize,
    /// Alerts queued, to publish after the commit.
    pub outbox_ids: Vec<OutboxId>,
    pub late_datasets: usize,
    pub failing_metrics: usize,
}

/// Sweeps once at `now` (the database's clock when `None`).
#[instrument(skip_all)]
pub async fn sweep(
    ctx: &Context,
    now: Option<DateTime<Utc>>,
) -> Result<FreshnessReport, StoreError> {
    in_transaction!(ctx.pool, StoreError, |tx| sweep_in(&tx, ctx, now).await?)
}

async fn sweep_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    now: Option<DateTime<Utc>>,
) -> Result<FreshnessReport, StoreError> {
    if !freshness::try_lock(tx).await? {
        return Ok(FreshnessReport {
            skipped: true,
            ..FreshnessReport::default()
        });
    }
    let now = match now {
        Some(t) => t,
        None => db_now(tx).await?,
    };
    freshness::forget_unexpected(tx).await?;
    let datasets = freshness::datasets(tx).await?;
    let mut report = FreshnessReport {
        datasets: datasets.len(),
        ..FreshnessReport::default()
    };
    let (dataset_writes, mut alerts, late) = judge_datasets(&datasets, now);
    let written = freshness::write_datasets(tx, &dataset_writes).await?;
    alerts.retain(|(id, _)| written.applied.contains(id));
    report.late_datasets = late.len();
    report.changed = written.applied.len();
    queue_alerts(tx, ctx, alerts, &mut report).await?;
    let mut after = None;
    loop {
        let metrics = freshness::metrics(tx, after.as_ref(), METRIC_PAGE).await?;
        let Some(last) = metrics.last() else { break };
        after = Some(last.id.clone());
        report.metrics += metrics.len();
        let judged = judge_metrics(&metrics, &late, now);
        let written = freshness::write_metrics(tx, &judged.writes).await?;
        report.changed += written.applied.len();
        report.failing_metrics += judged.failing;
        let alerts = judged.alerts;
        let alerts = alerts
            .into_iter()
            .filter(|(id, _)| written.applied.contains(id))
            .collect();
        queue_alerts(tx, ctx, alerts, &mut report).await?;
        if (metrics.len() as i64) < METRIC_PAGE {
            break;
        }
    }
    if report.changed >= ANALYZE_AFTER {
        freshness::analyze(tx).await?;
    }
    Ok(report)
}

/// Metrics judged per page (memory stays flat at any catalog size).
const METRIC_PAGE: i64 = 1_000;

/// States written in one sweep past which the planner's statistics of the
/// state tables are refreshed.
const ANALYZE_AFTER: usize = 1_000;

async fn queue_alerts(
    tx: &Transaction<'_>,
    ctx: &Context,
    alerts: Alerts,
    report: &mut FreshnessReport,
) -> Result<(), StoreError> {
    if ctx.alerts && !alerts.is_empty() {
        let queued: Vec<Alert> = alerts.into_iter().map(|(_, a)| a).collect();
        report
            .outbox_ids
            .extend(outbox::insert_alerts(tx, &queued).await?);
    }
    Ok(())
}

type Alerts = Vec<(String, Alert)>;

/// Each dataset's state at `now`: the writes, the alerts they raise, and the
/// datasets late after the sweep.
fn judge_datasets(
    facts: &[DatasetFacts],
    now: DateTime<Utc>,
) -> (
    Vec<StateWrite<'_, DatasetState>>,
    Alerts,
    HashSet<&DatasetId>,
) {
    let mut late = HashSet::new();
    let mut writes = Vec::new();
    let mut alerts = Vec::new();
    for f in facts {
        let a = assess_dataset(&f.expectation, f.last_update_at, f.set_at, now);
        if a.state == DatasetState::Late {
            late.insert(&f.id);
        }
        let from = f.stored.as_ref().map_or(DatasetState::Unknown, |s| s.state);
        if f.stored.is_some() && from == a.state {
            continue;
        }
        let kind = dataset_alert(from, a.state);
        let late_since = match kind {
            Some(AlertType::DatasetLate) => a.overdue_since,
            _ => f.stored.as_ref().and_then(|s| s.overdue_since),
        };
        if let (Some(alert_type), Some(late_since)) = (kind, late_since) {
            let change = DatasetChange {
                dataset_id: &f.id,
                from,
                to: a.state,
                late_since,
                last_update_at: f.last_update_at,
                expectation: f.expectation.to_string(),
                at: now,
            };
            alerts.push((
                f.id.to_string(),
                alert::dataset_changed(&change, alert_type),
            ));
        }
        writes.push(StateWrite {
            id: f.id.as_str(),
            expected: f.stored.as_ref().map(|s| s.state),
            state: a.state,
            since: now,
            overdue_since: a.overdue_since,
            blocking: Vec::new(),
        });
    }
    (writes, alerts, late)
}

/// A page of metrics judged: the states to write, the alerts they raise,
/// and how many metrics fail.
struct JudgedMetrics<'a> {
    writes: Vec<StateWrite<'a, MetricState>>,
    alerts: Alerts,
    failing: usize,
}

/// Each metric's state at `now`, and what blocks the failing ones.
fn judge_metrics<'a>(
    facts: &'a [MetricFacts],
    late: &HashSet<&DatasetId>,
    now: DateTime<Utc>,
) -> JudgedMetrics<'a> {
    let mut writes = Vec::new();
    let mut alerts = Vec::new();
    let mut failing = 0;
    for f in facts {
        let a = assess_metric(&f.expectation, f.last_success_at, f.set_at, now);
        failing += usize::from(a.state == MetricState::Fail);
        let late_inputs: Vec<DatasetId> = f
            .required
            .iter()
            .filter(|d| late.contains(d))
            .cloned()
            .collect();
        let blocked = blocking(a.state, &late_inputs, &f.missing);
        let from = f.stored.as_ref().map_or(MetricState::Unknown, |s| s.state);
        let same_state = f.stored.is_some() && from == a.state;
        if same_state && blocked == f.stored_blocking {
            continue;
        }
        if !same_state && metric_alert(from, a.state) {
            let change = MetricChange {
                metric_id: &f.id,
                metric_code: &f.code,
                from,
                to: a.state,
                overdue_since: a.overdue_since,
                last_success_at: f.last_success_at,
                blocking: &blocked,
                expectation: f.expectation.to_string(),
                at: now,
            };
            alerts.push((f.id.to_string(), alert::metric_changed(&change)));
        }
        let (since, overdue_since) = match (&f.stored, same_state) {
            (Some(s), true) => (s.since, s.overdue_since),
            _ => (now, a.overdue_since),
        };
        writes.push(StateWrite {
            id: f.id.as_str(),
            expected: f.stored.as_ref().map(|s| s.state),
            state: a.state,
            since,
            overdue_since,
            blocking: blocked.iter().map(|d| d.to_string()).collect(),
        });
    }
    JudgedMetrics {
        writes,
        alerts,
        failing,
    }
}
