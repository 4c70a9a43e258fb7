//! Read and write scopes: sets of Redis glob patterns naming the keys a token may see or
//! change, and the checks the hub makes with them.
//!
//! - A key is **readable** when it matches one of the read patterns.
//! - A key is **writable** when it matches one of the write patterns *and* is readable:
//!   every Redis write can reveal the state it changes (`INCR` answers the new value,
//!   `SET … GET`, `LPOP`, `GETDEL` answer the old one), and a sync client mirrors what it
//!   writes, so a write-only key cannot be kept secret.
//! - A subscription pattern is **allowed** when every key it can match is readable
//!   ([`Scope::covers`]). This is decided exactly, by exploring the pattern against the
//!   union of the scope's patterns as automata (Redis globs are regular languages), with
//!   a work bound: a check that would exceed it answers "not allowed". So `user:1:*` is
//!   within `user:*`, `user:1:[ab]` within `user:1:a` + `user:1:b`, and `user:*` is not
//!   within `user:1:*`.
//!
//! The glob syntax is exactly [`crate::glob::matches`]'s (the engine's KEYS/SCAN matcher),
//! with case-sensitive matching.

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;

use super::token::{Claims, MAX_PATTERNS, MAX_PATTERN_LEN};
use crate::glob;

/// Work (automaton positions stepped) [`Scope::covers`] may spend before it gives up and
/// answers `false`: bounds what a hostile subscription pattern can cost.
const COVERS_BUDGET: usize = 200_000;

/// A set of glob patterns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scope {
    patterns: Vec<Bytes>,
    /// The patterns prepared for matching keys.
    matchers: Vec<glob::Pattern>,
    all: bool,
}

impl Scope {
    /// A scope of the given patterns.
    pub fn new<I, P>(patterns: I) -> Scope
    where
        I: IntoIterator<Item = P>,
        P: AsRef<[u8]>,
    {
        let patterns: Vec<Bytes> = patterns.into_iter().map(|p| Bytes::copy_from_slice(p.as_ref())).collect();
        let matchers = patterns.iter().cloned().map(glob::Pattern::new).collect();
        let mut s = Scope { patterns, matchers, all: false };
        s.all = s.patterns.iter().any(|p| p.iter().all(|&c| c == b'*') && !p.is_empty()) || s.covers(b"*");
        s
    }

    /// Every key.
    pub fn all() -> Scope {
        Scope::new(["*"])
    }

    /// No key.
    pub fn none() -> Scope {
        Scope::default()
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Bytes] {
        &self.patterns
    }

    /// Whether the scope holds every possible key.
    pub fn is_unrestricted(&self) -> bool {
        self.all
    }

    /// Whether the scope holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `key` matches one of the patterns.
    pub fn allows_key(&self, key: &[u8]) -> bool {
        self.all || self.matchers.iter().any(|p| p.matches(key))
    }

    /// Whether every key that `pattern` can match is in this scope.
    pub fn covers(&self, pattern: &[u8]) -> bool {
        if self.all {
            return true;
        }
        if self.patterns.iter().any(|p| p[..] == *pattern) {
            return true;
        }
        if glob::is_literal(pattern) {
            // A literal names exactly one key.
            return self.allows_key(pattern);
        }
        let scope: Vec<Vec<Tok>> = self.patterns.iter().map(|p| tokenize(p)).collect();
        contained(&tokenize(pattern), &scope, COVERS_BUDGET)
    }
}

/// What a token (or a static token from configuration) grants one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who: the token's `sub` (empty on an open hub).
    pub subject: String,
    /// Keys it may read and subscribe to.
    pub read: Scope,
    /// Keys it may write (together with `read`, see the module docs).
    pub write: Scope,
    /// When the grant ends, in Unix milliseconds (`None`: never, for static tokens and
    /// open hubs).
    pub expires_ms: Option<u64>,
}

impl Grant {
    /// Everything, forever: an open hub (no secret, no static tokens).
    pub fn open() -> Grant {
        Grant { subject: String::new(), read: Scope::all(), write: Scope::all(), expires_ms: None }
    }

    /// The grant of verified token claims.
    pub fn from_claims(claims: &Claims) -> Grant {
        Grant {
            subject: claims.sub.clone(),
            read: Scope::new(claims.read.iter().take(MAX_PATTERNS).filter(|p| p.len() <= MAX_PATTERN_LEN)),
            write: Scope::new(claims.write.iter().take(MAX_PATTERNS).filter(|p| p.len() <= MAX_PATTERN_LEN)),
            expires_ms: Some(claims.exp_ms()),
        }
    }

    /// Whether the key may be read.
    pub fn can_read(&self, key: &[u8]) -> bool {
        self.read.allows_key(key)
    }

    /// Whether the key may be written (it must be readable too).
    pub fn can_write(&self, key: &[u8]) -> bool {
        self.write.allows_key(key) && self.read.allows_key(key)
    }

    /// Whether the grant reads and writes every key (what keyless writes such as FLUSHDB
    /// require).
    pub fn is_unrestricted(&self) -> bool {
        self.read.is_unrestricted() && self.write.is_unrestricted()
    }
}

/// A 256-bit byte set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    const EMPTY: ByteSet = ByteSet([0; 4]);
    const FULL: ByteSet = ByteSet([u64::MAX; 4]);

    fn one(b: u8) -> ByteSet {
        let mut s = ByteSet::EMPTY;
        s.add(b);
        s
    }
    fn add(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1 << (b & 63);
    }
    fn has(&self, b: u8) -> bool {
        self.0[(b >> 6) as usize] & (1 << (b & 63)) != 0
    }
    fn invert(self) -> ByteSet {
        ByteSet([!self.0[0], !self.0[1], !self.0[2], !self.0[3]])
    }
    fn is_empty(&self) -> bool {
        self.0 == [0; 4]
    }
}

/// One element of a glob: `*`, or one byte out of a set (`a`, `?`, `[a-z]`, `\*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Star,
    One(ByteSet),
}

/// Splits a pattern into tokens with exactly the rules of [`glob::matches`].
fn tokenize(pattern: &[u8]) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut p = 0;
    while p < pattern.len() {
        match pattern[p] {
            b'*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
                p += 1;
            }
            b'?' => {
                out.push(Tok::One(ByteSet::FULL));
                p += 1;
            }
            b'[' => {
                let (set, next) = class(pattern, p);
                out.push(Tok::One(set));
                p = next;
            }
            b'\\' if p + 1 < pattern.len() => {
                out.push(Tok::One(ByteSet::one(pattern[p + 1])));
                p += 2;
            }
            c => {
                out.push(Tok::One(ByteSet::one(c)));
                p += 1;
            }
        }
    }
    out
}

/// The byte set of the class at `pattern[start] == b'['` and the index after it; an
/// unterminated class runs to the end of the pattern, as in Redis.
fn class(pattern: &[u8], start: usize) -> (ByteSet, usize) {
    let mut i = start + 1;
    let negate = i < pattern.len() && pattern[i] == b'^';
    if negate {
        i += 1;
    }
    let mut set = ByteSet::EMPTY;
    let finish = |set: ByteSet| if negate { set.invert() } else { set };
    loop {
        if i >= pattern.len() {
            return (finish(set), i);
        }
        match pattern[i] {
            b']' => return (finish(set), i + 1),
            b'\\' if i + 1 < pattern.len() => {
                set.add(pattern[i + 1]);
                i += 2;
            }
            lo if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' => {
                let (a, b) = if lo <= pattern[i + 2] { (lo, pattern[i + 2]) } else { (pattern[i + 2], lo) };
                for c in a..=b {
                    set.add(c);
                }
                i += 3;
            }
            x => {
                set.add(x);
                i += 1;
            }
        }
    }
}

/// The union of several token sequences as one NFA over numbered positions.
struct Union<'a> {
    pats: &'a [Vec<Tok>],
    /// First position number of each pattern; a pattern of n tokens has positions 0..=n.
    base: Vec<usize>,
    width: usize,
}

type States = Vec<u64>;

impl<'a> Union<'a> {
    fn new(pats: &'a [Vec<Tok>]) -> Union<'a> {
        let mut base = Vec::with_capacity(pats.len());
        let mut n = 0;
        for p in pats {
            base.push(n);
            n += p.len() + 1;
        }
        Union { pats, base, width: n.div_ceil(64) }
    }

    fn set(s: &mut States, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let fresh = s[w] & b == 0;
        s[w] |= b;
        fresh
    }

    fn get(s: &States, i: usize) -> bool {
        s[i / 64] & (1u64 << (i % 64)) != 0
    }

    /// Adds position `at` of pattern `k` and everything reachable through `*` skips.
    fn add(&self, s: &mut States, k: usize, mut at: usize) {
        loop {
            if !Union::set(s, self.base[k] + at) {
                return;
            }
            if at < self.pats[k].len() && self.pats[k][at] == Tok::Star {
                at += 1;
            } else {
                return;
            }
        }
    }

    fn start(&self) -> States {
        let mut s = vec![0; self.width];
        for k in 0..self.pats.len() {
            self.add(&mut s, k, 0);
        }
        s
    }

    fn step(&self, s: &States, b: u8) -> States {
        let mut out = vec![0; self.width];
        for (k, pat) in self.pats.iter().enumerate() {
            for (at, tok) in pat.iter().enumerate() {
                if !Union::get(s, self.base[k] + at) {
                    continue;
                }
                match *tok {
                    Tok::Star => self.add(&mut out, k, at),
                    Tok::One(set) if set.has(b) => self.add(&mut out, k, at + 1),
                    Tok::One(_) => {}
                }
            }
        }
        out
    }

    fn accepts(&self, s: &States) -> bool {
        (0..self.pats.len()).any(|k| Union::get(s, self.base[k] + self.pats[k].len()))
    }

    /// Whether some state accepts every continuation (it sits on a trailing `*`).
    fn accepts_all_from(&self, s: &States) -> bool {
        self.pats.iter().enumerate().any(|(k, pat)| {
            (0..pat.len()).any(|at| Union::get(s, self.base[k] + at) && pat[at..].iter().all(|t| *t == Tok::Star))
        })
    }
}

/// Whether the tokens from `at` on can match some string.
fn completable(pat: &[Tok], at: usize) -> bool {
    pat[at..].iter().all(|t| !matches!(t, Tok::One(s) if s.is_empty()))
}

/// Whether every string `pat` matches is matched by one of `scope`. `false` when the
/// exploration would exceed `budget` units of work.
fn contained(pat: &[Tok], scope: &[Vec<Tok>], budget: usize) -> bool {
    let union = Union::new(scope);
    let step_cost = union.base.last().copied().unwrap_or(0) + scope.last().map_or(0, |p| p.len() + 1) + 1;
    let mut work = 0usize;
    // Bytes that no pattern tells apart behave alike: explore one of each kind.
    let sets: Vec<ByteSet> = pat.iter().chain(scope.iter().flatten()).filter_map(|t| match t {
        Tok::One(s) => Some(*s),
        Tok::Star => None,
    }).collect();
    let mut reps: Vec<u8> = Vec::new();
    let mut seen_sigs: HashSet<Vec<bool>> = HashSet::new();
    for b in 0..=255u8 {
        if seen_sigs.insert(sets.iter().map(|s| s.has(b)).collect()) {
            reps.push(b);
        }
    }
    let start = (0usize, union.start());
    let mut seen: HashSet<(usize, States)> = HashSet::new();
    let mut queue = VecDeque::new();
    seen.insert(start.clone());
    queue.push_back(start);
    while let Some((at, states)) = queue.pop_front() {
        if union.accepts_all_from(&states) {
            continue;
        }
        if at == pat.len() {
            if !union.accepts(&states) {
                return false;
            }
            continue;
        }
        if states.iter().all(|w| *w == 0) {
            // Nothing in scope can match any more: a counterexample exists iff the
            // pattern can still finish.
            if completable(pat, at) {
                return false;
            }
            continue;
        }
        work += step_cost * if pat[at] == Tok::Star { reps.len() + 1 } else { reps.len() };
        if work > budget {
            return false;
        }
        let mut next = Vec::new();
        match pat[at] {
            Tok::Star => {
                next.push((at + 1, states.clone()));
                for &b in &reps {
                    next.push((at, union.step(&states, b)));
                }
            }
            Tok::One(set) => {
                for &b in reps.iter().filter(|&&b| set.has(b)) {
                    next.push((at + 1, union.step(&states, b)));
                }
            }
        }
        for n in next {
            if seen.insert(n.clone()) {
                queue.push_back(n);
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Matches by the token NFA (to check the tokenizer against glob::matches).
    fn nfa_matches(pattern: &[u8], subject: &[u8]) -> bool {
        let toks = vec![tokenize(pattern)];
        let u = Union::new(&toks);
        let mut s = u.start();
        for &b in subject {
            s = u.step(&s, b);
        }
        u.accepts(&s)
    }

    fn rand_str(rng: &mut Rng, alphabet: &[u8], max: usize) -> Vec<u8> {
        let n = rng.below(max + 1);
        (0..n).map(|_| alphabet[rng.below(alphabet.len())]).collect()
    }

    #[test]
    fn tokenizer_agrees_with_glob_matches() {
        let mut rng = Rng::new(7);
        let pat_alpha = b"ab*?[]^-\\";
        let sub_alpha = b"ab-[]^\\*?z";
        for _ in 0..20_000 {
            let p = rand_str(&mut rng, pat_alpha, 7);
            let s = rand_str(&mut rng, sub_alpha, 6);
            assert_eq!(nfa_matches(&p, &s), glob::matches(&p, &s, false), "pattern {:?} subject {:?}", String::from_utf8_lossy(&p), String::from_utf8_lossy(&s));
        }
    }

    #[test]
    fn covers_examples() {
        let s = Scope::new(["user:1:*"]);
        assert!(s.covers(b"user:1:*"));
        assert!(s.covers(b"user:1:cart"));
        assert!(s.covers(b"user:1:*:x"));
        assert!(s.covers(b"user:1:[ab]*"));
        assert!(s.covers(b"user:1:?"));
        assert!(!s.covers(b"user:*"));
        assert!(!s.covers(b"user:?:*"));
        assert!(!s.covers(b"user:1*"));
        assert!(!s.covers(b"*"));
        assert!(!s.covers(b"user:1"));
        assert!(!s.covers(b"user:[12]:*"));
        assert!(Scope::new(["user:1:*", "user:2:*"]).covers(b"user:[12]:*"));
        assert!(Scope::new(["a", "b"]).covers(b"[ab]"));
        assert!(!Scope::new(["a", "b"]).covers(b"[abc]"));
        // A union covers what no single pattern does.
        assert!(Scope::new(["k:*a", "k:*[^a]", "k:"]).covers(b"k:*"));
        assert!(!Scope::new(["k:*a", "k:*[^a]"]).covers(b"k:*"));
        // Escapes are literal.
        assert!(!Scope::new(["a\\*"]).covers(b"a*"));
        assert!(Scope::new(["a*"]).covers(b"a\\*"));
        // A pattern that matches nothing is covered by anything.
        assert!(Scope::none().covers(b"[]"));
        assert!(!Scope::none().covers(b"x"));
        assert!(Scope::all().covers(b"anything*"));
        assert!(Scope::all().is_unrestricted());
        assert!(Scope::new(["[^x]*", "x*", ""]).is_unrestricted());
        assert!(!Scope::new(["?*"]).is_unrestricted());
    }

    #[test]
    fn covers_is_sound_and_complete_on_small_patterns() {
        let mut rng = Rng::new(11);
        let pat_alpha = b"ab*?[]^-\\";
        let strings: Vec<Vec<u8>> = {
            let alpha = b"ab-[]^\\*?z0A";
            let mut all = vec![Vec::new()];
            let mut layer = vec![Vec::new()];
            for _ in 0..4 {
                let mut next = Vec::new();
                for s in &layer {
                    for &c in alpha.iter() {
                        let mut t: Vec<u8> = s.clone();
                        t.push(c);
                        next.push(t);
                    }
                }
                all.extend(next.iter().cloned());
                layer = next;
            }
            all
        };
        let mut disagreements = 0;
        for _ in 0..300 {
            let p = rand_str(&mut rng, pat_alpha, 4);
            let scope: Vec<Vec<u8>> = (0..1 + rng.below(2)).map(|_| rand_str(&mut rng, pat_alpha, 4)).collect();
            let sc = Scope::new(scope.iter());
            let covers = sc.covers(&p);
            let counter = strings.iter().find(|s| glob::matches(&p, s, false) && !sc.allows_key(s));
            if covers {
                assert!(counter.is_none(), "unsound: {:?} within {:?}, but {:?}", String::from_utf8_lossy(&p), scope, counter);
            } else if counter.is_none() {
                // Refused, yet no key of length <= 4 over the sample alphabet escapes the
                // scope: would be an over-conservative answer.
                disagreements += 1;
            }
        }
        assert_eq!(disagreements, 0, "refusals without a short counterexample");
    }

    #[test]
    fn covers_gives_up_conservatively() {
        // Adversarial patterns cannot make the check run away: a SUB may carry 64 patterns
        // of 512 bytes, each checked against the read scope.
        let scope = Scope::new(["*a?????????????", "*b*b*b*b*b*b*b*b*", "*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*[ab]*", "user:*:x"]);
        let mut hostile: Vec<u8> = Vec::new();
        for i in 0..100u8 {
            hostile.extend_from_slice(b"*[");
            hostile.push(b'!' + (i % 90));
            hostile.push(b']');
        }
        hostile.truncate(512);
        let t = std::time::Instant::now();
        for p in [&b"*a*a*a*a*a*a*a*a*a*a*a*a*"[..], &hostile, &b"*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?"[..]] {
            assert!(!scope.covers(p));
        }
        // The bound itself is COVERS_BUDGET units of work (deterministic); the clock only
        // catches a regression by orders of magnitude, so it is generous enough for a
        // debug build on a loaded 2-core machine (it takes ~10 ms in release).
        assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    }

    #[test]
    fn grants() {
        let g = Grant::from_claims(&Claims { sub: "u".into(), exp: 10, read: vec!["user:1:*".into()], write: vec!["user:1:cart".into(), "log:*".into()] });
        assert!(g.can_read(b"user:1:x"));
        assert!(!g.can_read(b"user:2:x"));
        assert!(g.can_write(b"user:1:cart"));
        assert!(!g.can_write(b"user:1:x"));
        // Writable requires readable.
        assert!(!g.can_write(b"log:1"));
        assert!(!g.is_unrestricted());
        assert_eq!(g.expires_ms, Some(10_000));
        assert!(Grant::open().is_unrestricted());
    }
}
