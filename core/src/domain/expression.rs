//! Metric expressions (docs/contracts.md): a tree whose leaves reference series.
//!
//! A node's kind is told by its fields, as in the reference service: a leaf has
//! `seriesCode` (or `series_code`), `series_math` has `left`/`right`,
//! `window_op` has `series`/`window`, `composite` has `operands`. Parsing
//! collects every problem with its path instead of stopping at the first.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::problem::Problem;

/// Deeper trees are rejected: they would only come from a generator gone wrong
/// and recursion on them must stay bounded.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpressionType {
    SeriesMath,
    WindowOp,
    Composite,
}

impl ExpressionType {
    pub const ALL: [ExpressionType; 3] = [Self::SeriesMath, Self::WindowOp, Self::Composite];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SeriesMath => "series_math",
            Self::WindowOp => "window_op",
            Self::Composite => "composite",
        }
    }
}

impl fmt::Display for ExpressionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExpressionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| "must be one of series_math, window_op, composite".to_string())
    }
}

macro_rules! op_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
            fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|o| o.as_str() == s)
            }
            fn choices() -> String {
                Self::ALL.iter().map(|o| o.as_str()).collect::<Vec<_>>().join("|")
            }
        }
    };
}

op_enum!(MathOp { Ratio => "ratio", Multiply => "multiply", Subtract => "subtract", Add => "add" });
op_enum!(WindowFn { Sma => "sma", Ema => "ema", Sum => "sum", Max => "max", Min => "min", Lag => "lag" });
op_enum!(CompositeOp { Sum => "sum", Avg => "avg", Max => "max", Min => "min" });

/// A validated expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Series(String),
    SeriesMath {
        op: MathOp,
        left: Box<Expr>,
        right: Box<Expr>,
        scale: Option<f64>,
    },
    Window {
        op: WindowFn,
        series: Box<Expr>,
        window: u32,
    },
    Composite {
        op: CompositeOp,
        operands: Vec<Expr>,
    },
}

impl Expr {
    /// The kind of an inner node; `None` for a series leaf.
    pub fn kind(&self) -> Option<ExpressionType> {
        match self {
            Expr::Series(_) => None,
            Expr::SeriesMath { .. } => Some(ExpressionType::SeriesMath),
            Expr::Window { .. } => Some(ExpressionType::WindowOp),
            Expr::Composite { .. } => Some(ExpressionType::Composite),
        }
    }

    /// Every series referenced anywhere in the tree, sorted and distinct.
    pub fn referenced_series(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match node {
                Expr::Series(code) => {
                    out.insert(code.clone());
                }
                Expr::SeriesMath { left, right, .. } => {
                    stack.push(left);
                    stack.push(right);
                }
                Expr::Window { series, .. } => stack.push(series),
                Expr::Composite { operands, .. } => stack.extend(operands.iter()),
            }
        }
        out
    }

    /// The canonical JSON form (leaves written as `seriesCode`).
    pub fn to_json(&self) -> Value {
        match self {
            Expr::Series(code) => serde_json::json!({ "seriesCode": code }),
            Expr::SeriesMath {
                op,
                left,
                right,
                scale,
            } => {
                let mut m = Map::new();
                m.insert("op".into(), op.as_str().into());
                m.insert("left".into(), left.to_json());
                m.insert("right".into(), right.to_json());
                if let Some(s) = scale {
                    m.insert("scale".into(), (*s).into());
                }
                Value::Object(m)
            }
            Expr::Window { op, series, window } => serde_json::json!({
                "op": op.as_str(), "series": series.to_json(), "window": window
            }),
            Expr::Composite { op, operands } => serde_json::json!({
                "op": op.as_str(),
                "operands": operands.iter().map(Expr::to_json).collect::<Vec<_>>()
            }),
        }
    }
}

/// Parses a metric's `expression_json` and checks that its root kind equals
/// `expression_type`. `path` prefixes every problem (e.g. `metrics[3].expression_json`).
pub fn parse_metric_expression(
    expression_type: ExpressionType,
    json: &Value,
    path: &str,
) -> Result<Expr, Vec<Problem>> {
    let mut problems = Vec::new();
    let expr = parse_node(json, path, 1, &mut problems);
    if let Some(expr) = &expr {
        if expr.kind() != Some(expression_type) {
            let found = expr.kind().map_or("a series reference", |k| k.as_str());
            problems.push(Problem::new(
                path,
                format!("root is {found} but expression_type is {expression_type}"),
            ));
        }
    }
    match expr {
        Some(e) if problems.is_empty() => Ok(e),
        _ => Err(problems),
    }
}

fn parse_node(v: &Value, path: &str, depth: usize, problems: &mut Vec<Problem>) -> Option<Expr> {
    if depth > MAX_DEPTH {
        problems.push(Problem::new(
            path,
            format!("expression is nested deeper than {MAX_DEPTH} levels"),
        ));
        return None;
    }
    let Some(obj) = v.as_object() else {
        problems.push(Problem::new(path, "must be an object"));
        return None;
    };
    if let Some(leaf) = parse_leaf(obj, path, problems) {
        return leaf;
    }
    let has = |k: &str| obj.contains_key(k);
    if has("left") || has("right") {
        parse_series_math(obj, path, depth, problems)
    } else if has("series") || has("window") {
        parse_window(obj, path, depth, problems)
    } else if has("operands") {
        parse_composite(obj, path, depth, problems)
    } else {
        problems.push(Problem::new(
            path,
            "must be a series reference ({\"seriesCode\": …}) or a series_math \
             (left, right), window_op (series, window) or composite (operands) node",
        ));
        None
    }
}

/// `Some(result)` when the object is a leaf (has a series code key).
fn parse_leaf(
    obj: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<Expr>> {
    let (key, value) = ["seriesCode", "series_code"]
        .iter()
        .find_map(|k| obj.get(*k).map(|v| (*k, v)))?;
    match value.as_str().map(str::trim) {
        Some(code) if !code.is_empty() => Some(Some(Expr::Series(code.to_string()))),
        _ => {
            problems.push(Problem::new(
                format!("{path}.{key}"),
                "must be a non-empty string",
            ));
            Some(None)
        }
    }
}

fn parse_op<T>(
    obj: &Map<String, Value>,
    path: &str,
    parse: fn(&str) -> Option<T>,
    choices: String,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let op = obj.get("op").and_then(Value::as_str).and_then(parse);
    if op.is_none() {
        problems.push(Problem::new(
            format!("{path}.op"),
            format!("must be one of {choices}"),
        ));
    }
    op
}

fn child(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    let child_path = format!("{path}.{key}");
    match obj.get(key) {
        Some(v) => parse_node(v, &child_path, depth + 1, problems),
        None => {
            problems.push(Problem::new(child_path, "is required"));
            None
        }
    }
}

fn parse_series_math(
    obj: &Map<String, Value>,
    path: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    let op = parse_op(obj, path, MathOp::parse, MathOp::choices(), problems);
    let left = child(obj, "left", path, depth, problems);
    let right = child(obj, "right", path, depth, problems);
    let scale = match obj.get("scale") {
        None | Some(Value::Null) => Some(None),
        Some(v) => match v.as_f64() {
            Some(s) if s.is_finite() && s > 0.0 => Some(Some(s)),
            _ => {
                problems.push(Problem::new(
                    format!("{path}.scale"),
                    "must be a positive number",
                ));
                None
            }
        },
    };
    Some(Expr::SeriesMath {
        op: op?,
        left: Box::new(left?),
        right: Box::new(right?),
        scale: scale?,
    })
}

fn parse_window(
    obj: &Map<String, Value>,
    path: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    let op = parse_op(obj, path, WindowFn::parse, WindowFn::choices(), problems);
    let series = child(obj, "series", path, depth, problems);
    let window = obj
        .get("window")
        .and_then(Value::as_u64)
        .filter(|w| *w >= 1)
        .and_then(|w| u32::try_from(w).ok());
    if window.is_none() {
        problems.push(Problem::new(
            format!("{path}.window"),
            format!("must be an integer >= 1 (at most {})", u32::MAX),
        ));
    }
    Some(Expr::Window {
        op: op?,
        series: Box::new(series?),
        window: window?,
    })
}

fn parse_composite(
    obj: &Map<String, Value>,
    path: &str,
    depth: usize,
    problems: &mut Vec<Problem>,
) -> Option<Expr> {
    let op = parse_op(
        obj,
        path,
        CompositeOp::parse,
        CompositeOp::choices(),
        problems,
    );
    let operands_path = format!("{path}.operands");
    let operands = match obj.get("operands").and_then(Value::as_array) {
        Some(items) if !items.is_empty() => {
            let parsed: Vec<Option<Expr>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    parse_node(item, &format!("{operands_path}[{i}]"), depth + 1, problems)
                })
                .collect();
            parsed.into_iter().collect::<Option<Vec<_>>>()
        }
        _ => {
            problems.push(Problem::new(
                operands_path,
                "must be an array of at least one node",
            ));
            None
        }
    };
    Some(Expr::Composite {
        op: op?,
        operands: operands?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(t: ExpressionType, v: Value) -> Result<Expr, Vec<Problem>> {
        parse_metric_expression(t, &v, "expression_json")
    }

    #[test]
    fn both_leaf_key_styles_are_accepted() {
        let e = parse(
            ExpressionType::SeriesMath,
            json!({"op": "ratio", "left": {"seriesCode": "A"}, "right": {"series_code": "B"}}),
        )
        .unwrap();
        let codes: Vec<_> = e.referenced_series().into_iter().collect();
        assert_eq!(codes, vec!["A", "B"]);
    }

    #[test]
    fn kinds_nest_in_one_another() {
        let v = json!({"op": "avg", "operands": [
            {"op": "lag", "series": {"op": "subtract", "left": {"seriesCode": "A"},
                                      "right": {"seriesCode": "B"}}, "window": 1},
            {"seriesCode": "C"}]});
        let e = parse(ExpressionType::Composite, v).unwrap();
        assert_eq!(e.referenced_series().len(), 3);
    }

    #[test]
    fn root_kind_must_equal_expression_type() {
        let err = parse(
            ExpressionType::WindowOp,
            json!({"op": "sum", "operands": [{"seriesCode": "A"}]}),
        )
        .unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.contains("root is composite"), "{err:?}");
        let err = parse(ExpressionType::Composite, json!({"seriesCode": "A"})).unwrap_err();
        assert!(err[0].message.contains("series reference"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let err = parse(
            ExpressionType::SeriesMath,
            json!({"op": "pow", "left": {"op": "sma", "series": {"seriesCode": ""}, "window": 0},
                   "right": 3, "scale": -1}),
        )
        .unwrap_err();
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(
                &"expression_json.op: must be one of ratio|multiply|subtract|add".to_string()
            ),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("expression_json.left.window: must be an integer >= 1")),
            "{text:?}"
        );
        assert!(text.contains(
            &"expression_json.left.series.seriesCode: must be a non-empty string".to_string()
        ));
        assert!(text.contains(&"expression_json.right: must be an object".to_string()));
        assert!(text.contains(&"expression_json.scale: must be a positive number".to_string()));
    }

    #[test]
    fn window_must_be_an_integer() {
        for bad in [json!(1.5), json!("3"), json!(-1), json!(0), json!(null)] {
            let v = json!({"op": "sma", "series": {"seriesCode": "A"}, "window": bad});
            assert!(parse(ExpressionType::WindowOp, v).is_err());
        }
    }

    #[test]
    fn depth_is_bounded() {
        // A leaf under MAX_DEPTH - 1 inner nodes: exactly MAX_DEPTH levels.
        let mut v = json!({"seriesCode": "A"});
        for _ in 1..MAX_DEPTH {
            v = json!({"op": "sum", "operands": [v]});
        }
        assert!(parse(ExpressionType::Composite, v.clone()).is_ok());
        let deeper = json!({"op": "sum", "operands": [v]});
        let err = parse(ExpressionType::Composite, deeper).unwrap_err();
        assert!(err[0].message.contains("deeper than 64"));
    }

    #[test]
    fn composite_needs_at_least_one_operand() {
        let err = parse(
            ExpressionType::Composite,
            json!({"op": "sum", "operands": []}),
        )
        .unwrap_err();
        assert_eq!(err[0].path, "expression_json.operands");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            prop_oneof![
                Just("ratio".to_string()),
                Just("sum".to_string()),
                Just("sma".to_string()),
                Just("A".to_string()),
                ".{0,4}"
            ]
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(8, 64, 6, |inner| {
            let keys = prop_oneof![
                Just("op".to_string()),
                Just("left".to_string()),
                Just("right".to_string()),
                Just("series".to_string()),
                Just("window".to_string()),
                Just("operands".to_string()),
                Just("seriesCode".to_string()),
                Just("series_code".to_string()),
                Just("scale".to_string()),
                "[a-z]{1,3}"
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_expr() -> impl Strategy<Value = Expr> {
        let leaf = "[A-Z][A-Z_]{0,6}".prop_map(Expr::Series);
        leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                (
                    prop::sample::select(MathOp::ALL),
                    inner.clone(),
                    inner.clone(),
                    prop::option::of(1u32..1000)
                )
                    .prop_map(|(op, l, r, s)| Expr::SeriesMath {
                        op,
                        left: Box::new(l),
                        right: Box::new(r),
                        scale: s.map(f64::from)
                    }),
                (
                    prop::sample::select(WindowFn::ALL),
                    inner.clone(),
                    1u32..400
                )
                    .prop_map(|(op, s, w)| Expr::Window {
                        op,
                        series: Box::new(s),
                        window: w
                    }),
                (
                    prop::sample::select(CompositeOp::ALL),
                    prop::collection::vec(inner, 1..4)
                )
                    .prop_map(|(op, operands)| Expr::Composite { op, operands }),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            for t in ExpressionType::ALL {
                let _ = parse_metric_expression(t, &v, "x");
            }
        }

        #[test]
        fn valid_trees_round_trip(e in arb_expr()) {
            if let Some(kind) = e.kind() {
                let back = parse_metric_expression(kind, &e.to_json(), "x").unwrap();
                prop_assert_eq!(back, e);
            }
        }
    }
}
