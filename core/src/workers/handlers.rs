//! SQS handlers, the adapters between the consumer runtime (`messaging`)
//! and the use cases (`app`): parse the body (docs/contracts.md), run the use case,
//! publish the run requests it committed, and say what becomes of the
//! message. Each records its message's subject (`dataset_id` or `run_id`) on
//! the message span, so that the loop's one line per message names it.

use std::fmt;

use tracing::Instrument;

use crate::app::lifecycle::LifecycleOutcome;
use crate::app::projection_update::UpdateSummary;
use crate::app::{alerts, lifecycle, projection_update, Context};
use crate::domain::alert::{self, DeadLettered};
use crate::domain::events::{
    parse_body, parse_lifecycle_scaled, parse_projection_update, ProgressScale, ProjectionUpdate,
};
use crate::domain::ids::RunId;
use crate::domain::run_state::{LifecycleKind, RunStatus};
use crate::messaging::sqs::outcome::BoxError;
use crate::messaging::sqs::{
    DeadLetterNote, Handler, HandlerError, Ignored, InboundMessage, Outcome,
};
use crate::outbox::PublishQueue;
use crate::store::StoreError;

/// Queues the `message_dead_lettered` alert of a message and publishes it.
async fn alert_dead_letter(
    ctx: &Context,
    publish: &PublishQueue,
    letter: &DeadLetterNote<'_>,
) -> Result<(), BoxError> {
    let trace = letter.trace.to_string();
    let dead = alert::dead_lettered(&DeadLettered {
        queue: letter.queue,
        message_id: letter.message_id,
        error_type: letter.error_type,
        error: letter.error,
        receive_count: letter.receive_count,
        traceparent: Some(&trace),
        at: chrono::Utc::now(),
    });
    publish.submit(alerts::queue(ctx, &[dead]).await?);
    Ok(())
}

/// A store failure: permanent when the database refuses the message's own
/// data (it goes to the DLQ at once), else transient (retried).
fn store_failure(e: StoreError) -> HandlerError {
    if e.is_permanent() {
        HandlerError::Unprocessable(Box::new(e))
    } else {
        HandlerError::Transient(Box::new(e))
    }
}

pub struct ProjectionUpdateHandler {
    pub ctx: Context,
    /// Run requests committed by a message are published from here, right
    /// after the commit and without holding the message up.
    pub publish: PublishQueue,
}

impl ProjectionUpdateHandler {
    /// A message's update, with where it came from; the span names its dataset.
    fn read(
        msg: &InboundMessage,
        span: &tracing::Span,
    ) -> Result<(ProjectionUpdate, projection_update::Origin), HandlerError> {
        let update = parse_projection_update(&parse_body(&msg.body)?)?;
        span.record("dataset_id", update.dataset_id.as_str());
        let origin = projection_update::Origin {
            traceparent: Some(crate::ground::telemetry::downstream(span, &msg.trace).to_string()),
            source_sent_at: msg.sent_at,
        };
        Ok((update, origin))
    }

    /// Hands an update's run requests to the relay, at its commit: born
    /// leased to it when the context says so (the worker's), else to claim;
    /// and the alert of a dataset it put back on time.
    fn submit(&self, summary: &UpdateSummary, received_at: std::time::Instant) {
        match self.ctx.publish_lease {
            Some(_) => self
                .publish
                .submit_handed(summary.evaluated.requests.clone(), received_at),
            None => self
                .publish
                .submit_requests(summary.evaluated.requests.clone()),
        }
        if !summary.alerts.is_empty() {
            self.publish.submit(summary.alerts.clone());
        }
    }

    /// The message's answer once its update is committed.
    fn answer(summary: UpdateSummary) -> Outcome {
        if summary.duplicate {
            return Outcome::Ignored(Ignored::Duplicate);
        }
        Outcome::processed(summary)
    }

    async fn alone(
        &self,
        update: &ProjectionUpdate,
        origin: &projection_update::Origin,
        received_at: std::time::Instant,
    ) -> Result<Outcome, HandlerError> {
        let summary =
            projection_update::process_with_then(&self.ctx, update, origin, |committed| {
                for s in committed {
                    self.submit(s, received_at);
                }
            })
            .await
            .map_err(store_failure)?;
        Ok(Self::answer(summary))
    }
}

impl Handler for ProjectionUpdateHandler {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let (update, origin) = Self::read(msg, &tracing::Span::current())?;
        self.alone(&update, &origin, msg.received_at).await
    }

    fn batches(&self) -> bool {
        true
    }

    /// The receive's valid updates in one transaction; when it fails, each
    /// alone, in order, in its own span (docs/semantics.md, "Several
    /// messages, one transaction").
    async fn handle_batch(
        &self,
        msgs: &[(&InboundMessage, &tracing::Span)],
    ) -> Vec<Result<Outcome, HandlerError>> {
        let mut answers: Vec<Option<Result<Outcome, HandlerError>>> = Vec::new();
        let mut valid = Vec::new();
        for (i, (msg, span)) in msgs.iter().enumerate() {
            match Self::read(msg, span) {
                Ok(read) => {
                    valid.push((i, read));
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let together: Vec<(&ProjectionUpdate, &projection_update::Origin)> =
            valid.iter().map(|(_, (u, o))| (u, o)).collect();
        let batch = match together.len() {
            0 | 1 => Err(None),
            _ => projection_update::process_batch_then(&self.ctx, &together, |committed| {
                for ((i, _), s) in valid.iter().zip(committed) {
                    self.submit(s, msgs[*i].0.received_at);
                }
            })
            .await
            .map_err(Some),
        };
        match batch {
            Ok(summaries) => {
                for ((i, _), summary) in valid.iter().zip(summaries) {
                    answers[*i] = Some(Ok(Self::answer(summary)));
                }
            }
            Err(failed) => {
                if let Some(e) = failed {
                    tracing::debug!(error = %e, updates = valid.len(),
                        "the batch's transaction failed; each update is processed alone");
                }
                for (i, (update, origin)) in &valid {
                    let (msg, span) = msgs[*i];
                    answers[*i] = Some(
                        self.alone(update, origin, msg.received_at)
                            .instrument(span.clone())
                            .await,
                    );
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(HandlerError::Transient("no answer".into()))))
            .collect()
    }

    async fn dead_lettered(&self, letter: &DeadLetterNote<'_>) -> Result<(), BoxError> {
        alert_dead_letter(&self.ctx, &self.publish, letter).await
    }
}

pub struct LifecycleHandler {
    pub ctx: Context,
    pub publish: PublishQueue,
    pub progress_scale: ProgressScale,
}

impl Handler for LifecycleHandler {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let raw = parse_body(&msg.body)?;
        let event = parse_lifecycle_scaled(&raw, self.progress_scale)?;
        tracing::Span::current().record("run_id", event.run_id().as_str());
        let kind = event.kind();
        match lifecycle::handle_traced(&self.ctx, &event, &raw, Some(&msg.trace))
            .await
            .map_err(store_failure)?
        {
            LifecycleOutcome::Applied {
                from,
                to,
                retry_run_id,
                outbox_ids,
            } => {
                // A completion with FAILURE and attempts left queues a retry.
                metrics::counter!(crate::ground::prometheus::RUN_RETRIES)
                    .increment(u64::from(retry_run_id.is_some()));
                self.publish.submit(outbox_ids);
                Ok(Outcome::processed(Transition {
                    kind,
                    from,
                    to,
                    retry_run_id,
                }))
            }
            LifecycleOutcome::Ignored(reason) => {
                Ok(Outcome::Ignored(Ignored::Refused(kind, reason)))
            }
            LifecycleOutcome::UnknownRun => Ok(Outcome::Ignored(Ignored::UnknownRun(kind))),
        }
    }

    async fn dead_lettered(&self, letter: &DeadLetterNote<'_>) -> Result<(), BoxError> {
        alert_dead_letter(&self.ctx, &self.publish, letter).await
    }
}

/// A lifecycle event applied, for the log line's `detail`.
struct Transition {
    kind: LifecycleKind,
    from: RunStatus,
    to: RunStatus,
    retry_run_id: Option<RunId>,
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} → {}", self.kind.as_str(), self.from, self.to)?;
        match &self.retry_run_id {
            Some(id) => write!(f, "; retry {id} queued"),
            None => Ok(()),
        }
    }
}
