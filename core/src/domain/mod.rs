//! Pure domain rules: no tokio, SQL or AWS here; each file is unit-tested.

pub mod adoption;
pub mod catalog;
pub mod events;
pub mod expression;
pub mod freshness;
pub mod ids;
pub mod metric_evaluation;
pub mod metric_status;
pub mod outgoing;
pub mod pending_run;
pub mod problem;
pub mod run_request;
pub mod run_state;
pub mod runner_compat;
pub mod trace;
