//! Dev mode (`recached --dev`, src/dev.rs) against the real binary: `GET /dev/token` is a
//! 404 without it; with it the token works over the sync port and is scoped to its user
//! (another user's cart is never received nor writable, flags are read-only); dev mode
//! with no secret is not an open hub; dev mode beyond loopback refuses to start.

mod sync_support;

use std::process::Command;
use std::time::Duration;

use recached_engine::resp::Frame;
use recached_engine::Reply;
use serde_json::Value;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::raw::host_port;
use sync_support::{b, cmd, show, Hub, HubOpts, IO_TIMEOUT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on the hub's sync port: (status, body).
async fn get(hub: &Hub, path: &str) -> (u16, String) {
    let (host, port) = host_port(&hub.ws_url);
    let fut = async {
        let mut s = TcpStream::connect((host.as_str(), port)).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://127.0.0.1:8080\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(status != 200 || head.to_ascii_lowercase().contains("access-control-allow-origin: http://127.0.0.1:8080"), "CORS: {head}");
        (status, body.to_string())
    };
    tokio::time::timeout(IO_TIMEOUT, fut).await.expect("GET timed out")
}

/// The hub's start-up log once it is complete. The ready lines (stdout) can be read before
/// the warnings (tracing, stderr), so wait for the last start-up line, which tracing
/// writes after every warning.
async fn startup_log(hub: &Hub) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = hub.output.text();
        if text.contains("listening (WebSocket sync + HTTP)") || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_is_404_without_dev_mode() {
    let Some(hub) = Hub::start_or_skip("dev_token_is_404_without_dev_mode", HubOpts::new()) else { return };
    let (status, body) = get(&hub, "/dev/token?user=alice").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--dev"), "{body}");
    assert!(!startup_log(&hub).await.contains("DEV MODE"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_token_works_and_is_scoped_to_its_user() {
    let Some(hub) = Hub::start_or_skip("dev_token_works_and_is_scoped_to_its_user", HubOpts::new().flag("dev", "yes")) else { return };
    let log = startup_log(&hub).await;
    assert!(log.contains("DEV MODE"), "dev mode is announced at start:\n{log}");
    let mut be = hub.backend().await;
    for c in [
        cmd(&["SET", "demo:counter", "41"]),
        cmd(&["SET", "flag:dark-mode", "on"]),
        cmd(&["HSET", "cart:alice:items", "apple", "2"]),
        cmd(&["HSET", "cart:bob:items", "SECRET-bob", "1"]),
        cmd(&["SET", "presence:bob", "1", "PX", "60000"]),
        cmd(&["SET", "admin:key", "SECRET-admin"]),
    ] {
        let r = be.cmd(&c).await;
        assert!(!matches!(r, Frame::Error(_)), "{c:?}: {r:?}");
    }

    for bad in ["/dev/token", "/dev/token?user=", "/dev/token?user=a*", "/dev/token?user=a%3Ab"] {
        assert_eq!(get(&hub, bad).await.0, 400, "{bad}");
    }
    let (status, body) = get(&hub, "/dev/token?user=alice").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let token = v["token"].as_str().expect("token").to_string();
    let read: Vec<String> = serde_json::from_value(v["read"].clone()).expect("read");
    assert_eq!(read, ["demo:*", "presence:*", "flag:*", "cart:alice:*"]);
    assert_eq!(v["sub"], "alice");

    // The page subscribes to exactly its read scope.
    let patterns: Vec<&str> = read.iter().map(String::as_str).collect();
    let mut c = TestClient::new(&hub.ws_url, ClientOpts::new("dev-alice", &token, &patterns).record());
    c.connect().await;
    assert!(c.wait_live(IO_TIMEOUT).await, "{}", c.describe());
    let state = c.state();
    let keys: Vec<String> = state.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert_eq!(keys, ["cart:alice:items", "demo:counter", "flag:dark-mode", "presence:bob"], "visible keys");

    // Writes inside the write scope are acknowledged by the hub.
    let mine = [
        c.run(&["INCR", "demo:counter"]).seq.expect("sent"),
        c.run(&["HINCRBY", "cart:alice:items", "apple", "1"]).seq.expect("sent"),
        c.run(&["SET", "presence:alice", "1", "PX", "6000"]).seq.expect("sent"),
    ];
    assert!(c.wait_settled(IO_TIMEOUT).await, "{}", c.describe());
    {
        let st = c.st();
        for seq in mine {
            assert!(matches!(st.settled.get(&seq).map(|v| v.as_slice()), Some([Ok(_)])), "write {seq}: {:?}", st.settled.get(&seq));
        }
    }
    assert_eq!(show(&be.cmd(&cmd(&["GET", "demo:counter"])).await), "\"42\"");
    assert_eq!(show(&be.cmd(&cmd(&["HGET", "cart:alice:items", "apple"])).await), "\"3\"");

    // Outside it: refused (locally, the client knows its grant) and never applied.
    for args in [
        ["HSET", "cart:bob:items", "apple", "1"].as_slice(),
        &["SET", "flag:dark-mode", "off"],
        &["SET", "presence:bob", "x"],
        &["SET", "admin:key", "x"],
    ] {
        let r = c.run(args);
        assert!(r.seq.is_none() && matches!(r.reply, Reply::Error(ref e) if e.starts_with("NOPERM")), "{args:?} → {:?}", r.reply);
    }
    // Asking the hub directly: refused there too.
    let reply = c.remote(&[b("HGETALL"), b("cart:bob:items")]).await.expect("reply");
    assert!(matches!(&reply, Frame::Error(e) if e.starts_with(b"NOPERM")), "{}", show(&reply));
    assert_eq!(show(&be.cmd(&cmd(&["GET", "flag:dark-mode"])).await), "\"on\"");
    // Another user's cart never reached this client.
    let raw = c.st().raw.concat();
    assert!(!raw.windows(6).any(|w| w == b"SECRET"), "an out-of-scope value reached the client");

    // The token is a JWT for this hub's secret: a forged copy is refused.
    let forged = format!("{}x", token);
    let mut f = TestClient::new(&hub.ws_url, ClientOpts::new("dev-forged", &forged, &patterns));
    f.connect().await;
    assert!(!f.wait_live(Duration::from_millis(500)).await, "a forged token went live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_without_a_secret_is_not_open() {
    let opts = HubOpts { secret: false, ..HubOpts::new() }.flag("dev", "yes");
    let Some(hub) = Hub::start_or_skip("dev_mode_without_a_secret_is_not_open", opts) else { return };
    let log = startup_log(&hub).await;
    assert!(!log.contains("sync port open"), "dev mode ran open:\n{log}");
    let mut anyone = TestClient::new(&hub.ws_url, ClientOpts::new("dev-anyone", "", &["*"]));
    anyone.connect().await;
    assert!(!anyone.wait_live(Duration::from_millis(500)).await, "an empty token went live in dev mode");
    let (status, body) = get(&hub, "/dev/token?user=carol").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let mut c = TestClient::new(&hub.ws_url, ClientOpts::new("dev-carol", v["token"].as_str().expect("token"), &["cart:carol:*"]));
    c.connect().await;
    assert!(c.wait_live(IO_TIMEOUT).await, "{}", c.describe());
}

#[test]
fn dev_mode_refuses_to_listen_beyond_loopback() {
    let Some(bin) = option_env!("CARGO_BIN_EXE_recached") else { return };
    if !matches!(std::env::var("RECACHED_SYNC_TARGET").as_deref(), Err(_) | Ok("") | Ok("native")) {
        return;
    }
    // A password and protected-mode off do not lift it.
    let out = Command::new(bin)
        .args(["--dev", "--bind", "0.0.0.0", "--port", "0", "--ws-port", "0", "--requirepass", "pw", "--protected-mode", "no"])
        .env_remove("RECACHED_DEV")
        .output()
        .expect("run recached");
    assert!(!out.status.success(), "started in dev mode on 0.0.0.0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing dev mode") && err.contains("loopback"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Ready to accept"), "it listened");
}
