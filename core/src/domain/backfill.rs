//! What a backfill asks for (docs/semantics.md, "Backfills"): which
//! moments it computes (`points`), which of them it recomputes
//! (`reprocess`), how many runs it keeps in flight; the idempotency key
//! that makes the same request one backfill; the backfill's status
//! machine and its progress. The plan itself is `backfill_plan`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::expectation::Deadline;

/// The most points one backfill may have.
pub const MAX_POINTS: usize = 100_000;
/// The most runs a backfill may keep in flight.
pub const MAX_IN_FLIGHT: i32 = 1000;
pub const DEFAULT_MAX_IN_FLIGHT: i32 = 4;

/// Which moments of the range a backfill computes.
#[derive(Debug, Clone, PartialEq)]
pub enum PointSpec {
    /// The moments the metric's past runs were requested.
    Runs,
    /// Each moment one of its inputs was updated.
    Updates,
    /// The ticks of a schedule (`daily` is midnight UTC).
    Schedule { text: String, cron: Deadline },
}

impl FromStr for PointSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "runs" => Ok(PointSpec::Runs),
            "updates" => Ok(PointSpec::Updates),
            "daily" => Ok(PointSpec::Schedule {
                text: "daily".into(),
                cron: "0 0 * * *".parse()?,
            }),
            text => {
                let cron = text.parse().map_err(|e| {
                    format!("points must be runs, updates, daily or a cron schedule (five fields and an optional time zone): {e}")
                })?;
                Ok(PointSpec::Schedule {
                    text: text.to_string(),
                    cron,
                })
            }
        }
    }
}

impl fmt::Display for PointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointSpec::Runs => f.write_str("runs"),
            PointSpec::Updates => f.write_str("updates"),
            PointSpec::Schedule { text, .. } => f.write_str(text),
        }
    }
}

/// What the plan found at a point: the output a reader saw at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Found {
    /// No run had produced an output for that moment.
    Missing,
    /// The run for that moment failed its last attempt.
    Failed,
    /// Its output came from another definition version or other inputs.
    Stale,
    /// Its output is the current definition over the inputs of that moment.
    Current,
    /// The metric could not have run then: an input had no update yet, or
    /// its newest was older than `required_days` (the live rule).
    Unready,
}

impl Found {
    pub const ALL: [Found; 5] = [
        Found::Missing,
        Found::Failed,
        Found::Stale,
        Found::Current,
        Found::Unready,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Found::Missing => "missing",
            Found::Failed => "failed",
            Found::Stale => "stale",
            Found::Current => "current",
            Found::Unready => "unready",
        }
    }
}

impl FromStr for Found {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Found::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown plan status {s:?}"))
    }
}

/// Which points a backfill recomputes; each mode takes the previous one's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reprocess {
    /// Points without an output.
    Missing,
    /// And points whose run failed.
    Failed,
    /// And points computed with another definition version or other inputs.
    Stale,
    /// Every point its inputs allow, current ones too.
    All,
}

impl Reprocess {
    pub fn as_str(self) -> &'static str {
        match self {
            Reprocess::Missing => "missing",
            Reprocess::Failed => "failed",
            Reprocess::Stale => "stale",
            Reprocess::All => "all",
        }
    }

    /// Whether a point the plan found so is recomputed.
    pub fn selects(self, found: Found) -> bool {
        let rank = |f: Found| match f {
            Found::Missing => 0,
            Found::Failed => 1,
            Found::Stale => 2,
            Found::Current => 3,
            Found::Unready => 4,
        };
        let reach = match self {
            Reprocess::Missing => 0,
            Reprocess::Failed => 1,
            Reprocess::Stale => 2,
            Reprocess::All => 3,
        };
        rank(found) <= reach
    }
}

impl FromStr for Reprocess {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "missing" => Ok(Reprocess::Missing),
            "failed" => Ok(Reprocess::Failed),
            "stale" => Ok(Reprocess::Stale),
            "all" => Ok(Reprocess::All),
            other => Err(format!(
                "reprocess must be missing, failed, stale or all, got {other:?}"
            )),
        }
    }
}

/// A backfill as asked for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Metric codes, sorted and without repeats.
    pub metrics: Vec<String>,
    pub downstream: bool,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub points: PointSpec,
    pub reprocess: Reprocess,
    pub max_in_flight: i32,
    /// The request as written, moments that are ages (`90d`, `now`) kept as
    /// text: what [`request_key`] hashes.
    pub spelled: String,
}

/// A request as written (CLI flags, API body), before it is checked.
#[derive(Debug, Clone, Default)]
pub struct Asked<'a> {
    pub metrics: Vec<&'a str>,
    pub downstream: bool,
    pub from: &'a str,
    pub to: &'a str,
    pub points: Option<&'a str>,
    pub reprocess: Option<&'a str>,
    pub max_in_flight: Option<i64>,
}

/// Checks a request; each problem names its field.
pub fn request(a: &Asked<'_>, now: DateTime<Utc>) -> Result<Request, String> {
    let mut metrics: Vec<String> = a
        .metrics
        .iter()
        .flat_map(|m| m.split(','))
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    metrics.sort();
    metrics.dedup();
    if metrics.is_empty() {
        return Err("metric: name at least one metric code".into());
    }
    let from = moment(a.from, now).map_err(|e| format!("from: {e}"))?;
    let to = moment(a.to, now).map_err(|e| format!("to: {e}"))?;
    if to < from {
        return Err(format!("to: {to} is before from ({from})"));
    }
    if to > now {
        return Err(format!(
            "to: {to} is in the future; a backfill computes the past"
        ));
    }
    let points: PointSpec = a
        .points
        .unwrap_or("runs")
        .parse()
        .map_err(|e| format!("points: {e}"))?;
    let reprocess: Reprocess = a
        .reprocess
        .unwrap_or("missing")
        .parse()
        .map_err(|e| format!("reprocess: {e}"))?;
    let max_in_flight = a.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT.into());
    if !(1..=i64::from(MAX_IN_FLIGHT)).contains(&max_in_flight) {
        return Err(format!(
            "max-in-flight: must be between 1 and {MAX_IN_FLIGHT}, got {max_in_flight}"
        ));
    }
    let spell = |text: &str, t: DateTime<Utc>| {
        if DateTime::parse_from_rfc3339(text.trim()).is_ok()
            || chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").is_ok()
        {
            t.timestamp_micros().to_string()
        } else {
            text.trim().to_string()
        }
    };
    let spelled = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        metrics.join(","),
        a.downstream,
        spell(a.from, from),
        spell(a.to, to),
        points,
        reprocess.as_str(),
        max_in_flight
    );
    Ok(Request {
        metrics,
        downstream: a.downstream,
        from,
        to,
        points,
        reprocess,
        max_in_flight: max_in_flight as i32,
        spelled,
    })
}

/// A moment as written: RFC 3339 (`2026-01-01T00:00:00Z`), a date
/// (`2026-01-01`, midnight UTC), `now`, or an age (`90d`, `6h`: that long
/// before now).
pub fn moment(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let age = humantime::parse_duration(s).map_err(|_| {
        format!("{s:?} is not a moment: an RFC 3339 time, a date (2026-01-31), now, or an age such as 90d")
    })?;
    chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| now.checked_sub_signed(age))
        .ok_or_else(|| format!("{s:?} reaches too far back"))
}

/// The key of a request as written: the same request (whatever the order
/// of its metrics or how an absolute moment is written; an age such as
/// `90d` as written) made again while its backfill runs is that backfill.
pub fn request_key(r: &Request) -> String {
    hex::encode(Sha256::digest(r.spelled.as_bytes()))
}

/// A backfill's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    Paused,
    Canceled,
    Completed,
    /// Finished with at least one point that failed its last attempt.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Canceled => "canceled",
            Status::Completed => "completed",
            Status::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, Status::Canceled | Status::Completed | Status::Failed)
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Status::Running,
            Status::Paused,
            Status::Canceled,
            Status::Completed,
            Status::Failed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| format!("unknown backfill status {s:?}"))
    }
}

/// What an operator does to a backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Cancel => "cancel",
        }
    }

    /// The status it moves `from` to, or why it cannot.
    pub fn apply(self, from: Status) -> Result<Status, String> {
        match (self, from) {
            (Control::Pause, Status::Running) => Ok(Status::Paused),
            (Control::Resume, Status::Paused) => Ok(Status::Running),
            (Control::Cancel, Status::Running | Status::Paused) => Ok(Status::Canceled),
            (c, s) => Err(format!(
                "cannot {} a backfill that is {}",
                c.as_str(),
                s.as_str()
            )),
        }
    }
}

impl FromStr for Control {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pause" => Ok(Control::Pause),
            "resume" => Ok(Control::Resume),
            "cancel" => Ok(Control::Cancel),
            other => Err(format!("unknown action {other:?}: pause, resume or cancel")),
        }
    }
}

/// A backfill's points by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Computed, or left as they were (current, unready).
    pub done: i64,
    pub running: i64,
    pub failed: i64,
    /// Not requested yet.
    pub left: i64,
    pub canceled: i64,
}

impl Counts {
    pub fn total(&self) -> i64 {
        self.done + self.running + self.failed + self.left + self.canceled
    }
}

/// Progress as people read it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Progress {
    pub counts: Counts,
    /// Points finished per minute over the recent window.
    pub per_minute: f64,
    /// At that pace; `None` when nothing finished recently or nothing is left.
    pub eta_secs: Option<u64>,
    /// 0–100.
    pub percent: f64,
}

/// Progress from the counts and how many points finished in the last `window`.
pub fn progress(counts: Counts, finished_recently: i64, window: Duration) -> Progress {
    let minutes = window.as_secs_f64() / 60.0;
    let per_minute = if minutes > 0.0 {
        finished_recently as f64 / minutes
    } else {
        0.0
    };
    let left = counts.left + counts.running;
    let eta_secs =
        (per_minute > 0.0 && left > 0).then(|| (left as f64 / per_minute * 60.0).ceil() as u64);
    let total = counts.total();
    let settled = counts.done + counts.failed + counts.canceled;
    let percent = if total == 0 {
        100.0
    } else {
        settled as f64 * 100.0 / total as f64
    };
    Progress {
        counts,
        per_minute,
        eta_secs,
        percent,
    }
}

/// `[#####-----]` of `width` cells.
pub fn bar(percent: f64, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn each_reprocess_mode_takes_the_previous_ones() {
        use Found::*;
        let cases = [
            (Reprocess::Missing, [true, false, false, false, false]),
            (Reprocess::Failed, [true, true, false, false, false]),
            (Reprocess::Stale, [true, true, true, false, false]),
            (Reprocess::All, [true, true, true, true, false]),
        ];
        for (mode, want) in cases {
            let got: Vec<bool> = [Missing, Failed, Stale, Current, Unready]
                .iter()
                .map(|f| mode.selects(*f))
                .collect();
            assert_eq!(got, want, "{mode:?}");
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let now = t("2026-12-01T00:00:00Z");
        let ok = Asked {
            metrics: vec!["m.b, m.a", "m.a"],
            from: "2026-11-01",
            to: "now",
            ..Default::default()
        };
        let r = request(&ok, now).unwrap();
        assert_eq!(r.metrics, ["m.a", "m.b"]);
        assert_eq!(r.from, t("2026-11-01T00:00:00Z"));
        assert_eq!(r.to, now);
        assert_eq!(r.points, PointSpec::Runs);
        assert_eq!(r.reprocess, Reprocess::Missing);
        assert_eq!(r.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        let aged = Asked {
            from: "30d",
            ..ok.clone()
        };
        assert_eq!(request(&aged, now).unwrap().from, t("2026-11-01T00:00:00Z"));
        let bad: [(Asked, &str); 8] = [
            (
                Asked {
                    metrics: vec![" , "],
                    ..ok.clone()
                },
                "metric:",
            ),
            (
                Asked {
                    from: "yesterday",
                    ..ok.clone()
                },
                "from: \"yesterday\" is not a moment",
            ),
            (
                Asked {
                    to: "2026-10-01",
                    ..ok.clone()
                },
                "to: 2026-10-01 00:00:00 UTC is before from",
            ),
            (
                Asked {
                    to: "2027-01-01",
                    ..ok.clone()
                },
                "to: 2027-01-01 00:00:00 UTC is in the future",
            ),
            (
                Asked {
                    points: Some("hourly"),
                    ..ok.clone()
                },
                "points: points must be runs, updates, daily or a cron",
            ),
            (
                Asked {
                    reprocess: Some("some"),
                    ..ok.clone()
                },
                "reprocess: reprocess must be missing",
            ),
            (
                Asked {
                    max_in_flight: Some(0),
                    ..ok.clone()
                },
                "max-in-flight: must be between 1 and 1000, got 0",
            ),
            (
                Asked {
                    from: "99999999d",
                    ..ok.clone()
                },
                "from: \"99999999d\" reaches too far back",
            ),
        ];
        for (asked, want) in bad {
            let e = request(&asked, now).unwrap_err();
            assert!(e.starts_with(want), "{e} / {want}");
        }
    }

    #[test]
    fn the_same_request_written_differently_has_one_key() {
        let now = t("2026-12-01T00:00:00Z");
        let a = Asked {
            metrics: vec!["m.a,m.b"],
            from: "2026-11-01",
            to: "2026-11-30T00:00:00Z",
            ..Default::default()
        };
        let b = Asked {
            metrics: vec!["m.b", "m.a"],
            from: "2026-11-01T00:00:00+00:00",
            to: "2026-11-30",
            ..Default::default()
        };
        let (ra, rb) = (request(&a, now).unwrap(), request(&b, now).unwrap());
        assert_eq!(request_key(&ra), request_key(&rb));
        let other = Asked {
            reprocess: Some("all"),
            ..a.clone()
        };
        assert_ne!(
            request_key(&ra),
            request_key(&request(&other, now).unwrap())
        );
        // An age is the same request a moment later.
        let aged = Asked {
            from: "30d",
            ..a.clone()
        };
        let later = now + chrono::Duration::seconds(5);
        assert_eq!(
            request_key(&request(&aged, now).unwrap()),
            request_key(&request(&aged, later).unwrap())
        );
    }

    #[test]
    fn controls_move_only_from_where_they_can() {
        use Control::*;
        use Status::*;
        let cases = [
            (Pause, Running, Ok(Paused)),
            (Resume, Paused, Ok(Running)),
            (Cancel, Running, Ok(Canceled)),
            (Cancel, Paused, Ok(Canceled)),
            (Pause, Paused, Err("cannot pause a backfill that is paused")),
            (
                Resume,
                Running,
                Err("cannot resume a backfill that is running"),
            ),
            (
                Cancel,
                Completed,
                Err("cannot cancel a backfill that is completed"),
            ),
            (
                Resume,
                Canceled,
                Err("cannot resume a backfill that is canceled"),
            ),
        ];
        for (c, from, want) in cases {
            assert_eq!(c.apply(from), want.map_err(String::from), "{c:?} {from:?}");
        }
    }

    #[test]
    fn progress_says_pace_and_time_left() {
        let counts = Counts {
            done: 30,
            running: 3,
            failed: 1,
            left: 16,
            canceled: 0,
        };
        let p = progress(counts, 20, Duration::from_secs(600));
        assert_eq!(p.per_minute, 2.0);
        assert_eq!(p.eta_secs, Some(570));
        assert_eq!(p.percent, 62.0);
        assert_eq!(bar(p.percent, 10), "[######----]");
        assert_eq!(progress(counts, 0, Duration::from_secs(600)).eta_secs, None);
        assert_eq!(
            progress(Counts::default(), 0, Duration::from_secs(60)).percent,
            100.0
        );
        assert_eq!(bar(100.0, 4), "[####]");
        assert_eq!(bar(-3.0, 2), "[--]");
    }

    proptest::proptest! {
        /// Whatever is written, a request is checked or refused with a
        /// message naming its field; nothing panics.
        #[test]
        fn any_request_text_is_checked_or_refused(
            metric in "\\PC{0,12}",
            from in "\\PC{0,24}",
            to in "\\PC{0,24}",
            points in "\\PC{0,24}",
            reprocess in "\\PC{0,8}",
            max in proptest::prelude::any::<i64>(),
        ) {
            let now = t("2026-12-01T00:00:00Z");
            let asked = Asked {
                metrics: vec![&metric],
                downstream: false,
                from: &from,
                to: &to,
                points: Some(&points),
                reprocess: Some(&reprocess),
                max_in_flight: Some(max),
            };
            match request(&asked, now) {
                Ok(r) => {
                    proptest::prop_assert!(r.from <= r.to && r.to <= now);
                    proptest::prop_assert!((1..=MAX_IN_FLIGHT).contains(&r.max_in_flight));
                }
                Err(e) => {
                    let field = ["metric:", "from:", "to:", "points:", "reprocess:", "max-in-flight:"];
                    proptest::prop_assert!(field.iter().any(|f| e.starts_with(f)), "{}", e);
                }
            }
        }

        /// Moments near the edges of time are refused, not overflowed.
        #[test]
        fn ages_and_dates_never_overflow(n in proptest::prelude::any::<u64>(), unit in "[smhdwy]") {
            let now = t("2026-12-01T00:00:00Z");
            let _ = moment(&format!("{n}{unit}"), now);
            let _ = moment(&format!("{}-01-01", n % 400_000), now);
        }
    }

    #[test]
    fn points_are_runs_updates_daily_or_a_cron() {
        assert_eq!("runs".parse::<PointSpec>().unwrap(), PointSpec::Runs);
        assert_eq!("updates".parse::<PointSpec>().unwrap(), PointSpec::Updates);
        assert_eq!("daily".parse::<PointSpec>().unwrap().to_string(), "daily");
        let c: PointSpec = "0 6 * * 1-5 Europe/Madrid".parse().unwrap();
        assert_eq!(c.to_string(), "0 6 * * 1-5 Europe/Madrid");
        assert!("every hour".parse::<PointSpec>().is_err());
    }
}
