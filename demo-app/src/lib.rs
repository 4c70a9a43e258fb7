//! # recached-demo
//!
//! The Recached demo: a Leptos CSR app, built by `trunk` from the root `Trunk.toml`, that
//! mirrors a hub's keys into the browser cache (`recached-ui`) and shows them live:
//!
//! - a shared counter (`demo:counter`, `INCR` from any browser);
//! - presence: who is online, as heartbeat keys `presence:<user>` with a TTL;
//! - a per-user cart (`cart:<user>:items`, a hash) under a token scoped to that user, and
//!   a write outside that scope that the hub refuses;
//! - feature flags (`flag:*`) that a backend flips with `redis-cli SET flag:… on` and the
//!   page follows (`flag:dark-mode`, `flag:banner`, `flag:new-checkout` change the page);
//! - a key inspector: every visible key with its type, value and live TTL countdown,
//!   highlighted when it changes.
//!
//! The page connects to `ws://127.0.0.1:6380` unless told otherwise (`?hub=ws://…`, or the
//! hub field in the page) and asks a hub in dev mode (`recached --dev`) for a token for
//! `?user=NAME` (`GET /dev/token?user=NAME`); `?token=…` uses a token minted elsewhere.
//!
//! # Layout
//! - [`setup`]: the page parameters, the token endpoint, the dev token answer, the key
//!   names. Plain Rust, tested natively.
//! - [`show`]: formatting of values and TTLs for the inspector. Plain Rust, tested natively.
//! - `app` (wasm32): the root component, connection and token refresh.
//! - `views` (wasm32): one component per view.
//!
//! Every element a test touches has a `data-testid` (see `e2e/`).

pub mod setup;
pub mod show;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod views;

#[cfg(target_arch = "wasm32")]
pub use app::App;
