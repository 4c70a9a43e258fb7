//! [`Blob`]: the byte strings the keyspace owns (key names, string values, members).
//!
//! Most keys and many values are short (`user:1042`, a counter, a flag), and a separate
//! heap allocation for each costs at least 32 bytes of allocator block on top of its
//! 16-byte pointer. A `Blob` keeps up to [`INLINE`] bytes inside its own 24 bytes and puts
//! only longer strings on the heap, exactly sized. It hashes, compares and orders like the
//! `[u8]` it holds, so maps keyed by `Blob` are looked up with `&[u8]`.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Longest byte string stored inline.
pub const INLINE: usize = 22;

/// An immutable byte string: inline up to [`INLINE`] bytes, else one exact heap block.
#[derive(Clone)]
pub struct Blob(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl Blob {
    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, data } => &data[..*len as usize],
            Repr::Heap(b) => b,
        }
    }

    /// The bytes as a vector.
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { .. } => self.as_slice().to_vec(),
            Repr::Heap(b) => b.into_vec(),
        }
    }

    /// Whether the bytes live on the heap (longer than [`INLINE`]).
    pub fn is_heap(&self) -> bool {
        matches!(self.0, Repr::Heap(_))
    }
}

impl Default for Blob {
    fn default() -> Blob {
        Blob(Repr::Inline { len: 0, data: [0; INLINE] })
    }
}

impl From<&[u8]> for Blob {
    #[inline]
    fn from(bytes: &[u8]) -> Blob {
        if bytes.len() <= INLINE {
            let mut data = [0; INLINE];
            data[..bytes.len()].copy_from_slice(bytes);
            Blob(Repr::Inline { len: bytes.len() as u8, data })
        } else {
            Blob(Repr::Heap(bytes.into()))
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Blob {
    fn from(bytes: &[u8; N]) -> Blob {
        Blob::from(&bytes[..])
    }
}

impl From<Vec<u8>> for Blob {
    fn from(bytes: Vec<u8>) -> Blob {
        if bytes.len() <= INLINE {
            Blob::from(bytes.as_slice())
        } else {
            Blob(Repr::Heap(bytes.into_boxed_slice()))
        }
    }
}

impl From<Box<[u8]>> for Blob {
    fn from(bytes: Box<[u8]>) -> Blob {
        if bytes.len() <= INLINE {
            Blob::from(&*bytes)
        } else {
            Blob(Repr::Heap(bytes))
        }
    }
}

impl From<Blob> for bytes::Bytes {
    fn from(b: Blob) -> bytes::Bytes {
        bytes::Bytes::from(b.into_vec())
    }
}

impl Deref for Blob {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Blob {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Hash for Blob {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash as the borrowed `[u8]` does, or lookups by `&[u8]` miss.
        self.as_slice().hash(state)
    }
}

impl PartialEq for Blob {
    #[inline]
    fn eq(&self, other: &Blob) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Blob {}

impl PartialEq<[u8]> for Blob {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialOrd for Blob {
    fn partial_cmp(&self, other: &Blob) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Blob {
    fn cmp(&self, other: &Blob) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fits_in_three_words() {
        assert_eq!(std::mem::size_of::<Blob>(), 24);
        assert_eq!(std::mem::size_of::<Option<Blob>>(), 24);
    }

    #[test]
    fn inline_and_heap_behave_alike() {
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1, 1000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let a = Blob::from(bytes.as_slice());
            let b = Blob::from(bytes.clone());
            let c = Blob::from(bytes.clone().into_boxed_slice());
            assert_eq!(a.is_heap(), len > INLINE);
            assert_eq!((&*a, &*b, &*c), (bytes.as_slice(), bytes.as_slice(), bytes.as_slice()));
            assert_eq!(a, b);
            assert_eq!(a.clone().into_vec(), bytes);
            let mut m: HashMap<Blob, usize> = HashMap::new();
            m.insert(a, len);
            assert_eq!(m.get(bytes.as_slice()), Some(&len), "lookup by &[u8] must hash alike");
        }
    }

    #[test]
    fn orders_like_slices() {
        let mut v: Vec<Blob> = [&b"b"[..], b"a", b"", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"ab"].iter().map(|s| Blob::from(*s)).collect();
        v.sort();
        let got: Vec<&[u8]> = v.iter().map(|b| &**b).collect();
        assert_eq!(got, vec![&b""[..], b"a", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaa", b"ab", b"b"]);
    }
}
