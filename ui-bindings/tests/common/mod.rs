//! Helpers shared by the browser test binaries that talk to a hub (sync.rs, tabs.rs,
//! tabs_skew.rs): JS values from Rust, timers, promises, and the hub's URL.
#![allow(dead_code)]

use js_sys::{Array, Function, Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

/// The hub's WebSocket URL, given at build time by scripts/test.d/30-ui-wasm.sh.
pub const HUB: Option<&str> = option_env!("RECACHED_TEST_WS");

/// The hub's URL, or `None` (and a console line saying `what` is skipped) without one.
pub fn hub(what: &str) -> Option<&'static str> {
    if HUB.is_none() {
        web_sys::console::log_1(&s(&format!("RECACHED_TEST_WS not set at build time: {what} skipped")));
    }
    HUB
}

pub fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

pub fn obj(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &s(k), v).unwrap();
    }
    o
}

pub fn strs(items: &[&str]) -> JsValue {
    items.iter().map(|i| s(i)).collect::<Array>().into()
}

pub async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &s("setTimeout")).unwrap().unchecked_into();
        set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(ms)).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// A promise's value, or its rejection's message.
pub async fn settle(p: Promise) -> Result<JsValue, String> {
    JsFuture::from(p).await.map_err(|e| e.dyn_into::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_default())
}

/// A change listener that logs `"<key> <event>"` (`*` for no key) into the returned array.
pub fn recorder() -> (Function, Array) {
    let log = Array::new();
    let make = Function::new_with_args("log", "return (k, e) => { log.push((k === null ? '*' : k) + ' ' + e); }");
    (make.call1(&JsValue::NULL, &log).unwrap().unchecked_into(), log)
}

/// `GET url` from the page (the hub's HTTP port answers any origin when it is open).
pub async fn fetch_text(url: &str) -> String {
    let fetch = Function::new_with_args("u", "return fetch(u).then(r => r.text())");
    let p: Promise = fetch.call1(&JsValue::NULL, &s(url)).unwrap().unchecked_into();
    JsFuture::from(p).await.unwrap().as_string().unwrap_or_default()
}
