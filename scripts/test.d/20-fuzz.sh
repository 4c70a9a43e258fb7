#!/usr/bin/env bash
# Fuzz step: runs every fuzz target (fuzz/) for a bounded time and fails on any panic,
# out-of-bounds access, broken property or oversized allocation.
#
#   RECACHED_FUZZ=auto       (default) libFuzzer via cargo-fuzz when cargo-fuzz 0.13.2 is
#                            already installed, else the stable fuzz-smoke driver
#   RECACHED_FUZZ=libfuzzer  install cargo-fuzz if missing (~6 min), then libFuzzer
#   RECACHED_FUZZ=smoke      the stable driver only (no install, no nightly)
#   RECACHED_FUZZ_SECONDS=N  seconds per target (default 20)
#
# cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP=1 lets the stable 1.95 compiler accept
# them. A failing input is saved under fuzz/artifacts/<target>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
source scripts/env.sh

SECS="${RECACHED_FUZZ_SECONDS:-20}"
MODE="${RECACHED_FUZZ:-auto}"
CARGO_FUZZ_VERSION="0.13.2"
TARGETS=(resp_command resp_frame execute snapshot_decode aof_decode stream_decode)
# Its own target dir: sanitizer flags would otherwise rebuild the main workspace's engine.
export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"

log() { printf '\033[1;34m[fuzz]\033[0m %s\n' "$*"; }

have_cargo_fuzz() { cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; }

if [ "$MODE" = libfuzzer ] && ! have_cargo_fuzz; then
  log "cargo install cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

cd fuzz
log "building the stable driver"
cargo build --release -q -p recached-fuzz-targets --bin fuzz-smoke
SMOKE="$CARGO_TARGET_DIR/release/fuzz-smoke"

use_libfuzzer=no
if [ "$MODE" != smoke ] && have_cargo_fuzz; then
  log "building libFuzzer targets (cargo fuzz, RUSTC_BOOTSTRAP=1)"
  if RUSTC_BOOTSTRAP=1 cargo fuzz build -O 2>&1 | tail -3; then
    use_libfuzzer=yes
  elif [ "$MODE" = libfuzzer ]; then
    echo "cargo fuzz build failed" >&2
    exit 1
  else
    log "cargo fuzz build failed: falling back to the stable driver"
  fi
fi

if [ "$use_libfuzzer" = yes ]; then
  "$SMOKE" all --write-seeds corpus
  for t in "${TARGETS[@]}"; do
    log "libFuzzer: $t for ${SECS}s"
    out="artifacts/$t.log"
    mkdir -p artifacts
    status=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "corpus/$t" -- \
      -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=1024 >"$out" 2>&1 || status=$?
    grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units)' "$out" || true
    if [ "$status" -ne 0 ]; then
      tail -60 "$out" >&2
      echo "fuzz target $t failed (log: fuzz/$out)" >&2
      exit 1
    fi
  done
else
  log "fuzz-smoke: ${TARGETS[*]}, ${SECS}s each"
  "$SMOKE" all --seconds "$SECS"
fi
log "no failures"
