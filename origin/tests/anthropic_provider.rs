//! The Anthropic provider (`kind = "anthropic"`) against a local fake of the Messages API that
//! checks requests as Anthropic does: through a real daemon on `/v1/chat/completions` (plain,
//! streamed, tool calls and tool results, metering), and the provider's errors directly.

mod common;

use common::fake_anthropic::{Answer, Behavior, FakeAnthropic, API_KEY, MODEL};
use common::{client, client_with, new_key, owner_client, TestServer};
use heady_origin::providers::config::{ProviderConfig, ProviderKind};
use heady_origin::providers::{build, ChatCall, ProviderError};
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};

const REPLY: &str = "Hello from the fake Claude.";

fn provider(fake: &FakeAnthropic, key: &str) -> ProviderConfig {
    ProviderConfig {
        name: "claude".into(),
        kind: ProviderKind::Anthropic,
        base_url: Some(fake.base_url.clone()),
        api_key: Some(key.into()),
        account_id: None,
        model: None,
        anthropic_version: None,
        groups: Vec::new(),
        weight: 1.0,
        priority: 0,
        timeout_ms: 10_000,
        features: None,
    }
}

async fn server(fake: &FakeAnthropic) -> TestServer {
    let p = provider(fake, API_KEY);
    TestServer::start(move |c| {
        c.providers = vec![p];
        // Flushes come from the usage API and shutdown: the tests see what they caused.
        c.usage.flush_interval_ms = 60_000;
    })
    .await
}

async fn post(c: &reqwest::Client, s: &TestServer, body: &Value) -> (u16, Value, String) {
    let r = c
        .post(s.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// The chunks of an SSE answer, which must end `data: [DONE]`.
fn chunks(text: &str) -> Vec<Value> {
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last().copied(), Some("[DONE]"), "{text}");
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

fn content_of(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect()
}

fn finish_of(chunks: &[Value]) -> Vec<String> {
    chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
        })
        .map(str::to_string)
        .collect()
}

/// (id, name, arguments) of each streamed tool call, its fragments joined.
fn streamed_tool_calls(chunks: &[Value]) -> Vec<(String, String, String)> {
    let mut calls: Vec<(String, String, String)> = Vec::new();
    for d in chunks
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/tool_calls")
                .and_then(Value::as_array)
        })
        .flatten()
    {
        let k = d["index"].as_u64().unwrap() as usize;
        if k == calls.len() {
            calls.push((
                d["id"].as_str().unwrap().to_string(),
                d["function"]["name"].as_str().unwrap().to_string(),
                String::new(),
            ));
        }
        calls[k].2 += d["function"]["arguments"].as_str().unwrap_or("");
    }
    calls
}

#[tokio::test]
async fn plain_answers_carry_the_system_prompt_and_usage() {
    let fake = FakeAnthropic::start(Behavior {
        cache_read_input_tokens: 4,
        ..Behavior::default()
    })
    .await;
    let s = server(&fake).await;
    // Fields without a Messages API equivalent (seed, presence_penalty, n = 1) are left out: the
    // fake refuses any field Anthropic does not know.
    let (status, r, text) = post(
        &client(),
        &s,
        &json!({"model": "heady", "max_tokens": 64, "temperature": 0.2, "stop": ["END"], "user": "u-1",
            "seed": 7, "presence_penalty": 0.1, "n": 1,
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text} {:?}", fake.refusals());
    assert_eq!(r["object"], "chat.completion");
    assert_eq!(
        r["model"], MODEL,
        "`heady` uses the first model GET /v1/models lists"
    );
    assert_eq!(r["choices"][0]["message"]["role"], "assistant");
    assert_eq!(r["choices"][0]["message"]["content"], REPLY);
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    let words = REPLY.split_whitespace().count() as u64;
    assert_eq!(r["usage"]["prompt_tokens"], 21 + 4);
    assert_eq!(r["usage"]["completion_tokens"], words);
    assert_eq!(r["usage"]["total_tokens"], 25 + words);
    assert_eq!(r["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(r["heady"]["provider"], "claude");

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.api_key.as_deref(), Some(API_KEY));
    assert_eq!(seen.version.as_deref(), Some("2023-06-01"));
    let b = &seen.body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(b["system"], "Be brief.");
    assert_eq!(
        b["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}])
    );
    assert_eq!(b["max_tokens"], 64);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["stop_sequences"], json!(["END"]));
    assert_eq!(b["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(b["stream"], false);

    // A model the client names is forwarded; with no max_tokens and no tier cap (the owner's
    // Enterprise key), the provider's default is sent, as the Messages API requires one.
    // Images travel as image blocks.
    let (status, _, text) = post(
        &owner_client(),
        &s,
        &json!({"model": "claude-fake-1", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        ]}]}),
    )
    .await;
    assert_eq!(status, 200, "{text} {:?}", fake.refusals());
    let b = fake.last().body;
    assert_eq!(b["model"], "claude-fake-1");
    assert_eq!(b["max_tokens"], 4096);
    assert!(b.get("system").is_none(), "{b}");
    assert_eq!(
        b["messages"][0]["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}})
    );
    assert_eq!(
        b["messages"][0]["content"][2],
        json!({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})
    );
    assert!(fake.refusals().is_empty(), "{:?}", fake.refusals());
    s.stop().await;
}

#[tokio::test]
async fn streamed_answers_become_openai_chunks_and_are_metered() {
    let fake = FakeAnthropic::start(Behavior::default()).await;
    let s = server(&fake).await;
    let (key, _) = new_key(&s.state, "ann", Tier::Pro, Classification::Public).await;
    let ann = client_with(&key);
    let words = REPLY.split_whitespace().count() as u64;

    let mut body = json!({"model": "heady", "stream": true,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]});
    let (status, _, text) = post(&ann, &s, &body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(fake.last().body["stream"], true);
    assert_eq!(fake.last().body["system"], "Be brief.");
    let cs = chunks(&text);
    assert!(
        cs.iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["model"] == MODEL),
        "{text}"
    );
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content_of(&cs), REPLY);
    assert_eq!(finish_of(&cs), ["stop"]);
    // The usage chunk is for the meter: a client that did not ask for it does not see it.
    assert!(
        cs.iter()
            .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())),
        "{text}"
    );

    body["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = post(&ann, &s, &body).await;
    assert_eq!(status, 200, "{text}");
    let cs = chunks(&text);
    let last = cs.last().unwrap();
    assert_eq!(last["choices"], json!([]), "{text}");
    assert_eq!(last["usage"]["prompt_tokens"], 21);
    assert_eq!(last["usage"]["completion_tokens"], words);
    assert!(fake.last().body.get("stream_options").is_none());

    let r = ann.get(s.url("/api/account/usage")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    let line = report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == MODEL)
        .unwrap_or_else(|| panic!("no {MODEL} line in {report}"))
        .clone();
    assert_eq!(line["requests"], 2, "{report}");
    assert_eq!(line["prompt_tokens"], 2 * 21);
    assert_eq!(line["completion_tokens"], 2 * words);
    assert_eq!(
        line["estimated"], false,
        "the provider's own counts were used"
    );
    s.stop().await;
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

#[tokio::test]
async fn tool_calls_and_tool_results_round_trip() {
    let fake = FakeAnthropic::start(Behavior {
        answer: Answer::ToolUse {
            text: String::new(),
            calls: vec![
                ("get_weather".into(), json!({"city": "Paris"})),
                ("get_weather".into(), json!({"city": "Rome"})),
            ],
        },
        ..Behavior::default()
    })
    .await;
    let s = server(&fake).await;
    let question = json!({"role": "user", "content": "Is Paris or Rome warmer now?"});
    let (status, r, text) = post(
        &client(),
        &s,
        &json!({"model": "heady", "tools": [weather_tool()], "tool_choice": "required", "messages": [question]}),
    )
    .await;
    assert_eq!(status, 200, "{text} {:?}", fake.refusals());
    let b = fake.last().body;
    assert_eq!(
        b["tools"],
        json!([{"name": "get_weather", "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
    );
    assert_eq!(b["tool_choice"], json!({"type": "any"}));
    let choice = &r["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{r}");
    assert_eq!(choice["message"]["content"], Value::Null);
    let calls = choice["message"]["tool_calls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 2, "{r}");
    for (call, city) in calls.iter().zip(["Paris", "Rome"]) {
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, json!({"city": city}));
        assert!(call["id"].as_str().unwrap().starts_with("toolu_"));
    }

    // The second turn: the assistant's tool calls and one tool message per result. The fake
    // refuses tool results that do not answer the tool_use blocks of the turn before.
    fake.set(|b| b.answer = Answer::Text("Rome is warmer.".into()));
    let (status, r, text) = post(
        &client(),
        &s,
        &json!({"model": "heady", "tools": [weather_tool()], "tool_choice": "auto", "parallel_tool_calls": false, "messages": [
            question,
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18 C"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "24 C"},
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{text} {:?}", fake.refusals());
    assert_eq!(r["choices"][0]["message"]["content"], "Rome is warmer.");
    let b = fake.last().body;
    assert_eq!(
        b["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    let messages = b["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{b}");
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": calls[0]["id"], "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": calls[1]["id"], "name": "get_weather", "input": {"city": "Rome"}},
        ]})
    );
    assert_eq!(
        messages[2],
        json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": calls[0]["id"], "content": "18 C"},
            {"type": "tool_result", "tool_use_id": calls[1]["id"], "content": "24 C"},
        ]})
    );
    assert!(fake.refusals().is_empty(), "{:?}", fake.refusals());
    s.stop().await;
}

#[tokio::test]
async fn streamed_tool_calls_reassemble_to_their_arguments() {
    let inputs = [
        json!({"city": "Paris", "unit": "celsius", "note": "a longer input, split in many fragments"}),
        json!({"city": "Rome"}),
    ];
    let fake = FakeAnthropic::start(Behavior {
        answer: Answer::ToolUse {
            text: "Let me check.".into(),
            calls: inputs
                .iter()
                .map(|i| ("get_weather".to_string(), i.clone()))
                .collect(),
        },
        ..Behavior::default()
    })
    .await;
    let s = server(&fake).await;
    let (status, _, text) = post(
        &client(),
        &s,
        &json!({"model": "heady", "stream": true, "tools": [weather_tool()],
            "messages": [{"role": "user", "content": "Weather in Paris and Rome?"}]}),
    )
    .await;
    assert_eq!(status, 200, "{text} {:?}", fake.refusals());
    let cs = chunks(&text);
    assert_eq!(content_of(&cs), "Let me check.");
    assert_eq!(finish_of(&cs), ["tool_calls"]);
    let calls = streamed_tool_calls(&cs);
    assert_eq!(calls.len(), 2, "{text}");
    for ((id, name, args), input) in calls.iter().zip(&inputs) {
        assert!(id.starts_with("toolu_"), "{id}");
        assert_eq!(name, "get_weather");
        assert_eq!(&serde_json::from_str::<Value>(args).unwrap(), input);
    }
    assert_ne!(calls[0].0, calls[1].0);
    // The first call's arguments came in several fragments.
    let fragments = cs
        .iter()
        .filter(|c| c.pointer("/choices/0/delta/tool_calls/0/index") == Some(&json!(0)))
        .count();
    assert!(fragments > 3, "{text}");
    s.stop().await;
}

fn call(body: Value) -> ChatCall {
    ChatCall {
        body: body.as_object().unwrap().clone(),
    }
}

fn upstream(e: ProviderError) -> (u16, heady_origin::providers::Refusal) {
    match e {
        ProviderError::Upstream { status, detail, .. } => (status, *detail),
        other => panic!("not an upstream refusal: {other:?}"),
    }
}

#[tokio::test]
async fn errors_keep_their_type() {
    let fake = FakeAnthropic::start(Behavior::default()).await;
    let entries = build(&[provider(&fake, API_KEY)]);
    let claude = entries[0].client.clone();
    let hello = || call(json!({"model": "heady", "messages": [{"role": "user", "content": "hi"}]}));

    fake.set(|b| {
        b.answer = Answer::Error {
            status: 429,
            kind: "rate_limit_error".into(),
            retry_after: Some(7),
        }
    });
    let (status, d) = upstream(claude.chat(&hello()).await.unwrap_err());
    assert_eq!(status, 429);
    assert_eq!(d.kind.as_deref(), Some("rate_limit_error"));
    assert_eq!(d.retry_after_ms, Some(7_000));
    assert!(d.message.contains("rate limit"), "{}", d.message);

    // Anthropic's 529 is reported as 503 (what the pipeline retries), its type kept.
    fake.set(|b| {
        b.answer = Answer::Error {
            status: 529,
            kind: "overloaded_error".into(),
            retry_after: None,
        }
    });
    let (status, d) = upstream(claude.chat(&hello()).await.unwrap_err());
    assert_eq!((status, d.kind.as_deref()), (503, Some("overloaded_error")));
    let mut streamed = hello();
    streamed.body.insert("stream".into(), json!(true));
    let e = claude.chat_stream(&streamed).await.err().unwrap();
    let (status, d) = upstream(e);
    assert_eq!((status, d.kind.as_deref()), (503, Some("overloaded_error")));

    // An error event once the stream has begun ends it with the error's type.
    fake.set(|b| {
        b.answer = Answer::ErrorMidStream {
            text: REPLY.into(),
            kind: "overloaded_error".into(),
        }
    });
    let mut events = claude.chat_stream(&streamed).await.unwrap();
    let mut text = String::new();
    let e = loop {
        match events.next().await {
            Ok(Some(ev)) => text.push_str(&ev.delta_text),
            Ok(None) => panic!("the stream ended without its error"),
            Err(e) => break e,
        }
    };
    assert_eq!(text, "Hello ");
    let (status, d) = upstream(e);
    assert_eq!((status, d.kind.as_deref()), (503, Some("overloaded_error")));

    // A wrong key: Anthropic's 401 and its type.
    let wrong = build(&[provider(&fake, "sk-ant-wrong")]);
    let (status, d) = upstream(wrong[0].client.chat(&hello()).await.unwrap_err());
    assert_eq!(
        (status, d.kind.as_deref()),
        (401, Some("authentication_error"))
    );

    // Arguments that are not JSON are refused before anything is sent, naming the message.
    let before = fake.hits();
    let bad_history = call(json!({"model": "heady", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": "}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
    ]}));
    let (status, d) = upstream(claude.chat(&bad_history).await.unwrap_err());
    assert_eq!(status, 400);
    assert_eq!(d.kind.as_deref(), Some("invalid_request_error"));
    assert_eq!(
        d.param.as_deref(),
        Some("messages[1].tool_calls[0].function.arguments")
    );
    assert_eq!(fake.hits(), before);

    // Through the daemon: Anthropic's 400 is the client's (no fallback), and so is a history
    // the provider cannot translate; a stream that breaks off ends with an error event.
    let s = server(&fake).await;
    fake.set(|b| {
        b.answer = Answer::Error {
            status: 400,
            kind: "invalid_request_error".into(),
            retry_after: None,
        }
    });
    let (status, r, _) = post(&client(), &s, &hello().body.into()).await;
    assert_eq!(status, 400, "{r}");
    let (status, r, _) = post(&client(), &s, &bad_history.body.clone().into()).await;
    assert_eq!(status, 400, "{r}");
    fake.set(|b| {
        b.answer = Answer::ErrorMidStream {
            text: REPLY.into(),
            kind: "overloaded_error".into(),
        }
    });
    let (status, _, text) = post(&client(), &s, &streamed.body.clone().into()).await;
    assert_eq!(status, 200);
    let cs = chunks(&text);
    assert_eq!(content_of(&cs), "Hello ");
    assert_eq!(
        cs.last().unwrap()["error"]["code"],
        "upstream_failed",
        "{text}"
    );
    s.stop().await;
}

/// The fake's checks are Anthropic's: what the translation must get right, it refuses.
#[tokio::test]
async fn the_fake_refuses_what_anthropic_refuses() {
    let fake = FakeAnthropic::start(Behavior::default()).await;
    let url = format!("{}/v1/messages", fake.base_url);
    let send = |key: Option<&str>, version: Option<&str>, body: Value| {
        let mut req = client().post(&url).json(&body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        if let Some(v) = version {
            req = req.header("anthropic-version", v);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (status, v)
        }
    };
    let user = |t: &str| json!({"role": "user", "content": t});
    let good = json!({"model": MODEL, "max_tokens": 10, "messages": [user("hi")]});
    let v = Some("2023-06-01");
    let (status, r) = send(Some(API_KEY), v, good.clone()).await;
    assert_eq!((status, r["type"].as_str()), (200, Some("message")), "{r}");
    let (status, r) = send(Some("sk-ant-wrong"), v, good.clone()).await;
    assert_eq!(
        (status, r["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let (status, r) = send(Some(API_KEY), None, good.clone()).await;
    assert_eq!(status, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version"),
        "{r}"
    );
    for (body, why) in [
        (
            json!({"model": MODEL, "messages": [user("hi")]}),
            "max_tokens",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "n": 1, "messages": [user("hi")]}),
            "Extra inputs",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "messages": [user("a"), user("b")]}),
            "alternate",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "system", "content": "s"}, user("a")]}),
            "role",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "messages": [user("a"), {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}, user("b")]}),
            "without `tool_result`",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t9", "content": "x"}]}]}),
            "tool_use_id",
        ),
        (
            json!({"model": MODEL, "max_tokens": 10, "temperature": 1.5, "messages": [user("a")]}),
            "temperature",
        ),
    ] {
        let (status, r) = send(Some(API_KEY), v, body.clone()).await;
        assert_eq!(status, 400, "{body}: {r}");
        assert_eq!(r["error"]["type"], "invalid_request_error");
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{body}: {message}");
    }
}
