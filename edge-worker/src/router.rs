//! The Worker's fetch handler: namespace routing to Durable Objects.
//!
//! - `/healthz` answers here (`ok`), without waking an object;
//! - `/v1/ns/{namespace}/…` goes to the namespace's object (`/ws` there is WebSocket
//!   sync, anything else the HTTP command API);
//! - any other path is Upstash's REST API on the default namespace (`DEFAULT_NAMESPACE`,
//!   `default`): `POST /`, `/pipeline`, `/multi-exec`, `/set/key/value`, and `/ws`.

use worker::{event, Context, Env, Request, Response, Result};

use crate::settings::valid_namespace;

/// The Durable Object binding in `wrangler.toml`.
pub const BINDING: &str = "RECACHED_HUB";

/// Splits `/v1/ns/{ns}/rest` into `(ns, "/rest")`; `None` for other paths.
pub fn split_namespace(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/ns/")?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

fn json_error(status: u16, text: &str) -> Result<Response> {
    Ok(Response::from_json(&serde_json::json!({ "error": text }))?.with_status(status))
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    console_error_panic_hook::set_once();
    let path = req.path();
    if path == "/healthz" {
        return Response::ok("ok\n");
    }
    let ns = match split_namespace(&path) {
        Some((ns, _)) => ns.to_string(),
        None => env.var("DEFAULT_NAMESPACE").map(|v| v.to_string()).unwrap_or_else(|_| "default".to_string()),
    };
    if !valid_namespace(&ns) {
        return json_error(400, "ERR invalid namespace: 1 to 128 characters of A-Z a-z 0-9 . _ : -");
    }
    let stub = env.durable_object(BINDING)?.get_by_name(&ns)?;
    stub.fetch_with_request(req).await
}
