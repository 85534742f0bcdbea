//! Adopting a metrics-engine-cp database (`orchestrator migrate --adopt`):
//! the reference's schema and a used history are built from the fixtures in
//! `tests/fixtures/metrics_engine_cp/` (which say what each row encodes).

use std::process::Command;

use orchestrator_core::app::lifecycle::{handle, LifecycleOutcome};
use orchestrator_core::app::projection_update::process;
use orchestrator_core::domain::adoption::AdoptionReport;
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_core::store::migrate::{self, Adoption, MigrateError};
use orchestrator_tests::fixtures::{request_of, status_of, update};
use orchestrator_tests::process::binary;
use orchestrator_tests::TestDb;
use serde_json::json;

const SCHEMA: &str = include_str!("../fixtures/metrics_engine_cp/schema.sql");
const HISTORY: &str = include_str!("../fixtures/metrics_engine_cp/history.sql");

fn run(n: &str) -> String {
    format!("5f0c4a8e-0000-4000-8000-0000000000{n}")
}
fn upd(n: &str) -> String {
    format!("9b2a7c1e-0000-4000-8000-00000000{n}")
}

const TABLES: [&str; 10] = orchestrator_core::domain::adoption::REFERENCE_TABLES;

async fn reference_db(label: &str) -> TestDb {
    let db = TestDb::empty(label).await;
    db.exec(SCHEMA).await;
    db.exec(HISTORY).await;
    db
}

/// Every relation of the schema and a digest of every reference table's rows.
async fn snapshot(db: &TestDb) -> Vec<String> {
    let mut out = db
        .strings(
            "SELECT c.relname || ':' || c.relkind::text FROM pg_class c
              WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1",
        )
        .await;
    for t in TABLES {
        out.push(
            db.string(&format!(
                "SELECT '{t}:' || count(*) || ':' || coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '')
                   FROM {t} x"
            ))
            .await,
        );
    }
    out
}

/// Columns, indexes and constraints of the current schema.
async fn schema_shape(db: &TestDb) -> Vec<String> {
    let mut shape = db
        .strings(
            "SELECT format('%s.%s %s %s null=%s default=%s', table_name, column_name, data_type,
                           coalesce(collation_name, '-'), is_nullable, coalesce(column_default, '-'))
               FROM information_schema.columns WHERE table_schema = current_schema()
                AND table_name <> 'refinery_schema_history' ORDER BY 1",
        )
        .await;
    shape.extend(
        db.strings(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()
                AND tablename <> 'refinery_schema_history' ORDER BY 1",
        )
        .await,
    );
    shape.extend(
        db.strings(
            "SELECT conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
               FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
                AND conrelid::regclass::text <> 'refinery_schema_history' ORDER BY 1",
        )
        .await,
    );
    shape
}

fn adopted(a: Adoption) -> AdoptionReport {
    match a {
        Adoption::Adopted(r) => r,
        other => panic!("expected an adoption, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_migrate_refuses_a_reference_database_and_changes_nothing() {
    let db = reference_db("adopt_refuse").await;
    let before = snapshot(&db).await;
    let err = migrate::migrate(&db.pool).await.unwrap_err();
    assert!(matches!(err, MigrateError::NeedsAdoption), "{err}");
    assert!(
        err.to_string().contains("orchestrator migrate --adopt"),
        "{err}"
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "plain migrate changed the database"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_class WHERE relname = 'refinery_schema_history'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_dry_run_reports_what_would_change_and_changes_nothing() {
    let db = reference_db("adopt_dry").await;
    let before = snapshot(&db).await;
    let report = adopted(migrate::adopt(&db.pool, true).await.expect("dry run"));
    assert!(report.dry_run);
    assert_eq!(report.superseded_pending_runs, vec![run("a5")]);
    assert_eq!(report.queued_to_dispatched, 1);
    assert_eq!(
        report.migrations_after,
        vec![
            "V2__run_status_views",
            "V3__outbox_trace_and_origin",
            "V4__metric_run_timeout",
            "V5__operator_api_indexes",
            "V6__metric_last_success_index",
            "V7__metric_update_backlog",
            "V8__freshness_and_alerts",
            "V9__trigger_policies",
            "V10__outbox_request_recipe",
            "V11__run_first_input_on_run",
            "V12__update_set_key_as_uuid",
            "V13__run_second_input_on_run",
            "V14__run_row_carries_its_request",
            "V15__run_dataset_updates_lists_every_input",
            "V16__metric_definition_versions",
            "V17__backfills",
            "V18__sweeps_read_what_is_due",
            "V19__catalog_entry_hashes"
        ]
    );
    let text = report.to_string();
    assert!(text.contains("dry run: nothing was changed"), "{text}");
    assert!(
        text.contains("metric_runs                          8 → 8"),
        "{text}"
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "the dry run changed the database"
    );
}

#[tokio::test]
async fn adoption_keeps_every_row_and_reconciles_what_our_invariants_forbid() {
    let db = reference_db("adopt_rows").await;
    let counts_before: Vec<i64> = {
        let mut v = Vec::new();
        for t in TABLES {
            v.push(db.count(&format!("SELECT count(*) FROM {t}")).await);
        }
        v
    };
    let report = adopted(migrate::adopt(&db.pool, false).await.expect("adoption"));
    assert!(!report.dry_run);
    // The reference knew no freshness expectations: adoption sets none.
    assert_eq!(
        db.count(
            "SELECT (SELECT count(*) FROM datasets WHERE expected_every_secs IS NOT NULL OR expected_by IS NOT NULL)
                  + (SELECT count(*) FROM metrics WHERE max_age_fail_secs IS NOT NULL OR expected_by IS NOT NULL)"
        )
        .await,
        0
    );
    // Nor trigger policies or holds: adopted metrics follow the default rule.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM metrics WHERE trigger_policy IS NOT NULL OR held_at IS NOT NULL"
        )
        .await,
        0
    );
    for (t, before) in TABLES.iter().zip(&counts_before) {
        let after = db.count(&format!("SELECT count(*) FROM {t}")).await;
        // Dependencies may only grow: the expression's missing ones are added.
        if *t == "metric_dependencies" {
            assert_eq!(after, before + 1, "{t}");
        } else {
            assert_eq!(after, *before, "{t} lost or gained rows");
        }
    }
    // The pile of pending runs: the newest stays open, the older is canceled with a reason.
    assert_eq!(status_of(&db, run("a6")).await, "pending_dependencies");
    assert_eq!(status_of(&db, run("a5")).await, "canceled");
    let why = db
        .string(&format!(
            "SELECT error FROM metric_runs WHERE id = '{}'",
            run("a5")
        ))
        .await;
    assert!(
        why.contains("superseded by the newer pending run") && why.contains(&run("a6")),
        "{why}"
    );
    // The reference's queued (published) run is ours dispatched; others keep their status.
    assert_eq!(status_of(&db, run("a2")).await, "dispatched");
    for (r, s) in [
        ("a1", "succeeded"),
        ("a3", "failed"),
        ("a4", "succeeded"),
        ("a7", "running"),
        ("a8", "canceled"),
    ] {
        assert_eq!(status_of(&db, run(r)).await, s, "{r}");
    }
    assert_eq!(report.superseded_pending_runs, vec![run("a5")]);
    assert_eq!(report.received_flags_fixed, 1);
    assert_eq!(report.negative_row_counts_cleared, 1);
    assert_eq!(report.update_set_conflicts, vec![run("a3")]);
    // Our columns, with their defaults.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM metrics WHERE enabled AND required_days = 7 AND max_attempts = 1"
        )
        .await,
        4
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE attempt = 1")
            .await,
        8
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE status = 'pending_dependencies' AND requested_at IS NULL").await,
        1
    );
    // Derived tables from the expressions (snake_case leaves of m.pair included).
    let deps = db
        .strings("SELECT metric_id || ':' || series_code FROM metric_dependencies ORDER BY 1")
        .await;
    assert_eq!(
        deps,
        ["m1:S1", "m1:S2", "m2:S1", "m2:S3", "m3:S4", "m4:S2", "m4:S3", "m4:S4"]
    );
    let required = db
        .strings("SELECT metric_id || ':' || dataset_id FROM metric_required_datasets ORDER BY 1")
        .await;
    assert_eq!(
        required,
        ["m1:d1", "m2:d1", "m2:d2", "m3:d3", "m4:d1", "m4:d2", "m4:d3"]
    );
    let disagreeing: Vec<String> = report
        .dependencies
        .iter()
        .filter(|d| !d.agrees())
        .map(|d| {
            format!(
                "{} missing={:?} extra={:?}",
                d.metric_code, d.missing, d.extra
            )
        })
        .collect();
    assert_eq!(
        disagreeing,
        [
            "m.extra missing=[] extra=[\"S2\"]",
            "m.window missing=[\"S4\"] extra=[]"
        ]
    );
    // The received flag follows the update id; received_at is the update's own time.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM metric_run_pending_datasets WHERE run_id = '{}' AND dataset_id = 'd2' AND NOT received",
            run("a5")
        ))
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE row_count < 0")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM event_log").await, 3);
}

#[tokio::test]
async fn an_adopted_schema_is_the_migrated_schema_and_adoption_is_idempotent() {
    let db = reference_db("adopt_shape").await;
    adopted(migrate::adopt(&db.pool, false).await.expect("adoption"));
    let fresh = TestDb::new("adopt_shape_fresh").await;
    let (ours, theirs) = (schema_shape(&fresh).await, schema_shape(&db).await);
    let only_fresh: Vec<&String> = ours.iter().filter(|l| !theirs.contains(l)).collect();
    let only_adopted: Vec<&String> = theirs.iter().filter(|l| !ours.contains(l)).collect();
    assert!(
        only_fresh.is_empty() && only_adopted.is_empty(),
        "schemas differ:\nonly in a migrated database: {only_fresh:#?}\nonly in the adopted one: {only_adopted:#?}"
    );
    assert_eq!(
        db.strings("SELECT version || ' ' || name FROM refinery_schema_history ORDER BY version")
            .await,
        fresh
            .strings("SELECT version || ' ' || name FROM refinery_schema_history ORDER BY version")
            .await
    );
    let before = snapshot(&db).await;
    assert_eq!(
        migrate::adopt(&db.pool, false)
            .await
            .expect("second adoption"),
        Adoption::AlreadyAdopted { applied: vec![] }
    );
    assert_eq!(
        migrate::migrate(&db.pool).await.expect("plain migrate"),
        Vec::<String>::new()
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "running it again changed the database"
    );
}

fn completed(run_id: &str) -> LifecycleEvent {
    LifecycleEvent::Completed(Completion {
        code_version: None,
        run_id: run_id.into(),
        status: CompletionStatus::Success,
        metric_code: None,
        version_ts: Some("2026-11-23".into()),
        output_manifest: Some(format!("metrics/{run_id}/manifest.json")),
        row_count: Some(42),
        error: None,
    })
}

async fn send(db: &TestDb, ev: LifecycleEvent) -> LifecycleOutcome {
    let raw = json!({"type": ev.kind().as_str(), "runId": ev.run_id(), "nonce": uuid::Uuid::new_v4().to_string()});
    handle(&db.ctx(), &ev, &raw)
        .await
        .expect("lifecycle event handled")
}

#[tokio::test]
async fn after_adoption_the_fleet_carries_on_with_the_history() {
    let db = reference_db("adopt_carry_on").await;
    adopted(migrate::adopt(&db.pool, false).await.expect("adoption"));
    let ctx = db.ctx();

    // An update the reference already processed is a duplicate.
    let dup = process(&ctx, &update("d1", "u2")).await.unwrap();
    assert!(dup.duplicate, "{dup:?}");

    // The adopted pending run completes with the next update, requested once,
    // naming the update it had received.
    let s = process(&ctx, &update("d2", "v2")).await.unwrap();
    assert!(
        s.evaluated
            .queued_run_ids
            .iter()
            .any(|r| r.as_str() == run("a6")),
        "{s:?}"
    );
    assert_eq!(status_of(&db, run("a6")).await, "queued");
    let request = request_of(&db, run("a6")).await;
    // Adopted metrics are at definition version 1, made from what was stored.
    assert_eq!(request["definitionVersion"], 1, "{request}");
    assert_eq!(
        db.count("SELECT count(*) FROM metrics WHERE definition_version IS DISTINCT FROM 1")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_definition_versions WHERE action <> 'adopted'")
            .await,
        0
    );
    assert_eq!(
        request["catalog"]["datasets"]["d1"]["manifestPath"],
        "d1/u2/manifest.json"
    );
    assert_eq!(
        request["catalog"]["datasets"]["d2"]["manifestPath"],
        "d2/v2/manifest.json"
    );
    let linked = db
        .strings(&format!(
            "SELECT dataset_update_id FROM run_inputs WHERE run_id = '{}' ORDER BY 1",
            run("a6")
        ))
        .await;
    assert!(linked.contains(&upd("d102")), "{linked:?}");
    // Requested once: the request on its row is not rewritten by the
    // duplicate, and no second request is written anywhere.
    let request_id = format!(
        "SELECT request_id::text FROM metric_runs WHERE id = '{}'",
        run("a6")
    );
    let first_request = db.string(&request_id).await;
    let again = process(&ctx, &update("d2", "v2")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(db.string(&request_id).await, first_request);
    assert_eq!(
        orchestrator_core::store::stats::invariants(&db.pool)
            .await
            .unwrap()
            .runs_requested_twice,
        0
    );

    // Runs the reference had requested are never requested again; their
    // lifecycle events apply.
    for (r, ev) in [
        (
            "a2",
            LifecycleEvent::Started {
                run_id: run("a2").into(),
                started_at: None,
            },
        ),
        (
            "a2",
            LifecycleEvent::Heartbeat {
                run_id: run("a2").into(),
                progress: Some(50.0),
                ts: None,
            },
        ),
        (
            "a7",
            LifecycleEvent::Heartbeat {
                run_id: run("a7").into(),
                progress: None,
                ts: None,
            },
        ),
    ] {
        let out = send(&db, ev).await;
        assert!(
            matches!(out, LifecycleOutcome::Applied { .. }),
            "{r}: {out:?}"
        );
        assert_eq!(status_of(&db, run(r)).await, "running", "{r}");
    }
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM metric_runs WHERE id = '{}' AND last_heartbeat_at > now() - interval '1 minute'",
            run("a7")
        ))
        .await,
        1
    );
    for r in ["a2", "a7"] {
        let out = send(&db, completed(&run(r))).await;
        assert!(
            matches!(out, LifecycleOutcome::Applied { .. }),
            "{r}: {out:?}"
        );
        assert_eq!(status_of(&db, run(r)).await, "succeeded", "{r}");
    }
    let reference_runs: Vec<String> = ["a1", "a2", "a3", "a4", "a5", "a7", "a8"]
        .iter()
        .map(|r| run(r))
        .collect();
    assert_eq!(
        db.client()
            .await
            .query_one(
                "SELECT count(*) FROM outbox WHERE run_id = ANY($1)",
                &[&reference_runs]
            )
            .await
            .unwrap()
            .get::<_, i64>(0),
        0,
        "a run the reference had requested was requested again"
    );
}

#[test]
fn the_cli_refuses_then_adopts_then_reports_the_schema_up_to_date() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(reference_db("adopt_cli"));
    let cli = |args: &[&str]| {
        Command::new(binary("orchestrator"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("orchestrator runs")
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let refused = cli(&["migrate"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("orchestrator migrate --adopt"),
        "{}",
        text(&refused)
    );
    let dry = cli(&["migrate", "--adopt", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("dry run: nothing was changed"),
        "{}",
        text(&dry)
    );
    let done = cli(&["migrate", "--adopt"]);
    assert!(done.status.success(), "{}", text(&done));
    assert!(
        text(&done).contains("older pending_dependencies runs of one metric canceled: 1"),
        "{}",
        text(&done)
    );
    assert!(
        text(&done).contains(
            "V10__outbox_request_recipe, V11__run_first_input_on_run, V12__update_set_key_as_uuid, V13__run_second_input_on_run, V14__run_row_carries_its_request, V15__run_dataset_updates_lists_every_input, V16__metric_definition_versions, V17__backfills, V18__sweeps_read_what_is_due, V19__catalog_entry_hashes applied"
        ),
        "{}",
        text(&done)
    );
    let again = cli(&["migrate", "--adopt"]);
    assert!(
        text(&again).contains("already managed by this fleet"),
        "{}",
        text(&again)
    );
    let plain = cli(&["migrate"]);
    assert!(
        plain.status.success() && text(&plain).contains("schema is up to date"),
        "{}",
        text(&plain)
    );
    drop(db);
}

#[tokio::test]
async fn an_adoption_that_fails_half_way_changes_nothing() {
    // An operator's own view on a reference table: the old table cannot be
    // dropped at the end, so the one transaction rolls back whole.
    let db = reference_db("adopt_fails").await;
    db.exec("CREATE VIEW my_report AS SELECT metric_code, status FROM metric_runs")
        .await;
    let before = snapshot(&db).await;
    let err = migrate::adopt(&db.pool, false).await.unwrap_err();
    let text = orchestrator_core::ground::errors::chain(&err);
    assert!(
        text.contains("my_report"),
        "the error names the view: {text}"
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "a failed adoption changed the database"
    );
    assert!(matches!(
        migrate::migrate(&db.pool).await.unwrap_err(),
        MigrateError::NeedsAdoption
    ));
}

#[tokio::test]
async fn adopting_a_partial_reference_schema_is_refused_and_changes_nothing() {
    let db = reference_db("adopt_partial").await;
    // A reference database missing one table (dropped by hand, or a newer
    // or older reference release): nothing here says how to reconcile it.
    let missing = TABLES[TABLES.len() - 1];
    db.exec(&format!("DROP TABLE {missing} CASCADE")).await;
    let before = db
        .strings(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
        )
        .await;
    for dry_run in [true, false] {
        let err = migrate::adopt(&db.pool, dry_run).await.unwrap_err();
        let MigrateError::UnknownSchema { present } = &err else {
            panic!("expected UnknownSchema, got {err}");
        };
        assert!(!present.iter().any(|t| t == missing), "{present:?}");
        assert!(present.iter().any(|t| t == TABLES[0]), "{present:?}");
    }
    let err = migrate::migrate(&db.pool).await.unwrap_err();
    assert!(matches!(err, MigrateError::UnknownSchema { .. }), "{err}");
    let after = db
        .strings(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
        )
        .await;
    assert_eq!(after, before, "a refused adoption changed the schema");
}

#[tokio::test]
async fn adopting_an_empty_database_is_refused_with_what_to_run_instead() {
    let db = TestDb::empty("adopt_empty").await;
    let err = migrate::adopt(&db.pool, false).await.unwrap_err();
    assert!(matches!(err, MigrateError::NothingToAdopt), "{err}");
    assert!(
        err.to_string().contains("run `orchestrator migrate`"),
        "{err}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            .await,
        0,
        "a refused adoption created tables"
    );
}

/// Two operators (or two deploy jobs) adopting at once: the migration lock
/// makes one adopt and the other find the work done.
#[tokio::test]
async fn two_adoptions_at_once_adopt_once() {
    let db = reference_db("adopt_twice").await;
    let rows_before = db.count("SELECT count(*) FROM metric_runs").await;
    let (a, b) = tokio::join!(
        migrate::adopt(&db.pool, false),
        migrate::adopt(&db.pool, false)
    );
    let (a, b) = (a.expect("first adoption"), b.expect("second adoption"));
    let adopted = [&a, &b]
        .iter()
        .filter(|x| matches!(x, Adoption::Adopted(_)))
        .count();
    let already = [&a, &b]
        .iter()
        .filter(|x| matches!(x, Adoption::AlreadyAdopted { .. }))
        .count();
    assert_eq!((adopted, already), (1, 1), "{a:?}\n{b:?}");
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs").await,
        rows_before
    );
    assert_eq!(
        db.count("SELECT count(*) - count(DISTINCT version) FROM refinery_schema_history")
            .await,
        0,
        "a migration recorded twice"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'adopt_legacy_%'")
            .await,
        0
    );
}
