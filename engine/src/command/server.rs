//! Connection and server commands the engine answers (PING, ECHO, SELECT, COMMAND), and
//! the table entries of commands a host answers (CLIENT, CONFIG, INFO, pub/sub, …).

use bytes::Bytes;

use crate::command::flags::*;
use crate::command::{CommandSpec, Handler};
use crate::engine::Ctx;
use crate::reply::{errors, Reply};
use crate::util::parse_i64;

/// The server and connection commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("ping", -1, FAST, "connection", Handler::Engine(ping))
        .doc("Returns the server's liveliness response.", "1.0.0"),
    CommandSpec::new("echo", 2, FAST, "connection", Handler::Engine(echo))
        .doc("Returns the given string.", "1.0.0"),
    CommandSpec::new("select", 2, LOADING | STALE | FAST, "connection", Handler::Engine(select))
        .doc("Changes the selected database.", "1.0.0"),
];

/// `PING [message]`
fn ping(_: &mut Ctx, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => Reply::err(errors::arity("ping")),
    }
}

/// `ECHO message`
fn echo(_: &mut Ctx, args: &[Bytes]) -> Reply {
    Reply::Bulk(args[1].clone())
}

/// `SELECT index`
fn select(ctx: &mut Ctx, args: &[Bytes]) -> Reply {
    let Some(n) = parse_i64(&args[1]) else { return Reply::err(errors::NOT_INTEGER) };
    if n < 0 || n as usize >= ctx.eng.dbs.len() {
        return Reply::err(errors::DB_INDEX);
    }
    ctx.sess.db = n as usize;
    Reply::Ok
}
