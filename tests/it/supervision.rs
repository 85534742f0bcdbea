//! A worker whose background task dies stops, with the task's name and
//! cause, instead of running on without it: its `main` then exits non-zero
//! and ECS starts a new one. The failure is injected through the publisher
//! (a real projection-update worker on LocalStack and PostgreSQL, whose
//! publisher panics on its first run request).

use std::sync::Arc;
use std::time::Duration;

use orchestrator_core::config::Env;
use orchestrator_core::outbox::{PublishError, Publisher, Relay, RelayConfig};
use orchestrator_core::store::outbox::OutboxMessage;
use orchestrator_core::workers::{run_projection_updates, ConsumerDeps, WorkerError, WorkerKind};
use orchestrator_tests::aws::Stack;
use orchestrator_tests::fixtures::db_with_catalog;
use tokio_util::sync::CancellationToken;

struct PanickingPublisher;

impl Publisher for PanickingPublisher {
    async fn publish(&self, _: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        panic!("injected: the publisher broke");
    }
}

#[tokio::test]
async fn a_background_task_that_panics_stops_the_worker_with_its_name_and_cause() {
    let db = db_with_catalog("supervise").await;
    let stack = Stack::new("supervise", false).await;
    let env: std::collections::HashMap<String, String> = stack.env(&db).into_iter().collect();
    let sns = ConsumerDeps::from_env(&Env(|k| env.get(k).cloned()), WorkerKind::ProjectionUpdates)
        .await
        .expect("the worker's settings");
    let deps = ConsumerDeps {
        relay: Arc::new(Relay::new(
            db.pool.clone(),
            PanickingPublisher,
            RelayConfig::default(),
        )),
        kind: sns.kind,
        ops_addr: sns.ops_addr,
        ctx: sns.ctx,
        // The stack's clients: LocalStack (the settings' own come from the
        // process environment).
        aws: orchestrator_tests::aws::clients().await,
        consumer: sns.consumer,
        publish_backlog_limit: sns.publish_backlog_limit,
        freshness_interval: sns.freshness_interval,
        definition_changes_per_sec: sns.definition_changes_per_sec,
    };
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(run_projection_updates(deps, shutdown.clone()));
    // d1 v1 completes m.single: a run request to publish.
    stack
        .send(
            &stack.names.projection_updates_queue_url,
            r#"{"event":"projection_update","dataset_id":"d1","version_manifest_path":"d1/v1/manifest.json","projections_path":"d1/v1/"}"#,
        )
        .await;
    let ended = tokio::time::timeout(Duration::from_secs(60), worker)
        .await
        .expect("the worker stopped by itself within 60 s")
        .expect("the worker's task");
    shutdown.cancel();
    match ended {
        Err(WorkerError::Task(f)) => {
            assert!(["publisher", "outbox sweep"].contains(&f.task), "{f}");
            assert!(f.cause.contains("injected: the publisher broke"), "{f}");
        }
        other => panic!("expected a task failure, got {other:?}"),
    }
}

/// The same, end to end: a real worker process whose background task dies
/// (a test build's injected fault, `workers::tasks::injected_fault`) logs
/// the task's name and cause and exits non-zero, which is what makes ECS
/// start a new one. Both workers, as their binaries.
#[tokio::test]
async fn a_worker_process_whose_background_task_dies_exits_non_zero_naming_it() {
    let db = db_with_catalog("supervise_exit").await;
    let stack = Stack::new("supervise-exit", false).await;
    for binary in ["projection-update-worker", "run-lifecycle-worker"] {
        let mut env = stack.env(&db);
        env.push(("ORCHESTRATOR_TEST_PANIC_AFTER_MS".into(), "1500".into()));
        let mut worker = orchestrator_tests::process::Process::spawn(binary, &env, &[]);
        let status = worker
            .wait_exit(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{binary} still running: {}", worker.output()));
        let out = worker.output();
        assert!(!status.success(), "{binary} exited {status}: {out}");
        assert!(out.contains("injected fault"), "{binary}: {out}");
        assert!(
            out.contains("a background task stopped; stopping the worker"),
            "{binary}: {out}"
        );
    }
}
