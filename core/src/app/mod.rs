//! Use cases: each sequences store calls inside one transaction and turns
//! the result into a typed outcome.

pub mod backlog;
pub mod catalog_apply;
mod evaluate;
pub mod handlers;
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
}

impl Context {
    pub fn new(pool: Pool, settings: RequestSettings) -> Self {
        Self {
            pool,
            settings: Arc::new(settings),
        }
    }
}

/// A new time-ordered id (UUID v7) as text.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
