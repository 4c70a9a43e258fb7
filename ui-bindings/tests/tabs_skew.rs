//! Cross-tab TTLs when the machine's clock is off from the hub's, in headless Chromium
//! against a real hub: the page's `Date.now` runs an hour ahead (the test wraps it; the
//! caches read the time only through it), the hub's clock is the real one. The leader
//! tab's sync client measures the offset at HELLO; a follower tab must expire the leader's
//! keys on the hub's deadline too — in its reads, its `pttl` and its change listener.
//!
//! Its own test binary, so the wrapped clock never reaches another test's page. Needs
//! `RECACHED_TEST_WS` at build time (scripts/test.d/30-ui-wasm.sh); skipped without it.
#![cfg(target_arch = "wasm32")]

use js_sys::{Array, Function, Reflect};
use recached_ui::{create_cache, JsCache};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

mod common;

use common::{fetch_text, hub, obj, s, sleep, strs};

wasm_bindgen_test_configure!(run_in_browser);

/// How far the page's clock runs ahead of the hub's.
const SKEW_MS: f64 = 3_600_000.0;

/// How close to the hub's deadline a tab must see a key go (timers on a loaded machine).
const TOLERANCE_MS: f64 = 150.0;

/// The real time (the hub's clock: same machine), whatever `Date.now` says.
fn real_now() -> f64 {
    let f: Function = Reflect::get(&js_sys::global(), &s("__recachedRealNow")).unwrap().unchecked_into();
    f.call0(&JsValue::NULL).unwrap().as_f64().unwrap()
}

/// Makes the page's clock run `ms` ahead; returns the function that restores it.
fn skew_page_clock(ms: f64) -> Function {
    let f = Function::new_with_args(
        "ms",
        "const real = Date.now.bind(Date); globalThis.__recachedRealNow = real; \
         Date.now = () => real() + ms; return () => { Date.now = real; };",
    );
    f.call1(&JsValue::NULL, &JsValue::from(ms)).unwrap().unchecked_into()
}

/// The `result` number of an HTTP API answer (`{"result":123}`).
fn result_number(json: &str) -> f64 {
    let v = js_sys::JSON::parse(json).unwrap_or_else(|_| panic!("not JSON: {json}"));
    Reflect::get(&v, &s("result")).unwrap().as_f64().unwrap_or_else(|| panic!("no number in {json}"))
}

fn tab(channel: &str, url: &str, pattern: &str) -> JsCache {
    let c = create_cache(Some(obj(&[("channel", s(channel))]))).map_err(JsValue::from).unwrap();
    c.connect(obj(&[("urls", strs(&[url])), ("patterns", strs(&[pattern])), ("token", s(""))])).map_err(JsValue::from).unwrap();
    c
}

/// Issue 5: followers expired TTL keys by their own clock (the leader's hub offset was not
/// applied on followers), so with the machine an hour ahead of the hub a follower dropped
/// every TTL key at once.
#[wasm_bindgen_test]
async fn a_follower_expires_keys_on_the_hubs_deadline_when_the_clock_is_off() {
    let Some(url) = hub("the tab skew test") else { return };
    let http = url.replacen("ws://", "http://", 1);
    let restore = skew_page_clock(SKEW_MS);
    assert!((js_sys::Date::now() - real_now() - SKEW_MS).abs() < 1000.0, "the page clock is not skewed");
    let ch = format!("tabs-skew-{}", js_sys::Math::random().to_bits());
    let prefix = format!("skew{}:", js_sys::Math::random().to_bits());
    let pattern = format!("{prefix}*");
    let a = tab(&ch, url, &pattern);
    let b = tab(&ch, url, &pattern);
    let start = real_now();
    while !(a.status() == "live" && b.status() == "live") {
        assert!(real_now() - start < 10_000.0, "tabs not live: {} {}", a.status(), b.status());
        sleep(5).await;
    }
    assert_eq!((a.tab_role(), b.tab_role()), ("leader".to_string(), "follower".to_string()));

    // Deadlines set on the hub by a backend (HTTP API, hub clock) and by the follower itself
    // (relative: the hub makes it absolute).
    let keys: Vec<String> = (0..3).map(|i| format!("{prefix}b{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        fetch_text(&format!("{http}/set/{k}/v?PX={}", 800 + i * 200)).await;
    }
    let mine = format!("{prefix}mine");
    let p = b.set(s(&mine), s("v"), Some(obj(&[("px", JsValue::from(900))])));
    JsFuture::from(p).await.unwrap();
    let all: Vec<String> = keys.iter().cloned().chain([mine]).collect();
    let mut deadlines = Vec::new();
    for k in &all {
        deadlines.push(result_number(&fetch_text(&format!("{http}/pexpiretime/{k}")).await));
    }
    let log = Array::new();
    let record = Function::new_with_args("log, real", "return (k, e) => { log.push([k, e, real()]); }");
    let real: Function = Reflect::get(&js_sys::global(), &s("__recachedRealNow")).unwrap().unchecked_into();
    let _off = b.on(pattern.clone(), record.call2(&JsValue::NULL, &log, &real).unwrap().unchecked_into());
    let start = real_now();
    while !all.iter().all(|k| b.exists(s(k)).unwrap() == 1.0) {
        assert!(real_now() - start < 2000.0, "the follower never saw every key (it expired them at once?)");
        sleep(2).await;
    }
    // The follower's PTTL counts down to the hub's deadline, not to one an hour off.
    for (k, d) in all.iter().zip(&deadlines) {
        let pttl = b.pttl(s(k)).unwrap();
        let want = d - real_now();
        assert!((pttl - want).abs() <= TOLERANCE_MS, "{k}: follower pttl {pttl}, hub deadline in {want} ms");
    }

    // Watch the follower's reads until every key is gone.
    let mut last_seen = vec![0.0; all.len()];
    let mut first_gone = vec![f64::INFINITY; all.len()];
    let end = deadlines.iter().cloned().fold(0.0, f64::max) + 500.0;
    while real_now() < end {
        for (i, k) in all.iter().enumerate() {
            let t = real_now();
            if b.exists(s(k)).unwrap() == 1.0 {
                last_seen[i] = t;
            } else if first_gone[i].is_infinite() {
                first_gone[i] = t;
            }
        }
        sleep(2).await;
    }
    let mut worst: f64 = 0.0;
    for (i, k) in all.iter().enumerate() {
        let d = deadlines[i];
        assert!(last_seen[i] >= d - TOLERANCE_MS, "{k}: gone from the follower {} ms before the hub's deadline", d - last_seen[i]);
        assert!(first_gone[i] <= d + TOLERANCE_MS, "{k}: still in the follower {} ms after the hub's deadline", first_gone[i] - d);
        // The follower's listener heard the key go near the deadline (its own timer or the
        // leader's change, whichever came first).
        let heard = log
            .iter()
            .map(|e| Array::from(&e))
            .filter(|e| e.get(0).as_string().as_deref() == Some(k.as_str()))
            .filter_map(|e| e.get(2).as_f64())
            .find(|t| *t >= d - 300.0);
        let heard = heard.unwrap_or_else(|| panic!("{k}: the follower's listener never heard it expire"));
        assert!((heard - d).abs() <= TOLERANCE_MS, "{k}: the follower heard it expire {} ms from the hub's deadline", heard - d);
        worst = worst.max((first_gone[i] - d).abs()).max((heard - d).abs());
    }
    web_sys::console::log_1(&s(&format!("tab skew {SKEW_MS} ms: follower expiries within {worst} ms of the hub's deadline")));
    a.close();
    b.close();
    restore.call0(&JsValue::NULL).unwrap();
}
