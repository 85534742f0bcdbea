//! A run request's outbox row keeps a recipe, and the relay assembles the
//! request when it publishes (docs/semantics.md, "Publishing: the
//! transactional outbox").

use crate::outbox::fast;
use orchestrator_core::app::projection_update::process;
use orchestrator_core::outbox::{RecordingPublisher, Relay};
use orchestrator_tests::fixtures::{db_with_catalog, request_text, update};
use serde_json::Value;

#[tokio::test]
async fn the_relay_publishes_the_request_the_api_shows_at_the_time_decided() {
    let db = db_with_catalog("recipe_same").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = s.evaluated.queued_run_ids[0].to_string();
    assert_eq!(
        db.count("SELECT count(*) FROM outbox WHERE payload IS NULL AND requested_at IS NOT NULL")
            .await,
        1,
        "a new run request is written as a recipe"
    );
    let shown = request_text(&db, &run)
        .await
        .expect("the run has a request");
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    relay.publish_requests(&s.evaluated.requests).await.unwrap();
    let sent = relay.publisher().published();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload, shown, "published byte for byte as shown");
    let body: Value = serde_json::from_str(&shown).unwrap();
    let decided = db
        .string(&format!(
            "SELECT to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
               FROM outbox WHERE run_id = '{run}'"
        ))
        .await;
    assert_eq!(body["requestedAt"], decided.as_str());
    assert_eq!(body["runId"], run.as_str());
    assert_eq!(
        body["catalog"]["datasets"]["d1"]["manifestPath"],
        "d1/v1/manifest.json"
    );
}

#[tokio::test]
async fn a_row_written_whole_before_recipes_is_published_byte_for_byte() {
    let db = db_with_catalog("recipe_legacy").await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = s.evaluated.queued_run_ids[0].to_string();
    // What a row written before migration V10 holds: the request itself,
    // with a spacing no serializer of ours produces, in a row of its own
    // (before V14, every request had one), under the same message id.
    let legacy = r#"{"type": "metric_run_requested", "runId": "legacy"}"#;
    db.exec(&format!(
        "INSERT INTO outbox_messages (id, run_id, metric_code, payload) OVERRIDING SYSTEM VALUE
           SELECT request_id, id, metric_code, '{legacy}' FROM metric_runs WHERE id = '{run}';
         UPDATE metric_runs SET request_id = NULL WHERE id = '{run}'"
    ))
    .await;
    assert_eq!(request_text(&db, &run).await.as_deref(), Some(legacy));
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let report = relay.publish_requests(&s.evaluated.requests).await.unwrap();
    assert_eq!(report.published, 1);
    assert_eq!(relay.publisher().published()[0].payload, legacy);
}

#[tokio::test]
async fn a_recipe_that_does_not_assemble_backs_off_without_holding_back_its_batch() {
    let db = db_with_catalog("recipe_bad").await;
    let ctx = db.ctx();
    let first = process(&ctx, &update("d1", "v1")).await.unwrap();
    let second = process(&ctx, &update("d1", "v2")).await.unwrap();
    let bad = first.evaluated.queued_run_ids[0].to_string();
    // A note the relay cannot read (a hand edit, say).
    db.exec(&format!(
        "UPDATE metric_runs SET request_trigger_note = '{{\"degraded\": \"perhaps\"}}' WHERE id = '{bad}'"
    ))
    .await;
    let relay = Relay::new(db.pool.clone(), RecordingPublisher::default(), fast());
    let mut ids = first.evaluated.requests.clone();
    ids.extend(second.evaluated.requests.iter().cloned());
    let report = relay.publish_requests(&ids).await.unwrap();
    assert_eq!(report.published, second.evaluated.requests.len());
    let sent = relay.publisher().published();
    assert!(sent
        .iter()
        .all(|m| m.run_id().map(ToString::to_string) != Some(bad.clone())));
    let error = db
        .string(&format!(
            "SELECT last_error FROM outbox WHERE run_id = '{bad}' AND published_at IS NULL AND attempts = 1"
        ))
        .await;
    assert!(error.contains("unreadable trigger note"), "{error}");
}
