//! Deleting handled messages in batches of up to ten: requests are buffered
//! for at most a few milliseconds to fill a batch, each entry of the answer
//! is checked, and failed entries are retried one by one.

use std::time::Duration;

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use tokio::sync::{mpsc, oneshot};

/// SQS takes at most ten entries per DeleteMessageBatch.
const BATCH: usize = 10;
/// How long a pending delete waits for others to share its batch.
const FILL_WAIT: Duration = Duration::from_millis(10);

/// A message to delete: its id (for logs) and receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub message_id: String,
    pub receipt: String,
}

enum Request {
    Delete(Delete),
    /// Answered once everything requested before it is deleted.
    Flush(oneshot::Sender<()>),
}

/// The sending side, held by message tasks.
#[derive(Clone)]
pub struct Deleter {
    tx: mpsc::UnboundedSender<Request>,
}

impl Deleter {
    /// Starts the batching task for `queue`; it ends when every [`Deleter`]
    /// is dropped, after deleting what is pending.
    pub fn start(
        sqs: aws_sdk_sqs::Client,
        queue: String,
    ) -> (Deleter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Deleter { tx }, tokio::spawn(run(sqs, queue, rx)))
    }

    pub fn delete(&self, d: Delete) {
        let _ = self.tx.send(Request::Delete(d));
    }

    /// Waits until every delete requested so far has been sent.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Request::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Pending deletes, cut into batches.
#[derive(Debug, Default)]
struct Pending(Vec<Delete>);

impl Pending {
    fn push(&mut self, d: Delete) {
        self.0.push(d);
    }

    fn is_full(&self) -> bool {
        self.0.len() >= BATCH
    }

    /// Everything pending, in batches of at most ten, in order.
    fn take_batches(&mut self) -> Vec<Vec<Delete>> {
        let all = std::mem::take(&mut self.0);
        all.chunks(BATCH).map(<[Delete]>::to_vec).collect()
    }
}

/// The DeleteMessageBatch entries of a batch; entry ids are the indexes.
fn entries(batch: &[Delete]) -> Vec<DeleteMessageBatchRequestEntry> {
    batch
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(&d.receipt)
                .build()
                .ok()
        })
        .collect()
}

/// Indexes of the batch to retry alone, from the failed entries' ids
/// (ids that are not indexes of the batch are ignored).
fn to_retry<'a>(failed_ids: impl IntoIterator<Item = &'a str>, len: usize) -> Vec<usize> {
    let mut v: Vec<usize> = failed_ids
        .into_iter()
        .filter_map(|id| id.parse().ok())
        .filter(|&i| i < len)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

async fn run(sqs: aws_sdk_sqs::Client, queue: String, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut pending = Pending::default();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        let (next, waited_out) = if pending.0.is_empty() {
            (rx.recv().await, false)
        } else {
            match tokio::time::timeout(FILL_WAIT, rx.recv()).await {
                Ok(r) => (r, false),
                Err(_) => (None, true),
            }
        };
        let closed = next.is_none() && !waited_out;
        match next {
            Some(Request::Delete(d)) => pending.push(d),
            Some(Request::Flush(done)) => flushes.push(done),
            None => {}
        }
        if pending.is_full() || !flushes.is_empty() || waited_out || closed {
            for batch in pending.take_batches() {
                send(&sqs, &queue, &batch).await;
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
        if closed {
            return;
        }
    }
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, batch: &[Delete]) {
    let retry = match sqs
        .delete_message_batch()
        .queue_url(queue)
        .set_entries(Some(entries(batch)))
        .send()
        .await
    {
        Ok(out) => to_retry(out.failed().iter().map(|f| f.id()), batch.len()),
        Err(e) => {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(e), "batch delete failed; deleting one by one");
            (0..batch.len()).collect()
        }
    };
    for i in retry {
        let d = &batch[i];
        if let Err(e) = sqs
            .delete_message()
            .queue_url(queue)
            .receipt_handle(&d.receipt)
            .send()
            .await
        {
            tracing::error!(message_id = %d.message_id, error = %aws_sdk_sqs::error::DisplayErrorContext(e),
                "could not delete a handled message; it will be redelivered (processing is idempotent)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(i: usize) -> Delete {
        Delete {
            message_id: format!("m{i}"),
            receipt: format!("r{i}"),
        }
    }

    #[test]
    fn pending_deletes_are_cut_into_batches_of_ten_in_order() {
        // (pending, batch sizes)
        let cases: [(usize, &[usize]); 5] = [
            (0, &[]),
            (1, &[1]),
            (10, &[10]),
            (11, &[10, 1]),
            (25, &[10, 10, 5]),
        ];
        for (n, sizes) in cases {
            let mut p = Pending::default();
            (0..n).for_each(|i| p.push(d(i)));
            assert_eq!(p.is_full(), n >= 10, "{n}");
            let batches = p.take_batches();
            let got: Vec<usize> = batches.iter().map(Vec::len).collect();
            assert_eq!(got, sizes, "{n}");
            let order: Vec<Delete> = batches.into_iter().flatten().collect();
            assert_eq!(order, (0..n).map(d).collect::<Vec<_>>());
            assert!(p.take_batches().is_empty(), "taking empties it");
        }
    }

    #[test]
    fn entries_carry_their_index_and_receipt() {
        let batch: Vec<Delete> = (0..3).map(d).collect();
        let e = entries(&batch);
        let got: Vec<(&str, &str)> = e.iter().map(|e| (e.id(), e.receipt_handle())).collect();
        assert_eq!(got, [("0", "r0"), ("1", "r1"), ("2", "r2")]);
    }

    #[test]
    fn failed_entries_are_retried_by_index_once() {
        let cases: [(&[&str], usize, &[usize]); 5] = [
            (&[], 3, &[]),
            (&["1"], 3, &[1]),
            (&["2", "0", "2"], 3, &[0, 2]),
            (&["7", "x", "-1"], 3, &[]),
            (&["9"], 10, &[9]),
        ];
        for (ids, len, want) in cases {
            assert_eq!(to_retry(ids.iter().copied(), len), want, "{ids:?}");
        }
    }
}
