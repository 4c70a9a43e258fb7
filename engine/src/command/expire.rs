//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, EXPIRETIME, PEXPIRETIME, TTL,
//! PTTL, PERSIST.
//!
//! Every deadline is stored and replicated as an absolute Unix time in milliseconds
//! (`PEXPIREAT k <ms>`), so replaying the stream later gives the same deadline. A deadline
//! that has already passed deletes the key at once and replicates as `DEL k`.

use bytes::Bytes;

use crate::change::EventClass;
use crate::command::flags::*;
use crate::command::{lossy_trunc, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::reply::{errors, Reply};
use crate::util::parse_i64;

/// The expiry commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("expire", -3, WRITE | FAST, "generic", Handler::Engine(expire))
        .keys(1, 1, 1)
        .doc("Set a key's time to live in seconds", "1.0.0"),
    CommandSpec::new("pexpire", -3, WRITE | FAST, "generic", Handler::Engine(pexpire))
        .keys(1, 1, 1)
        .doc("Set a key's time to live in milliseconds", "2.6.0"),
    CommandSpec::new("expireat", -3, WRITE | FAST, "generic", Handler::Engine(expireat))
        .keys(1, 1, 1)
        .doc("Set the expiration for a key as a UNIX timestamp", "1.2.0"),
    CommandSpec::new("pexpireat", -3, WRITE | FAST, "generic", Handler::Engine(pexpireat))
        .keys(1, 1, 1)
        .doc("Set the expiration for a key as a UNIX timestamp specified in milliseconds", "2.6.0"),
    CommandSpec::new("expiretime", 2, READONLY | FAST, "generic", Handler::Engine(expiretime))
        .keys(1, 1, 1)
        .doc("Get the expiration Unix timestamp for a key", "7.0.0"),
    CommandSpec::new("pexpiretime", 2, READONLY | FAST, "generic", Handler::Engine(pexpiretime))
        .keys(1, 1, 1)
        .doc("Get the expiration Unix timestamp for a key in milliseconds", "7.0.0"),
    CommandSpec::new("ttl", 2, READONLY | FAST, "generic", Handler::Engine(ttl))
        .keys(1, 1, 1)
        .doc("Get the time to live for a key in seconds", "1.0.0"),
    CommandSpec::new("pttl", 2, READONLY | FAST, "generic", Handler::Engine(pttl))
        .keys(1, 1, 1)
        .doc("Get the time to live for a key in milliseconds", "2.6.0"),
    CommandSpec::new("persist", 2, WRITE | FAST, "generic", Handler::Engine(persist))
        .keys(1, 1, 1)
        .doc("Remove the expiration from a key", "2.2.0"),
];

/// `EXPIRE key seconds [NX|XX|GT|LT]`
fn expire(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    expire_generic(ctx, args, now, true, "expire")
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`
fn pexpire(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    expire_generic(ctx, args, now, false, "pexpire")
}

/// `EXPIREAT key unix-time-seconds [NX|XX|GT|LT]`
fn expireat(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, 0, true, "expireat")
}

/// `PEXPIREAT key unix-time-milliseconds [NX|XX|GT|LT]`
fn pexpireat(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, 0, false, "pexpireat")
}

/// The NX/XX/GT/LT conditions of the EXPIRE family.
#[derive(Default)]
struct Cond {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_cond(opts: &[Bytes]) -> Result<Cond, Reply> {
    let mut c = Cond::default();
    for opt in opts {
        match opt.to_ascii_uppercase().as_slice() {
            b"NX" => c.nx = true,
            b"XX" => c.xx = true,
            b"GT" => c.gt = true,
            b"LT" => c.lt = true,
            _ => return Err(Reply::err(format!("ERR Unsupported option {}", lossy_trunc(opt, 128)))),
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(Reply::err("ERR NX and XX, GT or LT options at the same time are not compatible"));
    }
    if c.gt && c.lt {
        return Err(Reply::err("ERR GT and LT options at the same time are not compatible"));
    }
    Ok(c)
}

/// Redis's `expireGenericCommand`: options, then the number, then the key.
fn expire_generic(ctx: &mut Ctx, args: &[Bytes], basetime: u64, seconds: bool, name: &str) -> Reply {
    let cond = match parse_cond(&args[3..]) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let Some(mut when) = parse_i64(&args[2]) else { return Reply::err(errors::NOT_INTEGER) };
    if seconds {
        // Negative times are allowed (they delete the key); only overflow is refused.
        let Some(ms) = when.checked_mul(1000) else { return Reply::err(errors::invalid_expire(name)) };
        when = ms;
    }
    let Some(when) = when.checked_add(basetime as i64) else { return Reply::err(errors::invalid_expire(name)) };
    let key = &args[1];
    let Some(entry) = ctx.write(key) else { return Reply::Int(0) };
    let current = entry.expire_at;
    let refused = (cond.nx && current != 0)
        || (cond.xx && current == 0)
        || (cond.gt && (current == 0 || when <= current as i64))
        || (cond.lt && current != 0 && when >= current as i64);
    if refused {
        return Reply::Int(0);
    }
    if when <= 0 || ctx.deadline_passed(when as u64) {
        ctx.delete(key);
        ctx.emit(&[b"DEL", key]);
        ctx.notify(EventClass::Generic, "del", key);
    } else {
        ctx.set_expire(key, when as u64);
        ctx.emit(&[b"PEXPIREAT", key, when.to_string().as_bytes()]);
        ctx.notify(EventClass::Generic, "expire", key);
    }
    Reply::Int(1)
}

/// The deadline of `key` without touching its access time: `None` when the key is
/// missing, `Some(0)` when it has no deadline.
fn deadline_of(ctx: &mut Ctx, key: &[u8]) -> Option<u64> {
    if !ctx.exists(key) {
        return None;
    }
    ctx.db().get(key).map(|e| e.expire_at)
}

/// Answers -2 for a missing key, -1 for no deadline, else `f(deadline)`.
fn ttl_reply(ctx: &mut Ctx, key: &[u8], f: impl FnOnce(u64, u64) -> u64) -> Reply {
    match deadline_of(ctx, key) {
        None => Reply::Int(-2),
        Some(0) => Reply::Int(-1),
        Some(at) => Reply::Int(f(at, ctx.now_ms).min(i64::MAX as u64) as i64),
    }
}

/// `TTL key` (seconds, rounded to nearest as Redis does)
fn ttl(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    ttl_reply(ctx, &args[1], |at, now| (at.saturating_sub(now) + 500) / 1000)
}

/// `PTTL key`
fn pttl(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    ttl_reply(ctx, &args[1], |at, now| at.saturating_sub(now))
}

/// `EXPIRETIME key`
fn expiretime(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    ttl_reply(ctx, &args[1], |at, _| (at + 500) / 1000)
}

/// `PEXPIRETIME key`
fn pexpiretime(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    ttl_reply(ctx, &args[1], |at, _| at)
}

/// `PERSIST key`
fn persist(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let key = &args[1];
    match ctx.write(key) {
        Some(e) if e.expire_at != 0 => {
            ctx.set_expire(key, 0);
            ctx.emit(&[b"PERSIST", key]);
            ctx.notify(EventClass::Generic, "persist", key);
            Reply::Int(1)
        }
        _ => Reply::Int(0),
    }
}

#[cfg(test)]
mod tests {
    use crate::change::EventClass;
    use crate::engine::{Config, Engine};
    use crate::test_util::*;

    #[test]
    fn expire_and_ttl() {
        let mut t = T::new();
        t.int(&["EXPIRE", "missing", "10"], 0);
        t.int(&["TTL", "missing"], -2);
        t.int(&["PTTL", "missing"], -2);
        t.int(&["EXPIRETIME", "missing"], -2);
        t.int(&["PEXPIRETIME", "missing"], -2);
        t.ok(&["SET", "k", "v"]);
        t.int(&["TTL", "k"], -1);
        t.int(&["PTTL", "k"], -1);
        t.int(&["EXPIRETIME", "k"], -1);
        t.int(&["PEXPIRETIME", "k"], -1);
        t.changes();
        t.int(&["EXPIRE", "k", "10"], 1);
        t.int(&["TTL", "k"], 10);
        t.int(&["PTTL", "k"], 10_000);
        t.int(&["PEXPIRETIME", "k"], (t.now + 10_000) as i64);
        t.int(&["EXPIRETIME", "k"], ((t.now + 10_000 + 500) / 1000) as i64);
        t.int(&["PEXPIRE", "k", "2500"], 1);
        t.int(&["PTTL", "k"], 2500);
        t.int(&["TTL", "k"], 3); // (2500 + 500) / 1000
        t.now += 1000;
        t.int(&["TTL", "k"], 2); // 1500 ms rounds up
        t.now += 1;
        t.int(&["TTL", "k"], 1); // 1499 ms rounds down
        t.now -= 1001;
        let at = t.now / 1000 + 100;
        t.int(&["EXPIREAT", "k", &at.to_string()], 1);
        t.int(&["PEXPIRETIME", "k"], (at * 1000) as i64);
        let at_ms = t.now + 12_345;
        t.int(&["PEXPIREAT", "k", &at_ms.to_string()], 1);
        t.int(&["PTTL", "k"], 12_345);
        assert_eq!(
            t.changes(),
            vec![
                format!("PEXPIREAT k {}", t.now + 10_000),
                format!("PEXPIREAT k {}", t.now + 2500),
                format!("PEXPIREAT k {}", at * 1000),
                format!("PEXPIREAT k {}", at_ms),
            ]
        );
        t.now = at_ms;
        t.int(&["TTL", "k"], -2);
        t.nil(&["GET", "k"]);
        assert_eq!(t.changes(), vec!["DEL k"]);
    }

    #[test]
    fn expire_option_errors() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v"]);
        t.changes();
        let nx = "ERR NX and XX, GT or LT options at the same time are not compatible";
        t.err(&["EXPIRE", "k", "100", "NX", "XX"], nx);
        t.err(&["EXPIRE", "k", "100", "nx", "gt"], nx);
        t.err(&["EXPIRE", "k", "100", "LT", "NX"], nx);
        t.err(&["EXPIRE", "k", "10", "XX", "NX", "GT"], nx);
        t.err(&["EXPIRE", "k", "100", "GT", "LT"], "ERR GT and LT options at the same time are not compatible");
        t.err(&["EXPIRE", "k", "100", "foo"], "ERR Unsupported option foo");
        t.err(&["PEXPIRE", "missing", "100", "Bar"], "ERR Unsupported option Bar");
        // Options are checked before the number.
        t.err(&["EXPIRE", "k", "x", "foo"], "ERR Unsupported option foo");
        t.err(&["EXPIRE", "k", "x"], "ERR value is not an integer or out of range");
        t.err(&["EXPIRE", "k", "1.5"], "ERR value is not an integer or out of range");
        t.err(&["EXPIRE", "k", "9223372036854775807"], "ERR invalid expire time in 'expire' command");
        t.err(&["EXPIRE", "k", "-9223372036854775807"], "ERR invalid expire time in 'expire' command");
        t.err(&["PEXPIRE", "k", "9223372036854775807"], "ERR invalid expire time in 'pexpire' command");
        t.err(&["EXPIREAT", "k", "9223372036854775807"], "ERR invalid expire time in 'expireat' command");
        t.err(&["EXPIRE", "k"], "ERR wrong number of arguments for 'expire' command");
        t.err(&["TTL"], "ERR wrong number of arguments for 'ttl' command");
        t.err(&["TTL", "a", "b"], "ERR wrong number of arguments for 'ttl' command");
        t.err(&["PERSIST"], "ERR wrong number of arguments for 'persist' command");
        assert!(t.changes().is_empty());
        // The largest millisecond deadline is accepted.
        t.int(&["PEXPIREAT", "k", "9223372036854775807"], 1);
        t.int(&["PEXPIRETIME", "k"], i64::MAX);
        t.int(&["EXPIRETIME", "k"], 9223372036854776);
        t.int(&["TTL", "k"], ((i64::MAX as u64 - t.now + 500) / 1000) as i64);
        t.int(&["EXPIRE", "k", "10", "NX", "NX"], 0);
    }

    #[test]
    fn expire_conditions() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v"]);
        t.changes();
        t.int(&["EXPIRE", "k", "100", "XX"], 0);
        t.int(&["EXPIRE", "k", "100", "GT"], 0); // no TTL counts as infinite
        t.int(&["EXPIRE", "k", "100", "LT"], 1);
        t.int(&["EXPIRE", "k", "100", "NX"], 0);
        t.int(&["EXPIRE", "k", "200", "GT"], 1);
        t.int(&["EXPIRE", "k", "200", "GT"], 0); // equal is not greater
        t.int(&["EXPIRE", "k", "50", "GT"], 0);
        t.int(&["EXPIRE", "k", "300", "LT"], 0);
        t.int(&["EXPIRE", "k", "200", "LT"], 0);
        t.int(&["EXPIRE", "k", "10", "LT"], 1);
        t.int(&["EXPIRE", "k", "20", "XX", "GT"], 1);
        t.int(&["TTL", "k"], 20);
        t.int(&["PERSIST", "k"], 1);
        t.int(&["PERSIST", "k"], 0);
        t.int(&["PERSIST", "missing"], 0);
        t.int(&["EXPIRE", "k", "10", "NX"], 1);
        let c = t.changes();
        assert_eq!(c.len(), 6);
        assert_eq!(c[4], "PERSIST k");
    }

    #[test]
    fn past_deadline_deletes() {
        let mut t = T::new();
        t.eng.config_mut().keyspace_events = EventClass::Generic.bit();
        t.ok(&["SET", "k", "v"]);
        t.int(&["EXPIRE", "k", "0"], 1);
        t.nil(&["GET", "k"]);
        t.ok(&["SET", "k", "v"]);
        t.int(&["EXPIRE", "k", "-5"], 1);
        t.ok(&["SET", "k", "v"]);
        t.int(&["PEXPIREAT", "k", "1"], 1);
        t.ok(&["SET", "k", "v"]);
        t.int(&["EXPIREAT", "k", &(t.now / 1000).to_string()], 1);
        t.nil(&["GET", "k"]);
        t.ok(&["SET", "k", "v"]);
        t.int(&["PEXPIRE", "k", "-9223372036854775807"], 1);
        let c = t.changes();
        assert_eq!(c.iter().filter(|c| *c == "DEL k").count(), 5);
        let ev: Vec<_> = t.eng.take_events().iter().map(|e| e.event).collect();
        assert_eq!(ev.iter().filter(|e| **e == "del").count(), 5);
        t.ok(&["SET", "k", "v"]);
        t.int(&["EXPIRE", "k", "10"], 1);
        let ev: Vec<_> = t.eng.take_events().iter().map(|e| e.event).collect();
        assert_eq!(ev, vec!["expire"]);
    }

    #[test]
    fn lazily_expired_key_is_missing() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v", "PX", "100"]);
        t.now += 100;
        t.int(&["EXPIRE", "k", "10"], 0);
        t.int(&["PERSIST", "k"], 0);
        t.int(&["TTL", "k"], -2);
    }

    #[test]
    fn works_with_lfu_policy() {
        let mut t = T::new();
        t.eng = Engine::new(Config { policy: crate::eviction::Policy::AllKeysLfu, ..Config::default() });
        t.ok(&["SET", "k", "v"]);
        t.int(&["EXPIRE", "k", "10"], 1);
        t.int(&["TTL", "k"], 10);
    }

    #[test]
    fn expire_changes_replay() {
        let mut t = T::new();
        for cmd in [
            &["SET", "a", "1"][..],
            &["SET", "b", "2"],
            &["SET", "c", "3"],
            &["SET", "d", "4", "EX", "50"],
            &["EXPIRE", "a", "100"],
            &["PEXPIRE", "b", "2500", "NX"],
            &["EXPIREAT", "c", "4102444800"],
            &["PERSIST", "d"],
            &["EXPIRE", "b", "-1"],
            &["PEXPIREAT", "c", "4102444800123", "GT"],
        ] {
            assert!(!t.cmd(cmd).is_error(), "{:?}", cmd);
        }
        t.assert_replays();
    }
}
