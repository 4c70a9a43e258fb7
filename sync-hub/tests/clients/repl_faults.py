"""Randomized faults against a primary and its designated replica, Jepsen-style.

usage: repl_faults.py HUB_BINARY [--rounds N] [--seed S] [--timeout-ms T]

Two hubs, A (first primary) and B (its designated replica, `--failover-timeout T`), each
reached through its own loopback proxy that the test can cut and blackhole (each node
announces its proxy with `--replica-announce-port`, so after any failover the replica's
link still runs through the primary's proxy). Both run with the AOF on and
both carry `--failover-timeout`, so whichever is the replica is the designated one. Two
writer threads, one per node, write unique keys as fast as they can, each followed by
`WAIT 1 <ms>`; every write `WAIT` confirmed is recorded, and so is every time window in
which a node acknowledged writes. Each round injects one fault at random:

- blackhole the link (both alive, nothing gets through), then heal;
- cut the link (connections reset), then heal;
- SIGSTOP the primary, then SIGCONT;
- SIGKILL the primary, then restart it (same port, same data directory);
- SIGKILL the replica, then restart it.

After each round the test waits for one primary and one synced replica. At the end:
every `WAIT`-confirmed write is on the primary (lost must be 0), the replica's data equals
the primary's, and no two acknowledgment windows of different nodes overlap (the two
never both took writes). It prints the counts and exits 1 on any violation.
"""
import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time

import redis

sys.path.insert(0, os.path.dirname(__file__))
from replication import Hub, Proxy, LIVE, PROXIES, dataset, free_port, synced, wait_until  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("bin")
ap.add_argument("--rounds", type=int, default=6)
ap.add_argument("--seed", type=int, default=int(time.time()))
ap.add_argument("--timeout-ms", type=int, default=600)
args = ap.parse_args()
rng = random.Random(args.seed)


class Node:
    def __init__(self, name, port, flags):
        self.name, self.port, self.flags = name, port, flags
        self.dir = tempfile.mkdtemp(prefix=f"rc-faults-{name}-")
        self.hub = None
        self.stopped = False
        self.start()

    def start(self):
        self.hub = Hub("--appendonly", "yes", "--failover-timeout", str(args.timeout_ms), *self.flags, data_dir=self.dir, port=self.port)

    def role(self):
        try:
            return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5).info("replication")["role"]
        except redis.exceptions.RedisError:
            return None


class Writer(threading.Thread):
    """Writes unique keys to one node; records confirmed writes and ack windows."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.confirmed = {}
        self.windows = []  # [first ack send time, last ack receive time] of a run of acks
        self.acked = 0
        self.attempted = 0
        self._run = None

    def run(self):
        i = 0
        c = None
        while not self.stop.is_set():
            if c is None:
                c = redis.Redis(host="127.0.0.1", port=self.node.port, socket_timeout=1, socket_connect_timeout=0.5)
            key = f"{self.node.name}:{i}"
            i += 1
            self.attempted += 1
            sent = time.time()
            try:
                c.set(key, i)
            except redis.exceptions.ResponseError:
                self._end_run()
                time.sleep(0.01)
                continue
            except redis.exceptions.RedisError:
                self._end_run()
                c = None
                time.sleep(0.02)
                continue
            got = time.time()
            self.acked += 1
            if self._run is None:
                self._run = [sent, got]
                self.windows.append(self._run)
            self._run[1] = got
            try:
                if c.execute_command("WAIT", 1, 200) == 1:
                    self.confirmed[key.encode()] = str(i).encode()
            except redis.exceptions.RedisError:
                self._end_run()
                c = None

    def _end_run(self):
        self._run = None


def primary_and_replica(nodes, timeout=20):
    """Waits for exactly one primary with the other its synced replica."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        roles = [n.role() for n in nodes]
        if sorted(r or "" for r in roles) == ["master", "slave"]:
            p = nodes[roles.index("master")]
            r = nodes[roles.index("slave")]
            try:
                # Under load the offsets are never equal at one instant: the replica must
                # reach the offset the primary had a moment before.
                before = p.hub.info()["master_repl_offset"]
                ri = r.hub.info()
                if ri.get("master_link_status") == "up" and ri.get("slave_repl_offset", -1) >= before:
                    return p, r
            except redis.exceptions.RedisError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no primary with a synced replica after {timeout} s: roles {[n.role() for n in nodes]}")


def main():
    print(f"seed {args.seed}, rounds {args.rounds}, failover timeout {args.timeout_ms} ms", flush=True)
    # Each node is reached through its own proxy, and announces it (replica-announce-port):
    # whichever node follows the other, its link runs through the primary's proxy.
    a_port, b_port = free_port(), free_port()
    to_a, to_b = Proxy(a_port), Proxy(b_port)
    a = Node("A", a_port, ("--replica-announce-port", str(to_a.port)))
    b = Node("B", b_port, ("--replica-announce-port", str(to_b.port), "--replicaof", f"127.0.0.1 {to_a.port}"))
    nodes = [a, b]
    proxy_of = {"A": to_a, "B": to_b}
    primary_and_replica(nodes)
    writers = [Writer(a), Writer(b)]
    for w in writers:
        w.start()
    faults = {}
    failovers = 0
    try:
        for rnd in range(args.rounds):
            p, r = primary_and_replica(nodes)
            epoch0 = p.hub.info()["failover_epoch"]
            kinds = ["stop", "kill-primary", "kill-replica", "blackhole", "cut"]
            proxy = proxy_of[p.name]
            if r.hub.info().get("master_port") != proxy.port:
                kinds = kinds[:3]
            kind = rng.choice(kinds)
            faults[kind] = faults.get(kind, 0) + 1
            time.sleep(rng.uniform(0.2, 0.6))
            hold = rng.uniform(0.3, 2.5) * args.timeout_ms / 1000
            if kind == "blackhole":
                proxy.blackhole()
                time.sleep(hold)
                proxy.cut()
                proxy.heal()
            elif kind == "cut":
                proxy.cut()
                time.sleep(hold)
                proxy.heal()
            elif kind == "stop":
                p.hub.proc.send_signal(signal.SIGSTOP)
                time.sleep(hold)
                p.hub.proc.send_signal(signal.SIGCONT)
            elif kind == "kill-primary":
                p.hub.kill9()
                time.sleep(hold)
                p.start()
            elif kind == "kill-replica":
                r.hub.kill9()
                time.sleep(hold)
                r.start()
            p2, _ = primary_and_replica(nodes, timeout=30)
            if p2.hub.info()["failover_epoch"] > epoch0:
                failovers += 1
            print(f"  round {rnd + 1}: {kind} for {hold * 1000:.0f} ms -> primary {p2.name}", flush=True)
        time.sleep(0.3)
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            w.join(timeout=5)
    p, r = primary_and_replica(nodes)
    pc = p.hub.client()
    confirmed = {}
    for w in writers:
        confirmed.update(w.confirmed)
    lost = [k for k, v in confirmed.items() if pc.get(k) != v]
    wait_until(lambda: synced(r.hub, p.hub), "final sync")
    equal = dataset(r.hub.client()) == dataset(pc)
    overlaps = []
    for wa in writers[0].windows:
        for wb in writers[1].windows:
            if wa[0] < wb[1] and wb[0] < wa[1]:
                overlaps.append((wa, wb))
    attempted = sum(w.attempted for w in writers)
    acked = sum(w.acked for w in writers)
    print(
        f"writes attempted {attempted}, acknowledged {acked}, confirmed by WAIT {len(confirmed)}, "
        f"lost {len(lost)}, failovers {failovers}, faults {faults}, overlapping ack windows {len(overlaps)}, "
        f"replica equals primary: {equal}",
        flush=True,
    )
    ok = not lost and equal and not overlaps and len(confirmed) > 0
    if lost:
        print(f"LOST (first 10): {lost[:10]}")
    for wa, wb in overlaps[:5]:
        print(f"OVERLAP: A acked {wa[0]:.3f}-{wa[1]:.3f}, B acked {wb[0]:.3f}-{wb[1]:.3f}")
    print("PASS repl_faults" if ok else "FAIL repl_faults", flush=True)
    return ok


if __name__ == "__main__":
    ok = False
    try:
        ok = main()
    finally:
        for px in PROXIES:
            px.close()
        for h in LIVE:
            h.stop()
        if not ok:
            for h in LIVE:
                with open(h.log_path, "rb") as f:
                    print(f"--- log of hub {h.flags} (last 3000 chars) ---\n{f.read().decode(errors='replace')[-3000:]}")
    sys.exit(0 if ok else 1)
