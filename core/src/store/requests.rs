//! Run requests assembled from what the database holds: an outbox row keeps
//! only its recipe (when it was requested, where its output goes, its
//! trigger note); the run, the updates it uses and the catalog say the rest.
//! The relay assembles a request when it publishes, and the operator API
//! when it shows one; both get the same bytes from the same rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::definitions::{self, ExpressionKey, VersionedExpression};
use super::{catalog, runs, GenericClient, StoreError, StoreResult, Transaction};
use crate::domain::ids::{MetricId, RunId};
use crate::domain::run_request::{self, Destination, RunRequestInput, TriggerNote, UsedUpdate};

/// What caused a row being written.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub traceparent: Option<String>,
    pub source_sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A run request's row: its recipe (the relay assembles the request, see
/// this module's [`assemble_with`]) and its FIFO group id.
#[derive(Clone)]
pub struct NewMessage<'a> {
    pub run_id: &'a RunId,
    pub metric_code: &'a str,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub output_base_path: String,
    pub trigger_note: Option<serde_json::Value>,
    pub message_group_id: Option<&'a str>,
    pub origin: &'a Origin,
}

/// What a request says besides its run: the updates each run uses, and
/// its metric's series sources and the expression of the definition
/// version it was requested with.
pub struct Reads {
    pub used: HashMap<RunId, Vec<UsedUpdate>>,
    pub sources: HashMap<MetricId, catalog::SeriesSources>,
    pub expressions: HashMap<ExpressionKey, VersionedExpression>,
}

impl Reads {
    pub async fn of<'m>(
        db: &impl GenericClient,
        run_ids: &[RunId],
        runs: impl Iterator<Item = &'m runs::RequestParts>,
    ) -> StoreResult<Reads> {
        let mut keys: Vec<ExpressionKey> = runs
            .map(|r| (r.metric_id.clone(), r.definition_version))
            .collect();
        keys.sort();
        keys.dedup();
        let mut metric_ids: Vec<MetricId> = keys.iter().map(|(m, _)| m.clone()).collect();
        metric_ids.dedup();
        let (used, sources, expressions) = futures::try_join!(
            runs::used_updates(db, run_ids),
            catalog::series_sources(db, &metric_ids),
            definitions::expressions(db, &keys)
        )?;
        Ok(Reads {
            used,
            sources,
            expressions,
        })
    }
}

/// What an outbox row keeps of a run request.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipe {
    pub run_id: RunId,
    pub requested_at: DateTime<Utc>,
    pub to: Destination,
    pub trigger_note: Option<serde_json::Value>,
}

/// Assembles each recipe's request (its JSON, as published), or says why it
/// cannot be (a row that no longer matches its run): one bad row never
/// stops the others.
pub async fn assemble(
    tx: &Transaction<'_>,
    recipes: &[Recipe],
) -> StoreResult<Vec<Result<String, String>>> {
    if recipes.is_empty() {
        return Ok(Vec::new());
    }
    let run_ids: Vec<RunId> = recipes.iter().map(|r| r.run_id.clone()).collect();
    let runs = runs::request_parts(tx, &run_ids).await?;
    assemble_with(tx, recipes, &runs).await
}

/// [`assemble`] with the runs' own parts already read (the relay's claim
/// reads them with the rows it leases).
pub async fn assemble_with(
    db: &impl GenericClient,
    recipes: &[Recipe],
    runs: &HashMap<RunId, runs::RequestParts>,
) -> StoreResult<Vec<Result<String, String>>> {
    if recipes.is_empty() {
        return Ok(Vec::new());
    }
    let run_ids: Vec<RunId> = recipes.iter().map(|r| r.run_id.clone()).collect();
    let Reads {
        used,
        sources,
        expressions,
    } = Reads::of(db, &run_ids, runs.values()).await?;
    let empty = catalog::SeriesSources::default();
    Ok(recipes
        .iter()
        .map(|recipe| {
            let run = runs
                .get(&recipe.run_id)
                .ok_or_else(|| format!("run {} is missing", recipe.run_id))?;
            let expression = expressions
                .get(&(run.metric_id.clone(), run.definition_version))
                .ok_or_else(|| format!("metric {} of run {} is missing", run.metric_id, run.id))?;
            let mut request = run_request::build_for(
                &RunRequestInput {
                    run_id: &run.id,
                    metric_code: &run.metric_code,
                    expression_type: &expression.expression_type,
                    expression_json: &expression.expression_json,
                    attempt: run.attempt,
                    requested_at: recipe.requested_at,
                    series_datasets: &sources
                        .get(&run.metric_id)
                        .unwrap_or(&empty)
                        .series_datasets,
                    updates: used.get(&run.id).map(Vec::as_slice).unwrap_or_default(),
                },
                &recipe.to,
            );
            if let Some(hash) = &expression.hash {
                request.definition_version = run.definition_version;
                request.definition_hash = Some(hash.clone());
            }
            if let Some((backfill, as_of)) = &run.backfill {
                request.backfill_id = Some(backfill.to_string());
                request.as_of = Some(as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            }
            request.trigger = match &recipe.trigger_note {
                None => None,
                Some(v) => Some(
                    serde_json::from_value::<TriggerNote>(v.clone())
                        .map_err(|e| format!("run {}: unreadable trigger note: {e}", run.id))?,
                ),
            };
            Ok(request.to_json_string())
        })
        .collect())
}

/// [`assemble`] for one recipe, a row that does not assemble being corrupt.
pub async fn assemble_one(tx: &Transaction<'_>, recipe: Recipe) -> StoreResult<String> {
    assemble(tx, std::slice::from_ref(&recipe))
        .await?
        .pop()
        .unwrap_or_else(|| Err("nothing assembled".into()))
        .map_err(StoreError::Corrupt)
}
