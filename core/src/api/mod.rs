//! `orchestrator serve`: the operator HTTP API (read endpoints, four actions
//! behind a token, the OpenAPI document) and the web console, on one
//! address. Everything is read from PostgreSQL through `store`; the console
//! (`console/`, built into the binary) calls the same API. Requests pass
//! the layers of [`layers`] (security headers, timeout, body limit, load
//! shedding, the error shape) and, where [`auth`] says so, the token check.

mod actions;
pub mod actor;
pub mod auth;
mod backfills;
mod console;
mod datasets;
pub(crate) mod dto;
mod error;
mod extract;
pub mod layers;
mod metric_routes;
mod params;
mod runs;

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use crate::app::Context;
use crate::config::Env;
use crate::store::Pool;

#[derive(Clone)]
pub struct ApiState {
    pub pool: Pool,
    /// What `trigger` needs to write a run request; `None` without `OUTPUT_BUCKET`.
    pub ctx: Option<Context>,
    /// `API_TOKEN`; `None` turns the actions off.
    pub token: Option<auth::Token>,
    /// `API_AUTH`: whether reads need the token too.
    pub auth: auth::AuthScope,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Who takes an action (`API_TOKEN_NAME`, `API_OIDC_SIGNER_ARN`).
    pub actors: actor::Actors,
}

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = dto::Health, description = "the process is up (the reference service's shape)")))]
async fn health() -> Json<dto::Health> {
    Json(dto::Health {
        status: "ok".into(),
        timestamp: chrono::Utc::now(),
    })
}

#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, body = dto::Health), (status = 503, body = dto::ErrorBody)))]
async fn ready(State(s): State<ApiState>) -> Result<Json<dto::Health>, error::ApiError> {
    match crate::ops::database(&s.pool).await {
        Ok(()) => Ok(Json(dto::Health {
            status: "ready".into(),
            timestamp: chrono::Utc::now(),
        })),
        result @ Err(_) => {
            crate::ops::readiness_word("database", &result);
            Err(error::ApiError::unavailable(
                "the database does not answer; the server's log says why".to_string(),
            ))
        }
    }
}

async fn prometheus(State(s): State<ApiState>) -> (StatusCode, String) {
    crate::ops::render_metrics(s.metrics.as_ref())
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Metric orchestrator operator API", version = "1",
         description = "What is pending and why, lineage, run history, backfills, and actions behind a token (cancel, trigger, hold, resume, backfills)."),
    paths(metric_routes::list, metric_routes::get, runs::list, runs::get, datasets::list, datasets::get,
          datasets::lineage, actions::cancel, actions::trigger, actions::hold, actions::resume,
          backfills::list, backfills::get, backfills::create, backfills::control,
          health, ready),
    modifiers(&BearerScheme)
)]
pub struct ApiDoc;

async fn openapi() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

async fn no_route() -> error::ApiError {
    error::ApiError::not_found("no such endpoint; see /api/v1/openapi.json")
}

/// Every route: health and Prometheus open; the API's reads open or behind
/// the token (`API_AUTH`); the actions always behind it; all of the API
/// under the in-flight bound; everything under [`layers::outer`].
pub fn router(state: ApiState, limits: &layers::ApiLimits) -> Router {
    let mut reads = Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/metrics", get(metric_routes::list))
        .route("/api/v1/metrics/{code}", get(metric_routes::get))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{id}", get(runs::get))
        .route("/api/v1/datasets", get(datasets::list))
        .route("/api/v1/datasets/{id}", get(datasets::get))
        .route("/api/v1/lineage", get(datasets::lineage))
        .route("/api/v1/backfills", get(backfills::list))
        .route("/api/v1/backfills/{id}", get(backfills::get));
    if state.auth == auth::AuthScope::All {
        reads = reads.route_layer(auth::require(state.token.clone()));
    }
    let actions = Router::new()
        .route("/api/v1/metrics/{code}/trigger", post(actions::trigger))
        .route("/api/v1/metrics/{code}/hold", post(actions::hold))
        .route("/api/v1/metrics/{code}/resume", post(actions::resume))
        .route("/api/v1/runs/{id}/cancel", post(actions::cancel))
        .route("/api/v1/backfills", post(backfills::create))
        .route("/api/v1/backfills/{id}/{action}", post(backfills::control))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            actor::identify,
        ))
        .route_layer(auth::require(state.token.clone()));
    let api = layers::shed_load(reads.merge(actions), limits.max_in_flight);
    let routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus))
        .merge(api)
        .merge(console::routes())
        .fallback(no_route)
        .with_state(state);
    layers::outer(routes, limits).layer(axum::middleware::from_fn(record))
}

/// The `method` label: the methods HTTP defines, and `other` for any made-up
/// one, so that a client cannot grow `/metrics` without bound.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

#[cfg(test)]
mod method_tests {
    use super::method_label;
    use axum::http::Method;

    #[test]
    fn made_up_methods_share_one_label() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET", "GET"),
            (b"POST", "POST"),
            (b"PATCH", "PATCH"),
            (b"FOO", "other"),
            (b"get", "other"),
            (b"X-RANDOM-1234", "other"),
        ];
        for (raw, wanted) in cases {
            let m = Method::from_bytes(raw).unwrap();
            assert_eq!(
                method_label(&m),
                *wanted,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}

/// Counts and times every request, labelled by its route pattern (not the
/// raw path: ids would make unbounded label sets).
async fn record(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    ::metrics::counter!(crate::ground::prometheus::API_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    ::metrics::histogram!(crate::ground::prometheus::API_REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The API's default connection pool. Its reads are CPU-bound in
/// PostgreSQL: more queries at once than the server has cores only share the
/// cores and stretch every request, while requests waiting in the pool's FIFO
/// queue are served in order, which shortens the tail (BENCHMARKS.md,
/// "Operator API"). It also keeps the console from taking the workers'
/// database CPU.
pub const API_POOL_SIZE: u32 = 4;

/// `serve`'s pool: few connections, statements bounded below the request
/// timeout's default (15 s).
pub const API_POOL_DEFAULTS: crate::config::PoolDefaults = crate::config::PoolDefaults {
    size: API_POOL_SIZE,
    statement_timeout_secs: 10,
    idle_in_transaction_timeout_secs: 10,
};

/// What `orchestrator serve` runs with.
pub struct ServeDeps {
    pub addr: SocketAddr,
    pub state: ApiState,
    pub limits: layers::ApiLimits,
}

impl ServeDeps {
    /// From the environment: `API_ADDR`, `DATABASE_URL`, `DATABASE_POOL_SIZE`
    /// (default [`API_POOL_SIZE`]), `API_TOKEN`, `API_AUTH`, the limits
    /// (`API_REQUEST_TIMEOUT_SECS`, `API_MAX_BODY_BYTES`, `API_MAX_IN_FLIGHT`),
    /// and (for trigger) `OUTPUT_BUCKET`, `OUTPUT_PREFIX`,
    /// `OUTPUT_PATH_STYLE`, `RUN_REQUESTS_TOPIC_ARN`.
    pub async fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Self, ServeStartError> {
        let addr = env.socket_addr("API_ADDR", "127.0.0.1:8080")?;
        let limits = env.api_limits()?;
        let pool_options = env.pool_options(API_POOL_DEFAULTS)?;
        // A statement the API has stopped waiting for must not go on
        // running in the database.
        if pool_options
            .statement_timeout
            .is_none_or(|t| t >= limits.request_timeout)
        {
            return Err(crate::config::ConfigError::Invalid {
                name: "DATABASE_STATEMENT_TIMEOUT_SECS",
                value: pool_options
                    .statement_timeout
                    .map_or("0".into(), |t| t.as_secs().to_string()),
                expected: "for orchestrator serve, fewer seconds than API_REQUEST_TIMEOUT_SECS (and not 0)",
            }
            .into());
        }
        let pool = crate::store::pool::start_pool(&env.database_url()?, &pool_options).await?;
        let ctx = match env.optional("OUTPUT_BUCKET") {
            Some(_) => Some(Context::new(pool.clone(), env.request_settings()?)),
            None => None,
        };
        let (token, auth) = env.api_auth()?;
        let actors = actor::Actors::from_env(env)?;
        Ok(Self {
            addr,
            state: ApiState {
                pool,
                ctx,
                token: token.as_deref().map(auth::Token::new),
                auth,
                metrics: crate::ground::prometheus::install(),
                actors,
            },
            limits,
        })
    }
}

/// Why `orchestrator serve` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeStartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pool(#[from] crate::store::pool::StartPoolError),
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Serve(#[source] std::io::Error),
}

/// Serves until `shutdown`; in-flight requests finish first.
pub async fn serve(deps: ServeDeps, shutdown: CancellationToken) -> Result<(), ServeError> {
    let ServeDeps {
        addr,
        state,
        limits,
    } = deps;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    serve_on(listener, state, &limits, shutdown).await
}

/// [`serve`] on a listener already bound (a test binds port 0 and reads the
/// port from it, instead of guessing a free one).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: ApiState,
    limits: &layers::ApiLimits,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let local = listener.local_addr().map_err(ServeError::Serve)?;
    tracing::info!(addr = %local, actions = state.token.is_some(), auth = state.auth.as_str(),
        max_in_flight = limits.max_in_flight, "operator API and console at http://{local}/");
    let app = router(state, limits).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .map_err(ServeError::Serve)
}
