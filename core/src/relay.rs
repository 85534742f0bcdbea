//! The outbox relay (docs/semantics.md): publishes run requests after their
//! transaction committed. `publish_now` is called right after a commit (low
//! latency); `run` sweeps whatever is left (crash recovery), forever, with
//! capped exponential backoff per row. No transaction is open while the
//! publisher talks to the network: rows are leased, published, then marked.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::backpressure::Backpressure;
use crate::domain::ids::OutboxId;
use crate::domain::outgoing::Outgoing;
use crate::in_transaction;
use crate::store::outbox::{self, OutboxMessage};
use crate::store::{runs, Pool, StoreError};

pub use crate::messaging::publisher::{PublishError, Publisher};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelayConfig {
    /// Rows claimed per round.
    pub batch: i64,
    /// How long a claim keeps other relays away from a row.
    pub lease: Duration,
    /// First retry delay after a failed publish; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Pause between sweeps when there is nothing to do.
    pub sweep_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 100,
            lease: Duration::from_secs(30),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

impl RelayConfig {
    /// The pause after the `attempts`-th failed publish of a row.
    pub fn backoff(&self, attempts: i32) -> Duration {
        let exp = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        self.base_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayReport {
    pub published: usize,
    pub failed: usize,
    pub dispatched: u64,
}

crate::tally::tally!(RelayReport {
    published,
    failed,
    dispatched
});

pub struct Relay<P> {
    pool: Pool,
    publisher: P,
    config: RelayConfig,
}

impl<P: Publisher> Relay<P> {
    pub fn new(pool: Pool, publisher: P, config: RelayConfig) -> Self {
        Self {
            pool,
            publisher,
            config,
        }
    }

    #[cfg(feature = "test-support")]
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// Publishes the given rows now (call right after their commit).
    pub async fn publish_now(&self, ids: &[OutboxId]) -> Result<RelayReport, StoreError> {
        self.publish_received(ids, &[]).await
    }

    /// [`Relay::publish_now`] for rows written by received messages, each
    /// given as (the index in `ids` of its first row, when it was received):
    /// the time from each receipt to the start of the publish call carrying
    /// its first run request is recorded
    /// (`orchestrator_receipt_to_publish_seconds`, the worker's own part of
    /// the latency). Rows another relay claimed first are not counted.
    #[instrument(skip_all, fields(rows = ids.len()))]
    pub async fn publish_received(
        &self,
        ids: &[OutboxId],
        received: &[(usize, Instant)],
    ) -> Result<RelayReport, StoreError> {
        // A claim takes at most `batch` rows: more ids (a scenario with 150
        // dependent metrics) go in several rounds rather than to the sweeper.
        let mut total = RelayReport::default();
        let size = self.config.batch.max(1) as usize;
        for (k, chunk) in ids.chunks(size).enumerate() {
            let claimed = self.claim(Some(chunk)).await?;
            if !claimed.is_empty() {
                for (_, at) in received.iter().filter(|(first, _)| first / size == k) {
                    metrics::histogram!(crate::prometheus::RECEIPT_TO_PUBLISH_SECONDS)
                        .record(at.elapsed().as_secs_f64());
                }
            }
            total += self.publish_claimed(claimed).await?;
        }
        Ok(total)
    }

    /// Publishes every due row, batch after batch, until none is left.
    pub async fn sweep_once(&self) -> Result<RelayReport, StoreError> {
        let mut total = RelayReport::default();
        loop {
            let claimed = self.claim(None).await?;
            let full = claimed.len() as i64 >= self.config.batch;
            let report = self.publish_claimed(claimed).await?;
            total += report;
            if !full || report.published == 0 {
                return Ok(total);
            }
        }
    }

    /// Sweeps every `sweep_interval` until `shutdown` is canceled. Errors
    /// are logged and retried at the next sweep.
    pub async fn run(&self, shutdown: CancellationToken) {
        crate::shutdown::every(self.config.sweep_interval, shutdown, || async {
            match self.sweep_once().await {
                Ok(r) if r.published + r.failed > 0 => {
                    tracing::info!(published = r.published, failed = r.failed, "outbox sweep")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox sweep failed; will retry"),
            }
        })
        .await
    }

    #[cfg(feature = "test-support")]
    pub async fn backlog(&self) -> Result<outbox::Backlog, StoreError> {
        in_transaction!(self.pool, StoreError, |tx| outbox::backlog(&tx).await?)
    }

    async fn claim(&self, only: Option<&[OutboxId]>) -> Result<Vec<OutboxMessage>, StoreError> {
        let (batch, lease) = (self.config.batch, self.config.lease);
        in_transaction!(self.pool, StoreError, |tx| outbox::claim(
            &tx, only, batch, lease
        )
        .await?)
    }

    async fn publish_claimed(
        &self,
        claimed: Vec<OutboxMessage>,
    ) -> Result<RelayReport, StoreError> {
        if claimed.is_empty() {
            return Ok(RelayReport::default());
        }
        // One span per request, in the trace of the message that caused it.
        let spans: Vec<tracing::Span> = claimed
            .iter()
            .filter_map(|m| {
                let parent = crate::domain::trace::TraceContext::parse(m.traceparent.as_deref()?)?;
                let span = match &m.kind {
                    Outgoing::RunRequest { run_id, .. } => {
                        tracing::info_span!("publish run request", %run_id, trace_id = %parent.trace_id)
                    }
                    Outgoing::Alert { dedup_key, .. } => {
                        tracing::info_span!("publish alert", %dedup_key, trace_id = %parent.trace_id)
                    }
                };
                crate::telemetry::continue_trace(&span, &parent);
                Some(span)
            })
            .collect();
        let results = self.publisher.publish(&claimed).await;
        drop(spans);
        let mut ok_ids = Vec::new();
        let mut failures = Vec::new();
        for (i, msg) in claimed.iter().enumerate() {
            match results.get(i) {
                Some(Ok(())) => ok_ids.push(msg.id),
                Some(Err(e)) => failures.push((msg, e.0.clone())),
                None => failures.push((msg, "publisher returned no result".to_string())),
            }
        }
        let dispatched = in_transaction!(self.pool, StoreError, |tx| {
            let run_ids = outbox::mark_published(&tx, &ok_ids).await?;
            for (msg, err) in &failures {
                outbox::mark_failed(&tx, msg.id, err, self.config.backoff(msg.attempts)).await?;
            }
            runs::mark_dispatched(&tx, &run_ids).await?
        })?;
        for (msg, err) in &failures {
            tracing::warn!(message = %msg.kind, attempts = msg.attempts, error = %err,
                "publishing failed; it will be retried");
        }
        metrics::counter!(crate::prometheus::PUBLISHED).increment(ok_ids.len() as u64);
        metrics::counter!(crate::prometheus::PUBLISH_FAILURES).increment(failures.len() as u64);
        let now = chrono::Utc::now();
        for msg in claimed.iter().filter(|m| ok_ids.contains(&m.id)) {
            if let Some(sent) = msg.source_sent_at {
                let secs = (now - sent).num_milliseconds().max(0) as f64 / 1e3;
                metrics::histogram!(crate::prometheus::UPDATE_TO_REQUEST_SECONDS).record(secs);
            }
        }
        Ok(RelayReport {
            published: ok_ids.len(),
            failed: failures.len(),
            dispatched,
        })
    }
}

/// The next ids to publish: the next submission, joined by whatever other
/// submissions are already waiting, up to about `max` ids. One update of a
/// fan-out-1 catalog is one id: publishing them together takes one claim, one
/// PublishBatch call and one commit per ten of them instead of per one.
async fn next_ids(
    rx: &tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Submission>>,
    max: i64,
) -> Option<Submission> {
    let mut rx = rx.lock().await;
    let mut next = rx.recv().await?;
    while (next.ids.len() as i64) < max {
        match rx.try_recv() {
            Ok(more) => {
                let base = next.ids.len();
                next.ids.extend(more.ids);
                next.received
                    .extend(more.received.into_iter().map(|(i, at)| (base + i, at)));
            }
            Err(_) => break,
        }
    }
    Some(next)
}

/// Ids committed together, with the receipts of the messages that wrote
/// them: (the index in `ids` of a message's first row, when it arrived).
struct Submission {
    ids: Vec<OutboxId>,
    received: Vec<(usize, Instant)>,
}

/// Hands freshly committed outbox ids to a background publisher so that the
/// message that produced them is not held up by the topic's latency. Bounded:
/// when the publisher falls behind, ids are left to the sweeper (nothing is
/// lost, the rows stay in the outbox).
#[derive(Clone)]
pub struct PublishQueue {
    tx: tokio::sync::mpsc::Sender<Submission>,
    /// Counts the ids submitted and not yet published.
    waiting: Backpressure,
}

impl PublishQueue {
    /// Starts `workers` publishing tasks; they stop when every sender is gone.
    /// `waiting` counts the ids between [`PublishQueue::submit`] and the end
    /// of their publish attempt (the consumer pauses on it).
    pub fn start<P: Publisher + 'static>(
        relay: std::sync::Arc<Relay<P>>,
        capacity: usize,
        workers: usize,
        waiting: Backpressure,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(capacity.max(1));
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let counted = waiting.clone();
        let handle = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..workers.max(1) {
                let (relay, rx, waiting) = (relay.clone(), rx.clone(), counted.clone());
                set.spawn(async move {
                    loop {
                        let Some(Submission { ids, received }) =
                            next_ids(&rx, relay.config.batch).await
                        else {
                            return;
                        };
                        // Bounded so that a hung broker call cannot hold the
                        // consumer's backpressure gate shut: after the lease the
                        // rows are the sweeper's anyway.
                        let lease = relay.config.lease;
                        match tokio::time::timeout(lease, relay.publish_received(&ids, &received)).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "publishing after commit failed; the outbox sweeper will retry");
                            }
                            Err(_) => {
                                tracing::warn!(lease_secs = lease.as_secs(), "publishing after commit outlasted the lease; the outbox sweeper will retry");
                            }
                        }
                        waiting.done(ids.len());
                        report_waiting(&waiting);
                    }
                });
            }
            // A publishing task that panicked takes the queue down with it,
            // so that the worker's supervisor sees it and stops the worker.
            while let Some(ended) = set.join_next().await {
                if let Err(e) = ended {
                    if e.is_panic() {
                        std::panic::resume_unwind(e.into_panic());
                    }
                }
            }
        });
        (Self { tx, waiting }, handle)
    }

    pub fn submit(&self, ids: Vec<OutboxId>) {
        self.send(Submission {
            ids,
            received: Vec::new(),
        });
    }

    /// [`PublishQueue::submit`] for the rows written by a message received
    /// at `received_at`.
    pub fn submit_received(&self, ids: Vec<OutboxId>, received_at: Instant) {
        self.send(Submission {
            ids,
            received: vec![(0, received_at)],
        });
    }

    fn send(&self, submission: Submission) {
        if submission.ids.is_empty() {
            return;
        }
        let n = submission.ids.len();
        // Counted before the send: a publisher may finish them at once.
        self.waiting.add(n);
        if self.tx.try_send(submission).is_err() {
            self.waiting.done(n);
            tracing::debug!("publisher busy; leaving these run requests to the outbox sweeper");
        }
        report_waiting(&self.waiting);
    }
}

fn report_waiting(waiting: &Backpressure) {
    metrics::gauge!(crate::prometheus::PUBLISH_WAITING).set(waiting.pending() as f64);
}

/// An in-process publisher that records what it was given; it can be told to
/// fail. For tests and benchmarks without a broker.
#[cfg(feature = "test-support")]
#[derive(Debug, Default)]
pub struct RecordingPublisher {
    published: std::sync::Mutex<Vec<OutboxMessage>>,
    fail_next: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "test-support")]
impl RecordingPublisher {
    /// The next `n` messages fail to publish.
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn published(&self) -> Vec<OutboxMessage> {
        self.published.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

#[cfg(feature = "test-support")]
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

#[cfg(test)]
mod tests {
    use super::{RelayConfig, Submission};
    use std::time::{Duration, Instant};

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = RelayConfig::default();
        assert_eq!(c.backoff(1), Duration::from_millis(500));
        assert_eq!(c.backoff(2), Duration::from_secs(1));
        assert_eq!(c.backoff(4), Duration::from_secs(4));
        assert_eq!(c.backoff(40), Duration::from_secs(300));
        assert_eq!(c.backoff(i32::MAX), Duration::from_secs(300));
    }

    #[tokio::test]
    async fn waiting_submissions_are_published_together_up_to_the_batch() {
        use crate::domain::ids::OutboxId;
        let ids =
            |raw: &[i64]| -> Vec<OutboxId> { raw.iter().copied().map(OutboxId::new).collect() };
        let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(8);
        let rx = tokio::sync::Mutex::new(rx);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // A submission with its message's receipt, one without (a sweep).
        let sub = |raw: &[i64], received: Option<u64>| Submission {
            ids: ids(raw),
            received: received.map(|ms| (0, at(ms))).into_iter().collect(),
        };
        for s in [
            sub(&[1], Some(1)),
            sub(&[2, 3], None),
            sub(&[4], Some(4)),
            sub(&[5, 6, 7], Some(5)),
        ] {
            tx.send(s).await.unwrap();
        }
        let next = |max| {
            let rx = &rx;
            async move { super::next_ids(rx, max).await.map(|s| (s.ids, s.received)) }
        };
        // Joined until at least `max` ids, never splitting a submission,
        // with the receipts of the messages that wrote them, each at the
        // index of its first row.
        assert_eq!(next(3).await, Some((ids(&[1, 2, 3]), vec![(0, at(1))])));
        let joined = (ids(&[4, 5, 6, 7]), vec![(0, at(4)), (1, at(5))]);
        assert_eq!(next(100).await, Some(joined));
        tx.send(sub(&[8], None)).await.unwrap();
        assert_eq!(next(100).await, Some((ids(&[8]), vec![])));
        drop(tx);
        assert_eq!(next(100).await, None);
    }
}
