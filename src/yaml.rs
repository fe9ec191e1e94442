//! A small YAML writer for index entries. Helm reads index.yaml with YAML 1.1 rules, where
//! `yes`, `off`, `1_000`, `1:20` or `2001-12-14` are not strings; so every string that is not
//! plainly safe is written double-quoted. Maps are written with sorted keys and lists at their
//! parent key's indentation, the layout Helm and ChartMuseum produce.

use serde_json::Value;

/// True when `s` reads back as the same string under both YAML 1.1 and 1.2 without quotes.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '_' | '.' | '/' | '-' | '+' | '@' | '(' | ')' | ' ' | ',')
    }) {
        return false;
    }
    if s.ends_with(' ') || !(first.is_ascii_alphanumeric() || first == '_' || first == '/') {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "y" | "yes" | "n" | "no" | "true" | "false" | "on" | "off" | "null"
    ) {
        return false;
    }
    if first.is_ascii_digit() {
        // Only dotted versions with three numeric parts (and an optional pre-release or build
        // suffix) are safe: they cannot be numbers, sexagesimals or timestamps.
        let core_end = s.find(['-', '+']).unwrap_or(s.len());
        let core = &s[..core_end];
        let parts: Vec<&str> = core.split('.').collect();
        let numeric_triple = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return numeric_triple && !s.contains(' ');
    }
    true
}

/// True when `c` may stand unescaped inside a double-quoted scalar: printable in YAML, not a
/// line break of YAML 1.1 (NEL, LS, PS), not the byte-order mark, and not `"` or `\`.
pub(crate) fn raw_ok(c: char) -> bool {
    matches!(c, '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '"' | '\\' | '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// `s` as a double-quoted YAML scalar that YAML 1.1 and 1.2 parsers read back unchanged:
/// every character outside the printable set (C0, DEL, C1, surrogates cannot occur), the line
/// breaks NEL/LS/PS, the BOM and U+FFFE/U+FFFF are written as escapes. Characters past the
/// BMP stay raw (they are printable; JSON-style surrogate pairs are not valid YAML).
pub fn quoted(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            c if raw_ok(c) => out.push(c),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// A string as a YAML scalar.
pub fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// Past this many characters a key is written in the explicit form (`? key`): YAML limits
/// implicit keys to 1024 characters, and libyaml-based parsers enforce it.
const IMPLICIT_KEY_MAX: usize = 1000;

/// A number as a YAML scalar both YAML 1.1 and 1.2 read as a number: YAML 1.1 wants a dot in
/// the mantissa and a sign in the exponent of a float (`1.0e+21`, not `1e21`).
fn number(n: &serde_json::Number) -> String {
    let s = n.to_string();
    match s.split_once(['e', 'E']) {
        Some((mant, exp)) => {
            let mant = if mant.contains('.') {
                mant.to_string()
            } else {
                format!("{mant}.0")
            };
            let exp = if exp.starts_with(['+', '-']) {
                exp.to_string()
            } else {
                format!("+{exp}")
            };
            format!("{mant}e{exp}")
        }
        None => s,
    }
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number(n),
        Value::String(s) => scalar_str(s),
        Value::Array(a) if a.is_empty() => "[]".to_string(),
        Value::Object(m) if m.is_empty() => "{}".to_string(),
        _ => return None,
    })
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// Writes a mapping's entries at `indent`; the first line's indentation is already written
/// when `first_inline` is set (a mapping inside a list item).
fn write_map(
    out: &mut String,
    map: &serde_json::Map<String, Value>,
    indent: usize,
    first_inline: bool,
) {
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 || !first_inline {
            pad(out, indent);
        }
        let key = scalar_str(k);
        // A long key is written explicitly, its value on the next line after `:`; lists
        // under it are indented (a list at the key's own indentation is only allowed after
        // an implicit key).
        let explicit = key.chars().count() > IMPLICIT_KEY_MAX;
        let list_indent = if explicit {
            out.push_str("? ");
            out.push_str(&key);
            out.push('\n');
            pad(out, indent);
            indent + 2
        } else {
            out.push_str(&key);
            indent
        };
        out.push(':');
        match scalar(v) {
            Some(s) => {
                out.push(' ');
                out.push_str(&s);
                out.push('\n');
            }
            None => {
                out.push('\n');
                match v {
                    Value::Object(m) => write_map(out, m, indent + 2, false),
                    Value::Array(a) => write_list(out, a, list_indent),
                    _ => {}
                }
            }
        }
    }
}

fn write_list(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match scalar(item) {
            Some(s) => {
                out.push_str(&s);
                out.push('\n');
            }
            None => match item {
                Value::Object(m) => write_map(out, m, indent + 2, true),
                Value::Array(a) => {
                    out.push('\n');
                    write_list(out, a, indent + 2);
                }
                _ => {}
            },
        }
    }
}

/// A mapping as a YAML list item at `indent` (`- key: ...`).
pub fn list_item(map: &serde_json::Map<String, Value>, indent: usize) -> String {
    let mut out = String::with_capacity(512);
    pad(&mut out, indent);
    out.push_str("- ");
    if map.is_empty() {
        out.push_str("{}\n");
    } else {
        write_map(&mut out, map, indent + 2, true);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_yaml11_lookalikes() {
        for s in [
            "yes",
            "No",
            "on",
            "OFF",
            "y",
            "N",
            "~",
            "null",
            "",
            "1_000",
            "1:20",
            "2001-12-14",
            "0755",
            "1e3",
            "1.10",
            "10",
            ".inf",
            "<<",
            "=",
            "-x",
            "a: b",
            "a #b",
            " x",
            "x ",
            "2026-05-01T09:59:58Z",
            "0x1F",
            "+1",
            "1.0",
            "line\nbreak",
            "1.2.3 4",
        ] {
            assert!(!plain_ok(s), "{s:?} written plain");
            let q = scalar_str(s);
            let back: String = serde_norway::from_str(&q).unwrap();
            assert_eq!(back, s);
        }
        for s in [
            "mychart",
            "1.0.0",
            "0.1.0-SNAPSHOT-1",
            "1.0.0+build.5",
            "v1.2.3",
            "charts/a-1.0.0.tgz",
            "Bench Person",
        ] {
            assert!(plain_ok(s), "{s:?} quoted");
        }
    }

    /// The characters YAML forbids raw or folds, each class of them.
    pub(crate) const HOSTILE: &[&str] = &[
        "tab\there",
        "nul\u{0}",
        "esc\u{1b}[0m",
        "cr\rlf\n",
        "bell\u{7}",
        "del\u{7f}",
        "c1\u{80}\u{9f}",
        "nel\u{85}next",
        "ls\u{2028}ps\u{2029}",
        "bom\u{feff}",
        "nonchar\u{fffe}\u{ffff}",
        "astral 😀 \u{10ffff}",
        " lead",
        "trail ",
        "a: b",
        "a #b",
        "#x",
        "yes",
        "null",
        "~",
        "\"q\" \\ back",
        "nbsp\u{a0}",
        "",
        "-",
        "? x",
        "[a]",
        "{a}",
        "&a",
        "*a",
        "!t",
        "%p",
        "@x",
        "`x",
        "|x",
        ">x",
        "'x'",
    ];

    fn round_trip(key: &str, value: &str) {
        let v = serde_json::json!({
            "annotations": {key: value, "k": key},
            "description": value,
            "keywords": [value, key],
            "maintainers": [{"name": value, "email": key}],
            "name": key,
        });
        let text = format!("entries:\n{}", list_item(v.as_object().unwrap(), 2));
        let parsed: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(parsed["entries"][0], v, "{text}");
        // No raw character outside the printable set, no raw line break inside a scalar.
        assert!(
            text.chars()
                .all(|c| c == '\n' || (raw_ok(c) || c == '"' || c == '\\')),
            "{text:?}"
        );
    }

    #[test]
    fn hostile_strings_round_trip() {
        for a in HOSTILE {
            round_trip(a, a);
            round_trip("k", a);
        }
        let long = "k".repeat(1500);
        round_trip(&long, "v");
        // Long keys first in a list item's mapping, and with nested values.
        let v = serde_json::json!({
            &long: ["a", {&long: {"x": [1, 2.5e21]}}],
            "list": [{&long: "x", "b": [1, 2]}, {"c": {&long: []}}],
        });
        let text = format!("top:\n{}", list_item(v.as_object().unwrap(), 0));
        let parsed: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(parsed["top"][0], v, "{text}");
        round_trip(&format!("{long}\u{85}"), &long);
    }

    fn hostile_char() -> impl Strategy<Value = char> {
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                '\u{0}',
                '\t',
                '\n',
                '\r',
                '\u{1b}',
                '\u{7f}',
                '\u{80}',
                '\u{85}',
                '\u{9f}',
                '\u{a0}',
                '\u{2028}',
                '\u{2029}',
                '\u{feff}',
                '\u{fffe}',
                '\u{ffff}',
                '\u{1f600}',
                '\u{10ffff}',
                ' ',
                ':',
                '#',
                '"',
                '\\',
                '\'',
                '-',
                '?',
                '&',
                '*',
            ]),
            prop::char::range('a', 'c'),
        ]
    }

    fn hostile_string() -> impl Strategy<Value = String> {
        prop::collection::vec(hostile_char(), 0..24).prop_map(String::from_iter)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        #[test]
        fn any_string_round_trips(key in hostile_string(), value in hostile_string()) {
            round_trip(&key, &value);
        }

        #[test]
        fn any_rust_string_round_trips(key in any::<String>(), value in any::<String>()) {
            round_trip(&key, &value);
        }
    }

    #[test]
    fn layout_matches_helm() {
        let v: Value = serde_json::json!({
            "name": "a", "keywords": ["x", "yes"], "maintainers": [{"name": "nm", "email": "e@x"}],
            "annotations": {"<<": "no"}, "urls": [], "deps": [{"import-values": [{"child": "a", "parent": "b"}]}]
        });
        let text = list_item(v.as_object().unwrap(), 2);
        assert!(
            text.starts_with("  - annotations:\n      \"<<\": \"no\"\n"),
            "{text}"
        );
        assert!(
            text.contains("    keywords:\n    - x\n    - \"yes\"\n"),
            "{text}"
        );
        assert!(
            text.contains("    maintainers:\n    - email: e@x\n      name: nm\n"),
            "{text}"
        );
        let parsed: Value = serde_norway::from_str(&format!("list:\n{text}")).unwrap();
        assert_eq!(parsed["list"][0], v);
    }
}
