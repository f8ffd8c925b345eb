//! JavaScript's coercions, as JSONLogic's reference implementation (json-logic-js) inherits
//! them: truthiness, `ToNumber`, `ToString`, `==`, `===`, `<` and `String.prototype.substr`.
//! Strings are compared and cut by Unicode scalar value rather than UTF-16 unit; the two differ
//! only for characters beyond the Basic Multilingual Plane.

use std::cmp::Ordering;

use serde_json::Value;

use super::Val;

/// JSONLogic's truthiness: JavaScript's, except that an empty array is false.
pub(crate) fn truthy(v: &Val<'_>) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Num(n) => *n != 0.0 && !n.is_nan(),
        Val::Str(s) => !s.is_empty(),
        Val::Owned(s) => !s.is_empty(),
        Val::List(l) => !l.is_empty(),
        Val::Json(Value::Array(a)) => !a.is_empty(),
        Val::Json(_) => true,
        Val::Items(items) => !items.is_empty(),
        Val::Variant(_) | Val::Split(_) => true,
    }
}

/// `ToNumber`.
pub(crate) fn to_number(v: &Val<'_>) -> f64 {
    match v {
        Val::Null => 0.0,
        Val::Bool(b) => f64::from(u8::from(*b)),
        Val::Num(n) => *n,
        Val::Str(s) => string_to_number(s),
        Val::Owned(s) => string_to_number(s),
        Val::Json(Value::Object(_)) => f64::NAN,
        // Arrays go through their string form: [] is 0, [5] is 5, [1, 2] is NaN.
        other => string_to_number(&to_string(other)),
    }
}

/// `StringToNumber`: decimal with optional exponent, `Infinity`, or 0x/0o/0b integers;
/// surrounding white space ignored, empty is 0, anything else NaN.
pub(crate) fn string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    for (prefix, radix) in [("0x", 16), ("0X", 16), ("0o", 8), ("0O", 8), ("0b", 2), ("0B", 2)] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits
                .chars()
                .fold(0.0, |acc, c| acc * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0)));
        }
    }
    // Rust's parser also takes "inf" and "nan", which JavaScript does not.
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits_ok = {
        let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        (!int.is_empty() || !frac.is_empty())
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    if digits_ok && exponent_ok { t.parse().unwrap_or(f64::NAN) } else { f64::NAN }
}

/// `ToString`.
pub(crate) fn to_string(v: &Val<'_>) -> String {
    let mut out = String::new();
    write_string(v, &mut out);
    out
}

fn write_string(v: &Val<'_>, out: &mut String) {
    match v {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => out.push_str(&number_to_string(*n)),
        Val::Str(s) => out.push_str(s),
        Val::Owned(s) => out.push_str(s),
        Val::List(l) => out.push_str(&l.join(",")),
        Val::Json(j) => write_json(j, out),
        Val::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                join_into(item, out);
            }
        }
        // Variants only stand where a result is decided, never as operands.
        Val::Variant(_) | Val::Split(_) => {}
    }
}

fn write_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_string(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Array.prototype.join writes null as nothing.
                if !item.is_null() {
                    write_json(item, out);
                }
            }
        }
        Value::Object(_) => out.push_str("[object Object]"),
    }
}

/// Appends `v` as `Array.prototype.join` would (`cat` joins its operands): null is empty.
pub(crate) fn join_into(v: &Val<'_>, out: &mut String) {
    match v {
        Val::Null => {}
        other => write_string(other, out),
    }
}

/// `Number.prototype.toString()`: the shortest digits that round-trip, laid out as
/// ECMAScript's `Number::toString` does (`1`, `1.5`, `1e+21`, `1e-7`).
pub(crate) fn number_to_string(n: f64) -> String {
    if n.is_nan() {
        return "NaN".into();
    }
    if n == 0.0 {
        return "0".into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sci = format!("{:e}", n.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let k = digits.len() as i32;
    let point = exp + 1;
    let mut out = String::new();
    if n < 0.0 {
        out.push('-');
    }
    if k <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - k) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if point > 0 { '+' } else { '-' });
        out.push_str(&(point - 1).abs().to_string());
    }
    out
}

/// A primitive after `ToPrimitive`: arrays and objects become strings.
enum Prim<'v> {
    Null,
    Bool(bool),
    Num(f64),
    Str(std::borrow::Cow<'v, str>),
}

fn primitive<'v>(v: &'v Val<'_>) -> Prim<'v> {
    match v {
        Val::Null => Prim::Null,
        Val::Bool(b) => Prim::Bool(*b),
        Val::Num(n) => Prim::Num(*n),
        Val::Str(s) => Prim::Str((*s).into()),
        Val::Owned(s) => Prim::Str(s.as_str().into()),
        other => Prim::Str(to_string(other).into()),
    }
}

fn is_object(v: &Val<'_>) -> bool {
    matches!(v, Val::List(_) | Val::Json(_) | Val::Items(_))
}

/// `==`: JavaScript's loose equality.
pub(crate) fn loose_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    if is_object(a) && is_object(b) {
        // Two objects are equal only when they are the same object.
        return false;
    }
    loose_prim(primitive(a), primitive(b))
}

fn loose_prim(a: Prim<'_>, b: Prim<'_>) -> bool {
    match (a, b) {
        (Prim::Null, Prim::Null) => true,
        (Prim::Null, _) | (_, Prim::Null) => false,
        (Prim::Num(x), Prim::Num(y)) => x == y,
        (Prim::Str(x), Prim::Str(y)) => x == y,
        (Prim::Bool(x), Prim::Bool(y)) => x == y,
        (Prim::Bool(x), other) => loose_prim(Prim::Num(f64::from(u8::from(x))), other),
        (other, Prim::Bool(y)) => loose_prim(other, Prim::Num(f64::from(u8::from(y)))),
        (Prim::Num(x), Prim::Str(s)) | (Prim::Str(s), Prim::Num(x)) => x == string_to_number(&s),
    }
}

/// `===`: the same type and value; objects only when they are the same object.
pub(crate) fn strict_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x == y,
        _ => match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// How `a` compares with `b` under JavaScript's relational operators: as strings when both
/// are strings after `ToPrimitive`, else as numbers; `None` when a NaN is involved.
pub(crate) fn relate(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (primitive(a), primitive(b)) {
        (Prim::Str(x), Prim::Str(y)) => Some(x.cmp(&y)),
        (x, y) => prim_number(x).partial_cmp(&prim_number(y)),
    }
}

fn prim_number(p: Prim<'_>) -> f64 {
    match p {
        Prim::Null => 0.0,
        Prim::Bool(b) => f64::from(u8::from(b)),
        Prim::Num(n) => n,
        Prim::Str(s) => string_to_number(&s),
    }
}

/// `in`: substring of a string (the needle as a string), or strict membership of an array;
/// anything else contains nothing.
pub(crate) fn contains(hay: &Val<'_>, needle: &Val<'_>) -> bool {
    match hay {
        Val::Str(_) | Val::Owned(_) => {
            let hay = hay.as_str().unwrap_or_default();
            // json-logic-js: `if (!b) return false`, so "" contains nothing.
            !hay.is_empty() && hay.contains(to_string(needle).as_str())
        }
        Val::List(items) => needle.as_str().is_some_and(|n| items.iter().any(|i| i == n)),
        Val::Json(Value::Array(items)) => items.iter().any(|i| strict_eq(&Val::from_json(i), needle)),
        Val::Items(items) => items.iter().any(|i| strict_eq(i, needle)),
        _ => false,
    }
}

/// `substr`: json-logic-js's (a negative length leaves that many off the end) over
/// `String.prototype.substr`.
pub(crate) fn substr(s: &str, start: f64, len: Option<f64>) -> String {
    let chars: Vec<char> = s.chars().collect();
    let size = chars.len() as f64;
    let integer = |x: f64| if x.is_nan() { 0.0 } else { x.trunc() };
    let from = |start: f64| {
        let start = integer(start);
        if start < 0.0 { (size + start).max(0.0) } else { start.min(size) }
    };
    let first = from(start);
    match len {
        Some(l) if l < 0.0 => {
            let rest = size - first;
            let keep = (rest + integer(l)).max(0.0);
            chars[first as usize..(first + keep) as usize].iter().collect()
        }
        Some(l) => {
            let take = integer(l).clamp(0.0, size - first);
            chars[first as usize..(first + take) as usize].iter().collect()
        }
        None => chars[first as usize..].iter().collect(),
    }
}
