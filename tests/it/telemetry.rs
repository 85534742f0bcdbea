//! Telemetry across the SNS/SQS hops: a producer's W3C trace context reaches
//! the worker's logs and the published run request; `/metrics` reports what
//! the worker did.

use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use orchestrator_tests::aws::{attributes, Stack};
use orchestrator_tests::eventually;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::http::get;
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
    // At debug, the details (transactions, publishes) carry the trace id too.
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
    let worker = Process::spawn("projection-update-worker", &stack.env(&db), &[]);
    let port = worker.bound_port("ops endpoints listening").await;
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
    // m.single's request was committed, handed to the publisher (the gauge
    // counts it) and published: then nothing waits.
    eventually(WAIT, "orchestrator_publish_waiting to read 0", || async {
        let t = get(port, "/metrics").await?;
        (sample(&t, "orchestrator_publish_waiting", &[]) == Some(0.0)).then_some(())
    })
    .await;
    let latency = sample(&text, "orchestrator_update_to_request_seconds_sum", &[]).unwrap();
    assert!((0.0..30.0).contains(&latency), "{latency}");
    // The worker's own part of it: from the receipt to the publish call.
    let own = sample(&text, "orchestrator_receipt_to_publish_seconds_sum", &[]).unwrap();
    assert!((0.0..latency).contains(&own), "{own} of {latency}");
    // Database gauges are set by a refresh that starts with the worker and
    // repeats every 15 s; the first one may end after the messages above.
    let text = eventually(WAIT, "the database gauges to be set", || async {
        let t = get(port, "/metrics").await?;
        sample(&t, "orchestrator_outbox_backlog", &[])
            .is_some()
            .then_some(t)
    })
    .await;
    assert!(sample(&text, "orchestrator_outbox_oldest_age_seconds", &[]).is_some());
    assert!(sample(&text, "orchestrator_runs", &["status=\"queued\""]).is_some());
    // The staleness gauges are counted when the worker starts, then every
    // minute: nothing has succeeded here, so nothing is stale.
    let text = eventually(WAIT, "the staleness gauges to be set", || async {
        let t = get(port, "/metrics").await?;
        sample(&t, "orchestrator_stale_metrics", &["reason=\"any\""])
            .is_some()
            .then_some(t)
    })
    .await;
    for reason in ["definition_changed", "input_updated", "policy_changed"] {
        let label = format!("reason=\"{reason}\"");
        assert_eq!(
            sample(&text, "orchestrator_stale_metrics", &[&label]),
            Some(0.0),
            "{reason}"
        );
    }
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

/// Sends `body` and returns its SQS message id.
async fn send_one(stack: &Stack, body: &str, traceparent: Option<&str>) -> String {
    let mut req = stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.names.projection_updates_queue_url)
        .message_body(body);
    if let Some(tp) = traceparent {
        req = req.message_attributes(
            "traceparent",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(tp)
                .build()
                .unwrap(),
        );
    }
    req.send().await.unwrap().message_id.unwrap()
}

/// At the default log level, every message ends in exactly one line (info
/// when handled, warn when dead-lettered) with its outcome and correlation
/// fields; a value PostgreSQL can never store is dead-lettered at once as
/// `unprocessable` instead of being retried.
#[tokio::test]
async fn each_message_ends_in_one_log_line_at_the_default_level() {
    let db = db_with_catalog("telemetry_one_line").await;
    let stack = Stack::new("oneline", false).await;
    let worker =
        Process::spawn_with_default_log_level("projection-update-worker", &stack.env(&db), &[]);
    let traceparent = format!("00-{TRACE_ID}-{PRODUCER_SPAN}-01");
    let processed = send_one(&stack, &update_body("d1", "v1"), Some(&traceparent)).await;
    // Wait for the first before sending its duplicate, so that one is processed.
    let got = stack
        .receive(&stack.names.run_requests_queue_url, 1, WAIT)
        .await;
    assert_eq!(got.len(), 1, "m.single's run request");
    let duplicate = send_one(&stack, &update_body("d1", "v1"), None).await;
    let invalid = send_one(&stack, "{not json", None).await;
    // Valid JSON and a valid event, but text with a NUL character cannot be
    // stored by PostgreSQL (SQLSTATE 22021): it can never succeed.
    let nul = send_one(&stack, &update_body("d\u{0}1", "v1"), None).await;

    let dlq = &stack.names.projection_updates_dlq_url;
    let letters = stack.receive(dlq, 2, WAIT).await;
    assert_eq!(letters.len(), 2);
    let unprocessable = letters
        .iter()
        .map(attributes)
        .find(|a| a["source_message_id"] == nul)
        .expect("the NUL update is dead-lettered");
    assert_eq!(unprocessable["error_type"], "unprocessable");
    assert_eq!(unprocessable["receive_count"], "1", "not retried first");
    assert!(
        unprocessable["error_message"].contains("0x00"),
        "the cause is kept: {}",
        unprocessable["error_message"]
    );

    let ids = [&processed, &duplicate, &invalid, &nul];
    let lines: Vec<serde_json::Value> = eventually(WAIT, "a final line per message", || async {
        let logs = std::fs::read_to_string(&worker.log).ok()?;
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| ids.iter().any(|id| v["message_id"] == id.as_str()))
            .collect();
        (lines.len() >= ids.len()).then_some(lines)
    })
    .await;
    let of = |id: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|v| v["message_id"] == id).collect()
    };
    for (id, level, outcome) in [
        (&processed, "INFO", "processed"),
        (&duplicate, "INFO", "ignored"),
        (&invalid, "WARN", "dead_lettered"),
        (&nul, "WARN", "dead_lettered"),
    ] {
        let mine = of(id);
        assert_eq!(mine.len(), 1, "one line for {outcome}: {mine:?}");
        assert_eq!(mine[0]["level"], level, "{:?}", mine[0]);
        assert_eq!(mine[0]["outcome"], outcome, "{:?}", mine[0]);
        assert!(mine[0]["trace_id"].as_str().is_some_and(|t| t.len() == 32));
    }
    let line = of(&processed)[0];
    assert_eq!(
        line["trace_id"], TRACE_ID,
        "the producer's trace id: {line}"
    );
    assert_eq!(line["span"]["dataset_id"], "d1", "{line}");
    let detail = line["detail"].as_str().unwrap();
    assert!(
        detail.contains("3 dependent metrics; runs created 3, queued 1, pending 2"),
        "{detail}"
    );
    assert_eq!(of(&duplicate)[0]["reason"], "duplicate");
    assert_eq!(of(&invalid)[0]["error_type"], "invalid_json");
    assert_eq!(of(&nul)[0]["error_type"], "unprocessable");
}
