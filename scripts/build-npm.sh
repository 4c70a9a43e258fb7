#!/usr/bin/env bash
# Builds the npm package `recached` (the browser cache) into $CARGO_TARGET_DIR/npm/recached,
# outside the clone: one release build of recached-ui (profile wasm-release: opt-level z,
# LTO, panic=abort; without the `leptos` feature — the JS package needs no Leptos), then
# wasm-bindgen --target web (an ES module whose default export `init()` fetches the .wasm
# next to it: works in a browser as is and in bundlers that keep `new URL(…, import.meta.url)`
# assets, e.g. Vite, webpack 5, esbuild with the .wasm copied beside the bundle), then
# wasm-opt -Oz (binaryen 132 from scripts/node-package.json, first on PATH via env.sh).
#
# Prints the package directory on the last line. Steps whose inputs did not change are
# skipped, so scripts/test.d/35-ui-npm.sh and scripts/bench-browser.sh share one build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
for tool in wasm-bindgen wasm-opt; do
  command -v "$tool" >/dev/null || { echo "build-npm: $tool not found (run scripts/setup.sh)" >&2; exit 1; }
done
case "$(wasm-opt --version)" in *"version 132"*) ;; *) echo "build-npm: wasm-opt must be binaryen 132 (TOOLCHAIN.md), got: $(wasm-opt --version)" >&2; exit 1 ;; esac

PKG="$CARGO_TARGET_DIR/npm/recached"
WASM="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/recached_ui.wasm"
cargo build -q -p recached-ui --target wasm32-unknown-unknown --profile wasm-release >&2

VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' ui-bindings/Cargo.toml | head -1)"
if [ ! -f "$PKG/recached_bg.wasm" ] || [ "$WASM" -nt "$PKG/recached_bg.wasm" ] || [ "$ROOT/scripts/build-npm.sh" -nt "$PKG/package.json" ]; then
  STAGE="$(mktemp -d)"
  trap 'rm -rf "$STAGE"' EXIT
  wasm-bindgen --target web --out-dir "$STAGE" --out-name recached "$WASM"
  # The features the Rust wasm32 target enables by default (rustc ≥ 1.82).
  wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-nontrapping-float-to-int \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$STAGE/recached_bg.wasm" -o "$STAGE/recached_bg.opt.wasm"
  mv "$STAGE/recached_bg.opt.wasm" "$STAGE/recached_bg.wasm"
  cp ui-bindings/README.md "$STAGE/README.md"
  cat >"$STAGE/package.json" <<EOF
{
  "name": "recached",
  "version": "$VERSION",
  "description": "Recached in the browser: a Redis-compatible cache in WebAssembly, live-synced from a hub and shared between tabs",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": "./recached.js",
  "module": "./recached.js",
  "types": "./recached.d.ts",
  "exports": {
    ".": { "types": "./recached.d.ts", "default": "./recached.js" },
    "./recached_bg.wasm": "./recached_bg.wasm"
  },
  "files": ["recached.js", "recached.d.ts", "recached_bg.wasm", "recached_bg.wasm.d.ts", "snippets/", "README.md"],
  "sideEffects": ["./snippets/*"],
  "keywords": ["redis", "cache", "wasm", "sync", "broadcastchannel"]
}
EOF
  rm -rf "$PKG"
  mkdir -p "$(dirname "$PKG")"
  cp -r "$STAGE" "$PKG"
fi
echo "$PKG"
