//! Swift authentication: v1 (TempAuth, swauth: `ST_AUTH`, `ST_USER`, `ST_KEY`) and Keystone v3
//! (`OS_*`: password or application credential), with the token cached.
//!
//! A token is renewed shortly before it expires (`X-Auth-Token-Expires` for v1, `expires_at`
//! for Keystone) and dropped when Swift answers 401, so a long-running server logs in again by
//! itself. Concurrent requests share one login. Secrets given as files are read at every login,
//! so a rotated file is picked up at the next renewal (and at once by a reload).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{Value, json};

use super::time::parse_iso8601;

pub use crate::storage::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Config {
    /// The auth URL (`http://host:8080/auth/v1.0`).
    pub url: String,
    pub user: String,
    pub key: Secret,
}

/// A Keystone domain, by id or by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainRef {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl DomainRef {
    fn json(&self) -> Value {
        match (&self.id, &self.name) {
            (Some(id), _) => json!({ "id": id }),
            (None, Some(name)) => json!({ "name": name }),
            (None, None) => json!({ "id": "default" }),
        }
    }
}

/// A Keystone user, by id or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain: DomainRef,
}

impl UserRef {
    fn json(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        match (&self.id, &self.name) {
            (Some(id), _) => {
                m.insert("id".into(), json!(id));
            }
            (None, Some(name)) => {
                m.insert("name".into(), json!(name));
                m.insert("domain".into(), self.domain.json());
            }
            (None, None) => {}
        }
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Password {
        user: UserRef,
        password: Secret,
    },
    /// An application credential, by id, or by name together with its user.
    AppCredential {
        id: Option<String>,
        name: Option<String>,
        user: UserRef,
        secret: Secret,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// No explicit scope: the user's default project, or the application credential's.
    Unscoped,
    ProjectId(String),
    ProjectName {
        name: String,
        domain: DomainRef,
    },
    Domain(DomainRef),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Config {
    /// The Keystone endpoint (`https://keystone:5000` or `.../v3`).
    pub auth_url: String,
    pub identity: Identity,
    pub scope: Scope,
    /// Region of the object-store endpoint in the catalog (empty: the first one).
    pub region: String,
    /// Endpoint interface: public, internal or admin.
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    V1(V1Config),
    V3(Box<V3Config>),
}

impl AuthConfig {
    /// Builds the auth settings the way ChartMuseum reads them: `mode` `v1` from `ST_AUTH`,
    /// `ST_USER`, `ST_KEY`; `auto` from the `OS_*` variables (Keystone v3). `keyfile` and
    /// `passwordfile` (when not empty) replace `ST_KEY` and `OS_PASSWORD` /
    /// `OS_APPLICATION_CREDENTIAL_SECRET`. The variables are those the configuration captured
    /// (the names in [`crate::config::env_names::SWIFT`]).
    pub fn from_env(
        mode: &str,
        region: &str,
        keyfile: &str,
        passwordfile: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AuthConfig, String> {
        let get = |k: &str| env(k).filter(|v| !v.is_empty());
        match mode {
            "v1" => {
                let missing = |k: &str| {
                    format!("Openstack (object storage): missing environment variable {k}")
                };
                let url = get("ST_AUTH").ok_or_else(|| missing("ST_AUTH"))?;
                let user = get("ST_USER").ok_or_else(|| missing("ST_USER"))?;
                let key = Secret::pick(keyfile, get("ST_KEY")).ok_or_else(|| missing("ST_KEY"))?;
                Ok(AuthConfig::V1(V1Config { url, user, key }))
            }
            "auto" | "" => {
                let auth_url = get("OS_AUTH_URL").ok_or_else(|| {
                    "Openstack (authenticate): missing environment variable OS_AUTH_URL".to_string()
                })?;
                let domain = DomainRef {
                    id: get("OS_DOMAIN_ID"),
                    name: get("OS_DOMAIN_NAME"),
                };
                let user_domain = match (get("OS_USER_DOMAIN_ID"), get("OS_USER_DOMAIN_NAME")) {
                    (None, None) => domain.clone(),
                    (id, name) => DomainRef { id, name },
                };
                let user = UserRef {
                    id: get("OS_USERID").or_else(|| get("OS_USER_ID")),
                    name: get("OS_USERNAME"),
                    domain: user_domain,
                };
                let app_id = get("OS_APPLICATION_CREDENTIAL_ID");
                let app_name = get("OS_APPLICATION_CREDENTIAL_NAME");
                let identity = if app_id.is_some() || app_name.is_some() {
                    let secret =
                        Secret::pick(passwordfile, get("OS_APPLICATION_CREDENTIAL_SECRET"))
                            .ok_or("Openstack (authenticate): missing environment variable OS_APPLICATION_CREDENTIAL_SECRET")?;
                    if app_id.is_none() && user.id.is_none() && user.name.is_none() {
                        return Err("Openstack (authenticate): an application credential given by name (OS_APPLICATION_CREDENTIAL_NAME) needs OS_USERNAME or OS_USERID".into());
                    }
                    Identity::AppCredential {
                        id: app_id,
                        name: app_name,
                        user,
                        secret,
                    }
                } else {
                    if user.id.is_none() && user.name.is_none() {
                        return Err("Openstack (authenticate): missing environment variable OS_USERNAME or OS_USERID".into());
                    }
                    let password = Secret::pick(passwordfile, get("OS_PASSWORD")).ok_or(
                        "Openstack (authenticate): missing environment variable OS_PASSWORD",
                    )?;
                    Identity::Password { user, password }
                };
                let project_id = get("OS_PROJECT_ID").or_else(|| get("OS_TENANT_ID"));
                let project_name = get("OS_PROJECT_NAME").or_else(|| get("OS_TENANT_NAME"));
                let scope = if matches!(identity, Identity::AppCredential { .. }) {
                    Scope::Unscoped
                } else if let Some(id) = project_id {
                    Scope::ProjectId(id)
                } else if let Some(name) = project_name {
                    let domain = match (get("OS_PROJECT_DOMAIN_ID"), get("OS_PROJECT_DOMAIN_NAME"))
                    {
                        (None, None) => domain.clone(),
                        (id, name) => DomainRef { id, name },
                    };
                    Scope::ProjectName { name, domain }
                } else if domain.id.is_some() || domain.name.is_some() {
                    Scope::Domain(domain)
                } else {
                    Scope::Unscoped
                };
                let region = if region.is_empty() {
                    get("OS_REGION_NAME").unwrap_or_default()
                } else {
                    region.to_string()
                };
                let interface = get("OS_INTERFACE")
                    .or_else(|| get("OS_ENDPOINT_TYPE"))
                    .map(|i| i.trim_end_matches("URL").to_lowercase())
                    .unwrap_or_else(|| "public".into());
                Ok(AuthConfig::V3(Box::new(V3Config {
                    auth_url,
                    identity,
                    scope,
                    region,
                    interface,
                })))
            }
            other => Err(format!("Unsupported OpenStack auth protocol: {other}")),
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            AuthConfig::V1(c) => &c.url,
            AuthConfig::V3(c) => &c.auth_url,
        }
    }
}

/// A token and the storage URL it is good for.
#[derive(Debug)]
pub struct Token {
    pub value: String,
    pub storage_url: String,
    /// Log in again from this instant on (before the token expires).
    renew_at: Option<Instant>,
    /// The token is no longer accepted from this instant on.
    expires_at: Option<Instant>,
    generation: u64,
}

/// Why a login failed. `retryable` failures (connection errors, timeouts, 5xx) may go away by
/// themselves; the others (rejected credentials, bad answers) need an operator.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub retryable: bool,
    pub message: String,
}

impl AuthFailure {
    fn fatal(message: impl Into<String>) -> AuthFailure {
        AuthFailure {
            retryable: false,
            message: message.into(),
        }
    }
}

#[derive(Default)]
struct State {
    current: Option<Arc<Token>>,
    generation: u64,
    logins: u64,
}

pub struct Authenticator {
    cfg: AuthConfig,
    client: reqwest::Client,
    timeout: Duration,
    state: tokio::sync::Mutex<State>,
}

/// How long before expiry a token is renewed: a tenth of its life, at most a minute.
fn renew_margin(life: Duration) -> Duration {
    (life / 10).min(Duration::from_secs(60))
}

impl Authenticator {
    pub fn new(cfg: AuthConfig, client: reqwest::Client, timeout: Duration) -> Authenticator {
        Authenticator {
            cfg,
            client,
            timeout,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// How many logins were made (for tests and statistics).
    pub async fn logins(&self) -> u64 {
        self.state.lock().await.logins
    }

    /// A valid token: the cached one, or a new one. A renewal that fails while the old token
    /// is still valid keeps the old token.
    pub async fn token(&self) -> Result<Arc<Token>, AuthFailure> {
        let mut st = self.state.lock().await;
        let now = Instant::now();
        if let Some(t) = &st.current {
            if t.renew_at.is_none_or(|r| now < r) {
                return Ok(t.clone());
            }
        }
        let previous = st.current.clone();
        st.logins += 1;
        let result = match &self.cfg {
            AuthConfig::V1(c) => self.login_v1(c).await,
            AuthConfig::V3(c) => self.login_v3(c).await,
        };
        match result {
            Ok(mut t) => {
                let same = previous.as_ref().is_some_and(|p| p.value == t.value);
                if same {
                    // The auth service hands out the same token until it expires (TempAuth
                    // does): use it until then; a 401 after that leads to a fresh login.
                    t.renew_at = t.expires_at.map(|e| e + Duration::from_secs(1));
                }
                st.generation += 1;
                t.generation = st.generation;
                let t = Arc::new(t);
                crate::debug!("swift login", "endpoint" => self.cfg.endpoint(),
                    "storage_url" => t.storage_url.as_str(),
                    "expires_in_s" => t.expires_at.map(|e| e.saturating_duration_since(Instant::now()).as_secs()).unwrap_or(0));
                st.current = Some(t.clone());
                Ok(t)
            }
            Err(e) => {
                if let Some(p) = previous {
                    if p.expires_at.is_none_or(|e| Instant::now() < e) {
                        crate::warn!("swift token renewal failed; using the current token until it expires",
                            "error" => e.message.as_str());
                        return Ok(p);
                    }
                }
                st.current = None;
                Err(e)
            }
        }
    }

    /// Forgets `token` after Swift rejected it, unless a newer one was obtained meanwhile.
    pub async fn invalidate(&self, token: &Token) {
        let mut st = self.state.lock().await;
        if st
            .current
            .as_ref()
            .is_some_and(|c| c.generation == token.generation)
        {
            st.current = None;
        }
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, AuthFailure> {
        req.timeout(self.timeout)
            .send()
            .await
            .map_err(|e| AuthFailure {
                retryable: true,
                message: format!("{what}: {}", super::error_text(&e)),
            })
    }

    async fn login_v1(&self, c: &V1Config) -> Result<Token, AuthFailure> {
        let key = c.key.read().map_err(AuthFailure::fatal)?;
        let url = v1_url(&c.url);
        let what = format!("swift login at {url}");
        let resp = self
            .send(
                self.client
                    .get(&url)
                    .header("X-Auth-User", &c.user)
                    .header("X-Auth-Key", key),
                &what,
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_failure(&what, status));
        }
        let h = resp.headers();
        let header = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let value = header("x-auth-token")
            .or_else(|| header("x-storage-token"))
            .ok_or_else(|| AuthFailure::fatal(format!("{what}: no X-Auth-Token in the answer")))?;
        let storage_url = header("x-storage-url")
            .ok_or_else(|| AuthFailure::fatal(format!("{what}: no X-Storage-Url in the answer")))?;
        let life = header("x-auth-token-expires")
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        Ok(token_with_life(value, storage_url, life))
    }

    async fn login_v3(&self, c: &V3Config) -> Result<Token, AuthFailure> {
        let url = format!("{}/auth/tokens", v3_base(&c.auth_url));
        let what = format!("keystone login at {url}");
        let body = v3_request(c).map_err(AuthFailure::fatal)?;
        let resp = self
            .send(
                self.client
                    .post(&url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .header(http::header::ACCEPT, "application/json")
                    .body(body.to_string()),
                &what,
            )
            .await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(status_failure(&what, status));
        }
        let value = resp
            .headers()
            .get("x-subject-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| {
                AuthFailure::fatal(format!("{what}: no X-Subject-Token in the answer"))
            })?;
        let doc: Value = resp.json_value().await.map_err(|e| AuthFailure {
            retryable: true,
            message: format!("{what}: {e}"),
        })?;
        let storage_url = find_endpoint(&doc, &c.region, &c.interface)
            .map_err(|e| AuthFailure::fatal(format!("{what}: {e}")))?;
        let life = doc["token"]["expires_at"]
            .as_str()
            .and_then(parse_iso8601)
            .map(|ns| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as i64)
                    .unwrap_or(0);
                Duration::from_nanos((ns - now).max(0) as u64)
            });
        Ok(token_with_life(value, storage_url, life))
    }
}

trait JsonValue {
    async fn json_value(self) -> Result<Value, String>;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Result<Value, String> {
        let bytes = self.bytes().await.map_err(|e| super::error_text(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))
    }
}

fn token_with_life(value: String, storage_url: String, life: Option<Duration>) -> Token {
    let now = Instant::now();
    Token {
        value,
        storage_url: storage_url.trim_end_matches('/').to_string(),
        renew_at: life.map(|l| now + l - renew_margin(l)),
        expires_at: life.map(|l| now + l),
        generation: 0,
    }
}

fn status_failure(what: &str, status: StatusCode) -> AuthFailure {
    let rejected = matches!(status.as_u16(), 400 | 401 | 403 | 404);
    AuthFailure {
        retryable: !rejected,
        message: if rejected {
            format!("{what}: credentials rejected ({status})")
        } else {
            format!("{what}: {status}")
        },
    }
}

/// `ST_AUTH` as given; a bare host gets the usual `/auth/v1.0`.
fn v1_url(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    if rest.contains('/') && !rest.ends_with('/') {
        url.to_string()
    } else {
        format!("{}/auth/v1.0", url.trim_end_matches('/'))
    }
}

/// The Keystone v3 base URL: `OS_AUTH_URL` with `/v3` added when it names no version.
pub fn v3_base(url: &str) -> String {
    let u = url.trim_end_matches('/');
    if u.ends_with("/v3") {
        u.to_string()
    } else if let Some(base) = u.strip_suffix("/v2.0") {
        format!("{base}/v3")
    } else {
        format!("{u}/v3")
    }
}

/// The body of `POST /v3/auth/tokens`.
pub fn v3_request(c: &V3Config) -> Result<Value, String> {
    let identity = match &c.identity {
        Identity::Password { user, password } => {
            let mut u = user.json();
            u.insert("password".into(), json!(password.read()?));
            json!({ "methods": ["password"], "password": { "user": u } })
        }
        Identity::AppCredential {
            id,
            name,
            user,
            secret,
        } => {
            let mut a = serde_json::Map::new();
            match (id, name) {
                (Some(id), _) => {
                    a.insert("id".into(), json!(id));
                }
                (None, Some(name)) => {
                    a.insert("name".into(), json!(name));
                    a.insert("user".into(), Value::Object(user.json()));
                }
                (None, None) => return Err("application credential without id or name".into()),
            }
            a.insert("secret".into(), json!(secret.read()?));
            json!({ "methods": ["application_credential"], "application_credential": a })
        }
    };
    let mut auth = serde_json::Map::new();
    auth.insert("identity".into(), identity);
    match &c.scope {
        Scope::Unscoped => {}
        Scope::ProjectId(id) => {
            auth.insert("scope".into(), json!({ "project": { "id": id } }));
        }
        Scope::ProjectName { name, domain } => {
            auth.insert(
                "scope".into(),
                json!({ "project": { "name": name, "domain": domain.json() } }),
            );
        }
        Scope::Domain(d) => {
            auth.insert("scope".into(), json!({ "domain": d.json() }));
        }
    }
    Ok(json!({ "auth": auth }))
}

/// The object-store endpoint of a token's catalog, for `region` (any when empty) and
/// `interface`.
pub fn find_endpoint(doc: &Value, region: &str, interface: &str) -> Result<String, String> {
    let catalog = doc["token"]["catalog"]
        .as_array()
        .ok_or("the token has no service catalog (is the user scoped to a project?)")?;
    let mut regions = Vec::new();
    for svc in catalog.iter().filter(|s| s["type"] == "object-store") {
        for ep in svc["endpoints"].as_array().into_iter().flatten() {
            let ep_region = ep["region_id"]
                .as_str()
                .or_else(|| ep["region"].as_str())
                .unwrap_or("");
            if ep["interface"].as_str() != Some(interface) {
                continue;
            }
            regions.push(ep_region.to_string());
            if region.is_empty() || ep_region == region {
                if let Some(url) = ep["url"].as_str() {
                    return Ok(url.to_string());
                }
            }
        }
    }
    if regions.is_empty() {
        Err(format!(
            "no {interface} object-store endpoint in the service catalog"
        ))
    } else {
        Err(format!(
            "no {interface} object-store endpoint in region {region:?} (found: {})",
            regions.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| m.get(k).cloned()
    }

    #[test]
    fn v1_from_env() {
        let e = env_of(&[("ST_AUTH", "http://h/auth/v1.0"), ("ST_USER", "a:b")]);
        let err = AuthConfig::from_env("v1", "", "", "", &e).unwrap_err();
        assert_eq!(
            err,
            "Openstack (object storage): missing environment variable ST_KEY"
        );
        let c = AuthConfig::from_env("v1", "", "/k", "", &e).unwrap();
        assert_eq!(
            c,
            AuthConfig::V1(V1Config {
                url: "http://h/auth/v1.0".into(),
                user: "a:b".into(),
                key: Secret::File("/k".into())
            })
        );
        assert_eq!(v1_url("http://h:8080"), "http://h:8080/auth/v1.0");
        assert_eq!(v1_url("http://h:8080/"), "http://h:8080/auth/v1.0");
        assert_eq!(v1_url("http://h:8080/auth/v1.0"), "http://h:8080/auth/v1.0");
    }

    #[test]
    fn v3_password_project_scope() {
        let e = env_of(&[
            ("OS_AUTH_URL", "http://k:5000"),
            ("OS_USERNAME", "u"),
            ("OS_PASSWORD", "p"),
            ("OS_PROJECT_NAME", "proj"),
            ("OS_USER_DOMAIN_NAME", "Default"),
            ("OS_PROJECT_DOMAIN_ID", "default"),
            ("OS_REGION_NAME", "R1"),
        ]);
        let AuthConfig::V3(c) = AuthConfig::from_env("auto", "", "", "", &e).unwrap() else {
            panic!()
        };
        assert_eq!(c.region, "R1");
        assert_eq!(c.interface, "public");
        assert_eq!(v3_base(&c.auth_url), "http://k:5000/v3");
        assert_eq!(
            v3_request(&c).unwrap(),
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "u", "domain": {"name": "Default"}, "password": "p"}}},
                "scope": {"project": {"name": "proj", "domain": {"id": "default"}}}
            }})
        );
    }

    #[test]
    fn v3_application_credential() {
        let e = env_of(&[
            ("OS_AUTH_URL", "http://k:5000/v3/"),
            ("OS_APPLICATION_CREDENTIAL_ID", "abc"),
            ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
            ("OS_PROJECT_NAME", "ignored"),
        ]);
        let AuthConfig::V3(c) = AuthConfig::from_env("auto", "R", "", "", &e).unwrap() else {
            panic!()
        };
        assert_eq!(c.scope, Scope::Unscoped);
        assert_eq!(
            v3_request(&c).unwrap(),
            json!({"auth": {"identity": {"methods": ["application_credential"],
                "application_credential": {"id": "abc", "secret": "s"}}}})
        );
        let e = env_of(&[("OS_AUTH_URL", "http://k")]);
        assert!(AuthConfig::from_env("auto", "", "", "", &e).is_err());
        assert_eq!(
            AuthConfig::from_env("v2", "", "", "", &e).unwrap_err(),
            "Unsupported OpenStack auth protocol: v2"
        );
    }

    #[test]
    fn catalog_lookup() {
        let doc = json!({"token": {"catalog": [
            {"type": "identity", "endpoints": [{"interface": "public", "region_id": "R1", "url": "http://k"}]},
            {"type": "object-store", "endpoints": [
                {"interface": "internal", "region_id": "R1", "url": "http://int/v1/AUTH_p"},
                {"interface": "public", "region_id": "R1", "url": "http://r1/v1/AUTH_p"},
                {"interface": "public", "region_id": "R2", "url": "http://r2/v1/AUTH_p"}]}
        ]}});
        assert_eq!(
            find_endpoint(&doc, "R2", "public").unwrap(),
            "http://r2/v1/AUTH_p"
        );
        assert_eq!(
            find_endpoint(&doc, "", "public").unwrap(),
            "http://r1/v1/AUTH_p"
        );
        assert_eq!(
            find_endpoint(&doc, "R1", "internal").unwrap(),
            "http://int/v1/AUTH_p"
        );
        let e = find_endpoint(&doc, "R3", "public").unwrap_err();
        assert!(e.contains("R1, R2"), "{e}");
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = format!("{:?}", Secret::Value("hunter2".into()));
        assert!(!s.contains("hunter2"));
    }
}
