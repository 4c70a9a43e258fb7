//! Raw-bytes RESP tests against an embedded hub (mini-redis `tests/server.rs` style):
//! pipelining, fragmentation, MULTI/EXEC, pub/sub, protocol errors, AUTH, blocking.

use std::net::SocketAddr;
use std::time::Duration;

use recached_hub::{Server, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Starts a hub on a free port; dropping the returned sender shuts it down.
async fn start(configure: impl FnOnce(&mut Settings)) -> (SocketAddr, oneshot::Sender<()>) {
    let mut settings = Settings { port: 0, ..Settings::default() };
    configure(&mut settings);
    let server = Server::bind(settings).await.expect("bind");
    let addr = server.local_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until `want` bytes arrived (or fails after a timeout).
async fn read_exact_str(s: &mut TcpStream, want: usize) -> String {
    let mut buf = vec![0u8; want];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.expect("timeout").expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Sends `input` and expects exactly `expect` back.
async fn roundtrip(s: &mut TcpStream, input: &[u8], expect: &str) {
    s.write_all(input).await.unwrap();
    assert_eq!(read_exact_str(s, expect.len()).await, expect, "after sending {:?}", String::from_utf8_lossy(input));
}

/// Expects exactly `want` next.
async fn expect(s: &mut TcpStream, want: &str) {
    assert_eq!(read_exact_str(s, want.len()).await, want);
}

/// Reads until the peer closes; returns everything read.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await.expect("close timeout").expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn ping_set_get_and_inline() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    roundtrip(&mut s, b"*1\r\n$4\r\nPING\r\n", "+PONG\r\n").await;
    roundtrip(&mut s, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n", "+OK\r\n").await;
    roundtrip(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", "$5\r\nhello\r\n").await;
    // Inline commands (telnet), with quotes.
    roundtrip(&mut s, b"SET k2 \"a b\"\r\nGET k2\r\n", "+OK\r\n$3\r\na b\r\n").await;
    roundtrip(&mut s, b"\r\n\r\nPING\n", "+PONG\r\n").await;
}

#[tokio::test]
async fn pipeline_split_at_every_byte() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    let mut input = Vec::new();
    let mut expect = String::new();
    for i in 0..20 {
        let v = format!("v{}\r\n\0x", i);
        input.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$2\r\nk{}\r\n${}\r\n{}\r\n", i % 10, v.len(), v).as_bytes());
        expect.push_str("+OK\r\n");
        input.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n$2\r\nk{}\r\n", i % 10).as_bytes());
        expect.push_str(&format!("${}\r\n{}\r\n", v.len(), v));
    }
    s.set_nodelay(true).unwrap();
    for b in &input {
        s.write_all(std::slice::from_ref(b)).await.unwrap();
    }
    assert_eq!(read_exact_str(&mut s, expect.len()).await, expect);
}

#[tokio::test]
async fn big_pipeline_in_one_write() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    let mut input = Vec::new();
    let mut expect = String::new();
    for i in 0..10_000 {
        input.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n");
        expect.push_str(&format!(":{}\r\n", i + 1));
    }
    let (mut r, mut w) = s.split();
    let writer = async {
        w.write_all(&input).await.unwrap();
    };
    let reader = async {
        let mut buf = vec![0u8; expect.len()];
        tokio::time::timeout(Duration::from_secs(20), r.read_exact(&mut buf)).await.expect("timeout").unwrap();
        String::from_utf8(buf).unwrap()
    };
    let ((), got) = tokio::join!(writer, reader);
    assert!(got == expect, "pipeline replies differ; first 200 bytes: {:?}", &got[..got.len().min(200)]);
}

#[tokio::test]
async fn multi_exec_is_atomic_and_queues() {
    let (addr, _stop) = start(|_| {}).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    roundtrip(&mut a, b"MULTI\r\n", "+OK\r\n").await;
    roundtrip(&mut a, b"SET x 1\r\nINCR x\r\n", "+QUEUED\r\n+QUEUED\r\n").await;
    // Another client sees nothing of the transaction before EXEC.
    roundtrip(&mut b, b"GET x\r\n", "$-1\r\n").await;
    roundtrip(&mut a, b"EXEC\r\n", "*2\r\n+OK\r\n:2\r\n").await;
    roundtrip(&mut b, b"GET x\r\n", "$1\r\n2\r\n").await;
    // WATCH: a write by another client aborts EXEC.
    roundtrip(&mut a, b"WATCH x\r\nMULTI\r\nINCR x\r\n", "+OK\r\n+OK\r\n+QUEUED\r\n").await;
    roundtrip(&mut b, b"SET x 10\r\n", "+OK\r\n").await;
    roundtrip(&mut a, b"EXEC\r\n", "*-1\r\n").await;
}

#[tokio::test]
async fn protocol_error_replies_then_closes() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    s.write_all(b"PING\r\n*1\r\nxx\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, "+PONG\r\n-ERR Protocol error: expected '$', got 'x'\r\n");
    let mut s = connect(addr).await;
    // A declared 1 GB bulk is refused from its header, before any payload is read.
    s.write_all(b"*2\r\n$3\r\nGET\r\n$1073741824\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, "-ERR Protocol error: invalid bulk length\r\n");
    let mut s = connect(addr).await;
    s.write_all(b"*3000000000\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut s).await, "-ERR Protocol error: invalid multibulk length\r\n");
    // The server keeps serving others.
    let mut s = connect(addr).await;
    roundtrip(&mut s, b"PING\r\n", "+PONG\r\n").await;
}

#[tokio::test]
async fn pubsub_resp2_and_resp3() {
    let (addr, _stop) = start(|_| {}).await;
    let mut sub = connect(addr).await;
    let mut psub = connect(addr).await;
    let mut publ = connect(addr).await;
    roundtrip(&mut sub, b"SUBSCRIBE news other\r\n", "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nother\r\n:2\r\n").await;
    roundtrip(
        &mut sub,
        b"GET k\r\n",
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
    )
    .await;
    roundtrip(&mut sub, b"PING\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    roundtrip(&mut psub, b"HELLO 3\r\n", "%7\r\n").await;
    let _ = read_exact_str(&mut psub, 1).await; // rest of the HELLO map is not the point here
    let mut rest = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), psub.read(&mut rest)).await;
    roundtrip(&mut psub, b"PSUBSCRIBE n*\r\n", ">3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n").await;
    roundtrip(&mut publ, b"PUBLISH news hi\r\n", ":2\r\n").await;
    let want = "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
    assert_eq!(read_exact_str(&mut sub, want.len()).await, want);
    let want = ">4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n";
    assert_eq!(read_exact_str(&mut psub, want.len()).await, want);
    roundtrip(&mut publ, b"PUBSUB NUMSUB news nobody\r\nPUBSUB NUMPAT\r\n", "*4\r\n$4\r\nnews\r\n:1\r\n$6\r\nnobody\r\n:0\r\n:1\r\n").await;
    roundtrip(&mut sub, b"UNSUBSCRIBE\r\n", "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$11\r\nunsubscribe\r\n$5\r\nother\r\n:0\r\n").await;
    // Out of subscribe mode, ordinary commands work again.
    roundtrip(&mut sub, b"PING\r\n", "+PONG\r\n").await;
}

#[tokio::test]
async fn keyspace_notifications() {
    let (addr, _stop) = start(|s| s.set("notify-keyspace-events", "KEA").unwrap()).await;
    let mut sub = connect(addr).await;
    let mut c = connect(addr).await;
    roundtrip(&mut sub, b"SUBSCRIBE __keyevent@0__:set\r\n", "*3\r\n$9\r\nsubscribe\r\n$18\r\n__keyevent@0__:set\r\n:1\r\n").await;
    roundtrip(&mut c, b"SET mykey v\r\n", "+OK\r\n").await;
    let want = "*3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@0__:set\r\n$5\r\nmykey\r\n";
    assert_eq!(read_exact_str(&mut sub, want.len()).await, want);
}

#[tokio::test]
async fn auth_required() {
    let (addr, _stop) = start(|s| s.requirepass = "sekret".into()).await;
    let mut s = connect(addr).await;
    roundtrip(&mut s, b"GET k\r\n", "-NOAUTH Authentication required.\r\n").await;
    roundtrip(&mut s, b"AUTH wrong\r\n", "-WRONGPASS invalid username-password pair or user is disabled.\r\n").await;
    roundtrip(&mut s, b"AUTH default sekret\r\n", "+OK\r\n").await;
    roundtrip(&mut s, b"PING\r\n", "+PONG\r\n").await;
    let mut t = connect(addr).await;
    roundtrip(&mut t, b"HELLO 2 AUTH default sekret SETNAME me\r\n", "*14\r\n").await;
}

#[tokio::test]
async fn maxclients_refuses_cleanly() {
    let (addr, _stop) = start(|s| s.maxclients = 2).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    roundtrip(&mut a, b"PING\r\n", "+PONG\r\n").await;
    roundtrip(&mut b, b"PING\r\n", "+PONG\r\n").await;
    let mut c = connect(addr).await;
    assert_eq!(read_to_close(&mut c).await, "-ERR max number of clients reached\r\n");
    roundtrip(&mut a, b"PING\r\n", "+PONG\r\n").await;
}

#[tokio::test]
async fn client_kill_closes_the_victim() {
    let (addr, _stop) = start(|_| {}).await;
    let mut victim = connect(addr).await;
    let mut killer = connect(addr).await;
    roundtrip(&mut victim, b"CLIENT ID\r\n", ":").await;
    let id = read_exact_str(&mut victim, 3).await; // "1\r\n" or similar short id
    let id = id.trim().to_string();
    roundtrip(&mut killer, format!("CLIENT KILL ID {}\r\n", id).as_bytes(), ":1\r\n").await;
    assert_eq!(read_to_close(&mut victim).await, "");
}

#[tokio::test]
async fn blocking_pop_wakes_first_come_first_served() {
    let (addr, _stop) = start(|_| {}).await;
    let mut first = connect(addr).await;
    let mut second = connect(addr).await;
    let mut pusher = connect(addr).await;
    first.write_all(b"BLPOP q other 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    second.write_all(b"BLPOP q 0\r\nPING\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut pusher, b"RPUSH q a b\r\n", ":2\r\n").await;
    expect(&mut first, "*2\r\n$1\r\nq\r\n$1\r\na\r\n").await;
    // The second waiter gets the next element, then the rest of its pipeline runs.
    expect(&mut second, "*2\r\n$1\r\nq\r\n$1\r\nb\r\n+PONG\r\n").await;
    roundtrip(&mut pusher, b"EXISTS q\r\n", ":0\r\n").await;
}

#[tokio::test]
async fn blocking_pop_times_out_and_works_in_multi() {
    let (addr, _stop) = start(|_| {}).await;
    let mut c = connect(addr).await;
    let t = std::time::Instant::now();
    roundtrip(&mut c, b"BLPOP nothing 0.2\r\n", "*-1\r\n").await;
    assert!(t.elapsed() >= Duration::from_millis(190), "{:?}", t.elapsed());
    // Inside MULTI a blocking command answers at once.
    roundtrip(&mut c, b"MULTI\r\nBRPOP nothing 0\r\nEXEC\r\n", "+OK\r\n+QUEUED\r\n*1\r\n*-1\r\n").await;
}

#[tokio::test]
async fn blmove_chain_wakes_the_next_waiter() {
    let (addr, _stop) = start(|_| {}).await;
    let mut mover = connect(addr).await;
    let mut popper = connect(addr).await;
    let mut pusher = connect(addr).await;
    popper.write_all(b"BLPOP dst 0\r\n").await.unwrap();
    mover.write_all(b"BLMOVE src dst LEFT RIGHT 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut pusher, b"LPUSH src x\r\n", ":1\r\n").await;
    expect(&mut mover, "$1\r\nx\r\n").await;
    // The element the mover pushed to dst woke the popper in the same critical section.
    expect(&mut popper, "*2\r\n$3\r\ndst\r\n$1\r\nx\r\n").await;
}

#[tokio::test]
async fn killed_or_closed_waiters_are_not_served() {
    let (addr, _stop) = start(|_| {}).await;
    let mut victim = connect(addr).await;
    let mut quitter = connect(addr).await;
    let mut c = connect(addr).await;
    roundtrip(&mut victim, b"CLIENT ID\r\n", ":1\r\n").await;
    victim.write_all(b"BLPOP q 0\r\n").await.unwrap();
    quitter.write_all(b"BLPOP q 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(quitter);
    roundtrip(&mut c, b"CLIENT KILL ID 1\r\n", ":1\r\n").await;
    assert_eq!(read_to_close(&mut victim).await, "");
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut c, b"RPUSH q a\r\nLLEN q\r\n", ":1\r\n:1\r\n").await;
}

#[tokio::test]
async fn client_unblock() {
    let (addr, _stop) = start(|_| {}).await;
    let mut w = connect(addr).await;
    let mut c = connect(addr).await;
    roundtrip(&mut w, b"CLIENT ID\r\n", ":1\r\n").await;
    w.write_all(b"BLPOP q 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut c, b"CLIENT UNBLOCK 1\r\n", ":1\r\n").await;
    expect(&mut w, "*-1\r\n").await;
    w.write_all(b"BLPOP q 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut c, b"CLIENT UNBLOCK 1 ERROR\r\nCLIENT UNBLOCK 1\r\n", ":1\r\n:0\r\n").await;
    let want = "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n";
    assert_eq!(read_exact_str(&mut w, want.len()).await, want);
}

#[tokio::test]
async fn active_expiry_publishes_expired_events() {
    let (addr, _stop) = start(|s| s.set("notify-keyspace-events", "Ex").unwrap()).await;
    let mut sub = connect(addr).await;
    let mut c = connect(addr).await;
    let want = "*3\r\n$9\r\nsubscribe\r\n$22\r\n__keyevent@0__:expired\r\n:1\r\n";
    roundtrip(&mut sub, b"SUBSCRIBE __keyevent@0__:expired\r\n", want).await;
    // A far deadline first, then a near one: the expiry task must wake early for it.
    roundtrip(&mut c, b"SET far v EX 100\r\nSET k v PX 100\r\n", "+OK\r\n+OK\r\n").await;
    let t = std::time::Instant::now();
    let want = "*3\r\n$7\r\nmessage\r\n$22\r\n__keyevent@0__:expired\r\n$1\r\nk\r\n";
    assert_eq!(read_exact_str(&mut sub, want.len()).await, want);
    assert!(t.elapsed() < Duration::from_secs(2), "expired late: {:?}", t.elapsed());
    roundtrip(&mut c, b"DBSIZE\r\n", ":1\r\n").await;
}

#[tokio::test]
async fn subscriber_over_output_limit_is_disconnected() {
    let (addr, _stop) = start(|s| s.set("client-output-buffer-limit", "pubsub 64kb 0 0").unwrap()).await;
    let mut sub = connect(addr).await;
    let mut publ = connect(addr).await;
    roundtrip(&mut sub, b"SUBSCRIBE c\r\n", "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").await;
    // The subscriber never reads; the publisher floods it far past 64 KB plus socket buffers.
    let big = "x".repeat(64 * 1024);
    let cmd = format!("*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n${}\r\n{}\r\n", big.len(), big);
    let mut dropped = false;
    for _ in 0..400 {
        publ.write_all(cmd.as_bytes()).await.unwrap();
        let mut buf = [0u8; 64];
        let n = publ.read(&mut buf).await.unwrap();
        if &buf[..n] == b":0\r\n" {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the slow subscriber was never disconnected");
    roundtrip(&mut publ, b"PUBSUB NUMSUB c\r\n", "*2\r\n$1\r\nc\r\n:0\r\n").await;
}

#[tokio::test]
async fn graceful_shutdown_flushes_and_stops() {
    let mut settings = Settings { port: 0, ..Settings::default() };
    settings.maxclients = 10;
    let server = Server::bind(settings).await.unwrap();
    let addr = server.local_addrs()[0];
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    let mut c = connect(addr).await;
    roundtrip(&mut c, b"SET a 1\r\n", "+OK\r\n").await;
    tx.send(()).unwrap();
    assert_eq!(read_to_close(&mut c).await, "");
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returns").unwrap().unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}
