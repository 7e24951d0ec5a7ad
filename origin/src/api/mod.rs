//! The API: one file per resource. A handler decodes the request, calls the domain and
//! renders what it answered as a [`Reply`]; it never builds an HTTP response (that is
//! `http::respond`) and never sees a socket.

pub mod accounts;
pub mod billing;
pub mod brain;
pub mod conductor;
pub mod health;
pub mod memory;
pub mod openai;
pub mod tunnel;
pub mod usage;

use crate::app::App;
use crate::defense::Identity;
use crate::error::{Error, ErrorCode};
use crate::pipeline::{Answer, Failure, Outcome};
use crate::usage::{Meter, Payer};
use bytes::Bytes;
use heady_shared::token_bucket::TokenOutcome;
use http::Method;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a handler gets besides the app: the request, its body read and bounded, and who is
/// asking.
pub struct Ctx {
    pub request_id: String,
    /// Anonymous unless a key or verified edge claims say otherwise.
    pub identity: Identity,
    pub method: Method,
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A handler's answer.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReplyBody,
}

pub enum ReplyBody {
    Bytes(Bytes),
    /// Server-sent event frames, sent as they come.
    Events(mpsc::Receiver<Bytes>),
}

impl Reply {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Result<Reply, Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("could not encode response: {e}")))?;
        Ok(Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: ReplyBody::Bytes(bytes.into()),
        })
    }

    /// 200 with a JSON body.
    pub fn ok(value: &impl serde::Serialize) -> Result<Reply, Error> {
        Reply::json(200, value)
    }

    pub fn bytes(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type,
            headers: Vec::new(),
            body: ReplyBody::Bytes(body.into()),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply, Error>> + Send>>;
pub type Handler = fn(Arc<App>, Ctx) -> HandlerFuture;

/// A key with a model allowlist: a chat body naming another model is refused (403
/// `model_not_allowed`); one naming none gets the key's first allowed model. Keys without an
/// allowlist pay nothing; a body that is not a JSON object is left for the pipeline to refuse.
pub fn apply_model_allowlist(c: &mut Ctx) -> Result<(), Error> {
    if c.identity.models.is_none() {
        return Ok(());
    }
    let Ok(serde_json::Value::Object(mut body)) = serde_json::from_slice(&c.body) else {
        return Ok(());
    };
    let asked = match body.get("model") {
        Some(serde_json::Value::String(m)) => Some(m.as_str()),
        // Not a string: the pipeline's ingest names the problem.
        Some(_) => return Ok(()),
        None => None,
    };
    let named = asked.is_some();
    let permitted = c.identity.permit_model(asked)?;
    if !named {
        if let Some(m) = permitted {
            body.insert("model".into(), serde_json::Value::String(m));
            c.body = serde_json::to_vec(&body)
                .map_err(|e| Error::internal(format!("re-encoding the body: {e}")))?
                .into();
        }
    }
    Ok(())
}

/// Reserves `estimate` tokens for the caller before a chat or embedding call: 429
/// `token_limit_exceeded` (with the token policy's `RateLimit` headers) when the tier's bucket
/// does not hold them.
pub async fn begin_meter(
    s: &Arc<App>,
    c: &Ctx,
    estimate: impl FnOnce() -> u64,
) -> Result<Meter, Error> {
    let who = &c.identity;
    let payer = Payer {
        owner: who.account(),
        tier: who.tier,
        subject: who.subject.to_string(),
    };
    s.usage.begin(payer, estimate).await.map_err(|refused| {
        let (outcome, headers, estimate) = (refused.outcome, refused.headers, refused.estimate);
        let policy = s.usage.config.policy(who.tier);
        tracing::info!(request_id = %c.request_id, subject = %who.subject, estimate, "token limit reached");
        let mut e = Error::new(
            ErrorCode::TokenLimitExceeded,
            format!(
                "token limit exceeded: the {} tier allows {} tokens per {} s, and this request may use up to {estimate} (its prompt plus max_tokens); send a smaller max_tokens or wait",
                who.tier,
                policy.limit().unwrap_or(0),
                policy.window_ms() / 1000
            ),
        )
        .with_headers(headers);
        if let TokenOutcome::Limited { retry_after_ms, .. } = outcome {
            e = e.with_retry_after(retry_after_ms.div_ceil(1000));
        }
        e
    })
}

/// Adds the token limit's `RateLimit` fields to an answer, a success or an error.
pub fn with_headers(
    result: Result<Reply, Error>,
    headers: Vec<(&'static str, String)>,
) -> Result<Reply, Error> {
    if headers.is_empty() {
        return result;
    }
    match result {
        Ok(mut r) => {
            r.headers.extend(headers);
            Ok(r)
        }
        Err(e) => Err(e.with_headers(headers)),
    }
}

/// The `i`-th segment of a path (`/a/b/c`: 0 is `a`): a route's `{id}`.
pub fn segment(path: &str, i: usize) -> Option<&str> {
    path.split('/').skip(1).nth(i)
}

/// POST bodies must be JSON when the client says what they are.
pub fn require_json(c: &Ctx) -> Result<(), Error> {
    crate::error::require_json_content_type(&c.headers)
}

/// The pipeline's answer as a reply: JSON, or an SSE stream, with `Server-Timing` and the
/// provider and group that served it; a failure keeps its `Server-Timing` too.
pub fn pipeline_reply(result: Result<Outcome, Failure>) -> Result<Reply, Error> {
    match result {
        Ok(Outcome {
            answer:
                Answer::Json {
                    body,
                    provider,
                    group,
                },
            server_timing,
            cache,
        }) => Ok(Reply::ok(&body)?
            .header("x-heady-cache", cache.as_str())
            .header("x-heady-provider", provider)
            .header("x-heady-group", group)
            .header("server-timing", server_timing)),
        Ok(Outcome {
            answer:
                Answer::Stream {
                    events,
                    provider,
                    group,
                },
            server_timing,
            cache,
        }) => Ok(Reply {
            status: 200,
            content_type: "text/event-stream",
            headers: Vec::new(),
            body: ReplyBody::Events(events),
        }
        .header("cache-control", "no-cache")
        .header("x-heady-cache", cache.as_str())
        .header("x-heady-provider", provider)
        .header("x-heady-group", group)
        .header("server-timing", server_timing)),
        Err(Failure {
            error,
            server_timing,
        }) => Err(error.with_headers(vec![("server-timing", server_timing)])),
    }
}
