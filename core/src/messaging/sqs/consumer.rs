//! The consumer: long-poll batches of up to ten, at most `concurrency`
//! messages in flight, FIFO message groups processed in order (in
//! parallel across groups), visibility extended while a handler works, and
//! a drain within the grace period on shutdown. Receiving and starting the
//! messages' tasks is `super::receive_loops` (one loop for handlers that
//! take messages one by one, another for those that take a receive's
//! messages together, [`Handler::batches`]); reading a message is
//! [`super::received`], deciding its fate `super::disposition`, deleting
//! `super::deleter`.

use std::sync::{Arc, Mutex};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::ConsumerConfig;
use super::deleter::{Delete, Deleter};
use super::disposition::{decide, Disposition};
use super::dlq::{self, DeadLetter};
use super::outcome::{DeadLetterNote, Handled, Handler, HandlerError, InboundMessage, Outcome};
use super::receive_loops::{batching_loop, lock, one_by_one_loop, receivers, LoopParts};
use super::received::Received;
use super::SqsError;
use crate::domain::events::MAX_BODY_BYTES;
use crate::ground::backpressure::Backpressure;
use crate::messaging::s3;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot find the dead-letter queue of {queue}")]
    Dlq {
        queue: String,
        #[source]
        source: SqsError,
    },
    #[error("{queue} has no RedrivePolicy: set one, or configure its DLQ URL")]
    NoDlq { queue: String },
}

pub struct Consumer<H> {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    config: ConsumerConfig,
    handler: Arc<H>,
    gate: Option<Backpressure>,
}

pub(super) struct Shared<H> {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    pub(super) config: ConsumerConfig,
    handler: Arc<H>,
    dlq_url: String,
    deleter: Deleter,
    /// The queue's name, for metric labels.
    queue: String,
    /// No receive while this is at its limit.
    pub(super) gate: Option<Backpressure>,
    /// Bytes of bodies and payloads in flight ([`ConsumerConfig::inflight_bytes`]).
    room: Arc<Semaphore>,
}

fn sqs_err<E, R>(e: aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    crate::ground::errors::chain(&e)
}

impl<H: Handler> Consumer<H> {
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
        config: ConsumerConfig,
        handler: H,
    ) -> Self {
        Self {
            sqs,
            s3,
            config,
            handler: Arc::new(handler),
            gate: None,
        }
    }

    /// Receives nothing while `gate` is at its limit (run requests waiting
    /// to be published, [`crate::ground::backpressure`]).
    pub fn with_backpressure(mut self, gate: Backpressure) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Finds the DLQ (the override, else the RedrivePolicy's); a queue
    /// without one is refused: invalid messages must have somewhere to go.
    pub async fn resolve_dlq(&self) -> Result<String, ConsumerError> {
        if let Some(url) = &self.config.dlq_url {
            return Ok(url.clone());
        }
        let queue = self.config.queue_url.clone();
        match dlq::from_redrive_policy(&self.sqs, &queue).await {
            Ok(Some(url)) => Ok(url),
            Ok(None) => Err(ConsumerError::NoDlq { queue }),
            Err(source) => Err(ConsumerError::Dlq { queue, source }),
        }
    }

    /// Consumes until `shutdown`, then drains in-flight messages.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let dlq_url = self.resolve_dlq().await?;
        let (deleter, deleting) = Deleter::start(self.sqs.clone(), self.config.queue_url.clone());
        let queue = crate::ground::prometheus::queue_label(&self.config.queue_url);
        let room = self.config.inflight_bytes.min(u32::MAX as usize);
        let shared = Arc::new(Shared {
            sqs: self.sqs,
            s3: self.s3,
            config: self.config,
            handler: self.handler,
            dlq_url,
            deleter,
            queue,
            gate: self.gate,
            room: Arc::new(Semaphore::new(room)),
        });
        tracing::info!(queue = %shared.config.queue_url, dlq = %shared.dlq_url,
            concurrency = shared.config.concurrency, "consumer started");
        let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let batching = shared.handler.batches();
        let loops = (0..receivers(shared.config.concurrency)).map(|_| {
            let parts = LoopParts {
                shared: shared.clone(),
                slots: slots.clone(),
                tasks: tasks.clone(),
                shutdown: shutdown.clone(),
            };
            async move {
                if batching {
                    batching_loop(parts).await
                } else {
                    one_by_one_loop(parts).await
                }
            }
        });
        futures::future::join_all(loops).await;
        let mut tasks = std::mem::take(&mut *lock(&tasks));
        tracing::info!(
            in_flight = tasks.len(),
            "shutdown: draining in-flight messages"
        );
        let grace = shared.config.shutdown_grace;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = tasks.len(),
                "grace period over; unfinished messages are left for redelivery"
            );
            tasks.abort_all();
        }
        shared.deleter.flush().await;
        drop(shared);
        let _ = deleting.await;
        tracing::info!("consumer stopped");
        Ok(())
    }
}

/// A message being worked on.
struct InFlight {
    r: Received,
    started: std::time::Instant,
    /// Renews its visibility until it is finished.
    extender: tokio::task::JoinHandle<()>,
    /// Its share of the in-flight bytes, given back when it is finished.
    _room: tokio::sync::OwnedSemaphorePermit,
}

/// The bytes a message may hold while handled: its body, and for a pointer
/// the payload's declared size (at most a body's limit; the limit itself
/// when undeclared), never more than the whole budget.
fn bytes_of(r: &Received, budget: usize) -> usize {
    let payload = r
        .pointer
        .as_ref()
        .map_or(0, |_| declared_size(r).unwrap_or(MAX_BODY_BYTES));
    (r.raw.len() + payload).min(budget).max(1)
}

/// Consecutive parts of `sizes` (each at most `budget`), as few as can be:
/// a part's sizes add up to at most `budget`, one size alone excepted (it
/// is already clamped to the budget).
fn parts_within(sizes: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut parts: Vec<Vec<usize>> = Vec::new();
    let mut sum = 0;
    for &size in sizes {
        match parts.last_mut() {
            Some(part) if sum + size <= budget => {
                part.push(size);
                sum += size;
            }
            _ => {
                parts.push(vec![size]);
                sum = size;
            }
        }
    }
    parts
}

/// The payload size an Extended Client sender declared, at most a body's limit.
fn declared_size(r: &Received) -> Option<usize> {
    [s3::SIZE_ATTRIBUTE, s3::LEGACY_SIZE_ATTRIBUTE]
        .iter()
        .find_map(|a| r.attributes.get(*a))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(|n| n.min(MAX_BODY_BYTES))
}

impl<H: Handler> Shared<H> {
    pub(super) async fn receive(&self, max: i32) -> Result<Vec<Message>, SqsError> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.config.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(self.config.wait_time.as_secs().min(20) as i32)
            .visibility_timeout(self.config.visibility_timeout.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| SqsError::new("ReceiveMessage", e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// The span every log line about a message carries; handlers record
    /// the subject (`dataset_id` or `run_id`) once they know it.
    fn span_of(r: &Received) -> tracing::Span {
        let span = tracing::info_span!("message", message_id = %r.message_id,
            trace_id = %r.trace.trace_id, dataset_id = tracing::field::Empty,
            run_id = tracing::field::Empty);
        crate::ground::telemetry::continue_trace(&span, &r.trace);
        span
    }

    pub(super) async fn process(&self, m: Message) {
        let r = match Received::parse(&m) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot acknowledge a message; it will reappear");
                return;
            }
        };
        let span = Self::span_of(&r);
        async {
            let extender = self.keep_invisible(r.receipt.clone());
            let room = self.take_room(bytes_of(&r, self.budget())).await;
            let (flight, msg) = self.start(r, extender, room).await;
            let result = match msg {
                Ok(msg) => self.handler.handle(&msg).await,
                Err(e) => Err(e),
            };
            self.finish(flight, result).await
        }
        .instrument(span)
        .await
    }

    /// The messages of one receive, handed to the handler together
    /// ([`Handler::handle_batch`]); each still ends in its own disposition
    /// and its own log line, in its own span. Messages that together would
    /// pass the byte budget are handed over in consecutive parts (in order,
    /// so FIFO groups keep theirs), each part taking its room at once: a
    /// part never holds room while waiting for more.
    pub(super) async fn process_batch(&self, messages: Vec<Message>) {
        let budget = self.budget();
        let mut waiting = Vec::with_capacity(messages.len());
        for m in &messages {
            match Received::parse(m) {
                Ok(r) => {
                    // Kept invisible from now on, while earlier parts are handled.
                    let extender = self.keep_invisible(r.receipt.clone());
                    waiting.push((r, extender));
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot acknowledge a message; it will reappear")
                }
            }
        }
        let sizes: Vec<usize> = waiting.iter().map(|(r, _)| bytes_of(r, budget)).collect();
        let mut waiting = waiting.into_iter();
        for part in parts_within(&sizes, budget) {
            let mut room = self.take_room(part.iter().sum()).await;
            let mut flights = Vec::with_capacity(part.len());
            for size in part {
                let (r, extender) = waiting.next().expect("one size per message");
                let share = room
                    .split(size)
                    .expect("the part's room covers its messages");
                let span = Self::span_of(&r);
                let (flight, msg) = self
                    .start(r, extender, share)
                    .instrument(span.clone())
                    .await;
                flights.push((span, flight, msg));
            }
            self.handle_part(flights).await;
        }
    }

    async fn handle_part(
        &self,
        flights: Vec<(
            tracing::Span,
            InFlight,
            Result<InboundMessage, HandlerError>,
        )>,
    ) {
        let ready: Vec<(&InboundMessage, &tracing::Span)> = flights
            .iter()
            .filter_map(|(span, _, msg)| msg.as_ref().ok().map(|m| (m, span)))
            .collect();
        let mut answers = self.handler.handle_batch(&ready).await.into_iter();
        for (span, flight, msg) in flights {
            let result = match msg {
                Ok(_) => answers.next().unwrap_or_else(|| {
                    Err(HandlerError::Transient("the handler gave no answer".into()))
                }),
                Err(e) => Err(e),
            };
            self.finish(flight, result).instrument(span).await;
        }
    }

    /// The whole byte budget ([`ConsumerConfig::inflight_bytes`]).
    fn budget(&self) -> usize {
        self.config.inflight_bytes.min(u32::MAX as usize)
    }

    /// Waits until `bytes` (at most the budget) are free, and takes them.
    async fn take_room(&self, bytes: usize) -> tokio::sync::OwnedSemaphorePermit {
        self.room
            .clone()
            .acquire_many_owned(bytes.min(self.budget()) as u32)
            .await
            .expect("the in-flight byte budget is never closed")
    }

    /// The message fetched from S3 first when it is a pointer.
    /// `event` is moved in: the loop keeps only the raw body (for a dead letter).
    async fn inbound(
        &self,
        r: &Received,
        event: String,
        received_at: std::time::Instant,
    ) -> Result<InboundMessage, HandlerError> {
        let body = match &r.pointer {
            Some(p) => {
                let limit = declared_size(r).unwrap_or(MAX_BODY_BYTES);
                s3::fetch(&self.s3, &self.config.pointers, p, limit)
                    .await
                    .map_err(|e| {
                        if e.is_permanent() {
                            HandlerError::Unprocessable(Box::new(e))
                        } else {
                            HandlerError::Transient(Box::new(e))
                        }
                    })?
            }
            None => event,
        };
        Ok(InboundMessage {
            message_id: r.message_id.clone(),
            body,
            attributes: r.attributes.clone(),
            receive_count: r.receive_count,
            group_id: r.group_id.clone(),
            trace: r.trace.clone(),
            sent_at: r.sent_at,
            received_at,
        })
    }

    /// Counts the message, keeps it invisible while it is worked on, and
    /// reads it.
    async fn start(
        &self,
        mut r: Received,
        extender: tokio::task::JoinHandle<()>,
        room: tokio::sync::OwnedSemaphorePermit,
    ) -> (InFlight, Result<InboundMessage, HandlerError>) {
        metrics::counter!(crate::ground::prometheus::RECEIVED, "queue" => self.queue.clone())
            .increment(1);
        let started = std::time::Instant::now();
        let event = std::mem::take(&mut r.event);
        let msg = self.inbound(&r, event, started).await;
        (
            InFlight {
                r,
                started,
                extender,
                _room: room,
            },
            msg,
        )
    }

    /// What becomes of a message once the handler answered: deleted, backed
    /// off or dead-lettered, and its one log line.
    async fn finish(&self, flight: InFlight, result: Result<Outcome, HandlerError>) {
        let InFlight {
            r,
            started,
            extender,
            _room,
        } = flight;
        extender.abort();
        let elapsed = started.elapsed();
        metrics::histogram!(crate::ground::prometheus::HANDLER_SECONDS, "queue" => self.queue.clone())
            .record(elapsed.as_secs_f64());
        let ms = elapsed.as_millis() as u64;
        let (message_id, trace_id) = (&r.message_id, &r.trace.trace_id);
        let delete = Delete {
            message_id: r.message_id.clone(),
            receipt: r.receipt.clone(),
        };
        match decide(&result, r.receive_count, self.config.max_receive_count) {
            Disposition::Delete => {
                // `decide` deletes only what the handler accepted.
                if let Ok(outcome) = &result {
                    let handled = outcome.handled();
                    self.count(handled);
                    match outcome {
                        Outcome::Ignored(reason) => tracing::info!(%message_id, %trace_id,
                            outcome = %handled, %reason, ms, "message handled"),
                        Outcome::Processed(detail) => tracing::info!(%message_id, %trace_id,
                            outcome = %handled, %detail, ms, "message handled"),
                    }
                }
                self.deleter.delete(delete);
            }
            Disposition::BackOff { error } => {
                self.count(Handled::Retried);
                let pause = self.config.backoff(r.receive_count);
                tracing::warn!(%message_id, %trace_id, outcome = %Handled::Retried, %error,
                    receive_count = r.receive_count, retry_in_s = pause.as_secs(), ms,
                    "transient failure; message will be redelivered");
                if let Err(err) = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.config.queue_url)
                    .receipt_handle(&r.receipt)
                    .visibility_timeout(pause.as_secs() as i32)
                    .send()
                    .await
                {
                    tracing::debug!(error = %sqs_err(err), "could not set the back-off; the visibility timeout applies");
                }
            }
            Disposition::DeadLetter { reason, message } => {
                let letter = DeadLetter {
                    body: &r.raw,
                    error_type: reason.as_str(),
                    error_message: &message,
                    source_queue: &self.config.queue_url,
                    source_message_id: &r.message_id,
                    receive_count: r.receive_count,
                    group_id: r.group_id.as_deref(),
                };
                match dlq::send(&self.sqs, &self.dlq_url, &letter).await {
                    Ok(()) => {
                        let note = DeadLetterNote {
                            queue: &self.queue,
                            message_id: &r.message_id,
                            error_type: reason.as_str(),
                            error: &message,
                            receive_count: r.receive_count,
                            trace: &r.trace,
                        };
                        if let Err(e) = self.handler.dead_lettered(&note).await {
                            tracing::warn!(%message_id, error = %e, "could not queue the dead-letter alert; the DLQ holds the message");
                        }
                        self.count(Handled::DeadLettered);
                        metrics::counter!(crate::ground::prometheus::DEAD_LETTERED, "queue" => self.queue.clone(), "reason" => reason.as_str())
                            .increment(1);
                        tracing::warn!(%message_id, %trace_id, outcome = %Handled::DeadLettered,
                            error_type = reason.as_str(), error = %message, ms, "message dead-lettered");
                        self.deleter.delete(delete);
                    }
                    Err(e) => {
                        let e = crate::ground::errors::chain(&e);
                        tracing::error!(%message_id, %trace_id, outcome = %Handled::DeadLetterFailed,
                            error_type = reason.as_str(), error = %e, ms,
                            "could not dead-letter the message; it stays on the queue for redelivery");
                    }
                }
            }
        }
    }

    fn count(&self, outcome: Handled) {
        metrics::counter!(crate::ground::prometheus::HANDLED, "queue" => self.queue.clone(), "outcome" => outcome.as_str())
            .increment(1);
    }

    /// Renews the message's visibility every half timeout while it is worked on.
    fn keep_invisible(&self, receipt: String) -> tokio::task::JoinHandle<()> {
        let sqs = self.sqs.clone();
        let queue = self.config.queue_url.clone();
        let vt = self.config.visibility_timeout;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(vt / 2);
            tick.tick().await;
            loop {
                tick.tick().await;
                let r = sqs
                    .change_message_visibility()
                    .queue_url(&queue)
                    .receipt_handle(&receipt)
                    .visibility_timeout(vt.as_secs() as i32)
                    .send()
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %sqs_err(e), "could not extend the visibility of a message in progress");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_is_cut_into_parts_that_fit_the_byte_budget_in_order() {
        let mib = 1 << 20;
        // (message sizes, budget, the parts they are handled in)
        type Case<'a> = (&'a [usize], usize, &'a [&'a [usize]]);
        let cases: &[Case] = &[
            (&[], 48, &[]),
            (&[1, 1, 1], 48, &[&[1, 1, 1]]),
            (
                &[16, 16, 16, 16, 16, 16, 16, 16],
                48,
                &[&[16, 16, 16], &[16, 16, 16], &[16, 16]],
            ),
            (&[48, 1, 47, 2], 48, &[&[48], &[1, 47], &[2]]),
            (&[30, 30, 10], 48, &[&[30], &[30, 10]]),
        ];
        for (sizes, budget, wanted) in cases {
            let got = parts_within(sizes, *budget);
            let wanted: Vec<Vec<usize>> = wanted.iter().map(|p| p.to_vec()).collect();
            assert_eq!(got, wanted, "{sizes:?} within {budget}");
            assert!(got.iter().all(|p| p.iter().sum::<usize>() <= *budget));
        }
        // A pointer without a declared size reserves a whole body's limit;
        // nothing reserves more than the budget.
        let m = Message::builder()
            .message_id("m")
            .receipt_handle("r")
            .body(s3::pointer_body(&s3::Pointer {
                bucket: "b".into(),
                key: "k".into(),
            }))
            .build();
        let r = Received::parse(&m).unwrap();
        assert_eq!(bytes_of(&r, 64 * mib), r.raw.len() + MAX_BODY_BYTES);
        assert_eq!(bytes_of(&r, 8 * mib), 8 * mib);
    }
}
