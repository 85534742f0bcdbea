//! `orchestrator runs list|show|cancel|trigger|watch`.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use orchestrator_core::app::runs_admin::{self, RunFilter, RunRow};
use orchestrator_core::domain::ids::RunId;
use orchestrator_core::domain::run_state::RunStatus;

use crate::db::DbArgs;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs in this status (pending_dependencies, queued, dispatched, running,
        /// succeeded, failed, timed_out, canceled).
        #[arg(long)]
        status: Option<RunStatus>,
        /// Only runs of this metric code.
        #[arg(long)]
        metric: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Show one run; for a pending run, the datasets it still waits for.
    Show {
        run_id: RunId,
        #[arg(long)]
        json: bool,
        /// Print only the run request sent (or to be sent) to the runner.
        #[arg(long, conflicts_with = "json")]
        request: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Request a run of a metric now, from the newest fresh update of each
    /// dataset it needs (written to the outbox; the workers publish it).
    Trigger {
        #[arg(long)]
        metric: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Refresh counts by status and the newest runs until interrupted.
    Watch(crate::runs_watch::WatchArgs),
    /// Cancel a run that has not ended.
    Cancel {
        run_id: RunId,
        #[arg(long, default_value = "canceled by operator")]
        reason: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn ts(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn age(secs: Option<f64>) -> String {
    match secs {
        None => String::new(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 172_800.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86_400.0),
    }
}

pub(crate) fn table(rows: &[RunRow]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "run id",
        "metric",
        "status",
        "attempt",
        "definition",
        "requested",
        "started",
        "finished",
        "progress",
        "error",
    ]);
    for r in rows {
        t.add_row([
            r.id.to_string(),
            r.metric_code.clone(),
            r.status.to_string(),
            r.attempt.to_string(),
            r.definition_version
                .map(|v| format!("v{v}"))
                .unwrap_or_default(),
            ts(r.requested_at),
            ts(r.started_at),
            ts(r.finished_at),
            r.progress.map(|p| format!("{p:.0}%")).unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    t
}

pub async fn run(cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::List {
            status,
            metric,
            limit,
            json,
            db,
        } => {
            let filter = RunFilter {
                status,
                metric_code: metric,
                limit,
                ..RunFilter::default()
            };
            list(&db, &filter, json).await
        }
        RunsCommand::Show {
            run_id,
            json,
            request,
            db,
        } => show(&db, &run_id, json, request).await,
        RunsCommand::Trigger { metric, json, db } => trigger(&db, &metric, json).await,
        RunsCommand::Watch(args) => crate::runs_watch::watch(args).await,
        RunsCommand::Cancel { run_id, reason, db } => {
            let pool = db.pool().await?;
            let was = runs_admin::cancel(&pool, &run_id, &reason).await?;
            println!("canceled {run_id} (was {was})");
            Ok(())
        }
    }
}

async fn list(db: &DbArgs, filter: &RunFilter, json: bool) -> Result<()> {
    let pool = db.pool().await?;
    let rows = runs_admin::list(&pool, filter)
        .await
        .context("Failed to list runs")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!("{}", table(&rows));
        println!("{} run(s)", rows.len());
    }
    Ok(())
}

async fn show(db: &DbArgs, run_id: &RunId, json: bool, request: bool) -> Result<()> {
    let pool = db.pool().await?;
    let Some(detail) = runs_admin::show(&pool, run_id)
        .await
        .context("Failed to read the run")?
    else {
        bail!("no run with id {run_id}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
        return Ok(());
    }
    if request {
        let Some(r) = &detail.request else {
            bail!(
                "run {run_id} has no request yet (it is {})",
                detail.run.status
            );
        };
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!("{}", table(std::slice::from_ref(&detail.run)));
    if let Some(r) = &detail.run.retry_of {
        println!("retry of {r}");
    }
    if let Some(v) = &detail.run.code_version {
        println!("the runner reported code version {v}");
    }
    if !detail.pending_datasets.is_empty() {
        let waiting = detail.waiting_for();
        if waiting.is_empty() {
            println!("every required dataset has a fresh update");
        } else {
            println!("waiting for: {}", waiting.join(", "));
        }
        println!("{}", pending_table(&detail.pending_datasets));
    }
    if !detail.used_updates.is_empty() {
        println!("uses:");
        for u in &detail.used_updates {
            println!(
                "  {} {} ({}, created {})",
                u.dataset_id,
                u.update_id,
                u.version_manifest_path,
                ts(Some(u.created_at))
            );
        }
    }
    Ok(())
}

/// What a pending run has received of each dataset it requires.
fn pending_table(rows: &[orchestrator_core::store::pending::PendingDataset]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header([
        "dataset",
        "received",
        "update",
        "received at",
        "age",
        "fresh",
        "required days",
    ]);
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    for p in rows {
        t.add_row([
            p.dataset_id.to_string(),
            yes_no(p.received),
            p.received_update_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            ts(p.received_at),
            age(p.age_secs),
            p.fresh.map(yes_no).unwrap_or_default(),
            p.required_days.to_string(),
        ]);
    }
    t
}

async fn trigger(db: &DbArgs, metric: &str, json: bool) -> Result<()> {
    let settings = orchestrator_core::config::Env::process()
        .request_settings()
        .context("Failed to read the run-request settings (OUTPUT_BUCKET, OUTPUT_PREFIX, RUN_REQUESTS_TOPIC_ARN)")?;
    let ctx = orchestrator_core::app::Context::new(db.pool().await?, settings);
    let t = orchestrator_core::app::trigger::trigger(&ctx, metric).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        println!("queued run {} of {}; uses:", t.run_id, t.metric_code);
        for (d, u) in &t.updates {
            println!("  {d} {u}");
        }
        println!("the workers' outbox relay publishes it within a second or two");
    }
    Ok(())
}
