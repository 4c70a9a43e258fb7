//! Cross-tab sharing: the caches of one origin that name the same channel act as one.
//!
//! One cache — the **leader**, the holder of a Web Lock named after the channel — owns the
//! state: it alone holds the hub's WebSocket (when `connect` was called) and executes
//! every write. The others are **followers**: mirrors of the leader's keys, kept current
//! over a `BroadcastChannel`. A follower answers reads from its own wasm memory, applies
//! its writes at once (optimistically) and sends them to the leader, whose answer settles
//! the promise and carries the written keys' values (a rollback when refused). A new
//! follower asks for the state (`hello`) and the leader answers with a snapshot. The lock
//! is held for the leader's life, so when its tab closes the browser hands it to the next
//! waiting tab, which connects and announces itself; followers then resend writes still
//! unanswered. A follower's write reaches the hub under the follower's identity (`SYNC.W
//! AS <tab id> <write id>`) whichever leader sends it, so one the old leader sent but
//! never answered runs once. The messages are specified in docs/protocol.md §13.
//!
//! Every JS closure (the channel's `onmessage`, the lock callback) lives in [`Tabs`]; its
//! `Drop` detaches them, closes the channel and releases the lock.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use js_sys::{Object, Reflect, Uint8Array};
use recached_engine::sync::message::valid_client_id;
use recached_engine::sync::Origin;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{BroadcastChannel, MessageEvent};

use crate::cache::{now_ms, Cache, Counted, WeakCache, WriteDone};
use crate::core::{CacheCore, ConnectOptions, Settled, Status, CLOSED};
use crate::wire;

/// The channel protocol version (`v` in every message).
pub const VERSION: u32 = 1;

/// Writes a leader remembers per follower, to ignore the same write sent twice (a follower
/// resends what is unanswered when a new leader announces itself).
const DEDUPE: usize = 256;

#[wasm_bindgen(inline_js = r#"
export function recachedTabLock(name, onRole) {
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks || typeof locks.request !== "function") return null;
  let release = null;
  let done = false;
  const held = new Promise((resolve) => { release = resolve; });
  const abort = typeof AbortController === "function" ? new AbortController() : null;
  const lead = () => { if (done) return undefined; onRole(true); return held; };
  locks.request(name, { ifAvailable: true }, (lock) => {
    if (done) return undefined;
    if (lock) return lead();
    onRole(false);
    locks.request(name, abort ? { signal: abort.signal } : {}, lead).catch(() => {});
    return undefined;
  }).catch(() => {});
  return () => { done = true; release(); if (abort) abort.abort(); };
}
"#)]
extern "C" {
    /// Asks for the lock `name`: `onRole(true)` when this cache holds it (now or later, after
    /// the holder leaves), `onRole(false)` at once when another holds it. Returns the
    /// function that releases (or stops waiting for) it; `null` without Web Locks.
    #[wasm_bindgen(js_name = recachedTabLock)]
    fn tab_lock(name: &str, on_role: &JsValue) -> JsValue;
}

/// What this cache is among the tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the lock's answer (a few ms after creation): writes wait.
    Pending,
    /// Holds the lock: the state, the hub connection, the writes of every tab.
    Leader,
    /// Mirrors the leader; writes go through it.
    Follower,
}

impl Role {
    /// The name JS sees (`cache.tabRole`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Pending => "pending",
            Role::Leader => "leader",
            Role::Follower => "follower",
        }
    }
}

/// A write made before the role was known.
struct Queued {
    commands: Vec<Vec<Bytes>>,
    tx: bool,
    done: Option<WriteDone>,
}

/// A follower's write sent to the leader and not yet answered.
struct Forwarded {
    commands: Vec<Vec<Bytes>>,
    tx: bool,
    keys: Vec<Bytes>,
    optimistic: recached_engine::Reply,
    done: Option<WriteDone>,
}

/// The cross-tab state of one cache, and every closure it lent to JS.
pub(crate) struct Tabs {
    id: String,
    channel: BroadcastChannel,
    release: JsValue,
    _closures: Vec<Counted<Box<dyn std::any::Any>>>,
    pub(crate) role: Role,
    /// What `connect` asked for; the leader connects with it (also after a takeover).
    connect: Option<ConnectOptions>,
    queue: Vec<Queued>,
    forwarded: HashMap<u64, Forwarded>,
    /// Keys with a forwarded write in flight, and how many: updates to them from the
    /// leader wait for the write's answer, which carries their value.
    in_flight: HashMap<Bytes, usize>,
    next_id: u64,
    leader: Option<String>,
    heard_status: bool,
    /// The status last told to the followers (leader).
    sent_status: Option<Status>,
    /// Writes of each follower already run (leader).
    handled: HashMap<String, VecDeque<u64>>,
    /// Set by `close`: writes refused because this cache goes away are not answered (the
    /// followers resend them to the next leader).
    pub(crate) closing: bool,
}

impl Drop for Tabs {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
        if let Some(release) = self.release.dyn_ref::<js_sys::Function>() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

impl Tabs {
    /// This follower's writes not yet answered, and writes held until the role is known.
    pub(crate) fn waiting(&self) -> usize {
        self.forwarded.len() + self.queue.len()
    }

    /// Follower writes still waiting for the leader (their promises are open).
    pub(crate) fn take_forwarded(&mut self) -> Vec<WriteDone> {
        self.in_flight.clear();
        let mut all: Vec<(u64, Forwarded)> = self.forwarded.drain().collect();
        all.sort_by_key(|(id, _)| *id);
        let mut out: Vec<WriteDone> = all.into_iter().filter_map(|(_, f)| f.done).collect();
        out.extend(self.queue.drain(..).filter_map(|q| q.done));
        out
    }
}

/// Starts sharing `cache` over the channel `name`. Without BroadcastChannel or Web Locks
/// (an insecure context, an old browser) the cache stays on its own.
pub(crate) fn start(cache: &Cache, name: &str) {
    let Ok(channel) = BroadcastChannel::new(name) else {
        web_sys::console::warn_1(&JsValue::from_str("recached: no BroadcastChannel here; the cache is not shared between tabs"));
        return;
    };
    let weak = cache.downgrade();
    let onmessage = Closure::<dyn FnMut(MessageEvent)>::new({
        let weak = weak.clone();
        move |e: MessageEvent| on_message(&weak, e.data())
    });
    let onrole = Closure::<dyn FnMut(bool)>::new({
        let weak = weak.clone();
        move |lead: bool| {
            if let Some(c) = weak.upgrade() {
                if lead {
                    become_leader(&c);
                } else {
                    become_follower(&c);
                }
            }
        }
    });
    let release = tab_lock(&format!("recached:{name}"), onrole.as_ref());
    if release.is_null() {
        channel.close();
        web_sys::console::warn_1(&JsValue::from_str("recached: no Web Locks here (insecure context?); the cache is not shared between tabs"));
        return;
    }
    channel.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
    let tabs = Tabs {
        id: crate::cache::random_id(),
        channel,
        release,
        _closures: vec![Counted::new(Box::new(onmessage)), Counted::new(Box::new(onrole))],
        role: Role::Pending,
        connect: None,
        queue: Vec::new(),
        forwarded: HashMap::new(),
        in_flight: HashMap::new(),
        next_id: 1,
        leader: None,
        heard_status: false,
        sent_status: None,
        handled: HashMap::new(),
        closing: false,
    };
    let hello = message("hello", &tabs.id);
    let _ = tabs.channel.post_message(&hello);
    *cache.tabs_mut() = Some(tabs);
    cache.with_core(|core| core.set_tap(true));
}

fn message(kind: &str, from: &str) -> Object {
    let o = Object::new();
    set(&o, "v", JsValue::from(VERSION));
    set(&o, "kind", JsValue::from_str(kind));
    set(&o, "from", JsValue::from_str(from));
    o
}

fn set(o: &Object, key: &str, value: JsValue) {
    let _ = Reflect::set(o, &JsValue::from_str(key), &value);
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn bytes(o: &JsValue, key: &str) -> Option<Vec<u8>> {
    get(o, key).dyn_into::<Uint8Array>().ok().map(|a| a.to_vec())
}

fn post(cache: &Cache, msg: &Object) {
    if let Some(t) = cache.tabs_mut().as_ref() {
        let _ = t.channel.post_message(msg);
    }
}

fn my_id(cache: &Cache) -> Option<String> {
    cache.tabs_mut().as_ref().map(|t| t.id.clone())
}

/// Where a command goes, by this cache's role.
pub(crate) enum Route {
    /// Run here (no channel, the leader, or a read).
    Here,
    /// A follower's write: apply here, send to the leader.
    Forward,
    /// The role is not known yet: hold the write.
    Queue,
}

pub(crate) fn route(cache: &Cache, is_write: impl FnOnce() -> bool) -> Route {
    let role = match cache.tabs_mut().as_ref() {
        None => return Route::Here,
        Some(t) => t.role,
    };
    match role {
        Role::Leader => Route::Here,
        _ if !is_write() => Route::Here,
        Role::Follower => Route::Forward,
        Role::Pending => Route::Queue,
    }
}

/// Holds a write until the role is known.
pub(crate) fn queue(cache: &Cache, commands: Vec<Vec<Bytes>>, tx: bool, done: Option<WriteDone>) -> recached_engine::Reply {
    if let Some(t) = cache.tabs_mut().as_mut() {
        t.queue.push(Queued { commands, tx, done });
    }
    recached_engine::Reply::Simple("QUEUED".into())
}

/// A follower's write: applied here at once, sent to the leader; `done` hears the leader's
/// answer.
pub(crate) fn forward(cache: &Cache, commands: Vec<Vec<Bytes>>, tx: bool, done: Option<WriteDone>) -> recached_engine::Reply {
    let now = now_ms();
    let (optimistic, keys) = cache.with_core(|core| {
        core.take_tap();
        let out = if tx { core.transaction(&commands, now) } else { core.submit(&commands[0], now) };
        let reply = match out {
            crate::core::Submitted::Done(r) | crate::core::Submitted::Pending { optimistic: r, .. } => r,
        };
        (reply, core.take_tap().keys)
    });
    let msg = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return optimistic };
        let id = t.next_id;
        t.next_id += 1;
        for k in &keys {
            *t.in_flight.entry(k.clone()).or_insert(0) += 1;
        }
        let msg = write_message(&t.id, id, &commands, tx, &keys);
        t.forwarded.insert(id, Forwarded { commands, tx, keys, optimistic: optimistic.clone(), done });
        msg
    };
    post(cache, &msg);
    cache.settle_now();
    optimistic
}

fn write_message(from: &str, id: u64, commands: &[Vec<Bytes>], tx: bool, keys: &[Bytes]) -> Object {
    let msg = message("write", from);
    set(&msg, "id", JsValue::from_f64(id as f64));
    set(&msg, "tx", JsValue::from_bool(tx));
    set(&msg, "commands", Uint8Array::from(&wire::encode_arrays(commands.iter().map(|c| &c[..]))[..]).into());
    let keys = if keys.is_empty() { Vec::new() } else { wire::encode_arrays([keys]) };
    set(&msg, "keys", Uint8Array::from(&keys[..]).into());
    msg
}

/// `connect` on a cache that shares a channel: only the leader opens the socket.
pub(crate) fn connect(cache: &Cache, options: &ConnectOptions) -> bool {
    let role = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return false };
        t.connect = Some(options.clone());
        (t.role, t.heard_status)
    };
    match role {
        (Role::Leader, _) => false,
        (_, heard) => {
            if !heard {
                cache.with_core(|core| core.set_status(Status::Connecting));
                cache.settle_now();
            }
            true
        }
    }
}

fn become_follower(cache: &Cache) {
    let queued = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return };
        if t.role != Role::Pending {
            return;
        }
        t.role = Role::Follower;
        std::mem::take(&mut t.queue)
    };
    cache.with_core(|core| core.set_mirror(true));
    for q in queued {
        forward(cache, q.commands, q.tx, q.done);
    }
    cache.settle_now();
}

fn become_leader(cache: &Cache) {
    let (queued, forwarded, connect, id) = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return };
        if t.role == Role::Leader {
            return;
        }
        t.role = Role::Leader;
        t.leader = Some(t.id.clone());
        t.in_flight.clear();
        let mut forwarded: Vec<(u64, Forwarded)> = t.forwarded.drain().collect();
        forwarded.sort_by_key(|(id, _)| *id);
        (std::mem::take(&mut t.queue), forwarded, t.connect.clone(), t.id.clone())
    };
    cache.with_core(|core| core.set_mirror(false));
    post(cache, &message("leader", &id));
    match connect {
        Some(options) => {
            // The hub is the state: connecting replaces the mirror; writes the old leader
            // never answered are sent again through this tab's own connection, under the
            // identity the old leader sent them with, so the hub runs each once.
            cache.connect_now(&options);
            for (fid, f) in forwarded {
                run_here(cache, f.commands, f.tx, f.done, origin_of(&id, fid));
            }
        }
        None => {
            // No hub: this tab's keys (its writes included) are now the state.
            for (_, f) in forwarded {
                if let Some(done) = f.done {
                    done(Settled::Local(f.optimistic));
                }
            }
            post_state(cache, None);
        }
    }
    for q in queued {
        run_here(cache, q.commands, q.tx, q.done, None);
    }
    cache.settle_now();
}

/// Runs a write in this (leading) cache; `origin` names the follower tab it is for.
fn run_here(cache: &Cache, commands: Vec<Vec<Bytes>>, tx: bool, done: Option<WriteDone>, origin: Option<Origin>) {
    let done = done.unwrap_or_else(|| Box::new(|_| {}));
    cache.write_as(&commands, tx, origin, done);
}

/// The identity a follower's write `id` runs under at the hub (`SYNC.W AS <tab> <id>`,
/// docs/protocol.md §13.2): the follower's tab id, stable for its life, and its write id,
/// which increases per tab. Any leader that runs the write — the one it was sent to, or
/// the follower itself after it took over — sends the same, so the hub runs it once.
/// (The hub keeps origin ids apart from client ids, so the leader's own sync client seqs
/// never meet these.) A tab id that is not a valid origin id (from another
/// implementation) runs as a plain write.
fn origin_of(tab: &str, id: u64) -> Option<Origin> {
    (id >= 1 && valid_client_id(tab.as_bytes())).then(|| Origin { id: Bytes::copy_from_slice(tab.as_bytes()), seq: id })
}

/// A `state` or `status` message: the leader's status and the clock offset its keys'
/// deadlines run on (hub − local ms), which the followers take as theirs.
fn status_message(kind: &str, from: &str, status: Status, clock: i64) -> Object {
    let msg = message(kind, from);
    set(&msg, "status", JsValue::from_str(status.name()));
    set(&msg, "clock", JsValue::from_f64(clock as f64));
    msg
}

/// Sends the whole state (to one new tab, or to all).
fn post_state(cache: &Cache, to: Option<&str>) {
    let Some(id) = my_id(cache) else { return };
    let (snapshot, status, clock) = cache.with_core(|core| (core.snapshot(), core.status(), core.clock_offset()));
    let msg = status_message("state", &id, status, clock);
    if let Some(to) = to {
        set(&msg, "to", JsValue::from_str(to));
    }
    set(&msg, "snapshot", Uint8Array::from(&snapshot[..]).into());
    post(cache, &msg);
    if let Some(t) = cache.tabs_mut().as_mut() {
        t.sent_status = Some(status);
    }
}

/// After a leader delivered its notices: tells the followers what changed.
pub(crate) fn after_settle(cache: &Cache) {
    let leading = matches!(cache.tabs_mut().as_ref().map(|t| t.role), Some(Role::Leader));
    let (tapped, status, synced) = cache.with_core(|core| (core.take_tap(), core.status(), core.is_synced()));
    if !leading || status == Status::Closed {
        return;
    }
    let sent = cache.tabs_mut().as_ref().and_then(|t| t.sent_status);
    let became_live = status == Status::Live && sent != Some(Status::Live);
    // A hub mirror that is catching up holds a partial state: the followers keep theirs
    // until it is live.
    if became_live || (tapped.whole && (!synced || status == Status::Live)) {
        post_state(cache, None);
        return;
    }
    let Some(id) = my_id(cache) else { return };
    if !tapped.keys.is_empty() {
        let changes = cache.with_core(|core| core.restore_changes(&tapped.keys));
        let msg = message("changes", &id);
        set(&msg, "changes", Uint8Array::from(&wire::encode_changes(&changes)[..]).into());
        post(cache, &msg);
    }
    if sent != Some(status) {
        let clock = cache.with_core(|core| core.clock_offset());
        post(cache, &status_message("status", &id, status, clock));
        if let Some(t) = cache.tabs_mut().as_mut() {
            t.sent_status = Some(status);
        }
    }
}

fn status_of(name: &str) -> Option<Status> {
    Some(match name {
        "offline" => Status::Offline,
        "connecting" => Status::Connecting,
        "resyncing" => Status::Resyncing,
        "live" => Status::Live,
        _ => return None,
    })
}

fn on_message(weak: &WeakCache, data: JsValue) {
    let Some(cache) = weak.upgrade() else { return };
    if get(&data, "v").as_f64() != Some(VERSION as f64) {
        return;
    }
    let kind = get(&data, "kind").as_string().unwrap_or_default();
    let from = get(&data, "from").as_string().unwrap_or_default();
    let (me, role) = match cache.tabs_mut().as_ref() {
        Some(t) => (t.id.clone(), t.role),
        None => return,
    };
    if let Some(to) = get(&data, "to").as_string() {
        if to != me {
            return;
        }
    }
    match (kind.as_str(), role) {
        ("hello", Role::Leader) => post_state(&cache, Some(&from)),
        ("write", Role::Leader) => on_write(&cache, &from, &data),
        ("state", Role::Pending | Role::Follower) => on_state(&cache, &from, &data),
        ("changes", Role::Pending | Role::Follower) => {
            let Some(changes) = bytes(&data, "changes").and_then(|b| wire::decode_changes(&b).ok()) else { return };
            note_leader(&cache, &from);
            apply(&cache, &changes);
        }
        ("status", Role::Pending | Role::Follower) => {
            note_leader(&cache, &from);
            note_clock(&cache, &data);
            if let Some(s) = get(&data, "status").as_string().and_then(|s| status_of(&s)) {
                set_status(&cache, s);
            }
        }
        ("leader", Role::Pending | Role::Follower) => note_leader(&cache, &from),
        ("done", Role::Pending | Role::Follower) => on_done(&cache, &data),
        _ => {}
    }
}

/// Most a clock offset may be (a year): anything else in `clock` is ignored.
const MAX_CLOCK_OFFSET_MS: f64 = 366.0 * 86_400_000.0;

/// Takes the leader's clock offset from a `state` or `status` message: this tab's copies
/// of its keys then expire on the hub's deadlines (the leader's sync client measured the
/// offset; the tabs of one browser share its clock).
fn note_clock(cache: &Cache, data: &JsValue) {
    if let Some(ms) = get(data, "clock").as_f64().filter(|ms| ms.is_finite() && ms.abs() <= MAX_CLOCK_OFFSET_MS) {
        cache.with_core(|core| core.set_clock_offset(ms as i64));
    }
}

fn set_status(cache: &Cache, status: Status) {
    if let Some(t) = cache.tabs_mut().as_mut() {
        t.heard_status = true;
    }
    cache.with_core(|core| core.set_status(status));
    cache.settle_now();
}

/// A message from `from`, the leader: a new leader gets the writes still unanswered.
fn note_leader(cache: &Cache, from: &str) {
    let resend = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return };
        if t.leader.as_deref() == Some(from) {
            return;
        }
        let first = t.leader.is_none();
        t.leader = Some(from.to_string());
        let mut ids: Vec<u64> = t.forwarded.keys().copied().collect();
        ids.sort_unstable();
        if first && ids.is_empty() {
            return;
        }
        ids.iter().filter_map(|id| t.forwarded.get(id).map(|f| write_message(&t.id, *id, &f.commands, f.tx, &f.keys))).collect::<Vec<_>>()
    };
    for msg in resend {
        post(cache, &msg);
    }
}

fn apply(cache: &Cache, changes: &[recached_engine::Change]) {
    let now = now_ms();
    let tabs = cache.tabs_mut();
    let Some(t) = tabs.as_ref() else { return };
    let in_flight = &t.in_flight;
    cache.with_core(|core| core.apply_remote(changes, |k| in_flight.contains_key(k), now));
    drop(tabs);
    cache.settle_now();
}

fn on_state(cache: &Cache, from: &str, data: &JsValue) {
    let Some(snapshot) = bytes(data, "snapshot") else { return };
    note_leader(cache, from);
    note_clock(cache, data);
    let result = {
        let tabs = cache.tabs_mut();
        let Some(t) = tabs.as_ref() else { return };
        let in_flight = &t.in_flight;
        cache.with_core(|core| core.load_snapshot(&snapshot, |k| in_flight.contains_key(k)))
    };
    if let Err(e) = result {
        web_sys::console::error_1(&JsValue::from_str(&format!("recached: a snapshot from another tab was refused: {e}")));
    }
    match get(data, "status").as_string().and_then(|s| status_of(&s)) {
        Some(s) => set_status(cache, s),
        None => cache.settle_now(),
    }
}

/// The leader runs a follower's write; the answer carries the written keys' values.
fn on_write(cache: &Cache, from: &str, data: &JsValue) {
    let Some(id) = get(data, "id").as_f64().map(|n| n as u64) else { return };
    let Some(commands) = bytes(data, "commands").and_then(|b| wire::decode_arrays(&b).ok()) else { return };
    let keys = bytes(data, "keys").and_then(|b| wire::decode_arrays(&b).ok()).and_then(|mut a| a.pop()).unwrap_or_default();
    let tx = get(data, "tx").as_bool().unwrap_or(false);
    {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return };
        let seen = t.handled.entry(from.to_string()).or_default();
        if seen.contains(&id) {
            return;
        }
        if seen.len() == DEDUPE {
            seen.pop_front();
        }
        seen.push_back(id);
    }
    if commands.is_empty() || (!tx && commands.len() != 1) {
        return;
    }
    let weak = cache.downgrade();
    let to = from.to_string();
    let done: WriteDone = Box::new(move |outcome: Settled| {
        let Some(c) = weak.upgrade() else { return };
        let Some(me) = c.tabs_mut().as_ref().filter(|t| !t.closing).map(|t| t.id.clone()) else { return };
        let msg = message("done", &me);
        set(&msg, "to", JsValue::from_str(&to));
        set(&msg, "id", JsValue::from_f64(id as f64));
        match wire::encode_settled(&outcome) {
            Ok(reply) => set(&msg, "reply", Uint8Array::from(&reply[..]).into()),
            Err(error) => set(&msg, "error", JsValue::from_str(&error)),
        }
        let changes = c.with_core(|core| core.restore_changes(&keys));
        set(&msg, "changes", Uint8Array::from(&wire::encode_changes(&changes)[..]).into());
        post(&c, &msg);
    });
    run_here(cache, commands, tx, Some(done), origin_of(from, id));
}

/// The leader answered one of this follower's writes.
fn on_done(cache: &Cache, data: &JsValue) {
    let Some(id) = get(data, "id").as_f64().map(|n| n as u64) else { return };
    let forwarded = {
        let mut guard = cache.tabs_mut();
        let Some(t) = guard.as_mut() else { return };
        let Some(f) = t.forwarded.remove(&id) else { return };
        for k in &f.keys {
            if let Some(n) = t.in_flight.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    t.in_flight.remove(k);
                }
            }
        }
        f
    };
    if let Some(changes) = bytes(data, "changes").and_then(|b| wire::decode_changes(&b).ok()) {
        apply(cache, &changes);
    }
    let outcome = match bytes(data, "reply") {
        Some(reply) => wire::decode_settled(Ok(&reply)),
        None => wire::decode_settled(Err(get(data, "error").as_string().unwrap_or_else(|| CLOSED.to_string()))),
    };
    if let Some(done) = forwarded.done {
        done(outcome);
    }
}

/// Whether `args` (one command) may change a key.
pub(crate) fn is_write(args: &[Bytes]) -> bool {
    CacheCore::is_write(args)
}
