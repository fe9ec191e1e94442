//! Walking a chart directory as Helm's directory loader does (`internal/sympath` plus the
//! loader's checks), with a guard on where symlinks may lead and loop detection.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::load::File;
use super::{MAX_CHART_SIZE, MAX_DEPTH, MAX_FILE_SIZE, MAX_FILES, PackageError};
use crate::publish::helmignore::Rules;

pub enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

/// Reads a file (following symlinks), refusing more than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let f = std::fs::File::open(path).map_err(ReadError::Io)?;
    let size = f.metadata().map_err(ReadError::Io)?.len();
    if size > limit {
        return Err(ReadError::TooLarge(size));
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(ReadError::Io)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge(buf.len() as u64));
    }
    Ok(buf)
}

struct Walker<'a> {
    top: &'a Path,
    root: PathBuf,
    allow_outside: bool,
    rules: Rules,
    files: Vec<File>,
    total: u64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackageError + '_ {
    move |source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The files of the chart at `top` (absolute), in Helm's order, `.helmignore` applied.
pub fn walk(top: &Path, root: &Path, allow_outside: bool) -> Result<Vec<File>, PackageError> {
    let root = std::fs::canonicalize(root).map_err(io_err(root))?;
    let top_real = std::fs::canonicalize(top).map_err(io_err(top))?;
    if !allow_outside && !top_real.starts_with(&root) {
        return Err(PackageError::SymlinkOutside {
            link: top.to_path_buf(),
            target: top_real,
            root,
        });
    }
    let ignore_file = top.join(".helmignore");
    let rules = match std::fs::metadata(&ignore_file) {
        Ok(_) => {
            if let Ok(real) = std::fs::canonicalize(&ignore_file) {
                if !allow_outside && !real.starts_with(&root) {
                    return Err(PackageError::SymlinkOutside {
                        link: ignore_file,
                        target: real,
                        root,
                    });
                }
            }
            let data = match read_bounded(&ignore_file, MAX_FILE_SIZE) {
                Ok(d) => d,
                Err(ReadError::Io(e)) => return Err(io_err(&ignore_file)(e)),
                Err(ReadError::TooLarge(size)) => {
                    return Err(PackageError::FileTooLarge {
                        path: ignore_file,
                        size,
                        limit: MAX_FILE_SIZE,
                    });
                }
            };
            Rules::parse(&data).map_err(|source| PackageError::Ignore {
                file: ignore_file.clone(),
                source,
            })?
        }
        Err(_) => Rules::default(),
    }
    .with_defaults();
    let top_meta = std::fs::metadata(top).map_err(io_err(top))?;
    let mut w = Walker {
        top,
        root,
        allow_outside,
        rules,
        files: Vec::new(),
        total: 0,
    };
    let mut ancestors = vec![(top_meta.dev(), top_meta.ino())];
    w.dir(top, "", &mut ancestors)?;
    Ok(w.files)
}

impl Walker<'_> {
    fn dir(
        &mut self,
        dir: &Path,
        rel: &str,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> Result<(), PackageError> {
        if ancestors.len() > MAX_DEPTH {
            return Err(PackageError::TooDeep {
                path: dir.to_path_buf(),
                limit: MAX_DEPTH,
            });
        }
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            names.push(entry.file_name());
            if names.len() > MAX_FILES {
                return Err(PackageError::TooManyFiles {
                    dir: self.top.to_path_buf(),
                    limit: MAX_FILES,
                });
            }
        }
        names.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_bytes().cmp(b.as_bytes())
        });
        for name in names {
            let path = dir.join(&name);
            let Some(name) = name.to_str() else {
                return Err(PackageError::NonUtf8Name { path });
            };
            let rel_n = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            let lmeta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
            let mut target = None;
            let meta = if lmeta.file_type().is_symlink() {
                // As Helm: a link that cannot be resolved is an error, ignored or not.
                let real =
                    std::fs::canonicalize(&path).map_err(|source| PackageError::BrokenSymlink {
                        link: path.clone(),
                        source,
                    })?;
                let m = std::fs::metadata(&real).map_err(|source| PackageError::BrokenSymlink {
                    link: path.clone(),
                    source,
                })?;
                target = Some(real);
                m
            } else {
                lmeta
            };
            let is_dir = meta.is_dir();
            if self.rules.ignore(&rel_n, is_dir) {
                continue;
            }
            if let Some(real) = &target {
                if !self.allow_outside && !real.starts_with(&self.root) {
                    return Err(PackageError::SymlinkOutside {
                        link: path,
                        target: real.clone(),
                        root: self.root.clone(),
                    });
                }
            }
            if is_dir {
                let id = (meta.dev(), meta.ino());
                if ancestors.contains(&id) {
                    return Err(PackageError::SymlinkLoop {
                        target: target.unwrap_or_else(|| path.clone()),
                        link: path,
                    });
                }
                ancestors.push(id);
                self.dir(&path, &rel_n, ancestors)?;
                ancestors.pop();
                continue;
            }
            if !meta.is_file() {
                return Err(PackageError::Irregular { path });
            }
            if meta.len() > MAX_FILE_SIZE {
                return Err(PackageError::FileTooLarge {
                    path,
                    size: meta.len(),
                    limit: MAX_FILE_SIZE,
                });
            }
            if self.files.len() >= MAX_FILES {
                return Err(PackageError::TooManyFiles {
                    dir: self.top.to_path_buf(),
                    limit: MAX_FILES,
                });
            }
            let data = match read_bounded(&path, MAX_FILE_SIZE) {
                Ok(d) => d,
                Err(ReadError::Io(e)) => return Err(io_err(&path)(e)),
                Err(ReadError::TooLarge(size)) => {
                    return Err(PackageError::FileTooLarge {
                        path,
                        size,
                        limit: MAX_FILE_SIZE,
                    });
                }
            };
            self.total += data.len() as u64;
            if self.total > MAX_CHART_SIZE {
                return Err(PackageError::ChartTooLarge {
                    dir: self.top.to_path_buf(),
                    limit: MAX_CHART_SIZE,
                });
            }
            let data = match data.strip_prefix(b"\xEF\xBB\xBF") {
                Some(rest) => rest.to_vec(),
                None => data,
            };
            self.files.push(File { name: rel_n, data });
        }
        Ok(())
    }
}
