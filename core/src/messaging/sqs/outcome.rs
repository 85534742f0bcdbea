//! Where the SQS loop meets the business logic: one handler call per message,
//! whose result says what becomes of the message.

use std::collections::HashMap;
use std::future::Future;

use chrono::{DateTime, Utc};

use crate::domain::events::EventError;
use crate::domain::trace::TraceContext;

/// A received message, its body already resolved from S3 when it was a pointer.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub message_id: String,
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

/// Success: the message is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Processed,
    /// Valid but with nothing to do (duplicate, unknown run…); recorded by the handler.
    Ignored(String),
}

/// Failure: what to do with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Will never succeed: dead-lettered at once with its error type.
    #[error(transparent)]
    Invalid(#[from] EventError),
    /// May succeed later (database or AWS unavailable): redelivered after a
    /// back-off, dead-lettered as `retry_exhausted` at the maximum receive count.
    #[error("transient failure: {0}")]
    Transient(String),
}

pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        msg: &InboundMessage,
    ) -> impl Future<Output = Result<Outcome, HandlerError>> + Send;
}
