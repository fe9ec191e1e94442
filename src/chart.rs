//! Reading Helm chart packages (`.tgz`) and provenance files. Name and version always come
//! from the package's own `Chart.yaml`, validated as Helm validates it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::tar_reader::{Kind, TarError, TarReader};
use crate::version::Version;

/// Helm's loader limits (`MaxDecompressedChartSize`, `MaxDecompressedFileSize`), the defaults
/// of `maxdecompressedchartsize` and `maxdecompressedfilesize`.
pub const DEFAULT_MAX_CHART_SIZE: u64 = 100 * 1024 * 1024;
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 * 1024 * 1024;
/// Largest `Chart.yaml` we read.
const MAX_CHART_YAML: u64 = 1024 * 1024;
/// How many packages are unpacked at once, server-wide (uploads, packages read from storage,
/// `/templates` and `/values`): with the limits, this bounds the memory that parsing uses.
pub const PARSES_AT_ONCE: usize = 2;

/// How far a package may unpack. Every byte of the tar stream counts against `max_chart_size`
/// (headers and extension headers included); every entry, extension headers included, is held
/// to `max_file_size`. Parsed YAML (`Chart.yaml`, `values.yaml`) may take at most
/// [`Limits::yaml_budget`] bytes once aliases are expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_chart_size: u64,
    pub max_file_size: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_chart_size: DEFAULT_MAX_CHART_SIZE,
            max_file_size: DEFAULT_MAX_FILE_SIZE,
        }
    }
}

impl Limits {
    /// What a parsed YAML file may take in memory (estimated: 32 bytes a node plus its text),
    /// aliases expanded: 8 times the per-file limit.
    pub fn yaml_budget(&self) -> u64 {
        self.max_file_size.saturating_mul(8)
    }

    /// Largest answer of `/templates` (base64 templates and values as JSON).
    pub fn answer_limit(&self) -> u64 {
        self.max_chart_size
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChartError {
    #[error("chart package is empty")]
    Empty,
    #[error("chart package is not gzip-compressed")]
    NotGzip,
    #[error("chart package is not a valid tar archive: {0}")]
    BadTar(String),
    #[error(
        "chart package decompresses to more than {limit} bytes \
         (maximum decompressed chart size, max-decompressed-chart-size)"
    )]
    TooLarge { limit: u64 },
    #[error(
        "{what} in the chart package is larger than {limit} bytes \
         (maximum decompressed file size, max-decompressed-file-size)"
    )]
    FileTooLarge { what: String, limit: u64 },
    #[error("Chart.yaml is larger than {MAX_CHART_YAML} bytes")]
    ChartYamlTooLarge,
    #[error(
        "{file}: the parsed YAML would take more than {limit} bytes (aliases expanded; \
         8 times max-decompressed-file-size)"
    )]
    YamlTooLarge { file: &'static str, limit: u64 },
    #[error("the answer would be larger than {limit} bytes (max-decompressed-chart-size)")]
    AnswerTooLarge { limit: u64 },
    #[error("cannot parse {file}: {error}")]
    BadYaml { file: &'static str, error: String },
    #[error("Chart.yaml file is missing")]
    NoChartYaml,
    #[error("cannot parse Chart.yaml: {0}")]
    BadChartYaml(String),
    #[error("validation: {0}")]
    Invalid(String),
    #[error("invalid provenance file")]
    BadProvenance,
}

impl ChartError {
    /// A limit of the server (not a defect of the package as Helm sees it) was hit.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ChartError::TooLarge { .. }
                | ChartError::FileTooLarge { .. }
                | ChartError::ChartYamlTooLarge
                | ChartError::YamlTooLarge { .. }
                | ChartError::AnswerTooLarge { .. }
        )
    }
}

fn tar_error(e: TarError) -> ChartError {
    match e {
        TarError::TooLarge { limit } => ChartError::TooLarge { limit },
        TarError::EntryTooLarge { subject, limit } => ChartError::FileTooLarge {
            what: subject.to_string(),
            limit,
        },
        other => ChartError::BadTar(other.to_string()),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Maintainer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub enabled: bool,
    #[serde(
        default,
        rename = "import-values",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub import_values: Vec<serde_json::Value>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Helm's chart metadata (`Chart.yaml`), fields in alphabetical order so that serialising it
/// gives the key order Helm's index writer produces. Unknown keys are dropped, as Helm does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "apiVersion",
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    #[serde(
        default,
        rename = "appVersion",
        skip_serializing_if = "String::is_empty"
    )]
    pub app_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deprecated: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub home: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub icon: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(
        default,
        rename = "kubeVersion",
        skip_serializing_if = "String::is_empty"
    )]
    pub kube_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintainers: Vec<Maintainer>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tags: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub chart_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

impl Metadata {
    /// Reads `Chart.yaml` as Helm does (see `chart_yaml`): YAML 1.1 scalars, and a number or
    /// boolean where Helm expects a string takes Go's text of it (`version: 1.0` is `"1"`,
    /// keyword `true` is `"true"`); then Helm's validation.
    pub fn from_yaml(text: &[u8]) -> Result<Metadata, ChartError> {
        use crate::chart_yaml::MetadataError;
        let doc =
            crate::yaml11::parse(text).map_err(|e| ChartError::BadChartYaml(e.to_string()))?;
        let json = crate::chart_yaml::metadata_json(&doc).map_err(|e| match e {
            MetadataError::Decode(m) => ChartError::BadChartYaml(m),
            MetadataError::Invalid(m) => ChartError::Invalid(m),
        })?;
        let mut md: Metadata = if json.is_null() {
            Metadata::default()
        } else {
            serde_json::from_value(json).map_err(|e| ChartError::BadChartYaml(e.to_string()))?
        };
        if md.api_version.is_empty() {
            md.api_version = "v1".into();
        }
        md.validate()?;
        Ok(md)
    }

    /// Helm's `Metadata.Validate`, with the same wording.
    pub fn validate(&self) -> Result<(), ChartError> {
        let inv = |m: String| Err(ChartError::Invalid(m));
        if self.name.is_empty() {
            return inv("chart.metadata.name is required".into());
        }
        if self.name == "."
            || self.name == ".."
            || self.name.contains('/')
            || self.name.contains('\\')
            || self.name.chars().any(|c| c.is_control())
        {
            return inv(format!("chart.metadata.name {:?} is invalid", self.name));
        }
        if self.version.is_empty() {
            return inv("chart.metadata.version is required".into());
        }
        if Version::parse(&self.version).is_err() {
            return inv(format!(
                "chart.metadata.version {:?} is invalid",
                self.version
            ));
        }
        if !matches!(self.chart_type.as_str(), "" | "application" | "library") {
            return inv("chart.metadata.type must be application or library".into());
        }
        // Helm requires neither a maintainer's name nor a dependency's (null entries are
        // refused while reading); an alias must be `[a-zA-Z0-9_-]+`.
        let mut seen = std::collections::HashSet::new();
        for d in &self.dependencies {
            if !d.alias.is_empty()
                && !d
                    .alias
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return inv(format!(
                    "dependency {:?} has disallowed characters in the alias",
                    d.name
                ));
            }
            let key = if d.alias.is_empty() {
                &d.name
            } else {
                &d.alias
            };
            if !seen.insert(key.clone()) {
                return inv(format!(
                    "more than one dependency with name or alias {key:?}"
                ));
            }
        }
        Ok(())
    }

    /// The canonical storage file name `<name>-<version>.tgz`.
    pub fn file_name(&self) -> String {
        format!("{}-{}.tgz", self.name, self.version)
    }
}

/// Walks the files of a package, calling `visit(path_inside_chart, contents)` for each file
/// whose path `want` accepts. Paths are relative to the chart's top-level directory. Every
/// size is checked against `limits` before anything is read or allocated.
fn walk_package(
    data: &[u8],
    limits: &Limits,
    mut want: impl FnMut(&str) -> bool,
    mut visit: impl FnMut(&str, Vec<u8>) -> Result<(), ChartError>,
) -> Result<(), ChartError> {
    if data.is_empty() {
        return Err(ChartError::Empty);
    }
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(ChartError::NotGzip);
    }
    let gz = flate2::read::GzDecoder::new(data);
    let mut tar = TarReader::new(gz, limits.max_file_size, limits.max_chart_size);
    while let Some(entry) = tar.next_entry().map_err(tar_error)? {
        if entry.kind != Kind::File {
            continue;
        }
        let path = entry.path.replace('\\', "/");
        let inner = match path.trim_start_matches("./").split_once('/') {
            Some((_, rest)) => rest.to_string(),
            None => continue,
        };
        if !want(&inner) {
            continue;
        }
        if inner == "Chart.yaml" && entry.size > MAX_CHART_YAML {
            return Err(ChartError::ChartYamlTooLarge);
        }
        let buf = tar.read_data(&entry).map_err(tar_error)?;
        visit(&inner, buf)?;
    }
    Ok(())
}

/// Parses YAML into JSON values within `limits`' YAML budget: every node (aliases expanded)
/// costs 32 bytes plus its text, and going over the budget stops the parse at once, before a
/// billion laughs can expand.
pub fn parse_yaml_bounded(
    text: &[u8],
    file: &'static str,
    limits: &Limits,
) -> Result<serde_json::Value, ChartError> {
    let budget = yaml_bounded::Budget::new(limits.yaml_budget());
    let de = serde_norway::Deserializer::from_slice(text);
    match serde::de::DeserializeSeed::deserialize(yaml_bounded::Build(&budget), de) {
        Ok(v) => Ok(v),
        Err(_) if budget.exceeded() => Err(ChartError::YamlTooLarge {
            file,
            limit: limits.yaml_budget(),
        }),
        Err(e) => Err(ChartError::BadYaml {
            file,
            error: e.to_string(),
        }),
    }
}

/// A `DeserializeSeed` that builds a `serde_json::Value` as serde_json's own does, charging
/// each node to a budget.
mod yaml_bounded {
    use std::cell::Cell;

    use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    const NODE: u64 = 32;

    pub struct Budget {
        left: Cell<u64>,
        exceeded: Cell<bool>,
    }

    impl Budget {
        pub fn new(limit: u64) -> Budget {
            Budget {
                left: Cell::new(limit),
                exceeded: Cell::new(false),
            }
        }

        pub fn exceeded(&self) -> bool {
            self.exceeded.get()
        }

        fn charge<E: de::Error>(&self, cost: u64) -> Result<(), E> {
            match self.left.get().checked_sub(cost) {
                Some(left) => {
                    self.left.set(left);
                    Ok(())
                }
                None => {
                    self.exceeded.set(true);
                    Err(E::custom("YAML document too large once parsed"))
                }
            }
        }
    }

    pub struct Build<'a>(pub &'a Budget);

    impl<'de> DeserializeSeed<'de> for Build<'_> {
        type Value = Value;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
    }

    struct Key<'a>(&'a Budget);

    impl<'de> DeserializeSeed<'de> for Key<'_> {
        type Value = String;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            let k = <String as de::Deserialize>::deserialize(d)?;
            self.0.charge(NODE + k.len() as u64)?;
            Ok(k)
        }
    }

    impl<'de> Visitor<'de> for Build<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any YAML value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
            self.0.charge(NODE)?;
            Ok(Value::Bool(v))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
            self.0.charge(NODE)?;
            Ok(Value::Number(v.into()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
            self.0.charge(NODE)?;
            Ok(Value::Number(v.into()))
        }
        fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
            match (i64::try_from(v), u64::try_from(v)) {
                (Ok(i), _) => self.visit_i64(i),
                (_, Ok(u)) => self.visit_u64(u),
                _ => self.visit_f64(v as f64),
            }
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => self.visit_f64(v as f64),
            }
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            self.0.charge(NODE)?;
            Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            self.0.charge(NODE + v.len() as u64)?;
            Ok(Value::String(v.to_string()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            self.0.charge(NODE + v.len() as u64)?;
            Ok(Value::String(v))
        }
        fn visit_none<E: de::Error>(self) -> Result<Value, E> {
            self.0.charge(NODE)?;
            Ok(Value::Null)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
            self.visit_none()
        }
        fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            self.0.charge(NODE)?;
            let mut out = Vec::new();
            while let Some(v) = seq.next_element_seed(Build(self.0))? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            self.0.charge(NODE)?;
            let mut out = Map::new();
            while let Some(k) = map.next_key_seed(Key(self.0))? {
                let v = map.next_value_seed(Build(self.0))?;
                out.insert(k, v);
            }
            Ok(Value::Object(out))
        }
    }
}

/// Runs CPU work whose cost grows with a package's size (unpacking, hashing) on tokio's
/// blocking threads, so that a large package never holds up the server's (single) runtime
/// thread: other requests and the watchdog go on meanwhile.
pub async fn off_thread<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        // Only a panic in `f` gets here (a blocking task is never cancelled once started, and
        // this future is dropped before the runtime cancels unstarted ones): pass it on.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs the parsing of a package off the runtime thread, at most [`PARSES_AT_ONCE`] at a
/// time server-wide: with the [`Limits`], this bounds the memory parsing takes however many
/// uploads and reads arrive at once. The permit lives as long as the work, even when the
/// request that started it goes away.
pub async fn parse_off_thread<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PARSES_AT_ONCE);
    // The semaphore is never closed, so acquiring cannot fail; without a permit the work
    // still runs rather than failing the request.
    let permit = GATE.acquire().await.ok();
    off_thread(move || {
        let out = f();
        drop(permit);
        out
    })
    .await
}

/// Reads and validates a package's `Chart.yaml`, with Helm's default limits.
pub fn read_metadata(data: &[u8]) -> Result<Metadata, ChartError> {
    read_metadata_with(data, &Limits::default())
}

/// Reads and validates a package's `Chart.yaml` within `limits`.
pub fn read_metadata_with(data: &[u8], limits: &Limits) -> Result<Metadata, ChartError> {
    let mut found: Option<Vec<u8>> = None;
    walk_package(
        data,
        limits,
        |p| p == "Chart.yaml",
        |_, bytes| {
            if found.is_none() {
                found = Some(bytes);
            }
            Ok(())
        },
    )?;
    let bytes = found.ok_or(ChartError::NoChartYaml)?;
    // A billion laughs is refused here, within the YAML budget, before it can expand.
    if let Err(e @ ChartError::YamlTooLarge { .. }) =
        parse_yaml_bounded(&bytes, "Chart.yaml", limits)
    {
        return Err(e);
    }
    Metadata::from_yaml(&bytes)
}

/// The files the API's `/templates` and `/values` routes show.
pub struct ChartFiles {
    pub templates: Vec<(String, Vec<u8>)>,
    pub values: Option<Vec<u8>>,
}

/// Reads a package's templates and values, with Helm's default limits.
pub fn read_files(data: &[u8]) -> Result<ChartFiles, ChartError> {
    read_files_with(data, &Limits::default())
}

pub fn read_files_with(data: &[u8], limits: &Limits) -> Result<ChartFiles, ChartError> {
    let mut files = ChartFiles {
        templates: Vec::new(),
        values: None,
    };
    let mut saw_chart_yaml = false;
    walk_package(
        data,
        limits,
        |p| p == "values.yaml" || p == "Chart.yaml" || p.starts_with("templates/"),
        |p, bytes| {
            match p {
                "values.yaml" => files.values = Some(bytes),
                "Chart.yaml" => saw_chart_yaml = true,
                _ => files.templates.push((p.to_string(), bytes)),
            }
            Ok(())
        },
    )?;
    if !saw_chart_yaml {
        return Err(ChartError::NoChartYaml);
    }
    Ok(files)
}

/// A package's `values.yaml` as stored (`None` without one), within `limits`.
pub fn read_values(data: &[u8], limits: &Limits) -> Result<Option<Vec<u8>>, ChartError> {
    let mut values = None;
    let mut saw_chart_yaml = false;
    walk_package(
        data,
        limits,
        |p| p == "values.yaml" || p == "Chart.yaml",
        |p, bytes| {
            match p {
                "values.yaml" => values = Some(bytes),
                _ => saw_chart_yaml = true,
            }
            Ok(())
        },
    )?;
    if !saw_chart_yaml {
        return Err(ChartError::NoChartYaml);
    }
    Ok(values)
}

/// The answer of `/templates`: `{"templates":[{"data":<base64>,"name":"templates/..."},...],
/// "values":<values.yaml as JSON>}`. Templates are encoded as they are read (no copy of the
/// package's files is kept), values.yaml is parsed within the YAML budget, and the whole answer
/// within [`Limits::answer_limit`].
pub fn templates_json(data: &[u8], limits: &Limits) -> Result<Vec<u8>, ChartError> {
    use base64::Engine;
    use std::io::Write;
    let limit = limits.answer_limit();
    let too_large = || ChartError::AnswerTooLarge { limit };
    let mut out = Bounded {
        buf: b"{\"templates\":[".to_vec(),
        limit,
    };
    let mut values: Option<Vec<u8>> = None;
    let mut saw_chart_yaml = false;
    let mut first = true;
    walk_package(
        data,
        limits,
        |p| p == "values.yaml" || p == "Chart.yaml" || p.starts_with("templates/"),
        |p, bytes| {
            match p {
                "values.yaml" => values = Some(bytes),
                "Chart.yaml" => saw_chart_yaml = true,
                _ => {
                    let name = format!("templates/{}", p.trim_start_matches("templates/"));
                    let name = serde_json::to_string(&name).map_err(|_| too_large())?;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    drop(bytes);
                    let sep = if first { "" } else { "," };
                    first = false;
                    write!(out, "{sep}{{\"data\":\"{encoded}\",\"name\":{name}}}")
                        .map_err(|_| too_large())?;
                }
            }
            Ok(())
        },
    )?;
    if !saw_chart_yaml {
        return Err(ChartError::NoChartYaml);
    }
    out.write_all(b"],\"values\":").map_err(|_| too_large())?;
    let parsed = match &values {
        None => serde_json::Value::Null,
        Some(v) if v.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Some(v) => parse_yaml_bounded(v, "values.yaml", limits)?,
    };
    drop(values);
    serde_json::to_writer(&mut out, &parsed).map_err(|_| too_large())?;
    drop(parsed);
    out.write_all(b"}").map_err(|_| too_large())?;
    Ok(out.buf)
}

/// A buffer that refuses to grow past `limit` bytes.
struct Bounded {
    buf: Vec<u8>,
    limit: u64,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if (self.buf.len() + data.len()) as u64 > self.limit {
            return Err(std::io::Error::other("answer too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The file name a provenance file belongs to, `<name>-<version>.tgz.prov`, read from the
/// signed `name:` and `version:` lines. The signature itself is not checked here.
pub fn provenance_file_name(data: &[u8]) -> Result<String, ChartError> {
    let text = std::str::from_utf8(data).map_err(|_| ChartError::BadProvenance)?;
    if !text.starts_with("-----BEGIN PGP SIGNED MESSAGE-----") {
        return Err(ChartError::BadProvenance);
    }
    let field = |key: &str| -> Option<String> {
        text.lines().skip(1).find_map(|line| {
            let line = line.trim_end_matches('\r');
            line.strip_prefix(key)
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                .filter(|v| !v.is_empty())
        })
    };
    let name = field("name:").ok_or(ChartError::BadProvenance)?;
    let version = field("version:").ok_or(ChartError::BadProvenance)?;
    Ok(format!("{name}-{version}.tgz.prov"))
}

/// True when `name` is a plain file name: no directory parts, nothing that could escape.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.chars().any(|c| c.is_control())
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Builds a gzip'd tar with the given (path, contents) entries.
    pub fn package(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder
                .append_data(&mut h, path, body.as_bytes())
                .expect("append");
        }
        let tar = builder.into_inner().expect("tar");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &tar).expect("gz");
        enc.finish().expect("gz")
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::package;
    use super::*;
    use std::io::Read;

    #[test]
    fn reads_metadata_and_defaults_api_version() {
        let pkg = package(&[
            (
                "mychart/Chart.yaml",
                "name: mychart\nversion: 0.1.0\nfoo: bar\n",
            ),
            ("mychart/values.yaml", ""),
        ]);
        let md = read_metadata(&pkg).unwrap();
        assert_eq!(md.name, "mychart");
        assert_eq!(md.version, "0.1.0");
        assert_eq!(md.api_version, "v1");
        assert_eq!(md.file_name(), "mychart-0.1.0.tgz");
    }

    #[test]
    fn numeric_versions_become_strings() {
        let pkg = package(&[("c/Chart.yaml", "name: c\nversion: 1.0\nappVersion: 2\n")]);
        let md = read_metadata(&pkg).unwrap();
        // Helm's text of the float 1.0 is "1".
        assert_eq!(md.version, "1");
        assert_eq!(md.app_version, "2");
        assert_eq!(md.file_name(), "c-1.tgz");
    }

    /// Each YAML 1.1 scalar form where Helm expects a string, as Helm 4 reads it.
    #[test]
    fn yaml11_scalars_read_as_helm_reads_them() {
        let cases = [
            ("1.0", "1"),
            ("1.10", "1.1"),
            ("123", "123"),
            ("true", "true"),
            ("False", "false"),
            ("yes", "true"),
            ("Off", "false"),
            ("y", "true"),
            ("n", "false"),
            ("1e3", "1000"),
            ("1.5e10", "1.5e+10"),
            ("0x1F", "31"),
            ("0o17", "15"),
            ("017", "15"),
            ("0b11", "3"),
            ("1_000", "1000"),
            ("+5", "5"),
            ("-7", "-7"),
            ("08", "8"),
            ("~", ""),
            ("null", ""),
            ("2024-01-01", "2024-01-01"),
            ("1:20", "1:20"),
            (".inf", "+Inf"),
            ("-.inf", "-Inf"),
            (".nan", "NaN"),
            ("1.50", "1.5"),
            ("1.23456789", "1.2345679"),
            ("\"1.0\"", "1.0"),
            ("'yes'", "yes"),
            ("!!str 0x1F", "0x1F"),
            ("18446744073709551615", "18446744073709551615"),
        ];
        for (yaml, want) in cases {
            let text = format!(
                "name: c\nversion: 1.0.0\ndescription: {yaml}\nkeywords: [{yaml}]\n\
                 annotations: {{k: {yaml}}}\n"
            );
            let text = if want.is_empty() {
                text
            } else {
                format!("{text}maintainers: [{{name: {yaml}}}]\n")
            };
            let md = Metadata::from_yaml(text.as_bytes()).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            assert_eq!(md.description, want, "{yaml}");
            assert_eq!(md.keywords, [want], "{yaml}");
            assert_eq!(md.annotations["k"], want, "{yaml}");
            if !want.is_empty() {
                assert_eq!(md.maintainers[0].name, want, "{yaml}");
            }
        }
        let md = Metadata::from_yaml(b"name: 0x1F\nversion: 1.10\ndeprecated: yes\n").unwrap();
        assert_eq!(md.file_name(), "31-1.1.tgz");
        assert!(md.deprecated);
        // Booleans stay booleans; a quoted one is a type error, as in Helm.
        assert!(matches!(
            Metadata::from_yaml(b"name: c\nversion: 1.0.0\ndeprecated: 'yes'\n"),
            Err(ChartError::BadChartYaml(m)) if m.contains("deprecated")
        ));
        // Name and version are still validated.
        assert!(matches!(
            Metadata::from_yaml(b"name: c\nversion: yes\n"),
            Err(ChartError::Invalid(m)) if m.contains("\"true\" is invalid")
        ));
        // As in Helm: maintainers need no name, null entries are refused, aliases are checked.
        assert!(
            Metadata::from_yaml(b"name: c\nversion: 1.0.0\nmaintainers: [{email: e}]\n").is_ok()
        );
        assert!(matches!(
            Metadata::from_yaml(b"name: c\nversion: 1.0.0\nmaintainers: [~]\n"),
            Err(ChartError::Invalid(m)) if m.contains("null")
        ));
        assert!(matches!(
            Metadata::from_yaml(b"name: c\nversion: 1.0.0\ndependencies: [{name: d, alias: a.b}]\n"),
            Err(ChartError::Invalid(m)) if m.contains("alias")
        ));
        assert!(matches!(
            Metadata::from_yaml(b"name: ~\nversion: 1.0.0\n"),
            Err(ChartError::Invalid(m)) if m.contains("name is required")
        ));
    }

    /// Any bytes give metadata or an error, never a panic.
    #[test]
    fn any_bytes_never_panic() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2000));
        let alphabet =
            prop::sample::select(b"abn:-[]{}&*!|>'\"#~ ,.?<\n\t01eyx%@`\\\x7f\xc2\x85".to_vec());
        runner
            .run(&prop::collection::vec(alphabet, 0..80), |bytes| {
                let _ = Metadata::from_yaml(&bytes);
                let mut doc = b"name: c\nversion: 1.0.0\n".to_vec();
                doc.extend_from_slice(&bytes);
                let _ = Metadata::from_yaml(&doc);
                Ok(())
            })
            .unwrap();
        runner
            .run(&prop::collection::vec(any::<u8>(), 0..200), |bytes| {
                let _ = Metadata::from_yaml(&bytes);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn rejects_bad_packages() {
        assert_eq!(read_metadata(b""), Err(ChartError::Empty));
        assert_eq!(read_metadata(b"hello"), Err(ChartError::NotGzip));
        let no_chart = package(&[("c/values.yaml", "a: 1\n")]);
        assert_eq!(read_metadata(&no_chart), Err(ChartError::NoChartYaml));
        let evil = package(&[(
            "c/Chart.yaml",
            "apiVersion: v1\nname: \"../../../../charts/org2/repo2/evil\"\nversion: 0.1.0\n",
        )]);
        assert!(matches!(read_metadata(&evil), Err(ChartError::Invalid(m)) if m.contains("name")));
        let nover = package(&[("c/Chart.yaml", "name: c\n")]);
        assert!(
            matches!(read_metadata(&nover), Err(ChartError::Invalid(m)) if m.contains("version is required"))
        );
        let badver = package(&[("c/Chart.yaml", "name: c\nversion: banana\n")]);
        assert!(
            matches!(read_metadata(&badver), Err(ChartError::Invalid(m)) if m.contains("invalid"))
        );
    }

    #[test]
    fn provenance_names() {
        let prov = b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v1\nmaintainers:\n  name: x\nname: mychart\nversion: 0.1.0\n";
        assert_eq!(
            provenance_file_name(prov).unwrap(),
            "mychart-0.1.0.tgz.prov"
        );
        assert_eq!(provenance_file_name(b""), Err(ChartError::BadProvenance));
        assert_eq!(
            provenance_file_name(b"-----BEGIN PGP SIGNED MESSAGE-----\nname: x\n"),
            Err(ChartError::BadProvenance)
        );
    }

    /// Damaged packages (bytes flipped, cut short or doubled, in the compressed stream and in
    /// the tar inside it) give an error or metadata, never a panic; a bad package in storage
    /// or in an upload must not take the server down. Deterministic: a fixed xorshift seed.
    #[test]
    fn damaged_packages_never_panic() {
        let chart_yaml = "apiVersion: v2\nname: c\nversion: 1.2.3\ndescription: d\n\
            maintainers:\n  - name: m\n    email: m@example.org\ndependencies:\n  - name: x\n    \
            version: ~1\n    repository: https://example.org\nkeywords: [a, b]\n";
        let files = [
            ("c/Chart.yaml", chart_yaml),
            ("c/values.yaml", "replicas: 1\nimage: {tag: latest}\n"),
            ("c/templates/pod.yaml", "kind: Pod\n"),
        ];
        let pkg = package(&files);
        let tar = {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&pkg[..])
                .read_to_end(&mut out)
                .expect("gunzip");
            out
        };
        let gz = |data: &[u8]| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, data).expect("gz");
            enc.finish().expect("gz")
        };
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut parsed = 0;
        for round in 0..3000 {
            let inner = round % 2 == 0;
            let mut data = if inner { tar.clone() } else { pkg.clone() };
            match next() % 4 {
                0 | 1 => {
                    for _ in 0..=next() % 4 {
                        let i = (next() as usize) % data.len();
                        data[i] ^= 1 << (next() % 8);
                    }
                }
                2 => data.truncate((next() as usize) % data.len()),
                _ => {
                    let i = (next() as usize) % data.len();
                    let piece = data[i..].to_vec();
                    data.extend_from_slice(&piece);
                }
            }
            let data = if inner { gz(&data) } else { data };
            if read_metadata(&data).is_ok() {
                parsed += 1;
            }
            let _ = read_files(&data);
        }
        // Some damage misses what matters (padding, other files): the loop did reach the
        // parsers, not only the gzip check.
        assert!(
            parsed > 100,
            "only {parsed} of 3000 damaged packages parsed"
        );
    }

    /// Counts the bytes allocated by the current thread, to check what parsing a package costs.
    mod alloc_count {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        pub struct Counting;

        thread_local! {
            static NOW: Cell<isize> = const { Cell::new(0) };
            static PEAK: Cell<isize> = const { Cell::new(0) };
        }

        fn add(n: isize) {
            let _ = NOW.try_with(|now| {
                let v = now.get() + n;
                now.set(v);
                let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
            });
        }

        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, l: Layout) -> *mut u8 {
                add(l.size() as isize);
                unsafe { System.alloc(l) }
            }
            unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
                add(-(l.size() as isize));
                unsafe { System.dealloc(p, l) }
            }
            unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
                add(new as isize - l.size() as isize);
                unsafe { System.realloc(p, l, new) }
            }
        }

        #[global_allocator]
        static COUNTING: Counting = Counting;

        /// Peak bytes held by this thread while `f` runs, above what it held before.
        pub fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
            let base = NOW.with(Cell::get);
            PEAK.with(|p| p.set(base));
            let out = f();
            let peak = PEAK.with(Cell::get);
            (out, (peak - base).max(0) as usize)
        }
    }

    /// Any generated tar stream (random header types, declared sizes up to 250 MiB, actual
    /// data up to three times the per-file limit, random Chart.yaml and values text), gzip'd or
    /// not, and any byte string: read_metadata, read_files and templates_json give a result or
    /// an error, never a panic, and never hold more memory than the limits allow.
    #[test]
    fn any_package_bounded_memory() {
        use proptest::prelude::*;
        const FILE: u64 = 4096;
        const CHART: u64 = 32 * 1024;
        let limits = Limits {
            max_chart_size: CHART,
            max_file_size: FILE,
        };
        // Decoder state and buffers, plus files kept (at most the chart), plus the answer
        // (at most the chart), plus YAML parsing of a file (at most 128 bytes a byte of text).
        let bound = 256 * 1024 + 2 * CHART as usize + 128 * FILE as usize;
        let header = |name: &str, t: u8, size: u64| {
            let mut b = vec![0u8; 512];
            let n = name.len().min(100);
            b[..n].copy_from_slice(&name.as_bytes()[..n]);
            b[124..136].copy_from_slice(format!("{:011o}\0", size.min(0o77777777777)).as_bytes());
            b[156] = t;
            b[257..263].copy_from_slice(b"ustar\0");
            b[148..156].copy_from_slice(b"        ");
            let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
            b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            b
        };
        let part = (
            prop::sample::select(vec![b'0', 0, b'5', b'L', b'K', b'x', b'g', b'S', b'2']),
            prop::sample::select(vec![
                "c/Chart.yaml",
                "c/values.yaml",
                "c/templates/a.yaml",
                "c/other",
                "x",
            ]),
            prop_oneof![
                0u64..3 * FILE,
                Just(250u64 << 20),
                Just(FILE),
                Just(FILE + 1)
            ],
            0usize..3 * FILE as usize,
            prop_oneof![
                Just(b"name: c\nversion: 1.0.0\n".to_vec()),
                Just(b"a: &a [1,1,1,1,1,1,1,1]\nb: [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n".to_vec()),
                prop::collection::vec(any::<u8>(), 0..64),
            ],
        );
        let strategy = (
            prop::collection::vec(part, 0..8),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..256),
        );
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 300,
            ..ProptestConfig::default()
        });
        runner
            .run(&strategy, |(parts, gzip, noise)| {
                let mut tar = Vec::new();
                for (t, name, declared, actual, text) in parts {
                    tar.extend_from_slice(&header(name, t, declared));
                    let mut data = text.clone();
                    data.resize(actual.max(text.len()), b'9');
                    tar.extend_from_slice(&data);
                    tar.resize(tar.len().div_ceil(512) * 512, 0);
                }
                let data = if gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    std::io::Write::write_all(&mut enc, &tar).expect("gz");
                    enc.finish().expect("gz")
                } else {
                    noise
                };
                let (_, m1) = alloc_count::peak_during(|| read_metadata_with(&data, &limits));
                let (_, m2) = alloc_count::peak_during(|| read_files_with(&data, &limits));
                let (_, m3) = alloc_count::peak_during(|| templates_json(&data, &limits));
                let (_, m4) = alloc_count::peak_during(|| read_values(&data, &limits));
                let worst = m1.max(m2).max(m3).max(m4);
                prop_assert!(worst <= bound, "{worst} bytes held, bound {bound}");
                Ok(())
            })
            .unwrap();
        // The measure itself works: a 250 MiB GNU long name costs nothing, a 3 MiB one under
        // a 4 MiB limit is held whole.
        let mut bomb = header("././@LongLink", b'L', 3 << 20);
        bomb.resize(512 + (3 << 20), b'n');
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &bomb).expect("gz");
        let bomb = enc.finish().expect("gz");
        let (r, m) = alloc_count::peak_during(|| read_metadata_with(&bomb, &limits));
        assert!(matches!(r, Err(ChartError::FileTooLarge { .. })), "{r:?}");
        assert!(m < bound, "{m}");
        let wide = Limits {
            max_chart_size: 8 << 20,
            max_file_size: 4 << 20,
        };
        let (_, m) = alloc_count::peak_during(|| read_metadata_with(&bomb, &wide));
        assert!(m >= 3 << 20, "{m}");
    }
}
