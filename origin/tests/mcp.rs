//! The MCP server at `/mcp` on a real daemon: the Streamable HTTP wire (initialize and its
//! session header, notifications, unknown and foreign sessions, anonymous callers, malformed
//! bodies, GET and DELETE), each tool against real memory and a fake provider, tool errors
//! as results, the account boundary, the defense's limiter and tier gate, the metrics, and the
//! official Python SDK (PyPI `mcp`, installed by deploy/setup.sh) driving it unmodified.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{new_key, TestServer};
use heady_origin::providers::config::ProviderConfig;
use heady_shared::{Classification, Tier};
use serde_json::{json, Value};
use std::time::Duration;

const REPLY: &str = "Hello from the fake provider.";

fn provider(base_url: &str) -> ProviderConfig {
    ProviderConfig {
        api_key: None,
        ..common::openai_provider("fake", base_url)
    }
}

/// A daemon whose one provider is a fake answering `REPLY`.
async fn daemon(defense: bool) -> (TestServer, FakeProvider) {
    let fake = FakeProvider::start(Behavior {
        reply: Some(REPLY.into()),
        ..Behavior::default()
    })
    .await;
    let base_url = fake.base_url.clone();
    let s = TestServer::start(move |c| {
        c.defense.enabled = defense;
        c.providers = vec![provider(&base_url)];
    })
    .await;
    (s, fake)
}

use common::Answer;

/// One POST to /mcp with the headers an MCP client sends.
async fn post(
    s: &TestServer,
    key: Option<&str>,
    session: Option<&str>,
    body: impl Into<String>,
) -> Answer {
    send(s, "POST", key, session, body, "application/json").await
}

async fn send(
    s: &TestServer,
    method: &str,
    key: Option<&str>,
    session: Option<&str>,
    body: impl Into<String>,
    content_type: &str,
) -> Answer {
    let mut req = common::client()
        .request(method.parse().unwrap(), s.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("content-type", content_type)
        .body(Into::<String>::into(body));
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(id) = session {
        req = req
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", "2025-11-25");
    }
    Answer::of(req).await
}

fn initialize_body(version: &str) -> String {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "heady-test", "version": "1"}}})
    .to_string()
}

/// Initializes and sends `notifications/initialized`: the session id.
async fn open(s: &TestServer, key: &str) -> String {
    let a = post(s, Some(key), None, &initialize_body("2025-11-25")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let id = a.headers["mcp-session-id"].to_str().unwrap().to_string();
    let n = post(
        s,
        Some(key),
        Some(&id),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(n.status, 202, "{}", n.text);
    id
}

/// A `tools/call`'s result (the JSON-RPC envelope checked).
async fn call_tool(s: &TestServer, key: &str, session: &str, tool: &str, args: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": "c1", "method": "tools/call",
                      "params": {"name": tool, "arguments": args}});
    let a = post(s, Some(key), Some(session), &body.to_string()).await;
    assert_eq!(a.status, 200, "{tool}: {}", a.text);
    assert_eq!(a.body["jsonrpc"], "2.0");
    assert_eq!(a.body["id"], "c1");
    assert!(a.body.get("result").is_some(), "{tool}: {}", a.text);
    a.body["result"].clone()
}

fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or("")
}

#[tokio::test]
async fn initialize_opens_a_session_and_each_tool_answers() {
    let (s, fake) = daemon(false).await;
    let (key, _) = new_key(&s.state, "alice", Tier::Pro, Classification::Internal).await;

    let a = post(&s, Some(&key), None, &initialize_body("2025-06-18")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let session = a.headers["mcp-session-id"].to_str().unwrap().to_string();
    assert_eq!(session.len(), 32);
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a.body["id"], 0);
    let r = &a.body["result"];
    assert_eq!(r["protocolVersion"], "2025-06-18");
    assert_eq!(r["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(r["serverInfo"]["name"], "heady-origin");
    // A revision we do not speak is answered with our newest, and a new session each time.
    let b = post(&s, Some(&key), None, &initialize_body("2099-01-01")).await;
    assert_eq!(b.body["result"]["protocolVersion"], "2025-11-25");
    assert_ne!(b.headers["mcp-session-id"], a.headers["mcp-session-id"]);

    let n = post(
        &s,
        Some(&key),
        Some(&session),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!((n.status, n.text.as_str()), (202, ""));

    let p = post(
        &s,
        Some(&key),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
    )
    .await;
    assert_eq!(
        (p.status, &p.body["id"], &p.body["result"]),
        (200, &json!(9), &json!({}))
    );

    let l = post(
        &s,
        Some(&key),
        Some(&session),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    )
    .await;
    let tools = l.body["result"]["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "memory_search",
            "memory_store",
            "memory_sessions",
            "conductor_route",
            "chat"
        ]
    );
    for t in tools {
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
        assert!(t["description"].as_str().unwrap().len() > 20, "{t}");
    }
    let search = &tools[0]["inputSchema"]["properties"];
    assert_eq!(search["top_k"]["maximum"], s.state.config.memory.max_top_k);
    assert_eq!(search["embedding"]["minItems"], s.state.memory.dim());

    let stored = call_tool(
        &s,
        &key,
        &session,
        "memory_store",
        json!({"content": "the cat sat on the mat", "session_id": "s1", "metadata": {"from": "mcp"}}),
    )
    .await;
    assert_eq!(stored["isError"], false, "{stored}");
    let row_id = stored["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_index().await;

    let found = call_tool(
        &s,
        &key,
        &session,
        "memory_search",
        json!({"text": "the cat sat on the mat", "top_k": 3, "session_id": "s1"}),
    )
    .await;
    assert_eq!(found["isError"], false, "{found}");
    let results = found["structuredContent"]["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{found}");
    assert_eq!(results[0]["id"], row_id);
    assert_eq!(results[0]["content"], "the cat sat on the mat");
    assert!(text_of(&found).contains("the cat sat on the mat"));

    // By embedding: the stored row's own vector finds it first.
    let v = common::clustered(s.state.memory.dim(), 1, 1);
    let by_vector = call_tool(
        &s,
        &key,
        &session,
        "memory_search",
        json!({"embedding": v, "top_k": 2}),
    )
    .await;
    assert_eq!(by_vector["isError"], false, "{by_vector}");
    assert!(by_vector["structuredContent"]["results"].is_array());

    let sessions = call_tool(&s, &key, &session, "memory_sessions", json!({})).await;
    assert_eq!(sessions["isError"], false, "{sessions}");
    let list = sessions["structuredContent"]["sessions"]
        .as_array()
        .unwrap();
    assert_eq!(list.len(), 1, "{sessions}");
    assert_eq!(list[0]["session_id"], "s1");

    let routed = call_tool(
        &s,
        &key,
        &session,
        "conductor_route",
        json!({"action": "code"}),
    )
    .await;
    assert_eq!(routed["isError"], false, "{routed}");
    assert_eq!(routed["structuredContent"]["group"], "coding", "{routed}");

    let chat = call_tool(
        &s,
        &key,
        &session,
        "chat",
        json!({"message": "Say hello", "session_id": "s2"}),
    )
    .await;
    assert_eq!(chat["isError"], false, "{chat}");
    assert_eq!(text_of(&chat), REPLY);
    assert_eq!(chat["structuredContent"]["object"], "chat.completion");
    assert!(fake.hits() >= 1);
    assert_ne!(fake.last()["stream"], true, "the tool asks for one answer");
    s.stop().await;
}

#[tokio::test]
async fn bad_arguments_are_tool_errors_and_protocol_mistakes_are_json_rpc_errors() {
    let (s, _fake) = daemon(false).await;
    let (key, _) = new_key(&s.state, "bob", Tier::Pro, Classification::Internal).await;
    let session = open(&s, &key).await;

    let cases = [
        (
            "memory_search",
            json!({"text": "x", "top_k": "ten"}),
            "top_k",
        ),
        (
            "memory_search",
            json!({"text": "x", "top_k": 0}),
            "top_k must be between 1 and",
        ),
        ("memory_search", json!({}), "give embedding or text"),
        (
            "memory_search",
            json!({"text": "x", "all_owners": true}),
            "unknown field `all_owners`",
        ),
        (
            "memory_search",
            json!({"embedding": [1.0, 2.0]}),
            "2 values",
        ),
        (
            "memory_store",
            json!({"session_id": "s"}),
            "missing field `content`",
        ),
        (
            "memory_store",
            json!({"content": "x", "role": "wizard"}),
            "role must be one of",
        ),
        (
            "memory_sessions",
            json!({"all": true}),
            "unknown field `all`",
        ),
        (
            "conductor_route",
            json!({"action": "no_such_action"}),
            "unknown_action",
        ),
        ("chat", json!({"messages": []}), "unknown field `messages`"),
        ("chat", json!("hello"), "must be a JSON object"),
    ];
    for (tool, args, says) in cases {
        let r = call_tool(&s, &key, &session, tool, args.clone()).await;
        assert_eq!(r["isError"], true, "{tool} {args}: {r}");
        assert!(text_of(&r).contains(says), "{tool} {args}: {r}");
        assert!(r["structuredContent"]["error"]["code"].is_string(), "{r}");
    }

    let rpc = |body: Value| post(&s, Some(&key), Some(&session), body.to_string());
    let unknown_tool = rpc(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                  "params": {"name": "rm_rf", "arguments": {}}}))
    .await;
    assert_eq!(unknown_tool.status, 200);
    assert_eq!(
        unknown_tool.body["error"]["code"], -32602,
        "{}",
        unknown_tool.text
    );
    assert!(unknown_tool.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unknown tool: rm_rf"));
    let no_params = rpc(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"})).await;
    assert_eq!(no_params.body["error"]["code"], -32602);
    let unknown = rpc(json!({"jsonrpc": "2.0", "id": "u", "method": "resources/list"})).await;
    assert_eq!((unknown.status, &unknown.body["id"]), (200, &json!("u")));
    assert_eq!(unknown.body["error"]["code"], -32601);
    // A client's answer to a request of ours (we send none) is accepted and dropped.
    let response = rpc(json!({"jsonrpc": "2.0", "id": 5, "result": {}})).await;
    assert_eq!(response.status, 202);
    s.stop().await;
}

#[tokio::test]
async fn the_transport_refuses_what_is_not_an_authenticated_mcp_message() {
    let (s, _fake) = daemon(false).await;
    let (key, _) = new_key(&s.state, "carol", Tier::Pro, Classification::Internal).await;

    // Anonymous: 401 with a challenge even with the defense off.
    let a = post(&s, None, None, &initialize_body("2025-11-25")).await;
    assert_eq!(a.status, 401, "{}", a.text);
    assert!(a.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(a.body["error"]["code"], "authentication_required");
    let d = send(&s, "DELETE", None, Some("x"), "", "application/json").await;
    assert_eq!(d.status, 401);
    // A key that is not known: 401 too.
    let bad = post(&s, Some(&format!("hk_{}", "0".repeat(64))), None, "{}").await;
    assert_eq!(bad.status, 401);
    assert!(bad.headers.contains_key("www-authenticate"));

    let parse = post(&s, Some(&key), None, "{not json").await;
    assert_eq!(parse.status, 400);
    assert_eq!(parse.body["error"]["code"], -32700, "{}", parse.text);
    assert_eq!(parse.body["id"], Value::Null);
    assert_eq!(parse.body["jsonrpc"], "2.0");
    let batch = post(&s, Some(&key), None, "[]").await;
    assert_eq!(
        (batch.status, &batch.body["error"]["code"]),
        (400, &json!(-32600))
    );
    let not_rpc = post(&s, Some(&key), None, r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(
        (not_rpc.status, &not_rpc.body["error"]["code"]),
        (400, &json!(-32600))
    );
    let form = send(
        &s,
        "POST",
        Some(&key),
        None,
        "a=b",
        "application/x-www-form-urlencoded",
    )
    .await;
    assert_eq!(form.status, 415, "{}", form.text);

    let session = open(&s, &key).await;
    let ping = r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#;
    // No session header: 400; an unknown session: 404, both as JSON-RPC errors with the id.
    let none = post(&s, Some(&key), None, ping).await;
    assert_eq!(
        (none.status, &none.body["id"]),
        (400, &json!(3)),
        "{}",
        none.text
    );
    assert!(none.body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Mcp-Session-Id"));
    let unknown = post(&s, Some(&key), Some(&"f".repeat(32)), ping).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(unknown.body["id"], 3);
    // A revision we do not speak in the header: 400.
    let old = common::client()
        .post(s.url("/mcp"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2024-11-05")
        .body(ping)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 400);

    // No server-to-client stream: GET is 405, naming what is allowed.
    let get = common::client()
        .get(s.url("/mcp"))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    let allow = get.headers()["allow"].to_str().unwrap().to_string();
    assert!(
        allow.contains("POST") && allow.contains("DELETE"),
        "{allow}"
    );

    // DELETE ends the session; it is then unknown.
    let del = send(
        &s,
        "DELETE",
        Some(&key),
        Some(&session),
        "",
        "application/json",
    )
    .await;
    assert_eq!(del.status, 204, "{}", del.text);
    let again = send(
        &s,
        "DELETE",
        Some(&key),
        Some(&session),
        "",
        "application/json",
    )
    .await;
    assert_eq!(again.status, 404);
    let after = post(&s, Some(&key), Some(&session), ping).await;
    assert_eq!(after.status, 404);
    s.stop().await;
}

#[tokio::test]
async fn accounts_see_only_their_own_sessions_and_memory() {
    let (s, _fake) = daemon(false).await;
    let (alice, _) = new_key(&s.state, "alice", Tier::Pro, Classification::Internal).await;
    let (bob, _) = new_key(&s.state, "bob", Tier::Pro, Classification::Internal).await;
    let a = open(&s, &alice).await;
    let b = open(&s, &bob).await;

    let stored = call_tool(
        &s,
        &alice,
        &a,
        "memory_store",
        json!({"content": "alice's secret recipe for plum cake", "session_id": "recipes"}),
    )
    .await;
    assert_eq!(stored["isError"], false, "{stored}");
    s.wait_index().await;
    let query = json!({"text": "alice's secret recipe for plum cake", "top_k": 10});
    let hers = call_tool(&s, &alice, &a, "memory_search", query.clone()).await;
    assert_eq!(
        hers["structuredContent"]["results"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{hers}"
    );
    let his = call_tool(&s, &bob, &b, "memory_search", query).await;
    assert_eq!(his["isError"], false, "{his}");
    assert_eq!(his["structuredContent"]["results"], json!([]), "{his}");
    assert!(!text_of(&his).contains("plum"));
    let his_sessions = call_tool(&s, &bob, &b, "memory_sessions", json!({})).await;
    assert_eq!(his_sessions["structuredContent"]["sessions"], json!([]));

    // Bob cannot use or end Alice's session: it is unknown to him.
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(post(&s, Some(&bob), Some(&a), ping).await.status, 404);
    let del = send(&s, "DELETE", Some(&bob), Some(&a), "", "application/json").await;
    assert_eq!(del.status, 404);
    assert_eq!(post(&s, Some(&alice), Some(&a), ping).await.status, 200);
    s.stop().await;
}

#[tokio::test]
async fn with_the_defense_on_mcp_is_limited_gated_by_tier_and_counted() {
    let (s, _fake) = daemon(true).await;
    let (free, _) = new_key(&s.state, "fran", Tier::Free, Classification::Internal).await;

    let anon = post(&s, None, None, &initialize_body("2025-11-25")).await;
    assert_eq!(anon.status, 401);
    assert!(anon.headers.contains_key("www-authenticate"));

    let a = post(&s, Some(&free), None, &initialize_body("2025-11-25")).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.headers["ratelimit-policy"], "\"free\";q=30;w=60");
    let session = a.headers["mcp-session-id"].to_str().unwrap().to_string();

    // Storing is a Pro tool (as at POST /api/memory/vectors); searching is Free's.
    let store = call_tool(&s, &free, &session, "memory_store", json!({"content": "x"})).await;
    assert_eq!(store["isError"], true, "{store}");
    assert_eq!(
        store["structuredContent"]["error"]["code"],
        "upgrade_required"
    );
    let search = call_tool(&s, &free, &session, "memory_search", json!({"text": "x"})).await;
    assert_eq!(search["isError"], false, "{search}");

    // The request limiter counts /mcp like /api: Free has 30 a minute (3 used above).
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let mut statuses = Vec::new();
    for _ in 0..28 {
        statuses.push(post(&s, Some(&free), Some(&session), ping).await.status);
    }
    assert!(statuses[..27].iter().all(|&st| st == 200), "{statuses:?}");
    assert_eq!(statuses[27], 429, "{statuses:?}");

    let metrics = common::metrics_text(&s).await;
    for line in [
        r#"heady_mcp_messages_total{method="initialize",tool="",outcome="ok"} 1"#,
        r#"heady_mcp_messages_total{method="tools/call",tool="memory_store",outcome="tool_error"} 1"#,
        r#"heady_mcp_messages_total{method="tools/call",tool="memory_search",outcome="ok"} 1"#,
        r#"heady_mcp_messages_total{method="ping",tool="",outcome="ok"} 27"#,
        "heady_mcp_sessions 1",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_official_python_mcp_client_works_unmodified() {
    let py = common::python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (it creates the venv with the mcp package)",
        py.display()
    );
    let (s, fake) = daemon(true).await;
    let (key, _) = new_key(&s.state, "py-user", Tier::Pro, Classification::Internal).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/mcp_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&py)
            .arg(script)
            .arg(s.url("/mcp"))
            .arg(&key)
            .output(),
    )
    .await
    .expect("the python client finished within 120 s")
    .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(v["initialize"]["protocol_version"], "2025-11-25", "{v}");
    assert_eq!(v["initialize"]["server"], "heady-origin");
    assert_eq!(v["initialize"]["tools_capability"], true);
    let tools = v["tools"].as_object().unwrap();
    assert_eq!(tools.len(), 5, "{v}");
    assert_eq!(tools["chat"]["required"], json!(["message"]));
    assert_eq!(v["memory_store"]["is_error"], false, "{v}");
    assert!(v["memory_store"]["structured"]["id"].is_string(), "{v}");
    assert_eq!(v["memory_search"]["is_error"], false, "{v}");
    assert_eq!(
        v["memory_search"]["structured"]["results"][0]["content"],
        "the python client stored this row",
        "{v}"
    );
    assert_eq!(
        v["memory_sessions"]["structured"]["sessions"][0]["session_id"], "py-1",
        "{v}"
    );
    assert_eq!(v["conductor_route"]["structured"]["group"], "coding", "{v}");
    assert_eq!(v["chat"]["is_error"], false, "{v}");
    assert_eq!(v["chat"]["text"], REPLY, "{v}");
    assert!(fake.hits() >= 1);
    assert_eq!(v["bad_arguments"]["is_error"], true, "{v}");
    assert!(
        v["bad_arguments"]["text"]
            .as_str()
            .unwrap()
            .contains("top_k"),
        "{v}"
    );
    assert!(
        v["unknown_tool"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Unknown tool"),
        "{v}"
    );
    assert_eq!(v["anonymous"]["status"], 401, "{v}");
    assert!(
        v["anonymous"]["www_authenticate"]
            .as_str()
            .unwrap_or("")
            .starts_with("Bearer"),
        "{v}"
    );
    assert!(v["bad_key"]["type"].is_string(), "{v}");
    s.stop().await;
}
