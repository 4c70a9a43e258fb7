#!/usr/bin/env bash
# The npm package `recached` as a consumer sees it: scripts/build-npm.sh builds it (one
# release build of recached-ui, shared with scripts/bench-browser.sh), the TypeScript
# consumer in ui-bindings/npm-consumer/ type-checks against its .d.ts (`tsc --noEmit`, the
# package installed as node_modules/recached), is bundled with esbuild and runs in
# Debian Chromium (playwright-core) against a real hub: the API checks, and issue 5's
# end-to-end tests 3 (two tabs, one WebSocket, takeover) and 5 (no hub: sharing and
# hydration). Screenshots: $CARGO_TARGET_DIR/artifacts/npm/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh
source scripts/lib.sh
for tool in tsc esbuild node chromium; do
  command -v "$tool" >/dev/null || { echo "35-ui-npm: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done

PKG="$(bash scripts/build-npm.sh | tail -1)"
WORK="$(mktemp -d)"
HUB_PID=""
cleanup() {
  if [ -n "$HUB_PID" ]; then kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# Type-check the consumer against the package, installed the way npm would place it.
cp ui-bindings/npm-consumer/main.ts ui-bindings/npm-consumer/tsconfig.json "$WORK/"
mkdir -p "$WORK/node_modules"
ln -s "$PKG" "$WORK/node_modules/recached"
(cd "$WORK" && tsc --noEmit -p .)
echo "35-ui-npm: tsc --noEmit passed (typescript $(tsc --version | cut -d' ' -f2))"

# Bundle it; the package's init() fetches recached_bg.wasm beside the bundle.
OUT="$WORK/site"
mkdir -p "$OUT"
esbuild "$WORK/main.ts" --bundle --format=esm --target=es2022 --log-level=warning --outfile="$OUT/main.js"
cp "$PKG/recached_bg.wasm" "$OUT/"
cp ui-bindings/npm-consumer/index.html "$OUT/"

# A hub on free loopback ports.
HUB_BIN="$(release_hub)"
RESP_PORT="$(free_port)"
WS_PORT="$(free_port)"
"$HUB_BIN" --port "$RESP_PORT" --ws-port "$WS_PORT" --bind 127.0.0.1 >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
wait_hub 35-ui-npm "$HUB_PID" "$WORK/hub.log"

ARTIFACTS="$CARGO_TARGET_DIR/artifacts/npm"
rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"
OUT="$OUT" HUB_WS="ws://127.0.0.1:$WS_PORT" HUB_HTTP="http://127.0.0.1:$WS_PORT" ARTIFACTS="$ARTIFACTS" \
  timeout 300 node ui-bindings/npm-consumer/run.mjs
