//! The official `openai` Python package (from PyPI, installed by deploy/setup.sh into
//! $HOME/.cache/heady/venv) against a real daemon with defense on, the client holding a Heady
//! API key: chat, streamed chat and embeddings; tools (a call, its result, streamed calls),
//! `response_format` json_schema, `n` = 2 and embeddings of token arrays, each checked at the
//! fake provider for what it received.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::TestServer;
use heady_origin::providers::config::ProviderConfig;
use heady_shared::{Classification, Tier};
use serde_json::Value;
use std::path::PathBuf;

const SCRIPT: &str = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
out = {}
r = client.chat.completions.create(model="heady", messages=[{"role": "user", "content": "say hi"}])
out["chat"] = {"content": r.choices[0].message.content, "finish": r.choices[0].finish_reason, "object": r.object}
parts = []
finish = None
for chunk in client.chat.completions.create(model="heady", messages=[{"role": "user", "content": "count"}], stream=True):
    if chunk.choices:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
out["stream"] = {"content": "".join(parts), "chunks": len(parts), "finish": finish}
e = client.embeddings.create(model="heady-embed", input=["alpha beta", "gamma"])
out["embeddings"] = {"n": len(e.data), "dim": len(e.data[0].embedding), "first": e.data[0].embedding[:3]}
ef = client.embeddings.create(model="heady-embed", input="alpha beta", encoding_format="float")
out["embeddings_float_first"] = ef.data[0].embedding[:3]
try:
    client.chat.completions.create(model="heady", messages=[{"role": "wizard", "content": "x"}])
    out["bad"] = None
except Exception as ex:
    out["bad"] = {"type": type(ex).__name__, "status": getattr(ex, "status_code", None)}
print(json.dumps(out))
"#;

/// A daemon as deployed (defense on) with `fake` as its one provider, and a Pro key of the
/// account `name`.
async fn daemon_with_key(
    fake: &FakeProvider,
    name: &str,
    configure: impl FnOnce(&mut heady_origin::config::Config),
) -> (TestServer, String) {
    let base_url = fake.base_url.clone();
    let s = TestServer::start(move |c| {
        c.defense.enabled = true;
        c.providers = vec![ProviderConfig {
            api_key: None,
            ..common::openai_provider("fake", &base_url)
        }];
        configure(c);
    })
    .await;
    let store = &s.state.defense.accounts;
    let (account, _) = store
        .ensure_account(name, Tier::Pro, Classification::Public, 0)
        .await
        .unwrap();
    let key = store
        .create_key(&account.id, Default::default(), 0)
        .await
        .unwrap()
        .key;
    (s, key)
}

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("HEADY_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    PathBuf::from(home).join(".cache/heady/venv/bin/python")
}

#[tokio::test]
async fn the_official_openai_python_client_works_unmodified() {
    let py = python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (it creates the venv with the openai package)",
        py.display()
    );
    let fake = FakeProvider::start(Behavior {
        reply: Some("one two three".into()),
        ..Behavior::default()
    })
    .await;
    let (s, key) = daemon_with_key(&fake, "sdk-user", |_| {}).await;
    let out = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(SCRIPT)
        .arg(s.url("/v1"))
        .arg(&key)
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chat"]["content"], "one two three");
    assert_eq!(v["chat"]["finish"], "stop");
    assert_eq!(v["chat"]["object"], "chat.completion");
    assert_eq!(v["stream"]["content"], "one two three");
    assert_eq!(v["stream"]["finish"], "stop");
    assert!(v["stream"]["chunks"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["embeddings"]["n"], 2);
    assert_eq!(v["embeddings"]["dim"], 384);
    // base64 (the client's default) and float encodings carry the same numbers.
    let a: Vec<f64> = serde_json::from_value(v["embeddings"]["first"].clone()).unwrap();
    let b: Vec<f64> = serde_json::from_value(v["embeddings_float_first"].clone()).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-6, "{a:?} {b:?}");
    }
    assert_eq!(v["bad"]["type"], "BadRequestError");
    assert_eq!(v["bad"]["status"], 400);
    s.stop().await;
}

const FIDELITY: &str = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key=sys.argv[2], max_retries=0)
out = {}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]
msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
r = client.chat.completions.create(model="heady", messages=msgs, tools=tools, tool_choice="auto",
                                   parallel_tool_calls=False, seed=7, user="u-42", temperature=0)
m = r.choices[0].message
out["tool"] = {"finish": r.choices[0].finish_reason, "content": m.content,
               "calls": [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments} for c in m.tool_calls or []],
               "attempts": (r.model_extra or {}).get("heady", {}).get("attempts")}
msgs.append(m.model_dump(exclude_none=True))
msgs.append({"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": json.dumps({"temperature_c": 18, "sky": "clear"})})
r2 = client.chat.completions.create(model="heady", messages=msgs, tools=tools, tool_choice="none",
                                    stop=["\n\n"], logprobs=True, top_logprobs=2)
out["tool_result_turn"] = {"finish": r2.choices[0].finish_reason, "content": r2.choices[0].message.content}
calls, finish, chunks = {}, None, 0
for chunk in client.chat.completions.create(model="heady", messages=msgs[:1], tools=tools, stream=True):
    if not chunk.choices:
        continue
    chunks += 1
    for tc in chunk.choices[0].delta.tool_calls or []:
        c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
        c["id"] = tc.id or c["id"]
        if tc.function and tc.function.name:
            c["name"] += tc.function.name
        if tc.function and tc.function.arguments:
            c["arguments"] += tc.function.arguments
    finish = chunk.choices[0].finish_reason or finish
out["stream_tool"] = {"calls": list(calls.values()), "finish": finish, "chunks": chunks}
schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}
r3 = client.chat.completions.create(model="heady", messages=[{"role": "user", "content": "{\"city\": \"Paris\"}"}],
                                    response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema, "strict": True}})
out["json_schema"] = json.loads(r3.choices[0].message.content)
r4 = client.chat.completions.create(model="heady", messages=[{"role": "user", "content": "two please"}], n=2)
out["n"] = [c.message.content for c in r4.choices]
texts = {}
for chunk in client.chat.completions.create(model="heady", messages=[{"role": "user", "content": "two streams"}], n=2, stream=True):
    for c in chunk.choices:
        texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
out["n_stream"] = [texts[k] for k in sorted(texts)]
e1 = client.embeddings.create(model="text-embedding-3-small", input=[9906, 1917, 0])
e2 = client.embeddings.create(model="text-embedding-3-small", input=[[9906, 1917], [3923, 374, 279, 9282]], dimensions=64)
out["emb"] = {"one": [len(e1.data), len(e1.data[0].embedding), e1.usage.prompt_tokens, e1.model],
              "many": [len(e2.data), len(e2.data[0].embedding), e2.usage.prompt_tokens]}
print(json.dumps(out))
"#;

#[tokio::test]
async fn tools_json_schema_n_and_token_arrays_reach_the_provider_unchanged() {
    let py = python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh",
        py.display()
    );
    let fake = FakeProvider::start(Behavior {
        // Echo the user: a JSON prompt gets a JSON answer, which the critique accepts.
        reply: None,
        tool_call: Some((
            "get_weather".into(),
            r#"{"city":"Paris","unit":"celsius"}"#.into(),
        )),
        ..Behavior::default()
    })
    .await;
    let embed_url = fake.base_url.clone();
    let (s, key) = daemon_with_key(&fake, "sdk-tools", move |c| {
        c.embedder.kind = heady_origin::memory::embedder_config::EmbedderKind::Openai;
        c.embedder.base_url = Some(embed_url);
        c.embedder.model = Some("text-embedding-3-small".into());
    })
    .await;
    let out = tokio::process::Command::new(&py)
        .arg("-c")
        .arg(FIDELITY)
        .arg(s.url("/v1"))
        .arg(&key)
        .output()
        .await
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = fake.requests.lock().unwrap().clone();

    // A tool call is an answer: passed on whole, and the critique scores it as one.
    assert_eq!(v["tool"]["finish"], "tool_calls", "{v}");
    assert_eq!(v["tool"]["content"], Value::Null);
    assert_eq!(v["tool"]["calls"][0]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(v["tool"]["calls"][0]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        args,
        serde_json::json!({"city": "Paris", "unit": "celsius"})
    );
    assert_eq!(v["tool"]["attempts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["tool"]["attempts"][0]["critique"]["score"], 1.0, "{v}");
    let first = &seen[0];
    assert_eq!(first["tools"][0]["function"]["name"], "get_weather");
    assert_eq!(
        first["tools"][0]["function"]["parameters"]["properties"]["unit"]["enum"][1],
        "fahrenheit"
    );
    assert_eq!(first["tool_choice"], "auto");
    assert_eq!(first["parallel_tool_calls"], false);
    assert_eq!(first["seed"], 7);
    assert_eq!(first["user"], "u-42");
    assert_eq!(first["temperature"], 0);

    // The history with the call and its result reaches the provider as sent.
    assert_eq!(v["tool_result_turn"]["finish"], "stop");
    let second = &seen[1];
    assert_eq!(second["messages"][1]["role"], "assistant");
    assert_eq!(
        second["messages"][1]["tool_calls"][0]["id"],
        "call_fake0001"
    );
    assert_eq!(
        second["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(second["messages"][2]["role"], "tool");
    assert_eq!(second["messages"][2]["tool_call_id"], "call_fake0001");
    assert_eq!(second["tool_choice"], "none");
    assert_eq!(second["stop"][0], "\n\n");
    assert_eq!(second["logprobs"], true);
    assert_eq!(second["top_logprobs"], 2);

    // Streamed tool calls come through delta by delta and add up.
    assert_eq!(v["stream_tool"]["finish"], "tool_calls");
    assert_eq!(v["stream_tool"]["calls"][0]["name"], "get_weather");
    assert_eq!(v["stream_tool"]["calls"][0]["id"], "call_fake0001");
    assert_eq!(
        v["stream_tool"]["calls"][0]["arguments"],
        r#"{"city":"Paris","unit":"celsius"}"#
    );
    assert!(v["stream_tool"]["chunks"].as_u64().unwrap() >= 4, "{v}");

    assert_eq!(v["json_schema"]["city"], "Paris");
    assert_eq!(
        seen[3]["response_format"]["json_schema"]["schema"]["additionalProperties"],
        false
    );
    assert_eq!(seen[3]["response_format"]["json_schema"]["strict"], true);

    assert_eq!(
        v["n"],
        serde_json::json!(["two please", "two please (choice 1)"])
    );
    assert_eq!(seen[4]["n"], 2);
    assert_eq!(
        v["n_stream"],
        serde_json::json!(["two streams", "two streams"])
    );

    // Token arrays and dimensions reach the embedding endpoint unchanged; its usage is reported.
    assert_eq!(
        v["emb"]["one"],
        serde_json::json!([1, 384, 3, "text-embedding-3-small"])
    );
    assert_eq!(v["emb"]["many"], serde_json::json!([2, 64, 6]));
    let emb = seen.last().unwrap();
    assert_eq!(
        emb["input"],
        serde_json::json!([[9906, 1917], [3923, 374, 279, 9282]])
    );
    assert_eq!(emb["dimensions"], 64);
    assert_eq!(emb["model"], "text-embedding-3-small");
    s.stop().await;
}
