//! The client side of live sync: a sans-I/O state machine. Bytes in, bytes out, time as an
//! argument; the browser (ui-bindings), Rust services and the tests drive it through thin
//! transport adapters.
//!
//! It holds a **confirmed** engine (the hub's groups applied in offset order, nothing
//! else), a queue of **pending** writes (its own, not yet confirmed), and a **visible**
//! engine: confirmed with the pending writes replayed on top, which reads see. Every hub
//! group, ack, rollback and expiry recomputes only the affected keys and reports the keys
//! whose visible value changed ([`Event::Changed`]).
//!
//! # How a host drives it
//! ```text
//! let mut c = SyncClient::new(ClientConfig { client_id, token, patterns, engine: Config::default() });
//! c.execute(&args, local_now)             // reads answer at once; writes apply at once and
//!                                          // return their seq (a promise settles on its ack)
//! socket opened ........ c.on_open(local_now)
//! binary message ....... c.on_message(&bytes, local_now)?   (Err: close with 4000, reconnect)
//! socket closed ........ match c.on_close(code, local_now) { Reconnect::… }
//! after each call ...... while let Some(m) = c.take_outgoing() { socket.send(m) }
//!                        while let Some(e) = c.poll_event() { … }
//! timer ................ c.tick(local_now) -> next local deadline to wake at
//! ```

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use thiserror::Error;

use super::hub::{check_command, close};
use super::message::{valid_client_id, Ack, HelloReply, MessageError, Push, Request, SubMode, SubReply, PROTOCOL_VERSION};
use super::scope::{Grant, Scope};
use crate::change::{Change, ChangeGroup};
use crate::command::lookup;
use crate::db::{entry_mem, Entry};
use crate::engine::{Config, Engine, NoHost, Session};
use crate::reply::{errors, Reply};
use crate::resp::{parse, Frame, Limits};
use crate::value::Value;

/// Default window before the hub announces its own.
const DEFAULT_WINDOW: usize = 1024;

/// Keys expired per `tick`.
const SWEEP_BUDGET: usize = 1000;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This cache instance's id (random, kept across reconnects; `A-Za-z0-9_-`, ≤ 64).
    pub client_id: String,
    /// The token presented at HELLO.
    pub token: String,
    /// The key patterns to mirror.
    pub patterns: Vec<Bytes>,
    /// Engine settings for the local copies. `maxmemory`/`maxkeys` are ignored: a mirror
    /// must not evict, or it would diverge from the hub.
    pub engine: Config,
}

/// Connection status, for the UI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// No socket.
    Offline,
    /// Socket open, HELLO sent.
    Connecting,
    /// Authenticated, catching up (continue or snapshot).
    Syncing,
    /// Caught up; changes arrive as they commit.
    Live,
}

/// Something the host should know about.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The status changed.
    Status(Status),
    /// These keys' visible value or expiry changed (database 0), sorted.
    Changed(Vec<Bytes>),
    /// The hub ran write `seq`: settle its promise with the hub's reply.
    Acked {
        /// The write.
        seq: u64,
        /// The hub's reply.
        reply: Frame,
    },
    /// The hub refused write `seq` (or the client did before sending it): it was rolled
    /// back; reject its promise.
    Rejected {
        /// The write.
        seq: u64,
        /// The error line.
        error: String,
    },
    /// The reply to a [`SyncClient::remote`] command.
    Reply {
        /// The request id.
        id: u64,
        /// The reply.
        reply: Frame,
    },
    /// The token was refused at HELLO (the hub closes with 4001).
    AuthFailed(String),
    /// The subscription was refused (a pattern outside the read scope).
    SubscribeFailed(String),
}

/// What to do after a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Reconnect after a (jittered, growing) delay.
    Backoff,
    /// Reconnect at once (slow-consumer drop).
    Now,
    /// Get a fresh token ([`SyncClient::set_token`]) first.
    NewToken,
    /// Do not reconnect: configuration problem (origin refused).
    Stop,
}

/// A broken stream from the hub; close the socket (4000) and reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Frames that are not the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl From<MessageError> for ClientError {
    fn from(e: MessageError) -> ClientError {
        ClientError::Protocol(e.to_string())
    }
}

/// The result of [`SyncClient::execute`] / [`SyncClient::transaction`].
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    /// The write's sequence number when it was queued for the hub (its promise settles
    /// on [`Event::Acked`] / [`Event::Rejected`], which name it); `None` for reads and
    /// local refusals. For a write made for an [`Origin`] it is this client's key for the
    /// write, not the origin's seq.
    pub seq: Option<u64>,
    /// The local reply: the answer for reads, the optimistic answer for writes.
    pub reply: Reply,
}

/// The writer a write is made for, when the client relays it for another (a leader tab
/// running a follower tab's write): sent as `SYNC.W AS <id> <seq>`, so the hub deduplicates
/// it under that writer's id and seq. Whoever resends it later (after a reconnect, or
/// another tab after a leader change) sends the same origin and seq, and the hub runs it
/// once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The writer's id (`A-Za-z0-9_-`, 1 to 64 bytes, like a client id; a namespace of its
    /// own at the hub).
    pub id: Bytes,
    /// The writer's sequence number for this write (≥ 1, never reused for that id).
    pub seq: u64,
}

/// Counters, for tests and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Subscriptions answered `full` (and in-band `sync.full`).
    pub full_syncs: u64,
    /// Subscriptions answered `continue`.
    pub continues: u64,
    /// Snapshot entries received.
    pub snapshot_keys: u64,
    /// Groups applied from pushes.
    pub groups: u64,
    /// Writes acknowledged.
    pub acks: u64,
    /// Writes rejected.
    pub rejects: u64,
    /// Writes sent again after a reconnect.
    pub resent: u64,
    /// Groups the confirmed engine could not apply (each forces a full resync).
    pub apply_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unsent,
    InFlight,
    /// Acked at this offset without the changes: wait for the stream to reach it.
    Landed(u64),
}

#[derive(Debug, Clone)]
struct Pending {
    /// This client's key for the write (events and `awaiting` name it), distinct from the
    /// wire seq when the write has an origin, so seqs of different origins never collide.
    seq: u64,
    /// The writer it is made for; its seq is the one on the wire.
    origin: Option<Origin>,
    commands: Vec<Vec<Bytes>>,
    tx: bool,
    /// Keys it touches; `None`: every key (a keyless write such as FLUSHDB).
    keys: Option<Vec<Bytes>>,
    /// Hub time it was made at (replays run at this time).
    at: u64,
    state: State,
    sent_before: bool,
}

#[derive(Debug)]
enum Req {
    Hello { sent_local: u64 },
    Sub,
    Write(u64),
    Remote(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hello,
    Subscribing,
    Snapshot { offset: u64 },
    CatchUp,
    Live,
}

#[derive(Debug)]
struct Link {
    awaiting: VecDeque<Req>,
    phase: Phase,
    in_flight: usize,
    /// The snapshot being received (swapped in at `sync.live`).
    incoming: Option<Engine>,
    incoming_replid: String,
}

/// Keys to recompute.
#[derive(Debug, Default)]
struct Affected {
    all: bool,
    keys: HashSet<Bytes>,
}

impl Affected {
    fn add(&mut self, key: &Bytes) {
        if !self.all {
            self.keys.insert(key.clone());
        }
    }
    fn merge(&mut self, other: Affected) {
        self.all |= other.all;
        if !self.all {
            self.keys.extend(other.keys);
        }
    }
    fn add_pending(&mut self, p: &Pending) {
        match &p.keys {
            None => self.all = true,
            Some(keys) => keys.iter().for_each(|k| self.add(k)),
        }
    }
}

/// The request a pending write is sent as (the same on every resend).
fn write_request(seq: u64, origin: &Option<Origin>, commands: &[Vec<Bytes>], tx: bool) -> Request {
    let (origin, seq) = match origin {
        Some(o) => (Some(o.id.clone()), o.seq),
        None => (None, seq),
    };
    if tx {
        Request::Tx { origin, seq, commands: commands.to_vec() }
    } else {
        Request::Write { origin, seq, args: commands.first().cloned().unwrap_or_default() }
    }
}

/// Sets or removes a key in database 0 of an engine, keeping its memory count right.
fn put(eng: &mut Engine, key: &[u8], entry: Option<Entry>) {
    if let Some(old) = eng.dbs[0].remove(key) {
        eng.used = eng.used.saturating_sub(entry_mem(key, &old));
    }
    if let Some(e) = entry {
        eng.used += entry_mem(key, &e);
        eng.dbs[0].insert(key, e);
    }
}

/// What a key looks like to a reader at `now`: value and expiry, or nothing.
fn live_entry(eng: &Engine, key: &[u8], now: u64) -> Option<(Value, u64)> {
    eng.dbs[0].get(key).filter(|e| !e.is_expired(now)).map(|e| (e.value.clone(), e.expire_at))
}

fn keys_of_groups(groups: &[ChangeGroup]) -> Vec<Bytes> {
    groups.iter().flat_map(|g| g.changes.iter()).filter_map(|c| (c.db == 0).then(|| c.key().cloned()).flatten()).collect()
}

/// The live-sync client state machine.
#[derive(Debug)]
pub struct SyncClient {
    client_id: Bytes,
    token: Bytes,
    patterns: Vec<Bytes>,
    engine_config: Config,
    confirmed: Engine,
    visible: Engine,
    session: Session,
    pending: VecDeque<Pending>,
    next_seq: u64,
    link: Option<Link>,
    status: Status,
    replid: Option<String>,
    /// Stream position the confirmed engine reflects.
    offset: u64,
    /// Whether the confirmed engine is the hub's state of `patterns` at (replid, offset).
    complete: bool,
    clock_offset: i64,
    grant: Option<Grant>,
    maxmsg: usize,
    window: usize,
    /// Hub time of the call being handled.
    now: u64,
    local_now: u64,
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    next_remote: u64,
    stats: ClientStats,
}

impl SyncClient {
    /// A client with empty engines, offline.
    pub fn new(config: ClientConfig) -> SyncClient {
        let mut engine_config = config.engine;
        engine_config.maxmemory = 0;
        engine_config.maxkeys = 0;
        let mut session = Session::new(1);
        session.resp3 = true;
        SyncClient {
            client_id: Bytes::from(config.client_id),
            token: Bytes::from(config.token),
            patterns: config.patterns,
            confirmed: Engine::new(engine_config.clone()),
            visible: Engine::new(engine_config.clone()),
            engine_config,
            session,
            pending: VecDeque::new(),
            next_seq: 1,
            link: None,
            status: Status::Offline,
            replid: None,
            offset: 0,
            complete: false,
            clock_offset: 0,
            grant: None,
            maxmsg: usize::MAX,
            window: DEFAULT_WINDOW,
            now: 0,
            local_now: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_remote: 1,
            stats: ClientStats::default(),
        }
    }

    /// Hub time for a local time: local + the clock offset measured at HELLO.
    pub fn hub_time(&self, local_ms: u64) -> u64 {
        (local_ms as i64).saturating_add(self.clock_offset).max(0) as u64
    }

    /// The clock offset (hub − local) in ms, measured at the last HELLO.
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset
    }

    /// The visible state (confirmed + pending). Read it through [`SyncClient::execute`]
    /// so expiry applies; this is for inspection.
    pub fn visible(&self) -> &Engine {
        &self.visible
    }

    /// The confirmed state (the hub's, for the subscribed patterns).
    pub fn confirmed(&self) -> &Engine {
        &self.confirmed
    }

    /// The connection status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Writes not yet confirmed.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The point a reconnect resumes from, when the confirmed state is complete.
    pub fn resume_point(&self) -> Option<(&str, u64)> {
        match (&self.replid, self.complete) {
            (Some(r), true) => Some((r.as_str(), self.offset)),
            _ => None,
        }
    }

    /// Counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The subscribed patterns.
    pub fn patterns(&self) -> &[Bytes] {
        &self.patterns
    }

    /// The grant the hub announced at the last HELLO.
    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// Uses another token from the next connection on (after 4001/4003).
    pub fn set_token(&mut self, token: impl Into<Bytes>) {
        self.token = token.into();
    }

    /// Mirrors other patterns: resubscribes at once when connected (a full snapshot).
    pub fn set_patterns(&mut self, patterns: Vec<Bytes>) {
        self.patterns = patterns;
        self.complete = false;
        self.request_full();
    }

    /// The next message to send, if any (whole frames, at most `maxmsg` bytes unless one
    /// frame alone is larger).
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        let mut msg = self.outbox.pop_front()?;
        while let Some(next) = self.outbox.front() {
            if msg.len() + next.len() > self.maxmsg {
                break;
            }
            if let Some(next) = self.outbox.pop_front() {
                msg.extend_from_slice(&next);
            }
        }
        Some(msg)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn set_status(&mut self, s: Status) {
        if self.status != s {
            self.status = s;
            self.events.push_back(Event::Status(s));
        }
    }

    fn stage(&mut self, req: &Request) {
        let mut out = Vec::new();
        req.encode(&mut out);
        self.outbox.push_back(out);
    }

    fn clock(&mut self, local_ms: u64) {
        self.local_now = local_ms;
        self.now = self.hub_time(local_ms);
    }

    // -----------------------------------------------------------------------------------
    // Connection.

    /// The socket is open: sends HELLO, the unacknowledged writes, and SUB (resuming when
    /// the state is complete).
    pub fn on_open(&mut self, local_ms: u64) {
        self.clock(local_ms);
        self.outbox.clear();
        self.link = Some(Link { awaiting: VecDeque::new(), phase: Phase::Hello, in_flight: 0, incoming: None, incoming_replid: String::new() });
        self.set_status(Status::Connecting);
        self.stage(&Request::Hello { version: PROTOCOL_VERSION, token: self.token.clone(), client_id: self.client_id.clone() });
        if let Some(l) = self.link.as_mut() {
            l.awaiting.push_back(Req::Hello { sent_local: local_ms });
        }
        self.send_pending();
        self.subscribe();
    }

    fn subscribe(&mut self) {
        if self.patterns.is_empty() || self.link.is_none() {
            return;
        }
        let from = self.resume_point().map(|(r, o)| (r.to_string(), o));
        self.stage(&Request::Sub { patterns: self.patterns.clone(), from });
        if let Some(l) = self.link.as_mut() {
            l.awaiting.push_back(Req::Sub);
            if l.phase != Phase::Hello {
                l.phase = Phase::Subscribing;
            }
        }
    }

    fn request_full(&mut self) {
        self.complete = false;
        self.subscribe();
    }

    /// The socket closed with `code` (1005/1006 when none). Keeps all state; says whether
    /// and how to reconnect.
    pub fn on_close(&mut self, code: u16, local_ms: u64) -> Reconnect {
        self.clock(local_ms);
        self.link = None;
        self.outbox.clear();
        for p in self.pending.iter_mut() {
            if p.state == State::InFlight {
                p.state = State::Unsent;
            }
        }
        self.set_status(Status::Offline);
        match code {
            close::AUTH_FAILED | close::TOKEN_EXPIRED => Reconnect::NewToken,
            close::ORIGIN => Reconnect::Stop,
            close::SLOW_CONSUMER => Reconnect::Now,
            close::PROTOCOL => {
                self.complete = false;
                Reconnect::Backoff
            }
            _ => Reconnect::Backoff,
        }
    }

    /// Handles one binary message from the hub.
    pub fn on_message(&mut self, data: &[u8], local_ms: u64) -> Result<(), ClientError> {
        self.clock(local_ms);
        let limits = Limits::default();
        let mut pos = 0;
        while pos < data.len() {
            match parse(&data[pos..], &limits) {
                Ok(Some((frame, used))) => {
                    pos += used;
                    self.on_frame(frame)?;
                }
                Ok(None) => return Err(ClientError::Protocol("incomplete frame".into())),
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) -> Result<(), ClientError> {
        if let Frame::Push(items) = &frame {
            return self.on_push(Push::decode(items)?);
        }
        let Some(link) = self.link.as_mut() else { return Ok(()) };
        let Some(req) = link.awaiting.pop_front() else { return Err(ClientError::Protocol("reply without a request".into())) };
        match req {
            Req::Hello { sent_local } => match HelloReply::decode(&frame) {
                Ok(h) => {
                    let mid = (sent_local as i128 + self.local_now as i128) / 2;
                    self.clock_offset = (h.time as i128 - mid) as i64;
                    self.now = self.hub_time(self.local_now);
                    self.grant = Some(Grant {
                        subject: h.sub,
                        read: Scope::new(h.read.iter()),
                        write: Scope::new(h.write.iter()),
                        expires_ms: (h.exp > 0).then_some(h.exp),
                    });
                    self.maxmsg = (h.maxmsg as usize).max(1024);
                    self.window = (h.window as usize).max(1);
                    if let Some(l) = self.link.as_mut() {
                        l.phase = if self.patterns.is_empty() { Phase::Live } else { Phase::Subscribing };
                    }
                    self.set_status(if self.patterns.is_empty() { Status::Live } else { Status::Syncing });
                    self.send_pending();
                }
                Err(MessageError::Refused(e)) => self.events.push_back(Event::AuthFailed(e)),
                Err(e) => return Err(e.into()),
            },
            Req::Sub => match SubReply::decode(&frame) {
                Ok(r) => match r.mode {
                    SubMode::Full => self.begin_full(r.replid),
                    SubMode::Continue => {
                        self.stats.continues += 1;
                        if let Some(l) = self.link.as_mut() {
                            l.phase = Phase::CatchUp;
                        }
                    }
                },
                Err(MessageError::Refused(e)) => {
                    self.events.push_back(Event::SubscribeFailed(e));
                    // No stream will confirm landed writes now.
                    let mut aff = Affected::default();
                    self.pending.retain(|p| {
                        let keep = !matches!(p.state, State::Landed(_));
                        if !keep {
                            aff.add_pending(p);
                        }
                        keep
                    });
                    self.recompute(aff);
                }
                Err(e) => return Err(e.into()),
            },
            Req::Write(seq) => match Ack::decode(&frame) {
                Ok(ack) => self.on_ack(seq, ack)?,
                Err(MessageError::Refused(e)) => {
                    if let Some(l) = self.link.as_mut() {
                        l.in_flight = l.in_flight.saturating_sub(1);
                    }
                    self.reject(seq, e);
                }
                Err(e) => return Err(e.into()),
            },
            Req::Remote(id) => self.events.push_back(Event::Reply { id, reply: frame }),
        }
        Ok(())
    }

    fn begin_full(&mut self, replid: String) {
        self.stats.full_syncs += 1;
        let engine = Engine::new(self.engine_config.clone());
        if let Some(l) = self.link.as_mut() {
            l.phase = Phase::Snapshot { offset: 0 };
            l.incoming = Some(engine);
            l.incoming_replid = replid;
        }
    }

    fn on_push(&mut self, push: Push) -> Result<(), ClientError> {
        let Some(phase) = self.link.as_ref().map(|l| l.phase) else { return Ok(()) };
        match push {
            Push::Change { offset, changes } => {
                if matches!(phase, Phase::Snapshot { .. }) {
                    return Err(ClientError::Protocol("sync.change during a snapshot".into()));
                }
                if offset <= self.offset && self.replid.is_some() {
                    return Ok(());
                }
                self.stats.groups += 1;
                let mut aff = self.apply_confirmed(offset, changes);
                self.offset = offset;
                aff.merge(self.drop_landed());
                self.recompute(aff);
            }
            Push::Full { replid, .. } => self.begin_full(replid),
            Push::Snap { entries, .. } => {
                let Some(incoming) = self.link.as_mut().and_then(|l| l.incoming.as_mut()) else {
                    return Err(ClientError::Protocol("sync.snap outside a snapshot".into()));
                };
                for e in entries {
                    self.stats.snapshot_keys += 1;
                    if let Some(entry) = e.to_entry() {
                        put(incoming, &e.key, Some(entry));
                    }
                }
            }
            Push::Live { offset } => {
                let incoming = self.link.as_mut().and_then(|l| l.incoming.take().map(|e| (e, std::mem::take(&mut l.incoming_replid))));
                let mut aff = Affected::default();
                match incoming {
                    Some((mut engine, replid)) => {
                        engine.set_offset(offset);
                        self.confirmed = engine;
                        self.replid = Some(replid);
                        self.offset = offset;
                        // Every landed write is in the snapshot (or was lost by a hub that
                        // restarted): drop them all.
                        self.pending.retain(|p| !matches!(p.state, State::Landed(_)));
                        aff.all = true;
                    }
                    None => {
                        self.offset = self.offset.max(offset);
                        aff.merge(self.drop_landed());
                    }
                }
                self.complete = true;
                if let Some(l) = self.link.as_mut() {
                    l.phase = Phase::Live;
                }
                self.recompute(aff);
                self.set_status(Status::Live);
            }
            Push::At { offset } => {
                if phase == Phase::Live {
                    self.offset = self.offset.max(offset);
                    let aff = self.drop_landed();
                    self.recompute(aff);
                }
            }
            Push::Other(_) => {}
        }
        Ok(())
    }

    /// The ack of the write this client keys `seq` (replies come in request order, so
    /// `awaiting` names it; the ack's own seq is the wire seq, the origin's for an `AS` write).
    fn on_ack(&mut self, seq: u64, ack: Ack) -> Result<(), ClientError> {
        if let Some(l) = self.link.as_mut() {
            l.in_flight = l.in_flight.saturating_sub(1);
        }
        let idx = self.pending.iter().position(|p| p.seq == seq);
        if let Some(p) = idx.and_then(|i| self.pending.get(i)) {
            let wire = p.origin.as_ref().map_or(p.seq, |o| o.seq);
            if ack.seq != wire {
                return Err(ClientError::Protocol(format!("ack for seq {} where {wire} was due", ack.seq)));
            }
        }
        if let Frame::Error(e) = &ack.reply {
            let e = String::from_utf8_lossy(e).into_owned();
            self.reject(seq, e);
            return Ok(());
        }
        self.stats.acks += 1;
        self.events.push_back(Event::Acked { seq, reply: ack.reply });
        match ack.changes {
            Some(changes) => {
                let mut aff = Affected::default();
                if let Some(i) = idx {
                    if let Some(p) = self.pending.remove(i) {
                        aff.add_pending(&p);
                    }
                }
                if ack.offset > self.offset {
                    aff.merge(self.apply_confirmed(ack.offset, changes));
                    self.offset = ack.offset;
                }
                aff.merge(self.drop_landed());
                self.recompute(aff);
            }
            None => {
                if let Some(i) = idx {
                    if self.patterns.is_empty() {
                        let mut aff = Affected::default();
                        if let Some(p) = self.pending.remove(i) {
                            aff.add_pending(&p);
                        }
                        self.recompute(aff);
                    } else {
                        self.pending[i].state = State::Landed(ack.offset);
                        let in_stream = self.complete && self.link.as_ref().is_some_and(|l| l.phase == Phase::Live);
                        if in_stream {
                            let aff = self.drop_landed();
                            self.recompute(aff);
                        }
                    }
                }
            }
        }
        self.send_pending();
        Ok(())
    }

    fn reject(&mut self, seq: u64, error: String) {
        self.stats.rejects += 1;
        if let Some(i) = self.pending.iter().position(|p| p.seq == seq) {
            let mut aff = Affected::default();
            if let Some(p) = self.pending.remove(i) {
                aff.add_pending(&p);
            }
            self.recompute(aff);
        }
        self.events.push_back(Event::Rejected { seq, error });
        self.send_pending();
    }

    /// Drops writes that landed at or before the confirmed offset (their effect is in the
    /// confirmed state now). Only meaningful while the stream is consistent.
    fn drop_landed(&mut self) -> Affected {
        let mut aff = Affected::default();
        if self.link.as_ref().is_some_and(|l| matches!(l.phase, Phase::Snapshot { .. })) {
            return aff;
        }
        let upto = self.offset;
        self.pending.retain(|p| match p.state {
            State::Landed(o) if o <= upto => {
                aff.add_pending(p);
                false
            }
            _ => true,
        });
        aff
    }

    /// Applies a hub group to the confirmed engine; returns the keys it touched.
    fn apply_confirmed(&mut self, offset: u64, changes: Vec<Change>) -> Affected {
        let mut aff = Affected::default();
        let mut batch: Vec<Change> = Vec::new();
        let mut failed = false;
        let flush = |eng: &mut Engine, batch: &mut Vec<Change>, failed: &mut bool| {
            if batch.is_empty() {
                return;
            }
            // Time 0: the confirmed copy never expires keys on its own; it follows the
            // hub's DELs, so it cannot diverge around a deadline.
            if eng.apply_group(&ChangeGroup { offset, changes: std::mem::take(batch) }, 0).is_err() {
                *failed = true;
            }
            eng.take_changes();
            eng.take_events();
        };
        for c in changes {
            match c.key() {
                Some(k) => {
                    aff.add(k);
                    batch.push(c);
                }
                None if matches!(c.name(), b"FLUSHDB" | b"FLUSHALL") => {
                    flush(&mut self.confirmed, &mut batch, &mut failed);
                    self.confirmed.load_dbs(Vec::new());
                    aff.all = true;
                }
                None => {}
            }
        }
        flush(&mut self.confirmed, &mut batch, &mut failed);
        self.confirmed.set_offset(offset);
        if failed {
            // The copies diverged (a bug or a version mismatch): start over from a snapshot.
            self.stats.apply_errors += 1;
            self.request_full();
        }
        aff
    }

    fn send_pending(&mut self) {
        let Some(link) = self.link.as_ref() else { return };
        let mut in_flight = link.in_flight;
        let mut reqs = Vec::new();
        for p in self.pending.iter_mut() {
            if in_flight >= self.window {
                break;
            }
            if p.state != State::Unsent {
                continue;
            }
            p.state = State::InFlight;
            in_flight += 1;
            if p.sent_before {
                self.stats.resent += 1;
            }
            p.sent_before = true;
            reqs.push((p.seq, write_request(p.seq, &p.origin, &p.commands, p.tx)));
        }
        for (seq, req) in reqs {
            self.stage(&req);
            if let Some(l) = self.link.as_mut() {
                l.awaiting.push_back(Req::Write(seq));
                l.in_flight += 1;
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Local commands.

    /// Runs a command: reads answer from the visible state at once; writes apply to it at
    /// once, are queued and sent, and return their seq. MULTI/EXEC go through
    /// [`SyncClient::transaction`].
    pub fn execute(&mut self, args: &[Bytes], local_ms: u64) -> Submitted {
        self.execute_as(args, None, local_ms)
    }

    /// [`SyncClient::execute`] for a write made for another writer ([`Origin`]): sent as
    /// `SYNC.W AS`, deduplicated by the hub under the origin's id and seq. Reads ignore the
    /// origin. The returned seq (this client's key for the write, which its events carry)
    /// is not the origin's.
    pub fn execute_as(&mut self, args: &[Bytes], origin: Option<Origin>, local_ms: u64) -> Submitted {
        self.clock(local_ms);
        let spec = args.first().and_then(|n| lookup(n));
        if let Some(spec) = spec {
            if matches!(spec.name, "multi" | "exec" | "discard" | "watch" | "unwatch") {
                return Submitted { seq: None, reply: Reply::err("ERR SYNC use a transaction for MULTI/EXEC on a sync client") };
            }
            if spec.is_write() && spec.arity_ok(args.len()) {
                return self.submit(vec![args.to_vec()], false, origin);
            }
        }
        // Reads run on the local copy, which holds only keys the token may read; commands
        // that leave database 0 or act on the connection are refused as on the hub.
        if let Err(e) = check_command(&Grant::open(), args) {
            return Submitted { seq: None, reply: e };
        }
        let reply = self.visible.execute(&mut self.session, args, self.now, &mut NoHost).into_reply();
        self.report_local_changes(None);
        Submitted { seq: None, reply }
    }

    /// Runs commands as one transaction (MULTI … EXEC), optimistically, and queues it.
    pub fn transaction(&mut self, commands: &[Vec<Bytes>], local_ms: u64) -> Submitted {
        self.transaction_as(commands, None, local_ms)
    }

    /// [`SyncClient::transaction`] made for another writer (`SYNC.TX AS`, see
    /// [`SyncClient::execute_as`]).
    pub fn transaction_as(&mut self, commands: &[Vec<Bytes>], origin: Option<Origin>, local_ms: u64) -> Submitted {
        self.clock(local_ms);
        if commands.is_empty() || commands.iter().any(|c| c.first().and_then(|n| lookup(n)).is_some_and(|s| s.runs_in_multi())) {
            return Submitted { seq: None, reply: Reply::err(errors::EXECABORT) };
        }
        self.submit(commands.to_vec(), true, origin)
    }

    /// Sends any command to the hub (not applied locally); its reply comes back as
    /// [`Event::Reply`] with the returned id. `None` when offline.
    pub fn remote(&mut self, args: Vec<Bytes>) -> Option<u64> {
        self.link.as_ref()?;
        let id = self.next_remote;
        self.next_remote += 1;
        self.stage(&Request::Command(args));
        if let Some(l) = self.link.as_mut() {
            l.awaiting.push_back(Req::Remote(id));
        }
        Some(id)
    }

    fn submit(&mut self, commands: Vec<Vec<Bytes>>, tx: bool, origin: Option<Origin>) -> Submitted {
        if let Some(o) = &origin {
            // Refused here as the hub would refuse it, so a bad id never reaches the wire.
            if !valid_client_id(&o.id) {
                return Submitted { seq: None, reply: Reply::err("ERR SYNC invalid origin id") };
            }
            if o.seq == 0 {
                return Submitted { seq: None, reply: Reply::err("ERR SYNC invalid seq") };
            }
        }
        let open = Grant::open();
        let grant = self.grant.as_ref().unwrap_or(&open);
        for c in &commands {
            if let Err(e) = check_command(grant, c) {
                return Submitted { seq: None, reply: e };
            }
        }
        let seq = self.next_seq;
        let mut size = Vec::new();
        write_request(seq, &origin, &commands, tx).encode(&mut size);
        if size.len() > self.maxmsg {
            return Submitted { seq: None, reply: Reply::err("ERR SYNC message too big") };
        }
        let mut keys: Option<Vec<Bytes>> = Some(Vec::new());
        for c in &commands {
            let Some(spec) = c.first().and_then(|n| lookup(n)) else { continue };
            let ks = spec.keys_of(c);
            if ks.is_empty() && spec.is_write() {
                keys = None;
            }
            if let Some(all) = keys.as_mut() {
                all.extend(ks.into_iter().cloned());
            }
        }
        let before: HashMap<Bytes, Option<(Value, u64)>> = match &keys {
            Some(ks) => ks.iter().map(|k| (k.clone(), live_entry(&self.visible, k, self.now))).collect(),
            None => self.visible_map(),
        };
        let reply = run(&mut self.visible, &mut self.session, &commands, tx, self.now);
        let groups = self.visible.take_changes();
        let touched = keys_of_groups(&groups);
        if let Some(all) = keys.as_mut() {
            for k in touched.iter() {
                if !all.contains(k) {
                    all.push(k.clone());
                }
            }
        }
        self.next_seq += 1;
        self.pending.push_back(Pending { seq, origin, commands, tx, keys, at: self.now, state: State::Unsent, sent_before: false });
        self.diff_and_report(before, touched);
        self.send_pending();
        Submitted { seq: Some(seq), reply }
    }

    /// Reports keys that a local read expired (lazy expiry) or a sweep removed.
    fn report_local_changes(&mut self, groups: Option<Vec<ChangeGroup>>) {
        let groups = groups.unwrap_or_else(|| self.visible.take_changes());
        let mut keys = keys_of_groups(&groups);
        if !keys.is_empty() {
            keys.sort();
            keys.dedup();
            self.events.push_back(Event::Changed(keys));
        }
    }

    /// Expires due keys of the visible state (at hub time) and reports them. Returns the
    /// next local time to call again, if a key has a deadline.
    pub fn tick(&mut self, local_ms: u64) -> Option<u64> {
        self.clock(local_ms);
        self.expire_due();
        self.next_deadline()
    }

    /// Removes every visible key whose deadline has passed (at hub time) and reports them.
    fn expire_due(&mut self) {
        // A sweep is bounded; repeat while keys are due (bounded too, in case the deadline
        // index ever disagrees with the keyspace).
        for _ in 0..1024 {
            if self.visible.next_deadline().is_none_or(|d| d > self.now) {
                break;
            }
            self.visible.sweep(self.now, SWEEP_BUDGET);
        }
        let groups = self.visible.take_changes();
        self.report_local_changes(Some(groups));
    }

    /// The next local time a visible key expires.
    pub fn next_deadline(&self) -> Option<u64> {
        self.visible.next_deadline().map(|t| (t as i64).saturating_sub(self.clock_offset).max(0) as u64)
    }

    // -----------------------------------------------------------------------------------
    // Recomputing the visible state.

    fn visible_map(&self) -> HashMap<Bytes, Option<(Value, u64)>> {
        self.visible.dbs[0]
            .iter()
            .filter(|(_, e)| !e.is_expired(self.now))
            .map(|(k, e)| (Bytes::copy_from_slice(k), Some((e.value.clone(), e.expire_at))))
            .collect()
    }

    fn diff_and_report(&mut self, before: HashMap<Bytes, Option<(Value, u64)>>, extra: Vec<Bytes>) {
        let mut changed: Vec<Bytes> = Vec::new();
        let mut seen: HashSet<Bytes> = HashSet::new();
        for (k, old) in &before {
            seen.insert(k.clone());
            if *old != live_entry(&self.visible, k, self.now) {
                changed.push(k.clone());
            }
        }
        for k in extra {
            if seen.insert(k.clone()) {
                changed.push(k);
            }
        }
        if !changed.is_empty() {
            changed.sort();
            self.events.push_back(Event::Changed(changed));
        }
    }

    /// Resets the affected keys (closed over pending writes that touch them) from the
    /// confirmed state and replays the pending writes touching them.
    fn recompute(&mut self, aff: Affected) {
        if !aff.all && aff.keys.is_empty() {
            return;
        }
        // Keys past their deadline leave the visible state, reported, first: the diff
        // below counts an expired key as absent already, so a hub DEL arriving after the
        // deadline but before the host's timer would otherwise remove it silently (found
        // by sync-hub/tests/sync_skew.rs: a UI never learned that the key expired).
        self.expire_due();
        let mut all = aff.all;
        let mut keys = aff.keys;
        while !all {
            let mut grew = false;
            for p in &self.pending {
                match &p.keys {
                    None => {
                        all = true;
                        break;
                    }
                    Some(pk) if pk.iter().any(|k| keys.contains(k)) => {
                        for k in pk {
                            grew |= keys.insert(k.clone());
                        }
                    }
                    Some(_) => {}
                }
            }
            if !grew {
                break;
            }
        }
        let now = self.now;
        let before = if all { self.visible_map() } else { keys.iter().map(|k| (k.clone(), live_entry(&self.visible, k, now))).collect() };
        if all {
            self.visible.load_dbs(self.confirmed.dbs().to_vec());
            let expired: Vec<Bytes> = self.visible.dbs[0].iter().filter(|(_, e)| e.is_expired(now)).map(|(k, _)| Bytes::copy_from_slice(k)).collect();
            for k in expired {
                put(&mut self.visible, &k, None);
            }
        } else {
            for k in &keys {
                let entry = self.confirmed.dbs[0].get(k).filter(|e| !e.is_expired(now)).cloned();
                put(&mut self.visible, k, entry);
            }
        }
        for p in self.pending.iter() {
            let touches = all || p.keys.as_ref().is_some_and(|pk| pk.iter().any(|k| keys.contains(k)));
            if touches {
                run(&mut self.visible, &mut self.session, &p.commands, p.tx, p.at);
            }
        }
        self.visible.take_changes();
        self.visible.take_events();
        let extra = if all { self.visible_map().into_keys().filter(|k| !before.contains_key(k)).collect() } else { Vec::new() };
        self.diff_and_report(before, extra);
    }
}

/// Runs a pending write (or transaction) on an engine at `at`.
fn run(eng: &mut Engine, session: &mut Session, commands: &[Vec<Bytes>], tx: bool, at: u64) -> Reply {
    if !tx {
        return match commands.first() {
            Some(c) => eng.execute(session, c, at, &mut NoHost).into_reply(),
            None => Reply::Nil,
        };
    }
    eng.execute(session, &[Bytes::from_static(b"MULTI")], at, &mut NoHost);
    for c in commands {
        eng.execute(session, c, at, &mut NoHost);
    }
    eng.execute(session, &[Bytes::from_static(b"EXEC")], at, &mut NoHost).into_reply()
}

#[cfg(test)]
mod expiry_report_tests {
    use super::*;
    use crate::sync::hub::{Auth, HubConfig, SyncHub};

    const T0: u64 = 1_700_000_000_000;

    fn deliver(c: &mut SyncClient, out: crate::sync::hub::Output, now: u64) {
        for (_, bytes) in out.sends {
            c.on_message(&bytes, now).expect("hub bytes parse");
        }
    }

    /// Regression (found by sync-hub/tests/sync_skew.rs): the hub's DEL of an expired key
    /// arriving after the deadline but before the host's timer fired removed the key from
    /// the visible state without an `Event::Changed`, so a UI never learned it expired.
    #[test]
    fn hub_del_after_the_deadline_still_reports_the_expiry() {
        let mut engine = Engine::default();
        let mut hub = SyncHub::new(HubConfig::default(), Auth::open(), "a".repeat(40), 0);
        let mut c = SyncClient::new(ClientConfig { client_id: "c1".into(), token: String::new(), patterns: vec![Bytes::from_static(b"*")], engine: Config::default() });
        hub.open(1, T0);
        c.on_open(T0);
        while let Some(m) = c.take_outgoing() {
            let out = hub.message(&mut engine, &mut NoHost, 1, &m, T0);
            deliver(&mut c, out, T0);
        }
        assert_eq!(c.status(), Status::Live);
        let mut s = Session::new(9);
        let k = Bytes::from_static(b"k");
        engine.execute(&mut s, &[Bytes::from_static(b"SET"), k.clone(), Bytes::from_static(b"v"), Bytes::from_static(b"PXAT"), Bytes::from((T0 + 100).to_string())], T0, &mut NoHost);
        let groups = engine.take_changes();
        let out = hub.publish(&engine, &groups, T0);
        deliver(&mut c, out, T0);
        while c.poll_event().is_some() {}
        // The hub expires the key and its DEL reaches the client before its timer fires.
        engine.sweep(T0 + 150, 100);
        let groups = engine.take_changes();
        let out = hub.publish(&engine, &groups, T0 + 150);
        deliver(&mut c, out, T0 + 150);
        let mut changed = Vec::new();
        while let Some(e) = c.poll_event() {
            if let Event::Changed(keys) = e {
                changed.extend(keys);
            }
        }
        assert_eq!(changed, vec![k.clone()], "the expiry was not reported");
        assert!(c.visible().db(0).is_some_and(|d| d.get(&k).is_none()));
    }
}
