//! The HTTP API: request handling independent of how connections are accepted. [`App::handle`]
//! takes any `http::Request` with a byte body, so handlers are tested in-process.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use subtle::ConstantTimeEq;

pub mod error;
mod handlers;
pub mod route;

pub use error::ApiError;
use route::{Action, Endpoint, Route, RouteError, Router};

use crate::config::Config;
use crate::log::{self, Level, Val};
use crate::repository::{Registry, RepoSettings};

pub type Body = BoxBody<Bytes, std::io::Error>;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// Settings of the HTTP layer that a reload may change.
pub struct HttpSettings {
    pub router: Router,
    pub cfg: Config,
    /// `Basic base64(user:pass)` when basic auth is on.
    pub basic_expected: Option<Vec<u8>>,
}

impl HttpSettings {
    pub fn new(cfg: &Config) -> HttpSettings {
        let basic_expected =
            (!cfg.basic_user.is_empty() && !cfg.basic_pass.is_empty()).then(|| {
                use base64::Engine;
                let token = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", cfg.basic_user, cfg.basic_pass));
                format!("Basic {token}").into_bytes()
            });
        HttpSettings {
            router: Router {
                context_path: cfg.context_path.clone(),
                depth: cfg.depth,
                dynamic: cfg.depth_dynamic,
                api_enabled: !cfg.disable_api,
                delete_enabled: !cfg.disable_api && !cfg.disable_delete,
                artifacthub: !cfg.artifact_hub_ids.is_empty(),
                // With `metricslisten`, /metrics is served there only.
                metrics: cfg.enable_metrics && cfg.metrics_listen.is_none(),
            },
            cfg: cfg.clone(),
            basic_expected,
        }
    }
}

impl HttpSettings {
    /// What basic auth protects, for the start-up and reload logs.
    pub fn auth_summary(&self) -> String {
        let cfg = &self.cfg;
        if let Some(b) = &cfg.bearer {
            let covers = if cfg.anonymous_get {
                "push (uploads, deletes); pull (GET, HEAD) is anonymous (authanonymousget)"
            } else {
                "push and pull (every route but /health and /info)"
            };
            return format!(
                "bearer tokens ({:?} signed with the key in {}, realm {:?}, service {:?}) for {covers}",
                b.algorithm, b.cert_path, b.realm, b.service
            );
        }
        match (&self.basic_expected, cfg.anonymous_get) {
            (None, _) => {
                "off: no credentials are asked for (basicauth.user and basicauth.pass are not set)"
                    .into()
            }
            (Some(_), true) => format!(
                "basic auth (user {:?}) for push (uploads, deletes); pull (GET, HEAD) is anonymous (authanonymousget)",
                cfg.basic_user
            ),
            (Some(_), false) => format!(
                "basic auth (user {:?}) for push and pull (every route but /health and /info)",
                cfg.basic_user
            ),
        }
    }
}

pub fn repo_settings(cfg: &Config) -> RepoSettings {
    RepoSettings {
        statefiles: !cfg.disable_statefiles,
        index_limit: cfg.index_limit,
        chart_url: cfg.chart_url.clone(),
        context_path: cfg.context_path.clone(),
        json_index: cfg.json_index,
        chart_limits: cfg.chart_limits,
        progress: Default::default(),
        max_tenants: cfg.max_tenants,
    }
}

/// Everything a request needs. Both parts can be swapped whole by a reload; a request keeps
/// the snapshot it started with.
pub struct App {
    pub http: ArcSwap<HttpSettings>,
    pub registry: ArcSwap<Registry>,
    requests: AtomicU64,
    /// Last storage problem seen by a refresh, for `/health` (empty when healthy).
    pub storage_problem: ArcSwap<String>,
    /// Prometheus metrics (`GET /metrics` with `enablemetrics`); kept across reloads.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl App {
    pub fn new(cfg: &Config, registry: Registry) -> App {
        App {
            http: ArcSwap::from_pointee(HttpSettings::new(cfg)),
            registry: ArcSwap::from_pointee(registry),
            requests: AtomicU64::new(0),
            storage_problem: ArcSwap::from_pointee(String::new()),
            metrics: Arc::new(crate::metrics::Metrics::new(cfg)),
        }
    }

    pub fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Handles one request and logs it.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
    {
        let start = Instant::now();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let http = self.http.load_full();
        let registry = self.registry.load_full();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        let routed = http.router.route(&method, &path);
        let label = match &routed {
            Ok(r) => r.endpoint.label(),
            Err(_) => "none",
        };
        // What the metrics record of this request: routed requests only, by route template.
        let metered = match (&routed, http.cfg.enable_metrics) {
            (Ok(r), true) if r.endpoint != Endpoint::Metrics => Some(crate::metrics::RequestInfo {
                method: crate::metrics::method_label(&method),
                handler: label,
                url: crate::metrics::url_template(&r.endpoint, !r.repo.is_empty()),
                request_bytes: approximate_request_size(&req),
            }),
            _ => None,
        };
        let upload = matches!(
            &routed,
            Ok(r) if matches!(r.endpoint, Endpoint::UploadChart | Endpoint::UploadProv)
        );
        let mut resp = match routed {
            Ok(route) if route.endpoint == Endpoint::Metrics => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                self.metrics_response(accept)
            }
            Ok(route) => self.dispatch(&http, &registry, route, req).await,
            Err(RouteError::NotFound) => error_response(&ApiError::RouteNotFound),
            Err(RouteError::BadRepo(e)) => error_response(&ApiError::BadRequest(e.to_string())),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        let status = resp.status();
        let response_bytes = || {
            http_body::Body::size_hint(resp.body())
                .exact()
                .or_else(|| {
                    resp.headers()
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(0)
        };
        if upload && status.as_u16() >= 400 {
            self.metrics.upload_rejected(status.as_u16());
        }
        if let Some(info) = &metered {
            let secs = start.elapsed().as_secs_f64();
            self.metrics
                .request(info, status.as_u16(), secs, response_bytes());
        }
        let is_health = label == "health";
        if !is_health || http.cfg.log_health {
            let level = match status.as_u16() {
                200..=399 => Level::Info,
                404 => Level::Warn,
                _ => Level::Error,
            };
            if log::enabled(level) {
                let bytes = response_bytes();
                let elapsed = start.elapsed();
                let latency = if http.cfg.log_latency_integer {
                    elapsed.as_nanos().to_string()
                } else {
                    format!("{elapsed:?}")
                };
                log::log_batched(
                    level,
                    "request",
                    &[
                        ("method", Val::Str(method.as_str())),
                        ("path", Val::Str(&path)),
                        ("status", Val::Num(i128::from(status.as_u16()))),
                        ("bytes", Val::Num(i128::from(bytes))),
                        ("duration", Val::Str(&latency)),
                        ("route", Val::Str(label)),
                        ("reqID", Val::Str(&request_id)),
                    ],
                );
            }
        }
        resp
    }

    async fn dispatch<B>(
        &self,
        http: &HttpSettings,
        registry: &Arc<Registry>,
        route: Route,
        req: Request<B>,
    ) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
    {
        let cfg = &http.cfg;
        let action = route.endpoint.action();
        let anonymous_ok = action == Action::None || (action == Action::Pull && cfg.anonymous_get);
        if let (Some(bearer), false) = (&cfg.bearer, anonymous_ok) {
            // Bearer auth takes precedence over basic auth, as in ChartMuseum.
            let namespace = if route.repo.is_empty() {
                "repo"
            } else {
                route.repo.as_str()
            };
            let wanted = if action == Action::Push {
                "push"
            } else {
                "pull"
            };
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if let Err(challenge) = bearer.check(given, namespace, wanted) {
                let mut resp = error_response(&ApiError::Unauthorized);
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
                return resp;
            }
        } else if let (Some(expected), false) = (&http.basic_expected, anonymous_ok) {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            let same: bool = given.len() == expected.len() && bool::from(given.ct_eq(expected));
            if !same {
                let mut resp = error_response(&ApiError::Unauthorized);
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"ChartMuseum\""),
                );
                return resp;
            }
        }
        let is_api = route.endpoint.is_api();
        let force = req.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|p| p == "force" || p.starts_with("force="))
        });
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = if matches!(route.endpoint, Endpoint::UploadChart | Endpoint::UploadProv) {
            match read_body(req.into_body(), cfg.max_upload_size, cfg.read_timeout).await {
                Ok(b) => b,
                Err(ApiError::TooLarge) => return too_large(),
                Err(e) => return error_response(&e),
            }
        } else {
            Bytes::new()
        };
        let ctx = handlers::Ctx {
            app: self,
            cfg,
            registry,
            repo_key: &route.repo,
            force,
            query: &query,
            content_type: &content_type,
            body,
        };
        let mut resp = match ctx.run(route.endpoint).await {
            Ok(r) => r,
            Err(e) => {
                if e.status().is_server_error() {
                    crate::error!("request failed", "error" => &e.to_string());
                }
                error_response(&e)
            }
        };
        if is_api && !cfg.cors_allow_origin.is_empty() {
            if let Ok(v) = HeaderValue::from_str(&cfg.cors_allow_origin) {
                resp.headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            }
        }
        resp
    }
}

impl App {
    /// `GET /metrics`: every series, in OpenMetrics when `accept` asks for it.
    pub fn metrics_response(&self, accept: &str) -> Response<Body> {
        let open = crate::metrics::wants_openmetrics(accept);
        let text = self.metrics.render(&self.registry.load(), open);
        let mut resp = Response::new(full(text));
        let ct = if open {
            crate::metrics::OPENMETRICS_CONTENT_TYPE
        } else {
            crate::metrics::TEXT_CONTENT_TYPE
        };
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        resp
    }
}

/// ChartMuseum's approximate request size: path, method, protocol, header names and values,
/// and the declared body length.
fn approximate_request_size<B>(req: &Request<B>) -> u64 {
    let headers: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    (req.uri().path().len() + req.method().as_str().len() + "HTTP/1.1".len() + headers) as u64
        + declared
}

async fn read_body<B>(body: B, limit: usize, timeout: Duration) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + std::fmt::Display,
{
    // A declared Content-Length over the limit is refused before reading anything.
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(ApiError::TooLarge);
    }
    let collect = Limited::new(body, limit).collect();
    let collected = if timeout.is_zero() {
        collect.await
    } else {
        tokio::time::timeout(timeout, collect)
            .await
            .map_err(|_| ApiError::Timeout)?
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::TooLarge)
            } else {
                Err(ApiError::BadRequest(format!(
                    "cannot read request body: {e}"
                )))
            }
        }
    }
}

fn new_request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    // UUID v4 layout.
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

pub fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let body: Bytes = body.into();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let body = serde_json::json!({ "error": e.message() }).to_string();
    json_response(e.status(), body)
}

fn too_large() -> Response<Body> {
    let mut resp = Response::new(full("request too large"));
    *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
