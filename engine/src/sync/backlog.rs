//! The backlog: a bounded ring of recent change groups, sized in bytes, with the stream's
//! replication id. It answers "can a client that holds the state as of `(replid, offset)`
//! continue from there" and hands out the groups after that offset.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::change::{Change, ChangeGroup};
use crate::value::alloc_size;

/// Bytes a group really holds in memory: its ring slot, the change and argument vectors and
/// every argument's own allocation. The bound is in real bytes, so `sync-backlog-bytes`
/// is what the backlog costs in RSS (a 16 MB backlog of small `SET`s counted payload only
/// held 2.4 times that).
pub fn group_size(group: &ChangeGroup) -> usize {
    use std::mem::size_of;
    // The ring slot; a `VecDeque` is at most half empty after it grows.
    let slot = size_of::<(ChangeGroup, usize)>() * 3 / 2;
    let changes = alloc_size(group.changes.capacity() * size_of::<Change>());
    let args: usize = group
        .changes
        .iter()
        .map(|c| alloc_size(c.args.capacity() * size_of::<Bytes>()) + c.args.iter().map(|a| alloc_size(a.len())).sum::<usize>())
        .sum();
    slot + changes + args
}

/// A bounded ring of recent change groups.
#[derive(Debug, Clone)]
pub struct Backlog {
    replid: String,
    /// The stream this one continues (PSYNC2's `master_replid2`): a client of that stream
    /// at or below `second_offset` holds history this stream shares.
    replid2: Option<(String, u64)>,
    groups: VecDeque<(ChangeGroup, usize)>,
    bytes: usize,
    max_bytes: usize,
    /// Every group with an offset above `base` is held.
    base: u64,
    /// Offset of the newest group pushed (or `base` when none was).
    last: u64,
}

impl Backlog {
    /// An empty backlog of at most `max_bytes`, for the stream `replid` whose last
    /// committed offset is `offset` (the engine's [`crate::Engine::offset`] at start).
    pub fn new(replid: impl Into<String>, offset: u64, max_bytes: usize) -> Backlog {
        Backlog { replid: replid.into(), replid2: None, groups: VecDeque::new(), bytes: 0, max_bytes, base: offset, last: offset }
    }

    /// The replication id of the stream.
    pub fn replid(&self) -> &str {
        &self.replid
    }

    /// Starts a new stream (a new replid, after a failover or a reset) at `offset`,
    /// forgetting every group.
    pub fn reset(&mut self, replid: impl Into<String>, offset: u64) {
        self.replid = replid.into();
        self.replid2 = None;
        self.groups.clear();
        self.bytes = 0;
        self.base = offset;
        self.last = offset;
    }

    /// Continues an earlier stream under a new id, as PSYNC2 does after a restart or a
    /// failover: `previous` is the old id and the last offset the two share, `groups` the
    /// old stream's most recent groups (oldest first, none above that offset), kept so
    /// clients that were behind can still continue.
    pub fn restore(&mut self, replid: impl Into<String>, previous: Option<(String, u64)>, groups: impl IntoIterator<Item = ChangeGroup>) {
        let offset = previous.as_ref().map(|p| p.1).unwrap_or(self.last);
        self.replid = replid.into();
        self.groups.clear();
        self.bytes = 0;
        let mut groups = groups.into_iter().filter(|g| g.offset <= offset).peekable();
        self.base = groups.peek().map(|g| g.offset.saturating_sub(1)).unwrap_or(offset);
        self.last = self.base;
        for g in groups {
            self.push(g);
        }
        self.base = self.base.min(offset);
        self.last = offset;
        self.replid2 = previous;
    }

    /// The stream this one continues and the last offset they share.
    pub fn previous(&self) -> Option<(&str, u64)> {
        self.replid2.as_ref().map(|(r, o)| (r.as_str(), *o))
    }

    /// Offset of the newest group (the stream's current offset).
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// Every group with an offset above this one is held.
    pub fn base_offset(&self) -> u64 {
        self.base
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every group held and moves the stream to `offset` without keeping what came
    /// before: nobody can continue from an older offset (they get a full resync).
    pub fn skip_to(&mut self, offset: u64) {
        self.groups.clear();
        self.groups.shrink_to_fit();
        self.bytes = 0;
        self.base = offset;
        self.last = offset;
    }

    /// The bound in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Changes the bound (configuration reload); trims at once.
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
        self.trim();
    }

    /// Groups held.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Appends a committed group. Groups must come in increasing offset order; one that
    /// does not is ignored and `false` is returned. A group larger than the whole bound is
    /// not kept (it still advances the offset).
    pub fn push(&mut self, group: ChangeGroup) -> bool {
        if group.offset <= self.last {
            return false;
        }
        self.last = group.offset;
        let size = group_size(&group);
        self.bytes += size;
        self.groups.push_back((group, size));
        self.trim();
        true
    }

    fn trim(&mut self) {
        while self.bytes > self.max_bytes {
            let Some((g, size)) = self.groups.pop_front() else { break };
            self.bytes -= size;
            self.base = g.offset;
        }
        if self.groups.is_empty() {
            self.base = self.last;
        }
    }

    /// Whether a client holding the state as of `(replid, offset)` can continue: same
    /// stream, and every group after `offset` is still held.
    pub fn can_continue(&self, replid: &str, offset: u64) -> bool {
        let same = replid == self.replid || self.replid2.as_ref().is_some_and(|(r, o)| r == replid && offset <= *o);
        same && offset >= self.base && offset <= self.last
    }

    /// The groups after `offset`, oldest first (empty when `offset` is at or past the end).
    pub fn since(&self, offset: u64) -> impl Iterator<Item = &ChangeGroup> {
        // Offsets increase along the ring: skip by binary search.
        let start = self.groups.partition_point(|(g, _)| g.offset <= offset);
        self.groups.range(start..).map(|(g, _)| g)
    }

    /// Every group held, oldest first (to persist the backlog).
    pub fn groups(&self) -> impl Iterator<Item = &ChangeGroup> {
        self.groups.iter().map(|(g, _)| g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use bytes::Bytes;

    fn group(offset: u64, payload: usize) -> ChangeGroup {
        ChangeGroup {
            offset,
            changes: vec![Change { db: 0, args: vec![Bytes::from_static(b"SET"), Bytes::from_static(b"k"), Bytes::from(vec![b'x'; payload])] }],
        }
    }

    #[test]
    fn continue_within_the_ring() {
        let mut b = Backlog::new("r1", 10, 10_000);
        assert!(b.can_continue("r1", 10));
        assert!(!b.can_continue("r1", 9));
        assert!(!b.can_continue("r1", 11), "a client cannot be ahead of the stream");
        assert!(!b.can_continue("r2", 10));
        for o in 11..=15 {
            assert!(b.push(group(o, 10)));
        }
        assert!(!b.push(group(15, 10)), "offsets must increase");
        assert_eq!(b.last_offset(), 15);
        assert!(b.can_continue("r1", 10));
        assert!(b.can_continue("r1", 15));
        assert_eq!(b.since(12).map(|g| g.offset).collect::<Vec<_>>(), vec![13, 14, 15]);
        assert_eq!(b.since(15).count(), 0);
        assert_eq!(b.since(0).count(), 5);
    }

    #[test]
    fn bounded_in_bytes() {
        let one = group_size(&group(1, 100));
        let mut b = Backlog::new("r", 0, one * 3);
        for o in 1..=10 {
            b.push(group(o, 100));
            assert!(b.bytes() <= one * 3);
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.base_offset(), 7);
        assert!(b.can_continue("r", 7));
        assert!(!b.can_continue("r", 6));
        assert_eq!(b.since(7).map(|g| g.offset).collect::<Vec<_>>(), vec![8, 9, 10]);
        // A group larger than the bound is not kept, and nothing before it can continue.
        b.push(group(11, one * 4));
        assert_eq!(b.len(), 0);
        assert_eq!(b.bytes(), 0);
        assert!(b.can_continue("r", 11));
        assert!(!b.can_continue("r", 10));
    }

    #[test]
    fn a_restored_stream_continues_the_old_one() {
        let mut b = Backlog::new("boot", 0, 1 << 20);
        b.restore("new", Some(("old".into(), 12)), (9..=12).map(|o| group(o, 5)));
        assert_eq!((b.base_offset(), b.last_offset()), (8, 12));
        assert!(b.can_continue("old", 8) && b.can_continue("old", 12) && b.can_continue("new", 12));
        assert!(!b.can_continue("old", 7), "older than the groups kept");
        assert!(!b.can_continue("old", 13), "past what the streams share (a tail lost in a crash)");
        b.push(group(13, 5));
        assert!(b.can_continue("new", 13));
        assert!(!b.can_continue("old", 13));
        assert_eq!(b.since(10).map(|g| g.offset).collect::<Vec<_>>(), vec![11, 12, 13]);
        // Nothing kept: only the exact shared offset continues.
        let mut c = Backlog::new("boot", 0, 1 << 20);
        c.restore("n2", Some(("old".into(), 40)), std::iter::empty());
        assert!(c.can_continue("old", 40) && !c.can_continue("old", 39));
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let mut b = Backlog::new("r", 0, 1 << 20);
        b.push(group(5, 1));
        b.push(group(9, 1));
        assert!(b.can_continue("r", 0));
        assert!(b.can_continue("r", 6));
        assert_eq!(b.since(6).map(|g| g.offset).collect::<Vec<_>>(), vec![9]);
        b.reset("r2", 100);
        assert!(b.can_continue("r2", 100));
        assert!(!b.can_continue("r", 9));
        assert!(b.is_empty());
    }
}
