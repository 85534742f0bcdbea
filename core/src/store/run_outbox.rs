//! The run row as its own outbox entry (migration V14): a run an evaluation
//! requests carries its request's recipe and the relay's lease on its own
//! row, so requesting it writes no second row and publishing it is one
//! update of the run. [`super::outbox`] is the relay's one way in; it reads
//! and leases these rows here beside those of `outbox_messages`, in the same
//! column order ([`MESSAGE_ROW`]), under the same id sequence.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::outbox::NewMessage;
use super::{StoreResult, Transaction};
use crate::domain::ids::{OutboxId, RunId};

/// The requests of one evaluation's runs, by run, and the lease they are
/// born with when the caller's relay publishes them at the commit.
pub struct RequestColumns<'a> {
    by_run: HashMap<&'a RunId, &'a NewMessage<'a>>,
    lease: Option<Duration>,
}

/// The request columns of a list of runs, in its order (`None` for a run
/// that is not requested).
#[derive(Default)]
pub struct Arrays<'a> {
    pub requested_at: Vec<Option<DateTime<Utc>>>,
    pub base_path: Vec<Option<&'a str>>,
    pub note: Vec<Option<&'a serde_json::Value>>,
    pub group: Vec<Option<&'a str>>,
    pub trace: Vec<Option<&'a str>>,
    pub sent: Vec<Option<DateTime<Utc>>>,
}

impl<'a> RequestColumns<'a> {
    pub fn new(requests: &'a [NewMessage<'a>], lease: Option<Duration>) -> Self {
        Self {
            by_run: requests.iter().map(|r| (r.run_id, r)).collect(),
            lease,
        }
    }

    pub fn has(&self, run: &RunId) -> bool {
        self.by_run.contains_key(run)
    }

    pub fn lease_secs(&self) -> Option<f64> {
        self.lease.map(|l| l.as_secs_f64())
    }

    pub fn for_runs(&self, runs: &[&RunId]) -> Arrays<'a> {
        let mut a = Arrays::default();
        for run in runs {
            let r = self.by_run.get(run);
            a.requested_at.push(r.map(|r| r.requested_at));
            a.base_path.push(r.map(|r| r.output_base_path.as_str()));
            a.note.push(r.and_then(|r| r.trigger_note.as_ref()));
            a.group.push(r.and_then(|r| r.message_group_id));
            a.trace
                .push(r.and_then(|r| r.origin.traceparent.as_deref()));
            a.sent.push(r.and_then(|r| r.origin.source_sent_at));
        }
        a
    }
}

/// A run row read as an outbox row: the columns of `outbox`'s claim and
/// take (id, run, code, group, attempts, trace, sent time, alert type, dedup
/// key), then its body (payload, run, requested at, base path, note, group),
/// then the run's own parts (metric, code, attempt).
pub(super) const MESSAGE_ROW: &str = "u.request_id, u.id, u.metric_code, u.request_group_id,
        u.request_attempts, u.request_traceparent, u.request_source_sent_at, NULL::text, NULL::text,
        NULL::text, u.id, u.request_requested_at, u.request_base_path, u.request_trigger_note,
        u.request_group_id, u.metric_id, u.metric_code, u.attempt";

/// Leases up to `limit` due, unpublished requests (only those of `only`
/// when given) for `lease`, skipping those another relay holds.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    only: Option<&[OutboxId]>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE metric_runs u
                SET request_attempts = u.request_attempts + 1,
                    request_next_attempt_at = now() + make_interval(secs => $3)
               FROM (SELECT id FROM metric_runs
                      WHERE request_id IS NOT NULL AND request_published_at IS NULL
                        AND request_next_attempt_at <= now()
                        AND ($1::bigint[] IS NULL OR request_id = ANY($1))
                      ORDER BY request_next_attempt_at, request_id LIMIT $2
                        FOR UPDATE SKIP LOCKED) c
              WHERE u.id = c.id
             RETURNING {MESSAGE_ROW}"
        ))
        .await?;
    Ok(tx
        .query(&stmt, &[&only, &limit, &lease.as_secs_f64()])
        .await?)
}

/// Requests born leased to this relay ([`super::outbox::take_handed`]).
pub(super) async fn take_handed(
    tx: &Transaction<'_>,
    ids: &[OutboxId],
    min_left: Duration,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {MESSAGE_ROW} FROM metric_runs u
              WHERE u.request_id IS NOT NULL AND u.request_published_at IS NULL
                AND u.request_next_attempt_at > now() + make_interval(secs => $2)
                AND u.request_id = ANY($1) AND u.request_attempts = 1"
        ))
        .await?;
    Ok(tx.query(&stmt, &[&ids, &min_left.as_secs_f64()]).await?)
}

/// Handed requests the relay could not take: due now, for the sweeper.
pub(super) async fn release_handed(tx: &Transaction<'_>, ids: &[OutboxId]) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs SET request_attempts = 0, request_next_attempt_at = now()
              WHERE request_id IS NOT NULL AND request_published_at IS NULL
                AND request_next_attempt_at > now() AND request_id = ANY($1)
                AND request_attempts = 1",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&ids]).await?)
}

/// Marks published the requests of `ids` carried by the runs `runs` (the
/// primary key finds them), and moves those still `queued` to
/// `dispatched`. Returns how many runs moved.
pub(super) async fn mark_published(
    tx: &Transaction<'_>,
    ids: &[OutboxId],
    runs: &[&RunId],
) -> StoreResult<u64> {
    if runs.is_empty() {
        return Ok(0);
    }
    let dispatch = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET request_published_at = now(), request_last_error = NULL,
                    status = 'dispatched', dispatched_at = now(), updated_at = now()
              WHERE id = ANY($2) AND request_id = ANY($1) AND request_published_at IS NULL
                AND status = 'queued'",
        )
        .await?;
    // A run that left `queued` before its request was published (canceled,
    // or started by a runner that saw an earlier copy) keeps its status.
    let publish = tx
        .prepare_cached(
            "UPDATE metric_runs SET request_published_at = now(), request_last_error = NULL
              WHERE id = ANY($2) AND request_id = ANY($1) AND request_published_at IS NULL
                AND status <> 'queued'",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &runs];
    let (moved, _) = futures::try_join!(
        tx.execute(&dispatch, &params),
        tx.execute(&publish, &params),
    )?;
    Ok(moved)
}

/// Records a failed publish of the request `id` of run `run`; it becomes
/// due again after `retry_in`.
pub(super) async fn mark_failed(
    tx: &Transaction<'_>,
    id: OutboxId,
    run: &RunId,
    error: &str,
    retry_in: Duration,
) -> StoreResult<()> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs
                SET request_last_error = $3,
                    request_next_attempt_at = now() + make_interval(secs => $4)
              WHERE id = $2 AND request_id = $1 AND request_published_at IS NULL",
        )
        .await?;
    tx.execute(&stmt, &[&id, &run, &error, &retry_in.as_secs_f64()])
        .await?;
    Ok(())
}
