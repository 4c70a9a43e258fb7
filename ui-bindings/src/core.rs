//! The cache core in plain Rust: an engine, a session on database 0, the listener
//! registry and the notices a command produced. No JS, no clock, no timers — the host
//! (the [`crate::Cache`] handle in the browser, tests natively) passes the time in and
//! delivers the notices outside any borrow, so a listener may call back into the cache.

use std::collections::HashSet;
use std::fmt;
use std::rc::Rc;

use bytes::Bytes;
use recached_engine::resp::Frame;
use recached_engine::sync::{self, ClientConfig, Origin, Reconnect, SyncClient};
use recached_engine::snapshot::{self, SnapshotMeta};
use recached_engine::{Change, ChangeGroup, Config, EventClass, Engine, Policy, Reply, Session};
use thiserror::Error;

use crate::registry::{ListenerId, Registry};

/// Keys expired per timer tick; the rest wait for the next tick (scheduled at once).
pub const SWEEP_BUDGET: usize = 1000;

/// The error text of any command on a closed cache.
pub const CLOSED: &str = "ERR the cache is closed";

/// Commands whose session state would make the browser cache's one session ambiguous.
/// Transactions go through [`CacheCore::transaction`] instead.
const REFUSED: &[&str] = &["select", "multi", "exec", "discard", "watch", "unwatch", "reset", "quit", "hello"];

/// Settings of a cache, mapped from `createCache({ maxKeys, maxMemory, eviction, channel })`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheOptions {
    /// Key cap; 0 means none.
    pub max_keys: usize,
    /// Memory cap in bytes (the engine's accounting); 0 means none.
    pub max_memory: usize,
    /// What to evict at a cap. `None`: `allkeys-lru` — a browser cache should make room
    /// rather than refuse writes (Redis's default, `noeviction`, is available by name).
    pub eviction: Option<Policy>,
    /// BroadcastChannel name for sharing between tabs (accepted; see the README for what
    /// cross-tab sharing does today).
    pub channel: Option<String>,
}

impl CacheOptions {
    /// Parses a `maxmemory`-style size: a number of bytes or `10kb`/`10mb`/`1gb` (also
    /// `k`/`m`/`g`, powers of 1000 as in redis.conf).
    pub fn parse_size(text: &str) -> Result<usize, CacheError> {
        recached_engine::util::parse_memory(text)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| CacheError::Option(format!("maxMemory: '{text}' is not a size")))
    }

    /// Parses an eviction policy name (`allkeys-lru`, `volatile-ttl`, `noeviction`, …).
    pub fn parse_policy(name: &str) -> Result<Policy, CacheError> {
        Policy::parse(name).ok_or_else(|| CacheError::Option(format!("eviction: unknown policy '{name}'")))
    }
}

/// Errors of the cache layer (command errors are replies, not these).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A bad option to `createCache`.
    #[error("invalid option: {0}")]
    Option(String),
}

/// What a cache is doing, for the UI (`cache.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// No hub connection: a local cache (the state with no server at all).
    Offline,
    /// Opening a connection to a hub.
    Connecting,
    /// Connected, catching up with the hub.
    Resyncing,
    /// Caught up with the hub; changes arrive as they commit.
    Live,
    /// `close()` was called; every command now answers an error.
    Closed,
}

impl Status {
    /// The name JS sees: `offline`, `connecting`, `resyncing`, `live`, `closed`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Offline => "offline",
            Status::Connecting => "connecting",
            Status::Resyncing => "resyncing",
            Status::Live => "live",
            Status::Closed => "closed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One thing that happened to a key of database 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The key; `None` when every key may have changed (`FLUSHDB`, `FLUSHALL`, `SWAPDB`).
    pub key: Option<Bytes>,
    /// Redis's keyspace event name (`set`, `del`, `expired`, `evicted`, `hset`, `lpush`,
    /// …), `flushdb`/`flushall`/`swapdb` for whole-database changes, or `changed` when the
    /// engine named no event for a change.
    pub event: &'static str,
}

/// A key listener: called with each notice for a key it watches.
pub type KeyListener = Rc<dyn Fn(&Notice)>;

/// A status listener.
pub type StatusListener = Rc<dyn Fn(Status)>;

/// The keyspace events the cache asks of its engine: everything that says a key changed
/// (not `new`, which doubles another event, nor `miss`, which is a read).
fn event_mask() -> u32 {
    [
        EventClass::Generic,
        EventClass::String,
        EventClass::List,
        EventClass::Set,
        EventClass::Hash,
        EventClass::ZSet,
        EventClass::Expired,
        EventClass::Evicted,
    ]
    .iter()
    .fold(0, |m, c| m | c.bit())
}

/// Where the keys live: a local engine, or the sync client's mirror of a hub.
// One per cache, so the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Local { engine: Engine, session: Session },
    Synced(Box<SyncClient>),
}

/// How a write ended, for its promise.
#[derive(Debug, Clone, PartialEq)]
pub enum Settled {
    /// The local engine's reply (no hub): final at once.
    Local(Reply),
    /// The hub's reply in its ack.
    Hub(Frame),
    /// The hub refused the write (it was rolled back) or the cache closed first.
    Refused(String),
}

/// What `submit` produced: a final reply, or a write waiting for the hub's ack.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// Settled now (reads, local writes, local refusals).
    Done(Reply),
    /// Applied optimistically; settles when the hub acks or refuses write `seq`.
    Pending { seq: u64, optimistic: Reply },
}

/// Options of `connect`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Hub WebSocket URLs, tried in turn (failover).
    pub urls: Vec<String>,
    /// The token presented at HELLO (any text on an open hub).
    pub token: String,
    /// Key patterns to mirror (default `*`).
    pub patterns: Vec<String>,
}

/// The cache: engine + listeners + pending notices.
pub struct CacheCore {
    backend: Backend,
    config: Config,
    listeners: Registry<KeyListener>,
    status_listeners: Registry<StatusListener>,
    status: Status,
    notices: Vec<Notice>,
    status_changed: bool,
    /// Writes the hub settled, for the host to settle their promises.
    settled: Vec<(u64, Settled)>,
    /// Problems the host should report (refused token or subscription).
    problems: Vec<String>,
    /// Keys of the notices since the last [`CacheCore::take_tap`], while tapping (a leader
    /// tab sends their new values to the other tabs).
    tap: Option<Tapped>,
    /// Keys of every notice (tabs' changes included) since the last
    /// [`CacheCore::take_dirty`], while a host keeps a read memo.
    dirty: Option<Tapped>,
    /// Hub − local clock, in ms, for the local backend's deadlines: a follower tab holds
    /// the leader's keys, whose deadlines are hub time, so it runs them on the leader's
    /// offset (docs/protocol.md §13.2). 0 for a cache of its own.
    clock_offset: i64,
}

/// The keys that changed since the last [`CacheCore::take_tap`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tapped {
    /// Every key may have changed (a reset, `FLUSHDB`, `FLUSHALL`, `SWAPDB`).
    pub whole: bool,
    /// The keys that changed, in notice order, deduplicated.
    pub keys: Vec<Bytes>,
    seen: HashSet<Bytes>,
}

impl Tapped {
    fn record(&mut self, key: &Option<Bytes>) {
        match key {
            None => {
                self.whole = true;
                self.keys.clear();
                self.seen.clear();
            }
            Some(k) if !self.whole && self.seen.insert(k.clone()) => self.keys.push(k.clone()),
            Some(_) => {}
        }
    }
}

impl fmt::Debug for CacheCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheCore")
            .field("keys", &self.engine().key_count())
            .field("listeners", &self.listeners.len())
            .field("status", &self.status)
            .finish()
    }
}

impl CacheCore {
    /// An empty local cache.
    pub fn new(options: &CacheOptions) -> CacheCore {
        let config = Config {
            maxkeys: options.max_keys,
            maxmemory: options.max_memory,
            policy: options.eviction.unwrap_or(Policy::AllKeysLru),
            keyspace_events: event_mask(),
            ..Config::default()
        };
        CacheCore {
            backend: Backend::Local { engine: Engine::new(config.clone()), session: Session::new(1) },
            config,
            listeners: Registry::default(),
            status_listeners: Registry::default(),
            status: Status::Offline,
            notices: Vec::new(),
            status_changed: false,
            settled: Vec::new(),
            problems: Vec::new(),
            tap: None,
            dirty: None,
            clock_offset: 0,
        }
    }

    /// The engine holding the visible keys (for inspection: key count, memory, stats).
    pub fn engine(&self) -> &Engine {
        match &self.backend {
            Backend::Local { engine, .. } => engine,
            Backend::Synced(client) => client.visible(),
        }
    }

    /// Whether the cache mirrors a hub.
    pub fn is_synced(&self) -> bool {
        matches!(self.backend, Backend::Synced(_))
    }

    /// The status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.status == Status::Closed
    }

    /// Runs any command now and returns its reply: reads answer from memory, writes apply
    /// at once (with a hub, this is the optimistic reply). The notices it produced wait in
    /// [`CacheCore::take_dispatch`].
    pub fn execute(&mut self, args: &[Bytes], now_ms: u64) -> Reply {
        match self.submit(args, now_ms) {
            Submitted::Done(r) | Submitted::Pending { optimistic: r, .. } => r,
        }
    }

    /// Runs any command now; a write to a hub-backed cache stays pending until its ack.
    pub fn submit(&mut self, args: &[Bytes], now_ms: u64) -> Submitted {
        self.submit_as(args, None, now_ms)
    }

    /// [`CacheCore::submit`] for a write made for another writer (a follower tab's write
    /// run by the leader): a hub-backed cache sends it as `SYNC.W AS`, so the hub runs it
    /// once whoever resends it (`recached_engine::sync::Origin`). A local cache ignores
    /// the origin.
    pub fn submit_as(&mut self, args: &[Bytes], origin: Option<Origin>, now_ms: u64) -> Submitted {
        if self.is_closed() {
            return Submitted::Done(Reply::err(CLOSED));
        }
        if let Some(name) = args.first() {
            // No allocation on this path: every JS read comes through here.
            if REFUSED.iter().any(|r| name.eq_ignore_ascii_case(r.as_bytes())) {
                let lower = String::from_utf8_lossy(name).to_ascii_lowercase();
                return Submitted::Done(Reply::err(format!(
                    "ERR '{lower}' is not available in the browser cache (one session on database 0; use cache.multi for transactions)"
                )));
            }
        }
        let local = shift(now_ms, self.clock_offset);
        let out = match &mut self.backend {
            Backend::Local { engine, session } => {
                Submitted::Done(engine.execute(session, args, local, &mut recached_engine::NoHost).into_reply())
            }
            Backend::Synced(client) => pending_or_done(client.execute_as(args, origin, now_ms)),
        };
        self.collect();
        out
    }

    /// Runs commands as one transaction (MULTI … EXEC): the reply is EXEC's.
    pub fn transaction(&mut self, commands: &[Vec<Bytes>], now_ms: u64) -> Submitted {
        self.transaction_as(commands, None, now_ms)
    }

    /// [`CacheCore::transaction`] made for another writer (see [`CacheCore::submit_as`]).
    pub fn transaction_as(&mut self, commands: &[Vec<Bytes>], origin: Option<Origin>, now_ms: u64) -> Submitted {
        if self.is_closed() {
            return Submitted::Done(Reply::err(CLOSED));
        }
        for args in commands {
            let name = args.first().map(|n| String::from_utf8_lossy(n).to_ascii_lowercase()).unwrap_or_default();
            if REFUSED.contains(&name.as_str()) {
                return Submitted::Done(Reply::err(format!("ERR '{name}' is not allowed inside cache.multi")));
            }
        }
        let local = shift(now_ms, self.clock_offset);
        let out = match &mut self.backend {
            Backend::Local { engine, session } => {
                let mut host = recached_engine::NoHost;
                engine.execute(session, &[Bytes::from_static(b"MULTI")], local, &mut host);
                for args in commands {
                    engine.execute(session, args, local, &mut host);
                }
                Submitted::Done(engine.execute(session, &[Bytes::from_static(b"EXEC")], local, &mut host).into_reply())
            }
            Backend::Synced(client) => pending_or_done(client.transaction_as(commands, origin, now_ms)),
        };
        self.collect();
        out
    }

    // ---- hub sync (the host owns the socket and calls these) ----

    /// Becomes a mirror of a hub: the local keys are dropped (listeners hear one `reset`),
    /// reads and writes go through the sync client from now on. The host opens the socket
    /// and reports it with [`CacheCore::on_open`].
    pub fn connect(&mut self, options: &ConnectOptions, client_id: String) {
        if self.is_closed() {
            return;
        }
        let patterns = if options.patterns.is_empty() { vec!["*".to_string()] } else { options.patterns.clone() };
        // The sync client drains changes but not events: keep its engines from queueing any.
        let engine = Config { keyspace_events: 0, ..self.config.clone() };
        let client = SyncClient::new(ClientConfig {
            client_id,
            token: options.token.clone(),
            patterns: patterns.into_iter().map(Bytes::from).collect(),
            engine,
        });
        let had_keys = self.engine().key_count() > 0;
        self.backend = Backend::Synced(Box::new(client));
        if had_keys {
            self.push_notice(Notice { key: None, event: "reset" });
        }
    }

    /// The socket opened.
    pub fn on_open(&mut self, now_ms: u64) {
        if let Backend::Synced(client) = &mut self.backend {
            client.on_open(now_ms);
        }
        self.collect();
    }

    /// A binary message arrived. `Err`: the stream is broken — close the socket with 4000
    /// and reconnect.
    pub fn on_message(&mut self, data: &[u8], now_ms: u64) -> Result<(), String> {
        let result = match &mut self.backend {
            Backend::Synced(client) => client.on_message(data, now_ms).map_err(|e| e.to_string()),
            Backend::Local { .. } => Ok(()),
        };
        self.collect();
        result
    }

    /// The socket closed with `code`; says whether and how to reconnect.
    pub fn on_close(&mut self, code: u16, now_ms: u64) -> Reconnect {
        let r = match &mut self.backend {
            Backend::Synced(client) => client.on_close(code, now_ms),
            Backend::Local { .. } => Reconnect::Stop,
        };
        self.collect();
        r
    }

    /// The next message to send to the hub, if any.
    pub fn take_outgoing(&mut self) -> Option<Vec<u8>> {
        match &mut self.backend {
            Backend::Synced(client) => client.take_outgoing(),
            Backend::Local { .. } => None,
        }
    }

    /// Writes the hub settled since the last call.
    pub fn take_settled(&mut self) -> Vec<(u64, Settled)> {
        std::mem::take(&mut self.settled)
    }

    /// Problems to report (a refused token or subscription).
    pub fn take_problems(&mut self) -> Vec<String> {
        std::mem::take(&mut self.problems)
    }

    /// Expires due keys (at most [`SWEEP_BUDGET`]) and returns when to call again: the next
    /// deadline, or `now_ms` itself when due keys are left over.
    pub fn tick(&mut self, now_ms: u64) -> Option<u64> {
        if self.is_closed() {
            return None;
        }
        let offset = self.clock_offset;
        let next = match &mut self.backend {
            Backend::Local { engine, .. } => engine.sweep(shift(now_ms, offset), SWEEP_BUDGET).map(|d| shift(d, offset.saturating_neg())),
            Backend::Synced(client) => client.tick(now_ms),
        };
        self.collect();
        next.map(|at| at.max(now_ms))
    }

    /// The earliest key deadline, for the host's timer.
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.backend {
            _ if self.is_closed() => None,
            Backend::Local { engine, .. } => engine.next_deadline().map(|d| shift(d, self.clock_offset.saturating_neg())),
            Backend::Synced(client) => client.next_deadline(),
        }
    }

    /// Turns the engine's events and changes into notices for database 0.
    ///
    /// Events carry Redis's names; a change with no event for its key (none is expected,
    /// but a missing `notify` must not hide a change from a signal) becomes `changed`, and a
    /// whole-database change becomes one notice with no key.
    fn collect(&mut self) {
        let engine = match &mut self.backend {
            Backend::Local { engine, .. } => engine,
            Backend::Synced(_) => return self.collect_sync(),
        };
        let events = engine.take_events();
        let groups = engine.take_changes();
        if events.is_empty() && groups.is_empty() {
            return;
        }
        let mut named: HashSet<Bytes> = HashSet::new();
        for e in events {
            if e.db == 0 {
                named.insert(e.key.clone());
                self.push_notice(Notice { key: Some(e.key), event: e.event });
            }
        }
        for change in groups.iter().flat_map(|g| g.changes.iter()) {
            let whole = match change.name() {
                b"FLUSHALL" => Some("flushall"),
                b"FLUSHDB" if change.db == 0 => Some("flushdb"),
                b"SWAPDB" if change.args[1..].iter().any(|a| &a[..] == b"0") => Some("swapdb"),
                _ => None,
            };
            if let Some(event) = whole {
                self.push_notice(Notice { key: None, event });
            } else if let (0, Some(key)) = (change.db, change.key()) {
                if named.insert(key.clone()) {
                    self.push_notice(Notice { key: Some(key.clone()), event: "changed" });
                }
            }
        }
    }

    /// Drains the sync client's events: status, changed keys (`changed` notices: the
    /// client reports visible changes — hub changes, own writes, rollbacks, expiry — by
    /// key), settled writes and problems.
    fn collect_sync(&mut self) {
        let Backend::Synced(client) = &mut self.backend else { return };
        let mut status = None;
        let mut changed = Vec::new();
        while let Some(event) = client.poll_event() {
            match event {
                sync::Event::Status(s) => {
                    status = Some(match s {
                        sync::Status::Offline => Status::Offline,
                        sync::Status::Connecting => Status::Connecting,
                        sync::Status::Syncing => Status::Resyncing,
                        sync::Status::Live => Status::Live,
                    })
                }
                sync::Event::Changed(keys) => changed.extend(keys),
                sync::Event::Acked { seq, reply } => self.settled.push((seq, Settled::Hub(reply))),
                sync::Event::Rejected { seq, error } => self.settled.push((seq, Settled::Refused(error))),
                sync::Event::Reply { .. } => {}
                sync::Event::AuthFailed(e) => self.problems.push(format!("the hub refused the token: {e}")),
                sync::Event::SubscribeFailed(e) => self.problems.push(format!("the hub refused the patterns: {e}")),
            }
        }
        for k in changed {
            self.push_notice(Notice { key: Some(k), event: "changed" });
        }
        if let Some(s) = status {
            self.set_status(s);
        }
    }

    fn push_notice(&mut self, notice: Notice) {
        if let Some(tap) = self.tap.as_mut() {
            tap.record(&notice.key);
        }
        self.push_untapped(notice);
    }

    /// A notice that is not this tab's to tell the others (it came from them).
    fn push_untapped(&mut self, notice: Notice) {
        if let Some(dirty) = self.dirty.as_mut() {
            dirty.record(&notice.key);
        }
        self.notices.push(notice);
    }

    /// Starts (or stops) recording the keys of every notice for [`CacheCore::take_dirty`]
    /// (a host memoizing reads drops them from its memo).
    pub fn set_dirty_tracking(&mut self, on: bool) {
        self.dirty = on.then(Tapped::default);
    }

    /// The keys changed since the last call, if any.
    pub fn take_dirty(&mut self) -> Option<Tapped> {
        let dirty = self.dirty.as_mut()?;
        if !dirty.whole && dirty.keys.is_empty() {
            return None;
        }
        Some(std::mem::take(dirty))
    }

    /// Whether reads may skip the engine's access bookkeeping (a direct lookup, a memo):
    /// not when an LRU/LFU policy works against a cap, where every read must count.
    pub fn reads_are_free(&self) -> bool {
        let capped = self.config.maxkeys != 0 || self.config.maxmemory != 0;
        let by_access = matches!(self.config.policy, Policy::AllKeysLru | Policy::VolatileLru | Policy::AllKeysLfu | Policy::VolatileLfu);
        !(capped && by_access)
    }

    /// A string key's value for a hot read path, without the command machinery:
    /// `Some((value, has_ttl))` for a live string key; `None` for anything else (missing,
    /// expired, another type, closed), where the caller runs `GET` for Redis's exact
    /// behaviour (lazy expiry, `WRONGTYPE`). Leaves access bookkeeping alone: use it only
    /// when [`CacheCore::reads_are_free`].
    pub fn peek_string(&self, key: &[u8], now_ms: u64) -> Option<(Bytes, bool)> {
        if self.is_closed() {
            return None;
        }
        let now = match &self.backend {
            Backend::Synced(client) => client.hub_time(now_ms),
            Backend::Local { .. } => shift(now_ms, self.clock_offset),
        };
        let entry = self.engine().db(0)?.get(key)?;
        if entry.is_expired(now) {
            return None;
        }
        Some((entry.value.as_bytes()?, entry.expire_at != 0))
    }

    // ---- cross-tab (the host owns the channel and calls these) ----

    /// Starts (or stops) recording the keys of every notice, for [`CacheCore::take_tap`].
    pub fn set_tap(&mut self, on: bool) {
        self.tap = on.then(Tapped::default);
    }

    /// The keys noticed since the last call (empty when not tapping).
    pub fn take_tap(&mut self) -> Tapped {
        match self.tap.as_mut() {
            Some(tap) => std::mem::take(tap),
            None => Tapped::default(),
        }
    }

    /// The changes that rebuild `keys` as they are now on any engine (`DEL`, then the value
    /// and its deadline; a missing key is just `DEL`).
    pub fn restore_changes(&self, keys: &[Bytes]) -> Vec<Change> {
        let Some(db) = self.engine().db(0) else { return Vec::new() };
        keys.iter().flat_map(|k| recached_engine::command::restore_changes(db, 0, k)).collect()
    }

    /// Database 0 in the engine's snapshot format (what a new tab loads).
    pub fn snapshot(&self) -> Vec<u8> {
        snapshot::encode_filtered(self.engine(), &SnapshotMeta::default(), |db, _| db == 0)
    }

    /// Replaces the keys with a snapshot from another tab (a local cache only: a hub
    /// mirror takes its state from the hub), except the keys for which `keep` is true (this
    /// tab's own writes in flight), which stay as they are. Listeners hear one
    /// `(null, "reset")`.
    pub fn load_snapshot(&mut self, bytes: &[u8], keep: impl Fn(&[u8]) -> bool) -> Result<(), String> {
        let Backend::Local { engine, .. } = &mut self.backend else { return Err("a hub mirror loads no tab snapshot".into()) };
        if self.status == Status::Closed {
            return Ok(());
        }
        let (mut dbs, _) = snapshot::decode(bytes).map_err(|e| e.to_string())?;
        dbs.truncate(1);
        if dbs.is_empty() {
            dbs.push(Default::default());
        }
        if let Some(old) = engine.db(0) {
            let gone: Vec<Bytes> =
                dbs[0].iter().filter(|(k, _)| keep(k) && old.get(k).is_none()).map(|(k, _)| Bytes::copy_from_slice(k)).collect();
            for k in gone {
                dbs[0].remove(&k);
            }
            for (k, e) in old.iter().filter(|(k, _)| keep(k)) {
                dbs[0].insert(k, e.clone());
            }
        }
        engine.load_dbs(dbs);
        engine.take_events();
        engine.take_changes();
        self.push_untapped(Notice { key: None, event: "reset" });
        Ok(())
    }

    /// Applies changes another tab made (a local cache only), leaving out keys for which
    /// `skip` is true (this tab's own writes in flight). Listeners hear `changed` per key.
    pub fn apply_remote(&mut self, changes: &[Change], skip: impl Fn(&[u8]) -> bool, now_ms: u64) {
        let Backend::Local { engine, .. } = &mut self.backend else { return };
        if self.status == Status::Closed {
            return;
        }
        let changes: Vec<Change> = changes.iter().filter(|c| c.key().is_none_or(|k| !skip(k))).cloned().collect();
        if changes.is_empty() {
            return;
        }
        let group = ChangeGroup { offset: engine.offset() + 1, changes };
        // An error (a change this engine refuses) leaves that key as it was; the next
        // snapshot from the leader repairs it.
        let _ = engine.apply_group(&group, shift(now_ms, self.clock_offset));
        engine.take_events();
        engine.take_changes();
        let mut seen: HashSet<&Bytes> = HashSet::new();
        let mut notices = Vec::new();
        for c in &group.changes {
            match c.key() {
                Some(k) if seen.insert(k) => notices.push(Notice { key: Some(k.clone()), event: "changed" }),
                Some(_) => {}
                None => notices.push(Notice { key: None, event: "reset" }),
            }
        }
        for n in notices {
            self.push_untapped(n);
        }
    }

    /// Counts reads a host answered without asking (memo hits under LRU/LFU), handed over
    /// in a batch: each live key gets the access `GET` would have given it, at `now_ms`.
    /// Keys gone since are skipped (their notice already dropped them from the memo).
    pub fn note_reads<K: AsRef<[u8]>>(&mut self, keys: impl IntoIterator<Item = K>, now_ms: u64) {
        if let Backend::Local { engine, .. } = &mut self.backend {
            let now = shift(now_ms, self.clock_offset);
            for key in keys {
                engine.note_read(0, key.as_ref(), now);
            }
        }
    }

    /// [`CacheCore::peek_string`] that also counts the read (the hit statistic and the
    /// LRU/LFU access word) as `GET` would: for caches whose eviction depends on reads.
    pub fn read_string(&mut self, key: &[u8], now_ms: u64) -> Option<(Bytes, bool)> {
        let found = self.peek_string(key, now_ms)?;
        self.note_reads([key], now_ms);
        Some(found)
    }

    /// The clock offset (hub − local, ms) this cache's deadlines run on: the one the sync
    /// client measured when it mirrors a hub, else the one [`CacheCore::set_clock_offset`]
    /// set (0 unless a leader tab told it). A leader tab tells its followers this.
    pub fn clock_offset(&self) -> i64 {
        match &self.backend {
            Backend::Synced(client) => client.clock_offset_ms(),
            Backend::Local { .. } => self.clock_offset,
        }
    }

    /// Runs a local cache's deadlines on hub time = local time + `ms`: a follower tab takes
    /// its leader's offset, so its keys expire (in reads and through its timer) on the
    /// hub's deadline even when the hub's clock is off from this machine's.
    pub fn set_clock_offset(&mut self, ms: i64) {
        self.clock_offset = ms;
    }

    /// A follower tab mirrors the leader's keys, so it must not evict on its own: the caps
    /// are lifted while `on`, and restored when it leads.
    pub fn set_mirror(&mut self, on: bool) {
        if let Backend::Local { engine, .. } = &mut self.backend {
            let cfg = engine.config_mut();
            cfg.maxkeys = if on { 0 } else { self.config.maxkeys };
            cfg.maxmemory = if on { 0 } else { self.config.maxmemory };
        }
    }

    /// Whether running the command `args` may change a key (reads stay in the tab; an
    /// unknown command counts as a write, so the leader answers it).
    pub fn is_write(args: &[Bytes]) -> bool {
        args.first().and_then(|n| recached_engine::command::lookup(n)).is_none_or(|s| s.is_write())
    }

    /// Whether notices, a status change, settled writes or problems wait to be delivered.
    pub fn has_dispatch(&self) -> bool {
        !self.notices.is_empty() || self.status_changed || !self.settled.is_empty() || !self.problems.is_empty()
    }

    /// Takes the pending notices with the listeners each concerns, in order. The host
    /// calls them after releasing its borrow, skipping any [`CacheCore::is_listening`] says
    /// was removed meanwhile.
    pub fn take_dispatch(&mut self) -> Vec<(ListenerId, KeyListener, Notice)> {
        let mut out = Vec::new();
        let mut found = Vec::new();
        for notice in std::mem::take(&mut self.notices) {
            found.clear();
            match &notice.key {
                Some(key) => self.listeners.matching_ids(key, &mut found),
                None => self.listeners.every_id(&mut found),
            }
            for (id, l) in found.drain(..) {
                out.push((id, l, notice.clone()));
            }
        }
        out
    }

    /// Takes the status to announce, if it changed, with the status listeners.
    pub fn take_status_dispatch(&mut self) -> Option<(Status, Vec<(ListenerId, StatusListener)>)> {
        if !std::mem::take(&mut self.status_changed) {
            return None;
        }
        let mut all = Vec::new();
        self.status_listeners.every_id(&mut all);
        Some((self.status, all))
    }

    /// Registers a key listener for a glob pattern (or one exact key).
    pub fn on(&mut self, pattern: &[u8], listener: KeyListener) -> Option<ListenerId> {
        if self.is_closed() {
            return None;
        }
        Some(self.listeners.add(pattern, listener))
    }

    /// Removes a key listener; returns it so the caller drops it outside its borrow.
    pub fn off(&mut self, id: ListenerId) -> Option<KeyListener> {
        self.listeners.remove(id)
    }

    /// Whether a key listener is still registered.
    pub fn is_listening(&self, id: ListenerId) -> bool {
        self.listeners.contains(id)
    }

    /// Number of key listeners.
    pub fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    /// Registers a status listener.
    pub fn on_status(&mut self, listener: StatusListener) -> Option<ListenerId> {
        if self.is_closed() {
            return None;
        }
        Some(self.status_listeners.add(b"status", listener))
    }

    /// Removes a status listener.
    pub fn off_status(&mut self, id: ListenerId) -> Option<StatusListener> {
        self.status_listeners.remove(id)
    }

    /// Whether a status listener is still registered.
    pub fn is_status_listening(&self, id: ListenerId) -> bool {
        self.status_listeners.contains(id)
    }

    /// Sets the status (the sync client drives this); listeners hear of it at dispatch.
    pub fn set_status(&mut self, status: Status) {
        if self.status != status && !self.is_closed() {
            self.status = status;
            self.status_changed = true;
        }
    }

    /// Closes the cache: frees the data, drops pending notices and returns every listener
    /// so the host drops them (and the JS functions they hold) outside its borrow. The
    /// status listeners are returned after hearing `closed` from the host.
    pub fn close(&mut self) -> (Vec<KeyListener>, Vec<StatusListener>) {
        if self.is_closed() {
            return (Vec::new(), Vec::new());
        }
        self.status = Status::Closed;
        self.status_changed = false;
        self.notices.clear();
        self.settled.clear();
        self.backend = Backend::Local { engine: Engine::new(self.config.clone()), session: Session::new(1) };
        (self.listeners.clear(), self.status_listeners.clear())
    }

    // Typed reads for Rust callers (Leptos hooks): errors such as WRONGTYPE read as absent.

    /// `GET key`: the value of a string key.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<Bytes> {
        match self.execute(&[Bytes::from_static(b"GET"), Bytes::copy_from_slice(key)], now_ms) {
            Reply::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// `EXISTS key` for one key.
    pub fn exists(&mut self, key: &[u8], now_ms: u64) -> bool {
        matches!(self.execute(&[Bytes::from_static(b"EXISTS"), Bytes::copy_from_slice(key)], now_ms), Reply::Int(1))
    }

    /// `HGETALL key` as field/value pairs in the hash's order.
    pub fn hgetall(&mut self, key: &[u8], now_ms: u64) -> Vec<(Bytes, Bytes)> {
        match self.execute(&[Bytes::from_static(b"HGETALL"), Bytes::copy_from_slice(key)], now_ms) {
            Reply::Map(pairs) => pairs
                .into_iter()
                .filter_map(|(f, v)| match (f, v) {
                    (Reply::Bulk(f), Reply::Bulk(v)) => Some((f, v)),
                    _ => None,
                })
                .collect(),
            Reply::Array(items) => items
                .chunks_exact(2)
                .filter_map(|p| match (&p[0], &p[1]) {
                    (Reply::Bulk(f), Reply::Bulk(v)) => Some((f.clone(), v.clone())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `KEYS pattern`, sorted.
    pub fn keys(&mut self, pattern: &[u8], now_ms: u64) -> Vec<Bytes> {
        let mut keys: Vec<Bytes> = match self.execute(&[Bytes::from_static(b"KEYS"), Bytes::copy_from_slice(pattern)], now_ms) {
            Reply::Array(items) | Reply::Set(items) => items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(b) => Some(b),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        keys.sort();
        keys
    }
}

/// First reconnect delay; doubles per failed attempt up to [`MAX_BACKOFF_MS`].
const BASE_BACKOFF_MS: f64 = 250.0;
/// Longest reconnect delay.
const MAX_BACKOFF_MS: f64 = 10_000.0;
/// The delay before reconnect attempt `attempt` (0-based): exponential, capped, with
/// "equal jitter" (half fixed, half random) so a hub restart is not met by every tab at once.
pub fn backoff_ms(attempt: u32, random: f64) -> u32 {
    let cap = (BASE_BACKOFF_MS * 2f64.powi(attempt.min(16) as i32)).min(MAX_BACKOFF_MS);
    (cap / 2.0 + cap / 2.0 * random.clamp(0.0, 1.0)) as u32
}

/// `t` moved by `by` ms, clamped to the epoch.
fn shift(t: u64, by: i64) -> u64 {
    (t as i64).saturating_add(by).max(0) as u64
}

fn pending_or_done(s: sync::client::Submitted) -> Submitted {
    match s.seq {
        Some(seq) => Submitted::Pending { seq, optimistic: s.reply },
        None => Submitted::Done(s.reply),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const T0: u64 = 1_700_000_000_000;

    fn b(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    type Log = Rc<RefCell<Vec<(String, Option<String>, &'static str)>>>;

    fn listen(core: &mut CacheCore, pattern: &str, name: &str, log: &Log) -> ListenerId {
        let log = log.clone();
        let name = name.to_string();
        core.on(
            pattern.as_bytes(),
            Rc::new(move |n: &Notice| {
                let key = n.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned());
                log.borrow_mut().push((name.clone(), key, n.event));
            }),
        )
        .unwrap()
    }

    fn deliver(core: &mut CacheCore) {
        for (id, l, n) in core.take_dispatch() {
            if core.is_listening(id) {
                l(&n);
            }
        }
    }

    fn entry(name: &str, key: Option<&str>, event: &'static str) -> (String, Option<String>, &'static str) {
        (name.to_string(), key.map(str::to_string), event)
    }

    #[test]
    fn reads_and_writes_apply_at_once() {
        let mut c = CacheCore::new(&CacheOptions::default());
        assert_eq!(c.execute(&b(&["SET", "k", "v"]), T0), Reply::Ok);
        assert_eq!(c.get(b"k", T0), Some(Bytes::from_static(b"v")));
        assert!(c.exists(b"k", T0));
        c.execute(&b(&["HSET", "h", "f", "1", "g", "2"]), T0);
        assert_eq!(
            c.hgetall(b"h", T0),
            vec![(Bytes::from_static(b"f"), Bytes::from_static(b"1")), (Bytes::from_static(b"g"), Bytes::from_static(b"2"))]
        );
        assert_eq!(c.keys(b"*", T0), vec![Bytes::from_static(b"h"), Bytes::from_static(b"k")]);
        assert!(c.execute(&b(&["INCR", "h"]), T0).is_error());
        assert_eq!(c.get(b"h", T0), None, "WRONGTYPE reads as absent");
    }

    #[test]
    fn session_commands_are_refused() {
        let mut c = CacheCore::new(&CacheOptions::default());
        for cmd in ["SELECT", "multi", "EXEC", "WATCH"] {
            let r = c.execute(&b(&[cmd, "1"]), T0);
            assert!(r.is_error(), "{cmd}: {r:?}");
        }
        c.execute(&b(&["SET", "k", "v"]), T0);
        assert_eq!(c.get(b"k", T0).as_deref(), Some(&b"v"[..]), "still on database 0");
    }

    #[test]
    fn transaction_runs_atomically() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let log: Log = Rc::default();
        listen(&mut c, "*", "all", &log);
        let r = c.transaction(&[b(&["SET", "a", "1"]), b(&["INCR", "a"]), b(&["LPUSH", "l", "x"])], T0);
        assert_eq!(r, Submitted::Done(Reply::Array(vec![Reply::Ok, Reply::Int(2), Reply::Int(1)])));
        deliver(&mut c);
        assert_eq!(
            *log.borrow(),
            [entry("all", Some("a"), "set"), entry("all", Some("a"), "incrby"), entry("all", Some("l"), "lpush")]
        );
        assert!(matches!(c.transaction(&[b(&["SELECT", "1"])], T0), Submitted::Done(r) if r.is_error()));
        assert_eq!(c.execute(&b(&["GET", "a"]), T0), Reply::bulk("2"), "no MULTI left open");
    }

    #[test]
    fn notices_reach_exact_and_glob_listeners() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let log: Log = Rc::default();
        let one = listen(&mut c, "user:1", "one", &log);
        listen(&mut c, "user:*", "users", &log);
        c.execute(&b(&["SET", "user:1", "ann"]), T0);
        c.execute(&b(&["SET", "other", "x"]), T0);
        c.execute(&b(&["HSET", "user:2", "n", "bob"]), T0);
        deliver(&mut c);
        assert_eq!(
            *log.borrow(),
            [entry("one", Some("user:1"), "set"), entry("users", Some("user:1"), "set"), entry("users", Some("user:2"), "hset")]
        );
        log.borrow_mut().clear();
        // A no-op write emits nothing; a read emits nothing.
        c.execute(&b(&["DEL", "nope"]), T0);
        c.execute(&b(&["GET", "user:1"]), T0);
        deliver(&mut c);
        assert!(log.borrow().is_empty());
        // Removed listeners are not called, even for notices already taken.
        c.execute(&b(&["DEL", "user:1"]), T0);
        let pending = c.take_dispatch();
        assert!(c.off(one).is_some());
        for (id, l, n) in pending {
            if c.is_listening(id) {
                l(&n);
            }
        }
        assert_eq!(*log.borrow(), [entry("users", Some("user:1"), "del")]);
    }

    #[test]
    fn flush_concerns_every_listener() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let log: Log = Rc::default();
        listen(&mut c, "a", "a", &log);
        listen(&mut c, "b*", "b", &log);
        c.execute(&b(&["SET", "a", "1"]), T0);
        deliver(&mut c);
        log.borrow_mut().clear();
        c.execute(&b(&["FLUSHALL"]), T0);
        deliver(&mut c);
        assert_eq!(*log.borrow(), [entry("a", None, "flushall"), entry("b", None, "flushall")]);
    }

    #[test]
    fn ttl_expires_through_tick() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let log: Log = Rc::default();
        listen(&mut c, "*", "all", &log);
        c.execute(&b(&["SET", "s", "v", "PX", "100"]), T0);
        c.execute(&b(&["SET", "t", "v", "EX", "10"]), T0);
        assert_eq!(c.next_deadline(), Some(T0 + 100));
        deliver(&mut c);
        log.borrow_mut().clear();
        assert_eq!(c.tick(T0 + 99), Some(T0 + 100));
        assert_eq!(c.tick(T0 + 100), Some(T0 + 10_000));
        deliver(&mut c);
        assert_eq!(*log.borrow(), [entry("all", Some("s"), "expired")]);
        assert_eq!(c.execute(&b(&["PTTL", "t"]), T0 + 100), Reply::Int(9_900));
        assert_eq!(c.tick(T0 + 10_000), None);
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn tick_budget_leaves_the_rest_for_now() {
        let mut c = CacheCore::new(&CacheOptions::default());
        for i in 0..SWEEP_BUDGET + 5 {
            c.execute(&b(&["SET", &format!("k{i}"), "v", "PX", "10"]), T0);
        }
        assert_eq!(c.tick(T0 + 50), Some(T0 + 50), "due keys left: call again at once");
        assert_eq!(c.tick(T0 + 50), None);
        assert_eq!(c.engine().key_count(), 0);
    }

    #[test]
    fn eviction_by_key_cap_notifies_evicted() {
        let mut c = CacheCore::new(&CacheOptions { max_keys: 3, ..Default::default() });
        let log: Log = Rc::default();
        listen(&mut c, "*", "all", &log);
        for i in 0..10 {
            assert_eq!(c.execute(&b(&["SET", &format!("k{i}"), "v"]), T0 + i * 1000), Reply::Ok);
        }
        assert!(c.engine().key_count() <= 3);
        deliver(&mut c);
        let evicted = log.borrow().iter().filter(|e| e.2 == "evicted").count();
        assert_eq!(evicted as u64, 10 - c.engine().key_count() as u64);
        assert_eq!(c.engine().stats().evicted_keys, evicted as u64);
    }

    #[test]
    fn noeviction_refuses_with_oom() {
        let opts = CacheOptions { max_keys: 2, eviction: Some(Policy::NoEviction), ..Default::default() };
        let mut c = CacheCore::new(&opts);
        c.execute(&b(&["SET", "a", "1"]), T0);
        c.execute(&b(&["SET", "b", "1"]), T0);
        let r = c.execute(&b(&["SET", "c", "1"]), T0);
        assert_eq!(r, Reply::err("OOM command not allowed when used memory > 'maxmemory'."));
    }

    #[test]
    fn memory_cap_evicts() {
        let opts = CacheOptions { max_memory: 64 * 1024, ..Default::default() };
        let mut c = CacheCore::new(&opts);
        let value = "x".repeat(1000);
        for i in 0..500 {
            assert_eq!(c.execute(&b(&["SET", &format!("k{i}"), &value]), T0), Reply::Ok);
        }
        assert!(c.engine().used_memory() <= 64 * 1024 + 2000, "used {}", c.engine().used_memory());
        assert!(c.engine().key_count() < 500);
    }

    #[test]
    fn status_changes_are_announced_once() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let seen = Rc::new(RefCell::new(Vec::new()));
        let s = seen.clone();
        c.on_status(Rc::new(move |st| s.borrow_mut().push(st))).unwrap();
        assert_eq!(c.status(), Status::Offline);
        c.set_status(Status::Offline);
        assert!(c.take_status_dispatch().is_none());
        c.set_status(Status::Connecting);
        let (st, ls) = c.take_status_dispatch().unwrap();
        for (_, l) in ls {
            l(st);
        }
        assert_eq!(*seen.borrow(), [Status::Connecting]);
        assert_eq!(Status::Resyncing.to_string(), "resyncing");
    }

    #[test]
    fn close_releases_everything() {
        let mut c = CacheCore::new(&CacheOptions::default());
        let log: Log = Rc::default();
        listen(&mut c, "*", "all", &log);
        listen(&mut c, "k", "k", &log);
        c.on_status(Rc::new(|_| {})).unwrap();
        c.execute(&b(&["SET", "k", "v", "EX", "5"]), T0);
        let (keys, statuses) = c.close();
        assert_eq!((keys.len(), statuses.len()), (2, 1));
        assert_eq!(c.listener_count(), 0);
        assert!(c.take_dispatch().is_empty(), "pending notices dropped");
        assert_eq!(c.execute(&b(&["GET", "k"]), T0), Reply::err(CLOSED));
        assert_eq!(c.engine().key_count(), 0);
        assert_eq!(c.next_deadline(), None);
        assert!(c.on(b"*", Rc::new(|_| {})).is_none());
        assert_eq!(c.close().0.len(), 0, "closing twice is harmless");
    }

    #[test]
    fn a_follower_mirrors_the_leaders_keys() {
        // The leader taps its notices and sends the keys' restores; the follower applies
        // them, keeping its own in-flight keys, and loads snapshots.
        let mut leader = CacheCore::new(&CacheOptions::default());
        let mut follower = CacheCore::new(&CacheOptions { max_keys: 1, ..Default::default() });
        follower.set_mirror(true);
        leader.set_tap(true);
        leader.execute(&b(&["SET", "a", "1", "PX", "5000"]), T0);
        leader.execute(&b(&["RPUSH", "l", "x", "y"]), T0);
        leader.execute(&b(&["HSET", "h", "f", "v"]), T0);
        let tapped = leader.take_tap();
        assert!(!tapped.whole);
        assert_eq!(tapped.keys, vec![Bytes::from("a"), Bytes::from("l"), Bytes::from("h")]);
        let log: Log = Rc::default();
        listen(&mut follower, "*", "f", &log);
        let changes = leader.restore_changes(&tapped.keys);
        let wire = crate::wire::decode_changes(&crate::wire::encode_changes(&changes)).unwrap();
        follower.apply_remote(&wire, |k| k == b"h", T0);
        deliver(&mut follower);
        assert_eq!(*log.borrow(), [entry("f", Some("a"), "changed"), entry("f", Some("l"), "changed")], "h is in flight");
        assert_eq!(follower.engine().key_count(), 2, "a mirror does not evict");
        assert_eq!(follower.execute(&b(&["PTTL", "a"]), T0), Reply::Int(5000));
        assert_eq!(follower.execute(&b(&["LRANGE", "l", "0", "-1"]), T0), Reply::Array(vec![Reply::bulk("x"), Reply::bulk("y")]));

        // A snapshot replaces everything but the in-flight keys.
        follower.execute(&b(&["SET", "mine", "1"]), T0);
        leader.execute(&b(&["DEL", "a"]), T0);
        assert!(leader.take_tap().keys.contains(&Bytes::from("a")));
        follower.load_snapshot(&leader.snapshot(), |k| k == b"mine").unwrap();
        assert_eq!(follower.keys(b"*", T0), vec![Bytes::from("h"), Bytes::from("l"), Bytes::from("mine")]);
        assert!(follower.load_snapshot(b"junk", |_| false).is_err());
        leader.execute(&b(&["FLUSHALL"]), T0);
        assert!(leader.take_tap().whole);
        leader.set_tap(false);
        leader.execute(&b(&["SET", "z", "1"]), T0);
        assert!(leader.take_tap().keys.is_empty());
        follower.set_dirty_tracking(true);
        follower.execute(&b(&["SET", "d", "1"]), T0);
        assert_eq!(follower.take_dirty().map(|d| d.keys), Some(vec![Bytes::from("d")]));
        assert_eq!(follower.take_dirty(), None);
        follower.apply_remote(&[Change { db: 0, args: b(&["SET", "e", "1"]) }], |_| false, T0);
        assert_eq!(follower.take_dirty().map(|d| d.keys), Some(vec![Bytes::from("e")]));
        assert_eq!(follower.peek_string(b"e", T0), Some((Bytes::from("1"), false)));
        follower.execute(&b(&["SET", "x", "1", "PX", "10"]), T0);
        assert_eq!(follower.peek_string(b"x", T0), Some((Bytes::from("1"), true)));
        assert_eq!(follower.peek_string(b"x", T0 + 10), None, "expired: the caller runs GET");
        assert_eq!(follower.peek_string(b"l", T0), None, "not a string");
        // read_string counts the read as GET does (hits, LRU access word); peek does not.
        let mut lru = CacheCore::new(&CacheOptions { max_keys: 10, eviction: Some(Policy::AllKeysLru), ..Default::default() });
        assert!(!lru.reads_are_free());
        lru.execute(&b(&["SET", "k", "v"]), T0);
        let hits = lru.engine().stats().keyspace_hits;
        lru.peek_string(b"k", T0 + 5000);
        assert_eq!(lru.engine().stats().keyspace_hits, hits);
        assert_eq!(lru.read_string(b"k", T0 + 5000), Some((Bytes::from("v"), false)));
        assert_eq!(lru.engine().stats().keyspace_hits, hits + 1);
        assert_eq!(lru.execute(&b(&["OBJECT", "IDLETIME", "k"]), T0 + 5000), Reply::Int(0), "the access was recorded");
        assert_eq!(lru.read_string(b"nope", T0), None);
        assert!(CacheCore::is_write(&b(&["SET", "k", "v"])) && CacheCore::is_write(&b(&["NOSUCH"])));
        assert!(!CacheCore::is_write(&b(&["GET", "k"])));
    }

    /// Issue 5: a follower tab expired the leader's keys by its own clock, so with the
    /// hub's clock off from the machine's a key lived too long or vanished at once there.
    /// Run on the leader's offset, the follower expires it on the hub's deadline: in reads,
    /// in `PTTL`, in its timer's deadline and in its sweep.
    #[test]
    fn a_follower_runs_the_leaders_keys_on_the_hub_clock() {
        const HOUR: i64 = 3_600_000;
        for skew in [HOUR, -HOUR, 1234, 0] {
            // The machine's clock is `skew` ahead of the hub's: the leader measured
            // offset = hub − local = −skew.
            let hub_deadline = T0 + 5_000;
            let local = |hub: u64| (hub as i64 + skew) as u64;
            let mut f = CacheCore::new(&CacheOptions::default());
            f.set_mirror(true);
            f.set_clock_offset(-skew);
            assert_eq!(f.clock_offset(), -skew);
            let log: Log = Rc::default();
            listen(&mut f, "*", "f", &log);
            let set = Change { db: 0, args: b(&["SET", "k", "v", "PXAT", &hub_deadline.to_string()]) };
            f.apply_remote(&[set], |_| false, local(T0));
            assert_eq!(f.get(b"k", local(T0)).as_deref(), Some(&b"v"[..]), "skew {skew}: gone at once");
            assert_eq!(f.execute(&b(&["PTTL", "k"]), local(T0)), Reply::Int(5_000), "skew {skew}");
            assert_eq!(f.next_deadline(), Some(local(hub_deadline)), "skew {skew}: the timer's local deadline");
            assert_eq!(f.peek_string(b"k", local(hub_deadline - 1)).map(|(v, _)| v), Some(Bytes::from("v")));
            assert_eq!(f.peek_string(b"k", local(hub_deadline)), None, "skew {skew}: still there at the deadline");
            // Its own writes get hub deadlines too (the leader's run matches them).
            f.execute(&b(&["SET", "mine", "v", "PX", "100"]), local(T0));
            assert_eq!(f.engine().db(0).unwrap().get(b"mine").unwrap().expire_at, T0 + 100, "skew {skew}");
            deliver(&mut f);
            log.borrow_mut().clear();
            assert_eq!(f.tick(local(hub_deadline - 1)), Some(local(hub_deadline)), "skew {skew}");
            assert_eq!(f.tick(local(hub_deadline)), None);
            deliver(&mut f);
            assert_eq!(*log.borrow(), [entry("f", Some("mine"), "expired"), entry("f", Some("k"), "expired")], "skew {skew}");
        }
        // A cache of its own runs on its own clock.
        assert_eq!(CacheCore::new(&CacheOptions::default()).clock_offset(), 0);
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff_ms(0, 0.0), 125);
        assert_eq!(backoff_ms(0, 1.0), 250);
        assert_eq!(backoff_ms(3, 0.0), 1000);
        assert_eq!(backoff_ms(30, 1.0), 10_000);
        assert_eq!(backoff_ms(30, 0.0), 5_000);
    }

    #[test]
    fn sizes_and_policies_parse() {
        assert_eq!(CacheOptions::parse_size("1024"), Ok(1024));
        assert_eq!(CacheOptions::parse_size("10mb"), Ok(10 << 20));
        assert_eq!(CacheOptions::parse_size("2k"), Ok(2000));
        assert_eq!(CacheOptions::parse_size(" 1GB "), Ok(1 << 30));
        assert!(CacheOptions::parse_size("lots").is_err());
        assert!(CacheOptions::parse_size("-1").is_err());
        assert_eq!(CacheOptions::parse_policy("volatile-ttl"), Ok(Policy::VolatileTtl));
        assert!(CacheOptions::parse_policy("lru").is_err());
    }
}
