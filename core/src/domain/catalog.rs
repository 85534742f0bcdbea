//! The catalog file (docs/contracts.md): datasets, series and metrics, read from JSON
//! or YAML and validated as a whole so that every problem is reported with its
//! path and nothing is applied when there is one.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::definition::{on_change, Definition, OnChange};
use super::expectation::{
    dataset_expectation, metric_expectation, DatasetExpectation, MetricExpectation,
};
use super::expression::{parse_metric_expression, Expr, ExpressionType};
use super::problem::{unknown_keys, Problem, Problems};
use super::trigger_policy::{trigger_policy, TriggerPolicy};

/// Bounds that keep one catalog apply to a sane size and time: far above a
/// 500,000-metric catalog (~145 MB, BENCHMARKS.md "Cost at 500,000
/// metrics"), low enough that a wrong file cannot exhaust memory.
pub const MAX_CATALOG_BYTES: usize = 512 * 1024 * 1024;
pub const MAX_ENTRIES: usize = 1_000_000;
pub const MAX_REQUIRED_DAYS: i64 = 36_500;
pub const MAX_ATTEMPTS: i64 = 100;
/// Thirty days.
pub const MAX_RUN_TIMEOUT_SECS: i64 = 2_592_000;

/// The keys each kind of entry may have (docs/contracts.md, "Catalog"):
/// anything else is refused, so that a typo is not silently a default.
const ROOT_KEYS: &[&str] = &["datasets", "series", "metrics"];
const SERIES_KEYS: &[&str] = &["code", "name", "description", "unit", "frequency"];
const DATASET_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "bucket",
    "series",
    "expected_every",
    "expected_by",
    "grace",
];
const METRIC_KEYS: &[&str] = &[
    "id",
    "code",
    "expression_type",
    "expression_json",
    "required_days",
    "max_attempts",
    "run_timeout_secs",
    "enabled",
    "frequency",
    "unit",
    "description",
    "max_age",
    "expected_by",
    "grace",
    "trigger",
    "on_change",
];

#[derive(Debug, Clone, PartialEq)]
pub struct DatasetDef {
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub bucket: Option<String>,
    /// `None` when the file does not list them: the stored series are kept.
    pub series: Option<Vec<String>>,
    /// When its updates are expected; `None`: no expectation.
    pub expectation: Option<DatasetExpectation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesDef {
    pub code: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub unit: Option<String>,
    pub frequency: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    /// Its place in the file's `metrics` (problems name it).
    pub index: usize,
    pub id: String,
    pub code: String,
    pub expression_type: ExpressionType,
    /// Stored exactly as given: the run request carries it unchanged.
    pub expression_json: Value,
    pub expression: Expr,
    pub required_days: i32,
    pub max_attempts: i32,
    /// Bound on a run's time from its start (for runners without heartbeats).
    pub run_timeout_secs: Option<i32>,
    pub enabled: bool,
    pub frequency: Option<String>,
    pub unit: Option<String>,
    pub description: Option<String>,
    /// How fresh its output must be; `None`: no expectation.
    pub expectation: Option<MetricExpectation>,
    /// When its runs are requested; `None`: the default rule.
    pub trigger: Option<TriggerPolicy>,
    /// What a change of its definition does.
    pub on_change: OnChange,
}

impl MetricDef {
    pub fn series(&self) -> BTreeSet<String> {
        self.expression.referenced_series()
    }

    /// What its outputs depend on besides their inputs' data.
    pub fn definition(&self) -> Definition<'_> {
        Definition {
            expression_type: self.expression_type.as_str(),
            expression_json: &self.expression_json,
            inputs: self.series().into_iter().collect(),
            required_days: self.required_days,
            trigger: self.trigger.as_ref().map(TriggerPolicy::to_json),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    pub datasets: Vec<DatasetDef>,
    pub series: Vec<SeriesDef>,
    pub metrics: Vec<MetricDef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// From the file name's extension; anything else is sniffed from the content.
    pub fn detect(file_name: &str, text: &str) -> Format {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") || text.trim_start().starts_with(['{', '[']) {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// Reads catalog text into a JSON document (YAML is mapped onto JSON values).
pub fn parse_document(text: &str, format: Format) -> Result<Value, Problems> {
    if text.len() > MAX_CATALOG_BYTES {
        return Err(one(
            "$",
            format!("catalog is larger than {MAX_CATALOG_BYTES} bytes"),
        ));
    }
    let parsed = match format {
        Format::Json => serde_json::from_str::<Value>(text).map_err(|e| e.to_string()),
        Format::Yaml => serde_yaml::from_str::<Value>(text).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| one("$", format!("not valid {format:?}: {e}")))
}

fn one(path: &str, msg: String) -> Problems {
    Problems(vec![Problem::new(path, msg)])
}

/// Validates a catalog document. `known_series` are series already in the
/// store: a metric or dataset may reference them without redefining them.
pub fn validate(doc: &Value, known_series: &HashSet<String>) -> Result<Catalog, Problems> {
    validate_entries(doc, known_series, &|_, _| true)
}

/// [`validate`], parsing only the entries `keep(section, index)` accepts
/// (the others were applied unchanged before: `domain::catalog_hash`);
/// paths keep each entry's index in the file.
pub fn validate_entries(
    doc: &Value,
    known_series: &HashSet<String>,
    keep: &dyn Fn(&str, usize) -> bool,
) -> Result<Catalog, Problems> {
    let mut p = Vec::new();
    let Some(root) = doc.as_object() else {
        return Err(one(
            "$",
            "must be an object with datasets, series, metrics".into(),
        ));
    };
    unknown_keys(root.keys(), "", ROOT_KEYS, &mut p);
    // Entries keep their index in the file so that paths stay right when an
    // earlier entry was left out for its own problems.
    let series: Vec<(usize, SeriesDef)> = section(root, "series", &mut p, parse_series, keep);
    let mut defined: HashSet<String> = known_series.clone();
    defined.extend(series.iter().map(|(_, s)| s.code.clone()));
    let datasets: Vec<(usize, DatasetDef)> = section(root, "datasets", &mut p, parse_dataset, keep);
    let metrics: Vec<(usize, MetricDef)> = section(root, "metrics", &mut p, parse_metric, keep);

    unique(
        series.iter().map(|(i, s)| (*i, s.code.as_str())),
        "series",
        "code",
        &mut p,
    );
    unique(
        datasets.iter().map(|(i, d)| (*i, d.id.as_str())),
        "datasets",
        "id",
        &mut p,
    );
    unique(
        metrics.iter().map(|(i, m)| (*i, m.id.as_str())),
        "metrics",
        "id",
        &mut p,
    );
    unique(
        metrics.iter().map(|(i, m)| (*i, m.code.as_str())),
        "metrics",
        "code",
        &mut p,
    );
    for (i, d) in &datasets {
        for (j, s) in d.series.iter().flatten().enumerate() {
            if !defined.contains(s) {
                p.push(Problem::new(
                    format!("datasets[{i}].series[{j}]"),
                    format!("unknown series {s:?}"),
                ));
            }
        }
    }
    for (i, m) in &metrics {
        for s in m.series() {
            if !defined.contains(&s) {
                p.push(Problem::new(
                    format!("metrics[{i}].expression_json"),
                    format!("references unknown series {s:?}"),
                ));
            }
        }
    }
    let strip = |v: Vec<(usize, _)>| v.into_iter().map(|(_, x)| x).collect();
    if p.is_empty() {
        Ok(Catalog {
            datasets: strip(datasets),
            series: series.into_iter().map(|(_, x)| x).collect(),
            metrics: metrics
                .into_iter()
                .map(|(i, m)| MetricDef { index: i, ..m })
                .collect(),
        })
    } else {
        Err(Problems(p))
    }
}

/// Parses one entry of a section, recording its problems.
type EntryParser<T> = fn(&Map<String, Value>, &str, &mut Vec<Problem>) -> Option<T>;

/// Parses every element of an optional array section; elements with problems
/// are left out of the result (their problems are recorded).
fn section<T>(
    root: &Map<String, Value>,
    key: &str,
    p: &mut Vec<Problem>,
    parse: EntryParser<T>,
    keep: &dyn Fn(&str, usize) -> bool,
) -> Vec<(usize, T)> {
    let Some(v) = root.get(key) else {
        return Vec::new();
    };
    let Some(items) = v.as_array() else {
        p.push(Problem::new(key, "must be an array"));
        return Vec::new();
    };
    if items.len() > MAX_ENTRIES {
        p.push(Problem::new(
            key,
            format!("has more than {MAX_ENTRIES} entries"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if !keep(key, i) {
            continue;
        }
        let path = format!("{key}[{i}]");
        match item.as_object() {
            Some(obj) => out.extend(parse(obj, &path, p).map(|x| (i, x))),
            None => p.push(Problem::new(path, "must be an object")),
        }
    }
    out
}

fn unique<'a>(
    values: impl Iterator<Item = (usize, &'a str)>,
    section: &str,
    field: &str,
    p: &mut Vec<Problem>,
) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, v) in values {
        if let Some(j) = first.insert(v, i) {
            p.push(Problem::new(
                format!("{section}[{i}].{field}"),
                format!("duplicate {field} {v:?} (also {section}[{j}])"),
            ));
        }
    }
}

fn required_str(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Vec<Problem>,
) -> Option<String> {
    match obj.get(key).and_then(Value::as_str).map(str::trim) {
        Some(s) if !s.is_empty() => Some(s.to_string()),
        _ => {
            p.push(Problem::new(
                format!("{path}.{key}"),
                "is required: a non-empty string",
            ));
            None
        }
    }
}

fn optional_str(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Vec<Problem>,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.push(Problem::new(format!("{path}.{key}"), "must be a string"));
            None
        }
    }
}

fn int_in(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    (min, max, default): (i64, i64, i64),
    p: &mut Vec<Problem>,
) -> Option<i32> {
    match obj.get(key) {
        None | Some(Value::Null) => i32::try_from(default).ok(),
        Some(v) => match v.as_i64().filter(|n| (min..=max).contains(n)) {
            Some(n) => i32::try_from(n).ok(),
            None => {
                p.push(Problem::new(
                    format!("{path}.{key}"),
                    format!("must be an integer >= {min} (at most {max})"),
                ));
                None
            }
        },
    }
}

fn parse_series(obj: &Map<String, Value>, path: &str, p: &mut Vec<Problem>) -> Option<SeriesDef> {
    unknown_keys(obj.keys(), path, SERIES_KEYS, p);
    let code = required_str(obj, path, "code", p);
    let name = optional_str(obj, path, "name", p);
    let description = optional_str(obj, path, "description", p);
    let unit = optional_str(obj, path, "unit", p);
    let frequency = optional_str(obj, path, "frequency", p);
    Some(SeriesDef {
        code: code?,
        name,
        description,
        unit,
        frequency,
    })
}

fn parse_dataset(obj: &Map<String, Value>, path: &str, p: &mut Vec<Problem>) -> Option<DatasetDef> {
    unknown_keys(obj.keys(), path, DATASET_KEYS, p);
    let id = required_str(obj, path, "id", p);
    let name = optional_str(obj, path, "name", p);
    let description = optional_str(obj, path, "description", p);
    let bucket = optional_str(obj, path, "bucket", p);
    let mut series = Vec::new();
    let mut ok = true;
    let listed = !matches!(obj.get("series"), None | Some(Value::Null));
    match obj.get("series") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (j, s) in items.iter().enumerate() {
                match s.as_str().map(str::trim) {
                    Some(code) if !code.is_empty() => series.push(code.to_string()),
                    _ => {
                        ok = false;
                        p.push(Problem::new(
                            format!("{path}.series[{j}]"),
                            "must be a non-empty string",
                        ));
                    }
                }
            }
        }
        Some(_) => {
            ok = false;
            p.push(Problem::new(
                format!("{path}.series"),
                "must be an array of series codes",
            ));
        }
    }
    series.sort();
    series.dedup();
    let expectation = dataset_expectation(obj, path, p);
    ok.then_some(())?;
    Some(DatasetDef {
        id: id?,
        name,
        description,
        bucket,
        series: listed.then_some(series),
        expectation: expectation.ok()?,
    })
}

fn parse_metric(obj: &Map<String, Value>, path: &str, p: &mut Vec<Problem>) -> Option<MetricDef> {
    unknown_keys(obj.keys(), path, METRIC_KEYS, p);
    let id = required_str(obj, path, "id", p);
    let code = required_str(obj, path, "code", p);
    let expression_type = match obj.get("expression_type").and_then(Value::as_str) {
        Some(s) => match s.parse::<ExpressionType>() {
            Ok(t) => Some(t),
            Err(e) => {
                p.push(Problem::new(format!("{path}.expression_type"), e));
                None
            }
        },
        None => {
            p.push(Problem::new(
                format!("{path}.expression_type"),
                "is required: one of series_math, window_op, composite",
            ));
            None
        }
    };
    let expr_path = format!("{path}.expression_json");
    let expression_json = obj.get("expression_json").cloned();
    if expression_json.is_none() {
        p.push(Problem::new(expr_path.clone(), "is required"));
    }
    let expression = match (expression_type, &expression_json) {
        (Some(t), Some(json)) => match parse_metric_expression(t, json, &expr_path) {
            Ok(e) => Some(e),
            Err(problems) => {
                p.extend(problems);
                None
            }
        },
        _ => None,
    };
    let required_days = int_in(obj, path, "required_days", (0, MAX_REQUIRED_DAYS, 7), p);
    let max_attempts = int_in(obj, path, "max_attempts", (1, MAX_ATTEMPTS, 1), p);
    let run_timeout_secs = match obj.get("run_timeout_secs") {
        None | Some(Value::Null) => Some(None),
        Some(_) => int_in(
            obj,
            path,
            "run_timeout_secs",
            (1, MAX_RUN_TIMEOUT_SECS, 1),
            p,
        )
        .map(Some),
    };
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => Some(true),
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            p.push(Problem::new(
                format!("{path}.enabled"),
                "must be true or false",
            ));
            None
        }
    };
    let frequency = optional_str(obj, path, "frequency", p);
    let unit = optional_str(obj, path, "unit", p);
    let description = optional_str(obj, path, "description", p);
    let expectation = metric_expectation(obj, path, p);
    let trigger = match obj.get("trigger") {
        None | Some(Value::Null) => Some(None),
        Some(v) => trigger_policy(v, &format!("{path}.trigger"), p).map(Some),
    };
    let on_change = on_change(obj, path, p);
    Some(MetricDef {
        index: 0,
        id: id?,
        code: code?,
        expression_type: expression_type?,
        expression_json: expression_json?,
        expression: expression?,
        required_days: required_days?,
        max_attempts: max_attempts?,
        run_timeout_secs: run_timeout_secs?,
        enabled: enabled?,
        frequency,
        unit,
        description,
        expectation: expectation.ok()?,
        trigger: trigger?,
        on_change: on_change?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
          "datasets": [{"id": "d1", "name": "D1", "bucket": "b", "series": ["S1", "S2"]}],
          "series": [{"code": "S1", "name": "one"}, {"code": "S2"}],
          "metrics": [{"id": "m1", "code": "m.one", "expression_type": "composite",
                       "expression_json": {"op": "sum", "operands": [{"seriesCode": "S1"}]},
                       "required_days": 0, "max_attempts": 2, "enabled": true}]
        })
    }

    #[test]
    fn a_valid_catalog_parses_with_defaults() {
        let mut doc = sample();
        doc["metrics"][0]
            .as_object_mut()
            .unwrap()
            .remove("required_days");
        let c = validate(&doc, &HashSet::new()).unwrap();
        assert_eq!(c.metrics[0].required_days, 7);
        assert_eq!(c.metrics[0].max_attempts, 2);
        assert_eq!(
            c.datasets[0].series,
            Some(vec!["S1".to_string(), "S2".to_string()])
        );
    }

    #[test]
    fn problems_carry_their_paths() {
        let doc = json!({
          "datasets": [{"id": "", "series": ["S9", 3]}],
          "series": [{"code": "S1"}, {"code": "S1"}],
          "metrics": [
            {"id": "m1", "code": "a", "expression_type": "composite",
             "expression_json": {"op": "sum", "operands": [{"seriesCode": "S1"}]}},
            {"id": "m2", "code": "b", "expression_type": "series_math",
             "expression_json": {"op": "ratio", "left": {"op": "sma", "series": {"seriesCode": "S1"}, "window": 0},
                                 "right": {"seriesCode": "NOPE"}},
             "required_days": -1, "enabled": "yes"}]
        });
        let err = validate(&doc, &HashSet::new()).unwrap_err().to_string();
        for needle in [
            "datasets[0].id: is required",
            "datasets[0].series[1]: must be a non-empty string",
            "series[1].code: duplicate code \"S1\"",
            "metrics[1].expression_json.left.window: must be an integer >= 1",
            "metrics[1].required_days: must be an integer >= 0",
            "metrics[1].enabled: must be true or false",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_the_nearest_known_key() {
        let mut doc = sample();
        doc["metrics"][0]["requried_days"] = json!(3);
        doc["metrics"][0]["max_atempts"] = json!(5);
        doc["datasets"][0]["bukcet"] = json!("b2");
        doc["series"][0]["unti"] = json!("%");
        doc["metric"] = json!([]);
        let err = validate(&doc, &HashSet::new()).unwrap_err().to_string();
        for needle in [
            "metrics[0].requried_days: unknown key; did you mean required_days?",
            "metrics[0].max_atempts: unknown key; did you mean max_attempts?",
            "datasets[0].bukcet: unknown key; did you mean bucket?",
            "series[0].unti: unknown key; did you mean unit?",
            "metric: unknown key; did you mean metrics?",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        assert!(validate(&sample(), &HashSet::new()).is_ok());
    }

    #[test]
    fn paths_keep_file_indices_after_an_invalid_entry() {
        let doc = json!({"series": [{"code": "S1"}], "metrics": [
            {"id": "bad"},
            {"id": "m", "code": "m", "expression_type": "composite",
             "expression_json": {"op": "sum", "operands": [{"seriesCode": "NOPE"}]}}]});
        let err = validate(&doc, &HashSet::new()).unwrap_err().to_string();
        assert!(
            err.contains("metrics[1].expression_json: references unknown series"),
            "{err}"
        );
    }

    #[test]
    fn unknown_series_are_reported_and_known_ones_accepted() {
        let doc = json!({"metrics": [{"id": "m", "code": "m", "expression_type": "composite",
            "expression_json": {"op": "sum", "operands": [{"series_code": "OLD"}]}}]});
        let err = validate(&doc, &HashSet::new()).unwrap_err().to_string();
        assert!(
            err.contains("metrics[0].expression_json: references unknown series \"OLD\""),
            "{err}"
        );
        let known: HashSet<String> = ["OLD".to_string()].into();
        assert!(validate(&doc, &known).is_ok());
    }

    #[test]
    fn yaml_and_json_give_the_same_catalog() {
        let yaml = "datasets:\n  - id: d1\n    series: [S1]\nseries:\n  - code: S1\nmetrics:\n  - id: m1\n    code: m.one\n    expression_type: window_op\n    expression_json: {op: lag, series: {seriesCode: S1}, window: 1}\n";
        let doc = parse_document(yaml, Format::detect("c.yaml", yaml)).unwrap();
        let c = validate(&doc, &HashSet::new()).unwrap();
        assert_eq!(c.metrics[0].expression_type, ExpressionType::WindowOp);
        let json_text = serde_json::to_string(&doc).unwrap();
        let again = parse_document(&json_text, Format::detect("c", &json_text)).unwrap();
        assert_eq!(validate(&again, &HashSet::new()).unwrap(), c);
    }

    #[test]
    fn malformed_text_is_a_problem_not_a_panic() {
        assert!(parse_document("{", Format::Json).is_err());
        assert!(parse_document("a: [", Format::Yaml).is_err());
        assert!(validate(&json!([1]), &HashSet::new()).is_err());
        assert!(validate(&json!({"metrics": 3}), &HashSet::new()).is_err());
    }

    const SERIES: &[&str] = &["S1", "S2", "S3", "S4", "X"];

    /// Expression-shaped trees, valid or not: known and unknown ops, series,
    /// windows and operand lists.
    fn arb_expression() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            prop::sample::select(SERIES).prop_map(|c| json!({"seriesCode": c})),
            prop::sample::select(SERIES).prop_map(|c| json!({"series_code": c})),
            Just(json!({})),
            Just(json!(7)),
        ];
        leaf.prop_recursive(4, 32, 3, |inner| {
            let ops = prop::sample::select(
                &[
                    "ratio", "multiply", "subtract", "add", "sma", "ema", "sum", "max", "min",
                    "lag", "avg", "nope",
                ][..],
            );
            prop_oneof![
                (
                    ops.clone(),
                    inner.clone(),
                    inner.clone(),
                    prop::option::of(-2i64..200)
                )
                    .prop_map(
                        |(op, l, r, scale)| json!({"op": op, "left": l, "right": r, "scale": scale})
                    ),
                (ops.clone(), inner.clone(), -1i64..30)
                    .prop_map(|(op, s, w)| json!({"op": op, "series": s, "window": w})),
                (ops, prop::collection::vec(inner, 0..4))
                    .prop_map(|(op, o)| json!({"op": op, "operands": o})),
            ]
        })
    }

    /// Catalog-shaped documents with arbitrary flaws.
    fn arb_catalog() -> impl Strategy<Value = Value> {
        let dataset = (
            prop::sample::select(&["d1", "d2", ""][..]),
            prop::collection::vec(prop::sample::select(SERIES), 0..3),
        )
            .prop_map(
                |(id, series)| json!({"id": id, "name": "n", "bucket": "b", "series": series}),
            );
        let series = prop::sample::select(SERIES).prop_map(|c| json!({"code": c}));
        let kinds = prop::sample::select(&["series_math", "window_op", "composite", "other"][..]);
        let metric = (
            prop::sample::select(&["m1", "m2", ""][..]),
            kinds,
            arb_expression(),
            prop::option::of(-1i64..30),
            prop::option::of(any::<bool>()),
        )
            .prop_map(|(id, kind, e, days, enabled)| {
                json!({"id": id, "code": format!("c.{id}"), "expression_type": kind,
                       "expression_json": e, "required_days": days, "enabled": enabled})
            });
        (
            prop::collection::vec(dataset, 0..3),
            prop::collection::vec(series, 0..4),
            prop::collection::vec(metric, 0..4),
        )
            .prop_map(|(d, s, m)| json!({"datasets": d, "series": s, "metrics": m}))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every catalog-shaped document validates or yields problems that
        /// each name a path and say what is wrong; never a panic.
        #[test]
        fn catalog_shaped_documents_validate_or_report_located_problems(doc in arb_catalog()) {
            match validate(&doc, &HashSet::new()) {
                Ok(c) => prop_assert!(c.metrics.len() <= 4),
                Err(Problems(ps)) => {
                    prop_assert!(!ps.is_empty());
                    for p in ps {
                        prop_assert!(!p.path.is_empty() && !p.message.is_empty(), "{p:?}");
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            for f in [Format::Json, Format::Yaml] {
                if let Ok(doc) = parse_document(&s, f) {
                    let _ = validate(&doc, &HashSet::new());
                }
            }
        }
    }
}
