//! How Helm turns a decoded `Chart.yaml` into its `Metadata`: sigs.k8s.io/yaml converts the
//! YAML value to JSON, writing a number or boolean as text where the target field is a string
//! (`strconv.FormatInt`, `FormatFloat(f, 'g', -1, 32)`, `true`/`false`), then Go's JSON
//! decoder fills the struct: keys matched case-insensitively (exact match first), in sorted
//! order, `null` leaving a field as it was, unknown keys ignored, any other type mismatch an
//! error. A non-finite float that stays a number anywhere makes the JSON step fail.

use serde_json::{Map, Value as Json};

use crate::yaml11::Value;
use crate::yaml11::resolve::format_float32;

/// The Go type a JSON value is decoded into.
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    List(&'static Ty),
    Map(&'static Ty),
    /// A struct (behind a pointer: `null` leaves it nil).
    Struct(&'static str, &'static [(&'static str, Ty)]),
    Any,
}

const MAINTAINER: &[(&str, Ty)] = &[("name", Ty::Str), ("email", Ty::Str), ("url", Ty::Str)];

const DEPENDENCY: &[(&str, Ty)] = &[
    ("name", Ty::Str),
    ("version", Ty::Str),
    ("repository", Ty::Str),
    ("condition", Ty::Str),
    ("tags", Ty::List(&Ty::Str)),
    ("enabled", Ty::Bool),
    ("import-values", Ty::List(&Ty::Any)),
    ("alias", Ty::Str),
];

/// Helm's `chart.Metadata`, fields in Go's order.
const METADATA: &[(&str, Ty)] = &[
    ("name", Ty::Str),
    ("home", Ty::Str),
    ("sources", Ty::List(&Ty::Str)),
    ("version", Ty::Str),
    ("description", Ty::Str),
    ("keywords", Ty::List(&Ty::Str)),
    (
        "maintainers",
        Ty::List(&Ty::Struct("Maintainer", MAINTAINER)),
    ),
    ("icon", Ty::Str),
    ("apiVersion", Ty::Str),
    ("condition", Ty::Str),
    ("tags", Ty::Str),
    ("appVersion", Ty::Str),
    ("deprecated", Ty::Bool),
    ("annotations", Ty::Map(&Ty::Str)),
    ("kubeVersion", Ty::Str),
    (
        "dependencies",
        Ty::List(&Ty::Struct("Dependency", DEPENDENCY)),
    ),
    ("type", Ty::Str),
];

pub const ROOT_NAME: &str = "Metadata";

/// Go's case-insensitive key match: ASCII case, plus the two non-ASCII letters that fold to
/// ASCII ones (U+017F long s, U+212A Kelvin sign).
fn fold_eq(key: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17f}' => 's',
        '\u{212a}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(name.chars().map(fold))
}

fn field(fields: &'static [(&'static str, Ty)], key: &str) -> Option<(&'static str, Ty)> {
    fields
        .iter()
        .find(|(n, _)| *n == key)
        .or_else(|| fields.iter().find(|(n, _)| fold_eq(key, n)))
        .copied()
}

/// A map key as text, as sigs.k8s.io/yaml writes it.
fn key_string(k: &Value) -> Result<String, String> {
    Ok(match k {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Float(f) => match format_float32(*f).as_str() {
            "+Inf" => ".inf".into(),
            "-Inf" => "-.inf".into(),
            "NaN" => ".nan".into(),
            s => s.to_string(),
        },
        Value::Null => return Err("unsupported map key: null".into()),
        Value::Seq(_) | Value::Map(_) => return Err("unsupported map key".into()),
    })
}

/// sigs.k8s.io/yaml's `convertToJSONableObject` followed by `json.Marshal`.
fn to_json(v: &Value, ty: Option<Ty>) -> Result<Json, String> {
    let as_text = matches!(ty, Some(Ty::Str));
    Ok(match v {
        Value::Null => Json::Null,
        Value::Str(s) => Json::String(s.clone()),
        Value::Bool(b) if as_text => Json::String(b.to_string()),
        Value::Int(i) if as_text => Json::String(i.to_string()),
        Value::Uint(u) if as_text => Json::String(u.to_string()),
        Value::Float(f) if as_text => Json::String(format_float32(*f)),
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Uint(u) => Json::from(*u),
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => return Err(format!("json: unsupported value: {}", format_float32(*f))),
        },
        Value::Seq(items) => {
            let elem = match ty {
                Some(Ty::List(t)) => Some(*t),
                _ => None,
            };
            Json::Array(
                items
                    .iter()
                    .map(|i| to_json(i, elem))
                    .collect::<Result<_, _>>()?,
            )
        }
        Value::Map(entries) => {
            // A Go map: the last of two keys with the same text wins.
            let mut out = Map::new();
            for (k, val) in entries {
                let key = key_string(k)?;
                let child = match ty {
                    Some(Ty::Struct(_, fields)) => field(fields, &key).map(|(_, t)| t),
                    Some(Ty::Map(t)) => Some(*t),
                    _ => None,
                };
                out.insert(key, to_json(val, child)?);
            }
            Json::Object(out)
        }
    })
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn ty_name(ty: Ty) -> String {
    match ty {
        Ty::Str => "string".into(),
        Ty::Bool => "bool".into(),
        Ty::List(t) => format!("[]{}", ty_name(*t)),
        Ty::Map(t) => format!("map[string]{}", ty_name(*t)),
        Ty::Struct(name, _) => format!("*{name}"),
        Ty::Any => "interface {}".into(),
    }
}

fn zero(ty: Ty) -> Json {
    match ty {
        Ty::Str => Json::String(String::new()),
        Ty::Bool => Json::Bool(false),
        _ => Json::Null,
    }
}

/// A number as Go's JSON decoder gives it to an `interface{}` (a float64), and as Helm's index
/// writer then writes it (a whole number as an integer).
fn go_any(v: &Json) -> Json {
    match v {
        Json::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                Json::from(f as i64)
            } else {
                serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
            }
        }
        Json::Array(a) => Json::Array(a.iter().map(go_any).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), go_any(v))).collect()),
        other => other.clone(),
    }
}

/// Go's `encoding/json` decoding of `v` into `dst` (of type `ty`), at `path` for errors.
fn decode_into(dst: &mut Json, v: &Json, ty: Ty, path: &str) -> Result<(), String> {
    let mismatch = || {
        Err(format!(
            "cannot unmarshal {} into field {path} of type {}",
            kind(v),
            ty_name(ty)
        ))
    };
    match (ty, v) {
        (_, Json::Null) => match ty {
            Ty::List(_) | Ty::Map(_) | Ty::Any => *dst = Json::Null,
            _ => {}
        },
        (Ty::Str, Json::String(_)) | (Ty::Bool, Json::Bool(_)) => *dst = v.clone(),
        (Ty::Any, _) => *dst = go_any(v),
        (Ty::List(elem), Json::Array(items)) => {
            if !dst.is_array() {
                *dst = Json::Array(Vec::new());
            }
            if let Json::Array(out) = dst {
                for (i, item) in items.iter().enumerate() {
                    if i >= out.len() {
                        out.push(zero(*elem));
                    }
                    decode_into(&mut out[i], item, *elem, path)?;
                }
                out.truncate(items.len());
            }
        }
        (Ty::Map(elem), Json::Object(entries)) => {
            if !dst.is_object() {
                *dst = Json::Object(Map::new());
            }
            if let Json::Object(out) = dst {
                for (k, item) in entries {
                    let mut slot = zero(*elem);
                    decode_into(&mut slot, item, *elem, path)?;
                    out.insert(k.clone(), slot);
                }
            }
        }
        (Ty::Struct(_, fields), Json::Object(entries)) => {
            if !dst.is_object() {
                *dst = Json::Object(Map::new());
            }
            if let Json::Object(out) = dst {
                // The JSON object's keys are sorted, as `json.Marshal` writes a map.
                for (k, item) in entries {
                    let Some((name, fty)) = field(fields, k) else {
                        continue;
                    };
                    let sub = if path.is_empty() {
                        name.to_string()
                    } else {
                        format!("{path}.{name}")
                    };
                    let slot = out.entry(name).or_insert_with(|| zero(fty));
                    decode_into(slot, item, fty, &sub)?;
                }
            }
        }
        _ => return mismatch(),
    }
    Ok(())
}

/// Drops the fields left `null` (nil slices and maps), which serde would refuse.
fn drop_nulls(v: &mut Json) {
    if let Json::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            if let Json::Array(items) = x {
                items.iter_mut().for_each(drop_nulls);
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum MetadataError {
    /// The document cannot be read into Helm's Metadata at all.
    Decode(String),
    /// It can, but Helm's validation refuses it.
    Invalid(String),
}

/// `Chart.yaml`'s decoded value as the JSON object of Helm's Metadata (canonical key names,
/// string fields as Helm reads them); `Null` when the document is empty.
pub fn metadata_json(doc: &Value) -> Result<Json, MetadataError> {
    let root = Ty::Struct(ROOT_NAME, METADATA);
    let json = to_json(doc, Some(root)).map_err(MetadataError::Decode)?;
    let mut out = Json::Null;
    match &json {
        Json::Object(_) | Json::Null => {
            decode_into(&mut out, &json, root, "").map_err(MetadataError::Decode)?
        }
        other => {
            return Err(MetadataError::Decode(format!(
                "cannot unmarshal {} into a chart's metadata (a mapping)",
                kind(other)
            )));
        }
    }
    for (list, what) in [
        ("maintainers", "maintainers"),
        ("dependencies", "dependencies"),
    ] {
        if let Some(Json::Array(items)) = out.get(list) {
            if items.iter().any(Json::is_null) {
                return Err(MetadataError::Invalid(format!(
                    "{what} must not contain empty or null nodes"
                )));
            }
        }
    }
    drop_nulls(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(text: &str) -> Json {
        metadata_json(&crate::yaml11::parse(text.as_bytes()).unwrap()).unwrap()
    }

    fn err(text: &str) -> MetadataError {
        metadata_json(&crate::yaml11::parse(text.as_bytes()).unwrap()).unwrap_err()
    }

    /// The values measured with real Helm 4 `repo index` (issue 13, item 14).
    #[test]
    fn scalars_become_helms_strings() {
        let j = md(
            "name: quirk\nversion: 1.0\nappVersion: 1.10\ndescription: 123\n\
            keywords: [true, 1e3, 0x1F, ~, 2024-01-01]\n\
            annotations: {a: 1.50, b: yes, c: on}\n",
        );
        assert_eq!(j["version"], "1");
        assert_eq!(j["appVersion"], "1.1");
        assert_eq!(j["description"], "123");
        assert_eq!(
            j["keywords"],
            serde_json::json!(["true", "1000", "31", "", "2024-01-01"])
        );
        assert_eq!(
            j["annotations"],
            serde_json::json!({"a": "1.5", "b": "true", "c": "true"})
        );
    }

    #[test]
    fn field_by_field() {
        let j = md(
            "Name: a\nname: b\nVERSION: 017\ndeprecated: yes\nhome: .inf\n\
            maintainers:\n  - {Name: 0o10, email: off}\ndependencies:\n  - name: d\n    \
            enabled: on\n    tags: [1_000, 'x']\n    import-values: [1, 1.5, {2: x}]\n\
            unknown: [1, 2]\nicon: 'yes'\ntags: !!str 1.0\ncondition: null\n",
        );
        assert_eq!(j["name"], "b");
        assert_eq!(j["version"], "15");
        assert_eq!(j["deprecated"], true);
        assert_eq!(j["home"], "+Inf");
        assert_eq!(j["icon"], "yes");
        assert_eq!(j["tags"], "1.0");
        assert!(j.get("condition").is_none_or(|c| c == ""));
        assert_eq!(j["maintainers"][0]["name"], "8");
        assert_eq!(j["maintainers"][0]["email"], "false");
        assert_eq!(j["dependencies"][0]["enabled"], true);
        assert_eq!(
            j["dependencies"][0]["tags"],
            serde_json::json!(["1000", "x"])
        );
        assert_eq!(
            j["dependencies"][0]["import-values"],
            serde_json::json!([1, 1.5, {"2": "x"}])
        );
    }

    #[test]
    fn mismatches_are_errors() {
        for doc in [
            "deprecated: 'true'\n",
            "deprecated: 1\n",
            "description: [a]\n",
            "keywords: a\n",
            "annotations: [a]\n",
            "maintainers: [a]\n",
            "unknown: .nan\n",
            "~: x\n",
            "- a\n",
            "just text\n",
        ] {
            assert!(
                matches!(err(doc), MetadataError::Decode(_)),
                "{doc}: {:?}",
                metadata_json(&crate::yaml11::parse(doc.as_bytes()).unwrap())
            );
        }
        assert!(matches!(
            err("maintainers: [~]\n"),
            MetadataError::Invalid(_)
        ));
        assert_eq!(md(""), Json::Null);
    }
}
