//! `loadgen`: benchmarks and load tools for the metric orchestrator. It
//! creates its own databases and queues, drives the real workers, and prints
//! figures (see BENCHMARKS.md). Never shipped: the image holds only the
//! operator CLI and the two workers.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_api;
mod bench_backfill;
mod bench_definitions;
mod bench_freshness;
mod bench_latency;
mod bench_messaging;
mod bench_scale;
mod db_work;
mod generate;
mod live_stream;
mod soak;
mod wait_profile;
mod worker_metrics;

use clap::{Args, Parser, Subcommand};
use orchestrator_core::ground::telemetry;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Benchmarks and load for the metric orchestrator (not for production)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Benchmark projection-update processing against PostgreSQL.
    Bench(bench::BenchArgs),
    /// Benchmark the projection-update worker through LocalStack.
    BenchMessaging(bench_messaging::BenchMessagingArgs),
    /// The fleet at a steady rate for a while: memory over time, nothing lost.
    Soak(soak::SoakArgs),
    /// Write a synthetic catalog and update stream of any size.
    Generate(generate::GenerateArgs),
    /// The operator API's latency on a large seeded history.
    BenchApi(bench_api::BenchApiArgs),
    /// The freshness sweep's time and a worker's memory at 50,000 metrics.
    BenchFreshness(bench_freshness::BenchFreshnessArgs),
    /// Periodic work and the update path at 5,000, 50,000 and 500,000
    /// metrics: quiet sweeps, a sweep with 1% due, update latency.
    BenchScale(bench_scale::BenchScaleArgs),
    /// A definition change to every metric at once: apply, re-runs, and
    /// projection-update latency meanwhile.
    BenchDefinitions(bench_definitions::BenchDefinitionsArgs),
    /// A 10,000-point backfill: plan time, execution rate, live updates beside it.
    BenchBackfill(bench_backfill::BenchBackfillArgs),
}

/// The server where loadgen creates (and drops) its scratch databases.
#[derive(Args, Clone)]
pub struct ServerArgs {
    /// PostgreSQL URL of a server where the user may create databases.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[tokio::main]
async fn main() {
    let telemetry = telemetry::init_for_cli("loadgen");
    let result = match Cli::parse().command {
        Command::Bench(args) => bench::run(args).await,
        Command::BenchMessaging(args) => bench_messaging::run(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::Generate(args) => generate::run(args),
        Command::BenchApi(args) => bench_api::run(args).await,
        Command::BenchFreshness(args) => bench_freshness::run(args).await,
        Command::BenchScale(args) => bench_scale::run(args).await,
        Command::BenchDefinitions(args) => bench_definitions::run(args).await,
        Command::BenchBackfill(args) => bench_backfill::run(args).await,
    };
    if let Err(e) = result {
        drop(telemetry);
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
