#!/usr/bin/env bash
# Hub vs Redis under redis-benchmark, in one run; prints a results table (markdown).
# Builds the release hub, then runs scripts/bench-hub.py (see its --help); extra
# arguments go to it. Bounded (--max-seconds, default 1800) and kills what it starts.
#   ./scripts/bench-hub.sh
#   ./scripts/bench-hub.sh --rounds 3
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
cargo build --release -q -p recached-hub --bin recached
exec python3 scripts/bench-hub.py --hub-bin "$CARGO_TARGET_DIR/release/recached" "$@"
