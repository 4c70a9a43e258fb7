//! Lua scripting as a user meets it, against Redis 7 itself: `tests/clients/scripting.py`
//! starts a hub process and Debian's `redis-server`, sends both the same scripts (RESP2
//! and RESP3) and compares the replies byte for byte; runs a looping script past
//! `busy-reply-threshold` (`-BUSY`, SCRIPT KILL from a new connection, SHUTDOWN NOSAVE);
//! checks the script cache (EVALSHA, SCRIPT EXISTS/FLUSH, the EVAL cache bound, INFO), the
//! VM's memory cap; redis-py's `Lock` (sync and asyncio), which releases with EVALSHA; and
//! the `limits` rate limiters (fixed, moving and sliding windows, all Lua-scripted); and a
//! dramatiq worker process (RedisBroker, results, retries), whose broker runs Lua; and
//! rate-limiter-flexible (node) on ioredis and node-redis; and a celery worker (`--pool
//! solo`, redis broker and result backend): delay/get, retries, group, chain, chord; and
//! django-redis (cache: incr/decr, ttl, many, add, delete_pattern; its lock).

mod common;

use common::{clients_dir, missing_tool, run_client, tool_works, tools_dir};
use std::process::Command;
use std::time::Duration;

#[test]
fn scripting() {
    let python = tools_dir().join("venv").join("bin").join("python");
    if !tool_works(&python, &["-c", "import redis, limits, dramatiq, celery, django_redis"], &[]) {
        missing_tool(
            "scripting",
            &format!("redis-py and the libraries ({} -c 'import redis, limits, dramatiq, celery, django_redis')", python.display()),
        );
        return;
    }
    if !tool_works(std::path::Path::new("redis-server"), &["--version"], &[]) {
        missing_tool("scripting", "redis-server (Debian's redis-server package)");
        return;
    }
    let Some(bin) = option_env!("CARGO_BIN_EXE_recached") else {
        return;
    };
    let mut cmd = Command::new(python);
    cmd.arg(clients_dir().join("scripting.py")).arg(bin);
    run_client("scripting", &mut cmd, Duration::from_secs(180));
}
