//! Hostile input: bearer-token auth (issue 9). Tokens are made here with throw-away RSA and EC
//! keys (the `openssl` command); forged ones (`alg: none`, HMAC with the public key as its
//! secret, another key, bad times, another repository) get ChartMuseum's 401 and challenge.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http::{Method, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::{Server, chart};

const REALM: &str = "https://auth.example.org/token";
const SERVICE: &str = "chartroom-test";

/// Keys in `dir`: `rsa.key`/`rsa.pub`, `rsa2.key` (another), `ec.key`/`ec.pub` (P-256, PKCS#8),
/// `rsa-cert.pem` (a certificate for the RSA key).
fn keys(dir: &Path) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(
            r#"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
openssl pkey -in rsa.key -pubout -out rsa.pub
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key
openssl pkey -in ec.key -pubout -out ec.pub
openssl req -x509 -key rsa.key -subj /CN=token-service -days 2 -out rsa-cert.pem 2>/dev/null
"#,
        )
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(name: &str, actions: &[&str]) -> Value {
    json!({
        "iat": now(),
        "exp": now() + 300,
        "access": [{"type": "artifact-repository", "name": name, "actions": actions}],
    })
}

fn sign(dir: &Path, key: &str, alg: Algorithm, claims: &Value) -> String {
    let pem = std::fs::read(dir.join(key)).unwrap();
    let k = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::HS256 => EncodingKey::from_secret(&pem),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(alg), claims, &k).unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn server(dir: &Path, pubkey: &str, extra: &[&str]) -> Server {
    let key = dir.join(pubkey);
    let mut args = vec![
        "--bearer-auth",
        "--auth-realm",
        REALM,
        "--auth-service",
        SERVICE,
        "--auth-cert-path",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::new(&args).await
}

async fn get(s: &Server, path: &str, token: Option<&str>) -> (StatusCode, Option<String>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let r = s.req(Method::GET, path, vec![], &headers).await;
    (r.status, r.header("www-authenticate"))
}

async fn upload(
    s: &Server,
    path: &str,
    name: &str,
    token: Option<&str>,
) -> (StatusCode, Option<String>) {
    let auth = token.map(|t| format!("bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let r = s
        .req(Method::POST, path, chart(name, "1.0.0"), &headers)
        .await;
    (r.status, r.header("www-authenticate"))
}

/// ChartMuseum's challenge (spec §7).
fn challenge(namespace: &str, action: &str) -> Option<String> {
    Some(format!(
        "Bearer realm=\"{REALM}\",service=\"{SERVICE}\",scope=\"artifact-repository:{namespace}:{action}\""
    ))
}

#[tokio::test]
async fn pull_push_and_forgeries_at_depth_0() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keys(d);
    let s = server(d, "rsa.pub", &[]).await;
    let unauthorized = (StatusCode::UNAUTHORIZED, challenge("repo", "pull"));
    // No token, and routes without auth.
    assert_eq!(get(&s, "/index.yaml", None).await, unauthorized);
    assert_eq!(get(&s, "/health", None).await.0, StatusCode::OK);
    assert_eq!(get(&s, "/info", None).await.0, StatusCode::OK);
    // Pull-only: reads yes, upload no (with the push challenge).
    let pull = sign(d, "rsa.key", Algorithm::RS256, &claims("repo", &["pull"]));
    assert_eq!(get(&s, "/index.yaml", Some(&pull)).await.0, StatusCode::OK);
    assert_eq!(
        upload(&s, "/api/charts", "a", Some(&pull)).await,
        (StatusCode::UNAUTHORIZED, challenge("repo", "push"))
    );
    // Push.
    let push = sign(
        d,
        "rsa.key",
        Algorithm::RS256,
        &claims("repo", &["pull", "push"]),
    );
    assert_eq!(
        upload(&s, "/api/charts", "a", Some(&push)).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        get(&s, "/charts/a-1.0.0.tgz", Some(&pull)).await.0,
        StatusCode::OK
    );
    let r = s
        .req(
            Method::DELETE,
            "/api/charts/a/1.0.0",
            vec![],
            &[("authorization", &format!("Bearer {pull}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "delete is a push");

    // Forgeries and bad times: each refused with the challenge.
    let mut bad: Vec<(&str, String)> = vec![
        (
            "another repository",
            sign(d, "rsa.key", Algorithm::RS256, &claims("other", &["pull"])),
        ),
        (
            "another entry type",
            sign(
                d,
                "rsa.key",
                Algorithm::RS256,
                &json!({"exp": now() + 300, "access": [{"type": "repository", "name": "repo", "actions": ["pull"]}]}),
            ),
        ),
        (
            "wrong key",
            sign(d, "rsa2.key", Algorithm::RS256, &claims("repo", &["pull"])),
        ),
        (
            "HS256 with the public key as secret",
            sign(d, "rsa.pub", Algorithm::HS256, &claims("repo", &["pull"])),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims("repo", &["pull"]))
            ),
        ),
    ];
    let mut expired = claims("repo", &["pull"]);
    expired["exp"] = json!(now() - 120);
    let mut early = claims("repo", &["pull"]);
    early["nbf"] = json!(now() + 300);
    let mut issued_later = claims("repo", &["pull"]);
    issued_later["iat"] = json!(now() + 300);
    let mut no_exp = claims("repo", &["pull"]);
    no_exp.as_object_mut().unwrap().remove("exp");
    for (what, c) in [
        ("expired", expired),
        ("not yet valid", early),
        ("issued in the future", issued_later),
        ("without exp", no_exp),
    ] {
        bad.push((what, sign(d, "rsa.key", Algorithm::RS256, &c)));
    }
    // Within the leeway is fine.
    let mut skewed = claims("repo", &["pull"]);
    skewed["exp"] = json!(now() - 5);
    skewed["nbf"] = json!(now() + 5);
    let skewed = sign(d, "rsa.key", Algorithm::RS256, &skewed);
    assert_eq!(
        get(&s, "/index.yaml", Some(&skewed)).await.0,
        StatusCode::OK
    );
    for (what, token) in &bad {
        assert_eq!(
            get(&s, "/index.yaml", Some(token)).await,
            unauthorized,
            "{what}"
        );
    }
    // The HMAC token really is a valid HS256 token for that secret: only the algorithm
    // restriction stops it.
    let hmac = &bad[3].1;
    let pem = std::fs::read(d.join("rsa.pub")).unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(
            hmac,
            &jsonwebtoken::DecodingKey::from_secret(&pem),
            &jsonwebtoken::Validation::new(Algorithm::HS256)
        )
        .is_ok()
    );
    // Not a bearer token at all.
    let r = s
        .req(
            Method::GET,
            "/index.yaml",
            vec![],
            &[("authorization", "Basic dTpw")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ec_keys_certificates_and_anonymous_get() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keys(d);
    // EC key: ES256 tokens; an RS256 one (even well signed by some RSA key) is refused.
    let s = server(d, "ec.pub", &["--auth-anonymous-get"]).await;
    assert_eq!(get(&s, "/index.yaml", None).await.0, StatusCode::OK);
    let push = sign(d, "ec.key", Algorithm::ES256, &claims("repo", &["push"]));
    let rsa = sign(d, "rsa.key", Algorithm::RS256, &claims("repo", &["push"]));
    assert_eq!(
        upload(&s, "/api/charts", "a", None).await,
        (StatusCode::UNAUTHORIZED, challenge("repo", "push"))
    );
    assert_eq!(
        upload(&s, "/api/charts", "a", Some(&rsa)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload(&s, "/api/charts", "a", Some(&push)).await.0,
        StatusCode::CREATED
    );
    // A certificate as authcertpath (ChartMuseum's "public cert").
    let s = server(d, "rsa-cert.pem", &[]).await;
    let pull = sign(d, "rsa.key", Algorithm::RS256, &claims("repo", &["pull"]));
    assert_eq!(get(&s, "/index.yaml", Some(&pull)).await.0, StatusCode::OK);
}

#[tokio::test]
async fn namespaces_at_depth_1_and_2_and_a_custom_expression() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keys(d);
    let s = server(d, "rsa.pub", &["--depth", "1"]).await;
    let org1 = sign(
        d,
        "rsa.key",
        Algorithm::RS256,
        &claims("org1", &["pull", "push"]),
    );
    assert_eq!(
        get(&s, "/org1/index.yaml", Some(&org1)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&s, "/org2/index.yaml", Some(&org1)).await,
        (StatusCode::UNAUTHORIZED, challenge("org2", "pull"))
    );
    assert_eq!(
        upload(&s, "/api/org1/charts", "a", Some(&org1)).await.0,
        StatusCode::CREATED
    );
    // A quote in a repository name cannot widen the expression: unescaped, this namespace
    // would make it `name=='org2'||name=='org1' && type==...`, true for org1's entry.
    assert_eq!(
        get(&s, "/org2'%7C%7Cname=='org1/index.yaml", Some(&org1)).await,
        (
            StatusCode::UNAUTHORIZED,
            challenge("org2'||name=='org1", "pull")
        )
    );

    let s = server(d, "rsa.pub", &["--depth", "2"]).await;
    let t = sign(
        d,
        "rsa.key",
        Algorithm::RS256,
        &claims("org1/repo1", &["pull"]),
    );
    assert_eq!(
        get(&s, "/org1/repo1/index.yaml", Some(&t)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&s, "/org1/repo2/index.yaml", Some(&t)).await,
        (StatusCode::UNAUTHORIZED, challenge("org1/repo2", "pull"))
    );
    assert_eq!(
        upload(&s, "/api/org1/repo1/charts", "a", Some(&t)).await,
        (StatusCode::UNAUTHORIZED, challenge("org1/repo1", "push"))
    );
    // A custom expression with both substitutions.
    let s = server(
        d,
        "rsa.pub",
        &[
            "--auth-actions-search-path",
            "grants[?repo=='$NAMESPACE' && kind=='$ACCESS_ENTRY_TYPE'].can[]",
        ],
    )
    .await;
    let custom = sign(
        d,
        "rsa.key",
        Algorithm::RS256,
        &json!({"exp": now() + 60, "grants": [{"repo": "repo", "kind": "artifact-repository", "can": ["pull"]}]}),
    );
    assert_eq!(
        get(&s, "/index.yaml", Some(&custom)).await.0,
        StatusCode::OK
    );
    let default_shape = sign(d, "rsa.key", Algorithm::RS256, &claims("repo", &["pull"]));
    assert_eq!(
        get(&s, "/index.yaml", Some(&default_shape)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[test]
fn bad_settings_are_start_up_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    keys(d);
    std::fs::write(d.join("junk.pem"), "not a key").unwrap();
    let load = |extra: &[&str]| {
        let mut args: Vec<String> =
            vec!["--storage".into(), "local".into(), "--bearer-auth".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let parsed = chartroom::config::parse_args(&args).unwrap();
        chartroom::config::load(&parsed, &|_| None, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let junk = d.join("junk.pem");
    let junk = junk.to_str().unwrap();
    let base = [
        "--auth-realm",
        "r",
        "--auth-service",
        "s",
        "--auth-cert-path",
    ];
    let mut a = base.to_vec();
    a.push(junk);
    let e = load(&a).unwrap_err();
    assert!(e.contains("authcertpath") && e.contains(junk), "{e}");
    let e = load(&[
        "--auth-realm",
        "r\"x",
        "--auth-service",
        "s",
        "--auth-cert-path",
        junk,
    ])
    .unwrap_err();
    assert!(e.contains("authrealm"), "{e}");
    let pubkey = d.join("rsa.pub");
    let mut a = base.to_vec();
    a.extend([
        pubkey.to_str().unwrap(),
        "--auth-actions-search-path",
        "access[?",
    ]);
    let e = load(&a).unwrap_err();
    assert!(e.contains("authactionssearchpath"), "{e}");
    // Basic credentials next to bearer auth: loaded, with a warning that they are not used.
    let args: Vec<String> = [
        "--storage",
        "local",
        "--bearer-auth",
        "--auth-realm",
        "r",
        "--auth-service",
        "s",
        "--auth-cert-path",
        pubkey.to_str().unwrap(),
        "--basic-auth-user",
        "u",
        "--basic-auth-pass",
        "p",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let parsed = chartroom::config::parse_args(&args).unwrap();
    let c = chartroom::config::load(&parsed, &|_| None, None).unwrap();
    assert!(c.bearer.is_some());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.contains("bearerauth takes precedence")),
        "{:?}",
        c.warnings
    );
}

/// A directory with the test keys, made once for the property test's cases.
fn shared_keys() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        keys(d.path());
        d
    })
    .path()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Any bytes as the Authorization header: 401 with the challenge, never a panic.
    #[test]
    fn any_authorization_header(value in proptest::collection::vec(any::<u8>(), 0..300),
                                prefix in proptest::sample::select(vec!["", "Bearer ", "bearer ", "Bearer e30.e30."])) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let s = rt.block_on(server(shared_keys(), "ec.pub", &[]));
        let mut v = prefix.as_bytes().to_vec();
        v.extend_from_slice(&value);
        let Ok(hv) = http::HeaderValue::from_bytes(&v) else { return Ok(()); };
        let req = http::Request::builder().uri("/index.yaml").header("authorization", hv)
            .body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
        let resp = rt.block_on(s.app.handle(req));
        prop_assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        prop_assert!(resp.headers().contains_key("www-authenticate"));
    }
}
