//! Bearer-token auth as ChartMuseum does it (`bearerauth`): a JWT in `Authorization: Bearer`,
//! signed by the token service whose public key is in `authcertpath`, carrying the actions the
//! client may take in its `access` claim, found with a JMESPath expression
//! (`authactionssearchpath`).
//!
//! Differences from ChartMuseum, all on the safe side:
//! - the algorithm is fixed by the key: RS256 for an RSA key, ES256 for an EC (P-256) key. A
//!   token naming any other algorithm (`none`, an HMAC one with the public key as its secret) is
//!   refused before its signature is looked at;
//! - `exp` is required (a token without one would be valid forever); `exp`, `nbf` and `iat` are
//!   checked with [`LEEWAY_SECS`] of leeway for clock skew;
//! - the namespace is put into the expression as an escaped JMESPath string, so a repository
//!   name holding a quote cannot change the expression.

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

/// ChartMuseum's default expression.
pub const DEFAULT_SEARCH: &str =
    "access[?name=='$NAMESPACE' && type=='$ACCESS_ENTRY_TYPE'].actions[]";
/// ChartMuseum's access entry type.
pub const ACCESS_ENTRY_TYPE: &str = "artifact-repository";
/// Seconds of clock skew allowed for `exp`, `nbf` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    // ChartMuseum's messages for the three missing settings.
    #[error("Missing Auth Realm (authrealm, --auth-realm: bearerauth needs it)")]
    MissingRealm,
    #[error("Missing Auth Service (authservice, --auth-service: bearerauth needs it)")]
    MissingService,
    #[error(
        "Missing Auth Server Public Cert Path (authcertpath, --auth-cert-path: bearerauth needs it)"
    )]
    MissingCertPath,
    #[error("authcertpath: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "authcertpath: {path} holds no RSA or EC (P-256) public key or certificate in PEM form"
    )]
    NoKey { path: String },
    #[error("{key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// The bearer settings with the public key read.
#[derive(Clone)]
pub struct BearerAuth {
    pub realm: String,
    pub service: String,
    pub cert_path: String,
    /// The expression, with `$NAMESPACE` still in it.
    pub search: String,
    pub algorithm: Algorithm,
    key: DecodingKey,
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("cert_path", &self.cert_path)
            .field("search", &self.search)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl PartialEq for BearerAuth {
    fn eq(&self, o: &Self) -> bool {
        self.realm == o.realm
            && self.service == o.service
            && self.cert_path == o.cert_path
            && self.search == o.search
            && self.digest == o.digest
    }
}

fn header_safe(key: &'static str, v: &str) -> Result<(), BearerError> {
    if v.chars().any(|c| c.is_control() || c == '"' || c == '\\') {
        return Err(BearerError::Invalid {
            key,
            why: format!(
                "{v:?} holds a quote, backslash or control character (it goes into the WWW-Authenticate header)"
            ),
        });
    }
    Ok(())
}

impl BearerAuth {
    /// Checks the settings and reads the key file (`bearerauth` on).
    pub fn load(
        realm: &str,
        service: &str,
        cert_path: &str,
        search: &str,
    ) -> Result<BearerAuth, BearerError> {
        if realm.is_empty() {
            return Err(BearerError::MissingRealm);
        }
        if service.is_empty() {
            return Err(BearerError::MissingService);
        }
        if cert_path.is_empty() {
            return Err(BearerError::MissingCertPath);
        }
        header_safe("authrealm", realm)?;
        header_safe("authservice", service)?;
        let pem = std::fs::read(cert_path).map_err(|source| BearerError::Read {
            path: cert_path.to_string(),
            source,
        })?;
        let search = if search.is_empty() {
            DEFAULT_SEARCH
        } else {
            search
        };
        // The expression must compile once its variables are filled in.
        jmespath::compile(&substitute(search, "repo")).map_err(|e| BearerError::Invalid {
            key: "authactionssearchpath",
            why: format!("{search:?}: {e}"),
        })?;
        let (key, algorithm) = Self::parse_key(cert_path, &pem)?;
        Ok(BearerAuth {
            realm: realm.to_string(),
            service: service.to_string(),
            cert_path: cert_path.to_string(),
            search: search.to_string(),
            algorithm,
            key,
            digest: Sha256::digest(&pem).into(),
        })
    }

    /// The key and the one algorithm tokens must use with it.
    pub fn parse_key(path: &str, pem: &[u8]) -> Result<(DecodingKey, Algorithm), BearerError> {
        if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            return Ok((k, Algorithm::RS256));
        }
        if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            return Ok((k, Algorithm::ES256));
        }
        Err(BearerError::NoKey {
            path: path.to_string(),
        })
    }

    /// Whether the request's `Authorization` header grants `action` (`pull` or `push`) on
    /// `namespace`; `Err` carries the `WWW-Authenticate` value of the 401.
    pub fn check(
        &self,
        authorization: Option<&[u8]>,
        namespace: &str,
        action: &str,
    ) -> Result<(), HeaderValue> {
        if self.allowed(authorization, namespace, action) {
            return Ok(());
        }
        Err(self.challenge(namespace, action))
    }

    /// ChartMuseum's challenge: `Bearer realm="…",service="…",scope="artifact-repository:<namespace>:<action>"`.
    pub fn challenge(&self, namespace: &str, action: &str) -> HeaderValue {
        let v = format!(
            "Bearer realm=\"{}\",service=\"{}\",scope=\"{ACCESS_ENTRY_TYPE}:{namespace}:{action}\"",
            self.realm, self.service
        );
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    fn allowed(&self, authorization: Option<&[u8]>, namespace: &str, action: &str) -> bool {
        let Some(token) = authorization.and_then(token_of) else {
            return false;
        };
        let Some(claims) = self.verify(token) else {
            return false;
        };
        actions(&self.search, namespace, &claims)
            .iter()
            .any(|a| a == action)
    }

    /// The token's claims when its signature, algorithm and times are good.
    pub fn verify(&self, token: &str) -> Option<serde_json::Value> {
        let mut v = Validation::new(self.algorithm);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = false;
        v.required_spec_claims = ["exp".to_string()].into_iter().collect();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &v).ok()?;
        let claims = data.claims;
        // golang-jwt also refuses a token issued in the future.
        if let Some(iat) = claims.get("iat") {
            let iat = iat.as_f64()?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            if iat > now + LEEWAY_SECS as f64 {
                return None;
            }
        }
        Some(claims)
    }
}

/// The token of an `Authorization` header: what follows `bearer ` (any case), trimmed.
pub fn token_of(header: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(header).ok()?.trim();
    let prefix = s.get(..7)?;
    if !prefix.eq_ignore_ascii_case("bearer ") {
        return None;
    }
    let t = s[7..].trim();
    (!t.is_empty()).then_some(t)
}

/// The expression with `$NAMESPACE` and `$ACCESS_ENTRY_TYPE` filled in, quotes escaped so the
/// values stay inside JMESPath raw strings.
pub fn substitute(search: &str, namespace: &str) -> String {
    search
        .replace("$NAMESPACE", &namespace.replace('\'', "\\'"))
        .replace("$ACCESS_ENTRY_TYPE", ACCESS_ENTRY_TYPE)
}

/// The actions the claims grant on `namespace`: the string elements of the expression's
/// result (a single string counts as one).
pub fn actions(search: &str, namespace: &str, claims: &serde_json::Value) -> Vec<String> {
    if namespace.contains('\\') {
        return Vec::new(); // repository names never hold one; refuse rather than escape
    }
    let Ok(expr) = jmespath::compile(&substitute(search, namespace)) else {
        return Vec::new();
    };
    let Ok(found) = expr.search(claims.clone()) else {
        return Vec::new();
    };
    if let Some(s) = found.as_string() {
        return vec![s.clone()];
    }
    found
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_string().cloned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn default_expression_finds_actions() {
        let claims = json!({"access": [
            {"type": "artifact-repository", "name": "org1/repo1", "actions": ["pull"]},
            {"type": "artifact-repository", "name": "repo", "actions": ["pull", "push"]},
            {"type": "other", "name": "org1/repo1", "actions": ["push"]},
        ]});
        assert_eq!(actions(DEFAULT_SEARCH, "org1/repo1", &claims), ["pull"]);
        assert_eq!(actions(DEFAULT_SEARCH, "repo", &claims), ["pull", "push"]);
        assert!(actions(DEFAULT_SEARCH, "org2", &claims).is_empty());
        // A quote in a namespace stays inside the string.
        assert!(actions(DEFAULT_SEARCH, "x' || name=='repo", &claims).is_empty());
        assert!(actions(DEFAULT_SEARCH, "a\\", &claims).is_empty());
    }

    #[test]
    fn token_prefix() {
        assert_eq!(token_of(b"Bearer abc"), Some("abc"));
        assert_eq!(token_of(b"bEaReR  abc "), Some("abc"));
        assert_eq!(token_of(b"Basic abc"), None);
        assert_eq!(token_of(b"Bearer "), None);
        assert_eq!(token_of(b"Bear"), None);
        assert_eq!(token_of("Beärer x".as_bytes()), None);
    }

    #[test]
    fn missing_settings_use_chartmuseum_messages() {
        let e = |r, s, c| BearerAuth::load(r, s, c, "").unwrap_err().to_string();
        assert!(e("", "s", "c").starts_with("Missing Auth Realm"));
        assert!(e("r", "", "c").starts_with("Missing Auth Service"));
        assert!(e("r", "s", "").starts_with("Missing Auth Server Public Cert Path"));
        assert!(e("r", "s", "/nonexistent.pem").contains("/nonexistent.pem"));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Any bytes as a key file: a key or a clear error, never a panic.
        #[test]
        fn any_bytes_as_key(pem in proptest::collection::vec(any::<u8>(), 0..400),
                            prefix in proptest::sample::select(vec!["", "-----BEGIN PUBLIC KEY-----\n",
                                "-----BEGIN CERTIFICATE-----\n", "-----BEGIN RSA PUBLIC KEY-----\n"])) {
            let mut p = prefix.as_bytes().to_vec();
            p.extend_from_slice(&pem);
            let _ = BearerAuth::parse_key("k.pem", &p);
        }

        /// Any namespace and claims: actions are found or not, never a panic.
        #[test]
        fn any_namespace(ns in "\\PC{0,40}", name in "\\PC{0,10}") {
            let claims = json!({"access": [{"type": "artifact-repository", "name": name, "actions": ["pull"]}]});
            let got = actions(DEFAULT_SEARCH, &ns, &claims);
            if got == ["pull"] { prop_assert_eq!(&ns, &name); }
        }
    }
}
