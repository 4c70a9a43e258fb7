//! Engine micro-benchmarks (criterion): RESP parsing and applying commands.
//!
//! `cargo bench -p recached-engine --bench engine` (add `-- --quick` for a short run).
//! Results and the exact command are recorded in docs/benchmarks.md.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use recached_engine::resp::frame::take_command;
use recached_engine::resp::{encode_command, parse, parse_bytes, Limits};
use recached_engine::{Engine, NoHost, Session};

const NOW: u64 = 1_700_000_000_000;

fn args(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Runs one command the way a host does: execute, then drain the outbox.
fn exec(eng: &mut Engine, sess: &mut Session, a: &[Bytes]) {
    black_box(eng.execute(sess, a, NOW, &mut NoHost));
    black_box(eng.take_changes());
}

/// A small xorshift so key choice costs nothing next to the command.
struct Xs(u64);
impl Xs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn resp(c: &mut Criterion) {
    let mut pipeline = Vec::new();
    for i in 0..1000 {
        let key = format!("key:{:06}", i);
        encode_command(&[&b"SET"[..], key.as_bytes(), b"value-of-sixteen"], &mut pipeline);
    }
    let limits = Limits::default();
    let mut g = c.benchmark_group("resp");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("parse pipeline of 1000 SET", |b| {
        b.iter_batched(
            || BytesMut::from(&pipeline[..]),
            |mut buf| {
                let mut n = 0;
                while let Ok(Some(cmd)) = take_command(&mut buf, &limits) {
                    black_box(&cmd);
                    n += 1;
                }
                assert_eq!(n, 1000);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // What a sync client receives per change, and a Redis subscriber per message.
    // As a reader holds them: split off its read buffer (reference-counted, not static).
    let received = |frame: &[u8]| BytesMut::from(frame).split().freeze();
    let change = received(b">5\r\n$11\r\nsync.change\r\n:1234567\r\n$3\r\nSET\r\n$9\r\nbench:key\r\n$3\r\n123\r\n");
    let message = received(b"*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$3\r\n123\r\n");
    let mut g = c.benchmark_group("resp frame");
    for (name, frame) in [("sync.change", &change), ("pubsub message", &message)] {
        g.bench_function(format!("parse (copies) {name}"), |b| b.iter(|| black_box(parse(black_box(frame), &limits))));
        g.bench_function(format!("parse_bytes (slices) {name}"), |b| b.iter(|| black_box(parse_bytes(black_box(frame), &limits))));
    }
    g.finish();
}

fn commands(c: &mut Criterion) {
    let mut g = c.benchmark_group("execute");
    g.throughput(Throughput::Elements(1));
    let keys: Vec<Bytes> = (0..10_000).map(|i| Bytes::from(format!("key:{:06}", i))).collect();

    let mut eng = Engine::default();
    let mut sess = Session::new(1);
    for k in &keys {
        exec(&mut eng, &mut sess, &[Bytes::from_static(b"SET"), k.clone(), Bytes::from_static(b"value-of-sixteen")]);
    }
    let mut rng = Xs(0x9E37_79B9_7F4A_7C15);
    g.bench_function("GET (10k keys)", |b| {
        b.iter(|| {
            let k = &keys[rng.next() as usize % keys.len()];
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"GET"), k.clone()]);
        })
    });
    g.bench_function("SET (10k keys)", |b| {
        b.iter(|| {
            let k = &keys[rng.next() as usize % keys.len()];
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"SET"), k.clone(), Bytes::from_static(b"value-of-sixteen")]);
        })
    });
    let counters: Vec<Bytes> = (0..10_000).map(|i| Bytes::from(format!("counter:{:06}", i))).collect();
    g.bench_function("INCR (10k counters)", |b| {
        b.iter(|| {
            let k = &counters[rng.next() as usize % counters.len()];
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"INCR"), k.clone()]);
        })
    });
    g.bench_function("LPUSH (one list)", |b| {
        let a = args(&[b"LPUSH", b"list", b"element-value"]);
        b.iter(|| exec(&mut eng, &mut sess, &a))
    });
    g.bench_function("HSET (10k fields)", |b| {
        b.iter(|| {
            let f = &keys[rng.next() as usize % keys.len()];
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"HSET"), Bytes::from_static(b"hash"), f.clone(), Bytes::from_static(b"v")]);
        })
    });
    g.finish();
}

fn big_zset(c: &mut Criterion) {
    const MEMBERS: usize = 1_000_000;
    let mut eng = Engine::default();
    let mut sess = Session::new(1);
    let members: Vec<Bytes> = (0..MEMBERS).map(|i| Bytes::from(format!("member:{:07}", i))).collect();
    let mut rng = Xs(0x1234_5678_9ABC_DEF1);
    for chunk in members.chunks(1000) {
        let mut a = vec![Bytes::from_static(b"ZADD"), Bytes::from_static(b"z")];
        for m in chunk {
            a.push(Bytes::from((rng.next() % 1_000_000_000).to_string()));
            a.push(m.clone());
        }
        exec(&mut eng, &mut sess, &a);
    }
    let mut g = c.benchmark_group("zset 1M members");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ZADD (update a score)", |b| {
        b.iter(|| {
            let m = &members[rng.next() as usize % MEMBERS];
            let score = Bytes::from((rng.next() % 1_000_000_000).to_string());
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"ZADD"), Bytes::from_static(b"z"), score, m.clone()]);
        })
    });
    g.bench_function("ZRANK", |b| {
        b.iter(|| {
            let m = &members[rng.next() as usize % MEMBERS];
            exec(&mut eng, &mut sess, &[Bytes::from_static(b"ZRANK"), Bytes::from_static(b"z"), m.clone()]);
        })
    });
    g.bench_function("ZRANGE (10 from a random rank)", |b| {
        b.iter(|| {
            let start = rng.next() as usize % (MEMBERS - 10);
            exec(
                &mut eng,
                &mut sess,
                &[
                    Bytes::from_static(b"ZRANGE"),
                    Bytes::from_static(b"z"),
                    Bytes::from(start.to_string()),
                    Bytes::from((start + 9).to_string()),
                    Bytes::from_static(b"WITHSCORES"),
                ],
            );
        })
    });
    g.finish();
}

/// The hub side of one write reaching 1000 live subscribers: `SyncHub::publish` filters the
/// group for every subscriber and builds each one's message (what the native hub does under
/// the engine lock before it writes the first socket).
fn fan_out(c: &mut Criterion) {
    use recached_engine::sync::message::Request;
    use recached_engine::sync::{Auth, HubConfig, SyncHub};
    const SUBSCRIBERS: u64 = 1000;
    let mut eng = Engine::new(Default::default());
    let mut hub = SyncHub::new(HubConfig::default(), Auth::open(), "a".repeat(40), eng.offset());
    for conn in 1..=SUBSCRIBERS {
        hub.open(conn, NOW);
        let mut hello = Vec::new();
        Request::Hello { version: 1, token: Bytes::new(), client_id: Bytes::from(format!("c{conn}")) }.encode(&mut hello);
        Request::Sub { patterns: vec![Bytes::from_static(b"bench:*")], from: None }.encode(&mut hello);
        let out = hub.message(&mut eng, &mut NoHost, conn, &hello, NOW);
        assert!(out.closes.is_empty());
    }
    assert_eq!(hub.subscribers(), SUBSCRIBERS as usize);
    let mut sess = Session::new(1);
    let mut i = 0u64;
    let mut g = c.benchmark_group("sync");
    g.throughput(Throughput::Elements(SUBSCRIBERS));
    g.bench_function("publish SET to 1000 subscribers", |b| {
        b.iter(|| {
            i += 1;
            eng.execute(&mut sess, &args(&[b"SET", b"bench:k", i.to_string().as_bytes()]), NOW, &mut NoHost);
            let groups = eng.take_changes();
            let out = hub.publish(&eng, &groups, NOW);
            assert_eq!(out.sends.len(), SUBSCRIBERS as usize);
            black_box(out);
        })
    });
    g.finish();
}

criterion_group!(benches, resp, commands, big_zset, fan_out);
criterion_main!(benches);
