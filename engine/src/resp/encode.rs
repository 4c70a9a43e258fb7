//! Encoding replies as RESP2 or RESP3.

use crate::reply::Reply;
use crate::util::fmt_double;

/// The protocol version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

/// Appends the encoding of `reply` to `out`.
pub fn encode(reply: &Reply, proto: Protocol, out: &mut Vec<u8>) {
    let r3 = proto == Protocol::Resp3;
    match reply {
        Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
        Reply::Simple(s) => line(out, b'+', s.as_bytes()),
        Reply::Error(e) => line(out, b'-', e.as_bytes()),
        Reply::Int(n) => {
            out.push(b':');
            push_int(out, *n);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Bulk(b) => bulk(out, b),
        Reply::Nil => out.extend_from_slice(if r3 { b"_\r\n" } else { b"$-1\r\n" }),
        Reply::NilArray => out.extend_from_slice(if r3 { b"_\r\n" } else { b"*-1\r\n" }),
        Reply::Array(items) => aggregate(out, b'*', items, proto),
        Reply::Set(items) => aggregate(out, if r3 { b'~' } else { b'*' }, items, proto),
        Reply::Push(items) => aggregate(out, if r3 { b'>' } else { b'*' }, items, proto),
        Reply::Map(pairs) => {
            if r3 {
                out.push(b'%');
                push_int(out, pairs.len() as i64);
            } else {
                out.push(b'*');
                push_int(out, pairs.len() as i64 * 2);
            }
            out.extend_from_slice(b"\r\n");
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Reply::Double(d) => {
            let text = fmt_double(*d);
            if r3 {
                line(out, b',', text.as_bytes());
            } else {
                bulk(out, text.as_bytes());
            }
        }
        Reply::Bool(b) => {
            if r3 {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
            } else {
                out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" });
            }
        }
        Reply::Verbatim(fmt, data) => {
            if r3 {
                out.push(b'=');
                push_int(out, data.len() as i64 + 4);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(fmt.as_bytes());
                out.push(b':');
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            } else {
                bulk(out, data);
            }
        }
    }
}

/// Encodes a reply into a new buffer.
pub fn to_vec(reply: &Reply, proto: Protocol) -> Vec<u8> {
    let mut out = Vec::new();
    encode(reply, proto, &mut out);
    out
}

/// Appends a command (an array of bulk strings), as clients send them.
pub fn encode_command<T: AsRef<[u8]>>(args: &[T], out: &mut Vec<u8>) {
    out.push(b'*');
    push_int(out, args.len() as i64);
    out.extend_from_slice(b"\r\n");
    for a in args {
        bulk(out, a.as_ref());
    }
}

fn aggregate(out: &mut Vec<u8>, tag: u8, items: &[Reply], proto: Protocol) {
    out.push(tag);
    push_int(out, items.len() as i64);
    out.extend_from_slice(b"\r\n");
    for item in items {
        encode(item, proto, out);
    }
}

fn line(out: &mut Vec<u8>, tag: u8, text: &[u8]) {
    out.push(tag);
    // A simple string or error can never carry CR or LF: replace them, as Redis does.
    out.extend(text.iter().map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }));
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    out.push(b'$');
    push_int(out, data.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = itoa_buf(n);
    out.extend_from_slice(buf.as_bytes_mut());
}

struct IntBuf {
    bytes: [u8; 20],
    start: usize,
}

impl IntBuf {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.bytes[self.start..]
    }
}

fn itoa_buf(n: i64) -> IntBuf {
    let mut bytes = [0u8; 20];
    let mut i = bytes.len();
    let neg = n < 0;
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        bytes[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        bytes[i] = b'-';
    }
    IntBuf { bytes, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn e2(r: Reply) -> String {
        String::from_utf8(to_vec(&r, Protocol::Resp2)).unwrap()
    }
    fn e3(r: Reply) -> String {
        String::from_utf8(to_vec(&r, Protocol::Resp3)).unwrap()
    }

    #[test]
    fn shapes() {
        assert_eq!(e2(Reply::Ok), "+OK\r\n");
        assert_eq!(e2(Reply::Int(i64::MIN)), ":-9223372036854775808\r\n");
        assert_eq!(e2(Reply::Nil), "$-1\r\n");
        assert_eq!(e3(Reply::Nil), "_\r\n");
        assert_eq!(e2(Reply::NilArray), "*-1\r\n");
        assert_eq!(e2(Reply::Bulk(Bytes::from_static(b"a\r\nb"))), "$4\r\na\r\nb\r\n");
        assert_eq!(e2(Reply::Double(1.5)), "$3\r\n1.5\r\n");
        assert_eq!(e3(Reply::Double(1.5)), ",1.5\r\n");
        assert_eq!(e2(Reply::Bool(true)), ":1\r\n");
        assert_eq!(e3(Reply::Bool(false)), "#f\r\n");
        let m = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(e2(m.clone()), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(e3(m), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(e3(Reply::Verbatim("txt", Bytes::from_static(b"hi"))), "=6\r\ntxt:hi\r\n");
        assert_eq!(e2(Reply::err("ERR a\r\nb")), "-ERR a  b\r\n");
    }
}
