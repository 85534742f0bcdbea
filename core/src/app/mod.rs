//! Use cases: each sequences store calls inside one transaction and turns
//! the result into a typed outcome.

pub mod backlog;
pub mod catalog_apply;
mod evaluate;
pub mod lifecycle;
pub mod projection_update;
pub mod request;
pub mod runs_admin;
pub mod sweeper;
pub mod trigger;

use std::sync::Arc;

use crate::domain::run_request::RequestSettings;
use crate::store::Pool;

/// What every use case needs: the pool and how requests are shaped.
#[derive(Clone)]
pub struct Context {
    pub pool: Pool,
    pub settings: Arc<RequestSettings>,
    /// Set in a worker: metrics with a backlog that this process's next
    /// projection update evaluates in its own transaction
    /// ([`backlog::Carry`]); unset, each update drains after its commit.
    pub carry: Option<Arc<backlog::Carry>>,
}

impl Context {
    pub fn new(pool: Pool, settings: RequestSettings) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
            carry: None,
        }
    }

    /// This context, with backlogs carried to the next update
    /// ([`backlog::Carry`]; run [`backlog::flush_carried`] beside it).
    pub fn with_carry(mut self) -> Self {
        self.carry = Some(Arc::new(backlog::Carry::default()));
        self
    }
}

/// A new time-ordered id (UUID v7) as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
