//! `loadgen bench-scale`: what periodic work and the update path cost as
//! the catalog grows, at 5,000, 50,000 and 500,000 metrics in one run.
//!
//! The scenario (BENCHMARKS.md, "Cost at 500,000 metrics"): one dataset per
//! 100 metrics (5,000 datasets at 500,000), one series each, every dataset
//! expected hourly. Each metric reads one or two datasets: the first drawn
//! in proportion to the dataset's weight, a log-normal draw (`exp(1.2·z)`,
//! z standard normal) per dataset, so that fan-out per update is skewed
//! the same way at every size (median ≈ 50 dependents, p99 ≈ 800, the
//! hottest of 5,000 datasets ≈ 4,000); every other metric also reads a
//! second dataset drawn uniformly. Every metric warns at 2 h and fails at
//! 4 h without a success; every 20th (5%) has a settle window. Updates are
//! drawn uniformly over datasets (each publishes as often as the others).
//! It is written by SQL on the server (`generate_series`, chunks of 50,000
//! metrics), so the client's memory is flat at any size; `--keep` leaves
//! the databases (`bench_scale_<size>`), `--reuse` measures them again.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use orchestrator_core::app::freshness::sweep;
use orchestrator_core::app::{policy, projection_update};
use orchestrator_core::domain::events::ProjectionUpdate;
use orchestrator_tests::TestDb;

use crate::ServerArgs;

#[derive(Args)]
pub struct BenchScaleArgs {
    /// Catalog sizes, in metrics.
    #[arg(long, value_delimiter = ',', default_value = "5000,50000,500000")]
    sizes: Vec<usize>,
    /// Sweeps timed per kind and size.
    #[arg(long, default_value_t = 10)]
    sweeps: usize,
    /// Updates sent per size at the offered rate.
    #[arg(long, default_value_t = 200)]
    updates: usize,
    /// Offered update rate, per second.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Leave the databases in place (named `bench_scale_<size>`).
    #[arg(long)]
    keep: bool,
    /// Measure databases kept by an earlier `--keep` instead of seeding.
    #[arg(long)]
    reuse: bool,
    #[command(flatten)]
    db: ServerArgs,
}

/// Metrics per dataset.
const PER_DATASET: i64 = 100;
const CHUNK: i64 = 50_000;

/// A uniform draw in (0, 1) from a hash of `salt` and the SQL expression
/// `n`: deterministic, the same on every run.
fn unit(salt: &str, n: &str) -> String {
    format!("((('x' || substr(md5('{salt}' || {n}), 1, 8))::bit(32)::bigint + 0.5) / 4294967296.0)")
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

/// One size's figures, printed as a table row.
struct Row {
    metrics: usize,
    seed_s: f64,
    quiet_fresh: (f64, f64),
    quiet_policy: (f64, f64),
    one_percent: f64,
    judged: usize,
    update_p50: f64,
    update_p99: f64,
    /// p50, p99 and count of the updates with 50–150 dependents.
    band: (f64, f64, usize),
    db_mib: f64,
}

pub async fn run(args: BenchScaleArgs) -> Result<()> {
    if args.sizes.is_empty() || args.sweeps == 0 || args.updates == 0 || args.rate <= 0.0 {
        bail!("--sizes, --sweeps, --updates and --rate must be positive");
    }
    let mut rows = Vec::new();
    println!("| metrics | seed | quiet freshness sweep p50 / max | quiet policy sweep p50 / max | sweep, 1% due | update p50 / p99 | same, 50–150 dependents (n) | database |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for &size in &args.sizes {
        let name = format!("bench_scale_{size}");
        let started = Instant::now();
        let db = if args.reuse {
            TestDb::existing(&args.db.database_url, &name)
                .await
                .with_context(|| format!("no kept database {name}: run with --keep first"))?
        } else {
            let db = TestDb::create(&args.db.database_url, "bench_scale").await?;
            seed(&db, size as i64).await?;
            db
        };
        let seed_s = started.elapsed().as_secs_f64();
        eprintln!("{size} metrics: ready in {seed_s:.1} s");
        let row = measure(&db, size, seed_s, &args).await?;
        print_row(&row);
        rows.push(row);
        if args.keep && !args.reuse {
            let kept = db.keep();
            let client = tokio_postgres::connect(&args.db.database_url, tokio_postgres::NoTls)
                .await
                .context("connecting to rename the kept database")?;
            tokio::spawn(client.1);
            for sql in [
                format!("DROP DATABASE IF EXISTS {name}"),
                format!("ALTER DATABASE {kept} RENAME TO {name}"),
            ] {
                client
                    .0
                    .batch_execute(&sql)
                    .await
                    .with_context(|| format!("keeping the database: {sql}"))?;
            }
            eprintln!("kept as {name}");
        }
    }
    if let (Some(small), Some(big)) = (rows.first(), rows.last()) {
        println!(
            "ratios {} / {} metrics: quiet freshness sweep {:.2}, quiet policy sweep {:.2}, update p99 {:.2}, update p99 at 50-150 dependents {:.2}",
            big.metrics,
            small.metrics,
            big.quiet_fresh.0 / small.quiet_fresh.0,
            big.quiet_policy.0 / small.quiet_policy.0,
            big.update_p99 / small.update_p99,
            big.band.1 / small.band.1
        );
    }
    Ok(())
}

fn print_row(r: &Row) {
    println!(
        "| {} | {:.0} s | {:.2} / {:.2} ms | {:.2} / {:.2} ms | {:.1} ms ({} judged) | {:.1} / {:.1} ms | {:.1} / {:.1} ms ({}) | {:.0} MiB |",
        r.metrics,
        r.seed_s,
        r.quiet_fresh.0,
        r.quiet_fresh.1,
        r.quiet_policy.0,
        r.quiet_policy.1,
        r.one_percent,
        r.judged,
        r.update_p50,
        r.update_p99,
        r.band.0,
        r.band.1,
        r.band.2,
        r.db_mib
    );
}

/// Writes the scenario by SQL, in chunks.
async fn seed(db: &TestDb, metrics: i64) -> Result<()> {
    let datasets = (metrics / PER_DATASET).max(2);
    let (u1, u2) = (unit("z1", "d"), unit("z2", "d"));
    db.exec(&format!(
        "INSERT INTO series (code, frequency) SELECT 'sc' || d, 'daily' FROM generate_series(0, {datasets} - 1) d;
         INSERT INTO datasets (id, name, bucket, expected_every_secs, expectation_set_at)
           SELECT 'ds' || d, 'Dataset ' || d, 'bench-datasets', 3600, now() FROM generate_series(0, {datasets} - 1) d;
         INSERT INTO dataset_series (dataset_id, series_code) SELECT 'ds' || d, 'sc' || d FROM generate_series(0, {datasets} - 1) d;
         CREATE TABLE bench_weights AS
           SELECT d, exp(1.2 * sqrt(-2 * ln({u1})) * cos(2 * pi() * {u2})) AS w FROM generate_series(0, {datasets} - 1) d;
         CREATE TABLE bench_cumulative AS
           SELECT d, sum(w) OVER (ORDER BY d) / sum(w) OVER () AS hi FROM bench_weights;
         CREATE INDEX ON bench_cumulative (hi);"
    ))
    .await;
    let (ua, ub) = (unit("a", "i"), unit("b", "i"));
    let mut from = 0;
    while from < metrics {
        let to = (from + CHUNK).min(metrics) - 1;
        db.exec(&format!(
            "CREATE TEMP TABLE pick AS
               SELECT i, (SELECT c.d FROM bench_cumulative c WHERE c.hi >= {ua} ORDER BY c.hi LIMIT 1) AS a,
                      CASE WHEN i % 2 = 1 THEN floor({ub} * {datasets})::int END AS b
                 FROM generate_series({from}, {to}) i;
             UPDATE pick SET a = {datasets} - 1 WHERE a IS NULL;
             UPDATE pick SET b = NULL WHERE b = a;
             INSERT INTO metrics (id, code, expression_type, expression_json, required_days,
                                  max_age_warn_secs, max_age_fail_secs, expectation_set_at, trigger_policy)
               SELECT 'm' || lpad(i::text, 7, '0'), 'scale.m' || lpad(i::text, 7, '0'), 'composite',
                      jsonb_build_object('op', 'sum', 'operands',
                        CASE WHEN b IS NULL THEN jsonb_build_array(jsonb_build_object('seriesCode', 'sc' || a))
                             ELSE jsonb_build_array(jsonb_build_object('seriesCode', 'sc' || a),
                                                    jsonb_build_object('seriesCode', 'sc' || b)) END),
                      7, 7200, 14400, now(),
                      CASE WHEN i % 20 = 0 THEN '{{\"settle\": {{\"quiet\": 60, \"max_wait\": 600}}}}'::jsonb END
                 FROM pick;
             INSERT INTO metric_dependencies (metric_id, series_code)
               SELECT 'm' || lpad(i::text, 7, '0'), 'sc' || a FROM pick
               UNION ALL SELECT 'm' || lpad(i::text, 7, '0'), 'sc' || b FROM pick WHERE b IS NOT NULL;
             INSERT INTO metric_required_datasets (metric_id, dataset_id)
               SELECT 'm' || lpad(i::text, 7, '0'), 'ds' || a FROM pick
               UNION ALL SELECT 'm' || lpad(i::text, 7, '0'), 'ds' || b FROM pick WHERE b IS NOT NULL;
             DROP TABLE pick;"
        ))
        .await;
        from = to + 1;
        eprintln!("  seeded {from} / {metrics} metrics");
    }
    db.exec("DROP TABLE bench_cumulative, bench_weights").await;
    db.exec("VACUUM ANALYZE").await;
    let fan_out = db
        .strings(
            "SELECT percentile_disc(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY n)::text || ' max ' || max(n)
               FROM (SELECT count(*) AS n FROM metric_required_datasets GROUP BY dataset_id) f",
        )
        .await;
    eprintln!(
        "  fan-out per dataset (p50, p99) and max: {}",
        fan_out.join("")
    );
    Ok(())
}

async fn measure(db: &TestDb, size: usize, seed_s: f64, args: &BenchScaleArgs) -> Result<Row> {
    let ctx = db.ctx();
    // The first sweep judges everything (the catalog made it due); it is
    // the one that costs what exists.
    let t = Instant::now();
    let first = sweep(&ctx, None).await?;
    eprintln!(
        "  first sweep: {:.1} s, {} datasets and {} metrics judged",
        t.elapsed().as_secs_f64(),
        first.datasets,
        first.metrics
    );
    // That sweep wrote a state and a due row per entity: what autovacuum
    // then does, done here at once so that it does not share the two cores
    // with the updates timed next.
    for table in [
        "metric_freshness",
        "dataset_freshness",
        "freshness_due",
        "freshness_marks",
    ] {
        db.exec(&format!("VACUUM ANALYZE {table}")).await;
    }
    // Updates at a fixed offered rate, datasets drawn as the catalog's
    // first inputs are: the handler's own time (receipt to commit).
    let fan_out: std::collections::HashMap<String, i64> = db
        .strings("SELECT dataset_id || ' ' || count(*) FROM metric_required_datasets GROUP BY dataset_id")
        .await
        .iter()
        .filter_map(|l| {
            let (d, n) = l.split_once(' ')?;
            Some((d.to_string(), n.parse().ok()?))
        })
        .collect();
    let mut took = Vec::new();
    let mut banded = Vec::new();
    let gap = std::time::Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now();
    for n in 0..args.updates {
        let at = start + gap * n as u32;
        tokio::time::sleep_until(at.into()).await;
        let datasets = (size as i64 / PER_DATASET).max(2);
        let d = (n as i64 * 7_919) % datasets;
        let update = ProjectionUpdate {
            dataset_id: format!("ds{d}").into(),
            bucket: None,
            version_manifest_path: format!("ds{d}/v{n}-{}/manifest.json", unique()),
            projections_path: format!("ds{d}/v{n}/projections/"),
        };
        let t = Instant::now();
        projection_update::process(&ctx, &update).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        took.push(ms);
        // The same work at every size: updates of datasets with 50 to 150
        // dependents (the median band of the fan-out).
        if fan_out
            .get(&format!("ds{d}"))
            .is_some_and(|n| (50..=150).contains(n))
        {
            banded.push(ms);
        }
    }
    let (update_p50, update_p99, _) = stats(took);
    let banded_n = banded.len();
    let (band_p50, band_p99, _) = if banded.is_empty() {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        stats(banded)
    };
    // The updates' marks are taken by one sweep; then nothing is due. The
    // first sweep rewrote every due row: what autovacuum then does to the
    // two tables (migration V18 sets it to run after a few thousand dead
    // rows), done here at once rather than waited for.
    sweep(&ctx, None).await?;
    db.exec("VACUUM ANALYZE freshness_due").await;
    db.exec("VACUUM ANALYZE freshness_marks").await;
    let mut fresh = Vec::new();
    let mut policy_ms = Vec::new();
    for _ in 0..args.sweeps {
        let t = Instant::now();
        let r = sweep(&ctx, None).await?;
        fresh.push(t.elapsed().as_secs_f64() * 1e3);
        if r.metrics + r.datasets != 0 {
            bail!("a quiet sweep judged {} entities", r.metrics + r.datasets);
        }
        let t = Instant::now();
        policy::sweep(&ctx).await?;
        policy_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (fresh_p50, _, fresh_max) = stats(fresh);
    let (policy_p50, _, policy_max) = stats(policy_ms);
    // 1% of the metrics come due (their next deadline moved to now).
    db.exec(&format!(
        "UPDATE freshness_due SET due_at = now() - interval '1 second'
          WHERE kind = 'metric' AND entity_id IN
                (SELECT 'm' || lpad(i::text, 7, '0') FROM generate_series(0, {size} - 1, 100) i)"
    ))
    .await;
    let t = Instant::now();
    let r = sweep(&ctx, None).await?;
    let one_percent = t.elapsed().as_secs_f64() * 1e3;
    let db_mib = db
        .count("SELECT pg_database_size(current_database()) / 1048576")
        .await as f64;
    Ok(Row {
        metrics: size,
        seed_s,
        quiet_fresh: (fresh_p50, fresh_max),
        quiet_policy: (policy_p50, policy_max),
        one_percent,
        judged: r.metrics,
        update_p50,
        update_p99,
        band: (band_p50, band_p99, banded_n),
        db_mib,
    })
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_string()
}
