//! Writing run requests to the outbox: shared by evaluations, queued pending
//! runs, retries and operator triggers. An outbox row holds a request's
//! recipe (what the relay cannot rebuild from the run, its inputs and the
//! catalog); the relay assembles the request when it publishes
//! (`store::requests`), so nothing here reads the inputs or the catalog.

use chrono::{DateTime, Utc};

use crate::domain::ids::{OutboxId, RunId};
use crate::domain::run_request::{RequestSettings, TriggerNote};
use crate::store::outbox;
use crate::store::requests::{NewMessage, Origin};
use crate::store::runs::NewRun;
use crate::store::{StoreResult, Transaction};

/// What a recipe is made of, besides the deciding worker's settings.
pub struct RecipeFor<'a> {
    pub run_id: &'a RunId,
    pub metric_code: &'a str,
    pub requested_at: DateTime<Utc>,
    /// Under a policy: the inputs it went without and the updates it folded.
    pub trigger: Option<TriggerNote>,
    /// What caused the request (trace context, send time).
    pub origin: &'a Origin,
}

/// A run's outbox row. `settings` decide where its output goes and whether
/// it carries a FIFO group, now rather than when the relay publishes.
pub fn recipe<'a>(r: RecipeFor<'a>, settings: &RequestSettings) -> NewMessage<'a> {
    NewMessage {
        run_id: r.run_id,
        metric_code: r.metric_code,
        requested_at: r.requested_at,
        output_base_path: settings.base_path(r.metric_code),
        // A note is plain strings and booleans: it always serialises.
        trigger_note: r.trigger.and_then(|t| serde_json::to_value(t).ok()),
        // The group of a FIFO topic is the metric, as in `run_request::build`.
        message_group_id: settings.fifo.then_some(r.metric_code),
        origin: r.origin,
    }
}

/// Writes the recipe of each new run (retries, triggers) to the outbox,
/// with the trigger note each carries.
/// Returns the outbox ids.
pub async fn enqueue(
    tx: &Transaction<'_>,
    new_runs: &[NewRun],
    requested_at: DateTime<Utc>,
    settings: &RequestSettings,
    origin: &Origin,
) -> StoreResult<Vec<OutboxId>> {
    let rows: Vec<NewMessage> = new_runs
        .iter()
        .map(|run| {
            let r = RecipeFor {
                run_id: &run.id,
                metric_code: &run.metric_code,
                requested_at,
                trigger: run.trigger.clone(),
                origin,
            };
            recipe(r, settings)
        })
        .collect();
    outbox::insert(tx, &rows).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run_request::{build, RunRequestInput};

    /// The recipe says what the full request would: the relay assembles the
    /// request from it, so the two must not drift apart.
    #[test]
    fn a_recipe_keeps_what_the_request_would_say() {
        let run_id = RunId::new("r1");
        let origin = Origin::default();
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let note = TriggerNote {
            degraded: true,
            stale: vec!["d2".into()],
            missing: vec![],
            folded: vec!["u1".into()],
        };
        for (fifo, trigger) in [(false, None), (true, None), (true, Some(note.clone()))] {
            let settings = RequestSettings {
                output_bucket: "out".into(),
                output_prefix: "metrics/".into(),
                output_path_style: Default::default(),
                fifo,
            };
            let r = RecipeFor {
                run_id: &run_id,
                metric_code: "m.x",
                requested_at: at,
                trigger: trigger.clone(),
                origin: &origin,
            };
            let row = recipe(r, &settings);
            let expression = serde_json::json!({});
            let full = build(
                &RunRequestInput {
                    run_id: &run_id,
                    metric_code: "m.x",
                    expression_type: "series_math",
                    expression_json: &expression,
                    attempt: 1,
                    requested_at: at,
                    series_datasets: &[],
                    updates: &[],
                },
                &settings,
            );
            assert_eq!(row.output_base_path, full.output.base_path, "fifo {fifo}");
            assert_eq!(row.message_group_id, full.message_group_id.as_deref());
            assert_eq!(row.requested_at, at);
            let back = row
                .trigger_note
                .map(|v| serde_json::from_value::<TriggerNote>(v).unwrap());
            assert_eq!(back, trigger);
        }
    }
}
