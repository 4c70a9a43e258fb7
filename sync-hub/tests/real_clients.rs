//! Real Redis clients against the server under test: redis-cli, redis-py, ioredis and
//! node-redis, each a program in `tests/clients/` run with the port of a fresh server and
//! the port of a second one started with `--requirepass`.
//!
//! The tools come from scripts/setup.sh (`$RECACHED_TOOLS/venv`, `$RECACHED_TOOLS/node`).
//! A missing tool skips its test loudly, or fails it under `RECACHED_REQUIRE_CLIENTS=1`
//! (scripts/test.sh sets it).

mod common;

use common::{clients_dir, missing_tool, run_client, tool_works, tools_dir, Opts, Server};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "hub-test-pw";
const LIMIT: Duration = Duration::from_secs(180);

/// The two servers every client program gets: open, and password-protected.
fn servers() -> (Server, Server) {
    (Server::start(), Server::start_with(&Opts::new().requirepass(PASSWORD)))
}

fn node_path() -> String {
    let mut p = tools_dir().join("node").join("node_modules").display().to_string();
    if let Ok(old) = std::env::var("NODE_PATH") {
        if !old.is_empty() {
            p = format!("{p}:{old}");
        }
    }
    p
}

fn run_node(test: &str, module: &str, script: &str) {
    let env = [("NODE_PATH", node_path())];
    let node = PathBuf::from("node");
    if !tool_works(&node, &["-e", &format!("require('{module}')")], &env) {
        return missing_tool(test, &format!("node with the npm package `{module}` (NODE_PATH={})", env[0].1));
    }
    let (open, auth) = servers();
    let mut cmd = Command::new(node);
    cmd.arg(clients_dir().join(script))
        .arg(open.port.to_string())
        .arg(auth.port.to_string())
        .arg(PASSWORD)
        .env("NODE_PATH", node_path());
    run_client(test, &mut cmd, LIMIT);
}

#[test]
fn redis_cli() {
    let cli = PathBuf::from("redis-cli");
    if !tool_works(&cli, &["--version"], &[]) {
        return missing_tool("redis_cli", "redis-cli (Debian redis-tools)");
    }
    let (open, auth) = servers();
    let mut cmd = Command::new("bash");
    cmd.arg(clients_dir().join("redis_cli.sh"))
        .arg(open.port.to_string())
        .arg(auth.port.to_string())
        .arg(PASSWORD);
    run_client("redis_cli", &mut cmd, LIMIT);
}

#[test]
fn redis_py() {
    let python = tools_dir().join("venv").join("bin").join("python");
    if !tool_works(&python, &["-c", "import redis"], &[]) {
        return missing_tool("redis_py", &format!("redis-py ({} -c 'import redis')", python.display()));
    }
    let (open, auth) = servers();
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("redis_py.py"))
        .arg(open.port.to_string())
        .arg(auth.port.to_string())
        .arg(PASSWORD);
    run_client("redis_py", &mut cmd, LIMIT);
}

#[test]
fn ioredis() {
    run_node("ioredis", "ioredis", "ioredis.js");
}

#[test]
fn node_redis() {
    run_node("node_redis", "redis", "node_redis.js");
}
