//! Definition versions, staleness with its reasons, and what a change does
//! (docs/semantics.md, "Definition versions"), through the use cases on a
//! real database: the catalog apply that versions, the runs that record
//! their version, the worker's drain of changes, the judge of staleness.

use orchestrator_core::app::catalog_apply::{self, ApplyError};
use orchestrator_core::app::definition_changes::drain;
use orchestrator_core::app::lifecycle::handle;
use orchestrator_core::app::projection_update::process;
use orchestrator_core::app::staleness;
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_core::domain::staleness::{ReasonKind, Staleness};
use orchestrator_tests::fixtures::{apply, base_catalog, request_of, status_of, update};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// The base catalog with m.pair's scale and on_change set.
fn with_pair(scale: i64, on_change: &str) -> Value {
    let mut c = base_catalog();
    c["metrics"][1]["expression_json"]["scale"] = json!(scale);
    c["metrics"][1]["on_change"] = json!(on_change);
    c
}

async fn version_of(db: &TestDb, metric: &str) -> Option<i32> {
    db.client()
        .await
        .query_one(
            "SELECT definition_version FROM metrics WHERE code = $1",
            &[&metric],
        )
        .await
        .unwrap()
        .get(0)
}

async fn run_version(db: &TestDb, run: &str) -> (Option<i32>, Option<String>) {
    let r = db
        .client()
        .await
        .query_one(
            "SELECT definition_version, code_version FROM metric_runs WHERE id = $1",
            &[&run],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

async fn complete(db: &TestDb, run: &str, code_version: Option<&str>) {
    let ev = LifecycleEvent::Completed(Completion {
        run_id: run.into(),
        status: CompletionStatus::Success,
        metric_code: None,
        version_ts: None,
        output_manifest: None,
        row_count: Some(1),
        error: None,
        code_version: code_version.map(str::to_string),
    });
    let raw = json!({"type": "metric_run_completed", "runId": run, "n": uuid::Uuid::new_v4().to_string()});
    handle(&db.ctx(), &ev, &raw).await.unwrap();
    assert_eq!(status_of(db, run).await, "succeeded");
}

/// m.pair requested on d1 v1 and d2 v1; its run id.
async fn pair_output(db: &TestDb) -> String {
    process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    process(&db.ctx(), &update("d2", "v1")).await.unwrap();
    let runs = runs_of_pair(db).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

async fn staleness_of(db: &TestDb, code: &str) -> Staleness {
    let all = staleness::stale(&db.pool, None, None, 1000).await.unwrap();
    all.into_iter()
        .find(|(c, _)| c == code)
        .map(|(_, s)| s)
        .unwrap_or(Staleness::Current)
}

async fn runs_of_pair(db: &TestDb) -> Vec<String> {
    orchestrator_tests::fixtures::runs_of(db, "m.pair")
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test]
async fn an_unchanged_catalog_makes_no_version_and_respelling_it_makes_none_either() {
    let db = TestDb::new("defs_same").await;
    let first = catalog_apply::apply(&db.pool, &base_catalog())
        .await
        .unwrap();
    assert_eq!(first.first_versions, 4);
    assert!(first.definitions.is_empty());
    // The same catalog, every object's keys in reverse order and 100 as 100.0.
    let text = serde_json::to_string_pretty(&base_catalog())
        .unwrap()
        .replace("\"scale\": 100", "\"scale\": 100.0");
    let respelled: Value = serde_json::from_str(&text).unwrap();
    let again = catalog_apply::apply(&db.pool, &reversed(&respelled))
        .await
        .unwrap();
    assert_eq!(
        (again.first_versions, again.definitions.len()),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_definition_versions")
            .await,
        4
    );
    assert_eq!(
        db.count("SELECT count(*) FROM metric_definition_changes")
            .await,
        0
    );
}

fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.reverse();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), reversed(&o[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        _ => v.clone(),
    }
}

#[tokio::test]
async fn a_changed_expression_reruns_once_with_the_new_version_and_the_old_output_is_stale() {
    let db = TestDb::new("defs_rerun").await;
    apply(&db, &with_pair(100, "rerun")).await;
    let old = pair_output(&db).await;
    assert_eq!(run_version(&db, &old).await.0, Some(1));
    let req = request_of(&db, &old).await;
    assert_eq!(req["definitionVersion"], 1);
    assert_eq!(req["definitionHash"].as_str().unwrap().len(), 64);
    complete(&db, &old, Some("runner-abc123")).await;
    assert_eq!(
        run_version(&db, &old).await,
        (Some(1), Some("runner-abc123".to_string()))
    );
    assert_eq!(staleness_of(&db, "m.pair").await, Staleness::Current);

    let dry = catalog_apply::dry_run_as(&db.pool, &with_pair(1000, "rerun"), Some("ana"))
        .await
        .unwrap();
    assert_eq!(dry.definitions.len(), 1, "{dry:?}");
    assert_eq!(
        dry.definitions[0].to_string(),
        "m.pair: definition v1 → v2 (expression changed: scale 100 → 1000); on_change: rerun"
    );
    assert_eq!(
        version_of(&db, "m.pair").await,
        Some(1),
        "a dry run writes nothing"
    );

    catalog_apply::apply_as(&db.pool, &with_pair(1000, "rerun"), Some("ana"))
        .await
        .unwrap();
    assert_eq!(version_of(&db, "m.pair").await, Some(2));
    let s = staleness_of(&db, "m.pair").await;
    assert_eq!(s.reasons().len(), 1, "{s:?}");
    assert_eq!(s.reasons()[0].to_string(), "definition_changed (v1 → v2)");
    let by_reason = staleness::stale(&db.pool, Some(ReasonKind::DefinitionChanged), None, 10)
        .await
        .unwrap();
    assert_eq!(by_reason.len(), 1);
    let by_other = staleness::stale(&db.pool, Some(ReasonKind::PolicyChanged), None, 10)
        .await
        .unwrap();
    assert!(by_other.is_empty(), "{by_other:?}");

    let ctx = db.ctx().with_alerts(true);
    let drained = drain(&ctx, 100).await.unwrap();
    assert_eq!(
        (drained.done, drained.requested.len()),
        (1, 1),
        "{drained:?}"
    );
    assert!(
        drain(&ctx, 100).await.unwrap().requested.is_empty(),
        "acted on once"
    );
    let runs = runs_of_pair(&db).await;
    assert_eq!(runs.len(), 2, "one re-run: {runs:?}");
    let new = drained.requested[0].to_string();
    let req = request_of(&db, &new).await;
    assert_eq!(req["definitionVersion"], 2);
    assert_eq!(req["expressionJson"]["scale"], 1000);
    let alert: Value = serde_json::from_str(
        &db.client()
            .await
            .query_one(
                "SELECT payload FROM outbox WHERE alert_type = 'metric_definition_changed'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0),
    )
    .unwrap();
    assert_eq!(alert["metricCode"], "m.pair");
    assert_eq!(
        (alert["fromVersion"].clone(), alert["toVersion"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(alert["appliedBy"], "ana");
    assert_eq!(alert["summary"], "expression changed: scale 100 → 1000");
    assert_eq!(alert["action"], "rerun");
    assert_eq!(alert["runId"], new.as_str());

    complete(&db, &new, None).await;
    assert_eq!(staleness_of(&db, "m.pair").await, Staleness::Current);
}

#[tokio::test]
async fn a_run_in_flight_across_a_change_keeps_the_version_and_expression_it_was_requested_with() {
    let db = TestDb::new("defs_flight").await;
    apply(&db, &with_pair(100, "none")).await;
    let in_flight = pair_output(&db).await;
    catalog_apply::apply(&db.pool, &with_pair(1000, "none"))
        .await
        .unwrap();
    // Published after the change: still version 1 and scale 100.
    let req = request_of(&db, &in_flight).await;
    assert_eq!(req["definitionVersion"], 1);
    assert_eq!(req["expressionJson"]["scale"], 100);
    complete(&db, &in_flight, Some("new-code")).await;
    assert_eq!(
        run_version(&db, &in_flight).await.0,
        Some(1),
        "never restamped"
    );
    let s = staleness_of(&db, "m.pair").await;
    assert_eq!(s.reasons()[0].to_string(), "definition_changed (v1 → v2)");
}

#[tokio::test]
async fn on_change_none_marks_stale_and_requests_nothing() {
    let db = TestDb::new("defs_none").await;
    apply(&db, &with_pair(100, "none")).await;
    let old = pair_output(&db).await;
    complete(&db, &old, None).await;
    apply(&db, &with_pair(7, "none")).await;
    let ctx = db.ctx().with_alerts(true);
    let drained = drain(&ctx, 100).await.unwrap();
    assert_eq!(
        (drained.done, drained.requested.len()),
        (1, 0),
        "{drained:?}"
    );
    assert_eq!(runs_of_pair(&db).await.len(), 1);
    let outcome: String = db
        .client()
        .await
        .query_one(
            "SELECT payload::jsonb ->> 'outcome' FROM outbox WHERE alert_type = 'metric_definition_changed'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "marked stale; nothing requested (on_change: none)");
    assert!(matches!(
        staleness_of(&db, "m.pair").await,
        Staleness::Stale(_)
    ));
}

#[tokio::test]
async fn a_newer_input_and_a_policy_change_are_reasons_of_their_own() {
    let db = TestDb::new("defs_reasons").await;
    apply(&db, &with_pair(100, "none")).await;
    let old = pair_output(&db).await;
    complete(&db, &old, None).await;
    process(&db.ctx(), &update("d2", "v2")).await.unwrap();
    process(&db.ctx(), &update("d2", "v3")).await.unwrap();
    let mut c = with_pair(100, "none");
    c["metrics"][1]["trigger"] = json!({"cooldown": "1h"});
    apply(&db, &c).await;
    let s = staleness_of(&db, "m.pair").await;
    let text: Vec<String> = s.reasons().iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:?}");
    assert!(
        text[0].starts_with("input_updated (d2: 2 newer since "),
        "{text:?}"
    );
    assert_eq!(text[1], "policy_changed (v1 → v2)");
}

#[tokio::test]
async fn two_workers_draining_while_the_catalog_is_applied_again_request_the_run_once() {
    let db = TestDb::new("defs_race").await;
    apply(&db, &with_pair(100, "rerun")).await;
    let old = pair_output(&db).await;
    complete(&db, &old, None).await;
    apply(&db, &with_pair(1000, "rerun")).await;
    let (a, b) = (db.ctx(), db.ctx());
    let same = with_pair(1000, "rerun");
    let (x, y, applied) = tokio::join!(
        drain(&a, 100),
        drain(&b, 100),
        catalog_apply::apply(&db.pool, &same)
    );
    applied.unwrap();
    let requested = x.unwrap().requested.len() + y.unwrap().requested.len();
    let again = drain(&a, 100).await.unwrap().requested.len();
    assert_eq!(requested + again, 1);
    assert_eq!(runs_of_pair(&db).await.len(), 2);
    assert_eq!(
        db.count("SELECT count(*) FROM metric_definition_changes")
            .await,
        0
    );
}

#[tokio::test]
async fn a_rerun_honours_a_pending_run_and_a_cooldown() {
    let db = TestDb::new("defs_rules").await;
    let mut c = with_pair(100, "rerun");
    c["metrics"][1]["trigger"] = json!({"cooldown": "1h"});
    apply(&db, &c).await;
    let old = pair_output(&db).await;
    complete(&db, &old, None).await;
    c["metrics"][1]["expression_json"]["scale"] = json!(5);
    apply(&db, &c).await;
    let drained = drain(&db.ctx(), 100).await.unwrap();
    assert_eq!(
        (drained.done, drained.later, drained.requested.len()),
        (0, 1, 0)
    );
    let due_in: f64 = db
        .client()
        .await
        .query_one(
            "SELECT extract(epoch FROM due_at - now())::float8 FROM metric_definition_changes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(due_in > 3000.0, "put off to the cooldown's end: {due_in}");

    // m.triple waits for d3 (pending since d1 and d2 came): its change is
    // done at once, and its pending run is requested with the new version.
    c["metrics"][2]["on_change"] = json!("rerun");
    c["metrics"][2]["required_days"] = json!(30);
    apply(&db, &c).await;
    let drained = drain(&db.ctx(), 100).await.unwrap();
    assert_eq!(
        (drained.done, drained.requested.len()),
        (1, 0),
        "{drained:?}"
    );
    let outcome: String = db
        .client()
        .await
        .query_one(
            "SELECT payload::jsonb ->> 'outcome' FROM outbox WHERE dedup_key LIKE '%:m3:v2'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_default();
    assert_eq!(outcome, "", "alerts are off in this context");
    process(&db.ctx(), &update("d3", "v1")).await.unwrap();
    let triple = orchestrator_tests::fixtures::runs_of(&db, "m.triple").await;
    assert_eq!(triple.len(), 1, "no second run: {triple:?}");
    assert_eq!(request_of(&db, &triple[0].0).await["definitionVersion"], 2);
}

#[tokio::test]
async fn on_change_backfill_is_checked_where_it_is_written_and_stored() {
    let db = TestDb::new("defs_backfill").await;
    let mut c = base_catalog();
    c["metrics"][1]["on_change"] = json!({"backfill": {"since": "soon"}});
    let Err(ApplyError::Invalid(p)) = catalog_apply::apply(&db.pool, &c).await else {
        panic!("a malformed since accepted")
    };
    assert_eq!(p.0[0].path, "metrics[1].on_change.backfill.since");
    assert!(p.0[0].message.contains("must be a duration"), "{p}");
    c["metrics"][1]["on_change"] = json!({"backfill": {"since": "90d"}});
    apply(&db, &c).await;
    let row = db
        .client()
        .await
        .query_one(
            "SELECT on_change, on_change_since_secs FROM metrics WHERE id = 'm2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, &str>(0), row.get::<_, Option<i64>>(1)),
        ("backfill", Some(90 * 86_400))
    );
}

#[tokio::test]
async fn metrics_without_a_version_get_version_1_from_what_is_stored() {
    let db = TestDb::new("defs_stamp").await;
    apply(&db, &base_catalog()).await;
    let before: String = db
        .client()
        .await
        .query_one(
            "SELECT hash FROM metric_definition_versions WHERE metric_id = 'm2'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    // What an upgrade from before versions finds.
    db.exec("UPDATE metrics SET definition_version = NULL; DELETE FROM metric_definition_versions")
        .await;
    orchestrator_core::store::migrate::migrate(&db.pool)
        .await
        .unwrap();
    let r = db
        .client()
        .await
        .query_one(
            "SELECT v.hash, v.action, m.definition_version FROM metric_definition_versions v
               JOIN metrics m ON m.id = v.metric_id WHERE v.metric_id = 'm2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        r.get::<_, String>(0),
        before,
        "the stored definition hashes as the catalog's"
    );
    assert_eq!(r.get::<_, String>(1), "adopted");
    assert_eq!(r.get::<_, Option<i32>>(2), Some(1));
    // And the same catalog applied again is no change.
    let again = catalog_apply::apply(&db.pool, &base_catalog())
        .await
        .unwrap();
    assert!(again.definitions.is_empty(), "{again:?}");
}

#[tokio::test]
async fn a_retry_after_a_change_carries_its_first_attempt_s_version_and_expression() {
    let db = TestDb::new("defs_retry").await;
    let mut c = with_pair(100, "none");
    c["metrics"][1]["max_attempts"] = json!(2);
    apply(&db, &c).await;
    let first = pair_output(&db).await;
    c["metrics"][1]["expression_json"]["scale"] = json!(1000);
    apply(&db, &c).await;
    let failed = LifecycleEvent::Completed(Completion {
        run_id: first.as_str().into(),
        status: CompletionStatus::Failure,
        metric_code: None,
        version_ts: None,
        output_manifest: None,
        row_count: None,
        error: Some("boom".into()),
        code_version: None,
    });
    handle(&db.ctx(), &failed, &json!({"runId": first, "n": 1}))
        .await
        .unwrap();
    let runs = runs_of_pair(&db).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(run_version(&db, &runs[1]).await.0, Some(1));
    let req = request_of(&db, &runs[1]).await;
    assert_eq!(
        (
            req["definitionVersion"].clone(),
            req["expressionJson"]["scale"].clone()
        ),
        (json!(1), json!(100))
    );
}

#[tokio::test]
async fn the_api_lists_outputs_by_status_and_reason() {
    let db = TestDb::new("defs_api").await;
    apply(&db, &with_pair(100, "none")).await;
    let old = pair_output(&db).await;
    complete(&db, &old, None).await;
    apply(&db, &with_pair(1000, "none")).await;
    let api = orchestrator_tests::api::ApiServer::for_db(&db, None).await;
    let (st, page) = api
        .get("/api/v1/metrics?stale_reason=definition_changed")
        .await;
    assert_eq!(st, 200, "{page}");
    let codes: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["m.pair"]);
    let m = &page["items"][0];
    assert_eq!(m["definitionVersion"], 2);
    assert_eq!(m["output"]["status"], "stale");
    assert_eq!(m["output"]["definitionVersion"], 1);
    assert_eq!(m["output"]["reasons"][0]["reason"], "definition_changed");
    assert_eq!(
        (
            m["output"]["reasons"][0]["fromVersion"].clone(),
            m["output"]["reasons"][0]["toVersion"].clone()
        ),
        (json!(1), json!(2))
    );
    let (_, none) = api.get("/api/v1/metrics?output=no_output").await;
    let codes: Vec<&str> = none["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["m.nodays", "m.single", "m.triple"]);
    let (st, bad) = api.get("/api/v1/metrics?stale_reason=late").await;
    assert_eq!(st, 400, "{bad}");
    assert!(
        bad.to_string().contains("one of definition_changed"),
        "{bad}"
    );
    let (_, run) = api.get(&format!("/api/v1/runs/{old}")).await;
    assert_eq!(run["definitionVersion"], 1);
    let (_, doc) = api.get("/api/v1/openapi.json").await;
    let params = doc["paths"]["/api/v1/metrics"]["get"]["parameters"].to_string();
    assert!(
        params.contains("stale_reason") && params.contains("\"output\""),
        "{params}"
    );
}
