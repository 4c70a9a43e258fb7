"""Replication of the hub, tried as a user would: real primary and replica processes on
loopback, redis-py, a TCP proxy between them that the test cuts, blackholes and heals,
SIGSTOP/SIGCONT and restarts.

usage: replication.py HUB_BINARY [SECTION ...]

Every section starts its own hubs (`--port 0`, data under a fresh temporary directory),
kills them at the end, prints PASS/FAIL, and the script exits 1 if any failed.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import redis
from redis.exceptions import ReadOnlyError, ResponseError

BIN = sys.argv[1]
ONLY = sys.argv[2:]
TIMEOUT = 20
SECTIONS = []
LIVE = []
PROXIES = []
LOG_DIR = tempfile.mkdtemp(prefix="rc-repl-logs-")


def section(fn):
    SECTIONS.append(fn)
    return fn


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def wait_until(fn, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Hub:
    """One hub process: `Hub("--replicaof", "127.0.0.1 6379")`."""

    def __init__(self, *flags, data_dir=None, port=0):
        self.dir = data_dir or tempfile.mkdtemp(prefix="rc-repl-")
        self.flags = flags
        self.log_path = os.path.join(LOG_DIR, f"hub-{len(LIVE)}-{time.time_ns()}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--port", str(port), "--ws-port", "0", "--dir", self.dir, "--loglevel", "notice", *flags],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        LIVE.append(self)
        self.port = None
        deadline = time.time() + 60
        while self.port is None or not getattr(self, "_ws", False):
            if time.time() > deadline:
                raise AssertionError("hub not ready in time")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"hub exited during start (code {self.proc.wait()}): {self.log_text()[-2000:]}")
            line = line.decode()
            if "tcp port=" in line:
                self.port = int(line.rsplit("=", 1)[1])
            if "ws port=" in line:
                self._ws = True

    def client(self, **kw):
        kw.setdefault("socket_timeout", TIMEOUT)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def info(self, section="replication"):
        return self.client().info(section)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.log.close()


class Proxy:
    """A loopback TCP proxy to `port`: `cut()` closes every connection and refuses new
    ones, `blackhole()` keeps them open but forwards nothing, `heal()` restores."""

    def __init__(self, port):
        self.target = port
        self.mode = "pass"
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        PROXIES.append(self)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.mode == "cut":
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                while self.mode == "blackhole":
                    time.sleep(0.01)
                if self.mode == "cut":
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.mode = "cut"
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []

    def blackhole(self):
        self.mode = "blackhole"

    def heal(self):
        self.mode = "pass"

    def close(self):
        self.closed = True
        self.cut()
        self.lsock.close()


def fill(r, prefix="k", n=50):
    """Every type, with and without TTL, in two databases."""
    p = r.pipeline(transaction=False)
    for i in range(n):
        p.set(f"{prefix}:s:{i}", f"v{i}")
        p.rpush(f"{prefix}:l:{i}", "a", "b", i)
        p.hset(f"{prefix}:h:{i}", mapping={"f1": "v1", "f2": i})
        p.sadd(f"{prefix}:set:{i}", "x", "y", i)
        p.zadd(f"{prefix}:z:{i}", {"m1": 1.5, "m2": -i})
    p.set(f"{prefix}:bin", b"\x00\xff\r\n")
    p.set(f"{prefix}:ttl", "v", ex=300)
    p.incrbyfloat(f"{prefix}:f", 1.5)
    p.execute()
    r.spop(f"{prefix}:set:0")  # random: replicated as its outcome
    r.execute_command("SELECT", 3)
    r.set(f"{prefix}:db3", "three")
    r.execute_command("SELECT", 0)


def dataset(r):
    """Every key of databases 0 and 3 with its type, value and whether it has a TTL
    (read in pipelined batches)."""
    out = {}
    readers = {
        b"string": lambda p, k: p.get(k),
        b"list": lambda p, k: p.lrange(k, 0, -1),
        b"hash": lambda p, k: p.hgetall(k),
        b"set": lambda p, k: p.smembers(k),
        b"zset": lambda p, k: p.zrange(k, 0, -1, withscores=True),
    }
    for db in (0, 3):
        c = redis.Redis(host="127.0.0.1", port=r.connection_pool.connection_kwargs["port"], db=db, socket_timeout=TIMEOUT)
        keys = sorted(c.scan_iter(count=1000))
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            p = c.pipeline(transaction=False)
            for k in batch:
                p.type(k)
                p.pttl(k)
            meta = p.execute()
            p = c.pipeline(transaction=False)
            for j, k in enumerate(batch):
                readers.get(meta[2 * j], lambda p, k: p.type(k))(p, k)
            values = p.execute()
            for j, k in enumerate(batch):
                v = values[j]
                if isinstance(v, dict):
                    v = sorted(v.items())
                elif isinstance(v, set):
                    v = sorted(v)
                out[(db, k)] = (meta[2 * j], v, meta[2 * j + 1] > 0)
        c.close()
    return out


def synced(replica, primary):
    """The replica's link is up and it holds the primary's offset."""
    ri = replica.info()
    pi = primary.info()
    return ri.get("master_link_status") == "up" and ri.get("slave_repl_offset") == pi["master_repl_offset"]


def same_data(replica, primary, what):
    wait_until(lambda: synced(replica, primary), f"{what}: replica caught up")
    eq(dataset(replica.client()), dataset(primary.client()), what)


@section
def full_sync_every_type_and_stream():
    p = Hub()
    pr = p.client()
    fill(pr)
    r = Hub("--replicaof", f"127.0.0.1 {p.port}")
    same_data(r, p, "after the full sync")
    rr = r.client()
    eq(rr.info("replication")["role"], "slave", "INFO role")
    eq(rr.execute_command("ROLE")[0], b"slave", "ROLE on the replica")
    role = pr.execute_command("ROLE")
    eq(role[0], b"master", "ROLE on the primary")
    eq(len(role[2]), 1, "ROLE lists the replica")
    pi = p.info()
    eq(pi["connected_slaves"], 1, "connected_slaves")
    check(pi["slave0"]["state"] == "online", f"slave0: {pi['slave0']}")
    eq(rr.info("replication")["master_replid"], pi["master_replid"], "the replica follows the primary's replid")
    # The stream: every kind of write after the sync.
    fill(pr, prefix="after", n=10)
    pr.delete("k:s:1")
    pr.expire("k:s:2", 100)
    pr.persist("k:ttl")
    pr.lpop("k:l:3")
    pr.hdel("k:h:4", "f1")
    pr.zincrby("k:z:5", 2, "m1")
    with pr.pipeline(transaction=True) as t:
        t.incr("ctr")
        t.rpush("k:l:6", "tx")
        t.execute()
    pr.eval("redis.call('set', KEYS[1], ARGV[1]) redis.call('incr', KEYS[2])", 2, "lua:a", "lua:b", "x")
    same_data(r, p, "after writes on the primary")
    # Expiry comes from the primary: a key with a short TTL goes on both.
    pr.set("short", "v", px=200)
    wait_until(lambda: rr.exists("short") == 1 or pr.exists("short") == 0, "short key on the replica")
    wait_until(lambda: pr.exists("short") == 0, "the primary expires it")
    wait_until(lambda: rr.exists("short") == 0, "the replica drops it")
    # Read-only.
    try:
        rr.set("x", 1)
        raise AssertionError("a write on the replica was accepted")
    except ReadOnlyError as e:
        eq(str(e), "You can't write against a read only replica.", "READONLY text")
    eq(rr.get("k:s:3"), b"v3", "reads on the replica")
    # FLUSHALL travels too.
    pr.flushall()
    same_data(r, p, "after FLUSHALL")
    eq(rr.dbsize(), 0, "replica empty after FLUSHALL")


@section
def full_sync_under_writes():
    p = Hub()
    pr = p.client()
    pipe = pr.pipeline(transaction=False)
    for i in range(100_000):
        pipe.set(f"big:{i}", "x" * 20)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    stop = threading.Event()
    written = [0]

    def writer():
        c = p.client()
        i = 0
        while not stop.is_set():
            c.incr("ctr")
            c.set(f"w:{i % 5000}", i)
            i += 1
        written[0] = i

    t = threading.Thread(target=writer)
    t.start()
    try:
        r = Hub("--replicaof", f"127.0.0.1 {p.port}")
        wait_until(lambda: r.info().get("master_link_status") == "up", "link up", timeout=60)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    check(written[0] > 100, f"the writer ran ({written[0]} iterations)")
    same_data(r, p, "after a full sync under writes")
    eq(p.info("stats")["sync_full"], 1, "one full sync")


@section
def partial_resync_after_cut_and_blackhole():
    p = Hub()
    pr = p.client()
    fill(pr)
    proxy = Proxy(p.port)
    r = Hub("--replicaof", f"127.0.0.1 {proxy.port}", "--repl-timeout", "2")
    same_data(r, p, "first sync")
    full0 = p.info("stats")["sync_full"]
    # A cut link: writes meanwhile come from the backlog.
    proxy.cut()
    wait_until(lambda: r.info()["master_link_status"] == "down", "link down after the cut")
    for i in range(100):
        pr.set(f"during-cut:{i}", i)
    proxy.heal()
    same_data(r, p, "after the cut healed")
    # A silent partition: nothing arrives, the replica notices by the heartbeat timeout.
    proxy.blackhole()
    for i in range(100):
        pr.set(f"during-blackhole:{i}", i)
    wait_until(lambda: r.info()["master_link_status"] == "down", "link down in the blackhole", timeout=10)
    proxy.cut()
    proxy.heal()
    same_data(r, p, "after the blackhole healed")
    st = p.info("stats")
    eq(st["sync_full"], full0, "no full sync after the first")
    check(st["sync_partial_ok"] >= 2, f"partial resyncs: {st['sync_partial_ok']}")


@section
def replica_restart_resumes_partially():
    p = Hub()
    pr = p.client()
    fill(pr)
    d = tempfile.mkdtemp(prefix="rc-repl-replica-")
    flags = ("--replicaof", f"127.0.0.1 {p.port}", "--appendonly", "yes")
    r = Hub(*flags, data_dir=d)
    same_data(r, p, "first sync")
    pr.set("before-restart", 1)
    wait_until(lambda: synced(r, p), "caught up")
    time.sleep(0.2)
    r.kill9()
    for i in range(50):
        pr.set(f"while-down:{i}", i)
    r = Hub(*flags, data_dir=d)
    same_data(r, p, "after the replica's restart")
    st = p.info("stats")
    eq(st["sync_full"], 1, "the restarted replica did not sync in full")
    check(st["sync_partial_ok"] >= 1, "it continued from its offset")


@section
def replica_too_far_behind_syncs_in_full_once():
    p = Hub("--repl-backlog-size", "64kb")
    pr = p.client()
    fill(pr)
    proxy = Proxy(p.port)
    r = Hub("--replicaof", f"127.0.0.1 {proxy.port}")
    same_data(r, p, "first sync")
    proxy.cut()
    wait_until(lambda: r.info()["master_link_status"] == "down", "link down")
    for i in range(2000):
        pr.set(f"flood:{i}", "y" * 200)
    proxy.heal()
    same_data(r, p, "after falling past the backlog")
    st = p.info("stats")
    eq(st["sync_full"], 2, "exactly one more full sync")
    check(st["sync_partial_err"] >= 1, "the partial resync was refused")


@section
def wait_and_min_replicas_to_write():
    p = Hub()
    pr = p.client()
    eq(pr.execute_command("WAIT", 1, 100), 0, "WAIT with no replica")
    r = Hub("--replicaof", f"127.0.0.1 {p.port}")
    wait_until(lambda: synced(r, p), "link up")
    pr.set("a", 1)
    eq(pr.execute_command("WAIT", 1, 2000), 1, "WAIT 1 after a write")
    eq(pr.execute_command("WAIT", 0, 0), 1, "WAIT 0 0")
    try:
        r.client().execute_command("WAIT", 1, 10)
        raise AssertionError("WAIT on a replica")
    except ResponseError as e:
        check("WAIT cannot be used with replica instances" in str(e), str(e))
    # A stopped replica acknowledges nothing.
    r.proc.send_signal(signal.SIGSTOP)
    try:
        pr.set("b", 2)
        t = time.time()
        eq(pr.execute_command("WAIT", 1, 300), 0, "WAIT while the replica is stopped")
        check(time.time() - t >= 0.28, "WAIT waited its timeout")
        pr.config_set("min-replicas-max-lag", 1)
        pr.config_set("min-replicas-to-write", 1)
        wait_until(lambda: pr.info("replication").get("min_slaves_good_slaves") == 0, "replica counted as lagging", timeout=10)
        try:
            pr.set("c", 3)
            raise AssertionError("a write with no good replica was accepted")
        except ResponseError as e:
            eq(str(e), "NOREPLICAS Not enough good replicas to write.", "NOREPLICAS text")
        eq(pr.get("a"), b"1", "reads still served")
    finally:
        r.proc.send_signal(signal.SIGCONT)
    wait_until(lambda: pr.info("replication").get("min_slaves_good_slaves") == 1, "replica good again", timeout=10)
    eq(pr.set("c", 3), True, "writes accepted again")
    eq(pr.execute_command("WAIT", 1, 2000), 1, "WAIT after the replica resumed")
    same_data(r, p, "after SIGCONT")


@section
def replicaof_no_one_and_back():
    p = Hub()
    pr = p.client()
    fill(pr)
    r = Hub("--replicaof", f"127.0.0.1 {p.port}")
    same_data(r, p, "first sync")
    rr = r.client()
    old = rr.info("replication")["master_replid"]
    eq(rr.execute_command("REPLICAOF", "NO", "ONE"), b"OK", "REPLICAOF NO ONE")
    ri = rr.info("replication")
    eq(ri["role"], "master", "promoted")
    eq(ri["master_replid2"], old, "the old replid is kept as the secondary")
    check(ri["master_replid"] != old, "a new replid")
    eq(rr.set("own", 1), True, "writes accepted after promotion")
    # And back: it follows the primary again (its own write is gone).
    eq(rr.execute_command("REPLICAOF", "127.0.0.1", str(p.port)), b"OK", "REPLICAOF back")
    eq(rr.execute_command("REPLICAOF", "127.0.0.1", str(p.port)), b"OK Already connected to specified master", "REPLICAOF again")
    same_data(r, p, "after REPLICAOF back")
    eq(rr.get("own"), None, "the promoted copy's own write is replaced by the primary's data")
    # A primary that was promoted is a primary of its own replicas: chain two levels.
    r2 = Hub("--replicaof", f"127.0.0.1 {r.port}")
    pr.set("chained", "yes")
    same_data(r2, p, "a replica of a replica")
    try:
        rr.execute_command("REPLICAOF", "127.0.0.1", "notaport")
        raise AssertionError("a bad port was accepted")
    except ResponseError as e:
        eq(str(e), "Invalid master port", "bad port")


def confirmed_writes(c, prefix, n):
    """Writes `n` keys, each confirmed by `WAIT 1`; returns the confirmed ones."""
    done = {}
    for i in range(n):
        c.set(f"{prefix}:{i}", i)
        if c.execute_command("WAIT", 1, 1000) == 1:
            done[f"{prefix}:{i}".encode()] = str(i).encode()
    return done


def accepts_writes(h):
    try:
        h.client(socket_timeout=2).set("probe", "x")
        return True
    except (ResponseError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False


@section
def failover_after_the_primary_dies():
    d = tempfile.mkdtemp(prefix="rc-repl-primary-")
    p = Hub(data_dir=d)
    r = Hub("--replicaof", f"127.0.0.1 {p.port}", "--failover-timeout", "1000")
    wait_until(lambda: synced(r, p), "link up")
    pr = p.client()
    wait_until(lambda: p.info().get("failover_designated_replica_timeout") == 1000, "the primary knows its designated replica")
    wait_until(lambda: accepts_writes(p), "the primary holds the lease")
    confirmed = confirmed_writes(pr, "c", 50)
    eq(len(confirmed), 50, "every write confirmed by WAIT 1")
    port = p.port
    p.kill9()
    t0 = time.time()
    wait_until(lambda: accepts_writes(r), "the replica promotes itself", timeout=10)
    took = time.time() - t0
    print(f"  failover: SIGKILL to the replica accepting writes in {took * 1000:.0f} ms (timeout 1000 ms)")
    check(took <= 2.0, f"failover took {took:.2f} s (target: timeout + 1 s)")
    ri = r.info()
    eq(ri["role"], "master", "promoted")
    eq(ri["failover_epoch"], 1, "epoch raised")
    rr = r.client()
    for k, v in confirmed.items():
        eq(rr.get(k), v, f"confirmed write {k!r} after failover")
    check("FAILOVER: no word from primary" in r.log_text(), "one clear log line")
    # The old primary comes back on its address: it remembers it had a designated replica,
    # so it starts fenced, then the new primary demotes it and it follows.
    p = Hub(data_dir=d, port=port)
    wait_until(lambda: p.info()["role"] == "slave", "the old primary becomes a replica", timeout=15)
    same_data(p, r, "the old primary follows the new one")
    eq(p.info()["failover_epoch"], 1, "the old primary took the new epoch")
    eq(r.client().set("after", 1), True, "the new primary takes writes")


@section
def a_partition_fences_the_old_primary_first():
    p = Hub()
    pr = p.client()
    proxy = Proxy(p.port)
    r = Hub("--replicaof", f"127.0.0.1 {proxy.port}", "--failover-timeout", "1000")
    wait_until(lambda: synced(r, p), "link up")
    wait_until(lambda: accepts_writes(p), "the primary holds the lease")
    confirmed = confirmed_writes(pr, "c", 30)
    eq(len(confirmed), 30, "writes confirmed before the partition")
    # A silent partition: both nodes alive, nothing gets through.
    proxy.blackhole()
    t0 = time.time()
    last_ok_on_p = None
    accepted_unconfirmed = 0
    fenced_at = None
    c = p.client(socket_timeout=2)
    i = 0
    while time.time() - t0 < 3:
        try:
            c.set(f"p-partition:{i}", i)
            last_ok_on_p = time.time()
            accepted_unconfirmed += 1
        except ResponseError as e:
            check("NOREPLICAS" in str(e), str(e))
            fenced_at = fenced_at or time.time()
            break
        i += 1
        time.sleep(0.005)
    check(fenced_at is not None, "the old primary fenced itself")
    print(f"  fence: {1000 * (fenced_at - t0):.0f} ms after the partition; {accepted_unconfirmed} unconfirmed writes before it")
    check(fenced_at - t0 <= 0.8, f"fenced after {fenced_at - t0:.2f} s (lease: half the 1 s timeout)")
    wait_until(lambda: r.info()["role"] == "master", "the replica promotes", timeout=5)
    first_ok_on_r = None
    wait_until(lambda: accepts_writes(r), "the new primary takes writes")
    first_ok_on_r = time.time()
    check(last_ok_on_p is None or last_ok_on_p < first_ok_on_r, "the two never both took writes")
    check(not accepts_writes(p), "the old primary still refuses writes")
    # Heal: the new primary reaches the old one and demotes it; it drops its unconfirmed tail.
    proxy.cut()
    proxy.heal()
    wait_until(lambda: p.info()["role"] == "slave", "the old primary rejoins as a replica", timeout=15)
    same_data(p, r, "after the partition healed")
    pi = p.info()
    check(pi["failover_discarded_groups"] >= 1 or accepted_unconfirmed == 0, f"discarded groups counted: {pi['failover_discarded_groups']}")
    check("DEMOTED:" in p.log_text(), "the old primary says what it discarded")
    rr = r.client()
    for k, v in confirmed.items():
        eq(rr.get(k), v, f"confirmed write {k!r} survives")


@section
def a_redis_primary_is_refused_clearly():
    """A Recached replica of a real Redis primary says what is wrong instead of looping."""
    red_port = free_port()
    red = subprocess.Popen(
        ["redis-server", "--port", str(red_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: can_connect(red_port), "redis-server up")
        r = Hub("--replicaof", f"127.0.0.1 {red_port}")
        wait_until(lambda: "not a Recached hub" in r.log_text(), "the log says why")
        eq(r.info()["master_link_status"], "down", "link down")
    finally:
        red.kill()
        red.wait(timeout=TIMEOUT)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def can_connect(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def main():
    failed = 0
    for fn in SECTIONS:
        if ONLY and fn.__name__ not in ONLY:
            continue
        t = time.time()
        try:
            fn()
            print(f"PASS {fn.__name__} ({time.time() - t:.1f}s)", flush=True)
        except Exception:  # noqa: BLE001
            failed += 1
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc()
            for h in LIVE:
                print(f"  --- log of hub {h.flags} (last 2000 chars) ---\n{h.log_text()[-2000:]}")
        finally:
            for px in PROXIES:
                px.close()
            PROXIES.clear()
            for h in LIVE:
                h.stop()
            LIVE.clear()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
