//! # recached-engine
//!
//! The Recached engine: a pure, synchronous, Redis-compatible state machine. It has no
//! sockets, files, threads or clock reads, so the same code runs in the native hub
//! (`sync-hub`), in every browser tab (`ui-bindings`, wasm32) and in a Cloudflare Durable
//! Object (`edge-worker`). Hosts pass the time in and own all I/O.
//!
//! # Layout
//! - [`resp`]: the RESP2/RESP3 codec (incremental parser with limits, encoder).
//! - [`command`]: the command table (arity, flags, key positions) and one module per
//!   family (`string`, `keys`, `expire`, `list`, `hash`, `set`, `zset`, `tx`, `server`).
//! - [`engine`]: [`Engine`], [`Session`], [`Ctx`] (the one door to the keyspace), MULTI/EXEC,
//!   WATCH, expiry sweep, the outbox of changes and events.
//! - [`db`], [`value`], [`zset`]: the keyspace and the typed values.
//! - [`change`]: the canonical change stream (AOF, replicas, sockets, tabs).
//! - [`eviction`]: `maxmemory`/`maxkeys` and Redis's eviction policies.
//! - [`snapshot`]: the postcard snapshot codec with header, version and checksum.
//! - [`sync`]: the live-sync protocol: messages, tokens, scopes, backlog, hub and client
//!   state machines (`docs/protocol.md`).
//! - [`glob`], [`util`], [`rng`]: glob matching, number rules, a seeded generator.
//!
//! # Example
//! ```
//! use recached_engine::{Engine, Session, Reply};
//!
//! let mut engine = Engine::default();
//! let mut client = Session::new(1);
//! let now_ms = 1_700_000_000_000;
//! assert_eq!(engine.run(&mut client, &[b"SET", b"greeting", b"hi", b"EX", b"10"], now_ms), Reply::Ok);
//! assert_eq!(engine.run(&mut client, &[b"GET", b"greeting"], now_ms), Reply::bulk("hi"));
//! // The write became one canonical change with an absolute deadline.
//! let groups = engine.take_changes();
//! assert_eq!(&groups[0].changes[0].args[3][..], b"PXAT");
//! // Ten seconds later the key is gone.
//! assert_eq!(engine.run(&mut client, &[b"GET", b"greeting"], now_ms + 10_000), Reply::Nil);
//! ```

pub mod aof;
pub mod blob;
pub mod change;
pub mod command;
pub mod db;
pub mod engine;
pub mod eviction;
pub mod glob;
pub mod ldouble;
pub mod reply;
pub mod resp;
pub mod rng;
pub mod snapshot;
pub mod sync;
pub mod util;
pub mod value;
pub mod zset;

#[cfg(test)]
pub(crate) mod test_util;

pub use change::{Change, ChangeGroup, EventClass, KeyEvent};
pub use command::{lookup, table, CommandSpec};
pub use db::{Db, Entry};
pub use engine::{Block, Config, Ctx, Engine, Host, NoHost, Outcome, ScriptRun, Session, Stats};
pub use eviction::Policy;
pub use reply::Reply;
pub use value::{Kind, Value};
