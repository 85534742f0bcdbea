//! `orchestrator provision`: creates (idempotently) the queues with DLQs, the
//! run-requests topic and the runner's queue, the output bucket, and the
//! subscriptions to existing topics of a runner or producer, on LocalStack or
//! AWS (`AWS_ENDPOINT_URL` selects), then prints or writes the workers'
//! environment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use orchestrator_core::messaging::provision::{
    is_fifo_arn, provision, Fifo, ProvisionSpec, Provisioned, RawDelivery,
};
use orchestrator_core::messaging::AwsClients;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Delivery {
    /// The message as published (no SNS envelope).
    Raw,
    /// The SNS notification JSON around it.
    Envelope,
}

#[derive(Args)]
pub struct ProvisionArgs {
    /// Prefix of every resource name.
    #[arg(long, default_value = "")]
    prefix: String,
    /// FIFO for every topic and queue (each can also be chosen alone below).
    #[arg(long)]
    fifo: bool,
    /// FIFO run-requests topic and runner queue.
    #[arg(long)]
    fifo_run_requests: bool,
    /// FIFO projection-updates queue (automatic when subscribed to FIFO topics).
    #[arg(long)]
    fifo_projection_updates: bool,
    /// FIFO run-lifecycle queue (automatic when subscribed to FIFO topics).
    #[arg(long)]
    fifo_run_lifecycle: bool,
    /// Publish run requests to this existing topic instead of creating one.
    #[arg(long, value_name = "ARN")]
    run_requests_topic_arn: Option<String>,
    /// Subscribe the run-lifecycle queue to this existing topic of the
    /// runner (repeat: metrics-engine--dp-worker publishes to three).
    #[arg(long = "lifecycle-topic-arn", value_name = "ARN")]
    lifecycle_topic_arns: Vec<String>,
    /// Subscribe the projection-updates queue to this existing topic of the
    /// producer (repeatable; ingestor-reader-v3 publishes to one).
    #[arg(long = "projection-updates-topic-arn", value_name = "ARN")]
    projection_updates_topic_arns: Vec<String>,
    /// Delivery to the runner's run-requests queue.
    #[arg(long, value_enum, default_value = "raw")]
    run_requests_delivery: Delivery,
    /// Delivery to the run-lifecycle queue from the runner's topics.
    #[arg(long, value_enum, default_value = "raw")]
    lifecycle_delivery: Delivery,
    /// Delivery to the projection-updates queue from the producer's topics.
    #[arg(long, value_enum, default_value = "raw")]
    projection_updates_delivery: Delivery,
    /// Output bucket, used as is when it exists (default: `<prefix>metric-outputs`).
    #[arg(long)]
    output_bucket: Option<String>,
    /// Receives before SQS moves a message to its DLQ by itself.
    #[arg(long, default_value_t = 5)]
    max_receive_count: u32,
    /// Empty every queue afterwards (demos and tests that reuse names).
    #[arg(long)]
    purge: bool,
    /// Write `KEY=VALUE` lines to this file instead of standard output.
    #[arg(long)]
    env_file: Option<PathBuf>,
}

/// FIFO per resource: a queue subscribed to FIFO topics is FIFO (SNS
/// delivers them to FIFO queues only); an existing run-requests topic's
/// name decides for the runner's queue.
fn spec(args: &ProvisionArgs) -> ProvisionSpec {
    let fifo_topics =
        |topics: &[String]| !topics.is_empty() && topics.iter().all(|t| is_fifo_arn(t));
    let fifo = Fifo {
        run_requests: match &args.run_requests_topic_arn {
            Some(t) if !args.fifo && !args.fifo_run_requests => is_fifo_arn(t),
            _ => args.fifo || args.fifo_run_requests,
        },
        projection_updates: args.fifo
            || args.fifo_projection_updates
            || fifo_topics(&args.projection_updates_topic_arns),
        run_lifecycle: args.fifo
            || args.fifo_run_lifecycle
            || fifo_topics(&args.lifecycle_topic_arns),
    };
    ProvisionSpec {
        output_bucket: args
            .output_bucket
            .clone()
            .unwrap_or_else(|| format!("{}metric-outputs", args.prefix)),
        prefix: args.prefix.clone(),
        fifo,
        max_receive_count: args.max_receive_count,
        run_requests_topic_arn: args.run_requests_topic_arn.clone(),
        run_lifecycle_topic_arns: args.lifecycle_topic_arns.clone(),
        projection_updates_topic_arns: args.projection_updates_topic_arns.clone(),
        raw: RawDelivery {
            run_requests: args.run_requests_delivery == Delivery::Raw,
            run_lifecycle: args.lifecycle_delivery == Delivery::Raw,
            projection_updates: args.projection_updates_delivery == Delivery::Raw,
        },
    }
}

fn report(done: &Provisioned) -> String {
    let mut text = String::new();
    for (k, v) in done.env() {
        text.push_str(&format!("{k}={v}\n"));
    }
    for (k, v) in [
        (
            "PROJECTION_UPDATES_DLQ_URL",
            &done.projection_updates_dlq_url,
        ),
        ("RUN_LIFECYCLE_DLQ_URL", &done.run_lifecycle_dlq_url),
        // Not read by the workers: where the runner's dead letters go.
        ("RUN_REQUESTS_DLQ_URL", &done.run_requests_dlq_url),
    ] {
        text.push_str(&format!("{k}={v}\n"));
    }
    text
}

pub async fn run(args: ProvisionArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let spec = spec(&args);
    let done = provision(&aws.sqs, &aws.sns, &aws.s3, &spec)
        .await
        .context("Failed to provision")?;
    for s in &done.subscriptions {
        eprintln!(
            "subscribed {} to {} ({})",
            s.queue_url,
            s.topic_arn,
            if s.raw { "raw" } else { "enveloped" }
        );
    }
    for r in &done.reused {
        eprintln!("reused existing {r}");
    }
    if args.purge {
        for q in done.queue_urls() {
            aws.sqs
                .purge_queue()
                .queue_url(q)
                .send()
                .await
                .with_context(|| format!("Failed to purge {q}"))?;
        }
        eprintln!("purged the six queues");
    }
    let text = report(&done);
    match args.env_file {
        Some(path) => {
            std::fs::write(&path, text)
                .with_context(|| format!("Failed to write {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
