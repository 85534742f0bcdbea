//! `loadgen bench`: projection-update throughput and latency against
//! PostgreSQL on synthetic catalogs (scenario A: 1,000 metrics over 50
//! datasets; B: 50,000 over 500), with pgbench TPC-B on the same server as
//! the yardstick, over a sweep of concurrencies, each run with the wait
//! profile of its database backends ([`crate::wait_profile`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use orchestrator_core::app::{backlog, catalog_apply, projection_update, Context as AppContext};
use orchestrator_core::domain::run_request::RequestSettings;
use orchestrator_core::store::pool;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;

use crate::db_work::{self, DbWork};
use crate::wait_profile::{self, WaitClass, WaitProfile};
use crate::ServerArgs;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Scenario {
    A,
    B,
    Both,
}

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "both")]
    scenario: Scenario,
    /// Projection updates to process per scenario.
    #[arg(long, default_value_t = 2000)]
    updates: usize,
    /// Updates processed before each run, untimed and not counted, then
    /// `ANALYZE`, as autovacuum does within a minute in a running fleet: the
    /// run then measures plans made for tables with rows in them. 0 (the
    /// default) measures a cold start, planned from empty tables' estimates
    /// until autovacuum first analyzes them, at some moment of the run.
    #[arg(long, default_value_t = 0)]
    warm_up: usize,
    /// Updates processed at once (like that many worker slots); a list
    /// (`1,2,4,8`) sweeps them, each on fresh databases.
    #[arg(long, value_delimiter = ',', default_value = "4")]
    concurrency: Vec<usize>,
    /// How often `pg_stat_activity` is sampled for the wait profile, in
    /// milliseconds (0: not sampled).
    #[arg(long, default_value_t = 250)]
    sample_ms: u64,
    /// Duration of the pgbench yardstick run (0 skips it).
    #[arg(long, default_value_t = 20)]
    pgbench_secs: u64,
    /// Keep the benchmark databases instead of dropping them.
    #[arg(long)]
    keep: bool,
    /// Runs per scenario (each on a fresh database); medians are reported.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// A server where the user may create databases (bench databases are created and dropped there).
    #[command(flatten)]
    db: ServerArgs,
}

struct Measured {
    name: &'static str,
    wall: Duration,
    latencies: Vec<Duration>,
    dependent: usize,
    queued: usize,
    /// Dependent-metric evaluations deferred to a metric's backlog.
    deferred: usize,
    /// Of those, evaluated by a drain of their own (no update took them).
    flushed: usize,
    profile: WaitProfile,
    /// What the database did for the updates.
    db: DbWork,
}

impl Measured {
    fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        v.get(((v.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }

    fn per_metric_us(&self) -> f64 {
        self.wall.as_secs_f64() * 1e6 / self.dependent.max(1) as f64
    }

    fn updates_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    fn print(&self) {
        let n = self.latencies.len() as f64;
        println!(
            "scenario {}: {} updates in {:.2}s = {:.0} updates/s; p50 {:.2} ms, p99 {:.2} ms per update; \
             {} dependent-metric evaluations = {:.0}/s ({:.1} µs each, {:.1} per update, {:.1}% deferred to a backlog, \
             {} of those drained on their own); {} runs queued",
            self.name,
            self.latencies.len(),
            self.wall.as_secs_f64(),
            n / self.wall.as_secs_f64(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.dependent,
            self.dependent as f64 / self.wall.as_secs_f64(),
            self.per_metric_us(),
            self.dependent as f64 / n,
            100.0 * self.deferred as f64 / self.dependent.max(1) as f64,
            self.flushed,
            self.queued,
        );
        println!("  wait profile: {}", self.profile.summary());
        println!("  {}", self.db.per_message(self.latencies.len()));
    }
}

async fn scenario(
    args: &BenchArgs,
    name: &'static str,
    shape: Shape,
    concurrency: usize,
) -> Result<Measured> {
    let db = TestDb::create(&args.db.database_url, &format!("bench_{name}")).await?;
    let result = measure(args, name, shape, &db.url, concurrency).await;
    if args.keep {
        println!("kept database {}", db.keep());
    }
    result
}

async fn measure(
    args: &BenchArgs,
    name: &'static str,
    shape: Shape,
    url: &str,
    concurrency: usize,
) -> Result<Measured> {
    let concurrency = concurrency.max(1);
    let pool = pool::build_pool(url, concurrency + 2)?;
    let started = Instant::now();
    let report = catalog_apply::apply(&pool, &synth::catalog(shape)).await?;
    println!(
        "scenario {name}: catalog of {} datasets, {} series, {} metrics applied in {:.2}s",
        report.datasets,
        report.series,
        report.metrics,
        started.elapsed().as_secs_f64()
    );
    let ctx = AppContext::new(
        pool.clone(),
        RequestSettings {
            output_bucket: "bench-out".into(),
            output_prefix: "metrics/".into(),
            output_path_style: Default::default(),
            fifo: false,
        },
    )
    // As the worker runs: backlogs handed off to the next update, and drained
    // on their own after a short wait (app::backlog::BacklogHandoff).
    .with_backlog_handoff();
    let mut updates = synth::updates(shape, args.warm_up + args.updates);
    let timed = updates.split_off(args.warm_up);
    if !updates.is_empty() {
        warm_up(name, &ctx, &pool, &updates).await?;
    }
    let updates = Arc::new(timed);
    let counters = pool::build_pool(url, 1)?;
    let before = db_work::snapshot(&counters).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let stop_sampling = tokio_util::sync::CancellationToken::new();
    let sampler = (args.sample_ms > 0)
        .then(|| pool::build_pool(url, 1))
        .transpose()?
        .map(|p| {
            tokio::spawn(wait_profile::sample(
                p,
                Duration::from_millis(args.sample_ms),
                stop_sampling.clone(),
            ))
        });
    let flusher = {
        let (ctx, stop) = (ctx.clone(), stop_sampling.clone());
        tokio::spawn(async move {
            let (mut evaluated, mut queued) = (0, 0);
            loop {
                let last = stop.is_cancelled();
                let age = if last {
                    Duration::ZERO
                } else {
                    backlog::HANDOFF_WAIT
                };
                let d = backlog::drain_handoff_now(&ctx, age).await?;
                evaluated += d.backlog_evaluated;
                queued += d.runs_queued;
                if last {
                    return Ok::<_, anyhow::Error>((evaluated, queued));
                }
                tokio::time::sleep(backlog::HANDOFF_WAIT).await;
            }
        })
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (ctx, updates, next) = (ctx.clone(), updates.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(u) = updates.get(i) else {
                        return Ok::<_, anyhow::Error>(out);
                    };
                    let t = Instant::now();
                    let s = projection_update::process(&ctx, u)
                        .await
                        .context("Failed to process an update")?;
                    out.push((
                        t.elapsed(),
                        s.dependent_metrics,
                        s.evaluated.runs_queued,
                        s.deferred,
                    ));
                }
            })
        })
        .collect();
    let mut m = Measured {
        name,
        wall: Duration::ZERO,
        latencies: Vec::new(),
        dependent: 0,
        queued: 0,
        deferred: 0,
        flushed: 0,
        profile: WaitProfile::default(),
        db: DbWork::default(),
    };
    for t in tasks {
        for (lat, dep, q, d) in t.await?? {
            m.latencies.push(lat);
            m.dependent += dep;
            m.queued += q;
            m.deferred += d;
        }
    }
    stop_sampling.cancel();
    let (flushed, queued) = flusher.await??;
    m.flushed = flushed;
    m.queued += queued;
    m.wall = started.elapsed();
    let left = orchestrator_core::store::backlog::count(&pool).await?;
    if left != 0 {
        bail!(
            "{left} backlog rows were left unevaluated after the last update and the final flush"
        );
    }
    if let Some(sampler) = sampler {
        m.profile = sampler.await?;
    }
    // The backends' CPU while they are connected; their commit counts once
    // they have exited (a backend flushes its statistics when it ends).
    let cpu = db_work::backend_cpu(&counters).await?;
    pool.close();
    drop(ctx);
    db_work::wait_for_backends_to_exit(&counters, Duration::from_secs(10)).await?;
    let after = db_work::snapshot(&counters).await?;
    m.db = db_work::difference(&counters, &before, &after, &cpu).await?;
    counters.close();
    Ok(m)
}

/// Processes `updates` one by one, drains what they handed off, and
/// analyzes the database.
async fn warm_up(
    name: &str,
    ctx: &AppContext,
    pool: &orchestrator_core::store::Pool,
    updates: &[orchestrator_core::domain::events::ProjectionUpdate],
) -> Result<()> {
    let started = Instant::now();
    for u in updates {
        projection_update::process(ctx, u)
            .await
            .context("Failed to process a warm-up update")?;
    }
    backlog::drain_handoff_now(ctx, Duration::ZERO).await?;
    pool.get()
        .await?
        .batch_execute("ANALYZE")
        .await
        .context("Failed to analyze after the warm-up")?;
    println!(
        "scenario {name}: {} updates to warm up, then ANALYZE, in {:.2}s",
        updates.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn pgbench_path() -> String {
    let debian = "/usr/lib/postgresql/15/bin/pgbench";
    if std::path::Path::new(debian).exists() {
        debian.into()
    } else {
        "pgbench".into()
    }
}

async fn pgbench(args: &BenchArgs) -> Result<f64> {
    let db = TestDb::create(&args.db.database_url, "bench_pgbench").await?;
    let url = db.url.clone();
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(pgbench_path());
        cmd.args(extra).arg(&url);
        cmd.output().context(
            "Failed to run pgbench (install postgresql-client / PostgreSQL server binaries)",
        )
    };
    let init = run(&["-i", "-q", "-s", "10"])?;
    if !init.status.success() {
        bail!(
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let secs = args.pgbench_secs.to_string();
    let out = run(&["-c", "4", "-j", "2", "-T", &secs])?;
    drop(db);
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .with_context(|| {
            format!(
                "pgbench printed no tps line:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A scenario's medians at one concurrency.
struct Summary {
    concurrency: usize,
    updates_per_sec: f64,
    per_metric_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The wait samples of all its runs together.
    profile: WaitProfile,
}

/// Runs a scenario `repeat` times and prints every run and the medians.
async fn repeated(
    args: &BenchArgs,
    name: &'static str,
    shape: Shape,
    concurrency: usize,
) -> Result<Summary> {
    let mut runs = Vec::new();
    for _ in 0..args.repeat.max(1) {
        let m = scenario(args, name, shape, concurrency).await?;
        m.print();
        runs.push(m);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut profile = WaitProfile::default();
    runs.iter().for_each(|m| profile.merge(&m.profile));
    let s = Summary {
        concurrency,
        updates_per_sec: median(runs.iter().map(Measured::updates_per_sec).collect()),
        per_metric_us: median(runs.iter().map(Measured::per_metric_us).collect()),
        p50_ms: median(
            runs.iter()
                .map(|m| m.percentile(0.5).as_secs_f64() * 1e3)
                .collect(),
        ),
        p99_ms: median(
            runs.iter()
                .map(|m| m.percentile(0.99).as_secs_f64() * 1e3)
                .collect(),
        ),
        profile,
    };
    println!(
        "scenario {name} at concurrency {concurrency}, median of {} run(s): {:.0} updates/s, \
         {:.0} dependent-metric evaluations/s, {:.1} µs per dependent metric, p50 {:.2} ms, p99 {:.2} ms",
        runs.len(),
        s.updates_per_sec,
        1e6 / s.per_metric_us,
        s.per_metric_us,
        s.p50_ms,
        s.p99_ms
    );
    Ok(s)
}

/// The sweep of one scenario as a table: throughput, latency and the share
/// of active-backend samples per wait class at each concurrency.
fn print_sweep(name: &str, sweep: &[Summary]) {
    let classes: Vec<String> = WaitClass::ALL
        .iter()
        .map(|c| format!("{:>11}", c.label()))
        .collect();
    println!(
        "\nscenario {name} sweep:\n{:>11} {:>10} {:>8} {:>8} {} {:>8}",
        "concurrency",
        "updates/s",
        "p50 ms",
        "p99 ms",
        classes.join(" "),
        "samples"
    );
    for s in sweep {
        let shares: Vec<String> = WaitClass::ALL
            .iter()
            .map(|c| format!("{:>10.0}%", s.profile.share(*c) * 100.0))
            .collect();
        println!(
            "{:>11} {:>10.0} {:>8.2} {:>8.2} {} {:>8}",
            s.concurrency,
            s.updates_per_sec,
            s.p50_ms,
            s.p99_ms,
            shares.join(" "),
            s.profile.samples()
        );
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    if args.concurrency.is_empty() || args.concurrency.contains(&0) {
        bail!("--concurrency takes one or more numbers of at least 1, e.g. 1,2,4,8");
    }
    println!(
        "loadgen bench: {} updates per scenario after {} to warm up, concurrency {:?}, {} run(s) each, server {}",
        args.updates,
        args.warm_up,
        args.concurrency,
        args.repeat.max(1),
        pool::redact_url(&args.db.database_url)
    );
    let (run_a, run_b) = match args.scenario {
        Scenario::A => (true, false),
        Scenario::B => (false, true),
        Scenario::Both => (true, true),
    };
    let (mut sweep_a, mut sweep_b) = (Vec::new(), Vec::new());
    for &c in &args.concurrency {
        if run_a {
            sweep_a.push(repeated(&args, "A", Shape::SCENARIO_A, c).await?);
        }
        if run_b {
            sweep_b.push(repeated(&args, "B", Shape::SCENARIO_B, c).await?);
        }
        if let (Some(a), Some(b)) = (sweep_a.last(), sweep_b.last()) {
            println!(
                "concurrency {c}: time per dependent metric, B / A = {:.2} (target <= 1.3)",
                b.per_metric_us / a.per_metric_us
            );
        }
    }
    for (name, sweep) in [("A", &sweep_a), ("B", &sweep_b)] {
        if !sweep.is_empty() {
            print_sweep(name, sweep);
        }
    }
    if args.pgbench_secs > 0 {
        let tps = pgbench(&args).await?;
        println!(
            "\npgbench TPC-B (scale 10, 4 clients, 2 threads, {} s): {tps:.0} tps",
            args.pgbench_secs
        );
        if let Some(best) = sweep_a
            .iter()
            .max_by(|x, y| x.updates_per_sec.total_cmp(&y.updates_per_sec))
        {
            println!(
                "scenario A at its best concurrency ({}): {:.0} updates/s = {:.3} × pgbench tps (target >= 0.2)",
                best.concurrency,
                best.updates_per_sec,
                best.updates_per_sec / tps
            );
        }
    }
    Ok(())
}
