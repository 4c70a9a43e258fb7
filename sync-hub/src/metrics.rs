//! `GET /metrics`: the hub's counters in the Prometheus text exposition format (0.0.4).
//! Every name starts with `recached_`; counters end in `_total`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::hub::Shared;
use crate::ws::{SyncShared, LAG_BUCKETS};

struct Out(String);

impl Out {
    fn metric(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }

    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) {
        let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
    }
}

/// Renders every metric. Takes the engine lock, then the sync lock, briefly.
pub fn render(shared: &Shared, sync: &SyncShared) -> String {
    let mut o = Out(String::with_capacity(8192));
    let (stats, engine_stats, used, maxmemory, clients, blocked, keys, persistence) = {
        let core = shared.lock();
        let persistence = crate::persist::info_fields(&core.hub, &core.engine, shared);
        let keys: Vec<(usize, usize)> = core.engine.dbs().iter().enumerate().map(|(i, d)| (i, d.len())).filter(|(_, n)| *n > 0).collect();
        (
            core.hub.stats.clone(),
            core.engine.stats().clone(),
            core.engine.used_memory(),
            core.hub.settings.maxmemory,
            core.hub.clients.len(),
            core.hub.blocked.len(),
            keys,
            persistence,
        )
    };
    let (hub, backlog, subscribers, queued) = {
        let st = sync.lock();
        let b = st.hub.backlog();
        let backlog = (b.bytes(), b.max_bytes(), b.len(), b.base_offset(), b.last_offset());
        (st.hub.stats().clone(), backlog, st.hub.subscribers(), st.queued_bytes())
    };

    o.metric("recached_uptime_seconds", "gauge", "Seconds since the hub started.", shared.started.elapsed().as_secs());
    o.metric("recached_connections", "gauge", "Open connections on the RESP and sync ports.", shared.connections.load(Ordering::Relaxed));
    o.metric("recached_resp_clients", "gauge", "Connected RESP clients.", clients);
    o.metric("recached_blocked_clients", "gauge", "RESP clients parked in a blocking command.", blocked);
    o.metric("recached_connections_received_total", "counter", "RESP connections accepted.", stats.connections_received);
    o.metric("recached_rejected_connections_total", "counter", "RESP connections refused by maxclients.", stats.rejected_connections);
    o.metric("recached_commands_total", "counter", "Commands executed, from every source.", engine_stats.commands);
    o.metric("recached_error_replies_total", "counter", "Error replies sent to RESP clients.", stats.error_replies);
    o.metric("recached_net_input_bytes_total", "counter", "Bytes read from RESP clients.", stats.net_input_bytes);
    o.metric("recached_net_output_bytes_total", "counter", "Bytes written to RESP clients.", stats.net_output_bytes);
    o.metric("recached_keyspace_hits_total", "counter", "Successful key lookups.", engine_stats.keyspace_hits);
    o.metric("recached_keyspace_misses_total", "counter", "Failed key lookups.", engine_stats.keyspace_misses);
    o.metric("recached_expired_keys_total", "counter", "Keys removed because their deadline passed.", engine_stats.expired_keys);
    o.metric("recached_evicted_keys_total", "counter", "Keys evicted to stay under maxmemory or maxkeys.", engine_stats.evicted_keys);
    o.metric("recached_memory_used_bytes", "gauge", "Memory the engine accounts for its data.", used);
    o.metric("recached_memory_max_bytes", "gauge", "The maxmemory setting (0: none).", maxmemory);
    o.head("recached_keys", "gauge", "Keys per logical database (databases holding keys).");
    for (db, n) in keys {
        o.sample("recached_keys", &format!("db=\"{db}\""), n);
    }
    // INFO persistence, field for field: `recached_persistence_<field>`; an `ok`/`err`
    // status is 1/0.
    for (name, value) in &persistence {
        let v = match value.as_str() {
            "ok" => "1".to_string(),
            "err" => "0".to_string(),
            v => v.to_string(),
        };
        if v.parse::<f64>().is_ok() {
            o.metric(&format!("recached_persistence_{name}"), "gauge", &format!("INFO persistence {name}."), v);
        }
    }
    o.metric("recached_pubsub_messages_total", "counter", "Pub/sub messages delivered.", stats.pubsub_messages);
    o.metric("recached_output_limit_disconnections_total", "counter", "RESP clients closed for an output buffer limit.", stats.output_limit_kills);

    let c = &sync.counters;
    o.metric("recached_sync_sockets", "gauge", "Open WebSocket sync connections.", sync.sockets.load(Ordering::Relaxed));
    o.metric("recached_sync_subscribers", "gauge", "Sync connections with a subscription.", subscribers);
    o.metric("recached_sync_sockets_opened_total", "counter", "WebSockets accepted.", c.sockets_opened.load(Ordering::Relaxed));
    o.head("recached_sync_refused_total", "counter", "Sync-port connections refused at the door, by reason.");
    o.sample("recached_sync_refused_total", "reason=\"origin\"", c.refused_origin.load(Ordering::Relaxed));
    o.sample("recached_sync_refused_total", "reason=\"capacity\"", c.refused_capacity.load(Ordering::Relaxed));
    o.head("recached_sync_closes_total", "counter", "WebSocket closes sent by the hub, by close code.");
    for (code, n) in sync.close_counts() {
        o.sample("recached_sync_closes_total", &format!("code=\"{code}\""), n);
    }
    o.metric("recached_sync_slow_consumers_total", "counter", "Sockets closed for an outbound buffer over sync-max-buffer (4008).", c.slow_consumers.load(Ordering::Relaxed));
    o.metric("recached_sync_messages_in_total", "counter", "WebSocket messages received.", c.messages_in.load(Ordering::Relaxed));
    o.metric("recached_sync_bytes_in_total", "counter", "WebSocket bytes received.", c.bytes_in.load(Ordering::Relaxed));
    o.metric("recached_sync_messages_out_total", "counter", "WebSocket messages sent.", c.messages_out.load(Ordering::Relaxed));
    o.metric("recached_sync_bytes_out_total", "counter", "WebSocket bytes sent.", c.bytes_out.load(Ordering::Relaxed));
    o.metric("recached_sync_outbound_bytes", "gauge", "Bytes queued for sync sockets and not yet written.", queued.0);
    o.metric("recached_sync_outbound_push_bytes", "gauge", "Of those, pushes (the part bounded by sync-max-buffer).", queued.1);
    o.metric("recached_sync_writes_total", "counter", "SYNC.W / SYNC.TX writes executed.", hub.writes);
    o.metric("recached_sync_duplicate_writes_total", "counter", "Resent writes answered from the dedupe memory.", hub.duplicates);
    o.metric("recached_sync_refused_writes_total", "counter", "Sync writes refused by scope.", hub.refused);
    o.metric("recached_sync_full_syncs_total", "counter", "Subscriptions answered with a snapshot (full).", hub.full_syncs);
    o.metric("recached_sync_continues_total", "counter", "Subscriptions resumed from the backlog (continue).", hub.continues);
    o.metric("recached_sync_pushes_total", "counter", "sync.change pushes sent.", hub.pushes);
    o.metric("recached_sync_snapshot_keys_total", "counter", "Keys sent in snapshots.", hub.snapshot_keys);
    o.metric("recached_sync_auth_failures_total", "counter", "SYNC.HELLO tokens refused.", hub.auth_failures);
    o.metric("recached_sync_backlog_bytes", "gauge", "Bytes held by the sync backlog.", backlog.0);
    o.metric("recached_sync_backlog_max_bytes", "gauge", "The sync backlog bound (sync-backlog-bytes).", backlog.1);
    o.metric("recached_sync_backlog_groups", "gauge", "Change groups held by the sync backlog.", backlog.2);
    o.metric("recached_sync_backlog_first_offset", "gauge", "Clients at or after this offset can continue.", backlog.3);
    o.metric("recached_sync_offset", "gauge", "The stream's current offset.", backlog.4);

    let (buckets, count, sum) = sync.lag.snapshot();
    o.head("recached_sync_fanout_lag_seconds", "histogram", "Time from a change being queued for a socket to it being written.");
    for (b, n) in LAG_BUCKETS.iter().zip(&buckets) {
        o.sample("recached_sync_fanout_lag_seconds_bucket", &format!("le=\"{b}\""), n);
    }
    o.sample("recached_sync_fanout_lag_seconds_bucket", "le=\"+Inf\"", count);
    let _ = writeln!(o.0, "recached_sync_fanout_lag_seconds_sum {sum}\nrecached_sync_fanout_lag_seconds_count {count}");

    o.metric("recached_http_requests_total", "counter", "HTTP requests answered on the sync port.", c.http_requests.load(Ordering::Relaxed));
    o.metric("recached_http_commands_total", "counter", "Commands run through the HTTP API.", c.http_commands.load(Ordering::Relaxed));
    o.metric("recached_http_auth_failures_total", "counter", "HTTP API requests refused for a missing or bad token.", c.http_auth_failures.load(Ordering::Relaxed));
    o.0
}
