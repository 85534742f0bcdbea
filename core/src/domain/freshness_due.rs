//! When a freshness state can next change on its own (docs/semantics.md,
//! "Freshness expectations"): the sweep judges an entity again only at that
//! moment, or earlier when a fact it depends on changes (an update, a
//! success, a new expectation). Pure functions of (expectation, what last
//! arrived, since when the expectation holds, now), like the states they
//! predict: `None` means the clock alone never changes the state again.
//!
//! Each answer is the first instant strictly after `now` at which
//! `freshness_state::assess_*` can answer differently than at `now`; an
//! answer too early costs one judgement, one too late would lose a
//! transition, so the tests check both sides of every answer.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::expectation::{DatasetExpectation, Deadline, MetricExpectation, Schedule};

fn secs(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The first tick-plus-grace strictly after `now`: the instants at which a
/// scheduled expectation's judged window moves.
fn next_window(deadline: &Deadline, grace: Duration, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let tick = deadline.tick_after(now.checked_sub_signed(secs(grace))?)?;
    tick.checked_add_signed(secs(grace))
}

/// The first of `instants` strictly after `now`.
fn first_after(
    now: DateTime<Utc>,
    instants: impl IntoIterator<Item = Option<DateTime<Utc>>>,
) -> Option<DateTime<Utc>> {
    instants.into_iter().flatten().filter(|t| *t > now).min()
}

/// When a dataset's state can next change with no new update.
pub fn dataset_next_check(
    e: &DatasetExpectation,
    last_update: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match &e.schedule {
        Schedule::Every(every) => {
            let due = last_update
                .unwrap_or(since)
                .checked_add_signed(secs(*every + e.grace));
            first_after(now, [due])
        }
        Schedule::By(deadline) => next_window(deadline, e.grace, now),
    }
}

/// When a metric's state can next change with no new success.
pub fn metric_next_check(
    e: &MetricExpectation,
    last_success: Option<DateTime<Utc>>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match e {
        MetricExpectation::MaxAge { warn, fail } => {
            let from = last_success.unwrap_or(since);
            let at = |d: Duration| from.checked_add_signed(secs(d));
            first_after(now, [warn.and_then(at), at(*fail)])
        }
        MetricExpectation::By { deadline, grace } => next_window(deadline, *grace, now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::freshness_state::tests::{by, every, t, H};
    use crate::domain::freshness_state::{assess_dataset, assess_metric};

    const SET: &str = "2026-11-01T00:00:00Z";

    fn max_age(warn_hours: Option<u64>, fail_hours: u64) -> MetricExpectation {
        MetricExpectation::MaxAge {
            warn: warn_hours.map(|h| Duration::from_secs(h * H)),
            fail: Duration::from_secs(fail_hours * H),
        }
    }

    /// The answer is right when the state holds from `now` up to just
    /// before it, and differs at it (a `None` holds for a year).
    fn check_dataset(e: &DatasetExpectation, last: Option<DateTime<Utc>>, now: DateTime<Utc>) {
        let at = |when| assess_dataset(e, last, t(SET), when).state;
        let next = dataset_next_check(e, last, t(SET), now);
        let until = next.unwrap_or(now + chrono::Duration::days(366));
        let mut probe = now;
        while probe < until {
            assert_eq!(
                at(probe),
                at(now),
                "{e:?} changed at {probe} before {next:?}"
            );
            probe += chrono::Duration::minutes(7);
        }
        assert_eq!(at(until - chrono::Duration::seconds(1)), at(now));
        if let Some(n) = next {
            assert!(n > now, "{e:?}: {n} is not after {now}");
        }
    }

    #[test]
    fn datasets_are_looked_at_again_when_their_window_moves() {
        let weekdays = by("0 10 * * 1-5 UTC", 0);
        let weekdays_grace = by("0 10 * * 1-5 UTC", 2);
        // (expectation, last update, now, next check)
        type Case<'a> = (
            &'a DatasetExpectation,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let hourly = every(24, 1);
        let cases: Vec<Case> = vec![
            // On time: due when every + grace has run since the last update.
            (
                &hourly,
                Some("2026-12-01T09:00:00Z"),
                "2026-12-01T12:00:00Z",
                Some("2026-12-02T10:00:00Z"),
            ),
            // Nothing yet: from when the expectation was set.
            (
                &hourly,
                None,
                "2026-11-01T03:00:00Z",
                Some("2026-11-02T01:00:00Z"),
            ),
            // Late: only a new update ends it.
            (
                &hourly,
                Some("2026-12-01T09:00:00Z"),
                "2026-12-02T10:00:00Z",
                None,
            ),
            (
                &hourly,
                Some("2026-12-01T09:00:00Z"),
                "2026-12-09T00:00:00Z",
                None,
            ),
            // A schedule moves its window at each tick (plus grace), late or not.
            (
                &weekdays,
                Some("2026-12-01T11:00:00Z"),
                "2026-12-02T09:00:00Z",
                Some("2026-12-02T10:00:00Z"),
            ),
            (
                &weekdays,
                Some("2026-12-01T11:00:00Z"),
                "2026-12-02T10:00:00Z",
                Some("2026-12-03T10:00:00Z"),
            ),
            // Friday's tick, then Monday's.
            (
                &weekdays,
                None,
                "2026-12-04T10:30:00Z",
                Some("2026-12-07T10:00:00Z"),
            ),
            (
                &weekdays_grace,
                None,
                "2026-12-02T11:00:00Z",
                Some("2026-12-02T12:00:00Z"),
            ),
            (
                &weekdays_grace,
                None,
                "2026-12-02T12:00:00Z",
                Some("2026-12-03T12:00:00Z"),
            ),
        ];
        for (i, (e, last, now, next)) in cases.into_iter().enumerate() {
            let last = last.map(t);
            assert_eq!(
                dataset_next_check(e, last, t(SET), t(now)),
                next.map(t),
                "case {i}: {e:?} last {last:?} at {now}"
            );
            check_dataset(e, last, t(now));
        }
    }

    #[test]
    fn metrics_are_looked_at_again_at_their_next_threshold() {
        let by_11 = MetricExpectation::By {
            deadline: "0 11 * * * UTC".parse().unwrap(),
            grace: Duration::from_secs(H),
        };
        let warn_fail = max_age(Some(26), 48);
        let fail_only = max_age(None, 48);
        type Case<'a> = (
            &'a MetricExpectation,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                &warn_fail,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-01T05:00:00Z",
                Some("2026-12-02T02:00:00Z"),
            ),
            // Warning: failing is next.
            (
                &warn_fail,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-02T02:00:00Z",
                Some("2026-12-03T00:00:00Z"),
            ),
            (
                &warn_fail,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-03T00:00:00Z",
                None,
            ),
            (
                &fail_only,
                Some("2026-12-01T00:00:00Z"),
                "2026-12-02T05:00:00Z",
                Some("2026-12-03T00:00:00Z"),
            ),
            (
                &fail_only,
                None,
                "2026-11-01T01:00:00Z",
                Some("2026-11-03T00:00:00Z"),
            ),
            (
                &by_11,
                None,
                "2026-12-01T11:59:00Z",
                Some("2026-12-01T12:00:00Z"),
            ),
            (
                &by_11,
                Some("2026-12-01T11:30:00Z"),
                "2026-12-01T12:00:00Z",
                Some("2026-12-02T12:00:00Z"),
            ),
        ];
        for (i, (e, last, now, next)) in cases.into_iter().enumerate() {
            let last = last.map(t);
            let got = metric_next_check(e, last, t(SET), t(now));
            assert_eq!(got, next.map(t), "case {i}: {e:?} last {last:?} at {now}");
            let at = |when| assess_metric(e, last, t(SET), when).state;
            let until = got.unwrap_or(t(now) + chrono::Duration::days(366));
            let mut probe = t(now);
            while probe < until {
                assert_eq!(at(probe), at(t(now)), "case {i} changed at {probe}");
                probe += chrono::Duration::minutes(7);
            }
            // An age threshold always changes the state; a schedule's
            // window may move and find the same.
            if let (Some(n), MetricExpectation::MaxAge { .. }) = (got, e) {
                assert_ne!(at(n), at(t(now)), "case {i}: nothing changes at {n}");
            }
        }
    }

    #[test]
    fn a_dataset_check_is_never_late_for_a_change() {
        // Every answer of a sample of moments: the state at the answer
        // differs from the state now, unless the window moved and found
        // the same (a schedule's next tick while late).
        let e = every(6, 1);
        let last = Some(t("2026-12-01T00:00:00Z"));
        for h in 0..10 {
            let now = t("2026-12-01T00:00:00Z") + chrono::Duration::hours(h);
            check_dataset(&e, last, now);
            if let Some(n) = dataset_next_check(&e, last, t(SET), now) {
                assert_ne!(
                    assess_dataset(&e, last, t(SET), n).state,
                    assess_dataset(&e, last, t(SET), now).state
                );
            }
        }
    }
}
