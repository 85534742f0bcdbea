//! Evaluating one metric for a sequence of updates, in order
//! (docs/semantics.md, "Contention"): the fold over [`absorb`] that the
//! holder of a metric runs over the metric's backlog and then its own update.
//! Each update in turn becomes the newest of its dataset and is absorbed into
//! the metric's open run; whether the run is requested is the metric's
//! trigger policy's decision ([`trigger::decide`]), taken at each update's
//! time and once more at the evaluation's. The result is what evaluating the
//! updates one transaction each, in the same order, would have written.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::ids::DatasetId;
use super::pending_run::{absorb, Received, Slot};
use super::trigger::{
    self, condition_holds, wants_fresh, Decision, Degraded, MetricTiming, Timers, Why,
};
use super::trigger_policy::TriggerPolicy;

/// One update to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    pub dataset_id: DatasetId,
    pub update: Received,
}

/// The metric before the updates.
#[derive(Debug, Clone, Default)]
pub struct MetricState {
    /// The rows of the metric's pending run, if it has one.
    pub open: Option<Vec<Slot>>,
    /// The open run's timers (ignored without an open run).
    pub open_timers: Timers,
    /// The datasets a new run waits for (sorted, distinct).
    pub required: Vec<DatasetId>,
    pub required_days: i32,
    /// The newest update of each required dataset among those already
    /// evaluated for this metric.
    pub newest: HashMap<DatasetId, Received>,
    pub policy: TriggerPolicy,
    pub timing: MetricTiming,
}

/// A run requested by the evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The arrival that last moved the run (its cause, for the trace);
    /// `None` when only the clock did.
    pub by: Option<usize>,
    pub at: DateTime<Utc>,
    pub degraded: Degraded,
}

/// A run of the metric after the updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAfter {
    /// The metric's pending run from before (else a new run).
    pub existing: bool,
    pub slots: Vec<Slot>,
    /// For an existing run: the rows that changed, ascending.
    pub changed: Vec<usize>,
    pub timers: Timers,
    /// Arrivals folded into the run while it waited with its condition
    /// holding (recorded when the policy delays runs or the metric is held).
    pub folded: Vec<usize>,
    /// Set when requested; `None` while it waits.
    pub requested: Option<Requested>,
    /// For the run left waiting: until when, and why.
    pub wait: Option<(Option<DateTime<Utc>>, Why)>,
    /// The last arrival that moved it.
    touched_by: Option<usize>,
}

impl RunAfter {
    fn new(state: &MetricState, at: DateTime<Utc>) -> Self {
        let slots = state
            .required
            .iter()
            .map(|d| Slot {
                dataset_id: d.clone(),
                required_days: state.required_days,
                received: None,
            })
            .collect();
        Self {
            existing: false,
            slots,
            changed: Vec::new(),
            timers: Timers {
                opened_at: Some(at),
                ..Timers::default()
            },
            folded: Vec::new(),
            requested: None,
            wait: None,
            touched_by: None,
        }
    }

    /// Asks the policy at `now`; a requested run takes the rows the
    /// decision used (a grace deadline fills late inputs).
    fn decide(&mut self, state: &mut MetricState, now: DateTime<Utc>) -> bool {
        let decision = trigger::decide(
            &state.policy,
            &self.slots,
            &self.timers,
            &state.newest,
            &state.timing,
            now,
        );
        match decision {
            Decision::Request { fills, degraded } => {
                for (i, received) in fills {
                    self.slots[i].received = Some(received);
                    if self.existing {
                        self.changed.push(i);
                    }
                }
                self.changed.sort_unstable();
                self.changed.dedup();
                self.requested = Some(Requested {
                    by: self.touched_by,
                    at: now,
                    degraded,
                });
                self.wait = None;
                state.timing.last_requested_at = Some(now);
                true
            }
            Decision::Wait { until, why } => {
                self.wait = Some((until, why));
                false
            }
        }
    }
}

/// Whether `a` is newer than `b` (the order of "newest update of a dataset":
/// creation time, then id).
fn newer(a: &Received, b: &Received) -> bool {
    (a.at, &a.update_id) > (b.at, &b.update_id)
}

/// Evaluates `arrivals` in order, then asks once more at `now`. Returns the
/// runs requested, in order, then the run left waiting (the existing one
/// even if nothing changed, a new one only if some update started it).
pub fn evaluate(mut state: MetricState, arrivals: &[Arrival], now: DateTime<Utc>) -> Vec<RunAfter> {
    let mut out = Vec::new();
    let timers = std::mem::take(&mut state.open_timers);
    let mut current = state.open.take().map(|slots| RunAfter {
        existing: true,
        slots,
        changed: Vec::new(),
        timers,
        folded: Vec::new(),
        requested: None,
        wait: None,
        touched_by: None,
    });
    let records_folds = state.policy.delays() || state.timing.hold.is_some();
    for (i, a) in arrivals.iter().enumerate() {
        // A run whose time came before this update goes first, as the
        // sweep would have requested it then.
        if let Some(run) = current.as_mut() {
            if run.decide(&mut state, a.update.at) {
                out.extend(current.take());
            }
        }
        let replace = state
            .newest
            .get(&a.dataset_id)
            .is_none_or(|n| newer(&a.update, n));
        if replace {
            state.newest.insert(a.dataset_id.clone(), a.update.clone());
        }
        let triggers = state.policy.role(&a.dataset_id).triggers();
        if current.is_none() && !triggers {
            continue;
        }
        let run = current.get_or_insert_with(|| RunAfter::new(&state, a.update.at));
        let policy = &state.policy;
        let changed = absorb(
            &mut run.slots,
            &a.dataset_id,
            &a.update,
            &state.newest,
            a.update.at,
            |d| wants_fresh(policy, d),
        );
        if run.existing {
            run.changed.extend(changed);
            run.changed.sort_unstable();
            run.changed.dedup();
        }
        run.touched_by = Some(i);
        if condition_holds(policy, &run.slots) {
            run.timers.ready_at.get_or_insert(a.update.at);
            if triggers {
                run.timers.last_trigger_at = Some(a.update.at);
                if records_folds {
                    run.folded.push(i);
                }
            }
        }
        if run.decide(&mut state, a.update.at) {
            out.extend(current.take());
        }
    }
    if let Some(run) = current.as_mut() {
        run.decide(&mut state, now);
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::trigger::Hold;
    use crate::domain::trigger_policy::{Grace, Mode, Role, Settle};
    use chrono::{DateTime, Utc};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn arrival(d: &str, id: &str, at: &str) -> Arrival {
        Arrival {
            dataset_id: d.into(),
            update: Received {
                update_id: id.into(),
                at: t(at),
            },
        }
    }

    fn state(required: &[&str], open: Option<Vec<Option<&str>>>) -> MetricState {
        let at = t("2026-11-20T00:00:00Z");
        MetricState {
            open: open.map(|rows| {
                required
                    .iter()
                    .zip(rows)
                    .map(|(d, r)| Slot {
                        dataset_id: (*d).into(),
                        required_days: 7,
                        received: r.map(|id| Received {
                            update_id: id.into(),
                            at,
                        }),
                    })
                    .collect()
            }),
            required: required.iter().map(|d| (*d).into()).collect(),
            required_days: 7,
            ..MetricState::default()
        }
    }

    /// After every arrival of the tests.
    const NOW: &str = "2026-11-20T23:00:00Z";

    /// Each run as (existing, update ids received in row order, completed by).
    type Shape = (bool, Vec<Option<&'static str>>, Option<usize>);

    fn shape(runs: &[RunAfter]) -> Vec<(bool, Vec<Option<String>>, Option<usize>)> {
        runs.iter()
            .map(|r| {
                (
                    r.existing,
                    r.slots
                        .iter()
                        .map(|s| {
                            s.received
                                .as_ref()
                                .map(|x| x.update_id.as_str().to_string())
                        })
                        .collect(),
                    r.requested.as_ref().and_then(|q| q.by),
                )
            })
            .collect()
    }

    fn want(runs: &[Shape]) -> Vec<(bool, Vec<Option<String>>, Option<usize>)> {
        runs.iter()
            .map(|(e, ids, c)| (*e, ids.iter().map(|i| i.map(String::from)).collect(), *c))
            .collect()
    }

    #[test]
    fn updates_are_evaluated_in_order_as_separate_transactions_would() {
        const T1: &str = "2026-11-20T01:00:00Z";
        const T2: &str = "2026-11-20T02:00:00Z";
        const T3: &str = "2026-11-20T03:00:00Z";
        let cases: Vec<(&str, MetricState, Vec<Arrival>, Vec<Shape>)> = vec![
            (
                "one update of a one-dataset metric completes a new run",
                state(&["a"], None),
                vec![arrival("a", "a1", T1)],
                vec![(false, vec![Some("a1")], Some(0))],
            ),
            (
                "two updates of one dataset: two runs, one per update",
                state(&["a"], None),
                vec![arrival("a", "a1", T1), arrival("a", "a2", T2)],
                vec![
                    (false, vec![Some("a1")], Some(0)),
                    (false, vec![Some("a2")], Some(1)),
                ],
            ),
            (
                "a then b: the first waits, the second completes the same run",
                state(&["a", "b"], None),
                vec![arrival("a", "a1", T1), arrival("b", "b1", T2)],
                vec![(false, vec![Some("a1"), Some("b1")], Some(1))],
            ),
            (
                "a, b, a: the third starts a run that takes b's update as newest",
                state(&["a", "b"], None),
                vec![
                    arrival("a", "a1", T1),
                    arrival("b", "b1", T2),
                    arrival("a", "a2", T3),
                ],
                vec![
                    (false, vec![Some("a1"), Some("b1")], Some(1)),
                    (false, vec![Some("a2"), Some("b1")], Some(2)),
                ],
            ),
            (
                "an existing run is completed and reports its changed row",
                state(&["a", "b"], Some(vec![Some("a0"), None])),
                vec![arrival("b", "b1", T1)],
                vec![(true, vec![Some("a0"), Some("b1")], Some(0))],
            ),
            (
                "an existing run that nothing completes stays, with its changes",
                state(&["a", "b"], Some(vec![None, None])),
                vec![arrival("a", "a1", T1), arrival("a", "a2", T2)],
                vec![(true, vec![Some("a2"), None], None)],
            ),
            (
                "an existing run untouched by the updates is still returned",
                state(&["a", "b"], Some(vec![None, None])),
                vec![],
                vec![(true, vec![None, None], None)],
            ),
            (
                "no updates and no open run: nothing",
                state(&["a"], None),
                vec![],
                vec![],
            ),
        ];
        for (name, st, arrivals, expected) in cases {
            assert_eq!(
                shape(&evaluate(st, &arrivals, t(NOW))),
                want(&expected),
                "{name}"
            );
        }
    }

    fn evaluate_now(st: MetricState, arrivals: &[Arrival]) -> Vec<RunAfter> {
        evaluate(st, arrivals, t(NOW))
    }

    /// Needs a and b; b2 (02:00) was evaluated before.
    fn newest_b2() -> MetricState {
        let mut st = state(&["a", "b"], None);
        st.newest.insert(
            "b".into(),
            Received {
                update_id: "b2".into(),
                at: t("2026-11-20T02:00:00Z"),
            },
        );
        st
    }

    #[test]
    fn an_older_update_evaluated_later_does_not_become_the_newest() {
        // b2 (newer) was evaluated before; b1 arrives later but is older: a
        // run that a's update then starts takes b2, the newest.
        let st = newest_b2();
        let runs = evaluate_now(
            st,
            &[
                arrival("b", "b1", "2026-11-20T01:00:00Z"),
                arrival("a", "a1", "2026-11-20T03:00:00Z"),
            ],
        );
        assert_eq!(
            shape(&runs),
            want(&[(false, vec![Some("a1"), Some("b1")], Some(1))]),
            "b's row keeps b1 (its own update, still fresh)"
        );
        let st = newest_b2();
        let runs = evaluate_now(
            st,
            &[
                arrival("a", "a0", "2026-11-20T01:00:00Z"),
                arrival("b", "b1", "2026-11-20T01:30:00Z"),
                arrival("a", "a1", "2026-11-20T03:00:00Z"),
            ],
        );
        assert_eq!(
            shape(&runs),
            want(&[
                (false, vec![Some("a0"), Some("b2")], Some(0)),
                (false, vec![Some("a0"), Some("b1")], Some(1)),
                (false, vec![Some("a1"), Some("b2")], Some(2)),
            ]),
            "b1 completes a run of its own, but the newest of b stays b2"
        );
    }

    fn minutes(n: u64) -> std::time::Duration {
        std::time::Duration::from_secs(60 * n)
    }

    /// `n` updates of `d`, one a minute from 10:00.
    fn burst(d: &str, n: usize) -> Vec<Arrival> {
        (0..n)
            .map(|i| {
                let at = t("2026-11-20T10:00:00Z") + chrono::Duration::minutes(i as i64);
                Arrival {
                    dataset_id: d.into(),
                    update: Received {
                        update_id: format!("{d}{i}").as_str().into(),
                        at,
                    },
                }
            })
            .collect()
    }

    #[test]
    fn a_settle_window_folds_a_burst_into_one_run() {
        let mut st = state(&["a"], None);
        st.policy.settle = Some(Settle {
            quiet: minutes(5),
            max_wait: minutes(60),
        });
        let arrivals = burst("a", 20);
        // At 10:21 the window (quiet until 10:24) is still open.
        let runs = evaluate(st.clone(), &arrivals, t("2026-11-20T10:21:00Z"));
        assert_eq!(runs.len(), 1);
        assert!(runs[0].requested.is_none());
        assert_eq!(runs[0].folded, (0..20).collect::<Vec<_>>());
        assert_eq!(
            runs[0].wait.as_ref().map(|(u, _)| *u),
            Some(Some(t("2026-11-20T10:24:00Z")))
        );
        // At 10:24 it goes, with the newest update and all 20 folded.
        let runs = evaluate(st, &arrivals, t("2026-11-20T10:24:00Z"));
        assert_eq!(runs.len(), 1);
        let r = runs[0].requested.as_ref().expect("requested");
        assert_eq!((r.by, r.at), (Some(19), t("2026-11-20T10:24:00Z")));
        assert_eq!(runs[0].slots[0].received.as_ref().unwrap().update_id, "a19");
        assert_eq!(runs[0].folded.len(), 20);
    }

    #[test]
    fn a_run_due_before_an_update_goes_first() {
        let mut st = state(&["a"], None);
        st.policy.settle = Some(Settle {
            quiet: minutes(5),
            max_wait: minutes(5),
        });
        let mut arrivals = burst("a", 2);
        arrivals[1].update.at = t("2026-11-20T10:30:00Z");
        let runs = evaluate(st, &arrivals, t("2026-11-20T10:31:00Z"));
        let summary: Vec<_> = runs
            .iter()
            .map(|r| (r.folded.clone(), r.requested.as_ref().map(|q| q.at)))
            .collect();
        assert_eq!(
            summary,
            vec![
                (vec![0], Some(t("2026-11-20T10:30:00Z"))),
                (vec![1], None),
            ],
            "the first run was due at 10:05 and is requested before the second update starts its own"
        );
    }

    #[test]
    fn context_updates_never_start_a_run_and_optional_ones_need_no_company() {
        let mut st = state(&["a", "c", "o"], None);
        st.policy.inputs.insert("c".into(), Role::Context);
        st.policy.inputs.insert("o".into(), Role::Optional);
        let runs = evaluate_now(st.clone(), &[arrival("c", "c1", "2026-11-20T01:00:00Z")]);
        assert!(runs.is_empty(), "a context update alone: nothing");
        let runs = evaluate_now(
            st.clone(),
            &[
                arrival("c", "c1", "2026-11-20T01:00:00Z"),
                arrival("a", "a1", "2026-11-20T02:00:00Z"),
            ],
        );
        assert_eq!(
            shape(&runs),
            want(&[(false, vec![Some("a1"), Some("c1"), None], Some(1))]),
            "a required update runs with the context's newest and without the optional"
        );
        assert_eq!(
            runs[0].requested.as_ref().unwrap().degraded.missing,
            vec![DatasetId::new("o")]
        );
        st.required = vec!["c".into(), "o".into()];
        let runs = evaluate_now(st, &[arrival("o", "o1", "2026-11-20T02:00:00Z")]);
        assert_eq!(
            shape(&runs),
            want(&[(false, vec![None, Some("o1")], Some(0))]),
            "with no required input, an optional update triggers"
        );
    }

    /// Needs a and b; b's newest update, b0, is from October: stale.
    fn with_stale_b0() -> MetricState {
        let mut st = state(&["a", "b"], None);
        st.newest.insert(
            "b".into(),
            Received {
                update_id: "b0".into(),
                at: t("2026-10-01T00:00:00Z"),
            },
        );
        st
    }

    #[test]
    fn mode_any_runs_with_stale_inputs_and_marks_them() {
        let mut st = with_stale_b0();
        st.policy.mode = Mode::Any;
        let runs = evaluate_now(st, &[arrival("a", "a1", "2026-11-20T01:00:00Z")]);
        assert_eq!(
            shape(&runs),
            want(&[(false, vec![Some("a1"), Some("b0")], Some(0))])
        );
        assert_eq!(
            runs[0].requested.as_ref().unwrap().degraded.stale,
            vec![DatasetId::new("b")]
        );
    }

    #[test]
    fn a_held_metric_folds_updates_and_requests_nothing() {
        let mut st = state(&["a"], None);
        st.timing.hold = Some(Hold {
            since: t("2026-11-20T09:00:00Z"),
            by: "ops".into(),
        });
        let runs = evaluate_now(st.clone(), &burst("a", 3));
        assert_eq!(runs.len(), 1);
        assert!(runs[0].requested.is_none());
        assert_eq!(runs[0].folded, vec![0, 1, 2]);
        // Resumed: the one waiting run goes with the newest input.
        st.timing.hold = None;
        st.open = Some(runs[0].slots.clone());
        st.open_timers = runs[0].timers.clone();
        let runs = evaluate_now(st, &[]);
        assert_eq!(shape(&runs), want(&[(true, vec![Some("a2")], None)]));
        assert!(runs[0].requested.is_some());
    }

    #[test]
    fn a_grace_deadline_requests_a_waiting_run_with_what_there_is() {
        let mut st = with_stale_b0();
        st.policy.grace = Some(Grace::After(minutes(60)));
        let arrivals = [arrival("a", "a1", "2026-11-20T10:00:00Z")];
        let runs = evaluate(st.clone(), &arrivals, t("2026-11-20T10:59:00Z"));
        assert!(runs[0].requested.is_none());
        let runs = evaluate(st, &arrivals, t("2026-11-20T11:00:00Z"));
        assert_eq!(
            shape(&runs),
            want(&[(false, vec![Some("a1"), Some("b0")], Some(0))])
        );
        assert_eq!(
            runs[0].requested.as_ref().unwrap().degraded.stale,
            vec![DatasetId::new("b")]
        );
    }

    mod timelines {
        //! Random timelines of updates, clock ticks, holds and resumes,
        //! evaluated one step at a time as the workers would (each step its
        //! own evaluation, the waiting run carried over), with the rules
        //! checked after every step.

        use super::*;
        use proptest::prelude::*;
        use std::collections::HashSet;

        #[derive(Debug, Clone)]
        enum Step {
            /// An update of dataset `0..3`, `gap` minutes after the last step.
            Arrive(usize, i64),
            /// The sweep, `gap` minutes later.
            Tick(i64),
            Hold,
            Resume,
            /// `resume --drop`: the hold ends and the waiting run is
            /// canceled, with what it held.
            Drop,
        }

        const DATASETS: [&str; 3] = ["a", "b", "c"];

        fn arb_step() -> impl Strategy<Value = Step> {
            prop_oneof![
                6 => (0usize..3, 0i64..20).prop_map(|(d, g)| Step::Arrive(d, g)),
                3 => (1i64..90).prop_map(Step::Tick),
                1 => Just(Step::Hold),
                1 => Just(Step::Resume),
                1 => Just(Step::Drop),
            ]
        }

        fn arb_policy() -> impl Strategy<Value = TriggerPolicy> {
            let role = prop_oneof![
                Just(Role::Required),
                Just(Role::Optional),
                Just(Role::Context)
            ];
            (
                any::<bool>(),
                role.clone(),
                role,
                prop::option::of(prop_oneof![
                    (10u64..120).prop_map(|m| Grace::After(minutes(m))),
                    (0u32..60).prop_map(|m| Grace::At(format!("{m} * * * *").parse().unwrap())),
                ]),
                prop::option::of((1u64..20, 0u64..40)),
                prop::option::of(5u64..60),
            )
                .prop_map(|(any_mode, rb, rc, grace, settle, cooldown)| {
                    let mut p = TriggerPolicy {
                        mode: if any_mode { Mode::Any } else { Mode::All },
                        grace,
                        settle: settle.map(|(q, extra)| Settle {
                            quiet: minutes(q),
                            max_wait: minutes(q + extra),
                        }),
                        cooldown: cooldown.map(minutes),
                        ..TriggerPolicy::default()
                    };
                    for (d, r) in [("b", rb), ("c", rc)] {
                        if r != Role::Required {
                            p.inputs.insert(d.into(), r);
                        }
                    }
                    p
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]

            #[test]
            fn every_rule_holds_after_every_step(
                policy in arb_policy(),
                required_days in 0i32..3,
                steps in prop::collection::vec(arb_step(), 1..40),
            ) {
                let mut state = state(&DATASETS, None);
                state.required_days = required_days;
                state.policy = policy.clone();
                // Each arrival, until a request uses it (or a newer update
                // of its dataset), it is folded into a requested run, or
                // its run is dropped.
                let mut unaccounted: Vec<(String, DatasetId, DateTime<Utc>)> = Vec::new();
                // Steps end with a resume and a long tick: the liveness
                // check runs after them.
                let mut steps = steps.clone();
                steps.push(Step::Resume);
                steps.push(Step::Tick(3 * 24 * 60));
                // b had an update long ago: stale, but something to go with.
                let mut arrived: HashMap<String, (DatasetId, DateTime<Utc>)> = HashMap::new();
                let old = Received { update_id: "b-old".into(), at: t("2026-11-01T00:00:00Z") };
                arrived.insert("b-old".into(), ("b".into(), old.at));
                state.newest.insert("b".into(), old);
                let mut now = t("2026-11-20T00:00:00Z");
                let mut sets: HashSet<Vec<String>> = HashSet::new();
                let mut n = 0;
                for step in &steps {
                    let mut arrivals = Vec::new();
                    match step {
                        Step::Arrive(d, gap) => {
                            now += chrono::Duration::minutes(*gap);
                            n += 1;
                            let id = format!("{}{n}", DATASETS[*d]);
                            arrived.insert(id.clone(), (DATASETS[*d].into(), now));
                            unaccounted.push((id.clone(), DATASETS[*d].into(), now));
                            arrivals.push(Arrival {
                                dataset_id: DATASETS[*d].into(),
                                update: Received { update_id: id.as_str().into(), at: now },
                            });
                        }
                        Step::Tick(gap) => now += chrono::Duration::minutes(*gap),
                        Step::Hold => {
                            state.timing.hold.get_or_insert(Hold { since: now, by: "p".into() });
                        }
                        Step::Resume => state.timing.hold = None,
                        Step::Drop => {
                            state.timing.hold = None;
                            // The dropped run takes with it what it held and
                            // what it had replaced with a newer update.
                            if let Some(open) = state.open.take() {
                                unaccounted.retain(|(_, d, at)| !open.iter().any(|s| &s.dataset_id == d
                                    && s.received.as_ref().is_some_and(|r| r.at >= *at)));
                                state.open_timers = Timers::default();
                            }
                        }
                    }
                    let held = state.timing.hold.is_some();
                    let runs = evaluate(state.clone(), &arrivals, now);
                    // At most one run waits, and it is the last.
                    let waiting: Vec<&RunAfter> = runs.iter().filter(|r| r.requested.is_none()).collect();
                    prop_assert!(waiting.len() <= 1);
                    prop_assert!(runs.iter().rev().skip(1).all(|r| r.requested.is_some()));
                    for r in runs.iter().filter_map(|r| r.requested.as_ref().map(|q| (r, q))) {
                        let (run, req) = r;
                        prop_assert!(!held, "requested while held: {step:?}");
                        // Exact provenance: each used update is one that
                        // arrived, of its row's dataset, by the request.
                        let mut set = Vec::new();
                        for slot in &run.slots {
                            if let Some(got) = &slot.received {
                                let (d, at) = &arrived[got.update_id.as_str()];
                                prop_assert_eq!(d, &slot.dataset_id);
                                prop_assert!(*at <= req.at);
                                set.push(got.update_id.to_string());
                            } else {
                                prop_assert!(policy.role(&slot.dataset_id) != Role::Required,
                                    "a required input is missing from a request");
                                prop_assert!(req.degraded.missing.contains(&slot.dataset_id));
                            }
                        }
                        set.sort();
                        prop_assert!(sets.insert(set.clone()), "two runs with the update set {set:?}");
                        // Stale inputs are only gone with past a grace
                        // deadline, and each is named in `degraded.stale`.
                        for slot in &run.slots {
                            let Some(got) = &slot.received else { continue };
                            let role = policy.role(&slot.dataset_id);
                            let stale = role != Role::Context
                                && !crate::domain::freshness::is_fresh(got.at, req.at, required_days);
                            prop_assert_eq!(stale, req.degraded.stale.contains(&slot.dataset_id),
                                "{:?} at {} (required_days {}), stale listed: {:?}",
                                slot, req.at, required_days, req.degraded.stale);
                        }
                        // A stale input is gone with only in mode `any`, past
                        // a grace deadline, or when the run waited with its
                        // condition holding (settle, cooldown, hold) and the
                        // input aged meanwhile.
                        let waited = run.timers.ready_at.is_some_and(|at| at < req.at);
                        prop_assert!(req.degraded.stale.is_empty()
                            || policy.mode == Mode::Any || policy.grace.is_some() || waited,
                            "a stale input without a reason: {:?}", run);
                        // What this run uses, or folded, is accounted for, and
                        // so is every older arrival of a dataset it uses.
                        let folded: Vec<String> = run.folded.iter()
                            .map(|&i| arrivals[i].update.update_id.to_string())
                            .collect();
                        unaccounted.retain(|(id, d, at)| {
                            let used_newer = run.slots.iter().any(|s| &s.dataset_id == d
                                && s.received.as_ref().is_some_and(|r| r.at >= *at));
                            !(used_newer || folded.contains(id))
                        });
                        if let Some(c) = policy.cooldown {
                            if let Some(last) = state.timing.last_requested_at {
                                prop_assert!(req.at >= last + chrono::Duration::from_std(c).unwrap(),
                                    "cooldown broken");
                            }
                        }
                        state.timing.last_requested_at = Some(req.at);
                    }
                    // Every update was evaluated: it is the newest of its dataset now.
                    for a in &arrivals {
                        state.newest.insert(a.dataset_id.clone(), a.update.clone());
                    }
                    match waiting.first() {
                        Some(w) => {
                            state.open = Some(w.slots.clone());
                            state.open_timers = w.timers.clone();
                        }
                        None => {
                            state.open = None;
                            state.open_timers = Timers::default();
                        }
                    }
                }
                // Liveness: after the resume and the long tick, an arrival
                // not yet accounted for is in the run still waiting (it, or
                // a newer update of its dataset), and that run waits only
                // because its condition does not hold: a required input has
                // no fresh update.
                for (id, d, at) in &unaccounted {
                    let open = state.open.as_ref();
                    let kept = open.is_some_and(|slots| slots.iter().any(|s| &s.dataset_id == d
                        && s.received.as_ref().is_some_and(|r| r.at >= *at)));
                    let context = policy.role(d) == Role::Context;
                    prop_assert!(kept || context, "arrival {id} of {d} was lost");
                }
                if let Some(slots) = &state.open {
                    prop_assert!(!crate::domain::trigger::condition_holds(&policy, slots),
                        "a run still waits with its condition holding: {slots:?}");
                }
            }
        }
    }
}
