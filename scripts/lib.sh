# Sourced by the test steps (scripts/test.d/*) and benchmarks: the shell they share.

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Prints the release hub binary: RECACHED_BIN, else the workspace's release build (a no-op
# when the native step built it, and never a stale binary).
release_hub() {
  if [ -n "${RECACHED_BIN:-}" ]; then
    echo "$RECACHED_BIN"
    return
  fi
  cargo build --release -q -p recached-hub --bin recached >&2
  echo "$CARGO_TARGET_DIR/release/recached"
}

# wait_hub STEP PID LOG: waits up to 30 s for a hub started with its log in LOG to listen
# on its sync port; fails the step (printing the log) when it exits or does not start.
wait_hub() {
  local step="$1" pid="$2" log="$3"
  for _ in $(seq 1 300); do
    grep -q "Ready to accept connections ws" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; echo "$step: the hub exited" >&2; exit 1; }
    sleep 0.1
  done
  cat "$log" >&2
  echo "$step: the hub did not start" >&2
  exit 1
}
