//! The freshness expectations `catalog apply` writes: each entry of the file
//! sets its expectation (none, when it names none); a changed one restarts
//! its clock (`expectation_set_at`) so that deadlines before it do not count.

use super::{StoreError, StoreResult, Transaction};
use crate::domain::catalog::Catalog;
use crate::domain::expectation::{DatasetExpectation, MetricColumns, MetricExpectation};

/// One expectation set, changed or removed, as `catalog apply` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectationChange {
    /// `dataset` or `metric`.
    pub entity: &'static str,
    pub id: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl std::fmt::Display for ExpectationChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let none = "none";
        write!(
            f,
            "{} {}: {} → {}",
            self.entity,
            self.id,
            self.from.as_deref().unwrap_or(none),
            self.to.as_deref().unwrap_or(none)
        )
    }
}

fn corrupt(entity: &str, id: &str, e: String) -> StoreError {
    StoreError::Corrupt(format!("{entity} {id}'s stored expectation: {e}"))
}

/// Writes the datasets' and metrics' expectations (after their upsert) and
/// returns what changed.
pub async fn write(tx: &Transaction<'_>, c: &Catalog) -> StoreResult<Vec<ExpectationChange>> {
    let mut changes = datasets(tx, c).await?;
    changes.extend(metrics(tx, c).await?);
    Ok(changes)
}

async fn datasets(tx: &Transaction<'_>, c: &Catalog) -> StoreResult<Vec<ExpectationChange>> {
    let ids: Vec<&str> = c.datasets.iter().map(|d| d.id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT id, expected_every_secs, expected_by, expectation_grace_secs
               FROM datasets WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut stored = std::collections::HashMap::new();
    for r in &rows {
        let id: String = r.get(0);
        let by: Option<String> = r.get(2);
        let e = DatasetExpectation::from_columns(r.get(1), by.as_deref(), r.get(3))
            .map_err(|e| corrupt("dataset", &id, e))?;
        stored.insert(id, e);
    }
    let mut changes = Vec::new();
    let (mut changed, mut every, mut by, mut grace) = (vec![], vec![], vec![], vec![]);
    for d in &c.datasets {
        let old = stored.get(&d.id).cloned().flatten();
        if old == d.expectation {
            continue;
        }
        let (e, b, g) = d
            .expectation
            .as_ref()
            .map_or((None, None, 0), DatasetExpectation::to_columns);
        changed.push(d.id.as_str());
        every.push(e);
        by.push(b);
        grace.push(g);
        changes.push(ExpectationChange {
            entity: "dataset",
            id: d.id.clone(),
            from: old.map(|o| o.to_string()),
            to: d.expectation.as_ref().map(ToString::to_string),
        });
    }
    tx.execute(
        "UPDATE datasets d SET expected_every_secs = u.every, expected_by = u.by,
                expectation_grace_secs = u.grace, expectation_set_at = now()
           FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[]) AS u(id, every, by, grace)
          WHERE d.id = u.id",
        &[&changed, &every, &by, &grace],
    )
    .await?;
    Ok(changes)
}

async fn metrics(tx: &Transaction<'_>, c: &Catalog) -> StoreResult<Vec<ExpectationChange>> {
    let ids: Vec<&str> = c.metrics.iter().map(|m| m.id.as_str()).collect();
    let rows = tx
        .query(
            "SELECT id, max_age_warn_secs, max_age_fail_secs, expected_by, expectation_grace_secs
               FROM metrics WHERE id = ANY($1)",
            &[&ids],
        )
        .await?;
    let mut stored = std::collections::HashMap::new();
    for r in &rows {
        let id: String = r.get(0);
        let by: Option<String> = r.get(3);
        let e = MetricExpectation::from_columns((r.get(1), r.get(2), by.as_deref(), r.get(4)))
            .map_err(|e| corrupt("metric", &id, e))?;
        stored.insert(id, e);
    }
    let mut changes = Vec::new();
    let mut changed = vec![];
    let mut columns: Vec<MetricColumns> = vec![];
    for m in &c.metrics {
        let old = stored.get(&m.id).cloned().flatten();
        if old == m.expectation {
            continue;
        }
        changed.push(m.id.as_str());
        columns.push(
            m.expectation
                .as_ref()
                .map_or((None, None, None, 0), MetricExpectation::to_columns),
        );
        changes.push(ExpectationChange {
            entity: "metric",
            id: m.id.clone(),
            from: old.map(|o| o.to_string()),
            to: m.expectation.as_ref().map(ToString::to_string),
        });
    }
    let warn: Vec<Option<i64>> = columns.iter().map(|c| c.0).collect();
    let fail: Vec<Option<i64>> = columns.iter().map(|c| c.1).collect();
    let by: Vec<Option<&str>> = columns.iter().map(|c| c.2.as_deref()).collect();
    let grace: Vec<i64> = columns.iter().map(|c| c.3).collect();
    tx.execute(
        "UPDATE metrics m SET max_age_warn_secs = u.warn, max_age_fail_secs = u.fail,
                expected_by = u.by, expectation_grace_secs = u.grace, expectation_set_at = now()
           FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[])
                AS u(id, warn, fail, by, grace)
          WHERE m.id = u.id",
        &[&changed, &warn, &fail, &by, &grace],
    )
    .await?;
    Ok(changes)
}
