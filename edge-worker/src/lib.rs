//! Recached at the edge: the engine and the live-sync hub inside a Cloudflare Durable
//! Object, built with workers-rs (`worker` 0.8) and `worker-build`.
//!
//! One Durable Object per namespace hosts one [`recached_engine::Engine`] and one
//! [`recached_engine::sync::SyncHub`] — the same state machines the native hub drives, so
//! the WebSocket frames, tokens, scopes and HTTP replies are the native hub's. This crate
//! only moves bytes, persists and schedules:
//!
//! - the fetch handler routes `/v1/ns/{namespace}/ws` (WebSocket sync) and
//!   `/v1/ns/{namespace}/…` (HTTP command API) to the namespace's object, and Upstash's
//!   REST paths (`/`, `/pipeline`, `/multi-exec`, `/set/k/v`) to the default namespace;
//! - the object keeps the engine in memory, rebuilds it from its SQLite-backed storage on
//!   wake, makes every acknowledged write durable before the ack leaves (the runtime's
//!   output gate holds the ack until the same event's storage writes are committed), runs
//!   expiry from an alarm at the engine's next deadline, and accepts WebSockets through
//!   the hibernation API with each socket's protocol state in its attachment.
//!
//! # Layout
//! - [`settings`]: hub settings from Worker vars (the native hub's flags, as vars).
//! - [`api`]: the HTTP command API's JSON mapping (`docs/protocol.md` section 12).
//! - [`codec`]: storage encodings: one key as a one-key engine snapshot, a change group,
//!   chunking of values larger than a storage row.
//! - `router`, `durable`, `storage` (wasm32 only): the fetch handler, the Durable Object,
//!   the SQL storage layer.
//!
//! See `docs/edge.md` for the storage layout, the alarm, hibernation, limits, and how to
//! run it locally (`npm run dev`) and deploy it (`npm run deploy`).
//!
//! # Example
//! ```
//! use recached_edge::settings::Settings;
//! let s = Settings::from_vars(|name| (name == "SYNC_BACKLOG_BYTES").then(|| "4096".to_string()));
//! assert_eq!(s.hub.backlog_bytes, 4096);
//! ```

pub mod api;
pub mod codec;
pub mod settings;

#[cfg(target_arch = "wasm32")]
mod durable;
#[cfg(target_arch = "wasm32")]
mod router;
#[cfg(target_arch = "wasm32")]
mod storage;
