#!/usr/bin/env bash
# The whole test suite: starts PostgreSQL when none answers, then runs every
# unit, property and integration test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
localstack/postgres-up.sh
cargo test --workspace --locked "$@"
