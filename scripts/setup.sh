#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: installs only what is missing.
# Used by both README commands (scripts/run.sh and scripts/test.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${RECACHED_TOOLS:-$HOME/.cache/recached-tools}"
mkdir -p "$TOOLS"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# --- Rust targets -----------------------------------------------------------
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

# --- Debian packages ----------------------------------------------------------
need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
command -v redis-benchmark >/dev/null || need_apt+=(redis-tools)
# Headless browser for ui-bindings' wasm-bindgen-test (scripts/test.d/30-ui-wasm.sh).
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The Debian redis-server package starts a system service on 6379 at install. We never
  # use it and it would take the hub's default port, so refuse service starts for the
  # length of this install (policy-rc.d exit 101) instead of stopping processes afterwards:
  # a redis the user already runs is never touched. An existing policy-rc.d is kept.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && own_policy=1
  fi
  trap '[ "$own_policy" = 1 ] && rm -f "$policy"' EXIT
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
  [ "$own_policy" = 1 ] && rm -f "$policy"
  own_policy=0
  trap - EXIT
fi

# --- wasm-bindgen CLI (must equal the wasm-bindgen crate pinned in Cargo.lock) ---------------
# No --locked: the CLI's own lockfile names a webpki-roots the registry lacks (TOOLCHAIN.md).
WASM_BINDGEN_VERSION=0.2.130
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION (~5 min)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# --- trunk (builds demo-app; Trunk.toml) -------------------------------------------------
# 0.21.14 with --locked: 0.22 needs a newer rustc (TOOLCHAIN.md). ~10 min when missing.
TRUNK_VERSION=0.21.14
if [ "$("$(command -v trunk || echo "$HOME/.cargo/bin/trunk")" --version 2>/dev/null || true)" != "trunk $TRUNK_VERSION" ]; then
  log "cargo install trunk $TRUNK_VERSION (~10 min)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

# --- worker-build (edge-worker's wasm build; scripts/test.d/40-edge.sh) -----------------
WORKER_BUILD_VERSION=0.8.7
if [ "$("$(command -v worker-build || echo "$HOME/.cargo/bin/worker-build")" --version 2>/dev/null || true)" != "$WORKER_BUILD_VERSION" ]; then
  log "cargo install worker-build $WORKER_BUILD_VERSION (~7 min)"
  cargo install worker-build --version "$WORKER_BUILD_VERSION" --locked --force
fi

# --- Python clients (venv) ------------------------------------------------------
VENV="$TOOLS/venv"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating python venv"
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c 'import redis' 2>/dev/null; then
  log "pip install redis"
  "$VENV/bin/pip" install -q 'redis==5.2.1'
fi
# Libraries that run Lua scripts on the server (tests/clients/scripting.py).
if ! "$VENV/bin/python" -c 'import limits, dramatiq, celery, django_redis' 2>/dev/null; then
  log "pip install limits dramatiq celery django-redis"
  "$VENV/bin/pip" install -q 'limits==5.8.0' 'dramatiq==1.17.1' 'celery==5.4.0' 'kombu==5.4.2' \
    'django==5.1.4' 'django-redis==5.4.0' 'redis==5.2.1'
fi

# --- Node clients -----------------------------------------------------------------
NODE_DIR="$TOOLS/node"
mkdir -p "$NODE_DIR"
if [ ! -f "$NODE_DIR/package.json" ] || ! cmp -s "$ROOT/scripts/node-package.json" "$NODE_DIR/package.json"; then
  cp "$ROOT/scripts/node-package.json" "$NODE_DIR/package.json"
  rm -f "$NODE_DIR/.installed"
fi
if [ ! -f "$NODE_DIR/.installed" ]; then
  log "npm install (test clients and tools: binaryen wasm-opt, miniflare, wrangler, playwright-core, typescript)"
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$NODE_DIR/.installed"
fi
