//! Anthropic's Messages API: `POST {base_url}/v1/messages` with `x-api-key` and
//! `anthropic-version`. OpenAI chat requests are translated to Messages requests
//! ([`request`]); answers and stream events back to OpenAI's shapes ([`answer`]). Anthropic's
//! 529 (`overloaded_error`) is reported as 503, the status the pipeline retries and a client
//! knows.

pub mod answer;
pub mod request;

use super::openai::chunk_event;
use super::sse::SseParser;
use super::{
    fetch_text, http_client, open_stream, send_error, unix_now, BoxFuture, ChatCall, ChatReply,
    EventSource, ModelChoice, Provider, ProviderError, Refusal, StreamEvent,
};
use answer::StreamTranslator;
use bytes::Bytes;
use reqwest::header::HeaderValue;
use serde_json::{Map, Value};
use std::collections::VecDeque;
use std::time::Duration;

pub struct AnthropicProvider {
    name: String,
    messages_url: String,
    models_url: String,
    /// Marked sensitive: never shown by a request's `Debug`.
    api_key: HeaderValue,
    version: HeaderValue,
    model: ModelChoice,
    timeout: Duration,
    client: reqwest::Client,
}

impl AnthropicProvider {
    pub fn new(
        name: String,
        base_url: String,
        api_key: String,
        version: String,
        model: Option<String>,
        timeout: Duration,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        // Config validation made both header-safe; an unsafe one is sent empty (and refused).
        let header = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
        let mut api_key = header(api_key.as_str());
        api_key.set_sensitive(true);
        AnthropicProvider {
            name,
            messages_url: format!("{base}/v1/messages"),
            models_url: format!("{base}/v1/models"),
            api_key,
            version: header(version.as_str()),
            model: ModelChoice::new(model),
            timeout,
            client: http_client(),
        }
    }

    fn signed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.header("x-api-key", self.api_key.clone())
            .header("anthropic-version", self.version.clone())
    }

    async fn model_for(&self, requested: Option<&str>) -> Result<String, ProviderError> {
        self.model
            .pick(&self.name, requested, || async {
                let req = self.signed(self.client.get(&self.models_url));
                fetch_text(&self.name, self.timeout, req, Some("listing models"))
                    .await
                    .map(|(_, text)| text)
                    .map_err(overloaded_as_503)
            })
            .await
    }

    async fn body_for(
        &self,
        call: &ChatCall,
        stream: bool,
    ) -> Result<Map<String, Value>, ProviderError> {
        let model = self
            .model_for(call.body.get("model").and_then(Value::as_str))
            .await?;
        // Refused here as Anthropic would refuse it: a 400 naming the field, no fallback.
        let t = request::to_messages(&call.body, &model, stream).map_err(|u| {
            ProviderError::Upstream {
                provider: self.name.clone(),
                status: 400,
                detail: Box::new(Refusal {
                    message: format!("{}: {}", u.param, u.message),
                    kind: Some("invalid_request_error".into()),
                    param: Some(u.param),
                    ..Refusal::default()
                }),
            }
        })?;
        if !t.ignored.is_empty() {
            tracing::debug!(provider = %self.name, fields = ?t.ignored, "fields without a Messages API equivalent left out");
        }
        Ok(t.body)
    }

    fn post(&self, body: &Map<String, Value>) -> reqwest::RequestBuilder {
        self.signed(self.client.post(&self.messages_url).json(body))
    }
}

/// Anthropic's 529 `overloaded_error` -> 503: the same trouble in the status clients and the
/// pipeline's retries know. Its `type` stays `overloaded_error`.
fn overloaded_as_503(e: ProviderError) -> ProviderError {
    match e {
        ProviderError::Upstream {
            provider,
            status: 529,
            detail,
        } => ProviderError::Upstream {
            provider,
            status: 503,
            detail,
        },
        e => e,
    }
}

impl Provider for AnthropicProvider {
    fn chat<'a>(&'a self, call: &'a ChatCall) -> BoxFuture<'a, Result<ChatReply, ProviderError>> {
        Box::pin(async move {
            let body = self.body_for(call, false).await?;
            let (_, text) = fetch_text(&self.name, self.timeout, self.post(&body), None)
                .await
                .map_err(overloaded_as_503)?;
            let bad = |message: String| ProviderError::BadResponse {
                provider: self.name.clone(),
                message,
            };
            let message: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let json = answer::to_chat_completion(&message, unix_now()).map_err(bad)?;
            ChatReply::from_json(&self.name, json)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        call: &'a ChatCall,
    ) -> BoxFuture<'a, Result<Box<dyn EventSource>, ProviderError>> {
        Box::pin(async move {
            let body = self.body_for(call, true).await?;
            let resp = open_stream(&self.name, self.timeout, self.post(&body))
                .await
                .map_err(overloaded_as_503)?;
            Ok(Box::new(AnthropicEvents {
                name: self.name.clone(),
                resp,
                parser: SseParser::default(),
                timeout: self.timeout,
                translator: StreamTranslator::new(&self.name, unix_now()),
                pending: VecDeque::new(),
                ended: false,
            }) as Box<dyn EventSource>)
        })
    }
}

struct AnthropicEvents {
    name: String,
    resp: reqwest::Response,
    parser: SseParser,
    timeout: Duration,
    translator: StreamTranslator,
    /// Chunks translated and not yet handed on (one event may give several).
    pending: VecDeque<Value>,
    /// The body has ended.
    ended: bool,
}

impl AnthropicEvents {
    fn take(&mut self, data: Bytes) -> Result<(), ProviderError> {
        let event: Value =
            serde_json::from_slice(&data).map_err(|e| ProviderError::BadResponse {
                provider: self.name.clone(),
                message: format!("stream event: {e}"),
            })?;
        self.pending.extend(self.translator.on_event(&event)?);
        Ok(())
    }
}

impl EventSource for AnthropicEvents {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<StreamEvent>, ProviderError>> {
        Box::pin(async move {
            loop {
                if let Some(chunk) = self.pending.pop_front() {
                    return Ok(Some(chunk_event(Bytes::from(chunk.to_string()))));
                }
                if self.translator.is_done() {
                    return Ok(None);
                }
                if let Some(d) = self.parser.next_data() {
                    self.take(d)?;
                    continue;
                }
                if self.ended {
                    // Cut off: the answer may be incomplete, and the breaker should know.
                    return Err(ProviderError::BadResponse {
                        provider: self.name.clone(),
                        message: "the stream ended before message_stop".into(),
                    });
                }
                match tokio::time::timeout(self.timeout, self.resp.chunk()).await {
                    Err(_) => {
                        return Err(ProviderError::Timeout {
                            provider: self.name.clone(),
                            ms: self.timeout.as_millis() as u64,
                        })
                    }
                    Ok(Err(e)) => return Err(send_error(&self.name, e, self.timeout)),
                    Ok(Ok(Some(chunk))) => self.parser.push(&chunk),
                    Ok(Ok(None)) => {
                        self.ended = true;
                        if let Some(d) = self.parser.finish() {
                            self.take(d)?;
                        }
                    }
                }
            }
        })
    }
}
