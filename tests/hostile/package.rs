//! Hostile chart directories given to `publish::package::package_chart`: symlink loops,
//! symlinks out of the walked tree, control characters in names, huge files, arbitrary
//! `.helmignore` contents and file names. None may panic; the refusals are clear.

use std::os::unix::fs::symlink;
use std::path::Path;

use chartroom::publish::package::{PackageError, PackageOptions, package_chart};
use proptest::prelude::*;

fn chart(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: h\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "a: 1\n").unwrap();
    std::fs::write(dir.join("templates/cm.yaml"), "kind: ConfigMap\n").unwrap();
}

fn opts() -> PackageOptions {
    PackageOptions {
        mtime: Some(0),
        ..Default::default()
    }
}

fn members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        out.push((name, data));
    }
    out
}

#[test]
fn symlink_loop_is_refused() {
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    symlink("..", t.path().join("templates/up")).unwrap();
    let e = package_chart(t.path(), &opts()).unwrap_err();
    assert!(matches!(e, PackageError::SymlinkLoop { .. }), "{e}");
    assert!(e.to_string().contains("templates/up"), "{e}");
    // A link to itself cannot be resolved.
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    symlink("self", t.path().join("self")).unwrap();
    let e = package_chart(t.path(), &opts()).unwrap_err();
    assert!(matches!(e, PackageError::BrokenSymlink { .. }), "{e}");
}

#[test]
fn symlink_out_of_the_tree_is_refused_unless_allowed() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    chart(&dir);
    symlink("/etc/passwd", dir.join("passwd")).unwrap();
    let e = package_chart(&dir, &opts()).unwrap_err();
    assert!(matches!(e, PackageError::SymlinkOutside { .. }), "{e}");
    assert!(e.to_string().contains("/etc/passwd"), "{e}");
    // Ignored: never read, so no refusal.
    std::fs::write(dir.join(".helmignore"), "passwd\n").unwrap();
    package_chart(&dir, &opts()).unwrap();
    std::fs::remove_file(dir.join(".helmignore")).unwrap();
    let allowed = PackageOptions {
        allow_outside_symlinks: true,
        ..opts()
    };
    let p = package_chart(&dir, &allowed).unwrap();
    let m = members(&p.bytes);
    assert!(m.iter().any(|(n, _)| n == "h/passwd"));
    // A wider walk root lets a link to a sibling chart's file through.
    let other = t.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("values.yaml"), "b: 2\n").unwrap();
    std::fs::remove_file(dir.join("passwd")).unwrap();
    std::fs::remove_file(dir.join("values.yaml")).unwrap();
    symlink("../other/values.yaml", dir.join("values.yaml")).unwrap();
    assert!(matches!(
        package_chart(&dir, &opts()).unwrap_err(),
        PackageError::SymlinkOutside { .. }
    ));
    let wide = PackageOptions {
        walk_root: t.path().to_path_buf(),
        ..opts()
    };
    let p = package_chart(&dir, &wide).unwrap();
    assert!(members(&p.bytes).contains(&("h/values.yaml".into(), b"b: 2\n".to_vec())));
}

#[test]
fn control_characters_in_names_are_packaged() {
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    let name = "templates/a\u{1}b\tc\nd.yaml";
    std::fs::write(t.path().join(name), "x: 1\n").unwrap();
    let p = package_chart(t.path(), &opts()).unwrap();
    assert!(
        members(&p.bytes)
            .iter()
            .any(|(n, _)| n == &format!("h/{name}"))
    );
}

#[test]
fn huge_file_is_refused() {
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    let f = std::fs::File::create(t.path().join("big.bin")).unwrap();
    f.set_len(5 * 1024 * 1024 + 1).unwrap();
    let e = package_chart(t.path(), &opts()).unwrap_err();
    assert!(matches!(e, PackageError::FileTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("big.bin"), "{e}");
}

#[test]
fn fifo_is_refused() {
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    let path = std::ffi::CString::new(t.path().join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o644) }, 0);
    let e = package_chart(t.path(), &opts()).unwrap_err();
    assert!(matches!(e, PackageError::Irregular { .. }), "{e}");
}

#[test]
fn same_directory_same_bytes() {
    let t = tempfile::tempdir().unwrap();
    chart(t.path());
    let a = package_chart(t.path(), &opts()).unwrap();
    // File times and modes do not matter.
    let f = std::fs::File::options()
        .write(true)
        .open(t.path().join("values.yaml"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.path().join("values.yaml"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let b = package_chart(t.path(), &opts()).unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert_eq!(a.file_name, "h-1.0.0.tgz");
    // No gzip timestamp.
    assert_eq!(&a.bytes[4..8], &[0, 0, 0, 0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn arbitrary_helmignore_and_names_never_panic(
        ignore in prop::collection::vec(any::<u8>(), 0..120),
        names in prop::collection::vec("[a-z.\\-_*?\\[\\]!# \u{1}-\u{1f}\u{e9}]{1,12}", 0..6),
    ) {
        let t = tempfile::tempdir().unwrap();
        chart(t.path());
        std::fs::write(t.path().join(".helmignore"), &ignore).unwrap();
        for n in &names {
            if n == "." || n == ".." {
                continue;
            }
            let _ = std::fs::write(t.path().join("templates").join(n), n.as_bytes());
        }
        let _ = package_chart(t.path(), &opts());
    }
}

#[test]
fn chart_yaml_out_of_the_tree_is_not_read() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("c");
    chart(&dir);
    std::fs::write(
        t.path().join("outside.yaml"),
        "apiVersion: v2\nname: o\nversion: 1.0.0\n",
    )
    .unwrap();
    std::fs::remove_file(dir.join("Chart.yaml")).unwrap();
    symlink("../outside.yaml", dir.join("Chart.yaml")).unwrap();
    let e = package_chart(&dir, &opts()).unwrap_err();
    assert!(matches!(e, PackageError::SymlinkOutside { .. }), "{e}");
    let wide = PackageOptions {
        walk_root: t.path().to_path_buf(),
        ..opts()
    };
    assert_eq!(package_chart(&dir, &wide).unwrap().name, "o");
}
