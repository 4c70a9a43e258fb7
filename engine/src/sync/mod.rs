//! The live-sync protocol, written once for every host (native hub, edge hub, browser).
//!
//! Transport: RESP3 frames in WebSocket binary messages. `docs/protocol.md` specifies every
//! frame; this module is its implementation.
//!
//! # Layout
//! - [`token`]: JWT HS256 access tokens (mint, verify).
//! - [`scope`]: read/write scopes as glob patterns, pattern containment, [`scope::Grant`].
//! - [`backlog`]: the bounded ring of recent change groups used to resume.

pub mod backlog;
pub mod scope;
pub mod token;

pub use backlog::Backlog;
pub use scope::{Grant, Scope};
pub use token::{Claims, TokenError};
