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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use crate::{ListenerId, WeakCache};

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

/// Removes the hook's key listener when its owner is cleaned up.
fn cleanup_key_listener(cache: WeakCache, slot: Slot) {
    let cache = SendWrapper::new(cache);
    on_cleanup(move || {
        if let (Some(id), Some(cache)) = (slot.swap(None), cache.upgrade()) {
            cache.off(id);
        }
    });
}
