//! The pub/sub registry: who listens on which channel, pattern and shard channel.
//!
//! It only keeps bookkeeping; delivery (encoding per protocol, bounded output buffers)
//! belongs to the hub, which asks [`PubSub::targets`] whom a message reaches. Subscribers
//! are kept in subscription order so delivery order is stable, as in Redis.

use std::collections::HashMap;

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};
use recached_engine::glob;

/// A client id (the same id as `CLIENT ID` and the engine session).
pub type ClientId = u64;

/// One client's subscriptions.
#[derive(Debug, Default, Clone)]
pub struct Subscriptions {
    /// Channels, in subscription order.
    pub channels: IndexSet<Bytes>,
    /// Patterns, in subscription order.
    pub patterns: IndexSet<Bytes>,
    /// Shard channels (SSUBSCRIBE), in subscription order.
    pub shard: IndexSet<Bytes>,
}

impl Subscriptions {
    /// Channels plus patterns: the count SUBSCRIBE/PSUBSCRIBE replies carry.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the client is subscribed to anything at all.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty()
    }
}

/// Which kind of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// SUBSCRIBE.
    Channel,
    /// PSUBSCRIBE.
    Pattern,
    /// SSUBSCRIBE.
    Shard,
}

/// The registry.
#[derive(Debug, Default)]
pub struct PubSub {
    channels: HashMap<Bytes, IndexSet<ClientId>>,
    patterns: IndexMap<Bytes, IndexSet<ClientId>>,
    shard: HashMap<Bytes, IndexSet<ClientId>>,
    clients: HashMap<ClientId, Subscriptions>,
}

impl PubSub {
    fn index(&mut self, kind: Kind) -> &mut dyn IndexLike {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard,
        }
    }

    /// Subscribes; returns false if the client already was.
    pub fn subscribe(&mut self, id: ClientId, kind: Kind, name: &Bytes) -> bool {
        let subs = self.clients.entry(id).or_default();
        let set = match kind {
            Kind::Channel => &mut subs.channels,
            Kind::Pattern => &mut subs.patterns,
            Kind::Shard => &mut subs.shard,
        };
        if !set.insert(name.clone()) {
            return false;
        }
        self.index(kind).add(name, id);
        true
    }

    /// Unsubscribes; returns false if the client was not subscribed.
    pub fn unsubscribe(&mut self, id: ClientId, kind: Kind, name: &[u8]) -> bool {
        let Some(subs) = self.clients.get_mut(&id) else { return false };
        let set = match kind {
            Kind::Channel => &mut subs.channels,
            Kind::Pattern => &mut subs.patterns,
            Kind::Shard => &mut subs.shard,
        };
        if !set.shift_remove(name) {
            return false;
        }
        if subs.is_empty() {
            self.clients.remove(&id);
        }
        self.index(kind).drop_one(name, id);
        true
    }

    /// The client's subscriptions of one kind, in order.
    pub fn list(&self, id: ClientId, kind: Kind) -> Vec<Bytes> {
        let Some(s) = self.clients.get(&id) else { return Vec::new() };
        let set = match kind {
            Kind::Channel => &s.channels,
            Kind::Pattern => &s.patterns,
            Kind::Shard => &s.shard,
        };
        set.iter().cloned().collect()
    }

    /// The client's subscriptions.
    pub fn of(&self, id: ClientId) -> Option<&Subscriptions> {
        self.clients.get(&id)
    }

    /// Channels plus patterns of a client.
    pub fn count(&self, id: ClientId) -> usize {
        self.clients.get(&id).map(Subscriptions::count).unwrap_or(0)
    }

    /// Shard channels of a client.
    pub fn shard_count(&self, id: ClientId) -> usize {
        self.clients.get(&id).map(|s| s.shard.len()).unwrap_or(0)
    }

    /// Forgets a client entirely (disconnect, RESET).
    pub fn remove_client(&mut self, id: ClientId) {
        let Some(subs) = self.clients.remove(&id) else { return };
        for c in &subs.channels {
            self.channels.drop_one(c, id);
        }
        for p in &subs.patterns {
            self.patterns.drop_one(p, id);
        }
        for s in &subs.shard {
            self.shard.drop_one(s, id);
        }
    }

    /// Who receives a message on `channel`: channel subscribers first (pattern `None`),
    /// then each matching pattern's subscribers, patterns in subscription order.
    pub fn targets(&self, channel: &[u8]) -> Vec<(ClientId, Option<Bytes>)> {
        let mut out = Vec::new();
        if let Some(ids) = self.channels.get(channel) {
            out.extend(ids.iter().map(|&id| (id, None)));
        }
        for (pattern, ids) in &self.patterns {
            if glob::matches(pattern, channel, false) {
                out.extend(ids.iter().map(|&id| (id, Some(pattern.clone()))));
            }
        }
        out
    }

    /// Who receives a message on shard channel `channel`.
    pub fn shard_targets(&self, channel: &[u8]) -> Vec<ClientId> {
        self.shard.get(channel).map(|ids| ids.iter().copied().collect()).unwrap_or_default()
    }

    /// Active channels (with at least one subscriber) matching `pattern` (all if `None`).
    pub fn channels(&self, kind: Kind, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let map = if kind == Kind::Shard { &self.shard } else { &self.channels };
        let mut out: Vec<Bytes> =
            map.keys().filter(|c| pattern.map(|p| glob::matches(p, c, false)).unwrap_or(true)).cloned().collect();
        out.sort();
        out
    }

    /// Subscribers of a channel.
    pub fn numsub(&self, kind: Kind, channel: &[u8]) -> usize {
        let map = if kind == Kind::Shard { &self.shard } else { &self.channels };
        map.get(channel).map(IndexSet::len).unwrap_or(0)
    }

    /// Distinct patterns subscribed to.
    pub fn numpat(&self) -> usize {
        self.patterns.len()
    }

    /// Distinct channels subscribed to.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Distinct shard channels subscribed to.
    pub fn num_shard_channels(&self) -> usize {
        self.shard.len()
    }
}

/// The two map types of the registry, behind one small interface.
trait IndexLike {
    fn add(&mut self, name: &Bytes, id: ClientId);
    fn drop_one(&mut self, name: &[u8], id: ClientId);
}

impl IndexLike for HashMap<Bytes, IndexSet<ClientId>> {
    fn add(&mut self, name: &Bytes, id: ClientId) {
        self.entry(name.clone()).or_default().insert(id);
    }
    fn drop_one(&mut self, name: &[u8], id: ClientId) {
        if let Some(ids) = self.get_mut(name) {
            ids.shift_remove(&id);
            if ids.is_empty() {
                self.remove(name);
            }
        }
    }
}

impl IndexLike for IndexMap<Bytes, IndexSet<ClientId>> {
    fn add(&mut self, name: &Bytes, id: ClientId) {
        self.entry(name.clone()).or_default().insert(id);
    }
    fn drop_one(&mut self, name: &[u8], id: ClientId) {
        if let Some(ids) = self.get_mut(name) {
            ids.shift_remove(&id);
            if ids.is_empty() {
                self.shift_remove(name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn subscribe_and_counts() {
        let mut ps = PubSub::default();
        assert!(ps.subscribe(1, Kind::Channel, &b("news")));
        assert!(!ps.subscribe(1, Kind::Channel, &b("news")));
        assert!(ps.subscribe(1, Kind::Pattern, &b("n*")));
        assert!(ps.subscribe(2, Kind::Channel, &b("news")));
        assert_eq!(ps.count(1), 2);
        assert_eq!(ps.numsub(Kind::Channel, b"news"), 2);
        assert_eq!(ps.numpat(), 1);
        assert_eq!(ps.channels(Kind::Channel, None), vec![b("news")]);
        assert_eq!(ps.channels(Kind::Channel, Some(b"x*")), Vec::<Bytes>::new());
        assert!(ps.unsubscribe(1, Kind::Channel, b"news"));
        assert!(!ps.unsubscribe(1, Kind::Channel, b"news"));
        assert_eq!(ps.count(1), 1);
        assert_eq!(ps.numsub(Kind::Channel, b"news"), 1);
    }

    #[test]
    fn targets_channels_then_patterns() {
        let mut ps = PubSub::default();
        ps.subscribe(3, Kind::Pattern, &b("user:*"));
        ps.subscribe(1, Kind::Channel, &b("user:1"));
        ps.subscribe(2, Kind::Pattern, &b("user:?"));
        ps.subscribe(1, Kind::Pattern, &b("*"));
        let t = ps.targets(b"user:1");
        assert_eq!(t, vec![(1, None), (3, Some(b("user:*"))), (2, Some(b("user:?"))), (1, Some(b("*")))]);
        assert_eq!(ps.targets(b"other"), vec![(1, Some(b("*")))]);
    }

    #[test]
    fn remove_client_cleans_indexes() {
        let mut ps = PubSub::default();
        ps.subscribe(1, Kind::Channel, &b("a"));
        ps.subscribe(1, Kind::Pattern, &b("p*"));
        ps.subscribe(1, Kind::Shard, &b("s"));
        ps.remove_client(1);
        assert_eq!(ps.num_channels(), 0);
        assert_eq!(ps.numpat(), 0);
        assert_eq!(ps.num_shard_channels(), 0);
        assert!(ps.targets(b"a").is_empty());
        assert!(ps.of(1).is_none());
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let mut ps = PubSub::default();
        let pattern = "a*".repeat(200) + "b";
        ps.subscribe(1, Kind::Pattern, &b(&pattern));
        let channel = "a".repeat(60_000);
        let t = std::time::Instant::now();
        assert!(ps.targets(channel.as_bytes()).is_empty());
        assert!(t.elapsed().as_millis() < 1000, "{:?}", t.elapsed());
    }
}
