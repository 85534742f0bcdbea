//! Freshness states (docs/semantics.md, "Freshness expectations"): whether a
//! dataset is on time or late, and whether a metric's output passes, warns
//! or fails its expectation, as pure functions of (expectation, what last
//! arrived, since when the expectation holds, now); and which changes of
//! state are alerts. The clock is an argument: the sweep passes the
//! database's, tests pass any.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::alert::AlertType;
use super::expectation::{DatasetExpectation, MetricExpectation, Schedule};
use super::ids::DatasetId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatasetState {
    OnTime,
    Late,
    /// Expected, but nothing arrived yet and no deadline has passed.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricState {
    Pass,
    Warn,
    Fail,
    /// Expected, but no run succeeded yet and no threshold has passed.
    Unknown,
}

macro_rules! states {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }

            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|x| x.as_str() == s)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s).ok_or_else(|| {
                    let all: Vec<&str> = Self::ALL.iter().map(|x| x.as_str()).collect();
                    format!("must be one of {}", all.join(", "))
                })
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states!(DatasetState { OnTime => "on_time", Late => "late", Unknown => "unknown" });
states!(MetricState { Pass => "pass", Warn => "warn", Fail => "fail", Unknown => "unknown" });

/// A state, and since when the rule says it holds when it is a bad one
/// (late, warn, fail): the moment the deadline or threshold passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessed<S> {
    pub state: S,
    pub overdue_since: Option<DateTime<Utc>>,
}

fn secs(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When what `schedule` expects became overdue, if it is at `now`.
/// `last` is the newest arrival; `since` is when the expectation was set
/// (windows that closed before it are not judged).
fn overdue(
    schedule: &Schedule,
    grace: Duration,
    last: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Every(every) => {
            let due = last
                .unwrap_or(since)
                .checked_add_signed(secs(*every + grace))?;
            (now >= due).then_some(due)
        }
        Schedule::By(deadline) => {
            // The latest tick whose grace has run out, and the window
            // before it, in which one arrival was expected.
            let tick = deadline.tick_at_or_before(now.checked_sub_signed(secs(grace))?)?;
            let opened = deadline.tick_before(tick);
            if opened.is_some_and(|o| since > o) {
                return None;
            }
            let arrived_in_time = match (last, opened) {
                (Some(l), Some(o)) => l > o,
                (Some(_), None) => true,
                (None, _) => false,
            };
            (!arrived_in_time).then(|| tick.checked_add_signed(secs(grace)).unwrap_or(tick))
        }
    }
}

/// A dataset's state at `now`, given its newest update's arrival.
pub fn assess_dataset(
    e: &DatasetExpectation,
    last_update: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Assessed<DatasetState> {
    match overdue(&e.schedule, e.grace, last_update, since, now) {
        Some(at) => Assessed {
            state: DatasetState::Late,
            overdue_since: Some(at),
        },
        None => Assessed {
            state: if last_update.is_some() {
                DatasetState::OnTime
            } else {
                DatasetState::Unknown
            },
            overdue_since: None,
        },
    }
}

/// A metric's state at `now`, given when its newest succeeded run ended.
pub fn assess_metric(
    e: &MetricExpectation,
    last_success: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Assessed<MetricState> {
    let good = if last_success.is_some() {
        MetricState::Pass
    } else {
        MetricState::Unknown
    };
    let (state, overdue_since) = match e {
        MetricExpectation::MaxAge { warn, fail } => {
            let from = last_success.unwrap_or(since);
            let past = |d: Duration| from.checked_add_signed(secs(d)).filter(|t| now >= *t);
            match (past(*fail), warn.and_then(past)) {
                (Some(t), _) => (MetricState::Fail, Some(t)),
                (None, Some(t)) => (MetricState::Warn, Some(t)),
                (None, None) => (good, None),
            }
        }
        MetricExpectation::By { deadline, grace } => {
            let schedule = Schedule::By(deadline.clone());
            match overdue(&schedule, *grace, last_success, since, now) {
                Some(t) => (MetricState::Fail, Some(t)),
                None => (good, None),
            }
        }
    };
    Assessed {
        state,
        overdue_since,
    }
}

/// What a metric that warns or fails is waiting on: its inputs that are
/// late, and those its open pending run still lacks. Sorted, once each.
pub fn blocking(
    state: MetricState,
    late_inputs: &[DatasetId],
    missing_inputs: &[DatasetId],
) -> Vec<DatasetId> {
    if !matches!(state, MetricState::Warn | MetricState::Fail) {
        return Vec::new();
    }
    let mut out: Vec<DatasetId> = late_inputs.iter().chain(missing_inputs).cloned().collect();
    out.sort();
    out.dedup();
    out
}

/// The alert a dataset's change of state raises, if any: becoming late,
/// and recovering from it. A first assessment starts from `Unknown`.
pub fn dataset_alert(from: DatasetState, to: DatasetState) -> Option<AlertType> {
    match (from, to) {
        (DatasetState::Late, DatasetState::Late) => None,
        (_, DatasetState::Late) => Some(AlertType::DatasetLate),
        (DatasetState::Late, DatasetState::OnTime) => Some(AlertType::DatasetOnTime),
        _ => None,
    }
}

/// Whether a metric's change of state is an alert: every change but the
/// first good news (a metric that never ran passing for the first time).
pub fn metric_alert(from: MetricState, to: MetricState) -> bool {
    from != to && !(from == MetricState::Unknown && to == MetricState::Pass)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::expectation::Deadline;

    pub(crate) fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    pub(crate) const H: u64 = 3600;

    pub(crate) fn every(hours: u64, grace_hours: u64) -> DatasetExpectation {
        DatasetExpectation {
            schedule: Schedule::Every(Duration::from_secs(hours * H)),
            grace: Duration::from_secs(grace_hours * H),
        }
    }

    pub(crate) fn by(cron: &str, grace_hours: u64) -> DatasetExpectation {
        DatasetExpectation {
            schedule: Schedule::By(cron.parse::<Deadline>().unwrap()),
            grace: Duration::from_secs(grace_hours * H),
        }
    }

    #[test]
    fn datasets_are_late_when_nothing_arrived_by_the_deadline() {
        use DatasetState::*;
        let set = t("2026-11-01T00:00:00Z");
        let weekdays_at_10 = "0 10 * * 1-5 UTC";
        // (expectation, last update, now, state, late since)
        // (expectation, last update, now, state, late since)
        type Case<'a> = (
            DatasetExpectation,
            Option<&'a str>,
            &'a str,
            DatasetState,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                every(24, 1),
                Some("2026-12-01T09:00:00Z"),
                "2026-12-02T09:59:59Z",
                OnTime,
                None,
            ),
            (
                every(24, 1),
                Some("2026-12-01T09:00:00Z"),
                "2026-12-02T10:00:00Z",
                Late,
                Some("2026-12-02T10:00:00Z"),
            ),
            (
                every(24, 0),
                Some("2026-12-01T09:00:00Z"),
                "2026-12-02T09:00:00Z",
                Late,
                Some("2026-12-02T09:00:00Z"),
            ),
            // Never arrived: judged from when the expectation was set.
            (every(24, 0), None, "2026-11-01T12:00:00Z", Unknown, None),
            (
                every(24, 0),
                None,
                "2026-11-02T00:00:00Z",
                Late,
                Some("2026-11-02T00:00:00Z"),
            ),
            // Wednesday 2 December at 10:00: Tuesday's update is in the window.
            (
                by(weekdays_at_10, 0),
                Some("2026-12-01T11:00:00Z"),
                "2026-12-02T10:00:00Z",
                OnTime,
                None,
            ),
            // One that arrived before Tuesday's tick belongs to the window before.
            (
                by(weekdays_at_10, 0),
                Some("2026-12-01T09:59:00Z"),
                "2026-12-02T10:00:00Z",
                Late,
                Some("2026-12-02T10:00:00Z"),
            ),
            // Within the grace it is not yet late.
            (
                by(weekdays_at_10, 2),
                Some("2026-12-01T09:59:00Z"),
                "2026-12-02T11:59:00Z",
                OnTime,
                None,
            ),
            (
                by(weekdays_at_10, 2),
                Some("2026-12-01T09:59:00Z"),
                "2026-12-02T12:00:00Z",
                Late,
                Some("2026-12-02T12:00:00Z"),
            ),
            // Arriving late ends it at once.
            (
                by(weekdays_at_10, 0),
                Some("2026-12-02T10:30:00Z"),
                "2026-12-02T10:31:00Z",
                OnTime,
                None,
            ),
            // The weekend expects nothing: Monday 09:00 still judges Friday's window.
            (
                by(weekdays_at_10, 0),
                Some("2026-12-03T12:00:00Z"),
                "2026-12-07T09:00:00Z",
                OnTime,
                None,
            ),
            (
                by(weekdays_at_10, 0),
                Some("2026-12-03T12:00:00Z"),
                "2026-12-07T10:00:00Z",
                Late,
                Some("2026-12-07T10:00:00Z"),
            ),
        ];
        for (i, (e, last, now, state, late_since)) in cases.into_iter().enumerate() {
            let got = assess_dataset(&e, last.map(t), set, t(now));
            assert_eq!(
                got,
                Assessed {
                    state,
                    overdue_since: late_since.map(t)
                },
                "case {i}: {e:?} last {last:?} at {now}"
            );
        }
    }

    #[test]
    fn windows_closed_before_the_expectation_was_set_are_not_judged() {
        let e = by("0 10 * * * UTC", 0);
        // Set at 09:00 on the 2nd: the window (1st 10:00, 2nd 10:00] began
        // before it, so the 2nd's tick finds nothing to blame.
        let set = t("2026-12-02T09:00:00Z");
        let at = |now: &str| assess_dataset(&e, None, set, t(now)).state;
        assert_eq!(at("2026-12-02T10:00:00Z"), DatasetState::Unknown);
        assert_eq!(at("2026-12-03T10:00:00Z"), DatasetState::Late);
    }

    #[test]
    fn metrics_warn_then_fail_as_their_output_ages() {
        use MetricState::*;
        let set = t("2026-11-01T00:00:00Z");
        let age = MetricExpectation::MaxAge {
            warn: Some(Duration::from_secs(26 * H)),
            fail: Duration::from_secs(48 * H),
        };
        let fail_only = MetricExpectation::MaxAge {
            warn: None,
            fail: Duration::from_secs(48 * H),
        };
        let by_11 = MetricExpectation::By {
            deadline: "0 11 * * * UTC".parse().unwrap(),
            grace: Duration::from_secs(H),
        };
        type Case<'a> = (
            &'a MetricExpectation,
            Option<&'a str>,
            &'a str,
            MetricState,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                &age,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-02T01:59:59Z",
                Pass,
                None,
            ),
            (
                &age,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-02T02:00:00Z",
                Warn,
                Some("2026-12-02T02:00:00Z"),
            ),
            (
                &age,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-03T00:00:00Z",
                Fail,
                Some("2026-12-03T00:00:00Z"),
            ),
            (
                &fail_only,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-02T12:00:00Z",
                Pass,
                None,
            ),
            (&age, None, "2026-11-01T01:00:00Z", Unknown, None),
            (
                &age,
                None,
                "2026-11-02T03:00:00Z",
                Warn,
                Some("2026-11-02T02:00:00Z"),
            ),
            (
                &by_11,
                Some("2026-12-01T11:30:00Z"),
                "2026-12-02T11:59:00Z",
                Pass,
                None,
            ),
            (
                &by_11,
                Some("2026-12-01T10:30:00Z"),
                "2026-12-02T12:00:00Z",
                Fail,
                Some("2026-12-02T12:00:00Z"),
            ),
        ];
        for (i, (e, last, now, state, since)) in cases.into_iter().enumerate() {
            let got = assess_metric(e, last.map(t), set, t(now));
            assert_eq!(
                got,
                Assessed {
                    state,
                    overdue_since: since.map(t)
                },
                "case {i}"
            );
        }
    }

    #[test]
    fn a_failing_metric_names_what_blocks_it() {
        let ids = |v: &[&str]| v.iter().map(|s| DatasetId::new(*s)).collect::<Vec<_>>();
        let cases = [
            (MetricState::Fail, ids(&["d2"]), ids(&[]), ids(&["d2"])),
            (
                MetricState::Warn,
                ids(&["d3"]),
                ids(&["d1", "d3"]),
                ids(&["d1", "d3"]),
            ),
            (MetricState::Pass, ids(&["d2"]), ids(&["d1"]), ids(&[])),
            (MetricState::Unknown, ids(&["d2"]), ids(&[]), ids(&[])),
        ];
        for (state, late, missing, want) in cases {
            assert_eq!(blocking(state, &late, &missing), want, "{state}");
        }
    }

    #[test]
    fn alerts_are_raised_once_per_change() {
        use DatasetState as D;
        let cases = [
            (D::Unknown, D::Late, Some(AlertType::DatasetLate)),
            (D::OnTime, D::Late, Some(AlertType::DatasetLate)),
            (D::Late, D::Late, None),
            (D::Late, D::OnTime, Some(AlertType::DatasetOnTime)),
            (D::Unknown, D::OnTime, None),
            (D::OnTime, D::OnTime, None),
            (D::Late, D::Unknown, None),
        ];
        for (from, to, want) in cases {
            assert_eq!(dataset_alert(from, to), want, "{from} → {to}");
        }
        use MetricState as M;
        let metric_cases = [
            (M::Unknown, M::Pass, false),
            (M::Pass, M::Pass, false),
            (M::Pass, M::Warn, true),
            (M::Warn, M::Fail, true),
            (M::Fail, M::Pass, true),
            (M::Unknown, M::Fail, true),
            (M::Pass, M::Unknown, true),
        ];
        for (from, to, want) in metric_cases {
            assert_eq!(metric_alert(from, to), want, "{from} → {to}");
        }
    }

    #[test]
    fn states_read_and_print_as_their_wire_names() {
        for s in DatasetState::ALL {
            assert_eq!(DatasetState::parse(s.as_str()), Some(*s));
        }
        for s in MetricState::ALL {
            assert_eq!(MetricState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(DatasetState::OnTime.to_string(), "on_time");
        assert_eq!(MetricState::parse("late"), None);
    }
}
