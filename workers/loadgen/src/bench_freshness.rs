//! `loadgen bench-freshness`: the freshness sweep at scale. Scenario B's
//! catalog (500 datasets, 50,000 metrics), every dataset expected hourly and
//! every metric within two hours, set three hours ago; half of the datasets
//! receive an update, so datasets are late and on time and metrics fail with
//! pending runs and blocking inputs. Times the first sweep (every state
//! written, the alerts queued) and the sweeps that find nothing new, then a
//! projection-update worker's peak RSS while it makes the first sweep itself.
//! With `--policy-percent N`, that share of the metrics also has a settle
//! window (docs/semantics.md, "Trigger policies"): the freshness sweeps run
//! with their timers in place, and the trigger-policy sweep is timed with
//! nothing due, then with every window due (the clock an hour ahead).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use std::sync::Arc;

use orchestrator_core::app::freshness::sweep;
use orchestrator_core::app::policy;
use orchestrator_core::app::{catalog_apply, projection_update};
use orchestrator_core::messaging::AwsClients;
use orchestrator_tests::aws::{unique_suffix, Stack};
use orchestrator_tests::process::Process;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use serde_json::json;

use crate::ServerArgs;

#[derive(Args)]
pub struct BenchFreshnessArgs {
    /// Metrics in the catalog (scenario B's 500 datasets feed them).
    #[arg(long, default_value_t = 50_000)]
    metrics: usize,
    /// Sweeps that find nothing new, timed after the first.
    #[arg(long, default_value_t = 5)]
    sweeps: usize,
    /// Also measure a worker's peak RSS while it sweeps (needs LocalStack).
    #[arg(long)]
    worker_rss: bool,
    /// Percent of the metrics (every k-th) with a settle window.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    policy_percent: u8,
    #[command(flatten)]
    db: ServerArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn run(args: BenchFreshnessArgs) -> Result<()> {
    let shape = Shape {
        metrics: args.metrics,
        ..Shape::SCENARIO_B
    };
    let db = TestDb::create(&args.db.database_url, "bench_freshness").await?;
    let mut catalog = synth::catalog(shape);
    for d in catalog["datasets"]
        .as_array_mut()
        .ok_or(anyhow!("datasets"))?
    {
        d["expected_every"] = json!("1h");
    }
    let every = (args.policy_percent > 0).then(|| 100 / usize::from(args.policy_percent));
    for (i, m) in catalog["metrics"]
        .as_array_mut()
        .ok_or(anyhow!("metrics"))?
        .iter_mut()
        .enumerate()
    {
        m["max_age"] = json!({"warn": "1h", "fail": "2h"});
        if every.is_some_and(|k| i % k == 0) {
            m["trigger"] = json!({"settle": {"quiet": "1m", "max_wait": "10m"}});
        }
    }
    catalog_apply::apply(&db.pool, &catalog).await?;
    db.exec(
        "UPDATE datasets SET expectation_set_at = now() - interval '3 hours';
         UPDATE metrics SET expectation_set_at = now() - interval '3 hours'",
    )
    .await;
    let ctx = db.ctx().with_alerts(true);
    for d in (0..shape.datasets).step_by(2) {
        let update = orchestrator_core::domain::events::ProjectionUpdate {
            dataset_id: synth::dataset_id(d).into(),
            bucket: None,
            version_manifest_path: format!("{}/v1/manifest.json", synth::dataset_id(d)),
            projections_path: format!("{}/v1/projections/", synth::dataset_id(d)),
        };
        projection_update::process(&ctx, &update).await?;
    }
    println!(
        "catalog: {} datasets, {} metrics, each with an expectation; {} datasets updated",
        shape.datasets,
        shape.metrics,
        shape.datasets.div_ceil(2)
    );

    let started = Instant::now();
    let first = sweep(&ctx, None).await?;
    let first_ms = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "first sweep: {first_ms:.0} ms; {} states written, {} alerts queued, {} datasets late, {} metrics failing",
        first.changed,
        first.outbox_ids.len(),
        first.late_datasets,
        first.failing_metrics
    );
    let mut quiet = Vec::new();
    for _ in 0..args.sweeps {
        let t = Instant::now();
        let r = sweep(&ctx, None).await?;
        quiet.push(t.elapsed().as_secs_f64() * 1e3);
        if r.changed != 0 {
            bail!("a sweep with nothing new wrote {} states", r.changed);
        }
    }
    println!(
        "sweeps finding nothing new: median {:.0} ms over {} (min {:.0}, max {:.0})",
        median(quiet.clone()),
        quiet.len(),
        quiet.iter().copied().fold(f64::INFINITY, f64::min),
        quiet.iter().copied().fold(0.0, f64::max)
    );
    if args.policy_percent > 0 {
        policy_sweeps(&db, &ctx).await?;
    }
    if args.worker_rss {
        worker_rss(&db).await?;
    }
    Ok(())
}

/// The trigger-policy sweep with nothing due, then with every settle
/// window due.
async fn policy_sweeps(db: &TestDb, ctx: &orchestrator_core::app::Context) -> Result<()> {
    let timed = db
        .count("SELECT count(*) FROM metric_run_timers WHERE decide_at IS NOT NULL")
        .await;
    let policies = db
        .count("SELECT count(*) FROM metrics WHERE trigger_policy IS NOT NULL")
        .await;
    let mut idle = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = policy::sweep(ctx).await?;
        idle.push(t.elapsed().as_secs_f64() * 1e3);
        if r.due != 0 {
            bail!("{} runs due before their time", r.due);
        }
    }
    println!(
        "policy sweep, {policies} metrics with a policy, {timed} runs settling, none due: median {:.1} ms over 5",
        median(idle)
    );
    let later = ctx
        .clone()
        .with_clock(Arc::new(|| chrono::Utc::now() + chrono::Duration::hours(1)));
    let t = Instant::now();
    let r = policy::sweep(&later).await?;
    println!(
        "policy sweep, every window due: {:.0} ms; {} due, {} claimed, {} runs requested",
        t.elapsed().as_secs_f64() * 1e3,
        r.due,
        r.claimed,
        r.evaluated.runs_queued
    );
    Ok(())
}

/// A projection-update worker, sweeping every second, makes the first sweep
/// (the states are forgotten first): its peak RSS once that is done.
async fn worker_rss(db: &TestDb) -> Result<()> {
    db.exec("DELETE FROM metric_freshness; DELETE FROM dataset_freshness")
        .await;
    let id = &unique_suffix()[..12];
    let stack = Stack::provision(
        AwsClients::from_env().await,
        &format!("bfresh-{id}-"),
        &format!("bfresh-out-{id}"),
        false,
    )
    .await?;
    let mut env = stack.env(db);
    env.extend([
        ("OPS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "warn".into()),
        ("FRESHNESS_SWEEP_SECS".into(), "1".into()),
    ]);
    let worker =
        Process::try_spawn("projection-update-worker", &env, &[]).map_err(|e| anyhow!(e))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let total = db.count("SELECT count(*) FROM metrics").await;
    while db.count("SELECT count(*) FROM metric_freshness").await < total {
        if Instant::now() > deadline {
            bail!("the worker did not sweep within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A few more sweeps that find nothing new.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let peak = worker
        .peak_rss_kib()
        .ok_or(anyhow!("no VmHWM for the worker"))?;
    println!(
        "projection-update-worker peak RSS through its first sweep and 5 s more: {:.1} MiB",
        peak as f64 / 1024.0
    );
    Ok(())
}
