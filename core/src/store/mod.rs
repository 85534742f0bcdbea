//! PostgreSQL store: one module per aggregate, each owning all of its SQL.
//! Functions take an open transaction; use cases decide where it begins and
//! ends (see [`tx`]).

pub(crate) mod adopt;
pub mod backfills;
pub mod backlog;
pub mod catalog;
pub mod conninfo;
pub(crate) mod dataset_views;
pub mod definitions;
pub(crate) mod evaluation;
pub(crate) mod event_log;
pub(crate) mod expectations;
pub mod freshness;
pub mod freshness_due;
pub mod ids;
pub mod metric_views;
pub mod migrate;
pub mod outbox;
pub mod pending;
pub mod pool;
pub mod requests;
pub mod roles;
pub mod run_outbox;
pub(crate) mod run_views;
pub mod runs;
pub mod staleness;
pub mod stats;
pub mod tls;
pub mod trigger_policies;
pub mod tx;
pub mod updates;

pub use deadpool_postgres::{GenericClient, Pool, Transaction};

use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("could not get a database connection: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    /// A conditional update found the row in another state than expected:
    /// someone else changed it first. The transaction is retried.
    #[error("concurrent change: {0}")]
    Conflict(String),
}

impl StoreError {
    /// Serialization failures, deadlocks and lost races are worth retrying in
    /// a new transaction; so is a dropped connection.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Db(e) => {
                matches!(
                    e.code(),
                    Some(&SqlState::T_R_SERIALIZATION_FAILURE)
                        | Some(&SqlState::T_R_DEADLOCK_DETECTED)
                ) || e.is_closed()
            }
            StoreError::Conflict(_) => true,
            StoreError::Pool(_) | StoreError::Corrupt(_) => false,
        }
    }

    /// The database could not be reached or answered with a server-side
    /// failure unrelated to the data: the message should be retried later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Db(e) => {
                e.is_closed()
                    || e.code().is_none()
                    || e.code().is_some_and(|c| {
                        let class = &c.code()[..2];
                        // 08 connection, 53 resources, 57 operator intervention, 58 system error
                        matches!(class, "08" | "53" | "57" | "58")
                    })
            }
            _ => false,
        }
    }
}

impl StoreError {
    /// The database refused the data itself (SQLSTATE class 22, data
    /// exception, or 23, integrity constraint violation): trying the same
    /// data again can never succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            StoreError::Db(e) => e
                .code()
                .is_some_and(|c| matches!(&c.code()[..2], "22" | "23")),
            _ => false,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Whether the database answers a trivial query (readiness).
pub async fn ping(pool: &Pool) -> StoreResult<()> {
    pool.get().await?.execute("SELECT 1", &[]).await?;
    Ok(())
}

/// The database clock (`now()`: the start of the current transaction).
pub async fn db_now(tx: &Transaction<'_>) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    let stmt = tx.prepare_cached("SELECT now()").await?;
    Ok(tx.query_one(&stmt, &[]).await?.get(0))
}
