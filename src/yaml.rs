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

/// A string as a YAML scalar.
pub fn scalar_str(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        // JSON string escapes are valid YAML double-quoted escapes.
        serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
    }
}

fn scalar(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
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
        out.push_str(&scalar_str(k));
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
                    Value::Array(a) => write_list(out, a, indent),
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
mod tests {
    use super::*;

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
