//! The Leptos hooks in headless Chromium: values follow the cache, only the signals of
//! the key that changed are notified (10,000 watched keys), reactive keys, cleanup.
#![cfg(all(target_arch = "wasm32", feature = "leptos"))]

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Promise, Reflect};
use leptos::prelude::*;
use recached_ui::leptos::{provide_cache, use_cache, use_hash, use_json, use_key, use_keys, use_status};
use recached_ui::{Cache, CacheOptions, Status};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn sleep(ms: i32) {
    let p = Promise::new(&mut |resolve, _| {
        let set_timeout: Function = Reflect::get(&js_sys::global(), &JsValue::from_str("setTimeout")).unwrap().unchecked_into();
        set_timeout.call2(&JsValue::NULL, &resolve, &JsValue::from(ms)).unwrap();
    });
    JsFuture::from(p).await.unwrap();
}

/// Lets effects scheduled on the executor run.
async fn flush() {
    any_spawner::Executor::tick().await;
    sleep(0).await;
}

/// A reactive owner with a fresh cache provided in it.
fn setup() -> (Owner, Cache) {
    let _ = any_spawner::Executor::init_wasm_bindgen();
    let owner = Owner::new();
    let cache = Cache::new(&CacheOptions::default()).unwrap();
    owner.with(|| provide_cache(cache.clone()));
    (owner, cache)
}

#[wasm_bindgen_test]
async fn use_key_follows_writes_deletes_expiry_and_types() {
    let (owner, cache) = setup();
    cache.cmd(&["SET", "greeting", "hi"]);
    let (greeting, missing) = owner.with(|| (use_key("greeting"), use_key("missing".to_string())));
    assert_eq!(greeting.get_untracked().as_deref(), Some("hi"));
    assert_eq!(missing.get_untracked(), None);
    owner.with(|| assert_eq!(use_cache(), cache));

    cache.cmd(&["SET", "greeting", "hello"]);
    assert_eq!(greeting.get_untracked().as_deref(), Some("hello"), "updated synchronously by the write");
    cache.cmd(&["APPEND", "greeting", "!"]);
    assert_eq!(greeting.get_untracked().as_deref(), Some("hello!"));
    cache.cmd(&["DEL", "greeting"]);
    assert_eq!(greeting.get_untracked(), None);
    cache.cmd(&["LPUSH", "greeting", "x"]);
    assert_eq!(greeting.get_untracked(), None, "not a string");
    cache.cmd(&["SET", "missing", "now", "PX", "30"]);
    assert_eq!(missing.get_untracked().as_deref(), Some("now"));
    for _ in 0..500 {
        if missing.get_untracked().is_none() {
            break;
        }
        sleep(10).await;
    }
    assert_eq!(missing.get_untracked(), None, "the expiry timer cleared the signal");
    owner.cleanup();
    assert_eq!(cache.listener_count(), 0, "listeners removed on cleanup");
}

#[wasm_bindgen_test]
async fn one_change_notifies_only_that_keys_watchers_among_10000() {
    let (owner, cache) = setup();
    const KEYS: usize = 10_000;
    for i in 0..KEYS {
        cache.cmd(&["SET", &format!("k{i}"), "0"]);
    }
    let runs = Rc::new(Cell::new(0usize));
    let runs_of_5000 = Rc::new(Cell::new(0usize));
    owner.with(|| {
        for i in 0..KEYS {
            let value = use_key(format!("k{i}"));
            let runs = runs.clone();
            Effect::new(move |_| {
                value.track();
                runs.set(runs.get() + 1);
            });
        }
        // A second watcher of the same key.
        let again = use_key("k5000");
        let runs_of_5000 = runs_of_5000.clone();
        Effect::new(move |_| {
            again.track();
            runs_of_5000.set(runs_of_5000.get() + 1);
        });
    });
    assert_eq!(cache.listener_count(), KEYS + 1);
    flush().await;
    assert_eq!(runs.get(), KEYS, "each effect ran once at creation");
    runs.set(0);
    runs_of_5000.set(0);

    cache.cmd(&["SET", "k5000", "1"]);
    flush().await;
    assert_eq!((runs.get(), runs_of_5000.get()), (1, 1), "exactly the two watchers of k5000 ran");

    cache.cmd(&["SET", "k5000", "1"]);
    cache.cmd(&["SET", "unwatched", "1"]);
    cache.cmd(&["EXPIRE", "k42", "100"]);
    flush().await;
    assert_eq!((runs.get(), runs_of_5000.get()), (1, 1), "same value, other keys, TTL only: nothing");

    cache.cmd(&["MSET", "k1", "a", "k2", "b"]);
    flush().await;
    assert_eq!(runs.get(), 3, "one run per changed key");
    owner.cleanup();
    assert_eq!(cache.listener_count(), 0);
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Flags {
    dark: bool,
    beta: Vec<String>,
}

#[wasm_bindgen_test]
async fn use_json_use_hash_use_keys_use_status() {
    let (owner, cache) = setup();
    cache.cmd(&["SET", "user:2", "b"]);
    cache.cmd(&["SET", "user:1", "a"]);
    cache.cmd(&["SET", "other", "x"]);
    let (flags, profile, users, status) =
        owner.with(|| (use_json::<Flags>("flags"), use_hash("profile"), use_keys("user:*"), use_status()));
    assert_eq!(flags.get_untracked(), None);
    cache.cmd(&["SET", "flags", r#"{"dark":true,"beta":["x"]}"#]);
    flush().await;
    assert_eq!(flags.get_untracked(), Some(Flags { dark: true, beta: vec!["x".into()] }));
    cache.cmd(&["SET", "flags", "not json"]);
    flush().await;
    assert_eq!(flags.get_untracked(), None);

    assert!(profile.get_untracked().is_empty());
    cache.cmd(&["HSET", "profile", "name", "ann", "plan", "pro"]);
    assert_eq!(profile.get_untracked(), [("name".into(), "ann".into()), ("plan".into(), "pro".into())]);
    cache.cmd(&["HDEL", "profile", "plan"]);
    assert_eq!(profile.get_untracked(), [("name".to_string(), "ann".to_string())]);

    assert_eq!(users.get_untracked(), ["user:1", "user:2"]);
    let runs = Rc::new(Cell::new(0));
    owner.with(|| {
        let runs = runs.clone();
        Effect::new(move |_| {
            users.track();
            runs.set(runs.get() + 1);
        });
    });
    flush().await;
    runs.set(0);
    cache.cmd(&["SET", "user:0", "z"]);
    assert_eq!(users.get_untracked(), ["user:0", "user:1", "user:2"]);
    cache.cmd(&["SET", "user:1", "changed value, same keys"]);
    cache.cmd(&["SET", "nobody", "x"]);
    flush().await;
    assert_eq!(runs.get(), 1, "only the key set changing notifies");
    cache.cmd(&["DEL", "user:2"]);
    assert_eq!(users.get_untracked(), ["user:0", "user:1"]);
    cache.cmd(&["RENAME", "user:0", "user:9"]);
    assert_eq!(users.get_untracked(), ["user:1", "user:9"]);
    cache.cmd(&["FLUSHALL"]);
    assert!(users.get_untracked().is_empty());
    assert!(profile.get_untracked().is_empty());

    assert_eq!(status.get_untracked(), Status::Offline);
    cache.close();
    assert_eq!(status.get_untracked(), Status::Closed);
    owner.cleanup();
}

#[wasm_bindgen_test]
async fn reactive_keys_move_their_listener() {
    let (owner, cache) = setup();
    cache.cmd(&["SET", "a", "1"]);
    cache.cmd(&["SET", "b", "2"]);
    let (name, set_name) = signal("a".to_string());
    let value = owner.with(|| use_key(name));
    assert_eq!(value.get_untracked().as_deref(), Some("1"));
    set_name.set("b".to_string());
    flush().await;
    assert_eq!(value.get_untracked().as_deref(), Some("2"));
    assert_eq!(cache.listener_count(), 1, "the listener for a was replaced");
    cache.cmd(&["SET", "a", "changed"]);
    assert_eq!(value.get_untracked().as_deref(), Some("2"));
    cache.cmd(&["SET", "b", "3"]);
    assert_eq!(value.get_untracked().as_deref(), Some("3"));
    owner.cleanup();
    assert_eq!(cache.listener_count(), 0);
}
