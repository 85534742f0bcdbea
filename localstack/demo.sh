#!/usr/bin/env bash
# The whole product on this machine, in one command:
#   PostgreSQL and LocalStack up (started when not running), queues/topic/bucket
#   provisioned, schema migrated, the example catalog loaded, both workers and
#   the simulated metric runner started, the example events replayed, and the
#   outcome shown (pending runs and what they wait for, the run-status table, a
#   sample run request, the dead letter), then a dataset made late and the
#   alerts as they arrive on a queue subscribed to the alerts topic, then a
#   metric's definition changed: the dry run's diff, the re-run, its output
#   going from stale to current.
#
#   localstack/demo.sh               run the demo, leave the stack running
#   localstack/demo.sh --down-after  run the demo, then stop everything it started
#   localstack/demo.sh --down        stop the workers, the runner and LocalStack
#                                    (and PostgreSQL if the demo started it)
#
# State: .localstack/demo/ (environment, pids, logs). Database: orchestrator_demo
# on the server at DATABASE_URL (recreated on every run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=$root/.localstack/demo
bin=$root/target/debug
admin_url=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_processes() {
  for name in projection-update-worker run-lifecycle-worker simulate-runner serve; do
    pidfile=$state/$name.pid
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill -TERM "$(cat "$pidfile")" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
      kill -9 "$(cat "$pidfile")" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$pidfile"
  done
}

down() {
  stop_processes
  localstack/down.sh || true
  if [ -f "$state/started-postgres" ]; then
    pg_ctlcluster 15 main stop && echo "stopped PostgreSQL"
    rm -f "$state/started-postgres"
  fi
}

case "${1:-}" in
  --down) down; exit 0 ;;
  --down-after) down_after=1 ;;
  "") down_after=0 ;;
  *) echo "usage: $0 [--down-after | --down]" >&2; exit 2 ;;
esac

mkdir -p "$state"
stop_processes >/dev/null

say "PostgreSQL and LocalStack"
if ! psql "$admin_url" -Atqc 'select 1' >/dev/null 2>&1; then
  DATABASE_URL=$admin_url localstack/postgres-up.sh
  touch "$state/started-postgres"
else
  echo "PostgreSQL already answers"
fi
localstack/up.sh

say "Build (cargo build --workspace --bins)"
cargo build --workspace --bins --locked

say "Provision queues, DLQs, topic, subscription and bucket"
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://127.0.0.1:4566}
export AWS_REGION=${AWS_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
# Queues are reused across runs: --purge starts from empty ones.
"$bin/orchestrator" provision --prefix demo- --purge --env-file "$state/env"
set -a; . "$state/env"; set +a

say "Database orchestrator_demo: create, migrate, load the example catalog"
psql "$admin_url" -qc 'DROP DATABASE IF EXISTS orchestrator_demo WITH (FORCE)' -c 'CREATE DATABASE orchestrator_demo'
export DATABASE_URL
DATABASE_URL=$(python3 -c 'import sys, urllib.parse as u; p = u.urlparse(sys.argv[1]); print(p._replace(path="/orchestrator_demo").geturl())' "$admin_url")
"$bin/orchestrator" migrate
"$bin/orchestrator" catalog apply localstack/examples/catalog.yaml
{ echo "DATABASE_URL=$DATABASE_URL"; echo "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"; echo "AWS_REGION=$AWS_REGION"
  echo "AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID"; echo "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"; } >>"$state/env"

say "Start projection-update-worker, run-lifecycle-worker and simulate-runner"
start() { # name, then the command
  local name=$1; shift
  LOG_FORMAT=json RUST_LOG=info nohup "$@" >"$state/$name.log" 2>&1 &
  echo $! >"$state/$name.pid"
  echo "$name: pid $(cat "$state/$name.pid"), log $state/$name.log"
}
# Freshness expectations are judged every 2 s here (default 30 s).
OPS_ADDR=127.0.0.1:9090 FRESHNESS_SWEEP_SECS=2 start projection-update-worker "$bin/projection-update-worker"
OPS_ADDR=127.0.0.1:9091 FRESHNESS_SWEEP_SECS=2 start run-lifecycle-worker "$bin/run-lifecycle-worker"
start simulate-runner "$bin/orchestrator" simulate-runner --duration-ms 500 --heartbeats 1
# The operator API and console (read-only here: no API_TOKEN, so no actions).
API_ADDR=${API_ADDR:-127.0.0.1:8080} start serve "$bin/orchestrator" serve
for _ in $(seq 1 60); do curl -fsS "http://${API_ADDR:-127.0.0.1:8080}/ready" >/dev/null 2>&1 && break; sleep 0.5; done
curl -fsS "http://${API_ADDR:-127.0.0.1:8080}/ready" >/dev/null || { echo "orchestrator serve is not ready; see $state/serve.log" >&2; exit 1; }
echo "console: http://${API_ADDR:-127.0.0.1:8080}/"
for port in 9090 9091; do
  for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { echo "worker on :$port is not ready; see $state/*.log" >&2; exit 1; }
done
echo "both workers ready"

say "Replay line 1 of localstack/examples/events.ndjson (BCRA daily series)"
head -1 localstack/examples/events.ndjson >"$state/first.ndjson"
tail -n +2 localstack/examples/events.ndjson >"$state/rest.ndjson"
"$bin/orchestrator" replay "$state/first.ndjson"
for _ in $(seq 1 60); do
  n=$(psql "$DATABASE_URL" -Atc "select count(*) from run_status where status = 'pending_dependencies'")
  [ "$n" = 3 ] && break; sleep 0.5
done
echo "Metrics that also need another dataset wait for it:"
"$bin/orchestrator" runs list --status pending_dependencies
pending=$(psql "$DATABASE_URL" -Atc "select run_id from run_status where metric_code = 'ratio.reserves_to_base' and status = 'pending_dependencies'")
"$bin/orchestrator" runs show "$pending"

say "Replay the rest: exchange rates, a duplicate, CPI, one invalid message, the next BCRA day"
# Two a second, so that each is processed before the next arrives and the
# outcome is the one localstack/examples/README.md describes.
"$bin/orchestrator" replay --rate 2 "$state/rest.ndjson" || true

say "Outcome: every run requested, run by the simulated runner, succeeded"
"$bin/orchestrator" runs watch --until-settled --min-runs 17 --limit 20 --timeout 120 | tail -n 25

say "A sample run request, as published on SNS (ratio.reserves_to_base)"
sample=$(psql "$DATABASE_URL" -Atc "select run_id from run_status where metric_code = 'ratio.reserves_to_base' order by run_id limit 1")
"$bin/orchestrator" runs show "$sample" --request

say "The invalid message, dead-lettered with its reason"
"$bin/orchestrator" dlq list

say "Alerts: the exchange-rate dataset is now expected every 5 s, and nothing more arrives"
"$bin/orchestrator" catalog apply localstack/examples/late.yaml
# What a subscriber of the alerts topic receives (here a queue subscribed to
# it; email, Slack through AWS Chatbot or PagerDuty subscribe the same way).
# Prints the alerts that arrive until one of the type given.
wait_alert_py=$(cat <<'PY'
import json, sys, time, urllib.parse, urllib.request
endpoint, queue, wanted = sys.argv[1], sys.argv[2], sys.argv[3]
def receive():
    data = urllib.parse.urlencode({"Action": "ReceiveMessage", "QueueUrl": queue,
                                   "WaitTimeSeconds": 2, "MaxNumberOfMessages": 10}).encode()
    req = urllib.request.Request(endpoint, data=data, headers={"Accept": "application/json"})
    result = json.load(urllib.request.urlopen(req))["ReceiveMessageResponse"]["ReceiveMessageResult"] or {}
    msgs = result.get("Message") or []
    return msgs if isinstance(msgs, list) else [msgs]
deadline = time.time() + 90
while time.time() < deadline:
    for m in receive():
        alert = json.loads(m["Body"])
        print(f"alert from the alerts topic: {alert['type']}")
        print(json.dumps(alert, indent=2))
        if alert["type"] == wanted:
            sys.exit(0)
sys.exit(f"no {wanted} alert arrived on the alerts queue within 90 s")
PY
)
python3 -c "$wait_alert_py" "$AWS_ENDPOINT_URL" "$ALERTS_QUEUE_URL" dataset_late
echo "late datasets through the API: $(curl -fsS "http://${API_ADDR:-127.0.0.1:8080}/api/v1/datasets?freshness=late" | python3 -c 'import json,sys; print([(d["id"], d["freshness"]["state"]) for d in json.load(sys.stdin)["items"]])')"

say "A definition change: ratio.reserves_to_base's scale 100 → 1000, with on_change: rerun"
echo "What would change (--dry-run writes nothing):"
"$bin/orchestrator" catalog apply localstack/examples/definition-change.yaml --dry-run --by demo
"$bin/orchestrator" catalog apply localstack/examples/definition-change.yaml --by demo
metric_output() {
  curl -fsS "http://${API_ADDR:-127.0.0.1:8080}/api/v1/metrics/ratio.reserves_to_base" | python3 -c '
import json, sys
m = json.load(sys.stdin)
o = m["output"]
reasons = "; ".join(r["text"] for r in o["reasons"])
line = "definition v%s; newest output: %s, made by a run of v%s" % (m["definitionVersion"], o["status"], o["definitionVersion"])
print(line + (" (" + reasons + ")" if reasons else ""))'
}
echo "Right after the apply: $(metric_output)"
python3 -c "$wait_alert_py" "$AWS_ENDPOINT_URL" "$ALERTS_QUEUE_URL" metric_definition_changed
for _ in $(seq 1 120); do
  metric_output | grep -q "newest output: current" && break; sleep 0.5
done
after=$(metric_output)
echo "After the re-run:       $after"
case "$after" in *"newest output: current"*) ;; *) echo "the re-run did not make the output current within 60 s" >&2; exit 1 ;; esac
rerun=$(psql "$DATABASE_URL" -Atc "select run_id from run_status where metric_code = 'ratio.reserves_to_base' and definition_version = 2 order by created_at desc limit 1")
echo "The re-run's request carries: $("$bin/orchestrator" runs show "$rerun" --request | python3 -c 'import json,sys; r = json.load(sys.stdin); print({k: r[k] for k in ("definitionVersion", "definitionHash")}, "scale", r["expressionJson"]["scale"])')"
echo "Stale metrics now (orchestrator metrics stale):"
"$bin/orchestrator" metrics stale --limit 5

say "The operator API and console"
api="http://${API_ADDR:-127.0.0.1:8080}"
echo "succeeded runs through the API: $(curl -fsS "$api/api/v1/runs?status=succeeded&limit=500" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')"
echo "console: $api/  (metrics, runs, datasets, lineage, backfills; refreshes itself)"

say "A backfill: ratio.reserves_to_base over its history, each past run's moment recomputed with v2 on the inputs of that moment"
echo "The plan (--dry-run writes nothing):"
"$bin/orchestrator" backfill create --metric ratio.reserves_to_base --from 1d --points runs --reprocess stale --dry-run --by demo
created=$("$bin/orchestrator" backfill create --metric ratio.reserves_to_base --from 1d --points runs --reprocess stale --max-in-flight 2 --by demo)
echo "$created"
backfill_id=$(printf '%s\n' "$created" | grep -o 'bf-[0-9a-f]*' | head -1)
for _ in $(seq 1 120); do
  "$bin/orchestrator" backfill show "$backfill_id" | head -1 | grep -q " completed " && break; sleep 0.5
done
echo "Finished (orchestrator backfill show $backfill_id):"
"$bin/orchestrator" backfill show "$backfill_id"
"$bin/orchestrator" backfill show "$backfill_id" | head -1 | grep -q " completed " \
  || { echo "the backfill did not complete within 60 s" >&2; exit 1; }

if [ "$down_after" = 1 ]; then
  say "Tearing down (--down-after)"
  down
else
  say "The stack is still running"
  cat <<EOF
Environment for more commands:  set -a; . $state/env; set +a
Try:   $bin/orchestrator runs list        psql "\$DATABASE_URL" -c 'select * from run_status'
Logs:  $state/*.log        Ops: curl 127.0.0.1:9090/readyz
Console: http://${API_ADDR:-127.0.0.1:8080}/    API: curl http://${API_ADDR:-127.0.0.1:8080}/api/v1/metrics
Stop everything with: localstack/demo.sh --down
EOF
fi
