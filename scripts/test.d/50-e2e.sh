#!/usr/bin/env bash
# Playwright end-to-end tests of the demo app (e2e/tests/*.test.mjs, see e2e/README.md) in
# Debian's Chromium (playwright-core, never a downloaded browser). Builds the demo once
# (trunk build --release, into a temporary directory of its own), starts a real hub in dev
# mode and a static server for the page on free loopback ports, runs the tests with `node
# --test` under a time bound, and stops everything on exit. Screenshots, page console logs
# and the latency numbers go to an artifacts directory outside the clone (printed at the
# start and the end).
#   bash scripts/test.d/50-e2e.sh            # every test
#   bash scripts/test.d/50-e2e.sh 01 04      # the tests whose file names contain 01 or 04
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh
source scripts/lib.sh
export TRUNK_SKIP_VERSION_CHECK=true
for tool in trunk wasm-bindgen wasm-opt node redis-cli curl /usr/bin/chromium; do
  command -v "$tool" >/dev/null || { echo "50-e2e: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
node -e "require('playwright-core')" 2>/dev/null || { echo "50-e2e: playwright-core not installed (run scripts/setup.sh)" >&2; exit 1; }

E2E_HOME="${RECACHED_E2E_HOME:-$HOME/.cache/recached-e2e}"
export E2E_ARTIFACTS="$E2E_HOME/artifacts/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$E2E_ARTIFACTS"
echo "50-e2e: artifacts in $E2E_ARTIFACTS"

WORK="$(mktemp -d)"
# This run's own build of the page (removed on exit): concurrent runs never share it.
DIST="$WORK/dist"
export E2E_PIDS="$WORK/pids"
: >"$E2E_PIDS"
cleanup() {
  # Everything this step and its tests started: the hub, the page server, browsers,
  # the tests' own hubs.
  while read -r pid; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done <"$E2E_PIDS"
  sleep 0.2
  while read -r pid; do [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true; done <"$E2E_PIDS"
  rm -rf "$WORK"
}
trap cleanup EXIT

# The one release build of the demo (incremental when the target dir is warm).
echo "50-e2e: trunk build --release → $DIST"
started=$SECONDS
if ! timeout 1500 trunk build --release --dist "$DIST" >"$E2E_ARTIFACTS/trunk.log" 2>&1; then
  tail -40 "$E2E_ARTIFACTS/trunk.log" >&2
  echo "50-e2e: trunk build failed (log: $E2E_ARTIFACTS/trunk.log)" >&2
  exit 1
fi
echo "50-e2e: demo built in $((SECONDS - started)) s ($(du -k "$DIST"/*.wasm | cut -f1) KiB wasm)"

HUB_BIN="$(release_hub)"
export E2E_HUB_BIN="$HUB_BIN"

RESP_PORT="$(free_port)"
WS_PORT="$(free_port)"
export E2E_HUB_SECRET="e2e-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"$HUB_BIN" --dev --bind 127.0.0.1 --port "$RESP_PORT" --ws-port "$WS_PORT" --sync-secret "$E2E_HUB_SECRET" \
  >"$E2E_ARTIFACTS/hub.log" 2>&1 &
echo $! >>"$E2E_PIDS"
HUB_PID=$!
wait_hub 50-e2e "$HUB_PID" "$E2E_ARTIFACTS/hub.log"
export E2E_HUB_WS="ws://127.0.0.1:$WS_PORT" E2E_HUB_RESP_PORT="$RESP_PORT"

node e2e/lib/static-server.mjs "$DIST" 0 >"$WORK/static.log" 2>&1 &
echo $! >>"$E2E_PIDS"
for _ in $(seq 1 100); do
  grep -q "^serving" "$WORK/static.log" && break
  sleep 0.1
done
E2E_PAGE_URL="$(grep -o 'http://127.0.0.1:[0-9]*/' "$WORK/static.log" || true)"
[ -n "$E2E_PAGE_URL" ] || { cat "$WORK/static.log" >&2; echo "50-e2e: the page server did not start" >&2; exit 1; }
export E2E_PAGE_URL

tests=()
for f in e2e/tests/*.test.mjs; do
  if [ "$#" -eq 0 ]; then tests+=("$f"); continue; fi
  for want in "$@"; do case "$(basename "$f")" in *"$want"*) tests+=("$f"); break ;; esac; done
done
[ "${#tests[@]}" -gt 0 ] || { echo "50-e2e: no test matches $*" >&2; exit 1; }

echo "50-e2e: page $E2E_PAGE_URL, hub $E2E_HUB_WS (RESP $RESP_PORT), ${#tests[@]} test file(s)"
# One file at a time (2 cores; the latency test must not share the machine with another
# browser). Each test has its own timeout; this bounds the whole run.
status=0
timeout 420 node --test --test-concurrency=1 --test-reporter=spec "${tests[@]}" 2>&1 | tee "$E2E_ARTIFACTS/tests.log" || status=$?
grep -h "E2E-LATENCY" "$E2E_ARTIFACTS/tests.log" | sed 's/^ *# *//; s/^/50-e2e: /' || true
echo "50-e2e: artifacts (screenshots, page logs, hub log, latency.json) in $E2E_ARTIFACTS"
exit "$status"
