//! `use_json`: a JSON string key as a typed signal.

use leptos::prelude::*;
use serde::de::DeserializeOwned;

use super::use_key;

/// The value of `key` parsed as JSON into `T` (`None` when missing or not valid `T`).
/// Recomputed only when the key's text changes; notifies only when the parsed value
/// differs.
pub fn use_json<T>(key: impl Into<Signal<String>>) -> Signal<Option<T>>
where
    T: DeserializeOwned + PartialEq + Clone + Send + Sync + 'static,
{
    let text = use_key(key);
    Memo::new(move |_| text.with(|t| t.as_deref().and_then(|t| serde_json::from_str::<T>(t).ok()))).into()
}
