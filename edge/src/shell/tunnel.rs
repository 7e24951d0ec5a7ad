//! Requests to the origin (`ORIGIN_URL`, reached through the Cloudflare Tunnel), each signed
//! with heady-shared's wire module: under `TUNNEL_AUTH = "pq-hybrid"` (the default) with the
//! key of the isolate's post-quantum hybrid session (`session`), under `"hmac"` with the
//! `HEADY_TUNNEL_KEY` secret. A request the origin refuses because its session expired or is
//! unknown there is sent once more under a new session, so re-keying never fails a request.

use super::entry::Call;
use super::respond;
use super::session::{self as tunnel_session, Peer};
use crate::defense::{self, ApiKey, Session};
use heady_shared::api_paths;
use heady_shared::http_sig::PublicKey;
use heady_shared::tunnel::TunnelAuth;
use heady_shared::wire::{self, Envelope, HmacSha256, RequestLine, SessionMac};
use heady_shared::{ApiError, ErrorBody, ErrorCode};
use wasm_bindgen::prelude::*;
use worker::{
    console_error, Fetch, Headers, Method, Request, RequestInit, RequestRedirect, Response,
};

/// Seconds a client should wait when the origin cannot be reached.
const ORIGIN_RETRY_AFTER_SECS: u64 = 5;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = crypto, js_name = randomUUID)]
    fn random_uuid() -> String;
}

struct Origin {
    base: String,
    auth: Auth,
}

enum Auth {
    Hmac(HmacSha256),
    Session(Peer),
}

fn origin(call: &Call) -> Result<Origin, ApiError> {
    let base = call
        .env
        .var("ORIGIN_URL")
        .map(|v| v.to_string().replace("{host}", &call.host))
        .ok()
        .filter(|v| v.starts_with("http://") || v.starts_with("https://"))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::ConfigError,
                "ORIGIN_URL must be the origin's http(s) URL (\"{host}\" stands for the property host)",
            )
        })?;
    let base = base.trim_end_matches('/').to_owned();
    let policy = match call.env.var("TUNNEL_AUTH") {
        Ok(v) => v
            .to_string()
            .parse::<TunnelAuth>()
            .map_err(|e| ApiError::new(ErrorCode::ConfigError, format!("TUNNEL_AUTH: {e}")))?,
        Err(_) => TunnelAuth::PqHybrid,
    };
    let auth = match policy {
        TunnelAuth::PqHybrid => Auth::Session(tunnel_session::peer(call, &base)?),
        TunnelAuth::Hmac => {
            let secret = call
                .env
                .secret("HEADY_TUNNEL_KEY")
                .map(|s| s.to_string())
                .unwrap_or_default();
            Auth::Hmac(HmacSha256::new(secret.as_bytes()).map_err(|e| {
                ApiError::new(
                    ErrorCode::ConfigError,
                    format!("HEADY_TUNNEL_KEY (wrangler secret put HEADY_TUNNEL_KEY): {e}"),
                )
            })?)
        }
    };
    Ok(Origin { base, auth })
}

fn unavailable(detail: &str) -> ApiError {
    console_error!("origin unavailable: {detail}");
    ApiError::new(
        ErrorCode::OriginUnavailable,
        "the origin cannot be reached; retry shortly",
    )
    .with_retry_after(ORIGIN_RETRY_AFTER_SECS)
}

/// One request to the origin, before signing.
struct Outgoing<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    /// The headers to pass on (already filtered).
    headers: Headers,
    body: Vec<u8>,
}

/// Signs and sends one request; under a session, once more under a new session when the
/// origin refuses the old one as expired or unknown.
async fn send(
    call: &Call,
    origin: &Origin,
    out: Outgoing<'_>,
    session: &Session,
) -> Result<Response, ApiError> {
    let peer = match &origin.auth {
        Auth::Hmac(hmac) => return send_once(call, origin, &out, session, hmac, None).await,
        Auth::Session(peer) => peer,
    };
    let tunnel = tunnel_session::current(call, peer).await?;
    let mac = SessionMac::new(tunnel.keys.mac_key, tunnel.keys.id);
    let mut response = send_once(call, origin, &out, session, &mac, Some(&tunnel.ticket)).await?;
    if response.status_code() != 401 {
        return Ok(response);
    }
    // Only a refused session is retried; any other 401 passes through as it came.
    let text = response.text().await.unwrap_or_default();
    let code = serde_json::from_str::<ErrorBody>(&text)
        .map(|b| b.error.code)
        .ok();
    if !matches!(
        code,
        Some(ErrorCode::TunnelSessionExpired | ErrorCode::TunnelSessionInvalid)
    ) {
        return Ok(rebuilt(401, &response, text));
    }
    tunnel_session::forget(&tunnel.ticket);
    let fresh = tunnel_session::current(call, peer).await?;
    let mac = SessionMac::new(fresh.keys.mac_key, fresh.keys.id);
    send_once(call, origin, &out, session, &mac, Some(&fresh.ticket)).await
}

/// A response whose body was read, with its headers.
fn rebuilt(status: u16, from: &Response, text: String) -> Response {
    let headers = Headers::new();
    for (name, value) in from.headers().entries() {
        let _ = headers.append(&name, &value);
    }
    worker::ResponseBuilder::new()
        .with_status(status)
        .with_headers(headers)
        .fixed(text.into_bytes())
}

async fn send_once(
    call: &Call,
    origin: &Origin,
    out: &Outgoing<'_>,
    session: &Session,
    auth: &dyn wire::TunnelAuthenticator,
    ticket: Option<&[u8]>,
) -> Result<Response, ApiError> {
    let Outgoing {
        method,
        path,
        query,
        headers: passed,
        body,
    } = out;
    let (method, path, query) = (*method, *path, *query);
    let headers = Headers::new();
    for (name, value) in passed.entries() {
        let _ = headers.append(&name, &value);
    }
    let envelope = Envelope {
        host: call.host.clone(),
        subject: session.subject.to_string(),
        tier: session.tier,
        clearance: session.clearance,
        client_ip: call.client_ip.to_string(),
        timestamp: call.now_ms / 1000,
        nonce: random_uuid(),
    };
    let line = RequestLine {
        method,
        path,
        query,
        body_sha256: wire::body_sha256(body),
    };
    for (name, value) in wire::sign(auth, &line, &envelope) {
        let _ = headers.set(name, &value);
    }
    if let Some(ticket) = ticket {
        let _ = headers.set(wire::header::SESSION, &wire::hex_encode(ticket));
    }
    let url = if query.is_empty() {
        format!("{}{path}", origin.base)
    } else {
        format!("{}{path}?{query}", origin.base)
    };
    let mut init = RequestInit::new();
    init.with_method(Method::from(method.to_owned()))
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if !(method == "GET" || method == "HEAD") {
        let array = js_sys::Uint8Array::from(body.as_slice());
        init.with_body(Some(array.into()));
    }
    let request = Request::new_with_init(&url, &init).map_err(|e| {
        ApiError::new(
            ErrorCode::TunnelError,
            format!("building the origin request: {e}"),
        )
    })?;
    let response = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| unavailable(&e.to_string()))?;
    // cloudflared answers 502 when the daemon behind it is down; Cloudflare 530 when the
    // tunnel itself is.
    let status = response.status_code();
    let is_json = response
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|ct| ct.contains("json"));
    if (status == 502 || status == 530) && !is_json {
        return Err(unavailable(&format!("origin answered {status}")));
    }
    Ok(response)
}

/// Tunnels the client's request. `path` replaces the request path when the conductor maps
/// an action to an origin route. The response body streams through.
pub async fn forward(
    call: &Call,
    req: &Request,
    session: &Session,
    path: Option<String>,
    body: Vec<u8>,
    rate: &[(&'static str, String)],
) -> Response {
    let origin = match origin(call) {
        Ok(o) => o,
        Err(e) => return respond::error(&e, rate),
    };
    let url = match req.url() {
        Ok(u) => u,
        Err(e) => return respond::error(&ApiError::bad_request(format!("request URL: {e}")), rate),
    };
    let path = path.unwrap_or_else(|| url.path().to_owned());
    let query = url.query().unwrap_or("").to_owned();
    let headers = Headers::new();
    for (name, value) in req.headers().entries() {
        if !defense::passed_to_origin(&name) {
            continue;
        }
        let _ = headers.append(&name, &value);
    }
    let method = req.method().to_string();
    let out = Outgoing {
        method: &method,
        path: &path,
        query: &query,
        headers,
        body,
    };
    match send(call, &origin, out, session).await {
        Ok(response) => {
            let mut extra = rate.to_vec();
            extra.push(("x-heady-served-by", "origin".to_owned()));
            respond::rewrap(response, &extra)
        }
        Err(e) => respond::error(&e, rate),
    }
}

/// Asks the origin who owns `key`: `Ok(Ok(session, ttl))`, `Ok(Err(refusal))` for a key the
/// origin refuses (its error: unknown, revoked, expired, account disabled, or 429 when the
/// address failed too often), `Err` when the origin cannot answer.
pub async fn identity(
    call: &Call,
    key: &ApiKey,
) -> Result<Result<(Session, u64), ApiError>, ApiError> {
    let headers = Headers::new();
    let _ = headers.set("authorization", &format!("Bearer {}", key.as_str()));
    let text = match lookup(call, api_paths::IDENTITY, headers).await? {
        Ok(text) => text,
        Err(refusal) => return Ok(Err(refusal)),
    };
    defense::parse_identity(&text)
        .map(Ok)
        .map_err(|e| unavailable(&e.to_string()))
}

/// Asks the origin for the account and public key of the PQC API key `keyid`, as
/// [`identity`] does for a bearer key: `Ok(Ok(session, key, ttl))`, `Ok(Err(refusal))`, or
/// `Err` when the origin cannot answer.
pub async fn pq_key(
    call: &Call,
    keyid: &str,
) -> Result<Result<(Session, PublicKey, u64), ApiError>, ApiError> {
    let path = api_paths::pq_key_identity_path(keyid);
    let text = match lookup(call, &path, Headers::new()).await? {
        Ok(text) => text,
        Err(refusal) => return Ok(Err(refusal)),
    };
    defense::parse_pq_identity(&text, keyid)
        .map(Ok)
        .map_err(|e| unavailable(&e.to_string()))
}

/// `GET path` at the origin for the edge itself, vouched for as the anonymous client until
/// the origin has answered: `Ok(Ok(body))` on 200, `Ok(Err(refusal))` on 401, 403 or 429 (the
/// origin's error), `Err` when the origin cannot answer.
async fn lookup(
    call: &Call,
    path: &str,
    headers: Headers,
) -> Result<Result<String, ApiError>, ApiError> {
    let origin = origin(call)?;
    let _ = headers.set("accept", "application/json");
    let asking = Session::anonymous(call.client_ip);
    let out = Outgoing {
        method: "GET",
        path,
        query: "",
        headers,
        body: Vec::new(),
    };
    let mut response = send(call, &origin, out, &asking).await?;
    match response.status_code() {
        200 => response
            .text()
            .await
            .map(Ok)
            .map_err(|e| unavailable(&format!("identity body: {e}"))),
        status @ (401 | 403 | 429) => {
            let text = response.text().await.unwrap_or_default();
            let refusal = serde_json::from_str::<heady_shared::ErrorBody>(&text)
                .map(|b| {
                    let mut e = b.error;
                    // The origin's request id names its request, not this one.
                    e.request_id = None;
                    e
                })
                .ok()
                .filter(|e| e.status() == status)
                .unwrap_or_else(|| {
                    ApiError::new(
                        heady_shared::ErrorCode::InvalidApiKey,
                        "the API key is unknown or revoked",
                    )
                });
            Ok(Err(refusal))
        }
        other => Err(unavailable(&format!("identity lookup answered {other}"))),
    }
}
