//! `cache.connect` against a real hub process in headless Chromium: two caches converge,
//! write promises settle on the hub's ack, failover and backoff over a dead URL, and a
//! connect/close loop (1,000 rounds) keeps closures and wasm memory flat.
//!
//! The hub's WebSocket URL comes in at build time as `RECACHED_TEST_WS`
//! (scripts/test.d/30-ui-wasm.sh starts the hub); without it these tests are skipped.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function};
use recached_ui::{create_cache, live_closures, JsCache};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

mod common;

use common::{hub, obj, recorder, s, settle, sleep, strs};

wasm_bindgen_test_configure!(run_in_browser);

async fn wait_until(what: &str, max_ms: i32, mut done: impl FnMut() -> bool) {
    let mut waited = 0;
    while !done() {
        assert!(waited < max_ms, "timed out after {max_ms} ms waiting for {what}");
        sleep(10).await;
        waited += 10;
    }
}

fn connected(urls: &[&str], patterns: &[&str]) -> JsCache {
    // Not shared between the caches of this page (tests/tabs.rs covers sharing).
    let c = create_cache(Some(obj(&[("channel", JsValue::FALSE)]))).map_err(JsValue::from).unwrap();
    c.connect(obj(&[("urls", strs(urls)), ("patterns", strs(patterns)), ("token", s(""))])).map_err(JsValue::from).unwrap();
    c
}

#[wasm_bindgen_test]
async fn two_caches_converge_through_the_hub() {
    let Some(url) = hub("hub sync tests") else { return };
    let prefix = format!("t{}:", js_sys::Math::random().to_bits());
    let pattern = format!("{prefix}*");
    let a = connected(&[url], &[&pattern]);
    let b = connected(&[url], &[&pattern]);
    let statuses = Array::new();
    let make = Function::new_with_args("log", "return (s) => log.push(s)");
    let _off_status = a.on_status(make.call1(&JsValue::NULL, &statuses).unwrap().unchecked_into());
    wait_until("both live", 10_000, || a.status() == "live" && b.status() == "live").await;
    assert!(statuses.iter().any(|v| v == "live"));
    let (listener, log) = recorder();
    let _off = b.on(pattern.clone(), listener);

    let key = format!("{prefix}k");
    let p = a.set(s(&key), s("v"), None);
    assert_eq!(a.get(s(&key)).unwrap(), s("v"), "applied locally at once");
    assert_eq!(a.pending_writes(), 1.0, "waiting for the hub's ack");
    assert_eq!(settle(p).await.unwrap(), s("OK"));
    assert_eq!(a.pending_writes(), 0.0);
    wait_until("b to see the write", 5000, || b.get(s(&key)).unwrap() == s("v")).await;
    assert!(log.iter().any(|l| l == s(&format!("{key} changed"))), "b's listener heard it");

    let n = format!("{prefix}n");
    assert_eq!(settle(a.incr(s(&n))).await.unwrap(), JsValue::from(1));
    assert_eq!(settle(b.incr_by(s(&n), 10.0)).await.unwrap(), JsValue::from(11.0));
    wait_until("a to see b's increment", 5000, || a.get(s(&n)).unwrap() == s("11")).await;

    assert_eq!(settle(b.del(s(&key))).await.unwrap(), JsValue::from(1));
    wait_until("a to see the delete", 5000, || a.get(s(&key)).unwrap() == JsValue::NULL).await;

    let h = format!("{prefix}h");
    settle(a.hset(s(&h), obj(&[("f", s("1")), ("g", s("2"))]).into(), None)).await.unwrap();
    wait_until("b to see the hash", 5000, || b.hget(s(&h), s("g")).unwrap() == s("2")).await;
    let txn = Array::of2(&strs(&["SET", &key, "x"]), &strs(&["APPEND", &key, "y"]));
    assert_eq!(js_sys::JSON::stringify(&settle(a.multi(txn.into())).await.unwrap()).unwrap(), "[\"OK\",2]");
    wait_until("b to see the transaction", 5000, || b.get(s(&key)).unwrap() == s("xy")).await;

    // TTLs travel as absolute deadlines and expire on b's own timer.
    let t = format!("{prefix}ttl");
    settle(a.set(s(&t), s("v"), Some(obj(&[("px", JsValue::from(300))])))).await.unwrap();
    wait_until("b to see the ttl key", 5000, || b.get(s(&t)).unwrap() == s("v")).await;
    wait_until("b to expire it", 5000, || b.exists(s(&t)).unwrap() == 0.0).await;

    // An error reply from the hub rejects (no rollback needed: nothing applied).
    assert!(settle(a.command(strs(&["INCR", &h]))).await.unwrap_err().starts_with("WRONGTYPE"));
    a.close();
    b.close();
    assert_eq!(a.status(), "closed");
}

#[wasm_bindgen_test]
async fn fails_over_from_a_dead_url_with_backoff() {
    let Some(url) = hub("hub sync tests") else { return };
    let before = live_closures();
    // Port 9 (discard) refuses on loopback: the first attempt fails, the next URL works.
    let c = connected(&["ws://127.0.0.1:9", url], &["failover:*"]);
    let statuses = Array::new();
    let make = Function::new_with_args("log", "return (s) => log.push(s)");
    let _off = c.on_status(make.call1(&JsValue::NULL, &statuses).unwrap().unchecked_into());
    wait_until("live through the second URL", 10_000, || c.status() == "live").await;
    c.close();

    // Only dead URLs: it keeps trying (offline between attempts) until closed.
    let dead = connected(&["ws://127.0.0.1:9"], &["x:*"]);
    wait_until("a failed attempt", 5000, || dead.status() == "offline").await;
    sleep(400).await;
    assert!(dead.status() == "offline" || dead.status() == "connecting");
    dead.close();
    assert_eq!(dead.status(), "closed");
    sleep(50).await;
    assert!(live_closures() <= before, "socket handlers and retry timers released: {} > {before}", live_closures());
}

fn memory_bytes() -> f64 {
    let mem: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    js_sys::ArrayBuffer::from(mem.buffer()).byte_length() as f64
}

#[wasm_bindgen_test]
async fn connect_and_close_1000_times_stays_flat() {
    let Some(url) = hub("hub sync tests") else { return };
    let round = |i: usize| {
        let c = connected(&[url], &["leak:*"]);
        let (listener, _log) = recorder();
        let _off = c.on("leak:*".into(), listener);
        let _ = c.set(s(&format!("leak:{}", i % 10)), s("v"), None);
        c
    };
    // Warm up (and let a few reach live, so full sessions are part of the loop).
    for i in 0..20 {
        let c = round(i);
        wait_until("live", 10_000, || c.status() == "live").await;
        c.close();
    }
    sleep(100).await;
    let closures = live_closures();
    let refs = wasm_bindgen::externref_heap_live_count();
    let mem = memory_bytes();
    for i in 0..1000 {
        let c = round(i);
        if i % 50 == 0 {
            wait_until("live", 10_000, || c.status() == "live").await;
        } else if i % 10 == 0 {
            sleep(0).await;
        }
        c.close();
    }
    sleep(200).await;
    assert!(live_closures() <= closures, "closures grew: {closures} -> {}", live_closures());
    let refs_after = wasm_bindgen::externref_heap_live_count();
    assert!(refs_after <= refs + 2, "live JS references grew: {refs} -> {refs_after}");
    assert_eq!(memory_bytes(), mem, "wasm memory grew over 1,000 connect/close rounds");
    web_sys::console::log_1(&s(&format!(
        "1000 connects: closures {closures}->{}, externrefs {refs}->{refs_after}, memory {mem} bytes",
        live_closures()
    )));
}
