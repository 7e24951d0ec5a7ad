//! The tunnel session, kept in isolate memory: one handshake per isolate per session, shared
//! by every request of the isolate. Concurrent requests that find no session await the same
//! in-flight handshake (one JS promise); a session close to its end is replaced in the
//! background while requests keep using it (`heady_shared::tunnel::rekey_at`).
//!
//! Configuration: the secret `HEADY_TUNNEL_IDENTITY` (this edge's private identity) and the
//! variable `HEADY_ORIGIN_IDENTITIES` (the pinned origin fingerprints, comma-separated).

use super::entry::Call;
use heady_shared::tunnel::{
    self, parse_fingerprints, Fingerprint, HelloRandomness, Identity, Initiator, Session,
};
use heady_shared::{api_paths, ApiError, ErrorBody, ErrorCode};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::{future_to_promise, JsFuture};
use worker::{console_error, console_log, Date, Fetch, Headers, Method, Request, RequestInit};

/// A session and when to replace it (edge clock, Unix seconds).
#[derive(Clone)]
struct Cached {
    session: Session,
    rekey_at: u64,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    in_flight: Option<js_sys::Promise>,
    /// Why the last handshake failed, for the requests that awaited it.
    last_error: Option<ApiError>,
    /// The parsed identity, keyed by its secret text (parsing derives ML-DSA-65 keys).
    identity: Option<(String, Rc<Identity>)>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// What a handshake needs, all owned: it may outlive the request that started it.
#[derive(Clone)]
pub struct Peer {
    base: String,
    identity: Rc<Identity>,
    pinned: Vec<Fingerprint>,
}

fn config_error(message: String) -> ApiError {
    console_error!("tunnel session configuration: {message}");
    ApiError::new(ErrorCode::ConfigError, message)
}

/// Reads the identity secret and the pinned origin fingerprints.
pub fn peer(call: &Call, base: &str) -> Result<Peer, ApiError> {
    let secret = call
        .env
        .secret("HEADY_TUNNEL_IDENTITY")
        .map(|s| s.to_string())
        .map_err(|_| {
            config_error(
                "HEADY_TUNNEL_IDENTITY is not set (wrangler secret put HEADY_TUNNEL_IDENTITY < edge.key)"
                    .into(),
            )
        })?;
    let identity = STATE.with(|s| {
        let mut s = s.borrow_mut();
        match &s.identity {
            Some((text, id)) if *text == secret => Ok(id.clone()),
            _ => {
                let id = Rc::new(
                    Identity::from_secret_text(&secret)
                        .map_err(|e| config_error(format!("HEADY_TUNNEL_IDENTITY: {e}")))?,
                );
                s.identity = Some((secret.clone(), id.clone()));
                Ok(id)
            }
        }
    })?;
    let pins = call
        .env
        .var("HEADY_ORIGIN_IDENTITIES")
        .map(|v| v.to_string())
        .or_else(|_| {
            call.env
                .secret("HEADY_ORIGIN_IDENTITIES")
                .map(|v| v.to_string())
        })
        .map_err(|_| {
            config_error(
                "HEADY_ORIGIN_IDENTITIES is not set (the origin's fingerprint, htid1:...)".into(),
            )
        })?;
    let pinned = parse_fingerprints(&pins)
        .map_err(|e| config_error(format!("HEADY_ORIGIN_IDENTITIES: {e}")))?;
    if pinned.is_empty() {
        return Err(config_error("HEADY_ORIGIN_IDENTITIES is empty".into()));
    }
    Ok(Peer {
        base: base.to_owned(),
        identity,
        pinned,
    })
}

/// The session to sign with: the current one, or the one the (shared) handshake opens.
/// Starts the replacement of a session past its re-key time without waiting for it.
pub async fn current(call: &Call, peer: &Peer) -> Result<Session, ApiError> {
    let now = call.now_ms / 1000;
    let (usable, refresh) = STATE.with(|s| {
        let s = s.borrow();
        match &s.current {
            Some(c) if now < c.rekey_at => (Some(c.session.clone()), false),
            Some(c) if now < c.session.expires_at => (Some(c.session.clone()), true),
            _ => (None, false),
        }
    });
    if let Some(session) = usable {
        if refresh {
            let promise = start(peer);
            call.ctx.wait_until(async move {
                let _ = JsFuture::from(promise).await;
            });
        }
        return Ok(session);
    }
    let promise = start(peer);
    // The request that started it keeps it alive even if this one is cancelled.
    let keep = promise.clone();
    call.ctx.wait_until(async move {
        let _ = JsFuture::from(keep).await;
    });
    let _ = JsFuture::from(promise).await;
    STATE.with(|s| {
        let s = s.borrow();
        match &s.current {
            Some(c) if now < c.session.expires_at => Ok(c.session.clone()),
            _ => Err(s.last_error.clone().unwrap_or_else(|| {
                ApiError::new(ErrorCode::TunnelHandshakeFailed, "no tunnel session")
            })),
        }
    })
}

/// Forgets `ticket`'s session (the origin refused it as expired or unknown), so the next
/// request opens a new one.
pub fn forget(ticket: &[u8]) {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.current
            .as_ref()
            .is_some_and(|c| c.session.ticket == ticket)
        {
            s.current = None;
        }
    });
}

/// The in-flight handshake, or a new one.
fn start(peer: &Peer) -> js_sys::Promise {
    if let Some(p) = STATE.with(|s| s.borrow().in_flight.clone()) {
        return p;
    }
    let peer = peer.clone();
    let promise = future_to_promise(async move {
        let outcome = handshake(&peer).await;
        STATE.with(|s| {
            let mut s = s.borrow_mut();
            s.in_flight = None;
            match outcome {
                Ok(cached) => {
                    s.current = Some(cached);
                    s.last_error = None;
                }
                Err(e) => {
                    console_error!("tunnel handshake failed: {}", e.message);
                    s.last_error = Some(e);
                }
            }
        });
        Ok(JsValue::UNDEFINED)
    });
    STATE.with(|s| s.borrow_mut().in_flight = Some(promise.clone()));
    promise
}

fn failed(message: String) -> ApiError {
    ApiError::new(ErrorCode::TunnelHandshakeFailed, message)
}

fn unavailable(detail: String) -> ApiError {
    console_error!("origin unavailable during the tunnel handshake: {detail}");
    ApiError::new(
        ErrorCode::OriginUnavailable,
        "the origin cannot be reached; retry shortly",
    )
    .with_retry_after(5)
}

async fn handshake(peer: &Peer) -> Result<Cached, ApiError> {
    let now = Date::now().as_millis() / 1000;
    let mut random = [0u8; HelloRandomness::BYTES];
    getrandom::fill(&mut random).map_err(|e| failed(format!("no randomness: {e}")))?;
    let initiator = Initiator::start(&peer.identity, now, &HelloRandomness::from_bytes(&random))
        .map_err(|e| failed(e.to_string()))?;
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/octet-stream");
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(initiator.hello()).into()));
    let url = format!("{}{}", peer.base, api_paths::TUNNEL_HANDSHAKE);
    let request = Request::new_with_init(&url, &init)
        .map_err(|e| failed(format!("building the handshake request: {e}")))?;
    let mut response = Fetch::Request(request)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = response.status_code();
    let body = response
        .bytes()
        .await
        .map_err(|e| unavailable(format!("reading the welcome: {e}")))?;
    if status != 200 {
        let why = serde_json::from_slice::<ErrorBody>(&body)
            .map(|b| format!("{}: {}", b.error.code, b.error.message))
            .unwrap_or_else(|_| format!("status {status}"));
        if status == 502 || status == 503 || status == 530 {
            return Err(unavailable(why));
        }
        return Err(failed(format!("the origin refused the handshake: {why}")));
    }
    let session = initiator
        .finish(&body, &peer.pinned)
        .map_err(|e| failed(format!("the origin's welcome: {e}")))?;
    console_log!(
        "tunnel session {} opened with origin {} until {}",
        heady_shared::wire::hex_encode(&session.keys.id),
        session.origin,
        session.expires_at
    );
    Ok(Cached {
        rekey_at: tunnel::rekey_at(now, session.expires_at),
        session,
    })
}
