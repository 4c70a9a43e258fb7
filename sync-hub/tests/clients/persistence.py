"""Persistence of the hub, tried as a user would: real processes, redis-py, restarts,
kill -9, damaged files, full disks.

usage: persistence.py HUB_BINARY [SECTION ...]

Every section starts its own hubs (`--port 0`, data under a fresh temporary directory),
kills them at the end, prints PASS/FAIL, and the script exits 1 if any failed. A section
that needs a tmpfs mount (MISCONF on a really full disk) needs root; it fails, not skips,
when the mount is refused, since the test command runs as root on every machine it
targets.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

import redis
from redis.exceptions import BusyLoadingError, ConnectionError, ResponseError

BIN = sys.argv[1]
ONLY = sys.argv[2:]
TIMEOUT = 20
SECTIONS = []
LIVE = []
LOG_DIR = tempfile.mkdtemp(prefix="rc-persist-logs-")


def section(fn):
    SECTIONS.append(fn)
    return fn


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Hub:
    """One hub process: `Hub(dir, "--appendonly", "yes")`."""

    def __init__(self, data_dir, *flags, wait=True):
        self.dir = data_dir
        self.flags = flags
        # Outside the data directory, which may be a tiny tmpfs.
        self.log_path = os.path.join(LOG_DIR, f"hub-{len(LIVE)}-{time.time_ns()}.log")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--port", "0", "--ws-port", "0", "--dir", data_dir, "--loglevel", "notice", *flags],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        LIVE.append(self)
        self.port = None
        self.ws_port = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while self.ws_port is None:
            if time.time() > deadline:
                raise AssertionError("hub not ready in time")
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"hub exited during start (code {self.proc.wait()}): {self.log_text()[-2000:]}")
            line = line.decode()
            if "tcp port=" in line:
                self.port = int(line.rsplit("=", 1)[1])
            if "ws port=" in line:
                self.ws_port = int(line.rsplit("=", 1)[1])
        return self

    def client(self, **kw):
        kw.setdefault("socket_timeout", TIMEOUT)
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)

    def term(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self.log.close()


def start_fails(data_dir, *flags):
    """Starts a hub that must refuse to start: returns (exit code, stderr text)."""
    p = subprocess.run(
        [BIN, "--port", "0", "--ws-port", "0", "--dir", data_dir, *flags],
        capture_output=True,
        timeout=60,
    )
    check(b"Ready to accept connections" not in p.stdout, "the hub started")
    return p.returncode, p.stderr.decode(errors="replace")


def info(r, section="persistence"):
    return r.info(section)


def wait_until(fn, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def fill(r, prefix="k"):
    """One of every type, with and without TTL; returns what must come back."""
    p = r.pipeline(transaction=False)
    p.set(f"{prefix}:s", "hello")
    p.set(f"{prefix}:bin", b"\x00\xff\r\n")
    p.set(f"{prefix}:ttl", "v", ex=300)
    p.incrby(f"{prefix}:n", 41)
    p.incr(f"{prefix}:n")
    p.incrbyfloat(f"{prefix}:f", 1.5)
    p.rpush(f"{prefix}:l", "a", "b", "c")
    p.hset(f"{prefix}:h", mapping={"f1": "v1", "f2": "v2"})
    p.sadd(f"{prefix}:set", "x", "y")
    p.zadd(f"{prefix}:z", {"m1": 1.5, "m2": -2})
    p.execute()
    with r.pipeline(transaction=True) as t:
        t.set(f"{prefix}:tx1", "1")
        t.set(f"{prefix}:tx2", "2")
        t.execute()
    r.execute_command("SELECT", 3)
    r.set(f"{prefix}:db3", "three")
    r.execute_command("SELECT", 0)
    r.spop(f"{prefix}:set")  # random, replayed as its outcome
    return snapshot(r, prefix)


def snapshot(r, prefix="k"):
    out = {}
    for db in (0, 3):
        r.execute_command("SELECT", db)
        for key in sorted(r.keys(f"{prefix}:*")):
            t = r.type(key)
            if t == b"string":
                v = r.get(key)
            elif t == b"list":
                v = r.lrange(key, 0, -1)
            elif t == b"hash":
                v = sorted(r.hgetall(key).items())
            elif t == b"set":
                v = sorted(r.smembers(key))
            elif t == b"zset":
                v = r.zrange(key, 0, -1, withscores=True)
            else:
                v = t
            out[(db, key)] = (t, v, r.ttl(key) > 0)
    r.execute_command("SELECT", 0)
    return out


@section
def save_then_restart():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d)
    r = h.client()
    want = fill(r)
    before = r.lastsave()
    time.sleep(1.1)
    eq(r.save(), True, "SAVE")
    check(r.lastsave() > before, "LASTSAVE moves on a save")
    check(os.path.exists(os.path.join(d, "dump.rcs")), "dump.rcs written")
    r.set("after-save", "lost")  # no AOF: not in the snapshot
    h.kill9()
    h = Hub(d)
    r = h.client()
    eq(snapshot(r), want, "state after SAVE and kill -9")
    eq(r.get("after-save"), None, "a write after SAVE is not in the snapshot")
    eq(info(r)["rdb_last_load_keys_loaded"], len(want), "keys loaded")
    h.stop()


@section
def bgsave_then_restart():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d)
    r = h.client()
    want = fill(r)
    p = r.pipeline(transaction=False)
    for i in range(50_000):
        p.set(f"bulk:{i}", i)
    p.execute()
    eq(r.bgsave(), True, "BGSAVE")
    wait_until(lambda: info(r)["rdb_bgsave_in_progress"] == 0, "BGSAVE to end")
    i = info(r)
    eq(i["rdb_last_bgsave_status"], "ok", "status")
    eq(i["rdb_changes_since_last_save"], 0, "dirty reset")
    eq(r.bgsave(schedule=True), True, "BGSAVE SCHEDULE when idle")
    wait_until(lambda: info(r)["rdb_bgsave_in_progress"] == 0, "second BGSAVE")
    try:
        r.execute_command("BGSAVE", "nonsense")
        raise AssertionError("BGSAVE nonsense accepted")
    except ResponseError as e:
        eq(str(e), "syntax error", "BGSAVE bad argument")
    with r.pipeline(transaction=True) as t:
        t.execute_command("BGSAVE")
        eq(t.execute(), [True], "BGSAVE inside EXEC")
    wait_until(lambda: info(r)["rdb_saves"] >= 3 and info(r)["rdb_bgsave_in_progress"] == 0, "scheduled BGSAVE")
    h.kill9()
    h = Hub(d)
    r = h.client()
    eq(snapshot(r), want, "state after BGSAVE")
    eq(r.dbsize(), len([k for k in want if k[0] == 0]) + 50_000, "keys in db 0")
    eq(r.get("bulk:49999"), b"49999", "bulk key")
    h.stop()


def aof_mode(mode):
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d, "--appendonly", "yes", "--appendfsync", mode)
    r = h.client()
    want = fill(r)
    p = r.pipeline(transaction=False)
    for i in range(2000):
        p.rpush("aof:list", i)
    p.execute()
    eq(r.config_get("appendfsync"), {"appendfsync": mode}, "CONFIG GET appendfsync")
    h.kill9()
    h = Hub(d, "--appendonly", "yes", "--appendfsync", mode)
    r = h.client()
    eq(snapshot(r), want, f"state after kill -9 under appendfsync {mode}")
    eq(r.llen("aof:list"), 2000, "pipelined RPUSHes")
    eq(info(r)["aof_enabled"], 1, "aof_enabled")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{h.ws_port}/metrics", timeout=TIMEOUT).read().decode()
    check("\nrecached_persistence_aof_enabled 1\n" in metrics, "/metrics shows the AOF")
    check("\nrecached_persistence_aof_last_write_status 1\n" in metrics, "/metrics shows the write status")
    h.stop()


@section
def aof_always():
    aof_mode("always")


@section
def aof_everysec():
    aof_mode("everysec")


@section
def aof_no():
    aof_mode("no")


@section
def rewrite_during_writes():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d, "--appendonly", "yes", "--appendfsync", "everysec")
    acked = {}
    stop = threading.Event()
    errors = []

    def writer(n):
        r = h.client()
        key = f"ctr:{n}"
        try:
            while not stop.is_set():
                acked[key] = r.incr(key)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    r = h.client()
    p = r.pipeline(transaction=False)
    for i in range(100_000):
        p.set(f"base:{i}", "x" * 20)
    p.execute()
    for _ in range(3):
        eq(r.bgrewriteaof(), True, "BGREWRITEAOF")
        try:
            r.bgrewriteaof()
        except ResponseError as e:
            check("already in progress" in str(e), str(e))
        wait_until(lambda: info(r)["aof_rewrite_in_progress"] == 0, "rewrite to end")
        eq(info(r)["aof_last_bgrewrite_status"], "ok", "rewrite status")
    stop.set()
    for t in threads:
        t.join()
    check(not errors, f"writer errors: {errors}")
    files = sorted(os.listdir(os.path.join(d, "appendonlydir")))
    eq(len([f for f in files if f.endswith(".base.rcs")]), 1, f"one base after rewrites: {files}")
    h.kill9()
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    for key, n in acked.items():
        eq(int(r.get(key)), n, f"{key}: every acknowledged INCR")
    eq(r.dbsize(), 100_000 + len(acked), "keys")
    h.stop()


def incr_file(d):
    adir = os.path.join(d, "appendonlydir")
    with open(os.path.join(adir, "appendonly.aof.manifest")) as f:
        incrs = [line.split()[1] for line in f if line.split()[-1] == "i"]
    return os.path.join(adir, incrs[-1])


@section
def truncated_tail_is_cut_off():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    want = fill(r)
    h.kill9()
    path = incr_file(d)
    good = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x30\x11\x22\x33\x44\x01\x05")  # a record whose body never arrived
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    eq(snapshot(r), want, "state after a torn last record")
    check(f"at byte {good}" in h.log_text(), "the warning names the offset")
    c = subprocess.run([BIN, "--check-aof", path], capture_output=True, timeout=60)
    eq(c.returncode, 0, f"the file is sound again: {c.stdout.decode()}")
    h.stop()
    # With aof-load-truncated no, the same tear refuses the start.
    with open(path, "ab") as f:
        f.write(b"\x30\x11")
    code, err = start_fails(d, "--appendonly", "yes", "--aof-load-truncated", "no")
    eq(code, 1, "exit code")
    check("aof-load-truncated is no" in err and path in err, err)


@section
def corrupt_middle_refuses_to_start():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    for i in range(100):
        r.set(f"k{i}", "v" * 30)
    h.kill9()
    path = incr_file(d)
    data = bytearray(open(path, "rb").read())
    at = len(data) // 2
    data[at] ^= 0x55
    open(path, "wb").write(bytes(data))
    code, err = start_fails(d, "--appendonly", "yes")
    eq(code, 1, "exit code")
    check(path in err and "damaged at byte" in err and "--check-aof" in err, f"message names file, byte and the fix: {err}")
    manifest = os.path.join(d, "appendonlydir", "appendonly.aof.manifest")
    c = subprocess.run([BIN, "--check-aof", manifest], capture_output=True, timeout=60)
    eq(c.returncode, 1, "--check-aof finds it")
    check(b"bad record at byte" in c.stdout, c.stdout.decode())
    c = subprocess.run([BIN, "--check-aof", manifest, "--fix"], capture_output=True, timeout=60)
    eq(c.returncode, 0, f"--fix: {c.stdout.decode()}")
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    n = r.dbsize()
    check(0 < n < 100, f"the records before the damage are back: {n}")
    h.stop()


@section
def corrupt_snapshot_refuses_to_start():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d)
    r = h.client()
    for i in range(1000):
        r.set(f"k{i}", "v" * 30)
    r.save()
    h.kill9()
    path = os.path.join(d, "dump.rcs")
    original = open(path, "rb").read()
    data = bytearray(original)
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    code, err = start_fails(d)
    eq(code, 1, "exit code")
    check(path in err and "checksum mismatch" in err, err)
    eq(open(path, "rb").read(), bytes(data), "the damaged file is left as it was")
    open(path, "wb").write(original[: len(original) - 10])
    code, err = start_fails(d)
    check(code == 1 and "incomplete" in err, err)
    open(path, "wb").write(b"not a snapshot at all")
    code, err = start_fails(d)
    check(code == 1 and "bad magic" in err, err)


@section
def shutdown_and_sigterm():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d, "--save", "3600 1")
    r = h.client()
    want = fill(r)
    try:
        r.shutdown()
    except ConnectionError:
        pass
    eq(h.proc.wait(timeout=TIMEOUT), 0, "SHUTDOWN exit code")
    check(os.path.exists(os.path.join(d, "dump.rcs")), "SHUTDOWN saved (save rules set)")
    h = Hub(d, "--save", "3600 1")
    r = h.client()
    eq(snapshot(r), want, "after SHUTDOWN")
    r.set("k:new", "1")
    eq(h.term(), 0, "SIGTERM exit code")
    h = Hub(d, "--save", "3600 1")
    r = h.client()
    eq(r.get("k:new"), b"1", "SIGTERM saved")
    r.set("k:nosave", "1")
    try:
        r.shutdown(nosave=True)
    except ConnectionError:
        pass
    eq(h.proc.wait(timeout=TIMEOUT), 0, "SHUTDOWN NOSAVE exit code")
    h = Hub(d)
    r = h.client()
    eq(r.get("k:nosave"), None, "SHUTDOWN NOSAVE did not save")
    try:
        r.execute_command("SHUTDOWN", "ABORT")
    except ResponseError as e:
        eq(str(e), "No shutdown in progress.", "SHUTDOWN ABORT")
    with r.pipeline(transaction=True) as t:
        t.execute_command("SHUTDOWN")
        try:
            t.execute()
            raise AssertionError("SHUTDOWN ran inside MULTI")
        except ResponseError as e:
            check("Command not allowed inside a transaction" in str(e) or "EXECABORT" in str(e), str(e))
    eq(r.ping(), True, "still running after a queued SHUTDOWN")
    h.stop()
    # AOF + SIGTERM: the AOF is fsynced, every write is back.
    d2 = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d2, "--appendonly", "yes", "--appendfsync", "no")
    r = h.client()
    want = fill(r)
    eq(h.term(), 0, "SIGTERM with AOF")
    check("Calling fsync() on the AOF file" in h.log_text(), "fsync at exit logged")
    h = Hub(d2, "--appendonly", "yes")
    eq(snapshot(h.client()), want, "after SIGTERM with AOF")
    h.stop()


@section
def loading_answers_loading():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d)
    # 1M keys through redis-cli --pipe, so loading them takes long enough to be seen.
    payload = b"".join(
        b"*3\r\n$3\r\nSET\r\n$10\r\nkey:%06d\r\n$8\r\nvalue123\r\n" % i for i in range(1_000_000)
    )
    subprocess.run(["redis-cli", "-p", str(h.port), "--pipe"], input=payload, capture_output=True, timeout=120, check=True)
    r = h.client()
    eq(r.dbsize(), 1_000_000, "loaded through --pipe")
    r.save()
    h.kill9()
    h = Hub(d, wait=False)
    seen_loading = False
    seen_info = False
    deadline = time.time() + 60
    # The RESP port accepts before the data is loaded; find it from the log's listen line.
    port = None
    while port is None and time.time() < deadline:
        for line in h.log_text().splitlines():
            if "listening (RESP)" in line and "addr=127.0.0.1:" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
        time.sleep(0.005)
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT)
    while time.time() < deadline:
        try:
            c.ping()
            break
        except BusyLoadingError:
            seen_loading = True
            if c.info("persistence")["loading"] == 1:
                seen_info = True
        except ConnectionError:
            time.sleep(0.005)
    h.wait_ready()
    check(seen_loading, "a client saw -LOADING while 1M keys loaded")
    check(seen_info, "INFO showed loading:1")
    eq(c.dbsize(), 1_000_000, "all keys after loading")
    load = [l for l in h.log_text().splitlines() if "DB loaded from disk" in l]
    print("  load:", load[-1][-80:] if load else "?")
    h.stop()
    # SHUTDOWN while loading saves nothing over the file being loaded.
    h = Hub(d, "--save", "3600 1", wait=False)
    deadline = time.time() + 30
    done = False
    while not done and time.time() < deadline:
        for line in h.log_text().splitlines():
            if "listening (RESP)" in line and "addr=127.0.0.1:" in line:
                p2 = int(line.rsplit(":", 1)[1].split()[0])
                try:
                    redis.Redis(host="127.0.0.1", port=p2, socket_timeout=5).shutdown()
                except (ConnectionError, ResponseError):
                    pass
                done = True
        time.sleep(0.002)
    h.proc.wait(timeout=30)
    h = Hub(d)
    eq(h.client().dbsize(), 1_000_000, "SHUTDOWN during loading kept the snapshot")
    h.stop()


@section
def appendonly_switched_on_at_runtime():
    d = tempfile.mkdtemp(prefix="rc-persist-")
    h = Hub(d)
    r = h.client()
    want = fill(r)
    eq(r.config_set("appendonly", "yes"), True, "CONFIG SET appendonly yes")
    r.set("k:after", "1")
    eq(info(r)["aof_enabled"], 1, "aof on")
    # Its first base is written in the background, as Redis's rewrite; from then on the
    # AOF holds everything.
    wait_until(lambda: info(r)["aof_rewrite_in_progress"] == 0, "the first base")
    eq(info(r)["aof_last_bgrewrite_status"], "ok", "first base")
    eq(r.config_set("appendfsync", "always"), True, "CONFIG SET appendfsync always")
    r.set("k:always", "1")
    h.kill9()
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    got = snapshot(r)
    eq({k: v for k, v in got.items() if k[1] not in (b"k:after", b"k:always")}, want, "data from before the switch")
    eq((r.get("k:after"), r.get("k:always")), (b"1", b"1"), "writes after the switch")
    eq(r.config_set("appendonly", "no"), True, "CONFIG SET appendonly no")
    eq(info(r)["aof_enabled"], 0, "aof off")
    # BGREWRITEAOF with the AOF off writes a base (as Redis); a start with the AOF on then
    # loads it and opens its first increment.
    r.set("k:rewritten", "1")
    eq(r.bgrewriteaof(), True, "BGREWRITEAOF with the AOF off")
    wait_until(lambda: info(r)["aof_rewrite_in_progress"] == 0, "rewrite")
    h.kill9()
    h = Hub(d, "--appendonly", "yes")
    r = h.client()
    eq(r.get("k:rewritten"), b"1", "state from a base written with the AOF off")
    r.set("k:next", "1")
    h.kill9()
    h = Hub(d, "--appendonly", "yes")
    eq(h.client().get("k:next"), b"1", "and its new increment")
    h.stop()
    # AOF files without a manifest refuse the start instead of being overwritten.
    os.remove(os.path.join(d, "appendonlydir", "appendonly.aof.manifest"))
    code, err = start_fails(d, "--appendonly", "yes")
    check(code == 1 and "no manifest" in err, err)


def mount_tmpfs(size):
    d = tempfile.mkdtemp(prefix="rc-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", d], check=True, capture_output=True)
    return d


def umount(d):
    subprocess.run(["umount", "-l", d], capture_output=True)


def fill_disk(d):
    """Fills the filesystem of `d`; returns the filler's path."""
    path = os.path.join(d, "filler")
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return path


@section
def full_disk_refuses_writes_then_recovers():
    for mode in ("everysec", "always"):
        d = mount_tmpfs("8m")
        try:
            h = Hub(d, "--appendonly", "yes", "--appendfsync", mode)
            r = h.client()
            r.set("before", "1")
            filler = fill_disk(d)
            held = {}

            def big_write():
                c = h.client(socket_timeout=60)
                held["reply"] = c.set("big", "x" * 200_000)

            t = threading.Thread(target=big_write)
            t.start()
            wait_until(lambda: info(r)["aof_last_write_status"] == "err", "the AOF write to fail")
            check(t.is_alive(), "the write whose AOF write failed is not acknowledged")
            for cmd in (("SET", "other", "1"), ("PING",), ("DEL", "before")):
                try:
                    r.execute_command(*cmd)
                    raise AssertionError(f"{cmd} accepted on a full disk")
                except ResponseError as e:
                    eq(str(e), "MISCONF Errors writing to the AOF file: No space left on device", str(cmd))
            eq(r.get("before"), b"1", "reads keep working")
            os.remove(filler)
            t.join(timeout=30)
            eq(held.get("reply"), True, "the held write is acknowledged once written")
            wait_until(lambda: info(r)["aof_last_write_status"] == "ok", "recovery")
            eq(r.set("other", "2"), True, "writes resume without a restart")
            h.kill9()
            h = Hub(d, "--appendonly", "yes")
            r = h.client()
            eq((len(r.get("big")), r.get("other")), (200_000, b"2"), f"everything acknowledged is back ({mode})")
            h.stop()
        finally:
            umount(d)
    # A failed background save with save rules set refuses writes (stop-writes-on-bgsave-error).
    d = mount_tmpfs("8m")
    try:
        h = Hub(d, "--save", "3600 1000000")
        r = h.client()
        p = r.pipeline(transaction=False)
        for i in range(20_000):
            p.set(f"k{i}", "v" * 100)
        p.execute()
        filler = fill_disk(d)
        r.bgsave()
        wait_until(lambda: info(r)["rdb_last_bgsave_status"] == "err", "BGSAVE to fail")
        try:
            r.set("x", "1")
            raise AssertionError("write accepted after a failed BGSAVE")
        except ResponseError as e:
            check(str(e).startswith("MISCONF Redis is configured to save RDB snapshots"), str(e))
        eq(r.get("k1"), b"v" * 100, "reads keep working")
        check(not [f for f in os.listdir(d) if f.startswith("temp-")], "no temporary file left")
        os.remove(filler)
        r.bgsave()
        wait_until(lambda: info(r)["rdb_last_bgsave_status"] == "ok", "BGSAVE to succeed")
        eq(r.set("x", "1"), True, "writes resume")
        h.stop()
    finally:
        umount(d)


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
                print(f"  --- log of hub in {h.dir} (last 1500 chars) ---\n{h.log_text()[-1500:]}")
        finally:
            for h in LIVE:
                h.stop()
            LIVE.clear()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
