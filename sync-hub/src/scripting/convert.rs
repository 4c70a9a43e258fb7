//! Conversions between Lua values and replies, both directions, as Redis 7 documents them
//! ("Lua to RESP2/RESP3 type conversion" and back).

use bytes::Bytes;
use mlua::{Lua, MultiValue, Table, Value};
use recached_engine::util::fmt_double;
use recached_engine::Reply;

/// Deepest nesting converted (a table that contains itself ends here, not in a stack overflow).
const MAX_DEPTH: usize = 1000;

/// A Lua number as text, as Redis formats command arguments (`%.17g`).
pub fn number_text(v: &Value) -> String {
    let n = match v {
        Value::Integer(i) => *i as f64,
        Value::Number(n) => *n,
        _ => return String::new(),
    };
    fmt_g17(n)
}

/// C's `%.17g`.
pub fn fmt_g17(n: f64) -> String {
    c_format(c"%.17g", n)
}

/// A number through C's printf format `fmt` (one `%…g` conversion), as Redis and its Lua
/// libraries format numbers.
pub fn c_format(fmt: &std::ffi::CStr, n: f64) -> String {
    let mut buf = [0u8; 64];
    // SAFETY: snprintf writes at most buf.len() bytes (NUL included) into buf; `fmt` holds
    // one conversion, for a double.
    let len = unsafe {
        libc::snprintf(
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
            fmt.as_ptr(),
            n,
        )
    };
    let len = (len.max(0) as usize).min(buf.len() - 1);
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// A Lua array of strings (KEYS, ARGV).
pub fn array(lua: &Lua, items: &[Bytes]) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(item)?)?;
    }
    Ok(t)
}

/// The arguments of `redis.call`: strings and numbers only.
pub fn command_args(args: &MultiValue) -> Result<Vec<Bytes>, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".to_string());
    }
    let mut out = Vec::with_capacity(args.len());
    for v in args.iter() {
        match v {
            Value::String(s) => out.push(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(_) | Value::Number(_) => out.push(Bytes::from(number_text(v))),
            _ => {
                return Err(
                    "ERR Lua redis lib command arguments must be strings or integers".to_string(),
                )
            }
        }
    }
    Ok(out)
}

/// `CODE message` from an error text: its first word is the code, or `ERR` when it has
/// only one word; trailing line breaks go.
pub fn error_text(text: &str) -> String {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (code, msg) = match text.split_once(' ') {
        Some((c, m)) => (c, m),
        None => ("ERR", text),
    };
    format!("{} {}", code, msg.trim_end_matches(['\r', '\n']))
}

/// An error table `{err = "CODE message"}` as `redis.pcall` returns it.
pub fn error_table(lua: &Lua, text: &str, ignore_stats: bool) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set("err", error_text(text))?;
    if ignore_stats {
        t.raw_set("ignore_error_stats_update", true)?;
    }
    Ok(Value::Table(t))
}

fn single(lua: &Lua, field: &str, v: Value) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    t.raw_set(field, v)?;
    Ok(Value::Table(t))
}

/// A reply as `redis.call` gives it to Lua, in the script's protocol (`redis.setresp`).
pub fn to_lua(lua: &Lua, reply: &Reply, resp3: bool) -> mlua::Result<Value> {
    Ok(match reply {
        Reply::Ok => single(lua, "ok", Value::String(lua.create_string("OK")?))?,
        Reply::Simple(s) => single(lua, "ok", Value::String(lua.create_string(s.as_bytes())?))?,
        Reply::Error(e) => error_table(lua, e, true)?,
        Reply::Int(i) => Value::Number(*i as f64),
        Reply::Bulk(b) => Value::String(lua.create_string(b)?),
        Reply::Nil | Reply::NilArray => {
            if resp3 {
                Value::Nil
            } else {
                Value::Boolean(false)
            }
        }
        Reply::Array(items) | Reply::Push(items) => seq(lua, items, resp3)?,
        Reply::Set(items) => {
            if resp3 {
                let set = lua.create_table()?;
                for item in items {
                    let k = to_lua(lua, item, resp3)?;
                    if !k.is_nil() {
                        set.raw_set(k, true)?;
                    }
                }
                single(lua, "set", Value::Table(set))?
            } else {
                seq(lua, items, resp3)?
            }
        }
        Reply::Map(pairs) => {
            if resp3 {
                let map = lua.create_table()?;
                for (k, v) in pairs {
                    let k = to_lua(lua, k, resp3)?;
                    if !k.is_nil() {
                        map.raw_set(k, to_lua(lua, v, resp3)?)?;
                    }
                }
                single(lua, "map", Value::Table(map))?
            } else {
                let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
                for (i, (k, v)) in pairs.iter().enumerate() {
                    t.raw_set(2 * i + 1, to_lua(lua, k, resp3)?)?;
                    t.raw_set(2 * i + 2, to_lua(lua, v, resp3)?)?;
                }
                Value::Table(t)
            }
        }
        Reply::Double(d) => {
            if resp3 {
                single(lua, "double", Value::Number(*d))?
            } else {
                Value::String(lua.create_string(fmt_double(*d))?)
            }
        }
        Reply::Bool(b) => {
            if resp3 {
                Value::Boolean(*b)
            } else {
                Value::Number(*b as i64 as f64)
            }
        }
        Reply::Verbatim(format, text) => {
            if resp3 {
                let v = lua.create_table()?;
                v.raw_set("format", *format)?;
                v.raw_set("string", lua.create_string(text)?)?;
                single(lua, "verbatim_string", Value::Table(v))?
            } else {
                Value::String(lua.create_string(text)?)
            }
        }
    })
}

fn seq(lua: &Lua, items: &[Reply], resp3: bool) -> mlua::Result<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, item) in items.iter().enumerate() {
        t.raw_set(i + 1, to_lua(lua, item, resp3)?)?;
    }
    Ok(Value::Table(t))
}

fn no_breaks(s: &[u8]) -> String {
    String::from_utf8_lossy(s)
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// A script's result as the reply to its caller. `resp3` is the script's protocol
/// (`redis.setresp`): it decides what a Lua boolean becomes.
pub fn to_reply(v: &Value, resp3: bool) -> Reply {
    to_reply_at(v, resp3, 0)
}

fn to_reply_at(v: &Value, resp3: bool, depth: usize) -> Reply {
    if depth > MAX_DEPTH {
        return Reply::err("ERR reached lua stack limit");
    }
    match v {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) => {
            if resp3 {
                Reply::Bool(*b)
            } else if *b {
                Reply::Int(1)
            } else {
                Reply::Nil
            }
        }
        Value::Integer(i) => Reply::Int(*i),
        Value::Number(n) => Reply::Int(*n as i64),
        Value::Table(t) => table_reply(t, resp3, depth),
        _ => Reply::Nil,
    }
}

fn table_reply(t: &Table, resp3: bool, depth: usize) -> Reply {
    let field = |k: &str| t.raw_get::<Value>(k).unwrap_or(Value::Nil);
    if let Value::String(e) = field("err") {
        return Reply::err(no_breaks(&e.as_bytes()));
    }
    if let Value::String(s) = field("ok") {
        return Reply::simple(no_breaks(&s.as_bytes()));
    }
    match field("double") {
        Value::Number(n) => return Reply::Double(n),
        Value::Integer(i) => return Reply::Double(i as f64),
        _ => {}
    }
    if let Value::String(s) = field("big_number") {
        // No big-number reply type here: its digits go as a bulk string (RESP2's form).
        return Reply::Bulk(Bytes::from(no_breaks(&s.as_bytes())));
    }
    if let Value::Table(v) = field("verbatim_string") {
        if let (Ok(Value::String(format)), Ok(Value::String(text))) =
            (v.raw_get::<Value>("format"), v.raw_get::<Value>("string"))
        {
            let format: &'static str = if format.as_bytes().as_ref() == b"mkd" {
                "mkd"
            } else {
                "txt"
            };
            return Reply::Verbatim(format, Bytes::copy_from_slice(&text.as_bytes()));
        }
    }
    if let Value::Table(m) = field("map") {
        let mut pairs = Vec::new();
        for (k, v) in m.pairs::<Value, Value>().flatten() {
            pairs.push((
                to_reply_at(&k, resp3, depth + 1),
                to_reply_at(&v, resp3, depth + 1),
            ));
        }
        return Reply::Map(pairs);
    }
    if let Value::Table(s) = field("set") {
        let mut items = Vec::new();
        for (k, _) in s.pairs::<Value, Value>().flatten() {
            items.push(to_reply_at(&k, resp3, depth + 1));
        }
        return Reply::Set(items);
    }
    let mut items = Vec::new();
    let mut i = 1;
    loop {
        let v: Value = t.raw_get(i).unwrap_or(Value::Nil);
        if v.is_nil() {
            break;
        }
        items.push(to_reply_at(&v, resp3, depth + 1));
        i += 1;
    }
    Reply::Array(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_as_redis_does() {
        assert_eq!(fmt_g17(1.0), "1");
        assert_eq!(fmt_g17(-3.0), "-3");
        assert_eq!(fmt_g17(0.1), "0.10000000000000001");
        assert_eq!(fmt_g17(1e20), "1e+20");
    }

    #[test]
    fn error_texts_keep_or_get_a_code() {
        assert_eq!(error_text("-My Error"), "My Error");
        assert_eq!(error_text("Boom"), "ERR Boom");
        assert_eq!(error_text("ERR syntax error\r\n"), "ERR syntax error");
    }
}
