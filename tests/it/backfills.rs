//! Backfills through the use cases on a real database (docs/semantics.md,
//! "Backfills"): the plan over a synthetic update log (inputs pinned, the
//! live freshness rule as of each point, statuses), the dry run, the
//! idempotency key, the worker's tick (order, max in flight, each point
//! once, dependency order, failure, pause, cancel) and `on_change`.

use chrono::{DateTime, Duration, Utc};
use orchestrator_core::app::backfill::{self, BackfillError, Create, Created};
use orchestrator_core::app::backfill_run::advance;
use orchestrator_core::app::definition_changes::drain;
use orchestrator_core::app::lifecycle::handle;
use orchestrator_core::domain::backfill::{self as rules, Asked, Control, Status};
use orchestrator_core::domain::ids::BackfillId;
use orchestrator_tests::fixtures::{apply, base_catalog, completed_event, request_of, status_of};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

/// Logs an update of `dataset` made `ago` before now, as the fleet does.
async fn logged(db: &TestDb, dataset: &str, ago: Duration) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let at = Utc::now() - ago;
    db.client()
        .await
        .execute(
            "INSERT INTO dataset_updates (id, dataset_id, version_manifest_path, projections_path, bucket, event_key, created_at)
             VALUES ($1, $2, $3, $4, 'b', $1, $5)",
            &[&id, &dataset, &format!("{dataset}/{id}/manifest.json"), &format!("{dataset}/{id}/p/"), &at],
        )
        .await
        .unwrap();
    id
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

async fn create(db: &TestDb, asked: Asked<'_>, dry_run: bool) -> Result<Created, BackfillError> {
    let request = rules::request(&asked, Utc::now()).unwrap();
    backfill::create(
        &db.pool,
        &Create {
            request,
            key: None,
            by: Some("ana"),
            reason: None,
            dry_run,
        },
    )
    .await
}

fn asked<'a>(metric: &'a str, from: &'a str, points: &'a str) -> Asked<'a> {
    Asked {
        metrics: vec![metric],
        from,
        to: "now",
        points: Some(points),
        ..Default::default()
    }
}

async fn complete(db: &TestDb, run: &str, ok: bool) {
    let raw = json!({"type": "metric_run_completed", "runId": run, "n": uuid::Uuid::new_v4().to_string()});
    handle(&db.ctx(), &completed_event(run, ok, None), &raw)
        .await
        .unwrap();
}

/// A backfill alert's body, by type.
async fn alert_body(db: &TestDb, alert_type: &str) -> Value {
    let payload: String = db
        .client()
        .await
        .query_one(
            "SELECT payload FROM outbox_messages WHERE alert_type = $1",
            &[&alert_type],
        )
        .await
        .unwrap()
        .get(0);
    serde_json::from_str(&payload).unwrap()
}

/// (metric code, as_of, status, run id) of a backfill's runs' points, in
/// the order they were requested.
async fn requested(db: &TestDb, id: &BackfillId) -> Vec<(String, DateTime<Utc>, String, String)> {
    db.client()
        .await
        .query(
            "SELECT metric_code, as_of, status, id FROM metric_runs WHERE backfill_id = $1
              ORDER BY created_at, as_of, metric_code",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

async fn status(db: &TestDb, id: &BackfillId) -> String {
    db.client()
        .await
        .query_one("SELECT status FROM backfills WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

/// d1 updated 10, 8 and 6 days ago; d2 9 and 5 days ago. m.pair needs both.
async fn history(db: &TestDb) -> Vec<String> {
    let mut ids = Vec::new();
    for (d, ago) in [("d1", 10), ("d2", 9), ("d1", 8), ("d1", 6), ("d2", 5)] {
        ids.push(logged(db, d, days(ago)).await);
    }
    ids
}

#[tokio::test]
async fn a_plan_pins_each_points_inputs_from_the_log_and_a_dry_run_writes_nothing() {
    let db = TestDb::new("bf_plan").await;
    apply(&db, &base_catalog()).await;
    let u = history(&db).await;
    let plan = create(&db, asked("m.pair", "11d", "updates"), true)
        .await
        .unwrap();
    assert_eq!(plan.id, None);
    let found: Vec<&str> = plan.plan.points.iter().map(|p| p.found).collect();
    // 10 days ago d2 had no update yet: m.pair could not run then.
    assert_eq!(
        found,
        ["unready", "missing", "missing", "missing", "missing"]
    );
    assert_eq!(
        plan.plan.points[0].why.as_deref(),
        Some("no update yet of d2")
    );
    let inputs: Vec<Vec<String>> = plan.plan.points.iter().map(|p| p.inputs.clone()).collect();
    assert_eq!(
        inputs[1..],
        [
            vec![u[0].clone(), u[1].clone()],
            vec![u[2].clone(), u[1].clone()],
            vec![u[3].clone(), u[1].clone()],
            vec![u[3].clone(), u[4].clone()],
        ]
    );
    assert_eq!(plan.plan.selected, 4);
    assert_eq!(db.count("SELECT count(*) FROM backfills").await, 0);
    assert_eq!(db.count("SELECT count(*) FROM backfill_points").await, 0);

    // Freshness as the live rule judged it then: with required_days 2, the
    // point 6 days ago had d2's update of 9 days ago, too old then.
    let mut c = base_catalog();
    c["metrics"][1]["required_days"] = json!(2);
    apply(&db, &c).await;
    let strict = create(&db, asked("m.pair", "11d", "updates"), true)
        .await
        .unwrap();
    let found: Vec<&str> = strict.plan.points.iter().map(|p| p.found).collect();
    assert_eq!(
        found,
        ["unready", "missing", "missing", "unready", "missing"]
    );
    assert!(strict.plan.points[3]
        .why
        .as_deref()
        .unwrap()
        .contains("too old (required_days 2) of d2"));

    // The same request twice is one backfill.
    let a = create(&db, asked("m.pair", "11d", "updates"), false)
        .await
        .unwrap();
    let b = create(&db, asked("m.pair", "11d", "updates"), false)
        .await
        .unwrap();
    assert_eq!(a.id, b.id);
    assert!(!a.existing && b.existing);
    assert_eq!(db.count("SELECT count(*) FROM backfills").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM backfill_points WHERE status = 'waiting'")
            .await,
        3
    );
    let unknown = create(&db, asked("m.nope", "11d", "updates"), false).await;
    assert!(
        matches!(&unknown, Err(BackfillError::UnknownMetrics(c)) if c == &["m.nope"]),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn points_are_requested_in_order_within_max_in_flight_each_once_with_their_inputs() {
    let db = TestDb::new("bf_order").await;
    apply(&db, &base_catalog()).await;
    let u = history(&db).await;
    let ctx = db.ctx().with_alerts(true);
    let made = create(
        &db,
        Asked {
            max_in_flight: Some(2),
            ..asked("m.pair", "11d", "updates")
        },
        false,
    )
    .await
    .unwrap();
    let id = made.id.unwrap();
    let first = advance(&ctx, 16).await.unwrap();
    assert_eq!(first.requested.len(), 2);
    // Two workers' ticks at once request nothing more.
    let (a, b) = tokio::join!(advance(&ctx, 16), advance(&ctx, 16));
    assert_eq!(a.unwrap().requested.len() + b.unwrap().requested.len(), 0);
    let runs = requested(&db, &id).await;
    let r0 = request_of(&db, &runs[0].3).await;
    assert_eq!(r0["backfillId"], id.as_str());
    assert_eq!(
        r0["asOf"].as_str().unwrap(),
        made.plan.points[1]
            .as_of
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    // The inputs of that moment: d1's update of 10 days ago, d2's of 9.
    let manifest = |d: &str| {
        r0["catalog"]["datasets"][d]["manifestPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(manifest("d1").contains(&u[0]), "{r0}");
    assert!(manifest("d2").contains(&u[1]), "{r0}");
    // Each completion frees a slot; the next point in time goes.
    for _ in 0..10 {
        let open: Vec<_> = requested(&db, &id)
            .await
            .into_iter()
            .filter(|r| r.2 == "queued")
            .collect();
        assert!(open.len() <= 2, "{open:?}");
        if let Some(r) = open.first() {
            complete(&db, &r.3, true).await;
        }
        advance(&ctx, 16).await.unwrap();
    }
    let runs = requested(&db, &id).await;
    let moments: Vec<DateTime<Utc>> = runs.iter().map(|r| r.1).collect();
    let planned: Vec<DateTime<Utc>> = made.plan.points[1..].iter().map(|p| p.as_of).collect();
    assert_eq!(moments, planned, "in time order, each once");
    assert_eq!(status(&db, &id).await, "completed");
    let shown = backfill::show(&db.pool, &id).await.unwrap();
    assert_eq!(
        (shown.progress.counts.done, shown.progress.counts.left),
        (5, 0)
    );
    assert_eq!(shown.progress.percent, 100.0);
    let alert = alert_body(&db, "backfill_completed").await;
    assert_eq!(alert["backfillId"], id.as_str());
    assert_eq!(alert["points"]["done"], 5);
    // The live output is not a backfill's: the newest live run is none.
    assert_eq!(
        db.count("SELECT count(*) FROM metric_runs WHERE backfill_id IS NULL")
            .await,
        0
    );
}

/// m.down reads m.single's output (series "m.single" of dataset d9).
fn with_downstream(max_attempts: i64) -> Value {
    let mut c = base_catalog();
    c["datasets"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "d9", "name": "Outputs", "series": ["m.single"]}));
    c["series"]
        .as_array_mut()
        .unwrap()
        .push(json!({"code": "m.single"}));
    c["metrics"][0]["max_attempts"] = json!(max_attempts);
    c["metrics"].as_array_mut().unwrap().push(json!({
        "id": "m9", "code": "m.down", "expression_type": "series_math", "max_attempts": 1,
        "expression_json": {"op": "ratio", "left": {"seriesCode": "m.single"}, "right": {"seriesCode": "S1"}}
    }));
    c
}

#[tokio::test]
async fn a_downstream_point_waits_for_its_upstream_points_and_fails_with_them() {
    let db = TestDb::new("bf_down").await;
    apply(&db, &with_downstream(1)).await;
    for ago in [10, 9, 8] {
        logged(&db, "d1", days(ago)).await;
        logged(&db, "d9", days(ago)).await;
    }
    let ctx = db.ctx().with_alerts(true);
    // A live update now: m.down's live run waits for a fresh d9.
    orchestrator_core::app::projection_update::process(
        &ctx,
        &orchestrator_tests::fixtures::update("d1", "live"),
    )
    .await
    .unwrap();
    let pending = db
        .client()
        .await
        .query_one(
            "SELECT id, updated_at FROM metric_runs WHERE metric_code = 'm.down' AND status = 'pending_dependencies'",
            &[],
        )
        .await
        .unwrap();
    let (pending_id, pending_at): (String, DateTime<Utc>) = (pending.get(0), pending.get(1));
    // Four midnights, all within required_days of the updates.
    let (from, to) = (
        (Utc::now() - days(7)).to_rfc3339(),
        (Utc::now() - days(3)).to_rfc3339(),
    );
    let made = create(
        &db,
        Asked {
            downstream: true,
            max_in_flight: Some(10),
            to: &to,
            ..asked("m.single", &from, "daily")
        },
        false,
    )
    .await
    .unwrap();
    assert_eq!(made.plan.metrics, ["m.down", "m.single"]);
    assert_eq!(made.plan.selected, 8, "{:?}", made.plan.points);
    let id = made.id.unwrap();
    advance(&ctx, 16).await.unwrap();
    let runs = requested(&db, &id).await;
    // Every m.single point goes; m.down's first waits for m.single's first.
    assert!(runs.iter().all(|r| r.0 == "m.single"), "{runs:?}");
    assert_eq!(runs.len(), 4);
    complete(&db, &runs[0].3, true).await;
    advance(&ctx, 16).await.unwrap();
    let down: Vec<_> = requested(&db, &id)
        .await
        .into_iter()
        .filter(|r| r.0 == "m.down")
        .collect();
    assert_eq!(down.len(), 1, "{down:?}");
    assert_eq!(down[0].1, runs[0].1);
    // m.single's second point fails its only attempt: m.down's later points
    // cannot be computed.
    complete(&db, &runs[1].3, false).await;
    advance(&ctx, 16).await.unwrap();
    let failed = db
        .count(&format!(
            "SELECT count(*) FROM backfill_points WHERE backfill_id = '{id}' AND status = 'failed'"
        ))
        .await;
    assert_eq!(
        failed,
        1 + 3,
        "m.single's point and m.down's three after it"
    );
    for r in &runs[2..] {
        complete(&db, &r.3, true).await;
    }
    complete(&db, &down[0].3, true).await;
    advance(&ctx, 16).await.unwrap();
    advance(&ctx, 16).await.unwrap();
    assert_eq!(status(&db, &id).await, "failed");
    let alerts: Vec<String> = db
        .client()
        .await
        .query(
            "SELECT alert_type FROM outbox_messages WHERE alert_type LIKE 'backfill%' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        alerts,
        ["backfill_failed"],
        "one alert, at the first failure"
    );
    // The live pending run was never touched.
    let after = db
        .client()
        .await
        .query_one(
            "SELECT status, updated_at FROM metric_runs WHERE id = $1",
            &[&pending_id],
        )
        .await
        .unwrap();
    assert_eq!(
        (after.get::<_, &str>(0), after.get::<_, DateTime<Utc>>(1)),
        ("pending_dependencies", pending_at)
    );
}

#[tokio::test]
async fn pause_holds_new_requests_a_disabled_metric_waits_and_cancel_stops_the_rest() {
    let db = TestDb::new("bf_ctl").await;
    apply(&db, &base_catalog()).await;
    history(&db).await;
    let ctx = db.ctx();
    let made = create(
        &db,
        Asked {
            max_in_flight: Some(1),
            ..asked("m.pair", "11d", "updates")
        },
        false,
    )
    .await
    .unwrap();
    let id = made.id.unwrap();
    let paused = backfill::control(&db.pool, &id, Control::Pause)
        .await
        .unwrap();
    assert_eq!(paused, Status::Paused);
    assert!(advance(&ctx, 16).await.unwrap().requested.is_empty());
    let again = backfill::control(&db.pool, &id, Control::Pause).await;
    assert!(
        matches!(&again, Err(BackfillError::Invalid(m)) if m == "cannot pause a backfill that is paused"),
        "{again:?}"
    );
    backfill::control(&db.pool, &id, Control::Resume)
        .await
        .unwrap();
    // A metric disabled meanwhile: its points wait until it is enabled.
    let mut off = base_catalog();
    off["metrics"][1]["enabled"] = json!(false);
    apply(&db, &off).await;
    assert!(advance(&ctx, 16).await.unwrap().requested.is_empty());
    apply(&db, &base_catalog()).await;
    assert_eq!(advance(&ctx, 16).await.unwrap().requested.len(), 1);
    backfill::control(&db.pool, &id, Control::Cancel)
        .await
        .unwrap();
    let runs = requested(&db, &id).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(status_of(&db, &runs[0].3).await, "canceled");
    assert!(advance(&ctx, 16).await.unwrap().requested.is_empty());
    assert_eq!(status(&db, &id).await, "canceled");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM backfill_points WHERE backfill_id = '{id}' AND status = 'canceled'"
        ))
        .await,
        4
    );
    let unknown = backfill::control(&db.pool, &BackfillId::new("bf-x"), Control::Cancel).await;
    assert!(matches!(unknown, Err(BackfillError::Unknown(_))));
}

#[tokio::test]
async fn a_definition_change_with_on_change_backfill_makes_one_backfill_named_in_its_alert() {
    let db = TestDb::new("bf_onchange").await;
    let mut c = base_catalog();
    c["metrics"][0]["on_change"] = json!({"backfill": {"since": "30d"}});
    apply(&db, &c).await;
    let ctx = db.ctx().with_alerts(true);
    orchestrator_core::app::projection_update::process(
        &ctx,
        &orchestrator_tests::fixtures::update("d1", "v1"),
    )
    .await
    .unwrap();
    let live = orchestrator_tests::fixtures::runs_of(&db, "m.single").await;
    complete(&db, &live[0].0, true).await;
    c["metrics"][0]["expression_json"]["op"] = json!("avg");
    let report = orchestrator_core::app::catalog_apply::apply(&db.pool, &c)
        .await
        .unwrap();
    assert!(
        report.definitions[0]
            .to_string()
            .ends_with("on_change: backfill since 30days"),
        "{}",
        report.definitions[0]
    );
    drain(&ctx, 100).await.unwrap();
    drain(&ctx, 100).await.unwrap();
    let rows = db
        .client()
        .await
        .query("SELECT id, reprocess, points, reason FROM backfills", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let id: String = rows[0].get(0);
    assert_eq!(
        (rows[0].get::<_, &str>(1), rows[0].get::<_, &str>(2)),
        ("stale", "runs")
    );
    assert_eq!(
        rows[0].get::<_, &str>(3),
        "definition of m.single changed to v2"
    );
    let alert = alert_body(&db, "metric_definition_changed").await;
    assert_eq!(alert["backfillId"], id.as_str());
    assert!(
        alert["outcome"]
            .as_str()
            .unwrap()
            .contains("1 of 1 point(s) to recompute"),
        "{alert}"
    );
    // The live run stood for the one point, computed with v1: stale.
    advance(&ctx, 16).await.unwrap();
    let runs = requested(&db, &BackfillId::new(id)).await;
    assert_eq!(runs.len(), 1);
    let req = request_of(&db, &runs[0].3).await;
    assert_eq!(req["definitionVersion"], 2);
}

#[tokio::test]
async fn the_api_creates_plans_lists_shows_and_steers_backfills_behind_the_token() {
    use orchestrator_tests::api::ApiServer;
    let db = TestDb::new("bf_api").await;
    apply(&db, &base_catalog()).await;
    history(&db).await;
    let api = ApiServer::for_db(&db, Some("t0k")).await;
    let body = json!({"metrics": ["m.pair"], "from": "11d", "points": "updates", "maxInFlight": 2});
    let (st, _) = api.post_json("/api/v1/backfills", None, &body).await;
    assert_eq!(st, 401);
    let mut dry = body.clone();
    dry["dryRun"] = json!(true);
    let (st, plan) = api.post_json("/api/v1/backfills", Some("t0k"), &dry).await;
    assert_eq!(st, 200, "{plan}");
    assert_eq!(
        (plan["id"].is_null(), plan["total"].as_u64()),
        (true, Some(5))
    );
    assert_eq!(plan["found"], json!({"missing": 4, "unready": 1}));
    assert_eq!(db.count("SELECT count(*) FROM backfills").await, 0);
    let (st, made) = api.post_json("/api/v1/backfills", Some("t0k"), &body).await;
    assert_eq!(
        (st, made["existing"].as_bool()),
        (200, Some(false)),
        "{made}"
    );
    let id = made["id"].as_str().unwrap().to_string();
    let (_, again) = api.post_json("/api/v1/backfills", Some("t0k"), &body).await;
    assert_eq!(
        (again["id"].as_str(), again["existing"].as_bool()),
        (Some(id.as_str()), Some(true))
    );
    let mut typo = body.clone();
    typo["maxInFlite"] = json!(3);
    let (st, e) = api.post_json("/api/v1/backfills", Some("t0k"), &typo).await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `maxInFlite`"),
        "{e}"
    );
    let (st, e) = api
        .post_json(
            "/api/v1/backfills",
            Some("t0k"),
            &json!({"metrics": ["m.pair"], "from": "soon"}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("from: \"soon\" is not a moment"),
        "{e}"
    );

    let (st, list) = api.get("/api/v1/backfills").await;
    assert_eq!(st, 200);
    assert_eq!(list["items"][0]["id"], id.as_str());
    assert_eq!(list["items"][0]["progress"]["left"], 4);
    let (st, one) = api
        .get(&format!("/api/v1/backfills/{id}?limit=2&offset=1"))
        .await;
    assert_eq!(st, 200, "{one}");
    assert_eq!(one["pointsPage"].as_array().unwrap().len(), 2);
    assert_eq!(one["pointsPage"][0]["status"], "waiting");
    assert_eq!(one["createdBy"], "token api-token");
    let (st, _) = api.get("/api/v1/backfills/bf-none").await;
    assert_eq!(st, 404);

    let (st, p) = api
        .post(&format!("/api/v1/backfills/{id}/pause"), Some("t0k"))
        .await;
    assert_eq!((st, p["status"].as_str()), (200, Some("paused")));
    let (st, _) = api
        .post(&format!("/api/v1/backfills/{id}/pause"), Some("t0k"))
        .await;
    assert_eq!(st, 409);
    let (st, _) = api
        .post(&format!("/api/v1/backfills/{id}/explode"), Some("t0k"))
        .await;
    assert_eq!(st, 404);
    let (st, c) = api
        .post(&format!("/api/v1/backfills/{id}/cancel"), Some("t0k"))
        .await;
    assert_eq!((st, c["status"].as_str()), (200, Some("canceled")));
}
