//! Alerts (docs/contracts.md, "Outbound: alerts"): what the fleet tells
//! people through the alerts topic, one message per transition. The body is
//! a stable JSON contract: `type` and `version`, a `dedupKey` unique per
//! transition (what makes a second copy of the same transition impossible
//! in the outbox), `occurredAt`, the trace id where there is one, and the
//! fields of its type.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::backfill::Counts;
use super::freshness_state::{DatasetState, MetricState};
use super::ids::{BackfillId, DatasetId, MetricId, RunId};

/// The version of every alert body; a change that is not an addition
/// raises it.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertType {
    DatasetLate,
    DatasetOnTime,
    MetricFreshnessChanged,
    RunFailed,
    MessageDeadLettered,
    MetricDefinitionChanged,
    BackfillCompleted,
    BackfillFailed,
}

impl AlertType {
    pub const ALL: [AlertType; 8] = [
        Self::DatasetLate,
        Self::DatasetOnTime,
        Self::MetricFreshnessChanged,
        Self::RunFailed,
        Self::MessageDeadLettered,
        Self::MetricDefinitionChanged,
        Self::BackfillCompleted,
        Self::BackfillFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DatasetLate => "dataset_late",
            Self::DatasetOnTime => "dataset_on_time",
            Self::MetricFreshnessChanged => "metric_freshness_changed",
            Self::RunFailed => "run_failed",
            Self::MessageDeadLettered => "message_dead_lettered",
            Self::MetricDefinitionChanged => "metric_definition_changed",
            Self::BackfillCompleted => "backfill_completed",
            Self::BackfillFailed => "backfill_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for AlertType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An alert ready for the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub alert_type: AlertType,
    pub dedup_key: String,
    /// The body (JSON), as published.
    pub payload: String,
    pub traceparent: Option<String>,
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    alert_type: &'static str,
    version: u32,
    dedup_key: &'a str,
    occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: Option<&'a str>,
    #[serde(flatten)]
    details: T,
}

fn alert<T: Serialize>(
    alert_type: AlertType,
    dedup_key: String,
    occurred_at: DateTime<Utc>,
    traceparent: Option<&str>,
    details: T,
) -> Alert {
    let trace_id = traceparent.and_then(|tp| tp.split('-').nth(1));
    let envelope = Envelope {
        alert_type: alert_type.as_str(),
        version: VERSION,
        dedup_key: &dedup_key,
        occurred_at: time(occurred_at),
        trace_id,
        details,
    };
    // Serializing plain strings and numbers cannot fail.
    let payload = serde_json::to_string(&envelope).unwrap_or_default();
    Alert {
        alert_type,
        dedup_key,
        payload,
        traceparent: traceparent.map(str::to_string),
    }
}

/// A dataset became late, or recovered.
pub struct DatasetChange<'a> {
    pub dataset_id: &'a DatasetId,
    pub from: DatasetState,
    pub to: DatasetState,
    /// The deadline that passed: of the late state that begins, or ends.
    pub late_since: DateTime<Utc>,
    pub last_update_at: Option<DateTime<Utc>>,
    pub expectation: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatasetDetails<'a> {
    dataset_id: &'a str,
    state: &'static str,
    previous_state: &'static str,
    late_since: String,
    last_update_at: Option<String>,
    expectation: &'a str,
}

pub fn dataset_changed(c: &DatasetChange<'_>, alert_type: AlertType) -> Alert {
    let key = format!("{alert_type}:{}:{}", c.dataset_id, time(c.late_since));
    alert(
        alert_type,
        key,
        c.at,
        None,
        DatasetDetails {
            dataset_id: c.dataset_id.as_str(),
            state: c.to.as_str(),
            previous_state: c.from.as_str(),
            late_since: time(c.late_since),
            last_update_at: c.last_update_at.map(time),
            expectation: &c.expectation,
        },
    )
}

/// A metric's freshness state changed.
pub struct MetricChange<'a> {
    pub metric_id: &'a MetricId,
    pub metric_code: &'a str,
    pub from: MetricState,
    pub to: MetricState,
    pub overdue_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub blocking: &'a [DatasetId],
    pub expectation: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricDetails<'a> {
    metric_id: &'a str,
    metric_code: &'a str,
    from: &'static str,
    to: &'static str,
    overdue_since: Option<String>,
    last_success_at: Option<String>,
    blocking_inputs: Vec<&'a str>,
    expectation: &'a str,
}

pub fn metric_changed(c: &MetricChange<'_>) -> Alert {
    let t = AlertType::MetricFreshnessChanged;
    let key = format!("{t}:{}:{}->{}:{}", c.metric_id, c.from, c.to, time(c.at));
    alert(
        t,
        key,
        c.at,
        None,
        MetricDetails {
            metric_id: c.metric_id.as_str(),
            metric_code: c.metric_code,
            from: c.from.as_str(),
            to: c.to.as_str(),
            overdue_since: c.overdue_since.map(time),
            last_success_at: c.last_success_at.map(time),
            blocking_inputs: c.blocking.iter().map(DatasetId::as_str).collect(),
            expectation: &c.expectation,
        },
    )
}

/// A run's last attempt failed or timed out: no retry follows.
pub struct RunFailure<'a> {
    pub run_id: &'a RunId,
    pub metric_code: &'a str,
    pub attempt: i32,
    pub max_attempts: i32,
    /// `failed` or `timed_out`.
    pub status: &'a str,
    pub error: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RunDetails<'a> {
    run_id: &'a str,
    metric_code: &'a str,
    attempt: i32,
    max_attempts: i32,
    status: &'a str,
    error: Option<&'a str>,
}

pub fn run_failed(c: &RunFailure<'_>) -> Alert {
    let t = AlertType::RunFailed;
    alert(
        t,
        format!("{t}:{}", c.run_id),
        c.at,
        c.traceparent,
        RunDetails {
            run_id: c.run_id.as_str(),
            metric_code: c.metric_code,
            attempt: c.attempt,
            max_attempts: c.max_attempts,
            status: c.status,
            error: c.error,
        },
    )
}

/// A metric's definition changed (`catalog apply`): who, from which version
/// to which, what changed, and what was done about it.
pub struct DefinitionChanged<'a> {
    pub metric_id: &'a MetricId,
    pub metric_code: &'a str,
    pub from_version: Option<i32>,
    pub to_version: i32,
    pub applied_by: &'a str,
    pub applied_at: DateTime<Utc>,
    /// What changed, for people.
    pub summary: &'a str,
    /// `[{section, path, from, to}]`.
    pub changes: &'a serde_json::Value,
    /// The metric's `on_change`: `rerun` or `none`.
    pub action: &'a str,
    /// What became of it.
    pub outcome: &'a str,
    pub run_id: Option<&'a RunId>,
    /// The backfill it made (`on_change: {backfill: …}`).
    pub backfill_id: Option<&'a BackfillId>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionDetails<'a> {
    metric_id: &'a str,
    metric_code: &'a str,
    from_version: Option<i32>,
    to_version: i32,
    applied_by: &'a str,
    applied_at: String,
    summary: &'a str,
    changes: &'a serde_json::Value,
    action: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backfill_id: Option<&'a str>,
}

pub fn definition_changed(c: &DefinitionChanged<'_>) -> Alert {
    let t = AlertType::MetricDefinitionChanged;
    alert(
        t,
        format!("{t}:{}:v{}", c.metric_id, c.to_version),
        c.at,
        None,
        DefinitionDetails {
            metric_id: c.metric_id.as_str(),
            metric_code: c.metric_code,
            from_version: c.from_version,
            to_version: c.to_version,
            applied_by: c.applied_by,
            applied_at: time(c.applied_at),
            summary: c.summary,
            changes: c.changes,
            action: c.action,
            outcome: c.outcome,
            run_id: c.run_id.map(RunId::as_str),
            backfill_id: c.backfill_id.map(BackfillId::as_str),
        },
    )
}

/// A backfill finished with every point computed, or a point of it failed
/// its last attempt (once per backfill: the first such point).
pub struct BackfillEvent<'a> {
    pub backfill_id: &'a BackfillId,
    pub metrics: &'a [String],
    pub counts: Counts,
    /// The backfill's status now (`running` when a point failed and the
    /// others go on).
    pub status: &'a str,
    /// The point that failed: metric code, moment, run, error.
    pub failed: Option<FailedPoint<'a>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedPoint<'a> {
    pub metric_code: &'a str,
    pub as_of: String,
    pub run_id: Option<&'a str>,
    pub error: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BackfillDetails<'a> {
    backfill_id: &'a str,
    metric_codes: &'a [String],
    status: &'a str,
    points: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed_point: Option<&'a FailedPoint<'a>>,
}

pub fn backfill(c: &BackfillEvent<'_>) -> Alert {
    let t = if c.failed.is_some() || c.status == "failed" {
        AlertType::BackfillFailed
    } else {
        AlertType::BackfillCompleted
    };
    alert(
        t,
        format!("{t}:{}", c.backfill_id),
        c.at,
        None,
        BackfillDetails {
            backfill_id: c.backfill_id.as_str(),
            metric_codes: c.metrics,
            status: c.status,
            points: c.counts,
            failed_point: c.failed.as_ref(),
        },
    )
}

/// A moment as alerts write it.
pub fn moment(t: DateTime<Utc>) -> String {
    time(t)
}

/// A message was copied to a dead-letter queue.
pub struct DeadLettered<'a> {
    pub queue: &'a str,
    pub message_id: &'a str,
    pub error_type: &'a str,
    pub error: &'a str,
    pub receive_count: u32,
    pub traceparent: Option<&'a str>,
    pub at: DateTime<Utc>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeadLetterDetails<'a> {
    queue: &'a str,
    message_id: &'a str,
    error_type: &'a str,
    error: &'a str,
    receive_count: u32,
}

pub fn dead_lettered(c: &DeadLettered<'_>) -> Alert {
    let t = AlertType::MessageDeadLettered;
    alert(
        t,
        format!("{t}:{}:{}", c.queue, c.message_id),
        c.at,
        c.traceparent,
        DeadLetterDetails {
            queue: c.queue,
            message_id: c.message_id,
            error_type: c.error_type,
            error: c.error,
            receive_count: c.receive_count,
        },
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn body(a: &Alert) -> Value {
        serde_json::from_str(&a.payload).unwrap()
    }

    #[test]
    fn alert_bodies_are_the_documented_contract() {
        let d = DatasetId::new("d1");
        let late = dataset_changed(
            &DatasetChange {
                dataset_id: &d,
                from: DatasetState::OnTime,
                to: DatasetState::Late,
                late_since: t("2026-12-02T10:00:00Z"),
                last_update_at: Some(t("2026-12-01T09:00:00Z")),
                expectation: "every 1day".into(),
                at: t("2026-12-02T10:00:05Z"),
            },
            AlertType::DatasetLate,
        );
        assert_eq!(late.dedup_key, "dataset_late:d1:2026-12-02T10:00:00.000Z");
        assert_eq!(
            body(&late),
            json!({"type": "dataset_late", "version": 1,
                   "dedupKey": "dataset_late:d1:2026-12-02T10:00:00.000Z",
                   "occurredAt": "2026-12-02T10:00:05.000Z", "datasetId": "d1",
                   "state": "late", "previousState": "on_time",
                   "lateSince": "2026-12-02T10:00:00.000Z",
                   "lastUpdateAt": "2026-12-01T09:00:00.000Z", "expectation": "every 1day"})
        );
        let m = MetricId::new("m1");
        let blocking = [DatasetId::new("d2")];
        let changed = metric_changed(&MetricChange {
            metric_id: &m,
            metric_code: "m.one",
            from: MetricState::Pass,
            to: MetricState::Fail,
            overdue_since: Some(t("2026-12-02T10:00:00Z")),
            last_success_at: None,
            blocking: &blocking,
            expectation: "max age fail 2days".into(),
            at: t("2026-12-02T10:00:05Z"),
        });
        let v = body(&changed);
        assert_eq!(v["blockingInputs"], json!(["d2"]));
        assert_eq!(
            (v["from"].as_str(), v["to"].as_str()),
            (Some("pass"), Some("fail"))
        );
        let r = RunId::new("r1");
        let failed = run_failed(&RunFailure {
            run_id: &r,
            metric_code: "m.one",
            attempt: 2,
            max_attempts: 2,
            status: "failed",
            error: Some("boom"),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            at: t("2026-12-02T10:00:05Z"),
        });
        assert_eq!(failed.dedup_key, "run_failed:r1");
        assert_eq!(body(&failed)["traceId"], "0af7651916cd43dd8448eb211c80319c");
        let dead = dead_lettered(&DeadLettered {
            queue: "projection-updates",
            message_id: "abc",
            error_type: "invalid_json",
            error: "invalid JSON",
            receive_count: 1,
            traceparent: None,
            at: t("2026-12-02T10:00:05Z"),
        });
        assert_eq!(
            dead.dedup_key,
            "message_dead_lettered:projection-updates:abc"
        );
        assert!(body(&dead).get("traceId").is_none());
    }

    #[test]
    fn a_backfill_alert_says_which_point_failed_once_per_backfill() {
        let id = BackfillId::new("bf-1");
        let metrics = vec!["m.one".to_string()];
        let counts = Counts {
            done: 3,
            failed: 1,
            left: 2,
            ..Default::default()
        };
        let failed = backfill(&BackfillEvent {
            backfill_id: &id,
            metrics: &metrics,
            counts,
            status: "running",
            failed: Some(FailedPoint {
                metric_code: "m.one",
                as_of: "2026-09-01T00:00:00.000Z".into(),
                run_id: Some("r9"),
                error: Some("boom"),
            }),
            at: t("2026-12-02T10:00:05Z"),
        });
        assert_eq!(failed.dedup_key, "backfill_failed:bf-1");
        let v = body(&failed);
        assert_eq!(v["failedPoint"]["asOf"], "2026-09-01T00:00:00.000Z");
        assert_eq!(v["points"]["failed"], 1);
        let ended = |status| {
            backfill(&BackfillEvent {
                backfill_id: &id,
                metrics: &metrics,
                counts,
                status,
                failed: None,
                at: t("2026-12-02T10:00:05Z"),
            })
        };
        assert_eq!(ended("completed").dedup_key, "backfill_completed:bf-1");
        assert_eq!(ended("failed").alert_type, AlertType::BackfillFailed);
        assert!(body(&ended("completed")).get("failedPoint").is_none());
    }

    /// The alert types docs/contracts.md lists are the ones the code raises.
    #[test]
    fn alert_types_are_the_documented_ones() {
        let documented = crate::doc_tables::first_column(
            include_str!("../../../docs/contracts.md"),
            "| alert `type` | raised when |",
        );
        let coded: Vec<&str> = AlertType::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(documented, coded);
    }
}
