#!/usr/bin/env bash
# Installs the real OpenFeature SDKs the `openfeature` tests drive, from the pinned lists in
# openfeature/: a Python venv in target/openfeature/venv and the Node packages in
# openfeature/node/node_modules. Reinstalls only when a pinned list changes. Also writes
# target/openfeature/protoc (grpcio-tools' protoc), which .cargo/config.toml gives the Rust flagd
# provider's build script: this machine has no protoc.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/openfeature
mkdir -p "$dir"

python_stamp=$(sha256sum openfeature/python/requirements.txt | cut -d' ' -f1)
if [ ! -x "$dir/venv/bin/python" ] || [ "$(cat "$dir/python.stamp" 2>/dev/null)" != "$python_stamp" ]; then
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r openfeature/python/requirements.txt
  echo "$python_stamp" > "$dir/python.stamp"
fi

node_stamp=$(sha256sum openfeature/node/package-lock.json | cut -d' ' -f1)
if [ ! -d openfeature/node/node_modules ] || [ "$(cat "$dir/node.stamp" 2>/dev/null)" != "$node_stamp" ]; then
  npm ci --prefix openfeature/node --no-audit --no-fund --loglevel=error
  echo "$node_stamp" > "$dir/node.stamp"
fi

protoc="$dir/protoc"
if [ ! -x "$protoc" ]; then
  printf '#!/bin/sh\nexec "%s" -m grpc_tools.protoc "$@"\n' "$(pwd)/$dir/venv/bin/python" > "$protoc"
  chmod +x "$protoc"
fi
