//! How go-yaml v2 (the YAML library under sigs.k8s.io/yaml, which Helm reads Chart.yaml with)
//! types a scalar: YAML 1.1 booleans and nulls, Go's integer syntax (`0x`, `0o`, `0b`, a
//! leading `0` for octal, `_` ignored), floats, timestamps kept as text. Sexagesimal numbers
//! (`1:20`) are strings there, and so here. Also Go's `strconv.FormatFloat(f, 'g', -1, 32)`.

use super::Value;

pub const STR: &str = "tag:yaml.org,2002:str";
pub const BOOL: &str = "tag:yaml.org,2002:bool";
pub const INT: &str = "tag:yaml.org,2002:int";
pub const FLOAT: &str = "tag:yaml.org,2002:float";
pub const NULL: &str = "tag:yaml.org,2002:null";
pub const TIMESTAMP: &str = "tag:yaml.org,2002:timestamp";
pub const BINARY: &str = "tag:yaml.org,2002:binary";
pub const MERGE: &str = "tag:yaml.org,2002:merge";

fn short(tag: &str) -> String {
    match tag.strip_prefix("tag:yaml.org,2002:") {
        Some(rest) => format!("!!{rest}"),
        None => tag.to_string(),
    }
}

/// The well-known plain scalars.
fn lookup(s: &str) -> Option<Value> {
    Some(match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        ".nan" | ".NaN" | ".NAN" => Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Value::Float(f64::NEG_INFINITY),
        _ => return None,
    })
}

/// The tag go-yaml gives a resolved value.
fn tag_of(v: &Value) -> &'static str {
    match v {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Int(_) | Value::Uint(_) => INT,
        Value::Float(_) => FLOAT,
        _ => STR,
    }
}

/// Go's `strconv.ParseUint(s, base, 64)` for base 0 (prefix decides) or a given base; no
/// underscores (the callers removed them).
fn parse_uint(s: &str, base: u32) -> Option<u64> {
    let (base, digits) = if base == 0 {
        let b = s.as_bytes();
        if b.first() == Some(&b'0') {
            match b.get(1).map(u8::to_ascii_lowercase) {
                Some(b'b') if b.len() >= 3 => (2, &s[2..]),
                Some(b'o') if b.len() >= 3 => (8, &s[2..]),
                Some(b'x') if b.len() >= 3 => (16, &s[2..]),
                _ => (8, &s[1..]),
            }
        } else {
            (10, s)
        }
    } else {
        (base, s)
    };
    if s.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, base).ok()
}

/// Go's `strconv.ParseInt(s, base, 64)`: an optional sign, then as `parse_uint`.
fn parse_int(s: &str, base: u32) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = parse_uint(rest, base)?;
    if neg {
        if u > 1 << 63 {
            None
        } else {
            Some((u as i64).wrapping_neg())
        }
    } else {
        i64::try_from(u).ok()
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`, go-yaml's test for a float.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `underscoreOK`: underscores only between digits (or after a base prefix).
fn underscore_ok(s: &str) -> bool {
    let mut b = s.as_bytes();
    if let Some(b'+' | b'-') = b.first() {
        b = &b[1..];
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseFloat(s, 64)` for a decimal string starting with `.` (the only case
/// go-yaml hands it unchecked): digits with underscores between them, an optional exponent;
/// out of range is an error.
fn parse_float_dot(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    let (mut saw_dot, mut saw_digits, mut underscores) = (false, false, false);
    while i < b.len() {
        match b[i] {
            b'_' => underscores = true,
            b'.' if saw_dot => break,
            b'.' => saw_dot = true,
            c if c.is_ascii_digit() => saw_digits = true,
            _ => break,
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    if i < b.len() && b[i].eq_ignore_ascii_case(&b'e') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if i >= b.len() || !b[i].is_ascii_digit() {
            return None;
        }
        while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
            underscores |= b[i] == b'_';
            i += 1;
        }
    }
    if i != b.len() || (underscores && !underscore_ok(s)) {
        return None;
    }
    finite(&s.replace('_', ""))
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn digits_n(b: &[u8], i: &mut usize, max: usize) -> Option<u32> {
    let start = *i;
    while *i < b.len() && *i - start < max && b[*i].is_ascii_digit() {
        *i += 1;
    }
    if *i == start {
        return None;
    }
    std::str::from_utf8(&b[start..*i]).ok()?.parse().ok()
}

/// go-yaml's `parseTimestamp`: `2006-1-2`, `2006-1-2 15:4:5.999999999` or
/// `2006-1-2T15:4:5.999999999Z07:00` (`t` too).
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let mut i = 5;
    let Some(month) = digits_n(b, &mut i, 2) else {
        return false;
    };
    if i >= b.len() || b[i] != b'-' {
        return false;
    }
    i += 1;
    let Some(day) = digits_n(b, &mut i, 2) else {
        return false;
    };
    let year: u32 = s[..4].parse().unwrap_or(0);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if day == 0 || day > days {
        return false;
    }
    if i == b.len() {
        return true;
    }
    let sep = b[i];
    if !matches!(sep, b'T' | b't' | b' ') {
        return false;
    }
    i += 1;
    let mut fields = [0u32; 3];
    for (n, field) in fields.iter_mut().enumerate() {
        if n > 0 {
            if i >= b.len() || b[i] != b':' {
                return false;
            }
            i += 1;
        }
        match digits_n(b, &mut i, 2) {
            Some(v) => *field = v,
            None => return false,
        }
    }
    if fields[0] > 23 || fields[1] > 59 || fields[2] > 59 {
        return false;
    }
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if sep == b' ' {
        return i == b.len();
    }
    match &b[i..] {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// The value of a plain scalar, or of one tagged with a core tag, as go-yaml v2 decodes it
/// into an `interface{}` (timestamps stay text). An unknown tag leaves the text a string.
pub fn resolve(tag: &str, text: &str) -> Result<Value, String> {
    let resolvable = matches!(tag, "" | STR | BOOL | INT | FLOAT | NULL | TIMESTAMP);
    if !resolvable {
        return Ok(Value::Str(text.to_string()));
    }
    let (rtag, out) = resolve_text(tag, text);
    if tag.is_empty() || tag == rtag || tag == STR {
        return Ok(out);
    }
    if tag == FLOAT {
        match out {
            Value::Int(i) => return Ok(Value::Float(i as f64)),
            Value::Uint(u) => return Ok(Value::Float(u as f64)),
            _ => {}
        }
    }
    Err(format!(
        "cannot decode {} `{text}` as a {}",
        short(rtag),
        short(tag)
    ))
}

/// The tag go-yaml v2 gives `text` written as a plain scalar (its encoder quotes a string
/// unless this is `!!str`).
pub fn plain_tag(text: &str) -> &'static str {
    resolve_text("", text).0
}

fn resolve_text(tag: &str, text: &str) -> (&'static str, Value) {
    let str_value = || (STR, Value::Str(text.to_string()));
    if tag == STR {
        return str_value();
    }
    let hint = match text.as_bytes().first() {
        None => b'N',
        Some(b'+' | b'-') => b'S',
        Some(c) if c.is_ascii_digit() => b'D',
        Some(c) if b"yYnNtTfFoO~".contains(c) => b'M',
        Some(b'.') => b'.',
        Some(_) => return str_value(),
    };
    if let Some(v) = lookup(text) {
        return (tag_of(&v), v);
    }
    match hint {
        b'.' => {
            if let Some(f) = parse_float_dot(text) {
                return (FLOAT, Value::Float(f));
            }
        }
        b'D' | b'S' => {
            if (tag.is_empty() || tag == TIMESTAMP) && is_timestamp(text) {
                return (TIMESTAMP, Value::Str(text.to_string()));
            }
            let plain = text.replace('_', "");
            if let Some(i) = parse_int(&plain, 0) {
                return (INT, Value::Int(i));
            }
            if let Some(u) = parse_uint(&plain, 0) {
                return (INT, Value::Uint(u));
            }
            if yaml_style_float(&plain) {
                if let Some(f) = finite(&plain) {
                    return (FLOAT, Value::Float(f));
                }
            }
            if let Some(bits) = plain.strip_prefix("0b") {
                if let Some(i) = parse_int(bits, 2) {
                    return (INT, Value::Int(i));
                }
                if let Some(u) = parse_uint(bits, 2) {
                    return (INT, Value::Uint(u));
                }
            }
        }
        _ => {}
    }
    str_value()
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`: the value rounded to float32, its shortest
/// decimal digits, `%e` form (two-digit exponent at least) when the exponent is below -4 or
/// at least 6 (the shortest-mode precision), `%f` form otherwise; `+Inf`, `-Inf`, `NaN`.
pub fn format_float32(f: f64) -> String {
    let x = f as f32;
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let neg = x.is_sign_negative();
    let sign = if neg { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Rust's `{:e}` gives the shortest round-tripping digits too: `d.ddde<exp>`.
    let e = format!("{:e}", x.abs());
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let exp: i32 = exp.parse().unwrap_or(0);
    let nd = digits.len() as i32;
    let dp = exp + 1;
    if !(-4..6).contains(&exp) {
        let mut out = format!("{sign}{}", &digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let (es, ea) = if exp < 0 { ('-', -exp) } else { ('+', exp) };
        out.push('e');
        out.push(es);
        if ea < 10 {
            out.push('0');
        }
        out.push_str(&ea.to_string());
        return out;
    }
    let mut out = String::from(sign);
    if dp > 0 {
        let int_len = dp.min(nd) as usize;
        out.push_str(&digits[..int_len]);
        for _ in nd..dp {
            out.push('0');
        }
    } else {
        out.push('0');
    }
    if nd > dp {
        out.push('.');
        for _ in dp..0 {
            out.push('0');
        }
        out.push_str(&digits[dp.max(0) as usize..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Value {
        resolve("", s).unwrap()
    }

    #[test]
    fn yaml11_scalars() {
        for s in ["y", "Yes", "ON", "true", "TRUE", "on"] {
            assert_eq!(plain(s), Value::Bool(true), "{s}");
        }
        for s in ["n", "NO", "off", "False"] {
            assert_eq!(plain(s), Value::Bool(false), "{s}");
        }
        for s in ["", "~", "null", "NULL"] {
            assert_eq!(plain(s), Value::Null, "{s}");
        }
        let ints = [
            ("0x1F", 31),
            ("0o17", 15),
            ("017", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("+12", 12),
            ("-0x10", -16),
            ("0", 0),
            ("-0", 0),
            ("0b-101", -5),
        ];
        for (s, n) in ints {
            assert_eq!(plain(s), Value::Int(n), "{s}");
        }
        assert_eq!(plain("18446744073709551615"), Value::Uint(u64::MAX));
        let floats = [
            ("1.0", 1.0),
            ("1e3", 1000.0),
            ("08", 8.0),
            ("1.", 1.0),
            ("+.5", 0.5),
            (".5", 0.5),
            (".5_5", 0.55),
            ("1_0.5", 10.5),
        ];
        for (s, f) in floats {
            assert_eq!(plain(s), Value::Float(f), "{s}");
        }
        assert!(matches!(plain(".nan"), Value::Float(f) if f.is_nan()));
        assert_eq!(plain("-.Inf"), Value::Float(f64::NEG_INFINITY));
        for s in [
            "1:20",
            "2024-01-01",
            "1e400",
            "0x",
            "._5",
            ".iNf",
            "+",
            "-",
            "1.2.3",
            "0x1p-2",
            "yes please",
            "<<",
            "=",
            "abc",
            "1e",
            "Yes!",
        ] {
            assert_eq!(plain(s), Value::Str(s.to_string()), "{s}");
        }
    }

    #[test]
    fn tags() {
        assert_eq!(resolve(STR, "1.0").unwrap(), Value::Str("1.0".into()));
        assert_eq!(resolve(INT, "0x10").unwrap(), Value::Int(16));
        assert_eq!(resolve(FLOAT, "3").unwrap(), Value::Float(3.0));
        assert_eq!(resolve(BOOL, "yes").unwrap(), Value::Bool(true));
        assert_eq!(resolve("!custom", "12").unwrap(), Value::Str("12".into()));
        assert_eq!(
            resolve(TIMESTAMP, "2001-12-14t21:59:43.10Z").unwrap(),
            Value::Str("2001-12-14t21:59:43.10Z".into())
        );
        assert!(resolve(INT, "abc").is_err());
        assert!(resolve(NULL, "x").is_err());
        assert!(resolve(TIMESTAMP, "2001-02-30").is_err());
    }

    #[test]
    fn go_float_formatting() {
        for (f, s) in [
            (1.0, "1"),
            (1.1, "1.1"),
            (1.10, "1.1"),
            (1.5, "1.5"),
            (1000.0, "1000"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (1e21, "1e+21"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.00000001, "1"),
            (1.0000001, "1.0000001"),
            (1.23456789, "1.2345679"),
            (-2.5, "-2.5"),
            (-0.0, "-0"),
            (0.0, "0"),
            (1e-40, "1e-40"),
            (1e39, "+Inf"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
            (123.456, "123.456"),
            (0.1, "0.1"),
            (0.012, "0.012"),
            (1.8446744073709552e19, "1.8446744e+19"),
            (1e100, "+Inf"),
            (100000.0, "100000"),
        ] {
            assert_eq!(format_float32(f), s, "{f}");
        }
    }
}
