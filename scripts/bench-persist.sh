#!/usr/bin/env bash
# Hub vs Redis with persistence on (AOF always/everysec, BGSAVE under load, load at start,
# AOF size, pipelined writes), in one run; prints one results table (markdown).
# Does not build: it uses the release hub already in $CARGO_TARGET_DIR (or $HUB_BIN) and
# Debian's redis-server, then runs scripts/bench-persist.py (see its --help) with the
# project venv's python (redis-py). Extra arguments go to it. Bounded (--max-seconds,
# default 3600); the Python side kills every process it starts on exit or signal.
#   ./scripts/bench-persist.sh
#   ./scripts/bench-persist.sh --keys 20000 --seconds 2       # quick check
#   ./scripts/bench-persist.sh --only 1,3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
HUB_BIN="${HUB_BIN:-$CARGO_TARGET_DIR/release/recached}"
PY="$RECACHED_TOOLS/venv/bin/python"
[ -x "$HUB_BIN" ] || { echo "no hub binary at $HUB_BIN (cargo build --release -p recached-hub --bin recached)" >&2; exit 1; }
[ -x "$PY" ] || { echo "no venv python at $PY (./scripts/setup.sh installs it)" >&2; exit 1; }
for tool in redis-server redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
exec "$PY" scripts/bench-persist.py --hub-bin "$HUB_BIN" --redis-bin "$(command -v redis-server)" "$@"
