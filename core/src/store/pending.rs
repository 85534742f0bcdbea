//! A pending run's own tables: `metric_run_pending_datasets` (which datasets
//! it still waits for), `metric_run_timers` (where its trigger policy's
//! timers stand) and `metric_run_folded_updates` (what it folded in).

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, Transaction};
use crate::domain::ids::{DatasetId, MetricId, RunId, UpdateId};
use crate::domain::pending_run::{Received, Slot};
use crate::domain::trigger::Timers;

/// A metric's open pending run with its rows.
#[derive(Debug, Clone)]
pub struct OpenPending {
    pub run_id: RunId,
    pub metric_id: MetricId,
    pub slots: Vec<Slot>,
    /// Its timers; a run without a timer row opened when it was created.
    pub timers: Timers,
    /// Whether it has a timer row (it waited under a policy or a hold).
    pub timed: bool,
}

/// The pending runs of these metrics (at most one each), with their rows.
pub async fn open_runs(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<Vec<OpenPending>> {
    let stmt = tx
        .prepare_cached(
            "SELECT r.id, r.metric_id, p.dataset_id, p.required_days, p.received_update_id, p.received_at,
                    COALESCE(t.opened_at, r.created_at), t.ready_at, t.last_trigger_at,
                    t.run_id IS NOT NULL
               FROM metric_runs r
               JOIN metric_run_pending_datasets p ON p.run_id = r.id
               LEFT JOIN metric_run_timers t ON t.run_id = r.id
              WHERE r.metric_id = ANY($1) AND r.status = 'pending_dependencies'
              ORDER BY r.id, p.dataset_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&metric_ids]).await?;
    let mut out: Vec<OpenPending> = Vec::new();
    for r in &rows {
        let run_id: RunId = r.get(0);
        if out.last().is_none_or(|o| o.run_id != run_id) {
            out.push(OpenPending {
                run_id,
                metric_id: r.get(1),
                slots: Vec::new(),
                timers: Timers {
                    opened_at: r.get(6),
                    ready_at: r.get(7),
                    last_trigger_at: r.get(8),
                },
                timed: r.get(9),
            });
        }
        let received = match (
            r.get::<_, Option<UpdateId>>(4),
            r.get::<_, Option<DateTime<Utc>>>(5),
        ) {
            (Some(update_id), Some(at)) => Some(Received { update_id, at }),
            _ => None,
        };
        if let Some(o) = out.last_mut() {
            o.slots.push(Slot {
                dataset_id: r.get(2),
                required_days: r.get(3),
                received,
            });
        }
    }
    Ok(out)
}

/// A row to write: a run's slot.
#[derive(Debug, Clone, Copy)]
pub struct SlotRow<'a> {
    pub run_id: &'a RunId,
    pub slot: &'a Slot,
}

/// Rows as parallel arrays, the shape `unnest` takes.
#[derive(Default)]
struct Columns<'a> {
    runs: Vec<&'a str>,
    datasets: Vec<&'a str>,
    days: Vec<i32>,
    updates: Vec<Option<&'a str>>,
    ats: Vec<Option<DateTime<Utc>>>,
}

fn columns<'a>(rows: &'a [SlotRow<'a>]) -> Columns<'a> {
    let mut c = Columns::default();
    for SlotRow { run_id, slot } in rows {
        c.runs.push(run_id.as_str());
        c.datasets.push(slot.dataset_id.as_str());
        c.days.push(slot.required_days);
        c.updates
            .push(slot.received.as_ref().map(|r| r.update_id.as_str()));
        c.ats.push(slot.received.as_ref().map(|r| r.at));
    }
    c
}

pub(super) const INSERT_ROWS: &str = "INSERT INTO metric_run_pending_datasets
                 (run_id, dataset_id, required_days, received, received_update_id, received_at)
             SELECT run_id, dataset_id, required_days, update_id IS NOT NULL, update_id, received_at
               FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::timestamptz[])
                    AS u(run_id, dataset_id, required_days, update_id, received_at)";

/// Inserts the rows of newly created runs, in their decided state.
pub async fn insert_rows(tx: &Transaction<'_>, rows: &[SlotRow<'_>]) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(INSERT_ROWS).await?;
    let c = columns(rows);
    Ok(tx
        .execute(&stmt, &[&c.runs, &c.datasets, &c.days, &c.updates, &c.ats])
        .await?)
}

pub(super) const UPDATE_ROWS: &str = "UPDATE metric_run_pending_datasets p
                SET received = u.update_id IS NOT NULL, received_update_id = u.update_id,
                    received_at = u.received_at
               FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                    AS u(run_id, dataset_id, update_id, received_at)
              WHERE p.run_id = u.run_id AND p.dataset_id = u.dataset_id";

/// Writes the changed rows of existing pending runs.
pub async fn update_rows(tx: &Transaction<'_>, rows: &[SlotRow<'_>]) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(UPDATE_ROWS).await?;
    let c = columns(rows);
    let n = tx
        .execute(&stmt, &[&c.runs, &c.datasets, &c.updates, &c.ats])
        .await?;
    if n as usize != rows.len() {
        return Err(StoreError::Conflict(format!(
            "{} of {} pending rows vanished",
            rows.len() - n as usize,
            rows.len()
        )));
    }
    Ok(n)
}

/// Where a waiting run's timers stand, to write.
#[derive(Debug, Clone, Copy)]
pub struct TimerRow<'a> {
    pub run_id: &'a RunId,
    pub metric_id: &'a MetricId,
    pub timers: &'a Timers,
    pub decide_at: Option<DateTime<Utc>>,
}

pub(super) const UPSERT_TIMERS: &str = "INSERT INTO metric_run_timers AS t
                 (run_id, metric_id, opened_at, ready_at, last_trigger_at, decide_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                  $5::timestamptz[], $6::timestamptz[])
             ON CONFLICT (run_id) DO UPDATE
                SET ready_at = excluded.ready_at, last_trigger_at = excluded.last_trigger_at,
                    decide_at = excluded.decide_at";

/// Writes the timers of runs left waiting under a policy or a hold.
pub async fn upsert_timers(tx: &Transaction<'_>, rows: &[TimerRow<'_>]) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(UPSERT_TIMERS).await?;
    let runs: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let metrics: Vec<&str> = rows.iter().map(|r| r.metric_id.as_str()).collect();
    let opened: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.timers.opened_at).collect();
    let ready: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.timers.ready_at).collect();
    let last: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.timers.last_trigger_at).collect();
    let due: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.decide_at).collect();
    Ok(tx
        .execute(&stmt, &[&runs, &metrics, &opened, &ready, &last, &due])
        .await?)
}

pub(super) const DELETE_TIMERS: &str = "DELETE FROM metric_run_timers WHERE run_id = ANY($1)";

/// Drops the timers of runs that were requested (or never needed any).
pub async fn delete_timers(tx: &Transaction<'_>, runs: &[&RunId]) -> StoreResult<u64> {
    if runs.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(DELETE_TIMERS).await?;
    Ok(tx.execute(&stmt, &[&runs]).await?)
}

/// An update a run folded in.
#[derive(Debug, Clone, Copy)]
pub struct FoldedRow<'a> {
    pub run_id: &'a RunId,
    pub update_id: &'a UpdateId,
    pub at: DateTime<Utc>,
}

pub(super) const INSERT_FOLDED: &str =
    "INSERT INTO metric_run_folded_updates (run_id, update_id, folded_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])
             ON CONFLICT DO NOTHING";

pub async fn insert_folded(tx: &Transaction<'_>, rows: &[FoldedRow<'_>]) -> StoreResult<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let stmt = tx.prepare_cached(INSERT_FOLDED).await?;
    let runs: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    let updates: Vec<&str> = rows.iter().map(|r| r.update_id.as_str()).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    Ok(tx.execute(&stmt, &[&runs, &updates, &ats]).await?)
}

/// The updates these runs folded in before, oldest first.
pub async fn folded_of(
    tx: &Transaction<'_>,
    runs: &[&RunId],
) -> StoreResult<std::collections::HashMap<RunId, Vec<UpdateId>>> {
    let mut out: std::collections::HashMap<RunId, Vec<UpdateId>> = Default::default();
    if runs.is_empty() {
        return Ok(out);
    }
    let rows = tx
        .query(
            "SELECT run_id, update_id FROM metric_run_folded_updates
              WHERE run_id = ANY($1) ORDER BY folded_at, update_id",
            &[&runs],
        )
        .await?;
    for r in &rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// The metrics whose pending run's timer has come at `now`, oldest first.
pub async fn due_metrics(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<MetricId>> {
    let rows = tx
        .query(
            "SELECT t.metric_id FROM metric_run_timers t
               JOIN metric_runs r ON r.id = t.run_id AND r.status = 'pending_dependencies'
              WHERE t.decide_at <= $1
              ORDER BY t.decide_at LIMIT $2",
            &[&now, &limit],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Makes the metric's pending run due at once (after a resume).
pub async fn due_now(tx: &Transaction<'_>, metric: &MetricId) -> StoreResult<u64> {
    Ok(tx
        .execute(
            "UPDATE metric_run_timers SET decide_at = now() WHERE metric_id = $1",
            &[&metric],
        )
        .await?)
}

/// One row of a pending run, for operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PendingDataset {
    pub dataset_id: DatasetId,
    pub required_days: i32,
    pub received: bool,
    pub received_update_id: Option<UpdateId>,
    pub received_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Age of the received update in seconds, on the database clock.
    pub age_secs: Option<f64>,
    pub fresh: Option<bool>,
}

pub async fn for_run(tx: &Transaction<'_>, run_id: &RunId) -> StoreResult<Vec<PendingDataset>> {
    let stmt = tx
        .prepare_cached(
            "SELECT dataset_id, required_days, received, received_update_id, received_at,
                    EXTRACT(EPOCH FROM received_update_age)::float8, received_update_fresh
               FROM pending_run_datasets WHERE run_id = $1 ORDER BY dataset_id",
        )
        .await?;
    let rows = tx.query(&stmt, &[&run_id]).await?;
    Ok(rows
        .iter()
        .map(|r| PendingDataset {
            dataset_id: r.get(0),
            required_days: r.get(1),
            received: r.get(2),
            received_update_id: r.get(3),
            received_at: r.get(4),
            age_secs: r.get(5),
            fresh: r.get(6),
        })
        .collect())
}

/// Pending rows follow the metric's current `required_days`.
pub async fn sync_required_days(tx: &Transaction<'_>) -> StoreResult<u64> {
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
