//! Sorted-set commands: ZADD and friends, the range family (by rank, score and lex, with
//! REV, LIMIT, WITHSCORES and the STORE form), pops (blocking too), the set algebra
//! (ZUNION, ZINTER, ZDIFF and their STORE forms, ZINTERCARD) and ZSCAN.
//!
//! Canonical changes: every score that changes is emitted as `ZADD k <score> m` with the
//! resulting absolute score (ZINCRBY, ZADD INCR included), every removal (ZREM, pops,
//! ZREMRANGEBY*) as `ZREM k m…`, and the STORE forms as a whole-value restore of the
//! destination (or `DEL dst` when the result is empty).
//!
//! Numbers follow Redis's C parsing: scores and weights as `getDoubleFromObject` (strtod,
//! hex included, no leading space, overflow refused), range bounds as `zslParseRange`
//! (strtod, leading space and the empty string accepted), timeouts in seconds rounded up
//! to the millisecond.

use std::collections::HashMap;

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::set::{parse_random_count, parse_scan_opts, random_positions, scan_reply};
use crate::command::{numkeys_at, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::glob;
use crate::reply::{errors, Reply};
use crate::util::{fmt_double, parse_cursor, parse_i64, resolve_range, scan_step};
use crate::value::{Kind, Set, Value};
use crate::zset::SortedSet;

const G: &str = "sorted-set";

/// The sorted-set commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("zadd", -4, WRITE | DENYOOM | FAST, G, Handler::Engine(zadd))
        .keys(1, 1, 1)
        .doc("Add one or more members to a sorted set, or update its score if it already exists", "1.2.0"),
    CommandSpec::new("zrem", -3, WRITE | FAST, G, Handler::Engine(zrem))
        .keys(1, 1, 1)
        .doc("Remove one or more members from a sorted set", "1.2.0"),
    CommandSpec::new("zscore", 3, READONLY | FAST, G, Handler::Engine(zscore))
        .keys(1, 1, 1)
        .doc("Get the score associated with the given member in a sorted set", "1.2.0"),
    CommandSpec::new("zmscore", -3, READONLY | FAST, G, Handler::Engine(zmscore))
        .keys(1, 1, 1)
        .doc("Get the score associated with the given members in a sorted set", "6.2.0"),
    CommandSpec::new("zincrby", 4, WRITE | DENYOOM | FAST, G, Handler::Engine(zincrby))
        .keys(1, 1, 1)
        .doc("Increment the score of a member in a sorted set", "1.2.0"),
    CommandSpec::new("zcard", 2, READONLY | FAST, G, Handler::Engine(zcard))
        .keys(1, 1, 1)
        .doc("Get the number of members in a sorted set", "1.2.0"),
    CommandSpec::new("zcount", 4, READONLY | FAST, G, Handler::Engine(zcount))
        .keys(1, 1, 1)
        .doc("Count the members in a sorted set with scores within the given values", "2.0.0"),
    CommandSpec::new("zlexcount", 4, READONLY | FAST, G, Handler::Engine(zlexcount))
        .keys(1, 1, 1)
        .doc("Count the number of members in a sorted set between a given lexicographical range", "2.8.9"),
    CommandSpec::new("zrank", 3, READONLY | FAST, G, Handler::Engine(zrank))
        .keys(1, 1, 1)
        .doc("Determine the index of a member in a sorted set", "2.0.0"),
    CommandSpec::new("zrevrank", 3, READONLY | FAST, G, Handler::Engine(zrevrank))
        .keys(1, 1, 1)
        .doc("Determine the index of a member in a sorted set, with scores ordered from high to low", "2.0.0"),
    CommandSpec::new("zrange", -4, READONLY, G, Handler::Engine(zrange))
        .keys(1, 1, 1)
        .doc("Return a range of members in a sorted set", "1.2.0"),
    CommandSpec::new("zrangestore", -5, WRITE | DENYOOM, G, Handler::Engine(zrangestore))
        .keys(1, 2, 1)
        .doc("Store a range of members from sorted set into another key", "6.2.0"),
    CommandSpec::new("zrangebyscore", -4, READONLY, G, Handler::Engine(zrangebyscore))
        .keys(1, 1, 1)
        .doc("Return a range of members in a sorted set, by score", "1.0.5"),
    CommandSpec::new("zrevrangebyscore", -4, READONLY, G, Handler::Engine(zrevrangebyscore))
        .keys(1, 1, 1)
        .doc("Return a range of members in a sorted set, by score, with scores ordered from high to low", "2.2.0"),
    CommandSpec::new("zrangebylex", -4, READONLY, G, Handler::Engine(zrangebylex))
        .keys(1, 1, 1)
        .doc("Return a range of members in a sorted set, by lexicographical range", "2.8.9"),
    CommandSpec::new("zrevrangebylex", -4, READONLY, G, Handler::Engine(zrevrangebylex))
        .keys(1, 1, 1)
        .doc(
            "Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings.",
            "2.8.9",
        ),
    CommandSpec::new("zrevrange", -4, READONLY, G, Handler::Engine(zrevrange))
        .keys(1, 1, 1)
        .doc("Return a range of members in a sorted set, by index, with scores ordered from high to low", "1.2.0"),
    CommandSpec::new("zpopmin", -2, WRITE | FAST, G, Handler::Engine(zpopmin))
        .keys(1, 1, 1)
        .doc("Remove and return members with the lowest scores in a sorted set", "5.0.0"),
    CommandSpec::new("zpopmax", -2, WRITE | FAST, G, Handler::Engine(zpopmax))
        .keys(1, 1, 1)
        .doc("Remove and return members with the highest scores in a sorted set", "5.0.0"),
    CommandSpec::new("bzpopmin", -3, WRITE | NOSCRIPT | BLOCKING | FAST, G, Handler::Engine(bzpopmin))
        .keys(1, -2, 1)
        .doc(
            "Remove and return the member with the lowest score from one or more sorted sets, or block until one is available",
            "5.0.0",
        ),
    CommandSpec::new("bzpopmax", -3, WRITE | NOSCRIPT | BLOCKING | FAST, G, Handler::Engine(bzpopmax))
        .keys(1, -2, 1)
        .doc(
            "Remove and return the member with the highest score from one or more sorted sets, or block until one is available",
            "5.0.0",
        ),
    CommandSpec::new("bzmpop", -5, WRITE | BLOCKING, G, Handler::Engine(bzmpop))
        .keys_with(keys_at_2)
        .doc("Remove and return members with scores in a sorted set or block until one is available", "7.0.0"),
    CommandSpec::new("zmpop", -4, WRITE, G, Handler::Engine(zmpop))
        .keys_with(keys_at_1)
        .doc("Remove and return members with scores in a sorted set", "7.0.0"),
    CommandSpec::new("zrandmember", -2, READONLY, G, Handler::Engine(zrandmember))
        .keys(1, 1, 1)
        .doc("Get one or multiple random elements from a sorted set", "6.2.0"),
    CommandSpec::new("zremrangebyscore", 4, WRITE, G, Handler::Engine(zremrangebyscore))
        .keys(1, 1, 1)
        .doc("Remove all members in a sorted set within the given scores", "1.2.0"),
    CommandSpec::new("zremrangebyrank", 4, WRITE, G, Handler::Engine(zremrangebyrank))
        .keys(1, 1, 1)
        .doc("Remove all members in a sorted set within the given indexes", "2.0.0"),
    CommandSpec::new("zremrangebylex", 4, WRITE, G, Handler::Engine(zremrangebylex))
        .keys(1, 1, 1)
        .doc("Remove all members in a sorted set between the given lexicographical range", "2.8.9"),
    CommandSpec::new("zunion", -3, READONLY, G, Handler::Engine(zunion))
        .keys_with(keys_at_1)
        .doc("Add multiple sorted sets", "6.2.0"),
    CommandSpec::new("zinter", -3, READONLY, G, Handler::Engine(zinter))
        .keys_with(keys_at_1)
        .doc("Intersect multiple sorted sets", "6.2.0"),
    CommandSpec::new("zdiff", -3, READONLY, G, Handler::Engine(zdiff))
        .keys_with(keys_at_1)
        .doc("Subtract multiple sorted sets", "6.2.0"),
    CommandSpec::new("zunionstore", -4, WRITE | DENYOOM, G, Handler::Engine(zunionstore))
        .keys(1, 1, 1)
        .keys_with(store_keys)
        .doc("Add multiple sorted sets and store the resulting sorted set in a new key", "2.0.0"),
    CommandSpec::new("zinterstore", -4, WRITE | DENYOOM, G, Handler::Engine(zinterstore))
        .keys(1, 1, 1)
        .keys_with(store_keys)
        .doc("Intersect multiple sorted sets and store the resulting sorted set in a new key", "2.0.0"),
    CommandSpec::new("zdiffstore", -4, WRITE | DENYOOM, G, Handler::Engine(zdiffstore))
        .keys(1, 1, 1)
        .keys_with(store_keys)
        .doc("Subtract multiple sorted sets and store the resulting sorted set in a new key", "6.2.0"),
    CommandSpec::new("zintercard", -3, READONLY, G, Handler::Engine(zintercard))
        .keys_with(keys_at_1)
        .doc("Intersect multiple sorted sets and return the cardinality of the result", "7.0.0"),
    CommandSpec::new("zscan", -3, READONLY, G, Handler::Engine(zscan))
        .keys(1, 1, 1)
        .doc("Incrementally iterate sorted sets elements and associated scores", "2.8.0"),
];

fn keys_at_1(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 1)
}

fn keys_at_2(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 2)
}

fn store_keys(args: &[Bytes]) -> Vec<usize> {
    let mut keys = vec![1];
    keys.extend(numkeys_at(args, 2));
    keys
}

// ---- numbers, with C's strtod rules ----

fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strtod` required to consume all of `s`: `Some((value, erange))`. Accepts leading
/// white space, a sign, `inf`/`infinity`/`nan` in any case, decimal and hex (`0x1.8p3`)
/// forms. `erange` is set when the value overflowed to infinity or underflowed to zero.
/// The empty string converts nothing and ends at its end, which Redis reads as 0.
fn strtod(s: &[u8]) -> Option<(f64, bool)> {
    if s.is_empty() {
        return Some((0.0, false));
    }
    let start = s.iter().position(|&c| !is_c_space(c))?;
    let t = &s[start..];
    let (neg, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let lower = body.to_ascii_lowercase();
    let sign = if neg { -1.0 } else { 1.0 };
    if lower == b"inf" || lower == b"infinity" {
        return Some((sign * f64::INFINITY, false));
    }
    if lower == b"nan" || (lower.starts_with(b"nan(") && lower.ends_with(b")")) {
        return Some((f64::NAN, false));
    }
    if lower.starts_with(b"0x") {
        return parse_hex(&lower[2..]).map(|(v, e)| (sign * v, e));
    }
    // Decimal: digits [. digits] [e [sign] digits], at least one mantissa digit.
    let mut i = 0;
    let mut digits = 0;
    let mut nonzero = false;
    while i < body.len() && body[i].is_ascii_digit() {
        nonzero |= body[i] != b'0';
        i += 1;
        digits += 1;
    }
    if i < body.len() && body[i] == b'.' {
        i += 1;
        while i < body.len() && body[i].is_ascii_digit() {
            nonzero |= body[i] != b'0';
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < body.len() && (body[i] == b'e' || body[i] == b'E') {
        let mut j = i + 1;
        if j < body.len() && (body[j] == b'+' || body[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        while j < body.len() && body[j].is_ascii_digit() {
            j += 1;
        }
        if j == exp_start {
            return None; // strtod stops before the `e`: not all consumed
        }
        i = j;
    }
    if i != body.len() {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let v: f64 = text.parse().ok()?;
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    Some((sign * v, erange))
}

/// Hex float digits after `0x`: `h+[.h*][p[sign]d+]` or `.h+[p…]`.
fn parse_hex(s: &[u8]) -> Option<(f64, bool)> {
    let hex = |c: u8| (c as char).to_digit(16);
    let mut i = 0;
    let mut mant: u64 = 0;
    let mut exp: i64 = 0;
    let mut digits = 0;
    let mut nonzero = false;
    let mut push = |d: u32, frac: bool, mant: &mut u64, exp: &mut i64| {
        nonzero |= d != 0;
        if *mant >> 59 == 0 {
            *mant = (*mant << 4) | d as u64;
            if frac {
                *exp -= 4;
            }
        } else if !frac {
            *exp += 4; // digits beyond 64 bits only scale the value
        }
    };
    while i < s.len() {
        match hex(s[i]) {
            Some(d) => push(d, false, &mut mant, &mut exp),
            None => break,
        }
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() {
            match hex(s[i]) {
                Some(d) => push(d, true, &mut mant, &mut exp),
                None => break,
            }
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() && s[i] == b'p' {
        let mut j = i + 1;
        let neg = j < s.len() && s[j] == b'-';
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        let exp_start = j;
        let mut e: i64 = 0;
        while j < s.len() && s[j].is_ascii_digit() {
            e = (e * 10 + (s[j] - b'0') as i64).min(100_000);
            j += 1;
        }
        if j == exp_start {
            return None;
        }
        exp += if neg { -e } else { e };
        i = j;
    }
    if i != s.len() {
        return None;
    }
    // Scale in two steps so an intermediate power of two does not overflow.
    let e = exp.clamp(-3000, 3000) as i32;
    let v = mant as f64 * 2f64.powi(e / 2) * 2f64.powi(e - e / 2);
    let erange = v.is_infinite() || (v == 0.0 && nonzero);
    Some((v, erange))
}

/// A score, increment or weight, as Redis's `getDoubleFromObject`: the whole string, no
/// leading space, no overflow to infinity or underflow to zero, not NaN.
pub(crate) fn parse_score(s: &[u8]) -> Option<f64> {
    if s.is_empty() || is_c_space(s[0]) {
        return None;
    }
    let (v, erange) = strtod(s)?;
    if v.is_nan() || (erange && (v.is_infinite() || v == 0.0)) {
        return None;
    }
    Some(v)
}

/// A blocking timeout in seconds, as Redis 7.0's `getTimeoutFromObjectOrReply`: the
/// absolute deadline in ms, `None` for 0 (block forever). Milliseconds are rounded up; a
/// value whose milliseconds do not fit a signed 64-bit integer reads as negative, as the
/// C conversion does.
pub(crate) fn parse_timeout(now_ms: u64, s: &[u8]) -> Result<Option<u64>, Reply> {
    let secs = match (s.first(), strtod(s)) {
        (Some(&c), Some((v, _))) if !is_c_space(c) && !v.is_nan() => v,
        _ => return Err(Reply::err(errors::TIMEOUT_NOT_FLOAT)),
    };
    let ms = (secs * 1000.0).ceil();
    // NaN cannot occur (inputs are not NaN); infinity and >= 2^63 are out of range.
    if ms >= i64::MAX as f64 || ms < 0.0 {
        return Err(Reply::err(errors::TIMEOUT_NEGATIVE));
    }
    let ms = ms as u64;
    Ok(if ms == 0 { None } else { Some(now_ms.saturating_add(ms)) })
}

// ---- ranges ----

/// A score interval as `zslParseRange` reads it (`(` makes an end exclusive).
#[derive(Debug, Clone, Copy)]
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

fn parse_bound(s: &[u8]) -> Option<(f64, bool)> {
    let (ex, text) = match s.first() {
        Some(b'(') => (true, &s[1..]),
        _ => (false, s),
    };
    let (v, _) = strtod(text)?;
    (!v.is_nan()).then_some((v, ex))
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, Reply> {
    match (parse_bound(min), parse_bound(max)) {
        (Some((min, minex)), Some((max, maxex))) => Ok(ScoreRange { min, minex, max, maxex }),
        _ => Err(Reply::err(errors::MIN_MAX_FLOAT)),
    }
}

impl ScoreRange {
    /// The ranks `lo..hi` of the members inside the interval (empty when `hi <= lo`).
    fn ranks(&self, z: &SortedSet) -> (usize, usize) {
        (z.score_rank(self.min, self.minex), z.score_rank(self.max, !self.maxex))
    }
}

/// One end of a lex interval.
#[derive(Debug, Clone, Copy)]
enum Lex<'a> {
    Min,
    Max,
    Incl(&'a [u8]),
    Excl(&'a [u8]),
}

fn parse_lex_item(s: &[u8]) -> Option<Lex<'_>> {
    match s.first() {
        Some(b'+') if s.len() == 1 => Some(Lex::Max),
        Some(b'-') if s.len() == 1 => Some(Lex::Min),
        Some(b'(') => Some(Lex::Excl(&s[1..])),
        Some(b'[') => Some(Lex::Incl(&s[1..])),
        _ => None,
    }
}

fn parse_lex_range<'a>(min: &'a [u8], max: &'a [u8]) -> Result<(Lex<'a>, Lex<'a>), Reply> {
    match (parse_lex_item(min), parse_lex_item(max)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(Reply::err(errors::MIN_MAX_LEX)),
    }
}

/// The ranks `lo..hi` of the members inside a lex interval.
fn lex_ranks(z: &SortedSet, min: Lex, max: Lex) -> (usize, usize) {
    let lo = match min {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(b) => z.lex_rank(b, false),
        Lex::Excl(b) => z.lex_rank(b, true),
    };
    let hi = match max {
        Lex::Min => 0,
        Lex::Max => z.len(),
        Lex::Incl(b) => z.lex_rank(b, true),
        Lex::Excl(b) => z.lex_rank(b, false),
    };
    (lo, hi)
}

/// Applies LIMIT to the ranks `lo..hi`: the window to return, walked backwards when `rev`.
/// A negative offset returns nothing and a negative count means no limit, as Redis 7.0.
fn limit_window(lo: usize, hi: usize, offset: i64, count: i64, rev: bool) -> Option<(usize, usize)> {
    if hi <= lo || offset < 0 {
        return None;
    }
    let n = (hi - lo) as u64;
    let off = offset as u64;
    if off >= n {
        return None;
    }
    let take = if count < 0 { n - off } else { (count as u64).min(n - off) };
    let (off, take) = (off as usize, take as usize);
    if take == 0 {
        return None;
    }
    Some(if rev { (hi - off - take, hi - off) } else { (lo + off, lo + off + take) })
}

/// Copies the members with ranks `start..end`, backwards when `rev`.
fn collect(z: &SortedSet, start: usize, end: usize, rev: bool) -> Vec<(Bytes, f64)> {
    let it = z.range(start, end).map(|(m, s)| (Bytes::copy_from_slice(m), s));
    if rev {
        it.rev().collect()
    } else {
        it.collect()
    }
}

// ---- replies ----

/// A score as Redis replies it: a RESP3 double, or a bulk string in `%.17g` for RESP2.
fn score_reply(resp3: bool, s: f64) -> Reply {
    if resp3 {
        Reply::Double(s)
    } else {
        Reply::Bulk(Bytes::from(fmt_double(s)))
    }
}

/// Members, with scores as a flat array in RESP2 and `[member, score]` pairs in RESP3.
fn scored(resp3: bool, items: Vec<(Bytes, f64)>, withscores: bool) -> Reply {
    scored_as(resp3, items, withscores, resp3)
}

/// Like [`scored`], choosing whether pairs nest (ZPOPMIN without a count stays flat).
fn scored_as(resp3: bool, items: Vec<(Bytes, f64)>, withscores: bool, nest: bool) -> Reply {
    if !withscores {
        return Reply::Array(items.into_iter().map(|(m, _)| Reply::Bulk(m)).collect());
    }
    if nest {
        Reply::Array(items.into_iter().map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), score_reply(resp3, s)])).collect())
    } else {
        let mut out = Vec::with_capacity(items.len() * 2);
        for (m, s) in items {
            out.push(Reply::Bulk(m));
            out.push(score_reply(resp3, s));
        }
        Reply::Array(out)
    }
}

/// `[[member, score], …]` in both protocols (ZMPOP, BZMPOP).
fn nested(resp3: bool, items: Vec<(Bytes, f64)>) -> Reply {
    Reply::Array(items.into_iter().map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), score_reply(resp3, s)])).collect())
}

// ---- writes ----

/// Emits `ZREM key m…` for removed members.
fn emit_zrem(ctx: &mut Ctx, key: &[u8], members: &[Bytes]) {
    if members.is_empty() {
        return;
    }
    let mut change = Vec::with_capacity(members.len() + 2);
    change.push(Bytes::from_static(b"ZREM"));
    change.push(Bytes::copy_from_slice(key));
    change.extend(members.iter().cloned());
    let db = ctx.db_index();
    ctx.emit_owned(db, change);
}

/// Stores `z` at `dst` (clearing its TTL) and emits its restore, or deletes `dst` when
/// `z` is empty. Replies with the stored cardinality.
fn store_zset(ctx: &mut Ctx, dst: &[u8], z: SortedSet, event: &'static str) -> Reply {
    if z.is_empty() {
        if ctx.delete(dst) {
            ctx.emit(&[b"DEL", dst]);
            ctx.notify(EventClass::Generic, "del", dst);
        }
        return Reply::Int(0);
    }
    let n = z.len() as i64;
    ctx.store(dst, Value::ZSet(Box::new(z)), 0);
    let db = ctx.db_index();
    ctx.emit_restore(db, dst);
    ctx.notify(EventClass::ZSet, event, dst);
    Reply::Int(n)
}

#[derive(Debug, Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member …]`
fn zadd(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let mut f = AddFlags::default();
    let mut i = 2;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"NX" => f.nx = true,
            b"XX" => f.xx = true,
            b"GT" => f.gt = true,
            b"LT" => f.lt = true,
            b"CH" => f.ch = true,
            b"INCR" => f.incr = true,
            _ => break,
        }
        i += 1;
    }
    let rest = &args[i..];
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Reply::err(errors::SYNTAX);
    }
    if f.nx && f.xx {
        return Reply::err("ERR XX and NX options at the same time are not compatible");
    }
    if ((f.gt || f.lt) && f.nx) || (f.gt && f.lt) {
        return Reply::err("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if f.incr && rest.len() > 2 {
        return Reply::err("ERR INCR option supports a single increment-element pair");
    }
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks(2) {
        match parse_score(&p[0]) {
            Some(s) => pairs.push((s, &p[1][..])),
            None => return Reply::err(errors::NOT_FLOAT),
        }
    }
    add_members(ctx, &args[1], &pairs, f)
}

/// The body of ZADD and ZINCRBY once the arguments are parsed.
fn add_members(ctx: &mut Ctx, key: &[u8], pairs: &[(f64, &[u8])], f: AddFlags) -> Reply {
    let exists = match ctx.zset(key) {
        Ok(z) => z.is_some(),
        Err(e) => return e,
    };
    if !exists && f.xx {
        return if f.incr { Reply::Nil } else { Reply::Int(0) };
    }
    let z = match ctx.zset_or_new(key) {
        Ok(z) => z,
        Err(e) => return e,
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    let mut changed: Vec<(f64, &[u8])> = Vec::new();
    let mut nan = false;
    for &(score, member) in pairs {
        match z.score(member) {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let new = if f.incr { cur + score } else { score };
                if new.is_nan() {
                    nan = true;
                    break;
                }
                if (f.gt && new <= cur) || (f.lt && new >= cur) {
                    continue;
                }
                processed += 1;
                last = new;
                if new != cur {
                    z.insert(member, new);
                    updated += 1;
                    changed.push((new, member));
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                z.insert(member, score);
                added += 1;
                processed += 1;
                last = score;
                changed.push((score, member));
            }
        }
    }
    if !changed.is_empty() {
        let scores: Vec<String> = changed.iter().map(|(s, _)| fmt_double(*s)).collect();
        let mut change: Vec<&[u8]> = Vec::with_capacity(changed.len() * 2 + 2);
        change.push(b"ZADD");
        change.push(key);
        for (s, (_, m)) in scores.iter().zip(&changed) {
            change.push(s.as_bytes());
            change.push(m);
        }
        ctx.emit(&change);
        ctx.notify(EventClass::ZSet, if f.incr { "zincr" } else { "zadd" }, key);
    }
    if nan {
        return Reply::err("ERR resulting score is not a number (NaN)");
    }
    if f.incr {
        return if processed > 0 { score_reply(ctx.resp3(), last) } else { Reply::Nil };
    }
    Reply::Int(if f.ch { added + updated } else { added })
}

/// `ZINCRBY key increment member`
fn zincrby(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(incr) = parse_score(&args[2]) else { return Reply::err(errors::NOT_FLOAT) };
    add_members(ctx, &args[1], &[(incr, &args[3])], AddFlags { incr: true, ..AddFlags::default() })
}

/// `ZREM key member [member …]`
fn zrem(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let z = match ctx.zset_mut(key) {
        Ok(Some(z)) => z,
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    let removed: Vec<Bytes> = args[2..].iter().filter(|m| z.remove(m)).cloned().collect();
    if removed.is_empty() {
        return Reply::Int(0);
    }
    emit_zrem(ctx, key, &removed);
    ctx.notify(EventClass::ZSet, "zrem", key);
    Reply::Int(removed.len() as i64)
}

// ---- reads ----

/// `ZSCORE key member`
fn zscore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let resp3 = ctx.resp3();
    match ctx.zset(&args[1]) {
        Ok(z) => match z.and_then(|z| z.score(&args[2])) {
            Some(s) => score_reply(resp3, s),
            None => Reply::Nil,
        },
        Err(e) => e,
    }
}

/// `ZMSCORE key member [member …]`
fn zmscore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let resp3 = ctx.resp3();
    match ctx.zset(&args[1]) {
        Ok(z) => Reply::Array(
            args[2..]
                .iter()
                .map(|m| match z.and_then(|z| z.score(m)) {
                    Some(s) => score_reply(resp3, s),
                    None => Reply::Nil,
                })
                .collect(),
        ),
        Err(e) => e,
    }
}

/// `ZCARD key`
fn zcard(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.zset(&args[1]) {
        Ok(z) => Reply::Int(z.map_or(0, |z| z.len() as i64)),
        Err(e) => e,
    }
}

/// `ZCOUNT key min max`
fn zcount(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let range = match parse_score_range(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match ctx.zset(&args[1]) {
        Ok(Some(z)) => {
            let (lo, hi) = range.ranks(z);
            Reply::Int(hi.saturating_sub(lo) as i64)
        }
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

/// `ZLEXCOUNT key min max`
fn zlexcount(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (min, max) = match parse_lex_range(&args[2], &args[3]) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match ctx.zset(&args[1]) {
        Ok(Some(z)) => {
            let (lo, hi) = lex_ranks(z, min, max);
            Reply::Int(hi.saturating_sub(lo) as i64)
        }
        Ok(None) => Reply::Int(0),
        Err(e) => e,
    }
}

fn rank_of(ctx: &mut Ctx, args: &[Bytes], rev: bool) -> Reply {
    match ctx.zset(&args[1]) {
        Ok(Some(z)) => match z.rank(&args[2]) {
            Some(r) => Reply::Int(if rev { z.len() - 1 - r } else { r } as i64),
            None => Reply::Nil,
        },
        Ok(None) => Reply::Nil,
        Err(e) => e,
    }
}

/// `ZRANK key member`
fn zrank(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    rank_of(ctx, args, false)
}

/// `ZREVRANK key member`
fn zrevrank(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    rank_of(ctx, args, true)
}

// ---- the range family ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// Redis's `zrangeGenericCommand`: the source key at `args[src]`, its two bounds after it,
/// options after those. `dst` makes it ZRANGESTORE. `kind`/`rev` fixed by the legacy
/// commands, `Auto`/`None` when options choose.
fn zrange_generic(ctx: &mut Ctx, args: &[Bytes], src: usize, dst: Option<&Bytes>, mut kind: RangeKind, rev: Option<bool>) -> Reply {
    let mut withscores = false;
    let (mut offset, mut count) = (0i64, -1i64);
    let mut has_limit = false;
    let mut reverse = rev;
    let mut j = src + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let opt = args[j].to_ascii_uppercase();
        match opt.as_slice() {
            b"WITHSCORES" if dst.is_none() => withscores = true,
            b"LIMIT" if left >= 2 => {
                match (parse_i64(&args[j + 1]), parse_i64(&args[j + 2])) {
                    (Some(o), Some(c)) => (offset, count) = (o, c),
                    _ => return Reply::err(errors::NOT_INTEGER),
                }
                has_limit = true;
                j += 2;
            }
            b"REV" if reverse.is_none() => reverse = Some(true),
            b"BYLEX" if kind == RangeKind::Auto => kind = RangeKind::Lex,
            b"BYSCORE" if kind == RangeKind::Auto => kind = RangeKind::Score,
            _ => return Reply::err(errors::SYNTAX),
        }
        j += 1;
    }
    let rev = reverse.unwrap_or(false);
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    if has_limit && kind == RangeKind::Rank {
        return Reply::err("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
    }
    if withscores && kind == RangeKind::Lex {
        return Reply::err("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
    }
    let (mut a, mut b) = (&args[src + 1][..], &args[src + 2][..]);
    if rev && kind != RangeKind::Rank {
        // By score or lex, a reversed range is written max first.
        std::mem::swap(&mut a, &mut b);
    }
    enum Parsed<'a> {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(Lex<'a>, Lex<'a>),
    }
    let parsed = match kind {
        RangeKind::Score => match parse_score_range(a, b) {
            Ok(r) => Parsed::Score(r),
            Err(e) => return e,
        },
        RangeKind::Lex => match parse_lex_range(a, b) {
            Ok((x, y)) => Parsed::Lex(x, y),
            Err(e) => return e,
        },
        _ => match (parse_i64(a), parse_i64(b)) {
            (Some(x), Some(y)) => Parsed::Rank(x, y),
            _ => return Reply::err(errors::NOT_INTEGER),
        },
    };
    let items = match ctx.zset(&args[src]) {
        Err(e) => return e,
        Ok(None) => Vec::new(),
        Ok(Some(z)) => match parsed {
            Parsed::Rank(start, stop) => match resolve_range(start, stop, z.len()) {
                None => Vec::new(),
                Some((s, e)) if rev => collect(z, z.len() - 1 - e, z.len() - s, true),
                Some((s, e)) => collect(z, s, e + 1, false),
            },
            Parsed::Score(r) => {
                let (lo, hi) = r.ranks(z);
                limit_window(lo, hi, offset, count, rev).map_or_else(Vec::new, |(s, e)| collect(z, s, e, rev))
            }
            Parsed::Lex(min, max) => {
                let (lo, hi) = lex_ranks(z, min, max);
                limit_window(lo, hi, offset, count, rev).map_or_else(Vec::new, |(s, e)| collect(z, s, e, rev))
            }
        },
    };
    match dst {
        Some(dst) => {
            let mut z = SortedSet::new();
            for (m, s) in &items {
                z.insert(m, *s);
            }
            store_zset(ctx, dst, z, "zrangestore")
        }
        None => scored(ctx.resp3(), items, withscores),
    }
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]`
fn zrange(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Auto, None)
}

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]`
fn zrangestore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 2, Some(&args[1]), RangeKind::Auto, None)
}

/// `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]`
fn zrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Score, Some(false))
}

/// `ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]`
fn zrevrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Score, Some(true))
}

/// `ZRANGEBYLEX key min max [LIMIT offset count]`
fn zrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Lex, Some(false))
}

/// `ZREVRANGEBYLEX key max min [LIMIT offset count]`
fn zrevrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Lex, Some(true))
}

/// `ZREVRANGE key start stop [WITHSCORES]`
fn zrevrange(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zrange_generic(ctx, args, 1, None, RangeKind::Rank, Some(true))
}

/// `ZREMRANGEBYSCORE key min max`, `ZREMRANGEBYRANK key start stop`,
/// `ZREMRANGEBYLEX key min max`: parse the range, then remove it.
fn zremrange(ctx: &mut Ctx, args: &[Bytes], kind: RangeKind) -> Reply {
    let key = &args[1];
    enum Parsed<'a> {
        Rank(i64, i64),
        Score(ScoreRange),
        Lex(Lex<'a>, Lex<'a>),
    }
    let parsed = match kind {
        RangeKind::Score => match parse_score_range(&args[2], &args[3]) {
            Ok(r) => Parsed::Score(r),
            Err(e) => return e,
        },
        RangeKind::Lex => match parse_lex_range(&args[2], &args[3]) {
            Ok((a, b)) => Parsed::Lex(a, b),
            Err(e) => return e,
        },
        _ => match (parse_i64(&args[2]), parse_i64(&args[3])) {
            (Some(a), Some(b)) => Parsed::Rank(a, b),
            _ => return Reply::err(errors::NOT_INTEGER),
        },
    };
    let z = match ctx.zset_mut(key) {
        Ok(Some(z)) => z,
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    let (lo, hi) = match parsed {
        Parsed::Rank(a, b) => match resolve_range(a, b, z.len()) {
            Some((s, e)) => (s, e + 1),
            None => (0, 0),
        },
        Parsed::Score(r) => r.ranks(z),
        Parsed::Lex(a, b) => lex_ranks(z, a, b),
    };
    if hi <= lo {
        return Reply::Int(0);
    }
    let removed: Vec<Bytes> = z.remove_range(lo, hi).into_iter().map(|(m, _)| Bytes::from(m.into_vec())).collect();
    emit_zrem(ctx, key, &removed);
    let event = match kind {
        RangeKind::Score => "zremrangebyscore",
        RangeKind::Lex => "zremrangebylex",
        _ => "zremrangebyrank",
    };
    ctx.notify(EventClass::ZSet, event, key);
    Reply::Int(removed.len() as i64)
}

/// `ZREMRANGEBYSCORE key min max`
fn zremrangebyscore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zremrange(ctx, args, RangeKind::Score)
}

/// `ZREMRANGEBYRANK key start stop`
fn zremrangebyrank(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zremrange(ctx, args, RangeKind::Rank)
}

/// `ZREMRANGEBYLEX key min max`
fn zremrangebylex(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zremrange(ctx, args, RangeKind::Lex)
}

// ---- pops ----

/// Pops up to `count` members from the zset at `key` (which must exist), emitting
/// `ZREM key m…` and the `zpopmin`/`zpopmax` event.
fn pop(ctx: &mut Ctx, key: &[u8], max: bool, count: u64) -> Vec<(Bytes, f64)> {
    let Ok(Some(z)) = ctx.zset_mut(key) else { return Vec::new() };
    let n = count.min(z.len() as u64) as usize;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let item = if max { z.pop_max() } else { z.pop_min() };
        match item {
            Some((m, s)) => out.push((Bytes::from(m.into_vec()), s)),
            None => break,
        }
    }
    let members: Vec<Bytes> = out.iter().map(|(m, _)| m.clone()).collect();
    emit_zrem(ctx, key, &members);
    if !out.is_empty() {
        ctx.notify(EventClass::ZSet, if max { "zpopmax" } else { "zpopmin" }, key);
    }
    out
}

/// The first of `keys` holding a sorted set; WRONGTYPE if an earlier-or-equal existing
/// key has another type, as Redis checks them in order.
fn first_zset<'k>(ctx: &mut Ctx, keys: &'k [Bytes]) -> Result<Option<&'k Bytes>, Reply> {
    for k in keys {
        if ctx.zset(k)?.is_some() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

fn zpop_command(ctx: &mut Ctx, args: &[Bytes], max: bool) -> Reply {
    if args.len() > 3 {
        return Reply::err(errors::SYNTAX);
    }
    let count = match args.get(2) {
        None => None,
        Some(a) => match parse_i64(a) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Reply::err(errors::POSITIVE),
        },
    };
    let key = &args[1];
    match ctx.zset(key) {
        Ok(Some(_)) => {}
        Ok(None) => return Reply::Array(Vec::new()),
        Err(e) => return e,
    }
    if count == Some(0) {
        return Reply::Array(Vec::new());
    }
    let items = pop(ctx, key, max, count.unwrap_or(1));
    let resp3 = ctx.resp3();
    // RESP3 nests pairs only when a count was given, as Redis 7.
    scored_as(resp3, items, true, resp3 && count.is_some())
}

/// `ZPOPMIN key [count]`
fn zpopmin(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zpop_command(ctx, args, false)
}

/// `ZPOPMAX key [count]`
fn zpopmax(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zpop_command(ctx, args, true)
}

fn bzpop(ctx: &mut Ctx, args: &[Bytes], max: bool) -> Reply {
    let deadline = match parse_timeout(ctx.now_ms, &args[args.len() - 1]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    match first_zset(ctx, keys) {
        Err(e) => e,
        Ok(Some(key)) => {
            let resp3 = ctx.resp3();
            match pop(ctx, key, max, 1).into_iter().next() {
                Some((m, s)) => Reply::Array(vec![Reply::Bulk(key.clone()), Reply::Bulk(m), score_reply(resp3, s)]),
                None => Reply::NilArray,
            }
        }
        Ok(None) => ctx.block(keys.to_vec(), deadline, Reply::NilArray),
    }
}

/// `BZPOPMIN key [key …] timeout`
fn bzpopmin(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    bzpop(ctx, args, false)
}

/// `BZPOPMAX key [key …] timeout`
fn bzpopmax(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    bzpop(ctx, args, true)
}

/// ZMPOP / BZMPOP: `numkeys key [key …] MIN|MAX [COUNT count]` at `args[at..]`; the
/// timeout (BZMPOP) is parsed after the rest, as Redis does.
fn zmpop_generic(ctx: &mut Ctx, args: &[Bytes], at: usize, timeout: Option<&Bytes>) -> Reply {
    let numkeys = match parse_i64(&args[at]) {
        Some(n) if n >= 1 => n as u64,
        _ => return Reply::err(errors::NUMKEYS_POSITIVE),
    };
    let where_at = (at as u64 + 1).saturating_add(numkeys);
    if where_at >= args.len() as u64 {
        return Reply::err(errors::SYNTAX);
    }
    let where_at = where_at as usize;
    let max = match args[where_at].to_ascii_uppercase().as_slice() {
        b"MIN" => false,
        b"MAX" => true,
        _ => return Reply::err(errors::SYNTAX),
    };
    let mut count: Option<u64> = None;
    let mut j = where_at + 1;
    while j < args.len() {
        if count.is_none() && args[j].eq_ignore_ascii_case(b"COUNT") && j + 1 < args.len() {
            count = match parse_i64(&args[j + 1]) {
                Some(n) if n >= 1 => Some(n as u64),
                _ => return Reply::err("ERR count should be greater than 0"),
            };
            j += 2;
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    let deadline = match timeout {
        Some(t) => match parse_timeout(ctx.now_ms, t) {
            Ok(d) => d,
            Err(e) => return e,
        },
        None => None,
    };
    let keys = &args[at + 1..where_at];
    match first_zset(ctx, keys) {
        Err(e) => e,
        Ok(Some(key)) => {
            let items = pop(ctx, key, max, count.unwrap_or(1));
            let resp3 = ctx.resp3();
            Reply::Array(vec![Reply::Bulk(key.clone()), nested(resp3, items)])
        }
        Ok(None) if timeout.is_some() => ctx.block(keys.to_vec(), deadline, Reply::NilArray),
        Ok(None) => Reply::NilArray,
    }
}

/// `ZMPOP numkeys key [key …] MIN|MAX [COUNT count]`
fn zmpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zmpop_generic(ctx, args, 1, None)
}

/// `BZMPOP timeout numkeys key [key …] MIN|MAX [COUNT count]`
fn bzmpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zmpop_generic(ctx, args, 2, Some(&args[1]))
}

/// `ZRANDMEMBER key [count [WITHSCORES]]`
fn zrandmember(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    if args.len() == 2 {
        let len = match ctx.zset(key) {
            Ok(Some(z)) => z.len(),
            Ok(None) => return Reply::Nil,
            Err(e) => return e,
        };
        let i = ctx.rng().below(len);
        return match ctx.zset(key) {
            Ok(Some(z)) => Reply::opt_bulk(z.get_index(i).map(|(m, _)| m)),
            _ => Reply::Nil,
        };
    }
    let count = match parse_random_count(&args[2]) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if args.len() > 4 || (args.len() == 4 && !args[3].eq_ignore_ascii_case(b"WITHSCORES")) {
        return Reply::err(errors::SYNTAX);
    }
    let withscores = args.len() == 4;
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Reply::err("ERR value is out of range");
    }
    let len = match ctx.zset(key) {
        Ok(Some(z)) => z.len(),
        Ok(None) => return Reply::Array(Vec::new()),
        Err(e) => return e,
    };
    let picks = random_positions(ctx, len, count);
    let resp3 = ctx.resp3();
    let Some(Value::ZSet(z)) = ctx.db().get(key).map(|e| &e.value) else { return Reply::Array(Vec::new()) };
    let items = picks.into_iter().filter_map(|i| z.get_index(i)).map(|(m, s)| (Bytes::copy_from_slice(m), s)).collect();
    scored(resp3, items, withscores)
}

// ---- set algebra ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, target: &mut f64, val: f64) {
        match self {
            Aggregate::Sum => {
                *target += val;
                // inf + -inf: Redis keeps the convention of 0.
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if val < *target {
                    *target = val;
                }
            }
            Aggregate::Max => {
                if val > *target {
                    *target = val;
                }
            }
        }
    }
}

/// An input of the algebra: a sorted set, a plain set (every score 1) or nothing.
#[derive(Clone, Copy)]
enum Src<'a> {
    None,
    Set(&'a Set),
    Z(&'a SortedSet),
}

impl<'a> Src<'a> {
    fn len(&self) -> usize {
        match self {
            Src::None => 0,
            Src::Set(s) => s.len(),
            Src::Z(z) => z.len(),
        }
    }

    fn find(&self, m: &[u8]) -> Option<f64> {
        match self {
            Src::None => None,
            Src::Set(s) => s.contains(m).then_some(1.0),
            Src::Z(z) => z.score(m),
        }
    }

    fn items(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            Src::None => Box::new(std::iter::empty()),
            Src::Set(s) => Box::new(s.members().iter().map(|m| (&m[..], 1.0))),
            Src::Z(z) => Box::new(z.iter()),
        }
    }
}

/// Redis's `zunionInterDiffGenericCommand`. `nk` is the index of numkeys; `dst` makes it a
/// STORE form; `card` makes it ZINTERCARD.
fn zsetop(ctx: &mut Ctx, args: &[Bytes], nk: usize, dst: Option<&Bytes>, op: Op, card: bool) -> Reply {
    let name = args[0].to_ascii_lowercase();
    let Some(numkeys) = parse_i64(&args[nk]) else { return Reply::err(errors::NOT_INTEGER) };
    if numkeys < 1 {
        return Reply::err(format!(
            "ERR at least 1 input key is needed for '{}' command",
            String::from_utf8_lossy(&name)
        ));
    }
    if numkeys as u64 > (args.len() - nk - 1) as u64 {
        return Reply::err(errors::SYNTAX);
    }
    let n = numkeys as usize;
    let keys = &args[nk + 1..nk + 1 + n];
    for k in keys {
        match ctx.read(k).map(|e| e.value.kind()) {
            None | Some(Kind::ZSet) | Some(Kind::Set) => {}
            Some(_) => return Reply::err(errors::WRONGTYPE),
        }
    }
    let mut weights = vec![1.0f64; n];
    let mut aggregate = Aggregate::Sum;
    let mut withscores = false;
    let mut limit = 0u64;
    let mut j = nk + 1 + n;
    while j < args.len() {
        let remaining = args.len() - j;
        let opt = args[j].to_ascii_uppercase();
        if op != Op::Diff && !card && remaining > n && opt == b"WEIGHTS" {
            for (i, w) in weights.iter_mut().enumerate() {
                match parse_score(&args[j + 1 + i]) {
                    Some(v) => *w = v,
                    None => return Reply::err("ERR weight value is not a float"),
                }
            }
            j += 1 + n;
        } else if op != Op::Diff && !card && remaining >= 2 && opt == b"AGGREGATE" {
            aggregate = match args[j + 1].to_ascii_uppercase().as_slice() {
                b"SUM" => Aggregate::Sum,
                b"MIN" => Aggregate::Min,
                b"MAX" => Aggregate::Max,
                _ => return Reply::err(errors::SYNTAX),
            };
            j += 2;
        } else if dst.is_none() && !card && opt == b"WITHSCORES" {
            withscores = true;
            j += 1;
        } else if card && remaining >= 2 && opt == b"LIMIT" {
            limit = match parse_i64(&args[j + 1]) {
                Some(v) if v >= 0 => v as u64,
                _ => return Reply::err("ERR LIMIT can't be negative"),
            };
            j += 2;
        } else {
            return Reply::err(errors::SYNTAX);
        }
    }
    let db = ctx.db();
    let mut srcs: Vec<(Src, f64)> = keys
        .iter()
        .zip(&weights)
        .map(|(k, &w)| {
            let src = match db.get(k).map(|e| &e.value) {
                Some(Value::ZSet(z)) => Src::Z(z),
                Some(Value::Set(s)) => Src::Set(s),
                _ => Src::None,
            };
            (src, w)
        })
        .collect();
    if op != Op::Diff {
        // Smallest first, as Redis: fewer probes, and the same order of float sums.
        srcs.sort_by_key(|(s, _)| s.len());
    }
    let weighted = |s: f64, w: f64| {
        let v = s * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut out = SortedSet::new();
    let mut cardinality = 0u64;
    match op {
        Op::Inter => {
            if srcs[0].0.len() > 0 {
                'members: for (m, s) in srcs[0].0.items() {
                    let mut score = weighted(s, srcs[0].1);
                    for (src, w) in &srcs[1..] {
                        match src.find(m) {
                            // Only the first input's product is NaN-cleaned, as in Redis.
                            Some(v) => aggregate.apply(&mut score, v * w),
                            None => continue 'members,
                        }
                    }
                    if card {
                        cardinality += 1;
                        if limit != 0 && cardinality >= limit {
                            break;
                        }
                    } else {
                        out.insert(m, score);
                    }
                }
            }
        }
        Op::Union => {
            let mut acc: HashMap<&[u8], f64> = HashMap::new();
            for (src, w) in &srcs {
                for (m, s) in src.items() {
                    let v = weighted(s, *w);
                    match acc.get_mut(m) {
                        Some(t) => aggregate.apply(t, v),
                        None => {
                            acc.insert(m, v);
                        }
                    }
                }
            }
            for (m, s) in acc {
                out.insert(m, s);
            }
        }
        Op::Diff => {
            for (m, s) in srcs[0].0.items() {
                if !srcs[1..].iter().any(|(src, _)| src.find(m).is_some()) {
                    out.insert(m, s);
                }
            }
        }
    }
    if card {
        return Reply::Int(cardinality as i64);
    }
    match dst {
        Some(dst) => {
            let event = match op {
                Op::Union => "zunionstore",
                Op::Inter => "zinterstore",
                Op::Diff => "zdiffstore",
            };
            store_zset(ctx, dst, out, event)
        }
        None => {
            let items = out.iter().map(|(m, s)| (Bytes::copy_from_slice(m), s)).collect();
            scored(ctx.resp3(), items, withscores)
        }
    }
}

/// `ZUNION numkeys key [key …] [WEIGHTS weight …] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`
fn zunion(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 1, None, Op::Union, false)
}

/// `ZINTER numkeys key [key …] [WEIGHTS weight …] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]`
fn zinter(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 1, None, Op::Inter, false)
}

/// `ZDIFF numkeys key [key …] [WITHSCORES]`
fn zdiff(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 1, None, Op::Diff, false)
}

/// `ZUNIONSTORE destination numkeys key [key …] [WEIGHTS weight …] [AGGREGATE SUM|MIN|MAX]`
fn zunionstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 2, Some(&args[1]), Op::Union, false)
}

/// `ZINTERSTORE destination numkeys key [key …] [WEIGHTS weight …] [AGGREGATE SUM|MIN|MAX]`
fn zinterstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 2, Some(&args[1]), Op::Inter, false)
}

/// `ZDIFFSTORE destination numkeys key [key …]`
fn zdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 2, Some(&args[1]), Op::Diff, false)
}

/// `ZINTERCARD numkeys key [key …] [LIMIT limit]`
fn zintercard(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    zsetop(ctx, args, 1, None, Op::Inter, true)
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]`
fn zscan(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[2]) else { return Reply::err(errors::CURSOR) };
    let z = match ctx.zset(&args[1]) {
        Ok(Some(z)) => z,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let opts = match parse_scan_opts(args, 3) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut items = Vec::with_capacity(opts.count.min(z.len()).saturating_mul(2));
    let next = scan_step(z.len(), cursor, opts.count, |i| {
        if let Some((m, s)) = z.get_index(i) {
            if opts.pattern.is_none_or(|p| glob::matches(p, m, false)) {
                items.push(Reply::bulk(m));
                // ZSCAN scores are always bulk strings, even in RESP3.
                items.push(Reply::Bulk(Bytes::from(fmt_double(s))));
            }
        }
    });
    scan_reply(next, items)
}

#[cfg(test)]
mod tests {
    use super::{parse_score, parse_timeout, strtod};
    use crate::engine::{NoHost, Outcome};
    use crate::reply::Reply;
    use crate::test_util::*;
    use bytes::Bytes;

    const WT: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn b(s: &str) -> Reply {
        Reply::bulk(s)
    }

    fn exists(t: &T, key: &str) -> bool {
        t.eng.dbs()[0].get(key.as_bytes()).is_some()
    }

    /// Runs a command through `execute`, to see a block.
    fn outcome(t: &mut T, args: &[&str]) -> Outcome {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        t.eng.execute(&mut t.sess, &args, t.now, &mut NoHost)
    }

    #[test]
    fn number_parsing_follows_strtod() {
        assert_eq!(parse_score(b"1.5"), Some(1.5));
        assert_eq!(parse_score(b"0x10"), Some(16.0));
        assert_eq!(parse_score(b"0x1p3"), Some(8.0));
        assert_eq!(parse_score(b"0x.8"), Some(0.5));
        assert_eq!(parse_score(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_score(b"+Infinity"), Some(f64::INFINITY));
        assert_eq!(parse_score(b".5"), Some(0.5));
        assert_eq!(parse_score(b"5."), Some(5.0));
        assert_eq!(parse_score(b"1E2"), Some(100.0));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"-nan", b"1e400", b"1e-400", b"0x", b"1e", b"1_0", b"--1", b"inf1", b"0x1p"] {
            assert_eq!(parse_score(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        // range bounds: strtod itself, leading space and the empty string allowed
        assert_eq!(strtod(b""), Some((0.0, false)));
        assert_eq!(strtod(b" 1"), Some((1.0, false)));
        assert_eq!(strtod(b" "), None);
        assert_eq!(strtod(b"1e400"), Some((f64::INFINITY, true)));
    }

    #[test]
    fn timeouts() {
        let now = 1000;
        assert_eq!(parse_timeout(now, b"0"), Ok(None));
        assert_eq!(parse_timeout(now, b"1.5"), Ok(Some(2500)));
        assert_eq!(parse_timeout(now, b"0.0001"), Ok(Some(1001)), "rounded up to 1 ms");
        assert_eq!(parse_timeout(now, b"-0.0001"), Ok(None), "rounds to 0: forever");
        let neg = Err(Reply::err("ERR timeout is negative"));
        assert_eq!(parse_timeout(now, b"-1"), neg);
        assert_eq!(parse_timeout(now, b"1e17"), neg);
        assert_eq!(parse_timeout(now, b"inf"), neg);
        let bad = Err(Reply::err("ERR timeout is not a float or out of range"));
        for t in [&b"x"[..], b"", b" 1", b"1 ", b"nan"] {
            assert_eq!(parse_timeout(now, t), bad);
        }
    }

    #[test]
    fn zadd_options_and_changes() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b"], 2);
        assert_eq!(t.changes(), vec!["ZADD z 1 a 2 b"]);
        t.int(&["ZADD", "z", "1", "a"], 0);
        assert!(t.changes().is_empty(), "same score: no change");
        t.int(&["ZADD", "z", "NX", "5", "a", "3", "c"], 1);
        assert_eq!(t.changes(), vec!["ZADD z 3 c"]);
        t.int(&["ZADD", "z", "XX", "5", "a", "4", "d"], 0);
        assert_eq!(t.changes(), vec!["ZADD z 5 a"]);
        t.int(&["ZADD", "z", "XX", "CH", "6", "a"], 1);
        t.int(&["ZADD", "z", "GT", "CH", "1", "a", "9", "b"], 1);
        assert_eq!(t.changes(), vec!["ZADD z 6 a", "ZADD z 9 b"]);
        t.int(&["ZADD", "z", "LT", "CH", "7", "a", "0.5", "b", "1", "new"], 2);
        assert_eq!(t.changes(), vec!["ZADD z 0.5 b 1 new"]);
        t.int(&["ZADD", "nope", "XX", "1", "a"], 0);
        t.nil(&["ZADD", "nope", "XX", "INCR", "1", "a"]);
        assert!(!exists(&t, "nope"));
        t.err(&["ZADD", "z", "NX", "XX", "1", "a"], "ERR XX and NX options at the same time are not compatible");
        t.err(&["ZADD", "z", "GT", "LT", "1", "a"], "ERR GT, LT, and/or NX options at the same time are not compatible");
        t.err(&["ZADD", "z", "NX", "GT", "1", "a"], "ERR GT, LT, and/or NX options at the same time are not compatible");
        t.err(&["ZADD", "z", "INCR", "1", "a", "2", "b"], "ERR INCR option supports a single increment-element pair");
        t.err(&["ZADD", "z", "NX", "1"], "ERR syntax error");
        t.err(&["ZADD", "z", "1", "a", "2"], "ERR syntax error");
        t.err(&["ZADD", "z", "x", "a"], "ERR value is not a valid float");
        t.err(&["ZADD", "z", "1", "a", "nan", "b"], "ERR value is not a valid float");
        t.err(&["ZADD", "z", "1"], "ERR wrong number of arguments for 'zadd' command");
        assert!(t.changes().is_empty(), "errors change nothing");
        t.ok(&["SET", "str", "x"]);
        t.err(&["ZADD", "str", "x", "a"], "ERR value is not a valid float");
        t.err(&["ZADD", "str", "1", "a"], WT);
    }

    #[test]
    fn zadd_incr_and_zincrby() {
        let mut t = T::new();
        t.bulk(&["ZADD", "z", "INCR", "1.5", "a"], "1.5");
        assert_eq!(t.changes(), vec!["ZADD z 1.5 a"]);
        t.bulk(&["ZINCRBY", "z", "0.1", "a"], "1.6000000000000001");
        assert_eq!(t.changes(), vec!["ZADD z 1.6000000000000001 a"]);
        t.bulk(&["ZINCRBY", "z", "1", "new"], "1");
        t.nil(&["ZADD", "z", "INCR", "NX", "1", "a"]);
        t.nil(&["ZADD", "z", "INCR", "GT", "-1", "a"]);
        t.nil(&["ZADD", "z", "INCR", "XX", "1", "missing"]);
        t.changes();
        t.bulk(&["ZADD", "z", "INCR", "inf", "a"], "inf");
        t.err(&["ZADD", "z", "INCR", "-inf", "a"], "ERR resulting score is not a number (NaN)");
        t.err(&["ZINCRBY", "z", "-inf", "a"], "ERR resulting score is not a number (NaN)");
        t.err(&["ZINCRBY", "z", "x", "a"], "ERR value is not a valid float");
        t.err(&["ZINCRBY", "z", "1"], "ERR wrong number of arguments for 'zincrby' command");
        assert_eq!(t.changes(), vec!["ZADD z inf a"]);
        t.sess.resp3 = true;
        assert_eq!(t.cmd(&["ZINCRBY", "z", "1", "new"]), Reply::Double(2.0));
        assert_eq!(t.cmd(&["ZADD", "z", "INCR", "1", "new"]), Reply::Double(3.0));
    }

    #[test]
    fn negative_zero_reads_as_zero() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "-0", "m"], 1);
        t.bulk(&["ZSCORE", "z", "m"], "0");
        t.bulk(&["ZADD", "k", "INCR", "-0", "m"], "-0");
        t.bulk(&["ZSCORE", "k", "m"], "0");
    }

    #[test]
    fn point_reads() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2.5", "b", "3", "c"], 3);
        t.bulk(&["ZSCORE", "z", "b"], "2.5");
        t.nil(&["ZSCORE", "z", "x"]);
        t.nil(&["ZSCORE", "nope", "x"]);
        assert_eq!(t.cmd(&["ZMSCORE", "z", "a", "x"]), Reply::Array(vec![b("1"), Reply::Nil]));
        assert_eq!(t.cmd(&["ZMSCORE", "nope", "a"]), Reply::Array(vec![Reply::Nil]));
        t.int(&["ZCARD", "z"], 3);
        t.int(&["ZCARD", "nope"], 0);
        t.int(&["ZRANK", "z", "c"], 2);
        t.int(&["ZREVRANK", "z", "c"], 0);
        t.nil(&["ZRANK", "z", "x"]);
        t.nil(&["ZREVRANK", "nope", "x"]);
        t.err(&["ZRANK", "z", "a", "WITHSCORE"], "ERR wrong number of arguments for 'zrank' command");
        t.sess.resp3 = true;
        assert_eq!(t.cmd(&["ZSCORE", "z", "b"]), Reply::Double(2.5));
        assert_eq!(t.cmd(&["ZMSCORE", "z", "b", "x"]), Reply::Array(vec![Reply::Double(2.5), Reply::Nil]));
    }

    #[test]
    fn counts() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "-inf", "m", "inf", "p"], 5);
        t.int(&["ZCOUNT", "z", "-inf", "+inf"], 5);
        t.int(&["ZCOUNT", "z", "(1", "3"], 2);
        t.int(&["ZCOUNT", "z", "(1", "(3"], 1);
        t.int(&["ZCOUNT", "z", "3", "1"], 0);
        t.int(&["ZCOUNT", "z", "", "+inf"], 4); // the empty bound is 0, as strtod reads it
        t.int(&["ZCOUNT", "z", "(", "+inf"], 4);
        t.int(&["ZCOUNT", "z", " 2", "0x3"], 2);
        t.int(&["ZCOUNT", "z", "1e400", "+inf"], 1);
        t.err(&["ZCOUNT", "z", "x", "1"], "ERR min or max is not a float");
        t.err(&["ZCOUNT", "z", "nan", "1"], "ERR min or max is not a float");
        t.err(&["ZCOUNT", "z", "[1", "2"], "ERR min or max is not a float");
        t.err(&["ZCOUNT", "nope", "x", "1"], "ERR min or max is not a float");
        t.int(&["ZCOUNT", "nope", "0", "1"], 0);
        t.int(&["ZADD", "l", "0", "a", "0", "b", "0", "bb", "0", "c"], 4);
        t.int(&["ZLEXCOUNT", "l", "-", "+"], 4);
        t.int(&["ZLEXCOUNT", "l", "[b", "(c"], 2);
        t.int(&["ZLEXCOUNT", "l", "(b", "[c"], 2);
        t.int(&["ZLEXCOUNT", "l", "+", "-"], 0);
        t.int(&["ZLEXCOUNT", "l", "[c", "[a"], 0);
        t.err(&["ZLEXCOUNT", "l", "b", "c"], "ERR min or max not valid string range item");
        t.err(&["ZLEXCOUNT", "l", "+x", "c"], "ERR min or max not valid string range item");
        t.int(&["ZLEXCOUNT", "nope", "-", "+"], 0);
    }

    fn flat(items: &[&str]) -> Reply {
        Reply::Array(items.iter().map(|s| b(s)).collect())
    }

    #[test]
    fn ranges_by_rank() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"], 4);
        t.arr(&["ZRANGE", "z", "0", "-1"], &["a", "b", "c", "d"]);
        t.arr(&["ZRANGE", "z", "1", "2"], &["b", "c"]);
        t.arr(&["ZRANGE", "z", "-100", "100"], &["a", "b", "c", "d"]);
        t.arr(&["ZRANGE", "z", "2", "1"], &[]);
        t.arr(&["ZRANGE", "z", "0", "-1", "REV"], &["d", "c", "b", "a"]);
        t.arr(&["ZRANGE", "z", "0", "1", "REV"], &["d", "c"]);
        t.arr(&["ZREVRANGE", "z", "1", "2"], &["c", "b"]);
        assert_eq!(t.cmd(&["ZRANGE", "z", "0", "1", "WITHSCORES"]), flat(&["a", "1", "b", "2"]));
        assert_eq!(t.cmd(&["ZREVRANGE", "z", "0", "0", "WITHSCORES"]), flat(&["d", "4"]));
        t.arr(&["ZRANGE", "nope", "0", "-1"], &[]);
        t.err(&["ZRANGE", "z", "a", "1"], "ERR value is not an integer or out of range");
        t.err(
            &["ZRANGE", "z", "0", "1", "LIMIT", "0", "1"],
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        t.err(
            &["ZREVRANGE", "z", "0", "1", "LIMIT", "0", "1"],
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        t.err(&["ZRANGE", "z", "0", "1", "REV", "REV"], "ERR syntax error");
        t.err(&["ZREVRANGE", "z", "0", "1", "REV"], "ERR syntax error");
        t.err(&["ZRANGE", "z", "0", "1", "BYSCORE", "BYLEX"], "ERR syntax error");
        t.err(&["ZRANGE", "z", "0", "1", "LIMIT", "0"], "ERR syntax error");
        t.err(&["ZRANGE", "z", "0", "1", "LIMIT", "0", "x"], "ERR value is not an integer or out of range");
        t.err(&["ZRANGE", "z", "0"], "ERR wrong number of arguments for 'zrange' command");
        t.sess.resp3 = true;
        assert_eq!(
            t.cmd(&["ZRANGE", "z", "0", "1", "WITHSCORES"]),
            Reply::Array(vec![
                Reply::Array(vec![b("a"), Reply::Double(1.0)]),
                Reply::Array(vec![b("b"), Reply::Double(2.0)]),
            ])
        );
    }

    #[test]
    fn ranges_by_score_and_lex() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"], 5);
        t.arr(&["ZRANGEBYSCORE", "z", "2", "4"], &["b", "c", "d"]);
        t.arr(&["ZRANGEBYSCORE", "z", "(2", "(4"], &["c"]);
        t.arr(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "2"], &["b", "c"]);
        t.arr(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "-1"], &["b", "c", "d", "e"]);
        t.arr(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "-1", "2"], &[]);
        t.arr(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "1", "0"], &[]);
        t.arr(&["ZRANGEBYSCORE", "z", "-inf", "+inf", "LIMIT", "9", "1"], &[]);
        assert_eq!(t.cmd(&["ZRANGEBYSCORE", "z", "4", "+inf", "WITHSCORES"]), flat(&["d", "4", "e", "5"]));
        t.arr(&["ZREVRANGEBYSCORE", "z", "4", "2"], &["d", "c", "b"]);
        t.arr(&["ZREVRANGEBYSCORE", "z", "2", "4"], &[]);
        t.arr(&["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "LIMIT", "1", "2"], &["d", "c"]);
        t.arr(&["ZRANGE", "z", "(5", "1", "BYSCORE", "REV", "LIMIT", "0", "2"], &["d", "c"]);
        t.arr(&["ZRANGE", "z", "2", "3", "BYSCORE"], &["b", "c"]);
        t.err(&["ZRANGEBYSCORE", "z", "x", "1"], "ERR min or max is not a float");
        t.err(&["ZRANGEBYSCORE", "z", "0", "1", "REV"], "ERR syntax error");
        t.err(&["ZRANGEBYSCORE", "z", "0", "1", "BYSCORE"], "ERR syntax error");
        t.int(&["ZADD", "l", "0", "a", "0", "b", "0", "bb", "0", "c", "0", "d"], 5);
        t.arr(&["ZRANGEBYLEX", "l", "-", "+"], &["a", "b", "bb", "c", "d"]);
        t.arr(&["ZRANGEBYLEX", "l", "[b", "(c"], &["b", "bb"]);
        t.arr(&["ZRANGEBYLEX", "l", "(b", "[c"], &["bb", "c"]);
        t.arr(&["ZRANGEBYLEX", "l", "-", "+", "LIMIT", "1", "2"], &["b", "bb"]);
        t.arr(&["ZREVRANGEBYLEX", "l", "+", "-", "LIMIT", "1", "2"], &["c", "bb"]);
        t.arr(&["ZREVRANGEBYLEX", "l", "[c", "(a"], &["c", "bb", "b"]);
        t.arr(&["ZRANGE", "l", "[c", "[a", "BYLEX", "REV"], &["c", "bb", "b", "a"]);
        t.err(&["ZRANGEBYLEX", "l", "a", "c"], "ERR min or max not valid string range item");
        t.err(&["ZRANGEBYLEX", "l", "-", "+", "WITHSCORES"], "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        t.err(&["ZRANGE", "l", "-", "+", "BYLEX", "WITHSCORES"], "ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        t.err(&["ZRANGE", "l", "0", "-1", "BYLEX"], "ERR min or max not valid string range item");
        t.sess.resp3 = true;
        assert_eq!(
            t.cmd(&["ZRANGEBYSCORE", "z", "5", "5", "WITHSCORES"]),
            Reply::Array(vec![Reply::Array(vec![b("e"), Reply::Double(5.0)])])
        );
    }

    #[test]
    fn zrangestore() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c"], 3);
        t.ok(&["SET", "d", "x", "EX", "100"]);
        t.changes();
        t.int(&["ZRANGESTORE", "d", "z", "0", "1"], 2);
        assert_eq!(t.changes(), vec!["DEL d", "ZADD d 1 a 2 b"]);
        assert_eq!(t.eng.dbs()[0].get(&b"d"[..]).map(|e| e.expire_at), Some(0), "TTL cleared");
        t.int(&["ZRANGESTORE", "d", "z", "3", "2", "BYSCORE", "REV"], 2);
        assert_eq!(t.cmd(&["ZRANGE", "d", "0", "-1", "WITHSCORES"]), flat(&["b", "2", "c", "3"]));
        t.int(&["ZRANGESTORE", "d", "z", "-", "+", "BYLEX", "LIMIT", "0", "1"], 1);
        t.changes();
        t.int(&["ZRANGESTORE", "d", "nope", "0", "-1"], 0);
        assert_eq!(t.changes(), vec!["DEL d"]);
        assert!(!exists(&t, "d"));
        t.int(&["ZRANGESTORE", "d", "z", "5", "9"], 0);
        assert!(t.changes().is_empty());
        t.err(&["ZRANGESTORE", "d", "z", "0", "-1", "WITHSCORES"], "ERR syntax error");
        t.err(&["ZRANGESTORE", "d", "z", "0"], "ERR wrong number of arguments for 'zrangestore' command");
        // the source may be the destination
        t.int(&["ZRANGESTORE", "z", "z", "1", "-1"], 2);
        t.arr(&["ZRANGE", "z", "0", "-1"], &["b", "c"]);
    }

    #[test]
    fn zrem_and_zremrange() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f"], 6);
        t.changes();
        t.int(&["ZREM", "z", "a", "x", "a"], 1);
        assert_eq!(t.changes(), vec!["ZREM z a"]);
        t.int(&["ZREM", "z", "x"], 0);
        t.int(&["ZREM", "nope", "x"], 0);
        assert!(t.changes().is_empty());
        t.int(&["ZREMRANGEBYRANK", "z", "0", "0"], 1);
        assert_eq!(t.changes(), vec!["ZREM z b"]);
        t.int(&["ZREMRANGEBYRANK", "z", "10", "20"], 0);
        t.int(&["ZREMRANGEBYSCORE", "z", "(3", "5"], 2);
        assert_eq!(t.changes(), vec!["ZREM z d e"]);
        t.int(&["ZREMRANGEBYSCORE", "z", "100", "200"], 0);
        t.int(&["ZREMRANGEBYLEX", "z", "-", "(d"], 1);
        t.int(&["ZREMRANGEBYRANK", "z", "-1", "-1"], 1);
        assert!(!exists(&t, "z"));
        t.err(&["ZREMRANGEBYRANK", "z", "a", "1"], "ERR value is not an integer or out of range");
        t.err(&["ZREMRANGEBYSCORE", "z", "a", "1"], "ERR min or max is not a float");
        t.err(&["ZREMRANGEBYLEX", "z", "a", "b"], "ERR min or max not valid string range item");
        t.int(&["ZREMRANGEBYSCORE", "nope", "0", "1"], 0);
        t.err(&["ZREMRANGEBYLEX", "z", "-"], "ERR wrong number of arguments for 'zremrangebylex' command");
    }

    #[test]
    fn pops() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"], 5);
        t.changes();
        assert_eq!(t.cmd(&["ZPOPMIN", "z"]), flat(&["a", "1"]));
        assert_eq!(t.changes(), vec!["ZREM z a"]);
        assert_eq!(t.cmd(&["ZPOPMAX", "z", "2"]), flat(&["e", "5", "d", "4"]));
        assert_eq!(t.changes(), vec!["ZREM z e d"]);
        assert_eq!(t.cmd(&["ZPOPMIN", "z", "0"]), Reply::Array(vec![]));
        assert!(t.changes().is_empty());
        assert_eq!(t.cmd(&["ZPOPMIN", "nope"]), Reply::Array(vec![]));
        t.err(&["ZPOPMIN", "z", "-1"], "ERR value is out of range, must be positive");
        t.err(&["ZPOPMIN", "z", "x"], "ERR value is out of range, must be positive");
        t.err(&["ZPOPMIN", "z", "1", "2"], "ERR syntax error");
        t.sess.resp3 = true;
        assert_eq!(t.cmd(&["ZPOPMIN", "z"]), Reply::Array(vec![b("b"), Reply::Double(2.0)]));
        assert_eq!(t.cmd(&["ZPOPMAX", "z", "9"]), Reply::Array(vec![Reply::Array(vec![b("c"), Reply::Double(3.0)])]));
        assert!(!exists(&t, "z"));
    }

    #[test]
    fn zmpop() {
        let mut t = T::new();
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c"], 3);
        t.changes();
        let pair = |m: &str, s: &str| Reply::Array(vec![b(m), b(s)]);
        assert_eq!(t.cmd(&["ZMPOP", "2", "nope", "z", "MAX", "COUNT", "2"]), Reply::Array(vec![b("z"), Reply::Array(vec![pair("c", "3"), pair("b", "2")])]));
        assert_eq!(t.changes(), vec!["ZREM z c b"]);
        assert_eq!(t.cmd(&["ZMPOP", "1", "z", "min"]), Reply::Array(vec![b("z"), Reply::Array(vec![pair("a", "1")])]));
        assert_eq!(t.cmd(&["ZMPOP", "1", "z", "MIN"]), Reply::NilArray);
        t.err(&["ZMPOP", "0", "z", "MIN"], "ERR numkeys should be greater than 0");
        t.err(&["ZMPOP", "x", "z", "MIN"], "ERR numkeys should be greater than 0");
        t.err(&["ZMPOP", "2", "z", "MIN"], "ERR syntax error");
        t.err(&["ZMPOP", "1", "z", "foo"], "ERR syntax error");
        t.err(&["ZMPOP", "1", "z", "MIN", "COUNT", "0"], "ERR count should be greater than 0");
        t.err(&["ZMPOP", "1", "z", "MIN", "COUNT", "1", "COUNT", "1"], "ERR syntax error");
        t.err(&["ZMPOP", "9223372036854775807", "z", "MIN"], "ERR syntax error");
        t.err(&["BZMPOP", "x", "1", "z", "MIN"], "ERR timeout is not a float or out of range");
        t.err(&["BZMPOP", "x", "0", "z", "MIN"], "ERR numkeys should be greater than 0");
        t.err(&["BZMPOP", "-1", "1", "z", "MIN"], "ERR timeout is negative");
        let args = crate::command::args_of(&[b"BZMPOP", b"0", b"2", b"a", b"b", b"MIN"]);
        let keys = crate::command::lookup(b"bzmpop").unwrap().keys_of(&args);
        assert_eq!(keys, vec![&Bytes::from_static(b"a"), &Bytes::from_static(b"b")]);
    }

    #[test]
    fn blocking_pops() {
        let mut t = T::new();
        // nothing to pop: the client blocks on the keys, with a deadline
        match outcome(&mut t, &["BZPOPMIN", "a", "b", "1.5"]) {
            Outcome::Blocked(bl) => {
                assert_eq!(bl.keys, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
                assert_eq!(bl.deadline_ms, Some(t.now + 1500));
                assert_eq!(bl.timeout_reply, Reply::NilArray);
            }
            other => panic!("{:?}", other),
        }
        match outcome(&mut t, &["BZMPOP", "0", "1", "a", "MIN"]) {
            Outcome::Blocked(bl) => assert_eq!(bl.deadline_ms, None),
            other => panic!("{:?}", other),
        }
        // once a key has members, re-running the command pops
        t.int(&["ZADD", "b", "1", "x", "2", "y"], 2);
        t.changes();
        assert_eq!(t.cmd(&["BZPOPMAX", "a", "b", "0"]), Reply::Array(vec![b("b"), b("y"), b("2")]));
        assert_eq!(t.changes(), vec!["ZREM b y"]);
        t.sess.resp3 = true;
        assert_eq!(t.cmd(&["BZPOPMIN", "a", "b", "0"]), Reply::Array(vec![b("b"), b("x"), Reply::Double(1.0)]));
        t.sess.resp3 = false;
        // inside MULTI it never blocks
        t.ok(&["MULTI"]);
        t.simple(&["BZPOPMIN", "a", "0"], "QUEUED");
        t.simple(&["BZMPOP", "0", "1", "a", "MAX"], "QUEUED");
        assert_eq!(t.cmd(&["EXEC"]), Reply::Array(vec![Reply::NilArray, Reply::NilArray]));
        t.err(&["BZPOPMIN", "a", "x"], "ERR timeout is not a float or out of range");
        t.err(&["BZPOPMIN", "a", "-1"], "ERR timeout is negative");
        t.err(&["BZPOPMIN", "a"], "ERR wrong number of arguments for 'bzpopmin' command");
    }

    #[test]
    fn zrandmember() {
        let mut t = T::new();
        t.nil(&["ZRANDMEMBER", "z"]);
        t.arr(&["ZRANDMEMBER", "z", "3"], &[]);
        t.int(&["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"], 4);
        t.changes();
        let Reply::Bulk(_) = t.cmd(&["ZRANDMEMBER", "z"]) else { panic!() };
        let Reply::Array(v) = t.cmd(&["ZRANDMEMBER", "z", "3"]) else { panic!() };
        let mut v: Vec<_> = v.into_iter().map(|r| format!("{:?}", r)).collect();
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 3, "distinct for a positive count");
        let Reply::Array(v) = t.cmd(&["ZRANDMEMBER", "z", "-10", "WITHSCORES"]) else { panic!() };
        assert_eq!(v.len(), 20);
        let Reply::Array(v) = t.cmd(&["ZRANDMEMBER", "z", "10", "WITHSCORES"]) else { panic!() };
        assert_eq!(v.len(), 8);
        t.arr(&["ZRANDMEMBER", "z", "0"], &[]);
        t.err(&["ZRANDMEMBER", "z", "x"], "ERR value is not an integer or out of range");
        t.err(&["ZRANDMEMBER", "z", "1", "foo"], "ERR syntax error");
        t.err(&["ZRANDMEMBER", "z", "1", "WITHSCORES", "x"], "ERR syntax error");
        t.err(&["ZRANDMEMBER", "z", "4611686018427387904", "WITHSCORES"], "ERR value is out of range");
        t.err(&["ZRANDMEMBER", "z", "-9223372036854775807"], "ERR value is out of range");
        t.err(
            &["ZRANDMEMBER", "z", "-9223372036854775808"],
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        );
        assert!(t.changes().is_empty());
        t.sess.resp3 = true;
        let Reply::Array(v) = t.cmd(&["ZRANDMEMBER", "z", "1", "WITHSCORES"]) else { panic!() };
        assert!(matches!(&v[0], Reply::Array(p) if matches!(p[1], Reply::Double(_))));
    }

    #[test]
    fn algebra() {
        let mut t = T::new();
        t.int(&["ZADD", "u", "1", "a", "2", "b", "3", "c"], 3);
        t.int(&["ZADD", "v", "10", "b", "20", "c", "30", "d"], 3);
        t.int(&["SADD", "s", "a", "x"], 2);
        assert_eq!(t.cmd(&["ZUNION", "2", "u", "v", "WITHSCORES"]), flat(&["a", "1", "b", "12", "c", "23", "d", "30"]));
        assert_eq!(t.cmd(&["ZUNION", "2", "u", "s", "WEIGHTS", "1", "2", "WITHSCORES"]), flat(&["b", "2", "x", "2", "a", "3", "c", "3"]));
        assert_eq!(t.cmd(&["ZINTER", "2", "u", "v", "AGGREGATE", "MAX", "WITHSCORES"]), flat(&["b", "10", "c", "20"]));
        assert_eq!(t.cmd(&["ZINTER", "2", "u", "v", "AGGREGATE", "MIN", "WITHSCORES"]), flat(&["b", "2", "c", "3"]));
        t.arr(&["ZINTER", "2", "u", "nope"], &[]);
        assert_eq!(t.cmd(&["ZDIFF", "2", "u", "v", "WITHSCORES"]), flat(&["a", "1"]));
        t.arr(&["ZDIFF", "2", "u", "u"], &[]);
        t.int(&["ZINTERCARD", "2", "u", "v"], 2);
        t.int(&["ZINTERCARD", "2", "u", "v", "LIMIT", "1"], 1);
        t.int(&["ZINTERCARD", "1", "u", "LIMIT", "0"], 3);
        // infinities: inf + -inf sums to 0, and 0 * inf weights to 0
        t.int(&["ZADD", "i1", "inf", "a"], 1);
        t.int(&["ZADD", "i2", "-inf", "a"], 1);
        assert_eq!(t.cmd(&["ZUNION", "2", "i1", "i2", "WITHSCORES"]), flat(&["a", "0"]));
        assert_eq!(t.cmd(&["ZUNION", "1", "i1", "WEIGHTS", "0", "WITHSCORES"]), flat(&["a", "0"]));
        t.err(&["ZUNION", "0", "u"], "ERR at least 1 input key is needed for 'zunion' command");
        t.err(&["ZINTERSTORE", "d", "0", "u"], "ERR at least 1 input key is needed for 'zinterstore' command");
        t.err(&["ZINTERCARD", "0", "u"], "ERR at least 1 input key is needed for 'zintercard' command");
        t.err(&["ZUNION", "x", "u"], "ERR value is not an integer or out of range");
        t.err(&["ZUNION", "2", "u"], "ERR syntax error");
        t.err(&["ZUNION", "2", "u", "v", "WEIGHTS", "1"], "ERR syntax error");
        t.err(&["ZUNION", "2", "u", "v", "WEIGHTS", "1", "x"], "ERR weight value is not a float");
        t.err(&["ZUNION", "2", "u", "v", "AGGREGATE", "avg"], "ERR syntax error");
        t.err(&["ZDIFF", "1", "u", "WEIGHTS", "1"], "ERR syntax error");
        t.err(&["ZUNIONSTORE", "d", "1", "u", "WITHSCORES"], "ERR syntax error");
        t.err(&["ZINTERCARD", "1", "u", "LIMIT", "-1"], "ERR LIMIT can't be negative");
        t.err(&["ZINTERCARD", "1", "u", "WITHSCORES"], "ERR syntax error");
        t.sess.resp3 = true;
        assert_eq!(
            t.cmd(&["ZDIFF", "2", "u", "v", "WITHSCORES"]),
            Reply::Array(vec![Reply::Array(vec![b("a"), Reply::Double(1.0)])])
        );
    }

    #[test]
    fn algebra_store() {
        let mut t = T::new();
        t.int(&["ZADD", "u", "1", "a", "2", "b"], 2);
        t.int(&["ZADD", "v", "10", "b"], 1);
        t.changes();
        t.int(&["ZUNIONSTORE", "d", "2", "u", "v"], 2);
        assert_eq!(t.changes(), vec!["DEL d", "ZADD d 1 a 12 b"]);
        t.int(&["ZINTERSTORE", "d", "2", "u", "v", "WEIGHTS", "2", "1"], 1);
        assert_eq!(t.changes(), vec!["DEL d", "ZADD d 14 b"]);
        t.int(&["ZDIFFSTORE", "d", "2", "u", "v"], 1);
        t.changes();
        t.int(&["ZINTERSTORE", "d", "2", "u", "nope"], 0);
        assert_eq!(t.changes(), vec!["DEL d"]);
        t.int(&["ZDIFFSTORE", "d", "1", "nope"], 0);
        assert!(t.changes().is_empty());
        // the destination may be an input
        t.int(&["ZUNIONSTORE", "u", "2", "u", "u"], 2);
        assert_eq!(t.cmd(&["ZRANGE", "u", "0", "-1", "WITHSCORES"]), flat(&["a", "2", "b", "4"]));
        let spec = crate::command::lookup(b"zunionstore").unwrap();
        let args = crate::command::args_of(&[b"ZUNIONSTORE", b"d", b"2", b"x", b"y", b"WEIGHTS", b"1", b"2"]);
        let keys = spec.keys_of(&args);
        assert_eq!(keys, vec![&Bytes::from_static(b"d"), &Bytes::from_static(b"x"), &Bytes::from_static(b"y")]);
    }

    #[test]
    fn zscan() {
        let mut t = T::new();
        assert_eq!(t.cmd(&["ZSCAN", "z", "0"]), Reply::Array(vec![b("0"), Reply::Array(vec![])]));
        t.err(&["ZSCAN", "z", "x"], "ERR invalid cursor");
        for i in 0..30 {
            t.cmd(&["ZADD", "z", &format!("{}.5", i), &format!("m{}", i)]);
        }
        let mut seen = std::collections::HashMap::new();
        let mut cursor = "0".to_string();
        loop {
            let Reply::Array(parts) = t.cmd(&["ZSCAN", "z", &cursor, "COUNT", "4"]) else { panic!() };
            let Reply::Bulk(c) = &parts[0] else { panic!() };
            cursor = String::from_utf8(c.to_vec()).unwrap();
            let Reply::Array(items) = &parts[1] else { panic!() };
            for pair in items.chunks(2) {
                seen.insert(format!("{:?}", pair[0]), pair[1].clone());
            }
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 30);
        assert_eq!(seen[&format!("{:?}", b("m7"))], b("7.5"));
        let Reply::Array(parts) = t.cmd(&["ZSCAN", "z", "0", "MATCH", "m2*", "COUNT", "100"]) else { panic!() };
        let Reply::Array(items) = &parts[1] else { panic!() };
        assert_eq!(items.len(), 2 * 11);
        t.err(&["ZSCAN", "z", "0", "COUNT", "0"], "ERR syntax error");
        t.sess.resp3 = true;
        let Reply::Array(parts) = t.cmd(&["ZSCAN", "z", "0", "MATCH", "m1", "COUNT", "100"]) else { panic!() };
        assert_eq!(parts[1], Reply::Array(vec![b("m1"), b("1.5")]), "scores stay bulk strings in RESP3");
    }

    #[test]
    fn wrongtype() {
        let mut t = T::new();
        t.ok(&["SET", "str", "x"]);
        for cmd in [
            &["ZADD", "str", "1", "a"][..],
            &["ZINCRBY", "str", "1", "a"],
            &["ZREM", "str", "a"],
            &["ZSCORE", "str", "a"],
            &["ZMSCORE", "str", "a"],
            &["ZCARD", "str"],
            &["ZCOUNT", "str", "0", "1"],
            &["ZLEXCOUNT", "str", "-", "+"],
            &["ZRANK", "str", "a"],
            &["ZREVRANK", "str", "a"],
            &["ZRANGE", "str", "0", "1"],
            &["ZRANGESTORE", "d", "str", "0", "1"],
            &["ZRANGEBYSCORE", "str", "0", "1"],
            &["ZREVRANGEBYSCORE", "str", "1", "0"],
            &["ZRANGEBYLEX", "str", "-", "+"],
            &["ZREVRANGEBYLEX", "str", "+", "-"],
            &["ZREVRANGE", "str", "0", "1"],
            &["ZPOPMIN", "str"],
            &["ZPOPMAX", "str", "0"],
            &["BZPOPMIN", "nope", "str", "0"],
            &["BZPOPMAX", "str", "0"],
            &["ZMPOP", "2", "nope", "str", "MIN"],
            &["BZMPOP", "0", "1", "str", "MIN"],
            &["ZRANDMEMBER", "str"],
            &["ZRANDMEMBER", "str", "1"],
            &["ZREMRANGEBYSCORE", "str", "0", "1"],
            &["ZREMRANGEBYRANK", "str", "0", "1"],
            &["ZREMRANGEBYLEX", "str", "-", "+"],
            &["ZUNION", "2", "nope", "str"],
            &["ZINTER", "1", "str"],
            &["ZDIFF", "1", "str"],
            &["ZUNIONSTORE", "d", "1", "str"],
            &["ZINTERSTORE", "d", "1", "str"],
            &["ZDIFFSTORE", "d", "1", "str"],
            &["ZINTERCARD", "1", "str"],
            &["ZSCAN", "str", "0"],
        ] {
            t.err(cmd, WT);
        }
        t.int(&["SADD", "s", "a"], 1);
        t.err(&["ZADD", "s", "1", "a"], WT);
        t.int(&["ZADD", "z0", "1", "a"], 1);
        t.err(&["SADD", "z0", "a"], WT);
    }

    #[test]
    fn keyspace_events() {
        let mut t = T::new();
        let got = crate::command::set::tests::events(
            &mut t,
            &[
                &["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d"],
                &["ZADD", "z", "1", "a"],
                &["ZINCRBY", "z", "1", "a"],
                &["ZREM", "z", "a"],
                &["ZPOPMIN", "z"],
                &["ZPOPMAX", "z", "0"],
                &["BZPOPMAX", "z", "0"],
                &["ZADD", "z", "1", "a", "2", "b", "3", "c"],
                &["ZREMRANGEBYSCORE", "z", "1", "1"],
                &["ZREMRANGEBYRANK", "z", "0", "0"],
                &["ZREMRANGEBYLEX", "z", "-", "+"],
                &["ZADD", "z", "1", "a"],
                &["ZRANGESTORE", "d", "z", "0", "-1"],
                &["ZUNIONSTORE", "d", "1", "z"],
                &["ZINTERSTORE", "d", "1", "z"],
                &["ZDIFFSTORE", "d", "2", "z", "z"],
            ],
        );
        let want = [
            "new:z", "zadd:z", "zincr:z", "zrem:z", "zpopmin:z", "zpopmax:z", "zadd:z", "zremrangebyscore:z",
            "zremrangebyrank:z", "zremrangebylex:z", "del:z", "new:z", "zadd:z", "new:d", "zrangestore:d",
            "zunionstore:d", "zinterstore:d", "del:d",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn replay_gives_same_state() {
        let mut t = T::new();
        let script: &[&[&str]] = &[
            &["ZADD", "z", "1", "a", "2", "b", "3", "c", "4", "d", "5", "e", "6", "f"],
            &["ZADD", "z", "GT", "CH", "10", "a", "0", "b"],
            &["ZINCRBY", "z", "0.1", "c"],
            &["ZADD", "z", "INCR", "-2.5", "d"],
            &["ZREM", "z", "e"],
            &["ZPOPMIN", "z"],
            &["ZPOPMAX", "z", "1"],
            &["ZADD", "y", "1", "x", "2", "y", "3", "z", "4", "w"],
            &["ZMPOP", "2", "nope", "y", "MIN", "COUNT", "2"],
            &["BZPOPMAX", "y", "0"],
            &["ZRANGESTORE", "r", "z", "0", "-1", "REV"],
            &["ZUNIONSTORE", "un", "2", "z", "y", "WEIGHTS", "2", "3"],
            &["ZINTERSTORE", "in", "2", "z", "r", "AGGREGATE", "MAX"],
            &["ZDIFFSTORE", "df", "2", "z", "y"],
            &["ZADD", "l", "0", "a", "0", "b", "0", "c", "0", "d"],
            &["ZREMRANGEBYLEX", "l", "[b", "[c"],
            &["ZADD", "n", "1", "a", "2", "b", "3", "c"],
            &["ZREMRANGEBYSCORE", "n", "2", "+inf"],
            &["ZREMRANGEBYRANK", "un", "0", "0"],
            &["ZINTERSTORE", "in", "2", "z", "nope"],
            &["ZRANDMEMBER", "z", "-5", "WITHSCORES"],
            &["ZADD", "inf", "inf", "a", "-inf", "b", "-0", "c", "0.1", "d", "1e300", "e"],
        ];
        for cmd in script {
            assert!(!t.cmd(cmd).is_error(), "{:?}", cmd);
        }
        t.assert_replays();
    }
}
