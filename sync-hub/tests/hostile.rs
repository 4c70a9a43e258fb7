//! Hostile input against the server under test: declared sizes that must not be
//! allocated, deep nesting, pathological globs, connection floods, slow consumers.
//! Each test ends by checking that the server still runs and serves.

#[macro_use]
mod common;

use common::{encode, lossy, End, Opts, Reply, Server};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

/// How much a server's resident memory may grow while it fends off an attack that
/// declares gigabytes (kB).
const RSS_SLACK_KB: u64 = 64 * 1024;

fn vm_size_kb(srv: &Server) -> u64 {
    common::proc_status_kb(srv.pid(), "VmSize").unwrap_or(0)
}

compat_test! {
    fn declared_1gb_bulk_is_refused_without_allocating() {
        let mut srv = Server::start();
        let (rss0, vm0) = (srv.peak_rss_kb(), vm_size_kb(&srv));
        let mut c = srv.connect();
        c.send(b"*2\r\n$3\r\nSET\r\n$1073741824\r\n").unwrap();
        // Start streaming the value as a real attacker would.
        let _ = c.send(&vec![b'x'; 256 * 1024]);
        let (got, end) = c.read_to_end(Duration::from_secs(5));
        assert_eq!(lossy(&got), "-ERR Protocol error: invalid bulk length\\r\\n");
        assert!(matches!(end, End::Eof | End::Reset), "not closed: {end:?}");
        let (rss1, vm1) = (srv.peak_rss_kb(), vm_size_kb(&srv));
        eprintln!("peak RSS {rss0} -> {rss1} kB, VmSize {vm0} -> {vm1} kB");
        assert!(rss1 < rss0 + RSS_SLACK_KB, "peak RSS grew from {rss0} to {rss1} kB");
        assert!(vm1 < vm0 + 512 * 1024, "virtual size grew from {vm0} to {vm1} kB: the bulk was reserved");
        srv.assert_serving();
    }
}

compat_test! {
    fn declared_large_bulk_under_the_limit_is_not_touched_before_data() {
        // 500 MB is a legal bulk (proto-max-bulk-len is 512 MB); only 1 MB of it arrives.
        let mut srv = Server::start();
        let rss0 = srv.peak_rss_kb();
        let mut conns = Vec::new();
        for i in 0..8 {
            let mut c = srv.connect();
            c.send(format!("*3\r\n$3\r\nSET\r\n$6\r\nhbig:{i}\r\n$524288000\r\n").as_bytes()).unwrap();
            c.send(&vec![b'y'; 1024 * 1024]).unwrap();
            conns.push(c);
        }
        thread::sleep(Duration::from_millis(300));
        let rss1 = srv.peak_rss_kb();
        eprintln!("peak RSS {rss0} -> {rss1} kB with 8 x 500 MB declared bulks");
        assert!(rss1 < rss0 + RSS_SLACK_KB, "peak RSS grew from {rss0} to {rss1} kB");
        srv.assert_serving();
        drop(conns);
        srv.assert_serving();
    }
}

compat_test! {
    fn declared_multibulk_of_10_million_elements() {
        let mut srv = Server::start();
        let (rss0, vm0) = (srv.peak_rss_kb(), vm_size_kb(&srv));
        // Many connections each declaring 10M elements: a server that reserved room for the
        // declared count would need gigabytes.
        let mut conns = Vec::new();
        for _ in 0..20 {
            let mut c = srv.connect();
            let mut req = b"*10000000\r\n".to_vec();
            for _ in 0..1000 {
                req.extend(b"$3\r\nfoo\r\n");
            }
            c.send(&req).unwrap();
            conns.push(c);
        }
        thread::sleep(Duration::from_millis(300));
        // Redis 7 accepts the header (limit INT_MAX) and waits for the elements; a server
        // with a lower limit may refuse with Redis's error. Either way no reply is executed.
        for c in conns.iter_mut() {
            let (got, end) = c.read_to_end(Duration::from_millis(50));
            match end {
                End::Open => assert_eq!(lossy(&got), "", "reply before the array was complete"),
                _ => assert_eq!(lossy(&got), "-ERR Protocol error: invalid multibulk length\\r\\n"),
            }
        }
        let (rss1, vm1) = (srv.peak_rss_kb(), vm_size_kb(&srv));
        eprintln!("peak RSS {rss0} -> {rss1} kB, VmSize {vm0} -> {vm1} kB");
        assert!(rss1 < rss0 + RSS_SLACK_KB, "peak RSS grew from {rss0} to {rss1} kB");
        assert!(vm1 < vm0 + 1024 * 1024, "virtual size grew from {vm0} to {vm1} kB");
        srv.assert_serving();
        drop(conns);
        srv.assert_serving();
    }
}

compat_test! {
    fn deeply_nested_frames() {
        let mut srv = Server::start();
        // A command is an array of bulk strings: a nested array is a protocol error at once,
        // however deep the nesting goes (no recursion, no stack overflow).
        for depth in [2usize, 1000, 1_000_000] {
            let mut c = srv.connect();
            let req = b"*1\r\n".repeat(depth);
            let _ = c.send(&req);
            let (got, end) = c.read_to_end(Duration::from_secs(5));
            assert_eq!(lossy(&got), "-ERR Protocol error: expected '$', got '*'\\r\\n", "depth {depth}");
            assert!(matches!(end, End::Eof | End::Reset), "depth {depth}: {end:?}");
        }
        let mut c = srv.connect();
        let mut req = b"*2\r\n$4\r\nECHO\r\n".to_vec();
        req.extend(b"*1\r\n".repeat(100_000));
        let _ = c.send(&req);
        let (got, _) = c.read_to_end(Duration::from_secs(5));
        assert_eq!(lossy(&got), "-ERR Protocol error: expected '$', got '*'\\r\\n");
        // RESP3 aggregates a client might send instead of an array.
        for req in [&b"%1\r\n%1\r\n%1\r\n"[..], b"~1\r\n~1\r\n", b">1\r\n>1\r\n"] {
            let mut c = srv.connect();
            let _ = c.send(&req.repeat(10_000));
            let (_, end) = c.read_to_end(Duration::from_secs(5));
            // Redis reads these as inline commands (an unknown-command error per line);
            // any answer is fine as long as the server survives.
            let _ = end;
        }
        srv.assert_serving();
    }
}

compat_test! {
    fn pathological_psubscribe_glob_is_fast() {
        let mut srv = Server::start();
        let mut sub = srv.connect();
        // Exponential for a naive backtracking matcher: 20 stars against 'a' * 20000.
        let pattern = format!("{}b", "*a".repeat(20));
        let pattern2 = format!("{}[b]", "a*?".repeat(20));
        sub.send(&encode(&["PSUBSCRIBE", &pattern, &pattern2])).unwrap();
        assert!(matches!(sub.reply(), Reply::Array(_)));
        assert!(matches!(sub.reply(), Reply::Array(_)));
        let mut p = srv.connect();
        let channel = "a".repeat(20_000);
        let start = Instant::now();
        let r = p.cmd(&["PUBLISH", &channel, "x"]);
        let took = start.elapsed();
        eprintln!("PUBLISH with pathological patterns took {took:?}");
        assert_eq!(r, Reply::Int(0));
        assert!(took < Duration::from_millis(500), "PUBLISH took {took:?}");
        // The patterns still match what they should.
        let hit = format!("{channel}b");
        let start = Instant::now();
        assert_eq!(p.cmd(&["PUBLISH", &hit, "y"]), Reply::Int(2));
        assert!(start.elapsed() < Duration::from_millis(500), "matching PUBLISH took {:?}", start.elapsed());
        for _ in 0..2 {
            match sub.reply() {
                Reply::Array(v) => {
                    assert_eq!(v[0], Reply::bulk("pmessage"));
                    assert_eq!(v[2], Reply::bulk(&hit));
                }
                other => panic!("{other:?}"),
            }
        }
        srv.assert_serving();
    }
}

compat_test! {
    fn pathological_keys_glob_is_fast() {
        let mut srv = Server::start();
        let mut c = srv.client();
        let key = "a".repeat(20_000);
        assert_eq!(c.cmd(&["SET", &key, "1"]), Reply::ok());
        let start = Instant::now();
        let r = c.cmd(&["KEYS", &format!("{}b", "*a".repeat(20))]);
        let took = start.elapsed();
        eprintln!("KEYS with a pathological pattern took {took:?}");
        assert_eq!(r, Reply::Array(vec![]));
        assert!(took < Duration::from_millis(500), "KEYS took {took:?}");
        srv.assert_serving();
    }
}

compat_test! {
    /// 2,000 connections against `maxclients 1000`: the first 1,000 are served, every other
    /// one gets Redis's error and is closed, and the server keeps serving throughout.
    fn maxclients_flood_is_refused_cleanly() {
        common::raise_nofile_limit();
        let limit = common::nofile_limit();
        assert!(limit >= 2200, "RLIMIT_NOFILE is {limit}; this test needs 2200 (ulimit -n 4096)");
        let mut srv = Server::start_with(&Opts::new().maxclients(1000));
        let port = srv.port;
        let mut conns: Vec<(TcpStream, Option<Vec<u8>>)> = Vec::with_capacity(2000);
        let start = Instant::now();
        for i in 0..2000 {
            let s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            let _ = s.set_nodelay(true);
            conns.push((s, None));
        }
        eprintln!("2000 connects took {:?}", start.elapsed());
        // A refused connection gets the error unprompted; read those first, without writing,
        // so our own bytes cannot turn the server's close into a reset.
        thread::sleep(Duration::from_millis(1000));
        const REFUSED: &[u8] = b"-ERR max number of clients reached\r\n";
        let mut refused = 0;
        for (s, got) in conns.iter_mut() {
            s.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 128];
            if let Ok(n) = std::io::Read::read(s, &mut buf) {
                if n > 0 {
                    *got = Some(buf[..n].to_vec());
                }
            }
            s.set_nonblocking(false).unwrap();
        }
        let mut accepted = Vec::new();
        for (i, (s, got)) in conns.into_iter().enumerate() {
            let mut c = common::Conn::from_stream(s);
            match got {
                Some(first) => {
                    let (rest, end) = c.read_to_end(Duration::from_secs(5));
                    let all = [first, rest].concat();
                    assert_eq!(lossy(&all), lossy(REFUSED), "connection {i}");
                    assert!(matches!(end, End::Eof | End::Reset), "refused connection {i} left open");
                    refused += 1;
                }
                None => accepted.push((i, c)),
            }
        }
        // Every connection that got nothing must be a served one.
        let mut late_refused = 0;
        let mut served = Vec::new();
        for (i, mut c) in accepted {
            let _ = c.send(b"PING\r\n");
            match c.try_reply() {
                Ok(Reply::Simple(s)) if s == "PONG" => served.push(c),
                Ok(Reply::Error(e)) if e == "ERR max number of clients reached" => late_refused += 1,
                other => panic!("connection {i}: {other:?}"),
            }
        }
        eprintln!("served {}, refused {refused} (+{late_refused} late)", served.len());
        assert_eq!(served.len(), 1000, "served connections");
        assert_eq!(refused + late_refused, 1000, "refused connections");
        // At the limit, the served connections still work.
        for (n, c) in served.iter_mut().enumerate().step_by(97) {
            assert_eq!(c.cmd(&["SET", &format!("flood:{n}"), "v"]), Reply::ok());
            assert_eq!(c.cmd(&["GET", &format!("flood:{n}")]), Reply::bulk("v"));
        }
        // Freeing slots lets new clients in.
        served.truncate(990);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut c = srv.connect();
            let _ = c.send(b"PING\r\n");
            match c.try_reply() {
                Ok(Reply::Simple(s)) if s == "PONG" => break,
                other => {
                    assert!(Instant::now() < deadline, "no slot freed after closing 10 clients: {other:?}");
                    thread::sleep(Duration::from_millis(50));
                }
            }
        }
        drop(served);
        srv.assert_serving();
    }
}

compat_test! {
    fn idle_timeout_closes_idle_clients() {
        let mut srv = Server::start_with(&Opts::new().timeout(1));
        let mut idle = srv.connect();
        let mut busy = srv.connect();
        let start = Instant::now();
        let mut closed = None;
        while start.elapsed() < Duration::from_secs(6) {
            assert_eq!(busy.cmd(&["PING"]), Reply::Simple("PONG".into()));
            let (got, end) = idle.read_to_end(Duration::from_millis(200));
            assert_eq!(lossy(&got), "");
            if end != End::Open {
                closed = Some(start.elapsed());
                break;
            }
        }
        let closed = closed.expect("idle client not closed within 6 s of a 1 s timeout");
        assert!(closed >= Duration::from_millis(900), "closed too early: {closed:?}");
        srv.assert_serving();
    }
}

compat_test! {
    fn slow_subscriber_is_disconnected() {
        let mut srv = Server::start();
        let rss0 = srv.rss_kb();
        let mut sub = srv.connect();
        sub.send(b"SUBSCRIBE slow:ch\r\n").unwrap();
        assert!(matches!(sub.reply(), Reply::Array(_)));
        // The subscriber never reads again. Publish 160 MB at it: past Redis's pubsub hard
        // limit (32 MB) the server must drop it rather than buffer everything.
        let mut p = srv.connect();
        let msg = vec![b'z'; 1024 * 1024];
        let mut max_rss = 0;
        for _ in 0..160 {
            let _ = p.cmd(&[&b"PUBLISH"[..], b"slow:ch", &msg]);
            max_rss = max_rss.max(srv.rss_kb());
        }
        eprintln!("RSS {rss0} -> max {max_rss} kB while publishing 160 MB to a stalled subscriber");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match p.cmd(&["PUBSUB", "NUMSUB", "slow:ch"]) {
                Reply::Array(v) if v.get(1) == Some(&Reply::Int(0)) => break,
                other => assert!(Instant::now() < deadline, "stalled subscriber still subscribed: {other:?}"),
            }
            thread::sleep(Duration::from_millis(100));
        }
        assert!(max_rss < rss0 + 100 * 1024, "RSS grew from {rss0} to {max_rss} kB");
        srv.assert_serving();
    }
}
