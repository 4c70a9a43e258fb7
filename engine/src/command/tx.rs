//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! MULTI queues commands in the session; EXEC runs them back to back inside one change
//! group, so every host applies them atomically. WATCH marks keys; any change to a watched
//! key (a write, an expiry, an eviction, a FLUSH) makes the watching session's EXEC return
//! a null array.

use bytes::Bytes;

use crate::command::flags::*;
use crate::command::{CommandSpec, Handler};
use crate::engine::Ctx;
use crate::reply::Reply;

/// The transaction commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("multi", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE, "transactions", Handler::Engine(multi))
        .doc("Starts a transaction.", "1.2.0"),
    CommandSpec::new("exec", 1, NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG | NO_QUEUE, "transactions", Handler::Exec)
        .doc("Executes all commands in a transaction.", "1.2.0"),
    CommandSpec::new("discard", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE, "transactions", Handler::Engine(discard))
        .doc("Discards a transaction.", "2.0.0"),
    CommandSpec::new("watch", -2, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY | NO_QUEUE, "transactions", Handler::Engine(watch))
        .keys(1, -1, 1)
        .doc("Monitors changes to keys to determine the execution of a transaction.", "2.2.0"),
    CommandSpec::new("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY, "transactions", Handler::Engine(unwatch))
        .doc("Forgets about watched keys of a transaction.", "2.2.0"),
];

/// `MULTI`
fn multi(ctx: &mut Ctx, _: &[Bytes]) -> Reply {
    ctx.eng.multi(ctx.sess)
}

/// `DISCARD`
fn discard(ctx: &mut Ctx, _: &[Bytes]) -> Reply {
    ctx.eng.discard(ctx.sess)
}

/// `WATCH key [key …]`
fn watch(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    ctx.eng.watch(ctx.sess, &args[1..], now)
}

/// `UNWATCH`
fn unwatch(ctx: &mut Ctx, _: &[Bytes]) -> Reply {
    ctx.eng.unwatch_all(ctx.sess);
    Reply::Ok
}

#[cfg(test)]
mod tests {
    use crate::reply::Reply;
    use crate::test_util::*;

    #[test]
    fn multi_exec() {
        let mut t = T::new();
        t.ok(&["MULTI"]);
        t.simple(&["SET", "a", "1"], "QUEUED");
        t.simple(&["GET", "a"], "QUEUED");
        assert_eq!(t.cmd(&["EXEC"]), Reply::Array(vec![Reply::Ok, Reply::bulk("1")]));
        t.err(&["EXEC"], "ERR EXEC without MULTI");
        t.err(&["DISCARD"], "ERR DISCARD without MULTI");
    }

    #[test]
    fn exec_is_one_group() {
        let mut t = T::new();
        t.ok(&["MULTI"]);
        t.cmd(&["SET", "a", "1"]);
        t.cmd(&["SET", "b", "2"]);
        t.cmd(&["EXEC"]);
        let groups = t.eng.take_changes();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].changes.len(), 2);
    }

    #[test]
    fn queued_errors_abort() {
        let mut t = T::new();
        t.ok(&["MULTI"]);
        t.err(&["NOSUCH"], "ERR unknown command 'NOSUCH', with args beginning with: ");
        t.err(&["GET"], "ERR wrong number of arguments for 'get' command");
        t.err(&["MULTI"], "ERR MULTI calls can not be nested");
        t.err(&["EXEC"], "EXECABORT Transaction discarded because of previous errors.");
    }

    #[test]
    fn runtime_errors_do_not_abort() {
        let mut t = T::new();
        t.ok(&["SET", "s", "x"]);
        t.ok(&["MULTI"]);
        t.cmd(&["LPUSH", "s", "a"]);
        t.cmd(&["SET", "t", "1"]);
        match t.cmd(&["EXEC"]) {
            Reply::Array(items) => {
                assert!(items[0].is_error());
                assert_eq!(items[1], Reply::Ok);
            }
            other => panic!("{:?}", other),
        }
    }

    #[test]
    fn watch_sees_writes_by_others() {
        let mut t = T::new();
        let mut other = crate::Session::new(99);
        t.ok(&["WATCH", "k"]);
        t.eng.run(&mut other, &[b"SET", b"k", b"v"], t.now);
        t.ok(&["MULTI"]);
        t.cmd(&["SET", "k", "mine"]);
        assert_eq!(t.cmd(&["EXEC"]), Reply::NilArray);
        t.bulk(&["GET", "k"], "v");
    }

    #[test]
    fn watch_sees_expiry_and_flush() {
        let mut t = T::new();
        t.ok(&["SET", "k", "v", "PX", "100"]);
        t.ok(&["WATCH", "k"]);
        t.now += 200;
        t.eng.sweep(t.now, 100);
        t.ok(&["MULTI"]);
        t.cmd(&["GET", "k"]);
        assert_eq!(t.cmd(&["EXEC"]), Reply::NilArray);

        t.ok(&["SET", "k", "v"]);
        t.ok(&["WATCH", "k"]);
        t.ok(&["FLUSHALL"]);
        t.ok(&["MULTI"]);
        t.cmd(&["GET", "k"]);
        assert_eq!(t.cmd(&["EXEC"]), Reply::NilArray);
    }

    #[test]
    fn unwatch_and_untouched_watch() {
        let mut t = T::new();
        let mut other = crate::Session::new(99);
        t.ok(&["WATCH", "k"]);
        t.ok(&["UNWATCH"]);
        t.eng.run(&mut other, &[b"SET", b"k", b"v"], t.now);
        t.ok(&["MULTI"]);
        t.cmd(&["GET", "k"]);
        assert_eq!(t.cmd(&["EXEC"]), Reply::Array(vec![Reply::bulk("v")]));
        t.ok(&["MULTI"]);
        t.err(&["WATCH", "x"], "ERR WATCH inside MULTI is not allowed");
        t.ok(&["DISCARD"]);
    }
}
