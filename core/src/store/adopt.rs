//! All the SQL of adopting a metrics-engine-cp database: the reference's
//! tables are renamed aside, this fleet's first migration creates the tables
//! under their names, every row is copied across (reconciling what our
//! invariants forbid, never deleting), the derived tables are computed and
//! the old tables dropped, all in the caller's transaction. The rules of what
//! is reconciled are in `domain::adoption`; the locking and the migration
//! history are in `store::migrate`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{StoreResult, Transaction};
use crate::domain::adoption::{
    check_dependencies, AdoptionReport, TableRows, OWN_TABLES, REFERENCE_TABLES,
};

/// What a database holds, as far as migrating it is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaState {
    /// Our migration history exists: plain `migrate` applies.
    Managed,
    /// None of the known tables: plain `migrate` creates everything.
    Empty,
    /// Every reference table, none of ours and no history: adoptable.
    Reference,
    /// Some known tables but not a complete reference schema.
    Partial { present: Vec<String> },
}

pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Prefix of the reference tables while their rows are copied.
const LEGACY: &str = "adopt_legacy_";

pub async fn schema_state(client: &tokio_postgres::Client) -> StoreResult<SchemaState> {
    let mut names: Vec<&str> = REFERENCE_TABLES.to_vec();
    names.extend(OWN_TABLES);
    names.push(HISTORY_TABLE);
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
                AND c.relname = ANY($1)",
            &[&names],
        )
        .await?;
    let present: BTreeSet<String> = rows.iter().map(|r| r.get(0)).collect();
    if present.contains(HISTORY_TABLE) {
        return Ok(SchemaState::Managed);
    }
    if present.is_empty() {
        return Ok(SchemaState::Empty);
    }
    let all_reference = REFERENCE_TABLES.iter().all(|t| present.contains(*t));
    let any_own = OWN_TABLES.iter().any(|t| present.contains(*t));
    if all_reference && !any_own {
        Ok(SchemaState::Reference)
    } else {
        Ok(SchemaState::Partial {
            present: present.into_iter().collect(),
        })
    }
}

/// Adopts the reference tables in `tx`; `first_migration` is the SQL of our
/// first migration, which creates the tables the rows are copied into.
pub async fn adopt(tx: &Transaction<'_>, first_migration: &str) -> StoreResult<AdoptionReport> {
    let mut report = AdoptionReport::default();
    let before = count_rows(tx).await?;
    report.indexes_replaced = set_aside(tx).await?;
    tx.batch_execute(first_migration).await?;
    copy_catalog(tx).await?;
    copy_runs(tx, &mut report).await?;
    reconcile_dependencies(tx, &mut report).await?;
    super::catalog::derive_required_datasets(tx).await?;
    report.update_set_conflicts = derive_update_set_keys(tx).await?;
    let legacy: Vec<String> = REFERENCE_TABLES
        .iter()
        .map(|t| format!("{LEGACY}{t}"))
        .collect();
    // One statement: the old tables reference each other. A view of the
    // operator's own on them makes this fail (and roll back) with PostgreSQL
    // naming the view.
    tx.batch_execute(&format!("DROP TABLE {}", legacy.join(", ")))
        .await?;
    let after = count_rows(tx).await?;
    report.tables = REFERENCE_TABLES
        .iter()
        .zip(before.iter().zip(after.iter()))
        .map(|(table, (b, a))| TableRows {
            table,
            before: *b,
            after: *a,
        })
        .collect();
    report.required_dataset_rows = tx
        .query_one("SELECT count(*) FROM metric_required_datasets", &[])
        .await?
        .get(0);
    Ok(report)
}

async fn count_rows(tx: &Transaction<'_>) -> StoreResult<Vec<i64>> {
    let sql = REFERENCE_TABLES
        .iter()
        .map(|t| format!("(SELECT count(*) FROM {t})"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = tx.query_one(&format!("SELECT {sql}"), &[]).await?;
    Ok((0..REFERENCE_TABLES.len()).map(|i| row.get(i)).collect())
}

/// Renames the reference tables and their indexes (index names are global,
/// and ours reuse some of them) out of the way; returns the index names.
async fn set_aside(tx: &Transaction<'_>) -> StoreResult<Vec<String>> {
    let tables: Vec<&str> = REFERENCE_TABLES.to_vec();
    let indexes: Vec<String> = tx
        .query(
            "SELECT indexname::text FROM pg_indexes
              WHERE schemaname = current_schema() AND tablename = ANY($1) ORDER BY 1",
            &[&tables],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Constraint names are chosen unique in the schema too: without this our
    // tables' foreign keys and checks would get other names than on a
    // migrated database.
    let constraints: Vec<(String, String)> = tx
        .query(
            "SELECT conrelid::regclass::text, conname::text FROM pg_constraint
              WHERE conrelid = ANY(SELECT to_regclass(t) FROM unnest($1::text[]) t)
                AND contype IN ('c', 'f') ORDER BY 1, 2",
            &[&tables],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut sql = String::new();
    for (table, c) in &constraints {
        let renamed: String = format!("{LEGACY}{c}").chars().take(63).collect();
        sql.push_str(&format!(
            "ALTER TABLE {table} RENAME CONSTRAINT {} TO {};\n",
            quote(c),
            quote(&renamed)
        ));
    }
    for i in &indexes {
        let renamed: String = format!("{LEGACY}{i}").chars().take(63).collect();
        sql.push_str(&format!(
            "ALTER INDEX {} RENAME TO {};\n",
            quote(i),
            quote(&renamed)
        ));
    }
    for t in REFERENCE_TABLES {
        sql.push_str(&format!("ALTER TABLE {t} RENAME TO {LEGACY}{t};\n"));
    }
    tx.batch_execute(&sql).await?;
    Ok(indexes)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// The catalog and the update history: the same columns, our defaults for
/// the columns the reference does not have.
async fn copy_catalog(tx: &Transaction<'_>) -> StoreResult<()> {
    tx.batch_execute(
        "INSERT INTO datasets (id, name, description, bucket, created_at, updated_at)
         SELECT id, name, description, bucket, created_at, updated_at FROM adopt_legacy_datasets;
         INSERT INTO series (code, name, description, unit, frequency, created_at, updated_at)
         SELECT code, name, description, unit, frequency, created_at, updated_at FROM adopt_legacy_series;
         INSERT INTO dataset_series (dataset_id, series_code, created_at)
         SELECT dataset_id, series_code, created_at FROM adopt_legacy_dataset_series;
         INSERT INTO metrics (id, code, expression_type, expression_json, frequency, unit,
                              description, created_at, updated_at)
         SELECT id, code, expression_type, expression_json, frequency, unit,
                description, created_at, updated_at FROM adopt_legacy_metrics;
         INSERT INTO metric_dependencies (metric_id, series_code, created_at)
         SELECT metric_id, series_code, created_at FROM adopt_legacy_metric_dependencies;
         INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path,
                                      bucket, event_key, created_at)
         SELECT id, dataset_id, version_manifest_path, projections_path, bucket, event_key, created_at
           FROM adopt_legacy_dataset_updates;
         INSERT INTO event_log (event_key, event_type, event_payload, processed_at, run_id, created_at)
         SELECT event_key, event_type, event_payload, processed_at, run_id, created_at
           FROM adopt_legacy_event_log;",
    )
    .await?;
    Ok(())
}

/// Runs, what pending runs wait for, and the updates runs used.
async fn copy_runs(tx: &Transaction<'_>, report: &mut AdoptionReport) -> StoreResult<()> {
    // The reference opens a new pending run for every update and keeps the
    // older ones: the newest stays open (our one-pending-run rule), the others
    // are canceled with the reason. Its `requested_at` is the creation time:
    // it becomes `created_at`, and stays the request time only for runs it
    // did publish (its `queued` is our `dispatched`). Open requested runs are
    // timed from adoption: the fleet first hears of them now.
    tx.batch_execute(
        "CREATE TEMP TABLE adopt_runs ON COMMIT DROP AS
         SELECT r.*,
                r.status = 'pending_dependencies'
                  AND r.id <> first_value(r.id) OVER (
                        PARTITION BY r.metric_id, r.status = 'pending_dependencies'
                        ORDER BY r.requested_at DESC, r.id DESC) AS superseded,
                first_value(r.id) OVER (
                        PARTITION BY r.metric_id, r.status = 'pending_dependencies'
                        ORDER BY r.requested_at DESC, r.id DESC) AS newest_pending
           FROM adopt_legacy_metric_runs r;
         INSERT INTO metric_runs (id, metric_id, metric_code, status, created_at, requested_at,
                                  dispatched_at, started_at, finished_at, last_heartbeat_at, error,
                                  version_ts, manifest_path, row_count, last_contact_at)
         SELECT id, metric_id, metric_code,
                CASE WHEN superseded THEN 'canceled'
                     WHEN status = 'queued' THEN 'dispatched'
                     ELSE status END,
                requested_at,
                CASE WHEN status = 'pending_dependencies' THEN NULL ELSE requested_at END,
                CASE WHEN status IN ('queued', 'dispatched', 'running', 'succeeded', 'failed', 'timed_out')
                     THEN requested_at END,
                started_at,
                CASE WHEN superseded THEN now() ELSE finished_at END,
                last_heartbeat_at,
                CASE WHEN superseded
                     THEN 'canceled when this database was adopted: superseded by the newer pending run '
                          || newest_pending || ' (one pending run per metric)'
                     ELSE error END,
                version_ts, manifest_path,
                CASE WHEN row_count >= 0 THEN row_count END,
                CASE WHEN status IN ('queued', 'dispatched', 'running') THEN now()
                     ELSE COALESCE(last_heartbeat_at, started_at, requested_at) END
           FROM adopt_runs;
         INSERT INTO metric_run_pending_datasets (run_id, dataset_id, required_days, received,
                                                  received_update_id, received_at, created_at)
         SELECT p.run_id, p.dataset_id, GREATEST(p.required_days, 0),
                p.received_update_id IS NOT NULL, p.received_update_id,
                -- Freshness is judged on the update's own time.
                CASE WHEN p.received_update_id IS NOT NULL THEN COALESCE(u.created_at, p.received_at) END,
                p.created_at
           FROM adopt_legacy_metric_run_pending_datasets p
           LEFT JOIN adopt_legacy_dataset_updates u ON u.id = p.received_update_id;
         INSERT INTO run_dataset_updates (run_id, dataset_update_id, created_at)
         SELECT run_id, dataset_update_id, created_at FROM adopt_legacy_run_dataset_updates;",
    )
    .await?;
    report.superseded_pending_runs = tx
        .query(
            "SELECT id::text FROM adopt_runs WHERE superseded ORDER BY metric_code, requested_at, id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let counts = tx
        .query_one(
            "SELECT (SELECT count(*) FROM adopt_runs WHERE status = 'queued'),
                    (SELECT count(*) FROM adopt_runs WHERE row_count < 0),
                    (SELECT count(*) FROM adopt_legacy_metric_run_pending_datasets
                      WHERE received <> (received_update_id IS NOT NULL))",
            &[],
        )
        .await?;
    report.queued_to_dispatched = counts.get(0);
    report.negative_row_counts_cleared = counts.get(1);
    report.received_flags_fixed = counts.get(2);
    Ok(())
}

/// Compares every metric's dependency rows with its expression; adds the
/// missing ones (registering unknown series), keeps the extra ones.
async fn reconcile_dependencies(
    tx: &Transaction<'_>,
    report: &mut AdoptionReport,
) -> StoreResult<()> {
    let metrics = tx
        .query(
            "SELECT id, code, expression_type, expression_json FROM metrics ORDER BY code",
            &[],
        )
        .await?;
    let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in tx
        .query(
            "SELECT metric_id, series_code FROM metric_dependencies",
            &[],
        )
        .await?
    {
        written.entry(r.get(0)).or_default().insert(r.get(1));
    }
    let (mut add_metric, mut add_series) = (Vec::<String>::new(), Vec::<String>::new());
    for m in &metrics {
        let id: String = m.get(0);
        let json: Value = m.get(3);
        let mine = written.remove(&id).unwrap_or_default();
        let check = check_dependencies(m.get(1), m.get(2), &json, &mine);
        for s in &check.missing {
            add_metric.push(id.clone());
            add_series.push(s.clone());
        }
        report.dependencies.push(check);
    }
    report.series_registered = tx
        .query(
            "INSERT INTO series (code) SELECT DISTINCT s FROM unnest($1::text[]) s
             ON CONFLICT (code) DO NOTHING RETURNING code",
            &[&add_series],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    report.series_registered.sort();
    tx.execute(
        "INSERT INTO metric_dependencies (metric_id, series_code)
         SELECT * FROM unnest($1::text[], $2::text[])",
        &[&add_metric, &add_series],
    )
    .await?;
    Ok(())
}

/// The update-set key of every run that used updates (the same digest the
/// projection-update path writes: the first 16 bytes of the SHA-256 of the
/// sorted ids joined by commas); only the newest run of a metric and set
/// keeps it. Returns the runs left without one.
async fn derive_update_set_keys(tx: &Transaction<'_>) -> StoreResult<Vec<String>> {
    let rows = tx
        .query(
            "WITH keys AS (
                 SELECT run_id,
                        encode(substr(sha256(convert_to(
                            string_agg(dataset_update_id, ',' ORDER BY dataset_update_id), 'UTF8')), 1, 16), 'hex') AS k
                   FROM run_dataset_updates GROUP BY run_id),
             ranked AS (
                 SELECT r.id, k.k, row_number() OVER (
                            PARTITION BY r.metric_id, k.k ORDER BY r.created_at DESC, r.id DESC) AS n
                   FROM metric_runs r JOIN keys k ON k.run_id = r.id),
             kept AS (
                 UPDATE metric_runs r SET update_set_key = ranked.k::uuid
                   FROM ranked WHERE ranked.id = r.id AND ranked.n = 1)
             SELECT id FROM ranked WHERE n > 1 ORDER BY id",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
