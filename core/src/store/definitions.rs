//! The definition-version aggregate: `metric_definition_versions`, each
//! metric's `definition_version` (its `on_change` is a catalog column,
//! written with the rest of the metric), and the changes workers have yet
//! to act on (`metric_definition_changes`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{GenericClient, StoreError, StoreResult, Transaction};
use crate::domain::definition::{Change, Definition, Hashes};
use crate::domain::ids::MetricId;
use crate::domain::trigger_policy::TriggerPolicy;

/// A metric's current version.
#[derive(Debug, Clone)]
pub struct Current {
    pub version: i32,
    pub hash: String,
    /// [`Definition::canonical`].
    pub definition: Value,
}

/// The current version of each of these metrics that has one.
pub async fn current(tx: &Transaction<'_>, ids: &[&str]) -> StoreResult<HashMap<String, Current>> {
    let rows = tx
        .query(
            "SELECT m.id, v.version, v.hash, v.definition
               FROM metrics m
               JOIN metric_definition_versions v ON v.metric_id = m.id AND v.version = m.definition_version
              WHERE m.id = ANY($1)",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                Current {
                    version: r.get(1),
                    hash: r.get(2),
                    definition: r.get(3),
                },
            )
        })
        .collect())
}

/// Why a version was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The metric's first apply.
    Created,
    /// A metric that had no version when versions came (adoption, upgrade).
    Adopted,
    /// A change; what the metric's `on_change` asked for.
    Rerun,
    Backfill,
    None,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Adopted => "adopted",
            Action::Rerun => "rerun",
            Action::Backfill => "backfill",
            Action::None => "none",
        }
    }

    /// A change of an existing definition, which workers act on.
    fn is_change(self) -> bool {
        matches!(self, Action::Rerun | Action::Backfill | Action::None)
    }
}

/// A version to write.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub metric_id: &'a str,
    pub version: i32,
    pub hashes: Hashes,
    pub definition: Value,
    pub expression_type: &'a str,
    pub expression_json: &'a Value,
    pub changes: Vec<Change>,
    pub action: Action,
}

/// Writes versions, makes each its metric's current one, and queues each
/// change for the workers (alert, re-run). `by: None` records the database
/// user.
pub async fn record(
    tx: &Transaction<'_>,
    versions: &[NewVersion<'_>],
    by: Option<&str>,
) -> StoreResult<()> {
    if versions.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = versions.iter().map(|v| v.metric_id).collect();
    let numbers: Vec<i32> = versions.iter().map(|v| v.version).collect();
    let hash: Vec<&str> = versions.iter().map(|v| v.hashes.hash.as_str()).collect();
    let core: Vec<&str> = versions.iter().map(|v| v.hashes.core.as_str()).collect();
    let policy: Vec<&str> = versions.iter().map(|v| v.hashes.policy.as_str()).collect();
    let defs: Vec<&Value> = versions.iter().map(|v| &v.definition).collect();
    let types: Vec<&str> = versions.iter().map(|v| v.expression_type).collect();
    let exprs: Vec<&Value> = versions.iter().map(|v| v.expression_json).collect();
    let changes: Vec<Value> = versions
        .iter()
        .map(|v| serde_json::to_value(&v.changes).unwrap_or(Value::Null))
        .collect();
    let actions: Vec<&str> = versions.iter().map(|v| v.action.as_str()).collect();
    let queued: Vec<bool> = versions.iter().map(|v| v.action.is_change()).collect();
    tx.execute(
        "WITH v AS (
             SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::text[], $6::jsonb[],
                                  $7::text[], $8::jsonb[], $9::jsonb[], $10::text[], $12::bool[])
                 AS v(metric_id, version, hash, core_hash, policy_hash, definition,
                      expression_type, expression_json, changes, action, queued)
         ), written AS (
             INSERT INTO metric_definition_versions (metric_id, version, hash, core_hash, policy_hash, definition,
                                                     expression_type, expression_json, changes, action, applied_by)
             SELECT metric_id, version, hash, core_hash, policy_hash, definition,
                    expression_type, expression_json, changes, action, COALESCE($11, current_user)
               FROM v
             RETURNING metric_id
         ), current AS (
             UPDATE metrics m SET definition_version = v.version FROM v WHERE m.id = v.metric_id
         )
         INSERT INTO metric_definition_changes (metric_id, version)
         SELECT metric_id, version FROM v WHERE queued",
        &[
            &ids, &numbers, &hash, &core, &policy, &defs, &types, &exprs, &changes, &actions, &by,
            &queued,
        ],
    )
    .await?;
    Ok(())
}

/// A metric's definition as stored.
struct Stored {
    id: String,
    expression_type: String,
    expression_json: Value,
    required_days: i32,
    trigger: Option<Value>,
    inputs: Vec<String>,
}

/// Gives every metric without a version its version 1, computed from its
/// stored definition (`action` says why it had none). Cheap when there is
/// none: a partial index finds them.
pub async fn stamp_unversioned(tx: &Transaction<'_>, action: Action) -> StoreResult<usize> {
    let rows = tx
        .query(
            "SELECT m.id, m.expression_type, m.expression_json, m.required_days, m.trigger_policy,
                    ARRAY(SELECT d.series_code FROM metric_dependencies d WHERE d.metric_id = m.id)
               FROM metrics m WHERE m.definition_version IS NULL
              ORDER BY m.id",
            &[],
        )
        .await?;
    let stored: Vec<Stored> = rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            let trigger = r
                .get::<_, Option<Value>>(4)
                .map(|v| TriggerPolicy::from_json(&v).map(|p| p.to_json()))
                .transpose()
                .map_err(|e| {
                    StoreError::Corrupt(format!("metric {id}'s stored trigger policy: {e}"))
                })?;
            Ok(Stored {
                id,
                expression_type: r.get(1),
                expression_json: r.get(2),
                required_days: r.get(3),
                trigger,
                inputs: r.get(5),
            })
        })
        .collect::<StoreResult<_>>()?;
    let versions: Vec<NewVersion> = stored
        .iter()
        .map(|m| {
            let d = Definition {
                expression_type: &m.expression_type,
                expression_json: &m.expression_json,
                inputs: m.inputs.clone(),
                required_days: m.required_days,
                trigger: m.trigger.clone(),
            };
            NewVersion {
                metric_id: &m.id,
                version: 1,
                hashes: d.hashes(),
                definition: d.canonical(),
                expression_type: &m.expression_type,
                expression_json: &m.expression_json,
                changes: Vec::new(),
                action,
            }
        })
        .collect();
    record(tx, &versions, None).await?;
    Ok(versions.len())
}

/// The expression a run of `(metric, version)` carries, and the version's
/// hash: the version's own, or the metric's current expression for runs
/// without a version (requested before versions existed).
pub type ExpressionKey = (MetricId, Option<i32>);

#[derive(Debug, Clone)]
pub struct VersionedExpression {
    pub expression_type: String,
    pub expression_json: Value,
    pub hash: Option<String>,
}

pub async fn expressions(
    db: &impl GenericClient,
    keys: &[ExpressionKey],
) -> StoreResult<HashMap<ExpressionKey, VersionedExpression>> {
    let stmt = db
        .prepare_cached(
            "SELECT k.metric_id, k.version,
                    COALESCE(v.expression_type, m.expression_type),
                    COALESCE(v.expression_json, m.expression_json), v.hash
               FROM unnest($1::text[], $2::int[]) AS k(metric_id, version)
               JOIN metrics m ON m.id = k.metric_id
               LEFT JOIN metric_definition_versions v
                      ON v.metric_id = k.metric_id AND v.version = k.version",
        )
        .await?;
    let (ids, versions): (Vec<&MetricId>, Vec<Option<i32>>) =
        keys.iter().map(|(m, v)| (m, *v)).unzip();
    let rows = db.query(&stmt, &[&ids, &versions]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                (r.get(0), r.get(1)),
                VersionedExpression {
                    expression_type: r.get(2),
                    expression_json: r.get(3),
                    hash: r.get(4),
                },
            )
        })
        .collect())
}

/// A definition change a worker takes to act on, with what it needs to
/// decide.
#[derive(Debug, Clone)]
pub struct DueChange {
    pub metric_id: MetricId,
    pub metric_code: String,
    pub from_version: Option<i32>,
    pub version: i32,
    /// The metric's current version (a newer change may have come since).
    pub current_version: Option<i32>,
    pub enabled: bool,
    pub action: String,
    pub changes: Value,
    pub applied_by: String,
    pub applied_at: DateTime<Utc>,
    /// The metric's `on_change: {backfill: {since}}` now, in seconds.
    pub backfill_since_secs: Option<i64>,
}

/// Takes up to `limit` due changes, oldest first, skipping those another
/// worker holds; they stay taken until this transaction ends.
pub async fn take_due(tx: &Transaction<'_>, limit: i64) -> StoreResult<Vec<DueChange>> {
    let stmt = tx
        .prepare_cached(
            "WITH c AS (
                 SELECT metric_id, version FROM metric_definition_changes
                  WHERE due_at <= now()
                  ORDER BY due_at, metric_id, version LIMIT $1
                    FOR UPDATE SKIP LOCKED)
             SELECT c.metric_id, m.code,
                    (SELECT max(p.version) FROM metric_definition_versions p
                      WHERE p.metric_id = c.metric_id AND p.version < c.version),
                    c.version, m.definition_version, m.enabled, v.action, v.changes, v.applied_by, v.applied_at,
                    m.on_change_since_secs
               FROM c JOIN metrics m ON m.id = c.metric_id
               JOIN metric_definition_versions v ON v.metric_id = c.metric_id AND v.version = c.version
              ORDER BY c.metric_id, c.version",
        )
        .await?;
    let rows = tx.query(&stmt, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| DueChange {
            metric_id: r.get(0),
            metric_code: r.get(1),
            from_version: r.get(2),
            version: r.get(3),
            current_version: r.get(4),
            enabled: r.get(5),
            action: r.get(6),
            changes: r.get(7),
            applied_by: r.get(8),
            applied_at: r.get(9),
            backfill_since_secs: r.get(10),
        })
        .collect())
}

/// A taken change is done: it leaves the queue.
pub async fn done(tx: &Transaction<'_>, metric_id: &MetricId, version: i32) -> StoreResult<()> {
    tx.execute(
        "DELETE FROM metric_definition_changes WHERE metric_id = $1 AND version = $2",
        &[&metric_id, &version],
    )
    .await?;
    Ok(())
}

/// A taken change is looked at again at `at` (a cooldown, a hold).
pub async fn later(
    tx: &Transaction<'_>,
    metric_id: &MetricId,
    version: i32,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE metric_definition_changes SET due_at = $3 WHERE metric_id = $1 AND version = $2",
        &[&metric_id, &version, &at],
    )
    .await?;
    Ok(())
}

/// How many changes wait (for a gauge and for tests).
pub async fn waiting(db: &impl GenericClient) -> StoreResult<i64> {
    let r = db
        .query_one("SELECT count(*) FROM metric_definition_changes", &[])
        .await?;
    Ok(r.get(0))
}
