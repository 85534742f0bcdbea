//! Consumer settings.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    pub queue_url: String,
    /// Overrides the DLQ named in the queue's RedrivePolicy.
    pub dlq_url: Option<String>,
    /// Messages in flight at once (`WORKER_CONCURRENCY`).
    pub concurrency: usize,
    /// Receives after which a transiently failing message is dead-lettered
    /// (`MAX_RECEIVE_COUNT`).
    pub max_receive_count: u32,
    /// Visibility given on receive and renewed while a handler works.
    pub visibility_timeout: Duration,
    /// Long-poll wait (SQS allows up to 20 s).
    pub wait_time: Duration,
    /// Time in-flight messages get to finish after a shutdown request.
    pub shutdown_grace: Duration,
    /// First visibility back-off after a transient failure; doubles per receive.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Bytes of message bodies and S3 payloads held at once
    /// (`WORKER_INFLIGHT_BYTES`): a message that would pass it waits for
    /// room, still invisible to other consumers.
    pub inflight_bytes: usize,
    /// Which S3 pointers are followed (`S3_POINTER_BUCKETS`,
    /// `S3_EXPECTED_BUCKET_OWNER`).
    pub pointers: crate::messaging::s3::PointerPolicy,
}

/// `WORKER_INFLIGHT_BYTES` when unset: four largest bodies at once.
pub const DEFAULT_INFLIGHT_BYTES: usize = 64 * 1024 * 1024;

impl ConsumerConfig {
    pub fn new(queue_url: impl Into<String>) -> Self {
        Self {
            queue_url: queue_url.into(),
            dlq_url: None,
            concurrency: 8,
            max_receive_count: 5,
            visibility_timeout: Duration::from_secs(30),
            wait_time: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(30),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            inflight_bytes: DEFAULT_INFLIGHT_BYTES,
            pointers: Default::default(),
        }
    }

    /// Visibility back-off after the `receive_count`-th failed receive.
    pub fn backoff(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(16);
        self.base_backoff
            .saturating_mul(1 << exp)
            .min(self.max_backoff)
            .min(Duration::from_secs(43_200))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = ConsumerConfig::new("q");
        assert_eq!(c.backoff(1), Duration::from_secs(2));
        assert_eq!(c.backoff(3), Duration::from_secs(8));
        assert_eq!(c.backoff(100), Duration::from_secs(300));
    }
}
