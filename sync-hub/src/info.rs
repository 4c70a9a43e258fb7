//! INFO and the CLIENT LIST/INFO line, in Redis 7's field names (clients parse them:
//! ioredis waits for `loading:0`, tools read `redis_version`, `role`, `db0:keys=…`).

use std::fmt::Write;

use bytes::Bytes;
use recached_engine::{Engine, Reply, Session};

use crate::commands::REDIS_VERSION;
use crate::hub::{now_ms, HubState, Shared};
use crate::pubsub::ClientId;

/// The default sections, in Redis's order.
const DEFAULT: &[&str] = &["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules", "errorstats", "cluster", "keyspace"];

/// `INFO [section …]`
pub fn info(hub: &HubState, engine: &Engine, shared: &Shared, args: &[Bytes]) -> Reply {
    let mut wanted: Vec<String> = args[1..].iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    if wanted.is_empty() || wanted.iter().any(|w| w == "default") {
        wanted.retain(|w| w != "default");
        wanted.extend(DEFAULT.iter().map(|s| s.to_string()));
    }
    if wanted.iter().any(|w| w == "all" || w == "everything") {
        wanted = DEFAULT.iter().map(|s| s.to_string()).collect();
    }
    let mut out = String::new();
    for name in DEFAULT {
        if !wanted.iter().any(|w| w == name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        section(&mut out, name, hub, engine, shared);
    }
    Reply::Verbatim("txt", Bytes::from(out))
}

/// Redis's `bytesToHuman`.
pub fn human(n: u64) -> String {
    let d = n as f64;
    if n < 1024 {
        format!("{}B", n)
    } else if n < 1 << 20 {
        format!("{:.2}K", d / 1024.0)
    } else if n < 1 << 30 {
        format!("{:.2}M", d / (1u64 << 20) as f64)
    } else if n < 1 << 40 {
        format!("{:.2}G", d / (1u64 << 30) as f64)
    } else {
        format!("{:.2}T", d / (1u64 << 40) as f64)
    }
}

/// Resident set size from /proc (0 where unavailable).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// User and system CPU seconds of this process, from /proc (zeros where unavailable).
fn cpu_seconds() -> (f64, f64) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return (0.0, 0.0) };
    // The command name may hold spaces: fields start after the closing parenthesis.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return (0.0, 0.0) };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (ticks(11), ticks(12))
}

fn section(out: &mut String, name: &str, hub: &HubState, engine: &Engine, shared: &Shared) {
    let s = &hub.settings;
    let st = engine.stats();
    let uptime = shared.started.elapsed().as_secs();
    macro_rules! w {
        ($k:expr, $v:expr) => {{
            let _ = write!(out, "{}:{}\r\n", $k, $v);
        }};
    }
    match name {
        "server" => {
            out.push_str("# Server\r\n");
            w!("redis_version", &REDIS_VERSION);
            w!("recached_version", &env!("CARGO_PKG_VERSION"));
            w!("redis_git_sha1", &"00000000");
            w!("redis_git_dirty", &0);
            w!("redis_mode", &"standalone");
            w!("os", &format!("{} {}", std::env::consts::OS, std::env::consts::ARCH));
            w!("arch_bits", &(usize::BITS));
            w!("multiplexing_api", &"epoll");
            w!("process_id", &std::process::id());
            w!("process_supervised", &"no");
            w!("run_id", &shared.run_id);
            w!("tcp_port", &shared.tcp_port.load(std::sync::atomic::Ordering::Relaxed));
            w!("server_time_usec", &(now_ms() * 1000));
            w!("uptime_in_seconds", &uptime);
            w!("uptime_in_days", &(uptime / 86400));
            w!("hz", &s.hz);
            w!("configured_hz", &s.hz);
            w!("lru_clock", &((now_ms() / 1000) & ((1 << 24) - 1)));
            w!("executable", &std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default());
            w!("config_file", &"");
            w!("io_threads_active", &0);
        }
        "clients" => {
            out.push_str("# Clients\r\n");
            w!("connected_clients", &hub.clients.len());
            w!("cluster_connections", &0);
            w!("maxclients", &s.maxclients);
            w!("client_recent_max_input_buffer", &0);
            w!("client_recent_max_output_buffer", &0);
            w!("blocked_clients", &hub.blocked.len());
            w!("tracking_clients", &0);
            w!("clients_in_timeout_table", &hub.blocked.len());
        }
        "memory" => {
            let used = engine.used_memory() as u64;
            let rss = rss_bytes();
            out.push_str("# Memory\r\n");
            w!("used_memory", &used);
            w!("used_memory_human", &human(used));
            w!("used_memory_rss", &rss);
            w!("used_memory_rss_human", &human(rss));
            w!("used_memory_peak", &used);
            w!("used_memory_peak_human", &human(used));
            w!("used_memory_dataset", &used);
            // Redis 7.0's names for the Lua VM and the script cache (no functions yet).
            let (vm, scripts, cached) = shared.scripting.info();
            w!("used_memory_lua", &vm);
            w!("used_memory_vm_eval", &vm);
            w!("used_memory_lua_human", &human(vm as u64));
            w!("used_memory_scripts_eval", &scripts);
            w!("number_of_cached_scripts", &cached);
            let (libraries, functions) = shared.scripting.function_counts();
            w!("number_of_functions", &functions);
            w!("number_of_libraries", &libraries);
            w!("used_memory_vm_functions", &0);
            w!("used_memory_vm_total", &vm);
            w!("used_memory_vm_total_human", &human(vm as u64));
            w!("used_memory_functions", &0);
            w!("used_memory_scripts", &scripts);
            w!("used_memory_scripts_human", &human(scripts as u64));
            w!("maxmemory", &s.maxmemory);
            w!("maxmemory_human", &human(s.maxmemory));
            w!("maxmemory_policy", &s.maxmemory_policy.name());
            w!("maxkeys", &s.maxkeys);
            w!("mem_fragmentation_ratio", &format!("{:.2}", if used > 0 { rss as f64 / used as f64 } else { 0.0 }));
            w!("mem_allocator", &"libc");
            w!("lazyfree_pending_objects", &0);
        }
        "persistence" => {
            out.push_str("# Persistence\r\n");
            for (k, v) in crate::persist::info_fields(hub, engine, shared) {
                w!(k, &v);
            }
        }
        "stats" => {
            let h = &hub.stats;
            out.push_str("# Stats\r\n");
            w!("total_connections_received", &h.connections_received);
            w!("total_commands_processed", &st.commands);
            w!("instantaneous_ops_per_sec", &0);
            w!("total_net_input_bytes", &h.net_input_bytes);
            w!("total_net_output_bytes", &h.net_output_bytes);
            w!("rejected_connections", &h.rejected_connections);
            w!("sync_full", &hub.repl.full_syncs);
            w!("sync_partial_ok", &hub.repl.partial_ok);
            w!("sync_partial_err", &hub.repl.partial_err);
            w!("expired_keys", &st.expired_keys);
            w!("evicted_keys", &st.evicted_keys);
            w!("keyspace_hits", &st.keyspace_hits);
            w!("keyspace_misses", &st.keyspace_misses);
            w!("pubsub_channels", &hub.pubsub.num_channels());
            w!("pubsub_patterns", &hub.pubsub.numpat());
            w!("pubsubshard_channels", &hub.pubsub.num_shard_channels());
            w!("total_error_replies", &h.error_replies);
            w!("client_output_buffer_limit_disconnections", &h.output_limit_kills);
        }
        "replication" => {
            out.push_str("# Replication\r\n");
            for (k, v) in crate::repl::info_fields(engine, hub, shared) {
                w!(k.as_str(), &v);
            }
        }
        "cpu" => {
            let (user, sys) = cpu_seconds();
            out.push_str("# CPU\r\n");
            w!("used_cpu_sys", &format!("{:.6}", sys));
            w!("used_cpu_user", &format!("{:.6}", user));
            w!("used_cpu_sys_children", &"0.000000");
            w!("used_cpu_user_children", &"0.000000");
        }
        "modules" => out.push_str("# Modules\r\n"),
        "errorstats" => out.push_str("# Errorstats\r\n"),
        "cluster" => {
            out.push_str("# Cluster\r\n");
            w!("cluster_enabled", &0);
        }
        "keyspace" => {
            out.push_str("# Keyspace\r\n");
            for (i, db) in engine.dbs().iter().enumerate() {
                if db.is_empty() {
                    continue;
                }
                let _ = write!(out, "db{}:keys={},expires={},avg_ttl=0\r\n", i, db.len(), db.volatile_len());
            }
        }
        _ => {}
    }
}

/// One CLIENT LIST line (without the newline). `session` overrides the registry's view
/// for the calling client, whose batch has not been recorded yet.
pub fn client_line(hub: &HubState, id: ClientId, session: Option<&Session>, cmd: &str) -> String {
    let Some(c) = hub.clients.get(&id) else { return String::new() };
    let subs = hub.pubsub.of(id);
    let (sub, psub, ssub) = subs.map(|s| (s.channels.len(), s.patterns.len(), s.shard.len())).unwrap_or((0, 0, 0));
    let (db, resp3, multi) = match session {
        Some(s) => (s.db, s.resp3, if s.in_multi() { c.multi.max(0) } else { -1 }),
        None => (c.db, c.resp3, c.multi),
    };
    let blocked = hub.blocked.contains(id);
    let mut flags = String::new();
    if sub + psub + ssub > 0 {
        flags.push('P');
    }
    if blocked {
        flags.push('b');
    }
    if multi >= 0 {
        flags.push('x');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let now = std::time::Instant::now();
    let cmd = if session.is_some() { cmd } else { c.last_cmd };
    let omem = c.handle.pending();
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={} user=default redir=-1 resp={}",
        id,
        c.addr,
        c.laddr,
        c.fd,
        String::from_utf8_lossy(&c.name),
        now.duration_since(c.created).as_secs(),
        if session.is_some() { 0 } else { now.duration_since(c.last_active).as_secs() },
        flags,
        db,
        sub,
        psub,
        ssub,
        multi,
        omem,
        omem,
        cmd,
        if resp3 { 3 } else { 2 },
    )
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_sizes_like_redis() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(965_872), "943.23K");
        assert_eq!(human(6_971_392), "6.65M");
        assert_eq!(human(25_276_063_744), "23.54G");
    }
}
