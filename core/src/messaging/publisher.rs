//! The port the outbox relay publishes through: [`super::sns::SnsPublisher`]
//! in production, an in-process one in tests.

use std::future::Future;

use crate::domain::outgoing::OutboxMessage;

/// Why one message could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PublishError(pub String);

/// Sends run requests to the run-requests topic.
pub trait Publisher: Send + Sync {
    /// Publishes a batch; the result has one entry per message, in order.
    fn publish(
        &self,
        batch: &[OutboxMessage],
    ) -> impl Future<Output = Vec<Result<(), PublishError>>> + Send;
}
