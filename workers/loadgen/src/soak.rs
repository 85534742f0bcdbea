//! `loadgen soak`: the whole fleet (both workers and the simulated
//! runner, as processes) through LocalStack at a steady rate for a while,
//! sampling the workers' memory, then checking that nothing was lost:
//! every update in `event_log` once, the outbox drained, every requested run
//! ended, no metric with two pending runs, no two runs with one update set,
//! nothing dead-lettered.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use orchestrator_core::app::catalog_apply;
use orchestrator_core::domain::run_state::RunStatus;
use orchestrator_core::messaging::AwsClients;
use orchestrator_core::store::{stats, Pool};
use orchestrator_tests::aws::{unique_suffix, Stack};
use orchestrator_tests::fleet::SHAPE;
use orchestrator_tests::invariants::{invariant_checks, Check};
use orchestrator_tests::process::Process;
use orchestrator_tests::synth;
use orchestrator_tests::TestDb;

use crate::ServerArgs;

#[derive(Args)]
pub struct SoakArgs {
    /// How long to send for.
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Projection updates per second.
    #[arg(long, default_value_t = 10)]
    rate: usize,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 30)]
    sample_every: u64,
    #[command(flatten)]
    db: ServerArgs,
}

/// Runs not yet ended: requested and not finished.
const OPEN: [RunStatus; 3] = [RunStatus::Queued, RunStatus::Dispatched, RunStatus::Running];

pub async fn run(args: SoakArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let id = &unique_suffix()[..12];
    let stack = Stack::provision(
        aws,
        &format!("soak-{id}-"),
        &format!("soak-out-{id}"),
        false,
    )
    .await?;
    let scratch_db = TestDb::create(&args.db.database_url, "soak").await?;
    catalog_apply::apply(&scratch_db.pool, &synth::catalog(SHAPE)).await?;
    let db = scratch_db.pool.clone();

    // The stack's worker environment, then the soak's settings.
    let mut env = stack.env(&scratch_db);
    env.extend([
        ("OPS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "warn".into()),
        ("LOG_FORMAT".into(), "json".into()),
    ]);
    let spawn =
        |name: &str, args: &[&str]| Process::try_spawn(name, &env, args).map_err(|e| anyhow!(e));
    let updates_worker = spawn("projection-update-worker", &[])?;
    let lifecycle_worker = spawn("run-lifecycle-worker", &[])?;
    let _runner = spawn(
        "orchestrator",
        &[
            "simulate-runner",
            "--duration-ms",
            "500",
            "--heartbeats",
            "1",
        ],
    )?;

    let total = args.secs as usize * args.rate;
    let updates = synth::updates(SHAPE, total);
    println!(
        "soak: {total} updates at {}/s for {}s; memory (VmRSS, MiB) every {}s",
        args.rate, args.secs, args.sample_every
    );
    println!(
        "{:>6} {:>9} {:>10} {:>10}",
        "t (s)", "processed", "updates", "lifecycle"
    );
    let mib = |p: &Process| p.rss_kib().map_or(f64::NAN, |k| k as f64 / 1024.0);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_sample = 0u64;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for (second, chunk) in updates.chunks(args.rate.max(1)).enumerate() {
        tick.tick().await;
        let bodies: Vec<String> = chunk.iter().map(|u| u.to_json().to_string()).collect();
        stack
            .send_all(&stack.names.projection_updates_queue_url, &bodies)
            .await?;
        if second as u64 >= next_sample {
            next_sample += args.sample_every;
            let processed = stats::processed_updates(&db).await?;
            let (u, l) = (mib(&updates_worker), mib(&lifecycle_worker));
            samples.push((u, l));
            println!(
                "{:>6} {processed:>9} {u:>10.1} {l:>10.1}",
                started.elapsed().as_secs()
            );
        }
    }

    // Settle: everything processed, published and ended.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let processed = stats::processed_updates(&db).await?;
        let unpublished = stats::outbox_counts(&db).await?.unpublished;
        let open = stats::runs_in(&db, &OPEN).await?;
        if processed == total as i64 && unpublished == 0 && open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("not settled after 5 minutes: {processed}/{total} processed, {unpublished} unpublished, {open} runs open");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (u, l) = (mib(&updates_worker), mib(&lifecycle_worker));
    samples.push((u, l));
    println!(
        "{:>6} {total:>9} {u:>10.1} {l:>10.1}  (settled)",
        started.elapsed().as_secs()
    );

    let checks = no_loss(&db, &stack, total as i64).await?;
    let runs = stats::runs_in(&db, &[RunStatus::Succeeded]).await?;
    println!("succeeded runs: {runs}");
    let mut failed = 0;
    for check in &checks {
        failed += usize::from(!check.ok());
        println!("{check}");
    }
    let first = samples
        .get(1)
        .or(samples.first())
        .copied()
        .unwrap_or_default();
    let last = samples.last().copied().unwrap_or_default();
    println!(
        "memory, first sample after start-up → end: projection-update-worker {:.1} → {:.1} MiB, run-lifecycle-worker {:.1} → {:.1} MiB",
        first.0, last.0, first.1, last.1
    );
    drop(updates_worker);
    drop(lifecycle_worker);
    drop(scratch_db);
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

/// Everything processed once, published and ended; the projection-update
/// invariants; nothing dead-lettered.
async fn no_loss(db: &Pool, stack: &Stack, sent: i64) -> Result<Vec<Check>> {
    let mut checks = vec![
        Check::new(
            "updates in event_log",
            stats::processed_updates(db).await?,
            sent,
        ),
        Check::new(
            "unpublished outbox rows",
            stats::outbox_counts(db).await?.unpublished,
            0,
        ),
        Check::new(
            "runs left queued/dispatched/running",
            stats::runs_in(db, &OPEN).await?,
            0,
        ),
    ];
    checks.extend(invariant_checks(db).await?);
    for (what, dlq) in [
        (
            "dead letters (updates)",
            &stack.names.projection_updates_dlq_url,
        ),
        (
            "dead letters (lifecycle)",
            &stack.names.run_lifecycle_dlq_url,
        ),
    ] {
        checks.push(Check::new(what, stack.total_depth(dlq).await?, 0));
    }
    Ok(checks)
}
