//! Storage backends: a small trait over object bytes and listings, with no HTTP types in it.
//! Paths are `/`-separated and relative to the backend's root; every segment is checked by
//! [`check_path`] so that nothing can name a place outside that root.

use async_trait::async_trait;
use bytes::Bytes;

pub mod local;

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

#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short human description (`local:/var/lib/chartroom`), for logs and `/health`.
    fn describe(&self) -> String;

    /// Objects directly under `prefix` (not in deeper "directories"). A prefix that does not
    /// exist lists as empty.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    async fn get(&self, path: &str) -> Result<Bytes>;

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
