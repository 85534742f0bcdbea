//! Metric orchestrator core: everything the worker binaries and the operator
//! CLI share.
//!
//! - [`domain`]: pure rules, no I/O: expressions, the catalog file
//!   ([`domain::catalog`]), freshness and freshness expectations with the
//!   states they give at a time, the alert contract ([`domain::alert`]), typed ids
//!   ([`domain::ids`]), pending-run decisions and their evaluation in order
//!   (`domain::metric_evaluation`), trigger policies and what they decide at
//!   a time (`domain::trigger_policy`, `domain::trigger`), the run state machine
//!   ([`domain::run_state`]), inbound events and the outbound run request;
//!   a metric's definition, its canonical form and hash and what a change
//!   changed ([`domain::definition`]), what a worker does with a change
//!   ([`domain::definition_change`]), and whether an output is stale and
//!   why ([`domain::staleness`]); what a backfill asks for, its status and
//!   progress ([`domain::backfill`]) and its plan, each point's inputs
//!   pinned from the update log ([`domain::backfill_plan`]); when a freshness
//!   state can next change on its own (`domain::freshness_due`); the catalog
//!   document held entry by entry ([`domain::catalog_doc`]) and which of its
//!   entries an apply writes ([`domain::catalog_hash`]).
//! - [`store`]: PostgreSQL, one module per aggregate owning its SQL (the
//!   freshness sweep's schedule in [`store::freshness_due`]; all of
//!   the crate's SQL is there), run requests assembled from their outbox
//!   recipes ([`store::requests`]), requests carried on their run rows
//!   ([`store::run_outbox`]), read-only statistics, migrations, the
//!   pool (libpq-style `sslmode` / `sslrootcert` over rustls:
//!   `conninfo`, `tls`) and the transaction retry policy.
//! - [`app`]: use cases, one transaction each, returning what they
//!   committed (no loops, no publishing): projection update (and the
//!   metric backlog it leaves under contention, [`app::backlog`]; the
//!   guess of a dataset's dependents that puts their reads behind the claim,
//!   [`app::dependents`]), lifecycle
//!   events, timeout/retry sweep, freshness sweep ([`app::freshness`]),
//!   trigger-policy timers, holds and resumes ([`app::policy`]), catalog
//!   apply (which versions definitions), acting on definition changes
//!   ([`app::definition_changes`]), stale outputs ([`app::staleness`]),
//!   backfills made and steered ([`app::backfill`]) and their points
//!   requested by the workers ([`app::backfill_run`]),
//!   operator run queries; the evaluation every update passes
//!   through, a pure core and a thin shell ([`app::evaluate`]).
//! - [`outbox`]: publishing what a transaction committed after the commit:
//!   its three paths (handed, submitted, swept) and the lease rule in one
//!   place, the relay and the worker's publish queue (publishing through
//!   [`messaging::publisher::Publisher`]).
//! - [`workers`]: the two queue-consuming workers, wired from their
//!   dependencies: their SQS handlers ([`workers::handlers`], adapters from
//!   the consumer runtime to the use cases: a receive's projection updates
//!   in one transaction, each alone when it fails) and every periodic task
//!   they run ([`workers::tasks`]).
//! - [`messaging`]: AWS clients, SQS consumer runtime, DLQ admin, the
//!   publisher port and its SNS implementation, S3 pointers, provisioning.
//! - [`api`]: `orchestrator serve`, the operator HTTP API (JSON, OpenAPI)
//!   and the web console built into the binary; who takes an action
//!   ([`api::actor`]: the load balancer's signed identity, verified, or the
//!   token's name).
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and the database-state
//!   gauges.
//! - [`config`]: settings from the environment.
//! - [`ground`]: the helpers every layer may use: errors with their causes,
//!   summaries that add up, shutdown and the periodic-task loop,
//!   supervision, backpressure, the Prometheus names, logging.

pub mod api;
pub mod app;
pub mod config;
#[cfg(test)]
mod doc_tables;
pub mod domain;
pub mod ground;
pub mod messaging;
pub mod ops;
pub mod outbox;
pub mod store;
pub mod workers;
