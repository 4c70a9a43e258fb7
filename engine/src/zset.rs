//! The sorted-set container: a member → score map plus an order-statistics skiplist.
//!
//! The skiplist is Redis's (`t_zset.c`): links carry *spans* (how many ranks they skip),
//! so rank, select-by-rank and score/lex bounds are O(log n) expected, and a range is
//! O(log n + k) by walking level 0 forwards or the backward links. Nodes live in an arena
//! `Vec` addressed by `u32`, freed slots are reused, so there is no `unsafe` and no
//! per-link allocation: level 0 is stored inline (its span is always 1) and only the ~25%
//! of nodes taller than one level own a small boxed slice of upper links.
//!
//! The map (insertion-ordered, swap-remove) gives O(1) ZSCORE and O(1) random access for
//! ZRANDMEMBER and ZSCAN cursors ([`crate::util::scan_step`]).

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

const MAX_LEVEL: usize = 32;
const HEAD: u32 = 0;
const NIL: u32 = u32::MAX;

/// One upper link of a node: the next node at this level and the ranks it skips.
#[derive(Debug, Clone, Copy)]
struct Link {
    next: u32,
    span: u32,
}

#[derive(Debug, Clone)]
struct Node {
    member: Blob,
    score: f64,
    /// Previous node at level 0 (`NIL` for the first node).
    prev: u32,
    /// Next node at level 0; its span is always 1.
    next0: u32,
    /// Links of levels 1.. (empty for one-level nodes).
    upper: Box<[Link]>,
}

impl Node {
    fn new(member: Blob, score: f64, levels: usize) -> Node {
        let upper = vec![Link { next: NIL, span: 0 }; levels.saturating_sub(1)].into_boxed_slice();
        Node { member, score, prev: NIL, next0: NIL, upper }
    }
}

#[cfg(test)]
thread_local! {
    /// Traversal steps taken, so tests can check complexity without timing.
    pub(crate) static STEPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn step() {
    #[cfg(test)]
    STEPS.with(|s| s.set(s.get() + 1));
}

/// A sorted set: members ordered by (score, member bytes).
#[derive(Debug, Clone)]
pub struct SortedSet {
    scores: IndexMap<Blob, f64, Hasher>,
    nodes: Vec<Node>,
    free: Vec<u32>,
    tail: u32,
    level: usize,
    /// Nodes linked in the skiplist (equals `scores.len()` between operations).
    linked: usize,
    /// Heap bytes of member blobs (twice: map and node) and upper-link slices.
    bytes: usize,
    /// State of the level generator. Levels only shape the index, never the order, so a
    /// private generator keeps the container independent of the engine's RNG.
    seed: u64,
}

impl Default for SortedSet {
    fn default() -> SortedSet {
        SortedSet {
            scores: IndexMap::default(),
            nodes: vec![Node::new(Blob::default(), 0.0, MAX_LEVEL)],
            free: Vec::new(),
            tail: NIL,
            level: 1,
            linked: 0,
            bytes: (MAX_LEVEL - 1) * std::mem::size_of::<Link>(),
            seed: 0x2545_f491_4f6c_dd1d,
        }
    }
}

impl PartialEq for SortedSet {
    fn eq(&self, other: &SortedSet) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
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

    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Approximate heap bytes, in O(1).
    pub fn mem(&self) -> usize {
        self.bytes
            + self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.free.capacity() * 4
            + self.scores.capacity() * (std::mem::size_of::<(Blob, f64)>() + 16)
            + ALLOC_OVERHEAD
    }

    /// The score of a member.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// The member and score at position `index` of the map's storage order (not the
    /// score order): O(1) access for random picks and SCAN cursors.
    pub fn get_index(&self, index: usize) -> Option<(&[u8], f64)> {
        self.scores.get_index(index).map(|(m, s)| (&m[..], *s))
    }

    /// Adds or updates a member; returns true when it is new. `score` must not be NaN.
    /// `-0` is stored as `0`, as Redis's compact (listpack) encoding does, so every
    /// score reads back the same whatever the set's size.
    pub fn insert(&mut self, member: &[u8], score: f64) -> bool {
        let score = if score == 0.0 { 0.0 } else { score };
        match self.scores.get_mut(member) {
            Some(old) => {
                let prev = *old;
                if prev != score {
                    *old = score;
                    self.update_score(member, prev, score);
                }
                false
            }
            None => {
                self.scores.insert(blob(member), score);
                self.bytes += 2 * blob_mem(member.len());
                self.sl_insert(blob(member), score);
                true
            }
        }
    }

    /// Removes a member; returns true when it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        self.take(member).is_some()
    }

    /// Removes a member; returns its score when it was present.
    pub fn take(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.swap_remove(member)?;
        self.bytes -= 2 * blob_mem(member.len());
        self.sl_delete(member, score);
        self.maybe_compact();
        Some(score)
    }

    /// Members in order, lowest score first (reverse with `.rev()`).
    pub fn iter(&self) -> Iter<'_> {
        self.range(0, self.len())
    }

    /// Members with ranks in `start..end` (0-based, clamped to the length), in order.
    /// O(log n) to position, then O(1) per member in either direction.
    pub fn range(&self, start: usize, end: usize) -> Iter<'_> {
        let end = end.min(self.len());
        if start >= end {
            return Iter { z: self, front: NIL, back: NIL, left: 0 };
        }
        let front = if start == 0 { self.nodes[HEAD as usize].next0 } else { self.node_at(start + 1) };
        let back = if end == self.len() { self.tail } else { self.node_at(end) };
        Iter { z: self, front, back, left: end - start }
    }

    /// The 0-based rank of a member (ascending order).
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let mut x = HEAD;
        let mut rank = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                let node = &self.nodes[n as usize];
                if node.score < score || (node.score == score && node.member[..] <= *member) {
                    rank += self.span(x, i) as usize;
                    x = n;
                } else {
                    break;
                }
            }
            if x != HEAD && self.nodes[x as usize].member[..] == *member {
                return Some(rank - 1);
            }
        }
        None
    }

    /// The member and score at 0-based rank `i`.
    pub fn by_rank(&self, i: usize) -> Option<(&[u8], f64)> {
        if i >= self.len() {
            return None;
        }
        let n = &self.nodes[self.node_at(i + 1) as usize];
        Some((&n.member[..], n.score))
    }

    /// Rank of the first member whose score is `>= bound` (or `> bound` when `exclusive`);
    /// equivalently the number of members below it. `len()` when there is none.
    pub fn score_rank(&self, bound: f64, exclusive: bool) -> usize {
        self.count_while(|n| if exclusive { n.score <= bound } else { n.score < bound })
    }

    /// Rank of the first member that is `>= bound` (or `> bound` when `exclusive`) by
    /// member bytes alone. Meaningful when all scores are equal, as ZRANGEBYLEX requires.
    pub fn lex_rank(&self, bound: &[u8], exclusive: bool) -> usize {
        self.count_while(|n| if exclusive { n.member[..] <= *bound } else { n.member[..] < *bound })
    }

    /// Removes and returns the member with the lowest (score, member).
    pub fn pop_min(&mut self) -> Option<(Blob, f64)> {
        let first = self.nodes[HEAD as usize].next0;
        self.pop_node(first)
    }

    /// Removes and returns the member with the highest (score, member).
    pub fn pop_max(&mut self) -> Option<(Blob, f64)> {
        self.pop_node(self.tail)
    }

    /// Removes the members with ranks in `start..end` (0-based, clamped); returns them
    /// in order.
    pub fn remove_range(&mut self, start: usize, end: usize) -> Vec<(Blob, f64)> {
        let out: Vec<(Blob, f64)> = self.range(start, end).map(|(m, s)| (blob(m), s)).collect();
        for (m, _) in &out {
            self.remove(m);
        }
        out
    }

    // ---- skiplist internals ----

    fn pop_node(&mut self, n: u32) -> Option<(Blob, f64)> {
        if n == NIL {
            return None;
        }
        let node = &self.nodes[n as usize];
        let member = node.member.clone();
        let score = node.score;
        self.remove(&member);
        Some((member, score))
    }

    #[inline]
    fn next(&self, x: u32, level: usize) -> u32 {
        let n = &self.nodes[x as usize];
        if level == 0 {
            n.next0
        } else {
            n.upper[level - 1].next
        }
    }

    #[inline]
    fn span(&self, x: u32, level: usize) -> u32 {
        if level == 0 {
            1
        } else {
            self.nodes[x as usize].upper[level - 1].span
        }
    }

    #[inline]
    fn set_link(&mut self, x: u32, level: usize, next: u32, span: u32) {
        let n = &mut self.nodes[x as usize];
        if level == 0 {
            n.next0 = next;
        } else {
            n.upper[level - 1] = Link { next, span };
        }
    }

    #[inline]
    fn set_span(&mut self, x: u32, level: usize, span: u32) {
        if level > 0 {
            self.nodes[x as usize].upper[level - 1].span = span;
        }
    }

    #[cfg(test)]
    fn height(&self, x: u32) -> usize {
        self.nodes[x as usize].upper.len() + 1
    }

    /// Counts the leading members for which `before` holds (the sequence must be
    /// monotonic in it): the rank of the first member for which it does not.
    fn count_while(&self, before: impl Fn(&Node) -> bool) -> usize {
        let mut x = HEAD;
        let mut rank = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                if before(&self.nodes[n as usize]) {
                    rank += self.span(x, i) as usize;
                    x = n;
                } else {
                    break;
                }
            }
        }
        rank
    }

    /// The node at 1-based rank `rank` (1..=len).
    fn node_at(&self, rank: usize) -> u32 {
        let mut x = HEAD;
        let mut traversed = 0usize;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                let s = self.span(x, i) as usize;
                if traversed + s <= rank {
                    traversed += s;
                    x = n;
                } else {
                    break;
                }
            }
            if traversed == rank {
                return x;
            }
        }
        NIL
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*; P(level > k) = 4^-k as in Redis (ZSKIPLIST_P = 0.25).
        self.seed ^= self.seed >> 12;
        self.seed ^= self.seed << 25;
        self.seed ^= self.seed >> 27;
        let r = self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (1 + (r.trailing_zeros() / 2) as usize).min(MAX_LEVEL)
    }

    fn alloc(&mut self, node: Node) -> u32 {
        self.bytes += node.upper.len() * std::mem::size_of::<Link>();
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Links a new node; the member must not be in the skiplist.
    fn sl_insert(&mut self, member: Blob, score: f64) {
        let mut update = [HEAD; MAX_LEVEL];
        let mut rank = [0u32; MAX_LEVEL];
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            rank[i] = if i == self.level - 1 { 0 } else { rank[i + 1] };
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                let node = &self.nodes[n as usize];
                if node.score < score || (node.score == score && node.member < member) {
                    rank[i] += self.span(x, i);
                    x = n;
                } else {
                    break;
                }
            }
            update[i] = x;
        }
        let lvl = self.random_level();
        // Sizes are bounded by memory long before u32 ranks overflow.
        let len = self.linked as u32;
        if lvl > self.level {
            for i in self.level..lvl {
                rank[i] = 0;
                update[i] = HEAD;
                self.set_span(HEAD, i, len);
            }
            self.level = lvl;
        }
        let x = self.alloc(Node::new(member, score, lvl));
        for i in 0..lvl {
            let (un, us) = (self.next(update[i], i), self.span(update[i], i));
            self.set_link(x, i, un, us - (rank[0] - rank[i]));
            self.set_link(update[i], i, x, rank[0] - rank[i] + 1);
        }
        for (i, &u) in update.iter().enumerate().take(self.level).skip(lvl) {
            let s = self.span(u, i);
            self.set_span(u, i, s + 1);
        }
        let next0 = self.nodes[x as usize].next0;
        self.nodes[x as usize].prev = if update[0] == HEAD { NIL } else { update[0] };
        if next0 != NIL {
            self.nodes[next0 as usize].prev = x;
        } else {
            self.tail = x;
        }
        self.linked += 1;
    }

    /// Unlinks and frees the node of (score, member), which must be present.
    fn sl_delete(&mut self, member: &[u8], score: f64) {
        let mut update = [HEAD; MAX_LEVEL];
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                let node = &self.nodes[n as usize];
                if node.score < score || (node.score == score && node.member[..] < *member) {
                    x = n;
                } else {
                    break;
                }
            }
            update[i] = x;
        }
        let x = self.next(x, 0);
        if x == NIL || self.nodes[x as usize].member[..] != *member {
            debug_assert!(false, "sorted set index out of sync");
            return;
        }
        for (i, &u) in update.iter().enumerate().take(self.level) {
            if self.next(u, i) == x {
                let span = self.span(u, i) + self.span(x, i) - 1;
                let next = self.next(x, i);
                self.set_link(u, i, next, span);
            } else {
                let s = self.span(u, i);
                self.set_span(u, i, s - 1);
            }
        }
        let (prev, next0) = (self.nodes[x as usize].prev, self.nodes[x as usize].next0);
        if next0 != NIL {
            self.nodes[next0 as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        while self.level > 1 && self.next(HEAD, self.level - 1) == NIL {
            self.level -= 1;
        }
        self.linked -= 1;
        let node = &mut self.nodes[x as usize];
        self.bytes -= node.upper.len() * std::mem::size_of::<Link>();
        node.member = Blob::default();
        node.upper = Box::default();
        self.free.push(x);
    }

    fn update_score(&mut self, member: &[u8], old: f64, new: f64) {
        // Fast path, as Redis's zslUpdateScore: when the node keeps its place, only the
        // score changes.
        if let Some(x) = self.find(member, old) {
            let n = &self.nodes[x as usize];
            let after_prev = n.prev == NIL || {
                let p = &self.nodes[n.prev as usize];
                p.score < new || (p.score == new && p.member[..] < *member)
            };
            let before_next = n.next0 == NIL || {
                let q = &self.nodes[n.next0 as usize];
                new < q.score || (q.score == new && *member < q.member[..])
            };
            if after_prev && before_next {
                self.nodes[x as usize].score = new;
                return;
            }
        }
        self.sl_delete(member, old);
        self.sl_insert(blob(member), new);
    }

    fn find(&self, member: &[u8], score: f64) -> Option<u32> {
        let mut x = HEAD;
        for i in (0..self.level).rev() {
            loop {
                let n = self.next(x, i);
                if n == NIL {
                    break;
                }
                step();
                let node = &self.nodes[n as usize];
                if node.score < score || (node.score == score && node.member[..] < *member) {
                    x = n;
                } else {
                    break;
                }
            }
        }
        let x = self.next(x, 0);
        (x != NIL && self.nodes[x as usize].member[..] == *member).then_some(x)
    }

    /// Rebuilds the arena when most of it is free slots, so a set that shrank gives its
    /// memory back (amortised O(1) per removal).
    fn maybe_compact(&mut self) {
        let live = self.len();
        if self.nodes.len() < 64 || live * 4 > self.nodes.len() {
            return;
        }
        let old = std::mem::take(self);
        let mut fresh = SortedSet { seed: old.seed, ..SortedSet::default() };
        fresh.scores = old.scores;
        fresh.scores.shrink_to_fit();
        fresh.bytes += 2 * fresh.scores.keys().map(|m| blob_mem(m.len())).sum::<usize>();
        let mut order = Vec::with_capacity(live);
        let mut x = old.nodes[HEAD as usize].next0;
        let mut nodes = old.nodes;
        while x != NIL {
            let n = &mut nodes[x as usize];
            order.push((std::mem::take(&mut n.member), n.score));
            x = n.next0;
        }
        fresh.nodes.reserve_exact(live);
        for (m, s) in order {
            fresh.sl_insert(m, s);
        }
        *self = fresh;
    }

    /// Checks the skiplist invariants (links, spans, back links, order, map agreement).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut ranks = std::collections::HashMap::new();
        ranks.insert(HEAD, 0usize);
        let mut x = self.nodes[HEAD as usize].next0;
        let mut prev = NIL;
        let mut r = 0usize;
        let mut last: Option<(f64, &[u8])> = None;
        while x != NIL {
            r += 1;
            ranks.insert(x, r);
            let n = &self.nodes[x as usize];
            assert_eq!(n.prev, prev);
            assert_eq!(self.scores.get(&n.member), Some(&n.score));
            if let Some((ls, lm)) = last {
                assert!(ls < n.score || (ls == n.score && lm < &n.member[..]));
            }
            last = Some((n.score, &n.member));
            prev = x;
            x = n.next0;
        }
        assert_eq!(self.tail, prev);
        assert_eq!(r, self.len());
        for (&node, &rank) in &ranks {
            for i in 1..self.height(node).min(if node == HEAD { self.level } else { MAX_LEVEL }) {
                let n = self.next(node, i);
                let expect = if n == NIL { self.len() - rank } else { ranks[&n] - rank };
                assert_eq!(self.span(node, i) as usize, expect, "span of {} at level {}", node, i);
            }
        }
    }
}

/// Iterator over a rank range of a [`SortedSet`], double-ended.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    z: &'a SortedSet,
    front: u32,
    back: u32,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], f64);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = &self.z.nodes[self.front as usize];
        self.front = n.next0;
        Some((&n.member[..], n.score))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let n = &self.z.nodes[self.back as usize];
        self.back = n.prev;
        Some((&n.member[..], n.score))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn steps() -> u64 {
        STEPS.with(|s| s.get())
    }

    /// Reference model: a Vec kept sorted by (score, member).
    fn model_sorted(m: &[(Vec<u8>, f64)]) -> Vec<(Vec<u8>, f64)> {
        let mut v = m.to_vec();
        v.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap().then_with(|| a.0.cmp(&b.0)));
        v
    }

    #[test]
    fn basics() {
        let mut z = SortedSet::new();
        assert!(z.is_empty());
        assert!(z.insert(b"b", 2.0));
        assert!(z.insert(b"a", 1.0));
        assert!(z.insert(b"c", 2.0));
        assert!(!z.insert(b"a", 3.0));
        z.check();
        let all: Vec<_> = z.iter().map(|(m, s)| (m.to_vec(), s)).collect();
        assert_eq!(all, vec![(b"b".to_vec(), 2.0), (b"c".to_vec(), 2.0), (b"a".to_vec(), 3.0)]);
        let rev: Vec<_> = z.iter().rev().map(|(m, _)| m.to_vec()).collect();
        assert_eq!(rev, vec![b"a".to_vec(), b"c".to_vec(), b"b".to_vec()]);
        assert_eq!(z.rank(b"a"), Some(2));
        assert_eq!(z.rank(b"b"), Some(0));
        assert_eq!(z.rank(b"zz"), None);
        assert_eq!(z.by_rank(1), Some((&b"c"[..], 2.0)));
        assert_eq!(z.by_rank(3), None);
        assert_eq!(z.score_rank(2.0, false), 0);
        assert_eq!(z.score_rank(2.0, true), 2);
        assert_eq!(z.score_rank(9.0, false), 3);
        assert_eq!(z.lex_rank(b"c", false), 1);
        assert_eq!(z.pop_min(), Some((blob(b"b"), 2.0)));
        assert_eq!(z.pop_max(), Some((blob(b"a"), 3.0)));
        assert!(z.remove(b"c"));
        assert!(!z.remove(b"c"));
        assert_eq!(z.pop_min(), None);
        z.check();
        assert_eq!(z.range(0, 10).count(), 0);
    }

    #[test]
    fn randomized_against_sorted_vec() {
        let mut rng = Rng::new(42);
        let mut z = SortedSet::new();
        let mut model: Vec<(Vec<u8>, f64)> = Vec::new();
        for round in 0..20_000 {
            let member = format!("m{}", rng.below(300)).into_bytes();
            // few distinct scores, so ties ordered by member are exercised
            let score = (rng.below(40) as f64 - 20.0) / 2.0;
            match rng.below(10) {
                0..=4 => {
                    let pos = model.iter().position(|(m, _)| *m == member);
                    let new = z.insert(&member, score);
                    assert_eq!(new, pos.is_none());
                    match pos {
                        Some(p) => model[p].1 = score,
                        None => model.push((member.clone(), score)),
                    }
                }
                5 | 6 => {
                    let pos = model.iter().position(|(m, _)| *m == member);
                    assert_eq!(z.remove(&member), pos.is_some());
                    if let Some(p) = pos {
                        model.remove(p);
                    }
                }
                7 => {
                    let sorted = model_sorted(&model);
                    let got = if rng.below(2) == 0 { z.pop_min() } else { z.pop_max() };
                    let want = if got.is_some() && sorted.first().map(|f| f.0 == got.as_ref().unwrap().0.to_vec()) == Some(true) {
                        sorted.first().cloned()
                    } else {
                        sorted.last().cloned()
                    };
                    assert_eq!(got.map(|(m, s)| (m.to_vec(), s)), want);
                    if let Some((m, _)) = want {
                        model.retain(|(x, _)| *x != m);
                    }
                }
                8 => {
                    let sorted = model_sorted(&model);
                    let (a, b) = (rng.below(sorted.len() + 3), rng.below(sorted.len() + 3));
                    let got = z.remove_range(a, b);
                    let want: Vec<_> = if a < b.min(sorted.len()) { sorted[a..b.min(sorted.len())].to_vec() } else { vec![] };
                    assert_eq!(got.into_iter().map(|(m, s)| (m.to_vec(), s)).collect::<Vec<_>>(), want);
                    model.retain(|e| !want.contains(e));
                }
                _ => {}
            }
            let sorted = model_sorted(&model);
            assert_eq!(z.len(), sorted.len());
            // queries
            let i = rng.below(sorted.len() + 2);
            assert_eq!(z.by_rank(i).map(|(m, s)| (m.to_vec(), s)), sorted.get(i).cloned());
            assert_eq!(z.rank(&member), sorted.iter().position(|(m, _)| *m == member));
            let bound = (rng.below(44) as f64 - 22.0) / 2.0;
            assert_eq!(z.score_rank(bound, false), sorted.iter().filter(|e| e.1 < bound).count());
            assert_eq!(z.score_rank(bound, true), sorted.iter().filter(|e| e.1 <= bound).count());
            let (a, b) = (rng.below(sorted.len() + 2), rng.below(sorted.len() + 2));
            let got: Vec<_> = z.range(a, b).map(|(m, s)| (m.to_vec(), s)).collect();
            let want: Vec<_> = if a < b.min(sorted.len()) { sorted[a..b.min(sorted.len())].to_vec() } else { vec![] };
            assert_eq!(got, want);
            let got_rev: Vec<_> = z.range(a, b).rev().map(|(m, s)| (m.to_vec(), s)).collect();
            assert_eq!(got_rev, want.iter().rev().cloned().collect::<Vec<_>>());
            if round % 500 == 0 {
                z.check();
                assert_eq!(z.iter().map(|(m, s)| (m.to_vec(), s)).collect::<Vec<_>>(), sorted);
            }
        }
        z.check();
    }

    #[test]
    fn lex_ranks_on_equal_scores() {
        let mut z = SortedSet::new();
        for m in ["a", "b", "bb", "c", "d"] {
            z.insert(m.as_bytes(), 0.0);
        }
        assert_eq!(z.lex_rank(b"b", false), 1);
        assert_eq!(z.lex_rank(b"b", true), 2);
        assert_eq!(z.lex_rank(b"", false), 0);
        assert_eq!(z.lex_rank(b"e", false), 5);
    }

    #[test]
    fn shrinks_after_mass_removal() {
        let mut z = SortedSet::new();
        for i in 0..10_000 {
            z.insert(format!("{:05}", i).as_bytes(), i as f64);
        }
        let big = z.mem();
        for i in 0..9_990 {
            z.remove(format!("{:05}", i).as_bytes());
        }
        z.check();
        assert!(z.mem() < big / 10, "{} vs {}", z.mem(), big);
        assert_eq!(z.by_rank(0).map(|(m, _)| m.to_vec()), Some(b"09990".to_vec()));
    }

    #[test]
    fn million_members_rank_and_range_are_logarithmic() {
        const N: usize = 1_000_000;
        let mut z = SortedSet::new();
        for i in 0..N {
            // ascending inserts walk a cache-warm path, which keeps the debug build quick
            let k = i;
            z.insert(&(k as u64).to_be_bytes(), k as f64);
        }
        assert_eq!(z.len(), N);
        // A skiplist with p = 1/4 takes ~ (log4 n) * 4 ≈ 40 steps per search; allow 10x.
        let budget = 400;
        let t = steps();
        assert_eq!(z.rank(&765_432u64.to_be_bytes()), Some(765_432));
        assert!(steps() - t < budget, "rank took {} steps", steps() - t);
        let t = steps();
        assert_eq!(z.by_rank(123_456).map(|(_, s)| s), Some(123_456.0));
        assert!(steps() - t < budget, "by_rank took {} steps", steps() - t);
        let t = steps();
        assert_eq!(z.score_rank(500_000.5, false), 500_001);
        assert!(steps() - t < budget);
        let t = steps();
        let page: Vec<f64> = z.range(900_000, 900_010).map(|(_, s)| s).collect();
        assert_eq!(page, (900_000..900_010).map(|x| x as f64).collect::<Vec<_>>());
        let page: Vec<f64> = z.range(10, 20).rev().map(|(_, s)| s).collect();
        assert_eq!(page[0], 19.0);
        assert!(steps() - t < 2 * budget, "range took {} steps", steps() - t);
        let t = steps();
        assert_eq!(z.pop_min().map(|(_, s)| s), Some(0.0));
        assert_eq!(z.pop_max().map(|(_, s)| s), Some((N - 1) as f64));
        assert!(steps() - t < 2 * budget);
        #[cfg(not(debug_assertions))]
        {
            let start = std::time::Instant::now();
            for i in 0..10_000usize {
                let r = (i * 104_729) % (N - 2);
                assert!(z.by_rank(r).is_some());
                assert!(z.range(r, r + 10).count() > 0);
            }
            assert!(start.elapsed().as_millis() < 2_000);
        }
    }
}
