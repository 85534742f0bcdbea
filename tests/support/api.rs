//! The operator API served in-process on a free port, for the API, console
//! and benchmark tests, with a small JSON client.

use std::time::Duration;

use orchestrator_core::api::layers::ApiLimits;
use orchestrator_core::api::{serve_on, ApiState};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::TestDb;

pub struct ApiServer {
    pub base: String,
    pub client: reqwest::Client,
    stop: CancellationToken,
}

impl ApiServer {
    /// Serves `state` with the default limits; returns once `/health` answers.
    pub async fn start(state: ApiState) -> ApiServer {
        Self::start_with(state, ApiLimits::default()).await
    }

    /// Serves `state` with `limits`; returns once `/health` answers.
    pub async fn start_with(state: ApiState, limits: ApiLimits) -> ApiServer {
        // Bound here, on port 0, and handed over: no window in which another
        // test could take the port.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the API");
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_on(listener, state, &limits, s).await {
                panic!(
                    "the API server failed: {}",
                    orchestrator_core::ground::errors::chain(&e)
                );
            }
        });
        let server = ApiServer {
            base: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            stop,
        };
        crate::eventually(
            Duration::from_secs(10),
            "the API to answer /health",
            || async {
                server
                    .client
                    .get(format!("{}/health", server.base))
                    .send()
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        server
    }

    /// The API over a test database, with actions on when `token` is given.
    pub async fn for_db(db: &TestDb, token: Option<&str>) -> ApiServer {
        Self::with_pool(db, db.pool.clone(), token).await
    }

    /// [`ApiServer::for_db`], reading through `pool` (a benchmark sets its size).
    pub async fn with_pool(
        db: &TestDb,
        pool: orchestrator_core::store::Pool,
        token: Option<&str>,
    ) -> ApiServer {
        Self::with_pool_and_limits(db, pool, token, ApiLimits::default()).await
    }

    /// [`ApiServer::with_pool`] with `limits` (a benchmark sets the bound).
    pub async fn with_pool_and_limits(
        db: &TestDb,
        pool: orchestrator_core::store::Pool,
        token: Option<&str>,
        limits: ApiLimits,
    ) -> ApiServer {
        Self::start_with(
            ApiState {
                pool,
                ctx: Some(db.ctx()),
                token: token.map(orchestrator_core::api::auth::Token::new),
                auth: Default::default(),
                metrics: None,
                actors: Default::default(),
            },
            limits,
        )
        .await
    }

    /// GET: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// POST with an optional bearer token: status and JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send_post(path, token, None).await
    }

    /// POST a JSON body with an optional bearer token: status and JSON body.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        self.send_post(path, token, Some(body)).await
    }

    async fn send_post(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
