//! Where the SQS loop meets the business logic: one handler call per message,
//! whose result says what becomes of the message (see `super::disposition`).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::events::EventError;
use crate::domain::run_state::{IgnoreReason, LifecycleKind};
use crate::domain::trace::TraceContext;

/// A received message, its body already resolved from S3 when it was a pointer.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub message_id: String,
    /// The event's text (an SNS envelope's `Message`, or the body).
    pub body: String,
    /// String message attributes (e.g. `traceparent`).
    pub attributes: HashMap<String, String>,
    pub receive_count: u32,
    pub group_id: Option<String>,
    /// The message's W3C trace context (`traceparent` attribute, on the SQS
    /// message or inside its SNS envelope); a new trace when it had none.
    pub trace: TraceContext,
    /// When the message was sent to the queue (SQS `SentTimestamp`).
    pub sent_at: Option<DateTime<Utc>>,
    /// When this worker began on it, right after the receive that returned
    /// it: the start of the worker's own part of its latency.
    pub received_at: std::time::Instant,
}

/// Success: the message is deleted. Handlers record the message's subject
/// (`dataset_id` or `run_id`) on the current span; the loop logs one line
/// per message with the outcome.
pub enum Outcome {
    /// Acted on; what was done, for the log line's `detail` (a handler's
    /// typed summary, written only if the line is).
    Processed(Box<dyn fmt::Display + Send + Sync>),
    /// Valid, and nothing to do.
    Ignored(Ignored),
}

impl Outcome {
    pub fn processed(detail: impl fmt::Display + Send + Sync + 'static) -> Self {
        Self::Processed(Box::new(detail))
    }

    /// The metric label and the log's `outcome`.
    pub fn handled(&self) -> Handled {
        match self {
            Self::Processed(_) => Handled::Processed,
            Self::Ignored(_) => Handled::Ignored,
        }
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Processed(detail) => write!(f, "Processed({detail})"),
            Self::Ignored(why) => write!(f, "Ignored({why})"),
        }
    }
}

/// Why a valid message needed nothing done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// The projection update was recorded already (a redelivery, or the
    /// producer sent it twice).
    Duplicate,
    /// A lifecycle event for a run this database does not have.
    UnknownRun(LifecycleKind),
    /// A lifecycle event the run's state machine refuses.
    Refused(LifecycleKind, IgnoreReason),
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Duplicate => f.write_str("duplicate"),
            Self::UnknownRun(kind) => write!(f, "{}: unknown run", kind.as_str()),
            Self::Refused(kind, why) => write!(f, "{}: {why}", kind.as_str()),
        }
    }
}

/// What became of a message: the `outcome` label of
/// `orchestrator_messages_handled_total` and of the loop's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    Processed,
    Ignored,
    /// A transient failure: redelivered after a back-off.
    Retried,
    DeadLettered,
    /// Dead-lettering failed; the message stays for redelivery (log only).
    DeadLetterFailed,
}

impl Handled {
    pub const ALL: [Handled; 5] = [
        Self::Processed,
        Self::Ignored,
        Self::Retried,
        Self::DeadLettered,
        Self::DeadLetterFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::DeadLetterFailed => "dead_letter_failed",
        }
    }
}

impl fmt::Display for Handled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Failure: what to do with the message.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Not a valid event: dead-lettered at once with its error type.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// A valid event that can never be processed (the data it carries breaks
    /// a rule of the store): dead-lettered at once as `unprocessable`.
    #[error("the message cannot be processed")]
    Unprocessable(#[source] BoxError),
    /// May succeed later (database or AWS unavailable): redelivered after a
    /// back-off, dead-lettered as `retry_exhausted` at the maximum receive count.
    #[error(transparent)]
    Transient(BoxError),
}

pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        msg: &InboundMessage,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;

    /// Whether the consumer hands a receive's messages over together
    /// ([`Handler::handle_batch`]) rather than each to its own task.
    fn batches(&self) -> bool {
        false
    }

    /// Handles the messages of one receive, in their order (FIFO groups
    /// stay in order), each in its own span: one answer per message, in the
    /// same order. By default, one after the other.
    fn handle_batch(
        &self,
        msgs: &[(&InboundMessage, &tracing::Span)],
    ) -> impl Future<Output = Vec<Result<Outcome, HandlerError>>> + Send {
        async move {
            let mut out = Vec::with_capacity(msgs.len());
            for (msg, span) in msgs {
                out.push(tracing::Instrument::instrument(self.handle(msg), (*span).clone()).await);
            }
            out
        }
    }

    /// Called once a message's copy is on the dead-letter queue, before the
    /// message leaves its queue (the workers queue a `message_dead_lettered`
    /// alert). A failure is logged; the DLQ holds the message either way.
    fn dead_lettered(
        &self,
        _letter: &DeadLetterNote<'_>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async { Ok(()) }
    }
}

/// A message that was dead-lettered, as [`Handler::dead_lettered`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterNote<'a> {
    /// The queue's name.
    pub queue: &'a str,
    pub message_id: &'a str,
    pub error_type: &'a str,
    pub error: &'a str,
    pub receive_count: u32,
    pub trace: &'a TraceContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/operations.md's "Logs" lists the outcome labels the loop writes.
    #[test]
    fn outcome_labels_are_the_documented_ones() {
        let doc = include_str!("../../../../docs/operations.md");
        let logs = doc.split("## Logs").nth(1).expect("a Logs section");
        let labels = logs
            .split("`outcome` (")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .expect("the outcome labels in docs/operations.md");
        let documented: Vec<&str> = labels.split('`').skip(1).step_by(2).collect();
        let coded: Vec<&str> = Handled::ALL.iter().map(|h| h.as_str()).collect();
        assert_eq!(documented, coded);
    }

    #[test]
    fn outcomes_are_labelled_by_what_became_of_the_message() {
        let ignored = Outcome::Ignored(Ignored::UnknownRun(LifecycleKind::Started));
        assert_eq!(ignored.handled(), Handled::Ignored);
        assert_eq!(
            Ignored::UnknownRun(LifecycleKind::Heartbeat).to_string(),
            "metric_run_heartbeat: unknown run"
        );
        assert_eq!(Outcome::processed("x").handled(), Handled::Processed);
        assert_eq!(
            format!("{:?}", Outcome::processed("runs 1")),
            "Processed(runs 1)"
        );
    }
}
