//! The writes of an evaluation's decisions, as one typed plan
//! ([`EvaluationWrites`]) for the store to execute, and the outbox recipes of
//! the runs requested with their trigger notes. Pure: the shell (`super`)
//! reads what these need and executes what they return.

use std::collections::HashMap;
use std::time::Duration;

use super::decide::{Decided, Decisions};
use crate::app::request;
use crate::domain::ids::{MetricId, RunId, UpdateId};
use crate::domain::run_request::{RequestSettings, TriggerNote};
use crate::store::evaluation::EvaluationWrites;
use crate::store::pending;
use crate::store::requests::NewMessage;
use crate::store::runs::{self, CreatedRun, RowInputs};

/// The requested runs whose earlier folded updates the note must list: those
/// that waited under a policy or a hold.
pub fn folded_before_wanted<'m>(decisions: &'m Decisions<'m>) -> Vec<&'m RunId> {
    decisions
        .requested()
        .filter(|d| d.had_timers)
        .map(|d| &d.run_id)
        .collect()
}

/// The outbox recipe of each requested run, in decision order.
pub fn recipes<'m>(
    settings: &RequestSettings,
    decisions: &'m Decisions<'m>,
    folded_before: &HashMap<RunId, Vec<UpdateId>>,
) -> Vec<NewMessage<'m>> {
    decisions
        .runs
        .iter()
        .filter_map(|d| {
            let r = d.requested.as_ref()?;
            let recipe = request::RecipeFor {
                run_id: &d.run_id,
                metric_code: &d.metric.code,
                requested_at: r.at,
                trigger: trigger_note(d, folded_before.get(&d.run_id)),
                origin: r.origin,
            };
            Some(request::recipe(recipe, settings))
        })
        .collect()
}

/// What a request under a policy says beyond the reference contract: the
/// inputs it went without and the updates it folded in, earlier ones first
/// (the reference runner ignores the field).
pub fn trigger_note(d: &Decided<'_>, folded_before: Option<&Vec<UpdateId>>) -> Option<TriggerNote> {
    let degraded = d.degraded();
    let before = folded_before.map(Vec::as_slice).unwrap_or_default();
    if degraded.is_none() && d.folded.is_empty() && before.is_empty() {
        return None;
    }
    let ids = |v: &[crate::domain::ids::DatasetId]| v.iter().map(|x| x.to_string()).collect();
    Some(TriggerNote {
        degraded: degraded.is_some(),
        stale: degraded.map(|g| ids(&g.stale)).unwrap_or_default(),
        missing: degraded.map(|g| ids(&g.missing)).unwrap_or_default(),
        folded: before
            .iter()
            .chain(d.folded.iter().map(|(u, _)| u))
            .map(ToString::to_string)
            .collect(),
    })
}

/// A requested run's first two inputs, kept on its row (migrations V11
/// and V13); the others go to `run_extra_inputs`.
fn row_inputs<'a>(d: &'a Decided<'a>) -> RowInputs<'a> {
    let mut inputs = d.inputs();
    RowInputs {
        first: inputs.next(),
        second: inputs.next(),
    }
}

/// What the plan carries besides the decisions.
pub struct PlanParts<'a> {
    /// The requests' recipes ([`recipes`]).
    pub requests: Vec<NewMessage<'a>>,
    /// Set when the caller's relay publishes the requests at the commit.
    pub lease: Option<Duration>,
    /// Metrics held whose backlog is looked at behind the writes.
    pub check_backlog: &'a [MetricId],
}

/// Every write of `decisions`.
pub fn plan<'a>(decisions: &'a Decisions<'a>, parts: PlanParts<'a>) -> EvaluationWrites<'a> {
    let runs = &decisions.runs;
    let slot_rows = |d: &'a Decided<'a>, slots: Vec<&'a crate::domain::pending_run::Slot>| {
        slots.into_iter().map(move |slot| pending::SlotRow {
            run_id: &d.run_id,
            slot,
        })
    };
    EvaluationWrites {
        queue: runs
            .iter()
            .filter(|d| !d.created)
            .filter_map(|d| {
                let r = d.requested.as_ref()?;
                Some(runs::Completed {
                    run_id: &d.run_id,
                    update_set_key: &r.update_set_key,
                    degraded: r.degraded_json.as_ref(),
                    inputs: row_inputs(d),
                })
            })
            .collect(),
        create: runs
            .iter()
            .filter(|d| d.created)
            .map(|d| CreatedRun {
                id: &d.run_id,
                metric_id: &d.metric.id,
                metric_code: &d.metric.code,
                queued_with_key: d.requested.as_ref().map(|r| r.update_set_key.as_str()),
                degraded: d.requested.as_ref().and_then(|r| r.degraded_json.as_ref()),
                inputs: match d.requested {
                    Some(_) => row_inputs(d),
                    None => RowInputs::default(),
                },
            })
            .collect(),
        // A run complete at creation never waits: it gets no pending rows
        // (its inputs are recorded like every requested run's: the first two
        // on the run row, the others in run_extra_inputs).
        new_slots: runs
            .iter()
            .filter(|d| d.created && d.requested.is_none())
            .flat_map(|d| slot_rows(d, d.slots.iter().collect()))
            .collect(),
        changed_slots: runs
            .iter()
            .filter(|d| !d.created)
            .flat_map(|d| slot_rows(d, d.changed.iter().map(|&i| &d.slots[i]).collect()))
            .collect(),
        uses: decisions
            .requested()
            .flat_map(|d| {
                d.inputs().skip(2).map(move |update_id| runs::Use {
                    run_id: &d.run_id,
                    update_id,
                })
            })
            .collect(),
        requests: parts.requests,
        lease: parts.lease,
        backlog_evaluated: decisions.backlog_evaluated.clone(),
        timers: runs
            .iter()
            .filter_map(|d| {
                d.timers
                    .as_ref()
                    .map(|(timers, decide_at)| pending::TimerRow {
                        run_id: &d.run_id,
                        metric_id: &d.metric.id,
                        timers,
                        decide_at: *decide_at,
                    })
            })
            .collect(),
        // A requested run's timers are done with, and so are those of a run
        // whose metric lost its policy or hold (else the sweep would find
        // them due forever); runs that never had any are not looked for.
        timers_done: runs
            .iter()
            .filter(|d| d.had_timers && (d.requested.is_some() || d.timers.is_none()))
            .map(|d| &d.run_id)
            .collect(),
        folded: runs
            .iter()
            .flat_map(|d| {
                d.folded
                    .iter()
                    .map(move |(update_id, at)| pending::FoldedRow {
                        run_id: &d.run_id,
                        update_id,
                        at: *at,
                    })
            })
            .collect(),
        cooled: decisions
            .requested()
            .filter(|d| d.metric.policy.cooldown.is_some())
            .filter_map(|d| d.requested.as_ref().map(|r| (&d.metric.id, r.at)))
            .collect(),
        check_backlog: parts.check_backlog,
    }
}

#[cfg(test)]
mod tests {
    use super::super::decide::tests::{decided, open, update, with_own};
    use super::*;
    use crate::domain::trigger_policy::Role;

    fn settings() -> RequestSettings {
        RequestSettings {
            output_bucket: "out".into(),
            output_prefix: "metrics/".into(),
            output_path_style: Default::default(),
            fifo: false,
        }
    }

    /// Counts of each part of the plan: queue, create (of which queued),
    /// new slots, changed slots, uses, requests.
    fn shape(w: &EvaluationWrites<'_>) -> [usize; 7] {
        [
            w.queue.len(),
            w.create.len(),
            w.create
                .iter()
                .filter(|c| c.queued_with_key.is_some())
                .count(),
            w.new_slots.len(),
            w.changed_slots.len(),
            w.uses.len(),
            w.requests.len(),
        ]
    }

    #[test]
    fn the_plan_writes_each_decision_where_it_belongs() {
        let cases = [
            (
                "a run complete at creation: created queued, no pending rows, its request",
                with_own(
                    &[],
                    vec![update("d2", "u2", 1)],
                    None,
                    update("d1", "u1", 0),
                ),
                [0, 1, 1, 0, 0, 0, 1],
            ),
            (
                "a new run that waits: created pending with a row per dataset, no request",
                with_own(&[], vec![], None, update("d1", "u1", 0)),
                [0, 1, 0, 2, 0, 0, 0],
            ),
            (
                "the open run completed: queued, its changed row, its request",
                with_own(
                    &[],
                    vec![update("d1", "u1", 0)],
                    Some(open(&[("d1", Some("u1")), ("d2", None)])),
                    update("d2", "u2", 0),
                ),
                [1, 0, 0, 0, 1, 0, 1],
            ),
        ];
        for (name, case, want) in cases {
            decided(&case, |d| {
                let requests = recipes(&settings(), d, &HashMap::new());
                let w = plan(
                    d,
                    PlanParts {
                        requests,
                        lease: None,
                        check_backlog: &[],
                    },
                );
                assert_eq!(shape(&w), want, "{name}");
                for r in &w.requests {
                    assert_eq!(r.output_base_path, "s3://out/metrics/m.one/", "{name}");
                }
            });
        }
    }

    #[test]
    fn a_trigger_note_says_what_was_gone_without_and_what_was_folded() {
        let optional = with_own(
            &[("d2", Role::Optional)],
            vec![],
            None,
            update("d1", "u1", 0),
        );
        decided(&optional, |d| {
            let run = &d.runs[0];
            let note = trigger_note(run, None).expect("degraded: a note");
            assert!(note.degraded);
            assert_eq!(note.missing, ["d2"]);
            assert!(note.folded.is_empty());
            let before = vec![UpdateId::from("u0")];
            let note = trigger_note(run, Some(&before)).unwrap();
            assert_eq!(note.folded, ["u0"], "earlier folded updates are listed");
        });
        let plain = with_own(
            &[],
            vec![update("d2", "u2", 1)],
            None,
            update("d1", "u1", 0),
        );
        decided(&plain, |d| {
            assert_eq!(trigger_note(&d.runs[0], None), None, "nothing to say");
            assert!(folded_before_wanted(d).is_empty());
        });
    }
}
