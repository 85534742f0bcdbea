//! Schema migrations from `migrations/`, embedded in the binary by refinery.

use deadpool_postgres::Pool;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

/// An arbitrary constant: the advisory lock that serialises concurrent
/// `migrate` calls (several workers or CLIs starting at once).
const MIGRATION_LOCK: i64 = 0x6d65_7472_6963_7300;

/// Applies every migration not yet applied; returns the names of those applied.
pub async fn migrate(pool: &Pool) -> Result<Vec<String>, MigrateError> {
    let mut client = pool.get().await?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .set_abort_divergent(true)
        .run_async(&mut **client)
        .await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let report = report?;
    unlock?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| format!("V{}__{}", m.version(), m.name()))
        .collect())
}
