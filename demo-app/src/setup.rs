//! What the page is told and what it asks for: the URL parameters, the hub's dev token
//! endpoint and its answer, and the key names every view uses (they match the scope a
//! dev token grants, docs/protocol.md "Dev mode").

use serde_json::Value;

/// The hub the page connects to when the URL names none (the README's run command).
pub const DEFAULT_HUB: &str = "ws://127.0.0.1:6380";

/// The shared counter.
pub const COUNTER_KEY: &str = "demo:counter";
/// Heartbeat keys: `presence:<user>`, written with a TTL.
pub const PRESENCE_PATTERN: &str = "presence:*";
/// Feature flags: `flag:<name>`, read-only for browsers, set by a backend.
pub const FLAG_PATTERN: &str = "flag:*";
/// How long a heartbeat keeps a user online, and how often it is renewed.
pub const PRESENCE_TTL_MS: u64 = 6_000;
/// Heartbeat period (a third of the TTL: one lost beat does not drop the user).
pub const HEARTBEAT_MS: u32 = 2_000;

/// The page's parameters, from its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// WebSocket URL of the hub (`?hub=`), [`DEFAULT_HUB`] when absent.
    pub hub: String,
    /// The user (`?user=`), when given and valid.
    pub user: Option<String>,
    /// A token minted elsewhere (`?token=`); absent: ask the hub's dev endpoint.
    pub token: Option<String>,
}

impl Params {
    /// Reads `?hub=…&user=…&token=…` (the leading `?` is optional). Unknown parameters
    /// are ignored; an invalid user name is dropped (a random one is used instead).
    pub fn from_query(search: &str) -> Params {
        let mut p = Params { hub: DEFAULT_HUB.to_string(), user: None, token: None };
        for (k, v) in parse_query(search) {
            match k.as_str() {
                "hub" if !v.trim().is_empty() => p.hub = v.trim().to_string(),
                "user" if valid_user(&v) => p.user = Some(v),
                "token" if !v.is_empty() => p.token = Some(v),
                _ => {}
            }
        }
        p
    }
}

/// `a=1&b=x%20y` → pairs, percent-decoded (`+` is a space), as `URLSearchParams` does.
pub fn parse_query(search: &str) -> Vec<(String, String)> {
    search
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// A user name the hub's dev endpoint accepts: 1 to 32 of `A-Z a-z 0-9 _ -` (no glob
/// metacharacters, so `cart:<user>:*` scopes exactly one user).
pub fn valid_user(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The dev token endpoint of the hub at WebSocket URL `hub`, for `user`:
/// `ws://h:p/…` → `http://h:p/dev/token?user=…` (`wss` → `https`).
pub fn token_url(hub: &str, user: &str) -> Result<String, String> {
    Ok(format!("{}/dev/token?user={}", http_base(hub)?, encode(user)))
}

/// The hub's health endpoint (`GET /healthz`), from its WebSocket URL.
pub fn health_url(hub: &str) -> Result<String, String> {
    Ok(format!("{}/healthz", http_base(hub)?))
}

/// `ws://h:p/…` → `http://h:p` (`wss` → `https`).
fn http_base(hub: &str) -> Result<String, String> {
    let (scheme, rest) = hub.split_once("://").ok_or_else(|| format!("not a WebSocket URL: {hub}"))?;
    let http = match scheme.to_ascii_lowercase().as_str() {
        "ws" | "http" => "http",
        "wss" | "https" => "https",
        other => return Err(format!("not a WebSocket URL (scheme {other}): {hub}")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("no host in {hub}"));
    }
    Ok(format!("{http}://{authority}"))
}

/// The dev endpoint's answer (`GET /dev/token`): the token and the grant it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevToken {
    /// The JWT.
    pub token: String,
    /// Its subject (the user).
    pub sub: String,
    /// Patterns it may read: the page subscribes to exactly these.
    pub read: Vec<String>,
    /// Patterns it may write.
    pub write: Vec<String>,
}

impl DevToken {
    /// Parses `{"token": …, "sub": …, "read": […], "write": […], …}`.
    pub fn parse(json: &str) -> Result<DevToken, String> {
        let v: Value = serde_json::from_str(json).map_err(|e| format!("bad dev token answer: {e}"))?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let list = |k: &str| -> Vec<String> {
            v.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect()).unwrap_or_default()
        };
        let token = text("token").ok_or_else(|| format!("no token in the answer: {json}"))?;
        Ok(DevToken { token, sub: text("sub").unwrap_or_default(), read: list("read"), write: list("write") })
    }
}

/// The patterns the page mirrors for `user`: the read scope of a dev token (the hub's
/// `GET /dev/token`), used as is with a token given in the URL.
pub fn demo_patterns(user: &str) -> Vec<String> {
    vec!["demo:*".to_string(), PRESENCE_PATTERN.to_string(), FLAG_PATTERN.to_string(), format!("cart:{user}:*")]
}

/// The cross-tab channel of a page: tabs of one browser showing the same user on the same
/// hub share one cache (one WebSocket, held by the leader tab); another user or hub in the
/// same browser gets its own.
pub fn channel_name(user: &str, hub: &str) -> String {
    format!("recached-demo:{user}@{hub}")
}

/// The heartbeat key of `user`.
pub fn presence_key(user: &str) -> String {
    format!("presence:{user}")
}

/// The cart (a hash of product id → quantity) of `user`.
pub fn cart_key(user: &str) -> String {
    format!("cart:{user}:items")
}

/// Someone else's cart: the write the hub refuses.
pub fn foreign_cart_key(user: &str) -> String {
    cart_key(if user == "mallory" { "trudy" } else { "mallory" })
}

/// Whether a flag's value means "on".
pub fn is_on(value: Option<&str>) -> bool {
    matches!(value.map(|v| v.trim().to_ascii_lowercase()).as_deref(), Some("on" | "1" | "true" | "yes"))
}

/// A product of the demo shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// The hash field.
    pub id: &'static str,
    /// What the page shows.
    pub name: &'static str,
    /// Price in cents.
    pub cents: u64,
}

/// The shop.
pub const PRODUCTS: &[Product] = &[
    Product { id: "apple", name: "Apple", cents: 50 },
    Product { id: "bread", name: "Bread", cents: 320 },
    Product { id: "cheese", name: "Cheese", cents: 740 },
    Product { id: "coffee", name: "Coffee", cents: 1150 },
];

/// The total of a cart's `(product id, quantity)` fields, in cents (unknown products and
/// unparsable quantities count zero).
pub fn cart_total(items: &[(String, String)]) -> u64 {
    items
        .iter()
        .filter_map(|(id, qty)| {
            let p = PRODUCTS.iter().find(|p| p.id == id)?;
            Some(p.cents.saturating_mul(qty.parse::<u64>().ok()?))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_from_query() {
        let p = Params::from_query("");
        assert_eq!(p, Params { hub: DEFAULT_HUB.into(), user: None, token: None });
        let p = Params::from_query("?hub=ws%3A%2F%2F127.0.0.1%3A7000&user=alice&x=1");
        assert_eq!(p.hub, "ws://127.0.0.1:7000");
        assert_eq!(p.user.as_deref(), Some("alice"));
        assert_eq!(Params::from_query("user=a*b").user, None, "glob characters refused");
        assert_eq!(Params::from_query("user=").user, None);
        assert_eq!(Params::from_query("hub=&token=t.t.t").hub, DEFAULT_HUB);
        assert_eq!(Params::from_query("token=a.b.c").token.as_deref(), Some("a.b.c"));
        assert_eq!(parse_query("a=x+y%20z&b&c=%zz%4"), vec![("a".into(), "x y z".into()), ("b".into(), "".into()), ("c".into(), "%zz%4".into())]);
    }

    #[test]
    fn users_and_keys() {
        assert!(valid_user("alice") && valid_user("guest-42") && valid_user("a_b"));
        assert!(!valid_user("") && !valid_user(&"x".repeat(33)) && !valid_user("a:b") && !valid_user("a?") && !valid_user("é"));
        assert_eq!(presence_key("bob"), "presence:bob");
        assert_eq!(channel_name("bob", DEFAULT_HUB), "recached-demo:bob@ws://127.0.0.1:6380");
        assert_eq!(cart_key("bob"), "cart:bob:items");
        assert_eq!(foreign_cart_key("bob"), "cart:mallory:items");
        assert_eq!(foreign_cart_key("mallory"), "cart:trudy:items");
    }

    #[test]
    fn token_urls() {
        assert_eq!(token_url("ws://127.0.0.1:6380", "al ice").unwrap(), "http://127.0.0.1:6380/dev/token?user=al%20ice");
        assert_eq!(token_url("wss://hub.example/x?y", "a").unwrap(), "https://hub.example/dev/token?user=a");
        assert!(token_url("127.0.0.1:6380", "a").is_err());
        assert!(token_url("ftp://h", "a").is_err());
        assert!(token_url("ws://", "a").is_err());
        assert_eq!(health_url("ws://127.0.0.1:6380/").unwrap(), "http://127.0.0.1:6380/healthz");
    }

    #[test]
    fn dev_token_answer() {
        let t = DevToken::parse(r#"{"token":"a.b.c","sub":"alice","read":["demo:*","cart:alice:*"],"write":["cart:alice:*"],"exp":1}"#).unwrap();
        assert_eq!(t.token, "a.b.c");
        assert_eq!(t.sub, "alice");
        assert_eq!(t.read, vec!["demo:*", "cart:alice:*"]);
        assert_eq!(t.write, vec!["cart:alice:*"]);
        assert!(DevToken::parse(r#"{"error":"not found"}"#).is_err());
        assert!(DevToken::parse("nope").is_err());
    }

    #[test]
    fn flags_and_totals() {
        assert!(is_on(Some("on")) && is_on(Some(" TRUE ")) && is_on(Some("1")));
        assert!(!is_on(Some("off")) && !is_on(None) && !is_on(Some("")));
        let items = vec![("apple".to_string(), "3".to_string()), ("coffee".into(), "1".into()), ("ghost".into(), "9".into()), ("bread".into(), "x".into())];
        assert_eq!(cart_total(&items), 150 + 1150);
    }
}
