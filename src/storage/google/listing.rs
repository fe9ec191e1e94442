//! The JSON documents of the Cloud Storage JSON API that the backend reads: a page of an
//! object listing, one object's metadata, and an error.

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::storage::swift::time;

/// One object as a listing or a metadata GET shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: String,
    pub size: u64,
    /// `updated`, in nanoseconds since the epoch (0 when absent or unreadable).
    pub modified_ns: i64,
    /// `md5Hash` in hex, when the object has one (composite objects have none).
    pub md5: Option<String>,
    /// The object's generation: a new one for every write.
    pub generation: String,
}

/// One page of a listing: the objects, and the token of the next page (none on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<Object>,
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    items: Vec<RawObject>,
    #[serde(default, rename = "nextPageToken")]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct RawObject {
    name: String,
    #[serde(default)]
    size: Value,
    #[serde(default)]
    updated: Option<String>,
    #[serde(default, rename = "md5Hash")]
    md5_hash: Option<String>,
    #[serde(default)]
    generation: Value,
}

/// A number the API sends as a string (`"size": "123"`), or as a number.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// An MD5 as the API sends it (base64) in hex; `None` when it is not one.
pub fn md5_hex(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    (raw.len() == 16).then(|| hex::encode(raw))
}

fn object(raw: RawObject) -> Result<Object, String> {
    let size = match &raw.size {
        Value::Null => 0,
        v => number(v).ok_or_else(|| format!("object {:?}: bad size {v}", raw.name))?,
    };
    let generation = match &raw.generation {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    Ok(Object {
        modified_ns: raw
            .updated
            .as_deref()
            .and_then(time::parse_iso8601)
            .unwrap_or(0),
        md5: raw.md5_hash.as_deref().and_then(md5_hex),
        name: raw.name,
        size,
        generation,
    })
}

/// A page of `objects.list`. An empty `nextPageToken` counts as none.
pub fn parse_page(body: &str) -> Result<Page, String> {
    let raw: RawPage = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let objects = raw
        .items
        .into_iter()
        .map(object)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        objects,
        next: raw.next_page_token.filter(|t| !t.is_empty()),
    })
}

/// An object's metadata (`objects.get`, or the answer to an upload).
pub fn parse_object(body: &str) -> Result<Object, String> {
    let raw: RawObject = serde_json::from_str(body).map_err(|e| e.to_string())?;
    object(raw)
}

/// The message of an error answer (`{"error": {"code": 404, "message": "..."}}`).
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let e = v.get("error")?;
    match e {
        Value::String(s) => Some(s.clone()),
        _ => e.get("message")?.as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_listing_page() {
        let body = r#"{"kind":"storage#objects","nextPageToken":"tok",
            "prefixes":["p/deeper/"],
            "items":[{"name":"p/a-0.1.0.tgz","size":"12","updated":"2024-05-01T10:00:00.123Z",
                      "md5Hash":"rL0Y20zC+Fzt72VPzMSk2A==","generation":"1714557600123456"},
                     {"name":"p/b.tgz","size":3,"generation":7}]}"#;
        let p = parse_page(body).unwrap();
        assert_eq!(p.next.as_deref(), Some("tok"));
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].size, 12);
        assert_eq!(p.objects[0].modified_ns, 1_714_557_600_123_000_000);
        assert_eq!(
            p.objects[0].md5.as_deref(),
            Some("acbd18db4cc2f85cedef654fccc4a4d8")
        );
        assert_eq!(p.objects[0].generation, "1714557600123456");
        assert_eq!(p.objects[1].generation, "7");
        assert_eq!(parse_page("{}").unwrap().objects, vec![]);
        assert_eq!(parse_page(r#"{"nextPageToken":""}"#).unwrap().next, None);
        for bad in [
            "",
            "1",
            r#"{"items":[{"size":"1"}]}"#,
            r#"{"items":[{"name":"a","size":"x"}]}"#,
        ] {
            assert!(parse_page(bad).is_err(), "{bad}");
        }
        assert_eq!(
            error_message(r#"{"error":{"code":404,"message":"No such object: b/o"}}"#).as_deref(),
            Some("No such object: b/o")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any names, sizes and tokens come back as they were sent.
        #[test]
        fn pages_round_trip(
            names in proptest::collection::vec("\\PC{1,40}", 0..20),
            size in any::<u64>(),
            token in proptest::option::of("\\PC{1,30}"),
        ) {
            let items: Vec<Value> = names.iter().map(|n| serde_json::json!({
                "name": n, "size": size.to_string(), "updated": "2024-01-01T00:00:00Z",
                "generation": "5",
            })).collect();
            let body = serde_json::json!({"items": items, "nextPageToken": token}).to_string();
            let p = parse_page(&body).unwrap();
            prop_assert_eq!(p.objects.iter().map(|o| o.name.clone()).collect::<Vec<_>>(), names);
            prop_assert!(p.objects.iter().all(|o| o.size == size));
            prop_assert_eq!(p.next, token);
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn garbage_is_an_error_not_a_panic(body in "\\PC{0,200}") {
            let _ = parse_page(&body);
            let _ = parse_object(&body);
            let _ = error_message(&body);
        }
    }
}
