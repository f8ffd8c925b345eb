#!/usr/bin/env bash
# The README's number: from a fresh clone of this repository to the first results table that
# `make dev` prints (units in every arm of the demo experiment). Clones HEAD into a temporary
# directory (its own target directory, so everything is built), runs `make dev` with a fresh
# database, prints the seconds to each milestone, then stops the stack with SIGTERM.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

git clone -q "$repo" "$work/cohort"
cd "$work/cohort"
log="$work/dev.log"
start=$(date +%s)
COHORT_DEV_FRESH=1 setsid make dev >"$log" 2>&1 &
pid=$!

seen_build=""
seen_up=""
while kill -0 "$pid" 2>/dev/null; do
  now=$(( $(date +%s) - start ))
  if [ -z "$seen_build" ] && grep -q "Running \`target/debug/cohort-dev" "$log"; then
    seen_build=1; echo "built (npm ci, Vite build, cargo build): ${now}s"
  fi
  if [ -z "$seen_up" ] && grep -q "console" "$log" && grep -q "simulated users" "$log"; then
    seen_up=1; echo "stack up: ${now}s"
  fi
  # The scorecard's units line with a count in every arm (not "none yet").
  if grep -Eq "^units: [a-z_-]+ [1-9][0-9]*, [a-z_-]+ [1-9]" "$log"; then
    echo "first results table: ${now}s"
    grep -E -B3 -A12 "^units: " "$log" | tail -n 16
    exit 0
  fi
  sleep 1
done
echo "make dev ended before printing results:" >&2
tail -n 30 "$log" >&2
exit 1
