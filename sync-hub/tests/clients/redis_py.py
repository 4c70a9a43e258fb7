"""redis-py against the server under test.

usage: redis_py.py PORT AUTH_PORT PASSWORD
  PORT       a server without a password
  AUTH_PORT  a server started with --requirepass PASSWORD

Runs every section, prints PASS/FAIL per section, exits 1 if any failed.
"""
import sys
import threading
import time
import traceback

import redis
from redis.exceptions import AuthenticationError, ExecAbortError, ResponseError, WatchError

PORT, AUTH_PORT, PASSWORD = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
TIMEOUT = 10


def client(**kw):
    kw.setdefault("socket_timeout", TIMEOUT)
    kw.setdefault("socket_connect_timeout", TIMEOUT)
    return redis.Redis(host="127.0.0.1", port=kw.pop("port", PORT), **kw)


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def raises(exc, fn, *a, contains=None):
    try:
        fn(*a)
    except exc as e:
        if contains and contains not in str(e):
            raise AssertionError(f"error {e!r} lacks {contains!r}")
        return e
    raise AssertionError(f"{fn} did not raise {exc.__name__}")


SECTIONS = []


def section(fn):
    SECTIONS.append(fn)
    return fn


@section
def strings():
    r = client()
    eq(r.set("s:a", "1"), True)
    eq(r.get("s:a"), b"1")
    eq(r.incr("s:a"), 2)
    eq(r.incrby("s:a", 40), 42)
    eq(r.decr("s:a"), 41)
    eq(r.incrbyfloat("s:f", 1.5), 1.5)
    eq(r.incrbyfloat("s:f", "0.25"), 1.75)
    eq(r.append("s:b", "hello"), 5)
    eq(r.append("s:b", " world"), 11)
    eq(r.strlen("s:b"), 11)
    eq(r.getrange("s:b", 0, 4), b"hello")
    eq(r.setrange("s:b", 6, "WORLD"), 11)
    eq(r.get("s:b"), b"hello WORLD")
    eq(r.mset({"s:m1": "x", "s:m2": "y"}), True)
    eq(r.mget("s:m1", "s:m2", "s:nope"), [b"x", b"y", None])
    eq(r.setnx("s:m1", "z"), False)
    eq(r.set("s:m1", "z", nx=True), None)
    eq(r.set("s:m1", "z", xx=True, get=True), b"x")
    eq(r.getdel("s:m1"), b"z")
    eq(r.exists("s:m1"), 0)
    eq(r.getset("s:m2", "w"), b"y")
    eq(r.msetnx({"s:n1": "1", "s:m2": "2"}), False)
    eq(r.type("s:a"), b"string")
    raises(ResponseError, r.incr, "s:b", contains="not an integer")
    r.rpush("s:list", "x")
    raises(ResponseError, r.get, "s:list", contains="WRONGTYPE")


@section
def lists():
    r = client()
    eq(r.rpush("l:a", "a", "b", "c"), 3)
    eq(r.lpush("l:a", "z"), 4)
    eq(r.lrange("l:a", 0, -1), [b"z", b"a", b"b", b"c"])
    eq(r.llen("l:a"), 4)
    eq(r.lindex("l:a", -1), b"c")
    eq(r.lset("l:a", 1, "A"), True)
    eq(r.linsert("l:a", "before", "b", "ins"), 5)
    eq(r.lrem("l:a", 0, "ins"), 1)
    eq(r.lpos("l:a", "b"), 2)
    eq(r.lpop("l:a"), b"z")
    eq(r.rpop("l:a", 2), [b"c", b"b"])
    eq(r.rpush("l:b", *range(10)), 10)
    eq(r.ltrim("l:b", 2, 4), True)
    eq(r.lrange("l:b", 0, -1), [b"2", b"3", b"4"])
    eq(r.lmove("l:b", "l:c", "LEFT", "RIGHT"), b"2")
    eq(r.rpoplpush("l:b", "l:c"), b"4")
    eq(r.lrange("l:c", 0, -1), [b"4", b"2"])
    eq(r.lpop("l:none"), None)
    eq(r.lmpop(2, "l:none", "l:c", direction="RIGHT", count=5), [b"l:c", [b"2", b"4"]])
    eq(r.exists("l:c"), 0)


@section
def hashes():
    r = client()
    eq(r.hset("h:a", mapping={"f1": "v1", "f2": "2"}), 2)
    eq(r.hget("h:a", "f1"), b"v1")
    eq(r.hmget("h:a", ["f1", "nope"]), [b"v1", None])
    eq(r.hgetall("h:a"), {b"f1": b"v1", b"f2": b"2"})
    eq(r.hincrby("h:a", "f2", 3), 5)
    eq(r.hincrbyfloat("h:a", "fl", 0.5), 0.5)
    eq(r.hexists("h:a", "f1"), True)
    eq(r.hlen("h:a"), 3)
    eq(sorted(r.hkeys("h:a")), [b"f1", b"f2", b"fl"])
    eq(sorted(r.hvals("h:a")), [b"0.5", b"5", b"v1"])
    eq(r.hsetnx("h:a", "f1", "x"), False)
    eq(r.hstrlen("h:a", "f1"), 2)
    eq(r.hdel("h:a", "f1", "nope"), 1)
    eq(dict(r.hscan_iter("h:a")), {b"f2": b"5", b"fl": b"0.5"})
    big = {f"f{i}": str(i) for i in range(1000)}
    r.hset("h:big", mapping=big)
    eq(len(dict(r.hscan_iter("h:big", count=50))), 1000)
    eq(r.type("h:a"), b"hash")


@section
def sets():
    r = client()
    eq(r.sadd("st:a", "a", "b", "c"), 3)
    eq(r.sadd("st:b", "b", "c", "d"), 3)
    eq(r.smembers("st:a"), {b"a", b"b", b"c"})
    eq(r.sismember("st:a", "a"), True)
    eq(r.smismember("st:a", ["a", "z"]), [True, False])
    eq(r.scard("st:a"), 3)
    eq(r.sinter("st:a", "st:b"), {b"b", b"c"})
    eq(r.sunion("st:a", "st:b"), {b"a", b"b", b"c", b"d"})
    eq(r.sdiff("st:a", "st:b"), {b"a"})
    eq(r.sinterstore("st:c", ["st:a", "st:b"]), 2)
    eq(r.smove("st:a", "st:c", "a"), True)
    eq(r.smembers("st:c"), {b"a", b"b", b"c"})
    eq(r.srem("st:c", "a", "zz"), 1)
    m = r.spop("st:c")
    assert m in (b"b", b"c"), m
    eq(r.scard("st:c"), 1)
    eq(r.srandmember("st:b") in {b"b", b"c", b"d"}, True)
    eq(len(r.srandmember("st:b", -10)), 10)
    r.sadd("st:big", *range(1000))
    eq(len(set(r.sscan_iter("st:big", count=100))), 1000)
    eq(r.type("st:a"), b"set")


@section
def sorted_sets():
    r = client()
    eq(r.zadd("z:a", {"a": 1, "b": 2, "c": 3.5}), 3)
    eq(r.zscore("z:a", "c"), 3.5)
    eq(r.zrange("z:a", 0, -1, withscores=True), [(b"a", 1.0), (b"b", 2.0), (b"c", 3.5)])
    eq(r.zrevrange("z:a", 0, 0), [b"c"])
    eq(r.zrangebyscore("z:a", "(1", "+inf"), [b"b", b"c"])
    eq(r.zrange("z:a", 3, 1, byscore=True, desc=True, offset=0, num=1), [b"b"])
    eq(r.zrank("z:a", "b"), 1)
    eq(r.zrevrank("z:a", "b"), 1)
    eq(r.zincrby("z:a", 10, "a"), 11.0)
    eq(r.zcard("z:a"), 3)
    eq(r.zcount("z:a", 2, 4), 2)
    eq(r.zadd("z:a", {"b": 5}, xx=True, ch=True), 1)
    eq(r.zadd("z:a", {"b": 1}, gt=True, ch=True), 0)
    eq(r.zpopmin("z:a"), [(b"c", 3.5)])
    eq(r.zpopmax("z:a"), [(b"a", 11.0)])
    eq(r.zrem("z:a", "b"), 1)
    eq(r.exists("z:a"), 0)
    eq(r.zadd("z:lex", {"a": 0, "b": 0, "c": 0}), 3)
    eq(r.zrangebylex("z:lex", "[b", "+"), [b"b", b"c"])
    eq(r.zmscore("z:lex", ["a", "zz"]), [0.0, None])
    r.zadd("z:u1", {"x": 1, "y": 2})
    r.zadd("z:u2", {"y": 3, "z": 4})
    eq(r.zunionstore("z:u", ["z:u1", "z:u2"]), 3)
    eq(r.zrange("z:u", 0, -1, withscores=True), [(b"x", 1.0), (b"z", 4.0), (b"y", 5.0)])
    eq(r.type("z:u"), b"zset")


@section
def keys_and_expiry():
    r = client()
    r.set("k:a", "1")
    eq(r.expire("k:a", 100), True)
    t = r.ttl("k:a")
    assert 99 <= t <= 100, t
    assert 0 < r.pttl("k:a") <= 100_000
    eq(r.persist("k:a"), True)
    eq(r.ttl("k:a"), -1)
    eq(r.ttl("k:none"), -2)
    r.set("k:px", "v", px=150)
    r.set("k:ex", "v", ex=1)
    r.rpush("k:list", "x")
    r.pexpire("k:list", 150)
    r.sadd("k:hash", "m")
    r.pexpireat("k:hash", int(time.time() * 1000) + 150)
    eq(r.get("k:px"), b"v")
    time.sleep(0.4)
    eq(r.get("k:px"), None)
    eq(r.exists("k:list", "k:hash"), 0)
    eq(r.get("k:ex"), b"v")
    time.sleep(0.8)
    eq(r.get("k:ex"), None)
    # Active expiry: keys nobody touches disappear from DBSIZE on their own.
    r.flushdb()
    for i in range(50):
        r.set(f"k:act:{i}", "v", px=100)
    time.sleep(1.5)
    eq(r.dbsize(), 0, "dbsize after active expiry")
    r.set("k:r1", "v")
    eq(r.rename("k:r1", "k:r2"), True)
    eq(r.get("k:r2"), b"v")
    eq(r.renamenx("k:r2", "k:r2"), False)
    r.mset({f"k:scan:{i}": i for i in range(500)})
    eq(len(set(r.scan_iter(match="k:scan:*", count=50))), 500)
    eq(len(r.keys("k:scan:1*")), 111)
    eq(r.delete("k:r2", "k:none"), 1)
    eq(r.unlink("k:scan:1"), 1)
    eq(r.copy("k:scan:2", "k:copy"), True)
    eq(r.get("k:copy"), b"2")
    eq(r.getex("k:copy", px=100000) , b"2")
    assert r.pttl("k:copy") > 90000
    r1 = client(db=1)
    eq(r1.get("k:copy"), None)
    r1.set("k:db1", "x")
    eq(r.get("k:db1"), None)
    eq(r1.move("k:db1", 0), True)
    eq(r.get("k:db1"), b"x")


@section
def pipeline_10000():
    r = client()
    p = r.pipeline(transaction=False)
    for i in range(10_000):
        p.set(f"p:{i}", i)
    for i in range(10_000):
        p.incr(f"p:{i}")
    res = p.execute()
    eq(len(res), 20_000)
    assert all(x is True for x in res[:10_000])
    eq(res[10_000:], [i + 1 for i in range(10_000)], "INCR results")
    p = r.pipeline(transaction=False)
    for i in range(10_000):
        p.get(f"p:{i}")
    eq(p.execute(), [str(i + 1).encode() for i in range(10_000)])
    # An error inside a pipeline is returned in place; the rest still runs.
    p = r.pipeline(transaction=False)
    p.set("p:x", "a").incr("p:x").get("p:x")
    res = p.execute(raise_on_error=False)
    eq(res[0], True)
    assert isinstance(res[1], ResponseError), res
    eq(res[2], b"a")


@section
def transactions():
    r = client()
    p = r.pipeline(transaction=True)
    p.set("t:a", 1).incr("t:a").lpush("t:l", "x").get("t:a")
    eq(p.execute(), [True, 2, 1, b"2"])
    # WATCH: a concurrent change aborts EXEC.
    other = client()
    with r.pipeline() as p:
        p.watch("t:a")
        eq(p.get("t:a"), b"2")
        other.set("t:a", 100)
        p.multi()
        p.set("t:a", 3)
        raises(WatchError, p.execute)
    eq(r.get("t:a"), b"100")
    # Without interference it commits.
    def incr(pipe):
        v = int(pipe.get("t:a"))
        pipe.multi()
        pipe.set("t:a", v + 1)
    r.transaction(incr, "t:a")
    eq(r.get("t:a"), b"101")
    # An error queued at execution time does not abort the others.
    p = r.pipeline(transaction=True)
    p.set("t:s", "x").incr("t:s").set("t:s2", "y")
    res = p.execute(raise_on_error=False)
    eq(res[0], True)
    assert isinstance(res[1], ResponseError)
    eq(res[2], True)
    # A syntax error while queueing aborts EXEC.
    raw = client()
    eq(raw.execute_command("MULTI"), b"OK")
    raises(ResponseError, raw.execute_command, "SET", "t:only-one-arg")
    raises(ExecAbortError, raw.execute_command, "EXEC", contains="Transaction discarded because of previous errors")
    eq(raw.exists("t:only-one-arg"), 0)
    eq(raw.execute_command("MULTI"), b"OK")
    eq(raw.execute_command("DISCARD"), b"OK")
    raises(ResponseError, raw.execute_command, "EXEC", contains="EXEC without MULTI")


@section
def pubsub_patterns():
    r = client()
    ps = r.pubsub()
    ps.subscribe("news.tech")
    ps.psubscribe("news.*", "h?llo", "x[ab]z")
    for _ in range(4):
        m = ps.get_message(timeout=TIMEOUT)
        assert m and m["type"] in ("subscribe", "psubscribe"), m
    eq(r.publish("news.tech", "hi"), 2)
    eq(r.publish("hello", b"\x00\r\n"), 1)
    eq(r.publish("xbz", "3"), 1)
    eq(r.publish("xcz", "none"), 0)
    got = []
    deadline = time.time() + TIMEOUT
    while len(got) < 4 and time.time() < deadline:
        m = ps.get_message(timeout=1)
        if m:
            got.append((m["type"], m["pattern"], m["channel"], m["data"]))
    eq(sorted(got), sorted([
        ("message", None, b"news.tech", b"hi"),
        ("pmessage", b"news.*", b"news.tech", b"hi"),
        ("pmessage", b"h?llo", b"hello", b"\x00\r\n"),
        ("pmessage", b"x[ab]z", b"xbz", b"3"),
    ]))
    eq(r.pubsub_channels(), [b"news.tech"])
    eq(r.pubsub_numsub("news.tech", "nobody"), [(b"news.tech", 1), (b"nobody", 0)])
    eq(r.pubsub_numpat(), 3)
    ps.punsubscribe("news.*")
    m = ps.get_message(timeout=TIMEOUT)
    eq(m["type"], "punsubscribe")
    eq(r.publish("news.sport", "x"), 0)
    ps.close()
    # Thread-based listener as apps use it.
    received = []
    ps2 = r.pubsub(ignore_subscribe_messages=True)
    ps2.psubscribe(**{"ev:*": lambda m: received.append(m["data"])})
    t = ps2.run_in_thread(sleep_time=0.01)
    time.sleep(0.2)
    for i in range(100):
        r.publish(f"ev:{i}", i)
    deadline = time.time() + TIMEOUT
    while len(received) < 100 and time.time() < deadline:
        time.sleep(0.01)
    t.stop()
    eq(received, [str(i).encode() for i in range(100)])


@section
def blocking_pops():
    r = client()
    t0 = time.time()
    eq(r.blpop(["b:none"], timeout=0.5), None)
    el = time.time() - t0
    assert 0.4 <= el < 2.0, f"BLPOP 0.5 s timeout took {el:.3f}s"
    eq(r.brpop(["b:none"], timeout=0.2), None)
    # Woken by a push from another client.
    other = client()
    def later(fn, *a):
        def go():
            time.sleep(0.2)
            fn(*a)
        th = threading.Thread(target=go)
        th.start()
        return th
    th = later(other.rpush, "b:l", "v1")
    t0 = time.time()
    eq(r.blpop(["b:none", "b:l"], timeout=5), (b"b:l", b"v1"))
    assert time.time() - t0 < 3
    th.join()
    th = later(other.rpush, "b:src", "x")
    eq(r.blmove("b:src", "b:dst", 5, "RIGHT", "LEFT"), b"x")
    th.join()
    eq(r.lrange("b:dst", 0, -1), [b"x"])
    th = later(other.lpush, "b:m", "y")
    eq(r.blmpop(5, 2, "b:none", "b:m", direction="LEFT"), [b"b:m", [b"y"]])
    th.join()
    # First come, first served: two waiters on one key.
    results = {}
    def waiter(name):
        c = client()
        results[name] = c.blpop(["b:fifo"], timeout=5)
    w1 = threading.Thread(target=waiter, args=("first",))
    w1.start()
    time.sleep(0.2)
    w2 = threading.Thread(target=waiter, args=("second",))
    w2.start()
    time.sleep(0.2)
    other.rpush("b:fifo", "a")
    time.sleep(0.2)
    other.rpush("b:fifo", "b")
    w1.join(); w2.join()
    eq(results, {"first": (b"b:fifo", b"a"), "second": (b"b:fifo", b"b")})
    # Inside MULTI a blocking pop does not block.
    p = r.pipeline(transaction=True)
    p.blpop(["b:none"], timeout=10)
    t0 = time.time()
    eq(p.execute(), [None])
    assert time.time() - t0 < 1
    # Sorted-set pops.
    eq(r.bzpopmin(["b:none"], timeout=0.2), None)
    th = later(other.zadd, "b:z", {"m": 1})
    eq(r.bzpopmax(["b:z"], timeout=5), (b"b:z", b"m", 1.0))
    th.join()


@section
def auth():
    noauth = client(port=AUTH_PORT)
    raises(AuthenticationError, noauth.get, "a", contains="Authentication required")
    raises(AuthenticationError, client(port=AUTH_PORT, password="wrong").ping)
    good = client(port=AUTH_PORT, password=PASSWORD)
    eq(good.ping(), True)
    eq(good.set("a", "b"), True)
    eq(client(port=AUTH_PORT, username="default", password=PASSWORD).get("a"), b"b")
    # No CLIENT SETINFO on connect: Redis >= 7.2 answers it NOAUTH before AUTH.
    raw = client(port=AUTH_PORT, lib_name=None, lib_version=None)
    eq(raw.execute_command("AUTH", PASSWORD), True)
    eq(raw.get("a"), b"b")
    r3 = client(port=AUTH_PORT, password=PASSWORD, protocol=3)
    eq(r3.get("a"), b"b")


@section
def reconnect_after_client_kill():
    r = client(single_connection_client=False)
    r.client_setname("victim")
    cid = r.client_id()
    assert r.client_getname() in ("victim", b"victim")
    admin = client()
    listing = admin.client_list()
    assert any(c.get("name") == "victim" for c in listing), listing
    eq(admin.client_kill_filter(_id=cid), 1)
    # The pool notices the dead socket and reconnects transparently (no pause: KILL
    # closes the victim before it answers, F7).
    eq(r.ping(), True)
    assert r.client_id() != cid
    # Kill by ADDR.
    c2 = client(single_connection_client=True)
    addr = c2.client_info()["addr"]
    eq(admin.client_kill(addr), True)
    try:
        c2.ping()
    except redis.ConnectionError:
        pass
    eq(c2.ping(), True)


@section
def large_and_binary_values():
    r = client()
    big = bytes(range(256)) * 4096  # 1 MB, every byte value
    eq(len(big), 1 << 20)
    eq(r.set("v:big", big), True)
    eq(r.get("v:big"), big)
    eq(r.strlen("v:big"), 1 << 20)
    nasty = b"\r\n\x00$5\r\n*1\r\n\x00\xff\r\n"
    eq(r.set(nasty, nasty), True)
    eq(r.get(nasty), nasty)
    r.rpush("v:l", nasty, b"", b"\x00")
    eq(r.lrange("v:l", 0, -1), [nasty, b"", b"\x00"])
    r.sadd("v:s", nasty)
    eq(r.smembers("v:s"), {nasty})
    # 1 MB values in a pipeline, both directions at once.
    p = r.pipeline(transaction=False)
    for i in range(20):
        p.set(f"v:big:{i}", big)
        p.get(f"v:big:{i}")
    res = p.execute()
    eq(res[1::2], [big] * 20)
    eq(r.append("v:big", big), 2 << 20)
    r.hset("v:h", nasty, nasty)
    eq(r.hgetall("v:h"), {nasty: nasty})
    r.zadd("v:z", {nasty: 1})
    eq(r.zrange("v:z", 0, -1), [nasty])


@section
def resp3():
    r = client(protocol=3)
    eq(r.ping(), True)
    r.sadd("r3:s", "x")
    eq(r.smembers("r3:s"), {b"x"})
    eq(r.get("r3:none"), None)
    eq(r.incrbyfloat("r3:f", 0.5), 0.5)
    hello = r.execute_command("HELLO", "3")
    eq(hello[b"proto"], 3)
    # Pub/sub as RESP3 pushes.
    ps = r.pubsub()
    ps.psubscribe("r3.*")
    m = ps.get_message(timeout=TIMEOUT)
    eq(m["type"], "psubscribe")
    eq(client().publish("r3.x", "push"), 1)
    m = ps.get_message(timeout=TIMEOUT)
    eq((m["type"], m["channel"], m["data"]), ("pmessage", b"r3.x", b"push"))
    ps.close()
    p = r.pipeline(transaction=True)
    p.set("r3:k", "v").get("r3:k").smembers("r3:s")
    eq(p.execute(), [True, b"v", {b"x"}])
    # Maps and doubles.
    r.hset("r3:h", mapping={"a": "1", "b": "2"})
    eq(r.hgetall("r3:h"), {b"a": b"1", b"b": b"2"})
    r.zadd("r3:z", {"m": 1.5})
    eq(r.zscore("r3:z", "m"), 1.5)
    eq(r.zrange("r3:z", 0, -1, withscores=True), [[b"m", 1.5]])


@section
def server_commands():
    r = client()
    info = r.info()
    eq(info.get("loading"), 0)
    assert "redis_version" in info
    assert "connected_clients" in info
    assert "used_memory" in info
    for sect in ("server", "clients", "memory", "persistence", "stats", "replication", "keyspace"):
        r.info(sect)
    r.set("srv:a", 1)
    assert r.dbsize() >= 1
    eq(r.echo("e"), b"e")
    t = r.time()
    assert abs(t[0] - time.time()) < 5, t
    eq(r.config_get("maxmemory-policy"), {"maxmemory-policy": "noeviction"})
    raises(ResponseError, r.config_set, "no-such-parameter", "1")
    cnt = r.command_count()
    assert cnt > 50, cnt
    eq(r.flushall(asynchronous=True), True)
    eq(r.dbsize(), 0)
    eq(r.execute_command("WAIT", 0, 0), 0)


def main():
    client().flushall()
    failed = []
    for fn in SECTIONS:
        t0 = time.time()
        try:
            fn()
            print(f"PASS {fn.__name__} ({time.time() - t0:.2f}s)", flush=True)
        except Exception:
            failed.append(fn.__name__)
            print(f"FAIL {fn.__name__}", flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
    print(f"redis-py {redis.__version__}: {len(SECTIONS) - len(failed)}/{len(SECTIONS)} sections passed")
    if failed:
        print("failed: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
