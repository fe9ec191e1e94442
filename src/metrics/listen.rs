//! `metricslisten`: `/metrics` on an address of its own (e.g. 127.0.0.1:9180), so that it is
//! not exposed with the API. That listener answers `GET /metrics` (while `enablemetrics` is on)
//! and 404 to everything else; the API's listeners then answer 404 to `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, header};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{ApiError, App, Body, error_response};

/// How long a scraper may take to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the metrics address, if one is configured.
pub async fn bind(addr: Option<SocketAddr>) -> std::io::Result<Option<TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| std::io::Error::new(e.kind(), format!("metricslisten {addr}: {e}")))
}

/// The answer of the metrics listener to one request.
pub fn answer<B>(app: &App, req: &Request<B>) -> Response<Body> {
    let on = app.http.load().cfg.enable_metrics;
    if on && req.method() == Method::GET && req.uri().path() == "/metrics" {
        let accept = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        app.metrics_response(accept)
    } else {
        error_response(&ApiError::RouteNotFound)
    }
}

/// Serves the metrics listener until `stop` changes.
pub fn spawn(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    if let Ok(a) = listener.local_addr() {
        crate::info!("serving /metrics", "on" => &a.to_string());
    }
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return,
                a = listener.accept() => a,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    crate::debug!("metrics accept failed", "error" => &e.to_string());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let app = app.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let resp = answer(&app, &req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new());
                b.header_read_timeout(HEADER_TIMEOUT);
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
}
