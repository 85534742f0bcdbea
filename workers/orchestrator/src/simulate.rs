//! `orchestrator simulate-runner`: a stand-in metric runner. Reads run
//! requests from the queue subscribed to the run-requests topic and, for each,
//! emits started, heartbeats and completed on the run-lifecycle queue, after
//! a configurable duration and with a configurable share of failures.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_core::domain::events::parse_body;
use orchestrator_core::ground::shutdown;
use orchestrator_core::messaging::s3;
use orchestrator_core::messaging::AwsClients;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[derive(Args, Clone)]
pub struct SimulateArgs {
    /// Queue with the run requests (raw delivery or SNS envelopes).
    #[arg(long, env = "RUN_REQUESTS_QUEUE_URL")]
    requests_queue: String,
    /// Queue to report started / heartbeat / completed on.
    #[arg(long, env = "RUN_LIFECYCLE_QUEUE_URL")]
    lifecycle_queue: String,
    /// How long each run "computes".
    #[arg(long, default_value_t = 1000)]
    duration_ms: u64,
    /// Heartbeats sent while computing.
    #[arg(long, default_value_t = 2)]
    heartbeats: u32,
    /// Share of runs that complete with FAILURE (decided from the run id, so reproducible).
    #[arg(long, default_value_t = 0.0)]
    failure_ratio: f64,
    /// Report nothing at all for this share of runs (to exercise timeouts).
    #[arg(long, default_value_t = 0.0)]
    silent_ratio: f64,
    /// Concurrent receive loops on the run-requests queue.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Stop after this many runs (default: until SIGINT/SIGTERM).
    #[arg(long)]
    max_runs: Option<usize>,
}

/// A number in [0, 1) derived from the run id and a salt.
fn fraction(run_id: &str, salt: &str) -> f64 {
    let d = Sha256::digest(format!("{salt}:{run_id}").as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as f64 / (u32::MAX as f64 + 1.0)
}

async fn report(aws: &AwsClients, queue: &str, event: Value) -> Result<()> {
    let mut req = aws
        .sqs
        .send_message()
        .queue_url(queue)
        .message_body(event.to_string());
    if queue.ends_with(".fifo") {
        let run = event["runId"].as_str().unwrap_or("run").to_string();
        req = req
            .message_group_id(run)
            .message_deduplication_id(orchestrator_core::app::new_id());
    }
    req.send()
        .await
        .context("Failed to report to the run-lifecycle queue")?;
    Ok(())
}

async fn simulate(aws: AwsClients, args: SimulateArgs, request: Value) -> Result<()> {
    let run_id = request["runId"]
        .as_str()
        .context("run request without runId")?
        .to_string();
    let code = request["metricCode"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if fraction(&run_id, "silent") < args.silent_ratio {
        println!("{run_id} {code}: silent");
        return Ok(());
    }
    let q = &args.lifecycle_queue;
    report(&aws, q, json!({"type": "metric_run_started", "runId": run_id, "startedAt": chrono::Utc::now().to_rfc3339()})).await?;
    let steps = args.heartbeats + 1;
    for i in 1..=args.heartbeats {
        tokio::time::sleep(Duration::from_millis(args.duration_ms / steps as u64)).await;
        let progress = (100 * i / steps) as u64;
        report(
            &aws,
            q,
            json!({"type": "metric_run_heartbeat", "runId": run_id, "progress": progress,
                               "ts": chrono::Utc::now().to_rfc3339()}),
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_millis(args.duration_ms / steps as u64)).await;
    let failed = fraction(&run_id, "failure") < args.failure_ratio;
    let base = request["output"]["basePath"]
        .as_str()
        .unwrap_or("s3://unknown/");
    let completed = json!({
        "type": "metric_run_completed", "runId": run_id, "metricCode": code,
        "status": if failed { "FAILURE" } else { "SUCCESS" },
        "versionTs": chrono::Utc::now().format("%Y-%m-%d").to_string(),
        "outputManifest": format!("{base}{run_id}/manifest.json"),
        "rowCount": if failed { Value::Null } else { json!(1000) },
        "error": if failed { json!("simulated failure") } else { Value::Null }
    });
    report(&aws, q, completed).await?;
    println!(
        "{run_id} {code}: {}",
        if failed { "FAILURE" } else { "SUCCESS" }
    );
    Ok(())
}

pub async fn run(args: SimulateArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let shutdown = shutdown::on_signals();
    let done = Arc::new(AtomicUsize::new(0));
    eprintln!(
        "simulate-runner: reading {} ({} readers)",
        args.requests_queue, args.readers
    );
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..args.readers.max(1) {
        readers.spawn(read_loop(
            aws.clone(),
            args.clone(),
            done.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(r) = readers.join_next().await {
        r??;
    }
    println!(
        "simulate-runner: {} run(s) handled",
        done.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Receives run requests and simulates each in its own task.
async fn read_loop(
    aws: AwsClients,
    args: SimulateArgs,
    done: Arc<AtomicUsize>,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    while !shutdown.is_cancelled()
        && args
            .max_runs
            .is_none_or(|m| done.load(Ordering::SeqCst) < m)
    {
        let received = tokio::select! {
            r = aws.sqs.receive_message().queue_url(&args.requests_queue).max_number_of_messages(10).wait_time_seconds(2).send() => r,
            _ = shutdown.cancelled() => break,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                eprintln!(
                    "simulate-runner: receive failed: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut handled = Vec::with_capacity(messages.len());
        for m in messages {
            let body = m.body().unwrap_or_default().to_string();
            let body = match s3::parse_pointer(&body) {
                // The simulated runner follows the pointers the fleet sends:
                // it reads whichever bucket a pointer names.
                Some(p) => s3::fetch(
                    &aws.s3,
                    &s3::PointerPolicy {
                        buckets: vec![p.bucket.clone()],
                        expected_owner: None,
                    },
                    &p,
                    64 * 1024 * 1024,
                )
                .await
                .context("Failed to fetch an offloaded request")?,
                None => body,
            };
            match parse_body(&body) {
                Ok(request) => {
                    done.fetch_add(1, Ordering::SeqCst);
                    let (aws, args) = (aws.clone(), args.clone());
                    tasks.spawn(async move {
                        if let Err(e) = simulate(aws, args, request).await {
                            eprintln!("simulate-runner: {e:#}");
                        }
                    });
                }
                Err(e) => {
                    eprintln!("simulate-runner: skipping a message that is not a run request: {e}")
                }
            }
            if let Some(r) = m.receipt_handle() {
                handled.push(r.to_string());
            }
        }
        // One call for the whole receive: LocalStack's CPU is what limits a
        // fleet on one machine.
        let entries: Vec<_> = handled
            .drain(..)
            .enumerate()
            .filter_map(|(i, r)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            let _ = aws
                .sqs
                .delete_message_batch()
                .queue_url(&args.requests_queue)
                .set_entries(Some(entries))
                .send()
                .await;
        }
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}
