//! The freshness sweep (docs/semantics.md, "Freshness expectations"): judges
//! every expectation against the clock, writes the states that changed and
//! queues one alert per transition, in one transaction that one replica at
//! a time runs. Both workers run it periodically; the clock is the
//! database's, or the one a caller passes (tests).

use chrono::{DateTime, Utc};
use tracing::instrument;

use super::Context;
use crate::domain::alert::{self, Alert, AlertType, DatasetChange, MetricChange};
use crate::domain::freshness_due::{dataset_next_check, metric_next_check};
use crate::domain::freshness_state::{
    assess_dataset, assess_metric, blocking, dataset_alert, metric_alert, DatasetState, MetricState,
};
use crate::domain::ids::{DatasetId, OutboxId};
use crate::in_transaction;
use crate::store::freshness::{self, After, DatasetFacts, Due, MetricFacts, StateWrite};
use crate::store::freshness_due::{self, Kind};
use crate::store::{db_now, outbox, StoreError, Transaction};

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FreshnessReport {
    /// Another replica held the sweep: nothing was done.
    pub skipped: bool,
    /// Marks of changed facts taken (each made its entity due).
    pub marks: u64,
    /// Datasets and metrics judged: those whose time had come or whose
    /// facts changed, never the whole catalog.
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
    let mut report = FreshnessReport {
        marks: freshness_due::absorb_marks(tx, now).await?,
        ..FreshnessReport::default()
    };
    let mut after: After = (DateTime::<Utc>::UNIX_EPOCH, String::new());
    loop {
        let due = freshness::datasets_due(tx, now, &after, PAGE).await?;
        let Some(last) = due.last() else { break };
        after = (last.due_at, last.id.clone());
        sweep_datasets(tx, ctx, &due, now, &mut report).await?;
        if (due.len() as i64) < PAGE {
            break;
        }
    }
    let mut after: After = (DateTime::<Utc>::UNIX_EPOCH, String::new());
    loop {
        let due = freshness::metrics_due(tx, now, &after, PAGE).await?;
        let Some(last) = due.last() else { break };
        after = (last.due_at, last.id.clone());
        sweep_metrics(tx, ctx, &due, now, &mut report).await?;
        if (due.len() as i64) < PAGE {
            break;
        }
    }
    if report.changed >= ANALYZE_AFTER {
        freshness::analyze(tx).await?;
    }
    Ok(report)
}

/// Judges a page of due datasets, writes what changed, forgets those without
/// an expectation, and schedules each one's next look.
async fn sweep_datasets(
    tx: &Transaction<'_>,
    ctx: &Context,
    due: &[Due<DatasetFacts>],
    now: DateTime<Utc>,
    report: &mut FreshnessReport,
) -> Result<(), StoreError> {
    let (facts, gone) = split(due);
    report.datasets += facts.len();
    let judged = judge_datasets(&facts, now);
    let written = freshness::write_datasets(tx, &judged.writes).await?;
    report.late_datasets += judged.late;
    report.changed += written.applied.len();
    let mut alerts = judged.alerts;
    alerts.retain(|(id, _)| written.applied.contains(id));
    queue_alerts(tx, ctx, alerts, report).await?;
    // Metrics waiting on a dataset that became late or stopped being late
    // name it, or stop naming it, in this same sweep.
    let turned: Vec<&str> = judged
        .turned
        .iter()
        .map(|id| id.as_str())
        .filter(|id| written.applied.contains(*id))
        .collect();
    freshness_due::metrics_needing(tx, &turned, now).await?;
    freshness::forget(tx, &gone, &[]).await?;
    let next = next_looks(&facts, &written.conflicted, &gone, |f| {
        let at = dataset_next_check(&f.expectation, f.last_update_at, f.set_at, now);
        (f.id.as_str(), at)
    });
    freshness_due::reschedule(tx, Kind::Dataset, &next).await
}

/// [`sweep_datasets`], for a page of due metrics.
async fn sweep_metrics(
    tx: &Transaction<'_>,
    ctx: &Context,
    due: &[Due<MetricFacts>],
    now: DateTime<Utc>,
    report: &mut FreshnessReport,
) -> Result<(), StoreError> {
    let (facts, gone) = split(due);
    report.metrics += facts.len();
    let judged = judge_metrics(&facts, now);
    let written = freshness::write_metrics(tx, &judged.writes).await?;
    report.changed += written.applied.len();
    report.failing_metrics += judged.failing;
    let alerts = judged
        .alerts
        .into_iter()
        .filter(|(id, _)| written.applied.contains(id))
        .collect();
    queue_alerts(tx, ctx, alerts, report).await?;
    freshness::forget(tx, &[], &gone).await?;
    let next = next_looks(&facts, &written.conflicted, &gone, |f| {
        let at = metric_next_check(&f.expectation, f.last_success_at, f.set_at, now);
        (f.id.as_str(), at)
    });
    freshness_due::reschedule(tx, Kind::Metric, &next).await
}

/// The due entities with an expectation, and the ids of those without.
fn split<F: Clone>(due: &[Due<F>]) -> (Vec<F>, Vec<&str>) {
    let facts = due.iter().filter_map(|d| d.facts.clone()).collect();
    let gone = due
        .iter()
        .filter(|d| d.facts.is_none())
        .map(|d| d.id.as_str())
        .collect();
    (facts, gone)
}

/// When each judged entity is looked at next (`look`), but those whose
/// write conflicted (they stay due: the next sweep judges them again); the
/// ones without an expectation never (their row goes).
fn next_looks<'a, F>(
    facts: &'a [F],
    conflicted: &[String],
    gone: &[&'a str],
    look: impl Fn(&'a F) -> (&'a str, Option<DateTime<Utc>>),
) -> Vec<(&'a str, Option<DateTime<Utc>>)> {
    facts
        .iter()
        .map(look)
        .filter(|(id, _)| !conflicted.iter().any(|c| c == id))
        .chain(gone.iter().map(|id| (*id, None)))
        .collect()
}

/// Due entities judged per page (memory stays flat whatever is due).
const PAGE: i64 = 1_000;

/// States written in one sweep past which the planner's statistics of the
/// state tables are refreshed.
const ANALYZE_AFTER: usize = 1_000;

/// A late dataset's update ends its lateness in the update's own
/// transaction, so that its recovery is heard whatever the sweep's
/// interval: writes the state (guarded on `late`) and queues the alert;
/// returns the alerts to publish after the commit.
pub(crate) async fn on_time_again(
    tx: &Transaction<'_>,
    ctx: &Context,
    late: DatasetFacts,
    arrived_at: DateTime<Utc>,
) -> Result<Vec<OutboxId>, StoreError> {
    let facts = [DatasetFacts {
        last_update_at: Some(arrived_at),
        ..late
    }];
    let judged = judge_datasets(&facts, arrived_at);
    let written = freshness::write_datasets(tx, &judged.writes).await?;
    let mut report = FreshnessReport::default();
    let alerts = judged
        .alerts
        .into_iter()
        .filter(|(id, _)| written.applied.contains(id))
        .collect();
    queue_alerts(tx, ctx, alerts, &mut report).await?;
    Ok(report.outbox_ids)
}

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

pub(crate) type Alerts = Vec<(String, Alert)>;

/// A page of datasets judged: the states to write, the alerts they raise,
/// how many are late, and those that became late or stopped being late.
pub(crate) struct JudgedDatasets<'a> {
    pub writes: Vec<StateWrite<'a, DatasetState>>,
    pub alerts: Alerts,
    pub late: usize,
    pub turned: Vec<&'a DatasetId>,
}

/// Each dataset's state at `now`.
pub(crate) fn judge_datasets(facts: &[DatasetFacts], now: DateTime<Utc>) -> JudgedDatasets<'_> {
    let mut judged = JudgedDatasets {
        writes: Vec::new(),
        alerts: Vec::new(),
        late: 0,
        turned: Vec::new(),
    };
    for f in facts {
        let a = assess_dataset(&f.expectation, f.last_update_at, f.set_at, now);
        judged.late += usize::from(a.state == DatasetState::Late);
        let from = f.stored.as_ref().map_or(DatasetState::Unknown, |s| s.state);
        if f.stored.is_some() && from == a.state {
            continue;
        }
        if (from == DatasetState::Late) != (a.state == DatasetState::Late) {
            judged.turned.push(&f.id);
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
            judged.alerts.push((
                f.id.to_string(),
                alert::dataset_changed(&change, alert_type),
            ));
        }
        judged.writes.push(StateWrite {
            id: f.id.as_str(),
            expected: f.stored.as_ref().map(|s| s.state),
            state: a.state,
            since: now,
            overdue_since: a.overdue_since,
            blocking: Vec::new(),
        });
    }
    judged
}

/// A page of metrics judged: the states to write, the alerts they raise,
/// and how many metrics fail.
struct JudgedMetrics<'a> {
    writes: Vec<StateWrite<'a, MetricState>>,
    alerts: Alerts,
    failing: usize,
}

/// Each metric's state at `now`, and what blocks the failing ones.
fn judge_metrics(facts: &[MetricFacts], now: DateTime<Utc>) -> JudgedMetrics<'_> {
    let mut writes = Vec::new();
    let mut alerts = Vec::new();
    let mut failing = 0;
    for f in facts {
        let a = assess_metric(&f.expectation, f.last_success_at, f.set_at, now);
        failing += usize::from(a.state == MetricState::Fail);
        let blocked = blocking(a.state, &f.late_inputs, &f.missing);
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
