//! How the key inspector shows values and TTLs.

use recached_engine::Reply;

/// Longest value preview, in characters.
const PREVIEW_CHARS: usize = 60;

/// A remaining TTL as the inspector shows it: `PTTL`'s answer in ms (`-1`: no expiry,
/// `-2`: gone) → `"—"`, `"gone"`, `"4.2 s"`, `"12 min"`.
pub fn ttl(pttl: i64) -> String {
    match pttl {
        -1 => "—".to_string(),
        i64::MIN..=-2 => "gone".to_string(),
        0..=59_999 => format!("{:.1} s", pttl as f64 / 1000.0),
        60_000..=3_599_999 => format!("{} min", pttl / 60_000),
        _ => format!("{} h", pttl / 3_600_000),
    }
}

/// A one-line preview of a read's reply (`GET`, `HGETALL`, `LRANGE`, `SMEMBERS`,
/// `ZRANGE … WITHSCORES`), cut at [`PREVIEW_CHARS`].
pub fn preview(reply: &Reply) -> String {
    let mut out = String::new();
    write_reply(reply, &mut out);
    if out.chars().count() > PREVIEW_CHARS {
        out = out.chars().take(PREVIEW_CHARS - 1).collect::<String>() + "…";
    }
    out
}

fn write_reply(reply: &Reply, out: &mut String) {
    match reply {
        Reply::Ok => out.push_str("OK"),
        Reply::Simple(s) => out.push_str(s),
        Reply::Error(e) => {
            out.push_str("(error) ");
            out.push_str(e);
        }
        Reply::Int(i) => out.push_str(&i.to_string()),
        Reply::Bulk(b) | Reply::Verbatim(_, b) => out.push_str(&String::from_utf8_lossy(b)),
        Reply::Nil | Reply::NilArray => out.push_str("(nil)"),
        Reply::Double(d) => out.push_str(&d.to_string()),
        Reply::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Reply::Array(items) | Reply::Set(items) | Reply::Push(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_reply(item, out);
                if out.len() > PREVIEW_CHARS * 4 {
                    out.push_str(", …");
                    break;
                }
            }
            out.push(']');
        }
        Reply::Map(pairs) => {
            out.push('{');
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_reply(k, out);
                out.push_str(": ");
                write_reply(v, out);
                if out.len() > PREVIEW_CHARS * 4 {
                    out.push_str(", …");
                    break;
                }
            }
            out.push('}');
        }
    }
}

/// The read that previews a key of type `kind` (`TYPE`'s answer), `None` for unknown.
pub fn preview_command(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "string" => &["GET"],
        "hash" => &["HGETALL"],
        "list" => &["LRANGE", "0", "9"],
        "set" => &["SMEMBERS"],
        "zset" => &["ZRANGE", "0", "9", "WITHSCORES"],
        _ => return None,
    })
}

/// Money in cents as `12.30`.
pub fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec().into())
    }

    #[test]
    fn ttls() {
        assert_eq!(ttl(-1), "—");
        assert_eq!(ttl(-2), "gone");
        assert_eq!(ttl(4_249), "4.2 s");
        assert_eq!(ttl(0), "0.0 s");
        assert_eq!(ttl(125_000), "2 min");
        assert_eq!(ttl(7_300_000), "2 h");
    }

    #[test]
    fn previews() {
        assert_eq!(preview(&b("on")), "on");
        assert_eq!(preview(&Reply::Nil), "(nil)");
        assert_eq!(preview(&Reply::Array(vec![b("apple"), b("2"), b("bread"), b("1")])), "[apple, 2, bread, 1]");
        assert_eq!(preview(&Reply::Map(vec![(b("a"), Reply::Int(1))])), "{a: 1}");
        let long = preview(&b(&"x".repeat(500)));
        assert_eq!(long.chars().count(), PREVIEW_CHARS);
        assert!(long.ends_with('…'));
        let many = Reply::Array((0..10_000).map(Reply::Int).collect());
        assert!(preview(&many).chars().count() <= PREVIEW_CHARS);
        assert_eq!(preview_command("hash"), Some(&["HGETALL"][..]));
        assert_eq!(preview_command("stream"), None);
        assert_eq!(cents(1234), "12.34");
        assert_eq!(cents(5), "0.05");
    }
}
