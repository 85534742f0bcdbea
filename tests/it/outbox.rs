//! The transactional outbox and relay (docs/semantics.md).

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::app::projection_update::process;
use orchestrator_core::outbox::{PublishError, Publisher, RecordingPublisher, Relay, RelayConfig};
use orchestrator_core::store::outbox::OutboxMessage;
use orchestrator_tests::fixtures::{db_with_catalog, status_of, update};

/// A relay that retries and sweeps within a test's patience.
pub(crate) fn fast() -> RelayConfig {
    RelayConfig {
        base_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        sweep_interval: Duration::from_millis(20),
        ..RelayConfig::default()
    }
}

#[tokio::test]
async fn published_run_moves_from_queued_to_dispatched() {
    let db = db_with_catalog("outbox_dispatch").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((report.published, report.dispatched), (1, 1));
    let run = &s.evaluated.queued_run_ids[0];
    assert_eq!(status_of(&db, run).await, "dispatched");
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE dispatched_at IS NOT NULL")
            .await,
        1
    );
    let sent = relay.publisher().published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].run_id(), Some(run));
    // Publishing the same ids again sends nothing: the row is already published.
    assert_eq!(
        relay
            .publish_requests(&s.evaluated.requests)
            .await
            .unwrap()
            .published,
        0
    );
}

#[tokio::test]
async fn a_run_that_moved_on_is_not_sent_back_to_dispatched() {
    let db = db_with_catalog("outbox_no_regress").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = &s.evaluated.queued_run_ids[0];
    // The runner was faster than the relay (at-least-once delivery from a previous publish).
    db.exec(&format!(
        "UPDATE metric_runs SET status = 'running' WHERE id = '{run}'"
    ))
    .await;
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((report.published, report.dispatched), (1, 0));
    assert_eq!(status_of(&db, run).await, "running");
}

#[tokio::test]
async fn failed_publish_backs_off_and_the_sweeper_recovers_it() {
    let db = db_with_catalog("outbox_retry").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let publisher = RecordingPublisher::default();
    publisher.fail_next(2);
    // A backoff long enough that the two sweeps right after the failure
    // come before it on any machine (50 ms raced a slow one).
    let config = RelayConfig {
        base_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(2),
        ..fast()
    };
    let relay = Relay::new(db.pool.clone(), publisher, config);
    let first = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((first.published, first.failed), (0, 1));
    assert_eq!(relay.backlog().await.unwrap().unpublished, 1);
    assert!(db
        .string("SELECT last_error FROM outbox")
        .await
        .contains("injected"));
    // Backing off: not due again at once.
    assert_eq!(
        relay.sweep_once().await.unwrap().published + relay.sweep_once().await.unwrap().failed,
        0
    );
    let published = orchestrator_tests::eventually(
        Duration::from_secs(20),
        "the outbox row to be published",
        || async {
            relay.sweep_once().await.unwrap();
            (db.count("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let _: () = published;
    assert_eq!(db.count("SELECT attempts::bigint FROM outbox").await, 3);
    assert_eq!(
        status_of(&db, &s.evaluated.queued_run_ids[0]).await,
        "dispatched"
    );
    assert_eq!(relay.publisher().published().len(), 1);
}

#[tokio::test]
async fn rows_left_unpublished_by_a_crash_are_swept() {
    let db = db_with_catalog("outbox_crash").await;
    let ctx = db.ctx();
    // Updates committed, but the process "died" before publishing.
    for v in 0..5 {
        process(&ctx, &update("d1", &format!("v{v}")))
            .await
            .unwrap();
    }
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    assert_eq!(relay.backlog().await.unwrap().unpublished, 5);
    let report = relay.sweep_once().await.unwrap();
    assert_eq!(report.published, 5);
    assert_eq!(relay.backlog().await.unwrap().unpublished, 0);
}

#[tokio::test]
async fn concurrent_relays_never_publish_a_row_twice() {
    let db = db_with_catalog("outbox_concurrent").await;
    let ctx = db.ctx();
    for v in 0..40 {
        process(&ctx, &update("d1", &format!("v{v}")))
            .await
            .unwrap();
    }
    let cfg = RelayConfig { batch: 3, ..fast() };
    let relays: Vec<Arc<Relay<RecordingPublisher>>> = (0..4)
        .map(|_| {
            Arc::new(Relay::new(
                db.pool.clone(),
                RecordingPublisher::default(),
                cfg,
            ))
        })
        .collect();
    let tasks: Vec<_> = relays
        .iter()
        .map(|r| {
            let r = r.clone();
            tokio::spawn(async move { r.sweep_once().await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut all: Vec<String> = relays
        .iter()
        .flat_map(|r| r.publisher().published())
        .filter_map(|m| m.run_id().map(ToString::to_string))
        .collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "a run request was published twice");
    assert_eq!(total, 40);
}

/// Answers for the first message of a batch only.
struct AnswersOne;

impl Publisher for AnswersOne {
    async fn publish(&self, batch: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        batch.iter().take(1).map(|_| Ok(())).collect()
    }
}

/// Never answers: a publish call that hangs.
pub(crate) struct Hangs;

impl Publisher for Hangs {
    async fn publish(&self, _: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn messages_a_publisher_gives_no_result_for_are_failed_and_retried() {
    let db = db_with_catalog("outbox_short_answer").await;
    let ctx = db.ctx();
    let mut ids = Vec::new();
    for v in 0..3 {
        ids.extend(
            process(&ctx, &update("d1", &format!("v{v}")))
                .await
                .unwrap()
                .evaluated
                .requests,
        );
    }
    assert_eq!(ids.len(), 3);
    let relay = Relay::new(db.pool.clone(), AnswersOne, fast());
    let report = relay.publish_requests(&ids).await.unwrap();
    assert_eq!((report.published, report.failed), (1, 2));
    assert_eq!(
        db.count(
            "SELECT count(*) FROM outbox
              WHERE published_at IS NULL AND last_error = 'publisher returned no result'"
        )
        .await,
        2
    );
    // Retried (one at a time, each answered) until all are out.
    let single = Relay::new(
        db.pool.clone(),
        AnswersOne,
        RelayConfig { batch: 1, ..fast() },
    );
    orchestrator_tests::eventually(Duration::from_secs(20), "the two retried", || async {
        single.sweep_once().await.unwrap();
        (db.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await
            == 0)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_claim_whose_publish_hangs_is_taken_by_another_relay_when_its_lease_expires() {
    let db = db_with_catalog("outbox_lease").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let lease = RelayConfig {
        lease: Duration::from_secs(2),
        ..fast()
    };
    let stuck = Arc::new(Relay::new(db.pool.clone(), Hangs, lease));
    let hung = tokio::spawn({
        let (stuck, ids) = (stuck.clone(), s.evaluated.requests.clone());
        async move { stuck.publish_requests(&ids).await }
    });
    let other = Relay::new(db.pool.clone(), RecordingPublisher::default(), lease);
    // While the lease holds, the row is not the other relay's.
    orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the stuck relay's claim",
        || async {
            (db.count("SELECT count(*) FROM outbox WHERE attempts > 0")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        other.sweep_once().await.unwrap().published,
        0,
        "leased elsewhere"
    );
    let published = orchestrator_tests::eventually(
        Duration::from_secs(20),
        "the other relay to take the row once the lease expired",
        || async {
            let r = other.sweep_once().await.unwrap();
            (r.published == 1).then_some(r)
        },
    )
    .await;
    assert_eq!(published.dispatched, 1);
    assert_eq!(other.publisher().published().len(), 1);
    assert_eq!(
        status_of(&db, &s.evaluated.queued_run_ids[0]).await,
        "dispatched"
    );
    hung.abort();
}
