//! Hub settings from Worker vars and secrets.
//!
//! Each native flag of the sync port has a var of the same name in upper snake case
//! (`--sync-backlog-bytes` → `SYNC_BACKLOG_BYTES`), so one table of settings describes both
//! hubs and the conformance launcher maps flags to vars mechanically. Unparseable values
//! fall back to the default (a Worker has no start-up to fail); `docs/edge.md` lists them.

use recached_engine::sync::{Auth, Grant, HubConfig, Scope};

/// Everything the Durable Object and the router read from the environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The sync hub's settings (`SYNC_MAX_MESSAGE`, `SYNC_HANDSHAKE_TIMEOUT`,
    /// `SYNC_BACKLOG_BYTES`, `SYNC_HUB_ID`).
    pub hub: HubConfig,
    /// `SYNC_SECRET`: the HS256 secret of JWT tokens (a wrangler secret in production).
    pub secret: Option<String>,
    /// `SYNC_TOKEN`: static tokens, `TOKEN:read=pat,…;write=pat,…[;sub=NAME]`, separated by
    /// whitespace.
    pub static_tokens: Vec<(String, Grant)>,
    /// `SYNC_ALLOWED_ORIGINS`: comma-separated Origin allow-list; empty allows all.
    pub origins: Vec<String>,
    /// `SYNC_MAX_SOCKETS_PER_IP`: WebSockets per client address and namespace; 0: no cap.
    pub max_sockets_per_ip: usize,
    /// `SYNC_MAX_SOCKETS`: WebSockets per namespace (`maxclients`); 0: no cap.
    pub max_sockets: usize,
    /// `DEFAULT_NAMESPACE`: the namespace of Upstash-style paths without `/v1/ns/…`.
    pub default_namespace: String,
}

/// Parses a size: bytes, or with `kb`/`mb`/`gb` (1024-based) or `k`/`m`/`g` (1000-based).
pub use recached_engine::util::parse_memory as parse_size;

/// Parses a static token spec `TOKEN:read=pat,…;write=pat,…[;sub=NAME]` (the native
/// hub's `--sync-token` form).
pub fn parse_static_token(spec: &str) -> Option<(String, Grant)> {
    let (token, rest) = spec.split_once(':')?;
    if token.is_empty() || recached_engine::sync::token::looks_like_jwt(token.as_bytes()) {
        return None;
    }
    let (mut read, mut write, mut subject) = (Vec::new(), Vec::new(), "static".to_string());
    for part in rest.split(';').filter(|p| !p.is_empty()) {
        let (name, value) = part.split_once('=')?;
        let list = || value.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<String>>();
        match name.trim() {
            "read" => read = list(),
            "write" => write = list(),
            "sub" => subject = value.to_string(),
            _ => return None,
        }
    }
    Some((token.to_string(), Grant { subject, read: Scope::new(&read), write: Scope::new(&write), expires_ms: None }))
}

impl Settings {
    /// Settings from a var lookup (`env.var(name)` in the Worker; a map in tests).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Settings {
        let get = |name: &str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let size = |name: &str| get(name).and_then(|v| parse_size(&v));
        let mut hub = HubConfig { hub_id: "recached-edge".into(), ..HubConfig::default() };
        if let Some(id) = get("SYNC_HUB_ID") {
            hub.hub_id = id;
        }
        if let Some(n) = size("SYNC_MAX_MESSAGE").filter(|n| *n >= 1024) {
            hub.max_message = n as usize;
        }
        if let Some(n) = get("SYNC_HANDSHAKE_TIMEOUT").and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0) {
            hub.handshake_timeout_ms = n;
        }
        if let Some(n) = size("SYNC_BACKLOG_BYTES") {
            hub.backlog_bytes = n as usize;
        }
        let origins = get("SYNC_ALLOWED_ORIGINS")
            .map(|v| v.split(',').map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect())
            .unwrap_or_default();
        let static_tokens = get("SYNC_TOKEN").map(|v| v.split_whitespace().filter_map(parse_static_token).collect()).unwrap_or_default();
        Settings {
            hub,
            secret: get("SYNC_SECRET"),
            static_tokens,
            origins,
            max_sockets_per_ip: get("SYNC_MAX_SOCKETS_PER_IP").and_then(|v| v.parse().ok()).unwrap_or(0),
            max_sockets: get("SYNC_MAX_SOCKETS").and_then(|v| v.parse().ok()).unwrap_or(0),
            default_namespace: get("DEFAULT_NAMESPACE").unwrap_or_else(|| "default".to_string()),
        }
    }

    /// The token rules: the secret's JWTs and the static tokens, or open when neither is set.
    pub fn auth(&self) -> Auth {
        let mut auth = match &self.secret {
            Some(s) => Auth::with_secret(s.as_bytes()),
            None => Auth::open(),
        };
        for (token, grant) in &self.static_tokens {
            auth.add_static(token.as_bytes(), grant.clone());
        }
        auth
    }
}

/// Whether a namespace name is acceptable: 1 to 128 bytes of `[A-Za-z0-9._:-]`.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty() && ns.len() <= 128 && ns.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn defaults_and_vars() {
        let s = Settings::from_vars(|_| None);
        assert!(s.secret.is_none() && s.auth().is_open());
        assert_eq!((s.hub.backlog_bytes, s.default_namespace.as_str()), (HubConfig::default().backlog_bytes, "default"));
        let s = Settings::from_vars(vars(&[
            ("SYNC_SECRET", "s3"),
            ("SYNC_BACKLOG_BYTES", "4kb"),
            ("SYNC_HANDSHAKE_TIMEOUT", "1500"),
            ("SYNC_ALLOWED_ORIGINS", "https://a.example, http://localhost:3000"),
            ("SYNC_MAX_SOCKETS_PER_IP", "4"),
            ("SYNC_MAX_MESSAGE", "64kb"),
            ("SYNC_TOKEN", "ro:read=*;sub=reader rw:read=*;write=*"),
        ]));
        assert_eq!(s.hub.backlog_bytes, 4096);
        assert_eq!(s.hub.handshake_timeout_ms, 1500);
        assert_eq!(s.hub.max_message, 65536);
        assert_eq!(s.origins, vec!["https://a.example", "http://localhost:3000"]);
        assert_eq!(s.max_sockets_per_ip, 4);
        let auth = s.auth();
        let ro = auth.authenticate(b"ro", 0).unwrap();
        assert!(ro.can_read(b"k") && !ro.can_write(b"k"));
        assert_eq!(ro.subject, "reader");
        assert!(auth.authenticate(b"rw", 0).unwrap().can_write(b"k"));
        assert!(auth.authenticate(b"nope", 0).is_err());
        // Garbage falls back to defaults.
        let s = Settings::from_vars(vars(&[("SYNC_BACKLOG_BYTES", "lots"), ("SYNC_HANDSHAKE_TIMEOUT", "-1")]));
        assert_eq!(s.hub.backlog_bytes, HubConfig::default().backlog_bytes);
        assert_eq!(s.hub.handshake_timeout_ms, HubConfig::default().handshake_timeout_ms);
    }

    #[test]
    fn sizes_and_namespaces() {
        assert_eq!(parse_size("16mb"), Some(16 << 20));
        assert_eq!(parse_size("2k"), Some(2000));
        assert_eq!(parse_size("x"), None);
        assert!(valid_namespace("app-1:prod"));
        assert!(!valid_namespace("") && !valid_namespace("a/b") && !valid_namespace(&"x".repeat(129)));
        assert!(parse_static_token("a.b.c:read=*").is_none());
    }
}
