#!/usr/bin/env bash
# Fuzzes, each for a bounded time, the origin's cloudflared config parser/validator/matcher/
# renderer (heady_tunnel_config::fuzz::tunnel_config; its tests run them on the seeds) and the
# parsers of PQC-signed requests (heady_shared::http_sig::fuzz).
#   deploy/fuzz.sh            # 60 s
#   FUZZ_SECONDS=600 deploy/fuzz.sh
# cargo-fuzz needs a nightly compiler (for -Zsanitizer); without the nightly toolchain the
# stable one is used with RUSTC_BOOTSTRAP=1. Crashes land in origin/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
fuzz_dir="$PWD/origin/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "[fuzz] installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

corpus="$fuzz_dir/corpus/tunnel_config"
mkdir -p "$corpus"
echo "[fuzz] tunnel_config for ${seconds}s"
# The first corpus directory collects new inputs; the checked-in seeds are read only.
cargo "${toolchain[@]}" fuzz run --fuzz-dir "$fuzz_dir" tunnel_config \
    "$corpus" "$fuzz_dir/seeds/tunnel_config" -- \
    -dict="$fuzz_dir/tunnel_config.dict" -max_total_time="$seconds" -max_len=4096 -timeout=10

corpus="$fuzz_dir/corpus/http_sig"
mkdir -p "$corpus"
echo "[fuzz] http_sig for ${seconds}s"
cargo "${toolchain[@]}" fuzz run --fuzz-dir "$fuzz_dir" http_sig \
    "$corpus" "$fuzz_dir/seeds/http_sig" -- -max_total_time="$seconds" -max_len=8192 -timeout=10
