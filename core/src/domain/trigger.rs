//! What a metric's pending run does next under its trigger policy
//! (docs/semantics.md, "Trigger policies"): a pure function of (policy,
//! pending run, newest inputs, metric timing, now). The evaluation asks it
//! after every update it folds in and at the end with the clock's time; the
//! periodic sweep asks it again when the time it named has come.

use std::collections::HashMap;

use chrono::{DateTime, Duration as Span, Utc};

use super::freshness::is_fresh;
use super::ids::DatasetId;
use super::pending_run::{Received, Slot};
use super::trigger_policy::{Grace, Mode, Role, TriggerPolicy};

/// A pending run's progress through its policy's timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    /// When the run opened (its first input).
    pub opened_at: Option<DateTime<Utc>>,
    /// When its condition first held.
    pub ready_at: Option<DateTime<Utc>>,
    /// The newest triggering update it folded in.
    pub last_trigger_at: Option<DateTime<Utc>>,
}

/// Who holds a metric, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub since: DateTime<Utc>,
    pub by: String,
}

/// The metric-wide facts the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricTiming {
    /// The last run the evaluation requested (for the cooldown).
    pub last_requested_at: Option<DateTime<Utc>>,
    pub hold: Option<Hold>,
}

/// Inputs a run goes without, or with an update that is not fresh.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Degraded {
    pub stale: Vec<DatasetId>,
    pub missing: Vec<DatasetId>,
}

impl Degraded {
    pub fn is_degraded(&self) -> bool {
        !self.stale.is_empty() || !self.missing.is_empty()
    }
}

/// Why a run waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// Required inputs without a usable update; `never` have had none at
    /// all (a grace deadline does not help them).
    Inputs {
        waiting: Vec<DatasetId>,
        never: Vec<DatasetId>,
        /// The grace deadline, when the policy has one.
        grace_at: Option<DateTime<Utc>>,
    },
    /// Quiet period after the last triggering update.
    Settling,
    /// The previous run was requested less than the cooldown ago.
    Cooldown,
    Held(Hold),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Request the run; `fills`: rows of late inputs that a passed grace
    /// deadline fills with their newest update (by row index).
    Request {
        fills: Vec<(usize, Received)>,
        degraded: Degraded,
    },
    /// Wait; ask again at `until` (`None`: only a new update can change it).
    Wait {
        until: Option<DateTime<Utc>>,
        why: Why,
    },
}

/// Whether the input's role (in the policy's mode) needs a fresh update.
pub fn wants_fresh(policy: &TriggerPolicy, dataset: &DatasetId) -> bool {
    match policy.role(dataset) {
        Role::Required => policy.mode == Mode::All,
        Role::Optional => true,
        Role::Context => false,
    }
}

/// Whether the run's condition holds: every required input has an update
/// (a fresh one, where the role wants it, is ensured when rows are filled).
pub fn condition_holds(policy: &TriggerPolicy, slots: &[Slot]) -> bool {
    !slots.is_empty()
        && slots
            .iter()
            .filter(|s| policy.role(&s.dataset_id) == Role::Required)
            .all(|s| s.received.is_some())
        && slots
            .iter()
            .any(|s| s.received.is_some() && policy.role(&s.dataset_id).triggers())
}

/// When the grace deadline of a run opened at `opened_at` falls.
pub fn grace_deadline(grace: &Grace, opened_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match grace {
        Grace::At(d) => d.tick_after(opened_at),
        Grace::After(d) => Span::from_std(*d).ok().map(|d| opened_at + d),
    }
}

fn span(d: std::time::Duration) -> Span {
    Span::from_std(d).unwrap_or(Span::MAX)
}

/// What the inputs of `slots`, with `fills` applied, look like at `now`.
fn degraded(
    policy: &TriggerPolicy,
    slots: &[Slot],
    fills: &[(usize, Received)],
    now: DateTime<Utc>,
) -> Degraded {
    let mut out = Degraded::default();
    for (i, s) in slots.iter().enumerate() {
        let received = fills
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, r)| r)
            .or(s.received.as_ref());
        match received {
            None => out.missing.push(s.dataset_id.clone()),
            Some(r)
                if policy.role(&s.dataset_id) != Role::Context
                    && !is_fresh(r.at, now, s.required_days) =>
            {
                out.stale.push(s.dataset_id.clone())
            }
            Some(_) => {}
        }
    }
    out
}

/// The decision for a pending run at `now`.
pub fn decide(
    policy: &TriggerPolicy,
    slots: &[Slot],
    timers: &Timers,
    newest: &HashMap<DatasetId, Received>,
    metric: &MetricTiming,
    now: DateTime<Utc>,
) -> Decision {
    if let Some(hold) = &metric.hold {
        return Decision::Wait {
            until: None,
            why: Why::Held(hold.clone()),
        };
    }
    let mut fills = Vec::new();
    let mut late = false;
    if !condition_holds(policy, slots) {
        let waiting: Vec<DatasetId> = slots
            .iter()
            .filter(|s| s.received.is_none() && policy.role(&s.dataset_id) == Role::Required)
            .map(|s| s.dataset_id.clone())
            .collect();
        let never: Vec<DatasetId> = waiting
            .iter()
            .filter(|d| !newest.contains_key(*d))
            .cloned()
            .collect();
        let grace_at = policy
            .grace
            .as_ref()
            .zip(timers.opened_at)
            .and_then(|(g, at)| grace_deadline(g, at));
        let wait = |until| Decision::Wait {
            until,
            why: Why::Inputs {
                waiting: waiting.clone(),
                never: never.clone(),
                grace_at,
            },
        };
        match grace_at {
            Some(at) if never.is_empty() && now >= at => {}
            Some(at) if never.is_empty() => return wait(Some(at)),
            _ => return wait(None),
        }
        // The grace deadline passed: each late required input goes with its
        // newest update, whatever its age.
        for (i, s) in slots.iter().enumerate() {
            if s.received.is_none() && policy.role(&s.dataset_id) == Role::Required {
                fills.extend(newest.get(&s.dataset_id).map(|r| (i, r.clone())));
            }
        }
        late = true;
    }
    // Delays run from when the condition held; a run that went ahead late
    // has waited long enough and only keeps the pace.
    let ready_at = timers.ready_at.unwrap_or(now);
    let settle_until = policy.settle.filter(|_| !late).map(|s| {
        let quiet_from = timers.last_trigger_at.unwrap_or(ready_at);
        (quiet_from + span(s.quiet)).min(ready_at + span(s.max_wait))
    });
    let cooldown_until = policy
        .cooldown
        .zip(metric.last_requested_at)
        .map(|(c, last)| last + span(c));
    let (until, why) = match (settle_until, cooldown_until) {
        (Some(s), Some(c)) if c > s => (Some(c), Why::Cooldown),
        (Some(s), _) => (Some(s), Why::Settling),
        (None, Some(c)) => (Some(c), Why::Cooldown),
        (None, None) => (None, Why::Settling),
    };
    match until {
        Some(until) if now < until => Decision::Wait {
            until: Some(until),
            why,
        },
        _ => Decision::Request {
            degraded: degraded(policy, slots, &fills, now),
            fills,
        },
    }
}

fn clock(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn list(ds: &[DatasetId]) -> String {
    ds.iter()
        .map(DatasetId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the operator is told will happen to a pending run, e.g. "runs at
/// 2026-12-01 18:00:00 UTC with d2 stale unless d2 arrives". `folded`: the
/// updates the run has folded in so far.
pub fn describe(decision: &Decision, folded: usize) -> String {
    match decision {
        Decision::Request { degraded, .. } if degraded.stale.is_empty() => {
            "due: requested at the next sweep".into()
        }
        Decision::Request { degraded, .. } => format!(
            "due: requested at the next sweep with {} stale",
            list(&degraded.stale)
        ),
        Decision::Wait { why, until } => match why {
            Why::Inputs { never, .. } if !never.is_empty() => format!(
                "waits for {}, which never had an update (no deadline runs it without one)",
                list(never)
            ),
            Why::Inputs {
                waiting,
                grace_at: Some(at),
                ..
            } => format!(
                "runs at {} with {} stale unless {} arrives",
                clock(*at),
                list(waiting),
                list(waiting)
            ),
            Why::Inputs { waiting, .. } => format!("waits for {}", list(waiting)),
            Why::Settling => format!(
                "settling: runs at {} unless another update arrives",
                until.map(clock).unwrap_or_default()
            ),
            Why::Cooldown => format!(
                "cooling down: runs at {}",
                until.map(clock).unwrap_or_default()
            ),
            Why::Held(h) => format!(
                "held since {} by {}, {folded} update{} waiting",
                clock(h.since),
                h.by,
                if folded == 1 { "" } else { "s" }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::trigger_policy::Settle;
    use std::time::Duration;

    fn t(hm: &str) -> DateTime<Utc> {
        format!("2026-12-01T{hm}:00Z").parse().unwrap()
    }

    fn rec(id: &str, at: &str) -> Received {
        Received {
            update_id: id.into(),
            at: t(at),
        }
    }

    fn slot(d: &str, r: Option<Received>) -> Slot {
        Slot {
            dataset_id: d.into(),
            required_days: 1,
            received: r,
        }
    }

    fn mins(n: u64) -> Duration {
        Duration::from_secs(60 * n)
    }

    fn policy(f: impl FnOnce(&mut TriggerPolicy)) -> TriggerPolicy {
        let mut p = TriggerPolicy::default();
        f(&mut p);
        p
    }

    fn timers(opened: &str, ready: Option<&str>, last: Option<&str>) -> Timers {
        Timers {
            opened_at: Some(t(opened)),
            ready_at: ready.map(t),
            last_trigger_at: last.map(t),
        }
    }

    /// Compact outcome: "request" with degraded inputs, or "wait until".
    fn show(d: &Decision, slots: &[Slot]) -> String {
        match d {
            Decision::Request { fills, degraded } => {
                let used: Vec<String> = slots
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        fills
                            .iter()
                            .find(|(j, _)| *j == i)
                            .map(|(_, r)| r)
                            .or(s.received.as_ref())
                            .map_or("-".into(), |r| r.update_id.to_string())
                    })
                    .collect();
                format!(
                    "request [{}] stale {:?} missing {:?}",
                    used.join(" "),
                    degraded
                        .stale
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>(),
                    degraded
                        .missing
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                )
            }
            Decision::Wait { until, why } => {
                let why = match why {
                    Why::Inputs { waiting, never, .. } => format!(
                        "inputs {:?} never {:?}",
                        waiting.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                        never.iter().map(|d| d.as_str()).collect::<Vec<_>>()
                    ),
                    Why::Settling => "settling".into(),
                    Why::Cooldown => "cooldown".into(),
                    Why::Held(h) => format!("held by {}", h.by),
                };
                match until {
                    Some(u) => format!("wait {why} until {}", u.format("%H:%M")),
                    None => format!("wait {why}"),
                }
            }
        }
    }

    /// (name, policy, rows, timers, newest inputs, metric timing, now, outcome).
    type Case<'a> = (
        &'a str,
        &'a TriggerPolicy,
        Vec<Slot>,
        Timers,
        &'a HashMap<DatasetId, Received>,
        &'a MetricTiming,
        &'a str,
        &'a str,
    );

    #[test]
    fn decisions_follow_the_policy_and_the_clock() {
        let d2_old: HashMap<DatasetId, Received> = [(
            DatasetId::new("d2"),
            Received {
                update_id: "d2-old".into(),
                at: "2026-11-20T00:00:00Z".parse().unwrap(),
            },
        )]
        .into();
        let none = HashMap::new();
        let a1 = || slot("d1", Some(rec("a1", "09:00")));
        let b1 = || slot("d2", Some(rec("b1", "09:05")));
        let b0 = || slot("d2", None);
        let grace2h = policy(|p| p.grace = Some(Grace::After(mins(120))));
        let settle = policy(|p| {
            p.settle = Some(Settle {
                quiet: mins(5),
                max_wait: mins(30),
            })
        });
        let cool = policy(|p| p.cooldown = Some(mins(60)));
        let default = TriggerPolicy::default();
        let optional = policy(|p| {
            p.inputs.insert("d2".into(), Role::Optional);
        });
        let held = MetricTiming {
            hold: Some(Hold {
                since: t("08:00"),
                by: "ops".into(),
            }),
            ..MetricTiming::default()
        };
        let last_run_10 = MetricTiming {
            last_requested_at: Some(t("10:00")),
            hold: None,
        };
        let free = MetricTiming::default();
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("no policy, complete: request at once",
             &default, vec![a1(), b1()], timers("09:00", Some("09:05"), None), &none, &free, "09:05",
             "request [a1 b1] stale [] missing []"),
            ("no policy, incomplete: wait for the input, no timer",
             &default, vec![a1(), b0()], timers("09:00", None, None), &d2_old, &free, "23:00",
             "wait inputs [\"d2\"] never [] "),
            ("grace before its deadline: wait until it",
             &grace2h, vec![a1(), b0()], timers("09:00", None, None), &d2_old, &free, "10:59",
             "wait inputs [\"d2\"] never [] until 11:00"),
            ("grace passed: go with d2's newest, stale",
             &grace2h, vec![a1(), b0()], timers("09:00", None, None), &d2_old, &free, "11:00",
             "request [a1 d2-old] stale [\"d2\"] missing []"),
            ("grace passed but d2 never had an update: still waits, and says so",
             &grace2h, vec![a1(), b0()], timers("09:00", None, None), &none, &free, "23:00",
             "wait inputs [\"d2\"] never [\"d2\"] "),
            ("optional input absent: no wait, recorded missing",
             &optional, vec![a1(), b0()], timers("09:00", None, None), &none, &free, "09:00",
             "request [a1 -] stale [] missing [\"d2\"]"),
            ("settle: quiet 5 min after the last triggering update",
             &settle, vec![a1(), b1()], timers("09:00", Some("09:05"), Some("09:05")), &none, &free, "09:09",
             "wait settling until 09:10"),
            ("settle: quiet period over",
             &settle, vec![a1(), b1()], timers("09:00", Some("09:05"), Some("09:05")), &none, &free, "09:10",
             "request [a1 b1] stale [] missing []"),
            ("settle: capped by max_wait from when the condition held",
             &settle, vec![a1(), b1()], timers("09:00", Some("09:05"), Some("09:33")), &none, &free, "09:35",
             "request [a1 b1] stale [] missing []"),
            ("cooldown: one run per hour",
             &cool, vec![a1(), b1()], timers("09:00", Some("10:05"), None), &none, &last_run_10, "10:30",
             "wait cooldown until 11:00"),
            ("cooldown over",
             &cool, vec![a1(), b1()], timers("09:00", Some("10:05"), None), &none, &last_run_10, "11:00",
             "request [a1 b1] stale [] missing []"),
            ("held: nothing is requested, whatever the timers say",
             &grace2h, vec![a1(), b1()], timers("09:00", Some("09:05"), None), &none, &held, "23:00",
             "wait held by ops"),
        ];
        for (name, policy, slots, timers, newest, metric, now, want) in cases {
            let got = show(
                &decide(policy, &slots, &timers, newest, metric, t(now)),
                &slots,
            );
            assert_eq!(got.trim_end(), want.trim_end(), "{name}");
        }
    }

    #[test]
    fn a_grace_schedule_falls_at_its_next_tick_in_its_zone() {
        let g = Grace::At("0 18 * * * Europe/Madrid".parse().unwrap());
        // 18:00 in Madrid is 17:00 UTC in December.
        assert_eq!(grace_deadline(&g, t("09:00")), Some(t("17:00")));
        assert_eq!(
            grace_deadline(&g, t("17:00")),
            Some("2026-12-02T17:00:00Z".parse().unwrap()),
            "a run opened at the tick waits for the next one"
        );
    }

    #[test]
    fn roles_decide_what_holds_the_condition() {
        let p = policy(|p| {
            p.inputs.insert("c".into(), Role::Context);
            p.inputs.insert("o".into(), Role::Optional);
        });
        let got = |slots: Vec<Slot>| condition_holds(&p, &slots);
        assert!(got(vec![
            slot("r", Some(rec("r1", "09:00"))),
            slot("o", None),
            slot("c", None)
        ]));
        assert!(!got(vec![
            slot("r", None),
            slot("o", Some(rec("o1", "09:00")))
        ]));
        assert!(
            !got(vec![slot("c", Some(rec("c1", "09:00")))]),
            "context alone never makes a run"
        );
        assert!(got(vec![
            slot("o", Some(rec("o1", "09:00"))),
            slot("c", None)
        ]));
        assert!(wants_fresh(&p, &"r".into()) && wants_fresh(&p, &"o".into()));
        assert!(!wants_fresh(&p, &"c".into()));
        let any = policy(|p| p.mode = Mode::Any);
        assert!(!wants_fresh(&any, &"r".into()));
    }

    #[test]
    fn operators_read_what_happens_next() {
        let d = |v: &[&str]| v.iter().map(|x| DatasetId::new(*x)).collect::<Vec<_>>();
        let wait = |why, until: Option<&str>| Decision::Wait {
            until: until.map(t),
            why,
        };
        let cases: Vec<(Decision, usize, &str)> = vec![
            (
                wait(
                    Why::Inputs {
                        waiting: d(&["d2"]),
                        never: vec![],
                        grace_at: Some(t("18:00")),
                    },
                    Some("18:00"),
                ),
                0,
                "runs at 2026-12-01 18:00:00 UTC with d2 stale unless d2 arrives",
            ),
            (
                wait(
                    Why::Inputs {
                        waiting: d(&["d2", "d3"]),
                        never: d(&["d3"]),
                        grace_at: Some(t("18:00")),
                    },
                    None,
                ),
                0,
                "waits for d3, which never had an update (no deadline runs it without one)",
            ),
            (
                wait(
                    Why::Inputs {
                        waiting: d(&["d2"]),
                        never: vec![],
                        grace_at: None,
                    },
                    None,
                ),
                0,
                "waits for d2",
            ),
            (
                wait(Why::Settling, Some("10:03")),
                4,
                "settling: runs at 2026-12-01 10:03:00 UTC unless another update arrives",
            ),
            (
                wait(Why::Cooldown, Some("11:00")),
                1,
                "cooling down: runs at 2026-12-01 11:00:00 UTC",
            ),
            (
                wait(
                    Why::Held(Hold {
                        since: t("09:12"),
                        by: "alice".into(),
                    }),
                    None,
                ),
                3,
                "held since 2026-12-01 09:12:00 UTC by alice, 3 updates waiting",
            ),
            (
                Decision::Request {
                    fills: vec![],
                    degraded: Degraded {
                        stale: d(&["d2"]),
                        missing: vec![],
                    },
                },
                0,
                "due: requested at the next sweep with d2 stale",
            ),
        ];
        for (decision, folded, want) in cases {
            assert_eq!(describe(&decision, folded), want);
        }
    }
}
