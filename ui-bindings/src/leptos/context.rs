//! `provide_cache` / `use_cache`: one cache for a component tree.

use leptos::prelude::*;

use crate::Cache;

/// The context value: the cache lives in the reactive arena as a local (non-`Send`) value.
#[derive(Clone, Copy)]
struct CacheContext(StoredValue<Cache, LocalStorage>);

/// Makes `cache` the one [`use_cache`] and the `use_*` hooks find below this owner.
pub fn provide_cache(cache: Cache) {
    provide_context(CacheContext(StoredValue::new_local(cache)));
}

/// The cache given to [`provide_cache`] by an ancestor.
///
/// # Panics
/// When no ancestor called [`provide_cache`] — a wiring mistake, reported at once the way
/// Leptos's `expect_context` does.
#[track_caller]
pub fn use_cache() -> Cache {
    use_context::<CacheContext>()
        .and_then(|c| c.0.try_get_value())
        .expect("recached: use_cache() needs provide_cache(cache) in a parent component")
}
