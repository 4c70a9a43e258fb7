//! Redis 7 functions: `FUNCTION LOAD [REPLACE]`, `FCALL`/`FCALL_RO`, and `FUNCTION LIST |
//! DELETE | FLUSH | DUMP | RESTORE | STATS | KILL | HELP`, on the same VM as EVAL.
//!
//! A library is Lua code that starts `#!lua name=<lib>` and calls
//! `redis.register_function(name, callback)` (or the table form with `flags` and
//! `description`) when loaded; while it loads it sees only `redis.register_function`,
//! `redis.log` and the version, as in Redis 7.0. The libraries' code lives in memory only
//! (not yet in snapshots, the AOF or replicas).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mlua::{Function, Lua, MultiValue, Value};
use recached_engine::command::unknown_subcommand_error;
use recached_engine::reply::errors;
use recached_engine::{glob, util, Reply, ScriptRun};

use super::{lua_message, one_line, run_script, with_scripts, RunCtx, Scripting, Scripts};

/// A function's flags (`flags = {'no-writes', …}`), in Redis's order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FnFlags {
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot_keys: bool,
}

impl FnFlags {
    fn names(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.no_writes, "no-writes"),
            (self.allow_oom, "allow-oom"),
            (self.allow_stale, "allow-stale"),
            (self.no_cluster, "no-cluster"),
            (self.allow_cross_slot_keys, "allow-cross-slot-keys"),
        ] {
            if on {
                out.push(name);
            }
        }
        out
    }
}

/// A registered function.
pub struct Func {
    callback: Function,
    flags: FnFlags,
    description: Option<String>,
}

/// A loaded library.
pub struct Library {
    code: Bytes,
    functions: BTreeMap<String, Func>,
}

/// The functions of a VM: libraries by name, and which library has each function.
#[derive(Default)]
pub struct Functions {
    libs: BTreeMap<String, Library>,
    owner: BTreeMap<String, String>,
}

/// What `redis.register_function` collects while a library loads (`None`: not loading).
pub type Collector = Arc<Mutex<Option<Vec<(String, Func)>>>>;

fn lock(c: &Collector) -> MutexGuard<'_, Option<Vec<(String, Func)>>> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `redis.register_function`, for the VM's native table; errors go through `raise`.
pub fn register_function(lua: &Lua, collector: &Collector, args: MultiValue, raise: &dyn Fn(&Lua, &str) -> mlua::Error) -> mlua::Result<()> {
    if lock(collector).is_none() {
        return Err(raise(lua, "ERR redis.register_function can only be called on FUNCTION LOAD command"));
    }
    let fail = |text: &str| Err(raise(lua, &format!("ERR {}", text)));
    let (name, callback, flags, description) = match args.len() {
        2 => {
            let Value::String(name) = &args[0] else { return fail("first argument to redis.register_function must be a string") };
            let Value::Function(cb) = &args[1] else { return fail("second argument to redis.register_function must be a function") };
            (String::from_utf8_lossy(&name.as_bytes()).into_owned(), cb.clone(), FnFlags::default(), None)
        }
        1 => {
            let Value::Table(t) = &args[0] else { return fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments).") };
            let (mut name, mut cb, mut flags, mut desc) = (None, None, FnFlags::default(), None);
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let Value::String(k) = k else { return fail("named argument key given to redis.register_function is not a string") };
                match k.to_str()?.to_ascii_lowercase().as_str() {
                    "function_name" => match v {
                        Value::String(s) => name = Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
                        _ => return fail("function_name argument given to redis.register_function must be a string"),
                    },
                    "description" => match v {
                        Value::String(s) => desc = Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
                        _ => return fail("description argument given to redis.register_function must be a string"),
                    },
                    "callback" => match v {
                        Value::Function(f) => cb = Some(f),
                        _ => return fail("callback argument given to redis.register_function must be a function"),
                    },
                    "flags" => {
                        let Value::Table(list) = v else { return fail("flags argument to redis.register_function must be a table representing function flags") };
                        for flag in list.sequence_values::<Value>() {
                            let flag = match flag? {
                                Value::String(s) => s.to_str()?.to_string(),
                                _ => return fail("unknown flag given"),
                            };
                            match flag.as_str() {
                                "no-writes" => flags.no_writes = true,
                                "allow-oom" => flags.allow_oom = true,
                                "allow-stale" => flags.allow_stale = true,
                                "no-cluster" => flags.no_cluster = true,
                                "allow-cross-slot-keys" => flags.allow_cross_slot_keys = true,
                                _ => return fail("unknown flag given"),
                            }
                        }
                    }
                    _ => return fail("unknown argument given to redis.register_function"),
                }
            }
            let Some(name) = name else { return fail("redis.register_function must get a function name argument") };
            let Some(cb) = cb else { return fail("redis.register_function must get a callback argument") };
            (name, cb, flags, desc)
        }
        _ => return fail("wrong number of arguments to redis.register_function"),
    };
    if !valid_name(&name) {
        return fail("Function names can only contain letters, numbers, or underscores(_) and must be at least one character long");
    }
    let mut guard = lock(collector);
    let list = guard.as_mut().expect("checked above");
    if list.iter().any(|(n, _)| *n == name) {
        drop(guard);
        return fail("Function already exists in the library");
    }
    list.push((name, Func { callback, flags, description }));
    Ok(())
}

/// The `#!lua name=<lib>` line: the library's name and the line's length.
fn metadata(code: &[u8]) -> Result<(String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let end = code.iter().position(|&c| c == b'\n').unwrap_or(code.len());
    let line = String::from_utf8_lossy(&code[2..end]).into_owned();
    let mut parts = line.split_whitespace();
    let engine = parts.next().unwrap_or("");
    let mut name = None;
    for part in parts {
        match part.strip_prefix("name=") {
            Some(n) if name.is_none() => name = Some(n.to_string()),
            Some(_) => return Err("Invalid metadata value, name argument was given multiple times".into()),
            None => return Err(format!("Invalid metadata value given: {}", part)),
        }
    }
    let Some(name) = name else { return Err("Library name was not given".into()) };
    if !valid_name(&name) {
        return Err("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long".into());
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{}' not found", engine));
    }
    Ok((name, end))
}

impl Scripts {
    /// Loads a library (FUNCTION LOAD, RESTORE); returns its name.
    pub(super) fn load_library(&mut self, code: &Bytes, replace: bool) -> Result<String, String> {
        let (name, meta_len) = metadata(code)?;
        if self.functions.libs.contains_key(&name) && !replace {
            return Err(format!("Library '{}' already exists", name));
        }
        // The metadata line is skipped but its line feed kept (line numbers stay the user's).
        let func = self
            .lua
            .load(&code[meta_len..])
            .set_name("@user_function")
            .set_mode(mlua::ChunkMode::Text)
            .into_function()
            .map_err(|e| format!("Error compiling function: {}", one_line(&lua_message(&e))))?;
        *lock(&self.collector) = Some(Vec::new());
        let loading: Function = self.private.raw_get("loading").map_err(|e| e.to_string())?;
        let _ = loading.call::<()>(true);
        self.watch.load_deadline_ms.store(crate::hub::now_ms() + 500, std::sync::atomic::Ordering::Release);
        let ran = self.run_fn.call::<MultiValue>(func);
        self.watch.load_deadline_ms.store(0, std::sync::atomic::Ordering::Release);
        let _ = loading.call::<()>(false);
        let registered = lock(&self.collector).take().unwrap_or_default();
        let mut values = ran.map_err(|e| format!("Error registering functions: {}", one_line(&lua_message(&e))))?.into_iter();
        if !matches!(values.next(), Some(Value::Boolean(true))) {
            let msg = match values.next() {
                Some(Value::Table(t)) => t.raw_get::<Option<String>>("err").ok().flatten().unwrap_or_default(),
                Some(Value::String(s)) => s.to_str().map(|s| s.to_string()).unwrap_or_default(),
                _ => String::new(),
            };
            return Err(format!("Error registering functions: {}", one_line(&msg)));
        }
        if registered.is_empty() {
            return Err("No functions registered".into());
        }
        for (f, _) in &registered {
            if let Some(owner) = self.functions.owner.get(f) {
                if *owner != name {
                    return Err(format!("Function {} already exists", f));
                }
            }
        }
        if let Some(old) = self.functions.libs.remove(&name) {
            for f in old.functions.keys() {
                self.functions.owner.remove(f);
            }
        }
        let mut functions = BTreeMap::new();
        for (f, func) in registered {
            self.functions.owner.insert(f.clone(), name.clone());
            functions.insert(f, func);
        }
        self.functions.libs.insert(name.clone(), Library { code: code.clone(), functions });
        Ok(name)
    }

    fn function_count(&self) -> usize {
        self.functions.owner.len()
    }
}

/// `FCALL` / `FCALL_RO`.
pub fn fcall(scripting: &Scripting, ctx: RunCtx<'_>, args: &[Bytes], read_only: bool) -> Reply {
    with_scripts(scripting, |s| {
        let name = String::from_utf8_lossy(&args[1]).into_owned();
        // The function first, then the key count, in Redis's order.
        let Some(lib) = s.functions.owner.get(&name).cloned() else {
            return Reply::err("ERR Function not found");
        };
        let Some(numkeys) = util::parse_i64(&args[2]) else {
            return Reply::err("ERR Bad number of keys provided");
        };
        if numkeys > (args.len() - 3) as i64 {
            return Reply::err("ERR Number of keys can't be greater than number of args");
        }
        if numkeys < 0 {
            return Reply::err("ERR Number of keys can't be negative");
        }
        let numkeys = numkeys as usize;
        let f = &s.functions.libs[&lib].functions[&name];
        let (callback, flags) = (f.callback.clone(), f.flags);
        if !flags.no_writes && read_only {
            return Reply::err("ERR Can not execute a script with write flag using *_ro command.");
        }
        if !flags.no_writes {
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
        let run = ScriptRun { read_only: flags.no_writes, allow_oom: flags.allow_oom || flags.no_writes, wrote: false };
        run_script(s, ctx, &callback, &name, &args[3..3 + numkeys], &args[3 + numkeys..], run, true)
    })
    .unwrap_or_else(|e| e)
}

fn bulk(s: &str) -> Reply {
    Reply::bulk(s.as_bytes())
}

/// The payload of FUNCTION DUMP: `RCFN1`, then per library its code's length (u32 BE) and
/// code, then a CRC-32 of everything before it. (Redis's payload is an RDB fragment; this
/// one is Recached's own and only FUNCTION RESTORE reads it.)
fn dump(f: &Functions) -> Vec<u8> {
    let mut out = b"RCFN1".to_vec();
    for lib in f.libs.values() {
        out.extend_from_slice(&(lib.code.len() as u32).to_be_bytes());
        out.extend_from_slice(&lib.code);
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn undump(data: &[u8]) -> Option<Vec<Bytes>> {
    if data.len() < 9 || !data.starts_with(b"RCFN1") {
        return None;
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32(body).to_be_bytes() != crc {
        return None;
    }
    let mut at = 5;
    let mut out = Vec::new();
    while at < body.len() {
        let len = u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        out.push(Bytes::copy_from_slice(body.get(at..at + len)?));
        at += len;
    }
    Some(out)
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// `FUNCTION …`.
pub fn function(scripting: &Scripting, args: &[Bytes], resp3: bool) -> Reply {
    let sub = args[1].to_ascii_lowercase();
    let arity = |ok: bool, name: &str| (!ok).then(|| Reply::err(errors::arity(&format!("function|{}", name))));
    let map = |pairs: Vec<(Reply, Reply)>| -> Reply {
        if resp3 {
            Reply::Map(pairs)
        } else {
            Reply::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect())
        }
    };
    match sub.as_slice() {
        b"load" => {
            if let Some(e) = arity(args.len() >= 3, "load") {
                return e;
            }
            let (replace, code) = match args.len() {
                3 => (false, &args[2]),
                4 if args[2].eq_ignore_ascii_case(b"replace") => (true, &args[3]),
                4 => return Reply::err(format!("ERR Unknown option given: {}", String::from_utf8_lossy(&args[2]))),
                _ => return Reply::err(errors::arity("function|load")),
            };
            with_scripts(scripting, |s| match s.load_library(code, replace) {
                Ok(name) => bulk(&name),
                Err(e) => Reply::err(format!("ERR {}", e)),
            })
            .unwrap_or_else(|e| e)
        }
        b"delete" => {
            if let Some(e) = arity(args.len() == 3, "delete") {
                return e;
            }
            with_scripts(scripting, |s| {
                let name = String::from_utf8_lossy(&args[2]).into_owned();
                match s.functions.libs.remove(&name) {
                    Some(lib) => {
                        for f in lib.functions.keys() {
                            s.functions.owner.remove(f);
                        }
                        Reply::Ok
                    }
                    None => Reply::err("ERR Library not found"),
                }
            })
            .unwrap_or_else(|e| e)
        }
        b"flush" => {
            if let Some(e) = arity(args.len() <= 3, "flush") {
                return e;
            }
            if let Some(mode) = args.get(2) {
                if !mode.eq_ignore_ascii_case(b"sync") && !mode.eq_ignore_ascii_case(b"async") {
                    return Reply::err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option");
                }
            }
            with_scripts(scripting, |s| {
                s.functions = Functions::default();
                Reply::Ok
            })
            .unwrap_or_else(|e| e)
        }
        b"list" => {
            let (mut with_code, mut pattern) = (false, None::<Bytes>);
            let mut i = 2;
            while i < args.len() {
                if args[i].eq_ignore_ascii_case(b"withcode") && !with_code {
                    with_code = true;
                } else if args[i].eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
                    let Some(p) = args.get(i + 1) else {
                        return Reply::err("ERR library name argument was not given");
                    };
                    pattern = Some(p.clone());
                    i += 1;
                } else {
                    return Reply::err(format!("ERR Unknown argument {}", String::from_utf8_lossy(&args[i])));
                }
                i += 1;
            }
            with_scripts(scripting, |s| {
                let mut out = Vec::new();
                for (name, lib) in &s.functions.libs {
                    if let Some(p) = &pattern {
                        if !glob::matches(p, name.as_bytes(), false) {
                            continue;
                        }
                    }
                    let functions = lib
                        .functions
                        .iter()
                        .map(|(fname, f)| {
                            map(vec![
                                (bulk("name"), bulk(fname)),
                                (bulk("description"), f.description.as_deref().map(bulk).unwrap_or(Reply::Nil)),
                                (bulk("flags"), Reply::Set(f.flags.names().into_iter().map(Reply::simple).collect())),
                            ])
                        })
                        .collect();
                    let mut fields = vec![(bulk("library_name"), bulk(name)), (bulk("engine"), bulk("LUA")), (bulk("functions"), Reply::Array(functions))];
                    if with_code {
                        fields.push((bulk("library_code"), Reply::Bulk(lib.code.clone())));
                    }
                    out.push(map(fields));
                }
                Reply::Array(out)
            })
            .unwrap_or_else(|e| e)
        }
        b"stats" => {
            if let Some(e) = arity(args.len() == 2, "stats") {
                return e;
            }
            // Under the engine lock no function runs (a busy one is seen from the
            // connection, without the lock).
            with_scripts(scripting, |s| {
                let lua = map(vec![(bulk("libraries_count"), Reply::Int(s.functions.libs.len() as i64)), (bulk("functions_count"), Reply::Int(s.function_count() as i64))]);
                map(vec![(bulk("running_script"), Reply::Nil), (bulk("engines"), map(vec![(bulk("LUA"), lua)]))])
            })
            .unwrap_or_else(|e| e)
        }
        b"kill" => {
            if let Some(e) = arity(args.len() == 2, "kill") {
                return e;
            }
            Reply::err("NOTBUSY No scripts in execution right now.")
        }
        b"dump" => {
            if let Some(e) = arity(args.len() == 2, "dump") {
                return e;
            }
            with_scripts(scripting, |s| Reply::Bulk(Bytes::from(dump(&s.functions)))).unwrap_or_else(|e| e)
        }
        b"restore" => {
            if let Some(e) = arity(args.len() == 3 || args.len() == 4, "restore") {
                return e;
            }
            let policy = args.get(3).map(|p| p.to_ascii_lowercase());
            let policy = match policy.as_deref() {
                None | Some(b"append") => "append",
                Some(b"replace") => "replace",
                Some(b"flush") => "flush",
                Some(_) => return Reply::err("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."),
            };
            let Some(codes) = undump(&args[2]) else {
                return Reply::err("ERR payload version or checksum are wrong");
            };
            with_scripts(scripting, |s| {
                let saved = std::mem::take(&mut s.functions);
                if policy != "flush" {
                    // Rebuilt from code: the callbacks belong to this VM either way.
                    for lib in saved.libs.values() {
                        let _ = s.load_library(&lib.code, false);
                    }
                }
                for code in &codes {
                    let replace = policy != "append";
                    if let Err(e) = s.load_library(code, replace) {
                        // All or nothing: back to what was there.
                        s.functions = saved;
                        let e = if e.starts_with("Library '") && policy == "append" {
                            e.replacen("Library '", "Library ", 1).replacen("' already exists", " already exists", 1)
                        } else {
                            e
                        };
                        return Reply::err(format!("ERR {}", e));
                    }
                }
                Reply::Ok
            })
            .unwrap_or_else(|e| e)
        }
        b"help" => Reply::Array(
            [
                "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "LOAD [REPLACE] <FUNCTION CODE>",
                "    Create a new library with the given library name and code.",
                "DELETE <LIBRARY NAME>",
                "    Delete the given library.",
                "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
                "    Return general information on all the libraries:",
                "    * Library name",
                "    * The engine used to run the Library",
                "    * Library description",
                "    * Functions list",
                "    * Library code (if WITHCODE is given)",
                "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
                "STATS",
                "    Return information about the current function running:",
                "    * Function name",
                "    * Command used to run the function",
                "    * Duration in MS that the function is running",
                "    If no function is running, return nil",
                "    In addition, returns a list of available engines.",
                "KILL",
                "    Kill the current running function.",
                "FLUSH [ASYNC|SYNC]",
                "    Delete all the libraries.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the libraries.",
                "    * SYNC: Synchronously flush the libraries.",
                "DUMP",
                "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
                "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
                "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
                "    control how to handle existing libraries (default APPEND):",
                "    * FLUSH: delete all existing libraries.",
                "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
                "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
                "      libraries with the new libraries (notice that even on this option there is a chance of failure",
                "      in case of functions name collision with another library).",
                "HELP",
                "    Prints this help.",
            ]
            .iter()
            .map(|l| Reply::simple(l.to_string()))
            .collect(),
        ),
        _ => Reply::err(unknown_subcommand_error("function", &args[1])),
    }
}

/// INFO's function fields: libraries, functions.
pub fn counts(s: &Scripts) -> (usize, usize) {
    (s.functions.libs.len(), s.function_count())
}
