#!/usr/bin/env bash
# Bulk insert through the HTTP batch API, 100,000 clustered 384-d vectors per run, in four
# shapes, each run N times (default 5; the machine's figures vary by +-15% run to run):
#   JSON numbers, 120 items/request (under the default 1 MiB body), 2 and 4 clients;
#   JSON numbers, 1,000 items/request (HEADY_MAX_BODY_BYTES=16 MiB), 4 clients;
#   base64 float32 (OpenAI's encoding_format "base64"), 400 items/request, 4 clients.
# Prints every run, the medians and their ratios. Usage: deploy/bench-insert.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}"
deploy/cargo-progress.sh cargo build --release -p heady-origin --example bench_memory
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
bench="$target/release/examples/bench_memory"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for i in $(seq "$runs"); do
  echo "[bench-insert] round $i of $runs"
  "$bench" --insert-only --clients 2 | grep '^bulk' | tee -a "$out"
  "$bench" --insert-only --clients 4 | grep '^bulk' | tee -a "$out"
  HEADY_MAX_BODY_BYTES=16777216 "$bench" --insert-only --clients 4 --batch 1000 | grep '^bulk' | tee -a "$out"
  "$bench" --insert-only --clients 4 --batch 400 --base64 | grep '^bulk' | tee -a "$out"
done
python3 - "$out" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.search(r"\((.*?)\): (\d+) vectors/s", line)
    if m:
        runs.setdefault(m.group(1), []).append(int(m.group(2)))
print("\nmedians (vectors/s):")
med = {}
for shape, v in runs.items():
    med[shape] = statistics.median(v)
    print(f"  {med[shape]:>8,.0f}  (min {min(v):,}, max {max(v):,})  {shape}")
keys = list(med)
if len(keys) == 4:
    base = med[keys[1]]
    print(f"ratios to JSON/120 items/4 clients: 2 clients {med[keys[0]] / base:.2f}x, "
          f"1000 items {med[keys[2]] / base:.2f}x, base64 {med[keys[3]] / base:.2f}x")
PY
