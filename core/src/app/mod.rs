//! Use cases: each sequences store calls inside one transaction and turns
//! the result into a typed outcome.

pub mod alerts;
pub mod backfill;
pub mod backfill_run;
pub mod backlog;
pub mod catalog_apply;
pub mod definition_changes;
pub mod dependents;
pub mod evaluate;
pub mod freshness;
pub use evaluate::Evaluated;
pub mod lifecycle;
pub mod policy;
pub mod projection_update;
pub mod request;
pub mod runs_admin;
pub mod staleness;
pub mod sweeper;
pub mod trigger;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::run_request::RequestSettings;
use crate::store::Pool;

/// What every use case needs: the pool and how requests are shaped.
#[derive(Clone)]
pub struct Context {
    pub pool: Pool,
    pub settings: Arc<RequestSettings>,
    /// Set in a worker: metrics with a backlog that this process's next
    /// projection update evaluates in its own transaction
    /// ([`backlog::BacklogHandoff`]); unset, each update drains after its commit.
    pub handoff: Option<Arc<backlog::BacklogHandoff>>,
    /// Alerts are written to the outbox (`ALERTS_TOPIC_ARN` is set).
    pub alerts: bool,
    /// The time trigger policies are decided at: the system clock, or the
    /// one a test drives.
    pub clock: Clock,
    /// Set for the projection-update handler, whose relay publishes an
    /// update's run requests right after its commit: their outbox rows are
    /// born leased to that relay for this long, so that it publishes them
    /// without claiming them first (one write and one commit fewer per
    /// publish). Unset, rows are due at once for any relay.
    pub publish_lease: Option<std::time::Duration>,
    /// Each dataset's dependent metrics as its last update's claim found
    /// them, shared by the clones of this context: the next update of the
    /// dataset reads their state in the round trip of its claim.
    pub dependents: Arc<dependents::DependentsGuess>,
}

/// A source of the current time.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl Context {
    pub fn new(pool: Pool, settings: RequestSettings) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            handoff: None,
            alerts: false,
            clock: Arc::new(Utc::now),
            publish_lease: None,
            dependents: Arc::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// This context, deciding trigger policies at the time `clock` gives.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// This context, with backlogs handed off to the next update
    /// ([`backlog::BacklogHandoff`]; the worker's handoff drain task, `workers::tasks::handoff_drain`, beside it).
    pub fn with_backlog_handoff(mut self) -> Self {
        self.handoff = Some(Arc::new(backlog::BacklogHandoff::default()));
        self
    }

    /// This context, its evaluations' run requests born leased for `lease`
    /// to a relay that publishes them at the commit
    /// ([`crate::outbox::PublishQueue::submit_handed`]).
    pub fn with_publish_lease(mut self, lease: std::time::Duration) -> Self {
        self.publish_lease = Some(lease);
        self
    }

    /// This context, writing alerts to the outbox when `on`.
    pub fn with_alerts(mut self, on: bool) -> Self {
        self.alerts = on;
        self
    }
}

/// A new time-ordered id (UUID v7) as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
