//! The chart repository's HTTP API as `chartroom publish` uses it (ChartMuseum's routes):
//! `GET /api[/<repo>]/charts` and `POST /api[/<repo>]/charts` with the package as multipart
//! field `chart`. Basic auth when credentials are given; every request has a timeout; answers
//! are read up to a bound.

use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use super::listing::{self, Listing, MAX_LISTING_BYTES};
use super::show;

/// How much of an error answer is read (for its message).
const MAX_ERROR_ANSWER: u64 = 64 * 1024;
/// How much of an error message is shown.
const MAX_MESSAGE_CHARS: usize = 300;
/// Characters escaped in a repository path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("invalid repository URL {url:?}: {error}")]
    BadUrl { url: String, error: String },
    #[error("cannot start the HTTP client: {0}")]
    Client(String),
    #[error("{method} {url}: {error}")]
    Request {
        method: &'static str,
        url: String,
        error: String,
    },
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        message: String,
    },
    #[error("GET {url}: the answer is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("GET {url}: {error}")]
    BadListing {
        url: String,
        error: listing::ListingError,
    },
}

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// 201.
    Saved,
    /// 409: the version is already there (not an error).
    AlreadyThere,
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub timeout: Duration,
}

pub struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    auth: Option<(String, String)>,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    pub fn new(opts: &ClientOptions) -> Result<Client, RepoError> {
        let bad = |error: String| RepoError::BadUrl {
            url: opts.url.clone(),
            error,
        };
        let base = reqwest::Url::parse(&opts.url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(bad("not an http:// or https:// URL".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("a query or fragment is not allowed".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("chartroom-publish/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .timeout(opts.timeout)
            .build()
            .map_err(|e| RepoError::Client(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RepoError::Client(e.to_string()))?;
        // Empty values count as absent (an empty HELM_REPO_USERNAME sends no credentials).
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let auth = match (given(&opts.user), given(&opts.password)) {
            (None, None) => None,
            (u, p) => Some((u.clone().unwrap_or_default(), p.clone().unwrap_or_default())),
        };
        Ok(Client {
            http,
            base,
            auth,
            runtime,
        })
    }

    /// `<base>/api[/<repo segments>]/charts`; an empty repository is depth 0.
    pub fn charts_url(&self, repo: &str) -> String {
        let mut url = self.base.as_str().trim_end_matches('/').to_string();
        url.push_str("/api");
        for seg in repo.split('/').filter(|s| !s.is_empty()) {
            url.push('/');
            url.extend(utf8_percent_encode(seg, SEGMENT));
        }
        url.push_str("/charts");
        url
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let b = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => b.basic_auth(u, Some(p)),
            None => b,
        }
    }

    /// Runs a future of this client to its end.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// One `GET /api/<repo>/charts`.
    pub fn list(&self, repo: &str) -> Result<Listing, RepoError> {
        self.block_on(self.list_async(repo))
    }

    async fn list_async(&self, repo: &str) -> Result<Listing, RepoError> {
        let url = self.charts_url(repo);
        let req_err = |e: reqwest::Error| RepoError::Request {
            method: "GET",
            url: url.clone(),
            error: error_chain(&e),
        };
        let resp = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(req_err)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(RepoError::Status {
                method: "GET",
                url: url.clone(),
                status,
                message: error_message(resp).await,
            });
        }
        let body = read_bounded(resp, MAX_LISTING_BYTES)
            .await
            .map_err(req_err)?
            .ok_or_else(|| RepoError::TooLarge {
                url: url.clone(),
                limit: MAX_LISTING_BYTES,
            })?;
        listing::parse(&body).map_err(|error| RepoError::BadListing {
            url: url.clone(),
            error,
        })
    }

    /// One `POST /api/<repo>/charts`, the package as multipart field `chart`.
    pub fn upload(&self, repo: &str, file_name: &str, bytes: &[u8]) -> Result<Uploaded, RepoError> {
        self.block_on(self.upload_async(repo, file_name, bytes))
    }

    /// [`Client::upload`], for several uploads in flight at once (see [`Client::block_on`]).
    pub async fn upload_async(
        &self,
        repo: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> Result<Uploaded, RepoError> {
        let url = self.charts_url(repo);
        let (content_type, body) = multipart(file_name, bytes);
        let resp = self
            .request(reqwest::Method::POST, &url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| RepoError::Request {
                method: "POST",
                url: url.clone(),
                error: error_chain(&e),
            })?;
        match resp.status().as_u16() {
            201 => Ok(Uploaded::Saved),
            409 => Ok(Uploaded::AlreadyThere),
            status => Err(RepoError::Status {
                method: "POST",
                url: url.clone(),
                status,
                message: error_message(resp).await,
            }),
        }
    }
}

/// reqwest's error with its causes ("error sending request: connection refused").
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    show(&text)
}

/// The body, or `None` when it is longer than `limit`.
async fn read_bounded(
    mut resp: reqwest::Response,
    limit: u64,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// The server's message from an error answer: `{"error":"..."}` as ChartMuseum and chartroom
/// write it, else the start of the body; control characters escaped, cut to 300 characters.
async fn error_message(resp: reqwest::Response) -> String {
    let body = match read_bounded(resp, MAX_ERROR_ANSWER).await {
        Ok(Some(b)) => b,
        Ok(None) => return "(an answer too large to show)".into(),
        Err(e) => return format!("(the answer could not be read: {})", error_chain(&e)),
    };
    message_of(&body)
}

/// See [`error_message`].
pub fn message_of(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(o)) => match o.get("error") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => String::from_utf8_lossy(body).into_owned(),
        },
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = show(text.trim());
    if text.is_empty() {
        return "(no message)".into();
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        let cut: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// A multipart/form-data body with the one field `chart`.
fn multipart(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("chartroom-publish-{:032x}", rand::random::<u128>());
    // The server names the package from its Chart.yaml; the file name is only informative.
    let file_name: String = file_name
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let mut body = Vec::with_capacity(bytes.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"chart\"; \
             filename=\"{file_name}\"\r\nContent-Type: application/gzip\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Result<Client, RepoError> {
        Client::new(&ClientOptions {
            url: url.into(),
            user: None,
            password: None,
            timeout: Duration::from_secs(5),
        })
    }

    #[test]
    fn urls() {
        let c = client("http://localhost:8080").unwrap();
        assert_eq!(c.charts_url(""), "http://localhost:8080/api/charts");
        assert_eq!(
            c.charts_url("stable"),
            "http://localhost:8080/api/stable/charts"
        );
        assert_eq!(
            c.charts_url("/org/team/"),
            "http://localhost:8080/api/org/team/charts"
        );
        assert_eq!(
            c.charts_url("a b?#%"),
            "http://localhost:8080/api/a%20b%3F%23%25/charts"
        );
        let c = client("https://example.org/prefix/").unwrap();
        assert_eq!(c.charts_url("x"), "https://example.org/prefix/api/x/charts");
        for bad in [
            "localhost:8080",
            "ftp://x",
            "",
            "http://x/?q=1",
            "mailto:a@b",
        ] {
            assert!(client(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages() {
        assert_eq!(message_of(br#"{"error":"no\nway"}"#), "no\\nway");
        assert_eq!(message_of(b"plain text"), "plain text");
        assert_eq!(message_of(b""), "(no message)");
        assert_eq!(message_of(&[b'x'; 1000]).chars().count(), 301);
    }

    #[test]
    fn multipart_body() {
        let (ct, body) = multipart("a\"b\n.tgz", b"DATA");
        let boundary = ct.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"chart\"; filename=\"a_b_.tgz\""));
        assert!(text.ends_with(&format!("\r\n\r\nDATA\r\n--{boundary}--\r\n")));
    }
}
