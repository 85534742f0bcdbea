//! Integration tests against a real PostgreSQL (see `localstack/postgres-up.sh`).
//! Each test creates its own database migrated from `migrations/`.

mod projection_update;
mod lifecycle;
mod catalog;
mod outbox;
mod concurrency;
