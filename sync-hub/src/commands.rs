//! The commands the engine's table marks `Handler::Host`: AUTH, HELLO, QUIT, RESET,
//! CLIENT, CONFIG, INFO, TIME, WAIT, SHUTDOWN and pub/sub. They run under the engine lock
//! like every other command, with the hub state and the calling connection's controls.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use recached_engine::command::{lossy_trunc, unknown_subcommand_error};
use recached_engine::reply::errors;
use recached_engine::{glob, util, Engine, Host, Reply, Session};

use crate::hub::{HubState, Shared};
use crate::info;
use crate::pubsub::{ClientId, Kind};

/// Redis's reply to a wrong password.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Redis's reply to a command before AUTH.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
const NO_PASSWORD: &str =
    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

/// The version clients see in HELLO and INFO. Clients gate features on it, so it is the
/// Redis version whose behaviour Recached reproduces.
pub const REDIS_VERSION: &str = "7.0.15";

/// `CLIENT REPLY` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// Replies are sent.
    #[default]
    On,
    /// No replies.
    Off,
    /// The next command's reply is skipped.
    Skip,
}

/// Per-connection controls a host command may read or set.
#[derive(Debug)]
pub struct ConnCtl {
    /// The client id.
    pub id: ClientId,
    /// Peer address.
    pub peer: SocketAddr,
    /// Whether the client passed AUTH (or no password is set).
    pub authenticated: bool,
    /// Close after sending the replies so far (QUIT, self-kill, SHUTDOWN).
    pub close: bool,
    /// Send no reply for the current command (SHUTDOWN, CLIENT REPLY OFF/SKIP).
    pub suppress_reply: bool,
    /// Frames to send before the current reply (SUBSCRIBE a b answers one frame per channel).
    pub extra: Vec<Reply>,
    /// Channels, patterns and shard channels subscribed (RESP2 subscribe mode when > 0).
    pub subscriptions: usize,
    /// CLIENT REPLY.
    pub reply_mode: ReplyMode,
    /// When set, the AUTH gate already reserved a slot for the current command.
    pub auth_gate_passed: bool,
    /// A script this command runs may stop early to be run again off the runtime thread
    /// (it ran long and wrote nothing yet): the connection sets it for its own batches.
    pub script_may_move: bool,
    /// Set when the script stopped for that: the command is to run again, on a thread.
    pub script_moved: bool,
    /// The command runs on a blocking thread, not the runtime's.
    pub script_on_thread: bool,
    /// `PSYNC` was received: the connection becomes a replica's feed.
    pub psync: Option<Vec<Bytes>>,
    /// What `REPLCONF` told before it.
    pub repl: crate::repl::primary::Handshake,
    /// `WAIT` must park: (offset, replicas, deadline in Unix ms).
    pub wait: Option<(u64, usize, Option<u64>)>,
}

impl ConnCtl {
    /// Controls of a new connection.
    pub fn new(id: ClientId, peer: SocketAddr, authenticated: bool) -> ConnCtl {
        ConnCtl {
            id,
            peer,
            authenticated,
            close: false,
            suppress_reply: false,
            extra: Vec::new(),
            subscriptions: 0,
            reply_mode: ReplyMode::On,
            auth_gate_passed: false,
            script_may_move: false,
            script_moved: false,
            script_on_thread: false,
            psync: None,
            repl: Default::default(),
            wait: None,
        }
    }
}

/// The [`Host`] the engine calls for host commands.
pub struct HostCalls<'a> {
    /// Hub state (under the same lock as the engine).
    pub hub: &'a mut HubState,
    /// Shared handles (knobs, shutdown).
    pub shared: &'a Shared,
    /// The calling connection.
    pub conn: &'a mut ConnCtl,
}

fn lower(a: &[u8]) -> Vec<u8> {
    a.to_ascii_lowercase()
}

fn sub_arity(container: &str, sub: &[u8]) -> Reply {
    Reply::err(errors::arity(&format!("{}|{}", container, String::from_utf8_lossy(&lower(sub)))))
}

/// Constant-time comparison, so a password cannot be found byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

impl Host for HostCalls<'_> {
    fn call(&mut self, engine: &mut Engine, session: &mut Session, args: &[Bytes], now_ms: u64) -> Reply {
        let name = lower(&args[0]);
        match name.as_slice() {
            b"auth" => self.auth(args),
            b"hello" => self.hello(session, args),
            b"quit" => {
                self.conn.close = true;
                Reply::Ok
            }
            b"reset" => self.reset(engine, session),
            b"client" => self.client(session, args),
            b"config" => self.config(engine, args),
            b"info" => info::info(self.hub, engine, self.shared, args),
            b"time" => {
                let micros = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_micros() as u64)
                    .unwrap_or(now_ms * 1000);
                Reply::Array(vec![Reply::bulk((micros / 1_000_000).to_string()), Reply::bulk((micros % 1_000_000).to_string())])
            }
            b"wait" => {
                let Some(n) = util::parse_i64(&args[1]) else { return Reply::err(errors::NOT_INTEGER) };
                let timeout = match util::parse_i64(&args[2]) {
                    None => return Reply::err("ERR timeout is not an integer or out of range"),
                    Some(t) if t < 0 => return Reply::err(errors::TIMEOUT_NEGATIVE),
                    Some(t) => t as u64,
                };
                if self.hub.repl.is_replica() {
                    return Reply::err(crate::repl::WAIT_ON_REPLICA);
                }
                // Every write this client made is at or below the current offset.
                let offset = engine.offset();
                let acked = self.hub.repl.acked(offset);
                if engine.in_exec() || n <= 0 || acked as i64 >= n {
                    return Reply::Int(acked as i64);
                }
                let deadline = (timeout > 0).then(|| now_ms + timeout);
                self.conn.wait = Some((offset, n as usize, deadline));
                Reply::Int(acked as i64)
            }
            b"replicaof" | b"slaveof" => crate::repl::cmd_replicaof(engine, self.hub, self.shared, args),
            b"recached.demote" => crate::repl::failover::cmd_demote(engine, self.hub, self.shared, args),
            b"role" => crate::repl::cmd_role(engine, self.hub),
            b"replconf" => self.replconf(args),
            b"psync" => {
                self.conn.psync = Some(args.to_vec());
                self.conn.suppress_reply = true;
                Reply::Ok
            }
            b"sync" => Reply::err("ERR SYNC is not supported: a Recached replica uses PSYNC (REPLICAOF host port)"),
            b"shutdown" => self.shutdown(engine, args),
            b"save" => crate::persist::cmd_save(engine, self.hub, self.shared),
            b"bgsave" => {
                let in_exec = engine.in_exec();
                crate::persist::cmd_bgsave(engine, self.hub, self.shared, args, in_exec)
            }
            b"bgrewriteaof" => {
                let in_exec = engine.in_exec();
                crate::persist::cmd_bgrewriteaof(engine, self.hub, self.shared, in_exec)
            }
            b"lastsave" => Reply::Int(self.hub.persist.lastsave as i64),
            b"eval" | b"evalsha" | b"eval_ro" | b"evalsha_ro" | b"fcall" | b"fcall_ro" => {
                let shared = self.shared;
                let busy_threshold_ms = self.hub.settings.busy_reply_threshold;
                let may_move = self.conn.script_may_move && !engine.in_exec();
                let inline = !self.conn.script_on_thread;
                let ctx = crate::scripting::RunCtx { engine, session, host: self, busy_threshold_ms, now_ms, may_move, inline };
                let (reply, moved) = crate::scripting::eval_command(&shared.scripting, ctx, args);
                self.conn.script_moved = moved;
                reply
            }
            b"script" => crate::scripting::script(&self.shared.scripting, args),
            b"function" => crate::scripting::function_command(&self.shared.scripting, args, session.resp3),
            b"subscribe" => self.subscribe(Kind::Channel, session, &args[1..]),
            b"psubscribe" => self.subscribe(Kind::Pattern, session, &args[1..]),
            b"ssubscribe" => self.subscribe(Kind::Shard, session, &args[1..]),
            b"unsubscribe" => self.unsubscribe(Kind::Channel, &args[1..]),
            b"punsubscribe" => self.unsubscribe(Kind::Pattern, &args[1..]),
            b"sunsubscribe" => self.unsubscribe(Kind::Shard, &args[1..]),
            b"publish" => Reply::Int(self.hub.publish(&args[1], &args[2]) as i64),
            b"spublish" => Reply::Int(self.hub.spublish(&args[1], &args[2]) as i64),
            b"pubsub" => self.pubsub(args),
            b"recached.token" => crate::tokens::token_command(&self.hub.settings, args, now_ms),
            _ => Reply::err(format!("ERR '{}' is not available in this host", String::from_utf8_lossy(&name))),
        }
    }
}

impl HostCalls<'_> {
    /// Checks credentials for AUTH and HELLO … AUTH; records the outcome for throttling.
    fn check_credentials(&mut self, user: &[u8], pass: &[u8]) -> bool {
        let required = self.hub.settings.requirepass.as_bytes();
        // With no password the default user is `nopass`: any password works for it.
        let ok = user.eq_ignore_ascii_case(b"default") && (required.is_empty() || same_secret(pass, required));
        let ip = self.conn.peer.ip();
        if ok {
            self.hub.auth.succeeded(ip);
            self.conn.authenticated = true;
        } else {
            self.hub.auth.failed(ip, Instant::now());
            tracing::warn!(peer = %self.conn.peer, failures = self.hub.auth.failures(ip), "failed AUTH");
        }
        ok
    }

    /// `AUTH [username] password`
    /// `REPLCONF` before `PSYNC`: `listening-port`, `capa`, `ip-address`; `ACK` and
    /// `GETACK` belong to the link itself (answered nothing here, as in Redis).
    fn replconf(&mut self, args: &[Bytes]) -> Reply {
        if args.len() % 2 == 0 {
            return Reply::err(errors::SYNTAX);
        }
        for pair in args[1..].chunks(2) {
            let (opt, val) = (lower(&pair[0]), &pair[1]);
            match opt.as_slice() {
                b"listening-port" => match std::str::from_utf8(val).ok().and_then(|v| v.parse::<u16>().ok()) {
                    Some(p) => self.conn.repl.listening_port = p,
                    None => return Reply::err("ERR value is not an integer or out of range"),
                },
                // The replica's proof it speaks this link format (a Redis server answers
                // -ERR to the option, so a Recached replica of Redis stops at once).
                b"recached-link" => {
                    if &val[..] != b"1" {
                        return Reply::err("ERR unsupported recached-link version (this hub speaks 1)");
                    }
                    self.conn.repl.capa = true;
                }
                b"failover-timeout" => match std::str::from_utf8(val).ok().and_then(|v| v.parse::<u64>().ok()) {
                    Some(ms) => self.conn.repl.failover_ms = ms,
                    None => return Reply::err("ERR value is not an integer or out of range"),
                },
                b"capa" | b"ip-address" | b"rdb-only" | b"rdb-filter-only" | b"rdb-channel" | b"main-ch-client-id" => {}
                b"ack" | b"getack" | b"fack" => {
                    self.conn.suppress_reply = true;
                    return Reply::Ok;
                }
                _ => return Reply::err(format!("ERR Unrecognized REPLCONF option: {}", String::from_utf8_lossy(&pair[0]))),
            }
        }
        Reply::Ok
    }

    fn auth(&mut self, args: &[Bytes]) -> Reply {
        match args.len() {
            2 => {
                if self.hub.settings.requirepass.is_empty() {
                    return Reply::err(NO_PASSWORD);
                }
                let pass = args[1].clone();
                if self.check_credentials(b"default", &pass) {
                    Reply::Ok
                } else {
                    Reply::err(WRONGPASS)
                }
            }
            3 => {
                let (user, pass) = (args[1].clone(), args[2].clone());
                if self.check_credentials(&user, &pass) {
                    Reply::Ok
                } else {
                    Reply::err(WRONGPASS)
                }
            }
            _ => Reply::err(errors::SYNTAX),
        }
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
    fn hello(&mut self, session: &mut Session, args: &[Bytes]) -> Reply {
        let mut proto = if session.resp3 { 3 } else { 2 };
        let mut auth: Option<(Bytes, Bytes)> = None;
        let mut setname: Option<Bytes> = None;
        if args.len() >= 2 {
            match util::parse_i64(&args[1]) {
                None => return Reply::err("ERR Protocol version is not an integer or out of range"),
                Some(v) if v != 2 && v != 3 => return Reply::err("NOPROTO unsupported protocol version"),
                Some(v) => proto = v,
            }
            let mut i = 2;
            while i < args.len() {
                let opt = lower(&args[i]);
                let left = args.len() - i - 1;
                if opt == b"auth" && left >= 2 {
                    auth = Some((args[i + 1].clone(), args[i + 2].clone()));
                    i += 3;
                } else if opt == b"setname" && left >= 1 {
                    setname = Some(args[i + 1].clone());
                    i += 2;
                } else {
                    return Reply::err(format!("ERR Syntax error in HELLO option '{}'", lossy_trunc(&args[i], 128)));
                }
            }
        }
        if let Some((user, pass)) = auth {
            if !self.check_credentials(&user, &pass) {
                return Reply::err(WRONGPASS);
            }
        }
        if !self.conn.authenticated {
            return Reply::err(HELLO_NOAUTH);
        }
        if let Some(name) = setname {
            if !valid_name(&name) {
                return Reply::err(BAD_NAME);
            }
            if let Some(c) = self.hub.clients.get_mut(&self.conn.id) {
                c.name = name;
            }
        }
        session.resp3 = proto == 3;
        if let Some(c) = self.hub.clients.get_mut(&self.conn.id) {
            c.resp3 = session.resp3;
        }
        Reply::Map(vec![
            (Reply::bulk("server"), Reply::bulk("redis")),
            (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
            (Reply::bulk("proto"), Reply::Int(proto)),
            (Reply::bulk("id"), Reply::Int(self.conn.id as i64)),
            (Reply::bulk("mode"), Reply::bulk("standalone")),
            (Reply::bulk("role"), Reply::bulk("master")),
            (Reply::bulk("modules"), Reply::Array(Vec::new())),
        ])
    }

    /// `RESET`: back to a fresh connection's state.
    fn reset(&mut self, engine: &mut Engine, session: &mut Session) -> Reply {
        engine.close_session(session);
        session.db = 0;
        session.resp3 = false;
        self.hub.pubsub.remove_client(self.conn.id);
        self.conn.subscriptions = 0;
        self.conn.reply_mode = ReplyMode::On;
        self.conn.authenticated = self.hub.settings.requirepass.is_empty();
        if let Some(c) = self.hub.clients.get_mut(&self.conn.id) {
            c.name = Bytes::new();
            c.resp3 = false;
            c.db = 0;
        }
        Reply::simple("RESET")
    }

    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: the final save (when save rules are
    /// set, or SAVE) and the AOF's fsync run now, so a failure can be answered; then the
    /// hub stops.
    fn shutdown(&mut self, engine: &mut Engine, args: &[Bytes]) -> Reply {
        let (mut save, mut nosave, mut force, mut abort) = (false, false, false, false);
        for a in &args[1..] {
            match lower(a).as_slice() {
                b"nosave" => nosave = true,
                b"save" => save = true,
                b"now" => {}
                b"force" => force = true,
                b"abort" => abort = true,
                _ => return Reply::err(errors::SYNTAX),
            }
        }
        if (save && nosave) || (abort && args.len() > 2) {
            return Reply::err(errors::SYNTAX);
        }
        if abort {
            return Reply::err("ERR No shutdown in progress.");
        }
        tracing::warn!(peer = %self.conn.peer, "User requested shutdown...");
        let how = if save {
            crate::persist::SaveOnExit::Save
        } else if nosave {
            crate::persist::SaveOnExit::NoSave
        } else {
            crate::persist::SaveOnExit::Default
        };
        if let Err(e) = crate::persist::finish(engine, self.hub, self.shared, how) {
            if !force {
                tracing::error!(cause = %e, "Error trying to save the DB, can't exit.");
                tracing::error!("Errors trying to shut down the server. Check the logs for more information.");
                self.hub.persist.finished = false;
                return Reply::err("ERR Errors trying to SHUTDOWN. Check logs.");
            }
            tracing::error!(cause = %e, "Error trying to save the DB. Exit anyway.");
        }
        self.hub.persist.exit = how;
        self.shared.begin_shutdown();
        // Redis closes the connection without a reply.
        self.conn.suppress_reply = true;
        self.conn.close = true;
        Reply::Ok
    }

    fn refresh_subscriptions(&mut self) {
        self.conn.subscriptions = self.hub.pubsub.count(self.conn.id) + self.hub.pubsub.shard_count(self.conn.id);
    }

    /// Sends all frames but the last through `extra`, returns the last.
    fn frames(&mut self, mut frames: Vec<Reply>) -> Reply {
        let last = frames.pop().unwrap_or(Reply::Ok);
        self.conn.extra.extend(frames);
        last
    }

    /// `SUBSCRIBE channel [channel …]`, `PSUBSCRIBE pattern [pattern …]`, `SSUBSCRIBE …`
    fn subscribe(&mut self, kind: Kind, session: &Session, names: &[Bytes]) -> Reply {
        let verb = match kind {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        };
        let id = self.conn.id;
        let mut frames = Vec::with_capacity(names.len());
        for n in names {
            self.hub.pubsub.subscribe(id, kind, n);
            let count = if kind == Kind::Shard { self.hub.pubsub.shard_count(id) } else { self.hub.pubsub.count(id) };
            frames.push(Reply::Push(vec![Reply::bulk(verb), Reply::Bulk(n.clone()), Reply::Int(count as i64)]));
        }
        self.refresh_subscriptions();
        if let Some(c) = self.hub.clients.get_mut(&id) {
            c.resp3 = session.resp3;
        }
        self.frames(frames)
    }

    /// `UNSUBSCRIBE [channel …]` and friends; no names means all.
    fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) -> Reply {
        let verb = match kind {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        };
        let id = self.conn.id;
        let names: Vec<Bytes> = if names.is_empty() { self.hub.pubsub.list(id, kind) } else { names.to_vec() };
        let count = |hub: &HubState| if kind == Kind::Shard { hub.pubsub.shard_count(id) } else { hub.pubsub.count(id) };
        let mut frames = Vec::with_capacity(names.len().max(1));
        if names.is_empty() {
            frames.push(Reply::Push(vec![Reply::bulk(verb), Reply::Nil, Reply::Int(count(self.hub) as i64)]));
        }
        for n in names {
            self.hub.pubsub.unsubscribe(id, kind, &n);
            frames.push(Reply::Push(vec![Reply::bulk(verb), Reply::Bulk(n), Reply::Int(count(self.hub) as i64)]));
        }
        self.refresh_subscriptions();
        self.frames(frames)
    }

    /// `PUBSUB CHANNELS [pattern] | NUMSUB [channel …] | NUMPAT | SHARDCHANNELS [pattern] |
    /// SHARDNUMSUB [channel …] | HELP`
    fn pubsub(&mut self, args: &[Bytes]) -> Reply {
        let sub = lower(&args[1]);
        let ps = &self.hub.pubsub;
        match sub.as_slice() {
            b"channels" | b"shardchannels" if args.len() <= 3 => {
                let kind = if sub == b"channels" { Kind::Channel } else { Kind::Shard };
                Reply::Array(ps.channels(kind, args.get(2).map(|p| p.as_ref())).into_iter().map(Reply::Bulk).collect())
            }
            b"channels" | b"shardchannels" => Reply::err(format!(
                "ERR unknown subcommand or wrong number of arguments for '{}'. Try PUBSUB HELP.",
                lossy_trunc(&args[1], 128)
            )),
            b"numsub" | b"shardnumsub" => {
                let kind = if sub == b"numsub" { Kind::Channel } else { Kind::Shard };
                let mut out = Vec::with_capacity((args.len() - 2) * 2);
                for ch in &args[2..] {
                    out.push(Reply::Bulk(ch.clone()));
                    out.push(Reply::Int(ps.numsub(kind, ch) as i64));
                }
                Reply::Array(out)
            }
            b"numpat" if args.len() == 2 => Reply::Int(ps.numpat() as i64),
            b"help" if args.len() == 2 => help(&[
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "SHARDCHANNELS [<pattern>]",
                "    Return the currently active shard level channels matching a <pattern> (default: '*').",
                "SHARDNUMSUB [<shardchannel> ...]",
                "    Return the number of subscribers for the specified shard level channel(s)",
                "HELP",
                "    Prints this help.",
            ]),
            b"numpat" | b"help" => sub_arity("pubsub", &args[1]),
            _ => Reply::err(unknown_subcommand_error("pubsub", &args[1])),
        }
    }

    /// `CLIENT ID | SETNAME | GETNAME | LIST | INFO | KILL | UNBLOCK | REPLY |
    /// NO-EVICT | NO-TOUCH | HELP`
    fn client(&mut self, session: &Session, args: &[Bytes]) -> Reply {
        let sub = lower(&args[1]);
        let id = self.conn.id;
        let argc = args.len();
        match sub.as_slice() {
            b"id" if argc == 2 => Reply::Int(id as i64),
            b"getname" if argc == 2 => match self.hub.clients.get(&id) {
                Some(c) if !c.name.is_empty() => Reply::Bulk(c.name.clone()),
                _ => Reply::Nil,
            },
            b"setname" if argc == 3 => {
                if !valid_name(&args[2]) {
                    return Reply::err(BAD_NAME);
                }
                if let Some(c) = self.hub.clients.get_mut(&id) {
                    c.name = args[2].clone();
                }
                Reply::Ok
            }
            b"info" if argc == 2 => {
                let line = info::client_line(self.hub, id, Some(session), "client|info");
                Reply::Verbatim("txt", Bytes::from(line + "\n"))
            }
            b"list" => self.client_list(session, args),
            b"kill" if argc >= 3 => self.client_kill(args),
            b"unblock" if argc == 3 || argc == 4 => {
                let Some(target) = util::parse_i64(&args[2]) else { return Reply::err(errors::NOT_INTEGER) };
                let error = match args.get(3).map(|a| lower(a)) {
                    None => false,
                    Some(m) if m == b"timeout" => false,
                    Some(m) if m == b"error" => true,
                    Some(_) => return Reply::err("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"),
                };
                match self.hub.blocked.remove(target as u64) {
                    Some(w) => {
                        let reply = if error { Reply::err("UNBLOCKED client unblocked via CLIENT UNBLOCK") } else { w.timeout_reply.clone() };
                        let _ = w.tx.send((reply, 0));
                        Reply::Int(1)
                    }
                    None => Reply::Int(0),
                }
            }
            b"reply" if argc == 3 => match lower(&args[2]).as_slice() {
                b"on" => {
                    self.conn.reply_mode = ReplyMode::On;
                    Reply::Ok
                }
                b"off" => {
                    self.conn.reply_mode = ReplyMode::Off;
                    self.conn.suppress_reply = true;
                    Reply::Ok
                }
                b"skip" => {
                    self.conn.reply_mode = ReplyMode::Skip;
                    self.conn.suppress_reply = true;
                    Reply::Ok
                }
                _ => Reply::err(errors::SYNTAX),
            },
            b"no-evict" | b"no-touch" if argc == 3 => match lower(&args[2]).as_slice() {
                b"on" | b"off" => Reply::Ok,
                _ => Reply::err(errors::SYNTAX),
            },
            b"help" if argc == 2 => help(&[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are:",
                "    * ADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made from the specified address",
                "    * LADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made to specified local address",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Kill connections by type.",
                "    * USER <username>",
                "      Kill connections authenticated by <username>.",
                "    * SKIPME (YES|NO)",
                "      Skip killing current connection (default: yes).",
                "    * ID <client-id>",
                "      Kill connections by client id.",
                "    * MAXAGE <maxage>",
                "      Kill connections older than the specified age.",
                "LIST [options ...]",
                "    Return information about client connections. Options:",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Return clients of specified type.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "REPLY (ON|OFF|SKIP)",
                "    Control the replies sent to the current connection.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "HELP",
                "    Print this help.",
            ]),
            b"id" | b"getname" | b"setname" | b"info" | b"kill" | b"unblock" | b"reply" | b"no-evict"
            | b"no-touch" | b"help" => sub_arity("client", &args[1]),
            _ => Reply::err(unknown_subcommand_error("client", &args[1])),
        }
    }

    /// `CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID id …]`
    fn client_list(&mut self, session: &Session, args: &[Bytes]) -> Reply {
        let mut type_filter: Option<Vec<u8>> = None;
        let mut ids: Option<Vec<u64>> = None;
        let mut i = 2;
        while i < args.len() {
            let opt = lower(&args[i]);
            if opt == b"type" && i + 1 < args.len() {
                let t = lower(&args[i + 1]);
                if !matches!(t.as_slice(), b"normal" | b"master" | b"replica" | b"slave" | b"pubsub") {
                    return Reply::err(format!("ERR Unknown client type '{}'", lossy_trunc(&args[i + 1], 128)));
                }
                type_filter = Some(t);
                i += 2;
            } else if opt == b"id" && i + 1 < args.len() {
                let mut list = Vec::new();
                for a in &args[i + 1..] {
                    match util::parse_i64(a) {
                        Some(n) if n > 0 => list.push(n as u64),
                        _ => return Reply::err("ERR Invalid client ID"),
                    }
                }
                ids = Some(list);
                i = args.len();
            } else {
                return Reply::err(errors::SYNTAX);
            }
        }
        let me = self.conn.id;
        let mut out = String::new();
        for (&id, _) in self.hub.clients.iter() {
            if let Some(ids) = &ids {
                if !ids.contains(&id) {
                    continue;
                }
            }
            let is_pubsub = self.hub.pubsub.of(id).is_some();
            if let Some(t) = &type_filter {
                let keep = match t.as_slice() {
                    b"pubsub" => is_pubsub,
                    b"normal" => !is_pubsub,
                    _ => false,
                };
                if !keep {
                    continue;
                }
            }
            let sess = if id == me { Some(session) } else { None };
            out.push_str(&info::client_line(self.hub, id, sess, "client|list"));
            out.push('\n');
        }
        Reply::Verbatim("txt", Bytes::from(out))
    }

    /// `CLIENT KILL ip:port` or `CLIENT KILL [ID id] [ADDR a] [LADDR a] [TYPE t] [USER u]
    /// [SKIPME yes|no] [MAXAGE s] …`
    fn client_kill(&mut self, args: &[Bytes]) -> Reply {
        let me = self.conn.id;
        if args.len() == 3 {
            let addr = String::from_utf8_lossy(&args[2]).into_owned();
            let Some(id) = self.hub.clients.iter().find(|(_, c)| c.addr.to_string() == addr).map(|(id, _)| *id) else {
                return Reply::err("ERR No such client");
            };
            self.kill(id, me);
            return Reply::Ok;
        }
        let mut f_id = None;
        let mut f_addr = None;
        let mut f_laddr = None;
        let mut f_type: Option<Vec<u8>> = None;
        let mut f_user: Option<Vec<u8>> = None;
        let mut f_maxage = None;
        let mut skipme = true;
        let mut i = 2;
        while i < args.len() {
            if i + 1 >= args.len() {
                return Reply::err(errors::SYNTAX);
            }
            let (opt, val) = (lower(&args[i]), &args[i + 1]);
            match opt.as_slice() {
                b"id" => match util::parse_i64(val) {
                    Some(n) if n > 0 => f_id = Some(n as u64),
                    _ => return Reply::err("ERR client-id should be greater than 0"),
                },
                b"addr" => f_addr = Some(String::from_utf8_lossy(val).into_owned()),
                b"laddr" => f_laddr = Some(String::from_utf8_lossy(val).into_owned()),
                b"type" => {
                    let t = lower(val);
                    if !matches!(t.as_slice(), b"normal" | b"master" | b"replica" | b"slave" | b"pubsub") {
                        return Reply::err(format!("ERR Unknown client type '{}'", lossy_trunc(val, 128)));
                    }
                    f_type = Some(t);
                }
                b"user" => {
                    if !val.eq_ignore_ascii_case(b"default") {
                        return Reply::err(format!("ERR No such user '{}'", lossy_trunc(val, 128)));
                    }
                    f_user = Some(lower(val));
                }
                b"skipme" => match lower(val).as_slice() {
                    b"yes" => skipme = true,
                    b"no" => skipme = false,
                    _ => return Reply::err(errors::SYNTAX),
                },
                b"maxage" => match util::parse_i64(val) {
                    Some(n) if n >= 0 => f_maxage = Some(n as u64),
                    _ => return Reply::err(errors::SYNTAX),
                },
                _ => return Reply::err(errors::SYNTAX),
            }
            i += 2;
        }
        let _ = f_user;
        let now = Instant::now();
        let victims: Vec<ClientId> = self
            .hub
            .clients
            .iter()
            .filter(|(id, c)| {
                if skipme && **id == me {
                    return false;
                }
                if f_id.is_some_and(|x| x != **id) {
                    return false;
                }
                if f_addr.as_ref().is_some_and(|a| *a != c.addr.to_string()) {
                    return false;
                }
                if f_laddr.as_ref().is_some_and(|a| *a != c.laddr.to_string()) {
                    return false;
                }
                if let Some(t) = &f_type {
                    let is_pubsub = self.hub.pubsub.of(**id).is_some();
                    let keep = match t.as_slice() {
                        b"pubsub" => is_pubsub,
                        b"normal" => !is_pubsub,
                        _ => false,
                    };
                    if !keep {
                        return false;
                    }
                }
                if f_maxage.is_some_and(|m| now.duration_since(c.created).as_secs() < m) {
                    return false;
                }
                true
            })
            .map(|(id, _)| *id)
            .collect();
        for &v in &victims {
            self.kill(v, me);
        }
        Reply::Int(victims.len() as i64)
    }

    fn kill(&mut self, victim: ClientId, me: ClientId) {
        // A parked victim must not be served any more: it would consume data nobody reads.
        self.hub.blocked.remove(victim);
        if victim == me {
            self.conn.close = true;
        } else if let Some(c) = self.hub.clients.get(&victim) {
            c.handle.kill();
            // Close the victim's socket before KILL answers, as Redis frees the client
            // synchronously: a victim that writes right after sees a clean EOF, not a reset
            // of a socket closed later with its command unread (compat finding F7).
            crate::resp_conn::shutdown_socket(c.fd);
        }
    }

    /// `CONFIG GET pattern [pattern …] | SET name value [name value …] | RESETSTAT | REWRITE | HELP`
    fn config(&mut self, engine: &mut Engine, args: &[Bytes]) -> Reply {
        let sub = lower(&args[1]);
        match sub.as_slice() {
            b"get" if args.len() >= 3 => {
                let mut pairs: Vec<(Reply, Reply)> = Vec::new();
                for p in crate::config::PARAMS {
                    if args[2..].iter().any(|pat| glob::matches(pat, p.name.as_bytes(), true)) {
                        let v = self.hub.settings.get(p.name).unwrap_or_default();
                        pairs.push((Reply::bulk(p.name), Reply::bulk(v)));
                    }
                }
                Reply::Map(pairs)
            }
            b"set" if args.len() >= 4 => self.config_set(engine, &args[2..]),
            b"resetstat" if args.len() == 2 => {
                engine.reset_stats();
                let dirty = self.hub.stats.dirty;
                self.hub.stats = Default::default();
                self.hub.stats.dirty = dirty;
                Reply::Ok
            }
            b"rewrite" if args.len() == 2 => Reply::err("ERR The server is running without a config file"),
            b"help" if args.len() == 2 => help(&[
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
                "HELP",
                "    Prints this help.",
            ]),
            b"get" | b"set" | b"resetstat" | b"rewrite" | b"help" => sub_arity("config", &args[1]),
            _ => Reply::err(unknown_subcommand_error("config", &args[1])),
        }
    }

    /// All pairs are validated before any is applied, as Redis 7 does.
    fn config_set(&mut self, engine: &mut Engine, pairs: &[Bytes]) -> Reply {
        if pairs.len() % 2 != 0 {
            return Reply::err(errors::SYNTAX);
        }
        let mut next = self.hub.settings.clone();
        let mut seen: Vec<&'static str> = Vec::new();
        for pair in pairs.chunks(2) {
            let name = String::from_utf8_lossy(&pair[0]).into_owned();
            let Some(param) = crate::config::param(&name) else {
                return Reply::err(format!("ERR Unknown option or number of arguments for CONFIG SET - '{}'", lossy_trunc(&pair[0], 128)));
            };
            let fail = |why: &str| Reply::err(format!("ERR CONFIG SET failed (possibly related to argument '{}') - {}", param.name, why));
            if seen.contains(&param.name) {
                return fail("duplicate parameter");
            }
            seen.push(param.name);
            if !param.mutable {
                return fail("can't set immutable config");
            }
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            if let Err(why) = next.set(param.name, &value) {
                return fail(&why);
            }
        }
        if self.shared.loading() && next.appendonly != self.hub.settings.appendonly {
            return Reply::err(crate::persist::LOADING);
        }
        next.apply_engine(engine.config_mut());
        self.shared.knobs.load(&next);
        let old = std::mem::replace(&mut self.hub.settings, next);
        if let Err(e) = crate::persist::config_changed(engine, self.hub, self.shared, &old) {
            tracing::error!(cause = %e, "cannot apply the persistence settings");
            let mut back = self.hub.settings.clone();
            back.appendonly = old.appendonly;
            self.hub.settings = back;
            return Reply::err(format!("ERR CONFIG SET failed (possibly related to argument 'appendonly') - {}", e));
        }
        Reply::Ok
    }
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::simple(*l)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_secrets() {
        assert!(valid_name(b"worker-1"));
        assert!(!valid_name(b"a b"));
        assert!(!valid_name(b"a\nb"));
        assert!(valid_name(b""));
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
