//! Fuzz target bodies for the Recached engine.
//!
//! Each function takes arbitrary bytes and panics only when it finds a bug: a parser or
//! decoder that panics, reads out of bounds, or breaks one of the properties checked here
//! (incremental parsing equals whole-buffer parsing; a replica fed the change stream holds
//! the primary's state; a decoded snapshot re-encodes to itself). Both drivers call them:
//! libFuzzer through `cargo fuzz` (`fuzz_targets/`) and the stable `fuzz-smoke` binary.

use bytes::{Bytes, BytesMut};
use recached_engine::resp::frame::{parse_command, take_command, Arg};
use recached_engine::resp::{parse, parse_bytes, Frame, FrameError, Limits, Protocol};
use recached_engine::aof;
use recached_engine::snapshot::{self, stream, SnapshotMeta};
use recached_engine::{Config, Engine, NoHost, Outcome, Policy, Session};

/// The target names, for drivers.
pub const TARGETS: &[&str] = &["resp_command", "resp_frame", "execute", "snapshot_decode", "aof_decode", "stream_decode"];

/// Runs a target by name; false if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "resp_command" => resp_command(data),
        "resp_frame" => resp_frame(data),
        "execute" => execute(data),
        "snapshot_decode" => snapshot_decode(data),
        "aof_decode" => aof_decode(data),
        "stream_decode" => stream_decode(data),
        _ => return false,
    }
    true
}

/// Small limits, so inputs of a few KB can reach every limit error.
fn limits(selector: u8) -> Limits {
    if selector & 1 == 0 {
        Limits::default()
    } else {
        Limits { max_bulk_len: 64, max_multibulk_len: 16, max_inline_len: 48, max_depth: 4 }
    }
}

/// What one `take_command` loop yields: the commands, then how it stopped.
fn drain(buf: &mut BytesMut, limits: &Limits, out: &mut Vec<Result<Vec<Bytes>, String>>) {
    loop {
        match take_command(buf, limits) {
            Ok(Some(args)) => {
                assert!(!args.is_empty(), "take_command returned an empty command");
                out.push(Ok(args));
            }
            Ok(None) => return,
            Err(e) => {
                out.push(Err(e.to_string()));
                return;
            }
        }
    }
}

/// The server-side command parser (`parse_command` / `take_command`).
///
/// Checks: no panic; every range inside the input; the consumed count inside the input;
/// feeding the bytes in two pieces gives exactly the commands and the error of feeding
/// them at once (so any TCP fragmentation gives the same result).
pub fn resp_command(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else { return };
    let limits = limits(selector);
    if let Ok(Some(parsed)) = parse_command(data, &limits) {
        assert!(parsed.consumed > 0 && parsed.consumed <= data.len());
        for arg in &parsed.args {
            if let Arg::Range(s, e) = arg {
                assert!(s <= e && *e <= parsed.consumed, "range {}..{} beyond {}", s, e, parsed.consumed);
            }
        }
    }
    let mut whole = Vec::new();
    let mut buf = BytesMut::from(data);
    drain(&mut buf, &limits, &mut whole);

    let cut = if data.is_empty() { 0 } else { (selector as usize * 7) % (data.len() + 1) };
    let mut pieces = Vec::new();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&data[..cut]);
    drain(&mut buf, &limits, &mut pieces);
    if !matches!(pieces.last(), Some(Err(_))) {
        buf.extend_from_slice(&data[cut..]);
        drain(&mut buf, &limits, &mut pieces);
    }
    assert_eq!(whole, pieces, "split at {} changed the result", cut);
}

/// The general RESP2/RESP3 frame parser (`resp::parse`).
///
/// Checks: no panic; the consumed count inside the input; a frame parses the same from
/// exactly its own bytes; every strict prefix of a frame is "incomplete", never an error
/// or another frame; `parse_bytes` (slices, not copies) gives what `parse` gives; a frame
/// parses the same inside an array as alone.
pub fn resp_frame(data: &[u8]) {
    let Some((&selector, data)) = data.split_first() else { return };
    let limits = limits(selector);
    let mut rest = data;
    for _ in 0..8 {
        let sliced = parse_bytes(&Bytes::copy_from_slice(rest), &limits);
        let copied = parse(rest, &limits);
        assert!(same(&sliced, &copied), "parse_bytes {:?} but parse {:?}", sliced, copied);
        // Inside an array (where bulk strings take a fast path) it parses as it does alone,
        // unless the extra level is one too deep.
        let inside = parse(&[&b"*1\r\n"[..], rest].concat(), &limits);
        let wrapped = copied.clone().map(|r| r.map(|(f, n)| (Frame::Array(vec![f]), n + 4)));
        assert!(matches!(inside, Err(FrameError::TooDeep)) || same(&inside, &wrapped), "inside an array {:?} but alone {:?}", inside, copied);
        match copied {
            Ok(Some((frame, n))) => {
                assert!(n > 0 && n <= rest.len(), "consumed {} of {}", n, rest.len());
                let again = parse(&rest[..n], &limits);
                assert!(matches!(&again, Ok(Some((f, m))) if *m == n && frame_eq(f, &frame)), "reparse differs: {:?}", again);
                for cut in [n - 1, n / 2, 1] {
                    if cut < n {
                        let p = parse(&rest[..cut], &limits);
                        assert!(matches!(p, Ok(None)), "prefix of {} bytes (frame is {}) gave {:?}", cut, n, p);
                    }
                }
                rest = &rest[n..];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// The same parse result, with NaN equal to itself (`,nan` parses to NaN).
fn same(a: &Result<Option<(Frame, usize)>, FrameError>, b: &Result<Option<(Frame, usize)>, FrameError>) -> bool {
    format!("{:?}", a) == format!("{:?}", b)
}

/// Frames compare with NaN equal to itself (`,nan` parses to NaN).
fn frame_eq(a: &recached_engine::resp::Frame, b: &recached_engine::resp::Frame) -> bool {
    format!("{:?}", a) == format!("{:?}", b)
}

/// Words the command decoder draws arguments from, so short inputs make real commands.
const WORDS: &[&[u8]] = &[
    b"k", b"k2", b"{k}3", b"0", b"1", b"-1", b"2", b"10", b"100", b"-100", b"5000", b"1.5", b"-inf", b"+inf", b"(1",
    b"[a", b"-", b"+", b"EX", b"PX", b"EXAT", b"PXAT", b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR", b"KEEPTTL", b"GET",
    b"WITHSCORES", b"LIMIT", b"COUNT", b"MATCH", b"TYPE", b"BYSCORE", b"BYLEX", b"REV", b"LEFT", b"RIGHT", b"BEFORE",
    b"AFTER", b"RANK", b"MAXLEN", b"REPLACE", b"DB", b"WEIGHTS", b"AGGREGATE", b"MIN", b"MAX", b"SUM", b"PERSIST",
    b"9223372036854775807", b"-9223372036854775808", b"a", b"", b"*", b"h*", b"1700000000000", b"1700000001",
];

/// Command execution: a byte program of commands against one engine, its change stream
/// applied to a replica.
///
/// Encoding: byte 0 picks the configuration (RESP3, memory cap and policy, key cap). Then
/// records: `0xFF t` advances the clock by `t * 37` ms and runs an expiry sweep; any other
/// byte `c` runs command `table()[c % len]` with `argc` (next byte % 8) arguments, each a
/// byte `w`: `w < 0xC0` is `WORDS[w % len]`, else a literal of the next `w - 0xC0` bytes.
///
/// Checks: no panic; replies encode in both protocols; every change group applies cleanly
/// to a replica, which then holds the same keys, values and deadlines; per-command memory
/// accounting equals a recount; the final state survives a snapshot round trip.
pub fn execute(data: &[u8]) {
    let Some((&conf, mut p)) = data.split_first() else { return };
    let mut config = Config::default();
    if conf & 0x06 != 0 {
        config.maxmemory = 2_000 + (conf as usize >> 3) * 200;
        config.policy = [Policy::NoEviction, Policy::AllKeysLru, Policy::VolatileTtl, Policy::AllKeysLfu][(conf as usize >> 1) & 3];
    }
    if conf & 0x08 != 0 {
        config.maxkeys = 4;
    }
    let mut eng = Engine::new(config.clone());
    let mut replica = Engine::new(config);
    // A replica applies whatever it is sent: never short of memory.
    replica.config_mut().maxmemory = 0;
    replica.config_mut().maxkeys = 0;
    let mut sess = Session::new(1);
    sess.resp3 = conf & 1 != 0;
    let table = recached_engine::table();
    let mut now = 1_700_000_000_000u64;
    let mut steps = 0;
    let mut history = Vec::new();
    while let Some((&op, rest)) = p.split_first() {
        p = rest;
        steps += 1;
        if steps > 96 {
            break;
        }
        if op == 0xFF {
            let Some((&t, rest)) = p.split_first() else { break };
            p = rest;
            now += t as u64 * 37;
            eng.sweep(now, 8);
            history.push(format!("@+{}ms sweep", t as u64 * 37));
        } else {
            let spec = table[op as usize % table.len()];
            let mut args = vec![Bytes::from(spec.name.to_ascii_uppercase())];
            let Some((&argc, rest)) = p.split_first() else { break };
            p = rest;
            for _ in 0..argc % 8 {
                let Some((&w, rest)) = p.split_first() else { break };
                p = rest;
                if w < 0xC0 {
                    args.push(Bytes::from_static(WORDS[w as usize % WORDS.len()]));
                } else {
                    let n = ((w - 0xC0) as usize).min(p.len());
                    args.push(Bytes::copy_from_slice(&p[..n]));
                    p = &p[n..];
                }
            }
            history.push(args.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>().join(" "));
            let reply = match eng.execute(&mut sess, &args, now, &mut NoHost) {
                Outcome::Reply(r) => r,
                Outcome::Blocked(b) => b.timeout_reply,
            };
            let mut out = Vec::new();
            recached_engine::resp::encode(&reply, Protocol::Resp2, &mut out);
            recached_engine::resp::encode(&reply, Protocol::Resp3, &mut out);
        }
        for group in eng.take_changes() {
            if let Err(e) = replica.apply_group(&group, now) {
                panic!("replica refused {:?}: {:?}\nhistory:\n  {}", group, e, history.join("\n  "));
            }
        }
        replica.take_changes();
        eng.take_events();
        let used = eng.used_memory();
        eng.recount_memory();
        assert_eq!(used, eng.used_memory(), "used_memory drifted\nhistory:\n  {}", history.join("\n  "));
    }
    let (a, b) = (state(&eng, now), state(&replica, now));
    assert!(a == b, "replica diverged\nprimary {:?}\nreplica {:?}\nhistory:\n  {}", a, b, history.join("\n  "));
    // Snapshot round trip of the final state.
    let meta = SnapshotMeta { offset: eng.offset(), replid: "fuzz".into() };
    let bytes = snapshot::encode(&eng, &meta);
    let mut loaded = Engine::default();
    let got = snapshot::load(&mut loaded, &bytes, now).expect("own snapshot loads");
    assert_eq!(got, meta);
    assert!(snapshot::encode(&loaded, &meta) == bytes, "snapshot round trip changed the bytes");
}

/// Live keys of every database, with unordered parts sorted.
fn state(eng: &Engine, now: u64) -> Vec<Vec<String>> {
    use recached_engine::Value;
    eng.dbs()
        .iter()
        .map(|db| {
            let mut keys: Vec<String> = db
                .iter()
                .filter(|(_, e)| e.expire_at == 0 || e.expire_at > now)
                .map(|(k, e)| {
                    let v = match &e.value {
                        Value::Int(n) => format!("int {}", n),
                        Value::Str(s) => format!("str {:?}", s),
                        Value::List(l) => format!("list {:?}", l.items()),
                        Value::Hash(h) => {
                            let mut f: Vec<_> = h.map().iter().collect();
                            f.sort();
                            format!("hash {:?}", f)
                        }
                        Value::Set(s) => {
                            let mut m: Vec<_> = s.members().iter().collect();
                            m.sort();
                            format!("set {:?}", m)
                        }
                        Value::ZSet(z) => format!("zset {:?}", z.iter().map(|(m, s)| (m.to_vec(), s.to_bits())).collect::<Vec<_>>()),
                    };
                    format!("{:?} exp={} {}", k, e.expire_at, v)
                })
                .collect();
            keys.sort();
            keys
        })
        .collect()
}

/// Wraps `payload` in a header with the right length and CRC, so the fuzzer reaches the
/// postcard decoder behind the checksum.
pub fn forge_snapshot(payload: &[u8]) -> Vec<u8> {
    let mut out = snapshot::MAGIC.to_vec();
    out.extend_from_slice(&snapshot::VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(payload);
    let mut crc = snapshot::Crc32::new();
    crc.update(&out[6..16]);
    crc.update(payload);
    let crc = crc.finish();
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The snapshot decoder: the raw input, and the input as a payload behind a valid header.
///
/// Checks: no panic; anything that decodes loads and re-encodes to the canonical bytes,
/// which decode to the same state.
pub fn snapshot_decode(data: &[u8]) {
    let _ = snapshot::decode(data);
    let forged = forge_snapshot(data);
    if let Ok((_, meta)) = snapshot::decode(&forged) {
        let mut eng = Engine::default();
        if snapshot::load(&mut eng, &forged, 0).is_ok() {
            let again = snapshot::encode(&eng, &meta);
            let mut eng2 = Engine::default();
            assert_eq!(snapshot::load(&mut eng2, &again, 0).as_ref(), Ok(&meta));
            assert!(snapshot::encode(&eng2, &meta) == again, "canonical encoding is not stable");
            assert_eq!(state(&eng, 0), state(&eng2, 0));
        }
    }
}

/// The AOF decoders: increment records (first byte even) or the manifest (odd).
///
/// Checks: no panic and no read past the input; a decoded record encodes back to bytes
/// that decode to the same record; a parsed manifest prints back to text that parses to
/// the same manifest.
pub fn aof_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    if sel & 1 == 1 {
        if let Ok(text) = std::str::from_utf8(rest) {
            if let Ok(m) = aof::Manifest::parse(text) {
                assert_eq!(aof::Manifest::parse(&m.encode()).as_ref(), Ok(&m), "manifest does not print back");
            }
        }
        return;
    }
    let buf = Bytes::copy_from_slice(rest);
    let records = match aof::scan(&buf) {
        Ok(s) => {
            assert!(s.valid_len <= rest.len());
            s.records
        }
        Err((at, _)) => {
            assert!(at <= rest.len());
            return;
        }
    };
    let mut again = Vec::new();
    for r in &records {
        match r {
            aof::Record::Group { group, dedupe } => aof::encode_group(group, dedupe, &mut again),
            aof::Record::Stream { replid, offset } => aof::encode_stream(replid, *offset, &mut again),
        }
    }
    let back = aof::scan(&Bytes::from(again)).expect("re-encoded records decode");
    assert!(!back.truncated);
    assert_eq!(back.records, records, "records do not round-trip");
}

/// Wraps `payload` as one chunk of `kind` with a valid CRC inside a streamed snapshot with
/// a meta chunk, so the fuzzer reaches the chunk decoders behind the checksums.
pub fn forge_stream(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = stream::file_header().to_vec();
    stream::push_chunk(&mut out, stream::kind::META, &stream::meta_payload(&stream::StreamMeta::default()));
    stream::push_chunk(&mut out, kind, payload);
    out
}

/// The streamed snapshot decoder: the raw input, and its tail as one chunk of the kind its
/// first byte names, behind a valid header and CRC.
///
/// Checks: no panic; anything that loads encodes back to a snapshot that loads to the same
/// state (and the same canonical bytes).
pub fn stream_decode(data: &[u8]) {
    let check = |bytes: &[u8]| {
        let Ok(loaded) = stream::decode(bytes, 16) else { return };
        let mut eng = Engine::default();
        let (meta, aux) = stream::install(&mut eng, loaded, 0);
        let aux: Vec<(&str, &[u8])> = aux.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        let again = stream::encode(&eng, &meta, &aux);
        let mut eng2 = Engine::default();
        stream::install(&mut eng2, stream::decode(&again, 16).expect("own snapshot loads"), 0);
        let canon = SnapshotMeta::default();
        assert!(snapshot::encode(&eng, &canon) == snapshot::encode(&eng2, &canon), "streamed snapshot does not round-trip");
    };
    check(data);
    if let Some((&k, rest)) = data.split_first() {
        let kind = [stream::kind::KEYS, stream::kind::AUX, stream::kind::END, stream::kind::META][(k & 3) as usize];
        let mut forged = forge_stream(kind, rest);
        if k & 4 != 0 {
            stream::push_chunk(&mut forged, stream::kind::END, &stream::end_payload(0));
        }
        check(&forged);
    }
}

/// Seed inputs per target, for drivers that start without a corpus.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "resp_command" => [
            &b"\x00*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n"[..],
            b"\x01*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n",
            b"\x00PING\r\nSET k \"a b\\x41\\n\" 'it\\'s'\r\n\r\n",
            b"\x03*-1\r\n*0\r\n*1\r\n$-1\r\n",
            b"\x05*2\r\n$4\r\nECHO\r\n$70\r\n0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        "resp_frame" => [
            &b"\x00%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*2\r\n,1.5\r\n#t\r\n"[..],
            b"\x00>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n",
            b"\x01~2\r\n(123456789012345678901234567890\r\n=15\r\ntxt:hello world\r\n",
            b"\x00_\r\n*-1\r\n$-1\r\n-ERR bad\r\n!5\r\nerror\r\n,inf\r\n,-inf\r\n,nan\r\n",
            b"\x01*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ]
        .iter()
        .map(|s| s.to_vec())
        .collect(),
        "execute" => {
            let op = |name: &str| -> u8 {
                let t = recached_engine::table();
                t.iter().position(|c| c.name == name).map(|i| i as u8).unwrap_or(0)
            };
            let w = |word: &[u8]| WORDS.iter().position(|x| *x == word).map(|i| i as u8).unwrap_or(0);
            let mut out = Vec::new();
            // SET k 10 EX 1; INCR k; LPUSH k2 a 1; ZADD {k}3 1 a 2 k; sweep; GET k
            out.push(vec![
                0,
                op("set"), 4, w(b"k"), w(b"10"), w(b"EX"), w(b"1"),
                op("incr"), 1, w(b"k"),
                op("lpush"), 3, w(b"k2"), w(b"a"), w(b"1"),
                op("zadd"), 5, w(b"{k}3"), w(b"1"), w(b"a"), w(b"2"), w(b"k"),
                0xFF, 200,
                op("get"), 1, w(b"k"),
                op("rename"), 2, w(b"k2"), w(b"k"),
                op("hset"), 3, w(b"h*"), w(b"a"), w(b"1"),
                op("sadd"), 3, w(b"k2"), w(b"a"), w(b"-1"),
                op("multi"), 0, op("spop"), 1, w(b"k2"), op("exec"), 0,
            ]);
            out.push(vec![0x0F, op("set"), 2, w(b"k"), 0xC4, b'a', b'b', b'c', b'd', op("set"), 2, w(b"k2"), w(b"1")]);
            out
        }
        "snapshot_decode" => {
            let mut eng = Engine::default();
            let mut s = Session::new(1);
            for cmd in [
                &[&b"SET"[..], b"s", b"v", b"PX", b"100"][..],
                &[b"SET", b"n", b"42"],
                &[b"RPUSH", b"l", b"a", b"b"],
                &[b"HSET", b"h", b"f", b"v"],
                &[b"SADD", b"set", b"m"],
                &[b"ZADD", b"z", b"1.5", b"m", b"-inf", b"n"],
            ] {
                eng.run(&mut s, cmd, 1_700_000_000_000);
            }
            let snap = snapshot::encode(&eng, &SnapshotMeta { offset: 7, replid: "seed".into() });
            let payload = snap[snapshot::HEADER_LEN..].to_vec();
            vec![snap, payload, vec![0, 0, 1, 1, 1, b'k', 0, 0, 84]]
        }
        "aof_decode" => {
            let mut eng = Engine::default();
            let mut s = Session::new(1);
            eng.run(&mut s, &[b"SET", b"k", b"v", b"EX", b"10"], 1_700_000_000_000);
            eng.run(&mut s, &[b"RPUSH", b"l", b"a", b"b"], 1_700_000_000_000);
            let mut rec = vec![0u8];
            for g in eng.take_changes() {
                aof::encode_group(&g, &[], &mut rec);
            }
            aof::encode_stream("f00d", 9, &mut rec);
            let manifest = b"\x01file appendonly.aof.1.base.rcs seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n".to_vec();
            vec![rec, manifest]
        }
        "stream_decode" => {
            let mut eng = Engine::default();
            let mut s = Session::new(1);
            for cmd in [&[&b"SET"[..], b"s", b"v", b"PX", b"100"][..], &[b"HSET", b"h", b"f", b"v"], &[b"ZADD", b"z", b"1.5", b"m"]] {
                eng.run(&mut s, cmd, 1_700_000_000_000);
            }
            let whole = stream::encode(&eng, &stream::StreamMeta { offset: 3, replid: "r".into(), ..Default::default() }, &[("dedupe", b"x")]);
            let mut one = Vec::new();
            stream::push_entry(&mut one, 0, b"k", &recached_engine::Entry::new(recached_engine::Value::Int(5)));
            let mut keys = vec![4u8];
            keys.extend_from_slice(&one);
            vec![whole, keys]
        }
        _ => Vec::new(),
    }
}
