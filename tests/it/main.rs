//! Integration tests against a real PostgreSQL (see `localstack/postgres-up.sh`).
//! Each test creates its own database migrated from `migrations/`.

mod adopt;
mod catalog;
mod chaos;
mod concurrency;
mod dlq;
mod e2e;
mod faults;
mod lifecycle;
mod outbox;
mod projection_update;
mod telemetry;
mod terraform;
mod views;
mod wiring;
