//! `use_hash`: a hash key as a signal of its fields.

use leptos::prelude::*;

use super::{follow, set_if_changed};
use crate::Cache;

/// The fields and values of hash `key`, in the hash's order (empty while missing).
/// `key` may be reactive.
pub fn use_hash(key: impl Into<Signal<String>>) -> Signal<Vec<(String, String)>> {
    follow(key.into(), read, |cache, key, _, value| set_if_changed(value, read(cache, key)))
}

fn read(cache: &Cache, key: &str) -> Vec<(String, String)> {
    cache
        .hgetall(key)
        .into_iter()
        .map(|(f, v)| (String::from_utf8_lossy(&f).into_owned(), String::from_utf8_lossy(&v).into_owned()))
        .collect()
}
