//! The operations endpoints on `OPS_ADDR`: `/healthz` (the process is up),
//! `/readyz` (the database and the consumed queue answer) and `/metrics`
//! (Prometheus text, see [`crate::ground::prometheus`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::store::Pool;

#[derive(Clone)]
pub struct OpsState {
    pub pool: Pool,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

async fn metrics_text(State(s): State<OpsState>) -> (StatusCode, String) {
    render_metrics(s.metrics.as_ref())
}

/// `/metrics` of the workers and of `orchestrator serve`.
pub fn render_metrics(
    handle: Option<&metrics_exporter_prometheus::PrometheusHandle>,
) -> (StatusCode, String) {
    match handle {
        Some(h) => (
            StatusCode::OK,
            h.render() + &crate::ground::prometheus::overdue_text(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n".into(),
        ),
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers within the check timeout (readiness of the
/// workers and of `orchestrator serve`); the error and its causes otherwise.
pub async fn database(pool: &Pool) -> Result<(), String> {
    let check = async {
        crate::store::ping(pool)
            .await
            .map_err(|e| crate::ground::errors::chain(&e))
    };
    tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

async fn queue(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<(), String> {
    let check = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send();
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// What a readiness answer says of one dependency: `ok` or `unavailable`.
/// The cause (user names, ARNs, host names) goes to the log, where an
/// operator reads it, and never to whoever asked.
pub fn readiness_word(what: &str, result: &Result<(), String>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(e) => {
            tracing::warn!(check = what, error = %e, "readiness check failed");
            "unavailable"
        }
    }
}

async fn readyz(State(s): State<OpsState>) -> (StatusCode, Json<Value>) {
    let (db, q) = tokio::join!(database(&s.pool), queue(&s.sqs, &s.queue_url));
    let status = if db.is_ok() && q.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "database": readiness_word("database", &db),
            "queue": readiness_word("queue", &q),
        })),
    )
}

/// Binds `addr` (failing fast when it is taken) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "ops endpoints listening (/healthz, /readyz, /metrics)");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "ops endpoints stopped");
        }
    }))
}

/// Serves the ops endpoints until `shutdown`; fails at once when `addr`
/// cannot be bound. The database-state gauges are refreshed by the worker's
/// own task ([`refresh_state_gauges`]).
pub async fn start(
    addr: SocketAddr,
    state: OpsState,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    serve(addr, state, shutdown).await
}

/// Sets the stale-output gauges (metrics by staleness reason, and stale in
/// all); a failed read keeps their last values.
pub async fn refresh_staleness_gauges(pool: &Pool) {
    match crate::app::staleness::counts(pool).await {
        Ok((by, total)) => {
            for (kind, n) in by {
                metrics::gauge!(crate::ground::prometheus::STALE_METRICS, "reason" => kind.as_str())
                    .set(n as f64);
            }
            metrics::gauge!(crate::ground::prometheus::STALE_METRICS, "reason" => "any")
                .set(total as f64);
        }
        Err(e) => tracing::debug!(error = %e, "could not count the stale outputs"),
    }
}

/// Replaces the backfill gauges: the points of each running or paused
/// backfill (the oldest [`crate::ground::prometheus::BACKFILL_SERIES`]) by
/// state; a failed read keeps the last ones.
pub async fn refresh_backfill_gauges(pool: &Pool) {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return tracing::debug!(error = %e, "could not count backfill points"),
    };
    let limit = crate::ground::prometheus::BACKFILL_SERIES;
    match crate::store::backfills::active_counts(&client, limit).await {
        Ok(rows) => {
            let rows: Vec<(String, Vec<(&str, i64)>)> = rows
                .into_iter()
                .map(|(id, c)| {
                    let states = vec![
                        ("done", c.done),
                        ("running", c.running),
                        ("failed", c.failed),
                        ("left", c.left),
                        ("canceled", c.canceled),
                    ];
                    (id.into_string(), states)
                })
                .collect();
            crate::ground::prometheus::set_backfills(&rows);
        }
        Err(e) => tracing::debug!(error = %e, "could not count backfill points"),
    }
}

/// Sets the gauges read from the database (outbox backlog, runs by status);
/// every replica reports the same values.
pub async fn refresh_state_gauges(pool: Pool) {
    let backlog = crate::in_transaction!(pool, crate::store::StoreError, |tx| {
        crate::store::outbox::backlog(&tx).await?
    });
    match backlog {
        Ok(b) => {
            metrics::gauge!(crate::ground::prometheus::OUTBOX_BACKLOG).set(b.unpublished as f64);
            metrics::gauge!(crate::ground::prometheus::OUTBOX_OLDEST_AGE_SECONDS)
                .set(b.oldest_age_secs);
        }
        Err(e) => tracing::debug!(error = %e, "could not read the outbox backlog"),
    }
    let freshness = crate::in_transaction!(pool, crate::store::StoreError, |tx| {
        crate::store::freshness::overview(&tx, crate::ground::prometheus::OVERDUE_SERIES).await?
    });
    match freshness {
        Ok(o) => {
            use crate::domain::freshness_state::{DatasetState, MetricState};
            for state in DatasetState::ALL {
                let n = o
                    .datasets
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(crate::ground::prometheus::DATASETS_FRESHNESS, "state" => state.as_str())
                    .set(n as f64);
            }
            for state in MetricState::ALL {
                let n = o
                    .metrics
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(crate::ground::prometheus::METRICS_FRESHNESS, "state" => state.as_str())
                    .set(n as f64);
            }
            crate::ground::prometheus::set_overdue(&o.overdue_datasets, &o.overdue_metrics);
        }
        Err(e) => tracing::debug!(error = %e, "could not read the freshness states"),
    }
    match crate::app::runs_admin::counts(&pool).await {
        Ok(counts) => {
            for status in crate::domain::run_state::RunStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                metrics::gauge!(crate::ground::prometheus::RUNS, "status" => status.as_str())
                    .set(n as f64);
            }
        }
        Err(e) => tracing::debug!(error = %e, "could not count runs"),
    }
}
