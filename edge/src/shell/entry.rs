//! The fetch handler: plan the request, then serve it from assets, redirect, or run the
//! defense and hand it to the edge conductor or the tunnel.

use super::{ai, limits, respond, tunnel, vectorize};
use crate::conductor::{self, Bindings, Dispatch};
use crate::defense::{self, Session, SignedRequest};
use crate::router::{self, Api, Plan, RequestFacts};
use crate::site;
use heady_shared::{discord, http_sig, ApiError, ErrorCode, GroupTable};
use std::net::IpAddr;
use worker::{console_error, event, Context, Date, Env, Request, Response, ResponseBuilder};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    Ok(handle(req, env, ctx).await)
}

/// Everything the handlers share for one request.
pub struct Call {
    pub env: Env,
    pub ctx: Context,
    pub host: String,
    /// `CF-Connecting-IP` (see `defense::client_ip`).
    pub client_ip: IpAddr,
    pub now_ms: u64,
}

async fn handle(mut req: Request, env: Env, ctx: Context) -> Response {
    let properties = match site::properties() {
        Ok(p) => p,
        Err(e) => {
            return respond::error(
                &ApiError::new(
                    ErrorCode::ConfigError,
                    format!("deploy/properties.toml: {e}"),
                ),
                &[],
            )
        }
    };
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let url_host = req.url().ok().and_then(|u| u.host_str().map(str::to_owned));
    // In production the URL's host is the Host header. Locally they can differ: Miniflare's
    // dispatchFetch keeps the caller's URL while Host names the local socket, and
    // `wrangler dev` may rewrite the URL to its listen address while keeping Host. Take
    // whichever names a property; else the URL's (for the 404).
    let host_header = [url_host.clone(), header("host")]
        .into_iter()
        .flatten()
        .find(|h| properties.for_host(&router::normalize_host(h)).is_some())
        .or(url_host)
        .unwrap_or_default();
    let accept = header("accept").unwrap_or_default();
    let method = req.method().to_string();
    let path = req.path();
    let groups = GroupTable::default();
    let plan = router::plan(
        properties,
        &groups,
        RequestFacts {
            host: &host_header,
            method: &method,
            path: &path,
            accept: &accept,
        },
    );
    let call = Call {
        env,
        ctx,
        host: router::normalize_host(&host_header),
        client_ip: defense::client_ip(header("cf-connecting-ip").as_deref()),
        now_ms: Date::now().as_millis(),
    };
    match plan {
        Plan::NotFound { host, json } => respond::not_found(&host, json),
        Plan::MethodNotAllowed { json } => {
            let err = ApiError::new(
                ErrorCode::MethodNotAllowed,
                "static pages answer GET and HEAD",
            );
            if json {
                respond::error(&err, &[("allow", "GET, HEAD".to_owned())])
            } else {
                ResponseBuilder::new()
                    .with_status(405)
                    .with_headers(respond::headers(
                        Some("text/plain; charset=utf-8"),
                        &[("allow", "GET, HEAD".to_owned())],
                    ))
                    .fixed(b"Method not allowed\n".to_vec())
            }
        }
        Plan::External { property } => {
            let configured = property
                .url_var
                .as_deref()
                .and_then(|var| call.env.var(var).ok())
                .map(|v| v.to_string());
            match property.external_url(configured.as_deref()) {
                Ok(location) => ResponseBuilder::new()
                    .with_status(302)
                    .with_headers(respond::headers(None, &[("location", location)]))
                    .empty(),
                Err(why) => {
                    console_error!("external property not configured: {why}");
                    respond::error(&ApiError::new(ErrorCode::PropertyNotConfigured, why), &[])
                }
            }
        }
        Plan::Asset { asset_path, .. } => serve_asset(&call, &asset_path, &path).await,
        Plan::Tunnel { .. } => {
            let session = Session::anonymous(call.client_ip);
            if let Some(banned) = limits::banned(&call, &session.subject).await {
                return respond::error(&banned, &[]);
            }
            match read_body(&mut req).await {
                Ok(body) => tunnel::forward(&call, &req, &session, None, body, &[]).await,
                Err(e) => respond::error(&e, &[]),
            }
        }
        Plan::DiscordInteraction { .. } => discord_interaction(&call, &mut req).await,
        Plan::Api { api, .. } => api_request(&call, &mut req, api).await,
    }
}

/// Discord's interactions endpoint: the signature is checked before anything else (401 when it
/// fails, as Discord requires); a `PING` gets its `PONG` here; every other interaction goes
/// to the origin unchanged, which checks the signature again and answers it. Discord's
/// signature is the caller's authentication, so neither the per-address limiter nor the ban
/// list (Discord sends from few addresses) applies here; the origin limits per Discord user.
async fn discord_interaction(call: &Call, req: &mut Request) -> Response {
    let key = match call.env.var("DISCORD_PUBLIC_KEY").map(|v| v.to_string()) {
        Ok(hex) if !hex.trim().is_empty() => discord::PublicKey::from_hex(&hex).map_err(|e| {
            ApiError::new(
                ErrorCode::DiscordNotConfigured,
                format!("the Worker variable DISCORD_PUBLIC_KEY is invalid: {e}"),
            )
        }),
        _ => Err(ApiError::new(
            ErrorCode::DiscordNotConfigured,
            "the Worker variable DISCORD_PUBLIC_KEY (the Discord application's public key) is not set",
        )),
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            console_error!("discord interaction refused: {}", e.message);
            return respond::error(&e, &[]);
        }
    };
    let body = match read_body(req).await {
        Ok(b) => b,
        Err(e) => return respond::error(&e, &[]),
    };
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let signature = header(discord::SIGNATURE_HEADER);
    let timestamp = header(discord::TIMESTAMP_HEADER);
    if let Err(refusal) = key.verify(
        signature.as_deref(),
        timestamp.as_deref(),
        &body,
        call.now_ms / 1000,
    ) {
        console_error!(
            "discord interaction from {} refused: {refusal}",
            call.client_ip
        );
        return respond::error(
            &ApiError::new(ErrorCode::InvalidDiscordSignature, refusal.to_string()),
            &[],
        );
    }
    if discord::interaction_kind(&body) == Some(discord::interaction_type::PING) {
        return ResponseBuilder::new()
            .with_headers(respond::headers(Some("application/json"), &[]))
            .fixed(discord::PONG_BODY.as_bytes().to_vec());
    }
    let session = Session::anonymous(call.client_ip);
    tunnel::forward(call, req, &session, None, body, &[]).await
}

async fn serve_asset(call: &Call, asset_path: &str, request_path: &str) -> Response {
    let assets = match call.env.assets("ASSETS") {
        Ok(a) => a,
        Err(_) => {
            return respond::error(
                &ApiError::new(ErrorCode::ConfigError, "the ASSETS binding is missing"),
                &[],
            )
        }
    };
    match assets
        .fetch(format!("https://assets.invalid{asset_path}"), None)
        .await
    {
        Ok(r) if r.status_code() == 404 => respond::not_found(&call.host, false),
        Ok(r) => respond::rewrap(r, &[]),
        Err(e) => respond::error(
            &ApiError::new(
                ErrorCode::AssetsUnavailable,
                format!("static assets for {request_path}: {e}"),
            ),
            &[],
        ),
    }
}

/// `/api/*`, `/v1/*` and `/mcp`: identify, ban list, limiter, then the conductor or the tunnel.
/// Stripe's webhook only passes the ban list: its signature is checked at the origin.
async fn api_request(call: &Call, req: &mut Request, api: Api) -> Response {
    if api == Api::Webhook {
        let session = Session::anonymous(call.client_ip);
        if let Some(banned) = limits::banned(call, &session.subject).await {
            return respond::error(&banned, &[]);
        }
        return match read_body(req).await {
            Ok(body) => tunnel::forward(call, req, &session, None, body, &[]).await,
            Err(e) => respond::error(&e, &[]),
        };
    }
    let header = |name: &str| req.headers().get(name).ok().flatten();
    let auth = header("authorization");
    let signed = defense::is_signed(
        header(http_sig::header::SIGNATURE_INPUT).is_some(),
        header(http_sig::header::SIGNATURE).is_some(),
    );
    // A signed request's body is read first: the signature covers its digest.
    let (session, read) = if signed {
        if auth.is_some() {
            return respond::error(&defense::conflicting_credentials(), &[]);
        }
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(e) => return respond::error(&e, &[]),
        };
        match identify_signed(call, req, &body).await {
            Ok(s) => (s, Some(body)),
            Err(e) => return respond::error(&e, &[]),
        }
    } else {
        match limits::identify(call, auth.as_deref()).await {
            Ok(s) => (s, None),
            Err(e) => return respond::error(&e, &[]),
        }
    };
    if let Some(banned) = limits::banned(call, &session.subject).await {
        return respond::error(&banned, &[]);
    }
    let rate = match limits::admit(call, &session).await {
        Ok(headers) => headers,
        Err(refusal) => return refusal,
    };
    let body = match read {
        Some(b) => b,
        None => match read_body(req).await {
            Ok(b) => b,
            Err(e) => return respond::error(&e, &rate),
        },
    };
    let Api::Conductor { action } = api else {
        return tunnel::forward(call, req, &session, None, body, &rate).await;
    };
    if !session.tier.allows_action(&action) {
        return respond::error(
            &ApiError::new(
                ErrorCode::UpgradeRequired,
                format!(
                    "action {action:?} needs the pro tier (this key is {})",
                    session.tier
                ),
            ),
            &rate,
        );
    }
    // A signed request goes to the origin as sent (the signature covers its path and body),
    // which verifies it again and accepts each signature once: the edge does not answer it
    // with Workers AI, where a replay could not be refused exactly.
    if signed {
        return tunnel::forward(call, req, &session, None, body, &rate).await;
    }
    // Memory is the caller's account's (one Vectorize namespace each); anonymous callers
    // have none, and the origin classes memory INTERNAL: refused here as there.
    let owner = if conductor::uses_memory(&action) {
        match defense::memory_owner(&session) {
            Ok(account) => Some(account),
            Err(e) => return respond::error(&e, &rate),
        }
    } else {
        None
    };
    let bindings = Bindings {
        ai: call.env.ai("AI").is_ok(),
        vectorize: vectorize::binding(&call.env).is_some(),
    };
    let max_chars = call
        .env
        .var("EDGE_PROMPT_MAX_CHARS")
        .ok()
        .and_then(|v| v.to_string().parse().ok())
        .unwrap_or(conductor::DEFAULT_EDGE_PROMPT_MAX_CHARS);
    match conductor::dispatch(&action, &body, bindings, max_chars) {
        Err(e) => respond::error(&e, &rate),
        Ok(Dispatch::Origin { path }) => {
            tunnel::forward(call, req, &session, Some(path), body, &rate).await
        }
        Ok(Dispatch::Edge(job)) => ai::run(call, &action, job, owner.as_deref(), &rate).await,
    }
}

/// Checks a PQC API key's signature over the request as the client sent it to the property
/// host (`limits::identify_signed`).
async fn identify_signed(call: &Call, req: &Request, body: &[u8]) -> Result<Session, ApiError> {
    let url = req
        .url()
        .map_err(|e| ApiError::bad_request(format!("request URL: {e}")))?;
    let method = req.method().to_string();
    let headers = req.headers();
    let field = |name: &str| headers.get(name).ok().flatten();
    let (input, signature) = (
        field(http_sig::header::SIGNATURE_INPUT),
        field(http_sig::header::SIGNATURE),
    );
    let signed = SignedRequest {
        signature_input: input.as_deref(),
        signature: signature.as_deref(),
        target: http_sig::Request {
            method: &method,
            authority: &call.host,
            path: url.path(),
            query: url.query(),
        },
        body,
        field: &field,
    };
    limits::identify_signed(call, &signed).await
}

/// The request body, refused above [`conductor::MAX_BODY_BYTES`].
async fn read_body(req: &mut Request) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorCode::BodyTooLarge,
            format!(
                "request bodies are limited to {} bytes",
                conductor::MAX_BODY_BYTES
            ),
        )
    };
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > conductor::MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let method = req.method().to_string();
    if method == "GET" || method == "HEAD" {
        return Ok(Vec::new());
    }
    let body = req
        .bytes()
        .await
        .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
    if body.len() > conductor::MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
}
