//! `orchestrator backfill create|show|list|pause|resume|cancel`: compute
//! metrics over a past range with the inputs of each moment
//! (docs/semantics.md, "Backfills"; docs/operations.md).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use orchestrator_core::app::backfill::{self, Create, Plan, Shown};
use orchestrator_core::domain::backfill::{self as rules, Asked, Control};
use orchestrator_core::domain::ids::BackfillId;
use orchestrator_core::store::backfills::PointRow;

use crate::db::DbArgs;

/// A line into the command's output buffer.
macro_rules! outln {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

/// Writes the output; a reader that went away (`| head`) ends it quietly.
fn emit(out: &str) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[derive(Subcommand)]
pub enum BackfillCommand {
    /// Plan a backfill and start it (or, with --dry-run, print the plan).
    Create(CreateArgs),
    /// A backfill's progress and its points.
    Show {
        id: String,
        /// Print every point (else the first and last few).
        #[arg(long)]
        points: bool,
        /// Refresh until it finishes.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The newest backfills with their progress.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Stop requesting points (runs in flight finish).
    Pause {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Request points again after a pause.
    Resume {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel its points not finished and its runs not yet published.
    Cancel {
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// Metric codes (repeat the flag or separate with commas).
    #[arg(long = "metric", required = true)]
    metrics: Vec<String>,
    /// Also every metric that reads one of them (transitively).
    #[arg(long)]
    downstream: bool,
    /// Start of the range: RFC 3339, a date (2026-01-31), or an age (90d).
    #[arg(long)]
    from: String,
    /// End of the range (default now).
    #[arg(long, default_value = "now")]
    to: String,
    /// Which moments: runs (the metric's past requests), updates (each
    /// update of an input), daily, or a cron schedule ("0 6 * * * UTC").
    #[arg(long, default_value = "runs")]
    points: String,
    /// Which points to recompute: missing, failed (and missing), stale
    /// (and failed and missing), all.
    #[arg(long, default_value = "missing")]
    reprocess: String,
    /// At most this many of its runs at once.
    #[arg(long, default_value_t = i64::from(rules::DEFAULT_MAX_IN_FLIGHT))]
    max_in_flight: i64,
    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Your own idempotency key (the same key is the same backfill).
    #[arg(long)]
    key: Option<String>,
    /// Recorded as its author.
    #[arg(long, env = "USER", default_value = "operator")]
    by: String,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn run(cmd: BackfillCommand) -> Result<()> {
    match cmd {
        BackfillCommand::Create(a) => create(a).await,
        BackfillCommand::Show {
            id,
            points,
            follow,
            db,
        } => {
            let pool = db.pool().await?;
            let id = BackfillId::new(id);
            loop {
                let mut out = String::new();
                let shown = backfill::show(&pool, &id).await?;
                print_shown(&mut out, &shown);
                let done = shown.backfill.status != "running" && shown.backfill.status != "paused";
                if !follow || done {
                    let all = backfill::points(&pool, &id, 0, 100_000).await?;
                    print_points(&mut out, &all, points);
                    return emit(&out);
                }
                emit(&out)?;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
        BackfillCommand::List { limit, db } => {
            let pool = db.pool().await?;
            let all = backfill::list(&pool, limit.clamp(1, 1000)).await?;
            let mut out = String::new();
            for s in &all {
                print_shown(&mut out, s);
            }
            outln!(out, "{} backfill(s)", all.len());
            emit(&out)
        }
        BackfillCommand::Pause { id, db } => control(id, db, Control::Pause).await,
        BackfillCommand::Resume { id, db } => control(id, db, Control::Resume).await,
        BackfillCommand::Cancel { id, db } => control(id, db, Control::Cancel).await,
    }
}

async fn control(id: String, db: DbArgs, c: Control) -> Result<()> {
    let pool = db.pool().await?;
    let status = backfill::control(&pool, &BackfillId::new(id.clone()), c).await?;
    let mut out = String::new();
    outln!(out, "backfill {id}: {}", status.as_str());
    emit(&out)
}

async fn create(a: CreateArgs) -> Result<()> {
    let pool = a.db.pool().await?;
    let now = backfill::now(&pool).await?;
    let asked = Asked {
        metrics: a.metrics.iter().map(String::as_str).collect(),
        downstream: a.downstream,
        from: &a.from,
        to: &a.to,
        points: Some(&a.points),
        reprocess: Some(&a.reprocess),
        max_in_flight: Some(a.max_in_flight),
    };
    let request = rules::request(&asked, now).map_err(anyhow::Error::msg)?;
    eprintln!(
        "planning the points ({}) of {} …",
        a.points,
        request.metrics.join(", ")
    );
    let created = backfill::create(
        &pool,
        &Create {
            request,
            key: a.key.as_deref(),
            by: Some(&a.by),
            reason: None,
            dry_run: a.dry_run,
        },
    )
    .await
    .context("Failed to create the backfill")?;
    let mut out = String::new();
    print_plan(&mut out, &created.plan, a.dry_run);
    match (created.id, created.existing) {
        (None, _) => outln!(out, "dry run: nothing written"),
        (Some(id), true) => {
            outln!(
                out,
                "backfill {id} already exists for this request: nothing new written"
            )
        }
        (Some(id), false) => outln!(
            out,
            "backfill {id} created: {} point(s) to compute, at most {} at once",
            created.plan.selected,
            a.max_in_flight
        ),
    }
    emit(&out)
}

/// The plan as a table (at most 200 rows) and a count per status.
fn print_plan(out: &mut String, plan: &Plan, dry_run: bool) {
    const SHOWN: usize = 200;
    if dry_run {
        outln!(out, "METRIC\tAS OF\tFOUND\tACTION\tINPUTS");
        for p in plan.points.iter().take(SHOWN) {
            let action = if p.selected { "compute" } else { "keep" };
            let inputs = match &p.why {
                Some(why) => why.clone(),
                None => p.inputs.join(","),
            };
            outln!(
                out,
                "{}\t{}\t{}\t{action}\t{inputs}",
                p.metric_code,
                p.as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                p.found
            );
        }
        if plan.points.len() > SHOWN {
            outln!(out, "… and {} more point(s)", plan.points.len() - SHOWN);
        }
    }
    let counts: Vec<String> = plan.found.iter().map(|(k, n)| format!("{k} {n}")).collect();
    outln!(
        out,
        "plan: {} point(s) of {}: {}; {} to compute",
        plan.points.len(),
        plan.metrics.join(", "),
        if counts.is_empty() {
            "none".into()
        } else {
            counts.join(", ")
        },
        plan.selected
    );
}

fn print_shown(out: &mut String, s: &Shown) {
    let b = &s.backfill;
    let p = &s.progress;
    let c = &p.counts;
    let secs = |s: u64| humantime::format_duration(Duration::from_secs(s)).to_string();
    // A finished backfill says how long it took; a running one its pace.
    let pace = match b.finished_at {
        Some(end) => format!(
            "took {}",
            secs((end - b.created_at).num_seconds().max(0) as u64)
        ),
        None => format!(
            "{:.1} runs/min · eta {}",
            p.per_minute,
            p.eta_secs.map(secs).unwrap_or_else(|| "-".into())
        ),
    };
    outln!(
        out,
        "{} {} {} {:.0}% {} done / {} running / {} failed / {} left{} · {pace}",
        b.id,
        b.status,
        rules::bar(p.percent, 30),
        p.percent,
        c.done,
        c.running,
        c.failed,
        c.left,
        if c.canceled > 0 {
            format!(" / {} canceled", c.canceled)
        } else {
            String::new()
        }
    );
    outln!(
        out,
        "  metrics {} · {} → {} · points {} · reprocess {} · max in flight {} · by {}{}",
        b.metrics.join(","),
        b.from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        b.to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        b.points,
        b.reprocess,
        b.max_in_flight,
        b.created_by,
        b.reason
            .as_ref()
            .map(|r| format!(" · {r}"))
            .unwrap_or_default()
    );
}

fn print_points(out: &mut String, points: &[PointRow], all: bool) {
    if all || points.len() <= 10 {
        points.iter().for_each(|p| point_line(out, p));
    } else {
        points[..5].iter().for_each(|p| point_line(out, p));
        outln!(out, "  … {} more (--points shows all)", points.len() - 10);
        points[points.len() - 5..]
            .iter()
            .for_each(|p| point_line(out, p));
    }
}

fn point_line(out: &mut String, p: &PointRow) {
    outln!(
        out,
        "  {}\t{}\t{}\t{}\t{}",
        p.metric_code,
        p.as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        p.status,
        p.run_id.as_deref().unwrap_or("-"),
        p.detail.as_deref().unwrap_or(p.found.as_str())
    );
}
