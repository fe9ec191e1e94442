//! Finding charts: every directory holding a `Chart.yaml` under a path, nested subcharts
//! (`charts/<sub>/Chart.yaml`) included, as helm-chartctl's recursive glob finds them.
//! Symlinked directories are not descended into (the walk never leaves the path and cannot
//! loop); the packager decides about symlinks inside a chart.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::chart::{ChartError, Metadata};

/// Largest `Chart.yaml` read (the server's bound).
const MAX_CHART_YAML: u64 = 1024 * 1024;

/// The result of a walk: chart directories (sorted, depth first) and the directories that
/// could not be read.
#[derive(Debug, Default)]
pub struct Found {
    pub charts: Vec<PathBuf>,
    pub errors: Vec<(PathBuf, std::io::Error)>,
}

/// Every directory under `root` (itself included) that holds a `Chart.yaml`.
pub fn find_charts(root: &Path) -> Result<Found, std::io::Error> {
    let mut found = Found::default();
    // The root itself may be a symlink to a directory.
    if !std::fs::metadata(root)?.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir).and_then(|r| r.collect::<Result<Vec<_>, _>>()) {
            Ok(e) => e,
            Err(e) => {
                found.errors.push((dir, e));
                continue;
            }
        };
        let mut subdirs = Vec::new();
        let mut is_chart = false;
        for e in entries {
            let name = e.file_name();
            let Ok(ft) = e.file_type() else { continue };
            if name == "Chart.yaml" && !ft.is_dir() {
                is_chart = true;
            } else if ft.is_dir() {
                subdirs.push(e.path());
            }
        }
        if is_chart {
            found.charts.push(dir);
        }
        // Sorted, and popped in order.
        subdirs.sort();
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(found)
}

#[derive(Debug, thiserror::Error)]
pub enum ChartYamlError {
    #[error("cannot read Chart.yaml: {0}")]
    Io(#[from] std::io::Error),
    #[error("Chart.yaml is larger than {MAX_CHART_YAML} bytes")]
    TooLarge,
    #[error("Chart.yaml is not a regular file")]
    NotAFile,
    #[error(
        "Chart.yaml is a symlink that resolves outside {root} (refused; \
         --allow-outside-symlinks allows it)"
    )]
    Outside { root: String },
    #[error("{0}")]
    Invalid(#[from] ChartError),
}

/// `Chart.yaml` of a chart directory, read and validated as the server reads it. With
/// `inside`, a symlinked `Chart.yaml` must resolve inside that (canonical) directory. Only a
/// regular file is opened (a symlink to a FIFO would block).
pub fn read_chart_yaml(dir: &Path, inside: Option<&Path>) -> Result<Metadata, ChartYamlError> {
    let path = dir.join("Chart.yaml");
    if let Some(root) = inside {
        if !path.canonicalize()?.starts_with(root) {
            return Err(ChartYamlError::Outside {
                root: root.display().to_string(),
            });
        }
    }
    if !std::fs::metadata(&path)?.is_file() {
        return Err(ChartYamlError::NotAFile);
    }
    let mut text = Vec::new();
    std::fs::File::open(&path)?
        .take(MAX_CHART_YAML + 1)
        .read_to_end(&mut text)?;
    if text.len() as u64 > MAX_CHART_YAML {
        return Err(ChartYamlError::TooLarge);
    }
    Ok(Metadata::from_yaml(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn finds_nested_charts_in_order_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(&r.join("b/Chart.yaml"), "name: b\nversion: 1.0.0\n");
        touch(
            &r.join("b/charts/sub/Chart.yaml"),
            "name: sub\nversion: 1.0.0\n",
        );
        touch(&r.join("a/Chart.yaml"), "name: a\nversion: 1.0.0\n");
        touch(&r.join("x/y/z/Chart.yaml"), "name: z\nversion: 1.0.0\n");
        touch(&r.join("a/templates/x.yaml"), "");
        std::os::unix::fs::symlink(r.join("a"), r.join("c-link")).unwrap();
        std::os::unix::fs::symlink(r, r.join("x/loop")).unwrap();
        let f = find_charts(r).unwrap();
        let rel: Vec<_> = f
            .charts
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        assert_eq!(rel, ["a", "b", "b/charts/sub", "x/y/z"]);
        assert!(f.errors.is_empty());
        // A chart directory given itself.
        assert_eq!(find_charts(&r.join("a")).unwrap().charts, [r.join("a")]);
        assert!(find_charts(&r.join("a/Chart.yaml")).is_err());
        assert!(find_charts(&r.join("missing")).is_err());
    }

    #[test]
    fn chart_yaml_as_the_server_reads_it() {
        let d = tempfile::tempdir().unwrap();
        touch(&d.path().join("Chart.yaml"), "name: a\nversion: 1.0\n");
        let md = read_chart_yaml(d.path(), None).unwrap();
        assert_eq!((md.name.as_str(), md.version.as_str()), ("a", "1"));
        touch(&d.path().join("Chart.yaml"), "name: a\n");
        assert!(read_chart_yaml(d.path(), None).is_err());
        touch(&d.path().join("Chart.yaml"), &"#".repeat(2 << 20));
        assert!(matches!(
            read_chart_yaml(d.path(), None),
            Err(ChartYamlError::TooLarge)
        ));
    }

    #[test]
    fn chart_yaml_symlinks_out_of_the_walk_and_fifos_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        touch(&outside.join("Chart.yaml"), "name: o\nversion: 1.0.0\n");
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("c")).unwrap();
        std::os::unix::fs::symlink(outside.join("Chart.yaml"), root.join("c/Chart.yaml")).unwrap();
        let canon = root.canonicalize().unwrap();
        assert!(matches!(
            read_chart_yaml(&root.join("c"), Some(&canon)),
            Err(ChartYamlError::Outside { .. })
        ));
        assert_eq!(read_chart_yaml(&root.join("c"), None).unwrap().name, "o");
        // A FIFO is refused without being opened (opening it would block).
        let fifo = root.join("f");
        std::fs::create_dir_all(&fifo).unwrap();
        let c = std::ffi::CString::new(fifo.join("Chart.yaml").to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(matches!(
            read_chart_yaml(&fifo, Some(&canon)),
            Err(ChartYamlError::NotAFile)
        ));
    }
}
