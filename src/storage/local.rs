//! Local-directory storage. Writes go to a hidden temporary file in the target directory that
//! is then renamed (replace) or hard-linked (create only if absent) into place, so a reader or
//! a crash never sees part of an object.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, Result, Storage, StorageError, check_path};

pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// Uses `root` (made absolute) as the storage root; it is created when missing.
    pub fn new(root: impl AsRef<Path>) -> Result<LocalStorage> {
        let root = root.as_ref();
        let display = root.display().to_string();
        let root = if root.is_absolute() {
            root.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| StorageError::io(&display, e))?
                .join(root)
        };
        std::fs::create_dir_all(&root).map_err(|e| StorageError::io(&display, e))?;
        Ok(LocalStorage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        check_path(path)?;
        Ok(self.root.join(path))
    }
}

fn meta_of(name: String, md: &std::fs::Metadata) -> ObjectMeta {
    let modified_ns = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    ObjectMeta {
        name,
        size: md.len(),
        modified_ns,
    }
}

fn not_found_or(path: &str, e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound(path.to_string())
    } else {
        StorageError::io(path, e)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Unavailable(format!("worker thread failed: {e}")))?
}

/// Writes `data` to a new temporary file beside `target` and syncs it.
fn write_temp(target: &Path, data: &[u8]) -> std::io::Result<PathBuf> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let base = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{base}.tmp-{:016x}", rand::random::<u64>()));
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
    };
    // The directory usually exists: create it only when the first attempt says it does not.
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            open()?
        }
        other => other?,
    };
    let res = f.write_all(data).and_then(|_| f.sync_data());
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

#[async_trait]
impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.full(prefix)?
        };
        let prefix = prefix.to_string();
        blocking(move || {
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(StorageError::io(&prefix, e)),
            };
            let mut out = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| StorageError::io(&prefix, e))?;
                let name = match ent.file_name().into_string() {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                // Temporary files of writes in progress are hidden.
                if name.starts_with('.') {
                    continue;
                }
                let md = match ent.metadata() {
                    Ok(md) => md,
                    // Removed between readdir and stat: simply not there any more.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(&prefix, e)),
                };
                if md.is_file() {
                    out.push(meta_of(name, &md));
                }
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let full = self.full(path)?;
        match tokio::fs::read(&full).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::IsADirectory => {
                Err(StorageError::NotFound(path.to_string()))
            }
            Err(e) => Err(not_found_or(path, e)),
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        let full = self.full(path)?;
        let path = path.to_string();
        blocking(move || {
            let tmp = write_temp(&full, &data).map_err(|e| StorageError::io(&path, e))?;
            if let Err(e) = std::fs::rename(&tmp, &full) {
                let _ = std::fs::remove_file(&tmp);
                return Err(StorageError::io(&path, e));
            }
            let md = std::fs::metadata(&full).map_err(|e| StorageError::io(&path, e))?;
            Ok(meta_of(file_name(&path), &md))
        })
        .await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        let full = self.full(path)?;
        let path = path.to_string();
        blocking(move || {
            if full.exists() {
                return Err(StorageError::AlreadyExists(path));
            }
            let tmp = write_temp(&full, &data).map_err(|e| StorageError::io(&path, e))?;
            // A hard link fails with EEXIST when the target exists: the kernel decides which of
            // two concurrent writers wins.
            let linked = std::fs::hard_link(&tmp, &full);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::AlreadyExists(path));
                }
                Err(e) => return Err(StorageError::io(&path, e)),
            }
            let md = std::fs::metadata(&full).map_err(|e| StorageError::io(&path, e))?;
            Ok(meta_of(file_name(&path), &md))
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        tokio::fs::remove_file(&full)
            .await
            .map_err(|e| not_found_or(path, e))
    }

    async fn check(&self) -> Result<()> {
        let root = self.root.clone();
        let desc = self.describe();
        blocking(move || {
            let md = std::fs::metadata(&root).map_err(|e| StorageError::io(&desc, e))?;
            if !md.is_dir() {
                return Err(StorageError::io(&desc, "not a directory"));
            }
            std::fs::read_dir(&root).map_err(|e| StorageError::io(&desc, e))?;
            Ok(())
        })
        .await
    }
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}
