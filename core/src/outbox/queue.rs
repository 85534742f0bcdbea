//! The worker's publish queue: hands what a commit wrote to background
//! publishing tasks, so that the message that wrote it is not held up by the
//! broker, and joins waiting submissions into one round.

use std::time::{Duration, Instant};

use super::{half_lease, Publisher, Relay};
use crate::domain::ids::OutboxId;
use crate::ground::backpressure::Backpressure;
use crate::in_transaction;
use crate::store::outbox::{self, RequestKey};
use crate::store::{Pool, StoreError};

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
                        // The lease rule (`super`): after this, the rows are
                        // the sweeper's.
                        let bound = half_lease(relay.config.lease);
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
    metrics::gauge!(crate::ground::prometheus::PUBLISH_WAITING).set(waiting.pending() as f64);
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

#[cfg(test)]
mod tests {
    use super::{RequestKey, Submission};
    use std::time::{Duration, Instant};

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
