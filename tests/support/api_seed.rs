//! A large operator history written straight into a migrated database, for
//! the API benchmark (`loadgen bench-api`): `datasets` datasets, `metrics`
//! metrics needing one to three of them, `runs_per_metric` finished runs per
//! metric (every tenth failed) with their updates, outbox rows (as
//! published) and one pending run, waiting for one dataset, on every
//! twentieth metric. Set-based SQL: a million runs in about a minute.

use crate::TestDb;

#[derive(Debug, Clone, Copy)]
pub struct Seed {
    pub datasets: i64,
    pub metrics: i64,
    pub runs_per_metric: i64,
    pub updates_per_dataset: i64,
}

pub async fn seed(db: &TestDb, s: Seed) -> anyhow::Result<()> {
    let client = db.pool.get().await?;
    let sql = format!(
        "
INSERT INTO datasets (id, name, bucket)
SELECT 'ds' || lpad(d::text, 5, '0'), 'Dataset ' || d, 'bucket' FROM generate_series(1, {datasets}) d;
INSERT INTO series (code) SELECT 'S' || lpad(d::text, 5, '0') FROM generate_series(1, {datasets}) d;
INSERT INTO dataset_series (dataset_id, series_code)
SELECT 'ds' || lpad(d::text, 5, '0'), 'S' || lpad(d::text, 5, '0') FROM generate_series(1, {datasets}) d;
-- Metric m needs datasets (m % D) + 1 and, for two thirds of them, the next one or two.
CREATE TEMP TABLE seed_req AS
SELECT m, ((m + k) % {datasets}) + 1 AS d
  FROM generate_series(1, {metrics}) m, generate_series(0, 2) k WHERE k <= m % 3;
INSERT INTO metrics (id, code, expression_type, expression_json)
SELECT 'mid' || lpad(m::text, 6, '0'), 'metric.' || lpad(m::text, 6, '0'), 'composite',
       jsonb_build_object('op', 'sum', 'operands',
           (SELECT jsonb_agg(jsonb_build_object('seriesCode', 'S' || lpad(r.d::text, 5, '0'))) FROM seed_req r WHERE r.m = g.m))
  FROM generate_series(1, {metrics}) AS g(m);
INSERT INTO metric_dependencies (metric_id, series_code)
SELECT 'mid' || lpad(m::text, 6, '0'), 'S' || lpad(d::text, 5, '0') FROM seed_req;
INSERT INTO metric_required_datasets (metric_id, dataset_id)
SELECT 'mid' || lpad(m::text, 6, '0'), 'ds' || lpad(d::text, 5, '0') FROM seed_req;
INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, bucket, event_key, created_at)
SELECT 'u-' || lpad(d::text, 5, '0') || '-' || lpad(v::text, 5, '0'), 'ds' || lpad(d::text, 5, '0'),
       'ds' || d || '/v' || v || '/manifest.json', 'ds' || d || '/v' || v || '/projections/', 'bucket',
       'ds' || lpad(d::text, 5, '0') || ':v' || v, now() - make_interval(hours => ({updates} - v))
  FROM generate_series(1, {datasets}) d, generate_series(1, {updates}) v;
-- Runs: ids sort by creation like UUID v7 (time first).
INSERT INTO metric_runs (id, metric_id, metric_code, status, created_at, requested_at, dispatched_at,
                         started_at, finished_at, last_contact_at, progress, error, row_count)
SELECT 'r-' || lpad(k::text, 4, '0') || '-' || lpad(m::text, 6, '0'), 'mid' || lpad(m::text, 6, '0'),
       'metric.' || lpad(m::text, 6, '0'),
       CASE WHEN (m + k) % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       t, t, t, t + interval '1 second', t + interval '30 seconds', t + interval '30 seconds', 100,
       CASE WHEN (m + k) % 10 = 0 THEN 'boom' END, 1000
  FROM generate_series(1, {metrics}) m, generate_series(1, {runs}) k,
       LATERAL (SELECT now() - make_interval(mins => ({runs} - k) * 60 + (m % 60))) AS x(t);
INSERT INTO run_extra_inputs (run_id, dataset_update_id)
SELECT 'r-' || lpad(k::text, 4, '0') || '-' || lpad(r.m::text, 6, '0'),
       'u-' || lpad(r.d::text, 5, '0') || '-' || lpad((1 + k % {updates})::text, 5, '0')
  FROM seed_req r, generate_series(1, {runs}) k;
INSERT INTO outbox_messages (run_id, metric_code, payload, created_at, published_at)
SELECT id, metric_code, jsonb_build_object('type', 'metric_run_requested', 'runId', id, 'metricCode', metric_code)::text,
       created_at, created_at
  FROM metric_runs;
-- Every twentieth metric waits for its first dataset.
INSERT INTO metric_runs (id, metric_id, metric_code, status, created_at)
SELECT 'r-9999-' || lpad(m::text, 6, '0'), 'mid' || lpad(m::text, 6, '0'), 'metric.' || lpad(m::text, 6, '0'),
       'pending_dependencies', now()
  FROM generate_series(20, {metrics}, 20) m;
INSERT INTO metric_run_pending_datasets (run_id, dataset_id, required_days, received, received_update_id, received_at)
SELECT 'r-9999-' || lpad(r.m::text, 6, '0'), 'ds' || lpad(r.d::text, 5, '0'), 7,
       r.d <> (r.m % {datasets}) + 1,
       CASE WHEN r.d <> (r.m % {datasets}) + 1 THEN 'u-' || lpad(r.d::text, 5, '0') || '-' || lpad({updates}::text, 5, '0') END,
       CASE WHEN r.d <> (r.m % {datasets}) + 1 THEN now() END
  FROM seed_req r WHERE r.m % 20 = 0;
DROP TABLE seed_req;",
        datasets = s.datasets,
        metrics = s.metrics,
        runs = s.runs_per_metric,
        updates = s.updates_per_dataset,
    );
    client.batch_execute(&sql).await?;
    // Its own statement: VACUUM cannot run inside a multi-statement string.
    client.batch_execute("VACUUM ANALYZE").await?;
    Ok(())
}
