//! The answer of `GET /api/<repo>/charts` (ChartMuseum's and chartroom's): a JSON object
//! `{name: [{"version": "...", ...}, ...]}`. The answer comes from the network and is not
//! trusted: its size is bounded before it is read ([`MAX_LISTING_BYTES`]), and only names and
//! version strings are kept (every other field is skipped without being stored).

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Largest answer of `GET /api/<repo>/charts` that is read (256 MiB: about 200,000 chart
/// versions of ChartMuseum's entry size).
pub const MAX_LISTING_BYTES: u64 = 256 * 1024 * 1024;

/// The chart versions a repository holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    charts: HashMap<String, HashSet<String>>,
}

impl Listing {
    /// Whether `name` `version` is in the repository.
    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.charts.get(name).is_some_and(|v| v.contains(version))
    }

    /// Number of charts (names).
    pub fn charts(&self) -> usize {
        self.charts.len()
    }

    /// Number of chart versions.
    pub fn versions(&self) -> usize {
        self.charts.values().map(HashSet::len).sum()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the answer is not a chart listing ({0})")]
pub struct ListingError(pub String);

/// Parses an answer. Entries without a string `version` are skipped; anything that is not an
/// object of arrays of objects is an error.
pub fn parse(bytes: &[u8]) -> Result<Listing, ListingError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let listing = ListingSeed::deserialize(&mut de).map_err(|e| ListingError(e.to_string()))?;
    de.end().map_err(|e| ListingError(e.to_string()))?;
    Ok(listing.0)
}

struct ListingSeed(Listing);

impl<'de> Deserialize<'de> for ListingSeed {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Charts;
        impl<'de> Visitor<'de> for Charts {
            type Value = ListingSeed;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of chart names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListingSeed, A::Error> {
                let mut charts: HashMap<String, HashSet<String>> = HashMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Versions(versions) = map.next_value()?;
                    charts.entry(name).or_default().extend(versions);
                }
                Ok(ListingSeed(Listing { charts }))
            }
        }
        d.deserialize_map(Charts)
    }
}

struct Versions(Vec<String>);

impl<'de> Deserialize<'de> for Versions {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = Versions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of chart versions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Versions, A::Error> {
                let mut out = Vec::new();
                while let Some(Entry(v)) = seq.next_element()? {
                    out.extend(v);
                }
                Ok(Versions(out))
            }
        }
        d.deserialize_seq(List)
    }
}

/// One chart version object; only its `version` is kept.
struct Entry(Option<String>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Obj;
        impl<'de> Visitor<'de> for Obj {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chart version object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entry, A::Error> {
                let mut version = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "version" {
                        let v: serde_json::Value = map.next_value()?;
                        if let serde_json::Value::String(s) = v {
                            version = Some(s);
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Entry(version))
            }
        }
        d.deserialize_map(Obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chartmuseum_answer() {
        let l = parse(
            br#"{"a":[{"name":"a","version":"1.0.0","urls":["charts/a-1.0.0.tgz"],
                "maintainers":[{"name":"x"}]},{"name":"a","version":"0.1.0"}],
                "b":[{"version":"2"}]}"#,
        )
        .unwrap();
        assert!(l.contains("a", "1.0.0") && l.contains("a", "0.1.0") && l.contains("b", "2"));
        assert!(!l.contains("a", "2") && !l.contains("c", "1.0.0"));
        assert_eq!((l.charts(), l.versions()), (2, 3));
        assert_eq!(parse(b"{}").unwrap(), Listing::default());
        assert_eq!(parse(b" {} \n").unwrap(), Listing::default());
    }

    #[test]
    fn odd_entries_are_skipped_or_refused() {
        // no version, a non-string version: skipped
        let l = parse(br#"{"a":[{"name":"a"},{"version":1},{"version":"1"}]}"#).unwrap();
        assert_eq!(l.versions(), 1);
        for bad in [
            &b""[..],
            b"null",
            b"[]",
            br#"{"error":"unauthorized"}"#,
            br#"{"a":[1]}"#,
            br#"{"a":{"version":"1"}}"#,
            b"{} trailing",
            b"{\"a\":[{\"version\":\"1\"}]",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deep_nesting_is_skipped_or_an_error_never_a_crash() {
        let deep = |key: &str| {
            let mut s = format!(r#"{{"a":[{{"version":"1","{key}":"#);
            s.push_str(&"[".repeat(100_000));
            s.push_str(&"]".repeat(100_000));
            s.push_str("}]}");
            s
        };
        // An ignored field is skipped without recursion; the version field is refused
        // past serde_json's depth limit.
        assert!(parse(deep("x").as_bytes()).unwrap().contains("a", "1"));
        assert!(parse(deep("version").as_bytes()).is_err());
        let mut s = "[".repeat(100_000);
        s.push_str(&"]".repeat(100_000));
        assert!(parse(format!(r#"{{"a":{s}}}"#).as_bytes()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn any_bytes_give_an_answer_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn json_like_text_gives_an_answer_or_an_error(s in r#"[{}\[\]",:a-z0-9 \\]{0,200}"#) {
            let _ = parse(s.as_bytes());
        }

        #[test]
        fn listed_versions_are_found(
            charts in proptest::collection::btree_map("[a-z][a-z0-9-]{0,8}",
                proptest::collection::vec("[0-9]\\.[0-9]\\.[0-9]", 0..4), 0..6)
        ) {
            let json = serde_json::Value::Object(charts.iter().map(|(n, vs)| {
                (n.clone(), serde_json::Value::Array(vs.iter().map(|v| serde_json::json!({
                    "name": n, "version": v, "digest": "x", "created": "2020-01-01T00:00:00Z"
                })).collect()))
            }).collect());
            let l = parse(json.to_string().as_bytes()).unwrap();
            for (n, vs) in &charts {
                for v in vs {
                    prop_assert!(l.contains(n, v));
                }
            }
            prop_assert_eq!(l.charts(), charts.len());
        }
    }
}
