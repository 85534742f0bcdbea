#!/usr/bin/env bash
# Stops the LocalStack started by localstack/up.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
pidfile=$root/.localstack/localstack.pid
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  kill "$(cat "$pidfile")"
  for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  echo "localstack-down: stopped" >&2
else
  echo "localstack-down: not running" >&2
fi
rm -f "$pidfile"
