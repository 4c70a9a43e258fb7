//! Persistence as a user meets it: real hub processes, redis-py, restarts and kill -9.
//!
//! - `persistence`: `tests/clients/persistence.py` — SAVE, BGSAVE (also SCHEDULE and
//!   inside EXEC), the AOF in each fsync mode, rewrites during writes, a torn last record,
//!   a damaged middle and a damaged snapshot (the start is refused and names the file),
//!   `--check-aof [--fix]`, SHUTDOWN/SIGTERM, `-LOADING` while 1M keys load, `CONFIG SET
//!   appendonly` at runtime, and a really full disk (a tmpfs): MISCONF, reads still
//!   served, recovery without a restart, nothing acknowledged lost.
//! - `kill_loop`: `tests/clients/crash_loop.py` — writers on five connections (SET, INCR,
//!   pipelined RPUSH, HSET, MULTI/EXEC, DEL) under `appendfsync always`, SIGKILL at random
//!   moments, every acknowledged write checked after each restart. `scripts/crash-loop.sh`
//!   runs it longer.

mod common;

use common::{clients_dir, missing_tool, run_client, tool_works, tools_dir};
use std::process::Command;
use std::time::Duration;

fn python() -> Option<std::path::PathBuf> {
    let python = tools_dir().join("venv").join("bin").join("python");
    if !tool_works(&python, &["-c", "import redis"], &[]) {
        missing_tool("persistence", &format!("redis-py ({} -c 'import redis')", python.display()));
        return None;
    }
    Some(python)
}

fn hub() -> Option<&'static str> {
    option_env!("CARGO_BIN_EXE_recached")
}

#[test]
fn persistence() {
    let (Some(python), Some(bin)) = (python(), hub()) else { return };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("persistence.py")).arg(bin);
    run_client("persistence", &mut cmd, Duration::from_secs(300));
}

#[test]
fn kill_loop() {
    let (Some(python), Some(bin)) = (python(), hub()) else { return };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("crash_loop.py")).arg(bin).args(["--rounds", "5", "--seconds", "1.5"]);
    run_client("kill_loop", &mut cmd, Duration::from_secs(180));
}
