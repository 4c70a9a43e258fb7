//! The command table and dispatch.
//!
//! Every command Recached knows is one [`CommandSpec`] in a family's `COMMANDS` slice: its
//! name, Redis arity, flags, key positions and handler. COMMAND serves this table, the
//! engine checks arity from it, and the sync layer uses [`CommandSpec::keys`] to enforce
//! token scopes.
//!
//! Handlers parse their own options at execution time rather than at queue time: Redis
//! reports option errors from inside EXEC (only unknown commands and wrong arity abort a
//! transaction), and doing the same keeps replies byte-for-byte.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::change::Change;
use crate::db::Db;
use crate::engine::Ctx;
use crate::reply::Reply;
use crate::value::Value;

pub mod expire;
pub mod hash;
pub mod keys;
pub mod list;
pub mod scripting;
pub mod server;
pub mod set;
pub mod string;
pub mod tx;
pub mod zset;

/// A command handler: parses `args` (`args[0]` is the name) and runs against the context.
pub type RunFn = fn(&mut Ctx, &[Bytes]) -> Reply;

/// Extracts key positions from the arguments, for commands whose keys move (`numkeys`).
pub type KeysFn = fn(&[Bytes]) -> Vec<usize>;

/// Who runs a command.
#[derive(Clone, Copy)]
pub enum Handler {
    /// The engine, through this function.
    Engine(RunFn),
    /// The host (CLIENT, CONFIG, INFO, AUTH, HELLO, pub/sub, persistence, …).
    Host,
    /// EXEC: the engine's transaction runner.
    Exec,
}

/// Command flags, as COMMAND reports them.
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    pub const NO_AUTH: u32 = 1 << 10;
    pub const MOVABLEKEYS: u32 = 1 << 11;
    /// Runs at once inside MULTI instead of being queued (MULTI, EXEC, DISCARD, WATCH, …).
    pub const NO_QUEUE: u32 = 1 << 12;
    pub const NO_MULTI: u32 = 1 << 13;
    pub const SKIP_SLOWLOG: u32 = 1 << 14;
    pub const ALLOW_BUSY: u32 = 1 << 15;

    /// Flag names in COMMAND's order.
    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (PUBSUB, "pubsub"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (ALLOW_BUSY, "allow_busy"),
        (NO_MULTI, "no_multi"),
        (MOVABLEKEYS, "movablekeys"),
    ];
}

/// One command of the table.
#[derive(Clone, Copy)]
pub struct CommandSpec {
    /// Lower-case name.
    pub name: &'static str,
    /// Redis arity: `n` means exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    /// [`flags`] bits.
    pub flags: u32,
    /// Position of the first key (0: none).
    pub first_key: i32,
    /// Position of the last key (negative counts from the end).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Key positions for commands with movable keys.
    pub keys_fn: Option<KeysFn>,
    /// Command group (`string`, `list`, `generic`, …), for COMMAND DOCS.
    pub group: &'static str,
    /// One-line summary, for COMMAND DOCS.
    pub summary: &'static str,
    /// Redis version that introduced it.
    pub since: &'static str,
    /// Who runs it.
    pub handler: Handler,
}

impl CommandSpec {
    /// A spec with the given basics; refine with the builder methods.
    pub const fn new(name: &'static str, arity: i32, flags: u32, group: &'static str, handler: Handler) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            first_key: 0,
            last_key: 0,
            step: 0,
            keys_fn: None,
            group,
            summary: "",
            since: "1.0.0",
            handler,
        }
    }

    /// Sets the key range.
    pub const fn keys(mut self, first: i32, last: i32, step: i32) -> CommandSpec {
        self.first_key = first;
        self.last_key = last;
        self.step = step;
        self
    }

    /// Sets a function for movable keys (also sets the `movablekeys` flag).
    pub const fn keys_with(mut self, f: KeysFn) -> CommandSpec {
        self.keys_fn = Some(f);
        self.flags |= flags::MOVABLEKEYS;
        self
    }

    /// Sets the summary and first version.
    pub const fn doc(mut self, summary: &'static str, since: &'static str) -> CommandSpec {
        self.summary = summary;
        self.since = since;
        self
    }

    /// Whether `argc` (name included) satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = self.arity as i64;
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether the command writes.
    pub fn is_write(&self) -> bool {
        self.flags & flags::WRITE != 0
    }

    /// Whether the command only reads.
    pub fn is_readonly(&self) -> bool {
        self.flags & flags::READONLY != 0
    }

    /// Whether the command may grow memory (refused with `-OOM` when over the cap).
    pub fn is_denyoom(&self) -> bool {
        self.flags & flags::DENYOOM != 0
    }

    /// Whether the command may block.
    pub fn is_blocking(&self) -> bool {
        self.flags & flags::BLOCKING != 0
    }

    /// Whether MULTI runs it at once rather than queueing it.
    pub fn runs_in_multi(&self) -> bool {
        self.flags & flags::NO_QUEUE != 0
    }

    /// Positions of the keys in `args` (name at 0).
    pub fn key_positions(&self, args: &[Bytes]) -> Vec<usize> {
        if let Some(f) = self.keys_fn {
            return f(args).into_iter().filter(|&i| i < args.len()).collect();
        }
        if self.first_key <= 0 {
            return Vec::new();
        }
        let argc = args.len() as i64;
        let first = self.first_key as i64;
        let last = if self.last_key < 0 { argc + self.last_key as i64 } else { self.last_key as i64 };
        let step = (self.step as i64).max(1);
        let mut out = Vec::new();
        let mut i = first;
        while i <= last && i < argc {
            out.push(i as usize);
            i += step;
        }
        out
    }

    /// The keys in `args`.
    pub fn keys_of<'a>(&self, args: &'a [Bytes]) -> Vec<&'a Bytes> {
        self.key_positions(args).into_iter().map(|i| &args[i]).collect()
    }
}

/// Keys given as `numkeys key [key …]` with `numkeys` at `args[pos]`.
pub fn numkeys_at(args: &[Bytes], pos: usize) -> Vec<usize> {
    let Some(n) = args.get(pos).and_then(|a| crate::util::parse_i64(a)) else { return Vec::new() };
    if n <= 0 {
        return Vec::new();
    }
    let n = (n as usize).min(args.len().saturating_sub(pos + 1));
    (pos + 1..pos + 1 + n).collect()
}

fn families() -> [&'static [CommandSpec]; 10] {
    [
        string::COMMANDS,
        keys::COMMANDS,
        expire::COMMANDS,
        list::COMMANDS,
        hash::COMMANDS,
        set::COMMANDS,
        zset::COMMANDS,
        tx::COMMANDS,
        server::COMMANDS,
        scripting::COMMANDS,
    ]
}

struct Table {
    all: Vec<&'static CommandSpec>,
    by_name: HashMap<&'static str, &'static CommandSpec>,
}

fn table_inner() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all: Vec<&'static CommandSpec> = families().into_iter().flat_map(|f| f.iter()).collect();
        all.sort_by_key(|c| c.name);
        let by_name = all.iter().map(|c| (c.name, *c)).collect();
        Table { all, by_name }
    })
}

/// Every command, sorted by name.
pub fn table() -> &'static [&'static CommandSpec] {
    &table_inner().all
}

/// Finds a command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    let name = std::str::from_utf8(lower).ok()?;
    table_inner().by_name.get(name).copied()
}

/// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `
pub fn unknown_command_error(args: &[Bytes]) -> String {
    let name = args.first().map(|a| lossy_trunc(a, 128)).unwrap_or_default();
    let mut s = format!("ERR unknown command '{}', with args beginning with: ", name);
    let mut budget = 128usize;
    for a in args.iter().skip(1) {
        if budget == 0 {
            break;
        }
        let part = lossy_trunc(a, budget);
        budget = budget.saturating_sub(a.len());
        s.push('\'');
        s.push_str(&part);
        s.push_str("' ");
    }
    s
}

/// Lossy text of at most `max` bytes with control characters replaced, safe to put in an
/// error line.
pub fn lossy_trunc(data: &[u8], max: usize) -> String {
    let cut = &data[..data.len().min(max)];
    String::from_utf8_lossy(cut).chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `ERR unknown subcommand 'x'. Try CONFIG HELP.`
pub fn unknown_subcommand_error(command: &str, sub: &[u8]) -> String {
    format!("ERR unknown subcommand '{}'. Try {} HELP.", lossy_trunc(sub, 128), command.to_ascii_uppercase())
}

/// Arguments from byte slices.
pub fn args_of(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

const RESTORE_CHUNK: usize = 512;

/// The changes that rebuild the whole value at `key` on any engine: `DEL key`, the value,
/// then its deadline. A missing key yields only `DEL`.
pub fn restore_changes(db: &Db, dbi: usize, key: &[u8]) -> Vec<Change> {
    let d = dbi as u16;
    let k = Bytes::copy_from_slice(key);
    let del = Change { db: d, args: vec![Bytes::from_static(b"DEL"), k.clone()] };
    let Some(entry) = db.get(key) else { return vec![del] };
    let mut out = Vec::new();
    let chunked = |name: &'static [u8], items: Vec<Bytes>, per: usize, out: &mut Vec<Change>| {
        for chunk in items.chunks(RESTORE_CHUNK * per) {
            let mut args = Vec::with_capacity(chunk.len() + 2);
            args.push(Bytes::from_static(name));
            args.push(k.clone());
            args.extend_from_slice(chunk);
            out.push(Change { db: d, args });
        }
    };
    match &entry.value {
        Value::Int(_) | Value::Str(_) => {
            let v = entry.value.as_bytes().unwrap_or_default();
            let mut args = vec![Bytes::from_static(b"SET"), k.clone(), v];
            if entry.expire_at != 0 {
                args.push(Bytes::from_static(b"PXAT"));
                args.push(Bytes::from(entry.expire_at.to_string()));
            }
            return vec![Change { db: d, args }];
        }
        Value::List(l) => {
            out.push(del);
            let items = l.items().iter().map(|v| Bytes::copy_from_slice(v)).collect();
            chunked(b"RPUSH", items, 1, &mut out);
        }
        Value::Hash(h) => {
            out.push(del);
            let items = h.map().iter().flat_map(|(f, v)| [Bytes::copy_from_slice(f), Bytes::copy_from_slice(v)]).collect();
            chunked(b"HSET", items, 2, &mut out);
        }
        Value::Set(s) => {
            out.push(del);
            let items = s.members().iter().map(|m| Bytes::copy_from_slice(m)).collect();
            chunked(b"SADD", items, 1, &mut out);
        }
        Value::ZSet(z) => {
            out.push(del);
            let items = z
                .iter()
                .flat_map(|(m, s)| [Bytes::from(crate::util::fmt_double(s)), Bytes::copy_from_slice(m)])
                .collect();
            chunked(b"ZADD", items, 2, &mut out);
        }
    }
    if entry.expire_at != 0 {
        out.push(Change {
            db: d,
            args: vec![Bytes::from_static(b"PEXPIREAT"), k, Bytes::from(entry.expire_at.to_string())],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_unique_lowercase_names() {
        let t = table();
        for w in t.windows(2) {
            assert_ne!(w[0].name, w[1].name, "duplicate command {}", w[0].name);
        }
        for c in t {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(c.arity != 0, "{} has arity 0", c.name);
        }
    }

    #[test]
    fn unknown_command_text() {
        let args = args_of(&[b"foo", b"a", b"b"]);
        assert_eq!(unknown_command_error(&args), "ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
        let args = args_of(&[b"foo"]);
        assert_eq!(unknown_command_error(&args), "ERR unknown command 'foo', with args beginning with: ");
    }
}
