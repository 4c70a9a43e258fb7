//! One RESP client connection.
//!
//! The read buffer persists across reads, so frames split anywhere are reassembled. After
//! each read every complete frame is parsed; the whole batch runs under one engine lock,
//! its replies are encoded into one buffer and written with one syscall. A blocking
//! command parks the connection: the rest of its pipeline waits behind it, as in Redis.
//! A broken frame gets `-ERR Protocol error: …` after the replies of the commands before
//! it, then the connection closes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use recached_engine::command::flags;
use recached_engine::resp::frame::{parse_command, take_command, FrameError, Limits};
use recached_engine::{command, Outcome, Reply, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::blocking::Waiter;
use crate::commands::{ConnCtl, HostCalls, ReplyMode, NOAUTH};
use crate::hub::{encode_reply, now_ms, ClientHandle, ClientInfo, Shared};
use crate::scripting::Wait;

/// Most commands run under one lock acquisition, so a huge pipeline cannot starve others.
const MAX_BATCH_COMMANDS: usize = 1024;
/// Reply bytes after which a batch stops to flush.
const MAX_BATCH_OUTPUT: usize = 4 << 20;
/// Read size.
const READ_CHUNK: usize = 16 * 1024;
/// Largest multibulk before AUTH (Redis's limit for unauthenticated clients).
const UNAUTH_MAX_MULTIBULK: usize = 10;
/// Largest bulk before AUTH.
const UNAUTH_MAX_BULK: usize = 16 * 1024;

/// Why a batch stopped.
enum Step {
    /// The queue is empty (or the batch was cut for fairness): read or run more.
    Continue,
    /// The last command blocked: wait for its reply or its deadline.
    Blocked(oneshot::Receiver<(Reply, u64)>, Option<u64>),
    /// The next command is an AUTH attempt throttled until then.
    Delay(Instant),
    /// Close after flushing.
    Close,
    /// The next command runs a script: on a blocking thread, so that the runtime keeps
    /// serving other clients (`-BUSY`, SCRIPT KILL) while it runs.
    Script,
    /// `WAIT`: until this many replicas acknowledged the offset, or the deadline.
    Wait(u64, usize, Option<u64>),
    /// `PSYNC`: the connection becomes a replica's feed.
    Psync,
}

struct Conn {
    shared: Arc<Shared>,
    stream: TcpStream,
    handle: Arc<ClientHandle>,
    session: Session,
    ctl: ConnCtl,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    queue: VecDeque<Vec<Bytes>>,
    /// The protocol error line to send (without `-`) before closing.
    proto_err: Option<String>,
    /// The peer closed its side; finish what was read, then close.
    eof: bool,
    bytes_in: u64,
    shutdown: watch::Receiver<bool>,
    /// The client's entry, until it is in the hub's registry.
    unregistered: Option<ClientInfo>,
}

fn register(hub: &mut crate::hub::HubState, id: u64, info: &mut Option<ClientInfo>) {
    if let Some(info) = info.take() {
        hub.stats.connections_received += 1;
        hub.clients.insert(id, info);
    }
}

/// Serves one accepted connection until it closes. `_done` is dropped at the end, which
/// tells a shutting-down server this connection has finished.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, done: mpsc::Sender<()>) {
    serve_with(shared, stream, peer, done, Vec::new()).await
}

/// [`serve`] for a connection whose first bytes were already read (`input`): one accepted
/// while a script kept the runtime busy.
pub async fn serve_with(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, _done: mpsc::Sender<()>, input: Vec<u8>) {
    let id = shared.next_client_id();
    let handle = Arc::new(ClientHandle::new(id));
    let laddr = stream.local_addr().unwrap_or(peer);
    let fd = raw_fd(&stream);
    let _ = stream.set_nodelay(true);
    let now = Instant::now();
    let info = ClientInfo {
        handle: handle.clone(),
        addr: peer,
        laddr,
        fd,
        name: Bytes::new(),
        created: now,
        last_active: now,
        last_cmd: "NULL",
        db: 0,
        resp3: false,
        multi: -1,
    };
    // While a script runs (it holds the lock) the client registers with its first batch,
    // so that a new connection can still send SCRIPT KILL.
    let mut unregistered = Some(info);
    if !shared.scripting.watch.running() {
        let mut core = shared.lock();
        register(&mut core.hub, id, &mut unregistered);
    }
    let authenticated = !shared.knobs.needs_auth.load(Ordering::Relaxed);
    let shutdown = shared.shutdown.subscribe();
    let mut conn = Conn {
        shared: shared.clone(),
        stream,
        handle,
        session: Session::new(id),
        ctl: ConnCtl::new(id, peer, authenticated),
        rbuf: {
            let mut b = BytesMut::with_capacity(READ_CHUNK.max(input.len()));
            b.extend_from_slice(&input);
            b
        },
        wbuf: Vec::with_capacity(READ_CHUNK),
        queue: VecDeque::new(),
        proto_err: None,
        eof: false,
        bytes_in: 0,
        shutdown,
        unregistered,
    };
    let span = tracing::debug_span!("conn", id, peer = %peer);
    let _enter = span.enter();
    tracing::debug!("connected");
    let why = match conn.run().await {
        Ok(why) => why,
        Err(e) => format!("io error: {}", e),
    };
    tracing::debug!(cause = %why, "closed");
    if let Some(psync) = conn.ctl.psync.take() {
        let session = std::mem::replace(&mut conn.session, Session::new(id));
        let hs = conn.ctl.repl.clone();
        let Conn { stream, rbuf, handle, .. } = conn;
        crate::repl::primary::serve(shared.clone(), stream, rbuf, handle, id, psync, hs).await;
        let mut core = shared.lock_when_idle().await;
        let mut session = session;
        core.engine.close_session(&mut session);
        core.hub.forget_client(id);
        drop(core);
        shared.connections.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    let mut core = shared.lock_when_idle().await;
    core.engine.close_session(&mut conn.session);
    core.hub.forget_client(id);
    drop(core);
    shared.connections.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(unix)]
fn raw_fd(stream: &TcpStream) -> i64 {
    use std::os::fd::AsRawFd;
    stream.as_raw_fd() as i64
}

#[cfg(not(unix))]
fn raw_fd(_: &TcpStream) -> i64 {
    -1
}

/// Shuts down both directions of a registered client's socket (CLIENT KILL).
///
/// `fd` must belong to a client still in `Hub::clients`: its connection task unregisters
/// under the core lock before it drops the stream, so while the caller holds that lock the
/// descriptor is open and still this client's (it cannot have been reused).
#[cfg(unix)]
pub(crate) fn shutdown_socket(fd: i64) {
    use std::os::fd::FromRawFd;
    let Ok(fd) = i32::try_from(fd) else { return };
    if fd < 0 {
        return;
    }
    // SAFETY: the descriptor is open (see above); ManuallyDrop keeps this borrowed view
    // from closing it, so the connection task remains its only owner.
    let stream = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(not(unix))]
pub(crate) fn shutdown_socket(_: i64) {}

/// Whether a command is a password attempt (AUTH, or HELLO with AUTH).
fn is_auth_attempt(args: &[Bytes]) -> bool {
    let name = &args[0];
    if name.eq_ignore_ascii_case(b"auth") {
        return true;
    }
    name.eq_ignore_ascii_case(b"hello") && args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(b"auth"))
}

/// Commands allowed in RESP2 subscribe mode.
fn allowed_in_subscribe_mode(name: &str) -> bool {
    matches!(name, "subscribe" | "ssubscribe" | "psubscribe" | "unsubscribe" | "sunsubscribe" | "punsubscribe" | "ping" | "quit" | "reset")
}

/// Redis 7.0's subcommands of the container commands, with their arity.
const SUBCOMMANDS: &[(&str, &[(&str, i32)])] = &[
    (
        "client",
        &[
            ("caching", 3),
            ("getname", 2),
            ("getredir", 2),
            ("help", 2),
            ("id", 2),
            ("info", 2),
            ("kill", -3),
            ("list", -2),
            ("no-evict", 3),
            ("pause", -3),
            ("reply", 3),
            ("setname", 3),
            ("tracking", -3),
            ("trackinginfo", 2),
            ("unblock", -3),
            ("unpause", 2),
        ],
    ),
    ("config", &[("get", -3), ("help", 2), ("resetstat", 2), ("rewrite", 2), ("set", -4)]),
    ("pubsub", &[("channels", -2), ("help", 2), ("numpat", 2), ("numsub", -2), ("shardchannels", -2), ("shardnumsub", -2)]),
    ("command", &[("count", 2), ("docs", -2), ("getkeys", -4), ("getkeysandflags", -4), ("help", 2), ("info", -2), ("list", -2)]),
];

/// The error Redis gives a container command before anything else (unknown subcommand,
/// wrong subcommand arity), if any.
fn subcommand_error(name: &str, args: &[Bytes]) -> Option<Reply> {
    let (_, subs) = SUBCOMMANDS.iter().find(|(c, _)| *c == name)?;
    let sub = args.get(1)?;
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match subs.iter().find(|(s, _)| *s == lower) {
        None => Some(Reply::err(command::unknown_subcommand_error(name, sub))),
        Some((s, arity)) => {
            let ok = if *arity >= 0 { args.len() == *arity as usize } else { args.len() >= (-arity) as usize };
            (!ok).then(|| Reply::err(recached_engine::reply::errors::arity(&format!("{}|{}", name, s))))
        }
    }
}

/// Redis's `fullname` of a command: `get`, or `client|list` for container subcommands.
fn full_name(spec: &command::CommandSpec, args: &[Bytes]) -> String {
    match (spec.name, args.get(1)) {
        ("client" | "config" | "pubsub" | "command" | "object" | "memory" | "script" | "function" | "acl" | "cluster" | "xinfo", Some(sub)) => {
            format!("{}|{}", spec.name, String::from_utf8_lossy(sub).to_ascii_lowercase())
        }
        _ => spec.name.to_string(),
    }
}

impl Conn {
    async fn run(&mut self) -> std::io::Result<String> {
        let mut idle_since = Instant::now();
        let mut shutdown = self.shutdown.clone();
        loop {
            while !self.queue.is_empty() {
                // A script holds the engine lock: wait for it, or past busy-reply-threshold
                // answer without the lock (-BUSY, SCRIPT KILL), one command at a time.
                if self.shared.scripting.watch.running() && self.shared.scripting.watch.wait().await == Wait::Busy {
                    if let Some(args) = self.queue.pop_front() {
                        if let Some(reply) = self.shared.scripting.watch.busy_reply(&args) {
                            self.emit(&reply);
                            if !self.flush().await? {
                                return Ok("killed".into());
                            }
                            continue;
                        }
                        self.queue.push_front(args);
                    }
                }
                let (step, before, after) = self.run_batch();
                // Replies leave once the writes they follow are persisted (the AOF's gate).
                let need = self.shared.gate.need_after(before, after);
                self.shared.gate.wait(need).await;
                if !self.flush().await? {
                    return Ok("killed".into());
                }
                // Input read while the replies were going out (one frame at a time before
                // AUTH, so the limits follow the authentication state).
                if let Some(why) = self.parse() {
                    return Ok(why);
                }
                match step {
                    Step::Continue => {}
                    Step::Script => {
                        let need = self.run_script().await;
                        self.shared.gate.wait(need).await;
                        if !self.flush().await? {
                            return Ok("killed".into());
                        }
                    }
                    Step::Close => return Ok("closed by command".into()),
                    Step::Psync => return Ok("psync".into()),
                    Step::Wait(offset, n, deadline) => {
                        if let Some(why) = self.wait_replicas(offset, n, deadline).await {
                            return Ok(why);
                        }
                        if !self.flush().await? {
                            return Ok("killed".into());
                        }
                    }
                    Step::Delay(until) => tokio::time::sleep_until(until.into()).await,
                    Step::Blocked(rx, deadline) => {
                        if let Some(why) = self.wait_blocked(rx, deadline).await? {
                            return Ok(why);
                        }
                    }
                }
                if self.handle.is_killed() {
                    return Ok("killed".into());
                }
            }
            if let Some(line) = self.proto_err.take() {
                tracing::debug!(cause = %line, "protocol error");
                self.wbuf.extend_from_slice(format!("-{}\r\n", line).as_bytes());
                self.flush().await?;
                return Ok("protocol error".into());
            }
            if self.eof {
                return Ok("client closed".into());
            }
            if self.handle.is_killed() {
                return Ok("killed".into());
            }
            // Pub/sub messages and notifications queued for this client.
            self.handle.take_into(&mut self.wbuf);
            if !self.wbuf.is_empty() {
                if !self.flush().await? {
                    return Ok("killed".into());
                }
                if let Some(why) = self.parse() {
                    return Ok(why);
                }
                continue;
            }
            let timeout = self.shared.knobs.timeout_secs.load(Ordering::Relaxed);
            // Subscribers are never closed for idleness, as in Redis.
            let idle_limit = (timeout > 0 && self.ctl.subscriptions == 0).then(|| idle_since + Duration::from_secs(timeout));
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                // Output or a kill: both are handled at the top of the loop.
                _ = self.handle.notify.notified() => {}
                _ = crate::hub::stopped(&mut shutdown) => return Ok("shutdown".into()),
                r = self.stream.read_buf(&mut self.rbuf) => {
                    let n = r?;
                    if n == 0 {
                        return Ok("client closed".into());
                    }
                    idle_since = Instant::now();
                    self.bytes_in += n as u64;
                    if let Some(why) = self.parse() {
                        return Ok(why);
                    }
                }
                _ = sleep_until_opt(idle_limit) => return Ok("idle timeout".into()),
            }
        }
    }

    /// Moves complete frames into the queue. `Some(reason)` closes the connection.
    ///
    /// Before AUTH, Redis allows at most 10 elements and 16 KB bulks, so an anonymous peer
    /// cannot make the server buffer much; frames are then taken one at a time, so a
    /// pipelined `AUTH` lifts the limits for the frames after it.
    fn parse(&mut self) -> Option<String> {
        if self.proto_err.is_some() {
            return None;
        }
        let limits = Limits { max_bulk_len: self.shared.knobs.max_bulk.load(Ordering::Relaxed) as usize, ..Limits::default() };
        let anonymous = !self.ctl.authenticated;
        if anonymous && !self.queue.is_empty() {
            return None;
        }
        loop {
            let taken = if anonymous {
                let strict = Limits { max_bulk_len: UNAUTH_MAX_BULK, max_multibulk_len: UNAUTH_MAX_MULTIBULK, ..limits };
                match parse_command(&self.rbuf, &strict) {
                    Err(FrameError::InvalidMultibulkLength) if parse_command(&self.rbuf, &limits).is_ok() => {
                        Err("ERR Protocol error: unauthenticated multibulk length".to_string())
                    }
                    Err(FrameError::InvalidBulkLength) if parse_command(&self.rbuf, &limits).is_ok() => {
                        Err("ERR Protocol error: unauthenticated bulk length".to_string())
                    }
                    Err(e) => Err(e.to_string()),
                    Ok(_) => take_command(&mut self.rbuf, &strict).map_err(|e| e.to_string()),
                }
            } else {
                take_command(&mut self.rbuf, &limits).map_err(|e| e.to_string())
            };
            match taken {
                Ok(Some(args)) => {
                    self.queue.push_back(args);
                    if anonymous {
                        break;
                    }
                }
                Ok(None) => break,
                Err(line) => {
                    self.proto_err = Some(line);
                    self.rbuf.clear();
                    return None;
                }
            }
        }
        let limit = self.shared.knobs.qbuf_limit.load(Ordering::Relaxed);
        if self.rbuf.len() as u64 > limit {
            tracing::warn!(peer = %self.ctl.peer, "closing client that reached max query buffer length");
            return Some("query buffer limit".into());
        }
        None
    }

    /// Writes the reply buffer. While the peer is not reading, keep reading its input
    /// (bounded by the query buffer limit): a client that writes a whole pipeline before
    /// reading any reply (redis-py) must not deadlock against us. Returns false if the
    /// client was killed meanwhile (a stalled subscriber over its output limit).
    async fn flush(&mut self) -> std::io::Result<bool> {
        let limit = self.shared.knobs.qbuf_limit.load(Ordering::Relaxed);
        let mut written = 0;
        while written < self.wbuf.len() {
            let can_read = !self.eof && self.proto_err.is_none() && (self.rbuf.len() as u64) <= limit;
            if can_read && self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            let Conn { stream, wbuf, rbuf, handle, bytes_in, eof, .. } = self;
            let (mut r, mut w) = stream.split();
            tokio::select! {
                biased;
                // Queued pushes are drained by the caller after the flush (it checks the
                // outbox whether or not a wake-up is pending); only a kill matters here.
                _ = handle.notify.notified() => {
                    if handle.is_killed() {
                        return Ok(false);
                    }
                }
                n = w.write(&wbuf[written..]) => {
                    let n = n?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    written += n;
                }
                n = r.read_buf(rbuf), if can_read => {
                    let n = n?;
                    if n == 0 {
                        *eof = true;
                    }
                    *bytes_in += n as u64;
                }
            }
        }
        self.wbuf.clear();
        if self.wbuf.capacity() > MAX_BATCH_OUTPUT {
            self.wbuf = Vec::with_capacity(READ_CHUNK);
        }
        Ok(true)
    }

    /// Encodes a reply, honouring CLIENT REPLY and replies a command suppressed.
    fn emit(&mut self, reply: &Reply) {
        if self.ctl.suppress_reply {
            return;
        }
        match self.ctl.reply_mode {
            ReplyMode::On => encode_reply(reply, self.session.resp3, &mut self.wbuf),
            ReplyMode::Off => {}
            ReplyMode::Skip => self.ctl.reply_mode = ReplyMode::On,
        }
    }

    /// Runs queued commands under one lock acquisition; returns the engine's offset before
    /// and after them too (whether the batch wrote).
    fn run_batch(&mut self) -> (Step, u64, u64) {
        let now = now_ms();
        let shared = self.shared.clone();
        let mut guard = shared.lock();
        let core = &mut *guard;
        register(&mut core.hub, self.ctl.id, &mut self.unregistered);
        if crate::repl::refusal_moves(&core.hub) {
            // Replica lag and the failover lease move with time: judged at each batch.
            crate::persist::refresh_refusal(&mut core.engine, &core.hub);
        }
        let before = core.engine.offset();
        let mut step = Step::Continue;
        let mut ran = 0;
        let mut errors = 0u64;
        let mut last_cmd: Option<&'static str> = None;
        while let Some(front) = self.queue.front() {
            if ran >= MAX_BATCH_COMMANDS || self.wbuf.len() >= MAX_BATCH_OUTPUT {
                break;
            }
            if !self.ctl.auth_gate_passed && is_auth_attempt(front) {
                if let Some(until) = core.hub.auth.gate(self.ctl.peer.ip(), Instant::now()) {
                    self.ctl.auth_gate_passed = true;
                    step = Step::Delay(until);
                    break;
                }
            }
            let Some(args) = self.queue.pop_front() else { break };
            self.ctl.auth_gate_passed = false;
            ran += 1;
            let pre = self.precheck(&args, &mut last_cmd);
            let outcome = match pre {
                Some(reply) => Outcome::Reply(reply),
                None => {
                    self.ctl.script_may_move = true;
                    let mut host = HostCalls { hub: &mut core.hub, shared: &shared, conn: &mut self.ctl };
                    let outcome = core.engine.execute(&mut self.session, &args, now, &mut host);
                    self.ctl.script_may_move = false;
                    outcome
                }
            };
            // A script that ran long without writing: run it again where it cannot stall
            // everyone (its first try changed nothing and answers nothing).
            if std::mem::take(&mut self.ctl.script_moved) {
                self.queue.push_front(args);
                step = Step::Script;
                break;
            }
            // Messages this very command published to the client itself come first, as
            // Redis adds them to the output buffer during the command.
            self.handle.take_into(&mut self.wbuf);
            for frame in std::mem::take(&mut self.ctl.extra) {
                self.emit(&frame);
            }
            if let Some((offset, n, deadline)) = self.ctl.wait.take() {
                step = Step::Wait(offset, n, deadline);
                break;
            }
            match outcome {
                Outcome::Reply(reply) => {
                    if reply.is_error() {
                        errors += 1;
                    }
                    self.emit(&reply);
                    self.ctl.suppress_reply = false;
                }
                Outcome::Blocked(block) => {
                    let (tx, rx) = oneshot::channel();
                    let waiter = Waiter {
                        session: self.session.clone(),
                        args,
                        db: block.db,
                        keys: block.keys,
                        timeout_reply: block.timeout_reply,
                        tx,
                    };
                    core.hub.blocked.park(self.ctl.id, waiter);
                    step = Step::Blocked(rx, block.deadline_ms);
                    break;
                }
            }
            if self.ctl.close {
                step = Step::Close;
                break;
            }
            if self.ctl.psync.is_some() {
                step = Step::Psync;
                break;
            }
        }
        core.after_batch(&shared, now);
        let stats = &mut core.hub.stats;
        stats.error_replies += errors;
        stats.net_input_bytes += std::mem::take(&mut self.bytes_in);
        stats.net_output_bytes += self.wbuf.len() as u64;
        if let Some(c) = core.hub.clients.get_mut(&self.ctl.id) {
            c.db = self.session.db;
            c.resp3 = self.session.resp3;
            c.multi = if self.session.in_multi() { 0 } else { -1 };
            c.last_active = Instant::now();
            if let Some(name) = last_cmd {
                c.last_cmd = name;
            }
        }
        (step, before, core.engine.offset())
    }

    /// Runs the script command at the front of the queue on a blocking thread that takes
    /// the engine lock for it; returns the offset its reply waits for (the AOF's gate).
    async fn run_script(&mut self) -> u64 {
        let Some(args) = self.queue.pop_front() else { return 0 };
        let shared = self.shared.clone();
        let session = std::mem::replace(&mut self.session, Session::new(self.ctl.id));
        let placeholder = ConnCtl::new(self.ctl.id, self.ctl.peer, self.ctl.authenticated);
        let ctl = std::mem::replace(&mut self.ctl, placeholder);
        shared.scripting.watch.reserve();
        let job = tokio::task::spawn_blocking(move || {
            let (mut session, mut ctl) = (session, ctl);
            ctl.script_on_thread = true;
            let now = now_ms();
            let result = {
                let mut guard = shared.lock();
                let core = &mut *guard;
                let before = core.engine.offset();
                let mut host = HostCalls { hub: &mut core.hub, shared: &shared, conn: &mut ctl };
                let reply = core.engine.execute(&mut session, &args, now, &mut host).into_reply();
                core.after_batch(&shared, now);
                if reply.is_error() {
                    core.hub.stats.error_replies += 1;
                }
                if let Some(c) = core.hub.clients.get_mut(&ctl.id) {
                    c.last_active = Instant::now();
                    c.last_cmd = command::lookup(&args[0]).map(|s| s.name).unwrap_or("eval");
                }
                (reply, before, core.engine.offset())
            };
            shared.scripting.watch.finish();
            ctl.script_on_thread = false;
            (result, session, ctl)
        });
        match job.await {
            Ok(((reply, before, after), session, ctl)) => {
                self.session = session;
                self.ctl = ctl;
                self.handle.take_into(&mut self.wbuf);
                for frame in std::mem::take(&mut self.ctl.extra) {
                    self.emit(&frame);
                }
                self.emit(&reply);
                self.ctl.suppress_reply = false;
                self.shared.gate.need_after(before, after)
            }
            Err(e) => {
                // The script's thread panicked (a bug): the watch must not stay set.
                self.shared.scripting.watch.finish();
                tracing::error!(cause = %e, "script thread failed");
                self.emit(&Reply::err("ERR internal error running the script"));
                0
            }
        }
    }

    /// Checks that only the connection layer can make: authentication and RESP2 subscribe
    /// mode. `Some(reply)` answers the command without running it.
    fn precheck(&mut self, args: &[Bytes], last_cmd: &mut Option<&'static str>) -> Option<Reply> {
        let subscribed = self.ctl.subscriptions > 0 && !self.session.resp3;
        let loading = self.shared.loading();
        if self.ctl.authenticated && !subscribed && !loading {
            if last_cmd.is_none() {
                *last_cmd = command::lookup(&args[0]).map(|s| s.name);
            }
            return None;
        }
        // Unknown commands and wrong arity get the engine's errors first, as in Redis.
        let spec = command::lookup(&args[0])?;
        if !spec.arity_ok(args.len()) {
            return None;
        }
        *last_cmd = Some(spec.name);
        if !self.ctl.authenticated && spec.flags & flags::NO_AUTH == 0 {
            // Redis resolves a container's subcommand (and its arity) before the auth check.
            if let Some(err) = subcommand_error(spec.name, args) {
                return Some(err);
            }
            return Some(Reply::err(NOAUTH));
        }
        // Containers carry no flags of their own; Redis marks every subcommand of these
        // `loading` (CLIENT SETINFO, CONFIG GET, … work while the data loads).
        let container_ok = matches!(spec.name, "client" | "config" | "command" | "pubsub");
        if loading && spec.flags & flags::LOADING == 0 && !container_ok {
            return Some(Reply::err(crate::persist::LOADING));
        }
        if subscribed {
            if !allowed_in_subscribe_mode(spec.name) {
                return Some(Reply::err(format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    full_name(spec, args)
                )));
            }
            if spec.name == "ping" {
                let msg = args.get(1).cloned().unwrap_or_default();
                return Some(Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(msg)]));
            }
        }
        None
    }

    /// `WAIT`: answers how many replicas acknowledged `offset` once `n` did or the deadline
    /// passed. `Some(reason)` closes the connection.
    async fn wait_replicas(&mut self, offset: u64, n: usize, deadline_ms: Option<u64>) -> Option<String> {
        let mut shutdown = self.shutdown.clone();
        let until = deadline_ms.map(|d| Instant::now() + Duration::from_millis(d.saturating_sub(now_ms())));
        let shared = self.shared.clone();
        loop {
            let notified = shared.repl_acks.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let acked = shared.lock_when_idle().await.hub.repl.acked(offset);
            if acked >= n || until.is_some_and(|u| Instant::now() >= u) {
                self.emit(&Reply::Int(acked as i64));
                return None;
            }
            tokio::select! {
                _ = &mut notified => {}
                _ = sleep_until_opt(until) => {}
                _ = self.handle.notify.notified() => {
                    if self.handle.is_killed() {
                        return Some("killed".into());
                    }
                }
                _ = crate::hub::stopped(&mut shutdown) => return Some("shutdown".into()),
            }
        }
    }

    /// Waits for a parked command's reply. `Ok(Some(reason))` closes the connection.
    async fn wait_blocked(&mut self, mut rx: oneshot::Receiver<(Reply, u64)>, deadline_ms: Option<u64>) -> std::io::Result<Option<String>> {
        let deadline = deadline_ms.map(|d| tokio::time::Instant::now() + Duration::from_millis(d.saturating_sub(now_ms())));
        let mut shutdown = self.shutdown.clone();
        loop {
            if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
                self.rbuf.reserve(READ_CHUNK);
            }
            tokio::select! {
                biased;
                r = &mut rx => {
                    return match r {
                        Ok((reply, need)) => {
                            self.shared.gate.wait(need).await;
                            self.handle.take_into(&mut self.wbuf);
                            self.emit(&reply);
                            if !self.flush().await? {
                                return Ok(Some("killed".into()));
                            }
                            Ok(None)
                        }
                        // Removed without a reply: the client was killed.
                        Err(_) => Ok(Some("killed while blocked".into())),
                    };
                }
                _ = self.handle.notify.notified() => {
                    if self.handle.is_killed() {
                        return Ok(Some("killed".into()));
                    }
                    self.handle.take_into(&mut self.wbuf);
                    if !self.flush().await? {
                        return Ok(Some("killed".into()));
                    }
                }
                _ = sleep_until_opt(deadline) => {
                    let timed_out = self.shared.lock().hub.blocked.remove(self.ctl.id);
                    let reply = match timed_out {
                        Some(w) => w.timeout_reply,
                        // Served in the same instant: the reply is already in the channel.
                        None => match rx.try_recv() {
                            Ok((r, need)) => {
                                self.shared.gate.wait(need).await;
                                r
                            }
                            Err(_) => return Ok(Some("killed while blocked".into())),
                        },
                    };
                    self.handle.take_into(&mut self.wbuf);
                    self.emit(&reply);
                    if !self.flush().await? {
                        return Ok(Some("killed".into()));
                    }
                    return Ok(None);
                }
                _ = crate::hub::stopped(&mut shutdown) => return Ok(Some("shutdown".into())),
                r = self.stream.read_buf(&mut self.rbuf) => {
                    // Input is buffered (not run) while blocked; a close ends the wait.
                    let n = r?;
                    if n == 0 {
                        return Ok(Some("client closed while blocked".into()));
                    }
                    self.bytes_in += n as u64;
                    if let Some(why) = self.parse() {
                        return Ok(Some(why));
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt<T: Into<tokio::time::Instant>>(at: Option<T>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
