//! Alerts end to end on LocalStack: the workers' freshness sweep and their
//! handlers queue alerts in the outbox, the relay publishes them to the
//! alerts topic, and a queue subscribed to it (raw delivery) receives one
//! message per transition — with two workers sweeping, and after a kill -9
//! between commit and publication.

use std::time::Duration;

use orchestrator_core::app::freshness::sweep;
use orchestrator_core::app::projection_update::process;
use orchestrator_tests::aws::{alerts_until, receive, Stack};
use orchestrator_tests::fixtures::{apply, base_catalog, update};
use orchestrator_tests::process::Process;
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// The base catalog with d1 expected every `every`.
fn expecting(every: &str) -> Value {
    let mut c = base_catalog();
    c["datasets"][0]["expected_every"] = json!(every);
    c
}

fn of_type<'a>(alerts: &'a [Value], t: &str) -> Vec<&'a Value> {
    alerts.iter().filter(|a| a["type"] == t).collect()
}

/// No two alerts are the same transition.
fn each_once(alerts: &[Value]) {
    let mut keys: Vec<&str> = alerts
        .iter()
        .map(|a| a["dedupKey"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "an alert sent twice: {alerts:#?}");
}

fn sweeping_env(stack: &Stack, db: &TestDb) -> Vec<(String, String)> {
    let mut env = stack.env(db);
    env.push(("FRESHNESS_SWEEP_SECS".into(), "1".into()));
    env
}

#[tokio::test]
async fn a_dataset_that_stops_arriving_alerts_late_once_then_on_time_once_with_two_workers() {
    let stack = Stack::new("alerts", false).await;
    let db = TestDb::new("alerts_e2e").await;
    apply(&db, &base_catalog()).await;
    let env = sweeping_env(&stack, &db);
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update("d1", "v1").to_json().to_string(),
        )
        .await;
    orchestrator_tests::eventually(Duration::from_secs(30), "d1's first update", || async {
        (db.count("SELECT count(*) FROM dataset_updates").await == 1).then_some(())
    })
    .await;
    // Expected from now on: late four seconds after that update.
    apply(&db, &expecting("4s")).await;
    let first = alerts_until(&stack, Duration::from_secs(60), |a| {
        !of_type(a, "dataset_late").is_empty()
    })
    .await;
    let late = of_type(&first, "dataset_late");
    assert_eq!(late.len(), 1, "{first:#?}");
    assert_eq!(late[0]["datasetId"], "d1");
    assert_eq!(late[0]["expectation"], "every 4s");

    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update("d1", "v2").to_json().to_string(),
        )
        .await;
    let mut all = first.clone();
    all.extend(
        alerts_until(&stack, Duration::from_secs(60), |a| {
            !of_type(a, "dataset_on_time").is_empty()
        })
        .await,
    );
    let on_time = of_type(&all, "dataset_on_time");
    assert_eq!(on_time.len(), 1, "{all:#?}");
    assert_eq!(on_time[0]["lateSince"], late[0]["lateSince"]);
    // Both workers sweep every second: the late period that ended was
    // alerted once and recovered once.
    let same_period = |t: &str| {
        of_type(&all, t)
            .iter()
            .filter(|a| a["lateSince"] == late[0]["lateSince"])
            .count()
    };
    assert_eq!(
        (same_period("dataset_late"), same_period("dataset_on_time")),
        (1, 1),
        "{all:#?}"
    );
    each_once(&all);
}

#[tokio::test]
async fn an_alert_committed_by_a_worker_killed_before_publishing_is_published_once_by_the_next() {
    let stack = Stack::new("alerts-kill", false).await;
    let db = TestDb::new("alerts_kill").await;
    apply(&db, &expecting("1h")).await;
    db.exec("UPDATE datasets SET expectation_set_at = now() - interval '2 hours'")
        .await;
    // What a worker killed with -9 right after the sweep's commit leaves:
    // the alert committed in the outbox and never published.
    let ctx = db.ctx().with_alerts(true);
    let committed = sweep(&ctx, None).await.unwrap();
    assert_eq!(committed.outbox_ids.len(), 1, "{committed:?}");
    let mut worker = Process::spawn("projection-update-worker", &sweeping_env(&stack, &db), &[]);
    let got = alerts_until(&stack, Duration::from_secs(60), |a| !a.is_empty()).await;
    assert_eq!(of_type(&got, "dataset_late").len(), 1, "{got:#?}");
    orchestrator_tests::eventually(
        Duration::from_secs(30),
        "the alert marked published",
        || async {
            (db.count(
                "SELECT count(*) FROM outbox WHERE alert_type IS NOT NULL AND published_at IS NULL",
            )
            .await
                == 0)
                .then_some(())
        },
    )
    .await;
    // A kill -9 now, and a new worker: nothing is sent again.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &worker.pid().to_string()])
        .status();
    worker.terminate(Duration::from_secs(5));
    let _next = Process::spawn("projection-update-worker", &sweeping_env(&stack, &db), &[]);
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    let later = receive(
        &stack.aws.sqs,
        &stack.names.alerts_queue_url,
        10,
        Duration::from_secs(4),
    )
    .await;
    assert!(later.is_empty(), "sent again: {later:?}");
}

#[tokio::test]
async fn a_dead_lettered_message_and_a_last_failed_attempt_each_alert_once_with_two_lifecycle_replicas(
) {
    let stack = Stack::new("alerts-dlq", false).await;
    let db = TestDb::new("alerts_dlq").await;
    apply(&db, &base_catalog()).await;
    let env = sweeping_env(&stack, &db);
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    // Two replicas of the lifecycle worker (ops on ephemeral ports): each
    // sweeps, and either may take each copy of the completion below.
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _lifecycle_2 = Process::spawn("run-lifecycle-worker", &env, &[]);
    stack
        .send(&stack.names.projection_updates_queue_url, "not json")
        .await;
    let got = alerts_until(&stack, Duration::from_secs(60), |a| !a.is_empty()).await;
    let dead = of_type(&got, "message_dead_lettered");
    assert_eq!(dead.len(), 1, "{got:#?}");
    assert_eq!(dead[0]["errorType"], "invalid_json");
    assert!(
        dead[0]["queue"]
            .as_str()
            .unwrap()
            .contains("projection-updates"),
        "{got:#?}"
    );

    // m.single runs once (max_attempts 1): its failure is final.
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update("d1", "v1").to_json().to_string(),
        )
        .await;
    let run_id =
        orchestrator_tests::eventually(Duration::from_secs(30), "m.single's run", || async {
            db.try_string("SELECT id FROM metric_runs WHERE metric_code = 'm.single'")
                .await
        })
        .await;
    let completed = json!({"type": "metric_run_completed", "runId": run_id, "status": "FAILURE",
                           "error": "division by zero"});
    stack
        .send(&stack.names.run_lifecycle_queue_url, &completed.to_string())
        .await;
    // Delivered twice: still one alert.
    stack
        .send(&stack.names.run_lifecycle_queue_url, &completed.to_string())
        .await;
    let got = alerts_until(&stack, Duration::from_secs(60), |a| {
        !of_type(a, "run_failed").is_empty()
    })
    .await;
    let failed = of_type(&got, "run_failed");
    assert_eq!(failed.len(), 1, "{got:#?}");
    assert_eq!(failed[0]["runId"], run_id.as_str());
    assert_eq!(failed[0]["error"], "division by zero");
    assert_eq!(
        (
            failed[0]["attempt"].as_i64(),
            failed[0]["maxAttempts"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert!(failed[0]["traceId"].is_string(), "{got:#?}");
    // Drained afterwards: nothing more arrives while both replicas go on
    // sweeping, and the outbox holds no alert left to publish.
    let more = receive(
        &stack.aws.sqs,
        &stack.names.alerts_queue_url,
        10,
        Duration::from_secs(5),
    )
    .await;
    assert!(more.is_empty(), "more alerts: {more:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox_messages WHERE alert_type IS NOT NULL AND published_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM outbox_messages WHERE alert_type = 'run_failed'")
            .await,
        1
    );
}
