#!/usr/bin/env bash
# Runs the product: the hub on 127.0.0.1:6379 (RESP) and :6380 (WebSocket sync + HTTP),
# in memory. Installs what it needs first (idempotent). Extra arguments go to `recached`
# (e.g. ./scripts/run.sh --requirepass secret). Stop with Ctrl-C.
#   ./scripts/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh

printf '\033[1;32m==> %s\033[0m\n' "building recached (release)"
cargo build --release -p recached-hub --bin recached

# Later: the demo app is built and served here too.

printf '\033[1;32m==> %s\033[0m\n' "starting recached on 127.0.0.1:${RECACHED_PORT:-6379} (try: redis-cli -p ${RECACHED_PORT:-6379} ping)"
exec "$CARGO_TARGET_DIR/release/recached" --port "${RECACHED_PORT:-6379}" --ws-port "${RECACHED_WS_PORT:-6380}" "$@"
