//! OpenAI-compatible provider: `POST {base_url}/chat/completions`, plain and streamed (SSE).

use super::sse::SseParser;
use super::{
    fetch_text, http_client, open_stream, send_error, BoxFuture, ChatCall, ChatReply, EventSource,
    ModelChoice, Provider, ProviderError, StreamEvent, ToolDelta,
};
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;

pub struct OpenAiProvider {
    name: String,
    chat_url: String,
    models_url: String,
    api_key: Option<String>,
    model: ModelChoice,
    timeout: Duration,
    client: reqwest::Client,
}

impl OpenAiProvider {
    pub fn new(
        name: String,
        base_url: String,
        api_key: Option<String>,
        model: Option<String>,
        timeout: Duration,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        OpenAiProvider {
            name,
            chat_url: format!("{base}/chat/completions"),
            models_url: format!("{base}/models"),
            api_key,
            model: ModelChoice::new(model),
            timeout,
            client: http_client(),
        }
    }

    fn post(&self, body: &serde_json::Map<String, Value>) -> reqwest::RequestBuilder {
        let req = self.client.post(&self.chat_url).json(body);
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }

    async fn model_for(&self, requested: Option<&str>) -> Result<String, ProviderError> {
        self.model
            .pick(&self.name, requested, || async {
                let mut req = self.client.get(&self.models_url);
                if let Some(k) = &self.api_key {
                    req = req.bearer_auth(k);
                }
                fetch_text(&self.name, self.timeout, req, Some("listing models"))
                    .await
                    .map(|(_, text)| text)
            })
            .await
    }

    async fn body_for(
        &self,
        call: &ChatCall,
        stream: bool,
    ) -> Result<serde_json::Map<String, Value>, ProviderError> {
        let mut body = call.body.clone();
        let model = self
            .model_for(body.get("model").and_then(Value::as_str))
            .await?;
        body.insert("model".into(), Value::String(model));
        body.insert("stream".into(), Value::Bool(stream));
        if stream {
            // Usage is metered: ask for the final usage chunk whatever the client asked (the
            // pipeline drops that chunk when the client did not ask for it).
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Default::default()));
            if !options.is_object() {
                *options = Value::Object(Default::default());
            }
            if let Value::Object(o) = options {
                o.insert("include_usage".into(), Value::Bool(true));
            }
        } else {
            body.remove("stream_options");
        }
        Ok(body)
    }
}

impl Provider for OpenAiProvider {
    fn chat<'a>(&'a self, call: &'a ChatCall) -> BoxFuture<'a, Result<ChatReply, ProviderError>> {
        Box::pin(async move {
            let body = self.body_for(call, false).await?;
            let (_, text) = fetch_text(&self.name, self.timeout, self.post(&body), None).await?;
            let json: Value =
                serde_json::from_str(&text).map_err(|e| ProviderError::BadResponse {
                    provider: self.name.clone(),
                    message: e.to_string(),
                })?;
            ChatReply::from_json(&self.name, json)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        call: &'a ChatCall,
    ) -> BoxFuture<'a, Result<Box<dyn EventSource>, ProviderError>> {
        Box::pin(async move {
            let body = self.body_for(call, true).await?;
            let resp = open_stream(&self.name, self.timeout, self.post(&body)).await?;
            Ok(Box::new(OpenAiEvents {
                name: self.name.clone(),
                resp,
                parser: SseParser::default(),
                timeout: self.timeout,
                done: false,
            }) as Box<dyn EventSource>)
        })
    }
}

struct OpenAiEvents {
    name: String,
    resp: reqwest::Response,
    parser: SseParser,
    timeout: Duration,
    done: bool,
}

/// Reads the text, finish reason, model, usage and tool-call pieces of a
/// `chat.completion.chunk` (of its first choice: with `n` > 1 a chunk carries one choice, named
/// by its `index`); the payload is passed on byte for byte.
pub fn chunk_event(data: Bytes) -> StreamEvent {
    let parsed: Option<Value> = serde_json::from_slice(&data).ok();
    let choices = parsed
        .as_ref()
        .and_then(|v| v.get("choices"))
        .and_then(Value::as_array);
    let choice = choices.and_then(|cs| {
        cs.iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
    });
    let usage = parsed
        .as_ref()
        .and_then(|v| v.get("usage"))
        .filter(|u| u.is_object())
        .cloned();
    let no_choices = choices.is_some_and(|c| c.is_empty());
    let tool_deltas = choice
        .and_then(|c| c.pointer("/delta/tool_calls"))
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(k, t)| ToolDelta {
                    index: t
                        .get("index")
                        .and_then(Value::as_u64)
                        .map(|i| i as usize)
                        .unwrap_or(k),
                    name: t
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    arguments: t
                        .pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    StreamEvent {
        model: parsed
            .as_ref()
            .and_then(|v| v.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string),
        usage_only: usage.is_some() && no_choices,
        usage,
        delta_text: choice
            .and_then(|c| c.pointer("/delta/content"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        finish_reason: choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_string),
        tool_deltas,
        data,
    }
}

impl EventSource for OpenAiEvents {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<StreamEvent>, ProviderError>> {
        Box::pin(async move {
            loop {
                if let Some(d) = self.parser.next_data() {
                    if d.as_ref() == b"[DONE]" {
                        self.done = true;
                        return Ok(None);
                    }
                    return Ok(Some(chunk_event(d)));
                }
                if self.done {
                    return Ok(None);
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
                        self.done = true;
                        return match self.parser.finish() {
                            Some(d) if d.as_ref() == b"[DONE]" => Ok(None),
                            Some(d) => Ok(Some(chunk_event(d))),
                            // Cut off: the answer may be incomplete, and the breaker should know.
                            None => Err(ProviderError::BadResponse {
                                provider: self.name.clone(),
                                message: "the stream ended before data: [DONE]".into(),
                            }),
                        };
                    }
                }
            }
        })
    }
}
