//! Pure domain rules: no tokio, SQL or AWS here; each file is unit-tested.

pub mod adoption;
pub mod alert;
pub mod backfill;
pub mod backfill_plan;
pub mod catalog;
pub mod definition;
pub mod definition_change;
pub mod events;
pub(crate) mod expectation;
pub(crate) mod expression;
pub(crate) mod freshness;
pub(crate) mod freshness_due;
pub(crate) mod freshness_state;
pub mod ids;
pub(crate) mod metric_evaluation;
pub(crate) mod metric_status;
pub(crate) mod outgoing;
pub(crate) mod pending_run;
pub(crate) mod problem;
pub mod run_request;
pub mod run_state;
pub mod runner_compat;
pub mod staleness;
pub mod trace;
pub(crate) mod trigger;
pub(crate) mod trigger_policy;
