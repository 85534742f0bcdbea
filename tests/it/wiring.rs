//! `orchestrator provision` wired to the reference ecosystem's own topics
//! (tests/support/reference.rs says which facts of the runner and the
//! producer it encodes): a run goes end to end over that wiring.

use std::collections::HashMap;
use std::process::Command;

use aws_sdk_sqs::types::QueueAttributeName;
use orchestrator_tests::aws::{clients, unique_suffix};
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::process::{binary, Process};
use orchestrator_tests::reference::{drive_one_run, ReferenceTopics};
use serde_json::Value;

/// LocalStack's endpoint, region and credentials, for the CLI.
fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", orchestrator_tests::aws::endpoint()),
        ("AWS_REGION", orchestrator_tests::aws::REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

async fn queue_attributes(url: &str) -> HashMap<String, String> {
    clients()
        .await
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap_or_else(|e| panic!("attributes of {url}: {e:?}"))
        .attributes
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_string(), v))
        .collect()
}

#[tokio::test]
async fn provision_wires_the_reference_runner_and_producer_topics_and_a_run_goes_end_to_end() {
    let db = db_with_catalog("wiring_cli").await;
    let topics = ReferenceTopics::create(true).await;
    let aws = clients().await;
    let id = &unique_suffix()[..8];
    // An existing run-requests topic and bucket, named: reused, not created.
    let existing_topic = aws
        .sns
        .create_topic()
        .name(format!("ref-{id}-metric-run-requests"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let bucket = format!("ref-{id}-outputs");
    aws.s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let env_file = std::env::temp_dir().join(format!("wiring-{id}.env"));
    let mut args: Vec<String> = [
        "provision",
        "--prefix",
        &format!("it-wire-{id}-"),
        "--output-bucket",
        &bucket,
        "--run-requests-topic-arn",
        &existing_topic,
        "--projection-updates-topic-arn",
        &topics.producer,
        "--lifecycle-delivery",
        "envelope",
        "--env-file",
        env_file.to_str().unwrap(),
    ]
    .map(str::to_string)
    .to_vec();
    for t in topics.lifecycle() {
        args.extend(["--lifecycle-topic-arn".to_string(), t.to_string()]);
    }
    let out = Command::new(binary("orchestrator"))
        .args(&args)
        .envs(aws_env())
        .output()
        .expect("orchestrator provision runs");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("reused existing topic {existing_topic}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("reused existing bucket {bucket}")),
        "{stderr}"
    );
    for t in topics.lifecycle() {
        assert!(stderr.contains(&format!("to {t} (enveloped)")), "{stderr}");
    }
    assert!(
        stderr.contains(&format!("to {} (raw)", topics.producer)),
        "{stderr}"
    );

    let env: HashMap<String, String> = std::fs::read_to_string(&env_file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    // FIFO per resource: the lifecycle queue takes the runner's FIFO topics'
    // kind, the projection-updates queue the producer's standard topic's.
    let lifecycle = &env["RUN_LIFECYCLE_QUEUE_URL"];
    let updates = &env["PROJECTION_UPDATES_QUEUE_URL"];
    assert!(lifecycle.ends_with(".fifo"), "{lifecycle}");
    assert!(!updates.ends_with(".fifo"), "{updates}");
    assert_eq!(env["RUN_REQUESTS_TOPIC_ARN"], existing_topic);
    assert_eq!(env["OUTPUT_BUCKET"], bucket);
    // Every consumed queue, the runner's included, has a DLQ; the subscribed
    // queues let their topics deliver.
    for q in [lifecycle, updates, &env["RUN_REQUESTS_QUEUE_URL"]] {
        let a = queue_attributes(q).await;
        let redrive: Value = serde_json::from_str(
            a.get("RedrivePolicy")
                .unwrap_or_else(|| panic!("{q} has no DLQ")),
        )
        .unwrap();
        assert!(
            redrive["deadLetterTargetArn"]
                .as_str()
                .unwrap()
                .contains("-dlq"),
            "{q}: {redrive}"
        );
    }
    let policy = &queue_attributes(lifecycle).await["Policy"];
    for t in topics.lifecycle() {
        assert!(policy.contains(t), "{policy}");
    }
    assert!(queue_attributes(updates).await["Policy"].contains(&topics.producer));
    assert!(
        queue_attributes(&env["RUN_REQUESTS_QUEUE_URL"]).await["Policy"].contains(&existing_topic)
    );

    // Provisioning again changes nothing and fails on nothing.
    let again = Command::new(binary("orchestrator"))
        .args(&args)
        .envs(aws_env())
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let mut worker_env: Vec<(String, String)> = env.into_iter().collect();
    worker_env.extend(orchestrator_tests::aws::local_env(&db));
    worker_env.extend(orchestrator_tests::reference::worker_settings());
    let _updates = Process::spawn("projection-update-worker", &worker_env, &[]);
    let _lifecycle = Process::spawn("run-lifecycle-worker", &worker_env, &[]);
    let requests_queue = worker_env
        .iter()
        .find(|(k, _)| k == "RUN_REQUESTS_QUEUE_URL")
        .map(|(_, v)| v.clone())
        .unwrap();
    drive_one_run(&db, &topics, &requests_queue, "metrics/m.single/").await;
    let _ = std::fs::remove_file(env_file);
}

#[tokio::test]
async fn provision_refuses_a_standard_topic_on_a_fifo_queue_and_says_which_flag() {
    let topics = ReferenceTopics::create(false).await;
    let id = &unique_suffix()[..8];
    let out = Command::new(binary("orchestrator"))
        .args([
            "provision",
            "--prefix",
            &format!("it-wire-bad-{id}-"),
            "--fifo-run-lifecycle",
            "--lifecycle-topic-arn",
            &topics.started,
        ])
        .envs(aws_env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is standard but the queue is FIFO"),
        "{stderr}"
    );
    // Nothing was created: the check runs before any call.
    let listed = clients()
        .await
        .sqs
        .list_queues()
        .queue_name_prefix(format!("it-wire-bad-{id}-"))
        .send()
        .await
        .unwrap();
    assert!(listed.queue_urls().is_empty(), "{:?}", listed.queue_urls());
}
