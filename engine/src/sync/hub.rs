//! The hub side of live sync, host-independent: authentication, subscriptions, per-subscriber
//! filtering, snapshots, backlog resume, scope checks, write execution with deduplication,
//! heartbeats and timeouts. The native hub (tokio) and the edge hub (Durable Object) only
//! move bytes and call into [`SyncHub`].
//!
//! # How a host drives it
//! One engine, one `SyncHub`, both owned by the task that owns the engine; sockets talk to
//! that task. `conn` is the host's connection id, also used as the engine session id
//! (allocate it from the same counter as RESP client ids).
//! ```text
//! hub = SyncHub::new(HubConfig { .. }, auth, replid, engine.offset())
//! WebSocket upgrade: origin_allowed(&cfg.origins, origin) else close Close::origin_refused();
//!   per-IP / maxclients caps else Close::too_many_connections(); text message → Close::text_message()
//! socket accepted ............ hub.open(conn, now)
//! binary message ............. out = hub.message(&mut engine, &mut host, conn, &bytes, now)
//! after any other engine call (RESP client command, expiry sweep, eviction):
//!                              groups = engine.take_changes(); (AOF, replicas)
//!                              out = hub.publish(&engine, &groups, now)
//! every ~100 ms .............. out = hub.tick(now)       (handshake timeout, token expiry, sync.at)
//! socket gone ................ hub.disconnect(&mut engine, conn)
//! with every Output: append out.groups to the AOF / replication stream (durable before
//!   the sends when acks must survive a crash), take engine.take_events() for keyspace
//!   notifications and wake blocked clients on the groups' keys; then queue out.sends
//!   (one binary message each, in order per connection; out.catch_up raises that
//!   connection's bound until written); then perform out.closes (code + reason) and
//!   call hub.disconnect.
//! outbound buffer over its bound: close with Close::slow_consumer(bound), hub.disconnect.
//! hibernation (edge): hub.export_conn(conn) into the attachment; on wake
//!   hub.restore_conn(&engine, conn, state, now).
//! dedupe across restarts (edge): HubConfig::record_dedupe; store out.dedupe in the same
//!   transaction as out.groups (before the sends); on wake, before any message,
//!   out = hub.restore_dedupe(stored entries) and store its out.dedupe (bounds that shrank).
//! ```

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::backlog::Backlog;
use super::message::{encode_change_push, encode_entry, encode_reply, encode_snap_push, Ack, HelloReply, Push, Request, SubMode, SubReply, PROTOCOL_VERSION};
use super::scope::{Grant, Scope};
use super::token::{self, TokenError};
use crate::change::{Change, ChangeGroup};
use crate::command::flags::{ADMIN, PUBSUB};
use crate::command::lookup;
use crate::engine::{Engine, Host, Session};
use crate::glob;
use crate::value::Hasher;
use crate::reply::{errors, Reply};
use crate::resp::frame::{parse_command, Arg, Limits};

/// The host's id for a connection. It is also the engine [`Session`] id of the connection,
/// so allocate it from the same counter as RESP client ids.
pub type ConnId = u64;

/// Target size of one outgoing message; frames are batched up to it.
const MESSAGE_TARGET: usize = 64 * 1024;

/// Remembered replies larger than this are replayed as null.
const DEDUPE_MAX_REPLY: usize = 64 * 1024;

/// `NOPERM` for keys, as Redis 7.0 words it.
pub const NOPERM_KEYS: &str = "NOPERM this user has no permissions to access one of the keys used as arguments";

/// `NOPERM` for subscription patterns.
pub const NOPERM_PATTERNS: &str = "NOPERM this user has no permissions to access one of the patterns used as arguments";

/// `NOAUTH` before `SYNC.HELLO`.
pub const NOAUTH: &str = "NOAUTH Authentication required.";

/// Commands a sync connection may never run, whatever its token.
const NEVER: &[&str] = &[
    "select", "swapdb", "move", "auth", "hello", "reset", "client", "wait", "monitor", "sync", "psync", "replconf", "replicaof", "slaveof", "readonly", "readwrite",
    // Containers whose subcommands Redis flags admin or pubsub (the table flags containers 0).
    "config", "pubsub",
];

/// WebSocket close codes of the protocol (`docs/protocol.md`, section 9).
pub mod close {
    /// Normal close.
    pub const NORMAL: u16 = 1000;
    /// The hub is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text message arrived.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A client message over `maxmsg`.
    pub const TOO_BIG: u16 = 1009;
    /// Hub bug.
    pub const INTERNAL: u16 = 1011;
    /// `maxclients` or the per-IP socket cap.
    pub const TRY_LATER: u16 = 1013;
    /// Unparseable or unexpected frames, bad HELLO version or client id.
    pub const PROTOCOL: u16 = 4000;
    /// HELLO token refused.
    pub const AUTH_FAILED: u16 = 4001;
    /// No successful HELLO in time.
    pub const HANDSHAKE_TIMEOUT: u16 = 4002;
    /// The token expired while connected.
    pub const TOKEN_EXPIRED: u16 = 4003;
    /// Origin not in the allow-list.
    pub const ORIGIN: u16 = 4004;
    /// Outbound buffer over its bound.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// A WebSocket close to perform: code and reason text (at most 123 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code.
    pub code: u16,
    /// The reason.
    pub reason: String,
}

impl Close {
    /// A close with a reason cut to the WebSocket limit of 123 bytes.
    pub fn new(code: u16, reason: impl Into<String>) -> Close {
        let mut reason: String = reason.into();
        if reason.len() > 123 {
            let mut cut = 123;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Close { code, reason }
    }
    /// 1000 `bye`.
    pub fn normal() -> Close {
        Close::new(close::NORMAL, "bye")
    }
    /// 1001 `hub shutting down`.
    pub fn shutting_down() -> Close {
        Close::new(close::GOING_AWAY, "hub shutting down")
    }
    /// 1003 `binary messages only`.
    pub fn text_message() -> Close {
        Close::new(close::UNSUPPORTED_DATA, "binary messages only")
    }
    /// 1009 `message too big (max N bytes)`.
    pub fn too_big(max: usize) -> Close {
        Close::new(close::TOO_BIG, format!("message too big (max {max} bytes)"))
    }
    /// 1013 `too many connections`.
    pub fn too_many_connections() -> Close {
        Close::new(close::TRY_LATER, "too many connections")
    }
    /// 4000 `protocol error: …`.
    pub fn protocol(detail: &str) -> Close {
        Close::new(close::PROTOCOL, format!("protocol error: {detail}"))
    }
    /// 4001 `auth failed: <kind>`.
    pub fn auth_failed(err: &AuthError) -> Close {
        Close::new(close::AUTH_FAILED, format!("auth failed: {}", err.kind()))
    }
    /// 4002 `handshake timeout`.
    pub fn handshake_timeout() -> Close {
        Close::new(close::HANDSHAKE_TIMEOUT, "handshake timeout")
    }
    /// 4003 `token expired`.
    pub fn token_expired() -> Close {
        Close::new(close::TOKEN_EXPIRED, "token expired")
    }
    /// 4004 `origin not allowed`.
    pub fn origin_refused() -> Close {
        Close::new(close::ORIGIN, "origin not allowed")
    }
    /// 4008 `slow consumer: outbound buffer over N bytes`.
    pub fn slow_consumer(limit: usize) -> Close {
        Close::new(close::SLOW_CONSUMER, format!("slow consumer: outbound buffer over {limit} bytes"))
    }
}

/// Whether a WebSocket `Origin` header is allowed by the configured list: an empty list or
/// `*` allows every origin (and requests without one); otherwise the origin must equal an
/// entry exactly (scheme, host and port, ASCII case-insensitive), and a request without
/// an Origin header (not a browser) is allowed.
pub fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    allowed.is_empty() || allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin.trim_end_matches('/')))
}

/// Why a token was refused at HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A JWT that failed verification.
    #[error("{}", .0)]
    Token(TokenError),
    /// Neither a configured static token nor a JWT this hub can verify.
    #[error("unknown token")]
    UnknownToken,
}

impl AuthError {
    /// The kind as the protocol spells it: `malformed`, `bad signature`, `expired`,
    /// `unknown token`.
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Token(TokenError::Malformed) => "malformed",
            AuthError::Token(TokenError::BadSignature) => "bad signature",
            AuthError::Token(TokenError::Expired) => "expired",
            AuthError::UnknownToken => "unknown token",
        }
    }
}

/// How tokens are checked: a JWT secret, static tokens, or neither (open).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    secret: Option<Vec<u8>>,
    statics: Vec<(Vec<u8>, Grant)>,
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// No secret, no static tokens: every token grants everything.
    pub fn open() -> Auth {
        Auth::default()
    }

    /// JWTs signed with `secret`.
    pub fn with_secret(secret: impl Into<Vec<u8>>) -> Auth {
        Auth { secret: Some(secret.into()), statics: Vec::new() }
    }

    /// Adds a static token from configuration.
    pub fn add_static(&mut self, token: impl Into<Vec<u8>>, grant: Grant) {
        self.statics.push((token.into(), grant));
    }

    /// Whether the hub runs open (it must say so at start).
    pub fn is_open(&self) -> bool {
        self.secret.is_none() && self.statics.is_empty()
    }

    /// The JWT secret, for minting (`RECACHED.TOKEN`).
    pub fn secret(&self) -> Option<&[u8]> {
        self.secret.as_deref()
    }

    /// Checks a token at `now_ms` and returns what it grants.
    pub fn authenticate(&self, token: &[u8], now_ms: u64) -> Result<Grant, AuthError> {
        if self.is_open() {
            return Ok(Grant::open());
        }
        for (t, grant) in &self.statics {
            if ct_eq(t, token) {
                return Ok(grant.clone());
            }
        }
        match &self.secret {
            Some(secret) if token::looks_like_jwt(token) => {
                let claims = token::verify(token, secret, now_ms).map_err(AuthError::Token)?;
                Ok(Grant::from_claims(&claims))
            }
            _ => Err(AuthError::UnknownToken),
        }
    }
}

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// This hub's name, reported in HELLO.
    pub hub_id: String,
    /// Largest client message in bytes (`maxmsg`).
    pub max_message: usize,
    /// Time allowed from socket open to a successful HELLO.
    pub handshake_timeout_ms: u64,
    /// Backlog bound in bytes.
    pub backlog_bytes: usize,
    /// How long the backlog is kept with no sync connection, as Redis's `repl-backlog-ttl`;
    /// 0 keeps it always. A hub that has had no connection for this long (or never had
    /// one) holds no groups, so a server used only over RESP pays nothing for it; the first
    /// connection starts it again, and older offsets resync in full.
    pub backlog_ttl_ms: u64,
    /// Target bytes of one `sync.snap` chunk.
    pub snapshot_chunk: usize,
    /// Writes remembered per client id for deduplication (also the client's window).
    pub dedupe_window: usize,
    /// Client ids remembered for deduplication.
    pub dedupe_clients: usize,
    /// Hand out every change of the dedupe memory in [`Output::dedupe`], for a host that
    /// keeps it in storage so that a resend after a restart is still deduplicated (the edge
    /// hub: a Durable Object is evicted when idle). Off: nothing is recorded.
    pub record_dedupe: bool,
    /// Interval of `sync.at` heartbeats to subscribers that skipped groups.
    pub heartbeat_ms: u64,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            hub_id: "recached".into(),
            max_message: 1 << 20,
            handshake_timeout_ms: 10_000,
            backlog_bytes: 16 << 20,
            backlog_ttl_ms: 0,
            snapshot_chunk: 64 * 1024,
            dedupe_window: 1024,
            dedupe_clients: 10_000,
            record_dedupe: false,
            heartbeat_ms: 1000,
        }
    }
}

/// What the host must do after a call.
#[derive(Debug, Default)]
pub struct Output {
    /// Binary messages to send, in order per connection.
    pub sends: Vec<(ConnId, Bytes)>,
    /// Connections to close (after sending their messages), then `disconnect`.
    pub closes: Vec<(ConnId, Close)>,
    /// Change groups committed by sync clients' commands during the call, for the host's
    /// other consumers (AOF, replicas, keyspace notifications, blocked clients). Already
    /// in the backlog and fanned out to subscribers.
    pub groups: Vec<ChangeGroup>,
    /// Bytes of catch-up (a snapshot or a backlog replay) queued in `sends` for a
    /// connection. The host lets that connection's outbound bound grow by this much until
    /// those bytes are written, so a subscription larger than the bound is not dropped
    /// for its own snapshot (which would loop: reconnect, snapshot, drop).
    pub catch_up: Vec<(ConnId, usize)>,
    /// Changes of the dedupe memory during the call, in order, when
    /// [`HubConfig::record_dedupe`] is set. A host that stores them in the same
    /// transaction as `groups`, before the sends, deduplicates resends across restarts.
    pub dedupe: Vec<DedupeChange>,
}

impl Output {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.sends.is_empty() && self.closes.is_empty() && self.groups.is_empty() && self.catch_up.is_empty() && self.dedupe.is_empty()
    }
}

/// Counters for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HubStats {
    /// `SYNC.W`/`SYNC.TX` executed.
    pub writes: u64,
    /// Resent writes answered from the dedupe memory instead of running again.
    pub duplicates: u64,
    /// Writes refused by scope.
    pub refused: u64,
    /// Subscriptions answered `full` (and in-band `sync.full`).
    pub full_syncs: u64,
    /// Subscriptions answered `continue`.
    pub continues: u64,
    /// `sync.change` pushes sent.
    pub pushes: u64,
    /// Keys sent in snapshots.
    pub snapshot_keys: u64,
    /// HELLOs refused.
    pub auth_failures: u64,
}

#[derive(Debug)]
struct Conn {
    session: Session,
    opened_ms: u64,
    grant: Option<Grant>,
    client_id: Bytes,
    patterns: Option<Vec<glob::Pattern>>,
    /// Offset up to which this subscriber has been sent everything relevant.
    last_sent: u64,
    last_at_ms: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct DedupeWindow {
    results: BTreeMap<u64, (u64, Bytes)>,
    floor: u64,
    used: u64,
}

/// One remembered write result with its client's window state, for hosts that keep the
/// dedupe memory in storage ([`HubConfig::record_dedupe`]): what [`DedupeChange::Put`]
/// hands out and what [`SyncHub::restore_dedupe`] takes back. The client is the one the
/// write was deduplicated under, whatever named it (the connection's client id from HELLO
/// or another source); hosts store it as opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeEntry {
    /// The token's subject.
    pub subject: String,
    /// The client id.
    pub client: Bytes,
    /// The write's seq.
    pub seq: u64,
    /// The offset its ack carried.
    pub offset: u64,
    /// The reply its ack carried (RESP3 bytes; `_` when it was over 64 KiB).
    pub reply: Bytes,
    /// The client's floor: seqs at or below it are answered as old duplicates (offset 0,
    /// reply `_`); 0 when nothing was forgotten yet.
    pub floor: u64,
    /// The client's recency (a counter, larger is more recent), so the least recently used
    /// client is still the one dropped after a restore.
    pub used: u64,
}

/// A change of the dedupe memory that a host keeping it in storage mirrors, in order. With
/// every change applied, storage holds exactly the memory: at most
/// [`HubConfig::dedupe_window`] entries per client and [`HubConfig::dedupe_clients`]
/// clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeChange {
    /// Store the entry (replacing one with the same subject, client and seq), set the
    /// client's floor and recency to the entry's, and delete the client's entries with a
    /// seq at or below the floor (the window moved on; that may include this entry).
    Put(DedupeEntry),
    /// Delete the client and all its entries (least recently used, over the client cap).
    Forget {
        /// The token's subject.
        subject: String,
        /// The client id.
        client: Bytes,
    },
}

/// Remembered write results by (subject, client id) or (subject, origin id), bounded.
#[derive(Debug, Default)]
struct Dedupe {
    window: usize,
    max_clients: usize,
    clients: HashMap<(String, Bytes), DedupeWindow>,
    clock: u64,
    /// Changes for the host, when it keeps the memory in storage.
    log: Option<Vec<DedupeChange>>,
}

impl Dedupe {
    fn get(&mut self, key: &(String, Bytes), seq: u64) -> Option<(u64, Bytes)> {
        self.clock += 1;
        let w = self.clients.get_mut(key)?;
        w.used = self.clock;
        if let Some(r) = w.results.get(&seq) {
            return Some(r.clone());
        }
        (seq <= w.floor).then(|| (0, Bytes::from_static(b"_\r\n")))
    }

    fn insert(&mut self, key: (String, Bytes), seq: u64, offset: u64, reply: Bytes) {
        self.clock += 1;
        if !self.clients.contains_key(&key) && self.clients.len() >= self.max_clients.max(1) {
            self.evict_one();
        }
        let w = self.clients.entry(key.clone()).or_default();
        w.used = self.clock;
        let reply = if reply.len() > DEDUPE_MAX_REPLY { Bytes::from_static(b"_\r\n") } else { reply };
        w.results.insert(seq, (offset, reply.clone()));
        trim(w, self.window);
        if let Some(log) = &mut self.log {
            let (subject, client) = key;
            log.push(DedupeChange::Put(DedupeEntry { subject, client, seq, offset, reply, floor: w.floor, used: w.used }));
        }
    }

    /// Drops the least recently used client.
    fn evict_one(&mut self) {
        let Some(old) = self.clients.iter().min_by_key(|(_, w)| w.used).map(|(k, _)| k.clone()) else { return };
        self.clients.remove(&old);
        if let Some(log) = &mut self.log {
            log.push(DedupeChange::Forget { subject: old.0, client: old.1 });
        }
    }

    /// Takes back stored entries, then applies the bounds (they may have shrunk since the
    /// entries were stored), logging what they drop.
    fn restore(&mut self, entries: impl IntoIterator<Item = DedupeEntry>) {
        let mut seen = std::collections::HashSet::new();
        for e in entries {
            self.clock = self.clock.max(e.used);
            let key = (e.subject, e.client);
            let w = self.clients.entry(key.clone()).or_default();
            w.used = w.used.max(e.used);
            w.floor = w.floor.max(e.floor);
            let reply = if e.reply.len() > DEDUPE_MAX_REPLY { Bytes::from_static(b"_\r\n") } else { e.reply };
            w.results.insert(e.seq, (e.offset, reply));
            seen.insert(key);
        }
        while self.clients.len() > self.max_clients.max(1) {
            self.evict_one();
        }
        for key in seen {
            let Some(w) = self.clients.get_mut(&key) else { continue };
            let before = (w.floor, w.results.len());
            w.results.retain(|s, _| *s > before.0);
            trim(w, self.window);
            if (w.floor, w.results.len()) == before {
                continue;
            }
            // Re-put the newest entry with the new floor: storage deletes what it covers.
            let (Some(log), Some((&seq, (offset, reply)))) = (&mut self.log, w.results.last_key_value()) else { continue };
            let (subject, client) = key;
            log.push(DedupeChange::Put(DedupeEntry { subject, client, seq, offset: *offset, reply: reply.clone(), floor: w.floor, used: w.used }));
        }
    }

    fn entries(&self) -> usize {
        self.clients.values().map(|w| w.results.len()).sum()
    }
}

/// Forgets a client's oldest results beyond `window`, raising its floor.
fn trim(w: &mut DedupeWindow, window: usize) {
    while w.results.len() > window.max(1) {
        if let Some((s, _)) = w.results.pop_first() {
            w.floor = w.floor.max(s);
        }
    }
}

/// Marks an origin id in the dedupe memory's keys: a byte no client id may hold, so origin
/// ids (`SYNC.W AS`) and client ids (HELLO) are separate namespaces and never share a
/// window, whatever ids the clients choose.
const ORIGIN_MARK: u8 = b'@';

/// The dedupe memory's key of a write: (subject, client id), or (subject, origin id) for a
/// write made `AS` an origin.
fn dedupe_key(subject: &str, client_id: &Bytes, origin: Option<&Bytes>) -> (String, Bytes) {
    let id = match origin {
        None => client_id.clone(),
        Some(o) => {
            let mut k = Vec::with_capacity(o.len() + 1);
            k.push(ORIGIN_MARK);
            k.extend_from_slice(o);
            Bytes::from(k)
        }
    };
    (subject.to_string(), id)
}

/// Per-connection output being assembled during one call, in the order connections first
/// got something (no sort: a fan-out's order is the subscribers' order).
#[derive(Debug, Default)]
struct Outbox {
    slot: HashMap<ConnId, usize, Hasher>,
    bufs: Vec<(ConnId, Buf)>,
    done: Vec<(ConnId, Bytes)>,
}

/// One connection's message in the making. A fan-out gives most subscribers one frame that
/// others get too: it stays that shared `Bytes` (no copy per subscriber) until something
/// else joins it.
#[derive(Debug)]
enum Buf {
    Shared(Bytes),
    Owned(Vec<u8>),
}

impl Buf {
    fn len(&self) -> usize {
        match self {
            Buf::Shared(b) => b.len(),
            Buf::Owned(v) => v.len(),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Buf::Shared(b) => b,
            Buf::Owned(v) => Bytes::from(v),
        }
    }
}

impl Outbox {
    fn push(&mut self, id: ConnId, frame: &[u8]) {
        let i = self.slot_of(id);
        let buf = &mut self.bufs[i].1;
        if buf.len() > 0 && buf.len() + frame.len() > MESSAGE_TARGET {
            let full = std::mem::replace(buf, Buf::Owned(Vec::new()));
            self.done.push((id, full.into_bytes()));
        }
        match buf {
            Buf::Owned(v) => v.extend_from_slice(frame),
            Buf::Shared(b) => {
                let mut v = Vec::with_capacity(b.len() + frame.len());
                v.extend_from_slice(b);
                v.extend_from_slice(frame);
                *buf = Buf::Owned(v);
            }
        }
    }

    /// Like `push`, for a frame many connections get: a connection with nothing else in
    /// this call holds a reference to it.
    fn push_shared(&mut self, id: ConnId, frame: &Bytes) {
        match self.slot.entry(id) {
            Entry::Vacant(v) => {
                v.insert(self.bufs.len());
                self.bufs.push((id, Buf::Shared(frame.clone())));
            }
            Entry::Occupied(_) => self.push(id, frame),
        }
    }

    fn slot_of(&mut self, id: ConnId) -> usize {
        *self.slot.entry(id).or_insert_with(|| {
            self.bufs.push((id, Buf::Owned(Vec::new())));
            self.bufs.len() - 1
        })
    }

    fn drain(&mut self) -> Vec<(ConnId, Bytes)> {
        // Messages moved to `done` earlier precede what is left in the buffers.
        let mut out = std::mem::take(&mut self.done);
        self.slot.clear();
        out.extend(self.bufs.drain(..).filter(|(_, b)| b.len() > 0).map(|(id, b)| (id, b.into_bytes())));
        out
    }

    fn forget(&mut self, id: ConnId) {
        if let Some(i) = self.slot.remove(&id) {
            self.bufs[i].1 = Buf::Owned(Vec::new());
        }
        self.done.retain(|(c, _)| *c != id);
    }
}

/// Whether a change reaches a subscriber with these patterns and this grant.
pub fn change_visible(change: &Change, patterns: &[glob::Pattern], grant: &Grant) -> bool {
    match change.key() {
        Some(key) => change.db == 0 && patterns.iter().any(|p| p.matches(key)) && grant.can_read(key),
        None => match change.name() {
            b"FLUSHALL" => true,
            b"FLUSHDB" => change.db == 0,
            _ => false,
        },
    }
}

/// Whether a group cannot be expressed to subscribers as changes (SWAPDB with db 0).
fn needs_full(group: &ChangeGroup) -> bool {
    group.changes.iter().any(|c| c.name() == b"SWAPDB" && c.args.iter().skip(1).any(|a| crate::util::parse_i64(a) == Some(0)))
}

/// The scope rules of `docs/protocol.md` section 5: whether `grant` may run `args` on a
/// sync connection (or through the HTTP command API). Unknown commands and wrong arity
/// pass, so the engine answers them with Redis's errors.
pub fn check_command(grant: &Grant, args: &[Bytes]) -> Result<(), Reply> {
    let Some(spec) = args.first().and_then(|n| lookup(n)) else { return Ok(()) };
    if !spec.arity_ok(args.len()) {
        return Ok(());
    }
    // A script reaches keys its KEYS do not name, so no token scope bounds it: the sync
    // port and the HTTP API never run scripts.
    if let Some(refused) = crate::command::scripting::not_here(args) {
        return Err(refused);
    }
    let run = || Reply::err(format!("NOPERM this user has no permissions to run the '{}' command", spec.name));
    if spec.flags & (ADMIN | PUBSUB) != 0 || NEVER.contains(&spec.name) {
        return Err(run());
    }
    if spec.name == "copy" && args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"DB")) {
        return Err(run());
    }
    let keys = spec.keys_of(args);
    if keys.is_empty() {
        let allowed = if spec.is_write() {
            grant.is_unrestricted()
        } else if spec.is_readonly() || spec.name == "info" {
            grant.read.is_unrestricted()
        } else {
            true
        };
        return if allowed { Ok(()) } else { Err(run()) };
    }
    if matches!(spec.name, "sort" | "sort_ro")
        && !grant.read.is_unrestricted()
        && args.iter().skip(2).any(|a| a.eq_ignore_ascii_case(b"BY") || a.eq_ignore_ascii_case(b"GET"))
    {
        return Err(run());
    }
    let ok = if spec.is_write() { keys.iter().all(|k| grant.can_write(k)) } else { keys.iter().all(|k| grant.can_read(k)) };
    if ok {
        Ok(())
    } else {
        Err(Reply::err(NOPERM_KEYS))
    }
}

fn error_frame(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_reply(&Reply::err(text.to_string()), &mut out);
    out
}

/// The hub's sync state: connections, subscriptions, backlog, dedupe memory.
#[derive(Debug)]
pub struct SyncHub {
    config: HubConfig,
    auth: Auth,
    backlog: Backlog,
    /// In the order they opened (a disconnect moves the last one into the gap): a fan-out
    /// walks them in that order, so the sockets it writes follow their allocation order.
    conns: IndexMap<ConnId, Conn, Hasher>,
    dedupe: Dedupe,
    /// Offset of the newest group that needs a full resync (SWAPDB): no `continue` from
    /// before it.
    barrier: u64,
    stats: HubStats,
    outbox: Outbox,
    out: Output,
    catch_up: HashMap<ConnId, usize>,
    /// When the last sync connection was seen (open, or closing), for `backlog_ttl_ms`.
    last_conn_ms: Option<u64>,
}

/// A connection's protocol state, to keep across hibernation (the edge hub stores it in
/// the WebSocket attachment). A plain MULTI in progress is not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnState {
    /// When the socket opened (hub ms).
    pub opened_ms: u64,
    /// The grant, once authenticated.
    pub grant: Option<GrantState>,
    /// The client id from HELLO.
    pub client_id: Vec<u8>,
    /// The subscription, once subscribed.
    pub patterns: Option<Vec<Vec<u8>>>,
    /// Offset up to which the subscriber was sent everything relevant.
    pub last_sent: u64,
    /// The stream `last_sent` refers to.
    pub replid: String,
}

/// A [`Grant`] in serializable form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantState {
    /// Subject.
    pub subject: String,
    /// Read patterns.
    pub read: Vec<Vec<u8>>,
    /// Write patterns.
    pub write: Vec<Vec<u8>>,
    /// Expiry, Unix ms.
    pub expires_ms: Option<u64>,
}

impl GrantState {
    fn of(g: &Grant) -> GrantState {
        GrantState {
            subject: g.subject.clone(),
            read: g.read.patterns().iter().map(|p| p.to_vec()).collect(),
            write: g.write.patterns().iter().map(|p| p.to_vec()).collect(),
            expires_ms: g.expires_ms,
        }
    }

    fn grant(&self) -> Grant {
        Grant { subject: self.subject.clone(), read: Scope::new(self.read.iter()), write: Scope::new(self.write.iter()), expires_ms: self.expires_ms }
    }
}

impl SyncHub {
    /// A hub for the stream `replid` whose engine is at `offset`.
    pub fn new(config: HubConfig, auth: Auth, replid: impl Into<String>, offset: u64) -> SyncHub {
        let log = config.record_dedupe.then(Vec::new);
        let dedupe = Dedupe { window: config.dedupe_window, max_clients: config.dedupe_clients, log, ..Dedupe::default() };
        SyncHub {
            backlog: Backlog::new(replid, offset, config.backlog_bytes),
            config,
            auth,
            conns: IndexMap::default(),
            dedupe,
            barrier: 0,
            stats: HubStats::default(),
            outbox: Outbox::default(),
            out: Output::default(),
            catch_up: HashMap::new(),
            last_conn_ms: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The token rules.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The token rules, to change them (configuration reload).
    pub fn auth_mut(&mut self) -> &mut Auth {
        &mut self.auth
    }

    /// The backlog (for metrics and persistence).
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// The replication id.
    pub fn replid(&self) -> &str {
        self.backlog.replid()
    }

    /// Counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Connections with a subscription.
    pub fn subscribers(&self) -> usize {
        self.conns.values().filter(|c| c.patterns.is_some() && !c.closed).count()
    }

    /// Starts a new stream (new replid) at `offset`: clients resuming the old one get
    /// `full`.
    pub fn reset_stream(&mut self, replid: impl Into<String>, offset: u64) {
        self.backlog.reset(replid, offset);
    }

    /// Continues an earlier stream after a restart (a host with persistence): `replid` is
    /// this run's id, `previous` the saved stream's id and offset, `groups` its most recent
    /// groups (from the AOF), so clients at or behind that offset continue instead of
    /// resyncing in full. The backlog counts as in use from `now_ms`.
    pub fn restore_stream(&mut self, replid: impl Into<String>, previous: Option<(String, u64)>, groups: Vec<ChangeGroup>, now_ms: u64) {
        self.backlog.restore(replid, previous, groups);
        self.last_conn_ms = Some(now_ms);
    }

    /// Marks the backlog in use as of `now_ms` without a sync connection: a host's other
    /// readers of the same backlog (the native hub's replicas) keep it live, under the
    /// same `backlog_ttl_ms`.
    pub fn keep_backlog(&mut self, now_ms: u64) {
        self.last_conn_ms = Some(now_ms);
    }

    /// A socket was accepted (after the host checked origin and connection caps).
    pub fn open(&mut self, conn: ConnId, now_ms: u64) {
        self.last_conn_ms = Some(now_ms);
        let mut session = Session::new(conn);
        session.resp3 = true;
        self.conns.insert(
            conn,
            Conn { session, opened_ms: now_ms, grant: None, client_id: Bytes::new(), patterns: None, last_sent: 0, last_at_ms: now_ms, closed: false },
        );
    }

    /// A socket is gone: forget it and release its engine session.
    pub fn disconnect(&mut self, engine: &mut Engine, conn: ConnId) {
        if let Some(mut c) = self.conns.swap_remove(&conn) {
            // Its last activity is when the backlog's idle time starts.
            self.last_conn_ms = Some(self.last_conn_ms.unwrap_or(0).max(c.last_at_ms));
            engine.close_session(&mut c.session);
        }
        self.outbox.forget(conn);
        self.catch_up.remove(&conn);
    }

    fn finish(&mut self) -> Output {
        let mut out = std::mem::take(&mut self.out);
        out.sends = self.outbox.drain();
        out.catch_up = self.catch_up.drain().collect();
        if let Some(log) = &mut self.dedupe.log {
            out.dedupe = std::mem::take(log);
        }
        out
    }

    /// Takes back the dedupe memory a host stored from [`Output::dedupe`] (on wake, before
    /// any message). The bounds of this hub's config apply: what they drop comes back in
    /// the returned [`Output::dedupe`], for the host to delete.
    pub fn restore_dedupe(&mut self, entries: impl IntoIterator<Item = DedupeEntry>) -> Output {
        self.dedupe.restore(entries);
        self.finish()
    }

    /// The whole dedupe memory as entries, for a host that saves it in a snapshot and
    /// gives it back with [`SyncHub::restore_dedupe`] after a restart.
    pub fn export_dedupe(&self) -> Vec<DedupeEntry> {
        let mut out = Vec::with_capacity(self.dedupe.entries());
        for ((subject, client), w) in &self.dedupe.clients {
            for (&seq, (offset, reply)) in &w.results {
                out.push(DedupeEntry {
                    subject: subject.clone(),
                    client: client.clone(),
                    seq,
                    offset: *offset,
                    reply: reply.clone(),
                    floor: w.floor,
                    used: w.used,
                });
            }
            if w.results.is_empty() && w.floor > 0 {
                // A window whose results all aged out still answers old seqs as duplicates;
                // an entry at its floor keeps that (the floor covers it, so it is dropped
                // again on restore).
                out.push(DedupeEntry {
                    subject: subject.clone(),
                    client: client.clone(),
                    seq: w.floor,
                    offset: 0,
                    reply: Bytes::from_static(b"_\r\n"),
                    floor: w.floor,
                    used: w.used,
                });
            }
        }
        out
    }

    /// Write results remembered for deduplication, over all clients.
    pub fn dedupe_entries(&self) -> usize {
        self.dedupe.entries()
    }

    /// Client ids remembered for deduplication.
    pub fn dedupe_clients(&self) -> usize {
        self.dedupe.clients.len()
    }

    /// The state of a connection, to store across hibernation.
    pub fn export_conn(&self, conn: ConnId) -> Option<ConnState> {
        let c = self.conns.get(&conn)?;
        Some(ConnState {
            opened_ms: c.opened_ms,
            grant: c.grant.as_ref().map(GrantState::of),
            client_id: c.client_id.to_vec(),
            patterns: c.patterns.as_ref().map(|ps| ps.iter().map(|p| p.as_bytes().to_vec()).collect()),
            last_sent: c.last_sent,
            replid: self.backlog.replid().to_string(),
        })
    }

    /// Recreates a connection from [`SyncHub::export_conn`] after the hub was rebuilt
    /// (hibernation). If the stream is not the one the state refers to, or the subscriber
    /// is ahead of it, the subscriber gets an in-band `sync.full`.
    pub fn restore_conn(&mut self, engine: &Engine, conn: ConnId, state: ConnState, now_ms: u64) -> Output {
        self.last_conn_ms = Some(now_ms);
        let mut session = Session::new(conn);
        session.resp3 = true;
        let resync = state.patterns.is_some() && (state.replid != self.backlog.replid() || state.last_sent > self.backlog.last_offset());
        self.conns.insert(
            conn,
            Conn {
                session,
                opened_ms: state.opened_ms,
                grant: state.grant.as_ref().map(GrantState::grant),
                client_id: Bytes::from(state.client_id),
                patterns: state.patterns.map(|ps| ps.into_iter().map(|p| glob::Pattern::new(Bytes::from(p))).collect()),
                last_sent: if resync { 0 } else { state.last_sent },
                last_at_ms: now_ms,
                closed: false,
            },
        );
        if resync {
            let offset = self.backlog.last_offset();
            self.send_full(engine, conn, offset, false, now_ms);
        }
        self.finish()
    }

    fn close(&mut self, id: ConnId, close: Close) {
        if let Some(c) = self.conns.get_mut(&id) {
            if !c.closed {
                c.closed = true;
                self.out.closes.push((id, close));
            }
        }
    }

    /// Handles one binary message from a connection.
    pub fn message(&mut self, engine: &mut Engine, host: &mut dyn Host, conn: ConnId, data: &[u8], now_ms: u64) -> Output {
        self.publish_leftovers(engine, now_ms);
        match self.conns.get(&conn) {
            Some(c) if !c.closed => {}
            _ => return self.finish(),
        }
        if data.len() > self.config.max_message {
            self.close(conn, Close::too_big(self.config.max_message));
            return self.finish();
        }
        let data = Bytes::copy_from_slice(data);
        let limits = Limits { max_bulk_len: self.config.max_message, ..Limits::default() };
        let mut pos = 0;
        while pos < data.len() {
            if data[pos] != b'*' {
                self.close(conn, Close::protocol("commands must be arrays of bulk strings"));
                break;
            }
            match parse_command(&data[pos..], &limits) {
                Ok(Some(parsed)) => {
                    let args: Vec<Bytes> = parsed
                        .args
                        .into_iter()
                        .map(|a| match a {
                            Arg::Range(s, e) => data.slice(pos + s..pos + e),
                            Arg::Owned(v) => Bytes::from(v),
                        })
                        .collect();
                    pos += parsed.consumed;
                    if !args.is_empty() {
                        self.command(engine, host, conn, args, now_ms);
                    }
                }
                Ok(None) => {
                    self.close(conn, Close::protocol("incomplete frame"));
                    break;
                }
                Err(e) => {
                    let text = e.to_string();
                    self.outbox.push(conn, &error_frame(&text));
                    self.close(conn, Close::protocol(&text));
                    break;
                }
            }
            if self.conns.get(&conn).is_none_or(|c| c.closed) {
                break;
            }
        }
        self.finish()
    }

    /// Takes groups the host left in the engine and publishes them first, so the stream
    /// stays in order.
    fn publish_leftovers(&mut self, engine: &mut Engine, now_ms: u64) {
        if engine.has_changes() {
            let groups = engine.take_changes();
            self.fan_out(engine, &groups, None, now_ms);
            self.out.groups.extend(groups);
        }
    }

    /// Publishes groups the host took from the engine after other work (RESP clients,
    /// expiry sweep, eviction): backlog and fan-out.
    pub fn publish(&mut self, engine: &Engine, groups: &[ChangeGroup], now_ms: u64) -> Output {
        self.fan_out(engine, groups, None, now_ms);
        self.finish()
    }

    /// The earliest time at which [`SyncHub::tick`] has work (a handshake timeout, a token
    /// expiry, a `sync.at` heartbeat), or `None`. Hosts that sleep between events (the
    /// edge hub's Durable Object alarm) wake then instead of ticking on an interval.
    pub fn next_tick(&self) -> Option<u64> {
        let last = self.backlog.last_offset();
        self.conns
            .values()
            .filter(|c| !c.closed)
            .filter_map(|c| match &c.grant {
                None => Some(c.opened_ms.saturating_add(self.config.handshake_timeout_ms)),
                Some(g) => {
                    let beat = (c.patterns.is_some() && c.last_sent < last).then(|| c.last_at_ms.saturating_add(self.config.heartbeat_ms));
                    match (g.expires_ms, beat) {
                        (Some(e), Some(b)) => Some(e.min(b)),
                        (e, b) => e.or(b),
                    }
                }
            })
            .min()
    }

    /// Periodic work: handshake timeouts, expired tokens, `sync.at` heartbeats.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let last = self.backlog.last_offset();
        let mut closes = Vec::new();
        let mut at = Vec::new();
        Push::At { offset: last }.encode(&mut at);
        let at = Bytes::from(at);
        for (id, c) in self.conns.iter_mut() {
            if c.closed {
                continue;
            }
            match &c.grant {
                None if now_ms >= c.opened_ms.saturating_add(self.config.handshake_timeout_ms) => closes.push((*id, Close::handshake_timeout())),
                Some(g) if g.expires_ms.is_some_and(|e| e <= now_ms) => closes.push((*id, Close::token_expired())),
                Some(_) if c.patterns.is_some() && c.last_sent < last && now_ms >= c.last_at_ms.saturating_add(self.config.heartbeat_ms) => {
                    self.outbox.push_shared(*id, &at);
                    c.last_sent = last;
                    c.last_at_ms = now_ms;
                }
                _ => {}
            }
        }
        for (id, c) in closes {
            self.close(id, c);
        }
        self.finish()
    }

    fn command(&mut self, engine: &mut Engine, host: &mut dyn Host, id: ConnId, args: Vec<Bytes>, now_ms: u64) {
        let req = match Request::parse(args) {
            Ok(r) => r,
            Err(e) => {
                self.outbox.push(id, &error_frame(&e.text));
                if e.fatal {
                    self.close(id, Close::protocol(e.text.trim_start_matches("ERR ")));
                }
                return;
            }
        };
        let authed = self.conns.get(&id).is_some_and(|c| c.grant.is_some());
        match req {
            Request::Hello { token, client_id, .. } => self.hello(id, &token, client_id, now_ms),
            _ if !authed => self.outbox.push(id, &error_frame(NOAUTH)),
            Request::Sub { patterns, from } => self.subscribe(engine, id, patterns, from, now_ms),
            Request::Write { origin, seq, args } => self.write(engine, host, id, origin, seq, vec![args], false, now_ms),
            Request::Tx { origin, seq, commands } => self.write(engine, host, id, origin, seq, commands, true, now_ms),
            Request::Command(args) => self.plain(engine, host, id, args, now_ms),
        }
    }

    fn hello(&mut self, id: ConnId, token: &[u8], client_id: Bytes, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        if conn.grant.is_some() {
            self.outbox.push(id, &error_frame("ERR SYNC already authenticated"));
            return;
        }
        match self.auth.authenticate(token, now_ms) {
            Err(e) => {
                self.stats.auth_failures += 1;
                self.outbox.push(id, &error_frame(&format!("WRONGPASS invalid token ({})", e.kind())));
                self.close(id, Close::auth_failed(&e));
            }
            Ok(grant) => {
                let reply = HelloReply {
                    proto: PROTOCOL_VERSION,
                    hub: self.config.hub_id.clone(),
                    replid: self.backlog.replid().to_string(),
                    offset: self.backlog.last_offset(),
                    time: now_ms,
                    sub: grant.subject.clone(),
                    exp: grant.expires_ms.unwrap_or(0),
                    read: grant.read.patterns().to_vec(),
                    write: grant.write.patterns().to_vec(),
                    maxmsg: self.config.max_message as u64,
                    window: self.config.dedupe_window as u64,
                };
                conn.grant = Some(grant);
                conn.client_id = client_id;
                let mut f = Vec::new();
                reply.encode(&mut f);
                self.outbox.push(id, &f);
            }
        }
    }

    fn subscribe(&mut self, engine: &Engine, id: ConnId, patterns: Vec<Bytes>, from: Option<(String, u64)>, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Some(grant) = &conn.grant else { return };
        if patterns.iter().any(|p| !grant.read.covers(p)) {
            self.outbox.push(id, &error_frame(NOPERM_PATTERNS));
            return;
        }
        let offset = self.backlog.last_offset();
        let resume = from.filter(|(r, o)| self.backlog.can_continue(r, *o) && *o >= self.barrier);
        conn.patterns = Some(patterns.into_iter().map(glob::Pattern::new).collect());
        conn.last_at_ms = now_ms;
        match resume {
            Some((_, from)) => {
                self.stats.continues += 1;
                let mut f = Vec::new();
                SubReply { mode: SubMode::Continue, replid: self.backlog.replid().to_string(), offset, keys: 0 }.encode(&mut f);
                self.outbox.push(id, &f);
                let (Some(patterns), Some(grant)) = (&conn.patterns, &conn.grant) else { return };
                let mut bytes = 0;
                for g in self.backlog.since(from) {
                    let changes: Vec<&Change> = g.changes.iter().filter(|c| change_visible(c, patterns, grant)).collect();
                    if !changes.is_empty() {
                        let mut f = Vec::new();
                        encode_change_push(g.offset, changes.into_iter(), &mut f);
                        bytes += f.len();
                        self.outbox.push(id, &f);
                        self.stats.pushes += 1;
                    }
                }
                *self.catch_up.entry(id).or_default() += bytes;
                let mut f = Vec::new();
                Push::Live { offset }.encode(&mut f);
                self.outbox.push(id, &f);
                conn.last_sent = offset;
            }
            None => self.send_full(engine, id, offset, true, now_ms),
        }
    }

    /// Sends a snapshot of the connection's subscription: as the SUB reply or as an
    /// in-band `sync.full`, then the chunks, then `sync.live`.
    fn send_full(&mut self, engine: &Engine, id: ConnId, offset: u64, as_reply: bool, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let (Some(patterns), Some(grant)) = (&conn.patterns, &conn.grant) else { return };
        let mut chunks: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut cur: (usize, Vec<u8>) = (0, Vec::new());
        let mut total = 0usize;
        if let Some(db) = engine.db(0) {
            for (key, entry) in db.iter() {
                if entry.is_expired(now_ms) || !patterns.iter().any(|p| p.matches(key)) || !grant.can_read(key) {
                    continue;
                }
                encode_entry(key, entry, &mut cur.1);
                cur.0 += 1;
                total += 1;
                if cur.1.len() >= self.config.snapshot_chunk {
                    chunks.push(std::mem::take(&mut cur));
                }
            }
        }
        if cur.0 > 0 {
            chunks.push(cur);
        }
        let mut f = Vec::new();
        if as_reply {
            SubReply { mode: SubMode::Full, replid: self.backlog.replid().to_string(), offset, keys: total as u64 }.encode(&mut f);
        } else {
            Push::Full { offset, keys: total as u64, replid: self.backlog.replid().to_string() }.encode(&mut f);
        }
        self.outbox.push(id, &f);
        let mut bytes = 0;
        for (count, body) in chunks {
            let mut f = Vec::with_capacity(body.len() + 32);
            encode_snap_push(offset, count, &body, &mut f);
            bytes += f.len();
            self.outbox.push(id, &f);
        }
        *self.catch_up.entry(id).or_default() += bytes;
        let mut f = Vec::new();
        Push::Live { offset }.encode(&mut f);
        self.outbox.push(id, &f);
        conn.last_sent = offset;
        self.stats.full_syncs += 1;
        self.stats.snapshot_keys += total as u64;
    }

    /// Whether committed groups go to the backlog (see [`HubConfig::backlog_ttl_ms`]).
    fn backlog_live(&mut self, now_ms: u64) -> bool {
        if self.config.backlog_ttl_ms == 0 {
            return true;
        }
        if !self.conns.is_empty() {
            self.last_conn_ms = Some(now_ms);
            return true;
        }
        self.last_conn_ms.is_some_and(|at| now_ms.saturating_sub(at) < self.config.backlog_ttl_ms)
    }

    /// Backlog and fan-out of committed groups. `sender`'s own group is not pushed to it:
    /// its ack carries it.
    fn fan_out(&mut self, engine: &Engine, groups: &[ChangeGroup], sender: Option<ConnId>, now_ms: u64) {
        let Some(last) = groups.last().map(|g| g.offset) else { return };
        let keep = self.backlog_live(now_ms);
        for g in groups {
            if keep {
                self.backlog.push(g.clone());
            } else {
                self.backlog.skip_to(g.offset);
            }
            if needs_full(g) {
                self.barrier = g.offset;
                // The engine is at `last` now: a snapshot there covers the rest of the batch.
                let ids: Vec<ConnId> =
                    self.conns.iter().filter(|(_, c)| !c.closed && c.patterns.is_some() && c.last_sent < g.offset).map(|(id, _)| *id).collect();
                for id in ids {
                    self.send_full(engine, id, last, false, now_ms);
                }
                continue;
            }
            // One frame per distinct set of visible changes (subscribers alike in patterns
            // and grant get the same one); a group has few such sets, so a list will do.
            let mut frames: Vec<(Vec<u32>, Bytes)> = Vec::new();
            let mut idx: Vec<u32> = Vec::with_capacity(g.changes.len());
            for (id, conn) in self.conns.iter_mut() {
                if conn.closed || conn.last_sent >= g.offset || Some(*id) == sender {
                    continue;
                }
                let (Some(patterns), Some(grant)) = (&conn.patterns, &conn.grant) else { continue };
                idx.clear();
                idx.extend(g.changes.iter().enumerate().filter(|(_, c)| change_visible(c, patterns, grant)).map(|(i, _)| i as u32));
                if idx.is_empty() {
                    continue;
                }
                let frame = match frames.iter().find(|(set, _)| *set == idx) {
                    Some((_, f)) => f,
                    None => {
                        let mut f = Vec::new();
                        encode_change_push(g.offset, idx.iter().map(|&i| &g.changes[i as usize]), &mut f);
                        frames.push((idx.clone(), Bytes::from(f)));
                        &frames[frames.len() - 1].1
                    }
                };
                self.outbox.push_shared(*id, frame);
                conn.last_sent = g.offset;
                self.stats.pushes += 1;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write(&mut self, engine: &mut Engine, host: &mut dyn Host, id: ConnId, origin: Option<Bytes>, seq: u64, commands: Vec<Vec<Bytes>>, tx: bool, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Some(grant) = &conn.grant else { return };
        if conn.session.in_multi() {
            self.outbox.push(id, &error_frame("ERR SYNC.W inside MULTI is not allowed"));
            return;
        }
        let live = conn.patterns.is_some();
        let key = dedupe_key(&grant.subject, &conn.client_id, origin.as_ref());
        if let Some((offset, reply)) = self.dedupe.get(&key, seq) {
            self.stats.duplicates += 1;
            let mut f = Vec::new();
            Ack::encode_parts(seq, offset, &reply, live.then_some(&[][..]), &mut f);
            self.outbox.push(id, &f);
            return;
        }
        let mut refusal = None;
        for c in &commands {
            if let Err(e) = check_command(grant, c) {
                refusal = Some(e);
                break;
            }
            if tx && c.first().and_then(|n| lookup(n)).is_some_and(|s| s.runs_in_multi()) {
                refusal = Some(Reply::err(errors::EXECABORT));
                break;
            }
        }
        let (reply, groups) = match refusal {
            Some(e) => {
                self.stats.refused += 1;
                (if tx { Reply::err(errors::EXECABORT) } else { e }, Vec::new())
            }
            None => {
                self.stats.writes += 1;
                let session = &mut conn.session;
                let reply = if tx {
                    let multi = [Bytes::from_static(b"MULTI")];
                    engine.execute(session, &multi, now_ms, host);
                    for c in &commands {
                        engine.execute(session, c, now_ms, host);
                    }
                    engine.execute(session, &[Bytes::from_static(b"EXEC")], now_ms, host).into_reply()
                } else {
                    engine.execute(session, &commands[0], now_ms, host).into_reply()
                };
                (reply, engine.take_changes())
            }
        };
        self.fan_out(engine, &groups, Some(id), now_ms);
        let offset = groups.last().map(|g| g.offset).unwrap_or_else(|| self.backlog.last_offset());
        let mut reply_bytes = Vec::new();
        encode_reply(&reply, &mut reply_bytes);
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let mut f = Vec::new();
        match (&conn.patterns, &conn.grant) {
            (Some(patterns), Some(grant)) => {
                let changes: Vec<&Change> = groups.iter().flat_map(|g| g.changes.iter()).filter(|c| change_visible(c, patterns, grant)).collect();
                Ack::encode_parts(seq, offset, &reply_bytes, Some(&changes), &mut f);
                conn.last_sent = conn.last_sent.max(offset);
            }
            _ => Ack::encode_parts(seq, offset, &reply_bytes, None, &mut f),
        }
        self.outbox.push(id, &f);
        self.dedupe.insert(key, seq, offset, Bytes::from(reply_bytes));
        self.out.groups.extend(groups);
    }

    fn plain(&mut self, engine: &mut Engine, host: &mut dyn Host, id: ConnId, args: Vec<Bytes>, now_ms: u64) {
        let Some(conn) = self.conns.get_mut(&id) else { return };
        let Some(grant) = &conn.grant else { return };
        if let Err(e) = check_command(grant, &args) {
            // As with Redis ACLs, a refused command inside MULTI aborts the transaction.
            if let Some(m) = conn.session.multi.as_mut() {
                m.failed = true;
            }
            let mut f = Vec::new();
            encode_reply(&e, &mut f);
            self.outbox.push(id, &f);
            return;
        }
        let reply = engine.execute(&mut conn.session, &args, now_ms, host).into_reply();
        let groups = engine.take_changes();
        self.fan_out(engine, &groups, None, now_ms);
        let mut f = Vec::new();
        encode_reply(&reply, &mut f);
        self.outbox.push(id, &f);
        self.out.groups.extend(groups);
    }
}
