//! Read-only statistics over the whole store: what the fleet has processed,
//! what is still in flight, and the invariants of projection-update
//! processing. Used by the tests, `loadgen` and operators' checks; nothing
//! here writes.

use super::{Pool, StoreResult};
use crate::domain::run_state::RunStatus;

/// Queries one `count(*)`.
async fn count(
    pool: &Pool,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> StoreResult<i64> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(sql).await?;
    Ok(client.query_one(&stmt, params).await?.get(0))
}

/// Projection updates recorded in `event_log` (each once, by its key).
pub async fn processed_updates(pool: &Pool) -> StoreResult<i64> {
    count(
        pool,
        "SELECT count(*) FROM event_log WHERE event_type = 'projection_update'",
        &[],
    )
    .await
}

/// The idempotency keys of every projection update recorded.
pub async fn processed_update_keys(pool: &Pool) -> StoreResult<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT event_key FROM event_log WHERE event_type = 'projection_update'",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Outbox rows written in all, and those not yet published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxCounts {
    pub written: i64,
    pub unpublished: i64,
}

pub async fn outbox_counts(pool: &Pool) -> StoreResult<OutboxCounts> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE published_at IS NULL) FROM outbox",
            &[],
        )
        .await?;
    Ok(OutboxCounts {
        written: row.get(0),
        unpublished: row.get(1),
    })
}

/// Where an update's time goes before its first run request is published,
/// per update sent at or after `since` (milliseconds, p50 / p99): from the
/// inbound SendMessage (`source_sent_at`) to the start of the transaction
/// that wrote its run requests (receive wait and queueing), and from there to
/// the first publication (handler, commit and PublishBatch).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PublishLatency {
    pub updates: i64,
    pub to_transaction: (f64, f64),
    pub to_published: (f64, f64),
}

/// Updates sent in `[since, until)`.
pub async fn publish_latency(
    pool: &Pool,
    since: std::time::SystemTime,
    until: std::time::SystemTime,
) -> StoreResult<PublishLatency> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH u AS (
               SELECT 1000 * extract(epoch FROM min(created_at) - source_sent_at) AS tx,
                      1000 * extract(epoch FROM min(published_at) - min(created_at)) AS pub
                 FROM outbox WHERE source_sent_at >= $1 AND source_sent_at < $2
                  AND published_at IS NOT NULL
                GROUP BY source_sent_at)
             SELECT count(*),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY tx)::float8,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY tx)::float8,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY pub)::float8,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY pub)::float8
               FROM u",
            &[&since, &until],
        )
        .await?;
    let ms = |i: usize| row.get::<_, Option<f64>>(i).unwrap_or(0.0);
    Ok(PublishLatency {
        updates: row.get(0),
        to_transaction: (ms(1), ms(2)),
        to_published: (ms(3), ms(4)),
    })
}

/// Runs whose status is one of `statuses`.
pub async fn runs_in(pool: &Pool, statuses: &[RunStatus]) -> StoreResult<i64> {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    count(
        pool,
        "SELECT count(*) FROM metric_runs WHERE status = ANY($1)",
        &[&names],
    )
    .await
}

/// One run request's payload, as published, if any (a realistic message body).
pub async fn sample_request(pool: &Pool) -> StoreResult<Option<String>> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let run: Option<crate::domain::ids::RunId> = tx
        .query_opt(
            "SELECT run_id FROM outbox WHERE run_id IS NOT NULL LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    let Some(run) = run else {
        return Ok(None);
    };
    let payload = super::outbox::payload_of(&tx, &run).await?;
    tx.commit().await?;
    Ok(payload)
}

/// Requested runs: (run id, metric code).
pub async fn requested_runs(pool: &Pool) -> StoreResult<Vec<(String, String)>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, metric_code FROM metric_runs WHERE requested_at IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Violations of the projection-update rules; every field is 0 in a
/// healthy store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Invariants {
    /// Metrics with more than one `pending_dependencies` run.
    pub metrics_with_two_pending_runs: i64,
    /// Runs with more than one request written: on the run row and in
    /// `outbox_messages` together, or twice in `outbox_messages` (whose
    /// rows with a run are requests; alerts have none).
    pub runs_requested_twice: i64,
    /// Requested runs without an outbox row.
    pub requested_runs_without_request: i64,
    /// Pairs of first-attempt runs of one metric using the identical set of
    /// dataset updates (computed from `run_inputs`, not from the
    /// stored key, so that it can catch a wrong key too).
    pub runs_sharing_an_update_set: i64,
    /// Requested runs that do not record one used update per required dataset.
    pub runs_with_incomplete_inputs: i64,
}

impl Invariants {
    /// Each rule with its violation count, for reports.
    pub fn rules(&self) -> [(&'static str, i64); 5] {
        [
            (
                "no metric has two pending runs",
                self.metrics_with_two_pending_runs,
            ),
            ("no run is requested twice", self.runs_requested_twice),
            (
                "every requested run has its outbox row",
                self.requested_runs_without_request,
            ),
            (
                "no two runs of a metric use the identical set of updates",
                self.runs_sharing_an_update_set,
            ),
            (
                "every requested run records one update per required dataset (but those it records as missing)",
                self.runs_with_incomplete_inputs,
            ),
        ]
    }
}

pub async fn invariants(pool: &Pool) -> StoreResult<Invariants> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT
               (SELECT count(*) FROM (SELECT metric_id FROM metric_runs
                   WHERE status = 'pending_dependencies' GROUP BY metric_id HAVING count(*) > 1) x),
               (SELECT count(*) FROM (
                   SELECT run_id FROM (
                       SELECT run_id FROM outbox_messages WHERE run_id IS NOT NULL
                       UNION ALL
                       SELECT id FROM metric_runs WHERE request_id IS NOT NULL) requests
                    GROUP BY run_id HAVING count(*) > 1) x),
               (SELECT count(*) FROM metric_runs r WHERE r.requested_at IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.id)),
               (SELECT count(*) FROM (
                   SELECT metric_id, s FROM (
                       SELECT r.metric_id,
                              string_agg(rdu.dataset_update_id, ',' ORDER BY rdu.dataset_update_id) s
                         FROM metric_runs r JOIN run_inputs rdu ON rdu.run_id = r.id
                        WHERE r.retry_of IS NULL GROUP BY r.id, r.metric_id) x
                    GROUP BY metric_id, s HAVING count(*) > 1) d),
               (SELECT count(*) FROM metric_runs r WHERE r.requested_at IS NOT NULL AND
                   (SELECT count(*) FROM run_inputs rdu WHERE rdu.run_id = r.id) <>
                   (SELECT count(DISTINCT ds.dataset_id) FROM metric_dependencies md
                      JOIN dataset_series ds ON ds.series_code = md.series_code
                     WHERE md.metric_id = r.metric_id)
                   - COALESCE(jsonb_array_length(r.degraded -> 'missing'), 0))",
            &[],
        )
        .await?;
    Ok(Invariants {
        metrics_with_two_pending_runs: row.get(0),
        runs_requested_twice: row.get(1),
        requested_runs_without_request: row.get(2),
        runs_sharing_an_update_set: row.get(3),
        runs_with_incomplete_inputs: row.get(4),
    })
}

/// One backend's wait at the moment of a `pg_stat_activity` sample:
/// `wait_event_type` and `wait_event`, both `None` when it is on CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendWait {
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
}

/// What every active backend of this database, other than the caller's, is
/// waiting on right now (benchmarks sample this to say where time goes).
pub async fn active_waits(pool: &Pool) -> StoreResult<Vec<BackendWait>> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT wait_event_type, wait_event FROM pg_stat_activity
              WHERE state = 'active' AND datname = current_database()
                AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .await?;
    Ok(client
        .query(&stmt, &[])
        .await?
        .iter()
        .map(|r| BackendWait {
            wait_event_type: r.get(0),
            wait_event: r.get(1),
        })
        .collect())
}
