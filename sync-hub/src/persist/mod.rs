//! Persistence of the native hub: snapshots (`SAVE`, `BGSAVE`, save rules, `dump.rcs`)
//! and the append-only file, with nothing acknowledged lost.
//!
//! # Layout
//! - [`gate`]: when a reply may leave (written, or fsynced under `appendfsync always`).
//! - [`aof`]: the multi-part AOF: appender, fsync thread (group commit), rewrite, load,
//!   `--check-aof`.
//! - [`snapshot`]: streamed snapshot files: reading, and the background writer.
//! - [`files`]: atomic replacement (temp, fsync, rename, fsync the directory).
//!
//! # How it fits the hub
//! Every committed group reaches [`append`] under the engine lock, before any reply, sync
//! ack or HTTP response of the batch is released, and in commit order (the sync port's
//! own groups are appended before its acks are queued). `BGSAVE` and AOF rewrites are
//! forkless cuts of the engine (`recached_engine::snapshot::cut`) driven by a task in short
//! steps under the lock, their bytes written by a thread. A cron task (every 100 ms)
//! applies the save rules and the automatic rewrite, retries a failed AOF write and keeps
//! the `MISCONF` refusal in step. At start, [`startup`] loads the AOF (if on) or the
//! snapshot while clients get `-LOADING`.

pub mod aof;
pub mod files;
pub mod gate;
pub mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use recached_engine::snapshot::stream::{self, StreamMeta};
use recached_engine::sync::{DedupeChange, DedupeEntry};
use recached_engine::{ChangeGroup, Engine, Reply};

use crate::config::Settings;
use crate::hub::{now_ms, Core, HubState, Shared};
use aof::{Aof, AofPaths};
use gate::Mode;

/// Redis's `-MISCONF` after a failed background save with save rules set.
pub const BGSAVE_ERR: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";
/// Redis's reply to commands while the dataset loads.
pub const LOADING: &str = "LOADING Redis is loading the dataset in memory";
/// Seconds before a failed automatic save is tried again (Redis's `CONFIG_BGSAVE_RETRY_DELAY`).
const BGSAVE_RETRY: Duration = Duration::from_secs(5);
/// How long one step of a cut may hold the engine lock.
const STEP_TIME: Duration = Duration::from_micros(250);
/// Entries per `cut_step` call inside a step.
const STEP_ENTRIES: usize = 256;
/// Period of the cron task.
const CRON: Duration = Duration::from_millis(100);

/// What a background job writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// `BGSAVE`: the snapshot file.
    Save,
    /// `BGREWRITEAOF` (and the first base when the AOF is switched on at runtime): a new
    /// AOF base.
    Rewrite,
    /// A replica's full sync: the cut streamed to its socket (`crate::repl::primary`).
    Sync,
}

/// A background save or rewrite in progress.
#[derive(Debug)]
pub struct Job {
    /// Which job (a finished job only clears its own state).
    pub id: u64,
    /// What it writes.
    pub kind: JobKind,
    /// When it started.
    pub started: Instant,
    /// The dirty counter when it started (what a successful save makes clean).
    pub dirty_at_start: u64,
    /// Keys in the state it saves.
    pub keys_total: u64,
    /// Keys written so far.
    pub keys_done: Arc<AtomicU64>,
    /// Set to stop it (shutdown, AOF switched off).
    pub cancel: Arc<AtomicBool>,
}

/// How SHUTDOWN was asked to treat the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SaveOnExit {
    /// Save when save rules are set.
    #[default]
    Default,
    /// `SHUTDOWN SAVE`.
    Save,
    /// `SHUTDOWN NOSAVE`.
    NoSave,
}

/// The persistence state, under the engine lock (in [`HubState`]).
#[derive(Default)]
pub struct Persist {
    /// The open AOF.
    pub aof: Option<Aof>,
    /// The background job.
    pub job: Option<Job>,
    /// `BGSAVE SCHEDULE` (or a BGSAVE inside EXEC) waiting for the job to end.
    pub save_scheduled: bool,
    /// `BGREWRITEAOF` waiting for the job to end.
    pub rewrite_scheduled: bool,
    /// Unix seconds of the last successful save (start time at boot).
    pub lastsave: u64,
    /// Whether the last background save succeeded.
    pub last_bgsave_ok: bool,
    /// Seconds the last background save took (-1: none yet).
    pub last_bgsave_secs: i64,
    /// When the last automatic save was tried.
    pub last_bgsave_try: Option<Instant>,
    /// When the last rewrite was tried (failed rewrites back off from it).
    pub last_rewrite_try: Option<Instant>,
    /// Saves started (`rdb_saves`).
    pub saves: u64,
    /// Whether the last rewrite succeeded.
    pub last_rewrite_ok: bool,
    /// Seconds the last rewrite took (-1: none yet).
    pub last_rewrite_secs: i64,
    /// Rewrites started.
    pub rewrites: u64,
    /// Rewrites failed in a row.
    pub rewrite_failures: u64,
    /// Keys the last load read, and kept expired.
    pub loaded_keys: u64,
    /// The stream this run continues (restored from the data): id and offset.
    pub previous: Option<(String, u64)>,
    /// The final save and fsync ran (SHUTDOWN did them).
    pub finished: bool,
    /// What SHUTDOWN asked for the save at exit.
    pub exit: SaveOnExit,
}

impl Persist {
    /// A fresh state: no save yet, everything ok.
    pub fn new() -> Persist {
        Persist { lastsave: now_ms() / 1000, last_bgsave_ok: true, last_bgsave_secs: -1, last_rewrite_ok: true, last_rewrite_secs: -1, ..Persist::default() }
    }

    /// Whether a background job runs.
    pub fn busy(&self) -> bool {
        self.job.is_some()
    }

    /// The kind of job running.
    pub fn running(&self) -> Option<JobKind> {
        self.job.as_ref().map(|j| j.kind)
    }
}

/// The save rules of `save`: (seconds, changes) pairs.
pub fn save_rules(settings: &Settings) -> Vec<(u64, u64)> {
    let n: Vec<u64> = settings.save.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    n.chunks(2).filter(|c| c.len() == 2).map(|c| (c[0], c[1])).collect()
}

/// The snapshot file: `dir/dbfilename`.
pub fn dump_path(settings: &Settings) -> PathBuf {
    Path::new(&settings.dir).join(&settings.dbfilename)
}

/// The AOF's place: `dir/appenddirname`, files named after `appendfilename`.
pub fn aof_paths(settings: &Settings) -> AofPaths {
    AofPaths { dir: Path::new(&settings.dir).join(&settings.appenddirname), name: settings.appendfilename.clone() }
}

/// The refusal writes get now: the hub cannot persist them (`MISCONF`), or replication
/// says no (`NOREPLICAS`, `READONLY`), in Redis's order.
fn refusal(hub: &HubState) -> Option<Reply> {
    if let Some(aof) = &hub.persist.aof {
        if let Some(e) = aof.write_error.clone().or_else(|| aof.fsync_error()) {
            return Some(Reply::err(format!("MISCONF Errors writing to the AOF file: {}", e)));
        }
    }
    let rdb_failed = hub.settings.stop_writes_on_bgsave_error && !save_rules(&hub.settings).is_empty() && !hub.persist.last_bgsave_ok;
    if rdb_failed {
        return Some(Reply::err(BGSAVE_ERR));
    }
    crate::repl::refusal(hub)
}

/// Brings the engine's write refusal in line with the persistence state.
pub fn refresh_refusal(engine: &mut Engine, hub: &HubState) {
    let want = refusal(hub);
    if engine.write_refusal() != want.as_ref() {
        engine.set_write_refusal(want);
    }
}

/// Appends committed groups (and the dedupe changes a sync message made) to the AOF.
/// Under the engine lock, before the batch's replies are released. Groups the AOF already
/// has are skipped, so the sync port may append its own groups before the shared
/// post-batch path sees them again.
pub fn append(engine: &mut Engine, hub: &mut HubState, groups: &[ChangeGroup], dedupe: &[DedupeChange]) {
    let Some(aof) = hub.persist.aof.as_mut() else { return };
    if aof.append(groups, dedupe).is_err() && engine.write_refusal().is_none() {
        refresh_refusal(engine, hub);
    }
}

/// The dedupe memory of the sync port, for a snapshot's aux chunk.
fn dedupe_aux(shared: &Shared) -> Vec<u8> {
    let entries: Vec<DedupeEntry> = shared.sync().map(|s| s.lock().hub.export_dedupe()).unwrap_or_default();
    aof::encode_dedupe(entries)
}

/// The stream id snapshots record.
fn replid(hub: &HubState) -> String {
    hub.replid.clone()
}

/// Why a job could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// Another job runs.
    Busy(JobKind),
    /// The files could not be prepared.
    Io(String),
}

static JOB_IDS: AtomicU64 = AtomicU64::new(1);

/// A fresh job id.
pub fn next_job_id() -> u64 {
    JOB_IDS.fetch_add(1, Ordering::Relaxed)
}

/// Starts a background save or rewrite (the caller checked nothing runs). Under the lock.
pub fn start_job(engine: &mut Engine, hub: &mut HubState, shared: &Shared, kind: JobKind) -> Result<(), StartError> {
    if let Some(k) = hub.persist.running() {
        return Err(StartError::Busy(k));
    }
    let Some(shared) = shared.arc() else { return Err(StartError::Io("the hub is stopping".into())) };
    let job = Job {
        id: next_job_id(),
        kind,
        started: Instant::now(),
        dirty_at_start: hub.stats.dirty,
        keys_total: engine.key_count() as u64,
        keys_done: Arc::new(AtomicU64::new(0)),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let (id, cancel, done) = (job.id, job.cancel.clone(), job.keys_done.clone());
    match kind {
        JobKind::Save => {
            hub.persist.saves += 1;
            hub.persist.last_bgsave_try = Some(Instant::now());
            tracing::info!("Background saving started");
        }
        JobKind::Rewrite => {
            hub.persist.rewrites += 1;
            hub.persist.last_rewrite_try = Some(Instant::now());
            tracing::info!("Background append only file rewriting started");
        }
        // Started by the replication module, which drives its own cut.
        JobKind::Sync => return Err(StartError::Io("a replica sync is not started here".into())),
    }
    hub.persist.job = Some(job);
    tokio::spawn(run_job(shared, id, kind, cancel, done));
    Ok(())
}

/// Runs one cut step under the lock: cut steps until [`STEP_TIME`] has passed.
pub(crate) fn step(shared: &Shared) -> recached_engine::snapshot::cut::CutStep {
    let mut core = shared.lock();
    let t = Instant::now();
    let mut out = core.engine.cut_step(STEP_ENTRIES);
    while !out.done && !out.aborted && t.elapsed() < STEP_TIME && out.bytes.len() < stream::CHUNK_TARGET * 4 {
        let more = core.engine.cut_step(STEP_ENTRIES);
        out.bytes.extend_from_slice(&more.bytes);
        out.done = more.done;
        out.aborted = more.aborted;
        out.keys = more.keys;
    }
    out
}

async fn run_job(shared: Arc<Shared>, id: u64, kind: JobKind, cancel: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let result = drive(&shared, kind, &cancel, &done).await;
    let mut guard = shared.lock();
    let core = &mut *guard;
    // Only this job's own state: a shutdown may have dropped it and another job may run.
    let Some(job) = core.hub.persist.job.take_if(|j| j.id == id) else { return };
    if core.engine.cut_running() {
        core.engine.abort_cut();
    }
    let secs = job.started.elapsed().as_secs() as i64;
    let p = &mut core.hub.persist;
    match (kind, result) {
        (JobKind::Save, Ok(_)) => {
            p.last_bgsave_ok = true;
            p.last_bgsave_secs = secs;
            p.lastsave = now_ms() / 1000;
            core.hub.stats.dirty = core.hub.stats.dirty.saturating_sub(job.dirty_at_start);
            tracing::info!("Background saving terminated with success");
        }
        (JobKind::Sync, _) => {}
        (JobKind::Save, Err(e)) => {
            p.last_bgsave_ok = false;
            p.last_bgsave_secs = secs;
            tracing::error!(cause = %e, "Background saving error");
        }
        (JobKind::Rewrite, Ok(manifest)) => {
            p.last_rewrite_ok = true;
            p.last_rewrite_secs = secs;
            p.rewrite_failures = 0;
            if let (Some(aof), Some(m)) = (p.aof.as_mut(), manifest) {
                aof.rewritten(m);
            }
            tracing::info!("Background AOF rewrite finished successfully");
        }
        (JobKind::Rewrite, Err(e)) => {
            p.last_rewrite_ok = false;
            p.last_rewrite_secs = secs;
            p.rewrite_failures += 1;
            if p.aof.as_ref().is_some_and(|a| !a.on_disk) {
                // The first base of an AOF switched on at runtime: try again (with backoff).
                p.rewrite_scheduled = true;
            }
            tracing::error!(cause = %e, "Background AOF rewrite failed");
        }
    }
    refresh_refusal(&mut core.engine, &core.hub);
}

/// How a rewrite starts: from an open AOF, for an AOF being switched on, or with the AOF
/// off (BGREWRITEAOF then writes a base and a manifest, as Redis).
enum RewriteFrom {
    Open,
    Starting,
    Off,
}

/// The job's work; `Ok(Some(manifest))` for a committed rewrite of an open AOF.
async fn drive(shared: &Arc<Shared>, kind: JobKind, cancel: &AtomicBool, done: &AtomicU64) -> Result<Option<recached_engine::aof::Manifest>, String> {
    let io = |e: std::io::Error| files::os_text(&e);
    let blocking = |e: tokio::task::JoinError| e.to_string();
    // Off the lock: the files.
    let (settings, aof_state, aof_file) = {
        let core = shared.lock_when_idle().await;
        let aof = core.hub.persist.aof.as_ref().map(|a| (a.paths.clone(), a.manifest.clone(), a.on_disk));
        let file = core.hub.persist.aof.as_ref().map(|a| a.shared_file());
        (core.hub.settings.clone(), aof, file)
    };
    let mut rewrite = None;
    let dst = match kind {
        JobKind::Sync => return Err("a replica sync has no file".into()),
        JobKind::Save => dump_path(&settings),
        JobKind::Rewrite => {
            let from = match &aof_state {
                Some((_, _, true)) => RewriteFrom::Open,
                Some((_, _, false)) => RewriteFrom::Starting,
                None => RewriteFrom::Off,
            };
            let paths = aof_state.as_ref().map(|a| a.0.clone()).unwrap_or_else(|| aof_paths(&settings));
            files::ensure_dir(&paths.dir).map_err(io)?;
            let (seq, next) = match from {
                RewriteFrom::Open => {
                    let (p2, m2) = (paths.clone(), aof_state.as_ref().map(|a| a.1.clone()).unwrap_or_default());
                    let file = aof_file.clone();
                    tokio::task::spawn_blocking(move || {
                        // Most of the old increment's unsynced tail goes to disk here, off the
                        // lock, so the switch has little left to sync.
                        if let Some(f) = &file {
                            Aof::sync_current(f)?;
                        }
                        Aof::prepare_rewrite(&p2, &m2)
                    })
                    .await
                    .map_err(blocking)?
                    .map_err(io)?
                }
                RewriteFrom::Starting => {
                    let m = aof_state.as_ref().map(|a| a.1.clone()).unwrap_or_default();
                    (m.base().map(|b| b.seq).unwrap_or(1), m)
                }
                RewriteFrom::Off => {
                    let on_disk = aof::read_manifest(&paths)?.unwrap_or_default();
                    (aof::next_seq(&on_disk).map_err(io)?, on_disk)
                }
            };
            let base = paths.file(&paths.base_name(seq));
            rewrite = Some((paths, seq, next, from));
            base
        }
    };
    let mut out = snapshot::BackgroundFile::create(dst).map_err(io)?;
    // Under the lock: the cut, and for a rewrite of an open AOF the switch to the new
    // increment at the same offset; the dedupe memory is taken at the same moment.
    {
        let mut guard = shared.lock_when_idle().await;
        let core = &mut *guard;
        if cancel.load(Ordering::Acquire) {
            return Err("the job was cancelled".into());
        }
        if let Some((_, seq, next, RewriteFrom::Open)) = &rewrite {
            let Some(aof) = core.hub.persist.aof.as_mut() else { return Err("the AOF was switched off".into()) };
            aof.switch_to(*seq, next.clone()).map_err(io)?;
        }
        let aux = dedupe_aux(shared);
        let id = replid(&core.hub);
        core.engine.begin_cut(&id, now_ms(), &[("dedupe", &aux)]).map_err(|e| e.to_string())?;
    }
    loop {
        let s = step(shared);
        done.store(s.keys, Ordering::Relaxed);
        if s.aborted || cancel.load(Ordering::Acquire) {
            return Err("the job was cancelled".into());
        }
        if out.write(s.bytes).await.is_err() {
            break;
        }
        if s.done {
            break;
        }
        tokio::task::yield_now().await;
    }
    let size = out.commit().await.map_err(io)?;
    tracing::debug!(bytes = size, ?kind, "snapshot written");
    let Some((paths, seq, next, from)) = rewrite else { return Ok(None) };
    let m = tokio::task::spawn_blocking(move || match from {
        RewriteFrom::Open => Aof::commit_rewrite(&paths, &next, seq, seq),
        RewriteFrom::Starting => Aof::commit_start(&paths, &next),
        RewriteFrom::Off => {
            let mut m = recached_engine::aof::Manifest {
                files: vec![recached_engine::aof::ManifestFile { name: paths.base_name(seq), seq, kind: recached_engine::aof::FileKind::Base }],
            };
            // Increments of an AOF left on disk do not follow this base: drop them.
            m.files.extend(next.files.iter().filter(|f| f.kind == recached_engine::aof::FileKind::History).cloned());
            files::write_atomic(&paths.manifest(), m.encode().as_bytes())?;
            for f in &next.files {
                let _ = std::fs::remove_file(paths.file(&f.name));
            }
            Ok(m)
        }
    })
    .await
    .map_err(blocking)?
    .map_err(io)?;
    Ok(Some(m))
}

/// `SAVE` (and the save at shutdown): the whole state written now, under the lock.
pub fn save_now(engine: &Engine, hub: &mut HubState, shared: &Shared) -> Result<(), String> {
    let aux = dedupe_aux(shared);
    let meta = StreamMeta { offset: engine.offset(), replid: replid(hub), created_ms: now_ms(), keys: Vec::new() };
    let bytes = stream::encode(engine, &meta, &[("dedupe", &aux)]);
    let path = dump_path(&hub.settings);
    hub.persist.saves += 1;
    let r = files::ensure_dir(files::parent(&path)).and_then(|_| files::write_atomic(&path, &bytes));
    match r {
        Ok(()) => {
            hub.persist.lastsave = now_ms() / 1000;
            hub.persist.last_bgsave_ok = true;
            hub.stats.dirty = 0;
            tracing::info!("DB saved on disk");
            Ok(())
        }
        Err(e) => {
            let text = files::os_text(&e);
            tracing::error!(cause = %text, file = %path.display(), "Write error saving DB on disk");
            Err(text)
        }
    }
}

/// `SAVE`.
pub fn cmd_save(engine: &mut Engine, hub: &mut HubState, shared: &Shared) -> Reply {
    if hub.persist.running() == Some(JobKind::Save) {
        return Reply::err("ERR Background save already in progress");
    }
    let r = match save_now(engine, hub, shared) {
        Ok(()) => Reply::Ok,
        Err(_) => Reply::err("ERR"),
    };
    refresh_refusal(engine, hub);
    r
}

/// `BGSAVE [SCHEDULE]`. Inside EXEC it is always scheduled, as in Redis.
pub fn cmd_bgsave(engine: &mut Engine, hub: &mut HubState, shared: &Shared, args: &[bytes::Bytes], in_exec: bool) -> Reply {
    let schedule = match args.len() {
        1 => false,
        2 if args[1].eq_ignore_ascii_case(b"schedule") => true,
        _ => return Reply::err("ERR syntax error"),
    };
    match hub.persist.running() {
        Some(JobKind::Save) => Reply::err("ERR Background save already in progress"),
        Some(JobKind::Rewrite | JobKind::Sync) if schedule => {
            hub.persist.save_scheduled = true;
            Reply::simple("Background saving scheduled")
        }
        Some(JobKind::Rewrite | JobKind::Sync) => Reply::err(
            "ERR Another child process is active (AOF?): can't BGSAVE right now. Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible.",
        ),
        None if in_exec => {
            hub.persist.save_scheduled = true;
            Reply::simple("Background saving scheduled")
        }
        None => match start_job(engine, hub, shared, JobKind::Save) {
            Ok(()) => Reply::simple("Background saving started"),
            Err(StartError::Busy(_)) => Reply::err("ERR Background save already in progress"),
            Err(StartError::Io(e)) => Reply::err(format!("ERR {}", e)),
        },
    }
}

/// `BGREWRITEAOF`.
pub fn cmd_bgrewriteaof(engine: &mut Engine, hub: &mut HubState, shared: &Shared, in_exec: bool) -> Reply {
    match hub.persist.running() {
        Some(JobKind::Rewrite) => Reply::err("ERR Background append only file rewriting already in progress"),
        Some(JobKind::Save | JobKind::Sync) => {
            hub.persist.rewrite_scheduled = true;
            Reply::simple("Background append only file rewriting scheduled")
        }
        None if in_exec => {
            hub.persist.rewrite_scheduled = true;
            Reply::simple("Background append only file rewriting scheduled")
        }
        None => match start_job(engine, hub, shared, JobKind::Rewrite) {
            Ok(()) => Reply::simple("Background append only file rewriting started"),
            Err(StartError::Busy(_)) => Reply::err("ERR Background append only file rewriting already in progress"),
            Err(StartError::Io(e)) => Reply::err(format!("ERR {}", e)),
        },
    }
}

/// Opens (or creates) the AOF for the engine's current state. With `fresh`, a new base is
/// written from the state first (the AOF is being switched on).
fn open_aof(engine: &Engine, hub: &HubState, shared: &Shared, manifest: Option<recached_engine::aof::Manifest>) -> Result<Aof, String> {
    let paths = aof_paths(&hub.settings);
    let manifest = match manifest {
        Some(m) => m,
        None => {
            let aux = dedupe_aux(shared);
            let meta = StreamMeta { offset: engine.offset(), replid: replid(hub), created_ms: now_ms(), keys: Vec::new() };
            let base = stream::encode(engine, &meta, &[("dedupe", &aux)]);
            let m = aof::create(&paths, &base).map_err(|e| format!("cannot create the AOF in {}: {}", paths.dir.display(), files::os_text(&e)))?;
            tracing::info!(dir = %paths.dir.display(), "Creating AOF base file {} and incr file {}", m.files[0].name, m.files[1].name);
            m
        }
    };
    let mode = Mode::parse(&hub.settings.appendfsync);
    Aof::open(paths.clone(), manifest, engine.offset(), shared.gate.clone(), mode)
        .map_err(|e| format!("cannot open the AOF in {}: {}", paths.dir.display(), files::os_text(&e)))
}

/// Stops a rewrite in progress (the AOF it writes for is going away or starting over).
fn cancel_rewrite(hub: &HubState) {
    if let Some(job) = hub.persist.job.as_ref().filter(|j| j.kind == JobKind::Rewrite) {
        job.cancel.store(true, Ordering::Release);
    }
}

/// Switches the AOF on at runtime, as Redis does: writes go to a new increment at once,
/// and a background rewrite writes its first base from a cut at the same offset; the
/// manifest that makes the AOF loadable is written when the base is complete. An older
/// AOF left in the directory is superseded (its files are removed then).
fn start_aof(engine: &mut Engine, hub: &mut HubState, shared: &Shared) -> Result<(), String> {
    let paths = aof_paths(&hub.settings);
    let io = |e: std::io::Error| format!("cannot start the AOF in {}: {}", paths.dir.display(), files::os_text(&e));
    files::ensure_dir(&paths.dir).map_err(io)?;
    let old = aof::read_manifest(&paths)?.unwrap_or_default();
    let seq = aof::next_seq(&old).map_err(io)?;
    // A crash before the new base is complete must not load the old AOF's stale state.
    if !old.files.is_empty() {
        std::fs::remove_file(paths.manifest()).map_err(io)?;
        files::sync_dir(&paths.dir).map_err(io)?;
    }
    let incr = paths.incr_name(seq);
    std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(paths.file(&incr)).map_err(io)?;
    let mut manifest = recached_engine::aof::Manifest::default();
    for f in &old.files {
        manifest.files.push(recached_engine::aof::ManifestFile { kind: recached_engine::aof::FileKind::History, ..f.clone() });
    }
    manifest.files.push(recached_engine::aof::ManifestFile { name: paths.base_name(seq), seq, kind: recached_engine::aof::FileKind::Base });
    manifest.files.push(recached_engine::aof::ManifestFile { name: incr, seq, kind: recached_engine::aof::FileKind::Incr });
    let mode = Mode::parse(&hub.settings.appendfsync);
    let mut aof = Aof::open(paths.clone(), manifest, engine.offset(), shared.gate.clone(), mode).map_err(io)?;
    aof.on_disk = false;
    let id = replid(hub);
    let _ = aof.append_stream(&id, engine.offset());
    hub.persist.aof = Some(aof);
    match start_job(engine, hub, shared, JobKind::Rewrite) {
        Ok(()) => {}
        Err(StartError::Busy(_)) => {
            tracing::warn!("AOF was enabled but there is already another background operation. An AOF background was scheduled to start when possible.");
            hub.persist.rewrite_scheduled = true;
        }
        Err(StartError::Io(e)) => return Err(e),
    }
    Ok(())
}

/// Drops an AOF off the engine lock: its fsync thread finishes its last fsync first,
/// which must not hold every client up.
fn drop_off_lock(aof: Aof) {
    let _ = std::thread::Builder::new().name("aof-close".into()).spawn(move || drop(aof));
}

/// Applies a `CONFIG SET` of persistence parameters: the AOF switched on (a first base
/// written in the background, as Redis starts one with a rewrite) or off, the fsync policy.
pub fn config_changed(engine: &mut Engine, hub: &mut HubState, shared: &Shared, old: &Settings) -> Result<(), String> {
    let new_on = hub.settings.appendonly;
    if new_on && !old.appendonly && hub.persist.aof.is_none() {
        cancel_rewrite(hub);
        start_aof(engine, hub, shared)?;
    } else if !new_on && old.appendonly {
        cancel_rewrite(hub);
        if let Some(mut aof) = hub.persist.aof.take() {
            if let Err(e) = aof.flush_and_sync() {
                tracing::warn!(cause = %e, "fsync of the AOF failed while switching it off");
            }
            drop_off_lock(aof);
        }
        shared.gate.set_mode(Mode::Off, engine.offset());
        shared.gate.set_stuck(false);
    } else if new_on && hub.settings.appendfsync != old.appendfsync {
        if let Some(aof) = hub.persist.aof.as_mut() {
            aof.set_mode(Mode::parse(&hub.settings.appendfsync));
        }
    }
    refresh_refusal(engine, hub);
    Ok(())
}

/// The save at exit, and the AOF's final fsync. `Err` when the snapshot could not be
/// saved (SHUTDOWN then refuses unless FORCE).
pub fn finish(engine: &mut Engine, hub: &mut HubState, shared: &Shared, how: SaveOnExit) -> Result<(), String> {
    if shared.loading() {
        // The engine is still the empty stand-in: saving it would replace the files being
        // loaded (Redis shuts down NOSAVE while loading, too).
        tracing::warn!("shutting down while the dataset loads: nothing is saved");
        hub.persist.exit = SaveOnExit::NoSave;
        return Ok(());
    }
    if let Some(job) = hub.persist.job.take() {
        job.cancel.store(true, Ordering::Release);
        engine.abort_cut();
        tracing::warn!("There is a background save or rewrite running. Stopping it.");
    }
    if let Some(aof) = hub.persist.aof.as_mut() {
        tracing::info!("Calling fsync() on the AOF file.");
        if let Err(e) = aof.flush_and_sync() {
            tracing::error!(cause = %e, "the AOF could not be written and fsynced at exit");
        }
    }
    let save = match how {
        SaveOnExit::Save => true,
        SaveOnExit::NoSave => false,
        SaveOnExit::Default => !save_rules(&hub.settings).is_empty(),
    };
    if save && !(hub.persist.finished && hub.stats.dirty == 0) {
        tracing::info!("Saving the final snapshot before exiting.");
        save_now(engine, hub, shared)?;
    }
    hub.persist.finished = true;
    Ok(())
}

/// The cron: save rules, scheduled jobs, automatic rewrite, AOF write retries and the
/// MISCONF state. Runs every 100 ms until shutdown.
pub async fn cron(shared: Arc<Shared>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut every = tokio::time::interval(CRON);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = crate::hub::stopped(&mut shutdown) => return,
        }
        let mut guard = shared.lock_when_idle().await;
        let core = &mut *guard;
        tick(core, &shared);
    }
}

fn tick(core: &mut Core, shared: &Shared) {
    let (engine, hub) = (&mut core.engine, &mut core.hub);
    if let Some(aof) = hub.persist.aof.as_mut() {
        if aof.write_error.is_some() {
            let _ = aof.retry();
        }
    }
    refresh_refusal(engine, hub);
    crate::repl::watch_fence(hub);
    if hub.persist.busy() {
        return;
    }
    // Failed rewrites back off: 5 s, doubling, at most an hour (as Redis's 1 h cap).
    let backoff = Duration::from_secs((5u64 << hub.persist.rewrite_failures.min(10)).min(3600));
    let rewrite_may_run = hub.persist.rewrite_failures == 0 || hub.persist.last_rewrite_try.is_none_or(|t| t.elapsed() >= backoff);
    if hub.persist.rewrite_scheduled && rewrite_may_run {
        hub.persist.rewrite_scheduled = false;
        let _ = start_job(engine, hub, shared, JobKind::Rewrite);
        return;
    }
    if hub.persist.save_scheduled {
        hub.persist.save_scheduled = false;
        let _ = start_job(engine, hub, shared, JobKind::Save);
        return;
    }
    let now = now_ms() / 1000;
    let retry_ok = hub.persist.last_bgsave_ok || hub.persist.last_bgsave_try.is_none_or(|t| t.elapsed() >= BGSAVE_RETRY);
    if retry_ok {
        for (secs, changes) in save_rules(&hub.settings) {
            if hub.stats.dirty >= changes && now.saturating_sub(hub.persist.lastsave) > secs {
                tracing::info!("{} changes in {} seconds. Saving...", changes, secs);
                let _ = start_job(engine, hub, shared, JobKind::Save);
                return;
            }
        }
    }
    if let Some(aof) = hub.persist.aof.as_ref().filter(|_| rewrite_may_run) {
        let pct = hub.settings.auto_aof_rewrite_percentage;
        let size = aof.current_size();
        let base = aof.rewrite_base_size.max(1);
        if pct > 0 && size > hub.settings.auto_aof_rewrite_min_size && (size.saturating_sub(base)) * 100 / base >= pct {
            tracing::info!("Starting automatic rewriting of AOF on {}% growth", (size.saturating_sub(base)) * 100 / base);
            let _ = start_job(engine, hub, shared, JobKind::Rewrite);
        }
    }
}

/// Loading progress shared with INFO.
#[derive(Debug, Default)]
pub struct LoadState {
    /// Loading now.
    pub loading: AtomicBool,
    /// Unix seconds the load started.
    pub start: AtomicU64,
    /// Bytes to read.
    pub total: AtomicU64,
    /// Bytes read.
    pub done: AtomicU64,
}

impl aof::LoadProgress for LoadState {
    fn read(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// What loading found, to install under the lock.
struct Found {
    engine: Engine,
    /// The saved stream: id and offset.
    previous: Option<(String, u64)>,
    dedupe: Vec<DedupeEntry>,
    tail: Vec<ChangeGroup>,
    manifest: Option<recached_engine::aof::Manifest>,
    keys: u64,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Reads the persisted state (blocking).
fn load_files(settings: &Settings, progress: &LoadState, tail_bytes: usize) -> Result<Found, String> {
    let mut engine = Engine::new(settings.engine_config());
    let paths = aof_paths(settings);
    let dump = dump_path(settings);
    if settings.appendonly {
        if let Ok(Some(m)) = aof::read_manifest(&paths) {
            let total: u64 = m.files.iter().map(|f| file_len(&paths.file(&f.name))).sum();
            progress.total.store(total, Ordering::Relaxed);
        }
        let t = Instant::now();
        if let Some(l) = aof::load(&paths, &mut engine, settings.aof_load_truncated, tail_bytes, progress)? {
            if l.failed > 0 {
                tracing::warn!(failed = l.failed, "changes of the AOF did not replay");
            }
            tracing::info!(
                keys = engine.key_count(),
                records = l.records,
                secs = format!("{:.3}", t.elapsed().as_secs_f64()),
                "DB loaded from append only file"
            );
            let previous = (!l.replid.is_empty()).then(|| (l.replid.clone(), engine.offset()));
            let keys = engine.key_count() as u64;
            return Ok(Found { engine, previous, dedupe: l.dedupe, tail: l.tail, manifest: Some(l.manifest), keys });
        }
        // No AOF yet: start it from the snapshot if there is one (Redis would start empty
        // and leave the snapshot unread; an existing dataset is never dropped here). But
        // AOF files without their manifest are someone's data: never start over them.
        let prefix = format!("{}.", settings.appendfilename);
        let orphans: Vec<String> = std::fs::read_dir(&paths.dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&prefix) && (n.ends_with(".incr.aof") || n.ends_with(".base.rcs")))
                    .collect()
            })
            .unwrap_or_default();
        if !orphans.is_empty() {
            return Err(format!(
                "{} holds AOF files ({}) but no manifest {}: the server does not start over them. Restore the manifest, or move the files away to start without them.",
                paths.dir.display(),
                orphans.join(", "),
                paths.manifest().display()
            ));
        }
    }
    progress.total.store(file_len(&dump), Ordering::Relaxed);
    let t = Instant::now();
    match snapshot::read_stream_file(&dump, settings.databases, progress) {
        Ok(None) => Ok(Found { engine, previous: None, dedupe: Vec::new(), tail: Vec::new(), manifest: None, keys: 0 }),
        Ok(Some(loaded)) => {
            let keys = loaded.keys;
            let (meta, aux) = stream::install(&mut engine, loaded, now_ms());
            let mut dedupe = Vec::new();
            for (name, data) in aux {
                if name == "dedupe" {
                    dedupe = aof::decode_dedupe(&data).map_err(|e| format!("{}: dedupe data: {}", dump.display(), e))?;
                }
            }
            tracing::info!(keys, secs = format!("{:.3}", t.elapsed().as_secs_f64()), file = %dump.display(), "DB loaded from disk");
            let previous = (!meta.replid.is_empty()).then(|| (meta.replid, meta.offset));
            Ok(Found { engine, previous, dedupe, tail: Vec::new(), manifest: None, keys })
        }
        Err(e) => Err(format!(
            "cannot load the snapshot {}: {}. The server does not start over it (it would be overwritten at the next save). Move the file away to start empty, or restore it from a backup.",
            dump.display(),
            e
        )),
    }
}

/// Loads what was persisted and makes it the hub's state, while clients get `-LOADING`;
/// opens the AOF when it is on. `Err` refuses the start.
pub async fn startup(shared: &Arc<Shared>) -> Result<(), String> {
    let (settings, tail_bytes) = {
        let core = shared.lock();
        let s = core.hub.settings.clone();
        let tail = s.sync_backlog_bytes as usize;
        (s, tail)
    };
    let dump = dump_path(&settings);
    let paths = aof_paths(&settings);
    let nothing = !paths.manifest().exists() && !dump.exists();
    if nothing && !settings.appendonly {
        return Ok(());
    }
    files::remove_stale_temps(files::parent(&dump));
    if paths.dir.is_dir() {
        files::remove_stale_temps(&paths.dir);
    }
    shared.load.start.store(now_ms() / 1000, Ordering::Relaxed);
    shared.load.loading.store(true, Ordering::Release);
    let s2 = shared.clone();
    let found = tokio::task::spawn_blocking(move || load_files(&settings, &s2.load, tail_bytes)).await.map_err(|e| e.to_string());
    shared.load.loading.store(false, Ordering::Release);
    let found = found??;
    let mut guard = shared.lock();
    let core = &mut *guard;
    core.engine = found.engine;
    core.hub.persist.loaded_keys = found.keys;
    core.hub.persist.previous = found.previous.clone();
    let offset = core.engine.offset();
    if let Some(sync) = shared.sync() {
        let mut st = sync.lock();
        let replid = core.hub.replid.clone();
        st.hub.restore_stream(replid, found.previous.clone(), found.tail, now_ms());
        sync.note_backlog(&st);
        let _ = st.hub.restore_dedupe(found.dedupe);
    }
    if core.hub.settings.appendonly {
        let aof = open_aof(&core.engine, &core.hub, shared, found.manifest)?;
        core.hub.persist.aof = Some(aof);
        let id = core.hub.replid.clone();
        if let Some(a) = core.hub.persist.aof.as_mut() {
            a.append_stream(&id, offset).map_err(|e| format!("cannot write the AOF: {}", e))?;
        }
    }
    refresh_refusal(&mut core.engine, &core.hub);
    Ok(())
}

/// The fields of `INFO persistence`, in Redis 7.0's order.
pub fn info_fields(hub: &HubState, engine: &Engine, shared: &Shared) -> Vec<(&'static str, String)> {
    let p = &hub.persist;
    let job = p.job.as_ref();
    let save_job = job.filter(|j| j.kind == JobKind::Save);
    let rewrite_job = job.filter(|j| j.kind == JobKind::Rewrite);
    let (processed, total) = job.map(|j| (j.keys_done.load(Ordering::Relaxed), j.keys_total)).unwrap_or((0, 0));
    let perc = if total > 0 { processed as f64 * 100.0 / total as f64 } else { 0.0 };
    let loading = shared.load.loading.load(Ordering::Acquire);
    let mut f: Vec<(&'static str, String)> = vec![
        ("loading", (loading as u8).to_string()),
        ("async_loading", "0".into()),
        ("current_cow_peak", "0".into()),
        ("current_cow_size", engine.cut_buffered().to_string()),
        ("current_cow_size_age", "0".into()),
        ("current_fork_perc", format!("{:.2}", perc)),
        ("current_save_keys_processed", processed.to_string()),
        ("current_save_keys_total", total.to_string()),
        ("rdb_changes_since_last_save", hub.stats.dirty.to_string()),
        ("rdb_bgsave_in_progress", (save_job.is_some() as u8).to_string()),
        ("rdb_last_save_time", p.lastsave.to_string()),
        ("rdb_last_bgsave_status", if p.last_bgsave_ok { "ok" } else { "err" }.into()),
        ("rdb_last_bgsave_time_sec", p.last_bgsave_secs.to_string()),
        ("rdb_current_bgsave_time_sec", save_job.map(|j| j.started.elapsed().as_secs() as i64).unwrap_or(-1).to_string()),
        ("rdb_saves", p.saves.to_string()),
        ("rdb_last_cow_size", "0".into()),
        ("rdb_last_load_keys_expired", "0".into()),
        ("rdb_last_load_keys_loaded", p.loaded_keys.to_string()),
        ("aof_enabled", ((p.aof.is_some() && !loading) as u8).to_string()),
        ("aof_rewrite_in_progress", (rewrite_job.is_some() as u8).to_string()),
        ("aof_rewrite_scheduled", (p.rewrite_scheduled as u8).to_string()),
        ("aof_last_rewrite_time_sec", p.last_rewrite_secs.to_string()),
        ("aof_current_rewrite_time_sec", rewrite_job.map(|j| j.started.elapsed().as_secs() as i64).unwrap_or(-1).to_string()),
        ("aof_last_bgrewrite_status", if p.last_rewrite_ok { "ok" } else { "err" }.into()),
        ("aof_rewrites", p.rewrites.to_string()),
        ("aof_rewrites_consecutive_failures", p.rewrite_failures.to_string()),
        ("aof_last_write_status", if p.aof.as_ref().is_some_and(|a| a.write_error.is_some() || a.fsync_error().is_some()) { "err" } else { "ok" }.into()),
        ("aof_last_cow_size", "0".into()),
        ("module_fork_in_progress", "0".into()),
        ("module_fork_last_cow_size", "0".into()),
    ];
    if hub.settings.appendonly {
        let (cur, base, pending) = p.aof.as_ref().map(|a| (a.current_size(), a.rewrite_base_size, a.pending_len())).unwrap_or((0, 0, 0));
        let (written, durable) = shared.gate.progress();
        f.push(("aof_current_size", cur.to_string()));
        f.push(("aof_base_size", base.to_string()));
        f.push(("aof_pending_rewrite", (p.rewrite_scheduled as u8).to_string()));
        f.push(("aof_buffer_length", pending.to_string()));
        f.push(("aof_pending_bio_fsync", ((written > durable) as u8).to_string()));
        f.push(("aof_delayed_fsync", "0".into()));
    }
    if loading {
        let total = shared.load.total.load(Ordering::Relaxed);
        let done = shared.load.done.load(Ordering::Relaxed).min(total);
        let start = shared.load.start.load(Ordering::Relaxed);
        let elapsed = (now_ms() / 1000).saturating_sub(start);
        let perc = if total > 0 { done as f64 * 100.0 / total as f64 } else { 0.0 };
        let eta = if done > 0 && total > done { elapsed * (total - done) / done } else { 1 };
        f.push(("loading_start_time", start.to_string()));
        f.push(("loading_total_bytes", total.to_string()));
        f.push(("loading_rdb_used_mem", "0".into()));
        f.push(("loading_loaded_bytes", done.to_string()));
        f.push(("loading_loaded_perc", format!("{:.2}", perc)));
        f.push(("loading_eta_seconds", eta.to_string()));
    }
    f
}
