//! Serving new connections while a script holds the runtime thread.
//!
//! A script that wrote and then runs past `busy-reply-threshold` cannot move to a thread
//! (its first writes happened on the runtime thread), so the runtime serves no one until it
//! ends. This thread then accepts on a duplicate of every RESP listener and answers what
//! Redis answers during a busy script: `-BUSY` to everything, `-UNKILLABLE` to SCRIPT KILL,
//! and SHUTDOWN NOSAVE exits. When the script ends, the connections it accepted, with any
//! input not yet answered, go back to the runtime ([`Rescue::take`]), which serves them as
//! any other.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use recached_engine::resp::frame::{take_command, Limits};

use super::{ScriptWatch, BUSY_EVAL};

/// A connection accepted during a busy script: the socket, the peer, unanswered input.
pub type Handback = (TcpStream, SocketAddr, Vec<u8>);

/// The rescue's state in the watch.
#[derive(Debug, Default)]
pub struct Rescue {
    /// The RESP listeners' descriptors (set once at bind).
    listeners: OnceLock<Vec<i32>>,
    running: AtomicBool,
    handback: Mutex<Vec<Handback>>,
    /// Wakes the accept loops when connections are handed back.
    pub ready: tokio::sync::Notify,
}

impl Rescue {
    /// Records the RESP listeners (their descriptors stay open for the hub's life).
    pub fn set_listeners(&self, fds: Vec<i32>) {
        let _ = self.listeners.set(fds);
    }

    /// The connections accepted during the last busy script.
    pub fn take(&self) -> Vec<Handback> {
        std::mem::take(&mut *self.handback.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Starts the rescue thread for the script that runs now (once per script).
pub fn start(watch: &Arc<ScriptWatch>) {
    let Some(fds) = watch.rescue.listeners.get().cloned() else {
        return;
    };
    if watch.rescue.running.swap(true, Ordering::AcqRel) {
        return;
    }
    tracing::warn!("a script that wrote is past busy-reply-threshold on the runtime thread: new connections get -BUSY until it ends");
    let w = watch.clone();
    let spawned = std::thread::Builder::new()
        .name("script-rescue".into())
        .spawn(move || {
            run(&w, &fds);
            w.rescue.running.store(false, Ordering::Release);
            w.rescue.ready.notify_one();
        });
    if spawned.is_err() {
        watch.rescue.running.store(false, Ordering::Release);
    }
}

fn run(watch: &ScriptWatch, fds: &[i32]) {
    let listeners: Vec<TcpListener> = fds
        .iter()
        .filter_map(|&fd| {
            // SAFETY: dup(2) of a listener the hub keeps open; the duplicate is owned here.
            let dup = unsafe { libc::dup(fd) };
            if dup < 0 {
                return None;
            }
            // SAFETY: `dup` is a fresh descriptor of a listening TCP socket, owned by us.
            let l = unsafe { TcpListener::from_raw_fd(dup) };
            l.set_nonblocking(true).ok()?;
            Some(l)
        })
        .collect();
    let limits = Limits::default();
    let mut conns: Vec<(TcpStream, SocketAddr, BytesMut, bool)> = Vec::new();
    while watch.running() {
        for l in &listeners {
            while let Ok((s, peer)) = l.accept() {
                if s.set_nonblocking(true).is_ok() {
                    conns.push((s, peer, BytesMut::new(), true));
                }
            }
        }
        for (s, _, buf, open) in conns.iter_mut() {
            let mut chunk = [0u8; 4096];
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => {
                        *open = false;
                        break;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        *open = false;
                        break;
                    }
                }
                // Bounded: a client that floods a busy hub is dropped.
                if buf.len() > 1 << 20 {
                    *open = false;
                    break;
                }
            }
            while *open {
                match take_command(buf, &limits) {
                    Ok(Some(args)) => {
                        let reply = answer(watch, &args);
                        if s.write_all(&reply).is_err() {
                            *open = false;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => *open = false,
                }
            }
        }
        conns.retain(|c| c.3);
        std::thread::sleep(Duration::from_millis(5));
    }
    let back: Vec<Handback> = conns
        .into_iter()
        .map(|(s, peer, buf, _)| (s, peer, buf.to_vec()))
        .collect();
    if !back.is_empty() {
        watch
            .rescue
            .handback
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(back);
    }
}

/// The bytes of a busy script's answer to `args` (`ScriptWatch::busy_reply`, RESP2).
fn answer(watch: &ScriptWatch, args: &[bytes::Bytes]) -> Vec<u8> {
    let reply = watch
        .busy_reply(args)
        .unwrap_or_else(|| recached_engine::Reply::err(BUSY_EVAL));
    let mut out = Vec::new();
    crate::hub::encode_reply(&reply, false, &mut out);
    out
}
