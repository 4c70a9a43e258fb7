//! Who wants to hear about which keys: change listeners by exact key or glob pattern.
//!
//! A literal pattern (`user:1`) lands in a per-key map, so a change to one key reaches only
//! that key's listeners in O(1) however many keys are watched (one `use_key` signal per
//! key, thousands of them). Glob patterns (`user:*`) are few and are matched one by one.

use std::collections::HashMap;

use bytes::Bytes;
use recached_engine::glob;

/// Identifies a registered listener; pass it back to [`Registry::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub u64);

/// Listeners of type `L` (a JS function, a signal setter, …) keyed by what they watch.
#[derive(Debug)]
pub struct Registry<L> {
    next: u64,
    /// Every listener: the pattern it watches and the listener.
    all: HashMap<ListenerId, (Bytes, L)>,
    /// Literal patterns: key → listeners, in registration order.
    exact: HashMap<Bytes, Vec<ListenerId>>,
    /// Glob patterns, in registration order.
    globs: Vec<(Bytes, ListenerId)>,
}

impl<L> Default for Registry<L> {
    fn default() -> Self {
        Registry { next: 1, all: HashMap::new(), exact: HashMap::new(), globs: Vec::new() }
    }
}

impl<L: Clone> Registry<L> {
    /// Registers `listener` for keys matching `pattern` (Redis glob syntax; a pattern with
    /// no metacharacter watches exactly that key).
    pub fn add(&mut self, pattern: &[u8], listener: L) -> ListenerId {
        let id = ListenerId(self.next);
        self.next += 1;
        let pattern = Bytes::copy_from_slice(pattern);
        if glob::is_literal(&pattern) {
            self.exact.entry(pattern.clone()).or_default().push(id);
        } else {
            self.globs.push((pattern.clone(), id));
        }
        self.all.insert(id, (pattern, listener));
        id
    }

    /// Unregisters a listener and returns it (so the caller decides when it is dropped).
    /// Removing twice is harmless.
    pub fn remove(&mut self, id: ListenerId) -> Option<L> {
        let (pattern, listener) = self.all.remove(&id)?;
        if glob::is_literal(&pattern) {
            if let Some(ids) = self.exact.get_mut(&pattern) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.exact.remove(&pattern);
                }
            }
        } else {
            self.globs.retain(|(_, i)| *i != id);
        }
        Some(listener)
    }

    /// Removes every listener, returning them.
    pub fn clear(&mut self) -> Vec<L> {
        self.exact.clear();
        self.globs.clear();
        let mut all: Vec<_> = self.all.drain().collect();
        all.sort_by_key(|(id, _)| *id);
        all.into_iter().map(|(_, (_, l))| l).collect()
    }

    /// Number of listeners.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether there are no listeners.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Whether a listener is registered.
    pub fn contains(&self, id: ListenerId) -> bool {
        self.all.contains_key(&id)
    }

    /// The listeners interested in `key`: its exact listeners, then matching globs.
    pub fn matching_ids(&self, key: &[u8], out: &mut Vec<(ListenerId, L)>) {
        if let Some(ids) = self.exact.get(key) {
            out.extend(ids.iter().filter_map(|id| self.all.get(id).map(|(_, l)| (*id, l.clone()))));
        }
        for (pattern, id) in &self.globs {
            if glob::matches(pattern, key, false) {
                if let Some((_, l)) = self.all.get(id) {
                    out.push((*id, l.clone()));
                }
            }
        }
    }

    /// Every listener, in registration order (a flush concerns them all).
    pub fn every_id(&self, out: &mut Vec<(ListenerId, L)>) {
        let mut ids: Vec<_> = self.all.keys().copied().collect();
        ids.sort();
        out.extend(ids.iter().filter_map(|id| self.all.get(id).map(|(_, l)| (*id, l.clone()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(r: &Registry<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        r.matching_ids(key.as_bytes(), &mut out);
        out.into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn exact_and_glob() {
        let mut r = Registry::default();
        let a = r.add(b"user:1", 1);
        r.add(b"user:*", 2);
        r.add(b"user:1", 3);
        r.add(b"*", 4);
        assert_eq!(hits(&r, "user:1"), [1, 3, 2, 4]);
        assert_eq!(hits(&r, "user:2"), [2, 4]);
        assert_eq!(hits(&r, "other"), [4]);
        assert_eq!(r.remove(a), Some(1));
        assert_eq!(r.remove(a), None);
        assert_eq!(hits(&r, "user:1"), [3, 2, 4]);
        assert_eq!(r.len(), 3);
        let mut every = Vec::new();
        r.every_id(&mut every);
        assert_eq!(every.iter().map(|(_, l)| *l).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(!r.contains(a));
        assert!(r.contains(every[0].0));
        assert_eq!(r.clear(), [2, 3, 4]);
        assert!(r.is_empty());
        assert_eq!(hits(&r, "user:1"), Vec::<u32>::new());
    }

    #[test]
    fn escaped_metacharacters_are_globs() {
        // `a\*` matches only the key `a*`: still correct through the glob path.
        let mut r = Registry::default();
        r.add(b"a\\*", 1);
        assert_eq!(hits(&r, "a*"), [1]);
        assert_eq!(hits(&r, "ab"), Vec::<u32>::new());
    }

    #[test]
    fn many_exact_keys_only_reach_their_own() {
        let mut r = Registry::default();
        for i in 0..10_000u32 {
            r.add(format!("k{i}").as_bytes(), i);
        }
        assert_eq!(hits(&r, "k4242"), [4242]);
        let emptied = r.add(b"solo", 7);
        r.remove(emptied);
        assert!(!r.exact.contains_key(&b"solo"[..]));
    }
}
