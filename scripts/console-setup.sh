#!/usr/bin/env bash
# Installs the console's npm packages (console/node_modules, from console/package-lock.json)
# and builds its page (console/dist), each only when what it depends on changed. `make dev`
# serves the build; `make test` also runs its unit tests and the browser test drives it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target

lock=$(sha256sum console/package-lock.json | cut -d' ' -f1)
if [ ! -d console/node_modules ] || [ "$(cat target/console-npm.stamp 2>/dev/null)" != "$lock" ]; then
  npm ci --prefix console --no-audit --no-fund --loglevel=error
  echo "$lock" > target/console-npm.stamp
fi

# Everything the build reads: the sources and the build's own configuration.
sources=$(find console -path console/node_modules -prune -o -path console/dist -prune -o -type f -print \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -f console/dist/index.html ] || [ "$(cat target/console-build.stamp 2>/dev/null)" != "$sources" ]; then
  npm run build --prefix console --silent
  echo "$sources" > target/console-build.stamp
fi
