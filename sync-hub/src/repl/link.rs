//! The replication link's wire format after `+FULLRESYNC` / `+CONTINUE` (primary to
//! replica), written once here for both ends. `docs/replication.md` is its contract.
//!
//! ```text
//! frame := tag u8 | len u32le | payload[len]
//! 'S'   snapshot bytes: consecutive pieces of one streamed snapshot (the file format of
//!       `recached_engine::snapshot::stream`, header to end chunk); only after +FULLRESYNC
//! 'G'   change groups: one or more AOF records (`recached_engine::aof`), in offset order
//! 'P'   heartbeat: the primary's offset u64le | its failover epoch u64le | its
//!       monotonic clock in ms u64le (what the replica echoes for the failover lease)
//! ```
//! The replica answers on the same socket with RESP `REPLCONF ACK <offset> PING <ms>`
//! (`ms`: the clock of the newest heartbeat it received) after every batch it applied and
//! at least every [`HEARTBEAT`].

use std::time::Duration;

use bytes::{Buf, BytesMut};

/// Both ends send something at least this often, so a silent partition is noticed.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Largest frame accepted (a group carrying one huge value stays below).
pub const MAX_FRAME: usize = 1 << 31;

/// Frame tags.
pub const SNAPSHOT: u8 = b'S';
/// Change groups.
pub const GROUPS: u8 = b'G';
/// Heartbeat.
pub const PING: u8 = b'P';

/// Appends one frame.
pub fn frame(tag: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(5 + payload.len());
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A heartbeat frame.
pub fn ping(offset: u64, epoch: u64, clock_ms: u64) -> Vec<u8> {
    let mut payload = [0u8; 24];
    payload[..8].copy_from_slice(&offset.to_le_bytes());
    payload[8..16].copy_from_slice(&epoch.to_le_bytes());
    payload[16..].copy_from_slice(&clock_ms.to_le_bytes());
    let mut out = Vec::with_capacity(29);
    frame(PING, &payload, &mut out);
    out
}

/// A heartbeat's payload: (offset, epoch, clock ms).
pub fn parse_ping(payload: &[u8]) -> Option<(u64, u64, u64)> {
    if payload.len() != 24 {
        return None;
    }
    let word = |i: usize| payload[i..i + 8].try_into().ok().map(u64::from_le_bytes);
    Some((word(0)?, word(8)?, word(16)?))
}

/// Takes one complete frame from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn take_frame(buf: &mut BytesMut) -> Result<Option<(u8, BytesMut)>, String> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    if !matches!(tag, SNAPSHOT | GROUPS | PING) {
        return Err(format!("unknown frame tag 0x{:02x}", tag));
    }
    let len = u32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(format!("frame of {} bytes is over the limit", len));
    }
    if buf.len() < 5 + len {
        buf.reserve(5 + len - buf.len());
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some((tag, buf.split_to(len))))
}

/// The RESP encoding of a command (what the replica sends).
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// `REPLCONF ACK <offset> PING <ms>`.
pub fn ack(offset: u64, ping_ms: u64) -> Vec<u8> {
    command(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes(), b"PING", ping_ms.to_string().as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_their_bytes() {
        let mut out = Vec::new();
        frame(GROUPS, b"abc", &mut out);
        out.extend_from_slice(&ping(7, 2, 9));
        let mut buf = BytesMut::from(&out[..4]);
        assert_eq!(take_frame(&mut buf).unwrap(), None);
        buf.extend_from_slice(&out[4..]);
        let (tag, p) = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!((tag, &p[..]), (GROUPS, &b"abc"[..]));
        let (tag, p) = take_frame(&mut buf).unwrap().unwrap();
        assert_eq!(tag, PING);
        assert_eq!(parse_ping(&p), Some((7, 2, 9)));
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_tags_are_errors() {
        let mut buf = BytesMut::from(&b"X\0\0\0\0"[..]);
        assert!(take_frame(&mut buf).is_err());
    }
}
