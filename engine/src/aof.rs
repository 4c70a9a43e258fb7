//! The append-only file's formats: the records of an increment file and the manifest that
//! names a base and its increments (Redis 7's multi-part AOF). The host owns the files,
//! the writes and the fsyncs; this module only encodes and decodes, defensively, so the
//! decoders can be fuzzed.
//!
//! # Records
//! An increment file is a sequence of records, each one change group in the canonical
//! change form (exactly what the sync stream and replicas carry), so replaying it is
//! deterministic: `SPOP` is already `SREM`, `EXPIRE` already `PEXPIREAT`, `INCRBYFLOAT`
//! already `SET`, an eviction already `DEL`.
//!
//! ```text
//! record  := len varint | crc u32le (CRC-32 of the len bytes and the body) | body[len]
//! body    := 1 group | 2 stream
//! group   := offset varint | n varint | change*n | d varint | dedupe*d
//! change  := db varint | argc varint | (len varint | bytes)*argc
//! dedupe  := 1 put:    subject str | client str | seq | offset | reply str | floor | used
//!          | 2 forget: subject str | client str
//! stream  := replid str | offset varint      (a new stream id from here on: a restart)
//! str     := len varint | bytes;  varint := unsigned LEB128, at most 10 bytes
//! ```
//!
//! A record cut short by the end of the file ([`Decoded::Incomplete`]) is what a crash in
//! the middle of a write leaves; the host may drop it (`aof-load-truncated`). So is a tail
//! of zero bytes (what some file systems leave after a power loss). A complete record whose
//! CRC or body is wrong is damage ([`AofError`]), never guessed around; and a "cut short"
//! record followed by whole records is damage too (a flipped length), found by
//! [`scan`].
//!
//! # Manifest
//! Text, one line per file, as Redis 7 writes it:
//! `file appendonly.aof.1.base.rcs seq 1 type b` (`b` base, `i` increment, `h` history).
//! At most one base; increments in increasing `seq`, replayed in that order after the base.

use bytes::Bytes;
use thiserror::Error;

use crate::change::{Change, ChangeGroup};
use crate::snapshot::Crc32;
use crate::sync::{DedupeChange, DedupeEntry};

/// Largest record body accepted (a group of many big values is still far below).
pub const MAX_RECORD: u64 = 1 << 36;

/// Why a record or a manifest could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AofError {
    /// A record's body does not match its checksum.
    #[error("checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// In the record.
        stored: u32,
        /// Of the body.
        computed: u32,
    },
    /// The body is not a valid record.
    #[error("bad record: {0}")]
    Corrupt(&'static str),
    /// The manifest is not valid.
    #[error("bad manifest line {line}: {what}")]
    Manifest {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

/// One record of an increment file.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A committed change group, with the dedupe-memory changes its writes made.
    Group {
        /// The group.
        group: ChangeGroup,
        /// Dedupe changes (sync writes), in order.
        dedupe: Vec<DedupeChange>,
    },
    /// The stream has a new id from this offset on.
    Stream {
        /// The new replication id.
        replid: String,
        /// The offset it starts at (the last group before it).
        offset: u64,
    },
}

/// What [`decode`] found at the start of its input.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A record and the bytes it took.
    Record(Record, usize),
    /// The input ends inside a record (or is empty).
    Incomplete,
}

const TAG_GROUP: u8 = 1;
const TAG_STREAM: u8 = 2;
const DEDUPE_PUT: u8 = 1;
const DEDUPE_FORGET: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Wraps a body: length, CRC (of the length's bytes and the body), body.
fn frame(body: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    put_varint(out, body.len() as u64);
    let mut crc = Crc32::new();
    crc.update(&out[start..]);
    crc.update(body);
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out.extend_from_slice(body);
}

fn group_body(group: &ChangeGroup, dedupe: &[DedupeChange], body: &mut Vec<u8>) {
    body.push(TAG_GROUP);
    put_varint(body, group.offset);
    put_varint(body, group.changes.len() as u64);
    for c in &group.changes {
        put_varint(body, c.db as u64);
        put_varint(body, c.args.len() as u64);
        for a in &c.args {
            put_str(body, a);
        }
    }
    put_varint(body, dedupe.len() as u64);
    for d in dedupe {
        match d {
            DedupeChange::Put(e) => {
                body.push(DEDUPE_PUT);
                put_str(body, e.subject.as_bytes());
                put_str(body, &e.client);
                put_varint(body, e.seq);
                put_varint(body, e.offset);
                put_str(body, &e.reply);
                put_varint(body, e.floor);
                put_varint(body, e.used);
            }
            DedupeChange::Forget { subject, client } => {
                body.push(DEDUPE_FORGET);
                put_str(body, subject.as_bytes());
                put_str(body, client);
            }
        }
    }
}

/// Appends the record of a committed group (and the dedupe changes it made).
pub fn encode_group(group: &ChangeGroup, dedupe: &[DedupeChange], out: &mut Vec<u8>) {
    // The common case (a small group) builds its body in place after a one-byte length.
    let mut body = Vec::with_capacity(64);
    group_body(group, dedupe, &mut body);
    out.reserve(varint_len(body.len() as u64) + 4 + body.len());
    frame(&body, out);
}

/// Appends a stream record: `replid` is the stream's id from `offset` on.
pub fn encode_stream(replid: &str, offset: u64, out: &mut Vec<u8>) {
    let mut body = vec![TAG_STREAM];
    put_str(&mut body, replid.as_bytes());
    put_varint(&mut body, offset);
    frame(&body, out);
}

/// A cursor over a record body, zero-copy over the input `Bytes`.
struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, AofError> {
        if self.pos >= self.end {
            return Err(AofError::Corrupt("body ends early"));
        }
        self.pos += 1;
        Ok(self.buf[self.pos - 1])
    }

    fn varint(&mut self) -> Result<u64, AofError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(AofError::Corrupt("varint overflows 64 bits"));
            }
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(AofError::Corrupt("varint longer than 10 bytes"))
    }

    /// A count of items that each take at least one byte: never more than the bytes left,
    /// so no declared count makes the decoder reserve memory the input does not back.
    fn count(&mut self) -> Result<usize, AofError> {
        let n = self.varint()?;
        if n > (self.end - self.pos) as u64 {
            return Err(AofError::Corrupt("count larger than the record"));
        }
        Ok(n as usize)
    }

    fn bytes(&mut self) -> Result<Bytes, AofError> {
        let n = self.varint()?;
        if n > (self.end - self.pos) as u64 {
            return Err(AofError::Corrupt("string longer than the record"));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(self.buf.slice(start..self.pos))
    }

    fn string(&mut self) -> Result<String, AofError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| AofError::Corrupt("string is not UTF-8"))
    }
}

/// Reads one record from the start of `buf`. Strings of the record are slices of `buf`.
pub fn decode(buf: &Bytes) -> Result<Decoded, AofError> {
    // The length varint, which may itself be cut short.
    let mut len = 0u64;
    let mut pos = 0;
    loop {
        let Some(&b) = buf.get(pos) else { return Ok(Decoded::Incomplete) };
        if pos == 9 && b > 1 {
            return Err(AofError::Corrupt("length varint overflows"));
        }
        len |= ((b & 0x7f) as u64) << (7 * pos);
        pos += 1;
        if b & 0x80 == 0 {
            break;
        }
        if pos == 10 {
            return Err(AofError::Corrupt("length varint longer than 10 bytes"));
        }
    }
    if len == 0 || len > MAX_RECORD {
        return Err(AofError::Corrupt("record length out of range"));
    }
    let body_start = pos + 4;
    let Some(body_end) = body_start.checked_add(len as usize).filter(|&e| e <= buf.len()) else {
        return Ok(Decoded::Incomplete);
    };
    let stored = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
    let mut crc = Crc32::new();
    crc.update(&buf[..pos]);
    crc.update(&buf[body_start..body_end]);
    let computed = crc.finish();
    if stored != computed {
        return Err(AofError::Checksum { stored, computed });
    }
    let mut r = Reader { buf, pos: body_start, end: body_end };
    let record = match r.byte()? {
        TAG_GROUP => {
            let offset = r.varint()?;
            let n = r.count()?;
            let mut changes = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let db = r.varint()?;
                let db = u16::try_from(db).map_err(|_| AofError::Corrupt("database index out of range"))?;
                let argc = r.count()?;
                if argc == 0 {
                    return Err(AofError::Corrupt("a change with no arguments"));
                }
                let mut args = Vec::with_capacity(argc.min(1024));
                for _ in 0..argc {
                    args.push(r.bytes()?);
                }
                changes.push(Change { db, args });
            }
            let d = r.count()?;
            let mut dedupe = Vec::with_capacity(d.min(1024));
            for _ in 0..d {
                dedupe.push(match r.byte()? {
                    DEDUPE_PUT => DedupeChange::Put(DedupeEntry {
                        subject: r.string()?,
                        client: r.bytes()?,
                        seq: r.varint()?,
                        offset: r.varint()?,
                        reply: r.bytes()?,
                        floor: r.varint()?,
                        used: r.varint()?,
                    }),
                    DEDUPE_FORGET => DedupeChange::Forget { subject: r.string()?, client: r.bytes()? },
                    _ => return Err(AofError::Corrupt("unknown dedupe change")),
                });
            }
            Record::Group { group: ChangeGroup { offset, changes }, dedupe }
        }
        TAG_STREAM => Record::Stream { replid: r.string()?, offset: r.varint()? },
        _ => return Err(AofError::Corrupt("unknown record tag")),
    };
    if r.pos != body_end {
        return Err(AofError::Corrupt("bytes left in the record"));
    }
    Ok(Decoded::Record(record, body_end))
}

/// What an increment file holds, read to its end.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records, in order.
    pub records: Vec<Record>,
    /// Bytes of whole records (where a truncated tail starts, if any).
    pub valid_len: usize,
    /// The file ends inside a record.
    pub truncated: bool,
}

/// A torn write leaves at most what one write put out; a "torn" tail longer than this is
/// taken for damage rather than searched for whole records.
const MAX_TORN_TAIL: usize = 64 << 20;

/// Whether a whole, valid record starts anywhere after `from` (a record that seemed cut
/// short by the end of the file had a damaged length).
fn record_follows(buf: &Bytes, from: usize) -> bool {
    (from + 1..buf.len()).any(|q| matches!(decode(&buf.slice(q..)), Ok(Decoded::Record(..))))
}

/// One step of reading an increment file at `pos`: the next record, the end, or a torn
/// tail (a record cut short by the end of the file, or zeros) that starts at `pos`.
#[derive(Debug)]
pub enum Step {
    /// A record and where the next one starts.
    Record(Record, usize),
    /// The file ends here.
    End,
    /// The rest of the file (from `pos`) is a torn last write.
    Torn,
}

/// Reads the record at `pos` of an increment file held in `buf`. Damage is an error; a
/// record cut short by the end of the input (or a tail of zeros) is [`Step::Torn`], unless
/// whole records follow it (then its length was damaged).
pub fn step(buf: &Bytes, pos: usize) -> Result<Step, AofError> {
    if pos >= buf.len() {
        return Ok(Step::End);
    }
    let zeros = || buf[pos..].iter().all(|&b| b == 0);
    match decode(&buf.slice(pos..)) {
        Ok(Decoded::Record(r, n)) => Ok(Step::Record(r, pos + n)),
        Ok(Decoded::Incomplete) | Err(_) if zeros() => Ok(Step::Torn),
        Ok(Decoded::Incomplete) => {
            if buf.len() - pos > MAX_TORN_TAIL || record_follows(buf, pos) {
                return Err(AofError::Corrupt("a record runs past the end of the file, but whole records follow it: its length is damaged"));
            }
            Ok(Step::Torn)
        }
        Err(e) => Err(e),
    }
}

/// Reads every record of an increment file. Damage anywhere is an error with its byte
/// offset; a record cut by the end of the input (or a tail of zeros) is reported in
/// [`Scan::truncated`].
pub fn scan(buf: &Bytes) -> Result<Scan, (usize, AofError)> {
    let mut out = Scan::default();
    let mut pos = 0;
    loop {
        match step(buf, pos).map_err(|e| (pos, e))? {
            Step::Record(r, next) => {
                out.records.push(r);
                pos = next;
            }
            Step::End => break,
            Step::Torn => {
                out.truncated = true;
                break;
            }
        }
    }
    out.valid_len = pos;
    Ok(out)
}

/// The kind of a file in the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The base snapshot.
    Base,
    /// An increment.
    Incr,
    /// A file being replaced, kept until the switch is durable (ignored on load).
    History,
}

impl FileKind {
    fn letter(self) -> char {
        match self {
            FileKind::Base => 'b',
            FileKind::Incr => 'i',
            FileKind::History => 'h',
        }
    }
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// The name inside the AOF directory.
    pub name: String,
    /// Sequence number.
    pub seq: u64,
    /// What it is.
    pub kind: FileKind,
}

/// The manifest of a multi-part AOF.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Manifest {
    /// The files, in the order they are written.
    pub files: Vec<ManifestFile>,
}

/// Whether a name is safe inside the AOF directory: no separators, no `..`, printable.
pub fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\' && b != b'"' && b != b'\'')
}

impl Manifest {
    /// The base file, if any.
    pub fn base(&self) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.kind == FileKind::Base)
    }

    /// The increments, in replay order.
    pub fn incrs(&self) -> impl Iterator<Item = &ManifestFile> {
        self.files.iter().filter(|f| f.kind == FileKind::Incr)
    }

    /// The increment new records go to (the last one).
    pub fn last_incr(&self) -> Option<&ManifestFile> {
        self.incrs().last()
    }

    /// The text form.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            out.push_str(&format!("file {} seq {} type {}\n", f.name, f.seq, f.kind.letter()));
        }
        out
    }

    /// Parses the text form, strictly: every line `file NAME seq N type b|i|h`, at most one
    /// base, increments in increasing `seq`, safe and distinct names.
    pub fn parse(text: &str) -> Result<Manifest, AofError> {
        let mut files: Vec<ManifestFile> = Vec::new();
        let mut last_incr = None;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let bad = |what: &str| AofError::Manifest { line: line_no, what: what.to_string() };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            if words.len() != 6 || words[0] != "file" || words[2] != "seq" || words[4] != "type" {
                return Err(bad("expected 'file NAME seq N type b|i|h'"));
            }
            let name = words[1];
            if !safe_file_name(name) {
                return Err(bad("unsafe file name"));
            }
            let seq: u64 = words[3].parse().map_err(|_| bad("seq is not a number"))?;
            let kind = match words[5] {
                "b" => FileKind::Base,
                "i" => FileKind::Incr,
                "h" => FileKind::History,
                _ => return Err(bad("unknown file type")),
            };
            if files.iter().any(|f| f.name == name) {
                return Err(bad("a file is listed twice"));
            }
            match kind {
                FileKind::Base if files.iter().any(|f| f.kind == FileKind::Base) => return Err(bad("more than one base")),
                FileKind::Incr => {
                    if last_incr.is_some_and(|l| seq <= l) {
                        return Err(bad("increments out of order"));
                    }
                    last_incr = Some(seq);
                }
                _ => {}
            }
            files.push(ManifestFile { name: name.to_string(), seq, kind });
        }
        Ok(Manifest { files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn group(offset: u64) -> ChangeGroup {
        ChangeGroup {
            offset,
            changes: vec![
                Change { db: 0, args: vec![b("SET"), b("k"), Bytes::from(vec![0u8, 255, 13, 10]), b("PXAT"), b("1700000000000")] },
                Change { db: 300, args: vec![b("DEL"), b("")] },
            ],
        }
    }

    #[test]
    fn records_roundtrip() {
        let dedupe = vec![
            DedupeChange::Put(DedupeEntry { subject: "alice".into(), client: b("c1"), seq: 7, offset: 9, reply: b("+OK\r\n"), floor: 2, used: 40 }),
            DedupeChange::Forget { subject: "bob".into(), client: b("@tab") },
        ];
        let mut out = Vec::new();
        encode_group(&group(1 << 40), &dedupe, &mut out);
        encode_stream("f00d", 77, &mut out);
        encode_group(&group(1), &[], &mut out);
        let buf = Bytes::from(out);
        let s = scan(&buf).unwrap();
        assert!(!s.truncated);
        assert_eq!(s.valid_len, buf.len());
        assert_eq!(
            s.records,
            vec![
                Record::Group { group: group(1 << 40), dedupe },
                Record::Stream { replid: "f00d".into(), offset: 77 },
                Record::Group { group: group(1), dedupe: vec![] },
            ]
        );
    }

    #[test]
    fn truncation_and_damage_are_told_apart() {
        let mut out = Vec::new();
        encode_group(&group(1), &[], &mut out);
        let one = out.len();
        encode_group(&group(2), &[], &mut out);
        for cut in one + 1..out.len() {
            let s = scan(&Bytes::copy_from_slice(&out[..cut])).unwrap();
            assert!(s.truncated, "cut at {cut}");
            assert_eq!((s.records.len(), s.valid_len), (1, one));
        }
        let mut bad = out.clone();
        bad[one + 8] ^= 1;
        let (at, e) = scan(&Bytes::from(bad)).unwrap_err();
        assert_eq!(at, one);
        assert!(matches!(e, AofError::Checksum { .. }));
        // A length flipped to run past the end, with a whole record after it: damage, not
        // a torn write.
        let mut three = out.clone();
        encode_group(&group(3), &[], &mut three);
        let mut flipped = three.clone();
        flipped[one] |= 0x7f;
        flipped.insert(one + 1, 0x7f);
        assert!(scan(&Bytes::from(flipped)).is_err(), "a damaged length is not a torn tail");
        // A zero-filled tail (a power loss on some file systems) is torn, not damage.
        let mut zeros = out.clone();
        zeros.extend_from_slice(&[0; 512]);
        let s = scan(&Bytes::from(zeros)).unwrap();
        assert!(s.truncated && s.records.len() == 2 && s.valid_len == out.len());
        // A forged length never makes the decoder read or reserve beyond the input.
        let mut forged = Vec::new();
        put_varint(&mut forged, u32::MAX as u64);
        forged.extend_from_slice(&[0; 8]);
        assert!(scan(&Bytes::from(forged)).unwrap().truncated);
    }

    #[test]
    fn manifest_roundtrip_and_strictness() {
        let m = Manifest {
            files: vec![
                ManifestFile { name: "appendonly.aof.2.base.rcs".into(), seq: 2, kind: FileKind::Base },
                ManifestFile { name: "appendonly.aof.2.incr.aof".into(), seq: 2, kind: FileKind::Incr },
                ManifestFile { name: "appendonly.aof.3.incr.aof".into(), seq: 3, kind: FileKind::Incr },
            ],
        };
        let text = m.encode();
        assert_eq!(text.lines().next().unwrap(), "file appendonly.aof.2.base.rcs seq 2 type b");
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        assert_eq!(m.last_incr().unwrap().seq, 3);
        for bad in [
            "file a seq 1 type x\n",
            "file ../x seq 1 type i\n",
            "file a seq one type i\n",
            "file a seq 2 type i\nfile b seq 1 type i\n",
            "file a seq 1 type b\nfile b seq 2 type b\n",
            "file a seq 1 type i\nfile a seq 2 type i\n",
            "files a\n",
        ] {
            assert!(Manifest::parse(bad).is_err(), "{bad:?}");
        }
    }
}
