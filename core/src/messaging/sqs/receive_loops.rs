//! The receive loops: how a consumer asks SQS for messages and starts
//! their tasks. Two kinds, chosen once by [`Handler::batches`]:
//! [`one_by_one_loop`] (a task per message or FIFO group) and
//! [`batching_loop`] (a task per receive). Both wait for the backpressure
//! gate before each receive and pause after a failed one; at most
//! `concurrency` messages are handled at once either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::consumer::Shared;
use super::outcome::Handler;

pub(super) fn lock(tasks: &Mutex<JoinSet<()>>) -> std::sync::MutexGuard<'_, JoinSet<()>> {
    // A panic while the lock is held cannot leave the set half-changed.
    tasks.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a receive loop works with: the consumer's shared state, the slots
/// of messages in flight (`concurrency`), the set of message tasks, and the
/// shutdown signal.
pub(super) struct LoopParts<H> {
    pub shared: Arc<Shared<H>>,
    pub slots: Arc<Semaphore>,
    pub tasks: Arc<Mutex<JoinSet<()>>>,
    pub shutdown: CancellationToken,
}

/// What a receive gave a loop.
enum Receipt {
    Messages(Vec<Message>),
    /// The receive failed and the pause after it is over: receive again.
    Again,
    Stop,
}

/// Waits until the backpressure gate (if any) lets the loop receive;
/// `false` on shutdown.
async fn gate_open<H: Handler>(shared: &Shared<H>, shutdown: &CancellationToken) -> bool {
    let Some(gate) = &shared.gate else {
        return true;
    };
    tokio::select! {
        _ = gate.wait_below_limit() => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Receives up to `want` messages; after a failure, pauses (doubling with
/// each failure in a row, counted in `failures`) before the loop goes on.
async fn receive<H: Handler>(
    shared: &Shared<H>,
    want: i32,
    failures: &mut u32,
    shutdown: &CancellationToken,
) -> Receipt {
    let received = tokio::select! {
        r = shared.receive(want) => r,
        _ = shutdown.cancelled() => return Receipt::Stop,
    };
    match received {
        Ok(m) => {
            *failures = 0;
            Receipt::Messages(m)
        }
        Err(e) => {
            *failures += 1;
            let pause = Duration::from_millis(200u64 << (*failures).min(7));
            tracing::warn!(error = %crate::ground::errors::chain(&e), retry_in_ms = pause.as_millis() as u64, "receiving from SQS failed");
            tokio::select! {
                _ = tokio::time::sleep(pause) => Receipt::Again,
                _ = shutdown.cancelled() => Receipt::Stop,
            }
        }
    }
}

/// The receive loop of a handler that takes messages one by one: waits for
/// a free slot, receives more than that ([`receive_size`]: the extra ones
/// wait in memory for a slot), and starts a task per message, or per FIFO
/// group with its messages in order. Several run at once ([`receivers`]).
pub(super) async fn one_by_one_loop<H: Handler>(parts: LoopParts<H>) {
    let LoopParts {
        shared,
        slots,
        tasks,
        shutdown,
    } = parts;
    let mut failures = 0u32;
    while gate_open(&shared, &shutdown).await {
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let want = receive_size(slots.available_permits(), shared.config.concurrency);
        let messages = match receive(&shared, want, &mut failures, &shutdown).await {
            Receipt::Messages(m) => m,
            Receipt::Again => continue,
            Receipt::Stop => return,
        };
        let mut first = Some(first);
        for group in groups(messages) {
            let slot = match first.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let shared = shared.clone();
            lock(&tasks).spawn(async move {
                for m in group {
                    shared.process(m).await;
                }
                drop(slot);
            });
        }
        reap(&tasks);
    }
}

/// The receive loop of a batching handler: asks for a full batch
/// ([`batch_size`]) holding no slot while it waits on the broker, so that
/// its receive overlaps the batch being handled, then takes a slot per
/// message and hands the whole receive to one task (one transaction).
/// Several run at once ([`receivers`]).
pub(super) async fn batching_loop<H: Handler>(parts: LoopParts<H>) {
    let LoopParts {
        shared,
        slots,
        tasks,
        shutdown,
    } = parts;
    let mut failures = 0u32;
    while gate_open(&shared, &shutdown).await {
        let want = batch_size(shared.config.concurrency);
        let messages = match receive(&shared, want, &mut failures, &shutdown).await {
            Receipt::Messages(m) if m.is_empty() => continue,
            Receipt::Messages(m) => m,
            Receipt::Again => continue,
            Receipt::Stop => return,
        };
        // A slot per message before any is handled: at most `concurrency`
        // messages are handled at once. They wait in memory for about one
        // batch's time, well inside their visibility timeout; a loop
        // receives again only once they have started, so at most one
        // receive per loop waits. On a shutdown they are still handled, by
        // the drain and within its grace period, once the batches in
        // progress are done.
        let n = messages.len() as u32;
        let held = tokio::select! {
            p = slots.clone().acquire_many_owned(n) => match p { Ok(p) => Some(p), Err(_) => return },
            _ = shutdown.cancelled() => None,
        };
        let stopping = held.is_none();
        let (batch_shared, slots) = (shared.clone(), slots.clone());
        lock(&tasks).spawn(async move {
            let held = match held {
                Some(p) => p,
                None => match slots.acquire_many_owned(n).await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            batch_shared.process_batch(messages).await;
            drop(held);
        });
        reap(&tasks);
        if stopping {
            return;
        }
    }
}

/// Collects the tasks that finished.
fn reap(tasks: &Mutex<JoinSet<()>>) {
    while let Some(done) = lock(tasks).try_join_next() {
        if let Err(e) = done {
            tracing::error!(error = %e, "a message task failed; its message will be redelivered");
        }
    }
}

/// How many receive loops a worker runs for `concurrency` messages in
/// flight: one per four slots, at most four. With one loop, the worker
/// stood idle during every ReceiveMessage round trip, which takes longer
/// than handling a message; a second loop receives while the first batch
/// is handled. A loop that hands messages out one by one holds a slot while
/// it waits; a batching loop holds none, and takes a slot per message
/// before they are handled. Either way at most `concurrency` messages are
/// handled at once.
pub(super) fn receivers(concurrency: usize) -> usize {
    concurrency.div_ceil(4).clamp(1, 4)
}

/// How many messages to ask for when a slot is free and `available` more
/// are: as many as the worker runs at once (at most SQS's 10), even when
/// most slots are busy. A busy worker asking for one message per call spent
/// the broker's time on calls (LocalStack served ~1 message per
/// ReceiveMessage); the extra messages wait in memory for a slot, for about
/// one handler's time, well inside their visibility timeout.
fn receive_size(available: usize, concurrency: usize) -> i32 {
    (1 + available).max(concurrency).clamp(1, 10) as i32
}

/// How many messages a batching receive loop asks for: as many as the
/// worker handles at once (at most SQS's ten), whatever is free at that
/// moment, as [`receive_size`] does. Asking for as many slots as were free
/// made a busy worker ask for one message per ReceiveMessage and the broker
/// spent its time on calls; taking a loop's share of slots before the
/// receive kept them idle for the broker's round trip (BENCHMARKS.md,
/// fan-out 1).
fn batch_size(concurrency: usize) -> i32 {
    concurrency.clamp(1, 10) as i32
}

/// Messages of one FIFO group stay together, in order; others go alone.
fn groups(messages: Vec<Message>) -> Vec<Vec<Message>> {
    let mut out: Vec<Vec<Message>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for m in messages {
        match m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned()
        {
            Some(g) => match index.get(&g) {
                Some(&i) => out[i].push(m),
                None => {
                    index.insert(g, out.len());
                    out.push(vec![m]);
                }
            },
            None => out.push(vec![m]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, group: Option<&str>) -> Message {
        let b = Message::builder().message_id(id);
        match group {
            Some(g) => b.attributes(MessageSystemAttributeName::MessageGroupId, g),
            None => b,
        }
        .build()
    }

    #[test]
    fn fifo_groups_stay_together_in_order_and_others_go_alone() {
        // (messages as (id, group), expected groups of ids)
        type Case = (
            Vec<(&'static str, Option<&'static str>)>,
            Vec<Vec<&'static str>>,
        );
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (vec![("a", None), ("b", None)], vec![vec!["a"], vec!["b"]]),
            (
                vec![("a", Some("g")), ("b", Some("h")), ("c", Some("g"))],
                vec![vec!["a", "c"], vec!["b"]],
            ),
            (
                vec![("a", None), ("b", Some("g")), ("c", None), ("d", Some("g"))],
                vec![vec!["a"], vec!["b", "d"], vec!["c"]],
            ),
        ];
        for (input, want) in cases {
            let msgs = input.iter().map(|(id, g)| message(id, *g)).collect();
            let got: Vec<Vec<String>> = groups(msgs)
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|m| m.message_id().unwrap().to_string())
                        .collect()
                })
                .collect();
            let want: Vec<Vec<String>> = want
                .into_iter()
                .map(|g| g.into_iter().map(str::to_string).collect())
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn one_receive_loop_per_four_slots_at_most_four() {
        // (concurrency, receive loops)
        let cases = [(0, 1), (1, 1), (4, 1), (5, 2), (8, 2), (16, 4), (100, 4)];
        for (concurrency, loops) in cases {
            assert_eq!(receivers(concurrency), loops, "concurrency {concurrency}");
        }
    }

    #[test]
    fn a_batching_loop_asks_for_the_concurrency_up_to_ten() {
        // (concurrency, messages asked for)
        let cases = [(0, 1), (1, 1), (4, 4), (5, 5), (8, 8), (16, 10), (100, 10)];
        for (concurrency, want) in cases {
            assert_eq!(batch_size(concurrency), want, "concurrency {concurrency}");
        }
    }

    /// A batching loop waits for a slot per message it received, holding
    /// none: it gets them once the batches in progress finish, as long as a
    /// batch never wants more slots than there are.
    #[test]
    fn no_batch_wants_more_slots_than_there_are() {
        for concurrency in 0..=512 {
            let slots = concurrency.max(1);
            let batch = batch_size(concurrency) as usize;
            assert!(
                batch <= slots,
                "concurrency {concurrency}: batches of {batch}"
            );
        }
    }

    #[test]
    fn receive_size_is_the_concurrency_up_to_ten() {
        // (free slots besides the one taken, concurrency, messages asked for)
        let cases = [
            (0, 1, 1),
            (0, 8, 8),
            (7, 8, 8),
            (3, 8, 8),
            (0, 16, 10),
            (15, 16, 10),
            (0, 0, 1),
            (9, 4, 10),
        ];
        for (available, concurrency, want) in cases {
            assert_eq!(
                receive_size(available, concurrency),
                want,
                "{available} free of {concurrency}"
            );
        }
    }
}
