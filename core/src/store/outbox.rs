//! The transactional outbox (docs/semantics.md). Rows are written in the business
//! transaction; the relay claims them with a time-limited lease (so no
//! transaction stays open while it talks to SNS), publishes, and marks them.

use std::collections::HashMap;
use std::time::Duration;

use super::requests::{NewMessage, Recipe};
use super::runs::RequestParts;
use super::{GenericClient, StoreResult, Transaction};
use crate::domain::alert::{Alert, AlertType};
use crate::domain::ids::{MetricId, OutboxId, RunId};
use crate::domain::outgoing::Outgoing;
use crate::domain::run_request::Destination;

pub use crate::domain::outgoing::OutboxMessage;

pub(super) const INSERT: &str =
    "INSERT INTO outbox_messages (run_id, metric_code, requested_at, output_base_path, trigger_note,
                         message_group_id, traceparent, source_sent_at, attempts, next_attempt_at)
             SELECT *, 0, now()
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[],
                           $6::text[], $7::text[], $8::timestamptz[])
             RETURNING id";

/// Writes run requests' rows (retries', operator triggers'), due at once:
/// any relay claims them. A request an evaluation writes is carried on its
/// run row instead (`super::run_outbox`).
pub async fn insert(tx: &Transaction<'_>, rows: &[NewMessage<'_>]) -> StoreResult<Vec<OutboxId>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx.prepare_cached(INSERT).await?;
    let runs: Vec<&RunId> = rows.iter().map(|r| r.run_id).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.metric_code).collect();
    let at: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.requested_at).collect();
    let paths: Vec<&str> = rows.iter().map(|r| r.output_base_path.as_str()).collect();
    let notes: Vec<Option<&serde_json::Value>> =
        rows.iter().map(|r| r.trigger_note.as_ref()).collect();
    let groups: Vec<Option<&str>> = rows.iter().map(|r| r.message_group_id).collect();
    let traces: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.origin.traceparent.as_deref())
        .collect();
    let sent: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        rows.iter().map(|r| r.origin.source_sent_at).collect();
    let out = tx
        .query(
            &stmt,
            &[&runs, &codes, &at, &paths, &notes, &groups, &traces, &sent],
        )
        .await?;
    Ok(out.iter().map(|r| r.get(0)).collect())
}

/// A claimed row's body: written whole (alerts, and requests written before
/// recipes), or to assemble from its recipe.
enum Body {
    Written(String),
    Recipe(Recipe),
}

/// The columns [`body_of`] reads, after the first nine of a claim.
const BODY_COLUMNS: &str =
    "o.payload, o.run_id, o.requested_at, o.output_base_path, o.trigger_note, o.message_group_id";

fn body_of(r: &tokio_postgres::Row, at: usize) -> StoreResult<Body> {
    if let Some(payload) = r.get::<_, Option<String>>(at) {
        return Ok(Body::Written(payload));
    }
    let run_id: Option<RunId> = r.get(at + 1);
    let requested_at: Option<chrono::DateTime<chrono::Utc>> = r.get(at + 2);
    let base_path: Option<String> = r.get(at + 3);
    match (run_id, requested_at, base_path) {
        (Some(run_id), Some(requested_at), Some(base_path)) => Ok(Body::Recipe(Recipe {
            run_id,
            requested_at,
            to: Destination {
                base_path,
                fifo: r.get::<_, Option<String>>(at + 5).is_some(),
            },
            trigger_note: r.get(at + 4),
        })),
        _ => Err(super::StoreError::Corrupt(
            "outbox row with neither a payload nor a recipe".into(),
        )),
    }
}

/// Which due, unpublished rows a claim may lease.
#[derive(Debug, Clone, Copy)]
pub enum Claim<'a> {
    /// Any, oldest first: the sweep.
    Due,
    /// Rows of the outbox table, by id: alerts and the requests of retries.
    Rows(&'a [OutboxId]),
    /// Run requests an evaluation wrote, by their keys: those carried on run
    /// rows are found by the run's primary key, not among every due request.
    Requests(&'a [RequestKey]),
}

/// Leases up to `limit` of the due, unpublished rows `which` names for
/// `lease`; rows leased by another relay are skipped. Requests are
/// assembled from their recipes here; a row that cannot be is recorded as a
/// failed attempt (it backs off like a failed publish) and left out.
pub async fn claim(
    tx: &Transaction<'_>,
    which: Claim<'_>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<OutboxMessage>> {
    let keys = match which {
        Claim::Requests(keys) => Some(split(keys)),
        Claim::Due | Claim::Rows(_) => None,
    };
    let ids = match which {
        Claim::Due => None,
        Claim::Rows(ids) => Some(ids),
        Claim::Requests(_) => keys.as_ref().map(|(ids, _)| &ids[..]),
    };
    // The table's rows first: they are few (alerts, retries, triggers), and
    // a backlog of run requests after an outage must not hold back alerts.
    let mut rows = claim_rows(tx, ids, limit, lease).await?;
    let left = limit - rows.len() as i64;
    // Rows named by id are the table's own: no run carries them.
    if left > 0 && !matches!(which, Claim::Rows(_)) {
        let named = keys.as_ref().map(|(ids, runs)| (&ids[..], &runs[..]));
        rows.extend(super::run_outbox::claim(tx, named, left, lease).await?);
    }
    messages_of(tx, &rows, lease).await
}

/// The outbox table's part of [`claim`]: every due row, or those of `ids`
/// (found by the primary key).
async fn claim_rows(
    tx: &Transaction<'_>,
    ids: Option<&[OutboxId]>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let named = if ids.is_some() {
        "AND id = ANY($3)"
    } else {
        ""
    };
    let stmt = tx
        .prepare_cached(&format!(
            "WITH o AS (
                UPDATE outbox_messages u
                   SET attempts = u.attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
                  FROM (SELECT id FROM outbox_messages
                         WHERE published_at IS NULL AND next_attempt_at <= now() {named}
                         ORDER BY id LIMIT $1
                           FOR UPDATE SKIP LOCKED) c
                 WHERE u.id = c.id
                RETURNING u.*)
             SELECT {MESSAGE_COLUMNS}, {BODY_COLUMNS}, r.metric_id, r.metric_code, r.attempt, r.definition_version,
                    r.backfill_id, r.as_of
               FROM o LEFT JOIN metric_runs r ON r.id = o.run_id"
        ))
        .await?;
    let lease_secs = lease.as_secs_f64();
    Ok(match ids {
        Some(ids) => tx.query(&stmt, &[&limit, &lease_secs, &ids]).await?,
        None => tx.query(&stmt, &[&limit, &lease_secs]).await?,
    })
}

/// The columns a claim and a take read, in [`messages_of`]'s order.
const MESSAGE_COLUMNS: &str = "o.id, o.run_id, o.metric_code, o.message_group_id, o.attempts,
                    o.traceparent, o.source_sent_at, o.alert_type, o.dedup_key";

/// What finds a run request written: its outbox id, and its run, whose
/// primary key finds a request carried on the run's row. Evaluations
/// return these, whether their requests are handed to the relay at the
/// commit ([`take_handed`]) or left to claim ([`Claim::Requests`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKey {
    pub id: OutboxId,
    pub run: RunId,
}

/// Rows born leased to this relay, to publish now: those
/// of `handed` still unpublished whose birth lease has more than `min_left`
/// left (one that waited longer is left to the sweeper once its lease
/// ends; a row a sweeper claimed since has a second attempt and is not
/// taken). Nothing is written: the lease was taken with the rows.
pub async fn take_handed(
    db: &impl GenericClient,
    handed: &[RequestKey],
    min_left: Duration,
) -> StoreResult<Vec<OutboxMessage>> {
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {MESSAGE_COLUMNS}, {BODY_COLUMNS}, r.metric_id, r.metric_code, r.attempt, r.definition_version,
                    r.backfill_id, r.as_of
               FROM outbox_messages o LEFT JOIN metric_runs r ON r.id = o.run_id
              WHERE o.id = ANY($1) AND o.published_at IS NULL AND o.attempts = 1
                AND o.next_attempt_at > now() + make_interval(secs => $2)
              ORDER BY o.id"
        ))
        .await?;
    let (ids, runs) = split(handed);
    let min_left_secs = min_left.as_secs_f64();
    let (mut rows, on_runs) = futures::try_join!(
        async { Ok::<_, super::StoreError>(db.query(&stmt, &[&ids, &min_left_secs]).await?) },
        super::run_outbox::take_handed(db, &ids, &runs, min_left),
    )?;
    rows.extend(on_runs);
    messages_of(db, &rows, min_left).await
}

fn split(handed: &[RequestKey]) -> (Vec<OutboxId>, Vec<&RunId>) {
    handed.iter().map(|h| (h.id, &h.run)).unzip()
}

/// Handed rows the relay could not take (its queue was full): due now, as
/// if never leased, for the sweeper.
pub async fn release_handed(tx: &Transaction<'_>, handed: &[RequestKey]) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox_messages SET attempts = 0, next_attempt_at = now()
              WHERE id = ANY($1) AND published_at IS NULL AND attempts = 1 AND next_attempt_at > now()",
        )
        .await?;
    let (ids, runs) = split(handed);
    let (released, on_runs) = futures::try_join!(
        async { Ok::<_, super::StoreError>(tx.execute(&stmt, &[&ids]).await?) },
        super::run_outbox::release_handed(tx, &ids, &runs),
    )?;
    Ok(released + on_runs)
}

/// Claimed or taken rows as messages, each request assembled from its
/// recipe; a row that cannot be is recorded as a failed attempt (retried
/// after `retry_in`) and left out.
async fn messages_of(
    db: &impl GenericClient,
    rows: &[tokio_postgres::Row],
    retry_in: Duration,
) -> StoreResult<Vec<OutboxMessage>> {
    let mut claimed = Vec::with_capacity(rows.len());
    let mut recipes = Vec::new();
    // The runs' own parts come with the claim (one round trip fewer).
    let mut parts = HashMap::new();
    for r in rows {
        let body = body_of(r, 9)?;
        if let Body::Recipe(recipe) = &body {
            if let Some(metric_id) = r.get::<_, Option<MetricId>>(15) {
                let run = RequestParts {
                    id: recipe.run_id.clone(),
                    metric_id,
                    metric_code: r.get(16),
                    attempt: r.get(17),
                    definition_version: r.get(18),
                    backfill: r
                        .get::<_, Option<crate::domain::ids::BackfillId>>(19)
                        .zip(r.get(20)),
                };
                parts.insert(run.id.clone(), run);
            }
            recipes.push(recipe.clone());
        }
        claimed.push((r, body));
    }
    let mut assembled = super::requests::assemble_with(db, &recipes, &parts)
        .await?
        .into_iter();
    let mut out = Vec::with_capacity(claimed.len());
    for (r, body) in claimed {
        let id: OutboxId = r.get(0);
        let attempts: i32 = r.get(4);
        let payload = match body {
            Body::Written(p) => p,
            Body::Recipe(_) => match assembled.next() {
                Some(Ok(p)) => p,
                Some(Err(why)) => {
                    mark_failed(
                        db,
                        id,
                        r.get::<_, Option<RunId>>(1).as_ref(),
                        &why,
                        retry_in,
                    )
                    .await?;
                    tracing::warn!(outbox_id = %id, attempts, error = %why,
                        "a run request could not be assembled; it will be retried");
                    continue;
                }
                None => {
                    return Err(super::StoreError::Corrupt(
                        "fewer requests assembled than recipes".into(),
                    ))
                }
            },
        };
        out.push(OutboxMessage {
            id,
            kind: kind_of(r)?,
            payload,
            attempts,
            traceparent: r.get(5),
            source_sent_at: r.get(6),
        });
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// A row is a run request or an alert (the table's CHECK says which).
fn kind_of(r: &tokio_postgres::Row) -> StoreResult<Outgoing> {
    let run_id: Option<RunId> = r.get(1);
    let alert: Option<String> = r.get(7);
    match (run_id, alert) {
        (Some(run_id), None) => Ok(Outgoing::RunRequest {
            run_id,
            metric_code: r.get::<_, Option<String>>(2).unwrap_or_default(),
            message_group_id: r.get(3),
        }),
        (None, Some(t)) => Ok(Outgoing::Alert {
            alert_type: AlertType::parse(&t).ok_or_else(|| {
                super::StoreError::Corrupt(format!("outbox row with unknown alert type {t:?}"))
            })?,
            dedup_key: r.get::<_, Option<String>>(8).unwrap_or_default(),
        }),
        _ => Err(super::StoreError::Corrupt(
            "outbox row that is neither a run request nor an alert".into(),
        )),
    }
}

/// Queues alerts; one whose `dedup_key` is queued already is left out (the
/// same transition, found twice). Returns the ids of the rows written.
pub async fn insert_alerts(tx: &Transaction<'_>, alerts: &[Alert]) -> StoreResult<Vec<OutboxId>> {
    if alerts.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO outbox_messages (alert_type, dedup_key, payload, traceparent)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
             ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING
             RETURNING id",
        )
        .await?;
    let types: Vec<&str> = alerts.iter().map(|a| a.alert_type.as_str()).collect();
    let keys: Vec<&str> = alerts.iter().map(|a| a.dedup_key.as_str()).collect();
    let payloads: Vec<&str> = alerts.iter().map(|a| a.payload.as_str()).collect();
    let traces: Vec<Option<&str>> = alerts.iter().map(|a| a.traceparent.as_deref()).collect();
    let rows = tx
        .query(&stmt, &[&types, &keys, &payloads, &traces])
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Marks messages published, and moves the runs of the requests among
/// them that are still `queued` to `dispatched`. Returns how many runs moved.
pub async fn mark_published(
    tx: &Transaction<'_>,
    published: &[&OutboxMessage],
) -> StoreResult<u64> {
    if published.is_empty() {
        return Ok(0);
    }
    let ids: Vec<OutboxId> = published.iter().map(|m| m.id).collect();
    let runs: Vec<&RunId> = published.iter().filter_map(|m| m.run_id()).collect();
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox_messages SET published_at = now(), last_error = NULL
              WHERE id = ANY($1) AND published_at IS NULL
             RETURNING run_id",
        )
        .await?;
    let (rows, on_runs) = futures::try_join!(
        async { Ok::<_, super::StoreError>(tx.query(&stmt, &[&ids]).await?) },
        super::run_outbox::mark_published(tx, &ids, &runs),
    )?;
    // Alerts have no run, and requests carried by their run rows have no
    // row here: then no round trip for nothing.
    let run_ids: Vec<RunId> = rows
        .iter()
        .filter_map(|r| r.get::<_, Option<RunId>>(0))
        .collect();
    if run_ids.is_empty() {
        return Ok(on_runs);
    }
    Ok(on_runs + super::runs::mark_dispatched(tx, &run_ids).await?)
}

/// Records a failed publish of message `id` (of run `run`, for a run
/// request); it becomes due again after `retry_in`.
pub async fn mark_failed(
    db: &impl GenericClient,
    id: OutboxId,
    run: Option<&RunId>,
    error: &str,
    retry_in: Duration,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE outbox_messages SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3)
              WHERE id = $1 AND published_at IS NULL",
        )
        .await?;
    let retry_secs = retry_in.as_secs_f64();
    match run {
        Some(run) => {
            futures::try_join!(
                async {
                    Ok::<_, super::StoreError>(
                        db.execute(&stmt, &[&id, &error, &retry_secs]).await?,
                    )
                },
                super::run_outbox::mark_failed(db, id, run, error, retry_in),
            )?;
        }
        None => {
            db.execute(&stmt, &[&id, &error, &retry_secs]).await?;
        }
    }
    Ok(())
}

/// Unpublished rows and the age in seconds of the oldest one.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Backlog {
    pub unpublished: i64,
    pub oldest_age_secs: f64,
}

pub async fn backlog(tx: &Transaction<'_>) -> StoreResult<Backlog> {
    let r = tx
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
               FROM outbox WHERE published_at IS NULL",
            &[],
        )
        .await?;
    Ok(Backlog {
        unpublished: r.get(0),
        oldest_age_secs: r.get(1),
    })
}

/// The run request written for a run (the newest, for a run with several),
/// as it was or will be published.
pub async fn payload_of(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Option<String>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {BODY_COLUMNS} FROM outbox o WHERE o.run_id = $1 ORDER BY o.id DESC LIMIT 1"
        ))
        .await?;
    let Some(row) = tx.query_opt(&stmt, &[&run_id]).await? else {
        return Ok(None);
    };
    match body_of(&row, 0)? {
        Body::Written(p) => Ok(Some(p)),
        Body::Recipe(recipe) => super::requests::assemble_one(tx, recipe).await.map(Some),
    }
}
