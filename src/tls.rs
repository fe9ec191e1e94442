//! HTTPS: the certificate chain, private key and client CA named by `tls.cert`, `tls.key` and
//! `tls.cacert`, read into a rustls server configuration (ring provider, TLS 1.2 and 1.3,
//! ALPN `http/1.1`).
//!
//! The files are read when the configuration is loaded (start-up, `check-config`, and every
//! reload), so a broken file stops a start or fails a reload, keeping the running material.
//! Every error names the key and the file. A half-configured setting (a certificate without a
//! key, a key without a certificate, a client CA without both) is an error: TLS and client
//! certificates are never off by accident.

use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {path} holds no PEM certificate (a \"BEGIN CERTIFICATE\" block)")]
    NoCert { key: &'static str, path: String },
    #[error("{key}: {path}: cannot parse PEM: {why}")]
    BadPem {
        key: &'static str,
        path: String,
        why: String,
    },
    #[error(
        "tls.key: {path} holds no private key (a PEM \"PRIVATE KEY\", \"EC PRIVATE KEY\" or \"RSA PRIVATE KEY\" block)"
    )]
    NoKey { path: String },
    #[error("tls.key: {path}: unusable private key: {why}")]
    BadKey { path: String, why: String },
    #[error("tls.cert {cert} and tls.key {key} do not match: {why}")]
    Mismatch {
        cert: String,
        key: String,
        why: String,
    },
    #[error("tls.cacert: {path}: {why}")]
    BadCa { path: String, why: String },
    #[error("{0}")]
    Half(String),
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// What the TLS keys configure: the paths, and the server configuration built from the files'
/// contents at load time.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert_path: String,
    pub key_path: String,
    /// Empty: no client certificates asked for.
    pub ca_path: String,
    pub server: Arc<ServerConfig>,
    /// SHA-256 over the three files' contents: two loads are equal when paths and bytes are.
    digest: [u8; 32],
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("TlsSettings")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .field("cacert", &self.ca_path)
            .finish()
    }
}

impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.cert_path == other.cert_path
            && self.key_path == other.key_path
            && self.ca_path == other.ca_path
            && self.digest == other.digest
    }
}

impl TlsSettings {
    /// An acceptor for new connections (cheap: shares the configuration).
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server.clone())
    }

    pub fn client_certs(&self) -> bool {
        !self.ca_path.is_empty()
    }

    /// For the start-up log.
    pub fn describe(&self) -> String {
        if self.client_certs() {
            format!(
                "https (cert {}, client certificates signed by {} required)",
                self.cert_path, self.ca_path
            )
        } else {
            format!("https (cert {})", self.cert_path)
        }
    }
}

fn read(key: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_string(),
        source,
    })
}

/// Every certificate in a PEM file, in order (other blocks are skipped).
pub fn parse_certs(
    key: &'static str,
    path: &str,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| TlsError::BadPem {
            key,
            path: path.to_string(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            key,
            path: path.to_string(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, SEC1 (EC) or PKCS#1 (RSA).
pub fn parse_key(path: &str, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_string(),
        },
        other => TlsError::BadPem {
            key: "tls.key",
            path: path.to_string(),
            why: other.to_string(),
        },
    })
}

/// Reads and checks the files; `None` when TLS is off (all three empty).
pub fn load(cert: &str, key: &str, ca: &str) -> Result<Option<TlsSettings>, TlsError> {
    match (cert.is_empty(), key.is_empty(), ca.is_empty()) {
        (true, true, true) => return Ok(None),
        (false, false, _) => {}
        (true, false, _) => {
            return Err(TlsError::Half(
                "tls.key is set but tls.cert is not (HTTPS needs both; refusing to serve plain HTTP)"
                    .into(),
            ));
        }
        (false, true, _) => {
            return Err(TlsError::Half(
                "tls.cert is set but tls.key is not (HTTPS needs both; refusing to serve plain HTTP)"
                    .into(),
            ));
        }
        (true, true, false) => {
            return Err(TlsError::Half(
                "tls.cacert is set but tls.cert and tls.key are not (client certificates need HTTPS; refusing to serve plain HTTP)"
                    .into(),
            ));
        }
    }
    let cert_bytes = read("tls.cert", cert)?;
    let key_bytes = read("tls.key", key)?;
    let ca_bytes = if ca.is_empty() {
        Vec::new()
    } else {
        read("tls.cacert", ca)?
    };
    let server = build(cert, &cert_bytes, key, &key_bytes, ca, &ca_bytes)?;
    let mut h = Sha256::new();
    for part in [&cert_bytes, &key_bytes, &ca_bytes] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    Ok(Some(TlsSettings {
        cert_path: cert.to_string(),
        key_path: key.to_string(),
        ca_path: ca.to_string(),
        server: Arc::new(server),
        digest: h.finalize().into(),
    }))
}

/// The server configuration from the files' bytes (paths only for messages).
pub fn build(
    cert_path: &str,
    cert: &[u8],
    key_path: &str,
    key: &[u8],
    ca_path: &str,
    ca: &[u8],
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = parse_certs("tls.cert", cert_path, cert)?;
    let private = parse_key(key_path, key)?;
    let signer = provider
        .key_provider
        .load_private_key(private.clone_key())
        .map_err(|e| TlsError::BadKey {
            path: key_path.to_string(),
            why: e.to_string(),
        })?;
    match CertifiedKey::new(chain.clone(), signer).keys_match() {
        Ok(()) => {}
        // The provider cannot tell the key's public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(TlsError::Mismatch {
                cert: cert_path.to_string(),
                key: key_path.to_string(),
                why: e.to_string(),
            });
        }
    }
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if ca_path.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let bad = |why: String| TlsError::BadCa {
            path: ca_path.to_string(),
            why,
        };
        for c in parse_certs("tls.cacert", ca_path, ca)? {
            roots
                .add(c)
                .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut server = builder
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::Mismatch {
            cert: cert_path.to_string(),
            key: key_path.to_string(),
            why: e.to_string(),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(server)
}

/// What a client that speaks plain HTTP to an HTTPS listener gets (as from Go's servers).
pub const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Runs the server side of a handshake, within `timeout` when it is not zero (a client that
/// opens a connection and sends nothing must not hold it forever). A connection whose first
/// byte is not a TLS handshake record gets [`PLAIN_HTTP_ANSWER`] when it looks like plain
/// HTTP, and is closed.
pub async fn handshake<S>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
    timeout: std::time::Duration,
) -> std::io::Result<tokio_rustls::server::TlsStream<Rewind<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let accept = async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let mut first = [0u8; 1];
        if stream.read(&mut first).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before the TLS handshake",
            ));
        }
        // 0x16: a TLS record of type handshake.
        if first[0] != 0x16 {
            if first[0].is_ascii_uppercase() {
                let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = stream.shutdown().await;
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a TLS handshake (plain HTTP to the HTTPS port?)",
            ));
        }
        acceptor
            .accept(Rewind {
                first: Some(first[0]),
                inner: stream,
            })
            .await
    };
    if timeout.is_zero() {
        accept.await
    } else {
        tokio::time::timeout(timeout, accept)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake"))?
    }
}

/// A stream with one byte, already read from it, put back in front.
pub struct Rewind<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(b) = self.first.take() {
                buf.put_slice(&[b]);
                return std::task::Poll::Ready(Ok(()));
            }
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn half_configured_is_an_error() {
        assert!(load("", "", "").unwrap().is_none());
        for (c, k, a, needle) in [
            ("c.pem", "", "", "tls.key is not"),
            ("", "k.pem", "", "tls.cert is not"),
            ("", "", "ca.pem", "tls.cacert is set"),
            ("", "k.pem", "ca.pem", "tls.cert is not"),
        ] {
            let e = load(c, k, a).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let e = load("/nonexistent/c.pem", "/nonexistent/k.pem", "")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls.cert") && e.contains("/nonexistent/c.pem"),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Any bytes as certificate, key or CA: a clear error, never a panic.
        #[test]
        fn any_bytes_as_pem(cert in proptest::collection::vec(any::<u8>(), 0..600),
                            key in proptest::collection::vec(any::<u8>(), 0..600),
                            ca in proptest::collection::vec(any::<u8>(), 0..600),
                            prefix in proptest::sample::select(vec![
                                "", "-----BEGIN CERTIFICATE-----\n",
                                "-----BEGIN PRIVATE KEY-----\n", "-----BEGIN EC PRIVATE KEY-----\n"])) {
            let mut c = prefix.as_bytes().to_vec();
            c.extend_from_slice(&cert);
            let mut k = prefix.as_bytes().to_vec();
            k.extend_from_slice(&key);
            let r = build("c.pem", &c, "k.pem", &k, "ca.pem", &ca);
            prop_assert!(r.is_err());
            let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
            prop_assert!(msg.contains(".pem"), "{}", msg);
        }
    }
}
