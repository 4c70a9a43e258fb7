#!/usr/bin/env bash
# RECACHED_SYNC_TARGET for the edge hub: `RECACHED_SYNC_TARGET=edge-worker/tests/launcher.sh
# cargo test -p recached-hub --test 'sync_*'` (after a worker-build; see docs/edge.md).
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$DIR/../.." && pwd)"
# shellcheck source=/dev/null
source "$ROOT/scripts/env.sh"
exec node "$DIR/launcher.cjs" "$@"
