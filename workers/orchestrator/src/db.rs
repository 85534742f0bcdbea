//! Database arguments shared by subcommands, and `migrate`.

use anyhow::{Context, Result};
use clap::Args;
use orchestrator_core::store::migrate::{self as store_migrate, Adoption};
use orchestrator_core::store::roles::{self as store_roles, RoleName, RoleSpec, Roles};
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
        pool::check_connection(&pool, &target)
            .await
            .with_context(|| {
                format!(
                    "Failed to connect to {}",
                    pool::redact_url(&self.database_url)
                )
            })?;
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
    /// The workers' role: read and write on every table, no DDL. Created
    /// when missing (with LOGIN when its password is given).
    #[arg(long, env = "DATABASE_WORKER_ROLE", value_parser = clap::value_parser!(RoleNameArg))]
    pub worker_role: Option<RoleNameArg>,
    /// The worker role's password (set on every run: rotation is a re-run).
    #[arg(
        long,
        env = "DATABASE_WORKER_PASSWORD",
        hide_env_values = true,
        requires = "worker_role"
    )]
    pub worker_password: Option<String>,
    /// The API's role (`orchestrator serve`): reads, and writes only what its
    /// actions write.
    #[arg(long, env = "DATABASE_API_ROLE", value_parser = clap::value_parser!(RoleNameArg))]
    pub api_role: Option<RoleNameArg>,
    /// The API role's password.
    #[arg(
        long,
        env = "DATABASE_API_PASSWORD",
        hide_env_values = true,
        requires = "api_role"
    )]
    pub api_password: Option<String>,
}

/// A role name checked where it is written.
#[derive(Clone, Debug)]
pub struct RoleNameArg(RoleName);

impl std::str::FromStr for RoleNameArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(RoleNameArg)
    }
}

impl MigrateArgs {
    fn roles(&self) -> Roles {
        let spec = |name: &Option<RoleNameArg>, password: &Option<String>| {
            name.as_ref().map(|n| RoleSpec {
                name: n.0.clone(),
                password: password.clone(),
            })
        };
        Roles {
            worker: spec(&self.worker_role, &self.worker_password),
            api: spec(&self.api_role, &self.api_password),
        }
    }
}

pub async fn migrate(args: &MigrateArgs) -> Result<()> {
    let pool = args.db.pool().await?;
    if args.adopt {
        adopt(&pool, args.dry_run).await?;
        if args.dry_run {
            return Ok(());
        }
    } else {
        let applied = store_migrate::migrate(&pool)
            .await
            .context("Failed to migrate the schema")?;
        print_applied(&applied);
    }
    grant(&pool, &args.roles()).await
}

async fn grant(pool: &Pool, roles: &Roles) -> Result<()> {
    if roles.is_empty() {
        return Ok(());
    }
    let granted = store_roles::apply(pool, roles)
        .await
        .context("Failed to grant the database roles")?;
    for g in granted {
        let what = match (g.created, g.login) {
            (true, true) => "created (LOGIN)",
            (true, false) => {
                "created NOLOGIN: grant it to the login roles that use it, or give its password"
            }
            (false, _) => "exists",
        };
        println!("role {}: {what}; privileges granted", g.role);
    }
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
