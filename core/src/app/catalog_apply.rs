//! `orchestrator catalog apply`: validate against the store's series, upsert
//! in one transaction, and cancel pending runs the change invalidates.

use crate::domain::ids::{MetricId, RunId};
use std::collections::HashSet;

use serde_json::Value;
use tracing::instrument;

use crate::domain::catalog::{validate, Catalog};
use crate::domain::problem::{Problem, Problems};
use crate::in_transaction;
use crate::store::expectations::{self, ExpectationChange};
use crate::store::tx::TxError;
use crate::store::{catalog, runs, trigger_policies, Pool, StoreError, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the catalog is invalid; nothing was applied:\n{0}")]
    Invalid(Problems),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TxError for ApplyError {
    fn as_store_error(&self) -> Option<&StoreError> {
        match self {
            ApplyError::Store(e) => Some(e),
            ApplyError::Invalid(_) => None,
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
    /// Nothing was written ([`dry_run`]).
    pub dry_run: bool,
}

/// Validates without a store: series must be defined in the file itself.
pub fn validate_standalone(doc: &Value) -> Result<Catalog, Problems> {
    validate(doc, &HashSet::new())
}

#[instrument(skip_all)]
pub async fn apply(pool: &Pool, doc: &Value) -> Result<ApplyReport, ApplyError> {
    in_transaction!(pool, ApplyError, |tx| apply_in(&tx, doc).await?)
}

/// What [`apply`] would do, reported from a transaction that is rolled back.
#[instrument(skip_all)]
pub async fn dry_run(pool: &Pool, doc: &Value) -> Result<ApplyReport, ApplyError> {
    let mut client = pool.get().await.map_err(StoreError::from)?;
    let tx = client.transaction().await.map_err(StoreError::from)?;
    let report = apply_in(&tx, doc).await?;
    tx.rollback().await.map_err(StoreError::from)?;
    Ok(ApplyReport {
        dry_run: true,
        ..report
    })
}

async fn apply_in(tx: &Transaction<'_>, doc: &Value) -> Result<ApplyReport, ApplyError> {
    catalog::lock_for_apply(tx).await?;
    let known = catalog::known_series(tx).await?;
    let cat = validate(doc, &known).map_err(ApplyError::Invalid)?;

    let codes: Vec<String> = cat.metrics.iter().map(|m| m.code.clone()).collect();
    let taken = catalog::metric_ids_by_code(tx, &codes).await?;
    let conflicts: Vec<Problem> = cat
        .metrics
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match taken.get(&m.code) {
            Some(owner) if *owner != m.id => Some(Problem::new(
                format!("metrics[{i}].code"),
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
    catalog::upsert(tx, &cat).await?;
    let expectations = expectations::write(tx, &cat).await?;
    let policies = match trigger_policies::write(tx, &cat).await? {
        trigger_policies::Written::Changed(c) => c,
        trigger_policies::Written::Invalid(p) => return Err(ApplyError::Invalid(Problems(p))),
    };

    let changed: Vec<MetricId> = cat
        .metrics
        .iter()
        .filter(|m| {
            before
                .get(m.id.as_str())
                .is_some_and(|old| *old != m.series())
        })
        .map(|m| MetricId::new(m.id.as_str()))
        .collect();
    let mut canceled =
        runs::cancel_pending_of(tx, &changed, "canceled: metric dependencies changed").await?;
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
    Ok(ApplyReport {
        datasets: cat.datasets.len(),
        series: cat.series.len(),
        metrics: cat.metrics.len(),
        canceled_runs: canceled,
        expectations,
        policies,
        dry_run: false,
    })
}
