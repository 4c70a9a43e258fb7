//! Automatic failover of one designated replica, fenced so the two nodes never both take
//! writes.
//!
//! - The designated replica runs with `failover-timeout T` (ms) and tells its primary so
//!   in the handshake (`REPLCONF failover-timeout T`). The primary records that it has a
//!   designated replica (persisted in `failover.state` in `dir`) and from then on takes
//!   writes only while it holds a lease: every heartbeat it sends carries its own clock,
//!   the replica echoes the newest one it received in its ack, and the lease runs until
//!   that heartbeat's send time + T/2. A primary cut off from its replica, in either
//!   direction, stops taking writes within T/2 of the last heartbeat that got through.
//! - The replica promotes itself when it has heard nothing (no frame, not even a
//!   heartbeat) for T since its last frame: a new epoch (one above any it has seen),
//!   persisted and fsynced before its first write, a new replid with the old one kept as
//!   the secondary (PSYNC2), one log line.
//! - Heartbeats are 100 ms apart, so a silent partition is seen as surely as a closed
//!   socket. Promotion comes T after the last frame (+ up to 100 ms of check interval);
//!   the fence falls T/2 after the last heartbeat the replica echoed, which was sent
//!   before that frame arrived: the fence always comes first.
//! - The promoted node then tells the old primary, as soon as it can reach it,
//!   `RECACHED.DEMOTE epoch host port replid offset`: a node of a lower epoch becomes a
//!   replica of the new primary, counts the change groups past `offset` of `replid` it
//!   held (writes never confirmed to any replica) as discarded, logs them, and resyncs.
//!
//! What is not promised: with no witness, a primary whose designated replica dies stays
//! fenced until the replica is back or an operator lifts the fence (`REPLICAOF NO ONE` on
//! the primary). There is no multi-replica quorum.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use recached_engine::{Engine, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::link;
use crate::hub::{HubState, Shared};

/// The file the epoch and the designated-replica flag live in, in `dir`.
pub const STATE_FILE: &str = "failover.state";

/// Milliseconds on this process's monotonic clock (leases never follow wall-clock steps).
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What `failover.state` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The highest failover epoch this node took part in.
    pub epoch: u64,
    /// As a primary: a designated replica attached, with this failover timeout (ms; 0:
    /// none), so writes need its lease.
    pub designated_ms: u64,
    /// The primary a failover made this node follow (`RECACHED.DEMOTE`): a restart follows
    /// it again, whatever the configured `replicaof` says, until a promotion clears it.
    pub follow: Option<(String, u16)>,
}

fn state_path(settings: &crate::config::Settings) -> PathBuf {
    Path::new(&settings.dir).join(STATE_FILE)
}

/// Reads the state (`Default` when the file is missing).
pub fn load(settings: &crate::config::Settings) -> Result<State, String> {
    let path = state_path(settings);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(e) => return Err(format!("cannot read {}: {}", path.display(), e)),
    };
    let mut st = State::default();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["epoch", v] if v.parse::<u64>().is_ok() => st.epoch = v.parse().unwrap_or(0),
            ["designated", v] if v.parse::<u64>().is_ok() => st.designated_ms = v.parse().unwrap_or(0),
            ["follow", host, port] if port.parse::<u16>().is_ok() => st.follow = Some((host.to_string(), port.parse().unwrap_or(0))),
            [] => {}
            _ => return Err(format!("{}: bad line '{}' (delete the file to start over)", path.display(), line)),
        }
    }
    Ok(st)
}

/// Writes the state durably (temp file, fsync, rename, fsync of the directory).
pub fn store(settings: &crate::config::Settings, st: &State) -> Result<(), String> {
    let path = state_path(settings);
    let mut text = format!("epoch {}\ndesignated {}\n", st.epoch, st.designated_ms);
    if let Some((host, port)) = &st.follow {
        text.push_str(&format!("follow {} {}\n", host, port));
    }
    crate::persist::files::ensure_dir(crate::persist::files::parent(&path))
        .and_then(|_| crate::persist::files::write_atomic(&path, text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {}", path.display(), crate::persist::files::os_text(&e)))
}

/// Persists the hub's current epoch and designated flag.
pub fn save(hub: &HubState) -> Result<(), String> {
    store(&hub.settings, &State { epoch: hub.repl.epoch, designated_ms: hub.repl.designated_ms, follow: hub.repl.follow.clone() })
}

/// Whether this primary must refuse writes now: it has a designated replica and no lease.
pub fn fenced(hub: &HubState) -> bool {
    !hub.repl.is_replica() && hub.repl.designated_ms > 0 && mono_ms() >= hub.repl.lease_until.load(Ordering::Acquire)
}

/// The replica echoed heartbeat `sent_ms` (our clock): the lease runs to `sent_ms + T/2`.
pub fn renew(hub_lease: &std::sync::atomic::AtomicU64, sent_ms: u64, timeout_ms: u64) {
    hub_lease.fetch_max(sent_ms + timeout_ms / 2, Ordering::AcqRel);
}

/// Promotes this replica after `silent_ms` without a word from its primary. Returns
/// false (and stays a replica) when the new epoch cannot be persisted.
pub fn promote(engine: &mut Engine, hub: &mut HubState, shared: &Shared, silent_ms: u64) -> bool {
    let Some((host, port)) = hub.repl.primary.clone() else { return false };
    let epoch = hub.repl.epoch.max(hub.repl.link.primary_epoch) + 1;
    // Durable before the first write this node accepts as a primary.
    if let Err(e) = store(&hub.settings, &State { epoch, designated_ms: 0, follow: None }) {
        tracing::error!(cause = %e, "FAILOVER not done: the new epoch cannot be persisted");
        return false;
    }
    hub.repl.epoch = epoch;
    hub.repl.designated_ms = 0;
    hub.repl.follow = None;
    let (old_replid, offset) = (hub.replid.clone(), engine.offset());
    super::promote(engine, hub, shared, "failover");
    hub.repl.promotions += 1;
    tracing::warn!(
        "FAILOVER: no word from primary {}:{} for {} ms; promoted to primary with epoch {} at offset {}",
        host,
        port,
        silent_ms,
        epoch,
        offset
    );
    if let Some(shared) = shared.arc() {
        let generation = hub.repl.generation;
        tokio::spawn(demote_old(shared, generation, host, port, epoch, old_replid, offset));
    }
    true
}

/// `RECACHED.DEMOTE epoch host port replid offset`: a node of a newer epoch is primary at
/// `host:port`; it was promoted at `offset` of stream `replid`.
pub fn cmd_demote(engine: &mut Engine, hub: &mut HubState, shared: &Shared, args: &[Bytes]) -> Reply {
    let text = |i: usize| String::from_utf8_lossy(&args[i]).into_owned();
    let (Ok(epoch), Ok(port), Ok(offset)) = (text(1).parse::<u64>(), text(3).parse::<u16>(), text(5).parse::<u64>()) else {
        return Reply::err("ERR syntax error");
    };
    if epoch <= hub.repl.epoch {
        return Reply::err(format!("ERR stale epoch {} (this node is at {})", epoch, hub.repl.epoch));
    }
    let (host, replid) = (text(2), text(4));
    let ours = hub.replid == replid || hub.persist.previous.as_ref().is_some_and(|(r, _)| *r == replid);
    let discarded = if ours { engine.offset().saturating_sub(offset) } else { 0 };
    let follow = Some((host.clone(), port));
    if let Err(e) = store(&hub.settings, &State { epoch, designated_ms: 0, follow: follow.clone() }) {
        return Reply::err(format!("ERR {}", e));
    }
    hub.repl.epoch = epoch;
    hub.repl.designated_ms = 0;
    hub.repl.follow = follow;
    hub.repl.discarded += discarded;
    tracing::warn!(
        "DEMOTED: {}:{} is primary with epoch {}; following it, and discarding {} change group(s) past offset {} that no replica confirmed",
        host,
        port,
        epoch,
        discarded,
        offset
    );
    super::become_replica(engine, hub, shared, host, port);
    Reply::Ok
}

/// After a promotion: tells the old primary to follow us as soon as it can be reached.
async fn demote_old(shared: Arc<Shared>, generation: u64, host: String, port: u16, epoch: u64, replid: String, offset: u64) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut delay = Duration::from_millis(100);
    loop {
        if shared.knobs.repl_generation.load(Ordering::Acquire) != generation || shared.is_shutting_down() {
            return;
        }
        match tell(&shared, &host, port, epoch, &replid, offset).await {
            Ok(()) => {
                tracing::info!(%host, port, epoch, "the old primary follows this node now");
                return;
            }
            Err(Permanent(why)) => {
                tracing::info!(%host, port, cause = %why, "the old primary cannot be demoted");
                return;
            }
            Err(Retry(why)) => tracing::debug!(%host, port, cause = %why, "the old primary is not reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

enum Failure {
    Retry(String),
    Permanent(String),
}
use Failure::{Permanent, Retry};

async fn tell(shared: &Shared, host: &str, port: u16, epoch: u64, replid: &str, offset: u64) -> Result<(), Failure> {
    let addr = format!("{}:{}", host, port);
    let mut s = match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(Retry(e.to_string())),
        Err(_) => return Err(Retry("connect timeout".into())),
    };
    // The address the old primary reaches us at: the announced one, else ours on this
    // very connection.
    let seen = s.local_addr().map(|a| a.ip().to_string()).map_err(|e| Retry(e.to_string()))?;
    let (user, pass, me, my_port) = {
        let core = shared.lock_when_idle().await;
        let st = &core.hub.settings;
        let me = if st.replica_announce_ip.is_empty() { seen } else { st.replica_announce_ip.clone() };
        let port = if st.replica_announce_port == 0 { shared.tcp_port.load(Ordering::Relaxed) } else { st.replica_announce_port };
        (st.masteruser.clone(), st.masterauth.clone(), me, port)
    };
    let mut out = Vec::new();
    if !pass.is_empty() {
        if user.is_empty() {
            out.extend(link::command(&[b"AUTH", pass.as_bytes()]));
        } else {
            out.extend(link::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]));
        }
    }
    out.extend(link::command(&[
        b"RECACHED.DEMOTE",
        epoch.to_string().as_bytes(),
        me.as_bytes(),
        my_port.to_string().as_bytes(),
        replid.as_bytes(),
        offset.to_string().as_bytes(),
    ]));
    s.write_all(&out).await.map_err(|e| Retry(e.to_string()))?;
    let mut buf = BytesMut::new();
    let replies = if pass.is_empty() { 1 } else { 2 };
    let mut lines = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while lines.len() < replies {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = buf.split_to(pos + 2);
            lines.push(String::from_utf8_lossy(&line[..pos]).into_owned());
            continue;
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => return Err(Retry("no reply".into())),
            Ok(Err(e)) => return Err(Retry(e.to_string())),
            Ok(Ok(_)) => {}
        }
    }
    let last = lines.pop().unwrap_or_default();
    if last.starts_with('+') {
        Ok(())
    } else if last.contains("stale epoch") {
        Err(Permanent(last))
    } else {
        Err(Retry(last))
    }
}
