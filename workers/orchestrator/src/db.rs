//! Database arguments shared by subcommands, and `migrate`.

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_core::store::{migrate as store_migrate, pool, Pool};

#[derive(Args, Clone)]
pub struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

impl DbArgs {
    pub async fn pool(&self) -> Result<Pool> {
        let pool = pool::build_pool(&self.database_url, 8)
            .context("Failed to configure the database pool")?;
        // Connect once now so that a wrong URL fails here, clearly.
        let _probe = pool.get().await.with_context(|| {
            format!(
                "Failed to connect to {}",
                pool::redact_url(&self.database_url)
            )
        })?;
        Ok(pool)
    }
}

pub async fn migrate(args: &DbArgs) -> Result<()> {
    let pool = args.pool().await?;
    let applied = store_migrate::migrate(&pool)
        .await
        .context("Failed to migrate the schema")?;
    if applied.is_empty() {
        println!("schema is up to date");
    } else {
        for m in applied {
            println!("applied {m}");
        }
    }
    Ok(())
}
