//! The freshness sweep costs what is due (docs/semantics.md, "Freshness
//! expectations"): it judges only the entities whose next deadline has come
//! or whose facts changed, and an update ends its dataset's lateness in its
//! own transaction. Time is controlled by backdating what the database
//! holds, never by sleeping.

use orchestrator_core::app::freshness::sweep;
use orchestrator_core::app::lifecycle;
use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{apply, completed_event, status_of, update};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// `datasets` datasets expected hourly and `metrics` metrics reading them
/// (one input each), each with a max age.
fn catalog(datasets: usize, metrics: usize) -> Value {
    let ds: Vec<Value> = (0..datasets)
        .map(|i| {
            json!({"id": format!("d{i}"), "name": format!("d{i}"), "bucket": "b",
                        "series": [format!("S{i}")], "expected_every": "1h"})
        })
        .collect();
    let series: Vec<Value> = (0..datasets)
        .map(|i| json!({"code": format!("S{i}")}))
        .collect();
    let ms: Vec<Value> = (0..metrics)
        .map(|i| {
            json!({"id": format!("m{i:05}"), "code": format!("m.{i:05}"), "expression_type": "composite",
                   "expression_json": {"op": "sum", "operands": [{"seriesCode": format!("S{}", i % datasets)}]},
                   "max_age": {"warn": "2h", "fail": "4h"}})
        })
        .collect();
    json!({"datasets": ds, "series": series, "metrics": ms})
}

async fn alert_types(db: &TestDb) -> Vec<String> {
    db.strings(
        "SELECT (payload::jsonb)->>'type' || ' ' || COALESCE((payload::jsonb)->>'datasetId', (payload::jsonb)->>'metricId')
           FROM outbox WHERE alert_type IS NOT NULL ORDER BY id",
    )
    .await
}

#[tokio::test]
async fn a_quiet_sweep_judges_nothing_and_a_busy_one_only_what_is_due() {
    let db = TestDb::new("due_quiet").await;
    apply(&db, &catalog(50, 2_000)).await;
    let ctx = db.ctx();
    // The first sweep judges everything: the catalog made it all due.
    let first = sweep(&ctx, None).await.unwrap();
    assert_eq!((first.datasets, first.metrics), (50, 2_000), "{first:?}");
    // Nothing is due until the first deadline (an hour away): a quiet sweep
    // judges nothing, whatever the catalog's size.
    for _ in 0..3 {
        let quiet = sweep(&ctx, None).await.unwrap();
        assert_eq!(
            (quiet.marks, quiet.datasets, quiet.metrics, quiet.changed),
            (0, 0, 0, 0),
            "{quiet:?}"
        );
    }
    // Every entity waits for its own next deadline.
    assert_eq!(
        db.count("SELECT count(*) FROM freshness_due WHERE due_at > now() + interval '59 minutes'")
            .await,
        2_050
    );
    // 1% of the metrics come due (their deadline moved into the past):
    // those, and only those, are judged.
    db.exec(
        "UPDATE freshness_due SET due_at = now() - interval '1 second'
          WHERE kind = 'metric' AND entity_id < 'm00020'",
    )
    .await;
    let due = sweep(&ctx, None).await.unwrap();
    assert_eq!((due.datasets, due.metrics), (0, 20), "{due:?}");
    // The sweep reaches them through the due index, not the catalog.
    let plan = db
        .strings(
            "EXPLAIN SELECT q.entity_id FROM freshness_due q
              WHERE q.kind = 'metric' AND q.due_at <= now()
                AND (q.due_at, q.entity_id) > ('1970-01-01', '')
              ORDER BY q.due_at, q.entity_id LIMIT 1000",
        )
        .await
        .join("\n");
    assert!(plan.contains("freshness_due_at_idx"), "{plan}");
}

#[tokio::test]
async fn facts_that_change_make_their_entities_due_and_nothing_else() {
    let db = TestDb::new("due_facts").await;
    apply(&db, &catalog(5, 100)).await;
    let ctx = db.ctx();
    sweep(&ctx, None).await.unwrap();
    // An update to d3 marks d3 (and requests its 20 metrics' runs); the
    // success of one of them marks that metric alone.
    process(&ctx, &update("d3", "v1")).await.unwrap();
    let run = db
        .string("SELECT id FROM metric_runs WHERE metric_id = 'm00003'")
        .await;
    let raw = json!({"type": "completed", "runId": run});
    lifecycle::handle(&ctx, &completed_event(&run, true, None), &raw)
        .await
        .unwrap();
    assert_eq!(status_of(&db, &run).await, "succeeded");
    let r = sweep(&ctx, None).await.unwrap();
    assert_eq!((r.datasets, r.metrics), (1, 1), "{r:?}");
    assert_eq!(
        db.strings(
            "SELECT metric_id || ' ' || state FROM metric_freshness WHERE metric_id = 'm00003'"
        )
        .await,
        ["m00003 pass"]
    );
    // Removing d4's expectation forgets its state at the next sweep.
    let mut c = catalog(5, 100);
    c["datasets"][4]
        .as_object_mut()
        .unwrap()
        .remove("expected_every");
    apply(&db, &c).await;
    let r = sweep(&ctx, None).await.unwrap();
    assert_eq!(r.datasets, 0, "{r:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM dataset_freshness WHERE dataset_id = 'd4'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_dataset_late_again_before_the_next_sweep_still_reports_each_transition() {
    let db = TestDb::new("due_between").await;
    apply(&db, &catalog(1, 1)).await;
    let ctx = db.ctx().with_alerts(true);
    db.exec(
        "UPDATE datasets SET expectation_set_at = now() - interval '3 hours';
         UPDATE metrics SET expectation_set_at = now() - interval '5 hours'",
    )
    .await;
    sweep(&ctx, None).await.unwrap();
    assert_eq!(
        alert_types(&db).await,
        ["dataset_late d0", "metric_freshness_changed m00000"]
    );
    // An update arrives: d0 is on time again, said by the update itself.
    let arrived = process(&ctx, &update("d0", "v1")).await.unwrap();
    assert_eq!(arrived.alerts.len(), 1, "{arrived:?}");
    // Before any sweep runs, it is late again (its update aged past the hour).
    db.exec("UPDATE dataset_updates SET created_at = created_at - interval '2 hours'")
        .await;
    sweep(&ctx, None).await.unwrap();
    assert_eq!(
        alert_types(&db).await,
        [
            "dataset_late d0",
            "metric_freshness_changed m00000",
            "dataset_on_time d0",
            "dataset_late d0"
        ]
    );
    // A duplicate of the update changes nothing and says nothing.
    let again = process(&ctx, &update("d0", "v1")).await.unwrap();
    assert!(again.duplicate && again.alerts.is_empty(), "{again:?}");
}
