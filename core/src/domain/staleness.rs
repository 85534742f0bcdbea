//! Whether a metric's newest succeeded output is current, and if not why
//! (docs/semantics.md, "Staleness"): its definition changed since the run
//! that made it, its inputs have newer updates than the ones it used, or
//! its trigger policy changed.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ids::{DatasetId, RunId};

/// What staleness is judged from: the newest succeeded run, if any, and
/// how its definition version and inputs compare with the present.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OutputFacts {
    pub run: Option<RunId>,
    /// The run's definition version (runs requested before versions
    /// existed count as version 1).
    pub run_version: i32,
    /// The metric's current version; `None` before it has one.
    pub current_version: Option<i32>,
    /// The two versions differ in what a run computes.
    pub core_differs: bool,
    /// The two versions differ in their trigger policy.
    pub policy_differs: bool,
    /// Inputs with updates newer than the one the run used.
    pub newer_inputs: Vec<NewerInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewerInput {
    pub dataset_id: DatasetId,
    /// How many updates came after the one the run used.
    pub updates: i64,
    /// When the first of them came.
    pub since: DateTime<Utc>,
}

/// The kinds of reasons, as filters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    DefinitionChanged,
    InputUpdated,
    PolicyChanged,
}

impl ReasonKind {
    pub const ALL: [ReasonKind; 3] = [
        ReasonKind::DefinitionChanged,
        ReasonKind::InputUpdated,
        ReasonKind::PolicyChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::DefinitionChanged => "definition_changed",
            ReasonKind::InputUpdated => "input_updated",
            ReasonKind::PolicyChanged => "policy_changed",
        }
    }
}

impl std::str::FromStr for ReasonKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ReasonKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown staleness reason {s:?}: one of definition_changed, input_updated, policy_changed")
            })
    }
}

/// One reason, with its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    DefinitionChanged { from: i32, to: i32 },
    InputUpdated { inputs: Vec<NewerInput> },
    PolicyChanged { from: i32, to: i32 },
}

impl Reason {
    pub fn kind(&self) -> ReasonKind {
        match self {
            Reason::DefinitionChanged { .. } => ReasonKind::DefinitionChanged,
            Reason::InputUpdated { .. } => ReasonKind::InputUpdated,
            Reason::PolicyChanged { .. } => ReasonKind::PolicyChanged,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::DefinitionChanged { from, to } => {
                write!(f, "definition_changed (v{from} → v{to})")
            }
            Reason::PolicyChanged { from, to } => write!(f, "policy_changed (v{from} → v{to})"),
            Reason::InputUpdated { inputs } => {
                let each: Vec<String> = inputs
                    .iter()
                    .map(|i| {
                        format!(
                            "{}: {} newer since {}",
                            i.dataset_id,
                            i.updates,
                            i.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        )
                    })
                    .collect();
                write!(f, "input_updated ({})", each.join(", "))
            }
        }
    }
}

/// The three states of [`Staleness`], as filters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStatus {
    NoOutput,
    Current,
    Stale,
}

impl std::str::FromStr for OutputStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no_output" => Ok(OutputStatus::NoOutput),
            "current" => Ok(OutputStatus::Current),
            "stale" => Ok(OutputStatus::Stale),
            _ => Err(format!(
                "unknown output status {s:?}: one of current, stale, no_output"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// No run of the metric has succeeded.
    NoOutput,
    Current,
    /// Stale, with each reason in [`ReasonKind`] order.
    Stale(Vec<Reason>),
}

impl Staleness {
    pub fn as_str(&self) -> &'static str {
        match self {
            Staleness::NoOutput => "no_output",
            Staleness::Current => "current",
            Staleness::Stale(_) => "stale",
        }
    }

    pub fn status(&self) -> OutputStatus {
        match self {
            Staleness::NoOutput => OutputStatus::NoOutput,
            Staleness::Current => OutputStatus::Current,
            Staleness::Stale(_) => OutputStatus::Stale,
        }
    }

    pub fn reasons(&self) -> &[Reason] {
        match self {
            Staleness::Stale(r) => r,
            _ => &[],
        }
    }

    pub fn has(&self, kind: ReasonKind) -> bool {
        self.reasons().iter().any(|r| r.kind() == kind)
    }
}

pub fn judge(f: &OutputFacts) -> Staleness {
    if f.run.is_none() {
        return Staleness::NoOutput;
    }
    let mut reasons = Vec::new();
    // Versions compare only when the metric has one and it is another.
    let moved = f.current_version.filter(|v| *v != f.run_version);
    if let Some(to) = moved {
        if f.core_differs {
            reasons.push(Reason::DefinitionChanged {
                from: f.run_version,
                to,
            });
        }
    }
    if !f.newer_inputs.is_empty() {
        let mut inputs = f.newer_inputs.clone();
        inputs.sort_by(|a, b| a.dataset_id.cmp(&b.dataset_id));
        reasons.push(Reason::InputUpdated { inputs });
    }
    if let Some(to) = moved {
        if f.policy_differs {
            reasons.push(Reason::PolicyChanged {
                from: f.run_version,
                to,
            });
        }
    }
    if reasons.is_empty() {
        Staleness::Current
    } else {
        Staleness::Stale(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn newer(d: &str, n: i64) -> NewerInput {
        NewerInput {
            dataset_id: DatasetId::new(d),
            updates: n,
            since: at("2026-12-01T00:00:00Z"),
        }
    }

    fn facts(
        run_v: i32,
        cur: Option<i32>,
        core: bool,
        policy: bool,
        inputs: Vec<NewerInput>,
    ) -> OutputFacts {
        OutputFacts {
            run: Some(RunId::new("r1")),
            run_version: run_v,
            current_version: cur,
            core_differs: core,
            policy_differs: policy,
            newer_inputs: inputs,
        }
    }

    #[test]
    fn each_output_is_judged_by_its_facts() {
        let cases: Vec<(&str, OutputFacts, &str, Vec<ReasonKind>)> = vec![
            ("no run", OutputFacts::default(), "no_output", vec![]),
            (
                "same version, same inputs",
                facts(3, Some(3), false, false, vec![]),
                "current",
                vec![],
            ),
            (
                "expression changed",
                facts(3, Some(4), true, false, vec![]),
                "stale",
                vec![ReasonKind::DefinitionChanged],
            ),
            (
                "policy only",
                facts(3, Some(4), false, true, vec![]),
                "stale",
                vec![ReasonKind::PolicyChanged],
            ),
            (
                "both, and a newer input",
                facts(1, Some(5), true, true, vec![newer("b", 2), newer("a", 1)]),
                "stale",
                vec![
                    ReasonKind::DefinitionChanged,
                    ReasonKind::InputUpdated,
                    ReasonKind::PolicyChanged,
                ],
            ),
            (
                "a newer input only",
                facts(2, Some(2), false, false, vec![newer("a", 1)]),
                "stale",
                vec![ReasonKind::InputUpdated],
            ),
            (
                "changed there and back: versions differ, hashes do not",
                facts(2, Some(4), false, false, vec![]),
                "current",
                vec![],
            ),
            (
                "a metric without a version yet",
                facts(1, None, true, true, vec![]),
                "current",
                vec![],
            ),
        ];
        for (name, f, status, kinds) in cases {
            let s = judge(&f);
            assert_eq!(s.as_str(), status, "{name}");
            let got: Vec<ReasonKind> = s.reasons().iter().map(Reason::kind).collect();
            assert_eq!(got, kinds, "{name}");
        }
    }

    #[test]
    fn reasons_carry_their_detail() {
        let s = judge(&facts(
            3,
            Some(4),
            true,
            false,
            vec![newer("b", 2), newer("a", 1)],
        ));
        let text: Vec<String> = s.reasons().iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                "definition_changed (v3 → v4)".to_string(),
                "input_updated (a: 1 newer since 2026-12-01T00:00:00Z, b: 2 newer since 2026-12-01T00:00:00Z)".to_string()
            ]
        );
        assert!(s.has(ReasonKind::InputUpdated) && !s.has(ReasonKind::PolicyChanged));
    }

    #[test]
    fn reason_names_parse_and_unknown_ones_are_refused() {
        for k in ReasonKind::ALL {
            assert_eq!(k.as_str().parse::<ReasonKind>(), Ok(k));
        }
        let err = "stale".parse::<ReasonKind>().unwrap_err();
        assert!(err.contains("one of definition_changed"), "{err}");
    }
}
