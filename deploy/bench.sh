#!/usr/bin/env bash
# The vector-memory benchmark with DuckDB's VSS extension available for the comparison.
# VSS comes from its PyPI package (its version must equal the bundled DuckDB's, 1.5.5) and is
# cached under ~/.cache/heady/vss; without it the benchmark still runs and says VSS was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
vss_dir="${HOME}/.cache/heady/vss"
ext="$vss_dir/vss.duckdb_extension"
if [ ! -f "$ext" ]; then
  mkdir -p "$vss_dir"
  tmp="$(mktemp -d)"
  if python3 -m pip download --quiet --no-deps --only-binary=:all: "duckdb-extension-vss==1.5.5" -d "$tmp"; then
    python3 - "$tmp" "$ext" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(whl) as z:
    name = next(n for n in z.namelist() if n.endswith("vss.duckdb_extension"))
    open(sys.argv[2], "wb").write(z.read(name))
PY
  else
    echo "[bench] could not fetch duckdb-extension-vss; VSS will be skipped"
  fi
  rm -rf "$tmp"
fi
deploy/cargo-progress.sh cargo build --release -p heady-origin --bin heady-origin --example bench_memory
[ -f "$ext" ] && export HEADY_VSS_EXTENSION="$ext"
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
exec "$target/release/examples/bench_memory" "$@"
