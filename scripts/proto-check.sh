#!/usr/bin/env bash
# The gRPC API's contract: `buf lint` (STANDARD and COMMENTS rules, so every element is
# documented) over proto/cohort, then `buf breaking` against the previous commit's protos, so a
# change cannot break clients silently. buf comes from npm (scripts/buf), installed on first
# use and again only when its lock changes. PROTO_BASE picks another commit to compare with.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

tools=scripts/buf
lock=$(sha256sum "$tools/package-lock.json" | cut -d' ' -f1)
if [ ! -x "$tools/node_modules/.bin/buf" ] || [ "$(cat target/buf-npm.stamp 2>/dev/null)" != "$lock" ]; then
  npm ci --prefix "$tools" --no-audit --no-fund --loglevel=error
  echo "$lock" > target/buf-npm.stamp
fi
buf="$tools/node_modules/.bin/buf"

"$buf" lint
echo "buf lint: clean"

base=${PROTO_BASE:-HEAD~1}
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
  echo "buf breaking: skipped: $base is not in this clone (a shallow clone has no history)"
elif ! git cat-file -e "$base:buf.yaml" 2>/dev/null; then
  echo "buf breaking: skipped: $base predates buf.yaml"
else
  # A copy of the base's protos: a git input needs a plain .git directory, which a worktree
  # or a shallow clone may not have.
  old=$(mktemp -d)
  trap 'rm -rf "$old"' EXIT
  git archive "$base" buf.yaml proto | tar -x -C "$old"
  "$buf" breaking --against "$old"
  echo "buf breaking: no breaking change against $(git rev-parse --short "$base")"
fi
