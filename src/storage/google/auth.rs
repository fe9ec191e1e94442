//! OAuth access tokens for Cloud Storage: from a service-account JSON file (an RS256 JWT
//! assertion, signed with the account's private key, exchanged at its `token_uri`) or from
//! the GCE metadata server. A token is kept until shortly before it expires, and dropped when
//! the service answers 401 with it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::super::remote::{enc, error_text};

/// The scope asked for: objects read and written.
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

/// The metadata server's host when `GCE_METADATA_HOST` does not name another.
pub const METADATA_HOST: &str = "metadata.google.internal";

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// No token at all (an emulator with `storage.google.endpoint`).
    Anonymous,
    /// A service-account JSON file, read at every token fetch (so it can be rotated).
    ServiceAccount(PathBuf),
    /// The metadata server at this base URL (`http://metadata.google.internal`).
    Metadata(String),
}

impl Source {
    /// Names the source in errors and logs.
    pub fn describe(&self) -> String {
        match self {
            Source::Anonymous => "no credentials".into(),
            Source::ServiceAccount(p) => format!("service account file {}", p.display()),
            Source::Metadata(b) => format!("metadata server {b}"),
        }
    }
}

/// The fields of a service-account key file that the token exchange needs.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: String,
    #[serde(default = "default_token_uri")]
    pub token_uri: String,
}

fn default_token_uri() -> String {
    "https://oauth2.googleapis.com/token".into()
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

/// Reads and checks a service-account file: its fields and its key.
pub fn read_service_account(path: &std::path::Path) -> Result<ServiceAccount, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let kind = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
    if let Some(t) = kind.filter(|t| t != "service_account") {
        return Err(format!(
            "{}: credentials of type {t:?} are not supported (only service_account key files)",
            path.display()
        ));
    }
    let sa: ServiceAccount = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a service-account key file: {e}", path.display()))?;
    if sa.client_email.is_empty() {
        return Err(format!("{}: no client_email", path.display()));
    }
    jsonwebtoken::EncodingKey::from_rsa_pem(sa.private_key.as_bytes())
        .map_err(|e| format!("{}: private_key is not an RSA key: {e}", path.display()))?;
    Ok(sa)
}

/// The signed JWT assertion of `sa`, issued at `now` (seconds), valid one hour.
pub fn assertion(sa: &ServiceAccount, now: u64) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    if !sa.private_key_id.is_empty() {
        header.kid = Some(sa.private_key_id.clone());
    }
    let claims = Claims {
        iss: sa.client_email.clone(),
        scope: SCOPE.into(),
        aud: sa.token_uri.clone(),
        iat: now,
        exp: now + 3600,
    };
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(sa.private_key.as_bytes())
        .map_err(|e| format!("private_key is not an RSA key: {e}"))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct Cached {
    value: String,
    renew_at: Instant,
}

/// The tokens of one backend.
pub struct Tokens {
    source: Source,
    client: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
    fetches: std::sync::atomic::AtomicU64,
}

/// How long before its expiry a token is renewed: 5 minutes, or half its life when shorter.
fn renew_margin(lifetime: Duration) -> Duration {
    (lifetime / 2).min(Duration::from_secs(300))
}

impl Tokens {
    pub fn new(source: Source, client: reqwest::Client) -> Tokens {
        Tokens {
            source,
            client,
            cached: tokio::sync::Mutex::new(None),
            fetches: Default::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Tokens fetched so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token (`None` for [`Source::Anonymous`]), fetched when there is none or it is
    /// due for renewal; `limit` bounds the fetch. `Err` says why none could be had.
    pub async fn token(&self, limit: Duration) -> Result<Option<String>, String> {
        if self.source == Source::Anonymous {
            return Ok(None);
        }
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if Instant::now() < c.renew_at {
                return Ok(Some(c.value.clone()));
            }
        }
        let fetched = tokio::time::timeout(limit, self.fetch())
            .await
            .unwrap_or_else(|_| Err("no answer in time".into()))
            .map_err(|e| format!("no access token from the {}: {e}", self.source.describe()))?;
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (value, lifetime) = fetched;
        *cached = Some(Cached {
            value: value.clone(),
            renew_at: Instant::now() + lifetime - renew_margin(lifetime),
        });
        Ok(Some(value))
    }

    /// Drops `used` (the service refused it), so the next call fetches another.
    pub async fn refused(&self, used: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.value == used) {
            *cached = None;
        }
    }

    async fn fetch(&self) -> Result<(String, Duration), String> {
        let rb = match &self.source {
            Source::Anonymous => return Err("no credentials".into()),
            Source::ServiceAccount(path) => {
                let sa = read_service_account(path)?;
                let now = u64::try_from(crate::timefmt::now_ns() / 1_000_000_000).unwrap_or(0);
                let jwt = assertion(&sa, now)?;
                let body = format!(
                    "grant_type={}&assertion={}",
                    enc("urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    enc(&jwt)
                );
                self.client
                    .post(&sa.token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            Source::Metadata(base) => self
                .client
                .get(format!(
                    "{base}/computeMetadata/v1/instance/service-accounts/default/token"
                ))
                .header("Metadata-Flavor", "Google"),
        };
        let resp = rb.send().await.map_err(|e| error_text(&e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| error_text(&e))?;
        if !status.is_success() {
            let mut detail: String = body.chars().take(300).collect();
            detail = detail.trim().to_string();
            return Err(if detail.is_empty() {
                format!("answered {status}")
            } else {
                format!("answered {status}: {detail}")
            });
        }
        let t: TokenAnswer =
            serde_json::from_str(&body).map_err(|e| format!("the answer is not a token: {e}"))?;
        if t.access_token.is_empty() {
            return Err("the answer has an empty access_token".into());
        }
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600).clamp(1, 86_400));
        Ok((t.access_token, lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_account_files_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("adc.json");
        std::fs::write(
            &p,
            r#"{"type":"authorized_user","client_id":"x","refresh_token":"y"}"#,
        )
        .unwrap();
        let e = read_service_account(&p).err().unwrap();
        assert!(
            e.contains("authorized_user") && e.contains("adc.json"),
            "{e}"
        );
    }

    #[test]
    fn renewal_comes_before_expiry() {
        assert_eq!(
            renew_margin(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(renew_margin(Duration::from_secs(2)), Duration::from_secs(1));
    }
}
