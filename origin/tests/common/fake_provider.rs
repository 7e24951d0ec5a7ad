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
    /// Dimension of `/v1/embeddings` vectors.
    pub embedding_dim: usize,
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
        }
    }
}

pub struct FakeProvider {
    /// `http://127.0.0.1:PORT/v1`, what a provider's base_url is set to.
    pub base_url: String,
    pub behavior: Arc<Mutex<Behavior>>,
    pub hits: Arc<AtomicUsize>,
    pub last_request: Arc<Mutex<Option<Value>>>,
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
        let (b, h, l) = (behavior.clone(), hits.clone(), last_request.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (b, h, l) = (b.clone(), h.clone(), l.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| serve(req, b.clone(), h.clone(), l.clone()));
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
            task,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut Behavior)) {
        f(&mut self.behavior.lock().unwrap());
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A `chat.completion.chunk`; with `include_usage` asked, each carries `"usage": null`, as
/// OpenAI's do.
fn chunk(id: &str, model: &str, delta: Value, finish: Option<&str>, usage_null: bool) -> Bytes {
    let mut v = json!({
        "id": id, "object": "chat.completion.chunk", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
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
    let b = behavior.lock().unwrap().clone();
    if b.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(b.latency_ms)).await;
    }
    if let Some(status) = b.fail_status {
        return Ok(json_resp(
            status,
            &json!({"error": {"message": "The fake provider was told to fail.", "type": "server_error", "param": null, "code": null}}),
        ));
    }
    if path == "/v1/embeddings" {
        let inputs: Vec<String> = match v.get("input") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        // One token per word, as a tokenizer would roughly see it.
        let tokens: usize = inputs
            .iter()
            .map(|t| t.split_whitespace().count().max(1))
            .sum();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake_embedding(t, b.embedding_dim)}))
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
                if send(chunk(
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
            let _ = send(chunk(
                id,
                &model,
                json!({}),
                Some(&b.finish_reason),
                include_usage,
            ))
            .await;
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
    let mut answer = json!({
        "id": id, "object": "chat.completion", "created": 1_700_000_000u64, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": null}, "logprobs": null, "finish_reason": b.finish_reason}],
    });
    if b.usage {
        answer["usage"] = json!({"prompt_tokens": b.prompt_tokens, "completion_tokens": words, "total_tokens": b.prompt_tokens + words});
    }
    Ok(json_resp(200, &answer))
}
