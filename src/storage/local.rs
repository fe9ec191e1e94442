//! Local-directory storage. Writes go to a temporary file in a directory of its own under the
//! root ([`TEMP_DIR`]), are synced, and are then renamed (replace) or hard-linked (create only
//! if absent) into place, and the directory that received them is synced: a reader or a crash
//! never sees part of an object, and an object written is on disk when the call returns.
//! Temporary files left by a crash are removed once stale, at start and during listings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectMeta, Result, Storage, StorageError, check_path};

/// The directory under the root that holds temporary files of writes in progress. Listings
/// show files only, so it never appears in one; paths into it are refused.
pub const TEMP_DIR: &str = ".chartroom-tmp";

/// The longest name one path segment may have, in bytes (`NAME_MAX` of common file systems).
pub const NAME_MAX: usize = 255;

/// A temporary file older than this is left over from a crash and is removed. Writes keep
/// their temporary file for the time it takes to write and sync it once the whole body is in
/// memory: seconds at most.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// How often listings (refreshes) look for stale temporary files in [`TEMP_DIR`].
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// How deep the sweep at start looks for temporary files of earlier versions.
const SWEEP_DEPTH: usize = 16;

pub struct LocalStorage {
    root: PathBuf,
    last_sweep: Mutex<Instant>,
}

impl LocalStorage {
    /// Uses `root` (made absolute) as the storage root; it is created when missing. Stale
    /// temporary files (of writes a crash interrupted) are removed.
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
        // The temporary directory is made by the first write: a root that is only read (or
        // read-only) stays as it is.
        let removed = sweep_temp_dir(&root.join(TEMP_DIR)) + sweep_legacy(&root, SWEEP_DEPTH);
        if removed > 0 {
            info!("removed stale temporary files of interrupted uploads",
                "storage" => &display, "files" => removed);
        }
        Ok(LocalStorage {
            root,
            last_sweep: Mutex::new(Instant::now()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &str) -> Result<PathBuf> {
        check_path(path)?;
        let temp = path.split('/').next() == Some(TEMP_DIR);
        if temp || path.split('/').any(|s| s.len() > NAME_MAX) {
            return Err(StorageError::InvalidPath(path.to_string()));
        }
        Ok(self.root.join(path))
    }

    /// True (and the clock reset) when the temporary directory is due for a sweep.
    fn sweep_due(&self) -> bool {
        let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= SWEEP_EVERY {
            *last = Instant::now();
            true
        } else {
            false
        }
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

/// An I/O error on `path`: a name the file system finds too long is an invalid path (a 400),
/// not a storage failure.
fn io_err(path: &str, e: std::io::Error) -> StorageError {
    if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
        StorageError::InvalidPath(path.to_string())
    } else {
        StorageError::io(path, e)
    }
}

fn not_found_or(path: &str, e: std::io::Error) -> StorageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound(path.to_string())
    } else {
        io_err(path, e)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Unavailable(format!("worker thread failed: {e}")))?
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, syncing each parent that got a new entry.
fn create_dir_durably(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    create_dir_durably(parent)?;
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A temporary file of this storage with its handle (open for writing).
struct Temp {
    path: PathBuf,
    file: std::fs::File,
}

impl Temp {
    /// Writes `data` to a new temporary file in `root`'s [`TEMP_DIR`] and syncs it. Its name
    /// is short and fixed in length, whatever the final name.
    fn write(root: &Path, data: &[u8]) -> std::io::Result<Temp> {
        let dir = root.join(TEMP_DIR);
        let path = dir.join(format!("{:016x}.tmp", rand::random::<u64>()));
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        };
        // The directory exists after the first write (unless someone removed it since).
        let mut file = match open() {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir_durably(&dir)?;
                open()?
            }
            other => other?,
        };
        let res = file.write_all(data).and_then(|_| file.sync_data());
        if let Err(e) = res {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Temp { path, file })
    }

    /// Runs `place` (a rename or link into `target`); when `target`'s directory is missing it
    /// is created (durably) and `place` tried again. Then syncs `target`'s directory.
    fn place(
        &self,
        target: &Path,
        place: impl Fn(&Path, &Path) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let dir = target.parent().unwrap_or(Path::new("/"));
        match place(&self.path, target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_dir_durably(dir)?;
                place(&self.path, target)?;
            }
            other => other?,
        }
        sync_dir(dir)
    }
}

/// True for the name of a temporary file as earlier versions wrote them, beside their target:
/// `.<name>.tmp-<16 hex digits>`.
pub fn is_legacy_temp_name(name: &str) -> bool {
    match name.rsplit_once(".tmp-") {
        Some((head, hex)) => {
            head.len() > 1
                && head.starts_with('.')
                && hex.len() == 16
                && hex.bytes().all(|b| b.is_ascii_hexdigit())
        }
        None => false,
    }
}

/// True when the file `md` describes was last modified more than [`STALE_AFTER`] ago.
fn is_stale(md: &std::fs::Metadata) -> bool {
    md.modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

/// Removes the stale files of the temporary directory; returns how many.
fn sweep_temp_dir(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for ent in rd.flatten() {
        let stale = ent.metadata().is_ok_and(|md| md.is_file() && is_stale(&md));
        if stale && std::fs::remove_file(ent.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Removes stale temporary files of earlier versions ([`is_legacy_temp_name`]) from `dir` and
/// the directories below it (symbolic links are not followed); returns how many.
fn sweep_legacy(dir: &Path, depth: usize) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for ent in rd.flatten() {
        let Ok(ft) = ent.file_type() else { continue };
        let name = ent.file_name();
        if ft.is_dir() {
            if depth > 0 && name != TEMP_DIR {
                removed += sweep_legacy(&ent.path(), depth - 1);
            }
        } else if ft.is_file()
            && name.to_str().is_some_and(is_legacy_temp_name)
            && ent.metadata().is_ok_and(|md| is_stale(&md))
            && std::fs::remove_file(ent.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
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
        let temp_dir = self.sweep_due().then(|| self.root.join(TEMP_DIR));
        let prefix = prefix.to_string();
        blocking(move || {
            if let Some(t) = temp_dir {
                let n = sweep_temp_dir(&t);
                if n > 0 {
                    info!("removed stale temporary files of interrupted uploads", "files" => n);
                }
            }
            let rd = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(io_err(&prefix, e)),
            };
            let mut out = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|e| io_err(&prefix, e))?;
                let name = match ent.file_name().into_string() {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let md = match ent.metadata() {
                    Ok(md) => md,
                    // Removed between readdir and stat: simply not there any more.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&prefix, e)),
                };
                if !md.is_file() {
                    continue;
                }
                // Temporary files of earlier versions, written beside their target, are not
                // objects; once stale they are removed.
                if is_legacy_temp_name(&name) {
                    if is_stale(&md) {
                        let _ = std::fs::remove_file(ent.path());
                    }
                    continue;
                }
                out.push(meta_of(name, &md));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    fn local_file(&self, path: &str) -> Option<PathBuf> {
        self.full(path).ok()
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
        let root = self.root.clone();
        let path = path.to_string();
        blocking(move || {
            let tmp = Temp::write(&root, &data).map_err(|e| io_err(&path, e))?;
            if let Err(e) = tmp.place(&full, |from, to| std::fs::rename(from, to)) {
                let _ = std::fs::remove_file(&tmp.path);
                return Err(io_err(&path, e));
            }
            // The handle's inode is the object's, whatever happened to the name meanwhile.
            let md = tmp.file.metadata().map_err(|e| io_err(&path, e))?;
            Ok(meta_of(file_name(&path), &md))
        })
        .await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        let full = self.full(path)?;
        let root = self.root.clone();
        let path = path.to_string();
        blocking(move || {
            if full.exists() {
                return Err(StorageError::AlreadyExists(path));
            }
            let tmp = Temp::write(&root, &data).map_err(|e| io_err(&path, e))?;
            // A hard link fails with EEXIST when the target exists: the kernel decides which of
            // two concurrent writers wins.
            let linked = tmp.place(&full, |from, to| std::fs::hard_link(from, to));
            let _ = std::fs::remove_file(&tmp.path);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(StorageError::AlreadyExists(path));
                }
                Err(e) => return Err(io_err(&path, e)),
            }
            // Not a stat of the name: a delete may already have removed it again.
            let md = tmp.file.metadata().map_err(|e| io_err(&path, e))?;
            Ok(meta_of(file_name(&path), &md))
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.full(path)?;
        let path = path.to_string();
        blocking(move || {
            std::fs::remove_file(&full).map_err(|e| not_found_or(&path, e))?;
            if let Some(dir) = full.parent() {
                sync_dir(dir).map_err(|e| io_err(&path, e))?;
            }
            Ok(())
        })
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn age(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .unwrap();
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"partial").unwrap();
    }

    #[tokio::test]
    async fn longest_names_are_stored_and_longer_ones_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path()).unwrap();
        // The issue's case: a 230-character chart name, a 240-byte file name.
        for len in [240, NAME_MAX] {
            let name = format!("{}.tgz", "n".repeat(len - 4));
            s.put_if_absent(&name, Bytes::from_static(b"x"))
                .await
                .unwrap();
            s.put(&name, Bytes::from_static(b"y")).await.unwrap();
            assert_eq!(s.get(&name).await.unwrap(), "y");
            let org = format!("org/{name}");
            s.put_if_absent(&org, Bytes::from_static(b"x"))
                .await
                .unwrap();
        }
        let too_long = format!("{}.tgz", "n".repeat(NAME_MAX - 3));
        for p in [
            too_long.clone(),
            format!("org/{too_long}"),
            format!("{}/a.tgz", "d".repeat(256)),
        ] {
            let data = Bytes::from_static(b"x");
            assert!(matches!(
                s.put(&p, data.clone()).await,
                Err(StorageError::InvalidPath(_))
            ));
            assert!(matches!(
                s.put_if_absent(&p, data).await,
                Err(StorageError::InvalidPath(_))
            ));
            assert!(matches!(s.get(&p).await, Err(StorageError::InvalidPath(_))));
            assert!(matches!(
                s.delete(&p).await,
                Err(StorageError::InvalidPath(_))
            ));
        }
        // A name the file system finds too long is an invalid path, not a storage failure.
        let e = std::io::Error::from_raw_os_error(libc::ENAMETOOLONG);
        assert!(matches!(io_err("p", e), StorageError::InvalidPath(_)));
        // Nothing was left behind in the temporary directory.
        assert_eq!(
            std::fs::read_dir(dir.path().join(TEMP_DIR))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn dot_names_are_listed_and_temporary_files_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path()).unwrap();
        s.put(".hid-1.0.0.tgz", Bytes::from_static(b"x"))
            .await
            .unwrap();
        s.put("a-1.0.0.tgz", Bytes::from_static(b"x"))
            .await
            .unwrap();
        touch(&dir.path().join(TEMP_DIR).join("0123456789abcdef.tmp"));
        touch(&dir.path().join(".a-1.0.0.tgz.tmp-0123456789abcdef"));
        let names: Vec<String> = s
            .list("")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, [".hid-1.0.0.tgz", "a-1.0.0.tgz"]);
        // The temporary directory cannot be named as a repository or an object.
        for p in [
            TEMP_DIR.to_string(),
            format!("{TEMP_DIR}/0123456789abcdef.tmp"),
        ] {
            assert!(matches!(
                s.list(&p).await,
                Err(StorageError::InvalidPath(_))
            ));
            assert!(matches!(s.get(&p).await, Err(StorageError::InvalidPath(_))));
            assert!(matches!(
                s.delete(&p).await,
                Err(StorageError::InvalidPath(_))
            ));
        }
    }

    #[tokio::test]
    async fn stale_temporary_files_are_removed_at_start_and_by_listings() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let stale = STALE_AFTER.as_secs() + 60;
        let old_tmp = root.join(TEMP_DIR).join("00000000000000aa.tmp");
        let new_tmp = root.join(TEMP_DIR).join("00000000000000bb.tmp");
        let old_legacy = root.join(".c-1.0.0.tgz.tmp-00000000000000aa");
        let old_legacy_deep = root.join("org/team/.c-1.0.0.tgz.tmp-00000000000000aa");
        let new_legacy = root.join("org/.c-1.0.0.tgz.tmp-00000000000000bb");
        let chart = root.join("org/.c-1.0.0.tgz");
        for p in [
            &old_tmp,
            &new_tmp,
            &old_legacy,
            &old_legacy_deep,
            &new_legacy,
            &chart,
        ] {
            touch(p);
        }
        for p in [&old_tmp, &old_legacy, &old_legacy_deep, &chart] {
            age(p, stale);
        }
        let s = LocalStorage::new(root).unwrap();
        for p in [&old_tmp, &old_legacy, &old_legacy_deep] {
            assert!(!p.exists(), "{} stayed", p.display());
        }
        // Fresh ones may belong to a write in progress; objects are never touched.
        for p in [&new_tmp, &new_legacy, &chart] {
            assert!(p.exists(), "{} removed", p.display());
        }
        // Later, listings (refreshes) remove them once stale.
        age(&new_tmp, stale);
        age(&new_legacy, stale);
        let names: Vec<String> = s
            .list("org")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, [".c-1.0.0.tgz"]);
        assert!(!new_legacy.exists());
        assert!(
            new_tmp.exists(),
            "the temporary directory is swept at most once a minute"
        );
        *s.last_sweep.lock().unwrap() = Instant::now() - SWEEP_EVERY;
        s.list("").await.unwrap();
        assert!(!new_tmp.exists());
        assert!(chart.exists());
    }

    #[test]
    fn legacy_temporary_names() {
        assert!(is_legacy_temp_name(".a-1.0.0.tgz.tmp-0123456789abcdef"));
        assert!(is_legacy_temp_name(
            ".a-1.0.0.tgz.prov.tmp-0123456789ABCDEF"
        ));
        for n in [
            "a-1.0.0.tgz.tmp-0123456789abcdef",
            ".tmp-0123456789abcdef",
            ".a.tmp-0123456789abcde",
            ".a.tmp-0123456789abcdefg",
            ".a.tmp-0123456789abcdeg",
        ] {
            assert!(!is_legacy_temp_name(n), "{n}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// No chart or provenance file name is ever taken for a temporary file.
        #[test]
        fn objects_are_never_temporary(name in "\\PC{0,40}", prov in any::<bool>()) {
            let file = if prov { format!("{name}.tgz.prov") } else { format!("{name}.tgz") };
            prop_assert!(!is_legacy_temp_name(&file));
        }

        /// Any path: an error, or a place under the root outside the temporary directory
        /// with segments no longer than `NAME_MAX`.
        #[test]
        fn paths_stay_in_the_root(path in "[a-z./\\\\\\x00-\\x1f\u{e9}-]{0,300}") {
            let s = LocalStorage { root: PathBuf::from("/r"), last_sweep: Mutex::new(Instant::now()) };
            if let Ok(p) = s.full(&path) {
                prop_assert!(p.starts_with("/r"));
                prop_assert!(!p.starts_with(Path::new("/r").join(TEMP_DIR)));
                prop_assert!(p.components().all(|c| c.as_os_str().len() <= NAME_MAX));
                prop_assert!(!p.components().any(|c| matches!(c, std::path::Component::ParentDir)));
            }
        }
    }
}
