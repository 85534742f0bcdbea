#!/usr/bin/env bash
# Starts LocalStack (SQS, SNS, S3) as a plain Python process, no Docker
# (docs/operations.md, "Local services"), installing it first into .venv from localstack/requirements.txt.
# Idempotent: returns at once when LocalStack already answers.
# Stop it with localstack/down.sh; its log is .localstack/localstack.log.
# Queue URLs are http://127.0.0.1:4566/<account>/<name> (SQS_ENDPOINT_STRATEGY=off):
# the form the Terraform AWS provider parses (it rejects the path strategy's
# /queue/<region>/<account>/<name>); the workers accept either.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
endpoint=${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}
state=$root/.localstack
venv=${LOCALSTACK_VENV:-$root/.venv}
say() { echo "localstack-up: $*" >&2; }

healthy() { curl -fsS "$endpoint/_localstack/health" >/dev/null 2>&1; }

if healthy; then say "LocalStack already answers at $endpoint"; exit 0; fi

if ! "$venv/bin/python" -c 'import localstack' >/dev/null 2>&1; then
  say "installing LocalStack into $venv (pinned in localstack/requirements.txt)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$root/localstack/requirements.txt"
fi

mkdir -p "$state"
say "starting LocalStack at $endpoint"
# SQS_DISABLE_CLOUDWATCH_METRICS: LocalStack's SQS otherwise sends CloudWatch
# a PutMetricData call of its own, through its own HTTP gateway, for every
# message sent, received and deleted, queued to three threads without a
# bound. After a load of ~66,000 run requests that backlog kept one of this
# machine's two cores busy for more than half an hour with no client
# connected (measured in BENCHMARKS.md as of f33ef14, "LocalStack's own
# CloudWatch backlog"), under
# every test and benchmark that followed. Nothing here reads those metrics;
# CloudWatch itself stays on for the Terraform module's alarms.
(
  cd "$state"
  GATEWAY_LISTEN=127.0.0.1:4566 SERVICES=sqs,sns,s3,cloudwatch,secretsmanager PERSISTENCE=0 \
  SQS_DISABLE_CLOUDWATCH_METRICS=1 \
  SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 \
  SQS_ENDPOINT_STRATEGY=off LOCALSTACK_HOST=127.0.0.1:4566 \
  LOCALSTACK_VOLUME_DIR="$state/volume" \
  nohup "$venv/bin/python" -m localstack.runtime.main >"$state/localstack.log" 2>&1 &
  echo $! >"$state/localstack.pid"
)
for _ in $(seq 1 120); do
  if healthy; then say "LocalStack is up"; exit 0; fi
  if ! kill -0 "$(cat "$state/localstack.pid")" 2>/dev/null; then
    say "LocalStack exited; last lines of $state/localstack.log:"; tail -20 "$state/localstack.log" >&2; exit 1
  fi
  sleep 0.5
done
say "LocalStack did not become healthy within 60 s; see $state/localstack.log"
exit 1
