//! The catalog aggregate: `datasets`, `series`, `dataset_series`, `metrics`,
//! `metric_dependencies`.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::Value;

use super::{GenericClient, StoreError, StoreResult, Transaction};
use crate::domain::catalog::Catalog;
use crate::domain::catalog_hash::{EntryHashes, Hash};
use crate::domain::ids::{DatasetId, MetricId};
use crate::domain::run_request::SeriesSource;
use crate::domain::trigger::{Hold, MetricTiming};
use crate::domain::trigger_policy::TriggerPolicy;

/// A metric locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct LockedMetric {
    pub id: MetricId,
    pub code: String,
    pub required_days: i32,
    /// The default rule when the catalog gives none.
    pub policy: TriggerPolicy,
    pub timing: MetricTiming,
}

impl LockedMetric {
    /// Whether its pending runs keep timers: it has a policy or a hold.
    pub fn timed(&self) -> bool {
        self.policy != TriggerPolicy::default() || self.timing.hold.is_some()
    }
}

/// A claimed metric from its row: columns 0 to 2 as selected, 4 to 7 the
/// policy, the hold and the last request (for the cooldown). Its expression
/// is not read: deciding a run needs only its required datasets, and the
/// relay reads the expression when it assembles the request.
fn locked_metric(r: &tokio_postgres::Row) -> StoreResult<LockedMetric> {
    let id: MetricId = r.get(0);
    let policy = match r.get::<_, Option<Value>>(4) {
        None => TriggerPolicy::default(),
        Some(v) => TriggerPolicy::from_json(&v).map_err(|e| {
            StoreError::Corrupt(format!("metric {id}'s stored trigger policy: {e}"))
        })?,
    };
    let hold = r
        .get::<_, Option<chrono::DateTime<chrono::Utc>>>(5)
        .map(|since| Hold {
            since,
            by: r.get::<_, Option<String>>(6).unwrap_or_default(),
        });
    Ok(LockedMetric {
        code: r.get(1),
        required_days: r.get(2),
        policy,
        timing: MetricTiming {
            last_requested_at: r.get(7),
            hold,
        },
        id,
    })
}

/// The enabled metrics that depend on a dataset, split by whether this
/// transaction could lock them.
#[derive(Debug, Default)]
pub struct Claimed {
    /// Locked (`FOR NO KEY UPDATE`) for the rest of the transaction, by id.
    pub locked: Vec<LockedMetric>,
    /// Held by another transaction at that moment, by id.
    pub skipped: Vec<MetricId>,
}

// `= ANY (ARRAY(…))` makes both reads primary-key probes; with
// `IN (subquery)` the planner scanned all metrics (BENCHMARKS.md).
pub(super) const CLAIM_DEPENDENT_METRICS: &str = "WITH dep AS MATERIALIZED (
                 SELECT m.id FROM metrics m
                  WHERE m.id = ANY (ARRAY(SELECT r.metric_id FROM metric_required_datasets r WHERE r.dataset_id = $1))
                    AND m.enabled
             ), got AS MATERIALIZED (
                 SELECT m.id, m.code, m.required_days,
                        m.trigger_policy, m.held_at, m.held_by, m.last_auto_requested_at
                   FROM metrics m
                  WHERE m.id = ANY (ARRAY(SELECT id FROM dep)) AND m.enabled
                  ORDER BY m.id
                    FOR NO KEY UPDATE OF m SKIP LOCKED
             )
             SELECT dep.id, got.code, got.required_days, got.id IS NOT NULL,
                    got.trigger_policy, got.held_at, got.held_by, got.last_auto_requested_at
               FROM dep LEFT JOIN got ON got.id = dep.id
              ORDER BY 1";

/// The plan of the statement [`claim_dependent_metrics`] runs, for a test
/// that it stays index-driven.
#[cfg(feature = "test-support")]
pub async fn explain_claim_dependent_metrics(
    tx: &Transaction<'_>,
    dataset_id: &DatasetId,
) -> StoreResult<Vec<String>> {
    let rows = tx
        .query(
            &format!("EXPLAIN {CLAIM_DEPENDENT_METRICS}"),
            &[&dataset_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Prepares the claim of [`claim_dependent_metrics`] (a lookup once
/// cached): a caller pipelining other statements behind the claim prepares
/// it first, else its preparation's round trip would let them overtake it.
pub async fn prepare_claim(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.prepare_cached(CLAIM_DEPENDENT_METRICS).await?;
    Ok(())
}

/// Claims every enabled metric that depends on `dataset_id` without waiting
/// for any: one indexed statement (`metric_required_datasets` by dataset).
/// The lock serialises all work on a metric's pending run across workers;
/// `SKIP LOCKED` means a metric another transaction holds is reported as
/// skipped instead of queued behind (its update goes to the metric's backlog),
/// and `NO KEY UPDATE` does not conflict with the key-share locks of
/// concurrent foreign-key checks on the metric.
pub async fn claim_dependent_metrics(
    tx: &Transaction<'_>,
    dataset_id: &DatasetId,
) -> StoreResult<Claimed> {
    let stmt = tx.prepare_cached(CLAIM_DEPENDENT_METRICS).await?;
    let rows = tx.query(&stmt, &[&dataset_id]).await?;
    let mut out = Claimed::default();
    for r in &rows {
        if r.get::<_, bool>(3) {
            out.locked.push(locked_metric(r)?);
        } else {
            out.skipped.push(r.get(0));
        }
    }
    Ok(out)
}

/// Claims these metrics without waiting (`SKIP LOCKED`): the enabled ones
/// locked, by id, and the ids of those locked that are disabled. Metrics
/// another transaction holds, or that no longer exist, are in neither.
pub async fn claim_metrics(
    tx: &Transaction<'_>,
    ids: &[MetricId],
) -> StoreResult<(Vec<LockedMetric>, Vec<MetricId>)> {
    let stmt = tx
        .prepare_cached(
            "SELECT m.id, m.code, m.required_days, m.enabled,
                    m.trigger_policy, m.held_at, m.held_by, m.last_auto_requested_at
               FROM metrics m WHERE m.id = ANY($1)
              ORDER BY m.id
                FOR NO KEY UPDATE OF m SKIP LOCKED",
        )
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    let (enabled, disabled): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.get::<_, bool>(3));
    Ok((
        enabled
            .into_iter()
            .map(locked_metric)
            .collect::<StoreResult<_>>()?,
        disabled.into_iter().map(|r| r.get(0)).collect(),
    ))
}

/// Each metric's required datasets, sorted.
pub async fn required_datasets(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<HashMap<MetricId, Vec<DatasetId>>> {
    let rows = tx
        .query(
            "SELECT metric_id, dataset_id FROM metric_required_datasets
              WHERE metric_id = ANY($1) ORDER BY metric_id, dataset_id",
            &[&metric_ids],
        )
        .await?;
    let mut out: HashMap<MetricId, Vec<DatasetId>> = HashMap::new();
    for r in &rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// Which datasets provide each series a metric references.
#[derive(Debug, Clone, Default)]
pub struct SeriesSources {
    /// Every dataset providing each series; a series no dataset provides is absent.
    pub series_datasets: Vec<SeriesSource>,
    /// Series the metric references that no dataset provides.
    pub orphan_series: Vec<String>,
}

impl SeriesSources {
    /// The metric's required datasets, sorted and distinct.
    pub fn required_datasets(&self) -> Vec<DatasetId> {
        let mut d: Vec<DatasetId> = self
            .series_datasets
            .iter()
            .map(|s| s.dataset_id.clone())
            .collect();
        d.sort();
        d.dedup();
        d
    }
}

pub async fn series_sources(
    db: &impl GenericClient,
    metric_ids: &[MetricId],
) -> StoreResult<HashMap<MetricId, SeriesSources>> {
    let stmt = db
        .prepare_cached(
            "SELECT md.metric_id, md.series_code, ds.dataset_id
               FROM metric_dependencies md
               LEFT JOIN dataset_series ds ON ds.series_code = md.series_code
              WHERE md.metric_id = ANY($1)",
        )
        .await?;
    let rows = db.query(&stmt, &[&metric_ids]).await?;
    let mut out: HashMap<MetricId, SeriesSources> = HashMap::new();
    for r in &rows {
        let entry = out.entry(r.get(0)).or_default();
        match r.get::<_, Option<DatasetId>>(2) {
            Some(dataset_id) => entry.series_datasets.push(SeriesSource {
                series_code: r.get(1),
                dataset_id,
            }),
            None => entry.orphan_series.push(r.get(1)),
        }
    }
    Ok(out)
}

/// A metric's expression, as stored.
pub async fn expressions(
    db: &impl GenericClient,
    metric_ids: &[MetricId],
) -> StoreResult<HashMap<MetricId, (String, Value)>> {
    let stmt = db
        .prepare_cached(
            "SELECT id, expression_type, expression_json FROM metrics WHERE id = ANY($1)",
        )
        .await?;
    let rows = db.query(&stmt, &[&metric_ids]).await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

pub async fn known_series(tx: &Transaction<'_>) -> StoreResult<HashSet<String>> {
    let rows = tx.query("SELECT code FROM series", &[]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Metric ids (in the store) that already use one of these codes.
pub async fn metric_ids_by_code(
    tx: &Transaction<'_>,
    codes: &[String],
) -> StoreResult<HashMap<String, String>> {
    let rows = tx
        .query(
            "SELECT code, id FROM metrics WHERE code = ANY($1)",
            &[&codes],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The series each of these metrics depends on, as stored.
pub async fn dependencies(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<HashMap<MetricId, BTreeSet<String>>> {
    let rows = tx
        .query(
            "SELECT metric_id, series_code FROM metric_dependencies WHERE metric_id = ANY($1)",
            &[&metric_ids],
        )
        .await?;
    let mut out: HashMap<MetricId, BTreeSet<String>> = HashMap::new();
    for r in &rows {
        out.entry(r.get(0)).or_default().insert(r.get(1));
    }
    Ok(out)
}

/// Serialises catalog applies with each other (released at commit).
pub async fn lock_for_apply(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.execute("SELECT pg_advisory_xact_lock(7201)", &[])
        .await?;
    Ok(())
}

/// Upserts everything in the catalog; a dataset's series list and a metric's
/// dependencies are replaced by the file's. Metrics are written in id order,
/// the order in which the projection-update path locks them.
/// Writes the entries of `c` (those that changed) with their hashes; the
/// caller then derives the required datasets
/// ([`derive_chunk`], [`derive_required_datasets_after`]).
pub async fn upsert(tx: &Transaction<'_>, c: &Catalog, hashes: &EntryHashes) -> StoreResult<()> {
    if !c.series.is_empty() {
        upsert_series(tx, c, hashes).await?;
    }
    if !c.datasets.is_empty() {
        upsert_datasets(tx, c, hashes).await?;
    }
    if !c.metrics.is_empty() {
        upsert_metrics(tx, c, hashes).await?;
    }
    Ok(())
}

/// After an apply's chunks each derived their own metrics' required
/// datasets ([`derive_chunk`]): every metric's again when a dataset's entry
/// changed (its series may have), with fresh statistics when many metrics
/// were written; nothing more otherwise.
pub async fn derive_required_datasets_after(
    tx: &Transaction<'_>,
    datasets: bool,
    metrics_written: usize,
) -> StoreResult<()> {
    if datasets || metrics_written >= ANALYZE_AFTER {
        return derive_required_datasets(tx).await;
    }
    Ok(())
}

/// The required datasets of the metrics a chunk wrote, before its trigger
/// policies are checked against them.
pub async fn derive_chunk(tx: &Transaction<'_>, c: &Catalog) -> StoreResult<()> {
    let ids: Vec<&str> = c.metrics.iter().map(|m| m.id.as_str()).collect();
    derive_required_datasets_of(tx, &ids).await
}

/// Metrics written past which the whole derivation runs and the catalog's
/// statistics are refreshed.
const ANALYZE_AFTER: usize = 1_000;

/// The hashes stored with the entries last applied.
pub async fn stored_hashes(tx: &Transaction<'_>) -> StoreResult<EntryHashes> {
    let rows = tx
        .query(
            "SELECT 's', code, catalog_hash FROM series WHERE catalog_hash IS NOT NULL
             UNION ALL SELECT 'd', id, catalog_hash FROM datasets WHERE catalog_hash IS NOT NULL
             UNION ALL SELECT 'm', id, catalog_hash FROM metrics WHERE catalog_hash IS NOT NULL",
            &[],
        )
        .await?;
    let mut out = EntryHashes::default();
    for r in rows {
        let (kind, key, text): (&str, String, &str) = (r.get(0), r.get(1), r.get(2));
        // A hash that does not decode counts as changed (rewritten).
        let mut hash = [0u8; 16];
        if hex::decode_to_slice(text, &mut hash).is_err() {
            continue;
        }
        match kind {
            "s" => out.series.insert(key, hash),
            "d" => out.datasets.insert(key, hash),
            _ => out.metrics.insert(key, hash),
        };
    }
    Ok(out)
}

fn hashes_of(keys: &[&str], of: &HashMap<String, Hash>) -> Vec<Option<String>> {
    keys.iter().map(|k| of.get(*k).map(hex::encode)).collect()
}

/// `derive_required_datasets` for `metrics` alone (their dependencies
/// changed; no dataset's series did).
async fn derive_required_datasets_of(tx: &Transaction<'_>, metrics: &[&str]) -> StoreResult<()> {
    if metrics.is_empty() {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM metric_required_datasets r
          WHERE r.metric_id = ANY($1)
            AND NOT EXISTS (SELECT 1 FROM metric_dependencies md
                              JOIN dataset_series ds ON ds.series_code = md.series_code
                             WHERE md.metric_id = r.metric_id AND ds.dataset_id = r.dataset_id)",
        &[&metrics],
    )
    .await?;
    tx.execute(
        "INSERT INTO metric_required_datasets (metric_id, dataset_id)
         SELECT DISTINCT md.metric_id, ds.dataset_id
           FROM metric_dependencies md JOIN dataset_series ds ON ds.series_code = md.series_code
          WHERE md.metric_id = ANY($1)
         ON CONFLICT DO NOTHING",
        &[&metrics],
    )
    .await?;
    Ok(())
}

async fn upsert_series(tx: &Transaction<'_>, c: &Catalog, h: &EntryHashes) -> StoreResult<()> {
    let s = &c.series;
    let codes: Vec<&str> = s.iter().map(|x| x.code.as_str()).collect();
    let names: Vec<Option<&str>> = s.iter().map(|x| x.name.as_deref()).collect();
    let descs: Vec<Option<&str>> = s.iter().map(|x| x.description.as_deref()).collect();
    let units: Vec<Option<&str>> = s.iter().map(|x| x.unit.as_deref()).collect();
    let freqs: Vec<Option<&str>> = s.iter().map(|x| x.frequency.as_deref()).collect();
    let hashes = hashes_of(&codes, &h.series);
    tx.execute(
        "INSERT INTO series (code, name, description, unit, frequency, catalog_hash)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
             unit = EXCLUDED.unit, frequency = EXCLUDED.frequency, catalog_hash = EXCLUDED.catalog_hash,
             updated_at = now()",
        &[&codes, &names, &descs, &units, &freqs, &hashes],
    )
    .await?;
    Ok(())
}

/// The datasets, and the series of those that list theirs (a dataset entry
/// without `series` keeps the series already stored for it).
async fn upsert_datasets(tx: &Transaction<'_>, c: &Catalog, h: &EntryHashes) -> StoreResult<()> {
    let d = &c.datasets;
    let ids: Vec<&str> = d.iter().map(|x| x.id.as_str()).collect();
    let names: Vec<Option<&str>> = d.iter().map(|x| x.name.as_deref()).collect();
    let descs: Vec<Option<&str>> = d.iter().map(|x| x.description.as_deref()).collect();
    let buckets: Vec<Option<&str>> = d.iter().map(|x| x.bucket.as_deref()).collect();
    let hashes = hashes_of(&ids, &h.datasets);
    tx.execute(
        "INSERT INTO datasets (id, name, description, bucket, catalog_hash)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
             bucket = EXCLUDED.bucket, catalog_hash = EXCLUDED.catalog_hash, updated_at = now()",
        &[&ids, &names, &descs, &buckets, &hashes],
    )
    .await?;
    let listed: Vec<&str> = d
        .iter()
        .filter(|x| x.series.is_some())
        .map(|x| x.id.as_str())
        .collect();
    let (pair_ds, pair_series): (Vec<&str>, Vec<&str>) = d
        .iter()
        .flat_map(|x| {
            x.series
                .iter()
                .flatten()
                .map(move |s| (x.id.as_str(), s.as_str()))
        })
        .unzip();
    tx.execute(
        "DELETE FROM dataset_series WHERE dataset_id = ANY($1)",
        &[&listed],
    )
    .await?;
    tx.execute(
        "INSERT INTO dataset_series (dataset_id, series_code) SELECT * FROM unnest($1::text[], $2::text[])",
        &[&pair_ds, &pair_series],
    )
    .await?;
    Ok(())
}

/// The metrics, and the series each one's expression references.
async fn upsert_metrics(tx: &Transaction<'_>, c: &Catalog, h: &EntryHashes) -> StoreResult<()> {
    let mut metrics: Vec<_> = c.metrics.iter().collect();
    metrics.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = metrics.iter().map(|m| m.id.as_str()).collect();
    let codes: Vec<&str> = metrics.iter().map(|m| m.code.as_str()).collect();
    let types: Vec<&str> = metrics.iter().map(|m| m.expression_type.as_str()).collect();
    let exprs: Vec<&Value> = metrics.iter().map(|m| &m.expression_json).collect();
    let days: Vec<i32> = metrics.iter().map(|m| m.required_days).collect();
    let attempts: Vec<i32> = metrics.iter().map(|m| m.max_attempts).collect();
    let run_timeouts: Vec<Option<i32>> = metrics.iter().map(|m| m.run_timeout_secs).collect();
    let enabled: Vec<bool> = metrics.iter().map(|m| m.enabled).collect();
    let freqs: Vec<Option<&str>> = metrics.iter().map(|m| m.frequency.as_deref()).collect();
    let units: Vec<Option<&str>> = metrics.iter().map(|m| m.unit.as_deref()).collect();
    let descs: Vec<Option<&str>> = metrics.iter().map(|m| m.description.as_deref()).collect();
    let on_change: Vec<&str> = metrics.iter().map(|m| m.on_change.as_str()).collect();
    let since: Vec<Option<i64>> = metrics.iter().map(|m| m.on_change.since_secs()).collect();
    let hashes = hashes_of(&ids, &h.metrics);
    tx.execute(
        "INSERT INTO metrics (id, code, expression_type, expression_json, required_days, max_attempts,
                              enabled, frequency, unit, description, run_timeout_secs, on_change,
                              on_change_since_secs, catalog_hash)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::int[], $6::int[],
                              $7::bool[], $8::text[], $9::text[], $10::text[], $11::int[], $12::text[],
                              $13::int8[], $14::text[])
         ON CONFLICT (id) DO UPDATE SET code = EXCLUDED.code, expression_type = EXCLUDED.expression_type,
             expression_json = EXCLUDED.expression_json, required_days = EXCLUDED.required_days,
             max_attempts = EXCLUDED.max_attempts, enabled = EXCLUDED.enabled,
             run_timeout_secs = EXCLUDED.run_timeout_secs, on_change = EXCLUDED.on_change,
             on_change_since_secs = EXCLUDED.on_change_since_secs, frequency = EXCLUDED.frequency, unit = EXCLUDED.unit,
             description = EXCLUDED.description, catalog_hash = EXCLUDED.catalog_hash, updated_at = now()",
        &[&ids, &codes, &types, &exprs, &days, &attempts, &enabled, &freqs, &units, &descs, &run_timeouts, &on_change, &since, &hashes],
    )
    .await?;
    let (dep_metric, dep_series): (Vec<&str>, Vec<String>) = metrics
        .iter()
        .flat_map(|m| m.series().into_iter().map(move |s| (m.id.as_str(), s)))
        .unzip();
    tx.execute(
        "DELETE FROM metric_dependencies WHERE metric_id = ANY($1)",
        &[&ids],
    )
    .await?;
    tx.execute(
        "INSERT INTO metric_dependencies (metric_id, series_code) SELECT * FROM unnest($1::text[], $2::text[])",
        &[&dep_metric, &dep_series],
    )
    .await?;
    Ok(())
}

/// Brings `metric_required_datasets` in line with the dependencies and the
/// datasets' series, changing only the rows that differ.
pub(crate) async fn derive_required_datasets(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute(
        "CREATE TEMP TABLE want_required ON COMMIT DROP AS
             SELECT DISTINCT md.metric_id, ds.dataset_id
               FROM metric_dependencies md JOIN dataset_series ds ON ds.series_code = md.series_code;
         DELETE FROM metric_required_datasets r
          WHERE NOT EXISTS (SELECT 1 FROM want_required w
                             WHERE w.metric_id = r.metric_id AND w.dataset_id = r.dataset_id);
         INSERT INTO metric_required_datasets (metric_id, dataset_id)
         SELECT metric_id, dataset_id FROM want_required ON CONFLICT DO NOTHING;
         DROP TABLE want_required;
         -- Fresh statistics at once: with the empty-table estimates of a new
         -- catalog the planner would scan these tables on every update.
         ANALYZE datasets, series, dataset_series, metrics, metric_dependencies, metric_required_datasets;",
    )
    .await?;
    Ok(())
}

/// Counts of catalog rows, for reports.
pub async fn counts(tx: &Transaction<'_>) -> StoreResult<(i64, i64, i64)> {
    let r = tx
        .query_one(
            "SELECT (SELECT count(*) FROM datasets), (SELECT count(*) FROM series), (SELECT count(*) FROM metrics)",
            &[],
        )
        .await?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

/// A metric as an operator names it, locked against concurrent processing.
#[derive(Debug, Clone)]
pub struct MetricForTrigger {
    pub id: MetricId,
    pub code: String,
    pub enabled: bool,
    pub required_days: i32,
    pub required_datasets: Vec<DatasetId>,
}

/// Locks the metric with this code (as projection updates do) and reads its
/// required datasets.
pub async fn lock_metric_by_code(
    tx: &Transaction<'_>,
    code: &str,
) -> StoreResult<Option<MetricForTrigger>> {
    let Some(m) = tx
        .query_opt(
            "SELECT id, code, enabled, required_days FROM metrics WHERE code = $1 FOR NO KEY UPDATE",
            &[&code],
        )
        .await?
    else {
        return Ok(None);
    };
    let id: MetricId = m.get(0);
    let datasets = tx
        .query(
            "SELECT dataset_id FROM metric_required_datasets WHERE metric_id = $1 ORDER BY dataset_id",
            &[&id],
        )
        .await?;
    Ok(Some(MetricForTrigger {
        id,
        code: m.get(1),
        enabled: m.get(2),
        required_days: m.get(3),
        required_datasets: datasets.iter().map(|r| r.get(0)).collect(),
    }))
}
