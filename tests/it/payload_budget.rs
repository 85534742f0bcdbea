//! Large inbound payloads: a burst of 16 MiB S3 pointers at full
//! concurrency waits for room in the worker's byte budget and does not kill
//! it at its container's memory limit; pointers to a bucket the worker was
//! not given, payloads over their declared size and payloads that are not
//! text are dead-lettered at once.

use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use orchestrator_core::domain::events::MAX_BODY_BYTES;
use orchestrator_tests::aws::Stack;
use orchestrator_tests::eventually;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::memory_limit::MemoryLimit;
use orchestrator_tests::process::Process;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);
/// The worker's container memory in this test (the Terraform default task
/// size is 512 MiB).
const MEMORY_LIMIT: u64 = 144 * 1024 * 1024;
const BURST: usize = 16;

/// A valid projection update padded to just under the largest body.
fn padded_update(version: &str) -> String {
    let base = json!({"event": "projection_update", "dataset_id": "d1",
        "version_manifest_path": format!("d1/{version}/manifest.json"),
        "projections_path": format!("d1/{version}/projections/"), "padding": ""})
    .to_string();
    let pad = MAX_BODY_BYTES - base.len() - 64;
    base.replace(
        "\"padding\":\"\"",
        &format!("\"padding\":\"{}\"", "x".repeat(pad)),
    )
}

async fn put(stack: &Stack, bucket: &str, key: &str, body: String) {
    stack
        .aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body.into_bytes()))
        .send()
        .await
        .expect("PutObject to LocalStack");
}

async fn send_pointer(stack: &Stack, bucket: &str, key: &str, declared: Option<usize>) {
    let pointer = json!(["software.amazon.payloadoffloading.PayloadS3Pointer",
                         {"s3BucketName": bucket, "s3Key": key}]);
    let mut req = stack
        .aws
        .sqs
        .send_message()
        .queue_url(&stack.names.projection_updates_queue_url)
        .message_body(pointer.to_string());
    if let Some(n) = declared {
        let attr = MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(n.to_string())
            .build()
            .unwrap();
        req = req.message_attributes("ExtendedPayloadSize", attr);
    }
    req.send().await.expect("SendMessage to LocalStack");
}

async fn drained(stack: &Stack, queue: &str) -> Option<()> {
    (stack.depth(queue).await? == (0, 0)).then_some(())
}

#[tokio::test]
async fn a_burst_of_16_mib_pointers_waits_for_room_and_stays_under_the_memory_limit() {
    let limit = MemoryLimit::new(MEMORY_LIMIT).unwrap_or_else(|e| {
        panic!("this test needs a memory cgroup of its own (run the tests as root): {e}")
    });
    let db = db_with_catalog("payload_burst").await;
    let stack = Stack::new("burst", false).await;
    let body = padded_update("v1");
    let size = body.len();
    put(&stack, &stack.names.output_bucket, "large/burst.json", body).await;
    // Half declare their size, half do not (the worker then reserves a
    // whole body's limit for them).
    for i in 0..BURST {
        let declared = (i % 2 == 0).then_some(size);
        send_pointer(
            &stack,
            &stack.names.output_bucket,
            "large/burst.json",
            declared,
        )
        .await;
    }
    let mut env = stack.env(&db);
    env.extend(
        [
            ("WORKER_CONCURRENCY", "8"),
            ("WORKER_INFLIGHT_BYTES", "50331648"), // 48 MiB: three at a time
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let mut worker = Process::spawn("projection-update-worker", &env, &[]);
    limit
        .add(worker.pid())
        .expect("the worker is put under the limit");
    // Until the burst is handled, or the kernel killed the worker.
    eventually(WAIT, "the burst to be handled", || async {
        if limit.oom_kills() > 0 {
            return Some(());
        }
        drained(&stack, &stack.names.projection_updates_queue_url).await
    })
    .await;
    let peak_rss = worker.peak_rss_kib().unwrap_or(0);
    let alive = worker.child.try_wait().expect("wait").is_none();
    eprintln!(
        "burst of {BURST} pointers to a {size}-byte payload, WORKER_CONCURRENCY=8, \
         WORKER_INFLIGHT_BYTES=48 MiB, memory limit {} MiB: peak RSS {} MiB, cgroup peak {} MiB, \
         OOM kills {}, alive {alive}",
        MEMORY_LIMIT >> 20,
        peak_rss >> 10,
        limit.peak_bytes().unwrap_or(0) >> 20,
        limit.oom_kills(),
    );
    assert!(
        alive,
        "the worker died under the burst:\n{}",
        worker.output()
    );
    assert_eq!(
        limit.oom_kills(),
        0,
        "the kernel killed the worker for memory"
    );
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 1);
    let dead = stack
        .depth(&stack.names.projection_updates_dlq_url)
        .await
        .expect("DLQ depth");
    assert_eq!(dead, (0, 0), "no message of the burst is dead-lettered");
    assert!(worker
        .terminate(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

#[tokio::test]
async fn pointers_to_other_buckets_payloads_over_their_size_or_not_text_are_dead_lettered_at_once()
{
    let db = db_with_catalog("payload_refused").await;
    let stack = Stack::new("ptrrefuse", false).await;
    let small = json!({"event": "projection_update", "dataset_id": "d1",
        "version_manifest_path": "d1/v9/manifest.json", "projections_path": "d1/v9/projections/"})
    .to_string();
    put(&stack, &stack.names.output_bucket, "ok.json", small.clone()).await;
    // Another bucket the worker's credentials can read, but it was not given.
    let other = format!("{}-other", stack.names.output_bucket);
    stack
        .aws
        .s3
        .create_bucket()
        .bucket(&other)
        .send()
        .await
        .expect("CreateBucket");
    put(&stack, &other, "elsewhere.json", small.clone()).await;
    send_pointer(&stack, &other, "elsewhere.json", None).await;
    // A payload larger than the size its sender declared.
    send_pointer(&stack, &stack.names.output_bucket, "ok.json", Some(10)).await;
    // A payload that is not text.
    stack
        .aws
        .s3
        .put_object()
        .bucket(&stack.names.output_bucket)
        .key("binary.bin")
        .body(aws_sdk_s3::primitives::ByteStream::from(vec![
            0xff, 0xfe, 0x00, 0x80,
        ]))
        .send()
        .await
        .expect("PutObject to LocalStack");
    send_pointer(&stack, &stack.names.output_bucket, "binary.bin", None).await;
    let mut env = stack.env(&db);
    env.push(("MAX_RECEIVE_COUNT".into(), "5".into()));
    let worker = Process::spawn("projection-update-worker", &env, &[]);
    let letters = stack
        .receive(&stack.names.projection_updates_dlq_url, 3, WAIT)
        .await;
    assert_eq!(letters.len(), 3, "{}", worker.output());
    let mut reasons: Vec<String> = letters
        .iter()
        .map(|m| {
            let a = orchestrator_tests::aws::attributes(m);
            assert_eq!(
                a.get("receive_count").map(String::as_str),
                Some("1"),
                "{a:?}"
            );
            format!("{}: {}", a["error_type"], a["error_message"])
        })
        .collect();
    reasons.sort();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not one this worker reads pointers from (S3_POINTER_BUCKETS)")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("is larger than 10 bytes")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("binary.bin is not UTF-8")),
        "{reasons:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 0);
}
