//! `orchestrator runs trigger --metric CODE`: an operator asks for a run now,
//! from the newest fresh update of every dataset the metric needs. The run is
//! written `queued` with its request in the outbox, in one transaction; the
//! workers' outbox relay publishes it. A triggered run is a deliberate re-run:
//! it may use the same updates as an earlier run (it has no update-set key).

use serde::Serialize;

use crate::app::{request, Context};
use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::definition_change::Inputs;
use crate::domain::freshness;
use crate::domain::ids::{DatasetId, MetricId, OutboxId, RunId, UpdateId};
use crate::domain::run_request::UsedUpdate;
use crate::in_transaction;
use crate::store::runs::{self, NewRun};
use crate::store::tx::TxError;
use crate::store::{catalog, db_now, updates, StoreError, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no metric with code {0}")]
    UnknownMetric(String),
    #[error("metric {0} is disabled; enable it in the catalog first")]
    Disabled(String),
    #[error("metric {metric} cannot run yet: no update received for {missing:?}, stale update (older than {required_days} days) for {stale:?}")]
    NotReady {
        metric: String,
        required_days: i32,
        missing: Vec<DatasetId>,
        stale: Vec<DatasetId>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError for TriggerError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            TriggerError::Store(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Triggered {
    pub run_id: RunId,
    pub metric_code: String,
    /// The update of each required dataset the run uses.
    pub updates: Vec<(DatasetId, UpdateId)>,
}

pub async fn trigger(ctx: &Context, metric_code: &str) -> Result<Triggered, TriggerError> {
    in_transaction!(&ctx.pool, TriggerError, |tx| trigger_in(
        &tx,
        ctx,
        metric_code
    )
    .await?)
}

async fn trigger_in(
    tx: &Transaction<'_>,
    ctx: &Context,
    metric_code: &str,
) -> Result<Triggered, TriggerError> {
    let metric = catalog::lock_metric_by_code(tx, metric_code)
        .await?
        .ok_or_else(|| TriggerError::UnknownMetric(metric_code.to_string()))?;
    if !metric.enabled {
        return Err(TriggerError::Disabled(metric.code));
    }
    let now = db_now(tx).await?;
    let newest = updates::newest_for_metrics(tx, std::slice::from_ref(&metric.id)).await?;
    let (used, inputs) = newest_inputs(
        &metric.required_datasets,
        &newest,
        now,
        metric.required_days,
    );
    if !inputs.ready() {
        return Err(TriggerError::NotReady {
            metric: metric.code,
            required_days: metric.required_days,
            missing: inputs.missing,
            stale: inputs.stale,
        });
    }
    let (run, _) = request_now(tx, ctx, &metric.id, &metric.code, &used, now).await?;
    Ok(Triggered {
        run_id: run,
        metric_code: metric.code,
        updates: used,
    })
}

/// The newest update of each required dataset when all are fresh enough to
/// run on at `now`, and which are missing or stale.
pub(crate) fn newest_inputs(
    required: &[DatasetId],
    newest: &HashMap<DatasetId, UsedUpdate>,
    now: DateTime<Utc>,
    required_days: i32,
) -> (Vec<(DatasetId, UpdateId)>, Inputs) {
    let (mut inputs, mut used) = (Inputs::default(), Vec::new());
    for d in required {
        match newest.get(d) {
            None => inputs.missing.push(d.clone()),
            Some(u) if !freshness::is_fresh(u.created_at, now, required_days) => {
                inputs.stale.push(d.clone())
            }
            Some(u) => used.push((d.clone(), u.update_id.clone())),
        }
    }
    (used, inputs)
}

/// Writes a run of the metric, `queued` with these updates, and its request
/// in the outbox (the caller holds the metric's lock). A deliberate re-run:
/// it has no update-set key, so it may repeat an earlier run's inputs.
pub(crate) async fn request_now(
    tx: &Transaction<'_>,
    ctx: &Context,
    metric_id: &MetricId,
    metric_code: &str,
    used: &[(DatasetId, UpdateId)],
    now: DateTime<Utc>,
) -> Result<(RunId, Vec<OutboxId>), StoreError> {
    let run = NewRun {
        id: RunId::generate(),
        metric_id: metric_id.clone(),
        metric_code: metric_code.to_string(),
        attempt: 1,
        trigger: None,
    };
    let update_ids: Vec<UpdateId> = used.iter().map(|(_, u)| u.clone()).collect();
    runs::insert_queued(
        tx,
        &[runs::QueuedRun {
            run: &run,
            inputs: &update_ids,
            backfill: None,
        }],
    )
    .await?;
    let outbox_ids = request::enqueue(
        tx,
        std::slice::from_ref(&run),
        now,
        &ctx.settings,
        &Default::default(),
    )
    .await?;
    Ok((run.id, outbox_ids))
}
