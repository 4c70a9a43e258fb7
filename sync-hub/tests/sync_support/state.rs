//! Keyspace states read through commands (no DUMP, no engine internals), normalized so a
//! hub read over RESP2/RESP3 and a client read through its state machine compare equal
//! when they hold the same data: each key's type, value (by the type's read command) and
//! absolute expiry (`PEXPIRETIME`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use recached_engine::resp::{encode, parse, Frame, Limits, Protocol};
use recached_engine::sync::client::SyncClient;
use recached_engine::sync::scope::Scope;

use super::{b, show, Backend};

/// A value in a comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Norm {
    /// A string.
    Str(Bytes),
    /// A list, head first.
    List(Vec<Bytes>),
    /// A hash.
    Hash(BTreeMap<Bytes, Bytes>),
    /// A set.
    Set(BTreeSet<Bytes>),
    /// A sorted set in order, scores printed by Rust's `{:?}` of the f64.
    ZSet(Vec<(Bytes, String)>),
    /// A reply that did not fit the type (kept for the message).
    Odd(String),
}

/// One key: type, value, absolute expiry (-1: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// `string`, `list`, …
    pub kind: String,
    /// The value.
    pub value: Norm,
    /// `PEXPIRETIME`.
    pub expire_at: i64,
}

/// A keyspace (database 0).
pub type State = BTreeMap<Bytes, KeyState>;

fn value_cmd(kind: &str, key: &Bytes) -> Vec<Bytes> {
    let k = key.clone();
    match kind {
        "string" => vec![b("GET"), k],
        "list" => vec![b("LRANGE"), k, b("0"), b("-1")],
        "hash" => vec![b("HGETALL"), k],
        "set" => vec![b("SMEMBERS"), k],
        "zset" => vec![b("ZRANGE"), k, b("0"), b("-1"), b("WITHSCORES")],
        _ => vec![b("TYPE"), k],
    }
}

fn bytes_of(f: &Frame) -> Option<Bytes> {
    f.as_bytes().cloned()
}

fn score(f: &Frame) -> String {
    let v = match f {
        Frame::Double(d) => Some(*d),
        Frame::Bulk(x) | Frame::Simple(x) => std::str::from_utf8(x).ok().and_then(|s| s.parse::<f64>().ok()),
        Frame::Int(i) => Some(*i as f64),
        _ => None,
    };
    v.map(|d| format!("{d:?}")).unwrap_or_else(|| show(f))
}

fn flat(f: &Frame) -> Vec<Frame> {
    match f {
        Frame::Array(v) | Frame::Set(v) => v.iter().flat_map(|x| if matches!(x, Frame::Array(_)) { flat(x) } else { vec![x.clone()] }).collect(),
        Frame::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        other => vec![other.clone()],
    }
}

fn norm(kind: &str, f: &Frame) -> Norm {
    let odd = || Norm::Odd(format!("{kind}: {}", show(f)));
    match kind {
        "string" => bytes_of(f).map(Norm::Str).unwrap_or_else(odd),
        "list" => Norm::List(flat(f).iter().filter_map(bytes_of).collect()),
        "set" => Norm::Set(flat(f).iter().filter_map(bytes_of).collect()),
        "hash" => {
            let items = flat(f);
            Norm::Hash(items.chunks(2).filter_map(|c| Some((bytes_of(&c[0])?, bytes_of(c.get(1)?)?))).collect())
        }
        "zset" => {
            let items = flat(f);
            Norm::ZSet(items.chunks(2).filter_map(|c| Some((bytes_of(&c[0])?, score(c.get(1)?)))).collect())
        }
        _ => odd(),
    }
}

fn type_name(f: &Frame) -> String {
    f.as_bytes().map(|x| String::from_utf8_lossy(x).into_owned()).unwrap_or_default()
}

fn keys_of(f: &Frame) -> Vec<Bytes> {
    flat(f).iter().filter_map(bytes_of).collect()
}

/// Builds a state from the reply to `KEYS *` ([`keys_of`]), the `TYPE` replies, and the
/// value and `PEXPIRETIME` replies (two per key, in key order).
fn assemble(keys: &[Bytes], kinds: &[String], replies: &[Frame]) -> State {
    let mut state = State::new();
    for (i, (k, t)) in keys.iter().zip(kinds).enumerate() {
        if t == "none" || t.is_empty() {
            continue;
        }
        let (Some(v), Some(e)) = (replies.get(2 * i), replies.get(2 * i + 1)) else { continue };
        let e = super::int(e).unwrap_or(-3);
        if e == -2 {
            continue; // gone between the reads
        }
        state.insert(k.clone(), KeyState { kind: t.clone(), value: norm(t, v), expire_at: e });
    }
    state
}

fn reads_for(keys: &[Bytes], kinds: &[String]) -> Vec<Vec<Bytes>> {
    let mut reads = Vec::new();
    for (k, t) in keys.iter().zip(kinds) {
        reads.push(value_cmd(t, k));
        reads.push(vec![b("PEXPIRETIME"), k.clone()]);
    }
    reads
}

/// The hub's database 0, read through a backend connection.
pub async fn read_hub(backend: &mut Backend) -> State {
    let keys = keys_of(&backend.cmd(&["KEYS", "*"]).await);
    if keys.is_empty() {
        return State::new();
    }
    let kinds: Vec<String> = backend.pipeline(&keys.iter().map(|k| vec![b("TYPE"), k.clone()]).collect::<Vec<_>>()).await.iter().map(type_name).collect();
    let replies = backend.pipeline(&reads_for(&keys, &kinds)).await;
    assemble(&keys, &kinds, &replies)
}

/// What a client's reads see (its visible state), read through its state machine at
/// local time `local_ms`.
pub fn read_client(c: &mut SyncClient, local_ms: u64) -> State {
    let mut run = |cmds: Vec<Vec<Bytes>>| -> Vec<Frame> {
        cmds.iter()
            .map(|cmd| {
                let reply = c.execute(cmd, local_ms).reply;
                let mut out = Vec::new();
                encode(&reply, Protocol::Resp3, &mut out);
                parse(&out, &Limits::default()).ok().flatten().map(|(f, _)| f).unwrap_or(Frame::Null)
            })
            .collect()
    };
    let keys = keys_of(&run(vec![vec![b("KEYS"), b("*")]]).pop().unwrap_or(Frame::Null));
    let kinds: Vec<String> = run(keys.iter().map(|k| vec![b("TYPE"), k.clone()]).collect()).iter().map(type_name).collect();
    let replies = run(reads_for(&keys, &kinds));
    assemble(&keys, &kinds, &replies)
}

/// The part of `state` a client mirroring `patterns` with read scope `read` may see.
pub fn visible_part(state: &State, patterns: &[&str], read: &[&str]) -> State {
    let scope = Scope::new(read.iter());
    state
        .iter()
        .filter(|(k, _)| patterns.iter().any(|p| recached_engine::glob::matches(p.as_bytes(), k, false)) && scope.allows_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The differences between `want` (the hub) and `got` (a client), one line each. Keys
/// whose deadline is within `slack_ms` of `now_ms` on either side are not compared (they
/// may be expiring right now).
pub fn diff(want: &State, got: &State, now_ms: u64, slack_ms: u64) -> Vec<String> {
    let near = |s: Option<&KeyState>| s.is_some_and(|s| s.expire_at > 0 && (s.expire_at - now_ms as i64).unsigned_abs() <= slack_ms);
    let keys: BTreeSet<&Bytes> = want.keys().chain(got.keys()).collect();
    let mut out = Vec::new();
    for k in keys {
        let (w, g) = (want.get(k), got.get(k));
        if w == g || near(w) || near(g) {
            continue;
        }
        out.push(format!("{:?}: hub {:?} client {:?}", String::from_utf8_lossy(k), w, g));
    }
    out
}
