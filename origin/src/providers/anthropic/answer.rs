//! Anthropic's answers translated to OpenAI's shapes: a whole `message` to a `chat.completion`,
//! the stream's events to `chat.completion.chunk` payloads. Pure: the time comes in as
//! `created`.

use super::super::{ProviderError, Refusal};
use serde_json::{json, Map, Value};

/// `stop_reason` -> `finish_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        // end_turn, stop_sequence, pause_turn: the model stopped of its own accord.
        _ => "stop",
    }
}

/// Anthropic's `usage` -> OpenAI's. Anthropic counts cached prompt tokens apart from
/// `input_tokens`; OpenAI's `prompt_tokens` includes them (`prompt_tokens_details.cached_tokens`
/// says how many were read from the cache). Anthropic's two cache counts are kept as they are.
pub fn usage(u: &Value) -> Value {
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    let (read, written) = (
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    let prompt = n("input_tokens").unwrap_or(0) + read.unwrap_or(0) + written.unwrap_or(0);
    let completion = n("output_tokens").unwrap_or(0);
    let mut v = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if read.is_some() || written.is_some() {
        v["prompt_tokens_details"] = json!({"cached_tokens": read.unwrap_or(0)});
        v["cache_read_input_tokens"] = json!(read.unwrap_or(0));
        v["cache_creation_input_tokens"] = json!(written.unwrap_or(0));
    }
    v
}

/// The HTTP status an error `type` comes with, for an error reported inside a stream (which
/// has none). `overloaded_error` is Anthropic's 529, given as 503 as its HTTP answers are.
pub fn status_of(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 503,
        _ => 500,
    }
}

/// A Messages API `message` -> an OpenAI `chat.completion`: text blocks joined into `content`,
/// `tool_use` blocks as `tool_calls` (the input as a JSON string). Thinking blocks have no
/// place in the OpenAI shape and are left out.
pub fn to_chat_completion(message: &Value, created: u64) -> Result<Value, String> {
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Err("not a Messages API message (type is not \"message\")".into());
    }
    let blocks = message
        .get("content")
        .and_then(Value::as_array)
        .ok_or("no content array")?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": b.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": b.get("input").filter(|i| !i.is_null()).unwrap_or(&json!({})).to_string(),
                },
            })),
            _ => {}
        }
    }
    let mut reply = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        if text.is_empty() {
            reply["content"] = Value::Null;
        }
        reply["tool_calls"] = Value::Array(calls);
    }
    let mut v = json!({
        "id": message.get("id").cloned().unwrap_or(Value::Null),
        "object": "chat.completion",
        "created": created,
        "model": message.get("model").cloned().unwrap_or(Value::Null),
        "choices": [{
            "index": 0,
            "message": reply,
            "logprobs": null,
            "finish_reason": message.get("stop_reason").and_then(Value::as_str).map(finish_reason),
        }],
    });
    if let Some(u) = message.get("usage").filter(|u| u.is_object()) {
        v["usage"] = usage(u);
    }
    Ok(v)
}

/// Anthropic's stream events in, OpenAI `chat.completion.chunk` payloads out: the first chunk
/// carries the role, text deltas become `delta.content`, a `tool_use` block its
/// `delta.tool_calls` entry (counted among tool_use blocks only) and its `input_json_delta`s
/// the argument fragments; `message_delta` gives the closing chunk with `finish_reason`, and
/// `message_stop` the usage-only chunk (`choices: []`) OpenAI sends with `include_usage`.
pub struct StreamTranslator {
    provider: String,
    created: u64,
    id: Value,
    model: Value,
    /// (content block index, tool call index) of each tool_use block so far.
    tools: Vec<(u64, usize)>,
    /// The usage counts so far: `message_start`'s, updated by `message_delta`'s (cumulative).
    usage: Map<String, Value>,
    finished: bool,
    done: bool,
}

impl StreamTranslator {
    pub fn new(provider: &str, created: u64) -> StreamTranslator {
        StreamTranslator {
            provider: provider.to_string(),
            created,
            id: Value::Null,
            model: Value::Null,
            tools: Vec::new(),
            usage: Map::new(),
            finished: false,
            done: false,
        }
    }

    /// `message_stop` was seen: nothing follows.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    fn add_usage(&mut self, u: Option<&Value>) {
        if let Some(Value::Object(u)) = u {
            for (k, v) in u {
                if v.is_u64() {
                    self.usage.insert(k.clone(), v.clone());
                }
            }
        }
    }

    /// The chunks one event gives (often none: `ping`, `content_block_stop`).
    pub fn on_event(&mut self, event: &Value) -> Result<Vec<Value>, ProviderError> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let text_of =
            |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        Ok(match kind {
            "message_start" => {
                let m = event.get("message").unwrap_or(&Value::Null);
                self.id = m.get("id").cloned().unwrap_or(Value::Null);
                self.model = m.get("model").cloned().unwrap_or(Value::Null);
                self.add_usage(m.get("usage"));
                vec![self.chunk(json!({"role": "assistant", "content": ""}), None)]
            }
            "content_block_start" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = event.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let k = self.tools.len();
                        self.tools.push((index, k));
                        vec![self.chunk(
                            json!({"tool_calls": [{
                                "index": k,
                                "id": block.get("id").cloned().unwrap_or(Value::Null),
                                "type": "function",
                                "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                            }]}),
                            None,
                        )]
                    }
                    Some("text") => {
                        let t = text_of(block, "text");
                        if t.is_empty() {
                            Vec::new()
                        } else {
                            vec![self.chunk(json!({"content": t}), None)]
                        }
                    }
                    _ => Vec::new(),
                }
            }
            "content_block_delta" => {
                let index = event.get("index").and_then(Value::as_u64).unwrap_or(0);
                let delta = event.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = text_of(delta, "text");
                        if t.is_empty() {
                            Vec::new()
                        } else {
                            vec![self.chunk(json!({"content": t}), None)]
                        }
                    }
                    Some("input_json_delta") => {
                        let part = text_of(delta, "partial_json");
                        let k = self
                            .tools
                            .iter()
                            .find(|(i, _)| *i == index)
                            .map(|(_, k)| *k)
                            .ok_or_else(|| ProviderError::BadResponse {
                                provider: self.provider.clone(),
                                message: format!(
                                    "input_json_delta for content block {index}, which is not a tool_use block"
                                ),
                            })?;
                        if part.is_empty() {
                            Vec::new()
                        } else {
                            vec![self.chunk(
                                json!({"tool_calls": [{"index": k, "function": {"arguments": part}}]}),
                                None,
                            )]
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta: no OpenAI equivalent.
                    _ => Vec::new(),
                }
            }
            "message_delta" => {
                self.add_usage(event.get("usage"));
                match event.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(r) => {
                        self.finished = true;
                        vec![self.chunk(json!({}), Some(finish_reason(r)))]
                    }
                    None => Vec::new(),
                }
            }
            "message_stop" => {
                self.done = true;
                let mut out = Vec::with_capacity(2);
                if !self.finished {
                    self.finished = true;
                    out.push(self.chunk(json!({}), Some("stop")));
                }
                out.push(json!({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage(&Value::Object(self.usage.clone())),
                }));
                out
            }
            "error" => {
                let e = event.get("error").unwrap_or(&Value::Null);
                let kind = e
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("api_error")
                    .to_string();
                return Err(ProviderError::Upstream {
                    provider: self.provider.clone(),
                    status: status_of(&kind),
                    detail: Box::new(Refusal {
                        message: text_of(e, "message"),
                        kind: Some(kind),
                        ..Refusal::default()
                    }),
                });
            }
            // ping, content_block_stop, and event types added later: nothing to send.
            _ => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_answer_becomes_a_chat_completion() {
        let m = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": ", world."}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 4}});
        let v = to_chat_completion(&m, 1_700_000_000).unwrap();
        assert_eq!(
            v,
            json!({"id": "msg_01", "object": "chat.completion", "created": 1_700_000_000u64, "model": "claude-test",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, world."}, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}})
        );
        let reply = crate::providers::ChatReply::from_json("a", v).unwrap();
        assert_eq!(reply.text, "Hello, world.");
        assert_eq!(reply.finish_reason.as_deref(), Some("stop"));
        assert!(to_chat_completion(&json!({"type": "error", "error": {}}), 0).is_err());
    }

    #[test]
    fn a_tool_use_answer_becomes_tool_calls() {
        let m = json!({"id": "msg_02", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "x"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 50, "cache_creation_input_tokens": 10}});
        let v = to_chat_completion(&m, 0).unwrap();
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}])
        );
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 160, "completion_tokens": 20, "total_tokens": 180,
                "prompt_tokens_details": {"cached_tokens": 50},
                "cache_read_input_tokens": 50, "cache_creation_input_tokens": 10})
        );
    }

    #[test]
    fn stop_reasons_map_to_finish_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
        ] {
            assert_eq!(finish_reason(stop), finish, "{stop}");
        }
        assert_eq!(status_of("overloaded_error"), 503);
        assert_eq!(status_of("rate_limit_error"), 429);
    }

    fn feed(events: &[Value]) -> Result<Vec<Value>, ProviderError> {
        let mut t = StreamTranslator::new("a", 7);
        let mut out = Vec::new();
        for e in events {
            out.extend(t.on_event(e)?);
        }
        assert!(t.is_done());
        Ok(out)
    }

    fn start() -> Value {
        json!({"type": "message_start", "message": {"id": "msg_s", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}}})
    }

    #[test]
    fn a_text_stream_becomes_chunks_then_usage() {
        let out = feed(&[
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": 15}}),
            json!({"type": "message_stop"}),
        ])
        .unwrap();
        assert_eq!(out.len(), 5, "{out:?}");
        assert!(out.iter().all(|c| c["object"] == "chat.completion.chunk"
            && c["id"] == "msg_s"
            && c["model"] == "claude-test"
            && c["created"] == 7));
        assert_eq!(
            out[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(out[1]["choices"][0]["delta"], json!({"content": "Hel"}));
        assert_eq!(out[2]["choices"][0]["delta"], json!({"content": "lo"}));
        assert_eq!(out[3]["choices"][0]["finish_reason"], "length");
        assert_eq!(out[4]["choices"], json!([]));
        assert_eq!(
            out[4]["usage"],
            json!({"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40,
                "prompt_tokens_details": {"cached_tokens": 0},
                "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
        );
        // What the pipeline reads of each chunk.
        let events: Vec<_> = out
            .iter()
            .map(|c| crate::providers::openai::chunk_event(bytes::Bytes::from(c.to_string())))
            .collect();
        let text: String = events.iter().map(|e| e.delta_text.as_str()).collect();
        assert_eq!(text, "Hello");
        assert_eq!(events[3].finish_reason.as_deref(), Some("length"));
        assert!(events[4].usage_only && events[4].usage.is_some());
        assert!(events[..4].iter().all(|e| !e.usage_only));
    }

    #[test]
    fn tool_use_blocks_stream_as_tool_call_deltas() {
        let out = feed(&[
            start(),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Pa"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "ris\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 30}}),
            json!({"type": "message_stop"}),
        ])
        .unwrap();
        let deltas: Vec<&Value> = out
            .iter()
            .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
            .collect();
        assert_eq!(
            deltas[0],
            &json!({"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": ""}})
        );
        let args = |k: u64| -> String {
            deltas
                .iter()
                .filter(|d| d["index"] == k)
                .filter_map(|d| d.pointer("/function/arguments").and_then(Value::as_str))
                .collect()
        };
        assert_eq!(
            serde_json::from_str::<Value>(&args(0)).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(args(1), "{}");
        assert_eq!(deltas.iter().filter(|d| d.get("id").is_some()).count(), 2);
        let finish: Vec<&Value> = out
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/finish_reason")
                    .filter(|f| !f.is_null())
            })
            .collect();
        assert_eq!(finish, [&json!("tool_calls")]);
    }

    #[test]
    fn an_error_event_is_a_provider_error() {
        let e = feed(&[
            start(),
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ])
        .unwrap_err();
        match e {
            ProviderError::Upstream { status, detail, .. } => {
                assert_eq!(status, 503);
                assert_eq!(detail.kind.as_deref(), Some("overloaded_error"));
                assert_eq!(detail.message, "Overloaded");
            }
            other => panic!("{other:?}"),
        }
        let mut t = StreamTranslator::new("a", 0);
        t.on_event(&start()).unwrap();
        let e = t
            .on_event(&json!({"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": "{"}}))
            .unwrap_err();
        assert!(matches!(e, ProviderError::BadResponse { .. }), "{e:?}");
        // Without message_delta, message_stop still closes the choice.
        let out = feed(&[start(), json!({"type": "message_stop"})]).unwrap();
        assert_eq!(out[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(out[2]["usage"]["prompt_tokens"], 25);
    }
}
