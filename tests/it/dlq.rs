//! `orchestrator dlq list|redrive` against LocalStack, with the worker as a
//! real process: dead letters are listed without being consumed, and a
//! redriven letter is processed by the worker.

use std::process::Command;
use std::time::Duration;

use orchestrator_core::messaging::sqs::dlq::{self, DeadLetter};
use orchestrator_tests::aws::Stack;
use orchestrator_tests::eventually;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::process::{binary, Process};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn cli(env: &[(String, String)], args: &[&str]) -> (bool, String, String) {
    let o = Command::new(binary("orchestrator"))
        .args(args)
        .envs(env.iter().cloned())
        .output()
        .expect("orchestrator runs");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn dead_letters_are_listed_in_place_and_redriven_to_their_source_queue() {
    let db = db_with_catalog("dlq_admin").await;
    let stack = Stack::new("dlqadmin", false).await;
    let env = stack.env(&db);
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    let dlq_url = &stack.names.projection_updates_dlq_url;
    stack.send(q, "this is not json").await;
    eventually(WAIT, "the invalid message in the DLQ", || async {
        (stack.depth(dlq_url).await == Some((1, 0))).then_some(())
    })
    .await;
    // A valid update that had exhausted its retries (e.g. while a dataset was
    // missing from the catalog), dead-lettered the way the worker does it.
    let body = json!({"event": "projection_update", "dataset_id": "d1",
                      "version_manifest_path": "d1/v9/manifest.json",
                      "projections_path": "d1/v9/projections/"})
    .to_string();
    dlq::send(
        &stack.aws.sqs,
        dlq_url,
        &DeadLetter {
            body: &body,
            error_type: "retry_exhausted",
            error_message: "gave up after 5 receives",
            source_queue: q,
            source_message_id: "m-1",
            receive_count: 5,
            group_id: None,
        },
    )
    .await
    .unwrap();

    // list: both, with their attributes, and both still on the DLQ afterwards.
    let (ok, out, err) = cli(&env, &["dlq", "list", "--json"]);
    assert!(ok, "{err}");
    let letters: Value = serde_json::from_str(&out).unwrap();
    let mut types: Vec<&str> = letters
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["error_type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["invalid_json", "retry_exhausted"]);
    let invalid = letters
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["error_type"] == "invalid_json")
        .unwrap();
    assert_eq!(invalid["body"], "this is not json");
    assert_eq!(invalid["source_queue"], q.as_str());
    assert_eq!(
        stack.depth(dlq_url).await,
        Some((2, 0)),
        "listing consumes nothing"
    );

    // A dry run moves nothing.
    let redrive = ["dlq", "redrive", "--error-type", "retry_exhausted"];
    let (ok, out, err) = cli(&env, &[&redrive[..], &["--dry-run"]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("would move 1, skipped 1"), "{out}");
    assert_eq!(stack.depth(dlq_url).await, Some((2, 0)));

    // The real redrive: the worker processes the letter; the invalid one stays.
    let (ok, out, err) = cli(&env, &redrive);
    assert!(ok, "{err}");
    assert!(
        out.contains("moved 1, skipped 1 (other error types), failed 0"),
        "{out}"
    );
    eventually(WAIT, "the redriven update to be processed", || async {
        (orchestrator_tests::TestDb::count(&db, "SELECT count(*) FROM dataset_updates WHERE version_manifest_path = 'd1/v9/manifest.json'").await == 1)
            .then_some(())
    })
    .await;
    assert_eq!(stack.depth(dlq_url).await, Some((1, 0)));
}
