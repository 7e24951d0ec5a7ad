#!/usr/bin/env bash
# Runs every test: heady-shared (native and wasm32), the origin daemon (real DuckDB, real
# HTTP, real redis-server processes, kill -9 durability), the embedders' wire formats.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/setup.sh
echo "[test] checking formatting (cargo fmt)"
cargo fmt --all -- --check
echo "[test] building (release profile: one DuckDB build serves tests, benches and the daemon)"
deploy/cargo-progress.sh cargo build --release --workspace --all-targets
echo "[test] checking heady-shared builds for wasm32-unknown-unknown"
cargo build --release -p heady-shared --target wasm32-unknown-unknown
echo "[test] running the tests"
cargo test --release --workspace
