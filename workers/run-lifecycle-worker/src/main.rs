//! `run-lifecycle-worker`: consumes started / heartbeat / completed events,
//! tracks every run, and times out and retries silent runs.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::telemetry;
use orchestrator_core::workers::{run_lifecycle, shutdown_on_signals, Common, RunLifecycleDeps};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    let _telemetry = telemetry::init(env.log_format()?, env!("CARGO_BIN_NAME"));
    let queue = Common::from_env(&env)
        .await
        .and_then(|c| {
            c.consumer_deps(
                &env,
                "RUN_LIFECYCLE_QUEUE_URL",
                "RUN_LIFECYCLE_DLQ_URL",
                "0.0.0.0:9091",
            )
        })
        .context("Failed to configure the run-lifecycle worker")?;
    let deps = RunLifecycleDeps {
        queue,
        timeouts: env.timeouts()?,
        reaper_interval: env.reaper_interval()?,
    };
    run_lifecycle(deps, shutdown_on_signals())
        .await
        .context("Failed to run the run-lifecycle worker")
}
