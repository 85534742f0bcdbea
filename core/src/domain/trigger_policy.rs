//! A metric's trigger policy (docs/semantics.md, "Trigger policies"): which
//! inputs it waits for, whether it runs on any or on all of them, and the
//! timers that let it run late, settle a burst or keep a pace. Parsed here
//! with paths from the catalog's `trigger` key; stored as the same JSON.
//! The decisions it drives are `domain::trigger`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::expectation::{parse_period, Deadline};
use super::ids::DatasetId;
use super::problem::{unknown_keys, Problem};

/// What one input does for the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Waited for (fresh, in mode `all`); an update of it starts a run.
    #[default]
    Required,
    /// Used when present and fresh, never waited for; an update starts a run.
    Optional,
    /// Used at its newest update whatever its age; never waited for, and
    /// its updates never start a run.
    Context,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Required => "required",
            Role::Optional => "optional",
            Role::Context => "context",
        }
    }

    /// Whether an update of an input with this role starts or moves a run.
    pub fn triggers(self) -> bool {
        self != Role::Context
    }

    const ALL: [Role; 3] = [Role::Required, Role::Optional, Role::Context];
}

/// How many triggering inputs a run needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every required input has a fresh update (the default rule).
    #[default]
    All,
    /// A new update of any triggering input, with the newest update of each
    /// other input whatever its age.
    Any,
}

/// When a run still waiting for inputs goes ahead with what there is.
#[derive(Debug, Clone, PartialEq)]
pub enum Grace {
    /// At the first tick of this schedule after the run opened.
    At(Deadline),
    /// This long after the run opened (its first fresh input).
    After(Duration),
}

/// After the condition holds, wait for `quiet` without a new triggering
/// update, but at most `max_wait` from when it first held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    pub quiet: Duration,
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TriggerPolicy {
    pub mode: Mode,
    /// Roles other than `required`, by dataset.
    pub inputs: BTreeMap<DatasetId, Role>,
    pub grace: Option<Grace>,
    pub settle: Option<Settle>,
    /// At most one run requested per this period.
    pub cooldown: Option<Duration>,
}

impl TriggerPolicy {
    pub fn role(&self, dataset: &DatasetId) -> Role {
        self.inputs.get(dataset).copied().unwrap_or_default()
    }

    /// Whether the run waits after its condition holds (and so records the
    /// updates it folds in).
    pub fn delays(&self) -> bool {
        self.settle.is_some() || self.cooldown.is_some()
    }

    /// The stored form: the catalog's own shape, durations in seconds.
    pub fn to_json(&self) -> Value {
        let mut o = Map::new();
        if self.mode == Mode::Any {
            o.insert("mode".into(), json!("any"));
        }
        if !self.inputs.is_empty() {
            let inputs: Map<String, Value> = self
                .inputs
                .iter()
                .map(|(d, r)| (d.as_str().to_string(), json!(r.as_str())))
                .collect();
            o.insert("inputs".into(), Value::Object(inputs));
        }
        match &self.grace {
            Some(Grace::At(d)) => o.insert("grace".into(), json!({"at": d.to_string()})),
            Some(Grace::After(d)) => o.insert("grace".into(), json!({"after": d.as_secs()})),
            None => None,
        };
        if let Some(s) = self.settle {
            o.insert(
                "settle".into(),
                json!({"quiet": s.quiet.as_secs(), "max_wait": s.max_wait.as_secs()}),
            );
        }
        if let Some(c) = self.cooldown {
            o.insert("cooldown".into(), json!(c.as_secs()));
        }
        Value::Object(o)
    }

    /// Reads the stored form back; a row that no longer parses is reported,
    /// never guessed at.
    pub fn from_json(v: &Value) -> Result<TriggerPolicy, String> {
        let mut p = Vec::new();
        match trigger_policy(v, "trigger", &mut p) {
            Some(policy) if p.is_empty() => Ok(policy),
            _ => Err(p
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }
}

fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

impl fmt::Display for TriggerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = vec![match self.mode {
            Mode::All => "all inputs".into(),
            Mode::Any => "any input".into(),
        }];
        for (d, r) in &self.inputs {
            parts.push(format!("{d} {}", r.as_str()));
        }
        match &self.grace {
            Some(Grace::At(d)) => parts.push(format!("grace until {d}")),
            Some(Grace::After(d)) => {
                parts.push(format!("grace {} after the first input", human(*d)))
            }
            None => {}
        }
        if let Some(s) = self.settle {
            parts.push(format!(
                "settle {} (at most {})",
                human(s.quiet),
                human(s.max_wait)
            ));
        }
        if let Some(c) = self.cooldown {
            parts.push(format!("cooldown {}", human(c)));
        }
        write!(f, "{}", parts.join(", "))
    }
}

const KEYS: &[&str] = &["mode", "inputs", "grace", "settle", "cooldown"];

/// Parses a metric's `trigger` value; problems are recorded with paths.
pub fn trigger_policy(v: &Value, path: &str, p: &mut Vec<Problem>) -> Option<TriggerPolicy> {
    let Some(obj) = v.as_object() else {
        p.push(Problem::new(
            path,
            "must be an object with mode, inputs, grace, settle or cooldown",
        ));
        return None;
    };
    let before = p.len();
    unknown_keys(obj.keys(), path, KEYS, p);
    let mode = match obj.get("mode") {
        None | Some(Value::Null) => Mode::All,
        Some(Value::String(s)) if s == "all" => Mode::All,
        Some(Value::String(s)) if s == "any" => Mode::Any,
        Some(_) => {
            p.push(Problem::new(format!("{path}.mode"), "must be all or any"));
            Mode::All
        }
    };
    let inputs = inputs(obj.get("inputs"), &format!("{path}.inputs"), p);
    let grace = grace(obj.get("grace"), &format!("{path}.grace"), p);
    let settle = settle(obj.get("settle"), &format!("{path}.settle"), p);
    let cooldown = match obj.get("cooldown") {
        None | Some(Value::Null) => None,
        Some(v) => parse_period(v)
            .map_err(|e| p.push(Problem::new(format!("{path}.cooldown"), e)))
            .ok(),
    };
    (p.len() == before).then_some(TriggerPolicy {
        mode,
        inputs,
        grace,
        settle,
        cooldown,
    })
}

/// An optional object-valued key: `None` when absent, or when it is not an
/// object (then `shape` says what it must be).
fn object<'v>(
    v: Option<&'v Value>,
    path: &str,
    shape: &str,
    p: &mut Vec<Problem>,
) -> Option<&'v Map<String, Value>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            p.push(Problem::new(path, format!("must be {shape}")));
            None
        }
    }
}

fn inputs(v: Option<&Value>, path: &str, p: &mut Vec<Problem>) -> BTreeMap<DatasetId, Role> {
    let mut out = BTreeMap::new();
    let shape = "an object of dataset id to required, optional or context";
    let Some(obj) = object(v, path, shape, p) else {
        return out;
    };
    for (dataset, role) in obj {
        match Role::ALL
            .into_iter()
            .find(|r| role.as_str() == Some(r.as_str()))
        {
            Some(Role::Required) => {}
            Some(r) => {
                out.insert(DatasetId::new(dataset), r);
            }
            None => p.push(Problem::new(
                format!("{path}.{dataset}"),
                "must be required, optional or context",
            )),
        }
    }
    out
}

fn grace(v: Option<&Value>, path: &str, p: &mut Vec<Problem>) -> Option<Grace> {
    let shape = "{at: \"<cron> <time zone>\"} or {after: <duration>}";
    let obj = object(v, path, shape, p)?;
    unknown_keys(obj.keys(), path, &["at", "after"], p);
    match (obj.get("at"), obj.get("after")) {
        (Some(Value::String(s)), None) => s
            .parse::<Deadline>()
            .map_err(|e| p.push(Problem::new(format!("{path}.at"), e)))
            .ok()
            .map(Grace::At),
        (Some(_), None) => {
            p.push(Problem::new(
                format!("{path}.at"),
                "must be a string: a cron schedule and a time zone",
            ));
            None
        }
        (None, Some(v)) => parse_period(v)
            .map_err(|e| p.push(Problem::new(format!("{path}.after"), e)))
            .ok()
            .map(Grace::After),
        _ => {
            p.push(Problem::new(path, "give exactly one of at or after"));
            None
        }
    }
}

fn settle(v: Option<&Value>, path: &str, p: &mut Vec<Problem>) -> Option<Settle> {
    let obj = object(v, path, "{quiet: <duration>, max_wait: <duration>}", p)?;
    unknown_keys(obj.keys(), path, &["quiet", "max_wait"], p);
    let get = |key: &str, p: &mut Vec<Problem>| match obj.get(key) {
        None | Some(Value::Null) => {
            p.push(Problem::new(
                format!("{path}.{key}"),
                "is required: a duration",
            ));
            None
        }
        Some(v) => parse_period(v)
            .map_err(|e| p.push(Problem::new(format!("{path}.{key}"), e)))
            .ok(),
    };
    let quiet = get("quiet", p)?;
    let max_wait = get("max_wait", p)?;
    if max_wait < quiet {
        p.push(Problem::new(
            format!("{path}.max_wait"),
            format!(
                "must be at least quiet ({} < {})",
                human(max_wait),
                human(quiet)
            ),
        ));
        return None;
    }
    Some(Settle { quiet, max_wait })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(v: Value) -> Result<TriggerPolicy, String> {
        let mut p = Vec::new();
        let got = trigger_policy(&v, "metrics[0].trigger", &mut p);
        match got {
            Some(policy) if p.is_empty() => Ok(policy),
            _ => Err(p
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    #[test]
    fn policies_parse_or_name_their_path() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let ok: Vec<(Value, TriggerPolicy)> = vec![
            (json!({}), TriggerPolicy::default()),
            (
                json!({"mode": "any", "inputs": {"d2": "optional", "d3": "context", "d1": "required"}}),
                TriggerPolicy {
                    mode: Mode::Any,
                    inputs: [
                        (DatasetId::new("d2"), Role::Optional),
                        (DatasetId::new("d3"), Role::Context),
                    ]
                    .into(),
                    ..TriggerPolicy::default()
                },
            ),
            (
                json!({"grace": {"after": "2h"}, "settle": {"quiet": "5m", "max_wait": "30m"}, "cooldown": 3600}),
                TriggerPolicy {
                    grace: Some(Grace::After(m(120))),
                    settle: Some(Settle {
                        quiet: m(5),
                        max_wait: m(30),
                    }),
                    cooldown: Some(m(60)),
                    ..TriggerPolicy::default()
                },
            ),
            (
                json!({"grace": {"at": "0 18 * * * Europe/Madrid"}}),
                TriggerPolicy {
                    grace: Some(Grace::At("0 18 * * * Europe/Madrid".parse().unwrap())),
                    ..TriggerPolicy::default()
                },
            ),
        ];
        for (v, want) in ok {
            let got = parse(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(got, want, "{v}");
            assert_eq!(
                TriggerPolicy::from_json(&got.to_json()).unwrap(),
                got,
                "{v} survives its stored form"
            );
        }
        let bad: Vec<(Value, &str)> = vec![
            (json!(3), "metrics[0].trigger: must be an object"),
            (
                json!({"mod": "any"}),
                "metrics[0].trigger.mod: unknown key; did you mean mode?",
            ),
            (
                json!({"mode": "some"}),
                "metrics[0].trigger.mode: must be all or any",
            ),
            (
                json!({"inputs": {"d2": "optinal"}}),
                "metrics[0].trigger.inputs.d2: must be required, optional or context",
            ),
            (
                json!({"grace": {"at": "0 18 * * * Mars/Olympus"}}),
                "metrics[0].trigger.grace.at: unknown time zone",
            ),
            (
                json!({"grace": {"at": "0 18 * * *", "after": "1h"}}),
                "metrics[0].trigger.grace: give exactly one of at or after",
            ),
            (
                json!({"grace": {"after": "0s"}}),
                "metrics[0].trigger.grace.after: must be between 1s and 366d",
            ),
            (
                json!({"settle": {"quiet": "10m", "max_wait": "5m"}}),
                "metrics[0].trigger.settle.max_wait: must be at least quiet (5m < 10m)",
            ),
            (
                json!({"settle": {"quiet": "10m"}}),
                "metrics[0].trigger.settle.max_wait: is required",
            ),
            (
                json!({"settle": {"quite": "1m", "max_wait": "5m"}}),
                "metrics[0].trigger.settle.quite: unknown key; did you mean quiet?",
            ),
            (
                json!({"cooldown": "soon"}),
                "metrics[0].trigger.cooldown: must be a duration",
            ),
        ];
        for (v, needle) in bad {
            let err = parse(v.clone()).expect_err(&v.to_string());
            assert!(err.contains(needle), "{v}: {err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn policies_print_as_operators_read_them() {
        let p = parse(json!({"mode": "any", "inputs": {"d2": "optional"},
            "grace": {"after": "2h"}, "settle": {"quiet": "5m", "max_wait": "30m"}, "cooldown": "1h"}))
        .unwrap();
        assert_eq!(
            p.to_string(),
            "any input, d2 optional, grace 2h after the first input, settle 5m (at most 30m), cooldown 1h"
        );
        assert_eq!(TriggerPolicy::default().to_string(), "all inputs");
    }

    proptest! {
        /// Any JSON-ish value is a policy or located problems, never a panic.
        #[test]
        fn any_value_is_a_policy_or_problems(
            mode in prop::option::of("(all|any|x)"),
            role in "(required|optional|context|other)",
            after in prop::option::of(-5i64..100_000),
            quiet in 0u64..5000, max_wait in 0u64..5000,
            at in prop::option::of("[0-9*/ ,-]{0,20}( Europe/Madrid)?"),
        ) {
            let mut grace = Map::new();
            if let Some(a) = after { grace.insert("after".into(), json!(a)); }
            if let Some(a) = at { grace.insert("at".into(), json!(a)); }
            let v = json!({"mode": mode, "inputs": {"d": role}, "grace": grace,
                           "settle": {"quiet": quiet, "max_wait": max_wait}});
            let mut p = Vec::new();
            let got = trigger_policy(&v, "t", &mut p);
            prop_assert!(got.is_some() == p.is_empty(), "{p:?}");
            for problem in p {
                prop_assert!(problem.path.starts_with('t'));
            }
        }
    }
}
