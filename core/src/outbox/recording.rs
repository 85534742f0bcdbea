//! A publisher for tests and benchmarks without a broker.

use super::{PublishError, Publisher};
use crate::store::outbox::OutboxMessage;

/// An in-process publisher that records what it was given; it can be told to
/// fail. For tests and benchmarks without a broker.
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    published: std::sync::Mutex<Vec<OutboxMessage>>,
    fail_next: std::sync::atomic::AtomicUsize,
}

impl RecordingPublisher {
    /// The next `n` messages fail to publish.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn published(&self) -> Vec<OutboxMessage> {
        self.published.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Publisher for RecordingPublisher {
    async fn publish(&self, batch: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        use std::sync::atomic::Ordering;
        let mut out = Vec::with_capacity(batch.len());
        for msg in batch {
            let failing = self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if failing {
                out.push(Err(PublishError("injected failure".into())));
            } else {
                if let Ok(mut v) = self.published.lock() {
                    v.push(msg.clone());
                }
                out.push(Ok(()));
            }
        }
        out
    }
}
