//! Lua scripting for the native hub: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, with
//! Redis 7's semantics and error texts.
//!
//! One Lua 5.1 VM (mlua, vendored, as Redis embeds 5.1) lives beside the engine. A script
//! runs under the engine lock like any command, so nothing else runs in between, and it
//! calls the engine through [`Engine::script_call`], the same checks a client's command
//! meets. Its writes stay pending until the EVAL that ran it ends, so they form **one
//! change group**: the AOF, live sync and every browser get them all at once or not at
//! all, and none of them runs Lua.
//!
//! A long script: after `busy-reply-threshold` ms other clients get `-BUSY` (their
//! connections check [`ScriptWatch`] before they take the lock) and `SCRIPT KILL` stops a
//! script that has not written yet, at its next instruction-count hook. The VM's memory is
//! capped ([`LUA_MEMORY_LIMIT`]).

mod convert;
mod functions;
mod libs;
mod msgpack;
mod rescue;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};
use recached_engine::command::{self, unknown_subcommand_error};
use recached_engine::reply::errors;
use recached_engine::{util, Engine, Host, Reply, ScriptRun, Session};
use sha1::{Digest, Sha1};

use crate::commands::REDIS_VERSION;

/// The most memory the Lua VM may hold (Redis sets none; a runaway script must not take
/// the host down). A script that passes it fails with an error, and the VM stays usable.
pub const LUA_MEMORY_LIMIT: usize = 256 << 20;

/// Scripts EVAL added (not SCRIPT LOAD) that stay cached; older ones are dropped, as in
/// Redis 7.4, so a client that sends endless distinct scripts cannot grow memory forever.
const EVAL_CACHE_LIMIT: usize = 500;

/// How long a script runs on the runtime thread before it moves (if it wrote nothing).
const MOVE_AFTER_MS: u64 = 20;

const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
/// `-BUSY` while an EVAL script runs past the threshold.
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// `-BUSY` while a function runs past the threshold.
pub const BUSY_FUNCTION: &str = "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";
const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";

/// Redis's version as a number (`REDIS_VERSION_NUM`, 0x00MMmmpp).
fn version_num() -> i64 {
    let mut parts = REDIS_VERSION
        .split('.')
        .map(|p| p.parse::<i64>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (a << 16) | (b << 8) | c
}

/// What other connections see of the script that runs (lock-free: they must not wait on
/// the engine lock a script holds).
#[derive(Debug, Default)]
pub struct ScriptWatch {
    running: AtomicBool,
    /// Past `busy-reply-threshold`: other clients get `-BUSY`.
    busy: AtomicBool,
    /// SCRIPT KILL asked to stop it.
    kill: AtomicBool,
    /// It wrote (it can no longer be killed).
    wrote: AtomicBool,
    started_ms: AtomicU64,
    threshold_ms: AtomicU64,
    /// The script runs on the runtime thread and may stop to run again on a thread.
    may_move: AtomicBool,
    /// It stopped for that.
    moved: AtomicBool,
    /// It runs on the runtime thread (nothing else is served meanwhile).
    inline: AtomicBool,
    /// It is a function (FCALL), not an EVAL script.
    function: AtomicBool,
    /// A FUNCTION LOAD runs until then (Unix ms; 0: none).
    load_deadline_ms: AtomicU64,
    /// Serves new connections while a script that cannot move holds the runtime thread.
    pub rescue: rescue::Rescue,
    done: tokio::sync::Notify,
}

/// What a connection does when a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// No script runs now: take the lock.
    Idle,
    /// A script runs past the threshold: answer without the lock ([`ScriptWatch::busy_reply`]).
    Busy,
}

impl ScriptWatch {
    /// Whether a script runs.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Waits while a script runs below the threshold (as Redis's clients wait while its one
    /// thread runs it); returns once none runs, or once it is past the threshold.
    pub async fn wait(&self) -> Wait {
        loop {
            let notified = self.done.notified();
            if !self.running() {
                return Wait::Idle;
            }
            if self.busy.load(Ordering::Acquire) {
                return Wait::Busy;
            }
            // Re-check at least every 10 ms: the busy flag is set by the script's hook.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(10), notified).await;
        }
    }

    /// Waits until no script runs.
    pub async fn idle(&self) {
        loop {
            let notified = self.done.notified();
            if !self.running() {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(10), notified).await;
        }
    }

    /// The answer to a command that arrives while a script is busy: SCRIPT KILL asks the
    /// script to stop, SHUTDOWN NOSAVE exits at once, anything else gets `-BUSY`.
    /// `None`: run it normally (no script is busy any more).
    pub fn busy_reply(&self, args: &[Bytes]) -> Option<Reply> {
        if !self.running() {
            return None;
        }
        let name = args
            .first()
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        let sub = args
            .get(1)
            .map(|a| a.to_ascii_lowercase())
            .unwrap_or_default();
        let function = self.function.load(Ordering::Acquire);
        let busy = if function { BUSY_FUNCTION } else { BUSY_EVAL };
        match (name.as_slice(), sub.as_slice()) {
            // Each kind is killed by its own command; the other one gets the other's BUSY.
            (b"script", b"kill") if args.len() == 2 && function => Some(Reply::err(BUSY_FUNCTION)),
            (b"function", b"kill") if args.len() == 2 && !function => Some(Reply::err(BUSY_EVAL)),
            (b"script" | b"function", b"kill") if args.len() == 2 => Some(self.kill()),
            (b"shutdown", b"nosave") => {
                tracing::warn!("SHUTDOWN NOSAVE while a script runs: exiting now, the script's writes are lost");
                std::process::exit(0);
            }
            _ => Some(Reply::err(busy)),
        }
    }

    fn kill(&self) -> Reply {
        if !self.running() {
            return Reply::err(NOTBUSY);
        }
        if self.wrote.load(Ordering::Acquire) {
            return Reply::err(UNKILLABLE);
        }
        self.kill.store(true, Ordering::Release);
        Reply::Ok
    }

    /// Marks a script as about to run on another thread, before that thread takes the
    /// engine lock, so no task on the runtime blocks on the lock meanwhile.
    pub fn reserve(&self) {
        self.busy.store(false, Ordering::Release);
        self.started_ms
            .store(crate::hub::now_ms(), Ordering::Release);
        self.running.store(true, Ordering::Release);
    }

    /// Ends a run (or a reservation) and wakes the tasks that wait for it.
    pub fn finish(&self) {
        self.end();
    }

    fn start(&self, threshold_ms: u64, may_move: bool, inline: bool, function: bool) {
        self.function.store(function, Ordering::Release);
        self.may_move.store(may_move, Ordering::Release);
        self.inline.store(inline, Ordering::Release);
        self.moved.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.kill.store(false, Ordering::Release);
        self.wrote.store(false, Ordering::Release);
        self.threshold_ms.store(threshold_ms, Ordering::Release);
        self.started_ms
            .store(crate::hub::now_ms(), Ordering::Release);
        self.running.store(true, Ordering::Release);
    }

    fn end(&self) {
        self.running.store(false, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.done.notify_waiters();
    }

    /// The instruction-count hook's check: marks the script busy past the threshold, and
    /// stops it when killed.
    fn check(self: &Arc<Self>) -> Result<VmState, mlua::Error> {
        let deadline = self.load_deadline_ms.load(Ordering::Acquire);
        if deadline != 0 && crate::hub::now_ms() > deadline {
            return Err(mlua::Error::runtime("FUNCTION LOAD timeout"));
        }
        if !self.running() {
            return Ok(VmState::Continue);
        }
        let threshold = self.threshold_ms.load(Ordering::Acquire);
        // On the runtime thread nothing else is served: a script that runs long and has
        // not written stops here and runs again from the start on a thread (it changed
        // nothing, so the first try is invisible), where others get -BUSY past the
        // threshold and SCRIPT KILL reaches it.
        if self.may_move.load(Ordering::Acquire) && !self.wrote.load(Ordering::Acquire) {
            let elapsed =
                crate::hub::now_ms().saturating_sub(self.started_ms.load(Ordering::Acquire));
            if elapsed >= MOVE_AFTER_MS.min(threshold.max(1)) {
                self.moved.store(true, Ordering::Release);
                return Err(mlua::Error::runtime("moved to a thread"));
            }
        }
        if !self.busy.load(Ordering::Acquire) && threshold > 0 {
            let elapsed =
                crate::hub::now_ms().saturating_sub(self.started_ms.load(Ordering::Acquire));
            if elapsed >= threshold {
                tracing::warn!(
                    "Slow script detected: still in execution after {} milliseconds. You can try killing the script using the SCRIPT KILL command.",
                    elapsed
                );
                self.busy.store(true, Ordering::Release);
            }
        }
        if self.busy.load(Ordering::Acquire) && self.inline.load(Ordering::Acquire) {
            rescue::start(self);
        }
        if self.kill.load(Ordering::Acquire) {
            return Err(mlua::Error::runtime("killed"));
        }
        Ok(VmState::Continue)
    }
}

/// A cached script.
struct Script {
    body: Bytes,
    func: Function,
    flags: ScriptFlags,
    /// Added by SCRIPT LOAD (never dropped by the EVAL cache limit).
    loaded: bool,
}

/// The flags a script's shebang line declares (`#!lua flags=no-writes,allow-oom`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ScriptFlags {
    /// No shebang: EVAL's compatibility mode.
    compat: bool,
    no_writes: bool,
    allow_oom: bool,
}

/// The VM and the script cache.
pub struct Scripts {
    lua: Lua,
    /// Where KEYS and ARGV go (the globals' hidden side).
    hidden: Table,
    /// `R.run`: calls a script under the error handler.
    run_fn: Function,
    /// `R.run_with`: calls a function (FCALL) with its keys and arguments.
    run_with_fn: Function,
    /// The sandbox's private table (`R`).
    private: Table,
    /// FUNCTION LOAD's libraries.
    functions: functions::Functions,
    /// What `redis.register_function` collects during a load.
    collector: functions::Collector,
    /// The run in progress, for `redis.call`.
    current: Slot,
    cache: HashMap<String, Script>,
    /// EVAL-added scripts, oldest first.
    eval_order: VecDeque<String>,
    body_bytes: usize,
    runs: u64,
    watch: Arc<ScriptWatch>,
}

/// The scripting state of a hub: the VM behind its own mutex (taken only under the
/// engine lock, so never contended), and the lock-free watch.
pub struct Scripting {
    scripts: Mutex<Option<Scripts>>,
    /// What connections check before they take the engine lock.
    pub watch: Arc<ScriptWatch>,
}

impl Default for Scripting {
    fn default() -> Scripting {
        Scripting {
            scripts: Mutex::new(None),
            watch: Arc::new(ScriptWatch::default()),
        }
    }
}

impl Scripting {
    fn lock(&self) -> MutexGuard<'_, Option<Scripts>> {
        self.scripts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// INFO's `used_memory_vm_eval`, `used_memory_scripts_eval` and `number_of_cached_scripts`.
    pub fn info(&self) -> (usize, usize, usize) {
        match self.lock().as_ref() {
            Some(s) => (s.lua.used_memory(), s.body_bytes, s.cache.len()),
            None => (0, 0, 0),
        }
    }

    /// INFO's `number_of_libraries` and `number_of_functions`.
    pub fn function_counts(&self) -> (usize, usize) {
        self.lock().as_ref().map(functions::counts).unwrap_or((0, 0))
    }
}

/// Runs `f` with the VM, making it on first use.
fn with_scripts<R>(scripting: &Scripting, f: impl FnOnce(&mut Scripts) -> R) -> Result<R, Reply> {
    let mut guard = scripting.lock();
    if guard.is_none() {
        match Scripts::new(scripting.watch.clone()) {
            Ok(s) => *guard = Some(s),
            Err(e) => {
                tracing::error!(cause = %e, "cannot start the Lua VM");
                return Err(Reply::err(format!(
                    "ERR cannot start the Lua VM: {}",
                    one_line(&e.to_string())
                )));
            }
        }
    }
    Ok(f(guard.as_mut().expect("made above")))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// The SHA1 of `data` in lower-case hex.
pub fn sha1_hex(data: &[u8]) -> String {
    let digest = Sha1::digest(data);
    let mut out = String::with_capacity(40);
    for b in digest {
        out.push_str(&format!("{:02x}", b));
    }
    out
}

impl Scripts {
    fn new(watch: Arc<ScriptWatch>) -> mlua::Result<Scripts> {
        let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
        // SAFETY: the debug library is what makes this constructor unsafe (it can break
        // mlua's invariants); the sandbox keeps only `debug.getinfo` for its error handler
        // and removes the library from the globals before any script runs.
        let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::new()) };
        lua.set_memory_limit(LUA_MEMORY_LIMIT)?;
        libs::register(&lua)?;
        let private = lua.create_table()?;
        let native = lua.create_table()?;
        // redis.call / redis.pcall run the command in the run in progress (`current`). A
        // failing redis.call leaves its error table in R.err and raises; the error handler
        // picks the table up (a host function cannot raise a table through mlua).
        let current: Slot = Arc::new(Mutex::new(None));
        for raise in [true, false] {
            let (r, slot) = (private.clone(), current.clone());
            let f = lua.create_function(move |lua, args: MultiValue| {
                redis_call(lua, &slot, &r, args, raise)
            })?;
            native.raw_set(if raise { "call" } else { "pcall" }, f)?;
        }
        // Whether the run is being stopped (SCRIPT KILL, or the move off the runtime
        // thread): pcall/xpcall then do not catch.
        let w = watch.clone();
        native.raw_set(
            "killed",
            lua.create_function(move |_, ()| Ok(w.kill.load(Ordering::Acquire) || w.moved.load(Ordering::Acquire)))?,
        )?;
        // The message of an error a host function raised (mlua carries it as userdata).
        native.raw_set(
            "errmsg",
            lua.create_function(|_, v: Value| {
                Ok(match v {
                    Value::Error(e) => Some(lua_message(&e)),
                    _ => None,
                })
            })?,
        )?;
        // The API functions that raise Redis's error tables (through R.err, as above).
        let raiser = |private: &Table| {
            let r = private.clone();
            move |lua: &Lua, text: &str| -> mlua::Error {
                match convert::error_table(lua, text, false).and_then(|e| r.raw_set("err", e)) {
                    Ok(()) => mlua::Error::runtime(text.to_string()),
                    Err(e) => e,
                }
            }
        };
        let raise = raiser(&private);
        native.raw_set(
            "sha1hex",
            lua.create_function(move |lua, args: MultiValue| {
                if args.len() != 1 {
                    return Err(raise(lua, "ERR wrong number of arguments"));
                }
                let data = match &args[0] {
                    Value::String(s) => s.as_bytes().to_vec(),
                    v @ (Value::Integer(_) | Value::Number(_)) => {
                        convert::number_text(v).into_bytes()
                    }
                    _ => Vec::new(),
                };
                lua.create_string(sha1_hex(&data))
            })?,
        )?;
        let raise = raiser(&private);
        native.raw_set(
            "log",
            lua.create_function(move |lua, args: MultiValue| {
                if args.len() < 2 {
                    return Err(raise(
                        lua,
                        "ERR redis.log() requires two arguments or more.",
                    ));
                }
                let level = match &args[0] {
                    Value::Integer(i) => *i as f64,
                    Value::Number(n) => *n,
                    Value::String(s) => {
                        match s.to_str().ok().and_then(|s| s.trim().parse::<f64>().ok()) {
                            Some(n) => n,
                            None => {
                                return Err(raise(
                                    lua,
                                    "ERR First argument must be a number (log level).",
                                ))
                            }
                        }
                    }
                    _ => {
                        return Err(raise(
                            lua,
                            "ERR First argument must be a number (log level).",
                        ))
                    }
                };
                let level = level as i64;
                if !(0..=3).contains(&level) {
                    return Err(raise(lua, "ERR Invalid debug level."));
                }
                let mut text = String::new();
                for (i, v) in args.iter().skip(1).enumerate() {
                    let piece = match v {
                        Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                        Value::Integer(_) | Value::Number(_) => convert::number_text(v),
                        _ => continue,
                    };
                    if i > 0 {
                        text.push(' ');
                    }
                    text.push_str(&piece);
                }
                match level {
                    0 | 1 => tracing::debug!(target: "recached::script", "{}", text),
                    2 => tracing::info!(target: "recached::script", "{}", text),
                    _ => tracing::warn!(target: "recached::script", "{}", text),
                }
                Ok(())
            })?,
        )?;
        let (raise, slot) = (raiser(&private), current.clone());
        native.raw_set(
            "setresp",
            lua.create_function(move |lua, args: MultiValue| {
                if lock_slot(&slot).is_none() {
                    return Err(raise(
                        lua,
                        "ERR redis.setresp can only be called inside a script invocation",
                    ));
                }
                if args.len() != 1 {
                    return Err(raise(lua, "ERR redis.setresp() requires one argument."));
                }
                let v = match &args[0] {
                    Value::Integer(i) => *i as f64,
                    Value::Number(n) => *n,
                    Value::String(s) => s
                        .to_str()
                        .ok()
                        .and_then(|s| s.trim().parse::<f64>().ok())
                        .unwrap_or(0.0),
                    _ => 0.0,
                } as i64;
                if v != 2 && v != 3 {
                    return Err(raise(lua, "ERR RESP version must be 2 or 3."));
                }
                if let Some(cur) = lock_slot(&slot).as_mut() {
                    cur.resp3 = v == 3;
                }
                Ok(())
            })?,
        )?;
        // Accepted: a script's effects always replicate, as one change group.
        let (raise, slot) = (raiser(&private), current.clone());
        native.raw_set(
            "set_repl",
            lua.create_function(move |lua, args: MultiValue| {
                if lock_slot(&slot).is_none() {
                    return Err(raise(lua, "ERR redis.set_repl can only be called inside a script invocation"));
                }
                if args.len() != 1 {
                    return Err(raise(lua, "ERR redis.set_repl() requires two arguments."));
                }
                let v = match &args[0] {
                    Value::Integer(i) => *i as f64,
                    Value::Number(n) => *n,
                    _ => 0.0,
                } as i64;
                if v & !3 != 0 {
                    return Err(raise(lua, "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE."));
                }
                Ok(())
            })?,
        )?;
        let (raise, slot) = (raiser(&private), current.clone());
        native.raw_set(
            "acl_check_cmd",
            lua.create_function(move |lua, args: MultiValue| {
                if lock_slot(&slot).is_none() {
                    return Err(raise(
                        lua,
                        "ERR redis.acl_check_cmd can only be called inside a script invocation",
                    ));
                }
                let argv = match convert::command_args(&args) {
                    Ok(a) => a,
                    Err(text) => return Err(raise(lua, &text)),
                };
                match command::lookup(&argv[0]) {
                    Some(_) => Ok(true),
                    None => Err(raise(
                        lua,
                        "ERR Invalid command passed to redis.acl_check_cmd()",
                    )),
                }
            })?,
        )?;
        let collector: functions::Collector = Arc::new(Mutex::new(None));
        let (raise, c) = (raiser(&private), collector.clone());
        native.raw_set(
            "register_function",
            lua.create_function(move |lua, args: MultiValue| functions::register_function(lua, &c, args, &raise))?,
        )?;
        let init = lua
            .load(include_str!("sandbox.lua"))
            .set_name("=recached")
            .into_function()?;
        init.call::<()>((private.clone(), native, REDIS_VERSION, version_num()))?;
        let hidden: Table = private.raw_get("hidden")?;
        let run_fn: Function = private.raw_get("run")?;
        let run_with_fn: Function = private.raw_get("run_with")?;
        // The instruction-count hook (every 100,000 instructions, as Redis): busy marking,
        // SCRIPT KILL, and the move off the runtime thread.
        lua.set_app_data(watch.clone());
        let hook_watch = watch.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(100_000),
            move |_, _| ScriptWatch::check(&hook_watch),
        )?;
        Ok(Scripts {
            lua,
            hidden,
            run_fn,
            run_with_fn,
            private,
            functions: functions::Functions::default(),
            collector,
            current,
            cache: HashMap::new(),
            eval_order: VecDeque::new(),
            body_bytes: 0,
            runs: 0,
            watch,
        })
    }

    /// Compiles `body` (or finds it cached); returns its sha.
    fn load(&mut self, body: &Bytes, from_eval: bool) -> Result<String, Reply> {
        let sha = sha1_hex(body);
        if let Some(s) = self.cache.get_mut(&sha) {
            s.loaded |= !from_eval;
            return Ok(sha);
        }
        let (flags, shebang_len) = shebang(body)?;
        // The shebang line is skipped but its line feed kept, so line numbers stay the user's.
        let code = &body[shebang_len..];
        let func = self
            .lua
            .load(code)
            .set_name("@user_script")
            .set_mode(mlua::ChunkMode::Text)
            .into_function()
            .map_err(|e| {
                Reply::err(format!(
                    "ERR Error compiling script (new function): {}",
                    one_line(&lua_message(&e))
                ))
            })?;
        self.body_bytes += body.len() + sha.len();
        self.cache.insert(
            sha.clone(),
            Script {
                body: body.clone(),
                func,
                flags,
                loaded: !from_eval,
            },
        );
        if from_eval {
            self.eval_order.push_back(sha.clone());
            self.trim_eval_cache();
        }
        Ok(sha)
    }

    fn trim_eval_cache(&mut self) {
        while self.eval_order.len() > EVAL_CACHE_LIMIT {
            let Some(old) = self.eval_order.pop_front() else {
                break;
            };
            if self.cache.get(&old).is_some_and(|s| !s.loaded) {
                if let Some(s) = self.cache.remove(&old) {
                    self.body_bytes = self.body_bytes.saturating_sub(s.body.len() + old.len());
                }
            }
        }
    }
}

/// Parses a `#!lua flags=…` first line; returns the flags and the line's length.
fn shebang(body: &[u8]) -> Result<(ScriptFlags, usize), Reply> {
    if !body.starts_with(b"#!") {
        return Ok((
            ScriptFlags {
                compat: true,
                ..ScriptFlags::default()
            },
            0,
        ));
    }
    let Some(end) = body.iter().position(|&c| c == b'\n') else {
        return Err(Reply::err("ERR Invalid script shebang"));
    };
    let line = String::from_utf8_lossy(&body[2..end]).into_owned();
    let mut parts = line.split_whitespace();
    let engine = parts.next().unwrap_or("");
    if engine != "lua" {
        return Err(Reply::err(format!(
            "ERR Unexpected engine in script shebang: #!{}",
            engine
        )));
    }
    let mut flags = ScriptFlags::default();
    for part in parts {
        let Some(list) = part.strip_prefix("flags=") else {
            return Err(Reply::err(format!(
                "ERR Unknown lua shebang option: {}",
                part
            )));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "allow-oom" => flags.allow_oom = true,
                "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => {
                    return Err(Reply::err(format!(
                        "ERR Unexpected flag in script shebang: {}",
                        other
                    )))
                }
            }
        }
    }
    Ok((flags, end))
}

/// The message of a Lua error, without mlua's decoration.
fn lua_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::CallbackError { cause, .. } => lua_message(cause),
        other => other.to_string(),
    }
}

/// What a script run needs from the host: the engine, the caller's session, and the host
/// commands a script may call (PUBLISH, …).
pub struct RunCtx<'a> {
    /// The engine (its lock is held).
    pub engine: &'a mut Engine,
    /// The caller's session (its database and protocol).
    pub session: &'a mut Session,
    /// The host, for host commands the script calls.
    pub host: &'a mut dyn Host,
    /// The settings' `busy-reply-threshold`.
    pub busy_threshold_ms: u64,
    /// Now.
    pub now_ms: u64,
    /// The script may stop early to run again off the runtime thread (see [`ScriptWatch`]).
    pub may_move: bool,
    /// It runs on the runtime thread.
    pub inline: bool,
}

/// `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`.
pub fn eval(
    scripting: &Scripting,
    ctx: RunCtx<'_>,
    args: &[Bytes],
    by_sha: bool,
    read_only: bool,
) -> Reply {
    let Some(numkeys) = util::parse_i64(&args[2]) else {
        return Reply::err(errors::NOT_INTEGER);
    };
    if numkeys > (args.len() - 3) as i64 {
        return Reply::err("ERR Number of keys can't be greater than number of args");
    }
    if numkeys < 0 {
        return Reply::err("ERR Number of keys can't be negative");
    }
    let numkeys = numkeys as usize;
    let result = with_scripts(scripting, |s| {
        let sha = if by_sha {
            let sha = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
            if !s.cache.contains_key(&sha) {
                return Reply::err(NOSCRIPT);
            }
            sha
        } else {
            match s.load(&args[1], true) {
                Ok(sha) => sha,
                Err(e) => return e,
            }
        };
        let script = &s.cache[&sha];
        let flags = script.flags;
        if !flags.compat && !flags.no_writes && read_only {
            return Reply::err("ERR Can not execute a script with write flag using *_ro command.");
        }
        if !flags.compat && !flags.no_writes {
            if let Some(refused) = ctx.engine.write_refusal() {
                return match refused {
                    Reply::Error(e) if e.starts_with("MISCONF") => Reply::err(
                        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Writable scripts are blocked. Use 'no-writes' flag for read only scripts.",
                    ),
                    Reply::Error(e) if e.starts_with("READONLY") => Reply::err("READONLY Can not run script with write flag on readonly replica"),
                    other => other.clone(),
                };
            }
        }
        let func = script.func.clone();
        let run = ScriptRun {
            read_only: read_only || flags.no_writes,
            allow_oom: flags.allow_oom || flags.no_writes,
            wrote: false,
        };
        let name = sha.clone();
        run_script(
            s,
            ctx,
            &func,
            &name,
            &args[3..3 + numkeys],
            &args[3 + numkeys..],
            run,
            false,
        )
    });
    result.unwrap_or_else(|e| e)
}

/// Runs a compiled script with KEYS and ARGV set; converts its result for the caller.
fn run_script(
    s: &mut Scripts,
    ctx: RunCtx<'_>,
    func: &Function,
    name: &str,
    keys: &[Bytes],
    argv: &[Bytes],
    run: ScriptRun,
    function: bool,
) -> Reply {
    let RunCtx {
        engine,
        session,
        host,
        now_ms,
        ..
    } = ctx;
    let lua = &s.lua;
    let outcome = (|| -> mlua::Result<Reply> {
        // EVAL's KEYS and ARGV are globals; a function gets them as arguments.
        let (keys, argv) = (convert::array(lua, keys)?, convert::array(lua, argv)?);
        if function {
            s.hidden.raw_set("KEYS", Value::Nil)?;
            s.hidden.raw_set("ARGV", Value::Nil)?;
        } else {
            s.hidden.raw_set("KEYS", keys.clone())?;
            s.hidden.raw_set("ARGV", argv.clone())?;
        }
        // The script's own client: the caller's database, RESP2 until redis.setresp(3).
        let mut script_session = Session::new(session.id);
        script_session.db = session.db;
        // SAFETY (for the pointers in `Current`): they are used only by redis.call on this
        // thread while `run_fn.call` below runs, and cleared before this function returns,
        // while `engine` and `host` are still borrowed here.
        let host: *mut (dyn Host + '_) = host;
        let host: *mut (dyn Host + 'static) = unsafe { std::mem::transmute(host) };
        *lock_slot(&s.current) = Some(Current {
            engine,
            host,
            session: script_session,
            run,
            resp3: false,
            now_ms,
        });
        let result = if function {
            s.run_with_fn.call::<MultiValue>((func.clone(), keys, argv))
        } else {
            s.run_fn.call::<MultiValue>(func.clone())
        };
        let resp3 = lock_slot(&s.current)
            .take()
            .map(|c| c.resp3)
            .unwrap_or(false);
        let mut values = result?.into_iter();
        let ok = matches!(values.next(), Some(Value::Boolean(true)));
        let value = values.next().unwrap_or(Value::Nil);
        if ok {
            return Ok(convert::to_reply(&value, resp3));
        }
        Ok(error_reply(
            &value,
            name,
            s.watch.kill.load(Ordering::Acquire),
        ))
    })();
    // Whatever happened, the pointers go.
    lock_slot(&s.current).take();
    s.runs += 1;
    // A GC step now and then, as Redis does, rather than a long full cycle later.
    if s.runs % 50 == 0 {
        let _ = lua.gc_step_kbytes(50);
    }
    match outcome {
        Ok(r) => r,
        Err(mlua::Error::MemoryError(_)) => Reply::err(format!(
            "ERR Error running script {}, not enough memory ",
            name
        )),
        Err(e) => Reply::err(format!(
            "ERR Error running script {}, {} ",
            name,
            one_line(&lua_message(&e))
        )),
    }
}

/// The run in progress: what `redis.call` needs (set by [`run_script`] for its length).
struct Current {
    engine: *mut Engine,
    host: *mut (dyn Host + 'static),
    session: Session,
    run: ScriptRun,
    resp3: bool,
    now_ms: u64,
}

// SAFETY: a `Current` only exists on the thread that runs the script, during the run.
unsafe impl Send for Current {}

type Slot = Arc<Mutex<Option<Current>>>;

fn lock_slot(slot: &Slot) -> MutexGuard<'_, Option<Current>> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// `redis.call` (`raise`) and `redis.pcall`.
fn redis_call(
    lua: &Lua,
    slot: &Slot,
    private: &Table,
    args: MultiValue,
    raise: bool,
) -> mlua::Result<Value> {
    let fail = |table: Value| -> mlua::Result<Value> {
        if raise {
            private.raw_set("err", table)?;
            return Err(mlua::Error::runtime("redis.call failed"));
        }
        Ok(table)
    };
    let mut guard = lock_slot(slot);
    let Some(cur) = guard.as_mut() else {
        drop(guard);
        let e = convert::error_table(
            lua,
            "ERR redis.call/pcall can only be called inside a script invocation",
            false,
        )?;
        private.raw_set("err", e)?;
        return Err(mlua::Error::runtime("redis.call outside a script"));
    };
    let argv = match convert::command_args(&args) {
        Ok(a) => a,
        Err(text) => {
            drop(guard);
            return fail(convert::error_table(lua, &text, true)?);
        }
    };
    cur.session.resp3 = cur.resp3;
    let now = crate::hub::now_ms().max(cur.now_ms);
    // SAFETY: see `Current`; the engine and host outlive the run, and nothing else uses
    // them while the script runs (the engine lock is held by the run's caller).
    let (engine, host) = unsafe { (&mut *cur.engine, &mut *cur.host) };
    let reply = engine.script_call(&mut cur.session, &argv, now, host, &mut cur.run);
    let (resp3, wrote) = (cur.resp3, cur.run.wrote);
    drop(guard);
    if wrote {
        if let Some(w) = lua.app_data_ref::<Arc<ScriptWatch>>() {
            w.wrote.store(true, Ordering::Release);
        }
    }
    let value = convert::to_lua(lua, &reply, resp3)?;
    if matches!(reply, Reply::Error(_)) {
        return fail(value);
    }
    Ok(value)
}

/// The reply to a script that raised an error: `{err=…, source=…, line=…}` from the error
/// handler, as `-<err> script: <name>, on <source>:<line>.`
fn error_reply(value: &Value, name: &str, killed: bool) -> Reply {
    let Value::Table(t) = value else {
        let msg = match value {
            Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".to_string(),
        };
        return Reply::err(format!(
            "ERR Error running script {}, {} ",
            name,
            one_line(&msg)
        ));
    };
    let text = |k: &str| -> Option<String> {
        match t.raw_get::<Value>(k).ok()? {
            Value::String(s) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
            v @ (Value::Integer(_) | Value::Number(_)) => Some(convert::number_text(&v)),
            _ => None,
        }
    };
    let msg = if killed {
        KILLED.to_string()
    } else {
        text("err").unwrap_or_else(|| "ERR unknown error".to_string())
    };
    let mut out = msg;
    if let (Some(source), Some(line)) = (text("source"), text("line")) {
        out.push_str(&format!(" script: {}, on {}:{}.", name, source, line));
    }
    Reply::err(one_line(&out))
}

/// `SCRIPT LOAD | EXISTS | FLUSH | KILL | HELP`.
pub fn script(scripting: &Scripting, args: &[Bytes]) -> Reply {
    let sub = args[1].to_ascii_lowercase();
    let arity = |ok: bool, name: &str| {
        (!ok).then(|| Reply::err(errors::arity(&format!("script|{}", name))))
    };
    match sub.as_slice() {
        b"load" => {
            if let Some(e) = arity(args.len() == 3, "load") {
                return e;
            }
            with_scripts(scripting, |s| match s.load(&args[2], false) {
                Ok(sha) => Reply::bulk(sha),
                Err(e) => e,
            })
            .unwrap_or_else(|e| e)
        }
        b"exists" => {
            if let Some(e) = arity(args.len() >= 3, "exists") {
                return e;
            }
            let guard = scripting.lock();
            let known = |sha: &Bytes| guard.as_ref().is_some_and(|s| s.cache.contains_key(&String::from_utf8_lossy(sha).to_ascii_lowercase()));
            Reply::Array(args[2..].iter().map(|sha| Reply::Int(known(sha) as i64)).collect())
        }
        b"flush" => {
            if let Some(e) = arity(args.len() <= 3, "flush") {
                return e;
            }
            if let Some(mode) = args.get(2) {
                if !mode.eq_ignore_ascii_case(b"sync") && !mode.eq_ignore_ascii_case(b"async") {
                    return Reply::err("ERR SCRIPT FLUSH only support SYNC|ASYNC option");
                }
            }
            // The cached scripts go (the libraries of FUNCTION LOAD stay, as in Redis, whose
            // functions have their own VM).
            if let Some(s) = scripting.lock().as_mut() {
                s.cache.clear();
                s.eval_order.clear();
                s.body_bytes = 0;
                let _ = s.lua.gc_collect();
            }
            Reply::Ok
        }
        b"kill" => {
            if let Some(e) = arity(args.len() == 2, "kill") {
                return e;
            }
            // Under the engine lock no script runs (a busy one is killed from the
            // connection, without the lock: ScriptWatch::busy_reply).
            scripting.watch.kill()
        }
        b"help" => Reply::Array(
            [
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DEBUG (YES|SYNC|NO)",
                "    Set the debug mode for subsequent scripts executed.",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Reply::simple(l.to_string()))
            .collect(),
        ),
        _ => Reply::err(unknown_subcommand_error("script", &args[1])),
    }
}

/// Marks the start of a run for other connections (the lock is held).
pub fn begin(scripting: &Scripting, threshold_ms: u64, may_move: bool, inline: bool, function: bool) {
    scripting.watch.start(threshold_ms, may_move, inline, function);
}

/// Marks the end of a run and wakes the connections that wait for it.
pub fn end(scripting: &Scripting) {
    scripting.watch.end();
}

pub use functions::function as function_command;

/// `EVAL`, `EVALSHA`, their `_RO` forms, `FCALL` and `FCALL_RO` for a host: starts the
/// watch around the run. Returns the reply, and whether the script stopped to run again
/// off the runtime thread (then the reply is to be dropped and the command run again there).
pub fn eval_command(scripting: &Scripting, ctx: RunCtx<'_>, args: &[Bytes]) -> (Reply, bool) {
    let name = args[0].to_ascii_lowercase();
    if name == b"fcall" || name == b"fcall_ro" {
        begin(scripting, ctx.busy_threshold_ms, ctx.may_move, ctx.inline, true);
        let reply = functions::fcall(scripting, ctx, args, name == b"fcall_ro");
        let moved = scripting.watch.moved.swap(false, Ordering::AcqRel);
        end(scripting);
        return (reply, moved);
    }
    let (by_sha, read_only) = match name.as_slice() {
        b"evalsha" => (true, false),
        b"eval_ro" => (false, true),
        b"evalsha_ro" => (true, true),
        _ => (false, false),
    };
    begin(scripting, ctx.busy_threshold_ms, ctx.may_move, ctx.inline, false);
    let reply = eval(scripting, ctx, args, by_sha, read_only);
    let moved = scripting.watch.moved.swap(false, Ordering::AcqRel);
    end(scripting);
    (reply, moved)
}
