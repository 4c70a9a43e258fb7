//! The HTTP command API, modelled on Upstash's REST API (`docs/protocol.md`, "HTTP command
//! API"): commands as JSON arrays or URL paths in, `{"result": …}` / `{"error": …}` out,
//! checked against the caller's token exactly like a sync connection's commands.
//!
//! The mapping and the execution on an engine are the engine's
//! ([`recached_engine::sync::http_api`], shared with the edge hub); this module runs them
//! under the hub's lock, and `http` does the transport.

use bytes::Bytes;
use recached_engine::sync::http_api;
use recached_engine::sync::Grant;
use recached_engine::{Reply, Session};

pub use recached_engine::sync::http_api::{command_from_json, command_from_path, commands_from_json, envelope, parse_query, reply_to_json, Encoding, Query};

use crate::hub::{now_ms, Shared};
use crate::ws::SyncHost;

/// Commands of a pipeline run per engine-lock acquisition, so a long pipeline does not
/// starve other clients.
const PIPELINE_CHUNK: usize = 1024;

/// Runs commands in order (not atomically, as a RESP pipeline), each checked against
/// `grant`; one reply per command.
pub fn run_pipeline(shared: &Shared, grant: &Grant, commands: &[Vec<Bytes>]) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(commands.len().min(PIPELINE_CHUNK));
    for chunk in commands.chunks(PIPELINE_CHUNK) {
        let now = now_ms();
        let mut guard = shared.lock();
        let core = &mut *guard;
        let mut session = Session::new(shared.next_client_id());
        let mut host = SyncHost { hub: &mut core.hub, shared };
        replies.extend(http_api::run_pipeline(&mut core.engine, &mut host, &mut session, grant, chunk, now));
        core.engine.close_session(&mut session);
        core.after_batch(shared, now);
    }
    replies
}

/// Runs commands as one MULTI/EXEC: atomically, one change group. `Err` when nothing ran
/// (a refused or malformed command, or a transaction command inside).
pub fn run_multi(shared: &Shared, grant: &Grant, commands: &[Vec<Bytes>]) -> Result<Vec<Reply>, Reply> {
    let now = now_ms();
    let mut guard = shared.lock();
    let core = &mut *guard;
    let mut session = Session::new(shared.next_client_id());
    let mut host = SyncHost { hub: &mut core.hub, shared };
    let result = http_api::run_multi(&mut core.engine, &mut host, &mut session, grant, commands, now);
    core.engine.close_session(&mut session);
    core.after_batch(shared, now);
    result
}
