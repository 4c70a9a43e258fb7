//! The hub's shared state: one [`Engine`] and everything around it (clients, pub/sub,
//! parked clients, settings), behind one mutex.
//!
//! Concurrency model: a connection takes the lock once per pipeline batch, runs every
//! complete command it has under it, then — still holding it — runs [`Core::after_batch`]:
//! committed change groups go to the change sinks (persistence, WebSocket fan-out),
//! keyspace events become notifications, and clients blocked on touched keys are served.
//! Everything a client can observe therefore happens in one total order, and MULTI/EXEC
//! (one `Engine::execute` call) is atomic with respect to every other client.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use recached_engine::resp::{encode, Protocol};
use recached_engine::{ChangeGroup, Engine, NoHost, Outcome, Reply};
use tokio::sync::{watch, Notify};

use crate::auth::AuthLimiter;
use crate::blocking::Blocked;
use crate::config::{BufferLimit, Settings};
use crate::persist::gate::Gate;
use crate::persist::{LoadState, Persist};
use crate::ws::SyncShared;
use crate::pubsub::{ClientId, PubSub};

/// Where committed change groups go: the AOF, the replication backlog, the WebSocket
/// fan-out. Called under the engine lock, in commit order, after every batch and every
/// expiry sweep, so a sink sees exactly the engine's stream.
pub trait ChangeSink: Send {
    /// New groups, oldest first. Must not block: hand the work to a task if it is slow.
    fn on_groups(&mut self, groups: &[ChangeGroup], engine: &Engine);
}

/// Unix time in milliseconds: the engine's clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Values read on hot paths without the lock, mirrored from [`Settings`] on every change.
#[derive(Debug, Default)]
pub struct Knobs {
    /// `maxclients`.
    pub maxclients: AtomicUsize,
    /// `timeout` in seconds.
    pub timeout_secs: AtomicU64,
    /// `client-query-buffer-limit`.
    pub qbuf_limit: AtomicU64,
    /// `proto-max-bulk-len`.
    pub max_bulk: AtomicU64,
    /// Whether `requirepass` is set (new connections start unauthenticated).
    pub needs_auth: AtomicBool,
    /// `repl-timeout` in seconds.
    pub repl_timeout_secs: AtomicU64,
    /// The replication link generation that may run (bumped by every REPLICAOF).
    pub repl_generation: AtomicU64,
}

impl Knobs {
    /// Copies the settings in.
    pub fn load(&self, s: &Settings) {
        self.maxclients.store(s.maxclients, Ordering::Relaxed);
        self.timeout_secs.store(s.timeout, Ordering::Relaxed);
        self.qbuf_limit.store(s.client_query_buffer_limit, Ordering::Relaxed);
        self.max_bulk.store(s.proto_max_bulk_len, Ordering::Relaxed);
        self.needs_auth.store(!s.requirepass.is_empty(), Ordering::Relaxed);
        self.repl_timeout_secs.store(s.repl_timeout, Ordering::Relaxed);
    }
}

/// A client's asynchronous output (pub/sub messages, keyspace notifications, kills),
/// shared between the hub and the client's connection task.
#[derive(Debug)]
pub struct ClientHandle {
    /// The client id.
    pub id: ClientId,
    out: Mutex<Outbox>,
    pending: AtomicUsize,
    killed: AtomicBool,
    /// Wakes the connection task: output to send, or killed.
    pub notify: Notify,
}

#[derive(Debug, Default)]
struct Outbox {
    buf: Vec<u8>,
    over_soft_since: Option<Instant>,
}

impl ClientHandle {
    /// A handle with an empty outbox.
    pub fn new(id: ClientId) -> ClientHandle {
        ClientHandle { id, out: Mutex::new(Outbox::default()), pending: AtomicUsize::new(0), killed: AtomicBool::new(false), notify: Notify::new() }
    }

    /// Queues bytes for the client. Past the limit the client is killed instead (as Redis's
    /// `client-output-buffer-limit`) and false is returned.
    pub fn push(&self, bytes: &[u8], limit: BufferLimit) -> bool {
        if self.is_killed() {
            return false;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let len = out.buf.len() + bytes.len();
        let mut over = limit.hard > 0 && len as u64 > limit.hard;
        if limit.soft > 0 && len as u64 > limit.soft {
            let now = Instant::now();
            let since = *out.over_soft_since.get_or_insert(now);
            if now.duration_since(since).as_secs() >= limit.soft_secs {
                over = true;
            }
        } else {
            out.over_soft_since = None;
        }
        if over {
            out.buf = Vec::new();
            self.pending.store(0, Ordering::Release);
            drop(out);
            self.kill();
            return false;
        }
        out.buf.extend_from_slice(bytes);
        self.pending.store(out.buf.len(), Ordering::Release);
        drop(out);
        self.notify.notify_one();
        true
    }

    /// Takes everything queued.
    pub fn take(&self) -> Vec<u8> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        self.pending.store(0, Ordering::Release);
        out.over_soft_since = None;
        std::mem::take(&mut out.buf)
    }

    /// Appends everything queued to `dst`.
    pub fn take_into(&self, dst: &mut Vec<u8>) {
        if self.pending.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        self.pending.store(0, Ordering::Release);
        out.over_soft_since = None;
        dst.extend_from_slice(&out.buf);
        out.buf.clear();
    }

    /// Bytes queued (CLIENT LIST `omem`).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Asks the connection to close.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether the connection was asked to close.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }
}

/// What CLIENT LIST and friends know about a client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Output and kill switch.
    pub handle: Arc<ClientHandle>,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket file descriptor (CLIENT LIST `fd`).
    pub fd: i64,
    /// CLIENT SETNAME.
    pub name: Bytes,
    /// When it connected.
    pub created: Instant,
    /// When it last ran a command.
    pub last_active: Instant,
    /// Last command name.
    pub last_cmd: &'static str,
    /// Selected database.
    pub db: usize,
    /// RESP3?
    pub resp3: bool,
    /// Commands queued in MULTI, or -1.
    pub multi: i64,
}

/// Counters the hub keeps besides the engine's.
#[derive(Debug, Default, Clone)]
pub struct HubStats {
    /// Connections accepted (INFO `total_connections_received`).
    pub connections_received: u64,
    /// Connections refused by maxclients.
    pub rejected_connections: u64,
    /// Bytes read from clients.
    pub net_input_bytes: u64,
    /// Bytes written to clients.
    pub net_output_bytes: u64,
    /// Error replies sent.
    pub error_replies: u64,
    /// Messages delivered by PUBLISH and notifications.
    pub pubsub_messages: u64,
    /// Clients closed for exceeding an output buffer limit.
    pub output_limit_kills: u64,
    /// Changes committed since the last save (INFO `rdb_changes_since_last_save`).
    pub dirty: u64,
}

/// Everything behind the lock besides the engine.
pub struct HubState {
    /// Effective settings (CONFIG GET/SET).
    pub settings: Settings,
    /// Connected clients by id (sorted, as CLIENT LIST shows them).
    pub clients: BTreeMap<ClientId, ClientInfo>,
    /// Pub/sub registry.
    pub pubsub: PubSub,
    /// Parked clients.
    pub blocked: Blocked,
    /// Failed-AUTH throttle.
    pub auth: AuthLimiter,
    /// Counters.
    pub stats: HubStats,
    /// Consumers of the change stream.
    pub sinks: Vec<Box<dyn ChangeSink>>,
    /// The deadline the expiry task sleeps until.
    pub expiry_at: Option<u64>,
    /// Snapshots and the AOF.
    pub persist: Persist,
    /// This run's stream id (INFO `master_replid`; what snapshots record).
    pub replid: String,
    /// Replication: our replicas, or our link to the primary.
    pub repl: crate::repl::Repl,
}

impl HubState {
    /// Publishes a message on a channel; returns how many clients received it.
    pub fn publish(&mut self, channel: &Bytes, message: &Bytes) -> usize {
        let targets = self.pubsub.targets(channel);
        if targets.is_empty() {
            return 0;
        }
        let plain = Reply::Push(vec![Reply::bulk("message"), Reply::Bulk(channel.clone()), Reply::Bulk(message.clone())]);
        let mut enc: [Option<Vec<u8>>; 2] = [None, None];
        let mut n = 0;
        let mut dropped = Vec::new();
        for (id, pattern) in targets {
            let delivered = match pattern {
                None => self.deliver(id, &mut dropped, |resp3| {
                    let proto = if resp3 { Protocol::Resp3 } else { Protocol::Resp2 };
                    enc[resp3 as usize].get_or_insert_with(|| recached_engine::resp::to_vec(&plain, proto)).clone()
                }),
                Some(p) => {
                    let r = Reply::Push(vec![
                        Reply::bulk("pmessage"),
                        Reply::Bulk(p),
                        Reply::Bulk(channel.clone()),
                        Reply::Bulk(message.clone()),
                    ]);
                    self.deliver(id, &mut dropped, |resp3| {
                        recached_engine::resp::to_vec(&r, if resp3 { Protocol::Resp3 } else { Protocol::Resp2 })
                    })
                }
            };
            n += delivered as usize;
        }
        for id in dropped {
            self.pubsub.remove_client(id);
        }
        self.stats.pubsub_messages += n as u64;
        n
    }

    /// Publishes on a shard channel (SPUBLISH).
    pub fn spublish(&mut self, channel: &Bytes, message: &Bytes) -> usize {
        let targets = self.pubsub.shard_targets(channel);
        let r = Reply::Push(vec![Reply::bulk("smessage"), Reply::Bulk(channel.clone()), Reply::Bulk(message.clone())]);
        let mut n = 0;
        let mut dropped = Vec::new();
        for id in targets {
            n += self.deliver(id, &mut dropped, |resp3| {
                recached_engine::resp::to_vec(&r, if resp3 { Protocol::Resp3 } else { Protocol::Resp2 })
            }) as usize;
        }
        for id in dropped {
            self.pubsub.remove_client(id);
        }
        n
    }

    /// Queues one encoded message for a subscriber. A subscriber already killed, or killed
    /// now for passing its output limit, receives nothing, is not counted, and is dropped
    /// from the registry at once (so PUBLISH and PUBSUB NUMSUB stop counting it, as in
    /// Redis, even while its connection task is still stuck in a write).
    fn deliver(&mut self, id: ClientId, dropped: &mut Vec<ClientId>, encode: impl FnOnce(bool) -> Vec<u8>) -> bool {
        let Some(c) = self.clients.get(&id) else { return false };
        if c.handle.is_killed() {
            dropped.push(id);
            return false;
        }
        let bytes = encode(c.resp3);
        if c.handle.push(&bytes, self.settings.output_limits.pubsub) {
            return true;
        }
        self.stats.output_limit_kills += 1;
        tracing::warn!(client = id, addr = %c.addr, "closing subscriber: pubsub output buffer limit exceeded");
        dropped.push(id);
        false
    }

    /// Removes a client from every registry (disconnect).
    pub fn forget_client(&mut self, id: ClientId) {
        self.clients.remove(&id);
        self.pubsub.remove_client(id);
        self.blocked.remove(id);
    }
}

/// The engine and the hub state, locked together.
pub struct Core {
    /// The engine.
    pub engine: Engine,
    /// The rest.
    pub hub: HubState,
}

impl Core {
    /// Work owed after every batch, while still holding the lock: hand committed groups to
    /// the sinks, publish keyspace notifications, serve blocked clients whose keys changed
    /// (their commands' own changes go around the loop again), and wake the expiry task if
    /// a nearer deadline appeared.
    pub fn after_batch(&mut self, shared: &Shared, now_ms: u64) {
        self.after_batch_with(shared, Vec::new(), now_ms);
    }

    /// [`Core::after_batch`] for a batch whose groups the caller already took from the
    /// engine (the WebSocket sync hub takes its clients' groups to build their acks);
    /// they are processed first, in order, as if just taken.
    pub fn after_batch_with(&mut self, shared: &Shared, taken: Vec<ChangeGroup>, now_ms: u64) {
        let mut any_groups = false;
        let mut taken = Some(taken);
        loop {
            let mut groups = taken.take().unwrap_or_default();
            groups.extend(self.engine.take_changes());
            let events = self.engine.take_events();
            if groups.is_empty() && events.is_empty() {
                break;
            }
            if !groups.is_empty() {
                any_groups = true;
                self.hub.stats.dirty += groups.iter().map(|g| g.changes.len() as u64).sum::<u64>();
                // The AOF first: every other consumer may release something to a client.
                crate::persist::append(&mut self.engine, &mut self.hub, &groups, &[]);
                crate::repl::feed(&mut self.hub, shared, &groups);
                for sink in self.hub.sinks.iter_mut() {
                    sink.on_groups(&groups, &self.engine);
                }
            }
            let flags = self.hub.settings.notify;
            for ev in &events {
                for (channel, message) in flags.messages(ev) {
                    self.hub.publish(&channel, &message);
                }
            }
            if !self.hub.blocked.is_empty() {
                self.serve_blocked(&groups, now_ms);
            }
        }
        if any_groups {
            let next = self.engine.next_deadline();
            if let Some(d) = next {
                if self.hub.expiry_at.is_none_or(|at| d < at) {
                    self.hub.expiry_at = Some(d);
                    shared.expiry_wake.notify_one();
                }
            }
        }
    }

    /// Serves clients parked on keys the groups touched, first come first served per key.
    fn serve_blocked(&mut self, groups: &[ChangeGroup], now_ms: u64) {
        let mut ready: Vec<(usize, Bytes)> = Vec::new();
        let mut seen: HashSet<(usize, Bytes)> = HashSet::new();
        for g in groups {
            for c in &g.changes {
                let db = c.db as usize;
                match c.key() {
                    Some(k) => {
                        if self.hub.blocked.has_key(db, k) && seen.insert((db, k.clone())) {
                            ready.push((db, k.clone()));
                        }
                    }
                    None => {
                        // FLUSHDB/FLUSHALL/SWAPDB: any key of the database may have changed.
                        let dbs: Vec<usize> = match c.name() {
                            b"FLUSHALL" => (0..self.engine.dbs().len()).collect(),
                            b"SWAPDB" => {
                                let other = c.args.get(2).and_then(|a| std::str::from_utf8(a).ok()).and_then(|s| s.parse().ok());
                                let first = c.args.get(1).and_then(|a| std::str::from_utf8(a).ok()).and_then(|s| s.parse().ok());
                                [first, other, Some(db)].into_iter().flatten().collect()
                            }
                            _ => vec![db],
                        };
                        for d in dbs {
                            for k in self.hub.blocked.keys_in(d) {
                                if seen.insert((d, k.clone())) {
                                    ready.push((d, k));
                                }
                            }
                        }
                    }
                }
            }
        }
        for (db, key) in ready {
            for id in self.hub.blocked.queue(db, &key) {
                let exists = self.engine.db(db).map(|d| d.get(&key).is_some()).unwrap_or(false);
                if !exists {
                    break;
                }
                let Some(w) = self.hub.blocked.get_mut(id) else { continue };
                let args = w.args.clone();
                let outcome = self.engine.execute(&mut w.session, &args, now_ms, &mut NoHost);
                if let Outcome::Reply(reply) = outcome {
                    if let Some(w) = self.hub.blocked.remove(id) {
                        // The receiver may be gone (client closed at this moment); nothing to do.
                        let _ = w.tx.send((reply, self.engine.offset()));
                    }
                }
            }
        }
    }
}

/// State shared by every task of one hub.
pub struct Shared {
    core: Mutex<Core>,
    /// Lock-free copies of hot settings.
    pub knobs: Knobs,
    /// Wakes the active-expiry task early.
    pub expiry_wake: Notify,
    /// Flips to true when the hub shuts down.
    pub shutdown: watch::Sender<bool>,
    /// Open connections.
    pub connections: AtomicUsize,
    next_id: AtomicU64,
    /// When the hub started.
    pub started: Instant,
    /// INFO `run_id`.
    pub run_id: String,
    /// The RESP port actually bound.
    pub tcp_port: AtomicU16,
    /// When replies may leave (the AOF's progress).
    pub gate: Arc<Gate>,
    /// Loading at start (`-LOADING`, INFO).
    pub load: LoadState,
    /// The sync port's state, once bound.
    sync: OnceLock<Arc<SyncShared>>,
    /// The Lua VM and script cache, and the watch connections check while a script runs.
    pub scripting: crate::scripting::Scripting,
    /// Woken by every replica ack (`WAIT`).
    pub repl_acks: Notify,
    this: Weak<Shared>,
}

impl Shared {
    /// A hub around a fresh engine.
    pub fn new(settings: Settings) -> Arc<Shared> {
        let engine = Engine::new(settings.engine_config());
        let knobs = Knobs::default();
        knobs.load(&settings);
        let hub = HubState {
            settings,
            clients: BTreeMap::new(),
            pubsub: PubSub::default(),
            blocked: Blocked::default(),
            auth: AuthLimiter::default(),
            stats: HubStats::default(),
            sinks: Vec::new(),
            expiry_at: None,
            persist: Persist::new(),
            replid: String::new(),
            repl: crate::repl::Repl::default(),
        };
        let (shutdown, _) = watch::channel(false);
        let run_id = run_id();
        let hub = HubState { replid: run_id.clone(), ..hub };
        Arc::new_cyclic(|this| Shared {
            core: Mutex::new(Core { engine, hub }),
            knobs,
            expiry_wake: Notify::new(),
            shutdown,
            connections: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            run_id,
            tcp_port: AtomicU16::new(0),
            gate: Arc::new(Gate::default()),
            load: LoadState::default(),
            sync: OnceLock::new(),
            scripting: crate::scripting::Scripting::default(),
            repl_acks: Notify::new(),
            this: this.clone(),
        })
    }

    /// This hub as an `Arc` (for tasks a command starts); `None` once it is being dropped.
    pub fn arc(&self) -> Option<Arc<Shared>> {
        self.this.upgrade()
    }

    /// The sync port's state, once bound.
    pub fn sync(&self) -> Option<&Arc<SyncShared>> {
        self.sync.get()
    }

    /// Records the sync port's state (once).
    pub fn set_sync(&self, sync: Arc<SyncShared>) {
        let _ = self.sync.set(sync);
    }

    /// Whether the dataset is still loading.
    pub fn loading(&self) -> bool {
        self.load.loading.load(Ordering::Acquire)
    }

    /// Takes the engine lock. A panic under the lock (a bug) does not wedge the hub.
    pub fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (without holding a thread) while a script runs, then takes the engine lock:
    /// for tasks that have no `-BUSY` to answer (sync sockets, HTTP, expiry, cron). A
    /// script holds the lock for its whole run, and a task that blocked on it would hold
    /// one of the runtime's few threads, which the client that sends SCRIPT KILL needs.
    pub async fn lock_when_idle(&self) -> MutexGuard<'_, Core> {
        loop {
            self.scripting.watch.idle().await;
            if let Some(guard) = self.try_lock() {
                return guard;
            }
            // Held by another thread: a script (wait again) or a short batch.
            if !self.scripting.watch.running() {
                return self.lock();
            }
        }
    }

    /// The engine lock, if no one holds it.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, Core>> {
        match self.core.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// A fresh client id.
    pub fn next_client_id(&self) -> ClientId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a consumer of the change stream (persistence, WebSocket fan-out).
    pub fn add_sink(&self, sink: Box<dyn ChangeSink>) {
        self.lock().hub.sinks.push(sink);
    }

    /// Whether shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Starts a graceful shutdown.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// A 40-hex-digit id, different per start (INFO `run_id`).
fn run_id() -> String {
    fresh_id()
}

/// A fresh random 40-hex-digit id (run ids, replication ids).
pub fn fresh_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(40);
    let mut seed = now_ms() ^ (std::process::id() as u64) << 32;
    while out.len() < 40 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(seed);
        seed = h.finish();
        out.push_str(&format!("{:016x}", seed));
    }
    out.truncate(40);
    out
}

/// Encodes a reply for a client.
pub fn encode_reply(reply: &Reply, resp3: bool, out: &mut Vec<u8>) {
    encode(reply, if resp3 { Protocol::Resp3 } else { Protocol::Resp2 }, out);
}

/// Completes once shutdown has begun (at once if it already has).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it here, not across an await.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
