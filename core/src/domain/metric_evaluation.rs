//! Evaluating one metric for a sequence of updates, in order
//! (docs/semantics.md, "Contention"): the fold over [`absorb`] that the
//! holder of a metric runs over the metric's backlog and then its own update.
//! Each update in turn becomes the newest of its dataset and is absorbed into
//! the metric's open run; a run it completes is finished and the next update
//! starts a new one. The result is what evaluating the updates one
//! transaction each, in the same order, would have written.

use std::collections::HashMap;

use super::ids::DatasetId;
use super::pending_run::{absorb, is_complete, Received, Slot};

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
    /// The datasets a new run waits for (sorted, distinct).
    pub required: Vec<DatasetId>,
    pub required_days: i32,
    /// The newest update of each required dataset among those already
    /// evaluated for this metric.
    pub newest: HashMap<DatasetId, Received>,
}

/// A run of the metric after the updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAfter {
    /// The metric's pending run from before (else a new run).
    pub existing: bool,
    pub slots: Vec<Slot>,
    /// For an existing run: the rows that changed, ascending.
    pub changed: Vec<usize>,
    /// The index of the arrival that completed the run; `None` while it waits.
    pub completed_by: Option<usize>,
}

impl RunAfter {
    fn new(state: &MetricState) -> Self {
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
            completed_by: None,
        }
    }
}

/// Whether `a` is newer than `b` (the order of "newest update of a dataset":
/// creation time, then id).
fn newer(a: &Received, b: &Received) -> bool {
    (a.at, &a.update_id) > (b.at, &b.update_id)
}

/// Evaluates `arrivals` in order. Returns the runs they completed, in order,
/// then the run left waiting (the existing one even if nothing changed, a new
/// one only if some update started it).
pub fn evaluate(mut state: MetricState, arrivals: &[Arrival]) -> Vec<RunAfter> {
    let mut out = Vec::new();
    let mut current = state.open.take().map(|slots| RunAfter {
        existing: true,
        slots,
        changed: Vec::new(),
        completed_by: None,
    });
    for (i, a) in arrivals.iter().enumerate() {
        let replace = state
            .newest
            .get(&a.dataset_id)
            .is_none_or(|n| newer(&a.update, n));
        if replace {
            state.newest.insert(a.dataset_id.clone(), a.update.clone());
        }
        let run = current.get_or_insert_with(|| RunAfter::new(&state));
        let changed = absorb(
            &mut run.slots,
            &a.dataset_id,
            &a.update,
            &state.newest,
            a.update.at,
        );
        if run.existing {
            run.changed.extend(changed);
            run.changed.sort_unstable();
            run.changed.dedup();
        }
        if is_complete(&run.slots) {
            run.completed_by = Some(i);
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
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
            newest: HashMap::new(),
        }
    }

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
                    r.completed_by,
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
            assert_eq!(shape(&evaluate(st, &arrivals)), want(&expected), "{name}");
        }
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
        let runs = evaluate(
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
        let runs = evaluate(
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
}
