//! A metric's status as the operator API and console show it: the answer to
//! "why isn't this running yet?" in one word, with its precedence.

use std::fmt;
use std::str::FromStr;

use super::run_state::RunStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricStatus {
    /// Its last finished run succeeded (or it has not needed one) and its inputs are fresh.
    Ok,
    /// A run waits for datasets (the answer names them).
    Pending,
    /// Some required dataset has no update fresh enough for `required_days`.
    Stale,
    /// Its last finished run failed or timed out.
    Failing,
    /// Turned off in the catalog.
    Disabled,
}

impl MetricStatus {
    pub const ALL: [MetricStatus; 5] = [
        Self::Ok,
        Self::Pending,
        Self::Stale,
        Self::Failing,
        Self::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Pending => "pending",
            Self::Stale => "stale",
            Self::Failing => "failing",
            Self::Disabled => "disabled",
        }
    }
}

impl fmt::Display for MetricStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MetricStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| format!("unknown metric status {s:?} (expected ok, pending, stale, failing or disabled)"))
    }
}

/// What a metric's status is decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFacts {
    pub enabled: bool,
    pub has_pending_run: bool,
    /// Status of its newest run that ended succeeded, failed or timed out.
    pub last_finished: Option<RunStatus>,
    /// Every required dataset has a newest update within `required_days`.
    pub inputs_fresh: bool,
}

/// Disabled, then pending (the operator's first question), then failing,
/// then stale, else ok.
pub fn status(f: StatusFacts) -> MetricStatus {
    if !f.enabled {
        return MetricStatus::Disabled;
    }
    if f.has_pending_run {
        return MetricStatus::Pending;
    }
    if matches!(
        f.last_finished,
        Some(RunStatus::Failed | RunStatus::TimedOut)
    ) {
        return MetricStatus::Failing;
    }
    if !f.inputs_fresh {
        return MetricStatus::Stale;
    }
    MetricStatus::Ok
}

/// The console's badge text for a pending metric, e.g.
/// `waiting for 1 of 2: bcra_tipo_cambio`.
pub fn waiting_text(waiting_for: &[String], required: usize) -> String {
    format!(
        "waiting for {} of {}: {}",
        waiting_for.len(),
        required.max(waiting_for.len()),
        waiting_for.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricStatus::*;
    use RunStatus::*;

    #[test]
    fn the_status_follows_its_precedence() {
        let f = |enabled, pending, last, fresh| StatusFacts {
            enabled,
            has_pending_run: pending,
            last_finished: last,
            inputs_fresh: fresh,
        };
        let cases = [
            (f(false, true, Some(Failed), false), Disabled),
            (f(true, true, Some(Failed), false), Pending),
            (f(true, false, Some(Failed), true), Failing),
            (f(true, false, Some(TimedOut), true), Failing),
            (f(true, false, Some(Succeeded), false), Stale),
            (f(true, false, None, false), Stale),
            (f(true, false, Some(Succeeded), true), Ok),
            (f(true, false, None, true), Ok),
        ];
        for (facts, want) in cases {
            assert_eq!(status(facts), want, "{facts:?}");
        }
    }

    #[test]
    fn statuses_parse_back_and_unknown_ones_are_named() {
        for s in MetricStatus::ALL {
            assert_eq!(s.as_str().parse::<MetricStatus>(), Result::Ok(s));
        }
        assert!("late"
            .parse::<MetricStatus>()
            .unwrap_err()
            .contains("\"late\""));
    }

    #[test]
    fn the_waiting_text_names_the_datasets() {
        assert_eq!(
            waiting_text(&["bcra_tipo_cambio".into()], 2),
            "waiting for 1 of 2: bcra_tipo_cambio"
        );
        assert_eq!(
            waiting_text(&["a".into(), "b".into()], 1),
            "waiting for 2 of 2: a, b"
        );
    }
}
