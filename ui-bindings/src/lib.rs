//! # recached-ui
//!
//! Recached in the browser: the engine (`recached-engine`) compiled to wasm32 as a local
//! cache with TTL, key and memory caps, eviction and change listeners — it works with no
//! server at all. JS gets it through wasm-bindgen (`createCache`, npm package `recached`);
//! Leptos apps get keys as signals (feature `leptos`).
//!
//! Reads answer at once from wasm memory. Writes apply at once and return a promise; with
//! no hub it resolves immediately with the engine's reply (an error reply rejects it).
//! Expiry runs on one timer armed at the engine's next deadline; listeners hear Redis's
//! keyspace event names (`set`, `del`, `expired`, `evicted`, `hset`, …).
//!
//! # Layout
//! - [`core`]: [`CacheCore`] — engine, session, listener registry, notices. Plain Rust,
//!   time passed in; tested natively.
//! - [`registry`]: listeners by exact key (a per-key index) or glob pattern.
//! - `cache` (wasm32): [`Cache`], the shared handle — clock, expiry timer (gloo-timers),
//!   notice delivery outside the borrow, write promises.
//! - `client` (wasm32): the hub connection — a browser WebSocket driving the engine's sync
//!   client, jittered exponential reconnect backoff over a list of URLs.
//! - [`tabs`] (wasm32): cross-tab sharing — leader election with Web Locks, a
//!   BroadcastChannel carrying changes, follower writes through the leader, hydration.
//! - [`wire`]: the cross-tab payload codec (docs/protocol.md §13).
//! - `js` (wasm32): the `#[wasm_bindgen]` surface, `createCache` and the `Cache` class,
//!   with hand-written TypeScript types.
//! - `leptos` (wasm32, feature `leptos`): `provide_cache`, `use_cache`, `use_key`,
//!   `use_json`, `use_hash`, `use_keys`, `use_status`.
//!
//! # Example (JS)
//! ```js
//! import init, { createCache } from "recached";
//! await init();
//! const cache = createCache({ maxKeys: 10_000, eviction: "allkeys-lru" });
//! const off = cache.on("user:*", (key, event) => console.log(event, key));
//! await cache.set("user:1", "ann", { ex: 60 });   // logs "set user:1"
//! cache.get("user:1");                              // "ann", synchronously
//! cache.ttl("user:1");                              // 60
//! off();
//! cache.close();
//! ```
//!
//! # Example (Rust, the core)
//! ```
//! use recached_ui::{CacheCore, CacheOptions};
//! use bytes::Bytes;
//!
//! let mut cache = CacheCore::new(&CacheOptions { max_keys: 2, ..Default::default() });
//! let now = 1_700_000_000_000;
//! let cmd = |args: &[&str]| args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect::<Vec<_>>();
//! cache.execute(&cmd(&["SET", "a", "1", "PX", "100"]), now);
//! assert_eq!(cache.get(b"a", now).as_deref(), Some(&b"1"[..]));
//! assert_eq!(cache.tick(now + 100), None); // expired, nothing left to wait for
//! assert_eq!(cache.get(b"a", now + 100), None);
//! ```

pub mod core;
pub mod registry;

#[cfg(target_arch = "wasm32")]
mod cache;
#[cfg(target_arch = "wasm32")]
mod client;
#[cfg(target_arch = "wasm32")]
mod js;
#[cfg(target_arch = "wasm32")]
pub mod tabs;
pub mod wire;
#[cfg(all(target_arch = "wasm32", feature = "leptos"))]
pub mod leptos;

pub use crate::core::{CacheCore, CacheError, CacheOptions, ConnectOptions, KeyListener, Notice, Settled, Status, StatusListener, Submitted, Tapped};
pub use crate::registry::ListenerId;
pub use recached_engine::{Policy, Reply};

#[cfg(target_arch = "wasm32")]
pub use crate::cache::{live_closures, live_sockets, now_ms, Cache, WeakCache};
#[cfg(target_arch = "wasm32")]
pub use crate::js::{create_cache, create_cache_js, JsCache};
