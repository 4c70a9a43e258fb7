//! Clients parked by blocking commands (BLPOP, BRPOP, BLMOVE, BLMPOP, BZPOPMIN, BZPOPMAX,
//! BZMPOP).
//!
//! The engine answers such a command with `Outcome::Blocked`; the connection parks here,
//! FIFO per key. When a change group touches a key with waiters, the hub re-executes the
//! waiters' commands in arrival order, inside the writer's critical section, and hands each
//! reply over a oneshot channel. A waiter that is served, times out, is unblocked or
//! disconnects leaves every queue it was in.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use recached_engine::{Reply, Session};
use tokio::sync::oneshot;

use crate::pubsub::ClientId;

/// A parked client.
#[derive(Debug)]
pub struct Waiter {
    /// A copy of the client's session (database, protocol) to re-execute with.
    pub session: Session,
    /// The blocking command, as the client sent it.
    pub args: Vec<Bytes>,
    /// Database of the keys.
    pub db: usize,
    /// The keys it waits on.
    pub keys: Vec<Bytes>,
    /// What to answer at the deadline (or on `CLIENT UNBLOCK … TIMEOUT`).
    pub timeout_reply: Reply,
    /// Where the reply goes when the command is served.
    /// The reply, with the engine's offset after the command ran: the reply waits for
    /// the AOF to hold that offset (the command's own writes).
    pub tx: oneshot::Sender<(Reply, u64)>,
}

/// Every parked client, and the FIFO queue of each key.
#[derive(Debug, Default)]
pub struct Blocked {
    waiters: HashMap<ClientId, Waiter>,
    by_key: HashMap<(usize, Bytes), VecDeque<ClientId>>,
}

impl Blocked {
    /// Parks a client. A client is parked at most once (its pipeline waits behind it).
    pub fn park(&mut self, id: ClientId, waiter: Waiter) {
        self.remove(id);
        for key in &waiter.keys {
            let q = self.by_key.entry((waiter.db, key.clone())).or_default();
            if !q.contains(&id) {
                q.push_back(id);
            }
        }
        self.waiters.insert(id, waiter);
    }

    /// Unparks a client; `None` if it was not parked (already served).
    pub fn remove(&mut self, id: ClientId) -> Option<Waiter> {
        let w = self.waiters.remove(&id)?;
        for key in &w.keys {
            let slot = (w.db, key.clone());
            if let Some(q) = self.by_key.get_mut(&slot) {
                q.retain(|x| *x != id);
                if q.is_empty() {
                    self.by_key.remove(&slot);
                }
            }
        }
        Some(w)
    }

    /// Whether anyone waits on `key` in `db`.
    pub fn has_key(&self, db: usize, key: &[u8]) -> bool {
        !self.by_key.is_empty() && self.by_key.contains_key(&(db, Bytes::copy_from_slice(key)))
    }

    /// The waiters on a key, oldest first.
    pub fn queue(&self, db: usize, key: &Bytes) -> Vec<ClientId> {
        self.by_key.get(&(db, key.clone())).map(|q| q.iter().copied().collect()).unwrap_or_default()
    }

    /// Every key with waiters in `db` (whole-database changes such as FLUSHDB, SWAPDB).
    pub fn keys_in(&self, db: usize) -> Vec<Bytes> {
        self.by_key.keys().filter(|(d, _)| *d == db).map(|(_, k)| k.clone()).collect()
    }

    /// The parked client, mutable (to re-execute with its session).
    pub fn get_mut(&mut self, id: ClientId) -> Option<&mut Waiter> {
        self.waiters.get_mut(&id)
    }

    /// Whether a client is parked.
    pub fn contains(&self, id: ClientId) -> bool {
        self.waiters.contains_key(&id)
    }

    /// Number of parked clients (INFO `blocked_clients`).
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether nobody is parked.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(keys: &[&str]) -> (Waiter, oneshot::Receiver<(Reply, u64)>) {
        let (tx, rx) = oneshot::channel();
        let w = Waiter {
            session: Session::new(1),
            args: vec![],
            db: 0,
            keys: keys.iter().map(|k| Bytes::copy_from_slice(k.as_bytes())).collect(),
            timeout_reply: Reply::NilArray,
            tx,
        };
        (w, rx)
    }

    #[test]
    fn fifo_per_key_and_cleanup() {
        let mut b = Blocked::default();
        let (w1, _r1) = waiter(&["a", "b"]);
        let (w2, _r2) = waiter(&["a"]);
        b.park(1, w1);
        b.park(2, w2);
        assert_eq!(b.queue(0, &Bytes::from_static(b"a")), vec![1, 2]);
        assert!(b.has_key(0, b"b"));
        assert!(!b.has_key(1, b"a"));
        assert!(b.remove(1).is_some());
        assert!(b.remove(1).is_none());
        assert!(!b.has_key(0, b"b"));
        assert_eq!(b.queue(0, &Bytes::from_static(b"a")), vec![2]);
        assert_eq!(b.len(), 1);
        b.remove(2);
        assert!(b.is_empty());
        assert!(b.keys_in(0).is_empty());
    }

    #[test]
    fn duplicate_keys_queue_once() {
        let mut b = Blocked::default();
        let (w, _r) = waiter(&["a", "a"]);
        b.park(7, w);
        assert_eq!(b.queue(0, &Bytes::from_static(b"a")), vec![7]);
        b.remove(7);
        assert!(!b.has_key(0, b"a"));
    }
}
