//! `metric_run_pending_datasets`: which datasets a pending run still waits for.

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, Transaction};
use crate::domain::ids::{DatasetId, MetricId, RunId, UpdateId};
use crate::domain::pending_run::{Received, Slot};

/// A metric's open pending run with its rows.
#[derive(Debug, Clone)]
pub struct OpenPending {
    pub run_id: RunId,
    pub metric_id: MetricId,
    pub slots: Vec<Slot>,
}

/// The pending runs of these metrics (at most one each), with their rows.
pub async fn open_runs(
    tx: &Transaction<'_>,
    metric_ids: &[MetricId],
) -> StoreResult<Vec<OpenPending>> {
    let stmt = tx
        .prepare_cached(
            "SELECT r.id, r.metric_id, p.dataset_id, p.required_days, p.received_update_id, p.received_at
               FROM metric_runs r
               JOIN metric_run_pending_datasets p ON p.run_id = r.id
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
