//! The receive loop: long-poll batches of up to ten, at most `concurrency`
//! messages in flight, FIFO message groups processed in order (in parallel
//! across groups), visibility extended while a handler works, outcomes turned
//! into deletes (batched), dead letters or visibility back-offs, and a drain
//! within the grace period on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::config::ConsumerConfig;
use super::dlq::{self, DeadLetter};
use super::outcome::{Handler, HandlerError, InboundMessage};
use crate::domain::events::MAX_BODY_BYTES;
use crate::domain::trace::TraceContext;
use crate::messaging::s3;

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot find the dead-letter queue of {queue}: {message}")]
    Dlq { queue: String, message: String },
}

pub struct Consumer<H> {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    config: ConsumerConfig,
    handler: Arc<H>,
}

struct Shared<H> {
    sqs: aws_sdk_sqs::Client,
    s3: aws_sdk_s3::Client,
    config: ConsumerConfig,
    handler: Arc<H>,
    dlq_url: String,
    deletes: mpsc::UnboundedSender<DeleteRequest>,
    /// The queue's name, for metric labels.
    queue: String,
}

enum DeleteRequest {
    Delete { receipt: String, message_id: String },
    Flush(oneshot::Sender<()>),
}

fn sqs_err<E: std::error::Error + 'static, R: std::fmt::Debug>(
    e: aws_sdk_sqs::error::SdkError<E, R>,
) -> String {
    aws_sdk_sqs::error::DisplayErrorContext(e).to_string()
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
        }
    }

    /// Finds the DLQ (the override, else the RedrivePolicy's); a queue
    /// without one is refused: invalid messages must have somewhere to go.
    pub async fn resolve_dlq(&self) -> Result<String, ConsumerError> {
        if let Some(url) = &self.config.dlq_url {
            return Ok(url.clone());
        }
        let err = |message: String| ConsumerError::Dlq {
            queue: self.config.queue_url.clone(),
            message,
        };
        dlq::from_redrive_policy(&self.sqs, &self.config.queue_url)
            .await
            .map_err(err)?
            .ok_or_else(|| {
                err("the queue has no RedrivePolicy; set one or configure the DLQ URL".into())
            })
    }

    /// Consumes until `shutdown`, then drains in-flight messages.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ConsumerError> {
        let dlq_url = self.resolve_dlq().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let deleter = tokio::spawn(delete_batches(
            self.sqs.clone(),
            self.config.queue_url.clone(),
            rx,
        ));
        let queue = crate::metrics::queue_label(&self.config.queue_url);
        let shared = Arc::new(Shared {
            sqs: self.sqs,
            s3: self.s3,
            config: self.config,
            handler: self.handler,
            dlq_url,
            deletes: tx,
            queue,
        });
        tracing::info!(queue = %shared.config.queue_url, dlq = %shared.dlq_url,
            concurrency = shared.config.concurrency, "consumer started");
        let slots = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut failures = 0u32;
        loop {
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.cancelled() => break,
            };
            let want = (1 + slots.available_permits()).min(10) as i32;
            let received = tokio::select! {
                r = shared.receive(want) => r,
                _ = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(m) => {
                    failures = 0;
                    m
                }
                Err(e) => {
                    failures += 1;
                    let pause = Duration::from_millis(200u64 << failures.min(7));
                    tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "receiving from SQS failed");
                    tokio::select! { _ = tokio::time::sleep(pause) => {}, _ = shutdown.cancelled() => break }
                    continue;
                }
            };
            let mut permit = Some(first);
            for group in groups(messages) {
                let p = match permit.take() {
                    Some(p) => p,
                    None => match slots.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                };
                let shared = shared.clone();
                tasks.spawn(async move {
                    for m in group {
                        shared.process(m).await;
                    }
                    drop(p);
                });
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a message task failed; its message will be redelivered");
                }
            }
        }
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
        let (done_tx, done_rx) = oneshot::channel();
        let _ = shared.deletes.send(DeleteRequest::Flush(done_tx));
        let _ = done_rx.await;
        drop(shared);
        let _ = deleter.await;
        tracing::info!("consumer stopped");
        Ok(())
    }
}

/// Messages of one FIFO group stay together, in order; others go alone.
fn groups(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut out: Vec<Vec<Message>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for m in messages {
        match m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
        {
            Some(g) => match index.get(&g) {
                Some(&i) => out[i].push(m),
                None => {
                    index.insert(g, out.len());
                    out.push(vec![m]);
                }
            },
            None => out.push(vec![m]),
        }
    }
    out
}

/// The text inside an SNS envelope, when the body is one.
fn sns_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    (v.get("Type")?.as_str()? == "Notification")
        .then(|| v.get("Message")?.as_str().map(str::to_string))?
}

/// The inbound trace context: the SQS message attribute `traceparent`, else
/// the one inside an SNS envelope's `MessageAttributes`, else a new trace.
fn trace_context(m: &Message) -> TraceContext {
    let on_message = m
        .message_attributes()
        .and_then(|a| a.get("traceparent"))
        .and_then(|v| v.string_value())
        .map(str::to_string);
    let in_envelope = || {
        let body = m.body()?;
        // Only an SNS envelope with attributes is worth parsing here; the
        // handler parses the body anyway.
        if !body.contains("\"traceparent\"") {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        (v.get("Type")?.as_str()? == "Notification").then_some(())?;
        v.get("MessageAttributes")?
            .get("traceparent")?
            .get("Value")?
            .as_str()
            .map(str::to_string)
    };
    on_message
        .or_else(in_envelope)
        .and_then(|h| TraceContext::parse(&h))
        .unwrap_or_else(TraceContext::new_root)
}

impl<H: Handler> Shared<H> {
    async fn receive(&self, max: i32) -> Result<Vec<Message>, String> {
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
            .map_err(sqs_err)?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn process(&self, m: Message) {
        let message_id = m.message_id().unwrap_or_default().to_string();
        let trace = trace_context(&m);
        // Every log line about this message carries its trace id.
        let span =
            tracing::info_span!("message", message_id = %message_id, trace_id = %trace.trace_id);
        crate::telemetry::continue_trace(&span, &trace);
        self.process_in(m, message_id, trace).instrument(span).await
    }

    async fn process_in(&self, m: Message, message_id: String, trace: TraceContext) {
        let Some(receipt) = m.receipt_handle().map(str::to_string) else {
            tracing::error!("message without a receipt handle; cannot acknowledge it");
            return;
        };
        let sys = m.attributes();
        let receive_count = sys
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u32);
        let group_id = sys
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned();
        let sent_at = sys
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(chrono::DateTime::from_timestamp_millis);
        let raw = m.body().unwrap_or_default().to_string();
        let attributes: HashMap<String, String> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();

        metrics::counter!(crate::metrics::RECEIVED, "queue" => self.queue.clone()).increment(1);
        let handled = |outcome: &'static str| {
            metrics::counter!(crate::metrics::HANDLED, "queue" => self.queue.clone(), "outcome" => outcome)
                .increment(1)
        };
        let started = std::time::Instant::now();
        let extender = self.keep_invisible(receipt.clone());
        let result = async {
            let candidate = sns_message(&raw);
            let pointer = s3::parse_pointer(candidate.as_deref().unwrap_or(&raw));
            let body = match pointer {
                Some(p) => s3::fetch(&self.s3, &p, MAX_BODY_BYTES)
                    .await
                    .map_err(|e| HandlerError::Transient(e.to_string()))?,
                None => raw.clone(),
            };
            let msg = InboundMessage {
                message_id: message_id.clone(),
                body,
                attributes,
                receive_count,
                group_id: group_id.clone(),
                trace,
                sent_at,
            };
            self.handler.handle(&msg).await
        }
        .await;
        extender.abort();
        metrics::histogram!(crate::metrics::HANDLER_SECONDS, "queue" => self.queue.clone())
            .record(started.elapsed().as_secs_f64());

        let dead = |error_type: &'static str, error: String| DeadLetterPlan { error_type, error };
        let plan = match result {
            Ok(outcome) => {
                tracing::debug!(?outcome, "message handled");
                handled(match outcome {
                    crate::messaging::sqs::Outcome::Processed => "processed",
                    crate::messaging::sqs::Outcome::Ignored(_) => "ignored",
                });
                let _ = self.deletes.send(DeleteRequest::Delete {
                    receipt,
                    message_id,
                });
                return;
            }
            Err(HandlerError::Invalid(e)) => dead(e.error_type(), e.to_string()),
            Err(HandlerError::Transient(e)) if receive_count >= self.config.max_receive_count => {
                dead(
                    "retry_exhausted",
                    format!("gave up after {receive_count} receives: {e}"),
                )
            }
            Err(HandlerError::Transient(e)) => {
                handled("retried");
                let pause = self.config.backoff(receive_count);
                tracing::warn!(error = %e, receive_count, retry_in_s = pause.as_secs(), "transient failure; message will be redelivered");
                if let Err(err) = self
                    .sqs
                    .change_message_visibility()
                    .queue_url(&self.config.queue_url)
                    .receipt_handle(&receipt)
                    .visibility_timeout(pause.as_secs() as i32)
                    .send()
                    .await
                {
                    tracing::warn!(error = %sqs_err(err), "could not set the back-off; the visibility timeout applies");
                }
                return;
            }
        };
        let letter = DeadLetter {
            body: &raw,
            error_type: plan.error_type,
            error_message: &plan.error,
            source_queue: &self.config.queue_url,
            source_message_id: &message_id,
            receive_count,
            group_id: group_id.as_deref(),
        };
        match dlq::send(&self.sqs, &self.dlq_url, &letter).await {
            Ok(()) => {
                tracing::warn!(error_type = plan.error_type, error = %plan.error, "message dead-lettered");
                handled("dead_lettered");
                metrics::counter!(crate::metrics::DEAD_LETTERED, "queue" => self.queue.clone(), "reason" => plan.error_type)
                    .increment(1);
                let _ = self.deletes.send(DeleteRequest::Delete {
                    receipt,
                    message_id,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "could not dead-letter the message; it stays on the queue for redelivery");
            }
        }
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

struct DeadLetterPlan {
    error_type: &'static str,
    error: String,
}

/// Deletes in batches of up to ten, waiting at most a few milliseconds to fill
/// one; each entry of the response is checked and failures retried one by one.
async fn delete_batches(
    sqs: aws_sdk_sqs::Client,
    queue: String,
    mut rx: mpsc::UnboundedReceiver<DeleteRequest>,
) {
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // Wait at most 10 ms for a batch to fill once something is pending.
        let (next, timed_out) = if pending.is_empty() {
            (rx.recv().await, false)
        } else {
            match tokio::time::timeout(Duration::from_millis(10), rx.recv()).await {
                Ok(m) => (m, false),
                Err(_) => (None, true),
            }
        };
        let closed = next.is_none() && !timed_out;
        match next {
            Some(DeleteRequest::Delete {
                receipt,
                message_id,
            }) => pending.push((message_id, receipt)),
            Some(DeleteRequest::Flush(done)) => flushes.push(done),
            None => {}
        }
        if pending.len() >= 10 || !flushes.is_empty() || timed_out || closed {
            while !pending.is_empty() {
                let batch: Vec<(String, String)> = pending.drain(..pending.len().min(10)).collect();
                delete_batch(&sqs, &queue, &batch).await;
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
        if closed {
            return;
        }
    }
}

async fn delete_batch(sqs: &aws_sdk_sqs::Client, queue: &str, batch: &[(String, String)]) {
    let entries: Vec<DeleteMessageBatchRequestEntry> = batch
        .iter()
        .enumerate()
        .filter_map(|(i, (_, receipt))| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(receipt)
                .build()
                .ok()
        })
        .collect();
    let failed: Vec<usize> = match sqs
        .delete_message_batch()
        .queue_url(queue)
        .set_entries(Some(entries))
        .send()
        .await
    {
        Ok(out) => out
            .failed()
            .iter()
            .filter_map(|f| f.id().parse().ok())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %sqs_err(e), "batch delete failed; deleting one by one");
            (0..batch.len()).collect()
        }
    };
    for i in failed {
        let (message_id, receipt) = &batch[i];
        if let Err(e) = sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(receipt)
            .send()
            .await
        {
            tracing::error!(%message_id, error = %sqs_err(e), "could not delete a processed message; it will be redelivered (processing is idempotent)");
        }
    }
}
