//! The replica's end of the link: one task per `REPLICAOF`, reconnecting until the next.
//!
//! Handshake on the primary's RESP port: `AUTH` (with `masterauth`), `PING`,
//! `REPLCONF listening-port`, `REPLCONF recached-link 1`, `PSYNC replid offset` (`? -1`
//! when this hub holds nothing of the primary's stream). On `+FULLRESYNC` the snapshot
//! frames are loaded chunk by chunk while the group frames sent beside them are buffered;
//! once the snapshot ends it replaces the data set and the buffered groups after its
//! offset are applied. On `+CONTINUE` groups are applied at once. Every applied batch is
//! acknowledged (`REPLCONF ACK offset`), and an ack goes out at least every heartbeat.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use recached_engine::aof::{self, Decoded, Record};
use recached_engine::snapshot::stream::{self, Loader, CHUNK_HEADER_LEN, FILE_HEADER_LEN};
use recached_engine::ChangeGroup;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::link;
use crate::hub::{now_ms, Shared};

/// Longest wait for one handshake reply.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect delays: from the first to the longest.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Runs the link of `generation` until a later REPLICAOF (or shutdown) replaces it.
pub async fn run(shared: Arc<Shared>, generation: u64, host: String, port: u16) {
    let mut backoff = BACKOFF_MIN;
    let mut shutdown = shared.shutdown.subscribe();
    let mut last_logged: Option<String> = None;
    loop {
        if !current(&shared, generation) || shared.is_shutting_down() {
            return;
        }
        let started = Instant::now();
        let result = session(&shared, generation, &host, port).await;
        let promote_in = {
            let mut guard = shared.lock_when_idle().await;
            let core = &mut *guard;
            if core.hub.repl.generation != generation {
                return;
            }
            let link = &mut core.hub.repl.link;
            if link.up || link.down_since.is_none() {
                link.down_since = Some(Instant::now());
            }
            link.up = false;
            link.syncing = false;
            link.handshake = false;
            if let Err(e) = &result {
                link.last_error = Some(e.clone());
            }
            // The designated replica, holding the primary's data, promotes itself after
            // the failover timeout of silence.
            let timeout = Duration::from_millis(core.hub.settings.failover_timeout);
            match link.last_io.filter(|_| !timeout.is_zero() && core.hub.repl.synced) {
                Some(heard) if heard.elapsed() >= timeout => {
                    let silent = heard.elapsed().as_millis() as u64;
                    if super::failover::promote(&mut core.engine, &mut core.hub, &shared, silent) {
                        return;
                    }
                    Some(Duration::from_millis(100))
                }
                Some(heard) => Some(timeout - heard.elapsed()),
                None => None,
            }
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                if last_logged.as_deref() != Some(e.as_str()) {
                    tracing::warn!(primary = %format!("{}:{}", host, port), cause = %e, "replication link down; retrying");
                    last_logged = Some(e);
                }
            }
        }
        // A link that worked for a while retries at once; one that keeps failing backs off.
        if started.elapsed() > Duration::from_secs(5) {
            backoff = BACKOFF_MIN;
        }
        // Never sleep past the moment a promotion is due.
        let nap = promote_in.map_or(backoff, |p| p.min(backoff));
        tokio::select! {
            _ = tokio::time::sleep(nap) => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn current(shared: &Shared, generation: u64) -> bool {
    shared.knobs.repl_generation.load(Ordering::Acquire) == generation
}

/// Reads one reply line (without CRLF).
async fn read_line(stream: &mut TcpStream, rbuf: &mut BytesMut) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    loop {
        if let Some(pos) = rbuf.windows(2).position(|w| w == b"\r\n") {
            let line = rbuf.split_to(pos + 2);
            return Ok(String::from_utf8_lossy(&line[..pos]).into_owned());
        }
        if rbuf.len() > 64 * 1024 {
            return Err("reply line too long".into());
        }
        match tokio::time::timeout_at(deadline, stream.read_buf(rbuf)).await {
            Err(_) => return Err("timeout waiting for the primary's reply".into()),
            Ok(Ok(0)) => return Err("the primary closed the connection".into()),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("read: {}", e)),
        }
    }
}

async fn send(stream: &mut TcpStream, args: &[&[u8]]) -> Result<(), String> {
    stream.write_all(&link::command(args)).await.map_err(|e| format!("write: {}", e))
}

/// One connection: handshake, sync, stream. `Ok(())` when the generation changed.
async fn session(shared: &Arc<Shared>, generation: u64, host: &str, port: u16) -> Result<(), String> {
    let addr = format!("{}:{}", host, port);
    let mut stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(&addr)).await {
        Err(_) => return Err(format!("connecting to {}: timeout", addr)),
        Ok(Err(e)) => return Err(format!("connecting to {}: {}", addr, e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let (user, pass, listening, failover_ms) = {
        let mut core = shared.lock_when_idle().await;
        core.hub.repl.link.handshake = true;
        let s = &core.hub.settings;
        let port = if s.replica_announce_port == 0 { shared.tcp_port.load(Ordering::Relaxed) } else { s.replica_announce_port };
        (s.masteruser.clone(), s.masterauth.clone(), port, s.failover_timeout)
    };
    // Silence that ends the link: repl-timeout, or sooner the failover timeout.
    let mut silence = Duration::from_secs(shared.knobs.repl_timeout_secs.load(Ordering::Relaxed).max(1));
    if failover_ms > 0 {
        silence = silence.min(Duration::from_millis(failover_ms));
    }
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    if !pass.is_empty() {
        if user.is_empty() {
            send(&mut stream, &[b"AUTH", pass.as_bytes()]).await?;
        } else {
            send(&mut stream, &[b"AUTH", user.as_bytes(), pass.as_bytes()]).await?;
        }
        let line = read_line(&mut stream, &mut rbuf).await?;
        if !line.starts_with('+') {
            return Err(format!("AUTH with masterauth refused: {}", line.trim_start_matches('-')));
        }
    }
    send(&mut stream, &[b"PING"]).await?;
    let line = read_line(&mut stream, &mut rbuf).await?;
    if line.starts_with("-NOAUTH") {
        return Err("the primary requires a password: set masterauth (and masteruser)".into());
    }
    if !line.starts_with('+') {
        return Err(format!("PING: {}", line.trim_start_matches('-')));
    }
    send(&mut stream, &[b"REPLCONF", b"listening-port", listening.to_string().as_bytes()]).await?;
    let line = read_line(&mut stream, &mut rbuf).await?;
    if !line.starts_with('+') {
        return Err(format!("REPLCONF listening-port: {}", line.trim_start_matches('-')));
    }
    if failover_ms > 0 {
        // We are the designated replica: the primary takes writes on our lease.
        send(&mut stream, &[b"REPLCONF", b"failover-timeout", failover_ms.to_string().as_bytes()]).await?;
        let line = read_line(&mut stream, &mut rbuf).await?;
        if !line.starts_with('+') {
            return Err(format!("REPLCONF failover-timeout: {}", line.trim_start_matches('-')));
        }
    }
    send(&mut stream, &[b"REPLCONF", b"recached-link", b"1"]).await?;
    let line = read_line(&mut stream, &mut rbuf).await?;
    if !line.starts_with('+') {
        return Err(format!("the primary is not a Recached hub (REPLCONF recached-link 1: {}); a Recached replica syncs only from a Recached primary", line.trim_start_matches('-')));
    }
    let (want_id, want_offset) = {
        let core = shared.lock_when_idle().await;
        let offset = core.engine.offset();
        if core.hub.repl.synced {
            (core.hub.replid.clone(), offset as i64)
        } else {
            match &core.hub.persist.previous {
                Some((r, o)) if *o == offset => (r.clone(), offset as i64),
                _ if offset > 0 => (core.hub.replid.clone(), offset as i64),
                _ => ("?".to_string(), -1),
            }
        }
    };
    send(&mut stream, &[b"PSYNC", want_id.as_bytes(), want_offset.to_string().as_bytes()]).await?;
    let line = read_line(&mut stream, &mut rbuf).await?;
    let words: Vec<&str> = line.split(' ').collect();
    let mut loading = match words.as_slice() {
        ["+FULLRESYNC", id, off] => {
            let offset: u64 = off.parse().map_err(|_| format!("bad +FULLRESYNC: {}", line))?;
            tracing::info!(replid = %id, offset, "Full resync from the primary: loading its snapshot while buffering its stream");
            let mut core = shared.lock_when_idle().await;
            core.hub.repl.link.syncing = true;
            core.hub.repl.link.handshake = false;
            core.hub.repl.link.sync_read = 0;
            let databases = core.engine.dbs().len();
            Some(Incoming { replid: id.to_string(), snap: SnapIn::new(databases), buffered: Vec::new() })
        }
        ["+CONTINUE", rest @ ..] => {
            let mut guard = shared.lock_when_idle().await;
            let core = &mut *guard;
            let id = rest.first().map(|s| s.to_string()).unwrap_or_else(|| want_id.clone());
            if id != core.hub.replid {
                if id == want_id {
                    // The stream restored from our data (a restart): its id again.
                    super::adopt_replid(&mut core.engine, &mut core.hub, shared, &id);
                } else {
                    // The primary continues our stream under a new id (it restarted or
                    // was promoted): ours becomes the secondary id, as in PSYNC2.
                    super::switch_stream(&mut core.engine, &mut core.hub, shared, id);
                }
            }
            core.hub.repl.synced = true;
            let link = &mut core.hub.repl.link;
            link.up = true;
            link.handshake = false;
            link.down_since = None;
            link.last_error = None;
            tracing::info!(offset = core.engine.offset(), "MASTER <-> REPLICA sync: partial resynchronization accepted");
            None
        }
        _ => return Err(format!("PSYNC: {}", line.trim_start_matches('-'))),
    };
    let mut last_frame = Instant::now();
    let mut last_ack = Instant::now() - link::HEARTBEAT;
    let mut acked = u64::MAX;
    // The clock of the newest heartbeat received, echoed in every ack (the primary's
    // failover lease).
    let mut ping_ms = 0u64;
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        if !current(shared, generation) {
            return Ok(());
        }
        let mut groups: Vec<ChangeGroup> = Vec::new();
        let mut snapshot_done = false;
        let mut epoch = None;
        while let Some((tag, payload)) = link::take_frame(&mut rbuf)? {
            last_frame = Instant::now();
            match tag {
                link::SNAPSHOT => {
                    let Some(inc) = loading.as_mut() else { return Err("snapshot bytes outside a full sync".into()) };
                    if inc.snap.feed(&payload)? {
                        snapshot_done = true;
                    }
                }
                link::GROUPS => {
                    let mut buf = payload.freeze();
                    while !buf.is_empty() {
                        match aof::decode(&buf).map_err(|e| format!("bad group record: {}", e))? {
                            Decoded::Record(Record::Group { group, .. }, used) => {
                                match loading.as_mut() {
                                    Some(inc) => inc.buffered.push(group),
                                    None => groups.push(group),
                                }
                                buf = buf.slice(used..);
                            }
                            Decoded::Record(_, used) => buf = buf.slice(used..),
                            Decoded::Incomplete => return Err("a group record cut short".into()),
                        }
                    }
                }
                link::PING => {
                    if let Some((_, e, ms)) = link::parse_ping(&payload) {
                        epoch = Some(e);
                        ping_ms = ping_ms.max(ms);
                    }
                }
                _ => {}
            }
            if snapshot_done {
                break;
            }
        }
        if snapshot_done || !groups.is_empty() || epoch.is_some() {
            let offset = {
                let mut guard = shared.lock_when_idle().await;
                let core = &mut *guard;
                if core.hub.repl.generation != generation {
                    return Ok(());
                }
                let now = now_ms();
                core.hub.repl.link.last_io = Some(Instant::now());
                if let Some(e) = epoch {
                    core.hub.repl.link.primary_epoch = e;
                    if e > core.hub.repl.epoch {
                        // The primary's epoch is ours too: a later promotion goes above it.
                        core.hub.repl.epoch = e;
                        if let Err(err) = super::failover::save(&core.hub) {
                            tracing::error!(cause = %err, "cannot persist the failover epoch");
                        }
                    }
                }
                if let Some(inc) = loading.as_mut() {
                    core.hub.repl.link.sync_read = inc.snap.read;
                }
                if snapshot_done {
                    let inc = loading.take().expect("loading");
                    install(core, shared, inc, now)?;
                }
                // Our backlog keeps the stream too: our replicas and, after a promotion,
                // the old primary continue from it.
                super::keep_backlog(shared);
                for g in &groups {
                    if g.offset <= core.engine.offset() {
                        continue;
                    }
                    if let Err(e) = core.engine.apply_group(g, now) {
                        tracing::debug!(offset = g.offset, error = ?e, "a replicated change failed here");
                    }
                }
                core.after_batch(shared, now);
                core.engine.offset()
            };
            if loading.is_none() && offset != acked {
                stream.write_all(&link::ack(offset, ping_ms)).await.map_err(|e| format!("write: {}", e))?;
                acked = offset;
                last_ack = Instant::now();
            }
        }
        if last_ack.elapsed() >= link::HEARTBEAT {
            // While a full sync loads this replica holds nothing of the primary's yet: it
            // acknowledges offset 0 (and still echoes the heartbeat).
            let offset = if loading.is_some() { 0 } else { shared.lock_when_idle().await.engine.offset() };
            stream.write_all(&link::ack(offset, ping_ms)).await.map_err(|e| format!("write: {}", e))?;
            acked = offset;
            last_ack = Instant::now();
        }
        if last_frame.elapsed() >= silence {
            return Err(format!("timeout: nothing from the primary for {} ms", silence.as_millis()));
        }
        if snapshot_done && !rbuf.is_empty() {
            continue;
        }
        let wake = link::HEARTBEAT.saturating_sub(last_ack.elapsed()).min(silence.saturating_sub(last_frame.elapsed()));
        tokio::select! {
            r = stream.read_buf(&mut rbuf) => match r {
                Ok(0) => return Err("the primary closed the connection".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {}", e)),
            },
            _ = tokio::time::sleep(wake) => {}
            _ = crate::hub::stopped(&mut shutdown) => return Ok(()),
        }
    }
}

/// A full sync being received.
struct Incoming {
    replid: String,
    snap: SnapIn,
    buffered: Vec<ChangeGroup>,
}

/// Replaces the data set with the loaded snapshot and applies the groups buffered beside it.
fn install(core: &mut crate::hub::Core, shared: &Shared, inc: Incoming, now: u64) -> Result<(), String> {
    let at = inc.snap.at;
    let loaded = inc.snap.loader.finish(at).map_err(|e| format!("the primary's snapshot: {}", e))?;
    let keys = loaded.keys;
    let (meta, _aux) = stream::install(&mut core.engine, loaded, now);
    super::reset_stream(&mut core.hub, shared, &inc.replid, meta.offset);
    if let Some(sync) = shared.sync() {
        // Their copies are of the data replaced: they reconnect and sync in full.
        sync.lock().close_all("the hub's data was replaced by a full sync from its primary");
    }
    for g in inc.buffered.iter().filter(|g| g.offset > meta.offset) {
        if let Err(e) = core.engine.apply_group(g, now) {
            tracing::debug!(offset = g.offset, error = ?e, "a replicated change failed here");
        }
    }
    core.hub.repl.synced = true;
    let link = &mut core.hub.repl.link;
    link.up = true;
    link.syncing = false;
    link.down_since = None;
    link.last_error = None;
    // The AOF's base no longer matches the data: a rewrite makes a new one.
    if core.hub.persist.aof.is_some() {
        core.hub.persist.rewrite_scheduled = true;
    }
    tracing::info!(keys, offset = core.engine.offset(), buffered = inc.buffered.len(), "MASTER <-> REPLICA sync: Finished with success");
    Ok(())
}

/// A streamed snapshot read from pieces of any size.
struct SnapIn {
    buf: Vec<u8>,
    header: bool,
    loader: Loader,
    /// Bytes of the snapshot consumed (chunk positions for errors).
    at: u64,
    /// Bytes received.
    read: u64,
}

impl SnapIn {
    fn new(databases: usize) -> SnapIn {
        SnapIn { buf: Vec::new(), header: false, loader: Loader::new(databases, 1 << 40), at: 0, read: 0 }
    }

    /// Takes a piece; true once the end chunk was read.
    fn feed(&mut self, piece: &[u8]) -> Result<bool, String> {
        self.read += piece.len() as u64;
        self.buf.extend_from_slice(piece);
        let mut p = 0;
        if !self.header {
            if self.buf.len() < FILE_HEADER_LEN {
                return Ok(false);
            }
            stream::check_file_header(&self.buf[..FILE_HEADER_LEN]).map_err(|e| format!("the primary's snapshot: {}", e))?;
            self.header = true;
            p = FILE_HEADER_LEN;
            self.at = FILE_HEADER_LEN as u64;
        }
        while self.buf.len() - p >= CHUNK_HEADER_LEN {
            let mut h = [0u8; CHUNK_HEADER_LEN];
            h.copy_from_slice(&self.buf[p..p + CHUNK_HEADER_LEN]);
            let header = stream::chunk_header(&h);
            let need = CHUNK_HEADER_LEN as u64 + header.len;
            if ((self.buf.len() - p) as u64) < need {
                break;
            }
            let need = need as usize;
            self.loader
                .chunk(self.at, header, &self.buf[p + CHUNK_HEADER_LEN..p + need])
                .map_err(|e| format!("the primary's snapshot: {}", e))?;
            self.at += need as u64;
            p += need;
        }
        self.buf.drain(..p);
        if self.loader.ended() && !self.buf.is_empty() {
            return Err("the primary's snapshot: bytes after its end chunk".into());
        }
        Ok(self.loader.ended())
    }
}
