//! Test harness shared by the hub's integration tests: start "the server under test" as a
//! process on a free port, talk raw RESP to it, run client programs against it.
//!
//! The same suites run against recached (the default, once the `recached` binary is built)
//! and against a real `redis-server`, which proves the tests themselves are right:
//!
//! ```sh
//! cargo test -p recached-hub                              # recached
//! RECACHED_TEST_SERVER=redis cargo test -p recached-hub   # Debian redis-server 7
//! RECACHED_TEST_SERVER=/path/to/binary cargo test ...     # any recached build
//! ```
//!
//! Redis has no `--port 0`, so for it the harness picks a free port in
//! `RECACHED_TEST_REDIS_PORTS` (default `7200-7299`).
//!
//! Every wait is bounded: server start, every socket read, every client program. A
//! `Server` kills its process on drop.

#![allow(dead_code)] // each test binary uses a different part of the harness

#[path = "../procs/mod.rs"]
mod procs;
pub use procs::{encode, proc_status_kb, raise_nofile_limit, OutputTail};

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long a server may take to say it is ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one socket read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which program is under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The recached hub binary at this path (prints its port on a Ready line).
    Recached(PathBuf),
    /// A `redis-server` (started on a port the harness picks).
    Redis(PathBuf),
}

impl Kind {
    /// The server named by `RECACHED_TEST_SERVER` (`redis`, `recached`, or a path), else
    /// the `recached` binary cargo built for this test, else `redis-server`.
    pub fn from_env() -> Kind {
        let built = option_env!("CARGO_BIN_EXE_recached").map(PathBuf::from);
        match std::env::var("RECACHED_TEST_SERVER").ok().as_deref() {
            Some("redis") | Some("redis-server") => Kind::Redis(redis_server_path()),
            Some("recached") | Some("") | None => match built {
                Some(p) => Kind::Recached(p),
                None => Kind::Redis(redis_server_path()),
            },
            Some(path) if path.contains("redis-server") => Kind::Redis(PathBuf::from(path)),
            Some(path) => Kind::Recached(PathBuf::from(path)),
        }
    }

    /// True for a real Redis.
    pub fn is_redis(&self) -> bool {
        matches!(self, Kind::Redis(_))
    }
}

fn redis_server_path() -> PathBuf {
    std::env::var_os("RECACHED_TEST_REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// Options for a server start; each maps to the same-named flag of both servers.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub requirepass: Option<String>,
    pub maxclients: Option<u32>,
    pub maxmemory: Option<String>,
    pub maxmemory_policy: Option<String>,
    pub timeout: Option<u32>,
    /// Extra `--flag value` pairs passed through unchanged.
    pub extra: Vec<(String, String)>,
}

impl Opts {
    pub fn new() -> Opts {
        Opts::default()
    }
    pub fn requirepass(mut self, p: &str) -> Opts {
        self.requirepass = Some(p.to_string());
        self
    }
    pub fn maxclients(mut self, n: u32) -> Opts {
        self.maxclients = Some(n);
        self
    }
    pub fn timeout(mut self, s: u32) -> Opts {
        self.timeout = Some(s);
        self
    }
    pub fn flag(mut self, name: &str, value: &str) -> Opts {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        let mut push = |k: &str, v: String| {
            a.push(format!("--{k}"));
            a.push(v);
        };
        if let Some(p) = &self.requirepass {
            push("requirepass", p.clone());
        }
        if let Some(n) = self.maxclients {
            push("maxclients", n.to_string());
        }
        if let Some(m) = &self.maxmemory {
            push("maxmemory", m.clone());
        }
        if let Some(p) = &self.maxmemory_policy {
            push("maxmemory-policy", p.clone());
        }
        if let Some(t) = self.timeout {
            push("timeout", t.to_string());
        }
        for (k, v) in &self.extra {
            push(k, v.clone());
        }
        a
    }
}

/// A running server under test, killed on drop.
pub struct Server {
    child: Child,
    /// The TCP (RESP) port it listens on.
    pub port: u16,
    /// What is running.
    pub kind: Kind,
    /// The password it was started with.
    pub password: Option<String>,
    /// Its recent stdout/stderr lines.
    pub output: OutputTail,
}

static NEXT_REDIS_PORT: AtomicU16 = AtomicU16::new(0);

fn redis_port_range() -> (u16, u16) {
    let spec = std::env::var("RECACHED_TEST_REDIS_PORTS").unwrap_or_else(|_| "7200-7299".into());
    let mut it = spec.split('-').map(|s| s.trim().parse::<u16>().ok());
    match (it.next().flatten(), it.next().flatten()) {
        (Some(a), Some(b)) if a <= b => (a, b),
        _ => (7200, 7299),
    }
}

/// A port in the Redis range that nothing listens on now. Successive calls in one
/// process hand out different ports, so parallel tests do not race for one.
fn pick_redis_port() -> u16 {
    let (lo, hi) = redis_port_range();
    let span = hi - lo + 1;
    for _ in 0..span {
        let n = NEXT_REDIS_PORT.fetch_add(1, Ordering::Relaxed) % span;
        let port = lo + n;
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(50)).is_err()
        {
            return port;
        }
    }
    panic!("no free port in {lo}-{hi} for redis-server (set RECACHED_TEST_REDIS_PORTS)");
}

fn drain<R: Read + Send + 'static>(r: R, tail: OutputTail, ready: Option<mpsc::Sender<u16>>) {
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
            if let Some(tx) = &ready {
                if let Some(port) = parse_ready_line(&s) {
                    let _ = tx.send(port);
                }
            }
            if std::env::var_os("RECACHED_TEST_SERVER_LOG").is_some() {
                eprintln!("[server] {s}");
            }
            tail.push(s);
        }
    });
}

/// The port in `Ready to accept connections tcp port=<port>`.
pub fn parse_ready_line(line: &str) -> Option<u16> {
    let at = line.find("Ready to accept connections")?;
    let rest = &line[at..];
    let p = rest.find("port=")?;
    let digits: String = rest[p + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

impl Server {
    /// Starts the server under test with default options.
    pub fn start() -> Server {
        Server::start_with(&Opts::new())
    }

    /// Starts the server under test with `opts`; panics (with its output) if it does not
    /// become ready within [`START_TIMEOUT`].
    pub fn start_with(opts: &Opts) -> Server {
        Server::start_kind(Kind::from_env(), opts)
    }

    /// Starts a given server program.
    pub fn start_kind(kind: Kind, opts: &Opts) -> Server {
        raise_nofile_limit();
        let mut cmd;
        let mut fixed_port = None;
        match &kind {
            Kind::Recached(path) => {
                cmd = Command::new(path);
                cmd.args(["--port", "0", "--ws-port", "0", "--bind", "127.0.0.1"]);
            }
            Kind::Redis(path) => {
                let port = pick_redis_port();
                fixed_port = Some(port);
                cmd = Command::new(path);
                cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
                cmd.args(["--daemonize", "no", "--logfile", "", "--protected-mode", "no"]);
            }
        }
        cmd.args(opts.args());
        // Hermetic: no RECACHED_* setting of the caller leaks into the server.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RECACHED_") {
                cmd.env_remove(&k);
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start server {kind:?}: {e}"));
        let output = OutputTail::default();
        let (tx, rx) = mpsc::channel();
        let ready_tx = if fixed_port.is_none() { Some(tx) } else { None };
        drain(child.stdout.take().expect("piped stdout"), output.clone(), ready_tx.clone());
        drain(child.stderr.take().expect("piped stderr"), output.clone(), ready_tx);
        let deadline = Instant::now() + START_TIMEOUT;
        let port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!("server {kind:?} exited before ready ({status}); output:\n{}", output.text());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("server {kind:?} not ready in {START_TIMEOUT:?}; output:\n{}", output.text());
            }
            match fixed_port {
                None => {
                    if let Ok(p) = rx.recv_timeout(Duration::from_millis(50)) {
                        break p;
                    }
                }
                Some(p) => {
                    if ping_ok(p, opts.requirepass.as_deref()) {
                        break p;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        Server { child, port, kind, password: opts.requirepass.clone(), output }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A new raw connection (not authenticated).
    pub fn connect(&self) -> Conn {
        Conn::connect(self.port)
    }

    /// A new connection, authenticated if the server has a password.
    pub fn client(&self) -> Conn {
        let mut c = self.connect();
        if let Some(p) = &self.password {
            let r = c.cmd(&["AUTH", p]);
            assert_eq!(r, Reply::Simple("OK".into()), "AUTH failed");
        }
        c
    }

    /// Resident set size in kB (`VmRSS`).
    pub fn rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmRSS").unwrap_or(0)
    }

    /// Peak resident set size in kB (`VmHWM`).
    pub fn peak_rss_kb(&self) -> u64 {
        proc_status_kb(self.pid(), "VmHWM").unwrap_or(0)
    }

    /// Fails the test (with the server's output) unless it still runs and answers PING.
    pub fn assert_serving(&mut self) {
        assert!(self.alive(), "server died; output:\n{}", self.output.text());
        let mut c = self.client();
        assert_eq!(c.cmd(&["PING"]), Reply::Simple("PONG".into()), "server does not answer PING");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("--- last output of server {:?} (port {}) ---\n{}", self.kind, self.port, self.output.text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ping_ok(port: u16, pass: Option<&str>) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let req: &[u8] = if pass.is_some() { b"*1\r\n$4\r\nPING\r\n" } else { b"PING\r\n" };
    if s.write_all(req).is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    // Either PONG or NOAUTH proves it is up and speaking RESP.
    matches!(s.read(&mut buf), Ok(n) if n > 0 && (buf[0] == b'+' || buf[0] == b'-'))
}

/// The soft `RLIMIT_NOFILE` of this process.
pub fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(1024)
}

// ---------------------------------------------------------------------------------------
// Replies and a minimal RESP client
// ---------------------------------------------------------------------------------------

/// One RESP2/RESP3 reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    Set(Vec<Reply>),
    Push(Vec<Reply>),
    Double(String),
    Bool(bool),
    Verbatim(String, Vec<u8>),
    BigNumber(String),
}

impl Reply {
    /// A bulk reply holding `s`.
    pub fn bulk(s: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(s.as_ref().to_vec())
    }
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }
    /// The bulk's bytes, or panics.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Reply::Bulk(b) => b,
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }
}

/// Parses one reply from the start of `buf`: `Ok(None)` if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line_at(buf: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let rel = buf.get(pos..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[pos..pos + rel], pos + rel + 2))
}

fn parse_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    if depth > 1000 {
        return Err("reply nested too deeply".into());
    }
    let Some(&t) = buf.get(pos) else { return Ok(None) };
    let Some((line, next)) = line_at(buf, pos + 1) else { return Ok(None) };
    let text = || String::from_utf8_lossy(line).to_string();
    let int = || -> Result<i64, String> { text().parse::<i64>().map_err(|e| format!("bad length {:?}: {e}", text())) };
    let aggregate = |n: i64, depth: usize, mut pos: usize| -> Result<Option<(Vec<Reply>, usize)>, String> {
        let mut items = Vec::new();
        for _ in 0..n {
            match parse_at(buf, pos, depth + 1)? {
                None => return Ok(None),
                Some((r, p)) => {
                    items.push(r);
                    pos = p;
                }
            }
        }
        Ok(Some((items, pos)))
    };
    let blob = |n: i64| -> Option<(Vec<u8>, usize)> {
        let n = n as usize;
        if buf.len() < next + n + 2 {
            return None;
        }
        Some((buf[next..next + n].to_vec(), next + n + 2))
    };
    Ok(match t {
        b'+' => Some((Reply::Simple(text()), next)),
        b'-' => Some((Reply::Error(text()), next)),
        b':' => Some((Reply::Int(int()?), next)),
        b',' => Some((Reply::Double(text()), next)),
        b'(' => Some((Reply::BigNumber(text()), next)),
        b'#' => Some((Reply::Bool(line == b"t"), next)),
        b'_' => Some((Reply::Nil, next)),
        b'$' | b'!' | b'=' => {
            let n = int()?;
            if n < 0 {
                Some((Reply::Nil, next))
            } else {
                match blob(n) {
                    None => None,
                    Some((b, p)) if t == b'=' => {
                        let (fmt, body) = if b.len() >= 4 { (b[..3].to_vec(), b[4..].to_vec()) } else { (b.clone(), vec![]) };
                        Some((Reply::Verbatim(String::from_utf8_lossy(&fmt).into(), body), p))
                    }
                    Some((b, p)) if t == b'!' => Some((Reply::Error(String::from_utf8_lossy(&b).into()), p)),
                    Some((b, p)) => Some((Reply::Bulk(b), p)),
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let n = int()?;
            if n < 0 {
                Some((Reply::Nil, next))
            } else {
                aggregate(n, depth, next)?.map(|(items, p)| {
                    let r = match t {
                        b'*' => Reply::Array(items),
                        b'~' => Reply::Set(items),
                        _ => Reply::Push(items),
                    };
                    (r, p)
                })
            }
        }
        b'%' => {
            let n = int()?;
            aggregate(n.max(0) * 2, depth, next)?.map(|(items, p)| {
                let mut it = items.into_iter();
                let mut pairs = Vec::new();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                (Reply::Map(pairs), p)
            })
        }
        other => return Err(format!("unknown reply type byte {:?} at {pos}", other as char)),
    })
}

/// What a read ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer closed the connection (FIN).
    Eof,
    /// The peer reset the connection.
    Reset,
    /// Nothing more arrived within the timeout; the connection is still open.
    Open,
}

/// A raw client connection with bounded reads.
pub struct Conn {
    pub stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Conn {
    /// Connects to 127.0.0.1:`port` (bounded).
    pub fn connect(port: u16) -> Conn {
        let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {port}: {e}"));
        Conn::from_stream(stream)
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        Conn { stream, buf: Vec::new(), timeout: IO_TIMEOUT }
    }

    /// Sets the bound on each read.
    pub fn set_timeout(&mut self, d: Duration) {
        self.timeout = d;
        let _ = self.stream.set_read_timeout(Some(d));
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command and reads its reply.
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        self.send(&encode(args)).expect("write command");
        self.reply()
    }

    /// Reads one reply; panics on timeout or close.
    pub fn reply(&mut self) -> Reply {
        self.try_reply().unwrap_or_else(|e| panic!("reading reply: {e}"))
    }

    /// Reads one reply, or says why none came.
    pub fn try_reply(&mut self) -> Result<Reply, String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some((r, n)) = parse_reply(&self.buf)? {
                self.buf.drain(..n);
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(format!("timeout after {:?}; buffered {:?}", self.timeout, lossy(&self.buf)));
            }
            if self.fill()? == 0 {
                return Err(format!("connection closed; buffered {:?}", lossy(&self.buf)));
            }
        }
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(format!("timeout after {:?}; buffered {:?}", self.timeout, lossy(&self.buf)))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(1),
            Err(e) => Err(format!("read error: {e}; buffered {:?}", lossy(&self.buf))),
        }
    }

    /// Reads exactly `n` raw bytes (bounded by the timeout).
    pub fn read_exact_bytes(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + self.timeout;
        while self.buf.len() < n {
            if Instant::now() > deadline {
                return Err(format!("timeout waiting for {n} bytes; have {:?}", lossy(&self.buf)));
            }
            if self.fill()? == 0 {
                return Err(format!("closed after {:?}, wanted {n} bytes", lossy(&self.buf)));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads `expected.len()` bytes and asserts they equal `expected`.
    pub fn expect_bytes(&mut self, expected: &[u8]) {
        match self.read_exact_bytes(expected.len()) {
            Ok(got) => assert_eq!(lossy(&got), lossy(expected)),
            Err(e) => panic!("expected {:?}: {e}", lossy(expected)),
        }
    }

    /// Reads everything until the peer closes or `quiet` passes with nothing new;
    /// returns the bytes and how it ended.
    pub fn read_to_end(&mut self, quiet: Duration) -> (Vec<u8>, End) {
        let _ = self.stream.set_read_timeout(Some(quiet));
        let mut chunk = [0u8; 65536];
        let end = loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => break End::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break End::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break End::Reset,
            }
        };
        let _ = self.stream.set_read_timeout(Some(self.timeout));
        (std::mem::take(&mut self.buf), end)
    }

    /// Half-closes the write side.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// Bytes as a readable string for assertion messages.
pub fn lossy(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b.iter().take(400) {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > 400 {
        s.push_str(&format!("…(+{} bytes)", b.len() - 400));
    }
    s
}

// ---------------------------------------------------------------------------------------
// Client programs
// ---------------------------------------------------------------------------------------

/// Folder of the client programs (`tests/clients`).
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("clients")
}

/// Where scripts/setup.sh installs the Python venv and node_modules.
pub fn tools_dir() -> PathBuf {
    if let Some(t) = std::env::var_os("RECACHED_TOOLS") {
        return PathBuf::from(t);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache").join("recached-tools")
}

/// True when missing client tools must fail the test rather than skip it.
pub fn clients_required() -> bool {
    matches!(std::env::var("RECACHED_REQUIRE_CLIENTS").as_deref(), Ok("1") | Ok("true") | Ok("yes"))
}

/// Reports a missing client tool: panics under `RECACHED_REQUIRE_CLIENTS=1`, otherwise
/// prints a loud skip notice. Returns so the caller can `return` (skip).
pub fn missing_tool(test: &str, what: &str) {
    let msg = format!("{test}: {what} is missing (run scripts/setup.sh)");
    if clients_required() {
        panic!("{msg}; RECACHED_REQUIRE_CLIENTS=1 so this is a failure");
    }
    // Straight to the stderr handle: libtest captures eprintln!, and a skip must be seen.
    let stars = "*".repeat(70);
    let _ = writeln!(
        io::stderr(),
        "\n{stars}\nSKIPPED {msg}\nset RECACHED_REQUIRE_CLIENTS=1 to make this a failure\n{stars}\n"
    );
}

/// Whether `program` runs (`program args…` exits 0 within 20 s).
pub fn tool_works(program: &Path, args: &[&str], env: &[(&str, String)]) -> bool {
    let mut c = Command::new(program);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    match run_bounded(&mut c, Duration::from_secs(20)) {
        Ok(out) => out.status.map(|s| s.success()).unwrap_or(false),
        Err(_) => false,
    }
}

/// Known incompatibilities (`tests/known-failures.txt`): test or `suite:section` name →
/// the finding it is pinned to. Empty against redis-server, which must pass everything,
/// and under `RECACHED_IGNORE_KNOWN_FAILURES=1`.
pub fn known_failures() -> Vec<(String, String)> {
    if Kind::from_env().is_redis() || std::env::var_os("RECACHED_IGNORE_KNOWN_FAILURES").is_some() {
        return Vec::new();
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("known-failures.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut it = l.splitn(2, char::is_whitespace);
            let name = it.next().unwrap_or("").to_string();
            (name, it.next().unwrap_or("").trim().to_string())
        })
        .collect()
}

/// The finding a known failure is pinned to, if `name` is listed.
pub fn known_failure(name: &str) -> Option<String> {
    known_failures().into_iter().find(|(n, _)| n == name).map(|(_, f)| f)
}

fn loud(msg: &str) {
    let stars = "*".repeat(70);
    let _ = writeln!(io::stderr(), "\n{stars}\n{msg}\n{stars}\n");
}

/// Runs a test body; if it fails and `name` is a listed known failure, reports it loudly
/// instead of failing, so main stays green while the incompatibility stays visible.
pub fn guard(name: &str, body: impl FnOnce() + std::panic::UnwindSafe) {
    let known = known_failure(name);
    match std::panic::catch_unwind(body) {
        Ok(()) => {
            if let Some(f) = known {
                loud(&format!("FIXED? {name} passes but is listed as a known failure ({f}); remove it from tests/known-failures.txt"));
            }
        }
        Err(e) => match known {
            Some(f) => loud(&format!("KNOWN FAILURE {name}: {f} (see docs/compat-findings.md)")),
            None => std::panic::resume_unwind(e),
        },
    }
}

/// Declares a `#[test]` run through [`guard`] under the name `<test binary>::<fn>`, so
/// listing that name in tests/known-failures.txt tolerates (and reports) its failure.
#[allow(unused_macros)]
macro_rules! compat_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            common::guard(concat!(module_path!(), "::", stringify!($name)), || $body);
        }
    };
}

/// What a bounded run produced.
pub struct RunOutput {
    /// `None` if it was killed at the time limit.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// Runs a command with captured output, killing it after `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> io::Result<RunOutput> {
    let start = Instant::now();
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    Ok(RunOutput { status, stdout, stderr, elapsed: start.elapsed() })
}

/// Runs a client program against `port` and fails the test unless it exits 0 in time.
/// The program gets the port(s) as arguments and prints what it checked.
pub fn run_client(name: &str, cmd: &mut Command, limit: Duration) {
    let out = run_bounded(cmd, limit).unwrap_or_else(|e| panic!("{name}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- {name} stdout ---\n{stdout}--- {name} stderr ---\n{stderr}--- {name} took {:?}", out.elapsed);
    let failed: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FAIL "))
        .map(|l| format!("{name}:{}", l.split([':', ' ']).next().unwrap_or("")))
        .collect();
    let known = known_failures();
    let is_known = |f: &String| known.iter().any(|(k, _)| k == f);
    for (k, finding) in &known {
        if k.starts_with(&format!("{name}:")) && !failed.contains(k) && out.status.is_some() {
            loud(&format!("FIXED? {k} passes but is listed as a known failure ({finding}); remove it from tests/known-failures.txt"));
        }
    }
    match out.status {
        None => panic!("{name}: killed after {limit:?}"),
        Some(s) if !s.success() => {
            if !failed.is_empty() && failed.iter().all(is_known) {
                for f in &failed {
                    let finding = known.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str()).unwrap_or("");
                    loud(&format!("KNOWN FAILURE {f}: {finding} (see docs/compat-findings.md)"));
                }
                return;
            }
            let unknown: Vec<&String> = failed.iter().filter(|f| !is_known(f)).collect();
            panic!("{name}: exited with {s}; failed sections not in known-failures.txt: {unknown:?}\n{stdout}\n{stderr}")
        }
        Some(_) => {}
    }
}
