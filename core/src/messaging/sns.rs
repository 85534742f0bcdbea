//! Publishes run requests to the run-requests topic and alerts to the alerts
//! topic (docs/contracts.md): PublishBatch in chunks of ten, FIFO group and
//! deduplication ids, the message attributes subscribers filter on, and S3
//! offload above the SNS size limit.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::publisher::{PublishError, Publisher};
use super::s3::{self, MESSAGE_LIMIT, SIZE_ATTRIBUTE};
use crate::domain::events::EventType;
use crate::domain::outgoing::{OutboxMessage, Outgoing};
use sha2::Digest;

/// Room left under the limit for the message attributes.
const ATTRIBUTE_ROOM: usize = 4 * 1024;

#[derive(Clone)]
pub struct SnsPublisher {
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
    pub topic_arn: String,
    /// Where alerts go (`ALERTS_TOPIC_ARN`); without it none are written.
    pub alerts_topic_arn: Option<String>,
    /// Where payloads over the limit are stored (`LARGE_PAYLOAD_BUCKET`).
    pub large_payload_bucket: String,
}

fn is_fifo(arn: &str) -> bool {
    arn.ends_with(".fifo")
}

impl SnsPublisher {
    pub fn fifo(&self) -> bool {
        is_fifo(&self.topic_arn)
    }
}

fn attr(value: &str) -> MessageAttributeValue {
    // The builder only fails without a data type, which is always set here.
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

impl SnsPublisher {
    async fn entry(
        &self,
        index: usize,
        m: &OutboxMessage,
        fifo: bool,
    ) -> Result<PublishBatchRequestEntry, PublishError> {
        let b = match &m.kind {
            Outgoing::RunRequest {
                run_id,
                metric_code,
                message_group_id,
            } => {
                let b = self.request_entry(index, m, run_id, metric_code).await?;
                if fifo {
                    b.message_group_id(
                        message_group_id
                            .clone()
                            .unwrap_or_else(|| metric_code.clone()),
                    )
                    .message_deduplication_id(run_id.as_str())
                } else {
                    b
                }
            }
            Outgoing::Alert {
                alert_type,
                dedup_key,
            } => {
                let subject = alert_subject(&m.payload);
                let b = PublishBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message(m.payload.clone())
                    .message_attributes("alert_type", attr(alert_type.as_str()))
                    .message_attributes("subject", attr(&subject));
                if fifo {
                    // SNS takes at most 128 characters: the key's digest.
                    let digest = hex::encode(sha2::Sha256::digest(dedup_key.as_bytes()));
                    b.message_group_id(alert_type.as_str())
                        .message_deduplication_id(digest)
                } else {
                    b
                }
            }
        };
        let b = match &m.traceparent {
            Some(tp) => b.message_attributes("traceparent", attr(tp)),
            None => b,
        };
        b.build().map_err(|e| PublishError(e.to_string()))
    }

    async fn request_entry(
        &self,
        index: usize,
        m: &OutboxMessage,
        run_id: &crate::domain::ids::RunId,
        metric_code: &str,
    ) -> Result<aws_sdk_sns::types::builders::PublishBatchRequestEntryBuilder, PublishError> {
        let mut body = m.payload.clone();
        let mut extra = None;
        if body.len() > MESSAGE_LIMIT - ATTRIBUTE_ROOM {
            let key = format!("run-requests/{run_id}.json");
            let pointer = s3::offload(&self.s3, &self.large_payload_bucket, &key, &m.payload)
                .await
                .map_err(|e| PublishError(crate::ground::errors::chain(&e)))?;
            extra = Some(m.payload.len().to_string());
            body = s3::pointer_body(&pointer);
        }
        let b = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(body)
            .message_attributes("event_type", attr(EventType::MetricRunRequested.as_str()))
            .message_attributes("metric_code", attr(metric_code))
            .message_attributes("run_id", attr(run_id.as_str()))
            // What the reference runner reads and filters on.
            .message_attributes("type", attr(EventType::MetricRunRequested.as_str()))
            .message_attributes("metricCode", attr(metric_code));
        Ok(match extra {
            Some(size) => b.message_attributes(SIZE_ATTRIBUTE, attr(&size)),
            None => b,
        })
    }
}

/// The alert's subject for the `subject` attribute: the dataset, metric or
/// run it is about, the backfill, or the queue; failing those its type (SNS refuses an
/// empty attribute, and an alert must not be stuck on one).
fn alert_subject(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    [
        "datasetId",
        "metricId",
        "backfillId",
        "runId",
        "queue",
        "type",
    ]
    .iter()
    .find_map(|k| v.get(*k).and_then(|s| s.as_str()).filter(|s| !s.is_empty()))
    .unwrap_or("alert")
    .to_string()
}

impl SnsPublisher {
    /// One PublishBatch call for up to ten messages; a result per message.
    async fn publish_chunk(
        &self,
        topic_arn: &str,
        chunk: &[&OutboxMessage],
    ) -> Vec<Result<(), PublishError>> {
        let mut slots: Vec<Option<Result<(), PublishError>>> = vec![None; chunk.len()];
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            match self.entry(i, m, is_fifo(topic_arn)).await {
                Ok(e) => entries.push(e),
                Err(e) => slots[i] = Some(Err(e)),
            }
        }
        if !entries.is_empty() {
            let sent = self
                .sns
                .publish_batch()
                .topic_arn(topic_arn)
                .set_publish_batch_request_entries(Some(entries))
                .send()
                .await;
            match sent {
                Ok(out) => {
                    for ok in out.successful() {
                        if let Some(i) = ok.id().and_then(|id| id.parse::<usize>().ok()) {
                            slots[i] = Some(Ok(()));
                        }
                    }
                    for failed in out.failed() {
                        if let Ok(i) = failed.id().parse::<usize>() {
                            let msg = format!(
                                "{}: {}",
                                failed.code(),
                                failed.message().unwrap_or_default()
                            );
                            slots[i] = Some(Err(PublishError(msg)));
                        }
                    }
                }
                Err(e) => {
                    let msg = aws_sdk_sns::error::DisplayErrorContext(e).to_string();
                    for slot in slots.iter_mut().filter(|s| s.is_none()) {
                        *slot = Some(Err(PublishError(msg.clone())));
                    }
                }
            }
        }
        slots
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    Err(PublishError(
                        "no result for this entry in the PublishBatch response".into(),
                    ))
                })
            })
            .collect()
    }
}

impl SnsPublisher {
    /// Publishes to one topic; a result per message, in order.
    async fn publish_to(
        &self,
        topic_arn: &str,
        batch: &[&OutboxMessage],
    ) -> Vec<Result<(), PublishError>> {
        if is_fifo(topic_arn) {
            // One chunk after another keeps each message group's order.
            let mut results = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(10) {
                results.extend(self.publish_chunk(topic_arn, chunk).await);
            }
            return results;
        }
        // A standard topic promises no order: the chunks go at once, so a
        // batch of ~33 run requests takes one round trip instead of four.
        futures::future::join_all(batch.chunks(10).map(|c| self.publish_chunk(topic_arn, c)))
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

impl Publisher for SnsPublisher {
    async fn publish(&self, batch: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        type Indexed<'a> = Vec<(usize, &'a OutboxMessage)>;
        let (alerts, requests): (Indexed, Indexed) = batch
            .iter()
            .enumerate()
            .partition(|(_, m)| matches!(m.kind, Outgoing::Alert { .. }));
        let mut results: Vec<Result<(), PublishError>> =
            vec![Err(PublishError("not published".into())); batch.len()];
        let requests_only: Vec<&OutboxMessage> = requests.iter().map(|(_, m)| *m).collect();
        let sent = self.publish_to(&self.topic_arn, &requests_only).await;
        for ((i, _), r) in requests.iter().zip(sent) {
            results[*i] = r;
        }
        if alerts.is_empty() {
            return results;
        }
        let Some(alerts_topic) = &self.alerts_topic_arn else {
            for (i, _) in &alerts {
                results[*i] = Err(PublishError(
                    "an alert is queued but ALERTS_TOPIC_ARN is not set".into(),
                ));
            }
            return results;
        };
        let alerts_only: Vec<&OutboxMessage> = alerts.iter().map(|(_, m)| *m).collect();
        let sent = self.publish_to(alerts_topic, &alerts_only).await;
        for ((i, _), r) in alerts.iter().zip(sent) {
            results[*i] = r;
        }
        results
    }
}

#[cfg(test)]
mod tests {
    use super::alert_subject;

    #[test]
    fn every_alert_has_a_subject_sns_accepts() {
        for (payload, want) in [
            (r#"{"type": "dataset_late", "datasetId": "d1"}"#, "d1"),
            (
                r#"{"type": "metric_definition_changed", "metricId": "m1", "runId": "r"}"#,
                "m1",
            ),
            (r#"{"type": "run_failed", "runId": "r1"}"#, "r1"),
            (
                r#"{"type": "backfill_failed", "backfillId": "bf-1", "failedPoint": {"runId": "r"}}"#,
                "bf-1",
            ),
            (r#"{"type": "message_dead_lettered", "queue": "q"}"#, "q"),
            (
                r#"{"type": "some_new_alert", "metricId": ""}"#,
                "some_new_alert",
            ),
            ("not json", "alert"),
        ] {
            assert_eq!(alert_subject(payload), want, "{payload}");
        }
    }
}
