//! `orchestrator`: the operator CLI (docs/operations.md). Load and benchmark
//! tools live in the separate `loadgen` binary, which is never shipped.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod backfill;
mod catalog;
mod db;
mod dlq;
mod metrics;
mod probe;
mod provision;
mod replay;
mod runs;
mod runs_watch;
mod serve;
mod simulate;

use anyhow::Result;
use clap::{Parser, Subcommand};
use orchestrator_core::ground::telemetry;

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
    /// Apply pending schema migrations (idempotent), or adopt a
    /// metrics-engine-cp database in place (--adopt).
    Migrate(db::MigrateArgs),
    /// Create the queues, DLQs, topic, subscription and bucket (idempotent).
    Provision(provision::ProvisionArgs),
    /// Validate or apply a catalog file (JSON or YAML).
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Send NDJSON events (one per line) to a queue or topic.
    Replay(replay::ReplayArgs),
    /// Inspect and act on metric runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Compute metrics over a past range with the inputs of each moment.
    #[command(subcommand)]
    Backfill(backfill::BackfillCommand),
    /// Hold or resume a metric's runs.
    #[command(subcommand)]
    Metrics(metrics::MetricsCommand),
    /// List dead letters or move them back to their queue.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// A stand-in metric runner: answers run requests with lifecycle events.
    SimulateRunner(simulate::SimulateArgs),
    /// The operator HTTP API and web console on API_ADDR (default 127.0.0.1:8080);
    /// actions need API_TOKEN. JSON logs, like the workers.
    Serve,
    /// Exit 0 when URL (plain HTTP on this host, e.g. a worker's
    /// http://127.0.0.1:9090/healthz) answers 200 within 3 s: the container
    /// health check of an image that has no shell or curl.
    Probe { url: String },
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // `serve` is a long-running service: JSON logs unless LOG_FORMAT says otherwise.
    let telemetry = match cli.command {
        Command::Serve => match orchestrator_core::config::Env::process().log_format() {
            Ok(format) => telemetry::init(format, "orchestrator-serve"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        },
        _ => telemetry::init_for_cli("orchestrator"),
    };
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
        Command::Backfill(cmd) => backfill::run(cmd).await,
        Command::Metrics(cmd) => metrics::run(cmd).await,
        Command::Dlq(cmd) => dlq::run(cmd).await,
        Command::Provision(args) => provision::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::SimulateRunner(args) => simulate::run(args).await,
        Command::Serve => serve::run().await,
        Command::Probe { url } => probe::run(&url),
    }
}
