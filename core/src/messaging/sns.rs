//! Publishes run requests to the run-requests topic (docs/contracts.md): PublishBatch
//! in chunks of ten, FIFO group and deduplication ids, the message attributes
//! operators filter on, and S3 offload above the SNS size limit.

use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};

use super::publisher::{PublishError, Publisher};
use super::s3::{self, MESSAGE_LIMIT, SIZE_ATTRIBUTE};
use crate::domain::events::EventType;
use crate::domain::outgoing::OutboxMessage;

/// Room left under the limit for the message attributes.
const ATTRIBUTE_ROOM: usize = 4 * 1024;

pub struct SnsPublisher {
    pub sns: aws_sdk_sns::Client,
    pub s3: aws_sdk_s3::Client,
    pub topic_arn: String,
    /// Where payloads over the limit are stored (`LARGE_PAYLOAD_BUCKET`).
    pub large_payload_bucket: String,
}

impl SnsPublisher {
    pub fn fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
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
    ) -> Result<PublishBatchRequestEntry, PublishError> {
        let mut body = m.payload.clone();
        let mut extra = None;
        if body.len() > MESSAGE_LIMIT - ATTRIBUTE_ROOM {
            let key = format!("run-requests/{}.json", m.run_id);
            let pointer = s3::offload(&self.s3, &self.large_payload_bucket, &key, &m.payload)
                .await
                .map_err(|e| PublishError(crate::errors::chain(&e)))?;
            extra = Some(m.payload.len().to_string());
            body = s3::pointer_body(&pointer);
        }
        let mut b = PublishBatchRequestEntry::builder()
            .id(index.to_string())
            .message(body)
            .message_attributes("event_type", attr(EventType::MetricRunRequested.as_str()))
            .message_attributes("metric_code", attr(&m.metric_code))
            .message_attributes("run_id", attr(m.run_id.as_str()))
            // What the reference runner reads and filters on.
            .message_attributes("type", attr(EventType::MetricRunRequested.as_str()))
            .message_attributes("metricCode", attr(&m.metric_code));
        if let Some(size) = extra {
            b = b.message_attributes(SIZE_ATTRIBUTE, attr(&size));
        }
        if let Some(tp) = &m.traceparent {
            b = b.message_attributes("traceparent", attr(tp));
        }
        if self.fifo() {
            b = b
                .message_group_id(
                    m.message_group_id
                        .clone()
                        .unwrap_or_else(|| m.metric_code.clone()),
                )
                .message_deduplication_id(m.run_id.as_str());
        }
        b.build().map_err(|e| PublishError(e.to_string()))
    }
}

impl SnsPublisher {
    /// One PublishBatch call for up to ten messages; a result per message.
    async fn publish_chunk(&self, chunk: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        let mut slots: Vec<Option<Result<(), PublishError>>> = vec![None; chunk.len()];
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            match self.entry(i, m).await {
                Ok(e) => entries.push(e),
                Err(e) => slots[i] = Some(Err(e)),
            }
        }
        if !entries.is_empty() {
            let sent = self
                .sns
                .publish_batch()
                .topic_arn(&self.topic_arn)
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

impl Publisher for SnsPublisher {
    async fn publish(&self, batch: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        if self.fifo() {
            // One chunk after another keeps each message group's order.
            let mut results = Vec::with_capacity(batch.len());
            for chunk in batch.chunks(10) {
                results.extend(self.publish_chunk(chunk).await);
            }
            return results;
        }
        // A standard topic promises no order: the chunks go at once, so a
        // batch of ~33 run requests takes one round trip instead of four.
        futures::future::join_all(batch.chunks(10).map(|c| self.publish_chunk(c)))
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}
