//! The operator HTTP API (`orchestrator serve`) on a real PostgreSQL: every
//! endpoint, filter, pagination edge, error and the token rules.

use orchestrator_core::app::lifecycle::handle;
use orchestrator_core::app::projection_update::process;
use orchestrator_core::domain::events::{Completion, CompletionStatus, LifecycleEvent};
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::fixtures::{db_with_catalog, status_of, update};
use orchestrator_tests::TestDb;
use serde_json::{json, Value};

const TOKEN: &str = "a-test-token-of-32-characters-xx";

async fn complete(db: &TestDb, run: &str, ok: bool) {
    let ev = LifecycleEvent::Completed(Completion {
        code_version: None,
        run_id: run.into(),
        status: if ok {
            CompletionStatus::Success
        } else {
            CompletionStatus::Failure
        },
        metric_code: None,
        version_ts: Some("2026-11-23".into()),
        output_manifest: Some("metrics/out/manifest.json".into()),
        row_count: Some(42),
        error: (!ok).then(|| "boom".to_string()),
    });
    let raw = json!({"type": "metric_run_completed", "runId": run, "n": uuid::Uuid::new_v4().to_string()});
    handle(&db.ctx(), &ev, &raw)
        .await
        .expect("completion applied");
}

/// The base catalog after `d1 v1`: m.single succeeded, m.pair pending on d2,
/// m.triple pending on d2 and d3, m.nodays stale (nothing received).
async fn seeded(label: &str) -> (TestDb, String) {
    let db = db_with_catalog(label).await;
    let s = process(&db.ctx(), &update("d1", "v1")).await.unwrap();
    let single = s.evaluated.queued_run_ids[0].to_string();
    complete(&db, &single, true).await;
    (db, single)
}

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap().to_string())
        .collect()
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, needle: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

#[tokio::test]
async fn metrics_list_their_status_why_they_wait_and_filter_and_page() {
    let (db, single) = seeded("api_metrics").await;
    let api = ApiServer::for_db(&db, None).await;
    let (st, all) = api.get("/api/v1/metrics").await;
    assert_eq!(st, 200, "{all}");
    assert_eq!(codes(&all), ["m.nodays", "m.pair", "m.single", "m.triple"]);
    let by: std::collections::HashMap<String, Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["code"].as_str().unwrap().to_string(), m.clone()))
        .collect();
    assert_eq!(by["m.single"]["status"], "ok");
    assert_eq!(by["m.single"]["lastRun"]["id"], single.as_str());
    assert_eq!(by["m.single"]["lastRun"]["status"], "succeeded");
    assert!(by["m.single"]["lastSuccessAt"].is_string());
    assert_eq!(by["m.single"]["pendingRun"], Value::Null);
    assert_eq!(by["m.pair"]["status"], "pending");
    assert_eq!(by["m.pair"]["pendingRun"]["waitingFor"], json!(["d2"]));
    assert_eq!(
        by["m.pair"]["pendingRun"]["summary"],
        "waiting for 1 of 2: d2"
    );
    assert_eq!(by["m.pair"]["requiredDatasets"], json!(["d1", "d2"]));
    assert_eq!(
        by["m.triple"]["pendingRun"]["waitingFor"],
        json!(["d2", "d3"])
    );
    assert_eq!(by["m.nodays"]["status"], "stale");
    assert_eq!(by["m.pair"]["requiredDays"], 7);
    assert_eq!(by["m.pair"]["maxAttempts"], 1);
    assert_eq!(by["m.pair"]["enabled"], true);
    assert_eq!(by["m.pair"]["expressionType"], "series_math");

    let (_, pending) = api.get("/api/v1/metrics?status=pending").await;
    assert_eq!(codes(&pending), ["m.pair", "m.triple"]);
    let (_, ok) = api.get("/api/v1/metrics?status=ok").await;
    assert_eq!(codes(&ok), ["m.single"]);
    let (_, d3) = api.get("/api/v1/metrics?dataset=d3").await;
    assert_eq!(codes(&d3), ["m.nodays", "m.triple"]);
    let (_, none) = api.get("/api/v1/metrics?status=failing").await;
    assert_eq!(codes(&none), Vec::<String>::new());

    // Pages of one, chained by cursor, give every metric once, in order; a
    // status decided after the read (not in SQL) pages the same way.
    let pages_of_one = |query: &'static str| {
        let api = &api;
        async move {
            let mut seen = Vec::new();
            let mut path = format!("/api/v1/metrics?{query}limit=1");
            loop {
                let (st, page) = api.get(&path).await;
                assert_eq!(st, 200, "{page}");
                assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
                seen.extend(codes(&page));
                match page["nextCursor"].as_str() {
                    Some(c) => path = format!("/api/v1/metrics?{query}limit=1&cursor={c}"),
                    None => return seen,
                }
            }
        }
    };
    assert_eq!(pages_of_one("").await, codes(&all));
    assert_eq!(pages_of_one("status=ok&").await, codes(&ok));
    let (_, last) = api.get("/api/v1/metrics?status=pending&limit=2").await;
    assert_eq!(
        last["nextCursor"],
        Value::Null,
        "an exactly full last page has no next cursor"
    );

    for (path, needle) in [
        ("/api/v1/metrics?status=late", "status=\"late\""),
        ("/api/v1/metrics?limit=0", "limit"),
        ("/api/v1/metrics?limit=501", "limit"),
        ("/api/v1/metrics?limit=abc", "limit"),
        ("/api/v1/metrics?colour=red", "unknown parameter \"colour\""),
        ("/api/v1/metrics?dataset=", "dataset must not be empty"),
    ] {
        let (st, body) = api.get(path).await;
        assert_error(st, &body, 400, "bad_request", needle);
    }
}

#[tokio::test]
async fn a_failed_last_run_makes_a_metric_failing_and_disabled_wins() {
    let (db, single) = seeded("api_failing").await;
    let s = process(&db.ctx(), &update("d1", "v2")).await.unwrap();
    let second = s
        .evaluated
        .queued_run_ids
        .iter()
        .find(|r| r.as_str() != single)
        .unwrap()
        .to_string();
    complete(&db, &second, false).await;
    let api = ApiServer::for_db(&db, None).await;
    let (_, failing) = api.get("/api/v1/metrics?status=failing").await;
    assert_eq!(codes(&failing), ["m.single"]);
    db.exec("UPDATE metrics SET enabled = false WHERE code = 'm.single'")
        .await;
    let (_, disabled) = api.get("/api/v1/metrics?status=disabled").await;
    assert_eq!(codes(&disabled), ["m.single"]);
    let (_, failing) = api.get("/api/v1/metrics?status=failing").await;
    assert_eq!(codes(&failing), Vec::<String>::new());
}

#[tokio::test]
async fn a_metric_page_has_its_definition_inputs_and_runs() {
    let (db, _) = seeded("api_metric").await;
    let api = ApiServer::for_db(&db, None).await;
    let (st, m) = api.get("/api/v1/metrics/m.pair").await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["code"], "m.pair");
    assert_eq!(m["status"], "pending");
    assert_eq!(m["expressionJson"]["op"], "ratio");
    assert_eq!(
        m["series"],
        json!([{"code": "S1", "datasets": ["d1"]}, {"code": "S3", "datasets": ["d2"]}])
    );
    let inputs = m["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0]["datasetId"], "d1");
    assert!(inputs[0]["updateId"].is_string() && inputs[0]["receivedAt"].is_string());
    assert_eq!(inputs[0]["fresh"], true);
    assert!(inputs[0]["ageSeconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(inputs[1]["datasetId"], "d2");
    assert_eq!(inputs[1]["updateId"], Value::Null);
    assert_eq!(inputs[1]["fresh"], false);
    let runs = m["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "pending_dependencies");
    assert_eq!(runs[0]["id"], m["pendingRun"]["id"]);
    let (st, body) = api.get("/api/v1/metrics/no.such.metric").await;
    assert_error(st, &body, 404, "not_found", "no.such.metric");
}

#[tokio::test]
async fn runs_filter_page_and_show_their_timeline_inputs_and_request() {
    let (db, single) = seeded("api_runs").await;
    let api = ApiServer::for_db(&db, None).await;
    let (st, all) = api.get("/api/v1/runs").await;
    assert_eq!(st, 200, "{all}");
    let ids: Vec<String> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().into())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");
    let (_, by_metric) = api.get("/api/v1/runs?metric=m.single").await;
    assert_eq!(by_metric["items"][0]["id"], single.as_str());
    assert_eq!(by_metric["items"].as_array().unwrap().len(), 1);
    let (_, pending) = api.get("/api/v1/runs?status=pending_dependencies").await;
    assert_eq!(pending["items"].as_array().unwrap().len(), 2);
    let (_, future) = api.get("/api/v1/runs?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future["items"], json!([]));
    let (_, past) = api.get("/api/v1/runs?since=2000-01-01T00:00:00Z").await;
    assert_eq!(past["items"].as_array().unwrap().len(), 3);
    let mut paged = Vec::new();
    let mut path = "/api/v1/runs?limit=2".to_string();
    loop {
        let (_, page) = api.get(&path).await;
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/runs?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(paged, ids);
    for (path, needle) in [
        ("/api/v1/runs?status=done", "status=\"done\""),
        ("/api/v1/runs?since=yesterday", "since=\"yesterday\""),
        ("/api/v1/runs?limit=600", "limit"),
    ] {
        let (st, body) = api.get(path).await;
        assert_error(st, &body, 400, "bad_request", needle);
    }

    let (st, run) = api.get(&format!("/api/v1/runs/{single}")).await;
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "succeeded");
    assert!(run["timeline"]["requested"].is_string());
    assert!(run["timeline"]["finished"].is_string());
    assert_eq!(run["result"]["rowCount"], 42);
    assert_eq!(run["result"]["outputManifest"], "metrics/out/manifest.json");
    assert_eq!(run["inputs"][0]["datasetId"], "d1");
    assert_eq!(run["inputs"][0]["manifestPath"], "d1/v1/manifest.json");
    assert_eq!(run["request"]["runId"], single.as_str());
    assert_eq!(run["request"]["type"], "metric_run_requested");
    assert_eq!(run["waitingFor"], json!([]));
    assert_eq!(run["retries"], json!([]));

    let pending_id = pending["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metricCode"] == "m.pair")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, p) = api.get(&format!("/api/v1/runs/{pending_id}")).await;
    assert_eq!(p["waitingFor"], json!(["d2"]));
    assert_eq!(p["request"], Value::Null);
    let (st, body) = api.get("/api/v1/runs/not-a-run").await;
    assert_error(st, &body, 404, "not_found", "not-a-run");
}

#[tokio::test]
async fn datasets_and_lineage() {
    let (db, _) = seeded("api_datasets").await;
    let api = ApiServer::for_db(&db, None).await;
    let (st, ds) = api.get("/api/v1/datasets").await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = ds["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d1", "d2", "d3"]);
    assert_eq!(ds["items"][0]["series"], json!(["S1", "S2"]));
    assert_eq!(ds["items"][0]["metricCount"], 3);
    assert!(ds["items"][0]["newestUpdateAt"].is_string());
    assert_eq!(ds["items"][1]["newestUpdateAt"], Value::Null);
    let (_, page1) = api.get("/api/v1/datasets?limit=2").await;
    assert_eq!(page1["nextCursor"], "d2");
    let (_, page2) = api.get("/api/v1/datasets?limit=2&cursor=d2").await;
    assert_eq!(page2["items"][0]["id"], "d3");
    assert_eq!(page2["nextCursor"], Value::Null);
    let (st, d1) = api.get("/api/v1/datasets/d1").await;
    assert_eq!(st, 200);
    assert_eq!(d1["metrics"], json!(["m.pair", "m.single", "m.triple"]));
    assert_eq!(
        d1["updates"][0]["versionManifestPath"],
        "d1/v1/manifest.json"
    );
    let (st, body) = api.get("/api/v1/datasets/nope").await;
    assert_error(st, &body, 404, "not_found", "nope");

    let (_, g) = api.get("/api/v1/lineage").await;
    assert_eq!(g["edges"].as_array().unwrap().len(), 8);
    assert_eq!(g["truncated"], false);
    let (_, around) = api.get("/api/v1/lineage?around=m.pair").await;
    assert_eq!(
        around["edges"],
        json!([{"from": "dataset:d1", "to": "metric:m.pair"}, {"from": "dataset:d2", "to": "metric:m.pair"}])
    );
    let kinds: Vec<&str> = around["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dataset", "dataset", "metric"]);
    let (_, around_d3) = api.get("/api/v1/lineage?around=d3").await;
    assert_eq!(around_d3["edges"].as_array().unwrap().len(), 2);
    let (st, body) = api.get("/api/v1/lineage?around=nothing").await;
    assert_error(st, &body, 404, "not_found", "nothing");
}

#[tokio::test]
async fn health_ready_openapi_and_unknown_routes() {
    let db = TestDb::new("api_health").await;
    let api = ApiServer::for_db(&db, None).await;
    let (st, h) = api.get("/health").await;
    assert_eq!(st, 200);
    assert_eq!(h["status"], "ok");
    assert!(chrono::DateTime::parse_from_rfc3339(h["timestamp"].as_str().unwrap()).is_ok());
    let (st, r) = api.get("/ready").await;
    assert_eq!((st, r["status"].as_str()), (200, Some("ready")));
    let (st, doc) = api.get("/api/v1/openapi.json").await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/metrics",
        "/api/v1/metrics/{code}",
        "/api/v1/metrics/{code}/trigger",
        "/api/v1/metrics/{code}/hold",
        "/api/v1/metrics/{code}/resume",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/runs/{id}/cancel",
        "/api/v1/datasets",
        "/api/v1/datasets/{id}",
        "/api/v1/lineage",
        "/api/v1/backfills",
        "/api/v1/backfills/{id}",
        "/api/v1/backfills/{id}/{action}",
        "/health",
        "/ready",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let (st, body) = api.get("/api/v2/nothing").await;
    assert_error(st, &body, 404, "not_found", "openapi.json");
    let (st, _) = api.get("/").await;
    assert_eq!(st, 200, "the console's page");
}

#[tokio::test]
async fn actions_are_off_without_a_token_and_need_the_right_one() {
    let (db, _) = seeded("api_actions").await;
    let off = ApiServer::for_db(&db, None).await;
    let pending = db
        .string("SELECT id FROM metric_runs WHERE metric_code = 'm.pair'")
        .await;
    for path in [
        format!("/api/v1/runs/{pending}/cancel"),
        "/api/v1/metrics/m.single/trigger".into(),
    ] {
        let (st, body) = off.post(&path, Some(TOKEN)).await;
        assert_error(st, &body, 403, "forbidden", "API_TOKEN");
    }
    let api = ApiServer::for_db(&db, Some(TOKEN)).await;
    let cancel = format!("/api/v1/runs/{pending}/cancel");
    let (st, body) = api.post(&cancel, None).await;
    assert_error(st, &body, 401, "unauthorized", "Authorization: Bearer");
    let (st, body) = api
        .post(&cancel, Some("wrong-token-wrong-token-wrong"))
        .await;
    assert_error(st, &body, 401, "unauthorized", "not the server's API_TOKEN");
    assert_eq!(
        status_of(&db, &pending).await,
        "pending_dependencies",
        "nothing changed yet"
    );
    let (st, body) = api.post(&cancel, Some(TOKEN)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["previousStatus"], "pending_dependencies");
    assert_eq!(status_of(&db, &pending).await, "canceled");
    let (st, body) = api.post(&cancel, Some(TOKEN)).await;
    assert_error(st, &body, 409, "conflict", "canceled");
    let (st, body) = api.post("/api/v1/runs/nope/cancel", Some(TOKEN)).await;
    assert_error(st, &body, 404, "not_found", "nope");

    let (st, t) = api
        .post("/api/v1/metrics/m.single/trigger", Some(TOKEN))
        .await;
    assert_eq!(st, 200, "{t}");
    assert_eq!(t["status"], "queued");
    let run = t["runId"].as_str().unwrap();
    assert_eq!(status_of(&db, run).await, "queued");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM outbox WHERE run_id = '{run}'"
        ))
        .await,
        1
    );
    let (st, body) = api
        .post("/api/v1/metrics/m.pair/trigger", Some(TOKEN))
        .await;
    assert_error(st, &body, 409, "conflict", "d2");
    let (st, body) = api.post("/api/v1/metrics/nope/trigger", Some(TOKEN)).await;
    assert_error(st, &body, 404, "not_found", "nope");
    let no_bucket = ApiServer::start(orchestrator_core::api::ApiState {
        pool: db.pool.clone(),
        ctx: None,
        token: Some(orchestrator_core::api::auth::Token::new(TOKEN)),
        auth: Default::default(),
        metrics: None,
        actors: Default::default(),
    })
    .await;
    let (st, body) = no_bucket
        .post("/api/v1/metrics/m.single/trigger", Some(TOKEN))
        .await;
    assert_error(st, &body, 503, "unavailable", "OUTPUT_BUCKET");
}

#[tokio::test]
async fn a_status_filter_pages_correctly_across_several_batches_of_500() {
    // 1,200 metrics, every third disabled: the other 800 are stale (nothing
    // received), spread over three batches of the server's filtering loop.
    let db = TestDb::new("api_status_batches").await;
    let mut doc = orchestrator_tests::synth::catalog(orchestrator_tests::synth::Shape {
        datasets: 10,
        series_per_dataset: 3,
        metrics: 1_200,
        seed: 5,
    });
    for (i, m) in doc["metrics"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .enumerate()
    {
        m["enabled"] = json!(i % 3 != 0);
    }
    orchestrator_tests::fixtures::apply(&db, &doc).await;
    let want = db
        .strings("SELECT code FROM metrics WHERE enabled ORDER BY code")
        .await;
    assert_eq!(want.len(), 800);
    let api = ApiServer::for_db(&db, None).await;
    let mut seen = Vec::new();
    let mut path = "/api/v1/metrics?status=stale&limit=300".to_string();
    let mut pages = 0;
    loop {
        let (st, page) = api.get(&path).await;
        assert_eq!(st, 200, "{page}");
        assert!(page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "stale"));
        seen.extend(codes(&page));
        pages += 1;
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/metrics?status=stale&limit=300&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3, "300 + 300 + 200");
    assert_eq!(seen, want, "every stale metric once, in code order");
}
