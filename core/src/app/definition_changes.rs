//! Acting on definition changes (`catalog apply` queues one per new
//! version): a worker takes a bounded batch each tick, so that a change
//! applied to many metrics at once is spread over time instead of
//! starving projection updates. Each change gets its alert
//! (`metric_definition_changed`, when alerts are on) and, with
//! `on_change: rerun`, one run requested now (`domain::definition_change`);
//! with `on_change: {backfill: {since}}`, a backfill (`app::backfill`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use crate::app::backfill::{self, BackfillError};
use crate::app::{trigger, Context};
use crate::domain::alert::{self, Alert, DefinitionChanged};
use crate::domain::backfill::{PointSpec, Reprocess, Request, DEFAULT_MAX_IN_FLIGHT};
use crate::domain::definition::{self, Change};
use crate::domain::definition_change::{decide, ChangeFacts, Outcome, Step};
use crate::domain::ids::{BackfillId, MetricId, OutboxId, RunId};
use crate::in_transaction;
use crate::store::definitions::{self, DueChange};
use crate::store::{
    catalog, db_now, outbox, pending, trigger_policies, updates, StoreError, Transaction,
};

/// What one batch did.
#[derive(Debug, Default, Clone)]
pub struct Drained {
    /// Changes done (left the queue).
    pub done: usize,
    /// Changes put off (a hold, a cooldown) or left for the next tick (their
    /// metric was busy).
    pub later: usize,
    pub requested: Vec<RunId>,
    /// Outbox rows to publish: the runs' requests and the alerts.
    pub outbox_ids: Vec<OutboxId>,
}

/// Acts on up to `limit` due changes in one transaction.
pub async fn drain(ctx: &Context, limit: i64) -> Result<Drained, StoreError> {
    in_transaction!(ctx.pool, StoreError, |tx| drain_in(&tx, ctx, limit).await?)
}

async fn drain_in(tx: &Transaction<'_>, ctx: &Context, limit: i64) -> Result<Drained, StoreError> {
    let due = definitions::take_due(tx, limit).await?;
    let mut out = Drained::default();
    if due.is_empty() {
        return Ok(out);
    }
    let mut ids: Vec<MetricId> = due.iter().map(|c| c.metric_id.clone()).collect();
    ids.dedup();
    // Metrics an update is deciding right now are left for the next tick.
    let (locked, disabled) = catalog::claim_metrics(tx, &ids).await?;
    let locked: HashMap<&MetricId, &catalog::LockedMetric> =
        locked.iter().map(|m| (&m.id, m)).collect();
    // Read under the metrics' locks: no update can open a pending run of
    // one of them before this transaction ends.
    let held: Vec<MetricId> = locked.keys().map(|id| (*id).clone()).collect();
    let waiting: HashSet<MetricId> = pending::open_runs(tx, &held)
        .await?
        .into_iter()
        .map(|o| o.metric_id)
        .collect();
    let required = catalog::required_datasets(tx, &ids).await?;
    let newest = updates::newest_for_metrics(tx, &ids).await?;
    let now = db_now(tx).await?;
    let mut alerts = Vec::new();
    for change in &due {
        let metric = locked.get(&change.metric_id);
        if metric.is_none() && !disabled.contains(&change.metric_id) {
            out.later += 1;
            continue;
        }
        // The newest update of each input: what decides whether it can
        // run, and what the run uses if it is requested.
        let (used, inputs) = match metric {
            Some(m) => trigger::newest_inputs(
                required.get(&m.id).map(Vec::as_slice).unwrap_or_default(),
                &newest,
                now,
                m.required_days,
            ),
            None => Default::default(),
        };
        let facts = ChangeFacts {
            version: change.version,
            current_version: change.current_version,
            enabled: metric.is_some() && change.enabled,
            rerun: change.action == "rerun",
            has_pending_run: waiting.contains(&change.metric_id),
            held: metric.is_some_and(|m| m.timing.hold.is_some()),
            cooldown_until: metric.and_then(|m| {
                m.policy
                    .cooldown
                    .zip(m.timing.last_requested_at)
                    .map(|(c, last)| last + chrono::Duration::from_std(c).unwrap_or_default())
            }),
            inputs,
        };
        let outcome = match decide(&facts, now) {
            Step::Later(at, why) => {
                tracing::debug!(metric = %change.metric_id, version = change.version, %at, why, "definition change put off");
                definitions::later(tx, &change.metric_id, change.version, at).await?;
                out.later += 1;
                continue;
            }
            Step::Done(outcome) => outcome,
        };
        let mut run = None;
        let mut backfill = None;
        let mut described = outcome.describe(change.version);
        if change.action == "backfill" && outcome == Outcome::MarkedStale {
            let (id, said) = backfill_of(tx, change, now).await?;
            backfill = id;
            described = said;
        }
        if outcome == Outcome::Request {
            let (id, ids) =
                trigger::request_now(tx, ctx, &change.metric_id, &change.metric_code, &used, now)
                    .await?;
            out.outbox_ids.extend(ids);
            trigger_policies::mark_requested(tx, &[(&change.metric_id, now)]).await?;
            out.requested.push(id.clone());
            run = Some(id);
        }
        definitions::done(tx, &change.metric_id, change.version).await?;
        out.done += 1;
        tracing::info!(metric = %change.metric_code, from = ?change.from_version, to = change.version,
            action = %change.action, outcome = %described, run_id = ?run, backfill_id = ?backfill,
            "definition change");
        if ctx.alerts {
            alerts.push(alert_of(
                change,
                &described,
                run.as_ref(),
                backfill.as_ref(),
                now,
            ));
        }
    }
    out.outbox_ids
        .extend(outbox::insert_alerts(tx, &alerts).await?);
    Ok(out)
}

/// `on_change: {backfill: {since}}`: a backfill of the metric over its runs
/// of the last `since` (reprocess stale), made once per change (its key),
/// and what to say of it.
async fn backfill_of(
    tx: &Transaction<'_>,
    c: &DueChange,
    now: DateTime<Utc>,
) -> Result<(Option<BackfillId>, String), StoreError> {
    let since = c
        .backfill_since_secs
        .and_then(|s| u64::try_from(s).ok())
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(90 * 86_400));
    let from = now - chrono::Duration::from_std(since).unwrap_or_default();
    let key = format!("definition-change:{}:v{}", c.metric_id, c.version);
    let request = Request {
        spelled: key.clone(),
        metrics: vec![c.metric_code.clone()],
        downstream: false,
        from,
        to: now,
        points: PointSpec::Runs,
        reprocess: Reprocess::Stale,
        max_in_flight: DEFAULT_MAX_IN_FLIGHT,
    };
    let reason = format!("definition of {} changed to v{}", c.metric_code, c.version);
    let made = backfill::create_in(
        tx,
        &backfill::Create {
            request,
            key: Some(&key),
            by: Some(&c.applied_by),
            reason: Some(&reason),
            dry_run: false,
        },
    )
    .await;
    match made {
        Ok(created) => {
            let id = created.id;
            let said = format!(
                "backfill {} over the last {}: {} of {} point(s) to recompute",
                id.as_ref().map(BackfillId::as_str).unwrap_or_default(),
                humantime::format_duration(since),
                created.plan.selected,
                created.plan.points.len()
            );
            Ok((id, said))
        }
        Err(BackfillError::Store(e)) => Err(e),
        Err(e) => Ok((None, format!("no backfill made: {e}"))),
    }
}

fn alert_of(
    c: &DueChange,
    outcome: &str,
    run: Option<&RunId>,
    backfill: Option<&BackfillId>,
    now: DateTime<Utc>,
) -> Alert {
    let changes: Vec<Change> = serde_json::from_value(c.changes.clone()).unwrap_or_default();
    alert::definition_changed(&DefinitionChanged {
        metric_id: &c.metric_id,
        metric_code: &c.metric_code,
        from_version: c.from_version,
        to_version: c.version,
        applied_by: &c.applied_by,
        applied_at: c.applied_at,
        summary: &definition::summary(&changes),
        changes: &c.changes,
        action: &c.action,
        outcome,
        run_id: run,
        backfill_id: backfill,
        at: now,
    })
}
