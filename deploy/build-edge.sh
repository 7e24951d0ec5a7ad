#!/usr/bin/env bash
# Builds the edge Worker with worker-build (release): edge/build/worker/shim.mjs and the
# optimised WASM. wrangler.toml's [build] command; deploy/test.sh and deploy/run.sh call it.
# Offline: wasm-bindgen comes from deploy/setup.sh's `cargo install` (same version as the
# pin in edge/Cargo.toml), wasm-opt and esbuild from tests/edge's npm lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
bin="$root/tests/edge/node_modules/.bin"
for tool in wasm-opt esbuild; do
  if [ ! -x "$bin/$tool" ]; then
    echo "[build-edge] $bin/$tool missing: run deploy/setup.sh" >&2
    exit 1
  fi
done
command -v worker-build >/dev/null || { echo "[build-edge] worker-build missing: run deploy/setup.sh" >&2; exit 1; }
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-$(command -v wasm-bindgen)}"
export WASM_OPT_BIN="$bin/wasm-opt"
export ESBUILD_BIN="$bin/esbuild"
cd edge
worker-build --release
