//! Replication as a user meets it: real primary and replica processes on loopback,
//! redis-py, and a TCP proxy between them that cuts, blackholes and heals the link.
//!
//! `tests/clients/replication.py`: a full sync of every type (and expiry arriving from the
//! primary), a full sync under concurrent writes, partial resyncs after a cut link and a
//! silent partition, a replica restart that continues from its saved offset, a replica
//! past the backlog (one full sync, never a loop), `WAIT` and `min-replicas-to-write`
//! with a stopped replica, `REPLICAOF NO ONE` and back, a chained replica, and a Redis
//! primary refused with a clear message; and failover: a killed primary replaced within
//! the timeout + 1 s, a partition where the old primary fences itself before the replica
//! promotes, the old primary rejoining and dropping what no replica confirmed.
//!
//! `repl_faults`: `tests/clients/repl_faults.py`, randomized partitions, SIGSTOP and
//! SIGKILL of either node under writes confirmed by `WAIT 1` (a short run; the long one is
//! `scripts/repl-faults.sh`): no confirmed write lost, the copies equal, never two nodes
//! acknowledging writes at once.

mod common;

use common::{clients_dir, missing_tool, run_client, tool_works, tools_dir};
use std::process::Command;
use std::time::Duration;

/// The two runs time failovers: one at a time, so neither steals the other's cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn python(name: &str) -> Option<std::path::PathBuf> {
    let python = tools_dir().join("venv").join("bin").join("python");
    if !tool_works(&python, &["-c", "import redis"], &[]) {
        missing_tool(name, &format!("redis-py ({} -c 'import redis')", python.display()));
        return None;
    }
    Some(python)
}

#[test]
fn replication() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(python), Some(bin)) = (python("replication"), option_env!("CARGO_BIN_EXE_recached")) else { return };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("replication.py")).arg(bin);
    run_client("replication", &mut cmd, Duration::from_secs(300));
}

#[test]
fn repl_faults() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (Some(python), Some(bin)) = (python("repl_faults"), option_env!("CARGO_BIN_EXE_recached")) else { return };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("repl_faults.py")).arg(bin).args(["--rounds", "6"]);
    run_client("repl_faults", &mut cmd, Duration::from_secs(240));
}
