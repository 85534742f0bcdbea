//! "Nothing lost, nothing duplicated": the checks every concurrency and fault
//! scenario, and every `loadgen soak`, ends with. The counts come from
//! `orchestrator_core::store::stats`; this module turns them into named
//! checks (for reports) or assertions (for tests).

use orchestrator_core::store::{stats, Pool, StoreError};

use crate::TestDb;

/// One named check: what was counted, and what it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub got: i64,
    pub want: i64,
}

impl Check {
    pub fn new(what: impl Into<String>, got: i64, want: i64) -> Check {
        Check {
            what: what.into(),
            got,
            want,
        }
    }

    pub fn ok(&self) -> bool {
        self.got == self.want
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok() { "ok  " } else { "FAIL" };
        write!(
            f,
            "{mark} {}: {} (expected {})",
            self.what, self.got, self.want
        )
    }
}

/// The projection-update rules as checks: each counts its violations.
pub async fn invariant_checks(pool: &Pool) -> Result<Vec<Check>, StoreError> {
    let found = stats::invariants(pool).await?;
    Ok(found
        .rules()
        .into_iter()
        .map(|(rule, violations)| Check::new(format!("violations of \"{rule}\""), violations, 0))
        .collect())
}

/// At most one pending run per metric; no run requested twice; every
/// requested run has its outbox row and one used update per required dataset;
/// no two runs of a metric (retries aside) with the identical set of updates.
pub async fn assert_invariants(db: &TestDb) {
    let checks = invariant_checks(&db.pool)
        .await
        .expect("the invariant queries run");
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| !c.ok())
        .map(ToString::to_string)
        .collect();
    assert!(
        failed.is_empty(),
        "invariants broken:\n{}",
        failed.join("\n")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_is_ok_only_at_its_expected_value() {
        assert!(Check::new("x", 0, 0).ok());
        assert!(!Check::new("x", 1, 0).ok());
        assert_eq!(Check::new("x", 2, 0).to_string(), "FAIL x: 2 (expected 0)");
        assert_eq!(Check::new("y", 3, 3).to_string(), "ok   y: 3 (expected 3)");
    }
}
