//! Packaging a chart directory as `helm package DIR` does, deterministically.
//!
//! What Helm does, and so what this does (Helm 4's `pkg/chart/loader`, `pkg/ignore`,
//! `internal/sympath`, `pkg/chart/v2/util/save.go`, `pkg/action/package.go`):
//! - the directory is walked in lexical order (each directory's names sorted bytewise), with
//!   `.helmignore` (see [`crate::publish::helmignore`]); symlinks are followed (the link's
//!   own path is the file's name); a leading UTF-8 byte-order mark is dropped from every file;
//!   an irregular file (device, socket, FIFO) that is not ignored is refused, and so is a file
//!   over 5 MiB (Helm's `MaxDecompressedFileSize`);
//! - `Chart.yaml` is read and validated (name, SemVer version, type, dependency aliases;
//!   free-text fields sanitised: white space becomes a space, unprintable characters go), and
//!   written back re-serialised from the metadata (sorted keys, go-yaml v2's layout: see
//!   `emit`), not copied; a `v1` chart's dependencies (from `requirements.yaml`) are left out
//!   of it;
//! - `Chart.lock` is re-serialised too (apiVersion v2 only; a v1 chart's is dropped, its
//!   `requirements.yaml`/`requirements.lock` kept as files); `values.yaml` must parse (each
//!   document a mapping) and is copied; `values.schema.json` must be valid JSON;
//! - the archive holds `<name>/Chart.yaml`, `Chart.lock`, `values.yaml`,
//!   `values.schema.json`, then the templates and the other files in walk order, then each
//!   dependency, written unpacked as `<name>/charts/<dependency name>/...` whether it came as
//!   a `.tgz` or as a directory in `charts/` (Helm's order of dependencies is Go's random map
//!   order; here it is sorted by their file name in `charts/`). Entries under `charts/` whose
//!   name starts with `_` or `.` are skipped, `.prov` files there kept as files; anything
//!   else in `charts/` must load as a chart;
//! - a dependency declared in `Chart.yaml` with no chart of that name in `charts/` is refused.
//!
//! Differences, on purpose: a symlink resolving outside `walk_root` is refused unless allowed;
//! a symlink loop is refused at once (Helm goes round until the path is too long); limits on
//! the number of files and their total size; every entry has mode 0644, owner 0/0, no user or
//! group name, the same mtime (see [`PackageOptions::mtime`]); the gzip header has no time,
//! no name, OS 255 and none of Helm's extra field and comment. The member list and contents
//! are Helm's.

mod emit;
mod load;
mod tarball;
mod walk;

use std::path::{Path, PathBuf};

pub use emit::{Node, key_order, to_yaml};

/// Fixed mtime of every entry when neither the options nor `SOURCE_DATE_EPOCH` give one:
/// 1980-01-01T00:00:00Z (the earliest time every archive format can hold).
pub const DEFAULT_MTIME: u64 = 315_532_800;
/// Largest file Helm loads from a chart (`MaxDecompressedFileSize`).
pub const MAX_FILE_SIZE: u64 = crate::chart::DEFAULT_MAX_FILE_SIZE;
/// Most bytes of file data one package may hold (Helm's `MaxDecompressedChartSize`, which
/// any Helm that loads the package applies).
pub const MAX_CHART_SIZE: u64 = crate::chart::DEFAULT_MAX_CHART_SIZE;
/// Most files one chart directory (with its dependencies) may hold.
pub const MAX_FILES: usize = 20_000;
/// Deepest directory nesting walked.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Default)]
pub struct PackageOptions {
    /// Symlinks that resolve outside this directory are refused unless `allow_outside_symlinks`.
    /// Empty = the chart directory itself.
    pub walk_root: PathBuf,
    pub allow_outside_symlinks: bool,
    /// mtime for every tar entry, seconds since the epoch. None = SOURCE_DATE_EPOCH from the
    /// environment if set and valid, else [`DEFAULT_MTIME`].
    pub mtime: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `<name>-<version>.tgz`
    pub file_name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to detect chart at {}: no Chart.yaml", .dir.display())]
    NoChart { dir: PathBuf },
    #[error("{file}: cannot load Chart.yaml: {message}")]
    ChartYaml { file: String, message: String },
    #[error("{file}: unsupported chart apiVersion {version:?} (helm package takes v1 and v2)")]
    ApiVersion { file: String, version: String },
    #[error("chart {chart}: validation: {message}")]
    Invalid { chart: String, message: String },
    #[error("{file}: cannot load {what}: {message}")]
    BadFile {
        file: String,
        what: &'static str,
        message: String,
    },
    #[error("{file}: {source}")]
    Ignore {
        file: PathBuf,
        source: crate::publish::helmignore::IgnoreError,
    },
    #[error(
        "{}: symlink resolves to {}, outside {} (allow with allow-outside-symlinks)",
        .link.display(), .target.display(), .root.display()
    )]
    SymlinkOutside {
        link: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("{}: symlink loop (resolves to {}, a directory it is inside)", .link.display(), .target.display())]
    SymlinkLoop { link: PathBuf, target: PathBuf },
    #[error("{}: error evaluating symlink: {source}", .link.display())]
    BrokenSymlink {
        link: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: cannot load irregular file (not a regular file, directory or symlink to one)", .path.display())]
    Irregular { path: PathBuf },
    #[error("{}: chart file is larger than the maximum file size {limit} ({size} bytes)", .path.display())]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}: chart is larger than {limit} bytes in all", .dir.display())]
    ChartTooLarge { dir: PathBuf, limit: u64 },
    #[error("{}: chart has more than {limit} files", .dir.display())]
    TooManyFiles { dir: PathBuf, limit: usize },
    #[error("{}: directories nested deeper than {limit}", .path.display())]
    TooDeep { path: PathBuf, limit: usize },
    #[error("{}: file name is not UTF-8", .path.display())]
    NonUtf8Name { path: PathBuf },
    #[error("{file}: {message}")]
    Archive { file: String, message: String },
    #[error("error unpacking subchart {name} in {parent}: {source}")]
    Subchart {
        name: String,
        parent: String,
        source: Box<PackageError>,
    },
    #[error("chart {chart}: found in Chart.yaml, but missing in charts/ directory: {}", .missing.join(", "))]
    MissingDependencies { chart: String, missing: Vec<String> },
    #[error("writing the package: {0}")]
    Write(String),
}

/// The mtime to stamp on entries: the options', else `SOURCE_DATE_EPOCH` (decimal seconds),
/// else [`DEFAULT_MTIME`].
pub fn entry_mtime(opts: &PackageOptions) -> u64 {
    if let Some(t) = opts.mtime {
        return t;
    }
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(DEFAULT_MTIME)
}

pub fn package_chart(chart_dir: &Path, opts: &PackageOptions) -> Result<Package, PackageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PackageError::Io { path, source }
    };
    let top = std::path::absolute(chart_dir).map_err(io(chart_dir))?;
    let root = if opts.walk_root.as_os_str().is_empty() {
        top.clone()
    } else {
        std::path::absolute(&opts.walk_root).map_err(io(&opts.walk_root))?
    };
    let chart_yaml = top.join("Chart.yaml");
    // Nothing is read from outside the walk root, not even the first look at Chart.yaml.
    if let (Ok(real), Ok(real_root)) = (
        std::fs::canonicalize(&chart_yaml),
        std::fs::canonicalize(&root),
    ) {
        if !opts.allow_outside_symlinks && !real.starts_with(&real_root) {
            return Err(PackageError::SymlinkOutside {
                link: chart_yaml,
                target: real,
                root: real_root,
            });
        }
    }
    let raw = match walk::read_bounded(&chart_yaml, MAX_FILE_SIZE) {
        Ok(b) => b,
        Err(walk::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PackageError::NoChart { dir: top });
        }
        Err(walk::ReadError::Io(e)) => return Err(io(&chart_yaml)(e)),
        Err(walk::ReadError::TooLarge(size)) => {
            return Err(PackageError::FileTooLarge {
                path: chart_yaml,
                size,
                limit: MAX_FILE_SIZE,
            });
        }
    };
    // pkg/chart/loader: v1, v2 and none go to the v2 loader; v3 charts cannot be packaged
    // by `helm package` (the v3 loader's chart is not a v2 chart); others are unsupported.
    let file = chart_yaml.display().to_string();
    let meta = load::parse_metadata(&raw, &file)?;
    let api = meta
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if !matches!(api, "" | "v1" | "v2") {
        return Err(PackageError::ApiVersion {
            file,
            version: api.to_string(),
        });
    }

    let files = walk::walk(&top, &root, opts.allow_outside_symlinks)?;
    let chart = load::load_files(files, &top.display().to_string())?;
    // pkg/action/package.go: the version is SemVer (checked in validation too), and every
    // declared dependency is in charts/.
    let declared = chart.declared_dependencies();
    let missing: Vec<String> = declared
        .iter()
        .filter(|d| !chart.deps.iter().any(|c| &c.name == *d))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(PackageError::MissingDependencies {
            chart: chart.name.clone(),
            missing,
        });
    }
    let bytes = tarball::write(&chart, entry_mtime(opts))?;
    Ok(Package {
        file_name: format!("{}-{}.tgz", chart.name, chart.version),
        name: chart.name,
        version: chart.version,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member_names(bytes: &[u8]) -> Vec<String> {
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        ar.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn helms_order_and_layout() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let w = |p: &str, s: &str| {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("Chart.yaml", "apiVersion: v2\nname: o\nversion: 1.0.0\n");
        w("values.yaml", "\u{feff}a: 1\n");
        w("a/b", "1");
        w("a-c", "2");
        w("templates/t.yaml", "3");
        w("charts/dep/Chart.yaml", "name: dep\nversion: 0.1.0\n");
        w("charts/dep/values.yaml", "");
        let opts = PackageOptions {
            mtime: Some(7),
            ..Default::default()
        };
        let p = package_chart(d, &opts).unwrap();
        assert_eq!((p.name.as_str(), p.version.as_str()), ("o", "1.0.0"));
        // Chart.yaml, values.yaml, templates, other files in walk order (a directory's
        // entries before a sibling that sorts after its name), then the dependency.
        assert_eq!(
            member_names(&p.bytes),
            [
                "o/Chart.yaml",
                "o/values.yaml",
                "o/templates/t.yaml",
                "o/a/b",
                "o/a-c",
                "o/charts/dep/Chart.yaml",
                "o/charts/dep/values.yaml",
            ]
        );
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(p.bytes.as_slice()));
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 7);
            assert_eq!(e.header().mode().unwrap(), 0o644);
        }
        assert_eq!(entry_mtime(&opts), 7);
    }
}
