#!/usr/bin/env bash
# Runs the product: the hub on 127.0.0.1:6379 (RESP) and :6380 (WebSocket sync + HTTP) in
# dev mode (it mints demo tokens, loopback only: docs/protocol.md §14), in memory, and the
# demo app on http://127.0.0.1:8080/. Installs what it needs first (idempotent), builds the
# hub and the demo (release; the demo into ~/.cache/recached-demo/dist, outside the clone).
# Extra arguments go to `recached` (e.g. ./scripts/run.sh --maxmemory 100mb). Ctrl-C stops
# everything.
#   ./scripts/run.sh
# Ports: RECACHED_PORT, RECACHED_WS_PORT, RECACHED_DEMO_PORT. RECACHED_DEMO=0: the hub only
# (not in dev mode).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh

step() { printf '\033[1;32m==> %s\033[0m\n' "$*"; }
RESP_PORT="${RECACHED_PORT:-6379}"
WS_PORT="${RECACHED_WS_PORT:-6380}"
PAGE_PORT="${RECACHED_DEMO_PORT:-8080}"
DEMO_HOME="$HOME/.cache/recached-demo"
DIST="${RECACHED_DEMO_DIST:-$DEMO_HOME/dist}"

step "building recached (release)"
cargo build --release -p recached-hub --bin recached
HUB_BIN="$CARGO_TARGET_DIR/release/recached"

if [ "${RECACHED_DEMO:-1}" = "0" ]; then
  step "starting recached on 127.0.0.1:$RESP_PORT (try: redis-cli -p $RESP_PORT ping)"
  exec "$HUB_BIN" --port "$RESP_PORT" --ws-port "$WS_PORT" "$@"
fi

step "building the demo app (trunk build --release → $DIST; ~10 min the first time, seconds after)"
export TRUNK_SKIP_VERSION_CHECK=true
trunk build --release --dist "$DIST"

HUB_PID="" WEB_PID=""
stop() {
  trap - EXIT INT TERM
  for pid in $WEB_PID $HUB_PID; do kill "$pid" 2>/dev/null || true; done
  for pid in $WEB_PID $HUB_PID; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

# One token secret per machine (not per run): a page left open keeps its dev token across
# a restart of this script, so it reconnects and resends what it wrote meanwhile.
# --sync-secret on the command line (or RECACHED_SYNC_SECRET) wins.
mkdir -p "$DEMO_HOME"
if [ ! -s "$DEMO_HOME/dev-secret" ]; then
  (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$DEMO_HOME/dev-secret")
fi
export RECACHED_SYNC_SECRET="${RECACHED_SYNC_SECRET:-$(cat "$DEMO_HOME/dev-secret")}"

step "starting recached in dev mode on 127.0.0.1:$RESP_PORT (RESP) and :$WS_PORT (sync + HTTP)"
"$HUB_BIN" --dev --bind 127.0.0.1 --port "$RESP_PORT" --ws-port "$WS_PORT" "$@" &
HUB_PID=$!
# Up to 10 min: a hub with persistence loads its data before the sync port answers.
for _ in $(seq 1 6000); do
  curl -sf "http://127.0.0.1:$WS_PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$HUB_PID" 2>/dev/null || { echo "run.sh: recached exited (is port $RESP_PORT or $WS_PORT taken?)" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$WS_PORT/healthz" >/dev/null || { echo "run.sh: recached did not come up" >&2; exit 1; }

node e2e/lib/static-server.mjs "$DIST" "$PAGE_PORT" &
WEB_PID=$!
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$PAGE_PORT/" >/dev/null 2>&1 && break
  kill -0 "$WEB_PID" 2>/dev/null || { echo "run.sh: the page server exited (is port $PAGE_PORT taken? set RECACHED_DEMO_PORT)" >&2; exit 1; }
  sleep 0.1
done

URL="http://127.0.0.1:$PAGE_PORT/"
[ "$WS_PORT" = 6380 ] || URL="$URL?hub=ws://127.0.0.1:$WS_PORT"
printf '\n\033[1;32m==> Recached is running. Open the demo:\033[0m  \033[1m%s\033[0m\n' "$URL"
cat <<MSG
    Open it in two windows (or add ?user=bob) and click around; then, from a shell:
      redis-cli -p $RESP_PORT SET flag:dark-mode on
      redis-cli -p $RESP_PORT SET flag:banner "Hello from redis-cli"
      redis-cli -p $RESP_PORT INCRBY demo:counter 100
    Ctrl-C stops the hub and the page server.

MSG
wait -n "$HUB_PID" "$WEB_PID"
