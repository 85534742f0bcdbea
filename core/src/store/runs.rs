//! The run aggregate: `metric_runs` and `run_dataset_updates`. Every status
//! change is a conditional `UPDATE … WHERE status = <expected>`; a row count
//! of zero is returned as `false` or a typed conflict, never ignored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::catalog::LockedMetric;
use super::{StoreError, StoreResult, Transaction};
use crate::domain::events::Completion;
use crate::domain::run_request::UsedUpdate;
use crate::domain::run_state::RunStatus;

/// A metric's open pending run.
#[derive(Debug, Clone)]
pub struct OpenRun {
    pub id: String,
    pub metric_id: String,
    pub created: bool,
}

/// Takes each locked metric's pending run, or creates one (with a row per
/// required dataset) using the id offered in `new_ids` (same order).
pub async fn open_pending_runs(
    tx: &Transaction<'_>,
    metrics: &[LockedMetric],
    new_ids: &[String],
) -> StoreResult<Vec<OpenRun>> {
    let stmt = tx
        .prepare_cached(
            "WITH m AS (
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[])
                          AS m(metric_id, new_id, code, required_days)
             ), existing AS (
                 SELECT r.id, r.metric_id FROM metric_runs r JOIN m ON r.metric_id = m.metric_id
                  WHERE r.status = 'pending_dependencies'
             ), created AS (
                 INSERT INTO metric_runs (id, metric_id, metric_code, status)
                 SELECT m.new_id, m.metric_id, m.code, 'pending_dependencies' FROM m
                  WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.metric_id = m.metric_id)
                 RETURNING id, metric_id
             ), created_rows AS (
                 INSERT INTO metric_run_pending_datasets (run_id, dataset_id, required_days)
                 SELECT DISTINCT c.id, ds.dataset_id, m.required_days
                   FROM created c
                   JOIN m ON m.metric_id = c.metric_id
                   JOIN metric_dependencies md ON md.metric_id = c.metric_id
                   JOIN dataset_series ds ON ds.series_code = md.series_code
             )
             SELECT id, metric_id, false FROM existing
             UNION ALL
             SELECT id, metric_id, true FROM created",
        )
        .await?;
    let ids: Vec<&str> = metrics.iter().map(|m| m.id.as_str()).collect();
    let codes: Vec<&str> = metrics.iter().map(|m| m.code.as_str()).collect();
    let days: Vec<i32> = metrics.iter().map(|m| m.required_days).collect();
    let rows = tx.query(&stmt, &[&ids, &new_ids, &codes, &days]).await?;
    Ok(rows
        .iter()
        .map(|r| OpenRun {
            id: r.get(0),
            metric_id: r.get(1),
            created: r.get(2),
        })
        .collect())
}

/// `pending_dependencies → queued` for complete runs; records the updates
/// they use. `runs` holds (run id, update-set key).
pub async fn queue_pending(tx: &Transaction<'_>, runs: &[(String, String)]) -> StoreResult<()> {
    let queue = tx
        .prepare_cached(
            "UPDATE metric_runs r
                SET status = 'queued', requested_at = now(), last_contact_at = now(),
                    update_set_key = k.key, updated_at = now()
               FROM unnest($1::text[], $2::text[]) AS k(id, key)
              WHERE r.id = k.id AND r.status = 'pending_dependencies'",
        )
        .await?;
    let record = tx
        .prepare_cached(
            "INSERT INTO run_dataset_updates (run_id, dataset_update_id)
             SELECT run_id, received_update_id FROM metric_run_pending_datasets
              WHERE run_id = ANY($1)",
        )
        .await?;
    let (ids, keys): (Vec<&str>, Vec<&str>) = runs.iter().map(|(i, k)| (i.as_str(), k.as_str())).unzip();
    let queue_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &keys];
    let record_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&ids];
    let (queued, _) = futures::try_join!(tx.execute(&queue, &queue_params), tx.execute(&record, &record_params))?;
    if queued as usize != runs.len() {
        return Err(StoreError::Conflict(format!(
            "{} of {} pending runs changed status before they could be queued",
            runs.len() - queued as usize,
            runs.len()
        )));
    }
    Ok(())
}

/// The updates each run uses (from `run_dataset_updates`).
pub async fn used_updates(tx: &Transaction<'_>, run_ids: &[String]) -> StoreResult<HashMap<String, Vec<UsedUpdate>>> {
    let stmt = tx
        .prepare_cached(
            "SELECT rdu.run_id, du.dataset_id, du.id, COALESCE(du.bucket, ''), du.version_manifest_path,
                    du.projections_path, du.created_at
               FROM run_dataset_updates rdu
               JOIN dataset_updates du ON du.id = rdu.dataset_update_id
              WHERE rdu.run_id = ANY($1)
              ORDER BY rdu.run_id, du.dataset_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&run_ids]).await?;
    let mut out: HashMap<String, Vec<UsedUpdate>> = HashMap::new();
    for r in &rows {
        out.entry(r.get(0)).or_default().push(UsedUpdate {
            dataset_id: r.get(1),
            update_id: r.get(2),
            bucket: r.get(3),
            manifest_path: r.get(4),
            projections_path: r.get(5),
            created_at: r.get(6),
        });
    }
    Ok(out)
}

/// The fields of a run that use cases decide on.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub id: String,
    pub metric_id: String,
    pub metric_code: String,
    pub status: RunStatus,
    pub attempt: i32,
    pub max_attempts: i32,
    pub requested_at: Option<DateTime<Utc>>,
}

fn status_of(s: &str) -> StoreResult<RunStatus> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))
}

pub async fn get(tx: &Transaction<'_>, run_id: &str) -> StoreResult<Option<RunRef>> {
    let stmt = tx
        .prepare_cached(
            "SELECT r.id, r.metric_id, r.metric_code, r.status, r.attempt, m.max_attempts, r.requested_at
               FROM metric_runs r JOIN metrics m ON m.id = r.metric_id WHERE r.id = $1",
        )
        .await?;
    let Some(r) = tx.query_opt(&stmt, &[&run_id]).await? else {
        return Ok(None);
    };
    Ok(Some(RunRef {
        id: r.get(0),
        metric_id: r.get(1),
        metric_code: r.get(2),
        status: status_of(r.get(3))?,
        attempt: r.get(4),
        max_attempts: r.get(5),
        requested_at: r.get(6),
    }))
}

/// `started` from `expected`: → running. Before running the earliest start
/// wins; once running, `started_at` is only filled in when missing.
pub async fn mark_started(
    tx: &Transaction<'_>,
    run_id: &str,
    expected: RunStatus,
    started_at: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = 'running',
                    started_at = CASE WHEN status = 'running' THEN COALESCE(started_at, COALESCE($3, now()))
                                      ELSE LEAST(started_at, COALESCE($3, now())) END,
                    last_contact_at = now(), updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&run_id, &expected.as_str(), &started_at]).await? == 1)
}

/// `heartbeat` from `expected`: → running, `last_heartbeat_at` = max(old, ts).
pub async fn mark_heartbeat(
    tx: &Transaction<'_>,
    run_id: &str,
    expected: RunStatus,
    ts: Option<DateTime<Utc>>,
    progress: Option<f64>,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = 'running',
                    last_heartbeat_at = GREATEST(last_heartbeat_at, COALESCE($3, now())),
                    progress = COALESCE($4, progress),
                    last_contact_at = now(), updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&run_id, &expected.as_str(), &ts, &progress]).await? == 1)
}

/// `completed` from `expected`: → `to` (succeeded or failed) with the results.
pub async fn mark_completed(
    tx: &Transaction<'_>,
    expected: RunStatus,
    to: RunStatus,
    c: &Completion,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = $3, finished_at = now(), version_ts = $4, manifest_path = $5,
                    row_count = $6, error = $7, updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    let n = tx
        .execute(
            &stmt,
            &[&c.run_id, &expected.as_str(), &to.as_str(), &c.version_ts, &c.output_manifest, &c.row_count, &c.error],
        )
        .await?;
    Ok(n == 1)
}

/// A run that just timed out.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub id: String,
    pub metric_code: String,
    pub previous: RunStatus,
}

/// Moves up to `limit` overdue runs to `timed_out`, measured on the database
/// clock from when the fleet last heard of them. Rows another replica is
/// handling are skipped.
pub async fn time_out_overdue(
    tx: &Transaction<'_>,
    heartbeat_timeout_secs: f64,
    start_timeout_secs: f64,
    limit: i64,
) -> StoreResult<Vec<TimedOut>> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs r
                SET status = 'timed_out', finished_at = now(), updated_at = now(),
                    error = CASE WHEN c.status = 'running'
                                 THEN format('no heartbeat received within %s s', $1::float8)
                                 ELSE format('not started within %s s', $2::float8) END
               FROM (SELECT id, status FROM metric_runs
                      WHERE (status = 'running' AND last_contact_at < now() - make_interval(secs => $1))
                         OR (status IN ('queued', 'dispatched')
                             AND last_contact_at < now() - make_interval(secs => $2))
                      ORDER BY last_contact_at
                      LIMIT $3
                        FOR UPDATE SKIP LOCKED) c
              WHERE r.id = c.id AND r.status = c.status
             RETURNING r.id, r.metric_code, c.status",
        )
        .await?;
    let rows = tx
        .query(&stmt, &[&heartbeat_timeout_secs, &start_timeout_secs, &limit])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TimedOut {
                id: r.get(0),
                metric_code: r.get(1),
                previous: status_of(r.get(2))?,
            })
        })
        .collect()
}

/// A run created by this transaction and to be requested through the outbox.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: String,
    pub metric_id: String,
    pub metric_code: String,
    pub attempt: i32,
}

/// Queues a retry (attempt + 1, same dataset updates) of each ended run in
/// `pairs` (old id, new id) whose metric allows another attempt. A run is
/// retried at most once, whatever reports its end.
pub async fn create_retries(tx: &Transaction<'_>, pairs: &[(String, String)]) -> StoreResult<Vec<NewRun>> {
    let stmt = tx
        .prepare_cached(
            "WITH n AS (SELECT * FROM unnest($1::text[], $2::text[]) AS n(old_id, new_id)),
             created AS (
                 INSERT INTO metric_runs (id, metric_id, metric_code, status, attempt, retry_of,
                                          requested_at, last_contact_at)
                 SELECT n.new_id, r.metric_id, r.metric_code, 'queued', r.attempt + 1, r.id, now(), now()
                   FROM n
                   JOIN metric_runs r ON r.id = n.old_id
                   JOIN metrics m ON m.id = r.metric_id
                  WHERE r.status IN ('failed', 'timed_out') AND r.attempt < m.max_attempts AND m.enabled
                 ON CONFLICT (retry_of) WHERE retry_of IS NOT NULL DO NOTHING
                 RETURNING id, metric_id, metric_code, attempt, retry_of
             ), copied AS (
                 INSERT INTO run_dataset_updates (run_id, dataset_update_id)
                 SELECT c.id, rdu.dataset_update_id
                   FROM created c JOIN run_dataset_updates rdu ON rdu.run_id = c.retry_of
             )
             SELECT id, metric_id, metric_code, attempt FROM created",
        )
        .await?;
    let (old, new): (Vec<&str>, Vec<&str>) = pairs.iter().map(|(o, n)| (o.as_str(), n.as_str())).unzip();
    let rows = tx.query(&stmt, &[&old, &new]).await?;
    Ok(rows
        .iter()
        .map(|r| NewRun {
            id: r.get(0),
            metric_id: r.get(1),
            metric_code: r.get(2),
            attempt: r.get(3),
        })
        .collect())
}

/// Inserts an operator-triggered run, already `queued`, using `updates`.
pub async fn insert_triggered(
    tx: &Transaction<'_>,
    run: &NewRun,
    update_ids: &[String],
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO metric_runs (id, metric_id, metric_code, status, attempt, requested_at, last_contact_at)
         VALUES ($1, $2, $3, 'queued', $4, now(), now())",
        &[&run.id, &run.metric_id, &run.metric_code, &run.attempt],
    )
    .await?;
    tx.execute(
        "INSERT INTO run_dataset_updates (run_id, dataset_update_id) SELECT $1, unnest($2::text[])",
        &[&run.id, &update_ids],
    )
    .await?;
    Ok(())
}

/// `expected → canceled`.
pub async fn cancel(tx: &Transaction<'_>, run_id: &str, expected: RunStatus, reason: &str) -> StoreResult<bool> {
    let n = tx
        .execute(
            "UPDATE metric_runs SET status = 'canceled', finished_at = now(), error = $3, updated_at = now()
              WHERE id = $1 AND status = $2",
            &[&run_id, &expected.as_str(), &reason],
        )
        .await?;
    Ok(n == 1)
}

/// Cancels the open pending run of each metric in `metric_ids`; returns the
/// canceled run ids.
pub async fn cancel_pending_of(tx: &Transaction<'_>, metric_ids: &[String], reason: &str) -> StoreResult<Vec<String>> {
    let rows = tx
        .query(
            "UPDATE metric_runs SET status = 'canceled', finished_at = now(), error = $2, updated_at = now()
              WHERE metric_id = ANY($1) AND status = 'pending_dependencies'
             RETURNING id",
            &[&metric_ids, &reason],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Metrics whose pending run no longer matches the catalog: the metric is
/// disabled, or its required datasets differ from the run's rows.
pub async fn metrics_with_stale_pending_runs(tx: &Transaction<'_>) -> StoreResult<Vec<String>> {
    let rows = tx
        .query(
            "WITH p AS (
                 SELECT r.id, r.metric_id, m.enabled FROM metric_runs r JOIN metrics m ON m.id = r.metric_id
                  WHERE r.status = 'pending_dependencies'
             ), have AS (
                 SELECT p.id, array_agg(pd.dataset_id ORDER BY pd.dataset_id) AS ds
                   FROM p JOIN metric_run_pending_datasets pd ON pd.run_id = p.id GROUP BY p.id
             ), want AS (
                 SELECT p.id, array_agg(DISTINCT ds.dataset_id ORDER BY ds.dataset_id) AS ds
                   FROM p JOIN metric_dependencies md ON md.metric_id = p.metric_id
                   JOIN dataset_series ds ON ds.series_code = md.series_code GROUP BY p.id
             )
             SELECT p.metric_id FROM p
               LEFT JOIN have h ON h.id = p.id LEFT JOIN want w ON w.id = p.id
              WHERE NOT p.enabled OR h.ds IS DISTINCT FROM w.ds",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Pending rows follow the metric's current `required_days`.
pub async fn sync_pending_required_days(tx: &Transaction<'_>) -> StoreResult<u64> {
    Ok(tx
        .execute(
            "UPDATE metric_run_pending_datasets pd SET required_days = m.required_days
               FROM metric_runs r JOIN metrics m ON m.id = r.metric_id
              WHERE pd.run_id = r.id AND r.status = 'pending_dependencies'
                AND pd.required_days <> m.required_days",
            &[],
        )
        .await?)
}

/// `queued → dispatched` for runs whose request reached the topic; a run that
/// moved on meanwhile (started, canceled…) is left as it is.
pub async fn mark_dispatched(tx: &Transaction<'_>, run_ids: &[String]) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs SET status = 'dispatched', dispatched_at = now(), updated_at = now()
              WHERE id = ANY($1) AND status = 'queued'",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&run_ids]).await?)
}
