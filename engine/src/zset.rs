//! The sorted-set container.
//!
//! PLACEHOLDER LAYOUT: a member → score map plus an ordered index. Range and rank
//! operations must be logarithmic at a million members (order-statistics tree).

use std::collections::BTreeSet;

use indexmap::IndexMap;

use crate::value::{blob, blob_mem, Blob, Hasher, ALLOC_OVERHEAD};

/// A score with a total order (scores are never NaN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score(pub f64);

impl Eq for Score {}
impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Score {
    fn cmp(&self, other: &Score) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sorted set: members ordered by (score, member).
#[derive(Debug, Clone, Default)]
pub struct SortedSet {
    scores: IndexMap<Blob, f64, Hasher>,
    order: BTreeSet<(Score, Blob)>,
    bytes: usize,
}

impl PartialEq for SortedSet {
    fn eq(&self, other: &SortedSet) -> bool {
        self.order == other.order
    }
}

impl SortedSet {
    /// An empty sorted set.
    pub fn new() -> SortedSet {
        SortedSet::default()
    }
    /// Number of members.
    pub fn len(&self) -> usize {
        self.scores.len()
    }
    /// Approximate heap bytes.
    pub fn mem(&self) -> usize {
        self.bytes + self.scores.len() * 96 + ALLOC_OVERHEAD
    }
    /// The score of a member.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }
    /// Adds or updates a member; returns true when it is new.
    pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
        match self.scores.get_mut(member) {
            Some(old) => {
                let prev = *old;
                *old = score;
                self.order.remove(&(Score(prev), blob(member)));
                self.order.insert((Score(score), blob(member)));
                false
            }
            None => {
                self.scores.insert(blob(member), score);
                self.order.insert((Score(score), blob(member)));
                self.bytes += 2 * blob_mem(member.len());
                true
            }
        }
    }
    /// Removes a member; returns true when it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.scores.swap_remove(member) {
            Some(score) => {
                self.order.remove(&(Score(score), blob(member)));
                self.bytes -= 2 * blob_mem(member.len());
                true
            }
            None => false,
        }
    }
    /// Members in order, lowest score first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], f64)> {
        self.order.iter().map(|(s, m)| (&m[..], s.0))
    }
}
