//! Incremental RESP parsing.
//!
//! Two parsers share the limits:
//! - [`parse_command`] / [`take_command`]: what a Redis server accepts from a client, an
//!   array of bulk strings or an inline command line, with Redis's exact protocol errors;
//! - [`parse`]: any RESP2/RESP3 frame (maps, sets, pushes, doubles, …), for clients,
//!   replication links and the sync protocol, with a nesting limit; [`parse_bytes`] is the
//!   same parser with its strings slices of the input instead of copies.
//!
//! Both answer `Ok(None)` ("incomplete: read more") until a whole frame is buffered, so any
//! fragmentation works, down to one byte at a time. A declared length is checked against
//! the limits before anything is allocated for it.

use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// Parser limits. The defaults are Redis's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`, 512 MB).
    pub max_bulk_len: usize,
    /// Most elements in one array.
    pub max_multibulk_len: usize,
    /// Longest inline command or length line (64 KB).
    pub max_inline_len: usize,
    /// Deepest nesting of aggregates in [`parse`].
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: i32::MAX as usize,
            max_inline_len: 64 * 1024,
            max_depth: 64,
        }
    }
}

/// A protocol error. Its `Display` is Redis's error line (without `-`); after sending it
/// the server closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("ERR Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("ERR Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("ERR Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("ERR Protocol error: too big inline request")]
    InlineTooBig,
    #[error("ERR Protocol error: too big mbulk count string")]
    MbulkCountTooBig,
    #[error("ERR Protocol error: too big bulk count string")]
    BulkCountTooBig,
    #[error("ERR Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("ERR Protocol error: invalid frame type '{0}'")]
    InvalidType(char),
    #[error("ERR Protocol error: invalid frame")]
    Invalid,
    #[error("ERR Protocol error: frames nested too deeply")]
    TooDeep,
}

/// Finds `\r\n` from `start`; returns the index of `\r`. Stops looking past `max` bytes.
fn find_crlf(buf: &[u8], start: usize, max: usize) -> Result<Option<usize>, ()> {
    let end = buf.len().min(start.saturating_add(max).saturating_add(2));
    match buf[start..end].windows(2).position(|w| w == b"\r\n") {
        Some(p) => Ok(Some(start + p)),
        // A line of exactly `max` bytes may have its `\r` in and its `\n` still in flight:
        // that is incomplete, not too long (found by fuzz/ resp_frame's prefix check).
        None if buf.len() - start > max + 1 => Err(()),
        None if buf.len() - start == max + 1 && buf[buf.len() - 1] != b'\r' => Err(()),
        None => Ok(None),
    }
}

fn parse_len(line: &[u8]) -> Option<i64> {
    // Redis's string2ll, but lengths may be "-1".
    if line == b"-1" {
        return Some(-1);
    }
    crate::util::parse_i64(line)
}

/// One argument of a parsed command: a range of the input, or owned bytes (inline
/// commands with escapes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// Bytes `start..end` of the buffer.
    Range(usize, usize),
    /// Unescaped bytes.
    Owned(Vec<u8>),
}

/// A command found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Its arguments (may be empty: an empty line or `*0`, which the server skips).
    pub args: Vec<Arg>,
    /// Bytes it took.
    pub consumed: usize,
}

/// Parses one client command at the start of `buf`.
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, limits);
    }
    let Some(cr) = find_crlf(buf, 1, limits.max_inline_len).map_err(|_| FrameError::MbulkCountTooBig)? else {
        return Ok(None);
    };
    let n = parse_len(&buf[1..cr]).ok_or(FrameError::InvalidMultibulkLength)?;
    if n > limits.max_multibulk_len as i64 || n > i32::MAX as i64 {
        return Err(FrameError::InvalidMultibulkLength);
    }
    let mut pos = cr + 2;
    if n <= 0 {
        return Ok(Some(Parsed { args: Vec::new(), consumed: pos }));
    }
    let mut args = Vec::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(FrameError::ExpectedBulk(buf[pos] as char));
        }
        let Some(cr) = find_crlf(buf, pos + 1, limits.max_inline_len).map_err(|_| FrameError::BulkCountTooBig)? else {
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..cr]).ok_or(FrameError::InvalidBulkLength)?;
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(FrameError::InvalidBulkLength);
        }
        let start = cr + 2;
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            // Redis reads exactly len bytes and then expects CRLF; anything else breaks
            // the stream.
            return Err(FrameError::InvalidBulkLength);
        }
        args.push(Arg::Range(start, end));
        pos = end + 2;
    }
    Ok(Some(Parsed { args, consumed: pos }))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, FrameError> {
    let nl = match buf.iter().take(limits.max_inline_len + 1).position(|&c| c == b'\n') {
        Some(p) => p,
        None if buf.len() > limits.max_inline_len => return Err(FrameError::InlineTooBig),
        None => return Ok(None),
    };
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    let args = split_args(line).ok_or(FrameError::UnbalancedQuotes)?;
    Ok(Some(Parsed { args: args.into_iter().map(Arg::Owned).collect(), consumed: nl + 1 }))
}

/// Splits an inline command line as Redis's `sdssplitargs` does: spaces separate words,
/// `"…"` takes escapes (`\n`, `\xHH`, …), `'…'` takes `\'`. `None` on unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // sdssplitargs reads a C string: a NUL ends it (inside quotes that makes them
    // unbalanced). Without this cut a NUL outside quotes looped forever pushing empty
    // arguments (found by fuzz/ resp_command).
    let line = match line.iter().position(|&c| c == 0) {
        Some(p) => &line[..p],
        None => line,
    };
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return Some(out);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            if inq {
                if i >= line.len() {
                    return None;
                }
                if line[i] == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' && line[i + 2].is_ascii_hexdigit() && line[i + 3].is_ascii_hexdigit() {
                    let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                    cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                    i += 3;
                } else if line[i] == b'\\' && i + 1 < line.len() {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        c => c,
                    });
                } else if line[i] == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    inq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else if insq {
                if i >= line.len() {
                    return None;
                }
                if line[i] == b'\\' && i + 1 < line.len() && line[i + 1] == b'\'' {
                    i += 1;
                    cur.push(b'\'');
                } else if line[i] == b'\'' {
                    if i + 1 < line.len() && !line[i + 1].is_ascii_whitespace() {
                        return None;
                    }
                    insq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(line[i]);
                }
            } else {
                if i >= line.len() {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => break,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    c => cur.push(c),
                }
            }
            i += 1;
        }
        let _ = (inq, insq);
        out.push(cur);
    }
}

/// Takes one complete command off the front of `buf`, without copying bulk payloads.
/// `Ok(None)`: incomplete, read more. Empty commands (blank lines, `*0`) are skipped.
pub fn take_command(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>, FrameError> {
    loop {
        let Some(parsed) = parse_command(buf, limits)? else { return Ok(None) };
        let frame = buf.split_to(parsed.consumed).freeze();
        if parsed.args.is_empty() {
            continue;
        }
        let args = parsed
            .args
            .into_iter()
            .map(|a| match a {
                Arg::Range(s, e) => frame.slice(s..e),
                Arg::Owned(v) => Bytes::from(v),
            })
            .collect();
        return Ok(Some(args));
    }
}

/// Any RESP2/RESP3 frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+text`
    Simple(Bytes),
    /// `-ERR text`
    Error(Bytes),
    /// `:n`
    Int(i64),
    /// `$n` payload
    Bulk(Bytes),
    /// `$-1`, `*-1` or `_`
    Null,
    /// `*n`
    Array(Vec<Frame>),
    /// `%n` pairs
    Map(Vec<(Frame, Frame)>),
    /// `~n`
    Set(Vec<Frame>),
    /// `>n`
    Push(Vec<Frame>),
    /// `,d`
    Double(f64),
    /// `#t` / `#f`
    Bool(bool),
    /// `(n` (kept as text)
    BigNumber(Bytes),
    /// `=n fmt:payload` (format and payload, as sent)
    Verbatim(Bytes),
}

impl Frame {
    /// The bytes of a bulk or simple string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Bulk(b) | Frame::Simple(b) | Frame::Verbatim(b) => Some(b),
            _ => None,
        }
    }

    /// The items of an array, set or push.
    pub fn as_items(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => Some(v),
            _ => None,
        }
    }
}

/// Parses one frame at the start of `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)`
/// when more bytes are needed. Its strings are copies; [`parse_bytes`] shares the buffer
/// instead.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut frame = Frame::Null;
    Ok(parse_at(buf, None, 0, limits, 0, &mut frame)?.map(|n| (frame, n)))
}

/// [`parse`], with every string of the frame a slice of `buf` (a reference count, not a
/// copy): one allocation per aggregate instead of one per string. For a reader that owns
/// its received bytes as [`Bytes`] (`BytesMut::split().freeze()`, `Bytes::from(vec)`).
/// Any string kept from the frame keeps all of `buf` alive: copy what outlives the message.
pub fn parse_bytes(buf: &Bytes, limits: &Limits) -> Result<Option<(Frame, usize)>, FrameError> {
    let mut frame = Frame::Null;
    Ok(parse_at(buf, Some(buf), 0, limits, 0, &mut frame)?.map(|n| (frame, n)))
}

/// `buf[from..to]`: a slice of `shared` when there is one, else a copy.
#[inline(always)]
fn take(buf: &[u8], shared: Option<&Bytes>, from: usize, to: usize) -> Bytes {
    match shared {
        Some(b) => b.slice(from..to),
        None => Bytes::copy_from_slice(&buf[from..to]),
    }
}

/// The payload range of the bulk string at `buf[p..]` when it is an ordinary one (a length
/// of 1–9 digits, no leading zero unless it is `0`, within the limits, payload and both
/// CRLFs buffered); `None` sends everything else (nulls, errors, incomplete input) through
/// [`parse_at`]. The fast path for the items of an aggregate, most of which are bulk
/// strings; it accepts exactly what `parse_at` accepts, and gives the same range.
#[inline(always)]
fn whole_bulk(buf: &[u8], p: usize, limits: &Limits) -> Option<(usize, usize)> {
    let rest = buf.get(p..)?;
    if rest.first() != Some(&b'$') || !rest.get(1)?.is_ascii_digit() {
        return None;
    }
    let mut len = 0usize;
    let mut i = 1;
    while let Some(&c) = rest.get(i).filter(|c| c.is_ascii_digit()) {
        if i > 9 || (i == 2 && len == 0) {
            return None;
        }
        len = len * 10 + (c - b'0') as usize;
        i += 1;
    }
    if rest.get(i..i + 2)? != b"\r\n" || i - 1 > limits.max_inline_len || len > limits.max_bulk_len {
        return None;
    }
    let from = p + i + 2;
    let to = from + len;
    (buf.get(to..to + 2)? == b"\r\n").then_some((from, to))
}

/// Parses the frame at `buf[pos..]` into `out` and answers where it ends. With `shared`
/// (the same bytes as `buf`), strings are slices of it; without, copies.
///
/// The frame goes out through `out` and only a position comes back: returning it inside
/// `Result<Option<(Frame, usize)>>` cost a third of the time per element, in unaligned
/// copies of that nested enum from each level to the next (`perf annotate`).
fn parse_at(buf: &[u8], shared: Option<&Bytes>, pos: usize, limits: &Limits, depth: usize, out: &mut Frame) -> Result<Option<usize>, FrameError> {
    if depth > limits.max_depth {
        return Err(FrameError::TooDeep);
    }
    if pos >= buf.len() {
        return Ok(None);
    }
    let tag = buf[pos];
    let Some(cr) = find_crlf(buf, pos + 1, limits.max_inline_len).map_err(|_| FrameError::InlineTooBig)? else {
        return Ok(None);
    };
    let line = &buf[pos + 1..cr];
    let next = cr + 2;
    let take = |from: usize, to: usize| take(buf, shared, from, to);
    *out = match tag {
        b'+' => Frame::Simple(take(pos + 1, cr)),
        b'-' => Frame::Error(take(pos + 1, cr)),
        b':' => Frame::Int(parse_len(line).ok_or(FrameError::Invalid)?),
        b'_' => Frame::Null,
        b'#' => match line {
            b"t" => Frame::Bool(true),
            b"f" => Frame::Bool(false),
            _ => return Err(FrameError::Invalid),
        },
        b',' => {
            let s = std::str::from_utf8(line).map_err(|_| FrameError::Invalid)?;
            let d = match s {
                "inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" => f64::NAN,
                _ => s.parse().map_err(|_| FrameError::Invalid)?,
            };
            Frame::Double(d)
        }
        b'(' => Frame::BigNumber(take(pos + 1, cr)),
        b'$' | b'=' | b'!' => {
            let len = parse_len(line).ok_or(FrameError::InvalidBulkLength)?;
            if len == -1 {
                *out = Frame::Null;
                return Ok(Some(next));
            }
            if len < 0 || len as u64 > limits.max_bulk_len as u64 {
                return Err(FrameError::InvalidBulkLength);
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(FrameError::InvalidBulkLength);
            }
            let payload = take(next, end);
            *out = match tag {
                b'$' => Frame::Bulk(payload),
                b'=' => Frame::Verbatim(payload),
                _ => Frame::Error(payload),
            };
            return Ok(Some(end + 2));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = parse_len(line).ok_or(FrameError::InvalidMultibulkLength)?;
            if n == -1 && tag == b'*' {
                *out = Frame::Null;
                return Ok(Some(next));
            }
            if n < 0 || n as u64 > limits.max_multibulk_len as u64 {
                return Err(FrameError::InvalidMultibulkLength);
            }
            let count = if tag == b'%' { n as usize * 2 } else { n as usize };
            let mut items = Vec::with_capacity(count.min(1024));
            let mut p = next;
            let bulk_ok = depth < limits.max_depth;
            for _ in 0..count {
                if let Some((from, to)) = bulk_ok.then(|| whole_bulk(buf, p, limits)).flatten() {
                    items.push(Frame::Bulk(take(from, to)));
                    p = to + 2;
                    continue;
                }
                let mut item = Frame::Null;
                let Some(after) = parse_at(buf, shared, p, limits, depth + 1, &mut item)? else { return Ok(None) };
                items.push(item);
                p = after;
            }
            *out = match tag {
                b'*' => Frame::Array(items),
                b'~' => Frame::Set(items),
                b'>' => Frame::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Frame::Map(pairs)
                }
            };
            return Ok(Some(p));
        }
        other => return Err(FrameError::InvalidType(other as char)),
    };
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(input: &[u8]) -> Result<Option<Vec<Vec<u8>>>, FrameError> {
        let mut buf = BytesMut::from(input);
        Ok(take_command(&mut buf, &Limits::default())?.map(|v| v.into_iter().map(|b| b.to_vec()).collect()))
    }

    #[test]
    fn multibulk() {
        assert_eq!(cmd(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap(), Some(vec![b"GET".to_vec(), b"k".to_vec()]));
        assert_eq!(cmd(b"*2\r\n$3\r\nGET\r\n$1\r\n").unwrap(), None);
        assert_eq!(cmd(b"*1\r\n$4\r\na\r\nb\r\n").unwrap(), Some(vec![b"a\r\nb".to_vec()]));
    }

    #[test]
    fn byte_at_a_time() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n";
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            while let Some(args) = take_command(&mut buf, &Limits::default()).unwrap() {
                got.push(args);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(&got[0][2][..], b"hello");
        assert_eq!(&got[1][0][..], b"PING");
    }

    #[test]
    fn inline() {
        assert_eq!(cmd(b"SET k \"a b\\x41\\n\"\r\n").unwrap(), Some(vec![b"SET".to_vec(), b"k".to_vec(), b"a bA\n".to_vec()]));
        assert_eq!(cmd(b"PING\n").unwrap(), Some(vec![b"PING".to_vec()]));
        assert_eq!(cmd(b"\r\n\r\nPING\r\n").unwrap(), Some(vec![b"PING".to_vec()]));
        assert_eq!(cmd(b"SET 'it\\'s' x\r\n").unwrap(), Some(vec![b"SET".to_vec(), b"it's".to_vec(), b"x".to_vec()]));
        assert_eq!(cmd(b"SET \"k\r\n"), Err(FrameError::UnbalancedQuotes));
        assert_eq!(cmd(b"SET \"k\"x\r\n"), Err(FrameError::UnbalancedQuotes));
    }

    #[test]
    fn errors() {
        assert_eq!(cmd(b"*x\r\n"), Err(FrameError::InvalidMultibulkLength));
        assert_eq!(cmd(b"*1\r\n+x\r\n"), Err(FrameError::ExpectedBulk('+')));
        assert_eq!(cmd(b"*1\r\n$x\r\n"), Err(FrameError::InvalidBulkLength));
        assert_eq!(cmd(b"*1\r\n$1073741824\r\n"), Err(FrameError::InvalidBulkLength));
        assert_eq!(cmd(b"*1\r\n$1\r\nab\r\n"), Err(FrameError::InvalidBulkLength));
        assert_eq!(cmd(b"*1\r\n*1\r\n"), Err(FrameError::ExpectedBulk('*')));
        let big = vec![b'a'; 70 * 1024];
        assert_eq!(cmd(&big), Err(FrameError::InlineTooBig));
        assert_eq!(FrameError::ExpectedBulk('+').to_string(), "ERR Protocol error: expected '$', got '+'");
    }

    #[test]
    fn nul_in_an_inline_command_ends_it() {
        // Regression: a NUL outside quotes made split_args loop forever, growing memory.
        assert_eq!(cmd(b"\x001\r\nPING\r\n").unwrap(), Some(vec![b"PING".to_vec()]));
        assert_eq!(cmd(b"SET a b\x00 c\r\n").unwrap(), Some(vec![b"SET".to_vec(), b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(cmd(b"SET \"a\x00b\" c\r\n"), Err(FrameError::UnbalancedQuotes));
    }

    #[test]
    fn a_line_of_exactly_the_limit_split_before_its_newline_is_incomplete() {
        // Regression: with the `\r` of a max-length line buffered and the `\n` not yet,
        // the parsers answered "too big" instead of "read more".
        let l = Limits { max_inline_len: 8, ..Limits::default() };
        assert_eq!(parse(b"+12345678\r", &l), Ok(None));
        assert_eq!(parse(b"+12345678\r\n", &l).unwrap().map(|(_, n)| n), Some(11));
        assert_eq!(parse(b"+123456789", &l), Err(FrameError::InlineTooBig));
        assert_eq!(parse(b"+12345678x", &l), Err(FrameError::InlineTooBig));
        assert_eq!(parse_command(b"*1\r\n$00000001\r", &l), Ok(None));
        assert_eq!(parse_command(b"*1\r\n$000000001", &l), Err(FrameError::BulkCountTooBig));
    }

    #[test]
    fn huge_declared_multibulk_does_not_allocate() {
        // 10 million elements declared, two sent: incomplete, and the Vec stays small.
        let r = parse_command(b"*10000000\r\n$1\r\na\r\n$1\r\nb\r\n", &Limits::default()).unwrap();
        assert_eq!(r, None);
    }

    #[test]
    fn parse_bytes_shares_the_buffer_and_agrees_with_parse() {
        let l = Limits::default();
        let input = Bytes::from_static(b">6\r\n$11\r\nsync.change\r\n:7\r\n+SET\r\n$5\r\nk:1:a\r\n=7\r\ntxt:abc\r\n%1\r\n(12\r\n$0\r\n\r\n");
        let (f, n) = parse_bytes(&input, &l).unwrap().unwrap();
        assert_eq!(parse(&input, &l).unwrap().unwrap(), (f.clone(), n));
        let inside = |b: &Bytes| input.as_ptr_range().contains(&b.as_ptr());
        let items = f.as_items().unwrap();
        assert!([0, 2, 3, 4].iter().all(|&i| inside(items[i].as_bytes().unwrap())));
        for cut in 0..n {
            assert_eq!(parse_bytes(&input.slice(..cut), &l), Ok(None), "prefix of {cut}");
        }
        assert_eq!(parse_bytes(&Bytes::from_static(b"*1\r\n$2\r\nabc\r\n"), &l), Err(FrameError::InvalidBulkLength));
    }

    #[test]
    fn bulk_items_on_the_fast_path_parse_as_alone() {
        // Each bulk string inside an array (the fast path) against the same string parsed
        // on its own (the general path): same frame or same error, same length.
        let l = Limits { max_bulk_len: 12, max_inline_len: 2, max_depth: 3, ..Limits::default() };
        let cases: [&[u8]; 16] = [b"$0\r\n\r\n", b"$1\r\na\r\n", b"$01\r\na\r\n", b"$00\r\n\r\n", b"$-1\r\n", b"$-0\r\n", b"$12\r\nabcdefghijkl\r\n", b"$13\r\nabcdefghijklm\r\n",
            b"$1\r\nab\r\n", b"$1\r\na", b"$1\r\na\r", b"$1\n\na\r\n", b"$1x\r\na\r\n", b"$", b"$123\r\n", b"$1\r\n\r\n\r\n"];
        for case in cases {
            let alone = parse(case, &l);
            let array = parse(&[b"*1\r\n", case].concat(), &l);
            let expect = alone.clone().map(|r| r.map(|(f, n)| (Frame::Array(vec![f]), n + 4)));
            assert_eq!(array, expect, "{:?}", String::from_utf8_lossy(case));
        }
        let deep = [&b"*1\r\n*1\r\n*1\r\n"[..], b"$1\r\na\r\n"].concat();
        assert_eq!(parse(&deep, &l), Ok(Some((Frame::Array(vec![Frame::Array(vec![Frame::Array(vec![Frame::Bulk(Bytes::from_static(b"a"))])])]), 19))));
        assert_eq!(parse(&[&b"*1\r\n"[..], &deep].concat(), &l), Err(FrameError::TooDeep));
        let big = Limits::default();
        assert_eq!(parse(b"*1\r\n$1234567890\r\n", &big), Err(FrameError::InvalidBulkLength));
        assert_eq!(parse(b"*1\r\n$123456789\r\n", &big), Ok(None));
    }

    #[test]
    fn resp3_frames() {
        let l = Limits::default();
        let (f, n) = parse(b"%1\r\n+a\r\n:1\r\n", &l).unwrap().unwrap();
        assert_eq!(n, 12);
        assert_eq!(f, Frame::Map(vec![(Frame::Simple(Bytes::from_static(b"a")), Frame::Int(1))]));
        assert_eq!(parse(b">2\r\n$1\r\na\r\n", &l).unwrap(), None);
        assert_eq!(parse(b",1.5\r\n", &l).unwrap().unwrap().0, Frame::Double(1.5));
        assert_eq!(parse(b"_\r\n", &l).unwrap().unwrap().0, Frame::Null);
        assert_eq!(parse(b"$-1\r\n", &l).unwrap().unwrap().0, Frame::Null);
        let deep = b"*1\r\n".repeat(100);
        assert_eq!(parse(&deep, &l), Err(FrameError::TooDeep));
        assert_eq!(parse(b"?\r\n", &l), Err(FrameError::InvalidType('?')));
    }
}
