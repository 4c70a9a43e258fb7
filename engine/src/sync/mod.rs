//! The live-sync protocol, written once for every host (native hub, edge hub, browser).
//!
//! Transport: RESP3 frames in WebSocket binary messages. `docs/protocol.md` specifies every
//! frame; this module is its implementation.
//!
//! # Layout
//! - [`token`]: JWT HS256 access tokens (mint, verify).
//! - [`scope`]: read/write scopes as glob patterns, pattern containment, [`scope::Grant`].
//! - [`backlog`]: the bounded ring of recent change groups used to resume.
//! - [`message`]: the requests, replies and pushes with their RESP3 encoding.
//! - [`hub`]: [`hub::SyncHub`], the hub side (auth, subscriptions, filtering, snapshots,
//!   writes with dedupe, scope checks), driven by the native and the edge hub.
//! - [`client`]: [`client::SyncClient`], the client state machine (confirmed + pending =
//!   visible), driven by the browser and by Rust services.

pub mod backlog;
pub mod client;
pub mod http_api;
pub mod hub;
pub mod message;
pub mod scope;
pub mod token;

pub use backlog::Backlog;
pub use client::{ClientConfig, Event, Origin, Reconnect, Status, SyncClient};
pub use hub::{Auth, Close, ConnId, DedupeChange, DedupeEntry, HubConfig, Output, SyncHub};
pub use scope::{Grant, Scope};
pub use token::{Claims, TokenError};

#[cfg(test)]
mod tests;
