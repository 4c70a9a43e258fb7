//! The `#[wasm_bindgen]` surface: `createCache` and the `Cache` class. Conversions between
//! JS values and engine arguments/replies happen here and only here; everything else is
//! [`crate::Cache`].

use std::rc::Rc;

use bytes::Bytes;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use recached_engine::Reply;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::cache::{Cache, Counted};
use crate::core::{CacheOptions, ConnectOptions, Notice, Settled, Status};
use recached_engine::resp::Frame;
use crate::registry::ListenerId;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** A key: text (stored as UTF-8) or raw bytes. */
export type Key = string | Uint8Array;
/** A value: text (UTF-8), raw bytes, or a number (stored as its decimal text). */
export type Value = string | Uint8Array | number;
/** A reply to `command()`: what a RESP2 client would get (bulk strings that are not UTF-8 come as bytes). */
export type Reply = string | number | null | Uint8Array | Reply[];
/** `cache.tabRole`: `alone` (no channel), `pending` (the first moments), `leader` or `follower`. */
export type TabRole = "alone" | "pending" | "leader" | "follower";
/** `cache.status`: `offline` is a local cache with no hub. */
export type Status = "offline" | "connecting" | "resyncing" | "live" | "closed";
/** Redis's `maxmemory-policy` names. */
export type Eviction =
  | "noeviction" | "allkeys-lru" | "volatile-lru" | "allkeys-lfu" | "volatile-lfu"
  | "allkeys-random" | "volatile-random" | "volatile-ttl";
export interface CacheOptions {
  /** Key cap (0 or absent: none). */
  maxKeys?: number;
  /** Memory cap in bytes, or a size such as `"10mb"` (0 or absent: none). */
  maxMemory?: number | string;
  /** What to evict at a cap; default `"allkeys-lru"`. */
  eviction?: Eviction;
  /**
   * The BroadcastChannel (and Web Lock) name this cache shares with the other tabs of
   * the origin; default `"recached"`. Caches naming the same channel act as one: one tab
   * (the leader) holds the hub connection and the state, the others mirror it and send
   * their writes through it. `false` (or `""`): this cache keeps to itself.
   */
  channel?: string | false;
}
/** `SET` options; upper-case names (`EX`, `NX`, `KEEPTTL`, …) are accepted too. */
export interface SetOptions {
  ex?: number; px?: number; exat?: number; pxat?: number;
  nx?: boolean; xx?: boolean; keepTtl?: boolean; get?: boolean;
}
export interface ZRangeOptions { withScores?: boolean; rev?: boolean; }
export interface ScanOptions { match?: string; count?: number; type?: string; }
export interface ZMember { score: number; member: Key; }
export interface ConnectOptions {
  /** Hub WebSocket URL(s), e.g. `ws://127.0.0.1:6380`; several are tried in turn. */
  urls: string | string[];
  /** The token presented at HELLO (any text on an open hub). */
  token?: string;
  /** Key patterns to mirror; default `["*"]` (what the token may read). */
  patterns?: string[];
}
/** Called with the key (null when a whole database changed) and Redis's event name: `set`, `del`, `expired`, `evicted`, `hset`, … */
export type ChangeListener = (key: string | null, event: string) => void;
/** Counters as in Redis's `INFO stats` (memo hits of `get` count as keyspace hits). */
export interface CacheStats {
  keyspaceHits: number;
  keyspaceMisses: number;
  expiredKeys: number;
  evictedKeys: number;
  commands: number;
}
/** Stops a listener. Calling it again, or after `close()`, does nothing. */
export type Unsubscribe = () => void;
"#;

#[wasm_bindgen(inline_js = r#"
export function recachedFastGet(cache, memo, touched, batch) {
  const proto = Object.getPrototypeOf(cache);
  const slow = proto.get;
  const note = proto.__noteReads;
  Object.defineProperty(cache, "get", {
    value: touched === undefined ? function get(key) {
      const hit = memo.get(key);
      return hit !== undefined ? hit : slow.call(this, key);
    } : function get(key) {
      const hit = memo.get(key);
      if (hit === undefined) return slow.call(this, key);
      if (touched.push(key) >= batch) note.call(this);
      return hit;
    },
    writable: true,
    configurable: true,
  });
  return cache;
}
"#)]
extern "C" {
    /// Gives the JS object of a cache its own `get`, answering from `memo` (a JS `Map`
    /// kept by Rust: key → what `get` returned) before calling into wasm. With `touched`
    /// (LRU/LFU under a cap) a hit also records its key there, and every `batch` hits
    /// hands them to the engine (`__noteReads`).
    #[wasm_bindgen(js_name = recachedFastGet)]
    fn fast_get(cache: JsValue, memo: &js_sys::Map, touched: Option<js_sys::Array>, batch: u32) -> JsValue;
}

/// Creates a local cache: the engine in wasm memory, TTL and caps, no server needed.
///
/// The JS object's `get` answers a repeated read of an unchanged string key without a
/// TTL from a JS `Map` memo (no call into wasm, no string conversion); every change to a
/// key removes it from the memo before any listener runs (docs/benchmarks.md).
#[wasm_bindgen(js_name = createCache, unchecked_return_type = "Cache")]
pub fn create_cache_js(
    #[wasm_bindgen(unchecked_optional_param_type = "CacheOptions")] options: Option<Object>,
) -> Result<JsValue, JsError> {
    let cache = create_cache(options)?;
    let (memo, touched) = (cache.cache.memo_map(), cache.cache.touched());
    let obj = JsValue::from(cache);
    Ok(match memo {
        Some(memo) => fast_get(obj, &memo, touched, crate::cache::TOUCHED_BATCH),
        None => obj,
    })
}

/// [`create_cache_js`] for Rust callers (tests, apps mixing Rust and JS): the same cache,
/// without the JS-side `get`.
pub fn create_cache(options: Option<Object>) -> Result<JsCache, JsError> {
    console_error_panic_hook::set_once();
    let options = match options {
        Some(o) => parse_options(&o)?,
        None => CacheOptions { channel: Some(DEFAULT_CHANNEL.to_string()), ..CacheOptions::default() },
    };
    let cache = Cache::new(&options)?;
    cache.enable_memo();
    Ok(JsCache { cache })
}

fn prop(obj: &JsValue, names: &[&str]) -> Option<JsValue> {
    names
        .iter()
        .filter_map(|n| Reflect::get(obj, &JsValue::from_str(n)).ok())
        .find(|v| !v.is_undefined() && !v.is_null())
}

fn parse_options(o: &Object) -> Result<CacheOptions, JsError> {
    let mut opts = CacheOptions::default();
    if let Some(v) = prop(o, &["maxKeys"]) {
        opts.max_keys = non_negative(&v, "maxKeys")?;
    }
    if let Some(v) = prop(o, &["maxMemory"]) {
        opts.max_memory = match v.as_string() {
            Some(text) => CacheOptions::parse_size(&text)?,
            None => non_negative(&v, "maxMemory")?,
        };
    }
    if let Some(v) = prop(o, &["eviction"]) {
        let name = v.as_string().ok_or_else(|| JsError::new("eviction: expected a policy name"))?;
        opts.eviction = Some(CacheOptions::parse_policy(&name)?);
    }
    let channel = Reflect::get(o, &JsValue::from_str("channel")).unwrap_or(JsValue::UNDEFINED);
    opts.channel = channel_option(&channel)?;
    Ok(opts)
}

/// The channel JS caches share by default: tabs of one origin act as one unless told not to.
pub const DEFAULT_CHANNEL: &str = "recached";

/// `channel`: absent → the default, a name → that name, `false`/`null`/`""` → none.
fn channel_option(v: &JsValue) -> Result<Option<String>, JsError> {
    if v.is_undefined() {
        return Ok(Some(DEFAULT_CHANNEL.to_string()));
    }
    if v.is_null() || v.as_bool() == Some(false) {
        return Ok(None);
    }
    match v.as_string() {
        Some(name) if name.is_empty() => Ok(None),
        Some(name) => Ok(Some(name)),
        None => Err(JsError::new("channel: expected a name or false")),
    }
}

fn non_negative(v: &JsValue, name: &str) -> Result<usize, JsError> {
    match v.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(n as usize),
        _ => Err(JsError::new(&format!("{name}: expected a non-negative integer"))),
    }
}

/// A key, value or argument: string → UTF-8, Uint8Array → bytes, number/bigint/boolean →
/// decimal text.
fn arg(v: &JsValue, what: &str) -> Result<Bytes, JsError> {
    if let Some(s) = v.as_string() {
        return Ok(Bytes::from(s));
    }
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(Bytes::from(a.to_vec()));
    }
    if let Some(n) = v.as_f64() {
        return Ok(Bytes::from(number_text(n)));
    }
    if let Some(b) = v.as_bool() {
        return Ok(Bytes::from_static(if b { b"true" } else { b"false" }));
    }
    if v.is_bigint() {
        if let Ok(s) = js_sys::BigInt::from(v.clone()).to_string(10) {
            return Ok(Bytes::from(String::from(s)));
        }
    }
    Err(JsError::new(&format!("{what}: expected a string, Uint8Array or number")))
}

/// A number as Redis parses it: integers without a fraction, others in the shortest form
/// that reads back exactly (`3.5`, `0.1`; `inf`/`-inf` as Redis spells them).
fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e21 {
        format!("{n:.0}")
    } else {
        format!("{n}")
    }
}

/// One value or an array of values.
fn args_of(v: &JsValue, what: &str) -> Result<Vec<Bytes>, JsError> {
    if Array::is_array(v) {
        Array::from(v).iter().map(|x| arg(&x, what)).collect()
    } else {
        Ok(vec![arg(v, what)?])
    }
}

fn text(b: &[u8]) -> JsValue {
    JsValue::from_str(&String::from_utf8_lossy(b))
}

/// A reply as a RESP2 client sees it: bulk strings as text (bytes when not UTF-8), maps
/// flattened, doubles as text, booleans as 1/0.
fn reply_to_js(reply: Reply) -> Result<JsValue, JsValue> {
    Ok(match reply {
        Reply::Error(e) => return Err(js_sys::Error::new(&e).into()),
        Reply::Ok => JsValue::from_str("OK"),
        Reply::Simple(s) => JsValue::from_str(&s),
        Reply::Int(n) => JsValue::from_f64(n as f64),
        Reply::Bulk(b) | Reply::Verbatim(_, b) => match std::str::from_utf8(&b) {
            Ok(s) => JsValue::from_str(s),
            Err(_) => Uint8Array::from(&b[..]).into(),
        },
        Reply::Nil | Reply::NilArray => JsValue::NULL,
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
            let out = Array::new();
            for item in items {
                out.push(&reply_to_js(item).unwrap_or_else(|e| e));
            }
            out.into()
        }
        Reply::Map(pairs) => {
            let out = Array::new();
            for (k, v) in pairs {
                out.push(&reply_to_js(k).unwrap_or_else(|e| e));
                out.push(&reply_to_js(v).unwrap_or_else(|e| e));
            }
            out.into()
        }
        Reply::Double(d) => JsValue::from_str(&recached_engine::util::fmt_double(d)),
        Reply::Bool(b) => JsValue::from_f64(if b { 1.0 } else { 0.0 }),
    })
}

/// A read's reply, or the error it answered, thrown.
fn read(reply: Reply) -> Result<JsValue, JsValue> {
    reply_to_js(reply)
}

fn bulk_text(reply: Reply) -> Result<JsValue, JsValue> {
    match reply {
        Reply::Bulk(b) => Ok(text(&b)),
        Reply::Error(e) => Err(js_sys::Error::new(&e).into()),
        _ => Ok(JsValue::NULL),
    }
}

fn texts(reply: Reply) -> Result<JsValue, JsValue> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => {
            let out = Array::new();
            for item in items {
                out.push(&match item {
                    Reply::Bulk(b) => text(&b),
                    _ => JsValue::NULL,
                });
            }
            Ok(out.into())
        }
        Reply::Error(e) => Err(js_sys::Error::new(&e).into()),
        _ => Ok(Array::new().into()),
    }
}

fn to_js_err(e: JsError) -> JsValue {
    e.into()
}

thread_local! {
    /// Makes the JS function `on()` returns: idempotent, and silent once the cache (and
    /// with it the Rust closure) is gone.
    static UNSUBSCRIBE: Function = Function::new_with_args(
        "f",
        "let g = f; return function unsubscribe() { const h = g; g = null; if (h) { try { h(); } catch (_) {} } };",
    );
}

/// A local cache. Reads answer at once from wasm memory; writes apply at once and return
/// a promise with the engine's reply.
#[wasm_bindgen(js_name = Cache)]
pub struct JsCache {
    cache: Cache,
}

impl JsCache {
    /// The Rust handle behind this JS object (for Leptos hooks in the same app).
    pub fn handle(&self) -> Cache {
        self.cache.clone()
    }

    fn run(&self, args: Vec<Bytes>) -> Reply {
        self.cache.run(&args)
    }

    fn key_cmd(&self, name: &'static str, key: &JsValue) -> Result<Reply, JsValue> {
        Ok(self.run(vec![Bytes::from_static(name.as_bytes()), arg(key, "key").map_err(to_js_err)?]))
    }

    fn key_values_write(&self, name: &'static str, key: &JsValue, values: &JsValue, what: &str) -> Promise {
        let args = (|| {
            let mut args = vec![Bytes::from_static(name.as_bytes()), arg(key, "key")?];
            args.extend(args_of(values, what)?);
            Ok(args)
        })();
        self.write(args)
    }

    fn unsubscribe_fn(&self, status: bool, id: ListenerId) -> Function {
        let weak = self.cache.downgrade();
        let closure = Closure::<dyn FnMut()>::new(move || {
            if let Some(cache) = weak.upgrade() {
                if status {
                    cache.off_status(id);
                } else {
                    cache.off(id);
                }
            }
        });
        let inner: JsValue = closure.as_ref().clone();
        self.cache.attach(status, id, Box::new(Counted::new(closure)));
        UNSUBSCRIBE.with(|wrap| wrap.call1(&JsValue::NULL, &inner)).map(|f| f.unchecked_into()).unwrap_or_else(|_| inner.unchecked_into())
    }

    fn write(&self, args: Result<Vec<Bytes>, JsError>) -> Promise {
        match args {
            Ok(args) => self.promise(move |cache, done| cache.write(&args, done)),
            Err(e) => Promise::reject(&to_js_err(e)),
        }
    }

    /// A promise settled by `start`'s callback: at once for local writes, on the hub's
    /// ack (or refusal) otherwise.
    fn promise(&self, start: impl FnOnce(&Cache, Box<dyn FnOnce(Settled)>)) -> Promise {
        let mut start = Some(start);
        Promise::new(&mut |resolve: Function, reject: Function| {
            if let Some(start) = start.take() {
                start(&self.cache, Box::new(move |outcome| settle_promise(outcome, &resolve, &reject)));
            }
        })
    }
}

fn settle_promise(outcome: Settled, resolve: &Function, reject: &Function) {
    let result = match outcome {
        Settled::Local(reply) => reply_to_js(reply),
        Settled::Hub(frame) => frame_to_js(frame),
        Settled::Refused(error) => Err(js_sys::Error::new(&error).into()),
    };
    let _ = match result {
        Ok(v) => resolve.call1(&JsValue::NULL, &v),
        Err(e) => reject.call1(&JsValue::NULL, &e),
    };
}

/// A hub reply frame as a RESP2 client sees it (the same shapes as [`reply_to_js`]).
fn frame_to_js(frame: Frame) -> Result<JsValue, JsValue> {
    let bulk = |b: &[u8]| match std::str::from_utf8(b) {
        Ok(s) => JsValue::from_str(s),
        Err(_) => Uint8Array::from(b).into(),
    };
    let list = |items: Vec<Frame>| {
        let out = Array::new();
        for item in items {
            out.push(&frame_to_js(item).unwrap_or_else(|e| e));
        }
        JsValue::from(out)
    };
    Ok(match frame {
        Frame::Error(e) => return Err(js_sys::Error::new(&String::from_utf8_lossy(&e)).into()),
        Frame::Simple(b) | Frame::Bulk(b) | Frame::BigNumber(b) => bulk(&b),
        Frame::Verbatim(b) => bulk(b.get(4..).unwrap_or(&b)),
        Frame::Int(n) => JsValue::from_f64(n as f64),
        Frame::Null => JsValue::NULL,
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => list(items),
        Frame::Map(pairs) => list(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        Frame::Double(d) => JsValue::from_str(&recached_engine::util::fmt_double(d)),
        Frame::Bool(b) => JsValue::from_f64(if b { 1.0 } else { 0.0 }),
    })
}

fn cmd(name: &'static str, rest: impl IntoIterator<Item = Result<Bytes, JsError>>) -> Result<Vec<Bytes>, JsError> {
    let mut args = vec![Bytes::from_static(name.as_bytes())];
    for a in rest {
        args.push(a?);
    }
    Ok(args)
}

#[wasm_bindgen(js_class = Cache)]
impl JsCache {
    // ---- reads: answered at once from wasm memory; an error reply is thrown ----

    /// `GET`: the value as text (non-UTF-8 bytes decode lossily; use `getBytes`).
    ///
    /// The hot path (docs/benchmarks.md): a repeated read of an unchanged string key with no
    /// TTL is answered in JS from a `Map` memo of what `get` returned (see `createCache`;
    /// every change notice drops the key from it); a first read looks the key up directly
    /// and fills the memo. With an LRU/LFU policy and a cap every read counts as an access,
    /// as `GET` would: a direct lookup counts at once, memo hits are recorded in JS and
    /// handed to the engine every 64 hits and before every write (eviction runs on writes).
    #[wasm_bindgen(unchecked_return_type = "string | null")]
    pub fn get(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<JsValue, JsValue> {
        if let Some(name) = key.as_string() {
            let memo = self.cache.memo_enabled();
            let found = if self.cache.reads_are_free() { self.cache.peek_string(name.as_bytes()) } else { self.cache.read_string(name.as_bytes()) };
            if let Some((value, expires)) = found {
                let js = text(&value);
                // A key with lone surrogates reads as another key (lossy UTF-8): never
                // memoize it under the JS string.
                if memo && !expires && key.unchecked_ref::<js_sys::JsString>().is_valid_utf16() {
                    self.cache.memo_set(&key, &js);
                }
                return Ok(js);
            }
        }
        bulk_text(self.key_cmd("GET", &key)?)
    }

    /// Hands the memo hits the JS `get` recorded to the engine as reads (internal).
    #[wasm_bindgen(js_name = __noteReads, skip_typescript)]
    pub fn note_reads(&self) {
        self.cache.note_reads();
    }

    /// `GET`: the value as bytes.
    #[wasm_bindgen(js_name = getBytes)]
    pub fn get_bytes(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<Option<Uint8Array>, JsValue> {
        match self.key_cmd("GET", &key)? {
            Reply::Bulk(b) => Ok(Some(Uint8Array::from(&b[..]))),
            Reply::Error(e) => Err(js_sys::Error::new(&e).into()),
            _ => Ok(None),
        }
    }

    /// `GET` and `JSON.parse`; `null` when the key is missing.
    #[wasm_bindgen(js_name = getJSON, unchecked_return_type = "unknown")]
    pub fn get_json(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<JsValue, JsValue> {
        match self.key_cmd("GET", &key)? {
            Reply::Bulk(b) => js_sys::JSON::parse(&String::from_utf8_lossy(&b)),
            Reply::Error(e) => Err(js_sys::Error::new(&e).into()),
            _ => Ok(JsValue::NULL),
        }
    }

    /// `MGET`: one value or `null` per key.
    #[wasm_bindgen(unchecked_return_type = "(string | null)[]")]
    pub fn mget(&self, #[wasm_bindgen(unchecked_param_type = "Key[]")] keys: JsValue) -> Result<JsValue, JsValue> {
        let args = cmd("MGET", args_of(&keys, "key").map_err(to_js_err)?.into_iter().map(Ok)).map_err(to_js_err)?;
        texts(self.run(args))
    }

    /// `EXISTS`: how many of the keys exist.
    pub fn exists(&self, #[wasm_bindgen(unchecked_param_type = "Key | Key[]")] keys: JsValue) -> Result<f64, JsValue> {
        let args = cmd("EXISTS", args_of(&keys, "key").map_err(to_js_err)?.into_iter().map(Ok)).map_err(to_js_err)?;
        Ok(read(self.run(args))?.as_f64().unwrap_or(0.0))
    }

    /// `TTL`: seconds left, -1 without expiry, -2 when missing.
    pub fn ttl(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<f64, JsValue> {
        Ok(read(self.key_cmd("TTL", &key)?)?.as_f64().unwrap_or(-2.0))
    }

    /// `PTTL`: milliseconds left, -1 without expiry, -2 when missing.
    pub fn pttl(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<f64, JsValue> {
        Ok(read(self.key_cmd("PTTL", &key)?)?.as_f64().unwrap_or(-2.0))
    }

    /// `TYPE`: `string`, `list`, `hash`, `set`, `zset` or `none`.
    #[wasm_bindgen(js_name = type)]
    pub fn type_of(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<String, JsValue> {
        Ok(read(self.key_cmd("TYPE", &key)?)?.as_string().unwrap_or_default())
    }

    /// `HGET`.
    #[wasm_bindgen(unchecked_return_type = "string | null")]
    pub fn hget(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Key")] field: JsValue,
    ) -> Result<JsValue, JsValue> {
        let args = cmd("HGET", [arg(&key, "key"), arg(&field, "field")]).map_err(to_js_err)?;
        bulk_text(self.run(args))
    }

    /// `HGETALL` as an object (`{}` when missing).
    #[wasm_bindgen(unchecked_return_type = "Record<string, string>")]
    pub fn hgetall(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<JsValue, JsValue> {
        let out = Object::new();
        let pairs: Vec<(Reply, Reply)> = match self.key_cmd("HGETALL", &key)? {
            Reply::Map(pairs) => pairs,
            Reply::Array(items) => items.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect(),
            Reply::Error(e) => return Err(js_sys::Error::new(&e).into()),
            _ => Vec::new(),
        };
        for (f, v) in pairs {
            if let (Reply::Bulk(f), Reply::Bulk(v)) = (f, v) {
                Reflect::set(&out, &text(&f), &text(&v))?;
            }
        }
        Ok(out.into())
    }

    /// `LRANGE key start stop` (inclusive; negative counts from the end).
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub fn lrange(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue, start: f64, stop: f64) -> Result<JsValue, JsValue> {
        let args = cmd("LRANGE", [arg(&key, "key"), Ok(int_arg(start)), Ok(int_arg(stop))]).map_err(to_js_err)?;
        texts(self.run(args))
    }

    /// `SMEMBERS`.
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub fn smembers(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Result<JsValue, JsValue> {
        texts(self.key_cmd("SMEMBERS", &key)?)
    }

    /// `ZRANGE key start stop [REV] [WITHSCORES]`: members, or `[member, score]` pairs.
    #[wasm_bindgen(unchecked_return_type = "string[] | [string, number][]")]
    pub fn zrange(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        start: f64,
        stop: f64,
        #[wasm_bindgen(unchecked_optional_param_type = "ZRangeOptions")] options: Option<Object>,
    ) -> Result<JsValue, JsValue> {
        let mut args = cmd("ZRANGE", [arg(&key, "key"), Ok(int_arg(start)), Ok(int_arg(stop))]).map_err(to_js_err)?;
        let opts: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        let flag = |names: &[&str]| prop(&opts, names).map(|v| v.is_truthy()).unwrap_or(false);
        if flag(&["rev", "REV"]) {
            args.push(Bytes::from_static(b"REV"));
        }
        let with_scores = flag(&["withScores", "WITHSCORES"]);
        if with_scores {
            args.push(Bytes::from_static(b"WITHSCORES"));
        }
        match self.run(args) {
            Reply::Array(items) if with_scores => {
                let out = Array::new();
                // RESP2 flat [m, s, m, s] or RESP3 pairs [[m, s], …].
                let mut flat = Vec::new();
                for item in items {
                    match item {
                        Reply::Array(pair) => flat.extend(pair),
                        other => flat.push(other),
                    }
                }
                for pair in flat.chunks_exact(2) {
                    let member = match &pair[0] {
                        Reply::Bulk(b) => text(b),
                        _ => JsValue::NULL,
                    };
                    let score = match &pair[1] {
                        Reply::Double(d) => *d,
                        Reply::Bulk(b) => recached_engine::util::parse_f64(b).unwrap_or(f64::NAN),
                        _ => f64::NAN,
                    };
                    out.push(&Array::of2(&member, &JsValue::from_f64(score)));
                }
                Ok(out.into())
            }
            reply => texts(reply),
        }
    }

    /// `KEYS pattern` (Redis glob; default `*`).
    #[wasm_bindgen(unchecked_return_type = "string[]")]
    pub fn keys(&self, pattern: Option<String>) -> Result<JsValue, JsValue> {
        let pattern = pattern.unwrap_or_else(|| "*".to_string());
        texts(self.run(vec![Bytes::from_static(b"KEYS"), Bytes::from(pattern)]))
    }

    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`: `[nextCursor, keys]`; start and end at `"0"`.
    #[wasm_bindgen(unchecked_return_type = "[string, string[]]")]
    pub fn scan(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string | number")] cursor: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "ScanOptions")] options: Option<Object>,
    ) -> Result<JsValue, JsValue> {
        let mut args = cmd("SCAN", [arg(&cursor, "cursor")]).map_err(to_js_err)?;
        let opts: JsValue = options.map(Into::into).unwrap_or(JsValue::UNDEFINED);
        for (names, word) in [(&["match", "MATCH"], "MATCH"), (&["count", "COUNT"], "COUNT"), (&["type", "TYPE"], "TYPE")] {
            if let Some(v) = prop(&opts, names) {
                args.push(Bytes::from_static(word.as_bytes()));
                args.push(arg(&v, word).map_err(to_js_err)?);
            }
        }
        match self.run(args) {
            Reply::Array(mut parts) if parts.len() == 2 => {
                let keys = texts(parts.pop().unwrap_or(Reply::Nil))?;
                let next = match parts.pop() {
                    Some(Reply::Bulk(b)) => text(&b),
                    _ => JsValue::from_str("0"),
                };
                Ok(Array::of2(&next, &keys).into())
            }
            reply => read(reply),
        }
    }

    /// Number of keys.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.cache.len() as f64
    }

    /// The engine's memory accounting for keys and values, in bytes.
    #[wasm_bindgen(getter, js_name = usedMemory)]
    pub fn used_memory(&self) -> f64 {
        self.cache.used_memory() as f64
    }

    /// Counters as in Redis's `INFO stats`: `{ keyspaceHits, keyspaceMisses, expiredKeys,
    /// evictedKeys, commands }`.
    #[wasm_bindgen(unchecked_return_type = "CacheStats")]
    pub fn stats(&self) -> Object {
        let st = self.cache.stats();
        let o = Object::new();
        for (name, v) in [
            ("keyspaceHits", st.keyspace_hits),
            ("keyspaceMisses", st.keyspace_misses),
            ("expiredKeys", st.expired_keys),
            ("evictedKeys", st.evicted_keys),
            ("commands", st.commands),
        ] {
            let _ = Reflect::set(&o, &JsValue::from_str(name), &JsValue::from_f64(v as f64));
        }
        o
    }

    // ---- writes: applied at once; the promise settles with the reply ----

    /// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`.
    #[wasm_bindgen(unchecked_return_type = "Promise<string | null>")]
    pub fn set(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Value")] value: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SetOptions")] options: Option<Object>,
    ) -> Promise {
        self.write(set_args(&key, arg(&value, "value"), options))
    }

    /// `JSON.stringify` and `SET` (same options).
    #[wasm_bindgen(js_name = setJSON, unchecked_return_type = "Promise<string | null>")]
    pub fn set_json(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "unknown")] value: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SetOptions")] options: Option<Object>,
    ) -> Promise {
        let json = match js_sys::JSON::stringify(&value) {
            Ok(s) if !value.is_undefined() => Ok(Bytes::from(String::from(s))),
            _ => Err(JsError::new("setJSON: value is not JSON-serialisable")),
        };
        self.write(set_args(&key, json, options))
    }

    /// `DEL`: how many keys were removed.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn del(&self, #[wasm_bindgen(unchecked_param_type = "Key | Key[]")] keys: JsValue) -> Promise {
        self.write(args_of(&keys, "key").and_then(|ks| cmd("DEL", ks.into_iter().map(Ok))))
    }

    /// `EXPIRE key seconds [NX|XX|GT|LT]`: 1 if set.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn expire(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        seconds: f64,
        #[wasm_bindgen(unchecked_optional_param_type = "\"NX\" | \"XX\" | \"GT\" | \"LT\"")] condition: Option<String>,
    ) -> Promise {
        let mut args = cmd("EXPIRE", [arg(&key, "key"), Ok(int_arg(seconds))]);
        if let (Ok(a), Some(c)) = (args.as_mut(), condition) {
            a.push(Bytes::from(c));
        }
        self.write(args)
    }

    /// `PEXPIRE key ms [NX|XX|GT|LT]`: 1 if set.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn pexpire(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        ms: f64,
        #[wasm_bindgen(unchecked_optional_param_type = "\"NX\" | \"XX\" | \"GT\" | \"LT\"")] condition: Option<String>,
    ) -> Promise {
        let mut args = cmd("PEXPIRE", [arg(&key, "key"), Ok(int_arg(ms))]);
        if let (Ok(a), Some(c)) = (args.as_mut(), condition) {
            a.push(Bytes::from(c));
        }
        self.write(args)
    }

    /// `PERSIST`: 1 if a TTL was removed.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn persist(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Promise {
        self.write(cmd("PERSIST", [arg(&key, "key")]))
    }

    /// `INCR`: the new value.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn incr(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Promise {
        self.write(cmd("INCR", [arg(&key, "key")]))
    }

    /// `INCRBY key n`: the new value.
    #[wasm_bindgen(js_name = incrBy, unchecked_return_type = "Promise<number>")]
    pub fn incr_by(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue, by: f64) -> Promise {
        self.write(cmd("INCRBY", [arg(&key, "key"), Ok(int_arg(by))]))
    }

    /// `DECR`: the new value.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn decr(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue) -> Promise {
        self.write(cmd("DECR", [arg(&key, "key")]))
    }

    /// `DECRBY key n`: the new value.
    #[wasm_bindgen(js_name = decrBy, unchecked_return_type = "Promise<number>")]
    pub fn decr_by(&self, #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue, by: f64) -> Promise {
        self.write(cmd("DECRBY", [arg(&key, "key"), Ok(int_arg(by))]))
    }

    /// `HSET key field value` or `HSET key {field: value, …}`: fields added.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn hset(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Key | Record<string, Value>")] field: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Value")] value: Option<JsValue>,
    ) -> Promise {
        let args = (|| {
            let mut args = cmd("HSET", [arg(&key, "key")])?;
            match value {
                Some(v) if !v.is_undefined() => {
                    args.push(arg(&field, "field")?);
                    args.push(arg(&v, "value")?);
                }
                _ => {
                    let obj: &Object = field.dyn_ref().ok_or_else(|| JsError::new("hset: expected (key, field, value) or (key, object)"))?;
                    for entry in Object::entries(obj).iter() {
                        let pair = Array::from(&entry);
                        args.push(arg(&pair.get(0), "field")?);
                        args.push(arg(&pair.get(1), "value")?);
                    }
                }
            }
            Ok(args)
        })();
        self.write(args)
    }

    /// `HDEL key field…`: fields removed.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn hdel(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Key | Key[]")] fields: JsValue,
    ) -> Promise {
        self.key_values_write("HDEL", &key, &fields, "field")
    }

    /// `LPUSH key value…`: the new length.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn lpush(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Value | Value[]")] values: JsValue,
    ) -> Promise {
        self.key_values_write("LPUSH", &key, &values, "value")
    }

    /// `RPUSH key value…`: the new length.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn rpush(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Value | Value[]")] values: JsValue,
    ) -> Promise {
        self.key_values_write("RPUSH", &key, &values, "value")
    }

    /// `SADD key member…`: members added.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn sadd(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Value | Value[]")] members: JsValue,
    ) -> Promise {
        self.key_values_write("SADD", &key, &members, "member")
    }

    /// `SREM key member…`: members removed.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn srem(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Value | Value[]")] members: JsValue,
    ) -> Promise {
        self.key_values_write("SREM", &key, &members, "member")
    }

    /// `ZADD key score member` or `ZADD key [{score, member}, …]`: members added.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn zadd(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Key")] key: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | ZMember[]")] score: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "Value")] member: Option<JsValue>,
    ) -> Promise {
        let args = (|| {
            let mut args = cmd("ZADD", [arg(&key, "key")])?;
            match member {
                Some(m) if !m.is_undefined() => {
                    args.push(arg(&score, "score")?);
                    args.push(arg(&m, "member")?);
                }
                _ if Array::is_array(&score) => {
                    for entry in Array::from(&score).iter() {
                        let s = prop(&entry, &["score"]).ok_or_else(|| JsError::new("zadd: entry without score"))?;
                        let m = prop(&entry, &["member"]).ok_or_else(|| JsError::new("zadd: entry without member"))?;
                        args.push(arg(&s, "score")?);
                        args.push(arg(&m, "member")?);
                    }
                }
                _ => return Err(JsError::new("zadd: expected (key, score, member) or (key, [{score, member}])")),
            }
            Ok(args)
        })();
        self.write(args)
    }

    /// Any command, e.g. `command(["LTRIM", "l", 0, 9])`: the reply as a RESP2 client
    /// sees it.
    #[wasm_bindgen(unchecked_return_type = "Promise<Reply>")]
    pub fn command(&self, #[wasm_bindgen(unchecked_param_type = "Value[]")] args: JsValue) -> Promise {
        if !Array::is_array(&args) {
            return Promise::reject(&js_sys::Error::new("command: expected an array such as [\"GET\", \"k\"]").into());
        }
        self.write(args_of(&args, "argument"))
    }

    /// Runs commands as one transaction (MULTI … EXEC): one reply per command.
    #[wasm_bindgen(unchecked_return_type = "Promise<Reply[]>")]
    pub fn multi(&self, #[wasm_bindgen(unchecked_param_type = "Value[][]")] commands: JsValue) -> Promise {
        let parsed: Result<Vec<Vec<Bytes>>, JsError> = if Array::is_array(&commands) {
            Array::from(&commands).iter().map(|c| args_of(&c, "argument")).collect()
        } else {
            Err(JsError::new("multi: expected an array of commands"))
        };
        match parsed {
            Ok(cmds) => self.promise(move |cache, done| cache.write_transaction(&cmds, done)),
            Err(e) => Promise::reject(&to_js_err(e)),
        }
    }

    // ---- hub sync ----

    /// Mirrors the keys matching `patterns` from a hub over WebSocket (the local keys are
    /// replaced by the hub's; listeners hear one `reset`). Writes then apply locally at
    /// once and their promises settle on the hub's ack, or reject after rollback when the
    /// hub refuses them. The connection is kept up with jittered exponential backoff over
    /// `urls`; `status` and `onStatus` follow it.
    pub fn connect(&self, #[wasm_bindgen(unchecked_param_type = "ConnectOptions")] options: Object) -> Result<(), JsError> {
        let o: JsValue = options.into();
        let urls = match prop(&o, &["urls", "url"]) {
            Some(v) if Array::is_array(&v) => Array::from(&v).iter().filter_map(|u| u.as_string()).collect(),
            Some(v) => v.as_string().into_iter().collect(),
            None => Vec::new(),
        };
        if urls.is_empty() {
            return Err(JsError::new("connect: expected urls, e.g. [\"ws://127.0.0.1:6380\"]"));
        }
        let token = prop(&o, &["token"]).and_then(|t| t.as_string()).unwrap_or_default();
        let patterns = match prop(&o, &["patterns"]) {
            Some(v) if Array::is_array(&v) => Array::from(&v).iter().filter_map(|p| p.as_string()).collect(),
            Some(v) => v.as_string().into_iter().collect(),
            None => Vec::new(),
        };
        self.cache.connect(&ConnectOptions { urls, token, patterns });
        Ok(())
    }

    /// Writes applied locally and still waiting for the hub's ack.
    #[wasm_bindgen(getter, js_name = pendingWrites)]
    pub fn pending_writes(&self) -> f64 {
        self.cache.pending_writes() as f64
    }

    // ---- listeners, status, lifetime ----

    /// Calls `listener(key, event)` on every change to a key matching `pattern` (Redis
    /// glob, e.g. `user:*`; a plain key watches just that key). Returns the unsubscribe
    /// function.
    #[wasm_bindgen(unchecked_return_type = "Unsubscribe")]
    pub fn on(
        &self,
        pattern: String,
        #[wasm_bindgen(unchecked_param_type = "ChangeListener")] listener: Function,
    ) -> Function {
        let call = Rc::new(move |n: &Notice| {
            let key = n.key.as_ref().map(|k| text(k)).unwrap_or(JsValue::NULL);
            if let Err(e) = listener.call2(&JsValue::NULL, &key, &JsValue::from_str(n.event)) {
                web_sys::console::error_2(&JsValue::from_str("recached: a change listener threw"), &e);
            }
        });
        match self.cache.on(pattern.as_bytes(), call) {
            Some(id) => self.unsubscribe_fn(false, id),
            None => Function::new_no_args(""),
        }
    }

    /// Calls `listener(status)` whenever `status` changes. Returns the unsubscribe function.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "Unsubscribe")]
    pub fn on_status(&self, #[wasm_bindgen(unchecked_param_type = "(status: Status) => void")] listener: Function) -> Function {
        let call = Rc::new(move |s: Status| {
            if let Err(e) = listener.call1(&JsValue::NULL, &JsValue::from_str(s.name())) {
                web_sys::console::error_2(&JsValue::from_str("recached: a status listener threw"), &e);
            }
        });
        match self.cache.on_status(call) {
            Some(id) => self.unsubscribe_fn(true, id),
            None => Function::new_no_args(""),
        }
    }

    /// This cache's part among the tabs sharing its channel: `alone`, `pending`, `leader`
    /// or `follower`.
    #[wasm_bindgen(getter, js_name = tabRole, unchecked_return_type = "TabRole")]
    pub fn tab_role(&self) -> String {
        self.cache.tab_role().map(|r| r.name()).unwrap_or("alone").to_string()
    }

    /// `offline` (a local cache), `connecting`, `resyncing`, `live`, or `closed`.
    #[wasm_bindgen(getter, unchecked_return_type = "Status")]
    pub fn status(&self) -> String {
        self.cache.status().name().to_string()
    }

    /// Frees the data, stops timers, and releases every listener. Further commands
    /// answer an error; further reads throw.
    pub fn close(&self) {
        self.cache.close();
    }
}

fn int_arg(n: f64) -> Bytes {
    Bytes::from(number_text(n.trunc()))
}

fn set_args(key: &JsValue, value: Result<Bytes, JsError>, options: Option<Object>) -> Result<Vec<Bytes>, JsError> {
    let mut args = cmd("SET", [arg(key, "key"), value])?;
    let Some(o) = options else { return Ok(args) };
    let o: JsValue = o.into();
    for (names, word) in [(&["ex", "EX"], "EX"), (&["px", "PX"], "PX"), (&["exat", "EXAT"], "EXAT"), (&["pxat", "PXAT"], "PXAT")] {
        if let Some(v) = prop(&o, names) {
            args.push(Bytes::from_static(word.as_bytes()));
            args.push(arg(&v, word)?);
        }
    }
    for (names, word) in [
        (&["nx", "NX"][..], "NX"),
        (&["xx", "XX"][..], "XX"),
        (&["keepTtl", "keepttl", "KEEPTTL"][..], "KEEPTTL"),
        (&["get", "GET"][..], "GET"),
    ] {
        if prop(&o, names).map(|v| v.is_truthy()).unwrap_or(false) {
            args.push(Bytes::from_static(word.as_bytes()));
        }
    }
    Ok(args)
}
