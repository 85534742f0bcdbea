//! Retry policy for transactions that lost a race (serialization failure,
//! deadlock, conditional update that found another state) and for reads
//! made outside one ([`retrying`]), and the plan mode of a single statement
//! ([`with_generic_plan`]).

use std::future::Future;
use std::time::Duration;

use super::{GenericClient, StoreError};

/// How many times a use case runs its transaction before giving up.
pub const MAX_ATTEMPTS: u32 = 8;

/// The pause before attempt `attempt + 1`, or `None` to give up.
pub fn retry_delay(err: &StoreError, attempt: u32) -> Option<Duration> {
    if !err.is_retryable() || attempt >= MAX_ATTEMPTS {
        return None;
    }
    // 2, 4, 8 … ms, capped; jitter from the clock keeps competing workers apart.
    let base = 2u64 << attempt.min(7);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % base.max(1);
    Some(Duration::from_millis(base + jitter))
}

/// Runs `work` (reads outside a transaction, on a connection of its own)
/// again after the same pauses as [`crate::in_transaction!`] when it fails in a way
/// worth retrying, such as a lost connection.
pub async fn retrying<T, F, Fut>(mut work: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match work().await {
            Err(e) => match retry_delay(&e, attempt) {
                Some(pause) => {
                    tracing::debug!(error = %e, attempt, "read failed; running it again");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(e),
            },
            done => return done,
        }
    }
}

/// Runs `query`, a statement of `db` (a transaction or a connection), with
/// its generic plan, in one pipelined round trip: the mode is set for it
/// alone and reset after it. The three are queued together at the first
/// poll, so the reset is sent whenever the setting is, even if the caller
/// stops waiting; in a transaction that fails between them, the rollback
/// undoes the setting.
///
/// For statements read with one or a few keys, PostgreSQL's default plans
/// the statement afresh at every call once its custom plan looks cheaper
/// than the generic one, and the planning can cost more than the run: the
/// evaluation's inputs took 0.29 ms of planning for 0.03 ms of execution a
/// call in `bench-messaging` (d). Only for statements whose generic plan is
/// as good whatever the keys: no `$n IS NULL OR …` that a custom plan would
/// turn into an index condition (the inputs read has one, but as a filter
/// on rows its index already found).
pub async fn with_generic_plan<T>(
    db: &impl GenericClient,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, tokio_postgres::Error> {
    let (_, out, _) = futures::try_join!(
        db.batch_execute("SET plan_cache_mode = force_generic_plan"),
        query,
        db.batch_execute("RESET plan_cache_mode"),
    )?;
    Ok(out)
}

/// Errors a transaction body may end with; those that wrap a retryable store
/// error make the transaction run again.
pub trait TxError: From<StoreError> + std::fmt::Display {
    fn as_store_error(&self) -> Option<&StoreError>;
}

impl TxError for StoreError {
    fn as_store_error(&self) -> Option<&StoreError> {
        Some(self)
    }
}

/// Runs `$body` (an expression using `$tx`, typically `work(&tx).await?`) in
/// a fresh transaction, committing on success and running it again, after a
/// short pause, when it lost a race. Evaluates to `Result<T, E>`.
#[macro_export]
macro_rules! in_transaction {
    ($pool:expr, $err:ty, |$tx:ident| $body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let result: ::std::result::Result<_, $err> = async {
                let mut client = $pool.get().await.map_err($crate::store::StoreError::from)?;
                let $tx = client.transaction().await.map_err($crate::store::StoreError::from)?;
                let value = $body;
                $tx.commit().await.map_err($crate::store::StoreError::from)?;
                Ok(value)
            }
            .await;
            match result {
                Ok(v) => break Ok(v),
                Err(e) => {
                    let delay = $crate::store::tx::TxError::as_store_error(&e)
                        .and_then(|se| $crate::store::tx::retry_delay(se, attempt));
                    match delay {
                        Some(d) => {
                            ::tracing::debug!(error = %e, attempt, "transaction lost a race; running it again");
                            ::tokio::time::sleep(d).await;
                        }
                        None => break Err(e),
                    }
                }
            }
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::{retrying, StoreError, MAX_ATTEMPTS};
    use std::cell::Cell;

    /// Each case: the errors the work returns before it succeeds (`None`:
    /// it never does), the result, and how many times it ran.
    #[tokio::test(start_paused = true)]
    async fn reads_are_run_again_only_when_the_failure_is_worth_it() {
        let conflict = || StoreError::Conflict("lost a race".into());
        let corrupt = || StoreError::Corrupt("bad row".into());
        type Case = (&'static str, Vec<fn() -> StoreError>, bool, u32);
        let cases: Vec<Case> = vec![
            ("succeeds at once", vec![], true, 1),
            (
                "two lost races, then succeeds",
                vec![conflict, conflict],
                true,
                3,
            ),
            ("a corrupt row is not retried", vec![corrupt], false, 1),
            (
                "gives up after MAX_ATTEMPTS",
                vec![conflict; MAX_ATTEMPTS as usize + 2],
                false,
                MAX_ATTEMPTS,
            ),
        ];
        for (name, failures, ok, runs) in cases {
            let calls = Cell::new(0u32);
            let result = retrying(|| {
                let n = calls.get();
                calls.set(n + 1);
                let outcome = match failures.get(n as usize) {
                    Some(fail) => Err(fail()),
                    None => Ok(n),
                };
                async move { outcome }
            })
            .await;
            assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
            assert_eq!(calls.get(), runs, "{name}");
        }
    }
}
