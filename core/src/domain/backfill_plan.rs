//! A backfill's plan (docs/semantics.md, "Backfills"): for one metric, the
//! points of the range, each with the input updates that were current at
//! that moment (pinned from the fleet's own log of updates, freshness judged
//! as the live rule judged it then), and what the run a reader saw at that
//! moment says of it. Pure: the store reads the log and the runs.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::backfill::{Found, PointSpec, MAX_POINTS};
use super::freshness;
use super::ids::{DatasetId, MetricId, RunId, UpdateId};
use super::run_state::RunStatus;

/// One update of a dataset, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub id: UpdateId,
    pub created_at: DateTime<Utc>,
}

/// A run of the metric, as the plan judges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastRun {
    pub id: RunId,
    /// A backfill run's moment; `None` for a live run.
    pub as_of: Option<DateTime<Utc>>,
    pub requested_at: Option<DateTime<Utc>>,
    pub retry_of: Option<RunId>,
    pub attempt: i32,
    pub status: RunStatus,
    /// `None`: requested before versions (version 1).
    pub definition_version: Option<i32>,
    pub inputs: Vec<UpdateId>,
}

/// What the plan knows of one metric.
#[derive(Debug, Clone)]
pub struct History<'a> {
    pub required: &'a [DatasetId],
    pub required_days: i32,
    /// Each required dataset's updates, oldest first.
    pub log: &'a HashMap<DatasetId, Vec<Logged>>,
    pub runs: &'a [PastRun],
    pub current_version: i32,
}

/// The inputs current at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pinned {
    /// One update per required dataset, in the order of `required`, when
    /// all are there and fresh.
    pub inputs: Vec<UpdateId>,
    pub missing: Vec<DatasetId>,
    pub stale: Vec<DatasetId>,
}

impl Pinned {
    pub fn ready(&self) -> bool {
        self.missing.is_empty() && self.stale.is_empty()
    }
}

/// One point of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    pub as_of: DateTime<Utc>,
    pub found: Found,
    pub pinned: Pinned,
    /// The run a reader saw at that moment, if any.
    pub seen: Option<RunId>,
}

/// The newest update of each required dataset logged at or before `at`.
pub fn pin(h: &History<'_>, at: DateTime<Utc>) -> Pinned {
    let mut p = Pinned::default();
    for d in h.required {
        let log = h.log.get(d).map(Vec::as_slice).unwrap_or_default();
        let n = log.partition_point(|u| u.created_at <= at);
        match n.checked_sub(1).map(|i| &log[i]) {
            None => p.missing.push(d.clone()),
            Some(u) if !freshness::is_fresh(u.created_at, at, h.required_days) => {
                p.stale.push(d.clone())
            }
            Some(u) => p.inputs.push(u.id.clone()),
        }
    }
    if !p.ready() {
        p.inputs.clear();
    }
    p
}

/// The moment each run stands for: a backfill run's `as_of`; a live run's
/// first attempt's request time (a retry stands where its first attempt
/// does). Runs never requested stand nowhere.
pub fn moments(runs: &[PastRun]) -> HashMap<&RunId, DateTime<Utc>> {
    let by_id: HashMap<&RunId, &PastRun> = runs.iter().map(|r| (&r.id, r)).collect();
    let mut out = HashMap::new();
    for r in runs {
        let mut first = r;
        // A retry chain is a few attempts long; the bound keeps a corrupt
        // cycle from looping.
        for _ in 0..100 {
            match first.retry_of.as_ref().and_then(|p| by_id.get(p)) {
                Some(prev) if first.as_of.is_none() => first = prev,
                _ => break,
            }
        }
        if let Some(at) = r.as_of.or(first.requested_at) {
            out.insert(&r.id, at);
        }
    }
    out
}

/// The runs that are outputs (not pending, not canceled), in the order a
/// reader ranks them: by the moment they stand at, then attempt, a
/// backfill's run after a live one at the same moment.
pub struct Standing<'r> {
    ranked: Vec<(DateTime<Utc>, &'r PastRun)>,
}

impl<'r> Standing<'r> {
    pub fn new(runs: &'r [PastRun]) -> Standing<'r> {
        let at = moments(runs);
        let mut ranked: Vec<(DateTime<Utc>, &PastRun)> = runs
            .iter()
            .filter(|r| {
                !matches!(
                    r.status,
                    RunStatus::PendingDependencies | RunStatus::Canceled
                )
            })
            .filter_map(|r| at.get(&r.id).map(|m| (*m, r)))
            .collect();
        ranked.sort_by_key(|(m, r)| (*m, r.attempt, r.as_of.is_some()));
        Standing { ranked }
    }

    /// The run a reader saw at `at`: of those standing at or before it,
    /// the latest-ranked.
    fn seen(&self, at: DateTime<Utc>) -> Option<&'r PastRun> {
        let n = self.ranked.partition_point(|(m, _)| *m <= at);
        n.checked_sub(1).map(|i| self.ranked[i].1)
    }
}

/// What the plan finds at `at`.
pub fn judge(h: &History<'_>, standing: &Standing<'_>, at: DateTime<Utc>) -> Point {
    let pinned = pin(h, at);
    let run = standing.seen(at);
    let found = if !pinned.ready() {
        Found::Unready
    } else {
        match run {
            None => Found::Missing,
            Some(r) if matches!(r.status, RunStatus::Failed | RunStatus::TimedOut) => Found::Failed,
            Some(r) => {
                let same_inputs = {
                    let (mut a, mut b) = (r.inputs.clone(), pinned.inputs.clone());
                    a.sort();
                    b.sort();
                    a == b
                };
                if r.definition_version.unwrap_or(1) == h.current_version && same_inputs {
                    Found::Current
                } else {
                    Found::Stale
                }
            }
        }
    };
    Point {
        as_of: at,
        found,
        pinned,
        seen: run.map(|r| r.id.clone()),
    }
}

/// The moments of `[from, to]` a backfill computes, oldest first.
pub fn moments_in(
    spec: &PointSpec,
    h: &History<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, String> {
    let within = |t: &DateTime<Utc>| *t >= from && *t <= to;
    let set: BTreeSet<DateTime<Utc>> = match spec {
        // The moments live requests were made (first attempts).
        PointSpec::Runs => h
            .runs
            .iter()
            .filter(|r| r.as_of.is_none() && r.retry_of.is_none())
            .filter_map(|r| r.requested_at)
            .filter(within)
            .collect(),
        PointSpec::Updates => h
            .required
            .iter()
            .flat_map(|d| h.log.get(d).into_iter().flatten())
            .map(|u| u.created_at)
            .filter(within)
            .collect(),
        PointSpec::Schedule { cron, .. } => {
            let mut ticks = BTreeSet::new();
            let mut next = cron.tick_at_or_before(from).filter(|t| *t >= from);
            if next.is_none() {
                next = cron.tick_after(from);
            }
            while let Some(t) = next.filter(|t| *t <= to) {
                ticks.insert(t);
                if ticks.len() > MAX_POINTS {
                    break;
                }
                next = cron.tick_after(t);
            }
            ticks
        }
    };
    if set.len() > MAX_POINTS {
        return Err(format!(
            "more than {MAX_POINTS} points in the range: narrow it or take fewer points"
        ));
    }
    Ok(set.into_iter().collect())
}

/// Every point of one metric's plan.
pub fn plan(
    spec: &PointSpec,
    h: &History<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Point>, String> {
    let standing = Standing::new(h.runs);
    Ok(moments_in(spec, h, from, to)?
        .into_iter()
        .map(|at| judge(h, &standing, at))
        .collect())
}

/// Each metric's depth in the backfill's dependency order: 0 without an
/// upstream metric in the backfill, else one more than its deepest
/// upstream. `upstream` holds, for each metric, the backfill's metrics it
/// reads; a cycle is an error naming a metric on it.
pub fn depths(
    metrics: &[MetricId],
    upstream: &HashMap<MetricId, Vec<MetricId>>,
) -> Result<HashMap<MetricId, i32>, String> {
    fn visit(
        m: &MetricId,
        upstream: &HashMap<MetricId, Vec<MetricId>>,
        done: &mut HashMap<MetricId, i32>,
        path: &mut Vec<MetricId>,
    ) -> Result<i32, String> {
        if let Some(d) = done.get(m) {
            return Ok(*d);
        }
        if path.contains(m) {
            return Err(format!("metric {m} depends on itself through {path:?}"));
        }
        path.push(m.clone());
        let mut depth = 0;
        for u in upstream.get(m).into_iter().flatten() {
            depth = depth.max(visit(u, upstream, done, path)? + 1);
        }
        path.pop();
        done.insert(m.clone(), depth);
        Ok(depth)
    }
    let mut done = HashMap::new();
    for m in metrics {
        visit(m, upstream, &mut done, &mut Vec::new())?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-11-{s}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn logged(id: &str, at: &str) -> Logged {
        Logged {
            id: id.into(),
            created_at: t(at),
        }
    }

    fn run(id: &str, at: &str, status: RunStatus, version: i32, inputs: &[&str]) -> PastRun {
        PastRun {
            id: id.into(),
            as_of: None,
            requested_at: Some(t(at)),
            retry_of: None,
            attempt: 1,
            status,
            definition_version: Some(version),
            inputs: inputs.iter().map(|i| UpdateId::from(*i)).collect(),
        }
    }

    /// d1 updated on the 1st, 3rd and 5th; d2 on the 2nd and (late) the 9th.
    fn log() -> HashMap<DatasetId, Vec<Logged>> {
        [
            (
                "d1",
                vec![
                    logged("a1", "01T10:00"),
                    logged("a3", "03T10:00"),
                    logged("a5", "05T10:00"),
                ],
            ),
            (
                "d2",
                vec![logged("b2", "02T10:00"), logged("b9", "09T10:00")],
            ),
        ]
        .into_iter()
        .map(|(d, l)| (DatasetId::from(d), l))
        .collect()
    }

    #[test]
    fn inputs_are_pinned_to_what_was_current_then_as_the_live_rule_judged_it() {
        let log = log();
        let required = [DatasetId::from("d1"), DatasetId::from("d2")];
        let h = |days| History {
            required: &required,
            required_days: days,
            log: &log,
            runs: &[],
            current_version: 1,
        };
        let ids = |p: Pinned| (p.inputs, p.missing, p.stale);
        let d = |s: &str| DatasetId::from(s);
        let u = |s: &str| UpdateId::from(s);
        let cases = [
            // Before any d2 update.
            (0, "01T12:00", (vec![], vec![d("d2")], vec![])),
            // Exactly at an update's time: it counts.
            (0, "02T10:00", (vec![u("a1"), u("b2")], vec![], vec![])),
            (0, "04T00:00", (vec![u("a3"), u("b2")], vec![], vec![])),
            // required_days 2: on the 6th, d2's update of the 2nd was too old then.
            (2, "06T12:00", (vec![], vec![], vec![d("d2")])),
            (2, "04T00:00", (vec![u("a3"), u("b2")], vec![], vec![])),
            (0, "30T00:00", (vec![u("a5"), u("b9")], vec![], vec![])),
        ];
        for (days, at, want) in cases {
            assert_eq!(ids(pin(&h(days), t(at))), want, "{at} days {days}");
        }
    }

    #[test]
    fn each_point_is_judged_by_the_run_a_reader_saw_then() {
        use RunStatus::*;
        let log = log();
        let required = [DatasetId::from("d1"), DatasetId::from("d2")];
        let mut retry = run("r4b", "04T13:00", Succeeded, 2, &["a3", "b2"]);
        retry.retry_of = Some("r4".into());
        retry.attempt = 2;
        let mut backfilled = run("bf6", "30T00:00", Succeeded, 2, &["a5", "b2"]);
        backfilled.as_of = Some(t("06T00:00"));
        let runs = vec![
            run("r2", "02T11:00", Succeeded, 1, &["a1", "b2"]),
            run("r3", "03T11:00", Failed, 2, &["a3", "b2"]),
            run("r4", "04T12:00", Failed, 2, &["a3", "b2"]),
            retry,
            run("r5", "05T11:00", Succeeded, 2, &["a3", "b2"]),
            backfilled,
            run("r8", "08T11:00", Running, 2, &["a5", "b2"]),
            run("r9", "09T11:00", PendingDependencies, 2, &[]),
        ];
        let h = History {
            required: &required,
            required_days: 0,
            log: &log,
            runs: &runs,
            current_version: 2,
        };
        let m = Standing::new(&runs);
        let cases = [
            ("01T11:00", Found::Unready, None),
            ("02T09:00", Found::Unready, None),
            ("02T10:30", Found::Missing, None),
            // Version 1 output.
            ("02T12:00", Found::Stale, Some("r2")),
            ("03T12:00", Found::Failed, Some("r3")),
            // A retry stands where its first attempt does.
            ("04T12:30", Found::Current, Some("r4b")),
            // r5 ran before d1's update of the 5th reached it: other inputs.
            ("05T12:00", Found::Stale, Some("r5")),
            ("06T00:00", Found::Current, Some("bf6")),
            ("08T12:00", Found::Current, Some("r8")),
            // A pending run is no output; d2's new update makes r8 stale.
            ("09T12:00", Found::Stale, Some("r8")),
        ];
        for (at, found, seen) in cases {
            let p = judge(&h, &m, t(at));
            assert_eq!(
                (p.found, p.seen.as_ref().map(RunId::as_str)),
                (found, seen),
                "{at}"
            );
        }
    }

    #[test]
    fn points_are_the_moments_of_the_range() {
        use RunStatus::*;
        let log = log();
        let required = [DatasetId::from("d1"), DatasetId::from("d2")];
        let mut retry = run("r3b", "03T12:00", Succeeded, 1, &[]);
        retry.retry_of = Some("r3".into());
        let mut backfilled = run("bf", "30T00:00", Succeeded, 1, &[]);
        backfilled.as_of = Some(t("04T00:00"));
        let runs = vec![
            run("r2", "02T11:00", Succeeded, 1, &[]),
            run("r3", "03T11:00", Failed, 1, &[]),
            retry,
            backfilled,
            run("r7", "07T11:00", Succeeded, 1, &[]),
        ];
        let h = History {
            required: &required,
            required_days: 0,
            log: &log,
            runs: &runs,
            current_version: 1,
        };
        let (from, to) = (t("02T00:00"), t("05T10:00"));
        let spec = |s: &str| s.parse::<PointSpec>().unwrap();
        let cases = [
            ("runs", vec!["02T11:00", "03T11:00"]),
            ("updates", vec!["02T10:00", "03T10:00", "05T10:00"]),
            // A tick at `from` itself counts.
            (
                "daily",
                vec!["02T00:00", "03T00:00", "04T00:00", "05T00:00"],
            ),
            ("0 12 * * *", vec!["02T12:00", "03T12:00", "04T12:00"]),
        ];
        for (s, want) in cases {
            let got = moments_in(&spec(s), &h, from, to).unwrap();
            let want: Vec<_> = want.into_iter().map(t).collect();
            assert_eq!(got, want, "{s}");
        }
        let august = DateTime::parse_from_rfc3339("2026-08-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let far = moments_in(&spec("* * * * *"), &h, august, t("30T00:00"));
        assert!(far.unwrap_err().contains("more than 100000 points"));
        let daily_from_midnight = moments_in(&spec("daily"), &h, t("03T00:00"), t("03T00:00"));
        assert_eq!(daily_from_midnight.unwrap(), vec![t("03T00:00")]);
    }

    #[test]
    fn depths_follow_upstream_and_refuse_cycles() {
        let m = |s: &str| MetricId::from(s);
        let up: HashMap<MetricId, Vec<MetricId>> =
            [(m("c"), vec![m("b"), m("a")]), (m("b"), vec![m("a")])]
                .into_iter()
                .collect();
        let d = depths(&[m("c"), m("a"), m("b"), m("x")], &up).unwrap();
        assert_eq!(
            (d[&m("a")], d[&m("b")], d[&m("c")], d[&m("x")]),
            (0, 1, 2, 0)
        );
        let cyc: HashMap<MetricId, Vec<MetricId>> =
            [(m("a"), vec![m("b")]), (m("b"), vec![m("a")])]
                .into_iter()
                .collect();
        assert!(depths(&[m("a")], &cyc)
            .unwrap_err()
            .contains("depends on itself"));
    }
}
