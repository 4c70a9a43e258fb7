//! One logical database: the keyspace and its deadline index.
//!
//! `Db` is bookkeeping only: it never emits changes or events and never checks the clock.
//! Commands reach it through [`crate::Ctx`], which applies lazy expiry, the WRONGTYPE
//! check, memory accounting and change emission in one place.

use std::collections::BTreeSet;

use indexmap::IndexMap;

use crate::value::{blob_mem, Blob, Hasher, Value};

/// Fixed bytes one key costs besides its name and value: the map slot, the index entry
/// and the allocation headers.
pub(crate) const ENTRY_OVERHEAD: usize = 80;

/// A key's value with its metadata.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The value.
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means the key does not expire.
    pub expire_at: u64,
    /// LRU clock (seconds) or LFU state (minutes << 8 | log counter), per the policy.
    pub access: u32,
    /// The epoch of the last snapshot cut that holds this entry (or the cut running when
    /// it was created): a cut with a greater epoch has not serialized it yet
    /// ([`crate::snapshot::cut`]). It sits in the padding after `access`, so it is free.
    pub(crate) saved: u32,
}

/// Entries compare by what they hold; the snapshot bookkeeping is not part of it.
impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.value == other.value && self.expire_at == other.expire_at && self.access == other.access
    }
}

impl Entry {
    /// A new entry with no expiry.
    pub fn new(value: Value) -> Entry {
        Entry { value, expire_at: 0, access: 0, saved: 0 }
    }

    /// Whether the entry is past its deadline at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }
}

/// Approximate bytes one key costs.
pub(crate) fn entry_mem(key: &[u8], entry: &Entry) -> usize {
    ENTRY_OVERHEAD + blob_mem(key.len()) + entry.value.mem() + if entry.expire_at != 0 { 48 + blob_mem(key.len()) } else { 0 }
}

/// A logical database.
#[derive(Debug, Clone, Default)]
pub struct Db {
    pub(crate) keys: IndexMap<Blob, Entry, Hasher>,
    pub(crate) expires: BTreeSet<(u64, Blob)>,
}

impl Db {
    /// Number of keys, expired ones not yet removed included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the database holds no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Number of keys with a deadline.
    pub fn volatile_len(&self) -> usize {
        self.expires.len()
    }

    /// The entry at `key`, without expiry checks.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.keys.get(key)
    }

    /// The entry at `key`, mutable, without expiry checks. Use [`Db::set_expire`] to change
    /// the deadline so the index stays right.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.keys.get_mut(key)
    }

    /// The key and entry at position `index` (for sampling and SCAN).
    pub fn get_index(&self, index: usize) -> Option<(&Blob, &Entry)> {
        self.keys.get_index(index)
    }

    /// Inserts or replaces a key, with its deadline. Returns the old entry.
    pub fn insert(&mut self, key: &[u8], entry: Entry) -> Option<Entry> {
        let expire_at = entry.expire_at;
        let old = match self.keys.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, entry)),
            None => {
                self.keys.insert(key.into(), entry);
                None
            }
        };
        let old_expire = old.as_ref().map(|e| e.expire_at).unwrap_or(0);
        if old_expire != expire_at {
            if old_expire != 0 {
                self.expires.remove(&(old_expire, Blob::from(key)));
            }
            if expire_at != 0 {
                self.expires.insert((expire_at, key.into()));
            }
        }
        old
    }

    /// Removes a key; returns its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, entry) = self.keys.swap_remove_entry(key)?;
        if entry.expire_at != 0 {
            self.expires.remove(&(entry.expire_at, k));
        }
        Some(entry)
    }

    /// Sets or clears (0) the deadline of an existing key; returns false when absent.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let Some(entry) = self.keys.get_mut(key) else { return false };
        let old = std::mem::replace(&mut entry.expire_at, expire_at);
        if old != expire_at {
            if old != 0 {
                self.expires.remove(&(old, Blob::from(key)));
            }
            if expire_at != 0 {
                self.expires.insert((expire_at, key.into()));
            }
        }
        true
    }

    /// The earliest deadline, if any key has one.
    pub fn next_deadline(&self) -> Option<u64> {
        self.expires.first().map(|(t, _)| *t)
    }

    /// The key with the earliest deadline if it is due at `now_ms`.
    pub fn first_due(&self, now_ms: u64) -> Option<Blob> {
        match self.expires.first() {
            Some((t, k)) if *t <= now_ms => Some(k.clone()),
            _ => None,
        }
    }

    /// Iterates keys and entries in storage order.
    pub fn iter(&self) -> impl Iterator<Item = (&Blob, &Entry)> {
        self.keys.iter()
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.keys = IndexMap::default();
        self.expires.clear();
    }

    /// Removes every key and hands the map over (a snapshot cut still serializing it).
    pub(crate) fn take_keys(&mut self) -> IndexMap<Blob, Entry, Hasher> {
        self.expires.clear();
        std::mem::take(&mut self.keys)
    }

    /// The entry at storage position `index`, mutable (the snapshot cut's cursor).
    pub(crate) fn get_index_mut(&mut self, index: usize) -> Option<(&Blob, &mut Entry)> {
        self.keys.get_index_mut(index)
    }

    /// Approximate bytes held by every key of this database.
    pub fn mem(&self) -> usize {
        self.keys.iter().map(|(k, e)| entry_mem(k, e)).sum()
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    /// What one key costs in the map slot; the RSS-per-key benchmark depends on it.
    #[test]
    fn entry_stays_small() {
        assert_eq!(std::mem::size_of::<Value>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 40);
    }
}
