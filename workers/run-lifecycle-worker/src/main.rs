//! `run-lifecycle-worker`: consumes started / heartbeat / completed events,
//! tracks every run, and times out and retries silent runs.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::ground::{shutdown, telemetry};
use orchestrator_core::workers::{run_lifecycle, RunLifecycleDeps};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    let _telemetry = telemetry::init(env.log_format()?, env!("CARGO_BIN_NAME"));
    let deps = RunLifecycleDeps::from_env(&env)
        .await
        .context("Failed to configure the run-lifecycle worker")?;
    run_lifecycle(deps, shutdown::on_signals())
        .await
        .context("Failed to run the run-lifecycle worker")
}
