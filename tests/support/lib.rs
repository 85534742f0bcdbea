//! What the tests and `loadgen` share: a fresh database migrated from
//! `migrations/` per test or run ([`db`]), uniquely named LocalStack stacks
//! ([`aws`]), worker processes ([`process`]), the synthetic catalog generator
//! ([`synth`]), the "nothing lost, nothing duplicated" checks ([`invariants`],
//! [`fleet`]), a proxy counting round trips ([`turns`]), and test fixtures.
//! Never shipped.

pub mod api;
pub mod api_seed;
pub mod aws;
pub mod db;
pub mod fixtures;
pub mod fleet;
pub mod http;
pub mod invariants;
pub mod memory_limit;
pub mod private_pg;
pub mod process;
pub mod proxy;
pub mod reference;
pub mod synth;
pub mod terraform;
pub mod turns;

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
