//! The engine: sixteen databases, sessions, transactions, the outbox.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use crate::change::{Change, ChangeGroup, EventClass, KeyEvent};
use crate::command::{self, CommandSpec, Handler};
use crate::db::{entry_mem, Db, Entry};
use crate::eviction::{self, Policy};
use crate::reply::{errors, Reply};
use crate::rng::Rng;
use crate::value::{blob, Blob, Hash, Kind, List, Set, Value};
use crate::zset::SortedSet;

/// Engine settings. Hosts map their configuration (flags, `CONFIG SET`) onto this.
#[derive(Debug, Clone)]
pub struct Config {
    /// Number of logical databases (`databases`).
    pub databases: usize,
    /// Memory cap in bytes; 0 means none (`maxmemory`).
    pub maxmemory: usize,
    /// Key-count cap; 0 means none (`maxkeys`, a Recached addition for browsers).
    pub maxkeys: usize,
    /// What to evict when over a cap (`maxmemory-policy`).
    pub policy: Policy,
    /// Keys sampled per eviction (`maxmemory-samples`).
    pub maxmemory_samples: usize,
    /// `lfu-log-factor`.
    pub lfu_log_factor: u32,
    /// `lfu-decay-time` in minutes.
    pub lfu_decay_time: u32,
    /// Classes of keyspace events to emit, as a mask of [`EventClass::bit`]; 0 emits none.
    pub keyspace_events: u32,
    /// Seed of the engine's random generator (SPOP, RANDOMKEY, eviction sampling).
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            databases: 16,
            maxmemory: 0,
            maxkeys: 0,
            policy: Policy::NoEviction,
            maxmemory_samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
            keyspace_events: 0,
            seed: 0x5eed_cafe_f00d_d00d,
        }
    }
}

/// Counters the host reports in INFO and metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Commands executed (queued commands count when EXEC runs them).
    pub commands: u64,
    /// Keys removed because their deadline passed.
    pub expired_keys: u64,
    /// Keys removed to stay under a cap.
    pub evicted_keys: u64,
    /// Successful key lookups.
    pub keyspace_hits: u64,
    /// Failed key lookups.
    pub keyspace_misses: u64,
}

/// A client's state that the engine needs: selected database, protocol, transaction.
#[derive(Debug, Clone)]
pub struct Session {
    /// Client id, unique per engine; WATCH bookkeeping keys on it.
    pub id: u64,
    /// Selected database.
    pub db: usize,
    /// Whether the client speaks RESP3 (changes reply shapes of a few commands).
    pub resp3: bool,
    pub(crate) multi: Option<Multi>,
    pub(crate) watched: Vec<(usize, Blob)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Multi {
    pub(crate) queue: Vec<Vec<Bytes>>,
    pub(crate) failed: bool,
}

impl Session {
    /// A session on database 0 speaking RESP2.
    pub fn new(id: u64) -> Session {
        Session { id, db: 0, resp3: false, multi: None, watched: Vec::new() }
    }

    /// Whether the session is inside MULTI.
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }
}

/// Redis refuses PING too when it cannot persist (`MISCONF`), not on a read-only replica.
fn refuses_ping(refusal: &Reply) -> bool {
    matches!(refusal, Reply::Error(e) if e.starts_with("MISCONF"))
}

/// What a host must do with a client that blocks (BLPOP and friends).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Database of the keys.
    pub db: usize,
    /// Keys whose change may unblock the client, in the order given.
    pub keys: Vec<Bytes>,
    /// Absolute deadline in Unix ms; `None` blocks forever.
    pub deadline_ms: Option<u64>,
    /// What to answer if the deadline passes.
    pub timeout_reply: Reply,
}

/// The result of executing one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Send this reply.
    Reply(Reply),
    /// Park the client; execute the same command again when one of the keys changes, or
    /// send `timeout_reply` at the deadline.
    Blocked(Block),
}

impl Outcome {
    /// The reply, or the timeout reply of a block.
    pub fn into_reply(self) -> Reply {
        match self {
            Outcome::Reply(r) => r,
            Outcome::Blocked(b) => b.timeout_reply,
        }
    }
}

/// Commands the engine's table lists but a host implements (CLIENT, CONFIG, PUBLISH, …).
pub trait Host {
    /// Runs a host command. `args[0]` is the command name as the client sent it.
    fn call(&mut self, engine: &mut Engine, session: &mut Session, args: &[Bytes], now_ms: u64) -> Reply;
}

/// A host with no host commands: they answer an error. Used by tests and by hosts that
/// only apply changes.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHost;

impl Host for NoHost {
    fn call(&mut self, _: &mut Engine, _: &mut Session, args: &[Bytes], _: u64) -> Reply {
        if let Some(reply) = crate::command::scripting::not_here(args) {
            return reply;
        }
        let name = String::from_utf8_lossy(args.first().map(|a| a.as_ref()).unwrap_or(b""));
        Reply::err(format!("ERR '{}' is not available in this host", name.to_ascii_lowercase()))
    }
}

/// The Redis-compatible state machine.
///
/// Drive it through `&mut self`; pass the current time to every call. Drain
/// [`Engine::take_changes`] and [`Engine::take_events`] after each call.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) dbs: Vec<Db>,
    pub(crate) config: Config,
    pub(crate) rng: Rng,
    pub(crate) used: usize,
    watchers: HashMap<(usize, Blob), Vec<u64>>,
    dirty: HashSet<u64>,
    pending: Vec<Change>,
    groups: Vec<ChangeGroup>,
    events: Vec<KeyEvent>,
    offset: u64,
    pub(crate) stats: Stats,
    /// Set while applying another engine's stream: caps still evict under the policy,
    /// but a change is never refused (that would make the copies diverge).
    applying: bool,
    /// A replica's engine: keys expire only when the primary's `DEL` arrives; until then
    /// a key past its deadline reads as missing (as on a Redis replica).
    follower: bool,
    /// The snapshot cut in progress ([`crate::snapshot::cut`]).
    pub(crate) cut: Option<Box<crate::snapshot::cut::Cut>>,
    /// Epoch of the newest cut; new entries carry it.
    pub(crate) snap_epoch: u32,
    /// When set, write commands (and PING, as in Redis) are refused with this error: the
    /// host cannot persist (`MISCONF`) or is a replica (`READONLY`).
    write_refusal: Option<Reply>,
    /// EXEC is running its queue (host commands ask, e.g. BGSAVE only schedules).
    in_exec: bool,
    /// Changes are not recorded (a host replaying its own log at start has no consumer
    /// for them yet).
    quiet: bool,
    /// A script's command runs ([`Engine::script_call`] checked the memory cap itself).
    script_running: bool,
}

/// How a script runs, for [`Engine::script_call`]: its flags and whether it wrote yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScriptRun {
    /// `EVAL_RO`/`FCALL_RO`, or a script flagged `no-writes`: writes are refused.
    pub read_only: bool,
    /// Flagged `allow-oom`: the memory cap does not refuse its commands.
    pub allow_oom: bool,
    /// It ran a write command (it can no longer be killed, nor refused halfway).
    pub wrote: bool,
}

impl Default for Engine {
    fn default() -> Engine {
        Engine::new(Config::default())
    }
}

impl Engine {
    /// An empty engine.
    pub fn new(config: Config) -> Engine {
        let databases = config.databases.max(1);
        Engine {
            dbs: (0..databases).map(|_| Db::default()).collect(),
            rng: Rng::new(config.seed),
            config,
            used: 0,
            watchers: HashMap::new(),
            dirty: HashSet::new(),
            pending: Vec::new(),
            groups: Vec::new(),
            events: Vec::new(),
            offset: 0,
            stats: Stats::default(),
            applying: false,
            follower: false,
            cut: None,
            snap_epoch: 0,
            write_refusal: None,
            in_exec: false,
            quiet: false,
            script_running: false,
        }
    }

    /// Stops (or resumes) recording changes: while quiet, commands and applied groups
    /// change the state and the offset but [`Engine::take_changes`] gets nothing. For a
    /// host replaying its own AOF at start, whose changes nobody consumes.
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// Whether the command being run was queued by MULTI and runs inside EXEC.
    pub fn in_exec(&self) -> bool {
        self.in_exec
    }

    /// Refuses write commands (and PING) with `error` from now on, or (with `None`) stops
    /// refusing. Streams applied with [`Engine::apply_group`] are never refused.
    pub fn set_write_refusal(&mut self, error: Option<Reply>) {
        self.write_refusal = error;
    }

    /// Makes this engine follow another's stream (a replica) or stop following it: a
    /// follower never deletes expired keys itself, it hides them from reads.
    pub fn set_follower(&mut self, on: bool) {
        self.follower = on;
    }

    /// Whether this engine follows another's stream.
    pub fn is_follower(&self) -> bool {
        self.follower
    }

    /// The error writes get now, if they are refused.
    pub fn write_refusal(&self) -> Option<&Reply> {
        self.write_refusal.as_ref()
    }

    /// The refusal `spec` gets now, if any.
    fn refusal_for(&self, spec: &CommandSpec) -> Option<Reply> {
        let refused = self.write_refusal.as_ref()?;
        (!self.applying && (spec.is_write() || (spec.name == "ping" && refuses_ping(refused)))).then(|| refused.clone())
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The settings, mutable (for `CONFIG SET`).
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Resets counters (`CONFIG RESETSTAT`).
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// Approximate bytes held by keys and values.
    pub fn used_memory(&self) -> usize {
        self.used
    }

    /// The databases.
    pub fn dbs(&self) -> &[Db] {
        &self.dbs
    }

    /// One database.
    pub fn db(&self, index: usize) -> Option<&Db> {
        self.dbs.get(index)
    }

    /// Total keys across databases.
    pub fn key_count(&self) -> usize {
        self.dbs.iter().map(Db::len).sum()
    }

    /// Offset of the last committed change group (0 before any).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Sets the offset the next group follows (replicas adopting a primary's stream,
    /// hosts restoring from a snapshot).
    pub fn set_offset(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// Takes the committed change groups, oldest first.
    pub fn take_changes(&mut self) -> Vec<ChangeGroup> {
        std::mem::take(&mut self.groups)
    }

    /// Whether committed change groups are waiting to be taken.
    pub fn has_changes(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether keyspace events are waiting to be taken.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Takes the keyspace events, oldest first.
    pub fn take_events(&mut self) -> Vec<KeyEvent> {
        std::mem::take(&mut self.events)
    }

    /// Executes one command for `session`. `args[0]` is the command name.
    pub fn execute(&mut self, session: &mut Session, args: &[Bytes], now_ms: u64, host: &mut dyn Host) -> Outcome {
        self.in_exec = false;
        let outcome = self.dispatch(session, args, now_ms, host);
        self.commit(None);
        outcome
    }

    /// Executes a command with no host and no transaction (tests, tools).
    pub fn run(&mut self, session: &mut Session, args: &[&[u8]], now_ms: u64) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        self.execute(session, &args, now_ms, &mut NoHost).into_reply()
    }

    fn dispatch(&mut self, session: &mut Session, args: &[Bytes], now_ms: u64, host: &mut dyn Host) -> Outcome {
        let Some(name) = args.first() else {
            return Outcome::Reply(Reply::err("ERR empty command"));
        };
        let Some(spec) = command::lookup(name) else {
            if let Some(m) = session.multi.as_mut() {
                m.failed = true;
            }
            return Outcome::Reply(Reply::err(command::unknown_command_error(args)));
        };
        if !spec.arity_ok(args.len()) {
            if let Some(m) = session.multi.as_mut() {
                m.failed = true;
            }
            return Outcome::Reply(Reply::err(errors::arity(spec.name)));
        }
        if let Some(multi) = session.multi.as_mut() {
            if spec.flags & command::flags::NO_MULTI != 0 {
                multi.failed = true;
                return Outcome::Reply(Reply::err("ERR Command not allowed inside a transaction"));
            }
            if !spec.runs_in_multi() {
                if let Some(refused) = self.write_refusal.as_ref().filter(|r| spec.is_write() || (spec.name == "ping" && refuses_ping(r))) {
                    multi.failed = true;
                    return Outcome::Reply(refused.clone());
                }
                multi.queue.push(args.to_vec());
                return Outcome::Reply(Reply::simple("QUEUED"));
            }
        }
        self.call(session, spec, args, now_ms, host, false)
    }

    /// Runs a validated command (arity checked). Used directly and by EXEC.
    pub(crate) fn call(
        &mut self,
        session: &mut Session,
        spec: &'static CommandSpec,
        args: &[Bytes],
        now_ms: u64,
        host: &mut dyn Host,
        in_exec: bool,
    ) -> Outcome {
        self.stats.commands += 1;
        if !in_exec {
            if let Some(refused) = self.refusal_for(spec) {
                return Outcome::Reply(refused);
            }
        }
        if spec.is_denyoom() && !self.script_running && !eviction::make_room(self, now_ms) && !self.applying {
            return Outcome::Reply(Reply::err(errors::OOM));
        }
        match spec.handler {
            Handler::Host => Outcome::Reply(host.call(self, session, args, now_ms)),
            Handler::Exec => Outcome::Reply(self.exec(session, now_ms, host)),
            Handler::Engine(run) => {
                let mut ctx = Ctx::new(self, session, now_ms, in_exec);
                let reply = run(&mut ctx, args);
                let block = ctx.blocked.take();
                ctx.settle();
                match block {
                    Some(b) => Outcome::Blocked(b),
                    None => Outcome::Reply(reply),
                }
            }
        }
    }

    fn exec(&mut self, session: &mut Session, now_ms: u64, host: &mut dyn Host) -> Reply {
        let Some(multi) = session.multi.take() else {
            return Reply::err("ERR EXEC without MULTI");
        };
        let dirty = self.dirty.contains(&session.id);
        self.unwatch_all(session);
        if multi.failed {
            return Reply::err(errors::EXECABORT);
        }
        if dirty {
            return Reply::NilArray;
        }
        if let Some(refused) = self.write_refusal.clone() {
            let writes = multi.queue.iter().any(|a| command::lookup(&a[0]).is_some_and(|s| s.is_write()));
            if writes {
                let text = match &refused {
                    Reply::Error(e) => e.to_string(),
                    other => format!("{:?}", other),
                };
                return Reply::err(format!("EXECABORT Transaction discarded because of: {}", text));
            }
        }
        let mut replies = Vec::with_capacity(multi.queue.len());
        self.in_exec = true;
        for args in &multi.queue {
            let reply = match command::lookup(&args[0]) {
                Some(spec) => self.call(session, spec, args, now_ms, host, true).into_reply(),
                None => Reply::err(command::unknown_command_error(args)),
            };
            replies.push(reply);
        }
        self.in_exec = false;
        Reply::Array(replies)
    }

    /// Runs one command a script calls (`redis.call`), with Redis's checks for scripts:
    /// commands flagged `noscript` are refused, writes are refused in a read-only script,
    /// and the host's refusal (MISCONF, READONLY) and the memory cap apply only until the
    /// script's first write (after that it cannot stop halfway). Blocking commands answer
    /// at once, as on timeout. The changes stay pending: the host's `execute` of the
    /// script commits them as one group.
    pub fn script_call(&mut self, session: &mut Session, args: &[Bytes], now_ms: u64, host: &mut dyn Host, run: &mut ScriptRun) -> Reply {
        let spec = match args.first().and_then(|n| command::lookup(n)) {
            Some(spec) => spec,
            None => return Reply::err("ERR Unknown Redis command called from script"),
        };
        if !spec.arity_ok(args.len()) {
            return Reply::err("ERR Wrong number of args calling Redis command from script");
        }
        if spec.flags & command::flags::NOSCRIPT != 0 {
            return Reply::err("ERR This Redis command is not allowed from script");
        }
        if spec.is_write() {
            if run.read_only {
                return Reply::err("ERR Write commands are not allowed from read-only scripts.");
            }
            if !run.wrote {
                if let Some(refused) = self.refusal_for(spec) {
                    return refused;
                }
            }
        }
        if spec.is_denyoom() && !run.allow_oom && !run.wrote && !self.applying && !eviction::make_room(self, now_ms) {
            return Reply::err(errors::OOM);
        }
        if spec.is_write() {
            run.wrote = true;
        }
        self.script_running = true;
        let reply = self.call(session, spec, args, now_ms, host, true).into_reply();
        self.script_running = false;
        reply
    }

    /// Starts MULTI for a session.
    pub(crate) fn multi(&mut self, session: &mut Session) -> Reply {
        if session.multi.is_some() {
            return Reply::err("ERR MULTI calls can not be nested");
        }
        session.multi = Some(Multi::default());
        Reply::Ok
    }

    /// Ends MULTI without running it.
    pub(crate) fn discard(&mut self, session: &mut Session) -> Reply {
        if session.multi.take().is_none() {
            return Reply::err("ERR DISCARD without MULTI");
        }
        self.unwatch_all(session);
        Reply::Ok
    }

    /// Watches keys of the session's database.
    pub(crate) fn watch(&mut self, session: &mut Session, keys: &[Bytes], now_ms: u64) -> Reply {
        if session.multi.is_some() {
            return Reply::err("ERR WATCH inside MULTI is not allowed");
        }
        for key in keys {
            // A key already past its deadline counts as missing from now on; expire it
            // first so its later removal is not seen as a modification.
            let mut ctx = Ctx::new(self, session, now_ms, false);
            ctx.expire_if_needed(key);
            ctx.settle();
            let db = session.db;
            if session.watched.iter().any(|(d, k)| *d == db && k[..] == key[..]) {
                continue;
            }
            session.watched.push((db, blob(key)));
            self.watchers.entry((db, blob(key))).or_default().push(session.id);
        }
        Reply::Ok
    }

    /// Forgets every key a session watches (UNWATCH, EXEC, DISCARD, disconnect).
    pub fn unwatch_all(&mut self, session: &mut Session) {
        for (db, key) in session.watched.drain(..) {
            let slot = (db, key);
            if let Some(ids) = self.watchers.get_mut(&slot) {
                ids.retain(|id| *id != session.id);
                if ids.is_empty() {
                    self.watchers.remove(&slot);
                }
            }
        }
        self.dirty.remove(&session.id);
    }

    /// Releases everything the engine holds for a session that is going away.
    pub fn close_session(&mut self, session: &mut Session) {
        session.multi = None;
        self.unwatch_all(session);
    }

    fn touch_watched(&mut self, db: usize, key: &[u8]) {
        if self.watchers.is_empty() {
            return;
        }
        if let Some(ids) = self.watchers.get(&(db, blob(key))) {
            self.dirty.extend(ids.iter().copied());
        }
    }

    fn touch_watched_db(&mut self, db: Option<usize>) {
        for ((d, _), ids) in &self.watchers {
            if db.is_none() || db == Some(*d) {
                self.dirty.extend(ids.iter().copied());
            }
        }
    }

    /// Moves the pending changes into a committed group. `offset` forces the group's
    /// offset (replicas applying a primary's group); otherwise it is the next one.
    fn commit(&mut self, offset: Option<u64>) {
        if self.pending.is_empty() {
            if let Some(o) = offset {
                self.offset = self.offset.max(o);
            }
            return;
        }
        self.offset = offset.unwrap_or(self.offset + 1);
        let changes = std::mem::take(&mut self.pending);
        self.groups.push(ChangeGroup { offset: self.offset, changes });
    }

    pub(crate) fn push_change(&mut self, change: Change) {
        if self.quiet {
            return;
        }
        match change.key() {
            Some(key) => {
                let key = key.clone();
                self.touch_watched(change.db as usize, &key);
            }
            None => {
                let db = match change.name() {
                    b"FLUSHALL" => None,
                    _ => Some(change.db as usize),
                };
                self.touch_watched_db(db);
                if change.name() == b"SWAPDB" {
                    if let Some(other) = change.args.get(2).and_then(|a| crate::util::parse_i64(a)) {
                        self.touch_watched_db(Some(other as usize));
                    }
                }
            }
        }
        self.pending.push(change);
    }

    pub(crate) fn push_event(&mut self, db: usize, class: EventClass, event: &'static str, key: &[u8]) {
        if self.config.keyspace_events & class.bit() != 0 {
            self.events.push(KeyEvent { db: db as u16, class, event, key: Bytes::copy_from_slice(key) });
        }
    }

    /// Applies a change group from another engine's stream (replica, AOF, browser), keeping
    /// its offset. The changes are re-emitted, so this engine's own stream continues.
    pub fn apply_group(&mut self, group: &ChangeGroup, now_ms: u64) -> Result<(), Reply> {
        let mut session = Session::new(u64::MAX);
        let mut first_err = None;
        self.applying = true;
        for change in &group.changes {
            session.db = change.db as usize;
            let reply = match command::lookup(change.args.first().map(|a| a.as_ref()).unwrap_or(b"")) {
                Some(spec) if spec.arity_ok(change.args.len()) => {
                    self.call(&mut session, spec, &change.args, now_ms, &mut NoHost, true).into_reply()
                }
                _ => Reply::err(command::unknown_command_error(&change.args)),
            };
            if reply.is_error() && first_err.is_none() {
                first_err = Some(reply);
            }
        }
        self.applying = false;
        self.commit(Some(group.offset));
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Removes keys whose deadline passed, at most `budget` of them, emitting `DEL` changes
    /// and `expired` events. Returns the next deadline still pending, if any.
    pub fn sweep(&mut self, now_ms: u64, budget: usize) -> Option<u64> {
        let mut left = budget;
        for db in 0..self.dbs.len() {
            while left > 0 {
                let Some(key) = self.dbs[db].first_due(now_ms) else { break };
                self.expire_key(db, &key);
                left -= 1;
            }
        }
        self.commit(None);
        self.next_deadline()
    }

    /// The earliest deadline of any key.
    pub fn next_deadline(&self) -> Option<u64> {
        self.dbs.iter().filter_map(Db::next_deadline).min()
    }

    /// Deletes a key as expired: accounting, change, event, stats.
    pub(crate) fn expire_key(&mut self, db: usize, key: &[u8]) {
        self.cut_before_write(db, key);
        if let Some(entry) = self.dbs[db].remove(key) {
            self.used = self.used.saturating_sub(entry_mem(key, &entry));
            self.stats.expired_keys += 1;
            self.push_change(Change { db: db as u16, args: vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)] });
            self.push_event(db, EventClass::Expired, "expired", key);
        }
    }

    /// Deletes a key as evicted: accounting, change, event, stats.
    pub(crate) fn evict_key(&mut self, db: usize, key: &[u8]) {
        self.cut_before_write(db, key);
        if let Some(entry) = self.dbs[db].remove(key) {
            self.used = self.used.saturating_sub(entry_mem(key, &entry));
            self.stats.evicted_keys += 1;
            self.push_change(Change { db: db as u16, args: vec![Bytes::from_static(b"DEL"), Bytes::copy_from_slice(key)] });
            self.push_event(db, EventClass::Evicted, "evicted", key);
        }
    }

    /// Counts a read of `key` that the host answers itself from the keyspace (a browser
    /// cache's direct lookup): the hit statistic and the LRU/LFU access word, as `GET`
    /// would. Returns false, touching nothing, when the key is missing or past its deadline
    /// (the host then runs the command for Redis's exact behaviour: lazy expiry, events).
    pub fn note_read(&mut self, db: usize, key: &[u8], now_ms: u64) -> bool {
        let clock = eviction::access_clock(&self.config, now_ms);
        let (policy, log_factor, decay) = (self.config.policy, self.config.lfu_log_factor, self.config.lfu_decay_time);
        let Some(entry) = self.dbs.get_mut(db).and_then(|d| d.get_mut(key)) else { return false };
        if entry.is_expired(now_ms) {
            return false;
        }
        let r = self.rng.next_f64();
        entry.access = eviction::touch(policy, entry.access, clock, now_ms, log_factor, decay, r);
        self.stats.keyspace_hits += 1;
        true
    }

    /// Replaces the whole state (snapshot load). Changes and events are not emitted.
    pub fn load_dbs(&mut self, dbs: Vec<Db>) {
        self.cut_detach_all();
        self.used = dbs.iter().map(Db::mem).sum();
        let mut dbs = dbs;
        dbs.resize_with(self.config.databases.max(1), Db::default);
        self.dbs = dbs;
        self.touch_watched_db(None);
    }

    /// Recomputes `used_memory` from scratch (after bulk changes).
    pub fn recount_memory(&mut self) {
        self.used = self.dbs.iter().map(Db::mem).sum();
    }
}

/// What a command handler sees: the engine, the client's session, the time.
///
/// Every mutation goes through `Ctx` so that lazy expiry, the WRONGTYPE check, memory
/// accounting, WATCH and change emission happen in one place.
pub struct Ctx<'a> {
    pub(crate) eng: &'a mut Engine,
    pub(crate) sess: &'a mut Session,
    /// The current time in Unix milliseconds.
    pub now_ms: u64,
    /// Whether the command runs inside EXEC or while applying a change stream (blocking
    /// commands then answer at once).
    pub in_exec: bool,
    pub(crate) blocked: Option<Block>,
    touched: Vec<(usize, Blob, usize)>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(eng: &'a mut Engine, sess: &'a mut Session, now_ms: u64, in_exec: bool) -> Ctx<'a> {
        Ctx { eng, sess, now_ms, in_exec, blocked: None, touched: Vec::new() }
    }

    /// The selected database index.
    pub fn db_index(&self) -> usize {
        self.sess.db
    }

    /// The selected database (read-only; mutate through `Ctx`).
    pub fn db(&self) -> &Db {
        &self.eng.dbs[self.sess.db]
    }

    /// The engine (read-only).
    pub fn engine(&self) -> &Engine {
        self.eng
    }

    /// The session.
    pub fn session(&mut self) -> &mut Session {
        self.sess
    }

    /// Whether the client speaks RESP3.
    pub fn resp3(&self) -> bool {
        self.sess.resp3
    }

    /// The engine's random generator.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.eng.rng
    }

    /// Records a key's size before its first mutation in this command.
    fn record(&mut self, db: usize, key: &[u8]) {
        if self.touched.iter().any(|(d, k, _)| *d == db && k[..] == *key) {
            return;
        }
        // A snapshot cut in progress keeps the value as it was at the cut.
        self.eng.cut_before_write(db, key);
        let before = self.eng.dbs[db].get(key).map(|e| entry_mem(key, e)).unwrap_or(0);
        self.touched.push((db, blob(key), before));
    }

    /// Finishes the command: removes emptied containers, settles memory accounting.
    pub(crate) fn settle(&mut self) {
        for (db, key, before) in std::mem::take(&mut self.touched) {
            let empty = self.eng.dbs[db].get(&key).map(|e| e.value.is_empty_container()).unwrap_or(false);
            if empty {
                self.eng.dbs[db].remove(&key);
                self.eng.push_event(db, EventClass::Generic, "del", &key);
            }
            let after = self.eng.dbs[db].get(&key).map(|e| entry_mem(&key, e)).unwrap_or(0);
            self.eng.used = (self.eng.used + after).saturating_sub(before);
        }
    }

    /// Deletes `key` if its deadline passed; returns true if it did.
    pub fn expire_if_needed(&mut self, key: &[u8]) -> bool {
        self.expire_if_needed_in(self.sess.db, key)
    }

    /// Whether an absolute deadline counts as passed. While another engine's stream is
    /// applied (a replica, an AOF replayed at start, a browser) never: the stream says
    /// when a key goes (its `DEL`), and a replay later than the original must not expire
    /// keys the original still had when the next change came (Redis does not expire keys
    /// while loading or on replicas either).
    pub fn deadline_passed(&self, at: u64) -> bool {
        !self.eng.applying && at <= self.now_ms
    }

    /// Like [`Ctx::expire_if_needed`] in another database.
    pub fn expire_if_needed_in(&mut self, db: usize, key: &[u8]) -> bool {
        if self.eng.applying || self.eng.follower {
            return false;
        }
        let expired = matches!(self.eng.dbs[db].get(key), Some(e) if e.is_expired(self.now_ms));
        if expired {
            self.record(db, key);
            self.eng.expire_key(db, key);
            // expire_key already subtracted the entry; the settle step must not again.
            if let Some(t) = self.touched.iter_mut().find(|(d, k, _)| *d == db && k[..] == *key) {
                t.2 = 0;
            }
        }
        expired
    }

    fn note_access(&mut self, db: usize, key: &[u8]) {
        let clock = eviction::access_clock(&self.eng.config, self.now_ms);
        let policy = self.eng.config.policy;
        let log_factor = self.eng.config.lfu_log_factor;
        let decay = self.eng.config.lfu_decay_time;
        let r = self.eng.rng.next_f64();
        if let Some(e) = self.eng.dbs[db].get_mut(key) {
            e.access = eviction::touch(policy, e.access, clock, self.now_ms, log_factor, decay, r);
        }
    }

    /// Looks a key up for reading: lazy expiry, access clock, hit/miss stats.
    pub fn read(&mut self, key: &[u8]) -> Option<&Entry> {
        let db = self.sess.db;
        self.read_in(db, key)
    }

    /// Like [`Ctx::read`] in another database.
    pub fn read_in(&mut self, db: usize, key: &[u8]) -> Option<&Entry> {
        self.expire_if_needed_in(db, key);
        if self.hidden_by_follower(db, key) {
            self.eng.stats.keyspace_misses += 1;
            return None;
        }
        if self.eng.dbs[db].get(key).is_some() {
            self.eng.stats.keyspace_hits += 1;
            self.note_access(db, key);
            self.eng.dbs[db].get(key)
        } else {
            self.eng.stats.keyspace_misses += 1;
            self.eng.push_event(db, EventClass::Miss, "keymiss", key);
            None
        }
    }

    /// Whether a key exists (after lazy expiry), without touching stats or the clock.
    pub fn exists(&mut self, key: &[u8]) -> bool {
        self.expire_if_needed(key);
        let db = self.sess.db;
        !self.hidden_by_follower(db, key) && self.db().get(key).is_some()
    }

    /// On a follower, whether `key` is past its deadline (present until the primary's `DEL`).
    fn hidden_by_follower(&self, db: usize, key: &[u8]) -> bool {
        self.eng.follower && !self.eng.applying && matches!(self.eng.dbs[db].get(key), Some(e) if e.is_expired(self.now_ms))
    }

    /// Looks a key up for writing: lazy expiry, access clock, memory accounting.
    pub fn write(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let db = self.sess.db;
        self.write_in(db, key)
    }

    /// Like [`Ctx::write`] in another database.
    pub fn write_in(&mut self, db: usize, key: &[u8]) -> Option<&mut Entry> {
        self.expire_if_needed_in(db, key);
        self.eng.dbs[db].get(key)?;
        self.record(db, key);
        self.note_access(db, key);
        self.eng.dbs[db].get_mut(key)
    }

    /// The value at `key` if it has type `kind`; `Err(WRONGTYPE)` if it has another.
    pub fn read_kind(&mut self, key: &[u8], kind: Kind) -> Result<Option<&Value>, Reply> {
        match self.read(key) {
            None => Ok(None),
            Some(e) if e.value.kind() == kind => Ok(Some(&e.value)),
            Some(_) => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The value at `key` for writing if it has type `kind`; `Err(WRONGTYPE)` otherwise.
    pub fn write_kind(&mut self, key: &[u8], kind: Kind) -> Result<Option<&mut Value>, Reply> {
        match self.write(key) {
            None => Ok(None),
            Some(e) if e.value.kind() == kind => Ok(Some(&mut e.value)),
            Some(_) => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The value at `key` for writing, created empty (with `make`) when missing;
    /// `Err(WRONGTYPE)` if the key holds another type.
    pub fn write_or_create(&mut self, key: &[u8], kind: Kind, make: impl FnOnce() -> Value) -> Result<&mut Value, Reply> {
        let db = self.sess.db;
        match self.write(key) {
            Some(e) if e.value.kind() != kind => return Err(Reply::err(errors::WRONGTYPE)),
            Some(_) => {}
            None => {
                self.record(db, key);
                let mut entry = Entry::new(make());
                // A new key is as fresh as one SET creates (LRU clock now, LFU initial count).
                entry.access = eviction::initial_access(&self.eng.config, self.now_ms);
                entry.saved = self.eng.new_entry_epoch();
                self.eng.dbs[db].insert(key, entry);
                self.eng.push_event(db, EventClass::New, "new", key);
            }
        }
        match self.eng.dbs[db].get_mut(key) {
            Some(e) => Ok(&mut e.value),
            None => Err(Reply::err("ERR internal error: key vanished")),
        }
    }

    /// The string at `key` (`Err(WRONGTYPE)` for other types).
    pub fn get_string(&mut self, key: &[u8]) -> Result<Option<Bytes>, Reply> {
        match self.read(key) {
            None => Ok(None),
            Some(e) => e.value.as_bytes().map(Some).ok_or_else(|| Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The list at `key`, read-only.
    pub fn list(&mut self, key: &[u8]) -> Result<Option<&List>, Reply> {
        Ok(self.read_kind(key, Kind::List)?.and_then(|v| match v {
            Value::List(l) => Some(&**l),
            _ => None,
        }))
    }

    /// The list at `key`, for writing.
    pub fn list_mut(&mut self, key: &[u8]) -> Result<Option<&mut List>, Reply> {
        Ok(self.write_kind(key, Kind::List)?.and_then(|v| match v {
            Value::List(l) => Some(&mut **l),
            _ => None,
        }))
    }

    /// The list at `key`, created when missing.
    pub fn list_or_new(&mut self, key: &[u8]) -> Result<&mut List, Reply> {
        match self.write_or_create(key, Kind::List, || Value::List(Box::default()))? {
            Value::List(l) => Ok(&mut **l),
            _ => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The hash at `key`, read-only.
    pub fn hash(&mut self, key: &[u8]) -> Result<Option<&Hash>, Reply> {
        Ok(self.read_kind(key, Kind::Hash)?.and_then(|v| match v {
            Value::Hash(h) => Some(&**h),
            _ => None,
        }))
    }

    /// The hash at `key`, for writing.
    pub fn hash_mut(&mut self, key: &[u8]) -> Result<Option<&mut Hash>, Reply> {
        Ok(self.write_kind(key, Kind::Hash)?.and_then(|v| match v {
            Value::Hash(h) => Some(&mut **h),
            _ => None,
        }))
    }

    /// The hash at `key`, created when missing.
    pub fn hash_or_new(&mut self, key: &[u8]) -> Result<&mut Hash, Reply> {
        match self.write_or_create(key, Kind::Hash, || Value::Hash(Box::default()))? {
            Value::Hash(h) => Ok(&mut **h),
            _ => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The set at `key`, read-only.
    pub fn set(&mut self, key: &[u8]) -> Result<Option<&Set>, Reply> {
        Ok(self.read_kind(key, Kind::Set)?.and_then(|v| match v {
            Value::Set(s) => Some(&**s),
            _ => None,
        }))
    }

    /// The set at `key`, for writing.
    pub fn set_mut(&mut self, key: &[u8]) -> Result<Option<&mut Set>, Reply> {
        Ok(self.write_kind(key, Kind::Set)?.and_then(|v| match v {
            Value::Set(s) => Some(&mut **s),
            _ => None,
        }))
    }

    /// The set at `key`, created when missing.
    pub fn set_or_new(&mut self, key: &[u8]) -> Result<&mut Set, Reply> {
        match self.write_or_create(key, Kind::Set, || Value::Set(Box::default()))? {
            Value::Set(s) => Ok(&mut **s),
            _ => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// The sorted set at `key`, read-only.
    pub fn zset(&mut self, key: &[u8]) -> Result<Option<&SortedSet>, Reply> {
        Ok(self.read_kind(key, Kind::ZSet)?.and_then(|v| match v {
            Value::ZSet(z) => Some(&**z),
            _ => None,
        }))
    }

    /// The sorted set at `key`, for writing.
    pub fn zset_mut(&mut self, key: &[u8]) -> Result<Option<&mut SortedSet>, Reply> {
        Ok(self.write_kind(key, Kind::ZSet)?.and_then(|v| match v {
            Value::ZSet(z) => Some(&mut **z),
            _ => None,
        }))
    }

    /// The sorted set at `key`, created when missing.
    pub fn zset_or_new(&mut self, key: &[u8]) -> Result<&mut SortedSet, Reply> {
        match self.write_or_create(key, Kind::ZSet, || Value::ZSet(Box::default()))? {
            Value::ZSet(z) => Ok(&mut **z),
            _ => Err(Reply::err(errors::WRONGTYPE)),
        }
    }

    /// Stores a value at `key`, replacing whatever was there. `expire_at` 0 clears the TTL.
    pub fn store(&mut self, key: &[u8], value: Value, expire_at: u64) {
        let db = self.sess.db;
        self.store_in(db, key, value, expire_at);
    }

    /// Like [`Ctx::store`] in another database.
    pub fn store_in(&mut self, db: usize, key: &[u8], value: Value, expire_at: u64) {
        self.expire_if_needed_in(db, key);
        self.record(db, key);
        let mut entry = Entry::new(value);
        entry.expire_at = expire_at;
        entry.access = eviction::initial_access(&self.eng.config, self.now_ms);
        entry.saved = self.eng.new_entry_epoch();
        if self.eng.dbs[db].insert(key, entry).is_none() {
            self.eng.push_event(db, EventClass::New, "new", key);
        }
    }

    /// Deletes a key; returns true when it existed (an expired key does not count).
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let db = self.sess.db;
        self.delete_in(db, key)
    }

    /// Like [`Ctx::delete`] in another database.
    pub fn delete_in(&mut self, db: usize, key: &[u8]) -> bool {
        if self.expire_if_needed_in(db, key) {
            return false;
        }
        if self.eng.dbs[db].get(key).is_none() {
            return false;
        }
        self.record(db, key);
        self.eng.dbs[db].remove(key);
        true
    }

    /// Sets (or with 0 clears) the deadline of an existing key.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let db = self.sess.db;
        self.record(db, key);
        self.eng.dbs[db].set_expire(key, expire_at)
    }

    /// Removes a whole database's keys (FLUSHDB / FLUSHALL).
    pub fn flush_db(&mut self, db: usize) {
        let freed = self.eng.dbs[db].mem();
        self.touched.retain(|(d, _, _)| *d != db);
        self.eng.cut_detach(db);
        self.eng.dbs[db].clear();
        self.eng.used = self.eng.used.saturating_sub(freed);
    }

    /// Swaps two databases (SWAPDB).
    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        self.touched.retain(|(d, _, _)| *d != a && *d != b);
        self.eng.cut_swap(a, b);
        self.eng.dbs.swap(a, b);
    }

    /// Emits a canonical change on the selected database. `args[0]` is the upper-case
    /// command name, `args[1]` the key.
    pub fn emit(&mut self, args: &[&[u8]]) {
        let db = self.sess.db;
        self.emit_in(db, args);
    }

    /// Like [`Ctx::emit`] in another database.
    pub fn emit_in(&mut self, db: usize, args: &[&[u8]]) {
        let args = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        self.eng.push_change(Change { db: db as u16, args });
    }

    /// Emits a change from owned arguments.
    pub fn emit_owned(&mut self, db: usize, args: Vec<Bytes>) {
        self.eng.push_change(Change { db: db as u16, args });
    }

    /// Emits the whole current value of `key` as changes: `DEL key`, then a rebuild
    /// (`SET`, `RPUSH`, `HSET`, `SADD` or `ZADD`), then `PEXPIREAT` if it has a TTL. A
    /// missing key emits only `DEL`.
    pub fn emit_restore(&mut self, db: usize, key: &[u8]) {
        let changes = crate::command::restore_changes(&self.eng.dbs[db], db, key);
        for c in changes {
            self.eng.push_change(c);
        }
    }

    /// Emits a keyspace event on the selected database.
    pub fn notify(&mut self, class: EventClass, event: &'static str, key: &[u8]) {
        let db = self.sess.db;
        self.eng.push_event(db, class, event, key);
    }

    /// Emits a keyspace event on another database.
    pub fn notify_in(&mut self, db: usize, class: EventClass, event: &'static str, key: &[u8]) {
        self.eng.push_event(db, class, event, key);
    }

    /// Asks the host to park the client until one of `keys` changes or `deadline_ms`.
    /// Inside EXEC (or when applying a stream) it does not block: the timeout reply is
    /// returned at once, as Redis does.
    pub fn block(&mut self, keys: Vec<Bytes>, deadline_ms: Option<u64>, timeout_reply: Reply) -> Reply {
        if self.in_exec {
            return timeout_reply;
        }
        self.blocked = Some(Block { db: self.sess.db, keys, deadline_ms, timeout_reply: timeout_reply.clone() });
        timeout_reply
    }
}
