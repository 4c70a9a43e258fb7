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

#[cfg(test)]
mod tests {
    use crate::change::EventClass;
    use crate::db::Entry;
    use crate::engine::{Config, Engine, Session};
    use crate::eviction::Policy;
    use crate::reply::Reply;
    use crate::test_util::*;
    use crate::value::{blob, Hash, List, Set, Value};
    use crate::zset::SortedSet;

    const NO_SUCH_KEY: &str = "ERR no such key";
    const SAME: &str = "ERR source and destination objects are the same";
    const DB_RANGE: &str = "ERR DB index is out of range";
    const INT_RANGE: &str = "ERR value is out of range, value must between -2147483648 and 2147483647";

    /// Puts a value of another family at `key` in db 0 (their commands live elsewhere).
    fn put(t: &mut T, key: &str, value: Value) {
        t.eng.dbs[0].insert(key.as_bytes(), Entry::new(value));
        t.eng.recount_memory();
    }

    fn list(items: &[&str]) -> Value {
        let mut l = List::new();
        for i in items {
            l.push_back(blob(i.as_bytes()));
        }
        Value::List(Box::new(l))
    }

    fn hash(pairs: &[(&str, &str)]) -> Value {
        let mut h = Hash::new();
        for (f, v) in pairs {
            h.insert(f.as_bytes(), blob(v.as_bytes()));
        }
        Value::Hash(Box::new(h))
    }

    fn set(members: &[&str]) -> Value {
        let mut s = Set::new();
        for m in members {
            s.insert(m.as_bytes());
        }
        Value::Set(Box::new(s))
    }

    fn zset(members: &[(&str, f64)]) -> Value {
        let mut z = SortedSet::new();
        for (m, s) in members {
            z.insert(m.as_bytes(), *s);
        }
        Value::ZSet(Box::new(z))
    }

    /// The keys of an array reply, sorted.
    fn sorted(reply: Reply) -> Vec<String> {
        let Reply::Array(items) = reply else { panic!("not an array: {:?}", reply) };
        let mut out: Vec<String> = items
            .into_iter()
            .map(|r| match r {
                Reply::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
                other => panic!("not a bulk: {:?}", other),
            })
            .collect();
        out.sort();
        out
    }

    fn events(t: &mut T) -> Vec<String> {
        t.eng.take_events().iter().map(|e| format!("{}:{}:{}", e.db, e.event, String::from_utf8_lossy(&e.key))).collect()
    }

    #[test]
    fn del_unlink_exists() {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::Generic.bit();
        t.ok(&["MSET", "a", "1", "b", "2", "c", "3"]);
        t.int(&["EXISTS", "a", "a", "missing", "b"], 3);
        t.int(&["DEL", "a", "a", "b", "missing"], 2);
        t.int(&["EXISTS", "a", "b", "c"], 1);
        t.int(&["UNLINK", "c", "c"], 1);
        t.int(&["DEL", "c"], 0);
        t.err(&["DEL"], "ERR wrong number of arguments for 'del' command");
        t.err(&["UNLINK"], "ERR wrong number of arguments for 'unlink' command");
        t.err(&["EXISTS"], "ERR wrong number of arguments for 'exists' command");
        let c = t.changes();
        assert_eq!(c[3..], ["DEL a".to_string(), "DEL b".into(), "DEL c".into()]);
        assert_eq!(events(&mut t), vec!["0:del:a", "0:del:b", "0:del:c"]);
        // An expired key is not counted, and its removal replicates once.
        t.ok(&["SET", "e", "v", "PX", "10"]);
        t.now += 10;
        t.int(&["DEL", "e"], 0);
        t.int(&["EXISTS", "e"], 0);
        let c = t.changes();
        assert_eq!(c[1..], ["DEL e".to_string()]);
    }

    #[test]
    fn type_of_each_kind() {
        let mut t = T::new();
        t.ok(&["SET", "s", "x"]);
        t.ok(&["SET", "n", "1"]);
        put(&mut t, "l", list(&["a"]));
        put(&mut t, "h", hash(&[("f", "v")]));
        put(&mut t, "st", set(&["m"]));
        put(&mut t, "z", zset(&[("m", 1.0)]));
        for (k, ty) in [("s", "string"), ("n", "string"), ("l", "list"), ("h", "hash"), ("st", "set"), ("z", "zset"), ("nope", "none")] {
            t.simple(&["TYPE", k], ty);
        }
        t.err(&["TYPE"], "ERR wrong number of arguments for 'type' command");
        t.err(&["TYPE", "a", "b"], "ERR wrong number of arguments for 'type' command");
    }

    #[test]
    fn rename_and_renamenx() {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::Generic.bit();
        t.err(&["RENAME", "missing", "x"], NO_SUCH_KEY);
        t.err(&["RENAME", "missing", "missing"], NO_SUCH_KEY);
        t.err(&["RENAMENX", "missing", "x"], NO_SUCH_KEY);
        t.ok(&["SET", "a", "1", "PX", "5000"]);
        t.changes();
        events(&mut t);
        t.ok(&["RENAME", "a", "a"]);
        t.int(&["RENAMENX", "a", "a"], 0);
        assert!(t.changes().is_empty());
        t.ok(&["RENAME", "a", "b"]);
        t.nil(&["GET", "a"]);
        t.bulk(&["GET", "b"], "1");
        t.int(&["PTTL", "b"], 5000);
        let at = t.now + 5000;
        assert_eq!(t.changes(), vec!["DEL a".to_string(), format!("SET b 1 PXAT {}", at)]);
        assert_eq!(events(&mut t), vec!["0:rename_from:a", "0:rename_to:b"]);
        t.ok(&["SET", "c", "3"]);
        t.int(&["RENAMENX", "b", "c"], 0);
        t.bulk(&["GET", "c"], "3");
        t.ok(&["RENAME", "b", "c"]);
        t.bulk(&["GET", "c"], "1");
        t.int(&["PTTL", "c"], 5000);
        t.int(&["RENAMENX", "c", "d"], 1);
        t.int(&["EXISTS", "c"], 0);
        t.err(&["RENAME", "d"], "ERR wrong number of arguments for 'rename' command");
        t.err(&["RENAMENX", "d", "e", "f"], "ERR wrong number of arguments for 'renamenx' command");
        t.changes();
        // A container renamed over an existing key is restored whole.
        put(&mut t, "l", list(&["x", "y"]));
        t.ok(&["RENAME", "l", "d"]);
        t.simple(&["TYPE", "d"], "list");
        assert_eq!(t.changes(), vec!["DEL l", "DEL d", "RPUSH d x y"]);
        // An expired source is missing.
        t.ok(&["SET", "old", "v", "PX", "1"]);
        t.now += 1;
        t.err(&["RENAME", "old", "new"], NO_SUCH_KEY);
    }

    #[test]
    fn copy_options() {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::Generic.bit();
        t.ok(&["SET", "b", "2", "EX", "100"]);
        t.changes();
        events(&mut t);
        t.err(&["COPY", "b", "b"], SAME);
        t.err(&["COPY", "b", "b", "DB", "0"], SAME);
        t.int(&["COPY", "missing", "c"], 0);
        t.int(&["COPY", "b", "c"], 1);
        t.int(&["COPY", "b", "c"], 0);
        t.int(&["COPY", "b", "c", "REPLACE"], 1);
        t.int(&["PTTL", "c"], 100_000);
        t.err(&["COPY", "b", "c", "DB", "16"], DB_RANGE);
        t.err(&["COPY", "b", "c", "DB", "-1"], DB_RANGE);
        t.err(&["COPY", "b", "c", "DB", "x"], "ERR value is not an integer or out of range");
        t.err(&["COPY", "b", "c", "DB", "2147483648"], INT_RANGE);
        t.err(&["COPY", "b", "c", "DB"], "ERR syntax error");
        t.err(&["COPY", "b", "c", "foo"], "ERR syntax error");
        t.err(&["COPY", "b"], "ERR wrong number of arguments for 'copy' command");
        t.int(&["COPY", "b", "b", "DB", "1"], 1);
        t.int(&["COPY", "b", "c", "replace", "replace", "db", "2", "db", "3"], 1);
        let at = t.now + 100_000;
        assert_eq!(
            t.changes(),
            vec![format!("SET c 2 PXAT {}", at), format!("SET c 2 PXAT {}", at), format!("SET b 2 PXAT {}", at), format!("SET c 2 PXAT {}", at)]
        );
        let groups = t.eng.take_changes();
        assert!(groups.is_empty());
        assert_eq!(events(&mut t), vec!["0:copy_to:c", "0:copy_to:c", "1:copy_to:b", "3:copy_to:c"]);
        t.ok(&["SELECT", "3"]);
        t.bulk(&["GET", "c"], "2");
        t.int(&["TTL", "c"], 100);
        t.ok(&["SELECT", "0"]);
        // The copy is independent of its source.
        put(&mut t, "h", hash(&[("f", "v")]));
        t.int(&["COPY", "h", "h2"], 1);
        if let Some(Value::Hash(h)) = t.eng.dbs[0].get_mut(b"h").map(|e| &mut e.value) {
            h.insert(b"g", blob(b"w"));
        }
        assert_eq!(t.eng.db(0).unwrap().get(b"h2").unwrap().value, hash(&[("f", "v")]));
        assert_eq!(t.changes(), vec!["DEL h2", "HSET h2 f v"]);
    }

    #[test]
    fn move_between_dbs() {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::Generic.bit();
        t.ok(&["SET", "b", "v", "PX", "7000"]);
        t.changes();
        events(&mut t);
        t.err(&["MOVE", "b", "0"], SAME);
        t.err(&["MOVE", "b", "16"], DB_RANGE);
        t.err(&["MOVE", "b", "-1"], DB_RANGE);
        t.err(&["MOVE", "b", "x"], "ERR value is not an integer or out of range");
        t.err(&["MOVE", "b", "99999999999"], INT_RANGE);
        t.err(&["MOVE", "b"], "ERR wrong number of arguments for 'move' command");
        t.int(&["MOVE", "missing", "1"], 0);
        t.int(&["MOVE", "b", "1"], 1);
        t.int(&["EXISTS", "b"], 0);
        let at = t.now + 7000;
        assert_eq!(t.changes(), vec!["DEL b".to_string(), format!("SET b v PXAT {}", at)]);
        let groups = {
            t.ok(&["SET", "b", "w"]);
            t.eng.take_changes()
        };
        assert_eq!(groups.len(), 1);
        assert_eq!(events(&mut t), vec!["0:move_from:b", "1:move_to:b"]);
        // The target already has the key: nothing moves.
        t.int(&["MOVE", "b", "1"], 0);
        t.bulk(&["GET", "b"], "w");
        t.ok(&["SELECT", "1"]);
        t.bulk(&["GET", "b"], "v");
        t.int(&["PTTL", "b"], 7000);
        assert!(t.changes().is_empty());
    }

    #[test]
    fn keys_patterns() {
        let mut t = T::new();
        t.ok(&["MSET", "user:1", "a", "user:2", "b", "user:10", "c", "other", "d"]);
        t.ok(&["SET", "user:3", "e", "PX", "5"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "*"])), ["other", "user:1", "user:10", "user:2", "user:3"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "user:?"])), ["user:1", "user:2", "user:3"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "user:[12]*"])), ["user:1", "user:10", "user:2"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "other"])), ["other"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "nope"])), Vec::<String>::new());
        t.now += 5;
        assert_eq!(sorted(t.cmd(&["KEYS", "user:?"])), ["user:1", "user:2"]);
        assert_eq!(sorted(t.cmd(&["KEYS", "user:3"])), Vec::<String>::new());
        // KEYS skips expired keys without deleting them.
        assert!(t.changes().iter().all(|c| !c.starts_with("DEL")));
        t.err(&["KEYS"], "ERR wrong number of arguments for 'keys' command");
    }

    /// Runs a whole SCAN, returning every key seen and the number of calls.
    fn scan_all(t: &mut T, opts: &[&str]) -> (Vec<String>, usize) {
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            let mut args = vec!["SCAN", &cursor];
            args.extend_from_slice(opts);
            let Reply::Array(parts) = t.cmd(&args) else { panic!("scan reply") };
            calls += 1;
            let Reply::Bulk(next) = &parts[0] else { panic!("cursor") };
            seen.extend(sorted(parts[1].clone()));
            cursor = String::from_utf8_lossy(next).into_owned();
            if cursor == "0" {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        (seen, calls)
    }

    #[test]
    fn scan_options() {
        let mut t = T::new();
        for i in 0..25 {
            t.ok(&["SET", &format!("k{}", i), "v"]);
        }
        put(&mut t, "list", list(&["a"]));
        let (all, calls) = scan_all(&mut t, &[]);
        assert_eq!(all.len(), 26);
        assert_eq!(calls, 3);
        let (all, calls) = scan_all(&mut t, &["COUNT", "100"]);
        assert_eq!((all.len(), calls), (26, 1));
        let (ones, _) = scan_all(&mut t, &["MATCH", "k1*", "COUNT", "3"]);
        assert_eq!(ones.len(), 11);
        let (lists, _) = scan_all(&mut t, &["type", "LIST"]);
        assert_eq!(lists, ["list"]);
        let (strings, _) = scan_all(&mut t, &["TYPE", "string", "MATCH", "*"]);
        assert_eq!(strings.len(), 25);
        let (none, _) = scan_all(&mut t, &["TYPE", "foo"]);
        assert!(none.is_empty());
        t.err(&["SCAN", "0", "COUNT", "0"], "ERR syntax error");
        t.err(&["SCAN", "0", "COUNT", "-1"], "ERR syntax error");
        t.err(&["SCAN", "0", "COUNT", "x"], "ERR value is not an integer or out of range");
        t.err(&["SCAN", "x"], "ERR invalid cursor");
        t.err(&["SCAN", " 1"], "ERR invalid cursor");
        t.err(&["SCAN", "18446744073709551616"], "ERR invalid cursor");
        t.err(&["SCAN", "x", "foo"], "ERR invalid cursor");
        t.err(&["SCAN", "0", "MATCH"], "ERR syntax error");
        t.err(&["SCAN", "0", "TYPE"], "ERR syntax error");
        t.err(&["SCAN", "0", "foo", "1"], "ERR syntax error");
        t.err(&["SCAN"], "ERR wrong number of arguments for 'scan' command");
        // Cursors Redis's strtoul accepts.
        for c in ["-1", "", "+0", "18446744073709551615"] {
            assert!(!t.cmd(&["SCAN", c]).is_error(), "{:?}", c);
        }
        // A huge COUNT is fine.
        let (all, _) = scan_all(&mut t, &["COUNT", "9223372036854775807"]);
        assert_eq!(all.len(), 26);
        // Expired keys are removed as they are met.
        t.changes();
        t.ok(&["SET", "gone", "v", "PX", "1"]);
        t.now += 1;
        let (all, _) = scan_all(&mut t, &["COUNT", "1000"]);
        assert_eq!(all.len(), 26);
        assert_eq!(t.changes().last().unwrap(), "DEL gone");
        let mut empty = T::new();
        assert_eq!(empty.cmd(&["SCAN", "0"]), Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
    }

    #[test]
    fn scan_sees_survivors_while_keys_are_deleted() {
        let mut t = T::new();
        for i in 0..200 {
            t.ok(&["SET", &format!("k{}", i), "v"]);
        }
        let mut cursor = "0".to_string();
        let mut seen = std::collections::HashSet::new();
        let mut round = 0;
        loop {
            let Reply::Array(parts) = t.cmd(&["SCAN", &cursor, "COUNT", "7"]) else { panic!() };
            for k in sorted(parts[1].clone()) {
                seen.insert(k);
            }
            let Reply::Bulk(next) = &parts[0] else { panic!() };
            cursor = String::from_utf8_lossy(next).into_owned();
            // Delete keys that are multiples of 3 as the scan goes.
            t.cmd(&["DEL", &format!("k{}", round * 3)]);
            round += 1;
            if cursor == "0" {
                break;
            }
        }
        for i in 0..200 {
            if i % 3 != 0 || i / 3 >= round {
                assert!(seen.contains(&format!("k{}", i)), "missed k{}", i);
            }
        }
    }

    #[test]
    fn randomkey_touch_dbsize() {
        let mut t = T::new();
        t.nil(&["RANDOMKEY"]);
        t.int(&["DBSIZE"], 0);
        t.ok(&["MSET", "a", "1", "b", "2"]);
        for _ in 0..20 {
            let Reply::Bulk(k) = t.cmd(&["RANDOMKEY"]) else { panic!() };
            assert!(&k[..] == b"a" || &k[..] == b"b");
        }
        t.int(&["DBSIZE"], 2);
        t.int(&["TOUCH", "a", "b", "missing", "a"], 3);
        t.err(&["TOUCH"], "ERR wrong number of arguments for 'touch' command");
        t.err(&["DBSIZE", "x"], "ERR wrong number of arguments for 'dbsize' command");
        t.err(&["RANDOMKEY", "x"], "ERR wrong number of arguments for 'randomkey' command");
        // Only expired keys: RANDOMKEY removes them and answers nil.
        t.ok(&["FLUSHALL"]);
        for i in 0..10 {
            t.ok(&["SET", &format!("e{}", i), "v", "PX", "1"]);
        }
        t.ok(&["SET", "live", "v"]);
        t.now += 1;
        t.bulk(&["RANDOMKEY"], "live");
        t.int(&["DEL", "live"], 1);
        t.nil(&["RANDOMKEY"]);
        t.int(&["DBSIZE"], 0);
        // TOUCH refreshes the idle time.
        t.ok(&["SET", "k", "v"]);
        t.now += 10_000;
        t.int(&["OBJECT", "IDLETIME", "k"], 10);
        t.int(&["TOUCH", "k"], 1);
        t.int(&["OBJECT", "IDLETIME", "k"], 0);
    }

    #[test]
    fn flushdb_flushall() {
        let mut t = T::new();
        t.ok(&["SET", "a", "1"]);
        t.ok(&["SELECT", "1"]);
        t.ok(&["SET", "b", "2"]);
        t.changes();
        t.err(&["FLUSHDB", "foo"], "ERR syntax error");
        t.err(&["FLUSHDB", "SYNC", "ASYNC"], "ERR syntax error");
        t.err(&["FLUSHALL", "foo"], "ERR syntax error");
        t.ok(&["FLUSHDB", "async"]);
        t.int(&["DBSIZE"], 0);
        t.ok(&["FLUSHDB", "SYNC"]);
        assert_eq!(t.changes(), vec!["FLUSHDB"]);
        assert_eq!(t.eng.take_changes().len(), 0);
        t.ok(&["SELECT", "0"]);
        t.int(&["DBSIZE"], 1);
        t.ok(&["FLUSHALL", "ASYNC"]);
        t.int(&["DBSIZE"], 0);
        t.ok(&["FLUSHALL"]);
        assert_eq!(t.changes(), vec!["FLUSHALL"]);
        assert_eq!(t.eng.used_memory(), 0);
    }

    #[test]
    fn swapdb_cases() {
        let mut t = T::new();
        t.ok(&["SET", "a", "in0"]);
        t.changes();
        t.err(&["SWAPDB", "x", "1"], "ERR invalid first DB index");
        t.err(&["SWAPDB", "0", "x"], "ERR invalid second DB index");
        t.err(&["SWAPDB", "99999999999", "0"], "ERR invalid first DB index");
        t.err(&["SWAPDB", "0", "16"], DB_RANGE);
        t.err(&["SWAPDB", "-1", "0"], DB_RANGE);
        t.err(&["SWAPDB", "0"], "ERR wrong number of arguments for 'swapdb' command");
        t.ok(&["SWAPDB", "0", "0"]);
        assert!(t.changes().is_empty());
        t.ok(&["SWAPDB", "0", "1"]);
        t.nil(&["GET", "a"]);
        t.ok(&["SELECT", "1"]);
        t.bulk(&["GET", "a"], "in0");
        assert_eq!(t.changes(), vec!["SWAPDB 0 1"]);
        // A watcher of either database sees the swap.
        let mut other = Session::new(7);
        t.eng.run(&mut other, &[b"WATCH", b"a"], t.now);
        t.ok(&["SWAPDB", "1", "0"]);
        t.eng.run(&mut other, &[b"MULTI"], t.now);
        assert_eq!(t.eng.run(&mut other, &[b"EXEC"], t.now), Reply::NilArray);
    }

    #[test]
    fn object_subcommands() {
        let mut t = T::new();
        t.ok(&["SET", "n", "5"]);
        t.ok(&["SET", "big", "10000"]);
        t.ok(&["SET", "neg", "-1"]);
        t.ok(&["SET", "s", "hello"]);
        t.ok(&["SET", "r", &"a".repeat(45)]);
        put(&mut t, "l", list(&["a"]));
        put(&mut t, "h", hash(&[("a", "b")]));
        put(&mut t, "hb", hash(&[("a", &"x".repeat(65))]));
        put(&mut t, "si", set(&["1", "2", "3"]));
        put(&mut t, "ss", set(&["1", "x"]));
        put(&mut t, "z", zset(&[("a", 1.0)]));
        put(&mut t, "zb", zset(&[(&"m".repeat(65), 1.0)]));
        for (k, enc) in [
            ("n", "int"),
            ("neg", "int"),
            ("s", "embstr"),
            ("r", "raw"),
            ("l", "quicklist"),
            ("h", "listpack"),
            ("hb", "hashtable"),
            ("si", "intset"),
            ("ss", "hashtable"),
            ("z", "listpack"),
            ("zb", "skiplist"),
        ] {
            t.bulk(&["OBJECT", "ENCODING", k], enc);
        }
        t.nil(&["OBJECT", "encoding", "missing"]);
        t.int(&["OBJECT", "REFCOUNT", "n"], 2147483647);
        t.int(&["OBJECT", "REFCOUNT", "big"], 1);
        t.int(&["OBJECT", "REFCOUNT", "neg"], 1);
        t.int(&["OBJECT", "REFCOUNT", "s"], 1);
        t.nil(&["OBJECT", "REFCOUNT", "missing"]);
        t.int(&["OBJECT", "IDLETIME", "s"], 0);
        t.now += 3_000;
        t.int(&["OBJECT", "IDLETIME", "s"], 3);
        t.int(&["OBJECT", "IDLETIME", "s"], 3);
        t.nil(&["OBJECT", "IDLETIME", "missing"]);
        t.nil(&["OBJECT", "FREQ", "missing"]);
        t.err(
            &["OBJECT", "FREQ", "s"],
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
        t.err(&["OBJECT", "ENCODING"], "ERR wrong number of arguments for 'object|encoding' command");
        t.err(&["OBJECT", "encoding", "a", "b"], "ERR wrong number of arguments for 'object|encoding' command");
        t.err(&["OBJECT", "FREQ"], "ERR wrong number of arguments for 'object|freq' command");
        t.err(&["OBJECT", "help", "x"], "ERR wrong number of arguments for 'object|help' command");
        t.err(&["OBJECT", "foo"], "ERR unknown subcommand 'foo'. Try OBJECT HELP.");
        t.err(&["OBJECT", "foo", "a", "b"], "ERR unknown subcommand 'foo'. Try OBJECT HELP.");
        t.err(&["OBJECT"], "ERR wrong number of arguments for 'object' command");
        let Reply::Array(help) = t.cmd(&["OBJECT", "HELP"]) else { panic!() };
        assert_eq!(help.len(), 15);
        assert_eq!(help[0], Reply::simple("OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"));
        assert_eq!(help[14], Reply::simple("    Prints this help."));
        assert!(t.changes().iter().all(|c| c.starts_with("SET")));

        let mut t = T::new();
        t.eng = Engine::new(Config { policy: Policy::AllKeysLfu, ..Config::default() });
        t.ok(&["SET", "k", "v"]);
        t.int(&["OBJECT", "FREQ", "k"], 5);
        t.bulk(&["GET", "k"], "v");
        t.int(&["OBJECT", "FREQ", "k"], 6);
        t.err(
            &["OBJECT", "IDLETIME", "k"],
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        );
    }

    #[test]
    fn keys_changes_replay() {
        let mut t = T::new();
        for cmd in [
            &["MSET", "a", "1", "b", "2", "c", "3", "d", "4"][..],
            &["SET", "t", "v", "EX", "100"],
            &["DEL", "a", "zz"],
            &["RENAME", "b", "b2"],
            &["RENAME", "t", "c"],
            &["RENAMENX", "d", "d2"],
            &["COPY", "c", "c2"],
            &["COPY", "c", "c3", "DB", "2"],
            &["MOVE", "d2", "3"],
            &["SELECT", "3"],
            &["SET", "x", "y"],
            &["SWAPDB", "3", "4"],
            &["SELECT", "2"],
            &["SET", "gone", "1"],
            &["FLUSHDB"],
            &["COPY", "c3", "c4"],
            &["SELECT", "0"],
            &["UNLINK", "c2"],
            &["SADD", "set", "a", "b", "1"],
            &["EXPIRE", "set", "500"],
            &["RENAME", "set", "set2"],
            &["COPY", "set2", "set3", "DB", "5"],
            &["SADD", "other", "x"],
            &["RENAME", "other", "set2"],
            &["MOVE", "set2", "6"],
            &["RPUSH", "list", "a", "b", "c"],
            &["PEXPIRE", "list", "90000"],
            &["RENAME", "list", "list2"],
            &["COPY", "list2", "set3", "REPLACE"],
            &["LPUSH", "list2", "z"],
            &["INCR", "cnt"],
            &["RENAMENX", "cnt", "cnt2"],
        ] {
            assert!(!t.cmd(cmd).is_error(), "{:?}", cmd);
        }
        let used = t.eng.used_memory();
        t.eng.recount_memory();
        assert_eq!(used, t.eng.used_memory(), "used_memory drifted");
        let groups = t.eng.take_changes();
        let mut fresh = Engine::default();
        for g in &groups {
            fresh.apply_group(g, t.now).unwrap_or_else(|e| panic!("group {:?} failed: {:?}", g, e));
        }
        for (i, (a, b)) in t.eng.dbs().iter().zip(fresh.dbs()).enumerate() {
            assert_eq!(a.len(), b.len(), "db {} key count", i);
            for (k, e) in a.iter() {
                let o = b.get(k).unwrap_or_else(|| panic!("db {} lacks {:?}", i, String::from_utf8_lossy(k)));
                assert_eq!((&e.value, e.expire_at), (&o.value, o.expire_at), "db {} key {:?}", i, String::from_utf8_lossy(k));
            }
        }
        assert_eq!(t.eng.db(4).unwrap().len(), 2);
    }
}
