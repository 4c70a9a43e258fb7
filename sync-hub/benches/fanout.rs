//! Fan-out benchmark (a program, not a timed test): one RESP write delivered to N WebSocket
//! sync clients of the hub, against one `PUBLISH` delivered to N subscribers of a Debian
//! `redis-server`, in the same run, with the same client style (one tokio task and one
//! socket per client, each parsing the frames it receives and stamping the arrival).
//!
//! For each of `--writes` writes the writer stamps the send, then waits until every client
//! has it (or 2 s) before the next one, so writes never overlap; latency = arrival − send,
//! over every (write, client) pair. Prints p50 / p99 / max for both and the ratio.
//!
//! ```sh
//! cargo bench -p recached-hub --bench fanout                     # 1000 clients, 200 writes
//! cargo bench -p recached-hub --bench fanout -- --clients 200 --writes 50
//! ```
//!
//! Options: `--clients N` (1000), `--writes N` (200), `--warmup N` (20), `--interval-ms N`
//! (5, pause between writes), `--client-threads N` (1: the clients share one core, the
//! server gets the other), `--redis-server PATH` (`redis-server`), `--redis-ports A-B`
//! (7300-7399), `--time-limit S` (300: everything it started is killed and it exits 2).
//! Against another hub: `RECACHED_SYNC_TARGET` as for the sync suites.

#[path = "../tests/sync_support/mod.rs"]
#[allow(unused_imports)]
mod sync_support;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
}

fn args() -> Args {
    let mut a = Args { clients: 1000, writes: 200, warmup: 20, interval_ms: 5, client_threads: 1, redis_server: "redis-server".into(), redis_ports: (7300, 7399), time_limit: 300 };
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

fn index_of(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// A hub sync client: HELLO + SUB in one message, then stamps every `sync.change`.
async fn hub_client(url: String, token: String, id: usize, arrived: Arrived, ready: Arc<AtomicU32>, total: usize) -> Stamps {
    let mut ws = raw::connect(&url, &ConnectOpts::default()).await.unwrap_or_else(|e| panic!("client {id}: {e}"));
    let mut hello = Vec::new();
    for c in [vec![b("SYNC.HELLO"), b("1"), b(&token), b(&format!("bench-{id}"))], vec![b("SYNC.SUB"), b("1"), b("bench:*")]] {
        recached_engine::resp::encode_command(&c, &mut hello);
    }
    ws.send(Message::Binary(Bytes::from(hello))).await.expect("send HELLO");
    let mut stamps = Vec::with_capacity(total);
    let mut live = false;
    while let Some(Ok(m)) = ws.next().await {
        let Message::Binary(data) = m else { continue };
        let now = Instant::now();
        let Ok(frames) = raw::frames(&data) else { panic!("client {id}: bad message") };
        for f in frames {
            // As little work as the Redis subscriber does: index into the parsed frame.
            let Frame::Push(items) = f else { continue };
            match items.first().and_then(|k| k.as_bytes()).map(|k| k.as_ref()) {
                Some(b"sync.live") if !live => {
                    live = true;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                Some(b"sync.change") => {
                    for c in items.get(2).and_then(|c| c.as_items()).unwrap_or(&[]) {
                        if let Some(i) = c.as_items().and_then(|a| a.get(2)).and_then(|v| v.as_bytes()).and_then(|v| index_of(v)) {
                            stamps.push((i, now));
                            arrived[i as usize].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                _ => {}
            }
        }
        if stamps.len() >= total {
            break;
        }
    }
    stamps
}

/// A Redis subscriber: SUBSCRIBE, then stamps every message.
async fn redis_client(port: u16, id: usize, arrived: Arrived, ready: Arc<AtomicU32>, total: usize) -> Stamps {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap_or_else(|e| panic!("subscriber {id}: {e}"));
    let _ = s.set_nodelay(true);
    s.write_all(&sync_support::encode(&["SUBSCRIBE", "bench"])).await.expect("subscribe");
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut stamps = Vec::with_capacity(total);
    loop {
        buf.reserve(4096);
        match s.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        let mut pos = 0;
        while let Ok(Some((f, n))) = recached_engine::resp::parse(&buf[pos..], &Default::default()) {
            pos += n;
            let Some(items) = f.as_items() else { continue };
            match items.first().and_then(|k| k.as_bytes()).map(|k| k.as_ref()) {
                Some(b"subscribe") => {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                Some(b"message") => {
                    if let Some(i) = items.get(2).and_then(|v| v.as_bytes()).and_then(|v| index_of(v)) {
                        stamps.push((i, now));
                        arrived[i as usize].fetch_add(1, Ordering::Relaxed);
                    }
                }
                _ => {}
            }
        }
        buf.drain(..pos);
        if stamps.len() >= total {
            break;
        }
    }
    stamps
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
}

fn percentiles(mut us: Vec<f64>, expected: usize) -> Result {
    us.sort_by(|a, b| a.total_cmp(b));
    let n = us.len().max(1);
    let at = |p: f64| us.get(((n as f64 * p) as usize).min(n - 1)).copied().unwrap_or(f64::NAN);
    Result { cpu: 0.0, p50: at(0.50), p99: at(0.99), max: us.last().copied().unwrap_or(f64::NAN), mean: us.iter().sum::<f64>() / n as f64, samples: us.len(), missing: expected.saturating_sub(us.len()) }
}

/// Sends the writes one at a time (each after the previous one reached everyone) and
/// returns their send stamps.
async fn drive<F, Fut>(a: &Args, arrived: &Arrived, mut write: F) -> Vec<Instant>
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let total = a.warmup + a.writes;
    let mut sent = Vec::with_capacity(total);
    for i in 0..total {
        let t = Instant::now();
        write(i as u32).await;
        sent.push(t);
        let deadline = Instant::now() + Duration::from_secs(2);
        while (arrived[i].load(Ordering::Relaxed) as usize) < a.clients && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    }
    sent
}

fn latencies(a: &Args, sent: &[Instant], stamps: Vec<Stamps>) -> Result {
    let mut us = Vec::with_capacity(a.clients * a.writes);
    for s in stamps {
        for (i, t) in s {
            let i = i as usize;
            if i >= a.warmup && i < sent.len() {
                us.push(t.saturating_duration_since(sent[i]).as_secs_f64() * 1e6);
            }
        }
    }
    percentiles(us, a.clients * a.writes)
}

async fn wait_ready(ready: &AtomicU32, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while (ready.load(Ordering::Relaxed) as usize) < n {
        assert!(Instant::now() < deadline, "{what}: only {} of {n} clients ready", ready.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bench_hub(a: &Args) -> Result {
    let hub = Hub::start(HubOpts::new());
    if let Some(p) = hub.pid() {
        CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    }
    let token = hub.token("bench", &["bench:*"], &[], 3_600_000);
    let total = a.warmup + a.writes;
    let arrived: Arrived = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let ready = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for id in 0..a.clients {
        tasks.push(tokio::spawn(hub_client(hub.ws_url.clone(), token.clone(), id, arrived.clone(), ready.clone(), total)));
        if id % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_ready(&ready, a.clients, "hub").await;
    let be = tokio::sync::Mutex::new(hub.backend().await);
    let cpu0 = cpu_secs(hub.pid());
    let sent = drive(a, &arrived, |i| {
        let be = &be;
        async move {
            let mut be = be.lock().await;
            let r = be.cmd(&[b("SET"), b("bench:k"), b(&i.to_string())]).await;
            assert!(matches!(r, Frame::Simple(_)), "SET: {r:?}");
        }
    })
    .await;
    let cpu = cpu_secs(hub.pid()) - cpu0;
    let stamps = collect(tasks).await;
    let pid = hub.pid();
    drop(hub);
    if let Some(p) = pid {
        forget_child(p);
    }
    Result { cpu, ..latencies(a, &sent, stamps) }
}

async fn bench_redis(a: &Args) -> Result {
    let redis = Redis::start(&a.redis_server, a.redis_ports, a.clients).await;
    let total = a.warmup + a.writes;
    let arrived: Arrived = Arc::new((0..total).map(|_| AtomicU32::new(0)).collect());
    let ready = Arc::new(AtomicU32::new(0));
    let mut tasks = Vec::new();
    for id in 0..a.clients {
        tasks.push(tokio::spawn(redis_client(redis.port, id, arrived.clone(), ready.clone(), total)));
        if id % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_ready(&ready, a.clients, "redis").await;
    let be = tokio::sync::Mutex::new(Backend::Tcp(RespConn::connect(redis.port).await));
    let cpu0 = cpu_secs(Some(redis.child.id()));
    let sent = drive(a, &arrived, |i| {
        let be = &be;
        async move {
            let mut be = be.lock().await;
            let r = be.cmd(&[b("PUBLISH"), b("bench"), b(&i.to_string())]).await;
            assert!(matches!(r, Frame::Int(_)), "PUBLISH: {r:?}");
        }
    })
    .await;
    let cpu = cpu_secs(Some(redis.child.id())) - cpu0;
    let stamps = collect(tasks).await;
    drop(redis);
    Result { cpu, ..latencies(a, &sent, stamps) }
}

/// Waits (bounded) for the client tasks; clients that never got everything are aborted
/// and count as missing samples.
async fn collect(tasks: Vec<tokio::task::JoinHandle<Stamps>>) -> Vec<Stamps> {
    let mut out = Vec::new();
    for t in tasks {
        let abort = t.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), t).await {
            Ok(Ok(s)) => out.push(s),
            _ => abort.abort(),
        }
    }
    out
}

fn line(name: &str, r: &Result) -> String {
    format!(
        "{name:<28} p50 {:>8.0} µs   p99 {:>8.0} µs   max {:>8.0} µs   mean {:>8.0} µs   server CPU {:>5.2} s   ({} samples, {} missing)",
        r.p50, r.p99, r.max, r.mean, r.cpu, r.samples, r.missing
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
    let (hub, redis) = rt.block_on(async {
        let hub = bench_hub(&a).await;
        let redis = bench_redis(&a).await;
        (hub, redis)
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    kill_children();
    println!("fan-out of one write to {} clients, {} writes (+{} warm-up), client threads {}:", a.clients, a.writes, a.warmup, a.client_threads);
    println!("{}", line("recached (WebSocket sync)", &hub));
    println!("{}", line("redis-server (PUBLISH)", &redis));
    println!("ratio recached/redis: p50 {:.2}   p99 {:.2}", hub.p50 / redis.p50, hub.p99 / redis.p99);
}
