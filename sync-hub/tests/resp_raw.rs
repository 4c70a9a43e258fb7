//! Raw RESP bytes on a socket against the server under test (recached by default;
//! `RECACHED_TEST_SERVER=redis` runs the same tests against redis-server 7, where every
//! expected byte string here was taken from).

#[macro_use]
mod common;

use common::{encode, lossy, End, Reply, Server};
use std::thread;
use std::time::{Duration, Instant};

/// A pipeline mixing RESP arrays, inline commands, binary values and an error reply, with
/// the exact bytes Redis 7 answers.
fn pipeline() -> (Vec<u8>, Vec<u8>) {
    let mut req = Vec::new();
    req.extend(encode(&[&b"SET"[..], b"raw:n", b"0"]));
    req.extend(encode(&[&b"SET"[..], b"raw:k", b"a\r\nb\0c$3\r\n*1"]));
    req.extend(b"PING\r\n");
    req.extend(encode(&[&b"GET"[..], b"raw:k"]));
    req.extend(encode(&[&b"INCR"[..], b"raw:n"]));
    req.extend(b"ECHO \"x\\x00y\"\n");
    req.extend(encode(&[&b"INCRBY"[..], b"raw:n", b"41"]));
    req.extend(encode(&[&b"GET"[..], b"raw:missing"]));
    req.extend(encode(&[&b"GET"[..]])); // arity error; the connection stays open
    req.extend(encode(&[&b"ECHO"[..], b""]));
    req.extend(b"*0\r\n\r\n"); // both skipped without a reply
    req.extend(encode(&[&b"PING"[..], b"last"]));
    let mut rep = Vec::new();
    rep.extend(b"+OK\r\n");
    rep.extend(b"+OK\r\n");
    rep.extend(b"+PONG\r\n");
    rep.extend(b"$12\r\na\r\nb\0c$3\r\n*1\r\n");
    rep.extend(b":1\r\n");
    rep.extend(b"$3\r\nx\0y\r\n");
    rep.extend(b":42\r\n");
    rep.extend(b"$-1\r\n");
    rep.extend(b"-ERR wrong number of arguments for 'get' command\r\n");
    rep.extend(b"$0\r\n\r\n");
    rep.extend(b"$4\r\nlast\r\n");
    (req, rep)
}

compat_test! {
    fn pipeline_in_one_write() {
        let srv = Server::start();
        let (req, rep) = pipeline();
        let mut c = srv.connect();
        c.send(&req).unwrap();
        c.expect_bytes(&rep);
        // Nothing extra, and the connection is still open.
        let (rest, end) = c.read_to_end(Duration::from_millis(200));
        assert_eq!(lossy(&rest), "");
        assert_eq!(end, End::Open);
    }
}

compat_test! {
    fn pipeline_split_at_every_byte() {
        let srv = Server::start();
        let (req, rep) = pipeline();
        // One connection for all split points: the server must carry a partial frame over
        // from one read to the next, whatever the cut.
        let mut c = srv.connect();
        for cut in 1..req.len() {
            c.send(&req[..cut]).unwrap();
            // Let the server read (and answer) the first part on its own.
            thread::sleep(Duration::from_millis(3));
            c.send(&req[cut..]).unwrap();
            match c.read_exact_bytes(rep.len()) {
                Ok(got) => assert_eq!(lossy(&got), lossy(&rep), "pipeline split at byte {cut}"),
                Err(e) => panic!("pipeline split at byte {cut} ({:?} | {:?}): {e}", lossy(&req[..cut]), lossy(&req[cut..])),
            }
        }
    }
}

compat_test! {
    fn pipeline_one_byte_per_write() {
        let srv = Server::start();
        let (req, rep) = pipeline();
        let mut c = srv.connect();
        for b in &req {
            c.send(std::slice::from_ref(b)).unwrap();
            thread::sleep(Duration::from_micros(300));
        }
        c.expect_bytes(&rep);
    }
}

compat_test! {
    fn pipeline_of_10000_commands() {
        let srv = Server::start();
        let mut c = srv.connect();
        let mut req = Vec::new();
        for i in 0..10_000 {
            req.extend(encode(&["SET", &format!("raw:p:{i}"), &format!("v{i}")]));
            req.extend(encode(&["GET", &format!("raw:p:{i}")]));
        }
        let w = c.stream.try_clone().unwrap();
        let writer = thread::spawn(move || {
            let mut w = w;
            std::io::Write::write_all(&mut w, &req).unwrap();
        });
        for i in 0..10_000 {
            assert_eq!(c.reply(), Reply::ok(), "SET #{i}");
            assert_eq!(c.reply(), Reply::bulk(format!("v{i}")), "GET #{i}");
        }
        writer.join().unwrap();
    }
}

compat_test! {
    /// Clients such as redis-py send a whole pipeline before reading any reply. Redis keeps
    /// reading meanwhile (normal clients have no output-buffer limit), so the client's write
    /// completes; a server that stops reading while its replies go unread deadlocks them.
    fn pipeline_written_whole_before_reading() {
        let srv = Server::start();
        let mut c = srv.connect();
        let big = vec![b'v'; 1 << 20];
        let mut req = Vec::new();
        for i in 0..20 {
            let key = format!("raw:big:{i}");
            req.extend(encode(&[&b"SET"[..], key.as_bytes(), &big]));
            req.extend(encode(&[&b"GET"[..], key.as_bytes()]));
        }
        c.stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let start = Instant::now();
        let mut written = 0;
        while written < req.len() {
            match std::io::Write::write(&mut c.stream, &req[written..]) {
                Ok(n) => written += n,
                Err(e) => panic!(
                    "server stopped reading after {written} of {} bytes ({e}, {:?}); 20 MB of replies unread",
                    req.len(),
                    start.elapsed()
                ),
            }
        }
        for i in 0..20 {
            assert_eq!(c.reply(), Reply::ok(), "SET #{i}");
            assert!(c.reply() == Reply::Bulk(big.clone()), "GET #{i}");
        }
    }
}

compat_test! {
    fn inline_commands() {
        let srv = Server::start();
        let mut c = srv.connect();
        let cases: &[(&[u8], &[u8])] = &[
            (b"PING\r\n", b"+PONG\r\n"),
            (b"PING\n", b"+PONG\r\n"),
            (b"ping hello\r\n", b"$5\r\nhello\r\n"),
            (b"  ECHO   a   \r\n", b"$1\r\na\r\n"),
            (b"\r\n\n\r\nPING\r\n", b"+PONG\r\n"),
            (b"SET raw:inline \"two words\"\r\nGET raw:inline\r\n", b"+OK\r\n$9\r\ntwo words\r\n"),
            (b"ECHO 'a\\'b'\r\n", b"$3\r\na'b\r\n"),
            (b"ECHO \"\\x41\\n\\t\"\r\n", b"$3\r\nA\n\t\r\n"),
            (b"ECHO \"a\\x00b\"\r\n", b"$3\r\na\0b\r\n"),
            (b"ECHO \"\"\r\n", b"$0\r\n\r\n"),
            (b"GET\r\n", b"-ERR wrong number of arguments for 'get' command\r\n"),
            (b"NOSUCHCMD a b\r\n", b"-ERR unknown command 'NOSUCHCMD', with args beginning with: 'a' 'b' \r\n"),
            // Inline and RESP arrays mixed in one write.
            (b"PING\r\n*1\r\n$4\r\nPING\r\nPING\n", b"+PONG\r\n+PONG\r\n+PONG\r\n"),
        ];
        for (req, rep) in cases {
            c.send(req).unwrap();
            match c.read_exact_bytes(rep.len()) {
                Ok(got) => assert_eq!(lossy(&got), lossy(rep), "inline {:?}", lossy(req)),
                Err(e) => panic!("inline {:?}: {e}", lossy(req)),
            }
        }
        let (rest, end) = c.read_to_end(Duration::from_millis(200));
        assert_eq!((lossy(&rest), end), (String::new(), End::Open));
    }
}

compat_test! {
    /// Each protocol error: the replies before it, then Redis's error line, then the server
    /// closes the connection (without running what follows the bad frame).
    fn protocol_errors_reply_then_close() {
        let mut srv = Server::start();
        let big_inline = vec![b'x'; 70_000];
        let mut big_mbulk = b"*".to_vec();
        big_mbulk.extend(vec![b'1'; 70_000]);
        let mut big_bulk = b"*1\r\n$".to_vec();
        big_bulk.extend(vec![b'1'; 70_000]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"*abc\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1 \r\n$4\r\nPING\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*+1\r\n$4\r\nPING\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*01\r\n$4\r\nPING\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*3000000000\r\n".to_vec(), "-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n$abc\r\n".to_vec(), "-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\n$-5\r\n".to_vec(), "-ERR Protocol error: invalid bulk length\r\n"),
            (b"*2\r\n$4\r\nECHO\r\n$-1\r\n".to_vec(), "-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\nfoo\r\n".to_vec(), "-ERR Protocol error: expected '$', got 'f'\r\n"),
            (b"*2\r\n$4\r\nECHO\r\n:1\r\n".to_vec(), "-ERR Protocol error: expected '$', got ':'\r\n"),
            (b"set \"a\r\n".to_vec(), "-ERR Protocol error: unbalanced quotes in request\r\n"),
            (b"ECHO \"a\"b\r\n".to_vec(), "-ERR Protocol error: unbalanced quotes in request\r\n"),
            (b"ECHO 'a\r\n".to_vec(), "-ERR Protocol error: unbalanced quotes in request\r\n"),
            (big_inline, "-ERR Protocol error: too big inline request\r\n"),
            (big_mbulk, "-ERR Protocol error: too big mbulk count string\r\n"),
            (big_bulk, "-ERR Protocol error: too big bulk count string\r\n"),
            // Replies to the good commands before the bad frame still arrive; the SET after
            // it never runs.
            (
                b"PING\r\n*1\r\n$4\r\nPING\r\n*1\r\nfoo\r\nSET raw:after-error 1\r\n".to_vec(),
                "+PONG\r\n+PONG\r\n-ERR Protocol error: expected '$', got 'f'\r\n",
            ),
        ];
        for (req, want) in &cases {
            let mut c = srv.connect();
            c.send(req).unwrap();
            let (got, end) = c.read_to_end(Duration::from_secs(5));
            assert_eq!(lossy(&got), lossy(want.as_bytes()), "reply to {:?}", lossy(req));
            assert!(matches!(end, End::Eof | End::Reset), "connection not closed after {:?} ({end:?})", lossy(req));
        }
        let mut c = srv.client();
        assert_eq!(c.cmd(&["EXISTS", "raw:after-error"]), Reply::Int(0), "a command after a protocol error ran");
        srv.assert_serving();
    }
}

compat_test! {
    fn command_errors_keep_the_connection() {
        let srv = Server::start();
        let mut c = srv.connect();
        c.send(b"SET raw:e 1\r\nGETX\r\nLPUSH raw:e x\r\nGET raw:e\r\n").unwrap();
        c.expect_bytes(b"+OK\r\n");
        c.expect_bytes(b"-ERR unknown command 'GETX', with args beginning with: \r\n");
        c.expect_bytes(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        c.expect_bytes(b"$1\r\n1\r\n");
    }
}

compat_test! {
    fn quit_replies_ok_then_closes() {
        let srv = Server::start();
        for req in [&b"QUIT\r\nPING\r\n"[..], b"*1\r\n$4\r\nquit\r\n"] {
            let mut c = srv.connect();
            c.send(req).unwrap();
            let (got, end) = c.read_to_end(Duration::from_secs(5));
            assert_eq!(lossy(&got), "+OK\\r\\n");
            assert!(matches!(end, End::Eof | End::Reset), "{end:?}");
        }
    }
}

compat_test! {
    fn hello_switches_protocol() {
        let srv = Server::start();
        let mut c = srv.connect();
        match c.cmd(&["HELLO", "3"]) {
            Reply::Map(fields) => {
                let get = |k: &str| fields.iter().find(|(f, _)| *f == Reply::bulk(k)).map(|(_, v)| v.clone());
                assert_eq!(get("proto"), Some(Reply::Int(3)));
                assert!(get("id").is_some() && get("server").is_some() && get("version").is_some(), "{fields:?}");
                assert_eq!(get("mode"), Some(Reply::bulk("standalone")));
                assert_eq!(get("role"), Some(Reply::bulk("master")));
            }
            other => panic!("HELLO 3 must answer a map, got {other:?}"),
        }
        c.send(&encode(&["GET", "raw:hello:none"])).unwrap();
        c.expect_bytes(b"_\r\n");
        c.send(b"INCRBYFLOAT raw:hello:f 1.5\r\nSADD raw:hello:s a\r\nSMEMBERS raw:hello:s\r\nEXISTS raw:hello:s\r\n").unwrap();
        c.expect_bytes(b"$3\r\n1.5\r\n:1\r\n~1\r\n$1\r\na\r\n:1\r\n");
        match c.cmd(&["HELLO", "2"]) {
            Reply::Array(items) => assert_eq!(items.len(), 14, "{items:?}"),
            other => panic!("HELLO 2 must answer an array, got {other:?}"),
        }
        c.send(&encode(&["GET", "raw:hello:none"])).unwrap();
        c.expect_bytes(b"$-1\r\n");
        c.send(b"HELLO 4\r\n").unwrap();
        c.expect_bytes(b"-NOPROTO unsupported protocol version\r\n");
    }
}

compat_test! {
    fn resp3_maps_and_doubles() {
        let srv = Server::start();
        let mut c = srv.connect();
        assert!(matches!(c.cmd(&["HELLO", "3"]), Reply::Map(_)));
        c.send(b"HSET raw:h f 1.5\r\nHGETALL raw:h\r\nHGETALL raw:none\r\n").unwrap();
        c.expect_bytes(b":1\r\n%1\r\n$1\r\nf\r\n$3\r\n1.5\r\n%0\r\n");
        c.send(b"ZADD raw:z 2.5 m\r\nZSCORE raw:z m\r\nZRANGE raw:z 0 -1 WITHSCORES\r\nZSCORE raw:z nope\r\n").unwrap();
        c.expect_bytes(b":1\r\n,2.5\r\n*1\r\n*2\r\n$1\r\nm\r\n,2.5\r\n_\r\n");
    }
}

compat_test! {
    fn resp3_pubsub_pushes() {
        let srv = Server::start();
        let mut sub = srv.connect();
        let _ = sub.cmd(&["HELLO", "3"]);
        sub.send(b"SUBSCRIBE raw:ch\r\n").unwrap();
        sub.expect_bytes(b">3\r\n$9\r\nsubscribe\r\n$6\r\nraw:ch\r\n:1\r\n");
        // RESP3 allows normal commands while subscribed.
        sub.send(b"PING\r\n").unwrap();
        sub.expect_bytes(b"+PONG\r\n");
        let mut p = srv.connect();
        assert_eq!(p.cmd(&["PUBLISH", "raw:ch", "hi\r\n\0"]), Reply::Int(1));
        sub.expect_bytes(b">3\r\n$7\r\nmessage\r\n$6\r\nraw:ch\r\n$5\r\nhi\r\n\0\r\n");
    }
}

compat_test! {
    fn resp2_subscribe_mode_limits_commands() {
        let srv = Server::start();
        let mut sub = srv.connect();
        sub.send(b"SUBSCRIBE raw:a raw:b\r\n").unwrap();
        sub.expect_bytes(b"*3\r\n$9\r\nsubscribe\r\n$5\r\nraw:a\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nraw:b\r\n:2\r\n");
        sub.send(b"GET x\r\n").unwrap();
        sub.expect_bytes(
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
        );
        sub.send(b"PING\r\n").unwrap();
        sub.expect_bytes(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        sub.send(b"PSUBSCRIBE raw:*\r\n").unwrap();
        sub.expect_bytes(b"*3\r\n$10\r\npsubscribe\r\n$5\r\nraw:*\r\n:3\r\n");
        let mut p = srv.connect();
        assert_eq!(p.cmd(&["PUBLISH", "raw:a", "m"]), Reply::Int(2));
        sub.expect_bytes(b"*3\r\n$7\r\nmessage\r\n$5\r\nraw:a\r\n$1\r\nm\r\n");
        sub.expect_bytes(b"*4\r\n$8\r\npmessage\r\n$5\r\nraw:*\r\n$5\r\nraw:a\r\n$1\r\nm\r\n");
        sub.send(b"UNSUBSCRIBE\r\n").unwrap();
        // Unsubscribing from all channels: one reply per channel, in subscription order.
        let mut names = Vec::new();
        for want_count in [2, 1] {
            match sub.reply() {
                Reply::Array(v) if v.len() == 3 && v[0] == Reply::bulk("unsubscribe") && v[2] == Reply::Int(want_count) => {
                    names.push(v[1].as_bytes().to_vec())
                }
                other => panic!("UNSUBSCRIBE reply {other:?}, wanted count {want_count}"),
            }
        }
        names.sort();
        assert_eq!(names, vec![b"raw:a".to_vec(), b"raw:b".to_vec()]);
        sub.send(b"PUNSUBSCRIBE\r\nGET raw:a\r\n").unwrap();
        sub.expect_bytes(b"*3\r\n$12\r\npunsubscribe\r\n$5\r\nraw:*\r\n:0\r\n$-1\r\n");
    }
}

compat_test! {
    fn auth_required() {
        let srv = Server::start_with(&common::Opts::new().requirepass("s3cret"));
        let mut c = srv.connect();
        c.send(b"GET k\r\n").unwrap();
        c.expect_bytes(b"-NOAUTH Authentication required.\r\n");
        c.send(b"AUTH wrong\r\n").unwrap();
        c.expect_bytes(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        c.send(b"AUTH s3cret\r\nPING\r\n").unwrap();
        c.expect_bytes(b"+OK\r\n+PONG\r\n");
        let mut d = srv.connect();
        d.send(b"AUTH default s3cret\r\nPING\r\n").unwrap();
        d.expect_bytes(b"+OK\r\n+PONG\r\n");
        let mut h = srv.connect();
        match h.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]) {
            Reply::Map(_) => {}
            other => panic!("HELLO 3 AUTH: {other:?}"),
        }
        // Before AUTH, Redis refuses arrays of more than 10 elements and bulks over 16 KB, so
        // an anonymous peer cannot make the server buffer much.
        for (req, want) in [
            (&b"*11\r\n"[..], "-ERR Protocol error: unauthenticated multibulk length\\r\\n"),
            (b"*1\r\n$16385\r\n", "-ERR Protocol error: unauthenticated bulk length\\r\\n"),
        ] {
            let mut u = srv.connect();
            u.send(req).unwrap();
            let (got, end) = u.read_to_end(Duration::from_secs(5));
            assert_eq!(lossy(&got), want, "unauthenticated {:?}", lossy(req));
            assert!(matches!(end, End::Eof | End::Reset));
        }
        // At the limits it waits for the rest, as Redis does.
        for req in [&b"*10\r\n"[..], b"*2\r\n$16384\r\n"] {
            let mut u = srv.connect();
            u.send(req).unwrap();
            let (got, end) = u.read_to_end(Duration::from_millis(300));
            assert_eq!((lossy(&got), end), (String::new(), End::Open), "unauthenticated {:?}", lossy(req));
        }
    }
}

compat_test! {
    /// Before AUTH, Redis 7.0 still reports unknown commands, unknown subcommands and
    /// arity errors as such; only a command that would run gets NOAUTH.
    fn unauthenticated_command_errors() {
        let srv = Server::start_with(&common::Opts::new().requirepass("pw"));
        let mut c = srv.connect();
        c.send(b"FOO\r\nGET\r\nCLIENT NOSUCH\r\nGET a\r\n").unwrap();
        c.expect_bytes(b"-ERR unknown command 'FOO', with args beginning with: \r\n");
        c.expect_bytes(b"-ERR wrong number of arguments for 'get' command\r\n");
        c.expect_bytes(b"-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n");
        c.expect_bytes(b"-NOAUTH Authentication required.\r\n");
    }
}

compat_test! {
    fn command_info_unknown_name_is_null_bulk() {
        let srv = Server::start();
        let mut c = srv.connect();
        c.send(b"COMMAND INFO nosuch\r\n").unwrap();
        c.expect_bytes(b"*1\r\n$-1\r\n");
    }
}

compat_test! {
    fn pubsub_subcommand_syntax_error() {
        let srv = Server::start();
        let mut c = srv.connect();
        c.send(b"PUBSUB CHANNELS a b\r\n").unwrap();
        c.expect_bytes(b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.\r\n");
    }
}

compat_test! {
    /// Redis closes a killed connection before it answers CLIENT KILL, so the victim's
    /// next command finds a clean EOF (client libraries then reconnect transparently).
    fn client_kill_closes_the_victim_before_replying() {
        let srv = Server::start();
        for round in 0..20 {
            let mut victim = srv.connect();
            let id = match victim.cmd(&["CLIENT", "ID"]) {
                Reply::Int(id) => id,
                other => panic!("CLIENT ID: {other:?}"),
            };
            let mut admin = srv.connect();
            assert_eq!(admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]), Reply::Int(1));
            let _ = victim.send(b"PING\r\n");
            let (got, end) = victim.read_to_end(Duration::from_secs(2));
            assert_eq!((lossy(&got), end), (String::new(), End::Eof), "round {round}: the victim still ran a command or was reset");
        }
    }
}
