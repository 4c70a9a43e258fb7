//! Sync and HTTP access tokens on the hub: static tokens from configuration, the
//! [`Auth`] the WebSocket and HTTP listeners check tokens with, and `RECACHED.TOKEN`, the
//! admin command that mints a JWT for a backend that only has a Redis client.
//!
//! A static token is configured as `TOKEN:read=pat,pat;write=pat[;sub=NAME]`
//! (`--sync-token`, repeatable, or one `sync-token` line per token in the config file).
//! `read`/`write` may be empty or absent (no keys); `sub` defaults to `static`. Patterns
//! cannot contain `,` or `;` in this form; mint a JWT for those.

use bytes::Bytes;
use recached_engine::sync::token::{self, Claims, MAX_PATTERNS, MAX_PATTERN_LEN, MAX_SUBJECT_LEN};
use recached_engine::sync::{Auth, Grant, Scope};
use recached_engine::{reply::errors, util, Reply};

use crate::config::Settings;

/// Longest lifetime `RECACHED.TOKEN` mints: ten years.
const MAX_TTL_SECS: i64 = 10 * 365 * 24 * 3600;

/// A static token from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticToken {
    /// What the client presents.
    pub token: String,
    /// What it grants (never expires).
    pub grant: Grant,
}

impl StaticToken {
    /// Parses `TOKEN:read=pat,pat;write=pat[;sub=NAME]`. The error text names the problem.
    pub fn parse(spec: &str) -> Result<StaticToken, String> {
        let (token, rest) = spec.split_once(':').ok_or_else(|| "expected TOKEN:read=pat,…;write=pat,…".to_string())?;
        if token.is_empty() || token.len() > token::MAX_TOKEN_LEN || token.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
            return Err("the token must be 1 to 16384 bytes without spaces".to_string());
        }
        if token::looks_like_jwt(token.as_bytes()) {
            return Err("a static token must not look like a JWT (two dots)".to_string());
        }
        let mut read: Vec<String> = Vec::new();
        let mut write: Vec<String> = Vec::new();
        let mut subject = "static".to_string();
        for part in rest.split(';').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| format!("expected name=value in '{}'", part))?;
            let list = || value.split(',').filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<String>>();
            match name.trim() {
                "read" => read = list(),
                "write" => write = list(),
                "sub" => subject = value.to_string(),
                other => return Err(format!("unknown part '{}' (expected read, write or sub)", other)),
            }
        }
        if subject.len() > MAX_SUBJECT_LEN {
            return Err("sub is too long".to_string());
        }
        for list in [&read, &write] {
            if list.len() > MAX_PATTERNS || list.iter().any(|p| p.len() > MAX_PATTERN_LEN) {
                return Err(format!("at most {} patterns of at most {} bytes each", MAX_PATTERNS, MAX_PATTERN_LEN));
            }
        }
        let grant = Grant { subject, read: Scope::new(&read), write: Scope::new(&write), expires_ms: None };
        Ok(StaticToken { token: token.to_string(), grant })
    }
}

/// The token rules of a hub's settings: the JWT secret and the static tokens, or open.
pub fn auth_from(settings: &Settings) -> Auth {
    let mut auth = if settings.sync_secret.is_empty() { Auth::open() } else { Auth::with_secret(settings.sync_secret.as_bytes()) };
    for spec in &settings.sync_tokens {
        // Validated when the setting was read; a spec that fails here is skipped, not fatal.
        if let Ok(t) = StaticToken::parse(spec) {
            auth.add_static(t.token.into_bytes(), t.grant);
        }
    }
    auth
}

/// `RECACHED.TOKEN subject ttl-seconds [READ numpatterns pattern …] [WRITE numpatterns pattern …]`
///
/// Mints a JWT (HS256, signed with `sync-secret`) for `subject`, valid `ttl-seconds` from
/// now, granting the given read and write patterns. Admin only: the command is flagged
/// `admin`, so sync and HTTP clients are refused; over RESP it needs AUTH when
/// `requirepass` is set.
pub fn token_command(settings: &Settings, args: &[Bytes], now_ms: u64) -> Reply {
    if settings.sync_secret.is_empty() {
        return Reply::err("ERR no sync secret configured: start the hub with --sync-secret to mint tokens");
    }
    let subject = match std::str::from_utf8(&args[1]) {
        Ok(s) if s.len() <= MAX_SUBJECT_LEN => s.to_string(),
        _ => return Reply::err("ERR the subject must be UTF-8 of at most 256 bytes"),
    };
    let ttl = match util::parse_i64(&args[2]) {
        Some(t) if t > 0 && t <= MAX_TTL_SECS => t as u64,
        Some(_) => return Reply::err("ERR invalid expire time in 'recached.token' command"),
        None => return Reply::err(errors::NOT_INTEGER),
    };
    let mut read: Option<Vec<String>> = None;
    let mut write: Option<Vec<String>> = None;
    let mut i = 3;
    while i < args.len() {
        let slot = if args[i].eq_ignore_ascii_case(b"READ") {
            &mut read
        } else if args[i].eq_ignore_ascii_case(b"WRITE") {
            &mut write
        } else {
            return Reply::err(errors::SYNTAX);
        };
        if slot.is_some() {
            return Reply::err(errors::SYNTAX);
        }
        let Some(n) = args.get(i + 1).and_then(|a| util::parse_i64(a)) else { return Reply::err(errors::SYNTAX) };
        if n < 0 || n as usize > MAX_PATTERNS {
            return Reply::err("ERR numpatterns must be between 0 and 64");
        }
        let n = n as usize;
        let Some(pats) = args.get(i + 2..i + 2 + n) else { return Reply::err(errors::SYNTAX) };
        let mut list = Vec::with_capacity(n);
        for p in pats {
            match std::str::from_utf8(p) {
                Ok(s) if s.len() <= MAX_PATTERN_LEN => list.push(s.to_string()),
                _ => return Reply::err("ERR patterns must be UTF-8 of at most 512 bytes"),
            }
        }
        *slot = Some(list);
        i += 2 + n;
    }
    let claims = Claims { sub: subject, exp: now_ms / 1000 + ttl, read: read.unwrap_or_default(), write: write.unwrap_or_default() };
    Reply::Bulk(Bytes::from(token::mint(&claims, settings.sync_secret.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn static_token_specs() {
        let t = StaticToken::parse("abc:read=user:1:*,pub:*;write=user:1:*;sub=alice").unwrap();
        assert_eq!(t.token, "abc");
        assert_eq!(t.grant.subject, "alice");
        assert!(t.grant.can_read(b"user:1:x") && t.grant.can_read(b"pub:y") && !t.grant.can_read(b"user:2:x"));
        assert!(t.grant.can_write(b"user:1:x") && !t.grant.can_write(b"pub:y"));
        assert_eq!(t.grant.expires_ms, None);
        let t = StaticToken::parse("admin:read=*;write=*").unwrap();
        assert!(t.grant.is_unrestricted());
        assert_eq!(t.grant.subject, "static");
        let t = StaticToken::parse("ro:read=*").unwrap();
        assert!(t.grant.read.is_unrestricted() && !t.grant.can_write(b"k"));
        assert!(StaticToken::parse("nocolon").is_err());
        assert!(StaticToken::parse(":read=*").is_err());
        assert!(StaticToken::parse("a.b.c:read=*").is_err());
        assert!(StaticToken::parse("t:reed=*").is_err());
        assert!(StaticToken::parse("t:read").is_err());
    }

    #[test]
    fn auth_from_settings() {
        let s = Settings::default();
        assert!(auth_from(&s).is_open());
        let mut s = Settings::default();
        s.set("sync-token", "tok:read=a:*;write=a:*").unwrap();
        let auth = auth_from(&s);
        assert!(!auth.is_open());
        assert!(auth.authenticate(b"tok", 0).unwrap().can_write(b"a:1"));
        assert!(auth.authenticate(b"other", 0).is_err());
    }

    #[test]
    fn mint_command() {
        let mut s = Settings::default();
        let now = 1_700_000_000_000;
        let r = token_command(&s, &args(&["RECACHED.TOKEN", "alice", "60"]), now);
        assert!(matches!(r, Reply::Error(ref e) if e.contains("no sync secret")), "{:?}", r);
        s.sync_secret = "k".into();
        let r = token_command(&s, &args(&["RECACHED.TOKEN", "alice", "60", "READ", "2", "user:1:*", "pub:*", "WRITE", "1", "user:1:*"]), now);
        let Reply::Bulk(t) = r else { panic!("{:?}", r) };
        let c = token::verify(&t, b"k", now).unwrap();
        assert_eq!(c, Claims { sub: "alice".into(), exp: now / 1000 + 60, read: vec!["user:1:*".into(), "pub:*".into()], write: vec!["user:1:*".into()] });
        assert!(token::verify(&t, b"k", now + 60_000).is_err(), "expires after ttl");
        let auth = auth_from(&s);
        assert!(auth.authenticate(&t, now).unwrap().can_write(b"user:1:x"));
        // Errors.
        let e = |a: &[&str]| match token_command(&s, &args(a), now) {
            Reply::Error(e) => e.to_string(),
            other => panic!("{:?}", other),
        };
        assert_eq!(e(&["RECACHED.TOKEN", "a", "x"]), "ERR value is not an integer or out of range");
        assert!(e(&["RECACHED.TOKEN", "a", "0"]).contains("invalid expire"));
        assert_eq!(e(&["RECACHED.TOKEN", "a", "1", "READ", "2", "x"]), "ERR syntax error");
        assert_eq!(e(&["RECACHED.TOKEN", "a", "1", "READ", "1", "x", "READ", "1", "y"]), "ERR syntax error");
        assert_eq!(e(&["RECACHED.TOKEN", "a", "1", "BOTH", "1", "x"]), "ERR syntax error");
        assert!(e(&["RECACHED.TOKEN", "a", "1", "READ", "65"]).contains("between 0 and 64"));
        // No patterns at all is a valid (useless) token.
        assert!(matches!(token_command(&s, &args(&["RECACHED.TOKEN", "a", "1"]), now), Reply::Bulk(_)));
    }
}
