//! `use_keys`: the keys matching a pattern, as a signal.

use std::rc::Rc;

use leptos::prelude::*;

use super::{cleanup_key_listener, use_cache, Slot};
use crate::{Cache, Notice};

/// The keys matching the Redis glob `pattern`, sorted. Kept up to date incrementally: a
/// change to one matching key checks only that key (a flush re-reads them all), and the
/// signal notifies only when the set of keys changed. `pattern` may be reactive.
pub fn use_keys(pattern: impl Into<Signal<String>>) -> Signal<Vec<String>> {
    let pattern = pattern.into();
    let cache = use_cache();
    let first = pattern.get_untracked();
    let value = RwSignal::new(read(&cache, &first));
    let slot = Slot::default();
    listen(&cache, &first, value, &slot);
    {
        // `immediate`: the effect's first run may already see a newer pattern than `first`
        // (set before the executor ran it); the listener follows whatever is current.
        let cache = cache.downgrade();
        let slot = slot.clone();
        let mut current = first;
        Effect::watch(
            move || pattern.get(),
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

fn read(cache: &Cache, pattern: &str) -> Vec<String> {
    cache.keys(pattern).into_iter().map(|k| String::from_utf8_lossy(&k).into_owned()).collect()
}

fn listen(cache: &Cache, pattern: &str, value: RwSignal<Vec<String>>, slot: &Slot) {
    let weak = cache.downgrade();
    let owned = pattern.to_string();
    let id = cache.on(
        pattern.as_bytes(),
        Rc::new(move |n: &Notice| {
            let Some(cache) = weak.upgrade() else { return };
            let Some(key) = &n.key else {
                let now = read(&cache, &owned);
                if value.try_with_untracked(|v| *v != now).unwrap_or(false) {
                    value.set(now);
                }
                return;
            };
            let key = String::from_utf8_lossy(key).into_owned();
            let present = cache.exists(&key);
            let Some(at) = value.try_with_untracked(|v| v.binary_search(&key)) else { return };
            match (present, at) {
                (true, Err(i)) => value.update(|v| v.insert(i, key)),
                (false, Ok(i)) => value.update(|v| {
                    v.remove(i);
                }),
                _ => {}
            }
        }),
    );
    if let Some(old) = slot.swap(id) {
        cache.off(old);
    }
}
