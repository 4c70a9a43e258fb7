#!/usr/bin/env python3
"""Hub vs Redis under the same load, in one run (a program, not a timed test).

Starts the recached hub (release build) and a Debian redis-server on another port, runs

    redis-benchmark -c 50 -n 200000 -t <test> -P <1|16> --csv

for set,get,incr,lpush,lpop,sadd,hset,zadd against each, alternating servers test by
test (the first server swaps every test, so drift on a shared machine hits both alike),
then loads 1M keys with 16-byte values into a fresh process of each and reads RSS from
/proc. Prints one results table (markdown) to stdout; progress goes to stderr.

    scripts/bench-hub.sh                      # builds the release hub, then runs this
    scripts/bench-hub.py --hub-bin PATH       # a given build
    scripts/bench-hub.py --rounds 3           # best of 3 per (server, test, P)

Every child process is killed on exit, and the whole run is bounded (--max-seconds).
"""
import argparse
import csv
import io
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

TESTS = ["set", "get", "incr", "lpush", "lpop", "sadd", "hset", "zadd"]
CHILDREN = []
DEADLINE = [None]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def remaining():
    left = DEADLINE[0] - time.time()
    if left <= 0:
        raise TimeoutError("benchmark exceeded --max-seconds")
    return left


def kill_all():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=5)
            except Exception:
                pass


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


def free_port(lo, hi):
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with socket.socket() as s:
            s.settimeout(0.05)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port in {lo}-{hi}")


def wait_ping(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not answer PING")


class Server:
    """One server process: the hub (reads its Ready line) or redis-server."""

    def __init__(self, name, binary, redis_ports, extra=()):
        self.name = name
        self.binary = binary
        self.is_redis = os.path.basename(binary).startswith("redis-server")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECACHED_")}
        if self.is_redis:
            self.port = free_port(*redis_ports)
            args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--logfile", ""]
        else:
            args = [binary, "--port", "0", "--ws-port", "0", "--bind", "127.0.0.1", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        CHILDREN.append(self.proc)
        if self.is_redis:
            threading.Thread(target=self._drain, daemon=True).start()
            wait_ping(self.port)
        else:
            found = threading.Event()
            self.port = None

            def read():
                for raw in self.proc.stdout:
                    line = raw.decode("utf-8", "replace")
                    if self.port is None and "Ready to accept connections" in line and "port=" in line:
                        digits = line.split("port=", 1)[1]
                        digits = "".join(c for c in digits if c.isdigit() or c == " ").split()[0]
                        self.port = int(digits)
                        found.set()
            threading.Thread(target=read, daemon=True).start()
            if not found.wait(timeout=30):
                raise RuntimeError(f"{binary} printed no Ready line in 30 s")
            wait_ping(self.port)
        log(f"{name}: pid {self.proc.pid}, port {self.port}")

    def _drain(self):
        for _ in self.proc.stdout:
            pass

    def cpu_seconds(self):
        """User + system CPU the server process has used so far (/proc/<pid>/stat)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def run(cmd, timeout, input_bytes=None):
    timeout = min(timeout, remaining())
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL)
    CHILDREN.append(p)
    try:
        out, err = p.communicate(input=input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise TimeoutError(f"{' '.join(cmd[:6])}… timed out after {timeout:.0f}s")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err.decode()[-500:]}")
    return out.decode()


def bench(port, test, pipeline, clients, requests):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
           "-n", str(requests), "-t", test, "-P", str(pipeline), "--csv"]
    out = run(cmd, timeout=300)
    rows = list(csv.DictReader(io.StringIO(out)))
    if not rows:
        raise RuntimeError(f"no CSV from redis-benchmark: {out!r}")
    row = rows[0]
    return float(row["rps"]), float(row["p99_latency_ms"])


def load_keys(server, n, value_len):
    """SET key:%08d <value_len bytes> for n keys via redis-cli --pipe; returns RSS/key."""
    value = b"v" * value_len
    chunks = []
    for i in range(n):
        k = b"key:%08d" % i
        chunks.append(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(value), value))
    data = b"".join(chunks)
    time.sleep(0.5)
    before = server.rss_kb()
    out = run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--pipe"], timeout=600, input_bytes=data)
    if f"replies: {n}" not in out or "errors: 0" not in out:
        raise RuntimeError(f"--pipe load into {server.name} failed: {out[-300:]}")
    dbsize = int(run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "dbsize"], timeout=30).strip())
    time.sleep(1.0)
    after = server.rss_kb()
    return before, after, dbsize


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "recached-target"))
    ap.add_argument("--hub-bin", default=os.path.join(target, "release", "recached"))
    ap.add_argument("--hub-args", default="", help="extra hub flags, e.g. '--io-threads 2'")
    ap.add_argument("--redis-bin", default="redis-server")
    ap.add_argument("--redis-ports", default=os.environ.get("BENCH_REDIS_PORTS", "7290-7299"))
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("-c", "--clients", type=int, default=50)
    ap.add_argument("-n", "--requests", type=int, default=200000)
    ap.add_argument("--rounds", type=int, default=1, help="runs per (server, test, P); the best is kept")
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys for the memory test (0 skips it)")
    ap.add_argument("--value-len", type=int, default=16)
    ap.add_argument("--max-seconds", type=int, default=1800)
    a = ap.parse_args()
    DEADLINE[0] = time.time() + a.max_seconds
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lo, hi = (int(x) for x in a.redis_ports.split("-"))
    tests = a.tests.split(",")
    pipelines = [int(p) for p in a.pipelines.split(",")]
    if not os.path.exists(a.hub_bin) and os.sep in a.hub_bin:
        sys.exit(f"hub binary {a.hub_bin} not found (cargo build --release -p recached-hub)")
    results = {}  # (P, test, name) -> (rps, p99)
    mem = {}
    try:
        hub = Server("hub", a.hub_bin, (lo, hi), a.hub_args.split())
        red = Server("redis", a.redis_bin, (lo, hi))
        for P in pipelines:
            for i, test in enumerate(tests):
                order = [hub, red] if i % 2 == 0 else [red, hub]
                for _ in range(a.rounds):
                    for s in order:
                        cpu0 = s.cpu_seconds()
                        rps, p99 = bench(s.port, test, P, a.clients, a.requests)
                        # Server CPU per request: unlike req/s and p99 it hardly depends
                        # on what else the shared machine is running.
                        us = (s.cpu_seconds() - cpu0) * 1e6 / a.requests
                        best = results.get((P, test, s.name))
                        if best is None or rps > best[0]:
                            results[(P, test, s.name)] = (rps, p99, us)
                        log(f"P={P:<2} {test:<6} {s.name:<5} {rps:>12,.0f} req/s  p99 {p99:.3f} ms  cpu {us:.2f} us/req")
        hub.stop()
        red.stop()
        if a.keys:
            for name, binary in (("hub", a.hub_bin), ("redis", a.redis_bin)):
                s = Server(name, binary, (lo, hi), a.hub_args.split() if name == "hub" else ())
                before, after, dbsize = load_keys(s, a.keys, a.value_len)
                mem[name] = (before, after, dbsize)
                log(f"{name}: RSS {before} kB -> {after} kB with {dbsize} keys")
                s.stop()
    finally:
        kill_all()

    out = []
    out.append(f"redis-benchmark -c {a.clients} -n {a.requests} -t <test> -P <P> --csv; best of {a.rounds}; "
               f"hub = {os.path.basename(a.hub_bin)} {a.hub_args}".rstrip() + f", redis = {run([a.redis_bin, '--version'], 10).split()[2]}")
    out.append("")
    out.append("| P | test | hub req/s | redis req/s | hub/redis | hub p99 ms | redis p99 ms | p99 hub/redis | hub CPU µs/req | redis CPU µs/req | CPU hub/redis |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for P in pipelines:
        ratios, p99r, cpur = [], [], []
        for test in tests:
            h, r = results[(P, test, "hub")], results[(P, test, "redis")]
            ratio = h[0] / r[0]
            pr = h[1] / r[1] if r[1] > 0 else float("nan")
            ratios.append(ratio)
            p99r.append(pr)
            cr = h[2] / r[2] if r[2] > 0 else float("nan")
            cpur.append(cr)
            out.append(f"| {P} | {test} | {h[0]:,.0f} | {r[0]:,.0f} | {ratio:.2f} | {h[1]:.3f} | {r[1]:.3f} | {pr:.2f} | {h[2]:.2f} | {r[2]:.2f} | {cr:.2f} |")
        gm, gp, gc = geomean(ratios), geomean(p99r), geomean(cpur)
        out.append(f"| {P} | **geo-mean** | | | **{gm:.2f}** | | | **{gp:.2f}** | | | **{gc:.2f}** |")
        summary.append((P, gm, gp, gc))
    out.append("")
    for P, gm, gp, gc in summary:
        target = 1.3 if P > 1 else 1.0
        out.append(f"- P={P}: throughput geo-mean hub/redis {gm:.2f} (target >= {target}: "
                   f"{'met' if gm >= target else 'MISSED'}); p99 geo-mean hub/redis {gp:.2f} "
                   f"(target <= 1.0: {'met' if gp <= 1.0 else 'MISSED'}); server CPU per request hub/redis {gc:.2f}")
    if mem:
        out.append("")
        out.append(f"| memory ({a.keys:,} keys, {a.value_len}-byte values) | RSS before kB | RSS after kB | keys | bytes/key |")
        out.append("|---|---:|---:|---:|---:|")
        per = {}
        for name in ("hub", "redis"):
            before, after, dbsize = mem[name]
            per[name] = (after - before) * 1024 / max(dbsize, 1)
            out.append(f"| {name} | {before:,} | {after:,} | {dbsize:,} | {per[name]:.1f} |")
        out.append("")
        out.append(f"- memory per key hub/redis {per['hub'] / per['redis']:.2f} (target <= 1.0: "
                   f"{'met' if per['hub'] <= per['redis'] else 'MISSED'})")
    print("\n".join(out))


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
