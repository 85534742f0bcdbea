//! `run-lifecycle-worker`: tracks metric runs. Today it runs the timeout and
//! retry sweep (SPEC §5.5); its SQS consumer for started / heartbeat /
//! completed events is wired in with the messaging work.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use orchestrator_core::app::Context as AppContext;
use orchestrator_core::config::Env;
use orchestrator_core::store::pool;
use orchestrator_core::telemetry;
use orchestrator_core::workers::{run_lifecycle, shutdown_on_signals, RunLifecycleDeps};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    telemetry::init(env.log_format()?);
    let database_url = env.database_url()?;
    let settings = env.request_settings()?;
    let deps = RunLifecycleDeps {
        ctx: AppContext::new(
            pool::build_pool(&database_url, 8).context("Failed to configure the database pool")?,
            settings,
        ),
        timeouts: env.timeouts()?,
        reaper_interval: env.reaper_interval()?,
    };
    run_lifecycle(deps, shutdown_on_signals()).await;
    Ok(())
}
