//! `projection-update-worker`: consumes projection updates from SQS, decides
//! which metric runs they complete, and publishes run requests to SNS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::telemetry;
use orchestrator_core::workers::{run_projection_updates, shutdown_on_signals, Common};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    let _telemetry = telemetry::init(env.log_format()?, env!("CARGO_BIN_NAME"));
    let deps = Common::from_env(&env)
        .await
        .and_then(|c| {
            c.consumer_deps(
                &env,
                "PROJECTION_UPDATES_QUEUE_URL",
                "PROJECTION_UPDATES_DLQ_URL",
                "0.0.0.0:9090",
            )
        })
        .context("Failed to configure the projection-update worker")?;
    run_projection_updates(deps, shutdown_on_signals())
        .await
        .context("Failed to run the projection-update worker")
}
