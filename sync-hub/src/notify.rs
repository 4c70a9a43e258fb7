//! Keyspace notifications: the `notify-keyspace-events` flags and the channels the engine's
//! keyspace events are published on (`__keyspace@<db>__:<key>` carrying the event name,
//! `__keyevent@<db>__:<event>` carrying the key), as Redis does.

use std::fmt;

use bytes::Bytes;
use recached_engine::{EventClass, KeyEvent};

const K: u32 = 1 << 0;
const E: u32 = 1 << 1;
const G: u32 = 1 << 2;
const STR: u32 = 1 << 3;
const L: u32 = 1 << 4;
const S: u32 = 1 << 5;
const H: u32 = 1 << 6;
const Z: u32 = 1 << 7;
const X: u32 = 1 << 8;
const EV: u32 = 1 << 9;
const T: u32 = 1 << 10;
const M: u32 = 1 << 11;
const D: u32 = 1 << 12;
const N: u32 = 1 << 13;
/// `A`: every class except key-miss and new-key events, as in Redis.
const ALL: u32 = G | STR | L | S | H | Z | X | EV | T | D;

/// The parsed `notify-keyspace-events` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyspaceFlags(u32);

impl KeyspaceFlags {
    /// Parses a flag string (`KEA`, `Ex`, `""`); `None` on an unknown character.
    pub fn parse(text: &str) -> Option<KeyspaceFlags> {
        let mut bits = 0;
        for c in text.chars() {
            bits |= match c {
                'A' => ALL,
                'g' => G,
                '$' => STR,
                'l' => L,
                's' => S,
                'h' => H,
                'z' => Z,
                'x' => X,
                'e' => EV,
                'K' => K,
                'E' => E,
                't' => T,
                'm' => M,
                'd' => D,
                'n' => N,
                _ => return None,
            };
        }
        Some(KeyspaceFlags(bits))
    }

    /// Whether anything is published at all (a class and at least one of K/E).
    pub fn enabled(self) -> bool {
        self.0 & (K | E) != 0 && self.0 & !(K | E) != 0
    }

    fn class_bit(class: EventClass) -> u32 {
        match class {
            EventClass::Generic => G,
            EventClass::String => STR,
            EventClass::List => L,
            EventClass::Set => S,
            EventClass::Hash => H,
            EventClass::ZSet => Z,
            EventClass::Expired => X,
            EventClass::Evicted => EV,
            EventClass::New => N,
            EventClass::Miss => M,
        }
    }

    /// The classes the engine should record, as a mask of [`EventClass::bit`]. Empty
    /// unless K or E is set, so the engine does no work for nothing.
    pub fn engine_mask(self) -> u32 {
        if self.0 & (K | E) == 0 {
            return 0;
        }
        let classes = [
            EventClass::Generic,
            EventClass::String,
            EventClass::List,
            EventClass::Set,
            EventClass::Hash,
            EventClass::ZSet,
            EventClass::Expired,
            EventClass::Evicted,
            EventClass::New,
            EventClass::Miss,
        ];
        classes.iter().filter(|c| self.0 & Self::class_bit(**c) != 0).map(|c| c.bit()).fold(0, |a, b| a | b)
    }

    /// The (channel, message) pairs to publish for one event, keyspace first.
    pub fn messages(self, ev: &KeyEvent) -> Vec<(Bytes, Bytes)> {
        let mut out = Vec::new();
        if self.0 & Self::class_bit(ev.class) == 0 {
            return out;
        }
        if self.0 & K != 0 {
            let mut ch = format!("__keyspace@{}__:", ev.db).into_bytes();
            ch.extend_from_slice(&ev.key);
            out.push((Bytes::from(ch), Bytes::from_static(ev.event.as_bytes())));
        }
        if self.0 & E != 0 {
            let ch = format!("__keyevent@{}__:{}", ev.db, ev.event);
            out.push((Bytes::from(ch), ev.key.clone()));
        }
        out
    }
}

impl fmt::Display for KeyspaceFlags {
    /// Redis's canonical order (`AKE`, `g$xKE`, …).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let mut s = String::new();
        if b & ALL == ALL {
            s.push('A');
        } else {
            // Redis omits `n` after `A` (a quirk of its formatter, kept for byte equality).
            for (bit, c) in [(G, 'g'), (STR, '$'), (L, 'l'), (S, 's'), (H, 'h'), (Z, 'z'), (X, 'x'), (EV, 'e'), (T, 't'), (D, 'd'), (N, 'n')] {
                if b & bit != 0 {
                    s.push(c);
                }
            }
        }
        for (bit, c) in [(K, 'K'), (E, 'E'), (M, 'm')] {
            if b & bit != 0 {
                s.push(c);
            }
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(class: EventClass, event: &'static str, key: &str) -> KeyEvent {
        KeyEvent { db: 3, class, event, key: Bytes::copy_from_slice(key.as_bytes()) }
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(KeyspaceFlags::parse("KEA").unwrap().to_string(), "AKE");
        assert_eq!(KeyspaceFlags::parse("").unwrap().to_string(), "");
        assert_eq!(KeyspaceFlags::parse("Ex").unwrap().to_string(), "xE");
        assert_eq!(KeyspaceFlags::parse("$gK").unwrap().to_string(), "g$K");
        assert_eq!(KeyspaceFlags::parse("KEAmn").unwrap().to_string(), "AKEm");
        assert_eq!(KeyspaceFlags::parse("KEgn").unwrap().to_string(), "gnKE");
        assert!(KeyspaceFlags::parse("q").is_none());
        assert!(KeyspaceFlags::parse("KEA?").is_none());
    }

    #[test]
    fn engine_mask_needs_k_or_e() {
        assert_eq!(KeyspaceFlags::parse("A").unwrap().engine_mask(), 0);
        let m = KeyspaceFlags::parse("Ex").unwrap().engine_mask();
        assert_eq!(m, EventClass::Expired.bit());
        let m = KeyspaceFlags::parse("KA").unwrap().engine_mask();
        assert!(m & EventClass::List.bit() != 0);
        assert!(m & EventClass::Miss.bit() == 0, "A excludes key-miss");
        assert!(m & EventClass::New.bit() == 0, "A excludes new");
        assert!(!KeyspaceFlags::parse("K").unwrap().enabled());
        assert!(KeyspaceFlags::parse("Kg").unwrap().enabled());
    }

    #[test]
    fn channels() {
        let f = KeyspaceFlags::parse("KEA").unwrap();
        let msgs = f.messages(&ev(EventClass::List, "lpush", "mylist"));
        assert_eq!(msgs.len(), 2);
        assert_eq!(&msgs[0].0[..], b"__keyspace@3__:mylist");
        assert_eq!(&msgs[0].1[..], b"lpush");
        assert_eq!(&msgs[1].0[..], b"__keyevent@3__:lpush");
        assert_eq!(&msgs[1].1[..], b"mylist");
        let f = KeyspaceFlags::parse("Kl").unwrap();
        assert_eq!(f.messages(&ev(EventClass::List, "lpush", "k")).len(), 1);
        assert!(f.messages(&ev(EventClass::Hash, "hset", "k")).is_empty());
    }
}
