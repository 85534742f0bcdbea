//! All the SQL of the freshness sweep's schedule (migration V18): the marks
//! the transactions that change facts append, and the due table the sweep
//! alone writes (under its lock), read through its index.

use chrono::{DateTime, Utc};

use super::{StoreResult, Transaction};

/// What a due row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dataset,
    Metric,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Dataset => "dataset",
            Kind::Metric => "metric",
        }
    }
}

/// Takes every mark committed so far and makes its entity due at `now`,
/// with the warning or failing metrics that need a marked dataset (what
/// they wait on may have changed with it). Returns how many marks.
pub async fn absorb_marks(tx: &Transaction<'_>, now: DateTime<Utc>) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "WITH taken AS (DELETE FROM freshness_marks RETURNING kind, entity_id),
                  due AS (
                    SELECT kind, entity_id FROM taken
                    UNION
                    SELECT 'metric', f.metric_id FROM taken t
                      JOIN metric_required_datasets r ON t.kind = 'dataset' AND r.dataset_id = t.entity_id
                      JOIN metric_freshness f ON f.metric_id = r.metric_id AND f.state IN ('warn', 'fail')),
                  made AS (
                    INSERT INTO freshness_due AS q (kind, entity_id, due_at)
                    SELECT kind, entity_id, $1 FROM due
                    ON CONFLICT (kind, entity_id) DO UPDATE SET due_at = LEAST(q.due_at, EXCLUDED.due_at))
             SELECT count(*) FROM taken",
        )
        .await?;
    let n: i64 = tx.query_one(&stmt, &[&now]).await?.get(0);
    Ok(n as u64)
}

/// Makes the warning or failing metrics that need any of `datasets` due at
/// `now` (a dataset became late, or stopped being late).
pub async fn metrics_needing(
    tx: &Transaction<'_>,
    datasets: &[&str],
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    if datasets.is_empty() {
        return Ok(0);
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO freshness_due AS q (kind, entity_id, due_at)
             SELECT DISTINCT 'metric', f.metric_id, $2::timestamptz FROM metric_required_datasets r
               JOIN metric_freshness f ON f.metric_id = r.metric_id AND f.state IN ('warn', 'fail')
              WHERE r.dataset_id = ANY($1)
             ON CONFLICT (kind, entity_id) DO UPDATE SET due_at = LEAST(q.due_at, EXCLUDED.due_at)",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&datasets, &now]).await?)
}

/// When each judged entity is due next; `None`: not until a fact changes
/// (its row goes).
pub async fn reschedule(
    tx: &Transaction<'_>,
    kind: Kind,
    next: &[(&str, Option<DateTime<Utc>>)],
) -> StoreResult<()> {
    let (later, done): (Vec<_>, Vec<_>) = next.iter().partition(|(_, at)| at.is_some());
    if !later.is_empty() {
        let ids: Vec<&str> = later.iter().map(|(id, _)| *id).collect();
        let ats: Vec<DateTime<Utc>> = later.iter().filter_map(|(_, at)| *at).collect();
        let stmt = tx
            .prepare_cached(
                "UPDATE freshness_due q SET due_at = u.at
                   FROM unnest($2::text[], $3::timestamptz[]) AS u(id, at)
                  WHERE q.kind = $1 AND q.entity_id = u.id",
            )
            .await?;
        tx.execute(&stmt, &[&kind.as_str(), &ids, &ats]).await?;
    }
    if !done.is_empty() {
        let ids: Vec<&str> = done.iter().map(|(id, _)| *id).collect();
        let stmt = tx
            .prepare_cached("DELETE FROM freshness_due WHERE kind = $1 AND entity_id = ANY($2)")
            .await?;
        tx.execute(&stmt, &[&kind.as_str(), &ids]).await?;
    }
    Ok(())
}
