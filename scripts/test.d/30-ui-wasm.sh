#!/usr/bin/env bash
# ui-bindings in headless Chromium: the JS API (through the wasm-bindgen surface), TTL on
# real timers, eviction, listeners, the closure/memory leak checks, the Leptos hooks, and
# hub sync (`cache.connect`) against a real `recached` process started here.
# One wasm build (feature `leptos` on) serves every browser test binary; the runner is set
# in .cargo/config.toml (wasm-bindgen-test-runner, which drives chromedriver on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh
source scripts/lib.sh
# 120 s rather than 60: the sync binary (1,000 connect/close rounds) took ~30 s on a
# loaded 2-core machine, and the timeout covers a whole test binary.
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-120}"
for tool in wasm-bindgen-test-runner chromedriver chromium; do
  command -v "$tool" >/dev/null || { echo "30-ui-wasm: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done

# The hub for tests/sync.rs, on free loopback ports, stopped on exit.
HUB_BIN="$(release_hub)"
RESP_PORT="$(free_port)"
WS_PORT="$(free_port)"
HUB_LOG="$(mktemp)"
"$HUB_BIN" --port "$RESP_PORT" --ws-port "$WS_PORT" --bind 127.0.0.1 >"$HUB_LOG" 2>&1 &
HUB_PID=$!
trap 'kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; rm -f "$HUB_LOG"' EXIT
wait_hub 30-ui-wasm "$HUB_PID" "$HUB_LOG"
# Read at build time by tests/sync.rs (option_env!): only that test binary rebuilds.
export RECACHED_TEST_WS="ws://127.0.0.1:$WS_PORT"

# --tests: the doc examples are native Rust and already ran in the native step.
cargo test -p recached-ui --target wasm32-unknown-unknown --features leptos --tests
