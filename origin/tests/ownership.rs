//! Memory belongs to accounts, over HTTP: two accounts' keys against one daemon (real DuckDB,
//! real HTTP). The attack from the issue (a guessed session id), anonymous callers, sessions,
//! deletion, an operator's search across owners, and the row quota.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{client, client_with, TestServer};
use heady_origin::config::Config;
use heady_origin::providers::config::ProviderConfig;
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const ACCOUNT_A: &str = "alice";
const ACCOUNT_B: &str = "bob";

fn provider(fake: &FakeProvider) -> ProviderConfig {
    common::openai_provider("a", &fake.base_url)
}

/// A new key of the account named `name`.
async fn key(s: &TestServer, name: &str, tier: Tier, clearance: Classification) -> String {
    common::new_key(&s.state, name, tier, clearance).await.0
}

/// The id of the account named `name`.
async fn id_of(s: &TestServer, name: &str) -> String {
    s.state
        .defense
        .accounts
        .account_by_name(name)
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

async fn call(c: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn contents(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap().to_string())
        .collect()
}

/// A guesses nothing and B guesses A's session id: B recalls none of A's turns, stores its
/// own turns in its own `s1`, and `recalled` says nothing about A's session.
#[tokio::test]
async fn a_guessed_session_id_reads_and_plants_nothing() {
    let fake = FakeProvider::start(Behavior {
        reply: Some("Noted.".into()),
        ..Behavior::default()
    })
    .await;
    let p = provider(&fake);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![p]).await;
    let a = client_with(&key(&s, ACCOUNT_A, Tier::Pro, Classification::Internal).await);
    let b = client_with(&key(&s, ACCOUNT_B, Tier::Pro, Classification::Internal).await);
    let chat = s.url("/api/brain/chat");

    let (st, v) = call(
        &a,
        "POST",
        &chat,
        Some(json!({"message": "my bank PIN is 4321", "session_id": "s1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["heady"]["memory"]["enabled"], true);
    assert_eq!(v["heady"]["memory"]["stored"].as_array().unwrap().len(), 2);

    let (st, v) = call(
        &b,
        "POST",
        &chat,
        Some(json!({"message": "what is my bank PIN?", "session_id": "s1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["heady"]["memory"]["recalled"], 0, "{v}");
    let sent = fake.last_request.lock().unwrap().clone().unwrap();
    assert!(
        !sent.to_string().contains("4321"),
        "A's turn reached B's prompt: {sent}"
    );

    // A's next turn recalls A's own turns only: B's planted text is not in A's session.
    let (st, v) = call(
        &a,
        "POST",
        &chat,
        Some(json!({"message": "what is my bank PIN?", "session_id": "s1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["heady"]["memory"]["recalled"], 2, "{v}");
    let sent = fake.last_request.lock().unwrap().clone().unwrap();
    let note = sent["messages"][0]["content"].as_str().unwrap();
    assert!(note.contains("4321"), "{note}");
    assert_eq!(
        note.matches("what is my bank PIN?").count(),
        0,
        "B's turn was planted in A's session: {note}"
    );

    // Each sees its own rows in search, stats and sessions.
    let (_, found) = call(
        &b,
        "POST",
        &s.url("/api/memory/search"),
        Some(json!({"text": "bank PIN", "top_k": 50})),
    )
    .await;
    assert!(
        contents(&found).iter().all(|c| !c.contains("4321")),
        "{found}"
    );
    assert_eq!(contents(&found).len(), 2, "{found}");
    let (_, stats) = call(&a, "GET", &s.url("/api/memory/stats"), None).await;
    assert_eq!(stats["total_vectors"], 4, "{stats}");
    let (_, stats) = call(&b, "GET", &s.url("/api/memory/stats"), None).await;
    assert_eq!(stats["total_vectors"], 2, "{stats}");
    s.stop().await;
}

/// Anonymous callers get no memory: a chat stores and recalls nothing and says so, and the
/// memory routes answer 403 `memory_unavailable` (defense off, so no class gate stops them).
#[tokio::test]
async fn anonymous_callers_have_no_memory() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let p = provider(&fake);
    let s = TestServer::start(move |c: &mut Config| c.providers = vec![p]).await;
    let anon = client();
    for url in ["/api/brain/chat", "/v1/chat/completions"] {
        let (st, v) = call(&anon, "POST", &s.url(url), Some(json!({"model": "heady", "messages": [{"role": "user", "content": "remember me"}], "session_id": "s1"}))).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(
            v["heady"]["memory"],
            json!({"enabled": false, "reason": "anonymous"}),
            "{url}"
        );
    }
    assert_eq!(s.state.memory.len(), 0, "nothing stored");
    for (method, path, body) in [
        ("POST", "/api/memory/vectors", Some(json!({"content": "x"}))),
        ("POST", "/api/memory/search", Some(json!({"text": "x"}))),
        ("GET", "/api/memory/stats", None),
        ("GET", "/api/memory/sessions", None),
        ("DELETE", "/api/memory/sessions/s1", None),
        ("DELETE", "/api/memory?confirm=true", None),
    ] {
        let (st, v) = call(&anon, method, &s.url(path), body).await;
        assert_eq!(
            (st, code(&v)),
            (403, "memory_unavailable"),
            "{method} {path}: {v}"
        );
    }
    // The zone of a text reads and stores no rows: anyone may ask.
    let (st, v) = call(
        &anon,
        "POST",
        &s.url("/api/memory/zone"),
        Some(json!({"text": "x y"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

/// The caller's sessions with counts and times; deleting one session, then everything (only
/// with `confirm=true`); deleted rows leave search at once.
#[tokio::test]
async fn sessions_are_listed_and_deleted_per_account() {
    let s = TestServer::start(|_| {}).await;
    let a = client_with(&key(&s, ACCOUNT_A, Tier::Pro, Classification::Internal).await);
    let b = client_with(&key(&s, ACCOUNT_B, Tier::Pro, Classification::Internal).await);
    let vectors = s.url("/api/memory/vectors");
    let items = |tag: &str| {
        json!({"items": [
            {"content": format!("{tag} sourdough starter"), "session_id": "s1"},
            {"content": format!("{tag} rye starter"), "session_id": "s1"},
            {"content": format!("{tag} tomato seedlings"), "session_id": "garden plot"},
        ]})
    };
    assert_eq!(call(&a, "POST", &vectors, Some(items("A"))).await.0, 200);
    assert_eq!(call(&b, "POST", &vectors, Some(items("B"))).await.0, 200);

    let (st, v) = call(&a, "GET", &s.url("/api/memory/sessions"), None).await;
    assert_eq!(st, 200, "{v}");
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{v}");
    let s1 = sessions.iter().find(|x| x["session_id"] == "s1").unwrap();
    assert_eq!(s1["rows"], 2);
    assert!(s1["first_ts"].as_i64().unwrap() <= s1["last_ts"].as_i64().unwrap());

    // Unknown session: 404; another account's session of the same name is untouched.
    let (st, v) = call(&a, "DELETE", &s.url("/api/memory/sessions/nope"), None).await;
    assert_eq!((st, code(&v)), (404, "not_found"), "{v}");
    let (st, v) = call(&a, "DELETE", &s.url("/api/memory/sessions/s1"), None).await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(2)), "{v}");
    let (_, found) = call(
        &a,
        "POST",
        &s.url("/api/memory/search"),
        Some(json!({"text": "starter", "top_k": 10})),
    )
    .await;
    assert_eq!(contents(&found), vec!["A tomato seedlings"], "{found}");
    let (_, found) = call(
        &b,
        "POST",
        &s.url("/api/memory/search"),
        Some(json!({"text": "starter", "top_k": 10})),
    )
    .await;
    assert_eq!(contents(&found).len(), 3, "{found}");
    // A session id with a space, percent-encoded in the path.
    let (st, v) = call(
        &a,
        "DELETE",
        &s.url("/api/memory/sessions/garden%20plot"),
        None,
    )
    .await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(1)), "{v}");

    // Delete everything: refused without confirm=true, naming it.
    let (st, v) = call(&b, "DELETE", &s.url("/api/memory"), None).await;
    assert_eq!((st, code(&v)), (400, "invalid_request"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("confirm=true"),
        "{v}"
    );
    let (st, v) = call(&b, "DELETE", &s.url("/api/memory?confirm=false"), None).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(s.state.memory.len(), 3);
    let (st, v) = call(&b, "DELETE", &s.url("/api/memory?confirm=true"), None).await;
    assert_eq!((st, v["deleted"].as_u64()), (200, Some(3)), "{v}");
    let (_, found) = call(
        &b,
        "POST",
        &s.url("/api/memory/search"),
        Some(json!({"text": "starter", "top_k": 10})),
    )
    .await;
    assert!(contents(&found).is_empty(), "{found}");
    assert_eq!(s.state.memory.len(), 0);
    s.stop().await;
}

/// A sink for the daemon's log lines, to see what an operator's search leaves behind.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Searching across owners takes an explicit parameter and RESTRICTED clearance, and each
/// such search is logged with the operator's key id.
#[tokio::test]
async fn only_a_restricted_operator_searches_across_owners_and_is_logged() {
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = TestServer::start(|c| c.defense.enabled = true).await;
    let a = client_with(&key(&s, ACCOUNT_A, Tier::Pro, Classification::Internal).await);
    let b = client_with(&key(&s, ACCOUNT_B, Tier::Enterprise, Classification::Proprietary).await);
    let (ops_key, _) = common::new_key(
        &s.state,
        "ops",
        Tier::Enterprise,
        Classification::Restricted,
    )
    .await;
    let ops_id = heady_origin::accounts::id_of_hash(&heady_origin::accounts::hash_of(&ops_key));
    let ops = client_with(&ops_key);
    let (id_a, id_b) = (id_of(&s, ACCOUNT_A).await, id_of(&s, ACCOUNT_B).await);
    let vectors = s.url("/api/memory/vectors");
    assert_eq!(
        call(
            &a,
            "POST",
            &vectors,
            Some(json!({"content": "alpha secret plan"}))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &b,
            "POST",
            &vectors,
            Some(json!({"content": "beta secret plan"}))
        )
        .await
        .0,
        200
    );
    let search = s.url("/api/memory/search");

    for (who, body) in [
        (&a, json!({"text": "secret plan", "all_owners": true})),
        (&b, json!({"text": "secret plan", "all_owners": true})),
        (&b, json!({"text": "secret plan", "owner": id_a})),
    ] {
        let (st, v) = call(who, "POST", &search, Some(body)).await;
        assert_eq!((st, code(&v)), (403, "insufficient_clearance"), "{v}");
    }
    let (st, v) = call(
        &ops,
        "POST",
        &search,
        Some(json!({"text": "secret plan", "all_owners": true})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut owners: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["owner"].as_str().unwrap())
        .collect();
    owners.sort();
    let mut want = vec![id_a.as_str(), id_b.as_str()];
    want.sort();
    assert_eq!(owners, want, "{v}");
    let (st, v) = call(
        &ops,
        "POST",
        &search,
        Some(json!({"text": "secret plan", "owner": id_b})),
    )
    .await;
    assert_eq!(
        (st, contents(&v)),
        (200, vec!["beta secret plan".to_string()]),
        "{v}"
    );
    let (st, v) = call(
        &ops,
        "POST",
        &search,
        Some(json!({"text": "x", "owner": "bob"})),
    )
    .await;
    assert_eq!((st, code(&v)), (400, "invalid_request"), "{v}");
    // Without the parameter the operator searches its own account's rows: none.
    let (st, v) = call(&ops, "POST", &search, Some(json!({"text": "secret plan"}))).await;
    assert_eq!((st, contents(&v).len()), (200, 0), "{v}");

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let across: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("operator memory search"))
        .collect();
    assert_eq!(across.len(), 2, "{text}");
    assert!(across.iter().all(|l| l.contains(&ops_id)), "{across:?}");
    assert!(across[1].contains(&id_b), "{across:?}");
    s.stop().await;
}

/// Past the tier's row quota an insert is 403 `quota_exceeded`, names the quota, and stores
/// nothing of its batch; a chat turn is refused the same way.
#[tokio::test]
async fn an_insert_past_the_quota_is_refused_whole() {
    let fake = FakeProvider::start(Behavior::default()).await;
    let p = provider(&fake);
    let s = TestServer::start(move |c: &mut Config| {
        c.providers = vec![p];
        c.memory.max_rows.free = 3;
    })
    .await;
    let free = client_with(&key(&s, ACCOUNT_A, Tier::Free, Classification::Internal).await);
    let vectors = s.url("/api/memory/vectors");
    let (st, v) = call(
        &free,
        "POST",
        &vectors,
        Some(json!({"items": [{"content": "one"}, {"content": "two"}]})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        &free,
        "POST",
        &vectors,
        Some(json!({"items": [{"content": "three"}, {"content": "four"}]})),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "quota_exceeded"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory.max_rows"),
        "{v}"
    );
    assert_eq!(
        s.state.memory.len(),
        2,
        "nothing of the refused batch was stored"
    );
    let (st, _) = call(&free, "POST", &vectors, Some(json!({"content": "three"}))).await;
    assert_eq!(st, 200);
    let (st, v) = call(
        &free,
        "POST",
        &s.url("/api/brain/chat"),
        Some(json!({"message": "hello", "session_id": "s1"})),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "quota_exceeded"), "{v}");
    assert_eq!(s.state.memory.len(), 3);
    // Another account, and the test owner (Enterprise: no limit), are not affected.
    let (st, _) = call(
        &common::owner_client(),
        "POST",
        &vectors,
        Some(json!({"content": "elsewhere"})),
    )
    .await;
    assert_eq!(st, 200);
    s.stop().await;
}
