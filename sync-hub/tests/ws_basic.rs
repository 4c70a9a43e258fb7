//! The sync port (6380) against an embedded hub: HTTP (`/healthz`, `/metrics`, the command
//! API with bearer tokens and scopes) and the WebSocket sync basics with raw RESP3 frames
//! (HELLO, SUB full, a RESP write reaching a socket, a socket write acked, visible to RESP,
//! waking a blocked RESP client, and the limits' close codes). The large suites
//! (convergence, resume, slow consumers, hostile input at scale) live elsewhere.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use recached_engine::resp::{encode_command, parse, Frame, Limits};
use recached_hub::{Server, Settings};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

const WAIT: Duration = Duration::from_secs(5);

struct Hub {
    resp: SocketAddr,
    ws: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(configure: impl FnOnce(&mut Settings)) -> Hub {
    let mut settings = Settings { port: 0, ws_port: 0, ..Settings::default() };
    configure(&mut settings);
    let mut server = Server::bind(settings).await.expect("bind");
    let ws_port = server.bind_ws().await.expect("bind ws");
    let resp = server.local_addrs()[0];
    let ws = SocketAddr::new(resp.ip(), ws_port);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    Hub { resp, ws, _stop: tx }
}

fn cmd(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_command(args, &mut out);
    out
}

// ---------------------------------------------------------------- HTTP

/// One HTTP request on a fresh connection; returns status, headers (lower-case) and body.
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.expect("http timeout").unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&out[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, out[split + 4..].to_vec())
}

async fn post_json(addr: SocketAddr, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    let (status, _, body) = http(addr, "POST", path, &headers, body.to_string().as_bytes()).await;
    (status, serde_json::from_slice(&body).unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&body))))
}

#[tokio::test]
async fn healthz_and_metrics() {
    let hub = start(|_| {}).await;
    let (status, _, body) = http(hub.ws, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
    post_json(hub.ws, "/", None, json!(["SET", "k", "v"])).await;
    let (status, head, body) = http(hub.ws, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
    let text = String::from_utf8(body).unwrap();
    for name in [
        "recached_connections ",
        "recached_commands_total ",
        "recached_sync_sockets 0",
        "recached_sync_subscribers 0",
        "recached_sync_backlog_bytes ",
        // No sync client has connected yet, so the backlog holds nothing (sync-backlog-ttl).
        "recached_sync_backlog_groups 0",
        "recached_sync_offset 1",
        "recached_sync_fanout_lag_seconds_bucket{le=\"+Inf\"}",
        "recached_expired_keys_total 0",
        "recached_evicted_keys_total 0",
        "recached_memory_used_bytes ",
        "recached_keys{db=\"0\"} 1",
        "recached_http_commands_total 1",
    ] {
        assert!(text.contains(name), "missing {name:?} in\n{text}");
    }
    let (status, _, _) = http(hub.ws, "GET", "/nosuch/thing/x/y", &[], b"").await;
    assert_eq!(status, 400, "an unknown command in path form is a command error");
    let (status, _, _) = http(hub.ws, "DELETE", "/", &[], b"").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn http_command_api() {
    let hub = start(|_| {}).await;
    let ws = hub.ws;
    assert_eq!(post_json(ws, "/", None, json!(["SET", "k", "hello", "EX", 100])).await, (200, json!({"result": "OK"})));
    assert_eq!(post_json(ws, "/", None, json!(["GET", "k"])).await, (200, json!({"result": "hello"})));
    assert_eq!(post_json(ws, "/", None, json!(["GET", "missing"])).await, (200, json!({"result": null})));
    assert_eq!(post_json(ws, "/", None, json!(["INCRBY", "n", 5])).await, (200, json!({"result": 5})));
    assert_eq!(
        post_json(ws, "/", None, json!(["LPUSH", "k", "x"])).await,
        (400, json!({"error": "WRONGTYPE Operation against a key holding the wrong kind of value"}))
    );
    assert_eq!(post_json(ws, "/", None, json!(["HSET", "h", "f", "v", "g", "w"])).await, (200, json!({"result": 2})));
    assert_eq!(post_json(ws, "/", None, json!(["HGETALL", "h"])).await, (200, json!({"result": ["f", "v", "g", "w"]})));
    assert_eq!(post_json(ws, "/", None, json!(["NOSUCH"])).await.0, 400);
    assert_eq!(post_json(ws, "/", None, json!([])).await.0, 400);
    assert_eq!(post_json(ws, "/", None, json!({"cmd": "GET"})).await.0, 400);
    // Admin and connection commands are refused, as on a sync socket.
    let (status, v) = post_json(ws, "/", None, json!(["CONFIG", "GET", "*"])).await;
    assert_eq!((status, v), (400, json!({"error": "NOPERM this user has no permissions to run the 'config' command"})));
    assert_eq!(post_json(ws, "/", None, json!(["SELECT", 1])).await.0, 400);

    // Path form, body as the last argument, query parameters appended.
    let (status, _, body) = http(ws, "GET", "/set/p%2Fk/v1/EX/100", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"result":"OK"}"#[..]));
    let (_, _, body) = http(ws, "GET", "/get/p%2Fk", &[], b"").await;
    assert_eq!(body, br#"{"result":"v1"}"#);
    let (status, _, _) = http(ws, "POST", "/set/bin?EX=100", &[], b"\x00\xffraw").await;
    assert_eq!(status, 200);
    let (_, _, body) = http(ws, "GET", "/ttl/bin", &[], b"").await;
    assert_eq!(body, br#"{"result":100}"#);
    // Upstash-Encoding: base64 for binary-unsafe values; OK stays as is.
    let (_, _, body) = http(ws, "GET", "/get/bin", &[("upstash-encoding", "base64")], b"").await;
    assert_eq!(body, br#"{"result":"AP9yYXc="}"#);
    let (_, _, body) = http(ws, "GET", "/set/b64/x", &[("upstash-encoding", "base64")], b"").await;
    assert_eq!(body, br#"{"result":"OK"}"#);
    let (_, _, body) = http(ws, "GET", "/get/bin", &[], b"").await;
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), json!({"result": "\u{0}\u{fffd}raw"}));

    // Pipeline: one result per command, errors in place.
    let (status, v) = post_json(ws, "/pipeline", None, json!([["SET", "a", 1], ["INCR", "a"], ["LPUSH", "a", "x"], ["GET", "a"]])).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!([{"result": "OK"}, {"result": 2}, {"error": "WRONGTYPE Operation against a key holding the wrong kind of value"}, {"result": "2"}])
    );
    // Multi-exec: atomic, EXEC's replies; a queue-time error aborts everything.
    let (status, v) = post_json(ws, "/multi-exec", None, json!([["SET", "t", 1], ["INCR", "t"], ["GET", "t"]])).await;
    assert_eq!((status, v), (200, json!([{"result": "OK"}, {"result": 2}, {"result": "2"}])));
    let (status, v) = post_json(ws, "/multi-exec", None, json!([["SET", "t", 10], ["NOSUCH"]])).await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap().starts_with("EXECABORT"), "{v}");
    assert_eq!(post_json(ws, "/", None, json!(["GET", "t"])).await.1, json!({"result": "2"}), "nothing ran");
    assert_eq!(post_json(ws, "/multi-exec", None, json!([["MULTI"]])).await.0, 400);
    // Blocking commands answer at once.
    assert_eq!(post_json(ws, "/", None, json!(["BLPOP", "nolist", 0])).await, (200, json!({"result": null})));

    // Keep-alive: two requests on one connection.
    let mut s = TcpStream::connect(ws).await.unwrap();
    s.write_all(b"GET /get/a HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await.unwrap().unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert!(out.contains(r#"{"result":"2"}"#) && out.ends_with("ok\n"), "{out}");
}

#[tokio::test]
async fn http_tokens_and_scopes() {
    let hub = start(|s| {
        s.set("sync-secret", "s3cret").unwrap();
        s.set("sync-token", "user1tok:read=user:1:*,pub:*;write=user:1:*;sub=alice").unwrap();
        s.set("sync-token", "admintok:read=*;write=*").unwrap();
    })
    .await;
    let ws = hub.ws;
    // No token, a wrong token, a JWT signed with another secret.
    let (status, v) = post_json(ws, "/", None, json!(["GET", "user:1:a"])).await;
    assert_eq!(status, 401, "{v}");
    assert_eq!(post_json(ws, "/", Some("nope"), json!(["GET", "user:1:a"])).await.0, 401);
    let claims = recached_engine::sync::Claims { sub: "x".into(), exp: 4_000_000_000, read: vec!["*".into()], write: vec!["*".into()] };
    let forged = recached_engine::sync::token::mint(&claims, b"other");
    let (status, v) = post_json(ws, "/", Some(&forged), json!(["GET", "k"])).await;
    assert_eq!((status, v), (401, json!({"error": "Unauthorized: invalid token (bad signature)"})));
    let (status, head, _) = http(ws, "GET", "/get/k", &[], b"").await;
    assert!(status == 401 && head.contains("www-authenticate: bearer"), "{head}");

    // Scope: reads and writes inside are fine, outside is NOPERM, never data.
    assert_eq!(post_json(ws, "/", Some("admintok"), json!(["SET", "secret:1", "x"])).await.0, 200);
    assert_eq!(post_json(ws, "/", Some("user1tok"), json!(["SET", "user:1:a", "mine"])).await, (200, json!({"result": "OK"})));
    assert_eq!(post_json(ws, "/", Some("user1tok"), json!(["GET", "user:1:a"])).await, (200, json!({"result": "mine"})));
    let noperm = json!({"error": "NOPERM this user has no permissions to access one of the keys used as arguments"});
    assert_eq!(post_json(ws, "/", Some("user1tok"), json!(["GET", "secret:1"])).await, (400, noperm.clone()));
    assert_eq!(post_json(ws, "/", Some("user1tok"), json!(["SET", "pub:x", "y"])).await, (400, noperm.clone()), "read-only pattern");
    assert_eq!(post_json(ws, "/", Some("user1tok"), json!(["RENAME", "user:1:a", "secret:2"])).await, (400, noperm.clone()));
    let (status, v) = post_json(ws, "/", Some("user1tok"), json!(["KEYS", "*"])).await;
    assert_eq!(status, 400, "keyless reads need an unrestricted scope: {v}");
    let (status, v) = post_json(ws, "/pipeline", Some("user1tok"), json!([["GET", "user:1:a"], ["GET", "secret:1"]])).await;
    assert_eq!((status, v), (200, json!([{"result": "mine"}, noperm.clone()])));
    let (status, v) = post_json(ws, "/multi-exec", Some("user1tok"), json!([["SET", "user:1:b", "1"], ["DEL", "secret:1"]])).await;
    assert_eq!((status, v), (400, noperm.clone()));
    assert_eq!(post_json(ws, "/", Some("admintok"), json!(["EXISTS", "user:1:b", "secret:1"])).await.1, json!({"result": 1}), "nothing ran");
    // The `_token` query parameter works too.
    let (status, _, body) = http(ws, "GET", "/get/user:1:a?_token=user1tok", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &br#"{"result":"mine"}"#[..]));

    // A JWT minted over RESP (admin command) works on the HTTP API.
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    r.write_all(&cmd(&["RECACHED.TOKEN", "bob", "60", "READ", "1", "user:2:*", "WRITE", "1", "user:2:*"])).await.unwrap();
    let token = read_bulk(&mut r).await;
    assert_eq!(post_json(ws, "/", Some(&token), json!(["SET", "user:2:x", "1"])).await.0, 200);
    assert_eq!(post_json(ws, "/", Some(&token), json!(["GET", "user:1:a"])).await, (400, noperm));
    // …but the admin command itself is refused on the HTTP API.
    let (status, v) = post_json(ws, "/", Some("admintok"), json!(["RECACHED.TOKEN", "x", "60"])).await;
    assert_eq!((status, v), (400, json!({"error": "NOPERM this user has no permissions to run the 'recached.token' command"})));
}

async fn read_bulk(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    loop {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        if let Some((f, _)) = parse(&buf, &Limits::default()).unwrap() {
            match f {
                Frame::Bulk(b) => return String::from_utf8(b.to_vec()).unwrap(),
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn recached_token_is_admin_only() {
    let hub = start(|s| {
        s.set("requirepass", "pw").unwrap();
        s.set("sync-secret", "k").unwrap();
    })
    .await;
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    r.write_all(&cmd(&["RECACHED.TOKEN", "a", "60"])).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, r.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"-NOAUTH Authentication required.\r\n");
    r.write_all(&cmd(&["AUTH", "pw"])).await.unwrap();
    let n = tokio::time::timeout(WAIT, r.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"+OK\r\n");
    r.write_all(&cmd(&["RECACHED.TOKEN", "a", "60", "READ", "1", "*"])).await.unwrap();
    let token = read_bulk(&mut r).await;
    let claims = recached_engine::sync::token::verify(token.as_bytes(), b"k", 0).unwrap();
    assert_eq!((claims.sub.as_str(), claims.read.as_slice()), ("a", &["*".to_string()][..]));
}

// ---------------------------------------------------------------- WebSocket

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Ws {
    s: Socket,
    frames: std::collections::VecDeque<Frame>,
}

impl Ws {
    async fn open(addr: SocketAddr) -> Ws {
        Ws::open_with(addr, &[]).await
    }

    async fn open_with(addr: SocketAddr, headers: &[(&'static str, &str)]) -> Ws {
        let mut req = format!("ws://{addr}/").into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(*k, v.parse().unwrap());
        }
        let (s, resp) = tokio::time::timeout(WAIT, connect_async(req)).await.expect("connect timeout").expect("connect");
        assert_eq!(resp.status(), 101);
        Ws { s, frames: Default::default() }
    }

    async fn send(&mut self, cmds: &[&[&str]]) {
        let mut msg = Vec::new();
        for c in cmds {
            encode_command(c, &mut msg);
        }
        self.s.send(Message::Binary(msg.into())).await.unwrap();
    }

    /// The next frame (reply or push).
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return f;
            }
            match tokio::time::timeout(WAIT, self.s.next()).await.expect("frame timeout") {
                Some(Ok(Message::Binary(data))) => {
                    let mut pos = 0;
                    while pos < data.len() {
                        let (f, used) = parse(&data[pos..], &Limits::default()).unwrap().expect("whole frames per message");
                        self.frames.push_back(f);
                        pos += used;
                    }
                }
                other => panic!("expected a binary message, got {other:?}"),
            }
        }
    }

    /// Reads until the hub closes; returns the close code and reason.
    async fn closed(&mut self) -> (u16, String) {
        loop {
            match tokio::time::timeout(WAIT, self.s.next()).await.expect("close timeout") {
                Some(Ok(Message::Close(Some(f)))) => return (u16::from(f.code), f.reason.to_string()),
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error before the close frame: {e}"),
            }
        }
    }

    async fn hello(&mut self, token: &str) -> Frame {
        self.send(&[&["SYNC.HELLO", "1", token, "test-client"]]).await;
        self.frame().await
    }
}

fn map_get<'a>(f: &'a Frame, key: &str) -> &'a Frame {
    let Frame::Map(pairs) = f else { panic!("not a map: {f:?}") };
    &pairs.iter().find(|(k, _)| matches!(k, Frame::Bulk(b) if b == key.as_bytes())).unwrap_or_else(|| panic!("no {key} in {f:?}")).1
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn push_name(f: &Frame) -> String {
    match f {
        Frame::Push(items) => match &items[0] {
            Frame::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{other:?}"),
        },
        other => panic!("not a push: {other:?}"),
    }
}

async fn resp_cmd(s: &mut TcpStream, args: &[&str]) -> Frame {
    s.write_all(&cmd(args)).await.unwrap();
    resp_read(s).await
}

/// Reads one reply (or push) frame. Frames here are read one at a time, so a read never
/// holds the start of the next one.
async fn resp_read(s: &mut TcpStream) -> Frame {
    let mut buf = Vec::new();
    loop {
        if let Some((f, _)) = parse(&buf, &Limits::default()).unwrap() {
            return f;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk)).await.expect("resp timeout").unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn sync_hello_subscribe_fanout_and_writes() {
    let hub = start(|s| s.set("notify-keyspace-events", "KEA").unwrap()).await;
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    assert_eq!(resp_cmd(&mut r, &["SET", "user:1:name", "ann"]).await, Frame::Simple("OK".into()));
    assert_eq!(resp_cmd(&mut r, &["SET", "other", "x"]).await, Frame::Simple("OK".into()));

    let mut c = Ws::open(hub.ws).await;
    // Before HELLO every command is NOAUTH.
    c.send(&[&["GET", "k"]]).await;
    assert_eq!(c.frame().await, Frame::Error("NOAUTH Authentication required.".into()));
    let hello = c.hello("").await;
    assert_eq!(map_get(&hello, "proto"), &Frame::Int(1));
    assert_eq!(map_get(&hello, "hub"), &bulk("recached"));
    assert_eq!(map_get(&hello, "offset"), &Frame::Int(2));
    assert_eq!(map_get(&hello, "maxmsg"), &Frame::Int(1 << 20));
    let Frame::Int(time) = map_get(&hello, "time") else { panic!() };
    assert!((*time as u64).abs_diff(recached_hub::hub::now_ms()) < 5_000);

    // SUB without FROM: full snapshot of the matching keys, then live.
    c.send(&[&["SYNC.SUB", "1", "user:1:*"]]).await;
    let sub = c.frame().await;
    assert_eq!(map_get(&sub, "mode"), &bulk("full"));
    assert_eq!(map_get(&sub, "keys"), &Frame::Int(1));
    let snap = c.frame().await;
    assert_eq!(push_name(&snap), "sync.snap");
    let Frame::Push(items) = &snap else { unreachable!() };
    assert_eq!(items[2], Frame::Array(vec![Frame::Array(vec![bulk("user:1:name"), bulk("string"), Frame::Int(0), bulk("ann")])]));
    assert_eq!(c.frame().await, Frame::Push(vec![bulk("sync.live"), Frame::Int(2)]));

    // A RESP write to a subscribed key reaches the socket; others do not.
    resp_cmd(&mut r, &["SET", "other", "y"]).await;
    resp_cmd(&mut r, &["HSET", "user:1:h", "f", "v"]).await;
    let ch = c.frame().await;
    assert_eq!(ch, Frame::Push(vec![bulk("sync.change"), Frame::Int(4), bulk("HSET"), bulk("user:1:h"), bulk("f"), bulk("v")]));

    // A socket write: acked with its offset and changes, not echoed, visible over RESP,
    // and producing keyspace notifications and waking a blocked RESP client.
    let mut sub_conn = TcpStream::connect(hub.resp).await.unwrap();
    resp_cmd(&mut sub_conn, &["SUBSCRIBE", "__keyspace@0__:user:1:list"]).await;
    let mut blocked = TcpStream::connect(hub.resp).await.unwrap();
    blocked.write_all(&cmd(&["BLPOP", "user:1:list", "5"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.send(&[&["SYNC.W", "1", "SET", "user:1:name", "bea"], &["SYNC.W", "2", "RPUSH", "user:1:list", "a", "b"]]).await;
    let ack1 = c.frame().await;
    assert_eq!(
        ack1,
        Frame::Array(vec![Frame::Int(1), Frame::Int(5), Frame::Simple("OK".into()), Frame::Array(vec![Frame::Array(vec![bulk("SET"), bulk("user:1:name"), bulk("bea")])])])
    );
    let ack2 = c.frame().await;
    let Frame::Array(parts) = &ack2 else { panic!("{ack2:?}") };
    assert_eq!(&parts[..3], &[Frame::Int(2), Frame::Int(6), Frame::Int(2)]);
    assert_eq!(resp_cmd(&mut r, &["GET", "user:1:name"]).await, bulk("bea"));
    let popped = resp_read(&mut blocked).await;
    assert_eq!(popped, Frame::Array(vec![bulk("user:1:list"), bulk("a")]), "BLPOP woken by the socket's write");
    let note = resp_read(&mut sub_conn).await;
    assert_eq!(note, Frame::Array(vec![bulk("message"), bulk("__keyspace@0__:user:1:list"), bulk("rpush")]));
    // The blocked client's pop (its own group) is pushed to the subscriber; the writer's
    // own groups never were.
    let next = c.frame().await;
    assert_eq!(next, Frame::Push(vec![bulk("sync.change"), Frame::Int(7), bulk("LPOP"), bulk("user:1:list"), bulk("1")]));

    // A resent write is not run again.
    c.send(&[&["SYNC.W", "1", "SET", "user:1:name", "zed"]]).await;
    let dup = c.frame().await;
    assert_eq!(dup, Frame::Array(vec![Frame::Int(1), Frame::Int(5), Frame::Simple("OK".into()), Frame::Array(vec![])]));
    assert_eq!(resp_cmd(&mut r, &["GET", "user:1:name"]).await, bulk("bea"));

    // A second socket sees the first one's write as a change.
    let mut d = Ws::open(hub.ws).await;
    d.hello("").await;
    d.send(&[&["SYNC.SUB", "1", "user:1:name", "FROM", "nope", "0"]]).await;
    assert_eq!(map_get(&d.frame().await, "mode"), &bulk("full"));
    assert_eq!(push_name(&d.frame().await), "sync.snap");
    assert_eq!(push_name(&d.frame().await), "sync.live");
    c.send(&[&["SYNC.W", "3", "SET", "user:1:name", "cy"]]).await;
    assert_eq!(c.frame().await.clone(), Frame::Array(vec![Frame::Int(3), Frame::Int(8), Frame::Simple("OK".into()), Frame::Array(vec![Frame::Array(vec![bulk("SET"), bulk("user:1:name"), bulk("cy")])])]));
    assert_eq!(d.frame().await, Frame::Push(vec![bulk("sync.change"), Frame::Int(8), bulk("SET"), bulk("user:1:name"), bulk("cy")]));

    // Plain commands work as over TCP (RESP3 replies); admin ones are refused.
    c.send(&[&["HGETALL", "user:1:h"], &["CONFIG", "GET", "*"], &["INFO"]]).await;
    assert_eq!(c.frame().await, Frame::Map(vec![(bulk("f"), bulk("v"))]));
    assert_eq!(c.frame().await, Frame::Error("NOPERM this user has no permissions to run the 'config' command".into()));
    assert!(matches!(c.frame().await, Frame::Verbatim(_) | Frame::Bulk(_)), "INFO with an unrestricted (open) grant");

    // Metrics see the sockets.
    let (_, _, body) = http(hub.ws, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("recached_sync_sockets 2") && text.contains("recached_sync_subscribers 2"), "{text}");
    assert!(text.contains("recached_sync_writes_total 3") && text.contains("recached_sync_duplicate_writes_total 1"), "{text}");
}

#[tokio::test]
async fn sync_tokens_and_scopes() {
    let hub = start(|s| {
        s.set("sync-secret", "k").unwrap();
        s.set("sync-token", "u1:read=user:1:*;write=user:1:*").unwrap();
    })
    .await;
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    resp_cmd(&mut r, &["SET", "user:2:x", "secret"]).await;

    let mut c = Ws::open(hub.ws).await;
    let hello = c.hello("u1").await;
    assert_eq!(map_get(&hello, "read"), &Frame::Array(vec![bulk("user:1:*")]));
    c.send(&[&["SYNC.SUB", "1", "user:*"]]).await;
    assert_eq!(c.frame().await, Frame::Error("NOPERM this user has no permissions to access one of the patterns used as arguments".into()));
    c.send(&[&["GET", "user:2:x"], &["SYNC.W", "1", "SET", "user:2:x", "mine"]]).await;
    let noperm = Frame::Error("NOPERM this user has no permissions to access one of the keys used as arguments".into());
    assert_eq!(c.frame().await, noperm);
    let Frame::Array(ack) = c.frame().await else { panic!() };
    assert_eq!(ack[2], noperm);
    c.send(&[&["RECACHED.TOKEN", "x", "1"]]).await;
    assert_eq!(c.frame().await, Frame::Error("NOPERM this user has no permissions to run the 'recached.token' command".into()));

    // Bad, forged and expired tokens: WRONGPASS, then 4001.
    for (token, kind) in [
        ("nope".to_string(), "unknown token"),
        (
            recached_engine::sync::token::mint(
                &recached_engine::sync::Claims { sub: "x".into(), exp: 4_000_000_000, read: vec!["*".into()], write: vec![] },
                b"wrong",
            ),
            "bad signature",
        ),
        (
            recached_engine::sync::token::mint(&recached_engine::sync::Claims { sub: "x".into(), exp: 1, read: vec!["*".into()], write: vec![] }, b"k"),
            "expired",
        ),
    ] {
        let mut c = Ws::open(hub.ws).await;
        assert_eq!(c.hello(&token).await, Frame::Error(format!("WRONGPASS invalid token ({kind})").into()));
        assert_eq!(c.closed().await, (4001, format!("auth failed: {kind}")));
    }
}

/// Drops a closed socket and gives the hub a moment to release its place under the cap.
async fn gone(ws: Ws) {
    drop(ws);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn sync_limits_close_codes() {
    let hub = start(|s| {
        s.set("sync-allowed-origins", "https://app.example").unwrap();
        s.set("sync-max-message", "4kb").unwrap();
        s.set("sync-handshake-timeout", "300").unwrap();
        s.set("sync-max-sockets-per-ip", "3").unwrap();
    })
    .await;
    // Origin: the listed one is fine (any case), others are closed with 4004.
    let mut ok = Ws::open_with(hub.ws, &[("origin", "HTTPS://app.example")]).await;
    ok.hello("").await;
    let mut bad = Ws::open_with(hub.ws, &[("origin", "https://evil.example")]).await;
    assert_eq!(bad.closed().await, (4004, "origin not allowed".into()));
    gone(bad).await;
    // Text messages: 1003.
    let mut t = Ws::open(hub.ws).await;
    t.s.send(Message::Text("PING".into())).await.unwrap();
    assert_eq!(t.closed().await, (1003, "binary messages only".into()));
    gone(t).await;
    // Over maxmsg: 1009.
    let mut big = Ws::open(hub.ws).await;
    big.s.send(Message::Binary(vec![b'*'; 5000].into())).await.unwrap();
    assert_eq!(big.closed().await, (1009, "message too big (max 4096 bytes)".into()));
    gone(big).await;
    // Garbage: 4000 after the error reply.
    let mut g = Ws::open(hub.ws).await;
    g.hello("").await;
    g.s.send(Message::Binary(b"*1\r\n$x\r\n".to_vec().into())).await.unwrap();
    assert!(matches!(g.frame().await, Frame::Error(_)));
    assert_eq!(g.closed().await.0, 4000);
    gone(g).await;
    // No HELLO in time: 4002.
    let mut slow = Ws::open(hub.ws).await;
    assert_eq!(slow.closed().await, (4002, "handshake timeout".into()));
    gone(slow).await;
    // Per-IP cap (3, `ok` holds one; closed sockets gave theirs back): the fourth gets 1013.
    let mut _a = Ws::open(hub.ws).await;
    _a.hello("").await;
    let mut _b = Ws::open(hub.ws).await;
    _b.hello("").await;
    let mut over = Ws::open(hub.ws).await;
    assert_eq!(over.closed().await, (1013, "too many connections".into()));
    // HTTP on the same port is refused too while the IP is at its cap.
    let (status, _, _) = http(hub.ws, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 503);
    // An HTTP request from a disallowed origin is refused; an allowed one gets CORS.
    drop(_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = http(hub.ws, "GET", "/get/x", &[("origin", "https://evil.example")], b"").await;
    assert_eq!(status, 403);
    let (status, head, _) = http(hub.ws, "GET", "/get/x", &[("origin", "https://app.example")], b"").await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://app.example"), "{head}");
}

#[tokio::test]
async fn slow_consumer_is_closed_with_4008() {
    let hub = start(|s| s.set("sync-max-buffer", "64kb").unwrap()).await;
    let mut c = Ws::open(hub.ws).await;
    c.hello("").await;
    c.send(&[&["SYNC.SUB", "1", "*"]]).await;
    assert_eq!(map_get(&c.frame().await, "mode"), &bulk("full"));
    assert_eq!(push_name(&c.frame().await), "sync.live");
    // Stop reading while a RESP client writes 32 MB of changes (more than the socket
    // buffers on both sides hold).
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    let value = "v".repeat(8 * 1024);
    let mut input = Vec::new();
    for i in 0..4000 {
        input.extend_from_slice(&cmd(&["SET", &format!("k{}", i % 50), &value]));
    }
    r.write_all(&input).await.unwrap();
    let mut replies = vec![0u8; 4000 * 5];
    tokio::time::timeout(Duration::from_secs(30), r.read_exact(&mut replies)).await.unwrap().unwrap();
    // Reading again: whatever was in flight, then the close.
    let (code, reason) = c.closed().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer: outbound buffer over 65536 bytes"));
    let (_, _, body) = http(hub.ws, "GET", "/metrics", &[], b"").await;
    assert!(String::from_utf8(body).unwrap().contains("recached_sync_slow_consumers_total 1"));
}

#[tokio::test]
async fn ws_port_zero_reports_the_port() {
    let hub = start(|_| {}).await;
    assert_ne!(hub.ws.port(), 0);
    assert_ne!(hub.ws.port(), hub.resp.port());
}

/// Snapshots are what a subscription needs to be whole: one larger than the push bound is
/// delivered, both as the SUB reply and in-band after SWAPDB (`catch_up`), not closed as
/// a slow consumer (which would loop: reconnect, snapshot, close).
#[tokio::test]
async fn snapshots_larger_than_the_push_bound_are_delivered() {
    let hub = start(|s| s.set("sync-max-buffer", "4kb").unwrap()).await;
    let mut r = TcpStream::connect(hub.resp).await.unwrap();
    let value = "x".repeat(1000);
    for i in 0..20 {
        resp_cmd(&mut r, &["SET", &format!("a{i}"), &value]).await;
    }
    let mut c = Ws::open(hub.ws).await;
    c.hello("").await;
    c.send(&[&["SYNC.SUB", "1", "*"]]).await;
    assert_eq!(map_get(&c.frame().await, "keys"), &Frame::Int(20));
    let mut keys = 0;
    loop {
        let f = c.frame().await;
        match push_name(&f).as_str() {
            "sync.snap" => {
                let Frame::Push(items) = &f else { unreachable!() };
                let Frame::Array(entries) = &items[2] else { panic!() };
                keys += entries.len();
            }
            "sync.live" => break,
            other => panic!("{other}"),
        }
    }
    assert_eq!(keys, 20);
    // Database 1 gets 30 KB, then SWAPDB brings it to database 0: an in-band full resync.
    resp_cmd(&mut r, &["SELECT", "1"]).await;
    for i in 0..30 {
        resp_cmd(&mut r, &["SET", &format!("b{i}"), &value]).await;
    }
    resp_cmd(&mut r, &["SWAPDB", "0", "1"]).await;
    let full = c.frame().await;
    assert_eq!(push_name(&full), "sync.full");
    let mut keys = 0;
    loop {
        let f = c.frame().await;
        match push_name(&f).as_str() {
            "sync.snap" => {
                let Frame::Push(items) = &f else { unreachable!() };
                let Frame::Array(entries) = &items[2] else { panic!() };
                keys += entries.len();
            }
            "sync.live" => break,
            other => panic!("{other}"),
        }
    }
    assert_eq!(keys, 30);
    // Still open: a later change arrives.
    resp_cmd(&mut r, &["SELECT", "0"]).await;
    resp_cmd(&mut r, &["SET", "after", "1"]).await;
    assert_eq!(push_name(&c.frame().await), "sync.change");
}
