//! End-to-end tests of the sync protocol in one process: a simulated hub (engine, backlog,
//! per-subscriber filtering through [`SyncHub`]) and simulated clients ([`SyncClient`])
//! exchanging real protocol bytes over simulated sockets with random delays, drops and
//! reconnects. No sockets, no threads, no clock reads.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;

use super::client::{ClientConfig, Event, Origin, Reconnect, Status, SyncClient};
use super::hub::{close, Auth, ConnId, DedupeChange, DedupeEntry, HubConfig, Output, SyncHub};
use super::message::{Ack, Push};
use super::scope::Scope;
use super::token::{mint, Claims};
use crate::command::lookup;
use crate::engine::{Config, Engine, NoHost, Session};
use crate::glob;
use crate::reply::Reply;
use crate::resp::{parse, Frame, Limits};
use crate::rng::Rng;
use crate::value::Value;

const SECRET: &[u8] = b"test-secret";
const T0: u64 = 1_700_000_000_000;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn args(parts: &[&str]) -> Vec<Bytes> {
    parts.iter().map(|p| b(p)).collect()
}

fn has(cmd: &str) -> bool {
    lookup(cmd.as_bytes()).is_some()
}

fn token(sub: &str, read: &[&str], write: &[&str], exp_ms: u64) -> String {
    let c = Claims { sub: sub.into(), exp: exp_ms / 1000, read: read.iter().map(|s| s.to_string()).collect(), write: write.iter().map(|s| s.to_string()).collect() };
    mint(&c, SECRET)
}

#[derive(Debug)]
enum Down {
    Msg(Bytes),
    Close(u16),
}

struct SimClient {
    c: SyncClient,
    conn: Option<ConnId>,
    up: VecDeque<Vec<u8>>,
    down: VecDeque<Down>,
    skew: i64,
    advice: Option<Reconnect>,
    read: Scope,
    sub: String,
    submitted: HashSet<u64>,
    settled: HashMap<u64, (usize, bool)>,
    incr_seqs: Vec<u64>,
    log_seqs: Vec<(u64, String)>,
    events: Vec<Event>,
    received_keys: Vec<Bytes>,
    closes: Vec<u16>,
}

struct Sim {
    engine: Engine,
    hub: SyncHub,
    now: u64,
    next_conn: u64,
    clients: Vec<SimClient>,
    backends: Vec<Session>,
    /// What a host keeping the dedupe memory would have stored ([`HubConfig::record_dedupe`]).
    stored: DedupeStore,
}

impl Sim {
    fn new(seed: u64, config: HubConfig) -> Sim {
        let engine = Engine::new(Config { seed, ..Config::default() });
        let hub = SyncHub::new(config, Auth::with_secret(SECRET), "a".repeat(40), engine.offset());
        let backends = (0..5).map(|i| Session::new(100 + i)).collect();
        Sim { engine, hub, now: T0, next_conn: 1000, clients: Vec::new(), backends, stored: DedupeStore::default() }
    }

    fn add_client(&mut self, sub: &str, read: &[&str], write: &[&str], patterns: &[&str], skew: i64) -> usize {
        let i = self.clients.len();
        let tok = token(sub, read, write, self.now + 36_000_000);
        let c = SyncClient::new(ClientConfig { client_id: format!("client-{i}"), token: tok, patterns: args(patterns), engine: Config::default() });
        self.clients.push(SimClient {
            c,
            conn: None,
            up: VecDeque::new(),
            down: VecDeque::new(),
            skew,
            advice: None,
            read: Scope::new(read.iter()),
            sub: sub.to_string(),
            submitted: HashSet::new(),
            settled: HashMap::new(),
            incr_seqs: Vec::new(),
            log_seqs: Vec::new(),
            events: Vec::new(),
            received_keys: Vec::new(),
            closes: Vec::new(),
        });
        i
    }

    fn local(&self, i: usize) -> u64 {
        (self.now as i64 + self.clients[i].skew) as u64
    }

    fn flush(&mut self, i: usize) {
        let cl = &mut self.clients[i];
        while let Some(m) = cl.c.take_outgoing() {
            if cl.conn.is_some() {
                cl.up.push_back(m);
            }
        }
        while let Some(e) = cl.c.poll_event() {
            match &e {
                Event::Acked { seq, .. } => {
                    let s = cl.settled.entry(*seq).or_insert((0, true));
                    s.0 += 1;
                }
                Event::Rejected { seq, .. } => {
                    let s = cl.settled.entry(*seq).or_insert((0, false));
                    s.0 += 1;
                    s.1 = false;
                }
                _ => {}
            }
            cl.events.push(e);
        }
    }

    fn connect(&mut self, i: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        self.hub.open(conn, self.now);
        let local = self.local(i);
        let cl = &mut self.clients[i];
        cl.conn = Some(conn);
        cl.advice = None;
        cl.c.on_open(local);
        self.flush(i);
    }

    fn route(&mut self, out: Output) {
        self.stored.apply(&out.dedupe);
        for (conn, bytes) in out.sends {
            if let Some(cl) = self.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                cl.down.push_back(Down::Msg(bytes));
            }
        }
        for (conn, close) in out.closes {
            if let Some(cl) = self.clients.iter_mut().find(|c| c.conn == Some(conn)) {
                cl.down.push_back(Down::Close(close.code));
            }
            self.hub.disconnect(&mut self.engine, conn);
        }
    }

    fn deliver_up(&mut self, i: usize) -> bool {
        let Some(conn) = self.clients[i].conn else { return false };
        let Some(msg) = self.clients[i].up.pop_front() else { return false };
        let out = self.hub.message(&mut self.engine, &mut NoHost, conn, &msg, self.now);
        self.route(out);
        true
    }

    fn deliver_down(&mut self, i: usize) -> bool {
        let Some(d) = self.clients[i].down.pop_front() else { return false };
        let local = self.local(i);
        match d {
            Down::Msg(bytes) => {
                self.inspect(i, &bytes);
                if let Err(e) = self.clients[i].c.on_message(&bytes, local) {
                    panic!("client {i} protocol error: {e}");
                }
            }
            Down::Close(code) => {
                let cl = &mut self.clients[i];
                cl.closes.push(code);
                cl.conn = None;
                cl.up.clear();
                cl.down.clear();
                cl.advice = Some(cl.c.on_close(code, local));
            }
        }
        self.flush(i);
        true
    }

    /// Records every key a client receives (snapshots, changes, acks).
    fn inspect(&mut self, i: usize, bytes: &[u8]) {
        let mut pos = 0;
        while pos < bytes.len() {
            let (f, n) = parse(&bytes[pos..], &Limits::default()).unwrap().unwrap();
            pos += n;
            let keys: Vec<Bytes> = match &f {
                Frame::Push(items) => match Push::decode(items).unwrap() {
                    Push::Change { changes, .. } => changes.iter().filter_map(|c| c.key().cloned()).collect(),
                    Push::Snap { entries, .. } => entries.into_iter().map(|e| e.key).collect(),
                    _ => Vec::new(),
                },
                other => match Ack::decode(other) {
                    Ok(a) => a.changes.unwrap_or_default().iter().filter_map(|c| c.key().cloned()).collect(),
                    Err(_) => Vec::new(),
                },
            };
            self.clients[i].received_keys.extend(keys);
        }
    }

    /// The network drops the link. With `hub_saw_it` the hub first handles what the
    /// client had sent (its answers are lost).
    fn drop_link(&mut self, i: usize, hub_saw_it: bool) {
        let Some(conn) = self.clients[i].conn else { return };
        if hub_saw_it {
            while self.deliver_up(i) {}
        }
        self.hub.disconnect(&mut self.engine, conn);
        let local = self.local(i);
        let cl = &mut self.clients[i];
        cl.conn = None;
        cl.up.clear();
        cl.down.clear();
        cl.advice = Some(cl.c.on_close(1006, local));
        self.flush(i);
    }

    fn backend(&mut self, k: usize, cmd: Vec<Bytes>) -> Reply {
        let reply = self.engine.execute(&mut self.backends[k], &cmd, self.now, &mut NoHost).into_reply();
        let groups = self.engine.take_changes();
        let out = self.hub.publish(&self.engine, &groups, self.now);
        self.route(out);
        reply
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.engine.sweep(self.now, 1000);
        let groups = self.engine.take_changes();
        let out = self.hub.publish(&self.engine, &groups, self.now);
        self.route(out);
        let out = self.hub.tick(self.now);
        self.route(out);
        for i in 0..self.clients.len() {
            let local = self.local(i);
            self.clients[i].c.tick(local);
            self.flush(i);
        }
    }

    fn submit(&mut self, i: usize, cmd: Vec<Bytes>) -> Option<u64> {
        let local = self.local(i);
        let s = self.clients[i].c.execute(&cmd, local);
        if let Some(seq) = s.seq {
            self.clients[i].submitted.insert(seq);
        }
        self.flush(i);
        s.seq
    }

    /// A write made for another writer (`SYNC.W AS origin seq`, what a leader tab sends
    /// for a follower tab).
    fn submit_as(&mut self, i: usize, origin: &str, seq: u64, cmd: Vec<Bytes>) -> Option<u64> {
        let local = self.local(i);
        let s = self.clients[i].c.execute_as(&cmd, Some(Origin { id: b(origin), seq }), local);
        if let Some(seq) = s.seq {
            self.clients[i].submitted.insert(seq);
        }
        self.flush(i);
        s.seq
    }

    fn submit_tx(&mut self, i: usize, cmds: Vec<Vec<Bytes>>) -> Option<u64> {
        let local = self.local(i);
        let s = self.clients[i].c.transaction(&cmds, local);
        if let Some(seq) = s.seq {
            self.clients[i].submitted.insert(seq);
        }
        self.flush(i);
        s.seq
    }

    fn deliver_all(&mut self) {
        loop {
            let mut any = false;
            for i in 0..self.clients.len() {
                while self.deliver_up(i) {
                    any = true;
                }
                while self.deliver_down(i) {
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Reconnects everyone and delivers everything until every client is live with no
    /// pending write.
    fn quiesce(&mut self) {
        for _ in 0..100 {
            for i in 0..self.clients.len() {
                if self.clients[i].conn.is_none() && self.clients[i].advice != Some(Reconnect::Stop) {
                    if self.clients[i].advice == Some(Reconnect::NewToken) {
                        let cl = &self.clients[i];
                        let read: Vec<String> = cl.read.patterns().iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect();
                        let read: Vec<&str> = read.iter().map(|s| s.as_str()).collect();
                        let tok = token(&cl.sub.clone(), &read, &read, self.now + 36_000_000);
                        self.clients[i].c.set_token(tok);
                    }
                    self.connect(i);
                }
            }
            self.deliver_all();
            self.advance(self.hub.config().heartbeat_ms + 1);
            self.deliver_all();
            let done = self.clients.iter().all(|c| c.conn.is_some() && c.c.status() == Status::Live && c.c.pending_len() == 0 && c.up.is_empty() && c.down.is_empty());
            if done {
                return;
            }
        }
        panic!("no quiescence");
    }

    /// Compares every client's visible keys with the hub's for its patterns and scope.
    fn check_converged(&self) {
        let now = self.now;
        let hub_db = self.engine.db(0).unwrap();
        let near = |at: u64| at != 0 && at + 2000 > now && at < now + 2000;
        for (i, cl) in self.clients.iter().enumerate() {
            let patterns = cl.c.patterns();
            let wanted = |k: &[u8]| patterns.iter().any(|p| glob::matches(p, k, false)) && cl.read.allows_key(k);
            let mut expect: HashMap<Bytes, (Value, u64)> = HashMap::new();
            for (k, e) in hub_db.iter() {
                if wanted(k) && !e.is_expired(now) {
                    expect.insert(Bytes::copy_from_slice(k), (e.value.clone(), e.expire_at));
                }
            }
            let cnow = cl.c.hub_time(self.local(i));
            let vis = cl.c.visible().db(0).unwrap();
            let mut got: HashMap<Bytes, (Value, u64)> = HashMap::new();
            for (k, e) in vis.iter() {
                if !e.is_expired(cnow) {
                    got.insert(Bytes::copy_from_slice(k), (e.value.clone(), e.expire_at));
                }
            }
            let keys: HashSet<&Bytes> = expect.keys().chain(got.keys()).collect();
            for k in keys {
                let (x, y) = (expect.get(k), got.get(k));
                if x == y {
                    continue;
                }
                let boundary = x.is_some_and(|(_, at)| near(*at)) || y.is_some_and(|(_, at)| near(*at));
                assert!(boundary, "client {i} diverged on {:?}: hub {:?} client {:?}", String::from_utf8_lossy(k), x, y);
            }
        }
    }
}

/// A random write over a small shared keyspace, from the command families the engine has.
fn gen_write(rng: &mut Rng, now: u64) -> Vec<Bytes> {
    let k = |rng: &mut Rng, p: &str, n: usize| format!("{p}:{}", rng.below(n));
    for _ in 0..50 {
        let choice = rng.below(34);
        let cmd: Vec<String> = match choice {
            0 | 1 => vec!["SET".into(), k(rng, "k", 6), format!("v{}", rng.below(100))],
            2 => vec!["SET".into(), k(rng, "k", 6), "x".into(), "PX".into(), format!("{}", 200 + rng.below(3000))],
            3 => vec!["SET".into(), k(rng, "k", 6), "y".into(), "NX".into()],
            4 => vec!["DEL".into(), k(rng, "k", 6)],
            5 => vec!["DEL".into(), k(rng, "h", 3), k(rng, "l", 3)],
            6 | 7 => vec!["INCR".into(), k(rng, "n", 3)],
            8 => vec!["INCRBY".into(), k(rng, "n", 3), format!("{}", rng.below(10))],
            9 => vec!["APPEND".into(), k(rng, "k", 6), "+".into()],
            10 => vec!["EXPIRE".into(), k(rng, "k", 6), format!("{}", 1 + rng.below(3))],
            11 => vec!["PERSIST".into(), k(rng, "k", 6)],
            12 => vec!["RENAME".into(), k(rng, "k", 6), k(rng, "k", 6)],
            13 => vec!["PEXPIREAT".into(), k(rng, "n", 3), format!("{}", now + 500 + rng.below(2000) as u64)],
            14 | 15 => vec!["HSET".into(), k(rng, "h", 3), k(rng, "f", 4), format!("{}", rng.below(9))],
            16 => vec!["HDEL".into(), k(rng, "h", 3), k(rng, "f", 4)],
            17 => vec!["HINCRBY".into(), k(rng, "h", 3), k(rng, "c", 2), "1".into()],
            18 | 19 => vec!["RPUSH".into(), k(rng, "l", 3), format!("e{}", rng.below(9))],
            20 => vec!["LPUSH".into(), k(rng, "l", 3), format!("e{}", rng.below(9))],
            21 => vec!["LPOP".into(), k(rng, "l", 3)],
            22 => vec!["LMOVE".into(), k(rng, "l", 3), k(rng, "l", 3), "LEFT".into(), "RIGHT".into()],
            23 | 24 => vec!["SADD".into(), k(rng, "s", 3), format!("m{}", rng.below(6))],
            25 => vec!["SREM".into(), k(rng, "s", 3), format!("m{}", rng.below(6))],
            26 => vec!["SPOP".into(), k(rng, "s", 3)],
            27 => vec!["SMOVE".into(), k(rng, "s", 3), k(rng, "s", 3), format!("m{}", rng.below(6))],
            28 | 29 => vec!["ZADD".into(), k(rng, "z", 3), format!("{}", rng.below(20)), format!("m{}", rng.below(6))],
            30 => vec!["ZINCRBY".into(), k(rng, "z", 3), "1.5".into(), format!("m{}", rng.below(6))],
            31 => vec!["ZREM".into(), k(rng, "z", 3), format!("m{}", rng.below(6))],
            32 => vec!["RENAME".into(), k(rng, "h", 3), k(rng, "h", 3)],
            _ => vec!["INCRBYFLOAT".into(), k(rng, "n", 3), "0.5".into()],
        };
        if has(&cmd[0]) {
            return cmd.iter().map(|s| b(s)).collect();
        }
    }
    args(&["SET", "k:0", "fallback"])
}

fn run_convergence(seed: u64, steps: usize) {
    println!("sync convergence seed {seed}");
    let mut sim = Sim::new(seed, HubConfig { backlog_bytes: 64 * 1024, ..HubConfig::default() });
    let mut rng = Rng::new(seed ^ 0x9e37);
    // 20 clients mirroring everything, 2 partial, 2 scoped to user:1:*; some skewed ±1 h.
    for i in 0..24 {
        let skew = match i % 4 {
            1 => 3_600_000,
            2 => -3_600_000,
            _ => rng.below(2000) as i64 - 1000,
        };
        match i {
            20 => sim.add_client("partial-a", &["*"], &["*"], &["k:*", "n:*"], skew),
            21 => sim.add_client("partial-b", &["*"], &["*"], &["[hlsz]:*", "c:*"], skew),
            22 | 23 => sim.add_client("user1", &["user:1:*"], &["user:1:*"], &["user:1:*"], skew),
            _ => sim.add_client(&format!("u{i}"), &["*"], &["*"], &["*"], skew),
        };
    }
    let n = sim.clients.len();
    // Some clients write before they ever connect.
    for i in [3, 22] {
        if i == 22 {
            sim.submit(i, args(&["SET", "user:2:x", "out of scope"]));
        }
        sim.submit(i, args(&["SET", "k:0", "early"]));
    }
    for i in 0..n {
        if rng.below(4) != 0 {
            sim.connect(i);
        }
    }
    let incr_ok = has("INCR");
    let log_ok = has("RPUSH");
    for step in 0..steps {
        let r = rng.below(100);
        let i = rng.below(n);
        match r {
            0..=24 => {
                let scoped = i >= 22;
                if scoped {
                    let key = if rng.below(5) == 0 { "user:2:a".to_string() } else { format!("user:1:{}", rng.below(3)) };
                    let cmd = if incr_ok && rng.below(2) == 0 { args(&["INCR", &key]) } else { args(&["SET", &key, &format!("s{step}")]) };
                    sim.submit(i, cmd);
                } else if incr_ok && rng.below(6) == 0 {
                    if let Some(seq) = sim.submit(i, args(&["INCR", &format!("c:{i}")])) {
                        sim.clients[i].incr_seqs.push(seq);
                    }
                } else if log_ok && rng.below(6) == 0 {
                    let v = format!("{i}-{step}");
                    if let Some(seq) = sim.submit(i, args(&["RPUSH", &format!("log:{i}"), &v])) {
                        sim.clients[i].log_seqs.push((seq, v));
                    }
                } else if rng.below(8) == 0 {
                    let cmds: Vec<Vec<Bytes>> = (0..2 + rng.below(2)).map(|_| gen_write(&mut rng, sim.now)).collect();
                    sim.submit_tx(i, cmds);
                } else {
                    let cmd = gen_write(&mut rng, sim.now);
                    sim.submit(i, cmd);
                }
            }
            25..=49 => {
                sim.deliver_up(i);
            }
            50..=74 => {
                sim.deliver_down(i);
            }
            75..=84 => {
                let k = rng.below(5);
                let cmd = if rng.below(10) == 0 {
                    args(&["SET", &format!("user:{}:{}", 1 + rng.below(2), rng.below(3)), "backend"])
                } else if rng.below(30) == 0 && has("RENAME") {
                    args(&["RENAME", &format!("user:1:{}", rng.below(3)), &format!("k:{}", rng.below(6))])
                } else {
                    gen_write(&mut rng, sim.now)
                };
                sim.backend(k, cmd);
            }
            85..=91 => sim.advance(1 + rng.below(300) as u64),
            92..=95 => sim.drop_link(i, rng.below(2) == 0),
            _ => {
                if sim.clients[i].conn.is_none() {
                    sim.connect(i);
                }
            }
        }
        // Scoped clients never hold a key outside their scope.
        for cl in &sim.clients[22..] {
            for (k, _) in cl.c.visible().db(0).unwrap().iter() {
                assert!(glob::matches(b"user:1:*", k, false) || cl.c.pending_len() > 0, "scoped client holds {:?}", String::from_utf8_lossy(k));
            }
        }
    }
    sim.quiesce();
    sim.check_converged();
    // Every write settled exactly once; counters and logs applied exactly once.
    for (i, cl) in sim.clients.iter().enumerate() {
        for seq in &cl.submitted {
            let s = cl.settled.get(seq).copied().unwrap_or((0, false));
            assert_eq!(s.0, 1, "client {i} write {seq} settled {} times", s.0);
        }
        if incr_ok && !cl.incr_seqs.is_empty() {
            let acked = cl.incr_seqs.iter().filter(|s| cl.settled.get(s).is_some_and(|x| x.1)).count() as i64;
            let v = sim.engine.db(0).unwrap().get(format!("c:{i}").as_bytes()).map(|e| e.value.clone());
            assert_eq!(v, Some(Value::Int(acked)), "client {i} counter: {} INCRs acked", acked);
        }
        if log_ok && !cl.log_seqs.is_empty() {
            let expect: Vec<String> = cl.log_seqs.iter().filter(|(s, _)| cl.settled.get(s).is_some_and(|x| x.1)).map(|(_, v)| v.clone()).collect();
            let got: Vec<String> = match sim.engine.db(0).unwrap().get(format!("log:{i}").as_bytes()).map(|e| &e.value) {
                Some(Value::List(l)) => l.items().iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect(),
                _ => Vec::new(),
            };
            assert_eq!(got, expect, "client {i} log");
        }
        if i >= 22 {
            for k in &cl.received_keys {
                assert!(glob::matches(b"user:1:*", k, false), "scoped client received {:?}", String::from_utf8_lossy(k));
            }
        }
    }
    let st = sim.hub.stats();
    println!("hub stats: {st:?}");
    assert!(st.writes > 0 && st.continues > 0 && st.full_syncs > 0);
    assert!(st.refused > 0, "out-of-scope writes were refused by the hub");
}

#[test]
fn convergence_fixed_seed() {
    run_convergence(0x5eed_0001, 6000);
}

#[test]
fn convergence_random_seed() {
    // A fresh seed each run, printed; SYNC_SEED=<n> replays one.
    let seed = std::env::var("SYNC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let addr = &t as *const u64 as u64;
        t ^ addr.rotate_left(17)
    });
    run_convergence(seed, 4000);
}

// ---------------------------------------------------------------------------------------
// Targeted scenarios.

fn live_client(sim: &mut Sim, read: &[&str], patterns: &[&str]) -> usize {
    let i = sim.add_client("u", read, read, patterns, 0);
    sim.connect(i);
    sim.deliver_all();
    assert_eq!(sim.clients[i].c.status(), Status::Live);
    i
}

fn get(sim: &mut Sim, i: usize, key: &str) -> Reply {
    let local = sim.local(i);
    let r = sim.clients[i].c.execute(&args(&["GET", key]), local).reply;
    sim.flush(i);
    r
}

fn changed_events(sim: &mut Sim, i: usize) -> Vec<Vec<Bytes>> {
    std::mem::take(&mut sim.clients[i].events).into_iter().filter_map(|e| if let Event::Changed(k) = e { Some(k) } else { None }).collect()
}

#[test]
fn short_disconnect_resumes_with_continue() {
    let mut sim = Sim::new(1, HubConfig::default());
    let i = live_client(&mut sim, &["*"], &["*"]);
    sim.backend(0, args(&["SET", "a", "1"]));
    sim.deliver_all();
    let snap_keys = sim.clients[i].c.stats().snapshot_keys;
    sim.drop_link(i, false);
    sim.backend(0, args(&["SET", "b", "2"]));
    sim.backend(0, args(&["DEL", "a"]));
    sim.connect(i);
    sim.deliver_all();
    let st = sim.clients[i].c.stats().clone();
    assert_eq!(st.continues, 1);
    assert_eq!(st.full_syncs, 1, "only the first connection took a snapshot");
    assert_eq!(st.snapshot_keys, snap_keys, "no snapshot was sent on resume");
    assert_eq!(get(&mut sim, i, "b"), Reply::bulk("2"));
    assert_eq!(get(&mut sim, i, "a"), Reply::Nil);
    sim.check_converged();
}

#[test]
fn long_disconnect_falls_back_to_full() {
    let mut sim = Sim::new(2, HubConfig { backlog_bytes: 2048, ..HubConfig::default() });
    let i = live_client(&mut sim, &["*"], &["*"]);
    sim.backend(0, args(&["SET", "keep", "x"]));
    sim.deliver_all();
    sim.drop_link(i, false);
    for n in 0..200 {
        sim.backend(0, args(&["SET", &format!("k{}", n % 7), &format!("{n}")]));
    }
    sim.connect(i);
    sim.deliver_all();
    let st = sim.clients[i].c.stats().clone();
    assert_eq!(st.continues, 0);
    assert_eq!(st.full_syncs, 2);
    assert_eq!(get(&mut sim, i, "k3"), Reply::bulk("199"));
    sim.check_converged();
}

#[test]
fn quiet_subscriber_resumes_from_heartbeat_offset() {
    // A client that watches quiet keys still resumes with continue after much traffic
    // elsewhere, thanks to sync.at.
    let mut sim = Sim::new(3, HubConfig { backlog_bytes: 2048, ..HubConfig::default() });
    let i = live_client(&mut sim, &["*"], &["quiet:*"]);
    for n in 0..200 {
        sim.backend(0, args(&["SET", "noise", &format!("{n}")]));
        if n % 20 == 0 {
            sim.advance(1001);
        }
    }
    sim.advance(1001);
    sim.deliver_all();
    sim.drop_link(i, false);
    sim.backend(0, args(&["SET", "quiet:1", "x"]));
    sim.connect(i);
    sim.deliver_all();
    assert_eq!(sim.clients[i].c.stats().continues, 1);
    assert_eq!(get(&mut sim, i, "quiet:1"), Reply::bulk("x"));
}

#[test]
fn scope_user_1_never_sees_other_keys() {
    let mut sim = Sim::new(4, HubConfig::default());
    for (k, v) in [("user:1:a", "1"), ("user:1:b", "2"), ("user:2:a", "3"), ("other", "4")] {
        sim.backend(0, args(&["SET", k, v]));
    }
    let i = live_client(&mut sim, &["user:1:*"], &["user:1:*"]);
    assert_eq!(sim.clients[i].c.stats().snapshot_keys, 2);
    // Changes elsewhere never arrive; RENAME and MOVE out of scope arrive as DEL.
    sim.backend(0, args(&["SET", "user:2:a", "changed"]));
    sim.backend(0, args(&["SET", "user:10:a", "x"]));
    sim.backend(0, args(&["RENAME", "user:1:a", "other:x"]));
    sim.backend(0, args(&["MOVE", "user:1:b", "1"]));
    sim.backend(0, args(&["RENAME", "other", "user:1:c"]));
    sim.deliver_all();
    assert_eq!(get(&mut sim, i, "user:1:a"), Reply::Nil);
    assert_eq!(get(&mut sim, i, "user:1:b"), Reply::Nil);
    assert_eq!(get(&mut sim, i, "user:1:c"), Reply::bulk("4"));
    // Replies: out-of-scope reads and keyspace scans are refused.
    for cmd in [&["GET", "user:2:a"][..], &["KEYS", "*"], &["SCAN", "0"], &["DBSIZE"], &["MGET", "user:1:c", "other:x"], &["EXISTS", "user:2:a"]] {
        let id = sim.clients[i].c.remote(args(cmd)).unwrap();
        sim.flush(i);
        sim.deliver_all();
        let reply = sim.clients[i].events.iter().rev().find_map(|e| match e {
            Event::Reply { id: r, reply } if *r == id => Some(reply.clone()),
            _ => None,
        });
        match reply {
            Some(Frame::Error(e)) => assert!(e.starts_with(b"NOPERM"), "{cmd:?}: {e:?}"),
            other => panic!("{cmd:?} answered {other:?}"),
        }
    }
    let id = sim.clients[i].c.remote(args(&["GET", "user:1:c"])).unwrap();
    sim.flush(i);
    sim.deliver_all();
    assert!(sim.clients[i].events.contains(&Event::Reply { id, reply: Frame::Bulk(b("4")) }));
    // A subscription wider than the scope is refused.
    sim.clients[i].c.set_patterns(args(&["user:*"]));
    sim.flush(i);
    sim.deliver_all();
    assert!(sim.clients[i].events.iter().any(|e| matches!(e, Event::SubscribeFailed(t) if t.starts_with("NOPERM"))));
    for k in &sim.clients[i].received_keys {
        assert!(k.starts_with(b"user:1:"), "received {:?}", k);
    }
}

#[test]
fn out_of_scope_writes_are_refused_and_rolled_back() {
    let mut sim = Sim::new(5, HubConfig::default());
    let i = sim.add_client("u1", &["user:1:*"], &["user:1:*"], &["user:1:*"], 0);
    // Before the first HELLO the client does not know its scope: the write applies
    // locally, the hub refuses it, the client rolls back.
    let seq = sim.submit(i, args(&["SET", "user:2:x", "nope"])).unwrap();
    sim.submit(i, args(&["SET", "user:1:x", "yes"])).unwrap();
    let local = sim.local(i);
    assert_eq!(sim.clients[i].c.execute(&args(&["GET", "user:2:x"]), local).reply, Reply::bulk("nope"));
    sim.connect(i);
    sim.deliver_all();
    let rejected = sim.clients[i].events.iter().find_map(|e| match e {
        Event::Rejected { seq: s, error } if *s == seq => Some(error.clone()),
        _ => None,
    });
    assert_eq!(rejected.as_deref(), Some("NOPERM this user has no permissions to access one of the keys used as arguments"));
    assert_eq!(get(&mut sim, i, "user:2:x"), Reply::Nil);
    assert_eq!(get(&mut sim, i, "user:1:x"), Reply::bulk("yes"));
    assert!(sim.engine.db(0).unwrap().get(b"user:2:x").is_none());
    // Once the scope is known, the client refuses locally and sends nothing.
    let local = sim.local(i);
    let s = sim.clients[i].c.execute(&args(&["SET", "user:2:y", "no"]), local);
    assert_eq!(s.seq, None);
    assert!(matches!(s.reply, Reply::Error(ref e) if e.starts_with("NOPERM")));
    assert_eq!(get(&mut sim, i, "user:2:y"), Reply::Nil);
    // The local copy cannot be switched to another database.
    let s = sim.clients[i].c.execute(&args(&["SELECT", "1"]), local);
    assert!(matches!(s.reply, Reply::Error(ref e) if e.starts_with("NOPERM")));
    // Keyless writes need an unrestricted grant.
    let s = sim.clients[i].c.execute(&args(&["FLUSHALL"]), local);
    assert!(matches!(s.reply, Reply::Error(ref e) if e.starts_with("NOPERM this user has no permissions to run the 'flushall' command")));
    // A write the hub rejects for another reason rolls back too.
    sim.backend(0, args(&["RPUSH", "user:1:list", "a"]));
    sim.deliver_all();
    let seq = sim.submit(i, args(&["SET", "user:1:list", "x", "GET"])).unwrap();
    sim.deliver_all();
    assert!(sim.clients[i].events.iter().any(|e| matches!(e, Event::Rejected { seq: s, error } if *s == seq && error.starts_with("WRONGTYPE"))));
    let local = sim.local(i);
    assert_eq!(sim.clients[i].c.execute(&args(&["LRANGE", "user:1:list", "0", "-1"]), local).reply, Reply::Array(vec![Reply::bulk("a")]));
    sim.check_converged();
}

#[test]
fn writes_ack_without_echo_and_report_changed_keys() {
    let mut sim = Sim::new(6, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    let other = live_client(&mut sim, &["*"], &["*"]);
    changed_events(&mut sim, a);
    let seq = sim.submit(a, args(&["SET", "k", "v", "EX", "100"])).unwrap();
    assert_eq!(changed_events(&mut sim, a), vec![vec![b("k")]], "the optimistic write is visible at once");
    sim.deliver_all();
    // The ack carried the group: confirmed holds it, nothing was pushed back to the sender.
    assert!(sim.clients[a].events.iter().any(|e| matches!(e, Event::Acked { seq: s, reply } if *s == seq && *reply == Frame::Simple(b("OK")))));
    assert_eq!(sim.clients[a].c.pending_len(), 0);
    assert_eq!(sim.clients[a].c.confirmed().db(0).unwrap().get(b"k").unwrap().expire_at, sim.now + 100_000);
    assert!(changed_events(&mut sim, a).is_empty(), "confirming what is already visible changes nothing");
    assert_eq!(sim.clients[a].c.stats().groups, 0, "no sync.change echo to the sender");
    assert_eq!(changed_events(&mut sim, other), vec![vec![b("k")]]);
    // A counter: the hub's reply settles the write.
    sim.backend(0, args(&["SET", "n", "41"]));
    sim.deliver_all();
    let seq = sim.submit(a, args(&["INCR", "n"])).unwrap();
    sim.deliver_all();
    assert!(sim.clients[a].events.iter().any(|e| matches!(e, Event::Acked { seq: s, reply } if *s == seq && *reply == Frame::Int(42))));
    sim.check_converged();
}

#[test]
fn pending_writes_rebase_on_hub_changes() {
    let mut sim = Sim::new(7, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    sim.backend(0, args(&["SET", "n", "10"]));
    sim.deliver_all();
    sim.submit(a, args(&["INCR", "n"]));
    assert_eq!(get(&mut sim, a, "n"), Reply::bulk("11"));
    // Another writer gets in first; the pending INCR replays on the new base.
    sim.backend(0, args(&["SET", "n", "100"]));
    let down = sim.clients[a].down.len();
    for _ in 0..down {
        sim.deliver_down(a);
    }
    assert_eq!(get(&mut sim, a, "n"), Reply::bulk("101"));
    sim.deliver_all();
    assert_eq!(get(&mut sim, a, "n"), Reply::bulk("101"));
    sim.check_converged();
}

#[test]
fn resent_writes_apply_exactly_once() {
    let mut sim = Sim::new(8, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    for _ in 0..5 {
        sim.submit(a, args(&["INCR", "n"]));
    }
    // The hub runs them but every answer is lost.
    sim.drop_link(a, true);
    assert_eq!(sim.hub.stats().writes, 5);
    assert_eq!(sim.clients[a].c.pending_len(), 5);
    sim.connect(a);
    sim.deliver_all();
    assert_eq!(sim.hub.stats().writes, 5, "resent writes are not run again");
    assert_eq!(sim.hub.stats().duplicates, 5);
    assert_eq!(sim.clients[a].c.stats().resent, 5);
    assert_eq!(sim.clients[a].c.pending_len(), 0);
    assert_eq!(get(&mut sim, a, "n"), Reply::bulk("5"));
    assert_eq!(sim.engine.db(0).unwrap().get(b"n").unwrap().value, Value::Int(5));
    sim.check_converged();
}

fn acked(sim: &Sim, i: usize, seq: u64) -> Option<Frame> {
    sim.clients[i].events.iter().find_map(|e| match e {
        Event::Acked { seq: s, reply } if *s == seq => Some(reply.clone()),
        _ => None,
    })
}

fn hub_int(sim: &Sim, key: &str) -> Option<i64> {
    match sim.engine.db(0)?.get(key.as_bytes())?.value {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

/// Issue 5 (cross-tab exactly-once): a follower tab's write that one leader ran but never
/// answered is resent by the next leader, on another connection with another client id.
/// Made `AS` the follower's origin with the same seq, the hub runs it once and answers the
/// resend with the first run's reply.
#[test]
fn as_writes_resent_on_another_connection_apply_once() {
    let mut sim = Sim::new(13, HubConfig::default());
    let old = live_client(&mut sim, &["*"], &["*"]);
    let new = live_client(&mut sim, &["*"], &["*"]);
    for seq in 1..=3 {
        sim.submit_as(old, "tab-f", seq, args(&["INCR", "n"])).unwrap();
    }
    sim.submit_tx(old, vec![args(&["INCR", "n"]), args(&["INCR", "m"])]).unwrap();
    // The old leader's hub ran them, then it went away before any answer reached it.
    sim.drop_link(old, true);
    assert_eq!(sim.hub.stats().writes, 4);
    let local = sim.local(new);
    let tx = sim.clients[new].c.transaction_as(&[args(&["INCR", "n"]), args(&["INCR", "m"])], Some(Origin { id: b("tab-f"), seq: 4 }), local).seq.unwrap();
    sim.flush(new);
    let resent: Vec<u64> = (1..=3).map(|seq| sim.submit_as(new, "tab-f", seq, args(&["INCR", "n"])).unwrap()).collect();
    sim.deliver_all();
    // The tx with seq 4 of tab-f was new (the old leader's tx was its own, not AS tab-f):
    // it ran; the resends did not.
    assert_eq!(sim.hub.stats().writes, 5);
    assert_eq!(sim.hub.stats().duplicates, 3);
    assert_eq!(hub_int(&sim, "n"), Some(3 + 1 + 1));
    // Each resend settles with the first run's reply, under the new client's own keys.
    for (i, seq) in resent.iter().enumerate() {
        assert_eq!(acked(&sim, new, *seq), Some(Frame::Int(i as i64 + 1)), "resend {i}");
    }
    assert!(acked(&sim, new, tx).is_some());
    assert_eq!(sim.clients[new].c.pending_len(), 0);
    // Sent again on the same connection, still once.
    sim.submit_as(new, "tab-f", 2, args(&["INCR", "n"])).unwrap();
    sim.deliver_all();
    assert_eq!(sim.hub.stats().duplicates, 4);
    assert_eq!(hub_int(&sim, "n"), Some(5));
    sim.quiesce();
    sim.check_converged();
}

#[test]
fn as_writes_of_two_origins_with_equal_seqs_both_apply() {
    let mut sim = Sim::new(14, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    let b_ = live_client(&mut sim, &["*"], &["*"]);
    // Equal seqs from different origins, interleaved with this client's own seq 1 …
    let own = sim.submit(a, args(&["INCR", "n"])).unwrap();
    assert_eq!(own, 1);
    sim.submit_as(a, "tab-x", 1, args(&["INCR", "n"])).unwrap();
    sim.submit_as(a, "tab-y", 1, args(&["INCR", "n"])).unwrap();
    // … and an origin id equal to a client id (client-1 is b_'s): separate namespaces.
    sim.submit_as(a, "client-1", 1, args(&["INCR", "n"])).unwrap();
    sim.deliver_all();
    sim.submit(b_, args(&["INCR", "n"])).unwrap();
    sim.deliver_all();
    assert_eq!(sim.hub.stats().duplicates, 0);
    assert_eq!(sim.hub.stats().writes, 5);
    assert_eq!(hub_int(&sim, "n"), Some(5));
    sim.check_converged();
}

#[test]
fn as_writes_obey_scope_and_refusals() {
    let mut sim = Sim::new(15, HubConfig::default());
    let i = sim.add_client("u1", &["user:1:*"], &["user:1:*"], &["user:1:*"], 0);
    // Before HELLO the client cannot refuse it: the hub does, for the origin's seq.
    let out = sim.submit_as(i, "tab-f", 7, args(&["SET", "user:2:x", "nope"])).unwrap();
    sim.connect(i);
    sim.deliver_all();
    let rejected = sim.clients[i].events.iter().find_map(|e| match e {
        Event::Rejected { seq, error } if *seq == out => Some(error.clone()),
        _ => None,
    });
    assert_eq!(rejected.as_deref(), Some(super::hub::NOPERM_KEYS));
    assert!(sim.engine.db(0).is_none_or(|d| d.get(b"user:2:x").is_none()));
    assert_eq!(get(&mut sim, i, "user:2:x"), Reply::Nil, "rolled back");
    // Once the scope is known it is refused locally, like the client's own writes.
    let local = sim.local(i);
    let s = sim.clients[i].c.execute_as(&args(&["SET", "user:2:y", "no"]), Some(Origin { id: b("tab-f"), seq: 8 }), local);
    assert_eq!(s.seq, None);
    assert!(matches!(s.reply, Reply::Error(ref e) if e.starts_with("NOPERM")));
    // A bad origin never reaches the wire.
    for (id, seq, err) in [("bad id!", 1, "ERR SYNC invalid origin id"), ("", 1, "ERR SYNC invalid origin id"), ("ok", 0, "ERR SYNC invalid seq")] {
        let s = sim.clients[i].c.execute_as(&args(&["SET", "user:1:z", "v"]), Some(Origin { id: b(id), seq }), local);
        assert_eq!((s.seq, s.reply), (None, Reply::err(err)));
    }
    // A rejected write's resend is answered with the same refusal, and runs nothing.
    sim.backend(0, args(&["RPUSH", "user:1:l", "a"]));
    sim.deliver_all();
    let first = sim.submit_as(i, "tab-f", 9, args(&["INCR", "user:1:l"])).unwrap();
    sim.deliver_all();
    let again = sim.submit_as(i, "tab-f", 9, args(&["INCR", "user:1:l"])).unwrap();
    sim.deliver_all();
    for seq in [first, again] {
        assert!(sim.clients[i].events.iter().any(|e| matches!(e, Event::Rejected { seq: s, error } if *s == seq && error.starts_with("WRONGTYPE"))));
    }
    assert_eq!(sim.hub.stats().duplicates, 1);
    sim.check_converged();
}

#[test]
fn as_writes_on_the_wire() {
    let (mut eng, mut hub) = raw_hub(Auth::open());
    hub.open(1, T0);
    let mut msg = cmd_bytes(&["SYNC.HELLO", "1", "", "c1"]);
    msg.extend(cmd_bytes(&["SYNC.W", "AS", "o1", "5", "INCR", "n"]));
    msg.extend(cmd_bytes(&["SYNC.W", "5", "INCR", "n"]));
    msg.extend(cmd_bytes(&["SYNC.W", "as", "o1", "5", "INCR", "n"]));
    msg.extend(cmd_bytes(&["SYNC.TX", "AS", "o2", "5", "1", "2", "INCR", "n"]));
    msg.extend(cmd_bytes(&["SYNC.W", "AS", "bad!", "6", "INCR", "n"]));
    msg.extend(cmd_bytes(&["MULTI"]));
    msg.extend(cmd_bytes(&["SYNC.W", "AS", "o1", "7", "INCR", "n"]));
    msg.extend(cmd_bytes(&["DISCARD"]));
    let out = hub.message(&mut eng, &mut NoHost, 1, &msg, T0);
    let f = frames(&out);
    let ack = |i: usize| Ack::decode(&f[i]).unwrap();
    // The ack carries the wire seq: the origin's.
    assert_eq!((ack(1).seq, ack(1).reply.clone()), (5, Frame::Int(1)));
    assert_eq!((ack(2).seq, ack(2).reply.clone()), (5, Frame::Int(2)), "the client's own seq 5 is another window");
    assert_eq!((ack(3).seq, ack(3).reply.clone()), (5, Frame::Int(1)), "a duplicate of o1's seq 5");
    assert_eq!((ack(4).seq, ack(4).reply.clone()), (5, Frame::Array(vec![Frame::Int(3)])));
    assert_eq!(f[5], Frame::Error(b("ERR SYNC invalid origin id")));
    assert_eq!(f[7], Frame::Error(b("ERR SYNC.W inside MULTI is not allowed")));
    assert_eq!(hub.stats().writes, 3);
    assert_eq!(hub.stats().duplicates, 1);
}

#[test]
fn transactions_are_atomic_groups() {
    let mut sim = Sim::new(9, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    let b_ = live_client(&mut sim, &["*"], &["*"]);
    let seq = sim.submit_tx(a, vec![args(&["SET", "x", "1"]), args(&["INCR", "x"]), args(&["GET", "x"])]).unwrap();
    sim.deliver_all();
    let reply = sim.clients[a].events.iter().find_map(|e| match e {
        Event::Acked { seq: s, reply } if *s == seq => Some(reply.clone()),
        _ => None,
    });
    assert_eq!(reply, Some(Frame::Array(vec![Frame::Simple(b("OK")), Frame::Int(2), Frame::Bulk(b("2"))])));
    // The other client got both changes in one group.
    assert_eq!(sim.clients[b_].c.stats().groups, 1);
    assert_eq!(get(&mut sim, b_, "x"), Reply::bulk("2"));
    // A transaction with a refused command runs nothing.
    let c = live_client(&mut sim, &["t:*"], &["t:*"]);
    let seq = sim.submit_tx(c, vec![args(&["SET", "t:1", "1"]), args(&["SET", "u", "1"])]);
    assert_eq!(seq, None, "refused locally once the scope is known");
    assert_eq!(sim.submit_tx(c, vec![args(&["MULTI"])]), None);
    sim.check_converged();
}

#[test]
fn flush_and_swapdb_reach_clients() {
    let mut sim = Sim::new(10, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    sim.backend(0, args(&["SET", "a", "1"]));
    sim.backend(0, args(&["SET", "b", "1"]));
    sim.deliver_all();
    sim.backend(0, args(&["FLUSHALL"]));
    sim.deliver_all();
    assert_eq!(sim.clients[a].c.visible().key_count(), 0);
    // SWAPDB 0 1: db 1's content becomes db 0: an in-band full resync.
    sim.backend(0, args(&["SELECT", "1"]));
    sim.backend(0, args(&["SET", "from1", "x"]));
    sim.backend(0, args(&["SELECT", "0"]));
    sim.backend(0, args(&["SET", "from0", "y"]));
    sim.deliver_all();
    let fulls = sim.clients[a].c.stats().full_syncs;
    sim.backend(0, args(&["SWAPDB", "0", "1"]));
    sim.deliver_all();
    assert_eq!(sim.clients[a].c.stats().full_syncs, fulls + 1);
    assert_eq!(get(&mut sim, a, "from1"), Reply::bulk("x"));
    assert_eq!(get(&mut sim, a, "from0"), Reply::Nil);
    sim.check_converged();
    // A resume from before the SWAPDB must take a snapshot.
    sim.drop_link(a, false);
    sim.connect(a);
    sim.deliver_all();
    sim.check_converged();
    // Changes in other databases are not sent.
    let groups = sim.clients[a].c.stats().groups;
    sim.backend(0, args(&["SELECT", "3"]));
    sim.backend(0, args(&["SET", "elsewhere", "z"]));
    sim.deliver_all();
    assert_eq!(sim.clients[a].c.stats().groups, groups);
}

#[test]
fn clock_skew_of_an_hour_expires_on_time() {
    for skew in [3_600_000i64, -3_600_000] {
        let mut sim = Sim::new(11, HubConfig::default());
        let i = sim.add_client("u", &["*"], &["*"], &["*"], skew);
        sim.connect(i);
        // 40 ms each way between client and hub.
        sim.now += 40;
        sim.deliver_up(i);
        sim.now += 40;
        sim.deliver_all();
        let off = sim.clients[i].c.clock_offset_ms();
        assert!((off + skew).abs() <= 40, "offset {off} for skew {skew}");
        sim.backend(0, args(&["SET", "session", "s", "PX", "5000"]));
        sim.backend(0, args(&["SET", "held", "h"]));
        sim.deliver_all();
        let deadline = sim.now + 5000;
        // The client's own write with a TTL also expires by hub time.
        sim.submit(i, args(&["SET", "mine", "m", "PX", "5000"]));
        sim.deliver_all();
        let local_deadline = sim.clients[i].c.next_deadline().unwrap();
        assert!((local_deadline as i64 - (deadline as i64 + skew)).abs() <= 100, "timer for the deadline");
        sim.now = deadline - 100;
        assert_eq!(get(&mut sim, i, "session"), Reply::bulk("s"));
        assert_eq!(get(&mut sim, i, "mine"), Reply::bulk("m"));
        sim.now = deadline + 100;
        let local = sim.local(i);
        sim.clients[i].c.tick(local);
        sim.flush(i);
        assert!(changed_events(&mut sim, i).iter().flatten().any(|k| k == "session"), "expiry is reported");
        assert_eq!(get(&mut sim, i, "session"), Reply::Nil);
        assert_eq!(get(&mut sim, i, "mine"), Reply::Nil);
        assert_eq!(get(&mut sim, i, "held"), Reply::bulk("h"));
        // The hub's DEL arrives later and changes nothing visible.
        sim.advance(10);
        sim.deliver_all();
        assert!(changed_events(&mut sim, i).is_empty());
        sim.check_converged();
    }
}

// ---------------------------------------------------------------------------------------
// Hostile input and handshake rules, at the hub.

fn raw_hub(auth: Auth) -> (Engine, SyncHub) {
    let engine = Engine::default();
    let hub = SyncHub::new(HubConfig { max_message: 4096, ..HubConfig::default() }, auth, "r".repeat(40), 0);
    (engine, hub)
}

fn cmd_bytes(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::resp::encode_command(&args(parts), &mut out);
    out
}

fn frames(out: &Output) -> Vec<Frame> {
    let mut v = Vec::new();
    for (_, m) in &out.sends {
        let mut pos = 0;
        while pos < m.len() {
            let (f, n) = parse(&m[pos..], &Limits::default()).unwrap().unwrap();
            v.push(f);
            pos += n;
        }
    }
    v
}

#[test]
fn hostile_input_gets_clear_errors_and_close_codes() {
    let now = T0;
    let (mut eng, mut hub) = raw_hub(Auth::with_secret(SECRET));
    // Before HELLO: NOAUTH, the connection stays.
    hub.open(1, now);
    let out = hub.message(&mut eng, &mut NoHost, 1, &cmd_bytes(&["GET", "k"]), now);
    assert_eq!(frames(&out), vec![Frame::Error(b("NOAUTH Authentication required."))]);
    assert!(out.closes.is_empty());
    // Garbage frames: protocol error, 4000.
    for garbage in [&b"hello\r\n"[..], b"*1\r\n+x\r\n", b"*2\r\n$3\r\nGET\r\n", b"\x00\xff\xfe", b"*1\r\n$-3\r\n"] {
        hub.open(2, now);
        let out = hub.message(&mut eng, &mut NoHost, 2, garbage, now);
        assert_eq!(out.closes.len(), 1, "{garbage:?}");
        assert_eq!(out.closes[0].1.code, close::PROTOCOL);
        hub.disconnect(&mut eng, 2);
    }
    // Oversize message: 1009.
    hub.open(3, now);
    let big = cmd_bytes(&["SYNC.HELLO", "1", &"x".repeat(5000), "c"]);
    let out = hub.message(&mut eng, &mut NoHost, 3, &big, now);
    assert_eq!(out.closes[0].1.code, close::TOO_BIG);
    assert_eq!(out.closes[0].1.reason, "message too big (max 4096 bytes)");
    // Bad tokens: each kind, 4001, and no data.
    let good = token("u", &["*"], &["*"], now + 60_000);
    let wrong_secret = mint(&Claims { sub: "u".into(), exp: (now + 60_000) / 1000, read: vec!["*".into()], write: vec![] }, b"other");
    let expired = token("u", &["*"], &["*"], now - 1000);
    let mut tampered = good.clone().into_bytes();
    let l = tampered.len();
    tampered[l - 2] = if tampered[l - 2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (tok, kind) in [(wrong_secret.as_str(), "bad signature"), (tampered.as_str(), "bad signature"), (expired.as_str(), "expired"), ("a.b.c", "malformed"), ("static-nope", "unknown token")] {
        hub.open(4, now);
        let out = hub.message(&mut eng, &mut NoHost, 4, &cmd_bytes(&["SYNC.HELLO", "1", tok, "c1"]), now);
        assert_eq!(frames(&out), vec![Frame::Error(b(&format!("WRONGPASS invalid token ({kind})")))]);
        assert_eq!(out.closes, vec![(4, super::hub::Close::new(close::AUTH_FAILED, format!("auth failed: {kind}")))]);
        hub.disconnect(&mut eng, 4);
    }
    // Bad HELLO version / client id: 4000.
    hub.open(5, now);
    let out = hub.message(&mut eng, &mut NoHost, 5, &cmd_bytes(&["SYNC.HELLO", "2", &good, "c1"]), now);
    assert_eq!(frames(&out), vec![Frame::Error(b("ERR SYNC unsupported protocol version"))]);
    assert_eq!(out.closes[0].1.code, close::PROTOCOL);
    // Handshake timeout: 4002; token expiry while connected: 4003.
    hub.open(6, now);
    hub.open(7, now);
    let short = token("u", &["*"], &["*"], now + 5_000);
    let out = hub.message(&mut eng, &mut NoHost, 7, &cmd_bytes(&["SYNC.HELLO", "1", &short, "c7"]), now);
    assert!(matches!(&frames(&out)[0], Frame::Map(_)));
    // next_tick: the token expiry of 7 (5 s) comes before the handshake timeout of 6 (10 s).
    assert_eq!(hub.next_tick(), Some((now + 5_000) / 1000 * 1000));
    assert!(hub.tick(now + 4_000).closes.is_empty());
    let out = hub.tick(now + 10_000);
    let mut codes: Vec<(ConnId, u16)> = out.closes.iter().map(|(c, x)| (*c, x.code)).collect();
    codes.sort();
    assert!(codes.contains(&(6, close::HANDSHAKE_TIMEOUT)), "{codes:?}");
    assert!(codes.contains(&(7, close::TOKEN_EXPIRED)), "{codes:?}");
    // A second HELLO is refused; SYNC.W inside MULTI is refused.
    hub.open(8, now);
    let hello = cmd_bytes(&["SYNC.HELLO", "1", &good, "c8"]);
    hub.message(&mut eng, &mut NoHost, 8, &hello, now);
    let out = hub.message(&mut eng, &mut NoHost, 8, &hello, now);
    assert_eq!(frames(&out), vec![Frame::Error(b("ERR SYNC already authenticated"))]);
    let mut msg = cmd_bytes(&["MULTI"]);
    msg.extend(cmd_bytes(&["SYNC.W", "1", "SET", "k", "v"]));
    msg.extend(cmd_bytes(&["EXEC"]));
    let out = hub.message(&mut eng, &mut NoHost, 8, &msg, now);
    assert_eq!(frames(&out)[1], Frame::Error(b("ERR SYNC.W inside MULTI is not allowed")));
    // Commands never allowed on a sync connection, whatever the token.
    for c in [&["SELECT", "1"][..], &["SWAPDB", "0", "1"], &["MOVE", "k", "1"]] {
        let out = hub.message(&mut eng, &mut NoHost, 8, &cmd_bytes(c), now);
        match &frames(&out)[0] {
            Frame::Error(e) => assert!(e.starts_with(b"NOPERM this user has no permissions to run the"), "{c:?} {e:?}"),
            f => panic!("{c:?} answered {f:?}"),
        }
    }
    // Nothing leaked into the engine.
    assert_eq!(eng.key_count(), 0);
}

#[test]
fn open_hub_grants_everything() {
    let (mut eng, mut hub) = raw_hub(Auth::open());
    hub.open(1, T0);
    let mut msg = cmd_bytes(&["SYNC.HELLO", "1", "", "c1"]);
    msg.extend(cmd_bytes(&["SYNC.W", "1", "SET", "k", "v"]));
    msg.extend(cmd_bytes(&["FLUSHALL"]));
    let out = hub.message(&mut eng, &mut NoHost, 1, &msg, T0);
    let f = frames(&out);
    assert!(matches!(f[0], Frame::Map(_)));
    assert_eq!(Ack::decode(&f[1]).unwrap().reply, Frame::Simple(b("OK")));
    assert_eq!(f[2], Frame::Simple(b("OK")));
    assert_eq!(out.groups.len(), 2, "the host gets the groups to persist");
}

#[test]
fn connections_survive_hibernation() {
    let mut sim = Sim::new(12, HubConfig::default());
    let a = live_client(&mut sim, &["*"], &["*"]);
    let b_ = live_client(&mut sim, &["*"], &["*"]);
    sim.backend(0, args(&["SET", "x", "1"]));
    sim.deliver_all();
    // The edge hub stores each socket's state as postcard in its attachment, then wakes
    // up with a rebuilt hub (same stream).
    let saved: Vec<(ConnId, Vec<u8>)> = [a, b_]
        .iter()
        .map(|&i| {
            let conn = sim.clients[i].conn.unwrap();
            (conn, postcard::to_allocvec(&sim.hub.export_conn(conn).unwrap()).unwrap())
        })
        .collect();
    let fulls = sim.clients[a].c.stats().full_syncs;
    sim.hub = SyncHub::new(HubConfig::default(), Auth::with_secret(SECRET), "a".repeat(40), sim.engine.offset());
    for (conn, bytes) in &saved {
        let state: super::hub::ConnState = postcard::from_bytes(bytes).unwrap();
        let out = sim.hub.restore_conn(&sim.engine, *conn, state, sim.now);
        sim.route(out);
    }
    sim.submit(a, args(&["SET", "y", "2"]));
    sim.backend(0, args(&["SET", "z", "3"]));
    sim.deliver_all();
    assert_eq!(sim.clients[a].c.stats().full_syncs, fulls, "same stream: no resync");
    assert_eq!(get(&mut sim, b_, "y"), Reply::bulk("2"));
    assert_eq!(get(&mut sim, a, "z"), Reply::bulk("3"));
    // A rebuilt hub on another stream resyncs its subscribers in-band.
    let saved = postcard::to_allocvec(&sim.hub.export_conn(sim.clients[a].conn.unwrap()).unwrap()).unwrap();
    sim.hub = SyncHub::new(HubConfig::default(), Auth::with_secret(SECRET), "b".repeat(40), sim.engine.offset());
    let out = sim.hub.restore_conn(&sim.engine, sim.clients[a].conn.unwrap(), postcard::from_bytes(&saved).unwrap(), sim.now);
    assert!(out.catch_up.iter().any(|(_, n)| *n > 0));
    sim.route(out);
    sim.deliver_all();
    assert_eq!(sim.clients[a].c.stats().full_syncs, fulls + 1);
    assert_eq!(sim.clients[a].c.resume_point().map(|(r, _)| r.to_string()), Some("b".repeat(40)));
    sim.check_converged();
}

// ---------------------------------------------------------------------------------------
// Backlog TTL: kept only while sync connections are (or recently were) around.

#[test]
fn backlog_is_kept_only_while_sync_connections_are_recent() {
    use crate::change::{Change, ChangeGroup};
    let mut engine = Engine::default();
    let mut hub = SyncHub::new(HubConfig { backlog_ttl_ms: 1000, ..HubConfig::default() }, Auth::open(), "r".repeat(40), 0);
    let group = |offset: u64| ChangeGroup { offset, changes: vec![Change { db: 0, args: args(&["SET", "k", "v"]) }] };
    // Never a connection: nothing is held, yet the stream's offset moves on.
    hub.publish(&engine, &[group(1), group(2)], 0);
    assert_eq!((hub.backlog().len(), hub.backlog().last_offset()), (0, 2));
    assert!(!hub.backlog().can_continue(&"r".repeat(40), 1));
    // A connection starts it again.
    hub.open(1, 10);
    hub.publish(&engine, &[group(3)], 20);
    assert_eq!(hub.backlog().len(), 1);
    assert!(hub.backlog().can_continue(&"r".repeat(40), 2));
    // Within the TTL after the last connection left, groups are still kept…
    hub.disconnect(&mut engine, 1);
    hub.publish(&engine, &[group(4)], 900);
    assert_eq!(hub.backlog().len(), 2);
    assert!(hub.backlog().can_continue(&"r".repeat(40), 2));
    // …and past it the backlog is released: an old offset resyncs in full.
    hub.publish(&engine, &[group(5)], 5000);
    assert_eq!((hub.backlog().len(), hub.backlog().bytes()), (0, 0));
    assert!(!hub.backlog().can_continue(&"r".repeat(40), 4));
    assert!(hub.backlog().can_continue(&"r".repeat(40), 5));
}

// ---------------------------------------------------------------------------------------
// The dedupe memory kept by the host (the edge hub stores it in its Durable Object).

/// A host's copy of the dedupe memory, kept the way the edge hub keeps it: a client table
/// (floor, recency) and an entry table, changed only by [`Output::dedupe`].
#[derive(Debug, Default)]
struct DedupeStore {
    clients: BTreeMap<(String, Bytes), (u64, u64)>,
    entries: BTreeMap<(String, Bytes, u64), (u64, Bytes)>,
}

impl DedupeStore {
    fn apply(&mut self, changes: &[DedupeChange]) {
        for c in changes {
            match c {
                DedupeChange::Put(e) => {
                    self.entries.insert((e.subject.clone(), e.client.clone(), e.seq), (e.offset, e.reply.clone()));
                    self.clients.insert((e.subject.clone(), e.client.clone()), (e.floor, e.used));
                    self.entries.retain(|(s, c, q), _| !(s == &e.subject && c == &e.client && *q <= e.floor));
                }
                DedupeChange::Forget { subject, client } => {
                    self.clients.remove(&(subject.clone(), client.clone()));
                    self.entries.retain(|(s, c, _), _| !(s == subject && c == client));
                }
            }
        }
    }

    /// The stored entries joined with their client rows, as a host loads them on wake.
    fn load(&self) -> Vec<DedupeEntry> {
        self.entries
            .iter()
            .map(|((subject, client, seq), (offset, reply))| {
                let (floor, used) = self.clients.get(&(subject.clone(), client.clone())).copied().unwrap_or_default();
                DedupeEntry { subject: subject.clone(), client: client.clone(), seq: *seq, offset: *offset, reply: reply.clone(), floor, used }
            })
            .collect()
    }

    fn per_client(&self) -> BTreeMap<(String, Bytes), usize> {
        let mut n = BTreeMap::new();
        for (s, c, _) in self.entries.keys() {
            *n.entry((s.clone(), c.clone())).or_default() += 1;
        }
        n
    }
}

fn recording() -> HubConfig {
    HubConfig { record_dedupe: true, ..HubConfig::default() }
}

fn incr_replies(sim: &Sim, i: usize) -> Vec<Frame> {
    sim.clients[i]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Acked { reply, .. } => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

// Regression (edge, issue 6): the edge hub's dedupe memory lived only in the Durable
// Object's memory, so a write whose ack was lost and that was resent after the object was
// evicted ran twice. The host now stores Output::dedupe and restores it on wake.
#[test]
fn dedupe_memory_survives_a_rebuilt_hub() {
    for restore in [true, false] {
        let mut sim = Sim::new(13, recording());
        let a = live_client(&mut sim, &["*"], &["*"]);
        for _ in 0..5 {
            sim.submit(a, args(&["INCR", "n"]));
        }
        // The hub runs them, the host stores them, every ack is lost, and then the hub is
        // gone (an evicted Durable Object): a new one starts from storage.
        sim.drop_link(a, true);
        assert_eq!(sim.stored.entries.len(), 5);
        sim.hub = SyncHub::new(recording(), Auth::with_secret(SECRET), "a".repeat(40), sim.engine.offset());
        if restore {
            let out = sim.hub.restore_dedupe(sim.stored.load());
            assert!(out.is_empty(), "within the bounds nothing is dropped: {out:?}");
            assert_eq!((sim.hub.dedupe_entries(), sim.hub.dedupe_clients()), (5, 1));
        }
        sim.connect(a);
        sim.deliver_all();
        let n = sim.engine.db(0).unwrap().get(b"n").unwrap().value.clone();
        if !restore {
            // Without it the resends run again: what the restore prevents.
            assert_eq!(n, Value::Int(10));
            continue;
        }
        assert_eq!(n, Value::Int(5), "resent writes ran once");
        assert_eq!(sim.hub.stats().writes, 0);
        assert_eq!(sim.hub.stats().duplicates, 5);
        // The acks are the remembered ones: the replies 1..5 the lost acks carried.
        assert_eq!(incr_replies(&sim, a), (1..=5).map(Frame::Int).collect::<Vec<_>>());
        assert_eq!(get(&mut sim, a, "n"), Reply::bulk("5"));
        // New writes after the restore are remembered and stored as before.
        sim.submit(a, args(&["INCR", "n"]));
        sim.deliver_all();
        assert_eq!(sim.stored.entries.len(), 6);
        sim.check_converged();
    }
}

// Both fixes of issue 5/6 together (a leader change while the edge hub was evicted): an
// AS write's stored memory is keyed by its origin, so the next leader's resend on a new
// connection to a rebuilt hub still runs once.
#[test]
fn as_writes_dedupe_across_a_rebuilt_hub() {
    let mut sim = Sim::new(16, recording());
    let old = live_client(&mut sim, &["*"], &["*"]);
    let new = live_client(&mut sim, &["*"], &["*"]);
    sim.submit_as(old, "tab-f", 1, args(&["INCR", "n"])).unwrap();
    sim.drop_link(old, true);
    sim.drop_link(new, false);
    sim.hub = SyncHub::new(recording(), Auth::with_secret(SECRET), "a".repeat(40), sim.engine.offset());
    assert!(sim.hub.restore_dedupe(sim.stored.load()).is_empty());
    let seq = sim.submit_as(new, "tab-f", 1, args(&["INCR", "n"])).unwrap();
    sim.connect(new);
    sim.deliver_all();
    assert_eq!((sim.hub.stats().writes, sim.hub.stats().duplicates), (0, 1));
    assert_eq!(hub_int(&sim, "n"), Some(1));
    assert_eq!(acked(&sim, new, seq), Some(Frame::Int(1)));
}

#[test]
fn dedupe_changes_are_recorded_only_when_asked() {
    for record in [false, true] {
        let (mut eng, mut hub) =
            (Engine::default(), SyncHub::new(HubConfig { record_dedupe: record, ..HubConfig::default() }, Auth::open(), "r".repeat(40), 0));
        hub.open(1, T0);
        let mut msg = cmd_bytes(&["SYNC.HELLO", "1", "", "c1"]);
        msg.extend(cmd_bytes(&["SYNC.W", "1", "INCR", "k"]));
        let out = hub.message(&mut eng, &mut NoHost, 1, &msg, T0);
        let want = record.then(|| DedupeEntry { subject: String::new(), client: b("c1"), seq: 1, offset: 1, reply: b(":1\r\n"), floor: 0, used: 2 });
        assert_eq!(out.dedupe.first().cloned(), want.map(DedupeChange::Put));
        assert_eq!(out.dedupe.len(), record as usize);
    }
}

/// Sends `SYNC.W seq INCR k` as `conn` and returns the ack's (offset, reply frame).
fn write_as(hub: &mut SyncHub, eng: &mut Engine, conn: ConnId, seq: u64, store: &mut DedupeStore) -> (u64, Frame) {
    let out = hub.message(eng, &mut NoHost, conn, &cmd_bytes(&["SYNC.W", &seq.to_string(), "INCR", "k"]), T0);
    store.apply(&out.dedupe);
    let ack = Ack::decode(&frames(&out)[0]).unwrap();
    assert_eq!(ack.seq, seq);
    (ack.offset, ack.reply)
}

#[test]
fn stored_dedupe_memory_mirrors_the_bounds() {
    let config = HubConfig { record_dedupe: true, dedupe_window: 4, dedupe_clients: 3, ..HubConfig::default() };
    let (mut eng, mut hub) = (Engine::default(), SyncHub::new(config.clone(), Auth::open(), "r".repeat(40), 0));
    let mut store = DedupeStore::default();
    for conn in 1..=4u64 {
        hub.open(conn, T0);
        hub.message(&mut eng, &mut NoHost, conn, &cmd_bytes(&["SYNC.HELLO", "1", "", &format!("c{conn}")]), T0);
    }
    // c1 writes 10 times (its window keeps 4), c2 and c3 once; then c4 arrives: over the
    // cap of 3 clients, the least recently used (c1) is dropped, in memory and in storage.
    for seq in 1..=10 {
        write_as(&mut hub, &mut eng, 1, seq, &mut store);
        assert!(store.per_client().values().all(|n| *n <= 4), "the window bounds storage too");
        assert_eq!(store.entries.len(), hub.dedupe_entries());
    }
    assert_eq!(store.clients.get(&(String::new(), b("c1"))).map(|c| c.0), Some(6), "floor: seqs 1..=6 forgotten");
    write_as(&mut hub, &mut eng, 2, 1, &mut store);
    write_as(&mut hub, &mut eng, 3, 1, &mut store);
    assert_eq!(store.clients.len(), 3);
    write_as(&mut hub, &mut eng, 4, 1, &mut store);
    assert_eq!((store.clients.len(), hub.dedupe_clients()), (3, 3));
    assert!(!store.clients.contains_key(&(String::new(), b("c1"))), "the dropped client's rows are deleted");
    assert_eq!((store.entries.len(), hub.dedupe_entries()), (3, 3));
    // Back to c2: a floor survives a rebuilt hub (seq 1..=6 of a full window are old).
    for seq in 2..=10 {
        write_as(&mut hub, &mut eng, 2, seq, &mut store);
    }
    let mut hub = SyncHub::new(config, Auth::open(), "r".repeat(40), 0);
    assert!(hub.restore_dedupe(store.load()).is_empty());
    assert_eq!((hub.dedupe_entries(), hub.dedupe_clients()), (store.entries.len(), store.clients.len()));
    hub.open(9, T0);
    hub.message(&mut eng, &mut NoHost, 9, &cmd_bytes(&["SYNC.HELLO", "1", "", "c2"]), T0);
    let before = eng.db(0).unwrap().get(b"k").unwrap().value.clone();
    assert_eq!(write_as(&mut hub, &mut eng, 9, 3, &mut store), (0, Frame::Null), "below the floor: an old duplicate");
    let (offset, reply) = write_as(&mut hub, &mut eng, 9, 10, &mut store);
    assert!(offset > 0 && reply == Frame::Int(22), "the remembered ack: {offset} {reply:?}");
    assert_eq!(eng.db(0).unwrap().get(b"k").unwrap().value, before, "nothing ran again");
    // A hub with smaller bounds restores what fits and hands out what storage must drop:
    // the least recent clients and the oldest entries.
    let small = HubConfig { record_dedupe: true, dedupe_window: 2, dedupe_clients: 2, ..HubConfig::default() };
    let mut hub = SyncHub::new(small, Auth::open(), "r".repeat(40), 0);
    let out = hub.restore_dedupe(store.load());
    store.apply(&out.dedupe);
    assert_eq!((hub.dedupe_clients(), store.clients.len()), (2, 2));
    assert!(store.clients.contains_key(&(String::new(), b("c2"))), "the most recent client stays");
    assert_eq!(store.per_client().values().copied().max(), Some(2));
    assert_eq!(store.entries.len(), hub.dedupe_entries());
    // What was restored is what storage holds: a second rebuild drops nothing more.
    let mut again =
        SyncHub::new(HubConfig { record_dedupe: true, dedupe_window: 2, dedupe_clients: 2, ..HubConfig::default() }, Auth::open(), "r".repeat(40), 0);
    assert!(again.restore_dedupe(store.load()).is_empty());
}
