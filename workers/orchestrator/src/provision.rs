//! `orchestrator provision`: creates (idempotently) the queues with DLQs, the
//! run-requests topic and its raw-delivery queue, and the output bucket, on
//! LocalStack or AWS (`AWS_ENDPOINT_URL` selects), then prints or writes the
//! workers' environment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_core::messaging::provision::{provision, ProvisionSpec};
use orchestrator_core::messaging::AwsClients;

#[derive(Args)]
pub struct ProvisionArgs {
    /// Prefix of every resource name.
    #[arg(long, default_value = "")]
    prefix: String,
    /// FIFO topic and queues.
    #[arg(long)]
    fifo: bool,
    /// Output bucket (default: `<prefix>metric-outputs`).
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

pub async fn run(args: ProvisionArgs) -> Result<()> {
    let aws = AwsClients::from_env().await;
    let spec = ProvisionSpec {
        output_bucket: args
            .output_bucket
            .clone()
            .unwrap_or_else(|| format!("{}metric-outputs", args.prefix)),
        prefix: args.prefix,
        fifo: args.fifo,
        max_receive_count: args.max_receive_count,
    };
    let done = provision(&aws.sqs, &aws.sns, &aws.s3, &spec)
        .await
        .context("Failed to provision")?;
    if args.purge {
        for q in [
            &done.projection_updates_queue_url,
            &done.projection_updates_dlq_url,
            &done.run_lifecycle_queue_url,
            &done.run_lifecycle_dlq_url,
            &done.run_requests_queue_url,
        ] {
            aws.sqs
                .purge_queue()
                .queue_url(q)
                .send()
                .await
                .with_context(|| format!("Failed to purge {q}"))?;
        }
        eprintln!("purged the five queues");
    }
    let mut text = String::new();
    for (k, v) in done.env() {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str(&format!(
        "PROJECTION_UPDATES_DLQ_URL={}\n",
        done.projection_updates_dlq_url
    ));
    text.push_str(&format!(
        "RUN_LIFECYCLE_DLQ_URL={}\n",
        done.run_lifecycle_dlq_url
    ));
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
