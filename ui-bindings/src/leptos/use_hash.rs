//! `use_hash`: a hash key as a signal of its fields.

use std::rc::Rc;

use leptos::prelude::*;

use super::{cleanup_key_listener, use_cache, Slot};
use crate::{Cache, Notice};

/// The fields and values of hash `key`, in the hash's order (empty while missing).
/// `key` may be reactive.
pub fn use_hash(key: impl Into<Signal<String>>) -> Signal<Vec<(String, String)>> {
    let key = key.into();
    let cache = use_cache();
    let first = key.get_untracked();
    let value = RwSignal::new(read(&cache, &first));
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
                    value.set(read(&cache, k));
                }
            },
            true,
        );
    }
    cleanup_key_listener(cache.downgrade(), slot);
    value.into()
}

fn read(cache: &Cache, key: &str) -> Vec<(String, String)> {
    cache
        .hgetall(key)
        .into_iter()
        .map(|(f, v)| (String::from_utf8_lossy(&f).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

fn listen(cache: &Cache, key: &str, value: RwSignal<Vec<(String, String)>>, slot: &Slot) {
    let weak = cache.downgrade();
    let owned = key.to_string();
    let id = cache.on(
        key.as_bytes(),
        Rc::new(move |_: &Notice| {
            let Some(cache) = weak.upgrade() else { return };
            let now = read(&cache, &owned);
            if value.try_with_untracked(|v| *v != now).unwrap_or(false) {
                value.set(now);
            }
        }),
    );
    if let Some(old) = slot.swap(id) {
        cache.off(old);
    }
}
