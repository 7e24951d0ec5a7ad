#!/usr/bin/env bash
# Runs the system locally: the origin daemon on 127.0.0.1:8080 (DuckDB in ./data, the local
# embedding model deploy/setup.sh installs, no Redis) and the edge Worker in workerd (`wrangler dev --local`) on
# 127.0.0.1:8787, talking over a post-quantum hybrid tunnel session: an edge and an origin
# identity are made for this machine once (./data/edge-identity.key, ./data/origin-identity.key)
# and each side pins the other's fingerprint.
#   curl -H 'Host: headyme.com' http://127.0.0.1:8787/      -> headyme.com's landing page
# Extra arguments go to `heady-origin serve`. EDGE=0 runs the origin alone. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
export HEADY_EMBEDDER_MODEL_DIR="${HEADY_EMBEDDER_MODEL_DIR:-${HEADY_MODEL_CACHE:-$HOME/.cache/heady/models}/all-MiniLM-L6-v2}"
deploy/cargo-progress.sh cargo build --release -p heady-origin
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/heady-origin"
if [ "${EDGE:-1}" = "0" ]; then
  echo "[run] heady-origin serve $*  (Ctrl-C stops it gracefully)"
  exec "$bin" serve "$@"
fi

mkdir -p data
for role in edge origin; do
  if [ ! -s "data/$role-identity.key" ]; then
    "$bin" tunnel identity new --role "$role" --out "data/$role-identity.key" >/dev/null
  fi
done
edge_fingerprint="$("$bin" tunnel identity show --key-file data/edge-identity.key)"
origin_fingerprint="$("$bin" tunnel identity show --key-file data/origin-identity.key)"
export HEADY_TUNNEL_AUTH=pq-hybrid HEADY_TUNNEL_IDENTITY_FILE=data/origin-identity.key \
  HEADY_TUNNEL_EDGE_IDENTITIES="$edge_fingerprint" \
  WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
echo "[run] tunnel: edge $edge_fingerprint, origin $origin_fingerprint (pq-hybrid sessions)"

echo "[run] heady-origin serve $*"
"$bin" serve "$@" &
origin_pid=$!
trap 'kill "$origin_pid" 2>/dev/null || true; wait "$origin_pid" 2>/dev/null || true' EXIT INT TERM

echo "[run] edge Worker: wrangler dev --local on http://127.0.0.1:8787 (Host header picks the property)"
tests/edge/node_modules/.bin/wrangler dev --local --env local --ip 127.0.0.1 --port 8787 \
  --var "TUNNEL_AUTH:pq-hybrid" --var "HEADY_ORIGIN_IDENTITIES:${origin_fingerprint}" \
  --var "HEADY_TUNNEL_IDENTITY:$(cat data/edge-identity.key)"
