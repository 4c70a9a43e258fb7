#!/usr/bin/env python3
"""Replication, hub vs Redis side by side in one run (a program, not a timed test).

usage: bench-repl.py --hub-bin HUB --redis-bin REDIS [--keys N] [--requests N]

For each of the two servers (fresh processes on free loopback ports, in memory):

  1. -P 16 write throughput (`redis-benchmark -t set,incr,lpush,hset -P 16 -c 50`) on a
     primary with no replica, then with one replica attached: req/s per command and the
     geometric mean, and the ratio with / without.
  2. Full sync of N keys (default 1,000,000, loaded with `redis-cli --pipe`): from
     `REPLICAOF` to the replica's `master_link_status:up` with every key.
  3. Partial resync after a 10 s break: the replica's link runs through a counting
     loopback proxy; the proxy cuts it, 50,000 SETs land on the primary, after 10 s the
     link heals; the bytes the primary sent through the proxy until the replica is back
     at the primary's offset.
  4. Failover (hub only; Redis needs Sentinel): a replica with `--failover-timeout 1000`,
     the primary SIGKILLed, the time until the replica accepts a write.

Prints one markdown table. Every process it starts is killed on exit.
"""
import argparse
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import redis

ap = argparse.ArgumentParser()
ap.add_argument("--hub-bin", required=True)
ap.add_argument("--redis-bin", required=True)
ap.add_argument("--keys", type=int, default=1_000_000)
ap.add_argument("--requests", type=int, default=400_000)
args = ap.parse_args()
PROCS = []
RUN = tempfile.mkdtemp(prefix="rc-bench-repl-")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        except redis.exceptions.RedisError:
            time.sleep(0.02)
    raise RuntimeError(f"port {port} not up")


def start(kind, *extra):
    port = free_port()
    d = tempfile.mkdtemp(dir=RUN)
    if kind == "hub":
        cmd = [args.hub_bin, "--port", str(port), "--ws-port", str(free_port()), "--bind", "127.0.0.1", "--save", "", "--dir", d, *extra]
    else:
        # Redis 7 waits 5 s for more replicas before a diskless full sync by default; 0
        # measures the sync itself, as the hub (which never waits) does.
        cmd = [args.redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d,
               "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    wait_port(port)
    return p, port


def stop(p):
    if p.poll() is None:
        p.kill()
        p.wait(timeout=10)


def bench(port, tests):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", tests, "-P", "16", "-c", "50", "-n", str(args.requests), "-r", "100000", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    rates = {}
    for line in out.replace("\r", "\n").splitlines():
        m = re.match(r"^(\w+)(?: \(.*\))?: ([\d.]+) requests per second", line.strip())
        if m:
            rates[m.group(1).lower()] = float(m.group(2))
    return rates


def geo(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else 0


def link_up(port, keys=None):
    try:
        i = redis.Redis(port=port, socket_timeout=2).info()
    except redis.exceptions.RedisError:
        return False
    if i.get("master_link_status") != "up":
        return False
    return keys is None or i.get("db0", {}).get("keys", 0) >= keys


def load_keys(port, n):
    path = os.path.join(RUN, f"keys-{n}.resp")
    if not os.path.exists(path):
        with open(path, "wb") as f:
            for i in range(n):
                k = b"key:%012d" % i
                f.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$16\r\n%s\r\n" % (len(k), k, b"v" * 16))
    with open(path, "rb") as f:
        subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=f, capture_output=True, timeout=600, check=True)


class CountingProxy:
    def __init__(self, target):
        self.target, self.bytes, self.cut = target, 0, False
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            if self.cut:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [c, u]
            threading.Thread(target=self.pump, args=(u, c, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(c, u, False), daemon=True).start()

    def pump(self, a, b, count):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                if count:
                    self.bytes += len(d)
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def drop(self):
        self.cut = True
        for s in self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.socks = []


def replicate(kind, replica_port, primary_port):
    redis.Redis(port=replica_port).execute_command("REPLICAOF", "127.0.0.1", str(primary_port))


def measure(kind):
    res = {}
    flags = ("--repl-backlog-size", "64mb")
    # 1. -P 16 with and without a replica.
    p, pp = start(kind, *flags)
    log(f"[{kind}] -P 16 writes, no replica")
    alone = bench(pp, "set,incr,lpush,hset")
    r, rp = start(kind)
    replicate(kind, rp, pp)
    deadline = time.time() + 30
    while not link_up(rp) and time.time() < deadline:
        time.sleep(0.05)
    log(f"[{kind}] -P 16 writes, one replica")
    withr = bench(pp, "set,incr,lpush,hset")
    res["alone"] = geo(alone.values())
    res["with"] = geo(withr.values())
    res["alone_detail"], res["with_detail"] = alone, withr
    stop(r)
    stop(p)
    # 2. Full sync of N keys.
    p, pp = start(kind, *flags)
    log(f"[{kind}] loading {args.keys} keys")
    load_keys(pp, args.keys)
    r, rp = start(kind)
    t0 = time.time()
    replicate(kind, rp, pp)
    while not link_up(rp, args.keys):
        if time.time() - t0 > 300:
            raise RuntimeError("full sync too slow")
        time.sleep(0.01)
    res["full_sync_s"] = time.time() - t0
    stop(r)
    # 3. Partial resync after a 10 s break, through a counting proxy.
    proxy = CountingProxy(pp)
    r, rp = start(kind)
    replicate(kind, rp, proxy.port)
    while not link_up(rp, args.keys):
        time.sleep(0.05)
    time.sleep(0.5)
    c = redis.Redis(port=pp)
    full_before = c.info("stats").get("sync_full", 0)
    proxy.drop()
    pipe = c.pipeline(transaction=False)
    for i in range(50_000):
        pipe.set(f"break:{i}", "x" * 16)
    pipe.execute()
    time.sleep(10)
    before = proxy.bytes
    proxy.cut = False
    t0 = time.time()
    target = c.info("replication")["master_repl_offset"]
    while True:
        ri = redis.Redis(port=rp).info("replication")
        if ri.get("master_link_status") == "up" and ri.get("slave_repl_offset", -1) >= target:
            break
        if time.time() - t0 > 120:
            raise RuntimeError("partial resync too slow")
        time.sleep(0.01)
    time.sleep(0.2)
    res["partial_bytes"] = proxy.bytes - before
    res["partial_full"] = c.info("stats").get("sync_full", 0) - full_before
    stop(r)
    stop(p)
    # 4. Failover (hub).
    if kind == "hub":
        p, pp = start(kind)
        r, rp = start(kind, "--failover-timeout", "1000", "--replicaof", f"127.0.0.1 {pp}")
        while not link_up(rp):
            time.sleep(0.02)
        time.sleep(0.3)
        p.kill()
        t0 = time.time()
        rc = redis.Redis(port=rp, socket_timeout=1)
        while True:
            try:
                rc.set("after-failover", 1)
                break
            except redis.exceptions.RedisError:
                time.sleep(0.005)
        res["failover_s"] = time.time() - t0
        stop(r)
    return res


def main():
    try:
        hub = measure("hub")
        red = measure("redis")
    finally:
        for p in PROCS:
            stop(p)
    rows = [
        ("-P 16 writes, no replica (geo-mean req/s)", f"{hub['alone']:,.0f}", f"{red['alone']:,.0f}", f"{hub['alone'] / red['alone']:.2f}"),
        ("-P 16 writes, one replica (geo-mean req/s)", f"{hub['with']:,.0f}", f"{red['with']:,.0f}", f"{hub['with'] / red['with']:.2f}"),
        ("with a replica / without", f"{hub['with'] / hub['alone']:.2f}", f"{red['with'] / red['alone']:.2f}", ""),
        (f"full sync of {args.keys:,} keys (s)", f"{hub['full_sync_s']:.2f}", f"{red['full_sync_s']:.2f}", f"{red['full_sync_s'] / hub['full_sync_s']:.2f} (redis/hub)"),
        (
            "bytes sent for a partial resync after a 10 s break (50k SETs)",
            f"{hub['partial_bytes']:,}",
            f"{red['partial_bytes']:,}",
            f"{red['partial_bytes'] / max(hub['partial_bytes'], 1):.2f} (redis/hub)",
        ),
        ("full syncs that break caused", f"{hub['partial_full']}", f"{red['partial_full']}", ""),
        ("failover: SIGKILL to the replica accepting writes (timeout 1 s)", f"{hub['failover_s'] * 1000:.0f} ms", "n/a (Sentinel)", ""),
    ]
    print("| measure | hub | redis | hub vs redis |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("per command, req/s (no replica -> one replica):")
    for k in sorted(hub["alone_detail"]):
        print(f"  {k}: hub {hub['alone_detail'][k]:,.0f} -> {hub['with_detail'].get(k, 0):,.0f}; redis {red['alone_detail'].get(k, 0):,.0f} -> {red['with_detail'].get(k, 0):,.0f}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    main()
