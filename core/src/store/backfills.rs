//! The backfill aggregate: `backfills`, `backfill_points`, `backfill_edges`,
//! and what a plan reads (the catalog's metrics, the update log, the
//! metric's past runs). Every status change is a conditional `UPDATE`;
//! a row count other than the one expected is a conflict.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{runs, GenericClient, StoreError, StoreResult, Transaction};
use crate::domain::backfill::{Counts, Found, Status};
use crate::domain::backfill_plan::{Logged, PastRun};
use crate::domain::ids::{BackfillId, DatasetId, MetricId, RunId, UpdateId};

/// A metric as a plan needs it.
#[derive(Debug, Clone)]
pub struct PlanMetric {
    pub id: MetricId,
    pub code: String,
    pub enabled: bool,
    pub required: Vec<DatasetId>,
    pub required_days: i32,
    pub version: i32,
}

/// The metrics with these codes (unknown codes are absent).
pub async fn metrics(db: &impl GenericClient, codes: &[String]) -> StoreResult<Vec<PlanMetric>> {
    let rows = db
        .query(
            "SELECT m.id, m.code, m.enabled, m.required_days, COALESCE(m.definition_version, 1),
                    ARRAY(SELECT r.dataset_id FROM metric_required_datasets r WHERE r.metric_id = m.id ORDER BY r.dataset_id)
               FROM metrics m WHERE m.code = ANY($1) ORDER BY m.code",
            &[&codes],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PlanMetric {
            id: r.get(0),
            code: r.get(1),
            enabled: r.get(2),
            required_days: r.get(3),
            version: r.get(4),
            required: r.get(5),
        })
        .collect())
}

/// Every (metric, upstream metric) pair of the catalog: a metric reads
/// another when one of its series is named by the other's code.
pub async fn edges(db: &impl GenericClient) -> StoreResult<Vec<(MetricId, MetricId, String)>> {
    let rows = db
        .query(
            "SELECT DISTINCT d.metric_id, u.id, m.code FROM metric_dependencies d
               JOIN metrics u ON u.code = d.series_code
               JOIN metrics m ON m.id = d.metric_id
              WHERE u.id <> d.metric_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Each dataset's updates that can be current in `[from, to]`: those
/// logged in it, and the newest one before it. Oldest first.
pub async fn update_log(
    db: &impl GenericClient,
    datasets: &[DatasetId],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> StoreResult<HashMap<DatasetId, Vec<Logged>>> {
    let rows = db
        .query(
            "SELECT dataset_id, id, created_at FROM dataset_updates
              WHERE dataset_id = ANY($1) AND created_at > $2 AND created_at <= $3
             UNION ALL
             SELECT d.id, u.id, u.created_at FROM unnest($1::text[]) AS d(id),
                    LATERAL (SELECT id, created_at FROM dataset_updates
                              WHERE dataset_id = d.id AND created_at <= $2
                              ORDER BY created_at DESC, id DESC LIMIT 1) u
             ORDER BY 1, 3, 2",
            &[&datasets, &from, &to],
        )
        .await?;
    let mut out: HashMap<DatasetId, Vec<Logged>> = HashMap::new();
    for r in &rows {
        out.entry(r.get(0)).or_default().push(Logged {
            id: r.get(1),
            created_at: r.get(2),
        });
    }
    Ok(out)
}

/// The metric's runs that stand at or before `to` (live runs by their
/// request time, backfill runs by their moment), with the updates each used.
pub async fn past_runs(
    db: &impl GenericClient,
    metric: &MetricId,
    to: DateTime<Utc>,
) -> StoreResult<Vec<PastRun>> {
    let rows = db
        .query(
            "SELECT id, as_of, requested_at, retry_of, attempt, status, definition_version
               FROM metric_runs
              WHERE metric_id = $1 AND status <> 'pending_dependencies'
                AND ((as_of IS NULL AND requested_at <= $2) OR as_of <= $2)
              ORDER BY created_at, id",
            &[&metric, &to],
        )
        .await?;
    let ids: Vec<RunId> = rows.iter().map(|r| r.get(0)).collect();
    let used = runs::used_updates(db, &ids).await?;
    rows.iter()
        .map(|r| {
            let id: RunId = r.get(0);
            let inputs = used
                .get(&id)
                .map(|u| u.iter().map(|u| u.update_id.clone()).collect())
                .unwrap_or_default();
            Ok(PastRun {
                as_of: r.get(1),
                requested_at: r.get(2),
                retry_of: r.get(3),
                attempt: r.get(4),
                status: runs::status_of(r.get(5))?,
                definition_version: r.get(6),
                inputs,
                id,
            })
        })
        .collect()
}

/// A backfill to write.
#[derive(Debug, Clone)]
pub struct NewBackfill<'a> {
    pub id: &'a BackfillId,
    /// The caller's own key, if any.
    pub key: Option<&'a str>,
    pub request_key: &'a str,
    pub metrics: &'a [String],
    pub downstream: bool,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: &'a str,
    pub reprocess: &'a str,
    pub max_in_flight: i32,
    pub by: Option<&'a str>,
    pub reason: Option<&'a str>,
}

/// A point to write.
#[derive(Debug, Clone)]
pub struct NewPoint<'a> {
    pub metric_id: &'a MetricId,
    pub as_of: DateTime<Utc>,
    pub depth: i32,
    pub found: Found,
    /// `waiting` when the backfill recomputes it, else `skipped`.
    pub selected: bool,
    pub inputs: &'a [UpdateId],
}

/// Writes a backfill with its points and edges; `Err(existing id)` when a
/// backfill with the same key exists, or with the same request key running
/// or paused (nothing is written).
pub async fn insert(
    tx: &Transaction<'_>,
    b: &NewBackfill<'_>,
    points: &[NewPoint<'_>],
    edges: &[(MetricId, MetricId)],
) -> StoreResult<Result<(), BackfillId>> {
    let inserted = tx
        .query_opt(
            "INSERT INTO backfills (id, idempotency_key, request_key, metric_codes, downstream, from_at, to_at, points,
                                    reprocess, max_in_flight, status, created_by, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', COALESCE($11, current_user), $12)
             ON CONFLICT DO NOTHING RETURNING id",
            &[
                &b.id, &b.key, &b.request_key, &b.metrics, &b.downstream, &b.from, &b.to, &b.points,
                &b.reprocess, &b.max_in_flight, &b.by, &b.reason,
            ],
        )
        .await?;
    if inserted.is_none() {
        let row = tx
            .query_opt(
                "SELECT id FROM backfills
                  WHERE idempotency_key = $1 OR (request_key = $2 AND status IN ('running', 'paused'))
                  ORDER BY created_at DESC LIMIT 1",
                &[&b.key, &b.request_key],
            )
            .await?;
        // Gone meanwhile (finished between the insert and this read): the
        // caller's transaction runs again.
        let row = row.ok_or_else(|| StoreError::Conflict("a backfill with this key".into()))?;
        return Ok(Err(row.get(0)));
    }
    let metric: Vec<&MetricId> = points.iter().map(|p| p.metric_id).collect();
    let as_of: Vec<DateTime<Utc>> = points.iter().map(|p| p.as_of).collect();
    let depth: Vec<i32> = points.iter().map(|p| p.depth).collect();
    let found: Vec<&str> = points.iter().map(|p| p.found.as_str()).collect();
    let status: Vec<&str> = points
        .iter()
        .map(|p| if p.selected { "waiting" } else { "skipped" })
        .collect();
    // Arrays of arrays must be rectangular: the inputs travel as text.
    let inputs: Vec<String> = points
        .iter()
        .map(|p| {
            p.inputs
                .iter()
                .map(UpdateId::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    tx.execute(
        "INSERT INTO backfill_points (backfill_id, metric_id, as_of, depth, found, status, inputs, finished_at)
         SELECT $1, m, a, d, f, s, COALESCE(string_to_array(NULLIF(i, ''), ','), '{}'),
                CASE WHEN s = 'skipped' THEN now() END
           FROM unnest($2::text[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::text[]) AS u(m, a, d, f, s, i)",
        &[&b.id, &metric, &as_of, &depth, &found, &status, &inputs],
    )
    .await?;
    let (down, up): (Vec<&MetricId>, Vec<&MetricId>) = edges.iter().map(|(d, u)| (d, u)).unzip();
    tx.execute(
        "INSERT INTO backfill_edges (backfill_id, metric_id, upstream_id)
         SELECT $1, d, u FROM unnest($2::text[], $3::text[]) AS e(d, u)",
        &[&b.id, &down, &up],
    )
    .await?;
    Ok(Ok(()))
}

/// A backfill's row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Backfill {
    pub id: BackfillId,
    pub metrics: Vec<String>,
    pub downstream: bool,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: String,
    pub reprocess: String,
    pub max_in_flight: i32,
    pub status: String,
    pub created_by: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "id, metric_codes, downstream, from_at, to_at, points, reprocess, max_in_flight, status,
                       created_by, reason, created_at, finished_at";

fn backfill_of(r: &tokio_postgres::Row) -> Backfill {
    Backfill {
        id: r.get(0),
        metrics: r.get(1),
        downstream: r.get(2),
        from: r.get(3),
        to: r.get(4),
        points: r.get(5),
        reprocess: r.get(6),
        max_in_flight: r.get(7),
        status: r.get(8),
        created_by: r.get(9),
        reason: r.get(10),
        created_at: r.get(11),
        finished_at: r.get(12),
    }
}

pub async fn get(db: &impl GenericClient, id: &BackfillId) -> StoreResult<Option<Backfill>> {
    let sql = format!("SELECT {COLUMNS} FROM backfills WHERE id = $1");
    Ok(db.query_opt(&sql, &[&id]).await?.as_ref().map(backfill_of))
}

/// The newest backfills first.
pub async fn list(db: &impl GenericClient, limit: i64) -> StoreResult<Vec<Backfill>> {
    let sql = format!("SELECT {COLUMNS} FROM backfills ORDER BY created_at DESC, id DESC LIMIT $1");
    Ok(db
        .query(&sql, &[&limit])
        .await?
        .iter()
        .map(backfill_of)
        .collect())
}

/// Each backfill's points by where they are, and how many finished in the
/// last `window_secs`.
pub async fn counts(
    db: &impl GenericClient,
    ids: &[BackfillId],
    window_secs: f64,
) -> StoreResult<HashMap<BackfillId, (Counts, i64)>> {
    let rows = db
        .query(
            "SELECT backfill_id,
                    count(*) FILTER (WHERE status IN ('succeeded', 'skipped')),
                    count(*) FILTER (WHERE status = 'requested'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'waiting'),
                    count(*) FILTER (WHERE status = 'canceled'),
                    count(*) FILTER (WHERE run_id IS NOT NULL
                                       AND finished_at > now() - make_interval(secs => $2))
               FROM backfill_points WHERE backfill_id = ANY($1) GROUP BY backfill_id",
            &[&ids, &window_secs],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                (
                    Counts {
                        done: r.get(1),
                        running: r.get(2),
                        failed: r.get(3),
                        left: r.get(4),
                        canceled: r.get(5),
                    },
                    r.get(6),
                ),
            )
        })
        .collect())
}

/// One point, as operators read it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PointRow {
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    pub found: String,
    pub status: String,
    pub inputs: Vec<String>,
    pub run_id: Option<String>,
    pub detail: Option<String>,
}

/// A backfill's points in order (moment, then dependency depth), from `offset`.
pub async fn points(
    db: &impl GenericClient,
    id: &BackfillId,
    offset: i64,
    limit: i64,
) -> StoreResult<Vec<PointRow>> {
    let rows = db
        .query(
            "SELECT m.code, p.as_of, p.found, p.status, p.inputs, p.run_id, p.detail
               FROM backfill_points p JOIN metrics m ON m.id = p.metric_id
              WHERE p.backfill_id = $1
              ORDER BY p.as_of, p.depth, m.code OFFSET $2 LIMIT $3",
            &[&id, &offset, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| PointRow {
            metric_code: r.get(0),
            as_of: r.get(1),
            found: r.get(2),
            status: r.get(3),
            inputs: r.get(4),
            run_id: r.get(5),
            detail: r.get(6),
        })
        .collect())
}

/// A backfill a worker advances.
#[derive(Debug, Clone)]
pub struct Active {
    pub id: BackfillId,
    pub status: Status,
    pub max_in_flight: i32,
    pub metrics: Vec<String>,
}

/// Locks up to `limit` running or paused backfills no other worker holds.
pub async fn claim_active(tx: &Transaction<'_>, limit: i64) -> StoreResult<Vec<Active>> {
    let rows = tx
        .query(
            "SELECT id, status, max_in_flight, metric_codes FROM backfills
              WHERE status IN ('running', 'paused')
              ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Active {
                id: r.get(0),
                status: r.get::<_, &str>(1).parse().map_err(StoreError::Corrupt)?,
                max_in_flight: r.get(2),
                metrics: r.get(3),
            })
        })
        .collect()
}

/// Locks one backfill (an operator's action); its status.
pub async fn lock(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<Option<Status>> {
    let row = tx
        .query_opt(
            "SELECT status FROM backfills WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    row.map(|r| r.get::<_, &str>(0).parse().map_err(StoreError::Corrupt))
        .transpose()
}

/// A point that ended with this tick.
#[derive(Debug, Clone)]
pub struct Ended {
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    pub status: String,
    pub run_id: RunId,
    pub error: Option<String>,
}

/// Moves each requested point whose run chain has ended (its latest attempt
/// succeeded, failed or timed out with no retry to come, or was canceled).
/// Each point in flight is one probe of the backfill-point index of runs.
pub async fn settle(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<Vec<Ended>> {
    let rows = tx
        .query(
            "WITH last AS (
                 SELECT p.metric_id, p.as_of, r.id, r.status, r.error
                   FROM backfill_points p
                   CROSS JOIN LATERAL (
                        SELECT r.id, r.status, r.error FROM metric_runs r
                         WHERE r.backfill_id = p.backfill_id AND r.metric_id = p.metric_id AND r.as_of = p.as_of
                         ORDER BY r.attempt DESC LIMIT 1) r
                  WHERE p.backfill_id = $1 AND p.status = 'requested'
             )
             UPDATE backfill_points p
                SET status = CASE l.status WHEN 'succeeded' THEN 'succeeded' WHEN 'canceled' THEN 'canceled' ELSE 'failed' END,
                    run_id = l.id, detail = l.error, finished_at = now()
               FROM last l
              WHERE p.backfill_id = $1 AND p.metric_id = l.metric_id AND p.as_of = l.as_of
                AND p.status = 'requested' AND l.status IN ('succeeded', 'failed', 'timed_out', 'canceled')
             RETURNING (SELECT m.code FROM metrics m WHERE m.id = p.metric_id), p.as_of, p.status, l.id, l.error",
            &[&id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ended {
            metric_code: r.get(0),
            as_of: r.get(1),
            status: r.get(2),
            run_id: r.get(3),
            error: r.get(4),
        })
        .collect())
}

/// Whether any of the backfill's metrics reads another of them.
pub async fn has_edges(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<bool> {
    Ok(tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM backfill_edges WHERE backfill_id = $1)",
            &[&id],
        )
        .await?
        .get(0))
}

/// Fails the waiting points whose upstream point at or before their moment
/// failed (they cannot be computed); returns how many.
pub async fn fail_downstream_of_failed(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<u64> {
    let mut total = 0;
    // Each round reaches one level further down; depth is small.
    loop {
        let n = tx
            .execute(
                "WITH failed AS (
                     SELECT e.metric_id, min(u.as_of) AS since
                       FROM backfill_edges e
                       JOIN backfill_points u ON u.backfill_id = e.backfill_id AND u.metric_id = e.upstream_id
                      WHERE e.backfill_id = $1 AND u.status IN ('failed', 'canceled')
                      GROUP BY e.metric_id)
                 UPDATE backfill_points p SET status = 'failed', finished_at = now(),
                        detail = 'an upstream point at or before this moment failed'
                   FROM failed f
                  WHERE p.backfill_id = $1 AND p.metric_id = f.metric_id AND p.status = 'waiting'
                    AND p.as_of >= f.since",
                &[&id],
            )
            .await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

pub async fn in_flight(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<i64> {
    Ok(tx
        .query_one(
            "SELECT count(*) FROM backfill_points WHERE backfill_id = $1 AND status = 'requested'",
            &[&id],
        )
        .await?
        .get(0))
}

/// A point ready to request.
#[derive(Debug, Clone)]
pub struct Ready {
    pub metric_id: MetricId,
    pub metric_code: String,
    pub as_of: DateTime<Utc>,
    pub inputs: Vec<UpdateId>,
}

/// The next `limit` waiting points in order (moment, then depth) whose
/// upstream points at or before their moment are all done: a metric's
/// points wait until the earliest open point of its upstream metrics. A
/// held metric's points wait for its resume, as its live runs do, and a
/// disabled metric's until it is enabled again (or the backfill canceled).
pub async fn ready(tx: &Transaction<'_>, id: &BackfillId, limit: i64) -> StoreResult<Vec<Ready>> {
    let rows = tx
        .query(
            "WITH blocked AS (
                 SELECT e.metric_id, min(u.as_of) AS until
                   FROM backfill_edges e
                   JOIN backfill_points u ON u.backfill_id = e.backfill_id AND u.metric_id = e.upstream_id
                  WHERE e.backfill_id = $1 AND u.status IN ('waiting', 'requested')
                  GROUP BY e.metric_id)
             SELECT p.metric_id, m.code, p.as_of, p.inputs
               FROM backfill_points p
               JOIN metrics m ON m.id = p.metric_id
               LEFT JOIN blocked b ON b.metric_id = p.metric_id
              WHERE p.backfill_id = $1 AND p.status = 'waiting' AND m.held_at IS NULL AND m.enabled
                AND (b.until IS NULL OR p.as_of < b.until)
              ORDER BY p.as_of, p.depth, p.metric_id LIMIT $2",
            &[&id, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Ready {
            metric_id: r.get(0),
            metric_code: r.get(1),
            as_of: r.get(2),
            inputs: r.get(3),
        })
        .collect())
}

/// `waiting → requested` for these points with their runs; a point that
/// was not waiting is a conflict.
pub async fn mark_requested(
    tx: &Transaction<'_>,
    id: &BackfillId,
    points: &[(&MetricId, DateTime<Utc>, &RunId)],
) -> StoreResult<()> {
    let metric: Vec<&MetricId> = points.iter().map(|p| p.0).collect();
    let as_of: Vec<DateTime<Utc>> = points.iter().map(|p| p.1).collect();
    let run: Vec<&RunId> = points.iter().map(|p| p.2).collect();
    let n = tx
        .execute(
            "UPDATE backfill_points p SET status = 'requested', run_id = u.r, requested_at = now()
               FROM unnest($2::text[], $3::timestamptz[], $4::text[]) AS u(m, a, r)
              WHERE p.backfill_id = $1 AND p.metric_id = u.m AND p.as_of = u.a AND p.status = 'waiting'",
            &[&id, &metric, &as_of, &run],
        )
        .await?;
    if n as usize != points.len() {
        return Err(StoreError::Conflict(format!(
            "backfill {id}: {} of {} points were no longer waiting",
            points.len() - n as usize,
            points.len()
        )));
    }
    Ok(())
}

/// `running → completed|failed` when no point is waiting or in flight;
/// the status it ended in.
pub async fn finish_if_done(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<Option<Status>> {
    let row = tx
        .query_opt(
            "UPDATE backfills b
                SET status = CASE WHEN EXISTS (SELECT 1 FROM backfill_points p
                                                WHERE p.backfill_id = b.id AND p.status IN ('failed', 'canceled'))
                                  THEN 'failed' ELSE 'completed' END,
                    finished_at = now(), updated_at = now()
              WHERE b.id = $1 AND b.status = 'running'
                AND NOT EXISTS (SELECT 1 FROM backfill_points p
                                 WHERE p.backfill_id = b.id AND p.status IN ('waiting', 'requested'))
             RETURNING b.status",
            &[&id],
        )
        .await?;
    row.map(|r| r.get::<_, &str>(0).parse().map_err(StoreError::Corrupt))
        .transpose()
}

/// Records the backfill's first failed point; `false` when one was
/// recorded before (its alert went then).
pub async fn first_failure(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<bool> {
    let n = tx
        .execute(
            "UPDATE backfills SET first_failure_at = now() WHERE id = $1 AND first_failure_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// `from → to` by an operator; `false`: it left `from` meanwhile.
pub async fn set_status(
    tx: &Transaction<'_>,
    id: &BackfillId,
    from: Status,
    to: Status,
) -> StoreResult<bool> {
    let n = tx
        .execute(
            "UPDATE backfills SET status = $3, updated_at = now(),
                    finished_at = CASE WHEN $3 IN ('canceled', 'completed', 'failed') THEN now() END
              WHERE id = $1 AND status = $2",
            &[&id, &from.as_str(), &to.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Cancels the points not finished; returns the runs of those in flight.
pub async fn cancel_points(tx: &Transaction<'_>, id: &BackfillId) -> StoreResult<Vec<RunId>> {
    let rows = tx
        .query(
            "UPDATE backfill_points SET status = 'canceled', finished_at = now(),
                    detail = COALESCE(detail, 'the backfill was canceled')
              WHERE backfill_id = $1 AND status IN ('waiting', 'requested')
             RETURNING run_id",
            &[&id],
        )
        .await?;
    Ok(rows.iter().filter_map(|r| r.get(0)).collect())
}

/// Per backfill running or paused (the `limit` oldest): its points by where
/// they are (gauges).
pub async fn active_counts(
    db: &impl GenericClient,
    limit: i64,
) -> StoreResult<Vec<(BackfillId, Counts)>> {
    let rows = db
        .query(
            "SELECT id FROM backfills WHERE status IN ('running', 'paused') ORDER BY created_at LIMIT $1",
            &[&limit],
        )
        .await?;
    let ids: Vec<BackfillId> = rows.iter().map(|r| r.get(0)).collect();
    let counts = counts(db, &ids, 60.0).await?;
    Ok(ids
        .into_iter()
        .map(|id| {
            let c = counts.get(&id).map(|c| c.0).unwrap_or_default();
            (id, c)
        })
        .collect())
}
