//! Contention (docs/semantics.md): an update whose dependent metric another
//! transaction holds does not wait; it leaves a backlog row that the metric's
//! next holder, the writer's own to_recheck after its commit, or the sweep evaluates,
//! with the result that evaluating the updates one after the other gives.

use std::time::Duration;

use orchestrator_core::app::backlog;
use orchestrator_core::app::projection_update::{process, process_with, Origin};
use orchestrator_tests::fixtures::{db_with_catalog, request_of, runs_of, update};
use orchestrator_tests::invariants::assert_invariants;
use orchestrator_tests::TestDb;

/// Holds metric `id` the way another transaction evaluating it does, until
/// the returned transaction's client is committed or dropped.
async fn hold(db: &TestDb, id: &str) -> deadpool_postgres::Object {
    let client = db.client().await;
    client.batch_execute("BEGIN").await.expect("begin");
    client
        .execute(
            "SELECT id FROM metrics WHERE id = $1 FOR NO KEY UPDATE",
            &[&id],
        )
        .await
        .expect("metric locked");
    client
}

/// Processes without waiting on the held metric: a wait would hang here.
async fn process_now(
    db: &TestDb,
    dataset: &str,
    version: &str,
) -> orchestrator_core::app::projection_update::UpdateSummary {
    tokio::time::timeout(
        Duration::from_secs(20),
        process(&db.ctx(), &update(dataset, version)),
    )
    .await
    .expect("processing must not wait for the metric's holder")
    .expect("processed")
}

async fn backlog_rows(db: &TestDb) -> i64 {
    db.count("SELECT count(*) FROM metric_update_backlog").await
}

/// The updates a queued run uses, as "dataset=manifest", with its request
/// written to the outbox.
async fn inputs_of(db: &TestDb, run_id: &str) -> Vec<String> {
    let request = request_of(db, run_id).await;
    assert_eq!(request["runId"].as_str(), Some(run_id), "{request}");
    db.strings(&format!(
        "SELECT u.dataset_id || '=' || u.version_manifest_path
           FROM run_inputs r JOIN dataset_updates u ON u.id = r.dataset_update_id
          WHERE r.run_id = '{run_id}' ORDER BY 1"
    ))
    .await
}

#[tokio::test]
async fn an_update_of_a_held_metric_is_backlogged_then_evaluated_in_order_by_the_sweep() {
    let db = db_with_catalog("backlog_sweep").await;
    // m1 (m.single) needs d1 only: each d1 update is one run.
    let holder = hold(&db, "m1").await;
    let first = process_now(&db, "d1", "v1").await;
    let second = process_now(&db, "d1", "v2").await;
    for s in [&first, &second] {
        assert_eq!(
            (s.dependent_metrics, s.deferred),
            (3, 1),
            "d1 feeds m1, m2, m3; m1 is held: {s:?}"
        );
    }
    assert!(runs_of(&db, "m.single").await.is_empty());
    assert_eq!(backlog_rows(&db).await, 2);

    // The holder ends without looking at the backlog (as a trigger does): a
    // sweep takes the rows, oldest update first.
    holder.batch_execute("COMMIT").await.expect("commit");
    let swept = backlog::sweep(&db.ctx(), Duration::ZERO).await.unwrap();
    assert_eq!((swept.backlog_evaluated, swept.runs_queued), (2, 2));
    assert_eq!(backlog_rows(&db).await, 0);
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(runs.len(), 2, "one run per update, as without contention");
    assert_eq!(
        inputs_of(&db, &runs[0].0).await,
        vec!["d1=d1/v1/manifest.json"]
    );
    assert_eq!(
        inputs_of(&db, &runs[1].0).await,
        vec!["d1=d1/v2/manifest.json"]
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn the_next_holder_evaluates_the_backlog_before_its_own_update() {
    let db = db_with_catalog("backlog_holder").await;
    // m2 (m.pair) needs d1 and d2.
    let holder = hold(&db, "m2").await;
    let a = process_now(&db, "d1", "v1").await;
    assert_eq!(a.deferred, 1);
    assert!(runs_of(&db, "m.pair").await.is_empty());
    holder.batch_execute("COMMIT").await.expect("commit");

    // d2's update claims m2: its backlog (d1 v1) first, then d2 v1.
    let b = process_now(&db, "d2", "v1").await;
    assert_eq!(b.deferred, 0);
    assert_eq!(b.evaluated.backlog_evaluated, 1);
    assert_eq!(backlog_rows(&db).await, 0);
    let runs = runs_of(&db, "m.pair").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, "queued");
    assert_eq!(
        inputs_of(&db, &runs[0].0).await,
        vec!["d1=d1/v1/manifest.json", "d2=d2/v1/manifest.json"]
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_backlogged_request_keeps_the_origin_of_the_update_that_completed_it() {
    let db = db_with_catalog("backlog_origin").await;
    let holder = hold(&db, "m1").await;
    let sent = chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let origin = Origin {
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        source_sent_at: Some(sent),
    };
    process_with(&db.ctx(), &update("d1", "v1"), &origin)
        .await
        .unwrap();
    holder.batch_execute("COMMIT").await.expect("commit");
    backlog::sweep(&db.ctx(), Duration::ZERO).await.unwrap();
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(runs.len(), 1);
    let (trace, at): (Option<String>, Option<chrono::DateTime<chrono::Utc>>) = {
        let row = db
            .client()
            .await
            .query_one(
                "SELECT traceparent, source_sent_at FROM outbox WHERE run_id = $1",
                &[&runs[0].0],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(trace, origin.traceparent);
    assert_eq!(at, Some(sent));
}

#[tokio::test]
async fn the_backlog_of_a_metric_disabled_meanwhile_is_discarded() {
    let db = db_with_catalog("backlog_disabled").await;
    let holder = hold(&db, "m1").await;
    process_now(&db, "d1", "v1").await;
    holder
        .execute("UPDATE metrics SET enabled = false WHERE id = 'm1'", &[])
        .await
        .unwrap();
    holder.batch_execute("COMMIT").await.expect("commit");
    let swept = backlog::sweep(&db.ctx(), Duration::ZERO).await.unwrap();
    assert_eq!(swept.backlog_evaluated, 0);
    assert_eq!(backlog_rows(&db).await, 0);
    assert!(runs_of(&db, "m.single").await.is_empty());
}

#[tokio::test]
async fn a_worker_hands_a_backlog_to_its_next_update_or_drains_it_on_its_own() {
    let db = db_with_catalog("backlog_handoff").await;
    // As the projection-update worker runs it.
    let ctx = db.ctx().with_backlog_handoff();
    let holder = hold(&db, "m1").await;
    let first = process(&ctx, &update("d1", "v1")).await.unwrap();
    assert_eq!(first.deferred, 1);
    holder.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(
        backlog_rows(&db).await,
        1,
        "handed_off, not drained at once"
    );

    // The next update (d3 feeds m3 and m4, not m1) takes m1's backlog in its
    // own transaction.
    let next = process(&ctx, &update("d3", "v1")).await.unwrap();
    assert_eq!(next.evaluated.backlog_evaluated, 1);
    assert_eq!(backlog_rows(&db).await, 0);
    let runs = runs_of(&db, "m.single").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        inputs_of(&db, &runs[0].0).await,
        vec!["d1=d1/v1/manifest.json"]
    );

    // With no next update, the flush drains it on its own.
    let holder = hold(&db, "m1").await;
    process(&ctx, &update("d1", "v2")).await.unwrap();
    holder.batch_execute("COMMIT").await.expect("commit");
    let none_yet = backlog::drain_handoff_now(&ctx, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(none_yet.backlog_evaluated, 0, "not due yet");
    let flushed = backlog::drain_handoff_now(&ctx, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((flushed.backlog_evaluated, flushed.runs_queued), (1, 1));
    assert_eq!(backlog_rows(&db).await, 0);
    assert_eq!(runs_of(&db, "m.single").await.len(), 2);
    assert_invariants(&db).await;
}

#[tokio::test]
async fn a_redelivered_update_holds_its_metrics_until_its_commit_then_takes_their_backlog() {
    // An update's event key, its row and the claim of its dependent metrics
    // go in one round trip, so a redelivered update claims d1's metrics
    // before it learns it is a duplicate, and holds them until its
    // transaction commits. An update that finds them held meanwhile leaves
    // backlog rows; the duplicate's look after its commit must take them.
    let db = db_with_catalog("duplicate_holder").await;
    process_now(&db, "d1", "v1").await;
    // The batch [d1 v1 again, d2 v1] stops at d2's event key, which this
    // transaction has written and not committed, after the duplicate's claim.
    let blocker = db.client().await;
    blocker.batch_execute("BEGIN").await.expect("begin");
    blocker
        .execute(
            "INSERT INTO event_log (event_key, event_type, event_payload, processed_at)
             VALUES ($1, 'projection_update', '{}', now())",
            &[&update("d2", "v1").event_key()],
        )
        .await
        .expect("d2's key written");
    let ctx = db.ctx();
    let batch = tokio::spawn(async move {
        let (again, blocked, origin) = (update("d1", "v1"), update("d2", "v1"), Origin::default());
        orchestrator_core::app::projection_update::process_batch(
            &ctx,
            &[(&again, &origin), (&blocked, &origin)],
        )
        .await
    });
    orchestrator_tests::eventually(
        Duration::from_secs(20),
        "the batch to wait on d2's event key",
        || async {
            let waiting = db
                .count(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO event_log%'",
                )
                .await;
            (waiting == 1).then_some(())
        },
    )
    .await;
    let meanwhile = process_now(&db, "d1", "v2").await;
    assert_eq!(
        (meanwhile.dependent_metrics, meanwhile.deferred),
        (3, 3),
        "the duplicate holds m1, m2, m3: {meanwhile:?}"
    );
    assert_eq!(backlog_rows(&db).await, 3);
    blocker.batch_execute("ROLLBACK").await.expect("rollback");
    let done = tokio::time::timeout(Duration::from_secs(20), batch)
        .await
        .expect("the batch goes on once d2's key is free")
        .expect("joined")
        .expect("processed");
    assert!(done[0].duplicate && !done[1].duplicate, "{done:?}");
    // m2 and m3 took d1 v2 with d2 v1 in the batch's transaction; m1's row
    // was taken by the look after its commit.
    assert_eq!(backlog_rows(&db).await, 0);
    let single = runs_of(&db, "m.single").await;
    assert_eq!(single.len(), 2, "{single:?}");
    assert!(single.iter().all(|r| r.1 == "queued"), "{single:?}");
    assert_invariants(&db).await;
}
