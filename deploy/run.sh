#!/usr/bin/env bash
# Runs the system locally: the origin daemon on 127.0.0.1:8080 (DuckDB in ./data, the lexical
# embedder, no Redis) and the edge Worker in workerd (`wrangler dev --local`) on
# 127.0.0.1:8787, sharing a tunnel key made for this machine (./data/tunnel.key).
#   curl -H 'Host: headyme.com' http://127.0.0.1:8787/      -> headyme.com's landing page
# Extra arguments go to `heady-origin serve`. EDGE=0 runs the origin alone. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
deploy/cargo-progress.sh cargo build --release -p heady-origin
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/heady-origin"
if [ "${EDGE:-1}" = "0" ]; then
  echo "[run] heady-origin serve $*  (Ctrl-C stops it gracefully)"
  exec "$bin" serve "$@"
fi

mkdir -p data
if [ ! -s data/tunnel.key ]; then
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > data/tunnel.key)
fi
HEADY_TUNNEL_KEY="$(cat data/tunnel.key)"
export HEADY_TUNNEL_KEY WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

echo "[run] heady-origin serve $*"
"$bin" serve "$@" &
origin_pid=$!
trap 'kill "$origin_pid" 2>/dev/null || true; wait "$origin_pid" 2>/dev/null || true' EXIT INT TERM

echo "[run] edge Worker: wrangler dev --local on http://127.0.0.1:8787 (Host header picks the property)"
tests/edge/node_modules/.bin/wrangler dev --local --env local --ip 127.0.0.1 --port 8787 \
  --var "HEADY_TUNNEL_KEY:${HEADY_TUNNEL_KEY}"
