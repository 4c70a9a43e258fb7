//! One WebSocket's outbound side. The hub writes a message straight into the TCP socket
//! when the socket can take it (non-blocking, under the socket's mutex: a fan-out to a
//! thousand sockets is a thousand `send`s in the committing thread, no task wake-ups),
//! and queues what it cannot take, bounded; the socket's task drains the queue when the
//! socket turns writable.
//!
//! The hub frames its data messages itself (server frames are unmasked: a 2–10 byte
//! header, then the payload), once per message however many sockets get it ([`frame`],
//! then [`Socket::send`]). tungstenite still reads the client's frames and writes the
//! control frames (pong, close): its writes arrive through [`Duplex`] into the same
//! ordered stream, so frames never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use recached_engine::sync::Close;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

/// Entries written per vectored write.
const MAX_IOV: usize = 64;

/// What writes accomplished, for the counters and the lag histogram.
#[derive(Debug, Default)]
pub struct Written {
    /// Whole messages written.
    pub messages: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Pushes written the moment they were sent (a lag of zero).
    pub immediate: u64,
    /// Seconds each push that was queued waited before being written.
    pub lags: Vec<f64>,
}

struct Entry {
    data: Bytes,
    at: Instant,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A push: counts against the bound.
    Push,
    /// A reply or catch-up the client asked for.
    Solicited,
    /// A control frame from tungstenite.
    Control,
}

#[derive(Default)]
struct Out {
    queue: VecDeque<Entry>,
    /// Messages waiting for the AOF (the offset they need), in order, before `queue` gets
    /// them; counted in `bytes`, `pushed` and `solicited` like queued ones.
    held: VecDeque<(u64, Entry)>,
    /// The front entry is partly written: it must be finished before anything else.
    partial: bool,
    bytes: usize,
    pushed: usize,
    solicited: usize,
    close: Option<Close>,
    dead: bool,
}

impl Out {
    fn add(&mut self, e: &Entry, sign: bool) {
        let n = e.data.len();
        let f = |v: &mut usize| if sign { *v += n } else { *v -= n };
        f(&mut self.bytes);
        match e.kind {
            Kind::Push => f(&mut self.pushed),
            Kind::Solicited => f(&mut self.solicited),
            Kind::Control => {}
        }
    }

    fn push_back(&mut self, e: Entry) {
        self.add(&e, true);
        self.queue.push_back(e);
    }

    fn clear_pushes(&mut self) {
        let keep = if self.partial { self.pop_front() } else { None };
        while self.pop_front().is_some() {}
        while let Some((_, e)) = self.held.pop_front() {
            self.add(&e, false);
        }
        self.partial = keep.is_some();
        if let Some(k) = keep {
            self.push_back(k);
        }
    }

    fn pop_front(&mut self) -> Option<Entry> {
        let e = self.queue.pop_front()?;
        self.add(&e, false);
        Some(e)
    }
}

/// One socket's outbound side, shared by the hub (producer) and the socket's task.
pub struct Socket {
    /// `writer`'s descriptor, for [`Socket::write_now`]: kept beside `out`, since reaching
    /// it through `writer` is one more cold cache line per socket in a fan-out.
    fd: RawFd,
    out: Mutex<Out>,
    writer: OwnedWriteHalf,
    notify: Notify,
}

/// The header of a server data frame with a payload of `n` bytes (FIN, opcode binary, no
/// mask) and its length.
fn header(n: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x82;
    if n < 126 {
        h[1] = n as u8;
        (h, 2)
    } else if n <= 0xffff {
        h[1] = 126;
        h[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(n as u64).to_be_bytes());
        (h, 10)
    }
}

/// A server data frame: FIN, opcode binary, no mask. The fan-out frames a message once
/// and sends the same bytes to every socket that gets it.
pub fn frame(payload: &[u8]) -> Bytes {
    let (h, n) = header(payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

impl Socket {
    /// The outbound side of a socket writing to `writer`.
    pub fn new(writer: OwnedWriteHalf) -> Socket {
        let fd = AsRef::<tokio::net::TcpStream>::as_ref(&writer).as_raw_fd();
        Socket { fd, out: Mutex::new(Out::default()), writer, notify: Notify::new() }
    }

    /// One non-blocking `send(2)` straight on the descriptor, for a socket with nothing
    /// queued. Through tokio (`try_write`) it would first read the socket's readiness
    /// state, a separate allocation that a fan-out to a thousand sockets finds cold in the
    /// cache on every one of them (about a fifth of the hub's user-space CPU in a fan-out,
    /// `perf record` under benches/fanout.rs). When it would block, tokio's readiness is
    /// left stale at worst: the socket task's next write through tokio finds that out and
    /// waits for the socket to turn writable.
    fn write_now(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `fd` is `writer`'s, open as long as `self` is; `buf` is valid for
            // `buf.len()` bytes. MSG_NOSIGNAL: a closed peer is an EPIPE, not a SIGPIPE.
            let n = unsafe { libc::send(self.fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what the socket takes now; queues the rest (or all of it when something is
    /// queued already, to keep the order).
    fn enqueue(&self, o: &mut Out, data: &Bytes, kind: Kind, w: &mut Written) {
        if !o.queue.is_empty() || o.dead {
            return self.queue(o, data.clone(), kind);
        }
        match self.write_now(data) {
            Ok(n) => self.wrote(o, n, data.len(), kind, w, || data.slice(n..)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.queue(o, data.clone(), kind),
            Err(_) => self.fail(o),
        }
    }

    /// Accounts for `n` of a message's `len` bytes written at once; queues the rest.
    fn wrote(&self, o: &mut Out, n: usize, len: usize, kind: Kind, w: &mut Written, rest: impl FnOnce() -> Bytes) {
        w.bytes += n as u64;
        if n == len {
            w.messages += 1;
            if kind == Kind::Push {
                w.immediate += 1;
            }
            return;
        }
        o.partial = n > 0;
        self.queue(o, rest(), kind);
    }

    fn queue(&self, o: &mut Out, data: Bytes, kind: Kind) {
        let wake = o.queue.is_empty();
        o.push_back(Entry { data, at: Instant::now(), kind });
        if wake {
            self.notify.notify_one();
        }
    }

    fn fail(&self, o: &mut Out) {
        o.dead = true;
        self.notify.notify_one();
    }

    /// Sends one data message, `frame` as built by [`frame`]. `push`: it counts against
    /// `max_buffer` while queued; past the bound the queue is dropped (but a partly written
    /// frame, to keep the stream valid) and the socket is closed with 4008, and `false`
    /// returned.
    ///
    /// When nothing is queued the frame goes straight to the socket in one `send`; only
    /// what the socket cannot take now is queued (sharing the frame's bytes, not a copy).
    pub fn send(&self, frame: &Bytes, push: bool, max_buffer: usize, w: &mut Written) -> bool {
        let mut o = self.lock();
        if o.close.is_some() || o.dead {
            return true;
        }
        if push && !o.queue.is_empty() && o.pushed + frame.len() > max_buffer {
            return self.slow_consumer(o, max_buffer);
        }
        let kind = if push { Kind::Push } else { Kind::Solicited };
        self.enqueue(&mut o, frame, kind, w);
        true
    }

    fn slow_consumer(&self, mut o: MutexGuard<'_, Out>, max_buffer: usize) -> bool {
        o.clear_pushes();
        o.close = Some(Close::slow_consumer(max_buffer));
        drop(o);
        self.notify.notify_one();
        false
    }

    /// [`Socket::send`] for a message that may leave only once the AOF holds offset `need`
    /// (`ready` says whether it does now). Held messages keep their order and count
    /// against the same bounds; [`Socket::release`] sends them. Returns whether the socket
    /// is still open and whether the message was held.
    pub fn send_gated(&self, frame: &Bytes, push: bool, need: u64, ready: bool, max_buffer: usize, w: &mut Written) -> (bool, bool) {
        {
            let mut o = self.lock();
            if o.close.is_some() || o.dead {
                return (true, false);
            }
            if !o.held.is_empty() || !ready {
                if push && o.pushed + frame.len() > max_buffer {
                    return (self.slow_consumer(o, max_buffer), false);
                }
                let kind = if push { Kind::Push } else { Kind::Solicited };
                let e = Entry { data: frame.clone(), at: Instant::now(), kind };
                o.add(&e, true);
                o.held.push_back((need, e));
                return (true, true);
            }
        }
        (self.send(frame, push, max_buffer, w), false)
    }

    /// Sends the held messages `ready(need)` now allows, in order. Returns whether some
    /// are still held.
    pub fn release(&self, ready: impl Fn(u64) -> bool, w: &mut Written) -> bool {
        let mut o = self.lock();
        let mut released = false;
        while o.held.front().is_some_and(|(need, _)| ready(*need)) {
            let Some((_, e)) = o.held.pop_front() else { break };
            o.add(&e, false);
            released = true;
            if o.close.is_some() || o.dead {
                continue;
            }
            self.enqueue(&mut o, &e.data, e.kind, w);
        }
        let still = !o.held.is_empty();
        drop(o);
        if released {
            // The socket's task may wait with reading off until its replies are out (held
            // ones count): let it look again, even when they went straight to the socket.
            self.notify.notify_one();
        }
        still
    }

    /// Bytes tungstenite writes (control frames), also while closing.
    fn send_raw(&self, data: &[u8]) {
        let mut o = self.lock();
        if o.dead {
            return;
        }
        let mut w = Written::default();
        self.enqueue(&mut o, &Bytes::copy_from_slice(data), Kind::Control, &mut w);
    }

    /// Asks the socket to close; later sends are dropped. The first close wins.
    pub fn close(&self, c: Close) {
        let mut o = self.lock();
        if o.close.is_none() {
            o.close = Some(c);
        }
        drop(o);
        self.notify.notify_one();
    }

    /// The close asked for, if any.
    pub fn closing(&self) -> Option<Close> {
        self.lock().close.clone()
    }

    /// Whether a write failed (the peer is gone).
    pub fn is_dead(&self) -> bool {
        self.lock().dead
    }

    /// Bytes queued: all, and the pushes among them.
    pub fn queued(&self) -> (usize, usize) {
        let o = self.lock();
        (o.bytes, o.pushed)
    }

    /// Whether replies the client asked for are still queued (its next message waits).
    pub fn replies_pending(&self) -> bool {
        self.lock().solicited > 0
    }

    /// Whether nothing is queued.
    pub fn is_idle(&self) -> bool {
        let o = self.lock();
        o.queue.is_empty() || o.dead
    }

    /// Whether messages wait for the AOF.
    pub fn has_held(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// Writes queued entries until the queue is empty (`Ok(true)`) or the socket would
    /// block (`Ok(false)`).
    fn write_queued(&self, w: &mut Written) -> io::Result<bool> {
        let mut o = self.lock();
        if o.dead {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        while !o.queue.is_empty() {
            let n = {
                let slices: Vec<IoSlice<'_>> = o.queue.iter().take(MAX_IOV).map(|e| IoSlice::new(&e.data)).collect();
                match self.writer.try_write_vectored(&slices) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => Err(e),
                }
            };
            let mut n = match n {
                Ok(n) => n,
                Err(e) => {
                    o.dead = true;
                    return Err(e);
                }
            };
            w.bytes += n as u64;
            let now = Instant::now();
            while n > 0 {
                let Some(front) = o.queue.front_mut() else { break };
                if n < front.data.len() {
                    // Partly written: the rest stays at the front.
                    front.data = front.data.slice(n..);
                    let kind = front.kind;
                    o.bytes -= n;
                    match kind {
                        Kind::Push => o.pushed -= n,
                        Kind::Solicited => o.solicited -= n,
                        Kind::Control => {}
                    }
                    o.partial = true;
                    break;
                }
                n -= front.data.len();
                if let Some(e) = o.pop_front() {
                    w.messages += 1;
                    if e.kind == Kind::Push {
                        w.lags.push(now.duration_since(e.at).as_secs_f64());
                    }
                }
                o.partial = false;
            }
        }
        Ok(true)
    }

    /// One step of the socket's writer: waits until something is queued, or until the
    /// socket is writable and writes what it takes. Cancel-safe.
    pub async fn write_step(&self, w: &mut Written) -> io::Result<()> {
        if self.is_idle() {
            if self.is_dead() {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            self.notify.notified().await;
            return Ok(());
        }
        self.writer.writable().await?;
        self.write_queued(w).map(|_| ())
    }

    /// Writes everything queued (used while closing).
    pub async fn drain(&self, w: &mut Written) -> io::Result<()> {
        loop {
            if self.write_queued(w)? {
                return Ok(());
            }
            self.writer.writable().await?;
        }
    }
}

/// The stream tungstenite runs on: reads from the TCP socket, writes into the socket's
/// ordered outbound stream (so its control frames take their place after the data
/// frames already sent).
pub struct Duplex {
    read: OwnedReadHalf,
    socket: Arc<Socket>,
}

impl Duplex {
    /// A stream reading `read` and writing through `socket`.
    pub fn new(read: OwnedReadHalf, socket: Arc<Socket>) -> Duplex {
        Duplex { read, socket }
    }
}

impl AsyncRead for Duplex {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.socket.send_raw(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_headers() {
        assert_eq!(&frame(b"hi")[..], b"\x82\x02hi");
        let f = frame(&[0u8; 200]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 200]);
        assert_eq!(f.len(), 204);
        let f = frame(&vec![0u8; 70_000]);
        assert_eq!(&f[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
    }
}
