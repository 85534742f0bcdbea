//! Run statuses and the lifecycle transition table (docs/semantics.md).

use crate::domain::events::EventType;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    PendingDependencies,
    Queued,
    Dispatched,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        Self::PendingDependencies,
        Self::Queued,
        Self::Dispatched,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PendingDependencies => "pending_dependencies",
            Self::Queued => "queued",
            Self::Dispatched => "dispatched",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Canceled => "canceled",
        }
    }

    /// Final states: the first one reached wins.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Canceled)
    }

    /// States an operator may cancel from.
    pub fn is_cancelable(self) -> bool {
        matches!(
            self,
            Self::PendingDependencies | Self::Queued | Self::Dispatched | Self::Running
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<_> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
        write!(
            f,
            "unknown run status {:?} (expected one of {})",
            self.0,
            all.join(", ")
        )
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for RunStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

/// The kind of a lifecycle event, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleKind {
    Started,
    Heartbeat,
    Completed { success: bool },
}

impl LifecycleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => EventType::MetricRunStarted.as_str(),
            Self::Heartbeat => EventType::MetricRunHeartbeat.as_str(),
            Self::Completed { .. } => EventType::MetricRunCompleted.as_str(),
        }
    }
}

/// Why an event leaves a run unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The run already ended; the first terminal state wins.
    AlreadyTerminal(RunStatus),
    /// Only a completion is accepted after a timeout.
    TimedOut,
    /// The run was never requested.
    NotRequested,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadyTerminal(s) => write!(f, "run already {s}"),
            Self::TimedOut => f.write_str("run timed out; only a completion is accepted"),
            Self::NotRequested => f.write_str("run is still pending_dependencies"),
        }
    }
}

/// What to do with an event for a run in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Apply the event's effects and move to this status (may equal the current one).
    Apply(RunStatus),
    Ignore(IgnoreReason),
}

/// The transition table (docs/semantics.md).
pub fn decide(current: RunStatus, event: LifecycleKind) -> Decision {
    use RunStatus::*;
    if current.is_terminal() {
        return Decision::Ignore(IgnoreReason::AlreadyTerminal(current));
    }
    match (current, event) {
        (PendingDependencies, _) => Decision::Ignore(IgnoreReason::NotRequested),
        (TimedOut, LifecycleKind::Started | LifecycleKind::Heartbeat) => {
            Decision::Ignore(IgnoreReason::TimedOut)
        }
        (_, LifecycleKind::Started | LifecycleKind::Heartbeat) => Decision::Apply(Running),
        (_, LifecycleKind::Completed { success: true }) => Decision::Apply(Succeeded),
        (_, LifecycleKind::Completed { success: false }) => Decision::Apply(Failed),
    }
}

/// Whether a run that ended in `status` at `attempt` gets a retry.
pub fn should_retry(status: RunStatus, attempt: i32, max_attempts: i32) -> bool {
    matches!(status, RunStatus::Failed | RunStatus::TimedOut) && attempt < max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunStatus::*;

    const STARTED: LifecycleKind = LifecycleKind::Started;
    const HEARTBEAT: LifecycleKind = LifecycleKind::Heartbeat;
    const OK: LifecycleKind = LifecycleKind::Completed { success: true };
    const FAIL: LifecycleKind = LifecycleKind::Completed { success: false };

    #[test]
    fn the_transition_table_of_docs_semantics() {
        for s in [Queued, Dispatched, Running] {
            assert_eq!(decide(s, STARTED), Decision::Apply(Running), "{s}");
            assert_eq!(decide(s, HEARTBEAT), Decision::Apply(Running), "{s}");
        }
        for s in [Queued, Dispatched, Running, TimedOut] {
            assert_eq!(decide(s, OK), Decision::Apply(Succeeded), "{s}");
            assert_eq!(decide(s, FAIL), Decision::Apply(Failed), "{s}");
        }
        for e in [STARTED, HEARTBEAT] {
            assert_eq!(
                decide(TimedOut, e),
                Decision::Ignore(IgnoreReason::TimedOut)
            );
        }
        for s in [Succeeded, Failed, Canceled] {
            for e in [STARTED, HEARTBEAT, OK, FAIL] {
                assert_eq!(
                    decide(s, e),
                    Decision::Ignore(IgnoreReason::AlreadyTerminal(s))
                );
            }
        }
        for e in [STARTED, HEARTBEAT, OK, FAIL] {
            assert_eq!(
                decide(PendingDependencies, e),
                Decision::Ignore(IgnoreReason::NotRequested)
            );
        }
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), s);
        }
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn retries_only_after_failure_or_timeout_below_max() {
        assert!(should_retry(Failed, 1, 2));
        assert!(should_retry(TimedOut, 1, 2));
        assert!(!should_retry(Failed, 2, 2));
        assert!(!should_retry(Succeeded, 1, 3));
        assert!(!should_retry(Canceled, 1, 3));
    }
}

/// What an operator's cancel does from `from`: `canceled`, or nothing for a
/// run that has already ended.
pub fn cancel(from: RunStatus) -> Option<RunStatus> {
    from.is_cancelable().then_some(RunStatus::Canceled)
}

#[cfg(test)]
mod serde_tests {
    use super::RunStatus;

    #[test]
    fn only_runs_that_have_not_ended_can_be_canceled() {
        use RunStatus::*;
        let cases = [
            (PendingDependencies, Some(Canceled)),
            (Queued, Some(Canceled)),
            (Dispatched, Some(Canceled)),
            (Running, Some(Canceled)),
            (Succeeded, None),
            (Failed, None),
            (TimedOut, None),
            (Canceled, None),
        ];
        for (from, want) in cases {
            assert_eq!(super::cancel(from), want, "{from}");
        }
    }

    #[test]
    fn statuses_serialize_as_their_stored_names() {
        for s in RunStatus::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }
}
