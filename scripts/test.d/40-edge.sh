#!/usr/bin/env bash
# Edge hub (edge-worker/): the engine in a Cloudflare Durable Object, run locally.
#   1. host-side unit tests of the crate (settings, storage codec, HTTP API mapping)
#   2. one worker-build (wasm, offline: wasm-bindgen, wasm-opt and esbuild from this machine)
#   3. edge-worker/tests/edge.test.cjs under Miniflare 4: persistence across a hard kill of
#      the runtime, expiry through the alarm with no client, delivery after hibernation,
#      the @upstash/redis battery with a read-only token
#   4. every sync conformance suite (sync-hub/tests/sync_*.rs) against the edge hub, through
#      edge-worker/tests/launcher.sh (RECACHED_SYNC_TARGET)
#   5. ui-bindings (the npm package) in Chromium: two pages sync through the edge hub
#   6. `wrangler dev` on a free loopback port: serves /healthz and a command
# Everything listens on 127.0.0.1 only and every process started here is stopped on exit.
#   RECACHED_EDGE_SKIP_SUITES=1  skip step 4 (when iterating on the worker)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh
source scripts/lib.sh

log() { printf '\033[1;34m[edge]\033[0m %s\n' "$*"; }
NODE_BIN="$RECACHED_TOOLS/node/node_modules"
# worker-build must not download anything (TOOLCHAIN.md, "Edge worker").
export WASM_BINDGEN_BIN="$(command -v wasm-bindgen)"
export WASM_OPT_BIN="$NODE_BIN/binaryen/bin/wasm-opt"
export ESBUILD_BIN="$NODE_BIN/@esbuild/linux-x64/bin/esbuild"
export WRANGLER_SEND_METRICS=false DO_NOT_TRACK=1 CI=1

PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
}
trap cleanup EXIT

log "unit tests (host)"
cargo test -q -p recached-edge 2>&1 | grep -E '^test result|FAILED|panicked'
test "${PIPESTATUS[0]}" -eq 0

log "worker-build --profile edge"
start=$(date +%s)
(cd edge-worker && timeout 1500 worker-build --profile edge 2>&1 | grep -E 'error|warning: unused|Done|index.js' || true)
test -s edge-worker/build/index.js && test -s edge-worker/build/index_bg.wasm
log "built in $(( $(date +%s) - start )) s: $(du -k edge-worker/build/index_bg.wasm | cut -f1) KiB wasm"

log "persistence, alarm, hibernation, @upstash/redis (Miniflare)"
timeout 300 node edge-worker/tests/edge.test.cjs

if [ "${RECACHED_EDGE_SKIP_SUITES:-0}" != 1 ]; then
  log "sync conformance suites against the edge hub"
  RECACHED_SYNC_TARGET="$ROOT/edge-worker/tests/launcher.sh" timeout 900 \
    cargo test --release -p recached-hub --test 'sync_*' 2>&1 | grep -E '^test |test result|SKIPPED|panicked|FAILED|sync convergence|seed|slow consumer|clock skew|hostile flood' 
  test "${PIPESTATUS[0]}" -eq 0
fi

log "ui-bindings in Chromium against the edge hub (two pages, playwright-core)"
# The npm package (scripts/build-npm.sh, shared with 35-ui-npm) and the consumer page of
# ui-bindings/npm-consumer in its "tab" mode, bundled the way 35-ui-npm bundles it.
PKG="$(bash scripts/build-npm.sh | tail -1)"
WORK="$(mktemp -d)"
cp ui-bindings/npm-consumer/main.ts ui-bindings/npm-consumer/tsconfig.json "$WORK/"
mkdir -p "$WORK/node_modules" "$WORK/site"
ln -s "$PKG" "$WORK/node_modules/recached"
esbuild "$WORK/main.ts" --bundle --format=esm --target=es2022 --log-level=warning --outfile="$WORK/site/main.js"
cp "$PKG/recached_bg.wasm" ui-bindings/npm-consumer/index.html "$WORK/site/"
SITE="$WORK/site" ARTIFACTS="$CARGO_TARGET_DIR/artifacts/edge" timeout 180 node edge-worker/tests/browser.mjs
rm -rf "$WORK"

log "wrangler dev (loopback, no account)"
PORT="$(free_port)"
WLOG=$(mktemp)
# The same wrangler.toml without its [build] step: the worker was built above.
sed '/^\[build\]/,/^$/d' edge-worker/wrangler.toml > edge-worker/.wrangler-smoke.toml
(cd edge-worker && exec wrangler dev -c .wrangler-smoke.toml --ip 127.0.0.1 --port "$PORT" --inspector-port 0 \
   --persist-to "$(mktemp -d)" --log-level warn >"$WLOG" 2>&1) &
PIDS+=($!)
ok=0
for _ in $(seq 1 240); do
  if curl -sf -m 2 "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.5
done
if [ "$ok" != 1 ]; then tail -40 "$WLOG"; echo "wrangler dev did not serve /healthz" >&2; exit 1; fi
r=$(curl -s -m 5 -X POST -d '["INCR","edge:smoke"]' "http://127.0.0.1:$PORT/v1/ns/smoke/")
[ "$r" = '{"result":1}' ] || { tail -40 "$WLOG"; echo "wrangler dev command: $r" >&2; exit 1; }
kill -INT "${PIDS[-1]}" 2>/dev/null || true
log "edge hub: all passed"
