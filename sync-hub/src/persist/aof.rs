//! The append-only file: a multi-part AOF (a base snapshot and increments, named by a
//! manifest), the appender that writes every committed group in commit order, the fsync
//! thread (group commit), rewrites, loading and `--check-aof`.
//!
//! Files, in `dir/appenddirname` (`appendonlydir` by default), named after
//! `appendfilename`:
//! - `appendonly.aof.manifest`: which files, in what order (`recached_engine::aof`);
//! - `appendonly.aof.<seq>.base.rcs`: a streamed snapshot (`recached_engine::snapshot::stream`);
//! - `appendonly.aof.<seq>.incr.aof`: records, one per committed group.
//!
//! A rewrite opens increment `n+1` and lists it in the manifest (still with the old base
//! and increments, so a crash replays everything), switches the appender to it at the
//! snapshot cut's offset, writes the new base from the cut, then writes the manifest that
//! names only the new base and increment `n+1`, and deletes the old files. The base and
//! the increment meet at exactly the cut's offset.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use recached_engine::aof::{self, FileKind, Manifest, ManifestFile, Record};
use recached_engine::sync::backlog::group_size;
use recached_engine::sync::{DedupeChange, DedupeEntry};
use recached_engine::{ChangeGroup, Engine};

use super::files;
use super::gate::{Gate, Mode};
use super::snapshot::read_stream_file;
use crate::hub::now_ms;

/// An fsync under `everysec` starts once the oldest unsynced write is this old, leaving
/// the rest of the one-second window for the fsync itself.
const EVERYSEC_START_MS: u64 = 500;

/// Where the AOF lives and what its files are called.
#[derive(Debug, Clone)]
pub struct AofPaths {
    /// `dir/appenddirname`.
    pub dir: PathBuf,
    /// `appendfilename`.
    pub name: String,
}

impl AofPaths {
    /// The manifest.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join(format!("{}.manifest", self.name))
    }

    /// The name of base `seq`.
    pub fn base_name(&self, seq: u64) -> String {
        format!("{}.{}.base.rcs", self.name, seq)
    }

    /// The name of increment `seq`.
    pub fn incr_name(&self, seq: u64) -> String {
        format!("{}.{}.incr.aof", self.name, seq)
    }

    /// A file of the manifest.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// What the appender and the fsync thread share.
struct FileState {
    file: Arc<File>,
    /// Files switched away from (a rewrite) that may still hold unsynced writes.
    retired: Vec<Arc<File>>,
    /// Offset of the last group fully written.
    written: u64,
    /// Offset of the last group an fsync covered.
    synced: u64,
    /// The last fsync failed with this.
    fsync_error: Option<String>,
}

/// The file being appended to, shared with the fsync thread.
pub struct AofFile {
    state: Mutex<FileState>,
    cv: Condvar,
    stop: AtomicBool,
    /// An `always` committer task runs (the hub's runtime); without one (no runtime), the
    /// fsync thread does `always` too.
    inline: AtomicBool,
    gate: Arc<Gate>,
    /// Wakes the `always` committer task (see [`commit_loop`]).
    commit: tokio::sync::Notify,
}

impl AofFile {
    fn lock(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs fsyncs for the AOF: at once after writes under `always` (one fsync covers every
/// write made meanwhile, on every connection), half a second after the first unsynced
/// write under `everysec`, never under `no`.
fn fsync_loop(f: Arc<AofFile>) {
    let mut last_try_failed = false;
    loop {
        let (files, target, started) = {
            let mut st = f.lock();
            loop {
                let stopping = f.stop.load(Ordering::Acquire);
                let dirty = st.written > st.synced || !st.retired.is_empty();
                // Stopping: one last attempt, never a retry loop (a disk that keeps failing
                // must not keep the thread, and whoever joins it, forever).
                if stopping && (!dirty || last_try_failed) {
                    return;
                }
                if dirty {
                    let due = match f.gate.mode() {
                        // A file a rewrite switched away from is synced at once in every
                        // mode: the new file's writes must not reach the disk before its own
                        // (and under `no` nothing else would ever release it).
                        _ if !st.retired.is_empty() => Some(Duration::ZERO),
                        // `always` is the committer task's (on the runtime, as Redis's
                        // beforeSleep); this thread only covers what it cannot.
                        Mode::Always if !f.inline.load(Ordering::Acquire) => Some(Duration::ZERO),
                        Mode::Always => None,
                        Mode::EverySec => {
                            let since = f.gate.dirty_since();
                            let age = if since == 0 { 0 } else { now_ms().saturating_sub(since) };
                            Some(Duration::from_millis(EVERYSEC_START_MS.saturating_sub(age)))
                        }
                        Mode::No | Mode::Off => None,
                    };
                    match due {
                        _ if stopping => break,
                        Some(d) if d.is_zero() => break,
                        Some(d) => {
                            st = f.cv.wait_timeout(st, d).unwrap_or_else(|e| e.into_inner()).0;
                            continue;
                        }
                        None => {}
                    }
                }
                st = f.cv.wait_timeout(st, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
            }
            let mut files = std::mem::take(&mut st.retired);
            files.push(st.file.clone());
            (files, st.written, now_ms())
        };
        let result = files.iter().try_for_each(|file| file.sync_data());
        last_try_failed = !sync_done(&f, files, target, started, result);
        if last_try_failed && !f.stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1000));
        }
    }
}

/// Records how an fsync of `files` (everything written up to `target`, started at
/// `started`) ended, for both the fsync thread and the committer task; returns whether it
/// succeeded. A failure keeps the files for the next attempt and refuses writes until one
/// works.
fn sync_done(f: &AofFile, files: Vec<Arc<File>>, target: u64, started: u64, result: std::io::Result<()>) -> bool {
    let mut st = f.lock();
    match result {
        Ok(()) => {
            st.synced = st.synced.max(target);
            let was_failing = st.fsync_error.take().is_some();
            drop(st);
            if was_failing {
                tracing::warn!("fsync of the append-only file works again");
                f.gate.set_stuck(false);
            }
            f.gate.synced(target, started);
            true
        }
        Err(e) => {
            tracing::error!(cause = %e, "fsync of the append-only file failed; writes are refused, retrying every second");
            st.fsync_error = Some(files::os_text(&e));
            let current = st.file.clone();
            st.retired.extend(files.into_iter().filter(|x| !Arc::ptr_eq(x, &current)));
            drop(st);
            f.gate.set_stuck(true);
            false
        }
    }
}

/// Group commit for `appendfsync always`, on the hub's runtime like Redis's `beforeSleep`:
/// woken by a write, it first yields once, so every connection task that is ready runs
/// its batch (and writes its records) before the fsync; then one fsync covers them all,
/// and their replies go. The fsync blocks the runtime thread for its duration, as Redis's
/// blocks its event loop: measured on this project's machines, handing it to a thread cost
/// more in wake-ups (65 µs per write for a lone client) than the overlap gained.
async fn commit_loop(f: Arc<AofFile>) {
    loop {
        if f.stop.load(Ordering::Acquire) {
            return;
        }
        let pending = {
            let st = f.lock();
            st.written > st.synced || !st.retired.is_empty()
        };
        if !pending || f.gate.mode() != Mode::Always {
            tokio::select! {
                _ = f.commit.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        tokio::task::yield_now().await;
        let (files, target, started) = {
            let mut st = f.lock();
            let mut files = std::mem::take(&mut st.retired);
            files.push(st.file.clone());
            (files, st.written, now_ms())
        };
        let sync = || files.iter().try_for_each(|file| file.sync_data());
        let result = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::CurrentThread => sync(),
            _ => tokio::task::block_in_place(sync),
        };
        if !sync_done(&f, files, target, started, result) {
            tokio::time::sleep(Duration::from_millis(1000)).await;
        }
    }
}

/// The open AOF, on the appender's side (under the engine lock).
pub struct Aof {
    /// Where it lives.
    pub paths: AofPaths,
    /// The manifest as on disk.
    pub manifest: Manifest,
    file: Arc<AofFile>,
    fsync: Option<JoinHandle<()>>,
    /// Encoded records not yet written (after a write error), and the offset they end at.
    pending: Vec<u8>,
    pending_to: u64,
    buf: Vec<u8>,
    /// Offset of the last group appended.
    last: u64,
    /// The last write failed with this (`aof_last_write_status:err`).
    pub write_error: Option<String>,
    /// Bytes in the base file.
    pub base_size: u64,
    /// Bytes in the increments.
    pub incr_size: u64,
    /// `aof_base_size` as Redis reports it: base and increments right after the last
    /// rewrite (the reference for automatic rewrites).
    pub rewrite_base_size: u64,
    /// Whether the manifest is on disk (false while an AOF switched on at runtime waits
    /// for its first base).
    pub on_disk: bool,
}

impl Aof {
    /// Opens increment `incr` (appending) for an AOF whose state is at `offset`.
    pub fn open(paths: AofPaths, mut manifest: Manifest, offset: u64, gate: Arc<Gate>, mode: Mode) -> io::Result<Aof> {
        if manifest.last_incr().is_none() {
            // A base alone (BGREWRITEAOF with the AOF off): add the first increment.
            let seq = next_seq(&manifest)?;
            let name = paths.incr_name(seq);
            OpenOptions::new().create(true).write(true).truncate(true).open(paths.file(&name))?.sync_all()?;
            manifest.files.push(ManifestFile { name, seq, kind: FileKind::Incr });
            files::write_atomic(&paths.manifest(), manifest.encode().as_bytes())?;
        }
        let Some(last) = manifest.last_incr() else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "the manifest names no increment file"));
        };
        gate.set_stuck(false);
        let path = paths.file(&last.name);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let base_size = manifest.base().and_then(|b| fs::metadata(paths.file(&b.name)).ok()).map(|m| m.len()).unwrap_or(0);
        let incr_size: u64 = manifest.incrs().filter_map(|f| fs::metadata(paths.file(&f.name)).ok()).map(|m| m.len()).sum();
        gate.set_mode(mode, offset);
        let shared = Arc::new(AofFile {
            state: Mutex::new(FileState { file: Arc::new(file), retired: Vec::new(), written: offset, synced: offset, fsync_error: None }),
            cv: Condvar::new(),
            stop: AtomicBool::new(false),
            inline: AtomicBool::new(false),
            gate,
            commit: tokio::sync::Notify::new(),
        });
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            shared.inline.store(true, Ordering::Release);
            rt.spawn(commit_loop(shared.clone()));
        }
        let thread_file = shared.clone();
        let fsync = std::thread::Builder::new().name("aof-fsync".into()).spawn(move || fsync_loop(thread_file))?;
        Ok(Aof {
            paths,
            manifest,
            file: shared,
            fsync: Some(fsync),
            pending: Vec::new(),
            pending_to: offset,
            buf: Vec::with_capacity(64 * 1024),
            last: offset,
            write_error: None,
            base_size,
            incr_size,
            rewrite_base_size: base_size + incr_size,
            on_disk: true,
        })
    }

    /// The gate this AOF advances.
    pub fn gate(&self) -> &Arc<Gate> {
        &self.file.gate
    }

    /// Offset of the last group appended.
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// Bytes of base and increments.
    pub fn current_size(&self) -> u64 {
        self.base_size + self.incr_size + self.pending.len() as u64
    }

    /// Bytes not yet written (`aof_buffer_length`).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// The last fsync error, if the last fsync failed.
    pub fn fsync_error(&self) -> Option<String> {
        self.file.lock().fsync_error.clone()
    }

    /// Whether every appended group is written.
    pub fn caught_up(&self) -> bool {
        self.pending.is_empty()
    }

    /// Appends the groups not appended yet (offsets above the last), with `dedupe` on the
    /// last of them, then writes them out. Under the engine lock, in commit order. Returns
    /// the write error, if writing failed: the records stay queued and are written by
    /// [`Aof::retry`]; replies wait for them (the gate does not advance).
    pub fn append(&mut self, groups: &[ChangeGroup], dedupe: &[DedupeChange]) -> Result<(), String> {
        let start = groups.partition_point(|g| g.offset <= self.last);
        let groups = &groups[start..];
        if groups.is_empty() {
            if dedupe.is_empty() {
                return self.write_error.clone().map_or(Ok(()), Err);
            }
            // A sync write that changed nothing still changed the dedupe memory.
            self.buf.clear();
            aof::encode_group(&ChangeGroup { offset: self.last, changes: Vec::new() }, dedupe, &mut self.buf);
            let buf = std::mem::take(&mut self.buf);
            let r = self.write_bytes(&buf, self.last);
            self.buf = buf;
            return r;
        }
        self.buf.clear();
        let n = groups.len();
        for (i, g) in groups.iter().enumerate() {
            aof::encode_group(g, if i + 1 == n { dedupe } else { &[] }, &mut self.buf);
        }
        self.last = groups[n - 1].offset;
        self.file.gate.appended(self.last);
        let buf = std::mem::take(&mut self.buf);
        let r = self.write_bytes(&buf, self.last);
        self.buf = buf;
        r
    }

    /// Appends a stream record: from `offset` on, the stream's id is `replid`.
    pub fn append_stream(&mut self, replid: &str, offset: u64) -> Result<(), String> {
        let mut rec = Vec::new();
        aof::encode_stream(replid, offset, &mut rec);
        self.write_bytes(&rec, self.last)
    }

    fn write_bytes(&mut self, bytes: &[u8], to: u64) -> Result<(), String> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(bytes);
            self.pending_to = to;
            return self.retry_inner();
        }
        let file = self.file.lock().file.clone();
        let mut pos = 0;
        while pos < bytes.len() {
            match (&*file).write(&bytes[pos..]) {
                Ok(0) => {
                    return self.fail(&bytes[pos..], to, io::Error::from(io::ErrorKind::WriteZero));
                }
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(&bytes[pos..], to, e),
            }
        }
        self.incr_size += bytes.len() as u64;
        self.mark_written(to);
        Ok(())
    }

    fn fail(&mut self, rest: &[u8], to: u64, e: io::Error) -> Result<(), String> {
        let text = files::os_text(&e);
        if self.write_error.is_none() {
            tracing::error!(cause = %text, "error writing to the append-only file; writes are refused until it succeeds");
        }
        self.pending.extend_from_slice(rest);
        self.pending_to = to;
        self.write_error = Some(text.clone());
        self.file.gate.set_stuck(true);
        Err(text)
    }

    fn mark_written(&mut self, to: u64) {
        let mut st = self.file.lock();
        // Under `everysec` the fsync thread only needs waking when the file turns dirty
        // (it then sleeps until the fsync is due); waking it on every write cost a context
        // switch per batch.
        let was_clean = st.written <= st.synced;
        st.written = st.written.max(to);
        drop(st);
        self.file.gate.written(to);
        match self.file.gate.mode() {
            Mode::Always if self.file.inline.load(Ordering::Acquire) => self.file.commit.notify_one(),
            Mode::Always => self.file.cv.notify_one(),
            Mode::EverySec if was_clean => self.file.cv.notify_one(),
            _ => {}
        }
    }

    fn retry_inner(&mut self) -> Result<(), String> {
        let file = self.file.lock().file.clone();
        while !self.pending.is_empty() {
            match (&*file).write(&self.pending) {
                Ok(0) => return Err(self.write_error.clone().unwrap_or_else(|| "write returned 0".into())),
                Ok(n) => {
                    self.incr_size += n as u64;
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let text = files::os_text(&e);
                    self.write_error = Some(text.clone());
                    return Err(text);
                }
            }
        }
        if self.write_error.take().is_some() {
            self.file.gate.set_stuck(false);
            tracing::warn!("AOF write error looks solved: the append-only file is written again; writes are accepted");
        }
        self.pending = Vec::new();
        self.mark_written(self.pending_to);
        Ok(())
    }

    /// Writes what a failed write left queued. `Ok` once everything is written.
    pub fn retry(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            self.write_error = None;
            return Ok(());
        }
        self.retry_inner()
    }

    /// Writes everything queued and fsyncs it (shutdown, before a mode change).
    pub fn flush_and_sync(&mut self) -> io::Result<()> {
        // What cannot be written is reported, but what was written is still fsynced.
        let unwritten = self.retry().err();
        let (files, target) = {
            let mut st = self.file.lock();
            let mut files = std::mem::take(&mut st.retired);
            files.push(st.file.clone());
            (files, st.written)
        };
        let started = now_ms();
        for f in files {
            f.sync_all()?;
        }
        self.file.lock().synced = target;
        self.file.gate.synced(target, started);
        match unwritten {
            Some(e) => Err(io::Error::other(e)),
            None => Ok(()),
        }
    }

    /// Changes the fsync policy at once (`CONFIG SET appendfsync`). Only what is really
    /// written and fsynced counts as such under the new policy.
    pub fn set_mode(&mut self, mode: Mode) {
        if let Err(e) = self.flush_and_sync() {
            tracing::warn!(cause = %e, "the AOF could not be flushed while changing appendfsync");
        }
        let (written, synced) = {
            let st = self.file.lock();
            (st.written, st.synced)
        };
        self.file.gate.set_mode_at(mode, written, synced);
        self.file.cv.notify_one();
        self.file.commit.notify_one();
    }

    /// Fsyncs the file being appended to now, off the engine lock (before a rewrite
    /// switches files, so the switch itself has little left to sync).
    pub fn sync_current(file: &Arc<AofFile>) -> io::Result<()> {
        let current = file.lock().file.clone();
        current.sync_data()
    }

    /// The shared file state (for [`Aof::sync_current`]).
    pub fn shared_file(&self) -> Arc<AofFile> {
        self.file.clone()
    }

    /// The first step of a rewrite, off the engine lock: creates the next increment and a
    /// manifest that lists it after every current file, so a crash from here on replays
    /// everything. Returns the new increment's seq and the manifest to keep meanwhile.
    pub fn prepare_rewrite(paths: &AofPaths, manifest: &Manifest) -> io::Result<(u64, Manifest)> {
        let seq = next_seq(manifest)?;
        let name = paths.incr_name(seq);
        let f = OpenOptions::new().create(true).write(true).truncate(true).open(paths.file(&name))?;
        f.sync_all()?;
        let mut next = manifest.clone();
        next.files.push(ManifestFile { name, seq, kind: FileKind::Incr });
        files::write_atomic(&paths.manifest(), next.encode().as_bytes())?;
        Ok((seq, next))
    }

    /// The switch, under the engine lock at the cut: groups after this go to increment
    /// `seq` (prepared by [`Aof::prepare_rewrite`]). The old file's unsynced writes are
    /// still fsynced by the fsync thread.
    pub fn switch_to(&mut self, seq: u64, manifest: Manifest) -> io::Result<()> {
        self.retry().map_err(io::Error::other)?;
        let name = self.paths.incr_name(seq);
        let file = OpenOptions::new().append(true).open(self.paths.file(&name))?;
        // The old increment's last writes reach the disk before any of the new one's: a
        // power loss can then only tear the last file, the one a load may cut back.
        // `prepare_rewrite`'s caller synced it just before, so little is left.
        let old = self.file.lock().file.clone();
        old.sync_data()?;
        let mut st = self.file.lock();
        let old = std::mem::replace(&mut st.file, Arc::new(file));
        st.retired.push(old);
        drop(st);
        self.manifest = manifest;
        Ok(())
    }

    /// The end of a rewrite, off the engine lock: the new base (already renamed into the
    /// directory) and increment `seq` become the whole AOF; the old files go.
    pub fn commit_rewrite(paths: &AofPaths, manifest: &Manifest, base_seq: u64, incr_seq: u64) -> io::Result<Manifest> {
        let next = Manifest {
            files: vec![
                ManifestFile { name: paths.base_name(base_seq), seq: base_seq, kind: FileKind::Base },
                ManifestFile { name: paths.incr_name(incr_seq), seq: incr_seq, kind: FileKind::Incr },
            ],
        };
        files::write_atomic(&paths.manifest(), next.encode().as_bytes())?;
        for f in &manifest.files {
            if !next.files.iter().any(|n| n.name == f.name) {
                let _ = fs::remove_file(paths.file(&f.name));
            }
        }
        let _ = files::sync_dir(&paths.dir);
        Ok(next)
    }

    /// Adopts the manifest a committed rewrite wrote, with the new sizes.
    pub fn rewritten(&mut self, manifest: Manifest) {
        self.base_size = manifest.base().and_then(|b| fs::metadata(self.paths.file(&b.name)).ok()).map(|m| m.len()).unwrap_or(0);
        self.incr_size = manifest.incrs().filter_map(|f| fs::metadata(self.paths.file(&f.name)).ok()).map(|m| m.len()).sum();
        self.rewrite_base_size = self.base_size + self.incr_size;
        self.manifest = manifest;
        self.on_disk = true;
    }

    /// The end of the first rewrite of an AOF switched on at runtime, off the engine lock:
    /// the manifest naming its base and increment is written, an older AOF's files go.
    pub fn commit_start(paths: &AofPaths, manifest: &Manifest) -> io::Result<Manifest> {
        let next = Manifest { files: manifest.files.iter().filter(|f| f.kind != FileKind::History).cloned().collect() };
        files::write_atomic(&paths.manifest(), next.encode().as_bytes())?;
        for f in manifest.files.iter().filter(|f| f.kind == FileKind::History) {
            let _ = fs::remove_file(paths.file(&f.name));
        }
        let _ = files::sync_dir(&paths.dir);
        Ok(next)
    }
}

impl Drop for Aof {
    fn drop(&mut self) {
        self.file.stop.store(true, Ordering::Release);
        // The committer task's last fsync, if any, is left to the thread's final try.
        self.file.inline.store(false, Ordering::Release);
        self.file.commit.notify_one();
        self.file.cv.notify_all();
        if let Some(t) = self.fsync.take() {
            let _ = t.join();
        }
    }
}

/// The seq after every file of the manifest.
pub fn next_seq(manifest: &Manifest) -> io::Result<u64> {
    manifest
        .files
        .iter()
        .map(|f| f.seq)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the manifest's seq numbers are exhausted"))
}

/// Creates a fresh AOF from a state at `offset`: its base written from `base` (a streamed
/// snapshot), an empty first increment, the manifest last. Any old AOF files are removed.
pub fn create(paths: &AofPaths, base: &[u8]) -> io::Result<Manifest> {
    files::ensure_dir(&paths.dir)?;
    files::remove_stale_temps(&paths.dir);
    let old = read_manifest(paths).ok().flatten();
    let seq = match &old {
        Some(m) => next_seq(m)?,
        None => 1,
    };
    let base_name = paths.base_name(seq);
    files::write_atomic(&paths.file(&base_name), base)?;
    let incr_name = paths.incr_name(seq);
    OpenOptions::new().create(true).write(true).truncate(true).open(paths.file(&incr_name))?.sync_all()?;
    let m = Manifest { files: vec![ManifestFile { name: base_name, seq, kind: FileKind::Base }, ManifestFile { name: incr_name, seq, kind: FileKind::Incr }] };
    files::write_atomic(&paths.manifest(), m.encode().as_bytes())?;
    if let Some(old) = old {
        for f in &old.files {
            if !m.files.iter().any(|n| n.name == f.name) {
                let _ = fs::remove_file(paths.file(&f.name));
            }
        }
    }
    files::sync_dir(&paths.dir)?;
    Ok(m)
}

/// Reads the manifest; `Ok(None)` when there is none.
pub fn read_manifest(paths: &AofPaths) -> Result<Option<Manifest>, String> {
    let path = paths.manifest();
    match fs::read_to_string(&path) {
        Ok(text) => Manifest::parse(&text).map(Some).map_err(|e| format!("{}: {}", path.display(), e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {}", path.display(), files::os_text(&e))),
    }
}

/// The dedupe memory as the AOF's records change it: entries by (subject, client), with
/// each client's floor.
#[derive(Debug, Default)]
pub struct DedupeMirror {
    clients: std::collections::HashMap<(String, Bytes), std::collections::BTreeMap<u64, DedupeEntry>>,
}

impl DedupeMirror {
    /// Starts from entries (a snapshot's).
    pub fn from_entries(entries: Vec<DedupeEntry>) -> DedupeMirror {
        let mut m = DedupeMirror::default();
        for e in entries {
            m.apply(DedupeChange::Put(e));
        }
        m
    }

    /// Applies one change as [`DedupeChange`] documents it.
    pub fn apply(&mut self, c: DedupeChange) {
        match c {
            DedupeChange::Put(e) => {
                let floor = e.floor;
                let w = self.clients.entry((e.subject.clone(), e.client.clone())).or_default();
                let (seq, used) = (e.seq, e.used);
                w.insert(seq, e);
                for entry in w.values_mut() {
                    entry.floor = entry.floor.max(floor);
                    entry.used = entry.used.max(used);
                }
                // Keep one entry at the floor when nothing is above it, so the floor survives.
                let keep_floor = w.keys().all(|s| *s <= floor);
                w.retain(|s, _| *s > floor || (keep_floor && *s == seq));
            }
            DedupeChange::Forget { subject, client } => {
                self.clients.remove(&(subject, client));
            }
        }
    }

    /// Every entry.
    pub fn into_entries(self) -> Vec<DedupeEntry> {
        self.clients.into_values().flat_map(|w| w.into_values()).collect()
    }
}

/// Encodes dedupe entries for a snapshot's aux chunk (a group record with no changes).
pub fn encode_dedupe(entries: Vec<DedupeEntry>) -> Vec<u8> {
    let changes: Vec<DedupeChange> = entries.into_iter().map(DedupeChange::Put).collect();
    let mut out = Vec::new();
    aof::encode_group(&ChangeGroup { offset: 0, changes: Vec::new() }, &changes, &mut out);
    out
}

/// Decodes [`encode_dedupe`].
pub fn decode_dedupe(data: &[u8]) -> Result<Vec<DedupeEntry>, String> {
    match aof::decode(&Bytes::copy_from_slice(data)) {
        Ok(aof::Decoded::Record(Record::Group { dedupe, .. }, _)) => Ok(dedupe
            .into_iter()
            .filter_map(|c| match c {
                DedupeChange::Put(e) => Some(e),
                DedupeChange::Forget { .. } => None,
            })
            .collect()),
        Ok(_) => Err("dedupe data is not a dedupe record".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// What loading the AOF gave.
pub struct Loaded {
    /// The manifest.
    pub manifest: Manifest,
    /// The stream id in force at the end.
    pub replid: String,
    /// The dedupe memory.
    pub dedupe: Vec<DedupeEntry>,
    /// The most recent groups (for the sync backlog).
    pub tail: Vec<ChangeGroup>,
    /// Keys in the base.
    pub base_keys: u64,
    /// Records replayed.
    pub records: u64,
    /// Changes whose replay failed (a bug; logged).
    pub failed: u64,
}

/// Progress while loading, for INFO.
pub trait LoadProgress {
    /// `bytes` more were read.
    fn read(&self, bytes: u64);
}

/// Loads the AOF into `engine` (which must be empty). `Ok(None)`: there is no AOF.
/// Damage refuses the load with a message naming the file, the byte and what to do; a
/// record cut short at the very end of the last increment is dropped (the file is cut
/// back to the last whole record) when `load_truncated` allows it.
pub fn load(paths: &AofPaths, engine: &mut Engine, load_truncated: bool, tail_bytes: usize, progress: &dyn LoadProgress) -> Result<Option<Loaded>, String> {
    let Some(manifest) = read_manifest(paths)? else { return Ok(None) };
    let mut replid = String::new();
    let mut dedupe = DedupeMirror::default();
    let mut base_keys = 0;
    let now = now_ms();
    if let Some(base) = manifest.base() {
        let path = paths.file(&base.name);
        let loaded = read_stream_file(&path, engine.config().databases, progress)
            .map_err(|e| format!("{}: {}", path.display(), e))?
            .ok_or_else(|| format!("{}: the base file named by the manifest is missing", path.display()))?;
        base_keys = loaded.keys;
        let (meta, aux) = recached_engine::snapshot::stream::install(engine, loaded, now);
        replid = meta.replid;
        for (name, data) in aux {
            if name == "dedupe" {
                dedupe = DedupeMirror::from_entries(decode_dedupe(&data).map_err(|e| format!("{}: dedupe data: {}", path.display(), e))?);
            }
        }
    }
    let incrs: Vec<&ManifestFile> = manifest.incrs().collect();
    let mut tail: VecDeque<(ChangeGroup, usize)> = VecDeque::new();
    let mut tail_size = 0;
    let (mut records, mut failed) = (0u64, 0u64);
    for (i, f) in incrs.iter().enumerate() {
        let path = paths.file(&f.name);
        let data = match fs::read(&path) {
            Ok(d) => Bytes::from(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!("{}: the increment file named by the manifest is missing", path.display()));
            }
            Err(e) => return Err(format!("cannot read {}: {}", path.display(), files::os_text(&e))),
        };
        progress.read(data.len() as u64);
        let damaged = |at: usize, e: aof::AofError| {
            format!(
                "{} is damaged at byte {}: {}. Run 'recached --check-aof {}' for details; 'recached --check-aof {} --fix' cuts the file at that byte (the records after it are lost). Or restore the file from a backup.",
                path.display(),
                at,
                e,
                paths.manifest().display(),
                paths.manifest().display()
            )
        };
        // Record by record: decoded, applied, dropped (no list of every record in memory).
        engine.set_quiet(true);
        let mut pos = 0;
        let torn = loop {
            let r = match aof::step(&data, pos).map_err(|e| damaged(pos, e))? {
                aof::Step::Record(r, next) => {
                    pos = next;
                    r
                }
                aof::Step::End => break false,
                aof::Step::Torn => break true,
            };
            records += 1;
            match r {
                Record::Group { group, dedupe: changes } => {
                    if group.offset <= engine.offset() && !group.changes.is_empty() {
                        return Err(format!(
                            "{}: a record at offset {} follows offset {}: the base and the increments do not fit together",
                            path.display(),
                            group.offset,
                            engine.offset()
                        ));
                    }
                    if let Err(e) = engine.apply_group(&group, now) {
                        failed += 1;
                        if failed <= 5 {
                            tracing::warn!(offset = group.offset, cause = ?e, "a change of the AOF did not apply");
                        }
                    }
                    if engine.has_events() {
                        engine.take_events();
                    }
                    for c in changes {
                        dedupe.apply(c);
                    }
                    if tail_bytes > 0 {
                        let size = group_size(&group);
                        tail_size += size;
                        tail.push_back((group, size));
                        while tail_size > tail_bytes {
                            let Some((_, s)) = tail.pop_front() else { break };
                            tail_size -= s;
                        }
                    }
                }
                Record::Stream { replid: r, offset } => {
                    replid = r;
                    if offset > engine.offset() {
                        engine.set_offset(offset);
                    }
                    // Groups before a new stream id are not the new stream's history.
                    tail.clear();
                    tail_size = 0;
                }
            }
        };
        engine.set_quiet(false);
        engine.take_events();
        if torn {
            let last = i + 1 == incrs.len();
            if !last || !load_truncated {
                return Err(format!(
                    "{} ends in the middle of a record at byte {} ({} bytes cut off){}. 'recached --check-aof {} --fix' cuts it back to the last whole record.",
                    path.display(),
                    pos,
                    data.len() - pos,
                    if last { " and aof-load-truncated is no" } else { ", and it is not the last increment" },
                    paths.manifest().display()
                ));
            }
            tracing::warn!(
                file = %path.display(),
                offset = pos,
                lost_bytes = data.len() - pos,
                "!!! the AOF ends in the middle of a record (a crash while writing it): cutting it off at byte {} and loading the rest (aof-load-truncated yes)",
                pos
            );
            OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| {
                    f.set_len(pos as u64)?;
                    f.sync_all()
                })
                .map_err(|e| format!("cannot cut {} back to byte {}: {}", path.display(), pos, files::os_text(&e)))?;
        }
    }
    Ok(Some(Loaded { manifest, replid, dedupe: dedupe.into_entries(), tail: tail.into_iter().map(|(g, _)| g).collect(), base_keys, records, failed }))
}

/// `recached --check-aof PATH [--fix]`: checks a manifest (and every file it names), an
/// increment file or a base file. With `--fix`, an increment is cut back at its first bad
/// record. Returns the process exit code.
pub fn check(path: &Path, fix: bool) -> u8 {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.ends_with(".manifest") {
        let dir = files::parent(path).to_path_buf();
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                println!("Cannot read {}: {}", path.display(), files::os_text(&e));
                return 1;
            }
        };
        let m = match Manifest::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                println!("{}: {}", path.display(), e);
                return 1;
            }
        };
        println!("Manifest {}: {} files", path.display(), m.files.len());
        let mut code = 0;
        for f in &m.files {
            if f.kind == FileKind::History {
                continue;
            }
            let c = check_file(&dir.join(&f.name), f.kind == FileKind::Base, fix);
            code = code.max(c);
        }
        return code;
    }
    check_file(path, name.ends_with(".rcs"), fix)
}

fn check_file(path: &Path, base: bool, fix: bool) -> u8 {
    if base {
        struct Quiet;
        impl LoadProgress for Quiet {
            fn read(&self, _: u64) {}
        }
        return match read_stream_file(path, recached_engine::snapshot::MAX_DATABASES, &Quiet) {
            Ok(Some(l)) => {
                println!("{}: base snapshot OK ({} keys, offset {})", path.display(), l.keys, l.meta.offset);
                0
            }
            Ok(None) => {
                println!("{}: missing", path.display());
                1
            }
            Err(e) => {
                println!("{}: {} (a base cannot be repaired: restore it from a backup)", path.display(), e);
                1
            }
        };
    }
    let mut data = Vec::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_end(&mut data)) {
        println!("Cannot read {}: {}", path.display(), files::os_text(&e));
        return 1;
    }
    let data = Bytes::from(data);
    let (good, problem) = match aof::scan(&data) {
        Ok(s) if !s.truncated => {
            println!("{}: OK ({} records, {} bytes)", path.display(), s.records.len(), data.len());
            return 0;
        }
        Ok(s) => (s.valid_len, format!("the last record is cut short at byte {}", s.valid_len)),
        Err((at, e)) => (at, format!("bad record at byte {}: {}", at, e)),
    };
    println!("{}: {}; {} bytes from there to the end of the file", path.display(), problem, data.len() - good);
    if !fix {
        println!("Run again with --fix to cut the file at byte {} (the records after it are lost).", good);
        return 1;
    }
    match OpenOptions::new().write(true).open(path).and_then(|f| {
        f.set_len(good as u64)?;
        f.sync_all()
    }) {
        Ok(()) => {
            println!("Successfully cut {} at byte {}.", path.display(), good);
            0
        }
        Err(e) => {
            println!("Cannot cut {}: {}", path.display(), files::os_text(&e));
            1
        }
    }
}
