//! Dev mode (`recached --dev`): the hub mints demo tokens for anyone who asks, so the demo
//! app (demo-app/) runs with no backend of its own.
//!
//! Safe by construction:
//! - off unless `--dev` (or `RECACHED_DEV=yes`, or `dev yes` in the config file) is given;
//!   without it `GET /dev/token` is a 404 like any unknown path;
//! - refused at start when any `bind` address is beyond loopback (no password, protected
//!   mode or network setting lifts that), so only programs on this machine can ask;
//! - never an open hub: without `--sync-secret` a random secret is made for this process,
//!   so every sync client needs a token and a dev token grants only its user's scope;
//! - said loudly at start.
//!
//! `GET /dev/token?user=NAME` (NAME: 1 to 32 of `A-Z a-z 0-9 _ -`) answers
//! `{"token", "sub", "read", "write", "exp"}`: a JWT valid [`DEV_TOKEN_TTL_SECS`] that reads
//! the shared demo keys and the user's cart, and writes the user's own keys only (see
//! [`scope`]).

use recached_engine::sync::token::{self, Claims};
use serde_json::{json, Value};

use crate::config::Settings;

/// Lifetime of a dev token: a day.
pub const DEV_TOKEN_TTL_SECS: u64 = 24 * 3600;

/// What start-up logs when dev mode is on.
pub const BANNER: &str = "DEV MODE: GET /dev/token on the sync port mints a token for any user who asks. \
    For local development and the demo only; loopback addresses only. Never run --dev in production.";

/// Whether `user` may be asked for: 1 to 32 of `A-Z a-z 0-9 _ -` (no glob metacharacter,
/// so `cart:<user>:*` names one user's keys and nobody else's).
pub fn valid_user(user: &str) -> bool {
    (1..=32).contains(&user.len()) && user.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The (read, write) patterns of a dev token for `user`:
///
/// | keys | read | write |
/// |---|---|---|
/// | `demo:*` (the shared counter) | yes | yes |
/// | `presence:*` (heartbeats) | yes | only `presence:<user>` |
/// | `flag:*` (feature flags, set by a backend) | yes | no |
/// | `cart:<user>:*` | yes | yes |
///
/// Nothing else: another user's cart is neither readable nor writable.
pub fn scope(user: &str) -> (Vec<String>, Vec<String>) {
    let read = vec!["demo:*".to_string(), "presence:*".to_string(), "flag:*".to_string(), format!("cart:{user}:*")];
    let write = vec!["demo:*".to_string(), format!("presence:{user}"), format!("cart:{user}:*")];
    (read, write)
}

/// Makes dev mode safe before anything binds: refuses non-loopback `bind` addresses and
/// gives the hub a random token secret when it has none. Logs the banner. Does nothing
/// when dev mode is off.
pub fn prepare(settings: &mut Settings) -> Result<(), String> {
    if !settings.dev {
        return Ok(());
    }
    if settings.binds_beyond_loopback() {
        return Err(format!(
            "refusing dev mode on {}: --dev mints tokens for anyone who asks, so it listens on loopback only \
             (bind 127.0.0.1 or ::1, or drop --dev)",
            settings.bind.join(" ")
        ));
    }
    if settings.sync_secret.is_empty() {
        settings.sync_secret = random_secret();
    }
    tracing::warn!("{}", BANNER);
    Ok(())
}

/// The answer to `GET /dev/token?user=…`: (HTTP status, JSON body).
pub fn token_answer(settings: &Settings, user: Option<&[u8]>, now_ms: u64) -> (u16, Value) {
    if !settings.dev {
        return (404, json!({ "error": "not found (/dev/token is served only by a hub started with --dev)" }));
    }
    let Some(user) = user.and_then(|u| std::str::from_utf8(u).ok()).filter(|u| valid_user(u)) else {
        return (400, json!({ "error": "user must be 1 to 32 of A-Z a-z 0-9 _ - (GET /dev/token?user=alice)" }));
    };
    if settings.sync_secret.is_empty() {
        // `prepare` always sets one; a hub built without it refuses rather than run open.
        return (503, json!({ "error": "dev mode has no token secret" }));
    }
    let (read, write) = scope(user);
    let claims = Claims { sub: user.to_string(), exp: now_ms / 1000 + DEV_TOKEN_TTL_SECS, read, write };
    let token = token::mint(&claims, settings.sync_secret.as_bytes());
    (200, json!({ "token": token, "sub": claims.sub, "read": claims.read, "write": claims.write, "exp": claims.exp }))
}

/// 32 random bytes as hex, from the OS (`/dev/urandom`), else from std's randomly seeded
/// hasher keys.
fn random_secret() -> String {
    use std::io::Read;
    let mut buf = [0u8; 32];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !from_os {
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
            chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Settings {
        Settings { dev: true, ..Settings::default() }
    }

    #[test]
    fn prepare_refuses_beyond_loopback_and_never_runs_open() {
        let mut s = Settings::default();
        prepare(&mut s).unwrap();
        assert!(s.sync_secret.is_empty(), "dev off: nothing changes");

        let mut s = dev();
        prepare(&mut s).unwrap();
        assert_eq!(s.sync_secret.len(), 64, "a random secret");
        let mut again = dev();
        prepare(&mut again).unwrap();
        assert_ne!(s.sync_secret, again.sync_secret);

        let mut s = Settings { sync_secret: "given".into(), ..dev() };
        prepare(&mut s).unwrap();
        assert_eq!(s.sync_secret, "given", "a configured secret is kept (tokens survive a restart)");

        for bind in [vec!["0.0.0.0"], vec!["127.0.0.1", "192.168.1.5"], vec!["*"], vec!["::"]] {
            let mut s = Settings { bind: bind.iter().map(|b| b.to_string()).collect(), requirepass: "pw".into(), protected_mode: false, ..dev() };
            let e = prepare(&mut s).unwrap_err();
            assert!(e.contains("refusing dev mode") && e.contains("loopback"), "{e}");
        }
        let mut s = Settings { bind: vec!["127.0.0.1".into(), "::1".into(), "localhost".into()], ..dev() };
        assert!(prepare(&mut s).is_ok());
    }

    #[test]
    fn token_answers() {
        let now = 1_700_000_000_000;
        let (status, _) = token_answer(&Settings::default(), Some(b"alice"), now);
        assert_eq!(status, 404);
        let mut s = dev();
        prepare(&mut s).unwrap();
        for bad in [None, Some(&b""[..]), Some(b"a*"), Some(b"a:b"), Some(b"x\xff"), Some(&[b'x'; 33][..])] {
            assert_eq!(token_answer(&s, bad, now).0, 400, "{bad:?}");
        }
        let (status, body) = token_answer(&s, Some(b"alice"), now);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["read"], json!(["demo:*", "presence:*", "flag:*", "cart:alice:*"]));
        assert_eq!(body["write"], json!(["demo:*", "presence:alice", "cart:alice:*"]));
        let token = body["token"].as_str().unwrap();
        let claims = token::verify(token.as_bytes(), s.sync_secret.as_bytes(), now).unwrap();
        assert_eq!(claims.exp, now / 1000 + DEV_TOKEN_TTL_SECS);
        assert!(token::verify(token.as_bytes(), b"another secret", now).is_err());
        let grant = crate::tokens::auth_from(&s).authenticate(token.as_bytes(), now).unwrap();
        assert!(grant.can_read(b"cart:alice:items") && grant.can_write(b"cart:alice:items"));
        assert!(!grant.can_read(b"cart:bob:items") && !grant.can_write(b"cart:bob:items"));
        assert!(grant.can_read(b"flag:x") && !grant.can_write(b"flag:x"));
        assert!(grant.can_write(b"presence:alice") && !grant.can_write(b"presence:bob"));
        assert!(!grant.can_read(b"secret") && !grant.is_unrestricted());
    }
}
