//! The sync port (6380): one listener for plain HTTP and WebSocket. The request head is
//! parsed here (httparse); an upgrade request becomes a sync socket ([`crate::ws`]) after
//! the 101 is written, everything else is routed:
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | `200 ok` |
//! | `GET /metrics` | Prometheus text ([`crate::metrics`]) |
//! | `POST /` JSON command | `{"result": …}` or `{"error": …}` ([`crate::api`]) |
//! | `POST /pipeline`, `POST /multi-exec` | an array of those |
//! | `GET/POST/PUT /<command>/<arg>/…` | Upstash's path form |
//! | `OPTIONS *` | CORS preflight |
//! | `GET /dev/token?user=NAME` | a demo token, only in dev mode ([`crate::dev`]); else 404 |
//!
//! Connections are HTTP/1.1 keep-alive; every read is bounded (head 16 KiB within the
//! handshake timeout, body `sync-max-message`), and every connection on the port holds a
//! place under `maxclients` and the per-IP cap.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use recached_engine::sync::hub::origin_allowed;
use recached_engine::sync::{Grant, SyncHub};
use recached_engine::Reply;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::api::{self, Encoding};
use crate::hub::{now_ms, Shared};
use crate::ws::{self, IpSlot, Refusal, SyncShared};

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Most request headers.
const MAX_HEADERS: usize = 64;
/// How long an idle keep-alive connection is kept.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// A parsed request head (owned: the read buffer is reused).
#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    query: String,
    http11: bool,
    headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok()).map(str::trim)
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_str(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    fn is_upgrade(&self) -> bool {
        self.method == "GET" && self.has_token("upgrade", "websocket") && self.has_token("connection", "upgrade")
    }

    fn keep_alive(&self) -> bool {
        if self.has_token("connection", "close") {
            return false;
        }
        self.http11 || self.has_token("connection", "keep-alive")
    }
}

/// An HTTP response.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    extra: Vec<(&'static str, String)>,
}

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response { status, content_type: "application/json", body: serde_json::to_vec(v).unwrap_or_default(), extra: Vec::new() }
    }

    fn error(status: u16, text: &str) -> Response {
        Response::json(status, &json!({ "error": text }))
    }

    fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type, body: body.into(), extra: Vec::new() }
    }

    fn encode(&self, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 256);
        out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status)).as_bytes());
        out.extend_from_slice(format!("content-type: {}\r\ncontent-length: {}\r\n", self.content_type, self.body.len()).as_bytes());
        out.extend_from_slice(if keep_alive { b"connection: keep-alive\r\n" } else { b"connection: close\r\n" });
        for (k, v) in &self.extra {
            out.extend_from_slice(format!("{}: {}\r\n", k, v).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Holds a place under `maxclients` (the hub's connection count) until dropped.
struct ConnSlot(Arc<Shared>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections on one sync-port listener until shutdown.
pub async fn accept_loop(shared: Arc<Shared>, sync: Arc<SyncShared>, listener: TcpListener, done: mpsc::Sender<()>) {
    let mut stop = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = crate::hub::stopped(&mut stop) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(serve_conn(shared.clone(), sync.clone(), stream, peer, done.clone()));
            }
            Err(e) => {
                tracing::warn!(cause = %e, "accept failed (sync port)");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What reading a request head gave.
enum Read {
    Head(Head, usize),
    /// The peer closed (or went idle) between requests.
    Gone,
    /// A bad request: answer it and close.
    Bad(Response),
}

async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut, first: bool, limits: &ws::Limits) -> Read {
    let deadline = tokio::time::Instant::now() + if first { limits.handshake_timeout } else { KEEPALIVE_IDLE };
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let target = req.path.unwrap_or("/");
                    let (path, query) = target.split_once('?').unwrap_or((target, ""));
                    let head = Head {
                        method: req.method.unwrap_or("").to_string(),
                        path: path.to_string(),
                        query: query.to_string(),
                        http11: req.version == Some(1),
                        headers: req.headers.iter().map(|h| (h.name.to_string(), h.value.to_vec())).collect(),
                    };
                    return Read::Head(head, len);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD {
                        return Read::Bad(Response::error(431, "request head too large"));
                    }
                }
                Err(httparse::Error::TooManyHeaders) => return Read::Bad(Response::error(431, "too many headers")),
                Err(e) => return Read::Bad(Response::error(400, &format!("bad request: {}", e))),
            }
        }
        buf.reserve(4096);
        match tokio::time::timeout_at(deadline, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Read::Gone,
            Ok(Ok(_)) => {}
            Err(_) if buf.is_empty() && !first => return Read::Gone,
            Err(_) => return Read::Bad(Response::error(408, "request timeout")),
        }
    }
}

/// Serves one connection on the sync port: HTTP requests until it closes, or one upgrade.
async fn serve_conn(shared: Arc<Shared>, sync: Arc<SyncShared>, mut stream: TcpStream, peer: SocketAddr, _done: mpsc::Sender<()>) {
    let _ = stream.set_nodelay(true);
    let open = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
    let _conn = ConnSlot(shared.clone());
    let ip_slot: Option<IpSlot> = if open > shared.knobs.maxclients.load(Ordering::Relaxed) { None } else { sync.acquire_ip(peer.ip()) };
    if ip_slot.is_none() {
        sync.counters.refused_capacity.fetch_add(1, Ordering::Relaxed);
    }
    let mut buf = BytesMut::with_capacity(4096);
    let mut first = true;
    let mut stop = shared.shutdown.subscribe();
    loop {
        let read = tokio::select! {
            r = read_head(&mut stream, &mut buf, first, &sync.limits) => r,
            _ = crate::hub::stopped(&mut stop) => return,
        };
        first = false;
        let (head, len) = match read {
            Read::Head(h, len) => (h, len),
            Read::Gone => return,
            Read::Bad(resp) => {
                let _ = stream.write_all(&resp.encode(false, false)).await;
                return;
            }
        };
        buf.advance(len);
        if head.is_upgrade() {
            upgrade(shared, sync, stream, buf, head, peer, ip_slot.is_some()).await;
            return;
        }
        sync.counters.http_requests.fetch_add(1, Ordering::Relaxed);
        let keep_alive = head.keep_alive() && ip_slot.is_some();
        if ip_slot.is_none() {
            let resp = Response::error(503, "too many connections");
            let _ = stream.write_all(&resp.encode(false, false)).await;
            return;
        }
        let body = match read_body(&mut stream, &mut buf, &head, sync.limits.max_message, sync.limits.handshake_timeout).await {
            Ok(b) => b,
            Err(resp) => {
                let _ = stream.write_all(&resp.encode(false, false)).await;
                return;
            }
        };
        let before = shared.lock_when_idle().await.engine.offset();
        let mut resp = route(&shared, &sync, &head, &body);
        // The response leaves once the writes it follows are persisted (the AOF's gate).
        let after = shared.lock().engine.offset();
        shared.gate.wait(shared.gate.need_after(before, after)).await;
        if let Some(origin) = head.header_str("origin") {
            if origin_allowed(&sync.limits.allowed_origins, Some(origin)) {
                resp.extra.push(("access-control-allow-origin", origin.to_string()));
                resp.extra.push(("vary", "Origin".to_string()));
            }
        }
        if stream.write_all(&resp.encode(keep_alive, head.method == "HEAD")).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads a `content-length` body (chunked bodies are refused with 411).
async fn read_body(stream: &mut TcpStream, buf: &mut BytesMut, head: &Head, max: usize, timeout: Duration) -> Result<Vec<u8>, Response> {
    if head.header("transfer-encoding").is_some() {
        return Err(Response::error(411, "send a content-length body (chunked bodies are not supported)"));
    }
    let len = match head.header_str("content-length") {
        None => 0,
        Some(v) => v.parse::<usize>().map_err(|_| Response::error(400, "bad content-length"))?,
    };
    if len > max {
        return Err(Response::error(413, &format!("body too large (max {} bytes)", max)));
    }
    if len > buf.len() && head.has_token("expect", "100-continue") {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|_| Response::error(400, "closed"))?;
    }
    let fill = async {
        while buf.len() < len {
            buf.reserve(len - buf.len());
            match stream.read_buf(buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    };
    match tokio::time::timeout(timeout, fill).await {
        Ok(true) => Ok(buf.split_to(len).to_vec()),
        Ok(false) => Err(Response::error(400, "connection closed mid-body")),
        Err(_) => Err(Response::error(408, "request timeout")),
    }
}

/// Writes the 101 and hands the socket to [`ws::serve_socket`], or closes it at once
/// with the protocol's code when a limit refuses it.
async fn upgrade(shared: Arc<Shared>, sync: Arc<SyncShared>, mut stream: TcpStream, rest: BytesMut, head: Head, peer: SocketAddr, has_slot: bool) {
    let key = head.header("sec-websocket-key").map(<[u8]>::to_vec);
    let version_ok = head.header_str("sec-websocket-version") == Some("13");
    let Some(key) = key.filter(|_| version_ok) else {
        let mut resp = Response::error(426, "WebSocket version 13 with a Sec-WebSocket-Key is required");
        resp.extra.push(("sec-websocket-version", "13".to_string()));
        let _ = stream.write_all(&resp.encode(false, false)).await;
        return;
    };
    let accept = derive_accept_key(&key);
    let reply = format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {}\r\n\r\n", accept);
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let refusal = if !has_slot {
        Some(Refusal::Capacity)
    } else if !origin_allowed(&sync.limits.allowed_origins, head.header_str("origin")) {
        Some(Refusal::Origin)
    } else {
        None
    };
    ws::serve_socket(shared, sync, stream, rest.to_vec(), peer, refusal).await;
}

/// The token of a request: `Authorization: Bearer <token>`, else the `_token` query
/// parameter, else none (the empty token, enough on an open hub).
fn token_of(head: &Head, query: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    if let Some(v) = head.header_str("authorization") {
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return rest.trim().as_bytes().to_vec();
        }
    }
    query.iter().find(|(k, _)| k == b"_token").map(|(_, v)| v.clone()).unwrap_or_default()
}

fn authenticate(sync: &SyncShared, head: &Head, query: &[(Vec<u8>, Vec<u8>)]) -> Result<Grant, Response> {
    let token = token_of(head, query);
    let st = sync.lock();
    let hub: &SyncHub = &st.hub;
    hub.auth().authenticate(&token, now_ms()).map_err(|e| {
        sync.counters.http_auth_failures.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::error(401, &format!("Unauthorized: invalid token ({})", e.kind()));
        r.extra.push(("www-authenticate", "Bearer".to_string()));
        r
    })
}

fn route(shared: &Shared, sync: &SyncShared, head: &Head, body: &[u8]) -> Response {
    let method = head.method.as_str();
    match (method, head.path.as_str()) {
        ("GET" | "HEAD", "/healthz") => return Response::text(200, "text/plain; charset=utf-8", "ok\n"),
        ("GET" | "HEAD", "/metrics") => {
            return Response::text(200, "text/plain; version=0.0.4; charset=utf-8", crate::metrics::render(shared, sync));
        }
        ("OPTIONS", _) => {
            let mut r = Response::text(204, "text/plain", Vec::new());
            r.extra.push(("access-control-allow-methods", "GET, POST, PUT, OPTIONS".to_string()));
            r.extra.push(("access-control-allow-headers", "authorization, content-type, upstash-encoding".to_string()));
            r.extra.push(("access-control-max-age", "86400".to_string()));
            return r;
        }
        _ => {}
    }
    if !matches!(method, "GET" | "POST" | "PUT") {
        return Response::error(405, "method not allowed");
    }
    if head.path == "/dev/token" {
        // Before authentication: this is where a dev-mode page gets its token. 404 unless
        // the hub runs with --dev (crate::dev).
        let query = api::parse_query(&head.query).unwrap_or_default();
        let user = query.iter().find(|(k, _)| k == b"user").map(|(_, v)| v.as_slice());
        let (status, body) = crate::dev::token_answer(&shared.lock().hub.settings, user, now_ms());
        let mut r = Response::json(status, &body);
        r.extra.push(("cache-control", "no-store".to_string()));
        return r;
    }
    if let Some(origin) = head.header_str("origin") {
        if !origin_allowed(&sync.limits.allowed_origins, Some(origin)) {
            return Response::error(403, "origin not allowed");
        }
    }
    let query = match api::parse_query(&head.query) {
        Ok(q) => q,
        Err(e) => return Response::error(400, &e),
    };
    let grant = match authenticate(sync, head, &query) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let enc = if head.header_str("upstash-encoding").is_some_and(|v| v.eq_ignore_ascii_case("base64")) { Encoding::Base64 } else { Encoding::Utf8 };
    let counters = &sync.counters;
    match (method, head.path.as_str()) {
        ("POST" | "PUT", "/") => {
            let cmd = match parse_json(body).and_then(|v| api::command_from_json(&v)) {
                Ok(c) => c,
                Err(e) => return Response::error(400, &e),
            };
            counters.http_commands.fetch_add(1, Ordering::Relaxed);
            single(shared, &grant, cmd, enc)
        }
        ("POST" | "PUT", "/pipeline") | ("POST" | "PUT", "/multi-exec") => {
            let cmds = match parse_json(body).and_then(|v| api::commands_from_json(&v)) {
                Ok(c) => c,
                Err(e) => return Response::error(400, &e),
            };
            counters.http_commands.fetch_add(cmds.len() as u64, Ordering::Relaxed);
            if head.path == "/pipeline" {
                let replies = api::run_pipeline(shared, &grant, &cmds);
                Response::json(200, &Value::Array(replies.iter().map(|r| api::envelope(r, enc).0).collect()))
            } else {
                match api::run_multi(shared, &grant, &cmds) {
                    Ok(replies) => Response::json(200, &Value::Array(replies.iter().map(|r| api::envelope(r, enc).0).collect())),
                    Err(e) => {
                        let (v, _) = api::envelope(&e, enc);
                        Response::json(400, &v)
                    }
                }
            }
        }
        ("GET", "/") => Response::error(400, "ERR empty command: POST a JSON command array, or use /<command>/<arg>/…"),
        (_, path) => {
            let body = (method != "GET").then_some(body);
            match api::command_from_path(path, &query, body) {
                Ok(cmd) => {
                    counters.http_commands.fetch_add(1, Ordering::Relaxed);
                    single(shared, &grant, cmd, enc)
                }
                Err(e) => Response::error(400, &e),
            }
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("ERR invalid JSON body: {}", e))
}

fn single(shared: &Shared, grant: &Grant, cmd: Vec<bytes::Bytes>, enc: Encoding) -> Response {
    let reply = api::run_pipeline(shared, grant, std::slice::from_ref(&cmd)).pop().unwrap_or(Reply::Nil);
    let (v, is_err) = api::envelope(&reply, enc);
    Response::json(if is_err { 400 } else { 200 }, &v)
}
