//! `use_key`: a string key as a signal.

use std::rc::Rc;

use leptos::prelude::*;

use super::{cleanup_key_listener, use_cache, Slot};
use crate::{Cache, Notice};

/// The value of string key `key` as a signal (`None` while the key is missing or not a
/// string). `key` may be reactive: the hook follows it.
///
/// Only changes to this key notify the signal, and only when its value changed.
pub fn use_key(key: impl Into<Signal<String>>) -> Signal<Option<String>> {
    let key = key.into();
    let cache = use_cache();
    let first = key.get_untracked();
    let value = RwSignal::new(cache.get_string(&first));
    let slot = Slot::default();
    listen(&cache, &first, value, &slot);
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
                    listen(&cache, k, value, &slot);
                    value.set(cache.get_string(k));
                }
            },
            true,
        );
    }
    cleanup_key_listener(cache.downgrade(), slot);
    value.into()
}

/// Points `slot` at a listener that keeps `value` equal to `key`'s value.
fn listen(cache: &Cache, key: &str, value: RwSignal<Option<String>>, slot: &Slot) {
    let weak = cache.downgrade();
    let owned = key.to_string();
    let id = cache.on(
        key.as_bytes(),
        Rc::new(move |_: &Notice| {
            let Some(cache) = weak.upgrade() else { return };
            let now = cache.get_string(&owned);
            if value.try_with_untracked(|v| *v != now).unwrap_or(false) {
                value.set(now);
            }
        }),
    );
    if let Some(old) = slot.swap(id) {
        cache.off(old);
    }
}
