//! Storage encodings of the edge hub, host-independent so they are tested natively.
//!
//! - A key is stored as a **one-key engine snapshot** (`recached_engine::snapshot`: magic,
//!   version, CRC, postcard payload, the key in its database with its expiry), so the
//!   edge writes no value format of its own and a row is self-checking.
//! - A change group of the resume backlog is stored as postcard `(offset, [(db, [arg])])`.
//! - Either may be larger than a storage row allows (2 MB on Durable Objects): it is
//!   split into [`CHUNK`]-byte parts stored under `(…, part)` and concatenated on load.

use bytes::Bytes;
use recached_engine::snapshot::{self, SnapshotError, SnapshotMeta};
use recached_engine::{Change, ChangeGroup, Config, Db, Engine, Entry};

/// Largest part of one stored value (Durable Object SQL rows and blobs are limited to
/// 2 MB; a part stays well under it).
pub const CHUNK: usize = 1 << 20;

/// Splits `data` into parts of at most [`CHUNK`] bytes; an empty value is one empty part.
pub fn chunks(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return vec![data];
    }
    data.chunks(CHUNK).collect()
}

/// Encodes keys one at a time as one-key snapshots, reusing one scratch engine.
#[derive(Debug)]
pub struct KeyEncoder {
    scratch: Engine,
}

impl Default for KeyEncoder {
    fn default() -> KeyEncoder {
        KeyEncoder { scratch: Engine::new(Config::default()) }
    }
}

impl KeyEncoder {
    /// The stored form of `key` in database `db` holding `entry`.
    pub fn encode(&mut self, db: usize, key: &[u8], entry: &Entry) -> Vec<u8> {
        let mut dbs: Vec<Db> = (0..=db).map(|_| Db::default()).collect();
        dbs[db].insert(key, entry.clone());
        self.scratch.load_dbs(dbs);
        let out = snapshot::encode(&self.scratch, &SnapshotMeta::default());
        self.scratch.load_dbs(Vec::new());
        out
    }
}

/// Merges stored keys (each a one-key snapshot) into databases for
/// [`Engine::load_dbs`]. `databases` is the engine's count; a key in a database beyond it
/// is an error, as for a whole snapshot.
pub fn decode_keys<'a>(rows: impl IntoIterator<Item = &'a [u8]>, databases: usize) -> Result<Vec<Db>, SnapshotError> {
    let mut out: Vec<Db> = (0..databases.max(1)).map(|_| Db::default()).collect();
    for row in rows {
        let (dbs, _) = snapshot::decode(row)?;
        for (index, db) in dbs.iter().enumerate() {
            if db.is_empty() {
                continue;
            }
            let target = out.get_mut(index).ok_or(SnapshotError::TooManyDatabases { index, databases })?;
            for (k, e) in db.iter() {
                target.insert(k, e.clone());
            }
        }
    }
    Ok(out)
}

/// Encodes a change group for the persisted backlog.
pub fn encode_group(group: &ChangeGroup) -> Vec<u8> {
    let changes: Vec<(u16, Vec<&[u8]>)> = group.changes.iter().map(|c| (c.db, c.args.iter().map(|a| a.as_ref()).collect())).collect();
    postcard::to_allocvec(&(group.offset, changes)).unwrap_or_default()
}

/// A stored group: `(offset, [(db, [arg])])`.
type StoredGroup = (u64, Vec<(u16, Vec<Vec<u8>>)>);

/// Decodes [`encode_group`]'s output; `None` if it is not one.
pub fn decode_group(bytes: &[u8]) -> Option<ChangeGroup> {
    let (offset, changes): StoredGroup = postcard::from_bytes(bytes).ok()?;
    Some(ChangeGroup { offset, changes: changes.into_iter().map(|(db, args)| Change { db, args: args.into_iter().map(Bytes::from).collect() }).collect() })
}

/// What one batch of change groups does to storage: keys to rewrite from the engine's
/// current state (or delete when gone), and whole databases to clear or rewrite first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// `FLUSHALL` seen: clear every stored key first.
    pub flush_all: bool,
    /// Databases to rewrite entirely (`FLUSHDB`, `SWAPDB`).
    pub dbs: Vec<u16>,
    /// Keys `(db, key)` to rewrite, in first-touched order, without repeats.
    pub keys: Vec<(u16, Bytes)>,
}

impl Touched {
    /// The storage effect of `groups`. Every key is later written from the engine's state
    /// after the whole batch, so the order of changes within the batch does not matter.
    pub fn of(groups: &[ChangeGroup]) -> Touched {
        let mut t = Touched::default();
        let mut seen = std::collections::HashSet::new();
        for c in groups.iter().flat_map(|g| &g.changes) {
            match (c.name(), c.key()) {
                (_, Some(k)) if seen.insert((c.db, k.clone())) => t.keys.push((c.db, k.clone())),
                (_, Some(_)) => {}
                (b"FLUSHALL", None) => t.flush_all = true,
                (b"FLUSHDB", None) => t.dbs.push(c.db),
                (b"SWAPDB", None) => {
                    for a in c.args.iter().skip(1) {
                        if let Some(n) = recached_engine::util::parse_i64(a).and_then(|n| u16::try_from(n).ok()) {
                            t.dbs.push(n);
                        }
                    }
                }
                _ => {}
            }
        }
        t.dbs.sort_unstable();
        t.dbs.dedup();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recached_engine::Session;

    fn run(eng: &mut Engine, s: &mut Session, args: &[&str]) {
        let a: Vec<&[u8]> = args.iter().map(|x| x.as_bytes()).collect();
        eng.run(s, &a, 1_000);
    }

    #[test]
    fn keys_round_trip_through_one_key_snapshots() {
        let mut eng = Engine::new(Config::default());
        let mut s = Session::new(1);
        run(&mut eng, &mut s, &["SET", "s", "v", "PX", "100000"]);
        run(&mut eng, &mut s, &["RPUSH", "l", "a", "b"]);
        run(&mut eng, &mut s, &["HSET", "h", "f", "1"]);
        run(&mut eng, &mut s, &["ZADD", "z", "1.5", "m"]);
        run(&mut eng, &mut s, &["SELECT", "3"]);
        run(&mut eng, &mut s, &["SADD", "set3", "x"]);
        let mut enc = KeyEncoder::default();
        let rows: Vec<Vec<u8>> = eng.dbs().iter().enumerate().flat_map(|(i, db)| db.iter().map(|(k, e)| enc.encode(i, k, e)).collect::<Vec<_>>()).collect();
        assert_eq!(rows.len(), 5);
        let dbs = decode_keys(rows.iter().map(|r| r.as_slice()), 16).unwrap();
        for (i, db) in dbs.iter().enumerate() {
            let mut want: Vec<_> = eng.dbs()[i].iter().map(|(k, e)| (k.clone(), e.value.clone(), e.expire_at)).collect();
            let mut got: Vec<_> = db.iter().map(|(k, e)| (k.clone(), e.value.clone(), e.expire_at)).collect();
            want.sort_by(|a, b| a.0.cmp(&b.0));
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(want, got, "db {i}");
        }
        assert!(decode_keys([&rows[0][..5]], 16).is_err(), "a cut row is an error, not a panic");
        assert!(matches!(decode_keys([rows[4].as_slice()], 2), Err(SnapshotError::TooManyDatabases { index: 3, .. })));
    }

    #[test]
    fn groups_round_trip_and_touch_keys() {
        let g = ChangeGroup {
            offset: 7,
            changes: vec![
                Change { db: 0, args: vec![Bytes::from_static(b"SET"), Bytes::from_static(b"k"), Bytes::from_static(b"\x00\xff")] },
                Change { db: 0, args: vec![Bytes::from_static(b"DEL"), Bytes::from_static(b"k")] },
                Change { db: 2, args: vec![Bytes::from_static(b"SWAPDB"), Bytes::from_static(b"2"), Bytes::from_static(b"5")] },
            ],
        };
        assert_eq!(decode_group(&encode_group(&g)), Some(g.clone()));
        assert_eq!(decode_group(b"\xff\xff\xff"), None);
        let t = Touched::of(&[g]);
        assert_eq!(t.keys, vec![(0, Bytes::from_static(b"k"))]);
        assert_eq!(t.dbs, vec![2, 5]);
        assert!(!t.flush_all);
    }

    #[test]
    fn chunking() {
        assert_eq!(chunks(b"").len(), 1);
        let big = vec![7u8; CHUNK * 2 + 1];
        let parts = chunks(&big);
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), vec![CHUNK, CHUNK, 1]);
        assert_eq!(parts.concat(), big);
    }
}
