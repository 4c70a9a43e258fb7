//! Connection and server commands the engine answers (PING, ECHO, SELECT, COMMAND), and
//! the table entries of commands a host answers (AUTH, HELLO, CLIENT, CONFIG, INFO,
//! pub/sub, …). The arity and flags are Redis 7's, as its COMMAND reports them; container
//! commands (CLIENT, CONFIG, PUBSUB, COMMAND) check their subcommands' arity themselves.

use bytes::Bytes;

use crate::command::flags::*;
use crate::command::{self as table, CommandSpec, Handler};
use crate::engine::Ctx;
use crate::reply::{errors, Reply};
use crate::util::parse_i64;

/// Flags of the connection commands that work before AUTH.
const CONN: u32 = NOSCRIPT | LOADING | STALE | FAST | NO_AUTH | ALLOW_BUSY;
/// Flags of SUBSCRIBE and friends.
const SUB: u32 = PUBSUB | NOSCRIPT | LOADING | STALE;

/// The server and connection commands.
pub static COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("ping", -1, FAST, "connection", Handler::Engine(ping))
        .doc("Returns the server's liveliness response.", "1.0.0"),
    CommandSpec::new("echo", 2, FAST, "connection", Handler::Engine(echo))
        .doc("Returns the given string.", "1.0.0"),
    CommandSpec::new("select", 2, LOADING | STALE | FAST, "connection", Handler::Engine(select))
        .doc("Changes the selected database.", "1.0.0"),
    CommandSpec::new("command", -1, LOADING | STALE, "server", Handler::Engine(command))
        .doc("Returns detailed information about all commands.", "2.8.13"),
    // Answered by the host.
    CommandSpec::new("auth", -2, CONN, "connection", Handler::Host)
        .doc("Authenticates the connection.", "1.0.0"),
    CommandSpec::new("hello", -1, CONN, "connection", Handler::Host)
        .doc("Handshakes with the Redis server.", "6.0.0"),
    // QUIT and RESET act at once inside MULTI, as in Redis.
    CommandSpec::new("quit", -1, CONN | NO_QUEUE, "connection", Handler::Host)
        .doc("Closes the connection.", "1.0.0"),
    CommandSpec::new("reset", 1, CONN | NO_QUEUE, "connection", Handler::Host)
        .doc("Resets the connection.", "6.2.0"),
    CommandSpec::new("client", -2, 0, "connection", Handler::Host)
        .doc("A container for client connection commands.", "2.4.0"),
    CommandSpec::new("config", -2, 0, "server", Handler::Host)
        .doc("A container for server configuration commands.", "2.0.0"),
    CommandSpec::new("info", -1, LOADING | STALE, "server", Handler::Host)
        .doc("Returns information and statistics about the server.", "1.0.0"),
    CommandSpec::new("time", 1, LOADING | STALE | FAST, "server", Handler::Host)
        .doc("Returns the server time.", "2.6.0"),
    CommandSpec::new("wait", 3, NOSCRIPT, "generic", Handler::Host)
        .doc("Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.", "3.0.0"),
    CommandSpec::new("replicaof", 3, ADMIN | NOSCRIPT | STALE, "server", Handler::Host)
        .doc("Configures a server as replica of another, or promotes it to a master.", "5.0.0"),
    CommandSpec::new("slaveof", 3, ADMIN | NOSCRIPT | STALE, "server", Handler::Host)
        .doc("Sets a Redis server as a replica of another, or promotes it to being a master.", "1.0.0"),
    CommandSpec::new("role", 1, NOSCRIPT | LOADING | STALE | FAST, "server", Handler::Host)
        .doc("Returns the replication role.", "2.8.12"),
    CommandSpec::new("replconf", -1, ADMIN | NOSCRIPT | LOADING | STALE | ALLOW_BUSY, "server", Handler::Host)
        .doc("An internal command for configuring the replication stream.", "3.0.0"),
    CommandSpec::new("psync", -3, ADMIN | NOSCRIPT | NO_MULTI, "server", Handler::Host)
        .doc("An internal command used in replication.", "2.8.0"),
    CommandSpec::new("recached.demote", 6, ADMIN | NOSCRIPT | STALE | NO_MULTI, "server", Handler::Host)
        .doc("Recached: a node of a newer failover epoch is primary at host:port; become its replica.", "7.0.0"),
    CommandSpec::new("sync", 1, ADMIN | NOSCRIPT | NO_MULTI, "server", Handler::Host)
        .doc("An internal command used in replication.", "1.0.0"),
    CommandSpec::new("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY, "server", Handler::Host)
        .doc("Synchronously saves the database(s) to disk and shuts down the Redis server.", "1.0.0"),
    CommandSpec::new("subscribe", -2, SUB, "pubsub", Handler::Host)
        .doc("Listens for messages published to channels.", "2.0.0"),
    CommandSpec::new("unsubscribe", -1, SUB, "pubsub", Handler::Host)
        .doc("Stops listening to messages posted to channels.", "2.0.0"),
    CommandSpec::new("psubscribe", -2, SUB, "pubsub", Handler::Host)
        .doc("Listens for messages published to channels that match one or more patterns.", "2.0.0"),
    CommandSpec::new("punsubscribe", -1, SUB, "pubsub", Handler::Host)
        .doc("Stops listening to messages published to channels that match one or more patterns.", "2.0.0"),
    CommandSpec::new("publish", 3, PUBSUB | LOADING | STALE | FAST, "pubsub", Handler::Host)
        .doc("Posts a message to a channel.", "2.0.0"),
    CommandSpec::new("pubsub", -2, 0, "pubsub", Handler::Host)
        .doc("A container for Pub/Sub commands.", "2.8.0"),
    // Shard channels are not keys (Redis flags them `not_key`), so no key positions: the
    // sync layer's key scopes must not apply to them.
    CommandSpec::new("ssubscribe", -2, SUB, "pubsub", Handler::Host)
        .doc("Listens for messages published to shard channels.", "7.0.0"),
    CommandSpec::new("sunsubscribe", -1, SUB, "pubsub", Handler::Host)
        .doc("Stops listening to messages posted to shard channels.", "7.0.0"),
    CommandSpec::new("spublish", 3, PUBSUB | LOADING | STALE | FAST, "pubsub", Handler::Host)
        .doc("Post a message to a shard channel", "7.0.0"),
    // Persistence (the native hub; other hosts answer that they do not have it).
    CommandSpec::new("save", 1, ADMIN | NOSCRIPT | NO_MULTI, "server", Handler::Host)
        .doc("Synchronously saves the database(s) to disk.", "1.0.0"),
    CommandSpec::new("bgsave", -1, ADMIN | NOSCRIPT, "server", Handler::Host)
        .doc("Asynchronously saves the database(s) to disk.", "1.0.0"),
    CommandSpec::new("bgrewriteaof", 1, ADMIN | NOSCRIPT, "server", Handler::Host)
        .doc("Asynchronously rewrites the append-only file to disk.", "1.0.0"),
    CommandSpec::new("lastsave", 1, LOADING | STALE | FAST, "server", Handler::Host)
        .doc("Returns the Unix timestamp of the last successful save to disk.", "1.0.0"),
    // Recached's own: `RECACHED.TOKEN subject ttl [READ n pattern…] [WRITE n pattern…]` mints
    // a sync token. `admin`, so sync connections and the HTTP API never reach it.
    CommandSpec::new("recached.token", -3, ADMIN | NOSCRIPT | LOADING | STALE, "server", Handler::Host)
        .doc("Mints a JWT (HS256) access token for WebSocket sync and HTTP API clients.", "7.0.0"),
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

/// `COMMAND [COUNT | INFO [name …] | DOCS [name …] | LIST [FILTERBY …] | GETKEYS cmd arg… |
/// GETKEYSANDFLAGS cmd arg… | HELP]`
fn command(_: &mut Ctx, args: &[Bytes]) -> Reply {
    if args.len() == 1 {
        return Reply::Array(table::table().iter().map(|c| command_info(c)).collect());
    }
    let sub = args[1].to_ascii_lowercase();
    let arity = |min: usize, exact: bool| if exact { args.len() == min } else { args.len() >= min };
    let wrong = || Reply::err(errors::arity(&format!("command|{}", String::from_utf8_lossy(&sub))));
    match sub.as_slice() {
        b"count" if arity(2, true) => Reply::Int(table::table().len() as i64),
        b"info" => {
            if args.len() == 2 {
                return Reply::Array(table::table().iter().map(|c| command_info(c)).collect());
            }
            // Redis answers an unknown name with a null bulk (`$-1`), not a null array.
            Reply::Array(args[2..].iter().map(|n| table::lookup(n).map(command_info).unwrap_or(Reply::Nil)).collect())
        }
        b"docs" => {
            let specs: Vec<&CommandSpec> = if args.len() == 2 {
                table::table().to_vec()
            } else {
                args[2..].iter().filter_map(|n| table::lookup(n)).collect()
            };
            Reply::Map(specs.into_iter().map(|c| (Reply::bulk(c.name), command_docs(c))).collect())
        }
        b"list" => command_list(args),
        b"getkeys" | b"getkeysandflags" if arity(4, false) => {
            let with_flags = sub.as_slice() == b"getkeysandflags";
            let target = &args[2..];
            let Some(spec) = table::lookup(&target[0]) else { return Reply::err("ERR Invalid command specified") };
            if !spec.arity_ok(target.len()) {
                return Reply::err("ERR Invalid number of arguments specified for command");
            }
            let keys = spec.keys_of(target);
            if keys.is_empty() {
                return Reply::err("ERR The command has no key arguments");
            }
            Reply::Array(
                keys.into_iter()
                    .map(|k| {
                        if with_flags {
                            Reply::Array(vec![Reply::Bulk(k.clone()), Reply::Array(key_flags(spec).iter().map(|f| Reply::simple(*f)).collect())])
                        } else {
                            Reply::Bulk(k.clone())
                        }
                    })
                    .collect(),
            )
        }
        b"help" if arity(2, true) => Reply::Array(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>",
                "    Return the keys and the access flags from a full Redis command.",
                "HELP",
                "    Print this help.",
            ]
            .iter()
            .map(|l| Reply::simple(*l))
            .collect(),
        ),
        b"count" | b"getkeys" | b"getkeysandflags" | b"help" => wrong(),
        _ => Reply::err(table::unknown_subcommand_error("command", &args[1])),
    }
}

/// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]`
fn command_list(args: &[Bytes]) -> Reply {
    let names = table::table().iter();
    match args.len() {
        2 => Reply::Array(names.map(|c| Reply::bulk(c.name)).collect()),
        5 if args[2].eq_ignore_ascii_case(b"filterby") => {
            let what = args[3].to_ascii_lowercase();
            let arg = &args[4];
            let keep: Box<dyn Fn(&CommandSpec) -> bool> = match what.as_slice() {
                b"module" => Box::new(|_| false),
                b"aclcat" => {
                    let want = String::from_utf8_lossy(arg).to_ascii_lowercase();
                    let want = want.trim_start_matches('@').to_string();
                    Box::new(move |c| acl_categories(c).iter().any(|a| a[1..] == want))
                }
                b"pattern" => {
                    let pat = arg.clone();
                    Box::new(move |c| crate::glob::matches(&pat, c.name.as_bytes(), true))
                }
                _ => return Reply::err(errors::SYNTAX),
            };
            Reply::Array(names.filter(|c| keep(c)).map(|c| Reply::bulk(c.name)).collect())
        }
        _ => Reply::err(errors::SYNTAX),
    }
}

/// The ten-element COMMAND INFO entry of Redis 7.
fn command_info(c: &CommandSpec) -> Reply {
    let flag_names: Vec<Reply> =
        table::flags::NAMES.iter().filter(|(bit, _)| c.flags & bit != 0).map(|(_, n)| Reply::simple(*n)).collect();
    let (first, last, step) = if c.keys_fn.is_some() && c.first_key == 0 {
        (0, 0, 0)
    } else {
        (c.first_key as i64, c.last_key as i64, c.step as i64)
    };
    Reply::Array(vec![
        Reply::bulk(c.name),
        Reply::Int(c.arity as i64),
        Reply::Set(flag_names),
        Reply::Int(first),
        Reply::Int(last),
        Reply::Int(step),
        Reply::Set(acl_categories(c).into_iter().map(Reply::simple).collect()),
        Reply::Array(Vec::new()),
        Reply::Array(key_specs(c)),
        Reply::Array(Vec::new()),
    ])
}

/// COMMAND DOCS for one command.
fn command_docs(c: &CommandSpec) -> Reply {
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk(c.summary)),
        (Reply::bulk("since"), Reply::bulk(c.since)),
        (Reply::bulk("group"), Reply::bulk(c.group)),
    ])
}

fn key_flags(c: &CommandSpec) -> &'static [&'static str] {
    if c.is_write() {
        &["RW", "update"]
    } else {
        &["RO", "access"]
    }
}

fn key_specs(c: &CommandSpec) -> Vec<Reply> {
    let flags = Reply::Array(key_flags(c).iter().map(|f| Reply::simple(*f)).collect());
    let map = |pairs: Vec<(&'static str, Reply)>| Reply::Map(pairs.into_iter().map(|(k, v)| (Reply::bulk(k), v)).collect());
    if c.first_key > 0 {
        let lastkey = if c.last_key < 0 { c.last_key } else { c.last_key - c.first_key };
        vec![map(vec![
            ("flags", flags),
            ("begin_search", map(vec![("type", Reply::bulk("index")), ("spec", map(vec![("index", Reply::Int(c.first_key as i64))]))])),
            (
                "find_keys",
                map(vec![
                    ("type", Reply::bulk("range")),
                    (
                        "spec",
                        map(vec![
                            ("lastkey", Reply::Int(lastkey as i64)),
                            ("keystep", Reply::Int(c.step.max(1) as i64)),
                            ("limit", Reply::Int(0)),
                        ]),
                    ),
                ]),
            ),
        ])]
    } else if c.keys_fn.is_some() {
        vec![map(vec![
            ("flags", flags),
            ("begin_search", map(vec![("type", Reply::bulk("unknown")), ("spec", map(vec![]))])),
            ("find_keys", map(vec![("type", Reply::bulk("unknown")), ("spec", map(vec![]))])),
        ])]
    } else {
        Vec::new()
    }
}

/// ACL categories in Redis's order, derived from the group and the flags.
fn acl_categories(c: &CommandSpec) -> Vec<&'static str> {
    let mut out = Vec::new();
    let group = c.group;
    if matches!(group, "generic" | "keyspace") && c.first_key != 0 || c.keys_fn.is_some() && group == "generic" {
        out.push("@keyspace");
    }
    if c.is_readonly() {
        out.push("@read");
    }
    if c.is_write() {
        out.push("@write");
    }
    match group {
        "set" => out.push("@set"),
        "sorted-set" | "sorted_set" | "zset" => out.push("@sortedset"),
        "list" => out.push("@list"),
        "hash" => out.push("@hash"),
        "string" => out.push("@string"),
        "pubsub" => out.push("@pubsub"),
        _ => {}
    }
    if c.flags & ADMIN != 0 {
        out.push("@admin");
    }
    out.push(if c.flags & FAST != 0 { "@fast" } else { "@slow" });
    if c.is_blocking() {
        out.push("@blocking");
    }
    if c.flags & ADMIN != 0 {
        out.push("@dangerous");
    }
    match group {
        "connection" => out.push("@connection"),
        "transactions" => out.push("@transaction"),
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::reply::Reply;
    use crate::test_util::*;

    #[test]
    fn command_count_info_docs_list() {
        let mut t = T::new();
        let n = crate::command::table().len() as i64;
        t.int(&["COMMAND", "COUNT"], n);
        t.err(&["COMMAND", "COUNT", "x"], "ERR wrong number of arguments for 'command|count' command");
        t.err(&["COMMAND", "FOO"], "ERR unknown subcommand 'FOO'. Try COMMAND HELP.");
        match t.cmd(&["COMMAND"]) {
            Reply::Array(items) => assert_eq!(items.len() as i64, n),
            other => panic!("{:?}", other),
        }
        match t.cmd(&["COMMAND", "INFO", "get", "nosuch"]) {
            Reply::Array(items) => {
                assert_eq!(items.len(), 2);
                // Regression (docs/compat-findings.md F6): Redis 7.0 sends `$-1` here, the
                // hub sent `*-1`.
                assert_eq!(items[1], Reply::Nil);
                let Reply::Array(get) = &items[0] else { panic!() };
                assert_eq!(get.len(), 10);
                assert_eq!(get[0], Reply::bulk("get"));
                assert_eq!(get[1], Reply::Int(2));
                assert_eq!(get[2], Reply::Set(vec![Reply::simple("readonly"), Reply::simple("fast")]));
                assert_eq!(get[3..6], [Reply::Int(1), Reply::Int(1), Reply::Int(1)]);
                assert_eq!(get[6], Reply::Set(vec![Reply::simple("@read"), Reply::simple("@string"), Reply::simple("@fast")]));
            }
            other => panic!("{:?}", other),
        }
        match t.cmd(&["COMMAND", "DOCS", "get"]) {
            Reply::Map(pairs) => assert_eq!(pairs[0].0, Reply::bulk("get")),
            other => panic!("{:?}", other),
        }
        match t.cmd(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "ge*"]) {
            Reply::Array(items) => assert!(items.contains(&Reply::bulk("get"))),
            other => panic!("{:?}", other),
        }
        match t.cmd(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "connection"]) {
            Reply::Array(items) => {
                assert!(items.contains(&Reply::bulk("auth")));
                assert!(!items.contains(&Reply::bulk("get")));
            }
            other => panic!("{:?}", other),
        }
        t.err(&["COMMAND", "LIST", "FILTERBY", "x", "y"], "ERR syntax error");
    }

    #[test]
    fn command_getkeys() {
        let mut t = T::new();
        t.arr(&["COMMAND", "GETKEYS", "SET", "a", "b"], &["a"]);
        t.err(&["COMMAND", "GETKEYS", "nosuch", "a"], "ERR Invalid command specified");
        t.err(&["COMMAND", "GETKEYS", "get"], "ERR wrong number of arguments for 'command|getkeys' command");
        t.err(&["COMMAND", "GETKEYS", "get", "a", "b"], "ERR Invalid number of arguments specified for command");
        t.err(&["COMMAND", "GETKEYS", "ping", "x"], "ERR The command has no key arguments");
        t.err(&["COMMAND", "GETKEYS"], "ERR wrong number of arguments for 'command|getkeys' command");
        assert_eq!(
            t.cmd(&["COMMAND", "GETKEYSANDFLAGS", "GET", "a"]),
            Reply::Array(vec![Reply::Array(vec![Reply::bulk("a"), Reply::Array(vec![Reply::simple("RO"), Reply::simple("access")])])])
        );
    }

    #[test]
    fn host_commands_are_in_the_table() {
        for name in ["auth", "hello", "quit", "reset", "client", "config", "info", "time", "wait", "subscribe", "publish", "pubsub", "recached.token"] {
            let spec = crate::command::lookup(name.as_bytes()).unwrap_or_else(|| panic!("{} missing", name));
            assert!(matches!(spec.handler, crate::command::Handler::Host), "{}", name);
        }
        let mut t = T::new();
        t.err(&["CLIENT", "ID"], "ERR 'client' is not available in this host");
    }
}
