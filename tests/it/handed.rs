//! Run requests handed to the relay at their commit: their outbox rows are
//! born leased to it, so it publishes them without claiming them, and no
//! sweeper takes them while it may (docs/semantics.md, "Publishing").

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrator_core::app::projection_update::process;
use orchestrator_core::ground::backpressure::Backpressure;
use orchestrator_core::outbox::{PublishQueue, RecordingPublisher, Relay, RelayConfig};
use orchestrator_tests::fixtures::{db_with_catalog, status_of, update};

use crate::outbox::{fast, Hangs};

const LEASE: Duration = Duration::from_secs(30);

fn leased() -> RelayConfig {
    RelayConfig {
        lease: LEASE,
        ..fast()
    }
}

#[tokio::test]
async fn handed_rows_are_published_by_their_relay_and_by_no_sweeper() {
    let db = db_with_catalog("handed").await;
    let ctx = db.ctx().with_publish_lease(LEASE);
    let s = process(&ctx, &update("d1", "v1")).await.unwrap();
    let handed = s.evaluated.requests.clone();
    assert_eq!(handed.len(), 1);
    // Born leased: one attempt, not due before its lease ends.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM outbox
              WHERE attempts = 1 AND next_attempt_at > now() + interval '25 seconds'"
        )
        .await,
        1
    );
    let sweeper = Relay::new(db.pool.clone(), RecordingPublisher::default(), leased());
    assert_eq!(sweeper.sweep_once().await.unwrap().published, 0);
    assert_eq!(
        sweeper.publish_requests(&handed).await.unwrap().published,
        0
    );
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), leased());
    let report = relay
        .publish_handed(&handed, &[(0, Instant::now())])
        .await
        .unwrap();
    assert_eq!((report.published, report.dispatched), (1, 1));
    let run = &s.evaluated.queued_run_ids[0];
    assert_eq!(status_of(&db, run).await, "dispatched");
    assert_eq!(relay.publisher().published()[0].run_id(), Some(run));
    assert!(sweeper.publisher().published().is_empty());
    // Published: handing it again sends nothing.
    assert_eq!(
        relay.publish_handed(&handed, &[]).await.unwrap().published,
        0
    );
}

#[tokio::test]
async fn a_handed_row_short_of_its_lease_or_claimed_since_is_the_sweepers() {
    let db = db_with_catalog("handed_late").await;
    let ctx = db.ctx().with_publish_lease(LEASE);
    let s = process(&ctx, &update("d1", "v1")).await.unwrap();
    let handed = s.evaluated.requests.clone();
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), leased());
    // Less than half its lease left (it waited): the relay does not take it.
    db.exec("UPDATE metric_runs SET request_next_attempt_at = now() + interval '10 seconds' WHERE request_id IS NOT NULL")
        .await;
    assert_eq!(
        relay.publish_handed(&handed, &[]).await.unwrap().published,
        0
    );
    // Its lease over, a sweeper claims it (a second attempt) with a new
    // lease, which the handed path never takes.
    db.exec("UPDATE metric_runs SET request_next_attempt_at = now() WHERE request_id IS NOT NULL")
        .await;
    let sweeper = Relay::new(db.pool.clone(), Hangs, leased());
    let sweeping = tokio::spawn(async move { sweeper.sweep_once().await });
    orchestrator_tests::eventually(Duration::from_secs(10), "the sweeper's claim", || async {
        (db.count("SELECT count(*) FROM outbox WHERE attempts = 2")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        relay.publish_handed(&handed, &[]).await.unwrap().published,
        0
    );
    assert!(relay.publisher().published().is_empty());
    sweeping.abort();
}

#[tokio::test]
async fn handed_rows_a_full_queue_cannot_take_are_released_to_the_sweeper() {
    let db = db_with_catalog("handed_full").await;
    let ctx = db.ctx().with_publish_lease(LEASE);
    let mut handed = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let s = process(&ctx, &update("d1", v)).await.unwrap();
        assert_eq!(s.evaluated.requests.len(), 1, "{v}");
        handed.push(s.evaluated.requests.clone());
    }
    // One publishing task that hangs and room for one waiting submission:
    // the third cannot be queued.
    let relay = Arc::new(Relay::new(db.pool.clone(), Hangs, leased()));
    let (queue, _task) = PublishQueue::start(relay, 1, 1, Backpressure::new(100));
    let [first, second, third] = <[_; 3]>::try_from(handed).unwrap();
    let third_id = third[0].id;
    // Whether or not the task has taken the first yet, the channel is
    // full when the third comes: its row is released.
    queue.submit_handed(first, Instant::now());
    queue.submit_handed(second, Instant::now());
    queue.submit_handed(third, Instant::now());
    let sql = format!(
        "SELECT count(*) FROM outbox WHERE id = {} AND attempts = 0 AND next_attempt_at <= now()",
        third_id
    );
    orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the third submission's row released",
        || async { (db.count(&sql).await == 1).then_some(()) },
    )
    .await;
    let sweeper = Relay::new(db.pool.clone(), RecordingPublisher::default(), leased());
    assert!(sweeper.sweep_once().await.unwrap().published >= 1);
    let swept: Vec<_> = sweeper
        .publisher()
        .published()
        .iter()
        .map(|m| m.id)
        .collect();
    assert!(swept.contains(&third_id), "{swept:?}");
}

/// The relay finds a handed request by its run's primary key, so each
/// request must be handed with its own run: three requests of one update,
/// each checked against the row that carries it, all three published.
#[tokio::test]
async fn each_handed_request_is_handed_with_the_run_that_carries_it() {
    let db = db_with_catalog("handed_runs").await;
    let ctx = db.ctx().with_publish_lease(LEASE);
    for d in ["d2", "d3"] {
        process(&ctx, &update(d, "v1")).await.unwrap();
    }
    // d1 completes m.single, m.pair and m.triple.
    let s = process(&ctx, &update("d1", "v1")).await.unwrap();
    let handed = s.evaluated.requests.clone();
    assert_eq!(handed.len(), 3, "{handed:?}");
    for h in &handed {
        let sql = format!(
            "SELECT count(*) FROM metric_runs WHERE id = '{}' AND request_id = {}",
            h.run, h.id
        );
        assert_eq!(db.count(&sql).await, 1, "{h:?}");
    }
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), leased());
    let report = relay.publish_handed(&handed, &[]).await.unwrap();
    assert_eq!((report.published, report.dispatched), (3, 3));
}

/// Records, at each publish call, how many round trips its relay's
/// connection had made.
struct TurnsAtPublish(
    Arc<orchestrator_tests::turns::TurnCounter>,
    std::sync::Mutex<Vec<usize>>,
);

impl orchestrator_core::outbox::Publisher for TurnsAtPublish {
    async fn publish(
        &self,
        batch: &[orchestrator_core::store::outbox::OutboxMessage],
    ) -> Vec<Result<(), orchestrator_core::outbox::PublishError>> {
        self.1.lock().unwrap().push(self.0.turns());
        batch.iter().map(|_| Ok(())).collect()
    }
}

#[tokio::test]
async fn a_handed_request_is_read_and_assembled_in_two_round_trips() {
    // Born leased, a handed row is only read: its row and run (one round
    // trip), then the updates it uses, its series and its expression (one
    // more). A transaction around those reads would add a BEGIN and a
    // COMMIT to every update's way to SNS.
    let db = db_with_catalog("handed_round_trips").await;
    let ctx = db.ctx().with_publish_lease(LEASE);
    let counter = Arc::new(
        orchestrator_tests::turns::TurnCounter::start(&orchestrator_tests::proxy::host_port(
            &db.url,
        ))
        .await,
    );
    let url = orchestrator_tests::proxy::via(&db.url, counter.port);
    let pool = orchestrator_core::store::pool::build_pool(&url, 1).unwrap();
    let relay = Relay::new(
        pool,
        TurnsAtPublish(counter.clone(), Default::default()),
        leased(),
    );
    // The first round opens the connection and prepares the statements.
    process(&ctx, &update("d2", "v1")).await.unwrap();
    let first = process(&ctx, &update("d1", "v1")).await.unwrap();
    relay
        .publish_handed(&first.evaluated.requests, &[])
        .await
        .unwrap();
    // m.single (d1) and m.pair (d1 and d2): a request with two inputs.
    let second = process(&ctx, &update("d1", "v2")).await.unwrap();
    assert_eq!(second.evaluated.requests.len(), 2, "{second:?}");
    counter.reset();
    let report = relay
        .publish_handed(&second.evaluated.requests, &[])
        .await
        .unwrap();
    assert_eq!((report.published, report.dispatched), (2, 2));
    let turns = relay.publisher().1.lock().unwrap().clone();
    assert_eq!(
        turns.last(),
        Some(&2),
        "round trips before the publish call, rounds so far: {turns:?}"
    );
}
