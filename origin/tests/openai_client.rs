//! The official `openai` Python package (from PyPI, installed by deploy/setup.sh into
//! $HOME/.cache/heady/venv) against a real daemon with defense on, the client holding a Heady
//! API key: chat, streamed chat and embeddings.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::TestServer;
use heady_origin::providers::config::{ProviderConfig, ProviderKind};
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
    let base_url = fake.base_url.clone();
    let s = TestServer::start(move |c| {
        // As deployed: defense on, the client holds a Heady API key.
        c.defense.enabled = true;
        c.providers = vec![ProviderConfig {
            name: "fake".into(),
            kind: ProviderKind::Openai,
            base_url: Some(base_url),
            api_key: None,
            account_id: None,
            model: None,
            groups: Vec::new(),
            weight: 1.0,
            priority: 0,
            timeout_ms: 5_000,
            anthropic_version: None,
            features: None,
        }]
    })
    .await;
    let store = &s.state.defense.accounts;
    let (account, _) = store
        .ensure_account("sdk-user", Tier::Pro, Classification::Public, 0)
        .await
        .unwrap();
    let key = store
        .create_key(&account.id, Default::default(), 0)
        .await
        .unwrap()
        .key;
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
