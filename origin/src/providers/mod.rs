//! The brain router's providers: inference endpoints behind one trait. `openai` speaks the
//! OpenAI chat-completions wire format (OpenAI, Ollama, vLLM, llama.cpp server); `workers_ai`
//! speaks Cloudflare's REST API and `anthropic` Anthropic's Messages API, both translated to the
//! OpenAI shapes. Streams are read chunk by chunk and handed on event by event, never collected
//! whole.

pub mod anthropic;
pub mod config;
pub mod openai;
pub mod sse;
pub mod workers_ai;

use bytes::Bytes;
use config::{ProviderConfig, ProviderKind};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("could not reach {provider}: {message}")]
    Unreachable { provider: String, message: String },
    #[error("{provider} did not answer within {ms} ms")]
    Timeout { provider: String, ms: u64 },
    #[error("{provider} answered {status}: {}", detail.message)]
    Upstream {
        provider: String,
        status: u16,
        detail: Box<Refusal>,
    },
    #[error("{provider} answered something that is not an OpenAI chat completion: {message}")]
    BadResponse { provider: String, message: String },
}

impl ProviderError {
    /// What a client may be told: the kind of failure and the provider's status, never its
    /// URL, its account or its own error text (those go to the log).
    pub fn summary(&self) -> String {
        match self {
            ProviderError::Unreachable { .. } => "unreachable".into(),
            ProviderError::Timeout { ms, .. } => format!("no answer within {ms} ms"),
            ProviderError::Upstream { status, .. } => format!("answered {status}"),
            ProviderError::BadResponse { .. } => {
                "answered something that is not a chat completion".into()
            }
        }
    }

    /// The provider's HTTP status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Upstream { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long the provider asked us to wait (`Retry-After`).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ProviderError::Upstream { detail, .. } => detail.retry_after_ms,
            _ => None,
        }
    }

    /// Trying the same provider again soon may work: it asked us to slow down (429), is
    /// briefly unavailable (503, Anthropic's 529), or did not answer in time.
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Upstream { status, .. } => heady_shared::retry::retryable(*status),
            ProviderError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The provider refused the request itself (malformed, unknown model, too large): another
    /// provider would refuse it too, and it says nothing about the provider's health. 401/403
    /// (our credentials), 408, 429 and 5xx are the provider's trouble: fall back.
    pub fn is_client_error(&self) -> bool {
        matches!(self, ProviderError::Upstream { status, .. } if matches!(status, 400 | 404 | 413 | 422))
    }
}

/// What a provider said with a non-2xx answer: the fields of OpenAI's error object (Anthropic's
/// has the same `error.type` and `error.message`) and how long it asked us to wait.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    /// `error.type` (`invalid_request_error`, `rate_limit_error`, ...).
    pub kind: Option<String>,
    /// `error.param`: the request field at fault.
    pub param: Option<String>,
    /// `error.code`.
    pub code: Option<String>,
    /// `Retry-After` (seconds or an HTTP date) or `retry-after-ms`, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    /// Reads an error answer: its body (any of the shapes [`error_message`] knows) and its
    /// `Retry-After`.
    pub fn parse(headers: &reqwest::header::HeaderMap, body: &str) -> Refusal {
        let v: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            v.as_ref()
                .and_then(|v| v.pointer(&format!("/error/{name}")))
                .and_then(|x| match x {
                    Value::String(s) if !s.is_empty() => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        Refusal {
            message: error_message(body),
            kind: field("type"),
            param: field("param"),
            code: field("code"),
            retry_after_ms: retry_after_ms(headers, std::time::SystemTime::now()),
        }
    }

    /// A refusal with only a message (a provider that reports errors in its own envelope).
    pub fn message(message: impl Into<String>) -> Refusal {
        Refusal {
            message: message.into(),
            ..Refusal::default()
        }
    }
}

/// `retry-after-ms` (OpenAI), else `Retry-After` as seconds or an HTTP date, capped at an hour.
pub fn retry_after_ms(
    headers: &reqwest::header::HeaderMap,
    now: std::time::SystemTime,
) -> Option<u64> {
    const CAP_MS: u64 = 3_600_000;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = text("retry-after-ms").and_then(|t| t.parse::<f64>().ok()) {
        if ms.is_finite() && ms >= 0.0 {
            return Some((ms as u64).min(CAP_MS));
        }
    }
    let t = text("retry-after")?;
    if let Ok(secs) = t.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| ((secs * 1e3) as u64).min(CAP_MS));
    }
    let at = httpdate::parse_http_date(t).ok()?;
    Some(
        at.duration_since(now)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
            .min(CAP_MS),
    )
}

/// One call: an OpenAI chat-completions request body (`model` already chosen).
#[derive(Debug, Clone)]
pub struct ChatCall {
    pub body: serde_json::Map<String, Value>,
}

/// A whole answer, in OpenAI's `chat.completion` shape, with what the critique reads pulled
/// out: the first choice's text and finish reason, and every choice with its tool calls.
#[derive(Debug, Clone)]
pub struct ChatReply {
    pub json: Value,
    pub text: String,
    pub finish_reason: Option<String>,
    pub choices: Vec<Choice>,
}

/// One choice of an answer, as the critique sees it.
#[derive(Debug, Clone, Default)]
pub struct Choice {
    pub text: String,
    pub finish_reason: Option<String>,
    pub tool_calls: Vec<ToolUse>,
}

pub use heady_shared::critique::ToolUse;

/// `message.tool_calls` of a choice: each function call's name and arguments.
fn tool_uses(message: Option<&Value>) -> Vec<ToolUse> {
    message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| ToolUse {
                    name: c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    arguments: c
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl ChatReply {
    pub fn from_json(provider: &str, json: Value) -> Result<ChatReply, ProviderError> {
        let listed = json
            .get("choices")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ProviderError::BadResponse {
                provider: provider.to_string(),
                message: "no choices[0]".into(),
            })?;
        let choices: Vec<Choice> = listed
            .iter()
            .map(|c| Choice {
                text: content_text(c.pointer("/message/content")),
                finish_reason: c
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                tool_calls: tool_uses(c.get("message")),
            })
            .collect();
        Ok(ChatReply {
            text: choices[0].text.clone(),
            finish_reason: choices[0].finish_reason.clone(),
            choices,
            json,
        })
    }
}

/// A piece of a streamed tool call (`delta.tool_calls[]`): the call's index, its name when the
/// piece opens the call, and a fragment of its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolDelta {
    pub index: usize,
    pub name: Option<String>,
    pub arguments: String,
}

/// Puts streamed tool-call pieces back together, call by call.
#[derive(Debug, Default)]
pub struct ToolCallAssembler {
    calls: Vec<ToolUse>,
}

impl ToolCallAssembler {
    pub fn push(&mut self, d: &ToolDelta) {
        // Bounded: a provider cannot make us hold more than a few hundred calls.
        if d.index >= 256 {
            return;
        }
        if self.calls.len() <= d.index {
            self.calls.resize_with(d.index + 1, ToolUse::default);
        }
        let c = &mut self.calls[d.index];
        if let Some(n) = &d.name {
            c.name.push_str(n);
        }
        c.arguments.push_str(&d.arguments);
    }

    pub fn finish(self) -> Vec<ToolUse> {
        self.calls
    }
}

/// One server-sent event of a streamed answer, already in OpenAI's chunk format.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// The `data:` payload to send on (a `chat.completion.chunk` JSON object).
    pub data: Bytes,
    pub delta_text: String,
    pub finish_reason: Option<String>,
    /// The chunk's `model`, when it names one.
    pub model: Option<String>,
    /// The `usage` object of the chunk OpenAI sends last when asked for it
    /// (`stream_options.include_usage`).
    pub usage: Option<Value>,
    /// The chunk carries usage and no choices: the extra chunk the client may not have asked for.
    pub usage_only: bool,
    /// Pieces of tool calls in the first choice's delta.
    pub tool_deltas: Vec<ToolDelta>,
}

pub trait EventSource: Send {
    /// The next event; `None` at the end of the stream (`data: [DONE]` or end of body).
    fn next(&mut self) -> BoxFuture<'_, Result<Option<StreamEvent>, ProviderError>>;
}

pub trait Provider: Send + Sync {
    fn chat<'a>(&'a self, call: &'a ChatCall) -> BoxFuture<'a, Result<ChatReply, ProviderError>>;
    /// Starts a streamed answer; resolves once the provider has accepted the request.
    fn chat_stream<'a>(
        &'a self,
        call: &'a ChatCall,
    ) -> BoxFuture<'a, Result<Box<dyn EventSource>, ProviderError>>;
}

/// A configured provider and its client.
pub struct ProviderEntry {
    pub config: ProviderConfig,
    pub client: Arc<dyn Provider>,
}

impl ProviderEntry {
    pub fn serves(&self, group: &str) -> bool {
        self.config.groups.is_empty() || self.config.groups.iter().any(|g| g == group)
    }
}

pub fn build(configs: &[ProviderConfig]) -> Vec<ProviderEntry> {
    configs
        .iter()
        .map(|c| {
            let timeout = Duration::from_millis(c.timeout_ms);
            let client: Arc<dyn Provider> = match c.kind {
                ProviderKind::Openai => Arc::new(openai::OpenAiProvider::new(
                    c.name.clone(),
                    c.base_url.clone().unwrap_or_default(),
                    c.api_key.as_ref().map(|k| k.expose().to_string()),
                    c.model.clone(),
                    timeout,
                )),
                ProviderKind::WorkersAi => Arc::new(workers_ai::WorkersAiProvider::new(
                    c.name.clone(),
                    c.base_url
                        .clone()
                        .unwrap_or_else(|| config::WORKERS_AI_ROOT.to_string()),
                    c.account_id.clone().unwrap_or_default(),
                    c.api_key
                        .as_ref()
                        .map(|k| k.expose().to_string())
                        .unwrap_or_default(),
                    c.model.clone().unwrap_or_default(),
                    timeout,
                )),
                ProviderKind::Anthropic => Arc::new(anthropic::AnthropicProvider::new(
                    c.name.clone(),
                    c.base_url
                        .clone()
                        .unwrap_or_else(|| config::ANTHROPIC_ROOT.to_string()),
                    c.api_key
                        .as_ref()
                        .map(|k| k.expose().to_string())
                        .unwrap_or_default(),
                    c.anthropic_version
                        .clone()
                        .unwrap_or_else(|| config::ANTHROPIC_VERSION.to_string()),
                    c.model.clone(),
                    timeout,
                )),
            };
            ProviderEntry {
                config: c.clone(),
                client,
            }
        })
        .collect()
}

/// The text of a message's `content`: a string, or the `text` of its parts.
pub fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Pulls a human message out of an error body: OpenAI's `{"error":{"message"}}`, an Ollama-style
/// `{"error":"..."}`, Cloudflare's `{"errors":[{"code","message"}]}`, else the raw text,
/// shortened. Shared by the chat providers and the embedders.
pub fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(m) = v.get("error").and_then(Value::as_str) {
            return m.to_string();
        }
        if let Some(errs) = v.get("errors").and_then(Value::as_array) {
            let msgs: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").map(|c| c.to_string()).unwrap_or_default();
                    let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                    format!("{code} {msg}").trim().to_string()
                })
                .collect();
            if !msgs.is_empty() {
                return msgs.join("; ");
            }
        }
    }
    body.chars().take(300).collect()
}

/// Sends a request and reads the whole answer: a send failure or timeout becomes
/// `Timeout`/`Unreachable`, a non-2xx answer `Upstream` with the provider's own message
/// (prefixed with `what` when given), and a 2xx answer its status and body text.
pub(crate) async fn fetch_text(
    provider: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
    what: Option<&str>,
) -> Result<(u16, String), ProviderError> {
    let resp = request
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| send_error(provider, e, timeout))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp
        .text()
        .await
        .map_err(|e| send_error(provider, e, timeout))?;
    if !(200..300).contains(&status) {
        let mut detail = Refusal::parse(&headers, &text);
        if let Some(w) = what {
            detail.message = format!("{w}: {}", detail.message);
        }
        return Err(ProviderError::Upstream {
            provider: provider.to_string(),
            status,
            detail: Box::new(detail),
        });
    }
    Ok((status, text))
}

/// Seconds since the Unix epoch: `created` of a translated answer.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Which model a provider is sent: the configured one; else the client's, unless it asked for
/// `heady` (the router), in which case the first model the endpoint lists, asked once.
pub(crate) struct ModelChoice {
    fixed: Option<String>,
    discovered: tokio::sync::OnceCell<String>,
}

impl ModelChoice {
    pub fn new(fixed: Option<String>) -> ModelChoice {
        ModelChoice {
            fixed,
            discovered: tokio::sync::OnceCell::new(),
        }
    }

    /// `list` answers the body of the endpoint's model list (`{"data":[{"id":..}]}`); it is
    /// called at most once.
    pub async fn pick<F, Fut>(
        &self,
        provider: &str,
        requested: Option<&str>,
        list: F,
    ) -> Result<String, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, ProviderError>>,
    {
        if let Some(m) = &self.fixed {
            return Ok(m.clone());
        }
        match requested {
            Some(m) if !m.is_empty() && m != "heady" => Ok(m.to_string()),
            _ => self
                .discovered
                .get_or_try_init(|| async {
                    let text = list().await?;
                    serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| {
                            v.pointer("/data/0/id")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .ok_or_else(|| ProviderError::BadResponse {
                            provider: provider.to_string(),
                            message: "its model list names no model; set providers.model".into(),
                        })
                })
                .await
                .cloned(),
        }
    }
}

pub(crate) fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Sends a streaming request and checks its status: a non-2xx answer becomes
/// `ProviderError::Upstream` with the provider's own message; the body is left unread.
pub(crate) async fn open_stream(
    provider: &str,
    timeout: Duration,
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, ProviderError> {
    let resp = tokio::time::timeout(timeout, request.send())
        .await
        .map_err(|_| ProviderError::Timeout {
            provider: provider.to_string(),
            ms: timeout.as_millis() as u64,
        })?
        .map_err(|e| send_error(provider, e, timeout))?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let headers = resp.headers().clone();
        let text = tokio::time::timeout(timeout, resp.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        return Err(ProviderError::Upstream {
            provider: provider.to_string(),
            status,
            detail: Box::new(Refusal::parse(&headers, &text)),
        });
    }
    Ok(resp)
}

pub(crate) fn send_error(provider: &str, e: reqwest::Error, timeout: Duration) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout {
            provider: provider.to_string(),
            ms: timeout.as_millis() as u64,
        }
    } else {
        ProviderError::Unreachable {
            provider: provider.to_string(),
            message: e.to_string(),
        }
    }
}
