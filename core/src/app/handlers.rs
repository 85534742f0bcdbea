//! SQS handlers: parse the body (SPEC §3), run the use case, publish the run
//! requests it committed, and say what becomes of the message.

use std::sync::Arc;

use super::{lifecycle, projection_update, Context};
use crate::domain::events::{parse_body, parse_lifecycle, parse_projection_update};
use crate::messaging::sqs::{Handler, HandlerError, InboundMessage, Outcome};
use crate::relay::{Publisher, Relay};
use crate::store::StoreError;

fn transient(e: StoreError) -> HandlerError {
    HandlerError::Transient(e.to_string())
}

/// Publishes right after commit; a failure is left to the relay's sweeper.
async fn publish_now<P: Publisher>(relay: &Relay<P>, ids: &[i64]) {
    if ids.is_empty() {
        return;
    }
    if let Err(e) = relay.publish_now(ids).await {
        tracing::warn!(error = %e, "publishing after commit failed; the outbox sweeper will retry");
    }
}

pub struct ProjectionUpdateHandler<P> {
    pub ctx: Context,
    pub relay: Arc<Relay<P>>,
}

impl<P: Publisher + 'static> Handler for ProjectionUpdateHandler<P> {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let update = parse_projection_update(&parse_body(&msg.body)?)?;
        let summary = projection_update::process(&self.ctx, &update)
            .await
            .map_err(transient)?;
        publish_now(&self.relay, &summary.outbox_ids).await;
        Ok(if summary.duplicate {
            Outcome::Ignored("duplicate".into())
        } else {
            Outcome::Processed
        })
    }
}

pub struct LifecycleHandler<P> {
    pub ctx: Context,
    pub relay: Arc<Relay<P>>,
}

impl<P: Publisher + 'static> Handler for LifecycleHandler<P> {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let raw = parse_body(&msg.body)?;
        let event = parse_lifecycle(&raw)?;
        match lifecycle::handle(&self.ctx, &event, &raw)
            .await
            .map_err(transient)?
        {
            lifecycle::LifecycleOutcome::Applied { outbox_ids, .. } => {
                publish_now(&self.relay, &outbox_ids).await;
                Ok(Outcome::Processed)
            }
            lifecycle::LifecycleOutcome::Ignored(reason) => {
                Ok(Outcome::Ignored(reason.to_string()))
            }
            lifecycle::LifecycleOutcome::UnknownRun => Ok(Outcome::Ignored("unknown run".into())),
        }
    }
}
