//! The consequences of projection-update processing (docs/semantics.md) under concurrency: several workers processing
//! interleaved updates of datasets that feed the same metrics.

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::app::backlog;
use orchestrator_core::app::lifecycle::handle;
use orchestrator_core::app::projection_update::process;
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_tests::fixtures::{apply, update};
use orchestrator_tests::invariants::assert_invariants;
use orchestrator_tests::synth::{self, Shape};
use orchestrator_tests::TestDb;
use serde_json::json;

#[tokio::test]
async fn eight_workers_processing_interleaved_updates_keep_every_invariant() {
    eight_workers(false).await;
}

/// The same, with backlogs handed off to each worker's next update as the
/// projection-update worker runs (app::backlog::BacklogHandoff).
#[tokio::test]
async fn eight_workers_handing_off_backlogs_keep_every_invariant() {
    eight_workers(true).await;
}

async fn eight_workers(handoff: bool) {
    let db = TestDb::new("concurrency").await;
    // A dense catalog: 6 datasets, 60 metrics over 2–4 series each, most
    // spanning several datasets, so that workers constantly meet on metrics.
    let shape = Shape {
        datasets: 6,
        series_per_dataset: 4,
        metrics: 60,
        seed: 11,
    };
    apply(&db, &synth::catalog(shape)).await;
    let updates = Arc::new(synth::updates(shape, 480));
    let ctx = if handoff {
        db.ctx().with_backlog_handoff()
    } else {
        db.ctx()
    };
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let (ctx, updates) = (ctx.clone(), updates.clone());
            tokio::spawn(async move {
                let (mut errors, mut deferred, mut evaluated) = (Vec::new(), 0, 0);
                // Worker w takes every 8th update, starting at w: neighbours
                // in the stream (different datasets, shared metrics) run at once.
                for u in updates.iter().skip(w).step_by(8) {
                    match process(&ctx, u).await {
                        Ok(s) => {
                            deferred += s.deferred;
                            evaluated += s.evaluated.backlog_evaluated;
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (errors, deferred, evaluated)
            })
        })
        .collect();
    let (mut errors, mut deferred, mut evaluated) = (Vec::new(), 0, 0);
    for t in tasks {
        let (e, d, v) = t.await.expect("worker task panicked");
        errors.extend(e);
        deferred += d;
        evaluated += v;
    }
    // What no later update took is drained on its own (the worker's flush).
    evaluated += backlog::drain_handoff_now(&ctx, Duration::ZERO)
        .await
        .expect("flush")
        .backlog_evaluated;
    assert!(
        errors.is_empty(),
        "errors surfaced (deadlocks must be retried, not reported): {errors:?}"
    );
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 480);
    assert_eq!(
        db.count("SELECT count(*) FROM event_log WHERE event_type = 'projection_update'")
            .await,
        480
    );
    let queued = db
        .count("SELECT count(*) FROM metric_runs WHERE status = 'queued'")
        .await;
    assert!(
        queued > 100,
        "the scenario must actually queue runs (got {queued})"
    );
    // Every update a worker deferred (its metric was held) was evaluated
    // exactly once, by the time the last worker returned (and, with the handoff, the
    // flush): nothing waits for the sweep.
    eprintln!("{deferred} metric evaluations deferred to a backlog");
    assert!(
        deferred > 0,
        "eight workers on shared metrics must have met held metrics: the backlog path did not run"
    );
    assert_eq!(evaluated, deferred);
    assert_eq!(
        db.count("SELECT count(*) FROM metric_update_backlog").await,
        0
    );
    assert_invariants(&db).await;
}

#[tokio::test]
async fn the_same_update_delivered_to_several_workers_at_once_is_processed_once() {
    let db = TestDb::new("concurrent_duplicates").await;
    apply(&db, &orchestrator_tests::fixtures::base_catalog()).await;
    let ctx = db.ctx();
    let u = update("d1", "v1");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (ctx, u) = (ctx.clone(), u.clone());
            tokio::spawn(async move { process(&ctx, &u).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        if !t.await.unwrap().duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one delivery is processed");
    assert_eq!(db.count("SELECT count(*) FROM dataset_updates").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM outbox").await, 1);
    assert_invariants(&db).await;
}

#[tokio::test]
async fn concurrent_completions_of_one_run_leave_a_single_terminal_state() {
    let db = TestDb::new("concurrent_completion").await;
    let mut cat = orchestrator_tests::fixtures::base_catalog();
    cat["metrics"][0]["max_attempts"] = json!(3);
    apply(&db, &cat).await;
    let ctx = db.ctx();
    let run = process(&ctx, &update("d1", "v1"))
        .await
        .unwrap()
        .evaluated
        .queued_run_ids[0]
        .clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (ctx, run) = (ctx.clone(), run.clone());
            tokio::spawn(async move {
                let ev = LifecycleEvent::Completed(Completion {
                    code_version: None,
                    run_id: run.clone(),
                    status: if i % 2 == 0 {
                        CompletionStatus::Success
                    } else {
                        CompletionStatus::Failure
                    },
                    metric_code: None,
                    version_ts: None,
                    output_manifest: None,
                    row_count: None,
                    error: None,
                });
                handle(&ctx, &ev, &json!({"i": i, "runId": run}))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut applied = 0;
    for t in tasks {
        if matches!(
            t.await.unwrap(),
            orchestrator_core::app::lifecycle::LifecycleOutcome::Applied { .. }
        ) {
            applied += 1;
        }
    }
    assert_eq!(
        applied, 1,
        "the first terminal state wins; the others are ignored"
    );
    assert!(
        db.count("SELECT count(*) FROM metric_runs WHERE retry_of IS NOT NULL")
            .await
            <= 1
    );
}

/// The invariant checks can fail: a second run of a metric that uses the
/// same updates as a first one (a different stored key, so the unique index
/// does not stop it) is counted from `run_inputs`.
#[tokio::test]
async fn the_invariant_checks_catch_two_runs_with_one_update_set() {
    let db = orchestrator_tests::fixtures::db_with_catalog("invariants_fail").await;
    let ctx = db.ctx();
    for d in ["d1", "d2", "d3"] {
        process(&ctx, &update(d, "v1")).await.unwrap();
    }
    let checks = orchestrator_tests::invariants::invariant_checks(&db.pool)
        .await
        .unwrap();
    assert!(checks.iter().all(|c| c.ok()), "{checks:?}");
    let run = db
        .string("SELECT id FROM metric_runs WHERE requested_at IS NOT NULL ORDER BY id LIMIT 1")
        .await;
    db.exec(&format!(
        "INSERT INTO metric_runs (id, metric_id, metric_code, status, requested_at, update_set_key, input_update_id, second_input_update_id)
           SELECT id || '-copy', metric_id, metric_code, 'canceled', requested_at, gen_random_uuid(), input_update_id, second_input_update_id
             FROM metric_runs WHERE id = '{run}';
         INSERT INTO outbox_messages (run_id, metric_code, payload, requested_at, output_base_path, trigger_note)
           SELECT run_id || '-copy', metric_code, payload, requested_at, output_base_path, trigger_note
             FROM outbox WHERE run_id = '{run}';
         INSERT INTO run_extra_inputs (run_id, dataset_update_id)
           SELECT run_id || '-copy', dataset_update_id FROM run_extra_inputs WHERE run_id = '{run}';"
    ))
    .await;
    let checks = orchestrator_tests::invariants::invariant_checks(&db.pool)
        .await
        .unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.ok()).collect();
    assert_eq!(failed.len(), 1, "{checks:?}");
    assert!(
        failed[0].what.contains("identical set of updates"),
        "{failed:?}"
    );
    assert_eq!(failed[0].got, 1);
}

/// A run whose request is written twice (its own row and an outbox message)
/// is counted as requested twice.
#[tokio::test]
async fn the_invariant_checks_catch_a_run_requested_twice() {
    let db = orchestrator_tests::fixtures::db_with_catalog("invariants_twice").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let run = db
        .string("SELECT id FROM metric_runs WHERE request_id IS NOT NULL ORDER BY id LIMIT 1")
        .await;
    let twice = || async {
        orchestrator_core::store::stats::invariants(&db.pool)
            .await
            .unwrap()
            .runs_requested_twice
    };
    assert_eq!(twice().await, 0);
    db.exec(&format!(
        "INSERT INTO outbox_messages (run_id, metric_code, requested_at, output_base_path)
           SELECT id, metric_code, requested_at, request_base_path FROM metric_runs WHERE id = '{run}'"
    ))
    .await;
    assert_eq!(twice().await, 1);
}
