//! The in-memory index of one repository. Each chart version is rendered once, to a YAML
//! fragment and a JSON fragment, when it enters the index; `index.yaml` is the concatenation of
//! those fragments, built at most once per change and then served as shared bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::chart::Metadata;
use crate::timefmt;
use crate::version::{Constraint, Version, cmp_desc};

/// One chart version as the index shows it.
#[derive(Debug)]
pub struct Entry {
    pub name: String,
    pub version: String,
    /// Storage file name (`mychart-0.1.0.tgz`), relative to the repository.
    pub file: String,
    sort_key: Option<Version>,
    /// `- apiVersion: ...` item, indented to sit under `  <name>:` in index.yaml.
    yaml: Box<str>,
    /// Compact JSON object (Helm's ChartVersion).
    pub json: Box<str>,
}

impl Entry {
    /// Renders an entry from its ChartVersion JSON object (metadata + created + digest); the
    /// `urls` field is (re)computed from `url`.
    pub fn from_value(mut obj: Map<String, Value>, file: &str, url: &str) -> Option<Entry> {
        obj.insert("urls".into(), Value::Array(vec![Value::String(url.into())]));
        let name = obj.get("name")?.as_str()?.to_string();
        let version = obj.get("version")?.as_str()?.to_string();
        let json = json_safe(serde_json::to_string(&obj).ok()?);
        let yaml = crate::yaml::list_item(&obj, 2);
        Some(Entry {
            sort_key: Version::parse(&version).ok(),
            name,
            version,
            file: file.to_string(),
            yaml: yaml.into(),
            json: json.into(),
        })
    }

    /// An entry from the texts [`Entry::from_value`] rendered for it earlier (as a state file
    /// keeps them), without parsing and rendering again. `None` unless the JSON names exactly
    /// `file` and carries `url` as its only URL, and the YAML fragment is one item of the
    /// chart's list (first line `  - `, every other line indented further) carrying `url`:
    /// the caller then renders the entry again from its JSON.
    pub fn from_rendered(json: &str, yaml: &str, file: &str, url: &str) -> Option<Entry> {
        #[derive(serde::Deserialize)]
        struct Names<'a> {
            #[serde(borrow)]
            name: std::borrow::Cow<'a, str>,
            #[serde(borrow)]
            version: std::borrow::Cow<'a, str>,
        }
        let names: Names = serde_json::from_str(json).ok()?;
        let (name, version) = (names.name, names.version);
        if file.len() != name.len() + version.len() + 5
            || !file.starts_with(name.as_ref())
            || file[name.len()..] != format!("-{version}.tgz")
        {
            return None;
        }
        if !json.contains(&format!("\"urls\":[{}]", json_str(url))) {
            return None;
        }
        let mut lines = yaml.split_inclusive('\n');
        let first_ok = lines.next().is_some_and(|l| l.starts_with("  - "));
        if !first_ok
            || !yaml.ends_with('\n')
            || !lines.all(|l| l.starts_with("    "))
            || !yaml.contains(&format!("- {}\n", crate::yaml::scalar_str(url)))
        {
            return None;
        }
        Some(Entry {
            sort_key: Version::parse(&version).ok(),
            name: name.into_owned(),
            version: version.into_owned(),
            file: file.to_string(),
            yaml: yaml.into(),
            json: json.into(),
        })
    }

    /// The entry's item of index.yaml (see [`Entry::from_rendered`]).
    pub fn yaml(&self) -> &str {
        &self.yaml
    }

    pub fn new(meta: &Metadata, digest: &str, created_ns: i64, file: &str, url: &str) -> Entry {
        let mut obj = match serde_json::to_value(meta) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        obj.insert(
            "created".into(),
            Value::String(timefmt::rfc3339(created_ns, true)),
        );
        obj.insert("digest".into(), Value::String(digest.into()));
        // Metadata always has a name and a version (validated), so rendering cannot fail; the
        // fallback keeps the types total without panicking.
        Entry::from_value(obj, file, url).unwrap_or_else(|| Entry {
            name: meta.name.clone(),
            version: meta.version.clone(),
            file: file.to_string(),
            sort_key: None,
            yaml: "".into(),
            json: "{}".into(),
        })
    }

    fn cmp_newest_first(&self, other: &Entry) -> std::cmp::Ordering {
        match (&self.sort_key, &other.sort_key) {
            (Some(a), Some(b)) => b
                .cmp(a)
                .then_with(|| other.version.cmp(&self.version))
                .then_with(|| self.file.cmp(&other.file)),
            _ => cmp_desc(&self.version, &other.version).then_with(|| self.file.cmp(&other.file)),
        }
    }
}

/// What is known about one `.tgz` object in storage.
#[derive(Debug, Clone)]
pub struct Object {
    pub size: u64,
    pub modified_ns: i64,
    /// `None` for a package that could not be read: it is remembered so that it is not
    /// downloaded again until it changes.
    pub entry: Option<Arc<Entry>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    ChartNotFound,
    NoVersions,
    NoMatch(String),
    BadConstraint(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::ChartNotFound => f.write_str("no chart name found"),
            LookupError::NoVersions => f.write_str("no chart version found"),
            LookupError::NoMatch(s) => write!(f, "no chart version found for {s}"),
            LookupError::BadConstraint(s) => f.write_str(s),
        }
    }
}

/// Settings that shape how entries and the index are written.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Prefix of every chart URL: `charts/`, or an absolute `https://host/ctx/repo/charts/`.
    pub url_prefix: String,
    pub context_path: String,
    pub json: bool,
}

#[derive(Debug, Default)]
pub struct RepoIndex {
    pub layout: Layout,
    objects: HashMap<String, Object>,
    charts: BTreeMap<String, Vec<Arc<Entry>>>,
    rendered: Option<Bytes>,
    /// `GET /api/charts`, built at most once per change (see [`ChartsJson`]).
    charts_json: Option<Arc<ChartsJson>>,
}

/// The prepared answer of `GET /api/charts`: `{"name":[versions...],...}` as one buffer, with
/// where each chart's `"name":[...]` part starts, so that an `offset`/`limit` window is a slice
/// of it between `{` and `}`: no response copies the whole, however many are sent at once.
#[derive(Debug)]
pub struct ChartsJson {
    bytes: Bytes,
    /// `starts[i]` is the offset of chart i's part; `starts[len]` is the offset of the final
    /// `}`. Parts are separated by one `,`.
    starts: Vec<usize>,
}

impl ChartsJson {
    fn build(charts: &BTreeMap<String, Vec<Arc<Entry>>>) -> ChartsJson {
        let size: usize = charts
            .iter()
            .map(|(n, l)| n.len() + 8 + l.iter().map(|e| e.json.len() + 1).sum::<usize>())
            .sum();
        let mut out = String::with_capacity(size + 2);
        let mut starts = Vec::with_capacity(charts.len() + 1);
        out.push('{');
        for (i, (name, list)) in charts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            starts.push(out.len());
            out.push_str(&json_str(name));
            out.push(':');
            push_versions_json(&mut out, list);
        }
        starts.push(out.len());
        out.push('}');
        ChartsJson {
            bytes: Bytes::from(out),
            starts,
        }
    }

    /// The whole object.
    pub fn all(&self) -> Bytes {
        self.bytes.clone()
    }

    /// The charts `offset..offset+limit` (in name order) as the pieces of one JSON object,
    /// to be sent one after the other: `{`, a slice of the prepared bytes, `}`.
    pub fn window(&self, offset: usize, limit: usize) -> Vec<Bytes> {
        let count = self.starts.len() - 1;
        let first = offset.min(count);
        let last = first.saturating_add(limit).min(count);
        if first == 0 && last == count {
            return vec![self.all()];
        }
        if first == last {
            return vec![Bytes::from_static(b"{}")];
        }
        // Part `last - 1` ends one byte (a `,`) before part `last` starts, or at the final `}`.
        let end = if last == count {
            self.starts[last]
        } else {
            self.starts[last] - 1
        };
        vec![
            Bytes::from_static(b"{"),
            self.bytes.slice(self.starts[first]..end),
            Bytes::from_static(b"}"),
        ]
    }
}

impl RepoIndex {
    pub fn new(layout: Layout) -> RepoIndex {
        RepoIndex {
            layout,
            ..RepoIndex::default()
        }
    }

    pub fn url_for(&self, file: &str) -> String {
        format!("{}{}", self.layout.url_prefix, file)
    }

    pub fn objects(&self) -> &HashMap<String, Object> {
        &self.objects
    }

    pub fn chart_count(&self) -> usize {
        self.charts.len()
    }

    pub fn version_count(&self) -> usize {
        self.charts.values().map(Vec::len).sum()
    }

    /// Adds or replaces the object `file`.
    pub fn upsert(&mut self, file: &str, obj: Object) {
        self.remove(file);
        if let Some(entry) = &obj.entry {
            let list = self.charts.entry(entry.name.clone()).or_default();
            let pos = list
                .binary_search_by(|e| e.cmp_newest_first(entry))
                .unwrap_or_else(|p| p);
            list.insert(pos, entry.clone());
        }
        self.objects.insert(file.to_string(), obj);
        self.rendered = None;
        self.charts_json = None;
    }

    /// Removes the object `file`; returns whether it was known.
    pub fn remove(&mut self, file: &str) -> bool {
        let Some(old) = self.objects.remove(file) else {
            return false;
        };
        if let Some(entry) = old.entry {
            if let Some(list) = self.charts.get_mut(&entry.name) {
                list.retain(|e| !Arc::ptr_eq(e, &entry));
                if list.is_empty() {
                    self.charts.remove(&entry.name);
                }
            }
        }
        self.rendered = None;
        self.charts_json = None;
        true
    }

    /// The size of the serialised index: exact once built, else the sum of its entries
    /// (metrics; builds nothing).
    pub fn size_estimate(&self) -> usize {
        match &self.rendered {
            Some(b) => b.len(),
            None => self
                .charts
                .values()
                .flat_map(|l| l.iter())
                .map(|e| {
                    if self.layout.json {
                        e.json.len()
                    } else {
                        e.yaml.len()
                    }
                })
                .sum(),
        }
    }

    /// The serialised index (YAML, or JSON with `json`), built once per change.
    pub fn bytes(&mut self) -> Bytes {
        if let Some(b) = &self.rendered {
            return b.clone();
        }
        let generated = timefmt::rfc3339(timefmt::now_ns(), false);
        let out = if self.layout.json {
            self.render_json(&generated)
        } else {
            self.render_yaml(&generated)
        };
        let b = Bytes::from(out);
        self.rendered = Some(b.clone());
        b
    }

    fn render_yaml(&self, generated: &str) -> Vec<u8> {
        let size: usize = self
            .charts
            .values()
            .flat_map(|l| l.iter().map(|e| e.yaml.len()))
            .sum();
        let mut out = String::with_capacity(size + 64 * self.charts.len() + 128);
        out.push_str("apiVersion: v1\n");
        if self.charts.is_empty() {
            out.push_str("entries: {}\n");
        } else {
            out.push_str("entries:\n");
            for (name, list) in &self.charts {
                out.push_str("  ");
                out.push_str(&yaml_key(name));
                out.push_str(":\n");
                for e in list {
                    out.push_str(&e.yaml);
                }
            }
        }
        out.push_str("generated: \"");
        out.push_str(generated);
        out.push_str("\"\n");
        if self.layout.context_path.is_empty() {
            out.push_str("serverInfo: {}\n");
        } else {
            out.push_str("serverInfo:\n  contextPath: ");
            out.push_str(&yaml_key(&self.layout.context_path));
            out.push('\n');
        }
        out.into_bytes()
    }

    fn render_json(&mut self, generated: &str) -> Vec<u8> {
        let mut out = String::new();
        out.push_str("{\"apiVersion\":\"v1\",\"generated\":");
        out.push_str(&json_str(generated));
        out.push_str(",\"entries\":");
        out.push_str(&String::from_utf8_lossy(&self.charts_json().all()));
        out.push_str(",\"serverInfo\":");
        if self.layout.context_path.is_empty() {
            out.push_str("{}");
        } else {
            out.push_str("{\"contextPath\":");
            out.push_str(&json_str(&self.layout.context_path));
            out.push('}');
        }
        out.push('}');
        out.into_bytes()
    }

    /// `{"name":[versions...],...}` for `GET /api/charts`, prepared once per change.
    pub fn charts_json(&mut self) -> Arc<ChartsJson> {
        if let Some(c) = &self.charts_json {
            return c.clone();
        }
        let c = Arc::new(ChartsJson::build(&self.charts));
        self.charts_json = Some(c.clone());
        c
    }

    pub fn chart_versions(&self, name: &str) -> Option<&[Arc<Entry>]> {
        self.charts.get(name).map(Vec::as_slice)
    }

    /// Finds a version as ChartMuseum (Helm's `IndexFile.Get`) does: `latest` is the newest
    /// release; otherwise an exact version string, else a semver constraint.
    pub fn lookup(&self, name: &str, version: &str) -> Result<Arc<Entry>, LookupError> {
        let list = self.charts.get(name).ok_or(LookupError::ChartNotFound)?;
        if list.is_empty() {
            return Err(LookupError::NoVersions);
        }
        if version != "latest" {
            if let Some(e) = list.iter().find(|e| e.version == version) {
                return Ok(e.clone());
            }
        }
        let (constraint, label) = if version == "latest" {
            ("*", String::new())
        } else {
            (version, version.to_string())
        };
        let c = Constraint::parse(constraint).map_err(|e| LookupError::BadConstraint(e.0))?;
        list.iter()
            .find(|e| e.sort_key.as_ref().is_some_and(|v| c.matches(v)))
            .cloned()
            .ok_or_else(|| LookupError::NoMatch(format!("{name}-{label}")))
    }
}

pub fn versions_json(list: &[Arc<Entry>]) -> String {
    let mut out = String::new();
    push_versions_json(&mut out, list);
    out
}

fn push_versions_json(out: &mut String, list: &[Arc<Entry>]) {
    out.push('[');
    for (i, e) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&e.json);
    }
    out.push(']');
}

fn json_str(s: &str) -> String {
    json_safe(serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()))
}

/// JSON text with the characters YAML does not allow raw (DEL, C1 controls, U+FFFE/U+FFFF),
/// the YAML 1.1 line breaks NEL/LS/PS and the BOM written as `\uXXXX` escapes, so that the JSON
/// index also reads back unchanged through a YAML parser (Helm reads index files as YAML).
/// JSON's structure is ASCII, so these characters only occur inside strings, where the escape
/// means the same character.
fn json_safe(json: String) -> String {
    use std::fmt::Write;
    let ok = |c: char| (c.is_ascii() && c != '\u{7f}') || crate::yaml::raw_ok(c);
    if json.chars().all(ok) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if ok(c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
    }
    out
}

fn yaml_key(s: &str) -> String {
    crate::yaml::scalar_str(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, version: &str) -> Metadata {
        Metadata {
            name: name.into(),
            version: version.into(),
            api_version: "v2".into(),
            description: "line one\nline two".into(),
            ..Metadata::default()
        }
    }

    fn add(idx: &mut RepoIndex, name: &str, version: &str) {
        let file = format!("{name}-{version}.tgz");
        let url = idx.url_for(&file);
        let e = Entry::new(&meta(name, version), "abc", 0, &file, &url);
        idx.upsert(
            &file,
            Object {
                size: 1,
                modified_ns: 0,
                entry: Some(Arc::new(e)),
            },
        );
    }

    #[test]
    fn renders_sorted_yaml_that_parses() {
        let mut idx = RepoIndex::new(Layout {
            url_prefix: "charts/".into(),
            ..Layout::default()
        });
        assert!(
            String::from_utf8(idx.bytes().to_vec())
                .unwrap()
                .contains("entries: {}")
        );
        for v in ["0.1.0", "1.0.0-rc.1", "1.0.0", "0.10.0"] {
            add(&mut idx, "b", v);
        }
        add(&mut idx, "a", "1.0.0");
        let text = String::from_utf8(idx.bytes().to_vec()).unwrap();
        let parsed: serde_json::Value = serde_norway::from_str(&text).unwrap();
        let versions: Vec<&str> = parsed["entries"]["b"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["version"].as_str().unwrap())
            .collect();
        assert_eq!(versions, ["1.0.0", "1.0.0-rc.1", "0.10.0", "0.1.0"]);
        assert_eq!(parsed["entries"]["a"][0]["urls"][0], "charts/a-1.0.0.tgz");
        assert_eq!(
            parsed["entries"]["a"][0]["description"],
            "line one\nline two"
        );
        assert_eq!(parsed["serverInfo"], serde_json::json!({}));
        assert!(text.find("  a:\n").unwrap() < text.find("  b:\n").unwrap());
        assert!(idx.remove("b-0.1.0.tgz"));
        assert!(!idx.remove("b-0.1.0.tgz"));
        assert_eq!(idx.version_count(), 4);
    }

    #[test]
    fn lookup_rules() {
        let mut idx = RepoIndex::new(Layout::default());
        for v in ["0.1.0", "0.2.0", "1.0.0-rc.1"] {
            add(&mut idx, "c", v);
        }
        assert_eq!(idx.lookup("c", "latest").unwrap().version, "0.2.0");
        assert_eq!(idx.lookup("c", "1.0.0-rc.1").unwrap().version, "1.0.0-rc.1");
        assert_eq!(idx.lookup("c", "~0.1").unwrap().version, "0.1.0");
        assert_eq!(idx.lookup("c", ">0.1.0").unwrap().version, "0.2.0");
        assert_eq!(
            idx.lookup("x", "latest").unwrap_err(),
            LookupError::ChartNotFound
        );
        assert_eq!(
            idx.lookup("c", "0.1.1").unwrap_err().to_string(),
            "no chart version found for c-0.1.1"
        );
    }

    fn hostile_meta(key: &str, value: &str) -> Metadata {
        Metadata {
            name: "h".into(),
            version: "1.0.0".into(),
            api_version: "v2".into(),
            description: value.into(),
            keywords: vec![value.into(), key.into()],
            annotations: [(key.to_string(), value.to_string())].into_iter().collect(),
            sources: vec![value.into()],
            ..Metadata::default()
        }
    }

    /// Both index forms read back as the same strings, through JSON and through YAML parsers.
    fn index_round_trip(key: &str, value: &str) {
        for json in [false, true] {
            let mut idx = RepoIndex::new(Layout {
                url_prefix: "charts/".into(),
                context_path: String::new(),
                json,
            });
            let md = hostile_meta(key, value);
            let e = Entry::new(&md, "abc", 0, "h-1.0.0.tgz", "charts/h-1.0.0.tgz");
            idx.upsert(
                "h-1.0.0.tgz",
                Object {
                    size: 1,
                    modified_ns: 0,
                    entry: Some(Arc::new(e)),
                },
            );
            let bytes = idx.bytes();
            let text = std::str::from_utf8(&bytes).unwrap();
            let mut parsed: Vec<serde_json::Value> =
                vec![serde_norway::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"))];
            if json {
                parsed.push(serde_json::from_str(text).unwrap());
            }
            for p in parsed {
                let got: Metadata = serde_json::from_value(p["entries"]["h"][0].clone()).unwrap();
                assert_eq!(got, md, "{text:?}");
            }
        }
    }

    #[test]
    fn hostile_strings_in_both_index_forms() {
        for s in crate::yaml::tests::HOSTILE {
            index_round_trip(s, s);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        #[test]
        fn any_string_in_both_index_forms(key in ".{0,20}", value in proptest::prelude::any::<String>()) {
            index_round_trip(&key, &value);
        }
    }

    /// What a state file keeps of an entry (its JSON and YAML texts) gives the same entry
    /// back, for hostile strings too.
    #[test]
    fn rendered_texts_round_trip() {
        for v in crate::yaml::tests::HOSTILE {
            let e = Entry::new(
                &hostile_meta(v, v),
                "abc",
                0,
                "h-1.0.0.tgz",
                "charts/h-1.0.0.tgz",
            );
            let back = Entry::from_rendered(&e.json, e.yaml(), "h-1.0.0.tgz", "charts/h-1.0.0.tgz")
                .unwrap_or_else(|| panic!("refused its own texts for {v:?}"));
            assert_eq!((&*back.json, back.yaml()), (&*e.json, e.yaml()));
            assert_eq!((back.name.as_str(), back.version.as_str()), ("h", "1.0.0"));
        }
    }

    /// Texts that do not fit the file, the URL or the shape of one list item are refused (the
    /// caller renders the entry again from its JSON).
    #[test]
    fn rendered_texts_must_fit() {
        let url = "charts/h-1.0.0.tgz";
        let e = Entry::new(&hostile_meta("k", "v"), "abc", 0, "h-1.0.0.tgz", url);
        let (json, yaml) = (&*e.json, e.yaml());
        let refused = |j: &str, y: &str, file: &str, u: &str| {
            assert!(
                Entry::from_rendered(j, y, file, u).is_none(),
                "{j:?} {y:?} {file} {u}"
            )
        };
        refused(json, yaml, "h-1.0.1.tgz", "charts/h-1.0.1.tgz");
        refused(json, yaml, "g-1.0.0.tgz", "charts/g-1.0.0.tgz");
        refused(
            json,
            yaml,
            "h-1.0.0.tgz",
            "https://elsewhere/charts/h-1.0.0.tgz",
        );
        // A second list item, a key at the top level, a missing final newline.
        refused(
            json,
            &format!("{yaml}  - name: other\n"),
            "h-1.0.0.tgz",
            url,
        );
        refused(
            json,
            &format!("{yaml}serverInfo: {{}}\n"),
            "h-1.0.0.tgz",
            url,
        );
        refused(json, yaml.trim_end(), "h-1.0.0.tgz", url);
        refused(
            json,
            &yaml.replace("- charts/h-1.0.0.tgz", "- charts/x.tgz"),
            "h-1.0.0.tgz",
            url,
        );
        refused("{\"name\":1}", yaml, "h-1.0.0.tgz", url);
        refused("not json", yaml, "h-1.0.0.tgz", url);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        /// Any texts give an entry or `None`, never a panic; an entry always names its file.
        #[test]
        fn rendered_texts_of_any_kind(
            name in "[a-z.-]{0,6}", version in ".{0,8}", rest in ".{0,30}", yaml in ".{0,60}",
            file in ".{0,20}",
        ) {
            let json = format!("{{\"name\":{},\"version\":{},\"x\":{}}}",
                json_str(&name), json_str(&version), json_str(&rest));
            for (j, f) in [(json.as_str(), file.as_str()), (rest.as_str(), file.as_str())] {
                if let Some(e) = Entry::from_rendered(j, &yaml, f, &format!("charts/{f}")) {
                    proptest::prop_assert_eq!(format!("{}-{}.tgz", e.name, e.version), f);
                }
            }
        }
    }

    #[test]
    fn json_index_is_json() {
        let mut idx = RepoIndex::new(Layout {
            url_prefix: "charts/".into(),
            context_path: "/cm".into(),
            json: true,
        });
        add(&mut idx, "a", "1.0.0");
        let v: serde_json::Value = serde_json::from_slice(&idx.bytes()).unwrap();
        assert_eq!(v["serverInfo"]["contextPath"], "/cm");
        assert_eq!(v["entries"]["a"][0]["version"], "1.0.0");
    }

    /// Every window of the prepared `GET /api/charts` answer is the JSON object of exactly
    /// those charts, in name order, as the per-request rendering wrote it; slices never copy
    /// the whole (a window shares the prepared buffer).
    #[test]
    fn charts_json_windows() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 64,
            ..ProptestConfig::default()
        });
        let strategy = (
            proptest::collection::btree_map("[a-c\\\\\"é]{1,4}", 1usize..4, 0..8),
            0usize..10,
            prop_oneof![Just(usize::MAX), 0usize..10],
        );
        runner
            .run(&strategy, |(charts, offset, limit)| {
                let mut idx = RepoIndex::new(Layout::default());
                for (name, n) in &charts {
                    for v in 0..*n {
                        add(&mut idx, name, &format!("1.{v}.0"));
                    }
                }
                let expected: Map<String, Value> = charts
                    .keys()
                    .skip(offset)
                    .take(limit)
                    .map(|name| {
                        let list = idx.chart_versions(name).unwrap();
                        let v: Value = serde_json::from_str(&versions_json(list)).unwrap();
                        (name.clone(), v)
                    })
                    .collect();
                let prepared = idx.charts_json();
                let body: Vec<u8> = prepared.window(offset, limit).concat();
                let got: Value = serde_json::from_slice(&body).unwrap();
                prop_assert_eq!(got, Value::Object(expected));
                // Key order is name order, as the per-request rendering gave it.
                let names: Vec<&String> = charts.keys().skip(offset).take(limit).collect();
                let mut at = 0;
                for n in names {
                    let key = format!("{}:[", json_str(n));
                    let pos = String::from_utf8_lossy(&body)[at..]
                        .find(&key)
                        .map(|p| p + at);
                    prop_assert!(pos.is_some(), "{key} missing or out of order");
                    at = pos.unwrap_or(0);
                }
                Ok(())
            })
            .unwrap();
        let mut idx = RepoIndex::new(Layout::default());
        assert_eq!(idx.charts_json().window(0, usize::MAX).concat(), b"{}");
        add(&mut idx, "a", "1.0.0");
        let first = idx.charts_json();
        assert!(
            Arc::ptr_eq(&first, &idx.charts_json()),
            "rebuilt without a change"
        );
        add(&mut idx, "b", "1.0.0");
        assert!(
            !Arc::ptr_eq(&first, &idx.charts_json()),
            "stale after a change"
        );
    }
}
