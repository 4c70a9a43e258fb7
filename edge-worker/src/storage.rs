//! The Durable Object's SQLite-backed storage: keys, stream meta, resume backlog, and the
//! write-dedupe memory.
//!
//! ```text
//! meta(name TEXT PRIMARY KEY, value TEXT)          replid, offset (of the last persisted group)
//! kv(db, key BLOB, part, data BLOB)               one row per part of a one-key snapshot
//! backlog(offset, part, data BLOB)                 one row per part of a change group
//! dedupe_client(subject, client BLOB, floor, used) one row per remembered client window
//! dedupe(subject, client BLOB, seq, offset, reply) one row per remembered write result
//! ```
//!
//! Every call is synchronous (`ctx.storage.sql.exec`): the writes of one event are one
//! implicit transaction, and the runtime's output gate holds every message the event
//! sends (acks, pushes, HTTP responses) until that transaction is durable.

use std::collections::BTreeMap;

use bytes::Bytes;
use recached_engine::sync::{Backlog, DedupeChange, DedupeEntry};
use recached_engine::{ChangeGroup, Db, Engine};
use worker::{SqlStorage, SqlStorageValue as V};

use crate::codec::{self, KeyEncoder, Touched};

/// What was stored, as loaded at wake.
pub struct Loaded {
    /// The stream id, if one was stored.
    pub replid: Option<String>,
    /// Offset of the last persisted group.
    pub offset: u64,
    /// The databases.
    pub dbs: Vec<Db>,
    /// Persisted backlog groups, oldest first.
    pub backlog: Vec<ChangeGroup>,
    /// Keys whose rows failed to decode (skipped, reported in the log).
    pub bad_rows: usize,
    /// The write-dedupe memory, for [`recached_engine::sync::SyncHub::restore_dedupe`].
    pub dedupe: Vec<DedupeEntry>,
}

/// The storage layer of one Durable Object.
pub struct Store {
    sql: SqlStorage,
    keys: KeyEncoder,
}

fn blob(v: &V) -> &[u8] {
    match v {
        V::Blob(b) => b,
        _ => &[],
    }
}

fn int(v: &V) -> i64 {
    match v {
        V::Integer(i) => *i,
        V::Float(f) => *f as i64,
        _ => 0,
    }
}

impl Store {
    /// Opens the storage, creating the tables on first use.
    pub fn open(sql: SqlStorage) -> worker::Result<Store> {
        sql.exec("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)", None)?;
        sql.exec("CREATE TABLE IF NOT EXISTS kv (db INTEGER NOT NULL, key BLOB NOT NULL, part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (db, key, part))", None)?;
        sql.exec("CREATE TABLE IF NOT EXISTS backlog (offset INTEGER NOT NULL, part INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (offset, part))", None)?;
        sql.exec("CREATE TABLE IF NOT EXISTS dedupe_client (subject TEXT NOT NULL, client BLOB NOT NULL, floor INTEGER NOT NULL, used INTEGER NOT NULL, PRIMARY KEY (subject, client))", None)?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS dedupe (subject TEXT NOT NULL, client BLOB NOT NULL, seq INTEGER NOT NULL, offset INTEGER NOT NULL, reply BLOB NOT NULL, PRIMARY KEY (subject, client, seq))",
            None,
        )?;
        Ok(Store { sql, keys: KeyEncoder::default() })
    }

    fn meta(&self, name: &str) -> worker::Result<Option<String>> {
        let rows: Vec<Vec<V>> = self.sql.exec("SELECT value FROM meta WHERE name = ?", vec![name.into()])?.raw().collect::<worker::Result<_>>()?;
        Ok(rows.into_iter().next().and_then(|r| match r.into_iter().next() {
            Some(V::String(s)) => Some(s),
            _ => None,
        }))
    }

    fn set_meta(&self, name: &str, value: &str) -> worker::Result<()> {
        self.sql.exec("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value", vec![name.into(), value.into()])?;
        Ok(())
    }

    /// Records the stream id (a new object, or a stream reset).
    pub fn set_replid(&self, replid: &str) -> worker::Result<()> {
        self.set_meta("replid", replid)
    }

    /// Loads everything.
    pub fn load(&self, databases: usize) -> worker::Result<Loaded> {
        let replid = self.meta("replid")?;
        let offset = self.meta("offset")?.and_then(|s| s.parse().ok()).unwrap_or(0);
        // Parts come in key order; concatenate each key's parts.
        let mut values: BTreeMap<(i64, Vec<u8>), Vec<u8>> = BTreeMap::new();
        for row in self.sql.exec("SELECT db, key, data FROM kv ORDER BY db, key, part", None)?.raw() {
            let row = row?;
            if row.len() == 3 {
                values.entry((int(&row[0]), blob(&row[1]).to_vec())).or_default().extend_from_slice(blob(&row[2]));
            }
        }
        let mut bad_rows = 0;
        let mut good = Vec::with_capacity(values.len());
        for v in values.values() {
            // One bad row must not lose the others: check each alone first.
            if codec::decode_keys([v.as_slice()], databases).is_ok() {
                good.push(v.as_slice());
            } else {
                bad_rows += 1;
            }
        }
        let dbs = codec::decode_keys(good, databases).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut groups: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for row in self.sql.exec("SELECT offset, data FROM backlog ORDER BY offset, part", None)?.raw() {
            let row = row?;
            if row.len() == 2 {
                groups.entry(int(&row[0])).or_default().extend_from_slice(blob(&row[1]));
            }
        }
        // Keep only the contiguous run that ends at `offset`: anything else cannot resume.
        let mut backlog: Vec<ChangeGroup> = groups.values().filter_map(|g| codec::decode_group(g)).filter(|g| g.offset <= offset).collect();
        let (mut start, mut expect) = (backlog.len(), offset);
        while start > 0 && backlog[start - 1].offset == expect {
            start -= 1;
            expect = expect.saturating_sub(1);
        }
        backlog.drain(..start);
        let mut dedupe = Vec::new();
        let rows = "SELECT d.subject, d.client, d.seq, d.offset, d.reply, c.floor, c.used FROM dedupe d JOIN dedupe_client c ON c.subject = d.subject AND c.client = d.client";
        for row in self.sql.exec(rows, None)?.raw() {
            let row = row?;
            let [V::String(subject), client, seq, offset, reply, floor, used] = row.as_slice() else { continue };
            dedupe.push(DedupeEntry {
                subject: subject.clone(),
                client: Bytes::copy_from_slice(blob(client)),
                seq: int(seq) as u64,
                offset: int(offset) as u64,
                reply: Bytes::copy_from_slice(blob(reply)),
                floor: int(floor) as u64,
                used: int(used) as u64,
            });
        }
        Ok(Loaded { replid, offset, dbs, backlog, bad_rows, dedupe })
    }

    /// Mirrors the hub's dedupe memory changes ([`recached_engine::sync::Output::dedupe`]),
    /// in the same event as the acks they belong to. Seqs are stored as SQLite's i64 (the
    /// bits of the u64): a seq past 2^63 only weakens that client's own floor deletes.
    pub fn persist_dedupe(&self, changes: &[DedupeChange]) -> worker::Result<()> {
        for change in changes {
            match change {
                DedupeChange::Put(e) => {
                    let (subject, client) = (V::String(e.subject.clone()), V::Blob(e.client.to_vec()));
                    self.sql.exec(
                        "INSERT OR REPLACE INTO dedupe (subject, client, seq, offset, reply) VALUES (?, ?, ?, ?, ?)",
                        vec![subject.clone(), client.clone(), V::Integer(e.seq as i64), V::Integer(e.offset as i64), V::Blob(e.reply.to_vec())],
                    )?;
                    self.sql.exec(
                        "INSERT OR REPLACE INTO dedupe_client (subject, client, floor, used) VALUES (?, ?, ?, ?)",
                        vec![subject.clone(), client.clone(), V::Integer(e.floor as i64), V::Integer(e.used as i64)],
                    )?;
                    self.sql.exec("DELETE FROM dedupe WHERE subject = ? AND client = ? AND seq <= ?", vec![subject, client, V::Integer(e.floor as i64)])?;
                }
                DedupeChange::Forget { subject, client } => {
                    for table in ["dedupe", "dedupe_client"] {
                        self.sql.exec(&format!("DELETE FROM {table} WHERE subject = ? AND client = ?"), vec![V::String(subject.clone()), V::Blob(client.to_vec())])?;
                    }
                }
            }
        }
        Ok(())
    }

    fn write_key(&mut self, engine: &Engine, db: u16, key: &[u8]) -> worker::Result<()> {
        self.sql.exec("DELETE FROM kv WHERE db = ? AND key = ?", vec![V::Integer(db as i64), V::Blob(key.to_vec())])?;
        if let Some(entry) = engine.db(db as usize).and_then(|d| d.get(key)) {
            let bytes = self.keys.encode(db as usize, key, entry);
            for (part, data) in codec::chunks(&bytes).into_iter().enumerate() {
                self.sql.exec(
                    "INSERT INTO kv (db, key, part, data) VALUES (?, ?, ?, ?)",
                    vec![V::Integer(db as i64), V::Blob(key.to_vec()), V::Integer(part as i64), V::Blob(data.to_vec())],
                )?;
            }
        }
        Ok(())
    }

    fn rewrite_db(&mut self, engine: &Engine, db: u16) -> worker::Result<()> {
        self.sql.exec("DELETE FROM kv WHERE db = ?", vec![V::Integer(db as i64)])?;
        let keys: Vec<Vec<u8>> = engine.db(db as usize).map(|d| d.iter().map(|(k, _)| k.to_vec()).collect()).unwrap_or_default();
        for k in keys {
            self.write_key(engine, db, &k)?;
        }
        Ok(())
    }

    /// Persists the effect of `groups` (already applied to `engine`): the keys they touch,
    /// as they are now, the groups themselves into the backlog, and the offset. Backlog
    /// rows at or below `backlog.base_offset()` are dropped.
    pub fn persist(&mut self, engine: &Engine, groups: &[ChangeGroup], backlog: &Backlog) -> worker::Result<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let touched = Touched::of(groups);
        if touched.flush_all {
            self.sql.exec("DELETE FROM kv", None)?;
        }
        for db in &touched.dbs {
            self.rewrite_db(engine, *db)?;
        }
        for (db, key) in &touched.keys {
            self.write_key(engine, *db, key)?;
        }
        for g in groups {
            // A group larger than the whole backlog bound is not kept by the backlog either.
            if g.offset <= backlog.base_offset() {
                continue;
            }
            let bytes = codec::encode_group(g);
            for (part, data) in codec::chunks(&bytes).into_iter().enumerate() {
                self.sql.exec(
                    "INSERT OR REPLACE INTO backlog (offset, part, data) VALUES (?, ?, ?)",
                    vec![V::Integer(g.offset as i64), V::Integer(part as i64), V::Blob(data.to_vec())],
                )?;
            }
        }
        self.trim_backlog(backlog)?;
        let last = groups.last().map(|g| g.offset).unwrap_or(0).max(engine.offset());
        self.set_meta("offset", &last.to_string())
    }

    /// Drops persisted backlog groups the in-memory backlog no longer holds.
    pub fn trim_backlog(&self, backlog: &Backlog) -> worker::Result<()> {
        self.sql.exec("DELETE FROM backlog WHERE offset <= ?", vec![V::Integer(backlog.base_offset() as i64)])?;
        Ok(())
    }

    /// Bytes the database takes (for `/metrics`).
    pub fn size(&self) -> usize {
        self.sql.database_size()
    }
}
