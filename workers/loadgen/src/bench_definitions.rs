//! `loadgen bench-definitions`: a definition change applied to every metric
//! of a large catalog at once (docs/semantics.md, "Definition versions").
//! Every metric has `on_change: rerun` and fresh inputs, so every change
//! requests a run. Times the `catalog apply` that makes the versions, then
//! acts on the changes as a worker does (`app::definition_changes::drain`,
//! `--per-sec` a second) while projection updates arrive at a fixed rate,
//! and compares their latency with the same stream before the change. With
//! `--burst` the changes are acted on in one batch instead: the burst the
//! bound avoids.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Args;
use orchestrator_core::app::definition_changes::drain;
use orchestrator_core::app::{catalog_apply, projection_update};
use orchestrator_core::store::definitions;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

use crate::live_stream::{update, updates_at, Stream};
use crate::ServerArgs;

#[derive(Args)]
pub struct BenchDefinitionsArgs {
    /// Metrics in the catalog, every one changed at once.
    #[arg(long, default_value_t = 10_000)]
    metrics: usize,
    /// Datasets feeding them.
    #[arg(long, default_value_t = 500)]
    datasets: usize,
    /// Changes acted on per second (the workers' DEFINITION_CHANGES_PER_SEC).
    #[arg(long, default_value_t = orchestrator_core::workers::DEFINITION_CHANGES_PER_SEC)]
    per_sec: u32,
    /// Projection updates per second, before and during.
    #[arg(long, default_value_t = 20)]
    update_rate: u32,
    /// Seconds of updates before the change (the baseline).
    #[arg(long, default_value_t = 20)]
    baseline_secs: u64,
    /// Act on every change in one batch (no bound).
    #[arg(long)]
    burst: bool,
    #[command(flatten)]
    db: ServerArgs,
}

/// Every metric's expression with a `scale` it did not have (or another).
fn changed(catalog: &Value, scale: i64) -> Result<Value> {
    let mut c = catalog.clone();
    for m in c["metrics"].as_array_mut().ok_or(anyhow!("metrics"))? {
        m["on_change"] = json!("rerun");
        if let Some(e) = m["expression_json"].as_object_mut() {
            e.insert("scale".into(), json!(scale));
        }
    }
    Ok(c)
}

/// The latency and what was deferred.
fn say(s: &mut Stream) -> String {
    format!(
        "{}; {} of {} dependent metrics deferred to the backlog (held by another transaction)",
        s.latency(),
        s.deferred,
        s.dependents
    )
}

pub async fn run(args: BenchDefinitionsArgs) -> Result<()> {
    let shape = Shape {
        datasets: args.datasets,
        metrics: args.metrics,
        ..Shape::SCENARIO_A
    };
    let db = TestDb::create(&args.db.database_url, "bench_definitions").await?;
    let base = changed(&synth::catalog(shape), 100)?;
    catalog_apply::apply(&db.pool, &base).await?;
    let ctx = db.ctx();
    for d in 0..shape.datasets {
        projection_update::process(&ctx, &update(d, 0)).await?;
    }
    println!(
        "catalog: {} datasets, {} metrics with on_change: rerun, every input updated once",
        shape.datasets, shape.metrics
    );

    let baseline_end = Instant::now() + Duration::from_secs(args.baseline_secs);
    let mut before = updates_at(&ctx, args.update_rate, shape.datasets, 1, || {
        Instant::now() >= baseline_end
    })
    .await?;

    let t = Instant::now();
    let report = catalog_apply::apply_as(&db.pool, &changed(&base, 1000)?, Some("bench")).await?;
    let apply_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "catalog apply: {apply_ms:.0} ms, {} definition versions written",
        report.definitions.len()
    );

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let drain_ctx = db.ctx();
    let (per_tick, burst) = (
        if args.burst {
            args.metrics as i64
        } else {
            i64::from(args.per_sec)
        },
        args.burst,
    );
    let flag = done.clone();
    let acting = tokio::spawn(async move {
        let started = Instant::now();
        let (mut requested, mut ticks, mut longest) = (0usize, 0u32, 0f64);
        loop {
            let tick = Instant::now();
            let r = drain(&drain_ctx, per_tick).await?;
            longest = longest.max(tick.elapsed().as_secs_f64() * 1e3);
            requested += r.requested.len();
            ticks += 1;
            if r.done + r.later == 0 {
                break;
            }
            if !burst {
                tokio::time::sleep_until((tick + Duration::from_secs(1)).into()).await;
            }
        }
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        anyhow::Ok((started.elapsed().as_secs_f64(), requested, ticks, longest))
    });
    let mut during = updates_at(&ctx, args.update_rate, shape.datasets, 1_000_000, || {
        done.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await?;
    let (secs, requested, ticks, longest) = acting.await??;
    let left = definitions::waiting(&db.pool.get().await?).await?;
    println!(
        "acting on the changes ({}): {secs:.1} s, {requested} runs requested ({:.0} a second), {ticks} batches, longest batch {longest:.0} ms, {left} left",
        if args.burst {
            "one batch".to_string()
        } else {
            format!("{} a second", args.per_sec)
        },
        requested as f64 / secs.max(1e-9)
    );
    println!(
        "projection updates at {}/s before the change: {}",
        args.update_rate,
        say(&mut before)
    );
    println!(
        "projection updates at {}/s while acting on it: {}",
        args.update_rate,
        say(&mut during)
    );
    Ok(())
}
