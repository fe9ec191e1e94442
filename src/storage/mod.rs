//! Storage backends: a small trait over object bytes and listings, with no HTTP types in it.
//! Paths are `/`-separated and relative to the backend's root; every segment is checked by
//! [`check_path`] so that nothing can name a place outside that root.

use std::path::PathBuf;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

pub mod azure;
pub mod cached;
pub mod etcd;
pub mod google;
pub mod local;
mod remote;
pub mod s3;
pub mod swift;

pub use remote::RequestStats;

pub use local::LocalStorage;

/// One object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's file name, relative to the listed prefix.
    pub name: String,
    pub size: u64,
    /// Last modification time in nanoseconds since the Unix epoch.
    pub modified_ns: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found: {0}")]
    NotFound(String),
    #[error("object already exists: {0}")]
    AlreadyExists(String),
    #[error("invalid object path: {0:?}")]
    InvalidPath(String),
    #[error("storage error on {path}: {message}")]
    Io { path: String, message: String },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The object is larger than the store takes in one write (etcd's request size limit).
    #[error("object too large for the store: {0}")]
    TooLarge(String),
}

impl StorageError {
    pub fn io(path: &str, err: impl std::fmt::Display) -> StorageError {
        StorageError::Io {
            path: path.to_string(),
            message: err.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// A secret given directly or as a file that is read whenever it is needed (so it can be
/// rotated).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Value(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("Secret(<redacted>)"),
            Secret::File(p) => write!(f, "Secret(file {})", p.display()),
        }
    }
}

impl Secret {
    pub fn read(&self) -> std::result::Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display())),
        }
    }

    /// The file when one is given, else the value (possibly absent).
    pub fn pick(file: &str, value: Option<String>) -> Option<Secret> {
        if !file.is_empty() {
            Some(Secret::File(PathBuf::from(file)))
        } else {
            value.map(Secret::Value)
        }
    }
}

/// The bytes of an object as they arrive. An `Err` item means the transfer broke off (or the
/// bytes did not match their checksum): the consumer must not treat what it got as complete.
/// `Sync` so that it fits a boxed HTTP body (`api::Body`) as it is.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + Sync>>;

/// An object being read: its size, known before the first byte, and its bytes.
pub struct ObjectStream {
    pub size: u64,
    pub stream: ByteStream,
}

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short human description (`local:/var/lib/chartroom`), for logs and `/health`.
    fn describe(&self) -> String;

    /// Objects directly under `prefix` (not in deeper "directories"). A prefix that does not
    /// exist lists as empty.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    async fn get(&self, path: &str) -> Result<Bytes>;

    /// Reads an object without holding all of it in memory, for sending it on to a client.
    /// The default reads it whole with [`Storage::get`].
    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let data = self.get(path).await?;
        Ok(ObjectStream {
            size: data.len() as u64,
            stream: Box::pin(futures_util::stream::once(async move { Ok(data) })),
        })
    }

    /// Size and modification time of one object, as [`Storage::list`] would show them. The
    /// default lists the object's directory.
    async fn stat(&self, path: &str) -> Result<ObjectMeta> {
        check_path(path)?;
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (d, n),
            None => ("", path),
        };
        self.list(dir)
            .await?
            .into_iter()
            .find(|o| o.name == name)
            .ok_or_else(|| StorageError::NotFound(path.to_string()))
    }

    /// Creates or replaces the object atomically: readers see the old bytes or the new bytes,
    /// never a part.
    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta>;

    /// Creates the object only if no object has that path, atomically: of two concurrent calls
    /// exactly one succeeds and the other gets [`StorageError::AlreadyExists`].
    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta>;

    /// Removes an object; [`StorageError::NotFound`] when there is none.
    async fn delete(&self, path: &str) -> Result<()>;

    /// Checks that the backend is usable (its root can be listed).
    async fn check(&self) -> Result<()>;

    /// What is wrong right now, for `/health`: the error of the last call that failed because
    /// the service could not be reached, until a call succeeds again. The default (for
    /// backends without a remote service) is `None`.
    fn problem(&self) -> Option<String> {
        None
    }

    /// The file holding object `path`, for a backend on the local file system, so that bulk
    /// readers (indexing) read it in the blocking task that parses it; `None` for the others.
    fn local_file(&self, _path: &str) -> Option<PathBuf> {
        None
    }

    /// Counts of HTTP requests sent, retries included, for backends that talk to a service
    /// (metrics); `None` for the others.
    fn request_stats(&self) -> Option<RequestStats> {
        None
    }
}

/// Validates a relative object path: non-empty `/`-separated segments, none of them `.` or
/// `..`, no backslashes or control characters.
pub fn check_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && !seg.contains('\\')
                && !seg.chars().any(|c| c.is_control())
        });
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidPath(path.to_string()))
    }
}

/// Joins a tenant prefix (possibly empty) and a file name.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape() {
        assert!(check_path("a.tgz").is_ok());
        assert!(check_path("org/repo/a.tgz").is_ok());
        for bad in [
            "", "../a", "a/../b", "/a", "a//b", "./a", "a\\b", "a\0b", "a/",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
