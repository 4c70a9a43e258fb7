//! String commands: GET, SET and the rest of the `string` group.

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::{CommandSpec, Handler};
use crate::engine::Ctx;
use crate::reply::{errors, Reply};
use crate::util::parse_i64;
use crate::value::{Kind, Value};

/// The string commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("get", 2, READONLY | FAST, "string", Handler::Engine(get))
        .keys(1, 1, 1)
        .doc("Returns the string value of a key.", "1.0.0"),
    CommandSpec::new("set", -3, WRITE | DENYOOM, "string", Handler::Engine(set))
        .keys(1, 1, 1)
        .doc("Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.", "1.0.0"),
];

/// `GET key`
fn get(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    match ctx.get_string(&args[1]) {
        Ok(v) => Reply::opt_bulk(v),
        Err(e) => e,
    }
}

/// Expiry given to a write: none, an absolute deadline, or keep the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ttl {
    None,
    At(u64),
    Keep,
}

/// Parses `EX s | PX ms | EXAT s | PXAT ms` values into an absolute deadline in ms.
/// `Err` carries Redis's reply for a bad number.
pub(crate) fn deadline(ctx_now: u64, unit_ms: bool, absolute: bool, arg: &[u8], cmd: &str) -> Result<u64, Reply> {
    let n = parse_i64(arg).ok_or_else(|| Reply::err(errors::NOT_INTEGER))?;
    if n <= 0 || (!unit_ms && n > i64::MAX / 1000) {
        return Err(Reply::err(errors::invalid_expire(cmd)));
    }
    let ms = if unit_ms { n } else { n * 1000 };
    let at = if absolute { ms } else { ms.checked_add(ctx_now as i64).ok_or_else(|| Reply::err(errors::invalid_expire(cmd)))? };
    Ok(at as u64)
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`
fn set(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let (key, value) = (&args[1], &args[2]);
    let (mut nx, mut xx, mut get) = (false, false, false);
    let mut expire: Option<(bool, bool, &Bytes)> = None; // (unit_ms, absolute, arg)
    let mut keepttl = false;
    let mut i = 3;
    while i < args.len() {
        let opt = args[i].to_ascii_uppercase();
        let next = args.get(i + 1);
        match opt.as_slice() {
            b"NX" if !xx => nx = true,
            b"XX" if !nx => xx = true,
            b"GET" => get = true,
            b"KEEPTTL" if expire.is_none() => keepttl = true,
            b"EX" | b"PX" | b"EXAT" | b"PXAT" if expire.is_none() && !keepttl && next.is_some() => {
                let unit_ms = opt[0] == b'P';
                let absolute = opt.len() == 4;
                expire = Some((unit_ms, absolute, next.unwrap_or(&args[i])));
                i += 1;
            }
            _ => return Reply::err(errors::SYNTAX),
        }
        i += 1;
    }
    let ttl = match expire {
        Some((unit_ms, absolute, arg)) => match deadline(ctx.now_ms, unit_ms, absolute, arg, "set") {
            Ok(at) => Ttl::At(at),
            Err(e) => return e,
        },
        None if keepttl => Ttl::Keep,
        None => Ttl::None,
    };
    let old = if get {
        match ctx.get_string(key) {
            Ok(v) => Some(v),
            Err(e) => return e,
        }
    } else {
        None
    };
    let exists = ctx.exists(key);
    if (nx && exists) || (xx && !exists) {
        return match old {
            Some(v) => Reply::opt_bulk(v),
            None => Reply::Nil,
        };
    }
    set_string(ctx, key, value, ttl);
    match old {
        Some(v) => Reply::opt_bulk(v),
        None => Reply::Ok,
    }
}

/// Stores a string with a TTL choice and emits its canonical change (`SET k v [PXAT t]`,
/// or `DEL k` when the deadline has already passed).
pub(crate) fn set_string(ctx: &mut Ctx, key: &[u8], value: &[u8], ttl: Ttl) {
    let expire_at = match ttl {
        Ttl::None => 0,
        Ttl::At(t) => t,
        Ttl::Keep => ctx.read(key).map(|e| e.expire_at).unwrap_or(0),
    };
    if expire_at != 0 && expire_at <= ctx.now_ms {
        if ctx.delete(key) {
            ctx.emit(&[b"DEL", key]);
            ctx.notify(EventClass::Generic, "del", key);
        }
        return;
    }
    ctx.store(key, Value::string(value), expire_at);
    if expire_at != 0 {
        let at = expire_at.to_string();
        ctx.emit(&[b"SET", key, value, b"PXAT", at.as_bytes()]);
    } else {
        ctx.emit(&[b"SET", key, value]);
    }
    ctx.notify(EventClass::String, "set", key);
    if expire_at != 0 {
        ctx.notify(EventClass::Generic, "expire", key);
    }
}

/// Whether the key holds a string (used by tests of the WRONGTYPE path).
#[allow(dead_code)]
pub(crate) fn is_string(ctx: &mut Ctx, key: &[u8]) -> bool {
    matches!(ctx.read_kind(key, Kind::String), Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;

    #[test]
    fn get_set_basics() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v"]);
        t.bulk(&["GET", "k"], "v");
        t.nil(&["GET", "missing"]);
        t.err(&["GET"], "ERR wrong number of arguments for 'get' command");
        t.err(&["SET", "k"], "ERR wrong number of arguments for 'set' command");
    }

    #[test]
    fn set_options() {
        let mut t = T::new();
        t.nil(&["SET", "k", "v", "XX"]);
        t.ok(&["SET", "k", "v", "NX"]);
        t.nil(&["SET", "k", "w", "NX"]);
        t.bulk(&["SET", "k", "w", "GET"], "v");
        t.err(&["SET", "k", "v", "NX", "XX"], "ERR syntax error");
        t.err(&["SET", "k", "v", "EX", "10", "PX", "100"], "ERR syntax error");
        t.err(&["SET", "k", "v", "EX"], "ERR syntax error");
        t.err(&["SET", "k", "v", "EX", "0"], "ERR invalid expire time in 'set' command");
        t.err(&["SET", "k", "v", "EX", "-1"], "ERR invalid expire time in 'set' command");
        t.err(&["SET", "k", "v", "EX", "x"], "ERR value is not an integer or out of range");
        t.err(&["SET", "k", "v", "EX", "9223372036854775807"], "ERR invalid expire time in 'set' command");
        t.ok(&["SET", "k", "v", "EX", "10"]);
        t.int(&["PTTL", "k"], 10_000);
        t.ok(&["SET", "k", "v2", "KEEPTTL"]);
        t.int(&["PTTL", "k"], 10_000);
        t.ok(&["SET", "k", "v3"]);
        t.int(&["PTTL", "k"], -1);
        t.ok(&["SET", "k", "v", "PXAT", "1"]);
        t.nil(&["GET", "k"]);
    }

    #[test]
    fn set_emits_absolute_expiry() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v", "EX", "5"]);
        let expect = format!("SET k v PXAT {}", t.now + 5000);
        assert_eq!(t.changes(), vec![expect]);
    }

    #[test]
    fn get_wrongtype() {
        let mut t = T::new();
        t.int(&["LPUSH", "l", "a"], 1);
        t.err(&["GET", "l"], "WRONGTYPE Operation against a key holding the wrong kind of value");
        t.err(&["SET", "l", "x", "GET"], "WRONGTYPE Operation against a key holding the wrong kind of value");
        t.ok(&["SET", "l", "x"]);
    }
}
