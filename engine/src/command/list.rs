//! List commands: pushes, pops (plain, multi-key and blocking), ranges, LPOS, LMOVE.
//!
//! Canonical changes: pushes emit themselves (`LPUSH k v…`), every pop emits
//! `LPOP k n` / `RPOP k n` with the number actually removed (deterministic on the key's
//! previous state), LMOVE and friends split into a pop on the source and a push on the
//! destination, and LSET/LREM/LTRIM/LINSERT emit themselves. Blocking commands that
//! cannot be served call [`Ctx::block`]; the host runs them again when a key changes.

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::{numkeys_at, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::ldouble;
use crate::reply::{errors, Reply};
use crate::util::{parse_i64, resolve_range};
use crate::value::{blob, Blob};

/// The list commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("lpush", -3, WRITE | DENYOOM | FAST, "list", Handler::Engine(lpush))
        .keys(1, 1, 1)
        .doc("Prepend one or multiple elements to a list", "1.0.0"),
    CommandSpec::new("rpush", -3, WRITE | DENYOOM | FAST, "list", Handler::Engine(rpush))
        .keys(1, 1, 1)
        .doc("Append one or multiple elements to a list", "1.0.0"),
    CommandSpec::new("lpushx", -3, WRITE | DENYOOM | FAST, "list", Handler::Engine(lpushx))
        .keys(1, 1, 1)
        .doc("Prepend an element to a list, only if the list exists", "2.2.0"),
    CommandSpec::new("rpushx", -3, WRITE | DENYOOM | FAST, "list", Handler::Engine(rpushx))
        .keys(1, 1, 1)
        .doc("Append an element to a list, only if the list exists", "2.2.0"),
    CommandSpec::new("lpop", -2, WRITE | FAST, "list", Handler::Engine(lpop))
        .keys(1, 1, 1)
        .doc("Remove and get the first elements in a list", "1.0.0"),
    CommandSpec::new("rpop", -2, WRITE | FAST, "list", Handler::Engine(rpop))
        .keys(1, 1, 1)
        .doc("Remove and get the last elements in a list", "1.0.0"),
    CommandSpec::new("lrange", 4, READONLY, "list", Handler::Engine(lrange))
        .keys(1, 1, 1)
        .doc("Get a range of elements from a list", "1.0.0"),
    CommandSpec::new("llen", 2, READONLY | FAST, "list", Handler::Engine(llen))
        .keys(1, 1, 1)
        .doc("Get the length of a list", "1.0.0"),
    CommandSpec::new("lindex", 3, READONLY, "list", Handler::Engine(lindex))
        .keys(1, 1, 1)
        .doc("Get an element from a list by its index", "1.0.0"),
    CommandSpec::new("lset", 4, WRITE | DENYOOM, "list", Handler::Engine(lset))
        .keys(1, 1, 1)
        .doc("Set the value of an element in a list by its index", "1.0.0"),
    CommandSpec::new("lrem", 4, WRITE, "list", Handler::Engine(lrem))
        .keys(1, 1, 1)
        .doc("Remove elements from a list", "1.0.0"),
    CommandSpec::new("ltrim", 4, WRITE, "list", Handler::Engine(ltrim))
        .keys(1, 1, 1)
        .doc("Trim a list to the specified range", "1.0.0"),
    CommandSpec::new("linsert", 5, WRITE | DENYOOM, "list", Handler::Engine(linsert))
        .keys(1, 1, 1)
        .doc("Insert an element before or after another element in a list", "2.2.0"),
    CommandSpec::new("lpos", -3, READONLY, "list", Handler::Engine(lpos))
        .keys(1, 1, 1)
        .doc("Return the index of matching elements on a list", "6.0.6"),
    CommandSpec::new("lmove", 5, WRITE | DENYOOM, "list", Handler::Engine(lmove))
        .keys(1, 2, 1)
        .doc("Pop an element from a list, push it to another list and return it", "6.2.0"),
    CommandSpec::new("rpoplpush", 3, WRITE | DENYOOM, "list", Handler::Engine(rpoplpush))
        .keys(1, 2, 1)
        .doc("Remove the last element in a list, prepend it to another list and return it", "1.2.0"),
    CommandSpec::new("lmpop", -4, WRITE, "list", Handler::Engine(lmpop))
        .keys_with(lmpop_keys)
        .doc("Pop elements from a list", "7.0.0"),
    CommandSpec::new("blpop", -3, WRITE | NOSCRIPT | BLOCKING, "list", Handler::Engine(blpop))
        .keys(1, -2, 1)
        .doc("Remove and get the first element in a list, or block until one is available", "2.0.0"),
    CommandSpec::new("brpop", -3, WRITE | NOSCRIPT | BLOCKING, "list", Handler::Engine(brpop))
        .keys(1, -2, 1)
        .doc("Remove and get the last element in a list, or block until one is available", "2.0.0"),
    CommandSpec::new("blmove", 6, WRITE | DENYOOM | NOSCRIPT | BLOCKING, "list", Handler::Engine(blmove))
        .keys(1, 2, 1)
        .doc(
            "Pop an element from a list, push it to another list and return it; or block until one is available",
            "6.2.0",
        ),
    CommandSpec::new("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT | BLOCKING, "list", Handler::Engine(brpoplpush))
        .keys(1, 2, 1)
        .doc(
            "Pop an element from a list, push it to another list and return it; or block until one is available",
            "2.2.0",
        ),
    CommandSpec::new("blmpop", -5, WRITE | BLOCKING, "list", Handler::Engine(blmpop))
        .keys_with(blmpop_keys)
        .doc("Pop elements from a list, or block until one is available", "7.0.0"),
];

fn lmpop_keys(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 1)
}

fn blmpop_keys(args: &[Bytes]) -> Vec<usize> {
    numkeys_at(args, 2)
}

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Left,
    Right,
}

impl End {
    /// `LEFT` / `RIGHT`, case-insensitive; anything else is Redis's syntax error.
    fn parse(arg: &[u8]) -> Result<End, Reply> {
        if arg.eq_ignore_ascii_case(b"left") {
            Ok(End::Left)
        } else if arg.eq_ignore_ascii_case(b"right") {
            Ok(End::Right)
        } else {
            Err(Reply::err(errors::SYNTAX))
        }
    }

    fn pop_name(self) -> &'static [u8] {
        match self {
            End::Left => b"LPOP",
            End::Right => b"RPOP",
        }
    }

    fn push_name(self) -> &'static [u8] {
        match self {
            End::Left => b"LPUSH",
            End::Right => b"RPUSH",
        }
    }

    fn pop_event(self) -> &'static str {
        match self {
            End::Left => "lpop",
            End::Right => "rpop",
        }
    }

    fn push_event(self) -> &'static str {
        match self {
            End::Left => "lpush",
            End::Right => "rpush",
        }
    }
}

/// Parses a blocking timeout in seconds as Redis 7.0 does (`strtold`, then milliseconds
/// truncated toward zero; values that do not fit are "negative"). Returns the absolute
/// deadline, or `None` to block forever (timeout 0, or a deadline past the clock's range).
pub(crate) fn parse_timeout(now_ms: u64, arg: &[u8]) -> Result<Option<u64>, Reply> {
    if !ldouble::is_long_double(arg) {
        return Err(Reply::err(errors::TIMEOUT_NOT_FLOAT));
    }
    // The exact long double as plain decimal text (strtold also reads hex floats); an
    // infinite value is out of range below.
    let secs = match ldouble::incr_by_float(None, arg) {
        Ok(text) => text.parse::<f64>().unwrap_or(f64::INFINITY),
        Err(_) => f64::INFINITY,
    };
    let ms = secs * 1000.0;
    // An out-of-range conversion yields LLONG_MIN on x86, which Redis reports as negative.
    if !(ms > -9.223_372_036_854_776e18 && ms < 9.223_372_036_854_776e18) {
        return Err(Reply::err(errors::TIMEOUT_NEGATIVE));
    }
    let ms = ms as i64;
    if ms < 0 {
        return Err(Reply::err(errors::TIMEOUT_NEGATIVE));
    }
    if ms == 0 {
        return Ok(None);
    }
    Ok(now_ms.checked_add(ms as u64))
}

/// Parses a count that must be >= 0 (`getPositiveLongFromObjectOrReply` without a
/// message: a non-number gets the same error as a negative one).
fn parse_positive(arg: &[u8]) -> Result<i64, Reply> {
    match parse_i64(arg) {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(Reply::err(errors::POSITIVE)),
    }
}

fn parse_int(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::err(errors::NOT_INTEGER))
}

/// Type-checks a key as a list without creating it or touching read statistics.
fn check_list(ctx: &mut Ctx, key: &[u8]) -> Result<bool, Reply> {
    Ok(ctx.list_mut(key)?.is_some())
}

/// Pushes `elems` at one end of the list at `key`, emits the change and the event, and
/// returns the new length. `existing_only` is the `…PUSHX` variant.
fn push_generic(ctx: &mut Ctx, args: &[Bytes], end: End, existing_only: bool) -> Reply {
    let key = &args[1];
    let list = if existing_only {
        match ctx.list_mut(key) {
            Err(e) => return e,
            Ok(None) => return Reply::Int(0),
            Ok(Some(l)) => l,
        }
    } else {
        match ctx.list_or_new(key) {
            Err(e) => return e,
            Ok(l) => l,
        }
    };
    for v in &args[2..] {
        match end {
            End::Left => list.push_front(blob(v)),
            End::Right => list.push_back(blob(v)),
        }
    }
    let len = list.len();
    let mut change = Vec::with_capacity(args.len());
    change.push(Bytes::from_static(end.push_name()));
    change.extend(args[1..].iter().cloned());
    let db = ctx.db_index();
    ctx.emit_owned(db, change);
    ctx.notify(EventClass::List, end.push_event(), key);
    Reply::Int(len as i64)
}

/// `LPUSH key element [element …]`
fn lpush(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    push_generic(ctx, args, End::Left, false)
}

/// `RPUSH key element [element …]`
fn rpush(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    push_generic(ctx, args, End::Right, false)
}

/// `LPUSHX key element [element …]`
fn lpushx(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    push_generic(ctx, args, End::Left, true)
}

/// `RPUSHX key element [element …]`
fn rpushx(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    push_generic(ctx, args, End::Right, true)
}

/// Pops up to `count` elements from one end of an existing, non-empty list (in pop
/// order), emitting `LPOP k n`/`RPOP k n` and the event. Returns an empty vector when the
/// key is missing or empty.
fn pop_n(ctx: &mut Ctx, key: &[u8], end: End, count: usize) -> Result<Vec<Blob>, Reply> {
    let Some(list) = ctx.list_mut(key)? else { return Ok(Vec::new()) };
    let n = count.min(list.len());
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let v = match end {
            End::Left => list.pop_front(),
            End::Right => list.pop_back(),
        };
        match v {
            Some(v) => out.push(v),
            None => break,
        }
    }
    if !out.is_empty() {
        let n = out.len().to_string();
        ctx.emit(&[end.pop_name(), key, n.as_bytes()]);
        ctx.notify(EventClass::List, end.pop_event(), key);
    }
    Ok(out)
}

fn pop_generic(ctx: &mut Ctx, args: &[Bytes], end: End) -> Reply {
    if args.len() > 3 {
        return Reply::err(errors::arity(&String::from_utf8_lossy(&args[0])));
    }
    let count = match args.get(2) {
        Some(a) => match parse_positive(a) {
            Ok(n) => Some(n as usize),
            Err(e) => return e,
        },
        None => None,
    };
    let key = &args[1];
    match ctx.list_mut(key) {
        Err(e) => return e,
        Ok(None) => return if count.is_some() { Reply::NilArray } else { Reply::Nil },
        Ok(Some(_)) => {}
    }
    match count {
        Some(0) => Reply::Array(Vec::new()),
        Some(n) => match pop_n(ctx, key, end, n) {
            Ok(items) => Reply::bulks(items.iter()),
            Err(e) => e,
        },
        None => match pop_n(ctx, key, end, 1) {
            Ok(items) => Reply::opt_bulk(items.first()),
            Err(e) => e,
        },
    }
}

/// `LPOP key [count]`
fn lpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    pop_generic(ctx, args, End::Left)
}

/// `RPOP key [count]`
fn rpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    pop_generic(ctx, args, End::Right)
}

/// `LRANGE key start stop`
fn lrange(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (start, stop) = match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let list = match ctx.list(&args[1]) {
        Err(e) => return e,
        Ok(None) => return Reply::Array(Vec::new()),
        Ok(Some(l)) => l,
    };
    match resolve_range(start, stop, list.len()) {
        None => Reply::Array(Vec::new()),
        Some((a, b)) => Reply::bulks(list.items().range(a..=b)),
    }
}

/// `LLEN key`
fn llen(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.list(&args[1]) {
        Err(e) => e,
        Ok(l) => Reply::Int(l.map_or(0, |l| l.len() as i64)),
    }
}

/// Resolves a possibly negative index against `len`.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { (len as i64).checked_add(index)? } else { index };
    (i >= 0 && (i as u64) < len as u64).then_some(i as usize)
}

/// `LINDEX key index`
fn lindex(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    // Redis looks the key up before parsing the index: a missing key answers nil even
    // for a malformed index.
    let list = match ctx.list(&args[1]) {
        Err(e) => return e,
        Ok(None) => return Reply::Nil,
        Ok(Some(l)) => l,
    };
    match parse_int(&args[2]) {
        Ok(index) => Reply::opt_bulk(resolve_index(index, list.len()).and_then(|i| list.get(i))),
        Err(e) => e,
    }
}

/// `LSET key index element`
fn lset(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let list = match ctx.list_mut(key) {
        Err(e) => return e,
        Ok(None) => return Reply::err(errors::NO_SUCH_KEY),
        Ok(Some(l)) => l,
    };
    let index = match parse_int(&args[2]) {
        Ok(i) => i,
        Err(e) => return e,
    };
    match resolve_index(index, list.len()) {
        Some(i) => {
            list.set(i, blob(&args[3]));
        }
        None => return Reply::err(errors::INDEX_OUT_OF_RANGE),
    }
    ctx.emit(&[b"LSET", key, &args[2], &args[3]]);
    ctx.notify(EventClass::List, "lset", key);
    Reply::Ok
}

/// `LREM key count element`
fn lrem(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let count = match parse_int(&args[2]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let (key, elem) = (&args[1], &args[3][..]);
    let list = match ctx.list_mut(key) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(l)) => l,
    };
    let total = list.items().iter().filter(|v| ***v == *elem).count();
    let limit = if count == 0 { total } else { (count.unsigned_abs().min(total as u64)) as usize };
    // Removing from the tail means skipping the first `total - limit` matches.
    let mut skip = if count < 0 { total - limit } else { 0 };
    let mut left = limit;
    list.retain(|v| {
        if left == 0 || **v != *elem {
            return true;
        }
        if skip > 0 {
            skip -= 1;
            return true;
        }
        left -= 1;
        false
    });
    if limit > 0 {
        ctx.emit(&[b"LREM", key, &args[2], elem]);
        ctx.notify(EventClass::List, "lrem", key);
    }
    Reply::Int(limit as i64)
}

/// `LTRIM key start stop`
fn ltrim(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (start, stop) = match (parse_int(&args[2]), parse_int(&args[3])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let key = &args[1];
    let list = match ctx.list_mut(key) {
        Err(e) => return e,
        Ok(None) => return Reply::Ok,
        Ok(Some(l)) => l,
    };
    let len = list.len();
    let (keep_from, keep_to) = match resolve_range(start, stop, len) {
        Some((a, b)) => (a, b + 1),
        None => (0, 0),
    };
    let removed = len - (keep_to - keep_from);
    if removed > 0 {
        list.keep_range(keep_from, keep_to);
        ctx.emit(&[b"LTRIM", key, &args[2], &args[3]]);
    }
    // Redis notifies even when nothing was trimmed.
    ctx.notify(EventClass::List, "ltrim", key);
    Reply::Ok
}

/// `LINSERT key BEFORE|AFTER pivot element`
fn linsert(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (where_, after) = if args[2].eq_ignore_ascii_case(b"after") {
        (&b"AFTER"[..], true)
    } else if args[2].eq_ignore_ascii_case(b"before") {
        (&b"BEFORE"[..], false)
    } else {
        return Reply::err(errors::SYNTAX);
    };
    let (key, pivot, elem) = (&args[1], &args[3][..], &args[4]);
    let list = match ctx.list_mut(key) {
        Err(e) => return e,
        Ok(None) => return Reply::Int(0),
        Ok(Some(l)) => l,
    };
    let Some(pos) = list.items().iter().position(|v| **v == *pivot) else { return Reply::Int(-1) };
    list.insert(if after { pos + 1 } else { pos }, blob(elem));
    let len = list.len();
    ctx.emit(&[b"LINSERT", key, where_, pivot, elem]);
    ctx.notify(EventClass::List, "linsert", key);
    Reply::Int(len as i64)
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]`
fn lpos(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let elem = &args[2][..];
    let (mut rank, mut count, mut maxlen): (i64, Option<i64>, i64) = (1, None, 0);
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let val = args.get(i + 1);
        match val {
            Some(v) if opt.eq_ignore_ascii_case(b"rank") => {
                // Redis 7.0 accepts LLONG_MIN here (its -LONG_MAX bound is not enforced).
                rank = match parse_i64(v) {
                    Some(r) => r,
                    None => return Reply::err(errors::NOT_INTEGER),
                };
                if rank == 0 {
                    return Reply::err(
                        "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                    );
                }
            }
            Some(v) if opt.eq_ignore_ascii_case(b"count") => match parse_i64(v) {
                Some(c) if c >= 0 => count = Some(c),
                _ => return Reply::err("ERR COUNT can't be negative"),
            },
            Some(v) if opt.eq_ignore_ascii_case(b"maxlen") => match parse_i64(v) {
                Some(m) if m >= 0 => maxlen = m,
                _ => return Reply::err("ERR MAXLEN can't be negative"),
            },
            _ => return Reply::err(errors::SYNTAX),
        }
        i += 2;
    }
    // A negative rank searches from the tail; like Redis, LLONG_MIN stays negative after
    // the flip and then matches from the first hit on.
    let from_tail = rank < 0;
    let rank = if rank < 0 { rank.wrapping_neg() } else { rank };
    let list = match ctx.list(&args[1]) {
        Err(e) => return e,
        Ok(None) => return if count.is_some() { Reply::Array(Vec::new()) } else { Reply::Nil },
        Ok(Some(l)) => l,
    };
    let len = list.len();
    let mut matches: i64 = 0;
    let mut found = Vec::new();
    for step in 0..len {
        if maxlen != 0 && step as i64 >= maxlen {
            break;
        }
        let index = if from_tail { len - 1 - step } else { step };
        if *list.items()[index] != *elem {
            continue;
        }
        matches += 1;
        if matches >= rank {
            found.push(Reply::Int(index as i64));
            match count {
                None => break,
                Some(c) if c != 0 && matches.wrapping_sub(rank).wrapping_add(1) >= c => break,
                _ => {}
            }
        }
    }
    match count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    }
}

/// Moves one element from `src` to `dst` (Redis's `lmoveGenericCommand`): nil when the
/// source is missing, WRONGTYPE for either key before anything changes.
fn move_generic(ctx: &mut Ctx, src: &[u8], dst: &[u8], from: End, to: End) -> Reply {
    match ctx.list_mut(src) {
        Err(e) => return e,
        Ok(None) => return Reply::Nil,
        Ok(Some(l)) if l.is_empty() => return Reply::Nil,
        Ok(Some(_)) => {}
    }
    if let Err(e) = check_list(ctx, dst) {
        return e;
    }
    let value = match ctx.list_mut(src) {
        Ok(Some(l)) => match from {
            End::Left => l.pop_front(),
            End::Right => l.pop_back(),
        },
        _ => None,
    };
    let Some(value) = value else { return Reply::Nil };
    // The source is still present (possibly empty) until the command settles, so a
    // rotation on one key pushes back into the same list.
    match ctx.list_or_new(dst) {
        Ok(list) => match to {
            End::Left => list.push_front(value.clone()),
            End::Right => list.push_back(value.clone()),
        },
        Err(e) => return e,
    }
    if src != dst {
        ctx.emit(&[from.pop_name(), src, b"1"]);
        ctx.emit(&[to.push_name(), dst, &value]);
    } else if from != to {
        // A rotation is one single-key change: split into a pop and a push, the pop would
        // delete a one-element list (and its TTL) between the two on a replica.
        let (f, t): (&[u8], &[u8]) = if from == End::Left { (b"LEFT", b"RIGHT") } else { (b"RIGHT", b"LEFT") };
        ctx.emit(&[b"LMOVE", src, dst, f, t]);
    }
    // Redis notifies the push before the pop.
    ctx.notify(EventClass::List, to.push_event(), dst);
    ctx.notify(EventClass::List, from.pop_event(), src);
    Reply::bulk(&value)
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT`
fn lmove(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (from, to) = match (End::parse(&args[3]), End::parse(&args[4])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    move_generic(ctx, &args[1], &args[2], from, to)
}

/// `RPOPLPUSH source destination`
fn rpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    move_generic(ctx, &args[1], &args[2], End::Right, End::Left)
}

/// Serves the first non-empty list among `keys` with up to `count` elements, as
/// `[key, [elements…]]`; `None` when every key is missing or empty. A key of another type
/// met before a non-empty list is an error, as in Redis.
fn mpop_first(ctx: &mut Ctx, keys: &[Bytes], end: End, count: usize) -> Result<Option<Reply>, Reply> {
    for key in keys {
        let items = pop_n(ctx, key, end, count)?;
        if !items.is_empty() {
            return Ok(Some(Reply::Array(vec![Reply::Bulk(key.clone()), Reply::bulks(items.iter())])));
        }
    }
    Ok(None)
}

fn bpop_generic(ctx: &mut Ctx, args: &[Bytes], end: End) -> Reply {
    let deadline = match parse_timeout(ctx.now_ms, &args[args.len() - 1]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let keys = &args[1..args.len() - 1];
    for key in keys {
        match pop_n(ctx, key, end, 1) {
            Err(e) => return e,
            Ok(mut items) => {
                if let Some(v) = items.pop() {
                    return Reply::Array(vec![Reply::Bulk(key.clone()), Reply::bulk(&v)]);
                }
            }
        }
    }
    ctx.block(keys.to_vec(), deadline, Reply::NilArray)
}

/// `BLPOP key [key …] timeout`
fn blpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    bpop_generic(ctx, args, End::Left)
}

/// `BRPOP key [key …] timeout`
fn brpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    bpop_generic(ctx, args, End::Right)
}

fn bmove_generic(ctx: &mut Ctx, args: &[Bytes], from: End, to: End, deadline: Option<u64>) -> Reply {
    let (src, dst) = (&args[1], &args[2]);
    match ctx.list_mut(src) {
        Err(e) => e,
        Ok(Some(l)) if !l.is_empty() => move_generic(ctx, src, dst, from, to),
        Ok(_) => ctx.block(vec![src.clone()], deadline, Reply::Nil),
    }
}

/// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout`
fn blmove(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (from, to) = match (End::parse(&args[3]), End::parse(&args[4])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    match parse_timeout(ctx.now_ms, &args[5]) {
        Ok(deadline) => bmove_generic(ctx, args, from, to, deadline),
        Err(e) => e,
    }
}

/// `BRPOPLPUSH source destination timeout`
fn brpoplpush(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match parse_timeout(ctx.now_ms, &args[3]) {
        Ok(deadline) => bmove_generic(ctx, args, End::Right, End::Left, deadline),
        Err(e) => e,
    }
}

/// Parses `numkeys key [key …] LEFT|RIGHT [COUNT count]` starting at `args[at]`.
fn parse_mpop(args: &[Bytes], at: usize) -> Result<(&[Bytes], End, usize), Reply> {
    let numkeys = match parse_i64(&args[at]) {
        Some(n) if n > 0 => n as u64,
        _ => return Err(Reply::err("ERR numkeys should be greater than 0")),
    };
    let where_idx = match (at as u64 + 1).checked_add(numkeys) {
        Some(w) if w < args.len() as u64 => w as usize,
        _ => return Err(Reply::err(errors::SYNTAX)),
    };
    let end = End::parse(&args[where_idx])?;
    let mut count = None;
    let mut i = where_idx + 1;
    while i < args.len() {
        match args.get(i + 1) {
            Some(v) if count.is_none() && args[i].eq_ignore_ascii_case(b"count") => match parse_i64(v) {
                Some(c) if c > 0 => count = Some(c as u64),
                _ => return Err(Reply::err("ERR count should be greater than 0")),
            },
            _ => return Err(Reply::err(errors::SYNTAX)),
        }
        i += 2;
    }
    let count = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    Ok((&args[at + 1..where_idx], end, count))
}

/// `LMPOP numkeys key [key …] LEFT|RIGHT [COUNT count]`
fn lmpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (keys, end, count) = match parse_mpop(args, 1) {
        Ok(p) => p,
        Err(e) => return e,
    };
    match mpop_first(ctx, keys, end, count) {
        Ok(Some(r)) => r,
        Ok(None) => Reply::NilArray,
        Err(e) => e,
    }
}

/// `BLMPOP timeout numkeys key [key …] LEFT|RIGHT [COUNT count]`
fn blmpop(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (keys, end, count) = match parse_mpop(args, 2) {
        Ok(p) => p,
        Err(e) => return e,
    };
    // Redis parses the timeout after the other arguments.
    let deadline = match parse_timeout(ctx.now_ms, &args[1]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    match mpop_first(ctx, keys, end, count) {
        Ok(Some(r)) => r,
        Ok(None) => ctx.block(keys.to_vec(), deadline, Reply::NilArray),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::change::{EventClass, KeyEvent};
    use crate::engine::{Block, Outcome};
    use crate::reply::Reply;
    use crate::test_util::*;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn ints(v: &[i64]) -> Reply {
        Reply::Array(v.iter().map(|&n| Reply::Int(n)).collect())
    }

    fn kv(key: &str, items: &[&str]) -> Reply {
        Reply::Array(vec![Reply::bulk(key), Reply::bulks(items.iter())])
    }

    fn outcome(t: &mut T, args: &[&str]) -> Outcome {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        t.eng.execute(&mut t.sess, &args, t.now, &mut crate::NoHost)
    }

    fn events(t: &mut T) -> Vec<String> {
        t.eng
            .take_events()
            .into_iter()
            .map(|KeyEvent { event, key, .. }| format!("{} {}", event, String::from_utf8_lossy(&key)))
            .collect()
    }

    fn exists(t: &T, key: &str) -> bool {
        t.eng.db(t.sess.db).is_some_and(|db| db.get(key.as_bytes()).is_some())
    }

    fn with_events() -> T {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::List.bit() | EventClass::Generic.bit();
        t
    }

    #[test]
    fn push_and_range() {
        let mut t = T::new();
        t.int(&["LPUSH", "l", "a", "b"], 2);
        t.int(&["RPUSH", "l", "c"], 3);
        t.arr(&["LRANGE", "l", "0", "-1"], &["b", "a", "c"]);
        assert_eq!(t.changes(), vec!["LPUSH l a b", "RPUSH l c"]);
        t.int(&["LPUSHX", "nope", "x"], 0);
        t.int(&["RPUSHX", "nope", "x"], 0);
        assert!(t.changes().is_empty());
        t.int(&["LPUSHX", "l", "x", "y"], 5);
        t.int(&["RPUSHX", "l", "z"], 6);
        t.arr(&["LRANGE", "l", "0", "-1"], &["y", "x", "b", "a", "c", "z"]);
        assert_eq!(t.changes(), vec!["LPUSH l x y", "RPUSH l z"]);
        t.err(&["LPUSH", "l"], "ERR wrong number of arguments for 'lpush' command");
        t.err(&["RPUSHX", "l"], "ERR wrong number of arguments for 'rpushx' command");
        t.ok(&["SET", "s", "x"]);
        for cmd in ["LPUSH", "RPUSH", "LPUSHX", "RPUSHX"] {
            t.err(&[cmd, "s", "v"], WRONGTYPE);
        }
    }

    #[test]
    fn lrange_ranges() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "a", "b", "c", "d"], 4);
        t.arr(&["LRANGE", "l", "1", "2"], &["b", "c"]);
        t.arr(&["LRANGE", "l", "-2", "-1"], &["c", "d"]);
        t.arr(&["LRANGE", "l", "-100", "100"], &["a", "b", "c", "d"]);
        t.arr(&["LRANGE", "l", "2", "1"], &[]);
        t.arr(&["LRANGE", "l", "5", "10"], &[]);
        t.arr(&["LRANGE", "l", "-9223372036854775808", "9223372036854775807"], &["a", "b", "c", "d"]);
        t.arr(&["LRANGE", "nokey", "0", "-1"], &[]);
        t.err(&["LRANGE", "nokey", "a", "1"], "ERR value is not an integer or out of range");
        t.err(&["LRANGE", "l", "0", "1.5"], "ERR value is not an integer or out of range");
        t.err(&["LRANGE", "l", "0"], "ERR wrong number of arguments for 'lrange' command");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LRANGE", "s", "0", "1"], WRONGTYPE);
        t.err(&["LLEN", "s"], WRONGTYPE);
        t.int(&["LLEN", "l"], 4);
        t.int(&["LLEN", "nokey"], 0);
        t.err(&["LLEN"], "ERR wrong number of arguments for 'llen' command");
    }

    #[test]
    fn pops() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "a", "b", "c", "d", "e"], 5);
        t.changes();
        t.bulk(&["LPOP", "l"], "a");
        t.bulk(&["RPOP", "l"], "e");
        t.arr(&["LPOP", "l", "2"], &["b", "c"]);
        assert_eq!(t.changes(), vec!["LPOP l 1", "RPOP l 1", "LPOP l 2"]);
        t.arr(&["RPOP", "l", "0"], &[]);
        assert!(t.changes().is_empty());
        t.arr(&["RPOP", "l", "9223372036854775807"], &["d"]);
        assert_eq!(t.changes(), vec!["RPOP l 1"]);
        assert!(!exists(&t, "l"));
        t.nil(&["LPOP", "l"]);
        assert_eq!(t.cmd(&["LPOP", "l", "0"]), Reply::NilArray);
        assert_eq!(t.cmd(&["RPOP", "l", "3"]), Reply::NilArray);
        t.err(&["LPOP", "l", "-1"], "ERR value is out of range, must be positive");
        t.err(&["LPOP", "l", "abc"], "ERR value is out of range, must be positive");
        t.err(&["LPOP", "l", "1", "2"], "ERR wrong number of arguments for 'lpop' command");
        t.err(&["RPOP", "l", "1", "2"], "ERR wrong number of arguments for 'rpop' command");
        t.err(&["RPOP"], "ERR wrong number of arguments for 'rpop' command");
        t.int(&["RPUSH", "l", "a", "b", "c"], 3);
        t.arr(&["RPOP", "l", "2"], &["c", "b"]);
        t.ok(&["SET", "s", "x"]);
        t.err(&["LPOP", "s"], WRONGTYPE);
        t.err(&["RPOP", "s", "1"], WRONGTYPE);
        assert!(t.changes().iter().all(|c| !c.starts_with("LPOP s") && !c.starts_with("RPOP s")));
    }

    #[test]
    fn pop_events_and_deletion() {
        let mut t = with_events();
        t.int(&["RPUSH", "l", "a", "b"], 2);
        t.arr(&["LPOP", "l", "5"], &["a", "b"]);
        assert_eq!(events(&mut t), vec!["rpush l", "lpop l", "del l"]);
    }

    #[test]
    fn lindex_and_lset() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "a", "b", "c"], 3);
        t.bulk(&["LINDEX", "l", "0"], "a");
        t.bulk(&["LINDEX", "l", "-1"], "c");
        t.nil(&["LINDEX", "l", "3"]);
        t.nil(&["LINDEX", "l", "-4"]);
        t.nil(&["LINDEX", "l", "-9223372036854775808"]);
        t.nil(&["LINDEX", "nokey", "abc"]);
        t.err(&["LINDEX", "l", "abc"], "ERR value is not an integer or out of range");
        t.changes();
        t.ok(&["LSET", "l", "-1", "z"]);
        t.ok(&["LSET", "l", "0", "y"]);
        t.arr(&["LRANGE", "l", "0", "-1"], &["y", "b", "z"]);
        assert_eq!(t.changes(), vec!["LSET l -1 z", "LSET l 0 y"]);
        t.err(&["LSET", "l", "3", "x"], "ERR index out of range");
        t.err(&["LSET", "l", "-4", "x"], "ERR index out of range");
        t.err(&["LSET", "l", "abc", "x"], "ERR value is not an integer or out of range");
        t.err(&["LSET", "nokey", "abc", "x"], "ERR no such key");
        t.err(&["LSET", "nokey", "0", "x"], "ERR no such key");
        assert!(t.changes().is_empty());
        t.ok(&["SET", "s", "x"]);
        t.err(&["LINDEX", "s", "0"], WRONGTYPE);
        t.err(&["LSET", "s", "0", "x"], WRONGTYPE);
        t.err(&["LSET", "l", "0"], "ERR wrong number of arguments for 'lset' command");
    }

    #[test]
    fn lrem_directions() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "x", "a", "x", "b", "x", "c", "x"], 7);
        t.changes();
        t.int(&["LREM", "l", "2", "x"], 2);
        t.arr(&["LRANGE", "l", "0", "-1"], &["a", "b", "x", "c", "x"]);
        t.int(&["LREM", "l", "-1", "x"], 1);
        t.arr(&["LRANGE", "l", "0", "-1"], &["a", "b", "x", "c"]);
        t.int(&["RPUSH", "l", "x", "x"], 6);
        t.int(&["LREM", "l", "-2", "x"], 2);
        t.arr(&["LRANGE", "l", "0", "-1"], &["a", "b", "x", "c"]);
        t.int(&["LREM", "l", "0", "x"], 1);
        t.int(&["LREM", "l", "0", "nothere"], 0);
        t.int(&["LREM", "l", "-9223372036854775808", "a"], 1);
        t.arr(&["LRANGE", "l", "0", "-1"], &["b", "c"]);
        let c = t.changes();
        assert_eq!(c, ["LREM l 2 x", "LREM l -1 x", "RPUSH l x x", "LREM l -2 x", "LREM l 0 x", "LREM l -9223372036854775808 a"]);
        t.int(&["LREM", "nokey", "1", "x"], 0);
        t.err(&["LREM", "nokey", "abc", "x"], "ERR value is not an integer or out of range");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LREM", "s", "0", "x"], WRONGTYPE);
        t.int(&["LREM", "l", "0", "b"], 1);
        t.int(&["LREM", "l", "0", "c"], 1);
        assert!(!exists(&t, "l"));
    }

    #[test]
    fn ltrim_cases() {
        let mut t = with_events();
        t.int(&["RPUSH", "l", "a", "b", "c", "d", "e"], 5);
        t.changes();
        events(&mut t);
        t.ok(&["LTRIM", "l", "1", "-2"]);
        t.arr(&["LRANGE", "l", "0", "-1"], &["b", "c", "d"]);
        t.ok(&["LTRIM", "l", "-100", "100"]);
        assert_eq!(t.changes(), vec!["LTRIM l 1 -2"]);
        assert_eq!(events(&mut t), vec!["ltrim l", "ltrim l"]);
        t.ok(&["LTRIM", "l", "2", "1"]);
        assert!(!exists(&t, "l"));
        assert_eq!(t.changes(), vec!["LTRIM l 2 1"]);
        assert_eq!(events(&mut t), vec!["ltrim l", "del l"]);
        t.ok(&["LTRIM", "nokey", "0", "1"]);
        t.err(&["LTRIM", "nokey", "a", "1"], "ERR value is not an integer or out of range");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LTRIM", "s", "0", "1"], WRONGTYPE);
        t.int(&["RPUSH", "l", "a", "b"], 2);
        t.ok(&["LTRIM", "l", "5", "10"]);
        assert!(!exists(&t, "l"));
    }

    #[test]
    fn linsert_cases() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "a", "c"], 2);
        t.changes();
        t.int(&["LINSERT", "l", "before", "c", "b"], 3);
        t.int(&["LINSERT", "l", "AFTER", "c", "d"], 4);
        t.arr(&["LRANGE", "l", "0", "-1"], &["a", "b", "c", "d"]);
        t.int(&["LINSERT", "l", "BEFORE", "zz", "x"], -1);
        t.int(&["LINSERT", "nokey", "BEFORE", "a", "x"], 0);
        assert_eq!(t.changes(), vec!["LINSERT l BEFORE c b", "LINSERT l AFTER c d"]);
        t.err(&["LINSERT", "l", "middle", "a", "x"], "ERR syntax error");
        t.err(&["LINSERT", "nokey", "middle", "a", "x"], "ERR syntax error");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LINSERT", "s", "BEFORE", "a", "x"], WRONGTYPE);
        t.err(&["LINSERT", "l", "BEFORE", "a"], "ERR wrong number of arguments for 'linsert' command");
    }

    #[test]
    fn lpos_options() {
        let mut t = T::new();
        t.int(&["RPUSH", "l", "a", "b", "c", "1", "2", "3", "c", "c"], 8);
        t.int(&["LPOS", "l", "c"], 2);
        t.int(&["LPOS", "l", "c", "RANK", "2"], 6);
        t.int(&["LPOS", "l", "c", "RANK", "-1"], 7);
        t.int(&["LPOS", "l", "c", "RANK", "-3"], 2);
        t.nil(&["LPOS", "l", "c", "RANK", "4"]);
        assert_eq!(t.cmd(&["LPOS", "l", "c", "COUNT", "2"]), ints(&[2, 6]));
        assert_eq!(t.cmd(&["LPOS", "l", "c", "COUNT", "0"]), ints(&[2, 6, 7]));
        assert_eq!(t.cmd(&["LPOS", "l", "c", "RANK", "-1", "COUNT", "2"]), ints(&[7, 6]));
        assert_eq!(t.cmd(&["LPOS", "l", "c", "RANK", "2", "COUNT", "0"]), ints(&[6, 7]));
        assert_eq!(t.cmd(&["LPOS", "l", "c", "COUNT", "0", "MAXLEN", "7"]), ints(&[2, 6]));
        assert_eq!(t.cmd(&["LPOS", "l", "x", "COUNT", "0"]), ints(&[]));
        t.nil(&["LPOS", "l", "c", "MAXLEN", "2"]);
        t.int(&["LPOS", "l", "c", "MAXLEN", "3"], 2);
        t.int(&["LPOS", "l", "c", "RANK", "-9223372036854775808"], 7);
        // Redis 7.0.15 never reaches the COUNT limit with this rank (its counter overflows).
        assert_eq!(t.cmd(&["LPOS", "l", "c", "RANK", "-9223372036854775808", "COUNT", "2"]), ints(&[7, 6, 2]));
        t.int(&["LPOS", "l", "c", "rank", "1", "maxlen", "0"], 2);
        t.nil(&["LPOS", "nokey", "c"]);
        assert_eq!(t.cmd(&["LPOS", "nokey", "c", "COUNT", "0"]), ints(&[]));
        let rank0 = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list";
        t.err(&["LPOS", "l", "c", "RANK", "0"], rank0);
        t.err(&["LPOS", "nokey", "c", "RANK", "0"], rank0);
        t.err(&["LPOS", "l", "c", "RANK", "abc"], "ERR value is not an integer or out of range");
        t.err(&["LPOS", "l", "c", "COUNT", "-1"], "ERR COUNT can't be negative");
        t.err(&["LPOS", "l", "c", "COUNT", "abc"], "ERR COUNT can't be negative");
        t.err(&["LPOS", "l", "c", "MAXLEN", "-1"], "ERR MAXLEN can't be negative");
        t.err(&["LPOS", "l", "c", "MAXLEN", "x"], "ERR MAXLEN can't be negative");
        t.err(&["LPOS", "l", "c", "COUNT"], "ERR syntax error");
        t.err(&["LPOS", "l", "c", "FOO", "1"], "ERR syntax error");
        t.err(&["LPOS", "l"], "ERR wrong number of arguments for 'lpos' command");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LPOS", "s", "c"], WRONGTYPE);
    }

    #[test]
    fn lmove_and_rpoplpush() {
        let mut t = with_events();
        t.int(&["RPUSH", "src", "a", "b", "c"], 3);
        t.changes();
        events(&mut t);
        t.bulk(&["LMOVE", "src", "dst", "LEFT", "RIGHT"], "a");
        t.bulk(&["RPOPLPUSH", "src", "dst"], "c");
        t.arr(&["LRANGE", "dst", "0", "-1"], &["c", "a"]);
        assert_eq!(t.changes(), vec!["LPOP src 1", "RPUSH dst a", "RPOP src 1", "LPUSH dst c"]);
        assert_eq!(events(&mut t), vec!["rpush dst", "lpop src", "lpush dst", "rpop src"]);
        // Rotation on one key is one change; moving back to the same end changes nothing.
        t.int(&["RPUSH", "r", "1", "2", "3"], 3);
        t.bulk(&["LMOVE", "r", "r", "right", "left"], "3");
        t.arr(&["LRANGE", "r", "0", "-1"], &["3", "1", "2"]);
        t.bulk(&["RPOPLPUSH", "r", "r"], "2");
        t.int(&["RPUSH", "one", "x"], 1);
        t.bulk(&["LMOVE", "one", "one", "LEFT", "LEFT"], "x");
        t.arr(&["LRANGE", "one", "0", "-1"], &["x"]);
        assert_eq!(t.changes(), vec!["RPUSH r 1 2 3", "LMOVE r r RIGHT LEFT", "LMOVE r r RIGHT LEFT", "RPUSH one x"]);
        events(&mut t);
        // The last element moves and the source disappears.
        t.bulk(&["LMOVE", "src", "dst", "LEFT", "LEFT"], "b");
        assert!(!exists(&t, "src"));
        t.nil(&["LMOVE", "src", "dst", "LEFT", "LEFT"]);
        t.nil(&["RPOPLPUSH", "src", "dst"]);
        t.err(&["LMOVE", "src", "dst", "UP", "LEFT"], "ERR syntax error");
        t.err(&["LMOVE", "dst", "x", "LEFT", "DOWN"], "ERR syntax error");
        t.ok(&["SET", "s", "x"]);
        t.err(&["LMOVE", "dst", "s", "LEFT", "LEFT"], WRONGTYPE);
        t.err(&["RPOPLPUSH", "s", "dst"], WRONGTYPE);
        t.nil(&["RPOPLPUSH", "nokey", "s"]);
        t.arr(&["LRANGE", "dst", "0", "-1"], &["b", "c", "a"]);
        t.err(&["LMOVE", "a", "b", "LEFT"], "ERR wrong number of arguments for 'lmove' command");
    }

    #[test]
    fn lmpop_cases() {
        let mut t = T::new();
        t.int(&["RPUSH", "b", "1", "2", "3"], 3);
        t.changes();
        assert_eq!(t.cmd(&["LMPOP", "2", "a", "b", "LEFT"]), kv("b", &["1"]));
        assert_eq!(t.cmd(&["LMPOP", "2", "a", "b", "right", "count", "10"]), kv("b", &["3", "2"]));
        assert_eq!(t.changes(), vec!["LPOP b 1", "RPOP b 2"]);
        assert_eq!(t.cmd(&["LMPOP", "2", "a", "b", "LEFT"]), Reply::NilArray);
        t.err(&["LMPOP", "0", "a", "LEFT"], "ERR numkeys should be greater than 0");
        t.err(&["LMPOP", "abc", "a", "LEFT"], "ERR numkeys should be greater than 0");
        t.err(&["LMPOP", "2", "a", "LEFT"], "ERR syntax error");
        t.err(&["LMPOP", "9223372036854775807", "a", "LEFT"], "ERR syntax error");
        t.err(&["LMPOP", "1", "a", "MIDDLE"], "ERR syntax error");
        t.err(&["LMPOP", "1", "a", "LEFT", "COUNT", "0"], "ERR count should be greater than 0");
        t.err(&["LMPOP", "1", "a", "LEFT", "COUNT", "x"], "ERR count should be greater than 0");
        t.err(&["LMPOP", "1", "a", "LEFT", "COUNT", "1", "COUNT", "1"], "ERR syntax error");
        t.err(&["LMPOP", "1", "a", "LEFT", "FOO"], "ERR syntax error");
        t.err(&["LMPOP", "1", "a"], "ERR wrong number of arguments for 'lmpop' command");
        t.ok(&["SET", "s", "x"]);
        t.int(&["RPUSH", "l", "v"], 1);
        t.err(&["LMPOP", "2", "s", "l", "LEFT"], WRONGTYPE);
        // A non-empty list before the wrong-typed key is served.
        assert_eq!(t.cmd(&["LMPOP", "2", "l", "s", "LEFT"]), kv("l", &["v"]));
        let spec = crate::command::lookup(b"lmpop").unwrap();
        let args = crate::command::args_of(&[b"LMPOP", b"2", b"a", b"b", b"LEFT"]);
        assert_eq!(spec.key_positions(&args), vec![2, 3]);
        let spec = crate::command::lookup(b"blmpop").unwrap();
        let args = crate::command::args_of(&[b"BLMPOP", b"0", b"2", b"a", b"b", b"LEFT"]);
        assert_eq!(spec.key_positions(&args), vec![3, 4]);
        let spec = crate::command::lookup(b"blpop").unwrap();
        let args = crate::command::args_of(&[b"BLPOP", b"a", b"b", b"0"]);
        assert_eq!(spec.key_positions(&args), vec![1, 2]);
    }

    #[test]
    fn blocking_serves_at_once() {
        let mut t = with_events();
        t.int(&["RPUSH", "b", "1", "2"], 2);
        t.changes();
        events(&mut t);
        assert_eq!(t.cmd(&["BLPOP", "a", "b", "0"]), Reply::bulks(["b", "1"]));
        assert_eq!(t.cmd(&["BRPOP", "a", "b", "1.5"]), Reply::bulks(["b", "2"]));
        assert_eq!(t.changes(), vec!["LPOP b 1", "RPOP b 1"]);
        assert_eq!(events(&mut t), vec!["lpop b", "rpop b", "del b"]);
        t.int(&["RPUSH", "src", "x", "y"], 2);
        t.bulk(&["BLMOVE", "src", "dst", "RIGHT", "LEFT", "0"], "y");
        t.bulk(&["BRPOPLPUSH", "src", "dst", "0"], "x");
        t.arr(&["LRANGE", "dst", "0", "-1"], &["x", "y"]);
        t.int(&["RPUSH", "m", "1", "2", "3"], 3);
        assert_eq!(t.cmd(&["BLMPOP", "0", "2", "a", "m", "RIGHT", "COUNT", "2"]), kv("m", &["3", "2"]));
        let c = t.changes();
        assert_eq!(c[c.len() - 1], "RPOP m 2");
    }

    #[test]
    fn blocking_blocks() {
        let mut t = T::new();
        let now = t.now;
        let keys = |ks: &[&str]| ks.iter().map(|k| Bytes::copy_from_slice(k.as_bytes())).collect::<Vec<_>>();
        assert_eq!(
            outcome(&mut t, &["BLPOP", "a", "b", "0"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a", "b"]), deadline_ms: None, timeout_reply: Reply::NilArray })
        );
        assert_eq!(
            outcome(&mut t, &["BRPOP", "a", "1.5"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a"]), deadline_ms: Some(now + 1500), timeout_reply: Reply::NilArray })
        );
        assert_eq!(
            outcome(&mut t, &["BLMOVE", "a", "d", "LEFT", "LEFT", "0.25"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a"]), deadline_ms: Some(now + 250), timeout_reply: Reply::Nil })
        );
        assert_eq!(
            outcome(&mut t, &["BRPOPLPUSH", "a", "d", "0"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a"]), deadline_ms: None, timeout_reply: Reply::Nil })
        );
        assert_eq!(
            outcome(&mut t, &["BLMPOP", "2", "2", "a", "b", "LEFT"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a", "b"]), deadline_ms: Some(now + 2000), timeout_reply: Reply::NilArray })
        );
        // A timeout that rounds to 0 ms blocks forever, as in Redis.
        assert_eq!(
            outcome(&mut t, &["BLPOP", "a", "-0.0001"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a"]), deadline_ms: None, timeout_reply: Reply::NilArray })
        );
        assert_eq!(
            outcome(&mut t, &["BLPOP", "a", "0x10"]),
            Outcome::Blocked(Block { db: 0, keys: keys(&["a"]), deadline_ms: Some(now + 16000), timeout_reply: Reply::NilArray })
        );
        // A missing source blocks even when the destination has the wrong type.
        t.ok(&["SET", "s", "x"]);
        assert!(matches!(outcome(&mut t, &["BLMOVE", "a", "s", "LEFT", "LEFT", "0"]), Outcome::Blocked(_)));
        assert!(t.changes().iter().all(|c| c.starts_with("SET")));
    }

    #[test]
    fn blocking_errors() {
        let mut t = T::new();
        for bad in ["abc", "nan", " 1", "1 ", ""] {
            t.err(&["BLPOP", "a", bad], "ERR timeout is not a float or out of range");
        }
        for neg in ["-1", "inf", "-inf", "1e300", "9223372036854775807"] {
            t.err(&["BLPOP", "a", neg], "ERR timeout is negative");
        }
        t.err(&["BRPOP", "a", "-1"], "ERR timeout is negative");
        t.err(&["BLMOVE", "a", "b", "UP", "LEFT", "0"], "ERR syntax error");
        t.err(&["BLMOVE", "a", "b", "LEFT", "LEFT", "x"], "ERR timeout is not a float or out of range");
        t.err(&["BRPOPLPUSH", "a", "b", "x"], "ERR timeout is not a float or out of range");
        t.err(&["BLMPOP", "x", "1", "a", "LEFT"], "ERR timeout is not a float or out of range");
        t.err(&["BLMPOP", "-1", "1", "a", "LEFT"], "ERR timeout is negative");
        t.err(&["BLMPOP", "x", "0", "a", "LEFT"], "ERR numkeys should be greater than 0");
        t.err(&["BLMPOP", "0", "1", "a", "UP"], "ERR syntax error");
        t.err(&["BLPOP", "a"], "ERR wrong number of arguments for 'blpop' command");
        t.err(&["BLMPOP", "0", "1", "a"], "ERR wrong number of arguments for 'blmpop' command");
        t.ok(&["SET", "s", "x"]);
        t.err(&["BLPOP", "s", "0"], WRONGTYPE);
        t.err(&["BLPOP", "nokey", "s", "0"], WRONGTYPE);
        t.err(&["BLMOVE", "s", "d", "LEFT", "LEFT", "0"], WRONGTYPE);
        t.err(&["BLMPOP", "0", "1", "s", "LEFT"], WRONGTYPE);
        t.int(&["RPUSH", "l", "v"], 1);
        assert_eq!(t.cmd(&["BLPOP", "l", "s", "0"]), Reply::bulks(["l", "v"]));
        t.int(&["RPUSH", "l", "v"], 1);
        t.err(&["BLMOVE", "l", "s", "LEFT", "LEFT", "0"], WRONGTYPE);
    }

    #[test]
    fn blocking_inside_multi_answers_timeout() {
        let mut t = T::new();
        t.ok(&["MULTI"]);
        t.simple(&["BLPOP", "a", "0"], "QUEUED");
        t.simple(&["BLMOVE", "a", "b", "LEFT", "LEFT", "0"], "QUEUED");
        t.simple(&["BLMPOP", "0", "1", "a", "LEFT"], "QUEUED");
        t.simple(&["BRPOPLPUSH", "a", "b", "0"], "QUEUED");
        assert_eq!(t.cmd(&["EXEC"]), Reply::Array(vec![Reply::NilArray, Reply::Nil, Reply::NilArray, Reply::Nil]));
    }

    #[test]
    fn memory_is_settled() {
        let mut t = T::new();
        let base = t.eng.used_memory();
        t.int(&["RPUSH", "l", "aaaaaaaaaaaaaaaaaaaaaaaaa", "b"], 2);
        assert!(t.eng.used_memory() > base);
        t.arr(&["LPOP", "l", "2"], &["aaaaaaaaaaaaaaaaaaaaaaaaa", "b"]);
        assert_eq!(t.eng.used_memory(), base);
    }

    #[test]
    fn replay_gives_same_state() {
        let mut t = T::new();
        let script: &[&[&str]] = &[
            &["RPUSH", "l", "a", "b", "c", "d", "e", "f"],
            &["LPUSH", "l", "z"],
            &["LPOP", "l"],
            &["RPOP", "l", "2"],
            &["LSET", "l", "-1", "D"],
            &["LINSERT", "l", "AFTER", "b", "bb"],
            &["RPUSH", "l", "b", "b"],
            &["LREM", "l", "-2", "b"],
            &["LTRIM", "l", "0", "3"],
            &["LMOVE", "l", "m", "LEFT", "RIGHT"],
            &["RPOPLPUSH", "l", "m"],
            &["LMOVE", "m", "m", "RIGHT", "LEFT"],
            // Regression: a one-element list with a TTL rotated on itself kept its TTL on
            // the primary but lost it on a replica when the move was split into pop + push.
            &["RPUSH", "solo", "x"],
            &["PEXPIRE", "solo", "100000"],
            &["LMOVE", "solo", "solo", "LEFT", "RIGHT"],
            &["BLMOVE", "solo", "solo", "RIGHT", "LEFT", "0"],
            &["RPOPLPUSH", "solo", "solo"],
            &["LMPOP", "2", "x", "m", "RIGHT", "COUNT", "2"],
            &["BLPOP", "x", "l", "0"],
            &["BLMOVE", "l", "n", "RIGHT", "RIGHT", "0"],
            &["RPUSHX", "n", "q"],
            &["LPUSHX", "nope", "q"],
            &["SELECT", "3"],
            &["RPUSH", "other", "1", "2"],
            &["LPOP", "other", "5"],
            &["RPUSH", "other", "3"],
        ];
        for args in script {
            let r = t.cmd(args);
            assert!(!r.is_error(), "{:?}: {:?}", args, r);
            let tracked = t.eng.used_memory();
            t.eng.recount_memory();
            assert_eq!(tracked, t.eng.used_memory(), "after {:?}", args);
        }
        t.ok(&["MULTI"]);
        t.cmd(&["SELECT", "0"]);
        t.cmd(&["RPUSH", "tx", "1", "2", "3"]);
        t.cmd(&["LMOVE", "tx", "m", "LEFT", "LEFT"]);
        t.cmd(&["BRPOP", "tx", "0"]);
        t.cmd(&["EXEC"]);
        t.assert_replays();
        assert!(t.eng.key_count() >= 3);
    }
}
