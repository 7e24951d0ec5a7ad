//! A fake of Anthropic's Messages API on 127.0.0.1: real HTTP (hyper) and Anthropic's wire
//! format. `POST /v1/messages` is checked as Anthropic checks it (`x-api-key`,
//! `anthropic-version`, the request's shape: `max_tokens`, roles that alternate starting with
//! `user`, non-empty content, `tool_result` blocks answering the `tool_use` blocks of the turn
//! before, no field the API does not know) and answered with a `message`, or streamed as
//! Anthropic's event sequence (`message_start`, `content_block_*`, `ping`, `message_delta`,
//! `message_stop`); `GET /v1/models` lists two models. Errors have Anthropic's body
//! (`{"type":"error","error":{"type","message"}}`). A test sets the answer while it runs.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The key the fake accepts as `x-api-key`.
pub const API_KEY: &str = "sk-ant-fake-0123456789";
/// The first model `GET /v1/models` lists (the newest, as Anthropic orders them).
pub const MODEL: &str = "claude-fake-2";
/// `anthropic-version` values the fake knows.
const VERSIONS: [&str; 2] = ["2023-06-01", "2023-01-01"];

/// What `POST /v1/messages` answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// One text block.
    Text(String),
    /// A text block (left out when empty), then one `tool_use` block per (name, input);
    /// `stop_reason` is `tool_use`.
    ToolUse {
        text: String,
        calls: Vec<(String, Value)>,
    },
    /// An HTTP error with Anthropic's body, and `retry-after` (seconds) when given.
    Error {
        status: u16,
        kind: String,
        retry_after: Option<u64>,
    },
    /// Streamed: the text's first word, then an `error` event of this type (Anthropic's way
    /// of failing once the 200 is sent). Not streamed: the same as `Error` with status 500.
    ErrorMidStream { text: String, kind: String },
}

#[derive(Debug, Clone)]
pub struct Behavior {
    pub answer: Answer,
    /// `usage.input_tokens` (prompt tokens not read from the cache).
    pub input_tokens: u64,
    /// `usage.cache_read_input_tokens`.
    pub cache_read_input_tokens: u64,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            answer: Answer::Text("Hello from the fake Claude.".into()),
            input_tokens: 21,
            cache_read_input_tokens: 0,
        }
    }
}

/// A request as the fake received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub api_key: Option<String>,
    pub version: Option<String>,
    pub body: Value,
}

pub struct FakeAnthropic {
    /// `http://127.0.0.1:PORT`: what a provider's `base_url` is set to.
    pub base_url: String,
    pub behavior: Arc<Mutex<Behavior>>,
    /// `POST /v1/messages` requests received (accepted or not).
    pub hits: Arc<AtomicUsize>,
    /// The last `POST /v1/messages`.
    pub last: Arc<Mutex<Option<Received>>>,
    /// Why the fake refused requests (400s of its own checks), oldest first.
    pub refusals: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAnthropic {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    behavior: Arc<Mutex<Behavior>>,
    hits: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Received>>>,
    refusals: Arc<Mutex<Vec<String>>>,
}

type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

impl FakeAnthropic {
    pub async fn start(behavior: Behavior) -> FakeAnthropic {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Shared {
            behavior: Arc::new(Mutex::new(behavior)),
            hits: Arc::new(AtomicUsize::new(0)),
            last: Arc::new(Mutex::new(None)),
            refusals: Arc::new(Mutex::new(Vec::new())),
        };
        let s = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, s.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeAnthropic {
            base_url: format!("http://127.0.0.1:{port}"),
            behavior: shared.behavior,
            hits: shared.hits,
            last: shared.last,
            refusals: shared.refusals,
            task,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Behavior)) {
        f(&mut self.behavior.lock().unwrap());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The last `POST /v1/messages` (panics when there was none).
    pub fn last(&self) -> Received {
        self.last
            .lock()
            .unwrap()
            .clone()
            .expect("no request reached the fake")
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response<FakeBody> {
    let v = json!({"type": "error", "error": {"type": kind, "message": message}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("request-id", "req_fake_0001")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

fn ok_json(v: &Value) -> Response<FakeBody> {
    Response::builder()
        .header("content-type", "application/json")
        .header("request-id", "req_fake_0002")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap()
}

async fn serve(
    req: Request<hyper::body::Incoming>,
    s: Shared,
) -> Result<Response<FakeBody>, Infallible> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (api_key, version) = (header("x-api-key"), header("anthropic-version"));
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let raw = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let known = (method.as_str(), path.as_str());
    if known == ("POST", "/v1/messages") {
        s.hits.fetch_add(1, Ordering::SeqCst);
        *s.last.lock().unwrap() = Some(Received {
            method: method.clone(),
            path: path.clone(),
            api_key: api_key.clone(),
            version: version.clone(),
            body: body.clone(),
        });
    } else if known != ("GET", "/v1/models") {
        return Ok(error(
            404,
            "not_found_error",
            &format!("Not found: {method} {path}"),
        ));
    }
    if api_key.as_deref() != Some(API_KEY) {
        return Ok(error(401, "authentication_error", "invalid x-api-key"));
    }
    match version.as_deref() {
        None => {
            return Ok(error(
                400,
                "invalid_request_error",
                "anthropic-version: header is required",
            ))
        }
        Some(v) if !VERSIONS.contains(&v) => {
            return Ok(error(
                400,
                "invalid_request_error",
                &format!("anthropic-version: invalid version {v:?}"),
            ))
        }
        Some(_) => {}
    }
    if method == "GET" {
        return Ok(ok_json(&json!({
            "data": [
                {"type": "model", "id": MODEL, "display_name": "Claude Fake 2", "created_at": "2025-06-01T00:00:00Z"},
                {"type": "model", "id": "claude-fake-1", "display_name": "Claude Fake 1", "created_at": "2024-06-01T00:00:00Z"},
            ],
            "has_more": false, "first_id": MODEL, "last_id": "claude-fake-1",
        })));
    }
    if body.is_null() {
        return Ok(error(
            400,
            "invalid_request_error",
            "There was an issue with your request body: it is not valid JSON",
        ));
    }
    if let Err(why) = check(&body) {
        s.refusals.lock().unwrap().push(why.clone());
        return Ok(error(400, "invalid_request_error", &why));
    }
    let b = s.behavior.lock().unwrap().clone();
    let n = s.hits.load(Ordering::SeqCst);
    let stream = body["stream"] == true;
    let model = body["model"].as_str().unwrap_or("").to_string();
    let (text, calls) = match b.answer.clone() {
        Answer::Error {
            status,
            kind,
            retry_after,
        } => {
            let mut r = error(status, &kind, &message_of(&kind));
            if let Some(secs) = retry_after {
                r.headers_mut()
                    .insert("retry-after", secs.to_string().parse().unwrap());
            }
            return Ok(r);
        }
        Answer::ErrorMidStream { kind, .. } if !stream => {
            return Ok(error(500, &kind, &message_of(&kind)))
        }
        Answer::ErrorMidStream { text, kind } => {
            return Ok(sse_response(broken_stream(n, &model, &b, &text, &kind)))
        }
        Answer::Text(t) => (t, Vec::new()),
        Answer::ToolUse { text, calls } => (text, calls),
    };
    let mut blocks = Vec::new();
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    for (k, (name, input)) in calls.iter().enumerate() {
        blocks.push(json!({"type": "tool_use", "id": format!("toolu_{n:02}_{k}"), "name": name, "input": input}));
    }
    let stop_reason = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let output_tokens = text.split_whitespace().count() as u64 + 10 * calls.len() as u64;
    if stream {
        return Ok(sse_response(events(
            n,
            &model,
            &b,
            &blocks,
            stop_reason,
            output_tokens,
        )));
    }
    Ok(ok_json(&json!({
        "id": format!("msg_fake_{n:04}"), "type": "message", "role": "assistant", "model": model,
        "content": blocks, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": usage(&b, output_tokens),
    })))
}

fn message_of(kind: &str) -> String {
    match kind {
        "rate_limit_error" => {
            "Number of request tokens has exceeded your per-minute rate limit".into()
        }
        "overloaded_error" => "Overloaded".into(),
        "invalid_request_error" => "messages: the fake was told to refuse this request".into(),
        other => format!("the fake was told to fail ({other})"),
    }
}

fn usage(b: &Behavior, output_tokens: u64) -> Value {
    json!({
        "input_tokens": b.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": b.cache_read_input_tokens,
        "output_tokens": output_tokens,
    })
}

fn event(v: &Value) -> Bytes {
    let kind = v["type"].as_str().unwrap_or("");
    Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
}

fn message_start(n: usize, model: &str, b: &Behavior) -> Value {
    json!({"type": "message_start", "message": {
        "id": format!("msg_fake_{n:04}"), "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(b, 1),
    }})
}

/// Anthropic's event sequence for `blocks`: text in word deltas, tool input in JSON fragments
/// (after the empty fragment Anthropic sends first), a `ping` after the first block starts.
fn events(
    n: usize,
    model: &str,
    b: &Behavior,
    blocks: &[Value],
    stop_reason: &str,
    output_tokens: u64,
) -> Vec<Bytes> {
    let mut out = vec![event(&message_start(n, model, b))];
    for (i, block) in blocks.iter().enumerate() {
        let mut start = block.clone();
        if block["type"] == "text" {
            start["text"] = json!("");
        } else {
            start["input"] = json!({});
        }
        out.push(event(
            &json!({"type": "content_block_start", "index": i, "content_block": start}),
        ));
        if i == 0 {
            out.push(event(&json!({"type": "ping"})));
        }
        if block["type"] == "text" {
            for w in block["text"].as_str().unwrap_or("").split_inclusive(' ') {
                out.push(event(&json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": w}})));
            }
        } else {
            let input = block["input"].to_string();
            let chars: Vec<char> = input.chars().collect();
            let mut parts = vec![String::new()];
            parts.extend(chars.chunks(7).map(|c| c.iter().collect::<String>()));
            for p in parts {
                out.push(event(&json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": p}})));
            }
        }
        out.push(event(&json!({"type": "content_block_stop", "index": i})));
    }
    out.push(event(&json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}})));
    out.push(event(&json!({"type": "message_stop"})));
    out
}

fn broken_stream(n: usize, model: &str, b: &Behavior, text: &str, kind: &str) -> Vec<Bytes> {
    let first = text.split_inclusive(' ').next().unwrap_or("");
    vec![
        event(&message_start(n, model, b)),
        event(
            &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event(
            &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": first}}),
        ),
        event(&json!({"type": "error", "error": {"type": kind, "message": message_of(kind)}})),
    ]
}

fn sse_response(events: Vec<Bytes>) -> Response<FakeBody> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        for e in events {
            if tx.send(Ok(Frame::data(e))).await.is_err() {
                return;
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("request-id", "req_fake_0003")
        .body(body)
        .unwrap()
}

/// The top-level fields the Messages API knows; any other is refused ("Extra inputs are not
/// permitted"), as Anthropic does.
const FIELDS: [&str; 15] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
];

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Anthropic's checks of a Messages request; the error message names the field as its do.
pub fn check(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("body: must be an object")?;
    for k in obj.keys() {
        if !FIELDS.contains(&k.as_str()) {
            return Err(format!("{k}: Extra inputs are not permitted"));
        }
    }
    if obj
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(|m| m.is_empty())
    {
        return Err("model: Field required".into());
    }
    match obj.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(v) if v.as_u64().is_none_or(|n| n < 1) => {
            return Err("max_tokens: Input should be a positive integer".into())
        }
        _ => {}
    }
    if let Some(t) = obj.get("temperature") {
        if t.as_f64().is_none_or(|t| !(0.0..=1.0).contains(&t)) {
            return Err("temperature: Input should be between 0 and 1".into());
        }
    }
    if let Some(p) = obj.get("top_p") {
        if p.as_f64().is_none_or(|p| !(0.0..=1.0).contains(&p)) {
            return Err("top_p: Input should be between 0 and 1".into());
        }
    }
    if let Some(s) = obj.get("stream") {
        if !s.is_boolean() {
            return Err("stream: Input should be a valid boolean".into());
        }
    }
    if let Some(s) = obj.get("stop_sequences") {
        if !s.as_array().is_some_and(|a| a.iter().all(Value::is_string)) {
            return Err("stop_sequences: Input should be a list of strings".into());
        }
    }
    if let Some(m) = obj.get("metadata") {
        let ok = m.as_object().is_some_and(|m| {
            m.keys().all(|k| k == "user_id") && m.get("user_id").is_none_or(Value::is_string)
        });
        if !ok {
            return Err("metadata: only user_id (a string) is permitted".into());
        }
    }
    match obj.get("system") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                if b["type"] != "text" || b["text"].as_str().is_none_or(|t| t.is_empty()) {
                    return Err(format!("system.{j}: system blocks must be non-empty text"));
                }
            }
        }
        Some(_) => return Err("system: Input should be a string or a list of text blocks".into()),
    }
    let mut tool_names = HashSet::new();
    if let Some(tools) = obj.get("tools") {
        let tools = tools
            .as_array()
            .ok_or("tools: Input should be a valid list")?;
        for (k, t) in tools.iter().enumerate() {
            let name = t["name"].as_str().unwrap_or("");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(format!(
                    "tools.{k}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
                ));
            }
            if t["input_schema"]["type"] != "object" {
                return Err(format!(
                    "tools.{k}.input_schema.type: Input should be 'object'"
                ));
            }
            if t.get("type").is_some() || t.get("function").is_some() {
                return Err(format!("tools.{k}: Extra inputs are not permitted"));
            }
            tool_names.insert(name.to_string());
        }
    }
    if let Some(c) = obj.get("tool_choice") {
        if obj.get("tools").is_none() {
            return Err("tool_choice: may only be specified while providing tools".into());
        }
        match c["type"].as_str() {
            Some("auto") | Some("any") | Some("none") => {}
            Some("tool") => {
                if !c["name"].as_str().is_some_and(|n| tool_names.contains(n)) {
                    return Err("tool_choice.name: must name a declared tool".into());
                }
            }
            _ => {
                return Err(
                    "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'".into(),
                )
            }
        }
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    // tool_use ids of the previous (assistant) turn, each to be answered in the next turn.
    let mut open_tool_uses: Vec<String> = Vec::new();
    let last = messages.len() - 1;
    for (i, m) in messages.iter().enumerate() {
        let role = m["role"].as_str().unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant' (a system prompt goes in the top-level `system` parameter)"
            ));
        }
        if i == 0 && role != "user" {
            return Err("messages: first message must use the \"user\" role".into());
        }
        if i > 0 && messages[i - 1]["role"] == role {
            return Err(format!(
                "messages: roles must alternate between \"user\" and \"assistant\", but found multiple \"{role}\" roles in a row"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) if !s.is_empty() => vec![json!({"type": "text", "text": s})],
            Value::Array(a) if !a.is_empty() => a.clone(),
            _ => {
                return Err(format!(
                    "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                ))
            }
        };
        let mut answered: Vec<String> = Vec::new();
        let mut seen_other = false;
        let mut tool_uses = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match b["type"].as_str().unwrap_or("") {
                "text" => {
                    if b["text"].as_str().is_none_or(|t| t.is_empty()) {
                        return Err(format!("{at}.text: text content blocks must be non-empty"));
                    }
                    seen_other = true;
                }
                "image" | "document" if role == "user" => {
                    let src = &b["source"];
                    let ok = match src["type"].as_str() {
                        Some("base64") => {
                            let media = src["media_type"].as_str().unwrap_or("");
                            let media_ok = if b["type"] == "image" {
                                IMAGE_TYPES.contains(&media)
                            } else {
                                media == "application/pdf"
                            };
                            media_ok && src["data"].as_str().is_some_and(|d| !d.is_empty())
                        }
                        Some("url") => src["url"]
                            .as_str()
                            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://")),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{at}.source: invalid {} source", b["type"]));
                    }
                    seen_other = true;
                }
                "tool_use" if role == "assistant" => {
                    let id = b["id"].as_str().unwrap_or("");
                    if id.is_empty() || !b["name"].is_string() || !b["input"].is_object() {
                        return Err(format!(
                            "{at}: tool_use blocks need an id, a name and an input object"
                        ));
                    }
                    tool_uses.push(id.to_string());
                }
                "tool_result" if role == "user" => {
                    let id = b["tool_use_id"].as_str().unwrap_or("");
                    if !open_tool_uses.iter().any(|t| t == id) {
                        return Err(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        ));
                    }
                    if seen_other {
                        return Err(format!(
                            "{at}: `tool_result` blocks must come before any other content in a user message"
                        ));
                    }
                    answered.push(id.to_string());
                }
                other => {
                    return Err(format!(
                        "{at}.type: {other:?} blocks are not accepted in a {role} message"
                    ))
                }
            }
        }
        let unanswered: Vec<&String> = open_tool_uses
            .iter()
            .filter(|t| !answered.contains(t))
            .collect();
        if !unanswered.is_empty() {
            return Err(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                i - 1,
                unanswered.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        if i == last && role == "assistant" {
            let ends_blank = blocks
                .last()
                .and_then(|b| b["text"].as_str())
                .is_some_and(|t| t.ends_with(char::is_whitespace));
            if ends_blank {
                return Err(
                    "messages: final assistant content cannot end with trailing whitespace".into(),
                );
            }
        }
        open_tool_uses = tool_uses;
    }
    Ok(())
}
