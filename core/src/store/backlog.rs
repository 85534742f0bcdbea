//! `metric_update_backlog`: updates a metric still has to evaluate because
//! another transaction held the metric when they arrived (docs/semantics.md,
//! "Contention").

use std::collections::HashMap;

use tokio_postgres::types::ToSql;

use super::requests::Origin;
use super::tx::with_generic_plan;
use super::updates::used_update;
use super::{Pool, StoreResult, Transaction};
use crate::domain::ids::{DatasetId, MetricId, UpdateId};
use crate::domain::run_request::UsedUpdate;

/// Records that `update` must still be evaluated for each of `metric_ids`.
pub async fn insert(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
    update: &UpdateId,
    origin: &Origin,
) -> StoreResult<u64> {
    if metric_ids.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO metric_update_backlog (metric_id, update_id, traceparent, source_sent_at)
             SELECT m, $2, $3, $4 FROM unnest($1::text[]) m",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[
                &metric_ids,
                &update,
                &origin.traceparent,
                &origin.source_sent_at,
            ],
        )
        .await?)
}

/// A backlog row with the update it names.
#[derive(Debug, Clone)]
pub struct Entry {
    pub update: UsedUpdate,
    pub origin: Origin,
}

/// What a holder of some metrics needs to evaluate them, read in one
/// statement so that all parts come from the same snapshot: every update
/// that snapshot shows is either in a metric's backlog or already evaluated
/// for it.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Each metric's backlog, oldest update first.
    pub backlog: HashMap<MetricId, Vec<Entry>>,
    /// The newest update of each required dataset, but `except`: what a
    /// metric without a backlog has evaluated.
    shared: HashMap<DatasetId, UsedUpdate>,
    /// For metrics with a backlog: the newest update of each required dataset
    /// that is neither in the metric's backlog nor `except`.
    own: HashMap<MetricId, HashMap<DatasetId, UsedUpdate>>,
    /// For a metric whose every update is still in its backlog.
    none: HashMap<DatasetId, UsedUpdate>,
}

impl Inputs {
    /// The newest update of each dataset already evaluated for `metric`.
    pub fn newest(&self, metric: &MetricId) -> &HashMap<DatasetId, UsedUpdate> {
        if self.backlog.contains_key(metric) {
            self.own.get(metric).unwrap_or(&self.none)
        } else {
            &self.shared
        }
    }
}

// Three parts: backlog rows; the newest update of each dataset (one index
// probe per dataset, as without contention); and, only for metrics with a
// backlog, the newest per metric and dataset leaving their backlog out.
const INPUTS: &str = "WITH b AS MATERIALIZED (
         SELECT metric_id, update_id, traceparent, source_sent_at
           FROM metric_update_backlog WHERE metric_id = ANY($1)
     ), req AS (
         SELECT DISTINCT dataset_id FROM metric_required_datasets WHERE metric_id = ANY($1)
     )
     SELECT u.dataset_id, u.id, COALESCE(u.bucket, ''), u.version_manifest_path, u.projections_path,
            u.created_at, b.metric_id, 0, b.traceparent, b.source_sent_at
       FROM b JOIN dataset_updates u ON u.id = b.update_id
     UNION ALL
     SELECT u.dataset_id, u.id, COALESCE(u.bucket, ''), u.version_manifest_path, u.projections_path,
            u.created_at, NULL, 1, NULL, NULL
       FROM req CROSS JOIN LATERAL (
            SELECT * FROM dataset_updates du
             WHERE du.dataset_id = req.dataset_id AND ($2::text IS NULL OR du.id <> $2)
             ORDER BY du.created_at DESC, du.id DESC LIMIT 1) u
     UNION ALL
     SELECT u.dataset_id, u.id, COALESCE(u.bucket, ''), u.version_manifest_path, u.projections_path,
            u.created_at, r.metric_id, 2, NULL, NULL
       FROM metric_required_datasets r CROSS JOIN LATERAL (
            SELECT * FROM dataset_updates du
             WHERE du.dataset_id = r.dataset_id
               AND ($2::text IS NULL OR du.id <> $2)
               AND NOT EXISTS (SELECT 1 FROM b WHERE b.metric_id = r.metric_id AND b.update_id = du.id)
             ORDER BY du.created_at DESC, du.id DESC LIMIT 1) u
      WHERE r.metric_id IN (SELECT metric_id FROM b)";

pub async fn inputs(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
    except: Option<&UpdateId>,
) -> StoreResult<Inputs> {
    let stmt = tx.prepare_cached(INPUTS).await?;
    let params: [&(dyn ToSql + Sync); 2] = [&metric_ids, &except];
    let rows = with_generic_plan(tx, tx.query(&stmt, &params)).await?;
    let mut out = Inputs::default();
    for r in &rows {
        let update = used_update(r);
        match (r.get::<_, i32>(7), r.get::<_, Option<MetricId>>(6)) {
            (0, Some(metric_id)) => out.backlog.entry(metric_id).or_default().push(Entry {
                update,
                origin: Origin {
                    traceparent: r.get(8),
                    source_sent_at: r.get(9),
                },
            }),
            (2, Some(metric_id)) => {
                out.own
                    .entry(metric_id)
                    .or_default()
                    .insert(update.dataset_id.clone(), update);
            }
            _ => {
                out.shared.insert(update.dataset_id.clone(), update);
            }
        }
    }
    for entries in out.backlog.values_mut() {
        entries.sort_by(|a, b| {
            (a.update.created_at, &a.update.update_id)
                .cmp(&(b.update.created_at, &b.update.update_id))
        });
    }
    Ok(out)
}

/// A backlog row that was evaluated: one update, for one metric.
#[derive(Debug, Clone, Copy)]
pub struct Evaluated<'a> {
    pub metric_id: &'a MetricId,
    pub update_id: &'a UpdateId,
}

pub(super) const REMOVE: &str = "DELETE FROM metric_update_backlog b
              USING unnest($1::text[], $2::text[]) AS d(metric_id, update_id)
              WHERE b.metric_id = d.metric_id AND b.update_id = d.update_id";

/// Deletes the backlog rows that were evaluated.
pub async fn remove(tx: &Transaction<'_>, rows: &[Evaluated<'_>]) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(REMOVE).await?;
    let (metric_ids, update_ids): (Vec<&MetricId>, Vec<&UpdateId>) =
        rows.iter().map(|r| (r.metric_id, r.update_id)).unzip();
    Ok(tx.execute(&stmt, &[&metric_ids, &update_ids]).await?)
}

/// Deletes every backlog row of these metrics (they were disabled or
/// removed: nothing is evaluated for them).
pub async fn discard(tx: &Transaction<'_>, metric_ids: &[MetricId]) -> StoreResult<u64> {
    if metric_ids.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached("DELETE FROM metric_update_backlog WHERE metric_id = ANY($1)")
        .await?;
    Ok(tx.execute(&stmt, &[&metric_ids]).await?)
}

/// Which of these metrics have a backlog, in this transaction's next
/// snapshot: rows committed since its earlier statements included. Sent
/// behind an evaluation's writes ([`super::evaluation`]), in their round trip.
pub(super) async fn held_with_backlog(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<Vec<MetricId>> {
    if metric_ids.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx.prepare_cached(WITH_BACKLOG).await?;
    let params: [&(dyn ToSql + Sync); 1] = [&metric_ids];
    let rows = with_generic_plan(tx, tx.query(&stmt, &params)).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

pub(super) const WITH_BACKLOG: &str =
    "SELECT DISTINCT metric_id FROM metric_update_backlog WHERE metric_id = ANY($1) ORDER BY 1";

/// Which of these metrics have a backlog now (outside any transaction).
pub async fn metrics_with_backlog(
    pool: &Pool,
    metric_ids: &[MetricId],
) -> StoreResult<Vec<MetricId>> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(WITH_BACKLOG).await?;
    let rows = client.query(&stmt, &[&metric_ids]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Metrics with a backlog row older than `older_than_secs` (a handler
/// stopped between its commit and its look at the backlog), at most `limit`.
pub async fn stale_metrics(
    pool: &Pool,
    older_than_secs: f64,
    limit: i64,
) -> StoreResult<Vec<MetricId>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT DISTINCT metric_id FROM metric_update_backlog
              WHERE created_at < now() - make_interval(secs => $1) ORDER BY 1 LIMIT $2",
        )
        .await?;
    let rows = client.query(&stmt, &[&older_than_secs, &limit]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Rows in the backlog (operators' view of work in flight; tests).
pub async fn count(pool: &Pool) -> StoreResult<i64> {
    let client = pool.get().await?;
    Ok(client
        .query_one("SELECT count(*) FROM metric_update_backlog", &[])
        .await?
        .get(0))
}
