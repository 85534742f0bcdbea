//! The consumer receives nothing while its backpressure gate is at its
//! limit (run requests committed and not yet published), and resumes when
//! the publisher catches up; the waiting messages stay in SQS meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::ground::backpressure::Backpressure;
use orchestrator_core::messaging::sqs::{
    Consumer, ConsumerConfig, Handler, HandlerError, InboundMessage, Outcome,
};
use orchestrator_tests::aws::Stack;
use orchestrator_tests::eventually;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

struct Counting(Arc<AtomicUsize>);

impl Handler for Counting {
    async fn handle(&self, _: &InboundMessage) -> Result<Outcome, HandlerError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Outcome::processed(""))
    }
}

#[tokio::test]
async fn a_consumer_at_its_backpressure_limit_leaves_messages_in_sqs_until_publishing_catches_up() {
    let stack = Stack::new("backpressure", false).await;
    let queue = stack.names.projection_updates_queue_url.clone();
    let gate = Backpressure::new(10);
    gate.add(10); // ten run requests waiting for the publisher
    let handled = Arc::new(AtomicUsize::new(0));
    let mut cfg = ConsumerConfig::new(&queue);
    cfg.wait_time = Duration::from_secs(1);
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        Consumer::new(
            stack.aws.sqs.clone(),
            stack.aws.s3.clone(),
            cfg,
            Counting(handled.clone()),
        )
        .with_backpressure(gate.clone())
        .run(stop.clone()),
    );
    stack.send_batch(&queue, &["a", "b", "c"]).await;
    eventually(WAIT, "the three messages to be visible in SQS", || async {
        (stack.depth(&queue).await == Some((3, 0))).then_some(())
    })
    .await;
    // Watched for 3 s (three of the consumer's 1 s long polls; an open gate
    // takes the messages within one): nothing is received or handled.
    let watch_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watch_until {
        assert_eq!(handled.load(Ordering::SeqCst), 0, "nothing is handled");
        assert_eq!(
            stack.depth(&queue).await,
            Some((3, 0)),
            "nothing is received"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    gate.done(1); // below the limit: receiving resumes
    eventually(
        WAIT,
        "the three messages to be handled and deleted",
        || async {
            let done = handled.load(Ordering::SeqCst) == 3;
            (done && stack.total_depth(&queue).await.ok() == Some(0)).then_some(())
        },
    )
    .await;
    stop.cancel();
    consumer.await.unwrap().unwrap();
}
