//! Model-based test: random command sequences run against the engine and against a plain
//! reference model (`BTreeMap`/`VecDeque`, written from Redis's documented behaviour),
//! comparing every reply (as RESP2 bytes, order-insensitive where Redis's order is
//! unspecified) and the whole keyspace after every step.
//!
//! - Seeds: a fixed one and a random one, printed; `MODEL_SEED=<n>` replays one seed only.
//!   `MODEL_SEQS`/`MODEL_STEPS` scale the run.
//! - Only commands present in the engine's table are generated, so the test grows as command
//!   families land.
//! - `MODEL_REDIS=<port>` checks the *model* against a real, disposable redis-server
//!   (FLUSHALL is sent): same sequences without clock jumps and with long TTLs only. Run it
//!   whenever the model changes:
//!   `MODEL_REDIS=7104 cargo test -p recached-engine --test model -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::TcpStream;

use recached_engine::resp::{to_vec, Protocol};
use recached_engine::{Engine, Reply, Session, Value};

type B = Vec<u8>;

// ------------------------------------------------------------------------------------
// Random source (splitmix64): the test's own, independent of the engine's.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

// ------------------------------------------------------------------------------------
// Argument generators.

struct Gen {
    rng: Rng,
    /// Against real Redis: no clock jumps, TTLs long enough not to expire mid-run.
    real_time: bool,
}

impl Gen {
    fn key(&mut self) -> B {
        format!("k{}", self.rng.below(6)).into_bytes()
    }
    fn elem(&mut self) -> B {
        self.rng.pick(&["a", "b", "c", "d", "e", "f", "1", "2", "-1", "10", ""]).into()
    }
    /// A string value: mostly numbers (for counters), some text, some edge cases.
    fn val(&mut self) -> B {
        match self.rng.below(10) {
            0..=3 => self.rng.range(-20, 20).to_string().into_bytes(),
            4 => self.rng.pick(&["9223372036854775807", "-9223372036854775808", "007", "+1", " 1", "1.5", "-0"]).into(),
            5 => B::new(),
            6 => b"bin\x00\xff\r\n".to_vec(),
            _ => self.rng.pick(&["abc", "hello", "x", "value", "a b"]).into(),
        }
    }
    /// An integer argument in `lo..=hi`, sometimes not an integer at all.
    fn int(&mut self, lo: i64, hi: i64) -> B {
        if self.rng.chance(3) {
            return self.rng.pick(&["x", "1.5", "", "99999999999999999999"]).into();
        }
        self.rng.range(lo, hi).to_string().into_bytes()
    }
    fn score(&mut self) -> B {
        if self.rng.chance(2) {
            return self.rng.pick(&["x", "nan", ""]).into();
        }
        self.rng.pick(&["0", "1", "2", "3", "-1", "2.5", "-3.5", "10", "+inf", "-inf", "1e2", "0.5"]).into()
    }
    fn range_bound(&mut self) -> B {
        if self.rng.chance(2) {
            return b"x".to_vec();
        }
        let s = self.rng.pick(&["-inf", "+inf", "0", "1", "2", "3", "10", "-1", "2.5"]);
        if self.rng.chance(30) && !s.contains("inf") {
            format!("({}", s).into_bytes()
        } else {
            s.into()
        }
    }
    /// A TTL amount for `unit_ms` commands, short unless against real time.
    fn ttl(&mut self, unit_ms: bool) -> B {
        if self.rng.chance(3) {
            return self.rng.pick(&["0", "-5", "x"]).into();
        }
        let secs = if self.real_time { self.rng.range(100, 1000) } else { self.rng.range(1, 5) };
        if unit_ms && self.real_time {
            (secs * 1000).to_string().into_bytes()
        } else if unit_ms {
            (secs * 1000 + self.rng.range(0, 999)).to_string().into_bytes()
        } else {
            secs.to_string().into_bytes()
        }
    }
}

type GenFn = fn(&mut Gen, now: u64) -> Vec<B>;

/// (command name, weight, generator). A command is generated only when the engine has it.
fn generators() -> Vec<(&'static str, u32, GenFn)> {
    vec![
        // strings
        ("get", 4, |g, _| vec![b"GET".to_vec(), g.key()]),
        ("set", 6, |g, now| {
            let mut a = vec![b"SET".to_vec(), g.key(), g.val()];
            for _ in 0..g.rng.below(3) {
                match g.rng.below(9) {
                    0 => a.push(b"NX".to_vec()),
                    1 => a.push(b"XX".to_vec()),
                    2 => a.push(b"GET".to_vec()),
                    3 => a.push(b"KEEPTTL".to_vec()),
                    4 => a.extend([b"EX".to_vec(), g.ttl(false)]),
                    5 => a.extend([b"PX".to_vec(), g.ttl(true)]),
                    6 => {
                        let mut at = now / 1000 + String::from_utf8_lossy(&g.ttl(false)).parse::<u64>().unwrap_or(1);
                        if g.real_time && at <= now / 1000 + 5 {
                            at = now / 1000 - 100; // a real clock cannot hit "now" exactly
                        }
                        a.extend([b"EXAT".to_vec(), at.to_string().into_bytes()])
                    }
                    7 => {
                        let mut at = now + String::from_utf8_lossy(&g.ttl(true)).parse::<u64>().unwrap_or(1);
                        if g.real_time && at <= now + 5000 {
                            at = now - 100_000;
                        }
                        a.extend([b"PXAT".to_vec(), at.to_string().into_bytes()])
                    }
                    _ => a.push(b"nx".to_vec()),
                }
            }
            a
        }),
        ("setnx", 1, |g, _| vec![b"SETNX".to_vec(), g.key(), g.val()]),
        ("getset", 1, |g, _| vec![b"GETSET".to_vec(), g.key(), g.val()]),
        ("getdel", 1, |g, _| vec![b"GETDEL".to_vec(), g.key()]),
        ("mget", 2, |g, _| {
            let mut a = vec![b"MGET".to_vec()];
            for _ in 0..=g.rng.below(3) {
                a.push(g.key());
            }
            a
        }),
        ("mset", 1, |g, _| {
            let mut a = vec![b"MSET".to_vec()];
            for _ in 0..=g.rng.below(2) {
                a.push(g.key());
                a.push(g.val());
            }
            a
        }),
        ("msetnx", 1, |g, _| {
            let mut a = vec![b"MSETNX".to_vec()];
            for _ in 0..=g.rng.below(2) {
                a.push(g.key());
                a.push(g.val());
            }
            a
        }),
        ("append", 2, |g, _| vec![b"APPEND".to_vec(), g.key(), g.val()]),
        ("strlen", 1, |g, _| vec![b"STRLEN".to_vec(), g.key()]),
        ("incr", 3, |g, _| vec![b"INCR".to_vec(), g.key()]),
        ("decr", 2, |g, _| vec![b"DECR".to_vec(), g.key()]),
        ("incrby", 2, |g, _| {
            let n = if g.rng.chance(5) { b"9223372036854775807".to_vec() } else { g.int(-100, 100) };
            vec![b"INCRBY".to_vec(), g.key(), n]
        }),
        ("decrby", 2, |g, _| {
            let n = if g.rng.chance(5) { b"-9223372036854775808".to_vec() } else { g.int(-100, 100) };
            vec![b"DECRBY".to_vec(), g.key(), n]
        }),
        ("getrange", 1, |g, _| vec![b"GETRANGE".to_vec(), g.key(), g.int(-8, 8), g.int(-8, 8)]),
        ("getex", 1, |g, now| {
            let mut a = vec![b"GETEX".to_vec(), g.key()];
            match g.rng.below(6) {
                0 => {}
                1 => a.extend([b"EX".to_vec(), g.ttl(false)]),
                2 => a.extend([b"PX".to_vec(), g.ttl(true)]),
                3 => a.push(b"PERSIST".to_vec()),
                4 => {
                    let mut at = now + String::from_utf8_lossy(&g.ttl(true)).parse::<u64>().unwrap_or(1);
                    if g.real_time && at <= now + 5000 {
                        at = now - 100_000;
                    }
                    a.extend([b"PXAT".to_vec(), at.to_string().into_bytes()])
                }
                _ => a.extend([g.rng.pick(&["PERSIST", "EX", "KEEPTTL"]).into(), b"10".to_vec()]),
            }
            a
        }),
        ("setrange", 1, |g, _| vec![b"SETRANGE".to_vec(), g.key(), g.int(-1, 12), g.val()]),
        // keys
        ("del", 3, |g, _| {
            let mut a = vec![b"DEL".to_vec()];
            for _ in 0..=g.rng.below(2) {
                a.push(g.key());
            }
            a
        }),
        ("unlink", 1, |g, _| vec![b"UNLINK".to_vec(), g.key()]),
        ("exists", 2, |g, _| {
            let mut a = vec![b"EXISTS".to_vec()];
            for _ in 0..=g.rng.below(3) {
                a.push(g.key());
            }
            a
        }),
        ("type", 2, |g, _| vec![b"TYPE".to_vec(), g.key()]),
        ("flushdb", 1, |g, _| if g.rng.chance(10) { vec![b"FLUSHDB".to_vec()] } else { vec![b"EXISTS".to_vec(), g.key()] }),
        ("rename", 2, |g, _| vec![b"RENAME".to_vec(), g.key(), g.key()]),
        ("renamenx", 1, |g, _| vec![b"RENAMENX".to_vec(), g.key(), g.key()]),
        ("copy", 1, |g, _| {
            let mut a = vec![b"COPY".to_vec(), g.key(), g.key()];
            if g.rng.chance(50) {
                a.push(b"REPLACE".to_vec());
            }
            a
        }),
        // expiry
        ("expire", 2, |g, _| expire_gen(g, b"EXPIRE", false)),
        ("pexpire", 2, |g, _| expire_gen(g, b"PEXPIRE", true)),
        ("expireat", 1, |g, now| {
            let mut t = (now / 1000) as i64 + String::from_utf8_lossy(&g.ttl(false)).parse::<i64>().unwrap_or(-1);
            if g.real_time && (t - (now / 1000) as i64).abs() < 5 {
                t -= 100;
            }
            vec![b"EXPIREAT".to_vec(), g.key(), t.to_string().into_bytes()]
        }),
        ("pexpireat", 1, |g, now| {
            let mut t = now as i64 + String::from_utf8_lossy(&g.ttl(true)).parse::<i64>().unwrap_or(-10);
            if g.real_time && (t - now as i64).abs() < 5000 {
                t -= 100_000;
            }
            vec![b"PEXPIREAT".to_vec(), g.key(), t.to_string().into_bytes()]
        }),
        ("ttl", 2, |g, _| vec![b"TTL".to_vec(), g.key()]),
        ("pttl", 2, |g, _| vec![b"PTTL".to_vec(), g.key()]),
        ("expiretime", 1, |g, _| vec![b"EXPIRETIME".to_vec(), g.key()]),
        ("pexpiretime", 1, |g, _| vec![b"PEXPIRETIME".to_vec(), g.key()]),
        ("persist", 2, |g, _| vec![b"PERSIST".to_vec(), g.key()]),
        // lists
        ("lpush", 4, |g, _| push_gen(g, b"LPUSH")),
        ("rpush", 4, |g, _| push_gen(g, b"RPUSH")),
        ("lpushx", 1, |g, _| push_gen(g, b"LPUSHX")),
        ("rpushx", 1, |g, _| push_gen(g, b"RPUSHX")),
        ("lpop", 2, |g, _| pop_gen(g, b"LPOP")),
        ("rpop", 2, |g, _| pop_gen(g, b"RPOP")),
        ("llen", 1, |g, _| vec![b"LLEN".to_vec(), g.key()]),
        ("lrange", 3, |g, _| vec![b"LRANGE".to_vec(), g.key(), g.int(-6, 6), g.int(-6, 6)]),
        ("lindex", 1, |g, _| vec![b"LINDEX".to_vec(), g.key(), g.int(-6, 6)]),
        ("lset", 1, |g, _| vec![b"LSET".to_vec(), g.key(), g.int(-6, 6), g.elem()]),
        ("lrem", 1, |g, _| vec![b"LREM".to_vec(), g.key(), g.int(-3, 3), g.elem()]),
        ("ltrim", 1, |g, _| vec![b"LTRIM".to_vec(), g.key(), g.int(-6, 6), g.int(-6, 6)]),
        ("linsert", 1, |g, _| {
            let w = g.rng.pick(&["BEFORE", "AFTER", "before", "MIDDLE"]).as_bytes().to_vec();
            vec![b"LINSERT".to_vec(), g.key(), w, g.elem(), g.elem()]
        }),
        ("lpos", 1, |g, _| {
            let mut a = vec![b"LPOS".to_vec(), g.key(), g.elem()];
            for _ in 0..g.rng.below(3) {
                match g.rng.below(4) {
                    0 => a.extend([b"RANK".to_vec(), g.int(-3, 3)]),
                    1 => a.extend([b"COUNT".to_vec(), g.int(-1, 3)]),
                    2 => a.extend([b"MAXLEN".to_vec(), g.int(-1, 5)]),
                    _ => a.push(b"FOO".to_vec()),
                }
            }
            a
        }),
        ("lmove", 1, |g, _| {
            let (a, b) = (g.rng.pick(&["LEFT", "RIGHT"]), g.rng.pick(&["LEFT", "RIGHT", "UP"]));
            vec![b"LMOVE".to_vec(), g.key(), g.key(), a.into(), b.into()]
        }),
        ("rpoplpush", 1, |g, _| vec![b"RPOPLPUSH".to_vec(), g.key(), g.key()]),
        // hashes
        ("hset", 4, |g, _| {
            let mut a = vec![b"HSET".to_vec(), g.key()];
            for _ in 0..=g.rng.below(2) {
                a.push(g.elem());
                a.push(g.val());
            }
            a
        }),
        ("hsetnx", 1, |g, _| vec![b"HSETNX".to_vec(), g.key(), g.elem(), g.val()]),
        ("hget", 2, |g, _| vec![b"HGET".to_vec(), g.key(), g.elem()]),
        ("hmget", 1, |g, _| vec![b"HMGET".to_vec(), g.key(), g.elem(), g.elem()]),
        ("hdel", 2, |g, _| vec![b"HDEL".to_vec(), g.key(), g.elem(), g.elem()]),
        ("hlen", 1, |g, _| vec![b"HLEN".to_vec(), g.key()]),
        ("hexists", 1, |g, _| vec![b"HEXISTS".to_vec(), g.key(), g.elem()]),
        ("hstrlen", 1, |g, _| vec![b"HSTRLEN".to_vec(), g.key(), g.elem()]),
        ("hincrby", 2, |g, _| vec![b"HINCRBY".to_vec(), g.key(), g.elem(), g.int(-10, 10)]),
        ("hgetall", 2, |g, _| vec![b"HGETALL".to_vec(), g.key()]),
        ("hkeys", 1, |g, _| vec![b"HKEYS".to_vec(), g.key()]),
        ("hvals", 1, |g, _| vec![b"HVALS".to_vec(), g.key()]),
        // sets
        ("sadd", 4, |g, _| {
            let mut a = vec![b"SADD".to_vec(), g.key()];
            for _ in 0..=g.rng.below(3) {
                a.push(g.elem());
            }
            a
        }),
        ("srem", 2, |g, _| vec![b"SREM".to_vec(), g.key(), g.elem(), g.elem()]),
        ("scard", 1, |g, _| vec![b"SCARD".to_vec(), g.key()]),
        ("sismember", 2, |g, _| vec![b"SISMEMBER".to_vec(), g.key(), g.elem()]),
        ("smismember", 1, |g, _| vec![b"SMISMEMBER".to_vec(), g.key(), g.elem(), g.elem()]),
        ("smembers", 2, |g, _| vec![b"SMEMBERS".to_vec(), g.key()]),
        ("sinter", 1, |g, _| vec![b"SINTER".to_vec(), g.key(), g.key()]),
        ("sunion", 1, |g, _| vec![b"SUNION".to_vec(), g.key(), g.key()]),
        ("sdiff", 1, |g, _| vec![b"SDIFF".to_vec(), g.key(), g.key()]),
        ("sinterstore", 1, |g, _| vec![b"SINTERSTORE".to_vec(), g.key(), g.key(), g.key()]),
        ("sunionstore", 1, |g, _| vec![b"SUNIONSTORE".to_vec(), g.key(), g.key(), g.key()]),
        ("sdiffstore", 1, |g, _| vec![b"SDIFFSTORE".to_vec(), g.key(), g.key(), g.key()]),
        ("smove", 1, |g, _| vec![b"SMOVE".to_vec(), g.key(), g.key(), g.elem()]),
        ("sintercard", 1, |g, _| {
            let n = g.rng.below(3) + 1;
            let mut a = vec![b"SINTERCARD".to_vec(), if g.rng.chance(5) { g.int(-1, 4) } else { n.to_string().into_bytes() }];
            for _ in 0..n {
                a.push(g.key());
            }
            if g.rng.chance(30) {
                a.extend([b"LIMIT".to_vec(), g.int(-1, 3)]);
            }
            a
        }),
        // sorted sets
        ("zadd", 5, |g, _| {
            let mut a = vec![b"ZADD".to_vec(), g.key()];
            for _ in 0..g.rng.below(3) {
                a.push(g.rng.pick(&["NX", "XX", "GT", "LT", "CH", "INCR", "ch"]).into());
            }
            for _ in 0..=g.rng.below(2) {
                a.push(g.score());
                a.push(g.elem());
            }
            a
        }),
        ("zincrby", 2, |g, _| vec![b"ZINCRBY".to_vec(), g.key(), g.score(), g.elem()]),
        ("zrem", 2, |g, _| vec![b"ZREM".to_vec(), g.key(), g.elem(), g.elem()]),
        ("zscore", 2, |g, _| vec![b"ZSCORE".to_vec(), g.key(), g.elem()]),
        ("zmscore", 1, |g, _| vec![b"ZMSCORE".to_vec(), g.key(), g.elem(), g.elem()]),
        ("zcard", 1, |g, _| vec![b"ZCARD".to_vec(), g.key()]),
        ("zrank", 2, |g, _| vec![b"ZRANK".to_vec(), g.key(), g.elem()]),
        ("zrevrank", 1, |g, _| vec![b"ZREVRANK".to_vec(), g.key(), g.elem()]),
        ("zcount", 1, |g, _| vec![b"ZCOUNT".to_vec(), g.key(), g.range_bound(), g.range_bound()]),
        ("zrange", 3, |g, _| {
            let mut a = vec![b"ZRANGE".to_vec(), g.key()];
            let byscore = g.rng.chance(30);
            if byscore {
                a.extend([g.range_bound(), g.range_bound(), b"BYSCORE".to_vec()]);
            } else {
                a.extend([g.int(-5, 5), g.int(-5, 5)]);
            }
            if g.rng.chance(30) {
                a.push(b"REV".to_vec());
            }
            if byscore && g.rng.chance(30) {
                a.extend([b"LIMIT".to_vec(), g.int(0, 3), g.int(-1, 3)]);
            }
            if g.rng.chance(40) {
                a.push(b"WITHSCORES".to_vec());
            }
            a
        }),
        ("zrangebyscore", 1, |g, _| {
            let mut a = vec![b"ZRANGEBYSCORE".to_vec(), g.key(), g.range_bound(), g.range_bound()];
            if g.rng.chance(40) {
                a.push(b"WITHSCORES".to_vec());
            }
            if g.rng.chance(30) {
                a.extend([b"LIMIT".to_vec(), g.int(0, 3), g.int(-1, 3)]);
            }
            a
        }),
        ("zrevrange", 1, |g, _| {
            let mut a = vec![b"ZREVRANGE".to_vec(), g.key(), g.int(-5, 5), g.int(-5, 5)];
            if g.rng.chance(40) {
                a.push(b"WITHSCORES".to_vec());
            }
            a
        }),
        ("zunionstore", 1, |g, _| zstore_gen(g, b"ZUNIONSTORE")),
        ("zinterstore", 1, |g, _| zstore_gen(g, b"ZINTERSTORE")),
        ("zdiffstore", 1, |g, _| zstore_gen(g, b"ZDIFFSTORE")),
        ("zpopmin", 1, |g, _| pop_gen(g, b"ZPOPMIN")),
        ("zpopmax", 1, |g, _| pop_gen(g, b"ZPOPMAX")),
        ("zremrangebyrank", 1, |g, _| vec![b"ZREMRANGEBYRANK".to_vec(), g.key(), g.int(-5, 5), g.int(-5, 5)]),
        ("zremrangebyscore", 1, |g, _| vec![b"ZREMRANGEBYSCORE".to_vec(), g.key(), g.range_bound(), g.range_bound()]),
    ]
}

fn expire_gen(g: &mut Gen, name: &[u8], unit_ms: bool) -> Vec<B> {
    let mut a = vec![name.to_vec(), g.key(), g.ttl(unit_ms)];
    if g.rng.chance(30) {
        a.push(g.rng.pick(&["NX", "XX", "GT", "LT", "gt", "FOO"]).into());
        if g.rng.chance(20) {
            a.push(g.rng.pick(&["NX", "XX", "GT", "LT"]).into());
        }
    }
    a
}

fn zstore_gen(g: &mut Gen, name: &[u8]) -> Vec<B> {
    let n = g.rng.below(3) + 1;
    let mut a = vec![name.to_vec(), g.key(), if g.rng.chance(5) { g.int(-1, 4) } else { n.to_string().into_bytes() }];
    for _ in 0..n {
        a.push(g.key());
    }
    if g.rng.chance(30) {
        a.push(b"WEIGHTS".to_vec());
        for _ in 0..n {
            a.push(g.rng.pick(&["1", "2", "0", "-1", "0.5", "inf", "x"]).into());
        }
    }
    if g.rng.chance(30) {
        a.extend([b"AGGREGATE".to_vec(), g.rng.pick(&["SUM", "MIN", "MAX", "max", "AVG"]).into()]);
    }
    a
}

fn push_gen(g: &mut Gen, name: &[u8]) -> Vec<B> {
    let mut a = vec![name.to_vec(), g.key()];
    for _ in 0..=g.rng.below(3) {
        a.push(g.elem());
    }
    a
}

fn pop_gen(g: &mut Gen, name: &[u8]) -> Vec<B> {
    let mut a = vec![name.to_vec(), g.key()];
    if g.rng.chance(40) {
        a.push(g.int(-1, 4));
    }
    a
}

// ------------------------------------------------------------------------------------
// The reference model.

#[derive(Clone, Debug, PartialEq)]
enum MV {
    Str(B),
    List(VecDeque<B>),
    Hash(BTreeMap<B, B>),
    Set(BTreeSet<B>),
    ZSet(BTreeMap<B, f64>),
}

impl MV {
    fn type_name(&self) -> &'static str {
        match self {
            MV::Str(_) => "string",
            MV::List(_) => "list",
            MV::Hash(_) => "hash",
            MV::Set(_) => "set",
            MV::ZSet(_) => "zset",
        }
    }
    fn is_empty(&self) -> bool {
        match self {
            MV::Str(_) => false,
            MV::List(l) => l.is_empty(),
            MV::Hash(h) => h.is_empty(),
            MV::Set(s) => s.is_empty(),
            MV::ZSet(z) => z.is_empty(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct ME {
    v: MV,
    /// Absolute deadline in ms; 0 = none.
    exp: u64,
}

#[derive(Default)]
struct Model {
    keys: BTreeMap<B, ME>,
    now: u64,
}

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
const NOT_INT: &str = "ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "ERR value is not a valid float";
const SYNTAX: &str = "ERR syntax error";
const OVERFLOW: &str = "ERR increment or decrement would overflow";
const POSITIVE: &str = "ERR value is out of range, must be positive";
const MIN_MAX_FLOAT: &str = "ERR min or max is not a float";

fn err(s: &str) -> Reply {
    Reply::err(s.to_string())
}

/// Redis's `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, `-0` refused.
fn p_i64(s: &[u8]) -> Option<i64> {
    let t = std::str::from_utf8(s).ok()?;
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if (digits.len() > 1 && digits.starts_with('0')) || t == "-0" {
        return None;
    }
    t.parse().ok()
}

/// Redis's `strtod`-based score parsing for the values the generator makes.
fn p_f64(s: &[u8]) -> Option<f64> {
    let t = std::str::from_utf8(s).ok()?;
    let v = match t.to_ascii_lowercase().as_str() {
        "inf" | "+inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        "" => return None,
        x if x.contains("nan") || x.contains("inf") || x.starts_with(' ') => return None,
        _ => t.parse().ok()?,
    };
    Some(v)
}

/// `%.17g` for the scores the generator can produce (small integers, halves, infinities).
fn fmt_score(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == v.trunc() && v.abs() < 1e17 {
        return format!("{}", v as i64);
    }
    format!("{}", v)
}

fn bulk(b: &[u8]) -> Reply {
    Reply::bulk(b)
}

fn ms_of(unit_ms: bool, n: i64) -> Option<i64> {
    if unit_ms {
        Some(n)
    } else {
        n.checked_mul(1000)
    }
}

/// Resolves start/stop like Redis's list and rank ranges; `None` = empty.
fn range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut s = if start < 0 { len + start } else { start };
    let mut e = if stop < 0 { len + stop } else { stop };
    if s < 0 {
        s = 0;
    }
    if s > e || s >= len {
        return None;
    }
    if e >= len {
        e = len - 1;
    }
    Some((s as usize, e as usize))
}

#[derive(Clone, Copy)]
struct Bound {
    v: f64,
    excl: bool,
}

fn p_bound(s: &[u8]) -> Option<Bound> {
    match s.strip_prefix(b"(") {
        Some(rest) => Some(Bound { v: p_f64(rest)?, excl: true }),
        None => Some(Bound { v: p_f64(s)?, excl: false }),
    }
}

fn above_min(x: f64, min: Bound) -> bool {
    if min.excl {
        x > min.v
    } else {
        x >= min.v
    }
}

fn below_max(x: f64, max: Bound) -> bool {
    if max.excl {
        x < max.v
    } else {
        x <= max.v
    }
}

fn zsorted(z: &BTreeMap<B, f64>) -> Vec<(B, f64)> {
    let mut v: Vec<(B, f64)> = z.iter().map(|(m, s)| (m.clone(), *s)).collect();
    v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal).then_with(|| a.0.cmp(&b.0)));
    v
}

fn with_scores(items: &[(B, f64)], ws: bool) -> Reply {
    let mut out = Vec::new();
    for (m, s) in items {
        out.push(bulk(m));
        if ws {
            out.push(bulk(fmt_score(*s).as_bytes()));
        }
    }
    Reply::Array(out)
}

impl Model {
    fn purge(&mut self) {
        let now = self.now;
        self.keys.retain(|_, e| e.exp == 0 || e.exp > now);
    }

    fn get(&self, k: &[u8]) -> Option<&ME> {
        self.keys.get(k)
    }

    /// The value at `k` if it has type `t`; `Err` WRONGTYPE if another.
    fn typed(&mut self, k: &[u8], t: &str) -> Result<Option<&mut MV>, Reply> {
        match self.keys.get_mut(k) {
            None => Ok(None),
            Some(e) if e.v.type_name() == t => Ok(Some(&mut e.v)),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    fn string(&self, k: &[u8]) -> Result<Option<B>, Reply> {
        match self.keys.get(k) {
            None => Ok(None),
            Some(ME { v: MV::Str(s), .. }) => Ok(Some(s.clone())),
            Some(_) => Err(err(WRONGTYPE)),
        }
    }

    fn list(&mut self, k: &[u8], create: bool) -> Result<Option<&mut VecDeque<B>>, Reply> {
        if create && !self.keys.contains_key(k) {
            self.keys.insert(k.to_vec(), ME { v: MV::List(VecDeque::new()), exp: 0 });
        }
        Ok(self.typed(k, "list")?.map(|v| match v {
            MV::List(l) => l,
            _ => unreachable!(),
        }))
    }

    fn hash(&mut self, k: &[u8], create: bool) -> Result<Option<&mut BTreeMap<B, B>>, Reply> {
        if create && !self.keys.contains_key(k) {
            self.keys.insert(k.to_vec(), ME { v: MV::Hash(BTreeMap::new()), exp: 0 });
        }
        Ok(self.typed(k, "hash")?.map(|v| match v {
            MV::Hash(h) => h,
            _ => unreachable!(),
        }))
    }

    fn set(&mut self, k: &[u8], create: bool) -> Result<Option<&mut BTreeSet<B>>, Reply> {
        if create && !self.keys.contains_key(k) {
            self.keys.insert(k.to_vec(), ME { v: MV::Set(BTreeSet::new()), exp: 0 });
        }
        Ok(self.typed(k, "set")?.map(|v| match v {
            MV::Set(s) => s,
            _ => unreachable!(),
        }))
    }

    fn zset(&mut self, k: &[u8], create: bool) -> Result<Option<&mut BTreeMap<B, f64>>, Reply> {
        if create && !self.keys.contains_key(k) {
            self.keys.insert(k.to_vec(), ME { v: MV::ZSet(BTreeMap::new()), exp: 0 });
        }
        Ok(self.typed(k, "zset")?.map(|v| match v {
            MV::ZSet(z) => z,
            _ => unreachable!(),
        }))
    }

    /// Runs one command; removes emptied containers afterwards.
    fn exec(&mut self, a: &[B]) -> Reply {
        self.purge();
        let r = match self.run(a) {
            Ok(r) | Err(r) => r,
        };
        self.keys.retain(|_, e| !e.v.is_empty());
        self.purge();
        r
    }

    fn run(&mut self, a: &[B]) -> Result<Reply, Reply> {
        let name = String::from_utf8_lossy(&a[0]).to_ascii_uppercase();
        let none = B::new();
        let k = a.get(1).unwrap_or(&none);
        Ok(match name.as_str() {
            "GET" => Reply::opt_bulk(self.string(k)?),
            "SET" => return self.cmd_set(a),
            "SETNX" => {
                if self.keys.contains_key(k) {
                    Reply::Int(0)
                } else {
                    self.keys.insert(k.clone(), ME { v: MV::Str(a[2].clone()), exp: 0 });
                    Reply::Int(1)
                }
            }
            "GETSET" => {
                let old = self.string(k)?;
                self.keys.insert(k.clone(), ME { v: MV::Str(a[2].clone()), exp: 0 });
                Reply::opt_bulk(old)
            }
            "GETDEL" => {
                let old = self.string(k)?;
                self.keys.remove(k);
                Reply::opt_bulk(old)
            }
            "MGET" => Reply::Array(
                a[1..]
                    .iter()
                    .map(|k| match self.get(k) {
                        Some(ME { v: MV::Str(s), .. }) => bulk(s),
                        _ => Reply::Nil,
                    })
                    .collect(),
            ),
            "MSET" | "MSETNX" => {
                if a.len() % 2 == 0 {
                    return Err(err(&format!("ERR wrong number of arguments for '{}' command", name.to_lowercase())));
                }
                if name == "MSETNX" && a[1..].chunks(2).any(|p| self.keys.contains_key(&p[0])) {
                    return Ok(Reply::Int(0));
                }
                for p in a[1..].chunks(2) {
                    self.keys.insert(p[0].clone(), ME { v: MV::Str(p[1].clone()), exp: 0 });
                }
                if name == "MSET" {
                    Reply::Ok
                } else {
                    Reply::Int(1)
                }
            }
            "APPEND" => {
                let mut s = self.string(k)?.unwrap_or_default();
                s.extend_from_slice(&a[2]);
                let n = s.len();
                let exp = self.keys.get(k).map(|e| e.exp).unwrap_or(0);
                self.keys.insert(k.clone(), ME { v: MV::Str(s), exp });
                Reply::Int(n as i64)
            }
            "STRLEN" => Reply::Int(self.string(k)?.map(|s| s.len()).unwrap_or(0) as i64),
            "INCR" | "DECR" | "INCRBY" | "DECRBY" => {
                let by = match name.as_str() {
                    "INCR" => 1,
                    "DECR" => -1,
                    _ => {
                        let n = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
                        if name == "DECRBY" {
                            if n == i64::MIN {
                                return Err(err("ERR decrement would overflow"));
                            }
                            -n
                        } else {
                            n
                        }
                    }
                };
                let cur = match self.string(k)? {
                    None => 0,
                    Some(s) => p_i64(&s).ok_or_else(|| err(NOT_INT))?,
                };
                let n = cur.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
                let exp = self.keys.get(k).map(|e| e.exp).unwrap_or(0);
                self.keys.insert(k.clone(), ME { v: MV::Str(n.to_string().into_bytes()), exp });
                Reply::Int(n)
            }
            "GETRANGE" => {
                let (Some(mut s), Some(mut e)) = (p_i64(&a[2]), p_i64(&a[3])) else { return Err(err(NOT_INT)) };
                let v = self.string(k)?.unwrap_or_default();
                let len = v.len() as i64;
                if s < 0 && e < 0 && s > e {
                    return Ok(bulk(b""));
                }
                if s < 0 {
                    s += len;
                }
                if e < 0 {
                    e += len;
                }
                s = s.max(0);
                e = e.max(0);
                if e >= len {
                    e = len - 1;
                }
                if s > e || len == 0 {
                    bulk(b"")
                } else {
                    bulk(&v[s as usize..=e as usize])
                }
            }
            "SETRANGE" => {
                let off = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
                if off < 0 {
                    return Err(err("ERR offset is out of range"));
                }
                let cur = self.string(k)?;
                let val = &a[3];
                if val.is_empty() {
                    return Ok(Reply::Int(cur.map(|c| c.len()).unwrap_or(0) as i64));
                }
                let mut s = cur.unwrap_or_default();
                let end = off as usize + val.len();
                if s.len() < end {
                    s.resize(end, 0);
                }
                s[off as usize..end].copy_from_slice(val);
                let n = s.len();
                let exp = self.keys.get(k).map(|e| e.exp).unwrap_or(0);
                self.keys.insert(k.clone(), ME { v: MV::Str(s), exp });
                Reply::Int(n as i64)
            }
            "FLUSHDB" => {
                self.keys.clear();
                Reply::Ok
            }
            "GETEX" => return self.cmd_getex(a),
            "SINTERCARD" => {
                let n = p_i64(&a[1]).filter(|n| *n > 0).ok_or_else(|| err("ERR numkeys should be greater than 0"))?;
                if n as usize > a.len() - 2 {
                    return Err(err("ERR Number of keys can't be greater than number of args"));
                }
                let keys = &a[2..2 + n as usize];
                let mut limit = 0;
                let mut i = 2 + n as usize;
                while i < a.len() {
                    if a[i].eq_ignore_ascii_case(b"LIMIT") && i + 1 < a.len() {
                        limit = p_i64(&a[i + 1]).filter(|l| *l >= 0).ok_or_else(|| err("ERR LIMIT can't be negative"))?;
                        i += 2;
                    } else {
                        return Err(err(SYNTAX));
                    }
                }
                let mut sets = Vec::new();
                for k in keys {
                    sets.push(self.set(k, false)?.cloned());
                }
                if sets.iter().any(|s| s.is_none()) {
                    return Ok(Reply::Int(0));
                }
                let mut it = sets.into_iter().flatten();
                let first = it.next().unwrap_or_default();
                let inter: BTreeSet<B> = it.fold(first, |acc, s| acc.intersection(&s).cloned().collect());
                let n = inter.len() as i64;
                Reply::Int(if limit > 0 { n.min(limit) } else { n })
            }
            "ZUNIONSTORE" | "ZINTERSTORE" | "ZDIFFSTORE" => return self.cmd_zstore(&name, a),
            "DEL" | "UNLINK" => Reply::Int(a[1..].iter().filter(|k| self.keys.remove(*k).is_some()).count() as i64),
            "EXISTS" => Reply::Int(a[1..].iter().filter(|k| self.keys.contains_key(*k)).count() as i64),
            "TYPE" => Reply::simple(self.get(k).map(|e| e.v.type_name()).unwrap_or("none")),
            "RENAME" | "RENAMENX" => {
                let Some(e) = self.keys.get(k).cloned() else { return Err(err("ERR no such key")) };
                let dst = &a[2];
                if dst == k {
                    return Ok(if name == "RENAME" { Reply::Ok } else { Reply::Int(0) });
                }
                if name == "RENAMENX" && self.keys.contains_key(dst) {
                    return Ok(Reply::Int(0));
                }
                self.keys.remove(k);
                self.keys.insert(dst.clone(), e);
                if name == "RENAME" {
                    Reply::Ok
                } else {
                    Reply::Int(1)
                }
            }
            "COPY" => {
                let replace = match a.get(3) {
                    None => false,
                    Some(o) if o.eq_ignore_ascii_case(b"REPLACE") => true,
                    Some(_) => return Err(err(SYNTAX)),
                };
                let dst = &a[2];
                if dst == k {
                    return Err(err("ERR source and destination objects are the same"));
                }
                let Some(e) = self.keys.get(k).cloned() else { return Ok(Reply::Int(0)) };
                if self.keys.contains_key(dst) && !replace {
                    return Ok(Reply::Int(0));
                }
                self.keys.insert(dst.clone(), e);
                Reply::Int(1)
            }
            "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => return self.cmd_expire(&name, a),
            "TTL" | "PTTL" => match self.get(k) {
                None => Reply::Int(-2),
                Some(e) if e.exp == 0 => Reply::Int(-1),
                Some(e) => {
                    let ttl = (e.exp - self.now) as i64;
                    Reply::Int(if name == "PTTL" { ttl } else { (ttl + 500) / 1000 })
                }
            },
            "EXPIRETIME" | "PEXPIRETIME" => match self.get(k) {
                None => Reply::Int(-2),
                Some(e) if e.exp == 0 => Reply::Int(-1),
                Some(e) => Reply::Int(if name == "PEXPIRETIME" { e.exp as i64 } else { ((e.exp + 500) / 1000) as i64 }),
            },
            "PERSIST" => match self.keys.get_mut(k) {
                Some(e) if e.exp != 0 => {
                    e.exp = 0;
                    Reply::Int(1)
                }
                _ => Reply::Int(0),
            },
            "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" => {
                if name.ends_with('X') && !self.keys.contains_key(k) {
                    self.list(k, false)?;
                    return Ok(Reply::Int(0));
                }
                let l = self.list(k, true)?.ok_or_else(|| err("missing"))?;
                for x in &a[2..] {
                    if name.starts_with('L') {
                        l.push_front(x.clone());
                    } else {
                        l.push_back(x.clone());
                    }
                }
                Reply::Int(l.len() as i64)
            }
            "LPOP" | "RPOP" => {
                let count = match a.get(2) {
                    None => None,
                    Some(c) => Some(p_i64(c).filter(|n| *n >= 0).ok_or_else(|| err(POSITIVE))?),
                };
                let Some(l) = self.list(k, false)? else {
                    return Ok(if count.is_some() { Reply::NilArray } else { Reply::Nil });
                };
                let mut pop = || if name == "LPOP" { l.pop_front() } else { l.pop_back() };
                match count {
                    None => Reply::opt_bulk(pop()),
                    Some(n) => Reply::Array((0..n).map_while(|_| pop()).map(|x| bulk(&x)).collect()),
                }
            }
            "LLEN" => Reply::Int(self.list(k, false)?.map(|l| l.len()).unwrap_or(0) as i64),
            "LRANGE" => {
                let (Some(s), Some(e)) = (p_i64(&a[2]), p_i64(&a[3])) else { return Err(err(NOT_INT)) };
                let Some(l) = self.list(k, false)? else { return Ok(Reply::Array(vec![])) };
                match range(s, e, l.len()) {
                    None => Reply::Array(vec![]),
                    Some((s, e)) => Reply::Array(l.range(s..=e).map(|x| bulk(x)).collect()),
                }
            }
            "LINDEX" => {
                let Some(l) = self.list(k, false)? else { return Ok(Reply::Nil) };
                let i = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
                let i = if i < 0 { l.len() as i64 + i } else { i };
                Reply::opt_bulk(if i < 0 { None } else { l.get(i as usize).cloned() })
            }
            "LSET" => {
                let Some(l) = self.list(k, false)? else { return Err(err("ERR no such key")) };
                let i = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
                let i = if i < 0 { l.len() as i64 + i } else { i };
                match (i >= 0).then(|| l.get_mut(i as usize)).flatten() {
                    Some(slot) => {
                        *slot = a[3].clone();
                        Reply::Ok
                    }
                    None => return Err(err("ERR index out of range")),
                }
            }
            "LREM" => {
                let n = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
                let Some(l) = self.list(k, false)? else { return Ok(Reply::Int(0)) };
                let x = &a[3];
                let mut removed = 0i64;
                let limit = if n == 0 { i64::MAX } else { n.abs() };
                if n >= 0 {
                    let mut i = 0;
                    while i < l.len() && removed < limit {
                        if &l[i] == x {
                            l.remove(i);
                            removed += 1;
                        } else {
                            i += 1;
                        }
                    }
                } else {
                    let mut i = l.len();
                    while i > 0 && removed < limit {
                        i -= 1;
                        if &l[i] == x {
                            l.remove(i);
                            removed += 1;
                        }
                    }
                }
                Reply::Int(removed)
            }
            "LTRIM" => {
                let (Some(s), Some(e)) = (p_i64(&a[2]), p_i64(&a[3])) else { return Err(err(NOT_INT)) };
                if let Some(l) = self.list(k, false)? {
                    match range(s, e, l.len()) {
                        None => l.clear(),
                        Some((s, e)) => {
                            l.truncate(e + 1);
                            l.drain(..s);
                        }
                    }
                }
                Reply::Ok
            }
            "LINSERT" => {
                let before = if a[2].eq_ignore_ascii_case(b"BEFORE") {
                    true
                } else if a[2].eq_ignore_ascii_case(b"AFTER") {
                    false
                } else {
                    return Err(err(SYNTAX));
                };
                let Some(l) = self.list(k, false)? else { return Ok(Reply::Int(0)) };
                match l.iter().position(|x| *x == a[3]) {
                    None => Reply::Int(-1),
                    Some(p) => {
                        l.insert(if before { p } else { p + 1 }, a[4].clone());
                        Reply::Int(l.len() as i64)
                    }
                }
            }
            "LPOS" => return self.cmd_lpos(a),
            "LMOVE" | "RPOPLPUSH" => {
                let (from_left, to_left) = if name == "RPOPLPUSH" {
                    (false, true)
                } else {
                    let side = |s: &B| {
                        if s.eq_ignore_ascii_case(b"LEFT") {
                            Some(true)
                        } else if s.eq_ignore_ascii_case(b"RIGHT") {
                            Some(false)
                        } else {
                            None
                        }
                    };
                    match (side(&a[3]), side(&a[4])) {
                        (Some(f), Some(t)) => (f, t),
                        _ => return Err(err(SYNTAX)),
                    }
                };
                let dst = a[2].clone();
                let Some(src) = self.list(k, false)? else { return Ok(Reply::Nil) };
                let _ = src;
                self.list(&dst, false)?;
                let src = self.list(k, false)?.ok_or_else(|| err("missing"))?;
                let x = if from_left { src.pop_front() } else { src.pop_back() }.ok_or_else(|| err("empty"))?;
                // Same key: the element moves within the list (rotation).
                let d = self.list(&dst, true)?.ok_or_else(|| err("missing"))?;
                if to_left {
                    d.push_front(x.clone());
                } else {
                    d.push_back(x.clone());
                }
                bulk(&x)
            }
            "HSET" => {
                if a.len() % 2 != 0 {
                    return Err(err("ERR wrong number of arguments for 'hset' command"));
                }
                let h = self.hash(k, true)?.ok_or_else(|| err("missing"))?;
                let mut added = 0;
                for p in a[2..].chunks(2) {
                    if h.insert(p[0].clone(), p[1].clone()).is_none() {
                        added += 1;
                    }
                }
                Reply::Int(added)
            }
            "HSETNX" => {
                let h = self.hash(k, true)?.ok_or_else(|| err("missing"))?;
                if h.contains_key(&a[2]) {
                    Reply::Int(0)
                } else {
                    h.insert(a[2].clone(), a[3].clone());
                    Reply::Int(1)
                }
            }
            "HGET" => Reply::opt_bulk(self.hash(k, false)?.and_then(|h| h.get(&a[2]).cloned())),
            "HMGET" => {
                let h = self.hash(k, false)?.cloned().unwrap_or_default();
                Reply::Array(a[2..].iter().map(|f| Reply::opt_bulk(h.get(f))).collect())
            }
            "HDEL" => {
                let Some(h) = self.hash(k, false)? else { return Ok(Reply::Int(0)) };
                Reply::Int(a[2..].iter().filter(|f| h.remove(*f).is_some()).count() as i64)
            }
            "HLEN" => Reply::Int(self.hash(k, false)?.map(|h| h.len()).unwrap_or(0) as i64),
            "HEXISTS" => Reply::Int(self.hash(k, false)?.map(|h| h.contains_key(&a[2]) as i64).unwrap_or(0)),
            "HSTRLEN" => Reply::Int(self.hash(k, false)?.and_then(|h| h.get(&a[2]).map(|v| v.len())).unwrap_or(0) as i64),
            "HINCRBY" => {
                let by = p_i64(&a[3]).ok_or_else(|| err(NOT_INT))?;
                let h = self.hash(k, true)?.ok_or_else(|| err("missing"))?;
                let cur = match h.get(&a[2]) {
                    None => 0,
                    Some(v) => p_i64(v).ok_or_else(|| err("ERR hash value is not an integer"))?,
                };
                let n = cur.checked_add(by).ok_or_else(|| err(OVERFLOW))?;
                h.insert(a[2].clone(), n.to_string().into_bytes());
                Reply::Int(n)
            }
            "HGETALL" | "HKEYS" | "HVALS" => {
                let h = self.hash(k, false)?.cloned().unwrap_or_default();
                Reply::Array(
                    h.iter()
                        .flat_map(|(f, v)| match name.as_str() {
                            "HGETALL" => vec![bulk(f), bulk(v)],
                            "HKEYS" => vec![bulk(f)],
                            _ => vec![bulk(v)],
                        })
                        .collect(),
                )
            }
            "SADD" => {
                let s = self.set(k, true)?.ok_or_else(|| err("missing"))?;
                Reply::Int(a[2..].iter().filter(|m| s.insert((*m).clone())).count() as i64)
            }
            "SREM" => {
                let Some(s) = self.set(k, false)? else { return Ok(Reply::Int(0)) };
                Reply::Int(a[2..].iter().filter(|m| s.remove(*m)).count() as i64)
            }
            "SCARD" => Reply::Int(self.set(k, false)?.map(|s| s.len()).unwrap_or(0) as i64),
            "SISMEMBER" => Reply::Int(self.set(k, false)?.map(|s| s.contains(&a[2]) as i64).unwrap_or(0)),
            "SMISMEMBER" => {
                let s = self.set(k, false)?.cloned().unwrap_or_default();
                Reply::Array(a[2..].iter().map(|m| Reply::Int(s.contains(m) as i64)).collect())
            }
            "SMEMBERS" => Reply::Array(self.set(k, false)?.cloned().unwrap_or_default().iter().map(|m| bulk(m)).collect()),
            "SINTER" | "SUNION" | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" => {
                let store = name.ends_with("STORE");
                let srcs = if store { &a[2..] } else { &a[1..] };
                let mut sets = Vec::new();
                for s in srcs {
                    sets.push(self.set(s, false)?.cloned());
                }
                let op = &name[1..name.len() - if store { 5 } else { 0 }];
                let result: BTreeSet<B> = match op {
                    "INTER" => {
                        if sets.iter().any(|s| s.is_none()) {
                            BTreeSet::new()
                        } else {
                            let mut it = sets.into_iter().flatten();
                            let first = it.next().unwrap_or_default();
                            it.fold(first, |acc, s| acc.intersection(&s).cloned().collect())
                        }
                    }
                    "UNION" => sets.into_iter().flatten().flatten().collect(),
                    _ => {
                        let mut it = sets.into_iter();
                        let first = it.next().flatten().unwrap_or_default();
                        it.fold(first, |acc, s| match s {
                            Some(s) => acc.difference(&s).cloned().collect(),
                            None => acc,
                        })
                    }
                };
                if store {
                    let n = result.len() as i64;
                    self.keys.remove(&a[1]);
                    if n > 0 {
                        self.keys.insert(a[1].clone(), ME { v: MV::Set(result), exp: 0 });
                    }
                    Reply::Int(n)
                } else {
                    Reply::Array(result.iter().map(|m| bulk(m)).collect())
                }
            }
            "SMOVE" => {
                let dst = a[2].clone();
                // A missing source answers 0 before the destination's type is looked at.
                let Some(src) = self.set(k, false)? else { return Ok(Reply::Int(0)) };
                let _ = src;
                self.set(&dst, false)?;
                if *k == dst {
                    return Ok(Reply::Int(self.set(k, false)?.map(|s| s.contains(&a[3]) as i64).unwrap_or(0)));
                }
                let src = self.set(k, false)?.ok_or_else(|| err("missing"))?;
                if !src.remove(&a[3]) {
                    return Ok(Reply::Int(0));
                }
                self.set(&dst, true)?.ok_or_else(|| err("missing"))?.insert(a[3].clone());
                Reply::Int(1)
            }
            "ZADD" => return self.cmd_zadd(a),
            "ZINCRBY" => {
                let by = p_f64(&a[2]).ok_or_else(|| err(NOT_FLOAT))?;
                let z = self.zset(k, true)?.ok_or_else(|| err("missing"))?;
                let n = z.get(&a[3]).copied().unwrap_or(0.0) + by;
                if n.is_nan() {
                    return Err(err("ERR resulting score is not a number (NaN)"));
                }
                z.insert(a[3].clone(), n);
                bulk(fmt_score(n).as_bytes())
            }
            "ZREM" => {
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Int(0)) };
                Reply::Int(a[2..].iter().filter(|m| z.remove(*m).is_some()).count() as i64)
            }
            "ZSCORE" => Reply::opt_bulk(self.zset(k, false)?.and_then(|z| z.get(&a[2]).map(|s| fmt_score(*s)))),
            "ZMSCORE" => {
                let z = self.zset(k, false)?.cloned().unwrap_or_default();
                Reply::Array(a[2..].iter().map(|m| Reply::opt_bulk(z.get(m).map(|s| fmt_score(*s)))).collect())
            }
            "ZCARD" => Reply::Int(self.zset(k, false)?.map(|z| z.len()).unwrap_or(0) as i64),
            "ZRANK" | "ZREVRANK" => {
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Nil) };
                let sorted = zsorted(z);
                match sorted.iter().position(|(m, _)| *m == a[2]) {
                    None => Reply::Nil,
                    Some(p) => Reply::Int(if name == "ZRANK" { p } else { sorted.len() - 1 - p } as i64),
                }
            }
            "ZCOUNT" => {
                let (Some(min), Some(max)) = (p_bound(&a[2]), p_bound(&a[3])) else { return Err(err(MIN_MAX_FLOAT)) };
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Int(0)) };
                Reply::Int(z.values().filter(|s| above_min(**s, min) && below_max(**s, max)).count() as i64)
            }
            "ZRANGE" | "ZRANGEBYSCORE" | "ZREVRANGE" => return self.cmd_zrange(&name, a),
            "ZPOPMIN" | "ZPOPMAX" => {
                let count = match a.get(2) {
                    None => 1,
                    Some(c) => p_i64(c).filter(|n| *n >= 0).ok_or_else(|| err(POSITIVE))?,
                };
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Array(vec![])) };
                let mut sorted = zsorted(z);
                if name == "ZPOPMAX" {
                    sorted.reverse();
                }
                sorted.truncate(count as usize);
                for (m, _) in &sorted {
                    z.remove(m);
                }
                with_scores(&sorted, true)
            }
            "ZREMRANGEBYRANK" => {
                let (Some(s), Some(e)) = (p_i64(&a[2]), p_i64(&a[3])) else { return Err(err(NOT_INT)) };
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Int(0)) };
                let sorted = zsorted(z);
                match range(s, e, sorted.len()) {
                    None => Reply::Int(0),
                    Some((s, e)) => {
                        for (m, _) in &sorted[s..=e] {
                            z.remove(m);
                        }
                        Reply::Int((e - s + 1) as i64)
                    }
                }
            }
            "ZREMRANGEBYSCORE" => {
                let (Some(min), Some(max)) = (p_bound(&a[2]), p_bound(&a[3])) else { return Err(err(MIN_MAX_FLOAT)) };
                let Some(z) = self.zset(k, false)? else { return Ok(Reply::Int(0)) };
                let before = z.len();
                z.retain(|_, s| !(above_min(*s, min) && below_max(*s, max)));
                Reply::Int((before - z.len()) as i64)
            }
            other => panic!("model does not know {}", other),
        })
    }

    fn cmd_set(&mut self, a: &[B]) -> Result<Reply, Reply> {
        let k = &a[1];
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        let mut exp: Option<(bool, bool, B)> = None; // unit_ms, absolute, arg
        let mut i = 3;
        while i < a.len() {
            let o = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            let next = a.get(i + 1);
            let kind = exp.as_ref().map(|(ms, abs, _)| (*ms, *abs));
            match o.as_str() {
                "NX" if !xx => nx = true,
                "XX" if !nx => xx = true,
                "GET" => get = true,
                "KEEPTTL" if exp.is_none() => keepttl = true,
                // Redis accepts the same expiry option twice (the last wins) but not two kinds.
                "EX" | "PX" | "EXAT" | "PXAT" if !keepttl && next.is_some() => {
                    let this = (o.starts_with('P'), o.ends_with("AT"));
                    if kind.is_some() && kind != Some(this) {
                        return Err(err(SYNTAX));
                    }
                    exp = Some((this.0, this.1, next.cloned().unwrap_or_default()));
                    i += 1;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 1;
        }
        let mut at = 0u64;
        if let Some((unit_ms, abs, arg)) = exp {
            let n = p_i64(&arg).ok_or_else(|| err(NOT_INT))?;
            if n <= 0 || (!unit_ms && n > i64::MAX / 1000) {
                return Err(err("ERR invalid expire time in 'set' command"));
            }
            let ms = ms_of(unit_ms, n).ok_or_else(|| err("ERR invalid expire time in 'set' command"))?;
            at = if abs { ms } else { ms.checked_add(self.now as i64).ok_or_else(|| err("ERR invalid expire time in 'set' command"))? } as u64;
        }
        let old = if get { Some(self.string(k)?) } else { None };
        let exists = self.keys.contains_key(k);
        if (nx && exists) || (xx && !exists) {
            return Ok(match old {
                Some(o) => Reply::opt_bulk(o),
                None => Reply::Nil,
            });
        }
        if keepttl {
            at = self.keys.get(k).map(|e| e.exp).unwrap_or(0);
        }
        self.keys.insert(k.clone(), ME { v: MV::Str(a[2].clone()), exp: at });
        Ok(match old {
            Some(o) => Reply::opt_bulk(o),
            None => Reply::Ok,
        })
    }

    fn cmd_getex(&mut self, a: &[B]) -> Result<Reply, Reply> {
        let mut persist = false;
        let mut exp: Option<(bool, bool, B)> = None;
        let mut i = 2;
        while i < a.len() {
            let o = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            let next = a.get(i + 1);
            let kind = exp.as_ref().map(|(ms, abs, _)| (*ms, *abs));
            match o.as_str() {
                "PERSIST" if exp.is_none() => persist = true,
                "EX" | "PX" | "EXAT" | "PXAT" if !persist && next.is_some() => {
                    let this = (o.starts_with('P'), o.ends_with("AT"));
                    if kind.is_some() && kind != Some(this) {
                        return Err(err(SYNTAX));
                    }
                    exp = Some((this.0, this.1, next.cloned().unwrap_or_default()));
                    i += 1;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 1;
        }
        // Redis looks the key up (nil, WRONGTYPE) before it reads the expire value.
        let Some(v) = self.string(&a[1])? else { return Ok(Reply::Nil) };
        let mut at = None;
        if let Some((unit_ms, abs, arg)) = exp {
            let n = p_i64(&arg).ok_or_else(|| err(NOT_INT))?;
            let bad = || err("ERR invalid expire time in 'getex' command");
            if n <= 0 || (!unit_ms && n > i64::MAX / 1000) {
                return Err(bad());
            }
            let ms = ms_of(unit_ms, n).ok_or_else(bad)?;
            at = Some(if abs { ms } else { ms.checked_add(self.now as i64).ok_or_else(bad)? });
        }
        if let Some(at) = at {
            if at <= self.now as i64 {
                self.keys.remove(&a[1]);
            } else if let Some(e) = self.keys.get_mut(&a[1]) {
                e.exp = at as u64;
            }
        } else if persist {
            if let Some(e) = self.keys.get_mut(&a[1]) {
                e.exp = 0;
            }
        }
        Ok(bulk(&v))
    }

    fn cmd_zstore(&mut self, name: &str, a: &[B]) -> Result<Reply, Reply> {
        let n = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
        if n < 1 {
            return Err(err(&format!("ERR at least 1 input key is needed for '{}' command", name.to_lowercase())));
        }
        if n as usize > a.len() - 3 {
            return Err(err(SYNTAX));
        }
        let n = n as usize;
        // Inputs are looked up (and type-checked) before the options are parsed.
        let mut inputs: Vec<BTreeMap<B, f64>> = Vec::new();
        let mut present = Vec::new();
        for k in &a[3..3 + n] {
            match self.keys.get(k) {
                None => {
                    inputs.push(BTreeMap::new());
                    present.push(false);
                }
                Some(ME { v: MV::ZSet(z), .. }) => {
                    inputs.push(z.clone());
                    present.push(true);
                }
                Some(ME { v: MV::Set(s), .. }) => {
                    inputs.push(s.iter().map(|m| (m.clone(), 1.0)).collect());
                    present.push(true);
                }
                Some(_) => return Err(err(WRONGTYPE)),
            }
        }
        let mut weights = vec![1.0; n];
        let mut agg = "SUM".to_string();
        let mut i = 3 + n;
        while i < a.len() {
            let o = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            if o == "WEIGHTS" && name != "ZDIFFSTORE" && i + n < a.len() {
                for (j, w) in weights.iter_mut().enumerate() {
                    *w = p_f64(&a[i + 1 + j]).ok_or_else(|| err("ERR weight value is not a float"))?;
                }
                i += 1 + n;
            } else if o == "AGGREGATE" && name != "ZDIFFSTORE" && i + 1 < a.len() {
                agg = String::from_utf8_lossy(&a[i + 1]).to_ascii_uppercase();
                if !matches!(agg.as_str(), "SUM" | "MIN" | "MAX") {
                    return Err(err(SYNTAX));
                }
                i += 2;
            } else {
                return Err(err(SYNTAX));
            }
        }
        let weighted = |s: f64, w: f64| {
            let v = s * w;
            if v.is_nan() {
                0.0
            } else {
                v
            }
        };
        let combine = |acc: f64, v: f64| match agg.as_str() {
            "SUM" => {
                let r = acc + v;
                if r.is_nan() {
                    0.0
                } else {
                    r
                }
            }
            "MIN" => acc.min(v),
            _ => acc.max(v),
        };
        let mut out: BTreeMap<B, f64> = BTreeMap::new();
        match name {
            "ZUNIONSTORE" => {
                for (input, w) in inputs.iter().zip(&weights) {
                    for (m, s) in input {
                        let v = weighted(*s, *w);
                        let e = out.entry(m.clone()).or_insert(f64::NAN);
                        *e = if e.is_nan() { v } else { combine(*e, v) };
                    }
                }
            }
            "ZINTERSTORE" => {
                if present.iter().all(|p| *p) {
                    for (m, s) in &inputs[0] {
                        if inputs[1..].iter().all(|z| z.contains_key(m)) {
                            let mut acc = weighted(*s, weights[0]);
                            // Redis zeroes a NaN product only for the first input; later
                            // ones go into the aggregate raw (SUM then zeroes a NaN total),
                            // so `1 * -1 + inf * 0` is 0 here but -1 in ZUNIONSTORE.
                            for (z, w) in inputs[1..].iter().zip(&weights[1..]) {
                                acc = combine(acc, z[m] * *w);
                            }
                            out.insert(m.clone(), acc);
                        }
                    }
                }
            }
            _ => {
                for (m, s) in &inputs[0] {
                    if !inputs[1..].iter().any(|z| z.contains_key(m)) {
                        out.insert(m.clone(), *s);
                    }
                }
            }
        }
        let count = out.len() as i64;
        self.keys.remove(&a[1]);
        if count > 0 {
            self.keys.insert(a[1].clone(), ME { v: MV::ZSet(out), exp: 0 });
        }
        Ok(Reply::Int(count))
    }

    fn cmd_expire(&mut self, name: &str, a: &[B]) -> Result<Reply, Reply> {
        let (unit_ms, abs) = (name.starts_with('P'), name.ends_with("AT"));
        let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
        for o in &a[3..] {
            match String::from_utf8_lossy(o).to_ascii_uppercase().as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                _ => return Err(err(&format!("ERR Unsupported option {}", String::from_utf8_lossy(o)))),
            }
        }
        if nx && (xx || gt || lt) {
            return Err(err("ERR NX and XX, GT or LT options at the same time are not compatible"));
        }
        if gt && lt {
            return Err(err("ERR GT and LT options at the same time are not compatible"));
        }
        // Redis reads the options before the number.
        let n = p_i64(&a[2]).ok_or_else(|| err(NOT_INT))?;
        let bad = || err(&format!("ERR invalid expire time in '{}' command", name.to_lowercase()));
        let ms = ms_of(unit_ms, n).ok_or_else(bad)?;
        let when = if abs { ms } else { ms.checked_add(self.now as i64).ok_or_else(bad)? };
        let Some(e) = self.keys.get_mut(&a[1]) else { return Ok(Reply::Int(0)) };
        let cur = e.exp;
        let ok = if nx {
            cur == 0
        } else if xx {
            cur != 0 && (!gt || when > cur as i64) && (!lt || when < cur as i64)
        } else if gt {
            cur != 0 && when > cur as i64
        } else if lt {
            cur == 0 || when < cur as i64
        } else {
            true
        };
        if !ok {
            return Ok(Reply::Int(0));
        }
        if when <= self.now as i64 {
            self.keys.remove(&a[1]);
        } else {
            e.exp = when as u64;
        }
        Ok(Reply::Int(1))
    }

    fn cmd_lpos(&mut self, a: &[B]) -> Result<Reply, Reply> {
        let (mut rank, mut count, mut maxlen) = (1i64, None::<i64>, 0i64);
        let mut i = 3;
        while i < a.len() {
            let o = String::from_utf8_lossy(&a[i]).to_ascii_uppercase();
            let Some(arg) = a.get(i + 1) else { return Err(err(SYNTAX)) };
            match o.as_str() {
                "RANK" => {
                    rank = p_i64(arg).ok_or_else(|| err(NOT_INT))?;
                    if rank == 0 {
                        return Err(err("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list"));
                    }
                }
                "COUNT" => {
                    // Redis answers a non-integer COUNT or MAXLEN with the "negative" text too.
                    let c = p_i64(arg).filter(|c| *c >= 0).ok_or_else(|| err("ERR COUNT can't be negative"))?;
                    count = Some(c);
                }
                "MAXLEN" => {
                    maxlen = p_i64(arg).filter(|m| *m >= 0).ok_or_else(|| err("ERR MAXLEN can't be negative"))?;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 2;
        }
        let Some(l) = self.list(&a[1], false)? else {
            return Ok(if count.is_some() { Reply::Array(vec![]) } else { Reply::Nil });
        };
        let len = l.len();
        let idx: Vec<usize> = if rank > 0 { (0..len).collect() } else { (0..len).rev().collect() };
        let scan = if maxlen == 0 { len } else { (maxlen as usize).min(len) };
        let mut skip = rank.unsigned_abs() - 1;
        let want = match count {
            None => 1,
            Some(0) => usize::MAX,
            Some(c) => c as usize,
        };
        let mut found = Vec::new();
        for &p in idx.iter().take(scan) {
            if l[p] == a[2] {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                found.push(p as i64);
                if found.len() >= want {
                    break;
                }
            }
        }
        Ok(match count {
            None => found.first().map(|p| Reply::Int(*p)).unwrap_or(Reply::Nil),
            Some(_) => Reply::Array(found.into_iter().map(Reply::Int).collect()),
        })
    }

    fn cmd_zadd(&mut self, a: &[B]) -> Result<Reply, Reply> {
        let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, false);
        let mut i = 2;
        while i < a.len() {
            match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
                "NX" => nx = true,
                "XX" => xx = true,
                "GT" => gt = true,
                "LT" => lt = true,
                "CH" => ch = true,
                "INCR" => incr = true,
                _ => break,
            }
            i += 1;
        }
        let rest = &a[i..];
        if rest.is_empty() || rest.len() % 2 != 0 {
            return Err(err(SYNTAX));
        }
        if nx && xx {
            return Err(err("ERR XX and NX options at the same time are not compatible"));
        }
        if (nx && (gt || lt)) || (gt && lt) {
            return Err(err("ERR GT, LT, and/or NX options at the same time are not compatible"));
        }
        if incr && rest.len() > 2 {
            return Err(err("ERR INCR option supports a single increment-element pair"));
        }
        let mut pairs = Vec::new();
        for p in rest.chunks(2) {
            pairs.push((p_f64(&p[0]).ok_or_else(|| err(NOT_FLOAT))?, p[1].clone()));
        }
        if self.zset(&a[1], false)?.is_none() && xx {
            return Ok(if incr { Reply::Nil } else { Reply::Int(0) });
        }
        let z = self.zset(&a[1], true)?.ok_or_else(|| err("missing"))?;
        let (mut added, mut changed) = (0, 0);
        let mut incr_result = None;
        for (score, m) in pairs {
            match z.get(&m).copied() {
                Some(cur) => {
                    if nx {
                        continue;
                    }
                    let new = if incr { cur + score } else { score };
                    if new.is_nan() {
                        return Err(err("ERR resulting score is not a number (NaN)"));
                    }
                    if (gt && new <= cur) || (lt && new >= cur) {
                        continue;
                    }
                    incr_result = Some(new);
                    if new != cur {
                        z.insert(m, new);
                        changed += 1;
                    }
                }
                None => {
                    if xx {
                        continue;
                    }
                    z.insert(m, score);
                    added += 1;
                    incr_result = Some(score);
                }
            }
        }
        Ok(if incr {
            Reply::opt_bulk(incr_result.map(fmt_score))
        } else {
            Reply::Int(added + if ch { changed } else { 0 })
        })
    }

    fn cmd_zrange(&mut self, name: &str, a: &[B]) -> Result<Reply, Reply> {
        // Normalise the three spellings to ZRANGE's grammar.
        let (mut byscore, mut rev, mut ws) = (name == "ZRANGEBYSCORE", name == "ZREVRANGE", false);
        let mut limit: Option<(B, B)> = None;
        let mut i = 4;
        while i < a.len() {
            match String::from_utf8_lossy(&a[i]).to_ascii_uppercase().as_str() {
                "WITHSCORES" => ws = true,
                "BYSCORE" if name == "ZRANGE" => byscore = true,
                "REV" if name == "ZRANGE" => rev = true,
                "LIMIT" if name != "ZREVRANGE" && i + 2 < a.len() => {
                    limit = Some((a[i + 1].clone(), a[i + 2].clone()));
                    i += 2;
                }
                _ => return Err(err(SYNTAX)),
            }
            i += 1;
        }
        if limit.is_some() && !byscore {
            return Err(err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"));
        }
        let (offset, count) = match &limit {
            None => (0, -1),
            Some((o, c)) => (p_i64(o).ok_or_else(|| err(NOT_INT))?, p_i64(c).ok_or_else(|| err(NOT_INT))?),
        };
        if byscore {
            let (lo, hi) = if rev { (&a[3], &a[2]) } else { (&a[2], &a[3]) };
            let (Some(min), Some(max)) = (p_bound(lo), p_bound(hi)) else { return Err(err(MIN_MAX_FLOAT)) };
            let Some(z) = self.zset(&a[1], false)? else { return Ok(Reply::Array(vec![])) };
            let mut sorted = zsorted(z);
            if rev {
                sorted.reverse();
            }
            if offset < 0 {
                return Ok(Reply::Array(vec![]));
            }
            let items: Vec<(B, f64)> = sorted
                .into_iter()
                .filter(|(_, s)| above_min(*s, min) && below_max(*s, max))
                .skip(offset as usize)
                .take(if count < 0 { usize::MAX } else { count as usize })
                .collect();
            return Ok(with_scores(&items, ws));
        }
        let (Some(s), Some(e)) = (p_i64(&a[2]), p_i64(&a[3])) else { return Err(err(NOT_INT)) };
        let Some(z) = self.zset(&a[1], false)? else { return Ok(Reply::Array(vec![])) };
        let mut sorted = zsorted(z);
        if rev {
            sorted.reverse();
        }
        Ok(match range(s, e, sorted.len()) {
            None => Reply::Array(vec![]),
            Some((s, e)) => with_scores(&sorted[s..=e], ws),
        })
    }
}

// ------------------------------------------------------------------------------------
// Replies as a client sees them (RESP2), with order-insensitive normalisation.

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum W {
    Simple(String),
    Err(String),
    Int(i64),
    Bulk(B),
    Nil,
    NilArr,
    Arr(Vec<W>),
}

fn parse_w(buf: &[u8], pos: &mut usize) -> Option<W> {
    let start = *pos;
    let end = start + buf.get(start..)?.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[start + 1..end];
    *pos = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    Some(match *buf.get(start)? {
        b'+' => W::Simple(text()),
        b'-' => W::Err(text()),
        b':' => W::Int(text().parse().ok()?),
        b'$' => {
            let n: i64 = text().parse().ok()?;
            if n < 0 {
                return Some(W::Nil);
            }
            let b = buf.get(*pos..*pos + n as usize)?.to_vec();
            *pos += n as usize + 2;
            W::Bulk(b)
        }
        b'*' => {
            let n: i64 = text().parse().ok()?;
            if n < 0 {
                return Some(W::NilArr);
            }
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(parse_w(buf, pos)?);
            }
            W::Arr(items)
        }
        _ => return None,
    })
}

fn wire(r: &Reply) -> W {
    let bytes = to_vec(r, Protocol::Resp2);
    let mut pos = 0;
    let w = parse_w(&bytes, &mut pos).expect("engine reply encodes to valid RESP2");
    assert_eq!(pos, bytes.len());
    w
}

/// Sorts the parts of a reply whose order Redis leaves unspecified.
fn normalize(cmd: &[B], w: W) -> W {
    let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
    match (name.as_str(), w) {
        ("SMEMBERS" | "SINTER" | "SUNION" | "SDIFF" | "HKEYS" | "HVALS", W::Arr(mut items)) => {
            items.sort();
            W::Arr(items)
        }
        ("HGETALL", W::Arr(items)) => {
            let mut pairs: Vec<Vec<W>> = items.chunks(2).map(|c| c.to_vec()).collect();
            pairs.sort();
            W::Arr(pairs.into_iter().flatten().collect())
        }
        (_, w) => w,
    }
}

// ------------------------------------------------------------------------------------
// State comparison.

fn engine_state(eng: &Engine, now: u64) -> BTreeMap<B, ME> {
    let mut out = BTreeMap::new();
    for (k, e) in eng.dbs()[0].iter() {
        if e.expire_at != 0 && e.expire_at <= now {
            continue;
        }
        let v = match &e.value {
            Value::Int(n) => MV::Str(n.to_string().into_bytes()),
            Value::Str(s) => MV::Str(s.to_vec()),
            Value::List(l) => MV::List(l.items().iter().map(|x| x.to_vec()).collect()),
            Value::Hash(h) => MV::Hash(h.map().iter().map(|(f, v)| (f.to_vec(), v.to_vec())).collect()),
            Value::Set(s) => MV::Set(s.members().iter().map(|m| m.to_vec()).collect()),
            Value::ZSet(z) => MV::ZSet(z.iter().map(|(m, s)| (m.to_vec(), s)).collect()),
        };
        out.insert(k.to_vec(), ME { v, exp: e.expire_at });
    }
    out
}

fn show(args: &[B]) -> String {
    args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ")
}

// ------------------------------------------------------------------------------------
// A real redis-server, to check the model.

struct Redis {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Redis {
    fn connect(port: u16) -> Redis {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
        Redis { sock, buf: Vec::new() }
    }
    fn call(&mut self, args: &[B]) -> W {
        let mut out = Vec::new();
        recached_engine::resp::encode_command(args, &mut out);
        self.sock.write_all(&out).expect("write");
        loop {
            let mut pos = 0;
            if let Some(w) = parse_w(&self.buf, &mut pos) {
                self.buf.drain(..pos);
                return w;
            }
            let mut chunk = [0u8; 65536];
            let n = self.sock.read(&mut chunk).expect("read");
            assert!(n > 0, "redis closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

impl Redis {
    /// The keyspace as the model holds it (deadlines only as present or not).
    fn state(&mut self) -> BTreeMap<B, (MV, bool)> {
        let mut out = BTreeMap::new();
        let W::Arr(keys) = self.call(&[b"KEYS".to_vec(), b"*".to_vec()]) else { panic!("KEYS") };
        for k in keys {
            let W::Bulk(k) = k else { panic!("key") };
            let bulks = |w: W| match w {
                W::Arr(items) => items.into_iter().map(|i| if let W::Bulk(b) = i { b } else { panic!("item") }).collect::<Vec<B>>(),
                other => panic!("{:?}", other),
            };
            let v = match self.call(&[b"TYPE".to_vec(), k.clone()]) {
                W::Simple(t) if t == "string" => match self.call(&[b"GET".to_vec(), k.clone()]) {
                    W::Bulk(b) => MV::Str(b),
                    other => panic!("{:?}", other),
                },
                W::Simple(t) if t == "list" => MV::List(bulks(self.call(&[b"LRANGE".to_vec(), k.clone(), b"0".to_vec(), b"-1".to_vec()])).into()),
                W::Simple(t) if t == "hash" => {
                    let items = bulks(self.call(&[b"HGETALL".to_vec(), k.clone()]));
                    MV::Hash(items.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect())
                }
                W::Simple(t) if t == "set" => MV::Set(bulks(self.call(&[b"SMEMBERS".to_vec(), k.clone()])).into_iter().collect()),
                W::Simple(t) if t == "zset" => {
                    let items = bulks(self.call(&[b"ZRANGE".to_vec(), k.clone(), b"0".to_vec(), b"-1".to_vec(), b"WITHSCORES".to_vec()]));
                    MV::ZSet(items.chunks(2).map(|c| (c[0].clone(), p_f64(&c[1]).expect("score"))).collect())
                }
                other => panic!("TYPE {:?}", other),
            };
            let volatile = !matches!(self.call(&[b"PTTL".to_vec(), k.clone()]), W::Int(-1));
            out.insert(k, (v, volatile));
        }
        out
    }
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

// ------------------------------------------------------------------------------------
// The runs.

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `seqs` sequences of `steps` commands from `seed`; panics with the history on the
/// first difference.
fn run_seed(seed: u64, seqs: u64, steps: u64, mut redis: Option<&mut Redis>) {
    let gens: Vec<_> = generators().into_iter().filter(|(name, _, _)| match redis {
            // Against a real clock, replies that show milliseconds cannot match.
            Some(_) => !matches!(*name, "pttl" | "expiretime" | "pexpiretime"),
            None => recached_engine::lookup(name.as_bytes()).is_some(),
        }).collect();
    assert!(!gens.is_empty(), "the engine has none of the modelled commands");
    println!("seed {}: {} of {} modelled commands in play", seed, gens.len(), generators().len());
    let total: u32 = gens.iter().map(|g| g.1).sum();
    let mut g = Gen { rng: Rng(seed), real_time: redis.is_some() };
    for seq in 0..seqs {
        let mut eng = Engine::default();
        let mut sess = Session::new(1);
        let mut model = Model { now: 1_700_000_000_000 + g.rng.range(0, 999_999) as u64, ..Default::default() };
        if let Some(r) = redis.as_deref_mut() {
            r.call(&[b"FLUSHALL".to_vec()]);
        }
        let mut history: Vec<String> = Vec::new();
        for _ in 0..steps {
            if redis.is_some() {
                model.now = wall_ms();
            } else if g.rng.chance(10) {
                model.now += g.rng.range(0, 3000) as u64;
            }
            let mut pick = g.rng.below(total as usize) as u32;
            let gen = gens.iter().find(|(_, w, _)| {
                if pick < *w {
                    true
                } else {
                    pick -= *w;
                    false
                }
            });
            let gen = gen.map(|x| x.2).unwrap_or(gens[0].2);
            let args = gen(&mut g, model.now);
            let argv: Vec<bytes::Bytes> = args.iter().map(|a| bytes::Bytes::copy_from_slice(a)).collect();
            let expect = normalize(&args, wire(&model.exec(&args)));
            history.push(format!("@{} {}", model.now, show(&args)));
            let context = || format!("seed {} sequence {}:\n  {}", seed, seq, history[history.len().saturating_sub(25)..].join("\n  "));
            if let Some(r) = redis.as_deref_mut() {
                let got = normalize(&args, r.call(&args));
                assert_eq!(expect, got, "MODEL differs from redis-server\n{}", context());
                model.purge();
                let state = r.state();
                let mine: BTreeMap<B, (MV, bool)> = model.keys.iter().map(|(k, e)| (k.clone(), (e.v.clone(), e.exp != 0))).collect();
                assert_eq!(mine, state, "MODEL state differs from redis-server\n{}", context());
                continue;
            }
            let got = normalize(&args, wire(&eng.execute(&mut sess, &argv, model.now, &mut recached_engine::NoHost).into_reply()));
            assert_eq!(got, expect, "engine (left) differs from the model (right)\n{}", context());
            let state = engine_state(&eng, model.now);
            model.purge();
            assert_eq!(state, model.keys, "engine state (left) differs from the model (right)\n{}", context());
            eng.take_changes();
        }
    }
}

#[test]
fn engine_matches_model() {
    let seqs = env_num("MODEL_SEQS", 2000);
    let steps = env_num("MODEL_STEPS", 100);
    let seeds = match std::env::var("MODEL_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => vec![0x5EED_0001, wall_ms() ^ (std::process::id() as u64) << 32],
    };
    for seed in seeds {
        println!("model test seed {} (replay with MODEL_SEED={})", seed, seed);
        run_seed(seed, seqs / 2, steps, None);
    }
}

/// Checks the model itself against a real redis-server: `MODEL_REDIS=7104`.
#[test]
fn model_matches_redis() {
    let Some(port) = std::env::var("MODEL_REDIS").ok().and_then(|p| p.parse().ok()) else { return };
    let mut redis = Redis::connect(port);
    let seed = std::env::var("MODEL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(wall_ms);
    println!("redis check seed {}", seed);
    run_seed(seed, env_num("MODEL_SEQS", 300), env_num("MODEL_STEPS", 150), Some(&mut redis));
}
