//! Backpressure between a worker's publisher and its SQS consumer: the run
//! requests committed but not yet handed to SNS are counted, and the consumer
//! receives no new message while that count is at its limit.
//!
//! Why: handling an update is cheaper than publishing its ~33 run requests,
//! so without a limit a worker takes updates faster than the broker accepts
//! their requests. The committed requests then wait in memory and in the
//! outbox (nothing is lost, but each waits longer), while the handlers' CPU is
//! taken from the publisher and, on a shared machine, from the broker. The
//! updates not yet received wait in SQS instead, where they cost nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Run requests a worker may hold between commit and publish before its
/// consumer pauses: about one to two seconds of what one LocalStack core
/// publishes (500–900 messages/s), far more than one receive brings (ten
/// updates of scenario A's fan-out are ~330).
pub const DEFAULT_LIMIT: usize = 1_000;

/// A shared count with a limit; clones count together.
#[derive(Clone, Debug)]
pub struct Backpressure {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pending: AtomicUsize,
    limit: usize,
    below: Notify,
}

impl Backpressure {
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                pending: AtomicUsize::new(0),
                limit: limit.max(1),
                below: Notify::new(),
            }),
        }
    }

    /// `n` more items are waiting.
    pub fn add(&self, n: usize) {
        self.inner.pending.fetch_add(n, Ordering::AcqRel);
    }

    /// `n` items are done with (published or left to the outbox sweeper).
    pub fn done(&self, n: usize) {
        let before = self
            .inner
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            })
            .unwrap_or(0);
        if before.saturating_sub(n) < self.inner.limit {
            self.inner.below.notify_waiters();
        }
    }

    pub fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    /// Returns once fewer than the limit are waiting.
    pub async fn wait_below_limit(&self) {
        loop {
            let below = self.inner.below.notified();
            tokio::pin!(below);
            // Registered before the check, so a `done` between the check
            // and the await still wakes us.
            below.as_mut().enable();
            if self.pending() < self.inner.limit {
                return;
            }
            below.await;
        }
    }
}

impl Default for Backpressure {
    fn default() -> Self {
        Self::new(DEFAULT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backpressure;

    async fn opens_within(b: &Backpressure, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), b.wait_below_limit())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn waits_while_at_the_limit_and_opens_when_items_are_done() {
        let b = Backpressure::new(10);
        assert!(opens_within(&b, 10).await, "empty: open");
        b.add(9);
        assert!(opens_within(&b, 10).await, "9 of 10: open");
        b.add(5);
        assert!(!opens_within(&b, 20).await, "14 of 10: closed");
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.wait_below_limit().await })
        };
        b.done(3);
        assert!(!opens_within(&b, 20).await, "11 of 10: still closed");
        b.done(2);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("9 of 10 wakes the waiter")
            .unwrap();
        assert_eq!(b.pending(), 9);
    }

    #[test]
    fn done_never_goes_below_zero_and_a_zero_limit_is_one() {
        let b = Backpressure::new(0);
        b.add(1);
        b.done(5);
        assert_eq!(b.pending(), 0);
        b.add(1);
        assert_eq!(b.pending(), 1);
    }
}
