#!/usr/bin/env bash
# Runs every test of the project. Installs what it needs first (idempotent).
#   ./scripts/test.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
source scripts/env.sh
# Real-client tests (sync-hub/tests/real_clients.rs) fail instead of skipping when a tool is missing.
export RECACHED_REQUIRE_CLIENTS=1

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*"; }

step "engine + hub: cargo test (native)"
cargo test --workspace --release 2>&1

step "engine: wasm32 release build"
cargo build -p recached-engine --target wasm32-unknown-unknown --profile wasm-release

for extra in scripts/test.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra")"
  bash "$extra"
done
step "all tests passed"
