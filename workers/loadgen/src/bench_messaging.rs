//! `loadgen bench-messaging`: the projection-update worker through
//! LocalStack. In one run, on a fresh database and uniquely named resources:
//! 1. drain rate of N queued scenario-A updates by the real worker binary,
//!    against a do-nothing consumer (the same SQS runtime, receive + delete
//!    only) draining N messages from the same LocalStack;
//! 2. latency from SendMessage to the first run request that uses the update,
//!    on the run-requests queue, at a steady rate;
//! 3. the worker's peak RSS (VmHWM) over both.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use orchestrator_core::app::catalog_apply;
use orchestrator_core::messaging::sqs::{
    Consumer, ConsumerConfig, Handler, HandlerError, InboundMessage, Outcome,
};
use orchestrator_core::messaging::AwsClients;
use orchestrator_core::store::stats;
use orchestrator_tests::aws::{unique_suffix, Stack};
use orchestrator_tests::process::Process;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use tokio_util::sync::CancellationToken;

use crate::bench_latency;
use crate::ServerArgs;

#[derive(Args)]
pub struct BenchMessagingArgs {
    /// Queued updates for the drain measurement.
    #[arg(long, default_value_t = 2000)]
    updates: usize,
    /// Steady rate for the latency measurement (updates/s).
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Duration of the latency measurement.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Messages for the broker-ceiling measurement.
    #[arg(long, default_value_t = 5000)]
    ceiling_messages: usize,
    /// WORKER_CONCURRENCY of the worker and of the do-nothing consumer.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// A server where the user may create databases.
    #[command(flatten)]
    db: ServerArgs,
}

struct Nothing;

impl Handler for Nothing {
    async fn handle(&self, _: &InboundMessage) -> Result<Outcome, HandlerError> {
        Ok(Outcome::processed(""))
    }
}

pub async fn run(args: BenchMessagingArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let id = &unique_suffix()[..12];
    let bucket = format!("bench-out-{id}");
    let stack = Stack::provision(aws.clone(), &format!("bench-{id}-"), &bucket, false).await?;
    let noop = Stack::provision(aws.clone(), &format!("bench-noop-{id}-"), &bucket, false).await?;
    // A fresh database with the scenario-A catalog.
    let scratch_db = TestDb::create(&args.db.database_url, "bench_msg").await?;
    catalog_apply::apply(&scratch_db.pool, &synth::catalog(Shape::SCENARIO_A)).await?;
    let db = scratch_db.pool.clone();
    let updates: Vec<String> = synth::updates(Shape::SCENARIO_A, args.updates + 100_000)
        .iter()
        .map(|u| u.to_json().to_string())
        .collect();

    // 1a. Do-nothing consumer draining N messages.
    noop.send_all(
        &noop.names.projection_updates_queue_url,
        &updates[..args.updates],
    )
    .await?;
    let mut cfg = ConsumerConfig::new(&noop.names.projection_updates_queue_url);
    cfg.concurrency = args.concurrency;
    cfg.wait_time = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        Consumer::new(aws.sqs.clone(), aws.s3.clone(), cfg, Nothing).run(stop.clone()),
    );
    let started = Instant::now();
    while noop
        .total_depth(&noop.names.projection_updates_queue_url)
        .await?
        > 0
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noop_secs = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = consumer.await;

    // 1b. The worker draining N queued updates.
    stack
        .send_all(
            &stack.names.projection_updates_queue_url,
            &updates[..args.updates],
        )
        .await?;
    // The stack's worker environment, then this benchmark's settings.
    let mut env = stack.env(&scratch_db);
    env.extend([
        ("WORKER_CONCURRENCY".into(), args.concurrency.to_string()),
        ("OPS_ADDR".into(), "127.0.0.1:0".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    let worker =
        Process::try_spawn("projection-update-worker", &env, &[]).map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    loop {
        let n = stats::processed_updates(&db).await?;
        if n as usize >= args.updates {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the worker processed only {n} updates in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let worker_secs = started.elapsed().as_secs_f64();
    // Let the outbox drain, then empty the run-requests queue for the latency run.
    while stats::outbox_counts(&db).await?.unpublished > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let published = stats::outbox_counts(&db).await?.written;
    let publish_secs = started.elapsed().as_secs_f64();
    aws.sqs
        .purge_queue()
        .queue_url(&stack.names.run_requests_queue_url)
        .send()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. Latency at a steady rate: SendMessage → first run request using the update.
    let total = (args.rate * args.latency_secs as f64) as usize;
    let l = bench_latency::latencies(
        &aws,
        &stack.names.projection_updates_queue_url,
        &stack.names.run_requests_queue_url,
        updates[args.updates..args.updates + total].to_vec(),
        args.rate,
        Duration::from_secs(args.latency_secs + 30),
    )
    .await?;
    let rss = worker.peak_rss_kib();
    drop(worker);

    // 3. The broker's own ceiling for SNS → SQS, with run-request-sized bodies.
    let Some(sample) = stats::sample_request(&db).await? else {
        bail!("the worker published no run request");
    };
    aws.sqs
        .purge_queue()
        .queue_url(&noop.names.run_requests_queue_url)
        .send()
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ceiling = bench_latency::broker_ceiling(
        &noop,
        &noop.names.run_requests_topic_arn,
        &noop.names.run_requests_queue_url,
        args.ceiling_messages,
        &sample,
    )
    .await?;
    let pct = |p: f64| {
        l.get(((l.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "bench-messaging: {} updates, concurrency {}, LocalStack {}",
        args.updates,
        args.concurrency,
        std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "(AWS)".into())
    );
    println!(
        "do-nothing consumer: drained {} messages in {noop_secs:.2}s = {:.0} msg/s",
        args.updates,
        args.updates as f64 / noop_secs
    );
    println!(
        "projection-update worker: drained {} updates in {worker_secs:.2}s = {:.0} updates/s",
        args.updates,
        args.updates as f64 / worker_secs
    );
    println!(
        "run requests published during the drain: {published} in {publish_secs:.2}s = {:.0} msg/s; broker ceiling (do-nothing SNS PublishBatch -> SQS, {} messages): {ceiling:.0} msg/s",
        published as f64 / publish_secs,
        args.ceiling_messages
    );
    println!(
        "drain ratio worker / do-nothing = {:.2} (target >= 0.8)",
        noop_secs / worker_secs
    );
    println!(
        "latency SendMessage -> run request at {} updates/s: {} of {total} updates seen; p50 {:.1} ms, p99 {:.1} ms (target p99 < 100 ms)",
        args.rate,
        l.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3
    );
    match rss {
        Some(kib) => println!(
            "worker peak RSS (VmHWM): {:.1} MiB (target < 64 MiB)",
            kib as f64 / 1024.0
        ),
        None => println!("worker peak RSS: not available (no /proc)"),
    }
    drop(scratch_db);
    Ok(())
}
