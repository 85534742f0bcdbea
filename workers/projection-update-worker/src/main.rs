//! `projection-update-worker`: consumes projection updates from SQS, decides
//! which metric runs they complete, and publishes run requests to SNS.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::telemetry;
use orchestrator_core::workers::{
    run_projection_updates, shutdown_on_signals, Common, ProjectionUpdateDeps,
};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    telemetry::init(env.log_format()?);
    let common = Common::from_env(&env)
        .await
        .context("Failed to configure the worker")?;
    let deps = ProjectionUpdateDeps {
        consumer: env.consumer("PROJECTION_UPDATES_QUEUE_URL", "PROJECTION_UPDATES_DLQ_URL")?,
        ops_addr: env.ops_addr("0.0.0.0:9090")?,
        ctx: common.ctx,
        aws: common.aws,
        relay: common.relay,
    };
    run_projection_updates(deps, shutdown_on_signals())
        .await
        .context("Failed to run the projection-update worker")
}
