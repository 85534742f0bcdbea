//! `loadgen bench-backfill`: a backfill of 10,000 points (docs/semantics.md,
//! "Backfills") beside live projection updates. One metric reads two
//! datasets updated every hour for `--points` hours, and has a live run
//! every other hour (half its points are current, half stale). Times the
//! plan (dry run) and the create, then requests the points as the workers
//! do (`app::backfill_run::advance` every `TICK`, `--max-in-flight` at once)
//! while a stand-in runner completes each run `--run-ms` after its request,
//! and projection updates of scenario A's catalog arrive at a fixed rate: their
//! latency before the backfill and during it, and the backfill's rate
//! against the bound its runners set (max in flight / run time).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chrono::Utc;
use clap::Args;
use orchestrator_core::app::backfill::{self, Create};
use orchestrator_core::app::backfill_run::advance;
use orchestrator_core::app::{catalog_apply, lifecycle, projection_update, Context};
use orchestrator_core::domain::backfill::{self as rules, Asked};
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use serde_json::json;

use crate::live_stream::{pct, update, updates_at};
use crate::ServerArgs;

#[derive(Args)]
pub struct BenchBackfillArgs {
    /// Points of the backfill (hours of history).
    #[arg(long, default_value_t = 10_000)]
    points: i64,
    /// Its runs at once.
    #[arg(long, default_value_t = 100)]
    max_in_flight: i64,
    /// Which points it computes (`all`: every one; `stale`: the half the
    /// live runs did not compute with their moment's inputs).
    #[arg(long, default_value = "all")]
    reprocess: String,
    /// How long the stand-in runner takes per run.
    #[arg(long, default_value_t = 500)]
    run_ms: u64,
    /// Projection updates per second, before and during.
    #[arg(long, default_value_t = 20)]
    update_rate: u32,
    /// Seconds of updates before the backfill (the baseline).
    #[arg(long, default_value_t = 20)]
    baseline_secs: u64,
    #[command(flatten)]
    db: ServerArgs,
}

/// Two datasets updated at :10 every hour for `hours`; a live run of the
/// metric at :20 every other hour with that hour's updates.
async fn history(db: &TestDb, hours: i64) -> Result<()> {
    db.exec(&format!(
        "INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, bucket, event_key, created_at)
         SELECT d || '-' || h, d, d || '/h' || h || '/manifest.json', d || '/h' || h || '/p/', 'b', d || '-' || h,
                date_trunc('hour', now()) - make_interval(hours => h) + interval '10 minutes'
           FROM unnest(ARRAY['bf_a', 'bf_b']) AS d, generate_series(1, {hours}) AS h;
         INSERT INTO metric_runs (id, metric_id, metric_code, status, attempt, created_at, requested_at, finished_at,
                                  definition_version)
         SELECT 'live-' || h, 'bf-m', 'bf.target', 'succeeded', 1,
                date_trunc('hour', now()) - make_interval(hours => h) + interval '20 minutes',
                date_trunc('hour', now()) - make_interval(hours => h) + interval '20 minutes',
                date_trunc('hour', now()) - make_interval(hours => h) + interval '21 minutes', 1
           FROM generate_series(2, {hours}, 2) AS h;
         INSERT INTO run_extra_inputs (run_id, dataset_update_id)
         SELECT 'live-' || h, d || '-' || h FROM unnest(ARRAY['bf_a', 'bf_b']) AS d, generate_series(2, {hours}, 2) AS h;
         ANALYZE"
    ))
    .await;
    Ok(())
}

/// Completes every backfill run requested at least `after` ago, as a
/// runner would; how many.
async fn runner(ctx: &Context, after: Duration) -> Result<usize> {
    let due: Vec<String> = ctx
        .pool
        .get()
        .await?
        .query(
            "SELECT id FROM metric_runs WHERE backfill_id IS NOT NULL AND status = 'queued'
                AND requested_at <= now() - make_interval(secs => $1)",
            &[&after.as_secs_f64()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &due {
        let ev = orchestrator_tests::fixtures::completed_event(id, true, None);
        lifecycle::handle(ctx, &ev, &json!({"runId": id})).await?;
    }
    Ok(due.len())
}

/// Plans (dry run) or creates the backfill; what it made and how long it took.
async fn make(
    pool: &orchestrator_core::store::Pool,
    asked: &Asked<'_>,
    dry_run: bool,
) -> Result<(backfill::Created, f64)> {
    let request = rules::request(asked, Utc::now()).map_err(anyhow::Error::msg)?;
    let t = Instant::now();
    let made = backfill::create(
        pool,
        &Create {
            request,
            key: None,
            by: Some("bench"),
            reason: None,
            dry_run,
        },
    )
    .await?;
    Ok((made, t.elapsed().as_secs_f64() * 1e3))
}

pub async fn run(args: BenchBackfillArgs) -> Result<()> {
    let shape = Shape::SCENARIO_A;
    let db = TestDb::create(&args.db.database_url, "bench_backfill").await?;
    let mut catalog = synth::catalog(shape);
    let mut push = |key: &str, v: serde_json::Value| -> Result<()> {
        catalog[key]
            .as_array_mut()
            .ok_or_else(|| anyhow!("{key}"))
            .map(|a| a.push(v))
    };
    push("datasets", json!({"id": "bf_a", "series": ["BF_A"]}))?;
    push("datasets", json!({"id": "bf_b", "series": ["BF_B"]}))?;
    push("series", json!({"code": "BF_A"}))?;
    push("series", json!({"code": "BF_B"}))?;
    push(
        "metrics",
        json!({"id": "bf-m", "code": "bf.target", "expression_type": "series_math",
               "expression_json": {"op": "ratio", "left": {"seriesCode": "BF_A"}, "right": {"seriesCode": "BF_B"}}}),
    )?;
    catalog_apply::apply(&db.pool, &catalog).await?;
    history(&db, args.points + 1).await?;
    let ctx = db.ctx();
    for d in 0..shape.datasets {
        projection_update::process(&ctx, &update(d, 0)).await?;
    }
    println!(
        "catalog: scenario A ({} datasets, {} metrics) and bf.target over 2 datasets with {} hourly updates each and {} live runs",
        shape.datasets,
        shape.metrics,
        args.points + 1,
        (args.points + 1) / 2
    );

    let from = format!("{}h", args.points);
    let to = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let asked = Asked {
        metrics: vec!["bf.target"],
        from: &from,
        to: &to,
        points: Some("0 * * * *"),
        reprocess: Some(&args.reprocess),
        max_in_flight: Some(args.max_in_flight),
        ..Default::default()
    };
    let mut plan_ms = Vec::new();
    let mut plan = None;
    for _ in 0..3 {
        let (p, ms) = make(&db.pool, &asked, true).await?;
        plan_ms.push(ms);
        plan = Some(p);
    }
    let plan = plan.ok_or_else(|| anyhow!("no plan"))?.plan;
    println!(
        "plan (dry run, 3 times): median {:.0} ms for {} points ({:?}), {} to compute",
        pct(&mut plan_ms, 0.5),
        plan.points.len(),
        plan.found,
        plan.selected
    );

    let mut before = updates_at(&ctx, args.update_rate, shape.datasets, 1, {
        let end = Instant::now() + Duration::from_secs(args.baseline_secs);
        move || Instant::now() >= end
    })
    .await?;

    let (made, create_ms) = make(&db.pool, &asked, false).await?;
    let client = db.pool.get().await?;
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        )
        .await?;
    let id = made.id.ok_or_else(|| anyhow!("no backfill written"))?;
    println!("create (plan and write): {create_ms:.0} ms, backfill {id}");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The stand-in runner, on its own: completes each run `--run-ms` after
    // its request, looking every 100 ms.
    let runner_ctx = db.ctx();
    let run_for = Duration::from_millis(args.run_ms);
    let runner_done = done.clone();
    let runner_task = tokio::spawn(async move {
        while !runner_done.load(std::sync::atomic::Ordering::SeqCst) {
            runner(&runner_ctx, run_for).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    });
    let flag = done.clone();
    let work_ctx = db.ctx();
    let selected = made.plan.selected;
    let working = tokio::spawn(async move {
        let started = Instant::now();
        let (mut requested, mut ticks) = (0usize, 0u32);
        let mut tick_ms = Vec::new();
        loop {
            let tick = Instant::now();
            let a = advance(&work_ctx, 16).await?;
            tick_ms.push(tick.elapsed().as_secs_f64() * 1e3);
            requested += a.requested.len();
            ticks += 1;
            if !a.finished.is_empty() {
                break;
            }
            tokio::time::sleep_until((tick + orchestrator_core::app::backfill_run::TICK).into())
                .await;
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        anyhow::Ok((started.elapsed().as_secs_f64(), requested, tick_ms, ticks))
    });
    let mut during = updates_at(&ctx, args.update_rate, shape.datasets, 1_000_000, || {
        done.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await?;
    let (secs, requested, mut tick_ms, ticks) = working.await??;
    runner_task.await??;
    let bound = args.max_in_flight as f64 / (args.run_ms as f64 / 1e3);
    println!(
        "execution: {requested} of {selected} points requested and completed in {secs:.1} s: {:.0} a second against the runners' bound of {bound:.0} ({} at once, {} ms each); {ticks} ticks of the worker's advance: p50 {:.0} ms, max {:.0} ms",
        requested as f64 / secs.max(1e-9),
        args.max_in_flight,
        args.run_ms,
        pct(&mut tick_ms, 0.5),
        pct(&mut tick_ms, 1.0)
    );
    // Where the database's time went meanwhile: the busiest statements.
    let top = client
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)
               FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
              ORDER BY total_exec_time DESC LIMIT 8",
            &[],
        )
        .await?;
    println!("busiest statements during the execution (pg_stat_statements):");
    for r in &top {
        println!(
            "  {:>8} calls {:>9.0} ms total {:>7.2} ms mean  {}",
            r.get::<_, i64>(0),
            r.get::<_, f64>(1),
            r.get::<_, f64>(2),
            r.get::<_, String>(3)
        );
    }
    println!(
        "projection updates at {}/s without a backfill: {}",
        args.update_rate,
        before.latency()
    );
    println!(
        "projection updates at {}/s during it: {}",
        args.update_rate,
        during.latency()
    );
    Ok(())
}
