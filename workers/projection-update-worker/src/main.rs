//! `projection-update-worker`: consumes projection updates from SQS, decides
//! which metric runs they complete, and publishes run requests to SNS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::ground::{shutdown, telemetry};
use orchestrator_core::workers::{run_projection_updates, ConsumerDeps, WorkerKind};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    let _telemetry = telemetry::init(env.log_format()?, env!("CARGO_BIN_NAME"));
    let deps = ConsumerDeps::from_env(&env, WorkerKind::ProjectionUpdates)
        .await
        .context("Failed to configure the projection-update worker")?;
    run_projection_updates(deps, shutdown::on_signals())
        .await
        .context("Failed to run the projection-update worker")
}
