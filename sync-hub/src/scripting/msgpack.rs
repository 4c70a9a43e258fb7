//! `cmsgpack` and `struct`, the two binary-format libraries Redis loads into its Lua VM,
//! written here from their documented behaviour (lua-cmsgpack and Roberto Ierusalimschy's
//! struct library): `cmsgpack.pack(...)`, `unpack`, `unpack_one`, `unpack_limit`;
//! `struct.pack(fmt, ...)`, `unpack(fmt, s [, i])`, `size(fmt)`.

use mlua::{Lua, MultiValue, Table, Value};

/// Nesting past which cmsgpack packs `nil`, as lua-cmsgpack does.
const MAX_NESTING: usize = 16;

pub fn cmsgpack(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            if args.is_empty() {
                return Err(mlua::Error::runtime("MessagePack pack needs input."));
            }
            let mut out = Vec::new();
            for v in args.iter() {
                pack(v, 0, &mut out)?;
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, s: mlua::String| {
            let bytes = s.as_bytes();
            let mut at = 0;
            let mut out = Vec::new();
            while at < bytes.len() {
                out.push(unpack(lua, &bytes, &mut at, 0)?);
            }
            Ok(MultiValue::from_vec(out))
        })?,
    )?;
    for (name, one) in [("unpack_one", true), ("unpack_limit", false)] {
        t.raw_set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                let mut it = args.into_iter();
                let Some(Value::String(s)) = it.next() else {
                    return Err(mlua::Error::runtime("bad argument #1 (string expected)"));
                };
                let num = |v: Option<Value>| match v {
                    Some(Value::Integer(i)) => i,
                    Some(Value::Number(n)) => n as i64,
                    _ => 0,
                };
                let limit = if one { 1 } else { num(it.next()) };
                let offset = num(it.next());
                let bytes = s.as_bytes();
                if offset < 0 || offset as usize > bytes.len() {
                    return Err(mlua::Error::runtime(
                        "Start offset greater than input length",
                    ));
                }
                // lua-cmsgpack's rule: limit 0 with offset 0 decodes everything and
                // returns no offset; otherwise at most `limit` objects, after the offset of
                // the next one (-1 once the input is consumed).
                let all = limit == 0 && offset == 0;
                let mut at = offset as usize;
                let mut values = Vec::new();
                while at < bytes.len() && (all || (values.len() as i64) < limit) {
                    values.push(unpack(lua, &bytes, &mut at, 0)?);
                }
                let mut out = Vec::new();
                if !all {
                    out.push(Value::Integer(if at >= bytes.len() {
                        -1
                    } else {
                        at as i64
                    }));
                }
                out.extend(values);
                Ok(MultiValue::from_vec(out))
            })?,
        )?;
    }
    Ok(t)
}

fn pack(v: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match v {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(i) => pack_int(*i, out),
        Value::Number(n) => {
            let n = *n;
            if n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64 {
                pack_int(n as i64, out)
            } else if (n as f32) as f64 == n || n.is_nan() {
                out.push(0xca);
                out.extend_from_slice(&(n as f32).to_be_bytes());
            } else {
                out.push(0xcb);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Value::String(s) => {
            let b = s.as_bytes();
            let len = b.len();
            if len < 32 {
                out.push(0xa0 | len as u8);
            } else if len <= 0xff {
                out.extend_from_slice(&[0xd9, len as u8]);
            } else if len <= 0xffff {
                out.push(0xda);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xdb);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&b);
        }
        Value::Table(t) if depth < MAX_NESTING => pack_table(t, depth + 1, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn pack_int(i: i64, out: &mut Vec<u8>) {
    if i >= 0 {
        let u = i as u64;
        if u < 128 {
            out.push(u as u8);
        } else if u <= 0xff {
            out.extend_from_slice(&[0xcc, u as u8]);
        } else if u <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(u as u16).to_be_bytes());
        } else if u <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(u as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
    } else if i >= -32 {
        out.push(i as i8 as u8);
    } else if i >= -128 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn pack_table(t: &Table, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    // An array when its keys are exactly 1..n.
    let mut count = 0usize;
    let mut max = 0usize;
    let mut array = true;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        count += 1;
        match k {
            Value::Integer(i) if i >= 1 => max = max.max(i as usize),
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => max = max.max(n as usize),
            _ => array = false,
        }
    }
    let header = |out: &mut Vec<u8>, n: usize, fix: u8, b16: u8, b32: u8| {
        if n < 16 {
            out.push(fix | n as u8);
        } else if n <= 0xffff {
            out.push(b16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(b32);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
    };
    if array && max == count {
        header(out, count, 0x90, 0xdc, 0xdd);
        for i in 1..=count {
            pack(&t.raw_get::<Value>(i)?, depth, out)?;
        }
    } else {
        header(out, count, 0x80, 0xde, 0xdf);
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            pack(&k, depth, out)?;
            pack(&v, depth, out)?;
        }
    }
    Ok(())
}

fn take<'a>(s: &'a [u8], at: &mut usize, n: usize) -> mlua::Result<&'a [u8]> {
    let end = at
        .checked_add(n)
        .filter(|&e| e <= s.len())
        .ok_or_else(|| mlua::Error::runtime("Missing bytes in input."))?;
    let out = &s[*at..end];
    *at = end;
    Ok(out)
}

fn be(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64)
}

fn unpack(lua: &Lua, s: &[u8], at: &mut usize, depth: usize) -> mlua::Result<Value> {
    if depth > 1000 {
        return Err(mlua::Error::runtime("Bad data format in input."));
    }
    let tag = take(s, at, 1)?[0];
    let string = |lua: &Lua, at: &mut usize, n: usize| -> mlua::Result<Value> {
        Ok(Value::String(lua.create_string(take(s, at, n)?)?))
    };
    Ok(match tag {
        0x00..=0x7f => Value::Integer(tag as i64),
        0x80..=0x8f => map(lua, s, at, (tag & 0x0f) as usize, depth)?,
        0x90..=0x9f => array(lua, s, at, (tag & 0x0f) as usize, depth)?,
        0xa0..=0xbf => string(lua, at, (tag & 0x1f) as usize)?,
        0xc0 => Value::Nil,
        0xc2 => Value::Boolean(false),
        0xc3 => Value::Boolean(true),
        0xc4 | 0xd9 => {
            let n = take(s, at, 1)?[0] as usize;
            string(lua, at, n)?
        }
        0xc5 | 0xda => {
            let n = be(take(s, at, 2)?) as usize;
            string(lua, at, n)?
        }
        0xc6 | 0xdb => {
            let n = be(take(s, at, 4)?) as usize;
            string(lua, at, n)?
        }
        0xca => {
            Value::Number(f32::from_be_bytes(take(s, at, 4)?.try_into().expect("4 bytes")) as f64)
        }
        0xcb => Value::Number(f64::from_be_bytes(
            take(s, at, 8)?.try_into().expect("8 bytes"),
        )),
        0xcc => Value::Integer(be(take(s, at, 1)?) as i64),
        0xcd => Value::Integer(be(take(s, at, 2)?) as i64),
        0xce => Value::Integer(be(take(s, at, 4)?) as i64),
        0xcf => Value::Number(be(take(s, at, 8)?) as f64),
        0xd0 => Value::Integer(take(s, at, 1)?[0] as i8 as i64),
        0xd1 => Value::Integer(be(take(s, at, 2)?) as u16 as i16 as i64),
        0xd2 => Value::Integer(be(take(s, at, 4)?) as u32 as i32 as i64),
        0xd3 => Value::Integer(be(take(s, at, 8)?) as i64),
        0xdc => {
            let n = be(take(s, at, 2)?) as usize;
            array(lua, s, at, n, depth)?
        }
        0xdd => {
            let n = be(take(s, at, 4)?) as usize;
            array(lua, s, at, n, depth)?
        }
        0xde => {
            let n = be(take(s, at, 2)?) as usize;
            map(lua, s, at, n, depth)?
        }
        0xdf => {
            let n = be(take(s, at, 4)?) as usize;
            map(lua, s, at, n, depth)?
        }
        0xe0..=0xff => Value::Integer(tag as i8 as i64),
        _ => return Err(mlua::Error::runtime("Bad data format in input.")),
    })
}

fn array(lua: &Lua, s: &[u8], at: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    // Each element takes at least one byte: a count beyond the input is a lie.
    if n > s.len() - *at {
        return Err(mlua::Error::runtime("Missing bytes in input."));
    }
    let t = lua.create_table_with_capacity(n, 0)?;
    for i in 1..=n {
        t.raw_set(i, unpack(lua, s, at, depth + 1)?)?;
    }
    Ok(Value::Table(t))
}

fn map(lua: &Lua, s: &[u8], at: &mut usize, n: usize, depth: usize) -> mlua::Result<Value> {
    if n.saturating_mul(2) > s.len() - *at {
        return Err(mlua::Error::runtime("Missing bytes in input."));
    }
    let t = lua.create_table_with_capacity(0, n)?;
    for _ in 0..n {
        let k = unpack(lua, s, at, depth + 1)?;
        let v = unpack(lua, s, at, depth + 1)?;
        if !k.is_nil() {
            t.raw_set(k, v)?;
        }
    }
    Ok(Value::Table(t))
}

/// One item of a struct format.
enum Item {
    Endian(bool),
    Align(usize),
    Pad,
    Int { size: usize, signed: bool },
    Float,
    Double,
    Zstr,
    Fixed(usize),
}

/// Parses a struct format into items (whitespace ignored).
fn format(fmt: &[u8]) -> mlua::Result<Vec<Item>> {
    let mut out = Vec::new();
    let mut i = 0;
    let digits = |i: &mut usize| -> Option<usize> {
        let start = *i;
        while *i < fmt.len() && fmt[*i].is_ascii_digit() {
            *i += 1;
        }
        (start < *i)
            .then(|| {
                std::str::from_utf8(&fmt[start..*i])
                    .ok()
                    .and_then(|d| d.parse().ok())
            })
            .flatten()
    };
    while i < fmt.len() {
        let c = fmt[i];
        i += 1;
        out.push(match c {
            b' ' => continue,
            b'>' => Item::Endian(false),
            b'<' => Item::Endian(true),
            b'=' => Item::Endian(cfg!(target_endian = "little")),
            b'!' => Item::Align(digits(&mut i).unwrap_or(8)),
            b'x' => Item::Pad,
            b'b' => Item::Int {
                size: 1,
                signed: true,
            },
            b'B' => Item::Int {
                size: 1,
                signed: false,
            },
            b'h' => Item::Int {
                size: 2,
                signed: true,
            },
            b'H' => Item::Int {
                size: 2,
                signed: false,
            },
            b'l' => Item::Int {
                size: 8,
                signed: true,
            },
            b'L' => Item::Int {
                size: 8,
                signed: false,
            },
            b'T' => Item::Int {
                size: 8,
                signed: false,
            },
            b'i' | b'I' => {
                let size = digits(&mut i).unwrap_or(4);
                if !(1..=8).contains(&size) {
                    return Err(mlua::Error::runtime(format!(
                        "integral size {} is larger than limit of 8",
                        size
                    )));
                }
                Item::Int {
                    size,
                    signed: c == b'i',
                }
            }
            b'f' => Item::Float,
            b'd' => Item::Double,
            b's' => Item::Zstr,
            b'c' => Item::Fixed(digits(&mut i).unwrap_or(1)),
            other => {
                return Err(mlua::Error::runtime(format!(
                    "invalid format option '{}'",
                    other as char
                )))
            }
        });
    }
    Ok(out)
}

fn size_of(item: &Item) -> usize {
    match item {
        Item::Int { size, .. } => *size,
        Item::Float => 4,
        Item::Double => 8,
        Item::Pad => 1,
        Item::Fixed(n) => *n,
        _ => 0,
    }
}

/// The size an item aligns to (`c` strings do not align).
fn align_of(item: &Item) -> usize {
    match item {
        Item::Fixed(_) => 0,
        other => size_of(other),
    }
}

/// Padding before an item of `size` at `at` under alignment `align` (power of two items only).
fn pad_for(size: usize, align: usize, at: usize) -> usize {
    let a = size.min(align);
    if a <= 1 || !a.is_power_of_two() {
        return 0;
    }
    (a - (at % a)) % a
}

fn arg_num(v: Option<&Value>, pos: usize) -> mlua::Result<f64> {
    match v {
        Some(Value::Integer(i)) => Ok(*i as f64),
        Some(Value::Number(n)) => Ok(*n),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| {
                mlua::Error::runtime(format!(
                    "bad argument #{} to 'pack' (number expected, got string)",
                    pos
                ))
            }),
        other => Err(mlua::Error::runtime(format!(
            "bad argument #{} to 'pack' (number expected, got {})",
            pos,
            other.map(|v| v.type_name()).unwrap_or("no value")
        ))),
    }
}

pub fn structlib(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: MultiValue| {
            let mut it = args.iter();
            let Some(Value::String(fmt)) = it.next() else {
                return Err(mlua::Error::runtime(
                    "bad argument #1 to 'pack' (string expected)",
                ));
            };
            let items = format(&fmt.as_bytes())?;
            let (mut little, mut align) = (cfg!(target_endian = "little"), 1usize);
            let mut out: Vec<u8> = Vec::new();
            let mut pos = 2;
            for item in &items {
                let pad = pad_for(align_of(item), align, out.len());
                out.resize(out.len() + pad, 0);
                match item {
                    Item::Endian(l) => little = *l,
                    Item::Align(a) => align = *a,
                    Item::Pad => out.push(0),
                    Item::Int { size, .. } => {
                        let n = arg_num(it.next(), pos)? as i64 as u64;
                        pos += 1;
                        let bytes = n.to_le_bytes();
                        let mut field = bytes[..*size].to_vec();
                        if !little {
                            field.reverse();
                        }
                        out.extend_from_slice(&field);
                    }
                    Item::Float | Item::Double => {
                        let n = arg_num(it.next(), pos)?;
                        pos += 1;
                        let mut field = if matches!(item, Item::Float) {
                            (n as f32).to_le_bytes().to_vec()
                        } else {
                            n.to_le_bytes().to_vec()
                        };
                        if !little {
                            field.reverse();
                        }
                        out.extend_from_slice(&field);
                    }
                    Item::Zstr | Item::Fixed(_) => {
                        let s = match it.next() {
                            Some(Value::String(s)) => s.as_bytes().to_vec(),
                            Some(v @ (Value::Integer(_) | Value::Number(_))) => {
                                super::convert::number_text(v).into_bytes()
                            }
                            _ => {
                                return Err(mlua::Error::runtime(format!(
                                    "bad argument #{} to 'pack' (string expected)",
                                    pos
                                )))
                            }
                        };
                        pos += 1;
                        match item {
                            Item::Zstr => {
                                out.extend_from_slice(&s);
                                out.push(0);
                            }
                            Item::Fixed(n) => {
                                if s.len() < *n {
                                    return Err(mlua::Error::runtime(format!(
                                        "bad argument #{} to 'pack' (string too short)",
                                        pos - 1
                                    )));
                                }
                                out.extend_from_slice(&s[..*n]);
                            }
                            _ => {}
                        }
                    }
                }
            }
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(
            |lua, (fmt, data, init): (mlua::String, mlua::String, Option<i64>)| {
                let items = format(&fmt.as_bytes())?;
                let s = data.as_bytes();
                let mut at = init.unwrap_or(1).max(1) as usize - 1;
                let (mut little, mut align) = (cfg!(target_endian = "little"), 1usize);
                let mut out = Vec::new();
                let short =
                    || mlua::Error::runtime("bad argument #2 to 'unpack' (data string too short)");
                for item in &items {
                    at += pad_for(align_of(item), align, at);
                    match item {
                        Item::Endian(l) => little = *l,
                        Item::Align(a) => align = *a,
                        Item::Pad => at += 1,
                        Item::Int { size, signed } => {
                            let mut field = s.get(at..at + size).ok_or_else(short)?.to_vec();
                            at += size;
                            if !little {
                                field.reverse();
                            }
                            let mut buf = [0u8; 8];
                            buf[..*size].copy_from_slice(&field);
                            let mut v = u64::from_le_bytes(buf);
                            if *signed && *size < 8 && v & (1 << (size * 8 - 1)) != 0 {
                                v |= !0u64 << (size * 8);
                            }
                            out.push(if *signed {
                                Value::Number(v as i64 as f64)
                            } else {
                                Value::Number(v as f64)
                            });
                        }
                        Item::Float | Item::Double => {
                            let n = if matches!(item, Item::Float) { 4 } else { 8 };
                            let mut field = s.get(at..at + n).ok_or_else(short)?.to_vec();
                            at += n;
                            if !little {
                                field.reverse();
                            }
                            let v = if n == 4 {
                                f32::from_le_bytes(field.try_into().expect("4")) as f64
                            } else {
                                f64::from_le_bytes(field.try_into().expect("8"))
                            };
                            out.push(Value::Number(v));
                        }
                        Item::Zstr => {
                            let end = s[at.min(s.len())..]
                                .iter()
                                .position(|&c| c == 0)
                                .ok_or_else(|| {
                                    mlua::Error::runtime("unfinished string for format 's'")
                                })?;
                            out.push(Value::String(lua.create_string(&s[at..at + end])?));
                            at += end + 1;
                        }
                        Item::Fixed(n) => {
                            let field = s.get(at..at + n).ok_or_else(short)?;
                            out.push(Value::String(lua.create_string(field)?));
                            at += n;
                        }
                    }
                }
                out.push(Value::Integer(at as i64 + 1));
                Ok(MultiValue::from_vec(out))
            },
        )?,
    )?;
    t.raw_set(
        "size",
        lua.create_function(|_, fmt: mlua::String| {
            let items = format(&fmt.as_bytes())?;
            let mut align = 1usize;
            let mut at = 0usize;
            for item in &items {
                if matches!(item, Item::Zstr) {
                    return Err(mlua::Error::runtime("options 's' has no fixed size"));
                }
                at += pad_for(align_of(item), align, at);
                if let Item::Align(a) = item {
                    align = *a;
                }
                at += size_of(item);
            }
            Ok(at as i64)
        })?,
    )?;
    Ok(t)
}
