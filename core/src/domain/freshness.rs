//! Freshness (docs/semantics.md): an update is fresh for metric M at time t when
//! `update.created_at >= t - M.required_days days`; always fresh when
//! `required_days = 0`. The store evaluates the same rule in SQL on the
//! database clock; integration tests check that both agree.

use chrono::{DateTime, Duration, Utc};

/// The oldest `created_at` still fresh at `now`, or `None` when every update is fresh.
pub fn cutoff(now: DateTime<Utc>, required_days: i32) -> Option<DateTime<Utc>> {
    if required_days <= 0 {
        return None;
    }
    Some(now - Duration::days(i64::from(required_days)))
}

pub fn is_fresh(created_at: DateTime<Utc>, now: DateTime<Utc>, required_days: i32) -> bool {
    cutoff(now, required_days).is_none_or(|c| created_at >= c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_update_exactly_at_the_limit_is_fresh() {
        let now = t("2026-11-20T00:00:00Z");
        assert!(is_fresh(t("2026-11-13T00:00:00Z"), now, 7));
        assert!(!is_fresh(t("2026-11-12T23:59:59Z"), now, 7));
    }

    #[test]
    fn required_days_zero_is_always_fresh() {
        let now = t("2026-11-20T00:00:00Z");
        assert!(is_fresh(t("1990-01-01T00:00:00Z"), now, 0));
        assert_eq!(cutoff(now, 0), None);
    }
}
