//! Dead letters: the original body, unchanged, with the error attributes of
//! docs/contracts.md; and finding the DLQ from the source queue's RedrivePolicy.

use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};

use super::SqsError;

#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub body: &'a str,
    pub error_type: &'a str,
    pub error_message: &'a str,
    pub source_queue: &'a str,
    pub source_message_id: &'a str,
    pub receive_count: u32,
    pub group_id: Option<&'a str>,
}

fn attr(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .expect("data type is set")
}

/// Error messages are cut to keep the attribute well under SQS limits.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(1024) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub async fn send(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    d: &DeadLetter<'_>,
) -> Result<(), SqsError> {
    let mut req = sqs
        .send_message()
        .queue_url(dlq_url)
        .message_body(d.body)
        .message_attributes("error_type", attr(d.error_type))
        .message_attributes("error_message", attr(clip(d.error_message)))
        .message_attributes("source_queue", attr(d.source_queue))
        .message_attributes("source_message_id", attr(d.source_message_id))
        .message_attributes("receive_count", attr(&d.receive_count.to_string()))
        .message_attributes("failed_at", attr(&chrono::Utc::now().to_rfc3339()));
    if dlq_url.ends_with(".fifo") {
        req = req
            .message_group_id(d.group_id.unwrap_or("dead-letters"))
            .message_deduplication_id(d.source_message_id);
    }
    req.send()
        .await
        .map(|_| ())
        .map_err(|e| SqsError::new(format!("SendMessage to the DLQ {dlq_url}"), e))
}

/// The DLQ URL named by the queue's RedrivePolicy, if it has one.
pub async fn from_redrive_policy(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<Option<String>, SqsError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| SqsError::new(format!("GetQueueAttributes of {queue_url}"), e))?;
    let Some(policy) = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
    else {
        return Ok(None);
    };
    let invalid =
        |what: String| SqsError::new(format!("reading the RedrivePolicy of {queue_url}"), what);
    let arn =
        dlq_arn(policy).ok_or_else(|| invalid(format!("no deadLetterTargetArn in {policy}")))?;
    let (name, account) =
        arn_name_account(&arn).ok_or_else(|| invalid(format!("unexpected DLQ ARN {arn}")))?;
    let url = sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .map_err(|e| SqsError::new(format!("GetQueueUrl of {name}"), e))?;
    Ok(url.queue_url().map(str::to_string))
}

fn dlq_arn(policy: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(policy).ok()?;
    v.get("deadLetterTargetArn")?.as_str().map(str::to_string)
}

/// `arn:aws:sqs:REGION:ACCOUNT:NAME` → (NAME, ACCOUNT).
fn arn_name_account(arn: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    (parts.len() == 6 && parts[2] == "sqs").then(|| (parts[5], parts[4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policy_names_the_dlq() {
        let p = r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:updates-dlq","maxReceiveCount":"5"}"#;
        let arn = dlq_arn(p).unwrap();
        assert_eq!(
            arn_name_account(&arn),
            Some(("updates-dlq", "000000000000"))
        );
        assert_eq!(dlq_arn("{}"), None);
        assert_eq!(arn_name_account("arn:aws:sns:r:1:t"), None);
        assert_eq!(clip(&"é".repeat(2000)).chars().count(), 1024);
    }
}
