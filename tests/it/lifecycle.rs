//! The run lifecycle (docs/semantics.md): every transition of the table, late and
//! out-of-order events, timeouts and retries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator_core::app::lifecycle::{handle, LifecycleOutcome};
use orchestrator_core::app::projection_update::process;
use orchestrator_core::app::sweeper::{sweep, Timeouts};
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_core::domain::run_state::{IgnoreReason, RunStatus};
use orchestrator_tests::fixtures::{db_with_catalog, request_of, runs_of, status_of, update};
use orchestrator_tests::TestDb;
use serde_json::json;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn started(run: &str, at: Option<&str>) -> LifecycleEvent {
    LifecycleEvent::Started {
        run_id: run.into(),
        started_at: at.map(t),
    }
}

fn heartbeat(run: &str, ts: Option<&str>, progress: Option<f64>) -> LifecycleEvent {
    LifecycleEvent::Heartbeat {
        run_id: run.into(),
        progress,
        ts: ts.map(t),
    }
}

fn completed(run: impl AsRef<str>, ok: bool) -> LifecycleEvent {
    LifecycleEvent::Completed(Completion {
        code_version: None,
        run_id: run.as_ref().into(),
        status: if ok {
            CompletionStatus::Success
        } else {
            CompletionStatus::Failure
        },
        metric_code: Some("m.single".into()),
        version_ts: Some("2026-11-20".into()),
        output_manifest: Some("s3://out/m/manifest.json".into()),
        row_count: Some(1234),
        error: (!ok).then(|| "boom".to_string()),
    })
}

async fn send(db: &TestDb, ev: &LifecycleEvent) -> LifecycleOutcome {
    let raw = json!({"type": ev.kind().as_str(), "runId": ev.run_id(), "nonce": uuid::Uuid::new_v4().to_string()});
    handle(&db.ctx(), ev, &raw)
        .await
        .expect("lifecycle event handled")
}

/// A database with one queued run of `m.single`; returns its id.
async fn queued_run(label: &str) -> (TestDb, String) {
    let db = db_with_catalog(label).await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let id = s.evaluated.queued_run_ids[0].to_string();
    (db, id)
}

/// Like [`queued_run`], with `m.single` allowed `max_attempts` attempts.
async fn queued_run_with_attempts(label: &str, max_attempts: i32) -> (TestDb, String) {
    let db = db_with_catalog(label).await;
    let mut cat = orchestrator_tests::fixtures::base_catalog();
    cat["metrics"][0]["max_attempts"] = json!(max_attempts);
    orchestrator_tests::fixtures::apply(&db, &cat).await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let id = s.evaluated.queued_run_ids[0].to_string();
    (db, id)
}

async fn set_status(db: &TestDb, run: &str, status: &str) {
    db.exec(&format!(
        "UPDATE metric_runs SET status = '{status}' WHERE id = '{run}'"
    ))
    .await;
}

async fn ts_col(db: &TestDb, run: &str, col: &str) -> Option<DateTime<Utc>> {
    db.client()
        .await
        .query_one(
            &format!("SELECT {col} FROM metric_runs WHERE id = $1"),
            &[&run],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn started_moves_queued_and_dispatched_to_running_and_the_earliest_start_wins() {
    for from in ["queued", "dispatched"] {
        let (db, run) = queued_run(&format!("started_from_{from}")).await;
        set_status(&db, &run, from).await;
        let out = send(&db, &started(&run, Some("2026-11-20T10:00:05Z"))).await;
        assert!(
            matches!(
                out,
                LifecycleOutcome::Applied {
                    to: RunStatus::Running,
                    ..
                }
            ),
            "{out:?}"
        );
        assert_eq!(status_of(&db, &run).await, "running");
        assert_eq!(
            ts_col(&db, &run, "started_at").await,
            Some(t("2026-11-20T10:00:05Z"))
        );
    }
}

#[tokio::test]
async fn started_on_a_running_run_keeps_status_and_only_fills_a_missing_started_at() {
    let (db, run) = queued_run("started_on_running").await;
    // Heartbeat first (out of order): running without a start time.
    send(
        &db,
        &heartbeat(&run, Some("2026-11-20T10:01:00Z"), Some(10.0)),
    )
    .await;
    assert_eq!(ts_col(&db, &run, "started_at").await, None);
    send(&db, &started(&run, Some("2026-11-20T10:00:00Z"))).await;
    assert_eq!(
        ts_col(&db, &run, "started_at").await,
        Some(t("2026-11-20T10:00:00Z"))
    );
    // A redelivered start with another time does not overwrite it.
    send(&db, &started(&run, Some("2026-11-20T09:00:00Z"))).await;
    assert_eq!(
        ts_col(&db, &run, "started_at").await,
        Some(t("2026-11-20T10:00:00Z"))
    );
    assert_eq!(status_of(&db, &run).await, "running");
}

#[tokio::test]
async fn heartbeat_moves_to_running_and_keeps_the_latest_heartbeat_time() {
    let (db, run) = queued_run("heartbeat").await;
    send(
        &db,
        &heartbeat(&run, Some("2026-11-20T10:02:00Z"), Some(40.0)),
    )
    .await;
    assert_eq!(status_of(&db, &run).await, "running");
    // An older heartbeat arriving late does not move the time back.
    send(
        &db,
        &heartbeat(&run, Some("2026-11-20T10:01:00Z"), Some(30.0)),
    )
    .await;
    assert_eq!(
        ts_col(&db, &run, "last_heartbeat_at").await,
        Some(t("2026-11-20T10:02:00Z"))
    );
    let progress: Option<f64> = db
        .client()
        .await
        .query_one("SELECT progress FROM metric_runs WHERE id = $1", &[&run])
        .await
        .unwrap()
        .get(0);
    assert_eq!(progress, Some(30.0));
    // Without ts, the database clock is used.
    send(&db, &heartbeat(&run, None, None)).await;
    assert!(ts_col(&db, &run, "last_heartbeat_at").await.unwrap() > t("2026-11-20T10:02:00Z"));
}

#[tokio::test]
async fn completion_is_accepted_from_every_open_state_and_records_results() {
    for (i, from) in ["queued", "dispatched", "running", "timed_out"]
        .iter()
        .enumerate()
    {
        let (db, run) = queued_run(&format!("completed_from_{from}")).await;
        set_status(&db, &run, from).await;
        let ok = i % 2 == 0;
        let out = send(&db, &completed(&run, ok)).await;
        let want = if ok {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        };
        assert!(
            matches!(out, LifecycleOutcome::Applied { to, .. } if to == want),
            "{from}: {out:?}"
        );
        let row = db
            .client()
            .await
            .query_one(
                "SELECT status, finished_at IS NOT NULL, version_ts, manifest_path, row_count, error
                   FROM metric_runs WHERE id = $1",
                &[&run],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), want.as_str());
        assert!(row.get::<_, bool>(1));
        assert_eq!(
            row.get::<_, Option<String>>(2).as_deref(),
            Some("2026-11-20")
        );
        assert_eq!(
            row.get::<_, Option<String>>(3).as_deref(),
            Some("s3://out/m/manifest.json")
        );
        assert_eq!(row.get::<_, Option<i64>>(4), Some(1234));
        assert_eq!(
            row.get::<_, Option<String>>(5),
            (!ok).then(|| "boom".to_string())
        );
    }
}

#[tokio::test]
async fn started_and_heartbeat_after_a_timeout_are_ignored() {
    let (db, run) = queued_run("after_timeout").await;
    set_status(&db, &run, "timed_out").await;
    for ev in [started(&run, None), heartbeat(&run, None, Some(50.0))] {
        assert_eq!(
            send(&db, &ev).await,
            LifecycleOutcome::Ignored(IgnoreReason::TimedOut)
        );
    }
    assert_eq!(status_of(&db, &run).await, "timed_out");
}

#[tokio::test]
async fn first_terminal_state_wins_and_late_events_are_ignored() {
    let (db, run) = queued_run("terminal_wins").await;
    send(&db, &completed(&run, true)).await;
    for ev in [
        completed(&run, false),
        started(&run, None),
        heartbeat(&run, None, None),
    ] {
        assert_eq!(
            send(&db, &ev).await,
            LifecycleOutcome::Ignored(IgnoreReason::AlreadyTerminal(RunStatus::Succeeded))
        );
    }
    assert_eq!(status_of(&db, &run).await, "succeeded");
    set_status(&db, &run, "canceled").await;
    assert_eq!(
        send(&db, &completed(&run, true)).await,
        LifecycleOutcome::Ignored(IgnoreReason::AlreadyTerminal(RunStatus::Canceled))
    );
}

#[tokio::test]
async fn events_for_a_pending_run_are_ignored() {
    let db = db_with_catalog("pending_ignored").await;
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let pair = runs_of(&db, "m.pair").await[0].0.clone();
    for ev in [
        started(&pair, None),
        heartbeat(&pair, None, None),
        completed(&pair, true),
    ] {
        assert_eq!(
            send(&db, &ev).await,
            LifecycleOutcome::Ignored(IgnoreReason::NotRequested)
        );
    }
    assert_eq!(status_of(&db, &pair).await, "pending_dependencies");
}

#[tokio::test]
async fn unknown_run_is_ignored_and_recorded_in_event_log() {
    let db = db_with_catalog("unknown_run").await;
    let out = send(&db, &started("no-such-run", None)).await;
    assert_eq!(out, LifecycleOutcome::UnknownRun);
    assert_eq!(
        db.count("SELECT count(*) FROM event_log WHERE run_id = 'no-such-run' AND event_type = 'metric_run_started'")
            .await,
        1
    );
}

#[tokio::test]
async fn failed_run_with_attempts_left_is_retried_with_the_same_updates() {
    let (db, run) = queued_run_with_attempts("retry_on_failure", 2).await;
    let LifecycleOutcome::Applied {
        retry_run_id: Some(retry),
        outbox_ids,
        ..
    } = send(&db, &completed(&run, false)).await
    else {
        panic!("a failed run with attempts left is retried")
    };
    assert_eq!(outbox_ids.len(), 1);
    let row = db
        .client()
        .await
        .query_one(
            "SELECT status, attempt, retry_of FROM metric_runs WHERE id = $1",
            &[&retry],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "queued");
    assert_eq!(row.get::<_, i32>(1), 2);
    assert_eq!(row.get::<_, Option<String>>(2), Some(run.clone()));
    let (a, b) = (request_of(&db, &run).await, request_of(&db, &retry).await);
    assert_eq!(
        a["catalog"], b["catalog"],
        "a retry uses the same dataset updates"
    );
    assert_eq!(b["attempt"], 2);
    // The retry failing too ends there: max_attempts is 2.
    let out = send(&db, &completed(&retry, false)).await;
    assert!(
        matches!(
            out,
            LifecycleOutcome::Applied {
                retry_run_id: None,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE metric_code = 'm.single'")
            .await,
        2
    );
}

#[tokio::test]
async fn running_run_without_heartbeat_times_out_after_the_heartbeat_timeout() {
    let (db, run) = queued_run("heartbeat_timeout").await;
    send(&db, &started(&run, None)).await;
    let timeouts = Timeouts {
        heartbeat: Some(Duration::from_secs(60)),
        start: Duration::from_secs(3600),
    };
    assert!(sweep(&db.ctx(), timeouts)
        .await
        .unwrap()
        .timed_out
        .is_empty());
    db.exec(&format!(
        "UPDATE metric_runs SET last_contact_at = now() - interval '61 seconds' WHERE id = '{run}'"
    ))
    .await;
    let s = sweep(&db.ctx(), timeouts).await.unwrap();
    assert_eq!(s.timed_out, vec![run.clone()]);
    assert_eq!(status_of(&db, &run).await, "timed_out");
    assert!(s.retries.is_empty(), "max_attempts 1: no retry");
}

#[tokio::test]
async fn without_heartbeats_a_metrics_run_timeout_bounds_the_run_from_its_start() {
    // RUN_HEARTBEAT_TIMEOUT_SECS=0: runners that never send heartbeats (the
    // reference runner's loop sends none) are not timed out for silence.
    let (db, run) = queued_run("run_timeout").await;
    send(&db, &started(&run, None)).await;
    let no_heartbeat = Timeouts {
        heartbeat: None,
        start: Duration::from_secs(3600),
    };
    db.exec(&format!(
        "UPDATE metric_runs SET last_contact_at = now() - interval '2 days',
                started_at = now() - interval '2 days' WHERE id = '{run}'"
    ))
    .await;
    assert!(
        sweep(&db.ctx(), no_heartbeat)
            .await
            .unwrap()
            .timed_out
            .is_empty(),
        "heartbeat timeout off and no run_timeout_secs: the run waits"
    );
    assert_eq!(status_of(&db, &run).await, "running");
    // The metric's run_timeout_secs bounds it from its start.
    db.exec("UPDATE metrics SET run_timeout_secs = 600 WHERE code = 'm.single'")
        .await;
    db.exec(&format!(
        "UPDATE metric_runs SET started_at = now() - interval '599 seconds' WHERE id = '{run}'"
    ))
    .await;
    assert!(sweep(&db.ctx(), no_heartbeat)
        .await
        .unwrap()
        .timed_out
        .is_empty());
    db.exec(&format!(
        "UPDATE metric_runs SET started_at = now() - interval '601 seconds' WHERE id = '{run}'"
    ))
    .await;
    let s = sweep(&db.ctx(), no_heartbeat).await.unwrap();
    assert_eq!(s.timed_out, vec![run.clone()]);
    assert_eq!(status_of(&db, &run).await, "timed_out");
    let error = db
        .string(&format!("SELECT error FROM metric_runs WHERE id = '{run}'"))
        .await;
    assert!(error.contains("run_timeout_secs (600 s)"), "{error}");
    // A late completion is still accepted after a timeout.
    send(&db, &completed(&run, true)).await;
    assert_eq!(status_of(&db, &run).await, "succeeded");
}

#[tokio::test]
async fn queued_or_dispatched_run_not_started_times_out_after_the_start_timeout() {
    let (db, run) = queued_run("start_timeout").await;
    set_status(&db, &run, "dispatched").await;
    let timeouts = Timeouts {
        heartbeat: Some(Duration::from_secs(60)),
        start: Duration::from_secs(300),
    };
    db.exec(&format!("UPDATE metric_runs SET last_contact_at = now() - interval '200 seconds' WHERE id = '{run}'"))
        .await;
    assert!(
        sweep(&db.ctx(), timeouts)
            .await
            .unwrap()
            .timed_out
            .is_empty(),
        "start timeout is 300 s, not 60"
    );
    db.exec(&format!("UPDATE metric_runs SET last_contact_at = now() - interval '301 seconds' WHERE id = '{run}'"))
        .await;
    assert_eq!(
        sweep(&db.ctx(), timeouts).await.unwrap().timed_out,
        vec![run.clone()]
    );
}

#[tokio::test]
async fn timeouts_are_measured_from_receipt_not_from_runner_timestamps() {
    let (db, run) = queued_run("skewed_clock").await;
    // A runner whose clock is a year behind: its heartbeat time is ancient,
    // but the fleet received it just now.
    send(
        &db,
        &heartbeat(&run, Some("2025-11-20T10:00:00Z"), Some(5.0)),
    )
    .await;
    let timeouts = Timeouts {
        heartbeat: Some(Duration::from_secs(60)),
        start: Duration::from_secs(60),
    };
    assert!(sweep(&db.ctx(), timeouts)
        .await
        .unwrap()
        .timed_out
        .is_empty());
    assert_eq!(status_of(&db, &run).await, "running");
}

#[tokio::test]
async fn timed_out_run_with_max_attempts_2_is_retried_once_and_a_late_completion_is_accepted() {
    let (db, run) = queued_run_with_attempts("timeout_retry", 2).await;
    send(&db, &started(&run, None)).await;
    db.exec(&format!(
        "UPDATE metric_runs SET last_contact_at = now() - interval '1 hour' WHERE id = '{run}'"
    ))
    .await;
    let timeouts = Timeouts {
        heartbeat: Some(Duration::from_secs(60)),
        start: Duration::from_secs(60),
    };
    let s = sweep(&db.ctx(), timeouts).await.unwrap();
    assert_eq!(s.timed_out, vec![run.clone()]);
    assert_eq!(s.retries.len(), 1);
    assert_eq!(s.outbox_ids.len(), 1);
    // The runner finally reports failure: accepted, but no second retry.
    let out = send(&db, &completed(&run, false)).await;
    assert!(
        matches!(
            out,
            LifecycleOutcome::Applied {
                from: RunStatus::TimedOut,
                to: RunStatus::Failed,
                retry_run_id: None,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM metric_runs WHERE retry_of = '{run}'"
        ))
        .await,
        1
    );
    // A second sweep finds nothing more to do.
    assert!(sweep(&db.ctx(), timeouts)
        .await
        .unwrap()
        .timed_out
        .is_empty());
}
