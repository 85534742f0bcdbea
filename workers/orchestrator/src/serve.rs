//! `orchestrator serve`: the operator HTTP API and web console
//! (`orchestrator_core::api`), configured from the environment like the workers.

use anyhow::{Context, Result};
use orchestrator_core::api::{serve, ServeDeps};
use orchestrator_core::config::Env;
use orchestrator_core::ground::shutdown;

pub async fn run() -> Result<()> {
    let deps = ServeDeps::from_env(&Env::process())
        .await
        .context("Failed to configure the API server")?;
    serve(deps, shutdown::on_signals())
        .await
        .context("Failed to serve the operator API")
}
