//! The JS API in headless Chromium, driven through the Rust side of the wasm-bindgen
//! surface (`create_cache` and `JsCache`, exactly what JS calls): reads, writes and their
//! promises, SET options, bytes, TTL with real timers, eviction, on()/unsubscribe, status
//! and close, and a closure/memory leak check over 1,000 caches.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use recached_ui::{create_cache, create_cache_js, live_closures, JsCache};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

fn obj(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &s(k), v).unwrap();
    }
    o
}

fn arr(items: &[JsValue]) -> JsValue {
    items.iter().collect::<Array>().into()
}

fn strs(items: &[&str]) -> JsValue {
    arr(&items.iter().map(|i| s(i)).collect::<Vec<_>>())
}

/// A cache of its own: `channel: false`, so the many caches of this page do not share
/// (tests/tabs.rs covers sharing).
fn cache(options: &[(&str, JsValue)]) -> JsCache {
    let o = obj(options);
    if !options.iter().any(|(k, _)| *k == "channel") {
        Reflect::set(&o, &s("channel"), &JsValue::FALSE).unwrap();
    }
    create_cache(Some(o)).map_err(JsValue::from).unwrap()
}

/// The JSON text of a value, for compact comparisons.
fn json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).map(String::from).unwrap_or_else(|_| "<unserialisable>".into())
}

async fn settle(p: Promise) -> Result<JsValue, String> {
    JsFuture::from(p).await.map_err(|e| e.dyn_into::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_default())
}

async fn ok(p: Promise) -> String {
    json(&settle(p).await.expect("promise rejected"))
}

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &s("setTimeout")).unwrap().unchecked_into();
        set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(ms)).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// A JS listener `(key, event) => log.push(key + " " + event)`, and its log.
fn recorder() -> (Function, Array) {
    let log = Array::new();
    let make = Function::new_with_args("log", "return (k, e) => { log.push((k === null ? '*' : k) + ' ' + e); }");
    (make.call1(&JsValue::NULL, &log).unwrap().unchecked_into(), log)
}

fn logged(log: &Array) -> Vec<String> {
    log.iter().map(|v| v.as_string().unwrap()).collect()
}

#[wasm_bindgen_test]
async fn strings_reads_and_write_promises() {
    let c = cache(&[]);
    assert_eq!(ok(c.set(s("k"), s("v"), None)).await, r#""OK""#);
    assert_eq!(c.get(s("k")).unwrap(), s("v"));
    assert_eq!(c.get(s("missing")).unwrap(), JsValue::NULL);
    assert_eq!(c.type_of(s("k")).unwrap(), "string");
    assert_eq!(c.type_of(s("missing")).unwrap(), "none");
    assert_eq!(c.exists(strs(&["k", "k", "missing"])).unwrap(), 2.0);
    assert_eq!(c.exists(s("k")).unwrap(), 1.0);
    assert_eq!(ok(c.set(s("n"), JsValue::from(41), None)).await, r#""OK""#);
    assert_eq!(json(&c.mget(strs(&["k", "missing", "n"])).unwrap()), r#"["v",null,"41"]"#);
    assert_eq!(ok(c.incr(s("n"))).await, "42");
    assert_eq!(ok(c.incr_by(s("n"), 8.0)).await, "50");
    assert_eq!(ok(c.decr(s("n"))).await, "49");
    assert_eq!(ok(c.decr_by(s("n"), 9.0)).await, "40");
    assert_eq!(ok(c.del(strs(&["k", "n", "missing"]))).await, "2");
    assert_eq!(c.size(), 0.0);
    // An error reply rejects the promise with Redis's text; a read throws it.
    let _ = c.set(s("k"), s("not a number"), None);
    assert_eq!(settle(c.incr(s("k"))).await.unwrap_err(), "ERR value is not an integer or out of range");
    let _ = c.lpush(s("l"), s("x"));
    let err = c.get(s("l")).unwrap_err().dyn_into::<js_sys::Error>().unwrap();
    assert_eq!(String::from(err.message()), "WRONGTYPE Operation against a key holding the wrong kind of value");
    // Writes have applied before the promise is even awaited.
    let p = c.set(s("now"), s("1"), None);
    assert_eq!(c.get(s("now")).unwrap(), s("1"));
    ok(p).await;
}

#[wasm_bindgen_test]
async fn set_options() {
    let c = cache(&[]);
    let t = JsValue::TRUE;
    assert_eq!(ok(c.set(s("a"), s("1"), Some(obj(&[("nx", t.clone())])))).await, r#""OK""#);
    assert_eq!(ok(c.set(s("a"), s("2"), Some(obj(&[("nx", t.clone())])))).await, "null");
    assert_eq!(ok(c.set(s("b"), s("1"), Some(obj(&[("xx", t.clone())])))).await, "null");
    assert_eq!(ok(c.set(s("a"), s("3"), Some(obj(&[("XX", t.clone()), ("get", t.clone())])))).await, r#""1""#);
    ok(c.set(s("a"), s("4"), Some(obj(&[("ex", JsValue::from(100))])))).await;
    assert_eq!(c.ttl(s("a")).unwrap(), 100.0);
    ok(c.set(s("a"), s("5"), Some(obj(&[("keepTtl", t.clone())])))).await;
    assert_eq!(c.ttl(s("a")).unwrap(), 100.0);
    ok(c.set(s("a"), s("6"), None)).await;
    assert_eq!(c.ttl(s("a")).unwrap(), -1.0);
    ok(c.set(s("a"), s("7"), Some(obj(&[("PX", JsValue::from(5000))])))).await;
    let pttl = c.pttl(s("a")).unwrap();
    assert!(pttl > 4000.0 && pttl <= 5000.0, "pttl {pttl}");
    let at = js_sys::Date::now() + 60_000.0;
    ok(c.set(s("a"), s("8"), Some(obj(&[("pxat", JsValue::from(at))])))).await;
    assert!((c.ttl(s("a")).unwrap() - 60.0).abs() <= 1.0);
    assert_eq!(c.ttl(s("missing")).unwrap(), -2.0);
    assert_eq!(
        settle(c.set(s("a"), s("9"), Some(obj(&[("ex", JsValue::from(-5))])))).await.unwrap_err(),
        "ERR invalid expire time in 'set' command"
    );
    assert_eq!(ok(c.expire(s("a"), 30.0, None)).await, "1");
    assert_eq!(ok(c.expire(s("a"), 10.0, Some("GT".into()))).await, "0");
    assert_eq!(ok(c.persist(s("a"))).await, "1");
    assert_eq!(ok(c.pexpire(s("a"), 1800.0, None)).await, "1");
    assert_eq!(c.ttl(s("a")).unwrap(), 2.0);
}

#[wasm_bindgen_test]
async fn bytes_and_json() {
    let c = cache(&[]);
    let raw = Uint8Array::from(&[0u8, 159, 146, 150, 255][..]);
    ok(c.set(raw.clone().into(), raw.clone().into(), None)).await;
    let back = c.get_bytes(raw.clone().into()).unwrap().unwrap();
    assert_eq!(back.to_vec(), vec![0u8, 159, 146, 150, 255]);
    assert!(c.get_bytes(s("missing")).unwrap().is_none());
    // command() hands non-UTF-8 bulk strings back as bytes, text as strings.
    let reply = settle(c.command(arr(&[s("GET"), raw.clone().into()]))).await.unwrap();
    assert!(reply.is_instance_of::<Uint8Array>());
    ok(c.set(s("t"), s("héllo ✓"), None)).await;
    assert_eq!(settle(c.command(strs(&["GET", "t"]))).await.unwrap(), s("héllo ✓"));
    let value = js_sys::JSON::parse(r#"{"a":[1,2,{"b":null}],"c":"d"}"#).unwrap();
    ok(c.set_json(s("j"), value, None)).await;
    assert_eq!(json(&c.get_json(s("j")).unwrap()), r#"{"a":[1,2,{"b":null}],"c":"d"}"#);
    assert_eq!(c.get_json(s("missing")).unwrap(), JsValue::NULL);
    assert!(c.get_json(s("t")).is_err(), "not JSON: JSON.parse throws");
    assert!(settle(c.set_json(s("u"), JsValue::UNDEFINED, None)).await.is_err());
}

#[wasm_bindgen_test]
async fn hashes_lists_sets_keys_scan_command_multi() {
    let c = cache(&[]);
    assert_eq!(ok(c.hset(s("h"), s("f"), Some(s("1")))).await, "1");
    let fields = obj(&[("g", s("2")), ("h", JsValue::from(3))]);
    assert_eq!(ok(c.hset(s("h"), fields.into(), None)).await, "2");
    assert_eq!(c.hget(s("h"), s("h")).unwrap(), s("3"));
    assert_eq!(c.hget(s("h"), s("zz")).unwrap(), JsValue::NULL);
    assert_eq!(json(&c.hgetall(s("h")).unwrap()), r#"{"f":"1","g":"2","h":"3"}"#);
    assert_eq!(json(&c.hgetall(s("missing")).unwrap()), "{}");
    assert_eq!(ok(c.hdel(s("h"), strs(&["f", "zz"]))).await, "1");

    assert_eq!(ok(c.rpush(s("l"), strs(&["b", "c"]))).await, "2");
    assert_eq!(ok(c.lpush(s("l"), s("a"))).await, "3");
    assert_eq!(json(&c.lrange(s("l"), 0.0, -1.0).unwrap()), r#"["a","b","c"]"#);
    assert_eq!(json(&c.lrange(s("l"), -2.0, -1.0).unwrap()), r#"["b","c"]"#);

    assert_eq!(ok(c.sadd(s("s"), strs(&["x", "y", "x"]))).await, "2");
    assert_eq!(ok(c.srem(s("s"), s("y"))).await, "1");
    assert_eq!(json(&c.smembers(s("s")).unwrap()), r#"["x"]"#);

    let sorted_keys = |pattern: Option<String>| {
        let mut keys: Vec<String> = Array::from(&c.keys(pattern).unwrap()).iter().map(|k| k.as_string().unwrap()).collect();
        keys.sort();
        keys
    };
    assert_eq!(sorted_keys(None), ["h", "l", "s"]);
    assert_eq!(sorted_keys(Some("[hs]".into())), ["h", "s"]);
    for i in 0..30 {
        let _ = c.set(s(&format!("user:{i}")), s("u"), None);
    }
    let mut cursor = s("0");
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let step = Array::from(&c.scan(cursor.clone(), Some(obj(&[("match", s("user:*")), ("count", JsValue::from(7))]))).unwrap());
        for k in Array::from(&step.get(1)).iter() {
            seen.insert(k.as_string().unwrap());
        }
        cursor = step.get(0);
        if cursor == s("0") {
            break;
        }
    }
    assert_eq!(seen.len(), 30);

    assert_eq!(ok(c.command(arr(&[s("LTRIM"), s("l"), JsValue::from(0), JsValue::from(0)]))).await, r#""OK""#);
    assert_eq!(ok(c.command(strs(&["LRANGE", "l", "0", "-1"]))).await, r#"["a"]"#);
    assert_eq!(ok(c.command(strs(&["HGETALL", "h"]))).await, r#"["g","2","h","3"]"#);
    assert_eq!(settle(c.command(strs(&["NOPE"]))).await.unwrap_err(), "ERR unknown command 'NOPE', with args beginning with: ");
    assert!(settle(c.command(s("GET"))).await.is_err(), "not an array");
    assert!(settle(c.command(strs(&["SELECT", "1"]))).await.is_err(), "one database");
    let txn = arr(&[strs(&["SET", "x", "1"]), strs(&["INCR", "x"]), strs(&["GET", "x"])]);
    assert_eq!(ok(c.multi(txn)).await, r#"["OK",2,"2"]"#);
}

#[wasm_bindgen_test]
async fn sorted_sets_with_scores() {
    let c = cache(&[]);
    // Sorted-set commands arrive with the engine's zset family; until then ZADD is unknown.
    if settle(c.command(strs(&["ZCARD", "z"]))).await.is_err() {
        web_sys::console::log_1(&s("sorted sets not in the engine yet: zadd/zrange test skipped"));
        return;
    }
    assert_eq!(ok(c.zadd(s("z"), JsValue::from(2), Some(s("b")))).await, "1");
    let many = arr(&[obj(&[("score", JsValue::from(1)), ("member", s("a"))]).into(), obj(&[("score", JsValue::from(3.5)), ("member", s("c"))]).into()]);
    assert_eq!(ok(c.zadd(s("z"), many, None)).await, "2");
    assert_eq!(json(&c.zrange(s("z"), 0.0, -1.0, None).unwrap()), r#"["a","b","c"]"#);
    assert_eq!(json(&c.zrange(s("z"), 0.0, 1.0, Some(obj(&[("withScores", JsValue::TRUE)]))).unwrap()), r#"[["a",1],["b",2]]"#);
    assert_eq!(
        json(&c.zrange(s("z"), 0.0, 0.0, Some(obj(&[("withScores", JsValue::TRUE), ("rev", JsValue::TRUE)]))).unwrap()),
        r#"[["c",3.5]]"#
    );
}

#[wasm_bindgen_test]
async fn options_are_checked() {
    assert!(create_cache(Some(obj(&[("eviction", s("sometimes"))]))).is_err());
    assert!(create_cache(Some(obj(&[("maxKeys", JsValue::from(-1))]))).is_err());
    assert!(create_cache(Some(obj(&[("maxMemory", s("lots"))]))).is_err());
    assert!(create_cache(Some(obj(&[("channel", JsValue::from(1))]))).is_err());
    let named = create_cache(Some(obj(&[("maxMemory", s("1mb")), ("channel", s("options-app"))]))).unwrap();
    assert_eq!(named.tab_role(), "pending", "shares by name; the role comes with the lock");
    named.close();
    let alone = create_cache(Some(obj(&[("channel", JsValue::FALSE)]))).unwrap();
    assert_eq!(alone.tab_role(), "alone");
    alone.close();
    let default = create_cache(None).unwrap();
    assert_eq!(default.tab_role(), "pending", "the default channel is on");
    default.close();
}

/// Polls until `done` holds (a loaded CI machine runs timers late, so no test asserts a
/// state at a fixed instant).
async fn wait_until(what: &str, max_ms: i32, mut done: impl FnMut() -> bool) {
    let mut waited = 0;
    while !done() {
        assert!(waited < max_ms, "timed out after {max_ms} ms waiting for {what}");
        sleep(10).await;
        waited += 10;
    }
}

#[wasm_bindgen_test]
async fn ttl_expires_on_a_real_timer() {
    let c = cache(&[]);
    let (listener, log) = recorder();
    let _off = c.on("*".into(), listener);
    ok(c.set(s("short"), s("v"), Some(obj(&[("px", JsValue::from(30))])))).await;
    ok(c.set(s("later"), s("v"), Some(obj(&[("px", JsValue::from(800))])))).await;
    ok(c.set(s("keep"), s("v"), None)).await;
    assert_eq!(c.size(), 3.0);
    // Removed by the timer, not by a read: the key count drops by itself.
    wait_until("short to expire", 5000, || c.size() == 2.0).await;
    assert_eq!(c.exists(s("later")).unwrap(), 1.0);
    // SET … PX reports `set` then `expire`, as Redis does.
    assert_eq!(logged(&log), ["short set", "short expire", "later set", "later expire", "keep set", "short expired"]);
    wait_until("later to expire", 5000, || c.size() == 1.0).await;
    assert_eq!(logged(&log).last().map(String::as_str), Some("later expired"));
    // A sooner deadline set after a later one re-arms the timer earlier.
    ok(c.set(s("far"), s("v"), Some(obj(&[("ex", JsValue::from(3600))])))).await;
    ok(c.set(s("near"), s("v"), Some(obj(&[("px", JsValue::from(30))])))).await;
    wait_until("near to expire", 5000, || c.size() == 2.0).await;
    assert_eq!(logged(&log).last().map(String::as_str), Some("near expired"));
    assert!(c.ttl(s("far")).unwrap() > 3590.0);
    // Many keys due at once are swept in budgeted ticks.
    for i in 0..2500 {
        let _ = c.set(s(&format!("bulk:{i}")), s("v"), Some(obj(&[("px", JsValue::from(20))])));
    }
    wait_until("2,500 keys to expire", 10_000, || c.size() == 2.0).await;
    assert_eq!(logged(&log).iter().filter(|l| l.starts_with("bulk:") && l.ends_with(" expired")).count(), 2500);
    c.close();
}

#[wasm_bindgen_test]
async fn eviction_by_keys_memory_and_refusal() {
    let c = cache(&[("maxKeys", JsValue::from(100))]);
    let (listener, log) = recorder();
    let _off = c.on("*".into(), listener);
    for i in 0..1000 {
        ok(c.set(s(&format!("k{i}")), s("v"), None)).await;
    }
    assert!(c.size() <= 100.0, "size {}", c.size());
    let evicted = logged(&log).iter().filter(|l| l.ends_with(" evicted")).count();
    assert_eq!(evicted as f64, 1000.0 - c.size());
    assert_eq!(c.get(s("k999")).unwrap(), s("v"), "the newest key stays");

    let m = cache(&[("maxMemory", s("64kb")), ("eviction", s("allkeys-random"))]);
    let value = "x".repeat(1000);
    for i in 0..300 {
        ok(m.set(s(&format!("k{i}")), s(&value), None)).await;
    }
    // The cap is enforced before each write, so one value may overshoot it.
    assert!(m.used_memory() <= (64 * 1024 + 2048) as f64, "used {}", m.used_memory());
    assert!(m.size() < 300.0);

    let v = cache(&[("maxKeys", JsValue::from(3)), ("eviction", s("volatile-ttl"))]);
    ok(v.set(s("p1"), s("v"), None)).await;
    ok(v.set(s("t_late"), s("v"), Some(obj(&[("ex", JsValue::from(500))])))).await;
    ok(v.set(s("t_soon"), s("v"), Some(obj(&[("ex", JsValue::from(50))])))).await;
    ok(v.set(s("p2"), s("v"), None)).await;
    assert_eq!(v.exists(strs(&["p1", "t_late", "t_soon", "p2"])).unwrap(), 3.0);
    assert_eq!(v.get(s("t_soon")).unwrap(), JsValue::NULL, "the soonest deadline went first");

    let n = cache(&[("maxKeys", JsValue::from(2)), ("eviction", s("noeviction"))]);
    ok(n.set(s("a"), s("v"), None)).await;
    ok(n.set(s("b"), s("v"), None)).await;
    assert_eq!(
        settle(n.set(s("c"), s("v"), None)).await.unwrap_err(),
        "OOM command not allowed when used memory > 'maxmemory'."
    );
    assert_eq!(n.get(s("c")).unwrap(), JsValue::NULL);
}

#[wasm_bindgen_test]
async fn on_and_unsubscribe() {
    let c = cache(&[]);
    let (all, all_log) = recorder();
    let (users, users_log) = recorder();
    let (one, one_log) = recorder();
    let off_all = c.on("*".into(), all);
    let off_users = c.on("user:*".into(), users);
    let off_one = c.on("user:1".into(), one);
    ok(c.set(s("user:1"), s("ann"), None)).await;
    ok(c.hset(s("user:2"), s("name"), Some(s("bob")))).await;
    ok(c.set(s("other"), s("x"), None)).await;
    ok(c.del(s("user:1"))).await;
    ok(c.del(s("nothing"))).await; // a write that changes nothing says nothing
    c.get(s("user:2")).ok(); // reads say nothing
    assert_eq!(logged(&all_log), ["user:1 set", "user:2 hset", "other set", "user:1 del"]);
    assert_eq!(logged(&users_log), ["user:1 set", "user:2 hset", "user:1 del"]);
    assert_eq!(logged(&one_log), ["user:1 set", "user:1 del"]);

    off_one.call0(&JsValue::NULL).unwrap();
    off_one.call0(&JsValue::NULL).unwrap(); // twice is harmless
    ok(c.set(s("user:1"), s("again"), None)).await;
    assert_eq!(logged(&one_log).len(), 2);
    assert_eq!(logged(&users_log).last().unwrap(), "user:1 set");

    ok(c.command(strs(&["FLUSHDB"]))).await;
    assert_eq!(logged(&all_log).last().unwrap(), "* flushdb");
    off_users.call0(&JsValue::NULL).unwrap();
    off_all.call0(&JsValue::NULL).unwrap();
    assert_eq!(c.handle().listener_count(), 0);

    // A throwing listener is reported and does not stop the others or the write.
    let thrower = Function::new_with_args("k, e", "throw new Error('listener bug')");
    let (after, after_log) = recorder();
    let _a = c.on("x".into(), thrower);
    let _b = c.on("x".into(), after);
    assert_eq!(ok(c.set(s("x"), s("1"), None)).await, r#""OK""#);
    assert_eq!(logged(&after_log), ["x set"]);

    // A listener may write to the cache (its notices follow, in order) and unsubscribe itself.
    let d = cache(&[]);
    let log = Array::new();
    let holder = Object::new();
    let make = Function::new_with_args(
        "cache_set, log, holder",
        "return (k, e) => { log.push(k + ' ' + e); if (k === 'a') { cache_set('b'); holder.off(); } }",
    );
    let dd = d.handle();
    let setter = Closure::<dyn Fn(String)>::new(move |k: String| {
        dd.cmd(&["SET", k.as_str(), "from-listener"]);
    });
    let listener: Function = make.call3(&JsValue::NULL, setter.as_ref(), &log, &holder).unwrap().unchecked_into();
    let off = d.on("*".into(), listener);
    Reflect::set(&holder, &s("off"), &off).unwrap();
    ok(d.set(s("a"), s("1"), None)).await;
    assert_eq!(logged(&log), ["a set"], "unsubscribed itself before hearing about b");
    assert_eq!(d.get(s("b")).unwrap(), s("from-listener"));
    drop(setter);
}

#[wasm_bindgen_test]
async fn status_and_close() {
    let c = cache(&[]);
    assert_eq!(c.status(), "offline");
    let seen = Array::new();
    let make = Function::new_with_args("seen", "return (s) => seen.push(s)");
    let off_status = c.on_status(make.call1(&JsValue::NULL, &seen).unwrap().unchecked_into());
    let (listener, log) = recorder();
    let off = c.on("*".into(), listener);
    ok(c.set(s("k"), s("v"), Some(obj(&[("px", JsValue::from(30))])))).await;
    c.close();
    assert_eq!(c.status(), "closed");
    assert_eq!(json(&seen), r#"["closed"]"#);
    c.close(); // idempotent
    assert_eq!(json(&seen), r#"["closed"]"#);
    sleep(60).await;
    assert_eq!(logged(&log), ["k set", "k expire"], "no expiry after close: the timer was cancelled");
    assert!(c.get(s("k")).is_err());
    assert_eq!(settle(c.set(s("k"), s("v"), None)).await.unwrap_err(), "ERR the cache is closed");
    // Unsubscribing after close does nothing (and does not throw).
    off.call0(&JsValue::NULL).unwrap();
    off_status.call0(&JsValue::NULL).unwrap();
    let late = c.on("*".into(), Function::new_no_args(""));
    late.call0(&JsValue::NULL).unwrap();
}

fn memory_bytes() -> f64 {
    let mem: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::ArrayBuffer::from(mem.buffer()).byte_length() as f64
}

/// One create → listen → write → close round, with everything the JS side would do.
async fn cycle(i: usize) {
    let c = cache(&[("maxKeys", JsValue::from(50))]);
    let (a, _log_a) = recorder();
    let (b, _log_b) = recorder();
    let off_a = c.on("*".into(), a);
    let _off_b = c.on(format!("key:{i}"), b);
    let _off_s = c.on_status(Function::new_no_args(""));
    for j in 0..5 {
        let _ = c.set(s(&format!("key:{j}")), s("v"), Some(obj(&[("ex", JsValue::from(60))])));
    }
    let _ = c.hset(s("h"), s("f"), Some(s("v")));
    off_a.call0(&JsValue::NULL).unwrap();
    c.close();
}

#[wasm_bindgen_test]
async fn closures_and_memory_stay_flat_over_1000_caches() {
    let closures_before = live_closures();
    // Warm up: first allocations grow the heap and the externref table once.
    for i in 0..50 {
        cycle(i).await;
    }
    let refs = wasm_bindgen::externref_heap_live_count();
    let mem = memory_bytes();
    assert!(live_closures() <= closures_before);
    for i in 0..1000 {
        cycle(i).await;
        if i % 100 == 0 {
            // Let timers that were cancelled and promises settle between rounds.
            sleep(0).await;
        }
    }
    // `<=`: a cache leaked by a failed test elsewhere may release its timer meanwhile.
    assert!(live_closures() <= closures_before, "timers and unsubscribe closures all released");
    let refs_after = wasm_bindgen::externref_heap_live_count();
    assert!(refs_after <= refs + 2, "live JS references grew: {refs} -> {refs_after}");
    assert_eq!(memory_bytes(), mem, "wasm memory grew over 1,000 caches");
    web_sys::console::log_1(&s(&format!(
        "1000 caches: closures {closures_before}->{}, externrefs {refs}->{refs_after}, memory {mem} bytes",
        live_closures()
    )));
}

/// `get` as JS calls it on the object `createCache` returns (the memoizing fast path).
fn js_get(obj: &JsValue, key: &str) -> Result<JsValue, JsValue> {
    let get: Function = Reflect::get(obj, &s("get")).unwrap().unchecked_into();
    get.call1(obj, &s(key))
}

fn js_call(obj: &JsValue, method: &str, args: &[JsValue]) -> JsValue {
    let f: Function = Reflect::get(obj, &s(method)).unwrap().unchecked_into();
    f.apply(obj, &args.iter().collect::<Array>()).unwrap()
}

#[wasm_bindgen_test]
async fn the_memoized_get_never_answers_a_stale_value() {
    let c = create_cache_js(Some(obj(&[("channel", JsValue::FALSE)]))).map_err(JsValue::from).unwrap();
    let own = Reflect::get_own_property_descriptor(c.unchecked_ref::<Object>(), &s("get")).unwrap();
    assert!(!own.is_undefined(), "createCache gives the object its own get");
    let set = |k: &str, v: &str| js_call(&c, "set", &[s(k), s(v)]);
    let cmd = |args: &[&str]| js_call(&c, "command", &[strs(args)]);
    set("k", "v1");
    assert_eq!(js_get(&c, "k").unwrap(), s("v1"));
    assert_eq!(js_get(&c, "k").unwrap(), s("v1"), "a hit");
    set("k", "v2");
    assert_eq!(js_get(&c, "k").unwrap(), s("v2"), "a write drops the key");
    cmd(&["APPEND", "k", "!"]);
    assert_eq!(js_get(&c, "k").unwrap(), s("v2!"));
    cmd(&["RENAME", "k", "r"]);
    assert_eq!(js_get(&c, "k").unwrap(), JsValue::NULL);
    assert_eq!(js_get(&c, "r").unwrap(), s("v2!"));
    cmd(&["INCRBY", "n", "5"]);
    assert_eq!(js_get(&c, "n").unwrap(), s("5"));
    cmd(&["INCR", "n"]);
    assert_eq!(js_get(&c, "n").unwrap(), s("6"), "integers too");
    cmd(&["FLUSHALL"]);
    assert_eq!(js_get(&c, "r").unwrap(), JsValue::NULL, "a flush clears the memo");
    // A key with a TTL is never memoized: null right after its deadline, timer or not.
    js_call(&c, "set", &[s("t"), s("v"), obj_px(30)]);
    assert_eq!(js_get(&c, "t").unwrap(), s("v"));
    let start = js_sys::Date::now();
    while js_sys::Date::now() - start < 31.0 {}
    assert_eq!(js_get(&c, "t").unwrap(), JsValue::NULL, "expired before the timer ran");
    // EXPIRE on a memoized key drops it (then it is read through the engine).
    set("e", "v");
    js_get(&c, "e").unwrap();
    cmd(&["PEXPIRE", "e", "20"]);
    sleep(40).await;
    assert_eq!(js_get(&c, "e").unwrap(), JsValue::NULL);
    // A listener that writes a key and reads it back sees the new value.
    set("b", "old");
    js_get(&c, "b").unwrap();
    let seen = Array::new();
    let make = Function::new_with_args("cache, seen", "return (k, e) => { cache.set('b', 'new'); seen.push(cache.get('b')); }");
    let listener: Function = make.call2(&JsValue::NULL, &c, &seen).unwrap().unchecked_into();
    js_call(&c, "on", &[s("a"), listener.into()]);
    set("a", "1");
    assert_eq!(seen.to_vec(), vec![s("new")]);
    assert_eq!(js_get(&c, "b").unwrap(), s("new"));
    // WRONGTYPE still throws; a closed cache throws instead of answering from the memo.
    cmd(&["HSET", "h", "f", "v"]);
    assert!(js_get(&c, "h").is_err());
    js_call(&c, "close", &[]);
    assert!(js_get(&c, "b").is_err(), "closed: no stale answer");
}

/// `cache.stats().keyspaceHits`.
fn keyspace_hits(c: &JsValue) -> u64 {
    Reflect::get(&js_call(c, "stats", &[]), &s("keyspaceHits")).unwrap().as_f64().unwrap() as u64
}

// With LRU/LFU under a cap every read is an access: memo hits are recorded in JS and handed
// to the engine in batches of 64 and before every write, so none goes uncounted.
#[wasm_bindgen_test]
async fn memo_hits_under_an_lru_cap_count_as_reads() {
    for policy in ["allkeys-lru", "allkeys-lfu"] {
        let c = create_cache_js(Some(obj(&[("channel", JsValue::FALSE), ("maxKeys", JsValue::from(10)), ("eviction", s(policy))]))).unwrap();
        let own = Reflect::get_own_property_descriptor(c.unchecked_ref::<Object>(), &s("get")).unwrap();
        assert!(!own.is_undefined(), "{policy}: the memo serves capped caches too");
        js_call(&c, "set", &[s("k"), s("v")]);
        for n in [1, 63, 64, 65, 200] {
            let before = keyspace_hits(&c);
            for _ in 0..n {
                assert_eq!(js_get(&c, "k").unwrap(), s("v"));
            }
            // stats() hands over the hits recorded since the last batch first.
            assert_eq!(keyspace_hits(&c) - before, n, "{policy}: {n} reads");
        }
        if policy != "allkeys-lfu" {
            // (LRU's clock ticks once a second: the whole test runs within one tick.)
            js_call(&c, "close", &[]);
            continue;
        }
        // The recorded accesses steer eviction: the key read most survives new writes.
        for i in 0..9 {
            js_call(&c, "set", &[s(&format!("o{i}")), s("x")]);
        }
        for _ in 0..500 {
            js_get(&c, "k").unwrap();
        }
        for i in 0..20 {
            js_call(&c, "set", &[s(&format!("n{i}")), s("x")]);
        }
        assert_eq!(js_get(&c, "k").unwrap(), s("v"), "{policy}: the hot key was kept");
        js_call(&c, "close", &[]);
    }
}

fn obj_px(ms: i32) -> JsValue {
    obj(&[("px", JsValue::from(ms))]).into()
}
