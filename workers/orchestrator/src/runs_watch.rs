//! `orchestrator runs watch`: counts by status and the newest runs, refreshed
//! until interrupted, or (`--until-settled`) until no run is open.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use orchestrator_core::app::runs_admin::{self, RunFilter};

use crate::db::DbArgs;

#[derive(Args)]
pub struct WatchArgs {
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    interval: u64,
    /// Newest runs shown.
    #[arg(long, default_value_t = 10)]
    limit: i64,
    /// Only runs of this metric code (in the table).
    #[arg(long)]
    metric: Option<String>,
    /// Exit 0 once at least --min-runs runs exist and none is pending,
    /// queued, dispatched or running.
    #[arg(long)]
    until_settled: bool,
    /// With --until-settled: runs that must exist before it counts as settled.
    #[arg(long, default_value_t = 1)]
    min_runs: i64,
    /// With --until-settled: give up (exit 1) after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn watch(args: WatchArgs) -> Result<()> {
    let pool = args.db.pool().await?;
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    loop {
        let counts = runs_admin::counts(&pool)
            .await
            .context("Failed to count runs")?;
        let rows = runs_admin::list(
            &pool,
            &RunFilter {
                status: None,
                metric_code: args.metric.clone(),
                limit: args.limit,
                ..RunFilter::default()
            },
        )
        .await
        .context("Failed to list runs")?;
        if tty {
            // Clear the screen and go home, like watch(1).
            print!("\x1b[2J\x1b[H");
        }
        let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!(
            "runs by status: {}",
            if summary.is_empty() {
                "none yet".to_string()
            } else {
                summary.join(" · ")
            }
        );
        println!("{}", crate::runs::table(&rows));
        let open: i64 = counts
            .iter()
            .filter(|(s, _)| s.is_cancelable())
            .map(|(_, n)| n)
            .sum();
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        if args.until_settled {
            if total >= args.min_runs.max(1) && open == 0 {
                println!("settled: no open runs");
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(args.timeout) {
                bail!(
                    "not settled after {}s: {total} run(s), {open} still open (waiting for no open runs and at least {})",
                    args.timeout,
                    args.min_runs.max(1)
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(args.interval.max(1))).await;
    }
}
