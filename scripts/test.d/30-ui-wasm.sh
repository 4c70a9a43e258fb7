#!/usr/bin/env bash
# ui-bindings in headless Chromium: the JS API (through the wasm-bindgen surface), TTL on
# real timers, eviction, listeners, the closure/memory leak check and the Leptos hooks.
# One wasm build (feature `leptos` on) serves every browser test binary; the runner is set
# in .cargo/config.toml (wasm-bindgen-test-runner, which drives chromedriver on PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh
export WASM_BINDGEN_TEST_TIMEOUT="${WASM_BINDGEN_TEST_TIMEOUT:-60}"
for tool in wasm-bindgen-test-runner chromedriver chromium; do
  command -v "$tool" >/dev/null || { echo "30-ui-wasm: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
# --tests: the doc examples are native Rust and already ran in the native step.
cargo test -p recached-ui --target wasm32-unknown-unknown --features leptos --tests
