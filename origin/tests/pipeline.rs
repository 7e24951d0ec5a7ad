//! The HCFP pipeline end to end: a real daemon, real HTTP, fake OpenAI-compatible providers
//! speaking the real wire format (JSON, SSE, error bodies) with controlled latency and faults.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{client, metric_value, metrics_text as metrics, owner_client, TestServer};
use heady_origin::config::Config;
use heady_origin::providers::config::ProviderConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn provider(name: &str, fake: &FakeProvider, priority: u32) -> ProviderConfig {
    ProviderConfig {
        priority,
        ..common::openai_provider(name, &fake.base_url)
    }
}

type Reply = common::Answer;

async fn post_with(url: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    send(owner_client(), url, body, headers).await
}

/// An anonymous caller's POST.
async fn post_anonymous(url: &str, body: Value) -> Reply {
    send(client(), url, body, &[]).await
}

async fn send(c: reqwest::Client, url: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = c.post(url).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    common::Answer::of(req).await
}

async fn post(url: &str, body: Value) -> Reply {
    post_with(url, body, &[]).await
}

async fn get(url: &str) -> Value {
    owner_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn chat(text: &str) -> Value {
    json!({"model": "heady", "messages": [{"role": "user", "content": text}]})
}

fn code(r: &Reply) -> &str {
    r.body["error"]["code"].as_str().unwrap_or("")
}

async fn breaker(s: &TestServer, name: &str) -> String {
    let v = get(&s.url("/api/brain/providers")).await;
    v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["breaker"].as_str().unwrap().to_string())
        .unwrap()
}

#[tokio::test]
async fn chat_runs_all_nine_stages_and_reports_them() {
    let a = FakeProvider::start(Behavior::default()).await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa]).await;

    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["object"], "chat.completion");
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "Hello from the fake provider."
    );
    assert_eq!(r.body["heady"]["group"], "reasoning");
    assert_eq!(r.body["heady"]["provider"], "a");
    assert!(
        r.body["heady"]["zone"]["zone"].is_u64(),
        "{}",
        r.body["heady"]
    );
    assert_eq!(r.body["heady"]["plan"]["decision"], "proceed");
    // The provider was asked for the model it lists (the client said "heady").
    assert_eq!(
        a.last_request.lock().unwrap().as_ref().unwrap()["model"],
        "fake-model"
    );
    let timing = r.headers["server-timing"].to_str().unwrap().to_string();
    for stage in [
        "entry", "ingest", "plan", "execute", "recover", "critique", "optimize", "finalize",
        "monitor",
    ] {
        assert!(
            timing.contains(&format!("{stage};dur=")),
            "{stage} missing in {timing}"
        );
    }
    assert!(
        timing.contains("plan;dur=") && timing.contains("desc=\"proceed"),
        "{timing}"
    );

    let r = post(&s.url("/api/brain/chat"), json!({"message": "hi"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["heady"]["action"], "chat");

    let r = post(&s.url("/api/pr_review"), json!({"input": "fn main() {}"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["heady"]["group"], "coding");
    let sent = a.last_request.lock().unwrap().clone().unwrap();
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("pr_review"),
        "{sent}"
    );

    let r = post(&s.url("/api/teleport"), json!({"input": "x"})).await;
    assert_eq!((r.status, code(&r)), (404, "unknown_action"));
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"teleport\""));
    // Exact routes keep priority over /api/{action}.
    let r = post(&s.url("/api/conductor/route"), json!({"action": "search"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["group"], "search");
    assert_eq!(get(&s.url("/api/memory/stats")).await["total_vectors"], 0);

    let models = get(&s.url("/v1/models")).await;
    assert_eq!(models["data"][0]["id"], "heady");

    let m = metrics(&s).await;
    for stage in ["entry", "plan", "execute", "monitor"] {
        assert!(
            m.contains(&format!(
                "heady_pipeline_stage_seconds_count{{stage=\"{stage}\"}} 3"
            )),
            "{stage}: {m}"
        );
    }
    assert!(
        m.contains("heady_pipeline_provider_calls_total{provider=\"a\",outcome=\"ok\"} 3"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn no_provider_is_a_503_that_says_how_to_configure_one() {
    let s = TestServer::start(|_| {}).await;
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!((r.status, code(&r)), (503, "no_provider"));
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("HEADY_OPENAI_BASE_URL") && msg.contains("[[providers]]"),
        "{msg}"
    );
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let a = FakeProvider::start(Behavior::default()).await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa]).await;
    let url = s.url("/v1/chat/completions");
    for (body, field) in [
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            "model:",
        ),
        (json!({"model": "heady", "messages": "hi"}), "messages:"),
        (
            json!({"model": "heady", "messages": [{"role": "robot", "content": "x"}]}),
            "messages[0].role:",
        ),
        (
            json!({"model": "heady", "messages": [{"role": "user", "content": "x"}], "temperature": 7}),
            "temperature:",
        ),
        (
            json!({"model": "heady", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            "max_tokens:",
        ),
        (
            json!({"model": "heady", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "xml"}}),
            "response_format.type:",
        ),
    ] {
        let r = post(&url, body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(field), "{field} not named in {msg}");
    }
    let r = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = post_with(&url, chat("x"), &[("x-heady-deadline-ms", "soon")]).await;
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-heady-deadline-ms"));
    let r = post(
        &url,
        json!({"model": "gpt-unknown-9", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    // Unpinned providers forward the client's model: the fake answers with it.
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(a.hits(), 1, "invalid requests never reached the provider");
    s.stop().await;
}

#[tokio::test]
async fn falls_back_when_a_provider_fails() {
    let a = FakeProvider::start(Behavior {
        fail_status: Some(500),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior {
        reply: Some("from b".into()),
        ..Behavior::default()
    })
    .await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa, pb]).await;
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["choices"][0]["message"]["content"], "from b");
    let attempts = r.body["heady"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["provider"], "a");
    assert!(
        attempts[0]["outcome"].as_str().unwrap().contains("500"),
        "{}",
        attempts[0]
    );
    assert_eq!((a.hits(), b.hits()), (1, 1));

    // Every provider down: 502 naming each failure.
    b.set(|x| x.fail_status = Some(503));
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!((r.status, code(&r)), (502, "upstream_failed"));
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("a:") && msg.contains("b:"), "{msg}");

    // A provider refusing the request itself (400) is the client's answer: no fallback.
    a.set(|x| x.fail_status = Some(400));
    let b_hits = b.hits();
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(
        (r.status, code(&r)),
        (400, "upstream_rejected"),
        "{}",
        r.body
    );
    assert_eq!(b.hits(), b_hits);
    s.stop().await;
}

#[tokio::test]
async fn breaker_opens_half_opens_and_closes() {
    let a = FakeProvider::start(Behavior {
        fail_status: Some(500),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior::default()).await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa, pb];
        c.pipeline.breaker.consecutive_failures = 2;
        c.pipeline.breaker.cooldown_ms = 500;
        // Keep the plan's other policies out of this test: only the breaker decides.
        c.pipeline.patterns.min_samples = 1_000;
        c.pipeline.readiness.min_observations = 1_000;
    })
    .await;
    let url = s.url("/v1/chat/completions");
    for _ in 0..2 {
        assert_eq!(post(&url, chat("x")).await.status, 200);
    }
    assert_eq!(a.hits(), 2);
    assert_eq!(breaker(&s, "a").await, "open");
    // Open: a is not called at all.
    let r = post(&url, chat("x")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["heady"]["provider"], "b");
    assert_eq!(a.hits(), 2, "an open breaker keeps calls away");
    assert!(metrics(&s)
        .await
        .contains("heady_pipeline_breaker_state{provider=\"a\"} 2"));

    tokio::time::sleep(Duration::from_millis(550)).await;
    assert_eq!(breaker(&s, "a").await, "half_open");
    a.set(|x| x.fail_status = None);
    let r = post(&url, chat("x")).await;
    assert_eq!(
        r.body["heady"]["provider"], "a",
        "the half-open probe goes to a"
    );
    assert_eq!(a.hits(), 3);
    assert_eq!(breaker(&s, "a").await, "closed");

    // Failing again: open after two; then a failed probe opens it again at once.
    a.set(|x| x.fail_status = Some(500));
    for _ in 0..2 {
        post(&url, chat("x")).await;
    }
    assert_eq!(breaker(&s, "a").await, "open");
    tokio::time::sleep(Duration::from_millis(550)).await;
    let r = post(&url, chat("x")).await;
    assert_eq!(r.body["heady"]["provider"], "b");
    assert_eq!(
        r.body["heady"]["attempts"][0]["provider"], "a",
        "the probe was made"
    );
    assert_eq!(a.hits(), 6);
    assert_eq!(breaker(&s, "a").await, "open");
    let v = get(&s.url("/api/brain/providers")).await;
    assert_eq!(v["providers"][0]["breaker_opens"], 3);
    s.stop().await;
}

#[tokio::test]
async fn overload_is_a_503_with_retry_after_at_the_configured_concurrency() {
    let a = FakeProvider::start(Behavior {
        latency_ms: 1_500,
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa];
        c.pipeline.max_concurrency = 2;
        c.pipeline.queue_max_wait_ms = 200;
        // The global bound alone (the owner is Enterprise: no share below max_concurrency).
    })
    .await;
    let url = s.url("/v1/chat/completions");
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { post(&url, chat("x")).await }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => ok += 1,
            503 => {
                assert_eq!(code(&r), "overloaded", "{}", r.body);
                assert_eq!(r.headers["retry-after"], "1");
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!((ok, overloaded), (2, 3));
    assert_eq!(a.hits(), 2, "never more than 2 calls reached the provider");
    assert!(metrics(&s)
        .await
        .contains("heady_pipeline_refusals_total{reason=\"overloaded\"} 3"));
    s.stop().await;
}

#[tokio::test]
async fn monte_carlo_switches_then_refuses_when_every_provider_is_slow() {
    let a = FakeProvider::start(Behavior {
        latency_ms: 150,
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior {
        latency_ms: 150,
        ..Behavior::default()
    })
    .await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa, pb];
        c.pipeline.readiness.min_observations = 3;
    })
    .await;
    let url = s.url("/v1/chat/completions");
    let tight = [("x-heady-deadline-ms", "60")];
    let mut decisions = Vec::new();
    let mut refused = None;
    for _ in 0..10 {
        let r = post_with(&url, chat("x"), &tight).await;
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        decisions.push(
            r.body["heady"]["plan"]["decision"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // a until it has a history, then b (untried) gets its chance, then nobody is fit.
    assert_eq!(
        decisions,
        vec![
            "proceed",
            "proceed",
            "proceed",
            "switch to b",
            "switch to b",
            "switch to b"
        ]
    );
    let r = refused.expect("refused once both providers are known to be too slow");
    assert_eq!(code(&r), "not_ready", "{}", r.body);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("60 ms") && msg.contains("a p=0.000") && msg.contains("b p=0.000"),
        "{msg}"
    );
    assert!(r.headers["server-timing"]
        .to_str()
        .unwrap()
        .contains("desc=\"refuse"));
    assert_eq!(
        (a.hits(), b.hits()),
        (3, 3),
        "refused before any provider call"
    );
    // With time to spare the same providers are fine.
    let r = post_with(&url, chat("x"), &[("x-heady-deadline-ms", "5000")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let est = &r.body["heady"]["plan"]["estimates"];
    assert!(est[0]["p"].as_f64().unwrap() > 0.5, "{est}");
    assert!(r.body["heady"]["plan"]["chain_p"].as_f64().unwrap() > 0.5);
    s.stop().await;
}

#[tokio::test]
async fn self_critique_retries_a_bad_answer_on_another_provider() {
    let a = FakeProvider::start(Behavior {
        reply: Some("I'm sorry, but I can't help with that.".into()),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior {
        reply: Some("{\"answer\": 42}".into()),
        ..Behavior::default()
    })
    .await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa, pb]).await;
    let url = s.url("/v1/chat/completions");
    let r = post(&url, chat("what is the answer?")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["heady"]["provider"], "b");
    let attempts = &r.body["heady"]["attempts"];
    assert_eq!(attempts[0]["critique"]["issues"], json!(["refusal"]));
    assert_eq!(attempts[1]["critique"]["score"], 1.0);
    assert_eq!((a.hits(), b.hits()), (1, 1));

    // JSON asked for, not JSON given: retried; a good answer is not.
    a.set(|x| x.reply = Some("here you go: {answer: 42".into()));
    let mut body = chat("json please");
    body["response_format"] = json!({"type": "json_object"});
    let r = post(&url, body).await;
    assert_eq!(
        r.body["heady"]["attempts"][0]["critique"]["issues"],
        json!(["invalid_json"])
    );
    assert_eq!(
        r.body["choices"][0]["message"]["content"],
        "{\"answer\": 42}"
    );
    a.set(|x| x.reply = Some("A fine answer.".into()));
    let r = post(&url, chat("plain")).await;
    assert_eq!(r.body["heady"]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(b.hits(), 2);
    assert!(metrics(&s)
        .await
        .contains("heady_pipeline_critique_retries_total 2"));
    s.stop().await;
}

/// Reads a streamed response as it arrives: (time to the first chunk, whole text).
async fn read_stream(r: reqwest::Response) -> (Duration, String) {
    let t = Instant::now();
    let mut first = None;
    let mut out = Vec::new();
    let mut r = r;
    while let Some(c) = r.chunk().await.unwrap() {
        first.get_or_insert(t.elapsed());
        out.extend_from_slice(&c);
    }
    (first.unwrap_or_default(), String::from_utf8(out).unwrap())
}

#[tokio::test]
async fn streams_in_order_without_buffering_and_ends_with_done() {
    let a = FakeProvider::start(Behavior {
        fail_status: Some(502),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior {
        reply: Some("one two three four five".into()),
        chunk_delay_ms: 120,
        ..Behavior::default()
    })
    .await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa, pb]).await;
    let mut body = chat("count");
    body["stream"] = json!(true);
    let t = Instant::now();
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(
        r.headers()["x-heady-provider"],
        "b",
        "fell back before the first byte"
    );
    let (first, text) = read_stream(r).await;
    let total = t.elapsed();
    assert!(
        first < Duration::from_millis(400) && total > Duration::from_millis(550),
        "first chunk {first:?}, total {total:?}: passed through, not buffered"
    );
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert!(events.iter().all(|e| e.starts_with("data: ")), "{text}");
    assert_eq!(*events.last().unwrap(), "data: [DONE]");
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(text.ends_with("data: [DONE]\n\n"));
    let mut content = String::new();
    let mut finish = None;
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(&e["data: ".len()..]).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(content, "one two three four five");
    assert_eq!(finish.as_deref(), Some("stop"));
    // The stream's outcome reached the breaker and the pattern engine after its end.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let v = get(&s.url("/api/brain/providers")).await;
    let pb = v["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "b")
        .unwrap()
        .clone();
    assert_eq!(pb["calls"], 1);
    assert!(
        v["patterns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["provider"] == "b" && p["quality"] == 1.0),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn memory_keeps_turns_recalls_them_and_compensation_undoes_a_failed_write() {
    let a = FakeProvider::start(Behavior {
        reply: Some("Your favourite colour is teal.".into()),
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa]).await;
    let url = s.url("/api/brain/chat");
    let r = post(
        &url,
        json!({"message": "my favourite colour is teal", "session_id": "s1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["heady"]["memory"]["stored"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let stats = get(&s.url("/api/memory/stats")).await;
    assert_eq!(
        (stats["total_vectors"].as_u64(), stats["sessions"].as_u64()),
        (Some(2), Some(1))
    );
    // The next turn of the session gets the relevant earlier turns in its prompt.
    let r = post(
        &url,
        json!({"message": "what is my favourite colour?", "session_id": "s1"}),
    )
    .await;
    assert_eq!(r.body["heady"]["memory"]["recalled"], 2);
    let sent = a.last_request.lock().unwrap().clone().unwrap();
    let note = sent["messages"][0]["content"].as_str().unwrap();
    assert!(note.contains("my favourite colour is teal"), "{sent}");
    assert_eq!(get(&s.url("/api/memory/stats")).await["total_vectors"], 4);
    // /v1 does not recall by default.
    let r = post_with(
        &s.url("/v1/chat/completions"),
        chat("what colour?"),
        &[("x-heady-session-id", "s1")],
    )
    .await;
    assert_eq!(r.body["heady"]["memory"]["recalled"], 0);
    assert_eq!(get(&s.url("/api/memory/stats")).await["total_vectors"], 6);

    // A failed request: its user turn was written at ingest and is removed again.
    a.set(|x| x.fail_status = Some(500));
    let r = post(
        &url,
        json!({"message": "this one fails", "session_id": "s2"}),
    )
    .await;
    assert_eq!((r.status, code(&r)), (502, "upstream_failed"));
    let stats = get(&s.url("/api/memory/stats")).await;
    assert_eq!(
        stats["total_vectors"], 6,
        "the failed request left no row: {stats}"
    );
    assert_eq!(stats["sessions"], 1);
    let found = post(
        &s.url("/api/memory/search"),
        json!({"text": "this one fails", "top_k": 10, "session_id": "s2"}),
    )
    .await;
    assert_eq!(
        found.body["results"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0),
        0,
        "{}",
        found.body
    );
    assert!(metrics(&s)
        .await
        .contains("heady_pipeline_compensations_total 1"));
    s.stop().await;
}

#[tokio::test]
async fn drift_is_raised_on_a_latency_shift() {
    let a = FakeProvider::start(Behavior {
        latency_ms: 2,
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa];
        c.pipeline.drift.latency.min_samples = 10;
    })
    .await;
    let url = s.url("/v1/chat/completions");
    for _ in 0..20 {
        assert_eq!(post(&url, chat("x")).await.status, 200);
    }
    const UP: &str =
        "heady_pipeline_drift_events_total{provider=\"a\",signal=\"latency\",direction=\"up\"}";
    let before = metric_value(&metrics(&s).await, UP);
    a.set(|x| x.latency_ms = 80);
    for _ in 0..10 {
        assert_eq!(post(&url, chat("x")).await.status, 200);
    }
    let after = metric_value(&metrics(&s).await, UP);
    assert!(
        after > before,
        "a 2 ms -> 80 ms shift raised no latency drift ({before} -> {after})"
    );
    let v = get(&s.url("/api/brain/providers")).await;
    let last = v["providers"][0]["drift"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["signal"].as_str(), last["drift"]["direction"].as_str()),
        (Some("latency"), Some("up")),
        "{v}"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_pattern_engine_prefers_the_best_known_path_and_remembers_it() {
    let a = FakeProvider::start(Behavior {
        reply: Some("I'm sorry, but I can't help with that.".into()),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior {
        reply: Some("A good answer.".into()),
        ..Behavior::default()
    })
    .await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 0));
    let (pa2, pb2) = (pa.clone(), pb.clone());
    let tweak = move |c: &mut Config| {
        c.providers = vec![pa, pb];
        c.pipeline.critique.retry = false;
        c.pipeline.patterns.min_samples = 3;
    };
    let s = TestServer::start(tweak).await;
    let url = s.url("/v1/chat/completions");
    for _ in 0..30 {
        post(&url, chat("x")).await;
    }
    // Equal priority and weight, but once b has a record it takes the lead.
    assert!(b.hits() >= 20, "a {} b {}", a.hits(), b.hits());
    let r = post(&url, chat("x")).await;
    assert_eq!(r.body["heady"]["provider"], "b");
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, move |c: &mut Config| {
        c.providers = vec![pa2, pb2];
        c.pipeline.critique.retry = false;
        c.pipeline.patterns.min_samples = 3;
    })
    .await;
    let v = get(&s.url("/api/brain/providers")).await;
    let learned = v["patterns"].as_array().unwrap();
    let b_path = learned
        .iter()
        .find(|p| p["provider"] == "b" && p["action"] == "chat")
        .expect("persisted");
    assert!(b_path["samples"].as_u64().unwrap() >= 3, "{v}");
    let a_before = a.hits();
    for _ in 0..5 {
        let r = post(&url_of(&s), chat("x")).await;
        assert_eq!(r.body["heady"]["provider"], "b", "{}", r.body["heady"]);
        assert!(
            r.body["heady"]["plan"]["pattern"].is_string()
                || r.body["heady"]["plan"]["order"][0] == "b"
        );
    }
    assert_eq!(a.hits(), a_before);
    s.stop().await;
}

fn url_of(s: &TestServer) -> String {
    s.url("/v1/chat/completions")
}

#[tokio::test]
async fn embeddings_and_models_speak_openai() {
    let s = TestServer::start(|_| {}).await;
    // A model the embedder does not serve is refused, naming the one it serves.
    let r = post(
        &s.url("/v1/embeddings"),
        json!({"model": "x", "input": ["alpha beta", "gamma"]}),
    )
    .await;
    assert_eq!((r.status, code(&r)), (404, "model_not_found"), "{}", r.body);
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("lexical"));
    let r = post(
        &s.url("/v1/embeddings"),
        json!({"model": "heady", "input": ["alpha beta", "gamma"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["model"], "lexical");
    assert_eq!(r.body["object"], "list");
    assert_eq!(r.body["data"][1]["index"], 1);
    assert_eq!(
        r.body["data"][0]["embedding"].as_array().unwrap().len(),
        384
    );
    let r = post(
        &s.url("/v1/embeddings"),
        json!({"input": "alpha", "encoding_format": "base64"}),
    )
    .await;
    // 384 little-endian f32s = 1536 bytes = 2048 base64 characters.
    assert_eq!(r.body["data"][0]["embedding"].as_str().unwrap().len(), 2048);
    // Token arrays (cl100k_base ids) are embedded as the text they encode, counted exactly.
    let by_tokens = post(
        &s.url("/v1/embeddings"),
        json!({"input": [[9906, 1917], [3923, 374]]}),
    )
    .await;
    assert_eq!(by_tokens.status, 200, "{}", by_tokens.body);
    assert_eq!(by_tokens.body["usage"]["prompt_tokens"], 4);
    let by_text = post(&s.url("/v1/embeddings"), json!({"input": "Hello world"})).await;
    assert_eq!(
        by_tokens.body["data"][0]["embedding"], by_text.body["data"][0]["embedding"],
        "[9906, 1917] is \"Hello world\""
    );
    // dimensions: the lexical embedder hashes into any width.
    let r = post(
        &s.url("/v1/embeddings"),
        json!({"input": "alpha", "dimensions": 64}),
    )
    .await;
    assert_eq!(r.body["data"][0]["embedding"].as_array().unwrap().len(), 64);
    for (bad, field) in [
        (json!({"input": [[1, 2], ["x"]]}), "input[1][0]:"),
        (json!({"input": [4_000_000_000u64]}), "input[0]:"),
        (json!({"input": [[99_999_999]]}), "input[0]:"),
        (json!({"input": ["a", 1]}), "input[1]:"),
        (json!({"input": []}), "input:"),
        (json!({"input": "a", "dimensions": 0}), "dimensions:"),
    ] {
        let r = post(&s.url("/v1/embeddings"), bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with(field),
            "{bad}: {}",
            r.body
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_stream_cut_off_upstream_ends_with_an_error_event_and_counts_as_a_failure() {
    let a = FakeProvider::start(Behavior {
        reply: Some("one two three four".into()),
        break_stream_after: Some(2),
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa]).await;
    let mut body = chat("count");
    body["stream"] = json!(true);
    let r = client()
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, text) = read_stream(r).await;
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.len(), 5, "{text}");
    assert!(
        events[1].contains("\"one \"") && events[2].contains("\"two \""),
        "{text}"
    );
    // A plain summary for the client; the provider's own text is in the log.
    let err: Value = serde_json::from_str(&events[3]["data: ".len()..]).unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("broke off") && !message.contains("127.0.0.1"),
        "{err}"
    );
    assert_eq!(events[4], "data: [DONE]");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = metrics(&s).await;
    assert!(
        m.contains("heady_pipeline_provider_calls_total{provider=\"a\",outcome=\"error\"} 1"),
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn with_defense_on_free_callers_get_the_free_actions_only() {
    let s = TestServer::start(|c: &mut Config| c.defense.enabled = true).await;
    // Anonymous callers are Free: analyze passes defense (and finds no provider here) ...
    let r = post_anonymous(&s.url("/api/analyze"), json!({"input": "x"})).await;
    assert_eq!((r.status, code(&r)), (503, "no_provider"), "{}", r.body);
    // ... code needs Pro.
    let r = post_anonymous(&s.url("/api/code"), json!({"input": "x"})).await;
    assert_eq!(
        (r.status, code(&r)),
        (403, "upgrade_required"),
        "{}",
        r.body
    );
    // Operational detail is INTERNAL.
    let r = client()
        .get(s.url("/api/brain/providers"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    s.stop().await;
}

/// Six slow streams from one anonymous caller hold at most its tier's share of the provider
/// slots (2 of 6) and wait for at most as many; a Pro key is served at once beside them.
#[tokio::test]
async fn six_slow_anonymous_streams_leave_a_pro_key_served() {
    let a = FakeProvider::start(Behavior {
        reply: Some("one two three four five six seven eight".into()),
        chunk_delay_ms: 250,
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa];
        c.defense.enabled = true;
    })
    .await;
    let (pro, _) = common::new_key(
        &s.state,
        "pro-user",
        heady_shared::Tier::Pro,
        heady_shared::Classification::Public,
    )
    .await;
    let url = s.url("/v1/chat/completions");
    let mut streams = Vec::new();
    for i in 0..6 {
        let url = url.clone();
        let mut body = chat(&format!("stream {i}"));
        body["stream"] = json!(true);
        streams.push(tokio::spawn(async move {
            let r = client().post(&url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (status, retry, r.text().await.unwrap())
        }));
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    let r = send(common::client_with(&pro), &url, chat("hello"), &[]).await;
    let waited = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        waited < Duration::from_millis(1_500),
        "the Pro request waited {waited:?} behind the anonymous streams"
    );
    let mut served = 0;
    let mut busy = 0;
    for t in streams {
        let (status, retry, text) = t.await.unwrap();
        match status {
            200 => {
                assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
                served += 1;
            }
            429 => {
                assert!(text.contains("too_many_concurrent_requests"), "{text}");
                assert_eq!(retry.as_deref(), Some("1"));
                busy += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    // Two at the provider and two waiting for the caller's own slots; the rest refused.
    assert_eq!((served, busy), (4, 2));
    assert!(metrics(&s)
        .await
        .contains("heady_pipeline_refusals_total{reason=\"too_many_concurrent\"} 2"));
    s.stop().await;
}

/// `max_tokens` is capped per tier: more is refused naming the cap, none asks the provider
/// for the cap.
#[tokio::test]
async fn max_tokens_is_capped_per_tier() {
    let a = FakeProvider::start(Behavior::default()).await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa];
        c.defense.enabled = true;
    })
    .await;
    let url = s.url("/v1/chat/completions");
    for field in ["max_tokens", "max_completion_tokens"] {
        let mut body = chat("x");
        body[field] = json!(1_000_000);
        let r = post_anonymous(&url, body).await;
        assert_eq!((r.status, code(&r)), (400, "invalid_request"), "{}", r.body);
        let m = r.body["error"]["message"].as_str().unwrap();
        assert!(
            m.starts_with(&format!(
                "{field}: 1000000 is more than the free tier allows (4096"
            )),
            "{m}"
        );
    }
    assert_eq!(a.hits(), 0, "nothing reached the provider");
    let r = post_anonymous(&url, chat("x")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = a.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(sent["max_tokens"], 4096, "{sent}");
    let mut body = chat("x");
    body["max_tokens"] = json!(100);
    assert_eq!(post_anonymous(&url, body).await.status, 200);
    let sent = a.last_request.lock().unwrap().clone().unwrap();
    assert_eq!(
        sent["max_tokens"], 100,
        "a request under the cap reaches the provider unchanged"
    );
    // Enterprise has no cap by default.
    let mut body = chat("x");
    body["max_tokens"] = json!(200_000);
    assert_eq!(post(&url, body).await.status, 200);
    s.stop().await;
}

/// A stream has a total time limit beside the provider's per-chunk one: past it the client
/// gets what came, an error event and [DONE]; the provider is not blamed.
#[tokio::test]
async fn a_stream_ends_at_its_total_time_limit() {
    let a = FakeProvider::start(Behavior {
        reply: Some("a b c d e f g h i j k l m n o p".into()),
        chunk_delay_ms: 200,
        ..Behavior::default()
    })
    .await;
    let pa = provider("a", &a, 0);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa];
        c.pipeline.stream_max_secs = 1;
    })
    .await;
    let mut body = chat("long");
    body["stream"] = json!(true);
    let t = Instant::now();
    let r = owner_client()
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, text) = read_stream(r).await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(2_500),
        "cut at about 1 s, not after the whole 3.2 s stream: {took:?}"
    );
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    assert!(text.contains("pipeline.stream_max_secs"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(breaker(&s, "a").await, "closed");
    s.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_then_falls_back_and_finally_tells_when() {
    let a = FakeProvider::start(Behavior {
        fail_status: Some(429),
        fail_times: Some(1),
        retry_after: Some("1".into()),
        error: Some(json!({"message": "Rate limit reached for requests", "type": "requests", "param": null, "code": "rate_limit_exceeded"})),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior::default()).await;
    let pa = provider("a", &a, 0);
    let mut pb = provider("b", &b, 1);
    pb.timeout_ms = 1_500;
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![pa, pb];
        c.pipeline.breaker.consecutive_failures = 100;
        c.pipeline.retry.max_retry_after_ms = 2_000;
    })
    .await;

    // One 429 with Retry-After: 1: the same provider again after about a second.
    let t = Instant::now();
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(took >= Duration::from_millis(1_000), "{took:?}");
    assert!(took < Duration::from_millis(3_000), "{took:?}");
    let attempts = r.body["heady"]["attempts"].as_array().unwrap().clone();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["provider"], "a");
    assert_eq!(attempts[0]["status"], 429);
    assert_eq!(attempts[0]["retry_after_ms"], 1_000);
    assert_eq!(attempts[1]["provider"], "a");
    assert_eq!(attempts[1]["retry"], 1);
    assert!(attempts[1]["waited_ms"].as_u64().unwrap() >= 1_000);
    assert_eq!((a.hits(), b.hits()), (2, 0));

    // Always 429 with no Retry-After: two backed-off retries, then the next provider.
    a.set(|x| {
        x.fail_status = Some(429);
        x.fail_times = None;
        x.retry_after = None;
    });
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let attempts = r.body["heady"]["attempts"].as_array().unwrap().clone();
    let who: Vec<(String, u64)> = attempts
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap().to_string(),
                a["retry"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        who,
        vec![
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("a".to_string(), 2),
            ("b".to_string(), 0)
        ]
    );
    assert_eq!(r.body["heady"]["provider"], "b");

    // Every provider rate limited, each asking for longer than we wait
    // (pipeline.retry.max_retry_after_ms): no waiting, 429 upstream_rate_limited with the
    // shortest Retry-After.
    b.set(|x| {
        x.fail_status = Some(429);
        x.retry_after = Some("3".into());
    });
    a.set(|x| x.retry_after = Some("20".into()));
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(
        (r.status, code(&r)),
        (429, "upstream_rate_limited"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["retry-after"], "3");
    assert_eq!(r.body["error"]["retry_after"], 3);

    // Unavailable everywhere (503, and a timeout): 503 upstream_unavailable with Retry-After.
    a.set(|x| {
        x.fail_status = Some(503);
        x.retry_after = None;
    });
    b.set(|x| {
        x.fail_status = None;
        x.latency_ms = 2_000;
    });
    let r = post_with(
        &s.url("/v1/chat/completions"),
        chat("hello"),
        &[("x-heady-deadline-ms", "60000")],
    )
    .await;
    assert_eq!(
        (r.status, code(&r)),
        (503, "upstream_unavailable"),
        "{}",
        r.body
    );
    assert_eq!(r.headers["retry-after"], "1");

    let m = metrics(&s).await;
    assert!(
        metric_value(
            &m,
            "heady_pipeline_retries_total{provider=\"a\",status=\"429\"}"
        ) >= 3.0,
        "{m}"
    );
    assert!(
        metric_value(&m, "heady_pipeline_fallbacks_total{provider=\"a\"}") >= 1.0,
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_provider_refusal_keeps_its_type_param_and_status() {
    let a = FakeProvider::start(Behavior {
        fail_status: Some(400),
        error: Some(json!({"message": "Invalid 'tools[0].function.name': string does not match pattern.", "type": "invalid_request_error", "param": "tools[0].function.name", "code": "invalid_value"})),
        ..Behavior::default()
    })
    .await;
    let b = FakeProvider::start(Behavior::default()).await;
    let (pa, pb) = (provider("a", &a, 0), provider("b", &b, 1));
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pa, pb]).await;
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(
        (r.status, code(&r)),
        (400, "upstream_rejected"),
        "{}",
        r.body
    );
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    assert_eq!(r.body["error"]["param"], "tools[0].function.name");
    assert_eq!(r.body["error"]["upstream_code"], "invalid_value");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("string does not match pattern"));
    assert_eq!(
        b.hits(),
        0,
        "a refusal of the request itself is not retried elsewhere"
    );

    // 422 and 404 keep their status too.
    a.set(|x| x.fail_status = Some(404));
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!(
        (r.status, code(&r)),
        (404, "upstream_rejected"),
        "{}",
        r.body
    );

    // A 500, a malformed answer and a timeout fall back to the next provider.
    for (what, set) in [
        (
            "500",
            Box::new(|x: &mut Behavior| x.fail_status = Some(500)) as Box<dyn Fn(&mut Behavior)>,
        ),
        (
            "malformed",
            Box::new(|x: &mut Behavior| {
                x.fail_status = None;
                x.malformed = true;
            }),
        ),
    ] {
        a.set(|x| set(x));
        let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
        assert_eq!(r.status, 200, "{what}: {}", r.body);
        assert_eq!(r.body["heady"]["provider"], "b", "{what}");
        let attempts = r.body["heady"]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 2, "{what}: {attempts:?}");
    }
    // Only the malformed provider: 502 upstream_failed naming it.
    b.set(|x| x.malformed = true);
    let r = post(&s.url("/v1/chat/completions"), chat("hello")).await;
    assert_eq!((r.status, code(&r)), (502, "upstream_failed"), "{}", r.body);
    s.stop().await;
}

#[tokio::test]
async fn a_request_needing_tools_skips_providers_without_them() {
    let plain = FakeProvider::start(Behavior::default()).await;
    let tools = FakeProvider::start(Behavior {
        tool_call: Some(("lookup".into(), r#"{"q":"x"}"#.into())),
        ..Behavior::default()
    })
    .await;
    let mut pp = provider("plain", &plain, 0);
    pp.features = Some(vec![]);
    let pt = provider("tools", &tools, 1);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pp, pt]).await;
    let mut body = chat("find x");
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let r = post(&s.url("/v1/chat/completions"), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["heady"]["provider"], "tools");
    assert_eq!(r.body["heady"]["plan"]["skipped"][0], "plain: tools");
    assert_eq!(r.body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(plain.hits(), 0);
    // A plain request still goes to the first provider.
    let r = post(&s.url("/v1/chat/completions"), chat("hi")).await;
    assert_eq!(r.body["heady"]["provider"], "plain");
    s.stop().await;

    // No provider can: 400 naming the feature.
    let plain_hits = plain.hits();
    let mut pp = provider("plain", &plain, 0);
    pp.features = Some(vec![]);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pp]).await;
    body["n"] = json!(2);
    let r = post(&s.url("/v1/chat/completions"), body).await;
    assert_eq!(
        (r.status, code(&r)),
        (400, "unsupported_feature"),
        "{}",
        r.body
    );
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("tools") && msg.contains("multiple_choices"),
        "{msg}"
    );
    assert_eq!(plain.hits(), plain_hits);
    s.stop().await;
}

#[tokio::test]
async fn a_bad_tool_call_is_retried_elsewhere_and_a_good_one_is_kept() {
    // The first provider calls a tool the request did not declare; the critique retries on the
    // second, which calls the declared one.
    let bad = FakeProvider::start(Behavior {
        tool_call: Some(("launch_rockets".into(), "{}".into())),
        ..Behavior::default()
    })
    .await;
    let good = FakeProvider::start(Behavior {
        tool_call: Some(("lookup".into(), r#"{"q":"x"}"#.into())),
        ..Behavior::default()
    })
    .await;
    let (pb, pg) = (provider("bad", &bad, 0), provider("good", &good, 1));
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![pb, pg]).await;
    let mut body = chat("find x");
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let r = post(&s.url("/v1/chat/completions"), body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["heady"]["provider"], "good");
    let attempts = r.body["heady"]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["critique"]["issues"][0], "invalid_tool_call");
    assert_eq!(attempts[1]["critique"]["score"], 1.0);
    assert_eq!(
        r.body["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "lookup"
    );
    s.stop().await;
}
