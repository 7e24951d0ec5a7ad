#!/usr/bin/env bash
# Pipeline overhead on 127.0.0.1: the same chat request sent straight to the fake
# OpenAI-compatible provider and through the daemon's /v1/chat/completions (all nine stages,
# one provider call), measured with wrk in the same run (wrk, the fake and the daemon share
# the 2 cores). Prints added p50 / p99 and the throughput ratio.
# The fake answers at once (CPU-bound: the worst case for the ratio) or after a model latency.
# KEYED=1 sends an Enterprise account's key, so each request's usage is recorded for the
# account (anonymous requests are only counted in Prometheus).
#   [KEYED=1] deploy/bench-pipeline.sh [seconds=10] [connections=32] [fake_latency_ms=0]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; conns="${2:-32}"; latency="${3:-0}"
. deploy/bench/lib.sh --bin heady-origin --example fake_openai
fake_port=$(free_port); origin_port=$(free_port)
"$target/release/examples/fake_openai" "127.0.0.1:$fake_port" "$latency" 2>/dev/null & pids+=($!)
# Slots for every wrk connection, so the figure is the pipeline's cost, not queueing policy.
cat >"$work/heady.toml" <<TOML
[pipeline]
max_concurrency = $conns
TOML
auth=""
if [ "${KEYED:-0}" = 1 ]; then
  auth="Bearer $("$target/release/heady-origin" keys create --user bench --tier enterprise --data-dir "$work/data" 2>/dev/null)"
fi
HEADY_LOG=warn HEADY_DEFENSE=off HEADY_OPENAI_BASE_URL="http://127.0.0.1:$fake_port/v1" \
  "$target/release/heady-origin" serve --config "$work/heady.toml" --listen "127.0.0.1:$origin_port" --data-dir "$work/data" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$origin_port/ready" >/dev/null && break; sleep 0.1; done
echo '{"model":"heady","messages":[{"role":"user","content":"Say hello in five words."}]}' >"$work/chat.json"
# Warm both paths (connection pools, model discovery), and check the answer.
curl -sf -H 'content-type: application/json' ${auth:+-H "authorization: $auth"} --data-binary "@$work/chat.json" "http://127.0.0.1:$origin_port/v1/chat/completions" | grep -q '"provider":"openai"'

ms() { # wrk latency ("1.23ms", "850.00us", "1.02s") -> milliseconds
  python3 -c 'import sys; v=sys.argv[1]; u=[("us",1e-3),("ms",1.0),("s",1e3)]
for s,f in u:
    if v.endswith(s) and (s!="s" or not v.endswith(("us","ms"))): print(float(v[:-len(s)])*f); break' "$1"
}
run() { # name url var
  local out rps p50 p99 non2xx
  out=$(AUTH="$auth" BODY_FILE="$work/chat.json" wrk -t2 -c"$conns" -d"${secs}s" --latency -s deploy/bench/post.lua "$2")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  printf '%-34s %10s req/s   p50 %9s   p99 %9s   non-2xx %s\n' "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
  eval "rps_$3=$rps; p50_$3=$(ms "$p50"); p99_$3=$(ms "$p99")"
}
echo "# wrk -t2 -c$conns -d${secs}s on 127.0.0.1, POST chat (non-streaming), fake provider latency ${latency} ms${auth:+, with an Enterprise key}"
run "direct: fake provider" "http://127.0.0.1:$fake_port/v1/chat/completions" direct
run "via heady /v1/chat/completions" "http://127.0.0.1:$origin_port/v1/chat/completions" heady
python3 - "$rps_direct" "$rps_heady" "$p50_direct" "$p50_heady" "$p99_direct" "$p99_heady" <<'PY'
import sys
rd, rh, p50d, p50h, p99d, p99h = map(float, sys.argv[1:])
print(f"added p50        = {p50h - p50d:.3f} ms  (target <= 1 ms)")
print(f"added p99        = {p99h - p99d:.3f} ms  (target <= 5 ms)")
print(f"throughput ratio = {rh / rd:.2f}  (target >= 0.70)")
PY
curl -s "http://127.0.0.1:$origin_port/metrics" | grep -E '^heady_pipeline_stage_seconds_(sum|count)' | python3 -c '
import sys, collections
d = collections.defaultdict(dict)
for line in sys.stdin:
    name, val = line.rsplit(" ", 1)
    stage = name.split("stage=\"")[1].split("\"")[0]
    d[stage]["sum" if "_sum" in name else "count"] = float(val)
order = ["entry", "ingest", "plan", "execute", "recover", "critique", "optimize", "finalize", "monitor"]
means = [(s, 1e6 * d[s]["sum"] / max(d[s]["count"], 1)) for s in order if s in d]
print("mean per stage (us): " + ", ".join("%s %.1f" % m for m in means))'
