//! etcd v3's JSON gateway (grpc-gateway in front of the KV service): request bodies, answer
//! parsing, and the layout of chartroom's keys. Keys and values travel base64-encoded; 64-bit
//! numbers come as JSON strings (`"revision":"12"`), fields at their zero value are left out.
//! Everything here is pure, so that any answer can be checked: it parses or is an error.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

/// The folder, under the base prefix, that holds the metadata key of every object.
pub const META_DIR: &str = ".chartroom-meta";

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// The end of a range over every key that starts with `prefix`: the prefix with its last
/// byte below 0xff incremented (and what follows it dropped); `\0` (etcd's "to the end of
/// the keyspace") for a prefix of only 0xff bytes or an empty one.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key right after `key` in etcd's (byte) order: where the next page of a listing starts.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// The keys of one object: its bytes, and its metadata (size, time, checksum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    pub data: String,
    pub meta: String,
}

/// The base prefix as a key: `/` followed by the prefix with leading, trailing and doubled
/// `/` dropped (`/chart_backend_bucket` for an empty one, as ChartMuseum's library).
pub fn base(clean_prefix: &str) -> String {
    if clean_prefix.is_empty() {
        "/chart_backend_bucket".to_string()
    } else {
        format!("/{clean_prefix}")
    }
}

/// The keys of an object path (checked by the caller), or `None` for a path inside the
/// metadata folder (which would alias another object's metadata key).
pub fn keys(base: &str, path: &str) -> Option<Keys> {
    if path.split('/').next() == Some(META_DIR) {
        return None;
    }
    Some(Keys {
        data: format!("{base}/{path}"),
        meta: format!("{base}/{META_DIR}/{path}"),
    })
}

/// The prefix of the metadata keys of the objects in a "directory" (`""`: the root).
pub fn meta_dir_prefix(base: &str, dir: &str) -> String {
    if dir.is_empty() {
        format!("{base}/{META_DIR}/")
    } else {
        format!("{base}/{META_DIR}/{dir}/")
    }
}

/// What the metadata key holds: the object's size, its modification time (set by chartroom
/// when it wrote the object, kept across restarts) and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Meta {
    pub size: u64,
    pub mtime_ns: i64,
    pub sha256: String,
}

impl Meta {
    pub fn to_json(&self) -> String {
        // Serializing a struct of numbers and a string cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(bytes: &[u8]) -> Result<Meta, String> {
        let m: Meta =
            serde_json::from_slice(bytes).map_err(|e| format!("bad metadata value: {e}"))?;
        if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("bad metadata value: sha256 is not 64 hex digits".into());
        }
        Ok(m)
    }
}

/// One key-value pair of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A range answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeAnswer {
    pub kvs: Vec<Kv>,
    pub more: bool,
    pub revision: i64,
}

/// A txn answer: whether the comparisons held, and each operation's answer (ranges with
/// their pairs, deletes with their count).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TxnAnswer {
    pub succeeded: bool,
    pub responses: Vec<OpAnswer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpAnswer {
    Range(RangeAnswer),
    Put,
    Delete { deleted: i64 },
}

/// An int64 as the gateway sends it: a string of digits, or (from other encoders) a number;
/// absent is 0.
fn int(v: Option<&Value>, what: &str) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| format!("{what} is not an integer: {s:?}")),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("{what} is not an integer: {n}")),
        Some(_) => Err(format!("{what} is not an integer")),
    }
}

fn bytes(v: Option<&Value>, what: &str) -> Result<Vec<u8>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => B64
            .decode(s)
            .map_err(|e| format!("{what} is not base64: {e}")),
        Some(_) => Err(format!("{what} is not a string")),
    }
}

fn boolean(v: Option<&Value>, what: &str) -> Result<bool, String> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{what} is not a boolean")),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a serde_json::Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} is not a JSON object"))
}

fn range_of(v: &Value) -> Result<RangeAnswer, String> {
    let o = object(v, "range answer")?;
    let revision = match o.get("header") {
        Some(h) => int(object(h, "header")?.get("revision"), "header.revision")?,
        None => 0,
    };
    let kvs = match o.get("kvs") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|kv| {
                let kv = object(kv, "kvs item")?;
                Ok(Kv {
                    key: bytes(kv.get("key"), "key")?,
                    value: bytes(kv.get("value"), "value")?,
                    create_revision: int(kv.get("create_revision"), "create_revision")?,
                    mod_revision: int(kv.get("mod_revision"), "mod_revision")?,
                })
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("kvs is not a list".into()),
    };
    Ok(RangeAnswer {
        kvs,
        more: boolean(o.get("more"), "more")?,
        revision,
    })
}

/// Parses the answer to `/v3/kv/range`.
pub fn parse_range(body: &[u8]) -> Result<RangeAnswer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    range_of(&v)
}

/// Parses the answer to `/v3/kv/txn`.
pub fn parse_txn(body: &[u8]) -> Result<TxnAnswer, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let o = object(&v, "txn answer")?;
    let responses = match o.get("responses") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|r| {
                let r = object(r, "responses item")?;
                if let Some(rr) = r.get("response_range") {
                    Ok(OpAnswer::Range(range_of(rr)?))
                } else if r.contains_key("response_put") {
                    Ok(OpAnswer::Put)
                } else if let Some(d) = r.get("response_delete_range") {
                    let d = object(d, "response_delete_range")?;
                    Ok(OpAnswer::Delete {
                        deleted: int(d.get("deleted"), "deleted")?,
                    })
                } else {
                    Err("unknown operation answer".to_string())
                }
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("responses is not a list".into()),
    };
    Ok(TxnAnswer {
        succeeded: boolean(o.get("succeeded"), "succeeded")?,
        responses,
    })
}

/// The message of a gateway error answer (`{"error":"...","code":N,"message":"..."}`), or
/// the start of the body when it is not one.
pub fn error_message(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let o = v.as_object()?;
        o.get("message")
            .or_else(|| o.get("error"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    parsed.unwrap_or_else(|| {
        let s = String::from_utf8_lossy(body);
        s.chars().take(200).collect()
    })
}

/// Whether a gateway error says that the request was above etcd's `--max-request-bytes`.
pub fn is_too_large(message: &str) -> bool {
    message.contains("request is too large")
}

/// A range request over `[key, end)` (`end` empty: the one key).
pub fn range_request(key: &[u8], end: &[u8], limit: i64, revision: i64) -> Value {
    let mut r = json!({ "key": b64(key) });
    if !end.is_empty() {
        r["range_end"] = json!(b64(end));
    }
    if limit > 0 {
        r["limit"] = json!(limit.to_string());
    }
    if revision > 0 {
        r["revision"] = json!(revision.to_string());
    }
    r
}

pub fn put_op(key: &str, value: &[u8]) -> Value {
    json!({ "request_put": { "key": b64(key.as_bytes()), "value": b64(value) } })
}

pub fn delete_op(key: &str) -> Value {
    json!({ "request_delete_range": { "key": b64(key.as_bytes()) } })
}

pub fn range_op(key: &str) -> Value {
    json!({ "request_range": range_request(key.as_bytes(), &[], 0, 0) })
}

/// A comparison that holds when `key` does not exist (it was never created, or deleted).
pub fn absent(key: &str) -> Value {
    json!({
        "key": b64(key.as_bytes()),
        "target": "CREATE",
        "result": "EQUAL",
        "create_revision": "0",
    })
}

pub fn txn(compare: Vec<Value>, success: Vec<Value>, failure: Vec<Value>) -> Value {
    json!({ "compare": compare, "success": success, "failure": failure })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), b"a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }

    #[test]
    fn meta_folder_is_not_an_object() {
        assert!(keys("/b", ".chartroom-meta/x.tgz").is_none());
        assert!(keys("/b", "t/.chartroom-meta/x.tgz").is_some());
        let k = keys("/b", "t/x.tgz").unwrap();
        assert_eq!(k.data, "/b/t/x.tgz");
        assert_eq!(k.meta, "/b/.chartroom-meta/t/x.tgz");
        assert!(k.meta.starts_with(&meta_dir_prefix("/b", "t")));
        assert!(!k.meta.starts_with(&meta_dir_prefix("/b", "t/x")));
    }

    #[test]
    fn parses_gateway_answers() {
        let body = br#"{"header":{"cluster_id":"1","member_id":"2","revision":"17","raft_term":"3"},
            "kvs":[{"key":"YQ==","create_revision":"5","mod_revision":"9","version":"2","value":"Yg=="}],
            "more":true,"count":"4"}"#;
        let r = parse_range(body).unwrap();
        assert_eq!(r.revision, 17);
        assert!(r.more);
        assert_eq!(r.kvs[0].key, b"a");
        assert_eq!(r.kvs[0].value, b"b");
        assert_eq!(r.kvs[0].create_revision, 5);
        // Empty answer: fields at zero are left out.
        assert_eq!(
            parse_range(br#"{"header":{"revision":"3"}}"#).unwrap().kvs,
            vec![]
        );
        let t = parse_txn(
            br#"{"header":{},"succeeded":true,"responses":[{"response_put":{"header":{}}},
            {"response_delete_range":{"header":{},"deleted":"1"}},{"response_range":{"header":{}}}]}"#,
        )
        .unwrap();
        assert!(t.succeeded);
        assert_eq!(t.responses[1], OpAnswer::Delete { deleted: 1 });
        assert!(!parse_txn(br#"{"header":{}}"#).unwrap().succeeded);
        for bad in [
            &br#"{"kvs":[{"key":"!!"}]}"#[..],
            br#"{"kvs":{}}"#,
            br#"{"more":"yes"}"#,
            br#"{"header":{"revision":"x"}}"#,
            br#"[]"#,
            b"",
        ] {
            assert!(
                parse_range(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_txn(br#"{"responses":[{"response_other":{}}]}"#).is_err());
    }

    #[test]
    fn gateway_errors() {
        let m = error_message(
            br#"{"error":"etcdserver: request is too large","code":8,"message":"etcdserver: request is too large"}"#,
        );
        assert!(is_too_large(&m));
        assert_eq!(error_message(b"<html>"), "<html>");
    }

    #[test]
    fn meta_round_trip_and_hostile() {
        let m = Meta {
            size: 3,
            mtime_ns: 1_700_000_000_123_456_789,
            sha256: "a".repeat(64),
        };
        assert_eq!(Meta::parse(m.to_json().as_bytes()).unwrap(), m);
        for bad in [
            &br#"{"size":-1,"mtime_ns":0,"sha256":""}"#[..],
            br#"{"size":1,"mtime_ns":0,"sha256":"zz"}"#,
            br#"{}"#,
            b"\xff",
        ] {
            assert!(Meta::parse(bad).is_err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any body parses or is an error (no panic), for both answer kinds.
        #[test]
        fn any_body_answers(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_range(&body);
            let _ = parse_txn(&body);
            let _ = Meta::parse(&body);
            let _ = error_message(&body);
        }

        /// JSON-shaped bodies with arbitrary field values: parse or error.
        #[test]
        fn any_json_answers(
            key in "\\PC{0,8}", rev in "\\PC{0,8}", more in any::<bool>(), n in any::<i64>(),
        ) {
            let body = json!({"header":{"revision":rev},"kvs":[{"key":key,"value":key,
                "create_revision":n,"mod_revision":n.to_string()}],"more":more});
            let _ = parse_range(body.to_string().as_bytes());
            let body = json!({"succeeded":more,"responses":[{"response_delete_range":{"deleted":rev}}]});
            let _ = parse_txn(body.to_string().as_bytes());
        }

        /// Keys round-trip through the request encoding, and every key of a "directory"
        /// lies inside its range and no key of a sibling does.
        #[test]
        fn key_encoding(
            dir in "[a-z\u{e9}\u{4e2d}.-]{1,6}", name in "[a-zA-Z0-9\u{e9}\u{fffd} ._-]{1,12}",
            sib in "[a-z\u{e9}.-]{1,6}",
        ) {
            let base = base("p");
            prop_assume!(dir != sib && dir != META_DIR && name != "." && name != "..");
            let k = keys(&base, &format!("{dir}/{name}")).unwrap();
            let r = range_request(k.meta.as_bytes(), &[], 0, 0);
            let enc = r["key"].as_str().unwrap();
            prop_assert_eq!(B64.decode(enc).unwrap(), k.meta.as_bytes());
            let p = meta_dir_prefix(&base, &dir);
            let end = prefix_end(p.as_bytes());
            prop_assert!(k.meta.as_bytes() >= p.as_bytes() && k.meta.as_bytes() < &end[..]);
            let other = keys(&base, &format!("{sib}/{name}")).unwrap();
            let inside = other.meta.as_bytes() >= p.as_bytes() && other.meta.as_bytes() < &end[..];
            prop_assert!(!inside);
            prop_assert!(key_after(k.meta.as_bytes()).as_slice() > k.meta.as_bytes());
        }
    }
}
