//! A definition change end to end on LocalStack, with the workers, the
//! simulated runner and the CLI as real processes (docs/semantics.md,
//! "Definition versions"): the dry run's diff, two concurrent applies and
//! two projection-update workers requesting the re-run once, the alert on
//! the alerts queue, the stale list, and every request read as the
//! reference runner reads it.

use std::time::Duration;

use orchestrator_tests::aws::{alerts_until, receive, Stack};
use orchestrator_tests::fixtures::{apply, base_catalog, request_text, update_body};
use orchestrator_tests::process::{cli, Process};
use orchestrator_tests::reference::as_the_runner_reads;
use orchestrator_tests::{eventually, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// m.pair re-runs on a change, m.single does not (`on_change: none`).
fn catalog(scale: i64, single_op: &str) -> Value {
    let mut c = base_catalog();
    c["metrics"][0]["expression_json"]["op"] = json!(single_op);
    c["metrics"][0]["on_change"] = json!("none");
    c["metrics"][1]["expression_json"]["scale"] = json!(scale);
    c["metrics"][1]["on_change"] = json!("rerun");
    c
}

/// (id, status, definition version) of a metric's runs, oldest first.
async fn runs(db: &TestDb, code: &str) -> Vec<(String, String, Option<i32>)> {
    db.client()
        .await
        .query(
            "SELECT id, status, definition_version FROM metric_runs WHERE metric_code = $1 ORDER BY created_at, id",
            &[&code],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

async fn succeeded(db: &TestDb, code: &str, n: usize) -> Vec<(String, String, Option<i32>)> {
    eventually(WAIT, &format!("{n} succeeded run(s) of {code}"), || async {
        let r = runs(db, code).await;
        (r.iter().filter(|x| x.1 == "succeeded").count() >= n).then_some(r)
    })
    .await
}

#[tokio::test]
async fn a_definition_change_reruns_once_alerts_and_the_unchanged_runner_reads_every_request() {
    let db = TestDb::new("defs_e2e").await;
    apply(&db, &catalog(100, "sum")).await;
    let stack = Stack::new("defs", false).await;
    let env = stack.env(&db);
    let _workers = [
        Process::spawn("projection-update-worker", &env, &[]),
        Process::spawn("projection-update-worker", &env, &[]),
        Process::spawn("run-lifecycle-worker", &env, &[]),
        Process::spawn(
            "orchestrator",
            &env,
            &["simulate-runner", "--duration-ms", "200"],
        ),
    ];
    for body in [update_body("d1", "v1"), update_body("d2", "v1")] {
        stack
            .send(&stack.names.projection_updates_queue_url, &body)
            .await;
    }
    succeeded(&db, "m.pair", 1).await;
    succeeded(&db, "m.single", 1).await;

    let file =
        std::env::temp_dir().join(format!("defs-e2e-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, catalog(1000, "avg").to_string()).unwrap();
    let path = file.to_str().unwrap();
    let dry = cli(&env, &["catalog", "apply", path, "--dry-run"]);
    assert!(
        dry.contains(
            "m.pair: definition v1 → v2 (expression changed: scale 100 → 1000); on_change: rerun"
        ),
        "{dry}"
    );
    assert!(
        dry.contains("m.single: definition v1 → v2 (expression changed: op \"sum\" → \"avg\"); on_change: none"),
        "{dry}"
    );
    // Two operators apply the same change at once.
    let apply_as_ana = || cli(&env, &["catalog", "apply", path, "--by", "ana"]);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(apply_as_ana);
        let b = s.spawn(apply_as_ana);
        (a.join().unwrap(), b.join().unwrap())
    });
    let reported = [&a, &b]
        .iter()
        .filter(|t| t.contains("m.pair: definition v1 → v2"))
        .count();
    assert_eq!(reported, 1, "one apply makes the version:\n{a}\n{b}");

    let pair = succeeded(&db, "m.pair", 2).await;
    assert_eq!(pair.len(), 2, "one re-run: {pair:?}");
    assert_eq!((pair[0].2, pair[1].2), (Some(1), Some(2)), "{pair:?}");
    let single = runs(&db, "m.single").await;
    assert_eq!(
        single.len(),
        1,
        "on_change none requests nothing: {single:?}"
    );

    let mut alerts: Vec<Value> = alerts_until(&stack, WAIT, |a| {
        a.iter()
            .filter(|x| x["type"] == "metric_definition_changed")
            .count()
            >= 2
    })
    .await
    .into_iter()
    .filter(|x| x["type"] == "metric_definition_changed")
    .collect();
    alerts.sort_by_key(|a| a["metricCode"].as_str().unwrap().to_string());
    assert_eq!(alerts[0]["metricCode"], "m.pair");
    assert_eq!(alerts[0]["outcome"], "run requested with v2");
    assert_eq!(alerts[0]["runId"], pair[1].0.as_str());
    assert_eq!(alerts[0]["appliedBy"], "ana");
    assert_eq!(alerts[1]["metricCode"], "m.single");
    assert_eq!(
        alerts[1]["outcome"],
        "marked stale; nothing requested (on_change: none)"
    );
    let more = receive(
        &stack.aws.sqs,
        &stack.names.alerts_queue_url,
        10,
        Duration::from_secs(3),
    )
    .await;
    assert!(
        more.iter().all(|m| !m
            .body()
            .unwrap_or_default()
            .contains("metric_definition_changed")),
        "a change alerted twice"
    );

    let stale = cli(
        &env,
        &["metrics", "stale", "--reason", "definition_changed"],
    );
    assert!(
        stale.contains("m.single\tdefinition_changed (v1 → v2)"),
        "{stale}"
    );
    assert!(!stale.contains("m.pair"), "m.pair re-ran: {stale}");
    assert!(
        stale.contains("1 stale metric(s) (definition_changed)"),
        "{stale}"
    );

    // Every request of both versions, as the reference runner reads it.
    let mut bodies = Vec::new();
    for (id, _, _) in pair.iter().chain(single.iter()) {
        bodies.push(request_text(&db, id).await.expect("a request"));
    }
    assert!(
        bodies[1].contains("\"definitionVersion\":2"),
        "{}",
        bodies[1]
    );
    let (ok, verdicts) = as_the_runner_reads(&bodies);
    assert!(ok, "{verdicts}");
    assert_eq!(
        verdicts.lines().filter(|l| l.starts_with("ok ")).count(),
        3,
        "{verdicts}"
    );
    // The reading refuses what the runner would.
    let (ok, verdicts) = as_the_runner_reads(&[bodies[1].replace("\"runId\"", "\"run\"")]);
    assert!(!ok && verdicts.contains("runId"), "{verdicts}");
}
