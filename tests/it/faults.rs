//! Faults through LocalStack with workers as processes (docs/semantics.md): the
//! database unavailable mid-stream, transient failures until the maximum
//! receive count, payloads offloaded to S3.

use std::time::Duration;

use orchestrator_tests::aws::{attributes, Stack};
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::invariants::assert_invariants;
use orchestrator_tests::process::Process;
use orchestrator_tests::proxy::{host_port, via, TcpProxy};
use orchestrator_tests::{eventually, TestDb};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn update_body(dataset: &str, version: &str) -> String {
    json!({"event": "projection_update", "dataset_id": dataset,
           "version_manifest_path": format!("{dataset}/{version}/manifest.json"),
           "projections_path": format!("{dataset}/{version}/projections/")})
    .to_string()
}

/// The worker's environment, with the database reached through `proxy`.
fn env_via(
    stack: &Stack,
    db: &TestDb,
    proxy: &TcpProxy,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env = stack.env(db);
    for (k, v) in env.iter_mut() {
        if k == "DATABASE_URL" {
            *v = via(v, proxy.port);
        }
    }
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

#[tokio::test]
async fn postgres_unavailable_for_a_few_seconds_loses_nothing() {
    let db = db_with_catalog("fault_pg_down").await;
    let stack = Stack::new("pgdown", false).await;
    let proxy = TcpProxy::start(&host_port(&db.url)).await;
    let env = env_via(&stack, &db, &proxy, &[("MAX_RECEIVE_COUNT", "50")]);
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    let datasets = ["d1", "d2", "d3"];
    for i in 0..30 {
        stack
            .send(q, &update_body(datasets[i % 3], &format!("v{i}")))
            .await;
        if i == 10 {
            proxy.cut();
        }
        if i == 20 {
            // The worker met the cut: it tried to reconnect and was refused.
            eventually(WAIT, "the worker to meet the database cut", || async {
                (proxy.refused() > 0).then_some(())
            })
            .await;
            proxy.restore();
        }
    }
    eventually(WAIT, "all 30 updates recorded", || async {
        (db.count("SELECT count(*) FROM event_log WHERE event_type = 'projection_update'")
            .await
            == 30)
            .then_some(())
    })
    .await;
    // Updates deferred to a metric's backlog while another held it may
    // still create runs after the last message is handled: wait for both.
    eventually(
        WAIT,
        "the metric backlog and the outbox to drain",
        || async {
            let backlog = db.count("SELECT count(*) FROM metric_update_backlog").await;
            let unpublished = db
                .count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .await;
            (backlog == 0 && unpublished == 0).then_some(())
        },
    )
    .await;
    let requested: std::collections::BTreeSet<String> = db
        .strings("SELECT id FROM metric_runs WHERE requested_at IS NOT NULL")
        .await
        .into_iter()
        .collect();
    let ids = stack
        .receive_run_ids(&stack.names.run_requests_queue_url, requested.len(), WAIT)
        .await;
    assert_eq!(ids, requested, "every requested run reached the topic");
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 30);
    assert_invariants(&db).await;
}

#[tokio::test]
async fn transient_failures_go_to_the_dlq_as_retry_exhausted_at_the_maximum_receive_count() {
    let db = db_with_catalog("fault_retry_exhausted").await;
    let stack = Stack::new("exhausted", false).await;
    let proxy = TcpProxy::start(&host_port(&db.url)).await;
    proxy.cut();
    let env = env_via(&stack, &db, &proxy, &[("MAX_RECEIVE_COUNT", "2")]);
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    let body = update_body("d1", "v1");
    stack
        .send(&stack.names.projection_updates_queue_url, &body)
        .await;
    let dead = stack
        .receive(&stack.names.projection_updates_dlq_url, 1, WAIT)
        .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body(), Some(body.as_str()));
    let a = attributes(&dead[0]);
    assert_eq!(a["error_type"], "retry_exhausted");
    assert_eq!(a["receive_count"], "2");
    assert!(
        a["error_message"]
            .starts_with("gave up after 2 receives: could not get a database connection"),
        "{a:?}"
    );
}

#[tokio::test]
async fn an_update_offloaded_to_s3_is_fetched_and_processed() {
    let db = db_with_catalog("fault_s3_pointer").await;
    let stack = Stack::new("s3ptr", false).await;
    let _worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let body = update_body("d1", "v1");
    stack
        .aws
        .s3
        .put_object()
        .bucket(&stack.names.output_bucket)
        .key("large/update.json")
        .body(aws_sdk_s3::primitives::ByteStream::from(
            body.clone().into_bytes(),
        ))
        .send()
        .await
        .unwrap();
    let pointer = json!(["software.amazon.payloadoffloading.PayloadS3Pointer",
                         {"s3BucketName": stack.names.output_bucket, "s3Key": "large/update.json"}]);
    let attr = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("Number")
        .string_value(body.len().to_string())
        .build()
        .unwrap();
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.names.projection_updates_queue_url)
        .message_body(pointer.to_string())
        .message_attributes("SQSLargePayloadSize", attr)
        .send()
        .await
        .unwrap();
    assert_eq!(
        stack
            .receive(&stack.names.run_requests_queue_url, 1, WAIT)
            .await
            .len(),
        1
    );
    assert_eq!(
        db.string("SELECT version_manifest_path FROM dataset_updates")
            .await,
        "d1/v1/manifest.json"
    );
}

/// Sends one update per dataset of `datasets` to a worker at `concurrency`
/// whose first handler waits on a lock the test holds, waits until all are
/// in flight (received, invisible, not yet deleted), sends SIGTERM, lets the
/// lock go, and checks that it exits 0 having processed and deleted every
/// one of them.
async fn sigterm_drains(name: &str, concurrency: &str, datasets: &[&str]) {
    let db = db_with_catalog(&format!("fault_sigterm_{name}")).await;
    let stack = Stack::new(name, false).await;
    let mut env = stack.env(&db);
    env.push(("WORKER_CONCURRENCY".into(), concurrency.into()));
    // A lock held by the test keeps the first handler in its transaction
    // until after SIGTERM, whatever else the worker does meanwhile.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut worker = Process::spawn("projection-update-worker", &env, &[]);
    let queue = &stack.names.projection_updates_queue_url;
    for d in datasets {
        stack.send(queue, &update_body(d, "v1")).await;
    }
    let n = datasets.len();
    eventually(WAIT, &format!("{n} messages to be in flight"), || async {
        (stack.depth(queue).await == Some((0, n as i64))).then_some(())
    })
    .await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &worker.pid().to_string()])
        .status();
    locker.batch_execute("COMMIT").await.unwrap();
    let status = worker
        .wait_exit(Duration::from_secs(20))
        .expect("the worker exits within the grace period");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM dataset_updates").await,
        n as i64,
        "every in-flight message was processed"
    );
    // ...and deleted, not left for redelivery.
    let left = stack.receive(queue, 10, Duration::from_secs(3)).await;
    assert!(left.is_empty(), "processed messages must not come back");
}

// Multi-threaded: the lock holder's connection must keep running while the
// test blocks waiting for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_message_finish_then_exits_zero() {
    // The first message is still in its handler when SIGTERM arrives.
    sigterm_drains("drain", "4", &["d1"]).await;
}

/// A receive loop receives while the batch before is handled, and its
/// messages wait for slots: at `WORKER_CONCURRENCY=1` the second message is
/// received (in flight) while the first is still in its handler. SIGTERM
/// then must not drop it: it is handled once the first is done, within the
/// grace period, and deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_handles_the_messages_waiting_for_a_slot_then_exits_zero() {
    sigterm_drains("waiting", "1", &["d1", "d2"]).await;
}

// Multi-threaded: the lock holder's connection must keep running while the
// test blocks waiting for the process to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_handler_outlasting_the_grace_leaves_its_message_for_redelivery() {
    let db = db_with_catalog("fault_sigterm_grace").await;
    let stack = Stack::new("grace", false).await;
    // A lock held by the test keeps the handler in its transaction past the
    // grace of 1 s, whatever else the worker does meanwhile.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut env = stack.env(&db);
    env.push(("SHUTDOWN_GRACE_SECS".into(), "1".into()));
    env.push(("VISIBILITY_TIMEOUT_SECS".into(), "4".into()));
    let mut worker = Process::spawn("projection-update-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    stack.send(q, &update_body("d1", "v1")).await;
    eventually(WAIT, "the message to be in flight", || async {
        (stack.depth(q).await == Some((0, 1))).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    let status = worker
        .terminate(Duration::from_secs(20))
        .expect("the worker exits once the grace runs out, not after its handler");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "exited after {:?}",
        started.elapsed()
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    let logs = std::fs::read_to_string(&worker.log).unwrap_or_default();
    assert!(status.success(), "exit status {status:?}\n{logs}");
    assert!(
        logs.contains("grace period over; unfinished messages are left for redelivery"),
        "{logs}"
    );
    // Not deleted: it comes back once its visibility runs out, unprocessed.
    let back = stack.receive(q, 1, Duration::from_secs(20)).await;
    assert_eq!(back.len(), 1, "the unfinished message is redelivered");
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_is_renewed_while_a_handler_outlasts_the_visibility_timeout() {
    let db = db_with_catalog("fault_visibility").await;
    let stack = Stack::new("visibility", false).await;
    let env = stack.env(&db);
    let env: Vec<(String, String)> = env
        .into_iter()
        // Renewed every 2 s: 2 s of margin for a late renewal on a loaded
        // machine (a 2 s timeout left 1 s).
        .chain([("VISIBILITY_TIMEOUT_SECS".to_string(), "4".to_string())])
        .collect();
    // A lock held by the test keeps the handler waiting in its transaction
    // for three visibility timeouts.
    let locker = db.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    stack.send(q, &update_body("d1", "v1")).await;
    eventually(WAIT, "the message to be in flight", || async {
        (stack.depth(q).await == Some((0, 1))).then_some(())
    })
    .await;
    // Without renewal the message would become visible again after 4 s and
    // this competing reader would get it.
    let stolen = stack.receive(q, 1, Duration::from_secs(10)).await;
    assert!(
        stolen.is_empty(),
        "a message still being handled became visible again"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_stat_activity
              WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        .await,
        1,
        "one handler, still waiting for the lock: the message was not redelivered"
    );
    locker.batch_execute("COMMIT").await.unwrap();
    eventually(WAIT, "the slow handler to finish and delete", || async {
        (db.count("SELECT count(*) FROM dataset_updates").await == 1
            && stack.depth(q).await == Some((0, 0)))
        .then_some(())
    })
    .await;
    assert_eq!(
        db.count("SELECT count(*) FROM event_log").await,
        1,
        "processed exactly once"
    );
}
