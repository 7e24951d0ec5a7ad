//! The response cache end to end: real daemons, real Redis and PostgreSQL (two origins share
//! both, as in production), a fake OpenAI-compatible provider that counts its calls.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{
    client, client_with, metric_value as metric, metrics_text as metrics, new_key, openai_provider,
    owner_client, Answer, FreshPg, TestServer,
};
use heady_origin::accounts::AccountChange;
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};

fn chat(prompt: &str) -> Value {
    json!({"model": "heady", "temperature": 0, "messages": [{"role": "user", "content": prompt}]})
}

async fn send(c: &reqwest::Client, url: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut req = c.post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Answer::of(req).await
}

/// The `data:` payloads of a stream, without `[DONE]`, with their ids and times removed.
fn chunks(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_hit_is_shared_by_two_origins_through_redis() {
    let fake = FakeProvider::start(Behavior {
        reply: None,
        ..Behavior::default()
    })
    .await;
    let pg = FreshPg::create().await;
    let start = |pg: &FreshPg| {
        let (db, p) = (pg.database_url(), openai_provider("fake", &fake.base_url));
        TestServer::start(move |c| {
            c.providers = vec![p];
            c.database_url = Some(db);
            c.redis_url =
                Some(heady_origin::config::RedisUrl::parse("redis://127.0.0.1:6379").unwrap());
        })
    };
    let one = start(&pg).await;
    let two = start(&pg).await;
    let c = owner_client();
    let (url1, url2) = (
        one.url("/v1/chat/completions"),
        two.url("/v1/chat/completions"),
    );
    // A prompt of this run only (Redis outlives test runs).
    let prompt = format!("What is two and two? ({})", rand::random::<u64>());

    let first = send(&c, &url1, &chat(&prompt), &[]).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.header("x-heady-cache"), "miss");
    assert_eq!(first.body["heady"]["cache"], "miss");
    assert_eq!(fake.hits(), 1);
    let again = send(&c, &url2, &chat(&prompt), &[]).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(
        again.header("x-heady-cache"),
        "hit",
        "the other origin finds it in Redis"
    );
    assert_eq!(again.body["heady"]["cache"], "hit");
    assert_eq!(
        again.body["heady"]["attempts"],
        json!([]),
        "no provider call"
    );
    assert_eq!(again.body["choices"], first.body["choices"]);
    assert_eq!(again.body["usage"], first.body["usage"]);
    assert_eq!(fake.hits(), 1);
    // Field order and spacing do not matter; the delivery fields neither.
    let reordered: Value = serde_json::from_str(&format!(
        r#"{{"messages":[{{"content":{},"role":"user"}}], "temperature":0.0, "user":"u-9", "model":"heady"}}"#,
        Value::String(prompt.clone())
    ))
    .unwrap();
    assert_eq!(
        send(&c, &url1, &reordered, &[])
            .await
            .header("x-heady-cache"),
        "hit"
    );
    assert_eq!(fake.hits(), 1);

    // A stream is cached as a stream and replayed as one, from either origin.
    let mut streamed = chat(&prompt);
    streamed["stream"] = json!(true);
    let live = send(&c, &url2, &streamed, &[]).await;
    assert_eq!(live.header("x-heady-cache"), "miss");
    assert_eq!(fake.hits(), 2);
    let replay = send(&c, &url1, &streamed, &[]).await;
    assert_eq!(replay.header("x-heady-cache"), "hit");
    assert_eq!(fake.hits(), 2);
    assert_eq!(chunks(&replay.text), chunks(&live.text));
    let text: String = chunks(&replay.text)
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, prompt, "the fake echoes the prompt");
    // The usage chunk is replayed only to a client that asks for it.
    let mut with_usage = streamed.clone();
    with_usage["stream_options"] = json!({"include_usage": true});
    let u = send(&c, &url2, &with_usage, &[]).await;
    assert_eq!(u.header("x-heady-cache"), "hit");
    assert!(chunks(&u.text)
        .last()
        .is_some_and(|c| c["usage"]["total_tokens"].is_u64()));
    assert!(chunks(&replay.text).iter().all(|c| c["usage"].is_null()));

    // What bypasses or refreshes it.
    let hot = json!({"model": "heady", "temperature": 0.7, "messages": [{"role": "user", "content": prompt}]});
    let h1 = send(&c, &url1, &hot, &[]).await;
    let h2 = send(&c, &url1, &hot, &[]).await;
    assert_eq!(
        (h1.header("x-heady-cache"), h2.header("x-heady-cache")),
        ("bypass", "bypass")
    );
    assert_eq!(fake.hits(), 4, "not deterministic: not cached");
    let mut asked = hot.clone();
    asked["heady"] = json!({"cache": {"ttl": 60}});
    assert_eq!(
        send(&c, &url1, &asked, &[]).await.header("x-heady-cache"),
        "miss"
    );
    assert_eq!(
        send(&c, &url2, &asked, &[]).await.header("x-heady-cache"),
        "hit"
    );
    assert_eq!(fake.hits(), 5, "cached when the client asks for it");
    let fresh = send(&c, &url1, &chat(&prompt), &[("cache-control", "no-cache")]).await;
    assert_eq!(fresh.header("x-heady-cache"), "miss");
    assert_eq!(fake.hits(), 6);
    let none = send(&c, &url1, &chat(&prompt), &[("cache-control", "no-store")]).await;
    assert_eq!(none.header("x-heady-cache"), "bypass");
    let mut off = chat(&prompt);
    off["heady"] = json!({"cache": false});
    assert_eq!(
        send(&c, &url1, &off, &[]).await.header("x-heady-cache"),
        "bypass"
    );
    assert_eq!(fake.hits(), 8);
    assert!(
        fake.requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.get("heady").is_none()),
        "the heady option never reaches the provider"
    );

    // Anonymous callers own nothing: no cache.
    let anon = send(&client(), &url1, &chat(&prompt), &[]).await;
    assert_eq!(anon.status, 200);
    assert_eq!(anon.header("x-heady-cache"), "bypass");

    // Bad options are refused, naming them, before anything is done.
    let before = fake.hits();
    let mut bad = chat(&prompt);
    bad["heady"] = json!({"cache": {"ttl": "long"}});
    let r = send(&c, &url1, &bad, &[]).await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("heady.cache:"),
        "{}",
        r.text
    );
    let r = send(
        &c,
        &url1,
        &chat(&prompt),
        &[("cache-control", "max-age=soon")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Cache-Control:"),
        "{}",
        r.text
    );
    assert_eq!(fake.hits(), before);

    let m = metrics(&one).await;
    assert!(
        metric(&m, "heady_cache_requests_total{result=\"hit\"}") >= 2.0,
        "{m}"
    );
    assert!(metric(&m, "heady_cache_requests_total{result=\"miss\"}") >= 1.0);
    assert!(metric(&m, "heady_cache_saved_tokens_total") > 0.0);
    assert!(metric(&m, "heady_cache_stores_total{result=\"stored\"}") >= 1.0);
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_belong_to_their_account() {
    let fake = FakeProvider::start(Behavior {
        reply: None,
        ..Behavior::default()
    })
    .await;
    let p = openai_provider("fake", &fake.base_url);
    let s = TestServer::start(move |c| c.providers = vec![p]).await;
    let (key_b, _) = new_key(&s.state, "bea", Tier::Pro, Classification::Public).await;
    let url = s.url("/v1/chat/completions");
    let prompt = chat("What is the boiling point of water at sea level?");
    assert_eq!(
        send(&owner_client(), &url, &prompt, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    assert_eq!(
        send(&owner_client(), &url, &prompt, &[])
            .await
            .header("x-heady-cache"),
        "hit"
    );
    // The same request from another account is its own miss.
    let b = client_with(&key_b);
    assert_eq!(
        send(&b, &url, &prompt, &[]).await.header("x-heady-cache"),
        "miss"
    );
    assert_eq!(
        send(&b, &url, &prompt, &[]).await.header("x-heady-cache"),
        "hit"
    );
    assert_eq!(fake.hits(), 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paraphrase_is_a_semantic_hit_for_an_account_that_opted_in() {
    let fake = FakeProvider::start(Behavior {
        reply: Some("Paris is the capital of France.".into()),
        ..Behavior::default()
    })
    .await;
    let p = openai_provider("fake", &fake.base_url);
    let s = TestServer::start(move |c| {
        c.providers = vec![p];
        // The lexical embedder (the tests' default) scores paraphrases that share most
        // words around 0.8-0.9; a real model scores them higher.
        c.pipeline.cache.semantic.threshold = 0.75;
    })
    .await;
    let accounts = &s.state.defense.accounts;
    let (key_a, acct_a) = new_key(&s.state, "opted-a", Tier::Pro, Classification::Public).await;
    let (key_b, acct_b) = new_key(&s.state, "opted-b", Tier::Pro, Classification::Public).await;
    let (key_c, _) = new_key(&s.state, "not-opted", Tier::Pro, Classification::Public).await;
    for id in [&acct_a, &acct_b] {
        let change = AccountChange {
            semantic_cache: Some(true),
            ..AccountChange::default()
        };
        let a = accounts.update_account(id, &change).await.unwrap();
        assert!(a.semantic_cache);
    }
    let url = s.url("/v1/chat/completions");
    let (a, b, c) = (
        client_with(&key_a),
        client_with(&key_b),
        client_with(&key_c),
    );
    let asked = chat("Please tell me what the capital of France is.");
    let paraphrase = chat("Tell me, please, what is the capital of France?");
    let unrelated = chat("How long should sourdough bread rise overnight?");

    let first = send(&a, &url, &asked, &[]).await;
    assert_eq!(first.header("x-heady-cache"), "miss");
    let similar = send(&a, &url, &paraphrase, &[]).await;
    assert_eq!(
        similar.header("x-heady-cache"),
        "semantic_hit",
        "{}",
        similar.text
    );
    assert_eq!(similar.body["heady"]["cache"], "semantic_hit");
    assert_eq!(similar.body["choices"], first.body["choices"]);
    assert_eq!(fake.hits(), 1);
    assert_eq!(
        send(&a, &url, &unrelated, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    assert_eq!(fake.hits(), 2);
    // Another context (a system prompt) is not a hit, however similar the prompt.
    let mut other_context = paraphrase.clone();
    other_context["messages"] = json!([{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Tell me, please, what is the capital of France?"}]);
    assert_eq!(
        send(&a, &url, &other_context, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    // Never across accounts: b opted in too, but a's answers are not its own.
    assert_eq!(
        send(&b, &url, &paraphrase, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    // An account that did not opt in gets exact hits only.
    assert_eq!(
        send(&c, &url, &asked, &[]).await.header("x-heady-cache"),
        "miss"
    );
    assert_eq!(
        send(&c, &url, &paraphrase, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    assert_eq!(
        send(&c, &url, &asked, &[]).await.header("x-heady-cache"),
        "hit"
    );
    // A request may turn the semantic lookup off.
    let mut exact_only = chat("Tell me please: what's the capital of France?");
    exact_only["heady"] = json!({"cache": {"semantic": false}});
    assert_eq!(
        send(&a, &url, &exact_only, &[])
            .await
            .header("x-heady-cache"),
        "miss"
    );
    let m = metrics(&s).await;
    assert!(
        metric(&m, "heady_cache_requests_total{result=\"semantic_hit\"}") >= 1.0,
        "{m}"
    );
    assert!(metric(&m, "heady_cache_semantic_entries") >= 1.0, "{m}");
    s.stop().await;
}
