#!/usr/bin/env bash
# Event ingestion benchmark (issue 5; results in BENCHMARKS.md): a throwaway database with one
# organization, environment and SDK key, the release event service with its drainer, and the
# load generator on one thread. Extra arguments go to `cohort-bench events`.
#
#   bash scripts/bench-events.sh [--concurrency 16] [--duration 20s] ...
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user postgres). Drops its database after.
set -euo pipefail
cd "$(dirname "$0")/.."

db=cohort_bench_events
spool=$(mktemp -d /tmp/cohort-bench-spool.XXXXXX)
psql=(psql -q -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
url="postgres://postgres@127.0.0.1:5432/$db"

cargo build --release --locked -q -p cohort-events -p cohort-bench -p cohort-config

cleanup() {
  [[ -n "${service:-}" ]] && kill "$service" 2>/dev/null && wait "$service" 2>/dev/null
  rm -rf "$spool"
  "${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" || true
}
trap cleanup EXIT

"${psql[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
target/release/cohort-config --database-url "$url" migrate >/dev/null
target/release/cohort-config --database-url "$url" migrate --schema events >/dev/null
target/release/cohort-config --database-url "$url" bootstrap --organization bench >/dev/null

# The SDK key, made the way cohort-db's keys module makes one: a random secret, stored as
# its SHA-256 with a display prefix.
secret="cohort_sdk_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"${psql[@]}" -d "$db" <<SQL
INSERT INTO cohort_config.api_keys (id, organization_id, environment_id, kind, name, prefix, key_hash)
SELECT gen_random_uuid(), e.organization_id, e.id, 'sdk', 'bench sdk', left('$secret', 19),
       sha256(convert_to('$secret', 'UTF8'))
FROM cohort_config.environments e LIMIT 1;
SQL

target/release/cohort-events --database-url "$url" --spool-dir "$spool" \
  --admin-addr 127.0.0.1:9093 --rate-limit-per-environment 0 --log-format json \
  >"$spool.log" 2>&1 &
service=$!
for _ in $(seq 1 50); do
  curl -fs http://127.0.0.1:9093/readyz >/dev/null 2>&1 && break
  sleep 0.2
done

TOKIO_WORKER_THREADS=1 target/release/cohort-bench events --endpoint http://127.0.0.1:50053 \
  --sdk-key "$secret" --batch-size 100 --connections 2 --admin-url http://127.0.0.1:9093 "$@"
