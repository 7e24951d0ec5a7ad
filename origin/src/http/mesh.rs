//! The mesh listener: mutual TLS 1.3 ([`crate::mesh::tls`]), then HTTP/1.1 or HTTP/2 with a few
//! routes for nodes of the mesh. Every caller is known by its certificate's name:
//!
//! - `GET /mesh/health`: this node's name and the caller's (any node);
//! - `POST /mesh/invalidate` `{"what":"account:acct_..."|"key:<id>"}`: drop that account's or
//!   key's cached lookups here (any node; what a peer sends after a change);
//! - `POST /mesh/admin`: an operator command (`defense::admin::AdminOp` as JSON), only for the
//!   names in `mesh.operators` (others: 403 `insufficient_clearance`). What the CLI's
//!   `--remote` sends.
//!
//! A handshake that fails (no certificate, another CA, expired, revoked) is counted in
//! `heady_mesh_handshakes_total{outcome}` and logged; the connection is closed.

use crate::accounts::broadcast::Invalidation;
use crate::app::App;
use crate::defense::admin::{AdminOp, AdminReply};
use crate::error::{Error, ErrorCode};
use crate::http::body::{self, full, Body};
use crate::http::conn::{ConnState, Timeouts, Tracked};
use crate::http::respond;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const MAX_BODY: usize = 64 * 1024;

/// Who called, from the certificate the handshake verified.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub serial: String,
    pub addr: SocketAddr,
}

/// Binds `mesh.listen` (when the mesh is configured) and serves it on the app's background
/// work: it stops accepting when that is cancelled and drains itself.
pub async fn start(app: &Arc<App>) -> anyhow::Result<()> {
    let (Some(addr), Some((tls, _))) = (app.config.mesh.listen, &app.mesh) else {
        return Ok(());
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("mesh.listen {addr}: {e}"))?;
    if let Ok(bound) = listener.local_addr() {
        let _ = app.mesh_addr.set(bound);
    }
    app.background
        .spawn_to_end(serve(listener, app.clone(), tls.server.clone()));
    Ok(())
}

/// At most this many mesh connections at once (handshakes included); more wait in the
/// kernel's accept queue. Peers keep a few connections each.
const MAX_CONNECTIONS: usize = 512;

/// Serves until the app's background work is cancelled, then lets open requests finish (up to
/// 10 s; connections still open then are cut). Connections are held to the same header and
/// idle timeouts as the public listener (`http.*`).
pub async fn serve(listener: TcpListener, app: Arc<App>, tls: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    let token = app.background.token();
    let mut connections = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let timeouts = Timeouts {
        header: app.config.http.header_timeout(),
        idle: app.config.http.idle_timeout(),
    };
    let builder = auto::Builder::new(TokioExecutor::new());
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mesh listener: mutual TLS 1.3");
    }
    loop {
        // Finished connections are reaped as we go.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            _ = token.cancelled() => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "mesh: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = token.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let draining = token.clone();
        let builder = builder.clone();
        connections.spawn(async move {
            let _slot = slot;
            let handshake = tokio::select! {
                h = tokio::time::timeout(timeouts.header, acceptor.accept(stream)) => h,
                _ = draining.cancelled() => return,
            };
            let tls = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    let outcome = refusal(&e);
                    app.metrics.mesh_handshake(outcome);
                    tracing::debug!(%addr, error = %e, outcome, "mesh: handshake refused");
                    return;
                }
                Err(_) => {
                    app.metrics.mesh_handshake("timeout");
                    tracing::debug!(%addr, "mesh: handshake not complete within http.header_timeout_secs");
                    return;
                }
            };
            let caller = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| crate::mesh::ca::name_and_serial(c));
            let Some((name, serial)) = caller else {
                app.metrics.mesh_handshake("bad_certificate");
                return;
            };
            app.metrics.mesh_handshake("accepted");
            tracing::debug!(%addr, node = %name, %serial, "mesh: connection");
            let caller = Arc::new(Caller { name, serial, addr });
            let state = ConnState::new();
            let svc_state = state.clone();
            let svc = service_fn(move |req| {
                let app = app.clone();
                let caller = caller.clone();
                let busy = svc_state.begin();
                async move {
                    let resp = answer(&app, &caller, req).await;
                    Ok::<_, Infallible>(resp.map(|b| Tracked::boxed(b, busy)))
                }
            });
            super::drive(&builder, tls, svc, state, draining, timeouts, addr).await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "mesh: connections still open after 10 s: closing them"
        );
        connections.shutdown().await;
    }
}

/// The metric label of a refused handshake.
fn refusal(e: &std::io::Error) -> &'static str {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return "io_error";
    };
    use rustls::CertificateError as C;
    match tls {
        rustls::Error::NoCertificatesPresented => "no_certificate",
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "expired",
        rustls::Error::InvalidCertificate(C::Revoked) => "revoked",
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => "unknown_issuer",
        rustls::Error::InvalidCertificate(_) => "bad_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "tls_error",
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn answer(app: &Arc<App>, caller: &Caller, req: Request<Incoming>) -> Response<Body> {
    let request_id = format!("{:016x}", rand::random::<u64>());
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_string();
    let result = route(app, caller, &parts.method, &path, &parts.headers, incoming).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::info!(request_id = %request_id, node = %caller.name, method = %parts.method, %path, code = %e.code, message = %e.message, "mesh: request refused");
            respond::error(&e, &request_id)
        }
    };
    let route_label = match path.as_str() {
        "/mesh/health" | "/mesh/invalidate" | "/mesh/admin" => path.clone(),
        _ => "other".to_string(),
    };
    app.metrics
        .mesh_request(route_label, resp.status().as_u16());
    resp
}

async fn route(
    app: &Arc<App>,
    caller: &Caller,
    method: &Method,
    path: &str,
    headers: &http::HeaderMap,
    incoming: Incoming,
) -> Result<Response<Body>, Error> {
    let read = |incoming: Incoming| {
        body::read(incoming, headers, MAX_BODY, app.config.http.body_timeout())
    };
    match (method, path) {
        (&Method::GET, "/mesh/health") => Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "node": app.mesh_name(),
                "caller": caller.name,
            }),
        )),
        (&Method::POST, "/mesh/invalidate") => {
            let bytes: Bytes = read(incoming).await?;
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Body {
                what: String,
            }
            let b: Body = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid_json(format!("/mesh/invalidate: {e}")))?;
            let inv: Invalidation = b.what.parse().map_err(Error::bad_request)?;
            app.defense.accounts.drop_cached(&inv);
            tracing::debug!(node = %caller.name, what = %inv, "mesh: invalidation");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"dropped": inv.to_string()}),
            ))
        }
        (&Method::POST, "/mesh/admin") => {
            if !app.config.mesh.operators.iter().any(|o| o == &caller.name) {
                return Err(Error::forbidden(
                    ErrorCode::InsufficientClearance,
                    format!(
                        "the mesh certificate {:?} is not an operator's (mesh.operators)",
                        caller.name
                    ),
                ));
            }
            let bytes = read(incoming).await?;
            let op: AdminOp = serde_json::from_slice(&bytes)
                .map_err(|e| Error::invalid_json(format!("/mesh/admin: {e}")))?;
            tracing::info!(operator = %caller.name, serial = %caller.serial, op = op_name(&op), "mesh: operator command");
            let reply = crate::defense::admin::execute(&app.defense, op).await;
            let status = match reply {
                AdminReply::Error { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::OK,
            };
            Ok(json(status, &reply))
        }
        (_, "/mesh/health" | "/mesh/invalidate" | "/mesh/admin") => Err(Error::new(
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {path}"),
        )),
        _ => Err(Error::not_found(format!("no mesh route {path}"))),
    }
}

fn op_name(op: &AdminOp) -> &'static str {
    match op {
        AdminOp::CreateAccount { .. } => "create_account",
        AdminOp::ListAccounts => "list_accounts",
        AdminOp::ShowAccount { .. } => "show_account",
        AdminOp::UpdateAccount { .. } => "update_account",
        AdminOp::CreateKey(_) => "create_key",
        AdminOp::AddKey { .. } => "add_key",
        AdminOp::ListKeys { .. } => "list_keys",
        AdminOp::RevokeKey { .. } => "revoke_key",
        AdminOp::RegisterPqKey { .. } => "register_pq_key",
        AdminOp::ListBans => "list_bans",
        AdminOp::LiftBan { .. } => "lift_ban",
    }
}
