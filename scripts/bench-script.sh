#!/usr/bin/env bash
# EVALSHA of a small read-modify-write script on the hub and on Debian's redis-server, in
# one run, with redis-benchmark: prints req/s and p50 of each and the hub/redis ratio.
#   ./scripts/bench-script.sh [-n REQUESTS]
# Both servers listen on loopback free ports and are stopped on exit.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/env.sh"
N=200000
[ "${1:-}" = "-n" ] && N="$2"
BIN="$CARGO_TARGET_DIR/release/recached"
(cd "$ROOT" && cargo build --release -p recached-hub -q)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HP=$(free_port); RP=$(free_port)
"$BIN" --port "$HP" --ws-port 0 --bind 127.0.0.1 >/dev/null 2>&1 & HUB=$!
redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 & RED=$!
trap 'kill $HUB $RED 2>/dev/null || true' EXIT
for p in "$HP" "$RP"; do
  for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
SCRIPT="local v = redis.call('incr', KEYS[1]) if v > 1000000 then redis.call('set', KEYS[1], 0) end return v"
run() { # port clients key
  local sha; sha=$(redis-cli -p "$1" script load "$SCRIPT")
  redis-benchmark -p "$1" -n "$N" -c "$2" -q evalsha "$sha" 1 "$3" 2>&1 | tr '\r' '\n' | grep 'requests per second' | tail -1
}
printf '| clients | hub req/s | redis req/s | hub/redis | hub p50 ms | redis p50 ms |\n|---|---:|---:|---:|---:|---:|\n'
for c in 50 1; do
  key='key:__rand_int__'; [ "$c" = 1 ] && key=key
  h=$(run "$HP" "$c" "$key"); r=$(run "$RP" "$c" "$key")
  hr=$(sed -E 's/.*: ([0-9.]+) requests.*/\1/' <<<"$h"); rr=$(sed -E 's/.*: ([0-9.]+) requests.*/\1/' <<<"$r")
  hp=$(sed -E 's/.*p50=([0-9.]+).*/\1/' <<<"$h"); rp=$(sed -E 's/.*p50=([0-9.]+).*/\1/' <<<"$r")
  printf '| %s | %.0f | %.0f | %.2f | %s | %s |\n' "$c" "$hr" "$rr" "$(python3 -c "print($hr/$rr)")" "$hp" "$rp"
done
