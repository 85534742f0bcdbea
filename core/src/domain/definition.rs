//! A metric's definition and its versions (docs/semantics.md, "Definition
//! versions"): what a run's output depends on besides its inputs' data —
//! the expression, the series it reads, `required_days` and the trigger
//! policy — in a canonical form whose hash says whether two definitions are
//! the same, and what a change from one to the other changed, for people.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::problem::Problem;

/// The parts of a definition, as the catalog gives them or as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition<'a> {
    pub expression_type: &'a str,
    pub expression_json: &'a Value,
    /// The series the expression reads (any order: the canonical form sorts).
    pub inputs: Vec<String>,
    pub required_days: i32,
    /// The trigger policy's stored form; `None`: the default rule.
    pub trigger: Option<Value>,
}

/// The hashes of a definition (sha256, hex): of the whole, of everything but
/// the trigger policy, and of the policy alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashes {
    pub hash: String,
    pub core: String,
    pub policy: String,
}

impl Definition<'_> {
    /// Key order, whitespace and how a number is written (`100`, `100.0`,
    /// `1e2`) make no difference; anything else does.
    pub fn canonical(&self) -> Value {
        let mut inputs = self.inputs.clone();
        inputs.sort();
        inputs.dedup();
        let mut o = Map::new();
        o.insert("expression_type".into(), self.expression_type.into());
        o.insert("expression_json".into(), normal(self.expression_json));
        o.insert("inputs".into(), inputs.into());
        o.insert("required_days".into(), self.required_days.into());
        o.insert(
            "trigger".into(),
            self.trigger.as_ref().map(normal).unwrap_or(Value::Null),
        );
        Value::Object(o)
    }

    pub fn hashes(&self) -> Hashes {
        let canonical = self.canonical();
        let mut core = canonical.clone();
        let policy = core
            .as_object_mut()
            .and_then(|o| o.remove("trigger"))
            .unwrap_or(Value::Null);
        Hashes {
            hash: digest(&canonical),
            core: digest(&core),
            policy: digest(&policy),
        }
    }
}

fn digest(v: &Value) -> String {
    hex::encode(Sha256::digest(canonical_text(v).as_bytes()))
}

/// Numbers with an integral value become integers; objects are rebuilt so
/// that their keys are sorted whatever map serde_json was built with.
fn normal(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                // Exact: |f| < 2^53.
                Value::from(f as i64)
            }
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(normal).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), normal(&o[k])))
                    .collect(),
            )
        }
        _ => v.clone(),
    }
}

/// Compact JSON with keys sorted at every level.
fn canonical_text(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_text(&o[k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical_text).collect();
            format!("[{}]", parts.join(","))
        }
        _ => v.to_string(),
    }
}

/// The part of a definition a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Expression,
    Inputs,
    RequiredDays,
    Trigger,
}

impl Section {
    fn of_key(key: &str) -> Section {
        match key {
            "inputs" => Section::Inputs,
            "required_days" => Section::RequiredDays,
            "trigger" => Section::Trigger,
            _ => Section::Expression,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Section::Expression => "expression",
            Section::Inputs => "inputs",
            Section::RequiredDays => "required_days",
            Section::Trigger => "trigger policy",
        }
    }
}

/// One difference between two canonical definitions: a value at `path`
/// (inside its section; empty for the section's value itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub section: Section,
    pub path: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

/// What changed from `old` to `new` (both [`Definition::canonical`]), in
/// section and path order.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    for key in [
        "expression_type",
        "expression_json",
        "inputs",
        "required_days",
        "trigger",
    ] {
        let section = Section::of_key(key);
        let inner = if key == "expression_type" { "type" } else { "" };
        walk(
            section,
            inner.to_string(),
            old.get(key),
            new.get(key),
            &mut out,
        );
    }
    out
}

fn walk(
    section: Section,
    path: String,
    a: Option<&Value>,
    b: Option<&Value>,
    out: &mut Vec<Change>,
) {
    let a = a.filter(|v| !v.is_null());
    let b = b.filter(|v| !v.is_null());
    if a == b {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                walk(section, join(k), x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y)))
            if x.len() == y.len() && section != Section::Inputs =>
        {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(section, format!("{path}[{i}]"), Some(p), Some(q), out);
            }
        }
        _ => out.push(Change {
            section,
            path,
            from: a.cloned(),
            to: b.cloned(),
        }),
    }
}

/// At most this many changes are listed per section; the rest are counted.
const SHOWN_PER_SECTION: usize = 3;

/// `expression changed: scale 100 → 1000; required_days changed: 7 → 10`.
pub fn summary(changes: &[Change]) -> String {
    let mut parts = Vec::new();
    let mut sections: Vec<Section> = changes.iter().map(|c| c.section).collect();
    sections.dedup();
    for s in sections {
        let of: Vec<&Change> = changes.iter().filter(|c| c.section == s).collect();
        let mut shown: Vec<String> = of
            .iter()
            .take(SHOWN_PER_SECTION)
            .map(|c| c.to_string())
            .collect();
        if of.len() > SHOWN_PER_SECTION {
            shown.push(format!("and {} more", of.len() - SHOWN_PER_SECTION));
        }
        parts.push(format!("{} changed: {}", s.as_str(), shown.join(", ")));
    }
    parts.join("; ")
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            None => "(none)".to_string(),
            Some(v) => short(v),
        };
        if !self.path.is_empty() {
            write!(f, "{} ", self.path)?;
        }
        write!(f, "{} → {}", show(&self.from), show(&self.to))
    }
}

/// A value as a change shows it: cut to a readable length.
fn short(v: &Value) -> String {
    const MAX: usize = 60;
    let text = canonical_text(v);
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Whether changes touch what a run computes (anything but the trigger
/// policy), and whether they touch the policy.
pub fn touches(changes: &[Change]) -> (bool, bool) {
    (
        changes.iter().any(|c| c.section != Section::Trigger),
        changes.iter().any(|c| c.section == Section::Trigger),
    )
}

/// What a definition change does to a metric (the catalog's `on_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnChange {
    /// Mark its outputs stale and request nothing: what every metric did
    /// before versions existed, so the default.
    #[default]
    None,
    /// Request one run now with the newest inputs, through the pending-run
    /// rules.
    Rerun,
    /// Make a backfill of the metric over the last `since` (points: its
    /// past runs; reprocess: stale).
    Backfill { since: std::time::Duration },
}

impl OnChange {
    pub fn as_str(self) -> &'static str {
        match self {
            OnChange::None => "none",
            OnChange::Rerun => "rerun",
            OnChange::Backfill { .. } => "backfill",
        }
    }

    /// From the stored column and, for a backfill, its `since` in seconds.
    pub fn parse(s: &str, since_secs: Option<i64>) -> Option<OnChange> {
        match (s, since_secs) {
            ("none", _) => Some(OnChange::None),
            ("rerun", _) => Some(OnChange::Rerun),
            ("backfill", Some(secs)) => Some(OnChange::Backfill {
                since: std::time::Duration::from_secs(u64::try_from(secs).ok()?),
            }),
            _ => None,
        }
    }

    /// `since` in seconds, for the store.
    pub fn since_secs(self) -> Option<i64> {
        match self {
            OnChange::Backfill { since } => i64::try_from(since.as_secs()).ok(),
            _ => None,
        }
    }
}

impl std::fmt::Display for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OnChange::Backfill { since } => {
                write!(f, "backfill since {}", humantime::format_duration(*since))
            }
            other => f.write_str(other.as_str()),
        }
    }
}

const ON_CHANGE_FORMS: &str =
    "must be \"none\", \"rerun\" or {backfill: {since: DURATION}} (e.g. {backfill: {since: 90d}})";

fn backfill_since(o: &Map<String, Value>, at: &str, p: &mut Vec<Problem>) -> Option<OnChange> {
    if let Some(k) = o.keys().find(|k| *k != "backfill") {
        p.push(Problem::new(
            format!("{at}.{k}"),
            format!("unknown key: {ON_CHANGE_FORMS}"),
        ));
        return None;
    }
    let at = format!("{at}.backfill");
    let Some(Value::Object(b)) = o.get("backfill") else {
        p.push(Problem::new(
            at,
            "must be {since: DURATION}, e.g. {since: 90d}",
        ));
        return None;
    };
    if let Some(k) = b.keys().find(|k| *k != "since") {
        p.push(Problem::new(
            format!("{at}.{k}"),
            "unknown key: the one key is since",
        ));
        return None;
    }
    let Some(v) = b.get("since") else {
        p.push(Problem::new(
            format!("{at}.since"),
            "is required: how far back, e.g. 90d",
        ));
        return None;
    };
    match super::expectation::parse_period(v) {
        Ok(since) => Some(OnChange::Backfill { since }),
        Err(e) => {
            p.push(Problem::new(format!("{at}.since"), e));
            None
        }
    }
}

/// Reads a metric entry's `on_change` (absent: [`OnChange::None`]).
pub fn on_change(obj: &Map<String, Value>, path: &str, p: &mut Vec<Problem>) -> Option<OnChange> {
    let at = format!("{path}.on_change");
    match obj.get("on_change") {
        None | Some(Value::Null) => Some(OnChange::None),
        Some(Value::Object(o)) => backfill_since(o, &at, p),
        Some(Value::String(s)) if s == "none" || s == "rerun" => OnChange::parse(s, None),
        Some(other) => {
            p.push(Problem::new(at, format!("{ON_CHANGE_FORMS}, got {other}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def<'a>(expr: &'a Value, days: i32, trigger: Option<Value>) -> Definition<'a> {
        Definition {
            expression_type: "series_math",
            expression_json: expr,
            inputs: vec!["b".into(), "a".into()],
            required_days: days,
            trigger,
        }
    }

    /// Each pair: two spellings of a definition, and whether they are the
    /// same version.
    #[test]
    fn the_canonical_form_ignores_spelling_and_sees_meaning() {
        let base = json!({"op": "ratio", "left": "a", "right": "b", "scale": 100});
        let cases: Vec<(&str, Value, Option<Value>, i32, bool)> = vec![
            ("the same", base.clone(), None, 7, true),
            (
                "keys in another order",
                serde_json::from_str(r#"{"scale":100,"right":"b","left":"a","op":"ratio"}"#)
                    .unwrap(),
                None,
                7,
                true,
            ),
            (
                "whitespace",
                serde_json::from_str(
                    "{ \"op\" : \"ratio\",\n \"left\": \"a\", \"right\":\"b\",  \"scale\": 100 }",
                )
                .unwrap(),
                None,
                7,
                true,
            ),
            (
                "100.0 for 100",
                json!({"op": "ratio", "left": "a", "right": "b", "scale": 100.0}),
                None,
                7,
                true,
            ),
            (
                "a changed scale",
                json!({"op": "ratio", "left": "a", "right": "b", "scale": 1000}),
                None,
                7,
                false,
            ),
            (
                "scale 100.5",
                json!({"op": "ratio", "left": "a", "right": "b", "scale": 100.5}),
                None,
                7,
                false,
            ),
            ("a changed required_days", base.clone(), None, 8, false),
            (
                "a policy",
                base.clone(),
                Some(json!({"cooldown": 60})),
                7,
                false,
            ),
            (
                "a string for a number",
                json!({"op": "ratio", "left": "a", "right": "b", "scale": "100"}),
                None,
                7,
                false,
            ),
        ];
        let reference = def(&base, 7, None).hashes();
        for (name, expr, trigger, days, same) in cases {
            let h = def(&expr, days, trigger).hashes();
            assert_eq!(h.hash == reference.hash, same, "{name}");
        }
    }

    #[test]
    fn the_policy_and_the_rest_hash_apart() {
        let e = json!({"op": "ratio"});
        let plain = def(&e, 7, None).hashes();
        let with_policy = def(&e, 7, Some(json!({"cooldown": 60}))).hashes();
        assert_eq!(plain.core, with_policy.core);
        assert_ne!(plain.policy, with_policy.policy);
        let other_days = def(&e, 9, None).hashes();
        assert_ne!(plain.core, other_days.core);
        assert_eq!(plain.policy, other_days.policy);
    }

    #[test]
    fn inputs_are_a_set() {
        let e = json!({});
        let mut a = def(&e, 7, None);
        let b = a.clone();
        a.inputs = vec!["a".into(), "b".into(), "a".into()];
        assert_eq!(a.hashes(), b.hashes());
    }

    /// Each case: old and new definitions, and the summary of their diff.
    #[test]
    fn a_diff_says_what_changed_where() {
        let e1 = json!({"op": "ratio", "left": "a", "right": "b", "scale": 100});
        let e2 = json!({"op": "ratio", "left": "a", "right": "b", "scale": 1000});
        let e3 = json!({"op": "ratio", "left": "a", "right": "c", "scale": 100});
        let cases: Vec<(&str, Definition, Definition, &str)> = vec![
            ("nothing", def(&e1, 7, None), def(&e1, 7, None), ""),
            ("scale", def(&e1, 7, None), def(&e2, 7, None), "expression changed: scale 100 → 1000"),
            (
                "days and policy",
                def(&e1, 7, None),
                def(&e1, 10, Some(json!({"cooldown": 60}))),
                "required_days changed: 7 → 10; trigger policy changed: (none) → {\"cooldown\":60}",
            ),
            (
                "an input",
                def(&e1, 7, None),
                {
                    let mut d = def(&e3, 7, None);
                    d.inputs = vec!["a".into(), "c".into()];
                    d
                },
                "expression changed: right \"b\" → \"c\"; inputs changed: [\"a\",\"b\"] → [\"a\",\"c\"]",
            ),
        ];
        for (name, old, new, want) in cases {
            let got = summary(&diff(&old.canonical(), &new.canonical()));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_long_diff_is_cut() {
        let a = json!({"k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5});
        let b = json!({"k1": 0, "k2": 0, "k3": 0, "k4": 0, "k5": 0});
        let s = summary(&diff(
            &def(&a, 7, None).canonical(),
            &def(&b, 7, None).canonical(),
        ));
        assert_eq!(
            s,
            "expression changed: k1 1 → 0, k2 2 → 0, k3 3 → 0, and 2 more"
        );
        let (defn, policy) = touches(&diff(
            &def(&a, 7, None).canonical(),
            &def(&b, 7, None).canonical(),
        ));
        assert!(defn && !policy);
    }

    #[test]
    fn on_change_is_validated_where_it_is_written() {
        let cases: Vec<(Value, Result<OnChange, &str>)> = vec![
            (json!({}), Ok(OnChange::None)),
            (json!({"on_change": null}), Ok(OnChange::None)),
            (json!({"on_change": "rerun"}), Ok(OnChange::Rerun)),
            (json!({"on_change": "none"}), Ok(OnChange::None)),
            (
                json!({"on_change": {"backfill": {"since": "90d"}}}),
                Ok(OnChange::Backfill {
                    since: std::time::Duration::from_secs(90 * 86_400),
                }),
            ),
            (
                json!({"on_change": "backfill"}),
                Err("must be \"none\", \"rerun\" or {backfill: {since: DURATION}}"),
            ),
            (
                json!({"on_change": {"backfill": {}}}),
                Err("is required: how far back"),
            ),
            (
                json!({"on_change": {"backfill": {"since": "soon"}}}),
                Err("must be a duration"),
            ),
            (
                json!({"on_change": {"backfill": {"since": "90d", "points": "daily"}}}),
                Err("unknown key"),
            ),
            (json!({"on_change": {"rerun": true}}), Err("unknown key")),
            (
                json!({"on_change": "later"}),
                Err("must be \"none\", \"rerun\""),
            ),
            (json!({"on_change": 3}), Err("must be \"none\", \"rerun\"")),
        ];
        for (doc, want) in cases {
            let mut p = Vec::new();
            let got = on_change(doc.as_object().unwrap(), "metrics[0]", &mut p);
            match want {
                Ok(w) => assert_eq!((got, p.len()), (Some(w), 0), "{doc}"),
                Err(msg) => {
                    assert_eq!(got, None, "{doc}");
                    assert!(
                        p[0].path.starts_with("metrics[0].on_change"),
                        "{}",
                        p[0].path
                    );
                    assert!(p[0].message.contains(msg), "{doc}: {}", p[0].message);
                }
            }
        }
    }
}
