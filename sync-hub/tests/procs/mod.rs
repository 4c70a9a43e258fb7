//! Process plumbing both test harnesses share (`tests/common` for the RESP suites,
//! `tests/sync_support` for the sync suites and the fan-out benchmark): the output tail kept
//! for failure messages, `/proc` readings, the descriptor limit, RESP command encoding.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// The last lines a process wrote, kept for failure messages.
#[derive(Clone, Default)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    /// Keeps `line`, dropping the oldest past 300 lines.
    pub fn push(&self, line: String) {
        let mut q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= 300 {
            q.pop_front();
        }
        q.push_back(line);
    }
    /// Everything kept, one line each.
    pub fn text(&self) -> String {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it), so
/// the connection floods and a server with `maxclients 1000` have enough descriptors.
/// Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    #[cfg(target_os = "linux")]
    {
        #[repr(C)]
        struct RLimit {
            cur: u64,
            max: u64,
        }
        extern "C" {
            fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
            fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
        }
        const RLIMIT_NOFILE: i32 = 7;
        let mut r = RLimit { cur: 0, max: 0 };
        // SAFETY: plain libc calls with a valid, correctly laid-out struct.
        unsafe {
            if getrlimit(RLIMIT_NOFILE, &mut r) == 0 && r.cur < r.max {
                r.cur = r.max.min(1 << 20);
                setrlimit(RLIMIT_NOFILE, &r);
            }
            if getrlimit(RLIMIT_NOFILE, &mut r) == 0 {
                return r.cur;
            }
        }
    }
    1024
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = Vec::new();
    recached_engine::resp::encode_command(args, &mut out);
    out
}
