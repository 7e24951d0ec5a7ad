//! The HTTP embedders against a local fake that speaks the real wire formats (OpenAI's
//! `/v1/embeddings` and Workers AI's REST `ai/run`), including their error bodies.

mod common;

use bytes::Bytes;
use common::{owner_client, TestServer};
use heady_origin::config::EmbedderKind;
use heady_origin::memory::embedder::{EmbedError, Embedder, OpenAiEmbedder, WorkersAiEmbedder};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIM: usize = 8;

fn vector_for(text: &str) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM)
        .map(|i| ((text.len() + i) % 7) as f32 + 1.0)
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Answers like the real services; records the last request for inspection.
async fn fake(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
        .unwrap_or(Value::Null);
    seen.lock()
        .unwrap()
        .push((path.clone(), auth.clone(), body.clone()));
    if path == "/v1/embeddings" {
        if auth != "Bearer sk-good" {
            return reply(
                401,
                json!({"error": {"message": "Incorrect API key provided: sk-bad.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}),
            );
        }
        let model = body["model"].as_str().unwrap_or("");
        if model != "nomic-embed-text" && model != "wide" {
            return reply(
                404,
                json!({"error": {"message": format!("The model `{model}` does not exist"), "type": "invalid_request_error", "param": null, "code": "model_not_found"}}),
            );
        }
        let inputs: Vec<String> = body["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        // Real servers may return items out of order; `index` says where each belongs.
        let mut data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut v = vector_for(t);
                if model == "wide" {
                    v.push(0.0);
                }
                json!({"object": "embedding", "index": i, "embedding": v})
            })
            .collect();
        data.reverse();
        return reply(
            200,
            json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 3, "total_tokens": 3}}),
        );
    }
    if path == "/client/v4/accounts/acct123/ai/run/@cf/baai/bge-small-en-v1.5" {
        if auth != "Bearer cf-good" {
            return reply(
                400,
                json!({"result": null, "success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": []}),
            );
        }
        let texts: Vec<String> = body["text"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        let data: Vec<Vec<f32>> = texts.iter().map(|t| vector_for(t)).collect();
        return reply(
            200,
            json!({"result": {"shape": [texts.len(), DIM], "data": data, "pooling": "mean"}, "success": true, "errors": [], "messages": []}),
        );
    }
    reply(404, json!({"error": "not found"}))
}

async fn start_fake() -> (String, Arc<Mutex<Vec<(String, String, Value)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let seen = seen.clone();
                    async move { Ok::<_, std::convert::Infallible>(fake(req, seen).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn texts(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn openai_wire_format_and_errors() {
    let (base, seen) = start_fake().await;
    let t = Duration::from_secs(5);
    let e = OpenAiEmbedder::new(
        format!("{base}/v1"),
        Some("sk-good".into()),
        "nomic-embed-text".into(),
        DIM,
        t,
    );
    let out = e.embed(&texts(&["a", "bbb"])).await.unwrap();
    assert_eq!(
        out,
        vec![vector_for("a"), vector_for("bbb")],
        "re-ordered by index"
    );
    let (path, auth, body) = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        (path.as_str(), auth.as_str()),
        ("/v1/embeddings", "Bearer sk-good")
    );
    assert_eq!(body["model"], "nomic-embed-text");
    assert_eq!(body["input"], json!(["a", "bbb"]));

    let bad_key = OpenAiEmbedder::new(
        format!("{base}/v1"),
        Some("sk-bad".into()),
        "nomic-embed-text".into(),
        DIM,
        t,
    );
    match bad_key.embed(&texts(&["a"])).await {
        Err(EmbedError::Upstream {
            status: 401,
            message,
            ..
        }) => assert!(message.contains("Incorrect API key"), "{message}"),
        other => panic!("{other:?}"),
    }
    let bad_model = OpenAiEmbedder::new(
        format!("{base}/v1/"),
        Some("sk-good".into()),
        "gpt-nope".into(),
        DIM,
        t,
    );
    match bad_model.embed(&texts(&["a"])).await {
        Err(EmbedError::Upstream {
            status: 404,
            message,
            ..
        }) => assert!(message.contains("gpt-nope"), "{message}"),
        other => panic!("{other:?}"),
    }
    let wide = OpenAiEmbedder::new(
        format!("{base}/v1"),
        Some("sk-good".into()),
        "wide".into(),
        DIM,
        t,
    );
    assert!(matches!(
        wide.embed(&texts(&["a"])).await,
        Err(EmbedError::Dimension {
            got: 9,
            want: 8,
            ..
        })
    ));
    let down = OpenAiEmbedder::new("http://127.0.0.1:1/v1".into(), None, "m".into(), DIM, t);
    assert!(matches!(
        down.embed(&texts(&["a"])).await,
        Err(EmbedError::Unreachable { .. })
    ));
}

#[tokio::test]
async fn workers_ai_wire_format_and_errors() {
    let (base, seen) = start_fake().await;
    let t = Duration::from_secs(5);
    let root = format!("{base}/client/v4");
    let e = WorkersAiEmbedder::new(
        root.clone(),
        "acct123".into(),
        "cf-good".into(),
        WorkersAiEmbedder::DEFAULT_MODEL.into(),
        DIM,
        t,
    );
    let out = e.embed(&texts(&["hello", "hi"])).await.unwrap();
    assert_eq!(out, vec![vector_for("hello"), vector_for("hi")]);
    let (path, auth, body) = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(
        path,
        "/client/v4/accounts/acct123/ai/run/@cf/baai/bge-small-en-v1.5"
    );
    assert_eq!(auth, "Bearer cf-good");
    assert_eq!(body, json!({"text": ["hello", "hi"]}));
    let bad = WorkersAiEmbedder::new(
        root,
        "acct123".into(),
        "cf-bad".into(),
        WorkersAiEmbedder::DEFAULT_MODEL.into(),
        DIM,
        t,
    );
    match bad.embed(&texts(&["a"])).await {
        Err(EmbedError::Upstream {
            status: 400,
            message,
            ..
        }) => assert_eq!(message, "10000 Authentication error"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_daemon_uses_the_configured_embedder_and_reports_its_failures() {
    let (base, _seen) = start_fake().await;
    let s = TestServer::start(|c| {
        c.memory.dim = DIM;
        c.embedder.kind = EmbedderKind::Openai;
        c.embedder.base_url = Some(format!("{base}/v1"));
        c.embedder.api_key = Some("sk-good".into());
        c.embedder.model = Some("nomic-embed-text".into());
    })
    .await;
    let r = owner_client()
        .post(s.url("/api/memory/vectors"))
        .json(&json!({"content": "embedded remotely"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, stats) = (
        0,
        owner_client()
            .get(s.url("/api/memory/stats"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
    );
    assert_eq!(stats["embedder"], "openai");
    assert_eq!(stats["total_vectors"], 1);
    s.stop().await;

    let s = TestServer::start(|c| {
        c.memory.dim = DIM;
        c.embedder.kind = EmbedderKind::Openai;
        c.embedder.base_url = Some(format!("{base}/v1"));
        c.embedder.api_key = Some("sk-bad".into());
        c.embedder.model = Some("nomic-embed-text".into());
    })
    .await;
    let r = owner_client()
        .post(s.url("/api/memory/vectors"))
        .json(&json!({"content": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "embedder_failed");
    // The embedder's own answer (its URL, its message) is the log's, not the client's: the
    // client gets the request id to quote.
    assert!(!body.to_string().contains(base.as_str()), "{body}");
    assert!(body["error"]["request_id"].is_string(), "{body}");
    s.stop().await;
}
