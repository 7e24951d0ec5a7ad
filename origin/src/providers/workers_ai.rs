//! Cloudflare Workers AI REST provider: `POST {root}/accounts/{account}/ai/run/{model}` with
//! `{"messages":[...]}`, answered `{"result":{"response":"..."},"success":true}`; streamed as
//! SSE `data: {"response":"..."}` events ending `data: [DONE]`. Both are translated to the
//! OpenAI chat-completion shapes.

use super::sse::SseParser;
use super::{
    error_message, fetch_text, http_client, open_stream, send_error, unix_now, BoxFuture, ChatCall,
    ChatReply, EventSource, Provider, ProviderError, StreamEvent,
};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::time::Duration;

pub struct WorkersAiProvider {
    name: String,
    url: String,
    api_key: String,
    model: String,
    timeout: Duration,
    client: reqwest::Client,
}

impl WorkersAiProvider {
    pub fn new(
        name: String,
        root: String,
        account_id: String,
        api_key: String,
        model: String,
        timeout: Duration,
    ) -> Self {
        let url = format!(
            "{}/accounts/{}/ai/run/{}",
            root.trim_end_matches('/'),
            account_id,
            model
        );
        WorkersAiProvider {
            name,
            url,
            api_key,
            model,
            timeout,
            client: http_client(),
        }
    }

    /// Workers AI takes plain-string contents; text parts of an array content are joined.
    fn body(&self, call: &ChatCall, stream: bool) -> Value {
        let messages: Vec<Value> = call
            .body
            .get("messages")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
                        json!({"role": role, "content": super::content_text(m.get("content"))})
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut body = Map::new();
        body.insert("messages".into(), Value::Array(messages));
        for k in [
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "frequency_penalty",
            "presence_penalty",
            // JSON mode, on the models that take it (a provider with `features = ["json_schema"]`).
            "response_format",
        ] {
            if let Some(v) = call.body.get(k) {
                body.insert(k.into(), v.clone());
            }
        }
        if let Some(v) = call.body.get("max_completion_tokens") {
            body.entry("max_tokens").or_insert(v.clone());
        }
        body.insert("stream".into(), Value::Bool(stream));
        Value::Object(body)
    }

    fn send(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(body)
    }
}

impl Provider for WorkersAiProvider {
    fn chat<'a>(&'a self, call: &'a ChatCall) -> BoxFuture<'a, Result<ChatReply, ProviderError>> {
        Box::pin(async move {
            let request = self.send(&self.body(call, false));
            let (status, text) = fetch_text(&self.name, self.timeout, request, None).await?;
            let v: Value = serde_json::from_str(&text).map_err(|e| ProviderError::BadResponse {
                provider: self.name.clone(),
                message: e.to_string(),
            })?;
            if v.get("success").and_then(Value::as_bool) == Some(false) {
                return Err(ProviderError::Upstream {
                    provider: self.name.clone(),
                    status,
                    detail: Box::new(super::Refusal::message(error_message(&text))),
                });
            }
            let answer = v
                .pointer("/result/response")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::BadResponse {
                    provider: self.name.clone(),
                    message: "no result.response".into(),
                })?;
            let usage = v.pointer("/result/usage").cloned().unwrap_or(Value::Null);
            let json = json!({
                "id": format!("chatcmpl-{:016x}", rand::random::<u64>()),
                "object": "chat.completion",
                "created": unix_now(),
                "model": self.model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": answer},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            });
            ChatReply::from_json(&self.name, json)
        })
    }

    fn chat_stream<'a>(
        &'a self,
        call: &'a ChatCall,
    ) -> BoxFuture<'a, Result<Box<dyn EventSource>, ProviderError>> {
        Box::pin(async move {
            let resp =
                open_stream(&self.name, self.timeout, self.send(&self.body(call, true))).await?;
            Ok(Box::new(WorkersAiEvents {
                name: self.name.clone(),
                model: self.model.clone(),
                id: format!("chatcmpl-{:016x}", rand::random::<u64>()),
                created: unix_now(),
                resp,
                parser: SseParser::default(),
                timeout: self.timeout,
                sent_role: false,
                state: EventsState::Reading,
                usage: None,
            }) as Box<dyn EventSource>)
        })
    }
}

#[derive(PartialEq)]
enum EventsState {
    Reading,
    /// Upstream ended; the closing chunk (finish_reason) is still to send.
    Closing,
    Done,
}

struct WorkersAiEvents {
    name: String,
    model: String,
    id: String,
    created: u64,
    resp: reqwest::Response,
    parser: SseParser,
    timeout: Duration,
    sent_role: bool,
    state: EventsState,
    /// Workers AI's usage report, from its last event; handed on with the closing chunk.
    usage: Option<Value>,
}

impl WorkersAiEvents {
    fn chunk(&mut self, text: &str, finish: Option<&str>) -> StreamEvent {
        let mut delta = Map::new();
        if !self.sent_role {
            delta.insert("role".into(), json!("assistant"));
            self.sent_role = true;
        }
        if finish.is_none() {
            delta.insert("content".into(), json!(text));
        }
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        StreamEvent {
            data: Bytes::from(v.to_string()),
            delta_text: text.to_string(),
            finish_reason: finish.map(str::to_string),
            model: Some(self.model.clone()),
            usage: if finish.is_some() {
                self.usage.take()
            } else {
                None
            },
            usage_only: false,
            tool_deltas: Vec::new(),
        }
    }
}

impl WorkersAiEvents {
    /// One upstream event: a chunk to send, or nothing (empty text, or `[DONE]`).
    fn translate(&mut self, d: Bytes) -> Result<Option<StreamEvent>, ProviderError> {
        if d.as_ref() == b"[DONE]" {
            self.state = EventsState::Closing;
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(&d).map_err(|e| ProviderError::BadResponse {
            provider: self.name.clone(),
            message: format!("stream event: {e}"),
        })?;
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        match v.get("response").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => {
                let text = text.to_string();
                Ok(Some(self.chunk(&text, None)))
            }
            _ => Ok(None),
        }
    }
}

impl EventSource for WorkersAiEvents {
    fn next(&mut self) -> BoxFuture<'_, Result<Option<StreamEvent>, ProviderError>> {
        Box::pin(async move {
            loop {
                match self.state {
                    EventsState::Done => return Ok(None),
                    EventsState::Closing => {
                        self.state = EventsState::Done;
                        return Ok(Some(self.chunk("", Some("stop"))));
                    }
                    EventsState::Reading => {}
                }
                if let Some(d) = self.parser.next_data() {
                    if let Some(ev) = self.translate(d)? {
                        return Ok(Some(ev));
                    }
                    continue;
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
                        let last = self.parser.finish();
                        self.state = EventsState::Closing;
                        if let Some(d) = last {
                            if let Some(ev) = self.translate(d)? {
                                return Ok(Some(ev));
                            }
                        }
                    }
                }
            }
        })
    }
}
