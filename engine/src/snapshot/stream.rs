//! The streamed snapshot file: what `SAVE`/`BGSAVE` write (`dump.rcs`) and what an AOF's
//! base holds.
//!
//! The canonical codec of [`crate::snapshot`] sorts every key, so it can only be written
//! from a frozen state in one piece. This format is written piece by piece while the
//! engine keeps serving ([`crate::snapshot::cut`]), in whatever order the keys come, and
//! read back piece by piece with bounded memory. The state it describes is exact; two
//! engines loaded from it encode the same canonical bytes.
//!
//! ```text
//! file   := magic "RCSNAP" | version u16le (= 2) | chunk* (last one 'E')
//! chunk  := kind u8 | len u64le | crc u32le (CRC-32 of the payload) | payload[len]
//! kinds  := 'M' meta: postcard (offset u64, replid str, created_ms u64, [keys per db u64])
//!           'A' aux:  postcard (name str, data bytes): host data taken at the cut
//!                     (the sync write-dedupe memory, ...)
//!           'K' keys: postcard (db u16, key bytes, expire_at u64, value) records back
//!                     to back; values as in the canonical codec
//!           'E' end:  postcard (keys u64): the number of 'K' records in the file
//! ```
//!
//! The first chunk is 'M', the last 'E'; nothing may follow it. A file without its 'E'
//! is incomplete (a crash while writing it) and is refused, as is any chunk whose CRC does
//! not match. Every error says at which byte it was found.

use serde::Serialize;
use thiserror::Error;

use super::{BytesOut, Crc32, ValueIn, ValueOut, MAX_DATABASES};
use crate::db::{Db, Entry};
use crate::engine::Engine;

/// The first bytes of a file (shared with the canonical codec).
pub const MAGIC: &[u8; 6] = super::MAGIC;
/// The version of the streamed format.
pub const VERSION: u16 = 2;
/// Bytes of the file header.
pub const FILE_HEADER_LEN: usize = 8;
/// Bytes of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 13;
/// A 'K' chunk is closed once its payload passes this size.
pub const CHUNK_TARGET: usize = 256 * 1024;

/// Chunk kinds.
pub mod kind {
    /// Where the snapshot sits in the stream.
    pub const META: u8 = b'M';
    /// Host data.
    pub const AUX: u8 = b'A';
    /// Keys.
    pub const KEYS: u8 = b'K';
    /// The end.
    pub const END: u8 = b'E';
}

/// What a streamed snapshot says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamMeta {
    /// Offset of the last change group the snapshot holds.
    pub offset: u64,
    /// Replication id of the stream that offset belongs to.
    pub replid: String,
    /// When the cut was taken, Unix ms.
    pub created_ms: u64,
    /// Keys per database at the cut (a hint to size the maps when loading).
    pub keys: Vec<u64>,
}

/// Why a streamed snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Not a Recached snapshot.
    #[error("not a Recached snapshot (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("unsupported snapshot version {found} (this build reads version {supported})")]
    Version {
        /// Found in the header.
        found: u16,
        /// [`VERSION`].
        supported: u16,
    },
    /// The file ends before its end chunk (a crash while it was written, or a cut copy).
    #[error("the file ends at byte {at} before the snapshot's end: it is incomplete")]
    Truncated {
        /// File length.
        at: u64,
    },
    /// A chunk's bytes do not match its checksum.
    #[error("checksum mismatch in the chunk at byte {at} (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// Where the chunk starts.
        at: u64,
        /// In the header.
        stored: u32,
        /// Of the bytes read.
        computed: u32,
    },
    /// The checksums match but the content is wrong (a writer bug or a forged file).
    #[error("corrupt snapshot at byte {at}: {what}")]
    Corrupt {
        /// Where the chunk starts.
        at: u64,
        /// What is wrong.
        what: String,
    },
    /// Data in a database the engine does not have.
    #[error("the snapshot has data in database {index} but the server has {databases} databases")]
    TooManyDatabases {
        /// The database.
        index: usize,
        /// The server's `databases`.
        databases: usize,
    },
}

/// The file header.
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..6].copy_from_slice(MAGIC);
    h[6..].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// Checks a file header.
pub fn check_file_header(h: &[u8]) -> Result<(), StreamError> {
    if h.len() < FILE_HEADER_LEN || &h[..6] != MAGIC {
        return Err(StreamError::BadMagic);
    }
    let found = u16::from_le_bytes([h[6], h[7]]);
    if found != VERSION {
        return Err(StreamError::Version { found, supported: VERSION });
    }
    Ok(())
}

/// Appends one chunk.
pub fn push_chunk(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Crc32::of(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A chunk header: kind, payload length, stored CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The kind byte.
    pub kind: u8,
    /// Payload length.
    pub len: u64,
    /// The CRC the writer stored.
    pub crc: u32,
}

/// Reads a chunk header (exactly [`CHUNK_HEADER_LEN`] bytes).
pub fn chunk_header(h: &[u8; CHUNK_HEADER_LEN]) -> ChunkHeader {
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[1..9]);
    ChunkHeader { kind: h[0], len: u64::from_le_bytes(len), crc: u32::from_le_bytes([h[9], h[10], h[11], h[12]]) }
}

fn to_extend<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Serializing into a Vec cannot fail: the writer never runs out of room and every
    // sequence states its length.
    let v = std::mem::take(out);
    *out = match postcard::to_extend(value, v) {
        Ok(v) => v,
        Err(e) => unreachable!("postcard into a Vec: {e}"),
    };
}

/// The payload of a meta chunk.
pub fn meta_payload(meta: &StreamMeta) -> Vec<u8> {
    let mut out = Vec::new();
    to_extend(&(meta.offset, meta.replid.as_str(), meta.created_ms, meta.keys.as_slice()), &mut out);
    out
}

/// The payload of an aux chunk.
pub fn aux_payload(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    to_extend(&(name, BytesOut(data)), &mut out);
    out
}

/// The payload of the end chunk.
pub fn end_payload(keys: u64) -> Vec<u8> {
    let mut out = Vec::new();
    to_extend(&keys, &mut out);
    out
}

/// Appends one key record to a 'K' payload.
pub fn push_entry(payload: &mut Vec<u8>, db: u16, key: &[u8], entry: &Entry) {
    to_extend(&(db, BytesOut(key), entry.expire_at, ValueOut(&entry.value)), payload);
}

/// A whole streamed snapshot of an engine, written at once (tests, `SAVE` of small
/// states and tools; `BGSAVE` writes the same bytes piece by piece through a cut).
pub fn encode(engine: &Engine, meta: &StreamMeta, aux: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = file_header().to_vec();
    let mut meta = meta.clone();
    meta.keys = engine.dbs().iter().map(|d| d.len() as u64).collect();
    push_chunk(&mut out, kind::META, &meta_payload(&meta));
    for (name, data) in aux {
        push_chunk(&mut out, kind::AUX, &aux_payload(name, data));
    }
    let mut payload = Vec::new();
    let mut keys = 0u64;
    for (index, db) in engine.dbs().iter().enumerate() {
        for (key, entry) in db.iter() {
            push_entry(&mut payload, index as u16, key, entry);
            keys += 1;
            if payload.len() >= CHUNK_TARGET {
                push_chunk(&mut out, kind::KEYS, &payload);
                payload.clear();
            }
        }
    }
    if !payload.is_empty() {
        push_chunk(&mut out, kind::KEYS, &payload);
    }
    push_chunk(&mut out, kind::END, &end_payload(keys));
    out
}

/// What a loaded snapshot holds.
#[derive(Debug)]
pub struct Loaded {
    /// The databases.
    pub dbs: Vec<Db>,
    /// Its meta.
    pub meta: StreamMeta,
    /// Its aux chunks, in order.
    pub aux: Vec<(String, Vec<u8>)>,
    /// Keys read.
    pub keys: u64,
}

/// Reads a streamed snapshot chunk by chunk: the host reads each chunk header and payload
/// (so a big file never has to be in memory at once) and hands them over in order.
#[derive(Debug)]
pub struct Loader {
    databases: usize,
    size_hint: u64,
    dbs: Vec<Db>,
    meta: Option<StreamMeta>,
    aux: Vec<(String, Vec<u8>)>,
    keys: u64,
    ended: bool,
}

impl Loader {
    /// A loader for a server with `databases` databases. `file_len` bounds how much it
    /// reserves from the meta chunk's key counts (a key takes at least 5 bytes).
    pub fn new(databases: usize, file_len: u64) -> Loader {
        let databases = databases.clamp(1, MAX_DATABASES);
        Loader { databases, size_hint: file_len / 5, dbs: Vec::new(), meta: None, aux: Vec::new(), keys: 0, ended: false }
    }

    /// Takes the chunk that started at byte `at`, after its CRC was checked by
    /// [`Loader::check`] (or use [`Loader::chunk`], which does both).
    fn take(&mut self, at: u64, kind: u8, payload: &[u8]) -> Result<(), StreamError> {
        let corrupt = |what: String| StreamError::Corrupt { at, what };
        if self.ended {
            return Err(corrupt("data after the end chunk".into()));
        }
        if self.meta.is_none() && kind != kind::META {
            return Err(corrupt("the first chunk is not the meta chunk".into()));
        }
        match kind {
            kind::META => {
                if self.meta.is_some() {
                    return Err(corrupt("a second meta chunk".into()));
                }
                let ((offset, replid, created_ms, keys), rest) =
                    postcard::take_from_bytes::<(u64, &str, u64, Vec<u64>)>(payload).map_err(|e| corrupt(format!("meta: {e}")))?;
                if !rest.is_empty() {
                    return Err(corrupt("bytes after the meta".into()));
                }
                if keys.len() > MAX_DATABASES {
                    return Err(corrupt("too many databases".into()));
                }
                self.dbs = (0..self.databases).map(|_| Db::default()).collect();
                let mut budget = self.size_hint;
                for (db, n) in self.dbs.iter_mut().zip(&keys) {
                    let n = (*n).min(budget);
                    budget -= n;
                    db.keys.reserve(n as usize);
                }
                self.meta = Some(StreamMeta { offset, replid: replid.to_string(), created_ms, keys });
            }
            kind::AUX => {
                let ((name, data), rest) = postcard::take_from_bytes::<(&str, &[u8])>(payload).map_err(|e| corrupt(format!("aux: {e}")))?;
                if !rest.is_empty() {
                    return Err(corrupt("bytes after the aux data".into()));
                }
                self.aux.push((name.to_string(), data.to_vec()));
            }
            kind::KEYS => {
                let mut rest = payload;
                while !rest.is_empty() {
                    let ((db, key, expire_at, ValueIn(value)), next) =
                        postcard::take_from_bytes::<(u16, &[u8], u64, ValueIn)>(rest).map_err(|e| corrupt(format!("key record: {e}")))?;
                    rest = next;
                    let index = db as usize;
                    if index >= self.databases {
                        return Err(StreamError::TooManyDatabases { index, databases: self.databases });
                    }
                    let mut entry = Entry::new(value);
                    entry.expire_at = expire_at;
                    if self.dbs[index].insert(key, entry).is_some() {
                        return Err(corrupt(format!("key '{}' appears twice", String::from_utf8_lossy(key))));
                    }
                    self.keys += 1;
                }
            }
            kind::END => {
                let (keys, rest) = postcard::take_from_bytes::<u64>(payload).map_err(|e| corrupt(format!("end: {e}")))?;
                if !rest.is_empty() {
                    return Err(corrupt("bytes after the end record".into()));
                }
                if keys != self.keys {
                    return Err(corrupt(format!("the end chunk counts {keys} keys but {} were read", self.keys)));
                }
                self.ended = true;
            }
            other => return Err(corrupt(format!("unknown chunk kind 0x{other:02x}"))),
        }
        Ok(())
    }

    /// Checks a chunk's CRC, then takes it. `at` is where the chunk started in the file
    /// (for error messages).
    pub fn chunk(&mut self, at: u64, header: ChunkHeader, payload: &[u8]) -> Result<(), StreamError> {
        let computed = Crc32::of(payload);
        if computed != header.crc {
            return Err(StreamError::Checksum { at, stored: header.crc, computed });
        }
        self.take(at, header.kind, payload)
    }

    /// Whether the end chunk was read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The snapshot, once the end chunk was read; `file_len` is for the error otherwise.
    pub fn finish(self, file_len: u64) -> Result<Loaded, StreamError> {
        match (self.ended, self.meta) {
            (true, Some(meta)) => Ok(Loaded { dbs: self.dbs, meta, aux: self.aux, keys: self.keys }),
            _ => Err(StreamError::Truncated { at: file_len }),
        }
    }
}

/// Reads a whole streamed snapshot held in memory.
pub fn decode(bytes: &[u8], databases: usize) -> Result<Loaded, StreamError> {
    check_file_header(bytes)?;
    let mut loader = Loader::new(databases, bytes.len() as u64);
    let mut pos = FILE_HEADER_LEN;
    let len = bytes.len() as u64;
    while pos < bytes.len() {
        if loader.ended() {
            return Err(StreamError::Corrupt { at: pos as u64, what: "data after the end chunk".into() });
        }
        let Some(h) = bytes.get(pos..pos + CHUNK_HEADER_LEN) else { return Err(StreamError::Truncated { at: len }) };
        let mut head = [0u8; CHUNK_HEADER_LEN];
        head.copy_from_slice(h);
        let header = chunk_header(&head);
        let start = pos + CHUNK_HEADER_LEN;
        let end = match usize::try_from(header.len).ok().and_then(|n| start.checked_add(n)) {
            Some(e) if e <= bytes.len() => e,
            _ => return Err(StreamError::Truncated { at: len }),
        };
        loader.chunk(pos as u64, header, &bytes[start..end])?;
        pos = end;
    }
    loader.finish(len)
}

/// Makes a loaded snapshot the whole state of `engine` (see [`crate::snapshot::load`]):
/// databases replaced, offset set, fresh access words as of `now_ms`, nothing emitted.
pub fn install(engine: &mut Engine, loaded: Loaded, now_ms: u64) -> (StreamMeta, Vec<(String, Vec<u8>)>) {
    let mut dbs = loaded.dbs;
    let access = crate::eviction::initial_access(engine.config(), now_ms);
    for db in &mut dbs {
        for entry in db.keys.values_mut() {
            entry.access = access;
        }
    }
    engine.load_dbs(dbs);
    engine.set_offset(loaded.meta.offset);
    (loaded.meta, loaded.aux)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Session;
    use crate::snapshot::{self, SnapshotMeta};

    fn engine() -> Engine {
        let mut e = Engine::default();
        let mut s = Session::new(1);
        let now = 1_700_000_000_000;
        for i in 0..10_000 {
            e.run(&mut s, &[b"SET", format!("k{i}").as_bytes(), b"a value of some thirty bytes", b"PX", b"100000"], now);
        }
        e.run(&mut s, &[b"RPUSH", b"l", b"a", b"b", b""], now);
        e.run(&mut s, &[b"HSET", b"h", b"f", b"v", b"g", b"w"], now);
        e.run(&mut s, &[b"SADD", b"s", b"x", b"y"], now);
        e.run(&mut s, &[b"ZADD", b"z", b"1.5", b"a", b"-inf", b"b"], now);
        e.run(&mut s, &[b"SELECT", b"5"], now);
        e.run(&mut s, &[b"INCRBY", b"n", b"-7"], now);
        e
    }

    #[test]
    fn roundtrip_gives_the_same_canonical_state() {
        let e = engine();
        let meta = StreamMeta { offset: e.offset(), replid: "r1".into(), created_ms: 5, keys: vec![] };
        let bytes = encode(&e, &meta, &[("dedupe", b"abc")]);
        let loaded = decode(&bytes, 16).unwrap();
        assert_eq!(loaded.keys, 10_005);
        assert_eq!(loaded.aux, vec![("dedupe".to_string(), b"abc".to_vec())]);
        let mut f = Engine::default();
        let (m, _) = install(&mut f, loaded, 0);
        assert_eq!((m.offset, m.replid.as_str()), (e.offset(), "r1"));
        let canon = SnapshotMeta { offset: 1, replid: "x".into() };
        assert!(snapshot::encode(&e, &canon) == snapshot::encode(&f, &canon));
        assert_eq!(f.offset(), e.offset());
    }

    #[test]
    fn damage_is_found_and_located() {
        let e = engine();
        let bytes = encode(&e, &StreamMeta::default(), &[]);
        assert!(bytes.len() > CHUNK_TARGET, "several chunks");
        // Every strict prefix is incomplete or damaged, never accepted.
        for cut in [0, 5, 8, 20, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], 16).is_err(), "prefix of {cut} accepted");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1], 16).unwrap_err(), StreamError::Truncated { at: bytes.len() as u64 - 1 });
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        assert!(matches!(decode(&flipped, 16).unwrap_err(), StreamError::Checksum { .. }));
        let mut more = bytes.clone();
        more.extend_from_slice(&bytes[FILE_HEADER_LEN..FILE_HEADER_LEN + 30]);
        assert!(matches!(decode(&more, 16).unwrap_err(), StreamError::Corrupt { .. }));
        assert!(matches!(decode(&bytes, 2).unwrap_err(), StreamError::TooManyDatabases { index: 5, databases: 2 }));
        let mut v1 = bytes.clone();
        v1[6] = 1;
        assert_eq!(decode(&v1, 16).unwrap_err(), StreamError::Version { found: 1, supported: VERSION });
    }
}
