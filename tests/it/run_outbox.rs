//! A requested run carries its own request on its row (migration V14,
//! docs/semantics.md "The run row as its own outbox entry"): no second row is
//! written, publishing is one update of the run, and the `outbox` view still
//! shows every message.

use orchestrator_core::app::projection_update::process;
use orchestrator_core::outbox::{RecordingPublisher, Relay};
use orchestrator_tests::fixtures::{db_with_catalog, status_of, update};

use crate::outbox::fast;

#[tokio::test]
async fn an_evaluated_request_rides_on_its_run_and_is_published_by_one_update() {
    let db = db_with_catalog("run_outbox").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = s.evaluated.queued_run_ids[0].to_string();
    assert_eq!(s.evaluated.requests.len(), 1);
    // On the run row, under the message id the caller was given; no row of
    // its own; the view shows it as one unpublished message.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM metric_runs WHERE id = '{run}' AND request_id = {}
                AND request_published_at IS NULL AND request_attempts = 0",
            s.evaluated.requests[0].id
        ))
        .await,
        1
    );
    assert_eq!(db.count("SELECT count(*) FROM outbox_messages").await, 0);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM outbox WHERE run_id = '{run}' AND published_at IS NULL"
        ))
        .await,
        1
    );
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((report.published, report.dispatched), (1, 1));
    assert_eq!(status_of(&db, &run).await, "dispatched");
    // Published and dispatched in the same row version: one update.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM metric_runs WHERE id = '{run}'
                AND request_published_at = dispatched_at AND request_attempts = 1"
        ))
        .await,
        1
    );
    // A second publish finds nothing to publish.
    let again = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!(again.published, 0);
    assert_eq!(relay.publisher().published().len(), 1);
}

#[tokio::test]
async fn a_run_that_left_queued_before_its_request_was_published_keeps_its_status() {
    let db = db_with_catalog("run_outbox_canceled").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = s.evaluated.queued_run_ids[0].to_string();
    db.exec(&format!(
        "UPDATE metric_runs SET status = 'canceled', finished_at = now() WHERE id = '{run}'"
    ))
    .await;
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((report.published, report.dispatched), (1, 0));
    assert_eq!(status_of(&db, &run).await, "canceled");
    // Published all the same: the sweeper will not send it again.
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .await,
        0
    );
    assert_eq!(relay.sweep_once().await.unwrap().published, 0);
}

#[tokio::test]
async fn a_failed_publish_of_a_carried_request_backs_off_and_the_sweeper_sends_it() {
    let db = db_with_catalog("run_outbox_retry").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = s.evaluated.queued_run_ids[0].to_string();
    let publisher = RecordingPublisher::default();
    publisher.fail_next(1);
    let relay = Relay::new(db.pool.clone(), publisher, fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!((report.published, report.failed), (0, 1));
    let error = db
        .string(&format!(
            "SELECT request_last_error FROM metric_runs
              WHERE id = '{run}' AND request_published_at IS NULL AND status = 'queued'"
        ))
        .await;
    assert!(!error.is_empty());
    let sweeper = &relay;
    orchestrator_tests::eventually(
        std::time::Duration::from_secs(10),
        "the sweeper's retry",
        move || async move { (sweeper.sweep_once().await.unwrap().published == 1).then_some(()) },
    )
    .await;
    assert_eq!(status_of(&db, &run).await, "dispatched");
    assert_eq!(relay.publisher().published().len(), 1);
}

/// A request left to claim (a backlog drain's, a trigger policy's) is
/// claimed by its key, among other due ones: only the named ones go, and a
/// key whose outbox id and run do not belong together names nothing.
#[tokio::test]
async fn a_claim_by_keys_takes_only_the_requests_named_with_their_runs() {
    use orchestrator_core::store::outbox::RequestKey;
    let db = db_with_catalog("run_outbox_keys").await;
    let ctx = db.ctx();
    let mut written = Vec::new();
    for v in ["v1", "v2", "v3"] {
        let s = process(&ctx, &update("d1", v)).await.unwrap();
        assert_eq!(s.evaluated.requests.len(), 1);
        written.push(s.evaluated.requests[0].clone());
    }
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let crossed = RequestKey {
        id: written[0].id,
        run: written[2].run.clone(),
    };
    let report = relay.publish_requests(&[crossed]).await.unwrap();
    assert_eq!(report.published, 0, "a crossed key names no request");
    let report = relay
        .publish_requests(std::slice::from_ref(&written[1]))
        .await
        .unwrap();
    assert_eq!((report.published, report.dispatched), (1, 1));
    let sent: Vec<String> = relay
        .publisher()
        .published()
        .iter()
        .filter_map(|m| m.run_id().map(ToString::to_string))
        .collect();
    assert_eq!(sent, vec![written[1].run.to_string()]);
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE published_at IS NULL AND attempts = 0")
            .await,
        2,
        "the two requests not named are left due, unclaimed"
    );
}
