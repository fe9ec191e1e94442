//! The in-memory index of one repository. Each chart version is rendered once, to a YAML
//! item and a JSON object, when it enters the index. A chart's versions are then kept in two
//! blocks (its part of index.yaml, its `"name":[...]` part of the JSON forms), built after the
//! chart changed and shared by every answer; an entry's own texts are slices of those blocks,
//! so each text is held once. `index.yaml` and `GET /api/charts` are sent as the chart blocks
//! one after the other: a change costs the rebuilding of one chart's blocks, never a copy of
//! the whole index.

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
    yaml: Text,
    /// Compact JSON object (Helm's ChartVersion).
    json: Text,
}

/// UTF-8 text held in shared bytes: rendered on its own, or a slice of a chart's block.
#[derive(Debug, Clone)]
struct Text(Bytes);

impl Text {
    fn new(s: String) -> Text {
        Text(Bytes::from(s))
    }

    fn as_str(&self) -> &str {
        // Always built from a `String` or sliced at the boundaries of one.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
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
            yaml: Text::new(yaml),
            json: Text::new(json),
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
            yaml: Text::new(yaml.to_string()),
            json: Text::new(json.to_string()),
        })
    }

    /// The entry's item of index.yaml (see [`Entry::from_rendered`]).
    pub fn yaml(&self) -> &str {
        self.yaml.as_str()
    }

    /// The entry's JSON object (Helm's ChartVersion).
    pub fn json(&self) -> &str {
        self.json.as_str()
    }

    /// The same JSON as shared bytes (no copy).
    pub fn json_bytes(&self) -> Bytes {
        self.json.0.clone()
    }

    /// The same entry with its texts in other bytes (slices of its chart's blocks).
    fn with_texts(&self, yaml: Bytes, json: Bytes) -> Entry {
        Entry {
            name: self.name.clone(),
            version: self.version.clone(),
            file: self.file.clone(),
            sort_key: self.sort_key.clone(),
            yaml: Text(yaml),
            json: Text(json),
        }
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
            yaml: Text::new(String::new()),
            json: Text::new("{}".into()),
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
    charts: BTreeMap<String, ChartList>,
    /// index.yaml (or the JSON index), built at most once per change.
    rendered: Option<Pieces>,
    /// `GET /api/charts`, built at most once per change (see [`ChartsJson`]).
    charts_json: Option<Arc<ChartsJson>>,
}

/// The versions of one chart, newest first, and its blocks (`None` after a change, until
/// something needs them).
#[derive(Debug, Default)]
struct ChartList {
    entries: Vec<Arc<Entry>>,
    blocks: Option<Blocks>,
}

#[derive(Debug, Clone)]
struct Blocks {
    /// `  name:\n` and the YAML item of every version: the chart's part of index.yaml.
    yaml: Bytes,
    /// `"name":[...]`: the chart's part of `GET /api/charts` and of the JSON index.
    json: Bytes,
    /// Where the `[...]` of `json` starts (`GET /api/charts/<name>`).
    array_at: usize,
}

impl ChartList {
    /// The chart's blocks, built if a change dropped them. The entries are then replaced by
    /// copies whose texts are slices of the new blocks (and so are the `objects` that hold
    /// them), so that each text is held once.
    fn blocks(&mut self, name: &str, objects: &mut HashMap<String, Object>) -> Blocks {
        if let Some(b) = &self.blocks {
            return b.clone();
        }
        let head = format!("  {}:\n", yaml_key(name));
        let mut yaml = Vec::with_capacity(
            head.len() + self.entries.iter().map(|e| e.yaml.len()).sum::<usize>(),
        );
        yaml.extend_from_slice(head.as_bytes());
        let key = json_str(name);
        let mut json = Vec::with_capacity(
            key.len() + 3 + self.entries.iter().map(|e| e.json.len() + 1).sum::<usize>(),
        );
        json.extend_from_slice(key.as_bytes());
        json.push(b':');
        let array_at = json.len();
        json.push(b'[');
        let mut spans = Vec::with_capacity(self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            // Whole UTF-8 texts one after the other: the blocks and their slices stay UTF-8.
            let (y, j) = (yaml.len(), json.len());
            yaml.extend_from_slice(&e.yaml.0);
            json.extend_from_slice(&e.json.0);
            spans.push((y..yaml.len(), j..json.len()));
        }
        json.push(b']');
        let blocks = Blocks {
            yaml: Bytes::from(yaml),
            json: Bytes::from(json),
            array_at,
        };
        for (e, (y, j)) in self.entries.iter_mut().zip(spans) {
            let sliced = Arc::new(e.with_texts(blocks.yaml.slice(y), blocks.json.slice(j)));
            if let Some(obj) = objects.get_mut(&e.file) {
                if obj.entry.as_ref().is_some_and(|o| Arc::ptr_eq(o, e)) {
                    obj.entry = Some(sliced.clone());
                }
            }
            *e = sliced;
        }
        self.blocks = Some(blocks.clone());
        blocks
    }
}

/// An answer made of shared pieces sent one after the other (no piece is copied).
#[derive(Debug, Clone)]
pub struct Pieces {
    parts: Arc<[Bytes]>,
    len: usize,
}

impl Pieces {
    fn new(parts: Vec<Bytes>) -> Pieces {
        let len = parts.iter().map(Bytes::len).sum();
        Pieces {
            parts: parts.into(),
            len,
        }
    }

    pub fn parts(&self) -> Arc<[Bytes]> {
        self.parts.clone()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole answer in one buffer (a copy: `--gen-index` and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in self.parts.iter() {
            out.extend_from_slice(p);
        }
        out
    }
}

/// The prepared answer of `GET /api/charts`: each chart's `"name":[versions...]` block, so
/// that the whole object or an `offset`/`limit` window of it is `{`, blocks separated by `,`,
/// and `}`: no response copies them, however many are sent at once.
#[derive(Debug)]
pub struct ChartsJson {
    parts: Vec<Bytes>,
}

impl ChartsJson {
    /// The whole object.
    pub fn all(&self) -> Vec<Bytes> {
        self.window(0, usize::MAX)
    }

    /// The charts `offset..offset+limit` (in name order) as the pieces of one JSON object.
    pub fn window(&self, offset: usize, limit: usize) -> Vec<Bytes> {
        let count = self.parts.len();
        let first = offset.min(count);
        let last = first.saturating_add(limit).min(count);
        let mut out = Vec::with_capacity(2 * (last - first) + 1);
        out.push(Bytes::from_static(b"{"));
        for (i, p) in self.parts[first..last].iter().enumerate() {
            if i > 0 {
                out.push(Bytes::from_static(b","));
            }
            out.push(p.clone());
        }
        out.push(Bytes::from_static(b"}"));
        out
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
        self.charts.values().map(|l| l.entries.len()).sum()
    }

    fn changed(&mut self) {
        self.rendered = None;
        self.charts_json = None;
    }

    /// Adds or replaces the object `file`. Costs the versions of its chart, not the index.
    pub fn upsert(&mut self, file: &str, obj: Object) {
        self.remove(file);
        if let Some(entry) = &obj.entry {
            let list = self.charts.entry(entry.name.clone()).or_default();
            let pos = list
                .entries
                .binary_search_by(|e| e.cmp_newest_first(entry))
                .unwrap_or_else(|p| p);
            list.entries.insert(pos, entry.clone());
            list.blocks = None;
        }
        self.objects.insert(file.to_string(), obj);
        self.changed();
    }

    /// Removes the object `file`; returns whether it was known.
    pub fn remove(&mut self, file: &str) -> bool {
        let Some(old) = self.objects.remove(file) else {
            return false;
        };
        if let Some(entry) = old.entry {
            if let Some(list) = self.charts.get_mut(&entry.name) {
                list.entries.retain(|e| !Arc::ptr_eq(e, &entry));
                list.blocks = None;
                if list.entries.is_empty() {
                    self.charts.remove(&entry.name);
                }
            }
        }
        self.changed();
        true
    }

    /// The size of the serialised index: exact once built, else the sum of its entries
    /// (metrics; builds nothing).
    pub fn size_estimate(&self) -> usize {
        match &self.rendered {
            Some(p) => p.len(),
            None => self
                .charts
                .values()
                .flat_map(|l| l.entries.iter())
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
    pub fn pieces(&mut self) -> Pieces {
        if let Some(p) = &self.rendered {
            return p.clone();
        }
        let generated = timefmt::rfc3339(timefmt::now_ns(), false);
        let p = if self.layout.json {
            self.render_json(&generated)
        } else {
            self.render_yaml(&generated)
        };
        self.rendered = Some(p.clone());
        p
    }

    fn render_yaml(&mut self, generated: &str) -> Pieces {
        let mut parts = Vec::with_capacity(self.charts.len() + 2);
        parts.push(Bytes::from_static(if self.charts.is_empty() {
            b"apiVersion: v1\nentries: {}\n"
        } else {
            b"apiVersion: v1\nentries:\n"
        }));
        for (name, list) in self.charts.iter_mut() {
            parts.push(list.blocks(name, &mut self.objects).yaml);
        }
        let mut tail = String::with_capacity(128);
        tail.push_str("generated: \"");
        tail.push_str(generated);
        tail.push_str("\"\n");
        if self.layout.context_path.is_empty() {
            tail.push_str("serverInfo: {}\n");
        } else {
            tail.push_str("serverInfo:\n  contextPath: ");
            tail.push_str(&yaml_key(&self.layout.context_path));
            tail.push('\n');
        }
        parts.push(Bytes::from(tail));
        Pieces::new(parts)
    }

    fn render_json(&mut self, generated: &str) -> Pieces {
        let mut parts = vec![Bytes::from(format!(
            "{{\"apiVersion\":\"v1\",\"generated\":{},\"entries\":",
            json_str(generated)
        ))];
        parts.extend(self.charts_json().all());
        let mut tail = String::from(",\"serverInfo\":");
        if self.layout.context_path.is_empty() {
            tail.push_str("{}");
        } else {
            tail.push_str("{\"contextPath\":");
            tail.push_str(&json_str(&self.layout.context_path));
            tail.push('}');
        }
        tail.push('}');
        parts.push(Bytes::from(tail));
        Pieces::new(parts)
    }

    /// `{"name":[versions...],...}` for `GET /api/charts`, prepared once per change.
    pub fn charts_json(&mut self) -> Arc<ChartsJson> {
        if let Some(c) = &self.charts_json {
            return c.clone();
        }
        let parts = self
            .charts
            .iter_mut()
            .map(|(name, list)| list.blocks(name, &mut self.objects).json)
            .collect();
        let c = Arc::new(ChartsJson { parts });
        self.charts_json = Some(c.clone());
        c
    }

    /// `[versions...]` of one chart (`GET /api/charts/<name>`), a slice of its block.
    pub fn chart_json(&mut self, name: &str) -> Option<Bytes> {
        let list = self.charts.get_mut(name)?;
        let b = list.blocks(name, &mut self.objects);
        Some(b.json.slice(b.array_at..))
    }

    pub fn chart_versions(&self, name: &str) -> Option<&[Arc<Entry>]> {
        self.charts.get(name).map(|l| l.entries.as_slice())
    }

    /// Finds a version as ChartMuseum (Helm's `IndexFile.Get`) does: `latest` is the newest
    /// release; otherwise an exact version string, else a semver constraint.
    pub fn lookup(&self, name: &str, version: &str) -> Result<Arc<Entry>, LookupError> {
        let list = &self
            .charts
            .get(name)
            .ok_or(LookupError::ChartNotFound)?
            .entries;
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
            String::from_utf8(idx.pieces().to_vec())
                .unwrap()
                .contains("entries: {}")
        );
        for v in ["0.1.0", "1.0.0-rc.1", "1.0.0", "0.10.0"] {
            add(&mut idx, "b", v);
        }
        add(&mut idx, "a", "1.0.0");
        let text = String::from_utf8(idx.pieces().to_vec()).unwrap();
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
            let bytes = idx.pieces().to_vec();
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

    /// Whether `inner` lies within the bytes of `outer` (the same allocation).
    fn within(inner: &[u8], outer: &[u8]) -> bool {
        let (i, o) = (inner.as_ptr() as usize, outer.as_ptr() as usize);
        i >= o && i + inner.len() <= o + outer.len()
    }

    /// After a render each text is held once: every entry's YAML and JSON are slices of its
    /// chart's blocks, which are the pieces sent; and a change rebuilds only its chart's
    /// blocks, the other charts' pieces are the very same bytes.
    #[test]
    fn texts_are_held_once_and_a_change_costs_one_chart() {
        let mut idx = RepoIndex::new(Layout::default());
        for (n, v) in [
            ("a", "1.0.0"),
            ("a", "1.1.0"),
            ("b", "1.0.0"),
            ("c", "2.0.0"),
        ] {
            add(&mut idx, n, v);
        }
        let before = idx.pieces();
        let _ = idx.charts_json();
        for name in ["a", "b", "c"] {
            let piece = before
                .parts()
                .iter()
                .find(|p| p.starts_with(format!("  {name}:").as_bytes()))
                .cloned()
                .unwrap();
            for e in idx.chart_versions(name).unwrap() {
                assert!(
                    within(e.yaml().as_bytes(), &piece),
                    "{name}: YAML not a slice of the block"
                );
                let obj = &idx.objects()[&e.file];
                assert!(
                    Arc::ptr_eq(obj.entry.as_ref().unwrap(), e),
                    "object and list disagree"
                );
            }
        }
        add(&mut idx, "a", "1.2.0");
        let after = idx.pieces();
        assert_eq!(after.parts().len(), before.parts().len());
        let same = |i: usize| before.parts()[i].as_ptr() == after.parts()[i].as_ptr();
        assert!(!same(1), "chart a was not rebuilt");
        assert!(same(2) && same(3), "charts b and c were rebuilt");
        // A version removed after its chart's blocks were built leaves nothing behind.
        assert!(idx.remove("b-1.0.0.tgz"));
        let text = String::from_utf8(idx.pieces().to_vec()).unwrap();
        assert!(
            !text.contains("b-1.0.0.tgz") && !text.contains("\n  b:\n"),
            "{text}"
        );
    }

    use proptest::strategy::Strategy as _;

    #[derive(Debug, Clone)]
    enum IndexOp {
        Add(u8, u8),
        Remove(u8, u8),
        Render,
        ChartsJson,
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any sequence of changes and renders gives the index a fresh render of the same
        /// versions gives, in both forms, and `/api/charts/<name>` is that chart's part.
        #[test]
        fn incremental_blocks_match_a_fresh_render(ops in proptest::collection::vec(
            proptest::prop_oneof![
                (0u8..3, 0u8..4).prop_map(|(c, v)| IndexOp::Add(c, v)),
                (0u8..3, 0u8..4).prop_map(|(c, v)| IndexOp::Remove(c, v)),
                proptest::prelude::Just(IndexOp::Render),
                proptest::prelude::Just(IndexOp::ChartsJson),
            ], 0..30), json in proptest::prelude::any::<bool>()) {
            let layout = Layout { json, ..Layout::default() };
            let mut idx = RepoIndex::new(layout.clone());
            let mut present = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    IndexOp::Add(c, v) => {
                        add(&mut idx, &format!("c{c}"), &format!("1.{v}.0"));
                        present.insert((c, v));
                    }
                    IndexOp::Remove(c, v) => {
                        let known = idx.remove(&format!("c{c}-1.{v}.0.tgz"));
                        proptest::prop_assert_eq!(known, present.remove(&(c, v)));
                    }
                    IndexOp::Render => { let _ = idx.pieces(); }
                    IndexOp::ChartsJson => { let _ = idx.charts_json(); }
                }
            }
            let mut fresh = RepoIndex::new(layout);
            for (c, v) in &present {
                add(&mut fresh, &format!("c{c}"), &format!("1.{v}.0"));
            }
            let strip = |b: Vec<u8>| {
                let t = String::from_utf8(b).unwrap();
                t.lines().filter(|l| !l.contains("generated")).collect::<Vec<_>>().join("\n")
            };
            if json {
                let a: Value = serde_json::from_slice(&idx.pieces().to_vec()).unwrap();
                let b: Value = serde_json::from_slice(&fresh.pieces().to_vec()).unwrap();
                proptest::prop_assert_eq!(&a["entries"], &b["entries"]);
            } else {
                proptest::prop_assert_eq!(strip(idx.pieces().to_vec()), strip(fresh.pieces().to_vec()));
            }
            proptest::prop_assert_eq!(idx.charts_json().all().concat(), fresh.charts_json().all().concat());
            for c in 0..3u8 {
                let name = format!("c{c}");
                proptest::prop_assert_eq!(idx.chart_json(&name), fresh.chart_json(&name));
            }
            proptest::prop_assert_eq!(idx.objects().len(), present.len());
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
            let back =
                Entry::from_rendered(e.json(), e.yaml(), "h-1.0.0.tgz", "charts/h-1.0.0.tgz")
                    .unwrap_or_else(|| panic!("refused its own texts for {v:?}"));
            assert_eq!((back.json(), back.yaml()), (e.json(), e.yaml()));
            assert_eq!((back.name.as_str(), back.version.as_str()), ("h", "1.0.0"));
        }
    }

    /// Texts that do not fit the file, the URL or the shape of one list item are refused (the
    /// caller renders the entry again from its JSON).
    #[test]
    fn rendered_texts_must_fit() {
        let url = "charts/h-1.0.0.tgz";
        let e = Entry::new(&hostile_meta("k", "v"), "abc", 0, "h-1.0.0.tgz", url);
        let (json, yaml) = (e.json(), e.yaml());
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
        let v: serde_json::Value = serde_json::from_slice(&idx.pieces().to_vec()).unwrap();
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
                        let list: Vec<Value> = idx
                            .chart_versions(name)
                            .unwrap()
                            .iter()
                            .map(|e| serde_json::from_str(e.json()).unwrap())
                            .collect();
                        (name.clone(), Value::Array(list))
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
