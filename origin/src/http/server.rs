//! The HTTP server: hyper 1 over tokio, request ids, body limits, the defense checks every
//! request passes, routing, metrics. `serve` stops accepting when told to and drains the
//! connections it has; what comes after (flush, checkpoint, index) is `App::shutdown`.

use super::{body, respond, routes};
use crate::api::Ctx;
use crate::app::App;
use crate::defense::Presented;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::Instrument;

/// A client's `X-Request-Id` is kept when it is short and plain; otherwise we mint one.
fn request_id(headers: &http::HeaderMap) -> String {
    if let Some(s) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        if (1..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        {
            return s.to_string();
        }
    }
    format!("{:016x}", rand::random::<u64>())
}

async fn handle(
    app: Arc<App>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<body::Body>, Infallible> {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let (parts, incoming) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let matched = routes::route(&method, &path);
    let span = tracing::debug_span!("request", id = %request_id, %method, route = matched.name);
    let mut limit_headers = Vec::new();
    let result = async {
        let body = if method == Method::GET || method == Method::HEAD {
            Bytes::new()
        } else {
            body::read(incoming, &parts.headers, app.config.max_body_bytes).await?
        };
        let defense = &app.defense;
        let identity = defense
            .identify(Presented {
                method: &method,
                uri: &parts.uri,
                headers: &parts.headers,
                body: &body,
                peer,
            })
            .await?;
        if defense.enabled {
            if heady_shared::api_paths::is_api_path(&path) {
                limit_headers = defense.limit(&identity).await?;
            }
            defense.authorize(&identity, matched.policy)?;
        }
        let ctx = Ctx {
            request_id: request_id.clone(),
            identity,
            method: method.clone(),
            path: path.clone(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        };
        (matched.handler)(app.clone(), ctx).await
    }
    .instrument(span)
    .await;
    let mut resp = match result {
        Ok(reply) => respond::reply(reply),
        Err(e) => {
            if e.is_server_error() {
                tracing::error!(request_id = %request_id, %method, %path, status = e.status(), code = %e.code, message = %e.message, "request failed");
            } else {
                tracing::info!(request_id = %request_id, %method, %path, %peer, status = e.status(), code = %e.code, message = %e.message, "request refused");
            }
            respond::error(&e)
        }
    };
    if !limit_headers.is_empty() && !resp.headers().contains_key("ratelimit") {
        respond::add_headers(&mut resp, &limit_headers);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let secs = start.elapsed().as_secs_f64();
    app.metrics
        .observe(matched.name, &method, resp.status().as_u16(), secs);
    tracing::debug!(request_id = %request_id, %method, %path, status = resp.status().as_u16(), ms = secs * 1e3, "request");
    Ok(resp)
}

/// Serves until `shutdown` resolves, then stops accepting and drains the open connections
/// (waiting up to `drain`).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> anyhow::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    tracing::info!(addr = %listener.local_addr()?, "listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let app = app.clone();
                let peer_ip = peer.ip();
                let svc = service_fn(move |req| handle(app.clone(), peer_ip, req));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no longer accepting; draining in-flight requests");
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            secs = drain.as_secs(),
            "connections still open after the drain period"
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
