#!/usr/bin/env bash
# The randomized fault test of sync-hub/tests/replication.rs, longer: a primary and its
# designated replica under writes confirmed by WAIT 1, with partitions, SIGSTOP and SIGKILL
# of either node at random; every confirmed write checked, the two copies compared, and
# no moment where both nodes acknowledged writes.
#   ./scripts/repl-faults.sh [--rounds N] [--seed N] [--timeout-ms T]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
cargo build --release -q -p recached-hub --bin recached
exec "$RECACHED_TOOLS/venv/bin/python" sync-hub/tests/clients/repl_faults.py "$CARGO_TARGET_DIR/release/recached" --rounds 40 "$@"
