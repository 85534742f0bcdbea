//! LocalStack for tests: a uniquely named stack per test (provisioned the way
//! `orchestrator provision` does it), worker processes, and polling readers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use orchestrator_core::messaging::provision::{provision, ProvisionSpec, Provisioned};
use orchestrator_core::workers::AwsClients;

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
    pub async fn new(label: &str, fifo: bool) -> Stack {
        let aws = clients().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let spec = ProvisionSpec {
            prefix: format!("it-{}-{}-", label.replace('_', "-"), &id[..8]),
            fifo,
            output_bucket: format!("it-out-{}", &id[..12]),
            max_receive_count: 10,
        };
        let names = provision(&aws.sqs, &aws.sns, &aws.s3, &spec)
            .await
            .expect("provisioning on LocalStack");
        Stack { aws, names, fifo }
    }

    /// Environment for a worker process of this stack and database.
    pub fn env(&self, db: &TestDb) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .names
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        env.extend(
            [
                ("DATABASE_URL", db.url.as_str()),
                ("AWS_ENDPOINT_URL", &endpoint()),
                ("AWS_REGION", REGION),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
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
                e.build().unwrap()
            })
            .collect();
        let out = self
            .aws
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed().is_empty(), "{:?}", out.failed());
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
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            let out = self
                .aws
                .sqs
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
                    let _ = self
                        .aws
                        .sqs
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

/// Where cargo put the workspace binaries (next to the test executable's `deps/`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`; tests/run.sh does)",
        path.display()
    );
    path
}

/// A worker process, killed when dropped.
pub struct Process {
    pub child: Child,
    pub name: String,
    /// Where its standard error (the logs) goes.
    pub log: PathBuf,
}

impl Process {
    pub fn spawn(name: &str, env: &[(String, String)], args: &[&str]) -> Process {
        let log =
            std::env::temp_dir().join(format!("{name}-{}.log", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(binary(name))
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        eprintln!("{name} (pid {}) logs to {}", child.id(), log.display());
        Process {
            child,
            name: name.to_string(),
            log,
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
