#!/usr/bin/env bash
# HTTP benchmark on 127.0.0.1: the daemon's /api/conductor/route and /api/memory/search beside
# a bare hyper "ok" handler, measured in the same run with wrk (which shares the 2 cores).
# The defense stage is measured as /api/conductor/route on a second daemon with defense on
# (an Enterprise key: identify + exact limiter in Redis + classification on every request)
# against the first, which runs with defense off.
#   deploy/bench-http.sh [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"; conns="${2:-64}"
. deploy/bench/lib.sh --bin heady-origin --example bare_hyper
bare_port=$(free_port); origin_port=$(free_port); defended_port=$(free_port)
redis_url="${HEADY_REDIS_URL:-redis://127.0.0.1:6379}"
if ! redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null & pids+=($!)
  redis_url="redis://127.0.0.1:$redis_port"
  for _ in $(seq 100); do redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
"$target/release/examples/bare_hyper" "127.0.0.1:$bare_port" 2>/dev/null & pids+=($!)
# Memory belongs to accounts, with defense off too: one account's key for the memory routes.
mkey=$("$target/release/heady-origin" keys create --user bench-memory --tier enterprise --clearance internal --data-dir "$work/data" 2>/dev/null)
HEADY_DEFENSE=off HEADY_LOG=warn "$target/release/heady-origin" serve --listen "127.0.0.1:$origin_port" --data-dir "$work/data" & pids+=($!)
origin_pid=$!
key=$("$target/release/heady-origin" keys create --user bench --tier enterprise --data-dir "$work/defended" 2>/dev/null)
HEADY_REDIS_URL="$redis_url" HEADY_LOG=warn "$target/release/heady-origin" serve --listen "127.0.0.1:$defended_port" --data-dir "$work/defended" & pids+=($!)
for port in "$origin_port" "$defended_port"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && break; sleep 0.1; done
done

# 20,000 stored vectors so search has something to search, and a query body.
python3 - "$work" <<'PY'
import json, random, sys
random.seed(7)
work = sys.argv[1]
def vec():
    v = [random.gauss(0, 1) for _ in range(384)]
    n = sum(x * x for x in v) ** 0.5
    return [round(x / n, 6) for x in v]
for b in range(100):
    items = [{"content": f"row {b}-{i}", "embedding": vec()} for i in range(200)]
    open(f"{work}/batch{b}.json", "w").write(json.dumps({"items": items}))
open(f"{work}/search.json", "w").write(json.dumps({"embedding": vec(), "top_k": 10}))
open(f"{work}/route.json", "w").write(json.dumps({"action": "analyze"}))
PY
for b in $(seq 0 99); do
  curl -sf -H "authorization: Bearer $mkey" -H 'content-type: application/json' --data-binary "@$work/batch$b.json" "http://127.0.0.1:$origin_port/api/memory/vectors" >/dev/null
done
for _ in $(seq 1200); do
  curl -sf -H "authorization: Bearer $mkey" "http://127.0.0.1:$origin_port/api/memory/stats" | grep -q '"state":"ready","size":20000,"pending":0' && break; sleep 0.1
done

run() { # name url [body]
  local name=$1 url=$2 body=${3:-}
  local out
  if [ -n "$body" ]; then
    out=$(BODY_FILE="$body" AUTH="${AUTH:-}" wrk -t2 -c"$conns" -d"${secs}s" --latency -s deploy/bench/post.lua "$url")
  else
    out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$url")
  fi
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  printf '%-28s %12s req/s   p50 %8s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
  eval "rps_$4=$rps"
}
echo "# wrk -t2 -c$conns -d${secs}s on 127.0.0.1 (wrk shares the 2 cores)"
run "bare hyper GET /" "http://127.0.0.1:$bare_port/" "" bare
run "POST /api/conductor/route" "http://127.0.0.1:$origin_port/api/conductor/route" "$work/route.json" route
AUTH="Bearer $key" run "POST /api/conductor/route +def" "http://127.0.0.1:$defended_port/api/conductor/route" "$work/route.json" defended
run "GET /health" "http://127.0.0.1:$origin_port/health" "" health
AUTH="Bearer $mkey" run "POST /api/memory/search" "http://127.0.0.1:$origin_port/api/memory/search" "$work/search.json" search
python3 - "$rps_bare" "$rps_route" "$rps_health" "$rps_search" "$rps_defended" <<'PY'
import sys
bare, route, health, search, defended = map(float, sys.argv[1:])
print(f"ratio route/bare  = {route / bare:.2f}  (target >= 0.50)")
print(f"ratio route with defense (Redis limiter) / without = {defended / route:.2f}")
print(f"ratio health/bare = {health / bare:.2f}")
print(f"ratio search/bare = {search / bare:.3f}  (search: one account's 20k x 384-d, filtered HNSW top-10)")
PY
rss=$(ps -o rss= -p "$origin_pid")
echo "daemon RSS after the run: $((rss / 1024)) MiB"
