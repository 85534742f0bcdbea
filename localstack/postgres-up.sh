#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at $DATABASE_URL (default
# postgres://postgres:postgres@127.0.0.1:5432/postgres). When none does, starts
# the machine's PostgreSQL 15 cluster (Debian's pg_ctlcluster, as root),
# creating it if needed, and gives the postgres user the URL's password.
# Idempotent: does nothing when the server already answers.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
PG_VERSION=${PG_VERSION:-15}
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin

say() { echo "postgres-up: $*" >&2; }

reachable() { psql "$DATABASE_URL" -Atqc 'select 1' >/dev/null 2>&1; }

if reachable; then
  say "PostgreSQL already answers at ${DATABASE_URL%%@*}@…"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "no PostgreSQL answers at DATABASE_URL and pg_ctlcluster is missing."
  say "Install PostgreSQL $PG_VERSION (apt-get install postgresql-$PG_VERSION) or point DATABASE_URL at a server."
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  say "starting the local cluster needs root (pg_ctlcluster); run as root or start PostgreSQL yourself."
  exit 1
fi

if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION main"; then
  say "creating cluster $PG_VERSION/main"
  pg_createcluster "$PG_VERSION" main >/dev/null
fi
# pg_stat_statements loaded, so that `loadgen bench` and `bench-messaging`
# can say how long the statements took per update (Debian's postgresql.conf
# reads conf.d). A cluster that preloads libraries of its own is left alone.
conf_dir=/etc/postgresql/$PG_VERSION/main
if [ -d "$conf_dir/conf.d" ] && [ ! -f "$conf_dir/conf.d/orchestrator.conf" ] &&
  ! grep -rqsE '^[[:space:]]*shared_preload_libraries' "$conf_dir/postgresql.conf" "$conf_dir/conf.d"; then
  echo "shared_preload_libraries = 'pg_stat_statements'" > "$conf_dir/conf.d/orchestrator.conf"
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
  say "starting cluster $PG_VERSION/main"
  pg_ctlcluster "$PG_VERSION" main start
fi

for _ in $(seq 1 60); do
  if su postgres -c "$PG_BIN/pg_isready -q -h /var/run/postgresql"; then break; fi
  sleep 0.5
done

# The URL's password for the postgres user (TCP connections use scram).
password=$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(u.urlparse(sys.argv[1]).password or ""))' "$DATABASE_URL")
user=$(python3 -c 'import sys, urllib.parse as u; print(u.unquote(u.urlparse(sys.argv[1]).username or "postgres"))' "$DATABASE_URL")
if [ -n "$password" ]; then
  su postgres -c "psql -q -v ON_ERROR_STOP=1 -v user=\"$user\" -v pw=\"$password\"" <<'SQL'
SELECT format('CREATE ROLE %I SUPERUSER LOGIN', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" PASSWORD :'pw';
SQL
fi

for _ in $(seq 1 40); do
  if reachable; then say "PostgreSQL is up"; exit 0; fi
  sleep 0.5
done
say "PostgreSQL started but does not accept ${DATABASE_URL%%@*}@…; check /var/log/postgresql/"
exit 1
