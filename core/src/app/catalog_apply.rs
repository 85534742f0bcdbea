//! `orchestrator catalog apply`: validate against the store's series, upsert
//! in one transaction, and cancel pending runs the change invalidates.

use crate::domain::ids::{MetricId, RunId};
use std::collections::{HashMap, HashSet};

use serde_json::Value;
use tracing::instrument;

use crate::domain::catalog::{validate, validate_entries, Catalog};
use crate::domain::catalog_doc::CatalogDoc;
use crate::domain::catalog_hash::{self, Unchanged};
use crate::domain::definition::{self, OnChange};
use crate::domain::problem::{Problem, Problems};
use crate::domain::runner_compat;
use crate::in_transaction;
use crate::store::definitions::{self, Action, Current, NewVersion};
use crate::store::expectations::{self, ExpectationChange};
use crate::store::tx::TxError;
use crate::store::{catalog, runs, trigger_policies, Pool, StoreError, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the catalog is invalid; nothing was applied:\n{0}")]
    Invalid(Problems),
    #[error("{count} warning(s), errors with --strict; nothing was applied:\n{problems}", count = .0.0.len(), problems = .0)]
    Warnings(Problems),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError for ApplyError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            ApplyError::Store(e) => Some(e),
            ApplyError::Invalid(_) | ApplyError::Warnings(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub datasets: usize,
    pub series: usize,
    pub metrics: usize,
    /// Pending runs canceled because their metric's dependencies changed or
    /// the metric was disabled.
    pub canceled_runs: Vec<RunId>,
    /// Freshness expectations set, changed or removed.
    pub expectations: Vec<ExpectationChange>,
    /// Trigger policies set, changed or removed.
    pub policies: Vec<ExpectationChange>,
    /// Metrics whose definition changed: a new version each.
    pub definitions: Vec<DefinitionChange>,
    /// Metrics given their first version (new metrics).
    pub first_versions: usize,
    /// Entries of the file identical to what was last applied: skipped.
    pub unchanged: Unchanged,
    /// Expressions written or changed that the reference runner cannot
    /// compute.
    pub warnings: Vec<Problem>,
    /// Nothing was written ([`dry_run`]).
    pub dry_run: bool,
}

/// One metric's new definition version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionChange {
    pub metric_code: String,
    pub from: i32,
    pub to: i32,
    /// What changed, for people ([`definition::summary`]).
    pub summary: String,
    /// What the metric's `on_change` does about it.
    pub action: OnChange,
}

impl std::fmt::Display for DefinitionChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: definition v{} → v{} ({}); on_change: {}",
            self.metric_code, self.from, self.to, self.summary, self.action
        )
    }
}

/// Validates without a store: series must be defined in the file itself.
pub fn validate_standalone(doc: &Value) -> Result<Catalog, Problems> {
    validate(doc, &HashSet::new())
}

/// [`apply_as`] recording the database user as who applied it.
pub async fn apply(pool: &Pool, doc: &Value) -> Result<ApplyReport, ApplyError> {
    apply_as(pool, doc, None).await
}

/// Applies the catalog; new definition versions record `by` as who applied
/// them (`None`: the database user).
pub async fn apply_as(
    pool: &Pool,
    doc: &Value,
    by: Option<&str>,
) -> Result<ApplyReport, ApplyError> {
    let opts = ApplyOptions {
        by,
        ..ApplyOptions::default()
    };
    apply_doc(pool, &CatalogDoc::from_value(doc.clone()), &opts).await
}

/// [`dry_run_as`] for the database user.
pub async fn dry_run(pool: &Pool, doc: &Value) -> Result<ApplyReport, ApplyError> {
    dry_run_as(pool, doc, None).await
}

/// What [`apply_as`] would do, reported from a transaction that is rolled back.
pub async fn dry_run_as(
    pool: &Pool,
    doc: &Value,
    by: Option<&str>,
) -> Result<ApplyReport, ApplyError> {
    let opts = ApplyOptions {
        by,
        dry_run: true,
        ..ApplyOptions::default()
    };
    apply_doc(pool, &CatalogDoc::from_value(doc.clone()), &opts).await
}

/// How an apply runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions<'a> {
    /// Who applies it (`None`: the database user).
    pub by: Option<&'a str>,
    /// Warnings (expressions the reference runner cannot compute) fail it.
    pub strict: bool,
    /// Report what would change and change nothing.
    pub dry_run: bool,
}

/// Applies a document (or reports what it would do), in one transaction.
#[instrument(skip_all, fields(metrics = doc.metrics.len()))]
pub async fn apply_doc(
    pool: &Pool,
    doc: &CatalogDoc<'_>,
    opts: &ApplyOptions<'_>,
) -> Result<ApplyReport, ApplyError> {
    if !opts.dry_run {
        return in_transaction!(pool, ApplyError, |tx| apply_in(&tx, doc, opts).await?);
    }
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await.map_err(StoreError::from)?;
    let report = apply_in(&tx, doc, opts).await?;
    tx.rollback().await.map_err(StoreError::from)?;
    Ok(ApplyReport {
        dry_run: true,
        ..report
    })
}

/// Metrics validated and written per chunk: what an apply holds parsed at
/// once, whatever the catalog's size.
const CHUNK: usize = 20_000;

async fn apply_in(
    tx: &Transaction<'_>,
    doc: &CatalogDoc<'_>,
    opts: &ApplyOptions<'_>,
) -> Result<ApplyReport, ApplyError> {
    catalog::lock_for_apply(tx).await?;
    definitions::stamp_unversioned(tx, Action::Adopted).await?;
    let mut known = catalog::known_series(tx).await?;
    // A later chunk's metrics may read series the first chunk defines.
    known.extend(
        doc.skeleton()
            .get("series")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("code")?.as_str().map(str::to_string)),
    );
    // Only the entries written differently from what was last applied are
    // validated and written again: an apply costs what changed.
    let plan = catalog_hash::plan(doc, &catalog::stored_hashes(tx).await?);
    let changed: Vec<usize> = (0..doc.metrics.len())
        .filter(|i| plan.keeps("metrics", *i))
        .collect();
    let mut chunks: Vec<&[usize]> = changed.chunks(CHUNK).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let mut report = ApplyReport {
        unchanged: plan.unchanged,
        ..ApplyReport::default()
    };
    let mut problems = Vec::new();
    let mut written = Written::default();
    for (k, chunk) in chunks.into_iter().enumerate() {
        let head = k == 0;
        let part = doc.chunk(chunk, head);
        let keep = |s: &str, i: usize| match s {
            "metrics" => chunk.binary_search(&i).is_ok(),
            _ => head && plan.keeps(s, i),
        };
        let cat = match validate_entries(&part, &known, &keep) {
            Ok(cat) => cat,
            Err(p) => {
                problems.extend(p.0);
                continue;
            }
        };
        report.warnings.extend(runner_compat::warnings(&part));
        // Later chunks are still validated (every problem is reported),
        // but nothing more is written.
        if problems.is_empty() {
            write_chunk(tx, &cat, &plan, opts.by, &mut report, &mut written).await?;
        }
    }
    if !problems.is_empty() {
        return Err(ApplyError::Invalid(Problems(problems)));
    }
    if opts.strict && !report.warnings.is_empty() {
        return Err(ApplyError::Warnings(Problems(report.warnings)));
    }
    catalog::derive_required_datasets_after(tx, written.datasets, written.metrics).await?;
    let mut canceled = runs::cancel_pending_of(
        tx,
        &written.dependencies_changed,
        "canceled: metric dependencies changed",
    )
    .await?;
    let stale = runs::metrics_with_stale_pending_runs(tx).await?;
    canceled.extend(
        runs::cancel_pending_of(
            tx,
            &stale,
            "canceled: metric disabled or its datasets changed",
        )
        .await?,
    );
    crate::store::pending::sync_required_days(tx).await?;
    report.canceled_runs = canceled;
    report.datasets = plan.hashes.datasets.len();
    report.series = plan.hashes.series.len();
    report.metrics = doc.metrics.len();
    Ok(report)
}

/// What the chunks wrote, for the steps after them.
#[derive(Default)]
struct Written {
    datasets: bool,
    metrics: usize,
    dependencies_changed: Vec<MetricId>,
}

/// Writes one validated chunk: its entries, expectations, policies and
/// definition versions.
async fn write_chunk(
    tx: &Transaction<'_>,
    cat: &Catalog,
    plan: &catalog_hash::Plan,
    by: Option<&str>,
    report: &mut ApplyReport,
    written: &mut Written,
) -> Result<(), ApplyError> {
    let codes: Vec<String> = cat.metrics.iter().map(|m| m.code.clone()).collect();
    let taken = catalog::metric_ids_by_code(tx, &codes).await?;
    let conflicts: Vec<Problem> = cat
        .metrics
        .iter()
        .filter_map(|m| match taken.get(&m.code) {
            Some(owner) if *owner != m.id => Some(Problem::new(
                format!("metrics[{}].code", m.index),
                format!("code {:?} already belongs to metric {owner:?}", m.code),
            )),
            _ => None,
        })
        .collect();
    if !conflicts.is_empty() {
        return Err(ApplyError::Invalid(Problems(conflicts)));
    }
    let ids: Vec<MetricId> = cat
        .metrics
        .iter()
        .map(|m| MetricId::new(m.id.as_str()))
        .collect();
    let before = catalog::dependencies(tx, &ids).await?;
    let id_strs: Vec<&str> = cat.metrics.iter().map(|m| m.id.as_str()).collect();
    let current = definitions::current(tx, &id_strs).await?;
    catalog::upsert(tx, cat, &plan.hashes).await?;
    catalog::derive_chunk(tx, cat).await?;
    report
        .expectations
        .extend(expectations::write(tx, cat).await?);
    match trigger_policies::write(tx, cat).await? {
        trigger_policies::Written::Changed(c) => report.policies.extend(c),
        trigger_policies::Written::Invalid(p) => return Err(ApplyError::Invalid(Problems(p))),
    }
    written.datasets |= !cat.datasets.is_empty();
    written.metrics += cat.metrics.len();
    written.dependencies_changed.extend(
        cat.metrics
            .iter()
            .filter(|m| {
                before
                    .get(m.id.as_str())
                    .is_some_and(|old| *old != m.series())
            })
            .map(|m| MetricId::new(m.id.as_str())),
    );
    let versions = new_versions(cat, &current);
    definitions::record(tx, &versions, by).await?;
    let codes: HashMap<&str, &str> = cat
        .metrics
        .iter()
        .map(|m| (m.id.as_str(), m.code.as_str()))
        .collect();
    report.definitions.extend(
        versions
            .iter()
            .filter(|v| v.action != Action::Created)
            .map(|v| DefinitionChange {
                metric_code: codes
                    .get(v.metric_id)
                    .copied()
                    .unwrap_or(v.metric_id)
                    .to_string(),
                from: v.version - 1,
                to: v.version,
                summary: definition::summary(&v.changes),
                action: match v.action {
                    Action::Rerun => OnChange::Rerun,
                    Action::Backfill => cat
                        .metrics
                        .iter()
                        .find(|m| m.id == v.metric_id)
                        .map_or(OnChange::None, |m| m.on_change),
                    _ => OnChange::None,
                },
            }),
    );
    report.first_versions += versions
        .iter()
        .filter(|v| v.action == Action::Created)
        .count();
    Ok(())
}

/// The version each metric of the catalog gets: none when its definition is
/// unchanged, its first when it has none, else the next with what changed.
fn new_versions<'c>(cat: &'c Catalog, current: &HashMap<String, Current>) -> Vec<NewVersion<'c>> {
    cat.metrics
        .iter()
        .filter_map(|m| {
            let d = m.definition();
            let hashes = d.hashes();
            let canonical = d.canonical();
            let (version, changes, action) = match current.get(&m.id) {
                Some(c) if c.hash == hashes.hash => return None,
                Some(c) => (
                    c.version + 1,
                    definition::diff(&c.definition, &canonical),
                    match m.on_change {
                        OnChange::Rerun => Action::Rerun,
                        OnChange::Backfill { .. } => Action::Backfill,
                        OnChange::None => Action::None,
                    },
                ),
                None => (1, Vec::new(), Action::Created),
            };
            Some(NewVersion {
                metric_id: m.id.as_str(),
                version,
                hashes,
                definition: canonical,
                expression_type: m.expression_type.as_str(),
                expression_json: &m.expression_json,
                changes,
                action,
            })
        })
        .collect()
}
