//! `orchestrator metrics hold|resume`: stop a metric's runs while its
//! updates keep being recorded, and let them go again. `orchestrator
//! metrics stale`: the metrics whose newest output is stale, and why.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use orchestrator_core::app::policy::{self, HoldOutcome};
use orchestrator_core::app::staleness;
use orchestrator_core::domain::staleness::ReasonKind;

use crate::db::DbArgs;

#[derive(Subcommand)]
pub enum MetricsCommand {
    /// Hold a metric: updates are still recorded, no run is requested.
    Hold {
        /// The metric's code.
        code: String,
        /// Who holds it (shown to other operators).
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Resume a held metric: one run with the newest inputs, if one waits.
    Resume {
        code: String,
        /// Cancel the waiting run instead of requesting it.
        #[arg(long)]
        drop: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the metrics whose newest succeeded output is stale, with the
    /// reasons (definition_changed, input_updated, policy_changed).
    Stale {
        /// Only those stale for this reason.
        #[arg(long)]
        reason: Option<ReasonKind>,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        db: DbArgs,
    },
}

pub async fn run(cmd: MetricsCommand) -> Result<()> {
    match cmd {
        MetricsCommand::Hold { code, by, db } => {
            let ctx = context(&db).await?;
            match policy::hold(&ctx, &code, &by).await? {
                HoldOutcome::Held(id) => println!("held metric {code} ({id}) by {by}"),
                HoldOutcome::Unchanged { held_by, .. } => println!(
                    "metric {code} was already held by {}",
                    held_by.unwrap_or_default()
                ),
                HoldOutcome::NotFound => bail!("no metric with code {code:?}"),
                other => bail!("unexpected outcome of a hold: {other:?}"),
            }
        }
        MetricsCommand::Resume { code, drop, db } => {
            let ctx = context(&db).await?;
            match policy::resume(&ctx, &code, drop).await? {
                HoldOutcome::Resumed {
                    evaluated, dropped, ..
                } => {
                    println!("resumed metric {code}");
                    for id in &evaluated.queued_run_ids {
                        println!("  queued run {id}");
                    }
                    for id in &dropped {
                        println!("  dropped run {id}");
                    }
                    if evaluated.queued_run_ids.is_empty() && dropped.is_empty() {
                        println!("  nothing was waiting to run");
                    }
                }
                HoldOutcome::Unchanged { .. } => println!("metric {code} was not held"),
                HoldOutcome::NotFound => bail!("no metric with code {code:?}"),
                other => bail!("unexpected outcome of a resume: {other:?}"),
            }
        }
        MetricsCommand::Stale { reason, limit, db } => {
            let pool = db.pool().await?;
            let stale = staleness::stale(&pool, reason, None, limit.max(1))
                .await
                .context("Failed to read the metrics' outputs")?;
            for (code, s) in &stale {
                let reasons: Vec<String> = s.reasons().iter().map(ToString::to_string).collect();
                println!("{code}\t{}", reasons.join("; "));
            }
            let filter = reason
                .map(|r| format!(" ({})", r.as_str()))
                .unwrap_or_default();
            println!("{} stale metric(s){filter}", stale.len());
        }
    }
    Ok(())
}

async fn context(db: &DbArgs) -> Result<orchestrator_core::app::Context> {
    let settings = orchestrator_core::config::Env::process()
        .request_settings()
        .context("Failed to read the run-request settings (OUTPUT_BUCKET, OUTPUT_PREFIX, RUN_REQUESTS_TOPIC_ARN)")?;
    Ok(orchestrator_core::app::Context::new(
        db.pool().await?,
        settings,
    ))
}
