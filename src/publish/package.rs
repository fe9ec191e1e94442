//! STAND-IN: replaced by wt-package at merge.
//!
//! A minimal packager with the interface of the real one, so that `chartroom publish` and its
//! tests run: `Chart.yaml` read with the server's parser, every regular file under the chart
//! directory (symlinks followed, loops and links leaving `walk_root` refused) written as
//! `<name>/<relpath>` in sorted order, fixed modes and owners, gzip without a timestamp.
//! No `.helmignore`, no dependency checks.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::chart::{ChartError, Metadata};

/// How a chart directory is packaged.
#[derive(Debug, Clone, Default)]
pub struct PackageOptions {
    /// Symlinks may not resolve outside this directory (unless allowed).
    pub walk_root: PathBuf,
    /// Follow symlinks that resolve outside `walk_root`.
    pub allow_outside_symlinks: bool,
    /// Modification time of every entry (seconds since the epoch); `None`: the default.
    pub mtime: Option<u64>,
}

/// A packaged chart.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// `<name>-<version>.tgz`.
    pub file_name: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("Chart.yaml: {0}")]
    ChartYaml(#[from] ChartError),
    #[error(
        "{path}: symlink resolves outside {root} (refused; --allow-outside-symlinks allows it)"
    )]
    OutsideSymlink { path: String, root: String },
    #[error("{path}: symlink loop")]
    Loop { path: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Packages the chart in `chart_dir`.
pub fn package_chart(chart_dir: &Path, opts: &PackageOptions) -> Result<Package, PackageError> {
    let chart_yaml = chart_dir.join("Chart.yaml");
    let mut text = Vec::new();
    std::fs::File::open(&chart_yaml)
        .and_then(|f| f.take(1024 * 1024 + 1).read_to_end(&mut text))
        .map_err(io(&chart_yaml))?;
    let md = Metadata::from_yaml(&text)?;
    let root = if opts.walk_root.as_os_str().is_empty() {
        chart_dir.to_path_buf()
    } else {
        opts.walk_root.clone()
    };
    let root = root.canonicalize().map_err(io(&root))?;
    let mut files = Vec::new();
    let start = chart_dir.canonicalize().map_err(io(chart_dir))?;
    collect(
        chart_dir,
        "",
        &root,
        opts,
        &mut vec![start.clone()],
        &mut files,
    )?;
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mtime = opts.mtime.unwrap_or(0);
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (rel, path) in &files {
        let data = std::fs::read(path).map_err(io(path))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("{}/{rel}", md.name), data.as_slice())
            .map_err(io(path))?;
    }
    let gz = tar.into_inner().map_err(io(chart_dir))?;
    let mut bytes = gz.finish().map_err(io(chart_dir))?;
    bytes.flush().map_err(io(chart_dir))?;
    Ok(Package {
        file_name: md.file_name(),
        name: md.name,
        version: md.version,
        bytes,
    })
}

fn collect(
    dir: &Path,
    prefix: &str,
    root: &Path,
    opts: &PackageOptions,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PackageError> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let ft = e.file_type().map_err(io(&path))?;
        let real = if ft.is_symlink() {
            let target = path.canonicalize().map_err(io(&path))?;
            if !opts.allow_outside_symlinks && !target.starts_with(root) {
                return Err(PackageError::OutsideSymlink {
                    path: path.display().to_string(),
                    root: root.display().to_string(),
                });
            }
            target
        } else {
            path.clone()
        };
        let meta = std::fs::metadata(&real).map_err(io(&path))?;
        if meta.is_dir() {
            let canon = real.canonicalize().map_err(io(&path))?;
            if stack.contains(&canon) {
                return Err(PackageError::Loop {
                    path: path.display().to_string(),
                });
            }
            stack.push(canon);
            collect(&path, &rel, root, opts, stack, out)?;
            stack.pop();
        } else if meta.is_file() {
            out.push((rel, real));
        }
    }
    Ok(())
}
