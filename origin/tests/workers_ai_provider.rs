//! The Workers AI provider against a local fake of Cloudflare's REST API (`ai/run`): its JSON
//! answer, its SSE stream and its error body, translated to OpenAI's shapes by the daemon.

mod common;

use bytes::Bytes;
use common::{client, TestServer};
use heady_origin::providers::config::{ProviderConfig, ProviderKind};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

type B = UnsyncBoxBody<Bytes, Infallible>;

async fn fake(
    req: Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<(String, String, Value)>>>,
) -> Result<Response<B>, Infallible> {
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body: Value = serde_json::from_slice(&req.into_body().collect().await.unwrap().to_bytes())
        .unwrap_or(Value::Null);
    seen.lock()
        .unwrap()
        .push((path.clone(), auth.clone(), body.clone()));
    let json_reply = |status: u16, v: Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
            .unwrap()
    };
    if auth != "Bearer cf-token" {
        return Ok(json_reply(
            401,
            json!({"result": null, "success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": []}),
        ));
    }
    if path != "/client/v4/accounts/acct-1/ai/run/@cf/meta/llama-3.1-8b-instruct" {
        return Ok(json_reply(
            404,
            json!({"success": false, "errors": [{"code": 7003, "message": "No route for that URI"}], "messages": [], "result": null}),
        ));
    }
    if body["stream"] == true {
        let sse = "data: {\"response\":\"Hel\",\"p\":\"abc\"}\n\ndata: {\"response\":\"lo!\"}\n\ndata: {\"response\":\"\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\ndata: [DONE]\n\n";
        return Ok(Response::builder()
            .header("content-type", "text/event-stream")
            .body(Full::new(Bytes::from(sse)).boxed_unsync())
            .unwrap());
    }
    Ok(json_reply(
        200,
        json!({"result": {"response": "Hello!", "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}, "success": true, "errors": [], "messages": []}),
    ))
}

#[tokio::test]
async fn workers_ai_answers_are_translated_to_openai_shapes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |r| fake(r, seen.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let cf = |name: &str, key: &str| ProviderConfig {
        name: name.into(),
        kind: ProviderKind::WorkersAi,
        base_url: Some(format!("http://127.0.0.1:{port}/client/v4")),
        api_key: Some(key.into()),
        account_id: Some("acct-1".into()),
        model: Some("@cf/meta/llama-3.1-8b-instruct".into()),
        groups: Vec::new(),
        weight: 1.0,
        priority: 0,
        timeout_ms: 5_000,
        anthropic_version: None,
        features: None,
    };
    let good = cf("cf", "cf-token");
    let s = TestServer::start(move |c| c.providers = vec![good]).await;
    let url = s.url("/v1/chat/completions");
    let body = json!({"model": "heady", "max_tokens": 64, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Say hello"}]}]});
    let r: Value = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(r["choices"][0]["message"]["content"], "Hello!");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    assert_eq!(r["usage"]["total_tokens"], 7);
    assert_eq!(r["heady"]["provider"], "cf");
    let (_, auth, sent) = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(auth, "Bearer cf-token");
    // Content parts are flattened to text; parameters Workers AI knows are passed on.
    assert_eq!(
        sent["messages"][1],
        json!({"role": "user", "content": "Say hello"})
    );
    assert_eq!(sent["max_tokens"], 64);
    assert_eq!(sent["stream"], false);

    let mut body = body.clone();
    body["stream"] = json!(true);
    let text = client()
        .post(&url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(*events.last().unwrap(), "data: [DONE]", "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e["data: ".len()..]).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hello!");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    s.stop().await;

    // A rejected key is a 502 that says what kind of failure it was; Cloudflare's own error
    // text (and the account in its URL) stays in the log.
    let bad = cf("cf", "wrong");
    let s = TestServer::start(move |c| c.providers = vec![bad]).await;
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&json!({"model": "heady", "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    // A rejected key is the provider's trouble (fallback, breaker), not the client's: 502.
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (502, Some("upstream_failed")),
        "{v}"
    );
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("cf: error: answered 401") && !message.contains("Authentication error"),
        "{v}"
    );
    s.stop().await;
}
