//! Fan-out benchmark (a program, not a timed test): one RESP write delivered to N WebSocket
//! sync clients of the hub, against one `PUBLISH` delivered to N subscribers of a Debian
//! `redis-server`, in the same run, with the same client style (one tokio task and one
//! socket per client, reading into one buffer and parsing the RESP frames it receives,
//! stamping the arrival; a hub client also strips each 2-byte WebSocket frame header).
//!
//! Both servers run at once with their clients connected; the writes alternate between
//! them (who goes first swaps every write), each waiting until every client has it (or
//! 2 s) before the next one, so writes never overlap and each pair meets about the same
//! machine state. Latency = arrival − send, over every (write, client) pair. Prints
//! p50 / p99 / max for both, the medians of the first and the last client's latency per
//! write (how soon a server starts, how long its whole fan-out takes), the servers' CPU
//! time, and the ratio.
//!
//! ```sh
//! cargo bench -p recached-hub --bench fanout                     # 1000 clients, 200 writes
//! cargo bench -p recached-hub --bench fanout -- --clients 200 --writes 50
//! ```
//!
//! Options: `--clients N` (1000), `--writes N` (200 per server), `--warmup N` (20),
//! `--interval-ms N` (5, pause after each write), `--client-threads N` (1: the clients
//! share one core, the servers get the other), `--hub-client raw|tungstenite` (raw: the
//! hub's clients read their socket as the Redis clients do; tungstenite: through
//! tokio-tungstenite, which costs the client more per message), `--redis-server PATH`
//! (`redis-server`), `--redis-ports A-B` (7300-7399), `--time-limit S` (300: everything it
//! started is killed and it exits 2), `--per-write PATH` (appends `server write first last`
//! per measured write, in µs: whether a tail is one server's or the machine's). Against
//! another hub: `RECACHED_SYNC_TARGET` as for the sync suites; hub flags through the
//! environment (`RECACHED_*`).

#[path = "../tests/sync_support/mod.rs"]
#[allow(unused_imports)]
mod sync_support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use recached_engine::resp::Frame;
use sync_support::raw::{self, ConnectOpts};
use sync_support::{b, Backend, Hub, HubOpts, RespConn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Clone)]
struct Args {
    clients: usize,
    writes: usize,
    warmup: usize,
    interval_ms: u64,
    client_threads: usize,
    redis_server: String,
    redis_ports: (u16, u16),
    time_limit: u64,
    tungstenite: bool,
    per_write: Option<String>,
}

fn args() -> Args {
    let mut a = Args { clients: 1000, writes: 200, warmup: 20, interval_ms: 5, client_threads: 1, redis_server: "redis-server".into(), redis_ports: (7300, 7399), time_limit: 300, tungstenite: false, per_write: None };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        let num = || val.parse::<u64>().unwrap_or_else(|_| panic!("{} needs a number", v[i]));
        match v[i].as_str() {
            "--clients" => a.clients = num() as usize,
            "--writes" => a.writes = num() as usize,
            "--warmup" => a.warmup = num() as usize,
            "--interval-ms" => a.interval_ms = num(),
            "--client-threads" => a.client_threads = num().max(1) as usize,
            "--redis-server" => a.redis_server = val.clone(),
            "--redis-ports" => {
                let (x, y) = val.split_once('-').expect("--redis-ports A-B");
                a.redis_ports = (x.parse().expect("port"), y.parse().expect("port"));
            }
            "--time-limit" => a.time_limit = num(),
            "--per-write" => a.per_write = Some(val.clone()),
            "--hub-client" => {
                a.tungstenite = match val.as_str() {
                    "raw" => false,
                    "tungstenite" => true,
                    _ => panic!("--hub-client raw|tungstenite"),
                }
            }
            _ => {
                i += 1; // `--bench` from cargo, and anything unknown
                continue;
            }
        }
        i += 2;
    }
    a
}

/// Pids this program started, killed by the watchdog if the time limit passes.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Forgets a pid once its process was reaped (so a reused pid is never signalled).
fn forget_child(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
}

fn kill_children() {
    extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    for pid in CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        // SAFETY: sending SIGKILL to a process this program started.
        unsafe {
            kill(pid as i32, 9);
        }
    }
}

/// A redis-server on a free port of the range, killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    async fn start(path: &str, (lo, hi): (u16, u16), maxclients: usize) -> Redis {
        for port in lo..=hi {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            let child = Command::new(path)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""])
                .args(["--protected-mode", "no", "--maxclients", &(maxclients + 100).to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
            CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(child.id());
            let mut r = Redis { child, port };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(200), tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
                    let _ = s.write_all(b"PING\r\n").await;
                    let mut buf = [0u8; 16];
                    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                        if buf[..n].starts_with(b"+PONG") {
                            return r;
                        }
                    }
                }
                if let Ok(Some(_)) = r.child.try_wait() {
                    break; // lost the port race: try the next one
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = r.child.kill();
            let _ = r.child.wait();
            forget_child(r.child.id());
        }
        panic!("no redis-server could start in {lo}-{hi}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        forget_child(self.child.id());
    }
}

/// Arrivals per write: how many clients have write i.
type Arrived = Arc<Vec<AtomicU32>>;

/// One client's stamps: (write index, arrival).
type Stamps = Vec<(u32, Instant)>;

/// What a client task returns: its stamps and its connection, still open. The connections
/// close only when the bench collects them, after the last write: a client closing the
/// moment it has its last message would put that server's teardown of the others inside
/// the last write's fan-out (it cost the hub's last write 3-5x its median).
type Done = (Stamps, Box<dyn std::any::Any + Send>);

fn index_of(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Records the arrival of the write whose index is the value `v`.
fn stamp(v: Option<&Frame>, now: Instant, stamps: &mut Stamps, arrived: &Arrived) {
    if let Some(i) = v.and_then(|v| v.as_bytes()).and_then(|v| index_of(v)) {
        stamps.push((i, now));
        arrived[i as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A hub sync client: HELLO + SUB in one message, then stamps every `sync.change`.
///
/// After the HTTP upgrade it reads the socket itself, as the Redis subscriber does: one
/// buffer, `read_buf`, then the frames parsed with `parse_bytes` (strings sliced from what
/// was read, not copied). A server's WebSocket frame is a 2–10 byte header before the
/// payload (unmasked), so the per-message work is the Redis client's plus that header.
/// (`--hub-client tungstenite` reads through tokio-tungstenite instead, which allocates a
/// message per frame.)
async fn hub_client(url: String, token: String, id: usize, arrived: Arrived, ready: Arc<AtomicU32>, total: usize, tungstenite: bool) -> Done {
    let mut hello = Vec::new();
    for c in [vec![b("SYNC.HELLO"), b("1"), b(&token), b(&format!("bench-{id}"))], vec![b("SYNC.SUB"), b("1"), b("bench:*")]] {
        recached_engine::resp::encode_command(&c, &mut hello);
    }
    let mut stamps = Vec::with_capacity(total);
    let mut live = false;
    let mut on_frame = |f: Frame, now: Instant, stamps: &mut Stamps| {
        // As little work as the Redis subscriber does: index into the parsed frame.
        let Frame::Push(items) = f else { return };
        match items.first().and_then(|k| k.as_bytes()).map(|k| k.as_ref()) {
            Some(b"sync.live") if !live => {
                live = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            // One change comes flat (`sync.change :off SET k v`), a larger group nested.
            Some(b"sync.change") => match items.get(2) {
                Some(Frame::Array(cs)) => cs.iter().for_each(|c| stamp(c.as_items().and_then(|a| a.get(2)), now, stamps, &arrived)),
                _ => stamp(items.get(4), now, stamps, &arrived),
            },
            _ => {}
        }
    };
    if tungstenite {
        let mut ws = raw::connect(&url, &ConnectOpts::default()).await.unwrap_or_else(|e| panic!("client {id}: {e}"));
        ws.send(Message::Binary(Bytes::from(hello))).await.expect("send HELLO");
        while let Some(Ok(m)) = ws.next().await {
            let Message::Binary(data) = m else { continue };
            let now = Instant::now();
            let Ok(frames) = raw::frames(&data) else { panic!("client {id}: bad message") };
            for f in frames {
                on_frame(f, now, &mut stamps);
            }
            if stamps.len() >= total {
                break;
            }
        }
        return (stamps, Box::new(ws));
    }
    let (mut s, head) = ws_upgrade(&url).await.unwrap_or_else(|e| panic!("client {id}: {e}"));
    let mut buf = BytesMut::from(&head[..]);
    s.write_all(&client_frame(&hello)).await.expect("send HELLO");
    let limits = Default::default();
    loop {
        let now = Instant::now();
        let mut data = buf.split().freeze();
        while let Some(payload) = server_frame(&data) {
            // `data` itself steps over the header, each RESP frame and the rest of the
            // WebSocket frame (no slice of it per message, as the Redis client has none).
            data.advance(payload.start);
            let mut left = payload.len();
            while left > 0 {
                let Ok(Some((f, m))) = recached_engine::resp::parse_bytes(&data, &limits) else { break };
                if m > left {
                    break;
                }
                data.advance(m);
                left -= m;
                on_frame(f, now, &mut stamps);
            }
            data.advance(left);
        }
        buf.extend_from_slice(&data);
        drop(data);
        if stamps.len() >= total {
            break;
        }
        buf.reserve(4096);
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    (stamps, Box::new(s))
}

/// Opens a TCP connection and performs the WebSocket upgrade by hand. Returns the socket
/// and whatever followed the response head.
async fn ws_upgrade(url: &str) -> std::result::Result<(tokio::net::TcpStream, Vec<u8>), String> {
    let (host, port) = raw::host_port(url);
    let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let path = url.strip_prefix("ws://").and_then(|r| r.find('/').map(|i| &r[i..])).unwrap_or("/");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                return Err(format!("upgrade refused: {}", String::from_utf8_lossy(&buf[..end])));
            }
            buf.drain(..end + 4);
            return Ok((s, buf));
        }
        buf.reserve(4096);
        match tokio::time::timeout(Duration::from_secs(10), s.read_buf(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return Err("upgrade: no response".into()),
            Ok(Ok(_)) => {}
        }
    }
}

/// A client data frame: FIN + binary, masked with a zero key (RFC 6455 requires the mask
/// bit on client frames; the key's value is the client's choice).
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x82];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    out
}

/// Where the payload of the whole server frame at the start of `buf` lies (it ends the
/// frame), or `None` when the frame is not all there. Control frames come back too (their
/// payload parses as no RESP frame).
fn server_frame(buf: &[u8]) -> Option<std::ops::Range<usize>> {
    let len = *buf.get(1)? & 0x7f;
    let (len, head) = match len {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    (buf.len() >= head + len).then_some(head..head + len)
}

/// A Redis subscriber: SUBSCRIBE, then stamps every message.
async fn redis_client(port: u16, id: usize, arrived: Arrived, ready: Arc<AtomicU32>, total: usize) -> Done {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("subscriber {id}: {e}"));
    let _ = s.set_nodelay(true);
    s.write_all(&sync_support::encode(&["SUBSCRIBE", "bench"])).await.expect("subscribe");
    let mut buf = BytesMut::with_capacity(4096);
    let mut stamps = Vec::with_capacity(total);
    let limits = Default::default();
    loop {
        buf.reserve(4096);
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        let mut data = buf.split().freeze();
        while let Ok(Some((f, n))) = recached_engine::resp::parse_bytes(&data, &limits) {
            data.advance(n);
            let Some(items) = f.as_items() else { continue };
            match items.first().and_then(|k| k.as_bytes()).map(|k| k.as_ref()) {
                Some(b"subscribe") => {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                Some(b"message") => stamp(items.get(2), now, &mut stamps, &arrived),
                _ => {}
            }
        }
        buf.extend_from_slice(&data);
        drop(data);
        if stamps.len() >= total {
            break;
        }
    }
    (stamps, Box::new(s))
}

struct Result {
    /// CPU seconds the server used during the measured writes (from /proc).
    cpu: f64,
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
    samples: usize,
    missing: usize,
    /// CPU seconds the clients spent receiving the measured writes (this program).
    client_cpu: f64,
    /// Median over writes of the first client's latency (how soon the server starts).
    first: f64,
    /// Median over writes of the last client's latency (how long the whole fan-out takes).
    last: f64,
}

fn percentiles(mut us: Vec<f64>, expected: usize) -> Result {
    us.sort_by(|a, b| a.total_cmp(b));
    let n = us.len().max(1);
    let at = |p: f64| us.get(((n as f64 * p) as usize).min(n - 1)).copied().unwrap_or(f64::NAN);
    Result { cpu: 0.0, p50: at(0.50), p99: at(0.99), max: us.last().copied().unwrap_or(f64::NAN), mean: us.iter().sum::<f64>() / n as f64, samples: us.len(), missing: expected.saturating_sub(us.len()), client_cpu: 0.0, first: f64::NAN, last: f64::NAN }
}

/// One server under test: its writer connection, its clients and what they saw.
struct Side {
    be: Backend,
    /// The write command for write `i`.
    cmd: fn(u32) -> Vec<Bytes>,
    arrived: Arrived,
    tasks: Vec<tokio::task::JoinHandle<Done>>,
    pid: Option<u32>,
    sent: Vec<Instant>,
    /// CPU seconds this program (the clients) spent on the measured writes.
    client_cpu: f64,
}

impl Side {
    /// Sends write `i` and waits (up to 2 s) until every client has it.
    async fn write(&mut self, a: &Args, i: usize) {
        let cpu0 = cpu_secs(Some(std::process::id()));
        let t = Instant::now();
        let r = self.be.cmd(&(self.cmd)(i as u32)).await;
        assert!(matches!(r, Frame::Simple(_) | Frame::Int(_)), "write {i}: {r:?}");
        self.sent.push(t);
        let deadline = Instant::now() + Duration::from_secs(2);
        while (self.arrived[i].load(Ordering::Relaxed) as usize) < a.clients && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if i >= a.warmup {
            self.client_cpu += cpu_secs(Some(std::process::id())) - cpu0;
        }
    }
}

fn latencies(a: &Args, name: &str, sent: &[Instant], stamps: Vec<Stamps>) -> Result {
    let mut us = Vec::with_capacity(a.clients * a.writes);
    let mut span = vec![(f64::INFINITY, 0f64); sent.len()];
    for s in stamps {
        for (i, t) in s {
            let i = i as usize;
            if i >= a.warmup && i < sent.len() {
                let v = t.saturating_duration_since(sent[i]).as_secs_f64() * 1e6;
                us.push(v);
                span[i] = (span[i].0.min(v), span[i].1.max(v));
            }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let measured = &span[a.warmup.min(span.len())..];
    if let Some(path) = &a.per_write {
        // One line per measured write: server, write index, first and last client (µs).
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for (i, s) in measured.iter().enumerate() {
            let _ = writeln!(f, "{name} {i} {:.0} {:.0}", s.0, s.1);
        }
    }
    let first = median(measured.iter().map(|s| s.0).filter(|v| v.is_finite()).collect());
    let last = median(measured.iter().map(|s| s.1).collect());
    Result { first, last, ..percentiles(us, a.clients * a.writes) }
}

async fn wait_ready(ready: &AtomicU32, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while (ready.load(Ordering::Relaxed) as usize) < n {
        assert!(Instant::now() < deadline, "{what}: only {} of {n} clients ready", ready.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spawns `a.clients` client tasks (in bursts of 100) and waits until all are subscribed.
async fn spawn_clients<F, Fut>(a: &Args, what: &str, mut client: F) -> (Arrived, Vec<tokio::task::JoinHandle<Done>>)
where
    F: FnMut(usize, Arrived, Arc<AtomicU32>, usize) -> Fut,
    Fut: std::future::Future<Output = Done> + Send + 'static,
{
    let total = a.warmup + a.writes;
    let arrived: Arrived = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let ready = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for id in 0..a.clients {
        tasks.push(tokio::spawn(client(id, arrived.clone(), ready.clone(), total)));
        if id % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_ready(&ready, a.clients, what).await;
    (arrived, tasks)
}

async fn hub_side(a: &Args, hub: &Hub) -> Side {
    let token = hub.token("bench", &["bench:*"], &[], 3_600_000);
    let (url, tungstenite) = (hub.ws_url.clone(), a.tungstenite);
    let (arrived, tasks) = spawn_clients(a, "hub", |id, arrived, ready, total| hub_client(url.clone(), token.clone(), id, arrived, ready, total, tungstenite)).await;
    let cmd: fn(u32) -> Vec<Bytes> = |i| vec![b("SET"), b("bench:k"), b(&i.to_string())];
    Side { be: hub.backend().await, cmd, arrived, tasks, pid: hub.pid(), sent: Vec::new(), client_cpu: 0.0 }
}

async fn redis_side(a: &Args, redis: &Redis) -> Side {
    let port = redis.port;
    let (arrived, tasks) = spawn_clients(a, "redis", |id, arrived, ready, total| redis_client(port, id, arrived, ready, total)).await;
    let cmd: fn(u32) -> Vec<Bytes> = |i| vec![b("PUBLISH"), b("bench"), b(&i.to_string())];
    Side { be: Backend::Tcp(RespConn::connect(port).await), cmd, arrived, tasks, pid: Some(redis.child.id()), sent: Vec::new(), client_cpu: 0.0 }
}

/// Both servers up with their clients at once; the writes alternate between them (who goes
/// first swaps every write), so each pair of writes meets about the same machine state.
async fn bench(a: &Args) -> (Result, Result) {
    let hub = Hub::start(HubOpts::new());
    if let Some(p) = hub.pid() {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }
    let redis = Redis::start(&a.redis_server, a.redis_ports, a.clients).await;
    let mut sides = [hub_side(a, &hub).await, redis_side(a, &redis).await];
    let mut cpu0 = [0.0; 2];
    for i in 0..a.warmup + a.writes {
        if i == a.warmup {
            for (k, s) in sides.iter().enumerate() {
                cpu0[k] = cpu_secs(s.pid);
            }
        }
        for k in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            sides[k].write(a, i).await;
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
    }
    let cpu: Vec<f64> = sides.iter().enumerate().map(|(k, s)| cpu_secs(s.pid) - cpu0[k]).collect();
    let mut results = Vec::new();
    for (k, s) in sides.into_iter().enumerate() {
        let stamps = collect(s.tasks).await;
        results.push(Result { cpu: cpu[k], client_cpu: s.client_cpu, ..latencies(a, ["recached", "redis"][k], &s.sent, stamps) });
    }
    let pid = hub.pid();
    drop(hub);
    if let Some(p) = pid {
        forget_child(p);
    }
    drop(redis);
    let redis = results.pop().expect("two results");
    (results.pop().expect("two results"), redis)
}

/// Waits (bounded) for the client tasks; clients that never got everything are aborted
/// and count as missing samples.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Done>>) -> Vec<Stamps> {
    let mut out = Vec::new();
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok((s, _connection))) => out.push(s),
            _ => abort.abort(),
        }
    }
    out
}

fn line(name: &str, r: &Result) -> String {
    format!(
        "{name:<28} p50 {:>8.0} µs   p99 {:>8.0} µs   max {:>8.0} µs   mean {:>8.0} µs   first/last client (median) {:>6.0}/{:>6.0} µs   server CPU {:>5.2} s   client CPU {:>5.2} s   ({} samples, {} missing)",
        r.p50, r.p99, r.max, r.mean, r.first, r.last, r.cpu, r.client_cpu, r.samples, r.missing
    )
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat`, clock ticks of 10 ms).
fn cpu_secs(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return f64::NAN };
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) / 100.0
}

fn main() {
    let a = args();
    let nofile = sync_support::raise_nofile_limit();
    assert!(nofile as usize > a.clients * 2 + 100, "RLIMIT_NOFILE is {nofile}; {} clients need more", a.clients);
    let limit = Duration::from_secs(a.time_limit);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("fanout: time limit {limit:?} reached; killing everything it started");
        kill_children();
        std::process::exit(2);
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(a.client_threads).enable_all().build().expect("runtime");
    let (hub, redis) = rt.block_on(bench(&a));
    rt.shutdown_timeout(Duration::from_secs(2));
    kill_children();
    println!("fan-out of one write to {} clients, {} writes (+{} warm-up), client threads {}, hub client {}:", a.clients, a.writes, a.warmup, a.client_threads, if a.tungstenite { "tungstenite" } else { "raw" });
    println!("{}", line("recached (WebSocket sync)", &hub));
    println!("{}", line("redis-server (PUBLISH)", &redis));
    println!("ratio recached/redis: p50 {:.2}   p99 {:.2}", hub.p50 / redis.p50, hub.p99 / redis.p99);
}
