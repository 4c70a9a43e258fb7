#!/usr/bin/env bash
# Benchmark (a program, not a test): local `cache.get` from JS in Chromium against
# `Map.get` — ops/s and the ratio (targets: ≥ 2M ops/s, ≤ 3× Map) — and the size of the
# release wasm of the npm package (raw and gzip -9). Uses the package scripts/build-npm.sh
# builds (shared with scripts/test.d/35-ui-npm.sh). Results: docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
PKG="$(bash scripts/build-npm.sh | tail -1)"
RESULT="$(PKG="$PKG" BENCH="$ROOT/ui-bindings/bench" timeout 300 node ui-bindings/bench/run.mjs)"
RAW="$(stat -c %s "$PKG/recached_bg.wasm")"
GZ="$(gzip -9c "$PKG/recached_bg.wasm" | wc -c)"
RESULT="$RESULT" RAW="$RAW" GZ="$GZ" python3 - <<'PY'
import json, os
r = json.loads(os.environ["RESULT"])
if "error" in r:
    raise SystemExit("bench failed: " + r["error"])
raw, gz = int(os.environ["RAW"]), int(os.environ["GZ"])
print(f"browser           Chromium {r['browser']}")
print(f"cache.get         {r['get'] / 1e6:8.2f} M ops/s   (target >= 2 M)   {'ok' if r['get'] >= 2e6 else 'BELOW TARGET'}")
print(f"Map.get           {r['map'] / 1e6:8.2f} M ops/s")
print(f"Map / cache.get   {r['ratio']:8.2f} x         (target <= 3 x)   {'ok' if r['ratio'] <= 3 else 'ABOVE TARGET'}")
print(f"cache.get, LRU    {r['lru'] / 1e6:8.2f} M ops/s   (allkeys-lru with a cap: every read counted)   {'ok' if r['lru'] >= 2e6 else 'BELOW TARGET'}")
print(f"cache.get, engine {r['engine'] / 1e6:8.2f} M ops/s   (keys with a TTL: every read through wasm and the engine)")
print(f"wasm              {raw / 1024:8.1f} KiB, gzip -9 {gz / 1024:.1f} KiB")
PY
