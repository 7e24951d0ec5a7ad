//! `/mcp`: the Model Context Protocol over Streamable HTTP, answered in JSON (no SSE: every
//! tool answers once). `POST` carries one JSON-RPC message; `DELETE` ends a session; `GET`
//! (a server-to-client stream, which this server never sends on) gets 405 from the routes
//! table. Every request needs an account's key, and each session is bound to that account.
//!
//! A tool call is a request to a REST route made in-process: it goes through the routes
//! table, so the route's policy (checked here as the server checks it) and handler are the
//! ones `/api` uses. A tool's failure, bad arguments included, is a result with `isError`;
//! JSON-RPC errors are for the protocol (unknown method or tool, malformed params).
//!
//! The `Origin` header is not checked: every request carries its own bearer key and this
//! server sets no cookies, so a page that rebinds DNS to it holds no credential to use.

use super::routes;
use crate::api::{Ctx, Reply, ReplyBody};
use crate::app::App;
use crate::error::Error;
use crate::mcp::jsonrpc::{self, Message, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND};
use crate::mcp::tools::{RestCall, SchemaLimits};
use crate::mcp::Tool;
use heady_shared::AccountId;
use http::{header, HeaderValue};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

/// The session header (the client sends it back on every request after `initialize`).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// The negotiated revision, sent by the client on every request after `initialize`.
pub const VERSION_HEADER: &str = "mcp-protocol-version";

const INSTRUCTIONS: &str = "Heady's tools act for the account whose API key you send: memory_search and memory_store read and write that account's vector memory, memory_sessions lists its sessions, conductor_route names the service group of an action, chat answers through the Heady pipeline within the account's plan.";

fn header_str<'a>(c: &'a Ctx, name: &str) -> Option<&'a str> {
    c.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller's account: 401 with `WWW-Authenticate` for anonymous callers. The defense
/// checks the route's policy too, but only when it is enabled.
fn account(s: &App, c: &Ctx, method: &'static str) -> Result<AccountId, Error> {
    c.identity.account().ok_or_else(|| {
        s.metrics.mcp_message(method, "", "unauthenticated");
        crate::defense::authentication_required("MCP sessions belong to accounts")
    })
}

fn rpc(status: u16, body: &Value) -> Result<Reply, Error> {
    Reply::json(status, body)
}

fn accepted() -> Reply {
    Reply::bytes(202, "text/plain; charset=utf-8", Vec::new())
}

/// `POST /mcp`: one JSON-RPC message.
pub async fn post(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let account = account(&s, &c, "post")?;
    crate::error::require_json_content_type(&c.headers)?;
    let message = match jsonrpc::parse(&c.body) {
        Ok(m) => m,
        Err(bad) => {
            s.metrics.mcp_message("malformed", "", "malformed");
            tracing::info!(request_id = %c.request_id, account = %account, problem = ?bad, "MCP message refused");
            return rpc(400, &bad.answer());
        }
    };
    let id = match &message {
        Message::Request { id, .. } => id.clone(),
        _ => Value::Null,
    };
    let label = match &message {
        Message::Request { method, .. } => method_label(method),
        Message::Notification { .. } => "notification",
        Message::Response => "response",
    };
    if let Some(v) = header_str(&c, VERSION_HEADER) {
        if !crate::mcp::is_supported(v) {
            s.metrics.mcp_message(label, "", "bad_version");
            let msg = format!(
                "Unsupported MCP-Protocol-Version {:?}: this server speaks {}",
                v.chars().take(40).collect::<String>(),
                crate::mcp::SUPPORTED_VERSIONS.join(", ")
            );
            return rpc(400, &jsonrpc::error(&id, INVALID_REQUEST, &msg));
        }
    }
    let now = Instant::now();
    if let Message::Request { method, params, .. } = &message {
        if method == "initialize" {
            return initialize(&s, &c, &account, &id, params.as_ref(), now);
        }
    }
    let Some(session) = header_str(&c, SESSION_HEADER) else {
        s.metrics.mcp_message(label, "", "no_session");
        return rpc(
            400,
            &jsonrpc::error(
                &id,
                INVALID_REQUEST,
                "Mcp-Session-Id header missing: send initialize first, then its Mcp-Session-Id with every request",
            ),
        );
    };
    if s.mcp.resume(session, &account, now).is_none() {
        s.metrics.mcp_message(label, "", "no_session");
        tracing::info!(request_id = %c.request_id, account = %account, "MCP request for an unknown or expired session");
        return rpc(
            404,
            &jsonrpc::error(
                &id,
                INVALID_REQUEST,
                "Session not found (unknown, expired or ended): send initialize for a new one",
            ),
        );
    }
    match message {
        Message::Notification { .. } | Message::Response => {
            s.metrics.mcp_message(label, "", "ok");
            Ok(accepted())
        }
        Message::Request { id, method, params } => {
            let (answer, tool, outcome) = dispatch(&s, &c, &method, params).await;
            s.metrics.mcp_message(label, tool, outcome);
            tracing::info!(request_id = %c.request_id, account = %account, method = %method, tool, outcome, "MCP request");
            let body = match answer {
                Ok(result) => jsonrpc::result(&id, result),
                Err((code, message)) => jsonrpc::error(&id, code, &message),
            };
            rpc(200, &body)
        }
    }
}

fn method_label(method: &str) -> &'static str {
    match method {
        "initialize" => "initialize",
        "ping" => "ping",
        "tools/list" => "tools/list",
        "tools/call" => "tools/call",
        _ => "other",
    }
}

fn initialize(
    s: &App,
    c: &Ctx,
    account: &AccountId,
    id: &Value,
    params: Option<&Value>,
    now: Instant,
) -> Result<Reply, Error> {
    let offered = params
        .and_then(|p| p.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = crate::mcp::negotiate(offered);
    let opened = s.mcp.open(account, version, now);
    s.metrics.mcp_sessions.set(s.mcp.len() as i64);
    s.metrics.mcp_message("initialize", "", "ok");
    if opened.closed.is_some() {
        tracing::info!(request_id = %c.request_id, account = %account, cap = s.mcp.limits().per_account, "MCP session limit reached: the account's least recently used session ended");
    }
    tracing::info!(request_id = %c.request_id, account = %account, version, "MCP session opened");
    let result = json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "heady-origin", "title": "Heady", "version": env!("CARGO_PKG_VERSION")},
        "instructions": INSTRUCTIONS,
    });
    Ok(Reply::json(200, &jsonrpc::result(id, result))?.header(SESSION_HEADER, opened.id))
}

type Answer = Result<Value, (i64, String)>;

/// A request's answer, with the tool and outcome it is counted under.
async fn dispatch(
    s: &Arc<App>,
    c: &Ctx,
    method: &str,
    params: Option<Value>,
) -> (Answer, &'static str, &'static str) {
    match method {
        "ping" => (Ok(json!({})), "", "ok"),
        "tools/list" => {
            let limits = SchemaLimits {
                max_top_k: s.config.memory.max_top_k,
                dim: s.memory.dim(),
            };
            let tools: Vec<Value> = Tool::ALL.iter().map(|t| t.listing(limits)).collect();
            (Ok(json!({ "tools": tools })), "", "ok")
        }
        "tools/call" => {
            let Some(Value::Object(mut p)) = params else {
                return (
                    Err((
                        INVALID_PARAMS,
                        "tools/call needs params {name, arguments}".into(),
                    )),
                    "",
                    "rpc_error",
                );
            };
            let Some(name) = p.get("name").and_then(Value::as_str).map(str::to_string) else {
                return (
                    Err((INVALID_PARAMS, "params.name must be a tool's name".into())),
                    "",
                    "rpc_error",
                );
            };
            let Some(tool) = Tool::by_name(&name) else {
                let shown: String = name.chars().take(64).collect();
                return (
                    Err((INVALID_PARAMS, format!("Unknown tool: {shown}"))),
                    "",
                    "rpc_error",
                );
            };
            let result = call_tool(s, c, tool, p.remove("arguments")).await;
            let outcome = if result["isError"] == true {
                "tool_error"
            } else {
                "ok"
            };
            (Ok(result), tool.name(), outcome)
        }
        _ => {
            let shown: String = method.chars().take(64).collect();
            (
                Err((METHOD_NOT_FOUND, format!("Method not found: {shown}"))),
                "",
                "rpc_error",
            )
        }
    }
}

/// A tool's failure as its result: the text says what went wrong, the structured content is
/// the error body `/api` would have sent.
fn tool_error(e: &Error, request_id: &str) -> Value {
    let mut text = format!("{}: {}", e.code, e.public_message());
    if let Some(secs) = e.retry_after {
        text.push_str(&format!(" (retry after {secs} s)"));
    }
    let body = serde_json::to_value(e.body(Some(request_id))).unwrap_or(Value::Null);
    json!({
        "content": [{"type": "text", "text": text}],
        "structuredContent": body,
        "isError": true,
    })
}

/// Runs `tool` through its REST route as the caller.
async fn call_tool(s: &Arc<App>, c: &Ctx, tool: Tool, arguments: Option<Value>) -> Value {
    let rest = match tool.request(arguments) {
        Ok(r) => r,
        Err(message) => return tool_error(&Error::bad_request(message), &c.request_id),
    };
    match call_route(s, &c.identity, &c.request_id, c.headers.clone(), &rest).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(answer @ Value::Object(_)) => json!({
                "content": [{"type": "text", "text": tool.text_of(&answer)}],
                "structuredContent": answer,
                "isError": false,
            }),
            _ => json!({
                "content": [{"type": "text", "text": String::from_utf8_lossy(&bytes)}],
                "isError": false,
            }),
        },
        Err(e) => {
            if e.is_server_error() {
                tracing::error!(request_id = %c.request_id, tool = tool.name(), status = e.status(), code = %e.code, message = %e.message, "MCP tool failed");
            }
            tool_error(&e, &c.request_id)
        }
    }
}

/// A request to a REST route made in-process as `identity`: the route's policy is checked (when
/// the defense is on) as the server checks it, then its handler runs. Answers the body of a
/// success; a stream or a status of 400 and up is an error. `headers` are the request's
/// (`Content-Type` is set to JSON).
pub(crate) async fn call_route(
    s: &Arc<App>,
    identity: &crate::defense::Identity,
    request_id: &str,
    mut headers: http::HeaderMap,
    rest: &RestCall,
) -> Result<bytes::Bytes, Error> {
    let matched = routes::route(&rest.method, rest.path);
    if s.defense.enabled {
        s.defense.authorize(identity, matched.policy)?;
    }
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let body = match &rest.body {
        Some(b) => serde_json::to_vec(b)
            .map_err(|e| Error::internal(format!("encoding {}: {e}", rest.path)))?
            .into(),
        None => bytes::Bytes::new(),
    };
    let inner = Ctx {
        request_id: request_id.to_string(),
        identity: identity.clone(),
        method: rest.method.clone(),
        path: rest.path.to_string(),
        query: None,
        headers,
        body,
    };
    match (matched.handler)(s.clone(), inner).await? {
        Reply {
            status,
            body: ReplyBody::Bytes(bytes),
            ..
        } if status < 400 => Ok(bytes),
        r => Err(Error::internal(format!(
            "{} answered status {} or a stream",
            rest.path, r.status
        ))),
    }
}

/// `DELETE /mcp`: ends the session named by `Mcp-Session-Id` (204; 404 when the account has
/// no such session).
pub async fn delete(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let account = account(&s, &c, "delete")?;
    let Some(session) = header_str(&c, SESSION_HEADER) else {
        return Err(Error::bad_request(
            "Mcp-Session-Id header missing: name the session to end",
        ));
    };
    if !s.mcp.close(session, &account, Instant::now()) {
        s.metrics.mcp_message("delete", "", "no_session");
        return Err(Error::not_found(
            "no such MCP session for this account (unknown, expired or ended)",
        ));
    }
    s.metrics.mcp_sessions.set(s.mcp.len() as i64);
    s.metrics.mcp_message("delete", "", "ok");
    tracing::info!(request_id = %c.request_id, account = %account, "MCP session ended by the client");
    Ok(Reply::bytes(204, "text/plain; charset=utf-8", Vec::new()))
}
