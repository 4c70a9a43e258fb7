//! Set commands: SADD, SREM, SPOP, the algebra (SINTER, SUNION, SDIFF and their STORE
//! forms) and SSCAN.
//!
//! Canonical changes: SADD/SREM name only the members that changed; SPOP becomes
//! `SREM k m…` of what it popped; SMOVE splits into `SREM src m` + `SADD dst m`; the STORE
//! forms emit a whole-value restore of the destination (or `DEL dst`).

use std::collections::HashSet;

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::{numkeys_at, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::glob;
use crate::reply::{errors, Reply};
use crate::util::{parse_cursor, parse_i64, scan_step};
use crate::value::{Set, Value};

/// The set commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("sadd", -3, WRITE | DENYOOM | FAST, "set", Handler::Engine(sadd))
        .keys(1, 1, 1)
        .doc("Add one or more members to a set", "1.0.0"),
    CommandSpec::new("srem", -3, WRITE | FAST, "set", Handler::Engine(srem))
        .keys(1, 1, 1)
        .doc("Remove one or more members from a set", "1.0.0"),
    CommandSpec::new("smembers", 2, READONLY, "set", Handler::Engine(smembers))
        .keys(1, 1, 1)
        .doc("Get all the members in a set", "1.0.0"),
    CommandSpec::new("sismember", 3, READONLY | FAST, "set", Handler::Engine(sismember))
        .keys(1, 1, 1)
        .doc("Determine if a given value is a member of a set", "1.0.0"),
    CommandSpec::new("smismember", -3, READONLY | FAST, "set", Handler::Engine(smismember))
        .keys(1, 1, 1)
        .doc("Returns the membership associated with the given elements for a set", "6.2.0"),
    CommandSpec::new("scard", 2, READONLY | FAST, "set", Handler::Engine(scard))
        .keys(1, 1, 1)
        .doc("Get the number of members in a set", "1.0.0"),
    CommandSpec::new("spop", -2, WRITE | FAST, "set", Handler::Engine(spop))
        .keys(1, 1, 1)
        .doc("Remove and return one or multiple random members from a set", "1.0.0"),
    CommandSpec::new("srandmember", -2, READONLY, "set", Handler::Engine(srandmember))
        .keys(1, 1, 1)
        .doc("Get one or multiple random members from a set", "1.0.0"),
    CommandSpec::new("smove", 4, WRITE | FAST, "set", Handler::Engine(smove))
        .keys(1, 2, 1)
        .doc("Move a member from one set to another", "1.0.0"),
    CommandSpec::new("sinter", -2, READONLY, "set", Handler::Engine(sinter))
        .keys(1, -1, 1)
        .doc("Intersect multiple sets", "1.0.0"),
    CommandSpec::new("sintercard", -3, READONLY, "set", Handler::Engine(sintercard))
        .keys_with(sintercard_keys)
        .doc("Intersect multiple sets and return the cardinality of the result", "7.0.0"),
    CommandSpec::new("sinterstore", -3, WRITE | DENYOOM, "set", Handler::Engine(sinterstore))
        .keys(1, -1, 1)
        .doc("Intersect multiple sets and store the resulting set in a key", "1.0.0"),
    CommandSpec::new("sunion", -2, READONLY, "set", Handler::Engine(sunion))
        .keys(1, -1, 1)
        .doc("Add multiple sets", "1.0.0"),
    CommandSpec::new("sunionstore", -3, WRITE | DENYOOM, "set", Handler::Engine(sunionstore))
        .keys(1, -1, 1)
        .doc("Add multiple sets and store the resulting set in a key", "1.0.0"),
    CommandSpec::new("sdiff", -2, READONLY, "set", Handler::Engine(sdiff))
        .keys(1, -1, 1)
        .doc("Subtract multiple sets", "1.0.0"),
    CommandSpec::new("sdiffstore", -3, WRITE | DENYOOM, "set", Handler::Engine(sdiffstore))
        .keys(1, -1, 1)
        .doc("Subtract multiple sets and store the resulting set in a key", "1.0.0"),
    CommandSpec::new("sscan", -3, READONLY, "set", Handler::Engine(sscan))
        .keys(1, 1, 1)
        .doc("Incrementally iterate Set elements", "2.8.0"),
];

/// The most elements a random pick *with repeats* (negative count) may return. Redis
/// streams such replies and happily loops for 2^63 picks; the engine builds replies in
/// memory, so it refuses counts beyond this with `ERR value is out of range`.
pub(crate) const MAX_RANDOM_REPEATS: u64 = 1 << 20;

fn sintercard_keys(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 1)
}

/// A set reply (RESP3 `~`, RESP2 array).
fn set_reply<'a>(members: impl IntoIterator<Item = &'a [u8]>) -> Reply {
    Reply::Set(members.into_iter().map(Reply::bulk).collect())
}

/// `SADD key member [member …]`
fn sadd(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let set = match ctx.set_or_new(key) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mut added: Vec<&[u8]> = Vec::new();
    for m in &args[2..] {
        if set.insert(m) {
            added.push(m);
        }
    }
    if added.is_empty() {
        return Reply::Int(0);
    }
    let n = added.len() as i64;
    let mut change: Vec<&[u8]> = Vec::with_capacity(added.len() + 2);
    change.extend_from_slice(&[b"SADD", key]);
    change.extend(added);
    ctx.emit(&change);
    ctx.notify(EventClass::Set, "sadd", key);
    Reply::Int(n)
}

/// `SREM key member [member …]`
fn srem(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let set = match ctx.set_mut(key) {
        Ok(Some(s)) => s,
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    let mut removed: Vec<&[u8]> = Vec::new();
    for m in &args[2..] {
        if set.remove(m) {
            removed.push(m);
        }
    }
    if removed.is_empty() {
        return Reply::Int(0);
    }
    let n = removed.len() as i64;
    let mut change: Vec<&[u8]> = Vec::with_capacity(removed.len() + 2);
    change.extend_from_slice(&[b"SREM", key]);
    change.extend(removed);
    ctx.emit(&change);
    ctx.notify(EventClass::Set, "srem", key);
    Reply::Int(n)
}

/// `SMEMBERS key`
fn smembers(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.set(&args[1]) {
        Ok(Some(s)) => set_reply(s.members().iter().map(|m| &m[..])),
        Ok(None) => Reply::Set(Vec::new()),
        Err(e) => e,
    }
}

/// `SISMEMBER key member`
fn sismember(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.set(&args[1]) {
        Ok(s) => Reply::Int(s.is_some_and(|s| s.contains(&args[2])) as i64),
        Err(e) => e,
    }
}

/// `SMISMEMBER key member [member …]`
fn smismember(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.set(&args[1]) {
        Ok(s) => Reply::Array(args[2..].iter().map(|m| Reply::Int(s.is_some_and(|s| s.contains(m)) as i64)).collect()),
        Err(e) => e,
    }
}

/// `SCARD key`
fn scard(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.set(&args[1]) {
        Ok(s) => Reply::Int(s.map_or(0, |s| s.len() as i64)),
        Err(e) => e,
    }
}

/// `SPOP key [count]`
fn spop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
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
    let len = match ctx.set(key) {
        Ok(Some(s)) => s.len(),
        Ok(None) => return if count.is_some() { Reply::Set(Vec::new()) } else { Reply::Nil },
        Err(e) => return e,
    };
    if count == Some(0) {
        return Reply::Set(Vec::new());
    }
    let want = count.unwrap_or(1).min(len as u64) as usize;
    // Draw first: the generator and the set cannot be borrowed together.
    let draws: Vec<usize> = if want == len { Vec::new() } else { (0..want).map(|k| ctx.rng().below(len - k)).collect() };
    let Ok(Some(set)) = ctx.set_mut(key) else { return Reply::Nil };
    let popped: Vec<Bytes> = if want == len {
        let all = set.members().iter().map(|m| Bytes::copy_from_slice(m)).collect();
        *set = Set::new();
        all
    } else {
        let mut out = Vec::with_capacity(want);
        for i in draws {
            if let Some(m) = set.members().get_index(i).map(|m| Bytes::copy_from_slice(m)) {
                set.remove(&m);
                out.push(m);
            }
        }
        out
    };
    let mut change = Vec::with_capacity(popped.len() + 2);
    change.push(Bytes::from_static(b"SREM"));
    change.push(key.clone());
    change.extend(popped.iter().cloned());
    let db = ctx.db_index();
    ctx.emit_owned(db, change);
    ctx.notify(EventClass::Set, "spop", key);
    match count {
        None => Reply::opt_bulk(popped.into_iter().next()),
        Some(_) => Reply::Set(popped.into_iter().map(Reply::Bulk).collect()),
    }
}

/// Parses the count of SRANDMEMBER / ZRANDMEMBER / HRANDFIELD: `-LONG_MAX..=LONG_MAX`
/// as Redis 7, and at most [`MAX_RANDOM_REPEATS`] picks when negative.
pub(crate) fn parse_random_count(arg: &[u8]) -> Result<i64, Reply> {
    let n = parse_i64(arg).ok_or_else(|| Reply::err(errors::NOT_INTEGER))?;
    if n == i64::MIN {
        return Err(Reply::err(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if n < 0 && n.unsigned_abs() > MAX_RANDOM_REPEATS {
        return Err(Reply::err("ERR value is out of range"));
    }
    Ok(n)
}

/// Picks positions for a random-members reply over a collection of `len` items:
/// `count >= 0` gives distinct positions (all of them when `count >= len`), a negative
/// count gives `|count|` positions with repeats.
pub(crate) fn random_positions(ctx: &mut Ctx, len: usize, count: i64) -> Vec<usize> {
    if len == 0 || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        let n = count.unsigned_abs() as usize;
        return (0..n).map(|_| ctx.rng().below(len)).collect();
    }
    let n = count as u64;
    if n >= len as u64 {
        return (0..len).collect();
    }
    let n = n as usize;
    if n * 3 > len {
        // Large share of the collection: partial Fisher–Yates over all positions.
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..n {
            let j = i + ctx.rng().below(len - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    } else {
        // Small share: rejection sampling stays O(n).
        let mut seen = HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let i = ctx.rng().below(len);
            if seen.insert(i) {
                out.push(i);
            }
        }
        out
    }
}

/// `SRANDMEMBER key [count]`
fn srandmember(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    if args.len() > 3 {
        return Reply::err(errors::SYNTAX);
    }
    let key = &args[1];
    let Some(count_arg) = args.get(2) else {
        let len = match ctx.set(key) {
            Ok(Some(s)) => s.len(),
            Ok(None) => return Reply::Nil,
            Err(e) => return e,
        };
        let i = ctx.rng().below(len);
        return match ctx.set(key) {
            Ok(Some(s)) => Reply::opt_bulk(s.members().get_index(i)),
            _ => Reply::Nil,
        };
    };
    let count = match parse_random_count(count_arg) {
        Ok(n) => n,
        Err(e) => return e,
    };
    let len = match ctx.set(key) {
        Ok(Some(s)) => s.len(),
        Ok(None) => return Reply::Array(Vec::new()),
        Err(e) => return e,
    };
    let picks = random_positions(ctx, len, count);
    let Some(Value::Set(set)) = ctx.db().get(key).map(|e| &e.value) else { return Reply::Array(Vec::new()) };
    Reply::Array(picks.into_iter().filter_map(|i| set.members().get_index(i)).map(Reply::bulk).collect())
}

/// `SMOVE source destination member`
fn smove(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    // Redis answers 0 for a missing source before it checks the destination's type.
    let src_has = match ctx.set(src) {
        Ok(Some(s)) => s.contains(member),
        Ok(None) => return Reply::Int(0),
        Err(e) => return e,
    };
    if let Err(e) = ctx.set(dst) {
        return e;
    }
    if src[..] == dst[..] {
        return Reply::Int(src_has as i64);
    }
    if !src_has {
        return Reply::Int(0);
    }
    if let Ok(Some(s)) = ctx.set_mut(src) {
        s.remove(member);
    }
    ctx.emit(&[b"SREM", src, member]);
    ctx.notify(EventClass::Set, "srem", src);
    let added = match ctx.set_or_new(dst) {
        Ok(s) => s.insert(member),
        Err(e) => return e,
    };
    if added {
        ctx.emit(&[b"SADD", dst, member]);
        ctx.notify(EventClass::Set, "sadd", dst);
    }
    Reply::Int(1)
}

/// Looks up every key as a set (lazy expiry, stats, WRONGTYPE on any of them), then
/// borrows them all at once. Missing keys are `None`.
fn load_sets<'c>(ctx: &'c mut Ctx, keys: &[Bytes]) -> Result<Vec<Option<&'c Set>>, Reply> {
    let mut wrongtype = false;
    for k in keys {
        if ctx.set(k).is_err() {
            wrongtype = true;
        }
    }
    if wrongtype {
        return Err(Reply::err(errors::WRONGTYPE));
    }
    let db = ctx.db();
    Ok(keys
        .iter()
        .map(|k| match db.get(k).map(|e| &e.value) {
            Some(Value::Set(s)) => Some(&**s),
            _ => None,
        })
        .collect())
}

/// The set algebra operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// Computes `op` over the sets at `keys`; stops an intersection after `limit` members
/// (0: no limit). Members are returned in a deterministic order.
fn compute(ctx: &mut Ctx, keys: &[Bytes], op: Op, limit: usize) -> Result<Vec<Bytes>, Reply> {
    let sets = load_sets(ctx, keys)?;
    let mut out: Vec<Bytes> = Vec::new();
    match op {
        Op::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Ok(out);
            }
            let mut sets: Vec<&Set> = sets.into_iter().flatten().collect();
            // Walk the smallest set, probe the others: O(smallest × sets).
            sets.sort_by_key(|s| s.len());
            let Some((first, rest)) = sets.split_first() else { return Ok(out) };
            for m in first.members() {
                if rest.iter().all(|s| s.contains(m)) {
                    out.push(Bytes::copy_from_slice(m));
                    if limit != 0 && out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Op::Union => {
            let mut seen: HashSet<&[u8]> = HashSet::new();
            for s in sets.iter().flatten() {
                for m in s.members() {
                    if seen.insert(m) {
                        out.push(Bytes::copy_from_slice(m));
                    }
                }
            }
        }
        Op::Diff => {
            let Some(Some(first)) = sets.first() else { return Ok(out) };
            for m in first.members() {
                if !sets[1..].iter().flatten().any(|s| s.contains(m)) {
                    out.push(Bytes::copy_from_slice(m));
                }
            }
        }
    }
    Ok(out)
}

fn algebra(ctx: &mut Ctx, keys: &[Bytes], op: Op) -> Reply {
    match compute(ctx, keys, op, 0) {
        Ok(members) => Reply::Set(members.into_iter().map(Reply::Bulk).collect()),
        Err(e) => e,
    }
}

/// Stores `members` as the set at `dst` (clearing its TTL) and emits its restore, or
/// deletes `dst` when the result is empty. Returns the stored cardinality.
pub(crate) fn store_set(ctx: &mut Ctx, dst: &[u8], members: &[Bytes], event: &'static str) -> Reply {
    if members.is_empty() {
        if ctx.delete(dst) {
            ctx.emit(&[b"DEL", dst]);
            ctx.notify(EventClass::Generic, "del", dst);
        }
        return Reply::Int(0);
    }
    let mut set = Set::new();
    for m in members {
        set.insert(m);
    }
    let n = set.len() as i64;
    ctx.store(dst, Value::Set(Box::new(set)), 0);
    let db = ctx.db_index();
    ctx.emit_restore(db, dst);
    ctx.notify(EventClass::Set, event, dst);
    Reply::Int(n)
}

fn algebra_store(ctx: &mut Ctx, args: &[Bytes], op: Op, event: &'static str) -> Reply {
    match compute(ctx, &args[2..], op, 0) {
        Ok(members) => store_set(ctx, &args[1], &members, event),
        Err(e) => e,
    }
}

/// `SINTER key [key …]`
fn sinter(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra(ctx, &args[1..], Op::Inter)
}

/// `SUNION key [key …]`
fn sunion(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra(ctx, &args[1..], Op::Union)
}

/// `SDIFF key [key …]`
fn sdiff(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra(ctx, &args[1..], Op::Diff)
}

/// `SINTERSTORE destination key [key …]`
fn sinterstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra_store(ctx, args, Op::Inter, "sinterstore")
}

/// `SUNIONSTORE destination key [key …]`
fn sunionstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra_store(ctx, args, Op::Union, "sunionstore")
}

/// `SDIFFSTORE destination key [key …]`
fn sdiffstore(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    algebra_store(ctx, args, Op::Diff, "sdiffstore")
}

/// Parses `numkeys key [key …] [LIMIT limit]` of SINTERCARD / ZINTERCARD: the keys and
/// the limit (0: none), with Redis 7's error texts.
pub(crate) fn parse_intercard(args: &[Bytes]) -> Result<(&[Bytes], usize), Reply> {
    let numkeys = match parse_i64(&args[1]) {
        Some(n) if n > 0 => n as usize,
        _ => return Err(Reply::err(errors::NUMKEYS_POSITIVE)),
    };
    if numkeys > args.len() - 2 {
        return Err(Reply::err("ERR Number of keys can't be greater than number of args"));
    }
    let keys = &args[2..2 + numkeys];
    let mut limit = 0usize;
    let mut i = 2 + numkeys;
    while i < args.len() {
        if args[i].eq_ignore_ascii_case(b"LIMIT") && i + 1 < args.len() {
            limit = match parse_i64(&args[i + 1]) {
                Some(n) if n >= 0 => n as usize,
                _ => return Err(Reply::err("ERR LIMIT can't be negative")),
            };
            i += 2;
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
    }
    Ok((keys, limit))
}

/// `SINTERCARD numkeys key [key …] [LIMIT limit]`
fn sintercard(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (keys, limit) = match parse_intercard(args) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match compute(ctx, keys, Op::Inter, limit) {
        Ok(members) => Reply::Int(members.len() as i64),
        Err(e) => e,
    }
}

/// SCAN-family options after the cursor: `[MATCH pattern] [COUNT count]`.
pub(crate) struct ScanOpts<'a> {
    /// The glob, `None` for `*` or no MATCH.
    pub pattern: Option<&'a [u8]>,
    /// Positions to visit per call.
    pub count: usize,
}

/// Parses `[MATCH pattern] [COUNT count]` from `args[from..]` with Redis's errors.
pub(crate) fn parse_scan_opts(args: &[Bytes], from: usize) -> Result<ScanOpts<'_>, Reply> {
    let mut opts = ScanOpts { pattern: None, count: 10 };
    let mut i = from;
    while i < args.len() {
        let has_value = i + 1 < args.len();
        if args[i].eq_ignore_ascii_case(b"COUNT") && has_value {
            let n = parse_i64(&args[i + 1]).ok_or_else(|| Reply::err(errors::NOT_INTEGER))?;
            if n < 1 {
                return Err(Reply::err(errors::SYNTAX));
            }
            opts.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if args[i].eq_ignore_ascii_case(b"MATCH") && has_value {
            let p = &args[i + 1][..];
            opts.pattern = if p == b"*" { None } else { Some(p) };
        } else {
            return Err(Reply::err(errors::SYNTAX));
        }
        i += 2;
    }
    Ok(opts)
}

/// The reply of a SCAN-family command: `[cursor, [items…]]`.
pub(crate) fn scan_reply(cursor: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::bulk(cursor.to_string()), Reply::Array(items)])
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]`
fn sscan(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[2]) else { return Reply::err(errors::CURSOR) };
    let set = match ctx.set(&args[1]) {
        Ok(Some(s)) => s,
        Ok(None) => return scan_reply(0, Vec::new()),
        Err(e) => return e,
    };
    let opts = match parse_scan_opts(args, 3) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let mut items = Vec::with_capacity(opts.count.min(set.len()));
    let members = set.members();
    let next = scan_step(members.len(), cursor, opts.count, |i| {
        if let Some(m) = members.get_index(i) {
            if opts.pattern.is_none_or(|p| glob::matches(p, m, false)) {
                items.push(Reply::bulk(m));
            }
        }
    });
    scan_reply(next, items)
}

#[cfg(test)]
pub(crate) mod tests {
    use crate::reply::Reply;
    use crate::test_util::*;

    const WT: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn exists(t: &T, key: &str) -> bool {
        t.eng.dbs()[0].get(key.as_bytes()).is_some()
    }

    /// The members of a set/array reply, sorted.
    fn sorted(r: Reply) -> Vec<String> {
        let items = match r {
            Reply::Set(v) | Reply::Array(v) => v,
            other => panic!("not a collection: {:?}", other),
        };
        let mut out: Vec<String> = items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk: {:?}", other),
            })
            .collect();
        out.sort();
        out
    }

    fn set(items: &[&str]) -> Reply {
        Reply::Set(items.iter().map(Reply::bulk).collect())
    }

    #[test]
    fn sadd_srem_scard_sismember() {
        let mut t = T::new();
        t.int(&["SADD", "s", "a", "b", "a"], 2);
        assert_eq!(t.changes(), vec!["SADD s a b"]);
        t.int(&["SADD", "s", "a"], 0);
        assert!(t.changes().is_empty());
        t.int(&["SCARD", "s"], 2);
        t.int(&["SCARD", "nope"], 0);
        t.int(&["SISMEMBER", "s", "a"], 1);
        t.int(&["SISMEMBER", "s", "z"], 0);
        t.int(&["SISMEMBER", "nope", "z"], 0);
        assert_eq!(t.cmd(&["SMISMEMBER", "s", "a", "z", "b"]), Reply::Array(vec![Reply::Int(1), Reply::Int(0), Reply::Int(1)]));
        assert_eq!(t.cmd(&["SMISMEMBER", "nope", "a"]), Reply::Array(vec![Reply::Int(0)]));
        t.int(&["SREM", "s", "a", "z", "a"], 1);
        assert_eq!(t.changes(), vec!["SREM s a"]);
        t.int(&["SREM", "s", "z"], 0);
        t.int(&["SREM", "nope", "z"], 0);
        assert!(t.changes().is_empty());
        t.int(&["SREM", "s", "b"], 1);
        assert!(!exists(&t, "s"));
        t.err(&["SADD", "s"], "ERR wrong number of arguments for 'sadd' command");
        t.err(&["SREM", "s"], "ERR wrong number of arguments for 'srem' command");
        t.err(&["SCARD"], "ERR wrong number of arguments for 'scard' command");
        t.err(&["SISMEMBER", "s"], "ERR wrong number of arguments for 'sismember' command");
        t.err(&["SMISMEMBER", "s"], "ERR wrong number of arguments for 'smismember' command");
    }

    #[test]
    fn wrongtype() {
        let mut t = T::new();
        t.ok(&["SET", "str", "x"]);
        for cmd in [
            &["SADD", "str", "a"][..],
            &["SREM", "str", "a"],
            &["SMEMBERS", "str"],
            &["SISMEMBER", "str", "a"],
            &["SMISMEMBER", "str", "a"],
            &["SCARD", "str"],
            &["SPOP", "str"],
            &["SPOP", "str", "0"],
            &["SRANDMEMBER", "str"],
            &["SRANDMEMBER", "str", "2"],
            &["SMOVE", "str", "d", "a"],
            &["SINTER", "nope", "str"],
            &["SUNION", "str"],
            &["SDIFF", "nope", "str"],
            &["SINTERCARD", "2", "nope", "str"],
            &["SINTERSTORE", "d", "nope", "str"],
            &["SUNIONSTORE", "d", "str"],
            &["SDIFFSTORE", "d", "str"],
            &["SSCAN", "str", "0"],
        ] {
            t.err(cmd, WT);
        }
        t.int(&["SADD", "s", "a"], 1);
        t.err(&["SMOVE", "s", "str", "a"], WT);
        t.int(&["SISMEMBER", "s", "a"], 1);
        assert_eq!(t.changes(), vec!["SET str x", "SADD s a"]);
    }

    #[test]
    fn smembers_is_a_set_reply() {
        let mut t = T::new();
        assert_eq!(t.cmd(&["SMEMBERS", "s"]), Reply::Set(vec![]));
        t.int(&["SADD", "s", "b", "a", "c"], 3);
        assert_eq!(t.cmd(&["SMEMBERS", "s"]), set(&["b", "a", "c"]));
    }

    #[test]
    fn spop() {
        let mut t = T::new();
        t.nil(&["SPOP", "s"]);
        assert_eq!(t.cmd(&["SPOP", "s", "3"]), Reply::Set(vec![]));
        t.int(&["SADD", "s", "a", "b", "c", "d", "e"], 5);
        t.changes();
        let Reply::Bulk(m) = t.cmd(&["SPOP", "s"]) else { panic!() };
        let m = String::from_utf8(m.to_vec()).unwrap();
        assert_eq!(t.changes(), vec![format!("SREM s {}", m)]);
        t.int(&["SISMEMBER", "s", &m], 0);
        let two = sorted(t.cmd(&["SPOP", "s", "2"]));
        assert_eq!(two.len(), 2);
        assert_eq!(t.changes().len(), 1);
        t.int(&["SCARD", "s"], 2);
        assert_eq!(t.cmd(&["SPOP", "s", "0"]), Reply::Set(vec![]));
        assert!(t.changes().is_empty());
        let rest = sorted(t.cmd(&["SPOP", "s", "100"]));
        assert_eq!(rest.len(), 2);
        let ch = t.changes();
        assert_eq!(ch.len(), 1);
        assert!(ch[0].starts_with("SREM s "));
        assert!(!exists(&t, "s"));
        t.int(&["SADD", "s", "a"], 1);
        t.err(&["SPOP", "s", "-1"], "ERR value is out of range, must be positive");
        t.err(&["SPOP", "s", "x"], "ERR value is out of range, must be positive");
        t.err(&["SPOP", "s", "1", "2"], "ERR syntax error");
        t.err(&["SPOP"], "ERR wrong number of arguments for 'spop' command");
        assert_eq!(t.cmd(&["SPOP", "s", "9223372036854775807"]), set(&["a"]));
    }

    #[test]
    fn srandmember() {
        let mut t = T::new();
        t.nil(&["SRANDMEMBER", "s"]);
        assert_eq!(t.cmd(&["SRANDMEMBER", "s", "5"]), Reply::Array(vec![]));
        assert_eq!(t.cmd(&["SRANDMEMBER", "s", "-5"]), Reply::Array(vec![]));
        t.int(&["SADD", "s", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"], 10);
        t.changes();
        let Reply::Bulk(_) = t.cmd(&["SRANDMEMBER", "s"]) else { panic!() };
        assert_eq!(t.cmd(&["SRANDMEMBER", "s", "0"]), Reply::Array(vec![]));
        for n in [1usize, 2, 3, 4, 9] {
            let got = sorted(t.cmd(&["SRANDMEMBER", "s", &n.to_string()]));
            let mut dedup = got.clone();
            dedup.dedup();
            assert_eq!(got.len(), n);
            assert_eq!(dedup.len(), n, "distinct members for a positive count");
        }
        assert_eq!(sorted(t.cmd(&["SRANDMEMBER", "s", "100"])).len(), 10);
        assert_eq!(sorted(t.cmd(&["SRANDMEMBER", "s", "-100"])).len(), 100);
        assert_eq!(sorted(t.cmd(&["SRANDMEMBER", "s", "9223372036854775807"])).len(), 10);
        t.err(&["SRANDMEMBER", "s", "-9223372036854775807"], "ERR value is out of range");
        t.err(
            &["SRANDMEMBER", "s", "-9223372036854775808"],
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        );
        t.err(&["SRANDMEMBER", "s", "x"], "ERR value is not an integer or out of range");
        t.err(&["SRANDMEMBER", "s", "1", "2"], "ERR syntax error");
        assert!(t.changes().is_empty(), "SRANDMEMBER emits nothing");
        t.int(&["SCARD", "s"], 10);
    }

    #[test]
    fn smove() {
        let mut t = T::new();
        t.int(&["SADD", "a", "x", "y"], 2);
        t.int(&["SADD", "b", "y"], 1);
        t.changes();
        t.int(&["SMOVE", "a", "b", "x"], 1);
        assert_eq!(t.changes(), vec!["SREM a x", "SADD b x"]);
        t.int(&["SMOVE", "a", "b", "y"], 1);
        assert_eq!(t.changes(), vec!["SREM a y"], "already in dst: no SADD");
        assert!(!exists(&t, "a"));
        t.int(&["SMOVE", "a", "b", "y"], 0);
        t.int(&["SMOVE", "b", "b", "y"], 1);
        t.int(&["SMOVE", "b", "b", "zz"], 0);
        t.int(&["SMOVE", "b", "b2", "zz"], 0);
        assert!(t.changes().is_empty());
        t.int(&["SMOVE", "b", "new", "x"], 1);
        assert_eq!(sorted(t.cmd(&["SMEMBERS", "new"])), vec!["x"]);
        t.err(&["SMOVE", "b", "new"], "ERR wrong number of arguments for 'smove' command");
    }

    #[test]
    fn algebra() {
        let mut t = T::new();
        t.int(&["SADD", "a", "1", "2", "3", "4"], 4);
        t.int(&["SADD", "b", "2", "3", "5"], 3);
        t.int(&["SADD", "c", "3", "4", "5"], 3);
        assert_eq!(sorted(t.cmd(&["SINTER", "a", "b"])), vec!["2", "3"]);
        assert_eq!(sorted(t.cmd(&["SINTER", "a", "b", "c"])), vec!["3"]);
        assert_eq!(t.cmd(&["SINTER", "a", "nope"]), Reply::Set(vec![]));
        assert_eq!(sorted(t.cmd(&["SINTER", "a"])), vec!["1", "2", "3", "4"]);
        assert_eq!(sorted(t.cmd(&["SUNION", "a", "b", "nope"])), vec!["1", "2", "3", "4", "5"]);
        assert_eq!(sorted(t.cmd(&["SDIFF", "a", "b"])), vec!["1", "4"]);
        assert_eq!(sorted(t.cmd(&["SDIFF", "a", "b", "c"])), vec!["1"]);
        assert_eq!(sorted(t.cmd(&["SDIFF", "a", "a"])), Vec::<String>::new());
        assert_eq!(t.cmd(&["SDIFF", "nope", "a"]), Reply::Set(vec![]));
        t.err(&["SINTER"], "ERR wrong number of arguments for 'sinter' command");
        t.int(&["SINTERCARD", "2", "a", "b"], 2);
        t.int(&["SINTERCARD", "3", "a", "b", "c"], 1);
        t.int(&["SINTERCARD", "1", "a", "LIMIT", "2"], 2);
        t.int(&["SINTERCARD", "1", "a", "limit", "0"], 4);
        t.int(&["SINTERCARD", "2", "a", "nope"], 0);
        t.err(&["SINTERCARD", "0", "a"], "ERR numkeys should be greater than 0");
        t.err(&["SINTERCARD", "x", "a"], "ERR numkeys should be greater than 0");
        t.err(&["SINTERCARD", "3", "a", "b"], "ERR Number of keys can't be greater than number of args");
        t.err(&["SINTERCARD", "1", "a", "LIMIT", "-1"], "ERR LIMIT can't be negative");
        t.err(&["SINTERCARD", "1", "a", "LIMIT"], "ERR syntax error");
        t.err(&["SINTERCARD", "1", "a", "foo"], "ERR syntax error");
        t.err(&["SINTERCARD", "1"], "ERR wrong number of arguments for 'sintercard' command");
        assert!(t.changes().len() == 3);
    }

    #[test]
    fn store_forms() {
        let mut t = T::new();
        t.int(&["SADD", "a", "1", "2", "3"], 3);
        t.int(&["SADD", "b", "2", "3", "4"], 3);
        t.ok(&["SET", "dst", "x", "EX", "100"]);
        t.changes();
        t.int(&["SINTERSTORE", "dst", "a", "b"], 2);
        let ch = t.changes();
        assert_eq!(ch.len(), 2);
        assert_eq!(ch[0], "DEL dst");
        assert!(ch[1] == "SADD dst 2 3" || ch[1] == "SADD dst 3 2", "{:?}", ch);
        assert_eq!(t.eng.dbs()[0].get(&b"dst"[..]).map(|e| e.expire_at), Some(0));
        t.int(&["SUNIONSTORE", "dst", "a", "b"], 4);
        assert_eq!(sorted(t.cmd(&["SMEMBERS", "dst"])), vec!["1", "2", "3", "4"]);
        t.int(&["SDIFFSTORE", "dst", "a", "b"], 1);
        assert_eq!(sorted(t.cmd(&["SMEMBERS", "dst"])), vec!["1"]);
        // the destination may be a source
        t.int(&["SUNIONSTORE", "a", "a", "b"], 4);
        t.changes();
        t.int(&["SINTERSTORE", "dst", "a", "nope"], 0);
        assert_eq!(t.changes(), vec!["DEL dst"]);
        assert!(!exists(&t, "dst"));
        t.int(&["SDIFFSTORE", "dst", "nope", "a"], 0);
        assert!(t.changes().is_empty(), "nothing to delete, nothing emitted");
        t.err(&["SINTERSTORE", "dst"], "ERR wrong number of arguments for 'sinterstore' command");
    }

    #[test]
    fn sscan() {
        let mut t = T::new();
        assert_eq!(t.cmd(&["SSCAN", "s", "0"]), Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
        t.err(&["SSCAN", "s", "x"], "ERR invalid cursor");
        for i in 0..50 {
            t.cmd(&["SADD", "s", &format!("m{}", i)]);
        }
        let mut seen = Vec::new();
        let mut cursor = "0".to_string();
        loop {
            let r = t.cmd(&["SSCAN", "s", &cursor, "COUNT", "7"]);
            let Reply::Array(parts) = r else { panic!() };
            let Reply::Bulk(c) = &parts[0] else { panic!() };
            cursor = String::from_utf8(c.to_vec()).unwrap();
            seen.extend(sorted(parts[1].clone()));
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 50);
        let r = t.cmd(&["SSCAN", "s", "0", "MATCH", "m1*", "COUNT", "1000"]);
        let Reply::Array(parts) = r else { panic!() };
        assert_eq!(sorted(parts[1].clone()).len(), 11);
        t.err(&["SSCAN", "s", "0", "COUNT", "0"], "ERR syntax error");
        t.err(&["SSCAN", "s", "0", "COUNT", "x"], "ERR value is not an integer or out of range");
        t.err(&["SSCAN", "s", "0", "MATCH"], "ERR syntax error");
        t.err(&["SSCAN", "s", "0", "FOO", "bar"], "ERR syntax error");
        // options are checked only when the key exists, as Redis does
        assert_eq!(t.cmd(&["SSCAN", "nope", "0", "COUNT", "0"]), Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
    }

    /// Event names of the commands, in order, as `event:key`.
    pub(crate) fn events(t: &mut T, cmds: &[&[&str]]) -> Vec<String> {
        t.eng.config_mut().keyspace_events = u32::MAX;
        t.eng.take_events();
        for c in cmds {
            t.cmd(c);
        }
        let out = t
            .eng
            .take_events()
            .into_iter()
            .filter(|e| e.event != "keymiss")
            .map(|e| format!("{}:{}", e.event, String::from_utf8_lossy(&e.key)))
            .collect();
        t.eng.config_mut().keyspace_events = 0;
        out
    }

    #[test]
    fn keyspace_events() {
        let mut t = T::new();
        let got = events(
            &mut t,
            &[
                &["SADD", "a", "1", "2"],
                &["SADD", "a", "1"],
                &["SREM", "a", "2"],
                &["SMOVE", "a", "b", "1"],
                &["SADD", "a", "x", "y"],
                &["SPOP", "a"],
                &["SINTERSTORE", "d", "a", "b"],
                &["SUNIONSTORE", "d", "a", "b"],
                &["SDIFFSTORE", "d", "a", "b"],
            ],
        );
        // The `del` of an emptied key comes when the command settles, after its other events.
        let want = [
            "new:a", "sadd:a", "srem:a", "srem:a", "new:b", "sadd:b", "del:a", "new:a", "sadd:a", "spop:a", "new:d",
            "sunionstore:d", "sdiffstore:d",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn replay_gives_same_state() {
        let mut t = T::new();
        let script: &[&[&str]] = &[
            &["SADD", "a", "1", "2", "3", "4", "5", "6"],
            &["SADD", "b", "4", "5", "6", "7"],
            &["SREM", "a", "1"],
            &["SPOP", "a"],
            &["SPOP", "b", "2"],
            &["SMOVE", "a", "c", "4"],
            &["SMOVE", "a", "b", "5"],
            &["SINTERSTORE", "i", "a", "b"],
            &["SUNIONSTORE", "u", "a", "b", "c"],
            &["SDIFFSTORE", "d", "a", "b"],
            &["SRANDMEMBER", "a", "-3"],
            &["SPOP", "c", "10"],
            &["SADD", "e", "x"],
            &["SINTERSTORE", "e", "a", "nope"],
        ];
        for cmd in script {
            assert!(!t.cmd(cmd).is_error(), "{:?}", cmd);
        }
        t.assert_replays();
    }
}
