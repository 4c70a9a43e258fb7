//! Listening: binding (with the protected-mode check), the accept loop, `maxclients`,
//! and graceful shutdown.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::config::Settings;
use crate::hub::Shared;
use crate::ws::{SyncShared, SyncSink};
use crate::{expiry, http, resp_conn, ws};

/// Why the hub could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HubError {
    /// A bind address could not be parsed.
    #[error("invalid bind address '{0}'")]
    BadAddress(String),
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Protected mode refused a non-loopback address without a password.
    #[error(
        "refusing to listen on {0} without a password: protected mode is on. Set --requirepass (or RECACHED_REQUIREPASS), \
         bind to 127.0.0.1, or pass --protected-mode no if the network is trusted"
    )]
    Protected(String),
    /// Dev mode refused (it listens on loopback only).
    #[error("{0}")]
    Dev(String),
    /// The persisted state could not be loaded (the message names the file and the fix).
    #[error("{0}")]
    Persist(String),
}

/// Redis's answer to a connection over `maxclients`.
const MAXCLIENTS_ERROR: &[u8] = b"-ERR max number of clients reached\r\n";
/// How long shutdown waits for connections to flush before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Parses a Redis `bind` word: `127.0.0.1`, `::1`, `*` (all IPv4), `::*` (all IPv6),
/// `localhost`; a leading `-` (optional address) is accepted.
pub fn parse_bind(word: &str) -> Option<IpAddr> {
    let w = word.trim_start_matches('-');
    match w {
        "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        "::*" => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => w.parse().ok(),
    }
}

/// A hub whose RESP listeners are bound but not yet serving.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    port: u16,
    sync_port: Option<SyncPort>,
}

/// The bound sync port (WebSocket + HTTP) and its state.
struct SyncPort {
    listeners: Vec<TcpListener>,
    port: u16,
    sync: Arc<SyncShared>,
}

impl Server {
    /// Binds every `bind` address on `port` (port 0 picks one free port for all).
    pub async fn bind(mut settings: Settings) -> Result<Server, HubError> {
        crate::dev::prepare(&mut settings).map_err(HubError::Dev)?;
        if settings.protected_mode && settings.requirepass.is_empty() && settings.binds_beyond_loopback() {
            return Err(HubError::Protected(settings.bind.join(" ")));
        }
        let mut listeners = Vec::new();
        let mut port = settings.port;
        for word in &settings.bind {
            let ip = parse_bind(word).ok_or_else(|| HubError::BadAddress(word.clone()))?;
            let addr = SocketAddr::new(ip, port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                // `-addr` means: skip it if the address is not available.
                Err(_) if word.starts_with('-') => continue,
                Err(source) => return Err(HubError::Bind { addr, source }),
            };
            if port == 0 {
                port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            }
            listeners.push(listener);
        }
        if listeners.is_empty() {
            return Err(HubError::BadAddress(settings.bind.join(" ")));
        }
        let shared = Shared::new(settings);
        shared.tcp_port.store(port, Ordering::Relaxed);
        Ok(Server { shared, listeners, port, sync_port: None })
    }

    /// Binds the sync port (`ws-port`: WebSocket sync and HTTP; 0 picks a free port) on
    /// every `bind` address and plugs the sync fan-out into the change stream. Returns the
    /// port bound. Without this call the hub serves RESP only.
    pub async fn bind_ws(&mut self) -> Result<u16, HubError> {
        let settings = self.shared.lock().hub.settings.clone();
        let mut listeners = Vec::new();
        let mut port = settings.ws_port;
        for word in &settings.bind {
            let ip = parse_bind(word).ok_or_else(|| HubError::BadAddress(word.clone()))?;
            let addr = SocketAddr::new(ip, port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(_) if word.starts_with('-') => continue,
                Err(source) => return Err(HubError::Bind { addr, source }),
            };
            if port == 0 {
                port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
            }
            listeners.push(listener);
        }
        if listeners.is_empty() {
            return Err(HubError::BadAddress(settings.bind.join(" ")));
        }
        let offset = self.shared.lock().engine.offset();
        let sync = SyncShared::new(&settings, &self.shared.run_id, offset, self.shared.gate.clone());
        self.shared.set_sync(sync.clone());
        if sync.is_open() {
            tracing::warn!(
                "sync port open: no --sync-secret and no --sync-token, so every WebSocket and HTTP client may read and write every key"
            );
        }
        self.shared.add_sink(Box::new(SyncSink(sync.clone())));
        self.sync_port = Some(SyncPort { listeners, port, sync });
        Ok(port)
    }

    /// The sync port actually bound, once [`Server::bind_ws`] ran.
    pub fn ws_port(&self) -> Option<u16> {
        self.sync_port.as_ref().map(|p| p.port)
    }

    /// The sync state (metrics, tests), once [`Server::bind_ws`] ran.
    pub fn sync(&self) -> Option<&Arc<SyncShared>> {
        self.sync_port.as_ref().map(|p| &p.sync)
    }

    /// The RESP port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The local addresses bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|l| l.local_addr().ok()).collect()
    }

    /// The shared state (to plug in change sinks, a WebSocket listener, …).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Serves until `shutdown` completes (or a client sends SHUTDOWN), then stops
    /// accepting, lets connections finish their in-flight batches and flush, saves and
    /// fsyncs what persistence asks for, and returns.
    ///
    /// RESP clients are accepted at once and get `-LOADING` while the persisted state
    /// loads; the `Ready to accept connections tcp port=<port>` and `… ws port=<port>` lines
    /// go to stdout once it has (tests start the hub on port 0 and read the ports there),
    /// and only then does the sync port accept.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), HubError> {
        let shared = self.shared;
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let mut tasks = Vec::new();
        {
            use std::os::fd::AsRawFd;
            shared.scripting.watch.rescue.set_listeners(self.listeners.iter().map(|l| l.as_raw_fd()).collect());
        }
        for listener in self.listeners {
            tasks.push(tokio::spawn(accept_loop(shared.clone(), listener, done_tx.clone())));
        }
        if let Err(e) = crate::persist::startup(&shared).await {
            shared.begin_shutdown();
            for t in tasks {
                let _ = t.await;
            }
            return Err(HubError::Persist(e));
        }
        if let Err(e) = crate::repl::init(&shared) {
            shared.begin_shutdown();
            for t in tasks {
                let _ = t.await;
            }
            return Err(HubError::Persist(e));
        }
        {
            let mut guard = shared.lock();
            let core = &mut *guard;
            if let Some((host, port)) = core.hub.settings.replicaof.clone() {
                tracing::info!(%host, port, "Connecting to MASTER {}:{} (replicaof)", host, port);
                crate::repl::become_replica(&mut core.engine, &mut core.hub, &shared, host, port);
            }
        }
        println!("Ready to accept connections tcp port={}", self.port);
        if let Some(port) = self.sync_port {
            println!("Ready to accept connections ws port={}", port.port);
            for listener in port.listeners {
                tasks.push(tokio::spawn(http::accept_loop(shared.clone(), port.sync.clone(), listener, done_tx.clone())));
            }
            tasks.push(tokio::spawn(ws::tick(port.sync.clone(), shared.shutdown.subscribe())));
            tasks.push(tokio::spawn(ws::release(port.sync, shared.shutdown.subscribe())));
        }
        tasks.push(tokio::spawn(crate::persist::cron(shared.clone(), shared.shutdown.subscribe())));
        let expiry = tokio::spawn(expiry::run(shared.clone(), shared.shutdown.subscribe()));
        drop(done_tx);
        let mut stop = shared.shutdown.subscribe();
        tokio::select! {
            _ = shutdown => {}
            _ = crate::hub::stopped(&mut stop) => {}
        }
        tracing::info!("shutting down: no new connections, finishing in-flight replies");
        shared.begin_shutdown();
        for t in tasks {
            let _ = t.await;
        }
        let _ = expiry.await;
        // Every connection holds a sender; recv() returns None once all have finished.
        if tokio::time::timeout(SHUTDOWN_GRACE, done_rx.recv()).await.is_err() {
            tracing::warn!(open = shared.connections.load(Ordering::Relaxed), "connections still open after the grace period");
        }
        {
            let mut guard = shared.lock();
            let core = &mut *guard;
            let how = core.hub.persist.exit;
            if let Err(e) = crate::persist::finish(&mut core.engine, &mut core.hub, &shared, how) {
                tracing::error!(cause = %e, "the final save failed");
            }
        }
        tracing::info!("Recached is now ready to exit, bye bye...");
        Ok(())
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, done: mpsc::Sender<()>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::hub::stopped(&mut stop) => return,
            // Connections accepted while a script held the runtime thread come back here.
            _ = shared.scripting.watch.rescue.ready.notified() => {
                for (stream, peer, input) in shared.scripting.watch.rescue.take() {
                    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
                    shared.connections.fetch_add(1, Ordering::AcqRel);
                    tokio::spawn(resp_conn::serve_with(shared.clone(), stream, peer, done.clone(), input));
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        if open > shared.knobs.maxclients.load(Ordering::Relaxed) {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            shared.lock().hub.stats.rejected_connections += 1;
            tracing::debug!(peer = %peer, "refused: max number of clients reached");
            tokio::spawn(refuse(stream));
            continue;
        }
        tokio::spawn(resp_conn::serve(shared.clone(), stream, peer, done.clone()));
    }
}

/// Tells a client over `maxclients` why, then closes. Input is drained briefly so the
/// close is a FIN, not a reset that could destroy the error line in flight.
async fn refuse(mut stream: TcpStream) {
    let _ = stream.write_all(MAXCLIENTS_ERROR).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_words() {
        assert_eq!(parse_bind("127.0.0.1"), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(parse_bind("-::1"), Some(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(parse_bind("*"), Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
        assert_eq!(parse_bind("nonsense"), None);
    }

    #[tokio::test]
    async fn protected_mode_refuses_open_bind_without_password() {
        let mut s = Settings { port: 0, bind: vec!["0.0.0.0".into()], ..Default::default() };
        let err = Server::bind(s.clone()).await.err().expect("refused");
        assert!(err.to_string().contains("protected mode"), "{}", err);
        s.requirepass = "x".into();
        assert!(Server::bind(s).await.is_ok());
    }
}
