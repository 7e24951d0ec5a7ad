#!/usr/bin/env bash
# Installs what building and testing Heady need. Idempotent: anything present is skipped.
#   - Rust target wasm32-unknown-unknown (heady-shared must build for the edge Worker)
#   - redis-server (tests start their own on free ports), node (runs the wasm32 check), wrk (benchmarks)
set -euo pipefail
say() { echo "[setup] $*"; }

if ! command -v cargo >/dev/null; then
  echo "[setup] cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "rust target wasm32-unknown-unknown: present"
else
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v node >/dev/null || need+=(nodejs)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  say "installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
else
  say "redis-server, node, wrk: present"
fi

# The official `openai` Python client, for the test that runs it against the daemon.
venv="${HEADY_VENV:-$HOME/.cache/heady/venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  say "python venv with openai ($venv): present"
else
  if ! python3 -m venv --help >/dev/null 2>&1; then
    say "installing Debian package python3-venv"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  say "creating $venv with the openai package (PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check openai
fi
