//! A forkless, versioned snapshot: a cut of the whole state at one offset, serialized in
//! small steps while the engine keeps executing commands.
//!
//! The idea is Dragonfly's. Every entry carries the epoch of the last cut that holds it
//! ([`crate::Entry`]'s `saved`, which sits in padding). Starting a cut raises the engine's
//! epoch; from then on an entry whose mark is lower has not been serialized. Two paths
//! serialize entries, and each marks what it wrote:
//!
//! - the host's steps walk every database from its last storage position down to the
//!   first, a bounded number of entries per step;
//! - a write that is about to change or delete an unserialized entry serializes its *old*
//!   value first (every mutation passes [`crate::Ctx`]'s `record`, and expiry and
//!   eviction remove through the engine, so there is one door).
//!
//! Entries created during the cut carry the new epoch and are skipped: they are not part
//! of the state at the cut's offset. The file therefore holds exactly that state, and the
//! extra memory is what waits to be written, not a copy of the keyspace.
//!
//! Why the walk goes downward: removing a key moves the map's last entry into its slot
//! (`swap_remove`). Everything at or above the cursor is already marked, so a moved entry
//! is either marked already or moves into the unvisited part below the cursor, where the
//! walk still finds it. An upward walk would skip an unvisited last entry moved behind it.
//!
//! Whole-database operations during a cut: `FLUSHDB`/`FLUSHALL` (and a snapshot load) hand
//! the old map to the cut, which finishes walking it and then drops it; `SWAPDB` swaps
//! which live database feeds which database number of the cut.
//!
//! # How a host drives it
//! ```text
//! engine.begin_cut(replid, now, aux)?      // under the lock; the offset of the cut
//! loop {                                    // each step under the lock, briefly
//!     let step = engine.cut_step(budget);   // bytes to append to the file
//!     write step.bytes (off the lock)
//!     if step.done { break }                // the end chunk was in the last bytes
//! }
//! ```
//! [`Engine::abort_cut`] drops a cut (a failed write); the entries it did not reach are
//! simply older than the next cut's epoch.

use indexmap::IndexMap;

use super::stream::{self, kind, StreamMeta};
use crate::db::Entry;
use crate::engine::Engine;
use crate::value::{Blob, Hasher};

/// A map whose live database was flushed during the cut, still to be walked.
type Detached = IndexMap<Blob, Entry, Hasher>;

#[derive(Debug, Clone)]
enum Source {
    /// A live database, by its current index.
    Live(usize),
    /// A map taken out of a flushed database.
    Detached(Detached),
}

#[derive(Debug, Clone)]
struct Walk {
    /// The database number the entries are written under (its index at the cut).
    snap_db: u16,
    source: Source,
    /// Positions at or above this one are done.
    cursor: usize,
}

/// A cut in progress (one at a time per engine).
#[derive(Debug, Clone)]
pub(crate) struct Cut {
    epoch: u32,
    walks: Vec<Walk>,
    /// For each live database index, the database number of the cut whose unserialized
    /// entries it holds (`None`: it holds only entries made after the cut).
    live: Vec<Option<u16>>,
    /// Complete chunks (and the file header) waiting to be taken.
    out: Vec<u8>,
    /// The 'K' payload being filled.
    batch: Vec<u8>,
    keys: u64,
    offset: u64,
}

/// Why a cut could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a snapshot cut is already in progress")]
pub struct CutBusy;

/// What one step produced.
#[derive(Debug, Default)]
pub struct CutStep {
    /// Bytes to append to the file, in order.
    pub bytes: Vec<u8>,
    /// The cut is complete: `bytes` ends with the end chunk and the cut is gone.
    pub done: bool,
    /// Keys serialized so far (when done: in all).
    pub keys: u64,
    /// There was no cut (it was aborted): the file is incomplete and must be dropped.
    pub aborted: bool,
}

impl Cut {
    fn flush_batch(&mut self) {
        flush_batch(&mut self.batch, &mut self.out);
    }
}

fn flush_batch(batch: &mut Vec<u8>, out: &mut Vec<u8>) {
    if !batch.is_empty() {
        stream::push_chunk(out, kind::KEYS, batch);
        batch.clear();
    }
}

/// Appends one entry to the 'K' payload, closing the chunk once it is big enough.
fn serialize(batch: &mut Vec<u8>, out: &mut Vec<u8>, keys: &mut u64, snap_db: u16, key: &[u8], entry: &Entry) {
    stream::push_entry(batch, snap_db, key, entry);
    *keys += 1;
    if batch.len() >= stream::CHUNK_TARGET {
        flush_batch(batch, out);
    }
}

impl Engine {
    /// Starts a cut at the current offset: the file header, the meta chunk and one aux
    /// chunk per `aux` entry are ready at once; the keys follow through
    /// [`Engine::cut_step`]. Returns the offset the snapshot stands at.
    pub fn begin_cut(&mut self, replid: &str, created_ms: u64, aux: &[(&str, &[u8])]) -> Result<u64, CutBusy> {
        if self.cut.is_some() {
            return Err(CutBusy);
        }
        if self.snap_epoch == u32::MAX {
            // After four billion cuts: start the marks over.
            for db in &mut self.dbs {
                for e in db.keys.values_mut() {
                    e.saved = 0;
                }
            }
            self.snap_epoch = 0;
        }
        self.snap_epoch += 1;
        let mut out = stream::file_header().to_vec();
        let meta = StreamMeta { offset: self.offset(), replid: replid.to_string(), created_ms, keys: self.dbs.iter().map(|d| d.len() as u64).collect() };
        stream::push_chunk(&mut out, kind::META, &stream::meta_payload(&meta));
        for (name, data) in aux {
            stream::push_chunk(&mut out, kind::AUX, &stream::aux_payload(name, data));
        }
        let n = self.dbs.len();
        let walks =
            (0..n).rev().filter(|&i| !self.dbs[i].is_empty()).map(|i| Walk { snap_db: i as u16, source: Source::Live(i), cursor: self.dbs[i].len() }).collect();
        self.cut = Some(Box::new(Cut {
            epoch: self.snap_epoch,
            walks,
            live: (0..n).map(|i| Some(i as u16)).collect(),
            out,
            batch: Vec::new(),
            keys: 0,
            offset: meta.offset,
        }));
        Ok(meta.offset)
    }

    /// Whether a cut is in progress.
    pub fn cut_running(&self) -> bool {
        self.cut.is_some()
    }

    /// The offset of the cut in progress.
    pub fn cut_offset(&self) -> Option<u64> {
        self.cut.as_ref().map(|c| c.offset)
    }

    /// Bytes the cut holds that were not taken yet (INFO, memory accounting).
    pub fn cut_buffered(&self) -> usize {
        self.cut.as_ref().map(|c| c.out.capacity() + c.batch.capacity()).unwrap_or(0)
    }

    /// Walks up to `budget` entries (also stopping once a chunk's worth of bytes is
    /// ready) and hands out every complete chunk. Without a cut (it was aborted) the step
    /// says [`CutStep::aborted`].
    pub fn cut_step(&mut self, budget: usize) -> CutStep {
        let Some(mut cut) = self.cut.take() else { return CutStep { aborted: true, ..CutStep::default() } };
        let epoch = cut.epoch;
        let mut left = budget.max(1);
        while left > 0 && cut.out.len() < stream::CHUNK_TARGET {
            let Cut { walks, batch, out, keys, .. } = &mut *cut;
            let Some(walk) = walks.last_mut() else { break };
            let len = match &walk.source {
                Source::Live(i) => self.dbs[*i].len(),
                Source::Detached(map) => map.len(),
            };
            walk.cursor = walk.cursor.min(len);
            if walk.cursor == 0 {
                walks.pop();
                continue;
            }
            walk.cursor -= 1;
            left -= 1;
            let (pos, snap_db) = (walk.cursor, walk.snap_db);
            match &walk.source {
                Source::Live(i) => {
                    if let Some((k, e)) = self.dbs[*i].get_index_mut(pos) {
                        if e.saved < epoch {
                            e.saved = epoch;
                            serialize(batch, out, keys, snap_db, k, e);
                        }
                    }
                }
                Source::Detached(map) => {
                    if let Some((k, e)) = map.get_index(pos) {
                        if e.saved < epoch {
                            serialize(batch, out, keys, snap_db, k, e);
                        }
                    }
                }
            }
        }
        let done = cut.walks.is_empty();
        if done {
            cut.flush_batch();
            stream::push_chunk(&mut cut.out, kind::END, &stream::end_payload(cut.keys));
            return CutStep { bytes: std::mem::take(&mut cut.out), done: true, keys: cut.keys, aborted: false };
        }
        let step = CutStep { bytes: std::mem::take(&mut cut.out), done: false, keys: cut.keys, aborted: false };
        self.cut = Some(cut);
        step
    }

    /// Drops the cut in progress, if any.
    pub fn abort_cut(&mut self) {
        self.cut = None;
    }

    /// Before `key` of live database `db` changes or goes: serialize its old value if the
    /// cut has not yet.
    pub(crate) fn cut_before_write(&mut self, db: usize, key: &[u8]) {
        let Some(cut) = self.cut.as_deref_mut() else { return };
        let Some(Some(snap_db)) = cut.live.get(db).copied() else { return };
        let Some(e) = self.dbs[db].get_mut(key) else { return };
        if e.saved >= cut.epoch {
            return;
        }
        e.saved = cut.epoch;
        serialize(&mut cut.batch, &mut cut.out, &mut cut.keys, snap_db, key, e);
    }

    /// Database `db` is about to be emptied: the cut keeps its old map to finish it.
    pub(crate) fn cut_detach(&mut self, db: usize) {
        let Some(cut) = self.cut.as_deref_mut() else { return };
        let Some(slot) = cut.live.get_mut(db) else { return };
        if slot.take().is_none() {
            return;
        }
        let Some(walk) = cut.walks.iter_mut().find(|w| matches!(w.source, Source::Live(i) if i == db)) else { return };
        walk.source = Source::Detached(self.dbs[db].take_keys());
    }

    /// Databases `a` and `b` are about to swap.
    pub(crate) fn cut_swap(&mut self, a: usize, b: usize) {
        let Some(cut) = self.cut.as_deref_mut() else { return };
        if a >= cut.live.len() || b >= cut.live.len() {
            return;
        }
        cut.live.swap(a, b);
        for w in &mut cut.walks {
            if let Source::Live(i) = &mut w.source {
                if *i == a {
                    *i = b;
                } else if *i == b {
                    *i = a;
                }
            }
        }
    }

    /// Every database is about to be replaced (a snapshot load).
    pub(crate) fn cut_detach_all(&mut self) {
        for db in 0..self.dbs.len() {
            self.cut_detach(db);
        }
    }

    /// The epoch new entries get: the cut's while one runs, so it skips them.
    pub(crate) fn new_entry_epoch(&self) -> u32 {
        self.snap_epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Session;
    use crate::rng::Rng;
    use crate::snapshot::{self, stream, SnapshotMeta};

    const NOW: u64 = 1_700_000_000_000;

    fn canonical(e: &Engine) -> Vec<u8> {
        snapshot::encode(e, &SnapshotMeta::default())
    }

    fn run(e: &mut Engine, s: &mut Session, args: &[&str]) {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        e.run(s, &args, NOW);
    }

    /// Drives a cut to the end with a small budget, running `between` after every step.
    fn cut_with(e: &mut Engine, budget: usize, mut between: impl FnMut(&mut Engine, usize)) -> Vec<u8> {
        e.begin_cut("r", NOW, &[]).unwrap();
        let mut file = Vec::new();
        for i in 0.. {
            let step = e.cut_step(budget);
            file.extend_from_slice(&step.bytes);
            if step.done {
                break;
            }
            between(e, i);
        }
        file
    }

    fn loaded(file: &[u8]) -> Engine {
        let mut f = Engine::default();
        stream::install(&mut f, stream::decode(file, 16).unwrap(), NOW);
        f
    }

    #[test]
    fn an_idle_cut_is_the_whole_state() {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        for i in 0..500 {
            run(&mut e, &mut s, &["SET", &format!("k{i}"), "v"]);
        }
        run(&mut e, &mut s, &["SELECT", "3"]);
        run(&mut e, &mut s, &["HSET", "h", "f", "v"]);
        let file = cut_with(&mut e, 7, |_, _| {});
        assert!(!e.cut_running());
        assert!(canonical(&loaded(&file)) == canonical(&e));
    }

    /// The file holds the state at the cut's offset, whatever the writes do meanwhile:
    /// random writes, deletes (which move entries), flushes and swaps between steps.
    #[test]
    fn writes_during_the_cut_never_leak_into_it() {
        for seed in 0..40u64 {
            let mut rng = Rng::new(seed);
            let mut e = Engine::default();
            let mut s = Session::new(1);
            for i in 0..300 {
                let db = (i % 3).to_string();
                run(&mut e, &mut s, &["SELECT", &db]);
                run(&mut e, &mut s, &["RPUSH", &format!("k{}", i % 97), &i.to_string()]);
            }
            let before = canonical(&e);
            let ops: &[&[&str]] = &[
                &["DEL", "K"],
                &["SET", "K", "new"],
                &["RPUSH", "K", "x"],
                &["RENAME", "K", "K"],
                &["EXPIRE", "K", "100"],
                &["FLUSHDB"],
                &["SWAPDB", "0", "1"],
                &["SWAPDB", "1", "2"],
                &["MOVE", "K", "2"],
                &["SELECT", "D"],
            ];
            let file = cut_with(&mut e, 1 + (seed as usize % 9), |e, _| {
                for _ in 0..3 {
                    let op = ops[rng.below(ops.len())];
                    // Flushes are rare, so most runs walk a populated keyspace.
                    if op[0] == "FLUSHDB" && rng.below(20) != 0 {
                        continue;
                    }
                    let args: Vec<String> = op
                        .iter()
                        .map(|a| match *a {
                            "K" => format!("k{}", rng.below(100)),
                            "D" => rng.below(3).to_string(),
                            other => other.to_string(),
                        })
                        .collect();
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    run(e, &mut s, &args);
                }
            });
            assert!(canonical(&loaded(&file)) == before, "seed {seed}: the cut is not the state at its offset");
        }
    }

    #[test]
    fn one_cut_at_a_time_and_abort() {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        run(&mut e, &mut s, &["SET", "a", "1"]);
        let at = e.begin_cut("r", NOW, &[("x", b"y")]).unwrap();
        assert_eq!(at, e.offset());
        assert_eq!(e.begin_cut("r", NOW, &[]), Err(CutBusy));
        e.abort_cut();
        assert!(!e.cut_running());
        // The next cut sees every entry again.
        let file = cut_with(&mut e, 100, |_, _| {});
        assert!(canonical(&loaded(&file)) == canonical(&e));
    }
}
