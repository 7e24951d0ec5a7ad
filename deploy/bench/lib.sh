# Sourced by the deploy/bench-*.sh scripts after `cd` to the repository root: installs what
# they need, builds the release binaries given as arguments (`--bin X`, `--example Y`), and
# sets `target` (cargo's target directory), `work` (a temporary folder), `pids` (processes
# killed on exit, with `work` removed) and `free_port` (a free TCP port on 127.0.0.1).
#   . deploy/bench/lib.sh --bin heady-origin --example fake_openai
deploy/setup.sh >/dev/null
deploy/cargo-progress.sh cargo build --release -p heady-origin "$@"
target="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
