#!/usr/bin/env bash
# The test suite, in tiers (README, "Tests"):
#   tests/run.sh             everything, as CI runs it
#   tests/run.sh --fast      unit, property and layer tests: no service, no browser
#   tests/run.sh --long      the long suites alone: chaos, Terraform, browser
#   tests/run.sh --not-long  everything but the long suites
# Further arguments go to `cargo test`; those after `--` to the test binaries
# (e.g. `tests/run.sh --not-long -- api::`).
# Except with --fast, it starts PostgreSQL and LocalStack when they do not
# answer, installs Chromium and chromedriver when missing, and builds the
# binaries the end-to-end tests start. It ends with one total line
# ("N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
tier=all
case "${1:-}" in
  --fast|--long|--not-long) tier=${1#--}; shift ;;
esac
# The long suites, as test-name filters of the `it` binary.
long=(chaos:: terraform:: console::)
export DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
if [ "$tier" != fast ]; then
  # The Terraform tests take providers from a local mirror when the registry is
  # out of reach; this project's machines keep one at /opt/tf-plugins.
  if [ -z "${TF_PLUGIN_DIR:-}" ] && [ -d /opt/tf-plugins ]; then
    export TF_PLUGIN_DIR=/opt/tf-plugins
  fi
  localstack/postgres-up.sh
  localstack/up.sh
  # The console's browser test drives Debian's Chromium through chromedriver;
  # the alert rules are checked and unit-tested with promtool (Debian's
  # prometheus package).
  need_chromium=no need_promtool=no
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then need_chromium=yes; fi
  command -v promtool >/dev/null 2>&1 || need_promtool=yes
  if [ $need_chromium = yes ] || [ $need_promtool = yes ]; then apt-get update -qq; fi
  if [ $need_chromium = yes ]; then
    echo "installing chromium and chromium-driver (Debian packages) for the console's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  if [ $need_promtool = yes ]; then
    echo "installing prometheus (Debian package) for promtool, which checks the alert rules"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
  # checkov, the Terraform scanner (tests/it/terraform.rs runs it over infra/).
  if [ ! -x .venv-checkov/bin/checkov ]; then
    echo "installing checkov (PyPI, infra/checkov-requirements.txt) into .venv-checkov"
    python3 -m venv .venv-checkov
    .venv-checkov/bin/pip install -q -r infra/checkov-requirements.txt
  fi
  # pydantic, with which tests/fixtures/reference_runner/parse_request.py
  # reads run requests as the reference runner does (tests/it/definitions_e2e.rs).
  if [ ! -x .venv-runner/bin/python ] || ! .venv-runner/bin/python -c 'import pydantic' 2>/dev/null; then
    echo "installing pydantic (PyPI, tests/fixtures/reference_runner/requirements.txt) into .venv-runner"
    python3 -m venv .venv-runner
    .venv-runner/bin/pip install -q -r tests/fixtures/reference_runner/requirements.txt
  fi
  cargo build --workspace --bins --locked
fi
# Most integration tests wait on LocalStack, PostgreSQL or a worker process
# rather than compute: three at a time on two cores keeps the long ones from
# holding every slot while the short ones queue behind them.
export RUST_TEST_THREADS=${RUST_TEST_THREADS:-3}
cargo_args=()
test_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = -- ]; then shift; test_args=("$@"); break; fi
  cargo_args+=("$1"); shift
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
case "$tier" in
  all) cargo test --workspace --locked --no-fail-fast "${cargo_args[@]}" -- "${test_args[@]}" 2>&1 | tee "$log" || status=$? ;;
  fast) cargo test --workspace --locked --no-fail-fast --lib --bins --test layers "${cargo_args[@]}" -- "${test_args[@]}" 2>&1 | tee "$log" || status=$? ;;
  long) cargo test --locked --no-fail-fast -p orchestrator-tests --test it "${cargo_args[@]}" -- "${test_args[@]}" "${long[@]}" 2>&1 | tee "$log" || status=$? ;;
  not-long)
    skips=()
    for f in "${long[@]}"; do skips+=(--skip "$f"); done
    cargo test --workspace --locked --no-fail-fast "${cargo_args[@]}" -- "${test_args[@]}" "${skips[@]}" 2>&1 | tee "$log" || status=$? ;;
esac
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .*; ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
exit "$status"
