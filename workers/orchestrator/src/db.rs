//! Database arguments shared by subcommands, and `migrate`.

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_core::store::migrate::{self as store_migrate, Adoption};
use orchestrator_core::store::{pool, Pool};

#[derive(Args, Clone)]
pub struct DbArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Replaces the URL's password (e.g. injected from Secrets Manager).
    #[arg(long, env = "DATABASE_PASSWORD", hide_env_values = true)]
    pub database_password: Option<String>,
}

impl DbArgs {
    pub async fn pool(&self) -> Result<Pool> {
        let target = pool::Target::parse(&self.database_url)
            .context("Failed to configure the database pool")?;
        let options = pool::PoolOptions {
            password: self.database_password.clone(),
            ..pool::PoolOptions::sized(8)
        };
        let pool = pool::pool_for(target.clone(), &options)
            .context("Failed to configure the database pool")?;
        // Connect once now so that a wrong URL or a refused certificate
        // fails here, clearly.
        pool::check_connection(&pool, &target).await?;
        Ok(pool)
    }
}

#[derive(Args, Clone)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Take over a metrics-engine-cp database in place: every row is kept,
    /// what this fleet's invariants forbid is reconciled, then the usual
    /// migrations apply. One transaction; running it again changes nothing.
    #[arg(long)]
    pub adopt: bool,
    /// With --adopt: print what adoption would change, and change nothing.
    #[arg(long, requires = "adopt")]
    pub dry_run: bool,
}

pub async fn migrate(args: &MigrateArgs) -> Result<()> {
    let pool = args.db.pool().await?;
    if args.adopt {
        return adopt(&pool, args.dry_run).await;
    }
    let applied = store_migrate::migrate(&pool)
        .await
        .context("Failed to migrate the schema")?;
    print_applied(&applied);
    Ok(())
}

fn print_applied(applied: &[String]) {
    if applied.is_empty() {
        println!("schema is up to date");
    }
    for m in applied {
        println!("applied {m}");
    }
}

async fn adopt(pool: &Pool, dry_run: bool) -> Result<()> {
    let adoption = store_migrate::adopt(pool, dry_run)
        .await
        .context("Failed to adopt the database")?;
    match adoption {
        Adoption::Adopted(report) => println!("{report}"),
        Adoption::AlreadyAdopted { applied } => {
            println!("this database is already managed by this fleet: nothing to adopt");
            print_applied(&applied);
        }
    }
    Ok(())
}
