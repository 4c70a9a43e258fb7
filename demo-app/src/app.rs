//! The root component: the cache, the connection (a dev token from the hub, or a token
//! given in the URL), the heartbeat, the header and the flag-driven page changes.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use recached_ui::leptos::{provide_cache, use_key, use_status};
use recached_ui::{Cache, CacheOptions, ConnectOptions, Status};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::setup::{self, is_on, DevToken, Params};
use crate::views::{Cart, Counter, Flags, Inspector, Presence};

/// Hub up but page not live for this long (dev tokens only): ask for a fresh token and
/// connect again. Longer than the client's longest reconnect backoff (10 s).
const REFRESH_AFTER_MS: u32 = 12_000;
/// Retry period while the hub's token endpoint cannot be reached.
const RETRY_FETCH_MS: u32 = 3_000;
/// The inspector's and presence's countdown refresh.
const TICK_MS: u64 = 200;

/// A signal bumped every [`TICK_MS`]: what TTL countdowns and the pending count follow.
#[derive(Clone, Copy)]
pub(crate) struct Tick(pub(crate) RwSignal<u64>);

/// The tick provided by [`App`].
pub(crate) fn use_tick() -> RwSignal<u64> {
    expect_context::<Tick>().0
}

/// The cache as a `Copy + Send` handle for closures (the cache itself is neither).
pub(crate) type CacheRef = StoredValue<Cache, LocalStorage>;

/// The connection as the header shows it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Conn {
    /// The patterns mirrored (the token's read scope).
    scope: Vec<String>,
    /// Why there is no connection (token endpoint unreachable, dev mode off).
    error: Option<String>,
    /// A token request is in flight.
    fetching: bool,
}

/// The demo page.
#[component]
pub fn App() -> impl IntoView {
    let params = Params::from_query(&location_search());
    let user = params.user.clone().unwrap_or_else(stored_or_random_user);
    // Tabs of this browser with the same user and hub share one cache (and one socket).
    let options = CacheOptions { channel: Some(setup::channel_name(&user, &params.hub)), ..CacheOptions::default() };
    let cache = Cache::new(&options).expect("the cache options are valid");
    provide_cache(cache.clone());
    let cache: CacheRef = StoredValue::new_local(cache);
    let tick = RwSignal::new(0u64);
    provide_context(Tick(tick));
    set_interval(move || tick.update(|t| *t += 1), Duration::from_millis(TICK_MS));

    let conn = RwSignal::new(Conn::default());
    start(cache, params.clone(), user.clone(), conn);
    watchdog(cache, params.clone(), user.clone(), conn);
    heartbeat(cache, user.clone());

    let status = use_status();
    let dark = use_key(setup::FLAG_PATTERN.replace('*', "dark-mode"));
    let banner = use_key(setup::FLAG_PATTERN.replace('*', "banner"));
    let pending = move || {
        tick.track();
        cache.try_with_value(|c| c.pending_writes()).unwrap_or(0)
    };
    let hub_field = RwSignal::new(params.hub.clone());
    let user_field = RwSignal::new(user.clone());
    let go = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let query = format!("?hub={}&user={}", setup::encode(&hub_field.get_untracked()), setup::encode(&user_field.get_untracked()));
        if let Some(w) = web_sys::window() {
            let _ = w.location().set_search(&query);
        }
    };

    view! {
        <div class=move || if is_on(dark.get().as_deref()) { "app dark" } else { "app" } data-testid="app">
            <header>
                <h1>"Recached" <span class="sub">" live demo"</span></h1>
                <span
                    class=move || format!("pill {}", status.get().name())
                    data-testid="status"
                    data-status=move || status.get().name()
                >
                    {move || status_text(status.get())}
                </span>
                <span class="pending" data-testid="pending" data-pending=move || pending().to_string()>
                    {move || match pending() { 0 => String::new(), 1 => "1 write pending".to_string(), n => format!("{n} writes pending") }}
                </span>
                <form class="connect" on:submit=go>
                    <label>"hub " <input data-testid="hub-input" size="22" prop:value=hub_field
                        on:input=move |ev| hub_field.set(event_target_value(&ev)) /></label>
                    <label>"user " <input data-testid="user-input" size="10" prop:value=user_field
                        on:input=move |ev| user_field.set(event_target_value(&ev)) /></label>
                    <button type="submit" data-testid="connect">"Connect"</button>
                </form>
            </header>
            {move || banner.get().filter(|t| !t.trim().is_empty()).map(|t| view! { <div class="banner" data-testid="banner">{t}</div> })}
            {move || conn.with(|c| c.error.clone()).map(|e| view! { <div class="error" data-testid="conn-error">{e}</div> })}
            <main>
                <Counter />
                <Presence user=user.clone() />
                <Cart user=user.clone() />
                <Flags />
                <Inspector />
            </main>
            <footer>
                "Signed in as " <b data-testid="user">{user.clone()}</b> " · mirroring "
                <code data-testid="scope">{move || conn.with(|c| c.scope.join(" "))}</code>
                " from " <code>{params.hub.clone()}</code>
            </footer>
        </div>
    }
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Live => "● live",
        Status::Connecting => "◌ connecting",
        Status::Resyncing => "◌ resyncing",
        Status::Offline => "○ offline",
        Status::Closed => "○ closed",
    }
}

/// Gets a token (unless the URL gave one) and connects the cache.
fn start(cache: CacheRef, params: Params, user: String, conn: RwSignal<Conn>) {
    if conn.with_untracked(|c| c.fetching) {
        return;
    }
    conn.update(|c| c.fetching = true);
    spawn_local(async move {
        let got = match &params.token {
            Some(t) => Ok((t.clone(), setup::demo_patterns(&user))),
            None => fetch_dev_token(&params.hub, &user).await.map(|t| (t.token, t.read)),
        };
        match got {
            Ok((token, scope)) => {
                let options = ConnectOptions { urls: vec![params.hub.clone()], token, patterns: scope.clone() };
                cache.with_value(|c| c.connect(&options));
                conn.set(Conn { scope, error: None, fetching: false });
            }
            Err(e) => conn.update(|c| {
                c.error = Some(e);
                c.fetching = false;
            }),
        }
    });
}

/// Reconnects with a fresh dev token when the hub is up but the page has not gone live
/// for [`REFRESH_AFTER_MS`] (the hub restarted with another secret, or the token expired:
/// the client stops on a refused token rather than retrying it), and retries an
/// unreachable token endpoint. While the hub is down it does nothing: the client's own
/// backoff reconnects with the same token and resends the writes made meanwhile, which a
/// new connection would refuse.
fn watchdog(cache: CacheRef, params: Params, user: String, conn: RwSignal<Conn>) {
    if params.token.is_some() {
        return;
    }
    const STEP_MS: u32 = 1_000;
    let Ok(health) = setup::health_url(&params.hub) else { return };
    let not_live_ms = Rc::new(Cell::new(0u32));
    let up_not_live_ms = Rc::new(Cell::new(0u32));
    let probing = Rc::new(Cell::new(false));
    set_interval(
        move || {
            let live = cache.try_with_value(|c| c.status() == Status::Live).unwrap_or(false);
            if live {
                not_live_ms.set(0);
                up_not_live_ms.set(0);
                return;
            }
            not_live_ms.set(not_live_ms.get() + STEP_MS);
            if conn.with_untracked(|c| c.error.is_some()) {
                // Never connected: keep asking for a token.
                if not_live_ms.get() >= RETRY_FETCH_MS {
                    not_live_ms.set(0);
                    start(cache, params.clone(), user.clone(), conn);
                }
                return;
            }
            if probing.replace(true) {
                return;
            }
            let (health, params, user) = (health.clone(), params.clone(), user.clone());
            let (up_not_live_ms, probing) = (up_not_live_ms.clone(), probing.clone());
            spawn_local(async move {
                let up = reachable(&health).await;
                up_not_live_ms.set(if up { up_not_live_ms.get() + STEP_MS } else { 0 });
                probing.set(false);
                if up_not_live_ms.get() >= REFRESH_AFTER_MS {
                    up_not_live_ms.set(0);
                    start(cache, params, user, conn);
                }
            });
        },
        Duration::from_millis(STEP_MS as u64),
    );
}

/// Whether `GET url` answers 200.
async fn reachable(url: &str) -> bool {
    let Some(window) = web_sys::window() else { return false };
    match JsFuture::from(window.fetch_with_str(url)).await {
        Ok(r) => r.dyn_into::<web_sys::Response>().map(|r| r.ok()).unwrap_or(false),
        Err(_) => false,
    }
}

/// Keeps `presence:<user>` alive while live (a key with a TTL, renewed every
/// [`setup::HEARTBEAT_MS`]); the hub's expiry takes the user offline when the page goes.
fn heartbeat(cache: CacheRef, user: String) {
    let key = setup::presence_key(&user);
    let since = js_sys::Date::now() as u64;
    let beat = move || {
        let _ = cache.try_with_value(|c| {
            if c.status() == Status::Live {
                crate::views::send(c, &["SET", &key, &since.to_string(), "PX", &setup::PRESENCE_TTL_MS.to_string()]);
            }
        });
    };
    let status = use_status();
    let first = beat.clone();
    Effect::new(move |_| {
        if status.get() == Status::Live {
            first();
        }
    });
    set_interval(beat, Duration::from_millis(setup::HEARTBEAT_MS as u64));
}

async fn fetch_dev_token(hub: &str, user: &str) -> Result<DevToken, String> {
    let url = setup::token_url(hub, user)?;
    let window = web_sys::window().ok_or("no window")?;
    let unreachable = |_| format!("cannot reach the hub's token endpoint {url} — is the hub running with --dev? (scripts/run.sh starts one)");
    let resp = JsFuture::from(window.fetch_with_str(&url)).await.map_err(unreachable)?;
    let resp: web_sys::Response = resp.dyn_into().map_err(|_| "fetch gave no response".to_string())?;
    let body = JsFuture::from(resp.text().map_err(js_text)?).await.map_err(js_text)?.as_string().unwrap_or_default();
    match resp.status() {
        200 => DevToken::parse(&body),
        404 => Err(format!("the hub at {hub} is not in dev mode (start it with --dev), or pass ?token=…")),
        s => Err(format!("the hub refused a dev token ({s}): {body}")),
    }
}

fn js_text(v: JsValue) -> String {
    v.as_string().unwrap_or_else(|| format!("{v:?}"))
}

fn location_search() -> String {
    web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default()
}

/// The user this browser used last (localStorage), or a new random `guest-NNNN`.
fn stored_or_random_user() -> String {
    const KEY: &str = "recached-demo-user";
    let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
    if let Some(name) = storage.as_ref().and_then(|s| s.get_item(KEY).ok().flatten()).filter(|n| setup::valid_user(n)) {
        return name;
    }
    let name = format!("guest-{:04}", (js_sys::Math::random() * 10_000.0) as u32);
    if let Some(s) = storage {
        let _ = s.set_item(KEY, &name);
    }
    name
}
