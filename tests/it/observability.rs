//! The observability pack in infra/observability is tested like code: the
//! Prometheus alert rules pass `promtool check rules` and their unit tests,
//! and every metric the Grafana dashboard or a rule queries is one that a
//! running worker or `orchestrator serve` exports.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use orchestrator_core::app::projection_update::process;
use orchestrator_tests::aws::Stack;
use orchestrator_tests::fixtures::{apply, base_catalog, update};
use orchestrator_tests::http::get;
use orchestrator_tests::process::Process;
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

fn pack() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/observability")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(pack().join("prometheus"))
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}: install Debian's prometheus package (tests/run.sh does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_alert_rules_are_valid_and_pass_their_unit_tests() {
    let checked = promtool(&["check", "rules", "alerts.yml"]);
    assert!(checked.contains("SUCCESS: 9 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// `orchestrator_…` names in `text`, a histogram's `_bucket` / `_sum` /
/// `_count` series named as such.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("orchestrator_") {
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if i > 0 && text[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        out.insert(name);
    }
    out
}

/// Every query of the dashboard and the rules.
fn queried() -> BTreeSet<String> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(pack().join("grafana/metric-orchestrator.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push_str(t["expr"].as_str().expect("a query"));
            exprs.push('\n');
        }
    }
    let rules = std::fs::read_to_string(pack().join("prometheus/alerts.yml")).unwrap();
    let rule_exprs: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter(|l| !l.contains("description:") && !l.contains("summary:"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut all = names(&exprs);
    all.extend(names(&rule_exprs));
    all
}

#[tokio::test]
async fn every_metric_the_dashboard_and_rules_query_is_exported() {
    let wanted = queried();
    assert!(wanted.len() >= 15, "{wanted:?}");
    let stack = Stack::new("observe", false).await;
    let db = TestDb::new("observe").await;
    let mut catalog = base_catalog();
    catalog["datasets"][0]["expected_every"] = json!("1h");
    catalog["metrics"][0]["max_age"] = json!({"fail": "1h"});
    apply(&db, &catalog).await;
    db.exec(
        "UPDATE datasets SET expectation_set_at = now() - interval '2 hours';
         UPDATE metrics SET expectation_set_at = now() - interval '2 hours'",
    )
    .await;
    let mut env = stack.env(&db);
    env.push(("FRESHNESS_SWEEP_SECS".into(), "1".into()));
    let updates = Process::spawn("projection-update-worker", &env, &[]);
    let lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    stack
        .send(q, &update("d2", "v1").to_json().to_string())
        .await;
    stack.send(q, "not json").await;
    let serve_env = [
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("API_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("OUTPUT_BUCKET".to_string(), "observe-outputs".to_string()),
        ("LOG_FORMAT".to_string(), "json".to_string()),
    ];
    let serve = Process::spawn("orchestrator", &serve_env, &["serve"]);
    let serve_port = serve.bound_port("operator API and console at").await;
    get(serve_port, "/api/v1/metrics")
        .await
        .expect("the API answers");
    // A run request published (update-to-request latency) needs d1 too.
    process(&db.ctx(), &update("d3", "v1")).await.unwrap();
    stack
        .send(q, &update("d1", "v1").to_json().to_string())
        .await;

    let ports = [
        updates.bound_port("ops endpoints listening").await,
        lifecycle.bound_port("ops endpoints listening").await,
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut text = String::new();
        for port in ports.into_iter().chain([serve_port]) {
            text.push_str(&get(port, "/metrics").await.unwrap_or_default());
        }
        let missing: Vec<String> = wanted.difference(&names(&text)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queried by the dashboard or a rule but not exported: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
