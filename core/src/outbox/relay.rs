//! The relay: publish rounds over claimed, submitted or handed rows, and the
//! sweep of whatever is due.

use std::time::{Duration, Instant};

use tracing::instrument;

use crate::domain::ids::OutboxId;
use crate::domain::outgoing::Outgoing;
use crate::in_transaction;
use crate::store::outbox::{self, Claim, OutboxMessage, RequestKey};
use crate::store::{Pool, StoreError};

use super::{half_lease, Publisher};

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

crate::ground::tally::tally!(RelayReport {
    published,
    failed,
    dispatched
});

pub struct Relay<P> {
    pub(super) pool: Pool,
    publisher: P,
    pub(super) config: RelayConfig,
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
    /// claimed, under the lease rule ([`super`]). `received` gives, for each message that wrote some,
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
                    metrics::histogram!(crate::ground::prometheus::RECEIPT_TO_PUBLISH_SECONDS)
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

    pub fn config(&self) -> &RelayConfig {
        &self.config
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
        let min_left = half_lease(self.config.lease);
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
                crate::ground::telemetry::continue_trace(&span, &parent);
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
        metrics::counter!(crate::ground::prometheus::PUBLISHED).increment(ok_ids.len() as u64);
        metrics::counter!(crate::ground::prometheus::PUBLISH_FAILURES)
            .increment(failures.len() as u64);
        let now = chrono::Utc::now();
        for msg in claimed.iter().filter(|m| ok_ids.contains(&m.id)) {
            if let Some(sent) = msg.source_sent_at {
                let secs = (now - sent).num_milliseconds().max(0) as f64 / 1e3;
                metrics::histogram!(crate::ground::prometheus::UPDATE_TO_REQUEST_SECONDS)
                    .record(secs);
            }
        }
        Ok(RelayReport {
            published: ok_ids.len(),
            failed: failures.len(),
            dispatched,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::RelayConfig;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = RelayConfig::default();
        assert_eq!(c.backoff(1), Duration::from_millis(500));
        assert_eq!(c.backoff(2), Duration::from_secs(1));
        assert_eq!(c.backoff(4), Duration::from_secs(4));
        assert_eq!(c.backoff(40), Duration::from_secs(300));
        assert_eq!(c.backoff(i32::MAX), Duration::from_secs(300));
    }
}
