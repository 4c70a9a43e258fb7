//! `use_status`: the cache's connection status as a signal.

use std::rc::Rc;

use leptos::prelude::*;
use send_wrapper::SendWrapper;

use super::use_cache;
use crate::Status;

/// The cache's status (`Offline` for a local cache; `Closed` after `close`).
pub fn use_status() -> Signal<Status> {
    let cache = use_cache();
    let value = RwSignal::new(cache.status());
    let id = cache.on_status(Rc::new(move |s: Status| {
        value.try_set(s);
    }));
    if let Some(id) = id {
        let cache = SendWrapper::new(cache.downgrade());
        on_cleanup(move || {
            if let Some(cache) = cache.upgrade() {
                cache.off_status(id);
            }
        });
    }
    value.into()
}
