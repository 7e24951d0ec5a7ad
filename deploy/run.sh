#!/usr/bin/env bash
# Builds and runs the origin daemon locally with embedded defaults: DuckDB in ./data, the
# lexical embedder, no Redis; listening on 127.0.0.1:8080. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
deploy/cargo-progress.sh cargo build --release -p heady-origin
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/heady-origin"
echo "[run] heady-origin serve $*  (Ctrl-C stops it gracefully)"
exec "$bin" serve "$@"
