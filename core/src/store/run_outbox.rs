//! The run row as its own outbox entry (migration V14): a run an evaluation
//! requests carries its request's recipe and the relay's lease on its own
//! row, so requesting it writes no second row and publishing it is one
//! update of the run. [`super::outbox`] is the relay's one way in; it reads
//! and leases these rows here beside those of `outbox_messages`, in the same
//! column order ([`MESSAGE_ROW`]), under the same id sequence.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;

use super::requests::NewMessage;
use super::{GenericClient, StoreResult, Transaction};
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
    pub lease_secs: Option<f64>,
}

impl Arrays<'_> {
    /// The statement parameters, in the order the run statements take them
    /// after their own (`runs::INSERT_CREATED`, `runs::QUEUE_PENDING`).
    pub fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.requested_at,
            &self.base_path,
            &self.note,
            &self.group,
            &self.trace,
            &self.sent,
            &self.lease_secs,
        ]
    }
}

impl<'a> RequestColumns<'a> {
    pub fn new(requests: &'a [NewMessage<'a>], lease: Option<Duration>) -> Self {
        Self {
            by_run: requests.iter().map(|r| (r.run_id, r)).collect(),
            lease,
        }
    }

    pub fn for_runs(&self, runs: &[&RunId]) -> Arrays<'a> {
        let mut a = Arrays {
            lease_secs: self.lease.map(|l| l.as_secs_f64()),
            ..Arrays::default()
        };
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
/// then the run's own parts (metric, code, attempt, definition version,
/// backfill and moment).
pub(super) const MESSAGE_ROW: &str = "u.request_id, u.id, u.metric_code, u.request_group_id,
        u.request_attempts, u.request_traceparent, u.request_source_sent_at, NULL::text, NULL::text,
        NULL::text, u.id, u.request_requested_at, u.request_base_path, u.request_trigger_note,
        u.request_group_id, u.metric_id, u.metric_code, u.attempt, u.definition_version,
        u.backfill_id, u.as_of";

/// Leases up to `limit` due, unpublished requests for `lease`, skipping
/// those another relay holds: any, oldest first, or only those `named` by
/// their ids and runs. Named ones are found by the runs' primary key: the
/// unpublished-requests index leads with the due time, so a search by
/// `request_id` alone would read every due request (a whole backlog after
/// an outage) for each claim.
pub(super) async fn claim(
    tx: &Transaction<'_>,
    named: Option<(&[OutboxId], &[&RunId])>,
    limit: i64,
    lease: Duration,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let filter = match named {
        Some(_) => "AND id = ANY($4) AND request_id = ANY($3)",
        None => "",
    };
    let stmt = tx
        .prepare_cached(&format!(
            "UPDATE metric_runs u
                SET request_attempts = u.request_attempts + 1,
                    request_next_attempt_at = now() + make_interval(secs => $2)
               FROM (SELECT id FROM metric_runs
                      WHERE request_id IS NOT NULL AND request_published_at IS NULL
                        AND request_next_attempt_at <= now() {filter}
                      ORDER BY request_next_attempt_at, request_id LIMIT $1
                        FOR UPDATE SKIP LOCKED) c
              WHERE u.id = c.id
             RETURNING {MESSAGE_ROW}"
        ))
        .await?;
    let lease_secs = lease.as_secs_f64();
    Ok(match named {
        Some((ids, runs)) => tx.query(&stmt, &[&limit, &lease_secs, &ids, &runs]).await?,
        None => tx.query(&stmt, &[&limit, &lease_secs]).await?,
    })
}

/// Requests born leased to this relay ([`super::outbox::take_handed`]),
/// found by their runs' primary key: the unpublished-requests index leads
/// with the due time, so finding them by `request_id` alone would read
/// every request still leased (thousands under load, 4.5 ms a take).
pub(super) async fn take_handed(
    db: &impl GenericClient,
    ids: &[OutboxId],
    runs: &[&RunId],
    min_left: Duration,
) -> StoreResult<Vec<tokio_postgres::Row>> {
    let stmt = db
        .prepare_cached(&format!(
            "SELECT {MESSAGE_ROW} FROM metric_runs u
              WHERE u.id = ANY($3) AND u.request_id = ANY($1)
                AND u.request_published_at IS NULL
                AND u.request_next_attempt_at > now() + make_interval(secs => $2)
                AND u.request_attempts = 1"
        ))
        .await?;
    Ok(db
        .query(&stmt, &[&ids, &min_left.as_secs_f64(), &runs])
        .await?)
}

/// Handed requests the relay could not take: due now, for the sweeper.
pub(super) async fn release_handed(
    tx: &Transaction<'_>,
    ids: &[OutboxId],
    runs: &[&RunId],
) -> StoreResult<u64> {
    let stmt = tx
        .prepare_cached(
            "UPDATE metric_runs SET request_attempts = 0, request_next_attempt_at = now()
              WHERE id = ANY($2) AND request_id = ANY($1) AND request_published_at IS NULL
                AND request_next_attempt_at > now() AND request_attempts = 1",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&ids, &runs]).await?)
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
    let params: [&(dyn ToSql + Sync); 2] = [&ids, &runs];
    let (moved, _) = futures::try_join!(
        tx.execute(&dispatch, &params),
        tx.execute(&publish, &params),
    )?;
    Ok(moved)
}

/// Records a failed publish of the request `id` of run `run`; it becomes
/// due again after `retry_in`.
pub(super) async fn mark_failed(
    db: &impl GenericClient,
    id: OutboxId,
    run: &RunId,
    error: &str,
    retry_in: Duration,
) -> StoreResult<()> {
    let stmt = db
        .prepare_cached(
            "UPDATE metric_runs
                SET request_last_error = $3,
                    request_next_attempt_at = now() + make_interval(secs => $4)
              WHERE id = $2 AND request_id = $1 AND request_published_at IS NULL",
        )
        .await?;
    db.execute(&stmt, &[&id, &run, &error, &retry_in.as_secs_f64()])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::requests::Origin;

    /// The run statements take one array per column, aligned with their
    /// runs: a run without a request gets NULLs, which write no request.
    #[test]
    fn request_columns_follow_the_order_of_the_runs_and_leave_the_others_null() {
        let (a, b, c) = (RunId::new("a"), RunId::new("b"), RunId::new("c"));
        let origin = Origin {
            traceparent: Some("00-t-s-01".into()),
            source_sent_at: None,
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let message = |run_id, code| NewMessage {
            run_id,
            metric_code: code,
            requested_at: at,
            output_base_path: format!("s3://out/{code}/"),
            trigger_note: None,
            message_group_id: None,
            origin: &origin,
        };
        let requests = [message(&c, "m.c"), message(&a, "m.a")];
        let cases: [(Option<Duration>, Option<f64>); 2] =
            [(None, None), (Some(Duration::from_millis(1500)), Some(1.5))];
        for (lease, secs) in cases {
            let columns = RequestColumns::new(&requests, lease);
            let got = columns.for_runs(&[&a, &b, &c]);
            assert_eq!(got.requested_at, vec![Some(at), None, Some(at)]);
            assert_eq!(
                got.base_path,
                vec![Some("s3://out/m.a/"), None, Some("s3://out/m.c/")]
            );
            assert_eq!(got.trace, vec![Some("00-t-s-01"), None, Some("00-t-s-01")]);
            assert_eq!(got.lease_secs, secs);
            assert_eq!(got.params().len(), 7);
        }
    }
}
