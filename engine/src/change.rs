//! The canonical change stream.
//!
//! Every write yields zero or more [`Change`]s: the deterministic form of what it did, as a
//! RESP command array naming one key. The changes of one command (or one `MULTI`/`EXEC`)
//! form one [`ChangeGroup`] with one offset. Applying the same groups in the same order to
//! any engine gives the same state; this one stream feeds the AOF, replicas, WebSocket
//! subscribers and other tabs.
//!
//! Canonical forms (see `docs/protocol.md`):
//! - relative expiry becomes absolute: `EXPIRE k 10` → `PEXPIREAT k <ms>`, `SET k v EX 1` →
//!   `SET k v PXAT <ms>`;
//! - random or floating results become their outcome: `SPOP` → `SREM`, `INCRBYFLOAT` → `SET`;
//! - a key that expires or is evicted yields `DEL k`;
//! - multi-key writes split per key: `RENAME a b` → `DEL a` and a whole-value restore of `b`
//!   (`DEL b`, a rebuild such as `RPUSH b …`, then `PEXPIREAT b …` when it has a TTL).
//!
//! The exceptions that name no single key are `FLUSHDB`, `FLUSHALL` and `SWAPDB a b`; a
//! consumer holding a subset of keys applies them to the keys it holds.

use bytes::Bytes;

/// One canonical write on one key (or one whole-database operation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The logical database the change applies to.
    pub db: u16,
    /// The command, name first, e.g. `["SET", "k", "v", "PXAT", "1700000000000"]`.
    pub args: Vec<Bytes>,
}

impl Change {
    /// The key this change names, or `None` for `FLUSHDB`/`FLUSHALL`/`SWAPDB`.
    pub fn key(&self) -> Option<&Bytes> {
        match self.args.first().map(|n| n.as_ref()) {
            Some(b"FLUSHDB") | Some(b"FLUSHALL") | Some(b"SWAPDB") => None,
            _ => self.args.get(1),
        }
    }

    /// The command name (always upper case in canonical changes).
    pub fn name(&self) -> &[u8] {
        self.args.first().map(|n| n.as_ref()).unwrap_or(b"")
    }
}

/// The changes of one command or one transaction, applied atomically everywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeGroup {
    /// Position in the stream: the first group has offset 1, each next group one more.
    pub offset: u64,
    /// The changes, in order.
    pub changes: Vec<Change>,
}

/// The class of a keyspace event, as letters of `notify-keyspace-events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventClass {
    /// `g`: DEL, EXPIRE, RENAME, …
    Generic,
    /// `$`: string commands.
    String,
    /// `l`: list commands.
    List,
    /// `s`: set commands.
    Set,
    /// `h`: hash commands.
    Hash,
    /// `z`: sorted-set commands.
    ZSet,
    /// `x`: a key expired.
    Expired,
    /// `e`: a key was evicted.
    Evicted,
    /// `n`: a key was created.
    New,
    /// `m`: a key was looked up and missed.
    Miss,
}

impl EventClass {
    /// The flag letter in `notify-keyspace-events`.
    pub fn letter(self) -> char {
        match self {
            EventClass::Generic => 'g',
            EventClass::String => '$',
            EventClass::List => 'l',
            EventClass::Set => 's',
            EventClass::Hash => 'h',
            EventClass::ZSet => 'z',
            EventClass::Expired => 'x',
            EventClass::Evicted => 'e',
            EventClass::New => 'n',
            EventClass::Miss => 'm',
        }
    }

    /// The bit of this class in [`crate::Config::keyspace_events`].
    pub fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A keyspace event: `set` on `k` in db 0, `expired` on `session:1`, …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEvent {
    /// The logical database.
    pub db: u16,
    /// The class, to filter by `notify-keyspace-events`.
    pub class: EventClass,
    /// The event name as Redis spells it (`set`, `lpush`, `expired`, `del`, …).
    pub event: &'static str,
    /// The key.
    pub key: Bytes,
}
