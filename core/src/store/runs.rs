//! The run aggregate: `metric_runs` and `run_extra_inputs`. Every status
//! change is a conditional `UPDATE … WHERE status = <expected>`; a row count
//! of zero is returned as `false` or a typed conflict, never ignored.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{Json, ToSql};

pub use super::run_outbox::RequestColumns;
use super::{GenericClient, StoreError, StoreResult, Transaction};
use crate::domain::events::Completion;
use crate::domain::ids::{BackfillId, MetricId, OutboxId, RunId, UpdateId};
use crate::domain::run_request::{TriggerNote, UsedUpdate};
use crate::domain::run_state::RunStatus;

/// A run created by a projection update, in its decided status.
#[derive(Debug, Clone)]
pub struct CreatedRun<'a> {
    pub id: &'a RunId,
    pub metric_id: &'a MetricId,
    pub metric_code: &'a str,
    /// `Some(update-set key)` when complete at once: inserted `queued`.
    pub queued_with_key: Option<&'a str>,
    /// What it went without (docs/contracts.md, "degraded"), when requested so.
    pub degraded: Option<&'a serde_json::Value>,
    /// Its first two inputs, when requested (the others are [`Use`]s).
    pub inputs: RowInputs<'a>,
}

/// The first two inputs of a requested run, kept on its row (migrations
/// V11 and V13); a run's further inputs are [`Use`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowInputs<'a> {
    pub first: Option<&'a UpdateId>,
    pub second: Option<&'a UpdateId>,
}

pub(super) const INSERT_CREATED: &str = "INSERT INTO metric_runs (id, metric_id, metric_code, status, requested_at, last_contact_at, update_set_key, degraded, input_update_id,
                                     second_input_update_id, request_id, request_requested_at, request_base_path,
                                     request_trigger_note, request_group_id, request_traceparent,
                                     request_source_sent_at, request_attempts, request_next_attempt_at,
                                     definition_version)
             SELECT id, metric_id, code,
                    CASE WHEN key IS NULL THEN 'pending_dependencies' ELSE 'queued' END,
                    CASE WHEN key IS NULL THEN NULL ELSE now() END,
                    CASE WHEN key IS NULL THEN NULL ELSE now() END,
                    key::uuid, degraded, input, second,
                    CASE WHEN req_at IS NULL THEN NULL ELSE nextval('outbox_messages_id_seq') END,
                    req_at, base_path, note, grp, trace, sent,
                    CASE WHEN req_at IS NULL THEN NULL WHEN $14::float8 IS NULL THEN 0 ELSE 1 END,
                    CASE WHEN req_at IS NULL THEN NULL
                         ELSE now() + make_interval(secs => COALESCE($14::float8, 0)) END,
                    -- A requested run records its metric's definition now.
                    CASE WHEN key IS NULL THEN NULL
                         ELSE (SELECT m.definition_version FROM metrics m WHERE m.id = u.metric_id) END
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[],
                           $8::timestamptz[], $9::text[], $10::jsonb[], $11::text[], $12::text[], $13::timestamptz[])
                    AS u(id, metric_id, code, key, degraded, input, second,
                         req_at, base_path, note, grp, trace, sent)
             RETURNING id, request_id";

/// Inserts new runs: `queued` (requested now) when complete, else
/// `pending_dependencies`; a requested run carries its request
/// (`requests`, by run, [`RequestColumns`]). The caller holds the metrics'
/// locks, so the one-pending-run-per-metric index cannot be raced. Returns
/// the number of runs inserted and the message id of each request.
pub async fn insert_created(
    tx: &Transaction<'_>,
    created: &[CreatedRun<'_>],
    requests: &RequestColumns<'_>,
) -> StoreResult<(u64, Vec<(RunId, OutboxId)>)> {
    if created.is_empty() {
        return Ok((0, Vec::new()));
    }
    let stmt = tx.prepare_cached(INSERT_CREATED).await?;
    let ids: Vec<&RunId> = created.iter().map(|c| c.id).collect();
    let metrics: Vec<&MetricId> = created.iter().map(|c| c.metric_id).collect();
    let codes: Vec<&str> = created.iter().map(|c| c.metric_code).collect();
    let keys: Vec<Option<&str>> = created.iter().map(|c| c.queued_with_key).collect();
    let degraded: Vec<Option<&serde_json::Value>> = created.iter().map(|c| c.degraded).collect();
    let (first, second): (Vec<_>, Vec<_>) = created
        .iter()
        .map(|c| (c.inputs.first, c.inputs.second))
        .unzip();
    let r = requests.for_runs(&ids);
    let own: [&(dyn ToSql + Sync); 7] = [&ids, &metrics, &codes, &keys, &degraded, &first, &second];
    let params: Vec<&(dyn ToSql + Sync)> = own.into_iter().chain(r.params()).collect();
    let rows = tx.query(&stmt, &params).await?;
    Ok((rows.len() as u64, requested_ids(&rows)))
}

/// The `(run id, request id)` pairs of returned rows that carry a request.
fn requested_ids(rows: &[tokio_postgres::Row]) -> Vec<(RunId, OutboxId)> {
    rows.iter()
        .filter_map(|r| Some((r.get(0), r.get::<_, Option<OutboxId>>(1)?)))
        .collect()
}

pub(super) const QUEUE_PENDING: &str = "UPDATE metric_runs r
                SET status = 'queued', requested_at = now(), last_contact_at = now(),
                    update_set_key = k.key::uuid, degraded = k.degraded, input_update_id = k.input,
                    second_input_update_id = k.second, updated_at = now(),
                    request_id = CASE WHEN k.req_at IS NULL THEN NULL ELSE nextval('outbox_messages_id_seq') END,
                    request_requested_at = k.req_at, request_base_path = k.base_path,
                    request_trigger_note = k.note, request_group_id = k.grp,
                    request_traceparent = k.trace, request_source_sent_at = k.sent,
                    request_attempts = CASE WHEN k.req_at IS NULL THEN NULL
                                            WHEN $12::float8 IS NULL THEN 0 ELSE 1 END,
                    request_next_attempt_at = CASE WHEN k.req_at IS NULL THEN NULL
                                                   ELSE now() + make_interval(secs => COALESCE($12::float8, 0)) END,
                    definition_version = (SELECT m.definition_version FROM metrics m WHERE m.id = r.metric_id)
               FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::text[],
                           $6::timestamptz[], $7::text[], $8::jsonb[], $9::text[], $10::text[], $11::timestamptz[])
                    AS k(id, key, degraded, input, second, req_at, base_path, note, grp, trace, sent)
              WHERE r.id = k.id AND r.status = 'pending_dependencies'
             RETURNING r.id, r.request_id";

/// A pending run that became complete, with the key of its update set.
#[derive(Debug, Clone)]
pub struct Completed<'a> {
    pub run_id: &'a RunId,
    pub update_set_key: &'a str,
    pub degraded: Option<&'a serde_json::Value>,
    /// Its first two inputs (the others are [`Use`]s).
    pub inputs: RowInputs<'a>,
}

/// `pending_dependencies → queued` for runs that became complete, each
/// carrying its request (`requests`, by run). A run that is no longer
/// pending is a conflict (the transaction is retried). Returns the message
/// id of each request.
pub async fn queue_pending(
    tx: &Transaction<'_>,
    runs: &[Completed<'_>],
    requests: &RequestColumns<'_>,
) -> StoreResult<Vec<(RunId, OutboxId)>> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let queue = tx.prepare_cached(QUEUE_PENDING).await?;
    let ids: Vec<&RunId> = runs.iter().map(|c| c.run_id).collect();
    let keys: Vec<&str> = runs.iter().map(|c| c.update_set_key).collect();
    let degraded: Vec<Option<&serde_json::Value>> = runs.iter().map(|c| c.degraded).collect();
    let (first, second): (Vec<_>, Vec<_>) = runs
        .iter()
        .map(|c| (c.inputs.first, c.inputs.second))
        .unzip();
    let r = requests.for_runs(&ids);
    let own: [&(dyn ToSql + Sync); 5] = [&ids, &keys, &degraded, &first, &second];
    let params: Vec<&(dyn ToSql + Sync)> = own.into_iter().chain(r.params()).collect();
    let queued = tx.query(&queue, &params).await?;
    if queued.len() != runs.len() {
        return Err(StoreError::Conflict(format!(
            "{} of {} pending runs changed status before they could be queued",
            runs.len() - queued.len(),
            runs.len()
        )));
    }
    Ok(requested_ids(&queued))
}

pub(super) const RECORD_USED: &str = "INSERT INTO run_extra_inputs (run_id, dataset_update_id)
             SELECT * FROM unnest($1::text[], $2::text[])";

/// One dataset update a requested run uses, besides the first two (kept
/// on the run row: [`RowInputs`]).
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    pub run_id: &'a RunId,
    pub update_id: &'a UpdateId,
}

/// Records which updates each requested run uses.
pub async fn record_used(tx: &Transaction<'_>, uses: &[Use<'_>]) -> StoreResult<u64> {
    if uses.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(RECORD_USED).await?;
    let (runs, updates): (Vec<&RunId>, Vec<&UpdateId>) =
        uses.iter().map(|u| (u.run_id, u.update_id)).unzip();
    Ok(tx.execute(&stmt, &[&runs, &updates]).await?)
}

const USED_UPDATES: &str =
    "SELECT rdu.run_id, du.dataset_id, du.id, COALESCE(du.bucket, ''), du.version_manifest_path,
        du.projections_path, du.created_at
   FROM run_inputs rdu
  CROSS JOIN LATERAL (
        SELECT * FROM dataset_updates u WHERE u.id = rdu.dataset_update_id LIMIT 1) du
  WHERE rdu.run_id = ANY($1)
  ORDER BY rdu.run_id, du.dataset_id";

/// The updates each run uses (`run_inputs`: the run row's first two inputs
/// and `run_extra_inputs`).
///
/// Each input's update is looked up by its key (`LIMIT 1` keeps the lookup
/// per input; the key is unique). Joined plainly, the planner hashes all of
/// `dataset_updates` while it has a few thousand rows: 0.8 ms a call for
/// the relay's eight runs, against 0.3 ms by key. Its generic plan is the
/// same lookup, without planning at each call.
pub async fn used_updates(
    db: &impl GenericClient,
    run_ids: &[RunId],
) -> StoreResult<HashMap<RunId, Vec<UsedUpdate>>> {
    let stmt = db.prepare_cached(USED_UPDATES).await?;
    let params: [&(dyn ToSql + Sync); 1] = [&run_ids];
    let rows = super::tx::with_generic_plan(db, db.query(&stmt, &params)).await?;
    let mut out: HashMap<RunId, Vec<UsedUpdate>> = HashMap::new();
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

/// The plan of [`used_updates`] for these runs (tests check it).
pub async fn explain_used_updates(
    tx: &Transaction<'_>,
    run_ids: &[RunId],
) -> StoreResult<Vec<String>> {
    let rows = tx
        .query(&format!("EXPLAIN {USED_UPDATES}"), &[&run_ids])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// What a run's request says of the run itself.
#[derive(Debug, Clone)]
pub struct RequestParts {
    pub id: RunId,
    pub metric_id: MetricId,
    pub metric_code: String,
    pub attempt: i32,
    /// The version of its metric's definition it was requested with;
    /// `None` for runs requested before versions existed.
    pub definition_version: Option<i32>,
    /// A backfill's run: the backfill and the moment it computes.
    pub backfill: Option<(BackfillId, DateTime<Utc>)>,
}

pub async fn request_parts(
    tx: &Transaction<'_>,
    run_ids: &[RunId],
) -> StoreResult<HashMap<RunId, RequestParts>> {
    let stmt = tx
        .prepare_cached(
            "SELECT id, metric_id, metric_code, attempt, definition_version, backfill_id, as_of
               FROM metric_runs WHERE id = ANY($1)",
        )
        .await?;
    let rows = tx.query(&stmt, &[&run_ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let parts = RequestParts {
                id: r.get(0),
                metric_id: r.get(1),
                metric_code: r.get(2),
                attempt: r.get(3),
                definition_version: r.get(4),
                backfill: r.get::<_, Option<BackfillId>>(5).zip(r.get(6)),
            };
            (parts.id.clone(), parts)
        })
        .collect())
}

/// The fields of a run that use cases decide on.
#[derive(Debug, Clone)]
pub struct RunRef {
    pub id: RunId,
    pub metric_id: MetricId,
    pub metric_code: String,
    pub status: RunStatus,
    pub attempt: i32,
    pub max_attempts: i32,
    pub requested_at: Option<DateTime<Utc>>,
}

pub(super) fn status_of(s: &str) -> StoreResult<RunStatus> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))
}

pub async fn get(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Option<RunRef>> {
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

/// A status change the state machine decided: `from` (the status the run
/// was read in, checked again by the update) to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<'a> {
    pub run_id: &'a RunId,
    pub from: RunStatus,
    pub to: RunStatus,
}

/// A `started` event: `from → to` (running). Before running the earliest
/// start wins; once running, `started_at` is only filled in when missing.
/// `false`: the run left `from` meanwhile.
pub async fn mark_started(
    tx: &Transaction<'_>,
    t: Transition<'_>,
    started_at: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = $4,
                    started_at = CASE WHEN status = 'running' THEN COALESCE(started_at, COALESCE($3, now()))
                                      ELSE LEAST(started_at, COALESCE($3, now())) END,
                    last_contact_at = now(), updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[&t.run_id, &t.from.as_str(), &started_at, &t.to.as_str()],
        )
        .await?
        == 1)
}

/// A `heartbeat` event: `from → to` (running), `last_heartbeat_at` = max(old, ts).
pub async fn mark_heartbeat(
    tx: &Transaction<'_>,
    t: Transition<'_>,
    ts: Option<DateTime<Utc>>,
    progress: Option<f64>,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = $5,
                    last_heartbeat_at = GREATEST(last_heartbeat_at, COALESCE($3, now())),
                    progress = COALESCE($4, progress),
                    last_contact_at = now(), updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    Ok(tx
        .execute(
            &stmt,
            &[&t.run_id, &t.from.as_str(), &ts, &progress, &t.to.as_str()],
        )
        .await?
        == 1)
}

/// A `completed` event: `from → to` (succeeded or failed) with the results.
pub async fn mark_completed(
    tx: &Transaction<'_>,
    t: Transition<'_>,
    c: &Completion,
) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET status = $3, finished_at = now(), version_ts = $4, manifest_path = $5,
                    row_count = $6, error = $7, code_version = $8, updated_at = now()
              WHERE id = $1 AND status = $2",
        )
        .await?;
    let n = tx
        .execute(
            &stmt,
            &[
                &t.run_id,
                &t.from.as_str(),
                &t.to.as_str(),
                &c.version_ts,
                &c.output_manifest,
                &c.row_count,
                &c.error,
                &c.code_version,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// A run that just timed out.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub id: RunId,
    pub metric_code: String,
    pub previous: RunStatus,
    pub attempt: i32,
    pub max_attempts: i32,
    /// Why it timed out.
    pub reason: String,
}

/// Moves up to `limit` overdue runs to `timed_out`, measured on the database
/// clock from when the fleet last heard of them. Rows another replica is
/// handling are skipped.
pub async fn time_out_overdue(
    tx: &Transaction<'_>,
    heartbeat_timeout_secs: Option<f64>,
    start_timeout_secs: f64,
    limit: i64,
) -> StoreResult<Vec<TimedOut>> {
    // Three reasons, the first that applies named in `error`: no heartbeat
    // (unless disabled: NULL), not started, or longer than the metric's
    // run_timeout_secs since its start.
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs r
                SET status = 'timed_out', finished_at = now(), updated_at = now(), error = c.reason
               FROM (SELECT o.id, o.status,
                            CASE WHEN o.status IN ('queued', 'dispatched')
                                 THEN format('not started within %s s', $2::float8)
                                 WHEN $1::float8 IS NOT NULL
                                      AND o.last_contact_at < now() - make_interval(secs => $1::float8)
                                 THEN format('no heartbeat received within %s s', $1::float8)
                                 ELSE format('ran longer than its metric''s run_timeout_secs (%s s) since it started',
                                             m.run_timeout_secs) END AS reason
                            , m.max_attempts
                       FROM metric_runs o JOIN metrics m ON m.id = o.metric_id
                      WHERE (o.status = 'running' AND $1::float8 IS NOT NULL
                             AND o.last_contact_at < now() - make_interval(secs => $1::float8))
                         OR (o.status = 'running' AND m.run_timeout_secs IS NOT NULL
                             AND COALESCE(o.started_at, o.last_contact_at)
                                 < now() - make_interval(secs => m.run_timeout_secs))
                         OR (o.status IN ('queued', 'dispatched')
                             AND o.last_contact_at < now() - make_interval(secs => $2::float8))
                      ORDER BY o.last_contact_at
                      LIMIT $3
                        FOR UPDATE OF o SKIP LOCKED) c
              WHERE r.id = c.id AND r.status = c.status
             RETURNING r.id, r.metric_code, c.status, r.attempt, c.max_attempts, c.reason",
        )
        .await?;
    let rows = tx
        .query(
            &stmt,
            &[&heartbeat_timeout_secs, &start_timeout_secs, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TimedOut {
                id: r.get(0),
                metric_code: r.get(1),
                previous: status_of(r.get(2))?,
                attempt: r.get(3),
                max_attempts: r.get(4),
                reason: r.get(5),
            })
        })
        .collect()
}

/// A run created by this transaction and to be requested through the outbox.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: RunId,
    pub metric_id: MetricId,
    pub metric_code: String,
    pub attempt: i32,
    /// What the request says of its trigger: a retry repeats its first
    /// attempt's (the same inputs, the same record of what it went without).
    pub trigger: Option<TriggerNote>,
}

/// A retry to create: the ended run and the new run's id.
#[derive(Debug, Clone)]
pub struct Retry {
    pub of: RunId,
    pub id: RunId,
}

/// Queues a retry (attempt + 1, same dataset updates, same definition version, same backfill
/// point, same record of what
/// it went without) of each ended run
/// whose metric allows another attempt. A run is retried at most once,
/// whatever reports its end.
pub async fn create_retries(tx: &Transaction<'_>, retries: &[Retry]) -> StoreResult<Vec<NewRun>> {
    let stmt = tx
        .prepare_cached(
            "WITH n AS (SELECT * FROM unnest($1::text[], $2::text[]) AS n(old_id, new_id)),
             created AS (
                 INSERT INTO metric_runs (id, metric_id, metric_code, status, attempt, retry_of,
                                          requested_at, last_contact_at, degraded, input_update_id,
                                          second_input_update_id, definition_version, backfill_id, as_of)
                 SELECT n.new_id, r.metric_id, r.metric_code, 'queued', r.attempt + 1, r.id, now(), now(),
                        r.degraded, r.input_update_id, r.second_input_update_id, r.definition_version,
                        r.backfill_id, r.as_of
                   FROM n
                   JOIN metric_runs r ON r.id = n.old_id
                   JOIN metrics m ON m.id = r.metric_id
                  WHERE r.status IN ('failed', 'timed_out') AND r.attempt < m.max_attempts AND m.enabled
                 ON CONFLICT (retry_of) WHERE retry_of IS NOT NULL DO NOTHING
                 RETURNING id, metric_id, metric_code, attempt, retry_of
             ), copied AS (
                 INSERT INTO run_extra_inputs (run_id, dataset_update_id)
                 SELECT c.id, rdu.dataset_update_id
                   FROM created c JOIN run_extra_inputs rdu ON rdu.run_id = c.retry_of
             )
             -- The ended run's note is on its row, or on its outbox row when
             -- it was itself a retry or requested before V14.
             SELECT c.id, c.metric_id, c.metric_code, c.attempt,
                    COALESCE(o.request_trigger_note,
                             (SELECT m.trigger_note FROM outbox_messages m
                               WHERE m.run_id = o.id AND m.alert_type IS NULL
                               ORDER BY m.id LIMIT 1))
               FROM created c JOIN metric_runs o ON o.id = c.retry_of",
        )
        .await?;
    let (old, new): (Vec<&RunId>, Vec<&RunId>) = retries.iter().map(|r| (&r.of, &r.id)).unzip();
    let rows = tx.query(&stmt, &[&old, &new]).await?;
    rows.iter()
        .map(|r| {
            let trigger: Option<Json<TriggerNote>> = r.try_get(4)?;
            Ok(NewRun {
                id: r.get(0),
                metric_id: r.get(1),
                metric_code: r.get(2),
                attempt: r.get(3),
                trigger: trigger.map(|Json(t)| t),
            })
        })
        .collect()
}

/// A run written `queued` with the inputs it uses: an operator's trigger,
/// a definition change's re-run, or a backfill point's first attempt.
#[derive(Debug, Clone)]
pub struct QueuedRun<'a> {
    pub run: &'a NewRun,
    pub inputs: &'a [UpdateId],
    /// A backfill's run: the backfill and the moment its inputs were pinned at.
    pub backfill: Option<(&'a BackfillId, DateTime<Utc>)>,
}

/// Inserts runs already `queued`, each recording its metric's definition
/// version now, with their inputs. A deliberate run has no update-set key,
/// so it may repeat an earlier run's inputs; a backfill point's first
/// attempt exists once (a unique index): a second is a conflict.
pub async fn insert_queued(tx: &Transaction<'_>, runs: &[QueuedRun<'_>]) -> StoreResult<()> {
    let ids: Vec<&RunId> = runs.iter().map(|r| &r.run.id).collect();
    let metrics: Vec<&MetricId> = runs.iter().map(|r| &r.run.metric_id).collect();
    let codes: Vec<&str> = runs.iter().map(|r| r.run.metric_code.as_str()).collect();
    let attempts: Vec<i32> = runs.iter().map(|r| r.run.attempt).collect();
    let backfills: Vec<Option<&BackfillId>> =
        runs.iter().map(|r| r.backfill.map(|b| b.0)).collect();
    let as_of: Vec<Option<DateTime<Utc>>> = runs.iter().map(|r| r.backfill.map(|b| b.1)).collect();
    let (run_of, input): (Vec<&RunId>, Vec<&UpdateId>) = runs
        .iter()
        .flat_map(|r| r.inputs.iter().map(|i| (&r.run.id, i)))
        .unzip();
    tx.execute(
        "WITH n AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::timestamptz[])
                        AS n(id, metric_id, code, attempt, backfill_id, as_of))
         INSERT INTO metric_runs (id, metric_id, metric_code, status, attempt, requested_at, last_contact_at,
                                  definition_version, backfill_id, as_of)
         SELECT n.id, n.metric_id, n.code, 'queued', n.attempt, now(), now(), m.definition_version,
                n.backfill_id, n.as_of
           FROM n JOIN metrics m ON m.id = n.metric_id",
        &[&ids, &metrics, &codes, &attempts, &backfills, &as_of],
    )
    .await?;
    tx.execute(
        "INSERT INTO run_extra_inputs (run_id, dataset_update_id) SELECT * FROM unnest($1::text[], $2::text[])",
        &[&run_of, &input],
    )
    .await?;
    Ok(())
}

/// `queued → canceled` for these runs (a backfill canceled before they were
/// published); runs that moved on are left as they are.
pub async fn cancel_queued(
    tx: &Transaction<'_>,
    run_ids: &[RunId],
    reason: &str,
) -> StoreResult<u64> {
    Ok(tx
        .execute(
            "UPDATE metric_runs SET status = 'canceled', finished_at = now(), error = $2, updated_at = now()
              WHERE id = ANY($1) AND status = 'queued'",
            &[&run_ids, &reason],
        )
        .await?)
}

/// `from → canceled` by an operator; `false`: the run left `from` meanwhile.
pub async fn cancel(tx: &Transaction<'_>, t: Transition<'_>, reason: &str) -> StoreResult<bool> {
    let n = tx
        .execute(
            "UPDATE metric_runs SET status = $4, finished_at = now(), error = $3, updated_at = now()
              WHERE id = $1 AND status = $2",
            &[&t.run_id, &t.from.as_str(), &reason, &t.to.as_str()],
        )
        .await?;
    Ok(n == 1)
}

/// Cancels the open pending run of each metric in `metric_ids`; returns the
/// canceled run ids.
pub async fn cancel_pending_of(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
    reason: &str,
) -> StoreResult<Vec<RunId>> {
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
pub async fn metrics_with_stale_pending_runs(tx: &Transaction<'_>) -> StoreResult<Vec<MetricId>> {
    let rows = tx
        .query(
            "WITH p AS (
                 SELECT r.id, r.metric_id, m.enabled FROM metric_runs r JOIN metrics m ON m.id = r.metric_id
                  WHERE r.status = 'pending_dependencies'
             ), have AS (
                 SELECT p.id, array_agg(pd.dataset_id ORDER BY pd.dataset_id) AS ds
                   FROM p JOIN metric_run_pending_datasets pd ON pd.run_id = p.id GROUP BY p.id
             ), want AS (
                 SELECT p.id, array_agg(r.dataset_id ORDER BY r.dataset_id) AS ds
                   FROM p JOIN metric_required_datasets r ON r.metric_id = p.metric_id GROUP BY p.id
             )
             SELECT p.metric_id FROM p
               LEFT JOIN have h ON h.id = p.id LEFT JOIN want w ON w.id = p.id
              WHERE NOT p.enabled OR h.ds IS DISTINCT FROM w.ds",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `queued → dispatched` for runs whose request reached the topic; a run that
/// moved on meanwhile (started, canceled…) is left as it is.
pub async fn mark_dispatched(tx: &Transaction<'_>, run_ids: &[RunId]) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs SET status = 'dispatched', dispatched_at = now(), updated_at = now()
              WHERE id = ANY($1) AND status = 'queued'",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&run_ids]).await?)
}
