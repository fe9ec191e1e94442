//! Request routing: every route is a variant of [`Endpoint`], so handling is an exhaustive
//! match. Paths follow ChartMuseum's layout, including the context path and multitenancy
//! (`--depth N` or `--depth-dynamic`).

use http::Method;
use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Welcome,
    Health,
    Info,
    /// `GET /metrics` (`enablemetrics`): the literal path, outside the context path and the
    /// repository layout, without authentication, as ChartMuseum.
    Metrics,
    ArtifactHub,
    Index {
        head: bool,
    },
    ChartFile {
        file: String,
        head: bool,
    },
    ListCharts,
    ChartVersions {
        name: String,
        head: bool,
    },
    ChartVersion {
        name: String,
        version: String,
        head: bool,
    },
    Templates {
        name: String,
        version: String,
    },
    Values {
        name: String,
        version: String,
    },
    UploadChart,
    UploadProv,
    Delete {
        name: String,
        version: String,
    },
}

/// What authorisation a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Pull,
    Push,
}

impl Endpoint {
    pub fn action(&self) -> Action {
        match self {
            Endpoint::Health | Endpoint::Info | Endpoint::Metrics => Action::None,
            Endpoint::UploadChart | Endpoint::UploadProv | Endpoint::Delete { .. } => Action::Push,
            _ => Action::Pull,
        }
    }

    pub fn is_api(&self) -> bool {
        matches!(
            self,
            Endpoint::ListCharts
                | Endpoint::ChartVersions { .. }
                | Endpoint::ChartVersion { .. }
                | Endpoint::Templates { .. }
                | Endpoint::Values { .. }
                | Endpoint::UploadChart
                | Endpoint::UploadProv
                | Endpoint::Delete { .. }
        )
    }

    /// A label for logs without the variable parts.
    pub fn label(&self) -> &'static str {
        match self {
            Endpoint::Welcome => "welcome",
            Endpoint::Health => "health",
            Endpoint::Info => "info",
            Endpoint::Metrics => "metrics",
            Endpoint::ArtifactHub => "artifacthub",
            Endpoint::Index { .. } => "index",
            Endpoint::ChartFile { .. } => "chart-file",
            Endpoint::ListCharts => "list-charts",
            Endpoint::ChartVersions { .. } => "chart-versions",
            Endpoint::ChartVersion { .. } => "chart-version",
            Endpoint::Templates { .. } => "templates",
            Endpoint::Values { .. } => "values",
            Endpoint::UploadChart => "upload-chart",
            Endpoint::UploadProv => "upload-prov",
            Endpoint::Delete { .. } => "delete",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub endpoint: Endpoint,
    /// Repository (tenant) key: `""`, or `org/team` joined with `/`.
    pub repo: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("not found")]
    NotFound,
    /// A repository (tenant) name that is refused before storage is touched.
    #[error(transparent)]
    BadRepo(#[from] RepoNameError),
}

/// The longest repository path segment, in bytes: the usual file-name limit (`NAME_MAX`).
pub const MAX_REPO_SEGMENT: usize = 255;
/// The longest repository path (segments and the `/` between them), in bytes. With a chart
/// file name (at most 255 bytes) it stays far below `PATH_MAX` (4096) on any storage root a
/// sane configuration names.
pub const MAX_REPO_PATH: usize = 1024;

/// Why a repository name is refused; the message names the segment (shortened) and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoNameError {
    #[error("invalid repository name: empty path segment")]
    Empty,
    #[error("invalid repository name {0}: a segment may not start with '.'")]
    Dot(String),
    #[error(
        "invalid repository name {0}: a segment may not contain '/', '\\' or control characters"
    )]
    BadChar(String),
    #[error(
        "invalid repository name {0}: a segment may not end in .tgz or .prov (that names a chart file)"
    )]
    PackageName(String),
    #[error(
        "invalid repository name {seg}: a segment is {len} bytes, the limit is {MAX_REPO_SEGMENT}"
    )]
    SegmentTooLong { seg: String, len: usize },
    #[error(
        "invalid repository name: the repository path is {0} bytes, the limit is {MAX_REPO_PATH}"
    )]
    PathTooLong(usize),
}

/// A segment for an error message: quoted and escaped, and cut at 64 characters.
fn shown(seg: &str) -> String {
    let mut cut: String = seg.chars().take(64).collect();
    if cut.len() < seg.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// Checks one repository path segment: the rules that keep every repository a plain directory
/// (or prefix) of its own inside the storage root, apart from chartroom's own files.
pub fn check_repo_segment(s: &str) -> Result<(), RepoNameError> {
    if s.is_empty() {
        return Err(RepoNameError::Empty);
    }
    if s.len() > MAX_REPO_SEGMENT {
        return Err(RepoNameError::SegmentTooLong {
            seg: shown(s),
            len: s.len(),
        });
    }
    if s.contains(['/', '\\']) || s.chars().any(char::is_control) {
        return Err(RepoNameError::BadChar(shown(s)));
    }
    // Covers "." and ".." too; chartroom's temporary files are dot-names.
    if s.starts_with('.') {
        return Err(RepoNameError::Dot(shown(s)));
    }
    if s.ends_with(".tgz") || s.ends_with(".prov") {
        return Err(RepoNameError::PackageName(shown(s)));
    }
    Ok(())
}

/// Checks a repository path given as its segments.
pub fn check_repo_path<S: AsRef<str>>(segs: &[S]) -> Result<(), RepoNameError> {
    let mut len = segs.len().saturating_sub(1);
    for s in segs {
        check_repo_segment(s.as_ref())?;
        len += s.as_ref().len();
    }
    if len > MAX_REPO_PATH {
        return Err(RepoNameError::PathTooLong(len));
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Router {
    pub context_path: String,
    pub depth: usize,
    pub dynamic: bool,
    pub api_enabled: bool,
    pub delete_enabled: bool,
    pub artifacthub: bool,
    /// `GET /metrics` is a route (`enablemetrics`).
    pub metrics: bool,
}

/// Route templates after the repository part. `*` is one variable segment.
const API_TEMPLATES: &[&[&str]] = &[
    &["charts"],
    &["charts", "*"],
    &["charts", "*", "*"],
    &["charts", "*", "*", "templates"],
    &["charts", "*", "*", "values"],
    &["prov"],
];
const REPO_TEMPLATES: &[&[&str]] = &[
    &["index.yaml"],
    &["charts", "*"],
    &["artifacthub-repo.yml"],
    &["health"],
    &["info"],
];

fn template_matches(t: &[&str], segs: &[String]) -> bool {
    t.len() == segs.len() && t.iter().zip(segs).all(|(t, s)| *t == "*" || t == s)
}

impl Router {
    pub fn route(&self, method: &Method, raw_path: &str) -> Result<Route, RouteError> {
        if self.metrics && raw_path == "/metrics" && method == Method::GET {
            return Ok(Route {
                endpoint: Endpoint::Metrics,
                repo: String::new(),
            });
        }
        let path = self.strip_context(raw_path).ok_or(RouteError::NotFound)?;
        let head = method == Method::HEAD;
        let get = method == Method::GET || head;
        let simple = |e: Endpoint| {
            Ok(Route {
                endpoint: e,
                repo: String::new(),
            })
        };
        match path {
            "/" | "" if get => return simple(Endpoint::Welcome),
            "/health" if method == Method::GET => return simple(Endpoint::Health),
            "/info" if method == Method::GET => return simple(Endpoint::Info),
            "/artifacthub-repo.yml" if method == Method::GET && self.artifacthub => {
                return simple(Endpoint::ArtifactHub);
            }
            _ => {}
        }
        let mut segs: Vec<String> = Vec::new();
        for s in path.trim_start_matches('/').split('/') {
            segs.push(
                percent_decode_str(s)
                    .decode_utf8()
                    .map_err(|_| RouteError::NotFound)?
                    .into_owned(),
            );
        }
        let is_api = path.starts_with("/api/")
            && !(path.ends_with(".yaml") || path.ends_with(".tgz") || path.ends_with(".prov"));
        let body: &[String] = if is_api { &segs[1..] } else { &segs[..] };
        let templates = if is_api {
            API_TEMPLATES
        } else {
            REPO_TEMPLATES
        };
        let depth = if self.dynamic {
            templates
                .iter()
                .find(|t| {
                    t.len() <= body.len() && template_matches(t, &body[body.len() - t.len()..])
                })
                .map(|t| body.len() - t.len())
                .ok_or(RouteError::NotFound)?
        } else {
            self.depth
        };
        if body.len() < depth {
            return Err(RouteError::NotFound);
        }
        let (repo_segs, rest) = body.split_at(depth);
        // "/<repo>/" is the welcome page of that repository.
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let endpoint = if is_api {
            if !self.api_enabled {
                return Err(RouteError::NotFound);
            }
            match (method, rest.as_slice()) {
                (m, ["charts"]) if m == Method::GET => Endpoint::ListCharts,
                (m, ["charts"]) if m == Method::POST => Endpoint::UploadChart,
                (m, ["prov"]) if m == Method::POST => Endpoint::UploadProv,
                (_, ["charts", name]) if get => Endpoint::ChartVersions {
                    name: name.to_string(),
                    head,
                },
                (_, ["charts", name, version]) if get => Endpoint::ChartVersion {
                    name: name.to_string(),
                    version: version.to_string(),
                    head,
                },
                (m, ["charts", name, version]) if m == Method::DELETE && self.delete_enabled => {
                    Endpoint::Delete {
                        name: name.to_string(),
                        version: version.to_string(),
                    }
                }
                (m, ["charts", name, version, "templates"]) if m == Method::GET => {
                    Endpoint::Templates {
                        name: name.to_string(),
                        version: version.to_string(),
                    }
                }
                (m, ["charts", name, version, "values"]) if m == Method::GET => Endpoint::Values {
                    name: name.to_string(),
                    version: version.to_string(),
                },
                _ => return Err(RouteError::NotFound),
            }
        } else {
            match (method, rest.as_slice()) {
                (_, ["index.yaml"]) if get => Endpoint::Index { head },
                (_, ["charts", file]) if get && !file.contains(['/', '\\']) => {
                    Endpoint::ChartFile {
                        file: file.to_string(),
                        head,
                    }
                }
                (_, [""]) if get => Endpoint::Welcome,
                (m, ["health"]) if m == Method::GET => Endpoint::Health,
                (m, ["info"]) if m == Method::GET => Endpoint::Info,
                (m, ["artifacthub-repo.yml"]) if m == Method::GET && self.artifacthub => {
                    Endpoint::ArtifactHub
                }
                _ => return Err(RouteError::NotFound),
            }
        };
        // The repository name is checked before anything (storage, auth) looks at it; paths
        // that match no route stay 404.
        check_repo_path(repo_segs)?;
        Ok(Route {
            endpoint,
            repo: repo_segs.join("/"),
        })
    }

    fn strip_context<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.context_path.is_empty() {
            return Some(path);
        }
        if path == self.context_path {
            return Some("/");
        }
        path.strip_prefix(self.context_path.as_str())
            .filter(|rest| rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(depth: usize, dynamic: bool, ctx: &str) -> Router {
        Router {
            context_path: ctx.into(),
            depth,
            dynamic,
            api_enabled: true,
            delete_enabled: true,
            artifacthub: true,
            metrics: false,
        }
    }

    fn ok(r: &Router, m: Method, p: &str) -> Route {
        r.route(&m, p).unwrap_or_else(|e| panic!("{p}: {e:?}"))
    }

    #[test]
    fn depth_zero() {
        let r = router(0, false, "");
        assert_eq!(
            ok(&r, Method::GET, "/index.yaml").endpoint,
            Endpoint::Index { head: false }
        );
        assert_eq!(
            ok(&r, Method::GET, "/charts/a-1.0.0.tgz").endpoint,
            Endpoint::ChartFile {
                file: "a-1.0.0.tgz".into(),
                head: false
            }
        );
        assert_eq!(
            ok(&r, Method::POST, "/api/charts").endpoint,
            Endpoint::UploadChart
        );
        assert_eq!(r.route(&Method::GET, "/health/"), Err(RouteError::NotFound));
        assert_eq!(
            r.route(&Method::PUT, "/api/charts"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            r.route(&Method::GET, "/x/index.yaml"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn static_depth_and_context() {
        let r = router(2, false, "/my/ctx");
        let route = ok(&r, Method::GET, "/my/ctx/org/repo/index.yaml");
        assert_eq!(route.repo, "org/repo");
        let route = ok(&r, Method::DELETE, "/my/ctx/api/org/repo/charts/c/1.0.0");
        assert_eq!(route.repo, "org/repo");
        assert_eq!(ok(&r, Method::GET, "/my/ctx").endpoint, Endpoint::Welcome);
        assert_eq!(
            ok(&r, Method::GET, "/my/ctx/health").endpoint,
            Endpoint::Health
        );
        assert_eq!(
            r.route(&Method::GET, "/index.yaml"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            r.route(&Method::GET, "/my/ctx/index.yaml"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            r.route(&Method::GET, "/my/ctxx/a/b/index.yaml"),
            Err(RouteError::NotFound)
        );
        // Tenant "api" at depth 1 is an index path, not the API.
        let r1 = router(1, false, "");
        assert_eq!(ok(&r1, Method::GET, "/api/index.yaml").repo, "api");
    }

    #[test]
    fn traversal_is_refused() {
        let r = router(1, false, "");
        assert!(matches!(
            r.route(&Method::GET, "/../index.yaml"),
            Err(RouteError::BadRepo(_))
        ));
        assert!(matches!(
            r.route(&Method::GET, "/%2e%2e/index.yaml"),
            Err(RouteError::BadRepo(_))
        ));
        assert!(matches!(
            r.route(&Method::POST, "/api/%2e%2e/charts"),
            Err(RouteError::BadRepo(_))
        ));
        let r2 = router(2, false, "");
        assert!(matches!(
            r2.route(&Method::GET, "/a%2fb/c/index.yaml"),
            Err(RouteError::BadRepo(_))
        ));
    }

    #[test]
    fn repository_names_are_checked() {
        let r = router(1, false, "");
        let long = "a".repeat(256);
        let ok255 = "a".repeat(255);
        assert_eq!(
            ok(&r, Method::GET, &format!("/{ok255}/index.yaml")).repo,
            ok255
        );
        for (p, what) in [
            (format!("/{long}/index.yaml"), "256 bytes"),
            ("/.hidden/index.yaml".to_string(), "'.'"),
            ("/%2ehidden/index.yaml".to_string(), "'.'"),
            ("/foo-1.0.0.tgz/index.yaml".to_string(), ".tgz"),
            ("/foo.tgz.prov/index.yaml".to_string(), ".prov"),
            ("/a%0ab/index.yaml".to_string(), "control"),
            ("/a%5cb/index.yaml".to_string(), "control"),
        ] {
            match r.route(&Method::GET, &p) {
                Err(RouteError::BadRepo(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains("invalid repository name"), "{p}: {msg}");
                    assert!(msg.len() < 300, "{p}: message too long: {msg}");
                }
                other => panic!("{p} ({what}): {other:?}"),
            }
        }
        // A whole path over the bound, each segment within it.
        let d = router(0, true, "");
        let seg = "b".repeat(200);
        let six = [seg.as_str(); 6].join("/");
        assert_eq!(
            d.route(&Method::GET, &format!("/{six}/index.yaml")),
            Err(RouteError::BadRepo(RepoNameError::PathTooLong(1205)))
        );
        let five = [seg.as_str(); 5].join("/");
        assert_eq!(
            ok(&d, Method::GET, &format!("/{five}/index.yaml")).repo,
            five
        );
        // Paths that match no route stay 404 whatever their segments.
        assert_eq!(r.route(&Method::GET, "/x.tgz"), Err(RouteError::NotFound));
    }

    #[test]
    fn dynamic_depth() {
        let r = router(0, true, "");
        assert_eq!(ok(&r, Method::GET, "/api/charts").repo, "");
        assert_eq!(ok(&r, Method::GET, "/api/myrepo/charts").repo, "myrepo");
        assert_eq!(
            ok(&r, Method::GET, "/api/org1/repoa/charts").repo,
            "org1/repoa"
        );
        let route = ok(&r, Method::GET, "/api/org/charts/mychart/0.1.0/templates");
        assert_eq!(route.repo, "org");
        assert_eq!(ok(&r, Method::GET, "/a/b/c/index.yaml").repo, "a/b/c");
        assert_eq!(ok(&r, Method::GET, "/a/charts/x-1.tgz").repo, "a");
        assert_eq!(r.route(&Method::GET, "/favicon"), Err(RouteError::NotFound));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        /// Path segments an attacker would try, plus arbitrary text and arbitrary bytes
        /// percent-encoded.
        fn segment() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just(".".to_string()),
                Just("..".to_string()),
                Just("%2e%2e".to_string()),
                Just("%2E.".to_string()),
                Just("%2f".to_string()),
                Just("%5c".to_string()),
                Just("%00".to_string()),
                Just("%ff".to_string()),
                Just("api".to_string()),
                Just("charts".to_string()),
                Just("index.yaml".to_string()),
                Just("a-1.0.0.tgz".to_string()),
                Just("prov".to_string()),
                Just("templates".to_string()),
                "[a-z0-9.~_-]{1,12}",
                any::<String>(),
                proptest::collection::vec(any::<u8>(), 0..300)
                    .prop_map(|b| b.iter().map(|c| format!("%{c:02x}")).collect()),
                (1usize..400).prop_map(|n| "x".repeat(n)),
            ]
        }

        fn method() -> impl Strategy<Value = Method> {
            prop_oneof![
                Just(Method::GET),
                Just(Method::HEAD),
                Just(Method::POST),
                Just(Method::DELETE),
                Just(Method::PUT),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any path: a route or an error, never a panic; a route's repository is a path
            /// inside the storage root within the bounds.
            #[test]
            fn any_path_routes_safely(
                m in method(),
                segs in proptest::collection::vec(segment(), 0..8),
                lead in any::<bool>(),
                depth in 0usize..4,
                dynamic in any::<bool>(),
                ctx in prop_oneof![Just(""), Just("/ctx")],
            ) {
                let r = router(depth, dynamic, ctx);
                let path = format!("{}{}{}", ctx, if lead { "/" } else { "" }, segs.join("/"));
                if let Ok(route) = r.route(&m, &path) {
                    let repo = &route.repo;
                    prop_assert!(repo.len() <= MAX_REPO_PATH, "{}", repo.len());
                    if !repo.is_empty() {
                        prop_assert!(crate::storage::check_path(repo).is_ok(), "{repo:?}");
                        prop_assert!(
                            crate::storage::check_path(&crate::storage::join(repo, "c-1.0.0.tgz")).is_ok()
                        );
                        for seg in repo.split('/') {
                            prop_assert!(!seg.is_empty() && seg.len() <= MAX_REPO_SEGMENT, "{seg:?}");
                            prop_assert!(!seg.starts_with('.'), "{seg:?}");
                            prop_assert!(!seg.contains('\\'), "{seg:?}");
                            prop_assert!(!seg.chars().any(char::is_control), "{seg:?}");
                            prop_assert!(!seg.ends_with(".tgz") && !seg.ends_with(".prov"), "{seg:?}");
                        }
                    }
                    if let Endpoint::ChartFile { file, .. } = &route.endpoint {
                        prop_assert!(!file.contains('/'), "{file:?}");
                    }
                }
            }

            /// Arbitrary strings as a whole path (not built from segments).
            #[test]
            fn any_string_routes_without_panic(m in method(), p in any::<String>(), dynamic in any::<bool>()) {
                let r = router(1, dynamic, "");
                if let Ok(route) = r.route(&m, &p) {
                    prop_assert!(route.repo.is_empty() || crate::storage::check_path(&route.repo).is_ok());
                }
            }
        }
    }
}
