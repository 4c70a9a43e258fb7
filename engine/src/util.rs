//! Number parsing and formatting with Redis's exact rules.

/// Parses a redis.conf memory value: `100`, `1k` (1000), `1kb` (1024), `5mb`, `2gb`, `1g`
/// (case-insensitive, `b` optional; spaces only around the whole value, as Redis's
/// `memtoull`). The one parser of sizes for the hub's flags and config, the edge's vars and
/// the browser cache's options.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, mul): (&str, u64) = if let Some(d) = t.strip_suffix("gb") {
        (d, 1 << 30)
    } else if let Some(d) = t.strip_suffix("mb") {
        (d, 1 << 20)
    } else if let Some(d) = t.strip_suffix("kb") {
        (d, 1 << 10)
    } else if let Some(d) = t.strip_suffix('g') {
        (d, 1_000_000_000)
    } else if let Some(d) = t.strip_suffix('m') {
        (d, 1_000_000)
    } else if let Some(d) = t.strip_suffix('k') {
        (d, 1_000)
    } else if let Some(d) = t.strip_suffix('b') {
        (d, 1)
    } else {
        (t.as_str(), 1)
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mul)
}

/// Parses an integer the way Redis's `string2ll` does: optional `-`, no `+`, no leading
/// zeros, no spaces, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !(b'1'..=b'9').contains(&digits[0]) {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    if neg {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else if v > i64::MAX as u64 {
        None
    } else {
        Some(v as i64)
    }
}

/// Like [`parse_i64`]: a string is stored as an integer only when it is the canonical
/// decimal form, so GET returns exactly the bytes that were SET.
pub fn parse_canonical_i64(s: &[u8]) -> Option<i64> {
    parse_i64(s)
}

/// Parses a double as Redis's `getDoubleFromObject` does: the whole string, no leading
/// space, `inf`/`-inf` allowed, NaN refused.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty() || s[0].is_ascii_whitespace() {
        return None;
    }
    let text = std::str::from_utf8(s).ok()?;
    let lower = text.to_ascii_lowercase();
    let v = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => {
            if lower.contains("inf") || lower.contains("nan") {
                return None;
            }
            text.parse::<f64>().ok()?
        }
    };
    if v.is_nan() {
        None
    } else {
        Some(v)
    }
}

/// Formats a double as Redis 7.0 replies it (`%.17g`, integers without a fraction,
/// `inf`/`-inf`). Used for ZSCORE, ZINCRBY, WITHSCORES and RESP3 doubles.
pub fn fmt_double(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    fmt_g(v, 17)
}

/// C's `%.{prec}g`.
pub fn fmt_g(v: f64, prec: usize) -> String {
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mant, exp) = match sci.split_once('e') {
        Some(p) => p,
        None => return sci,
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_fraction(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{}{:02}", mant, sign, exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_fraction(&format!("{:.*}", decimals, v)).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Formats the result of INCRBYFLOAT / HINCRBYFLOAT: the shortest decimal that reads
/// back to the same double, never in exponent form, cut to 17 decimals. Redis prints
/// `%.17Lf` of a long double and trims zeros, which gives the same text for every double
/// that survives the round trip; the cut reproduces its rounding of tiny values
/// (`1e-20` prints `0`).
pub fn fmt_incr_float(v: f64) -> String {
    let mut s = format!("{}", v);
    if s.find('.').is_some_and(|dot| s.len() - dot - 1 > 17) {
        s = trim_fraction(&format!("{:.17}", v)).to_string();
    }
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// Resolves a Redis `start`/`stop` pair (negative counts from the end) against `len`.
/// Returns the inclusive range, or `None` when it is empty.
pub fn resolve_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let mut start = if start < 0 { len + start } else { start };
    let mut stop = if stop < 0 { len + stop } else { stop };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values() {
        for (text, want) in [("100", 100), ("1k", 1000), ("1kb", 1024), ("5MB", 5 << 20), ("2gb", 2 << 30), ("1g", 1_000_000_000), ("7b", 7), (" 16mb ", 16 << 20)] {
            assert_eq!(parse_memory(text), Some(want), "{text}");
        }
        for bad in ["", "mb", "-1", "+1", "1.5mb", "10 mb", "lots", "99999999999999999999gb"] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        for bad in [&b""[..], b"+1", b"01", b"-0", b" 1", b"1 ", b"1a", b"-", b"1.0"] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"+inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"1e3"), Some(1000.0));
        assert_eq!(parse_f64(b"abc"), None);
    }

    #[test]
    fn double_format_matches_redis_7_0() {
        assert_eq!(fmt_double(1.0), "1");
        assert_eq!(fmt_double(1.5), "1.5");
        assert_eq!(fmt_double(0.1), "0.10000000000000001");
        assert_eq!(fmt_double(-2.0), "-2");
        assert_eq!(fmt_double(1e20), "1e+20");
        assert_eq!(fmt_double(123456789.0), "123456789");
        assert_eq!(fmt_double(f64::INFINITY), "inf");
        assert_eq!(fmt_double(0.0001), "0.0001");
        assert_eq!(fmt_double(0.00001), "1.0000000000000001e-05");
        assert_eq!(fmt_incr_float(10.5 + 0.1), "10.6");
        assert_eq!(fmt_incr_float(3.0), "3");
        assert_eq!(fmt_incr_float(5e20), "500000000000000000000");
        assert_eq!(fmt_incr_float(1e-20), "0");
        assert_eq!(fmt_incr_float(-1e-18), "0");
        assert_eq!(fmt_incr_float(1.2345678901234568e-5), "0.00001234567890123");
    }

    #[test]
    fn ranges() {
        assert_eq!(resolve_range(0, -1, 3), Some((0, 2)));
        assert_eq!(resolve_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(resolve_range(2, 1, 3), None);
        assert_eq!(resolve_range(5, 10, 3), None);
        assert_eq!(resolve_range(0, 0, 0), None);
    }
}

/// One step of a SCAN-family cursor over an index-addressable collection of `len` items
/// (the keyspace, a hash, a set), visiting positions from the end towards the start.
///
/// The cursor is the number of positions not yet visited (0 starts a scan and ends it).
/// Collections remove with `swap_remove`, which moves the *last* item into the hole: when
/// scanning downwards the moved item has either been visited already (hole in the visited
/// part) or lands in the unvisited part (visited twice, which SCAN allows). Items added
/// during a scan go to the end, which SCAN may miss. So every item present for the whole
/// scan is returned at least once, as Redis guarantees.
///
/// Calls `visit(index)` for up to `count` positions and returns the next cursor.
pub fn scan_step(len: usize, cursor: u64, count: usize, mut visit: impl FnMut(usize)) -> u64 {
    let mut left = if cursor == 0 { len } else { (cursor as usize).min(len) };
    let mut steps = count.max(1);
    while left > 0 && steps > 0 {
        left -= 1;
        steps -= 1;
        visit(left);
    }
    left as u64
}

/// Parses a SCAN cursor as Redis's `strtoul` does: an unsigned 64-bit integer with an
/// optional sign (`-1` wraps to the largest cursor, the empty string is 0), else `None`
/// for `ERR invalid cursor`.
pub fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() {
        return Some(0);
    }
    let (neg, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(if neg { v.wrapping_neg() } else { v })
}

#[cfg(test)]
mod scan_tests {
    use super::scan_step;

    #[test]
    fn survivors_are_seen_despite_swap_remove() {
        let mut items: Vec<u32> = (0..100).collect();
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = scan_step(items.len(), cursor, 7, |i| {
                seen.insert(items[i]);
            });
            // remove some items that are multiples of 5, from anywhere, with swap_remove
            round += 1;
            if let Some(pos) = items.iter().position(|&x| x % 5 == 0 && x as usize % 7 == round % 7) {
                items.swap_remove(pos);
            }
            if cursor == 0 {
                break;
            }
        }
        for x in 0..100u32 {
            if x % 5 != 0 {
                assert!(seen.contains(&x), "missed {}", x);
            }
        }
    }
}
