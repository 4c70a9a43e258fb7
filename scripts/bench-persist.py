#!/usr/bin/env python3
"""Hub vs Redis with persistence on, side by side in one run (a program, not a timed test).

Starts the recached hub (release build) and a Debian redis-server with the same
persistence flags (the hub takes Redis's names), each on free loopback ports in its own
fresh temporary directory under one run directory in /tmp (so both write to the same
disk), and measures, in this order (`--only` picks parts):

  1. SET, 50 clients, no pipelining (`redis-benchmark -t set -c 50 -P 1 -r 100000
     -d 16`), with `appendonly yes` + `appendfsync always`, then with `everysec`:
     req/s, p50, p99.
  2. SET from one client (`-c 1`) with `appendfsync always`: req/s, p50, p99, and the
     disk's own fsync time (write 100 bytes + `os.fsync`, 200 times, in the run
     directory, before and after the benchmarks, pooled; `os.fdatasync` too, which is
     what both servers' AOFs call), so that p99 / fsync-median says how many fsyncs one
     request waits for.
  3. BGSAVE of `--keys` keys (default 1,000,000) under a concurrent write load
     (`redis-benchmark -t set -c 50 -r N -d 16`): the save's duration, the server's
     memory growth during it, and the load's p99.9 and max latency compared with the
     same benchmark (same request count) run just before, without a save.
  4. Start-up load time of `--keys` keys: from a snapshot (SAVE, kill -9, restart; the
     hub's dump.rcs, Redis's dump.rdb) and from an AOF (appendonly yes, the keys
     written, kill -9, restart): time from process start until PING answers +PONG.
  5. AOF size after the same workload on both (200k SET + 100k INCR + 50k RPUSH):
     the total size of appendonlydir.
  6. Pipelined writes (`-P 16 -c 50`, set, incr, lpush, hset) with appendonly yes +
     everysec and in memory (appendonly no): req/s and p99 per command, geometric means.

It prints one markdown table: hub value, Redis value, and a ratio oriented so that
> 1 means the hub is better (hub/redis for rates, redis/hub for times, latencies, memory
and sizes; the `ratio` column says which). Progress goes to stderr.

Method and fairness
-------------------
* Both servers run at once and are benchmarked one after the other; which one goes first
  alternates from measurement to measurement, so drift on a shared machine hits both.
* Every case starts fresh processes in fresh directories (no files from an earlier case).
  Redis runs as `redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
  --daemonize no --dir DIR` plus the case's flags; the hub as `recached --port P
  --ws-port P2 --bind 127.0.0.1 --save '' --dir DIR` plus the same flags. Everything
  else is each server's default (both keep `auto-aof-rewrite-*` defaults except in part
  5, where rewriting is off on both so the log is measured, not a rewrite's timing).
* redis-benchmark 7.0 has no duration option, so "`--seconds` S" means: a short probe
  run measures the server's rate, then the measured run gets `-n` = rate x S (at least
  500 requests). The probe doubles as warm-up. Each server gets its own `-n`; rates are
  compared, not totals.
* Latencies come from redis-benchmark's own output (`--precision 3`, the non-CSV output:
  the "Summary" line gives avg/min/p50/p95/p99/max). redis-benchmark prints no p99.9;
  it is read from its printed distribution as the smallest latency whose cumulative
  count reaches 99.9% of the requests (the next printed point is at 99.902%), so it is an
  upper bound at that resolution, the same way for both servers.
* Keys loaded by `redis-cli --pipe` are `key:%012d` with 16-byte values, the names
  redis-benchmark's `-r` makes (`key:__rand_int__`, 12 digits), so the write load of
  part 3 overwrites the keys being saved (what copy-on-write and the hub's versioned cut
  both pay for). The same generated file is piped into both servers.
* Part 3, what is measured:
  - save duration: from BGSAVE's reply until INFO persistence `rdb_bgsave_in_progress`
    reads 0 (polled every 5 ms). Redis only notices its child has exited in serverCron
    (hz 10, up to 100 ms later), so for Redis the child's own lifetime (first seen in
    /proc/PID/task/*/children until it is gone or a zombie) is printed too.
  - memory: every 5 ms, the server's VmRSS and the sum of `Pss` (smaps_rollup) of the
    server and all its descendants. Growth = peak during the save minus the value just
    before BGSAVE. The Pss sum is the fair number: after fork, parent and child share
    their pages, each counted half in each Pss, so the sum stays the real footprint and
    grows by exactly the pages copy-on-write duplicated plus what either allocates; for
    the hub (one process) it is its own memory growth (old values kept by the cut,
    buffers). Summing Private_Dirty instead would drop the shared pages (the sum can go
    *down*) and count each copied page twice, and the parent's VmRSS alone misses the
    copies (a copied page replaces a shared one in the parent's RSS), which is why it is
    shown only as a second row, without a ratio. A control row gives the same Pss growth
    over the baseline run (same load, same 5 ms observer, no save).
  - latency: p99.9 and max of the whole write-load run that contains the save (BGSAVE
    is sent `lead` seconds after the load starts), against the run without a save. The
    run lasts max(S, lead + 3 x an idle BGSAVE's duration + 1 s), so the save fits.
* Part 4 starts each server alone (the other is stopped) and polls with a fresh PING
  every 2 ms: connection refused and -LOADING both count as not ready. kill -9 does not
  drop the kernel's page cache, so the AOF written by `everysec` is complete after a
  2.5 s pause; DBSIZE after the restart is checked against N.

Every process it starts (and any child of a server, such as Redis's BGSAVE fork) is
killed on exit; each subprocess has a timeout, and a watchdog ends the whole run after
`--max-seconds`. The run directory is removed at the end unless `--keep`.

    scripts/bench-persist.sh                          # full run (see --help)
    scripts/bench-persist.sh --keys 20000 --seconds 2 # a quick check
    scripts/bench-persist.sh --only 1,3
"""
import argparse
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis  # redis-py, from the project's venv

CHILDREN = []           # every Popen we started
DEADLINE = [None]       # wall-clock end of the run
PORTS_TAKEN = set()


def log(msg):
    print(f"[persist] {msg}", file=sys.stderr, flush=True)


def remaining():
    left = DEADLINE[0] - time.time()
    if left <= 0:
        raise TimeoutError("benchmark exceeded --max-seconds")
    return left


# ---------------------------------------------------------------- processes

def descendants(pid):
    """Pids of all descendants of pid (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def become_subreaper():
    """Orphaned descendants (a server's fork child outliving it) are reparented to this
    process instead of pid 1, so reap() can collect them and no zombie is left."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def reap(pids, wait=2.0):
    """Collects the given pids once they are our (reparented) children and have exited."""
    end = time.time() + wait
    todo = set(pids)
    while todo and time.time() < end:
        for pid in list(todo):
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    todo.discard(pid)
            except ChildProcessError:
                todo.discard(pid)   # not ours, or already gone
        if todo:
            time.sleep(0.01)


def kill_tree(proc, kids=None):
    """SIGKILL proc's descendants (by pid), then proc itself; reap them all."""
    kids = descendants(proc.pid) if kids is None and proc.poll() is None else (kids or [])
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if proc.poll() is None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:
            pass
    reap(kids)


def kill_all():
    for p in CHILDREN:
        kill_tree(p)


def on_signal(signum, _frame):
    kill_all()
    sys.exit(128 + signum)


def watchdog():
    while True:
        left = DEADLINE[0] + 30 - time.time()   # 30 s grace after --max-seconds
        if left <= 0:
            log("--max-seconds exceeded: killing everything")
            kill_all()
            os._exit(124)
        time.sleep(min(left, 5))


def free_port():
    """A free loopback port: bind port 0 and let the kernel pick."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in PORTS_TAKEN:
            PORTS_TAKEN.add(port)
            return port


def run(cmd, timeout, stdin_path=None):
    """Runs cmd to completion (bounded), returns its stdout."""
    timeout = min(timeout, remaining())
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    try:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=stdin)
    finally:
        if stdin_path:
            stdin.close()
    CHILDREN.append(p)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(p)
        raise TimeoutError(f"{' '.join(cmd[:8])}… timed out after {timeout:.0f}s")
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err.decode()[-500:]}")
    return out.decode("utf-8", "replace")


def ping_until_ready(port, t0, timeout):
    """Seconds from t0 until a PING on port answers +PONG (refused or -LOADING: retry)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.002)
    raise TimeoutError(f"server on port {port} did not answer PONG in {timeout:.0f} s")


class Server:
    """One server process (hub or Redis) with its own directory in the run directory."""

    def __init__(self, kind, binary, workdir, flags):
        self.kind = kind          # "hub" or "redis"
        self.binary = binary
        self.dir = os.path.join(workdir, "data")
        os.makedirs(self.dir)
        self.logpath = os.path.join(workdir, "server.log")
        self.flags = list(flags)
        self.port = free_port()
        self.ws_port = free_port() if kind == "hub" else None
        self.proc = None

    def args(self):
        if self.kind == "redis":
            base = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--daemonize", "no", "--dir", self.dir]
        else:
            base = [self.binary, "--port", str(self.port), "--ws-port", str(self.ws_port),
                    "--bind", "127.0.0.1", "--save", "", "--dir", self.dir]
        return base + self.flags   # later flags win in both (appendonly yes over no)

    def start(self, timeout=120):
        """Starts the process; returns seconds from start until PING answers +PONG."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECACHED_")}
        logf = open(self.logpath, "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.args(), stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        logf.close()
        CHILDREN.append(self.proc)
        try:
            took = ping_until_ready(self.port, t0, min(timeout, remaining()))
        except TimeoutError:
            raise RuntimeError(f"{self.kind} did not start; log {self.logpath}:\n{self.tail()}")
        log(f"{self.kind}: pid {self.proc.pid}, port {self.port}, dir {self.dir}")
        return took

    def tail(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""

    def client(self, timeout=30):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout)

    def kill9(self):
        if self.proc is not None:
            kill_tree(self.proc)

    def stop(self):
        """SIGTERM (10 s), then SIGKILL; the server's children (a BGSAVE fork) too."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        kids = descendants(p.pid)
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        kill_tree(p, kids)

    def dir_size(self, sub=""):
        total = 0
        for root, _, files in os.walk(os.path.join(self.dir, sub)):
            for f in files:
                total += os.path.getsize(os.path.join(root, f))
        return total


# ---------------------------------------------------------------- /proc readings

def vm_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def is_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------- redis-benchmark

LINE_RE = re.compile(r"^\s*([\d.]+)% <= ([\d.]+) milliseconds \(cumulative count (\d+)\)")


def parse_benchmark(out):
    """Parses redis-benchmark 7.0's non-CSV output (one test) into a dict."""
    text = out.replace("\r", "\n")
    m = re.search(r"(\d+) requests completed in ([\d.]+) seconds", text)
    t = re.search(r"throughput summary: ([\d.]+) requests per second", text)
    s = re.search(r"avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.\s]+)", text)
    if not (m and t and s):
        raise RuntimeError(f"unexpected redis-benchmark output: {text[-800:]!r}")
    total = int(m.group(1))
    avg, mn, p50, p95, p99, mx = (float(x) for x in s.group(1).split()[:6])
    points = []   # (latency ms, cumulative count) from both printed distributions
    for line in text.splitlines():
        lm = LINE_RE.match(line)
        if lm:
            points.append((float(lm.group(2)), int(lm.group(3))))
    reach = [lat for lat, cnt in points if cnt >= 0.999 * total]
    p999 = min(reach) if reach else mx
    return {"n": total, "secs": float(m.group(2)), "rps": float(t.group(1)), "avg": avg,
            "p50": p50, "p95": p95, "p99": p99, "p999": p999, "max": mx}


def bench_cmd(port, test, clients, pipeline, n, keyspace, size):
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
            "-c", str(clients), "-P", str(pipeline), "-n", str(n), "-r", str(keyspace),
            "-d", str(size), "--precision", "3"]


def bench(port, test, clients, pipeline, n, keyspace, size, expect_secs=10):
    out = run(bench_cmd(port, test, clients, pipeline, n, keyspace, size),
              timeout=max(60, expect_secs * 6))
    return parse_benchmark(out)


def calibrate(port, test, clients, pipeline, keyspace, size, seconds):
    """-n that makes this benchmark last about `seconds` on this server (probe runs)."""
    n = max(200, clients * pipeline * 4)
    for _ in range(5):
        r = bench(port, test, clients, pipeline, n, keyspace, size, expect_secs=5)
        if r["secs"] >= 0.4 or n >= 5_000_000:
            break
        n = int(max(n * 4, r["rps"] * 0.6))
    return max(500, int(r["rps"] * seconds))


def measure(server, test, clients, pipeline, keyspace, size, seconds, tag):
    n = calibrate(server.port, test, clients, pipeline, keyspace, size, seconds)
    r = bench(server.port, test, clients, pipeline, n, keyspace, size, expect_secs=seconds)
    log(f"{tag:<28} {server.kind:<5} n={n:<9} {r['secs']:6.2f} s {r['rps']:>11,.0f} req/s  "
        f"p50 {r['p50']:.3f}  p99 {r['p99']:.3f}  p99.9 {r['p999']:.3f}  max {r['max']:.3f} ms")
    return r


# ---------------------------------------------------------------- data

def gen_keys(path, n, size):
    """RESP for SET key:%012d <size bytes> for n keys (the names redis-benchmark -r uses)."""
    value = b"x" * size
    with open(path, "wb") as f:
        step = 100_000
        for lo in range(0, n, step):
            f.write(b"".join(b"*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$%d\r\n%s\r\n" % (i, size, value)
                             for i in range(lo, min(n, lo + step))))


def gen_aof_workload(path, sets=200_000, incrs=100_000, rpushes=50_000):
    """The part-5 workload: SET of distinct keys, INCR over 1000 counters, RPUSH to 100 lists."""
    def cmd(*args):
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    with open(path, "wb") as f:
        f.write(b"".join(cmd(b"SET", b"key:%012d" % i, b"v" * 16) for i in range(sets)))
        f.write(b"".join(cmd(b"INCR", b"counter:%d" % (i % 1000)) for i in range(incrs)))
        f.write(b"".join(cmd(b"RPUSH", b"list:%d" % (i % 100), b"item-%d" % i) for i in range(rpushes)))
    return sets + incrs + rpushes


def pipe_load(server, path, count):
    out = run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port), "--pipe"],
              timeout=900, stdin_path=path)
    if f"replies: {count}" not in out or "errors: 0" not in out:
        raise RuntimeError(f"--pipe load into {server.kind} failed: {out[-300:]}")


def fsync_probe(directory, rounds=200):
    """Milliseconds of write(100 bytes)+fsync and of write+fdatasync, appending, `rounds` each."""
    res = {}
    for name, fn in (("fsync", os.fsync), ("fdatasync", os.fdatasync)):
        path = os.path.join(directory, f"{name}.probe")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        times = []
        try:
            for _ in range(rounds):
                t = time.perf_counter()
                os.write(fd, b"x" * 100)
                fn(fd)
                times.append((time.perf_counter() - t) * 1000)
        finally:
            os.close(fd)
            os.unlink(path)
        res[name] = times
    return res


def median_p99(xs):
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(len(xs) * 0.99))]


# ---------------------------------------------------------------- the run

class Run:
    def __init__(self, a):
        self.a = a
        self.root = tempfile.mkdtemp(prefix="bench-persist-", dir="/tmp")
        self.rows = []        # (part, case, metric, hub, redis, ratio, how)
        self.notes = []
        self.flip = 0
        self.keyfile = None

    # -- helpers
    def servers(self, case, flags):
        """Fresh hub and Redis for one case, each in its own new directory."""
        out = []
        for kind, binary in (("hub", self.a.hub_bin), ("redis", self.a.redis_bin)):
            s = Server(kind, binary, os.path.join(self.root, f"{case}-{kind}"), flags)
            s.start()
            out.append(s)
        return out

    def order(self, pair):
        self.flip ^= 1
        return pair if self.flip else pair[::-1]

    def keys(self):
        if self.keyfile is None:
            self.keyfile = os.path.join(self.root, "keys.resp")
            t = time.time()
            gen_keys(self.keyfile, self.a.keys, self.a.value_len)
            log(f"generated {self.a.keys:,} SETs ({os.path.getsize(self.keyfile) / 1e6:.1f} MB) in {time.time() - t:.1f} s")
        return self.keyfile

    def row(self, part, case, metric, h, r, higher_better, fmt=None, shown=None, compare=True):
        """One table row; the ratio is hub/redis if higher is better, else redis/hub.
        `shown` = (hub text, redis text) replaces fmt(h), fmt(r) in the table; rows with
        compare=False (informational, not like for like) get no ratio."""
        if h is None or r is None or not compare:
            ratio, how = float("nan"), ""
        elif higher_better:
            ratio, how = (h / r if r > 0 else float("nan")), "hub/redis"
        else:
            ratio, how = (r / h if h > 0 else float("inf") if r > 0 else float("nan")), "redis/hub"
        ht, rt = shown if shown else (fmt(h), fmt(r))
        self.rows.append((part, case, metric, ht, rt, ratio, how))
        return ratio

    # -- parts
    def part1(self):
        S = self.a.seconds
        for fsync in ("always", "everysec"):
            pair = self.servers(f"p1-{fsync}", ["--appendonly", "yes", "--appendfsync", fsync])
            res = {}
            for s in self.order(pair):
                res[s.kind] = measure(s, "set", 50, 1, 100000, 16, S, f"1 SET c50 {fsync}")
            for s in pair:
                s.stop()
            case = f"SET -c 50 -P 1, appendfsync {fsync}"
            h, r = res["hub"], res["redis"]
            self.row(1, case, "req/s", h["rps"], r["rps"], True, fmt_int)
            self.row(1, case, "p50 ms", h["p50"], r["p50"], False, fmt_ms)
            self.row(1, case, "p99 ms", h["p99"], r["p99"], False, fmt_ms)

    def part2(self):
        S = self.a.seconds
        before = fsync_probe(self.root)
        pair = self.servers("p2-always-c1", ["--appendonly", "yes", "--appendfsync", "always"])
        res = {}
        for s in self.order(pair):
            res[s.kind] = measure(s, "set", 1, 1, 100000, 16, S, "2 SET c1 always")
        for s in pair:
            s.stop()
        after = fsync_probe(self.root)
        # The disk's fsync time drifts (other writers on a shared machine): probe it before
        # and after the two benchmarks and pool the samples.
        ft = {k: median_p99(before[k] + after[k]) for k in before}
        log(f"disk: fsync median {ft['fsync'][0]:.3f} ms p99 {ft['fsync'][1]:.3f} (medians before/after "
            f"{statistics.median(before['fsync']):.3f}/{statistics.median(after['fsync']):.3f}); "
            f"fdatasync median {ft['fdatasync'][0]:.3f} p99 {ft['fdatasync'][1]:.3f}")
        h, r = res["hub"], res["redis"]
        case = "SET -c 1, appendfsync always"
        fs = ft["fsync"][0]
        self.row(2, case, "req/s", h["rps"], r["rps"], True, fmt_int)
        self.row(2, case, "p50 ms", h["p50"], r["p50"], False, fmt_ms)
        self.row(2, case, "p99 ms", h["p99"], r["p99"], False, fmt_ms)
        self.row(2, case, "p99 / fsync median", h["p99"] / fs, r["p99"] / fs, False, fmt_x)
        self.row(2, case, "req/s x fsync median (about 1: one fsync per request)",
                 h["rps"] * fs / 1000, r["rps"] * fs / 1000, True, fmt_x)
        for name in ("fsync", "fdatasync"):
            b, a = statistics.median(before[name]), statistics.median(after[name])
            self.rows.append((2, "disk of the run directory (2 x 200 probes, before and after)",
                              f"write 100 B + {name}: median / p99 ms (median before, after)",
                              f"{ft[name][0]:.3f} / {ft[name][1]:.3f} ({b:.3f}, {a:.3f})", "(same disk)",
                              float("nan"), ""))

    def sampled(self, s, bgsave, bench_proc=None):
        """Samples s every 5 ms (INFO persistence, VmRSS, Pss of s and its descendants).

        With bgsave, sends BGSAVE first and stops when rdb_bgsave_in_progress is 0;
        without, stops when bench_proc exits (the control run: same observer, no save)."""
        c = s.client()
        pid = s.proc.pid
        rss0, pss0 = vm_rss_kb(pid), pss_kb(pid)
        peak_rss, peak_pss = rss0, pss0
        child, child_seen, child_gone = None, None, None
        samples = 0
        t0 = time.perf_counter()
        reply = c.bgsave() if bgsave else None
        t_reply = time.perf_counter()
        end = time.time() + min(600, remaining())
        while True:
            now = time.perf_counter()
            kids = descendants(pid)
            rss = vm_rss_kb(pid)
            pss = pss_kb(pid) + sum(pss_kb(k) for k in kids)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            live = [k for k in kids if is_alive(k)]
            if child is None and live:
                child, child_seen = live[0], now
            if child is not None and child_gone is None and child not in live:
                child_gone = now
            samples += 1
            in_progress = int(c.info("persistence")["rdb_bgsave_in_progress"])
            if (bgsave and in_progress == 0) or (not bgsave and bench_proc.poll() is not None):
                done = time.perf_counter()
                break
            if time.time() > end:
                raise TimeoutError(f"{s.kind}: sampling did not end (BGSAVE or load stuck)")
            time.sleep(max(0.0, 0.005 - (time.perf_counter() - now)))
        info = c.info("persistence")
        stats = c.info("stats")
        load_outlived = bench_proc is not None and bench_proc.poll() is None
        c.close()
        if bgsave and info.get("rdb_last_bgsave_status") != "ok":
            raise RuntimeError(f"{s.kind}: BGSAVE failed: {info}")
        return {
            "reply": reply, "secs": done - t_reply, "samples": samples,
            "interval_ms": (done - t0) * 1000 / max(samples, 1),
            "rss0": rss0, "pss0": pss0, "rss_growth": peak_rss - rss0, "pss_growth": peak_pss - pss0,
            "child_secs": (child_gone - t0) if child_gone else None,
            "cow": info.get("rdb_last_cow_size"), "fork_usec": stats.get("latest_fork_usec"),
            "load_outlived": load_outlived,
        }

    def write_load(self, s, n, secs, lead, bgsave, tag):
        """The part-3 write load (n SETs over the N keys); `lead` s in, samples s until
        the save ends (bgsave) or the load does (control). Returns (benchmark, samples)."""
        a = self.a
        outpath = os.path.join(self.root, f"p3-{s.kind}-{tag}.out")
        with open(outpath, "wb") as outf:
            p = subprocess.Popen(bench_cmd(s.port, "set", 50, 1, n, a.keys, a.value_len),
                                 stdout=outf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        CHILDREN.append(p)
        time.sleep(lead)
        if p.poll() is not None:
            raise RuntimeError("the write load ended before sampling started (too short: raise --seconds)")
        smp = self.sampled(s, bgsave, p)
        try:
            p.wait(timeout=min(max(60, secs * 6), remaining()))
        except subprocess.TimeoutExpired:
            kill_tree(p)
            raise TimeoutError("part 3 write load did not finish")
        with open(outpath) as f:
            return parse_benchmark(f.read()), smp

    def part3(self):
        a, N = self.a, self.a.keys
        pair = self.servers("p3-bgsave", [])
        keyfile = self.keys()
        for s in pair:
            t = time.time()
            pipe_load(s, keyfile, N)
            log(f"{s.kind}: loaded {N:,} keys in {time.time() - t:.1f} s, dbsize {s.client().dbsize()}")
        time.sleep(1)
        res = {}
        for s in self.order(pair):
            idle = self.sampled(s, bgsave=True)
            lead = min(1.0, a.seconds / 4)
            secs = max(a.seconds, lead + 3 * idle["secs"] + 1)
            n = calibrate(s.port, "set", 50, 1, N, a.value_len, secs)
            base, ctl = self.write_load(s, n, secs, lead, False, "baseline")
            during, sv = self.write_load(s, n, secs, lead, True, "save")
            res[s.kind] = (idle, base, during, sv, ctl)
            log(f"{s.kind}: BGSAVE idle {idle['secs'] * 1000:.0f} ms, under load {sv['secs'] * 1000:.0f} ms "
                f"({sv['samples']} samples, every {sv['interval_ms']:.1f} ms), Pss +{sv['pss_growth'] / 1024:.1f} MB "
                f"(control +{ctl['pss_growth'] / 1024:.1f}), VmRSS +{sv['rss_growth'] / 1024:.1f} MB; load n={n}: "
                f"p99.9 {base['p999']:.3f} -> {during['p999']:.3f} ms, max {base['max']:.3f} -> {during['max']:.3f} ms")
            if not sv["load_outlived"]:
                self.notes.append(f"part 3, {s.kind}: the write load ended before the save did; "
                                  "its latencies cover only part of the save")
        for s in pair:
            s.stop()
        (hi, hb, hd, hs, hc), (ri, rb, rd, rs, rc) = res["hub"], res["redis"]
        case = f"BGSAVE of {N:,} keys"
        self.row(3, case, "save duration, no load, ms", hi["secs"] * 1000, ri["secs"] * 1000, False, fmt_ms0)
        self.row(3, case, "save duration under the write load, ms (until INFO says done)",
                 hs["secs"] * 1000, rs["secs"] * 1000, False, fmt_ms0)
        self.row(3, case, "Redis fork child's lifetime under load, ms (BGSAVE sent → child exited)",
                 None, rs["child_secs"] * 1000 if rs["child_secs"] else None, False, fmt_ms0)
        self.row(3, case, "Redis fork time (INFO latest_fork_usec), ms", None,
                 rs["fork_usec"] / 1000 if rs["fork_usec"] is not None else None, False, fmt_ms)
        def mb_pct(key, base):
            return (fmt_mb_pct(hs[key], hs[base]), fmt_mb_pct(rs[key], rs[base]))
        self.row(3, case, "memory growth during save: Pss of server + children, MB (% of before)",
                 hs["pss_growth"] / 1024, rs["pss_growth"] / 1024, False, shown=mb_pct("pss_growth", "pss0"))
        self.row(3, case, "control: same Pss growth under the same load without a save, MB",
                 hc["pss_growth"] / 1024, rc["pss_growth"] / 1024, False, fmt_mb, compare=False)
        self.row(3, case, "parent VmRSS growth during save, MB (% of before; misses Redis's copies)",
                 hs["rss_growth"] / 1024, rs["rss_growth"] / 1024, False, shown=mb_pct("rss_growth", "rss0"),
                 compare=False)
        self.row(3, case, "server-reported rdb_last_cow_size, MB (the hub forks nothing)",
                 (hs["cow"] or 0) / 2**20, (rs["cow"] or 0) / 2**20, False, fmt_mb, compare=False)
        self.row(3, case, "samples during the save under load (mean interval ms)", hs["samples"], rs["samples"],
                 False, compare=False, shown=(f"{hs['samples']} ({hs['interval_ms']:.1f})",
                                              f"{rs['samples']} ({rs['interval_ms']:.1f})"))
        self.row(3, case, "share of the write-load run the save covered, %",
                 100 * hs["secs"] / hd["secs"], 100 * rs["secs"] / rd["secs"], False, fmt_mb, compare=False)
        self.row(3, case, "write load p99.9 ms, no save", hb["p999"], rb["p999"], False, fmt_ms)
        self.row(3, case, "write load p99.9 ms, during save", hd["p999"], rd["p999"], False, fmt_ms)
        self.row(3, case, "write load max ms, no save", hb["max"], rb["max"], False, fmt_ms)
        self.row(3, case, "write load max ms, during save", hd["max"], rd["max"], False, fmt_ms)
        self.row(3, case, "write load req/s, no save / during save (ratio: during)", hd["rps"], rd["rps"], True,
                 shown=(f"{hb['rps']:,.0f} / {hd['rps']:,.0f}", f"{rb['rps']:,.0f} / {rd['rps']:,.0f}"))

    def part4(self):
        N = self.a.keys
        keyfile = self.keys()
        res = {}
        for label, flags in (("snapshot", []), ("AOF", ["--appendonly", "yes", "--appendfsync", "everysec"])):
            for kind, binary in self.order([("hub", self.a.hub_bin), ("redis", self.a.redis_bin)]):
                s = Server(kind, binary, os.path.join(self.root, f"p4-{label}-{kind}"), flags)
                s.start()
                pipe_load(s, keyfile, N)
                c = s.client(timeout=600)
                if label == "snapshot":
                    c.save()
                    size = os.path.getsize(os.path.join(s.dir, "dump.rcs" if kind == "hub" else "dump.rdb"))
                else:
                    time.sleep(2.5)   # everysec: let the last second reach the file
                    size = s.dir_size("appendonlydir")
                c.close()
                s.kill9()
                took = s.start(timeout=600)
                c = s.client()
                keys = c.dbsize()
                c.close()
                s.stop()
                log(f"4 {label:<8} {kind:<5} restart with {keys:,} keys: {took * 1000:.0f} ms ({size / 1e6:.1f} MB)")
                if keys != N:
                    self.notes.append(f"part 4, {label}, {kind}: {keys:,} keys after restart, expected {N:,}")
                res[(label, kind)] = (took, size)
        for label in ("snapshot", "AOF"):
            (ht, hsz), (rt, rsz) = res[(label, "hub")], res[(label, "redis")]
            case = f"start-up load of {N:,} keys from {'dump.rcs / dump.rdb' if label == 'snapshot' else 'the AOF'}"
            self.row(4, case, "process start → PONG, ms", ht * 1000, rt * 1000, False, fmt_ms0)
            self.row(4, case, "file size, MB" if label == "snapshot" else "appendonlydir size, MB",
                     hsz / 1e6, rsz / 1e6, False, fmt_mb)

    def part5(self):
        path = os.path.join(self.root, "aof-workload.resp")
        count = gen_aof_workload(path)
        pair = self.servers("p5-aof-size", ["--appendonly", "yes", "--appendfsync", "everysec",
                                            "--auto-aof-rewrite-percentage", "0"])
        sizes = {}
        for s in self.order(pair):
            pipe_load(s, path, count)
        time.sleep(2.5)
        for s in pair:
            sizes[s.kind] = s.dir_size("appendonlydir")
            files = sorted(os.listdir(os.path.join(s.dir, "appendonlydir")))
            log(f"5 {s.kind}: appendonlydir {sizes[s.kind]:,} bytes: {', '.join(files)}")
            s.stop()
        self.row(5, "AOF after 200k SET + 100k INCR + 50k RPUSH", "appendonlydir total, bytes",
                 sizes["hub"], sizes["redis"], False, fmt_int)

    def part6(self):
        S = self.a.seconds
        tests = ["set", "incr", "lpush", "hset"]
        for label, flags in (("appendonly yes, everysec", ["--appendonly", "yes", "--appendfsync", "everysec"]),
                             ("in memory (appendonly no)", ["--appendonly", "no"])):
            pair = self.servers("p6-" + ("aof" if "yes" in flags else "memory"), flags)
            rates, p99s = [], []
            for test in tests:
                res = {}
                for s in self.order(pair):
                    res[s.kind] = measure(s, test, 50, 16, 100000, 16, S, f"6 P16 {test} {'aof' if 'yes' in flags else 'memory'}")
                h, r = res["hub"], res["redis"]
                case = f"-P 16 -c 50, {label}"
                rates.append(self.row(6, case, f"{test} req/s (p99 ms)", h["rps"], r["rps"], True,
                                      shown=(f"{h['rps']:,.0f} ({h['p99']:.3f})", f"{r['rps']:,.0f} ({r['p99']:.3f})")))
                p99s.append(r["p99"] / h["p99"] if h["p99"] > 0 else float("nan"))
            for s in pair:
                s.stop()
            self.rows.append((6, f"-P 16 -c 50, {label}", "**geo-mean req/s** (p99 redis/hub)", "", "",
                              geomean(rates), f"hub/redis (p99: {geomean(p99s):.2f})"))

    # -- output
    def table(self):
        out = ["| part | case | metric | hub | redis | ratio (> 1: hub better) | ratio is |",
               "|---:|---|---|---:|---:|---:|---|"]
        for part, case, metric, h, r, ratio, how in self.rows:
            rs = "" if ratio != ratio else ("∞" if ratio == float("inf") else f"**{ratio:.2f}**")
            out.append(f"| {part} | {case} | {metric} | {h} | {r} | {rs} | {how} |")
        return out


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ms(x):
    return "—" if x is None else f"{x:.3f}"


def fmt_ms0(x):
    return "—" if x is None else f"{x:,.1f}"


def fmt_mb(x):
    return "—" if x is None else f"{x:.1f}"


def fmt_x(x):
    return "—" if x is None else f"{x:.2f}"


def fmt_mb_pct(growth_kb, before_kb):
    return f"{growth_kb / 1024:.1f} ({100 * growth_kb / before_kb:.1f}%)" if before_kb else "—"


def geomean(xs):
    xs = [x for x in xs if x == x and 0 < x < float("inf")]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")


def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def machine_facts(a, root):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = sh(["git", "-C", repo, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"])
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    df = sh(["df", "-hT", root]).splitlines()[-1].split()
    dev = os.path.basename(df[0]).rstrip("0123456789") if df else ""
    rot = sh(["cat", f"/sys/block/{dev}/queue/rotational"]) if dev else "?"
    thp = sh(["cat", "/sys/kernel/mm/transparent_hugepage/enabled"])
    overcommit = sh(["cat", "/proc/sys/vm/overcommit_memory"])
    hub_mtime = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(a.hub_bin)))
    redis_v = sh([a.redis_bin, "--version"]).split()
    return [
        f"- commit `{commit}`{' (+ uncommitted changes)' if dirty else ''}; hub binary `{a.hub_bin}` (built {hub_mtime}); "
        f"redis-server {redis_v[2] if len(redis_v) > 2 else '?'}; {sh(['redis-benchmark', '--version'])}",
        f"- machine: nproc {os.cpu_count()}, {model}; load average at start {load}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
        f"- disk of {root}: {df[0]} ({df[1]}, {df[2]} total, {df[4]} free, mounted on {df[-1]}, "
        f"rotational {rot}); transparent hugepages `{thp}`; vm.overcommit_memory {overcommit}",
        f"- settings: --keys {a.keys:,} (values {a.value_len} B), --seconds {a.seconds}, --only {a.only}",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(os.path.expanduser("~"), ".cache", "recached-target"))
    ap.add_argument("--hub-bin", default=os.path.join(target, "release", "recached"))
    ap.add_argument("--redis-bin", default=shutil.which("redis-server") or "redis-server")
    ap.add_argument("--keys", type=int, default=1_000_000, help="keys for parts 3 and 4")
    ap.add_argument("--value-len", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10, help="length of each redis-benchmark run")
    ap.add_argument("--only", default="1,2,3,4,5,6", help="parts to run, e.g. 1,3")
    ap.add_argument("--max-seconds", type=int, default=3600, help="bound on the whole run")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, files)")
    a = ap.parse_args()
    parts = sorted({int(x) for x in a.only.split(",") if x.strip()})
    if not os.path.exists(a.hub_bin):
        sys.exit(f"hub binary {a.hub_bin} not found (cargo build --release -p recached-hub)")
    for tool in ("redis-benchmark", "redis-cli"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install redis-tools)")
    DEADLINE[0] = time.time() + a.max_seconds
    become_subreaper()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    threading.Thread(target=watchdog, daemon=True).start()

    r = Run(a)
    head = machine_facts(a, r.root)
    t0 = time.time()
    try:
        for part in parts:
            log(f"part {part}")
            getattr(r, f"part{part}")()
    finally:
        kill_all()
        if not a.keep:
            shutil.rmtree(r.root, ignore_errors=True)
        else:
            log(f"kept {r.root}")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    out = ["hub vs Redis with persistence (scripts/bench-persist.py)", ""] + head
    out.append(f"- load average at end {load}; run took {time.time() - t0:.0f} s")
    out.append("")
    out += r.table()
    out.append("")
    out.append("- ratio > 1 means the hub is better: hub/redis for req/s, redis/hub for latencies, "
               "durations, memory and sizes (∞: the hub's value is 0)")
    out.append("- p99.9 is the first point of redis-benchmark's printed distribution at or above 99.9% "
               "(an upper bound); every latency is redis-benchmark's, in ms")
    out += [f"- {n}" for n in r.notes]
    print("\n".join(out))


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_all()
