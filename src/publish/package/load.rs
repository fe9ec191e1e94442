//! Building a chart from its files as Helm's `LoadFiles` does: which file is what, the
//! metadata read, sanitised and validated, the lock and values checked, dependencies in
//! `charts/` loaded from directories and from packages.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

use super::PackageError;
use super::emit::Node;

/// A chart file: its path inside the chart and its contents (byte-order mark dropped).
#[derive(Debug, Clone)]
pub struct File {
    pub name: String,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct Chart {
    pub name: String,
    pub version: String,
    pub api_version: String,
    /// The sanitised metadata as Helm marshals it.
    pub metadata: Map<String, Json>,
    /// `Chart.lock` as Helm marshals it (written for apiVersion v2 only).
    pub lock: Option<Map<String, Json>>,
    pub values: Option<Vec<u8>>,
    pub schema: Option<Vec<u8>>,
    pub templates: Vec<File>,
    pub files: Vec<File>,
    pub deps: Vec<Chart>,
}

impl Chart {
    /// Names of the dependencies the metadata declares.
    pub fn declared_dependencies(&self) -> Vec<String> {
        match self.metadata.get("dependencies") {
            Some(Json::Array(deps)) => deps
                .iter()
                .map(|d| {
                    d.get("name")
                        .and_then(Json::as_str)
                        .unwrap_or("")
                        .to_string()
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `Chart.yaml` as Helm writes it (a v1 chart's dependencies left out).
    pub fn chart_yaml(&self) -> Result<Vec<u8>, PackageError> {
        let mut md = self.metadata.clone();
        if self.api_version == "v1" {
            md.remove("dependencies");
        }
        self.yaml("Chart.yaml", md)
    }

    pub fn lock_yaml(&self) -> Result<Option<Vec<u8>>, PackageError> {
        if self.api_version != "v2" {
            return Ok(None);
        }
        match &self.lock {
            Some(lock) => self.yaml("Chart.lock", lock.clone()).map(Some),
            None => Ok(None),
        }
    }

    fn yaml(&self, file: &str, m: Map<String, Json>) -> Result<Vec<u8>, PackageError> {
        let node = Node::from_json(&Json::Object(m));
        if let Some(c) = super::emit::unwritable(&node) {
            return Err(PackageError::BadFile {
                file: format!("{}/{file}", self.name),
                what: "the chart's metadata",
                message: format!(
                    "a value holds the character U+{:04X}, which Helm cannot write into {file}",
                    c as u32
                ),
            });
        }
        Ok(super::emit::to_yaml(&node))
    }
}

/// `Chart.yaml` decoded into Helm's metadata fields (the server's reader).
pub fn parse_metadata(data: &[u8], file: &str) -> Result<Map<String, Json>, PackageError> {
    let err = |message: String| PackageError::ChartYaml {
        file: file.to_string(),
        message,
    };
    let doc = crate::yaml11::parse(data).map_err(|e| err(e.to_string()))?;
    let json = crate::chart_yaml::metadata_json(&doc).map_err(|e| match e {
        crate::chart_yaml::MetadataError::Decode(m) => err(m),
        crate::chart_yaml::MetadataError::Invalid(m) => err(format!("validation: {m}")),
    })?;
    Ok(match json {
        Json::Object(m) => m,
        _ => Map::new(),
    })
}

/// Go's `unicode.IsPrint` for the characters that are not white space: letters, marks,
/// numbers, punctuation and symbols. Approximated as "not a control, format, private-use or
/// noncharacter code point" (unassigned code points count as printable here).
fn is_print(c: char) -> bool {
    let u = c as u32;
    if c.is_control() {
        return false;
    }
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = matches!(u, 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

/// Helm's `sanitizeString`: white space becomes a space, unprintable characters go.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if is_print(c) {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

fn str_field(m: &Map<String, Json>, k: &str) -> String {
    m.get(k).and_then(Json::as_str).unwrap_or("").to_string()
}

fn str_list(m: &Map<String, Json>, k: &str) -> Vec<String> {
    match m.get(k) {
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// One dependency as Go marshals `chart.Dependency` (name and repository always written).
fn dependency_json(d: &Map<String, Json>, sanitize_it: bool) -> Map<String, Json> {
    let s = |v: String| if sanitize_it { sanitize(&v) } else { v };
    let mut out = Map::new();
    out.insert("name".into(), Json::String(s(str_field(d, "name"))));
    let version = s(str_field(d, "version"));
    if !version.is_empty() {
        out.insert("version".into(), Json::String(version));
    }
    out.insert(
        "repository".into(),
        Json::String(s(str_field(d, "repository"))),
    );
    let condition = s(str_field(d, "condition"));
    if !condition.is_empty() {
        out.insert("condition".into(), Json::String(condition));
    }
    let tags: Vec<Json> = str_list(d, "tags")
        .into_iter()
        .map(|t| Json::String(s(t)))
        .collect();
    if !tags.is_empty() {
        out.insert("tags".into(), Json::Array(tags));
    }
    if d.get("enabled").and_then(Json::as_bool) == Some(true) {
        out.insert("enabled".into(), Json::Bool(true));
    }
    if let Some(Json::Array(iv)) = d.get("import-values") {
        if !iv.is_empty() {
            out.insert("import-values".into(), Json::Array(iv.clone()));
        }
    }
    let alias = str_field(d, "alias");
    if !alias.is_empty() {
        out.insert("alias".into(), Json::String(alias));
    }
    out
}

/// Helm's `Metadata.Validate` (which sanitises first) and then the metadata as Go marshals
/// it. `api_version` is already defaulted.
fn validate(md: &Map<String, Json>, api_version: &str) -> Result<Map<String, Json>, String> {
    let mut out = Map::new();
    let put_str = |out: &mut Map<String, Json>, k: &str, v: String| {
        if !v.is_empty() {
            out.insert(k.to_string(), Json::String(v));
        }
    };
    let name = sanitize(&str_field(md, "name"));
    let version = str_field(md, "version");
    put_str(&mut out, "name", name.clone());
    put_str(&mut out, "home", sanitize(&str_field(md, "home")));
    let sources: Vec<Json> = str_list(md, "sources")
        .iter()
        .map(|s| Json::String(sanitize(s)))
        .collect();
    if !sources.is_empty() {
        out.insert("sources".into(), Json::Array(sources));
    }
    put_str(&mut out, "version", version.clone());
    put_str(
        &mut out,
        "description",
        sanitize(&str_field(md, "description")),
    );
    let keywords: Vec<Json> = str_list(md, "keywords")
        .iter()
        .map(|s| Json::String(sanitize(s)))
        .collect();
    if !keywords.is_empty() {
        out.insert("keywords".into(), Json::Array(keywords));
    }
    if let Some(Json::Array(ms)) = md.get("maintainers") {
        let ms: Vec<Json> = ms
            .iter()
            .map(|m| {
                let m = m.as_object().cloned().unwrap_or_default();
                let mut o = Map::new();
                for k in ["name", "email", "url"] {
                    let v = sanitize(&str_field(&m, k));
                    if !v.is_empty() {
                        o.insert(k.into(), Json::String(v));
                    }
                }
                Json::Object(o)
            })
            .collect();
        if !ms.is_empty() {
            out.insert("maintainers".into(), Json::Array(ms));
        }
    }
    put_str(&mut out, "icon", sanitize(&str_field(md, "icon")));
    put_str(&mut out, "apiVersion", api_version.to_string());
    put_str(&mut out, "condition", sanitize(&str_field(md, "condition")));
    put_str(&mut out, "tags", sanitize(&str_field(md, "tags")));
    put_str(
        &mut out,
        "appVersion",
        sanitize(&str_field(md, "appVersion")),
    );
    if md.get("deprecated").and_then(Json::as_bool) == Some(true) {
        out.insert("deprecated".into(), Json::Bool(true));
    }
    if let Some(Json::Object(a)) = md.get("annotations") {
        if !a.is_empty() {
            out.insert("annotations".into(), Json::Object(a.clone()));
        }
    }
    put_str(
        &mut out,
        "kubeVersion",
        sanitize(&str_field(md, "kubeVersion")),
    );
    let deps: Vec<Map<String, Json>> = match md.get("dependencies") {
        Some(Json::Array(ds)) => ds
            .iter()
            .map(|d| dependency_json(&d.as_object().cloned().unwrap_or_default(), true))
            .collect(),
        _ => Vec::new(),
    };
    let chart_type = str_field(md, "type");
    put_str(&mut out, "type", chart_type.clone());

    if name.is_empty() {
        return Err("chart.metadata.name is required".into());
    }
    if name == "." || name == ".." {
        return Err(format!("chart.metadata.name {name:?} is not allowed"));
    }
    if name.contains('/') {
        return Err(format!("chart.metadata.name {name:?} is invalid"));
    }
    if version.is_empty() {
        return Err("chart.metadata.version is required".into());
    }
    if crate::version::Version::parse(&version).is_err() {
        return Err(format!("chart.metadata.version {version:?} is invalid"));
    }
    if !matches!(chart_type.as_str(), "" | "application" | "library") {
        return Err("chart.metadata.type must be application or library".into());
    }
    let mut seen = std::collections::HashSet::new();
    for d in &deps {
        let dname = str_field(d, "name");
        let alias = str_field(d, "alias");
        if !alias.is_empty()
            && !alias
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "dependency {dname:?} has disallowed characters in the alias"
            ));
        }
        let key = if alias.is_empty() { dname } else { alias };
        if !seen.insert(key.clone()) {
            return Err(format!(
                "more than one dependency with name or alias {key:?}"
            ));
        }
    }
    if !deps.is_empty() {
        out.insert(
            "dependencies".into(),
            Json::Array(deps.into_iter().map(Json::Object).collect()),
        );
    }
    Ok(out)
}

/// Go's `time.Time` read from JSON (RFC 3339) and written back (RFC 3339 with nanoseconds,
/// trailing zeros dropped, `Z` for a zero offset).
fn go_time(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return None;
    }
    let mut i = 19;
    let mut frac = String::new();
    if b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            frac.push(b[i] as char);
            i += 1;
        }
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
    }
    let zone = &s[i..];
    let zone = if zone == "Z" {
        "Z".to_string()
    } else {
        let z = zone.as_bytes();
        if z.len() != 6
            || !matches!(z[0], b'+' | b'-')
            || !z[1..3].iter().all(u8::is_ascii_digit)
            || z[3] != b':'
            || !z[4..6].iter().all(u8::is_ascii_digit)
        {
            return None;
        }
        if &zone[1..] == "00:00" {
            "Z".to_string()
        } else {
            zone.to_string()
        }
    };
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(99);
    let (mo, d, h, mi, se) = (num(5..7), num(8..10), num(11..13), num(14..16), num(17..19));
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let frac = if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    };
    Some(format!("{}{frac}{zone}", &s[..19]))
}

/// `Chart.lock` (or `requirements.lock`) as Helm reads it into `chart.Lock` and marshals it.
fn parse_lock(data: &[u8]) -> Result<Map<String, Json>, String> {
    use crate::yaml11::Value as Y;
    let doc = crate::yaml11::parse(data).map_err(|e| e.to_string())?;
    let entries = match &doc {
        Y::Map(e) => e.clone(),
        Y::Null => Vec::new(),
        _ => return Err("cannot unmarshal into a lock (a mapping)".into()),
    };
    let mut generated = "0001-01-01T00:00:00Z".to_string();
    let mut digest = String::new();
    let mut deps: Option<Y> = None;
    for (k, v) in &entries {
        let Y::Str(k) = k else { continue };
        match k.to_ascii_lowercase().as_str() {
            "generated" => match v {
                Y::Null => {}
                Y::Str(s) => {
                    generated = go_time(s)
                        .ok_or_else(|| format!("parsing time {s:?} as RFC 3339: cannot parse"))?
                }
                _ => return Err("cannot unmarshal a non-string into Lock.generated".into()),
            },
            "digest" => match v {
                Y::Null => {}
                Y::Str(s) => digest = s.clone(),
                Y::Int(i) => digest = i.to_string(),
                Y::Uint(u) => digest = u.to_string(),
                Y::Bool(b) => digest = b.to_string(),
                Y::Float(f) => digest = crate::yaml11::resolve::format_float32(*f),
                _ => return Err("cannot unmarshal into Lock.digest".into()),
            },
            "dependencies" => deps = Some(v.clone()),
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("generated".into(), Json::String(generated));
    out.insert("digest".into(), Json::String(digest));
    let deps_json = match deps {
        None | Some(Y::Null) => Json::Null,
        Some(d) => {
            // The dependency fields are typed as Chart.yaml's.
            let wrapped = Y::Map(vec![(Y::Str("dependencies".into()), d)]);
            let j = crate::chart_yaml::metadata_json(&wrapped).map_err(|e| match e {
                crate::chart_yaml::MetadataError::Decode(m)
                | crate::chart_yaml::MetadataError::Invalid(m) => m,
            })?;
            match j.get("dependencies") {
                Some(Json::Array(a)) => Json::Array(
                    a.iter()
                        .map(|d| {
                            Json::Object(dependency_json(
                                &d.as_object().cloned().unwrap_or_default(),
                                false,
                            ))
                        })
                        .collect(),
                ),
                _ => Json::Null,
            }
        }
    };
    out.insert("dependencies".into(), deps_json);
    Ok(out)
}

/// `values.yaml` as Helm's `LoadValues` checks it: every document a mapping (or empty).
fn check_values(data: &[u8]) -> Result<(), String> {
    let mut docs: Vec<Vec<u8>> = vec![Vec::new()];
    for line in data.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let is_sep = body.starts_with(b"---")
            && body[3..].iter().all(|c| matches!(c, b' ' | b'\t'))
            || body.starts_with(b"--- ");
        if is_sep {
            docs.push(Vec::new());
            continue;
        }
        if let Some(last) = docs.last_mut() {
            last.extend_from_slice(line);
        }
    }
    for doc in docs {
        match crate::yaml11::parse(&doc) {
            Ok(crate::yaml11::Value::Map(_)) | Ok(crate::yaml11::Value::Null) => {}
            Ok(_) => return Err("cannot unmarshal yaml document: not a mapping".into()),
            Err(e) => return Err(format!("error reading yaml document: {e}")),
        }
    }
    Ok(())
}

/// Go's `path.Clean`.
fn clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

/// The files of a chart package, as Helm's `LoadArchiveFiles` reads them.
pub fn archive_files(data: &[u8]) -> Result<Vec<File>, String> {
    use crate::tar_reader::{Kind, TarReader};
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err("not a gzip-compressed archive".into());
    }
    let gz = flate2::read::GzDecoder::new(data);
    let mut tar = TarReader::new(gz, super::MAX_FILE_SIZE, super::MAX_CHART_SIZE);
    let mut files = Vec::new();
    while let Some(entry) = tar.next_entry().map_err(|e| e.to_string())? {
        if entry.kind != Kind::File {
            continue;
        }
        let delim = if entry.path.contains('\\') { '\\' } else { '/' };
        let parts: Vec<&str> = entry.path.split(delim).collect();
        let n = parts[1..].join("/");
        if n.starts_with('/') {
            return Err("chart illegally contains absolute paths".into());
        }
        let n = clean(&n);
        if n == "." {
            return Err(format!(
                "chart illegally contains content outside the base directory: {:?}",
                entry.path
            ));
        }
        if n.starts_with("..") {
            return Err("chart illegally references parent directory".into());
        }
        let nb = n.as_bytes();
        if nb.len() >= 3 && nb[0].is_ascii_alphabetic() && nb[1] == b':' && nb[2] == b'/' {
            return Err("chart contains illegally named files".into());
        }
        if parts[0] == "Chart.yaml" {
            return Err("chart yaml not in base directory".into());
        }
        let data = tar.read_data(&entry).map_err(|e| e.to_string())?;
        let data = match data.strip_prefix(b"\xEF\xBB\xBF") {
            Some(rest) => rest.to_vec(),
            None => data,
        };
        files.push(File { name: n, data });
    }
    if files.is_empty() {
        return Err("no files in chart archive".into());
    }
    Ok(files)
}

/// Helm's `LoadFiles`: `origin` names the chart in errors.
pub fn load_files(files: Vec<File>, origin: &str) -> Result<Chart, PackageError> {
    let mut meta: Option<Map<String, Json>> = None;
    for f in &files {
        if f.name == "Chart.yaml" {
            meta = Some(parse_metadata(&f.data, &format!("{origin}/Chart.yaml"))?);
        }
    }
    let Some(mut meta) = meta else {
        return Err(PackageError::Invalid {
            chart: origin.to_string(),
            message: "Chart.yaml file is missing".into(),
        });
    };
    let mut api_version = str_field(&meta, "apiVersion");
    if api_version.is_empty() {
        api_version = "v1".into();
    }
    let bad = |name: &str, what: &'static str, message: String| PackageError::BadFile {
        file: format!("{origin}/{name}"),
        what,
        message,
    };
    let mut lock = None;
    let mut values = None;
    let mut schema = None;
    let mut templates = Vec::new();
    let mut other = Vec::new();
    let mut subcharts: BTreeMap<String, Vec<File>> = BTreeMap::new();
    for f in files {
        match f.name.as_str() {
            "Chart.yaml" => {}
            "Chart.lock" => {
                lock = Some(parse_lock(&f.data).map_err(|m| bad("Chart.lock", "Chart.lock", m))?);
            }
            "values.yaml" => {
                check_values(&f.data).map_err(|m| bad("values.yaml", "values.yaml", m))?;
                values = Some(f.data);
            }
            "values.schema.json" => schema = Some(f.data),
            "requirements.yaml" => {
                let overlay = parse_metadata(&f.data, &format!("{origin}/requirements.yaml"))?;
                for (k, v) in overlay {
                    if k != "apiVersion" || api_version == "v1" {
                        meta.insert(k, v);
                    }
                }
                if api_version == "v1" {
                    other.push(f);
                }
            }
            "requirements.lock" => {
                lock = Some(
                    parse_lock(&f.data)
                        .map_err(|m| bad("requirements.lock", "requirements.lock", m))?,
                );
                if api_version == "v1" {
                    other.push(f);
                }
            }
            n if n.starts_with("templates/") => templates.push(f),
            n if n.starts_with("charts/") => {
                if n.ends_with(".prov") {
                    other.push(f);
                    continue;
                }
                let rest = &n["charts/".len()..];
                let cname = rest.split('/').next().unwrap_or("").to_string();
                subcharts.entry(cname).or_default().push(File {
                    name: rest.to_string(),
                    data: f.data,
                });
            }
            _ => other.push(f),
        }
    }
    let metadata = validate(&meta, &api_version).map_err(|message| PackageError::Invalid {
        chart: origin.to_string(),
        message,
    })?;
    let name = str_field(&metadata, "name");
    let version = str_field(&metadata, "version");
    let mut deps = Vec::new();
    for (cname, files) in subcharts {
        if cname.starts_with('_') || cname.starts_with('.') {
            continue;
        }
        let wrap = |e: PackageError| PackageError::Subchart {
            name: cname.clone(),
            parent: name.clone(),
            source: Box::new(e),
        };
        let sub_origin = format!("{origin}/charts/{cname}");
        let dep = if cname.ends_with(".tgz") {
            let file = &files[0];
            if file.name != cname {
                return Err(wrap(PackageError::Archive {
                    file: sub_origin,
                    message: format!("expected {cname}, got {}", file.name),
                }));
            }
            let inner = archive_files(&file.data).map_err(|message| {
                wrap(PackageError::Archive {
                    file: sub_origin.clone(),
                    message,
                })
            })?;
            load_files(inner, &sub_origin).map_err(wrap)?
        } else {
            let buff: Vec<File> = files
                .into_iter()
                .filter_map(|f| {
                    f.name.split_once('/').map(|(_, rest)| File {
                        name: rest.to_string(),
                        data: f.data,
                    })
                })
                .collect();
            load_files(buff, &sub_origin).map_err(wrap)?
        };
        deps.push(dep);
    }
    if let Some(s) = &schema {
        if serde_json::from_slice::<serde::de::IgnoredAny>(s).is_err() {
            return Err(PackageError::BadFile {
                file: format!("{origin}/values.schema.json"),
                what: "values.schema.json",
                message: "invalid JSON".into(),
            });
        }
    }
    Ok(Chart {
        name,
        version,
        api_version,
        metadata,
        lock,
        values,
        schema,
        templates,
        files: other,
        deps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizes_like_helm() {
        assert_eq!(sanitize("a\tb\nc\u{0}d\u{200b}e\u{a0}f"), "a b cde f");
        assert_eq!(sanitize("Ünïcödé ✓"), "Ünïcödé ✓");
    }

    #[test]
    fn times_like_go() {
        assert_eq!(
            go_time("2023-01-02T03:04:05.120000Z").as_deref(),
            Some("2023-01-02T03:04:05.12Z")
        );
        assert_eq!(
            go_time("2023-01-02T03:04:05+00:00").as_deref(),
            Some("2023-01-02T03:04:05Z")
        );
        assert_eq!(
            go_time("2023-01-02T03:04:05-07:00").as_deref(),
            Some("2023-01-02T03:04:05-07:00")
        );
        assert_eq!(go_time("2023-01-02 03:04:05Z"), None);
    }

    #[test]
    fn path_clean() {
        assert_eq!(clean("a/./b/../c"), "a/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("/a/.."), "/");
    }

    #[test]
    fn values_documents() {
        assert!(check_values(b"a: 1\n---\nb: 2\n").is_ok());
        assert!(check_values(b"").is_ok());
        assert!(check_values(b"- a\n").is_err());
        assert!(check_values(b"a: [\n").is_err());
    }
}
