//! What a worker does with a metric's definition change (docs/semantics.md,
//! "on_change"): with `rerun`, request one run now with the newest inputs
//! under the pending-run rules (never a second pending run, a hold or a
//! cooldown honoured); with `none`, nothing but the alert.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::ids::DatasetId;

/// How long a held metric's re-run waits before it is looked at again.
pub const HOLD_RECHECK: Duration = Duration::from_secs(60);

/// Whether the newest update of every input is fresh enough to run on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inputs {
    pub missing: Vec<DatasetId>,
    pub stale: Vec<DatasetId>,
}

impl Inputs {
    pub fn ready(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty()
    }
}

/// What is known of the metric when its change is taken.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChangeFacts {
    /// The version the change made.
    pub version: i32,
    /// The metric's version now (a later apply may have made a newer one).
    pub current_version: Option<i32>,
    pub enabled: bool,
    /// Its `on_change` was `rerun` when the change was applied.
    pub rerun: bool,
    /// It has a run waiting for its inputs.
    pub has_pending_run: bool,
    pub held: bool,
    /// Its cooldown ends then (policy cooldown after its last automatic request).
    pub cooldown_until: Option<DateTime<Utc>>,
    pub inputs: Inputs,
}

/// What became of a change: it is done, or looked at again later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Done(Outcome),
    Later(DateTime<Utc>, &'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Request one run now.
    Request,
    /// `on_change: none`: its outputs are stale, nothing is requested.
    MarkedStale,
    /// A newer version came before this change was acted on; that one acts.
    Superseded {
        by: i32,
    },
    Disabled,
    /// Its pending run will be requested with this version when its inputs come.
    PendingRunWaits,
    /// The next update of its inputs requests a run with this version.
    InputsNotReady(Inputs),
}

impl Outcome {
    /// For the alert and the log.
    pub fn describe(&self, version: i32) -> String {
        let list = |d: &[DatasetId]| {
            d.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self {
            Outcome::Request => format!("run requested with v{version}"),
            Outcome::MarkedStale => "marked stale; nothing requested (on_change: none)".into(),
            Outcome::Superseded { by } => format!("superseded by v{by} before a run was requested"),
            Outcome::Disabled => "metric disabled; nothing requested".into(),
            Outcome::PendingRunWaits => {
                format!("its pending run waits for its inputs and will run v{version}")
            }
            Outcome::InputsNotReady(i) => format!(
                "not requested: inputs not ready (missing: [{}], stale: [{}]); the next update requests v{version}",
                list(&i.missing),
                list(&i.stale)
            ),
        }
    }
}

pub fn decide(f: &ChangeFacts, now: DateTime<Utc>) -> Step {
    if !f.rerun {
        return Step::Done(Outcome::MarkedStale);
    }
    match f.current_version {
        Some(v) if v != f.version => return Step::Done(Outcome::Superseded { by: v }),
        _ => {}
    }
    if !f.enabled {
        return Step::Done(Outcome::Disabled);
    }
    if f.has_pending_run {
        return Step::Done(Outcome::PendingRunWaits);
    }
    if f.held {
        let again = now + chrono::Duration::from_std(HOLD_RECHECK).unwrap_or_default();
        return Step::Later(again, "held");
    }
    if let Some(until) = f.cooldown_until.filter(|u| *u > now) {
        return Step::Later(until, "cooldown");
    }
    if !f.inputs.ready() {
        return Step::Done(Outcome::InputsNotReady(f.inputs.clone()));
    }
    Step::Done(Outcome::Request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rerun() -> ChangeFacts {
        ChangeFacts {
            version: 4,
            current_version: Some(4),
            enabled: true,
            rerun: true,
            ..ChangeFacts::default()
        }
    }

    #[test]
    fn each_change_becomes_what_its_facts_say() {
        let now = at("2026-12-07T10:00:00Z");
        let not_ready = Inputs {
            missing: vec![DatasetId::new("a")],
            stale: vec![],
        };
        let cases: Vec<(&str, ChangeFacts, Step)> = vec![
            ("rerun: request", rerun(), Step::Done(Outcome::Request)),
            (
                "none: only marked",
                ChangeFacts {
                    rerun: false,
                    ..rerun()
                },
                Step::Done(Outcome::MarkedStale),
            ),
            (
                "a newer version came",
                ChangeFacts {
                    current_version: Some(5),
                    ..rerun()
                },
                Step::Done(Outcome::Superseded { by: 5 }),
            ),
            (
                "disabled",
                ChangeFacts {
                    enabled: false,
                    ..rerun()
                },
                Step::Done(Outcome::Disabled),
            ),
            (
                "never a second pending run",
                ChangeFacts {
                    has_pending_run: true,
                    ..rerun()
                },
                Step::Done(Outcome::PendingRunWaits),
            ),
            (
                "held: looked at again",
                ChangeFacts {
                    held: true,
                    ..rerun()
                },
                Step::Later(at("2026-12-07T10:01:00Z"), "held"),
            ),
            (
                "in its cooldown: at its end",
                ChangeFacts {
                    cooldown_until: Some(at("2026-12-07T10:30:00Z")),
                    ..rerun()
                },
                Step::Later(at("2026-12-07T10:30:00Z"), "cooldown"),
            ),
            (
                "cooldown over",
                ChangeFacts {
                    cooldown_until: Some(at("2026-12-07T09:30:00Z")),
                    ..rerun()
                },
                Step::Done(Outcome::Request),
            ),
            (
                "inputs not ready",
                ChangeFacts {
                    inputs: not_ready.clone(),
                    ..rerun()
                },
                Step::Done(Outcome::InputsNotReady(not_ready)),
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(decide(&facts, now), want, "{name}");
        }
    }

    #[test]
    fn outcomes_say_what_happened() {
        let i = Inputs {
            missing: vec![DatasetId::new("a")],
            stale: vec![DatasetId::new("b"), DatasetId::new("c")],
        };
        assert_eq!(
            Outcome::InputsNotReady(i).describe(3),
            "not requested: inputs not ready (missing: [a], stale: [b, c]); the next update requests v3"
        );
        assert_eq!(Outcome::Request.describe(3), "run requested with v3");
    }
}
