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
fn terraform_validate_passes_for_every_root() {
    for root in ["", "localstack"] {
        let tf = Terraform::new(root);
        tf.init();
        let out = tf.ok(&["validate", "-no-color"]);
        assert!(
            out.contains("The configuration is valid"),
            "{root:?}: {out}"
        );
    }
}

/// `terraform test` (infra/tests/security.tftest.hcl) with the mock AWS
/// provider: encryption, no public bucket, TLS-only policies, IAM without
/// wildcards, security-group rules, the task roles' actions, hardened tasks.
/// Mock providers cannot run ephemeral resources, so modules/role_passwords
/// is replaced in this copy by its stub (the real one is applied on
/// LocalStack below).
#[test]
fn terraform_test_asserts_the_security_properties_with_a_mock_provider() {
    let tf = Terraform::new("");
    let stub = tf.workdir.join("tests/stubs/role_passwords/main.tf");
    std::fs::copy(&stub, tf.workdir.join("modules/role_passwords/main.tf")).unwrap();
    tf.init();
    let out = tf.ok(&["test", "-no-color"]);
    eprintln!("{out}");
    assert!(out.contains("Success! 5 passed, 0 failed."), "{out}");
}

/// checkov, the scanner the field uses, over infra/: no failed check, and
/// every suppression carries its reason next to its resource.
/// tests/run.sh installs it (infra/checkov-requirements.txt) into
/// .venv-checkov; CHECKOV names another binary.
#[test]
fn checkov_finds_no_unsuppressed_problem_in_infra() {
    let bin = std::env::var("CHECKOV").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv-checkov/bin/checkov").to_string()
    });
    assert!(
        std::path::Path::new(&bin).is_file(),
        "checkov is not installed at {bin}: tests/run.sh installs it (or set CHECKOV)"
    );
    let tf = Terraform::new("");
    let out = std::process::Command::new(&bin)
        .args(["-d", ".", "--framework", "terraform", "-o", "json"])
        .current_dir(&tf.workdir)
        .output()
        .expect("checkov runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("checkov's report is not JSON ({e}): {text}"));
    let summary = &report["summary"];
    eprintln!("checkov {}: {summary}", summary["checkov_version"]);
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(
        failed.is_empty(),
        "checkov findings:\n{}",
        failed.join("\n")
    );
    assert_eq!(summary["parsing_errors"], 0, "{summary}");
    for c in report["results"]["skipped_checks"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let reason = c["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(
            reason.len() > 20,
            "{} on {} is suppressed without a reason",
            c["check_id"],
            c["resource"]
        );
    }
}

/// The secret LocalStack holds, read as Secrets Manager answers it.
async fn secret_value(arn: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(aws::endpoint())
        .header("X-Amz-Target", "secretsmanager.GetSecretValue")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261207/us-east-1/secretsmanager/aws4_request",
        )
        .body(json!({ "SecretId": arn }).to_string())
        .send()
        .await
        .expect("Secrets Manager answers")
        .json()
        .await
        .expect("JSON");
    answer["SecretString"]
        .as_str()
        .unwrap_or_else(|| panic!("no SecretString for {arn}: {answer}"))
        .to_string()
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
    // The roles' passwords were generated and written, and the state holds
    // none of them.
    let secrets: Value =
        serde_json::from_str(&tf.ok(&["output", "-json", "role_password_secret_arns"])).unwrap();
    let state = std::fs::read_to_string(tf.workdir.join("terraform.tfstate")).unwrap();
    for role in ["worker", "api"] {
        let password = secret_value(secrets[role].as_str().expect("a secret per role")).await;
        assert_eq!(password.len(), 40, "{role}");
        assert!(
            !state.contains(&password),
            "the {role} password is in the state"
        );
    }
    // The alerts topic is the workers' ALERTS_TOPIC_ARN, and the alarms on
    // every DLQ and queue exist in CloudWatch and publish to it.
    let alerts_topic = outputs["ALERTS_TOPIC_ARN"]
        .as_str()
        .expect("ALERTS_TOPIC_ARN")
        .to_string();
    let alarms: Vec<String> =
        serde_json::from_str(&tf.ok(&["output", "-json", "alarm_names"])).unwrap();
    assert_eq!(alarms.len(), 6, "{alarms:?}");
    let described = reqwest::Client::new()
        .post(aws::endpoint())
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261203/us-east-1/monitoring/aws4_request",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!(
            "Action=DescribeAlarms&Version=2010-08-01&AlarmNamePrefix={prefix}"
        ))
        .send()
        .await
        .expect("CloudWatch answers")
        .text()
        .await
        .unwrap();
    for alarm in &alarms {
        assert!(
            described.contains(alarm.as_str()),
            "{alarm} missing from CloudWatch: {described}"
        );
    }
    assert!(
        described.contains(&alerts_topic),
        "alarms publish to {alerts_topic}: {described}"
    );

    let mut env = aws::output_env(&outputs);
    env.extend(aws::local_env(&db));
    env.extend(
        [("LOG_FORMAT", "json"), ("OPS_ADDR", "127.0.0.1:0")]
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

#[tokio::test]
async fn terraform_wires_the_reference_runner_and_producer_topics_and_a_run_goes_end_to_end() {
    use orchestrator_tests::reference::{drive_one_run, ReferenceTopics};
    let db = db_with_catalog("tf_wiring").await;
    let aws = aws::clients().await;
    let topics = ReferenceTopics::create(true).await;
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    // An existing run-requests topic and bucket, named: reused, not created.
    let existing_topic = aws
        .sns
        .create_topic()
        .name(format!("ref-{id}-tf-run-requests"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let bucket = format!("ref-{id}-tf-outputs");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let tf = Terraform::new("localstack");
    tf.init();
    let vars: Vec<String> = vec![
        format!("-var=prefix=it-tfw-{id}-"),
        format!("-var=endpoint={}", aws::endpoint()),
        format!("-var=run_requests_topic_arn={existing_topic}"),
        format!("-var=existing_output_bucket={bucket}"),
        format!(
            "-var=run_lifecycle_topic_arns={}",
            serde_json::to_string(&topics.lifecycle()).unwrap()
        ),
        format!(
            "-var=projection_updates_topic_arns=[\"{}\"]",
            topics.producer
        ),
        "-var=raw_message_delivery={run_lifecycle = false}".to_string(),
    ];
    let mut apply = vec!["apply", "-auto-approve", "-no-color"];
    apply.extend(vars.iter().map(String::as_str));
    tf.ok(&apply);
    let outputs: Value =
        serde_json::from_str(&tf.ok(&["output", "-json", "worker_environment"])).unwrap();
    let subs: Value = serde_json::from_str(&tf.ok(&["output", "-json", "subscriptions"])).unwrap();
    let lifecycle = outputs["RUN_LIFECYCLE_QUEUE_URL"].as_str().unwrap();
    let updates = outputs["PROJECTION_UPDATES_QUEUE_URL"].as_str().unwrap();
    assert!(
        lifecycle.ends_with(".fifo"),
        "the runner's topics are FIFO: {lifecycle}"
    );
    assert!(
        !updates.ends_with(".fifo"),
        "the producer's topic is standard: {updates}"
    );
    assert_eq!(outputs["RUN_REQUESTS_TOPIC_ARN"], existing_topic.as_str());
    assert_eq!(outputs["OUTPUT_BUCKET"], bucket.as_str());
    let subs = subs.as_object().unwrap();
    assert_eq!(subs.len(), 5, "{subs:?}");
    for t in topics.lifecycle() {
        assert!(
            subs.values().any(|s| s["topic"] == t && s["raw"] == false),
            "{t} not subscribed enveloped: {subs:?}"
        );
    }
    assert!(subs
        .values()
        .any(|s| s["topic"] == topics.producer.as_str() && s["raw"] == true));
    for q in [
        lifecycle,
        updates,
        outputs["RUN_REQUESTS_QUEUE_URL"].as_str().unwrap(),
    ] {
        let a = aws
            .sqs
            .get_queue_attributes()
            .queue_url(q)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let get =
            |n: aws_sdk_sqs::types::QueueAttributeName| a.get(&n).cloned().unwrap_or_default();
        assert!(
            get(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy).contains("-dlq"),
            "{q} has no DLQ"
        );
        assert!(
            get(aws_sdk_sqs::types::QueueAttributeName::Policy).contains("sns.amazonaws.com"),
            "{q} has no policy"
        );
    }

    let mut env = aws::output_env(&outputs);
    env.extend(aws::local_env(&db));
    env.extend(orchestrator_tests::reference::worker_settings());
    let _updates = Process::spawn("projection-update-worker", &env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &env, &[]);
    drive_one_run(
        &db,
        &topics,
        outputs["RUN_REQUESTS_QUEUE_URL"].as_str().unwrap(),
        "metrics/m.single/",
    )
    .await;
    let mut destroy = vec!["destroy", "-auto-approve", "-no-color"];
    destroy.extend(vars.iter().map(String::as_str));
    tf.ok(&destroy);
    // The existing topic and bucket outlive the stack: they were not ours.
    assert!(aws
        .sns
        .get_topic_attributes()
        .topic_arn(&existing_topic)
        .send()
        .await
        .is_ok());
    assert!(aws.s3.head_bucket().bucket(&bucket).send().await.is_ok());
}
