//! `loadgen bench-api`: the operator API's latency on a large history.
//! Seeds a scratch database (50,000 metrics and 1,000,000 runs by default),
//! serves the API in this process, and has `clients` concurrent clients
//! request four endpoints; prints p50 / p99 / max of the answered requests
//! per endpoint, the share shed (503 past `--max-in-flight`, the server's
//! `API_MAX_IN_FLIGHT`), and the slowest statements from pg_stat_statements
//! when it is loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::api_seed::{seed, Seed};
use orchestrator_tests::db::TestDb;
use tokio::sync::Mutex;

use crate::ServerArgs;

#[derive(Args)]
pub struct BenchApiArgs {
    #[command(flatten)]
    server: ServerArgs,
    #[arg(long, default_value_t = 50_000)]
    metrics: i64,
    #[arg(long, default_value_t = 20)]
    runs_per_metric: i64,
    #[arg(long, default_value_t = 500)]
    datasets: i64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 20)]
    clients: usize,
    /// Requests per endpoint (spread over the clients).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// The server's connection pool (`DATABASE_POOL_SIZE`; `orchestrator
    /// serve`'s default by default).
    #[arg(long, default_value_t = orchestrator_core::api::API_POOL_SIZE as usize)]
    pool_size: usize,
    /// The server's bound on requests in flight (`API_MAX_IN_FLIGHT`;
    /// `orchestrator serve`'s default by default): past it, requests are
    /// shed with a 503 and counted here.
    #[arg(long, default_value_t = orchestrator_core::api::layers::ApiLimits::default().max_in_flight)]
    max_in_flight: usize,
    /// How long a client whose request was shed waits before sending it
    /// again (the server's `Retry-After` is 1 s).
    #[arg(long, default_value_t = 1000)]
    shed_backoff_ms: u64,
    /// Keep the seeded database (its name is printed) instead of dropping it.
    #[arg(long)]
    keep: bool,
    /// Measure on this database, seeded by an earlier `--keep` run, instead
    /// of seeding a new one.
    #[arg(long, value_name = "NAME")]
    reuse: Option<String>,
}

/// The path of request `i` to an endpoint.
type PathFn = Box<dyn Fn(usize) -> String + Send + Sync>;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(args: BenchApiArgs) -> Result<()> {
    let started = Instant::now();
    let db = match &args.reuse {
        Some(name) => TestDb::existing(&args.server.database_url, name).await?,
        None => {
            let db = TestDb::create(&args.server.database_url, "bench_api").await?;
            seed(
                &db,
                Seed {
                    datasets: args.datasets,
                    metrics: args.metrics,
                    runs_per_metric: args.runs_per_metric,
                    updates_per_dataset: 100,
                },
            )
            .await
            .context("Failed to seed the history")?;
            db
        }
    };
    let runs = db.count("SELECT count(*) FROM metric_runs").await;
    let metrics = db.count("SELECT count(*) FROM metrics").await;
    let pending = db
        .count("SELECT count(*) FROM metric_runs WHERE status = 'pending_dependencies'")
        .await;
    println!(
        "{} {metrics} metrics, {runs} runs ({pending} pending) in {:.0} s",
        if args.reuse.is_some() {
            "reused"
        } else {
            "seeded"
        },
        started.elapsed().as_secs_f64()
    );
    let pool = orchestrator_core::store::pool::build_pool(&db.url, args.pool_size.max(1))?;
    let limits = orchestrator_core::api::layers::ApiLimits {
        max_in_flight: args.max_in_flight,
        ..Default::default()
    };
    let api = ApiServer::with_pool_and_limits(&db, pool, None, limits).await;
    // Ids to ask for, spread over the whole history.
    let codes = db
        .strings(&format!(
            "SELECT code FROM metrics ORDER BY random() LIMIT {}",
            args.requests.min(10_000)
        ))
        .await;
    let run_ids = db
        .strings(&format!(
            "SELECT id FROM metric_runs TABLESAMPLE SYSTEM (1) LIMIT {}",
            args.requests.min(10_000)
        ))
        .await;
    let endpoints: Vec<(&str, PathFn)> = vec![
        (
            "GET /api/v1/metrics?status=pending",
            Box::new(|_| "/api/v1/metrics?status=pending".to_string()),
        ),
        ("GET /api/v1/runs?metric=…", {
            let codes = codes.clone();
            Box::new(move |i| format!("/api/v1/runs?metric={}", codes[i % codes.len()]))
        }),
        ("GET /api/v1/runs/{id}", {
            let ids = run_ids.clone();
            Box::new(move |i| format!("/api/v1/runs/{}", ids[i % ids.len()]))
        }),
        ("GET /api/v1/metrics/{code}", {
            let codes = codes.clone();
            Box::new(move |i| format!("/api/v1/metrics/{}", codes[(i * 7) % codes.len()]))
        }),
    ];
    let api = Arc::new(api);
    println!(
        "{} clients, {} requests per endpoint, at most {} in flight",
        args.clients, args.requests, args.max_in_flight
    );
    for (name, path) in endpoints {
        let path: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::from(path);
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(args.requests)));
        let shed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t0 = Instant::now();
        let tasks: Vec<_> = (0..args.clients)
            .map(|_| {
                let (api, path, latencies, next, shed) = (
                    api.clone(),
                    path.clone(),
                    latencies.clone(),
                    next.clone(),
                    shed.clone(),
                );
                let total = args.requests;
                let backoff = Duration::from_millis(args.shed_backoff_ms);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= total {
                            break;
                        }
                        let p = path(i);
                        // A shed request is retried after the server's
                        // Retry-After, as a well-behaved client does (or
                        // at once with --shed-backoff-ms 0); it counts as
                        // shed, and only the answered attempt's latency is
                        // recorded.
                        let took = loop {
                            let t = Instant::now();
                            // The body is read whole but not parsed: the client
                            // shares the two cores with the server and PostgreSQL.
                            let r = api.client.get(format!("{}{p}", api.base)).send().await;
                            let status = r.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                            let ok = match r {
                                Ok(r) => r.bytes().await.is_ok(),
                                Err(_) => false,
                            };
                            if status != 503 {
                                assert!(ok && status == 200, "{p} failed: {status}");
                                break t.elapsed();
                            }
                            shed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            tokio::time::sleep(backoff).await;
                        };
                        latencies.lock().await.push(took);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.context("a client failed")?;
        }
        let wall = t0.elapsed();
        let mut l = latencies.lock().await.clone();
        l.sort();
        let shed = shed.load(std::sync::atomic::Ordering::SeqCst);
        println!(
            "{name:<38} p50 {:>9}  p99 {:>9}  max {:>9}  ({:.0} answered/s, {:.1}% of attempts shed)",
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.99)),
            ms(*l.last().unwrap_or(&Duration::ZERO)),
            l.len() as f64 / wall.as_secs_f64(),
            100.0 * shed as f64 / (shed + l.len()).max(1) as f64
        );
    }
    if args.keep {
        println!("kept database {}", db.keep());
    }
    Ok(())
}
