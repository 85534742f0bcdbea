//! Several projection updates of one receive in one transaction, with each
//! processed alone when that transaction fails (docs/semantics.md,
//! "Several messages, one transaction").

use std::time::Duration;

use orchestrator_core::app::projection_update::{process_batch, process_batch_then, Origin};
use orchestrator_core::domain::events::ProjectionUpdate;
use orchestrator_tests::aws::{attributes, Stack};
use orchestrator_tests::fixtures::{db_with_catalog, request_of, update, update_body};
use orchestrator_tests::process::Process;
use orchestrator_tests::{eventually, TestDb};

const WAIT: Duration = Duration::from_secs(30);

async fn batch(db: &TestDb, updates: &[ProjectionUpdate]) -> Result<Vec<String>, String> {
    let origin = Origin::default();
    let items: Vec<(&ProjectionUpdate, &Origin)> = updates.iter().map(|u| (u, &origin)).collect();
    process_batch(&db.ctx(), &items)
        .await
        .map(|s| s.iter().map(ToString::to_string).collect())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_batch_commits_once_and_each_update_has_its_own_answer() {
    let db = db_with_catalog("batch_once").await;
    let answers = batch(
        &db,
        &[
            update("d1", "v1"),
            update("d2", "v1"),
            update("d1", "v1"),
            update("d1", "v2"),
        ],
    )
    .await
    .expect("the batch commits");
    assert_eq!(answers.len(), 4);
    assert!(
        answers[0].contains("committed with 3 other updates"),
        "{answers:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM event_log").await,
        3,
        "the repeated d1/v1 is a duplicate"
    );
    assert_eq!(
        db.count("SELECT count(DISTINCT xmin::text) FROM event_log")
            .await,
        1,
        "one transaction wrote every update"
    );
    // In order, as if one after the other: m.pair's first run waited for d2
    // and used d1/v1; m.single ran for d1/v1, then for d1/v2.
    let pair = db
        .string("SELECT id FROM metric_runs WHERE metric_code = 'm.pair' ORDER BY id LIMIT 1")
        .await;
    let request = request_of(&db, &pair).await;
    assert_eq!(
        request["catalog"]["datasets"]["d1"]["manifestPath"],
        "d1/v1/manifest.json"
    );
    let singles = db
        .strings("SELECT id FROM metric_runs WHERE metric_code = 'm.single' ORDER BY id")
        .await;
    assert_eq!(singles.len(), 2);
    let newest = request_of(&db, &singles[1]).await;
    assert_eq!(
        newest["catalog"]["datasets"]["d1"]["manifestPath"],
        "d1/v2/manifest.json"
    );
    let checks = orchestrator_tests::invariants::invariant_checks(&db.pool)
        .await
        .unwrap();
    assert!(checks.iter().all(|c| c.ok()), "{checks:?}");
}

#[tokio::test]
async fn a_batch_with_an_update_the_database_refuses_commits_nothing() {
    let db = db_with_catalog("batch_refused").await;
    let refused = batch(&db, &[update("d1", "v1"), update("d\u{0}1", "v1")]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(db.count("SELECT count(*) FROM event_log").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM metric_runs").await, 0);
}

/// The worker hands run requests to its relay from this hook: it runs once,
/// with every update's summary in order, only when the batch committed.
#[tokio::test]
async fn the_commit_hook_gets_each_summary_once_and_only_after_a_commit() {
    let db = db_with_catalog("batch_hook").await;
    let origin = Origin::default();
    let (u1, u2) = (update("d1", "v1"), update("d1", "v2"));
    let items = [(&u1, &origin), (&u2, &origin)];
    let mut seen: Vec<Vec<i64>> = Vec::new();
    let mut calls = 0;
    let summaries = process_batch_then(&db.ctx(), &items, |committed| {
        calls += 1;
        for s in committed {
            seen.push(
                std::mem::take(&mut s.evaluated.requests)
                    .iter()
                    .map(|r| r.id.get())
                    .collect(),
            );
        }
    })
    .await
    .expect("the batch commits");
    assert_eq!(calls, 1);
    assert_eq!(seen.len(), 2, "one entry per update, in order: {seen:?}");
    assert!(
        summaries.iter().all(|s| s.evaluated.requests.is_empty()),
        "what the hook took is not handed out twice"
    );
    // m.single ran for each update: the first update's request comes first.
    let written = db.count("SELECT count(*) FROM outbox").await;
    assert_eq!(seen.iter().map(Vec::len).sum::<usize>() as i64, written);
    assert!(seen.iter().all(|ids| !ids.is_empty()), "{seen:?}");
    assert!(seen[0].iter().max() < seen[1].iter().min(), "{seen:?}");

    let mut called = false;
    let bad = update("d\u{0}1", "v3");
    let refused = [(&u1, &origin), (&bad, &origin)];
    let failed = process_batch_then(&db.ctx(), &refused, |_| called = true).await;
    assert!(failed.is_err());
    assert!(!called, "nothing committed: the hook must not run");
}

/// The worker's JSON log lines about `ids`, once each has its final line.
async fn lines_of(worker: &Process, ids: &[String]) -> Vec<serde_json::Value> {
    eventually(WAIT, "a final line per message", || async {
        let logs = std::fs::read_to_string(&worker.log).ok()?;
        let lines: Vec<serde_json::Value> = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["outcome"].is_string())
            .filter(|v| ids.iter().any(|id| v["message_id"] == id.as_str()))
            .collect();
        (lines.len() >= ids.len()).then_some(lines)
    })
    .await
}

/// Messages waiting before the worker starts come in one receive (one
/// receive loop of four at `WORKER_CONCURRENCY=4`).
fn worker(stack: &Stack, db: &TestDb) -> Process {
    worker_at(stack, db, 4)
}

fn worker_at(stack: &Stack, db: &TestDb, concurrency: usize) -> Process {
    let mut env = stack.env(db);
    env.retain(|(k, _)| k != "RUST_LOG" && k != "WORKER_CONCURRENCY");
    env.push((
        "RUST_LOG".into(),
        "info,orchestrator_core::workers::handlers=debug".into(),
    ));
    env.push(("WORKER_CONCURRENCY".into(), concurrency.to_string()));
    Process::spawn("projection-update-worker", &env, &[])
}

/// Two receive loops (from `WORKER_CONCURRENCY=8`) each asking for eight: a
/// loop holds no slot while it receives and takes one per message once they
/// are in, so the loops take turns and neither waits for the other for good.
#[tokio::test]
async fn two_receive_loops_with_full_receives_drain_the_queue() {
    let db = db_with_catalog("batch_loops").await;
    let stack = Stack::new("batchloops", false).await;
    let bodies: Vec<String> = (1..=40)
        .map(|v| update_body(["d1", "d2", "d3"][v % 3], &format!("v{v}")))
        .collect();
    stack
        .send_all(&stack.names.projection_updates_queue_url, &bodies)
        .await
        .unwrap();
    let _worker = worker_at(&stack, &db, 8);
    eventually(WAIT, "every update processed", || async {
        (db.count("SELECT count(*) FROM event_log").await == 40).then_some(())
    })
    .await;
    let checks = orchestrator_tests::invariants::invariant_checks(&db.pool)
        .await
        .unwrap();
    assert!(checks.iter().all(|c| c.ok()), "{checks:?}");
}

async fn message_ids(stack: &Stack, bodies: &[String]) -> Vec<String> {
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    stack
        .send_batch_ids(&stack.names.projection_updates_queue_url, &refs)
        .await
}

#[tokio::test]
async fn one_refused_update_is_dead_lettered_alone_and_its_batch_mates_are_processed() {
    let db = db_with_catalog("batch_fallback").await;
    let stack = Stack::new("batchfb", false).await;
    let bodies = [
        update_body("d1", "v1"),
        update_body("d2", "v1"),
        // Valid JSON and a valid event that PostgreSQL can never store.
        update_body("d\u{0}1", "v1"),
        update_body("d3", "v1"),
    ];
    let ids = message_ids(&stack, &bodies).await;
    let worker = worker(&stack, &db);
    let lines = lines_of(&worker, &ids).await;
    for (i, id) in ids.iter().enumerate() {
        let mine: Vec<_> = lines
            .iter()
            .filter(|v| v["message_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "one final line for message {i}: {mine:?}");
        let want = if i == 2 { "dead_lettered" } else { "processed" };
        assert_eq!(mine[0]["outcome"], want, "message {i}: {:?}", mine[0]);
    }
    let letters = stack
        .receive(&stack.names.projection_updates_dlq_url, 1, WAIT)
        .await;
    assert_eq!(letters.len(), 1);
    let letter = attributes(&letters[0]);
    assert_eq!(letter["source_message_id"], ids[2]);
    assert_eq!(letter["error_type"], "unprocessable");
    assert_eq!(letter["receive_count"], "1", "not retried first");
    assert_eq!(db.count("SELECT count(*) FROM event_log").await, 3);
    let logs = std::fs::read_to_string(&worker.log).unwrap();
    assert!(
        logs.contains("each update is processed alone"),
        "the four came in one receive and their transaction failed first"
    );
}

#[tokio::test]
async fn a_fifo_group_in_one_batch_keeps_its_order() {
    let db = db_with_catalog("batch_fifo").await;
    let stack = Stack::new("batchfifo", true).await;
    let bodies: Vec<String> = (1..=4)
        .map(|v| update_body("d1", &format!("v{v}")))
        .collect();
    let ids = message_ids(&stack, &bodies).await;
    let worker = worker(&stack, &db);
    let lines = lines_of(&worker, &ids).await;
    assert!(
        lines.iter().all(|l| l["outcome"] == "processed"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l["detail"]
            .as_str()
            .is_some_and(|d| d.contains("committed with"))),
        "the group came in one receive and committed together: {lines:?}"
    );
    assert_eq!(
        db.strings("SELECT version_manifest_path FROM dataset_updates ORDER BY created_at, id")
            .await,
        (1..=4)
            .map(|v| format!("d1/v{v}/manifest.json"))
            .collect::<Vec<_>>(),
        "the newest update of d1 is the last one sent"
    );
}
