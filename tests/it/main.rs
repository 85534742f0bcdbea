//! Integration tests against a real PostgreSQL (see `localstack/postgres-up.sh`).
//! Each test creates its own database migrated from `migrations/`.

mod actors;
mod adopt;
mod alerts;
mod api;
mod api_exposure;
mod backlog;
mod backpressure;
mod batches;
mod catalog;
mod chaos;
mod concurrency;
mod console;
mod dlq;
mod e2e;
mod faults;
mod freshness;
mod handed;
mod hostile;
mod lifecycle;
mod observability;
mod outbox;
mod outbox_recipes;
mod payload_budget;
mod policies;
mod policies_e2e;
mod pool_settings;
mod projection_update;
mod roles;
mod run_outbox;
mod supervision;
mod telemetry;
mod terraform;
mod tls;
mod views;
mod wiring;
