//! Shared helpers for tests against a real PostgreSQL: each [`TestDb`] is a
//! fresh database migrated from `migrations/`, dropped when the test ends.

pub mod aws;
pub mod db;
pub mod fixtures;
pub mod fleet;
pub mod http;
pub mod invariants;
pub mod private_pg;
pub mod proxy;
pub mod terraform;

pub use db::TestDb;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Some` or `timeout` passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
