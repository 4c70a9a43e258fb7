//! The views: one component per card. Each reads keys through the `recached-ui` hooks
//! (local reads, signals notified only for the keys that changed) and writes with
//! `Cache::cmd` (applied at once, confirmed by the hub) or `Cache::write` where the
//! outcome is shown.

use std::collections::HashMap;
use std::rc::Rc;

use bytes::Bytes;
use leptos::prelude::*;
use recached_engine::resp::Frame;
use recached_ui::leptos::{use_cache, use_hash, use_key, use_keys};
use recached_ui::{Cache, Notice, Reply, Settled};

use crate::app::{use_tick, CacheRef};
use crate::setup::{self, cart_key, cart_total, is_on, COUNTER_KEY, FLAG_PATTERN, PRESENCE_PATTERN, PRODUCTS};
use crate::show;

/// Sends a write (applied at once; counted in `Cache::pending_writes` until the hub
/// confirms it, which the header shows).
pub(crate) fn send(c: &Cache, args: &[&str]) {
    let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
    c.write(&args, |_| {});
}

fn cache_ref() -> CacheRef {
    StoredValue::new_local(use_cache())
}

fn pttl(c: &Cache, key: &str) -> i64 {
    match c.cmd(&["PTTL", key]) {
        Reply::Int(ms) => ms,
        _ => -2,
    }
}

/// The shared counter: one `INCR` per click, from any browser or `redis-cli`.
#[component]
pub fn Counter() -> impl IntoView {
    let cache = cache_ref();
    let value = use_key(COUNTER_KEY);
    view! {
        <section class="card counter" data-testid="counter">
            <h2>"Shared counter"</h2>
            <p class="big" data-testid="counter-value">{move || value.get().unwrap_or_else(|| "0".into())}</p>
            <button data-testid="counter-inc" on:click=move |_| {
                cache.with_value(|c| send(c, &["INCR", COUNTER_KEY]));
            }>"+1"</button>
            <p class="hint">"Every page sees the same number. Try " <code>"redis-cli INCRBY demo:counter 10"</code></p>
        </section>
    }
}

/// Who is online: `presence:<user>` keys, each renewed by its page's heartbeat and gone
/// when its TTL runs out.
#[component]
pub fn Presence(user: String) -> impl IntoView {
    let cache = cache_ref();
    let tick = use_tick();
    let keys = use_keys(PRESENCE_PATTERN);
    view! {
        <section class="card presence" data-testid="presence">
            <h2>"Who is online " <span class="count" data-testid="presence-count">{move || keys.with(Vec::len)}</span></h2>
            <ul class="people">
                <For each=move || keys.get() key=|k| k.clone() children=move |k: String| {
                    let name = k.trim_start_matches("presence:").to_string();
                    let me = name == user;
                    let ttl = move || {
                        tick.track();
                        cache.try_with_value(|c| pttl(c, &k)).unwrap_or(-2)
                    };
                    view! {
                        <li data-testid=format!("presence-{name}") class:me=me>
                            <span class="dot"></span>
                            <span class="who">{name.clone()}</span>
                            {me.then_some(" (you)")}
                            <span class="ttl" title="heartbeat TTL">{move || show::ttl(ttl())}</span>
                        </li>
                    }
                } />
            </ul>
            <p class="hint">"Each page renews " <code>"presence:<user>"</code> " (TTL 6 s) every 2 s."</p>
        </section>
    }
}

/// The user's cart, a hash the token lets only this user read and write, and a write to
/// someone else's cart that the hub refuses.
#[component]
pub fn Cart(user: String) -> impl IntoView {
    let cache = cache_ref();
    let key = cart_key(&user);
    let items = use_hash(key.clone());
    let express = use_key(FLAG_PATTERN.replace('*', "new-checkout"));
    let denied = RwSignal::new(None::<String>);
    let qty = move |id: &str| items.with(|v| v.iter().find(|(f, _)| f == id).and_then(|(_, q)| q.parse::<i64>().ok()).unwrap_or(0));
    let foreign = setup::foreign_cart_key(&user);
    let intrude = move |_| {
        let args: Vec<Bytes> = ["HSET", foreign.as_str(), "apple", "1"].iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect();
        denied.set(Some("…".to_string()));
        cache.with_value(|c| c.write(&args, move |s| denied.set(Some(describe(&s)))));
    };
    let rows = PRODUCTS
        .iter()
        .map(|p| {
            let (add_key, del_key) = (key.clone(), key.clone());
            view! {
                <li data-testid=format!("cart-item-{}", p.id)>
                    <span class="product">{p.name}</span>
                    <span class="price">{show::cents(p.cents)}</span>
                    <button class="small" data-testid=format!("cart-remove-{}", p.id) on:click=move |_| {
                        let q = qty(p.id);
                        cache.with_value(|c| {
                            if q > 1 {
                                send(c, &["HINCRBY", &del_key, p.id, "-1"]);
                            } else if q == 1 {
                                send(c, &["HDEL", &del_key, p.id]);
                            }
                        });
                    }>"−"</button>
                    <span class="qty" data-testid=format!("cart-qty-{}", p.id)>{move || qty(p.id)}</span>
                    <button class="small" data-testid=format!("cart-add-{}", p.id) on:click=move |_| {
                        cache.with_value(|c| send(c, &["HINCRBY", &add_key, p.id, "1"]));
                    }>"+"</button>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="card cart" data-testid="cart">
            <h2>"Your cart"</h2>
            <ul class="items">{rows}</ul>
            <p class="total">"Total " <b data-testid="cart-total">{move || show::cents(items.with(|v| cart_total(v)))}</b></p>
            {move || is_on(express.get().as_deref()).then(|| view! {
                <button class="express" data-testid="express-checkout">"⚡ Express checkout"</button>
            })}
            <p class="hint">
                "Stored in " <code>{key.clone()}</code> ", which only your token may read. "
                <button class="link" data-testid="cart-intrude" on:click=intrude>"Write to someone else's cart"</button>
                <span class="denied" data-testid="cart-intrude-result">{move || denied.get()}</span>
            </p>
        </section>
    }
}

/// How a write ended, in words.
fn describe(s: &Settled) -> String {
    match s {
        Settled::Refused(e) => format!("refused: {e}"),
        Settled::Hub(Frame::Error(e)) => format!("refused by the hub: {}", String::from_utf8_lossy(e)),
        Settled::Local(Reply::Error(e)) => format!("refused: {e}"),
        _ => "accepted (this token is not scoped to one user)".to_string(),
    }
}

/// Feature flags: `flag:*`, set by a backend (`redis-cli SET flag:dark-mode on`); a few
/// change the page.
#[component]
pub fn Flags() -> impl IntoView {
    let keys = use_keys(FLAG_PATTERN);
    view! {
        <section class="card flags" data-testid="flags">
            <h2>"Feature flags"</h2>
            <ul class="flag-list">
                <For each=move || keys.get() key=|k| k.clone() children=|k: String| view! { <FlagRow name=k /> } />
            </ul>
            <Show when=move || keys.with(Vec::is_empty)>
                <p class="empty">"No flags set."</p>
            </Show>
            <p class="hint">"Flip them from a backend: " <code>"redis-cli SET flag:dark-mode on"</code> ", "
                <code>"SET flag:banner \"Sale!\""</code> ", " <code>"SET flag:new-checkout on"</code></p>
        </section>
    }
}

#[component]
fn FlagRow(name: String) -> impl IntoView {
    let value = use_key(name.clone());
    let short = name.trim_start_matches("flag:").to_string();
    view! {
        <li class="flag" data-testid=format!("flag-{short}")>
            <span class="flag-name">{short.clone()}</span>
            <span class=move || if is_on(value.get().as_deref()) { "flag-value on" } else { "flag-value" }
                data-testid=format!("flag-value-{short}")>
                {move || value.get().unwrap_or_default()}
            </span>
        </li>
    }
}

/// Every key this page can see, with its type, value and TTL counting down; a row flashes
/// when its key changes.
#[component]
pub fn Inspector() -> impl IntoView {
    let cache = cache_ref();
    let keys = use_keys("*");
    // Changes per key: a row's flash restarts each time its count moves.
    let changes = RwSignal::new(HashMap::<String, u32>::new());
    let id = cache.with_value(|c| {
        c.on(
            "*",
            Rc::new(move |n: &Notice| {
                if let Some(k) = &n.key {
                    let k = String::from_utf8_lossy(k).into_owned();
                    changes.update(|m| *m.entry(k).or_default() += 1);
                }
            }),
        )
    });
    on_cleanup(move || {
        if let Some(id) = id {
            let _ = cache.try_with_value(|c| c.off(id));
        }
    });
    view! {
        <section class="card inspector" data-testid="inspector">
            <h2>"Key inspector " <span class="count" data-testid="key-count">{move || keys.with(Vec::len)}</span></h2>
            <table>
                <thead><tr><th>"key"</th><th>"type"</th><th>"value"</th><th>"TTL"</th></tr></thead>
                <tbody>
                    <For each=move || keys.get() key=|k| k.clone() children=move |k: String| view! { <KeyRow name=k changes /> } />
                </tbody>
            </table>
            <p class="hint">"Only the keys your token may read reach this page."</p>
        </section>
    }
}

#[component]
fn KeyRow(name: String, changes: RwSignal<HashMap<String, u32>>) -> impl IntoView {
    let cache = cache_ref();
    let tick = use_tick();
    let n = {
        let name = name.clone();
        Memo::new(move |_| changes.with(|m| m.get(&name).copied().unwrap_or(0)))
    };
    let read = {
        let name = name.clone();
        Memo::new(move |_| {
            n.track();
            cache
                .try_with_value(|c| {
                    let kind = match c.cmd(&["TYPE", &name]) {
                        Reply::Simple(t) => t.to_string(),
                        _ => "none".to_string(),
                    };
                    let value = show::preview_command(&kind).map(|cmd| {
                        let mut args: Vec<&str> = vec![cmd[0], &name];
                        args.extend_from_slice(&cmd[1..]);
                        show::preview(&c.cmd(&args))
                    });
                    (kind, value.unwrap_or_default())
                })
                .unwrap_or_default()
        })
    };
    let ttl = {
        let name = name.clone();
        move || {
            tick.track();
            show::ttl(cache.try_with_value(|c| pttl(c, &name)).unwrap_or(-2))
        }
    };
    view! {
        <tr data-testid="inspect-row" data-key=name.clone() data-changes=move || n.get().to_string()
            class=move || match n.get() { 0 => "", c if c % 2 == 1 => "flash-a", _ => "flash-b" }>
            <td class="key">{name.clone()}</td>
            <td class="type">{move || read.with(|r| r.0.clone())}</td>
            <td class="value">{move || read.with(|r| r.1.clone())}</td>
            <td class="ttl">{ttl}</td>
        </tr>
    }
}
