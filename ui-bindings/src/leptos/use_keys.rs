//! `use_keys`: the keys matching a pattern, as a signal.

use leptos::prelude::*;

use super::{follow, set_if_changed};
use crate::{Cache, Notice};

/// The keys matching the Redis glob `pattern`, sorted. Kept up to date incrementally: a
/// change to one matching key checks only that key (a flush re-reads them all), and the
/// signal notifies only when the set of keys changed. `pattern` may be reactive.
pub fn use_keys(pattern: impl Into<Signal<String>>) -> Signal<Vec<String>> {
    follow(pattern.into(), read, changed)
}

fn read(cache: &Cache, pattern: &str) -> Vec<String> {
    cache.keys(pattern).into_iter().map(|k| String::from_utf8_lossy(&k).into_owned()).collect()
}

/// One key's notice checks that key only; a whole-database notice re-reads them all.
fn changed(cache: &Cache, pattern: &str, n: &Notice, value: RwSignal<Vec<String>>) {
    let Some(key) = &n.key else {
        set_if_changed(value, read(cache, pattern));
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
}
