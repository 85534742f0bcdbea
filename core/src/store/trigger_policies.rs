//! The trigger columns of `metrics`: the policy `catalog apply` writes, the
//! operator's hold, and when the evaluation last requested a run (for a
//! cooldown).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::expectations::ExpectationChange;
use super::{StoreError, StoreResult, Transaction};
use crate::domain::catalog::Catalog;
use crate::domain::ids::MetricId;
use crate::domain::problem::Problem;
use crate::domain::trigger_policy::TriggerPolicy;

/// What writing the catalog's policies found.
pub enum Written {
    Changed(Vec<ExpectationChange>),
    /// Policies naming a dataset that is not an input of their metric.
    Invalid(Vec<Problem>),
}

/// Writes each metric's policy (after the catalog's upsert, so that the
/// inputs are the new ones) and returns what changed.
pub async fn write(tx: &Transaction<'_>, c: &Catalog) -> StoreResult<Written> {
    let ids: Vec<&str> = c.metrics.iter().map(|m| m.id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT m.id, m.trigger_policy,
                    ARRAY(SELECT r.dataset_id FROM metric_required_datasets r WHERE r.metric_id = m.id)
               FROM metrics m WHERE m.id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut stored: HashMap<String, (Option<TriggerPolicy>, HashSet<String>)> = HashMap::new();
    for r in &rows {
        let id: String = r.get(0);
        let policy = r
            .get::<_, Option<Value>>(1)
            .map(|v| TriggerPolicy::from_json(&v))
            .transpose()
            .map_err(|e| {
                StoreError::Corrupt(format!("metric {id}'s stored trigger policy: {e}"))
            })?;
        let inputs: Vec<String> = r.get(2);
        stored.insert(id, (policy, inputs.into_iter().collect()));
    }
    let mut problems = Vec::new();
    let mut changes = Vec::new();
    let (mut changed, mut json): (Vec<&str>, Vec<Option<Value>>) = (vec![], vec![]);
    for m in &c.metrics {
        let i = m.index;
        let (old, inputs) = stored.remove(&m.id).unwrap_or_default();
        for d in m.trigger.iter().flat_map(|p| p.inputs.keys()) {
            if !inputs.contains(d.as_str()) {
                let mut known: Vec<&str> = inputs.iter().map(String::as_str).collect();
                known.sort_unstable();
                problems.push(Problem::new(
                    format!("metrics[{i}].trigger.inputs.{d}"),
                    format!(
                        "{d} is not an input of this metric (its inputs: {})",
                        known.join(", ")
                    ),
                ));
            }
        }
        if old == m.trigger {
            continue;
        }
        changed.push(m.id.as_str());
        json.push(m.trigger.as_ref().map(TriggerPolicy::to_json));
        changes.push(ExpectationChange {
            entity: "metric",
            id: m.id.clone(),
            from: old.map(|o| o.to_string()),
            to: m.trigger.as_ref().map(ToString::to_string),
        });
    }
    if !problems.is_empty() {
        return Ok(Written::Invalid(problems));
    }
    tx.execute(
        "UPDATE metrics m SET trigger_policy = u.policy
           FROM unnest($1::text[], $2::jsonb[]) AS u(id, policy)
          WHERE m.id = u.id",
        &[&changed, &json],
    )
    .await?;
    // A run already waiting is decided again under its new policy at the
    // next sweep, not only at its next update (a new grace deadline may
    // already have passed).
    tx.execute(
        "INSERT INTO metric_run_timers AS t (run_id, metric_id, opened_at, decide_at)
         SELECT r.id, r.metric_id, r.created_at, now() FROM metric_runs r
          WHERE r.metric_id = ANY($1) AND r.status = 'pending_dependencies'
         ON CONFLICT (run_id) DO UPDATE SET decide_at = now()",
        &[&changed],
    )
    .await?;
    Ok(Written::Changed(changes))
}

pub(super) const MARK_REQUESTED: &str = "UPDATE metrics m SET last_auto_requested_at = u.at
               FROM (SELECT id, max(at) AS at FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
                      GROUP BY id) u
              WHERE m.id = u.id";

/// Records when the evaluation last requested a run of metrics with a
/// cooldown (their lock is held).
pub async fn mark_requested(
    tx: &Transaction<'_>,
    marks: &[(&MetricId, DateTime<Utc>)],
) -> StoreResult<u64> {
    if marks.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(MARK_REQUESTED).await?;
    let ids: Vec<&str> = marks.iter().map(|(m, _)| m.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = marks.iter().map(|(_, at)| *at).collect();
    Ok(tx.execute(&stmt, &[&ids, &ats]).await?)
}

/// What a hold or a resume found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldChange {
    Done(MetricId),
    /// Already in the state asked for.
    Already {
        id: MetricId,
        held_by: Option<String>,
    },
    NotFound,
}

/// Holds the metric with this code: `held_at IS NULL` guards the change.
pub async fn hold(tx: &Transaction<'_>, code: &str, by: &str) -> StoreResult<HoldChange> {
    let row = tx
        .query_opt(
            "UPDATE metrics SET held_at = now(), held_by = $2
              WHERE code = $1 AND held_at IS NULL RETURNING id",
            &[&code, &by],
        )
        .await?;
    match row {
        Some(r) => Ok(HoldChange::Done(r.get(0))),
        None => already(tx, code).await,
    }
}

/// Resumes the metric with this code: `held_at IS NOT NULL` guards the change.
pub async fn resume(tx: &Transaction<'_>, code: &str) -> StoreResult<HoldChange> {
    let row = tx
        .query_opt(
            "UPDATE metrics SET held_at = NULL, held_by = NULL
              WHERE code = $1 AND held_at IS NOT NULL RETURNING id",
            &[&code],
        )
        .await?;
    match row {
        Some(r) => Ok(HoldChange::Done(r.get(0))),
        None => already(tx, code).await,
    }
}

async fn already(tx: &Transaction<'_>, code: &str) -> StoreResult<HoldChange> {
    Ok(
        match tx
            .query_opt("SELECT id, held_by FROM metrics WHERE code = $1", &[&code])
            .await?
        {
            Some(r) => HoldChange::Already {
                id: r.get(0),
                held_by: r.get(1),
            },
            None => HoldChange::NotFound,
        },
    )
}
