//! The Durable Object: one engine and one [`SyncHub`] per namespace.
//!
//! Every handler runs to completion without awaiting while it holds the state (SQL calls
//! are synchronous), so events never interleave inside the engine, and the runtime's output
//! gate holds what an event sends until the storage writes it made are durable: a write's
//! ack, its pushes to other sockets and an HTTP response never leave before the write is
//! stored. How each event is driven follows the contract in `engine::sync::hub`:
//!
//! ```text
//! wake (first event) ....... load keys, meta, backlog, dedupe memory from SQL; SyncHub::new;
//!                            republish the backlog; restore_dedupe; restore_conn for every
//!                            socket from its attachment
//! WebSocket upgrade ........ origin / socket caps, accept_web_socket, hub.open
//! websocket_message ........ hub.message → persist out.groups, out.dedupe → send → attachment
//! HTTP command ............. engine.execute (api) → take_changes → hub.publish → persist
//! alarm .................... engine.sweep + hub.tick at the earliest of both deadlines
//! websocket_close/error .... hub.disconnect
//! ```

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;

use bytes::Bytes;
use recached_engine::sync::hub::{origin_allowed, ConnState};
use recached_engine::sync::{Close, ConnId, Grant, HubConfig, Output, SyncHub};
use recached_engine::{Config, Engine, Host, Reply, Session};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::{durable_object, DurableObject, Env, Headers, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage, WebSocketPair};

use crate::api::{self, Encoding};
use crate::router::split_namespace;
use crate::settings::Settings;
use crate::storage::Store;

/// Keys removed per expiry sweep in one alarm (the rest at the next alarm, at once).
const SWEEP_BUDGET: usize = 10_000;

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn random_hex(n: usize) -> String {
    (0..n).map(|_| char::from_digit((js_sys::Math::random() * 16.0) as u32 % 16, 16).unwrap_or('0')).collect()
}

/// What a hibernatable socket carries across hibernation.
#[derive(Debug, Serialize, Deserialize)]
struct Attachment {
    /// Connection id (also the engine session id).
    id: ConnId,
    /// Client address, for the per-address cap.
    ip: String,
    /// The protocol state ([`SyncHub::export_conn`]).
    conn: Option<ConnState>,
}

struct Sock {
    ws: WebSocket,
    ip: String,
}

/// Host commands on the edge: `TIME`, a short `INFO`, `QUIT`; the rest are refused as on
/// the native hub's sync port.
struct EdgeHost;

impl Host for EdgeHost {
    fn call(&mut self, engine: &mut Engine, _: &mut Session, args: &[Bytes], now_ms: u64) -> Reply {
        let name = args[0].to_ascii_lowercase();
        match name.as_slice() {
            b"time" => Reply::Array(vec![Reply::bulk((now_ms / 1000).to_string()), Reply::bulk(((now_ms % 1000) * 1000).to_string())]),
            b"info" => Reply::Verbatim(
                "txt",
                Bytes::from(format!("# Server\r\nrecached_mode:edge\r\n\r\n# Keyspace\r\ndb0:keys={}\r\n", engine.db(0).map(|d| d.len()).unwrap_or(0))),
            ),
            b"quit" => Reply::Ok,
            _ => Reply::err(format!("NOPERM this user has no permissions to run the '{}' command", String::from_utf8_lossy(&name))),
        }
    }
}

/// The loaded state of an awake object.
struct Core {
    engine: Engine,
    hub: SyncHub,
    store: Store,
    settings: Settings,
    sockets: HashMap<ConnId, Sock>,
    next_id: ConnId,
    /// The alarm this object last set (`None`: none or unknown).
    alarm_at: Option<u64>,
    /// When this instance loaded its state (a new value after every wake: tests use it to
    /// tell that an object really was evicted and rebuilt).
    loaded_ms: u64,
}

impl Core {
    fn load(state: &State, settings: Settings) -> Result<Core> {
        let now = now_ms();
        let store = Store::open(state.storage().sql())?;
        let config = Config { seed: (js_sys::Math::random() * u64::MAX as f64) as u64, ..Config::default() };
        let mut engine = Engine::new(config);
        let loaded = store.load(engine.config().databases)?;
        if loaded.bad_rows > 0 {
            worker::console_error!("recached-edge: {} stored keys failed to decode and were skipped", loaded.bad_rows);
        }
        engine.load_dbs(loaded.dbs);
        engine.set_offset(loaded.offset);
        let replid = match loaded.replid {
            Some(r) => r,
            None => {
                let r = random_hex(40);
                store.set_replid(&r)?;
                r
            }
        };
        let base = loaded.backlog.first().map(|g| g.offset - 1).unwrap_or(loaded.offset);
        let config = HubConfig { record_dedupe: true, ..settings.hub.clone() };
        let mut hub = SyncHub::new(config, settings.auth(), replid, base);
        // No socket is registered yet: this only refills the backlog.
        hub.publish(&engine, &loaded.backlog, now);
        // Resent writes whose acks were lost while the object was evicted are answered from
        // here; bounds that shrank since (settings) come back as deletions.
        let trimmed = hub.restore_dedupe(loaded.dedupe);
        store.persist_dedupe(&trimmed.dedupe)?;
        let mut core = Core { engine, hub, store, settings, sockets: HashMap::new(), next_id: 1, alarm_at: None, loaded_ms: now };
        let mut restored = Vec::new();
        for ws in state.get_websockets() {
            match ws.deserialize_attachment::<Attachment>() {
                Ok(Some(att)) => {
                    core.next_id = core.next_id.max(att.id + 1);
                    restored.push((att, ws));
                }
                _ => {
                    let _ = ws.close(Some(1011), Some("lost socket state"));
                }
            }
        }
        for (att, ws) in restored {
            let id = att.id;
            core.sockets.insert(id, Sock { ws, ip: att.ip });
            let out = match att.conn {
                Some(st) => core.hub.restore_conn(&core.engine, id, st, now),
                None => {
                    core.hub.open(id, now);
                    Output::default()
                }
            };
            core.deliver(out, now)?;
        }
        Ok(core)
    }

    /// Persists the groups and dedupe changes of `out`, then sends, closes and disconnects
    /// (the output gate holds the sends until both are durable).
    fn deliver(&mut self, out: Output, _now: u64) -> Result<()> {
        self.store.persist(&self.engine, &out.groups, self.hub.backlog())?;
        self.store.persist_dedupe(&out.dedupe)?;
        let mut gone = Vec::new();
        for (id, bytes) in out.sends {
            if let Some(s) = self.sockets.get(&id) {
                if s.ws.send_with_bytes(&bytes).is_err() {
                    gone.push(id);
                }
            }
        }
        for (id, close) in out.closes {
            if let Some(s) = self.sockets.remove(&id) {
                let _ = s.ws.close(Some(close.code), Some(close.reason.as_str()));
            }
            self.hub.disconnect(&mut self.engine, id);
        }
        for id in gone {
            self.sockets.remove(&id);
            self.hub.disconnect(&mut self.engine, id);
        }
        Ok(())
    }

    /// After engine work outside the hub (HTTP commands, expiry): publish and persist.
    fn publish_engine_changes(&mut self, now: u64) -> Result<()> {
        if !self.engine.has_changes() {
            return Ok(());
        }
        let groups = self.engine.take_changes();
        let mut out = self.hub.publish(&self.engine, &groups, now);
        out.groups = groups;
        self.deliver(out, now)
    }

    fn save_attachment(&self, id: ConnId) {
        if let Some(s) = self.sockets.get(&id) {
            let att = Attachment { id, ip: s.ip.clone(), conn: self.hub.export_conn(id) };
            if let Err(e) = s.ws.serialize_attachment(&att) {
                worker::console_error!("recached-edge: attachment of socket {id}: {e}");
            }
        }
    }

    /// Sets the alarm at the earliest key deadline or hub timer, if it changed.
    fn schedule(&mut self, state: &State) {
        let next = [self.engine.next_deadline(), self.hub.next_tick()].into_iter().flatten().min();
        if next == self.alarm_at {
            return;
        }
        let storage = state.storage();
        let raw = storage.as_raw();
        // The raw calls are issued now (the Rust futures of `set_alarm` would only start
        // when awaited); like SQL writes they are covered by the output gate.
        let r = match next {
            Some(t) => raw.set_alarm(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(t as f64)), wasm_bindgen::JsValue::NULL.into()),
            None => raw.delete_alarm(wasm_bindgen::JsValue::NULL.into()),
        };
        match r {
            Ok(_) => self.alarm_at = next,
            Err(e) => worker::console_error!("recached-edge: set alarm: {e:?}"),
        }
    }

    fn drain_events(&mut self) {
        // Keyspace notifications have no subscribers at the edge (no RESP pub/sub).
        let _ = self.engine.take_events();
    }
}

/// One namespace's hub.
#[durable_object]
pub struct RecachedHub {
    state: State,
    env: Env,
    core: RefCell<Option<Core>>,
}

impl RecachedHub {
    fn settings(&self) -> Settings {
        let env = &self.env;
        Settings::from_vars(|name| {
            if let Ok(s) = env.secret(name) {
                return Some(s.to_string());
            }
            env.var(name).ok().map(|v| v.to_string())
        })
    }

    /// The loaded core (loading it on the first event after a wake).
    fn core(&self) -> Result<RefMut<'_, Core>> {
        let mut slot = self.core.borrow_mut();
        if slot.is_none() {
            *slot = Some(Core::load(&self.state, self.settings())?);
        }
        Ok(RefMut::map(slot, |s| s.as_mut().expect("loaded just above")))
    }

    fn accept(&self, req: &Request) -> Result<Response> {
        let mut core = self.core()?;
        let pair = WebSocketPair::new()?;
        let (client, server) = (pair.client, pair.server);
        let origin = req.headers().get("origin")?;
        let ip = req.headers().get("cf-connecting-ip")?.or(req.headers().get("x-forwarded-for")?).unwrap_or_else(|| "local".into());
        let refuse = if !origin_allowed(&core.settings.origins, origin.as_deref()) {
            Some(Close::origin_refused())
        } else if (core.settings.max_sockets > 0 && core.sockets.len() >= core.settings.max_sockets)
            || (core.settings.max_sockets_per_ip > 0 && core.sockets.values().filter(|s| s.ip == ip).count() >= core.settings.max_sockets_per_ip)
        {
            Some(Close::too_many_connections())
        } else {
            None
        };
        if let Some(close) = refuse {
            // Accepted without hibernation and closed at once: the protocol refuses after the
            // upgrade, with a code the client can act on.
            server.accept()?;
            server.close(Some(close.code), Some(close.reason.as_str()))?;
            return Response::from_websocket(client);
        }
        self.state.accept_web_socket(&server);
        let id = core.next_id;
        core.next_id += 1;
        let now = now_ms();
        core.hub.open(id, now);
        core.sockets.insert(id, Sock { ws: server, ip });
        core.save_attachment(id);
        core.schedule(&self.state);
        Response::from_websocket(client)
    }

    async fn http(&self, mut req: Request, path: &str) -> Result<Response> {
        let method = req.method().to_string().to_ascii_uppercase();
        let origin = req.headers().get("origin")?;
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        let reply = |status: u16, v: &Value, headers: &Headers| -> Result<Response> {
            Ok(Response::from_bytes(serde_json::to_vec(v).unwrap_or_default())?.with_status(status).with_headers(headers.clone()))
        };
        let err = |status: u16, text: &str, headers: &Headers| reply(status, &serde_json::json!({ "error": text }), headers);
        let settings = self.settings();
        if let Some(o) = &origin {
            if !origin_allowed(&settings.origins, Some(o)) {
                return err(403, "origin not allowed", &headers);
            }
            headers.set("access-control-allow-origin", o)?;
            headers.set("vary", "Origin")?;
        }
        match (method.as_str(), path) {
            ("GET" | "HEAD", "/healthz") => {
                headers.set("content-type", "text/plain; charset=utf-8")?;
                return Ok(Response::ok("ok\n")?.with_headers(headers));
            }
            ("GET" | "HEAD", "/metrics") => {
                let core = self.core()?;
                let text = format!(
                    "# TYPE recached_keys gauge\nrecached_keys {}\n# TYPE recached_sync_sockets gauge\nrecached_sync_sockets {}\n# TYPE recached_sync_subscribers gauge\nrecached_sync_subscribers {}\n# TYPE recached_sync_backlog_bytes gauge\nrecached_sync_backlog_bytes {}\n# TYPE recached_sync_offset gauge\nrecached_sync_offset {}\n# TYPE recached_sync_writes_total counter\nrecached_sync_writes_total {}\n# TYPE recached_storage_bytes gauge\nrecached_storage_bytes {}\n# TYPE recached_edge_loaded_ms gauge\nrecached_edge_loaded_ms {}\n",
                    core.engine.key_count(),
                    core.sockets.len(),
                    core.hub.subscribers(),
                    core.hub.backlog().bytes(),
                    core.hub.backlog().last_offset(),
                    core.hub.stats().writes,
                    core.store.size(),
                    core.loaded_ms,
                );
                headers.set("content-type", "text/plain; version=0.0.4; charset=utf-8")?;
                return Ok(Response::ok(text)?.with_headers(headers));
            }
            ("OPTIONS", _) => {
                headers.set("access-control-allow-methods", "GET, POST, PUT, OPTIONS")?;
                headers.set("access-control-allow-headers", "authorization, content-type, upstash-encoding")?;
                headers.set("access-control-max-age", "86400")?;
                return Ok(Response::empty()?.with_status(204).with_headers(headers));
            }
            ("GET" | "POST" | "PUT", _) => {}
            _ => return err(405, "method not allowed", &headers),
        }
        let url = req.url()?;
        let query = match api::parse_query(url.query().unwrap_or("")) {
            Ok(q) => q,
            Err(e) => return err(400, &e, &headers),
        };
        let token = match req.headers().get("authorization")? {
            Some(v) if v.split_once(' ').is_some_and(|(s, _)| s.eq_ignore_ascii_case("bearer")) => v.split_once(' ').map(|(_, t)| t.trim().as_bytes().to_vec()).unwrap_or_default(),
            _ => query.iter().find(|(k, _)| k == b"_token").map(|(_, v)| v.clone()).unwrap_or_default(),
        };
        let enc = if req.headers().get("upstash-encoding")?.is_some_and(|v| v.eq_ignore_ascii_case("base64")) { Encoding::Base64 } else { Encoding::Utf8 };
        let body = if method == "GET" { Vec::new() } else { req.bytes().await? };
        if body.len() > settings.hub.max_message {
            return err(413, &format!("ERR request body over {} bytes", settings.hub.max_message), &headers);
        }
        // From here on nothing awaits: the engine is borrowed until the response is built.
        let mut core = self.core()?;
        let now = now_ms();
        let grant: Grant = match core.hub.auth().authenticate(&token, now) {
            Ok(g) => g,
            Err(e) => {
                headers.set("www-authenticate", "Bearer")?;
                return err(401, &format!("Unauthorized: invalid token ({})", e.kind()), &headers);
            }
        };
        let parse_json = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| format!("ERR invalid JSON body: {}", e));
        enum Job {
            One(Vec<Bytes>),
            Pipeline(Vec<Vec<Bytes>>),
            Multi(Vec<Vec<Bytes>>),
        }
        let job = match (method.as_str(), path) {
            ("POST" | "PUT", "/") => parse_json(&body).and_then(|v| api::command_from_json(&v)).map(Job::One),
            ("POST" | "PUT", "/pipeline") => parse_json(&body).and_then(|v| api::commands_from_json(&v)).map(Job::Pipeline),
            ("POST" | "PUT", "/multi-exec") => parse_json(&body).and_then(|v| api::commands_from_json(&v)).map(Job::Multi),
            ("GET", "/") => Err("ERR empty command: POST a JSON command array, or use /<command>/<arg>/…".to_string()),
            (_, p) => api::command_from_path(p, &query, (method != "GET").then_some(body.as_slice())).map(Job::One),
        };
        let job = match job {
            Ok(j) => j,
            Err(e) => return err(400, &e, &headers),
        };
        let id = core.next_id;
        core.next_id += 1;
        let mut session = Session::new(id);
        let c = &mut *core;
        let response = match job {
            Job::One(cmd) => {
                let r = api::run_pipeline(&mut c.engine, &mut EdgeHost, &mut session, &grant, std::slice::from_ref(&cmd), now).pop().unwrap_or(Reply::Nil);
                let (v, is_err) = api::envelope(&r, enc);
                (if is_err { 400 } else { 200 }, v)
            }
            Job::Pipeline(cmds) => {
                let rs = api::run_pipeline(&mut c.engine, &mut EdgeHost, &mut session, &grant, &cmds, now);
                (200, Value::Array(rs.iter().map(|r| api::envelope(r, enc).0).collect()))
            }
            Job::Multi(cmds) => match api::run_multi(&mut c.engine, &mut EdgeHost, &mut session, &grant, &cmds, now) {
                Ok(rs) => (200, Value::Array(rs.iter().map(|r| api::envelope(r, enc).0).collect())),
                Err(e) => (400, api::envelope(&e, enc).0),
            },
        };
        c.engine.close_session(&mut session);
        c.publish_engine_changes(now)?;
        c.drain_events();
        c.schedule(&self.state);
        reply(response.0, &response.1, &headers)
    }

    fn forget(&self, ws: &WebSocket) -> Result<()> {
        let mut core = self.core()?;
        if let Ok(Some(att)) = ws.deserialize_attachment::<Attachment>() {
            let c = &mut *core;
            c.sockets.remove(&att.id);
            c.hub.disconnect(&mut c.engine, att.id);
            c.schedule(&self.state);
        }
        Ok(())
    }
}

impl DurableObject for RecachedHub {
    fn new(state: State, env: Env) -> Self {
        console_error_panic_hook::set_once();
        RecachedHub { state, env, core: RefCell::new(None) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let full = req.path();
        let path = split_namespace(&full).map(|(_, p)| p.to_string()).unwrap_or(full);
        let upgrade = req.headers().get("upgrade")?.is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        match (upgrade, path.as_str()) {
            (true, "/ws") => self.accept(&req),
            (false, "/ws") => Ok(Response::error("expected a WebSocket upgrade", 426)?),
            _ => self.http(req, &path).await,
        }
    }

    async fn websocket_message(&self, ws: WebSocket, message: WebSocketIncomingMessage) -> Result<()> {
        let mut core = self.core()?;
        let Ok(Some(att)) = ws.deserialize_attachment::<Attachment>() else {
            let _ = ws.close(Some(1011), Some("lost socket state"));
            return Ok(());
        };
        let id = att.id;
        let c = &mut *core;
        if !c.sockets.contains_key(&id) {
            // Closed by the hub already; the client has not finished the close handshake.
            return Ok(());
        }
        let now = now_ms();
        let out = match message {
            WebSocketIncomingMessage::Binary(data) => c.hub.message(&mut c.engine, &mut EdgeHost, id, &data, now),
            WebSocketIncomingMessage::String(_) => Output { closes: vec![(id, Close::text_message())], ..Output::default() },
        };
        c.deliver(out, now)?;
        c.drain_events();
        c.save_attachment(id);
        c.schedule(&self.state);
        Ok(())
    }

    async fn websocket_close(&self, ws: WebSocket, code: usize, reason: String, _was_clean: bool) -> Result<()> {
        // 1005 (no code) and 1006 (abnormal) may not be sent in a close frame.
        let code = if code == 1005 || code == 1006 { 1000 } else { code as u16 };
        let _ = ws.close(Some(code), Some(reason));
        self.forget(&ws)
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        // Broken framing from the client: the runtime reports it here and leaves closing to
        // the object; close like the native hub does (the TCP connection must not linger).
        worker::console_log!("recached-edge: socket error: {error}");
        let _ = ws.close(Some(1002), Some("protocol error"));
        self.forget(&ws)
    }

    async fn alarm(&self) -> Result<Response> {
        let mut core = self.core()?;
        let c = &mut *core;
        c.alarm_at = None;
        let now = now_ms();
        c.engine.sweep(now, SWEEP_BUDGET);
        c.publish_engine_changes(now)?;
        let out = c.hub.tick(now);
        c.deliver(out, now)?;
        c.drain_events();
        c.schedule(&self.state);
        Response::ok("")
    }
}
