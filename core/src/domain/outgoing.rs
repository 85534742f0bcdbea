//! What leaves the fleet: a run request as the outbox holds it, handed by
//! the relay to a publisher. Pure data, shared by the store that reads it
//! and the messaging that sends it.

use crate::domain::ids::{OutboxId, RunId};

/// A run request waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: OutboxId,
    pub run_id: RunId,
    pub metric_code: String,
    pub payload: String,
    pub message_group_id: Option<String>,
    /// Publish attempts so far, this one included.
    pub attempts: i32,
    /// W3C trace context to publish with (docs/contracts.md).
    pub traceparent: Option<String>,
    /// When the inbound message that caused this request was sent.
    pub source_sent_at: Option<chrono::DateTime<chrono::Utc>>,
}
