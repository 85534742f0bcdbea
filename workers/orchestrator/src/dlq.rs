//! `orchestrator dlq list|redrive`.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use orchestrator_core::messaging::sqs::{dlq, dlq_admin};
use orchestrator_core::messaging::AwsClients;

#[derive(Clone, Copy, ValueEnum)]
pub enum Source {
    ProjectionUpdates,
    RunLifecycle,
}

impl Source {
    fn vars(self) -> (&'static str, &'static str) {
        match self {
            Source::ProjectionUpdates => {
                ("PROJECTION_UPDATES_QUEUE_URL", "PROJECTION_UPDATES_DLQ_URL")
            }
            Source::RunLifecycle => ("RUN_LIFECYCLE_QUEUE_URL", "RUN_LIFECYCLE_DLQ_URL"),
        }
    }
}

#[derive(Args)]
pub struct Which {
    /// Whose dead letters: the DLQ is *_DLQ_URL, else the queue's RedrivePolicy.
    #[arg(long, value_enum, default_value = "projection-updates")]
    queue: Source,
    /// The DLQ's URL, instead of --queue.
    #[arg(long)]
    dlq_url: Option<String>,
}

impl Which {
    async fn resolve(&self, aws: &AwsClients) -> Result<String> {
        if let Some(u) = &self.dlq_url {
            return Ok(u.clone());
        }
        let (queue_var, dlq_var) = self.queue.vars();
        if let Ok(u) = std::env::var(dlq_var) {
            return Ok(u);
        }
        let queue = std::env::var(queue_var)
            .map_err(|_| anyhow!("set {dlq_var} or {queue_var}, or pass --dlq-url"))?;
        dlq::from_redrive_policy(&aws.sqs, &queue)
            .await
            .map_err(|e| anyhow!(e))
            .with_context(|| format!("Failed to read the RedrivePolicy of {queue}"))?
            .ok_or_else(|| anyhow!("{queue} has no RedrivePolicy; pass --dlq-url"))
    }
}

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Show dead letters with their error attributes (they stay on the DLQ).
    List {
        #[command(flatten)]
        which: Which,
        #[arg(long, default_value_t = 100)]
        max: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move dead letters back to their source queue (after a fix).
    Redrive {
        #[command(flatten)]
        which: Which,
        /// Target queue URL (default: each letter's source_queue attribute).
        #[arg(long)]
        to: Option<String>,
        /// Only letters with this error_type (invalid_json, invalid_event, retry_exhausted).
        #[arg(long)]
        error_type: Option<String>,
        #[arg(long, default_value_t = 1000)]
        max: usize,
        /// Report what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn clip(s: &str, n: usize) -> String {
    let one_line = s.replace('\n', " ");
    match one_line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

pub async fn run(cmd: DlqCommand) -> Result<()> {
    let aws = AwsClients::from_env().await;
    match cmd {
        DlqCommand::List { which, max, json } => {
            let url = which.resolve(&aws).await?;
            let letters = dlq_admin::list(&aws.sqs, &url, max)
                .await
                .map_err(|e| anyhow!(e))
                .context("Failed to read the DLQ")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&letters)?);
                return Ok(());
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header([
                "message id",
                "error type",
                "receives",
                "failed at",
                "error",
                "body",
            ]);
            for l in &letters {
                t.add_row([
                    l.message_id.clone(),
                    l.error_type.clone().unwrap_or_default(),
                    l.receive_count.clone().unwrap_or_default(),
                    l.failed_at.clone().unwrap_or_default(),
                    clip(l.error_message.as_deref().unwrap_or_default(), 60),
                    clip(&l.body, 60),
                ]);
            }
            println!("{t}");
            println!("{} dead letter(s) on {url}", letters.len());
        }
        DlqCommand::Redrive {
            which,
            to,
            error_type,
            max,
            dry_run,
        } => {
            let dlq_url = which.resolve(&aws).await?;
            let report = dlq_admin::redrive(
                &aws.sqs,
                &dlq_admin::RedriveOptions {
                    dlq_url,
                    to,
                    error_type,
                    max,
                    dry_run,
                },
            )
            .await
            .map_err(|e| anyhow!(e))
            .context("Failed to redrive")?;
            let verb = if dry_run { "would move" } else { "moved" };
            for (id, q) in &report.moved {
                println!("{verb} {id} -> {q}");
            }
            for (id, why) in &report.failed {
                eprintln!("not moved {id}: {why}");
            }
            println!(
                "{verb} {}, skipped {} (other error types), failed {}",
                report.moved.len(),
                report.skipped,
                report.failed.len()
            );
            if !report.failed.is_empty() {
                bail!("{} dead letter(s) could not be moved", report.failed.len());
            }
        }
    }
    Ok(())
}
