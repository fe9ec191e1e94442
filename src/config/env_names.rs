//! The environment variables the storage backends take their credentials and settings from,
//! beside the configuration keys: the loader captures them when it loads the configuration
//! (so a reload sees the environment it was started with, and `Debug` shows only the names),
//! and the backends read them from that capture. They live here, in the configuration, so
//! that the dependency runs one way: storage uses config, config never imports storage.

/// Amazon S3 (and S3-compatible servers): credentials, region and CA bundle, as the AWS SDKs
/// and ChartMuseum read them.
pub const S3: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CA_BUNDLE",
];

/// Azure Blob: the account and its key as ChartMuseum reads them (and its `AZURE_BASE_URL`,
/// the cloud's domain suffix), and a SAS token.
pub const AZURE: &[&str] = &[
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_BASE_URL",
];

/// Google Cloud Storage: the service-account JSON file as Google's libraries and ChartMuseum
/// read it, and the metadata server's address (Google's libraries honour it; tests set it).
pub const GOOGLE: &[&str] = &["GOOGLE_APPLICATION_CREDENTIALS", "GCE_METADATA_HOST"];

/// OpenStack Swift: v1 auth (`ST_*`) and Keystone v3 (`OS_*`), as the OpenStack clients and
/// ChartMuseum read them.
pub const SWIFT: &[&str] = &[
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "OS_AUTH_URL",
    "OS_USERNAME",
    "OS_USERID",
    "OS_USER_ID",
    "OS_PASSWORD",
    "OS_PROJECT_ID",
    "OS_PROJECT_NAME",
    "OS_TENANT_ID",
    "OS_TENANT_NAME",
    "OS_DOMAIN_ID",
    "OS_DOMAIN_NAME",
    "OS_USER_DOMAIN_ID",
    "OS_USER_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_ID",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_REGION_NAME",
    "OS_INTERFACE",
    "OS_ENDPOINT_TYPE",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_NAME",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_CACERT",
];

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    fn source(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
    }

    /// The code of a Rust source: comments, string and character literals dropped (a doc
    /// link or a message may name any module; only paths in code import).
    fn code_only(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '/' if chars.peek() == Some(&'/') => {
                    for c in chars.by_ref() {
                        if c == '\n' {
                            out.push('\n');
                            break;
                        }
                    }
                }
                '"' => {
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => {
                                chars.next();
                            }
                            '"' => break,
                            _ => {}
                        }
                    }
                    out.push_str("\"\"");
                }
                '\'' => {
                    // A character literal ('x', '\n', '\''), or a lifetime ('a) kept as is.
                    let rest: String = chars.clone().take(10).collect();
                    let len = if rest.starts_with('\\') {
                        rest.get(2..).and_then(|r| r.find('\'')).map(|i| i + 2)
                    } else {
                        rest.char_indices()
                            .nth(1)
                            .filter(|&(_, c)| c == '\'')
                            .map(|(i, _)| i)
                    };
                    match len {
                        Some(i) => {
                            for _ in 0..rest[..=i].chars().count() {
                                chars.next();
                            }
                            out.push_str("' '");
                        }
                        None => out.push(c),
                    }
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// Every way code in src/config could name the storage module: a path from `crate::`,
    /// `super::` (from config/mod.rs) or `super::super::`, and a path inside a
    /// `use crate::{...}` group. Whitespace is ignored (`crate :: x` is `crate::x`).
    fn names_storage(text: &str) -> Option<String> {
        let compact: String = code_only(text)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let storage = "storage";
        for prefix in ["crate::", "super::", "super::super::"] {
            let path = format!("{prefix}{storage}");
            if compact.contains(&path) {
                return Some(path);
            }
        }
        let mut rest = compact.as_str();
        while let Some(at) = rest.find("crate::{") {
            let group = &rest[at + "crate::{".len()..];
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let inner = &group[..end];
            for sep in ['{', ','] {
                if inner.starts_with(storage) || inner.contains(&format!("{sep}{storage}")) {
                    return Some(format!("crate::{{{inner}}}"));
                }
            }
            rest = group;
        }
        None
    }

    #[test]
    fn config_never_imports_storage() {
        let mut files = Vec::new();
        rust_files(&source("src/config"), &mut files);
        assert!(files.len() >= 3, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            assert_eq!(
                names_storage(&text),
                None,
                "{} names the storage module; config describes storage and must not import it \
                 (put what both need in src/config)",
                f.display()
            );
        }
    }

    #[test]
    fn the_check_finds_each_spelling() {
        let s = "storage";
        for text in [
            format!("use crate::{s}::s3;"),
            format!("x(crate :: {s} :: swift::auth::ENV_VARS)"),
            format!("use super::{s};"),
            format!("use crate::{{chart, {s}::Secret}};"),
            format!("use crate::{{\n    {s},\n}};"),
        ] {
            assert!(names_storage(&text).is_some(), "{text}");
        }
        assert_eq!(names_storage("use crate::{chart, repository};"), None);
        assert_eq!(names_storage("pub struct StorageConfig;"), None);
        let quoted = "let m = \"see crate::storage\"; // or crate::storage\nlet c = '{';";
        assert_eq!(names_storage(quoted), None);
        assert_eq!(code_only("a '\\'' b 'x' c<'a>"), "a ' ' b ' ' c<'a>");
    }

    /// Every `AWS_*`, `OS_*` or `ST_*` name the backends read is captured by the loader (a
    /// name missing here would read as unset).
    #[test]
    fn backends_read_only_captured_names() {
        for (file, names) in [
            ("src/storage/s3/mod.rs", super::S3),
            ("src/storage/swift/auth.rs", super::SWIFT),
            ("src/storage/azure/mod.rs", super::AZURE),
        ] {
            let text = std::fs::read_to_string(source(file)).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let mut seen = 0;
            for lit in code.split('"').skip(1).step_by(2) {
                let var = ["AWS_", "OS_", "ST_", "AZURE_"]
                    .iter()
                    .any(|p| lit.starts_with(p))
                    && lit.chars().all(|c| c.is_ascii_uppercase() || c == '_');
                if var {
                    seen += 1;
                    assert!(names.contains(&lit), "{file} reads {lit}, not captured");
                }
            }
            assert!(seen >= 3, "{file}: {seen} names found");
        }
    }
}
