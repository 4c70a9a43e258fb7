//! Snapshot codec: every database of an engine as one self-checking byte string.
//!
//! Hosts write it for `SAVE`/`BGSAVE`, send it for a replica's full sync and for a sync
//! client's *full* subscribe, and load it at start. The layout is
//!
//! ```text
//! offset  size  field
//!      0     6  magic  b"RCSNAP"
//!      6     2  format version, u16 little-endian (currently 1)
//!      8     8  payload length in bytes, u64 little-endian
//!     16     4  CRC-32 (IEEE) of bytes 6..16 and the payload, u32 little-endian
//!     20     n  payload: postcard
//! ```
//!
//! The payload is `(offset: u64, replid: str, dbs: [[(key, expire_at, value)]])`, with
//! `expire_at` absolute Unix ms (0: no expiry) and `value` one of `Int(i64)`, `Str(bytes)`,
//! `List([bytes])`, `Hash([(field, value)])`, `Set([bytes])`, `ZSet([(member, f64)])`,
//! in canonical order: keys, hash fields and set members sorted bytewise, lists in order,
//! sorted sets by (score, member). Two engines holding the same data therefore write the
//! same bytes whatever order their maps happen to be in (a replica that replayed the change
//! stream, a restarted hub), and the CRC doubles as a digest of the whole state.
//!
//! Decoding is defensive, because a snapshot comes from a file or the network: the magic,
//! the version, the length and the checksum are verified before postcard sees a byte, and
//! the decoder never reserves memory for a declared element count — containers grow only
//! as elements are actually read, each of which consumes input. Anything wrong is a
//! [`SnapshotError`], never a panic.
//!
//! The engine's internal types carry no serde derives: private mirror types serialize
//! borrowed views of them and deserialize straight into the engine's containers.

use std::fmt;

use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::db::{Db, Entry};
use crate::engine::Engine;
use crate::value::{blob, Hash, List, Set, Value};
use crate::zset::SortedSet;

pub mod cut;
pub mod stream;

/// The first bytes of every snapshot.
pub const MAGIC: &[u8; 6] = b"RCSNAP";

/// The format version this build writes and reads.
pub const VERSION: u16 = 1;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 20;

/// Most databases a snapshot may hold (a change names its database with a `u16`).
pub const MAX_DATABASES: usize = 1 << 16;

/// What the host stores beside the data: where in the change stream the snapshot was
/// taken, and whose stream it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Offset of the last change group the snapshot includes.
    pub offset: u64,
    /// Replication id of the stream `offset` belongs to.
    pub replid: String,
}

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The input does not start with [`MAGIC`] (or is shorter than the header).
    #[error("not a Recached snapshot (bad magic or shorter than the header)")]
    BadMagic,
    /// Written by a format this build does not read.
    #[error("unsupported snapshot version {found} (this build reads version {supported})")]
    Version {
        /// The version in the header.
        found: u16,
        /// [`VERSION`].
        supported: u16,
    },
    /// The payload is shorter or longer than the header says.
    #[error("snapshot length mismatch: header declares {declared} payload bytes, found {found}")]
    Length {
        /// Payload length in the header.
        declared: u64,
        /// Bytes actually present after the header.
        found: u64,
    },
    /// The checksum does not match: the bytes were damaged.
    #[error("snapshot checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The checksum matched but the payload is not a valid snapshot (a writer bug or a
    /// forged file).
    #[error("corrupt snapshot payload: {0}")]
    Corrupt(String),
    /// The snapshot holds data in a database the engine does not have.
    #[error("snapshot has data in database {index} but the engine has {databases} databases")]
    TooManyDatabases {
        /// First database index with data beyond the engine's count.
        index: usize,
        /// The engine's `databases`.
        databases: usize,
    },
}

impl From<postcard::Error> for SnapshotError {
    fn from(e: postcard::Error) -> SnapshotError {
        SnapshotError::Corrupt(e.to_string())
    }
}

/// Encodes every database of `engine` with `meta`.
pub fn encode(engine: &Engine, meta: &SnapshotMeta) -> Vec<u8> {
    encode_filtered(engine, meta, |_, _| true)
}

/// Encodes only the keys for which `keep(db, key)` is true (a sync client's *full*
/// subscribe sends just the keys its token may read). Databases keep their indexes.
pub fn encode_filtered(engine: &Engine, meta: &SnapshotMeta, keep: impl Fn(usize, &[u8]) -> bool) -> Vec<u8> {
    let payload = PayloadOut { meta, dbs: DbsOut { dbs: engine.dbs(), keep: &keep } };
    let mut out = Vec::with_capacity(HEADER_LEN + 64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    // Serializing into a Vec cannot fail: every sequence states its length and the
    // writer never runs out of room.
    let mut out = match postcard::to_extend(&payload, out) {
        Ok(v) => v,
        Err(e) => unreachable!("postcard into a Vec: {e}"),
    };
    let len = (out.len() - HEADER_LEN) as u64;
    out[8..16].copy_from_slice(&len.to_le_bytes());
    let crc = checksum(&out);
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The CRC that covers version, length and payload (everything but magic and the CRC).
fn checksum(snapshot: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&snapshot[6..16]);
    c.update(&snapshot[HEADER_LEN..]);
    c.finish()
}

/// Decodes a snapshot into databases (indexes as saved) and its meta.
pub fn decode(bytes: &[u8]) -> Result<(Vec<Db>, SnapshotMeta), SnapshotError> {
    if bytes.len() < HEADER_LEN || &bytes[..6] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(SnapshotError::Version { found: version, supported: VERSION });
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let declared = u64::from_le_bytes(len);
    let found = (bytes.len() - HEADER_LEN) as u64;
    if declared != found {
        return Err(SnapshotError::Length { declared, found });
    }
    let stored = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let computed = checksum(bytes);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let (payload, rest) = postcard::take_from_bytes::<PayloadIn>(&bytes[HEADER_LEN..])?;
    if !rest.is_empty() {
        return Err(SnapshotError::Corrupt(format!("{} bytes after the payload", rest.len())));
    }
    Ok((payload.dbs, SnapshotMeta { offset: payload.offset, replid: payload.replid.to_owned() }))
}

/// Decodes a snapshot and makes it the whole state of `engine`: databases replaced, the
/// stream offset set to the snapshot's. No changes or events are emitted (the snapshot
/// *is* the state a consumer starts from). Keys already past their deadline are kept and
/// expire on access or at the next sweep, which emits their `DEL`s. Every key starts with
/// a fresh LRU/LFU access word as of `now_ms` (access history is not saved, as Redis's
/// default RDB does not).
///
/// On error the engine is left untouched.
pub fn load(engine: &mut Engine, bytes: &[u8], now_ms: u64) -> Result<SnapshotMeta, SnapshotError> {
    let (mut dbs, meta) = decode(bytes)?;
    let databases = engine.config().databases.max(1);
    if let Some(index) = dbs.iter().enumerate().skip(databases).find(|(_, db)| !db.is_empty()).map(|(i, _)| i) {
        return Err(SnapshotError::TooManyDatabases { index, databases });
    }
    let access = crate::eviction::initial_access(engine.config(), now_ms);
    for db in &mut dbs {
        for entry in db.keys.values_mut() {
            entry.access = access;
        }
    }
    engine.load_dbs(dbs);
    engine.set_offset(meta.offset);
    Ok(meta)
}

// ---------------------------------------------------------------------------------------
// Encoding: borrowed views of the engine's state.

struct PayloadOut<'a, F> {
    meta: &'a SnapshotMeta,
    dbs: DbsOut<'a, F>,
}

impl<F: Fn(usize, &[u8]) -> bool> Serialize for PayloadOut<'_, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(3)?;
        t.serialize_element(&self.meta.offset)?;
        t.serialize_element(self.meta.replid.as_str())?;
        t.serialize_element(&self.dbs)?;
        t.end()
    }
}

struct DbsOut<'a, F> {
    dbs: &'a [Db],
    keep: &'a F,
}

impl<F: Fn(usize, &[u8]) -> bool> Serialize for DbsOut<'_, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.dbs.len()))?;
        for (index, db) in self.dbs.iter().enumerate() {
            seq.serialize_element(&DbOut { index, db, keep: self.keep })?;
        }
        seq.end()
    }
}

struct DbOut<'a, F> {
    index: usize,
    db: &'a Db,
    keep: &'a F,
}

impl<F: Fn(usize, &[u8]) -> bool> Serialize for DbOut<'_, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<_> = self.db.iter().filter(|(k, _)| (self.keep)(self.index, k)).collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut seq = s.serialize_seq(Some(entries.len()))?;
        for (key, entry) in entries {
            seq.serialize_element(&(BytesOut(key), entry.expire_at, ValueOut(&entry.value)))?;
        }
        seq.end()
    }
}

pub(crate) struct BytesOut<'a>(pub(crate) &'a [u8]);

impl Serialize for BytesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Writes the items of an exact-size iterator as a sequence.
struct SeqOut<I>(std::cell::Cell<Option<I>>);

impl<I: ExactSizeIterator> Serialize for SeqOut<I>
where
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(items) = self.0.take() else { return Err(serde::ser::Error::custom("sequence written twice")) };
        let mut seq = s.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

fn seq_out<I: ExactSizeIterator>(items: I) -> SeqOut<I> {
    SeqOut(std::cell::Cell::new(Some(items)))
}

// Variant indexes: must match `ValueIn`.
const V_INT: u32 = 0;
const V_STR: u32 = 1;
const V_LIST: u32 = 2;
const V_HASH: u32 = 3;
const V_SET: u32 = 4;
const V_ZSET: u32 = 5;
const VARIANTS: &[&str] = &["Int", "Str", "List", "Hash", "Set", "ZSet"];

pub(crate) struct ValueOut<'a>(pub(crate) &'a Value);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Int(n) => s.serialize_newtype_variant("Value", V_INT, "Int", n),
            Value::Str(b) => s.serialize_newtype_variant("Value", V_STR, "Str", &BytesOut(b)),
            Value::List(l) => {
                s.serialize_newtype_variant("Value", V_LIST, "List", &seq_out(l.items().iter().map(|v| BytesOut(v))))
            }
            Value::Hash(h) => {
                let mut fields: Vec<_> = h.map().iter().collect();
                fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let items = fields.into_iter().map(|(f, v)| (BytesOut(f), BytesOut(v)));
                s.serialize_newtype_variant("Value", V_HASH, "Hash", &seq_out(items))
            }
            Value::Set(set) => {
                let mut members: Vec<_> = set.members().iter().collect();
                members.sort_unstable();
                s.serialize_newtype_variant("Value", V_SET, "Set", &seq_out(members.into_iter().map(|m| BytesOut(m))))
            }
            Value::ZSet(z) => {
                let items = ExactLen { inner: z.iter().map(|(m, score)| (BytesOut(m), score)), len: z.len() };
                s.serialize_newtype_variant("Value", V_ZSET, "ZSet", &seq_out(items))
            }
        }
    }
}

/// An iterator with a length known from elsewhere (the sorted set's iterator does not
/// promise `ExactSizeIterator`).
struct ExactLen<I> {
    inner: I,
    len: usize,
}

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.inner.next()?;
        self.len = self.len.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

// ---------------------------------------------------------------------------------------
// Decoding: straight into the engine's containers, element by element.

struct PayloadIn<'a> {
    offset: u64,
    replid: &'a str,
    dbs: Vec<Db>,
}

impl<'de> Deserialize<'de> for PayloadIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PayloadIn<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a snapshot payload")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let offset = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let replid = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
                let DbsIn(dbs) = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Ok(PayloadIn { offset, replid, dbs })
            }
        }
        d.deserialize_tuple(3, V)
    }
}

/// Defines a sequence type whose visitor folds elements into a container as they arrive,
/// never reserving for the declared length.
macro_rules! seq_in {
    ($name:ident, $target:ty, $what:literal, |$acc:ident, $seq:ident| $body:block) => {
        struct $name($target);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $target;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut $seq: A) -> Result<$target, A::Error> {
                        let mut $acc = <$target>::default();
                        $body
                        Ok($acc)
                    }
                }
                d.deserialize_seq(V).map($name)
            }
        }
    };
}

seq_in!(DbsIn, Vec<Db>, "a list of databases", |dbs, seq| {
    while let Some(DbIn(db)) = seq.next_element()? {
        if dbs.len() >= MAX_DATABASES {
            return Err(de::Error::custom("too many databases"));
        }
        dbs.push(db);
    }
});

seq_in!(DbIn, Db, "a database", |db, seq| {
    while let Some((key, expire_at, ValueIn(value))) = seq.next_element::<(&[u8], u64, ValueIn)>()? {
        let mut entry = Entry::new(value);
        entry.expire_at = expire_at;
        if db.insert(key, entry).is_some() {
            return Err(de::Error::custom("duplicate key"));
        }
    }
});

seq_in!(ListIn, List, "a list", |list, seq| {
    while let Some(item) = seq.next_element::<&[u8]>()? {
        list.push_back(blob(item));
    }
});

seq_in!(HashIn, Hash, "a hash", |hash, seq| {
    while let Some((field, value)) = seq.next_element::<(&[u8], &[u8])>()? {
        if !hash.insert(field, blob(value)) {
            return Err(de::Error::custom("duplicate hash field"));
        }
    }
});

seq_in!(SetIn, Set, "a set", |set, seq| {
    while let Some(member) = seq.next_element::<&[u8]>()? {
        if !set.insert(member) {
            return Err(de::Error::custom("duplicate set member"));
        }
    }
});

seq_in!(ZSetIn, SortedSet, "a sorted set", |zset, seq| {
    while let Some((member, score)) = seq.next_element::<(&[u8], f64)>()? {
        if score.is_nan() {
            return Err(de::Error::custom("NaN score"));
        }
        if !zset.insert(member, score) {
            return Err(de::Error::custom("duplicate sorted-set member"));
        }
    }
});

pub(crate) struct ValueIn(pub(crate) Value);

impl<'de> Deserialize<'de> for ValueIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
                use de::VariantAccess;
                let (tag, variant) = data.variant_seed(Tag)?;
                let value = match tag {
                    V_INT => Value::Int(variant.newtype_variant()?),
                    V_STR => Value::Str(blob(variant.newtype_variant::<&[u8]>()?)),
                    V_LIST => Value::List(Box::new(variant.newtype_variant::<ListIn>()?.0)),
                    V_HASH => Value::Hash(Box::new(variant.newtype_variant::<HashIn>()?.0)),
                    V_SET => Value::Set(Box::new(variant.newtype_variant::<SetIn>()?.0)),
                    _ => Value::ZSet(Box::new(variant.newtype_variant::<ZSetIn>()?.0)),
                };
                if value.is_empty_container() {
                    return Err(de::Error::custom("empty container"));
                }
                Ok(value)
            }
        }
        d.deserialize_enum("Value", VARIANTS, V).map(ValueIn)
    }
}

/// Reads a variant index and rejects unknown ones.
struct Tag;

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = u32;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u32, D::Error> {
        let tag = u32::deserialize(d)?;
        if tag > V_ZSET {
            return Err(de::Error::custom("unknown value type"));
        }
        Ok(tag)
    }
}

// ---------------------------------------------------------------------------------------
// CRC-32 (IEEE 802.3, reflected, as zlib and PNG), slicing-by-8: no dependency, and fast
// enough that checking a snapshot costs little next to decoding it.

const CRC_TABLES: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut i = 0;
    while i < 256 {
        let mut s = 1;
        while s < 8 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            s += 1;
        }
        i += 1;
    }
    t
}

/// A running CRC-32.
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Crc32 {
        Crc32::new()
    }
}

impl Crc32 {
    /// A fresh CRC.
    pub fn new() -> Crc32 {
        Crc32(!0)
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        let t = &CRC_TABLES;
        let mut c = self.0;
        let mut chunks = data.chunks_exact(8);
        for ch in &mut chunks {
            let lo = c ^ u32::from_le_bytes([ch[0], ch[1], ch[2], ch[3]]);
            let hi = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
            c = t[7][(lo & 0xFF) as usize]
                ^ t[6][((lo >> 8) & 0xFF) as usize]
                ^ t[5][((lo >> 16) & 0xFF) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][(hi & 0xFF) as usize]
                ^ t[2][((hi >> 8) & 0xFF) as usize]
                ^ t[1][((hi >> 16) & 0xFF) as usize]
                ^ t[0][(hi >> 24) as usize];
        }
        for &b in chunks.remainder() {
            c = t[0][((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    /// The CRC of everything added.
    pub fn finish(self) -> u32 {
        !self.0
    }

    /// The CRC of one buffer.
    pub fn of(data: &[u8]) -> u32 {
        let mut c = Crc32::new();
        c.update(data);
        c.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Session;

    fn sample() -> (Engine, SnapshotMeta) {
        let mut e = Engine::default();
        let now = 1_700_000_000_000u64;
        let mut db = Db::default();
        let put = |db: &mut Db, key: &str, value: Value, expire_at: u64| {
            let mut entry = Entry::new(value);
            entry.expire_at = expire_at;
            db.insert(key.as_bytes(), entry);
        };
        put(&mut db, "int", Value::Int(-42), 0);
        put(&mut db, "intmax", Value::Int(i64::MAX), now + 5);
        put(&mut db, "str", Value::Str(blob(b"hello\0\xffworld")), now + 10_000);
        put(&mut db, "empty-str", Value::Str(blob(b"")), 0);
        put(&mut db, "str-looks-int", Value::Str(blob(b"12")), 0);
        let mut l = List::new();
        for v in ["a", "", "c"] {
            l.push_back(blob(v.as_bytes()));
        }
        put(&mut db, "list", Value::List(Box::new(l)), now + 1);
        let mut h = Hash::new();
        h.insert(b"f1", blob(b"v1"));
        h.insert(b"", blob(b""));
        h.insert(b"f2", blob(b"v2"));
        put(&mut db, "hash", Value::Hash(Box::new(h)), 0);
        let mut s = Set::new();
        for m in ["x", "y", "z"] {
            s.insert(m.as_bytes());
        }
        put(&mut db, "set", Value::Set(Box::new(s)), u64::MAX);
        let mut z = SortedSet::new();
        z.insert(b"a", 1.5);
        z.insert(b"b", f64::NEG_INFINITY);
        z.insert(b"c", f64::INFINITY);
        z.insert(b"d", -0.0);
        z.insert(b"e", 1e300);
        put(&mut db, "zset", Value::ZSet(Box::new(z)), now + 99);
        let mut other = Db::default();
        put(&mut other, "in-db-3", Value::Int(3), 0);
        let mut dbs = vec![db, Db::default(), Db::default(), other];
        dbs.resize_with(16, Db::default);
        e.load_dbs(dbs);
        (e, SnapshotMeta { offset: 12345, replid: "8f3a9c2e".into() })
    }

    fn same_dbs(a: &[Db], b: &[Db]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            let mut xs: Vec<_> = x.iter().map(|(k, e)| (k.clone(), e.value.clone(), e.expire_at)).collect();
            let mut ys: Vec<_> = y.iter().map(|(k, e)| (k.clone(), e.value.clone(), e.expire_at)).collect();
            xs.sort_by(|a, b| a.0.cmp(&b.0));
            ys.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(xs, ys, "same keys, values (Int and Str apart), deadlines");
            assert_eq!(x.volatile_len(), y.volatile_len());
        }
    }

    #[test]
    fn roundtrip_every_type_with_ttls() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        assert_eq!(&bytes[..6], MAGIC);
        let (dbs, got) = decode(&bytes).unwrap();
        assert_eq!(got, meta);
        same_dbs(e.dbs(), &dbs);
        // Canonical order: hash fields sorted.
        match &dbs[0].get(b"hash").unwrap().value {
            Value::Hash(h) => assert_eq!(h.map().keys().map(|k| k.to_vec()).collect::<Vec<_>>(), vec![b"".to_vec(), b"f1".to_vec(), b"f2".to_vec()]),
            _ => unreachable!(),
        }
        let z = |dbs: &[Db]| match &dbs[0].get(b"zset").unwrap().value {
            Value::ZSet(z) => z.iter().map(|(m, s)| (m.to_vec(), s.to_bits())).collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        assert_eq!(z(e.dbs()), z(&dbs), "scores bit for bit, -0 and infinities included");
        // Encoding is deterministic.
        assert_eq!(encode(&e, &meta), bytes);
    }

    #[test]
    fn encoding_does_not_depend_on_map_order() {
        let mut a = Engine::default();
        let mut b = Engine::default();
        let mut s = Session::new(1);
        for cmd in [&[&b"SET"[..], b"x", b"1"][..], &[b"SET", b"y", b"2"], &[b"SET", b"z", b"3"]] {
            a.run(&mut s, cmd, 1);
        }
        for cmd in [&[&b"SET"[..], b"z", b"3"][..], &[b"SET", b"x", b"1"], &[b"SET", b"y", b"2"]] {
            b.run(&mut s, cmd, 1);
        }
        let meta = SnapshotMeta::default();
        assert_eq!(encode(&a, &meta), encode(&b, &meta));
        // Hash fields and set members too.
        let (mut h1, mut h2) = (Hash::new(), Hash::new());
        h1.insert(b"a", blob(b"1"));
        h1.insert(b"b", blob(b"2"));
        h2.insert(b"b", blob(b"2"));
        h2.insert(b"a", blob(b"1"));
        let (mut s1, mut s2) = (Set::new(), Set::new());
        s1.insert(b"p");
        s1.insert(b"q");
        s2.insert(b"q");
        s2.insert(b"p");
        let db = |h: Hash, s: Set| {
            let mut db = Db::default();
            db.insert(b"h", Entry::new(Value::Hash(Box::new(h))));
            db.insert(b"s", Entry::new(Value::Set(Box::new(s))));
            db
        };
        a.load_dbs(vec![db(h1, s1)]);
        b.load_dbs(vec![db(h2, s2)]);
        assert_eq!(encode(&a, &meta), encode(&b, &meta));
    }

    #[test]
    fn load_replaces_state_and_offset() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        let mut f = Engine::default();
        let mut s = Session::new(1);
        f.run(&mut s, &[b"SET", b"old", b"x"], 1);
        f.take_changes();
        assert_eq!(load(&mut f, &bytes, 5).unwrap(), meta);
        assert!(f.dbs()[0].iter().all(|(_, e)| e.access == crate::eviction::initial_access(f.config(), 5)));
        same_dbs(e.dbs(), f.dbs());
        assert_eq!(f.offset(), 12345);
        assert_eq!(f.used_memory(), e.used_memory());
        assert!(!f.has_changes(), "loading emits no changes");
        assert_eq!(f.run(&mut s, &[b"GET", b"str"], 1_700_000_000_000), crate::Reply::bulk(b"hello\0\xffworld"));
        // A snapshot of the loaded engine is the same bytes.
        assert_eq!(encode(&f, &meta), bytes);
    }

    #[test]
    fn load_refuses_data_beyond_the_engine_databases() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        let mut small = Engine::new(crate::Config { databases: 2, ..Default::default() });
        assert_eq!(load(&mut small, &bytes, 5), Err(SnapshotError::TooManyDatabases { index: 3, databases: 2 }));
        assert_eq!(small.key_count(), 0, "untouched on error");
        // Empty extra databases are fine.
        let mut e4 = Engine::new(crate::Config { databases: 4, ..Default::default() });
        load(&mut e4, &bytes, 5).unwrap();
        assert_eq!(e4.dbs().len(), 4);
    }

    #[test]
    fn filtered_encoding_keeps_only_chosen_keys() {
        let (e, meta) = sample();
        let bytes = encode_filtered(&e, &meta, |db, key| db == 0 && key.starts_with(b"str"));
        let (dbs, _) = decode(&bytes).unwrap();
        let mut keys: Vec<_> = dbs[0].iter().map(|(k, _)| k.to_vec()).collect();
        keys.sort();
        assert_eq!(keys, vec![b"str".to_vec(), b"str-looks-int".to_vec()]);
        assert!(dbs[3].is_empty());
    }

    #[test]
    fn empty_engine() {
        let e = Engine::default();
        let bytes = encode(&e, &SnapshotMeta::default());
        let (dbs, meta) = decode(&bytes).unwrap();
        assert_eq!(dbs.len(), 16);
        assert!(dbs.iter().all(Db::is_empty));
        assert_eq!(meta, SnapshotMeta::default());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {} bytes decoded", n);
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(SnapshotError::Length { .. })));
    }

    #[test]
    fn every_single_byte_corruption_is_an_error() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        for i in 0..bytes.len() {
            for delta in [0x01u8, 0x80, 0xFF, 0x5A] {
                let mut bad = bytes.clone();
                bad[i] ^= delta;
                assert!(decode(&bad).is_err(), "byte {} ^ {:#x} decoded", i, delta);
            }
        }
    }

    #[test]
    fn specific_errors() {
        let (e, meta) = sample();
        let bytes = encode(&e, &meta);
        assert_eq!(decode(b"RCSNA").err(), Some(SnapshotError::BadMagic));
        assert_eq!(decode(b"REDIS0011............").err(), Some(SnapshotError::BadMagic));
        let mut v2 = bytes.clone();
        v2[6] = 2;
        assert_eq!(decode(&v2).err(), Some(SnapshotError::Version { found: 2, supported: 1 }));
        let mut huge = bytes.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(SnapshotError::Length { declared: u64::MAX, .. })));
        let mut crc = bytes.clone();
        crc[HEADER_LEN + 3] ^= 1;
        assert!(matches!(decode(&crc), Err(SnapshotError::Checksum { .. })));
        assert!(SnapshotError::Version { found: 2, supported: 1 }.to_string().contains("version 2"));
    }

    /// Wraps a hand-made payload in a valid header, as a forger (or a buggy writer) would.
    fn forge(payload: &[u8]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        let crc = checksum(&out);
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn forged_payloads_with_valid_checksums_are_errors() {
        // offset 0, replid "", then:
        let cases: &[(&str, &[u8])] = &[
            // one database declaring u32::MAX keys but holding none
            ("huge key count", &[0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            // a list declaring 2^63 elements
            ("huge list", &[0, 0, 1, 1, 1, b'k', 0, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            // a string declaring more bytes than remain
            ("long string", &[0, 0, 1, 1, 1, b'k', 0, 1, 0x80, 0x80, 0x04]),
            // unknown value type 9
            ("bad tag", &[0, 0, 1, 1, 1, b'k', 0, 9, 0]),
            // an empty list
            ("empty list", &[0, 0, 1, 1, 1, b'k', 0, 2, 0]),
            // the same key twice
            ("dup key", &[0, 0, 1, 2, 1, b'k', 0, 0, 2, 1, b'k', 0, 0, 4]),
            // a set with a repeated member
            ("dup member", &[0, 0, 1, 1, 1, b'k', 0, 4, 2, 1, b'a', 1, b'a']),
            // a NaN score
            ("nan", &[0, 0, 1, 1, 1, b'k', 0, 5, 1, 1, b'a', 0, 0, 0, 0, 0, 0, 0xF8, 0x7F]),
            // a replid that is not UTF-8
            ("bad utf8", &[0, 1, 0xFF, 0]),
            // trailing garbage after a valid payload
            ("trailing", &[0, 0, 0, 7]),
            // an overlong varint offset
            ("overlong varint", &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0, 0]),
        ];
        for (what, payload) in cases {
            let got = decode(&forge(payload));
            assert!(matches!(got, Err(SnapshotError::Corrupt(_))), "{}: {:?}", what, got.map(|(d, m)| (d.len(), m)));
        }
        // The forger's framing itself is right: a valid minimal payload decodes.
        let (dbs, meta) = decode(&forge(&[7, 2, b'i', b'd', 1, 1, 1, b'k', 0, 0, 84])).unwrap();
        assert_eq!(meta, SnapshotMeta { offset: 7, replid: "id".into() });
        assert_eq!(dbs[0].get(b"k").map(|e| &e.value), Some(&Value::Int(42)));
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(Crc32::of(b"123456789"), 0xCBF4_3926);
        assert_eq!(Crc32::of(b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut c = Crc32::new();
        c.update(&data[..13]);
        c.update(&data[13..]);
        let mut bitwise = !0u32;
        for &b in &data {
            bitwise ^= b as u32;
            for _ in 0..8 {
                bitwise = if bitwise & 1 != 0 { 0xEDB8_8320 ^ (bitwise >> 1) } else { bitwise >> 1 };
            }
        }
        assert_eq!(c.finish(), !bitwise);
    }
}
