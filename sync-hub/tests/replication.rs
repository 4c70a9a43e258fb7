//! Replication as a user meets it: real primary and replica processes on loopback,
//! redis-py, and a TCP proxy between them that cuts, blackholes and heals the link.
//!
//! `tests/clients/replication.py`: a full sync of every type (and expiry arriving from the
//! primary), a full sync under concurrent writes, partial resyncs after a cut link and a
//! silent partition, a replica restart that continues from its saved offset, a replica
//! past the backlog (one full sync, never a loop), `WAIT` and `min-replicas-to-write`
//! with a stopped replica, `REPLICAOF NO ONE` and back, a chained replica, and a Redis
//! primary refused with a clear message.

mod common;

use common::{clients_dir, missing_tool, run_client, tool_works, tools_dir};
use std::process::Command;
use std::time::Duration;

#[test]
fn replication() {
    let python = tools_dir().join("venv").join("bin").join("python");
    if !tool_works(&python, &["-c", "import redis"], &[]) {
        missing_tool("replication", &format!("redis-py ({} -c 'import redis')", python.display()));
        return;
    }
    let Some(bin) = option_env!("CARGO_BIN_EXE_recached") else { return };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("replication.py")).arg(bin);
    run_client("replication", &mut cmd, Duration::from_secs(300));
}
