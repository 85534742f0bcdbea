//! Prometheus metrics, served as text on `OPS_ADDR` `/metrics`. The names
//! live here; the code records through the `metrics` facade.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Messages received, by queue.
pub const RECEIVED: &str = "orchestrator_messages_received_total";
/// Messages finished, by queue and outcome (`processed`, `ignored`,
/// `dead_lettered`, `retried`).
pub const HANDLED: &str = "orchestrator_messages_handled_total";
/// Dead-lettered messages, by queue and reason (`invalid_json`, `invalid_event`, `retry_exhausted`).
pub const DEAD_LETTERED: &str = "orchestrator_messages_dead_lettered_total";
/// Time in the handler, by queue.
pub const HANDLER_SECONDS: &str = "orchestrator_handler_duration_seconds";
/// From SendMessage of a projection update to the publication of a run request it caused.
pub const UPDATE_TO_REQUEST_SECONDS: &str = "orchestrator_update_to_request_seconds";
/// From the worker's receipt of a projection update to the start of the
/// publish call carrying its first run request: the worker's own part.
pub const RECEIPT_TO_PUBLISH_SECONDS: &str = "orchestrator_receipt_to_publish_seconds";
pub const PUBLISHED: &str = "orchestrator_run_requests_published_total";
pub const PUBLISH_FAILURES: &str = "orchestrator_run_request_publish_failures_total";
pub const OUTBOX_BACKLOG: &str = "orchestrator_outbox_backlog";
/// Run requests this process committed and has not finished publishing; the
/// consumer pauses while it is at `PUBLISH_BACKLOG_LIMIT`.
pub const PUBLISH_WAITING: &str = "orchestrator_publish_waiting";
/// This process's `PUBLISH_BACKLOG_LIMIT`: at it, the consumer pauses.
pub const PUBLISH_LIMIT: &str = "orchestrator_publish_backlog_limit";
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "orchestrator_outbox_oldest_age_seconds";
/// Runs in the database, by status (refreshed periodically).
pub const RUNS: &str = "orchestrator_runs";
pub const RUN_TIMEOUTS: &str = "orchestrator_run_timeouts_total";
pub const RUN_RETRIES: &str = "orchestrator_run_retries_total";
/// Datasets with an expectation, by freshness state (`on_time`, `late`,
/// `unknown`); refreshed periodically.
pub const DATASETS_FRESHNESS: &str = "orchestrator_datasets_freshness";
/// Metrics with an expectation, by freshness state (`pass`, `warn`, `fail`,
/// `unknown`).
pub const METRICS_FRESHNESS: &str = "orchestrator_metrics_freshness";
/// Seconds a late dataset is past its deadline, by `dataset`: only late
/// ones, at most [`OVERDUE_SERIES`] (the series stay bounded).
pub const DATASET_OVERDUE_SECONDS: &str = "orchestrator_dataset_overdue_seconds";
/// Seconds a warning or failing metric is past its threshold, by `metric`
/// (its code).
pub const METRIC_OVERDUE_SECONDS: &str = "orchestrator_metric_overdue_seconds";
/// The most overdue datasets and metrics given a series each.
pub const OVERDUE_SERIES: i64 = 200;
/// `orchestrator serve`: requests by route pattern, method and status.
/// Metrics whose newest succeeded output is stale, by `reason`
/// (`definition_changed`, `input_updated`, `policy_changed`, and `any`).
pub const STALE_METRICS: &str = "orchestrator_stale_metrics";
/// Points of each running or paused backfill, by `backfill` and `state`
/// (`done`, `running`, `failed`, `left`, `canceled`): at most
/// [`BACKFILL_SERIES`] backfills, replaced whole at each refresh.
pub const BACKFILL_POINTS: &str = "orchestrator_backfill_points";
/// Backfills given series at most (the oldest active ones).
pub const BACKFILL_SERIES: i64 = 20;
pub const API_REQUESTS: &str = "orchestrator_api_requests_total";
pub const API_REQUEST_SECONDS: &str = "orchestrator_api_request_duration_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The per-entity overdue gauges, rendered as text beside the recorder's:
/// replaced whole at each refresh, so that a dataset or metric that
/// recovered has no series left (the recorder keeps every series it saw).
static OVERDUE: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

/// Escapes a label value (Prometheus text format).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Replaces the overdue gauges with these.
pub fn set_overdue(datasets: &[(String, f64)], metrics: &[(String, f64)]) {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP {DATASET_OVERDUE_SECONDS} seconds a late dataset is past its deadline"
    );
    let _ = writeln!(text, "# TYPE {DATASET_OVERDUE_SECONDS} gauge");
    for (id, secs) in datasets {
        let _ = writeln!(
            text,
            "{DATASET_OVERDUE_SECONDS}{{dataset=\"{}\"}} {secs}",
            label(id)
        );
    }
    let _ = writeln!(
        text,
        "# HELP {METRIC_OVERDUE_SECONDS} seconds a warning or failing metric is past its threshold"
    );
    let _ = writeln!(text, "# TYPE {METRIC_OVERDUE_SECONDS} gauge");
    for (code, secs) in metrics {
        let _ = writeln!(
            text,
            "{METRIC_OVERDUE_SECONDS}{{metric=\"{}\"}} {secs}",
            label(code)
        );
    }
    if let Ok(mut g) = OVERDUE.write() {
        *g = text;
    }
}

static BACKFILLS: std::sync::RwLock<String> = std::sync::RwLock::new(String::new());

/// Replaces the backfill gauges with these: (backfill id, [(state, points)]).
pub fn set_backfills(backfills: &[(String, Vec<(&str, i64)>)]) {
    use std::fmt::Write;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP {BACKFILL_POINTS} points of a running or paused backfill by state"
    );
    let _ = writeln!(text, "# TYPE {BACKFILL_POINTS} gauge");
    for (id, states) in backfills {
        for (state, n) in states {
            let _ = writeln!(
                text,
                "{BACKFILL_POINTS}{{backfill=\"{}\",state=\"{state}\"}} {n}",
                label(id)
            );
        }
    }
    if let Ok(mut g) = BACKFILLS.write() {
        *g = text;
    }
}

/// The overdue and backfill gauges' text (empty until the first refresh).
pub fn overdue_text() -> String {
    let overdue = OVERDUE.read().map(|g| g.clone()).unwrap_or_default();
    overdue + &BACKFILLS.read().map(|g| g.clone()).unwrap_or_default()
}

/// Installs the process-wide recorder once; `None` if another recorder was
/// installed first (then `/metrics` says so).
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            // Counters without labels exist from the start, at zero, so that
            // rate() and increase() see their first increment.
            for name in [PUBLISHED, PUBLISH_FAILURES, RUN_TIMEOUTS, RUN_RETRIES] {
                metrics::counter!(name).increment(0);
            }
            Some(handle)
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(RECEIVED, "SQS messages received");
    describe_counter!(HANDLED, "SQS messages finished, by outcome");
    describe_counter!(DEAD_LETTERED, "messages sent to a DLQ, by reason");
    describe_histogram!(
        HANDLER_SECONDS,
        Unit::Seconds,
        "time in the message handler"
    );
    describe_histogram!(
        UPDATE_TO_REQUEST_SECONDS,
        Unit::Seconds,
        "projection update SendMessage to run request published"
    );
    describe_histogram!(
        RECEIPT_TO_PUBLISH_SECONDS,
        Unit::Seconds,
        "projection update received to the start of the publish call carrying its first run request"
    );
    describe_counter!(PUBLISHED, "run requests published to SNS");
    describe_counter!(API_REQUESTS, "operator API requests, by route and status");
    describe_histogram!(
        API_REQUEST_SECONDS,
        Unit::Seconds,
        "operator API request latency, by route"
    );
    describe_counter!(PUBLISH_FAILURES, "failed run-request publishes (retried)");
    describe_gauge!(OUTBOX_BACKLOG, "unpublished outbox rows");
    describe_gauge!(
        DATASETS_FRESHNESS,
        "datasets with an expectation, by freshness state"
    );
    describe_gauge!(
        METRICS_FRESHNESS,
        "metrics with an expectation, by freshness state"
    );
    describe_gauge!(
        PUBLISH_WAITING,
        "run requests committed by this process and not yet published (the consumer pauses at PUBLISH_BACKLOG_LIMIT)"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "age of the oldest unpublished outbox row"
    );
    describe_gauge!(RUNS, "runs by status");
    describe_gauge!(
        STALE_METRICS,
        "metrics whose newest succeeded output is stale, by reason (a metric counts under each of its reasons; any: stale at all)"
    );
    describe_counter!(RUN_TIMEOUTS, "runs timed out by the sweep");
    describe_counter!(RUN_RETRIES, "retry runs queued");
}

/// A short label for a queue URL: its name.
pub fn queue_label(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_label_is_the_name() {
        assert_eq!(
            super::queue_label("http://127.0.0.1:4566/000000000000/prod-projection-updates"),
            "prod-projection-updates"
        );
        assert_eq!(super::queue_label("q"), "q");
    }
}
