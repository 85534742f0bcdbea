//! Trigger policies end to end through LocalStack, with the workers, the
//! simulated runner and the CLI as real processes (docs/semantics.md,
//! "Trigger policies"). The workers decide on the system clock; timers are
//! a few seconds long and the tests poll until a deadline.

use std::time::Duration;

use orchestrator_core::store::stats;
use orchestrator_tests::aws::Stack;
use orchestrator_tests::fixtures::{apply, base_catalog, update_body};
use orchestrator_tests::invariants::assert_invariants;
use orchestrator_tests::process::{cli, Process};
use orchestrator_tests::{eventually, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

/// The base catalog with `trigger` on the metrics with these codes.
fn catalog(codes: &[&str], policy: Value) -> Value {
    let mut c = base_catalog();
    for m in c["metrics"].as_array_mut().unwrap() {
        if codes.iter().any(|code| m["code"] == *code) {
            m["trigger"] = policy.clone();
        }
    }
    c
}

/// Workers with a one-second sweep.
fn env(stack: &Stack, db: &TestDb) -> Vec<(String, String)> {
    let mut env = stack.env(db);
    env.push(("FRESHNESS_SWEEP_SECS".into(), "1".into()));
    env
}

/// A database with `catalog`, a stack, both workers and the simulated
/// runner: what most tests here start from.
async fn fleet(
    label: &str,
    catalog: &Value,
) -> (TestDb, Stack, Vec<(String, String)>, Vec<Process>) {
    let db = TestDb::new(&format!("pe2e_{label}")).await;
    apply(&db, catalog).await;
    let stack = Stack::new(&format!("p{label}"), false).await;
    let env = env(&stack, &db);
    let processes = vec![
        Process::spawn("projection-update-worker", &env, &[]),
        Process::spawn("run-lifecycle-worker", &env, &[]),
        Process::spawn(
            "orchestrator",
            &env,
            &["simulate-runner", "--duration-ms", "200"],
        ),
    ];
    (db, stack, env, processes)
}

async fn send(stack: &Stack, bodies: &[String]) {
    for chunk in bodies.chunks(10) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        stack
            .send_batch(&stack.names.projection_updates_queue_url, &refs)
            .await;
    }
}

async fn processed(db: &TestDb, n: i64) {
    eventually(WAIT, &format!("{n} updates processed"), || async {
        (stats::processed_updates(&db.pool).await.unwrap_or(0) >= n).then_some(())
    })
    .await;
}

/// Waits for the metric's runs to be `want` succeeded and none pending,
/// and returns their request payloads, oldest first.
async fn succeeded(db: &TestDb, code: &str, want: i64) -> Vec<Value> {
    eventually(WAIT, &format!("{want} run(s) of {code} succeeded"), || async {
        let done = db
            .count(&format!(
                "SELECT count(*) FROM metric_runs WHERE metric_code = '{code}' AND status = 'succeeded'"
            ))
            .await;
        (done >= want).then_some(())
    })
    .await;
    let runs = db
        .strings(&format!(
            "SELECT r.id FROM outbox o JOIN metric_runs r ON r.id = o.run_id
              WHERE r.metric_code = '{code}' ORDER BY r.created_at, r.id"
        ))
        .await;
    let mut requests = Vec::new();
    for run in runs {
        requests.push(orchestrator_tests::fixtures::request_of(db, &run).await);
    }
    requests
}

#[tokio::test]
async fn a_grace_deadline_requests_a_degraded_run_that_the_simulated_runner_completes() {
    let (db, stack, _, _fleet) = fleet(
        "grace",
        &catalog(&["m.pair"], json!({"grace": {"after": "3s"}})),
    )
    .await;
    // d2's only update is ten days old (required_days 7): m.pair waits.
    send(&stack, &[update_body("d2", "old")]).await;
    processed(&db, 1).await;
    db.exec("UPDATE dataset_updates SET created_at = now() - interval '10 days'")
        .await;
    db.exec("DELETE FROM metric_runs WHERE metric_code = 'm.pair'")
        .await;
    send(&stack, &[update_body("d1", "v1")]).await;
    let requests = succeeded(&db, "m.pair", 1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["trigger"]["degraded"], json!(true));
    assert_eq!(requests[0]["trigger"]["stale"], json!(["d2"]));
    assert_eq!(
        db.string("SELECT degraded::text FROM metric_runs WHERE metric_code = 'm.pair'")
            .await,
        r#"{"stale": ["d2"], "missing": []}"#
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_settle_window_turns_a_burst_of_20_updates_into_one_run_listing_all_20() {
    let (db, stack, _, _fleet) = fleet(
        "settle",
        &catalog(
            &["m.single"],
            json!({"settle": {"quiet": "8s", "max_wait": "2m"}}),
        ),
    )
    .await;
    // The quiet period (8 s) is far longer than the burst takes to process,
    // so even a slow machine does not close the window mid-burst.
    let bodies: Vec<String> = (0..20)
        .map(|i| update_body("d1", &format!("v{i}")))
        .collect();
    send(&stack, &bodies).await;
    processed(&db, 20).await;
    let requests = succeeded(&db, "m.single", 1).await;
    assert_eq!(requests.len(), 1, "one run for the burst");
    let folded = requests[0]["trigger"]["folded"].as_array().unwrap();
    assert_eq!(folded.len(), 20, "{folded:?}");
    let ids: Vec<String> = db
        .strings("SELECT id FROM dataset_updates WHERE dataset_id = 'd1' ORDER BY created_at, id")
        .await;
    let listed: Vec<String> = folded
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ids, "every update of the burst, in order");
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.single' AND status = 'pending_dependencies'")
            .await,
        0,
        "nothing left waiting"
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn an_optional_input_runs_without_waiting() {
    let (db, stack, _, _fleet) = fleet(
        "optional",
        &catalog(&["m.pair"], json!({"inputs": {"d2": "optional"}})),
    )
    .await;
    send(&stack, &[update_body("d1", "v1")]).await;
    let requests = succeeded(&db, "m.pair", 1).await;
    assert_eq!(requests[0]["trigger"]["missing"], json!(["d2"]));
    assert_eq!(
        requests[0]["catalog"]["datasets"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["d1"]
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn hold_then_resume_gives_exactly_one_run() {
    let (db, stack, env, _fleet) = fleet("hold", &base_catalog()).await;
    let out = cli(&env, &["metrics", "hold", "m.single", "--by", "alice"]);
    assert!(out.contains("held metric m.single"), "{out}");
    send(&stack, &["v1", "v2", "v3"].map(|v| update_body("d1", v))).await;
    processed(&db, 3).await;
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.single' AND requested_at IS NOT NULL")
            .await,
        0,
        "held: nothing requested"
    );
    let out = cli(&env, &["metrics", "resume", "m.single"]);
    assert!(out.contains("queued run"), "{out}");
    let requests = succeeded(&db, "m.single", 1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["trigger"]["folded"].as_array().unwrap().len(),
        3
    );
    let out = cli(&env, &["metrics", "resume", "m.single"]);
    assert!(out.contains("was not held"), "{out}");
    assert_invariants(&db).await;
}

#[tokio::test]
async fn two_workers_racing_on_one_deadline_request_each_run_once_and_kill_9_loses_nothing() {
    let db = TestDb::new("pe2e_race").await;
    let codes = ["m.single", "m.pair", "m.triple", "m.nodays"];
    apply(
        &db,
        &catalog(&codes, json!({"settle": {"quiet": "8s", "max_wait": "8s"}})),
    )
    .await;
    let stack = Stack::new("prace", false).await;
    let env = env(&stack, &db);
    let mut first = Process::spawn("projection-update-worker", &env, &[]);
    send(
        &stack,
        &[
            update_body("d1", "v1"),
            update_body("d2", "v1"),
            update_body("d3", "v1"),
        ],
    )
    .await;
    processed(&db, 3).await;
    // The windows (8 s) stay open well past the kill on a slow machine.
    // Killed with the windows open: their runs are only in PostgreSQL.
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE status = 'pending_dependencies'")
            .await,
        4
    );
    // Two workers sweep every second, racing for each deadline.
    let _a = Process::spawn("projection-update-worker", &env, &[]);
    let _b = Process::spawn("projection-update-worker", &env, &[]);
    eventually(WAIT, "the four runs requested and published", || async {
        let published = db
            .count(
                "SELECT count(*) FROM outbox WHERE run_id IS NOT NULL AND published_at IS NOT NULL",
            )
            .await;
        (published >= 4).then_some(())
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE requested_at IS NOT NULL")
            .await,
        4,
        "each metric's run once"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE run_id IS NOT NULL")
            .await,
        4
    );
    assert_invariants(&db).await;
}
