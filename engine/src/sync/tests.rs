//! End-to-end tests of the sync protocol in one process: a simulated hub (engine, backlog,
//! per-subscriber filtering through [`SyncHub`]) and simulated clients ([`SyncClient`])
//! exchanging real protocol bytes over simulated sockets with random delays, drops and
//! reconnects. No sockets, no threads, no clock reads.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use super::client::{ClientConfig, Event, Reconnect, Status, SyncClient};
use super::hub::{close, Auth, ConnId, HubConfig, Output, SyncHub};
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
    rng: Rng,
    engine: Engine,
    hub: SyncHub,
    now: u64,
    next_conn: u64,
    clients: Vec<SimClient>,
    backends: Vec<Session>,
}

impl Sim {
    fn new(seed: u64, config: HubConfig) -> Sim {
        let engine = Engine::new(Config { seed, ..Config::default() });
        let hub = SyncHub::new(config, Auth::with_secret(SECRET), "a".repeat(40), engine.offset());
        Sim { rng: Rng::new(seed), engine, hub, now: T0, next_conn: 1000, clients: Vec::new(), backends: (0..5).map(|i| Session::new(100 + i)).collect() }
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
    // A fresh seed each run, printed so a failure can be replayed with the fixed test.
    let seed = {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        let addr = &t as *const u64 as u64;
        t ^ addr.rotate_left(17)
    };
    run_convergence(seed, 4000);
}
