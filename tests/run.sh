#!/usr/bin/env bash
# The whole test suite: starts PostgreSQL and LocalStack when they do not
# answer, installs Chromium and chromedriver when missing, builds the binaries the end-to-end tests start, then runs every unit,
# property, integration and end-to-end test of the workspace, and ends with
# one total line ("N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
# The Terraform tests take providers from a local mirror when the registry is
# out of reach; this project's machines keep one at /opt/tf-plugins.
if [ -z "${TF_PLUGIN_DIR:-}" ] && [ -d /opt/tf-plugins ]; then
  export TF_PLUGIN_DIR=/opt/tf-plugins
fi
localstack/postgres-up.sh
localstack/up.sh
# The console's browser test drives Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver (Debian packages) for the console's browser test"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*; ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
exit "$status"
