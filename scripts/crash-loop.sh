#!/usr/bin/env bash
# The kill -9 loop of sync-hub/tests/persistence.rs, longer: writers on several
# connections, SIGKILL at random moments, every acknowledged write checked after each
# restart.
#   ./scripts/crash-loop.sh [--rounds N] [--seconds S] [--fsync always|everysec|no] [--seed N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
cargo build --release -q -p recached-hub --bin recached
exec "$RECACHED_TOOLS/venv/bin/python" sync-hub/tests/clients/crash_loop.py "$CARGO_TARGET_DIR/release/recached" --rounds 50 --seconds 3 "$@"
