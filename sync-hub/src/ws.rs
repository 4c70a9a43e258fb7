//! WebSocket live sync on the sync port: the host side of `docs/protocol.md`.
//!
//! Every frame is built and parsed by [`recached_engine::sync::SyncHub`]; this module only
//! moves bytes and owns the sockets:
//!
//! - [`SyncShared`] holds the `SyncHub` (behind its own mutex, always taken *after* the
//!   engine lock), the socket registry with one bounded outbound queue per socket, the
//!   limits and the counters `/metrics` reports.
//! - [`SyncSink`] is the hub's [`ChangeSink`]: every group any batch commits (RESP clients,
//!   HTTP commands, expiry, blocked clients served) is published to the subscribers.
//! - [`serve_socket`] runs one upgraded socket: a binary message runs under the engine lock
//!   exactly like a RESP batch (the same post-batch path, so keyspace notifications fire
//!   and blocked RESP clients wake). Output is written straight into the TCP socket when
//!   it can take it, else queued ([`crate::socket`]) and drained by the socket's task.
//! - [`tick`] drives handshake timeouts, token expiry and `sync.at` heartbeats.
//!
//! Backpressure: pushes (changes and heartbeats a client did not ask for) count against
//! `sync-max-buffer` while they wait in the socket's queue; past the bound the queue is
//! dropped and the socket closed with 4008. Replies and snapshots a client asked for are
//! queued unconditionally, but a socket's next message is only read once those are
//! written, so they are bounded by the client's own requests.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use recached_engine::sync::hub::{close, HubStats};
use recached_engine::sync::{Close, ConnId, HubConfig, Output, SyncHub};
use recached_engine::value::Hasher;
use recached_engine::{ChangeGroup, Engine, Host, Reply, Session};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::config::Settings;
use crate::hub::{now_ms, ChangeSink, HubState, Shared};
use crate::persist::gate::Gate;
use crate::socket::{Duplex, Socket, Written};

/// Period of [`SyncHub::tick`].
const TICK: Duration = Duration::from_millis(100);
/// Time a closing socket gets to flush its last messages and the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The same for a slow consumer, which is not reading right now: its queue is already
/// dropped, so waiting costs one write batch at most, and the close frame reaches it if
/// it resumes reading within this time.
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(30);
/// Upper bounds (seconds) of the fan-out lag histogram buckets.
pub const LAG_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

/// The limits of the sync port, fixed at start.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of pushes queued per socket before it is closed (4008).
    pub max_buffer: usize,
    /// Largest client message (`maxmsg`) and HTTP body.
    pub max_message: usize,
    /// Allowed `Origin`s; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Upgrade to successful HELLO; also the time allowed to send an HTTP request.
    pub handshake_timeout: Duration,
    /// Concurrent connections per peer IP on the sync port; 0 for no cap.
    pub per_ip: usize,
}

impl Limits {
    /// The limits of a hub's settings.
    pub fn from_settings(s: &Settings) -> Limits {
        Limits {
            max_buffer: s.sync_max_buffer as usize,
            max_message: s.sync_max_message as usize,
            allowed_origins: s.sync_allowed_origins.clone(),
            handshake_timeout: Duration::from_millis(s.sync_handshake_timeout),
            per_ip: s.sync_max_sockets_per_ip as usize,
        }
    }
}

/// Counters of the sync port for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// WebSockets accepted (including those closed at once by a limit).
    pub sockets_opened: AtomicU64,
    /// Connections on the sync port refused by the per-IP cap or `maxclients`.
    pub refused_capacity: AtomicU64,
    /// WebSockets refused by the Origin allow-list.
    pub refused_origin: AtomicU64,
    /// Sockets closed as slow consumers (4008).
    pub slow_consumers: AtomicU64,
    /// Binary messages received.
    pub messages_in: AtomicU64,
    /// Bytes received in binary messages.
    pub bytes_in: AtomicU64,
    /// Messages sent.
    pub messages_out: AtomicU64,
    /// Bytes sent in binary messages.
    pub bytes_out: AtomicU64,
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// Commands run through the HTTP API.
    pub http_commands: AtomicU64,
    /// HTTP requests refused for a missing or bad token.
    pub http_auth_failures: AtomicU64,
}

/// Fan-out lag: from a push being queued (the group committed) to it being written.
#[derive(Debug, Default)]
pub struct LagHistogram {
    inner: Mutex<LagInner>,
}

#[derive(Debug, Default, Clone)]
struct LagInner {
    buckets: [u64; LAG_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl LagHistogram {
    /// Records `immediate` pushes written at once (a lag of zero) and the lags `secs`.
    fn observe(&self, immediate: u64, secs: &[f64]) {
        if immediate == 0 && secs.is_empty() {
            return;
        }
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for b in h.buckets.iter_mut() {
            *b += immediate;
        }
        h.count += immediate;
        for &s in secs {
            for (i, b) in LAG_BUCKETS.iter().enumerate() {
                if s <= *b {
                    h.buckets[i] += 1;
                }
            }
            h.count += 1;
            h.sum += s;
        }
    }

    /// Cumulative bucket counts (per [`LAG_BUCKETS`]), total count and sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, u64, f64) {
        let h = self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (h.buckets.to_vec(), h.count, h.sum)
    }
}

/// The sync state shared by the sync port's tasks.
pub struct SyncShared {
    state: Mutex<SyncState>,
    /// Limits.
    pub limits: Limits,
    /// Open connections on the sync port per peer IP (HTTP and WebSocket alike).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Open WebSockets.
    pub sockets: AtomicUsize,
    /// Counters.
    pub counters: Counters,
    /// Fan-out lag.
    pub lag: LagHistogram,
    /// Close codes sent, by code.
    closes: Mutex<BTreeMap<u16, u64>>,
    /// The AOF's progress: output that depends on writes leaves once they are persisted.
    pub gate: Arc<Gate>,
    /// The backlog's size bound, base offset and bytes held, as of its last change: what
    /// INFO reads without the sync lock (INFO may run from this port's own message, which
    /// holds it).
    backlog_view: [AtomicU64; 3],
}

/// The hub state machine and the sockets it talks to. Lock order: the engine lock
/// ([`Shared::lock`]) first, then this.
pub struct SyncState {
    /// The protocol state machine.
    pub hub: SyncHub,
    sockets: HashMap<ConnId, Arc<Socket>, Hasher>,
    /// Sockets holding messages that wait for the AOF (acks and pushes of writes not yet
    /// persisted); each socket keeps its own order, so one socket waiting never holds up
    /// another.
    held: std::collections::HashSet<ConnId, Hasher>,
}

impl SyncState {
    /// Bytes queued on every socket, and how many of them are pushes.
    pub fn queued_bytes(&self) -> (usize, usize) {
        self.sockets.values().fold((0, 0), |(a, b), s| {
            let (x, y) = s.queued();
            (a + x, b + y)
        })
    }

    /// Closes every WebSocket with "going away" (clients reconnect and resync): after a
    /// replica's data set was replaced by a full sync from its primary.
    pub fn close_all(&self, reason: &str) {
        for sock in self.sockets.values() {
            sock.close(Close::new(close::GOING_AWAY, reason));
        }
    }

    /// Queues `out`, each message once the writes it depends on (up to `need`) are
    /// persisted (held on its socket until [`release`] sends it).
    fn deliver_gated(&mut self, out: Output, requester: Option<ConnId>, sync: &SyncShared, need: u64) {
        self.deliver(out, requester, sync, need);
    }

    /// Sends what the sockets hold and the gate now allows.
    fn release_ready(&mut self, sync: &SyncShared) {
        let mut written = Written::default();
        let sockets = &self.sockets;
        self.held.retain(|id| sockets.get(id).is_some_and(|s| s.release(|need| sync.gate.ready(need), &mut written)));
        sync.record(&written);
    }

    /// Queues the output of a [`SyncHub`] call on the sockets. Sends to `requester` are
    /// replies to its own message, and catch-up bytes (`out.catch_up`: an in-band
    /// snapshot after SWAPDB) are what a subscription needs to be whole again; neither
    /// counts against the bound. Every other send is a push and does. Returns the groups
    /// for the caller's post-batch work.
    fn deliver(&mut self, out: Output, requester: Option<ConnId>, sync: &SyncShared, need: u64) -> Vec<ChangeGroup> {
        let ready = sync.gate.ready(need);
        let mut catch_up: HashMap<ConnId, usize> = out.catch_up.into_iter().collect();
        let mut written = Written::default();
        // A payload many sockets get (a fan-out shares one `Bytes`) is framed once: its
        // sends are consecutive (a payload that comes back later is framed again), and
        // every payload lives until the loop ends, so the same address and length are the
        // same bytes.
        let mut framed: (*const u8, usize, Bytes) = (std::ptr::null(), usize::MAX, Bytes::new());
        for (id, bytes) in &out.sends {
            let Some(sock) = self.sockets.get(id) else { continue };
            let mut push = Some(*id) != requester;
            if let Some(left) = catch_up.get_mut(id).filter(|n| **n > 0) {
                *left = left.saturating_sub(bytes.len());
                push = false;
            }
            if (framed.0, framed.1) != (bytes.as_ptr(), bytes.len()) {
                framed = (bytes.as_ptr(), bytes.len(), crate::socket::frame(bytes));
            }
            let (open, held) = sock.send_gated(&framed.2, push, need, ready, sync.limits.max_buffer, &mut written);
            if held {
                self.held.insert(*id);
            }
            if !open {
                sync.counters.slow_consumers.fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn = id, limit = sync.limits.max_buffer, "closing slow sync consumer");
            }
        }
        sync.record(&written);
        for (id, c) in out.closes {
            if let Some(sock) = self.sockets.get(&id) {
                sock.close(c);
            }
        }
        out.groups
    }
}

impl SyncShared {
    /// The sync state for a hub whose engine is at `offset`, stream `replid`.
    pub fn new(settings: &Settings, replid: &str, offset: u64, gate: Arc<Gate>) -> Arc<SyncShared> {
        let config = HubConfig {
            hub_id: settings.sync_hub_id.clone(),
            max_message: settings.sync_max_message as usize,
            handshake_timeout_ms: settings.sync_handshake_timeout,
            backlog_bytes: settings.sync_backlog_bytes as usize,
            backlog_ttl_ms: settings.sync_backlog_ttl.saturating_mul(1000),
            // The dedupe memory goes into the AOF and snapshots with the writes, so a write
            // resent after a restart is still answered once.
            record_dedupe: true,
            ..HubConfig::default()
        };
        let hub = SyncHub::new(config, crate::tokens::auth_from(settings), replid, offset);
        Arc::new(SyncShared {
            state: Mutex::new(SyncState { hub, sockets: HashMap::default(), held: Default::default() }),
            limits: Limits::from_settings(settings),
            per_ip: Mutex::new(HashMap::new()),
            sockets: AtomicUsize::new(0),
            counters: Counters::default(),
            lag: LagHistogram::default(),
            closes: Mutex::new(BTreeMap::new()),
            gate,
            backlog_view: [AtomicU64::new(settings.sync_backlog_bytes), AtomicU64::new(offset), AtomicU64::new(0)],
        })
    }

    /// Records the backlog's figures for [`SyncShared::backlog_view`] (call with the lock).
    pub fn note_backlog(&self, st: &SyncState) {
        let b = st.hub.backlog();
        for (slot, v) in self.backlog_view.iter().zip([b.max_bytes() as u64, b.base_offset(), b.bytes() as u64]) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// The backlog's size bound, base offset and bytes held, as last recorded.
    pub fn backlog_view(&self) -> (usize, u64, usize) {
        let v = |i: usize| self.backlog_view[i].load(Ordering::Relaxed);
        (v(0) as usize, v(1), v(2) as usize)
    }

    /// Takes the sync lock. Hold the engine lock first if both are needed.
    pub fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether tokens are not checked (no secret, no static tokens).
    pub fn is_open(&self) -> bool {
        self.lock().hub.auth().is_open()
    }

    /// The protocol counters.
    pub fn hub_stats(&self) -> HubStats {
        self.lock().hub.stats().clone()
    }

    /// Close codes sent so far, by code.
    pub fn close_counts(&self) -> Vec<(u16, u64)> {
        self.closes.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect()
    }

    fn record(&self, w: &Written) {
        if w.messages > 0 || w.bytes > 0 {
            self.counters.messages_out.fetch_add(w.messages, Ordering::Relaxed);
            self.counters.bytes_out.fetch_add(w.bytes, Ordering::Relaxed);
        }
        self.lag.observe(w.immediate, &w.lags);
    }

    fn count_close(&self, code: u16) {
        *self.closes.lock().unwrap_or_else(|e| e.into_inner()).entry(code).or_insert(0) += 1;
    }

    /// Reserves a connection slot for `ip` under the per-IP cap; `None` when full.
    pub fn acquire_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut m = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if self.limits.per_ip > 0 && *n >= self.limits.per_ip {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpSlot { sync: self.clone(), ip })
    }
}

/// A connection's place under the per-IP cap, released on drop.
pub struct IpSlot {
    sync: Arc<SyncShared>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut m = self.sync.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Publishes every committed group to the sync subscribers (registered as a change sink).
pub struct SyncSink(pub Arc<SyncShared>);

impl ChangeSink for SyncSink {
    fn on_groups(&mut self, groups: &[ChangeGroup], engine: &Engine) {
        let sync = &self.0;
        let mut st = sync.lock();
        // Groups a sync client's own message committed were published by the SyncHub
        // already (it builds the sender's ack from them); they come back here through the
        // shared post-batch path and are skipped by offset.
        let last = st.hub.backlog().last_offset();
        let start = groups.partition_point(|g| g.offset <= last);
        if start == groups.len() {
            return;
        }
        let mut out = st.hub.publish(engine, &groups[start..], now_ms());
        sync.note_backlog(&st);
        out.dedupe.clear();
        let need = groups.last().map(|g| g.offset).unwrap_or(0);
        st.deliver_gated(out, None, sync, need);
    }
}

/// The [`Host`] for commands from sync sockets and the HTTP API: `TIME` and `INFO` as on
/// RESP, `QUIT` answers OK, and every other host command is refused (the scope check
/// refuses most of them before they get here).
pub struct SyncHost<'a> {
    /// Hub state.
    pub hub: &'a mut HubState,
    /// Shared handles.
    pub shared: &'a Shared,
}

impl Host for SyncHost<'_> {
    fn call(&mut self, engine: &mut Engine, _: &mut Session, args: &[Bytes], now_ms: u64) -> Reply {
        let name = args[0].to_ascii_lowercase();
        match name.as_slice() {
            b"time" => Reply::Array(vec![Reply::bulk((now_ms / 1000).to_string()), Reply::bulk(((now_ms % 1000) * 1000).to_string())]),
            b"info" => crate::info::info(self.hub, engine, self.shared, args),
            b"quit" => Reply::Ok,
            _ => Reply::err(format!("NOPERM this user has no permissions to run the '{}' command", String::from_utf8_lossy(&name))),
        }
    }
}

/// Drives [`SyncHub::tick`] until shutdown.
pub async fn tick(sync: Arc<SyncShared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(TICK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
        if sync.sockets.load(Ordering::Relaxed) == 0 {
            continue;
        }
        let mut st = sync.lock();
        let out = st.hub.tick(now_ms());
        if !out.is_empty() {
            st.deliver_gated(out, None, &sync, 0);
        }
    }
}

/// Releases held output as the AOF makes progress, until shutdown.
pub async fn release(sync: Arc<SyncShared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut progress = sync.gate.subscribe();
    loop {
        tokio::select! {
            r = progress.changed() => if r.is_err() { return },
            // The everysec window can close without progress.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
        let mut st = sync.lock();
        if !st.held.is_empty() {
            st.release_ready(&sync);
        }
    }
}

/// The tungstenite settings for the sync port.
pub fn ws_config(limits: &Limits) -> WebSocketConfig {
    // A small read buffer: tungstenite zero-fills all of its spare read capacity on every
    // read attempt (128 KiB by default), and `run` polls the read side again after every
    // outbound wake-up, so with the default ~45% of the hub's CPU in a 1,000-client
    // fan-out went to memset (found by benches/fanout.rs). It still grows for big messages.
    WebSocketConfig::default().max_message_size(Some(limits.max_message)).max_frame_size(Some(limits.max_message)).read_buffer_size(8 * 1024)
}

/// Why a socket is refused right after the upgrade (the protocol accepts the upgrade and
/// closes at once, since browsers only see 1006 for a refused upgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Origin not in the allow-list (4004).
    Origin,
    /// Per-IP cap or `maxclients` (1013).
    Capacity,
}

fn close_frame(c: &Close) -> CloseFrame {
    CloseFrame { code: CloseCode::from(c.code), reason: c.reason.clone().into() }
}

#[derive(Debug)]
enum Ended {
    /// We close with this code.
    Close(Close),
    /// The peer closed or the connection broke.
    Peer,
}

/// Serves one upgraded connection (the 101 is written; `rest` holds bytes the client sent
/// after its request head) until it closes. With a `refusal` it is closed at once with
/// that code, sending nothing else.
pub async fn serve_socket(shared: Arc<Shared>, sync: Arc<SyncShared>, stream: TcpStream, rest: Vec<u8>, peer: SocketAddr, refusal: Option<Refusal>) {
    let (read, write) = stream.into_split();
    let socket = Arc::new(Socket::new(write));
    let duplex = Duplex::new(read, socket.clone());
    let mut ws = WebSocketStream::from_partially_read(duplex, rest, Role::Server, Some(ws_config(&sync.limits))).await;
    let ended = match refusal {
        Some(Refusal::Origin) => {
            sync.counters.refused_origin.fetch_add(1, Ordering::Relaxed);
            Ended::Close(Close::origin_refused())
        }
        Some(Refusal::Capacity) => Ended::Close(Close::too_many_connections()),
        None => {
            let id = shared.next_client_id();
            {
                let mut st = sync.lock();
                st.sockets.insert(id, socket.clone());
                st.hub.open(id, now_ms());
            }
            sync.sockets.fetch_add(1, Ordering::Relaxed);
            sync.counters.sockets_opened.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(conn = id, peer = %peer, "sync socket open");
            let mut shutdown = shared.shutdown.subscribe();
            let ended = run(&shared, &sync, &socket, id, &mut ws, &mut shutdown).await;
            {
                let mut core = shared.lock();
                let mut st = sync.lock();
                st.hub.disconnect(&mut core.engine, id);
                st.sockets.remove(&id);
            }
            sync.sockets.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(conn = id, how = ?ended, "sync socket closed");
            ended
        }
    };
    let mut written = Written::default();
    match &ended {
        // Our close goes out after what is still queued (replies before a protocol
        // error; a slow consumer's queue is already dropped), within a grace period;
        // then the client's close is awaited so the TCP close does not reset data in flight.
        Ended::Close(c) => {
            socket.close(c.clone());
            sync.count_close(c.code);
            let grace = if c.code == close::SLOW_CONSUMER { SLOW_CLOSE_GRACE } else { CLOSE_GRACE };
            let _ = tokio::time::timeout(grace, async {
                let _ = ws.close(Some(close_frame(c))).await;
                if socket.drain(&mut written).await.is_ok() {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            })
            .await;
        }
        // The peer closed: send tungstenite's reply to its close frame.
        Ended::Peer => {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                let _ = ws.close(None).await;
                let _ = socket.drain(&mut written).await;
            })
            .await;
        }
    }
    sync.record(&written);
}

async fn run(
    shared: &Arc<Shared>,
    sync: &Arc<SyncShared>,
    socket: &Arc<Socket>,
    id: ConnId,
    ws: &mut WebSocketStream<Duplex>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> Ended {
    let mut written = Written::default();
    loop {
        if let Some(c) = socket.closing() {
            return Ended::Close(c);
        }
        // A client's next message waits until the replies to its last one are written,
        // which bounds what its requests can queue.
        let can_read = !socket.replies_pending();
        tokio::select! {
            biased;
            _ = crate::hub::stopped(shutdown) => return Ended::Close(Close::shutting_down()),
            r = socket.write_step(&mut written) => {
                sync.record(&std::mem::take(&mut written));
                if r.is_err() {
                    return Ended::Peer;
                }
            }
            msg = ws.next(), if can_read => match msg {
                Some(Ok(Message::Binary(data))) => {
                    sync.counters.messages_in.fetch_add(1, Ordering::Relaxed);
                    sync.counters.bytes_in.fetch_add(data.len() as u64, Ordering::Relaxed);
                    shared.scripting.watch.idle().await;
                    handle_message(shared, sync, id, &data);
                }
                Some(Ok(Message::Text(_))) => return Ended::Close(Close::text_message()),
                // tungstenite answered a ping through the Duplex; push it out.
                Some(Ok(Message::Ping(_))) => {
                    let _ = ws.flush().await;
                }
                Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => return Ended::Peer,
                Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                    return Ended::Close(Close::too_big(sync.limits.max_message));
                }
                Some(Err(e)) => {
                    tracing::debug!(cause = %e, "socket error");
                    return Ended::Peer;
                }
            },
        }
    }
}

/// Runs one binary message under the engine lock, like a RESP batch.
fn handle_message(shared: &Arc<Shared>, sync: &Arc<SyncShared>, id: ConnId, data: &[u8]) {
    let now = now_ms();
    let mut guard = shared.lock();
    let core = &mut *guard;
    let groups = {
        let mut st = sync.lock();
        let mut host = SyncHost { hub: &mut core.hub, shared };
        let mut out = st.hub.message(&mut core.engine, &mut host, id, data, now);
        let groups = std::mem::take(&mut out.groups);
        let dedupe = std::mem::take(&mut out.dedupe);
        // Persisted before the ack can leave; the shared post-batch path below skips them.
        crate::persist::append(&mut core.engine, &mut core.hub, &groups, &dedupe);
        let need = match groups.last() {
            Some(g) => g.offset,
            None => shared.gate.need_after(0, 0),
        };
        st.deliver_gated(out, Some(id), sync, need);
        sync.note_backlog(&st);
        groups
    };
    // The sync lock is released: the sinks (the SyncSink among them) take it again.
    core.after_batch_with(shared, groups, now);
}
