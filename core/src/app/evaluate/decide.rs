//! The evaluation's decisions, a pure function of the facts read: for each
//! claimed metric, its backlog in update order and then the transaction's
//! own update go through the rules of [`metric_evaluation`]; each run that
//! comes out is what the metric's pending run becomes (kept waiting, newly
//! opened, requested, degraded) with what it folded in. No I/O: the shell
//! (`super`) reads the facts and writes the plan (`super::plan`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::domain::ids::{DatasetId, RunId, UpdateId};
use crate::domain::metric_evaluation::{self, Arrival, MetricState};
use crate::domain::pending_run::{update_set_key, Received, Slot};
use crate::domain::run_request::UsedUpdate;
use crate::domain::trigger::{Degraded, Timers};
use crate::store::backlog::{self, Entry};
use crate::store::catalog::LockedMetric;
use crate::store::pending::OpenPending;
use crate::store::requests::Origin;

/// What is known of one claimed metric before it is evaluated.
pub struct MetricFacts<'a> {
    pub metric: &'a LockedMetric,
    /// Its pending run, if it has one.
    pub open: Option<&'a OpenPending>,
    /// Its required datasets, sorted.
    pub required: Vec<DatasetId>,
    /// The newest update of each dataset already evaluated for it.
    pub newest: &'a HashMap<DatasetId, UsedUpdate>,
    /// Updates waiting to be evaluated for it, oldest first.
    pub backlog: &'a [Entry],
}

/// An update to evaluate, with what caused it.
#[derive(Clone, Copy)]
pub struct Arrived<'a> {
    pub update: &'a UsedUpdate,
    pub origin: &'a Origin,
}

/// A run that is requested: when, what caused it, what it went without.
#[derive(Debug, Clone)]
pub struct Requested<'m> {
    pub at: DateTime<Utc>,
    pub origin: &'m Origin,
    pub degraded: Degraded,
    /// The key of the set of updates it uses (one run per metric and set).
    pub update_set_key: String,
    /// Its shortfall as stored (`metric_runs.degraded`), when degraded.
    pub degraded_json: Option<serde_json::Value>,
}

/// One run after the evaluation, before it is written.
#[derive(Debug)]
pub struct Decided<'m> {
    pub metric: &'m LockedMetric,
    pub run_id: RunId,
    pub created: bool,
    pub slots: Vec<Slot>,
    /// Indexes in `slots` of the rows an existing run changed.
    pub changed: Vec<usize>,
    pub requested: Option<Requested<'m>>,
    /// Under a policy or a hold: its timers and when to ask again (written
    /// only then; a run under the default rule has no timer row).
    pub timers: Option<(Timers, Option<DateTime<Utc>>)>,
    /// Updates folded in while it waited, with when.
    pub folded: Vec<(UpdateId, DateTime<Utc>)>,
    /// An existing run with a timer row (it may have folded updates before).
    pub had_timers: bool,
}

impl Decided<'_> {
    /// What it went without, when requested degraded.
    pub fn degraded(&self) -> Option<&Degraded> {
        self.requested
            .as_ref()
            .map(|r| &r.degraded)
            .filter(|d| d.is_degraded())
    }

    /// The updates it received, in slot (dataset) order.
    pub fn inputs(&self) -> impl Iterator<Item = &UpdateId> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.received.as_ref().map(|r| &r.update_id))
    }
}

/// The runs an evaluation decided, and the backlog rows it consumed.
#[derive(Debug, Default)]
pub struct Decisions<'m> {
    pub runs: Vec<Decided<'m>>,
    pub backlog_evaluated: Vec<backlog::Evaluated<'m>>,
    /// Metrics left with a run waiting for other datasets.
    pub runs_pending: usize,
}

impl<'m> Decisions<'m> {
    /// The runs requested.
    pub fn requested(&self) -> impl Iterator<Item = &Decided<'m>> {
        self.runs.iter().filter(|d| d.requested.is_some())
    }
}

/// The cause of a run the clock requested: no update, no trace.
static NO_ORIGIN: Origin = Origin {
    traceparent: None,
    source_sent_at: None,
};

fn received(u: &UsedUpdate) -> Received {
    Received {
        update_id: u.update_id.clone(),
        at: u.created_at,
    }
}

/// Each metric's backlog in update order, then `own` (the transaction's own
/// update), then the policy once more at `now`. `new_id` names the runs it
/// opens.
pub fn decide<'m>(
    facts: &[MetricFacts<'m>],
    own: Option<Arrived<'m>>,
    now: DateTime<Utc>,
    mut new_id: impl FnMut() -> RunId,
) -> Decisions<'m> {
    let mut out = Decisions::default();
    for f in facts {
        let m = f.metric;
        let mut queue: Vec<Arrived<'m>> = f
            .backlog
            .iter()
            .map(|e| Arrived {
                update: &e.update,
                origin: &e.origin,
            })
            .collect();
        out.backlog_evaluated
            .extend(f.backlog.iter().map(|e| backlog::Evaluated {
                metric_id: &m.id,
                update_id: &e.update.update_id,
            }));
        queue.extend(own);
        let arrivals: Vec<Arrival> = queue
            .iter()
            .map(|p| Arrival {
                dataset_id: p.update.dataset_id.clone(),
                update: received(p.update),
            })
            .collect();
        let state = MetricState {
            open: f.open.map(|o| o.slots.clone()),
            open_timers: f.open.map(|o| o.timers.clone()).unwrap_or_default(),
            policy: m.policy.clone(),
            timing: m.timing.clone(),
            required: f.required.clone(),
            required_days: m.required_days,
            newest: f
                .newest
                .iter()
                .map(|(d, u)| (d.clone(), received(u)))
                .collect(),
        };
        for run in metric_evaluation::evaluate(state, &arrivals, now) {
            out.runs_pending += usize::from(run.requested.is_none());
            let timers = match (&run.wait, m.timed()) {
                (Some((until, _)), true) => Some((run.timers.clone(), *until)),
                _ => None,
            };
            let requested = run.requested.map(|r| Requested {
                at: r.at,
                origin: r.by.map_or(&NO_ORIGIN, |i| queue[i].origin),
                update_set_key: update_set_key(&run.slots),
                degraded_json: r
                    .degraded
                    .is_degraded()
                    .then(|| serde_json::json!({"stale": r.degraded.stale, "missing": r.degraded.missing})),
                degraded: r.degraded,
            });
            out.runs.push(Decided {
                metric: m,
                run_id: match (f.open, run.existing) {
                    (Some(o), true) => o.run_id.clone(),
                    _ => new_id(),
                },
                created: !run.existing,
                had_timers: run.existing && f.open.is_some_and(|o| o.timed),
                changed: run.changed,
                slots: run.slots,
                timers,
                folded: run
                    .folded
                    .iter()
                    .map(|&i| {
                        (
                            queue[i].update.update_id.clone(),
                            queue[i].update.created_at,
                        )
                    })
                    .collect(),
                requested,
            });
        }
    }
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::{BTreeMap, HashMap};

    use chrono::{DateTime, Duration, Utc};

    use super::*;
    use crate::domain::ids::MetricId;
    use crate::domain::trigger_policy::{Role, TriggerPolicy};
    use crate::store::pending::OpenPending;

    pub fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    pub fn metric(roles: &[(&str, Role)]) -> LockedMetric {
        LockedMetric {
            id: MetricId::from("m1"),
            code: "m.one".into(),
            required_days: 7,
            policy: TriggerPolicy {
                inputs: roles
                    .iter()
                    .map(|(d, r)| (DatasetId::from(*d), *r))
                    .collect::<BTreeMap<_, _>>(),
                ..TriggerPolicy::default()
            },
            timing: Default::default(),
        }
    }

    /// Update `id` of `dataset`, `days` old at [`now`].
    pub fn update(dataset: &str, id: &str, days: i64) -> UsedUpdate {
        UsedUpdate {
            dataset_id: dataset.into(),
            update_id: id.into(),
            bucket: String::new(),
            manifest_path: format!("{dataset}/{id}/manifest.json"),
            projections_path: String::new(),
            created_at: now() - Duration::days(days),
        }
    }

    pub fn open(slots: &[(&str, Option<&str>)]) -> OpenPending {
        OpenPending {
            run_id: "open-run".into(),
            metric_id: "m1".into(),
            slots: slots
                .iter()
                .map(|(d, u)| Slot {
                    dataset_id: (*d).into(),
                    required_days: 7,
                    received: u.map(|u| Received {
                        update_id: u.into(),
                        at: now() - Duration::hours(1),
                    }),
                })
                .collect(),
            timers: Default::default(),
            timed: false,
        }
    }

    /// One case: the facts of metric m1 (required d1 and d2) and its own
    /// update; what becomes of its runs.
    pub struct Case {
        pub name: &'static str,
        pub roles: &'static [(&'static str, Role)],
        pub newest: Vec<UsedUpdate>,
        pub open: Option<OpenPending>,
        pub backlog: Vec<UsedUpdate>,
        pub own: Option<UsedUpdate>,
    }

    /// A case of one own update and no backlog.
    pub fn with_own(
        roles: &'static [(&'static str, Role)],
        newest: Vec<UsedUpdate>,
        open: Option<OpenPending>,
        own: UsedUpdate,
    ) -> Case {
        Case {
            name: "",
            roles,
            newest,
            open,
            backlog: vec![],
            own: Some(own),
        }
    }

    /// A run as the table states it: opened (not the open run), requested,
    /// the inputs it uses, its stored shortfall.
    #[derive(Debug, PartialEq)]
    pub struct Run {
        pub created: bool,
        pub requested: bool,
        pub inputs: Vec<String>,
        pub degraded: Option<serde_json::Value>,
    }

    pub fn run(created: bool, requested: bool, inputs: &[&'static str]) -> Run {
        Run {
            created,
            requested,
            inputs: inputs.iter().map(|u| u.to_string()).collect(),
            degraded: None,
        }
    }

    /// Decides `case` and hands the decisions to `check`.
    pub fn decided(case: &Case, check: impl FnOnce(&Decisions<'_>)) {
        let m = metric(case.roles);
        let newest: HashMap<DatasetId, UsedUpdate> = case
            .newest
            .iter()
            .map(|u| (u.dataset_id.clone(), u.clone()))
            .collect();
        let origin = Origin::default();
        let backlog: Vec<Entry> = case
            .backlog
            .iter()
            .map(|u| Entry {
                update: u.clone(),
                origin: origin.clone(),
            })
            .collect();
        let facts = [MetricFacts {
            metric: &m,
            open: case.open.as_ref(),
            required: vec!["d1".into(), "d2".into()],
            newest: &newest,
            backlog: &backlog,
        }];
        let own = case.own.as_ref().map(|update| Arrived {
            update,
            origin: &origin,
        });
        let mut n = 0;
        let d = decide(&facts, own, now(), || {
            n += 1;
            RunId::new(format!("new-{n}"))
        });
        check(&d);
    }

    fn runs_of(d: &Decisions<'_>) -> Vec<Run> {
        d.runs
            .iter()
            .map(|r| Run {
                created: r.created,
                requested: r.requested.is_some(),
                inputs: r.inputs().map(ToString::to_string).collect(),
                degraded: r.requested.as_ref().and_then(|q| q.degraded_json.clone()),
            })
            .collect()
    }

    #[test]
    fn each_metric_s_pending_run_becomes_what_its_facts_say() {
        let cases = [
            (
                Case {
                    name: "the own update completes a new run with the other's fresh newest",
                    roles: &[],
                    newest: vec![update("d2", "u2", 1)],
                    open: None,
                    backlog: vec![],
                    own: Some(update("d1", "u1", 0)),
                },
                vec![run(true, true, &["u1", "u2"])],
                0,
            ),
            (
                Case {
                    name: "a new run waits for a dataset with no update",
                    roles: &[],
                    newest: vec![],
                    open: None,
                    backlog: vec![],
                    own: Some(update("d1", "u1", 0)),
                },
                vec![run(true, false, &["u1"])],
                1,
            ),
            (
                Case {
                    name: "a stale newest update does not complete it",
                    roles: &[],
                    newest: vec![update("d2", "u2", 8)],
                    open: None,
                    backlog: vec![],
                    own: Some(update("d1", "u1", 0)),
                },
                vec![run(true, false, &["u1"])],
                1,
            ),
            (
                Case {
                    name: "the open run takes the update it waited for",
                    roles: &[],
                    newest: vec![update("d1", "u1", 0)],
                    open: Some(open(&[("d1", Some("u1")), ("d2", None)])),
                    backlog: vec![],
                    own: Some(update("d2", "u2", 0)),
                },
                vec![run(false, true, &["u1", "u2"])],
                0,
            ),
            (
                Case {
                    name: "the backlog goes first, then the own update",
                    roles: &[],
                    newest: vec![],
                    open: None,
                    backlog: vec![update("d1", "u0", 0)],
                    own: Some(update("d2", "u2", 0)),
                },
                vec![run(true, true, &["u0", "u2"])],
                0,
            ),
            (
                Case {
                    name: "two updates of one dataset: two runs, in update order",
                    roles: &[],
                    newest: vec![update("d2", "u2", 1)],
                    open: None,
                    backlog: vec![update("d1", "u0", 0)],
                    own: Some(update("d1", "u1", 0)),
                },
                vec![
                    run(true, true, &["u0", "u2"]),
                    run(true, true, &["u1", "u2"]),
                ],
                0,
            ),
            (
                Case {
                    name: "an optional input with no update is gone without, and recorded",
                    roles: &[("d2", Role::Optional)],
                    newest: vec![],
                    open: None,
                    backlog: vec![],
                    own: Some(update("d1", "u1", 0)),
                },
                vec![Run {
                    degraded: Some(serde_json::json!({"stale": [], "missing": ["d2"]})),
                    ..run(true, true, &["u1"])
                }],
                0,
            ),
            (
                Case {
                    name: "no update and no open run: nothing",
                    roles: &[],
                    newest: vec![update("d1", "u1", 0), update("d2", "u2", 0)],
                    open: None,
                    backlog: vec![],
                    own: None,
                },
                vec![],
                0,
            ),
        ];
        for (case, want, pending) in cases {
            decided(&case, |d| {
                assert_eq!(runs_of(d), want, "{}", case.name);
                assert_eq!(d.runs_pending, pending, "{}", case.name);
                assert_eq!(
                    d.backlog_evaluated.len(),
                    case.backlog.len(),
                    "{}",
                    case.name
                );
                for r in &d.runs {
                    let expected_id = if r.created { "new-" } else { "open-run" };
                    assert!(
                        r.run_id.as_str().starts_with(expected_id),
                        "{}: {:?}",
                        case.name,
                        r.run_id
                    );
                }
            });
        }
    }

    #[test]
    fn a_requested_run_s_key_is_that_of_its_set_of_updates() {
        let case = |own: &str| Case {
            name: "key",
            roles: &[],
            newest: vec![update("d2", "u2", 1)],
            open: None,
            backlog: vec![],
            own: Some(update("d1", own, 0)),
        };
        let key = |c: &Case| {
            let mut k = None;
            decided(c, |d| {
                k = d.runs[0]
                    .requested
                    .as_ref()
                    .map(|r| r.update_set_key.clone())
            });
            k.expect("requested")
        };
        assert_eq!(key(&case("u1")), key(&case("u1")));
        assert_ne!(key(&case("u1")), key(&case("u9")));
    }
}
