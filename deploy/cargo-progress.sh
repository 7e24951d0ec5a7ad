#!/usr/bin/env bash
# Runs a cargo command and prints a heartbeat every minute, because DuckDB's bundled C++
# compiles silently on 2 cores the first time: the whole workspace took 31 min cold today, up to
# 46 min with other builds running (target/ keeps it after).
set -euo pipefail
start=$SECONDS
( while sleep 60; do
    echo "[build] still running after $(( (SECONDS - start) / 60 )) min: $* (a first build compiles DuckDB's C++: 30-45 min on 2 cores)"
  done ) &
hb=$!
trap 'kill $hb 2>/dev/null || true' EXIT
"$@"
