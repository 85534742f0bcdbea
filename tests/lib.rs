//! Shared helpers for integration tests live in it/support.
