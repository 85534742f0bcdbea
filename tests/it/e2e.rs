//! End to end through LocalStack, with the workers as real processes and
//! uniquely named queues, topics and buckets per test (docs/contracts.md, docs/semantics.md).

use std::time::Duration;

use orchestrator_tests::aws::{attributes, Stack};
use orchestrator_tests::fixtures::{db_with_catalog, runs_of, status_of, update_body};
use orchestrator_tests::process::Process;
use orchestrator_tests::{eventually, TestDb};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn outbox_payload(db: &TestDb, run_id: &str) -> Value {
    orchestrator_tests::fixtures::request_of(db, run_id).await
}

/// Sends d1/v1 (which completes m.single at once) and receives its run request.
async fn first_request(stack: &Stack) -> Vec<aws_sdk_sqs::types::Message> {
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update_body("d1", "v1"),
        )
        .await;
    stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await
}

async fn wait_status(db: &TestDb, run_id: &str, want: &str) {
    eventually(WAIT, &format!("run {run_id} to be {want}"), || async {
        (status_of(db, run_id).await == want).then_some(())
    })
    .await
}

#[tokio::test]
async fn an_update_produces_the_exact_run_request_on_the_run_requests_queue() {
    let db = db_with_catalog("e2e_request").await;
    let stack = Stack::new("request", false).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let got = first_request(&stack).await;
    assert_eq!(
        got.len(),
        1,
        "one run request (m.single) reaches the run-requests queue"
    );
    let body: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    let run_id = body["runId"].as_str().unwrap().to_string();
    assert_eq!(
        body,
        outbox_payload(&db, &run_id).await,
        "the published request is the committed one"
    );
    assert_eq!(body["metricCode"], "m.single");
    assert_eq!(
        body["catalog"]["datasets"]["d1"]["bucket"],
        "ingestor-datasets"
    );
    assert_eq!(
        body["output"]["basePath"],
        format!("s3://{}/metrics/m.single/", stack.names.output_bucket)
    );
    let attrs = attributes(&got[0]);
    assert_eq!(
        attrs.get("event_type").map(String::as_str),
        Some("metric_run_requested")
    );
    assert_eq!(
        attrs.get("metric_code").map(String::as_str),
        Some("m.single")
    );
    assert_eq!(attrs.get("run_id"), Some(&run_id));
    // The attributes the reference runner (metrics-engine--dp-worker) reads
    // and filters its subscription on.
    assert_eq!(
        attrs.get("type").map(String::as_str),
        Some("metric_run_requested")
    );
    assert_eq!(
        attrs.get("metricCode").map(String::as_str),
        Some("m.single")
    );
    wait_status(&db, &run_id, "dispatched").await;
}

#[tokio::test]
async fn sns_enveloped_updates_are_accepted_and_duplicates_produce_nothing_new() {
    let db = db_with_catalog("e2e_envelope").await;
    let stack = Stack::new("envelope", false).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let inner = update_body("d1", "v1");
    let envelope = json!({"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:aws:sns:us-east-1:000000000000:x",
                          "Message": inner}).to_string();
    stack
        .send(&stack.names.projection_updates_queue_url, &envelope)
        .await;
    assert_eq!(
        stack
            .receive(&stack.names.run_requests_queue_url, 1, WAIT)
            .await
            .len(),
        1
    );
    // The same update again, raw and enveloped: recorded once, nothing requested.
    stack
        .send(&stack.names.projection_updates_queue_url, &inner)
        .await;
    stack
        .send(&stack.names.projection_updates_queue_url, &envelope)
        .await;
    eventually(WAIT, "the duplicates to be consumed", || async {
        (stack.depth(&stack.names.projection_updates_queue_url).await == Some((0, 0))).then_some(())
    })
    .await;
    assert!(stack
        .receive(
            &stack.names.run_requests_queue_url,
            1,
            Duration::from_secs(2)
        )
        .await
        .is_empty());
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 1);
    assert_eq!(runs_of(&db, "m.single").await.len(), 1);
}

#[tokio::test]
async fn invalid_messages_are_dead_lettered_with_their_attributes_and_the_batch_goes_on() {
    let db = db_with_catalog("e2e_dlq").await;
    let stack = Stack::new("dlq", false).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let valid = update_body("d1", "v1");
    let wrong_event = json!({"event": "something_else", "dataset_id": "d1"}).to_string();
    let missing =
        json!({"event": "projection_update", "dataset_id": "d1", "projections_path": "p/"})
            .to_string();
    let ill_typed =
        json!({"event": "projection_update", "dataset_id": 7, "version_manifest_path": "m",
                           "projections_path": "p"})
        .to_string();
    let bodies = [
        "{not json",
        wrong_event.as_str(),
        valid.as_str(),
        missing.as_str(),
        ill_typed.as_str(),
    ];
    stack
        .send_batch(&stack.names.projection_updates_queue_url, &bodies)
        .await;
    let dead = stack
        .receive(&stack.names.projection_updates_dlq_url, 4, WAIT)
        .await;
    assert_eq!(dead.len(), 4, "every invalid message is dead-lettered");
    let mut by_body: Vec<(String, String)> = dead
        .iter()
        .map(|m| {
            (
                m.body().unwrap().to_string(),
                attributes(m).get("error_type").cloned().unwrap_or_default(),
            )
        })
        .collect();
    by_body.sort();
    let mut want = vec![
        ("{not json".to_string(), "invalid_json".to_string()),
        (wrong_event.clone(), "invalid_event".to_string()),
        (missing.clone(), "invalid_event".to_string()),
        (ill_typed.clone(), "invalid_event".to_string()),
    ];
    want.sort();
    assert_eq!(
        by_body, want,
        "bodies are kept unchanged, with their error type"
    );
    for m in &dead {
        let a = attributes(m);
        for k in [
            "error_message",
            "source_queue",
            "source_message_id",
            "receive_count",
            "failed_at",
        ] {
            assert!(
                a.get(k).is_some_and(|v| !v.is_empty()),
                "missing attribute {k}: {a:?}"
            );
        }
        assert_eq!(a["source_queue"], stack.names.projection_updates_queue_url);
    }
    // The valid message of the same batch was processed.
    assert_eq!(
        stack
            .receive(&stack.names.run_requests_queue_url, 1, WAIT)
            .await
            .len(),
        1
    );
    assert_eq!(runs_of(&db, "m.single").await.len(), 1);
}

#[tokio::test]
async fn lifecycle_events_drive_a_run_to_succeeded_and_invalid_ones_are_dead_lettered() {
    let db = db_with_catalog("e2e_lifecycle").await;
    let stack = Stack::new("lifecycle", false).await;
    let env = stack.env(&db);
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let got = first_request(&stack).await;
    let request: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    let run_id = request["runId"].as_str().unwrap();
    let q = &stack.names.run_lifecycle_queue_url;
    stack.send(q, &json!({"type": "metric_run_started", "runId": run_id, "startedAt": "2026-11-20T10:00:00Z"}).to_string()).await;
    wait_status(&db, run_id, "running").await;
    stack
        .send(
            q,
            &json!({"type": "metric_run_heartbeat", "runId": run_id, "progress": 40}).to_string(),
        )
        .await;
    stack
        .send(
            q,
            &json!({"type": "metric_run_heartbeat", "runId": run_id, "progress": 140}).to_string(),
        )
        .await;
    stack
        .send(
            q,
            &json!({"type": "metric_run_started", "runId": run_id, "startedAt": "not a time"})
                .to_string(),
        )
        .await;
    stack
        .send(
            q,
            &json!({"type": "metric_run_exploded", "runId": run_id}).to_string(),
        )
        .await;
    stack
        .send(q, &json!({"type": "metric_run_completed", "runId": run_id, "metricCode": "m.single", "status": "SUCCESS",
                          "versionTs": "2026-11-20", "outputManifest": "s3://out/m.single/manifest.json",
                          "rowCount": 1234, "error": null}).to_string())
        .await;
    wait_status(&db, run_id, "succeeded").await;
    let dead = stack
        .receive(&stack.names.run_lifecycle_dlq_url, 3, WAIT)
        .await;
    let mut kinds: Vec<String> = dead
        .iter()
        .map(|m| attributes(m)["error_type"].clone())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec!["invalid_event", "invalid_event", "invalid_event"]
    );
    let row_count: Option<i64> = db
        .client()
        .await
        .query_one(
            "SELECT row_count FROM metric_runs WHERE id = $1",
            &[&run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(row_count, Some(1234));
}

#[tokio::test]
async fn sigterm_stops_the_worker_cleanly_with_exit_code_zero() {
    let db = db_with_catalog("e2e_sigterm").await;
    let stack = Stack::new("sigterm", false).await;
    let mut worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update_body("d1", "v1"),
        )
        .await;
    assert_eq!(
        stack
            .receive(&stack.names.run_requests_queue_url, 1, WAIT)
            .await
            .len(),
        1
    );
    let status = worker
        .terminate(Duration::from_secs(25))
        .expect("the worker exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test]
async fn fifo_topic_and_queues_carry_group_and_deduplication_ids() {
    let db = db_with_catalog("e2e_fifo").await;
    let stack = Stack::new("fifo", true).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let got = first_request(&stack).await;
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(got[0].body().unwrap()).unwrap();
    assert_eq!(body["messageGroupId"], "m.single");
    assert_eq!(body["messageDeduplicationId"], body["runId"]);
    let sys = got[0].attributes().unwrap();
    assert_eq!(
        sys.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
            .map(String::as_str),
        Some("m.single")
    );
}

fn write_ndjson(lines: &[String]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("events-{}.ndjson", uuid::Uuid::new_v4().simple()));
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn orchestrator(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(orchestrator_tests::process::binary("orchestrator"))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("orchestrator runs")
}

#[tokio::test]
async fn replayed_events_are_driven_to_succeeded_by_the_simulated_runner() {
    let db = db_with_catalog("e2e_simulated").await;
    let stack = Stack::new("simulated", false).await;
    let env = stack.env(&db);
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _runner = Process::spawn(
        "orchestrator",
        &env,
        &["simulate-runner", "--duration-ms", "300"],
    );
    let file = write_ndjson(&[
        update_body("d1", "v1"),
        update_body("d2", "v1"),
        update_body("d1", "v1"),
    ]);
    let out = orchestrator(&env, &["replay", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sent 3 message(s)"));
    // d1 → m.single; d2 → m.pair (d1 is fresh); the repeated d1 line is a duplicate.
    eventually(WAIT, "two runs to succeed", || async {
        let done = db
            .count("SELECT count(*) FROM metric_runs WHERE status = 'succeeded'")
            .await;
        (done == 2).then_some(())
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE requested_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(db.count("SELECT count(*) FROM metric_runs WHERE started_at IS NOT NULL AND last_heartbeat_at IS NOT NULL").await, 2);
}

#[tokio::test]
async fn replay_dry_run_validates_every_line_and_sends_nothing() {
    let bad = json!({"event": "projection_update", "dataset_id": "d1"}).to_string();
    let file = write_ndjson(&[
        update_body("d1", "v1"),
        bad,
        "{oops".to_string(),
        json!({"type": "metric_run_started", "runId": "r"}).to_string(),
    ]);
    let out = orchestrator(
        &[],
        &[
            "replay",
            "--dry-run",
            "--queue",
            "http://127.0.0.1:9/none",
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(":2: invalid event: version_manifest_path is required (invalid_event)"),
        "{err}"
    );
    assert!(err.contains(":3: invalid JSON"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 line(s), 2 valid, 2 invalid"));
}

#[tokio::test]
async fn ops_endpoints_report_health_and_readiness() {
    let db = db_with_catalog("e2e_ops").await;
    let stack = Stack::new("ops", false).await;
    // stack.env sets OPS_ADDR=127.0.0.1:0: the worker binds a port and logs it.
    let worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let port = worker.bound_port("ops endpoints listening").await;
    let get = |path: &'static str| orchestrator_tests::http::get(port, path);
    let health = eventually(WAIT, "/healthz to answer", || async {
        get("/healthz").await
    })
    .await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = get("/readyz").await.unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(
        ready.contains(r#""database":"ok""#) && ready.contains(r#""queue":"ok""#),
        "{ready}"
    );
    // A worker pointed at a missing queue is alive but not ready.
    stack
        .aws
        .sqs
        .delete_queue()
        .queue_url(&stack.names.projection_updates_queue_url)
        .send()
        .await
        .unwrap();
    let not_ready = eventually(WAIT, "/readyz to report the missing queue", || async {
        get("/readyz")
            .await
            .filter(|r| r.starts_with("HTTP/1.1 503"))
    })
    .await;
    assert!(
        not_ready.contains(r#""queue":"unavailable""#),
        "{not_ready}"
    );
    // The cause is for the operator's log, not for whoever asked.
    let queue_name = stack
        .names
        .projection_updates_queue_url
        .rsplit('/')
        .next()
        .unwrap();
    assert!(
        !not_ready.contains(queue_name) && !not_ready.contains("NonExistentQueue"),
        "{not_ready}"
    );
    let log = worker.output();
    assert!(
        log.contains("readiness check failed") && log.contains("\"check\":\"queue\""),
        "the worker's log lacks the cause: {log}"
    );
}

#[tokio::test]
async fn fifo_messages_of_one_group_are_processed_in_order() {
    let db = db_with_catalog("e2e_fifo_order").await;
    let stack = Stack::new("fifoorder", true).await;
    // All in one SendMessageBatch and one group ("g"): a worker with several
    // slots must still process them one after the other.
    let bodies: Vec<String> = (1..=6)
        .map(|v| update_body("d2", &format!("v{v}")))
        .collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    stack
        .send_batch(&stack.names.projection_updates_queue_url, &refs)
        .await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    eventually(WAIT, "six updates processed", || async {
        (db.count("SELECT count(*) FROM dataset_updates").await == 6).then_some(())
    })
    .await;
    let order = db
        .strings("SELECT version_manifest_path FROM dataset_updates ORDER BY created_at, id")
        .await;
    let want: Vec<String> = (1..=6).map(|v| format!("d2/v{v}/manifest.json")).collect();
    assert_eq!(order, want, "a FIFO group is processed in order");
}

#[tokio::test]
async fn a_run_request_over_the_sns_limit_is_offloaded_to_s3_and_points_there() {
    let db = TestDb::new("e2e_large_request").await;
    // One metric over 12,000 series: its expression alone is ~370 KB.
    let codes: Vec<String> = (0..12_000)
        .map(|i| format!("SERIES_{i:06}_long_series_name"))
        .collect();
    let operands: Vec<Value> = codes.iter().map(|c| json!({"seriesCode": c})).collect();
    let catalog = json!({
        "datasets": [{"id": "big", "name": "Big", "bucket": "b", "series": codes}],
        "series": codes.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
        "metrics": [{"id": "mbig", "code": "m.big", "expression_type": "composite",
                     "expression_json": {"op": "sum", "operands": operands}}]
    });
    orchestrator_tests::fixtures::apply(&db, &catalog).await;
    let stack = Stack::new("large", false).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update_body("big", "v1"),
        )
        .await;
    let got = stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await;
    assert_eq!(got.len(), 1);
    let body = got[0].body().unwrap();
    assert!(
        body.len() < 4096,
        "the SNS message is a pointer, not the payload"
    );
    let pointer = orchestrator_core::messaging::s3::parse_pointer(body)
        .expect("an Extended Client S3 pointer");
    assert_eq!(pointer.bucket, stack.names.output_bucket);
    let attrs = attributes(&got[0]);
    let policy = orchestrator_core::messaging::s3::PointerPolicy {
        buckets: vec![stack.names.output_bucket.clone()],
        expected_owner: None,
    };
    let payload =
        orchestrator_core::messaging::s3::fetch(&stack.aws.s3, &policy, &pointer, 8 << 20)
            .await
            .expect("the pointed-to payload");
    assert!(payload.len() > 256 * 1024);
    assert_eq!(attrs["ExtendedPayloadSize"], payload.len().to_string());
    assert_eq!(attrs["metric_code"], "m.big");
    let request: Value = serde_json::from_str(&payload).unwrap();
    let run_id = request["runId"].as_str().unwrap().to_string();
    assert_eq!(request, outbox_payload(&db, &run_id).await);
    // The relay marks the run dispatched after the publish call returns,
    // which may be after the message reached the queue.
    eventually(WAIT, "the run to be marked dispatched", || async {
        (status_of(&db, &run_id).await == "dispatched").then_some(())
    })
    .await;
}
