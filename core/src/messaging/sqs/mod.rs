//! The SQS consumer runtime: [`config`] (settings), [`outcome`] (the handler
//! trait and what its result means for the message), [`consumer`] (the loop:
//! receive, dispatch, delete / dead-letter / back off, drain on shutdown),
//! [`dlq`] (dead-letter copies with their error attributes).

pub mod config;
pub mod consumer;
pub mod dlq;
pub mod dlq_admin;
pub mod outcome;

pub use config::ConsumerConfig;
pub use consumer::Consumer;
pub use outcome::{Handler, HandlerError, InboundMessage, Outcome};
