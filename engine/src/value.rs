//! Typed values and the containers behind them.
//!
//! Each container keeps an O(1) byte count ([`Value::mem`]) so the engine can account
//! `used_memory` per command without walking values.

use std::collections::VecDeque;

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

use crate::zset::SortedSet;

pub use crate::blob::Blob;

/// The hasher of every map in the engine.
pub type Hasher = foldhash::fast::RandomState;

/// Heap overhead the allocator adds to one allocation, roughly.
pub(crate) const ALLOC_OVERHEAD: usize = 16;

/// Heap bytes one blob costs beyond its own 24 bytes (none when it is inline).
pub(crate) fn blob_mem(len: usize) -> usize {
    if len <= crate::blob::INLINE {
        0
    } else {
        alloc_size(len)
    }
}

/// Bytes one heap allocation of `len` bytes really takes: glibc's malloc adds an 8-byte
/// header, rounds up to 16 and hands out at least 32 (checked against a counting allocator
/// in tests/memory.rs).
pub fn alloc_size(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        ((len + 8).div_ceil(16) * 16).max(32)
    }
}

/// Converts bytes into a keyspace [`Blob`].
pub fn blob(data: &[u8]) -> Blob {
    Blob::from(data)
}

/// The type of a value, as TYPE and the `TYPE` option of SCAN name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    List,
    Hash,
    Set,
    ZSet,
}

impl Kind {
    /// `string`, `list`, `hash`, `set` or `zset`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Hash => "hash",
            Kind::Set => "set",
            Kind::ZSet => "zset",
        }
    }

    /// Parses a type name (case-insensitive).
    pub fn parse(name: &[u8]) -> Option<Kind> {
        Some(match name.to_ascii_lowercase().as_slice() {
            b"string" => Kind::String,
            b"list" => Kind::List,
            b"hash" => Kind::Hash,
            b"set" => Kind::Set,
            b"zset" => Kind::ZSet,
            _ => return None,
        })
    }
}

/// A value held at a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string stored as an integer: the fast path for counters. Its canonical decimal
    /// form is what GET returns.
    Int(i64),
    /// A string of bytes.
    Str(Blob),
    /// A list.
    List(Box<List>),
    /// A hash.
    Hash(Box<Hash>),
    /// A set.
    Set(Box<Set>),
    /// A sorted set.
    ZSet(Box<SortedSet>),
}

impl Value {
    /// A string value from bytes, stored as an integer when its bytes are the canonical
    /// decimal form of one (as Redis's `OBJ_ENCODING_INT`).
    pub fn string(data: &[u8]) -> Value {
        match crate::util::parse_canonical_i64(data) {
            Some(n) => Value::Int(n),
            None => Value::Str(blob(data)),
        }
    }

    /// The type of the value.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Int(_) | Value::Str(_) => Kind::String,
            Value::List(_) => Kind::List,
            Value::Hash(_) => Kind::Hash,
            Value::Set(_) => Kind::Set,
            Value::ZSet(_) => Kind::ZSet,
        }
    }

    /// Approximate heap bytes held by the value.
    pub fn mem(&self) -> usize {
        match self {
            Value::Int(_) => 0,
            Value::Str(b) => blob_mem(b.len()),
            Value::List(l) => l.mem(),
            Value::Hash(h) => h.mem(),
            Value::Set(s) => s.mem(),
            Value::ZSet(z) => z.mem(),
        }
    }

    /// The bytes of a string value (an integer is formatted), or `None` for other types.
    pub fn as_bytes(&self) -> Option<Bytes> {
        match self {
            Value::Int(n) => Some(Bytes::from(n.to_string())),
            Value::Str(b) => Some(Bytes::copy_from_slice(b)),
            _ => None,
        }
    }

    /// Whether the value is an empty container (which Redis never keeps).
    pub fn is_empty_container(&self) -> bool {
        match self {
            Value::Int(_) | Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
        }
    }
}

/// A list of byte strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct List {
    items: VecDeque<Blob>,
    bytes: usize,
}

impl List {
    /// An empty list.
    pub fn new() -> List {
        List::default()
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Approximate heap bytes.
    pub fn mem(&self) -> usize {
        self.bytes + self.items.capacity() * std::mem::size_of::<Blob>() + ALLOC_OVERHEAD
    }
    /// The elements, head first.
    pub fn items(&self) -> &VecDeque<Blob> {
        &self.items
    }
    /// Pushes at the head.
    pub fn push_front(&mut self, v: Blob) {
        self.bytes += blob_mem(v.len());
        self.items.push_front(v);
    }
    /// Pushes at the tail.
    pub fn push_back(&mut self, v: Blob) {
        self.bytes += blob_mem(v.len());
        self.items.push_back(v);
    }
    /// Pops from the head.
    pub fn pop_front(&mut self) -> Option<Blob> {
        let v = self.items.pop_front()?;
        self.bytes -= blob_mem(v.len());
        Some(v)
    }
    /// Pops from the tail.
    pub fn pop_back(&mut self) -> Option<Blob> {
        let v = self.items.pop_back()?;
        self.bytes -= blob_mem(v.len());
        Some(v)
    }
    /// The element at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Blob> {
        self.items.get(index)
    }
    /// Replaces the element at `index`; returns false when out of range.
    pub fn set(&mut self, index: usize, v: Blob) -> bool {
        match self.items.get_mut(index) {
            Some(slot) => {
                self.bytes = self.bytes - blob_mem(slot.len()) + blob_mem(v.len());
                *slot = v;
                true
            }
            None => false,
        }
    }
    /// Inserts at `index` (0..=len).
    pub fn insert(&mut self, index: usize, v: Blob) {
        self.bytes += blob_mem(v.len());
        self.items.insert(index, v);
    }
    /// Removes the element at `index`.
    pub fn remove(&mut self, index: usize) -> Option<Blob> {
        let v = self.items.remove(index)?;
        self.bytes -= blob_mem(v.len());
        Some(v)
    }
    /// Keeps only the elements in `start..end`.
    pub fn keep_range(&mut self, start: usize, end: usize) {
        let end = end.min(self.items.len());
        let start = start.min(end);
        self.items.truncate(end);
        for v in self.items.drain(..start) {
            self.bytes -= blob_mem(v.len());
        }
        self.bytes = self.items.iter().map(|v| blob_mem(v.len())).sum();
        self.items.shrink_to_fit();
    }
    /// Keeps only the elements for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Blob) -> bool) {
        self.items.retain(|v| keep(v));
        self.bytes = self.items.iter().map(|v| blob_mem(v.len())).sum();
    }
}

/// A hash of fields to values. Insertion-ordered with O(1) random access (HRANDFIELD,
/// HSCAN cursors).
#[derive(Debug, Clone, Default)]
pub struct Hash {
    map: IndexMap<Blob, Blob, Hasher>,
    bytes: usize,
}

impl PartialEq for Hash {
    fn eq(&self, other: &Hash) -> bool {
        self.map.len() == other.map.len()
            && self.map.iter().all(|(k, v)| other.map.get(k) == Some(v))
    }
}

impl Hash {
    /// An empty hash.
    pub fn new() -> Hash {
        Hash::default()
    }
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.map.len()
    }
    /// Whether the hash is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    /// Approximate heap bytes.
    pub fn mem(&self) -> usize {
        self.bytes + self.map.capacity() * (std::mem::size_of::<(Blob, Blob)>() + 16) + ALLOC_OVERHEAD
    }
    /// The map (read-only; mutate through the methods so the byte count stays right).
    pub fn map(&self) -> &IndexMap<Blob, Blob, Hasher> {
        &self.map
    }
    /// The value of a field.
    pub fn get(&self, field: &[u8]) -> Option<&Blob> {
        self.map.get(field)
    }
    /// Sets a field; returns true when the field is new.
    pub fn insert(&mut self, field: &[u8], value: Blob) -> bool {
        self.bytes += blob_mem(value.len());
        match self.map.get_mut(field) {
            Some(slot) => {
                self.bytes -= blob_mem(slot.len());
                *slot = value;
                false
            }
            None => {
                self.bytes += blob_mem(field.len());
                self.map.insert(blob(field), value);
                true
            }
        }
    }
    /// Removes a field; returns its value.
    pub fn remove(&mut self, field: &[u8]) -> Option<Blob> {
        // Small hashes keep their order like Redis's listpack (HGETALL after HDEL matches
        // byte for byte); big ones swap-remove in O(1). Both keep SCAN's guarantee.
        let (k, v) = if self.map.len() <= 128 {
            self.map.shift_remove_entry(field)?
        } else {
            self.map.swap_remove_entry(field)?
        };
        self.bytes -= blob_mem(k.len()) + blob_mem(v.len());
        Some(v)
    }
}

/// A set of byte strings. Insertion-ordered with O(1) random access (SPOP, SRANDMEMBER,
/// SSCAN cursors).
#[derive(Debug, Clone, Default)]
pub struct Set {
    set: IndexSet<Blob, Hasher>,
    bytes: usize,
}

impl PartialEq for Set {
    fn eq(&self, other: &Set) -> bool {
        self.set.len() == other.set.len() && self.set.iter().all(|m| other.set.contains(m))
    }
}

impl Set {
    /// An empty set.
    pub fn new() -> Set {
        Set::default()
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        self.set.len()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
    /// Approximate heap bytes.
    pub fn mem(&self) -> usize {
        self.bytes + self.set.capacity() * (std::mem::size_of::<Blob>() + 16) + ALLOC_OVERHEAD
    }
    /// The members (read-only).
    pub fn members(&self) -> &IndexSet<Blob, Hasher> {
        &self.set
    }
    /// Whether `m` is a member.
    pub fn contains(&self, m: &[u8]) -> bool {
        self.set.contains(m)
    }
    /// Adds a member; returns true when it is new.
    pub fn insert(&mut self, m: &[u8]) -> bool {
        if self.set.contains(m) {
            return false;
        }
        self.bytes += blob_mem(m.len());
        self.set.insert(blob(m));
        true
    }
    /// Removes a member; returns true when it was present.
    pub fn remove(&mut self, m: &[u8]) -> bool {
        match self.set.swap_remove_full(m) {
            Some((_, v)) => {
                self.bytes -= blob_mem(v.len());
                true
            }
            None => false,
        }
    }
}
