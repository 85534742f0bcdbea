//! `orchestrator replay FILE`: sends NDJSON events, one per line, to a queue
//! (default: the projection-updates queue) or a topic, at an optional rate.
//! Every line is validated against the contracts first; `--dry-run` only
//! validates. Invalid lines are sent too (to exercise dead-lettering) unless
//! `--skip-invalid`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use orchestrator_core::domain::events::{
    parse_body, parse_lifecycle, parse_projection_update, EventError,
};
use orchestrator_core::messaging::AwsClients;
use sha2::{Digest, Sha256};

#[derive(Args)]
pub struct ReplayArgs {
    file: PathBuf,
    /// Target queue URL.
    #[arg(long, env = "PROJECTION_UPDATES_QUEUE_URL", conflicts_with = "topic")]
    queue: Option<String>,
    /// Target topic ARN instead of a queue.
    #[arg(long)]
    topic: Option<String>,
    /// Messages per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<f64>,
    /// Validate only; exit code 1 when a line is invalid.
    #[arg(long)]
    dry_run: bool,
    /// Do not send lines that fail validation.
    #[arg(long)]
    skip_invalid: bool,
}

/// Validates one line as a projection update or a lifecycle event.
fn validate(line: &str) -> Result<(), EventError> {
    let v = parse_body(line)?;
    if v.get("event").is_some() {
        parse_projection_update(&v).map(|_| ())
    } else {
        parse_lifecycle(&v).map(|_| ())
    }
}

/// A FIFO group for a line: its dataset or run, else one group for the replay.
fn group_of(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    v.get("dataset_id")
        .or_else(|| v.get("runId"))
        .and_then(|x| x.as_str())
        .unwrap_or("replay")
        .to_string()
}

pub async fn run(args: ReplayArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("Failed to read {}", args.file.display()))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .collect();
    let mut invalid = 0;
    for (n, line) in &lines {
        if let Err(e) = validate(line) {
            invalid += 1;
            eprintln!("{}:{n}: {} ({})", args.file.display(), e, e.error_type());
        }
    }
    println!(
        "{} line(s), {} valid, {invalid} invalid",
        lines.len(),
        lines.len() - invalid
    );
    if args.dry_run {
        if invalid > 0 {
            bail!("{invalid} invalid line(s)");
        }
        return Ok(());
    }
    let aws = AwsClients::from_env().await;
    let pause = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    let mut sent = 0;
    for (n, line) in &lines {
        if args.skip_invalid && validate(line).is_err() {
            continue;
        }
        let dedup = hex::encode(&Sha256::digest(format!("{n}:{line}").as_bytes())[..16]);
        if let Some(topic) = &args.topic {
            let mut req = aws.sns.publish().topic_arn(topic).message(*line);
            if topic.ends_with(".fifo") {
                req = req
                    .message_group_id(group_of(line))
                    .message_deduplication_id(&dedup);
            }
            req.send()
                .await
                .with_context(|| format!("Failed to publish line {n}"))?;
        } else {
            let queue = args.queue.as_deref().context(
                "no target: pass --queue or --topic (or set PROJECTION_UPDATES_QUEUE_URL)",
            )?;
            let mut req = aws.sqs.send_message().queue_url(queue).message_body(*line);
            if queue.ends_with(".fifo") {
                req = req
                    .message_group_id(group_of(line))
                    .message_deduplication_id(&dedup);
            }
            req.send()
                .await
                .with_context(|| format!("Failed to send line {n}"))?;
        }
        sent += 1;
        if let Some(p) = pause {
            tokio::time::sleep(p).await;
        }
    }
    println!("sent {sent} message(s)");
    Ok(())
}
