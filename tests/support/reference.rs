//! Stand-ins for the reference ecosystem's messaging, for the wiring tests:
//! the topics of the metric runner `metrics-engine--dp-worker` and of the
//! producer `ingestor-reader-v3`, and what each publishes. Facts encoded
//! (from their published sources):
//! - the runner publishes started, heartbeat and completed to three
//!   separate topics; on a FIFO topic with MessageGroupId = runId and
//!   MessageDeduplicationId = `<runId>:<event type>` (constant per type);
//! - every event carries the SNS message attributes `type` and `metricCode`;
//! - its bodies are camelCase (`runId`, `metricCode`, `startedAt`, `ts`,
//!   `versionTs`, `outputManifest`, `rowCount`) and heartbeat `progress` is a
//!   fraction 0.0–1.0;
//! - it reads run requests raw or SNS-enveloped, and filters on `type`;
//! - the producer publishes `projection_update` to a standard topic with no
//!   message group.

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::{json, Value};
use std::io::Write;

use crate::aws::{clients, unique_suffix};

/// The runner's three lifecycle topics and the producer's topic, created
/// under unique names (as the team running the reference already has them).
pub struct ReferenceTopics {
    pub started: String,
    pub heartbeat: String,
    pub completed: String,
    pub producer: String,
}

async fn topic(sns: &aws_sdk_sns::Client, name: &str, fifo: bool) -> String {
    let mut req = sns.create_topic().name(name);
    if fifo {
        req = req
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false");
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("creating topic {name} on LocalStack: {e:?}"))
        .topic_arn
        .expect("topic ARN")
}

impl ReferenceTopics {
    /// FIFO runner topics when `fifo`; the producer's topic is standard.
    pub async fn create(fifo: bool) -> ReferenceTopics {
        let sns = clients().await.sns;
        let id = &unique_suffix()[..8];
        let suffix = if fifo { ".fifo" } else { "" };
        ReferenceTopics {
            started: topic(&sns, &format!("ref-{id}-metric-run-started{suffix}"), fifo).await,
            heartbeat: topic(
                &sns,
                &format!("ref-{id}-metric-run-heartbeat{suffix}"),
                fifo,
            )
            .await,
            completed: topic(
                &sns,
                &format!("ref-{id}-metric-run-completed{suffix}"),
                fifo,
            )
            .await,
            producer: topic(&sns, &format!("ref-{id}-projection-updates"), false).await,
        }
    }

    pub fn lifecycle(&self) -> [&str; 3] {
        [&self.started, &self.heartbeat, &self.completed]
    }

    /// Publishes one runner event the way the runner does.
    pub async fn runner_publishes(&self, event: &Value) {
        let kind = event["type"].as_str().expect("event type");
        let run_id = event["runId"].as_str().expect("runId");
        let topic = match kind {
            "metric_run_started" => &self.started,
            "metric_run_heartbeat" => &self.heartbeat,
            _ => &self.completed,
        };
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .unwrap()
        };
        let mut req = clients()
            .await
            .sns
            .publish()
            .topic_arn(topic)
            .message(event.to_string())
            .message_attributes("type", attr(kind))
            .message_attributes(
                "metricCode",
                attr(event["metricCode"].as_str().unwrap_or("")),
            );
        if topic.ends_with(".fifo") {
            req = req
                .message_group_id(run_id)
                .message_deduplication_id(format!("{run_id}:{kind}"));
        }
        req.send().await.expect("runner event published");
    }

    /// The producer announces a dataset version.
    pub async fn producer_publishes(&self, dataset: &str, version: &str) {
        let body = json!({
            "event": "projection_update",
            "dataset_id": dataset,
            "bucket": "ingestor-bucket",
            "version_manifest_path": format!("{dataset}/{version}/manifest.json"),
            "projections_path": format!("{dataset}/{version}/projections/"),
        });
        clients()
            .await
            .sns
            .publish()
            .topic_arn(&self.producer)
            .message(body.to_string())
            .send()
            .await
            .expect("projection update published");
    }
}

/// The workers' settings for a runner like the reference one: progress as a
/// fraction, output paths as keys, no heartbeat timeout (plus JSON logs and
/// a free ops port).
pub fn worker_settings() -> Vec<(String, String)> {
    [
        ("RUNNER_PROGRESS_SCALE", "fraction"),
        ("OUTPUT_PATH_STYLE", "key"),
        ("RUN_HEARTBEAT_TIMEOUT_SECS", "0"),
        ("LOG_FORMAT", "json"),
        ("OPS_ADDR", "127.0.0.1:0"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

/// The runner's events for one run request, in its shapes.
pub fn started(run_id: &str, metric_code: &str) -> Value {
    json!({"type": "metric_run_started", "runId": run_id, "metricCode": metric_code,
           "startedAt": "2026-11-23T10:00:00Z"})
}

pub fn heartbeat(run_id: &str, metric_code: &str, fraction: f64) -> Value {
    json!({"type": "metric_run_heartbeat", "runId": run_id, "metricCode": metric_code,
           "progress": fraction, "ts": "2026-11-23T10:00:05Z"})
}

pub fn completed(run_id: &str, metric_code: &str) -> Value {
    json!({"type": "metric_run_completed", "runId": run_id, "metricCode": metric_code,
           "status": "SUCCESS", "versionTs": "2026-11-23T10:00:00",
           "outputManifest": format!("metrics/{metric_code}/manifest.json"), "rowCount": 12})
}

/// Carries one run through the reference ecosystem's wiring: the producer
/// publishes an update of `d1` on its topic; the run request for `m.single`
/// is read from the runner's queue (`run_requests_queue_url`) and checked
/// for the attributes the runner filters on and the `basePath` expected;
/// the runner's three events go out on its three topics; the run must end
/// `succeeded`, with the fraction heartbeat stored as a percentage.
pub async fn drive_one_run(
    db: &crate::TestDb,
    topics: &ReferenceTopics,
    run_requests_queue_url: &str,
    expect_base_path: &str,
) {
    use std::time::Duration;
    let sqs = clients().await.sqs;
    topics.producer_publishes("d1", "v1").await;
    let got = crate::aws::receive(&sqs, run_requests_queue_url, 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1, "no run request reached the runner's queue");
    let attrs = crate::aws::attributes(&got[0]);
    assert_eq!(
        attrs.get("type").map(String::as_str),
        Some("metric_run_requested"),
        "{attrs:?}"
    );
    assert_eq!(
        attrs.get("metricCode").map(String::as_str),
        Some("m.single"),
        "{attrs:?}"
    );
    let request: Value =
        serde_json::from_str(got[0].body().unwrap_or_default()).expect("a raw run request is JSON");
    assert_eq!(request["output"]["basePath"], expect_base_path, "{request}");
    let run_id = request["runId"].as_str().expect("runId").to_string();

    // The run's status, progress and row count, polled until `ok` holds.
    let sql = format!(
        "SELECT status || ':' || coalesce(progress::text, '') || ':' || coalesce(row_count::text, '')
           FROM metric_runs WHERE id = '{run_id}'"
    );
    let until = |what: &'static str, ok: fn(&str) -> bool| {
        let sql = sql.clone();
        async move {
            crate::eventually(Duration::from_secs(30), what, || async {
                db.try_string(&sql).await.filter(|s| ok(s)).map(|_| ())
            })
            .await
        }
    };
    topics.runner_publishes(&started(&run_id, "m.single")).await;
    until("the run to be running", |s| s.starts_with("running:")).await;
    topics
        .runner_publishes(&heartbeat(&run_id, "m.single", 0.5))
        .await;
    until("progress 50 (a fraction of 0.5)", |s| {
        s.starts_with("running:50:")
    })
    .await;
    topics
        .runner_publishes(&completed(&run_id, "m.single"))
        .await;
    until("the run to succeed with its row count", |s| {
        s.starts_with("succeeded:") && s.ends_with(":12")
    })
    .await;
}

/// Reads each body as the reference runner does; the fixture's verdicts.
pub fn as_the_runner_reads(bodies: &[String]) -> (bool, String) {
    let python =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv-runner/bin/python");
    assert!(
        python.exists(),
        "{} is missing: tests/run.sh installs it (pydantic, tests/fixtures/reference_runner/requirements.txt)",
        python.display()
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reference_runner/parse_request.py");
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the runner's reading runs");
    let mut stdin = child.stdin.take().unwrap();
    for b in bodies {
        writeln!(stdin, "{b}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
