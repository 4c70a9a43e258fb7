//! The sync messages and their RESP3 encoding, written once for every host.
//!
//! Client → hub: [`Request`] (commands: `SYNC.HELLO`, `SYNC.SUB`, `SYNC.W`, `SYNC.TX`,
//! or any other command). Hub → client: the replies [`HelloReply`], [`SubReply`], [`Ack`]
//! and the pushes [`Push`]. See `docs/protocol.md` for the frames.

use bytes::Bytes;
use thiserror::Error;

use crate::change::Change;
use crate::db::Entry;
use crate::resp::encode::{encode_command, Protocol};
use crate::resp::Frame;
use crate::util::{fmt_double, parse_f64, parse_i64};
use crate::value::{Hash, List, Set, Value};
use crate::zset::SortedSet;

/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: i64 = 1;

/// Most patterns in one `SYNC.SUB`.
pub const MAX_SUB_PATTERNS: usize = 64;

/// Longest subscription pattern, in bytes.
pub const MAX_SUB_PATTERN_LEN: usize = 512;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 64;

/// Most commands in one `SYNC.TX`.
pub const MAX_TX_COMMANDS: usize = 1024;

/// A message that is not what the protocol says.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The frame does not have the expected shape.
    #[error("unexpected frame for {0}")]
    Shape(&'static str),
    /// The hub answered with an error instead.
    #[error("{0}")]
    Refused(String),
}

fn shape<T>(what: &'static str) -> Result<T, MessageError> {
    Err(MessageError::Shape(what))
}

/// A `SYNC.*` request refused while parsing: the error reply to send, and whether the
/// connection must then close (a bad HELLO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The error line, without `-`.
    pub text: String,
    /// Close the connection with 4000 after replying.
    pub fatal: bool,
}

impl RequestError {
    fn reply(text: impl Into<String>) -> RequestError {
        RequestError { text: text.into(), fatal: false }
    }
    fn fatal(text: impl Into<String>) -> RequestError {
        RequestError { text: text.into(), fatal: true }
    }
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `SYNC.HELLO version token client-id`
    Hello {
        /// Protocol version.
        version: i64,
        /// The token.
        token: Bytes,
        /// The client id.
        client_id: Bytes,
    },
    /// `SYNC.SUB numpatterns pattern… [FROM replid offset]`
    Sub {
        /// The patterns to mirror.
        patterns: Vec<Bytes>,
        /// The resume point, when the client holds a complete state.
        from: Option<(String, u64)>,
    },
    /// `SYNC.W [AS origin] seq command arg…`
    Write {
        /// The writer the write is made for, when it is not the connection's own client
        /// (`AS origin`): the hub deduplicates it under this id instead.
        origin: Option<Bytes>,
        /// Sequence number (the origin's when `origin` is set, else the client's).
        seq: u64,
        /// The command.
        args: Vec<Bytes>,
    },
    /// `SYNC.TX [AS origin] seq count argc command arg… …`
    Tx {
        /// As for [`Request::Write`].
        origin: Option<Bytes>,
        /// Sequence number (the origin's when `origin` is set, else the client's).
        seq: u64,
        /// The commands.
        commands: Vec<Vec<Bytes>>,
    },
    /// Any other command.
    Command(Vec<Bytes>),
}

fn is(name: &[u8], verb: &str) -> bool {
    name.eq_ignore_ascii_case(verb.as_bytes())
}

fn parse_seq(arg: &[u8]) -> Result<u64, RequestError> {
    match parse_i64(arg) {
        Some(n) if n >= 1 => Ok(n as u64),
        _ => Err(RequestError::reply("ERR SYNC invalid seq")),
    }
}

/// Reads the head of a `SYNC.W`/`SYNC.TX`: `[AS origin] seq`. Returns the origin, the seq
/// and the index of the first argument after them; `min_rest` is how many arguments must
/// follow (else the arity error of `verb`).
fn parse_write_head(args: &[Bytes], verb: &str, min_rest: usize) -> Result<(Option<Bytes>, u64, usize), RequestError> {
    // A seq is always decimal, so `AS` cannot be mistaken for one.
    let (origin, at) = if args.get(1).is_some_and(|a| is(a, "AS")) { (Some(2), 3) } else { (None, 1) };
    if args.len() < at + 1 + min_rest {
        return Err(RequestError::reply(crate::reply::errors::arity(verb)));
    }
    let origin = match origin {
        Some(i) if !valid_client_id(&args[i]) => return Err(RequestError::reply("ERR SYNC invalid origin id")),
        Some(i) => Some(args[i].clone()),
        None => None,
    };
    Ok((origin, parse_seq(&args[at])?, at + 1))
}

/// Whether a client id has the allowed length and bytes.
pub fn valid_client_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_CLIENT_ID_LEN && id.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
}

impl Request {
    /// Recognises a command: a `SYNC.*` verb with its arguments checked, or any other
    /// command as [`Request::Command`].
    pub fn parse(args: Vec<Bytes>) -> Result<Request, RequestError> {
        let Some(name) = args.first() else { return Ok(Request::Command(args)) };
        if is(name, "SYNC.HELLO") {
            if args.len() != 4 {
                return Err(RequestError::fatal(crate::reply::errors::arity("sync.hello")));
            }
            let version = match parse_i64(&args[1]) {
                Some(PROTOCOL_VERSION) => PROTOCOL_VERSION,
                _ => return Err(RequestError::fatal("ERR SYNC unsupported protocol version")),
            };
            if !valid_client_id(&args[3]) {
                return Err(RequestError::fatal("ERR SYNC invalid client id"));
            }
            return Ok(Request::Hello { version, token: args[2].clone(), client_id: args[3].clone() });
        }
        if is(name, "SYNC.SUB") {
            if args.len() < 3 {
                return Err(RequestError::reply(crate::reply::errors::arity("sync.sub")));
            }
            let n = match parse_i64(&args[1]) {
                Some(n) if n >= 1 && n as usize <= MAX_SUB_PATTERNS => n as usize,
                _ => return Err(RequestError::reply("ERR SYNC numpatterns must be between 1 and 64")),
            };
            let rest = &args[2..];
            if rest.len() < n {
                return Err(RequestError::reply(crate::reply::errors::SYNTAX));
            }
            let patterns = rest[..n].to_vec();
            if patterns.iter().any(|p| p.len() > MAX_SUB_PATTERN_LEN) {
                return Err(RequestError::reply("ERR SYNC pattern too long"));
            }
            let from = match &rest[n..] {
                [] => None,
                [kw, replid, offset] if is(kw, "FROM") => {
                    let offset = match parse_i64(offset) {
                        Some(o) if o >= 0 => o as u64,
                        _ => return Err(RequestError::reply("ERR SYNC invalid offset")),
                    };
                    Some((String::from_utf8_lossy(replid).into_owned(), offset))
                }
                _ => return Err(RequestError::reply(crate::reply::errors::SYNTAX)),
            };
            return Ok(Request::Sub { patterns, from });
        }
        if is(name, "SYNC.W") {
            let (origin, seq, at) = parse_write_head(&args, "sync.w", 1)?;
            return Ok(Request::Write { origin, seq, args: args[at..].to_vec() });
        }
        if is(name, "SYNC.TX") {
            let (origin, seq, at) = parse_write_head(&args, "sync.tx", 3)?;
            let count = match parse_i64(&args[at]) {
                Some(c) if c >= 1 && c as usize <= MAX_TX_COMMANDS => c as usize,
                _ => return Err(RequestError::reply(crate::reply::errors::SYNTAX)),
            };
            let mut commands = Vec::with_capacity(count.min(64));
            let mut i = at + 1;
            for _ in 0..count {
                let argc = match args.get(i).and_then(|a| parse_i64(a)) {
                    Some(c) if c >= 1 && (c as usize) < args.len() - i => c as usize,
                    _ => return Err(RequestError::reply(crate::reply::errors::SYNTAX)),
                };
                commands.push(args[i + 1..i + 1 + argc].to_vec());
                i += 1 + argc;
            }
            if i != args.len() {
                return Err(RequestError::reply(crate::reply::errors::SYNTAX));
            }
            return Ok(Request::Tx { origin, seq, commands });
        }
        Ok(Request::Command(args))
    }

    /// Appends the request as a RESP command.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Request::Hello { version, token, client_id } => {
                let v = version.to_string();
                encode_command(&[b"SYNC.HELLO", v.as_bytes(), token, client_id], out);
            }
            Request::Sub { patterns, from } => {
                let mut args: Vec<Bytes> = vec![Bytes::from_static(b"SYNC.SUB"), Bytes::from(patterns.len().to_string())];
                args.extend(patterns.iter().cloned());
                if let Some((replid, offset)) = from {
                    args.push(Bytes::from_static(b"FROM"));
                    args.push(Bytes::from(replid.clone()));
                    args.push(Bytes::from(offset.to_string()));
                }
                encode_command(&args, out);
            }
            Request::Write { origin, seq, args } => {
                let mut all: Vec<Bytes> = Vec::with_capacity(args.len() + 4);
                all.push(Bytes::from_static(b"SYNC.W"));
                push_write_head(&mut all, origin, *seq);
                all.extend(args.iter().cloned());
                encode_command(&all, out);
            }
            Request::Tx { origin, seq, commands } => {
                let mut all: Vec<Bytes> = vec![Bytes::from_static(b"SYNC.TX")];
                push_write_head(&mut all, origin, *seq);
                all.push(Bytes::from(commands.len().to_string()));
                for c in commands {
                    all.push(Bytes::from(c.len().to_string()));
                    all.extend(c.iter().cloned());
                }
                encode_command(&all, out);
            }
            Request::Command(args) => encode_command(args, out),
        }
    }
}

fn push_write_head(all: &mut Vec<Bytes>, origin: &Option<Bytes>, seq: u64) {
    if let Some(o) = origin {
        all.push(Bytes::from_static(b"AS"));
        all.push(o.clone());
    }
    all.push(Bytes::from(seq.to_string()));
}

// ---------------------------------------------------------------------------------------
// Frame writing helpers (RESP3).

pub(crate) fn w_len(out: &mut Vec<u8>, tag: u8, n: usize) {
    out.push(tag);
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn w_int(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn w_bulk(out: &mut Vec<u8>, data: &[u8]) {
    w_len(out, b'$', data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn w_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"_\r\n");
}

/// Appends one canonical change as an array of bulk strings.
pub fn encode_change(change: &Change, out: &mut Vec<u8>) {
    w_len(out, b'*', change.args.len());
    for a in &change.args {
        w_bulk(out, a);
    }
}

/// Appends any frame as RESP3.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::Simple(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Error(s) => {
            out.push(b'-');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Int(n) => w_int(out, *n),
        Frame::Bulk(b) => w_bulk(out, b),
        Frame::Null => w_null(out),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            let tag = match frame {
                Frame::Array(_) => b'*',
                Frame::Set(_) => b'~',
                _ => b'>',
            };
            w_len(out, tag, items.len());
            for i in items {
                encode_frame(i, out);
            }
        }
        Frame::Map(pairs) => {
            w_len(out, b'%', pairs.len());
            for (k, v) in pairs {
                encode_frame(k, out);
                encode_frame(v, out);
            }
        }
        Frame::Double(d) => {
            out.push(b',');
            out.extend_from_slice(fmt_double(*d).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Frame::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::BigNumber(s) => {
            out.push(b'(');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Verbatim(s) => {
            w_len(out, b'=', s.len());
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Encodes an engine reply as RESP3 (what a sync connection receives).
pub fn encode_reply(reply: &crate::Reply, out: &mut Vec<u8>) {
    crate::resp::encode(reply, Protocol::Resp3, out);
}

// ---------------------------------------------------------------------------------------
// Frame reading helpers.

fn int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Int(n) => Some(*n),
        Frame::Bulk(b) | Frame::Simple(b) => parse_i64(b),
        _ => None,
    }
}

fn uint(f: &Frame) -> Option<u64> {
    int(f).filter(|n| *n >= 0).map(|n| n as u64)
}

fn text(f: &Frame) -> Option<String> {
    f.as_bytes().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn bulks(f: &Frame) -> Option<Vec<Bytes>> {
    f.as_items()?.iter().map(|i| i.as_bytes().cloned()).collect()
}

fn refused(f: &Frame) -> Option<MessageError> {
    match f {
        Frame::Error(e) => Some(MessageError::Refused(String::from_utf8_lossy(e).into_owned())),
        _ => None,
    }
}

fn map_get<'a>(pairs: &'a [(Frame, Frame)], key: &str) -> Option<&'a Frame> {
    pairs.iter().find(|(k, _)| k.as_bytes().is_some_and(|b| b.as_ref() == key.as_bytes())).map(|(_, v)| v)
}

/// Decodes an array of changes (each an array of bulk strings) into database-0 changes.
pub fn decode_changes(f: &Frame) -> Option<Vec<Change>> {
    f.as_items()?.iter().map(|c| Some(Change { db: 0, args: bulks(c)? })).collect()
}

// ---------------------------------------------------------------------------------------
// Replies.

/// The reply to `SYNC.HELLO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloReply {
    /// Protocol version.
    pub proto: i64,
    /// The hub's configured name.
    pub hub: String,
    /// Replication id of the stream.
    pub replid: String,
    /// The hub's current offset.
    pub offset: u64,
    /// The hub's clock, Unix ms.
    pub time: u64,
    /// The token's subject.
    pub sub: String,
    /// The token's expiry, Unix ms (0: never).
    pub exp: u64,
    /// Read patterns of the grant.
    pub read: Vec<Bytes>,
    /// Write patterns of the grant.
    pub write: Vec<Bytes>,
    /// Largest client message, in bytes.
    pub maxmsg: u64,
    /// Most unacknowledged writes per client id.
    pub window: u64,
}

impl HelloReply {
    /// Appends the reply frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let list = |out: &mut Vec<u8>, items: &[Bytes]| {
            w_len(out, b'*', items.len());
            items.iter().for_each(|p| w_bulk(out, p));
        };
        w_len(out, b'%', 11);
        w_bulk(out, b"proto");
        w_int(out, self.proto);
        w_bulk(out, b"hub");
        w_bulk(out, self.hub.as_bytes());
        w_bulk(out, b"replid");
        w_bulk(out, self.replid.as_bytes());
        w_bulk(out, b"offset");
        w_int(out, self.offset as i64);
        w_bulk(out, b"time");
        w_int(out, self.time as i64);
        w_bulk(out, b"sub");
        w_bulk(out, self.sub.as_bytes());
        w_bulk(out, b"exp");
        w_int(out, self.exp as i64);
        w_bulk(out, b"read");
        list(out, &self.read);
        w_bulk(out, b"write");
        list(out, &self.write);
        w_bulk(out, b"maxmsg");
        w_int(out, self.maxmsg as i64);
        w_bulk(out, b"window");
        w_int(out, self.window as i64);
    }

    /// Reads the reply frame.
    pub fn decode(f: &Frame) -> Result<HelloReply, MessageError> {
        if let Some(e) = refused(f) {
            return Err(e);
        }
        let Frame::Map(pairs) = f else { return shape("SYNC.HELLO") };
        let get = |k| map_get(pairs, k).ok_or(MessageError::Shape("SYNC.HELLO"));
        let num = |k| get(k).and_then(|v| uint(v).ok_or(MessageError::Shape("SYNC.HELLO")));
        let txt = |k| get(k).and_then(|v| text(v).ok_or(MessageError::Shape("SYNC.HELLO")));
        let list = |k| get(k).and_then(|v| bulks(v).ok_or(MessageError::Shape("SYNC.HELLO")));
        Ok(HelloReply {
            proto: num("proto")? as i64,
            hub: txt("hub")?,
            replid: txt("replid")?,
            offset: num("offset")?,
            time: num("time")?,
            sub: txt("sub")?,
            exp: num("exp")?,
            read: list("read")?,
            write: list("write")?,
            maxmsg: num("maxmsg")?,
            window: num("window")?,
        })
    }
}

/// How a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubMode {
    /// The missing changes follow.
    Continue,
    /// A snapshot follows; replace everything.
    Full,
}

/// The reply to `SYNC.SUB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubReply {
    /// Continue or full.
    pub mode: SubMode,
    /// Replication id of the stream.
    pub replid: String,
    /// The offset `sync.live` will carry.
    pub offset: u64,
    /// Snapshot entries that follow (0 for continue).
    pub keys: u64,
}

impl SubReply {
    /// Appends the reply frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        w_len(out, b'%', 4);
        w_bulk(out, b"mode");
        w_bulk(out, if self.mode == SubMode::Full { b"full" } else { b"continue" });
        w_bulk(out, b"replid");
        w_bulk(out, self.replid.as_bytes());
        w_bulk(out, b"offset");
        w_int(out, self.offset as i64);
        w_bulk(out, b"keys");
        w_int(out, self.keys as i64);
    }

    /// Reads the reply frame.
    pub fn decode(f: &Frame) -> Result<SubReply, MessageError> {
        if let Some(e) = refused(f) {
            return Err(e);
        }
        let Frame::Map(pairs) = f else { return shape("SYNC.SUB") };
        let mode = match map_get(pairs, "mode").and_then(|m| m.as_bytes()).map(|b| b.as_ref()) {
            Some(b"full") => SubMode::Full,
            Some(b"continue") => SubMode::Continue,
            _ => return shape("SYNC.SUB"),
        };
        let replid = map_get(pairs, "replid").and_then(text).ok_or(MessageError::Shape("SYNC.SUB"))?;
        let offset = map_get(pairs, "offset").and_then(uint).ok_or(MessageError::Shape("SYNC.SUB"))?;
        let keys = map_get(pairs, "keys").and_then(uint).ok_or(MessageError::Shape("SYNC.SUB"))?;
        Ok(SubReply { mode, replid, offset, keys })
    }
}

/// The reply to `SYNC.W` / `SYNC.TX`.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The write's sequence number.
    pub seq: u64,
    /// Offset of its group, or the hub's offset when it changed nothing.
    pub offset: u64,
    /// The command's reply (an error frame: rejected).
    pub reply: Frame,
    /// Its group filtered for the connection when live; `None` when not subscribed yet
    /// (or a duplicate on a connection that is not live).
    pub changes: Option<Vec<Change>>,
}

impl Ack {
    /// Appends an ack. `reply` is the command's reply already encoded as RESP3;
    /// `changes` the filtered group (`None` encodes `_`).
    pub fn encode_parts(seq: u64, offset: u64, reply: &[u8], changes: Option<&[&Change]>, out: &mut Vec<u8>) {
        w_len(out, b'*', 4);
        w_int(out, seq as i64);
        w_int(out, offset as i64);
        out.extend_from_slice(reply);
        match changes {
            Some(cs) => {
                w_len(out, b'*', cs.len());
                for c in cs {
                    encode_change(c, out);
                }
            }
            None => w_null(out),
        }
    }

    /// Appends the ack.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut reply = Vec::new();
        encode_frame(&self.reply, &mut reply);
        let changes: Option<Vec<&Change>> = self.changes.as_ref().map(|c| c.iter().collect());
        Ack::encode_parts(self.seq, self.offset, &reply, changes.as_deref(), out);
    }

    /// Reads an ack. A plain error frame (the write was refused before it was parsed,
    /// e.g. `ERR SYNC invalid seq`) is `Err(Refused)`.
    pub fn decode(f: &Frame) -> Result<Ack, MessageError> {
        if let Some(e) = refused(f) {
            return Err(e);
        }
        let Some([seq, offset, reply, changes]) = f.as_items() else { return shape("SYNC.W") };
        let changes = match changes {
            Frame::Null => None,
            other => Some(decode_changes(other).ok_or(MessageError::Shape("SYNC.W"))?),
        };
        Ok(Ack {
            seq: uint(seq).ok_or(MessageError::Shape("SYNC.W"))?,
            offset: uint(offset).ok_or(MessageError::Shape("SYNC.W"))?,
            reply: reply.clone(),
            changes,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Snapshot entries.

/// The value of a snapshot entry.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapValue {
    /// A string.
    String(Bytes),
    /// A list, head first.
    List(Vec<Bytes>),
    /// A hash: field, value pairs.
    Hash(Vec<(Bytes, Bytes)>),
    /// A set.
    Set(Vec<Bytes>),
    /// A sorted set: member, score pairs.
    ZSet(Vec<(Bytes, f64)>),
}

/// One key of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapEntry {
    /// The key.
    pub key: Bytes,
    /// Absolute expiry in hub Unix ms; 0 for none.
    pub expire_at: u64,
    /// Type and value.
    pub value: SnapValue,
}

/// Appends the snapshot entry of `key` holding `entry`.
pub fn encode_entry(key: &[u8], entry: &Entry, out: &mut Vec<u8>) {
    w_len(out, b'*', 4);
    w_bulk(out, key);
    w_bulk(out, entry.value.kind().name().as_bytes());
    w_int(out, entry.expire_at as i64);
    match &entry.value {
        Value::Int(n) => w_bulk(out, n.to_string().as_bytes()),
        Value::Str(s) => w_bulk(out, s),
        Value::List(l) => {
            w_len(out, b'*', l.len());
            l.items().iter().for_each(|v| w_bulk(out, v));
        }
        Value::Hash(h) => {
            w_len(out, b'*', h.len() * 2);
            for (f, v) in h.map() {
                w_bulk(out, f);
                w_bulk(out, v);
            }
        }
        Value::Set(s) => {
            w_len(out, b'*', s.len());
            s.members().iter().for_each(|m| w_bulk(out, m));
        }
        Value::ZSet(z) => {
            w_len(out, b'*', z.len() * 2);
            for (m, s) in z.iter() {
                w_bulk(out, m);
                w_bulk(out, fmt_double(s).as_bytes());
            }
        }
    }
}

impl SnapEntry {
    /// Reads one entry.
    pub fn decode(f: &Frame) -> Result<SnapEntry, MessageError> {
        let bad = || MessageError::Shape("sync.snap entry");
        let Some([key, kind, expire_at, value]) = f.as_items() else { return Err(bad()) };
        let key = key.as_bytes().ok_or_else(bad)?.clone();
        let expire_at = uint(expire_at).ok_or_else(bad)?;
        let items = || bulks(value).ok_or_else(bad);
        let pairs = |v: Vec<Bytes>| -> Result<Vec<(Bytes, Bytes)>, MessageError> {
            if v.len() % 2 != 0 {
                return Err(bad());
            }
            Ok(v.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect())
        };
        let value = match kind.as_bytes().map(|b| b.as_ref()) {
            Some(b"string") => SnapValue::String(value.as_bytes().ok_or_else(bad)?.clone()),
            Some(b"list") => SnapValue::List(items()?),
            Some(b"set") => SnapValue::Set(items()?),
            Some(b"hash") => SnapValue::Hash(pairs(items()?)?),
            Some(b"zset") => SnapValue::ZSet(
                pairs(items()?)?
                    .into_iter()
                    .map(|(m, s)| parse_f64(&s).filter(|d| !d.is_nan()).map(|d| (m, d)).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(bad()),
        };
        Ok(SnapEntry { key, expire_at, value })
    }

    /// The engine entry this describes (`None` for an empty container, which Redis never
    /// holds).
    pub fn to_entry(&self) -> Option<Entry> {
        let value = match &self.value {
            SnapValue::String(s) => Value::string(s),
            SnapValue::List(items) => {
                let mut l = List::new();
                items.iter().for_each(|v| l.push_back(crate::value::blob(v)));
                Value::List(Box::new(l))
            }
            SnapValue::Hash(pairs) => {
                let mut h = Hash::new();
                pairs.iter().for_each(|(f, v)| {
                    h.insert(f, crate::value::blob(v));
                });
                Value::Hash(Box::new(h))
            }
            SnapValue::Set(items) => {
                let mut s = Set::new();
                items.iter().for_each(|m| {
                    s.insert(m);
                });
                Value::Set(Box::new(s))
            }
            SnapValue::ZSet(pairs) => {
                let mut z = SortedSet::new();
                pairs.iter().for_each(|(m, s)| {
                    z.insert(m, *s);
                });
                Value::ZSet(Box::new(z))
            }
        };
        if value.is_empty_container() {
            return None;
        }
        let mut e = Entry::new(value);
        e.expire_at = self.expire_at;
        Some(e)
    }
}

// ---------------------------------------------------------------------------------------
// Pushes.

/// A push from the hub.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// `sync.change offset changes`: one group, filtered.
    Change {
        /// The group's offset.
        offset: u64,
        /// Its changes for this subscriber.
        changes: Vec<Change>,
    },
    /// `sync.full offset keys replid`: an in-band full resync starts.
    Full {
        /// The offset `sync.live` will carry.
        offset: u64,
        /// Entries that follow.
        keys: u64,
        /// The stream the snapshot belongs to.
        replid: String,
    },
    /// `sync.snap offset entries`: snapshot entries.
    Snap {
        /// The snapshot's offset.
        offset: u64,
        /// The entries.
        entries: Vec<SnapEntry>,
    },
    /// `sync.live offset`: catch-up done.
    Live {
        /// Offset the client's state is at.
        offset: u64,
    },
    /// `sync.at offset`: heartbeat of the stream position.
    At {
        /// Every relevant group up to here was sent.
        offset: u64,
    },
    /// A push this protocol version does not know (ignored by clients).
    Other(Vec<Frame>),
}

/// Appends a `sync.change` push of the given changes. A group of one change, by far the
/// commonest, goes flat: its words follow the offset (`>5 sync.change :off SET k v`), one
/// array fewer for every subscriber to parse; larger groups carry an array of changes.
pub fn encode_change_push<'a>(offset: u64, mut changes: impl ExactSizeIterator<Item = &'a Change>, out: &mut Vec<u8>) {
    if changes.len() == 1 {
        let c = changes.next().expect("one change");
        w_len(out, b'>', 2 + c.args.len());
        w_bulk(out, b"sync.change");
        w_int(out, offset as i64);
        for a in &c.args {
            w_bulk(out, a);
        }
        return;
    }
    w_len(out, b'>', 3);
    w_bulk(out, b"sync.change");
    w_int(out, offset as i64);
    w_len(out, b'*', changes.len());
    for c in changes {
        encode_change(c, out);
    }
}

/// The changes of a `sync.change` push's items: an array of changes, or one change flat.
fn decode_change_items(items: &[Frame]) -> Option<Vec<Change>> {
    match items.get(2)? {
        Frame::Array(_) => decode_changes(&items[2]),
        _ => Some(vec![Change { db: 0, args: items[2..].iter().map(|i| i.as_bytes().cloned()).collect::<Option<_>>()? }]),
    }
}

/// Appends a `sync.snap` push of already encoded entries ([`encode_entry`]).
pub fn encode_snap_push(offset: u64, count: usize, entries: &[u8], out: &mut Vec<u8>) {
    w_len(out, b'>', 3);
    w_bulk(out, b"sync.snap");
    w_int(out, offset as i64);
    w_len(out, b'*', count);
    out.extend_from_slice(entries);
}

impl Push {
    /// Appends the push frame.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Push::Change { offset, changes } => encode_change_push(*offset, changes.iter(), out),
            Push::Full { offset, keys, replid } => {
                w_len(out, b'>', 4);
                w_bulk(out, b"sync.full");
                w_int(out, *offset as i64);
                w_int(out, *keys as i64);
                w_bulk(out, replid.as_bytes());
            }
            Push::Snap { offset, entries } => {
                let mut body = Vec::new();
                let mut count = 0;
                for e in entries {
                    if let Some(entry) = e.to_entry() {
                        encode_entry(&e.key, &entry, &mut body);
                        count += 1;
                    }
                }
                encode_snap_push(*offset, count, &body, out);
            }
            Push::Live { offset } | Push::At { offset } => {
                w_len(out, b'>', 2);
                w_bulk(out, if matches!(self, Push::Live { .. }) { b"sync.live" } else { b"sync.at" });
                w_int(out, *offset as i64);
            }
            Push::Other(items) => encode_frame(&Frame::Push(items.clone()), out),
        }
    }

    /// Reads a push frame (the items of a `>` frame).
    pub fn decode(items: &[Frame]) -> Result<Push, MessageError> {
        let name = items.first().and_then(|n| n.as_bytes()).map(|b| b.as_ref());
        let off = |what| items.get(1).and_then(uint).ok_or(MessageError::Shape(what));
        Ok(match name {
            Some(b"sync.change") => Push::Change {
                offset: off("sync.change")?,
                changes: decode_change_items(items).ok_or(MessageError::Shape("sync.change"))?,
            },
            Some(b"sync.full") => Push::Full {
                offset: off("sync.full")?,
                keys: items.get(2).and_then(uint).ok_or(MessageError::Shape("sync.full"))?,
                replid: items.get(3).and_then(text).ok_or(MessageError::Shape("sync.full"))?,
            },
            Some(b"sync.snap") => Push::Snap {
                offset: off("sync.snap")?,
                entries: items
                    .get(2)
                    .and_then(|f| f.as_items())
                    .ok_or(MessageError::Shape("sync.snap"))?
                    .iter()
                    .map(SnapEntry::decode)
                    .collect::<Result<_, _>>()?,
            },
            Some(b"sync.live") => Push::Live { offset: off("sync.live")? },
            Some(b"sync.at") => Push::At { offset: off("sync.at")? },
            _ => Push::Other(items.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::{parse, Limits};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn args(parts: &[&str]) -> Vec<Bytes> {
        parts.iter().map(|p| b(p)).collect()
    }

    fn roundtrip_request(r: Request) {
        let mut out = Vec::new();
        r.encode(&mut out);
        let mut buf = bytes::BytesMut::from(&out[..]);
        let parsed = crate::resp::frame::take_command(&mut buf, &Limits::default()).unwrap().unwrap();
        assert_eq!(Request::parse(parsed).unwrap(), r);
    }

    fn frame(bytes: &[u8]) -> Frame {
        let (f, n) = parse(bytes, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, bytes.len());
        f
    }

    #[test]
    fn requests_roundtrip() {
        roundtrip_request(Request::Hello { version: 1, token: b("t.o.k"), client_id: b("tab-1") });
        roundtrip_request(Request::Sub { patterns: vec![b("a:*"), b("FROM")], from: None });
        roundtrip_request(Request::Sub { patterns: vec![b("a:*")], from: Some(("abc".into(), 42)) });
        roundtrip_request(Request::Write { origin: None, seq: 7, args: args(&["SET", "k", "v"]) });
        roundtrip_request(Request::Tx { origin: None, seq: 8, commands: vec![args(&["SET", "k", "v"]), args(&["INCR", "n"])] });
        roundtrip_request(Request::Write { origin: Some(b("tab-1")), seq: 3, args: args(&["INCR", "n"]) });
        roundtrip_request(Request::Tx { origin: Some(b("tab_2")), seq: 4, commands: vec![args(&["SET", "k", "v"])] });
        // A command named AS is no origin: the seq comes first.
        roundtrip_request(Request::Write { origin: None, seq: 9, args: args(&["AS", "x"]) });
        roundtrip_request(Request::Command(args(&["GET", "k"])));
    }

    #[test]
    fn request_errors() {
        let e = |parts: &[&str]| Request::parse(args(parts)).unwrap_err();
        assert_eq!(e(&["SYNC.HELLO", "2", "t", "c"]), RequestError::fatal("ERR SYNC unsupported protocol version"));
        assert_eq!(e(&["SYNC.HELLO", "1", "t", "bad id!"]), RequestError::fatal("ERR SYNC invalid client id"));
        assert_eq!(e(&["SYNC.HELLO", "1", "t", ""]).text, "ERR SYNC invalid client id");
        assert_eq!(e(&["sync.hello", "1"]).text, "ERR wrong number of arguments for 'sync.hello' command");
        assert_eq!(e(&["SYNC.SUB", "0", "a"]).text, "ERR SYNC numpatterns must be between 1 and 64");
        assert_eq!(e(&["SYNC.SUB", "65", "a"]).text, "ERR SYNC numpatterns must be between 1 and 64");
        assert_eq!(e(&["SYNC.SUB", "2", "a"]).text, "ERR syntax error");
        assert_eq!(e(&["SYNC.SUB", "1", "a", "FROM", "r"]).text, "ERR syntax error");
        assert_eq!(e(&["SYNC.SUB", "1", "a", "FROM", "r", "-1"]).text, "ERR SYNC invalid offset");
        assert_eq!(e(&["SYNC.SUB", "1", &"x".repeat(513)]).text, "ERR SYNC pattern too long");
        assert_eq!(e(&["SYNC.W", "0", "SET", "k", "v"]).text, "ERR SYNC invalid seq");
        assert_eq!(e(&["SYNC.W", "x", "SET"]).text, "ERR SYNC invalid seq");
        assert_eq!(e(&["SYNC.TX", "1", "1", "3", "SET", "k"]).text, "ERR syntax error");
        assert_eq!(e(&["SYNC.TX", "1", "1", "2", "GET", "k", "extra"]).text, "ERR syntax error");
        assert_eq!(e(&["SYNC.TX", "1", "0", "1", "PING"]).text, "ERR syntax error");
        assert_eq!(e(&["SYNC.TX", "1", "1", "0", "PING"]).text, "ERR syntax error");
        assert!(!e(&["SYNC.W", "0", "SET"]).fatal);
        assert_eq!(e(&["SYNC.W", "AS", "bad id!", "1", "INCR", "n"]), RequestError::reply("ERR SYNC invalid origin id"));
        assert_eq!(e(&["SYNC.W", "as", "", "1", "INCR", "n"]).text, "ERR SYNC invalid origin id");
        assert_eq!(e(&["SYNC.W", "AS", &"o".repeat(65), "1", "INCR"]).text, "ERR SYNC invalid origin id");
        assert_eq!(e(&["SYNC.W", "AS", "o", "0", "INCR", "n"]).text, "ERR SYNC invalid seq");
        assert_eq!(e(&["SYNC.W", "AS", "o", "1"]).text, "ERR wrong number of arguments for 'sync.w' command");
        assert_eq!(e(&["SYNC.TX", "AS", "o", "1", "1", "1"]).text, "ERR wrong number of arguments for 'sync.tx' command");
        assert_eq!(e(&["SYNC.TX", "AS", "o", "1", "1", "2", "GET"]).text, "ERR syntax error");
        assert_eq!(
            Request::parse(args(&["sync.tx", "as", "o", "5", "1", "2", "INCR", "n"])).unwrap(),
            Request::Tx { origin: Some(b("o")), seq: 5, commands: vec![args(&["INCR", "n"])] }
        );
        // A pattern named FROM is unambiguous thanks to numpatterns.
        assert_eq!(
            Request::parse(args(&["SYNC.SUB", "1", "FROM", "FROM", "r", "5"])).unwrap(),
            Request::Sub { patterns: vec![b("FROM")], from: Some(("r".into(), 5)) }
        );
    }

    #[test]
    fn hello_reply_roundtrip() {
        let h = HelloReply {
            proto: 1,
            hub: "main".into(),
            replid: "ab".repeat(20),
            offset: 41,
            time: 1_700_000_000_123,
            sub: "alice".into(),
            exp: 0,
            read: vec![b("user:1:*")],
            write: vec![],
            maxmsg: 1 << 20,
            window: 1024,
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert!(out.starts_with(b"%11\r\n$5\r\nproto\r\n:1\r\n$3\r\nhub\r\n$4\r\nmain\r\n"));
        assert_eq!(HelloReply::decode(&frame(&out)).unwrap(), h);
        assert_eq!(HelloReply::decode(&frame(b"-WRONGPASS invalid token (expired)\r\n")), Err(MessageError::Refused("WRONGPASS invalid token (expired)".into())));
    }

    #[test]
    fn sub_reply_and_ack_roundtrip() {
        let s = SubReply { mode: SubMode::Full, replid: "r".into(), offset: 9, keys: 3 };
        let mut out = Vec::new();
        s.encode(&mut out);
        assert_eq!(out, b"%4\r\n$4\r\nmode\r\n$4\r\nfull\r\n$6\r\nreplid\r\n$1\r\nr\r\n$6\r\noffset\r\n:9\r\n$4\r\nkeys\r\n:3\r\n");
        assert_eq!(SubReply::decode(&frame(&out)).unwrap(), s);

        let a = Ack { seq: 2, offset: 44, reply: Frame::Simple(b("OK")), changes: Some(vec![Change { db: 0, args: args(&["SET", "k", "v"]) }]) };
        let mut out = Vec::new();
        a.encode(&mut out);
        assert_eq!(out, b"*4\r\n:2\r\n:44\r\n+OK\r\n*1\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        assert_eq!(Ack::decode(&frame(&out)).unwrap(), a);
        let a = Ack { seq: 3, offset: 44, reply: Frame::Error(b("WRONGTYPE x")), changes: None };
        let mut out = Vec::new();
        a.encode(&mut out);
        assert_eq!(Ack::decode(&frame(&out)).unwrap(), a);
        assert!(matches!(Ack::decode(&frame(b"-ERR SYNC invalid seq\r\n")), Err(MessageError::Refused(_))));
        assert!(matches!(Ack::decode(&frame(b"*2\r\n:1\r\n:2\r\n")), Err(MessageError::Shape(_))));
    }

    #[test]
    fn pushes_roundtrip() {
        let entries = vec![
            SnapEntry { key: b("s"), expire_at: 0, value: SnapValue::String(b("v")) },
            SnapEntry { key: b("n"), expire_at: 5, value: SnapValue::String(b("12")) },
            SnapEntry { key: b("l"), expire_at: 0, value: SnapValue::List(args(&["a", "b"])) },
            SnapEntry { key: b("h"), expire_at: 0, value: SnapValue::Hash(vec![(b("f"), b("v"))]) },
            SnapEntry { key: b("st"), expire_at: 0, value: SnapValue::Set(args(&["m"])) },
            SnapEntry { key: b("z"), expire_at: 0, value: SnapValue::ZSet(vec![(b("a"), 1.5), (b("b"), f64::INFINITY)]) },
        ];
        let pushes = vec![
            Push::Change { offset: 3, changes: vec![Change { db: 0, args: args(&["DEL", "k"]) }, Change { db: 0, args: args(&["FLUSHALL"]) }] },
            Push::Change { offset: 5, changes: vec![Change { db: 0, args: args(&["SET", "k", "v"]) }] },
            Push::Change { offset: 6, changes: vec![Change { db: 0, args: args(&["FLUSHALL"]) }] },
            Push::Full { offset: 4, keys: 6, replid: "r".into() },
            Push::Snap { offset: 4, entries },
            Push::Live { offset: 4 },
            Push::At { offset: 10 },
        ];
        for p in pushes {
            let mut out = Vec::new();
            p.encode(&mut out);
            let Frame::Push(items) = frame(&out) else { panic!("not a push") };
            assert_eq!(Push::decode(&items).unwrap(), p);
        }
        let mut out = Vec::new();
        Push::Live { offset: 4 }.encode(&mut out);
        assert_eq!(out, b">2\r\n$9\r\nsync.live\r\n:4\r\n");
        // One change goes flat; the nested form of one change still decodes.
        let one = Push::Change { offset: 5, changes: vec![Change { db: 0, args: args(&["SET", "k", "v"]) }] };
        let mut out = Vec::new();
        one.encode(&mut out);
        assert_eq!(out, b">5\r\n$11\r\nsync.change\r\n:5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        let Frame::Push(items) = frame(b">3\r\n$11\r\nsync.change\r\n:5\r\n*1\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n") else { panic!("not a push") };
        assert_eq!(Push::decode(&items).unwrap(), one);
        for bad in [&b">2\r\n$11\r\nsync.change\r\n:5\r\n"[..], b">4\r\n$11\r\nsync.change\r\n:5\r\n$3\r\nSET\r\n:1\r\n"] {
            let Frame::Push(items) = frame(bad) else { panic!("not a push") };
            assert!(Push::decode(&items).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(Push::decode(&[Frame::Bulk(b("message")), Frame::Bulk(b("c"))]).unwrap(), Push::Other(_)));
        assert!(Push::decode(&[Frame::Bulk(b("sync.live"))]).is_err());
    }

    #[test]
    fn snapshot_entries_rebuild_values() {
        let mut t = crate::test_util::T::new();
        t.cmd(&["SET", "n", "12"]);
        let e = t.eng.db(0).unwrap().get(b"n").unwrap().clone();
        let mut out = Vec::new();
        encode_entry(b"n", &e, &mut out);
        let back = SnapEntry::decode(&frame(&out)).unwrap().to_entry().unwrap();
        assert_eq!(back.value, e.value);
        // Garbage entries are errors, not panics.
        for bad in [&b"*4\r\n$1\r\nk\r\n$4\r\nzset\r\n:0\r\n*1\r\n$1\r\na\r\n"[..], b"*4\r\n$1\r\nk\r\n$4\r\nzset\r\n:0\r\n*2\r\n$1\r\na\r\n$3\r\nnan\r\n", b"*4\r\n$1\r\nk\r\n$4\r\nblob\r\n:0\r\n$1\r\na\r\n", b"*3\r\n$1\r\nk\r\n$4\r\nlist\r\n:0\r\n"] {
            assert!(SnapEntry::decode(&frame(bad)).is_err());
        }
    }
}
