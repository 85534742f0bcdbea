//! Telemetry across the SNS/SQS hops: a producer's W3C trace context reaches
//! the worker's logs and the published run request; `/metrics` reports what
//! the worker did.

use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use orchestrator_tests::aws::{attributes, Stack};
use orchestrator_tests::eventually;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::http::{free_port, get};
use orchestrator_tests::process::Process;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PRODUCER_SPAN: &str = "00f067aa0ba902b7";

fn update_body(dataset: &str, version: &str) -> String {
    json!({"event": "projection_update", "dataset_id": dataset,
           "version_manifest_path": format!("{dataset}/{version}/manifest.json"),
           "projections_path": format!("{dataset}/{version}/projections/")})
    .to_string()
}

/// Sends `body` with a `traceparent` message attribute.
async fn send_traced(stack: &Stack, body: &str, traceparent: &str) {
    stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.names.projection_updates_queue_url)
        .message_body(body)
        .message_attributes(
            "traceparent",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(traceparent)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_producers_trace_id_reaches_the_worker_logs_and_the_published_run_request() {
    let db = db_with_catalog("telemetry_trace").await;
    let stack = Stack::new("trace", false).await;
    let mut env = stack.env(&db);
    // Per-message lines ("message handled") are debug.
    env.push(("RUST_LOG".into(), "orchestrator_core=debug".into()));
    let worker = Process::spawn("projection-update-worker", &env, &[]);
    let traceparent = format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01");
    send_traced(&stack, &update_body("d1", "v1"), &traceparent).await;
    let got = stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await;
    assert_eq!(got.len(), 1);
    let published = attributes(&got[0]);
    let tp = published
        .get("traceparent")
        .expect("the run request carries a traceparent");
    // The same trace, continued from a new span of the fleet's own.
    assert!(tp.starts_with(&format!("00-{TRACE_ID}-")), "{tp}");
    assert!(!tp.contains(PRODUCER_SPAN), "{tp}");
    let logs = std::fs::read_to_string(&worker.log).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains(TRACE_ID))
        .unwrap_or_else(|| panic!("no log line with the trace id:\n{logs}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    let in_spans = v["spans"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["trace_id"] == TRACE_ID);
    assert!(v["span"]["trace_id"] == TRACE_ID || in_spans, "{line}");
    // Every line logged while handling the message carries it.
    let of_message: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("\"message_id\""))
        .collect();
    assert!(!of_message.is_empty());
    assert!(
        of_message.iter().all(|l| l.contains("\"trace_id\"")),
        "{of_message:?}"
    );

    // A message without a trace context starts a new trace, also propagated.
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            &update_body("d1", "v2"),
        )
        .await;
    let got = stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await;
    let tp = attributes(&got[0])["traceparent"].clone();
    assert!(
        orchestrator_core::domain::trace::TraceContext::parse(&tp).is_some(),
        "{tp}"
    );
    assert!(!tp.contains(TRACE_ID));
}

/// The value of an unlabelled sample, or of the first with all `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.split(['{', ' ']).next() == Some(name) && labels.iter().all(|x| l.contains(x)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_endpoint_counts_messages_by_outcome_and_reports_latency_outbox_and_runs() {
    let db = db_with_catalog("telemetry_metrics").await;
    let stack = Stack::new("metrics", false).await;
    let port = free_port();
    let mut env = stack.env(&db);
    env.push(("OPS_ADDR".into(), format!("127.0.0.1:{port}")));
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    let q = &stack.names.projection_updates_queue_url;
    stack.send(q, &update_body("d1", "v1")).await; // processed: m.single runs
    stack.send(q, &update_body("d1", "v1")).await; // ignored: duplicate
    stack.send(q, "not json").await; // dead-lettered
    let text = eventually(WAIT, "/metrics to count three messages", || async {
        let t = get(port, "/metrics").await?;
        let handled: f64 = ["processed", "ignored", "dead_lettered"]
            .iter()
            .filter_map(|o| {
                sample(
                    &t,
                    "orchestrator_messages_handled_total",
                    &[&format!("outcome=\"{o}\"")],
                )
            })
            .sum();
        (handled >= 3.0).then_some(t)
    })
    .await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let queue = format!("queue=\"{}\"", q.rsplit('/').next().unwrap());
    let count = |name: &str, labels: &[&str]| sample(&text, name, labels).unwrap_or(-1.0);
    assert_eq!(
        count("orchestrator_messages_received_total", &[&queue]),
        3.0,
        "{text}"
    );
    for outcome in ["processed", "ignored", "dead_lettered"] {
        let o = format!("outcome=\"{outcome}\"");
        assert_eq!(
            count("orchestrator_messages_handled_total", &[&queue, &o]),
            1.0,
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        count(
            "orchestrator_messages_dead_lettered_total",
            &["reason=\"invalid_json\""]
        ),
        1.0
    );
    assert_eq!(
        count("orchestrator_handler_duration_seconds_count", &[&queue]),
        3.0
    );
    assert!(
        text.contains("orchestrator_handler_duration_seconds_bucket{"),
        "a histogram"
    );
    // m.single's request was published, with its update-to-request latency.
    let text = eventually(WAIT, "the publish to be counted", || async {
        let t = get(port, "/metrics").await?;
        (sample(&t, "orchestrator_update_to_request_seconds_count", &[]) == Some(1.0)).then_some(t)
    })
    .await;
    assert!(sample(&text, "orchestrator_run_requests_published_total", &[]) >= Some(1.0));
    let latency = sample(&text, "orchestrator_update_to_request_seconds_sum", &[]).unwrap();
    assert!((0.0..30.0).contains(&latency), "{latency}");
    // Database gauges are present from the start (refreshed every 15 s).
    assert!(
        sample(&text, "orchestrator_outbox_backlog", &[]).is_some(),
        "{text}"
    );
    assert!(sample(&text, "orchestrator_outbox_oldest_age_seconds", &[]).is_some());
    assert!(sample(&text, "orchestrator_runs", &["status=\"queued\""]).is_some());
}

/// A stand-in OTLP/HTTP collector: answers 200 to every request and keeps
/// the bodies posted to `/v1/traces`.
async fn fake_collector() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>> = Default::default();
    let keep = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Headers, then Content-Length bytes of body.
                let (head_end, length) = loop {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, len);
                    }
                };
                while buf.len() < head_end + length {
                    let n = s.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                if String::from_utf8_lossy(&buf[..head_end]).contains("/v1/traces") {
                    keep.lock().unwrap().push(buf[head_end..].to_vec());
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (port, bodies)
}

#[tokio::test]
async fn spans_are_exported_over_otlp_in_the_producers_trace_when_an_endpoint_is_set() {
    let db = db_with_catalog("telemetry_otlp").await;
    let stack = Stack::new("otlp", false).await;
    let (port, bodies) = fake_collector().await;
    let mut env = stack.env(&db);
    env.extend(
        [
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
            (
                "OTEL_SERVICE_NAME",
                "projection-update-worker-under-test".to_string(),
            ),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let _worker = Process::spawn("projection-update-worker", &env, &[]);
    send_traced(
        &stack,
        &update_body("d1", "v1"),
        &format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01"),
    )
    .await;
    let got = stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await;
    let tp = attributes(&got[0])["traceparent"].clone();
    assert!(tp.starts_with(&format!("00-{TRACE_ID}-")), "{tp}");
    // The protobuf export carries trace ids as raw bytes, and the service name as text.
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let downstream_span: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&tp[36 + 2 * i..38 + 2 * i], 16).unwrap())
        .collect();
    eventually(
        WAIT,
        "spans of the producer's trace at the collector",
        || async {
            let all = bodies.lock().unwrap().concat();
            let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
            (has(&trace_bytes)
                && has(&downstream_span)
                && has(b"projection-update-worker-under-test")
                && has(b"publish run request"))
            .then_some(())
        },
    )
    .await;
}
