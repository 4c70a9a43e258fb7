"""Lua scripting of the hub against Redis 7 itself: the same scripts sent to a hub process
and to Debian's redis-server, replies compared byte for byte; BUSY and SCRIPT KILL on a
long script; redis-py's Lock (sync and asyncio), which releases with EVALSHA; the `limits`
rate limiters (fixed, moving and sliding windows); a dramatiq worker (send, results,
retries); rate-limiter-flexible on ioredis and node-redis; a celery worker (delay/get,
retries, group, chain, chord); django-redis's cache and lock.

usage: scripting.py HUB_BINARY [SECTION ...]

Each section prints PASS/FAIL; the script exits 1 if any failed. Every process it starts
listens on loopback and is stopped at the end.
"""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import redis
import redis.asyncio

BIN = sys.argv[1]
ONLY = sys.argv[2:]
TIMEOUT = 20
SECTIONS = []
PROCS = []


def section(fn):
    SECTIONS.append(fn)
    return fn


def eq(got, want, what=""):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_hub(*flags):
    p = subprocess.Popen([BIN, "--port", "0", "--ws-port", "0", "--bind", "127.0.0.1", *flags], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    PROCS.append(p)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = p.stdout.readline().decode()
        if not line:
            raise AssertionError(f"hub exited during start ({p.wait()})")
        if "tcp port=" in line:
            return p, int(line.rsplit("=", 1)[1])
    raise AssertionError("hub not ready in time")


def start_redis(*flags):
    port = free_port()
    d = tempfile.mkdtemp(prefix="rc-script-redis-")
    p = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", d, *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    PROCS.append(p)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
            return p, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise AssertionError("redis-server did not start")


class Raw:
    """A RESP connection that returns each reply as the exact bytes the server sent."""

    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""

    def send(self, *args):
        out = b"*%d\r\n" % len(args)
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line + b"\r\n"

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:-2]
        if kind in b"$=!" and rest != b"-1":
            return line + self._exact(int(rest) + 2)
        if kind in b"*~>" and rest != b"-1":
            return line + b"".join(self.reply() for _ in range(int(rest)))
        if kind == b"%":
            return line + b"".join(self.reply() for _ in range(2 * int(rest)))
        return line

    def cmd(self, *args):
        self.send(*args)
        return self.reply()


# (script, keys, args); each runs on a fresh key space with `str` = "abc", `z` = {m: 1.5}.
CASES = [
    ("return 1", [], []),
    ("return 3.99", [], []),
    ("return -3.99", [], []),
    ("return 'x'", [], []),
    ("return {1, 2, {3, 'x'}, false, true, 'after'}", [], []),
    ("return {1, nil, 3}", [], []),
    ("return nil", [], []),
    ("return true", [], []),
    ("return false", [], []),
    ("return {ok='FINE'}", [], []),
    ("return {err='My Error'}", [], []),
    ("return redis.error_reply('My Error')", [], []),
    ("return redis.error_reply('Boom')", [], []),
    ("return redis.error_reply('-CODE with code')", [], []),
    ("return redis.status_reply('FINE')", [], []),
    ("return redis.error_reply(1)", [], []),
    ("return {double=3.5}", [], []),
    ("return {map={a=1}}", [], []),
    ("return {set={a=true}}", [], []),
    ("return redis.call('set', KEYS[1], ARGV[1])", ["k"], ["v"]),
    ("redis.call('set', KEYS[1], ARGV[1]); return redis.call('get', KEYS[1])", ["k"], ["v"]),
    ("return redis.call('incr', 'str')", [], []),
    ("return redis.pcall('incr', 'str')", [], []),
    ("return redis.call('nosuchcommand')", [], []),
    ("return redis.call('get')", [], []),
    ("return redis.call()", [], []),
    ("return redis.call('get', {})", [], []),
    ("return redis.call('multi')", [], []),
    ("return redis.call('eval', 'return 1', 0)", [], []),
    ("return redis.call('ping')", [], []),
    ("return redis.call('ping')['ok']", [], []),
    ("return redis.call('get', 'nokey')", [], []),
    ("return type(redis.call('get', 'nokey'))", [], []),
    ("redis.setresp(3); return type(redis.call('get', 'nokey'))", [], []),
    ("return redis.call('zscore', 'z', 'm')", [], []),
    ("redis.setresp(3); return redis.call('zscore', 'z', 'm')", [], []),
    ("redis.setresp(3); return redis.call('zscore', 'z', 'm').double", [], []),
    ("redis.setresp(3); return true", [], []),
    ("redis.setresp(3); return false", [], []),
    ("redis.setresp(4)", [], []),
    ("redis.setresp()", [], []),
    ("return redis.call('hgetall', 'nokey')", [], []),
    ("redis.call('hset', 'h', 'a', '1'); redis.setresp(3); local m = redis.call('hgetall', 'h'); return m.map.a", [], []),
    ("return redis.call('set', 'n', 1.5)", [], []),
    ("redis.call('set', 'n', 0.1); return redis.call('get', 'n')", [], []),
    ("redis.call('set', 'n', 100); return redis.call('get', 'n')", [], []),
    ("return redis.call('lpush', 'l', 1, 2)", [], []),
    ("return redis.call('blpop', 'nolist', 0)", [], []),
    ("return redis.call('select', 1)", [], []),
    ("return KEYS", ["a", "b"], ["c"]),
    ("return ARGV", [], ["x", "y"]),
    ("return #KEYS", ["a"], []),
    ("return a", [], []),
    ("a = 10", [], []),
    ("return x +", [], []),
    ("error('boom')", [], []),
    ("error({err='E1 custom'})", [], []),
    ("local ok, e = pcall(redis.call, 'incr', 'str'); return {tostring(ok), e}", [], []),
    ("local ok, e = pcall(function() return redis.call('incr', 'str') end); return e", [], []),
    ("local ok, e = pcall(function() error({err='E1'}) end); return e", [], []),
    ("return xpcall(function() return redis.call('incr','str') end, function(e) return e.err end)", [], []),
    ("return {pcall(function() return 1, 2, nil, 4 end)}", [], []),
    ("setmetatable(_G, {})", [], []),
    ("local g = getmetatable(_G); g.__index = {}", [], []),
    ("redis = function() return 1 end", [], []),
    ("_G = {}", [], []),
    ("redis.call = function() return 1 end", [], []),
    ("cjson.encode = function() return 1 end", [], []),
    ("bit.lshift = function() return 1 end", [], []),
    ("string.x = 1", [], []),
    ("return loadstring(string.dump(function() return 1 end))()", [], []),
    ("loadfile('some file')", [], []),
    ("dofile('some file')", [], []),
    ("print('some data')", [], []),
    ("return type(os)", [], []),
    ("return type(io)", [], []),
    ("return type(require)", [], []),
    ("return type(debug)", [], []),
    ("return redis.sha1hex('')", [], []),
    ("return redis.sha1hex('Pizza & Mandolino')", [], []),
    ("return redis.sha1hex()", [], []),
    ("redis.log(redis.LOG_WARNING, 'from a script')", [], []),
    ("redis.log(1)", [], []),
    ("redis.log('x', 'y')", [], []),
    ("redis.log(9, 'y')", [], []),
    ("return redis.REDIS_VERSION", [], []),
    ("return redis.REDIS_VERSION_NUM", [], []),
    ("redis.set_repl(redis.REPL_ALL); return 1", [], []),
    ("redis.set_repl(99)", [], []),
    ("return redis.replicate_commands()", [], []),
    ("return cjson.encode({1, 2, {a=1}})", [], []),
    ("return cjson.encode({a='x/y', b={}})", [], []),
    ("return cjson.encode({[1]=1, [3]=3})", [], []),
    ("return cjson.encode({[1]=1, [30]=3})", [], []),
    ("return cjson.encode(cjson.decode('[1,2.5,\"\\\\u00e9\",true,null]'))", [], []),
    ("return cjson.decode('{\"a\":null}').a == cjson.null", [], []),
    ("return cjson.decode('[1,2')", [], []),
    ("return cjson.decode('x')", [], []),
    ("return cjson.encode(function() end)", [], []),
    ("return cjson.encode(0.1)", [], []),
    ("return cjson.encode(1/0)", [], []),
    ("return {pcall(cjson.decode, '[')}", [], []),
    ("return bit.band(0xff, 0x0f)", [], []),
    ("return bit.bor(1, 2, 4)", [], []),
    ("return bit.bxor(5, 3)", [], []),
    ("return bit.bnot(0)", [], []),
    ("return bit.tobit(0xffffffff + 1)", [], []),
    ("return bit.tohex(-1)", [], []),
    ("return bit.tohex(65535, -4)", [], []),
    ("return bit.rshift(-1, 28)", [], []),
    ("return bit.arshift(-256, 4)", [], []),
    ("return bit.lshift(1, 40)", [], []),
    ("return bit.rol(0x12345678, 8)", [], []),
    ("return bit.bswap(0x12345678)", [], []),
    ("return cmsgpack.pack({1, 2, 3})", [], []),
    ("return cmsgpack.pack({a=1})", [], []),
    ("return cmsgpack.pack(1.5, -1, -200, 70000, 'abc', true, false, 0.1, 2^40, -2^40)", [], []),
    ("return cmsgpack.pack(string.rep('x', 40), string.rep('y', 300))", [], []),
    ("return cmsgpack.pack({{{{{{{{{{{{{{{{{{1}}}}}}}}}}}}}}}}}})", [], []),
    ("return {cmsgpack.unpack(cmsgpack.pack(1, 'a', {1, 2}, -5))}", [], []),
    ("local t = cmsgpack.unpack(cmsgpack.pack({1, 2, {3, x='y'}})); return {t[3][1], t[3].x}", [], []),
    ("return cmsgpack.unpack('\\193')", [], []),
    ("return cmsgpack.unpack('\\146\\1')", [], []),
    ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}", [], []),
    ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}", [], []),
    ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0, 1)}", [], []),
    ("return struct.pack('>I2', 258)", [], []),
    ("return struct.pack('<i4', -2)", [], []),
    ("return {struct.unpack('>I2', 'ab')}", [], []),
    ("return {struct.unpack('<i2', 'ab', 1)}", [], []),
    ("return struct.size('>iHd')", [], []),
    ("return struct.size('!4 b i')", [], []),
    ("return struct.pack('s', 'hi')", [], []),
    ("return {struct.unpack('s', 'hi\\0rest')}", [], []),
    ("return struct.pack('c3', 'abcdef')", [], []),
    ("return {struct.unpack('>h', '\\255\\254')}", [], []),
    ("return struct.pack('!4 b i', 1, 2)", [], []),
    ("return struct.pack('>d', 1.5)", [], []),
    ("return {struct.unpack('>d', struct.pack('>d', 1.5))}", [], []),
    ("return struct.pack('>bBhHlLi3', -1, 255, -2, 65535, -3, 7, 70000)", [], []),
    ("return tonumber('0x10')", [], []),
    ("return string.format('%d', 7)", [], []),
    ("return math.floor(2.5)", [], []),
    ("return table.concat({'a','b'}, ',')", [], []),
    ("local s = 'abc'; return s:upper()", [], []),
    ("return _G.redis ~= nil", [], []),
    ("return rawget(_G, 'KEYS')[1]", ["kk"], []),
    ("local n = 0; for k, v in pairs(redis) do n = n + 1 end; return n > 5", [], []),
    ("#!lua flags=no-writes\nreturn redis.call('get', 'str')", [], []),
    ("#!lua flags=no-writes\nreturn redis.call('set', 'k', 1)", [], []),
    ("#!lua flags=bad-flag\nreturn 1", [], []),
    ("#!lua foo=bar\nreturn 1", [], []),
    ("#!nolua\nreturn 1", [], []),
    ("#!lua", [], []),
]

# Whole commands, raw.
COMMANDS = [
    ["EVAL", "return 1", "-1"],
    ["EVAL", "return 1", "abc"],
    ["EVAL", "return 1", "2", "a"],
    ["EVAL", "return 1"],
    ["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"],
    ["EVALSHA", "short", "0"],
    ["SCRIPT", "LOAD", "return 'hi'"],
    ["EVALSHA", "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3", "0"],
    ["EVALSHA", "2F31BA2BB6D6A0F42CC159D2E2DAD55440778DE3", "0"],
    ["SCRIPT", "EXISTS", "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3", "ffff"],
    ["SCRIPT", "LOAD", "return x +"],
    ["SCRIPT", "LOAD"],
    ["SCRIPT", "FLUSH", "bad"],
    ["SCRIPT", "FLUSH", "ASYNC"],
    ["EVALSHA", "2f31ba2bb6d6a0f42cc159d2e2dad55440778de3", "0"],
    ["SCRIPT", "KILL"],
    ["SCRIPT", "FOO"],
    ["EVAL_RO", "return redis.call('get', 'str')", "0"],
    ["EVAL_RO", "return redis.call('set', 'str', 1)", "0"],
    ["EVAL_RO", "#!lua\nreturn 1", "0"],
    ["MULTI"],
    ["EVAL", "return redis.call('incr', 'ctr')", "0"],
    ["EVAL", "return redis.call('incr', 'ctr')", "0"],
    ["EXEC"],
]


def fresh(raw):
    raw.cmd("FLUSHALL")
    raw.cmd("SET", "str", "abc")
    raw.cmd("ZADD", "z", "1.5", "m")


@section
def replies_match_redis(hub_port, redis_port):
    hub, red = Raw(hub_port), Raw(redis_port)
    diffs = []
    for proto in (2, 3):
        hub.cmd("HELLO", proto)
        red.cmd("HELLO", proto)
        for script, keys, args in CASES:
            fresh(hub)
            fresh(red)
            cmd = ["EVAL", script, len(keys), *keys, *args]
            h, r = hub.cmd(*cmd), red.cmd(*cmd)
            if h != r:
                diffs.append(f"RESP{proto} {script!r}:\n    hub   {h!r}\n    redis {r!r}")
        fresh(hub)
        fresh(red)
        for cmd in COMMANDS:
            h, r = hub.cmd(*cmd), red.cmd(*cmd)
            if h != r:
                diffs.append(f"RESP{proto} {cmd!r}:\n    hub   {h!r}\n    redis {r!r}")
    total = 2 * (len(CASES) + len(COMMANDS))
    print(f"  {total - len(diffs)}/{total} replies byte-for-byte equal to Redis's")
    if diffs:
        raise AssertionError("replies differ from Redis's:\n  " + "\n  ".join(diffs))


def busy_and_kill(port, kill_after_ms):
    """A looping script: BUSY for others past the threshold, SCRIPT KILL stops it."""
    a = Raw(port)
    b = Raw(port)
    a.send("EVAL", "local i = 0 while true do i = i + 1 end", 0)
    time.sleep(kill_after_ms / 1000)
    busy = b.cmd("PING")
    eq(busy, b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n", "PING during a busy script")
    eq(b.cmd("GET", "x"), busy, "GET during a busy script")
    # A client that connects now can still kill it.
    eq(Raw(port).cmd("SCRIPT", "KILL"), b"+OK\r\n", "SCRIPT KILL from a new connection")
    killed = a.reply()
    if not killed.startswith(b"-ERR Script killed by user with SCRIPT KILL... script:"):
        raise AssertionError(f"killed script's reply: {killed!r}")
    eq(b.cmd("PING"), b"+PONG\r\n", "PING after the kill")
    eq(b.cmd("SCRIPT", "KILL"), b"-NOTBUSY No scripts in execution right now.\r\n", "SCRIPT KILL with none running")
    return a, b


@section
def busy_script_kill_and_shutdown_nosave(hub_port, redis_port):
    # The same sequence on both; the threshold is 200 ms (lua-time-limit's new name).
    for port in (redis_port, hub_port):
        Raw(port).cmd("CONFIG", "SET", "busy-reply-threshold", "200")
        a, b = busy_and_kill(port, 600)
        # A script that wrote cannot be killed; a new connection still gets its answers
        # (on the hub such a script keeps the runtime thread, and a rescue thread serves
        # new connections), and SHUTDOWN NOSAVE ends it all.
        a.send("EVAL", "redis.call('set', 'w', 1) local i = 0 while true do i = i + 1 end", 0)
        time.sleep(0.6)
        c = Raw(port)
        eq(c.cmd("PING"), b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n", "PING from a new connection during a script that wrote")
        unkillable = c.cmd("SCRIPT", "KILL")
        if not unkillable.startswith(b"-UNKILLABLE Sorry the script already executed write commands"):
            raise AssertionError(f"SCRIPT KILL of a script that wrote: {unkillable!r}")
        c.send("SHUTDOWN", "NOSAVE")
        try:
            c.reply()
        except (ConnectionError, OSError):
            pass
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                Raw(port).cmd("PING")
                time.sleep(0.05)
            except OSError:
                break
        else:
            raise AssertionError(f"port {port} still serving after SHUTDOWN NOSAVE")


@section
def connections_during_a_script_that_wrote_are_served_after_it(hub_port, redis_port):
    """A connection made while a writing script runs past the threshold gets -BUSY, and
    once the script ends it is an ordinary connection."""
    for port in (redis_port, hub_port):
        Raw(port).cmd("CONFIG", "SET", "busy-reply-threshold", "100")
        a = Raw(port)
        a.send("EVAL", "redis.call('set', 'w', 1) local t = redis.call('time') local i = 0 while i < 150000000 do i = i + 1 end return 'done'", 0)
        time.sleep(0.3)
        c = Raw(port)
        eq(c.cmd("PING"), b"-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n", "PING during the script")
        eq(a.reply(), b"$4\r\ndone\r\n", "the script's reply")
        deadline = time.time() + 10
        while True:
            r = c.cmd("GET", "w")
            if r == b"$1\r\n1\r\n":
                break
            if time.time() > deadline:
                raise AssertionError(f"GET after the script: {r!r}")
            time.sleep(0.05)
        eq(c.cmd("SET", "after", "x"), b"+OK\r\n", "a write on that connection")
        Raw(port).cmd("CONFIG", "SET", "busy-reply-threshold", "5000")


@section
def short_scripts_wait_rather_than_busy(hub_port, redis_port):
    """Below the threshold other clients wait; nobody gets BUSY."""
    for port in (hub_port, redis_port):
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT)
        r.config_set("busy-reply-threshold", "5000")
        slow = threading.Thread(target=lambda: r.eval("local t = redis.call('time')[1] local i = 0 while i < 3000000 do i = i + 1 end return 1", 0))
        slow.start()
        time.sleep(0.05)
        other = redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT)
        eq(other.ping(), True, "PING while a short script runs")
        slow.join()


@section
def script_cache_and_info(hub_port, redis_port):
    r = redis.Redis(host="127.0.0.1", port=hub_port, socket_timeout=TIMEOUT)
    r.script_flush()
    sha = r.script_load("return 42")
    eq(r.evalsha(sha, 0), 42, "EVALSHA")
    eq(r.script_exists(sha, "0" * 40), [True, False], "SCRIPT EXISTS")
    eq(r.info("memory")["number_of_cached_scripts"], 1, "INFO number_of_cached_scripts")
    # Distinct EVAL scripts do not grow the cache without bound.
    for i in range(700):
        r.eval(f"return {i}", 0)
    n = r.info("memory")["number_of_cached_scripts"]
    if n > 501:
        raise AssertionError(f"{n} cached scripts after 700 distinct EVALs")
    eq(r.evalsha(sha, 0), 42, "a SCRIPT LOAD script survives the EVAL cache limit")
    # A script's memory is bounded; the VM stays usable.
    try:
        r.eval("local t = {} local s = string.rep('x', 1048576) for i = 1, 1e9 do t[i] = s .. i end", 0)
        raise AssertionError("a script allocating forever returned")
    except redis.exceptions.ResponseError as e:
        if "not enough memory" not in str(e):
            raise
    eq(r.eval("return 1", 0), 1, "the VM after a memory error")
    r.script_flush()
    eq(r.script_exists(sha), [False], "after SCRIPT FLUSH")


LIB = """#!lua name=mylib
local function incr_by(keys, args)
  return redis.call('incrby', keys[1], args[1])
end
redis.register_function('incr_by', incr_by)
redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end,
  flags={'no-writes'}, description='reads a key'}
"""

# One function: FUNCTION LIST's order of a library's functions is Redis's dict order.
LIB_ONE = """#!lua name=mylib
redis.register_function{function_name='peek', callback=function(keys) return redis.call('get', keys[1]) end,
  flags={'no-writes', 'allow-stale'}, description='reads a key'}
"""

# Redis 7 functions, raw, in order (one library at a time, so FUNCTION LIST's order is fixed).
FUNCTION_COMMANDS = [
    ["FUNCTION", "FLUSH"],
    ["FUNCTION", "LOAD", LIB],
    ["FUNCTION", "LOAD", LIB],
    ["FUNCTION", "LOAD", "REPLACE", LIB],
    ["FCALL", "incr_by", "1", "ctr", "5"],
    ["FCALL", "incr_by", "1", "ctr", "x"],
    ["FCALL_RO", "peek", "1", "ctr"],
    ["FCALL_RO", "incr_by", "1", "ctr", "5"],
    ["FCALL", "nosuch", "0"],
    ["FCALL", "incr_by", "abc"],
    ["FCALL", "incr_by", "5", "a"],
    ["FCALL", "incr_by", "-1"],
    ["FCALL", "nosuch", "abc"],
    ["FUNCTION", "LOAD", "REPLACE", LIB_ONE],
    ["FUNCTION", "LIST"],
    ["FUNCTION", "LIST", "WITHCODE"],
    ["FUNCTION", "LIST", "LIBRARYNAME", "my*"],
    ["FUNCTION", "LIST", "LIBRARYNAME", "zzz"],
    ["FUNCTION", "LIST", "BAD"],
    ["FUNCTION", "LOAD", "return 1"],
    ["FUNCTION", "LOAD", "#!lua name=bad-name\nreturn 1"],
    ["FUNCTION", "LOAD", "#!lua name=lib2\nredis.register_function('incr_by', function() return 1 end)"],
    ["FUNCTION", "LOAD", "#!lua name=lib3\nreturn 1"],
    ["FUNCTION", "LOAD", "#!lua name=lib4\nredis.call('set', 'x', 1)"],
    ["FUNCTION", "LOAD", "#!lua name=lib5\nredis.register_function('f5', function() return 1 end) error('boom')"],
    ["FUNCTION", "LOAD", "#!lua name=lib6\nredis.register_function('1bad', function() return 1 end)"],
    ["FUNCTION", "LOAD", "#!lua name=lib7 foo=bar\nreturn 1"],
    ["EVAL", "redis.register_function('x', function() end)", "0"],
    ["FUNCTION", "STATS"],
    ["FUNCTION", "KILL"],
    ["FUNCTION", "DELETE", "nosuch"],
    ["FUNCTION", "DELETE", "mylib"],
    ["FCALL", "peek", "1", "ctr"],
    # lib2 and lib6 loaded above; with two libraries LIST's order is Redis's dict order.
    ["FUNCTION", "DELETE", "lib2"],
    ["FUNCTION", "LIST"],
    ["FUNCTION", "DELETE", "lib6"],
    ["FUNCTION", "FLUSH", "bad"],
    ["FUNCTION", "FOO"],
]


@section
def functions_match_redis(hub_port, redis_port):
    hub, red = Raw(hub_port), Raw(redis_port)
    diffs = []
    for proto in (2, 3):
        hub.cmd("HELLO", proto)
        red.cmd("HELLO", proto)
        fresh(hub)
        fresh(red)
        for cmd in FUNCTION_COMMANDS:
            h, r = hub.cmd(*cmd), red.cmd(*cmd)
            if h != r:
                diffs.append(f"RESP{proto} {cmd!r}:\n    hub   {h!r}\n    redis {r!r}")
    # DUMP/RESTORE round trip on the hub (the payload is the hub's own format).
    r = redis.Redis(host="127.0.0.1", port=hub_port, socket_timeout=TIMEOUT)
    r.function_flush()
    r.function_load(LIB)
    payload = r.function_dump()
    r.function_flush()
    eq(r.function_restore(payload), True, "FUNCTION RESTORE")
    eq(r.fcall("incr_by", 1, "c2", 3), 3, "FCALL after RESTORE")
    try:
        r.function_restore(payload[:-1] + b"x")
        raise AssertionError("a corrupt FUNCTION RESTORE payload was accepted")
    except redis.exceptions.ResponseError as e:
        if "payload" not in str(e).lower():
            raise
    eq(r.info("memory")["number_of_functions"], 2, "INFO number_of_functions")
    r.function_flush()
    total = 2 * len(FUNCTION_COMMANDS)
    print(f"  {total - len(diffs)}/{total} replies byte-for-byte equal to Redis's")
    if diffs:
        raise AssertionError("replies differ from Redis's:\n  " + "\n  ".join(diffs))


@section
def redis_py_lock(hub_port, redis_port):
    for port in (hub_port, redis_port):
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT)
        lock = r.lock("resource", timeout=10)
        eq(lock.acquire(blocking=False), True, "acquire")
        other = r.lock("resource", timeout=10)
        eq(other.acquire(blocking=False), False, "a second holder")
        eq(lock.extend(5), True, "extend")
        eq(lock.reacquire(), True, "reacquire")
        lock.release()
        eq(other.acquire(blocking=False), True, "acquire after release")
        other.release()
        try:
            other.release()
            raise AssertionError("releasing an unlocked lock worked")
        except redis.exceptions.LockError:
            pass

        async def run():
            ar = redis.asyncio.Redis(host="127.0.0.1", port=port, socket_timeout=TIMEOUT)
            lk = ar.lock("aresource", timeout=10)
            eq(await lk.acquire(blocking=False), True, "async acquire")
            eq(await lk.extend(5), True, "async extend")
            await lk.release()
            eq(await ar.exists("aresource"), 0, "async release")
            await ar.aclose()

        asyncio.run(run())


@section
def limits_rate_limiters(hub_port, redis_port):
    """The `limits` library's strategies, all of them Lua scripts on the server."""
    from limits import RateLimitItemPerMinute, storage, strategies

    for port in (hub_port, redis_port):
        st = storage.storage_from_string(f"redis://127.0.0.1:{port}")
        for cls in (strategies.FixedWindowRateLimiter, strategies.MovingWindowRateLimiter, strategies.SlidingWindowCounterRateLimiter):
            lim = cls(st)
            item = RateLimitItemPerMinute(5)
            key = f"user-{cls.__name__}-{time.time_ns()}"
            eq([lim.hit(item, key) for _ in range(7)], [True] * 5 + [False] * 2, f"{cls.__name__} hits on {port}")
            eq(lim.test(item, key), False, f"{cls.__name__} test on {port}")
            eq(lim.get_window_stats(item, key).remaining, 0, f"{cls.__name__} remaining on {port}")
            lim.clear(item, key)
            eq(lim.hit(item, key), True, f"{cls.__name__} after clear on {port}")


@section
def dramatiq_worker(hub_port, redis_port):
    """dramatiq's RedisBroker (its dispatch is one Lua script) with a real worker process:
    send, results, retries."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    venv_bin = os.path.dirname(sys.executable)
    for port in (hub_port, redis_port):
        env = dict(os.environ, DQ_PORT=str(port))
        os.environ["DQ_PORT"] = str(port)
        import importlib

        import dramatiq_tasks

        tasks = importlib.reload(dramatiq_tasks)
        worker = subprocess.Popen(
            [os.path.join(venv_bin, "dramatiq"), "dramatiq_tasks", "--processes", "1", "--threads", "2"],
            cwd=here,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        PROCS.append(worker)
        try:
            eq(tasks.add.send(1, 2).get_result(block=True, timeout=30000), 3, f"dramatiq add on {port}")
            eq(tasks.flaky.send(f"flaky-{time.time_ns()}").get_result(block=True, timeout=30000), 3, f"dramatiq retries on {port}")
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=TIMEOUT)


@section
def rate_limiter_flexible(hub_port, redis_port):
    """rate-limiter-flexible (node) on ioredis and node-redis; its limiter is a Lua script."""
    tools = os.environ.get("RECACHED_TOOLS", os.path.expanduser("~/.cache/recached-tools"))
    env = dict(os.environ, NODE_PATH=os.path.join(tools, "node", "node_modules"))
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rate_limiter_flexible.cjs")
    for port in (hub_port, redis_port):
        p = subprocess.run(["node", script, str(port)], env=env, capture_output=True, timeout=60)
        if p.returncode != 0:
            raise AssertionError(f"rate-limiter-flexible on {port}: {p.stdout.decode()}{p.stderr.decode()}")


@section
def celery_worker(hub_port, redis_port):
    """celery with the server as broker and result backend, a real `--pool solo` worker:
    delay/get, retries, group, chain, chord."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    venv_bin = os.path.dirname(sys.executable)
    for port in (hub_port, redis_port):
        os.environ["CELERY_PORT"] = str(port)
        import importlib

        import celery_tasks

        t = importlib.reload(celery_tasks)
        from celery import chain, chord, group

        worker = subprocess.Popen(
            [os.path.join(venv_bin, "celery"), "-A", "celery_tasks", "worker", "--pool", "solo", "--loglevel", "warning",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=here,
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        PROCS.append(worker)
        try:
            runs = [
                (t.add.delay(1, 2), 3, "delay"),
                (t.flaky.delay(f"flaky-{time.time_ns()}"), 3, "retries"),
                (group(t.add.s(i, i) for i in range(4))(), [0, 2, 4, 6], "group"),
                (chain(t.add.s(1, 2), t.add.s(3), t.add.s(4))(), 10, "chain"),
                (chord((t.add.s(i, i) for i in range(4)), t.tsum.s())(), 12, "chord"),
            ]
            for result, want, what in runs:
                eq(result.get(timeout=30), want, f"celery {what} on {port}")
            # Results let go while the server still runs (their finalizers talk to it).
            del runs, result
            import gc

            gc.collect()
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=TIMEOUT)
            t.app.close()


@section
def django_redis_cache_and_lock(hub_port, redis_port):
    """django-redis as Django's cache (incr/decr, ttl, get/set_many, add, delete_pattern)
    and its lock."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(CACHES={})
        django.setup()
    from django.core.cache import caches

    for port in (hub_port, redis_port):
        settings.CACHES[f"s{port}"] = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{port}/0"}
        c = caches.create_connection(f"s{port}")
        c.clear()
        c.set("a", 1, timeout=30)
        eq(c.get("a"), 1, "get")
        eq(c.incr("a"), 2, "incr")
        eq(c.incr("a", 5), 7, "incr by")
        eq(c.decr("a"), 6, "decr")
        ttl = c.ttl("a")
        if not 0 < ttl <= 30:
            raise AssertionError(f"ttl {ttl}")
        c.set_many({"b": "x", "c": {"d": [1, 2]}})
        eq(c.get_many(["b", "c"]), {"b": "x", "c": {"d": [1, 2]}}, "get_many")
        eq(c.add("b", "y"), False, "add of an existing key")
        with c.lock("lk", timeout=5):
            eq(c.get("b"), "x", "get under the lock")
        if c.delete_pattern("*") < 3:
            raise AssertionError("delete_pattern")
        eq(c.get("a"), None, "after delete_pattern")
        try:
            c.incr("missing")
            raise AssertionError("incr of a missing key worked")
        except ValueError:
            pass
        c.close()


def main():
    hub_proc, hub_port = start_hub()
    redis_proc, redis_port = start_redis()
    failed = 0
    try:
        for fn in SECTIONS:
            if ONLY and fn.__name__ not in ONLY:
                continue
            if hub_proc.poll() is not None or redis_proc.poll() is not None:
                # A section shut one down on purpose: start fresh ones.
                hub_proc, hub_port = start_hub()
                redis_proc, redis_port = start_redis()
            t0 = time.time()
            try:
                fn(hub_port, redis_port)
                print(f"PASS {fn.__name__} ({time.time() - t0:.1f} s)")
            except Exception:
                failed += 1
                print(f"FAIL {fn.__name__}")
                traceback.print_exc()
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=TIMEOUT)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
