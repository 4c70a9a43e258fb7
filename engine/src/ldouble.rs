//! INCRBYFLOAT arithmetic as Redis does it: x87 `long double` (64-bit mantissa), in software.
//!
//! Redis parses both operands with `strtold`, adds them in `long double` and prints the sum
//! with `%.17Lf` minus trailing zeros. An `f64` sum differs visibly (`0.1 + 0.2` prints
//! `0.30000000000000004` instead of Redis's `0.3`), and the text is what clients see and
//! what the key then holds, so the engine reproduces the 64-bit-mantissa arithmetic exactly:
//! correctly rounded parsing (decimal, `inf`, hexadecimal), round-to-nearest-even addition,
//! and exact decimal printing. wasm32 has no `long double`, so this is done with integers.
//!
//! Subnormal results are not modelled (they need exponents below 2^-16382 and never occur
//! with realistic counters).

use std::cmp::Ordering;

/// Why an INCRBYFLOAT-style increment failed, mapping to Redis's two error replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrFloatError {
    /// An operand is not a number `strtold` accepts: `ERR value is not a valid float`
    /// (HINCRBYFLOAT says `ERR hash value is not a float` for the stored one).
    NotFloat,
    /// The sum is infinite or NaN: `ERR increment would produce NaN or Infinity`.
    NanOrInf,
}

/// Adds `incr` to `current` (both as text; `None` means a missing key, i.e. 0) with Redis's
/// `long double` rules and returns the text Redis would store and reply.
pub fn incr_by_float(current: Option<&[u8]>, incr: &[u8]) -> Result<String, IncrFloatError> {
    let a = match current {
        Some(text) => parse(text).ok_or(IncrFloatError::NotFloat)?,
        None => Num::Finite(F80::ZERO),
    };
    let b = parse(incr).ok_or(IncrFloatError::NotFloat)?;
    match (a, b) {
        (Num::Finite(a), Num::Finite(b)) => {
            let sum = a.add(b);
            if sum.is_overflow() {
                return Err(IncrFloatError::NanOrInf);
            }
            Ok(sum.format_human())
        }
        _ => Err(IncrFloatError::NanOrInf),
    }
}

/// Whether `text` is a number Redis's `string2ld` accepts.
pub fn is_long_double(text: &[u8]) -> bool {
    parse(text).is_some()
}

/// A parsed operand.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Finite(F80),
    Inf,
}

/// A finite `long double`: `(-1)^neg × mant × 2^exp`, `mant` normalized (bit 63 set) or 0.
#[derive(Debug, Clone, Copy, PartialEq)]
struct F80 {
    neg: bool,
    mant: u64,
    exp: i64,
}

/// Largest binary exponent of a finite long double's top bit (values < 2^16384).
const MAX_TOP_BIT: i64 = 16383;
/// Smallest top-bit position of a nonzero long double (the smallest subnormal, 2^-16445).
const MIN_TOP_BIT: i64 = -16445;
/// `string2ld` refuses inputs of this length or more (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

impl F80 {
    const ZERO: F80 = F80 { neg: false, mant: 0, exp: 0 };

    fn is_overflow(&self) -> bool {
        self.mant != 0 && self.exp + 63 > MAX_TOP_BIT
    }

    /// Rounds `q × 2^exp2` (plus a nonzero remainder below `q`'s last bit when `sticky`)
    /// to 64 bits, ties to even.
    fn round(neg: bool, q: u128, sticky: bool, exp2: i64) -> F80 {
        if q == 0 {
            return F80 { neg, mant: 0, exp: 0 };
        }
        let bits = 128 - q.leading_zeros() as i64;
        if bits <= 64 {
            let shift = 64 - bits;
            // Exact: the lost-bits flag cannot matter when nothing is cut (callers only
            // set `sticky` with at least 65 significant bits).
            return F80 { neg, mant: (q << shift) as u64, exp: exp2 - shift };
        }
        let cut = bits - 64;
        let mut mant = (q >> cut) as u64;
        let rest = q & ((1u128 << cut) - 1);
        let half = 1u128 << (cut - 1);
        let round_up = rest > half || (rest == half && (sticky || mant & 1 == 1));
        let mut exp = exp2 + cut;
        if round_up {
            match mant.checked_add(1) {
                Some(m) => mant = m,
                None => {
                    mant = 1 << 63;
                    exp += 1;
                }
            }
        }
        F80 { neg, mant, exp }
    }

    /// `self + other`, rounded to nearest even.
    fn add(self, other: F80) -> F80 {
        if other.mant == 0 {
            return if self.mant == 0 { F80 { neg: self.neg && other.neg, ..F80::ZERO } } else { self };
        }
        if self.mant == 0 {
            return other;
        }
        let (x, y) = if self.exp >= other.exp { (self, other) } else { (other, self) };
        let d = x.exp - y.exp;
        // 62 guard bits; the bits shifted out of `y` are jammed into its lowest bit, which
        // keeps round-to-nearest exact for both sums and differences.
        let big_x = (x.mant as u128) << 62;
        let mut big_y = (y.mant as u128) << 62;
        if d > 0 {
            if d >= 127 {
                big_y = 1;
            } else {
                let lost = big_y & ((1u128 << d) - 1) != 0;
                big_y = (big_y >> d) | lost as u128;
            }
        }
        let exp2 = x.exp - 62;
        if x.neg == y.neg {
            return F80::round(x.neg, big_x + big_y, false, exp2);
        }
        match big_x.cmp(&big_y) {
            Ordering::Equal => F80::ZERO,
            Ordering::Greater => F80::round(x.neg, big_x - big_y, false, exp2),
            Ordering::Less => F80::round(y.neg, big_y - big_x, false, exp2),
        }
    }

    /// `%.17Lf` with trailing zeros (and a bare `.`) removed, `-0` printed as `0`.
    fn format_human(&self) -> String {
        let mut s = String::new();
        if self.neg {
            s.push('-');
        }
        if self.exp >= 0 {
            // An integer: the 17 decimals are all zeros and get trimmed.
            let mut n = Big::from_u64(self.mant);
            n.shl(self.exp as usize);
            s.push_str(&n.to_decimal());
        } else {
            const SCALE: u128 = 100_000_000_000_000_000; // 10^17
            let x = self.mant as u128 * SCALE; // < 2^121
            let sh = (-self.exp) as u32;
            let q = if sh >= 122 {
                0 // below half a unit of the 17th decimal
            } else {
                let q = x >> sh;
                let rest = x & ((1u128 << sh) - 1);
                let half = 1u128 << (sh - 1);
                if rest > half || (rest == half && q & 1 == 1) {
                    q + 1
                } else {
                    q
                }
            };
            let frac = format!("{:017}", q % SCALE);
            s.push_str(&(q / SCALE).to_string());
            let frac = frac.trim_end_matches('0');
            if !frac.is_empty() {
                s.push('.');
                s.push_str(frac);
            }
        }
        if s == "-0" {
            s = "0".into();
        }
        s
    }
}

/// Parses like C's `strtold` over the whole input, with `string2ld`'s extra rules: no
/// leading space, no NaN, at most 5119 bytes, overflow and underflow to zero refused.
fn parse(s: &[u8]) -> Option<Num> {
    if s.is_empty() || s.len() >= MAX_CHARS || s[0].is_ascii_whitespace() || s[0] == 0x0b {
        return None;
    }
    let (neg, body) = match s[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some(Num::Inf);
    }
    let value = if lower.len() > 2 && lower.starts_with(b"0x") { parse_hex(neg, &lower[2..])? } else { parse_dec(neg, body)? };
    if value.mant != 0 {
        let top = value.exp + 63;
        if !(MIN_TOP_BIT..=MAX_TOP_BIT).contains(&top) {
            return None; // ERANGE: HUGE_VAL or 0
        }
    }
    Some(Num::Finite(value))
}

/// `digits[.digits][e[+-]digits]`, at least one digit before the exponent.
fn parse_dec(neg: bool, s: &[u8]) -> Option<F80> {
    let mut i = 0;
    let mut digits: Vec<u8> = Vec::new();
    let mut frac_digits: i64 = 0;
    let mut seen = false;
    while i < s.len() && s[i].is_ascii_digit() {
        digits.push(s[i] - b'0');
        seen = true;
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && s[i].is_ascii_digit() {
            digits.push(s[i] - b'0');
            frac_digits += 1;
            seen = true;
            i += 1;
        }
    }
    if !seen {
        return None;
    }
    let mut exp10: i64 = 0;
    if i < s.len() && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        let eneg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            // Saturate: anything this large overflows or underflows anyway.
            exp10 = (exp10 * 10 + (s[i] - b'0') as i64).min(1_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if eneg {
            exp10 = -exp10;
        }
    }
    if i != s.len() {
        return None;
    }
    // Leading zeros carry no value; trailing zeros move into the exponent.
    let first = digits.iter().position(|&d| d != 0);
    let Some(first) = first else { return Some(F80 { neg, mant: 0, exp: 0 }) };
    let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
    let trailing = (digits.len() - 1 - last) as i64;
    let digits = &digits[first..=last];
    let exp10 = exp10 - frac_digits + trailing;
    // Value = digits × 10^exp10. Decide overflow/underflow early from the magnitude:
    // log2(10) ≈ 3.32, so these bounds are far outside the long double range.
    let magnitude = digits.len() as i64 + exp10;
    if magnitude > 4940 {
        return Some(F80 { neg, mant: u64::MAX, exp: MAX_TOP_BIT }); // caller: overflow
    }
    if magnitude < -4960 {
        return Some(F80 { neg, mant: 1 << 63, exp: MIN_TOP_BIT - 100 }); // caller: underflow
    }
    let mut n = Big::from_digits(digits);
    if exp10 >= 0 {
        n.mul_pow10(exp10 as usize);
        let (q, sticky, exp2) = n.top128();
        Some(F80::round(neg, q, sticky, exp2))
    } else {
        let mut d = Big::from_u64(1);
        d.mul_pow10((-exp10) as usize);
        // Scale the numerator so the quotient has at least 66 significant bits.
        let k = (d.bit_len() as i64 - n.bit_len() as i64 + 66).max(0) as usize;
        n.shl(k);
        let (q, rem_nonzero) = n.div_small_quotient(&d);
        Some(F80::round(neg, q, rem_nonzero, -(k as i64)))
    }
}

/// `hex[.hex][p[+-]digits]` after the `0x`.
fn parse_hex(neg: bool, s: &[u8]) -> Option<F80> {
    let mut i = 0;
    let mut n = Big::from_u64(0);
    let mut frac_digits: i64 = 0;
    let mut seen = false;
    let hex = |c: u8| (c as char).to_digit(16);
    while i < s.len() && hex(s[i]).is_some() {
        n.mul_add_small(16, hex(s[i])?);
        seen = true;
        i += 1;
    }
    if i < s.len() && s[i] == b'.' {
        i += 1;
        while i < s.len() && hex(s[i]).is_some() {
            n.mul_add_small(16, hex(s[i])?);
            frac_digits += 1;
            seen = true;
            i += 1;
        }
    }
    if !seen {
        return None;
    }
    let mut exp2: i64 = 0;
    if i < s.len() && s[i] == b'p' {
        i += 1;
        let eneg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            exp2 = (exp2 * 10 + (s[i] - b'0') as i64).min(1_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if eneg {
            exp2 = -exp2;
        }
    }
    if i != s.len() {
        return None;
    }
    let (q, sticky, e) = n.top128();
    Some(F80::round(neg, q, sticky, e + exp2 - 4 * frac_digits))
}

/// A minimal unsigned big integer (little-endian 32-bit limbs) for exact parsing and
/// printing; sizes are bounded by the 5 KB input limit and the long double range.
#[derive(Debug, Clone)]
struct Big {
    limbs: Vec<u32>,
}

impl Big {
    fn from_u64(v: u64) -> Big {
        let mut b = Big { limbs: vec![v as u32, (v >> 32) as u32] };
        b.trim();
        b
    }

    fn from_digits(digits: &[u8]) -> Big {
        let mut b = Big::from_u64(0);
        for chunk in digits.chunks(9) {
            let mut v = 0u32;
            for &d in chunk {
                v = v * 10 + d as u32;
            }
            b.mul_add_small(10u32.pow(chunk.len() as u32), v);
        }
        b
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn mul_add_small(&mut self, m: u32, a: u32) {
        let mut carry = a as u64;
        for l in &mut self.limbs {
            let v = *l as u64 * m as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
    }

    fn mul_pow10(&mut self, mut e: usize) {
        while e >= 9 {
            self.mul_add_small(1_000_000_000, 0);
            e -= 9;
        }
        if e > 0 {
            self.mul_add_small(10u32.pow(e as u32), 0);
        }
    }

    fn bit_len(&self) -> usize {
        match self.limbs.last() {
            None => 0,
            Some(&top) => self.limbs.len() * 32 - top.leading_zeros() as usize,
        }
    }

    fn bit(&self, i: usize) -> bool {
        self.limbs.get(i / 32).is_some_and(|l| l >> (i % 32) & 1 == 1)
    }

    fn shl(&mut self, bits: usize) {
        if self.limbs.is_empty() {
            return;
        }
        let (words, rem) = (bits / 32, bits % 32);
        if rem != 0 {
            let mut carry = 0u32;
            for l in &mut self.limbs {
                let v = *l;
                *l = (v << rem) | carry;
                carry = v >> (32 - rem);
            }
            if carry != 0 {
                self.limbs.push(carry);
            }
        }
        if words > 0 {
            self.limbs.splice(0..0, std::iter::repeat_n(0, words));
        }
    }

    fn shr1(&mut self) {
        let mut carry = 0u32;
        for l in self.limbs.iter_mut().rev() {
            let v = *l;
            *l = (v >> 1) | (carry << 31);
            carry = v & 1;
        }
        self.trim();
    }

    fn cmp(&self, other: &Big) -> Ordering {
        self.limbs.len().cmp(&other.limbs.len()).then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }

    fn sub_assign(&mut self, other: &Big) {
        let mut borrow = 0i64;
        for i in 0..self.limbs.len() {
            let v = self.limbs[i] as i64 - other.limbs.get(i).copied().unwrap_or(0) as i64 - borrow;
            borrow = (v < 0) as i64;
            self.limbs[i] = v.rem_euclid(1 << 32) as u32;
        }
        self.trim();
    }

    /// The top 128 bits (all of them when fewer), whether any lower bit is set, and the
    /// binary exponent of the returned integer's last bit.
    fn top128(&self) -> (u128, bool, i64) {
        let len = self.bit_len();
        if len <= 128 {
            let mut q = 0u128;
            for (i, l) in self.limbs.iter().enumerate() {
                q |= (*l as u128) << (32 * i);
            }
            return (q, false, 0);
        }
        let low = len - 128;
        let mut q = 0u128;
        for i in (low..len).rev() {
            q = (q << 1) | self.bit(i) as u128;
        }
        let sticky = (0..low).any(|i| self.bit(i));
        (q, sticky, low as i64)
    }

    /// `self / d` for a quotient known to have at most 127 bits, by binary long division;
    /// returns it and whether the remainder is nonzero.
    fn div_small_quotient(mut self, d: &Big) -> (u128, bool) {
        let top = (self.bit_len() as i64 - d.bit_len() as i64).clamp(0, 126) as usize;
        let mut shifted = d.clone();
        shifted.shl(top);
        let mut q = 0u128;
        for i in (0..=top).rev() {
            if self.cmp(&shifted) != Ordering::Less {
                self.sub_assign(&shifted);
                q |= 1u128 << i;
            }
            shifted.shr1();
        }
        (q, !self.limbs.is_empty())
    }

    fn to_decimal(&self) -> String {
        let mut limbs = self.limbs.clone();
        let mut parts = Vec::new();
        while !limbs.is_empty() {
            let mut rem = 0u64;
            for l in limbs.iter_mut().rev() {
                let v = (rem << 32) | *l as u64;
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            while limbs.last() == Some(&0) {
                limbs.pop();
            }
            parts.push(rem as u32);
        }
        let mut s = parts.last().map(|p| p.to_string()).unwrap_or_else(|| "0".into());
        for p in parts.iter().rev().skip(1) {
            s.push_str(&format!("{:09}", p));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> String {
        match incr_by_float(Some(a.as_bytes()), b.as_bytes()) {
            Ok(s) => s,
            Err(IncrFloatError::NotFloat) => "BADFLOAT".into(),
            Err(IncrFloatError::NanOrInf) => "NANINF".into(),
        }
    }

    /// Expected texts come from glibc's `strtold` + `%.17Lf` on x86-64 (Redis 7.0's code).
    #[test]
    fn matches_glibc_long_double() {
        for (a, b, want) in [
            ("0.1", "0.2", "0.3"),
            ("0.3", "1.0e10", "10000000000.29999999981373549"),
            ("10000000000.29999999981373549", "-1.0e10", "0.29999999981373549"),
            ("3", "1e17", "100000000000000003"),
            ("0", "123456789.123456789", "123456789.12345678899873747"),
            ("2500000000000000", "0.25", "2500000000000000.25"),
            ("0", "5e-18", "0"),
            ("0", "1e-17", "0.00000000000000001"),
            ("10.5", "0.1", "10.6"),
            ("0", "-0.0", "0"),
            ("-0", "-0", "0"),
            ("0x10", "1", "17"),
            ("17", "0x1p-2", "17.25"),
            ("1e308", "1e308", "199999999999999999993371759311691291321120199694831134415594095989843469737676123744200253843777078640893494450108026446304269499187921167194841628860392837535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247582601711514636284849020905456510092687857156096"),
            ("1", "inf", "NANINF"),
            ("1", "-infinity", "NANINF"),
            ("1", "nan", "BADFLOAT"),
            ("abc", "1", "BADFLOAT"),
            ("1", " 1", "BADFLOAT"),
            ("1", "1 ", "BADFLOAT"),
            ("1", "1e", "BADFLOAT"),
            ("1", "0x", "BADFLOAT"),
            ("1", "", "BADFLOAT"),
            ("1", "1e99999", "BADFLOAT"),
            ("1", "1e-99999", "BADFLOAT"),
            ("1", "0e99999", "1"),
            ("1", ".5", "1.5"),
            ("1", "5.", "6"),
            ("1", "+1.5", "2.5"),
            ("-5.5", "5.5", "0"),
            ("9223372036854775807", "1", "9223372036854775808"),
            ("9223372036854775807", "0.5", "9223372036854775807.5"),
            ("1", "1e4933", "BADFLOAT"),
            ("0", "1e-4950", "0"),
            ("0", "0x1p-16400", "0"),
        ] {
            assert_eq!(incr(a, b), want, "{} + {}", a, b);
        }
        assert_eq!(incr_by_float(None, b"2.5"), Ok("2.5".into()));
        assert!(!is_long_double(&vec![b'1'; MAX_CHARS]));
        let mut long = vec![b'0'; MAX_CHARS - 1];
        long[MAX_CHARS - 2] = b'7';
        assert!(is_long_double(&long));
    }
}
