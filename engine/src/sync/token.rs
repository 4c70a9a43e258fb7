//! Access tokens: JWT (RFC 7519) signed with HS256 (HMAC-SHA256), so any backend can mint
//! them with an ordinary JWT library and the shared secret.
//!
//! Claims (see `docs/protocol.md`, "Tokens"):
//! - `sub`: the subject (user id), a string;
//! - `exp`: expiry, seconds since the Unix epoch (JWT `NumericDate`), required;
//! - `read`: the key patterns (Redis globs) the holder may read, an array of strings;
//! - `write`: the key patterns it may write, an array of strings.
//!
//! Other claims (`iat`, `nbf`, `iss`, …) are ignored. The header must say `"alg":"HS256"`;
//! any other algorithm (`none` included) is refused as malformed. The signature is checked
//! before the payload is parsed, in constant time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes: bounds the work a hostile HELLO can cause.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Most patterns a token may carry in `read` or in `write`.
pub const MAX_PATTERNS: usize = 64;

/// Longest pattern a token may carry, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;

/// Longest subject, in bytes.
pub const MAX_SUBJECT_LEN: usize = 256;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a well-formed HS256 JWT with the required claims (bad base64, bad JSON, wrong
    /// `alg`, missing `exp`, too long, too many patterns, …).
    #[error("malformed token")]
    Malformed,
    /// The signature does not match: forged, altered, or signed with another secret.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is at or before the current time.
    #[error("token expired")]
    Expired,
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: who the token is for.
    pub sub: String,
    /// Expiry in seconds since the Unix epoch.
    pub exp: u64,
    /// Key patterns the holder may read (and subscribe to).
    #[serde(default)]
    pub read: Vec<String>,
    /// Key patterns the holder may write.
    #[serde(default)]
    pub write: Vec<String>,
}

impl Claims {
    /// Expiry in Unix milliseconds.
    pub fn exp_ms(&self) -> u64 {
        self.exp.saturating_mul(1000)
    }

    fn check_bounds(&self) -> Result<(), TokenError> {
        let patterns_ok = |p: &[String]| p.len() <= MAX_PATTERNS && p.iter().all(|s| s.len() <= MAX_PATTERN_LEN);
        if self.sub.len() > MAX_SUBJECT_LEN || !patterns_ok(&self.read) || !patterns_ok(&self.write) {
            return Err(TokenError::Malformed);
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length, so new_from_slice never fails; the fallback only
    // keeps the code free of panics.
    HmacSha256::new_from_slice(secret).unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// Mints a token for `claims`, signed with `secret`.
pub fn mint(claims: &Claims, secret: &[u8]) -> String {
    let payload = serde_json::to_vec(claims).unwrap_or_default();
    let mut out = URL_SAFE_NO_PAD.encode(HEADER);
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let mut m = mac(secret);
    m.update(out.as_bytes());
    let sig = m.finalize().into_bytes();
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    out
}

/// Checks a token's form, signature and expiry at `now_ms` (Unix milliseconds) and returns
/// its claims.
pub fn verify(token: &[u8], secret: &[u8], now_ms: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split(|&c| c == b'.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)?;
    let mut m = mac(secret);
    m.update(&token[..h.len() + 1 + p.len()]);
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
    claims.check_bounds()?;
    if claims.exp_ms() <= now_ms {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Whether `token` has the shape of a JWT (three dot-separated parts), as opposed to a
/// static token from configuration.
pub fn looks_like_jwt(token: &[u8]) -> bool {
    token.iter().filter(|&&c| c == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn claims() -> Claims {
        Claims { sub: "alice".into(), exp: NOW / 1000 + 60, read: vec!["user:1:*".into()], write: vec!["user:1:cart".into()] }
    }

    #[test]
    fn mint_then_verify() {
        let t = mint(&claims(), b"s3cret");
        assert!(looks_like_jwt(t.as_bytes()));
        assert_eq!(verify(t.as_bytes(), b"s3cret", NOW), Ok(claims()));
    }

    #[test]
    fn wrong_secret_is_bad_signature() {
        let t = mint(&claims(), b"s3cret");
        assert_eq!(verify(t.as_bytes(), b"other", NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn altered_payload_is_bad_signature() {
        let t = mint(&claims(), b"k");
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims();
        c.read = vec!["*".into()];
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()), parts[2]);
        assert_eq!(verify(forged.as_bytes(), b"k", NOW), Err(TokenError::BadSignature));
        // A flipped signature byte.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[0] ^= 1;
        let forged = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert_eq!(verify(forged.as_bytes(), b"k", NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn expiry_is_checked_against_the_given_time() {
        let t = mint(&claims(), b"k");
        assert!(verify(t.as_bytes(), b"k", NOW + 59_999).is_ok());
        assert_eq!(verify(t.as_bytes(), b"k", NOW + 60_000), Err(TokenError::Expired));
    }

    #[test]
    fn malformed_tokens() {
        for bad in [&b""[..], b"abc", b"a.b", b"a.b.c.d", b"!!!.???.***", b"e30.e30.e30"] {
            assert_eq!(verify(bad, b"k", NOW), Err(TokenError::Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
        let sign = |header: &str, payload: &str| {
            let mut s = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
            let mut m = mac(b"k");
            m.update(s.as_bytes());
            s.push('.');
            s.push_str(&URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()));
            s
        };
        // alg none / other algorithms are refused even with a valid MAC.
        let t = sign(r#"{"alg":"none"}"#, r#"{"sub":"a","exp":9999999999}"#);
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        let t = sign(r#"{"alg":"HS512"}"#, r#"{"sub":"a","exp":9999999999}"#);
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        // Missing exp, wrong claim types, payload not JSON.
        let t = sign(HEADER, r#"{"sub":"a"}"#);
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        let t = sign(HEADER, r#"{"sub":"a","exp":"soon"}"#);
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        let t = sign(HEADER, r#"{"sub":"a","exp":9999999999,"read":"*"}"#);
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        let t = sign(HEADER, "not json");
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        // Too many patterns.
        let many: Vec<String> = (0..MAX_PATTERNS + 1).map(|i| format!("k{i}")).collect();
        let t = sign(HEADER, &serde_json::json!({"sub":"a","exp":9999999999u64,"read":many}).to_string());
        assert_eq!(verify(t.as_bytes(), b"k", NOW), Err(TokenError::Malformed));
        // Oversize.
        let huge = vec![b'a'; MAX_TOKEN_LEN + 1];
        assert_eq!(verify(&huge, b"k", NOW), Err(TokenError::Malformed));
        // Extra claims are fine, read/write default to empty.
        let t = sign(HEADER, r#"{"sub":"a","exp":9999999999,"iat":1,"iss":"x"}"#);
        let c = verify(t.as_bytes(), b"k", NOW).unwrap();
        assert!(c.read.is_empty() && c.write.is_empty());
    }

    #[test]
    fn interoperates_with_an_independent_implementation() {
        // Built with Python's hmac/hashlib/base64 (the JWT recipe by hand), secret "secret".
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1IiwiZXhwIjo0MTAyNDQ0ODAwLCJyZWFkIjpbImE6KiJdLCJ3cml0ZSI6W119.v2JPCjg2Z8bho-JpIMgfB-51o2WZGyHHVC2dybds5TQ";
        let c = Claims { sub: "u".into(), exp: 4102444800, read: vec!["a:*".into()], write: vec![] };
        assert_eq!(verify(t.as_bytes(), b"secret", NOW), Ok(c.clone()));
        assert_eq!(mint(&c, b"secret"), t);
    }
}
