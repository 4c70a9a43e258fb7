//! Replication of the native hub: a primary streams its canonical change stream to
//! replicas over its RESP port, and a replica applies it (`REPLICAOF`, `PSYNC`, `WAIT`).
//!
//! # Layout
//! - [`link`]: the frames on the link, for both ends.
//! - [`primary`]: a connection that sent `PSYNC` becomes a replica's feed: a full sync (a
//!   forkless cut of the engine, streamed from memory, beside the live groups) or a
//!   partial one from the backlog, then the stream, heartbeats and the replica's acks.
//! - [`replica`]: the link task of a replica: handshake, loading a full sync while it
//!   buffers the stream, applying groups, acks, reconnecting with `PSYNC replid offset`.
//!
//! # One stream, one backlog
//! Groups reach replicas from [`feed`], called from `Core::after_batch` right after the
//! AOF, encoded once per batch for every replica. Partial resyncs read the sync port's
//! backlog (the same ring browsers continue from); a hub without a sync port keeps its own.
//! A replica applies groups with their offsets, so its stream (its AOF, its backlog, its
//! browsers, its own replicas) continues the primary's under the primary's replid.

pub mod failover;
pub mod link;
pub mod primary;
pub mod replica;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use recached_engine::sync::Backlog;
use recached_engine::{ChangeGroup, Reply};

use recached_engine::Engine;

use crate::hub::{now_ms, ClientHandle, HubState, Shared};
use crate::pubsub::ClientId;

/// `-READONLY` on a read-only replica.
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// `-NOREPLICAS` below `min-replicas-to-write`.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
/// WAIT on a replica.
pub const WAIT_ON_REPLICA: &str = "ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated.";

/// Where a replica's full sync stands, on the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// Waiting for the engine's cut (a BGSAVE or another sync holds it).
    WaitCut,
    /// The snapshot is being sent (the stream after its offset follows it).
    SendBulk,
    /// Fully synced: only the stream flows.
    Online,
}

impl ReplicaState {
    fn name(self) -> &'static str {
        match self {
            ReplicaState::WaitCut => "wait_bgsave",
            ReplicaState::SendBulk => "send_bulk",
            ReplicaState::Online => "online",
        }
    }
}

/// A replica attached to this primary.
#[derive(Debug)]
pub struct ReplicaEntry {
    /// The connection's output (frames) and kill switch.
    pub handle: Arc<ClientHandle>,
    /// Its address and the port it listens on (`REPLCONF listening-port`).
    pub ip: String,
    /// Listening port.
    pub port: u16,
    /// Sync state.
    pub state: ReplicaState,
    /// Offset it acknowledged.
    pub ack: Arc<AtomicU64>,
    /// When it last acknowledged (Unix ms).
    pub last_ack_ms: Arc<AtomicU64>,
}

/// The replica side's view of its link.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    /// The stream flows (synced, connected).
    pub up: bool,
    /// A full sync is being received.
    pub syncing: bool,
    /// Connected, in the handshake.
    pub handshake: bool,
    /// Last bytes from the primary.
    pub last_io: Option<Instant>,
    /// When the link went down (or was first wanted).
    pub down_since: Option<Instant>,
    /// Snapshot bytes read in the current full sync.
    pub sync_read: u64,
    /// The primary's epoch as last heard.
    pub primary_epoch: u64,
    /// The last error, for the log and INFO.
    pub last_error: Option<String>,
}

/// Replication state, under the engine lock.
#[derive(Debug, Default)]
pub struct Repl {
    /// This hub is a replica of this primary (`REPLICAOF host port`).
    pub primary: Option<(String, u16)>,
    /// The replica side's link.
    pub link: LinkStatus,
    /// Bumped by every REPLICAOF: a link task of an older generation stops.
    pub generation: u64,
    /// Whether this replica's data follows the primary's stream (a sync completed).
    pub synced: bool,
    /// Attached replicas by connection id.
    pub replicas: BTreeMap<ClientId, ReplicaEntry>,
    /// The backlog, when there is no sync port to share one with.
    pub own_backlog: Option<Backlog>,
    /// Failover epoch (persisted in `failover.state`).
    pub epoch: u64,
    /// As a primary: the failover timeout of our designated replica (ms; 0: none), so
    /// writes need its lease (persisted).
    pub designated_ms: u64,
    /// The lease's end on [`failover::mono_ms`]'s clock, renewed by the replica's acks.
    pub lease_until: Arc<AtomicU64>,
    /// Whether the fence is up (for the log: said once per change).
    pub fence_logged: bool,
    /// Change groups discarded when this node rejoined as a replica after a failover.
    pub discarded: u64,
    /// Times this node promoted itself.
    pub promotions: u64,
    /// The primary a failover made us follow (persisted; a restart follows it again).
    pub follow: Option<(String, u16)>,
    /// `sync_full`, `sync_partial_ok`, `sync_partial_err` of INFO stats.
    pub full_syncs: u64,
    /// Partial resyncs accepted.
    pub partial_ok: u64,
    /// Partial resyncs refused (a full sync followed).
    pub partial_err: u64,
}

impl Repl {
    /// Whether this hub is a replica.
    pub fn is_replica(&self) -> bool {
        self.primary.is_some()
    }

    /// Replicas whose last ack covers `offset`.
    pub fn acked(&self, offset: u64) -> usize {
        self.replicas.values().filter(|r| r.state == ReplicaState::Online && r.ack.load(Ordering::Acquire) >= offset).count()
    }

    /// Online replicas that acknowledged within `max_lag_secs`.
    pub fn good_replicas(&self, max_lag_secs: u64, now_ms: u64) -> usize {
        self.replicas
            .values()
            .filter(|r| r.state == ReplicaState::Online && now_ms.saturating_sub(r.last_ack_ms.load(Ordering::Acquire)) <= max_lag_secs * 1000)
            .count()
    }
}

/// The write refusal replication asks for now: `-NOREPLICAS` below
/// `min-replicas-to-write`, `-READONLY` on a read-only replica.
pub fn refusal(hub: &HubState) -> Option<Reply> {
    let s = &hub.settings;
    if hub.repl.is_replica() {
        return s.replica_read_only.then(|| Reply::err(READONLY));
    }
    if s.min_replicas_to_write > 0 && (hub.repl.good_replicas(s.min_replicas_max_lag, now_ms()) as u64) < s.min_replicas_to_write {
        return Some(Reply::err(NOREPLICAS));
    }
    if failover::fenced(hub) {
        return Some(Reply::err(NOREPLICAS));
    }
    None
}

/// Logs the fence going up or down (the persistence cron calls it every 100 ms).
pub fn watch_fence(hub: &mut HubState) {
    let fenced = failover::fenced(hub);
    if fenced != hub.repl.fence_logged {
        hub.repl.fence_logged = fenced;
        if fenced {
            tracing::warn!("FENCED: no ack from the designated replica within its lease: writes are refused (-NOREPLICAS) so that it alone may take them if it promotes");
        } else {
            tracing::info!("fence lifted: the designated replica acknowledges again");
        }
    }
}

/// Whether the write refusal can change with time alone (lag, the failover lease): then
/// every batch judges it, not only the 100 ms cron.
pub fn refusal_moves(hub: &HubState) -> bool {
    hub.settings.min_replicas_to_write > 0 || (hub.repl.designated_ms > 0 && !hub.repl.is_replica())
}

/// Runs `f` on the backlog partial resyncs come from: the sync port's, else our own.
pub fn with_backlog<R>(shared: &Shared, hub: &mut HubState, f: impl FnOnce(&Backlog) -> R) -> Option<R> {
    if let Some(sync) = shared.sync() {
        let st = sync.lock();
        return Some(f(st.hub.backlog()));
    }
    hub.repl.own_backlog.as_ref().map(f)
}

/// Hands committed groups to the replicas (encoded once) and to our own backlog. Under
/// the engine lock, in commit order, right after the AOF.
pub fn feed(hub: &mut HubState, shared: &Shared, groups: &[ChangeGroup]) {
    if let Some(b) = hub.repl.own_backlog.as_mut() {
        for g in groups {
            b.push(g.clone());
        }
    }
    if hub.repl.replicas.is_empty() {
        return;
    }
    keep_backlog(shared);
    let mut records = Vec::new();
    for g in groups {
        recached_engine::aof::encode_group(g, &[], &mut records);
    }
    let mut frame = Vec::with_capacity(records.len() + 5);
    link::frame(link::GROUPS, &records, &mut frame);
    let limit = hub.settings.output_limits.replica;
    let mut dropped = Vec::new();
    for (id, r) in &hub.repl.replicas {
        if r.state == ReplicaState::WaitCut {
            continue;
        }
        if !r.handle.push(&frame, limit) {
            dropped.push(*id);
        }
    }
    for id in dropped {
        tracing::warn!(replica = id, "replica dropped: over client-output-buffer-limit replica; it resumes with a partial resync");
        hub.stats.output_limit_kills += 1;
    }
}

/// Keeps the shared backlog live (its TTL counts from the last reader): replicas read it.
pub fn keep_backlog(shared: &Shared) {
    if let Some(sync) = shared.sync() {
        sync.lock().hub.keep_backlog(now_ms());
    }
}

/// At start, after the data loaded: the failover state, and a backlog of our own for a
/// hub without a sync port.
pub fn init(shared: &Shared) -> Result<(), String> {
    let mut core = shared.lock();
    let st = failover::load(&core.hub.settings)?;
    core.hub.repl.epoch = st.epoch;
    core.hub.repl.designated_ms = st.designated_ms;
    core.hub.repl.follow = st.follow.clone();
    if let Some((host, port)) = st.follow {
        // A failover made this node a replica: that outranks the configured role.
        if core.hub.settings.replicaof.as_ref() != Some(&(host.clone(), port)) {
            tracing::warn!(%host, port, epoch = st.epoch, "following {}:{}, the primary a failover chose (failover.state), not the configured replicaof", host, port);
        }
        core.hub.settings.replicaof = Some((host, port));
    }
    if st.designated_ms > 0 {
        tracing::warn!(
            epoch = st.epoch,
            "this primary had a designated replica (failover-timeout {} ms): writes wait for its lease",
            st.designated_ms
        );
    }
    if shared.sync().is_none() {
        let (replid, offset, bytes) = (core.hub.replid.clone(), core.engine.offset(), core.hub.settings.sync_backlog_bytes as usize);
        core.hub.repl.own_backlog = Some(Backlog::new(replid, offset, bytes));
    }
    let core = &mut *core;
    crate::persist::refresh_refusal(&mut core.engine, &core.hub);
    Ok(())
}

/// Re-keys both backlogs (the sync port's and our own) to `replid`, keeping their groups,
/// with `previous` as the stream it continues, and records the id in the AOF.
fn rekey_stream(engine: &Engine, hub: &mut HubState, shared: &Shared, replid: &str, previous: Option<(String, u64)>) {
    hub.replid = replid.to_string();
    hub.persist.previous = previous.clone();
    if let Some(sync) = shared.sync() {
        let mut st = sync.lock();
        let groups: Vec<ChangeGroup> = st.hub.backlog().groups().cloned().collect();
        st.hub.restore_stream(replid.to_string(), previous.clone(), groups, now_ms());
        sync.note_backlog(&st);
    }
    if let Some(b) = hub.repl.own_backlog.as_mut() {
        let groups: Vec<ChangeGroup> = b.groups().cloned().collect();
        b.restore(replid.to_string(), previous, groups);
    }
    let offset = engine.offset();
    if let Some(aof) = hub.persist.aof.as_mut() {
        if let Err(e) = aof.append_stream(replid, offset) {
            tracing::error!(cause = %e, "cannot write the stream id to the AOF");
        }
    }
}

/// Starts a new stream id at the current offset, keeping the old one as the secondary
/// (PSYNC2): after `REPLICAOF NO ONE`, a promotion, or a continue under a new id.
pub fn switch_stream(engine: &mut Engine, hub: &mut HubState, shared: &Shared, replid: String) {
    if hub.replid == replid {
        return;
    }
    let previous = Some((hub.replid.clone(), engine.offset()));
    rekey_stream(engine, hub, shared, &replid, previous);
}

/// Replaces the whole stream (after a full sync): `replid` from `offset`, nothing before.
pub fn reset_stream(hub: &mut HubState, shared: &Shared, replid: &str, offset: u64) {
    hub.replid = replid.to_string();
    hub.persist.previous = None;
    if let Some(sync) = shared.sync() {
        let mut st = sync.lock();
        st.hub.reset_stream(replid.to_string(), offset);
        sync.note_backlog(&st);
    }
    if let Some(b) = hub.repl.own_backlog.as_mut() {
        b.reset(replid.to_string(), offset);
    }
}

/// Takes `replid` as this hub's stream id without a new history (a restarted replica
/// continuing the stream its data was saved from).
pub fn adopt_replid(engine: &mut Engine, hub: &mut HubState, shared: &Shared, replid: &str) {
    rekey_stream(engine, hub, shared, replid, None);
}

/// A fresh 40-hex-digit replication id.
pub fn new_replid() -> String {
    crate::hub::fresh_id()
}

/// `REPLICAOF host port | NO ONE` (and `SLAVEOF`).
pub fn cmd_replicaof(engine: &mut Engine, hub: &mut HubState, shared: &Shared, args: &[Bytes]) -> Reply {
    let host = String::from_utf8_lossy(&args[1]).into_owned();
    let port = String::from_utf8_lossy(&args[2]).into_owned();
    // The operator's choice replaces the one a failover made.
    if hub.repl.follow.take().is_some() {
        if let Err(e) = failover::save(hub) {
            tracing::error!(cause = %e, "cannot persist the failover state");
        }
    }
    if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
        if hub.repl.is_replica() {
            promote(engine, hub, shared, "REPLICAOF NO ONE");
        } else if hub.repl.designated_ms > 0 {
            // The operator's way out of a fence whose replica is gone for good.
            hub.repl.designated_ms = 0;
            if let Err(e) = failover::save(hub) {
                return Reply::err(format!("ERR {}", e));
            }
            tracing::warn!("REPLICAOF NO ONE on a primary: its designated replica is forgotten and the fence lifted");
            crate::persist::refresh_refusal(engine, hub);
        }
        return Reply::Ok;
    }
    let port: u16 = match port.parse::<i64>() {
        Ok(p) if (0..=65535).contains(&p) => p as u16,
        _ => return Reply::err("ERR Invalid master port"),
    };
    if hub.repl.primary.as_ref().is_some_and(|(h, p)| h.eq_ignore_ascii_case(&host) && *p == port) {
        return Reply::simple("OK Already connected to specified master");
    }
    tracing::info!(%host, port, "Connecting to MASTER {}:{} (REPLICAOF)", host, port);
    become_replica(engine, hub, shared, host, port);
    Reply::Ok
}

/// Makes this hub a replica of `host:port` and starts the link.
pub fn become_replica(engine: &mut Engine, hub: &mut HubState, shared: &Shared, host: String, port: u16) {
    let repl = &mut hub.repl;
    repl.primary = Some((host.clone(), port));
    repl.generation += 1;
    repl.synced = false;
    repl.link = LinkStatus { down_since: Some(Instant::now()), ..LinkStatus::default() };
    // Our own replicas follow our new history: they sync again.
    for r in repl.replicas.values() {
        r.handle.kill();
    }
    let generation = repl.generation;
    shared.knobs.repl_generation.store(generation, Ordering::Release);
    engine.set_follower(true);
    crate::persist::refresh_refusal(engine, hub);
    if let Some(shared) = shared.arc() {
        tokio::spawn(replica::run(shared, generation, host, port));
    }
}

/// Stops following the primary and accepts writes: a new replid, the old one kept as the
/// secondary so replicas and browsers of the old stream continue.
pub fn promote(engine: &mut Engine, hub: &mut HubState, shared: &Shared, why: &str) {
    let repl = &mut hub.repl;
    repl.primary = None;
    repl.generation += 1;
    repl.link = LinkStatus::default();
    repl.synced = false;
    shared.knobs.repl_generation.store(repl.generation, Ordering::Release);
    engine.set_follower(false);
    switch_stream(engine, hub, shared, new_replid());
    crate::persist::refresh_refusal(engine, hub);
    tracing::info!(reason = why, replid = %hub.replid, offset = engine.offset(), "MASTER MODE enabled");
}

/// `ROLE`.
pub fn cmd_role(engine: &Engine, hub: &HubState) -> Reply {
    let repl = &hub.repl;
    match &repl.primary {
        Some((host, port)) => {
            let state = if repl.link.up {
                "connected"
            } else if repl.link.syncing {
                "sync"
            } else if repl.link.handshake {
                "handshake"
            } else {
                "connect"
            };
            let offset = if repl.synced { engine.offset() as i64 } else { -1 };
            Reply::Array(vec![
                Reply::bulk("slave"),
                Reply::bulk(host.clone()),
                Reply::Int(*port as i64),
                Reply::bulk(state),
                Reply::Int(offset),
            ])
        }
        None => {
            let replicas = repl
                .replicas
                .values()
                .filter(|r| r.state == ReplicaState::Online)
                .map(|r| {
                    Reply::Array(vec![
                        Reply::bulk(r.ip.clone()),
                        Reply::bulk(r.port.to_string()),
                        Reply::bulk(r.ack.load(Ordering::Acquire).to_string()),
                    ])
                })
                .collect();
            Reply::Array(vec![Reply::bulk("master"), Reply::Int(engine.offset() as i64), Reply::Array(replicas)])
        }
    }
}

/// The fields of `INFO replication`, in Redis 7.0's order.
pub fn info_fields(engine: &Engine, hub: &HubState, shared: &Shared) -> Vec<(String, String)> {
    let repl = &hub.repl;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut w = |k: &str, v: String| out.push((k.to_string(), v));
    let now = now_ms();
    match &repl.primary {
        Some((host, port)) => {
            w("role", "slave".into());
            w("master_host", host.clone());
            w("master_port", port.to_string());
            w("master_link_status", if repl.link.up { "up" } else { "down" }.into());
            let io = repl.link.last_io.map(|t| t.elapsed().as_secs() as i64).unwrap_or(-1);
            w("master_last_io_seconds_ago", io.to_string());
            w("master_sync_in_progress", (repl.link.syncing as u8).to_string());
            let offset = engine.offset();
            w("slave_read_repl_offset", offset.to_string());
            w("slave_repl_offset", offset.to_string());
            if repl.link.syncing {
                w("master_sync_total_bytes", "-1".into());
                w("master_sync_read_bytes", repl.link.sync_read.to_string());
                w("master_sync_left_bytes", "-1".into());
                w("master_sync_perc", "0.00".into());
                w("master_sync_last_io_seconds_ago", io.max(0).to_string());
            }
            if !repl.link.up {
                let since = repl.link.down_since.map(|t| t.elapsed().as_secs() as i64).unwrap_or(-1);
                w("master_link_down_since_seconds", since.to_string());
            }
            w("slave_priority", "100".into());
            w("slave_read_only", (hub.settings.replica_read_only as u8).to_string());
            w("replica_announced", "1".into());
        }
        None => w("role", "master".into()),
    }
    let online: Vec<&ReplicaEntry> = repl.replicas.values().collect();
    w("connected_slaves", online.len().to_string());
    if repl.primary.is_none() && hub.settings.min_replicas_to_write > 0 {
        w("min_slaves_good_slaves", repl.good_replicas(hub.settings.min_replicas_max_lag, now).to_string());
    }
    for (i, r) in online.iter().enumerate() {
        let lag = now.saturating_sub(r.last_ack_ms.load(Ordering::Acquire)) / 1000;
        w(
            &format!("slave{}", i),
            format!("ip={},port={},state={},offset={},lag={}", r.ip, r.port, r.state.name(), r.ack.load(Ordering::Acquire), lag),
        );
    }
    w("master_failover_state", "no-failover".into());
    w("failover_epoch", repl.epoch.to_string());
    w("failover_timeout", hub.settings.failover_timeout.to_string());
    w("failover_designated_replica_timeout", repl.designated_ms.to_string());
    w("failover_fenced", (failover::fenced(hub) as u8).to_string());
    w("failover_promotions", repl.promotions.to_string());
    w("failover_discarded_groups", repl.discarded.to_string());
    w("master_replid", hub.replid.clone());
    let (replid2, second) = match &hub.persist.previous {
        Some((r, o)) => (r.clone(), (*o + 1) as i64),
        None => ("0000000000000000000000000000000000000000".to_string(), -1),
    };
    w("master_replid2", replid2);
    w("master_repl_offset", engine.offset().to_string());
    w("second_repl_offset", second.to_string());
    let mut hub_copy = None;
    if let Some(sync) = shared.sync() {
        // Never the sync lock here: INFO may come from the sync port's own message.
        hub_copy = Some(sync.backlog_view());
    } else if let Some(b) = &repl.own_backlog {
        hub_copy = Some((b.max_bytes(), b.base_offset(), b.bytes()));
    }
    let (size, base, held) = hub_copy.unwrap_or((hub.settings.sync_backlog_bytes as usize, engine.offset(), 0));
    w("repl_backlog_active", "1".into());
    w("repl_backlog_size", size.to_string());
    w("repl_backlog_first_byte_offset", (base + 1).to_string());
    w("repl_backlog_histlen", held.to_string());
    out
}


