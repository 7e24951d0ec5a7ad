//! Usage metering and token limits: a real daemon in process, the fake OpenAI-compatible
//! provider speaking the real wire format (with and without `usage`, the stream's usage chunk
//! when `stream_options.include_usage` asks for it, `/v1/embeddings`), the usage store on
//! DuckDB (the default) and on a fresh PostgreSQL database, token limits in process and in a
//! real redis-server shared by two origins, and the meter outbox reported through a sink that
//! fails now and then.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{client, client_with, new_key, FreshPg, RedisServer, TestServer};
use heady_origin::config::{Config, RedisUrl};
use heady_origin::providers::config::ProviderConfig;
use heady_origin::usage::meter::{report_once, MeterEvent, MeterSink, MeterSinkError, SinkFuture};
use heady_origin::usage::tokens;
use heady_shared::token_bucket::{TokenOutcome, TokenPolicy, TokenState};
use heady_shared::{AccountId, Classification, Tier};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REPLY: &str = "Hello from the fake provider.";

fn provider(fake: &FakeProvider) -> ProviderConfig {
    ProviderConfig {
        timeout_ms: 10_000,
        ..common::openai_provider("fake", &fake.base_url)
    }
}

async fn server(fake: &FakeProvider, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let p = provider(fake);
    TestServer::start(move |c| {
        c.providers = vec![p];
        // Flushes come from the usage API and shutdown: the tests see what they caused.
        c.usage.flush_interval_ms = 60_000;
        tweak(c);
    })
    .await
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
    text: String,
}

async fn send(c: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Answer {
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    Answer {
        status,
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

/// The `data:` payloads of an SSE answer.
fn events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

fn chat(content: &str) -> Value {
    json!({"model": "heady", "messages": [{"role": "user", "content": content}]})
}

async fn usage_of(c: &reqwest::Client, s: &TestServer, query: &str) -> Answer {
    send(
        c,
        "GET",
        &s.url(&format!("/api/account/usage{query}")),
        None,
    )
    .await
}

fn line<'a>(report: &'a Value, model: &str) -> &'a Value {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .unwrap_or_else(|| panic!("no model {model} in {report}"))
}

/// Plain and streamed chat (with and without the client asking for the usage chunk) on both
/// chat routes, and an embedding call; then the usage API shows each counted.
async fn counts_every_kind_of_call(s: TestServer) {
    let (key, account) = new_key(&s.state, "ann", Tier::Pro, Classification::Public).await;
    let ann = client_with(&key);
    let words = REPLY.split_whitespace().count() as u64;

    let a = send(
        &ann,
        "POST",
        &s.url("/v1/chat/completions"),
        Some(chat("hi")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["usage"]["prompt_tokens"], 10);
    let a = send(
        &ann,
        "POST",
        &s.url("/api/brain/chat"),
        Some(json!({"message": "hi"})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);

    // Streamed, the client not asking for usage: the usage chunk we asked for is not sent on.
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let a = send(
        &ann,
        "POST",
        &s.url("/v1/chat/completions"),
        Some(body.clone()),
    )
    .await;
    assert_eq!(a.status, 200);
    let evs = events(&a.text);
    assert_eq!(evs.last().map(String::as_str), Some("[DONE]"), "{}", a.text);
    for e in &evs[..evs.len() - 1] {
        let v: Value = serde_json::from_str(e).unwrap();
        assert!(
            v["choices"].as_array().is_some_and(|c| !c.is_empty()),
            "a chunk without choices reached a client that did not ask for usage: {e}"
        );
    }
    // Streamed, the client asking: the usage chunk is there, before [DONE].
    body["stream_options"] = json!({"include_usage": true});
    let a = send(&ann, "POST", &s.url("/v1/chat/completions"), Some(body)).await;
    let evs = events(&a.text);
    let last: Value = serde_json::from_str(&evs[evs.len() - 2]).unwrap();
    assert_eq!(last["choices"], json!([]), "{}", a.text);
    assert_eq!(last["usage"]["prompt_tokens"], 10);
    assert_eq!(last["usage"]["completion_tokens"], words);

    // The built-in embedder reports no usage: the tokenizer counts it.
    let a = send(
        &ann,
        "POST",
        &s.url("/v1/embeddings"),
        Some(json!({"model": "heady-embed", "input": ["hello world", "hello"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let embed_tokens = tokens::count("hello world") + tokens::count("hello");
    assert_eq!(a.body["usage"]["prompt_tokens"], embed_tokens);

    let r = usage_of(&ann, &s, "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["account"], account.as_str());
    let chat_line = line(&r.body, "fake-model");
    assert_eq!(chat_line["requests"], 4, "{}", r.body);
    assert_eq!(chat_line["prompt_tokens"], 40);
    assert_eq!(chat_line["completion_tokens"], 4 * words);
    assert_eq!(chat_line["estimated"], false);
    let embed_line = line(&r.body, "lexical");
    assert_eq!(embed_line["requests"], 1);
    assert_eq!(embed_line["prompt_tokens"], embed_tokens);
    assert_eq!(embed_line["estimated"], true);
    assert_eq!(r.body["totals"]["requests"], 5);
    assert_eq!(
        r.body["totals"]["total_tokens"],
        40 + 4 * words + embed_tokens
    );
    let days = r.body["days"].as_array().unwrap();
    assert_eq!(days.len(), 2, "one day, two models: {}", r.body);
    assert_eq!(days[0]["day"], r.body["to"]);
    s.stop().await;
}

#[tokio::test]
async fn plain_streamed_and_embedding_calls_are_counted_in_duckdb() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |_| {}).await;
    assert_eq!(s.state.usage.store.backend_name(), "duckdb");
    counts_every_kind_of_call(s).await;
}

#[tokio::test]
async fn plain_streamed_and_embedding_calls_are_counted_in_postgres() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let pg = FreshPg::create().await;
    let url = pg.database_url();
    let s = server(&fake, |c| c.database_url = Some(url)).await;
    assert_eq!(s.state.usage.store.backend_name(), "postgres");
    counts_every_kind_of_call(s).await;
}

#[tokio::test]
async fn an_openai_embedder_reports_its_own_usage() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let base = fake.base_url.clone();
    let s = server(&fake, |c| {
        c.embedder.kind = heady_origin::config::EmbedderKind::Openai;
        c.embedder.base_url = Some(base);
        c.embedder.model = Some("fake-embed".into());
    })
    .await;
    let (key, _) = new_key(&s.state, "eve", Tier::Pro, Classification::Public).await;
    let eve = client_with(&key);
    let a = send(
        &eve,
        "POST",
        &s.url("/v1/embeddings"),
        Some(json!({"input": ["one two three", "four"]})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    // The fake counts a token per word.
    assert_eq!(a.body["usage"]["prompt_tokens"], 4);
    let r = usage_of(&eve, &s, "").await;
    let l = line(&r.body, "fake-embed");
    assert_eq!(
        (l["prompt_tokens"].as_u64(), l["estimated"].as_bool()),
        (Some(4), Some(false))
    );
    s.stop().await;
}

#[tokio::test]
async fn a_provider_without_usage_is_counted_by_the_tokenizer_and_marked() {
    let fake = FakeProvider::start(Behavior {
        usage: false,
        ..Behavior::default()
    })
    .await;
    let s = server(&fake, |_| {}).await;
    let (key, _) = new_key(&s.state, "ned", Tier::Pro, Classification::Public).await;
    let ned = client_with(&key);
    let a = send(
        &ned,
        "POST",
        &s.url("/v1/chat/completions"),
        Some(chat("hello world")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.body.get("usage").is_none(),
        "the fake sent none: {}",
        a.text
    );
    let mut body = chat("hello world");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let a = send(&ned, "POST", &s.url("/v1/chat/completions"), Some(body)).await;
    assert_eq!(a.status, 200);
    assert!(a.text.ends_with("data: [DONE]\n\n"), "{}", a.text);

    // 3 per message + "user" + "hello world" + 3 to prime the reply, as OpenAI counts.
    let prompt = 3 + tokens::count("user") + tokens::count("hello world") + 3;
    let completion = tokens::count(REPLY);
    let r = usage_of(&ned, &s, "").await;
    let l = line(&r.body, "fake-model");
    assert_eq!(l["requests"], 2, "{}", r.body);
    assert_eq!(l["prompt_tokens"], 2 * prompt);
    assert_eq!(l["completion_tokens"], 2 * completion);
    assert_eq!(l["estimated"], true);
    assert_eq!(l["estimated_requests"], 2);
    assert_eq!(r.body["totals"]["estimated"], true);
    s.stop().await;
}

fn header_values(h: &reqwest::header::HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_token_limit_refuses_with_429_and_its_headers_then_recovers() {
    let fake = FakeProvider::start(Behavior::default()).await;
    fake.set(|b| b.prompt_tokens = 60);
    let s = server(&fake, |c| {
        c.defense.enabled = true;
        c.usage.token_limits.free = 100;
        c.usage.window_secs = 2;
    })
    .await;
    let (key, _) = new_key(&s.state, "fay", Tier::Free, Classification::Public).await;
    let fay = client_with(&key);
    // Reserved: 1 (the prompt "hi") + 3 + 3 + 90 = 97 of the 100; used: 60 + 5.
    let mut body = chat("hi");
    body["max_tokens"] = json!(90);
    let url = s.url("/v1/chat/completions");
    let a = send(&fay, "POST", &url, Some(body.clone())).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let policies = header_values(&a.headers, "ratelimit-policy");
    assert_eq!(
        policies,
        vec![
            "\"free\";q=30;w=60".to_string(),
            "\"free-tokens\";q=100;w=2".to_string()
        ],
        "the request policy first, then the token policy"
    );
    // 65 used, 97 more asked: over 100 until 62 tokens have refilled (1.24 s at 50/s).
    let a = send(&fay, "POST", &url, Some(body.clone())).await;
    assert_eq!(a.status, 429, "{}", a.text);
    assert_eq!(code(&a), "token_limit_exceeded");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100 tokens per 2 s"),
        "{}",
        a.text
    );
    let limits = header_values(&a.headers, "ratelimit");
    assert!(
        limits.iter().any(|v| v.starts_with("\"free-tokens\";r=")),
        "{limits:?}"
    );
    assert!(header_values(&a.headers, "ratelimit-policy")
        .contains(&"\"free-tokens\";q=100;w=2".to_string()));
    let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(a.body["error"]["retry_after"], retry);
    assert!((1..=2).contains(&retry), "{retry}");
    // Embeddings are held to the same bucket.
    let big = "word ".repeat(400);
    let e = send(
        &fay,
        "POST",
        &s.url("/v1/embeddings"),
        Some(json!({"input": big})),
    )
    .await;
    assert_eq!(
        (e.status, code(&e)),
        (429, "token_limit_exceeded"),
        "{}",
        e.text
    );
    // After the wait the bucket holds enough again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let a = send(&fay, "POST", &url, Some(body)).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let m = send(&client(), "GET", &s.url("/metrics"), None).await;
    assert_eq!(m.status, 401, "metrics are INTERNAL");
    let (ops, _) = new_key(&s.state, "ops", Tier::Enterprise, Classification::Internal).await;
    let m = send(&client_with(&ops), "GET", &s.url("/metrics"), None).await;
    assert!(
        m.text
            .contains("heady_token_limit_decisions_total{tier=\"free\",outcome=\"limited\"} 2"),
        "{}",
        m.text
    );
    s.stop().await;
}

#[tokio::test]
async fn enterprise_is_not_token_limited_by_default() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |c| c.defense.enabled = true).await;
    let (key, _) = new_key(&s.state, "ent", Tier::Enterprise, Classification::Public).await;
    let mut body = chat("hi");
    body["max_tokens"] = json!(1_000_000);
    let a = send(
        &client_with(&key),
        "POST",
        &s.url("/v1/chat/completions"),
        Some(body),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(
        a.headers.get("ratelimit-policy").is_none(),
        "{:?}",
        a.headers
    );
    s.stop().await;
}

/// 24 concurrent requests, alternating between the origins, while the provider takes 2 s to
/// answer: every reservation is made before any is settled, so the bucket of 1,000 admits exactly
/// 10 reservations of 97, whichever origin they reach.
#[tokio::test]
async fn the_token_limit_is_exact_across_two_origins_sharing_redis() {
    let fake = FakeProvider::start(Behavior {
        latency_ms: 2_000,
        ..Behavior::default()
    })
    .await;
    let redis = RedisServer::start();
    let pg = FreshPg::create().await;
    let tweak = |c: &mut Config| {
        c.defense.enabled = true;
        c.redis_url = Some(RedisUrl::parse(&redis.url()).unwrap());
        c.database_url = Some(pg.database_url());
        c.usage.token_limits.free = 1_000;
        c.pipeline.max_concurrency = 16;
        // The token limit is under test, not the share of provider slots.
        c.pipeline.slots_per_subject.free = 0;
    };
    let a = server(&fake, tweak).await;
    let b = server(&fake, tweak).await;
    let (key, _) = new_key(&a.state, "tia", Tier::Free, Classification::Public).await;
    let mut body = chat("hi");
    body["max_tokens"] = json!(90);
    let urls = [a.url("/v1/chat/completions"), b.url("/v1/chat/completions")];
    let c = client_with(&key);
    // Both origins know the key before the burst (B would otherwise look it up in PostgreSQL
    // while A answers from its cache, and A could take every reservation).
    for s in [&a, &b] {
        let r = send(&c, "GET", &s.url("/api/account"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let (c, url, body) = (c.clone(), urls[i % 2].clone(), body.clone());
            // 20 ms apart, alternating origins: they reach the bucket in turn (both origins
            // admit some), all within 0.5 s, long before the first answer at 2 s.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i as u64)).await;
                send(&c, "POST", &url, Some(body)).await
            })
        })
        .collect();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut origins = [0usize; 2];
    for (i, t) in tasks.into_iter().enumerate() {
        let a = t.await.unwrap();
        if a.status == 429 {
            assert_eq!(code(&a), "token_limit_exceeded", "{}", a.text);
        } else if a.status == 200 {
            origins[i % 2] += 1;
        }
        *statuses.entry(a.status).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&10), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&14), "{statuses:?}");
    assert!(
        origins[0] > 0 && origins[1] > 0,
        "both origins served: {origins:?}"
    );
    // Both origins wrote to the one PostgreSQL store: the usage API on either sees all 10.
    let r = usage_of(&c, &a, "").await;
    b.state.usage.flush().await.unwrap();
    let r2 = usage_of(&c, &b, "").await;
    assert_eq!(
        r2.body["totals"]["requests"], 10,
        "{} / {}",
        r.body, r2.body
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn the_redis_script_and_the_shared_bucket_decide_alike() {
    let redis = RedisServer::start();
    let limiter = heady_origin::usage::TokenLimiter::new(
        Some(Arc::new(
            heady_origin::redis::Redis::open(&redis.url(), Duration::from_secs(2)).unwrap(),
        )),
        Default::default(),
        heady_origin::lifecycle::Background::new(),
    );
    let policies = [
        TokenPolicy::new(Some(1_000), 60_000).unwrap(),
        TokenPolicy::new(Some(7), 1_000).unwrap(),
        TokenPolicy::new(Some(250_000), 3_600_000).unwrap(),
    ];
    let mut rng = heady_shared::limiter::trace::SplitMix64::new(11);
    let mut local: HashMap<u64, TokenState> = HashMap::new();
    let mut t = 1_700_000_000_000u64;
    let (mut admitted, mut limited) = (0, 0);
    for step in 0..3_000 {
        t += if rng.range(0, 100) < 3 {
            rng.range(1_000, 120_000)
        } else {
            rng.range(0, 300)
        };
        let subject = rng.range(0, 6);
        let p = &policies[(subject % 3) as usize];
        let limit = p.limit().unwrap();
        let state = local.entry(subject).or_default();
        let name = format!("s{subject}");
        if rng.range(0, 3) == 0 {
            let reserved = rng.range(0, limit * 2);
            let actual = rng.range(0, limit * 2);
            p.settle(state, t, reserved, actual);
            let debt = limiter
                .settle_redis_at(&name, p, reserved, actual, t)
                .await
                .unwrap();
            assert_eq!(debt, state.debt, "settle at step {step}");
        } else {
            let cost = rng.range(0, limit + limit / 2);
            let want = p.reserve(state, t, cost);
            let (got, debt) = limiter.reserve_redis_at(&name, p, cost, t).await.unwrap();
            assert_eq!(got, want, "reserve {cost} for {name} at step {step}");
            assert_eq!(debt, state.debt, "debt at step {step}");
            match want {
                TokenOutcome::Admitted { .. } => admitted += 1,
                TokenOutcome::Limited { .. } => limited += 1,
                TokenOutcome::Unlimited => unreachable!(),
            }
        }
    }
    assert!(
        admitted > 100 && limited > 100,
        "{admitted} admitted, {limited} limited"
    );
}

#[tokio::test]
async fn the_usage_api_checks_its_parameters_and_answers_only_for_the_caller() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |c| c.defense.enabled = true).await;
    let (ka, a_id) = new_key(&s.state, "amy", Tier::Pro, Classification::Public).await;
    let (kb, _) = new_key(&s.state, "bob", Tier::Pro, Classification::Internal).await;
    let (kops, _) = new_key(
        &s.state,
        "ops",
        Tier::Enterprise,
        Classification::Restricted,
    )
    .await;
    let (amy, bob, ops) = (client_with(&ka), client_with(&kb), client_with(&kops));
    let a = send(
        &amy,
        "POST",
        &s.url("/v1/chat/completions"),
        Some(chat("hi")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);

    let r = usage_of(&amy, &s, "").await;
    assert_eq!(r.body["totals"]["requests"], 1, "{}", r.body);
    // Bob used nothing and sees nothing of Amy's.
    let r = usage_of(&bob, &s, "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["totals"]["requests"], 0);
    assert_eq!(r.body["days"], json!([]));
    let r = usage_of(&bob, &s, &format!("?account={a_id}")).await;
    assert_eq!(
        (r.status, code(&r)),
        (403, "insufficient_clearance"),
        "{}",
        r.text
    );
    // An operator reads Amy's.
    let r = usage_of(&ops, &s, &format!("?account={a_id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (
            r.body["account"].as_str(),
            r.body["totals"]["requests"].as_u64()
        ),
        (Some(a_id.as_str()), Some(1))
    );
    let r = usage_of(&ops, &s, "?account=acct_aaaaaaaaaaaaaaaaaaaaaaaa").await;
    assert_eq!(r.status, 404, "{}", r.text);

    let today = heady_origin::usage::recorder::day_of(heady_origin::defense::limiter::now_ms());
    let r = usage_of(&amy, &s, &format!("?from={today}&to={today}")).await;
    assert_eq!(r.body["totals"]["requests"], 1);
    let r = usage_of(&amy, &s, "?from=2020-01-01&to=2020-01-31").await;
    assert_eq!(
        (r.status, r.body["totals"]["requests"].as_u64()),
        (200, Some(0))
    );
    for (query, field) in [
        ("?from=2026-13-01", "from:"),
        ("?from=yesterday", "from:"),
        ("?to=2026-02-30", "to:"),
        ("?from=2026-03-02&to=2026-03-01", "from:"),
        ("?from=2025-01-01&to=2026-06-01", "to:"),
        ("?account=nobody", "account:"),
        ("?day=2026-01-01", "day:"),
        ("?from=2026-01-01&from=2026-01-02", "from:"),
    ] {
        let r = usage_of(&amy, &s, query).await;
        assert_eq!(
            (r.status, code(&r)),
            (400, "invalid_request"),
            "{query}: {}",
            r.text
        );
        let msg = r.body["error"]["message"].as_str().unwrap();
        assert!(msg.starts_with(field), "{query}: {msg}");
        assert!(r.body["error"]["request_id"].is_string());
    }
    let r = usage_of(&client(), &s, "").await;
    assert_eq!((r.status, code(&r)), (401, "authentication_required"));
    s.stop().await;
}

#[tokio::test]
async fn anonymous_callers_are_counted_in_prometheus_only() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |_| {}).await;
    let a = send(
        &client(),
        "POST",
        &s.url("/v1/chat/completions"),
        Some(chat("hi")),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        s.state.usage.recorder.pending_requests(),
        0,
        "nothing recorded per account"
    );
    let m = send(&client(), "GET", &s.url("/metrics"), None).await;
    for want in [
        "heady_usage_tokens_total{tier=\"free\",model=\"fake-model\",kind=\"prompt\"} 10",
        "heady_usage_requests_total{tier=\"free\",model=\"fake-model\"} 1",
    ] {
        assert!(m.text.contains(want), "{want} in {}", m.text);
    }
    assert!(!m.text.contains("acct_"), "never by account");
    s.stop().await;
}

#[tokio::test]
async fn usage_recorded_before_an_orderly_shutdown_is_kept() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |_| {}).await;
    let (key, _) = new_key(&s.state, "sal", Tier::Pro, Classification::Public).await;
    let sal = client_with(&key);
    for _ in 0..3 {
        let a = send(
            &sal,
            "POST",
            &s.url("/v1/chat/completions"),
            Some(chat("hi")),
        )
        .await;
        assert_eq!(a.status, 200);
    }
    assert_eq!(
        s.state.usage.recorder.pending_requests(),
        3,
        "not written yet"
    );
    let dir = s.stop().await;
    let p = provider(&fake);
    let s = TestServer::start_in(dir, move |c| c.providers = vec![p]).await;
    let r = usage_of(&sal, &s, "").await;
    assert_eq!(r.body["totals"]["requests"], 3, "{}", r.text);
    s.stop().await;
}

/// A sink like Stripe's meter events API: it keeps the first event of each identifier, and
/// now and then fails, before or after keeping the event (the answer lost on the way).
struct FlakySink {
    kept: Mutex<HashMap<String, MeterEvent>>,
    calls: Mutex<u64>,
}

impl MeterSink for FlakySink {
    fn send<'a>(&'a self, event: &'a MeterEvent) -> SinkFuture<'a> {
        Box::pin(async move {
            let n = {
                let mut c = self.calls.lock().unwrap();
                *c += 1;
                *c
            };
            if n % 3 == 0 {
                return Err(MeterSinkError::transient("503 from the fake sink"));
            }
            let mut kept = self.kept.lock().unwrap();
            if let Some(earlier) = kept.get(&event.identifier) {
                assert_eq!(earlier.value, event.value, "one identifier, one value");
            } else {
                kept.insert(event.identifier.clone(), event.clone());
            }
            if n % 4 == 0 {
                return Err(MeterSinkError::transient("the answer was lost"));
            }
            Ok(())
        })
    }
}

async fn meters_enterprise_usage_once(s: TestServer) {
    let store = &s.state.defense.accounts;
    let (ent, _) = store
        .ensure_account("ent", Tier::Enterprise, Classification::Public, 0)
        .await
        .unwrap();
    let (pro, _) = store
        .ensure_account("pro", Tier::Pro, Classification::Public, 0)
        .await
        .unwrap();
    let (lone, _) = store
        .ensure_account("lone", Tier::Enterprise, Classification::Public, 0)
        .await
        .unwrap();
    set_customer(&s, &ent.id, "cus_ent").await;
    let usage = &s.state.usage;
    let payer = |id: &AccountId, tier| heady_origin::usage::Payer {
        owner: Some(id.clone()),
        tier,
        subject: format!("user:{id}"),
    };
    let used = |p: u64, c: u64| heady_origin::usage::Used {
        model: "m".into(),
        prompt_tokens: p,
        completion_tokens: c,
        estimated: false,
    };
    // Five minutes of usage, a record every 20 s.
    let t0 = 1_800_000_000_000u64;
    let mut total = 0;
    for i in 0..15u64 {
        let at = t0 + i * 20_000;
        usage.record(&payer(&ent.id, Tier::Enterprise), &[used(10 + i, i)], at);
        usage.record(&payer(&pro.id, Tier::Pro), &[used(5, 5)], at);
        usage.record(&payer(&lone.id, Tier::Enterprise), &[used(1, 1)], at);
        total += 10 + 2 * i;
    }
    usage.flush().await.unwrap();
    let sink = FlakySink {
        kept: Mutex::new(HashMap::new()),
        calls: Mutex::new(0),
    };
    let now = (t0 / 1000) as i64 + 3_600;
    let mut rounds = 0;
    loop {
        rounds += 1;
        let r = report_once(usage, store, &sink, now).await.unwrap();
        if !r.failed && r.sent == 0 {
            assert!(r.no_customer > 0, "the account without a customer waits");
            break;
        }
        assert!(rounds < 50, "never finished");
    }
    // A late record into a bucket already reported goes out as that bucket's next report.
    usage.record(&payer(&ent.id, Tier::Enterprise), &[used(7, 0)], t0);
    usage.flush().await.unwrap();
    total += 7;
    while report_once(usage, store, &sink, now).await.unwrap().failed {}
    let kept = sink.kept.lock().unwrap().clone();
    let mut sum = 0;
    for e in kept.values() {
        assert_eq!(e.customer, "cus_ent");
        assert_eq!(e.event_name, "heady_tokens");
        assert_eq!(e.account, ent.id);
        sum += e.value;
    }
    assert_eq!(sum, total, "every token reported once: {kept:?}");
    // 5 one-minute buckets, plus the late one's second report.
    assert_eq!(kept.len(), 6, "{:?}", kept.keys());
    let first = format!("heady-{}-{}-1", ent.id, t0 / 1000 - (t0 / 1000) % 60);
    assert_eq!(
        kept.get(&first).map(|e| e.value),
        Some(7),
        "{:?}",
        kept.keys()
    );
    let buckets = usage.store.meter_buckets(&ent.id).await.unwrap();
    assert!(
        buckets
            .iter()
            .all(|(_, tokens, reported)| tokens == reported),
        "{buckets:?}"
    );
    assert!(
        usage.store.meter_buckets(&pro.id).await.unwrap().is_empty(),
        "Pro is not metered"
    );
    let lone_buckets = usage.store.meter_buckets(&lone.id).await.unwrap();
    assert!(lone_buckets.iter().all(|(_, _, reported)| *reported == 0));
    s.stop().await;
}

/// Links an account to a Stripe customer the way billing does: the account row's column.
async fn set_customer(s: &TestServer, id: &AccountId, customer: &str) {
    match &s.state.config.database_url {
        Some(url) => {
            let (c, conn) = tokio_postgres::connect(&url_of(url), tokio_postgres::NoTls)
                .await
                .unwrap();
            let task = tokio::spawn(conn);
            c.execute(
                "UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2",
                &[&customer, &id.as_str()],
            )
            .await
            .unwrap();
            drop(c);
            let _ = task.await;
        }
        None => {
            let (db, customer, id) = (s.state.db.clone(), customer.to_string(), id.clone());
            tokio::task::spawn_blocking(move || {
                db.with_writer(|c| -> Result<usize, heady_origin::db::DbError> {
                    Ok(c.execute(
                        "UPDATE accounts SET stripe_customer_id = ? WHERE id = ?",
                        duckdb::params![customer, id.as_str()],
                    )
                    .unwrap())
                })
                .unwrap()
            })
            .await
            .unwrap();
        }
    }
}

fn url_of(url: &heady_origin::config::DatabaseUrl) -> String {
    // The test database has no password: the redacted form is the URL.
    url.redacted()
}

#[tokio::test]
async fn enterprise_usage_is_metered_once_through_a_flaky_sink_on_duckdb() {
    let fake = FakeProvider::start(Behavior::default()).await;
    meters_enterprise_usage_once(server(&fake, |_| {}).await).await;
}

#[tokio::test]
async fn enterprise_usage_is_metered_once_through_a_flaky_sink_on_postgres() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let pg = FreshPg::create().await;
    let url = pg.database_url();
    meters_enterprise_usage_once(server(&fake, |c| c.database_url = Some(url)).await).await;
}

/// A sink like Stripe refusing an event for good (a timestamp outside its 35-day window).
struct RefusesOld {
    cutoff: i64,
    kept: Mutex<Vec<MeterEvent>>,
    calls: Mutex<u64>,
}

impl MeterSink for RefusesOld {
    fn send<'a>(&'a self, event: &'a MeterEvent) -> SinkFuture<'a> {
        Box::pin(async move {
            *self.calls.lock().unwrap() += 1;
            if event.timestamp < self.cutoff {
                return Err(MeterSinkError::permanent(
                    "Stripe answered 400: invalid_request_error: timestamp too old (param timestamp)",
                ));
            }
            self.kept.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}

/// A report refused for good is counted and dropped: it never holds back the buckets after
/// it, and is not sent again.
#[tokio::test]
async fn a_meter_report_refused_for_good_does_not_block_the_rest() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let s = server(&fake, |_| {}).await;
    let store = &s.state.defense.accounts;
    let (ent, _) = store
        .ensure_account("ent", Tier::Enterprise, Classification::Public, 0)
        .await
        .unwrap();
    set_customer(&s, &ent.id, "cus_ent").await;
    let usage = &s.state.usage;
    let payer = heady_origin::usage::Payer {
        owner: Some(ent.id.clone()),
        tier: Tier::Enterprise,
        subject: format!("user:{}", ent.id),
    };
    let used = |p: u64| heady_origin::usage::Used {
        model: "m".into(),
        prompt_tokens: p,
        completion_tokens: 0,
        estimated: false,
    };
    let t0 = 1_800_000_000_000u64;
    usage.record(&payer, &[used(100)], t0);
    usage.record(&payer, &[used(5)], t0 + 3_600_000);
    usage.flush().await.unwrap();
    let sink = RefusesOld {
        cutoff: (t0 / 1000) as i64 + 60,
        kept: Mutex::new(Vec::new()),
        calls: Mutex::new(0),
    };
    let now = (t0 / 1000) as i64 + 7_200;
    let r = report_once(usage, store, &sink, now).await.unwrap();
    assert_eq!((r.sent, r.rejected, r.failed), (2, 1, false), "{r:?}");
    let kept = sink.kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].value, 5);
    let r = report_once(usage, store, &sink, now).await.unwrap();
    assert_eq!(
        (r.sent, r.rejected),
        (0, 0),
        "the refused report is not sent again"
    );
    assert_eq!(*sink.calls.lock().unwrap(), 2);
    let text = s.state.metrics.encode();
    assert!(
        text.contains("heady_meter_events_total{outcome=\"rejected\"} 1"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn a_client_gone_mid_stream_is_still_counted() {
    let fake = FakeProvider::start(Behavior {
        chunk_delay_ms: 200,
        reply: Some("one two three four five six seven eight".into()),
        ..Behavior::default()
    })
    .await;
    let s = server(&fake, |_| {}).await;
    let (key, _) = new_key(&s.state, "gus", Tier::Pro, Classification::Public).await;
    let gus = client_with(&key);
    let mut body = chat("hi");
    body["stream"] = json!(true);
    let mut r = gus
        .post(s.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let _ = r.chunk().await.unwrap();
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = usage_of(&gus, &s, "").await;
        if u.body["totals"]["requests"] == 1 {
            // Counted by the tokenizer from what was sent before the client left.
            assert_eq!(u.body["totals"]["estimated"], true, "{}", u.body);
            break;
        }
        assert!(Instant::now() < deadline, "never counted: {}", u.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}
