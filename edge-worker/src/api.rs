//! The HTTP command API (`docs/protocol.md` section 12, Upstash's REST API): the engine's
//! shared mapping and execution, [`recached_engine::sync::http_api`]; the Durable Object
//! owns its engine outright and calls it directly.

pub use recached_engine::sync::http_api::*;
