//! `projection-update-worker`: consumes projection updates from SQS and
//! processes them with `orchestrator_core::app::projection_update`.
//!
//! The SQS consumer runtime and the SNS outbox publisher arrive with the
//! messaging work; until then this binary validates its configuration and
//! database connection and says plainly that it cannot consume yet.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use orchestrator_core::config::Env;
use orchestrator_core::store::pool;
use orchestrator_core::telemetry;

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::process();
    telemetry::init(env.log_format()?);
    let database_url = env.database_url()?;
    env.request_settings()?;
    let pool =
        pool::build_pool(&database_url, 2).context("Failed to configure the database pool")?;
    let _probe = pool
        .get()
        .await
        .with_context(|| format!("Failed to connect to {}", pool::redact_url(&database_url)))?;
    tracing::error!(
        "the SQS consumer is not built yet; refusing to start a worker that would consume nothing"
    );
    bail!("projection-update-worker cannot consume SQS yet (messaging work pending)")
}
