//! Keyspace commands: DEL, UNLINK, EXISTS, TYPE, RENAME, RENAMENX, COPY, MOVE, KEYS,
//! SCAN, RANDOMKEY, TOUCH, DBSIZE, FLUSHDB, FLUSHALL, SWAPDB, OBJECT.
//!
//! Writes that involve two keys replicate per key: the source as `DEL src`, the
//! destination as a whole-value restore ([`Ctx::emit_restore`]), so a consumer that holds
//! only one of the two keys still ends up right. Whole-database operations replicate as
//! `FLUSHDB`, `FLUSHALL` and `SWAPDB a b`.

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::{unknown_subcommand_error, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::eviction::{self, Policy};
use crate::glob;
use crate::reply::{errors, Reply};
use crate::util::{parse_cursor, parse_i64, scan_step};
use crate::value::{Kind, Value};

/// The keyspace commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("del", -2, WRITE, "generic", Handler::Engine(del))
        .keys(1, -1, 1)
        .doc("Delete a key", "1.0.0"),
    CommandSpec::new("unlink", -2, WRITE | FAST, "generic", Handler::Engine(del))
        .keys(1, -1, 1)
        .doc("Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking.", "4.0.0"),
    CommandSpec::new("exists", -2, READONLY | FAST, "generic", Handler::Engine(exists))
        .keys(1, -1, 1)
        .doc("Determine if a key exists", "1.0.0"),
    CommandSpec::new("type", 2, READONLY | FAST, "generic", Handler::Engine(type_))
        .keys(1, 1, 1)
        .doc("Determine the type stored at key", "1.0.0"),
    CommandSpec::new("rename", 3, WRITE, "generic", Handler::Engine(rename))
        .keys(1, 2, 1)
        .doc("Rename a key", "1.0.0"),
    CommandSpec::new("renamenx", 3, WRITE | FAST, "generic", Handler::Engine(renamenx))
        .keys(1, 2, 1)
        .doc("Rename a key, only if the new key does not exist", "1.0.0"),
    CommandSpec::new("copy", -3, WRITE | DENYOOM, "generic", Handler::Engine(copy))
        .keys(1, 2, 1)
        .doc("Copy a key", "6.2.0"),
    CommandSpec::new("move", 3, WRITE | FAST, "generic", Handler::Engine(move_))
        .keys(1, 1, 1)
        .doc("Move a key to another database", "1.0.0"),
    CommandSpec::new("keys", 2, READONLY, "generic", Handler::Engine(keys))
        .doc("Find all keys matching the given pattern", "1.0.0"),
    CommandSpec::new("scan", -2, READONLY, "generic", Handler::Engine(scan))
        .doc("Incrementally iterate the keys space", "2.8.0"),
    CommandSpec::new("randomkey", 1, READONLY, "generic", Handler::Engine(randomkey))
        .doc("Return a random key from the keyspace", "1.0.0"),
    CommandSpec::new("touch", -2, READONLY | FAST, "generic", Handler::Engine(touch))
        .keys(1, -1, 1)
        .doc("Alters the last access time of a key(s). Returns the number of existing keys specified.", "3.2.1"),
    CommandSpec::new("dbsize", 1, READONLY | FAST, "server", Handler::Engine(dbsize))
        .doc("Return the number of keys in the selected database", "1.0.0"),
    CommandSpec::new("flushdb", -1, WRITE, "server", Handler::Engine(flushdb))
        .doc("Remove all keys from the current database", "1.0.0"),
    CommandSpec::new("flushall", -1, WRITE, "server", Handler::Engine(flushall))
        .doc("Remove all keys from all databases", "1.0.0"),
    CommandSpec::new("swapdb", 3, WRITE | FAST, "server", Handler::Engine(swapdb))
        .doc("Swaps two Redis databases", "4.0.0"),
    // A container command in Redis (OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT|HELP); its key is
    // the third argument, listed so token scopes apply to it.
    CommandSpec::new("object", -2, READONLY, "generic", Handler::Engine(object))
        .keys(2, 2, 1)
        .doc("A container for object introspection commands", "2.2.3"),
];

const SAME_OBJECT: &str = "ERR source and destination objects are the same";

/// `DEL key [key …]` and `UNLINK key [key …]`
fn del(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let mut n = 0;
    for key in &args[1..] {
        if ctx.delete(key) {
            n += 1;
            ctx.emit(&[b"DEL", key]);
            ctx.notify(EventClass::Generic, "del", key);
        }
    }
    Reply::Int(n)
}

/// `EXISTS key [key …]` (a key named twice counts twice)
fn exists(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    Reply::Int(args[1..].iter().filter(|k| ctx.exists(k)).count() as i64)
}

/// `TYPE key`
fn type_(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let name = if ctx.exists(key) { ctx.db().get(key).map(|e| e.value.kind().name()).unwrap_or("none") } else { "none" };
    Reply::simple(name)
}

/// Whether `key` exists in database `db` (after lazy expiry).
fn exists_in(ctx: &mut Ctx, db: usize, key: &[u8]) -> bool {
    ctx.expire_if_needed_in(db, key);
    ctx.engine().db(db).is_some_and(|d| d.get(key).is_some())
}

/// Removes `key` from database `db` and hands back its value and deadline, without
/// copying the value. The caller emits the changes.
fn take_in(ctx: &mut Ctx, db: usize, key: &[u8]) -> Option<(Value, u64)> {
    let e = ctx.write_in(db, key)?;
    let value = std::mem::replace(&mut e.value, Value::Int(0));
    let at = e.expire_at;
    ctx.delete_in(db, key);
    Some((value, at))
}

/// `RENAME key newkey`
fn rename(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    rename_generic(ctx, args, false)
}

/// `RENAMENX key newkey`
fn renamenx(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    rename_generic(ctx, args, true)
}

fn rename_generic(ctx: &mut Ctx, args: &[Bytes], nx: bool) -> Reply {
    let (src, dst) = (&args[1], &args[2]);
    let done = if nx { Reply::Int(1) } else { Reply::Ok };
    if !ctx.exists(src) {
        return Reply::err(errors::NO_SUCH_KEY);
    }
    if src == dst {
        return if nx { Reply::Int(0) } else { Reply::Ok };
    }
    if ctx.exists(dst) {
        if nx {
            return Reply::Int(0);
        }
        ctx.delete(dst);
    }
    let db = ctx.db_index();
    let Some((value, at)) = take_in(ctx, db, src) else { return Reply::err(errors::NO_SUCH_KEY) };
    ctx.store(dst, value, at);
    ctx.emit(&[b"DEL", src]);
    ctx.emit_restore(db, dst);
    ctx.notify(EventClass::Generic, "rename_from", src);
    ctx.notify(EventClass::Generic, "rename_to", dst);
    done
}

/// Parses a database number as Redis's `getIntFromObjectOrReply` does.
fn parse_db_arg(arg: &[u8]) -> Result<i64, Reply> {
    let n = parse_i64(arg).ok_or_else(|| Reply::err(errors::NOT_INTEGER))?;
    if n < i32::MIN as i64 || n > i32::MAX as i64 {
        return Err(Reply::err("ERR value is out of range, value must between -2147483648 and 2147483647"));
    }
    Ok(n)
}

/// A database number that names an existing database, else `ERR DB index is out of range`.
fn db_index(ctx: &Ctx, arg: &[u8]) -> Result<usize, Reply> {
    let n = parse_db_arg(arg)?;
    if n < 0 || n as usize >= ctx.engine().dbs().len() {
        return Err(Reply::err(errors::DB_INDEX));
    }
    Ok(n as usize)
}

/// `COPY source destination [DB destination-db] [REPLACE]`
fn copy(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (src, dst) = (&args[1], &args[2]);
    let src_db = ctx.db_index();
    let mut dst_db = src_db;
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        match args[i].to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" if i + 1 < args.len() => {
                dst_db = match db_index(ctx, &args[i + 1]) {
                    Ok(d) => d,
                    Err(e) => return e,
                };
                i += 1;
            }
            _ => return Reply::err(errors::SYNTAX),
        }
        i += 1;
    }
    if src_db == dst_db && src == dst {
        return Reply::err(SAME_OBJECT);
    }
    let Some((value, at)) = ctx.read(src).map(|e| (e.value.clone(), e.expire_at)) else { return Reply::Int(0) };
    if exists_in(ctx, dst_db, dst) {
        if !replace {
            return Reply::Int(0);
        }
        ctx.delete_in(dst_db, dst);
    }
    ctx.store_in(dst_db, dst, value, at);
    ctx.emit_restore(dst_db, dst);
    ctx.notify_in(dst_db, EventClass::Generic, "copy_to", dst);
    Reply::Int(1)
}

/// `MOVE key db`
fn move_(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    let dst_db = match db_index(ctx, &args[2]) {
        Ok(d) => d,
        Err(e) => return e,
    };
    let src_db = ctx.db_index();
    if dst_db == src_db {
        return Reply::err(SAME_OBJECT);
    }
    if !ctx.exists(key) || exists_in(ctx, dst_db, key) {
        return Reply::Int(0);
    }
    let Some((value, at)) = take_in(ctx, src_db, key) else { return Reply::Int(0) };
    ctx.store_in(dst_db, key, value, at);
    ctx.emit(&[b"DEL", key]);
    ctx.emit_restore(dst_db, key);
    ctx.notify(EventClass::Generic, "move_from", key);
    ctx.notify_in(dst_db, EventClass::Generic, "move_to", key);
    Reply::Int(1)
}

/// `KEYS pattern`
fn keys(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let pattern = &args[1];
    let now = ctx.now_ms;
    if glob::is_literal(pattern) {
        let hit = ctx.db().get(pattern).is_some_and(|e| !e.is_expired(now));
        return Reply::Array(if hit { vec![Reply::Bulk(pattern.clone())] } else { Vec::new() });
    }
    let all = pattern[..] == b"*"[..];
    let out = ctx
        .db()
        .iter()
        .filter(|(k, e)| !e.is_expired(now) && (all || glob::matches(pattern, k, false)))
        .map(|(k, _)| Reply::bulk(k))
        .collect();
    Reply::Array(out)
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
fn scan(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[1]) else { return Reply::err(errors::CURSOR) };
    let mut count = 10usize;
    let mut pattern: Option<&Bytes> = None;
    // `Some(None)`: a type name Redis 7.0 does not know, which matches nothing.
    let mut kind: Option<Option<Kind>> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else { return Reply::err(errors::SYNTAX) };
        match args[i].to_ascii_uppercase().as_slice() {
            b"COUNT" => match parse_i64(value) {
                None => return Reply::err(errors::NOT_INTEGER),
                Some(n) if n < 1 => return Reply::err(errors::SYNTAX),
                Some(n) => count = usize::try_from(n).unwrap_or(usize::MAX),
            },
            b"MATCH" => pattern = Some(value).filter(|p| p[..] != b"*"[..]),
            b"TYPE" => kind = Some(Kind::parse(value)),
            _ => return Reply::err(errors::SYNTAX),
        }
        i += 2;
    }
    let mut found = Vec::new();
    let db = ctx.db();
    let next = scan_step(db.len(), cursor, count, |i| {
        if let Some((k, _)) = db.get_index(i) {
            found.push(Bytes::copy_from_slice(k));
        }
    });
    let mut out = Vec::with_capacity(found.len());
    for key in found {
        // Expired keys are removed as they are met, as Redis's SCAN does.
        if ctx.expire_if_needed(&key) {
            continue;
        }
        if pattern.is_some_and(|p| !glob::matches(p, &key, false)) {
            continue;
        }
        if let Some(want) = kind {
            let have = ctx.db().get(&key).map(|e| e.value.kind());
            if want.is_none() || have != want {
                continue;
            }
        }
        out.push(Reply::Bulk(key));
    }
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(out)])
}

/// `RANDOMKEY`
fn randomkey(ctx: &mut Ctx, _: &[Bytes]) -> Reply {
    // Each round either answers or removes one expired key, so this ends.
    loop {
        let len = ctx.db().len();
        if len == 0 {
            return Reply::Nil;
        }
        let i = ctx.rng().below(len);
        let now = ctx.now_ms;
        let Some((key, expired)) = ctx.db().get_index(i).map(|(k, e)| (Bytes::copy_from_slice(k), e.is_expired(now))) else {
            return Reply::Nil;
        };
        if !expired {
            return Reply::Bulk(key);
        }
        ctx.expire_if_needed(&key);
    }
}

/// `TOUCH key [key …]`
fn touch(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    Reply::Int(args[1..].iter().filter(|k| ctx.read(k).is_some()).count() as i64)
}

/// `DBSIZE`
fn dbsize(ctx: &mut Ctx, _: &[Bytes]) -> Reply {
    Reply::Int(ctx.db().len() as i64)
}

/// Checks the optional `ASYNC|SYNC` of FLUSHDB/FLUSHALL. Both flush at once here: the
/// engine frees memory synchronously either way.
fn flush_mode_ok(args: &[Bytes]) -> bool {
    match args.len() {
        1 => true,
        2 => args[1].eq_ignore_ascii_case(b"ASYNC") || args[1].eq_ignore_ascii_case(b"SYNC"),
        _ => false,
    }
}

/// `FLUSHDB [ASYNC|SYNC]`
fn flushdb(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    if !flush_mode_ok(args) {
        return Reply::err(errors::SYNTAX);
    }
    let db = ctx.db_index();
    if !ctx.db().is_empty() {
        ctx.flush_db(db);
        ctx.emit(&[b"FLUSHDB"]);
    }
    Reply::Ok
}

/// `FLUSHALL [ASYNC|SYNC]`
fn flushall(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    if !flush_mode_ok(args) {
        return Reply::err(errors::SYNTAX);
    }
    let mut flushed = false;
    for db in 0..ctx.engine().dbs().len() {
        if ctx.engine().dbs()[db].is_empty() {
            continue;
        }
        ctx.flush_db(db);
        flushed = true;
    }
    if flushed {
        ctx.emit(&[b"FLUSHALL"]);
    }
    Reply::Ok
}

/// `SWAPDB index1 index2`
fn swapdb(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Ok(a) = parse_db_arg(&args[1]) else { return Reply::err("ERR invalid first DB index") };
    let Ok(b) = parse_db_arg(&args[2]) else { return Reply::err("ERR invalid second DB index") };
    let count = ctx.engine().dbs().len() as i64;
    if a < 0 || b < 0 || a >= count || b >= count {
        return Reply::err(errors::DB_INDEX);
    }
    if a != b {
        let (a, b) = (a as usize, b as usize);
        ctx.swap_dbs(a, b);
        ctx.emit_in(a, &[b"SWAPDB", a.to_string().as_bytes(), b.to_string().as_bytes()]);
    }
    Reply::Ok
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const POLICY_SWITCH_NOTE: &str =
    "Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";

/// The encoding Redis 7.0 would report for a value built by plain writes, from its
/// default thresholds (`*-max-listpack-entries`, `*-max-listpack-value`,
/// `set-max-intset-entries`). Redis never converts back, so after shrinking it may
/// report the larger encoding where this reports the compact one.
fn encoding(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int",
        Value::Str(b) if b.len() <= 44 => "embstr",
        Value::Str(_) => "raw",
        Value::List(_) => "quicklist",
        Value::Hash(h) if h.len() <= 128 && h.map().iter().all(|(f, v)| f.len() <= 64 && v.len() <= 64) => "listpack",
        Value::Hash(_) => "hashtable",
        Value::Set(s) if s.len() <= 512 && s.members().iter().all(|m| parse_i64(m).is_some()) => "intset",
        Value::Set(_) => "hashtable",
        Value::ZSet(z) if z.len() <= 128 && z.iter().all(|(m, _)| m.len() <= 64) => "listpack",
        Value::ZSet(_) => "skiplist",
    }
}

/// `OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key`, `OBJECT HELP`
fn object(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let sub = args[1].to_ascii_lowercase();
    let (name, arity) = match sub.as_slice() {
        b"help" => ("help", 2),
        b"encoding" => ("encoding", 3),
        b"freq" => ("freq", 3),
        b"idletime" => ("idletime", 3),
        b"refcount" => ("refcount", 3),
        _ => return Reply::err(unknown_subcommand_error("object", &args[1])),
    };
    if args.len() != arity {
        return Reply::err(errors::arity(&format!("object|{}", name)));
    }
    if name == "help" {
        return Reply::Array(OBJECT_HELP.iter().map(|l| Reply::simple(*l)).collect());
    }
    // OBJECT looks without touching: it must not change the idle time it reports.
    let key = &args[2];
    if !ctx.exists(key) {
        return Reply::Nil;
    }
    let config = ctx.engine().config();
    let lfu = matches!(config.policy, Policy::AllKeysLfu | Policy::VolatileLfu);
    let clock = eviction::access_clock(config, ctx.now_ms);
    let (decay, shared_ints) = (config.lfu_decay_time, config.maxmemory == 0);
    let Some(entry) = ctx.db().get(key) else { return Reply::Nil };
    match name {
        "encoding" => Reply::bulk(encoding(&entry.value)),
        "refcount" => match entry.value {
            // Redis shares the objects of 0..9999 and reports them as never freed.
            Value::Int(n) if shared_ints && (0..10_000).contains(&n) => Reply::Int(i32::MAX as i64),
            _ => Reply::Int(1),
        },
        "idletime" if lfu => Reply::err(format!(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. {}",
            POLICY_SWITCH_NOTE
        )),
        "idletime" => Reply::Int(clock.saturating_sub(entry.access) as i64),
        "freq" if !lfu => Reply::err(format!(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. {}",
            POLICY_SWITCH_NOTE
        )),
        _ => Reply::Int(eviction::lfu_decayed(entry.access, clock, decay) as i64),
    }
}
