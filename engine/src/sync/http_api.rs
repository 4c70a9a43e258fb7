//! The HTTP command API's semantics (`docs/protocol.md` section 12, Upstash's REST API),
//! shared by every hub: commands as JSON arrays or URL paths in, `{"result": …}` /
//! `{"error": …}` out, each command checked against the caller's token exactly like a sync
//! connection's. Hosts do the transport and hold the engine (the native hub under its
//! lock, in chunks; the edge's Durable Object outright).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use crate::sync::hub::check_command;
use crate::sync::Grant;
use crate::{lookup, util, Engine, Host, Reply, Session};
use serde_json::{json, Value};

/// How strings in results are written (`Upstash-Encoding` request header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// As UTF-8 text; bytes that are not UTF-8 become U+FFFD.
    #[default]
    Utf8,
    /// Every string base64 (standard alphabet, padded), except the simple reply `OK`.
    Base64,
}

/// One JSON value as a command: an array of strings and numbers, at least one element.
pub fn command_from_json(v: &Value) -> Result<Vec<Bytes>, String> {
    let Value::Array(items) = v else { return Err("ERR a command must be a JSON array".into()) };
    if items.is_empty() {
        return Err("ERR empty command".into());
    }
    items
        .iter()
        .map(|a| match a {
            Value::String(s) => Ok(Bytes::copy_from_slice(s.as_bytes())),
            Value::Number(n) => Ok(Bytes::from(n.to_string())),
            Value::Bool(b) => Ok(Bytes::from_static(if *b { b"true" } else { b"false" })),
            _ => Err("ERR command arguments must be strings or numbers".to_string()),
        })
        .collect()
}

/// A JSON array of commands (`/pipeline`, `/multi-exec`), at least one.
pub fn commands_from_json(v: &Value) -> Result<Vec<Vec<Bytes>>, String> {
    let Value::Array(items) = v else { return Err("ERR the body must be a JSON array of commands".into()) };
    if items.is_empty() {
        return Err("ERR empty pipeline".into());
    }
    items.iter().map(command_from_json).collect()
}

fn text(b: &[u8], enc: Encoding) -> Value {
    match enc {
        Encoding::Utf8 => Value::String(String::from_utf8_lossy(b).into_owned()),
        Encoding::Base64 => Value::String(STANDARD.encode(b)),
    }
}

/// A reply as Upstash's JSON: RESP2 shapes (maps flatten to arrays, doubles are strings,
/// booleans 1/0), null for nil, nested errors as `{"error": …}`.
pub fn reply_to_json(r: &Reply, enc: Encoding) -> Value {
    match r {
        Reply::Ok => json!("OK"),
        Reply::Simple(s) if s == "OK" => json!("OK"),
        Reply::Simple(s) => text(s.as_bytes(), enc),
        Reply::Error(e) => json!({ "error": e }),
        Reply::Int(i) => json!(i),
        Reply::Bulk(b) | Reply::Verbatim(_, b) => text(b, enc),
        Reply::Nil | Reply::NilArray => Value::Null,
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => Value::Array(items.iter().map(|i| reply_to_json(i, enc)).collect()),
        Reply::Map(pairs) => Value::Array(pairs.iter().flat_map(|(k, v)| [reply_to_json(k, enc), reply_to_json(v, enc)]).collect()),
        Reply::Double(d) => text(util::fmt_double(*d).as_bytes(), enc),
        Reply::Bool(b) => json!(*b as i64),
    }
}

/// A top-level reply as `{"result": …}` or `{"error": …}`, with whether it is an error.
pub fn envelope(r: &Reply, enc: Encoding) -> (Value, bool) {
    match r {
        Reply::Error(e) => (json!({ "error": e }), true),
        other => (json!({ "result": reply_to_json(other, enc) }), false),
    }
}

/// Transaction commands, which only `/multi-exec` runs (a request has no connection to
/// hold a transaction or a watch across commands).
fn is_transaction_command(args: &[Bytes]) -> bool {
    lookup(&args[0]).is_some_and(|s| matches!(s.name, "multi" | "exec" | "discard" | "watch" | "unwatch"))
}

/// Runs commands in order, each checked against `grant`; one reply per command. `session`
/// is a fresh session the caller closes afterwards. Blocking commands answer their
/// timeout reply at once.
pub fn run_pipeline(engine: &mut Engine, host: &mut dyn Host, session: &mut Session, grant: &Grant, commands: &[Vec<Bytes>], now_ms: u64) -> Vec<Reply> {
    commands
        .iter()
        .map(|args| {
            if is_transaction_command(args) {
                Reply::err("ERR MULTI, EXEC, DISCARD, WATCH and UNWATCH are only available as /multi-exec")
            } else {
                match check_command(grant, args) {
                    Err(e) => e,
                    Ok(()) => engine.execute(session, args, now_ms, host).into_reply(),
                }
            }
        })
        .collect()
}

/// Runs commands as one MULTI/EXEC: atomically, one change group. `Err` when nothing ran
/// (a refused or malformed command, or a transaction command inside).
pub fn run_multi(engine: &mut Engine, host: &mut dyn Host, session: &mut Session, grant: &Grant, commands: &[Vec<Bytes>], now_ms: u64) -> Result<Vec<Reply>, Reply> {
    for args in commands {
        if is_transaction_command(args) {
            return Err(Reply::err("ERR MULTI, EXEC, DISCARD, WATCH and UNWATCH are not allowed inside /multi-exec"));
        }
        check_command(grant, args)?;
    }
    engine.execute(session, &[Bytes::from_static(b"MULTI")], now_ms, host);
    for args in commands {
        engine.execute(session, args, now_ms, host);
    }
    match engine.execute(session, &[Bytes::from_static(b"EXEC")], now_ms, host).into_reply() {
        Reply::Array(items) => Ok(items),
        Reply::Error(e) => Err(Reply::Error(e)),
        other => Err(Reply::err(format!("ERR unexpected EXEC reply {:?}", other))),
    }
}

/// A command from Upstash's path form: `/set/key/value` (segments percent-decoded), the
/// POST body (if any) appended as the last argument, then each query parameter except
/// `_token` appended as `name value` (`?EX=100` → `EX 100`; `?NX` → `NX`).
pub fn command_from_path(path: &str, query: &[(Vec<u8>, Vec<u8>)], body: Option<&[u8]>) -> Result<Vec<Bytes>, String> {
    let mut args = Vec::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        args.push(Bytes::from(percent_decode(seg.as_bytes()).ok_or("ERR invalid percent-encoding in the path")?));
    }
    if args.is_empty() {
        return Err("ERR empty command".into());
    }
    if let Some(b) = body {
        if !b.is_empty() {
            args.push(Bytes::copy_from_slice(b));
        }
    }
    for (k, v) in query {
        if k == b"_token" {
            continue;
        }
        args.push(Bytes::copy_from_slice(k));
        if !v.is_empty() {
            args.push(Bytes::copy_from_slice(v));
        }
    }
    Ok(args)
}

/// Query parameters as decoded (name, value) pairs, in order.
pub type Query = Vec<(Vec<u8>, Vec<u8>)>;

/// Splits and percent-decodes a query string (`+` is kept as is).
pub fn parse_query(q: &str) -> Result<Query, String> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || "ERR invalid percent-encoding in the query".to_string();
        out.push((percent_decode(k.as_bytes()).ok_or_else(bad)?, percent_decode(v.as_bytes()).ok_or_else(bad)?));
    }
    Ok(out)
}

/// `%XX` decoding; `None` on a malformed escape.
pub fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_commands() {
        let v: Value = serde_json::from_str(r#"["SET", "k", 10, 1.5, true]"#).unwrap();
        assert_eq!(command_from_json(&v).unwrap(), vec!["SET", "k", "10", "1.5", "true"]);
        assert!(command_from_json(&serde_json::from_str(r#"[]"#).unwrap()).is_err());
        assert!(command_from_json(&serde_json::from_str(r#"["SET", null]"#).unwrap()).is_err());
        assert!(command_from_json(&serde_json::from_str(r#"["SET", ["x"]]"#).unwrap()).is_err());
        assert!(command_from_json(&serde_json::from_str(r#"{"a": 1}"#).unwrap()).is_err());
        assert!(commands_from_json(&serde_json::from_str(r#"[["PING"], "x"]"#).unwrap()).is_err());
        assert_eq!(commands_from_json(&serde_json::from_str(r#"[["PING"], ["GET", "k"]]"#).unwrap()).unwrap().len(), 2);
    }

    #[test]
    fn replies_as_upstash_json() {
        let u = Encoding::Utf8;
        assert_eq!(reply_to_json(&Reply::Ok, u), json!("OK"));
        assert_eq!(reply_to_json(&Reply::Int(-3), u), json!(-3));
        assert_eq!(reply_to_json(&Reply::Nil, u), Value::Null);
        assert_eq!(reply_to_json(&Reply::bulk("héllo"), u), json!("héllo"));
        assert_eq!(reply_to_json(&Reply::Bulk(Bytes::from_static(b"\xff")), u), json!("\u{fffd}"));
        assert_eq!(reply_to_json(&Reply::Double(1.5), u), json!("1.5"));
        assert_eq!(reply_to_json(&Reply::Bool(true), u), json!(1));
        assert_eq!(
            reply_to_json(&Reply::Map(vec![(Reply::bulk("f"), Reply::bulk("v"))]), u),
            json!(["f", "v"]),
            "RESP2: maps flatten"
        );
        assert_eq!(reply_to_json(&Reply::Array(vec![Reply::Int(1), Reply::err("ERR x")]), u), json!([1, {"error": "ERR x"}]));
        let b = Encoding::Base64;
        assert_eq!(reply_to_json(&Reply::Ok, b), json!("OK"));
        assert_eq!(reply_to_json(&Reply::simple("PONG"), b), json!("UE9ORw=="));
        assert_eq!(reply_to_json(&Reply::Bulk(Bytes::from_static(b"\xff\x00")), b), json!("/wA="));
        assert_eq!(reply_to_json(&Reply::Array(vec![Reply::bulk("a"), Reply::Nil]), b), json!(["YQ==", null]));
        assert_eq!(envelope(&Reply::err("ERR no"), u), (json!({"error": "ERR no"}), true));
        assert_eq!(envelope(&Reply::Int(1), u), (json!({"result": 1}), false));
    }

    #[test]
    fn pipeline_and_multi_on_an_engine() {
        use crate::{Config, NoHost};
        let mut eng = Engine::new(Config::default());
        let mut s = Session::new(1);
        let all = Grant::open();
        let cmds = vec![vec![Bytes::from_static(b"SET"), Bytes::from_static(b"a"), Bytes::from_static(b"1")], vec![Bytes::from_static(b"MULTI")]];
        let r = run_pipeline(&mut eng, &mut NoHost, &mut s, &all, &cmds, 1);
        assert_eq!(r[0], Reply::Ok);
        assert!(matches!(&r[1], Reply::Error(e) if e.contains("only available as /multi-exec")));
        let cmds = vec![vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"a")], vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"a")]];
        assert_eq!(run_multi(&mut eng, &mut NoHost, &mut s, &all, &cmds, 1).unwrap(), vec![Reply::Int(2), Reply::Int(3)]);
        assert_eq!(eng.take_changes().len(), 2, "SET, then the transaction as one group");
        let ro = Grant { read: crate::sync::Scope::new(["*"]), write: crate::sync::Scope::new(Vec::<&str>::new()), ..Grant::open() };
        assert!(matches!(run_multi(&mut eng, &mut NoHost, &mut s, &ro, &cmds, 1), Err(Reply::Error(e)) if e.starts_with("NOPERM")));
    }

    #[test]
    fn path_commands() {
        let q = parse_query("EX=100&_token=t&NX").unwrap();
        assert_eq!(command_from_path("/set/foo/bar", &q, None).unwrap(), vec!["set", "foo", "bar", "EX", "100", "NX"]);
        assert_eq!(command_from_path("/set/foo", &[], Some(b"{\"a\":1}")).unwrap(), vec!["set", "foo", "{\"a\":1}"]);
        assert_eq!(command_from_path("/get/a%2Fb%20c", &[], Some(b"")).unwrap(), vec!["get", "a/b c"]);
        assert!(command_from_path("/get/%zz", &[], None).is_err());
        assert!(command_from_path("/", &[], None).is_err());
        assert!(parse_query("a=%").is_err());
        assert_eq!(percent_decode(b"a+b%41").unwrap(), b"a+bA");
    }
}
