//! A fake OpenAI-compatible inference provider on 127.0.0.1: real HTTP (hyper), the real wire
//! format (chat.completion JSON with `usage`, chat.completion.chunk SSE ending `data: [DONE]`,
//! with OpenAI's final usage chunk when `stream_options.include_usage` asks for it,
//! `/v1/embeddings` with `usage`, OpenAI error bodies), with latency, failures and answers a
//! test controls while it runs.
//! Shared by the tests and by `examples/fake_openai.rs` (the benchmark's direct baseline).

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Behavior {
    /// Delay before the answer (or before the first chunk).
    pub latency_ms: u64,
    /// Answer with this HTTP status and an OpenAI error body instead.
    pub fail_status: Option<u16>,
    /// The answer's text; `None` echoes the last user message.
    pub reply: Option<String>,
    pub finish_reason: String,
    /// Delay between streamed chunks.
    pub chunk_delay_ms: u64,
    /// Stop a stream after this many content chunks without finishing it (a broken stream).
    pub break_stream_after: Option<usize>,
    /// Report `usage` (in answers, in the stream's usage chunk when asked, in embeddings);
    /// `false`: a provider that reports none.
    pub usage: bool,
    /// `usage.prompt_tokens` of chat answers.
    pub prompt_tokens: u64,
    /// Dimension of `/v1/embeddings` vectors (a request's `dimensions` wins).
    pub embedding_dim: usize,
    /// With `fail_status`: fail only this many calls, then answer (`None`: every call).
    pub fail_times: Option<usize>,
    /// `Retry-After` sent with failures.
    pub retry_after: Option<String>,
    /// The `error` object sent with failures (OpenAI's shape), instead of a server_error.
    pub error: Option<Value>,
    /// Answer 200 with a body that is not a chat completion.
    pub malformed: bool,
    /// When the request declares tools: call this one with these arguments (a JSON text),
    /// with finish_reason `tool_calls`; streamed as OpenAI streams tool calls.
    pub tool_call: Option<(String, String)>,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            latency_ms: 0,
            fail_status: None,
            reply: Some("Hello from the fake provider.".into()),
            finish_reason: "stop".into(),
            chunk_delay_ms: 0,
            break_stream_after: None,
            usage: true,
            prompt_tokens: 10,
            embedding_dim: 384,
            fail_times: None,
            retry_after: None,
            error: None,
            malformed: false,
            tool_call: None,
        }
    }
}

pub struct FakeProvider {
    /// `http://127.0.0.1:PORT/v1`, what a provider's base_url is set to.
    pub base_url: String,
    pub behavior: Arc<Mutex<Behavior>>,
    pub hits: Arc<AtomicUsize>,
    pub last_request: Arc<Mutex<Option<Value>>>,
    /// Every request body received, in order.
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> FakeBody {
    Full::new(b.into()).boxed_unsync()
}

fn json_resp(status: u16, v: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap()
}

impl FakeProvider {
    pub async fn start(behavior: Behavior) -> FakeProvider {
        Self::start_on("127.0.0.1:0", behavior).await
    }

    pub async fn start_on(addr: &str, behavior: Behavior) -> FakeProvider {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let behavior = Arc::new(Mutex::new(behavior));
        let hits = Arc::new(AtomicUsize::new(0));
        let last_request = Arc::new(Mutex::new(None));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (b, h, l, r) = (
            behavior.clone(),
            hits.clone(),
            last_request.clone(),
            requests.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (b, h, l, r) = (b.clone(), h.clone(), l.clone(), r.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        serve(req, b.clone(), h.clone(), l.clone(), r.clone())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeProvider {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            behavior,
            hits,
            last_request,
            requests,
            task,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Behavior)) {
        f(&mut self.behavior.lock().unwrap());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// The last request body received.
    pub fn last(&self) -> Value {
        self.last_request
            .lock()
            .unwrap()
            .clone()
            .unwrap_or(Value::Null)
    }
}

/// A `chat.completion.chunk`; with `include_usage` asked, each carries `"usage": null`, as
/// OpenAI's do.
fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>, usage_null: bool) -> Bytes {
    chunk_of(0, id, model, delta, finish, usage_null)
}

/// A chunk of choice `index` (with `n` > 1 each chunk carries one choice).
fn chunk_of(
    index: u64,
    id: &str,
    model: &str,
    delta: Value,
    finish: Option<&str>,
    usage_null: bool,
) -> Bytes {
    let mut v = json!({
        "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
    });
    if usage_null {
        v["usage"] = Value::Null;
    }
    Bytes::from(format!("data: {v}\n\n"))
}

/// OpenAI's last chunk when `stream_options.include_usage` is set: no choices, the usage.
fn usage_chunk(id: &str, model: &str, prompt: u64, completion: u64) -> Bytes {
    let v = json!({
        "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake", "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    });
    Bytes::from(format!("data: {v}\n\n"))
}

/// A deterministic unit vector for `text` (nothing like a real model: tests need the shape).
fn fake_embedding(text: &str, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim)
        .map(|i| {
            let h = text.bytes().fold(i as u64 ^ 0xcbf2_9ce4_8422_2325, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            ((h >> 11) as f64 / (1u64 << 53) as f64 - 0.5) as f32
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn serve(
    req: Request<hyper::body::Incoming>,
    behavior: Arc<Mutex<Behavior>>,
    hits: Arc<AtomicUsize>,
    last: Arc<Mutex<Option<Value>>>,
    requests: Arc<Mutex<Vec<Value>>>,
) -> Result<Response<FakeBody>, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == hyper::Method::GET && path == "/v1/models" {
        return Ok(json_resp(
            200,
            &json!({"object": "list", "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "fake"}]}),
        ));
    }
    if path != "/v1/chat/completions" && path != "/v1/embeddings" {
        return Ok(json_resp(
            404,
            &json!({"error": {"message": format!("Unknown request URL: {path}"), "type": "invalid_request_error", "param": null, "code": "unknown_url"}}),
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Ok(json_resp(
            400,
            &json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error", "param": null, "code": null}}),
        ));
    };
    hits.fetch_add(1, Ordering::SeqCst);
    *last.lock().unwrap() = Some(v.clone());
    requests.lock().unwrap().push(v.clone());
    let b = {
        let mut shared = behavior.lock().unwrap();
        let b = shared.clone();
        // A limited run of failures counts down; the call after the last one answers.
        if b.fail_status.is_some() {
            if let Some(left) = shared.fail_times {
                if left <= 1 {
                    shared.fail_status = None;
                    shared.fail_times = None;
                } else {
                    shared.fail_times = Some(left - 1);
                }
            }
        }
        b
    };
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    if let Some(status) = b.fail_status {
        let error = b.error.clone().unwrap_or_else(|| {
            json!({"message": "The fake provider was told to fail.", "type": "server_error", "param": null, "code": null})
        });
        let mut resp = json_resp(status, &json!({ "error": error }));
        if let Some(ra) = &b.retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        return Ok(resp);
    }
    if b.malformed {
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(full("<html>502 Bad Gateway</html>"))
            .unwrap());
    }
    if path == "/v1/embeddings" {
        // Strings, or token arrays (one, or several), as OpenAI takes them.
        let (inputs, tokens): (Vec<String>, usize) = match v.get("input") {
            Some(Value::String(s)) => (vec![s.clone()], s.split_whitespace().count().max(1)),
            Some(Value::Array(a)) if a.first().is_some_and(Value::is_number) => {
                (vec![Value::Array(a.clone()).to_string()], a.len())
            }
            Some(Value::Array(a)) if a.first().is_some_and(Value::is_array) => (
                a.iter().map(Value::to_string).collect(),
                a.iter().map(|t| t.as_array().map_or(0, Vec::len)).sum(),
            ),
            Some(Value::Array(a)) => {
                let texts: Vec<String> = a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect();
                // One token per word, as a tokenizer would roughly see it.
                let n = texts
                    .iter()
                    .map(|t| t.split_whitespace().count().max(1))
                    .sum();
                (texts, n)
            }
            _ => (Vec::new(), 0),
        };
        let dim = v
            .get("dimensions")
            .and_then(Value::as_u64)
            .map(|d| d as usize)
            .unwrap_or(b.embedding_dim);
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t, dim)}))
            .collect();
        let mut answer = json!({"object": "list", "data": data, "model": v.get("model").cloned().unwrap_or(json!("fake-embed"))});
        if b.usage {
            answer["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
        }
        return Ok(json_resp(200, &answer));
    }
    let model = v
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_string();
    let text = b.reply.clone().unwrap_or_else(|| {
        v.get("messages")
            .and_then(Value::as_array)
            .and_then(|ms| ms.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string()
    });
    let id = "chatcmpl-fake0123456789";
    let n_choices = v.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
    let declared = v
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    // As a model does: a tool call answers the user; after a tool result it answers in text.
    let after_user = v
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "user");
    let tool = b.tool_call.clone().filter(|_| declared && after_user);
    if let Some((name, arguments)) = tool {
        return Ok(tool_answer(
            &v, id, &model, n_choices, &name, &arguments, &b,
        ));
    }
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = v.pointer("/stream_options/include_usage") == Some(&json!(true));
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
        tokio::spawn(async move {
            let send = |b: Bytes| tx.send(Ok(Frame::data(b)));
            if send(chunk(
                id,
                &model,
                json!({"role": "assistant", "content": ""}),
                None,
                include_usage,
            ))
            .await
            .is_err()
            {
                return;
            }
            let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
            for (n, w) in words.iter().enumerate() {
                if b.break_stream_after == Some(n) {
                    return;
                }
                if b.chunk_delay_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(b.chunk_delay_ms)).await;
                }
                for k in 0..n_choices {
                    if send(chunk_of(
                        k,
                        id,
                        &model,
                        json!({"content": w}),
                        None,
                        include_usage,
                    ))
                    .await
                    .is_err()
                    {
                        return;
                    }
                }
            }
            for k in 0..n_choices {
                let _ = send(chunk_of(
                    k,
                    id,
                    &model,
                    json!({}),
                    Some(&b.finish_reason),
                    include_usage,
                ))
                .await;
            }
            if include_usage && b.usage {
                let _ = send(usage_chunk(id, &model, b.prompt_tokens, words.len() as u64)).await;
            }
            let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
        return Ok(Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .header("cache-control", "no-cache")
            .body(body)
            .unwrap());
    }
    let words = text.split_whitespace().count() as u64;
    // Choice k > 0 says which it is, so a test can tell the choices apart.
    let choices: Vec<Value> = (0..n_choices)
        .map(|k| {
            let content = if k == 0 {
                text.clone()
            } else {
                format!("{text} (choice {k})")
            };
            json!({"index": k, "message": {"role": "assistant", "content": content, "refusal": null}, "logprobs": null, "finish_reason": b.finish_reason})
        })
        .collect();
    let mut answer = json!({
        "id": id, "object": "chat.completion", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": choices,
    });
    if b.usage {
        answer["usage"] = json!({"prompt_tokens": b.prompt_tokens, "completion_tokens": words * n_choices, "total_tokens": b.prompt_tokens + words * n_choices});
    }
    Ok(json_resp(200, &answer))
}

/// An answer that calls a tool: `message.tool_calls` with finish_reason `tool_calls`, or
/// streamed as OpenAI streams it (the call's id and name first, then its arguments in pieces).
fn tool_answer(
    v: &Value,
    id: &str,
    model: &str,
    n: u64,
    name: &str,
    arguments: &str,
    b: &Behavior,
) -> Response<FakeBody> {
    let call_id = "call_fake0001";
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = v.pointer("/stream_options/include_usage") == Some(&json!(true));
        let (id, model, name) = (id.to_string(), model.to_string(), name.to_string());
        let pieces: Vec<String> = {
            let chars: Vec<char> = arguments.chars().collect();
            chars.chunks(5).map(|c| c.iter().collect()).collect()
        };
        let usage = b.usage.then_some(b.prompt_tokens);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
        tokio::spawn(async move {
            let mut frames = vec![chunk(
                &id,
                &model,
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                None,
                include_usage,
            )];
            for p in &pieces {
                frames.push(chunk(
                    &id,
                    &model,
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}),
                    None,
                    include_usage,
                ));
            }
            frames.push(chunk(
                &id,
                &model,
                json!({}),
                Some("tool_calls"),
                include_usage,
            ));
            if let (true, Some(prompt)) = (include_usage, usage) {
                frames.push(usage_chunk(&id, &model, prompt, pieces.len() as u64));
            }
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            for f in frames {
                if tx.send(Ok(Frame::data(f))).await.is_err() {
                    return;
                }
            }
        });
        let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed_unsync();
        return Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(body)
            .unwrap();
    }
    let choices: Vec<Value> = (0..n)
        .map(|k| {
            json!({"index": k, "message": {"role": "assistant", "content": null, "refusal": null, "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]}, "logprobs": null, "finish_reason": "tool_calls"})
        })
        .collect();
    let mut answer = json!({
        "id": id, "object": "chat.completion", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake", "choices": choices,
    });
    if b.usage {
        answer["usage"] = json!({"prompt_tokens": b.prompt_tokens, "completion_tokens": 12, "total_tokens": b.prompt_tokens + 12});
    }
    json_resp(200, &answer)
}
