//! Replies: what a command answers, independent of the protocol version.
//!
//! A [`Reply`] is encoded to RESP2 or RESP3 by [`crate::resp::encode`]; RESP3-only
//! shapes (maps, sets, doubles, booleans, pushes) degrade to their RESP2 forms there, the
//! way Redis does.

use std::borrow::Cow;

use bytes::Bytes;

/// One reply frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`.
    Ok,
    /// A simple string (`+PONG`, `+QUEUED`, `+string` for TYPE).
    Simple(Cow<'static, str>),
    /// An error, without the leading `-`: `"ERR syntax error"`, `"WRONGTYPE …"`.
    Error(Cow<'static, str>),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// The null bulk string (RESP2 `$-1`, RESP3 `_`).
    Nil,
    /// The null array (RESP2 `*-1`, RESP3 `_`).
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map (RESP3 `%`); RESP2 flattens it to an array of key, value, key, value.
    Map(Vec<(Reply, Reply)>),
    /// A set (RESP3 `~`); RESP2 sends an array.
    Set(Vec<Reply>),
    /// A double (RESP3 `,`); RESP2 sends a bulk string formatted as Redis does.
    Double(f64),
    /// A boolean (RESP3 `#`); RESP2 sends the integer 1 or 0.
    Bool(bool),
    /// A verbatim string (RESP3 `=`) with its three-letter format; RESP2 sends a bulk.
    Verbatim(&'static str, Bytes),
    /// An out-of-band push (RESP3 `>`); RESP2 sends an array.
    Push(Vec<Reply>),
}

impl Reply {
    /// An error reply from any string.
    pub fn err(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Error(text.into())
    }

    /// A simple-string reply.
    pub fn simple(text: impl Into<Cow<'static, str>>) -> Reply {
        Reply::Simple(text.into())
    }

    /// A bulk reply copied from bytes.
    pub fn bulk(data: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// A bulk reply holding the decimal form of an integer.
    pub fn bulk_int(n: i64) -> Reply {
        Reply::Bulk(Bytes::from(n.to_string()))
    }

    /// A bulk reply or the null bulk.
    pub fn opt_bulk(data: Option<impl AsRef<[u8]>>) -> Reply {
        match data {
            Some(d) => Reply::bulk(d),
            None => Reply::Nil,
        }
    }

    /// An array of bulk strings.
    pub fn bulks<I, T>(items: I) -> Reply
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        Reply::Array(items.into_iter().map(Reply::bulk).collect())
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// The error texts of Redis 7, written once.
pub mod errors {
    pub const SYNTAX: &str = "ERR syntax error";
    pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
    pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const NO_SUCH_KEY: &str = "ERR no such key";
    pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
    pub const DB_INDEX: &str = "ERR DB index is out of range";
    pub const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
    pub const NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
    pub const MIN_MAX_FLOAT: &str = "ERR min or max is not a float";
    pub const MIN_MAX_LEX: &str = "ERR min or max not valid string range item";
    pub const TIMEOUT_NOT_FLOAT: &str = "ERR timeout is not a float or out of range";
    pub const TIMEOUT_NEGATIVE: &str = "ERR timeout is negative";
    pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
    pub const POSITIVE: &str = "ERR value is out of range, must be positive";
    pub const CURSOR: &str = "ERR invalid cursor";
    pub const NUMKEYS_POSITIVE: &str = "ERR numkeys should be greater than 0";

    /// `ERR wrong number of arguments for 'get' command`
    pub fn arity(name: &str) -> String {
        format!("ERR wrong number of arguments for '{}' command", name.to_ascii_lowercase())
    }

    /// `ERR invalid expire time in 'set' command`
    pub fn invalid_expire(name: &str) -> String {
        format!("ERR invalid expire time in '{}' command", name.to_ascii_lowercase())
    }
}
