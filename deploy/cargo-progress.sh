#!/usr/bin/env bash
# Runs a cargo command and prints a heartbeat every minute, because DuckDB's bundled C++
# compiles silently for ~35 minutes on 2 cores the first time (the whole workspace: 36 min cold today) (target/ keeps it after).
set -euo pipefail
start=$SECONDS
( while sleep 60; do
    echo "[build] still running after $(( (SECONDS - start) / 60 )) min: $* (a first build compiles DuckDB's C++, ~35 min on 2 cores)"
  done ) &
hb=$!
trap 'kill $hb 2>/dev/null || true' EXIT
"$@"
