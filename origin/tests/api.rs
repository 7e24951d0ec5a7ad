//! The HTTP API end to end against a real in-process daemon (real DuckDB, real HTTP).

mod common;

use common::{client, clustered, owner_client, TestServer};
use serde_json::{json, Value};

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = owner_client().post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(url: &str) -> (u16, Value) {
    let r = owner_client().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn count(s: &TestServer) -> u64 {
    get(&s.url("/api/memory/stats")).await.1["total_vectors"]
        .as_u64()
        .unwrap()
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let s = TestServer::start(|_| {}).await;
    let (st, body) = get(&s.url("/health")).await;
    assert_eq!((st, body["status"].as_str()), (200, Some("ok")));
    let (st, body) = get(&s.url("/ready")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["checks"]["duckdb"], "ok");
    assert_eq!(body["checks"]["redis"], "not configured");
    let text = client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "heady_http_requests_total{route=\"/ready\",method=\"GET\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("heady_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("heady_memory_vectors 0"), "{text}");
    assert!(text.contains("heady_memory_wal_bytes "), "{text}");
    assert!(
        text.contains("heady_process_resident_memory_bytes"),
        "{text}"
    );
    s.stop().await;
}

#[tokio::test]
async fn ready_reports_an_unreachable_redis() {
    let s = TestServer::start(|c| {
        c.redis_url = Some(heady_origin::config::RedisUrl::parse("redis://127.0.0.1:1").unwrap())
    })
    .await;
    let (st, body) = get(&s.url("/ready")).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["checks"]["duckdb"], "ok");
    assert_ne!(body["checks"]["redis"], "ok");
    s.stop().await;
}

#[tokio::test]
async fn ready_follows_a_real_redis_going_down_and_up() {
    let redis = common::RedisServer::start();
    let s = TestServer::start(|c| {
        c.redis_url = Some(heady_origin::config::RedisUrl::parse(&redis.url()).unwrap())
    })
    .await;
    let (st, body) = get(&s.url("/ready")).await;
    assert_eq!(
        (st, body["checks"]["redis"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    let port = redis.port;
    drop(redis);
    let (st, body) = get(&s.url("/ready")).await;
    assert_eq!(st, 503, "{body}");
    let _redis = common::RedisServer::start_on(port);
    let mut ok = false;
    for _ in 0..50 {
        if get(&s.url("/ready")).await.0 == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "ready again once Redis is back");
    s.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_minted() {
    let s = TestServer::start(|_| {}).await;
    let r = client()
        .get(s.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = client()
        .get(s.url("/health"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let minted = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(minted.len(), 16);
    s.stop().await;
}

#[tokio::test]
async fn insert_search_stats_round_trip() {
    // exact_below 0: even this small account is searched through the graph.
    let s = TestServer::start(|c| {
        c.memory.dim = 32;
        c.memory.exact_below = 0;
    })
    .await;
    s.wait_index().await;
    let mut ids = Vec::new();
    for i in 0..20u64 {
        let (st, body) = post(
            &s.url("/api/memory/vectors"),
            json!({"content": format!("turn {i}"), "embedding": clustered(32, i % 4, i), "session_id": format!("s{}", i % 2),
                   "role": if i % 2 == 0 { "user" } else { "assistant" }, "metadata": {"n": i}, "token_count": 3}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    s.wait_index().await;
    // Searching with a stored vector finds that row first, through the HNSW index.
    let (st, body) = post(
        &s.url("/api/memory/search"),
        json!({"embedding": clustered(32, 3, 7), "top_k": 5}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["search"], "hnsw");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["id"], ids[7].as_str());
    assert!((results[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4);
    assert_eq!(results[0]["content"], "turn 7");
    assert_eq!(results[0]["role"], "assistant");
    assert_eq!(results[0]["session_id"], "s1");
    assert_eq!(results[0]["metadata"]["n"], 7);
    assert!(results[0]["ts"].as_i64().unwrap() > 1_700_000_000_000);
    let scores: Vec<f64> = results
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The same query as base64 float32 (OpenAI's encoding_format "base64") finds the same row.
    let b64: String = {
        use base64::Engine as _;
        let bytes: Vec<u8> = clustered(32, 3, 7)
            .iter()
            .flat_map(|x| (*x as f32).to_le_bytes())
            .collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let (st, body) = post(
        &s.url("/api/memory/search"),
        json!({"embedding": b64, "top_k": 1}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["results"][0]["id"], ids[7].as_str());
    // A session filter uses an exact scan restricted to that session.
    let (st, body) = post(
        &s.url("/api/memory/search"),
        json!({"embedding": clustered(32, 3, 7), "top_k": 50, "session_id": "s0"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["search"], "exact");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 10);
    assert!(results.iter().all(|r| r["session_id"] == "s0"));
    let (st, stats) = get(&s.url("/api/memory/stats")).await;
    assert_eq!(st, 200);
    assert_eq!(stats["total_vectors"], 20);
    assert_eq!(stats["sessions"], 2);
    assert!(stats["first_ts"].as_i64().unwrap() <= stats["last_ts"].as_i64().unwrap());
    assert_eq!(stats["index"]["kind"], "hnsw");
    // The index holds every account's rows: its size is for operators only.
    assert!(stats["index"].get("size").is_none(), "{stats}");
    assert_eq!(s.state.memory.index_stats().size, 20);
    assert_eq!(stats["embedder"], "lexical");
    s.stop().await;
}

#[tokio::test]
async fn text_is_embedded_by_the_configured_embedder() {
    let s = TestServer::start(|_| {}).await;
    let (st, body) = post(
        &s.url("/api/memory/vectors"),
        json!({"items": [
            {"content": "how to bake sourdough bread at home"},
            {"content": "kubernetes pod crash loop backoff"},
            {"content": "sourdough starter feeding schedule", "session_id": "bread"}
        ]}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["ids"].as_array().unwrap().len(), 3);
    s.wait_index().await;
    let (st, body) = post(
        &s.url("/api/memory/search"),
        json!({"text": "sourdough bread", "top_k": 2}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let contents: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["content"].as_str().unwrap())
        .collect();
    assert!(
        contents.iter().all(|c| c.contains("sourdough")),
        "{contents:?}"
    );
    let (st, z) = post(
        &s.url("/api/memory/zone"),
        json!({"text": "sourdough bread"}),
    )
    .await;
    assert_eq!(st, 200);
    assert!(z["zone"].as_u64().unwrap() < 8);
    assert!(z["coordinates"]["x"].is_number() && z["coordinates"]["z"].is_number());
    let (_, z2) = post(
        &s.url("/api/memory/zone"),
        json!({"text": "sourdough bread"}),
    )
    .await;
    assert_eq!(z, z2, "zones are deterministic");
    s.stop().await;
}

#[tokio::test]
async fn conductor_groups_and_routes() {
    let s = TestServer::start(|c| {
        c.conductor.groups.push(heady_shared::ServiceGroup {
            name: "translation".into(),
            weight: 0.65,
            actions: vec!["translate".into()],
        })
    })
    .await;
    let (st, body) = get(&s.url("/api/conductor/groups")).await;
    assert_eq!(st, 200);
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 13);
    assert_eq!(groups[0]["name"], "reasoning");
    assert_eq!(groups[0]["weight"], 1.0);
    let (st, body) = post(
        &s.url("/api/conductor/route"),
        json!({"action": "pr_review"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        (body["group"].as_str(), body["weight"].as_f64()),
        (Some("coding"), Some(0.95))
    );
    assert!(body.get("zone").is_none());
    assert_eq!(body["layers"][0]["layer"], "task_router");
    let (st, body) = post(
        &s.url("/api/conductor/route"),
        json!({"action": "translate", "text": "bonjour le monde"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["group"], "translation");
    assert!(body["zone"]["zone"].as_u64().unwrap() < 8);
    assert_eq!(body["layers"][1]["layer"], "vector_zone");
    let (st, body) = post(
        &s.url("/api/conductor/route"),
        json!({"action": "teleport"}),
    )
    .await;
    assert_eq!((st, code(&body)), (400, "unknown_action"));
    assert!(message(&body).contains("teleport"));
    s.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_stored() {
    let s = TestServer::start(|c| {
        c.memory.dim = 8;
        c.max_body_bytes = 4096;
    })
    .await;
    let url = s.url("/api/memory/vectors");
    let good = json!([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    // Malformed JSON.
    let r = owner_client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"content\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), "invalid_json");
    // Wrong dimension, non-finite, all-zero.
    let (st, body) = post(&url, json!({"content": "x", "embedding": [0.1, 0.2]})).await;
    assert_eq!((st, code(&body)), (422, "wrong_dimension"));
    assert!(message(&body).contains("embedding has 2 values"));
    let (st, body) = post(
        &url,
        json!({"content": "x", "embedding": [0.1, 0.2, 0.3, 1e39, 0.5, 0.6, 0.7, 0.8]}),
    )
    .await;
    assert_eq!((st, code(&body)), (422, "invalid_embedding"));
    assert!(message(&body).contains("embedding[3]"), "{body}");
    let (st, body) = post(
        &url,
        json!({"content": "x", "embedding": [0, 0, 0, 0, 0, 0, 0, 0]}),
    )
    .await;
    assert_eq!((st, code(&body)), (422, "invalid_embedding"));
    // Empty content, wrong types, unknown fields, bad role, bad metadata.
    let (st, body) = post(&url, json!({"content": "   ", "embedding": good})).await;
    assert_eq!(st, 400);
    assert!(message(&body).contains("content"), "{body}");
    let (st, body) = post(&url, json!({"content": 5})).await;
    assert_eq!(st, 400);
    assert!(message(&body).contains("string"), "{body}");
    // An embedding of the wrong type names the element; a string must be base64 float32.
    let (st, body) = post(
        &url,
        json!({"content": "x", "embedding": [0.1, 0.2, "0.3", 0.4, 0.5, 0.6, 0.7, 0.8]}),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(message(&body).contains("embedding element 2"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "embedding": {"a": 1}})).await;
    assert_eq!(st, 400, "{body}");
    assert!(message(&body).contains("array of numbers"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "embedding": "nope"})).await;
    assert_eq!((st, code(&body)), (422, "invalid_embedding"), "{body}");
    assert!(message(&body).contains("float32"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "embedding": "not base64!"})).await;
    assert_eq!((st, code(&body)), (422, "invalid_embedding"), "{body}");
    assert!(message(&body).contains("base64"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "colour": "red"})).await;
    assert_eq!(st, 400);
    assert!(message(&body).contains("colour"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "role": "admin"})).await;
    assert_eq!(st, 400);
    assert!(message(&body).contains("role"), "{body}");
    let (st, body) = post(&url, json!({"content": "x", "metadata": [1, 2]})).await;
    assert_eq!(st, 400);
    assert!(message(&body).contains("metadata"), "{body}");
    // A batch with one bad item stores none of them.
    let (st, body) = post(&url, json!({"items": [{"content": "ok", "embedding": good}, {"content": "bad", "embedding": [1.0]}]})).await;
    assert_eq!(st, 422);
    assert!(message(&body).contains("items[1].embedding"), "{body}");
    let (st, _) = post(&url, json!({"items": []})).await;
    assert_eq!(st, 400);
    // Oversized body: 413 whether or not Content-Length announces it.
    let big = "a".repeat(5000);
    let (st, body) = post(&url, json!({"content": big})).await;
    assert_eq!((st, code(&body)), (413, "body_too_large"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b' '; 1000])).collect();
    let r = owner_client()
        .post(&url)
        .body(reqwest::Body::wrap_stream(futures_util_stream(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Content type, method, path.
    let r = owner_client()
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert!(message(&body).contains("POST"));
    let (st, body) = get(&s.url("/nope")).await;
    assert_eq!((st, code(&body)), (404, "not_found"));
    // Search input.
    let surl = s.url("/api/memory/search");
    let (st, _) = post(&surl, json!({"embedding": good, "top_k": 0})).await;
    assert_eq!(st, 400);
    let (st, _) = post(&surl, json!({"embedding": good, "top_k": 100000})).await;
    assert_eq!(st, 400);
    let (st, _) = post(&surl, json!({"embedding": good, "text": "both"})).await;
    assert_eq!(st, 400);
    let (st, _) = post(&surl, json!({})).await;
    assert_eq!(st, 400);
    let (st, _) = post(&surl, json!({"embedding": [1.0, 2.0]})).await;
    assert_eq!(st, 422);
    assert_eq!(count(&s).await, 0, "nothing was stored");
    // And the daemon still works.
    let (st, _) = post(&url, json!({"content": "fine", "embedding": good})).await;
    assert_eq!(st, 200);
    assert_eq!(count(&s).await, 1);
    s.stop().await;
}

fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_and_searches() {
    let s = TestServer::start(|c| c.memory.dim = 16).await;
    s.wait_index().await;
    let url = s.url("/api/memory/vectors");
    let surl = s.url("/api/memory/search");
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40u64 {
                let (st, body) = post(
                    &url,
                    json!({"content": format!("w{w} i{i}"), "embedding": clustered(16, w, i)}),
                )
                .await;
                assert_eq!(st, 200, "{body}");
                ids.push(body["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut searches = Vec::new();
    for w in 0..4u64 {
        let surl = surl.clone();
        searches.push(tokio::spawn(async move {
            for i in 0..40u64 {
                let (st, body) = post(
                    &surl,
                    json!({"embedding": clustered(16, w, i + 1000), "top_k": 5}),
                )
                .await;
                assert_eq!(st, 200, "{body}");
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    for t in searches {
        t.await.unwrap();
    }
    assert_eq!(count(&s).await, 320);
    // Every acknowledged row is findable by its own vector.
    let (st, body) = post(
        &surl,
        json!({"embedding": clustered(16, 5, 39), "top_k": 1}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["results"][0]["content"], "w5 i39");
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), 320);
    s.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_rows_and_reloads_the_persisted_index() {
    let s = TestServer::start(|c| c.memory.dim = 16).await;
    s.wait_index().await;
    let items: Vec<Value> = (0..300u64)
        .map(|i| json!({"content": format!("r{i}"), "embedding": clustered(16, i % 5, i)}))
        .collect();
    let (st, _) = post(&s.url("/api/memory/vectors"), json!({ "items": items })).await;
    assert_eq!(st, 200);
    s.wait_index().await;
    let dir = s.stop().await;
    assert!(
        dir.path().join("hnsw.usearch").exists(),
        "index persisted on shutdown"
    );
    let s = TestServer::start_in(dir, |c| c.memory.dim = 16).await;
    s.wait_index().await;
    let (_, stats) = get(&s.url("/api/memory/stats")).await;
    assert_eq!(stats["total_vectors"], 300);
    assert_eq!(s.state.memory.index_stats().size, 300);
    let (_, body) = post(
        &s.url("/api/memory/search"),
        json!({"embedding": clustered(16, 2, 42), "top_k": 1}),
    )
    .await;
    assert_eq!(body["results"][0]["content"], "r42");
    let dir = s.stop().await;
    // Reopening with another dimension is refused with a message naming the key.
    let mut cfg = heady_origin::config::Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    cfg.memory.dim = 32;
    let err = heady_origin::app::App::open(cfg).err().unwrap().to_string();
    assert!(err.contains("memory.dim"), "{err}");
}

/// Stats and metrics are read while the indexer adds thousands of rows (this once crashed:
/// usearch's memory measure is not safe beside a concurrent add).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_metrics_while_the_indexer_runs() {
    let s = TestServer::start(|c| c.memory.dim = 32).await;
    s.wait_index().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (stats, metrics, stop) = (s.url("/api/memory/stats"), s.url("/metrics"), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(
                    owner_client().get(&stats).send().await.unwrap().status(),
                    200
                );
                assert_eq!(client().get(&metrics).send().await.unwrap().status(), 200);
                n += 1;
            }
            n
        })
    };
    for b in 0..40u64 {
        let items: Vec<Value> = (0..200u64).map(|i| json!({"content": format!("b{b} i{i}"), "embedding": clustered(32, i % 7, b * 1000 + i)})).collect();
        let (st, body) = post(&s.url("/api/memory/vectors"), json!({ "items": items })).await;
        assert_eq!(st, 200, "{body}");
    }
    s.wait_index().await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(poller.await.unwrap() > 0);
    let (_, stats) = get(&s.url("/api/memory/stats")).await;
    assert_eq!(stats["index"]["state"], "ready");
    let index = s.state.memory.index_stats();
    assert_eq!(index.size, 8000);
    assert!(index.memory_bytes > 0);
    s.stop().await;
}
