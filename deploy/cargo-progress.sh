#!/usr/bin/env bash
# Runs a cargo command and prints a heartbeat every minute, because DuckDB's bundled C++
# compiles silently for ~20-25 minutes on 2 cores the first time (target/ keeps it after).
set -euo pipefail
start=$SECONDS
( while sleep 60; do
    echo "[build] still running after $(( (SECONDS - start) / 60 )) min: $* (a first build compiles DuckDB's C++, ~20-25 min on 2 cores)"
  done ) &
hb=$!
trap 'kill $hb 2>/dev/null || true' EXIT
"$@"
