//! Redis glob matching (`*`, `?`, `[abc]`, `[^a-z]`, `\x`) in linear-ish time.
//!
//! Redis's `stringmatchlen` backtracks recursively and can take exponential time on
//! patterns like `a*a*a*a*b`. This matcher keeps one backtrack point (the last `*`),
//! which is correct for globs because a later `*` subsumes every earlier choice, so the
//! cost is O(pattern × subject) at worst.

/// Whether `subject` matches `pattern`. `nocase` folds ASCII case.
pub fn matches(pattern: &[u8], subject: &[u8], nocase: bool) -> bool {
    let eq = |a: u8, b: u8| if nocase { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut p, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, s));
                    continue;
                }
                b'?' => {
                    p += 1;
                    s += 1;
                    continue;
                }
                b'[' => {
                    if let Some((hit, next)) = class(pattern, p, subject[s], nocase) {
                        if hit {
                            p = next;
                            s += 1;
                            continue;
                        }
                    } else if eq(b'[', subject[s]) {
                        p += 1;
                        s += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if eq(pattern[p + 1], subject[s]) {
                        p += 2;
                        s += 1;
                        continue;
                    }
                }
                c => {
                    if eq(c, subject[s]) {
                        p += 1;
                        s += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                p = sp;
                s = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Matches one character against the class starting at `pattern[start] == b'['`.
/// Returns (matched, index after the class), or `None` if the class is unterminated
/// (Redis then treats the rest of the pattern as the class).
fn class(pattern: &[u8], start: usize, c: u8, nocase: bool) -> Option<(bool, usize)> {
    let fold = |x: u8| if nocase { x.to_ascii_lowercase() } else { x };
    let c = fold(c);
    let mut i = start + 1;
    let negate = i < pattern.len() && pattern[i] == b'^';
    if negate {
        i += 1;
    }
    let mut hit = false;
    loop {
        if i >= pattern.len() {
            // Unterminated: Redis ends the class at the end of the pattern.
            return Some((hit != negate, i));
        }
        match pattern[i] {
            b']' => return Some((hit != negate, i + 1)),
            b'\\' if i + 1 < pattern.len() => {
                if fold(pattern[i + 1]) == c {
                    hit = true;
                }
                i += 2;
            }
            lo if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' => {
                let (mut a, mut b) = (fold(lo), fold(pattern[i + 2]));
                if a > b {
                    std::mem::swap(&mut a, &mut b);
                }
                if c >= a && c <= b {
                    hit = true;
                }
                i += 3;
            }
            x => {
                if fold(x) == c {
                    hit = true;
                }
                i += 1;
            }
        }
    }
}

/// Whether a pattern has no special characters (so it names exactly one key).
pub fn is_literal(pattern: &[u8]) -> bool {
    !pattern.iter().any(|c| matches!(c, b'*' | b'?' | b'[' | b'\\'))
}

/// A case-sensitive pattern prepared for matching many subjects (subscriptions and token
/// scopes are matched against every change): a literal or a `prefix*` compares bytes
/// instead of running the matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    src: bytes::Bytes,
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Literal,
    /// `src[..n]` followed by one or more `*`.
    Prefix(usize),
    General,
}

impl Pattern {
    /// Prepares `src`.
    pub fn new(src: bytes::Bytes) -> Pattern {
        let special = |c: &u8| matches!(c, b'*' | b'?' | b'[' | b'\\');
        let kind = match src.iter().position(special) {
            None => Kind::Literal,
            Some(n) if src[n..].iter().all(|&c| c == b'*') => Kind::Prefix(n),
            Some(_) => Kind::General,
        };
        Pattern { src, kind }
    }

    /// Whether `subject` matches (as [`matches`] with `nocase` false).
    pub fn matches(&self, subject: &[u8]) -> bool {
        match self.kind {
            Kind::Literal => subject == &self.src[..],
            Kind::Prefix(n) => subject.starts_with(&self.src[..n]),
            Kind::General => matches(&self.src, subject, false),
        }
    }

    /// The pattern's text.
    pub fn as_bytes(&self) -> &bytes::Bytes {
        &self.src
    }
}

#[cfg(test)]
mod tests {
    use super::{matches, Pattern};

    #[test]
    fn prepared_patterns_agree_with_the_matcher() {
        let pats: [&[u8]; 14] = [b"*", b"**", b"", b"user:1:*", b"user:1:**", b"user", b"a\\*b", b"h?llo", b"h[ae]llo", b"*:cart", b"a*b*", b"[", b"x[", b"u*"];
        let subjects: [&[u8]; 12] = [b"", b"user", b"user:1:", b"user:1:cart", b"user:10:cart", b"a*b", b"axb", b"hello", b"hallo", b"u:cart", b"[", b"x["];
        for p in pats {
            let prepared = Pattern::new(bytes::Bytes::copy_from_slice(p));
            for s in subjects {
                assert_eq!(prepared.matches(s), matches(p, s, false), "pattern {:?} subject {:?}", String::from_utf8_lossy(p), String::from_utf8_lossy(s));
            }
        }
    }

    #[test]
    fn basics() {
        assert!(matches(b"*", b"anything", false));
        assert!(matches(b"h?llo", b"hello", false));
        assert!(matches(b"h*llo", b"heeeello", false));
        assert!(matches(b"h[ae]llo", b"hallo", false));
        assert!(!matches(b"h[ae]llo", b"hillo", false));
        assert!(matches(b"h[^e]llo", b"hallo", false));
        assert!(!matches(b"h[^e]llo", b"hello", false));
        assert!(matches(b"h[a-b]llo", b"hbllo", false));
        assert!(matches(b"user:1:*", b"user:1:cart", false));
        assert!(!matches(b"user:1:*", b"user:10:cart", false));
        assert!(matches(b"a\\*b", b"a*b", false));
        assert!(!matches(b"a\\*b", b"axb", false));
        assert!(matches(b"HELLO", b"hello", true));
        assert!(!matches(b"", b"x", false));
        assert!(matches(b"", b"", false));
        assert!(matches(b"**", b"", false));
        assert!(!matches(b"a*b", b"a", false));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let pattern = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b".to_vec();
        let subject = vec![b'a'; 100_000];
        let t = std::time::Instant::now();
        assert!(!matches(&pattern, &subject, false));
        assert!(t.elapsed().as_millis() < 500);
    }
}
