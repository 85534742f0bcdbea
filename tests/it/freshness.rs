//! Freshness expectations (docs/semantics.md, "Freshness expectations"):
//! set by `catalog apply`, judged by the sweep, one alert per transition in
//! the outbox. Time is controlled by backdating what the database holds
//! (expectations' start and updates' arrival), never by sleeping.

use orchestrator_core::app::catalog_apply::{self, ApplyError};
use orchestrator_core::app::freshness::{sweep, FreshnessReport};
use orchestrator_core::app::projection_update::process;
use orchestrator_tests::fixtures::{apply, base_catalog, update};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// The base catalog with: d1 expected every hour, d2 every hour with 30
/// minutes' grace, m.pair (d1 and d2) warning after an hour without a
/// success and failing after two.
fn catalog_with_expectations() -> Value {
    let mut c = base_catalog();
    c["datasets"][0]["expected_every"] = json!("1h");
    c["datasets"][1]["expected_every"] = json!("1h");
    c["datasets"][1]["grace"] = json!("30m");
    c["metrics"][1]["max_age"] = json!({"warn": "1h", "fail": "2h"});
    c
}

async fn expecting_db(label: &str) -> TestDb {
    let db = TestDb::new(label).await;
    apply(&db, &catalog_with_expectations()).await;
    // The expectations hold since three hours ago.
    db.exec(
        "UPDATE datasets SET expectation_set_at = now() - interval '3 hours';
         UPDATE metrics SET expectation_set_at = now() - interval '3 hours'",
    )
    .await;
    db
}

async fn alerts(db: &TestDb) -> Vec<Value> {
    db.strings("SELECT payload FROM outbox WHERE alert_type IS NOT NULL ORDER BY id")
        .await
        .iter()
        .map(|p| serde_json::from_str(p).expect("an alert body is JSON"))
        .collect()
}

fn types(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{} {}",
                a["type"].as_str().unwrap(),
                a["datasetId"].as_str().or(a["metricId"].as_str()).unwrap()
            )
        })
        .collect()
}

async fn states(db: &TestDb) -> Vec<String> {
    let mut s = db
        .strings("SELECT dataset_id || ' ' || state FROM dataset_freshness ORDER BY 1")
        .await;
    s.extend(
        db.strings(
            "SELECT metric_id || ' ' || state || ' ' || array_to_string(blocking, ',')
               FROM metric_freshness ORDER BY 1",
        )
        .await,
    );
    s
}

#[tokio::test]
async fn catalog_apply_sets_changes_and_removes_expectations_and_a_dry_run_writes_nothing() {
    let db = TestDb::new("fresh_catalog").await;
    let r = catalog_apply::apply(&db.pool, &catalog_with_expectations())
        .await
        .expect("applies");
    let listed: Vec<String> = r.expectations.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "dataset d1: none → every 1h",
            "dataset d2: none → every 1h, grace 30m",
            "metric m2: none → max age warn 1h, fail 2h",
        ]
    );
    // Applying the same file again changes nothing.
    let again = catalog_apply::apply(&db.pool, &catalog_with_expectations())
        .await
        .unwrap();
    assert!(again.expectations.is_empty(), "{:?}", again.expectations);

    let mut changed = catalog_with_expectations();
    changed["datasets"][0]["expected_every"] = json!("2h");
    changed["datasets"][1]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k != "expected_every" && k != "grace");
    let dry = catalog_apply::dry_run(&db.pool, &changed).await.unwrap();
    assert!(dry.dry_run);
    let listed: Vec<String> = dry.expectations.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed,
        [
            "dataset d1: every 1h → every 2h",
            "dataset d2: every 1h, grace 30m → none"
        ]
    );
    assert_eq!(
        db.count("SELECT expected_every_secs FROM datasets WHERE id = 'd1'")
            .await,
        3600,
        "the dry run wrote"
    );

    let applied = catalog_apply::apply(&db.pool, &changed).await.unwrap();
    assert_eq!(applied.expectations.len(), 2);
    assert_eq!(
        db.strings(
            "SELECT id || ' ' || coalesce(expected_every_secs::text, '-') FROM datasets ORDER BY 1"
        )
        .await,
        ["d1 7200", "d2 -", "d3 -"]
    );

    let mut bad = catalog_with_expectations();
    bad["datasets"][2]["expected_by"] = json!("0 10 * * * Nowhere/City");
    bad["metrics"][0]["max_age"] = json!({"warn": "3h", "fail": "2h"});
    let Err(ApplyError::Invalid(problems)) = catalog_apply::apply(&db.pool, &bad).await else {
        panic!("an invalid expectation applied");
    };
    let text = problems.to_string();
    assert!(
        text.contains("datasets[2].expected_by: unknown time zone \"Nowhere/City\""),
        "{text}"
    );
    assert!(
        text.contains("metrics[0].max_age.warn: must be less than fail"),
        "{text}"
    );
}

#[tokio::test]
async fn a_late_dataset_alerts_once_then_recovers_once_and_names_what_blocks_a_metric() {
    let db = expecting_db("fresh_sweep").await;
    let ctx = db.ctx().with_alerts(true);
    process(&ctx, &update("d1", "v1")).await.unwrap();
    // d1's update arrived two hours ago: an hour past its deadline.
    db.exec("UPDATE dataset_updates SET created_at = created_at - interval '2 hours'")
        .await;

    let first = sweep(&ctx, None).await.unwrap();
    assert_eq!(
        (first.datasets, first.metrics, first.changed),
        (2, 1, 3),
        "{first:?}"
    );
    assert_eq!((first.late_datasets, first.failing_metrics), (2, 1));
    assert_eq!(states(&db).await, ["d1 late", "d2 late", "m2 fail d1,d2"]);
    let sent = alerts(&db).await;
    assert_eq!(
        types(&sent),
        [
            "dataset_late d1",
            "dataset_late d2",
            "metric_freshness_changed m2"
        ]
    );
    let m2 = &sent[2];
    assert_eq!(
        (m2["from"].as_str(), m2["to"].as_str()),
        (Some("unknown"), Some("fail"))
    );
    assert_eq!(m2["blockingInputs"], json!(["d1", "d2"]));
    assert_eq!(first.outbox_ids.len(), 3);

    // Nothing changed: nothing is written, nothing alerts.
    let quiet = sweep(&ctx, None).await.unwrap();
    assert_eq!(quiet.changed, 0, "{quiet:?}");
    assert_eq!(alerts(&db).await.len(), 3);

    // d1 arrives: it is on time again, once, recorded by the update's own
    // transaction (whatever the sweep's interval); the sweep then finds m2
    // waiting on d2 alone.
    let arrived = process(&ctx, &update("d1", "v2")).await.unwrap();
    assert_eq!(arrived.alerts.len(), 1, "{arrived:?}");
    assert_eq!(
        states(&db).await,
        ["d1 on_time", "d2 late", "m2 fail d1,d2"]
    );
    let recovered = sweep(&ctx, None).await.unwrap();
    assert_eq!(recovered.changed, 1, "{recovered:?}");
    assert_eq!(states(&db).await, ["d1 on_time", "d2 late", "m2 fail d2"]);
    let sent = alerts(&db).await;
    assert_eq!(types(&sent[3..]), ["dataset_on_time d1"]);
    assert_eq!(
        sent[3]["lateSince"], sent[0]["lateSince"],
        "the late period that ended"
    );
    assert_eq!(sweep(&ctx, None).await.unwrap().changed, 0);
    assert_eq!(alerts(&db).await.len(), 4);
}

#[tokio::test]
async fn sweeps_at_once_alert_each_transition_once() {
    let db = expecting_db("fresh_race").await;
    let ctx = db.ctx().with_alerts(true);
    let sweeps: Vec<FreshnessReport> = futures::future::join_all((0..4).map(|_| sweep(&ctx, None)))
        .await
        .into_iter()
        .map(|r| r.expect("a sweep"))
        .collect();
    let changed: usize = sweeps.iter().map(|r| r.changed).sum();
    assert_eq!(changed, 3, "{sweeps:?}");
    assert_eq!(
        types(&alerts(&db).await),
        [
            "dataset_late d1",
            "dataset_late d2",
            "metric_freshness_changed m2"
        ]
    );
}

#[tokio::test]
async fn without_an_alerts_topic_states_are_kept_and_nothing_is_queued() {
    let db = expecting_db("fresh_quiet").await;
    let r = sweep(&db.ctx(), None).await.unwrap();
    assert_eq!(r.changed, 3);
    assert!(r.outbox_ids.is_empty());
    assert_eq!(states(&db).await, ["d1 late", "d2 late", "m2 fail d1,d2"]);
    assert!(alerts(&db).await.is_empty());
    // Removing the expectations forgets the states.
    apply(&db, &base_catalog()).await;
    sweep(&db.ctx(), None).await.unwrap();
    assert!(states(&db).await.is_empty(), "{:?}", states(&db).await);
}

#[tokio::test]
async fn the_api_shows_and_filters_freshness_and_names_what_blocks_a_metric() {
    use orchestrator_tests::api::ApiServer;
    let db = expecting_db("fresh_api").await;
    sweep(&db.ctx(), None).await.unwrap();
    let api = ApiServer::for_db(&db, None).await;
    let get = |path: &'static str| {
        let (client, base) = (api.client.clone(), api.base.clone());
        async move {
            let r = client.get(format!("{base}{path}")).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, late) = get("/api/v1/datasets?freshness=late").await;
    assert_eq!(status, 200, "{late}");
    let ids: Vec<&str> = late["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d1", "d2"]);
    let d2 = &late["items"][1];
    assert_eq!(d2["expectation"], "every 1h, grace 30m");
    assert_eq!(d2["freshness"]["state"], "late");
    assert!(
        d2["freshness"]["overdueSeconds"].as_f64().unwrap() > 1700.0,
        "{d2}"
    );
    let (_, on_time) = get("/api/v1/datasets?freshness=on_time").await;
    assert!(on_time["items"].as_array().unwrap().is_empty(), "{on_time}");
    let (_, all) = get("/api/v1/datasets").await;
    assert!(
        all["items"][2].get("freshness").is_none_or(Value::is_null),
        "d3 has no expectation: {all}"
    );

    let (status, failing) = get("/api/v1/metrics?freshness=fail").await;
    assert_eq!(status, 200, "{failing}");
    let items = failing["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{failing}");
    assert_eq!(items[0]["code"], "m.pair");
    assert_eq!(items[0]["freshness"]["blocking"], json!(["d1", "d2"]));
    assert_eq!(items[0]["expectation"], "max age warn 1h, fail 2h");

    let (status, bad) = get("/api/v1/metrics?freshness=late").await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.to_string().contains("freshness"), "{bad}");
    assert!(
        bad.to_string().contains("pass, warn, fail, unknown"),
        "{bad}"
    );
}
