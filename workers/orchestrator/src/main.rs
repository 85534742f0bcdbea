//! `orchestrator`: the operator CLI (SPEC §6).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod bench_latency;
mod bench_messaging;
mod catalog;
mod db;
mod dlq;
mod generate;
mod proc;
mod provision;
mod replay;
mod runs;
mod runs_watch;
mod scratch;
mod simulate;
mod soak;

use anyhow::Result;
use clap::{Parser, Subcommand};
use orchestrator_core::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "orchestrator",
    version,
    about = "Operate the metric orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending schema migrations (idempotent).
    Migrate(db::DbArgs),
    /// Validate or apply a catalog file (JSON or YAML).
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Inspect and act on metric runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// List dead letters or move them back to their queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Write a synthetic catalog and update stream of any size (load work).
    Generate(generate::GenerateArgs),
    /// Benchmark projection-update processing against PostgreSQL.
    Bench(bench::BenchArgs),
    /// Benchmark the projection-update worker through LocalStack.
    BenchMessaging(bench_messaging::BenchMessagingArgs),
    /// Create the queues, DLQs, topic, subscription and bucket (idempotent).
    Provision(provision::ProvisionArgs),
    /// Send NDJSON events (one per line) to a queue or topic.
    Replay(replay::ReplayArgs),
    /// The fleet at a steady rate for a while: memory over time, nothing lost.
    Soak(soak::SoakArgs),
    /// A stand-in metric runner: answers run requests with lifecycle events.
    SimulateRunner(simulate::SimulateArgs),
}

#[tokio::main]
async fn main() {
    let telemetry = telemetry::init(
        std::env::var("LOG_FORMAT")
            .ok()
            .and_then(|f| f.parse().ok())
            .unwrap_or(LogFormat::Pretty),
        "orchestrator",
    );
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        drop(telemetry);
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Migrate(args) => db::migrate(&args).await,
        Command::Catalog(cmd) => catalog::run(cmd).await,
        Command::Runs(cmd) => runs::run(cmd).await,
        Command::Dlq(cmd) => dlq::run(cmd).await,
        Command::Generate(args) => generate::run(args),
        Command::Bench(args) => bench::run(args).await,
        Command::BenchMessaging(args) => bench_messaging::run(args).await,
        Command::Provision(args) => provision::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Soak(args) => soak::run(args).await,
        Command::SimulateRunner(args) => simulate::run(args).await,
    }
}
