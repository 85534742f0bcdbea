//! The facts a metric's output staleness is judged from
//! (`domain::staleness`): its newest succeeded run, that run's definition
//! version against the current one, and the updates of its inputs that came
//! after the ones it used. Read-only.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{GenericClient, Pool, StoreResult};
use crate::domain::ids::{DatasetId, MetricId};
use crate::domain::staleness::{NewerInput, OutputFacts};

/// Per metric (`m`, chosen by the caller's `WHERE`): the facts, in the
/// columns [`facts_of`] reads. The newest success is found on the
/// succeeded-runs index; runs without a version count as version 1. A
/// backfill's runs compute the past: they are not the newest output.
const FACTS: &str = "SELECT m.id, m.code, s.id, COALESCE(s.definition_version, 1), m.definition_version,
        (rv.core_hash IS DISTINCT FROM cv.core_hash) AND cv.version IS NOT NULL,
        (rv.policy_hash IS DISTINCT FROM cv.policy_hash) AND cv.version IS NOT NULL,
        COALESCE(n.datasets, '{}'), COALESCE(n.counts, '{}'), COALESCE(n.since, '{}')
   FROM metrics m
   LEFT JOIN LATERAL (
        SELECT r.id, r.definition_version FROM metric_runs r
         WHERE r.metric_code = m.code AND r.status = 'succeeded' AND r.backfill_id IS NULL
         ORDER BY r.created_at DESC LIMIT 1) s ON true
   LEFT JOIN metric_definition_versions cv ON cv.metric_id = m.id AND cv.version = m.definition_version
   LEFT JOIN metric_definition_versions rv
          ON rv.metric_id = m.id AND rv.version = COALESCE(s.definition_version, 1)
   LEFT JOIN LATERAL (
        SELECT array_agg(x.dataset_id ORDER BY x.dataset_id) AS datasets,
               array_agg(x.n ORDER BY x.dataset_id) AS counts,
               array_agg(x.since ORDER BY x.dataset_id) AS since
          FROM (SELECT used.dataset_id, later.n, later.since
                  FROM run_dataset_updates i
                  JOIN dataset_updates used ON used.id = i.dataset_update_id
                  CROSS JOIN LATERAL (
                       SELECT count(*) AS n, min(l.created_at) AS since FROM dataset_updates l
                        WHERE l.dataset_id = used.dataset_id AND l.created_at > used.created_at) later
                 WHERE i.run_id = s.id AND later.n > 0) x) n ON s.id IS NOT NULL";

fn facts_of(r: &tokio_postgres::Row) -> (MetricId, String, OutputFacts) {
    let datasets: Vec<DatasetId> = r.get(7);
    let counts: Vec<i64> = r.get(8);
    let since: Vec<DateTime<Utc>> = r.get(9);
    let newer_inputs = datasets
        .into_iter()
        .zip(counts)
        .zip(since)
        .map(|((dataset_id, updates), since)| NewerInput {
            dataset_id,
            updates,
            since,
        })
        .collect();
    (
        r.get(0),
        r.get(1),
        OutputFacts {
            run: r.get(2),
            run_version: r.get(3),
            current_version: r.get(4),
            core_differs: r.get(5),
            policy_differs: r.get(6),
            newer_inputs,
        },
    )
}

/// The facts of each of these metrics.
pub async fn of_metrics(
    pool: &Pool,
    ids: &[MetricId],
) -> StoreResult<HashMap<MetricId, OutputFacts>> {
    let db = pool.get().await?;
    let stmt = db
        .prepare_cached(&format!("{FACTS} WHERE m.id = ANY($1)"))
        .await?;
    let rows = db.query(&stmt, &[&ids]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (id, _, f) = facts_of(r);
            (id, f)
        })
        .collect())
}

/// A page of metrics in code order after `after`, with their facts: the
/// caller judges and filters (`orchestrator metrics stale`).
pub async fn page(
    db: &impl GenericClient,
    after: Option<&str>,
    limit: i64,
) -> StoreResult<Vec<(String, OutputFacts)>> {
    let stmt = db
        .prepare_cached(&format!(
            "{FACTS} WHERE ($1::text IS NULL OR m.code > $1) ORDER BY m.code LIMIT $2"
        ))
        .await?;
    let rows = db.query(&stmt, &[&after, &limit]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let (_, code, f) = facts_of(r);
            (code, f)
        })
        .collect())
}
