//! Parts of `loadgen bench-messaging` that measure the broker side:
//! SendMessage → run-request latency read from the run-requests queue's own
//! `SentTimestamp` (when SNS put the message there, so the reader's speed does
//! not count), and the broker's ceiling for SNS → SQS fan-out.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use orchestrator_core::messaging::sns::SnsPublisher;
use orchestrator_core::messaging::sqs::{
    Consumer, ConsumerConfig, Handler, HandlerError, InboundMessage, Outcome,
};
use orchestrator_core::messaging::AwsClients;
use orchestrator_core::outbox::Publisher;
use orchestrator_core::store::outbox::OutboxMessage;
use orchestrator_tests::aws::Stack;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends `bodies` at `rate`/s and returns, per update seen in a run request
/// within `window`, the time from SendMessage to the arrival of the first run
/// request that uses it.
pub async fn latencies(
    aws: &AwsClients,
    updates_queue: &str,
    requests_queue: &str,
    bodies: Vec<String>,
    rate: f64,
    window: Duration,
) -> Result<Vec<Duration>> {
    let manifest_of = |body: &str| {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v["version_manifest_path"].as_str().map(str::to_string))
    };
    let expected: HashSet<String> = bodies.iter().filter_map(|b| manifest_of(b)).collect();
    let sent_at: Arc<Mutex<HashMap<String, i64>>> = Default::default();
    let sender = {
        let (aws, queue, sent_at) = (aws.clone(), updates_queue.to_string(), sent_at.clone());
        let period = Duration::from_secs_f64(1.0 / rate);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            for body in bodies {
                tick.tick().await;
                if let Some(m) = manifest_of(&body) {
                    sent_at.lock().unwrap().insert(m, now_ms());
                }
                if let Err(e) = aws
                    .sqs
                    .send_message()
                    .queue_url(&queue)
                    .message_body(body)
                    .send()
                    .await
                {
                    eprintln!("bench: SendMessage failed: {e}");
                }
            }
        })
    };
    let deadline = Instant::now() + window;
    let (readers, arrived) = spawn_readers(aws, requests_queue, manifests, expected, deadline);
    let _ = sender.await;
    for r in readers {
        let _ = r.await;
    }
    let sent = sent_at.lock().unwrap();
    let arrived = arrived.lock().unwrap();
    Ok(between(&sent, &arrived))
}

/// Per key sent and arrived, the time between, sorted.
fn between(sent: &HashMap<String, i64>, arrived: &HashMap<String, i64>) -> Vec<Duration> {
    let mut l: Vec<Duration> = sent
        .iter()
        .filter_map(|(k, s)| arrived.get(k).map(|a| (a - s).max(0)))
        .map(|ms| Duration::from_millis(ms as u64))
        .collect();
    l.sort();
    l
}

/// The keys of a run request that uses updates: their manifest paths.
fn manifests(v: &Value) -> Vec<String> {
    v["catalog"]["datasets"]
        .as_object()
        .map(|ds| {
            ds.values()
                .filter_map(|d| d["manifestPath"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

type Arrivals = Arc<Mutex<HashMap<String, i64>>>;

/// Records that a message carrying `keys` arrived at `at`: the earliest
/// arrival of each key that is `expected`. Others (a run request also
/// names older updates it uses, sent by an earlier stage) are not counted,
/// or the readers would stop before the last expected keys arrived.
fn note_arrival(
    arrived: &mut HashMap<String, i64>,
    expected: &HashSet<String>,
    keys: Vec<String>,
    at: i64,
) {
    for k in keys.into_iter().filter(|k| expected.contains(k)) {
        let e = arrived.entry(k).or_insert(at);
        *e = (*e).min(at);
    }
}

/// Readers of `queue` until every `expected` key arrived or `deadline`: per
/// key (`keys_of` a message's body), the earliest `SentTimestamp`. Several
/// readers; messages are left invisible rather than deleted, so reading
/// costs one call per ten messages.
fn spawn_readers(
    aws: &AwsClients,
    queue: &str,
    keys_of: fn(&Value) -> Vec<String>,
    expected: HashSet<String>,
    deadline: Instant,
) -> (Vec<tokio::task::JoinHandle<()>>, Arrivals) {
    let arrived: Arrivals = Default::default();
    let expected = Arc::new(expected);
    let readers = (0..4)
        .map(|_| {
            let (aws, queue, arrived) = (aws.clone(), queue.to_string(), arrived.clone());
            let expected = expected.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline && arrived.lock().unwrap().len() < expected.len() {
                    let out = aws
                        .sqs
                        .receive_message()
                        .queue_url(&queue)
                        .max_number_of_messages(10)
                        .wait_time_seconds(1)
                        .visibility_timeout(900)
                        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                        .send()
                        .await;
                    let Ok(out) = out else { continue };
                    for m in out.messages.unwrap_or_default() {
                        let at = m
                            .attributes()
                            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                            .and_then(|v| v.parse::<i64>().ok());
                        let v = serde_json::from_str::<Value>(m.body().unwrap_or_default());
                        if let (Some(at), Ok(v)) = (at, v) {
                            note_arrival(&mut arrived.lock().unwrap(), &expected, keys_of(&v), at);
                        }
                    }
                }
            })
        })
        .collect();
    (readers, arrived)
}

/// The broker's own latency at the worker's rate and fan-out: `count`
/// groups of `per_update` copies of `sample` (each with its own `runId`),
/// one group every 1/`rate` s, each published through `publisher` (the
/// worker's, so the same body, attributes and PublishBatch calls) in a task
/// of its own; per group, from the start of its publish call to the
/// `SentTimestamp` of its first message on `queue`. No worker, no database.
pub async fn broker_latencies(
    aws: &AwsClients,
    publisher: Arc<SnsPublisher>,
    sample: &OutboxMessage,
    queue: &str,
    groups: (usize, usize),
    rate: f64,
    window: Duration,
) -> Result<Vec<Duration>> {
    let (count, per_update) = groups;
    let body: Value = serde_json::from_str(&sample.payload)?;
    let batches: Vec<Vec<OutboxMessage>> = (0..count)
        .map(|i| {
            (0..per_update.max(1))
                .map(|j| {
                    let mut v = body.clone();
                    v["runId"] = Value::from(format!("lat-{i}-{j}"));
                    OutboxMessage {
                        id: orchestrator_core::domain::ids::OutboxId::new(j as i64),
                        payload: v.to_string(),
                        ..sample.clone()
                    }
                })
                .collect()
        })
        .collect();
    let group_of = |v: &Value| -> Vec<String> {
        v["runId"]
            .as_str()
            .and_then(|r| r.rsplit_once('-'))
            .map(|(g, _)| vec![g.to_string()])
            .unwrap_or_default()
    };
    let groups: HashSet<String> = (0..count).map(|i| format!("lat-{i}")).collect();
    let (readers, arrived) = spawn_readers(aws, queue, group_of, groups, Instant::now() + window);
    let mut sent = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    let mut publishing = Vec::new();
    for (i, batch) in batches.into_iter().enumerate() {
        tick.tick().await;
        sent.insert(format!("lat-{i}"), now_ms());
        let publisher = publisher.clone();
        publishing.push(tokio::spawn(async move {
            publish_or_say(&publisher, &batch).await
        }));
    }
    for p in publishing {
        let _ = p.await;
    }
    for r in readers {
        let _ = r.await;
    }
    let arrived = arrived.lock().unwrap();
    Ok(between(&sent, &arrived))
}

/// The bound of (c) for the worker's whole path, without a database: on
/// the worker's SQS runtime (its default configuration, so the same long
/// polls), each update received is forwarded as `per_update` run requests
/// through the worker's publisher, then deleted. Each request is the
/// sample's body naming the update's manifest, so that [`latencies`] keys
/// it as it keys the worker's.
#[derive(Clone)]
pub struct Forward {
    publisher: Arc<SnsPublisher>,
    sample: OutboxMessage,
    /// The sample's body, parsed once rather than per update.
    body: Value,
    per_update: usize,
}

impl Forward {
    pub fn new(
        publisher: Arc<SnsPublisher>,
        sample: OutboxMessage,
        per_update: usize,
    ) -> Result<Self> {
        let body = serde_json::from_str(&sample.payload)?;
        Ok(Self {
            publisher,
            sample,
            body,
            per_update,
        })
    }

    fn requests(&self, update: &str) -> Option<Vec<OutboxMessage>> {
        let manifest = serde_json::from_str::<Value>(update).ok()?["version_manifest_path"].clone();
        let mut body = self.body.clone();
        for d in body["catalog"]["datasets"].as_object_mut()?.values_mut() {
            d["manifestPath"] = manifest.clone();
        }
        Some(
            (0..self.per_update.max(1))
                .map(|j| {
                    body["runId"] = Value::from(format!("fwd-{j}"));
                    OutboxMessage {
                        id: orchestrator_core::domain::ids::OutboxId::new(j as i64),
                        payload: body.to_string(),
                        ..self.sample.clone()
                    }
                })
                .collect(),
        )
    }
}

impl Handler for Forward {
    async fn handle(&self, msg: &InboundMessage) -> Result<Outcome, HandlerError> {
        let batch = self
            .requests(&msg.body)
            .ok_or_else(|| HandlerError::Unprocessable("not a projection update".into()))?;
        match self
            .publisher
            .publish(&batch)
            .await
            .into_iter()
            .find_map(Result::err)
        {
            None => Ok(Outcome::processed("")),
            Some(e) => Err(HandlerError::Transient(e.0.into())),
        }
    }
}

/// [`latencies`] through `stack` with [`Forward`] in the worker's place.
pub async fn forwarded_latencies(
    aws: &AwsClients,
    stack: &Stack,
    forward: Forward,
    bodies: Vec<String>,
    rate: f64,
    window: Duration,
) -> Result<Vec<Duration>> {
    let stop = CancellationToken::new();
    let cfg = ConsumerConfig::new(&stack.names.projection_updates_queue_url);
    let consumer = tokio::spawn(
        Consumer::new(aws.sqs.clone(), aws.s3.clone(), cfg, forward).run(stop.clone()),
    );
    let measured = latencies(
        aws,
        &stack.names.projection_updates_queue_url,
        &stack.names.run_requests_queue_url,
        bodies,
        rate,
        window,
    )
    .await;
    stop.cancel();
    let _ = consumer.await;
    measured
}

/// What the ceiling measurement publishes.
pub enum CeilingMessage {
    /// A run request's body alone, no message attributes.
    Body(String),
    /// A run request as the worker publishes it: through the worker's own
    /// SNS publisher, so with the same body and message attributes.
    AsPublished(Arc<SnsPublisher>, OutboxMessage),
}

impl CeilingMessage {
    /// Publishes copies `ids` (at most ten: one PublishBatch call).
    async fn publish(&self, sns: &aws_sdk_sns::Client, topic_arn: &str, ids: &[usize]) {
        match self {
            Self::Body(body) => {
                let entries = ids
                    .iter()
                    .map(|i| {
                        aws_sdk_sns::types::PublishBatchRequestEntry::builder()
                            .id(i.to_string())
                            .message(body)
                            .build()
                            .expect("id and message are set")
                    })
                    .collect();
                if let Err(e) = sns
                    .publish_batch()
                    .topic_arn(topic_arn)
                    .set_publish_batch_request_entries(Some(entries))
                    .send()
                    .await
                {
                    eprintln!("bench: PublishBatch failed: {e}");
                }
            }
            Self::AsPublished(publisher, sample) => {
                let batch: Vec<OutboxMessage> = ids
                    .iter()
                    .map(|&i| OutboxMessage {
                        id: orchestrator_core::domain::ids::OutboxId::new(i as i64),
                        ..sample.clone()
                    })
                    .collect();
                publish_or_say(publisher, &batch).await;
            }
        }
    }
}

/// Publishes through the worker's publisher; a failure is said, not fatal
/// (the measurement counts what arrives).
async fn publish_or_say(publisher: &SnsPublisher, batch: &[OutboxMessage]) {
    if let Some(Err(e)) = publisher
        .publish(batch)
        .await
        .into_iter()
        .find(|r| r.is_err())
    {
        eprintln!("bench: PublishBatch failed: {e}");
    }
}

/// Messages/s the broker carries from SNS PublishBatch to the subscribed
/// queue: `n` copies of `message`, published 10 per call from 8 tasks,
/// until all of them are on the queue (counted from its depth at the start).
pub async fn broker_ceiling(
    stack: &Stack,
    topic_arn: &str,
    queue_url: &str,
    n: usize,
    message: Arc<CeilingMessage>,
) -> Result<f64> {
    let before = stack.total_depth(queue_url).await?;
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (aws, topic, message) = (stack.aws.clone(), topic_arn.to_string(), message.clone());
            tokio::spawn(async move {
                for chunk in (0..n).filter(|i| i % 8 == t).collect::<Vec<_>>().chunks(10) {
                    message.publish(&aws.sns, &topic, chunk).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    while stack.total_depth(queue_url).await? < before + n as i64 {
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("the broker delivered fewer than {n} messages in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_expected_keys_count_and_each_keeps_its_earliest_arrival() {
        let expected: HashSet<String> = ["u1", "u2"].map(String::from).into();
        let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let mut arrived = HashMap::new();
        // (keys of a message, its arrival, the arrivals recorded after it)
        type Case<'a> = (&'a [&'a str], i64, &'a [(&'a str, i64)]);
        let cases: [Case; 4] = [
            (&["old", "u1"], 50, &[("u1", 50)]),
            (&["u1"], 40, &[("u1", 40)]),
            (&["u1", "u2"], 60, &[("u1", 40), ("u2", 60)]),
            (&["older"], 10, &[("u1", 40), ("u2", 60)]),
        ];
        for (ks, at, want) in cases {
            note_arrival(&mut arrived, &expected, keys(ks), at);
            let want: HashMap<String, i64> =
                want.iter().map(|(k, a)| (k.to_string(), *a)).collect();
            assert_eq!(arrived, want, "after {ks:?} at {at}");
        }
    }
}
