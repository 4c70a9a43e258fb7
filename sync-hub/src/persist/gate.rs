//! The durability gate: when a reply may leave.
//!
//! Every committed group is handed to the AOF under the engine lock, in commit order
//! ([`Gate::appended`] is then its offset). A connection that ran a batch notes
//! `gate.need()` and releases its replies only once the gate is [`Gate::ready`] for it:
//!
//! - AOF off: at once;
//! - `appendfsync no`: once the bytes are written (`write(2)`, so `kill -9` loses nothing);
//! - `appendfsync everysec`: the same, and while no write has waited for its fsync longer
//!   than the window (1 s): if fsync falls behind, replies wait until it catches up, so an
//!   acknowledged write is never more than a second from the disk;
//! - `appendfsync always`: once an fsync covered it. Group commit: the fsync thread covers
//!   everything written so far with one fsync, and the next batch gathers while it runs.
//!
//! A batch that only read waits too when something before it is not yet durable: it may
//! have seen those writes, and Redis releases no reply before the fsync of the writes its
//! event loop iteration saw either. When nothing is pending the check is three atomic loads.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::hub::now_ms;

/// How long an acknowledged write may wait for its fsync under `everysec`.
pub const EVERYSEC_WINDOW_MS: u64 = 1000;

/// `appendfsync`, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// No AOF.
    Off = 0,
    /// `appendfsync no`.
    No = 1,
    /// `appendfsync everysec`.
    EverySec = 2,
    /// `appendfsync always`.
    Always = 3,
}

impl Mode {
    /// The mode of an `appendfsync` value (`always`, `everysec`, `no`).
    pub fn parse(s: &str) -> Mode {
        match s {
            "always" => Mode::Always,
            "no" => Mode::No,
            _ => Mode::EverySec,
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::No,
            2 => Mode::EverySec,
            3 => Mode::Always,
            _ => Mode::Off,
        }
    }
}

/// Progress of the AOF, readable without the engine lock.
#[derive(Debug)]
pub struct Gate {
    mode: AtomicU8,
    appended: AtomicU64,
    written: AtomicU64,
    durable: AtomicU64,
    /// Unix ms of the oldest write not yet covered by an fsync (0: none).
    dirty_since: AtomicU64,
    /// The AOF cannot be written (a full disk): writes are refused, and a batch that wrote
    /// nothing does not wait for the data stuck before it, so reads keep working.
    stuck: std::sync::atomic::AtomicBool,
    progress: watch::Sender<u64>,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            mode: AtomicU8::new(Mode::Off as u8),
            appended: AtomicU64::new(0),
            written: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            dirty_since: AtomicU64::new(0),
            stuck: std::sync::atomic::AtomicBool::new(false),
            progress: watch::channel(0).0,
        }
    }
}

impl Gate {
    /// The current mode.
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Ordering::Acquire))
    }

    /// Changes the mode (AOF on/off, `CONFIG SET appendfsync`), with everything up to
    /// `offset` counted as durable: a mode change never holds replies already released.
    pub fn set_mode(&self, mode: Mode, offset: u64) {
        self.appended.fetch_max(offset, Ordering::AcqRel);
        self.written.fetch_max(offset, Ordering::AcqRel);
        self.durable.fetch_max(offset, Ordering::AcqRel);
        self.mode.store(mode as u8, Ordering::Release);
        self.ping();
    }

    /// Changes the mode with what is really written and fsynced (a policy change on a
    /// running AOF).
    pub fn set_mode_at(&self, mode: Mode, written: u64, durable: u64) {
        self.written.fetch_max(written, Ordering::SeqCst);
        self.durable.fetch_max(durable, Ordering::SeqCst);
        self.mode.store(mode as u8, Ordering::Release);
        self.ping();
    }

    /// What a batch that just ran must wait for: the newest offset handed to the AOF.
    pub fn need(&self) -> u64 {
        if self.mode() == Mode::Off {
            return 0;
        }
        self.appended.load(Ordering::Acquire)
    }

    /// What a batch must wait for, given the engine's offset before and after it: its own
    /// writes, or (when it wrote nothing) everything before it, unless the AOF is stuck.
    pub fn need_after(&self, before: u64, after: u64) -> u64 {
        if self.mode() == Mode::Off {
            return 0;
        }
        if after > before {
            return after;
        }
        if self.stuck.load(Ordering::Acquire) {
            return 0;
        }
        self.appended.load(Ordering::Acquire)
    }

    /// Marks the AOF stuck (a write failed) or writable again.
    pub fn set_stuck(&self, stuck: bool) {
        self.stuck.store(stuck, Ordering::Release);
        self.ping();
    }

    /// Records that groups up to `offset` were handed to the AOF (under the engine lock).
    pub fn appended(&self, offset: u64) {
        self.appended.fetch_max(offset, Ordering::AcqRel);
    }

    /// Records that everything up to `offset` is written.
    pub fn written(&self, offset: u64) {
        self.written.fetch_max(offset, Ordering::SeqCst);
        if self.mode() != Mode::Always {
            let _ = self.dirty_since.compare_exchange(0, now_ms().max(1), Ordering::SeqCst, Ordering::SeqCst);
        }
        self.ping();
    }

    /// Records that an fsync that started at `started_ms` covered everything up to
    /// `offset`.
    pub fn synced(&self, offset: u64, started_ms: u64) {
        self.durable.fetch_max(offset, Ordering::SeqCst);
        // Writes after the fsync's target happened after it started, so dating them from
        // its start is conservative. Set that mark first (never 0 while they wait), then
        // clear it only if none are waiting; a writer that stores its offset after that
        // look sets the mark itself (its compare-exchange from 0 comes after the store).
        let started = started_ms.max(1);
        self.dirty_since.store(started, Ordering::SeqCst);
        if self.written.load(Ordering::SeqCst) <= offset {
            let _ = self.dirty_since.compare_exchange(started, 0, Ordering::SeqCst, Ordering::SeqCst);
            if self.written.load(Ordering::SeqCst) > offset {
                let _ = self.dirty_since.compare_exchange(0, started, Ordering::SeqCst, Ordering::SeqCst);
            }
        }
        self.ping();
    }

    /// Offsets written and made durable.
    pub fn progress(&self) -> (u64, u64) {
        (self.written.load(Ordering::Acquire), self.durable.load(Ordering::Acquire))
    }

    /// Unix ms of the oldest unsynced write, 0 for none.
    pub fn dirty_since(&self) -> u64 {
        self.dirty_since.load(Ordering::Acquire)
    }

    fn ping(&self) {
        self.progress.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether replies that need `need` may leave now.
    pub fn ready(&self, need: u64) -> bool {
        match self.mode() {
            Mode::Off => true,
            Mode::No => self.written.load(Ordering::Acquire) >= need,
            Mode::EverySec => {
                if self.written.load(Ordering::Acquire) < need {
                    return false;
                }
                if self.durable.load(Ordering::Acquire) >= need {
                    return true;
                }
                let since = self.dirty_since.load(Ordering::Acquire);
                since == 0 || now_ms().saturating_sub(since) < EVERYSEC_WINDOW_MS
            }
            Mode::Always => self.durable.load(Ordering::Acquire) >= need,
        }
    }

    /// Waits until [`Gate::ready`] for `need`.
    pub async fn wait(&self, need: u64) {
        if self.ready(need) {
            return;
        }
        let mut rx = self.progress.subscribe();
        loop {
            if self.ready(need) {
                return;
            }
            // The everysec window can close without progress: look again now and then.
            let _ = tokio::time::timeout(Duration::from_millis(20), rx.changed()).await;
        }
    }

    /// A receiver that changes on every progress (for tasks that release held output).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let g = Gate::default();
        g.appended(5);
        assert!(g.ready(5), "off: always ready");
        assert_eq!(g.need(), 0);
        g.set_mode(Mode::Always, 5);
        g.appended(6);
        assert_eq!(g.need(), 6);
        g.written(6);
        assert!(!g.ready(6));
        g.synced(6, now_ms());
        assert!(g.ready(6));
        g.set_mode(Mode::EverySec, 6);
        g.appended(7);
        assert!(!g.ready(7), "not written yet");
        g.written(7);
        assert!(g.ready(7), "written, inside the window");
        g.synced(6, now_ms() - 5000);
        assert!(!g.ready(7), "fsync fell behind the window");
        assert!(g.ready(6));
        g.synced(7, now_ms());
        assert!(g.ready(7));
    }
}
