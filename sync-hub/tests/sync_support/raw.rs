//! Raw WebSocket access to the hub: connecting (with a chosen receive buffer and Origin),
//! a command connection for backends without TCP ([`WsCmd`]), and a bare socket for
//! hostile input ([`RawWs`]).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use recached_engine::resp::{parse, Frame, Limits};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{encode, IO_TIMEOUT};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Host and port of a `ws://host:port/path` URL.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("ws://").unwrap_or_else(|| panic!("only ws:// URLs are supported by the test client: {url}"));
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((h, p)) => (h.trim_matches(['[', ']']).to_string(), p.parse().unwrap_or(80)),
        None => (authority.to_string(), 80),
    }
}

/// How to open a socket.
#[derive(Debug, Clone, Default)]
pub struct ConnectOpts {
    /// `SO_RCVBUF` of the client socket (small: a slow consumer fills up quickly).
    pub recv_buffer: Option<u32>,
    /// An `Origin` header.
    pub origin: Option<String>,
}

/// Opens a WebSocket to `url` (bounded by [`IO_TIMEOUT`]).
pub async fn connect(url: &str, opts: &ConnectOpts) -> Result<Ws, String> {
    let (host, port) = host_port(url);
    let fut = async {
        let addr = tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| e.to_string())?.next().ok_or("no address")?;
        let sock = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| e.to_string())?;
        if let Some(n) = opts.recv_buffer {
            sock.set_recv_buffer_size(n).map_err(|e| e.to_string())?;
        }
        let stream = sock.connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        if let Some(o) = &opts.origin {
            req.headers_mut().insert("Origin", HeaderValue::from_str(o).map_err(|e| e.to_string())?);
        }
        // The hub's messages have no protocol bound (a large value is sent whole). A small
        // read buffer: tungstenite zero-fills its whole spare read capacity on every read
        // (128 KiB by default), which would dominate a client's cost per message.
        let config = WebSocketConfig::default().max_message_size(Some(1 << 30)).max_frame_size(Some(1 << 30)).read_buffer_size(16 * 1024);
        let (ws, _resp) = tokio_tungstenite::client_async_with_config(req, stream, Some(config)).await.map_err(|e| format!("upgrade: {e}"))?;
        Ok::<Ws, String>(ws)
    };
    tokio::time::timeout(IO_TIMEOUT, fut).await.map_err(|_| format!("connect to {url}: timeout"))?
}

/// What came from the hub on a raw socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A binary message, parsed into frames (`Err`: its bytes did not parse).
    Frames(Vec<Frame>),
    /// A text message (the hub never sends one).
    Text(String),
    /// A close frame (code, reason); 1005 when it had no code.
    Close(u16, String),
    /// The TCP connection ended without a close frame (or with an error).
    Dropped(String),
    /// Nothing within the wait.
    Nothing,
}

/// Parses a binary message into whole frames.
pub fn frames(data: &[u8]) -> Result<Vec<Frame>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        match parse(&data[pos..], &Limits::default()) {
            Ok(Some((f, n))) => {
                out.push(f);
                pos += n;
            }
            Ok(None) => return Err(format!("cut frame at byte {pos} of {}", data.len())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

/// A bare WebSocket for hostile-input tests.
pub struct RawWs {
    /// The socket.
    pub ws: Ws,
    /// Frames received but not yet taken.
    pending: std::collections::VecDeque<Frame>,
}

impl RawWs {
    /// Opens a socket.
    pub async fn connect(url: &str) -> RawWs {
        RawWs::connect_with(url, &ConnectOpts::default()).await
    }

    /// Opens a socket with options.
    pub async fn connect_with(url: &str, opts: &ConnectOpts) -> RawWs {
        let ws = connect(url, opts).await.unwrap_or_else(|e| panic!("{e}"));
        RawWs { ws, pending: Default::default() }
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: Vec<u8>) -> Result<(), String> {
        self.ws.send(Message::Binary(Bytes::from(data))).await.map_err(|e| e.to_string())
    }

    /// Sends commands in one binary message.
    pub async fn send_cmds(&mut self, cmds: &[Vec<Bytes>]) -> Result<(), String> {
        let mut out = Vec::new();
        for c in cmds {
            out.extend_from_slice(&encode(c));
        }
        self.send_binary(out).await
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.ws.send(Message::Text(text.into())).await.map_err(|e| e.to_string())
    }

    /// The next thing from the hub within `wait` (pings are answered and skipped).
    pub async fn next(&mut self, wait: Duration) -> Incoming {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => return Incoming::Nothing,
                Ok(None) => return Incoming::Dropped("end of stream".into()),
                Ok(Some(Err(e))) => return Incoming::Dropped(e.to_string()),
                Ok(Some(Ok(m))) => match m {
                    Message::Binary(d) => {
                        return match frames(&d) {
                            Ok(f) => Incoming::Frames(f),
                            Err(e) => Incoming::Dropped(format!("unparseable message: {e}")),
                        }
                    }
                    Message::Text(t) => return Incoming::Text(t.to_string()),
                    Message::Close(Some(c)) => return Incoming::Close(u16::from(c.code), c.reason.to_string()),
                    Message::Close(None) => return Incoming::Close(1005, String::new()),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                },
            }
        }
    }

    /// The next frame (replies and pushes, in order) within `wait`; `Err` with what came
    /// instead.
    pub async fn frame(&mut self, wait: Duration) -> Result<Frame, Incoming> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        match self.next(wait).await {
            Incoming::Frames(fs) => {
                self.pending.extend(fs);
                self.pending.pop_front().ok_or(Incoming::Frames(Vec::new()))
            }
            other => Err(other),
        }
    }

    /// The next frame that is not a push.
    pub async fn reply(&mut self, wait: Duration) -> Result<Frame, Incoming> {
        loop {
            match self.frame(wait).await? {
                Frame::Push(_) => continue,
                f => return Ok(f),
            }
        }
    }

    /// Reads until the hub closes (skipping frames); returns the close code and reason,
    /// or how it ended otherwise.
    pub async fn closed(&mut self, wait: Duration) -> Incoming {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Incoming::Frames(_) | Incoming::Text(_) => continue,
                other => return other,
            }
        }
    }

    /// Sends HELLO with `token` and returns its reply.
    pub async fn hello(&mut self, token: &str, client_id: &str) -> Result<Frame, Incoming> {
        self.send_cmds(&[vec![Bytes::from_static(b"SYNC.HELLO"), Bytes::from_static(b"1"), Bytes::copy_from_slice(token.as_bytes()), Bytes::copy_from_slice(client_id.as_bytes())]])
            .await
            .map_err(Incoming::Dropped)?;
        self.reply(IO_TIMEOUT).await
    }
}

/// A command connection over WebSocket: HELLO with an unrestricted token, then plain
/// commands (what a backend without TCP uses).
pub struct WsCmd {
    raw: RawWs,
}

impl WsCmd {
    /// Connects and authenticates.
    pub async fn connect(url: &str, token: &str) -> WsCmd {
        let mut raw = RawWs::connect(url).await;
        let id = format!("backend-{}", super::random_seed() % 1_000_000_000);
        match raw.hello(token, &id).await {
            Ok(Frame::Map(_)) => {}
            other => panic!("backend HELLO refused: {other:?}"),
        }
        WsCmd { raw }
    }

    /// Sends encoded commands in one message and reads `n` replies.
    pub async fn pipeline(&mut self, bytes: Vec<u8>, n: usize) -> Vec<Frame> {
        self.raw.send_binary(bytes).await.unwrap_or_else(|e| panic!("backend send: {e}"));
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            match self.raw.reply(IO_TIMEOUT).await {
                Ok(f) => out.push(f),
                Err(e) => panic!("backend reply: {e:?}"),
            }
        }
        out
    }
}
