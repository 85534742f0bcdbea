//! Schema migrations from `migrations/`, embedded in the binary by refinery,
//! and the adoption of a metrics-engine-cp database (`store::adopt`).

use deadpool_postgres::Pool;

use super::adopt::{self, SchemaState, HISTORY_TABLE};
use super::StoreError;
use crate::domain::adoption::AdoptionReport;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    #[error(
        "this database holds the tables of metrics-engine-cp and no migration history of this \
         fleet; nothing was changed. See what adoption would change with \
         `orchestrator migrate --adopt --dry-run`, then run `orchestrator migrate --adopt`"
    )]
    NeedsAdoption,
    #[error(
        "this database holds some of the tables this fleet or metrics-engine-cp uses ({}) but \
         neither a migration history nor a complete metrics-engine-cp schema; nothing was changed",
        present.join(", ")
    )]
    UnknownSchema { present: Vec<String> },
    #[error("there is no metrics-engine-cp schema to adopt here: the database is empty; run `orchestrator migrate`")]
    NothingToAdopt,
    #[error("adoption would lose rows of {0}; nothing was changed")]
    LostRows(String),
}

/// An arbitrary constant: the advisory lock that serialises concurrent
/// `migrate` calls (several workers or CLIs starting at once).
const MIGRATION_LOCK: i64 = 0x6d65_7472_6963_7300;

/// Applies every migration not yet applied; returns the names of those applied.
/// Refuses, changing nothing, on a metrics-engine-cp database (see [`adopt`]).
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, MigrateError> {
    let mut client = pool.get().await?;
    lock(&client).await?;
    let result = match adopt::schema_state(&client).await {
        Err(e) => Err(e.into()),
        Ok(SchemaState::Managed | SchemaState::Empty) => run_migrations(&mut client).await,
        Ok(SchemaState::Reference) => Err(MigrateError::NeedsAdoption),
        Ok(SchemaState::Partial { present }) => Err(MigrateError::UnknownSchema { present }),
    };
    unlock(&client, result).await
}

/// What `migrate --adopt` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The database was already ours: only pending migrations were applied.
    AlreadyAdopted {
        applied: Vec<String>,
    },
    Adopted(AdoptionReport),
}

/// Adopts a metrics-engine-cp database in place: one transaction rebuilds
/// its tables in our first migration's schema with every row kept and
/// records that migration; the later migrations then apply as usual. With
/// `dry_run` the transaction is rolled back and nothing else runs.
pub async fn adopt(pool: &Pool, dry_run: bool) -> Result<Adoption, MigrateError> {
    let mut client = pool.get().await?;
    lock(&client).await?;
    let result = adopt_locked(&mut client, dry_run).await;
    unlock(&client, result).await
}

async fn adopt_locked(
    client: &mut deadpool_postgres::Object,
    dry_run: bool,
) -> Result<Adoption, MigrateError> {
    match adopt::schema_state(client).await? {
        SchemaState::Reference => {}
        SchemaState::Managed if dry_run => return Ok(Adoption::AlreadyAdopted { applied: vec![] }),
        SchemaState::Managed => {
            let applied = run_migrations(client).await?;
            return Ok(Adoption::AlreadyAdopted { applied });
        }
        SchemaState::Empty => return Err(MigrateError::NothingToAdopt),
        SchemaState::Partial { present } => return Err(MigrateError::UnknownSchema { present }),
    }
    let runner = embedded::migrations::runner();
    let mut migrations = runner.get_migrations().clone();
    migrations.sort_by_key(|m| m.version());
    let first = migrations.first().ok_or(MigrateError::NothingToAdopt)?;
    let tx = client.transaction().await?;
    let mut report = adopt::adopt(&tx, first.sql().unwrap_or_default()).await?;
    report.dry_run = dry_run;
    record_applied(&tx, first).await?;
    if let Some(lost) = report.lost_rows().first() {
        let table = lost.table.to_string();
        tx.rollback().await?;
        return Err(MigrateError::LostRows(table));
    }
    if dry_run {
        tx.rollback().await?;
        report.migrations_after = migrations.iter().skip(1).map(name).collect();
    } else {
        tx.commit().await?;
        report.migrations_after = run_migrations(client).await?;
    }
    Ok(Adoption::Adopted(report))
}

async fn lock(client: &tokio_postgres::Client) -> Result<(), MigrateError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    Ok(())
}

/// Releases the lock; the work's own error wins over an unlock failure.
async fn unlock<T>(
    client: &tokio_postgres::Client,
    result: Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let value = result?;
    unlocked?;
    Ok(value)
}

fn name(m: &refinery::Migration) -> String {
    format!("V{}__{}", m.version(), m.name())
}

async fn run_migrations(
    client: &mut deadpool_postgres::Object,
) -> Result<Vec<String>, MigrateError> {
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut ***client)
        .await?;
    // Metrics that predate definition versions (an upgrade, an adoption)
    // get their version 1 from what is stored.
    let tx = client.transaction().await?;
    super::definitions::stamp_unversioned(&tx, super::definitions::Action::Adopted).await?;
    tx.commit().await?;
    Ok(report.applied_migrations().iter().map(name).collect())
}

/// Writes refinery's history row for `m`, in refinery's own table format, so
/// that refinery sees it applied (same version, name and checksum).
async fn record_applied(
    tx: &deadpool_postgres::Transaction<'_>,
    m: &refinery::Migration,
) -> Result<(), MigrateError> {
    tx.batch_execute(&format!(
        "CREATE TABLE {HISTORY_TABLE} (version INT4 PRIMARY KEY, name VARCHAR(255),
                                       applied_on VARCHAR(255), checksum VARCHAR(255))"
    ))
    .await?;
    let applied_on = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let version = i32::try_from(m.version()).unwrap_or(i32::MAX);
    tx.execute(
        &format!(
            "INSERT INTO {HISTORY_TABLE} (version, name, applied_on, checksum) VALUES ($1, $2, $3, $4)"
        ),
        &[&version, &m.name(), &applied_on, &m.checksum().to_string()],
    )
    .await?;
    Ok(())
}
