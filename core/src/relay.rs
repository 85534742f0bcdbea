//! The outbox relay (docs/semantics.md): publishes run requests and alerts
//! after their transaction committed. Right after a commit (low latency), a
//! [`PublishQueue`] hands the relay what that commit wrote: rows born leased
//! to it (`publish_handed`), run requests to claim by their keys
//! (`publish_requests`), rows of the outbox table to claim by id
//! (`publish_now`). `run` sweeps whatever is left (crash recovery), forever,
//! with capped exponential backoff per row. No transaction is open while the
//! publisher talks to the network: rows are leased, published, then marked.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::backpressure::Backpressure;
use crate::domain::ids::OutboxId;
use crate::domain::outgoing::Outgoing;
use crate::in_transaction;
use crate::store::outbox::{self, Claim, OutboxMessage, RequestKey};
use crate::store::{Pool, StoreError};

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

    /// Publishes the given rows of the outbox table now (alerts, retries'
    /// requests; call right after their commit).
    #[instrument(skip_all, fields(rows = ids.len()))]
    pub async fn publish_now(&self, ids: &[OutboxId]) -> Result<RelayReport, StoreError> {
        self.publish_rows(Rows::ToClaim(ids), &[]).await
    }

    /// Publishes now the run requests an evaluation wrote (call right after
    /// their commit), found by their keys.
    #[instrument(skip_all, fields(rows = requests.len()))]
    pub async fn publish_requests(
        &self,
        requests: &[RequestKey],
    ) -> Result<RelayReport, StoreError> {
        self.publish_rows(Rows::Requests(requests), &[]).await
    }

    /// Publishes rows born leased to this relay
    /// ([`crate::app::Context::publish_lease`]): they are read, not
    /// claimed. Only rows with more than half their lease left are taken,
    /// and a publish round is bounded by half the lease
    /// ([`PublishQueue`]), so no sweeper can claim a row while it is
    /// published here. `received` gives, for each message that wrote some,
    /// (the index in `handed` of its first row, when it was received): the
    /// time from each receipt to the start of the publish call carrying its
    /// first run request is recorded (`orchestrator_receipt_to_publish_seconds`,
    /// the worker's own part of the latency).
    #[instrument(skip_all, fields(rows = handed.len()))]
    pub async fn publish_handed(
        &self,
        handed: &[RequestKey],
        received: &[(usize, Instant)],
    ) -> Result<RelayReport, StoreError> {
        self.publish_rows(Rows::Handed(handed), received).await
    }

    async fn publish_rows(
        &self,
        rows: Rows<'_>,
        received: &[(usize, Instant)],
    ) -> Result<RelayReport, StoreError> {
        // A claim takes at most `batch` rows: more ids (a scenario with 150
        // dependent metrics) go in several rounds rather than to the sweeper.
        let mut total = RelayReport::default();
        let size = self.config.batch.max(1) as usize;
        for k in 0..rows.len().div_ceil(size) {
            let range = k * size..rows.len().min((k + 1) * size);
            let claimed = match rows {
                Rows::ToClaim(ids) => self.claim(Claim::Rows(&ids[range])).await?,
                Rows::Requests(keys) => self.claim(Claim::Requests(&keys[range])).await?,
                Rows::Handed(handed) => self.take_handed(&handed[range]).await?,
            };
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
            let claimed = self.claim(Claim::Due).await?;
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

    async fn claim(&self, which: Claim<'_>) -> Result<Vec<OutboxMessage>, StoreError> {
        let (batch, lease) = (self.config.batch, self.config.lease);
        in_transaction!(self.pool, StoreError, |tx| outbox::claim(
            &tx, which, batch, lease
        )
        .await?)
    }

    /// Reads, outside a transaction: the rows were leased to this relay at
    /// their birth, and each statement reads committed rows as it would in
    /// one (READ COMMITTED), so a BEGIN and a COMMIT would add two round
    /// trips to every update's latency and write nothing. Retried like a
    /// transaction when the connection was lost.
    async fn take_handed(&self, handed: &[RequestKey]) -> Result<Vec<OutboxMessage>, StoreError> {
        let min_left = self.config.lease / 2;
        crate::store::tx::retrying(|| async {
            let client = self.pool.get().await?;
            outbox::take_handed(&client, handed, min_left).await
        })
        .await
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
        let published: Vec<&OutboxMessage> =
            claimed.iter().filter(|m| ok_ids.contains(&m.id)).collect();
        let dispatched = in_transaction!(self.pool, StoreError, |tx| {
            let moved = outbox::mark_published(&tx, &published).await?;
            for (msg, err) in &failures {
                let retry_in = self.config.backoff(msg.attempts);
                outbox::mark_failed(&tx, msg.id, msg.run_id(), err, retry_in).await?;
            }
            moved
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
    while (next.len() as i64) < max {
        match rx.try_recv() {
            Ok(more) => {
                let base = next.handed.len();
                next.ids.extend(more.ids);
                next.requests.extend(more.requests);
                next.handed.extend(more.handed);
                next.received
                    .extend(more.received.into_iter().map(|(i, at)| (base + i, at)));
            }
            Err(_) => break,
        }
    }
    Some(next)
}

/// Rows to publish in one round: the outbox table's rows or run requests
/// to claim, or rows born leased to this relay.
#[derive(Clone, Copy)]
enum Rows<'a> {
    ToClaim(&'a [OutboxId]),
    Requests(&'a [RequestKey]),
    Handed(&'a [RequestKey]),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Self::ToClaim(ids) => ids.len(),
            Self::Requests(keys) | Self::Handed(keys) => keys.len(),
        }
    }
}

/// Rows committed together: the outbox table's rows and run requests to
/// claim, rows born leased to this relay (handed), and the receipts of the
/// messages that wrote the handed ones: (the index in `handed` of a
/// message's first row, when it arrived).
#[derive(Default)]
struct Submission {
    ids: Vec<OutboxId>,
    requests: Vec<RequestKey>,
    handed: Vec<RequestKey>,
    received: Vec<(usize, Instant)>,
}

impl Submission {
    fn len(&self) -> usize {
        self.ids.len() + self.requests.len() + self.handed.len()
    }
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
    /// Releases handed rows the queue cannot take.
    pool: Pool,
    lease: Duration,
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
        let (pool, lease) = (relay.pool.clone(), relay.config.lease);
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        let counted = waiting.clone();
        let handle = tokio::spawn(async move {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..workers.max(1) {
                let (relay, rx, waiting) = (relay.clone(), rx.clone(), counted.clone());
                set.spawn(async move {
                    loop {
                        let Some(next) = next_ids(&rx, relay.config.batch).await else {
                            return;
                        };
                        // Bounded by half the lease, so that a hung broker call
                        // cannot hold the consumer's backpressure gate shut, and
                        // so that handed rows (taken with more than half their
                        // lease left) are done with before any sweeper may
                        // claim them: after that the rows are the sweeper's.
                        let bound = relay.config.lease / 2;
                        let round = async {
                            relay.publish_handed(&next.handed, &next.received).await?;
                            relay.publish_requests(&next.requests).await?;
                            relay.publish_now(&next.ids).await
                        };
                        match tokio::time::timeout(bound, round).await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::warn!(error = %e, "publishing after commit failed; the outbox sweeper will retry");
                            }
                            Err(_) => {
                                tracing::warn!(bound_secs = bound.as_secs_f64(), "publishing after commit outlasted half the lease; the outbox sweeper will retry");
                            }
                        }
                        waiting.done(next.len());
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
        (
            Self {
                tx,
                waiting,
                pool,
                lease,
            },
            handle,
        )
    }

    /// Rows of the outbox table to claim and publish ([`Relay::publish_now`]).
    pub fn submit(&self, ids: Vec<OutboxId>) {
        self.send(Submission {
            ids,
            ..Submission::default()
        });
    }

    /// Run requests an evaluation wrote, to claim and publish
    /// ([`Relay::publish_requests`]).
    pub fn submit_requests(&self, requests: Vec<RequestKey>) {
        self.send(Submission {
            requests,
            ..Submission::default()
        });
    }

    /// How long rows handed to this queue are born leased
    /// ([`crate::app::Context::with_publish_lease`]).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Rows born leased to this queue's relay ([`Relay::publish_handed`]),
    /// written by a message received at `received_at`.
    pub fn submit_handed(&self, handed: Vec<RequestKey>, received_at: Instant) {
        self.send(Submission {
            handed,
            received: vec![(0, received_at)],
            ..Submission::default()
        });
    }

    fn send(&self, submission: Submission) {
        let n = submission.len();
        if n == 0 {
            return;
        }
        // Counted before the send: a publisher may finish them at once.
        self.waiting.add(n);
        if let Err(e) = self.tx.try_send(submission) {
            self.waiting.done(n);
            tracing::debug!("publisher busy; leaving these run requests to the outbox sweeper");
            let handed = match e {
                tokio::sync::mpsc::error::TrySendError::Full(s)
                | tokio::sync::mpsc::error::TrySendError::Closed(s) => s.handed,
            };
            if !handed.is_empty() {
                release(self.pool.clone(), handed);
            }
        }
        report_waiting(&self.waiting);
    }
}

/// Makes handed rows due now, for the sweeper, rather than at the end of
/// their lease.
fn release(pool: Pool, handed: Vec<RequestKey>) {
    tokio::spawn(async move {
        let released = in_transaction!(pool, StoreError, |tx| outbox::release_handed(&tx, &handed)
            .await?);
        if let Err(e) = released {
            tracing::warn!(error = %e, rows = handed.len(),
                "handed run requests could not be released; the outbox sweeper takes them when their lease ends");
        }
    });
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
    use super::{RelayConfig, RequestKey, Submission};
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
        let keys = |raw: &[i64]| -> Vec<RequestKey> {
            raw.iter()
                .map(|&i| RequestKey {
                    id: OutboxId::new(i),
                    run: crate::domain::ids::RunId::new(format!("run-{i}")),
                })
                .collect()
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Submission>(8);
        let rx = tokio::sync::Mutex::new(rx);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Handed rows with their message's receipt; rows and requests to
        // claim without.
        enum Kind {
            Handed(u64),
            Rows,
            Requests,
        }
        let sub = |raw: &[i64], kind: Kind| match kind {
            Kind::Handed(ms) => Submission {
                handed: keys(raw),
                received: vec![(0, at(ms))],
                ..Submission::default()
            },
            Kind::Rows => Submission {
                ids: ids(raw),
                ..Submission::default()
            },
            Kind::Requests => Submission {
                requests: keys(raw),
                ..Submission::default()
            },
        };
        for s in [
            sub(&[1], Kind::Handed(1)),
            sub(&[2, 3], Kind::Rows),
            sub(&[9], Kind::Requests),
            sub(&[4], Kind::Handed(4)),
            sub(&[5, 6, 7], Kind::Handed(5)),
        ] {
            tx.send(s).await.unwrap();
        }
        let next = |max| {
            let rx = &rx;
            async move {
                super::next_ids(rx, max)
                    .await
                    .map(|s| (s.ids, s.requests, s.handed, s.received))
            }
        };
        // Joined until at least `max` ids of either kind, never splitting a
        // submission, with the receipts of the messages that wrote the
        // handed rows, each at the index of its first row among them.
        let first = (ids(&[2, 3]), vec![], keys(&[1]), vec![(0, at(1))]);
        assert_eq!(next(3).await, Some(first));
        let joined = (
            vec![],
            keys(&[9]),
            keys(&[4, 5, 6, 7]),
            vec![(0, at(4)), (1, at(5))],
        );
        assert_eq!(next(100).await, Some(joined));
        tx.send(sub(&[8], Kind::Rows)).await.unwrap();
        assert_eq!(next(100).await, Some((ids(&[8]), vec![], vec![], vec![])));
        drop(tx);
        assert_eq!(next(100).await, None);
    }
}
