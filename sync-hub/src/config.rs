//! Configuration: command-line flags (each also a `RECACHED_*` environment variable), an
//! optional config file in `redis.conf` format, and the runtime `CONFIG GET/SET` view.
//!
//! Every source goes through one door, [`Settings::set`], so a value is validated the same
//! way whether it comes from `--maxmemory 100mb`, `RECACHED_MAXMEMORY=100mb`, a
//! `maxmemory 100mb` line or `CONFIG SET maxmemory 100mb`, with Redis's error texts.
//! Precedence: flag or environment variable > config file > default.

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Parser;
use recached_engine::Policy;
use thiserror::Error;

use crate::notify::KeyspaceFlags;

/// A configuration error at start-up (bad flag value, unreadable or invalid file).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value was refused; the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Command-line flags. Each is also read from `RECACHED_<NAME>` (upper case, `-` → `_`).
/// Values are kept as text here and validated by [`Settings::set`].
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "recached", version, about = "Recached: a Redis-compatible in-memory cache with live browser sync")]
pub struct Args {
    /// Config file in redis.conf format (`port 6379` lines, `#` comments).
    #[arg(long, env = "RECACHED_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RESP (TCP) port; 0 picks a free port.
    #[arg(long, env = "RECACHED_PORT")]
    pub port: Option<String>,
    /// WebSocket sync and HTTP port.
    #[arg(long = "ws-port", env = "RECACHED_WS_PORT")]
    pub ws_port: Option<String>,
    /// Addresses to listen on, space separated.
    #[arg(long, env = "RECACHED_BIND")]
    pub bind: Option<String>,
    /// `yes` refuses to listen beyond loopback without a password.
    #[arg(long = "protected-mode", env = "RECACHED_PROTECTED_MODE")]
    pub protected_mode: Option<String>,
    /// Password of the default user.
    #[arg(long, env = "RECACHED_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// Most simultaneous clients.
    #[arg(long, env = "RECACHED_MAXCLIENTS")]
    pub maxclients: Option<String>,
    /// Memory cap (`100mb`, `1gb`, bytes); 0 for none.
    #[arg(long, env = "RECACHED_MAXMEMORY")]
    pub maxmemory: Option<String>,
    /// Eviction policy when over the cap.
    #[arg(long = "maxmemory-policy", env = "RECACHED_MAXMEMORY_POLICY")]
    pub maxmemory_policy: Option<String>,
    /// Keys sampled per eviction.
    #[arg(long = "maxmemory-samples", env = "RECACHED_MAXMEMORY_SAMPLES")]
    pub maxmemory_samples: Option<String>,
    /// Key-count cap; 0 for none.
    #[arg(long, env = "RECACHED_MAXKEYS")]
    pub maxkeys: Option<String>,
    /// Close a client after this many idle seconds; 0 never.
    #[arg(long, env = "RECACHED_TIMEOUT")]
    pub timeout: Option<String>,
    /// Number of logical databases.
    #[arg(long, env = "RECACHED_DATABASES")]
    pub databases: Option<String>,
    /// Keyspace notification classes (`KEA`, `Ex`, …).
    #[arg(long = "notify-keyspace-events", env = "RECACHED_NOTIFY_KEYSPACE_EVENTS")]
    pub notify_keyspace_events: Option<String>,
    /// Log level: debug, verbose, notice, warning (or trace/info/warn/error); RUST_LOG wins.
    #[arg(long, env = "RECACHED_LOGLEVEL")]
    pub loglevel: Option<String>,
    /// Background task frequency (active expiry budget per second).
    #[arg(long, env = "RECACHED_HZ")]
    pub hz: Option<String>,
    /// Milliseconds a script runs before other clients get `-BUSY` (alias `lua-time-limit`).
    #[arg(long = "busy-reply-threshold", alias = "lua-time-limit", env = "RECACHED_BUSY_REPLY_THRESHOLD")]
    pub busy_reply_threshold: Option<String>,
    /// Largest bulk string a client may send.
    #[arg(long = "proto-max-bulk-len", env = "RECACHED_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<String>,
    /// Largest unparsed input buffered per client.
    #[arg(long = "client-query-buffer-limit", env = "RECACHED_CLIENT_QUERY_BUFFER_LIMIT")]
    pub client_query_buffer_limit: Option<String>,
    /// Output buffer limits per class (`pubsub 32mb 8mb 60`).
    #[arg(long = "client-output-buffer-limit", env = "RECACHED_CLIENT_OUTPUT_BUFFER_LIMIT")]
    pub client_output_buffer_limit: Option<String>,
    /// Snapshot rules: `<seconds> <changes>` pairs (`3600 1 300 100`); `""` for none.
    #[arg(long, env = "RECACHED_SAVE")]
    pub save: Option<String>,
    /// Append-only file (`yes`/`no`): every write is logged before its reply.
    #[arg(long, env = "RECACHED_APPENDONLY")]
    pub appendonly: Option<String>,
    /// When the AOF is fsynced: `always` (before each reply), `everysec`, `no`.
    #[arg(long, env = "RECACHED_APPENDFSYNC")]
    pub appendfsync: Option<String>,
    /// The AOF's file-name prefix.
    #[arg(long, env = "RECACHED_APPENDFILENAME")]
    pub appendfilename: Option<String>,
    /// The AOF's directory inside `dir`.
    #[arg(long, env = "RECACHED_APPENDDIRNAME")]
    pub appenddirname: Option<String>,
    /// Load an AOF whose last record was cut by a crash (`yes`), or refuse (`no`).
    #[arg(long = "aof-load-truncated", env = "RECACHED_AOF_LOAD_TRUNCATED")]
    pub aof_load_truncated: Option<String>,
    /// Rewrite the AOF when it grew this many percent since the last rewrite (0: never).
    #[arg(long = "auto-aof-rewrite-percentage", env = "RECACHED_AUTO_AOF_REWRITE_PERCENTAGE")]
    pub auto_aof_rewrite_percentage: Option<String>,
    /// ... and is at least this big.
    #[arg(long = "auto-aof-rewrite-min-size", env = "RECACHED_AUTO_AOF_REWRITE_MIN_SIZE")]
    pub auto_aof_rewrite_min_size: Option<String>,
    /// Refuse writes while the last background save failed (with save rules set).
    #[arg(long = "stop-writes-on-bgsave-error", env = "RECACHED_STOP_WRITES_ON_BGSAVE_ERROR")]
    pub stop_writes_on_bgsave_error: Option<String>,
    /// The snapshot file's name in `dir`.
    #[arg(long, env = "RECACHED_DBFILENAME")]
    pub dbfilename: Option<String>,
    /// Working directory for persistence files.
    #[arg(long, env = "RECACHED_DIR")]
    pub dir: Option<String>,
    /// HMAC-SHA256 secret that signs sync tokens (JWT HS256); enables `RECACHED.TOKEN`.
    #[arg(long = "sync-secret", env = "RECACHED_SYNC_SECRET", hide_env_values = true)]
    pub sync_secret: Option<String>,
    /// A static sync token, `TOKEN:read=pat,pat;write=pat[;sub=NAME]`; repeat the flag for more.
    #[arg(long = "sync-token", env = "RECACHED_SYNC_TOKEN", hide_env_values = true, value_name = "SPEC")]
    pub sync_token: Vec<String>,
    /// Bytes of recent change groups kept so reconnecting sync clients can continue.
    #[arg(long = "sync-backlog-bytes", env = "RECACHED_SYNC_BACKLOG_BYTES")]
    pub sync_backlog_bytes: Option<String>,
    /// Seconds the backlog is kept with no sync connection (0: always), as `repl-backlog-ttl`.
    #[arg(long = "sync-backlog-ttl", env = "RECACHED_SYNC_BACKLOG_TTL")]
    pub sync_backlog_ttl: Option<String>,
    /// Bytes of pushes queued for one WebSocket before it is closed as a slow consumer (4008).
    #[arg(long = "sync-max-buffer", env = "RECACHED_SYNC_MAX_BUFFER")]
    pub sync_max_buffer: Option<String>,
    /// Largest WebSocket message or HTTP body a client may send (`maxmsg`).
    #[arg(long = "sync-max-message", env = "RECACHED_SYNC_MAX_MESSAGE")]
    pub sync_max_message: Option<String>,
    /// Origins allowed to open a WebSocket, space or comma separated; empty allows any.
    #[arg(long = "sync-allowed-origins", env = "RECACHED_SYNC_ALLOWED_ORIGINS")]
    pub sync_allowed_origins: Option<String>,
    /// Milliseconds from the upgrade to a successful SYNC.HELLO (also bounds an HTTP request head).
    #[arg(long = "sync-handshake-timeout", env = "RECACHED_SYNC_HANDSHAKE_TIMEOUT")]
    pub sync_handshake_timeout: Option<String>,
    /// Most concurrent WebSockets from one IP address; 0 for no cap.
    #[arg(long = "sync-max-sockets-per-ip", env = "RECACHED_SYNC_MAX_SOCKETS_PER_IP")]
    pub sync_max_sockets_per_ip: Option<String>,
    /// This hub's name, reported to sync clients in the HELLO reply.
    #[arg(long = "sync-hub-id", env = "RECACHED_SYNC_HUB_ID")]
    pub sync_hub_id: Option<String>,
    /// Replicate this primary: `"HOST PORT"` (as `replicaof` in redis.conf).
    #[arg(long, env = "RECACHED_REPLICAOF", value_name = "HOST PORT")]
    pub replicaof: Option<String>,
    /// Password a replica sends to its primary.
    #[arg(long, env = "RECACHED_MASTERAUTH", hide_env_values = true)]
    pub masterauth: Option<String>,
    /// User a replica authenticates as (with `masterauth`).
    #[arg(long, env = "RECACHED_MASTERUSER")]
    pub masteruser: Option<String>,
    /// A replica refuses writes (`yes`, the default).
    #[arg(long = "replica-read-only", env = "RECACHED_REPLICA_READ_ONLY")]
    pub replica_read_only: Option<String>,
    /// Seconds of silence after which a replication link is dropped.
    #[arg(long = "repl-timeout", env = "RECACHED_REPL_TIMEOUT")]
    pub repl_timeout: Option<String>,
    /// Bytes of recent changes kept for partial resyncs (the same backlog as `sync-backlog-bytes`).
    #[arg(long = "repl-backlog-size", env = "RECACHED_REPL_BACKLOG_SIZE")]
    pub repl_backlog_size: Option<String>,
    /// Refuse writes (`-NOREPLICAS`) with fewer good replicas than this (0: never).
    #[arg(long = "min-replicas-to-write", env = "RECACHED_MIN_REPLICAS_TO_WRITE")]
    pub min_replicas_to_write: Option<String>,
    /// A replica is good when it acknowledged within this many seconds.
    #[arg(long = "min-replicas-max-lag", env = "RECACHED_MIN_REPLICAS_MAX_LAG")]
    pub min_replicas_max_lag: Option<String>,
    /// The address this hub gives others to reach it (replication, failover), when it
    /// is not the one they see (NAT, a proxy).
    #[arg(long = "replica-announce-ip", env = "RECACHED_REPLICA_ANNOUNCE_IP")]
    pub replica_announce_ip: Option<String>,
    /// The port that goes with it (0: the RESP port).
    #[arg(long = "replica-announce-port", env = "RECACHED_REPLICA_ANNOUNCE_PORT")]
    pub replica_announce_port: Option<String>,
    /// On the designated replica: promote after this many ms without a word from the
    /// primary (0: never); its primary then fences itself (docs/replication.md).
    #[arg(long = "failover-timeout", env = "RECACHED_FAILOVER_TIMEOUT")]
    pub failover_timeout: Option<String>,
    /// Runtime worker threads; 1 runs everything on one thread, like Redis.
    #[arg(long = "io-threads", env = "RECACHED_IO_THREADS")]
    pub io_threads: Option<String>,
    /// Check an AOF (its manifest, an increment or a base file) and exit: 0 when sound.
    #[arg(long = "check-aof", value_name = "PATH")]
    pub check_aof: Option<PathBuf>,
    /// With --check-aof: cut a damaged increment back to its last whole record.
    #[arg(long, requires = "check_aof")]
    pub fix: bool,
    /// Dev mode: `GET /dev/token?user=NAME` on the sync port mints demo tokens; loopback only.
    #[arg(long, env = "RECACHED_DEV", value_name = "yes|no", num_args = 0..=1, default_missing_value = "yes")]
    pub dev: Option<String>,
}

impl Args {
    /// The flags given, as (parameter name, value) pairs.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 52] = [
            ("port", &self.port),
            ("ws-port", &self.ws_port),
            ("bind", &self.bind),
            ("protected-mode", &self.protected_mode),
            ("requirepass", &self.requirepass),
            ("maxclients", &self.maxclients),
            ("maxmemory", &self.maxmemory),
            ("maxmemory-policy", &self.maxmemory_policy),
            ("maxmemory-samples", &self.maxmemory_samples),
            ("maxkeys", &self.maxkeys),
            ("timeout", &self.timeout),
            ("databases", &self.databases),
            ("notify-keyspace-events", &self.notify_keyspace_events),
            ("loglevel", &self.loglevel),
            ("hz", &self.hz),
            ("busy-reply-threshold", &self.busy_reply_threshold),
            ("proto-max-bulk-len", &self.proto_max_bulk_len),
            ("client-query-buffer-limit", &self.client_query_buffer_limit),
            ("client-output-buffer-limit", &self.client_output_buffer_limit),
            ("save", &self.save),
            ("appendonly", &self.appendonly),
            ("appendfsync", &self.appendfsync),
            ("appendfilename", &self.appendfilename),
            ("appenddirname", &self.appenddirname),
            ("aof-load-truncated", &self.aof_load_truncated),
            ("auto-aof-rewrite-percentage", &self.auto_aof_rewrite_percentage),
            ("auto-aof-rewrite-min-size", &self.auto_aof_rewrite_min_size),
            ("stop-writes-on-bgsave-error", &self.stop_writes_on_bgsave_error),
            ("dbfilename", &self.dbfilename),
            ("dir", &self.dir),
            ("sync-secret", &self.sync_secret),
            ("sync-backlog-bytes", &self.sync_backlog_bytes),
            ("sync-backlog-ttl", &self.sync_backlog_ttl),
            ("sync-max-buffer", &self.sync_max_buffer),
            ("sync-max-message", &self.sync_max_message),
            ("sync-allowed-origins", &self.sync_allowed_origins),
            ("sync-handshake-timeout", &self.sync_handshake_timeout),
            ("sync-max-sockets-per-ip", &self.sync_max_sockets_per_ip),
            ("sync-hub-id", &self.sync_hub_id),
            ("repl-backlog-size", &self.repl_backlog_size),
            ("replicaof", &self.replicaof),
            ("masterauth", &self.masterauth),
            ("masteruser", &self.masteruser),
            ("replica-read-only", &self.replica_read_only),
            ("repl-timeout", &self.repl_timeout),
            ("min-replicas-to-write", &self.min_replicas_to_write),
            ("min-replicas-max-lag", &self.min_replicas_max_lag),
            ("failover-timeout", &self.failover_timeout),
            ("replica-announce-ip", &self.replica_announce_ip),
            ("replica-announce-port", &self.replica_announce_port),
            ("io-threads", &self.io_threads),
            ("dev", &self.dev),
        ];
        all.into_iter().filter_map(|(k, v)| v.as_deref().map(|v| (k, v))).collect()
    }
}

/// One output-buffer class limit (`client-output-buffer-limit`): a hard cap, and a soft
/// cap that may be exceeded for at most `soft_secs`. Zero disables a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimit {
    /// Bytes above which the client is closed at once.
    pub hard: u64,
    /// Bytes above which the client is closed if it stays there `soft_secs`.
    pub soft: u64,
    /// Seconds the soft cap may be exceeded.
    pub soft_secs: u64,
}

/// Output-buffer limits per client class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputLimits {
    /// Normal clients (Redis default: none).
    pub normal: BufferLimit,
    /// Replicas.
    pub replica: BufferLimit,
    /// Pub/sub subscribers.
    pub pubsub: BufferLimit,
}

impl Default for OutputLimits {
    fn default() -> OutputLimits {
        OutputLimits {
            normal: BufferLimit { hard: 0, soft: 0, soft_secs: 0 },
            replica: BufferLimit { hard: 256 << 20, soft: 64 << 20, soft_secs: 60 },
            pubsub: BufferLimit { hard: 32 << 20, soft: 8 << 20, soft_secs: 60 },
        }
    }
}

impl fmt::Display for OutputLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |l: &BufferLimit| format!("{} {} {}", l.hard, l.soft, l.soft_secs);
        write!(f, "normal {} slave {} pubsub {}", one(&self.normal), one(&self.replica), one(&self.pubsub))
    }
}

/// The effective configuration of a running hub.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `port`: RESP port (0: any free port).
    pub port: u16,
    /// `ws-port`: WebSocket sync and HTTP port.
    pub ws_port: u16,
    /// `bind`: addresses to listen on.
    pub bind: Vec<String>,
    /// `protected-mode`: refuse non-loopback listening without a password.
    pub protected_mode: bool,
    /// `requirepass`: password of the default user; empty for none.
    pub requirepass: String,
    /// `maxclients`.
    pub maxclients: usize,
    /// `maxmemory` in bytes; 0 for none.
    pub maxmemory: u64,
    /// `maxmemory-policy`.
    pub maxmemory_policy: Policy,
    /// `maxmemory-samples`.
    pub maxmemory_samples: u64,
    /// `maxmemory-clients` (stored only).
    pub maxmemory_clients: u64,
    /// `maxmemory-eviction-tenacity` (stored only).
    pub maxmemory_eviction_tenacity: u64,
    /// `maxkeys`; 0 for none.
    pub maxkeys: u64,
    /// `lfu-log-factor`.
    pub lfu_log_factor: u64,
    /// `lfu-decay-time` (minutes).
    pub lfu_decay_time: u64,
    /// `timeout`: idle seconds before a client is closed; 0 never.
    pub timeout: u64,
    /// `databases`.
    pub databases: usize,
    /// `notify-keyspace-events`.
    pub notify: KeyspaceFlags,
    /// `loglevel` as written.
    pub loglevel: String,
    /// `hz`.
    pub hz: u64,
    /// `busy-reply-threshold` (`lua-time-limit`) in ms.
    pub busy_reply_threshold: u64,
    /// `proto-max-bulk-len`.
    pub proto_max_bulk_len: u64,
    /// `client-query-buffer-limit`.
    pub client_query_buffer_limit: u64,
    /// `client-output-buffer-limit`.
    pub output_limits: OutputLimits,
    /// `tcp-keepalive` seconds.
    pub tcp_keepalive: u64,
    /// `save` rules as written (the persistence layer reads them).
    pub save: String,
    /// `appendonly`.
    pub appendonly: bool,
    /// `appendfsync` (`always`, `everysec`, `no`).
    pub appendfsync: String,
    /// `dir`.
    pub dir: String,
    /// `dbfilename`.
    pub dbfilename: String,
    /// `appendfilename`.
    pub appendfilename: String,
    /// `appenddirname`.
    pub appenddirname: String,
    /// `aof-load-truncated`.
    pub aof_load_truncated: bool,
    /// `auto-aof-rewrite-percentage`.
    pub auto_aof_rewrite_percentage: u64,
    /// `auto-aof-rewrite-min-size`.
    pub auto_aof_rewrite_min_size: u64,
    /// `stop-writes-on-bgsave-error`.
    pub stop_writes_on_bgsave_error: bool,
    /// Redis parameters accepted for compatibility whose value changes nothing here
    /// (`rdbcompression`, `aof-use-rdb-preamble`, …), by name.
    pub accepted: std::collections::BTreeMap<&'static str, String>,
    /// `sync-secret`: HMAC secret of sync tokens; empty for none.
    pub sync_secret: String,
    /// `sync-token`: static token specs (`TOKEN:read=…;write=…[;sub=…]`), validated.
    pub sync_tokens: Vec<String>,
    /// `sync-backlog-bytes`.
    pub sync_backlog_bytes: u64,
    /// `sync-backlog-ttl` in seconds.
    pub sync_backlog_ttl: u64,
    /// `sync-max-buffer`: per-socket bound on queued pushes.
    pub sync_max_buffer: u64,
    /// `sync-max-message`: the protocol's `maxmsg`, also the HTTP body bound.
    pub sync_max_message: u64,
    /// `sync-allowed-origins`; empty allows any.
    pub sync_allowed_origins: Vec<String>,
    /// `sync-handshake-timeout` in milliseconds.
    pub sync_handshake_timeout: u64,
    /// `sync-max-sockets-per-ip`; 0 for no cap.
    pub sync_max_sockets_per_ip: u64,
    /// `sync-hub-id`.
    pub sync_hub_id: String,
    /// `replicaof`: the primary this hub replicates at start.
    pub replicaof: Option<(String, u16)>,
    /// `masterauth`.
    pub masterauth: String,
    /// `masteruser`.
    pub masteruser: String,
    /// `replica-read-only`.
    pub replica_read_only: bool,
    /// `repl-timeout` in seconds.
    pub repl_timeout: u64,
    /// `min-replicas-to-write`.
    pub min_replicas_to_write: u64,
    /// `min-replicas-max-lag` in seconds.
    pub min_replicas_max_lag: u64,
    /// `failover-timeout` in ms (0: off).
    pub failover_timeout: u64,
    /// `replica-announce-ip` (empty: the address the peer sees).
    pub replica_announce_ip: String,
    /// `replica-announce-port` (0: the RESP port).
    pub replica_announce_port: u16,
    /// `io-threads`: tokio worker threads (1: a single-threaded runtime).
    pub io_threads: usize,
    /// `dev`: mint demo tokens on `GET /dev/token` (loopback only; [`crate::dev`]).
    pub dev: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            port: 6379,
            ws_port: 6380,
            bind: vec!["127.0.0.1".to_string()],
            protected_mode: true,
            requirepass: String::new(),
            maxclients: 10_000,
            maxmemory: 0,
            maxmemory_policy: Policy::NoEviction,
            maxmemory_samples: 5,
            maxmemory_clients: 0,
            maxmemory_eviction_tenacity: 10,
            maxkeys: 0,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            timeout: 0,
            databases: 16,
            notify: KeyspaceFlags::default(),
            loglevel: "notice".to_string(),
            hz: 10,
            busy_reply_threshold: 5000,
            proto_max_bulk_len: 512 << 20,
            client_query_buffer_limit: 1 << 30,
            output_limits: OutputLimits::default(),
            tcp_keepalive: 300,
            save: String::new(),
            appendonly: false,
            appendfsync: "everysec".to_string(),
            dir: ".".to_string(),
            // Not `dump.rdb`: the file is Recached's own format, not Redis's RDB.
            dbfilename: "dump.rcs".to_string(),
            appendfilename: "appendonly.aof".to_string(),
            appenddirname: "appendonlydir".to_string(),
            aof_load_truncated: true,
            auto_aof_rewrite_percentage: 100,
            auto_aof_rewrite_min_size: 64 << 20,
            stop_writes_on_bgsave_error: true,
            accepted: ACCEPTED.iter().map(|(k, v, _)| (*k, v.to_string())).collect(),
            sync_secret: String::new(),
            sync_tokens: Vec::new(),
            sync_backlog_bytes: 16 << 20,
            sync_backlog_ttl: 3600,
            sync_max_buffer: 8 << 20,
            sync_max_message: 1 << 20,
            sync_allowed_origins: Vec::new(),
            sync_handshake_timeout: 10_000,
            sync_max_sockets_per_ip: 2048,
            sync_hub_id: "recached".to_string(),
            replicaof: None,
            masterauth: String::new(),
            masteruser: String::new(),
            replica_read_only: true,
            repl_timeout: 60,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            failover_timeout: 0,
            replica_announce_ip: String::new(),
            replica_announce_port: 0,
            io_threads: 1,
            dev: false,
        }
    }
}

/// One configuration parameter.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Its name, as `CONFIG GET` and the config file spell it.
    pub name: &'static str,
    /// Whether `CONFIG SET` may change it on a running hub.
    pub mutable: bool,
    /// Whether its value is masked when printed.
    pub secret: bool,
}

const fn p(name: &'static str, mutable: bool) -> Param {
    Param { name, mutable, secret: false }
}

/// Every parameter, in `CONFIG GET *` order.
pub static PARAMS: &[Param] = &[
    p("port", false),
    p("ws-port", false),
    p("bind", false),
    p("protected-mode", true),
    Param { name: "requirepass", mutable: true, secret: true },
    p("maxclients", true),
    p("maxmemory", true),
    p("maxmemory-policy", true),
    p("maxmemory-samples", true),
    p("maxmemory-clients", true),
    p("maxmemory-eviction-tenacity", true),
    p("maxkeys", true),
    p("lfu-log-factor", true),
    p("lfu-decay-time", true),
    p("timeout", true),
    p("databases", false),
    p("notify-keyspace-events", true),
    p("loglevel", false),
    p("hz", true),
    p("busy-reply-threshold", true),
    p("proto-max-bulk-len", true),
    p("client-query-buffer-limit", true),
    p("client-output-buffer-limit", true),
    p("tcp-keepalive", true),
    p("save", true),
    p("appendonly", true),
    p("appendfsync", true),
    p("dir", true),
    p("dbfilename", true),
    p("appendfilename", false),
    p("appenddirname", false),
    p("aof-load-truncated", true),
    p("auto-aof-rewrite-percentage", true),
    p("auto-aof-rewrite-min-size", true),
    p("stop-writes-on-bgsave-error", true),
    p("aof-use-rdb-preamble", true),
    p("aof-timestamp-enabled", true),
    p("aof-rewrite-incremental-fsync", true),
    p("rdb-save-incremental-fsync", true),
    p("no-appendfsync-on-rewrite", true),
    p("rdbcompression", true),
    p("rdbchecksum", false),
    p("rdb-del-sync-files", true),
    Param { name: "sync-secret", mutable: false, secret: true },
    Param { name: "sync-token", mutable: false, secret: true },
    p("sync-backlog-bytes", false),
    p("sync-backlog-ttl", false),
    p("sync-max-buffer", false),
    p("sync-max-message", false),
    p("sync-allowed-origins", false),
    p("sync-handshake-timeout", false),
    p("sync-max-sockets-per-ip", false),
    p("sync-hub-id", false),
    p("replicaof", false),
    Param { name: "masterauth", mutable: true, secret: true },
    p("masteruser", true),
    p("replica-read-only", true),
    p("repl-timeout", true),
    p("repl-backlog-size", false),
    p("min-replicas-to-write", true),
    p("min-replicas-max-lag", true),
    p("failover-timeout", false),
    p("replica-announce-ip", true),
    p("replica-announce-port", true),
    p("repl-diskless-sync", true),
    p("repl-diskless-sync-delay", true),
    p("repl-diskless-sync-max-replicas", true),
    p("repl-diskless-load", true),
    p("repl-ping-replica-period", true),
    p("repl-backlog-ttl", true),
    p("repl-disable-tcp-nodelay", true),
    p("replica-serve-stale-data", true),
    p("replica-priority", true),
    p("replica-lazy-flush", true),
    p("replica-announced", true),
    p("io-threads", false),
    p("dev", false),
];

/// Parameters accepted for compatibility (a `redis.conf` carries them) whose value changes
/// nothing here: name, default, kind (`b` yes/no). The streamed snapshot is always
/// checksummed and never compressed; the AOF always starts from a snapshot base.
const ACCEPTED: &[(&str, &str, char)] = &[
    ("aof-use-rdb-preamble", "yes", 'b'),
    ("aof-timestamp-enabled", "no", 'b'),
    ("aof-rewrite-incremental-fsync", "yes", 'b'),
    ("rdb-save-incremental-fsync", "yes", 'b'),
    ("no-appendfsync-on-rewrite", "no", 'b'),
    ("rdbcompression", "yes", 'b'),
    ("rdbchecksum", "yes", 'b'),
    ("rdb-del-sync-files", "no", 'b'),
    // Scripts always replicate their effects (Redis 7 removed the other mode).
    ("lua-replicate-commands", "yes", 'b'),
    // Full syncs are always streamed from memory, beside the live stream.
    ("repl-diskless-sync", "yes", 'b'),
    ("repl-diskless-sync-delay", "5", 'i'),
    ("repl-diskless-sync-max-replicas", "0", 'i'),
    ("repl-diskless-load", "disabled", 's'),
    // Heartbeats run every 100 ms both ways (docs/replication.md).
    ("repl-ping-replica-period", "10", 'i'),
    ("repl-backlog-ttl", "3600", 'i'),
    ("repl-disable-tcp-nodelay", "no", 'b'),
    ("replica-serve-stale-data", "yes", 'b'),
    ("replica-priority", "100", 'i'),
    ("replica-lazy-flush", "no", 'b'),
    ("replica-announced", "yes", 'b'),
];

/// Finds a parameter by name, case-insensitively.
pub fn param(name: &str) -> Option<&'static Param> {
    // Redis's old names of renamed parameters.
    const OLD: &[(&str, &str)] = &[
        ("lua-time-limit", "busy-reply-threshold"),
        ("slaveof", "replicaof"),
        ("slave-read-only", "replica-read-only"),
        ("min-slaves-to-write", "min-replicas-to-write"),
        ("min-slaves-max-lag", "min-replicas-max-lag"),
        ("repl-ping-slave-period", "repl-ping-replica-period"),
        ("slave-serve-stale-data", "replica-serve-stale-data"),
        ("slave-priority", "replica-priority"),
        ("slave-lazy-flush", "replica-lazy-flush"),
        ("slave-announced", "replica-announced"),
        ("slave-announce-ip", "replica-announce-ip"),
        ("slave-announce-port", "replica-announce-port"),
    ];
    let name = OLD.iter().find(|(old, _)| old.eq_ignore_ascii_case(name)).map(|(_, new)| *new).unwrap_or(name);
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

pub use recached_engine::util::parse_memory;

fn parse_int(text: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = text.trim().parse().map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    if n < min || n > max {
        return Err(format!("argument must be between {} and {} inclusive", min, max));
    }
    Ok(n)
}

fn parse_mem_bounded(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let n = parse_memory(text).ok_or_else(|| "argument must be a memory value".to_string())?;
    if n < min || n > max {
        return Err(format!("argument must be between {} and {} inclusive", min, max));
    }
    Ok(n)
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".to_string()),
    }
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

fn parse_output_limits(text: &str, current: OutputLimits) -> Result<OutputLimits, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || words.len() % 4 != 0 {
        return Err("Wrong number of arguments in buffer limit configuration.".to_string());
    }
    let mut out = current;
    for chunk in words.chunks(4) {
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.".to_string();
        let hard = parse_memory(chunk[1]).ok_or_else(bad)?;
        let soft = parse_memory(chunk[2]).ok_or_else(bad)?;
        let soft_secs = chunk[3].parse::<u64>().map_err(|_| bad())?;
        let limit = BufferLimit { hard, soft, soft_secs };
        match chunk[0].to_ascii_lowercase().as_str() {
            "normal" => out.normal = limit,
            "slave" | "replica" => out.replica = limit,
            "pubsub" => out.pubsub = limit,
            _ => return Err("Invalid client class specified in buffer limit configuration.".to_string()),
        }
    }
    Ok(out)
}

fn parse_save(text: &str) -> Result<String, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() % 2 != 0 || words.iter().any(|w| w.parse::<u64>().is_err()) {
        return Err("Invalid save parameters".to_string());
    }
    Ok(words.join(" "))
}

impl Settings {
    /// Sets one parameter from its text form. `Err` is the reason, as Redis words it after
    /// `CONFIG SET failed (possibly related to argument '…') - `.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let Some(param) = param(name) else { return Err(format!("unknown parameter '{}'", name)) };
        match param.name {
            "port" => self.port = parse_int(value, 0, 65535)? as u16,
            "ws-port" => self.ws_port = parse_int(value, 0, 65535)? as u16,
            "bind" => {
                let addrs: Vec<String> = value.split_whitespace().map(str::to_string).collect();
                if addrs.is_empty() {
                    return Err("Too many bind addresses specified.".to_string());
                }
                self.bind = addrs;
            }
            "protected-mode" => self.protected_mode = parse_bool(value)?,
            "requirepass" => self.requirepass = value.to_string(),
            "maxclients" => self.maxclients = parse_int(value, 1, u32::MAX as i64)? as usize,
            "maxmemory" => self.maxmemory = parse_mem_bounded(value, 0, i64::MAX as u64)?,
            "maxmemory-policy" => {
                self.maxmemory_policy = Policy::parse(value.trim()).ok_or_else(|| {
                    "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction".to_string()
                })?
            }
            "maxmemory-samples" => self.maxmemory_samples = parse_int(value, 1, i32::MAX as i64)? as u64,
            // Accepted for compatibility; client memory is bounded by the buffer limits.
            "maxmemory-clients" => self.maxmemory_clients = parse_mem_bounded(value, 0, i64::MAX as u64)?,
            "maxmemory-eviction-tenacity" => self.maxmemory_eviction_tenacity = parse_int(value, 0, 100)? as u64,
            "maxkeys" => self.maxkeys = parse_int(value, 0, i64::MAX)? as u64,
            "lfu-log-factor" => self.lfu_log_factor = parse_int(value, 0, i32::MAX as i64)? as u64,
            "lfu-decay-time" => self.lfu_decay_time = parse_int(value, 0, i32::MAX as i64)? as u64,
            "timeout" => self.timeout = parse_int(value, 0, i32::MAX as i64)? as u64,
            "databases" => self.databases = parse_int(value, 1, i32::MAX as i64)? as usize,
            "notify-keyspace-events" => {
                self.notify = KeyspaceFlags::parse(value)
                    .ok_or_else(|| "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".to_string())?
            }
            "loglevel" => {
                let v = value.trim().to_ascii_lowercase();
                if !matches!(v.as_str(), "debug" | "verbose" | "notice" | "warning" | "nothing" | "trace" | "info" | "warn" | "error") {
                    return Err("argument(s) must be one of the following: debug, verbose, notice, warning, nothing".to_string());
                }
                self.loglevel = v;
            }
            "hz" => self.hz = parse_int(value, 0, i32::MAX as i64)?.clamp(1, 500) as u64,
            "busy-reply-threshold" => self.busy_reply_threshold = parse_int(value, 0, i64::MAX)? as u64,
            "proto-max-bulk-len" => self.proto_max_bulk_len = parse_mem_bounded(value, 1 << 20, i64::MAX as u64)?,
            "client-query-buffer-limit" => {
                self.client_query_buffer_limit = parse_mem_bounded(value, 1 << 20, i64::MAX as u64)?
            }
            "client-output-buffer-limit" => self.output_limits = parse_output_limits(value, self.output_limits)?,
            "tcp-keepalive" => self.tcp_keepalive = parse_int(value, 0, i32::MAX as i64)? as u64,
            "save" => self.save = parse_save(value)?,
            "appendonly" => self.appendonly = parse_bool(value)?,
            "appendfsync" => {
                let v = value.trim().to_ascii_lowercase();
                if !matches!(v.as_str(), "always" | "everysec" | "no") {
                    return Err("argument(s) must be one of the following: everysec, always, no".to_string());
                }
                self.appendfsync = v;
            }
            "appenddirname" => {
                if !recached_engine::aof::safe_file_name(value) {
                    return Err("appenddirname can't be a path, just a dirname".to_string());
                }
                self.appenddirname = value.to_string()
            }
            "aof-load-truncated" => self.aof_load_truncated = parse_bool(value)?,
            "auto-aof-rewrite-percentage" => self.auto_aof_rewrite_percentage = parse_int(value, 0, i32::MAX as i64)? as u64,
            "auto-aof-rewrite-min-size" => self.auto_aof_rewrite_min_size = parse_mem_bounded(value, 0, i64::MAX as u64)?,
            "stop-writes-on-bgsave-error" => self.stop_writes_on_bgsave_error = parse_bool(value)?,
            name if ACCEPTED.iter().any(|(n, _, _)| *n == name) => {
                let (key, _, kind) = ACCEPTED.iter().find(|(n, _, _)| *n == name).copied().unwrap_or(("", "", 'b'));
                let v = match kind {
                    'b' => yes_no(parse_bool(value)?),
                    'i' => parse_int(value, 0, i32::MAX as i64)?.to_string(),
                    _ => {
                        let v = value.trim().to_ascii_lowercase();
                        if key == "repl-diskless-load" && !matches!(v.as_str(), "disabled" | "on-empty-db" | "swapdb") {
                            return Err("argument(s) must be one of the following: disabled, on-empty-db, swapdb".to_string());
                        }
                        v
                    }
                };
                self.accepted.insert(key, v);
            }
            "dir" => self.dir = value.to_string(),
            "dbfilename" => {
                if value.contains('/') {
                    return Err("dbfilename can't be a path, just a filename".to_string());
                }
                self.dbfilename = value.to_string();
            }
            "appendfilename" => {
                if !recached_engine::aof::safe_file_name(value) {
                    return Err("appendfilename can't be a path, just a filename".to_string());
                }
                self.appendfilename = value.to_string()
            }
            "sync-secret" => self.sync_secret = value.to_string(),
            // Repeatable: each flag or config-file line adds one token.
            "sync-token" => {
                crate::tokens::StaticToken::parse(value)?;
                self.sync_tokens.push(value.to_string());
            }
            "sync-backlog-bytes" => self.sync_backlog_bytes = parse_mem_bounded(value, 1 << 10, i64::MAX as u64)?,
            "sync-backlog-ttl" => self.sync_backlog_ttl = parse_int(value, 0, i32::MAX as i64)? as u64,
            "sync-max-buffer" => self.sync_max_buffer = parse_mem_bounded(value, 1 << 10, i64::MAX as u64)?,
            "sync-max-message" => self.sync_max_message = parse_mem_bounded(value, 1 << 10, 512 << 20)?,
            "sync-allowed-origins" => {
                self.sync_allowed_origins =
                    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|o| !o.is_empty()).map(str::to_string).collect()
            }
            "sync-handshake-timeout" => self.sync_handshake_timeout = parse_int(value, 1, i32::MAX as i64)? as u64,
            "sync-max-sockets-per-ip" => self.sync_max_sockets_per_ip = parse_int(value, 0, i32::MAX as i64)? as u64,
            "sync-hub-id" => {
                if value.is_empty() || value.len() > 64 {
                    return Err("argument must be 1 to 64 bytes".to_string());
                }
                self.sync_hub_id = value.to_string()
            }
            "replicaof" => {
                let words: Vec<&str> = value.split_whitespace().collect();
                self.replicaof = match words.as_slice() {
                    [] => None,
                    [no, one] if no.eq_ignore_ascii_case("no") && one.eq_ignore_ascii_case("one") => None,
                    [host, port] => {
                        let port = parse_int(port, 1, 65535).map_err(|_| "Invalid master port".to_string())? as u16;
                        Some((host.to_string(), port))
                    }
                    _ => return Err("argument must be 'HOST PORT' or 'no one'".to_string()),
                };
            }
            "masterauth" => self.masterauth = value.to_string(),
            "masteruser" => self.masteruser = value.to_string(),
            "replica-read-only" => self.replica_read_only = parse_bool(value)?,
            "repl-timeout" => self.repl_timeout = parse_int(value, 1, i32::MAX as i64)? as u64,
            "repl-backlog-size" => self.sync_backlog_bytes = parse_mem_bounded(value, 1 << 10, i64::MAX as u64)?,
            "min-replicas-to-write" => self.min_replicas_to_write = parse_int(value, 0, i32::MAX as i64)? as u64,
            "min-replicas-max-lag" => self.min_replicas_max_lag = parse_int(value, 0, i32::MAX as i64)? as u64,
            "replica-announce-ip" => self.replica_announce_ip = value.trim().to_string(),
            "replica-announce-port" => self.replica_announce_port = parse_int(value, 0, 65535)? as u16,
            "failover-timeout" => {
                let ms = parse_int(value, 0, i32::MAX as i64)? as u64;
                if ms > 0 && ms < 500 {
                    return Err("argument must be 0 (off) or at least 500 ms (heartbeats and fence checks run every 100 ms)".to_string());
                }
                self.failover_timeout = ms
            }
            "io-threads" => self.io_threads = parse_int(value, 1, 128)? as usize,
            "dev" => self.dev = parse_bool(value)?,
            _ => return Err(format!("unknown parameter '{}'", name)),
        }
        Ok(())
    }

    /// The text form of a parameter, as `CONFIG GET` shows it.
    pub fn get(&self, name: &str) -> Option<String> {
        let param = param(name)?;
        Some(match param.name {
            "port" => self.port.to_string(),
            "ws-port" => self.ws_port.to_string(),
            "bind" => self.bind.join(" "),
            "protected-mode" => yes_no(self.protected_mode),
            "requirepass" => self.requirepass.clone(),
            "maxclients" => self.maxclients.to_string(),
            "maxmemory" => self.maxmemory.to_string(),
            "maxmemory-policy" => self.maxmemory_policy.name().to_string(),
            "maxmemory-samples" => self.maxmemory_samples.to_string(),
            "maxmemory-clients" => self.maxmemory_clients.to_string(),
            "maxmemory-eviction-tenacity" => self.maxmemory_eviction_tenacity.to_string(),
            "maxkeys" => self.maxkeys.to_string(),
            "lfu-log-factor" => self.lfu_log_factor.to_string(),
            "lfu-decay-time" => self.lfu_decay_time.to_string(),
            "timeout" => self.timeout.to_string(),
            "databases" => self.databases.to_string(),
            "notify-keyspace-events" => self.notify.to_string(),
            "loglevel" => self.loglevel.clone(),
            "hz" => self.hz.to_string(),
            "busy-reply-threshold" => self.busy_reply_threshold.to_string(),
            "proto-max-bulk-len" => self.proto_max_bulk_len.to_string(),
            "client-query-buffer-limit" => self.client_query_buffer_limit.to_string(),
            "client-output-buffer-limit" => self.output_limits.to_string(),
            "tcp-keepalive" => self.tcp_keepalive.to_string(),
            "save" => self.save.clone(),
            "appendonly" => yes_no(self.appendonly),
            "appendfsync" => self.appendfsync.clone(),
            "dir" => self.dir.clone(),
            "dbfilename" => self.dbfilename.clone(),
            "appendfilename" => self.appendfilename.clone(),
            "appenddirname" => self.appenddirname.clone(),
            "aof-load-truncated" => yes_no(self.aof_load_truncated),
            "auto-aof-rewrite-percentage" => self.auto_aof_rewrite_percentage.to_string(),
            "auto-aof-rewrite-min-size" => self.auto_aof_rewrite_min_size.to_string(),
            "stop-writes-on-bgsave-error" => yes_no(self.stop_writes_on_bgsave_error),
            name if ACCEPTED.iter().any(|(n, _, _)| *n == name) => self.accepted.get(name).cloned().unwrap_or_default(),
            "sync-secret" => self.sync_secret.clone(),
            "sync-token" => self.sync_tokens.join(" "),
            "sync-backlog-bytes" => self.sync_backlog_bytes.to_string(),
            "sync-backlog-ttl" => self.sync_backlog_ttl.to_string(),
            "sync-max-buffer" => self.sync_max_buffer.to_string(),
            "sync-max-message" => self.sync_max_message.to_string(),
            "sync-allowed-origins" => self.sync_allowed_origins.join(" "),
            "sync-handshake-timeout" => self.sync_handshake_timeout.to_string(),
            "sync-max-sockets-per-ip" => self.sync_max_sockets_per_ip.to_string(),
            "sync-hub-id" => self.sync_hub_id.clone(),
            "replicaof" => self.replicaof.as_ref().map(|(h, p)| format!("{} {}", h, p)).unwrap_or_default(),
            "masterauth" => self.masterauth.clone(),
            "masteruser" => self.masteruser.clone(),
            "replica-read-only" => yes_no(self.replica_read_only),
            "repl-timeout" => self.repl_timeout.to_string(),
            "repl-backlog-size" => self.sync_backlog_bytes.to_string(),
            "min-replicas-to-write" => self.min_replicas_to_write.to_string(),
            "min-replicas-max-lag" => self.min_replicas_max_lag.to_string(),
            "failover-timeout" => self.failover_timeout.to_string(),
            "replica-announce-ip" => self.replica_announce_ip.clone(),
            "replica-announce-port" => self.replica_announce_port.to_string(),
            "io-threads" => self.io_threads.to_string(),
            "dev" => yes_no(self.dev),
            _ => return None,
        })
    }

    /// Reads a config file in redis.conf format: one `name value…` per line, `#` starts a
    /// comment line, values may be quoted (`requirepass "a b"`).
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        self.apply_text(&text, &path.display().to_string())
    }

    /// Applies config-file text; `origin` names it in errors.
    pub fn apply_text(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words = recached_engine::resp::frame::split_args(line.as_bytes()).ok_or_else(|| {
                ConfigError::Invalid(format!("{}:{}: unbalanced quotes in '{}'", origin, n + 1, line))
            })?;
            let words: Vec<String> = words.into_iter().map(|w| String::from_utf8_lossy(&w).into_owned()).collect();
            let Some((name, values)) = words.split_first() else { continue };
            if param(name).is_none() {
                return Err(ConfigError::Invalid(format!("{}:{}: unknown parameter '{}'", origin, n + 1, name)));
            }
            self.set(name, &values.join(" "))
                .map_err(|why| ConfigError::Invalid(format!("{}:{}: '{}': {}", origin, n + 1, name, why)))?;
        }
        Ok(())
    }

    /// Builds the effective settings: defaults, then the config file, then flags and
    /// environment variables.
    pub fn from_args(args: &Args) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        if let Some(path) = &args.config {
            s.apply_file(path)?;
        }
        for (name, value) in args.pairs() {
            s.set(name, value).map_err(|why| ConfigError::Invalid(format!("--{}: {}", name, why)))?;
        }
        for spec in &args.sync_token {
            s.set("sync-token", spec).map_err(|why| ConfigError::Invalid(format!("--sync-token: {}", why)))?;
        }
        Ok(s)
    }

    /// Every parameter and its value, secrets masked, for the start-up log.
    pub fn masked(&self) -> Vec<(&'static str, String)> {
        PARAMS
            .iter()
            .map(|p| {
                let v = self.get(p.name).unwrap_or_default();
                let v = if p.secret && !v.is_empty() { "********".to_string() } else { v };
                (p.name, v)
            })
            .collect()
    }

    /// The engine settings these map onto.
    pub fn engine_config(&self) -> recached_engine::Config {
        let mut c = recached_engine::Config { databases: self.databases, ..Default::default() };
        self.apply_engine(&mut c);
        c
    }

    /// Copies the runtime-changeable engine settings into `c`.
    pub fn apply_engine(&self, c: &mut recached_engine::Config) {
        c.maxmemory = self.maxmemory as usize;
        c.maxkeys = self.maxkeys as usize;
        c.policy = self.maxmemory_policy;
        c.maxmemory_samples = self.maxmemory_samples as usize;
        c.lfu_log_factor = self.lfu_log_factor as u32;
        c.lfu_decay_time = self.lfu_decay_time as u32;
        c.keyspace_events = self.notify.engine_mask();
    }

    /// Whether any bind address reaches beyond the loopback interface.
    pub fn binds_beyond_loopback(&self) -> bool {
        self.bind.iter().any(|a| !is_loopback(a))
    }
}

/// Whether a bind address is loopback only (`127.x`, `::1`, `localhost`).
pub fn is_loopback(addr: &str) -> bool {
    let a = addr.trim_start_matches('-');
    if a.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match a.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("100"), Some(100));
        assert_eq!(parse_memory("1k"), Some(1000));
        assert_eq!(parse_memory("1kb"), Some(1024));
        assert_eq!(parse_memory("5MB"), Some(5 << 20));
        assert_eq!(parse_memory("2gb"), Some(2 << 30));
        assert_eq!(parse_memory("1g"), Some(1_000_000_000));
        assert_eq!(parse_memory("abc"), None);
        assert_eq!(parse_memory("-1"), None);
        assert_eq!(parse_memory(""), None);
        assert_eq!(parse_memory("99999999999999999999gb"), None);
    }

    #[test]
    fn set_and_get_with_redis_errors() {
        let mut s = Settings::default();
        s.set("maxmemory", "100mb").unwrap();
        assert_eq!(s.get("maxmemory").unwrap(), "104857600");
        assert_eq!(s.set("maxmemory", "abc").unwrap_err(), "argument must be a memory value");
        assert_eq!(s.set("maxclients", "abc").unwrap_err(), "argument couldn't be parsed into an integer");
        assert_eq!(s.set("maxclients", "0").unwrap_err(), "argument must be between 1 and 4294967295 inclusive");
        assert_eq!(s.set("appendonly", "maybe").unwrap_err(), "argument must be 'yes' or 'no'");
        assert!(s.set("maxmemory-policy", "foo").unwrap_err().starts_with("argument(s) must be one of"));
        s.set("MAXMEMORY-POLICY", "allkeys-lru").unwrap();
        assert_eq!(s.get("maxmemory-policy").unwrap(), "allkeys-lru");
        assert_eq!(s.get("client-output-buffer-limit").unwrap(), "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60");
        s.set("client-output-buffer-limit", "pubsub 1mb 0 0").unwrap();
        assert_eq!(s.output_limits.pubsub, BufferLimit { hard: 1 << 20, soft: 0, soft_secs: 0 });
        assert_eq!(s.set("save", "abc").unwrap_err(), "Invalid save parameters");
        s.set("save", "3600 1 300 100").unwrap();
        assert!(s.get("nosuch").is_none());
    }

    #[test]
    fn file_then_flags() {
        let mut s = Settings::default();
        s.apply_text("# comment\nport 7000\n\nrequirepass \"a b\"\nmaxmemory 1mb\nbind 127.0.0.1 ::1\n", "test.conf").unwrap();
        assert_eq!(s.port, 7000);
        assert_eq!(s.requirepass, "a b");
        assert_eq!(s.bind, vec!["127.0.0.1", "::1"]);
        let err = s.apply_text("nosuch 1\n", "test.conf").unwrap_err().to_string();
        assert_eq!(err, "test.conf:1: unknown parameter 'nosuch'");
        let err = s.apply_text("port abc\n", "x.conf").unwrap_err().to_string();
        assert!(err.contains("x.conf:1: 'port'"), "{}", err);

        let dir = std::env::temp_dir().join(format!("recached-config-test-{}", std::process::id()));
        std::fs::write(&dir, "port 7000\nmaxclients 5\n").unwrap();
        let args = Args { config: Some(dir.clone()), port: Some("7001".into()), ..Default::default() };
        let s = Settings::from_args(&args).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(s.port, 7001, "flags override the file");
        assert_eq!(s.maxclients, 5);
    }

    #[test]
    fn secrets_are_masked() {
        let mut s = Settings::default();
        s.set("requirepass", "hunter2").unwrap();
        let shown = s.masked();
        assert!(shown.iter().any(|(k, v)| *k == "requirepass" && v == "********"));
        assert!(!format!("{:?}", shown).contains("hunter2"));
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0"));
        assert!(!is_loopback("*"));
        assert!(!is_loopback("192.168.1.4"));
    }

    #[test]
    fn sync_flags() {
        let args = Args::try_parse_from([
            "recached",
            "--sync-secret",
            "s3cret",
            "--sync-token",
            "a:read=x:*;write=x:*",
            "--sync-token",
            "b:read=*",
            "--sync-max-buffer",
            "1mb",
            "--sync-allowed-origins",
            "https://a.example, https://b.example",
        ])
        .unwrap();
        let s = Settings::from_args(&args).unwrap();
        assert_eq!(s.sync_tokens.len(), 2);
        assert_eq!(s.sync_max_buffer, 1 << 20);
        assert_eq!(s.sync_allowed_origins, vec!["https://a.example", "https://b.example"]);
        let shown = format!("{:?}", s.masked());
        assert!(!shown.contains("s3cret") && !shown.contains("a:read"), "{}", shown);
        let bad = Args::try_parse_from(["recached", "--sync-token", "nocolon"]).unwrap();
        assert!(Settings::from_args(&bad).unwrap_err().to_string().starts_with("--sync-token: "));
        let mut s = Settings::default();
        s.apply_text("sync-token \"t1:read=a:*\"\nsync-token t2:read=*\nsync-max-message 64kb\n", "f.conf").unwrap();
        assert_eq!((s.sync_tokens.len(), s.sync_max_message), (2, 64 << 10));
        assert!(s.set("sync-max-message", "1gb").is_err(), "bounded");
    }

    #[test]
    fn clap_reads_env_names() {
        let args = Args::try_parse_from(["recached", "--port", "0", "--maxmemory-policy", "allkeys-lru", "--ws-port", "7"]).unwrap();
        assert_eq!(args.port.as_deref(), Some("0"));
        assert_eq!(args.ws_port.as_deref(), Some("7"));
        assert_eq!(args.maxmemory_policy.as_deref(), Some("allkeys-lru"));
    }
}
