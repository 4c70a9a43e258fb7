//! Leptos bindings (feature `leptos`): keys as signals.
//!
//! Named and cleaned up the leptos-use way: each `use_*` hook registers a listener on the
//! cache and removes it in `on_cleanup` when its owner (component) goes away. A literal
//! key listens through the cache's per-key index, so a change to one key notifies only
//! that key's signals, however many keys are watched; a signal is set only when the value
//! it shows actually changed.
//!
//! ```ignore
//! use leptos::prelude::*;
//! use recached_ui::{leptos::*, Cache, CacheOptions};
//!
//! #[component]
//! fn App() -> impl IntoView {
//!     provide_cache(Cache::new(&CacheOptions::default()).unwrap());
//!     let cache = use_cache();
//!     let count = use_key("counter");
//!     let users = use_keys("user:*");
//!     view! {
//!         <button on:click=move |_| { cache.cmd(&["INCR", "counter"]); }>
//!             {move || count.get().unwrap_or_else(|| "0".into())}
//!         </button>
//!         <p>{move || users.get().len()} " users"</p>
//!     }
//! }
//! ```

mod context;
mod use_hash;
mod use_json;
mod use_key;
mod use_keys;
mod use_status;

pub use context::{provide_cache, use_cache};
pub use use_hash::use_hash;
pub use use_json::use_json;
pub use use_key::use_key;
pub use use_keys::use_keys;
pub use use_status::use_status;

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use crate::{Cache, ListenerId, Notice, WeakCache};

/// The listener a hook holds, shared with its cleanup (which must be `Send + Sync`).
#[derive(Clone, Default)]
struct Slot(Arc<AtomicU64>);

impl Slot {
    fn swap(&self, id: Option<ListenerId>) -> Option<ListenerId> {
        match self.0.swap(id.map_or(0, |i| i.0), Ordering::Relaxed) {
            0 => None,
            old => Some(ListenerId(old)),
        }
    }
}

/// What a notice about the followed key (or pattern) does to the hook's signal.
type Changed<T> = fn(&Cache, &str, &Notice, RwSignal<T>);

/// The body every key hook shares: a signal holding `read(cache, key)` for a possibly
/// reactive `key`, kept current by a listener on `key` that runs `changed`. When `key`
/// changes the listener moves to the new key and the signal is re-read; the listener is
/// removed when the owner is cleaned up.
fn follow<T>(key: Signal<String>, read: fn(&Cache, &str) -> T, changed: Changed<T>) -> Signal<T>
where
    T: Send + Sync + 'static,
{
    let cache = use_cache();
    let first = key.get_untracked();
    let value = RwSignal::new(read(&cache, &first));
    let slot = Slot::default();
    listen(&cache, &first, value, &slot, changed);
    {
        // `immediate`: the effect's first run may already see a newer key than `first`
        // (set before the executor ran it); the listener follows whatever is current.
        let cache = cache.downgrade();
        let slot = slot.clone();
        let mut current = first;
        Effect::watch(
            move || key.get(),
            move |k, _, _| {
                if *k == current {
                    return;
                }
                current = k.clone();
                if let Some(cache) = cache.upgrade() {
                    listen(&cache, k, value, &slot, changed);
                    value.set(read(&cache, k));
                }
            },
            true,
        );
    }
    cleanup_key_listener(cache.downgrade(), slot);
    value.into()
}

/// Points `slot` at a listener on `key` that runs `changed` (removing the one before).
fn listen<T: Send + Sync + 'static>(cache: &Cache, key: &str, value: RwSignal<T>, slot: &Slot, changed: Changed<T>) {
    let weak = cache.downgrade();
    let owned = key.to_string();
    let id = cache.on(
        key.as_bytes(),
        Rc::new(move |n: &Notice| {
            if let Some(cache) = weak.upgrade() {
                changed(&cache, &owned, n, value);
            }
        }),
    );
    if let Some(old) = slot.swap(id) {
        cache.off(old);
    }
}

/// Sets `value` to `now` only when it differs: a signal notifies only on a real change.
fn set_if_changed<T: PartialEq + Send + Sync + 'static>(value: RwSignal<T>, now: T) {
    if value.try_with_untracked(|v| *v != now).unwrap_or(false) {
        value.set(now);
    }
}

/// Removes the hook's key listener when its owner is cleaned up.
fn cleanup_key_listener(cache: WeakCache, slot: Slot) {
    let cache = SendWrapper::new(cache);
    on_cleanup(move || {
        if let (Some(id), Some(cache)) = (slot.swap(None), cache.upgrade()) {
            cache.off(id);
        }
    });
}
