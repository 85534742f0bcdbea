//! `infra/`: the AWS configuration validates, and its messaging part, applied
//! to LocalStack, is what the workers run on.

use std::time::Duration;

use orchestrator_tests::aws;
use orchestrator_tests::eventually;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::process::Process;
use orchestrator_tests::terraform::Terraform;
use serde_json::{json, Value};

#[test]
fn terraform_validate_passes_for_the_aws_configuration() {
    let tf = Terraform::new("");
    tf.init();
    let out = tf.ok(&["validate", "-no-color"]);
    assert!(out.contains("The configuration is valid"), "{out}");
}

#[tokio::test]
async fn terraform_messaging_applied_to_localstack_carries_a_run_end_to_end() {
    let db = db_with_catalog("tf_apply").await;
    let _ = aws::clients().await; // fails loudly when LocalStack is down
    let tf = Terraform::new("localstack");
    tf.init();
    let prefix = format!("it-tf-{}-", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let endpoint = format!("-var=endpoint={}", aws::endpoint());
    let prefix_var = format!("-var=prefix={prefix}");
    tf.ok(&[
        "apply",
        "-auto-approve",
        "-no-color",
        &prefix_var,
        &endpoint,
    ]);
    let outputs: Value =
        serde_json::from_str(&tf.ok(&["output", "-json", "worker_environment"])).unwrap();

    let mut env: Vec<(String, String)> = outputs
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    env.extend(
        [
            ("DATABASE_URL", db.url.as_str()),
            ("AWS_ENDPOINT_URL", &aws::endpoint()),
            ("AWS_REGION", aws::REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("LOG_FORMAT", "json"),
            ("OPS_ADDR", "127.0.0.1:0"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    let _runner = Process::spawn(
        "orchestrator",
        &env,
        &["simulate-runner", "--duration-ms", "200"],
    );
    let clients = aws::clients().await;
    let queue = outputs["PROJECTION_UPDATES_QUEUE_URL"].as_str().unwrap();
    clients
        .sqs
        .send_message()
        .queue_url(queue)
        .message_body(
            json!({"event": "projection_update", "dataset_id": "d1",
                   "version_manifest_path": "d1/v1/manifest.json",
                   "projections_path": "d1/v1/projections/"})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    // d1 completes m.single: requested on the Terraform-made topic, read by the
    // runner from the Terraform-made queue, reported back, succeeded.
    eventually(Duration::from_secs(60), "m.single to succeed", || async {
        (db.count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.single' AND status = 'succeeded'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    tf.ok(&[
        "destroy",
        "-auto-approve",
        "-no-color",
        &prefix_var,
        &endpoint,
    ]);
}
