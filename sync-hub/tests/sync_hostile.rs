//! Hostile input on the sync port, against a real hub: garbage and cut RESP frames,
//! non-command frames, text messages, oversize messages, broken WebSocket framing and
//! non-WebSocket bytes, bad / malformed / expired / wrong-secret / `alg: none` tokens, bad
//! HELLO versions and client ids, no HELLO within the handshake timeout, a token expiring
//! while connected. Each gets the error and close code `docs/protocol.md` documents, the
//! hub keeps serving, and nothing leaks: after a flood of such connections the hub's open
//! descriptors return to their level and its RSS stays put.

mod sync_support;

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use recached_engine::resp::Frame;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::raw::{host_port, Incoming, RawWs};
use sync_support::{b, cmd, loud, mint_token, now_ms, show, Hub, HubOpts, IO_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(5);

fn err(f: &Result<Frame, Incoming>) -> String {
    match f {
        Ok(Frame::Error(e)) => String::from_utf8_lossy(e).into_owned(),
        other => format!("not an error: {other:?}"),
    }
}

async fn expect_close(ws: &mut RawWs, code: u16, reason_prefix: &str, what: &str) {
    match ws.closed(WAIT).await {
        Incoming::Close(c, r) => {
            assert_eq!(c, code, "{what}: closed with {c} {r:?}, want {code}");
            assert!(r.starts_with(reason_prefix), "{what}: close reason {r:?}, want {reason_prefix:?}…");
            assert!(r.len() <= 123, "{what}: close reason over 123 bytes");
        }
        other => panic!("{what}: want close {code}, got {other:?}"),
    }
}

/// The hub still serves: a backend answers and a sync client goes live and gets a change.
async fn assert_serving(hub: &mut Hub) {
    assert!(hub.alive(), "hub died; output:\n{}", hub.output.text());
    let mut be = hub.backend().await;
    assert_eq!(show(&be.cmd(&["PING"]).await), "+PONG");
    let tok = hub.admin_token();
    let c = TestClient::live(&hub.ws_url, ClientOpts::new("still-serving", &tok, &["alive:*"])).await;
    be.cmd(&["SET", "alive:k", "1"]).await;
    assert!(sync_support::eventually(IO_TIMEOUT, || c.state().contains_key(&b("alive:k"))).await, "no change delivered: {}", c.describe());
}

fn hello(token: &str, id: &str) -> Vec<Bytes> {
    vec![b("SYNC.HELLO"), b("1"), b(token), b(id)]
}

async fn token_refused(hub: &Hub, token: &str, kind: &str) {
    let mut ws = RawWs::connect(&hub.ws_url).await;
    let r = ws.hello(token, "hostile").await;
    assert_eq!(err(&r), format!("WRONGPASS invalid token ({kind})"), "token {:?}", &token[..token.len().min(60)]);
    expect_close(&mut ws, 4001, &format!("auth failed: {kind}"), kind).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens() {
    let Some(mut hub) = Hub::start_or_skip("refused_tokens", HubOpts::new()) else { return };
    let secret = hub.secret.clone().expect("a secret");
    token_refused(&hub, "not-a-jwt", "unknown token").await;
    token_refused(&hub, "", "unknown token").await;
    token_refused(&hub, "a.b.c", "malformed").await;
    token_refused(&hub, &mint_token(&secret, "late", &["*"], &["*"], now_ms() - 60_000), "expired").await;
    token_refused(&hub, &mint_token(b"another-secret", "mallory", &["*"], &["*"], now_ms() + 60_000), "bad signature").await;
    // A valid token with its payload swapped for a wider one.
    let good = mint_token(&secret, "eve", &["eve:*"], &["eve:*"], now_ms() + 60_000);
    let wide = mint_token(&secret, "eve", &["*"], &["*"], now_ms() + 60_000);
    let (g, w): (Vec<&str>, Vec<&str>) = (good.split('.').collect(), wide.split('.').collect());
    token_refused(&hub, &format!("{}.{}.{}", g[0], w[1], g[2]), "bad signature").await;
    // alg: none.
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&format!(r#"{{"sub":"x","exp":{},"read":["*"],"write":["*"]}}"#, now_ms() / 1000 + 60)));
    token_refused(&hub, &none, "malformed").await;
    // Too long.
    token_refused(&hub, &format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c"), "malformed").await;

    // A token that expires while connected: closed with 4003.
    let short = mint_token(&secret, "brief", &["*"], &["*"], now_ms() + 1500);
    let c = TestClient::live(&hub.ws_url, ClientOpts::new("brief", &short, &["x:*"])).await;
    let code = c.wait_closed(Duration::from_secs(6)).await;
    assert_eq!(code, Some(4003), "token expiry: {}", c.describe());
    assert_eq!(c.st().closes.last().map(|c| c.1.clone()).as_deref(), Some("token expired"));
    assert_serving(&mut hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_and_messages() {
    let Some(mut hub) = Hub::start_or_skip("bad_frames_and_messages", HubOpts::new()) else { return };
    let tok = hub.admin_token();

    // Before HELLO: commands get NOAUTH and the socket stays open.
    let mut ws = RawWs::connect(&hub.ws_url).await;
    ws.send_cmds(&[cmd(&["PING"]), cmd(&["GET", "k"])]).await.expect("send");
    for _ in 0..2 {
        assert_eq!(err(&ws.reply(WAIT).await), "NOAUTH Authentication required.");
    }
    let r = ws.hello(&tok, "late-hello").await;
    assert!(matches!(r, Ok(Frame::Map(_))), "HELLO after NOAUTH: {r:?}");
    let maxmsg = match &r {
        Ok(Frame::Map(pairs)) => pairs.iter().find(|(k, _)| k.as_bytes().map(|x| x.as_ref()) == Some(b"maxmsg")).and_then(|(_, v)| sync_support::int(v)),
        _ => None,
    }
    .expect("maxmsg in the HELLO reply") as usize;
    // A second HELLO.
    assert_eq!(err(&ws.hello(&tok, "late-hello").await), "ERR SYNC already authenticated");
    // Oversize: one byte over maxmsg.
    let mut big = cmd(&["SET", "k"]);
    big.push(Bytes::from(vec![b'x'; maxmsg]));
    let mut bytes = Vec::new();
    recached_engine::resp::encode_command(&big, &mut bytes);
    assert!(bytes.len() > maxmsg);
    let _ = ws.send_binary(bytes).await;
    expect_close(&mut ws, 1009, "message too big", "oversize message").await;

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("inline command", b"PING\r\n".to_vec(), 4000, "protocol error"),
        ("garbage", b"\x00\x01\x02garbage\xff\xfe".to_vec(), 4000, "protocol error"),
        ("cut frame", b"*2\r\n$4\r\nPING".to_vec(), 4000, "protocol error"),
        ("simple string frame", b"+OK\r\n".to_vec(), 4000, "protocol error"),
        ("integer frame", b":1\r\n".to_vec(), 4000, "protocol error"),
        ("array of integers", b"*1\r\n:1\r\n".to_vec(), 4000, "protocol error"),
        ("absurd array length", b"*2147483647\r\n".to_vec(), 4000, "protocol error"),
        ("absurd bulk length", b"*1\r\n$2147483647\r\n".to_vec(), 4000, "protocol error"),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec(), 4000, "protocol error"),
        ("deep nesting", b"*1\r\n".repeat(5000), 4000, "protocol error"),
    ];
    for authed in [false, true] {
        for (what, bytes, code, reason) in &cases {
            let mut ws = RawWs::connect(&hub.ws_url).await;
            if authed {
                assert!(matches!(ws.hello(&tok, "hostile-authed").await, Ok(Frame::Map(_))));
            }
            ws.send_binary(bytes.clone()).await.expect("send");
            expect_close(&mut ws, *code, reason, &format!("{what} (after HELLO: {authed})")).await;
        }
        // Text messages.
        let mut ws = RawWs::connect(&hub.ws_url).await;
        if authed {
            assert!(matches!(ws.hello(&tok, "hostile-authed").await, Ok(Frame::Map(_))));
        }
        ws.send_text("*1\r\n$4\r\nPING\r\n").await.expect("send");
        expect_close(&mut ws, 1003, "binary messages only", "text message").await;
    }

    // HELLO with a bad version or client id.
    let mut ws = RawWs::connect(&hub.ws_url).await;
    ws.send_cmds(&[vec![b("SYNC.HELLO"), b("2"), b(&tok), b("v2")]]).await.expect("send");
    assert_eq!(err(&ws.reply(WAIT).await), "ERR SYNC unsupported protocol version");
    expect_close(&mut ws, 4000, "protocol error", "HELLO version 2").await;
    for id in ["", "has space", "semi;colon", &"x".repeat(65), "ünïcode"] {
        let mut ws = RawWs::connect(&hub.ws_url).await;
        ws.send_cmds(&[hello(&tok, id)]).await.expect("send");
        assert_eq!(err(&ws.reply(WAIT).await), "ERR SYNC invalid client id", "client id {id:?}");
        expect_close(&mut ws, 4000, "protocol error", &format!("client id {id:?}")).await;
    }
    assert_serving(&mut hub).await;
}

/// Opens a WebSocket by hand and returns the TCP stream after the 101.
async fn raw_upgrade(url: &str) -> tokio::net::TcpStream {
    let (host, port) = host_port(url);
    let path = url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap_or_else(|| "/".into());
    let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await.expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut byte)).await.expect("upgrade answer").expect("read");
        assert!(n == 1, "closed during the upgrade: {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused: {:?}", String::from_utf8_lossy(&head));
    s
}

/// Reads until the hub closes the TCP connection; fails if it stays open.
async fn wait_tcp_closed(s: &mut tokio::net::TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: the hub kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads until the hub closes the TCP connection or sends a close frame (1002, 1009, 4000).
async fn wait_tcp_closed_or_close_frame(s: &mut tokio::net::TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(i) = got.windows(4).position(|w| w[0] == 0x88 && w[1] >= 2 && w[1] < 126) {
            let code = got.get(i + 2..i + 4).map(|c| u16::from_be_bytes([c[0], c[1]]));
            if code.is_some() {
                // 1002/1009 from the runtime's framing checks, or 4000 when the runtime took
                // the frame (an unmasked one) and the hub refused its bytes as RESP.
                assert!(matches!(code, Some(1002 | 1009 | 4000)), "{what}: close code {code:?}");
                return;
            }
        }
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("{what}: the hub neither closed the connection nor sent a close frame"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_websocket_framing() {
    let Some(mut hub) = Hub::start_or_skip("broken_websocket_framing", HubOpts::new()) else { return };
    let frames: Vec<(&str, Vec<u8>)> = vec![
        ("reserved opcode", vec![0x83, 0x80, 1, 2, 3, 4]),
        ("unmasked client frame", vec![0x82, 0x03, b'a', b'b', b'c']),
        ("RSV bits", vec![0xf2, 0x80, 1, 2, 3, 4]),
        ("garbage", vec![0xff; 64]),
        ("64-bit length of 2^62", vec![0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        ("fragmented control frame", vec![0x09, 0x80, 1, 2, 3, 4]),
    ];
    // A hub whose runtime owns the TCP connection (the edge hub: workerd waits for the
    // client's half of the close handshake) can only close the WebSocket: a close frame
    // with 1002 is accepted there instead of the connection ending.
    let close_frame_ok = hub.lacks("tcp-close");
    if close_frame_ok {
        loud("\n*** broken_websocket_framing: this hub lacks tcp-close: a close frame (1002/1009/4000) counts as closing for broken framing, and non-WebSocket junk is only checked not to stop the hub ***\n");
    }
    for (what, bytes) in frames {
        let mut s = raw_upgrade(&hub.ws_url).await;
        s.write_all(&bytes).await.expect("write");
        if close_frame_ok {
            wait_tcp_closed_or_close_frame(&mut s, what).await;
        } else {
            wait_tcp_closed(&mut s, what).await;
        }
    }
    // Not WebSocket at all.
    let (host, port) = host_port(&hub.ws_url);
    for junk in [&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..], b"\x00\x00\x00\x00\r\n\r\n", b"GARBAGE / HTTP/9.9\r\n\r\n"] {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await.expect("connect");
        s.write_all(junk).await.expect("write");
        if close_frame_ok {
            // The runtime's HTTP server decides when to drop a half request; the hub must
            // only keep serving (checked below).
            continue;
        }
        wait_tcp_closed(&mut s, &format!("junk {junk:?}")).await;
    }
    assert_serving(&mut hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout() {
    let Some(mut hub) = Hub::start_or_skip("handshake_timeout", HubOpts::new()) else { return };
    // Silent (no HELLO) and chatty (commands, no HELLO: they do not extend the timeout),
    // side by side. The protocol allows 10 s.
    let silent = async {
        let mut ws = RawWs::connect(&hub.ws_url).await;
        let start = std::time::Instant::now();
        (ws.closed(Duration::from_secs(15)).await, start.elapsed())
    };
    let chatty = async {
        let mut ws = RawWs::connect(&hub.ws_url).await;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if ws.send_cmds(&[cmd(&["PING"])]).await.is_err() {
                break;
            }
            match ws.next(Duration::from_millis(500)).await {
                Incoming::Frames(f) => assert_eq!(err(&Ok(f[0].clone())), "NOAUTH Authentication required."),
                Incoming::Nothing => {}
                other => return (other, start.elapsed()),
            }
        }
        (ws.closed(WAIT).await, start.elapsed())
    };
    let (silent, chatty) = tokio::join!(silent, chatty);
    for (what, (end, took)) in [("silent", silent), ("chatty", chatty)] {
        assert_eq!(end, Incoming::Close(4002, "handshake timeout".into()), "{what} client without HELLO");
        assert!(took >= Duration::from_secs(9) && took <= Duration::from_secs(13), "{what}: handshake timeout after {took:?}");
    }
    assert_serving(&mut hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_flood_leaks_nothing() {
    let Some(mut hub) = Hub::start_or_skip("hostile_flood_leaks_nothing", HubOpts::new()) else { return };
    let secret = hub.secret.clone().expect("a secret");
    assert_serving(&mut hub).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (fd0, rss0) = (hub.fd_count(), hub.rss_kb());
    let url = hub.ws_url.clone();
    for round in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..30 {
            let url = url.clone();
            let secret = secret.clone();
            tasks.push(tokio::spawn(async move {
                let mut ws = RawWs::connect(&url).await;
                let _ = match (round + i) % 6 {
                    0 => ws.send_binary(b"\xff\xfe garbage".to_vec()).await,
                    1 => ws.send_text("hello").await,
                    2 => ws.send_cmds(&[hello("forged.token.here", "f")]).await,
                    3 => ws.send_cmds(&[hello(&mint_token(b"wrong", "w", &["*"], &["*"], now_ms() + 60_000), "w")]).await,
                    4 => ws.send_binary(vec![b'*'; 200_000]).await,
                    _ => ws.send_cmds(&[hello(&mint_token(&secret, "ok", &["*"], &["*"], now_ms() + 60_000), &format!("ok{i}")), vec![b("SYNC.SUB"), b("1"), b("*")], cmd(&["GET", "x"])]).await,
                };
                if (round + i) % 6 == 5 {
                    // A valid client that vanishes without a close frame.
                    let _ = ws.frame(WAIT).await;
                    return;
                }
                match ws.closed(WAIT).await {
                    Incoming::Close(code, _) => assert!(matches!(code, 1003 | 4000 | 4001 | 1009), "close code {code}"),
                    other => panic!("hostile connection not closed: {other:?}"),
                }
            }));
        }
        for t in tasks {
            t.await.expect("hostile task");
        }
    }
    assert_serving(&mut hub).await;
    if let (Some(fd0), Some(rss0)) = (fd0, rss0) {
        let ok = sync_support::eventually(Duration::from_secs(10), || hub.fd_count().is_some_and(|n| n <= fd0 + 2)).await;
        let (fd1, rss1) = (hub.fd_count().unwrap_or(0), hub.rss_kb().unwrap_or(0));
        loud(&format!("hostile flood: hub fds {fd0} → {fd1}, RSS {rss0} kB → {rss1} kB"));
        assert!(ok, "hub descriptors did not return: {fd0} before, {fd1} after 300 hostile connections");
        if hub.lacks("rss-bound") {
            // A wasm hub's linear memory only grows, and its runtime's JS heap is collected
            // lazily: the process RSS does not come back after a peak.
            loud("\n*** hostile_flood_leaks_nothing: this hub lacks rss-bound: the RSS check is SKIPPED (descriptors and sockets still checked) ***\n");
        } else {
            assert!(rss1 <= rss0 + 16 * 1024, "hub RSS grew from {rss0} kB to {rss1} kB after 300 hostile connections");
        }
    }
    if let Some(n) = hub.metric("recached_sync_sockets").await {
        // Only the idle valid clients' sockets may remain, until the hub notices they are gone.
        let mut last = n;
        for _ in 0..100 {
            last = hub.metric("recached_sync_sockets").await.unwrap_or(-1.0);
            if last == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last, 0.0, "open sync sockets after the flood");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_handshake_timeout() {
    let opts = HubOpts::new().flag("sync-handshake-timeout", "1500");
    let Some(mut hub) = Hub::start_or_skip("configured_handshake_timeout", opts) else { return };
    let mut ws = RawWs::connect(&hub.ws_url).await;
    let start = std::time::Instant::now();
    match ws.closed(Duration::from_secs(6)).await {
        Incoming::Close(code, reason) => assert_eq!((code, reason.as_str()), (4002, "handshake timeout")),
        other => panic!("no handshake timeout close: {other:?}"),
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1400) && took <= Duration::from_millis(3000), "1.5 s handshake timeout after {took:?}");
    // A HELLO in time keeps the socket.
    let tok = hub.admin_token();
    let mut ws = RawWs::connect(&hub.ws_url).await;
    assert!(matches!(ws.hello(&tok, "in-time").await, Ok(Frame::Map(_))));
    assert_eq!(ws.closed(Duration::from_secs(3)).await, Incoming::Nothing, "closed after a successful HELLO");
    assert_serving(&mut hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list() {
    let opts = HubOpts::new().flag("sync-allowed-origins", "https://app.example,http://localhost:3000");
    let Some(mut hub) = Hub::start_or_skip("origin_allow_list", opts) else { return };
    let tok = hub.admin_token();
    let with_origin = |o: Option<&str>| sync_support::raw::ConnectOpts { recv_buffer: None, origin: o.map(str::to_string) };
    for origin in ["https://evil.example", "https://app.example.evil", "http://app.example", "null"] {
        let mut ws = RawWs::connect_with(&hub.ws_url, &with_origin(Some(origin))).await;
        // Closed at once, with nothing else sent, whatever the client says.
        let _ = ws.send_cmds(&[hello(&tok, "o")]).await;
        match ws.next(WAIT).await {
            Incoming::Close(code, reason) => assert_eq!((code, reason.as_str()), (4004, "origin not allowed"), "origin {origin}"),
            other => panic!("origin {origin}: {other:?}"),
        }
    }
    for origin in [Some("https://app.example"), Some("HTTPS://APP.EXAMPLE"), Some("http://localhost:3000"), None] {
        let mut ws = RawWs::connect_with(&hub.ws_url, &with_origin(origin)).await;
        assert!(matches!(ws.hello(&tok, "o").await, Ok(Frame::Map(_))), "origin {origin:?} refused");
    }
    assert_serving(&mut hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_socket_cap() {
    let opts = HubOpts::new().flag("sync-max-sockets-per-ip", "4");
    let Some(mut hub) = Hub::start_or_skip("per_ip_socket_cap", opts) else { return };
    let tok = hub.admin_token();
    let mut open = Vec::new();
    for i in 0..4 {
        let mut ws = RawWs::connect(&hub.ws_url).await;
        assert!(matches!(ws.hello(&tok, &format!("cap{i}")).await, Ok(Frame::Map(_))), "socket {i}");
        open.push(ws);
    }
    let mut extra = RawWs::connect(&hub.ws_url).await;
    match extra.next(WAIT).await {
        Incoming::Close(code, reason) => assert_eq!((code, reason.as_str()), (1013, "too many connections")),
        other => panic!("fifth socket: {other:?}"),
    }
    // Freed slots are reusable.
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = RawWs::connect(&hub.ws_url).await;
    assert!(matches!(again.hello(&tok, "cap-again").await, Ok(Frame::Map(_))), "slot not released");
    drop(open);
    drop(again);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_serving(&mut hub).await;
}
