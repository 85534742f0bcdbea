//! LocalStack for tests and `loadgen`: a uniquely named stack (provisioned
//! the way `orchestrator provision` does it), senders and polling readers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use orchestrator_core::messaging::provision::{provision, Fifo, ProvisionSpec, Provisioned};
use orchestrator_core::messaging::AwsClients;

use crate::TestDb;

pub const REGION: &str = "us-east-1";

pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".to_string())
}

/// Clients for LocalStack, failing loudly when it does not answer.
pub async fn clients() -> AwsClients {
    let url = format!("{}/_localstack/health", endpoint());
    let healthy = tokio::net::TcpStream::connect(
        endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .await
    .is_ok();
    assert!(healthy, "LocalStack is not reachable at {url}. Start it with `localstack/up.sh` (tests/run.sh does).");
    let creds = aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "tests");
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(creds)
        .load()
        .await;
    AwsClients {
        sqs: aws_sdk_sqs::Client::new(&config),
        sns: aws_sdk_sns::Client::new(&config),
        s3: orchestrator_core::messaging::s3_client(&config),
    }
}

/// A provisioned stack with names unique to one test.
pub struct Stack {
    pub aws: AwsClients,
    pub names: Provisioned,
    pub fifo: bool,
}

impl Stack {
    /// A stack for one test on LocalStack, named after `label`.
    pub async fn new(label: &str, fifo: bool) -> Stack {
        let id = unique_suffix();
        Stack::provision(
            clients().await,
            &format!("it-{}-{}-", label.replace('_', "-"), &id[..8]),
            &format!("it-out-{}", &id[..12]),
            fifo,
        )
        .await
        .expect("provisioning on LocalStack")
    }

    /// Provisions a stack whose names start with `prefix`, with `clients`
    /// (LocalStack or wherever the environment points).
    pub async fn provision(
        aws: AwsClients,
        prefix: &str,
        output_bucket: &str,
        fifo: bool,
    ) -> anyhow::Result<Stack> {
        let spec = ProvisionSpec {
            fifo: Fifo::all(fifo),
            max_receive_count: 10,
            ..ProvisionSpec::new(prefix, output_bucket)
        };
        Self::provision_spec(aws, &spec).await
    }

    /// Provisions exactly `spec` (wiring to existing topics, FIFO per resource).
    pub async fn provision_spec(aws: AwsClients, spec: &ProvisionSpec) -> anyhow::Result<Stack> {
        let names = provision(&aws.sqs, &aws.sns, &aws.s3, spec)
            .await
            .with_context(|| format!("Failed to provision the stack {}*", spec.prefix))?;
        Ok(Stack {
            aws,
            names,
            fifo: spec.fifo.run_requests,
        })
    }

    /// Environment for a worker process of this stack and database.
    pub fn env(&self, db: &TestDb) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .names
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.extend(local_env(db));
        env.extend(
            [
                ("LOG_FORMAT", "json"),
                ("RUST_LOG", "info"),
                ("WORKER_CONCURRENCY", "4"),
                ("SHUTDOWN_GRACE_SECS", "10"),
                ("OPS_ADDR", "127.0.0.1:0"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env
    }

    pub async fn send(&self, queue_url: &str, body: &str) {
        let mut req = self
            .aws
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body);
        if queue_url.ends_with(".fifo") {
            req = req
                .message_group_id("g")
                .message_deduplication_id(uuid::Uuid::new_v4().to_string());
        }
        req.send().await.expect("SendMessage to LocalStack");
    }

    /// Sends up to ten bodies in one SendMessageBatch (one receive batch for the worker).
    /// On a FIFO queue all of them go to message group "g", in order.
    pub async fn send_batch(&self, queue_url: &str, bodies: &[&str]) {
        self.send_batch_ids(queue_url, bodies).await;
    }

    /// [`Stack::send_batch`], returning the message ids in the order of `bodies`.
    pub async fn send_batch_ids(&self, queue_url: &str, bodies: &[&str]) -> Vec<String> {
        self.try_send_batch(queue_url, bodies)
            .await
            .expect("SendMessageBatch to LocalStack")
    }

    /// [`Stack::send_batch`], failing with an error instead of a panic;
    /// returns the message ids in the order of `bodies`.
    pub async fn try_send_batch(
        &self,
        queue_url: &str,
        bodies: &[&str],
    ) -> anyhow::Result<Vec<String>> {
        let fifo = queue_url.ends_with(".fifo");
        let entries = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let e = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(*b);
                let e = if fifo {
                    e.message_group_id("g")
                        .message_deduplication_id(uuid::Uuid::new_v4().to_string())
                } else {
                    e
                };
                e.build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .aws
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .with_context(|| format!("SendMessageBatch to {queue_url}"))?;
        if !out.failed().is_empty() {
            bail!("SendMessageBatch failed for {:?}", out.failed());
        }
        let mut sent: Vec<(usize, String)> = out
            .successful()
            .iter()
            .map(|e| {
                (
                    e.id().parse().unwrap_or(usize::MAX),
                    e.message_id().to_string(),
                )
            })
            .collect();
        sent.sort();
        Ok(sent.into_iter().map(|(_, id)| id).collect())
    }

    /// Sends every body, ten per SendMessageBatch.
    pub async fn send_all(&self, queue_url: &str, bodies: &[String]) -> anyhow::Result<()> {
        for chunk in bodies.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.try_send_batch(queue_url, &refs).await?;
        }
        Ok(())
    }

    /// Messages on a queue, visible and in flight together.
    pub async fn total_depth(&self, queue_url: &str) -> anyhow::Result<i64> {
        let (visible, in_flight) = self
            .depth(queue_url)
            .await
            .with_context(|| format!("cannot read the depth of {queue_url}"))?;
        Ok(visible + in_flight)
    }

    /// (visible, in flight) messages of a queue; `None` if it cannot be read.
    pub async fn depth(&self, queue_url: &str) -> Option<(i64, i64)> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::All)
            .send()
            .await
            .ok()?;
        let a = out.attributes()?;
        let n = |k: A| a.get(&k).and_then(|v| v.parse::<i64>().ok());
        Some((
            n(A::ApproximateNumberOfMessages)?,
            n(A::ApproximateNumberOfMessagesNotVisible)?,
        ))
    }

    /// Receives (and deletes) messages until `n` arrived or `timeout` passed.
    pub async fn receive(&self, queue_url: &str, n: usize, timeout: Duration) -> Vec<Message> {
        receive(&self.aws.sqs, queue_url, n, timeout).await
    }

    /// Receives (and deletes) run requests until `n` distinct `runId`s
    /// arrived or `timeout` passed. SNS and the outbox deliver at least
    /// once, so a run request may arrive twice: counting messages would stop
    /// early on a duplicate.
    pub async fn receive_run_ids(
        &self,
        queue_url: &str,
        n: usize,
        timeout: Duration,
    ) -> std::collections::BTreeSet<String> {
        let deadline = Instant::now() + timeout;
        let mut ids = std::collections::BTreeSet::new();
        while ids.len() < n && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            for m in self.receive(queue_url, n - ids.len(), left).await {
                let body: serde_json::Value =
                    serde_json::from_str(m.body().unwrap_or_default()).unwrap_or_default();
                if let Some(id) = body["runId"].as_str() {
                    ids.insert(id.to_string());
                }
            }
        }
        ids
    }
}

/// Receives (and deletes) messages from any queue until `n` arrived or
/// `timeout` passed.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Message> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in out.messages.unwrap_or_default() {
            if let Some(r) = m.receipt_handle() {
                let _ = sqs
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(r)
                    .send()
                    .await;
            }
            got.push(m);
        }
    }
    got
}

/// String message attributes of a received message.
pub fn attributes(m: &Message) -> HashMap<String, String> {
    m.message_attributes()
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// What a worker process needs besides its queues and topic: this test's
/// database and LocalStack's endpoint, region and credentials.
pub fn local_env(db: &TestDb) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.url.clone()),
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_REGION", REGION.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .to_vec()
}

/// Terraform's `worker_environment` output (JSON) as variables.
pub fn output_env(outputs: &serde_json::Value) -> Vec<(String, String)> {
    outputs
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh suffix for resource names.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Alerts received on the stack's alerts queue within `timeout`, until
/// `enough` holds for them, with their `alert_type` attribute checked.
pub async fn alerts_until(
    stack: &Stack,
    timeout: Duration,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut got: Vec<serde_json::Value> = Vec::new();
    while !enough(&got) {
        assert!(
            std::time::Instant::now() < deadline,
            "alerts received within {timeout:?}: {got:#?}"
        );
        for m in receive(
            &stack.aws.sqs,
            &stack.names.alerts_queue_url,
            10,
            Duration::from_secs(1),
        )
        .await
        {
            let body: serde_json::Value =
                serde_json::from_str(m.body().unwrap_or_default()).expect("an alert body is JSON");
            assert_eq!(
                attributes(&m).get("alert_type").map(String::as_str),
                body["type"].as_str()
            );
            got.push(body);
        }
    }
    got
}
