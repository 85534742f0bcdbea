//! Where the SQS loop meets the business logic: one handler call per message,
//! whose result says what becomes of the message (see [`super::disposition`]).

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::events::EventError;
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
}

/// Success: the message is deleted. Handlers record the message's subject
/// (`dataset_id` or `run_id`) on the current span; the loop logs one line
/// per message with the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Why nothing was done (duplicate, unknown run, transition not
    /// allowed…); `None` when the message was processed.
    pub ignored: Option<String>,
    /// What was done, for the log line (e.g. `runs created 1, queued 2, pending 0`).
    pub detail: String,
}

impl Outcome {
    pub fn processed(detail: impl Into<String>) -> Self {
        Self {
            ignored: None,
            detail: detail.into(),
        }
    }

    pub fn ignored(reason: impl Into<String>) -> Self {
        Self {
            ignored: Some(reason.into()),
            detail: String::new(),
        }
    }

    /// `processed` or `ignored` (the metric label and the log's `outcome`).
    pub fn label(&self) -> &'static str {
        if self.ignored.is_some() {
            "ignored"
        } else {
            "processed"
        }
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
}
