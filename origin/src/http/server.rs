//! The HTTP server: hyper 1 over tokio, request ids, timeouts (`conn`), body limits, the
//! defense checks every request passes, routing, metrics. A request without an edge
//! signature is identified and refused on its head, before its body is read. `serve` stops
//! accepting when told to and drains the connections it has; what comes after (flush,
//! checkpoint, index) is `App::shutdown`.

use super::conn::{ConnState, Expiry, Timeouts, Tracked, Watched};
use super::{body, respond, routes};
use crate::api::Ctx;
use crate::app::App;
use crate::defense::Presented;
use bytes::Bytes;
use heady_shared::wire;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
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

/// The body of a request that may have one, within `max_body_bytes` (or the route's own
/// smaller limit) and the body timeout.
async fn read_body(
    app: &App,
    method: &Method,
    headers: &http::HeaderMap,
    incoming: Option<Incoming>,
    route_limit: Option<usize>,
) -> Result<Bytes, crate::error::Error> {
    let limit = route_limit.map_or(app.config.max_body_bytes, |l| {
        l.min(app.config.max_body_bytes)
    });
    match incoming {
        Some(b) if method != Method::GET && method != Method::HEAD => {
            body::read(b, headers, limit, app.config.http.body_timeout()).await
        }
        _ => Ok(Bytes::new()),
    }
}

async fn handle(
    app: Arc<App>,
    peer: IpAddr,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<body::Body>, Infallible> {
    let busy = conn.begin();
    let resp = answer(app, peer, req).await;
    Ok(resp.map(|b| Tracked::boxed(b, busy)))
}

async fn answer(app: Arc<App>, peer: IpAddr, req: Request<Incoming>) -> Response<body::Body> {
    let start = Instant::now();
    let request_id = request_id(req.headers());
    let (parts, incoming) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let matched = routes::route(&method, &path);
    let span = tracing::debug_span!("request", id = %request_id, %method, route = matched.name);
    let mut limit_headers = Vec::new();
    let result = async {
        // Only the edge's signature and a PQC key's signature (through Content-Digest) cover
        // the body; any other request is identified, limited and authorized on its head, and
        // a refusal is sent without reading the body.
        let signed = parts.headers.contains_key(wire::header::SIGNATURE)
            || crate::defense::pqc::is_signed(&parts.headers);
        let mut incoming = Some(incoming);
        let mut body = Bytes::new();
        if signed {
            body = read_body(
                &app,
                &method,
                &parts.headers,
                incoming.take(),
                matched.max_body,
            )
            .await?;
        }
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
            if crate::defense::is_limited_path(&path) && matched.policy.limited {
                limit_headers = defense.limit(&identity).await?;
            }
            defense.authorize(&identity, matched.policy)?;
        }
        if !signed {
            body = read_body(
                &app,
                &method,
                &parts.headers,
                incoming.take(),
                matched.max_body,
            )
            .await?;
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
            respond::error(&e, &request_id)
        }
    };
    if !limit_headers.is_empty() {
        respond::add_limit_headers(&mut resp, &limit_headers);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let secs = start.elapsed().as_secs_f64();
    app.metrics
        .observe(matched.name, &method, resp.status().as_u16(), secs);
    tracing::debug!(request_id = %request_id, %method, %path, status = resp.status().as_u16(), ms = secs * 1e3, "request");
    resp
}

/// Serves until `shutdown` resolves, then stops accepting and drains the open connections
/// (waiting up to `drain`). Every connection is held to the header and idle timeouts
/// (`http.*`); HTTP/2 connections are PINGed.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> anyhow::Result<()> {
    let connections = TaskTracker::new();
    let draining = CancellationToken::new();
    let timeouts = Timeouts {
        header: app.config.http.header_timeout(),
        idle: app.config.http.idle_timeout(),
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if let Some(every) = app.config.http.h2_keepalive() {
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(every)
            .keep_alive_timeout(every);
    }
    let tls = app
        .config
        .tls
        .server_config()?
        .map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    let fd_limit = crate::sys::raise_fd_limit();
    tracing::info!(addr = %listener.local_addr()?, ?fd_limit, tls = tls.is_some(), "listening");
    if fd_limit.is_some_and(|n| n < 4096) {
        tracing::warn!(
            ?fd_limit,
            "the open-file limit is low for a server: raise LimitNOFILE"
        );
    }
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
                let state = ConnState::new();
                let svc_state = state.clone();
                let svc = service_fn(move |req| handle(app.clone(), peer_ip, svc_state.clone(), req));
                let draining = draining.clone();
                let builder = builder.clone();
                let tls = tls.clone();
                connections.spawn(async move {
                    match tls {
                        None => drive(&builder, stream, svc, state, draining, timeouts, peer).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(timeouts.header, acceptor.accept(stream)).await {
                                Ok(Ok(stream)) => drive(&builder, stream, svc, state, draining, timeouts, peer).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake not complete within http.header_timeout_secs: closing"),
                            }
                        }
                    }
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: no longer accepting; draining in-flight requests");
    draining.cancel();
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
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

/// One connection, served until it ends, times out, or the server drains.
pub(crate) async fn drive<I, S>(
    builder: &auto::Builder<TokioExecutor>,
    stream: I,
    svc: S,
    state: Arc<ConnState>,
    draining: CancellationToken,
    timeouts: Timeouts,
    peer: std::net::SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let io = TokioIo::new(Watched::new(stream, state.clone()));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = draining.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            expiry = state.expired(timeouts), if !closing => match expiry {
                Expiry::Header => {
                    tracing::debug!(%peer, "request head not complete within http.header_timeout_secs: closing");
                    break;
                }
                Expiry::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
        }
    }
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
