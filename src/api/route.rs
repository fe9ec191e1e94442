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
            Endpoint::Health | Endpoint::Info => Action::None,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// A repository segment that could name something outside the storage root.
    BadRepo(String),
}

#[derive(Debug, Clone)]
pub struct Router {
    pub context_path: String,
    pub depth: usize,
    pub dynamic: bool,
    pub api_enabled: bool,
    pub delete_enabled: bool,
    pub artifacthub: bool,
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

fn valid_repo_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && !s.contains(['/', '\\'])
        && !s.chars().any(|c| c.is_control())
}

impl Router {
    pub fn route(&self, method: &Method, raw_path: &str) -> Result<Route, RouteError> {
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
                (_, ["charts", file]) if get => Endpoint::ChartFile {
                    file: file.to_string(),
                    head,
                },
                (_, [""]) if get => Endpoint::Welcome,
                (m, ["health"]) if m == Method::GET => Endpoint::Health,
                (m, ["info"]) if m == Method::GET => Endpoint::Info,
                (m, ["artifacthub-repo.yml"]) if m == Method::GET && self.artifacthub => {
                    Endpoint::ArtifactHub
                }
                _ => return Err(RouteError::NotFound),
            }
        };
        for s in repo_segs {
            if !valid_repo_segment(s) {
                return Err(RouteError::BadRepo(s.clone()));
            }
        }
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
}
