//! [`Cache`]: the shared handle the JS class and the Leptos hooks both drive.
//!
//! It owns a [`CacheCore`] behind `Rc<RefCell<…>>`, reads the clock (`Date.now()`), keeps
//! one gloo-timers timeout armed at the engine's next key deadline, and delivers notices
//! after releasing its borrow — so a listener may read, write or close the cache. Notices
//! produced while listeners run are delivered by the same loop, in order.

use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use bytes::Bytes;
use gloo_timers::callback::Timeout;
use recached_engine::sync::Origin;
use recached_engine::Reply;

use crate::client::{self, Link};
use crate::tabs::{self, Route, Tabs};
use crate::core::{CacheCore, CacheError, CacheOptions, ConnectOptions, KeyListener, Settled, Status, StatusListener, Submitted};
use crate::registry::ListenerId;

/// `setTimeout` takes a signed 32-bit delay; a later deadline re-arms on wake-up.
const MAX_DELAY_MS: u64 = i32::MAX as u64;

thread_local! {
    static LIVE_CLOSURES: Cell<usize> = const { Cell::new(0) };
    static LIVE_SOCKETS: Cell<usize> = const { Cell::new(0) };
}

/// Hub WebSockets the caches of this page hold open (or opening), for tests: the tabs
/// sharing a channel hold one between them.
pub fn live_sockets() -> usize {
    LIVE_SOCKETS.with(Cell::get)
}

pub(crate) fn count_socket(open: bool) {
    LIVE_SOCKETS.with(|c| c.set(if open { c.get() + 1 } else { c.get().saturating_sub(1) }));
}

/// JS closures (timers, unsubscribe functions) this crate currently holds, for leak tests:
/// it returns to its old value once the caches that made them are closed.
pub fn live_closures() -> usize {
    LIVE_CLOSURES.with(Cell::get)
}

/// Counts a closure-holding value as live until it is dropped.
pub(crate) struct Counted<T>(pub(crate) T);

impl<T> Counted<T> {
    pub(crate) fn new(value: T) -> Counted<T> {
        LIVE_CLOSURES.with(|c| c.set(c.get() + 1));
        Counted(value)
    }
}

impl<T> Drop for Counted<T> {
    fn drop(&mut self) {
        LIVE_CLOSURES.with(|c| c.set(c.get() - 1));
    }
}

/// The current time in Unix ms.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

struct Inner {
    core: RefCell<CacheCore>,
    /// The armed expiry timer and the deadline it is for.
    timer: RefCell<Option<(u64, Counted<Timeout>)>>,
    /// Set while the delivery loop runs: nested calls leave their notices to it.
    delivering: Cell<bool>,
    /// Host-side objects tied to a key or status listener (the JS unsubscribe closure),
    /// dropped with it.
    attached: RefCell<HashMap<(bool, ListenerId), Box<dyn std::any::Any>>>,
    /// The hub connection, once `connect` was called.
    link: RefCell<Option<Link>>,
    /// Writes waiting for the hub's ack: what to do when they settle.
    writes: RefCell<HashMap<u64, WriteDone>>,
    /// Cross-tab sharing, when the cache names a channel.
    tabs: RefCell<Option<Tabs>>,
    /// The JS hot path's memo: key (a JS string) → the value `get` returned, for string
    /// keys without a TTL; every notice about a key removes it (see `js.rs` `get`).
    memo: RefCell<Option<js_sys::Map>>,
    /// With LRU/LFU under a cap: the keys of memo hits not yet counted by the engine (JS
    /// pushes them; [`Cache::note_reads`] hands them over in batches, and before writes).
    touched: RefCell<Option<js_sys::Array>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // JS may still hold the memo (the fast `get`): empty, it answers nothing stale.
        if let Some(memo) = self.memo.get_mut() {
            memo.clear();
        }
    }
}

/// Memo entries kept at most; past it the memo starts over (bounds the JS memory).
const MEMO_MAX: u32 = 10_000;

/// Memo hits recorded before they are handed to the engine (LRU/LFU under a cap). Between
/// batches only writes evict, and they hand the batch over first.
pub(crate) const TOUCHED_BATCH: u32 = 64;

/// Called once when a write settles.
pub type WriteDone = Box<dyn FnOnce(Settled)>;

/// A local cache in the browser: the engine in wasm memory, TTL timers, eviction, change
/// listeners. Cloning gives another handle to the same cache.
#[derive(Clone)]
pub struct Cache {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.inner.core.try_borrow() {
            Ok(core) => core.fmt(f),
            Err(_) => f.write_str("Cache { <busy> }"),
        }
    }
}

impl PartialEq for Cache {
    fn eq(&self, other: &Cache) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// A handle that does not keep the cache alive (held by closures the cache owns).
#[derive(Clone)]
pub struct WeakCache {
    inner: Weak<Inner>,
}

impl WeakCache {
    /// The cache, if a handle to it still exists.
    pub fn upgrade(&self) -> Option<Cache> {
        self.inner.upgrade().map(|inner| Cache { inner })
    }
}

impl Cache {
    /// A handle that does not keep the cache alive.
    pub fn downgrade(&self) -> WeakCache {
        WeakCache { inner: Rc::downgrade(&self.inner) }
    }

    /// A new local cache. Installs the panic hook first, so a panic reaches the console.
    /// With `options.channel`, it is shared with the caches of other tabs naming the same
    /// channel (see the `tabs` module).
    pub fn new(options: &CacheOptions) -> Result<Cache, CacheError> {
        console_error_panic_hook::set_once();
        let cache = Cache {
            inner: Rc::new(Inner {
                core: RefCell::new(CacheCore::new(options)),
                timer: RefCell::new(None),
                delivering: Cell::new(false),
                attached: RefCell::new(HashMap::new()),
                link: RefCell::new(None),
                writes: RefCell::new(HashMap::new()),
                tabs: RefCell::new(None),
                memo: RefCell::new(None),
                touched: RefCell::new(None),
            }),
        };
        if let Some(name) = options.channel.as_deref().filter(|n| !n.is_empty()) {
            tabs::start(&cache, name);
        }
        Ok(cache)
    }

    /// Lets the JS `get` memoize values. With LRU/LFU under a cap every read must count as
    /// an access, so memo hits are also recorded (see [`Cache::touched`]).
    pub(crate) fn enable_memo(&self) {
        let mut core = self.inner.core.borrow_mut();
        if core.is_closed() {
            return;
        }
        core.set_dirty_tracking(true);
        *self.inner.memo.borrow_mut() = Some(js_sys::Map::new());
        if !core.reads_are_free() {
            *self.inner.touched.borrow_mut() = Some(js_sys::Array::new());
        }
    }

    /// The array memo hits push their keys to, when reads count for eviction.
    pub(crate) fn touched(&self) -> Option<js_sys::Array> {
        self.inner.touched.borrow().clone()
    }

    /// Whether a direct read may skip the access bookkeeping (no LRU/LFU under a cap).
    pub(crate) fn reads_are_free(&self) -> bool {
        self.inner.core.borrow().reads_are_free()
    }

    /// Hands the recorded memo hits to the engine as reads (the JS `get` calls this every
    /// [`TOUCHED_BATCH`] hits; writes call it first, since eviction runs on writes).
    pub(crate) fn note_reads(&self) {
        let touched = self.inner.touched.borrow();
        let Some(touched) = touched.as_ref().filter(|t| t.length() > 0) else { return };
        let keys: Vec<String> = touched.iter().filter_map(|k| k.as_string()).collect();
        touched.set_length(0);
        self.inner.core.borrow_mut().note_reads(&keys, now_ms());
    }

    /// Remembers what `get(key)` answered (a string key with no TTL).
    pub(crate) fn memo_set(&self, key: &wasm_bindgen::JsValue, value: &wasm_bindgen::JsValue) {
        if let Some(memo) = self.inner.memo.borrow().as_ref() {
            if memo.size() >= MEMO_MAX {
                memo.clear();
            }
            memo.set(key, value);
        }
    }

    /// Whether `get` memoizes what it answers.
    pub(crate) fn memo_enabled(&self) -> bool {
        self.inner.memo.borrow().is_some()
    }

    /// The memo itself, for the JS-side fast `get`.
    pub(crate) fn memo_map(&self) -> Option<js_sys::Map> {
        self.inner.memo.borrow().clone()
    }

    /// A live string key's value and whether it has a TTL, without the command machinery.
    pub(crate) fn peek_string(&self, key: &[u8]) -> Option<(Bytes, bool)> {
        self.inner.core.borrow().peek_string(key, now_ms())
    }

    /// [`Cache::peek_string`] counting the read for LRU/LFU, as `GET` would.
    pub(crate) fn read_string(&self, key: &[u8]) -> Option<(Bytes, bool)> {
        self.inner.core.borrow_mut().read_string(key, now_ms())
    }

    /// Drops changed keys from the memo, at once: a listener reading a key written in the
    /// same delivery must not see its old value.
    fn invalidate(&self) {
        let memo = self.inner.memo.borrow();
        let Some(memo) = memo.as_ref() else { return };
        let Some(dirty) = self.inner.core.borrow_mut().take_dirty() else { return };
        if dirty.whole {
            memo.clear();
        } else {
            for k in dirty.keys {
                memo.delete(&wasm_bindgen::JsValue::from_str(&String::from_utf8_lossy(&k)));
            }
        }
    }

    pub(crate) fn tabs_mut(&self) -> RefMut<'_, Option<Tabs>> {
        self.inner.tabs.borrow_mut()
    }

    /// This cache's part among the tabs sharing its channel: `None` when it shares none.
    pub fn tab_role(&self) -> Option<tabs::Role> {
        self.inner.tabs.borrow().as_ref().map(|t| t.role)
    }

    /// Runs any command now (reads answer from memory, writes apply at once), delivers the
    /// notices it caused and re-arms the expiry timer.
    pub fn run(&self, args: &[Bytes]) -> Reply {
        match tabs::route(self, || tabs::is_write(args)) {
            Route::Here => {}
            Route::Forward => return tabs::forward(self, vec![args.to_vec()], false, None),
            Route::Queue => return tabs::queue(self, vec![args.to_vec()], false, None),
        }
        self.note_reads();
        let reply = self.inner.core.borrow_mut().execute(args, now_ms());
        self.settle();
        reply
    }

    /// [`Cache::run`] from anything byte-like: `cache.cmd(&["SET", "k", "v"])`.
    pub fn cmd<A: AsRef<[u8]>>(&self, args: &[A]) -> Reply {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_ref())).collect();
        self.run(&args)
    }

    /// Runs commands as one transaction; the reply is EXEC's (optimistic with a hub).
    pub fn transaction(&self, commands: &[Vec<Bytes>]) -> Reply {
        match tabs::route(self, || commands.iter().any(|c| tabs::is_write(c))) {
            Route::Here => {}
            Route::Forward => return tabs::forward(self, commands.to_vec(), true, None),
            Route::Queue => return tabs::queue(self, commands.to_vec(), true, None),
        }
        self.note_reads();
        let out = self.inner.core.borrow_mut().transaction(commands, now_ms());
        self.after_submit();
        match out {
            Submitted::Done(r) | Submitted::Pending { optimistic: r, .. } => r,
        }
    }

    /// Runs a command; `done` hears how it ended: at once for reads and local writes, on
    /// the hub's ack (or refusal, after rollback) for writes to a hub-backed cache.
    pub fn write(&self, args: &[Bytes], done: impl FnOnce(Settled) + 'static) {
        match tabs::route(self, || tabs::is_write(args)) {
            Route::Here => {}
            Route::Forward => {
                tabs::forward(self, vec![args.to_vec()], false, Some(Box::new(done)));
                return;
            }
            Route::Queue => {
                tabs::queue(self, vec![args.to_vec()], false, Some(Box::new(done)));
                return;
            }
        }
        self.note_reads();
        let out = self.inner.core.borrow_mut().submit(args, now_ms());
        self.finish(out, Box::new(done));
    }

    /// [`Cache::write`] for a transaction.
    pub fn write_transaction(&self, commands: &[Vec<Bytes>], done: impl FnOnce(Settled) + 'static) {
        match tabs::route(self, || commands.iter().any(|c| tabs::is_write(c))) {
            Route::Here => {}
            Route::Forward => {
                tabs::forward(self, commands.to_vec(), true, Some(Box::new(done)));
                return;
            }
            Route::Queue => {
                tabs::queue(self, commands.to_vec(), true, Some(Box::new(done)));
                return;
            }
        }
        self.note_reads();
        let out = self.inner.core.borrow_mut().transaction(commands, now_ms());
        self.finish(out, Box::new(done));
    }

    /// Runs a write in this cache, bypassing the tab routing (the leader tab running a
    /// follower's write, or its own held ones), made for `origin` when it is another tab's
    /// so a hub runs it once whichever leader sends it (tabs.rs).
    pub(crate) fn write_as(&self, commands: &[Vec<Bytes>], tx: bool, origin: Option<Origin>, done: WriteDone) {
        let now = now_ms();
        let out = {
            let mut core = self.inner.core.borrow_mut();
            match (tx, commands.first()) {
                (true, _) => core.transaction_as(commands, origin, now),
                (false, Some(args)) => core.submit_as(args, origin, now),
                (false, None) => return,
            }
        };
        self.finish(out, done);
    }

    fn finish(&self, out: Submitted, done: WriteDone) {
        match out {
            Submitted::Done(reply) => {
                self.after_submit();
                done(Settled::Local(reply));
            }
            Submitted::Pending { seq, .. } => {
                self.inner.writes.borrow_mut().insert(seq, done);
                self.after_submit();
            }
        }
    }

    /// After a command: send what the sync client queued, deliver notices.
    fn after_submit(&self) {
        self.settle();
    }

    /// Mirrors a hub: the local keys are replaced by the hub's for `patterns`, writes
    /// settle on the hub's ack, and the connection is kept up with jittered exponential
    /// backoff over `urls`. Connecting again replaces the connection (pending writes of
    /// the old one are refused).
    ///
    /// A cache sharing a channel leaves the socket to the leader tab: a follower keeps the
    /// options (it connects with them if it becomes the leader) and reports the leader's
    /// status.
    pub fn connect(&self, options: &ConnectOptions) {
        if self.is_closed() || tabs::connect(self, options) {
            return;
        }
        self.connect_now(options);
    }

    pub(crate) fn connect_now(&self, options: &ConnectOptions) {
        let old = self.inner.link.borrow_mut().take();
        drop(old);
        self.refuse_writes("ERR the connection was replaced");
        let client_id = random_id();
        self.inner.core.borrow_mut().connect(options, client_id);
        *self.inner.link.borrow_mut() = Some(Link::new(options.urls.clone()));
        client::open(self);
        client::flush(self);
    }

    fn refuse_writes(&self, why: &str) {
        let writes: Vec<WriteDone> = self.inner.writes.borrow_mut().drain().map(|(_, d)| d).collect();
        for done in writes {
            done(Settled::Refused(why.to_string()));
        }
    }

    pub(crate) fn with_core<R>(&self, f: impl FnOnce(&mut CacheCore) -> R) -> R {
        f(&mut self.inner.core.borrow_mut())
    }

    pub(crate) fn link_mut(&self) -> RefMut<'_, Option<Link>> {
        self.inner.link.borrow_mut()
    }

    /// Writes still waiting for the hub (or, in a follower tab, for the leader's answer).
    pub fn pending_writes(&self) -> usize {
        let relayed = self.inner.tabs.borrow().as_ref().map_or(0, |t| t.waiting());
        self.inner.writes.borrow().len() + relayed
    }

    /// The value of a string key.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Bytes> {
        let value = self.inner.core.borrow_mut().get(key.as_ref(), now_ms());
        self.settle();
        value
    }

    /// The value of a string key as text (lossy for non-UTF-8 bytes).
    pub fn get_string(&self, key: impl AsRef<[u8]>) -> Option<String> {
        self.get(key).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Whether a key exists.
    pub fn exists(&self, key: impl AsRef<[u8]>) -> bool {
        let found = self.inner.core.borrow_mut().exists(key.as_ref(), now_ms());
        self.settle();
        found
    }

    /// A hash's fields and values.
    pub fn hgetall(&self, key: impl AsRef<[u8]>) -> Vec<(Bytes, Bytes)> {
        let pairs = self.inner.core.borrow_mut().hgetall(key.as_ref(), now_ms());
        self.settle();
        pairs
    }

    /// The keys matching a glob pattern, sorted.
    pub fn keys(&self, pattern: impl AsRef<[u8]>) -> Vec<Bytes> {
        let keys = self.inner.core.borrow_mut().keys(pattern.as_ref(), now_ms());
        self.settle();
        keys
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.inner.core.borrow().engine().key_count()
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The engine's memory accounting, in bytes.
    pub fn used_memory(&self) -> usize {
        self.inner.core.borrow().engine().used_memory()
    }

    /// The engine's counters (hits, misses, expired and evicted keys: Redis's `INFO stats`),
    /// with the reads the JS `get` answered from its memo counted.
    pub fn stats(&self) -> recached_engine::Stats {
        self.note_reads();
        self.inner.core.borrow().engine().stats().clone()
    }

    /// The status (`offline` for a local cache).
    pub fn status(&self) -> Status {
        self.inner.core.borrow().status()
    }

    /// Calls `listener` with every change to a key matching `pattern` (Redis glob; a
    /// pattern with no metacharacter watches one key through a per-key index). `None` once
    /// the cache is closed.
    pub fn on(&self, pattern: impl AsRef<[u8]>, listener: KeyListener) -> Option<ListenerId> {
        self.inner.core.borrow_mut().on(pattern.as_ref(), listener)
    }

    /// Stops a key listener; the listener (and what it holds) is dropped here.
    pub fn off(&self, id: ListenerId) {
        let listener = self.inner.core.borrow_mut().off(id);
        let attached = self.inner.attached.borrow_mut().remove(&(false, id));
        drop((listener, attached));
    }

    /// Calls `listener` whenever the status changes.
    pub fn on_status(&self, listener: StatusListener) -> Option<ListenerId> {
        self.inner.core.borrow_mut().on_status(listener)
    }

    /// Stops a status listener.
    pub fn off_status(&self, id: ListenerId) {
        let listener = self.inner.core.borrow_mut().off_status(id);
        let attached = self.inner.attached.borrow_mut().remove(&(true, id));
        drop((listener, attached));
    }

    /// Keeps `value` (a JS closure) alive as long as the listener `id` is registered.
    pub(crate) fn attach(&self, status: bool, id: ListenerId, value: Box<dyn std::any::Any>) {
        self.inner.attached.borrow_mut().insert((status, id), value);
    }

    /// Number of key listeners.
    pub fn listener_count(&self) -> usize {
        self.inner.core.borrow().listener_count()
    }

    /// Closes the cache: frees its data, cancels its timer, tells status listeners
    /// `closed`, then releases every listener and closure it held. Idempotent.
    pub fn close(&self) {
        if self.is_closed() {
            return;
        }
        // A leader's answers to follower writes stop here: those tabs resend them to the
        // next leader. A follower's own writes in flight are refused.
        let forwarded = match self.inner.tabs.borrow_mut().as_mut() {
            Some(t) => {
                t.closing = true;
                t.take_forwarded()
            }
            None => Vec::new(),
        };
        for done in forwarded {
            done(Settled::Refused(crate::core::CLOSED.to_string()));
        }
        let link = self.inner.link.borrow_mut().take();
        drop(link);
        self.refuse_writes(crate::core::CLOSED);
        // Releases the lock (the next tab leads) and the channel's closures.
        let tabs = self.inner.tabs.borrow_mut().take();
        drop(tabs);
        if let Some(memo) = self.inner.memo.borrow_mut().take() {
            memo.clear();
        }
        self.inner.touched.borrow_mut().take();
        let (keys, statuses) = self.inner.core.borrow_mut().close();
        let timer = self.inner.timer.borrow_mut().take();
        for l in &statuses {
            l(Status::Closed);
        }
        let attached = std::mem::take(&mut *self.inner.attached.borrow_mut());
        drop((keys, statuses, timer, attached));
    }

    /// Whether the cache was closed.
    pub fn is_closed(&self) -> bool {
        self.inner.core.borrow().is_closed()
    }

    /// Delivers pending notices and status changes (outside the borrow), then re-arms
    /// the timer. Re-entrant calls return at once: the outer loop picks their notices up.
    fn settle(&self) {
        if self.inner.link.borrow().is_some() {
            // Sends what the sync client queued, then comes back to settle_now.
            client::flush(self);
        } else {
            self.settle_now();
        }
    }

    /// [`Cache::settle`], also settling the writes the hub answered.
    pub(crate) fn settle_now(&self) {
        self.invalidate();
        if self.inner.delivering.get() {
            return;
        }
        self.inner.delivering.set(true);
        loop {
            let (status, batch, settled, problems) = {
                let mut core = self.inner.core.borrow_mut();
                if !core.has_dispatch() {
                    break;
                }
                (core.take_status_dispatch(), core.take_dispatch(), core.take_settled(), core.take_problems())
            };
            for p in problems {
                web_sys::console::error_1(&wasm_bindgen::JsValue::from_str(&format!("recached: {p}")));
            }
            if let Some((status, listeners)) = status {
                for (id, l) in listeners {
                    if self.inner.core.borrow().is_status_listening(id) {
                        l(status);
                    }
                }
            }
            for (id, l, notice) in batch {
                if self.inner.core.borrow().is_listening(id) {
                    l(&notice);
                }
            }
            for (seq, outcome) in settled {
                let done = self.inner.writes.borrow_mut().remove(&seq);
                if let Some(done) = done {
                    done(outcome);
                }
            }
        }
        self.inner.delivering.set(false);
        if self.inner.tabs.borrow().is_some() {
            tabs::after_settle(self);
        }
        self.arm();
    }

    /// Keeps the timer at the engine's next deadline.
    fn arm(&self) {
        let next = self.inner.core.borrow().next_deadline();
        let mut timer = self.inner.timer.borrow_mut();
        match next {
            None => *timer = None,
            Some(at) if timer.as_ref().map(|(t, _)| *t) == Some(at) => {}
            Some(at) => {
                let delay = at.saturating_sub(now_ms()).min(MAX_DELAY_MS) as u32;
                let weak: Weak<Inner> = Rc::downgrade(&self.inner);
                let timeout = Timeout::new(delay, move || {
                    if let Some(inner) = weak.upgrade() {
                        Cache { inner }.on_timer();
                    }
                });
                *timer = Some((at, Counted::new(timeout)));
            }
        }
    }

    fn on_timer(&self) {
        // The fired timeout is dropped after this call returns to JS (wasm-bindgen defers
        // freeing a closure that is running).
        let fired = self.inner.timer.borrow_mut().take();
        self.inner.core.borrow_mut().tick(now_ms());
        self.after_submit();
        drop(fired);
    }
}

/// A random id (`A-Za-z0-9`, 20 characters): a connection's client id, a tab's id.
pub(crate) fn random_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..20).map(|_| ALPHABET[(js_sys::Math::random() * ALPHABET.len() as f64) as usize % ALPHABET.len()] as char).collect()
}
