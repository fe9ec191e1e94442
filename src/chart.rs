//! Reading Helm chart packages (`.tgz`) and provenance files. Name and version always come
//! from the package's own `Chart.yaml`, validated as Helm validates it.

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::version::Version;

/// How much a package may decompress to before it is refused (zip-bomb guard).
const MAX_UNPACKED: u64 = 256 * 1024 * 1024;
/// Largest `Chart.yaml` we read.
const MAX_CHART_YAML: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChartError {
    #[error("chart package is empty")]
    Empty,
    #[error("chart package is not gzip-compressed")]
    NotGzip,
    #[error("chart package is not a valid tar archive: {0}")]
    BadTar(String),
    #[error("chart package unpacks to more than {MAX_UNPACKED} bytes")]
    TooLarge,
    #[error("Chart.yaml file is missing")]
    NoChartYaml,
    #[error("cannot parse Chart.yaml: {0}")]
    BadChartYaml(String),
    #[error("validation: {0}")]
    Invalid(String),
    #[error("invalid provenance file")]
    BadProvenance,
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
/// whose path `want` accepts. Paths are relative to the chart's top-level directory.
fn walk_package(
    data: &[u8],
    mut want: impl FnMut(&str) -> bool,
    mut visit: impl FnMut(&str, Vec<u8>) -> Result<(), ChartError>,
) -> Result<(), ChartError> {
    if data.is_empty() {
        return Err(ChartError::Empty);
    }
    if data.len() < 2 || data[0] != 0x1f || data[1] != 0x8b {
        return Err(ChartError::NotGzip);
    }
    let gz = flate2::read::GzDecoder::new(data).take(MAX_UNPACKED + 1);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| ChartError::BadTar(e.to_string()))?;
    let mut total: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| ChartError::BadTar(e.to_string()))?;
        total = total.saturating_add(entry.size());
        if total > MAX_UNPACKED {
            return Err(ChartError::TooLarge);
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            continue;
        }
        let path = match entry.path() {
            Ok(p) => p.to_string_lossy().replace('\\', "/"),
            Err(e) => return Err(ChartError::BadTar(e.to_string())),
        };
        let inner = match path.trim_start_matches("./").split_once('/') {
            Some((_, rest)) => rest.to_string(),
            None => continue,
        };
        if !want(&inner) {
            continue;
        }
        let limit = if inner == "Chart.yaml" {
            MAX_CHART_YAML
        } else {
            MAX_UNPACKED
        };
        let mut buf = Vec::with_capacity(entry.size().min(limit) as usize);
        (&mut entry)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| ChartError::BadTar(e.to_string()))?;
        if buf.len() as u64 > limit {
            return Err(ChartError::TooLarge);
        }
        visit(&inner, buf)?;
    }
    if total > MAX_UNPACKED {
        return Err(ChartError::TooLarge);
    }
    Ok(())
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

/// Reads and validates a package's `Chart.yaml`.
pub fn read_metadata(data: &[u8]) -> Result<Metadata, ChartError> {
    let mut found: Option<Vec<u8>> = None;
    walk_package(
        data,
        |p| p == "Chart.yaml",
        |_, bytes| {
            if found.is_none() {
                found = Some(bytes);
            }
            Ok(())
        },
    )?;
    let bytes = found.ok_or(ChartError::NoChartYaml)?;
    Metadata::from_yaml(&bytes)
}

/// The files the API's `/templates` and `/values` routes show.
pub struct ChartFiles {
    pub templates: Vec<(String, Vec<u8>)>,
    pub values: Option<Vec<u8>>,
}

pub fn read_files(data: &[u8]) -> Result<ChartFiles, ChartError> {
    let mut files = ChartFiles {
        templates: Vec::new(),
        values: None,
    };
    let mut saw_chart_yaml = false;
    walk_package(
        data,
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
}
