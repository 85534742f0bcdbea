//! The transactional outbox (docs/semantics.md). Rows are written in the business
//! transaction; the relay claims them with a time-limited lease (so no
//! transaction stays open while it talks to SNS), publishes, and marks them.

use std::time::Duration;

use super::{StoreResult, Transaction};
use crate::domain::alert::{Alert, AlertType};
use crate::domain::ids::{OutboxId, RunId};
use crate::domain::outgoing::Outgoing;

pub use crate::domain::outgoing::OutboxMessage;

/// What caused a row being written.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub traceparent: Option<String>,
    pub source_sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A row to write: a run's request JSON and its FIFO group id.
pub struct NewMessage<'a> {
    pub run_id: &'a RunId,
    pub metric_code: &'a str,
    pub payload: &'a str,
    pub message_group_id: Option<&'a str>,
    pub origin: &'a Origin,
}

pub(super) const INSERT: &str =
    "INSERT INTO outbox (run_id, metric_code, payload, message_group_id, traceparent, source_sent_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
             RETURNING id";

pub async fn insert(tx: &Transaction<'_>, rows: &[NewMessage<'_>]) -> StoreResult<Vec<OutboxId>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = tx.prepare_cached(INSERT).await?;
    let runs: Vec<&RunId> = rows.iter().map(|r| r.run_id).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.metric_code).collect();
    let payloads: Vec<&str> = rows.iter().map(|r| r.payload).collect();
    let groups: Vec<Option<&str>> = rows.iter().map(|r| r.message_group_id).collect();
    let traces: Vec<Option<&str>> = rows
        .iter()
        .map(|r| r.origin.traceparent.as_deref())
        .collect();
    let sent: Vec<Option<chrono::DateTime<chrono::Utc>>> =
        rows.iter().map(|r| r.origin.source_sent_at).collect();
    let out = tx
        .query(&stmt, &[&runs, &codes, &payloads, &groups, &traces, &sent])
        .await?;
    Ok(out.iter().map(|r| r.get(0)).collect())
}

/// Leases up to `limit` due, unpublished rows (only those in `only` when
/// given) for `lease`; rows leased by another relay are skipped.
pub async fn claim(
    tx: &Transaction<'_>,
    only: Option<&[OutboxId]>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<OutboxMessage>> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox o
                SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
               FROM (SELECT id FROM outbox
                      WHERE published_at IS NULL AND next_attempt_at <= now()
                        AND ($1::bigint[] IS NULL OR id = ANY($1))
                      ORDER BY id LIMIT $2
                        FOR UPDATE SKIP LOCKED) c
              WHERE o.id = c.id
             RETURNING o.id, o.run_id, o.metric_code, o.payload, o.message_group_id, o.attempts,
                       o.traceparent, o.source_sent_at, o.alert_type, o.dedup_key",
        )
        .await?;
    let lease_secs = lease.as_secs_f64();
    let rows = tx.query(&stmt, &[&only, &limit, &lease_secs]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(OutboxMessage {
            id: r.get(0),
            kind: kind_of(r)?,
            payload: r.get(3),
            attempts: r.get(5),
            traceparent: r.get(6),
            source_sent_at: r.get(7),
        });
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}

/// A row is a run request or an alert (the table's CHECK says which).
fn kind_of(r: &tokio_postgres::Row) -> StoreResult<Outgoing> {
    let run_id: Option<RunId> = r.get(1);
    let alert: Option<String> = r.get(8);
    match (run_id, alert) {
        (Some(run_id), None) => Ok(Outgoing::RunRequest {
            run_id,
            metric_code: r.get::<_, Option<String>>(2).unwrap_or_default(),
            message_group_id: r.get(4),
        }),
        (None, Some(t)) => Ok(Outgoing::Alert {
            alert_type: AlertType::parse(&t).ok_or_else(|| {
                super::StoreError::Corrupt(format!("outbox row with unknown alert type {t:?}"))
            })?,
            dedup_key: r.get::<_, Option<String>>(9).unwrap_or_default(),
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
            "INSERT INTO outbox (alert_type, dedup_key, payload, traceparent)
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

/// Marks rows published; returns their run ids.
pub async fn mark_published(tx: &Transaction<'_>, ids: &[OutboxId]) -> StoreResult<Vec<RunId>> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox SET published_at = now(), last_error = NULL
              WHERE id = ANY($1) AND published_at IS NULL
             RETURNING run_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&ids]).await?;
    // Alerts have no run.
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, Option<RunId>>(0))
        .collect())
}

/// Records a failed publish; the row becomes due again after `retry_in`.
pub async fn mark_failed(
    tx: &Transaction<'_>,
    id: OutboxId,
    error: &str,
    retry_in: Duration,
) -> StoreResult<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE outbox SET last_error = $2, next_attempt_at = now() + make_interval(secs => $3)
              WHERE id = $1 AND published_at IS NULL",
        )
        .await?;
    tx.execute(&stmt, &[&id, &error, &retry_in.as_secs_f64()])
        .await?;
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

/// The run request written for a run (the newest, for a run with several).
pub async fn payload_of(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Option<String>> {
    let stmt = tx
        .prepare_cached("SELECT payload FROM outbox WHERE run_id = $1 ORDER BY id DESC LIMIT 1")
        .await?;
    let row = tx.query_opt(&stmt, &[&run_id]).await?;
    Ok(row.map(|r| r.get(0)))
}
