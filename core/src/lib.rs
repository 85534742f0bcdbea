//! Metric orchestrator core: everything the worker binaries and the operator
//! CLI share.
//!
//! - [`domain`]: pure rules, no I/O: expressions ([`domain::expression`]),
//!   the catalog file ([`domain::catalog`]), freshness, the run state machine
//!   ([`domain::run_state`]), inbound events and the outbound run request,
//!   and a synthetic catalog generator for load work ([`domain::synth`]).
//! - [`store`]: PostgreSQL, one module per aggregate owning its SQL,
//!   migrations, the pool and the transaction retry policy.
//! - [`app`]: use cases, one transaction each: projection update, lifecycle
//!   events, timeout/retry sweep, catalog apply, operator run queries.
//! - [`relay`]: the transactional outbox relay and the publisher trait.
//! - [`workers`]: the long-running loops the binaries run.
//! - [`messaging`]: SQS consumer runtime, DLQ admin, SNS publisher, S3 pointers, provisioning.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`; [`metrics`]: the Prometheus metric names.
//! - [`config`]: settings from the environment; [`telemetry`]: logging.

pub mod app;
pub mod config;
pub mod domain;
pub mod messaging;
pub mod metrics;
pub mod ops;
pub mod relay;
pub mod store;
pub mod telemetry;
pub mod workers;
