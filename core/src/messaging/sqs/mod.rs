//! The SQS consumer runtime: [`config`] (settings), [`received`] (reading a
//! received message once: SNS envelope, trace context, S3 pointer),
//! [`outcome`] (the handler trait and its result), `disposition` (what a
//! result means for the message: delete, dead-letter, back off), `deleter`
//! (batched deletes), `receive_loops` (the two receive loops), [`consumer`] (receive, dispatch, carry out,
//! drain on shutdown), [`dlq`] (dead-letter copies with their error
//! attributes) and [`dlq_admin`] (listing and redriving dead letters).

pub mod config;
pub mod consumer;
pub(crate) mod deleter;
pub(crate) mod disposition;
pub mod dlq;
pub mod dlq_admin;
pub mod outcome;
mod receive_loops;
pub mod received;

pub use config::ConsumerConfig;
pub use consumer::Consumer;
pub use outcome::{
    DeadLetterNote, Handled, Handler, HandlerError, Ignored, InboundMessage, Outcome,
};

/// An SQS call that failed, with the SDK's error (or what was wrong with
/// the answer) as its cause.
#[derive(Debug, thiserror::Error)]
#[error("{action} failed")]
pub struct SqsError {
    pub action: String,
    #[source]
    pub source: outcome::BoxError,
}

impl SqsError {
    pub fn new(action: impl Into<String>, source: impl Into<outcome::BoxError>) -> Self {
        Self {
            action: action.into(),
            source: source.into(),
        }
    }
}
