//! The primary's end of a replication link: a RESP connection that sent `PSYNC` becomes
//! a replica's feed.
//!
//! `PSYNC replid offset` continues from the backlog when it holds every group after
//! `offset` of that stream (or of the stream ours continues, PSYNC2's secondary id):
//! `+CONTINUE <replid>`, then the groups. Otherwise `+FULLRESYNC <replid> <offset>`: a
//! forkless cut of the engine at `offset` is streamed from memory as snapshot frames while
//! the groups after `offset` are sent beside it as they commit (the replica buffers them
//! while it loads, as in Valkey's dual-channel replication), so the stream never waits in
//! this hub's memory for the snapshot to finish, and no temp file is written.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use recached_engine::resp::frame::{take_command, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{link, ReplicaEntry, ReplicaState};
use crate::hub::{now_ms, ClientHandle, Shared};
use crate::persist::{Job, JobKind};
use crate::pubsub::ClientId;

/// Frames the stream itself queues (the +FULLRESYNC line, snapshot pieces, heartbeats):
/// never counted against `client-output-buffer-limit replica`, which bounds the groups.
const NO_LIMIT: crate::config::BufferLimit = crate::config::BufferLimit { hard: 0, soft: 0, soft_secs: 0 };

/// Snapshot bytes queued for the replica above which the cut waits for the socket.
const BULK_WINDOW: usize = 8 << 20;

/// What the connection learned before `PSYNC`.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// `REPLCONF listening-port`.
    pub listening_port: u16,
    /// `REPLCONF recached-link 1` was sent: the peer speaks this link format.
    pub capa: bool,
    /// `REPLCONF failover-timeout <ms>`: the peer is the designated replica.
    pub failover_ms: u64,
}

/// Serves a replica on `stream` until it goes away. `psync` is the `PSYNC` command;
/// `input` the bytes read after it.
pub async fn serve(shared: Arc<Shared>, mut stream: TcpStream, input: BytesMut, handle: Arc<ClientHandle>, id: ClientId, psync: Vec<Bytes>, hs: Handshake) {
    let peer_ip = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let want_id = String::from_utf8_lossy(&psync[1]).into_owned();
    let want_offset = std::str::from_utf8(&psync[2]).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(-1);
    let ack = Arc::new(AtomicU64::new(0));
    let last_ack_ms = Arc::new(AtomicU64::new(now_ms()));
    let cancel = Arc::new(AtomicBool::new(false));
    let decided: Result<bool, &str> = 'decide: {
        let mut guard = shared.lock_when_idle().await;
        let core = &mut *guard;
        if !hs.capa {
            break 'decide Err("-ERR this primary is a Recached hub: only a Recached replica can sync from it (REPLCONF recached-link 1)\r\n");
        }
        if core.hub.repl.is_replica() && !core.hub.repl.link.up {
            break 'decide Err("-NOMASTERLINK Can't SYNC while not connected with my master\r\n");
        }
        // From now on the backlog keeps what this replica may need to continue.
        super::keep_backlog(&shared);
        if hs.failover_ms > 0 && core.hub.repl.designated_ms != hs.failover_ms {
            // From now on writes need this replica's lease; persisted, so a restart of
            // this primary does not forget it while the replica might promote.
            core.hub.repl.designated_ms = hs.failover_ms;
            if let Err(e) = super::failover::save(&core.hub) {
                tracing::error!(cause = %e, "cannot persist the designated replica");
            }
            tracing::info!(replica = %peer_ip, timeout_ms = hs.failover_ms, "designated replica attached: writes take a lease of half its failover timeout");
        }
        let replid = core.hub.replid.clone();
        let offset = want_offset.max(0) as u64;
        let continues = want_offset >= 0 && super::with_backlog(&shared, &mut core.hub, |b| b.can_continue(&want_id, offset)).unwrap_or(false);
        let entry = |state| ReplicaEntry {
            handle: handle.clone(),
            ip: peer_ip.clone(),
            port: hs.listening_port,
            state,
            ack: ack.clone(),
            last_ack_ms: last_ack_ms.clone(),
        };
        if continues {
            let mut out = format!("+CONTINUE {}\r\n", replid).into_bytes();
            let mut records = Vec::new();
            super::with_backlog(&shared, &mut core.hub, |b| {
                for g in b.since(offset) {
                    recached_engine::aof::encode_group(g, &[], &mut records);
                }
            });
            if !records.is_empty() {
                link::frame(link::GROUPS, &records, &mut out);
            }
            handle.push(&out, NO_LIMIT);
            ack.store(offset, Ordering::Release);
            core.hub.repl.replicas.insert(id, entry(ReplicaState::Online));
            core.hub.repl.partial_ok += 1;
            tracing::info!(replica = %peer_ip, port = hs.listening_port, offset, "Partial resynchronization request accepted. Sending {} bytes of backlog", records.len());
            crate::persist::refresh_refusal(&mut core.engine, &core.hub);
            Ok(false)
        } else {
            if want_id != "?" {
                core.hub.repl.partial_err += 1;
                tracing::info!(replica = %peer_ip, %want_id, want_offset, "Partial resynchronization not accepted: full sync");
            }
            core.hub.repl.replicas.insert(id, entry(ReplicaState::WaitCut));
            Ok(true)
        }
    };
    let full = match decided {
        Ok(full) => full,
        Err(line) => {
            let _ = stream.write_all(line.as_bytes()).await;
            return;
        }
    };
    if full {
        tokio::spawn(full_sync(shared.clone(), id, handle.clone(), cancel.clone()));
    }
    let lease = if hs.failover_ms > 0 { Some((shared.lock_when_idle().await.hub.repl.lease_until.clone(), hs.failover_ms)) } else { None };
    let why = pump(&shared, id, &mut stream, input, &handle, &ack, &last_ack_ms, lease).await;
    cancel.store(true, Ordering::Release);
    tracing::info!(replica = %peer_ip, port = hs.listening_port, cause = %why, "Connection with replica lost");
    let mut core = shared.lock_when_idle().await;
    core.hub.repl.replicas.remove(&id);
    let core = &mut *core;
    crate::persist::refresh_refusal(&mut core.engine, &core.hub);
}

/// Moves queued frames to the socket, sends heartbeats and reads the replica's acks.
#[allow(clippy::too_many_arguments)]
async fn pump(
    shared: &Shared,
    id: ClientId,
    stream: &mut TcpStream,
    mut rbuf: BytesMut,
    handle: &ClientHandle,
    ack: &AtomicU64,
    last_ack_ms: &AtomicU64,
    lease: Option<(Arc<AtomicU64>, u64)>,
) -> String {
    let mut wbuf = Vec::new();
    let mut shutdown = shared.shutdown.subscribe();
    let mut beat = tokio::time::interval(link::HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limits = Limits { max_bulk_len: 1 << 10, max_multibulk_len: 16, ..Limits::default() };
    let mut heard = Instant::now();
    loop {
        // Acks that came with the PSYNC or since.
        loop {
            match take_command(&mut rbuf, &limits) {
                Ok(Some(args)) => {
                    heard = Instant::now();
                    if args.len() >= 3 && args[0].eq_ignore_ascii_case(b"replconf") && args[1].eq_ignore_ascii_case(b"ack") {
                        if let Some(off) = std::str::from_utf8(&args[2]).ok().and_then(|s| s.parse::<u64>().ok()) {
                            ack.fetch_max(off, Ordering::AcqRel);
                            last_ack_ms.store(now_ms(), Ordering::Release);
                            shared.repl_acks.notify_waiters();
                        }
                        // The heartbeat it echoes proves it hears us: the lease runs from there.
                        let echoed = args.get(3).filter(|a| a.eq_ignore_ascii_case(b"ping")).and(args.get(4));
                        if let (Some((until, timeout)), Some(ms)) = (&lease, echoed.and_then(|a| std::str::from_utf8(a).ok()?.parse::<u64>().ok())) {
                            super::failover::renew(until, ms, *timeout);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return format!("protocol error from the replica: {}", e),
            }
        }
        if handle.is_killed() {
            return "dropped".into();
        }
        handle.take_into(&mut wbuf);
        if !wbuf.is_empty() {
            if let Err(e) = stream.write_all(&wbuf).await {
                return format!("write: {}", e);
            }
            wbuf.clear();
            if wbuf.capacity() > 1 << 20 {
                wbuf = Vec::new();
            }
            continue;
        }
        let timeout = shared.knobs.repl_timeout_secs.load(Ordering::Relaxed).max(1);
        if heard.elapsed().as_secs() >= timeout {
            return format!("timeout: nothing from the replica for {} s", timeout);
        }
        tokio::select! {
            biased;
            _ = handle.notify.notified() => {}
            _ = crate::hub::stopped(&mut shutdown) => return "shutdown".into(),
            r = stream.read_buf(&mut rbuf) => match r {
                Ok(0) => return "closed by the replica".into(),
                Ok(_) => {}
                Err(e) => return format!("read: {}", e),
            },
            _ = beat.tick() => {
                // Through the outbox, under the lock: behind every group already queued,
                // and never before the +FULLRESYNC line.
                let core = shared.lock_when_idle().await;
                if core.hub.repl.replicas.get(&id).is_some_and(|r| r.state != ReplicaState::WaitCut) {
                    handle.push(&link::ping(core.engine.offset(), core.hub.repl.epoch, super::failover::mono_ms()), NO_LIMIT);
                }
            }
        }
    }
}

/// The full sync: waits for the engine's cut to be free, takes it, and streams it to the
/// replica as snapshot frames while the feed sends the groups after its offset.
async fn full_sync(shared: Arc<Shared>, id: ClientId, handle: Arc<ClientHandle>, cancel: Arc<AtomicBool>) {
    let job_id;
    loop {
        if cancel.load(Ordering::Acquire) {
            return;
        }
        {
            let mut guard = shared.lock_when_idle().await;
            let core = &mut *guard;
            if !core.hub.repl.replicas.contains_key(&id) {
                return;
            }
            if core.hub.persist.job.is_none() && !core.engine.cut_running() {
                let replid = core.hub.replid.clone();
                let offset = match core.engine.begin_cut(&replid, now_ms(), &[]) {
                    Ok(o) => o,
                    Err(_) => continue,
                };
                let job = Job {
                    id: crate::persist::next_job_id(),
                    kind: JobKind::Sync,
                    started: Instant::now(),
                    dirty_at_start: core.hub.stats.dirty,
                    keys_total: core.engine.key_count() as u64,
                    keys_done: Arc::new(AtomicU64::new(0)),
                    cancel: cancel.clone(),
                };
                job_id = job.id;
                core.hub.persist.job = Some(job);
                handle.push(format!("+FULLRESYNC {} {}\r\n", replid, offset).as_bytes(), NO_LIMIT);
                if let Some(r) = core.hub.repl.replicas.get_mut(&id) {
                    // It holds nothing of ours until it loaded the snapshot and says so.
                    r.state = ReplicaState::SendBulk;
                    r.ack.store(0, Ordering::Release);
                }
                core.hub.repl.full_syncs += 1;
                tracing::info!(replica = id, offset, keys = core.engine.key_count(), "Starting a full sync: snapshot streamed from memory, the stream beside it");
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let mut sent = 0u64;
    let ok = loop {
        if cancel.load(Ordering::Acquire) || handle.is_killed() {
            break false;
        }
        while handle.pending() > BULK_WINDOW {
            if cancel.load(Ordering::Acquire) || handle.is_killed() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let s = crate::persist::step(&shared);
        if s.aborted {
            break false;
        }
        if !s.bytes.is_empty() {
            let mut out = Vec::with_capacity(s.bytes.len() + 5);
            link::frame(link::SNAPSHOT, &s.bytes, &mut out);
            sent += s.bytes.len() as u64;
            handle.push(&out, NO_LIMIT);
        }
        if s.done {
            break true;
        }
        tokio::task::yield_now().await;
    };
    let mut guard = shared.lock_when_idle().await;
    let core = &mut *guard;
    if core.hub.persist.job.as_ref().is_some_and(|j| j.id == job_id) {
        core.hub.persist.job = None;
        if core.engine.cut_running() {
            core.engine.abort_cut();
        }
    }
    if let Some(r) = core.hub.repl.replicas.get_mut(&id) {
        if ok {
            r.state = ReplicaState::Online;
            r.last_ack_ms.store(now_ms(), Ordering::Release);
        }
    }
    if ok {
        tracing::info!(replica = id, bytes = sent, ms = started.elapsed().as_millis() as u64, "Synchronization with replica succeeded (snapshot sent)");
    } else {
        handle.kill();
    }
    crate::persist::refresh_refusal(&mut core.engine, &core.hub);
}
