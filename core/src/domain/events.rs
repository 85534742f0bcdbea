//! Inbound wire contracts (docs/contracts.md): bodies parsed into typed events
//! or typed errors. Unknown fields are ignored; an SNS notification envelope
//! is unwrapped first.

use super::ids::{DatasetId, RunId};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::run_state::LifecycleKind;

/// Bodies larger than this are rejected before parsing (SQS allows 256 KiB;
/// an S3-offloaded payload may be bigger, but not unboundedly so).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all (DLQ `error_type=invalid_json`).
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// JSON, but not a valid event (DLQ `error_type=invalid_event`).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
}

/// Why a message was dead-lettered: the DLQ `error_type` attribute
/// (docs/contracts.md), written in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The body is not JSON.
    InvalidJson,
    /// JSON, but not a valid event of the queue's contract.
    InvalidEvent,
    /// A valid event the store refuses for good (e.g. it breaks a constraint).
    Unprocessable,
    /// A transient failure that outlasted the maximum receive count.
    RetryExhausted,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 4] = [
        Self::InvalidJson,
        Self::InvalidEvent,
        Self::Unprocessable,
        Self::RetryExhausted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::InvalidEvent => "invalid_event",
            Self::Unprocessable => "unprocessable",
            Self::RetryExhausted => "retry_exhausted",
        }
    }
}

impl EventError {
    /// Why the message is dead-lettered.
    pub fn reason(&self) -> DeadLetterReason {
        match self {
            Self::InvalidJson(_) => DeadLetterReason::InvalidJson,
            Self::InvalidEvent(_) => DeadLetterReason::InvalidEvent,
        }
    }

    /// The DLQ `error_type` attribute (docs/contracts.md).
    pub fn error_type(&self) -> &'static str {
        self.reason().as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionUpdate {
    pub dataset_id: DatasetId,
    pub bucket: Option<String>,
    pub version_manifest_path: String,
    pub projections_path: String,
}

impl ProjectionUpdate {
    /// The idempotency key: `dataset_id + ":" + version_manifest_path`.
    pub fn event_key(&self) -> String {
        format!("{}:{}", self.dataset_id, self.version_manifest_path)
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("event".into(), EventType::ProjectionUpdate.as_str().into());
        m.insert("dataset_id".into(), self.dataset_id.as_str().into());
        if let Some(b) = &self.bucket {
            m.insert("bucket".into(), b.clone().into());
        }
        m.insert(
            "version_manifest_path".into(),
            self.version_manifest_path.clone().into(),
        );
        m.insert(
            "projections_path".into(),
            self.projections_path.clone().into(),
        );
        Value::Object(m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionStatus {
    Success,
    Failure,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LifecycleEvent {
    Started {
        run_id: RunId,
        started_at: Option<DateTime<Utc>>,
    },
    Heartbeat {
        run_id: RunId,
        progress: Option<f64>,
        ts: Option<DateTime<Utc>>,
    },
    Completed(Completion),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub run_id: RunId,
    pub status: CompletionStatus,
    pub metric_code: Option<String>,
    pub version_ts: Option<String>,
    pub output_manifest: Option<String>,
    pub row_count: Option<i64>,
    pub error: Option<String>,
    /// What the runner says it executed (its own code version); stored
    /// beside the definition version the run was requested with, never
    /// in its place.
    pub code_version: Option<String>,
}

/// Longer code versions are refused: a version is a short label or hash.
pub const MAX_CODE_VERSION_CHARS: usize = 200;

impl LifecycleEvent {
    pub fn run_id(&self) -> &RunId {
        match self {
            Self::Started { run_id, .. } | Self::Heartbeat { run_id, .. } => run_id,
            Self::Completed(c) => &c.run_id,
        }
    }

    pub fn kind(&self) -> LifecycleKind {
        match self {
            Self::Started { .. } => LifecycleKind::Started,
            Self::Heartbeat { .. } => LifecycleKind::Heartbeat,
            Self::Completed(c) => LifecycleKind::Completed {
                success: c.status == CompletionStatus::Success,
            },
        }
    }
}

/// Parses a body into JSON, unwrapping an SNS notification envelope.
pub fn parse_body(body: &str) -> Result<Value, EventError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EventError::InvalidEvent(format!(
            "body of {} bytes exceeds the limit of {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let v: Value =
        serde_json::from_str(body).map_err(|e| EventError::InvalidJson(e.to_string()))?;
    let is_envelope = v.get("Type").and_then(Value::as_str) == Some("Notification");
    match (is_envelope, v.get("Message")) {
        (true, Some(Value::String(inner))) => serde_json::from_str(inner)
            .map_err(|e| EventError::InvalidJson(format!("SNS envelope Message: {e}"))),
        (true, _) => Err(EventError::InvalidEvent(
            "SNS envelope without a string Message".into(),
        )),
        (false, _) => Ok(v),
    }
}

fn object(v: &Value) -> Result<&Map<String, Value>, EventError> {
    v.as_object()
        .ok_or_else(|| EventError::InvalidEvent("body must be a JSON object".into()))
}

fn required_str(o: &Map<String, Value>, key: &str) -> Result<String, EventError> {
    match o.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(EventError::InvalidEvent(format!("{key} must not be empty"))),
        Some(_) => Err(EventError::InvalidEvent(format!("{key} must be a string"))),
        None => Err(EventError::InvalidEvent(format!("{key} is required"))),
    }
}

fn optional_str(o: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(EventError::InvalidEvent(format!(
            "{key} must be a string or null"
        ))),
    }
}

fn optional_time(o: &Map<String, Value>, key: &str) -> Result<Option<DateTime<Utc>>, EventError> {
    match optional_str(o, key)? {
        None => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|e| {
                EventError::InvalidEvent(format!("{key} must be an RFC 3339 timestamp: {e}"))
            }),
    }
}

/// docs/contracts.md, projection update.
pub fn parse_projection_update(v: &Value) -> Result<ProjectionUpdate, EventError> {
    let o = object(v)?;
    match o.get("event") {
        Some(Value::String(e)) if EventType::parse(e) == Some(EventType::ProjectionUpdate) => {}
        Some(other) => {
            return Err(EventError::InvalidEvent(format!(
                "event must be {:?}, got {other}",
                EventType::ProjectionUpdate.as_str()
            )))
        }
        None => return Err(EventError::InvalidEvent("event is required".into())),
    }
    Ok(ProjectionUpdate {
        dataset_id: required_str(o, "dataset_id")?.into(),
        bucket: optional_str(o, "bucket")?.filter(|b| !b.is_empty()),
        version_manifest_path: required_str(o, "version_manifest_path")?,
        projections_path: required_str(o, "projections_path")?,
    })
}

/// The key to read: `camel` when present (and not null), else `snake`. The
/// reference control plane accepts snake_case keys from its runner on
/// completions; camelCase wins when both are there.
fn either<'k>(o: &Map<String, Value>, camel: &'k str, snake: &'k str) -> &'k str {
    match o.get(camel) {
        None | Some(Value::Null) if o.contains_key(snake) => snake,
        _ => camel,
    }
}

const COMPLETED: &str = EventType::MetricRunCompleted.as_str();

/// Every event type on the wire, in and out (docs/contracts.md), written
/// once: the `event` of a projection update, the `type` of the lifecycle
/// events and of the run request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    ProjectionUpdate,
    MetricRunStarted,
    MetricRunHeartbeat,
    MetricRunCompleted,
    MetricRunRequested,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        Self::ProjectionUpdate,
        Self::MetricRunStarted,
        Self::MetricRunHeartbeat,
        Self::MetricRunCompleted,
        Self::MetricRunRequested,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ProjectionUpdate => "projection_update",
            Self::MetricRunStarted => "metric_run_started",
            Self::MetricRunHeartbeat => "metric_run_heartbeat",
            Self::MetricRunCompleted => "metric_run_completed",
            Self::MetricRunRequested => "metric_run_requested",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// How runners express heartbeat progress (`RUNNER_PROGRESS_SCALE`); it is
/// always stored as a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressScale {
    /// 0–100.
    #[default]
    Percent,
    /// 0.0–1.0 (what the reference runner sends).
    Fraction,
}

impl std::str::FromStr for ProgressScale {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "percent" => Ok(Self::Percent),
            "fraction" => Ok(Self::Fraction),
            other => Err(format!("unknown progress scale {other:?}")),
        }
    }
}

impl ProgressScale {
    /// The percentage a reported value stands for, if it is in range.
    pub fn to_percent(self, reported: f64) -> Option<f64> {
        match self {
            Self::Percent => (0.0..=100.0).contains(&reported).then_some(reported),
            Self::Fraction => (0.0..=1.0).contains(&reported).then_some(reported * 100.0),
        }
    }

    fn range(self) -> &'static str {
        match self {
            Self::Percent => "0..=100 (RUNNER_PROGRESS_SCALE=percent)",
            Self::Fraction => "0.0..=1.0 (RUNNER_PROGRESS_SCALE=fraction)",
        }
    }
}

/// docs/contracts.md, run lifecycle; progress in percent.
pub fn parse_lifecycle(v: &Value) -> Result<LifecycleEvent, EventError> {
    parse_lifecycle_scaled(v, ProgressScale::Percent)
}

/// [`parse_lifecycle`] for runners that report progress on `scale`.
pub fn parse_lifecycle_scaled(
    v: &Value,
    scale: ProgressScale,
) -> Result<LifecycleEvent, EventError> {
    let o = object(v)?;
    // `event_type` is accepted only for completions (as the reference does).
    let kind = match o.get("type") {
        None | Some(Value::Null)
            if o.get("event_type").and_then(Value::as_str) == Some(COMPLETED) =>
        {
            COMPLETED.to_string()
        }
        _ => required_str(o, "type")?,
    };
    let completed = kind == COMPLETED;
    let key = |camel: &'static str, snake: &'static str| {
        if completed {
            either(o, camel, snake)
        } else {
            camel
        }
    };
    let run_id = RunId::from(required_str(o, key("runId", "run_id"))?);
    match EventType::parse(&kind) {
        Some(EventType::MetricRunStarted) => Ok(LifecycleEvent::Started {
            run_id,
            started_at: optional_time(o, "startedAt")?,
        }),
        Some(EventType::MetricRunHeartbeat) => {
            let progress = match o.get("progress") {
                None | Some(Value::Null) => None,
                Some(p) => match p.as_f64().and_then(|x| scale.to_percent(x)) {
                    Some(x) => Some(x),
                    None => {
                        return Err(EventError::InvalidEvent(format!(
                            "progress must be a number in {}, got {p}",
                            scale.range()
                        )))
                    }
                },
            };
            Ok(LifecycleEvent::Heartbeat {
                run_id,
                progress,
                ts: optional_time(o, "ts")?,
            })
        }
        Some(EventType::MetricRunCompleted) => {
            let status = match required_str(o, "status")?.as_str() {
                "SUCCESS" => CompletionStatus::Success,
                "FAILURE" => CompletionStatus::Failure,
                other => {
                    return Err(EventError::InvalidEvent(format!(
                        "status must be SUCCESS or FAILURE, got {other:?}"
                    )))
                }
            };
            let rows_key = key("rowCount", "row_count");
            let row_count = match o.get(rows_key) {
                None | Some(Value::Null) => None,
                Some(n) => Some(n.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    EventError::InvalidEvent(format!("{rows_key} must be an integer >= 0"))
                })?),
            };
            Ok(LifecycleEvent::Completed(Completion {
                run_id,
                status,
                metric_code: optional_str(o, key("metricCode", "metric_code"))?,
                version_ts: optional_str(o, key("versionTs", "version_ts"))?,
                output_manifest: optional_str(o, key("outputManifest", "output_manifest"))?,
                row_count,
                error: optional_str(o, "error")?,
                code_version: code_version(o, key("codeVersion", "code_version"))?,
            }))
        }
        Some(EventType::ProjectionUpdate | EventType::MetricRunRequested) | None => {
            Err(EventError::InvalidEvent(format!("unknown type {kind:?}")))
        }
    }
}

fn code_version(o: &Map<String, Value>, key: &str) -> Result<Option<String>, EventError> {
    let v = optional_str(o, key)?;
    match v {
        Some(s) if s.trim().is_empty() || s.chars().count() > MAX_CODE_VERSION_CHARS => {
            Err(EventError::InvalidEvent(format!(
                "{key} must be a non-empty string of at most {MAX_CODE_VERSION_CHARS} characters"
            )))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The event types docs/contracts.md shows in its examples (`{"event":
    /// "…"` and `{"type": "…"`) are exactly the ones the code reads and
    /// writes: events, and alerts.
    #[test]
    fn event_types_are_the_documented_ones() {
        let doc = include_str!("../../../docs/contracts.md");
        let mut documented: Vec<&str> = ["{\"event\": \"", "{\"type\": \""]
            .iter()
            .flat_map(|opening| doc.split(opening).skip(1))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        documented.sort_unstable();
        documented.dedup();
        let mut coded: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        coded.extend(
            crate::domain::alert::AlertType::ALL
                .iter()
                .map(|t| t.as_str()),
        );
        coded.sort_unstable();
        assert_eq!(documented, coded);
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn completions_accept_the_reference_runners_snake_case_keys() {
        // (body, run id, metric code, version, manifest, rows)
        type Case = (
            Value,
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<i64>,
        );
        let cases: Vec<Case> = vec![
            (
                json!({"event_type": "metric_run_completed", "run_id": "r1", "status": "SUCCESS",
                       "metric_code": "m.x", "version_ts": "2026-11-20",
                       "output_manifest": "out/m.x/manifest.json", "row_count": 7}),
                "r1",
                Some("m.x"),
                Some("2026-11-20"),
                Some("out/m.x/manifest.json"),
                Some(7),
            ),
            // camelCase wins when both are present.
            (
                json!({"type": "metric_run_completed", "runId": "r2", "run_id": "other",
                       "status": "FAILURE", "rowCount": 1, "row_count": 2,
                       "metricCode": "m.a", "metric_code": "m.b"}),
                "r2",
                Some("m.a"),
                None,
                None,
                Some(1),
            ),
            // A null camelCase value gives way to the snake_case one.
            (
                json!({"type": "metric_run_completed", "runId": "r3", "status": "SUCCESS",
                       "versionTs": null, "version_ts": "v"}),
                "r3",
                None,
                Some("v"),
                None,
                None,
            ),
        ];
        for (body, run, code, version, manifest, rows) in cases {
            let LifecycleEvent::Completed(c) = parse_lifecycle(&body).unwrap() else {
                panic!("{body}: not a completion");
            };
            assert_eq!(c.run_id, run, "{body}");
            assert_eq!(c.metric_code.as_deref(), code, "{body}");
            assert_eq!(c.version_ts.as_deref(), version, "{body}");
            assert_eq!(c.output_manifest.as_deref(), manifest, "{body}");
            assert_eq!(c.row_count, rows, "{body}");
        }
    }

    #[test]
    fn snake_case_keys_are_only_for_completions() {
        for body in [
            json!({"event_type": "metric_run_started", "runId": "r"}),
            json!({"type": "metric_run_started", "run_id": "r"}),
            json!({"type": "metric_run_heartbeat", "run_id": "r"}),
            json!({"event_type": "metric_run_completed", "run_id": "r", "status": "SUCCESS", "row_count": -1}),
        ] {
            assert_eq!(
                parse_lifecycle(&body).unwrap_err().error_type(),
                "invalid_event",
                "{body}"
            );
        }
    }
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn progress_is_read_on_the_configured_scale_and_stored_in_percent() {
        use ProgressScale::*;
        let cases: &[(ProgressScale, Value, Option<f64>)] = &[
            (Percent, json!(40), Some(40.0)),
            (Percent, json!(100), Some(100.0)),
            (Percent, json!(0.5), Some(0.5)),
            (Percent, json!(101), None),
            (Percent, json!(-1), None),
            (Fraction, json!(0.5), Some(50.0)),
            (Fraction, json!(1), Some(100.0)),
            (Fraction, json!(0), Some(0.0)),
            (Fraction, json!(40), None),
            (Fraction, json!("0.5"), None),
        ];
        for (scale, progress, want) in cases {
            let ev = json!({"type": "metric_run_heartbeat", "runId": "r", "progress": progress});
            match (parse_lifecycle_scaled(&ev, *scale), want) {
                (
                    Ok(LifecycleEvent::Heartbeat {
                        progress: Some(p), ..
                    }),
                    Some(w),
                ) => {
                    assert!((p - w).abs() < 1e-9, "{scale:?} {progress}: {p}")
                }
                (Err(e), None) => assert!(e.to_string().contains("RUNNER_PROGRESS_SCALE"), "{e}"),
                (got, _) => panic!("{scale:?} {progress}: {got:?}"),
            }
        }
        assert_eq!("fraction".parse(), Ok(Fraction));
        assert_eq!("percent".parse(), Ok(Percent));
        assert!("ratio".parse::<ProgressScale>().is_err());
    }

    #[test]
    fn projection_update_parses_and_builds_its_key() {
        let v = json!({"event": "projection_update", "dataset_id": "d", "bucket": "b",
                       "version_manifest_path": "m.json", "projections_path": "p/", "extra": 1});
        let u = parse_projection_update(&v).unwrap();
        assert_eq!(u.event_key(), "d:m.json");
        assert_eq!(parse_projection_update(&u.to_json()).unwrap(), u);
    }

    #[test]
    fn projection_update_errors_are_typed() {
        let base = json!({"event": "projection_update", "dataset_id": "d",
                          "version_manifest_path": "m", "projections_path": "p"});
        let mut wrong_event = base.clone();
        wrong_event["event"] = json!("other");
        let mut missing = base.clone();
        missing.as_object_mut().unwrap().remove("dataset_id");
        let mut ill_typed = base.clone();
        ill_typed["projections_path"] = json!(3);
        for v in [wrong_event, missing, ill_typed, json!([])] {
            assert!(matches!(
                parse_projection_update(&v),
                Err(EventError::InvalidEvent(_))
            ));
        }
        assert_eq!(
            parse_body("{nope").unwrap_err().error_type(),
            "invalid_json"
        );
    }

    #[test]
    fn sns_envelope_is_unwrapped() {
        let inner = json!({"type": "metric_run_started", "runId": "r1"}).to_string();
        let body = json!({"Type": "Notification", "MessageId": "x", "Message": inner}).to_string();
        let ev = parse_lifecycle(&parse_body(&body).unwrap()).unwrap();
        assert_eq!(ev.run_id(), "r1");
    }

    #[test]
    fn lifecycle_events_validate_their_fields() {
        let ok = json!({"type": "metric_run_heartbeat", "runId": "r", "progress": 40,
                        "ts": "2026-11-20T10:01:00Z"});
        assert!(
            matches!(parse_lifecycle(&ok), Ok(LifecycleEvent::Heartbeat { progress: Some(p), .. }) if p == 40.0)
        );
        for bad in [
            json!({"type": "metric_run_heartbeat", "runId": "r", "progress": 101}),
            json!({"type": "metric_run_heartbeat", "runId": "r", "ts": "yesterday"}),
            json!({"type": "metric_run_started", "runId": ""}),
            json!({"type": "metric_run_exploded", "runId": "r"}),
            json!({"type": "metric_run_completed", "runId": "r", "status": "OK"}),
            json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS", "rowCount": -1}),
            json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS", "codeVersion": ""}),
            json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS", "codeVersion": 7}),
            json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS",
                   "codeVersion": "x".repeat(MAX_CODE_VERSION_CHARS + 1)}),
        ] {
            assert!(parse_lifecycle(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_completion_may_say_what_code_ran() {
        for (body, want) in [
            (
                json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS"}),
                None,
            ),
            (
                json!({"type": "metric_run_completed", "runId": "r", "status": "SUCCESS", "codeVersion": "git:abc"}),
                Some("git:abc"),
            ),
            (
                json!({"event_type": "metric_run_completed", "run_id": "r", "status": "SUCCESS", "code_version": "1.2"}),
                Some("1.2"),
            ),
        ] {
            let Ok(LifecycleEvent::Completed(c)) = parse_lifecycle(&body) else {
                panic!("{body}")
            };
            assert_eq!(c.code_version.as_deref(), want, "{body}");
        }
    }

    /// Any JSON value, a few levels deep.
    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::from),
            Just(Value::from("2026-11-20T10:00:00Z")),
            Just(Value::from("SUCCESS")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(".{0,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    const KEYS: &[&str] = &[
        "event",
        "type",
        "dataset_id",
        "bucket",
        "version_manifest_path",
        "projections_path",
        "runId",
        "startedAt",
        "ts",
        "progress",
        "metricCode",
        "status",
        "versionTs",
        "outputManifest",
        "rowCount",
        "error",
    ];
    const KINDS: &[&str] = &[
        "projection_update",
        "metric_run_started",
        "metric_run_heartbeat",
        "metric_run_completed",
    ];

    /// Objects made of the contracts' own keys with plausible or arbitrary
    /// values: the inputs that reach the deepest checks.
    fn arb_event() -> impl Strategy<Value = Value> {
        let value = prop_oneof![
            3 => prop::sample::select(KINDS).prop_map(Value::from),
            3 => "[a-z0-9/._-]{1,12}".prop_map(Value::from),
            2 => (-10.0f64..120.0).prop_map(Value::from),
            2 => arb_value(),
        ];
        prop::collection::btree_map(prop::sample::select(KEYS), value, 0..10)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bodies_never_panic(s in ".{0,300}") {
            if let Ok(v) = parse_body(&s) {
                let _ = parse_projection_update(&v);
                let _ = parse_lifecycle(&v);
            }
        }

        /// Raw or in an SNS envelope, every contract-shaped body ends in a
        /// value or a typed error, the same either way.
        #[test]
        fn contract_shaped_bodies_end_in_a_value_or_a_typed_error(event in arb_event(), enveloped in any::<bool>()) {
            let raw = event.to_string();
            let body = if enveloped {
                serde_json::json!({"Type": "Notification", "Message": raw}).to_string()
            } else {
                raw.clone()
            };
            let v = parse_body(&body).expect("JSON stays JSON");
            // (Compared with the text parsed directly: floats need not
            // survive a print/parse round trip bit for bit.)
            prop_assert_eq!(&v, &serde_json::from_str::<Value>(&raw).unwrap());
            let update = parse_projection_update(&v);
            let lifecycle = parse_lifecycle(&v);
            for e in [update.as_ref().err(), lifecycle.as_ref().err()].into_iter().flatten() {
                prop_assert!(matches!(e, EventError::InvalidEvent(_)), "{e:?}");
            }
            // A well-formed projection update is accepted.
            let ok = |k: &str| v.get(k).and_then(Value::as_str).is_some_and(|s| !s.is_empty());
            if v.get("event") == Some(&Value::from("projection_update"))
                && ok("dataset_id") && ok("version_manifest_path") && ok("projections_path")
                && v.get("bucket").is_none_or(Value::is_string)
            {
                prop_assert!(update.is_ok(), "{:?}", update);
            }
        }
    }
}
