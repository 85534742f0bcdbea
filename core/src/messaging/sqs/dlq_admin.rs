//! Operator access to dead letters (`orchestrator dlq list|redrive`): list
//! them with their error attributes (docs/contracts.md) without consuming them, and move
//! them back to their source queue after a fix.

use std::collections::HashMap;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
};
use serde::Serialize;

use super::SqsError;

/// A failure written into a report line.
fn err(e: impl Into<aws_sdk_sqs::Error>) -> String {
    let e: aws_sdk_sqs::Error = e.into();
    crate::ground::errors::chain(&e)
}

/// A dead letter as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    pub message_id: String,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub source_queue: Option<String>,
    pub source_message_id: Option<String>,
    pub receive_count: Option<String>,
    pub failed_at: Option<String>,
    pub group_id: Option<String>,
    pub body: String,
    #[serde(skip)]
    receipt: String,
}

impl DeadLetterView {
    fn from_message(m: &Message) -> Self {
        let attrs: HashMap<&str, &str> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .filter_map(|(k, v)| v.string_value().map(|s| (k.as_str(), s)))
                    .collect()
            })
            .unwrap_or_default();
        let get = |k: &str| attrs.get(k).map(|s| s.to_string());
        DeadLetterView {
            message_id: m.message_id().unwrap_or_default().to_string(),
            error_type: get("error_type"),
            error_message: get("error_message"),
            source_queue: get("source_queue"),
            source_message_id: get("source_message_id"),
            receive_count: get("receive_count"),
            failed_at: get("failed_at"),
            group_id: m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned(),
            body: m.body().unwrap_or_default().to_string(),
            receipt: m.receipt_handle().unwrap_or_default().to_string(),
        }
    }
}

/// Reads up to `max` dead letters, hiding each for `hold_secs` while the
/// listing runs so that none is read twice.
async fn take(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: usize,
    hold_secs: i32,
) -> Result<Vec<DeadLetterView>, SqsError> {
    let mut out: Vec<DeadLetterView> = Vec::new();
    while out.len() < max {
        let got = sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages((max - out.len()).min(10) as i32)
            .wait_time_seconds(1)
            .visibility_timeout(hold_secs)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| SqsError::new(format!("ReceiveMessage on {dlq_url}"), e))?;
        let msgs = got.messages.unwrap_or_default();
        if msgs.is_empty() {
            break;
        }
        out.extend(msgs.iter().map(DeadLetterView::from_message));
    }
    Ok(out)
}

/// Makes listed-but-untouched dead letters visible again at once.
async fn release(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    letters: &[&DeadLetterView],
) -> Result<(), SqsError> {
    for chunk in letters.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, l)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&l.receipt)
                    .visibility_timeout(0)
                    .build()
                    .map_err(|e| SqsError::new("building ChangeMessageVisibilityBatch", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = sqs
            .change_message_visibility_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| SqsError::new(format!("ChangeMessageVisibilityBatch on {dlq_url}"), e))?;
        if let Some(f) = out.failed().first() {
            return Err(SqsError::new(
                format!("releasing a dead letter on {dlq_url}"),
                format!("{}: {}", f.code(), f.message().unwrap_or("no message")),
            ));
        }
    }
    Ok(())
}

/// Up to `max` dead letters, left on the DLQ.
pub async fn list(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: usize,
) -> Result<Vec<DeadLetterView>, SqsError> {
    let letters = take(sqs, dlq_url, max, 30).await?;
    release(sqs, dlq_url, &letters.iter().collect::<Vec<_>>()).await?;
    Ok(letters)
}

#[derive(Debug, Clone, Default)]
pub struct RedriveOptions {
    pub dlq_url: String,
    /// Target queue; default: each letter's `source_queue` attribute.
    pub to: Option<String>,
    /// Only letters with this `error_type`.
    pub error_type: Option<String>,
    pub max: usize,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveReport {
    /// (message id, target queue) moved, or that would be moved in a dry run.
    pub moved: Vec<(String, String)>,
    pub skipped: usize,
    /// (message id, why) left on the DLQ.
    pub failed: Vec<(String, String)>,
}

/// Sends each selected dead letter's original body back to its source queue,
/// then deletes it from the DLQ (send first: a crash in between duplicates a
/// message, which the workers recognise, rather than losing it).
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    opts: &RedriveOptions,
) -> Result<RedriveReport, SqsError> {
    let letters = take(sqs, &opts.dlq_url, opts.max, 60).await?;
    let mut report = RedriveReport::default();
    let mut untouched: Vec<&DeadLetterView> = Vec::new();
    for l in &letters {
        let selected = opts
            .error_type
            .as_deref()
            .is_none_or(|t| l.error_type.as_deref() == Some(t));
        let target = opts.to.clone().or_else(|| l.source_queue.clone());
        let Some(target) = target.filter(|_| selected) else {
            if selected {
                report.failed.push((
                    l.message_id.clone(),
                    "no source_queue attribute; pass --to".into(),
                ));
            } else {
                report.skipped += 1;
            }
            untouched.push(l);
            continue;
        };
        if opts.dry_run {
            report.moved.push((l.message_id.clone(), target));
            untouched.push(l);
            continue;
        }
        let mut req = sqs.send_message().queue_url(&target).message_body(&l.body);
        if target.ends_with(".fifo") {
            req = req
                .message_group_id(l.group_id.as_deref().unwrap_or("redrive"))
                .message_deduplication_id(format!("redrive-{}", l.message_id));
        }
        if let Err(e) = req.send().await {
            report.failed.push((l.message_id.clone(), err(e)));
            untouched.push(l);
            continue;
        }
        match sqs
            .delete_message()
            .queue_url(&opts.dlq_url)
            .receipt_handle(&l.receipt)
            .send()
            .await
        {
            Ok(_) => report.moved.push((l.message_id.clone(), target)),
            Err(e) => report.failed.push((
                l.message_id.clone(),
                format!("sent, but still on the DLQ: {}", err(e)),
            )),
        }
    }
    release(sqs, &opts.dlq_url, &untouched).await?;
    Ok(report)
}
