//! Convergence against a real hub: 20 full sync clients, 2 partial-pattern clients and 2
//! clients scoped to `user:1:*` (some with clocks ±1 h off), plus 5 RESP writers, write at
//! random for a bounded time — strings, counters, hashes, lists, sets, sorted sets,
//! expiries, deletes, renames, MULTI — while the sync clients drop and reopen their links
//! at random (often with writes in flight, and writing while offline). When the hub goes
//! quiet, every client's visible state for its patterns must equal the hub's, and every
//! client write must have been applied exactly once: each client's own counter equals the
//! sum of its INCRBY deltas, its own log list is exactly 1..N, and every write settled once.
//!
//! Runs a fixed seed, then a random one (printed; `RECACHED_SYNC_SEED=<n>` replays it).
//! `RECACHED_SYNC_SECS` sets the write phase per seed (default 8 s).

mod sync_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use recached_engine::resp::Frame;
use recached_engine::rng::Rng;
use recached_engine::sync::client::Reconnect;
use sync_support::client::{ClientOpts, TestClient};
use sync_support::state::{diff, read_hub, visible_part, State};
use sync_support::{b, int, loud, now_ms, random_seed, show, Backend, Hub, HubOpts};

fn has(name: &str) -> bool {
    recached_engine::lookup(name.as_bytes()).is_some()
}

/// The keys one writer draws from, by type.
struct Keys {
    strings: Vec<String>,
    counters: Vec<String>,
    hashes: Vec<String>,
    lists: Vec<String>,
    sets: Vec<String>,
    zsets: Vec<String>,
}

impl Keys {
    fn shared() -> Keys {
        let n = |p: &str, k: usize| (0..k).map(|i| format!("{p}:{i}")).collect();
        Keys { strings: n("k", 6), counters: n("n", 3), hashes: n("h", 3), lists: n("l", 3), sets: n("s", 3), zsets: n("z", 3) }
    }
    fn user1() -> Keys {
        let n = |p: &str, k: usize| (0..k).map(|i| format!("user:1:{p}{i}")).collect();
        Keys { strings: n("k", 3), counters: n("n", 1), hashes: n("h", 1), lists: n("l", 1), sets: n("s", 1), zsets: n("z", 1) }
    }
}

fn pick<'a>(rng: &mut Rng, v: &'a [String]) -> &'a str {
    &v[rng.below(v.len())]
}

/// A random write over `keys` (only commands the engine has).
fn gen_write(rng: &mut Rng, keys: &Keys) -> Vec<Bytes> {
    for _ in 0..50 {
        let c: Vec<String> = match rng.below(40) {
            0 | 1 => vec!["SET".into(), pick(rng, &keys.strings).into(), format!("v{}", rng.below(100))],
            2 => vec!["SET".into(), pick(rng, &keys.strings).into(), "px".into(), "PX".into(), format!("{}", 100 + rng.below(1500))],
            3 => vec!["SET".into(), pick(rng, &keys.strings).into(), "long".into(), "EX".into(), "3600".into()],
            4 => vec!["SET".into(), pick(rng, &keys.strings).into(), "nx".into(), "NX".into()],
            5 => vec!["DEL".into(), pick(rng, &keys.strings).into()],
            6 => vec!["DEL".into(), pick(rng, &keys.hashes).into(), pick(rng, &keys.lists).into()],
            7 | 8 => vec!["INCR".into(), pick(rng, &keys.counters).into()],
            9 => vec!["INCRBY".into(), pick(rng, &keys.counters).into(), format!("{}", rng.below(10))],
            10 => vec!["APPEND".into(), pick(rng, &keys.strings).into(), "+".into()],
            11 => vec!["EXPIRE".into(), pick(rng, &keys.strings).into(), "1".into()],
            12 => vec!["PEXPIRE".into(), pick(rng, &keys.hashes).into(), format!("{}", 200 + rng.below(1500))],
            13 => vec!["PERSIST".into(), pick(rng, &keys.strings).into()],
            14 => vec!["RENAME".into(), pick(rng, &keys.strings).into(), pick(rng, &keys.strings).into()],
            15 => vec!["PEXPIREAT".into(), pick(rng, &keys.counters).into(), format!("{}", now_ms() + 300 + rng.below(1500) as u64)],
            16 | 17 => vec!["HSET".into(), pick(rng, &keys.hashes).into(), format!("f{}", rng.below(4)), format!("{}", rng.below(9))],
            18 => vec!["HDEL".into(), pick(rng, &keys.hashes).into(), format!("f{}", rng.below(4))],
            19 => vec!["HINCRBY".into(), pick(rng, &keys.hashes).into(), "c".into(), "1".into()],
            20 | 21 => vec!["RPUSH".into(), pick(rng, &keys.lists).into(), format!("e{}", rng.below(9))],
            22 => vec!["LPUSH".into(), pick(rng, &keys.lists).into(), format!("e{}", rng.below(9))],
            23 => vec!["LPOP".into(), pick(rng, &keys.lists).into()],
            24 => vec!["LMOVE".into(), pick(rng, &keys.lists).into(), pick(rng, &keys.lists).into(), "LEFT".into(), "RIGHT".into()],
            25 | 26 => vec!["SADD".into(), pick(rng, &keys.sets).into(), format!("m{}", rng.below(6))],
            27 => vec!["SREM".into(), pick(rng, &keys.sets).into(), format!("m{}", rng.below(6))],
            28 => vec!["SPOP".into(), pick(rng, &keys.sets).into()],
            29 => vec!["SMOVE".into(), pick(rng, &keys.sets).into(), pick(rng, &keys.sets).into(), format!("m{}", rng.below(6))],
            30 | 31 => vec!["ZADD".into(), pick(rng, &keys.zsets).into(), format!("{}", rng.below(20)), format!("m{}", rng.below(6))],
            32 => vec!["ZINCRBY".into(), pick(rng, &keys.zsets).into(), "1.5".into(), format!("m{}", rng.below(6))],
            33 => vec!["ZREM".into(), pick(rng, &keys.zsets).into(), format!("m{}", rng.below(6))],
            34 => vec!["RENAME".into(), pick(rng, &keys.hashes).into(), pick(rng, &keys.hashes).into()],
            // Across types and patterns: the partial clients see a deletion on one side and
            // a whole-value restore on the other; later writes of the wrong type are
            // rejected and rolled back.
            35 => vec!["RENAME".into(), pick(rng, &keys.strings).into(), pick(rng, &keys.hashes).into()],
            36 => vec!["SINTERSTORE".into(), pick(rng, &keys.sets).into(), pick(rng, &keys.sets).into(), pick(rng, &keys.sets).into()],
            37 => vec!["COPY".into(), pick(rng, &keys.lists).into(), pick(rng, &keys.lists).into(), "REPLACE".into()],
            38 => vec!["INCRBYFLOAT".into(), pick(rng, &keys.counters).into(), "0.5".into()],
            _ => vec!["GETDEL".into(), pick(rng, &keys.strings).into()],
        };
        if has(&c[0]) {
            return c.iter().map(|s| b(s)).collect();
        }
    }
    vec![b("SET"), b(&keys.strings[0]), b("fallback")]
}

/// A write only the RESP writers make: keys crossing the `user:1:*` scope. `MOVE` (to
/// another database) only where the backend speaks RESP over TCP: a sync connection always
/// uses database 0, so over a WebSocket backend the key leaves by `DEL` instead.
fn gen_cross_scope(rng: &mut Rng, multi_db: bool) -> Vec<Vec<Bytes>> {
    let u1 = format!("user:1:k{}", rng.below(3));
    let u2 = format!("user:2:k{}", rng.below(2));
    let c: Vec<&str> = match rng.below(5) {
        0 => vec!["SET", &u2, "SECRET-of-user-2"],
        1 => vec!["RENAME", &u1, &u2],
        2 => vec!["RENAME", &u2, &u1],
        3 => vec!["HSET", "user:2:h", "secret-field", "SECRET-of-user-2"],
        _ if multi_db => vec!["MOVE", &u1, "1"],
        _ => vec!["DEL", &u1],
    };
    vec![c.iter().map(|s| b(s)).collect()]
}

/// What a client task did.
#[derive(Default)]
struct Tally {
    /// Sum of the INCRBY deltas on its own counter.
    counter: i64,
    /// Entries pushed onto its own log.
    log: u64,
    /// Every seq it got for a write.
    seqs: Vec<u64>,
    drops: u64,
    closes: u64,
    offline_writes: u64,
}

struct Spec {
    id: String,
    read: Vec<&'static str>,
    patterns: Vec<&'static str>,
    scoped: bool,
    skew: i64,
}

fn specs(rng: &mut Rng) -> Vec<Spec> {
    let mut v = Vec::new();
    for i in 0..24 {
        let skew = match i % 4 {
            1 => 3_600_000,
            2 => -3_600_000,
            _ => rng.below(2000) as i64 - 1000,
        };
        let (read, patterns, scoped) = match i {
            20 => (vec!["*"], vec!["k:*", "n:*", "cnt:*", "log:*"], false),
            21 => (vec!["*"], vec!["[hlsz]:*"], false),
            22 | 23 => (vec!["user:1:*"], vec!["user:1:*"], true),
            _ => (vec!["*"], vec!["*"], false),
        };
        v.push(Spec { id: format!("c{i}"), read, patterns, scoped, skew });
    }
    v
}

fn own_keys(spec: &Spec) -> (String, String) {
    if spec.scoped {
        (format!("user:1:cnt:{}", spec.id), format!("user:1:log:{}", spec.id))
    } else {
        (format!("cnt:{}", spec.id), format!("log:{}", spec.id))
    }
}

async fn client_task(mut c: TestClient, spec: &Spec, seed: u64, until: Instant) -> (TestClient, Tally) {
    let mut rng = Rng::new(seed);
    let mut t = Tally::default();
    let keys = if spec.scoped { Keys::user1() } else { Keys::shared() };
    let (cnt, log) = own_keys(spec);
    let mut offline_until: Option<Instant> = None;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(5 + rng.below(40) as u64)).await;
        if let Some(at) = offline_until {
            if Instant::now() >= at {
                offline_until = None;
                let _ = c.try_connect().await;
            }
        } else if !c.connected() {
            // The hub closed it (slow consumer, …): follow the state machine's advice.
            if c.st().advice != Some(Reconnect::Stop) {
                let _ = c.try_connect().await;
            }
        }
        let seq = |s: Option<u64>, t: &mut Tally| {
            if let Some(s) = s {
                t.seqs.push(s);
            }
            s.is_some()
        };
        match rng.below(10) {
            0..=2 => {
                let d = rng.below(100) as i64 - 20;
                if seq(c.exec(&[b("INCRBY"), b(&cnt), b(&d.to_string())]).seq, &mut t) {
                    t.counter += d;
                }
            }
            3 => {
                t.log += 1;
                let n = t.log.to_string();
                assert!(seq(c.exec(&[b("RPUSH"), b(&log), b(&n)]).seq, &mut t), "{}: RPUSH refused", spec.id);
            }
            4 => {
                // One transaction: both of its own keys and a random write, atomically.
                let d = rng.below(10) as i64;
                let n = (t.log + 1).to_string();
                let w = gen_write(&mut rng, &keys);
                let s = c.transaction(&[vec![b("INCRBY"), b(&cnt), b(&d.to_string())], vec![b("RPUSH"), b(&log), b(&n)], w]);
                if seq(s.seq, &mut t) {
                    t.counter += d;
                    t.log += 1;
                }
            }
            5 if spec.scoped => {
                // Outside the write scope: refused on the client once it knows its grant
                // (before that, sent and refused by the hub, then rolled back).
                let s = c.run(&["SET", "user:2:k0", "from-user-1"]);
                seq(s.seq, &mut t);
            }
            _ => {
                let w = gen_write(&mut rng, &keys);
                seq(c.exec(&w).seq, &mut t);
            }
        }
        if offline_until.is_none() && c.connected() {
            match rng.below(60) {
                // Drop with the write just made still in flight.
                0 | 1 => {
                    c.drop_link();
                    t.drops += 1;
                    offline_until = Some(Instant::now() + Duration::from_millis(rng.below(400) as u64));
                }
                2 => {
                    c.close(1000).await;
                    t.closes += 1;
                    offline_until = Some(Instant::now() + Duration::from_millis(rng.below(200) as u64));
                }
                _ => {}
            }
        } else if offline_until.is_some() {
            t.offline_writes += 1;
        }
    }
    (c, t)
}

async fn writer_task(mut be: Backend, seed: u64, until: Instant) -> u64 {
    let mut rng = Rng::new(seed);
    let shared = Keys::shared();
    let user1 = Keys::user1();
    let mut n = 0;
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(3 + rng.below(15) as u64)).await;
        let cmds: Vec<Vec<Bytes>> = match rng.below(12) {
            0 => {
                // MULTI over RESP.
                let mut v = vec![vec![b("MULTI")]];
                for _ in 0..1 + rng.below(4) {
                    v.push(gen_write(&mut rng, &shared));
                }
                v.push(vec![b("EXEC")]);
                v
            }
            1 => gen_cross_scope(&mut rng, matches!(be, Backend::Tcp(_))),
            2 | 3 => vec![gen_write(&mut rng, &user1)],
            _ => vec![gen_write(&mut rng, &shared)],
        };
        let replies = be.pipeline(&cmds).await;
        for r in &replies {
            if let Frame::Error(e) = r {
                let e = String::from_utf8_lossy(e);
                // Random writes fail in ordinary ways (WRONGTYPE, no such key, not an integer,
                // same source and destination); a refusal or a protocol error is a bug.
                assert!(!e.starts_with("ERR unknown") && !e.starts_with("ERR Protocol") && !e.starts_with("NO"), "writer: unexpected error {e} for {cmds:?}");
            }
        }
        n += 1;
    }
    n
}

async fn run(seed: u64, secs: u64) {
    loud(&format!("sync convergence: seed {seed} for {secs} s (RECACHED_SYNC_SEED={seed} replays it)"));
    let started = Instant::now();
    let Some(hub) = Hub::start_or_skip("sync convergence", HubOpts::new()) else { return };
    let mut rng = Rng::new(seed);
    let specs = specs(&mut rng);
    let until = Instant::now() + Duration::from_secs(secs);

    let mut clients = Vec::new();
    for (i, s) in specs.iter().enumerate() {
        let tok = hub.token(&format!("user-{}", s.id), &s.read, &s.read, 3_600_000);
        let c = TestClient::new(&hub.ws_url, ClientOpts::new(&s.id, &tok, &s.patterns).skew(s.skew));
        // A few clients write before they ever connect (grant unknown: optimistic, then
        // the hub decides).
        if i % 7 == 3 {
            let (cnt, _) = own_keys(s);
            c.run(&["SET", if s.scoped { "user:1:k0" } else { "k:0" }, "early"]);
            if s.scoped {
                c.run(&["SET", "user:2:k1", "early-out-of-scope"]);
            }
            let _ = cnt;
        }
        clients.push(c);
    }
    for c in clients.iter_mut() {
        c.connect().await;
    }

    let mut writers = Vec::new();
    for w in 0..5u64 {
        let be = hub.backend().await;
        writers.push(tokio::spawn(writer_task(be, seed ^ (0x1000 + w), until)));
    }
    let specs = std::sync::Arc::new(specs);
    let mut tasks = Vec::new();
    for (i, c) in clients.into_iter().enumerate() {
        let specs = specs.clone();
        let cseed = seed ^ (0xc0ffee + i as u64);
        tasks.push(tokio::spawn(async move { client_task(c, &specs[i], cseed, until).await }));
    }
    let mut ops = 0;
    for w in writers {
        ops += w.await.expect("writer task");
    }
    let mut clients = Vec::new();
    let mut tallies = Vec::new();
    for t in tasks {
        let (c, tally) = t.await.expect("client task");
        clients.push(c);
        tallies.push(tally);
    }
    let writes: usize = tallies.iter().map(|t| t.seqs.len()).sum();
    let drops: u64 = tallies.iter().map(|t| t.drops + t.closes).sum();
    let offline: u64 = tallies.iter().map(|t| t.offline_writes).sum();
    loud(&format!("  {ops} RESP writer batches, {writes} client writes ({offline} while offline), {drops} disconnects"));

    // Quiet: everyone back online and settled, then let every short deadline pass so
    // the hub has expired those keys and told the clients.
    for c in clients.iter_mut() {
        if !c.connected() {
            c.connect().await;
        }
    }
    for c in &clients {
        assert!(c.wait_settled(Duration::from_secs(30)).await, "client never settled: {}", c.describe());
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut be = hub.backend().await;
    let hub_state: State = read_hub(&mut be).await;
    assert!(hub_state.len() > 10, "the hub holds almost nothing: {hub_state:?}");
    for (c, s) in clients.iter().zip(specs.iter()) {
        let want = visible_part(&hub_state, &s.patterns, &s.read);
        let mut last = Vec::new();
        let ok = sync_support::eventually(Duration::from_secs(10), || {
            last = diff(&want, &c.state(), now_ms(), 300);
            last.is_empty()
        })
        .await;
        assert!(ok, "seed {seed}: client {} diverged from the hub on {} keys:\n{}\n{}", s.id, last.len(), last.join("\n"), c.describe());
    }

    // Exactly once.
    for ((c, s), t) in clients.iter().zip(specs.iter()).zip(&tallies) {
        let (cnt, log) = own_keys(s);
        let v = be.cmd(&[b("GET"), b(&cnt)]).await;
        let got = int(&v).unwrap_or(if v == Frame::Null { 0 } else { i64::MIN });
        assert_eq!(got, t.counter, "seed {seed}: {} counter {cnt} is {} but its INCRBY deltas sum to {} ({})", s.id, show(&v), t.counter, c.describe());
        let l = be.cmd(&[b("LRANGE"), b(&log), b("0"), b("-1")]).await;
        let items: Vec<String> = match &l {
            Frame::Array(v) => v.iter().map(|f| f.as_bytes().map(|x| String::from_utf8_lossy(x).into_owned()).unwrap_or_default()).collect(),
            _ => Vec::new(),
        };
        let want: Vec<String> = (1..=t.log).map(|n| n.to_string()).collect();
        assert_eq!(items, want, "seed {seed}: {} log {log} is not exactly 1..{} ({})", s.id, t.log, c.describe());
        let st = c.st();
        let mut twice: HashMap<u64, usize> = HashMap::new();
        for seq in &t.seqs {
            let n = st.settled.get(seq).map(|v| v.len()).unwrap_or(0);
            if n != 1 {
                twice.insert(*seq, n);
            }
        }
        assert!(twice.is_empty(), "seed {seed}: {} writes settled other than once (seq → times): {twice:?}", s.id);
        assert!(st.errors.is_empty(), "seed {seed}: {} protocol errors: {:?}", s.id, st.errors);
        // The scoped clients never received a key outside user:1:*.
        if s.scoped {
            let foreign: Vec<&Bytes> = st.received_keys.iter().filter(|k| !k.starts_with(b"user:1:")).collect();
            assert!(foreign.is_empty(), "seed {seed}: {} received keys outside its scope: {foreign:?}", s.id);
        }
    }
    loud(&format!("  seed {seed}: {} clients converged on {} hub keys in {:?}", clients.len(), hub_state.len(), started.elapsed()));
}

fn secs() -> u64 {
    std::env::var("RECACHED_SYNC_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn convergence_fixed_then_random_seed() {
    sync_support::raise_nofile_limit();
    run(0x5eed_0004, secs()).await;
    run(random_seed(), secs()).await;
}
