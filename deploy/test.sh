#!/usr/bin/env bash
# Runs every test: heady-shared (native and wasm32), the origin daemon (real DuckDB, real
# HTTP, real redis-server processes, kill -9 durability), the embedders' wire formats, the mesh's
# post-quantum TLS key exchange against an independent implementation (aws-lc-rs), the
# edge's routes/pages against deploy/properties.toml, and the built edge Worker in workerd
# (Miniflare) against a real heady-origin.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
# The local model (origin/tests/local_embedder.rs). Daemons the tests start as processes use
# the lexical embedder unless a test asks for another: their assertions are about lexical vectors.
export HEADY_EMBEDDER_MODEL_DIR="${HEADY_EMBEDDER_MODEL_DIR:-${HEADY_MODEL_CACHE:-$HOME/.cache/heady/models}/all-MiniLM-L6-v2}"
export HEADY_EMBEDDER=lexical
echo "[test] checking formatting (cargo fmt)"
cargo fmt --all -- --check
echo "[test] building (release profile: one DuckDB build serves tests, benches and the daemon)"
deploy/cargo-progress.sh cargo build --release --workspace --all-targets
echo "[test] lints: cargo clippy --workspace --all-targets -D warnings (release profile: shares the build above)"
cargo clippy --release --workspace --all-targets -- -D warnings
echo "[test] checking heady-shared builds for wasm32-unknown-unknown"
cargo build --release -p heady-shared --target wasm32-unknown-unknown
echo "[test] running the tests"
cargo test --release --workspace --no-fail-fast
echo "[test] X25519MLKEM768 interop: heady-pq-kx against rustls's aws-lc-rs provider (own workspace)"
cargo test --release --manifest-path origin/pq-kx/interop/Cargo.toml
echo "[test] building the edge Worker and checking the bundle: wrangler deploy --dry-run --outdir dist"
# wrangler's [build] command is deploy/build-edge.sh (worker-build --release).
tests/edge/node_modules/.bin/wrangler deploy --dry-run --outdir dist
wasm=edge/build/index_bg.wasm
echo "[test] edge WASM after wasm-opt: $(stat -c %s "$wasm") bytes raw, $(gzip -9 -c "$wasm" | wc -c) bytes gzip"
echo "[test] edge Worker in workerd (Miniflare) against heady-origin"
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
(cd tests/edge && HEADY_ORIGIN_BIN="$target_dir/release/heady-origin" node --test --test-concurrency=1)
