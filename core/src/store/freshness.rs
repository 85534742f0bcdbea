//! All the SQL of the freshness sweep (docs/semantics.md, "Freshness
//! expectations"): the facts each expectation is judged on, the states last
//! written, and guarded writes of the states that changed.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{StoreError, StoreResult, Transaction};
use crate::domain::expectation::{DatasetExpectation, MetricExpectation};
use crate::domain::freshness_state::{DatasetState, MetricState};
use crate::domain::ids::{DatasetId, MetricId};

/// An arbitrary constant: the transaction-level advisory lock that lets one
/// replica at a time sweep.
const SWEEP_LOCK: i64 = 0x6672_6573_6873;

/// Takes the sweep's lock for this transaction; `false` when another
/// replica holds it (that one sweeps).
pub async fn try_lock(tx: &Transaction<'_>) -> StoreResult<bool> {
    let stmt = tx
        .prepare_cached("SELECT pg_try_advisory_xact_lock($1)")
        .await?;
    Ok(tx.query_one(&stmt, &[&SWEEP_LOCK]).await?.get(0))
}

/// A state as the sweep last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored<S> {
    pub state: S,
    pub since: DateTime<Utc>,
    pub overdue_since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct DatasetFacts {
    pub id: DatasetId,
    pub expectation: DatasetExpectation,
    pub set_at: DateTime<Utc>,
    pub last_update_at: Option<DateTime<Utc>>,
    pub stored: Option<Stored<DatasetState>>,
}

#[derive(Debug, Clone)]
pub struct MetricFacts {
    pub id: MetricId,
    pub code: String,
    pub expectation: MetricExpectation,
    pub set_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// Its inputs whose stored state is late.
    pub late_inputs: Vec<DatasetId>,
    /// What its pending run still lacks.
    pub missing: Vec<DatasetId>,
    pub stored: Option<Stored<MetricState>>,
    pub stored_blocking: Vec<DatasetId>,
}

/// An entity the sweep found due: its facts, or `None` when it has no
/// expectation any more (or is disabled, or gone): its state is forgotten.
#[derive(Debug, Clone)]
pub struct Due<F> {
    pub id: String,
    pub due_at: DateTime<Utc>,
    pub facts: Option<F>,
}

fn state<S>(text: Option<String>, parse: fn(&str) -> Option<S>) -> StoreResult<Option<S>> {
    text.map(|t| {
        parse(&t).ok_or_else(|| StoreError::Corrupt(format!("unknown freshness state {t:?}")))
    })
    .transpose()
}

fn stored<S>(
    r: &tokio_postgres::Row,
    first: usize,
    parse: fn(&str) -> Option<S>,
) -> StoreResult<Option<Stored<S>>> {
    Ok(state(r.get(first), parse)?.map(|state| Stored {
        state,
        since: r.get(first + 1),
        overdue_since: r.get(first + 2),
    }))
}

/// Where a page of due entities starts: after this (due_at, id).
pub type After = (DateTime<Utc>, String);

const DATASET_COLUMNS: &str =
    "d.id, d.expected_every_secs, d.expected_by, d.expectation_grace_secs,
       COALESCE(d.expectation_set_at, d.updated_at),
       (SELECT u.created_at FROM dataset_updates u WHERE u.dataset_id = d.id
         ORDER BY u.created_at DESC, u.id DESC LIMIT 1),
       f.state, f.since, f.overdue_since";

fn dataset_facts(r: &tokio_postgres::Row, first: usize) -> StoreResult<Option<DatasetFacts>> {
    let Some(id) = r.get::<_, Option<DatasetId>>(first) else {
        return Ok(None);
    };
    let by: Option<String> = r.get(first + 2);
    let Some(expectation) =
        DatasetExpectation::from_columns(r.get(first + 1), by.as_deref(), r.get(first + 3))
            .map_err(|e| StoreError::Corrupt(format!("dataset {id}'s expectation: {e}")))?
    else {
        return Ok(None);
    };
    Ok(Some(DatasetFacts {
        id,
        expectation,
        set_at: r.get(first + 4),
        last_update_at: r.get(first + 5),
        stored: stored(r, first + 6, DatasetState::parse)?,
    }))
}

/// Up to `limit` datasets due at `now`, in (due_at, id) order after
/// `after`: an index range of the due table, whatever the catalog's size.
pub async fn datasets_due(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    after: &After,
    limit: i64,
) -> StoreResult<Vec<Due<DatasetFacts>>> {
    let sql = format!(
        "SELECT q.entity_id, q.due_at, {DATASET_COLUMNS}
           FROM freshness_due q
           LEFT JOIN datasets d ON d.id = q.entity_id
           LEFT JOIN dataset_freshness f ON f.dataset_id = q.entity_id
          WHERE q.kind = 'dataset' AND q.due_at <= $1 AND (q.due_at, q.entity_id) > ($2, $3)
          ORDER BY q.due_at, q.entity_id LIMIT $4"
    );
    let stmt = tx.prepare_cached(&sql).await?;
    let mut out = Vec::new();
    for r in tx.query(&stmt, &[&now, &after.0, &after.1, &limit]).await? {
        out.push(Due {
            id: r.get(0),
            due_at: r.get(1),
            facts: dataset_facts(&r, 2)?,
        });
    }
    Ok(out)
}

pub(super) static ON_UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH mark AS (INSERT INTO freshness_marks (kind, entity_id) VALUES ('dataset', $1))
         SELECT {DATASET_COLUMNS}
           FROM datasets d JOIN dataset_freshness f ON f.dataset_id = d.id AND f.state = 'late'
          WHERE d.id = $1"
    )
});

/// The facts of a dataset that is late, as an update to it reads them
/// (none when it is not late or has no expectation), and the mark that
/// its facts changed; one statement, pipelined with the update's receipt.
pub async fn on_update(
    tx: &Transaction<'_>,
    dataset: &DatasetId,
) -> StoreResult<Option<DatasetFacts>> {
    let stmt = tx.prepare_cached(&ON_UPDATE).await?;
    match tx.query_opt(&stmt, &[&dataset]).await? {
        Some(r) => dataset_facts(&r, 0),
        None => Ok(None),
    }
}

/// Up to `limit` metrics due at `now`, in (due_at, id) order after `after`,
/// with their newest success, their late inputs, what their pending run
/// lacks, and their last state.
pub async fn metrics_due(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    after: &After,
    limit: i64,
) -> StoreResult<Vec<Due<MetricFacts>>> {
    let stmt = tx
        .prepare_cached(
            "SELECT q.entity_id, q.due_at, m.id, m.code, m.max_age_warn_secs, m.max_age_fail_secs,
                    m.expected_by, m.expectation_grace_secs, COALESCE(m.expectation_set_at, m.updated_at),
                    (SELECT s.finished_at FROM metric_runs s
                      WHERE s.metric_code = m.code AND s.status = 'succeeded' AND s.backfill_id IS NULL
                      ORDER BY s.created_at DESC LIMIT 1),
                    ARRAY(SELECT r.dataset_id FROM metric_required_datasets r
                            JOIN dataset_freshness df ON df.dataset_id = r.dataset_id AND df.state = 'late'
                           WHERE r.metric_id = m.id ORDER BY 1),
                    ARRAY(SELECT d.dataset_id FROM metric_runs p
                            JOIN metric_run_pending_datasets d ON d.run_id = p.id
                           WHERE p.metric_code = m.code AND p.status = 'pending_dependencies'
                             AND NOT d.received ORDER BY 1),
                    f.state, f.since, f.overdue_since, COALESCE(f.blocking, '{}')
               FROM freshness_due q
               LEFT JOIN metrics m ON m.id = q.entity_id AND m.enabled
               LEFT JOIN metric_freshness f ON f.metric_id = q.entity_id
              WHERE q.kind = 'metric' AND q.due_at <= $1 AND (q.due_at, q.entity_id) > ($2, $3)
              ORDER BY q.due_at, q.entity_id LIMIT $4",
        )
        .await?;
    let mut out = Vec::new();
    for r in tx.query(&stmt, &[&now, &after.0, &after.1, &limit]).await? {
        out.push(Due {
            id: r.get(0),
            due_at: r.get(1),
            facts: metric_facts(&r)?,
        });
    }
    Ok(out)
}

fn metric_facts(r: &tokio_postgres::Row) -> StoreResult<Option<MetricFacts>> {
    let Some(id) = r.get::<_, Option<MetricId>>(2) else {
        return Ok(None);
    };
    let by: Option<String> = r.get(6);
    let Some(expectation) =
        MetricExpectation::from_columns((r.get(4), r.get(5), by.as_deref(), r.get(7)))
            .map_err(|e| StoreError::Corrupt(format!("metric {id}'s expectation: {e}")))?
    else {
        return Ok(None);
    };
    Ok(Some(MetricFacts {
        id,
        code: r.get(3),
        expectation,
        set_at: r.get(8),
        last_success_at: r.get(9),
        late_inputs: r.get(10),
        missing: r.get(11),
        stored: stored(r, 12, MetricState::parse)?,
        stored_blocking: r.get(15),
    }))
}

/// A state to write, guarded by the one read: `expected` is the stored
/// state (`None`: no row yet).
pub struct StateWrite<'a, S> {
    pub id: &'a str,
    pub expected: Option<S>,
    pub state: S,
    pub since: DateTime<Utc>,
    pub overdue_since: Option<DateTime<Utc>>,
    /// Metrics only.
    pub blocking: Vec<String>,
}

/// Which guarded writes took: a write whose row changed under it (another
/// sweep, which the lock should make impossible) is `conflicted`, and its
/// transition is not alerted here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub applied: HashSet<String>,
    pub conflicted: Vec<String>,
}

/// One table's statements: an insert for entities without a row, a guarded
/// update for the others.
struct Table {
    insert: &'static str,
    update: &'static str,
}

const DATASETS: Table = Table {
    insert: "INSERT INTO dataset_freshness (dataset_id, state, since, overdue_since)
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
             ON CONFLICT (dataset_id) DO NOTHING RETURNING dataset_id",
    update: "UPDATE dataset_freshness f
                SET state = u.state, since = u.since, overdue_since = u.overdue_since
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
                    AS u(id, state, since, overdue_since, expected)
              WHERE f.dataset_id = u.id AND f.state = u.expected
             RETURNING f.dataset_id",
};

const METRICS: Table = Table {
    insert: "INSERT INTO metric_freshness (metric_id, state, since, overdue_since, blocking)
             SELECT u.id, u.state, u.since, u.overdue_since,
                    ARRAY(SELECT jsonb_array_elements_text(u.blocking))
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::jsonb[])
                    AS u(id, state, since, overdue_since, blocking)
             ON CONFLICT (metric_id) DO NOTHING RETURNING metric_id",
    update: "UPDATE metric_freshness f
                SET state = u.state, since = u.since, overdue_since = u.overdue_since,
                    blocking = ARRAY(SELECT jsonb_array_elements_text(u.blocking))
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::jsonb[])
                    AS u(id, state, since, overdue_since, expected, blocking)
              WHERE f.metric_id = u.id AND f.state = u.expected
             RETURNING f.metric_id",
};

pub async fn write_datasets(
    tx: &Transaction<'_>,
    writes: &[StateWrite<'_, DatasetState>],
) -> StoreResult<Written> {
    write(tx, &DATASETS, writes, DatasetState::as_str, false).await
}

pub async fn write_metrics(
    tx: &Transaction<'_>,
    writes: &[StateWrite<'_, MetricState>],
) -> StoreResult<Written> {
    write(tx, &METRICS, writes, MetricState::as_str, true).await
}

async fn write<S: Copy>(
    tx: &Transaction<'_>,
    table: &Table,
    writes: &[StateWrite<'_, S>],
    text: fn(S) -> &'static str,
    with_blocking: bool,
) -> StoreResult<Written> {
    let (new, old): (Vec<&StateWrite<S>>, Vec<&StateWrite<S>>) =
        writes.iter().partition(|w| w.expected.is_none());
    let mut written = Written::default();
    for (rows, sql, is_insert) in [(new, table.insert, true), (old, table.update, false)] {
        if rows.is_empty() {
            continue;
        }
        let ids: Vec<&str> = rows.iter().map(|w| w.id).collect();
        let states: Vec<&str> = rows.iter().map(|w| text(w.state)).collect();
        let since: Vec<DateTime<Utc>> = rows.iter().map(|w| w.since).collect();
        let overdue: Vec<Option<DateTime<Utc>>> = rows.iter().map(|w| w.overdue_since).collect();
        let expected: Vec<&str> = rows.iter().map(|w| w.expected.map_or("", text)).collect();
        let blocking: Vec<serde_json::Value> =
            rows.iter().map(|w| serde_json::json!(w.blocking)).collect();
        // Parameters in the statements' order: the row, the guard, the list.
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            vec![&ids, &states, &since, &overdue];
        if !is_insert {
            params.push(&expected);
        }
        if with_blocking {
            params.push(&blocking);
        }
        let stmt = tx.prepare_cached(sql).await?;
        let out = tx.query(&stmt, &params).await?;
        let took: HashSet<String> = out.iter().map(|r| r.get(0)).collect();
        for id in ids {
            if !took.contains(id) {
                written.conflicted.push(id.to_string());
            }
        }
        written.applied.extend(took);
    }
    Ok(written)
}

/// Refreshes the planner's statistics of the state tables after a sweep
/// that wrote many rows (the first one writes a row per entity: planned on
/// an empty table's statistics, the next sweep's join would scan it once per
/// metric).
pub async fn analyze(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute("ANALYZE dataset_freshness, metric_freshness")
        .await?;
    Ok(())
}

/// Forgets the states of entities found without an expectation (or, for
/// metrics, disabled or gone); returns how many.
pub async fn forget(tx: &Transaction<'_>, datasets: &[&str], metrics: &[&str]) -> StoreResult<u64> {
    let mut n = 0;
    if !datasets.is_empty() {
        n += tx
            .execute(
                "DELETE FROM dataset_freshness WHERE dataset_id = ANY($1)",
                &[&datasets],
            )
            .await?;
    }
    if !metrics.is_empty() {
        n += tx
            .execute(
                "DELETE FROM metric_freshness WHERE metric_id = ANY($1)",
                &[&metrics],
            )
            .await?;
    }
    Ok(n)
}

/// How many datasets and metrics are in each state, and the ones overdue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    pub datasets: Vec<(DatasetState, i64)>,
    pub metrics: Vec<(MetricState, i64)>,
    /// Late datasets (by id) and warning or failing metrics (by code) with
    /// their seconds overdue, the most overdue first, at most `limit` each.
    pub overdue_datasets: Vec<(String, f64)>,
    pub overdue_metrics: Vec<(String, f64)>,
}

pub async fn overview(tx: &Transaction<'_>, limit: i64) -> StoreResult<Overview> {
    let counts = tx
        .query(
            "SELECT 'dataset', state, count(*) FROM dataset_freshness GROUP BY state
             UNION ALL
             SELECT 'metric', state, count(*) FROM metric_freshness GROUP BY state",
            &[],
        )
        .await?;
    let mut out = Overview::default();
    for r in &counts {
        let (kind, state, n): (&str, String, i64) = (r.get(0), r.get(1), r.get(2));
        if kind == "dataset" {
            out.datasets
                .extend(DatasetState::parse(&state).map(|s| (s, n)));
        } else {
            out.metrics
                .extend(MetricState::parse(&state).map(|s| (s, n)));
        }
    }
    let overdue = tx
        .query(
            "(SELECT 'dataset', dataset_id, EXTRACT(EPOCH FROM now() - overdue_since)::float8
                FROM dataset_freshness WHERE state = 'late' AND overdue_since IS NOT NULL
               ORDER BY overdue_since LIMIT $1)
             UNION ALL
             (SELECT 'metric', m.code, EXTRACT(EPOCH FROM now() - f.overdue_since)::float8
                FROM metric_freshness f JOIN metrics m ON m.id = f.metric_id
               WHERE f.state IN ('warn', 'fail') AND f.overdue_since IS NOT NULL
               ORDER BY f.overdue_since LIMIT $1)",
            &[&limit],
        )
        .await?;
    for r in &overdue {
        let (kind, id, secs): (&str, String, f64) = (r.get(0), r.get(1), r.get(2));
        let list = if kind == "dataset" {
            &mut out.overdue_datasets
        } else {
            &mut out.overdue_metrics
        };
        list.push((id, secs.max(0.0)));
    }
    Ok(out)
}
