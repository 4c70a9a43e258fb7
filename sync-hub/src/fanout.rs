//! Parallel fan-out writes. One committed change for a thousand subscribers is a thousand
//! socket writes, and on loopback each `write` also runs the receiver's side of TCP, so the
//! last subscriber waits for the whole loop. The sockets are independent: [`Writers`]
//! splits a large batch of sends over a few threads (the committing thread takes one
//! part), each connection's sends staying in one part and in order, and returns when all
//! are written or queued. Small batches (a reply, a few subscribers) are written in place.
//!
//! The caller holds the engine lock throughout, so the next batch's sends still follow
//! these on every socket; the threads only ever touch [`Socket`]s, never the engine.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use bytes::Bytes;
use recached_engine::sync::ConnId;

use crate::socket::{Socket, Written};

/// Fewer sends than this are written by the calling thread alone: handing work to another
/// thread costs a wake-up, about what a few socket writes do.
const PARALLEL_MIN: usize = 64;

/// Most writer threads `0` (one per core) picks.
const AUTO_MAX: usize = 4;

/// One message for one socket.
pub struct Send {
    /// The connection (its sends stay on one thread, in order).
    pub conn: ConnId,
    /// Its socket.
    pub socket: Arc<Socket>,
    /// The payload (framed by the socket).
    pub data: Bytes,
    /// Whether it counts against the socket's bound.
    pub push: bool,
}

/// What a part of the sends came to.
#[derive(Default)]
pub struct Outcome {
    /// Bytes and messages written, lags.
    pub written: Written,
    /// Sockets closed as slow consumers.
    pub slow: u64,
}

impl Outcome {
    fn merge(&mut self, o: Outcome) {
        self.written.messages += o.written.messages;
        self.written.bytes += o.written.bytes;
        self.written.lags.extend(o.written.lags);
        self.slow += o.slow;
    }
}

struct Job {
    sends: Vec<Send>,
    max_buffer: usize,
    done: Sender<Outcome>,
}

/// The fan-out writer threads (none when configured for one thread).
pub struct Writers {
    workers: Vec<Sender<Job>>,
}

impl Writers {
    /// `threads` writers in all, counting the caller's thread; 0 picks one per core, up
    /// to four. Threads that cannot be started are simply not used.
    pub fn new(threads: usize) -> Writers {
        let threads = match threads {
            0 => thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(AUTO_MAX),
            n => n,
        };
        let mut workers = Vec::new();
        for i in 1..threads {
            let (tx, rx) = mpsc::channel::<Job>();
            if thread::Builder::new()
                .name(format!("recached-fanout-{i}"))
                .spawn(move || work(rx))
                .is_ok()
            {
                workers.push(tx);
            }
        }
        Writers { workers }
    }

    /// Threads that write, the caller's included.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Writes (or queues) every send, on several threads when there are many.
    pub fn write(&self, sends: Vec<Send>, max_buffer: usize) -> Outcome {
        if self.workers.is_empty() || sends.len() < PARALLEL_MIN {
            return write_all(sends, max_buffer);
        }
        let n = self.threads();
        let mut parts: Vec<Vec<Send>> = (0..n)
            .map(|_| Vec::with_capacity(sends.len() / n + 1))
            .collect();
        for s in sends {
            parts[(s.conn % n as u64) as usize].push(s);
        }
        let mine = parts.remove(0);
        let (done, results) = mpsc::channel();
        let mut waiting = 0;
        let mut out = Outcome::default();
        for (w, part) in self.workers.iter().zip(parts) {
            let job = Job {
                sends: part,
                max_buffer,
                done: done.clone(),
            };
            match w.send(job) {
                Ok(()) => waiting += 1,
                // The thread is gone: this thread writes its part too.
                Err(mpsc::SendError(job)) => out.merge(write_all(job.sends, max_buffer)),
            }
        }
        drop(done);
        out.merge(write_all(mine, max_buffer));
        for _ in 0..waiting {
            match results.recv() {
                Ok(o) => out.merge(o),
                Err(_) => break, // a writer died mid-part; its sockets saw what it wrote
            }
        }
        out
    }
}

fn work(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let _ = job.done.send(write_all(job.sends, job.max_buffer));
    }
}

fn write_all(sends: Vec<Send>, max_buffer: usize) -> Outcome {
    let mut out = Outcome::default();
    for s in sends {
        if !s.socket.send(&s.data, s.push, max_buffer, &mut out.written) {
            out.slow += 1;
            tracing::info!(
                conn = s.conn,
                limit = max_buffer,
                "closing slow sync consumer"
            );
        }
    }
    out
}
