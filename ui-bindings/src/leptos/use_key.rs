//! `use_key`: a string key as a signal.

use leptos::prelude::*;

use super::{follow, set_if_changed};

/// The value of string key `key` as a signal (`None` while the key is missing or not a
/// string). `key` may be reactive: the hook follows it.
///
/// Only changes to this key notify the signal, and only when its value changed.
pub fn use_key(key: impl Into<Signal<String>>) -> Signal<Option<String>> {
    follow(key.into(), |cache, key| cache.get_string(key), |cache, key, _, value| set_if_changed(value, cache.get_string(key)))
}
