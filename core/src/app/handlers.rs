//! SQS handlers: parse the body (SPEC §3), run the use case, publish the run
//! requests it committed, and say what becomes of the message.

use super::{lifecycle, projection_update, Context};
use crate::domain::events::{parse_body, parse_lifecycle, parse_projection_update};
use crate::messaging::sqs::{Handler, HandlerError, InboundMessage, Outcome};
use crate::relay::PublishQueue;
use crate::store::StoreError;

fn transient(e: StoreError) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

pub struct ProjectionUpdateHandler {
    pub ctx: Context,
    /// Run requests committed by a message are published from here, right
    /// after the commit and without holding the message up.
    pub publish: PublishQueue,
}

impl Handler for ProjectionUpdateHandler {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let update = parse_projection_update(&parse_body(&msg.body)?)?;
        let origin = projection_update::Origin {
            traceparent: Some(
                crate::telemetry::downstream(&tracing::Span::current(), &msg.trace).to_string(),
            ),
            source_sent_at: msg.sent_at,
        };
        let summary = projection_update::process_with(&self.ctx, &update, &origin)
            .await
            .map_err(transient)?;
        self.publish.submit(summary.outbox_ids);
        Ok(if summary.duplicate {
            Outcome::Ignored("duplicate".into())
        } else {
            Outcome::Processed
        })
    }
}

pub struct LifecycleHandler {
    pub ctx: Context,
    pub publish: PublishQueue,
}

impl Handler for LifecycleHandler {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let raw = parse_body(&msg.body)?;
        let event = parse_lifecycle(&raw)?;
        match lifecycle::handle(&self.ctx, &event, &raw)
            .await
            .map_err(transient)?
        {
            lifecycle::LifecycleOutcome::Applied { outbox_ids, .. } => {
                // A completion with FAILURE and attempts left queues a retry.
                metrics::counter!(crate::metrics::RUN_RETRIES).increment(outbox_ids.len() as u64);
                self.publish.submit(outbox_ids);
                Ok(Outcome::Processed)
            }
            lifecycle::LifecycleOutcome::Ignored(reason) => {
                Ok(Outcome::Ignored(reason.to_string()))
            }
            lifecycle::LifecycleOutcome::UnknownRun => Ok(Outcome::Ignored("unknown run".into())),
        }
    }
}
