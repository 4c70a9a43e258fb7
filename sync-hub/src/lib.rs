//! # recached-hub
//!
//! The native Recached server: a tokio host around the pure [`recached_engine`] that Redis
//! clients use unchanged (RESP2 and RESP3 over TCP, port 6379 by default). The binary is
//! `recached`; this library lets tests and tools embed the same server.
//!
//! # Layout
//! - [`config`]: flags (each also a `RECACHED_*` variable), the redis.conf-style file, and
//!   the `CONFIG GET/SET` view, validated in one place.
//! - [`server`]: binding (protected mode), the accept loop, `maxclients`, graceful shutdown.
//! - [`resp_conn`]: one connection: persistent read buffer, pipelined batches under one
//!   lock, one write per batch, blocking commands, protocol errors.
//! - [`hub`]: the shared state — one `Engine` behind a mutex taken once per batch — and the
//!   work after each batch: change sinks, keyspace notifications, waking blocked clients.
//! - [`commands`]: the host commands (AUTH, HELLO, CLIENT, CONFIG, INFO, pub/sub, …);
//!   [`info`]: INFO and CLIENT LIST text.
//! - [`pubsub`], [`notify`], [`blocking`], [`auth`], [`expiry`]: the registry of
//!   subscribers, keyspace notification flags, parked clients, failed-AUTH throttling, and
//!   the active-expiry task.
//! - [`http`]: the sync port (6380): HTTP and WebSocket on one listener, `/healthz`,
//!   `/metrics` ([`metrics`]), the Upstash-style HTTP command API ([`api`]).
//! - [`ws`]: WebSocket live sync around the engine's `sync::SyncHub`: the change-stream
//!   sink, the tick; [`socket`]: a socket's outbound side (written through, or queued and
//!   bounded); [`tokens`]: static tokens, the token rules, `RECACHED.TOKEN`.
//! - [`dev`]: dev mode (`--dev`): demo tokens on `GET /dev/token`, loopback only.
//! - [`persist`]: snapshots and the append-only file (`docs/persistence.md`).
//! - [`scripting`]: Lua scripting (EVAL, EVALSHA, SCRIPT) on an embedded Lua 5.1 VM
//!   (`docs/scripting.md`).
//!
//! # Example
//! ```no_run
//! use recached_hub::{config::Settings, server::Server};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut settings = Settings::default();
//! settings.port = 0; // any free port
//! let server = Server::bind(settings).await?;
//! println!("listening on {}", server.port());
//! server.serve(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod auth;
pub mod blocking;
pub mod commands;
pub mod config;
pub mod dev;
pub mod expiry;
pub mod http;
pub mod hub;
pub mod info;
pub mod metrics;
pub mod notify;
pub mod persist;
pub mod pubsub;
pub mod repl;
pub mod resp_conn;
pub mod scripting;
pub mod server;
pub mod socket;
pub mod tokens;
pub mod ws;

use std::future::Future;

pub use config::{Args, ConfigError, Settings};
pub use hub::{ChangeSink, Shared};
pub use server::{HubError, Server};

/// Binds the RESP port and the sync port, loads the persisted state, prints `Ready to
/// accept connections tcp port=<port>` then `Ready to accept connections ws port=<port>`
/// on stdout (tests start the hub on port 0 and read the ports from those lines), and
/// serves until `shutdown` completes.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
    let mut server = Server::bind(settings).await?;
    let ws_port = server.bind_ws().await?;
    for addr in server.local_addrs() {
        tracing::info!(%addr, "listening (RESP)");
    }
    tracing::info!(port = ws_port, "listening (WebSocket sync + HTTP)");
    server.serve(shutdown).await
}
