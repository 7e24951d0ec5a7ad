//! The HTTP server: hyper 1 over tokio, request ids, body limits, routing, metrics, and a
//! graceful shutdown that stops accepting, drains in-flight requests and checkpoints DuckDB.

use crate::api;
use crate::error::ApiError;
use crate::state::AppState;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
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

/// Boxed so a handler can answer with a whole buffer or a stream (server-sent events).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A whole-buffer body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// What a handler gets besides shared state: the request, its body read and bounded.
pub struct Ctx {
    pub request_id: String,
    /// Who is asking (anonymous unless a key or verified edge claims say otherwise).
    pub identity: crate::defense::Identity,
    pub method: Method,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => {
            let mut resp = Response::new(full(v));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => error_response(&ApiError::internal(format!(
            "could not encode response: {e}"
        ))),
    }
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut resp = Response::new(full(e.body()));
    *resp.status_mut() = e.status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    add_headers(&mut resp, &e.headers);
    resp
}

/// Adds `(name, value)` fields; a value that is not a valid header is dropped (they are ours).
pub fn add_headers(resp: &mut Response<Body>, headers: &[(&'static str, String)]) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().append(*name, v);
        }
    }
}

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

/// Reads the body up to the configured limit: 413 past it, before reading when
/// Content-Length already says so.
async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds the limit of {limit} bytes (max_body_bytes)"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("Content-Length is not a number"))?;
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
    }
}

async fn handle(
    state: Arc<AppState>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let matched = api::route(&method, &path);
    let span = tracing::debug_span!("request", id = %request_id, %method, route = matched.name);
    let mut limit_headers = Vec::new();
    let result = async {
        let body = if method == Method::GET || method == Method::HEAD {
            Bytes::new()
        } else {
            read_body(body, &parts.headers, state.config.max_body_bytes).await?
        };
        let defense = &state.defense;
        let identity = defense
            .identify(crate::defense::Presented {
                method: &method,
                uri: &parts.uri,
                headers: &parts.headers,
                body: &body,
                peer,
            })
            .await?;
        if defense.enabled {
            if crate::defense::is_limited_path(&path) {
                limit_headers = defense.limit(&identity).await?;
            }
            defense.authorize(&identity, matched.policy)?;
        }
        let ctx = Ctx {
            request_id: request_id.clone(),
            identity,
            method: method.clone(),
            path: path.clone(),
            headers: parts.headers,
            body,
        };
        (matched.handler)(state.clone(), ctx).await
    }
    .instrument(span)
    .await;
    let mut resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(request_id = %request_id, %method, %path, status = e.status.as_u16(), code = e.code, message = %e.message, "request failed");
            } else {
                tracing::info!(request_id = %request_id, %method, %path, %peer, status = e.status.as_u16(), code = e.code, message = %e.message, "request refused");
            }
            let mut r = error_response(&e);
            if let Some(secs) = e.retry_after {
                if !r.headers().contains_key(header::RETRY_AFTER) {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
            }
            r
        }
    };
    if !limit_headers.is_empty() && !resp.headers().contains_key("ratelimit") {
        add_headers(&mut resp, &limit_headers);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let secs = start.elapsed().as_secs_f64();
    state
        .metrics
        .observe(matched.name, &method, resp.status().as_u16(), secs);
    tracing::debug!(request_id = %request_id, %method, %path, status = resp.status().as_u16(), ms = secs * 1e3, "request");
    Ok(resp)
}

/// Serves until `shutdown` resolves, then drains connections (up to `drain`) and checkpoints.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> anyhow::Result<()> {
    let _admin = match state.config.admin_socket_path() {
        Some(path) => Some(crate::defense::admin::serve(&path, state.defense.clone()).await?),
        None => None,
    };
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
                let state = state.clone();
                let peer_ip = peer.ip();
                let svc = service_fn(move |req| handle(state.clone(), peer_ip, req));
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
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.close_blocking()).await??;
    tracing::info!("checkpointed; bye");
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
