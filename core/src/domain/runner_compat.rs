//! Catalog warnings: expressions this fleet accepts but the reference runner
//! (metrics-engine--dp-worker) cannot compute. `catalog validate|apply` print
//! them and exit 0; `--strict` makes them errors.

use serde_json::Value;

use super::expression::{parse_metric_expression, Expr};
use super::problem::Problem;

/// The reference runner combines composite operands pairwise: it needs two.
const MIN_COMPOSITE_OPERANDS: usize = 2;

/// One warning per node of every metric's expression that the reference
/// runner cannot compute, with its path in the catalog document. Metrics
/// whose expression does not parse are left to validation.
pub fn warnings(doc: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    let Some(metrics) = doc.get("metrics").and_then(Value::as_array) else {
        return out;
    };
    for (i, m) in metrics.iter().enumerate() {
        let path = format!("metrics[{i}].expression_json");
        let (Some(ty), Some(json)) = (
            m.get("expression_type")
                .and_then(Value::as_str)
                .and_then(|t| t.parse().ok()),
            m.get("expression_json"),
        ) else {
            continue;
        };
        if let Ok(expr) = parse_metric_expression(ty, json, &path) {
            walk(&expr, &path, &mut out);
        }
    }
    out
}

fn walk(e: &Expr, path: &str, out: &mut Vec<Problem>) {
    match e {
        Expr::Series(_) => {}
        Expr::SeriesMath { left, right, .. } => {
            walk(left, &format!("{path}.left"), out);
            walk(right, &format!("{path}.right"), out);
        }
        Expr::Window { series, .. } => walk(series, &format!("{path}.series"), out),
        Expr::Composite { operands, .. } => {
            if operands.len() < MIN_COMPOSITE_OPERANDS {
                out.push(Problem::new(
                    format!("{path}.operands"),
                    format!(
                        "a composite with {} operand(s): the reference runner \
                         (metrics-engine--dp-worker) needs at least {MIN_COMPOSITE_OPERANDS}",
                        operands.len()
                    ),
                ));
            }
            for (i, o) in operands.iter().enumerate() {
                walk(o, &format!("{path}.operands[{i}]"), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(ty: &str, expr: Value) -> Value {
        json!({"metrics": [{"id": "m", "code": "m", "expression_type": ty, "expression_json": expr}]})
    }

    #[test]
    fn composites_with_fewer_than_two_operands_are_flagged_wherever_they_are() {
        let s = |c: &str| json!({"seriesCode": c});
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "composite",
                json!({"op": "sum", "operands": [s("A"), s("B")]}),
                vec![],
            ),
            (
                "composite",
                json!({"op": "sum", "operands": [s("A")]}),
                vec!["metrics[0].expression_json.operands"],
            ),
            (
                "series_math",
                json!({"op": "ratio", "left": {"op": "avg", "operands": [s("A")]}, "right": s("B")}),
                vec!["metrics[0].expression_json.left.operands"],
            ),
            (
                "window_op",
                json!({"op": "lag", "window": 1, "series": {"op": "sum", "operands": [s("A")]}}),
                vec!["metrics[0].expression_json.series.operands"],
            ),
            (
                "composite",
                json!({"op": "sum", "operands": [{"op": "max", "operands": [s("A")]}]}),
                vec![
                    "metrics[0].expression_json.operands",
                    "metrics[0].expression_json.operands[0].operands",
                ],
            ),
            // Not parseable: left to validation, no warning.
            ("composite", json!({"op": "sum", "operands": []}), vec![]),
            ("bogus", json!({"op": "sum", "operands": [s("A")]}), vec![]),
        ];
        for (ty, expr, want) in cases {
            let got: Vec<String> = warnings(&doc(ty, expr.clone()))
                .into_iter()
                .map(|p| p.path)
                .collect();
            assert_eq!(got, want, "{ty} {expr}");
        }
        assert!(warnings(&json!({"datasets": []})).is_empty());
        let w = warnings(&doc(
            "composite",
            json!({"op": "sum", "operands": [s("A")]}),
        ));
        assert!(w[0].message.contains("1 operand(s)"), "{}", w[0]);
    }
}
