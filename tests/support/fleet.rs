//! Fault scenarios share one shape: a synthetic catalog, a uniquely named
//! stack with an extra "capture" queue subscribed (raw) to the run-requests
//! topic, a burst of updates, some fault, then the same final checks
//! :
//! - every update sent is in `event_log` exactly once;
//! - every queued run reached SNS: outbox backlog 0, no run left `queued`;
//! - no metric has two pending runs; no two runs of a metric share an
//!   identical update set (and the other invariants of [`assert_invariants`]);
//! - every run request received matches a run row, and no run id is received
//!   twice with different content.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::synth::{self, Shape};
use aws_sdk_sqs::types::QueueAttributeName;
use orchestrator_core::domain::events::ProjectionUpdate;
use orchestrator_core::domain::run_state::RunStatus;
use orchestrator_core::store::stats;

use crate::aws::Stack;
use crate::invariants::assert_invariants;
use crate::{eventually, TestDb};

/// Ten datasets, fifty metrics: each update concerns ~10 metrics.
pub const SHAPE: Shape = Shape {
    datasets: 10,
    series_per_dataset: 5,
    metrics: 50,
    seed: 11,
};

pub struct Fleet {
    pub db: TestDb,
    pub stack: Stack,
    pub capture_queue: String,
    pub sent: HashSet<String>,
    /// Run requests read from the capture queue so far: run id → body.
    seen: std::sync::Mutex<HashMap<String, String>>,
}

impl Fleet {
    pub async fn new(label: &str) -> Fleet {
        Self::on(TestDb::new(label).await, label).await
    }

    /// A fleet on a given database (e.g. one on a private server).
    pub async fn on(db: TestDb, label: &str) -> Fleet {
        orchestrator_core::app::catalog_apply::apply(&db.pool, &synth::catalog(SHAPE))
            .await
            .expect("synthetic catalog applies");
        let stack = Stack::new(label, false).await;
        let sqs = &stack.aws.sqs;
        let name = format!("{}capture", stack_prefix(&stack));
        let capture_queue = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .expect("CreateQueue")
            .queue_url
            .expect("queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&capture_queue)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("queue arn");
        stack
            .aws
            .sns
            .subscribe()
            .topic_arn(&stack.names.run_requests_topic_arn)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .expect("Subscribe");
        Fleet {
            db,
            stack,
            capture_queue,
            sent: HashSet::new(),
            seen: Default::default(),
        }
    }

    pub fn env(&self) -> Vec<(String, String)> {
        self.stack.env(&self.db)
    }

    /// `n` distinct updates, round robin over the datasets, starting at `from`.
    pub fn updates(from: usize, n: usize) -> Vec<ProjectionUpdate> {
        synth::updates(SHAPE, from + n).split_off(from)
    }

    /// Sends each update `copies` times (in batches of ten), remembering its key.
    pub async fn send(&mut self, updates: &[ProjectionUpdate], copies: usize) {
        let bodies: Vec<String> = updates
            .iter()
            .flat_map(|u| std::iter::repeat_n(u.to_json().to_string(), copies))
            .collect();
        for chunk in bodies.chunks(10) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            self.stack
                .send_batch(&self.stack.names.projection_updates_queue_url, &refs)
                .await;
        }
        self.sent
            .extend(updates.iter().map(ProjectionUpdate::event_key));
    }

    /// Updates recorded so far (0 while the database is unreachable).
    pub async fn processed(&self) -> i64 {
        stats::processed_updates(&self.db.pool).await.unwrap_or(0)
    }

    /// Waits for everything sent to be processed and published, then runs
    /// every final check.
    pub async fn settle_and_check(&self, timeout: Duration) {
        let n = self.sent.len() as i64;
        eventually(
            timeout,
            &format!("all {n} updates in event_log"),
            || async { (self.processed().await >= n).then_some(()) },
        )
        .await;
        let keys: HashSet<String> = stats::processed_update_keys(&self.db.pool)
            .await
            .expect("event_log keys")
            .into_iter()
            .collect();
        assert_eq!(
            keys, self.sent,
            "event_log holds exactly the updates sent, once each"
        );
        eventually(
            timeout,
            "outbox backlog 0 and no run left queued",
            || async {
                let outbox = stats::outbox_counts(&self.db.pool).await.ok()?;
                let queued = stats::runs_in(&self.db.pool, &[RunStatus::Queued])
                    .await
                    .ok()?;
                (outbox.unpublished == 0 && queued == 0).then_some(())
            },
        )
        .await;
        assert_invariants(&self.db).await;
        self.check_received_requests(timeout).await;
    }

    /// Reads the capture queue until every requested run has been seen.
    async fn check_received_requests(&self, timeout: Duration) {
        let mut requested = self.requested_runs().await;
        let mut seen = self.seen.lock().unwrap().clone();
        let deadline = Instant::now() + timeout;
        while seen.len() < requested.len() && Instant::now() < deadline {
            for body in self.read_capture().await {
                let v: serde_json::Value =
                    serde_json::from_str(&body).expect("a run request is JSON");
                let run_id = v["runId"].as_str().expect("runId").to_string();
                if !requested.contains_key(&run_id) {
                    // Requested after the snapshot above (a retry queued by
                    // the timeout sweep meanwhile): a run is marked requested
                    // in the transaction that writes its request, so a fresh
                    // read knows every run whose request can be on the topic.
                    requested = self.requested_runs().await;
                }
                let code = requested
                    .get(&run_id)
                    .unwrap_or_else(|| panic!("request for unknown run {run_id}"));
                assert_eq!(v["metricCode"].as_str(), Some(code.as_str()), "{run_id}");
                if let Some(earlier) = seen.insert(run_id.clone(), body.clone()) {
                    assert_eq!(
                        earlier, body,
                        "run {run_id} received twice with different content"
                    );
                }
            }
        }
        assert_eq!(
            seen.len(),
            requested.len(),
            "every requested run's request arrives on the topic"
        );
        *self.seen.lock().unwrap() = seen;
    }
}

impl Fleet {
    /// Every requested run: run id → metric code.
    async fn requested_runs(&self) -> HashMap<String, String> {
        stats::requested_runs(&self.db.pool)
            .await
            .expect("requested runs")
            .into_iter()
            .collect()
    }

    /// One round of four concurrent ReceiveMessage calls on the capture
    /// queue. Messages are left invisible for 15 minutes instead of deleted:
    /// a read costs one call per ten messages, so the reader keeps up with
    /// thousands of requests even on a loaded broker.
    async fn read_capture(&self) -> Vec<String> {
        let calls = (0..4).map(|_| {
            self.stack
                .aws
                .sqs
                .receive_message()
                .queue_url(&self.capture_queue)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .visibility_timeout(900)
                .send()
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .flat_map(|out| out.messages.unwrap_or_default())
            .filter_map(|m| m.body)
            .collect()
    }
}

fn stack_prefix(stack: &Stack) -> String {
    let url = &stack.names.projection_updates_queue_url;
    let name = url.rsplit('/').next().unwrap_or_default();
    name.trim_end_matches("projection-updates").to_string()
}
