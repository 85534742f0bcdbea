//! `orchestrator soak`: the whole fleet (both workers and the simulated
//! runner, as processes) through LocalStack at a steady rate for a while,
//! sampling the workers' memory, then checking that nothing was lost:
//! every update in `event_log` once, the outbox drained, every requested run
//! ended, no metric with two pending runs, no two runs with one update set,
//! nothing dead-lettered.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use orchestrator_core::domain::synth::{self, Shape};
use orchestrator_core::workers::AwsClients;

use crate::bench_messaging::{queue_depth, send_all};
use crate::db::DbArgs;
use crate::proc::{memory_kib, sibling, Worker};
use crate::scratch;

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
    db: DbArgs,
}

const SHAPE: Shape = Shape {
    datasets: 10,
    series_per_dataset: 5,
    metrics: 50,
    seed: 11,
};

async fn count(db: &orchestrator_core::store::Pool, sql: &str) -> Result<i64> {
    Ok(db.get().await?.query_one(sql, &[]).await?.get(0))
}

pub async fn run(args: SoakArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let id = scratch::unique_id();
    let stack = scratch::stack(&aws, &format!("soak-{id}-"), &format!("soak-out-{id}")).await?;
    let scratch_db =
        scratch::ScratchDb::create(&args.db.database_url, &format!("soak_{id}"), SHAPE).await?;
    let (db, url) = (scratch_db.pool.clone(), scratch_db.url.clone());

    let mut env: Vec<(String, String)> = stack
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    env.extend([
        ("DATABASE_URL".into(), url.clone()),
        ("OPS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "warn".into()),
        ("LOG_FORMAT".into(), "json".into()),
    ]);
    let updates_worker = Worker::spawn(sibling("projection-update-worker")?, &[], &env)?;
    let lifecycle_worker = Worker::spawn(sibling("run-lifecycle-worker")?, &[], &env)?;
    let _runner = Worker::spawn(
        std::env::current_exe()?,
        &[
            "simulate-runner",
            "--duration-ms",
            "500",
            "--heartbeats",
            "1",
        ],
        &env,
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
    let mib = |pid: u32| memory_kib(pid, "VmRSS").map_or(f64::NAN, |k| k as f64 / 1024.0);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut next_sample = 0u64;
    let mut samples: Vec<(f64, f64)> = Vec::new();
    for (second, chunk) in updates.chunks(args.rate.max(1)).enumerate() {
        tick.tick().await;
        let bodies: Vec<String> = chunk.iter().map(|u| u.to_json().to_string()).collect();
        send_all(&aws, &stack.projection_updates_queue_url, &bodies).await?;
        if second as u64 >= next_sample {
            next_sample += args.sample_every;
            let processed = count(
                &db,
                "SELECT count(*) FROM event_log WHERE event_type = 'projection_update'",
            )
            .await?;
            let (u, l) = (mib(updates_worker.pid()), mib(lifecycle_worker.pid()));
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
        let processed = count(
            &db,
            "SELECT count(*) FROM event_log WHERE event_type = 'projection_update'",
        )
        .await?;
        let unpublished = count(
            &db,
            "SELECT count(*) FROM outbox WHERE published_at IS NULL",
        )
        .await?;
        let open = count(
            &db,
            "SELECT count(*) FROM metric_runs WHERE status IN ('queued', 'dispatched', 'running')",
        )
        .await?;
        if processed == total as i64 && unpublished == 0 && open == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("not settled after 5 minutes: {processed}/{total} processed, {unpublished} unpublished, {open} runs open");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (u, l) = (mib(updates_worker.pid()), mib(lifecycle_worker.pid()));
    samples.push((u, l));
    println!(
        "{:>6} {total:>9} {u:>10.1} {l:>10.1}  (settled)",
        started.elapsed().as_secs()
    );

    let checks = [
        ("updates in event_log", count(&db, "SELECT count(*) FROM event_log WHERE event_type = 'projection_update'").await?, total as i64),
        ("unpublished outbox rows", count(&db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await?, 0),
        ("runs left queued/dispatched/running", count(&db, "SELECT count(*) FROM metric_runs WHERE status IN ('queued', 'dispatched', 'running')").await?, 0),
        ("metrics with two pending runs", count(&db, "SELECT count(*) FROM (SELECT metric_id FROM metric_runs WHERE status = 'pending_dependencies' GROUP BY 1 HAVING count(*) > 1) x").await?, 0),
        ("runs of a metric sharing an update set", count(&db, "SELECT count(*) FROM (SELECT metric_id, update_set_key FROM metric_runs WHERE update_set_key IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) x").await?, 0),
        ("requested runs without a request", count(&db, "SELECT count(*) FROM metric_runs r WHERE requested_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.run_id = r.id)").await?, 0),
        ("dead letters (updates)", queue_depth(&aws, &stack.projection_updates_dlq_url).await?, 0),
        ("dead letters (lifecycle)", queue_depth(&aws, &stack.run_lifecycle_dlq_url).await?, 0),
    ];
    let runs = count(
        &db,
        "SELECT count(*) FROM metric_runs WHERE status = 'succeeded'",
    )
    .await?;
    println!("succeeded runs: {runs}");
    let mut failed = 0;
    for (what, got, want) in checks {
        let ok = got == want;
        failed += usize::from(!ok);
        println!(
            "{} {what}: {got} (expected {want})",
            if ok { "ok  " } else { "FAIL" }
        );
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
    scratch_db.drop_db().await?;
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}
