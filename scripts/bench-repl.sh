#!/usr/bin/env bash
# Replication, hub vs Redis in one run: -P 16 writes with and without a replica, full sync
# of 1M keys, bytes of a partial resync after a 10 s break, failover time (hub); prints
# one results table (markdown). Builds the release hub first; Debian's redis-server and
# redis-benchmark run beside it. Every process it starts is killed on exit.
#   ./scripts/bench-repl.sh [--keys N] [--requests N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
cargo build --release -q -p recached-hub --bin recached
exec timeout 1800 "$RECACHED_TOOLS/venv/bin/python" scripts/bench-repl.py --hub-bin "$CARGO_TARGET_DIR/release/recached" --redis-bin "$(command -v redis-server)" "$@"
