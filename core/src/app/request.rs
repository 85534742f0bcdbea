//! Writing run requests to the outbox: shared by queued pending runs,
//! retries and operator triggers.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::ids::{MetricId, OutboxId, RunId};
use crate::domain::run_request::{self, RequestSettings, RunRequest, RunRequestInput, UsedUpdate};
use crate::store::catalog::SeriesSources;
use crate::store::outbox::{self, NewMessage, Origin};
use crate::store::requests::Reads;
use crate::store::runs::NewRun;
use crate::store::{StoreError, StoreResult, Transaction};

/// Builds the request of each run from exactly the updates it uses
/// (`run_inputs`) and writes its recipe to the outbox. Returns the outbox ids.
pub async fn enqueue(
    tx: &Transaction<'_>,
    new_runs: &[NewRun],
    requested_at: DateTime<Utc>,
    settings: &RequestSettings,
    origin: &Origin,
) -> StoreResult<Vec<OutboxId>> {
    if new_runs.is_empty() {
        return Ok(Vec::new());
    }
    let run_ids: Vec<RunId> = new_runs.iter().map(|r| r.id.clone()).collect();
    let Reads {
        used,
        sources,
        expressions,
    } = Reads::of(tx, &run_ids, new_runs.iter().map(|r| &r.metric_id)).await?;
    let mut payloads = Vec::with_capacity(new_runs.len());
    for run in new_runs {
        let (expression_type, expression_json) =
            expressions.get(&run.metric_id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "metric {} of run {} is missing",
                    run.metric_id, run.id
                ))
            })?;
        let updates = used.get(&run.id).map(Vec::as_slice).unwrap_or_default();
        let request = build(
            &RequestFor {
                run_id: &run.id,
                metric_id: &run.metric_id,
                metric_code: &run.metric_code,
                expression_type,
                expression_json,
                attempt: run.attempt,
                requested_at,
            },
            &sources,
            updates,
            settings,
        );
        payloads.push((request, origin));
    }
    write(tx, &payloads).await
}

/// The run a request is built for.
pub struct RequestFor<'a> {
    pub run_id: &'a RunId,
    pub metric_id: &'a MetricId,
    pub metric_code: &'a str,
    pub expression_type: &'a str,
    pub expression_json: &'a serde_json::Value,
    pub attempt: i32,
    pub requested_at: DateTime<Utc>,
}

/// A run's request from the metric's series sources and exactly the
/// updates it uses: the one assembly of a request's input, for new runs,
/// retries and triggers alike.
pub fn build<'e>(
    run: &RequestFor<'e>,
    sources: &HashMap<MetricId, SeriesSources>,
    updates: &[UsedUpdate],
    settings: &RequestSettings,
) -> RunRequest<'e> {
    let empty = SeriesSources::default();
    let src = sources.get(run.metric_id).unwrap_or(&empty);
    if !src.orphan_series.is_empty() {
        tracing::debug!(run_id = %run.run_id, metric_code = %run.metric_code, series = ?src.orphan_series,
            "metric references series that no dataset provides");
    }
    run_request::build(
        &RunRequestInput {
            run_id: run.run_id,
            metric_code: run.metric_code,
            expression_type: run.expression_type,
            expression_json: run.expression_json,
            attempt: run.attempt,
            requested_at: run.requested_at,
            series_datasets: &src.series_datasets,
            updates,
        },
        settings,
    )
}

/// The outbox rows of built requests, each with what caused it: the
/// request's recipe, from which the relay assembles it again when it
/// publishes (`store::requests`).
pub fn messages<'a>(requests: &'a [(RunRequest<'_>, &'a Origin)]) -> Vec<NewMessage<'a>> {
    requests
        .iter()
        .map(|(r, origin)| NewMessage {
            run_id: &r.run_id,
            metric_code: &r.metric_code,
            requested_at: r.requested,
            output_base_path: &r.output.base_path,
            // A note is plain strings and booleans: it always serialises.
            trigger_note: r
                .trigger
                .as_ref()
                .and_then(|t| serde_json::to_value(t).ok()),
            message_group_id: r.message_group_id.as_deref(),
            origin,
        })
        .collect()
}

/// Writes built requests, each with what caused it, to the outbox; returns
/// the outbox ids.
async fn write(
    tx: &Transaction<'_>,
    requests: &[(RunRequest<'_>, &Origin)],
) -> StoreResult<Vec<OutboxId>> {
    outbox::insert(tx, &messages(requests)).await
}
