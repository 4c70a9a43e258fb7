//! The hub connection: a browser WebSocket driving the engine's sync client
//! (`recached_engine::sync::client`) through [`crate::CacheCore`], with jittered exponential
//! reconnect backoff over a list of URLs.
//!
//! Every JS closure lives in a [`Socket`] (its four handlers) or in the retry timer; a
//! reconnect drops the old socket first, and `close()` drops both, so no closure outlives
//! the connection it served.

use gloo_timers::callback::Timeout;
use js_sys::{ArrayBuffer, Uint8Array};
use recached_engine::sync::Reconnect;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

use crate::cache::{now_ms, Cache, Counted, WeakCache};
use crate::core::backoff_ms;

/// Close code for a broken stream (protocol.md §9).
const CLOSE_PROTOCOL: u16 = 4000;

/// An open (or opening) WebSocket and the closures its handlers point to.
pub(crate) struct Socket {
    ws: WebSocket,
    _handlers: Vec<Counted<Box<dyn std::any::Any>>>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        crate::cache::count_socket(false);
        // Detach first: a late event must not call a dropped closure.
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

impl Socket {
    fn send(&self, data: &[u8]) -> bool {
        self.ws.send_with_u8_array(data).is_ok()
    }
}

/// The connection state a cache keeps while it mirrors a hub.
pub(crate) struct Link {
    urls: Vec<String>,
    next_url: usize,
    attempt: u32,
    socket: Option<Socket>,
    retry: Option<Counted<Timeout>>,
}

impl Link {
    pub(crate) fn new(urls: Vec<String>) -> Link {
        Link { urls, next_url: 0, attempt: 0, socket: None, retry: None }
    }
}

/// Opens a socket to the next URL. Errors (a malformed URL) count as a failed attempt.
pub(crate) fn open(cache: &Cache) {
    let url = {
        let mut link = cache.link_mut();
        let Some(link) = link.as_mut() else { return };
        link.retry = None;
        link.socket = None;
        if link.urls.is_empty() {
            return;
        }
        let url = link.urls[link.next_url % link.urls.len()].clone();
        link.next_url = (link.next_url + 1) % link.urls.len();
        url
    };
    let ws = match WebSocket::new(&url) {
        Ok(ws) => ws,
        Err(e) => {
            web_sys::console::error_2(&JsValue::from_str(&format!("recached: cannot open {url}")), &e);
            schedule(cache, Reconnect::Backoff);
            return;
        }
    };
    ws.set_binary_type(BinaryType::Arraybuffer);
    let weak = cache.downgrade();
    let onopen = Closure::<dyn FnMut()>::new({
        let weak = weak.clone();
        move || {
            if let Some(c) = weak.upgrade() {
                c.with_core(|core| core.on_open(now_ms()));
                flush(&c);
            }
        }
    });
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |e: MessageEvent| on_message(&weak, e)
    });
    let onclose = Closure::<dyn FnMut(CloseEvent)>::new({
        let weak = weak.clone();
        move |e: CloseEvent| {
            if let Some(c) = weak.upgrade() {
                let advice = c.with_core(|core| core.on_close(e.code(), now_ms()));
                if let Some(link) = c.link_mut().as_mut() {
                    link.socket = None;
                }
                flush(&c);
                schedule(&c, advice);
            }
        }
    });
    // Errors are followed by a close event, which decides what to do.
    let onerror = Closure::<dyn FnMut()>::new(|| {});
    ws.set_onopen(Some(onopen.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    ws.set_onclose(Some(onclose.as_ref().unchecked_ref()));
    ws.set_onerror(Some(onerror.as_ref().unchecked_ref()));
    let handlers: Vec<Counted<Box<dyn std::any::Any>>> = vec![
        Counted::new(Box::new(onopen)),
        Counted::new(Box::new(onmessage)),
        Counted::new(Box::new(onclose)),
        Counted::new(Box::new(onerror)),
    ];
    if let Some(link) = cache.link_mut().as_mut() {
        crate::cache::count_socket(true);
        link.socket = Some(Socket { ws, _handlers: handlers });
    }
}

fn on_message(weak: &WeakCache, e: MessageEvent) {
    let Some(c) = weak.upgrade() else { return };
    let data = e.data();
    let bytes = match data.dyn_ref::<ArrayBuffer>() {
        Some(buf) => Uint8Array::new(buf).to_vec(),
        // The protocol is binary; text frames are a broken stream.
        None => data.as_string().map(String::into_bytes).unwrap_or_default(),
    };
    let result = c.with_core(|core| core.on_message(&bytes, now_ms()));
    if let Err(why) = result {
        web_sys::console::error_1(&JsValue::from_str(&format!("recached: broken stream from the hub: {why}")));
        let socket = c.link_mut().as_mut().and_then(|l| l.socket.take());
        if let Some(socket) = socket {
            let _ = socket.ws.close_with_code_and_reason(CLOSE_PROTOCOL, "protocol error");
            drop(socket);
        }
        let advice = c.with_core(|core| core.on_close(CLOSE_PROTOCOL, now_ms()));
        flush(&c);
        schedule(&c, advice);
        return;
    }
    flush(&c);
}

/// Sends what the sync client queued, then delivers notices and settles promises.
pub(crate) fn flush(cache: &Cache) {
    while let Some(msg) = cache.with_core(|core| core.take_outgoing()) {
        let sent = cache.link_mut().as_ref().and_then(|l| l.socket.as_ref()).map(|s| s.send(&msg)).unwrap_or(false);
        if !sent {
            // Not open yet or gone: the client resends what matters on the next open.
            break;
        }
    }
    let live = cache.status() == crate::Status::Live;
    if live {
        if let Some(link) = cache.link_mut().as_mut() {
            link.attempt = 0;
        }
    }
    cache.settle_now();
}

/// Arranges the next connection attempt after a close.
fn schedule(cache: &Cache, advice: Reconnect) {
    let delay = {
        let mut link = cache.link_mut();
        let Some(link) = link.as_mut() else { return };
        let delay = match advice {
            Reconnect::Now => 0,
            Reconnect::Backoff => backoff_ms(link.attempt, js_sys::Math::random()),
            Reconnect::NewToken | Reconnect::Stop => {
                web_sys::console::error_1(&JsValue::from_str(
                    "recached: the hub refused this connection (token or origin); not reconnecting",
                ));
                return;
            }
        };
        link.attempt = link.attempt.saturating_add(1);
        delay
    };
    let weak = cache.downgrade();
    let timer = Timeout::new(delay, move || {
        if let Some(c) = weak.upgrade() {
            open(&c);
        }
    });
    if let Some(link) = cache.link_mut().as_mut() {
        link.retry = Some(Counted::new(timer));
    }
}
