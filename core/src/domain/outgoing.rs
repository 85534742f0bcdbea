//! What leaves the fleet: a run request or an alert as the outbox holds it,
//! handed by the relay to a publisher. Pure data, shared by the store that
//! reads it and the messaging that sends it.

use crate::domain::alert::AlertType;
use crate::domain::ids::{OutboxId, RunId};

/// A message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: OutboxId,
    pub kind: Outgoing,
    /// The body, byte for byte.
    pub payload: String,
    /// Publish attempts so far, this one included.
    pub attempts: i32,
    /// W3C trace context to publish with (docs/contracts.md).
    pub traceparent: Option<String>,
    /// When the inbound message that caused this request was sent.
    pub source_sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Which topic a message goes to, and what it is published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// To the run-requests topic.
    RunRequest {
        run_id: RunId,
        metric_code: String,
        message_group_id: Option<String>,
    },
    /// To the alerts topic; `dedup_key` is unique per transition.
    Alert {
        alert_type: AlertType,
        dedup_key: String,
    },
}

impl OutboxMessage {
    /// The run a run request asks for; `None` for an alert.
    pub fn run_id(&self) -> Option<&RunId> {
        match &self.kind {
            Outgoing::RunRequest { run_id, .. } => Some(run_id),
            Outgoing::Alert { .. } => None,
        }
    }
}

impl std::fmt::Display for Outgoing {
    /// What the message is, for logs: `run r1` or `alert dataset_late:d1:…`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outgoing::RunRequest { run_id, .. } => write!(f, "run {run_id}"),
            Outgoing::Alert { dedup_key, .. } => write!(f, "alert {dedup_key}"),
        }
    }
}
