//! The libraries Redis loads into its Lua VM, written here from their documented
//! behaviour: `bit` (LuaBitOp: 32-bit operations on Lua numbers) and `cjson` (JSON encode
//! and decode, lua-cjson's conventions: `cjson.null`, `%.14g` numbers, escaped `/`,
//! empty tables as objects, sparse arrays refused); `cmsgpack` and `struct` are in
//! `msgpack.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use mlua::{LightUserData, Lua, Table, Value, Variadic};

/// Registers the libraries as globals (the sandbox then makes them read-only).
pub fn register(lua: &Lua) -> mlua::Result<()> {
    lua.globals().raw_set("bit", bit(lua)?)?;
    lua.globals().raw_set("cjson", cjson(lua)?)?;
    lua.globals()
        .raw_set("cmsgpack", super::msgpack::cmsgpack(lua)?)?;
    lua.globals()
        .raw_set("struct", super::msgpack::structlib(lua)?)?;
    Ok(())
}

/// LuaBitOp's conversion: round to the nearest integer (ties to even), keep the low 32 bits.
fn tobit(n: f64) -> i32 {
    if !n.is_finite() {
        return 0;
    }
    n.round_ties_even().rem_euclid(4_294_967_296.0) as u64 as u32 as i32
}

fn num(v: &Value, pos: usize, name: &str) -> mlua::Result<i32> {
    match v {
        Value::Integer(i) => Ok(tobit(*i as f64)),
        Value::Number(n) => Ok(tobit(*n)),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok())
            .map(tobit)
            .ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "bad argument #{} to '{}' (number expected, got string)",
                    pos, name
                ))
            }),
        other => Err(mlua::Error::runtime(format!(
            "bad argument #{} to '{}' (number expected, got {})",
            pos,
            name,
            other.type_name()
        ))),
    }
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        lua.create_function(|_, v: Value| num(&v, 1, "tobit"))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|_, v: Value| Ok(!num(&v, 1, "bnot")?))?,
    )?;
    type Fold = fn(i32, i32) -> i32;
    for (name, f) in [
        ("band", (|a, b| a & b) as Fold),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |_, args: Variadic<Value>| {
                let mut acc = num(args.first().unwrap_or(&Value::Nil), 1, name)?;
                for (i, v) in args.iter().enumerate().skip(1) {
                    acc = f(acc, num(v, i + 1, name)?);
                }
                Ok(acc)
            })?,
        )?;
    }
    type Shift = fn(i32, u32) -> i32;
    for (name, f) in [
        (
            "lshift",
            (|a: i32, n: u32| ((a as u32) << n) as i32) as Shift,
        ),
        ("rshift", |a, n| ((a as u32) >> n) as i32),
        ("arshift", |a, n| a >> n),
        ("rol", |a, n| (a as u32).rotate_left(n) as i32),
        ("ror", |a, n| (a as u32).rotate_right(n) as i32),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |_, (a, n): (Value, Value)| {
                Ok(f(num(&a, 1, name)?, (num(&n, 2, name)? as u32) & 31))
            })?,
        )?;
    }
    t.raw_set(
        "bswap",
        lua.create_function(|_, v: Value| Ok(num(&v, 1, "bswap")?.swap_bytes()))?,
    )?;
    t.raw_set(
        "tohex",
        lua.create_function(|_, (v, n): (Value, Option<Value>)| {
            let x = num(&v, 1, "tohex")? as u32;
            let n = match n {
                Some(n) if !n.is_nil() => num(&n, 2, "tohex")?,
                _ => 8,
            };
            let upper = n < 0;
            let width = (n.unsigned_abs() as usize).min(8);
            let full = if upper {
                format!("{:08X}", x)
            } else {
                format!("{:08x}", x)
            };
            Ok(full[8 - width..].to_string())
        })?,
    )?;
    Ok(t)
}

/// `cjson.null`: a light userdata holding NULL, as lua-cjson's.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// lua-cjson's settings (per VM; a script's change stays, as in Redis).
#[derive(Debug)]
struct Config {
    encode_max_depth: AtomicUsize,
    decode_max_depth: AtomicUsize,
    encode_invalid_numbers: AtomicBool,
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let cfg = Arc::new(Config {
        encode_max_depth: AtomicUsize::new(MAX_DEPTH),
        decode_max_depth: AtomicUsize::new(MAX_DEPTH),
        encode_invalid_numbers: AtomicBool::new(false),
    });
    let t = lua.create_table()?;
    t.raw_set("null", null())?;
    let c = cfg.clone();
    t.raw_set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let mut out = Vec::new();
            encode(&v, 0, &c, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    let c = cfg.clone();
    t.raw_set(
        "decode",
        lua.create_function(move |lua, s: mlua::String| {
            let bytes = s.as_bytes();
            let mut p = Parser { lua, s: &bytes, at: 0, depth: 0, max_depth: c.decode_max_depth.load(Ordering::Relaxed) };
            p.ws();
            let v = p.value()?;
            p.ws();
            if p.at < p.s.len() {
                return Err(p.fail("the end"));
            }
            Ok(v)
        })?,
    )?;
    for (name, decode) in [("encode_max_depth", false), ("decode_max_depth", true)] {
        let c = cfg.clone();
        t.raw_set(
            name,
            lua.create_function(move |_, n: Option<f64>| {
                let slot = if decode { &c.decode_max_depth } else { &c.encode_max_depth };
                if let Some(n) = n {
                    if !(1.0..=2_147_483_647.0).contains(&n) {
                        return Err(mlua::Error::runtime(format!("bad argument #1 to '{}' (expected integer between 1 and 2147483647)", name)));
                    }
                    slot.store(n as usize, Ordering::Relaxed);
                }
                Ok(slot.load(Ordering::Relaxed) as f64)
            })?,
        )?;
    }
    let c = cfg.clone();
    t.raw_set(
        "encode_invalid_numbers",
        lua.create_function(move |_, v: Option<Value>| {
            match v {
                Some(Value::Boolean(b)) => c.encode_invalid_numbers.store(b, Ordering::Relaxed),
                Some(Value::String(s)) => c.encode_invalid_numbers.store(s.as_bytes().as_ref() != b"off", Ordering::Relaxed),
                _ => {}
            }
            Ok(c.encode_invalid_numbers.load(Ordering::Relaxed))
        })?,
    )?;
    // Accepted with lua-cjson's defaults: buffer reuse, precision 14, invalid numbers on
    // decode, sparse arrays refused past ratio 2.
    for name in ["encode_keep_buffer", "encode_number_precision", "decode_invalid_numbers", "encode_sparse_array"] {
        t.raw_set(name, lua.create_function(|_, _: Variadic<Value>| Ok(()))?)?;
    }
    Ok(t)
}

const MAX_DEPTH: usize = 1000;

fn encode(v: &Value, depth: usize, cfg: &Config, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => out.extend_from_slice(number(*i as f64, cfg)?.as_bytes()),
        Value::Number(n) => out.extend_from_slice(number(*n, cfg)?.as_bytes()),
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            if depth >= cfg.encode_max_depth.load(Ordering::Relaxed) {
                return Err(mlua::Error::runtime(format!(
                    "Cannot serialise, excessive nesting ({})",
                    depth + 1
                )));
            }
            table(t, depth + 1, cfg, out)?
        }
        other => {
            return Err(mlua::Error::runtime(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            )))
        }
    }
    Ok(())
}

fn number(n: f64, cfg: &Config) -> mlua::Result<String> {
    if !n.is_finite() && cfg.encode_invalid_numbers.load(Ordering::Relaxed) {
        return Ok(if n.is_nan() { "nan" } else if n > 0.0 { "inf" } else { "-inf" }.to_string());
    }
    if !n.is_finite() {
        return Err(mlua::Error::runtime(
            "Cannot serialise number: must not be NaN or Inf",
        ));
    }
    Ok(super::convert::c_format(c"%.14g", n))
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => out.extend_from_slice(format!("\\u{:04x}", c).as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

fn table(t: &Table, depth: usize, cfg: &Config, out: &mut Vec<u8>) -> mlua::Result<()> {
    // An array: every key a positive integer, not excessively sparse (lua-cjson's rule).
    let mut max = 0usize;
    let mut count = 0usize;
    let mut is_array = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        count += 1;
        let idx = match k {
            Value::Integer(i) if i >= 1 => Some(i as usize),
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => Some(n as usize),
            _ => None,
        };
        match idx {
            Some(i) => max = max.max(i),
            None => {
                is_array = false;
                break;
            }
        }
    }
    if is_array && count > 0 {
        if max > count * 2 && max > 10 {
            return Err(mlua::Error::runtime(
                "Cannot serialise table: excessively sparse array",
            ));
        }
        out.push(b'[');
        for i in 1..=max {
            if i > 1 {
                out.push(b',');
            }
            encode(&t.raw_get::<Value>(i)?, depth, cfg, out)?;
        }
        out.push(b']');
        return Ok(());
    }
    out.push(b'{');
    let mut first = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        if !first {
            out.push(b',');
        }
        first = false;
        match &k {
            Value::String(s) => string(&s.as_bytes(), out),
            Value::Integer(i) => string(number(*i as f64, cfg)?.as_bytes(), out),
            Value::Number(n) => string(number(*n, cfg)?.as_bytes(), out),
            _ => {
                return Err(mlua::Error::runtime(
                    "Cannot serialise table: table key must be a number or string",
                ))
            }
        }
        out.push(b':');
        encode(&v, depth, cfg, out)?;
    }
    out.push(b'}');
    Ok(())
}

struct Parser<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    at: usize,
    depth: usize,
    max_depth: usize,
}

impl Parser<'_> {
    /// lua-cjson's error: what was expected, and the name of the token found instead.
    fn fail(&self, expected: &str) -> mlua::Error {
        let mut at = self.at;
        while matches!(self.s.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            at += 1;
        }
        let rest = &self.s[at.min(self.s.len())..];
        let found = match rest.first() {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b'"') => "T_STRING",
            Some(b':') => "T_COLON",
            Some(b',') => "T_COMMA",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            _ if rest.starts_with(b"true") || rest.starts_with(b"false") => "T_BOOLEAN",
            _ if rest.starts_with(b"null") => "T_NULL",
            _ => "invalid token",
        };
        mlua::Error::runtime(format!(
            "Expected {} but found {} at character {}",
            expected,
            found,
            at + 1
        ))
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn literal(&mut self, word: &[u8], v: Value) -> mlua::Result<Value> {
        if self.s[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(v)
        } else {
            Err(self.fail("value"))
        }
    }

    fn value(&mut self) -> mlua::Result<Value> {
        match self.s.get(self.at) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => Ok(Value::String(self.lua.create_string(self.string()?)?)),
            Some(b't') => self.literal(b"true", Value::Boolean(true)),
            Some(b'f') => self.literal(b"false", Value::Boolean(false)),
            Some(b'n') => self.literal(b"null", null()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.fail("value")),
        }
    }

    fn nest(&mut self) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(mlua::Error::runtime(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth,
                self.at + 1
            )));
        }
        Ok(())
    }

    fn object(&mut self) -> mlua::Result<Value> {
        self.nest()?;
        self.at += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.s.get(self.at) == Some(&b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.ws();
            if self.s.get(self.at) != Some(&b'"') {
                return Err(self.fail("object key string"));
            }
            let k = self.string()?;
            self.ws();
            if self.s.get(self.at) != Some(&b':') {
                return Err(self.fail("colon"));
            }
            self.at += 1;
            self.ws();
            let v = self.value()?;
            t.raw_set(self.lua.create_string(&k)?, v)?;
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.fail("comma or object end")),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }

    fn array(&mut self) -> mlua::Result<Value> {
        self.nest()?;
        self.at += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.s.get(self.at) == Some(&b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        let mut i = 1;
        loop {
            self.ws();
            let v = self.value()?;
            t.raw_set(i, v)?;
            i += 1;
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.fail("comma or array end")),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }

    fn number(&mut self) -> mlua::Result<Value> {
        let start = self.at;
        while matches!(
            self.s.get(self.at),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(n) => Ok(Value::Number(n)),
            Err(_) => {
                self.at = start;
                Err(self.fail("value"))
            }
        }
    }

    fn hex4(&mut self) -> mlua::Result<u32> {
        let digits = self
            .s
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.fail("unicode escape"))?;
        let v = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| u32::from_str_radix(d, 16).ok())
            .ok_or_else(|| self.fail("unicode escape"))?;
        self.at += 4;
        Ok(v)
    }

    fn string(&mut self) -> mlua::Result<Vec<u8>> {
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.at) else {
                return Err(self.fail("string end"));
            };
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.at) else {
                        return Err(self.fail("escape"));
                    };
                    self.at += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xd800..0xdc00).contains(&cp)
                                && self.s[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                if (0xdc00..0xe000).contains(&low) {
                                    cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{fffd}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => {
                            self.at -= 1;
                            return Err(self.fail("escape"));
                        }
                    }
                }
                c if c < 0x20 => {
                    self.at -= 1;
                    return Err(self.fail("string"));
                }
                c => out.push(c),
            }
        }
    }
}
