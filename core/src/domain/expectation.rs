//! Freshness expectations an operator writes in the catalog (docs/contracts.md):
//! when a dataset's updates are expected, and how fresh a metric's output
//! must be. Parsed here with paths; judged against the clock by
//! `domain::freshness_state`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::problem::{unknown_keys, Problem};

/// The longest interval, grace or age an expectation may name.
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 86_400);

/// When something is expected: at most `Every` after the last one, or in the
/// window before each tick of a cron schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Every(Duration),
    By(Deadline),
}

/// A cron schedule in a time zone: `"0 10 * * 1-5 America/Argentina/Buenos_Aires"`
/// (five fields, then an IANA zone; UTC when none is given).
#[derive(Clone)]
pub struct Deadline(std::sync::Arc<DeadlineParts>);

struct DeadlineParts {
    cron: croner::Cron,
    tz: jiff::tz::TimeZone,
    cron_text: String,
    tz_name: String,
}

impl PartialEq for Deadline {
    fn eq(&self, other: &Self) -> bool {
        self.0.cron_text == other.0.cron_text && self.0.tz_name == other.0.tz_name
    }
}

impl fmt::Debug for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deadline({self})")
    }
}

impl fmt::Display for Deadline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.cron_text, self.0.tz_name)
    }
}

impl FromStr for Deadline {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (cron_fields, tz_name) = match fields.len() {
            5 => (&fields[..], "UTC"),
            6 => (&fields[..5], fields[5]),
            n => {
                return Err(format!(
                    "must be five cron fields and an optional time zone, e.g. \"0 10 * * 1-5 America/Argentina/Buenos_Aires\" (got {n} fields)"
                ))
            }
        };
        let cron_text = cron_fields.join(" ");
        let cron = croner::Cron::from_str(&cron_text)
            .map_err(|e| format!("{cron_text:?} is not a cron schedule: {e}"))?;
        let tz = jiff::tz::TimeZone::get(tz_name).map_err(|_| {
            format!("unknown time zone {tz_name:?} (an IANA name such as Europe/Madrid, or UTC)")
        })?;
        Ok(Deadline(std::sync::Arc::new(DeadlineParts {
            cron,
            tz,
            cron_text,
            tz_name: tz_name.to_string(),
        })))
    }
}

fn to_jiff(t: DateTime<Utc>) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_millisecond(t.timestamp_millis()).ok()
}

fn from_jiff(t: &jiff::Zoned) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(t.timestamp().as_millisecond())
}

impl Deadline {
    /// The latest tick at or before `t`.
    pub fn tick_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zoned = to_jiff(t)?.to_zoned(self.0.tz.clone());
        let tick = self.0.cron.find_previous_occurrence(&zoned, true).ok()?;
        from_jiff(&tick)
    }

    /// The first tick strictly after `t`.
    pub fn tick_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zoned = to_jiff(t)?.to_zoned(self.0.tz.clone());
        let tick = self.0.cron.find_next_occurrence(&zoned, false).ok()?;
        from_jiff(&tick)
    }

    /// The latest tick strictly before `t`.
    pub fn tick_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let zoned = to_jiff(t)?.to_zoned(self.0.tz.clone());
        let tick = self.0.cron.find_previous_occurrence(&zoned, false).ok()?;
        from_jiff(&tick)
    }
}

/// What a dataset promises: its schedule and how late an update may be
/// before the dataset counts as late.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetExpectation {
    pub schedule: Schedule,
    pub grace: Duration,
}

/// How fresh a metric's output must be: the age of its newest succeeded
/// run (warn, then fail), or a succeeded run in each window of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricExpectation {
    MaxAge {
        warn: Option<Duration>,
        fail: Duration,
    },
    By {
        deadline: Deadline,
        grace: Duration,
    },
}

fn grace_suffix(f: &mut fmt::Formatter<'_>, grace: Duration) -> fmt::Result {
    if grace.is_zero() {
        Ok(())
    } else {
        write!(f, ", grace {}", humantime::format_duration(grace))
    }
}

/// As the API, the alerts and `catalog apply` show it: `every 1day, grace
/// 1h` or `by 0 10 * * 1-5 America/Argentina/Buenos_Aires`.
impl fmt::Display for DatasetExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schedule {
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d))?,
            Schedule::By(d) => write!(f, "by {d}")?,
        }
        grace_suffix(f, self.grace)
    }
}

/// `max age warn 1day 2h, fail 2days` or `by 0 11 * * * UTC, grace 30m`.
impl fmt::Display for MetricExpectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricExpectation::MaxAge { warn, fail } => {
                f.write_str("max age ")?;
                if let Some(w) = warn {
                    write!(f, "warn {}, ", humantime::format_duration(*w))?;
                }
                write!(f, "fail {}", humantime::format_duration(*fail))
            }
            MetricExpectation::By { deadline, grace } => {
                write!(f, "by {deadline}")?;
                grace_suffix(f, *grace)
            }
        }
    }
}

fn secs_i64(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn stored_period(secs: i64, column: &str) -> Result<Duration, String> {
    u64::try_from(secs)
        .map(Duration::from_secs)
        .map_err(|_| format!("{column} is negative: {secs}"))
}

/// The columns an expectation is stored in (`datasets`: `expected_every_secs`,
/// `expected_by`, `expectation_grace_secs`).
impl DatasetExpectation {
    pub fn to_columns(&self) -> (Option<i64>, Option<String>, i64) {
        match &self.schedule {
            Schedule::Every(d) => (Some(secs_i64(*d)), None, secs_i64(self.grace)),
            Schedule::By(d) => (None, Some(d.to_string()), secs_i64(self.grace)),
        }
    }

    pub fn from_columns(
        every: Option<i64>,
        by: Option<&str>,
        grace: i64,
    ) -> Result<Option<Self>, String> {
        let schedule = match (every, by) {
            (Some(s), None) => Schedule::Every(stored_period(s, "expected_every_secs")?),
            (None, Some(text)) => Schedule::By(text.parse()?),
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => return Err("both expected_every_secs and expected_by".into()),
        };
        Ok(Some(Self {
            schedule,
            grace: stored_period(grace, "expectation_grace_secs")?,
        }))
    }
}

/// The columns of `metrics`: `max_age_warn_secs`, `max_age_fail_secs`,
/// `expected_by`, `expectation_grace_secs`.
pub type MetricColumns = (Option<i64>, Option<i64>, Option<String>, i64);

impl MetricExpectation {
    pub fn to_columns(&self) -> MetricColumns {
        match self {
            MetricExpectation::MaxAge { warn, fail } => {
                (warn.map(secs_i64), Some(secs_i64(*fail)), None, 0)
            }
            MetricExpectation::By { deadline, grace } => {
                (None, None, Some(deadline.to_string()), secs_i64(*grace))
            }
        }
    }

    pub fn from_columns(
        (warn, fail, by, grace): (Option<i64>, Option<i64>, Option<&str>, i64),
    ) -> Result<Option<Self>, String> {
        match (fail, by) {
            (Some(fail), None) => Ok(Some(MetricExpectation::MaxAge {
                warn: warn
                    .map(|w| stored_period(w, "max_age_warn_secs"))
                    .transpose()?,
                fail: stored_period(fail, "max_age_fail_secs")?,
            })),
            (None, Some(text)) => Ok(Some(MetricExpectation::By {
                deadline: text.parse()?,
                grace: stored_period(grace, "expectation_grace_secs")?,
            })),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err("both max_age_fail_secs and expected_by".into()),
        }
    }
}

/// A duration as operators write it: `"90s"`, `"6h"`, `"1d 2h"`; a bare
/// number of seconds is accepted too.
pub fn parse_period(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::String(s) => humantime::parse_duration(s.trim())
            .map_err(|e| format!("must be a duration such as \"90s\", \"6h\" or \"1d\": {e}"))?,
        Value::Number(n) => n
            .as_u64()
            .map(Duration::from_secs)
            .ok_or("must be a whole number of seconds, or a duration such as \"6h\"")?,
        _ => return Err("must be a duration such as \"90s\", \"6h\" or \"1d\"".into()),
    };
    if d < Duration::from_secs(1) || d > MAX_PERIOD {
        return Err("must be between 1s and 366d".into());
    }
    Ok(d)
}

pub(super) fn period(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
    p: &mut Vec<Problem>,
) -> Option<Duration> {
    let v = obj.get(key)?;
    if v.is_null() {
        return None;
    }
    parse_period(v)
        .map_err(|e| p.push(Problem::new(format!("{path}.{key}"), e)))
        .ok()
}

fn deadline(obj: &Map<String, Value>, path: &str, p: &mut Vec<Problem>) -> Option<Deadline> {
    match obj.get("expected_by")? {
        Value::Null => None,
        Value::String(s) => s
            .parse()
            .map_err(|e| p.push(Problem::new(format!("{path}.expected_by"), e)))
            .ok(),
        _ => {
            p.push(Problem::new(
                format!("{path}.expected_by"),
                "must be a string: a cron schedule and a time zone",
            ));
            None
        }
    }
}

fn present(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).is_some_and(|v| !v.is_null())
}

/// A dataset entry's `expected_every` / `expected_by` and `grace`; `Ok(None)`
/// when it states none. Problems are recorded; `Err` means there were some.
pub fn dataset_expectation(
    obj: &Map<String, Value>,
    path: &str,
    p: &mut Vec<Problem>,
) -> Result<Option<DatasetExpectation>, ()> {
    let before = p.len();
    let every = period(obj, path, "expected_every", p);
    let by = deadline(obj, path, p);
    let grace = period(obj, path, "grace", p);
    let (has_every, has_by) = (present(obj, "expected_every"), present(obj, "expected_by"));
    if has_every && has_by {
        p.push(Problem::new(
            format!("{path}.expected_by"),
            "give expected_every or expected_by, not both",
        ));
    }
    if present(obj, "grace") && !has_every && !has_by {
        p.push(Problem::new(
            format!("{path}.grace"),
            "needs expected_every or expected_by",
        ));
    }
    if p.len() > before {
        return Err(());
    }
    let schedule = match (every, by) {
        (Some(e), None) => Schedule::Every(e),
        (None, Some(d)) => Schedule::By(d),
        _ => return Ok(None),
    };
    Ok(Some(DatasetExpectation {
        schedule,
        grace: grace.unwrap_or_default(),
    }))
}

/// A metric entry's `max_age` (`{warn, fail}`) or `expected_by` and `grace`.
pub fn metric_expectation(
    obj: &Map<String, Value>,
    path: &str,
    p: &mut Vec<Problem>,
) -> Result<Option<MetricExpectation>, ()> {
    let before = p.len();
    let by = deadline(obj, path, p);
    let grace = period(obj, path, "grace", p);
    let max_age = match obj.get("max_age") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => max_age(m, &format!("{path}.max_age"), p),
        Some(_) => {
            p.push(Problem::new(
                format!("{path}.max_age"),
                "must be an object: {warn: <duration>, fail: <duration>}",
            ));
            None
        }
    };
    let (has_age, has_by) = (present(obj, "max_age"), present(obj, "expected_by"));
    if has_age && has_by {
        p.push(Problem::new(
            format!("{path}.expected_by"),
            "give max_age or expected_by, not both",
        ));
    }
    if present(obj, "grace") && !has_by {
        p.push(Problem::new(
            format!("{path}.grace"),
            "needs expected_by (max_age has its own thresholds)",
        ));
    }
    if p.len() > before {
        return Err(());
    }
    Ok(match (max_age, by) {
        (Some((warn, fail)), None) => Some(MetricExpectation::MaxAge { warn, fail }),
        (None, Some(deadline)) => Some(MetricExpectation::By {
            deadline,
            grace: grace.unwrap_or_default(),
        }),
        _ => None,
    })
}

fn max_age(
    m: &Map<String, Value>,
    path: &str,
    p: &mut Vec<Problem>,
) -> Option<(Option<Duration>, Duration)> {
    unknown_keys(m.keys(), path, &["warn", "fail"], p);
    let warn = period(m, path, "warn", p);
    let fail = period(m, path, "fail", p);
    if !present(m, "fail") {
        p.push(Problem::new(
            format!("{path}.fail"),
            "is required: a duration",
        ));
    }
    let fail = fail?;
    if let Some(w) = warn.filter(|w| *w >= fail) {
        p.push(Problem::new(
            format!("{path}.warn"),
            format!(
                "must be less than fail ({} >= {})",
                humantime::format_duration(w),
                humantime::format_duration(fail)
            ),
        ));
        return None;
    }
    Some((warn, fail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn dataset(v: Value) -> Result<Option<DatasetExpectation>, Vec<String>> {
        let mut p = Vec::new();
        dataset_expectation(v.as_object().unwrap(), "datasets[0]", &mut p)
            .map_err(|()| p.iter().map(ToString::to_string).collect())
    }

    fn metric(v: Value) -> Result<Option<MetricExpectation>, Vec<String>> {
        let mut p = Vec::new();
        metric_expectation(v.as_object().unwrap(), "metrics[0]", &mut p)
            .map_err(|()| p.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn dataset_expectations_parse_or_name_their_path() {
        let h = |n: u64| Duration::from_secs(3600 * n);
        let ok: Vec<(Value, Option<DatasetExpectation>)> = vec![
            (json!({}), None),
            (json!({"expected_every": null}), None),
            (
                json!({"expected_every": "1d", "grace": "1h"}),
                Some(DatasetExpectation {
                    schedule: Schedule::Every(h(24)),
                    grace: h(1),
                }),
            ),
            (
                json!({"expected_every": 90}),
                Some(DatasetExpectation {
                    schedule: Schedule::Every(Duration::from_secs(90)),
                    grace: Duration::ZERO,
                }),
            ),
        ];
        for (v, want) in ok {
            assert_eq!(dataset(v.clone()), Ok(want), "{v}");
        }
        let bad: Vec<(Value, &str)> = vec![
            (
                json!({"expected_every": "soon"}),
                "datasets[0].expected_every: must be a duration",
            ),
            (
                json!({"expected_every": "0s"}),
                "datasets[0].expected_every: must be between 1s and 366d",
            ),
            (
                json!({"expected_every": "400d"}),
                "datasets[0].expected_every: must be between 1s and 366d",
            ),
            (
                json!({"expected_every": -5}),
                "datasets[0].expected_every: must be a whole number",
            ),
            (
                json!({"expected_every": true}),
                "datasets[0].expected_every: must be a duration",
            ),
            (
                json!({"grace": "1h"}),
                "datasets[0].grace: needs expected_every or expected_by",
            ),
            (
                json!({"expected_every": "1d", "expected_by": "0 10 * * *"}),
                "datasets[0].expected_by: give expected_every or expected_by, not both",
            ),
            (
                json!({"expected_by": "0 10 * *"}),
                "datasets[0].expected_by: must be five cron fields",
            ),
            (
                json!({"expected_by": "0 25 * * *"}),
                "datasets[0].expected_by: \"0 25 * * *\" is not a cron schedule",
            ),
            (
                json!({"expected_by": "0 10 * * * Mars/Olympus"}),
                "datasets[0].expected_by: unknown time zone \"Mars/Olympus\"",
            ),
            (
                json!({"expected_by": 10}),
                "datasets[0].expected_by: must be a string",
            ),
        ];
        for (v, want) in bad {
            let got = dataset(v.clone()).expect_err(&v.to_string());
            assert!(got.iter().any(|g| g.starts_with(want)), "{v}: {got:?}");
        }
    }

    #[test]
    fn metric_expectations_parse_or_name_their_path() {
        let h = |n: u64| Duration::from_secs(3600 * n);
        assert_eq!(metric(json!({})), Ok(None));
        assert_eq!(
            metric(json!({"max_age": {"warn": "26h", "fail": "2d"}})),
            Ok(Some(MetricExpectation::MaxAge {
                warn: Some(h(26)),
                fail: h(48)
            }))
        );
        assert_eq!(
            metric(json!({"max_age": {"fail": "2d"}})),
            Ok(Some(MetricExpectation::MaxAge {
                warn: None,
                fail: h(48)
            }))
        );
        let Ok(Some(MetricExpectation::By { deadline, grace })) =
            metric(json!({"expected_by": "0 11 * * 1-5 Europe/Madrid", "grace": "30m"}))
        else {
            panic!("a deadline");
        };
        assert_eq!(deadline.to_string(), "0 11 * * 1-5 Europe/Madrid");
        assert_eq!(grace, Duration::from_secs(1800));
        let bad: Vec<(Value, &str)> = vec![
            (
                json!({"max_age": "2d"}),
                "metrics[0].max_age: must be an object",
            ),
            (
                json!({"max_age": {"warn": "1d"}}),
                "metrics[0].max_age.fail: is required",
            ),
            (
                json!({"max_age": {"warn": "3d", "fail": "2d"}}),
                "metrics[0].max_age.warn: must be less than fail",
            ),
            (
                json!({"max_age": {"fail": "2d", "wran": "1d"}}),
                "metrics[0].max_age.wran: unknown key",
            ),
            (
                json!({"max_age": {"fail": "2d"}, "grace": "1h"}),
                "metrics[0].grace: needs expected_by",
            ),
            (
                json!({"max_age": {"fail": "2d"}, "expected_by": "0 10 * * *"}),
                "metrics[0].expected_by: give max_age or expected_by, not both",
            ),
        ];
        for (v, want) in bad {
            let got = metric(v.clone()).expect_err(&v.to_string());
            assert!(got.iter().any(|g| g.starts_with(want)), "{v}: {got:?}");
        }
    }

    #[test]
    fn expectations_print_as_operators_read_them() {
        let d = dataset(json!({"expected_every": "1d", "grace": "90m"}))
            .unwrap()
            .unwrap();
        assert_eq!(d.to_string(), "every 1day, grace 1h 30m");
        let d = dataset(json!({"expected_by": "0 10 * * 1-5"}))
            .unwrap()
            .unwrap();
        assert_eq!(d.to_string(), "by 0 10 * * 1-5 UTC");
        let m = metric(json!({"max_age": {"warn": "26h", "fail": "2d"}}))
            .unwrap()
            .unwrap();
        assert_eq!(m.to_string(), "max age warn 1day 2h, fail 2days");
        let m = metric(json!({"expected_by": "0 11 * * * Europe/Madrid", "grace": "30m"}))
            .unwrap()
            .unwrap();
        assert_eq!(m.to_string(), "by 0 11 * * * Europe/Madrid, grace 30m");
    }

    #[test]
    fn expectations_survive_their_columns() {
        for v in [
            json!({"expected_every": "1d", "grace": "90m"}),
            json!({"expected_by": "0 10 * * 1-5 Europe/Madrid", "grace": "5m"}),
        ] {
            let e = dataset(v).unwrap().unwrap();
            let (every, by, grace) = e.to_columns();
            assert_eq!(
                DatasetExpectation::from_columns(every, by.as_deref(), grace),
                Ok(Some(e))
            );
        }
        for v in [
            json!({"max_age": {"warn": "1h", "fail": "2h"}}),
            json!({"max_age": {"fail": "2h"}}),
            json!({"expected_by": "0 10 * * *", "grace": "5m"}),
        ] {
            let e = metric(v).unwrap().unwrap();
            let (warn, fail, by, grace) = e.to_columns();
            assert_eq!(
                MetricExpectation::from_columns((warn, fail, by.as_deref(), grace)),
                Ok(Some(e))
            );
        }
        assert_eq!(DatasetExpectation::from_columns(None, None, 0), Ok(None));
        assert!(DatasetExpectation::from_columns(Some(-1), None, 0).is_err());
        assert!(MetricExpectation::from_columns((None, None, Some("nonsense"), 0)).is_err());
    }

    #[test]
    fn deadlines_tick_in_their_time_zone() {
        // Buenos Aires is UTC-3 all year: 10:00 there is 13:00 UTC.
        let d: Deadline = "0 10 * * 1-5 America/Argentina/Buenos_Aires"
            .parse()
            .unwrap();
        let cases = [
            // (now, latest tick at or before, tick strictly before)
            (
                "2026-12-02T13:00:00Z",
                "2026-12-02T13:00:00Z",
                "2026-12-01T13:00:00Z",
            ),
            (
                "2026-12-02T12:59:59Z",
                "2026-12-01T13:00:00Z",
                "2026-12-01T13:00:00Z",
            ),
            // Monday 7 December: the last tick before is Friday's.
            (
                "2026-12-07T12:00:00Z",
                "2026-12-04T13:00:00Z",
                "2026-12-04T13:00:00Z",
            ),
        ];
        for (now, at_or_before, before) in cases {
            assert_eq!(d.tick_at_or_before(t(now)), Some(t(at_or_before)), "{now}");
            assert_eq!(d.tick_before(t(now)), Some(t(before)), "{now}");
        }
        let utc: Deadline = "30 6 * * *".parse().unwrap();
        assert_eq!(utc.to_string(), "30 6 * * * UTC");
        assert_eq!(
            utc.tick_at_or_before(t("2026-12-02T06:30:00Z")),
            Some(t("2026-12-02T06:30:00Z"))
        );
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    proptest! {
        /// Any text is a deadline or a message, never a panic; a deadline
        /// prints as text that parses back to itself.
        #[test]
        fn any_text_is_a_deadline_or_a_message(s in "[0-9*/,\\- A-Za-z_]{0,40}") {
            if let Ok(d) = s.parse::<Deadline>() {
                let again: Deadline = d.to_string().parse().unwrap();
                prop_assert_eq!(again, d);
            }
        }

        #[test]
        fn any_text_is_a_period_or_a_message(s in "\\PC{0,20}") {
            if let Ok(d) = parse_period(&Value::String(s)) {
                prop_assert!(d >= Duration::from_secs(1) && d <= MAX_PERIOD);
            }
        }
    }
}
