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
/// A reset counts as a close (the server closing with unread input sends one).
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("close timeout") {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {}", e),
        }
    }
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

/// Sends one inline command per entry and checks each reply.
async fn table(s: &mut TcpStream, cases: &[(&str, &str)]) {
    for (cmd, want) in cases {
        roundtrip(s, format!("{}\r\n", cmd).as_bytes(), want).await;
    }
}

#[tokio::test]
async fn client_and_config_errors_match_redis() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    table(
        &mut s,
        &[
            ("CLIENT SETNAME \"a b\"", "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
            ("CLIENT GETNAME", "$-1\r\n"),
            ("CLIENT SETNAME worker", "+OK\r\n"),
            ("CLIENT GETNAME", "$6\r\nworker\r\n"),
            ("CLIENT KILL 1.2.3.4:5", "-ERR No such client\r\n"),
            ("CLIENT KILL ID abc", "-ERR client-id should be greater than 0\r\n"),
            ("CLIENT KILL foo bar", "-ERR syntax error\r\n"),
            ("CLIENT KILL TYPE foo", "-ERR Unknown client type 'foo'\r\n"),
            ("CLIENT UNBLOCK abc", "-ERR value is not an integer or out of range\r\n"),
            ("CLIENT UNBLOCK 1 foo", "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"),
            ("CLIENT foo", "-ERR unknown subcommand 'foo'. Try CLIENT HELP.\r\n"),
            ("CLIENT SETNAME", "-ERR wrong number of arguments for 'client|setname' command\r\n"),
            ("CLIENT LIST TYPE foo", "-ERR Unknown client type 'foo'\r\n"),
            ("CLIENT LIST ID abc", "-ERR Invalid client ID\r\n"),
            ("CONFIG GET", "-ERR wrong number of arguments for 'config|get' command\r\n"),
            ("CONFIG foo", "-ERR unknown subcommand 'foo'. Try CONFIG HELP.\r\n"),
            ("CONFIG RESETSTAT x", "-ERR wrong number of arguments for 'config|resetstat' command\r\n"),
            ("CONFIG GET nosuch", "*0\r\n"),
            ("CONFIG SET nosuch 1", "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"),
            ("CONFIG SET maxmemory abc", "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n"),
            ("CONFIG SET databases 3", "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config\r\n"),
            ("CONFIG SET timeout 5 timeout 6", "-ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter\r\n"),
            ("CONFIG SET timeout 5 hz", "-ERR syntax error\r\n"),
            ("CONFIG SET notify-keyspace-events q", "-ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.\r\n"),
            // A failed multi-pair SET applies nothing.
            ("CONFIG SET maxmemory 1mb maxclients 0", "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive\r\n"),
            ("CONFIG GET maxmemory", "*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"),
            ("CONFIG SET maxmemory 1mb notify-keyspace-events KEA", "+OK\r\n"),
            ("CONFIG GET maxmemory", "*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n"),
            ("CONFIG GET notify-keyspace-events", "*2\r\n$22\r\nnotify-keyspace-events\r\n$3\r\nAKE\r\n"),
            ("CONFIG GET maxmemory-p*", "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n"),
            ("HELLO 3 foo", "-ERR Syntax error in HELLO option 'foo'\r\n"),
            ("HELLO abc", "-ERR Protocol version is not an integer or out of range\r\n"),
            ("HELLO 4", "-NOPROTO unsupported protocol version\r\n"),
            ("AUTH x", "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"),
            ("PUBSUB foo", "-ERR unknown subcommand 'foo'. Try PUBSUB HELP.\r\n"),
            ("PUBSUB NUMPAT x", "-ERR wrong number of arguments for 'pubsub|numpat' command\r\n"),
            ("WAIT 0 abc", "-ERR timeout is not an integer or out of range\r\n"),
            ("WAIT 0 0", ":0\r\n"),
            ("TIME x", "-ERR wrong number of arguments for 'time' command\r\n"),
            ("SHUTDOWN foo", "-ERR syntax error\r\n"),
        ],
    )
    .await;
}

#[tokio::test]
async fn hello_switches_protocol_and_reset_restores_it() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    let hello = "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:1\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    roundtrip(&mut s, b"HELLO 3\r\n", hello).await;
    roundtrip(&mut s, b"GET nothing\r\nSELECT 2\r\n", "_\r\n+OK\r\n").await;
    roundtrip(&mut s, b"RESET\r\n", "+RESET\r\n").await;
    roundtrip(&mut s, b"GET nothing\r\nCLIENT INFO\r\n", "$-1\r\n$").await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.unwrap().unwrap();
    let info = String::from_utf8_lossy(&buf[..n]);
    assert!(info.contains(" db=0 ") && info.contains(" resp=2") && info.contains("cmd=client|info"), "{}", info);
}

#[tokio::test]
async fn info_sections_and_time() {
    let (addr, _stop) = start(|_| {}).await;
    let mut s = connect(addr).await;
    roundtrip(&mut s, b"SET k v EX 100\r\n", "+OK\r\n").await;
    s.write_all(b"INFO\r\n").await.unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 16384];
    while !text.contains("# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await.expect("INFO complete").unwrap();
        assert!(n > 0);
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    for needle in ["# Server\r\n", "redis_version:7.0.15\r\n", "# Clients\r\nconnected_clients:1\r\n", "# Memory\r\n", "loading:0\r\n", "# Stats\r\n", "role:master\r\n"] {
        assert!(text.contains(needle), "missing {:?} in INFO", needle);
    }
    s.write_all(b"TIME\r\n").await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("*2\r\n$10\r\n"));
}

#[tokio::test]
async fn idle_timeout_and_query_buffer_limit() {
    let (addr, _stop) = start(|s| {
        s.timeout = 1;
        s.client_query_buffer_limit = 1 << 20;
    })
    .await;
    let mut idle = connect(addr).await;
    let mut sub = connect(addr).await;
    roundtrip(&mut sub, b"SUBSCRIBE c\r\n", "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n").await;
    let t = std::time::Instant::now();
    assert_eq!(read_to_close(&mut idle).await, "");
    assert!(t.elapsed() >= Duration::from_millis(900));
    // Subscribers are not closed for idleness.
    roundtrip(&mut sub, b"PING\r\n", "*2\r\n$4\r\npong\r\n$0\r\n\r\n").await;
    // A bulk bigger than the query buffer limit never completes: the client is closed.
    let mut big = connect(addr).await;
    big.write_all(b"*2\r\n$3\r\nGET\r\n$4000000\r\n").await.unwrap();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..3 {
        if big.write_all(&chunk).await.is_err() {
            break;
        }
    }
    assert_eq!(read_to_close(&mut big).await, "");
}

#[tokio::test]
async fn failed_auth_is_throttled_per_ip() {
    let (addr, _stop) = start(|s| s.requirepass = "pw".into()).await;
    let mut a = connect(addr).await;
    let mut b = connect(addr).await;
    let wrong = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    // The first failures are free, whichever connection makes them.
    roundtrip(&mut a, b"AUTH nope\r\n", wrong).await;
    roundtrip(&mut b, b"AUTH nope\r\n", wrong).await;
    roundtrip(&mut a, b"AUTH nope\r\n", wrong).await;
    // Then each attempt from this IP waits longer, on any connection.
    let t = std::time::Instant::now();
    roundtrip(&mut b, b"AUTH nope\r\n", wrong).await;
    roundtrip(&mut a, b"AUTH nope\r\n", wrong).await;
    assert!(t.elapsed() >= Duration::from_millis(100), "no delay: {:?}", t.elapsed());
    // The right password still works (after its slot).
    roundtrip(&mut a, b"AUTH pw\r\nPING\r\n", "+OK\r\n+PONG\r\n").await;
}

#[tokio::test]
async fn shutdown_command_stops_the_server() {
    let settings = Settings { port: 0, ..Settings::default() };
    let server = Server::bind(settings).await.unwrap();
    let addr = server.local_addrs()[0];
    let task = tokio::spawn(server.serve(std::future::pending()));
    let mut c = connect(addr).await;
    c.write_all(b"SHUTDOWN NOSAVE\r\n").await.unwrap();
    assert_eq!(read_to_close(&mut c).await, "");
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve returns").unwrap().unwrap();
}

#[tokio::test]
async fn bzpopmin_wakes_on_zadd() {
    let (addr, _stop) = start(|_| {}).await;
    let mut waiter = connect(addr).await;
    let mut c = connect(addr).await;
    waiter.write_all(b"BZPOPMIN z1 z2 0\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    roundtrip(&mut c, b"ZADD z2 5 five 1 one\r\n", ":2\r\n").await;
    expect(&mut waiter, "*3\r\n$2\r\nz2\r\n$3\r\none\r\n$1\r\n1\r\n").await;
    roundtrip(&mut c, b"ZCARD z2\r\n", ":1\r\n").await;
}

#[tokio::test]
async fn old_client_kill_form_flushall_async_and_keyspace_channel() {
    let (addr, _stop) = start(|s| s.set("notify-keyspace-events", "K$g").unwrap()).await;
    let mut victim = connect(addr).await;
    let mut c = connect(addr).await;
    let victim_addr = victim.local_addr().unwrap().to_string();
    roundtrip(&mut victim, b"PING\r\n", "+PONG\r\n").await;
    roundtrip(&mut c, format!("CLIENT KILL {}\r\n", victim_addr).as_bytes(), "+OK\r\n").await;
    assert_eq!(read_to_close(&mut victim).await, "");
    let mut sub = connect(addr).await;
    roundtrip(&mut sub, b"HELLO 3\r\n", "%7\r\n").await;
    let mut rest = vec![0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), sub.read(&mut rest)).await;
    roundtrip(&mut sub, b"PSUBSCRIBE __keyspace@0__:*\r\n", ">3\r\n$10\r\npsubscribe\r\n$16\r\n__keyspace@0__:*\r\n:1\r\n").await;
    roundtrip(&mut c, b"SET a 1\r\nSET b 2\r\nDBSIZE\r\nFLUSHALL ASYNC\r\nDBSIZE\r\n", "+OK\r\n+OK\r\n:2\r\n+OK\r\n:0\r\n").await;
    expect(&mut sub, ">4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$16\r\n__keyspace@0__:a\r\n$3\r\nset\r\n").await;
    expect(&mut sub, ">4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n$16\r\n__keyspace@0__:b\r\n$3\r\nset\r\n").await;
}
