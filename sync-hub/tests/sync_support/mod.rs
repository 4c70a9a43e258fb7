//! Shared support for the live-sync conformance suites (`tests/sync_*.rs`) and the fan-out
//! benchmark: start "the hub under test", mint tokens for it, talk to it as a backend
//! (RESP over TCP, or RESP over WebSocket where a hub has no TCP side), and drive real
//! sync clients ([`client::TestClient`], the engine's `sync::client` state machine over
//! tokio-tungstenite).
//!
//! Everything is parameterized by the target (`RECACHED_SYNC_TARGET`, see
//! `tests/README.md`), so the same suites run against the native hub and the edge hub:
//!
//! - unset or `native`: the `recached` binary cargo built for this test, one process per
//!   [`Hub`], started with `--port 0 --ws-port 0 --sync-secret <random> …`;
//! - a path: a launcher program taking the same flags and printing the same `Ready …`
//!   lines (`ws url=<url>` may replace `ws port=<p>`; without a `tcp port=` line the
//!   backend speaks RESP over a WebSocket with an unrestricted token);
//! - `ws://…` / `wss://…`: a hub that is already running; `{ns}` in the URL becomes a fresh
//!   namespace per [`Hub`], the secret comes from `RECACHED_SYNC_SECRET`, and suites that
//!   need hub flags (a tiny backlog, a small outbound buffer) are skipped loudly.
//!
//! Every wait is bounded. A [`Hub`] kills its process on drop.

#![allow(dead_code)] // each test binary uses a different part

pub mod client;
#[path = "../procs/mod.rs"]
mod procs;
pub mod raw;
pub mod state;

pub use procs::{encode, proc_status_kb, raise_nofile_limit, OutputTail};

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use recached_engine::resp::{parse, Frame, Limits};
use recached_engine::sync::token::{mint, Claims};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a hub may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on one reply from a backend connection.
pub const IO_TIMEOUT: Duration = Duration::from_secs(15);

/// Unix milliseconds now (the hub runs on the same clock).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Bytes from a string.
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A command from words.
pub fn cmd(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| b(p)).collect()
}

/// A seed: `RECACHED_SYNC_SEED` when set (to replay a failure), else from the clock.
pub fn random_seed() -> u64 {
    if let Some(s) = std::env::var("RECACHED_SYNC_SEED").ok().and_then(|s| s.parse().ok()) {
        return s;
    }
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    t ^ (std::process::id() as u64).rotate_left(32)
}

/// Prints straight to the terminal (libtest captures `eprintln!` of passing tests; seeds
/// and skips must be seen).
pub fn loud(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

// ---------------------------------------------------------------------------------------
// Target and hub
// ---------------------------------------------------------------------------------------

/// What the suites run against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A program started per hub with the flags contract (the native `recached` binary, or
    /// a launcher for another hub).
    Program {
        /// The program.
        path: PathBuf,
        /// True for the native binary (its environment is made hermetic).
        native: bool,
    },
    /// A hub that is already running at this WebSocket URL (`{ns}`: fresh namespace).
    Url(String),
}

impl Target {
    /// The target named by `RECACHED_SYNC_TARGET`.
    pub fn from_env() -> Target {
        let built = option_env!("CARGO_BIN_EXE_recached").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("recached"));
        match std::env::var("RECACHED_SYNC_TARGET").ok().as_deref() {
            None | Some("") | Some("native") => Target::Program { path: built, native: true },
            Some(u) if u.starts_with("ws://") || u.starts_with("wss://") => Target::Url(u.to_string()),
            Some(p) => Target::Program { path: PathBuf::from(p), native: false },
        }
    }
}

/// Hub settings a suite needs. Each maps to a flag of the start contract.
#[derive(Debug, Clone)]
pub struct HubOpts {
    /// Run with a token secret (the default) or open (no secret, no tokens).
    pub secret: bool,
    /// `--sync-backlog-bytes`.
    pub backlog_bytes: Option<u64>,
    /// `--sync-max-buffer` (each socket's outbound bound).
    pub max_buffer: Option<u64>,
    /// Extra `--flag value` pairs.
    pub extra: Vec<(String, String)>,
}

impl Default for HubOpts {
    fn default() -> HubOpts {
        HubOpts { secret: true, backlog_bytes: None, max_buffer: None, extra: Vec::new() }
    }
}

impl HubOpts {
    /// Default settings with a secret.
    pub fn new() -> HubOpts {
        HubOpts::default()
    }
    /// Sets the backlog bound.
    pub fn backlog_bytes(mut self, n: u64) -> HubOpts {
        self.backlog_bytes = Some(n);
        self
    }
    /// Sets the outbound buffer bound.
    pub fn max_buffer(mut self, n: u64) -> HubOpts {
        self.max_buffer = Some(n);
        self
    }
    /// Adds a flag.
    pub fn flag(mut self, name: &str, value: &str) -> HubOpts {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }
    fn needs_flags(&self) -> bool {
        self.backlog_bytes.is_some() || self.max_buffer.is_some() || !self.extra.is_empty() || !self.secret
    }
}

#[derive(Debug, Clone, PartialEq)]
enum ReadyLine {
    Tcp(u16),
    WsPort(u16),
    WsUrl(String),
    /// `Hub process pid=<n>`: a launcher names the process that runs the hub (for RSS and
    /// descriptor checks), when it is not the launcher itself.
    Pid(u32),
    /// `Hub lacks <capability> …`: a check this hub cannot support, skipped loudly.
    Lacks(String),
}

fn parse_ready(line: &str) -> Option<ReadyLine> {
    if let Some(p) = line.strip_prefix("Hub process pid=") {
        return p.trim().parse().ok().map(ReadyLine::Pid);
    }
    if let Some(cap) = line.strip_prefix("Hub lacks ") {
        return cap.split_whitespace().next().map(|c| ReadyLine::Lacks(c.to_string()));
    }
    let at = line.find("Ready to accept connections")?;
    let rest = &line[at + "Ready to accept connections".len()..];
    let rest = rest.trim();
    let (what, kv) = rest.split_once(char::is_whitespace)?;
    let kv = kv.trim();
    let num = |v: &str| v.chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok();
    match what {
        "tcp" => kv.strip_prefix("port=").and_then(num).map(ReadyLine::Tcp),
        "ws" => {
            if let Some(p) = kv.strip_prefix("port=") {
                num(p).map(ReadyLine::WsPort)
            } else {
                kv.strip_prefix("url=").map(|u| ReadyLine::WsUrl(u.split_whitespace().next().unwrap_or("").to_string()))
            }
        }
        _ => None,
    }
}

static NEXT_NS: AtomicU64 = AtomicU64::new(0);

/// A hub under test.
pub struct Hub {
    child: Option<Child>,
    /// Where sync clients connect.
    pub ws_url: String,
    /// The RESP (TCP) port, when the hub has one.
    pub tcp_port: Option<u16>,
    /// The token secret (`None`: an open hub).
    pub secret: Option<Vec<u8>>,
    /// Its recent output.
    pub output: OutputTail,
    /// The settings it was started with.
    pub opts: HubOpts,
    /// Whether this is the native binary (its own process is the hub).
    native: bool,
    /// The hub's process as its launcher reported it (`Hub process pid=`).
    runtime_pid: Option<u32>,
    /// Capabilities the hub says it lacks (`Hub lacks …`).
    lacks: Vec<String>,
    /// The program (for [`Hub::restart`]).
    path: PathBuf,
}

impl Hub {
    /// Starts a hub with `opts`, or returns `None` (after a loud skip notice) when the
    /// target cannot take those settings (a fixed URL).
    pub fn start_or_skip(test: &str, opts: HubOpts) -> Option<Hub> {
        match Target::from_env() {
            Target::Url(url) => {
                if opts.needs_flags() {
                    loud(&format!("\n*** SKIPPED {test}: the target {url} is already running and cannot take {opts:?} ***\n"));
                    return None;
                }
                let ns = format!("t{}-{}-{}", std::process::id(), NEXT_NS.fetch_add(1, Ordering::Relaxed), now_ms() % 100_000);
                let secret = std::env::var("RECACHED_SYNC_SECRET").ok().map(|s| s.into_bytes());
                Some(Hub {
                    child: None,
                    ws_url: url.replace("{ns}", &ns),
                    tcp_port: None,
                    secret,
                    output: OutputTail::default(),
                    opts,
                    native: false,
                    runtime_pid: None,
                    lacks: Vec::new(),
                    path: PathBuf::new(),
                })
            }
            Target::Program { path, native } => {
                let secret = opts.secret.then(|| format!("sync-test-secret-{:x}", random_seed()).into_bytes());
                Some(Hub::spawn(&path, native, opts, secret, None))
            }
        }
    }

    /// Starts a native hub (one the harness can stop and start again with its data, as a
    /// restart test needs), or returns `None` after a loud skip notice when the target is
    /// another hub: the edge's persistence lives in Durable Object storage and has its own
    /// tests (`edge-worker/tests/edge.test.cjs`).
    pub fn start_native_or_skip(test: &str, opts: HubOpts) -> Option<Hub> {
        match Target::from_env() {
            Target::Program { native: true, .. } => Hub::start_or_skip(test, opts),
            other => {
                loud(&format!("\n*** SKIPPED {test}: it restarts a native hub process, and the target is {other:?} ***\n"));
                None
            }
        }
    }

    /// Starts a hub with `opts`; panics if the target cannot take them.
    pub fn start(opts: HubOpts) -> Hub {
        Hub::start_or_skip("(hub)", opts).expect("the sync target cannot take these hub settings")
    }

    fn spawn(path: &PathBuf, native: bool, opts: HubOpts, secret: Option<Vec<u8>>, ports: Option<(u16, u16)>) -> Hub {
        raise_nofile_limit();
        let mut c = Command::new(path);
        let (tcp, ws) = ports.map(|(t, w)| (t.to_string(), w.to_string())).unwrap_or(("0".into(), "0".into()));
        c.args(["--port", &tcp, "--ws-port", &ws, "--bind", "127.0.0.1"]);
        if let Some(s) = &secret {
            c.args(["--sync-secret", &String::from_utf8_lossy(s)]);
        }
        if let Some(n) = opts.backlog_bytes {
            c.args(["--sync-backlog-bytes", &n.to_string()]);
        }
        if let Some(n) = opts.max_buffer {
            c.args(["--sync-max-buffer", &n.to_string()]);
        }
        for (k, v) in &opts.extra {
            c.arg(format!("--{k}"));
            c.arg(v);
        }
        if native {
            for (k, _) in std::env::vars_os() {
                if k.to_string_lossy().starts_with("RECACHED_") {
                    c.env_remove(&k);
                }
            }
        }
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap_or_else(|e| panic!("cannot start {path:?}: {e}"));
        let output = OutputTail::default();
        let (tx, rx) = mpsc::channel();
        drain(child.stdout.take(), output.clone(), Some(tx.clone()));
        drain(child.stderr.take(), output.clone(), Some(tx));
        let deadline = Instant::now() + START_TIMEOUT;
        let mut tcp = None;
        let (mut runtime_pid, mut lacks) = (None, Vec::new());
        let ws_url = loop {
            if let Ok(Some(status)) = child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!("hub {path:?} exited before ready ({status}); output:\n{}", output.text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hub {path:?} not ready in {START_TIMEOUT:?}; output:\n{}", output.text());
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(ReadyLine::Tcp(p)) => tcp = Some(p),
                Ok(ReadyLine::Pid(p)) => runtime_pid = Some(p),
                Ok(ReadyLine::Lacks(c)) => lacks.push(c),
                Ok(ReadyLine::WsPort(p)) => break format!("ws://127.0.0.1:{p}/"),
                Ok(ReadyLine::WsUrl(u)) => break u,
                Err(_) => {}
            }
        };
        Hub { child: Some(child), ws_url, tcp_port: tcp, secret, output, opts, native, runtime_pid, lacks, path: path.clone() }
    }

    /// Stops the hub (SIGKILL with `kill`, else SIGTERM and a wait for its exit) and starts
    /// it again with the same flags, secret and ports, so clients reconnect to the same URL
    /// (a hub with persistence then comes back with its data). Native hubs only.
    pub fn restart(&mut self, kill: bool) {
        let Some(mut child) = self.child.take() else { panic!("restart needs a hub this harness started") };
        if kill {
            let _ = child.kill();
        } else {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let _ = child.wait();
        let ws_port = raw::host_port(&self.ws_url).1;
        let tcp = self.tcp_port.expect("a native hub has a TCP port");
        let next = Hub::spawn(&self.path, self.native, self.opts.clone(), self.secret.clone(), Some((tcp, ws_port)));
        *self = next;
    }

    /// The hub's process id, when it runs here: the native binary's own, or the process a
    /// launcher named (`Hub process pid=`). A launcher that names none has no pid to
    /// measure (its own RSS and descriptors are not the hub's).
    pub fn pid(&self) -> Option<u32> {
        if self.native {
            self.child.as_ref().map(|c| c.id())
        } else {
            self.runtime_pid
        }
    }

    /// Whether the hub said it lacks `capability` (`Hub lacks <capability>`): the suites
    /// skip exactly those checks, with a notice.
    pub fn lacks(&self, capability: &str) -> bool {
        self.lacks.iter().any(|c| c == capability)
    }

    /// Whether the process still runs (always true for a remote hub).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Resident set size in kB, when the hub runs here.
    pub fn rss_kb(&self) -> Option<u64> {
        self.pid().and_then(|p| proc_status_kb(p, "VmRSS"))
    }

    /// Open file descriptors of the hub (sockets included), when it runs here.
    pub fn fd_count(&self) -> Option<usize> {
        let pid = self.pid()?;
        std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
    }

    /// The hub's Prometheus text from `GET /metrics` on the sync port (plain HTTP), when it
    /// serves one there: beside the WebSocket path (`…/v1/ns/{ns}/ws` → `…/v1/ns/{ns}/metrics`
    /// on the edge hub, whose metrics are per namespace), else at the root.
    pub async fn metrics(&self) -> Option<String> {
        let (host, port) = raw::host_port(&self.ws_url);
        let ws_path = self.ws_url.split_once("://").and_then(|(_, r)| r.find('/').map(|i| &r[i..])).unwrap_or("/");
        let path = match ws_path.strip_suffix("/ws") {
            Some(prefix) => format!("{prefix}/metrics"),
            None => "/metrics".to_string(),
        };
        let fut = async {
            let mut s = TcpStream::connect((host.as_str(), port)).await.ok()?;
            let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut body = Vec::new();
            s.read_to_end(&mut body).await.ok()?;
            let text = String::from_utf8_lossy(&body).into_owned();
            let (head, body) = text.split_once("\r\n\r\n")?;
            head.starts_with("HTTP/1.1 200").then(|| body.to_string())
        };
        tokio::time::timeout(IO_TIMEOUT, fut).await.ok().flatten()
    }

    /// One sample of a metric (`name` or `name{labels}` exactly as printed).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics().await?;
        metric_value(&text, name)
    }

    /// A token for this hub (empty on an open hub): `read`/`write` patterns, valid for
    /// `ttl_ms` from now.
    pub fn token(&self, sub: &str, read: &[&str], write: &[&str], ttl_ms: u64) -> String {
        match &self.secret {
            Some(s) => mint_token(s, sub, read, write, now_ms() + ttl_ms),
            None => String::new(),
        }
    }

    /// An unrestricted token valid for an hour.
    pub fn admin_token(&self) -> String {
        self.token("admin", &["*"], &["*"], 3_600_000)
    }

    /// A backend connection: RESP over TCP when the hub has a TCP port, else RESP over a
    /// WebSocket with an unrestricted token.
    pub async fn backend(&self) -> Backend {
        match self.tcp_port {
            Some(p) => Backend::Tcp(RespConn::connect(p).await),
            None => Backend::Ws(Box::new(raw::WsCmd::connect(&self.ws_url, &self.admin_token()).await)),
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if thread::panicking() {
                eprintln!("--- last output of the hub ({}) ---\n{}", self.ws_url, self.output.text());
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>, tail: OutputTail, ready: Option<mpsc::Sender<ReadyLine>>) {
    let Some(r) = r else { return };
    thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let s = String::from_utf8_lossy(&line).trim_end().to_string();
            if let (Some(tx), Some(r)) = (&ready, parse_ready(&s)) {
                let _ = tx.send(r);
            }
            if std::env::var_os("RECACHED_TEST_SERVER_LOG").is_some() {
                eprintln!("[hub] {s}");
            }
            tail.push(s);
        }
    });
}

/// The value of `name` (or `name{labels}`) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Mints an HS256 token with the engine's own minting code.
pub fn mint_token(secret: &[u8], sub: &str, read: &[&str], write: &[&str], exp_ms: u64) -> String {
    let claims = Claims {
        sub: sub.to_string(),
        exp: exp_ms.div_ceil(1000),
        read: read.iter().map(|s| s.to_string()).collect(),
        write: write.iter().map(|s| s.to_string()).collect(),
    };
    mint(&claims, secret)
}

// ---------------------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------------------

/// A plain RESP2 connection over TCP (what a backend uses).
pub struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespConn {
    /// Connects to 127.0.0.1:`port`.
    pub async fn connect(port: u16) -> RespConn {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap_or_else(|_| panic!("connect to {port}: timeout"))
            .unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        let _ = stream.set_nodelay(true);
        RespConn { stream, buf: Vec::new() }
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write to the hub");
    }

    /// Reads one reply (bounded).
    pub async fn reply(&mut self) -> Frame {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match parse(&self.buf, &Limits::default()) {
                Ok(Some((f, n))) => {
                    self.buf.drain(..n);
                    return f;
                }
                Ok(None) => {}
                Err(e) => panic!("bad reply from the hub: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // Straight into the heap buffer: a stack array would sit in every future that
            // awaits this one (debug builds copy those around and overflow the stack).
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout(left, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) => panic!("hub closed the RESP connection"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("reading from the hub: {e}"),
                Err(_) => panic!("no reply from the hub in {IO_TIMEOUT:?}"),
            }
        }
    }
}

/// A backend connection to the hub under test.
pub enum Backend {
    /// RESP over TCP.
    Tcp(RespConn),
    /// RESP over a WebSocket (plain commands on a sync connection with an unrestricted
    /// token): for hubs without a TCP side.
    Ws(Box<raw::WsCmd>),
}

impl Backend {
    /// Runs one command.
    pub async fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Frame {
        let mut out = self.pipeline(&[args.iter().map(|a| Bytes::copy_from_slice(a.as_ref())).collect()]).await;
        out.pop().unwrap_or(Frame::Null)
    }

    /// Runs one command given as words.
    pub async fn run(&mut self, parts: &[&str]) -> Frame {
        self.cmd(parts).await
    }

    /// Sends commands in one write and reads their replies.
    pub async fn pipeline(&mut self, cmds: &[Vec<Bytes>]) -> Vec<Frame> {
        let mut bytes = Vec::new();
        for c in cmds {
            recached_engine::resp::encode_command(c, &mut bytes);
        }
        match self {
            Backend::Tcp(c) => {
                c.send(&bytes).await;
                let mut out = Vec::with_capacity(cmds.len());
                for _ in cmds {
                    out.push(c.reply().await);
                }
                out
            }
            Backend::Ws(w) => w.pipeline(bytes, cmds.len()).await,
        }
    }
}

/// A frame as text, for assertion messages.
pub fn show(f: &Frame) -> String {
    match f {
        Frame::Simple(b) => format!("+{}", String::from_utf8_lossy(b)),
        Frame::Error(b) => format!("-{}", String::from_utf8_lossy(b)),
        Frame::Bulk(b) | Frame::Verbatim(b) | Frame::BigNumber(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Frame::Int(i) => format!(":{i}"),
        Frame::Double(d) => format!(",{d}"),
        Frame::Bool(x) => format!("#{x}"),
        Frame::Null => "_".into(),
        Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => format!("[{}]", v.iter().map(show).collect::<Vec<_>>().join(", ")),
        Frame::Map(v) => format!("{{{}}}", v.iter().map(|(k, v)| format!("{}: {}", show(k), show(v))).collect::<Vec<_>>().join(", ")),
    }
}

/// The integer of an `:n` reply (or a bulk string holding one).
pub fn int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Int(i) => Some(*i),
        Frame::Bulk(b) | Frame::Simple(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
