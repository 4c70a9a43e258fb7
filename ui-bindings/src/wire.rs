//! The byte payloads of the cross-tab channel (docs/protocol.md §13): commands and
//! canonical changes as RESP arrays of bulk strings, write outcomes as one RESP3 frame.
//! Plain Rust, so the codec is tested natively; `tabs` (wasm32) puts these bytes in the
//! `BroadcastChannel` messages.

use bytes::Bytes;
use recached_engine::resp::{encode, encode_command, parse, Frame, Limits, Protocol};
use recached_engine::Change;

use crate::core::Settled;

/// Encodes commands (or changes' argument lists) back to back, each a RESP array of bulk
/// strings.
pub fn encode_arrays<'a>(arrays: impl IntoIterator<Item = &'a [Bytes]>) -> Vec<u8> {
    let mut out = Vec::new();
    for args in arrays {
        encode_command(args, &mut out);
    }
    out
}

/// Decodes what [`encode_arrays`] made. `Err` names what is wrong (a peer speaking
/// another version, or a corrupt message).
pub fn decode_arrays(data: &[u8]) -> Result<Vec<Vec<Bytes>>, String> {
    let limits = Limits::default();
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < data.len() {
        let (frame, used) = match parse(&data[pos..], &limits) {
            Ok(Some(found)) => found,
            Ok(None) => return Err("truncated array".into()),
            Err(e) => return Err(e.to_string()),
        };
        pos += used;
        let Frame::Array(items) = frame else { return Err("expected an array".into()) };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::Bulk(b) => args.push(b),
                _ => return Err("expected bulk strings".into()),
            }
        }
        if args.is_empty() {
            return Err("empty command".into());
        }
        out.push(args);
    }
    Ok(out)
}

/// Canonical changes of database 0 as arrays.
pub fn encode_changes(changes: &[Change]) -> Vec<u8> {
    encode_arrays(changes.iter().filter(|c| c.db == 0).map(|c| &c.args[..]))
}

/// Changes of database 0 from [`encode_changes`].
pub fn decode_changes(data: &[u8]) -> Result<Vec<Change>, String> {
    Ok(decode_arrays(data)?.into_iter().map(|args| Change { db: 0, args }).collect())
}

/// A settled write as the channel carries it: `Ok(reply frame bytes)` or `Err(error text)`.
pub fn encode_settled(outcome: &Settled) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    match outcome {
        Settled::Local(recached_engine::Reply::Error(e)) => return Err(e.to_string()),
        Settled::Local(reply) => encode(reply, Protocol::Resp3, &mut out),
        Settled::Hub(Frame::Error(e)) => return Err(String::from_utf8_lossy(e).into_owned()),
        Settled::Hub(frame) => encode_frame(frame, &mut out),
        Settled::Refused(e) => return Err(e.clone()),
    }
    Ok(out)
}

/// The outcome on the follower's side: a reply frame, or a refusal.
pub fn decode_settled(reply: Result<&[u8], String>) -> Settled {
    match reply {
        Err(e) => Settled::Refused(e),
        Ok(bytes) => match parse(bytes, &Limits::default()) {
            Ok(Some((frame, _))) => Settled::Hub(frame),
            _ => Settled::Refused("ERR the leader tab sent a reply this tab cannot read".into()),
        },
    }
}

/// Appends a frame as RESP3.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    fn head(out: &mut Vec<u8>, tag: u8, n: usize) {
        out.push(tag);
        out.extend_from_slice(n.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    fn line(out: &mut Vec<u8>, tag: u8, text: &[u8]) {
        out.push(tag);
        // A line cannot hold CR or LF; the engine never puts them in simple strings.
        out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
        out.extend_from_slice(b"\r\n");
    }
    match frame {
        Frame::Simple(s) => line(out, b'+', s),
        Frame::Error(e) => line(out, b'-', e),
        Frame::Int(n) => line(out, b':', n.to_string().as_bytes()),
        Frame::Bulk(b) => {
            head(out, b'$', b.len());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Verbatim(b) => {
            head(out, b'=', b.len());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Frame::Null => out.extend_from_slice(b"_\r\n"),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            let tag = match frame {
                Frame::Set(_) => b'~',
                Frame::Push(_) => b'>',
                _ => b'*',
            };
            head(out, tag, items.len());
            items.iter().for_each(|i| encode_frame(i, out));
        }
        Frame::Map(pairs) => {
            head(out, b'%', pairs.len());
            for (k, v) in pairs {
                encode_frame(k, out);
                encode_frame(v, out);
            }
        }
        Frame::Double(d) => line(out, b',', recached_engine::util::fmt_double(*d).as_bytes()),
        Frame::Bool(b) => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::BigNumber(b) => line(out, b'(', b),
    }
}

#[cfg(test)]
mod tests {
    use recached_engine::Reply;

    use super::*;

    fn b(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    #[test]
    fn commands_round_trip() {
        let cmds = vec![b(&["SET", "k", "v\r\nx"]), b(&["HSET", "h", "f", ""])];
        let bytes = encode_arrays(cmds.iter().map(|c| &c[..]));
        assert_eq!(decode_arrays(&bytes).unwrap(), cmds);
        assert_eq!(decode_arrays(b"").unwrap(), Vec::<Vec<Bytes>>::new());
        assert!(decode_arrays(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(decode_arrays(b":1\r\n").is_err(), "not an array");
        assert!(decode_arrays(b"*0\r\n").is_err(), "empty command");
        assert!(decode_arrays(b"*1\r\n:1\r\n").is_err(), "not bulk");
    }

    #[test]
    fn changes_keep_database_0_only() {
        let changes = vec![Change { db: 0, args: b(&["SET", "a", "1"]) }, Change { db: 3, args: b(&["DEL", "b"]) }];
        let back = decode_changes(&encode_changes(&changes)).unwrap();
        assert_eq!(back, vec![changes[0].clone()]);
    }

    #[test]
    fn outcomes_round_trip() {
        let ok = encode_settled(&Settled::Local(Reply::Array(vec![Reply::Ok, Reply::Int(2), Reply::Nil]))).unwrap();
        assert_eq!(
            decode_settled(Ok(&ok)),
            Settled::Hub(Frame::Array(vec![Frame::Simple("OK".into()), Frame::Int(2), Frame::Null]))
        );
        assert_eq!(encode_settled(&Settled::Local(Reply::err("WRONGTYPE x"))), Err("WRONGTYPE x".into()));
        assert_eq!(encode_settled(&Settled::Hub(Frame::Error("ERR no".into()))), Err("ERR no".into()));
        assert_eq!(encode_settled(&Settled::Refused("ERR gone".into())), Err("ERR gone".into()));
        assert_eq!(decode_settled(Err("ERR gone".into())), Settled::Refused("ERR gone".into()));
        let frames = Frame::Map(vec![
            (Frame::Bulk("a".into()), Frame::Double(1.5)),
            (Frame::Set(vec![Frame::Bool(true)]), Frame::Verbatim("txt:hi".into())),
            (Frame::BigNumber("123".into()), Frame::Push(vec![Frame::Null])),
        ]);
        let mut out = Vec::new();
        encode_frame(&frames, &mut out);
        assert_eq!(decode_settled(Ok(&out)), Settled::Hub(frames));
        assert!(matches!(decode_settled(Ok(b"$5\r\nab")), Settled::Refused(_)));
    }
}
