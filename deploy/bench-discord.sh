#!/usr/bin/env bash
# Discord interactions on 127.0.0.1, against the daemon with a fake OpenAI-compatible provider
# (answers at once) and a fake of Discord's webhook API, signed with PyNaCl (an Ed25519
# library independent of ours). In the same run: GET /health as the baseline, a signed PING,
# a signed /ask's deferred acknowledgement (Discord drops an interaction not acknowledged
# within 3 s), and the time from that acknowledgement to the answer's PATCH at the fake.
# Sequential requests, one client; prints p50 / p99 and the ratios.
#   deploy/bench-discord.sh [requests=300]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-300}"
. deploy/bench/lib.sh --bin heady-origin --example fake_openai
fake_port=$(free_port); origin_port=$(free_port); discord_port=$(free_port)
"$target/release/examples/fake_openai" "127.0.0.1:$fake_port" 0 2>/dev/null & pids+=($!)
"$HOME/.cache/heady/venv/bin/python" deploy/bench/discord.py keygen "$work/key"
HEADY_LOG=warn HEADY_DEFENSE=off HEADY_EMBEDDER=lexical HEADY_OPENAI_BASE_URL="http://127.0.0.1:$fake_port/v1" \
  HEADY_DISCORD_APPLICATION_ID=123456789012345678 HEADY_DISCORD_PUBLIC_KEY="$(cat "$work/key.pub")" \
  HEADY_DISCORD__API_BASE="http://127.0.0.1:$discord_port/api/v10" \
  "$target/release/heady-origin" serve --listen "127.0.0.1:$origin_port" --data-dir "$work/data" & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$origin_port/ready" >/dev/null && break; sleep 0.1; done
"$HOME/.cache/heady/venv/bin/python" deploy/bench/discord.py run "$work/key" "http://127.0.0.1:$origin_port" "$discord_port" "$n"
