//! The operator API as it is exposed: the token's rules (`API_AUTH`), load
//! shedding and the request timeout, security headers, and store errors
//! classified by cause.

use std::time::Duration;

use orchestrator_core::api::auth::{AuthScope, Token};
use orchestrator_core::api::layers::ApiLimits;
use orchestrator_core::api::ApiState;
use orchestrator_core::store::metric_views;
use orchestrator_tests::api::ApiServer;
use orchestrator_tests::fixtures::db_with_catalog;
use orchestrator_tests::TestDb;
use serde_json::Value;

const TOKEN: &str = "a-test-token-of-32-characters-xx";
const CANCEL: &str = "/api/v1/runs/r-1/cancel";

fn state(db: &TestDb, pool: orchestrator_core::store::Pool, auth: AuthScope) -> ApiState {
    ApiState {
        pool,
        ctx: Some(db.ctx()),
        token: Some(Token::new(TOKEN)),
        auth,
        metrics: None,
        actors: Default::default(),
    }
}

/// A request with an optional `Authorization` header.
async fn call(
    api: &ApiServer,
    method: reqwest::Method,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut req = api.client.request(method, format!("{}{path}", api.base));
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

/// Status, `WWW-Authenticate` and JSON body of a GET with `authorization`.
async fn get(
    api: &ApiServer,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let r = call(api, reqwest::Method::GET, path, authorization).await;
    let status = r.status().as_u16();
    let www = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, www, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn with_api_auth_all_reads_need_the_token_and_health_does_not() {
    let db = db_with_catalog("api_auth_all").await;
    let api = ApiServer::start(state(&db, db.pool.clone(), AuthScope::All)).await;
    let same_length = "Bearer b-test-token-of-32-characters-xx";
    let prefix = "Bearer a-test-token-of-32";
    for auth in [
        None,
        Some(same_length),
        Some(prefix),
        Some("Bearer "),
        Some("Basic x"),
    ] {
        let (st, www, body) = get(&api, "/api/v1/metrics", auth).await;
        assert_eq!(st, 401, "{auth:?}: {body}");
        assert_eq!(
            www.as_deref(),
            Some("Bearer realm=\"orchestrator\""),
            "{auth:?}"
        );
        assert_eq!(body["error"]["code"], "unauthorized", "{auth:?}");
    }
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let (st, _, body) = get(&api, "/api/v1/metrics", Some(&format!("{scheme} {TOKEN}"))).await;
        assert_eq!(st, 200, "{scheme}: {body}");
    }
    // The process's health, the console's files and Prometheus stay open:
    // they carry no run request or catalog.
    for path in ["/health", "/ready", "/", "/console/app.js"] {
        let r = call(&api, reqwest::Method::GET, path, None).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
}

#[tokio::test]
async fn with_api_auth_actions_reads_are_open_and_actions_refuse_near_misses() {
    let db = db_with_catalog("api_auth_actions").await;
    let api = ApiServer::start(state(&db, db.pool.clone(), AuthScope::Actions)).await;
    let (st, _, _) = get(&api, "/api/v1/metrics", None).await;
    assert_eq!(st, 200);
    for auth in [
        "Bearer b-test-token-of-32-characters-xx",
        "Bearer a-test-token-of-32",
        "Bearer ",
        "Token a-test-token-of-32-characters-xx",
    ] {
        let r = call(&api, reqwest::Method::POST, CANCEL, Some(auth)).await;
        assert_eq!(r.status().as_u16(), 401, "{auth}");
        assert!(r.headers().contains_key("www-authenticate"), "{auth}");
    }
    let r = call(
        &api,
        reqwest::Method::POST,
        CANCEL,
        Some(&format!("bearer {TOKEN}")),
    )
    .await;
    assert_eq!(
        r.status().as_u16(),
        404,
        "the right token in lower case reaches the handler"
    );
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_are_shed_and_a_slow_one_times_out() {
    let db = db_with_catalog("api_shed").await;
    // One connection, held by the test: the first request waits for it.
    let pool = orchestrator_core::store::pool::build_pool(&db.url, 1).unwrap();
    let held = pool.get().await.unwrap();
    let limits = ApiLimits {
        max_in_flight: 1,
        request_timeout: Duration::from_secs(5),
        ..ApiLimits::default()
    };
    let api = ApiServer::start_with(state(&db, pool.clone(), AuthScope::Actions), limits).await;
    let url = format!("{}/api/v1/metrics", api.base);
    let first = tokio::spawn({
        let (client, url) = (api.client.clone(), url.clone());
        async move { client.get(url).send().await.unwrap() }
    });
    orchestrator_tests::eventually(
        Duration::from_secs(10),
        "the first request to wait for the held connection",
        || async { (pool.status().waiting >= 1).then_some(()) },
    )
    .await;
    let shed = api.client.get(&url).send().await.unwrap();
    assert_eq!(shed.status().as_u16(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many requests in flight"),
        "{body}"
    );
    // Health is outside the bound: a saturated API still says it is up.
    let (st, _, _) = get(&api, "/health", None).await;
    assert_eq!(st, 200);
    // The first request outlives the timeout: a 503 in the error shape.
    let timed_out = first.await.unwrap();
    assert_eq!(timed_out.status().as_u16(), 503);
    assert_eq!(timed_out.headers()["retry-after"], "1");
    let body: Value = timed_out.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("took longer"),
        "{body}"
    );
    drop(held);
    let (st, _, body) = get(&api, "/api/v1/metrics", None).await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let db = db_with_catalog("api_headers").await;
    let api = ApiServer::for_db(&db, None).await;
    for path in [
        "/",
        "/console/app.js",
        "/api/v1/metrics",
        "/api/v1/nope",
        "/health",
    ] {
        let r = call(&api, reqwest::Method::GET, path, None).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn text_the_database_refuses_is_a_data_error_not_an_outage() {
    let db = TestDb::new("api_store_class").await;
    let e = metric_views::by_code(&db.pool, "a\0b").await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(!e.is_unavailable(), "{e}");
}
