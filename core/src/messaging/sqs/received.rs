//! A received SQS message, read once: its system attributes, its string
//! message attributes, the event text inside an SNS envelope, the W3C trace
//! context (on the message or in the envelope), and whether the event is an
//! AWS Extended Client pointer to S3. No I/O here: fetching a pointed-to body
//! is the loop's job.

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::domain::trace::TraceContext;
use crate::messaging::s3::{self, Pointer};

/// What the loop needs to know about a message before handling it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    /// The body exactly as received (dead letters keep it unchanged).
    pub raw: String,
    /// The event's text: the SNS envelope's `Message`, else the body.
    pub event: String,
    /// Where the event really is when `event` is an Extended Client pointer.
    pub pointer: Option<Pointer>,
    pub receive_count: u32,
    pub group_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// String message attributes.
    pub attributes: HashMap<String, String>,
    pub trace: TraceContext,
}

/// A message SQS handed over without a receipt handle cannot be
/// acknowledged; it is left to reappear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message {message_id} has no receipt handle")]
pub struct NoReceipt {
    pub message_id: String,
}

/// The parts of an SNS notification this fleet reads.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "MessageAttributes", default)]
    attributes: HashMap<String, EnvelopeAttribute>,
}

#[derive(Deserialize)]
struct EnvelopeAttribute {
    #[serde(rename = "Value")]
    value: Option<String>,
}

/// The body's SNS envelope, when it is a well-formed one. Anything else
/// (including a malformed envelope) is handed on as it is, for the event
/// parser to accept or reject with a reason.
fn envelope(body: &str) -> Option<Envelope> {
    // Cheap test first: most bodies on a raw-delivery queue are not envelopes.
    if !body.contains("Notification") {
        return None;
    }
    serde_json::from_str::<Envelope>(body)
        .ok()
        .filter(|e| e.kind == "Notification")
}

impl Received {
    pub fn parse(m: &Message) -> Result<Received, NoReceipt> {
        let message_id = m.message_id().unwrap_or_default().to_string();
        let Some(receipt) = m.receipt_handle().map(str::to_string) else {
            return Err(NoReceipt { message_id });
        };
        let sys = m.attributes();
        let system = |name: MessageSystemAttributeName| sys.and_then(|a| a.get(&name));
        let attributes: HashMap<String, String> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let raw = m.body().unwrap_or_default().to_string();
        let envelope = envelope(&raw);
        let traceparent = attributes.get("traceparent").cloned().or_else(|| {
            envelope
                .as_ref()
                .and_then(|e| e.attributes.get("traceparent")?.value.clone())
        });
        let event = envelope.map_or_else(|| raw.clone(), |e| e.message);
        Ok(Received {
            message_id,
            receipt,
            pointer: s3::parse_pointer(&event),
            event,
            raw,
            receive_count: system(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            group_id: system(MessageSystemAttributeName::MessageGroupId).cloned(),
            sent_at: system(MessageSystemAttributeName::SentTimestamp)
                .and_then(|v| v.parse::<i64>().ok())
                .and_then(DateTime::from_timestamp_millis),
            attributes,
            trace: traceparent
                .and_then(|h| TraceContext::parse(&h))
                .unwrap_or_else(TraceContext::new_root),
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::types::MessageAttributeValue;
    use serde_json::json;

    use super::*;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn message(body: &str) -> aws_sdk_sqs::types::builders::MessageBuilder {
        Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body(body)
    }

    fn envelope_of(inner: &str, traceparent: Option<&str>) -> String {
        let mut v = json!({"Type": "Notification", "MessageId": "x", "Message": inner});
        if let Some(t) = traceparent {
            v["MessageAttributes"] = json!({"traceparent": {"Type": "String", "Value": t}});
        }
        v.to_string()
    }

    #[test]
    fn bodies_are_read_into_event_text_pointer_and_trace() {
        let pointer = s3::pointer_body(&Pointer {
            bucket: "b".into(),
            key: "k".into(),
        });
        // (body, event text, pointer?, trace id from the envelope?)
        let cases: Vec<(String, String, bool, bool)> = vec![
            (
                r#"{"event":"x"}"#.into(),
                r#"{"event":"x"}"#.into(),
                false,
                false,
            ),
            (
                envelope_of(r#"{"event":"x"}"#, None),
                r#"{"event":"x"}"#.into(),
                false,
                false,
            ),
            (
                envelope_of(r#"{"event":"x"}"#, Some(TRACEPARENT)),
                r#"{"event":"x"}"#.into(),
                false,
                true,
            ),
            (pointer.clone(), pointer.clone(), true, false),
            (envelope_of(&pointer, None), pointer.clone(), true, false),
            // A malformed envelope is passed on as it is, for the parser to reject.
            (
                r#"{"Type":"Notification","Message":3}"#.into(),
                r#"{"Type":"Notification","Message":3}"#.into(),
                false,
                false,
            ),
            ("not json".into(), "not json".into(), false, false),
            (String::new(), String::new(), false, false),
        ];
        for (body, event, has_pointer, traced) in cases {
            let r = Received::parse(&message(&body).build()).unwrap();
            assert_eq!(r.raw, body);
            assert_eq!(r.event, event, "{body}");
            assert_eq!(r.pointer.is_some(), has_pointer, "{body}");
            let from_envelope = r.trace.trace_id == "0af7651916cd43dd8448eb211c80319c";
            assert_eq!(from_envelope, traced, "{body}");
        }
    }

    #[test]
    fn the_message_attribute_traceparent_wins_over_the_envelope() {
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let m = message(&envelope_of("{}", Some(other)))
            .message_attributes(
                "traceparent",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(TRACEPARENT)
                    .build()
                    .unwrap(),
            )
            .build();
        let r = Received::parse(&m).unwrap();
        assert_eq!(r.trace.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(r.attributes["traceparent"], TRACEPARENT);
    }

    #[test]
    fn system_attributes_are_read_with_defaults() {
        let m = message("{}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "3")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g")
            .attributes(MessageSystemAttributeName::SentTimestamp, "1700000000000")
            .build();
        let r = Received::parse(&m).unwrap();
        assert_eq!(r.receive_count, 3);
        assert_eq!(r.group_id.as_deref(), Some("g"));
        assert_eq!(r.sent_at.unwrap().timestamp(), 1_700_000_000);
        let bare = Received::parse(&message("{}").build()).unwrap();
        assert_eq!(
            (bare.receive_count, bare.group_id, bare.sent_at),
            (1, None, None)
        );
    }

    #[test]
    fn a_message_without_a_receipt_is_refused() {
        let m = Message::builder().message_id("m-9").body("{}").build();
        assert_eq!(
            Received::parse(&m).unwrap_err(),
            NoReceipt {
                message_id: "m-9".into()
            }
        );
    }
}
