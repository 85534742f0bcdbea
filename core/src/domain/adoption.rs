//! Taking over a metrics-engine-cp database (`orchestrator migrate --adopt`):
//! which dependencies an adopted metric's expression implies, and the report
//! of what adoption changes. The SQL is in `store::adopt`.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::expression::{parse_metric_expression, ExpressionType};

/// The tables of the reference service, in the order their rows are copied
/// (every table before those that reference it).
pub const REFERENCE_TABLES: [&str; 10] = [
    "datasets",
    "series",
    "dataset_series",
    "metrics",
    "metric_dependencies",
    "dataset_updates",
    "metric_runs",
    "metric_run_pending_datasets",
    "run_dataset_updates",
    "event_log",
];

/// Tables only this fleet has (`outbox` until V14, `outbox_messages`
/// since): their presence means the database is not a plain reference
/// database.
pub const OWN_TABLES: [&str; 3] = ["metric_required_datasets", "outbox", "outbox_messages"];

/// An adopted metric's dependencies as written by hand in the reference's
/// `metric_dependencies`, compared with those its expression implies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependencyCheck {
    pub metric_code: String,
    /// Series the expression references that have no row: added.
    pub missing: Vec<String>,
    /// Rows whose series the expression does not reference: kept.
    pub extra: Vec<String>,
    /// Why the expression could not be read (its rows are then kept as written).
    pub unreadable: Option<String>,
}

impl DependencyCheck {
    pub fn agrees(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.unreadable.is_none()
    }
}

/// Compares a metric's `metric_dependencies` rows with its expression
/// (leaves written `seriesCode` or `series_code`).
pub fn check_dependencies(
    metric_code: &str,
    expression_type: &str,
    expression_json: &Value,
    written: &BTreeSet<String>,
) -> DependencyCheck {
    let mut check = DependencyCheck {
        metric_code: metric_code.to_string(),
        ..DependencyCheck::default()
    };
    let parsed = expression_type
        .parse::<ExpressionType>()
        .map_err(|e| e.to_string())
        .and_then(|t| {
            parse_metric_expression(t, expression_json, "expression_json").map_err(|problems| {
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    match parsed {
        Ok(expr) => {
            let implied = expr.referenced_series();
            check.missing = implied.difference(written).cloned().collect();
            check.extra = written.difference(&implied).cloned().collect();
        }
        Err(why) => check.unreadable = Some(why),
    }
    check
}

/// Rows of one table before and after adoption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRows {
    pub table: &'static str,
    pub before: i64,
    pub after: i64,
}

/// What adoption changed (or, on a dry run, would change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdoptionReport {
    pub dry_run: bool,
    pub tables: Vec<TableRows>,
    /// Older `pending_dependencies` runs of a metric, now `canceled`.
    pub superseded_pending_runs: Vec<String>,
    /// Runs the reference had published (`queued` there), now `dispatched`.
    pub queued_to_dispatched: i64,
    /// Pending-dataset rows whose `received` flag disagreed with their update id.
    pub received_flags_fixed: i64,
    /// Negative row counts, which our schema forbids, cleared.
    pub negative_row_counts_cleared: i64,
    pub dependencies: Vec<DependencyCheck>,
    /// Series named by an expression but absent from `series`: registered.
    pub series_registered: Vec<String>,
    /// Runs that used the same set of updates as a newer run of their metric:
    /// only the newest keeps the update-set key.
    pub update_set_conflicts: Vec<String>,
    pub required_dataset_rows: i64,
    /// Indexes of the reference replaced by ours.
    pub indexes_replaced: Vec<String>,
    /// Migrations applied after adoption (or that would be).
    pub migrations_after: Vec<String>,
}

impl AdoptionReport {
    /// A table kept fewer rows than it had: adoption must not commit.
    pub fn lost_rows(&self) -> Vec<&TableRows> {
        self.tables.iter().filter(|t| t.after < t.before).collect()
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" … and {} more", items.len() - SHOWN));
    }
    s
}

impl fmt::Display for AdoptionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would" } else { "did" };
        writeln!(
            f,
            "adoption of a metrics-engine-cp database{}",
            if self.dry_run {
                " (dry run: nothing was changed)"
            } else {
                ""
            }
        )?;
        writeln!(
            f,
            "tables rebuilt in this fleet's schema, rows before → after:"
        )?;
        for t in &self.tables {
            writeln!(f, "  {:<28} {:>9} → {}", t.table, t.before, t.after)?;
        }
        writeln!(
            f,
            "columns added: metrics.required_days=7, enabled=true, max_attempts=1; \
             metric_runs.created_at (from requested_at), dispatched_at, progress, attempt=1, \
             retry_of, last_contact_at, update_set_key, updated_at"
        )?;
        writeln!(f, "reconciled ({verb} change, nothing deleted):")?;
        writeln!(
            f,
            "  older pending_dependencies runs of one metric canceled: {}{}",
            self.superseded_pending_runs.len(),
            if self.superseded_pending_runs.is_empty() {
                String::new()
            } else {
                format!(" ({})", list(&self.superseded_pending_runs))
            }
        )?;
        writeln!(
            f,
            "  runs the reference had published, queued → dispatched: {}",
            self.queued_to_dispatched
        )?;
        writeln!(
            f,
            "  pending-dataset rows whose received flag disagreed with their update: {}",
            self.received_flags_fixed
        )?;
        writeln!(
            f,
            "  negative row counts cleared: {}",
            self.negative_row_counts_cleared
        )?;
        writeln!(
            f,
            "  runs sharing an update set with a newer run (key kept on the newest): {}{}",
            self.update_set_conflicts.len(),
            if self.update_set_conflicts.is_empty() {
                String::new()
            } else {
                format!(" ({})", list(&self.update_set_conflicts))
            }
        )?;
        let disagreeing: Vec<&DependencyCheck> =
            self.dependencies.iter().filter(|d| !d.agrees()).collect();
        writeln!(
            f,
            "  metric_dependencies rows that disagree with their expression: {} metric(s)",
            disagreeing.len()
        )?;
        for d in disagreeing {
            if let Some(why) = &d.unreadable {
                writeln!(
                    f,
                    "    {}: expression not readable, rows kept as written: {why}",
                    d.metric_code
                )?;
                continue;
            }
            if !d.missing.is_empty() {
                writeln!(
                    f,
                    "    {}: missing {}, added",
                    d.metric_code,
                    list(&d.missing)
                )?;
            }
            if !d.extra.is_empty() {
                writeln!(
                    f,
                    "    {}: {} not in the expression, kept",
                    d.metric_code,
                    list(&d.extra)
                )?;
            }
        }
        if !self.series_registered.is_empty() {
            writeln!(
                f,
                "  series named by an expression but unknown, registered: {}",
                list(&self.series_registered)
            )?;
        }
        writeln!(
            f,
            "derived: metric_required_datasets {} rows",
            self.required_dataset_rows
        )?;
        writeln!(
            f,
            "indexes of the reference replaced by this fleet's: {}",
            self.indexes_replaced.len()
        )?;
        if self.migrations_after.is_empty() {
            write!(f, "then: no further migration")
        } else {
            write!(
                f,
                "then: migrations {} {}",
                self.migrations_after.join(", "),
                if self.dry_run {
                    "would apply"
                } else {
                    "applied"
                }
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dependencies_are_compared_with_the_expression() {
        let ratio =
            json!({"op": "ratio", "left": {"seriesCode": "A"}, "right": {"series_code": "B"}});
        type Case<'a> = (
            &'a str,
            Value,
            &'a [&'a str],
            &'a [&'a str],
            &'a [&'a str],
            bool,
        );
        let cases: Vec<Case> = vec![
            // (type, expression, written rows, missing, extra, unreadable)
            ("series_math", ratio.clone(), &["A", "B"], &[], &[], false),
            ("series_math", ratio.clone(), &["A"], &["B"], &[], false),
            (
                "series_math",
                ratio.clone(),
                &["A", "B", "C"],
                &[],
                &["C"],
                false,
            ),
            ("series_math", ratio.clone(), &[], &["A", "B"], &[], false),
            ("window_op", ratio.clone(), &["A"], &[], &[], true),
            ("bogus", ratio, &["A"], &[], &[], true),
            (
                "series_math",
                json!("not an object"),
                &["A"],
                &[],
                &[],
                true,
            ),
        ];
        for (ty, expr, written, missing, extra, unreadable) in cases {
            let c = check_dependencies("m", ty, &expr, &set(written));
            assert_eq!(
                c.missing,
                set(missing).into_iter().collect::<Vec<_>>(),
                "{ty} {expr}"
            );
            assert_eq!(
                c.extra,
                set(extra).into_iter().collect::<Vec<_>>(),
                "{ty} {expr}"
            );
            assert_eq!(c.unreadable.is_some(), unreadable, "{ty} {expr}: {c:?}");
            assert_eq!(
                c.agrees(),
                missing.is_empty() && extra.is_empty() && !unreadable
            );
        }
    }

    #[test]
    fn the_report_names_what_changes_and_flags_lost_rows() {
        let report = AdoptionReport {
            dry_run: true,
            tables: vec![
                TableRows {
                    table: "metrics",
                    before: 3,
                    after: 3,
                },
                TableRows {
                    table: "metric_runs",
                    before: 9,
                    after: 8,
                },
            ],
            superseded_pending_runs: vec!["r1".into(), "r2".into()],
            queued_to_dispatched: 4,
            dependencies: vec![DependencyCheck {
                metric_code: "m.x".into(),
                missing: vec!["S9".into()],
                extra: vec!["S7".into()],
                unreadable: None,
            }],
            migrations_after: vec!["V2__views".into()],
            ..AdoptionReport::default()
        };
        let text = report.to_string();
        for needle in [
            "dry run: nothing was changed",
            "metric_runs                          9 → 8",
            "canceled: 2 (r1, r2)",
            "queued → dispatched: 4",
            "m.x: missing S9, added",
            "m.x: S7 not in the expression, kept",
            "V2__views would apply",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        assert_eq!(report.lost_rows().len(), 1);
        assert_eq!(report.lost_rows()[0].table, "metric_runs");
    }

    #[test]
    fn long_lists_are_shortened() {
        let items: Vec<String> = (0..13).map(|i| format!("r{i}")).collect();
        assert_eq!(
            list(&items),
            "r0, r1, r2, r3, r4, r5, r6, r7, r8, r9 … and 3 more"
        );
    }
}
