//! `chartroom publish`: packages charts from a directory (a git checkout) and uploads the
//! versions a repository does not have yet, over ChartMuseum's API, as helm-chartctl does:
//!
//! * `walk PATH REPOSITORY`: one `GET /api/<repo>/charts`; every `Chart.yaml` under PATH
//!   (nested subcharts included) is read with the server's parser, and only the name+version
//!   pairs missing from that answer are packaged and uploaded.
//! * `push PATH REPOSITORY`: packages and uploads one chart directory.
//! * `upload TGZ REPOSITORY`: uploads an existing package.
//!
//! Each upload is a `POST /api/<repo>/charts` with the package as multipart field `chart`:
//! 201 is "uploaded", 409 "already present" (not an error), anything else an error. A failure
//! on one chart does not stop the others. The run ends with the summary line
//! `N charts found, M already present, K uploaded, E errors`; the exit status is 0 without
//! errors, 2 when a repository request or a chart (its `Chart.yaml`, its packaging) failed, 1
//! for any other failure (an unreadable PATH or TGZ).

pub mod cli;
pub mod client;
pub mod helmignore;
pub mod listing;
pub mod package;
pub mod walk;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use client::{Client, ClientOptions, Uploaded};
use package::{PackageOptions, package_chart};

/// Largest package file `upload` reads.
const MAX_TGZ_BYTES: u64 = 1024 * 1024 * 1024;
/// Uploads of one walk in flight at once (packaging goes on meanwhile).
pub const UPLOADS_AT_ONCE: usize = 4;

/// What to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Walk(PathBuf),
    Push(PathBuf),
    Upload(PathBuf),
}

/// How much is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors only (stderr); no summary.
    Silent,
    /// Uploads, errors and the summary.
    Normal,
    /// Also every chart found, every request.
    Debug,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub action: Action,
    /// Repository path (`stable`, `org/team`); empty for depth 0.
    pub repository: String,
    pub client: ClientOptions,
    pub verbosity: Verbosity,
    pub dry_run: bool,
    pub allow_outside_symlinks: bool,
}

/// What failed, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Failure {
    #[default]
    None,
    /// Exit 1.
    Other,
    /// Exit 2: the repository (a request) or a chart (reading, packaging).
    RepositoryOrChart,
}

/// The counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub found: usize,
    pub present: usize,
    pub uploaded: usize,
    pub errors: usize,
    /// Dry run: what would have been uploaded.
    pub would_upload: usize,
    pub failure: Failure,
    pub dry_run: bool,
}

impl Summary {
    /// `N charts found, M already present, K uploaded, E errors`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{} charts found, {} already present, {} uploaded, {} errors",
            self.found, self.present, self.uploaded, self.errors
        );
        if self.dry_run {
            s.push_str(&format!(
                " (dry run: {} would be uploaded)",
                self.would_upload
            ));
        }
        s
    }

    /// 0, 1 or 2 (helm-chartctl's exit status).
    pub fn exit_code(&self) -> u8 {
        match self.failure {
            Failure::None => 0,
            Failure::Other => 1,
            Failure::RepositoryOrChart => 2,
        }
    }

    fn fail(&mut self, kind: Failure) {
        self.errors += 1;
        self.failure = self.failure.max(kind);
    }
}

/// Text for the terminal or the journal: control characters escaped.
pub fn show(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn show_path(p: &Path) -> String {
    show(&p.to_string_lossy())
}

/// Prints as the verbosity asks; stdout for progress and the summary, stderr for errors.
struct Reporter {
    verbosity: Verbosity,
}

impl Reporter {
    fn info(&self, msg: &str) {
        if self.verbosity >= Verbosity::Normal {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{msg}");
            let _ = out.flush();
        }
    }

    fn debug(&self, msg: &str) {
        if self.verbosity >= Verbosity::Debug {
            self.info(msg);
        }
    }

    fn error(&self, msg: &str) {
        let _ = writeln!(std::io::stderr().lock(), "error: {msg}");
    }
}

/// Runs one publish and returns its counts (the summary is printed, unless silent).
pub fn run(opts: &Options) -> Summary {
    let rep = Reporter {
        verbosity: opts.verbosity,
    };
    let mut sum = Summary {
        dry_run: opts.dry_run,
        ..Summary::default()
    };
    match Client::new(&opts.client) {
        Ok(client) => match &opts.action {
            Action::Walk(path) => walk_and_push(opts, &client, path, &rep, &mut sum),
            Action::Push(path) => {
                sum.found = 1;
                push(opts, &client, path, path, &rep, &mut sum);
            }
            Action::Upload(tgz) => upload_file(opts, &client, tgz, &rep, &mut sum),
        },
        Err(e) => {
            rep.error(&e.to_string());
            sum.fail(Failure::Other);
        }
    }
    rep.info(&sum.line());
    sum
}

fn walk_and_push(opts: &Options, client: &Client, root: &Path, rep: &Reporter, sum: &mut Summary) {
    let found = match walk::find_charts(root) {
        Ok(f) => f,
        Err(e) => {
            rep.error(&format!("{}: {e}", show_path(root)));
            sum.fail(Failure::Other);
            return;
        }
    };
    for (dir, e) in &found.errors {
        rep.error(&format!("{}: {e}", show_path(dir)));
        sum.fail(Failure::Other);
    }
    sum.found = found.charts.len();
    // Symlinked Chart.yaml files must stay inside PATH, as the packager's symlinks must.
    let inside = if opts.allow_outside_symlinks {
        None
    } else {
        match root.canonicalize() {
            Ok(r) => Some(r),
            Err(e) => {
                rep.error(&format!("{}: {e}", show_path(root)));
                sum.fail(Failure::Other);
                return;
            }
        }
    };
    let started = std::time::Instant::now();
    let listing = match client.list(&opts.repository) {
        Ok(l) => l,
        Err(e) => {
            rep.error(&e.to_string());
            sum.fail(Failure::RepositoryOrChart);
            return;
        }
    };
    rep.debug(&format!(
        "GET {}: {} charts, {} versions ({} ms)",
        client.charts_url(&opts.repository),
        listing.charts(),
        listing.versions(),
        started.elapsed().as_millis()
    ));
    // name+version -> the first directory that has it in this run
    let mut new = Vec::new();
    let mut seen: HashMap<(String, String), PathBuf> = HashMap::new();
    for dir in &found.charts {
        let md = match walk::read_chart_yaml(dir, inside.as_deref()) {
            Ok(md) => md,
            Err(e) => {
                rep.error(&format!("{}: {e}", show_path(dir)));
                sum.fail(Failure::RepositoryOrChart);
                continue;
            }
        };
        if listing.contains(&md.name, &md.version) {
            sum.present += 1;
            rep.debug(&format!(
                "{} {}: already present ({})",
                show(&md.name),
                show(&md.version),
                show_path(dir)
            ));
            continue;
        }
        let key = (md.name.clone(), md.version.clone());
        if let Some(first) = seen.get(&key) {
            sum.present += 1;
            rep.debug(&format!(
                "{} {}: same version as {}, skipped ({})",
                show(&md.name),
                show(&md.version),
                show_path(first),
                show_path(dir)
            ));
            continue;
        }
        seen.insert(key, dir.clone());
        new.push(dir.clone());
    }
    push_all(opts, client, &new, root, rep, sum);
}

/// Packages `dirs` in order and uploads them, [`UPLOADS_AT_ONCE`] uploads in flight.
fn push_all(
    opts: &Options,
    client: &Client,
    dirs: &[PathBuf],
    walk_root: &Path,
    rep: &Reporter,
    sum: &mut Summary,
) {
    use futures_util::StreamExt;
    let popts = PackageOptions {
        walk_root: walk_root.to_path_buf(),
        allow_outside_symlinks: opts.allow_outside_symlinks,
        mtime: None,
    };
    let popts = &popts;
    client.block_on(async {
        let mut results = futures_util::stream::iter(dirs.iter().map(|dir| async move {
            // Packaging runs on this thread, between the polls of the uploads in flight.
            let started = std::time::Instant::now();
            let pkg = package_chart(dir, popts)?;
            let took = started.elapsed();
            let uploaded = if opts.dry_run {
                None
            } else {
                Some(
                    client
                        .upload_async(&opts.repository, &pkg.file_name, &pkg.bytes)
                        .await,
                )
            };
            Ok::<_, package::PackageError>((pkg, took, uploaded))
        }))
        .buffered(UPLOADS_AT_ONCE);
        let mut dirs = dirs.iter();
        while let Some(result) = results.next().await {
            // (buffered: results come in the order of `dirs`)
            let from = dirs.next().map(|d| show_path(d)).unwrap_or_default();
            match result {
                Err(e) => {
                    rep.error(&format!("{from}: cannot package: {e}"));
                    sum.fail(Failure::RepositoryOrChart);
                }
                Ok((pkg, took, uploaded)) => {
                    rep.debug(&format!(
                        "packaged {} ({} bytes, {} ms) from {from}",
                        show(&pkg.file_name),
                        pkg.bytes.len(),
                        took.as_millis(),
                    ));
                    report_upload(&pkg.file_name, pkg.bytes.len(), &from, uploaded, rep, sum);
                }
            }
        }
    });
}

/// Packages `dir` and uploads it.
fn push(
    opts: &Options,
    client: &Client,
    dir: &Path,
    walk_root: &Path,
    rep: &Reporter,
    sum: &mut Summary,
) {
    let popts = PackageOptions {
        walk_root: walk_root.to_path_buf(),
        allow_outside_symlinks: opts.allow_outside_symlinks,
        mtime: None,
    };
    let started = std::time::Instant::now();
    let pkg = match package_chart(dir, &popts) {
        Ok(p) => p,
        Err(e) => {
            rep.error(&format!("{}: cannot package: {e}", show_path(dir)));
            sum.fail(Failure::RepositoryOrChart);
            return;
        }
    };
    rep.debug(&format!(
        "packaged {} ({} bytes, {} ms) from {}",
        show(&pkg.file_name),
        pkg.bytes.len(),
        started.elapsed().as_millis(),
        show_path(dir)
    ));
    send(
        opts,
        client,
        &pkg.file_name,
        &pkg.bytes,
        &show_path(dir),
        rep,
        sum,
    );
}

fn upload_file(opts: &Options, client: &Client, tgz: &Path, rep: &Reporter, sum: &mut Summary) {
    sum.found = 1;
    let mut bytes = Vec::new();
    let read =
        std::fs::File::open(tgz).and_then(|f| f.take(MAX_TGZ_BYTES + 1).read_to_end(&mut bytes));
    if let Err(e) = read {
        rep.error(&format!("{}: {e}", show_path(tgz)));
        sum.fail(Failure::Other);
        return;
    }
    if bytes.len() as u64 > MAX_TGZ_BYTES {
        rep.error(&format!(
            "{}: larger than {MAX_TGZ_BYTES} bytes",
            show_path(tgz)
        ));
        sum.fail(Failure::Other);
        return;
    }
    let md = match crate::chart::read_metadata(&bytes) {
        Ok(md) => md,
        Err(e) => {
            rep.error(&format!("{}: not a chart package: {e}", show_path(tgz)));
            sum.fail(Failure::RepositoryOrChart);
            return;
        }
    };
    send(
        opts,
        client,
        &md.file_name(),
        &bytes,
        &show_path(tgz),
        rep,
        sum,
    );
}

/// Uploads one package (or says what would be uploaded).
fn send(
    opts: &Options,
    client: &Client,
    file_name: &str,
    bytes: &[u8],
    from: &str,
    rep: &Reporter,
    sum: &mut Summary,
) {
    let uploaded = if opts.dry_run {
        None
    } else {
        Some(client.upload(&opts.repository, file_name, bytes))
    };
    report_upload(file_name, bytes.len(), from, uploaded, rep, sum);
}

/// Counts and reports an upload; `None`: a dry run.
fn report_upload(
    file_name: &str,
    size: usize,
    from: &str,
    uploaded: Option<Result<Uploaded, client::RepoError>>,
    rep: &Reporter,
    sum: &mut Summary,
) {
    let name = show(file_name);
    match uploaded {
        None => {
            sum.would_upload += 1;
            rep.info(&format!("would upload {name} ({size} bytes) from {from}"));
        }
        Some(Ok(Uploaded::Saved)) => {
            sum.uploaded += 1;
            rep.info(&format!("uploaded {name} from {from}"));
        }
        Some(Ok(Uploaded::AlreadyThere)) => {
            sum.present += 1;
            rep.info(&format!("{name} already present (409) from {from}"));
        }
        Some(Err(e)) => {
            rep.error(&format!("{name} from {from}: {e}"));
            sum.fail(Failure::RepositoryOrChart);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_exit() {
        let mut s = Summary::default();
        assert_eq!(
            s.line(),
            "0 charts found, 0 already present, 0 uploaded, 0 errors"
        );
        assert_eq!(s.exit_code(), 0);
        s.fail(Failure::Other);
        assert_eq!(s.exit_code(), 1);
        s.fail(Failure::RepositoryOrChart);
        s.fail(Failure::Other);
        assert_eq!((s.exit_code(), s.errors), (2, 3));
        s.dry_run = true;
        s.would_upload = 4;
        assert!(
            s.line()
                .ends_with("3 errors (dry run: 4 would be uploaded)")
        );
    }

    #[test]
    fn shown_text_has_no_control_characters() {
        assert_eq!(show("a\nb\u{1b}[31m\u{85}"), "a\\nb\\u{1b}[31m\\u{85}");
    }
}
