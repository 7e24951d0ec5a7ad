//! Accounts across origins: two `heady-origin` daemons on one fresh PostgreSQL database and one
//! redis-server. A key made through one origin's admin API works on the other; a revocation or
//! a disabled account made on one is refused on the other within 1 s; expiry, model
//! allowlists, `/api/account`, the admin API's clearance and bad input, the semantic-cache
//! switch (admin API and CLI), and failed-auth limiting shared through Redis. Plus failed-auth
//! limiting in one process by address, the switch with the CLI on DuckDB, and the switch in the
//! identity of a caller.

mod common;

use common::{
    call, client, code, edge_signed, free_port, wait_ready, Daemon, FreshPg, RedisServer,
    TestServer,
};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `url` with `key` until it answers `want`; the time it took.
async fn refused_within(url: &str, key: &str, want: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let (st, _, v) = call("GET", url, Some(key), None).await;
        if st == 401 && code(&v) == want {
            return t.elapsed();
        }
        assert_eq!(st, 200, "{v}");
        assert!(
            t.elapsed() < limit,
            "still accepted after {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `semantic_cache` of the account `id` as the admin API at `base` shows it.
async fn semantic_cache_shown(base: &str, id: &str, ops: &str) -> Value {
    let (st, _, v) = call(
        "GET",
        &format!("{base}/api/admin/accounts/{id}"),
        Some(ops),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["account"]["semantic_cache"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_origins_share_accounts_and_keys_through_postgres_and_redis() {
    let pg = FreshPg::create().await;
    let redis = RedisServer::start();
    let bin = env!("CARGO_BIN_EXE_heady-origin");
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let env = |c: &mut Command| {
        c.env("HEADY_DATABASE_URL", pg.url())
            .env("HEADY_REDIS_URL", redis.url())
            .env("HEADY_MEMORY_DIM", "16")
            // Long enough that only the broadcast can explain a refusal within 1 s.
            .env("HEADY_DEFENSE__KEY_CACHE_SECS", "60")
            .env("HEADY_DEFENSE__MAX_FAILED_AUTH_PER_MINUTE", "40")
            .env("HEADY_LOG", "warn");
    };
    // The operator's key, made with the CLI straight in PostgreSQL (no daemon yet).
    let mut cli = Command::new(bin);
    cli.args([
        "keys",
        "create",
        "--user",
        "ops",
        "--tier",
        "enterprise",
        "--clearance",
        "restricted",
        "--data-dir",
    ])
    .arg(dirs[0].path());
    env(&mut cli);
    let out = cli.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let ops = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut daemons = Vec::new();
    let mut bases = Vec::new();
    for d in &dirs {
        let port = free_port();
        let mut c = Command::new(bin);
        c.args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(d.path())
        .stdout(Stdio::null());
        env(&mut c);
        daemons.push(Daemon(c.spawn().unwrap()));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    let (a, b) = (&bases[0], &bases[1]);

    // An account and a key through A's admin API.
    let (st, _, acct) = call(
        "POST",
        &format!("{a}/api/admin/accounts"),
        Some(&ops),
        Some(json!({"name": "carol", "tier": "pro", "clearance": "internal"})),
    )
    .await;
    assert_eq!(st, 201, "{acct}");
    let id = acct["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("acct_"), "{acct}");
    assert_eq!(acct["status"], "active");
    assert_eq!(acct["semantic_cache"], false, "off by default: {acct}");
    let keys_url = format!("{a}/api/admin/accounts/{id}/keys");
    let (st, _, k1) = call("POST", &keys_url, Some(&ops), Some(json!({"label": "one"}))).await;
    assert_eq!(st, 201, "{k1}");
    let key1 = k1["key"].as_str().unwrap().to_string();

    // ... works on B, which answers for the account.
    let (st, _, v) = call("GET", &format!("{b}/api/account"), Some(&key1), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({"id": id, "name": "carol", "tier": "pro", "clearance": "INTERNAL", "subscription": null, "semantic_cache": false, "discord": null})
    );
    // The account opts in to the semantic cache itself, and only to that.
    let me = format!("{b}/api/account");
    let (st, _, v) = call(
        "PATCH",
        &me,
        Some(&key1),
        Some(json!({"semantic_cache": true})),
    )
    .await;
    assert_eq!((st, &v["semantic_cache"]), (200, &json!(true)), "{v}");
    let (st, _, v) = call(
        "GET",
        &format!("{a}/api/admin/accounts/{id}"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(
        (st, &v["account"]["semantic_cache"]),
        (200, &json!(true)),
        "{v}"
    );
    let (st, _, v) = call(
        "PATCH",
        &me,
        Some(&key1),
        Some(json!({"tier": "enterprise"})),
    )
    .await;
    assert_eq!((st, code(&v)), (400, "invalid_request"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("tier"),
        "{v}"
    );
    let (st, _, v) = call("PATCH", &me, None, Some(json!({"semantic_cache": true}))).await;
    assert_eq!((st, code(&v)), (401, "authentication_required"), "{v}");
    let (st, _, v) = call(
        "PATCH",
        &me,
        Some(&key1),
        Some(json!({"semantic_cache": false})),
    )
    .await;
    assert_eq!((st, &v["semantic_cache"]), (200, &json!(false)), "{v}");
    let (st, _, v) = call("GET", &format!("{b}/api/identity"), Some(&key1), None).await;
    assert_eq!(
        (st, v["subject"].as_str()),
        (200, Some(format!("user:{id}").as_str()))
    );
    let (st, _, v) = call("GET", &format!("{b}/api/account"), None, None).await;
    assert_eq!((st, code(&v)), (401, "authentication_required"), "{v}");

    // Revoked on A: refused on B within 1 s although B cached it for 60.
    let (st, _, v) = call(
        "DELETE",
        &format!("{a}/api/admin/keys/{}", k1["id"].as_str().unwrap()),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["revoked_at"].is_i64(), "{v}");
    let took = refused_within(
        &format!("{b}/api/account"),
        &key1,
        "revoked_api_key",
        Duration::from_secs(1),
    )
    .await;
    eprintln!("revocation reached the other origin in {took:?}");

    // Disabled on A: refused on B within 1 s; enabled again: served again.
    let (_, _, k2) = call("POST", &keys_url, Some(&ops), Some(json!({}))).await;
    let key2 = k2["key"].as_str().unwrap().to_string();
    let (st, _, _) = call("GET", &format!("{b}/api/account"), Some(&key2), None).await;
    assert_eq!(st, 200);
    let acct_url = format!("{a}/api/admin/accounts/{id}");
    let (st, _, v) = call(
        "PATCH",
        &acct_url,
        Some(&ops),
        Some(json!({"status": "disabled"})),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("disabled")), "{v}");
    let took = refused_within(
        &format!("{b}/api/account"),
        &key2,
        "account_disabled",
        Duration::from_secs(1),
    )
    .await;
    eprintln!("disabling reached the other origin in {took:?}");
    let (st, _, v) = call(
        "PATCH",
        &acct_url,
        Some(&ops),
        Some(json!({"status": "active", "tier": "enterprise"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let t = Instant::now();
    loop {
        let (st, _, v) = call("GET", &format!("{b}/api/account"), Some(&key2), None).await;
        if (st, v["tier"].as_str()) == (200, Some("enterprise")) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(1), "{st} {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The semantic-cache switch: on through A's admin API, seen on B; off again with the CLI.
    let (st, _, v) = call(
        "PATCH",
        &acct_url,
        Some(&ops),
        Some(json!({"semantic_cache": true})),
    )
    .await;
    assert_eq!((st, &v["semantic_cache"]), (200, &json!(true)), "{v}");
    assert_eq!(v["tier"], "enterprise", "the rest is kept: {v}");
    assert_eq!(semantic_cache_shown(b, &id, &ops).await, json!(true));
    let run_cli = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args).arg("--data-dir").arg(dirs[0].path());
        env(&mut c);
        c.output().unwrap()
    };
    let out = run_cli(&["accounts", "set-semantic-cache", "carol", "off"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SEMANTIC_CACHE") && text.contains(" off "),
        "{text}"
    );
    assert_eq!(semantic_cache_shown(b, &id, &ops).await, json!(false));
    let out = run_cli(&["accounts", "set-semantic-cache", "carol", "on"]);
    assert!(out.status.success(), "{out:?}");
    let out = run_cli(&["accounts", "show", "carol", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["account_keys"]["account"]["semantic_cache"], true, "{v}");
    assert_eq!(semantic_cache_shown(b, &id, &ops).await, json!(true));

    // Expiry: 401 key_expired once it has passed.
    let (st, _, k3) = call(
        "POST",
        &keys_url,
        Some(&ops),
        Some(json!({"expires": "2s"})),
    )
    .await;
    assert_eq!(st, 201, "{k3}");
    let key3 = k3["key"].as_str().unwrap().to_string();
    let (st, _, _) = call("GET", &format!("{b}/api/account"), Some(&key3), None).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (st, _, v) = call("GET", &format!("{b}/api/account"), Some(&key3), None).await;
    assert_eq!((st, code(&v)), (401, "key_expired"), "{v}");

    // A model allowlist: other models 403; none named: the first allowed one.
    let (st, _, k4) = call(
        "POST",
        &keys_url,
        Some(&ops),
        Some(json!({"models": ["m1", "m2"], "label": "limited"})),
    )
    .await;
    assert_eq!(st, 201, "{k4}");
    assert_eq!(k4["models"], json!(["m1", "m2"]));
    let key4 = k4["key"].as_str().unwrap().to_string();
    let chat = |model: Option<&str>| {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        if let Some(m) = model {
            body["model"] = json!(m);
        }
        body
    };
    for (path, body) in [
        ("/v1/chat/completions", chat(Some("gpt-9"))),
        ("/api/brain/chat", chat(Some("gpt-9"))),
        ("/v1/embeddings", json!({"input": "x", "model": "gpt-9"})),
    ] {
        let (st, _, v) = call("POST", &format!("{b}{path}"), Some(&key4), Some(body)).await;
        assert_eq!((st, code(&v)), (403, "model_not_allowed"), "{path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("m1, m2"),
            "{v}"
        );
    }
    let (st, _, v) = call(
        "POST",
        &format!("{b}/v1/embeddings"),
        Some(&key4),
        Some(json!({"input": "x", "model": "m2"})),
    )
    .await;
    // m2 passes the allowlist; the built-in embedder then says it serves another model.
    assert_eq!((st, code(&v)), (404, "model_not_found"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("lexical"),
        "{v}"
    );
    // Allowed or defaulted models pass the allowlist (no provider is configured here: 503).
    for body in [chat(Some("m2")), chat(None)] {
        let (st, _, v) = call(
            "POST",
            &format!("{b}/v1/chat/completions"),
            Some(&key4),
            Some(body),
        )
        .await;
        assert_ne!(code(&v), "model_not_allowed", "{v}");
        assert_ne!(st, 403, "{v}");
    }

    // The admin API is RESTRICTED: an INTERNAL key gets 403, no key 401.
    let (st, _, v) = call("GET", &format!("{b}/api/admin/accounts"), Some(&key2), None).await;
    assert_eq!((st, code(&v)), (403, "insufficient_clearance"), "{v}");
    let (st, _, v) = call("GET", &format!("{b}/api/admin/accounts"), None, None).await;
    assert_eq!((st, code(&v)), (401, "authentication_required"), "{v}");
    // B sees what A made.
    let (st, _, v) = call("GET", &format!("{b}/api/admin/accounts"), Some(&ops), None).await;
    assert_eq!(st, 200, "{v}");
    let mut names: Vec<&str> = v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["carol", "ops"]);
    let (st, _, v) = call(
        "GET",
        &format!("{b}/api/admin/accounts/{id}"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(
        (st, v["keys"].as_array().map(Vec::len)),
        (200, Some(4)),
        "{v}"
    );
    assert!(
        !v.to_string().contains(&key2),
        "listings never show secrets"
    );
    let (st, _, v) = call(
        "GET",
        &format!("{b}/api/admin/accounts/{id}/keys"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(
        (st, v["keys"].as_array().map(Vec::len)),
        (200, Some(4)),
        "{v}"
    );

    // Bad input: 400 naming the field, unknown ids 404, a taken name 409; nothing stored.
    for (method, path, body, status, mentions) in [
        (
            "POST",
            "/api/admin/accounts".to_string(),
            json!({"name": "a b"}),
            400,
            "name",
        ),
        (
            "POST",
            "/api/admin/accounts".to_string(),
            json!({"name": "x", "tier": "gold"}),
            400,
            "tier",
        ),
        (
            "POST",
            "/api/admin/accounts".to_string(),
            json!({"name": "x", "colour": 1}),
            400,
            "colour",
        ),
        (
            "POST",
            "/api/admin/accounts".to_string(),
            json!({"name": "carol"}),
            409,
            "carol",
        ),
        (
            "PATCH",
            format!("/api/admin/accounts/{id}"),
            json!({"status": "gone"}),
            400,
            "status",
        ),
        (
            "PATCH",
            format!("/api/admin/accounts/{id}"),
            json!({}),
            400,
            "nothing to change",
        ),
        (
            "PATCH",
            format!("/api/admin/accounts/{id}"),
            json!({"semantic_cache": "yes"}),
            400,
            "semantic_cache",
        ),
        (
            "PATCH",
            "/api/admin/accounts/acct_aaaaaaaaaaaaaaaaaaaaaaaa".to_string(),
            json!({"tier": "pro"}),
            404,
            "acct_",
        ),
        (
            "POST",
            format!("/api/admin/accounts/{id}/keys"),
            json!({"expires": "soon"}),
            400,
            "expires",
        ),
        (
            "POST",
            format!("/api/admin/accounts/{id}/keys"),
            json!({"models": []}),
            400,
            "models",
        ),
        (
            "POST",
            "/api/admin/accounts/nope/keys".to_string(),
            json!({}),
            404,
            "nope",
        ),
        (
            "DELETE",
            "/api/admin/keys/zzzz".to_string(),
            Value::Null,
            404,
            "zzzz",
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (st, _, v) = call(method, &format!("{a}{path}"), Some(&ops), body).await;
        assert_eq!(st, status, "{method} {path}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(mentions),
            "{method} {path}: {v}"
        );
    }
    let (_, _, v) = call("GET", &format!("{a}/api/admin/accounts"), Some(&ops), None).await;
    assert_eq!(
        v["accounts"].as_array().unwrap().len(),
        2,
        "nothing stored: {v}"
    );

    // Failed keys from one address are counted in Redis: past the limit on A, B refuses too,
    // before looking the key up; a known good key is still served.
    let mut refused_at = None;
    // (A minute boundary inside the loop restarts the count: 100 tries cover it.)
    for i in 0..100 {
        let bad = format!("hk_{:064x}", i + 1);
        let (st, h, v) = call("GET", &format!("{a}/api/account"), Some(&bad), None).await;
        if st == 429 {
            assert_eq!(code(&v), "too_many_failed_auth", "{v}");
            assert!(h.contains_key("retry-after"));
            refused_at = Some(i);
            break;
        }
        assert_eq!((st, code(&v)), (401, "invalid_api_key"), "{v}");
    }
    assert!(refused_at.is_some(), "never limited");
    let (st, _, v) = call(
        "GET",
        &format!("{b}/api/account"),
        Some(&format!("hk_{}", "f".repeat(64))),
        None,
    )
    .await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_auth"), "{v}");
    let (st, _, v) = call("GET", &format!("{b}/api/account"), Some(&key2), None).await;
    assert_eq!(st, 200, "{v}");
    drop(daemons);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentication_is_limited_per_address_in_process() {
    let s = TestServer::start(|c| {
        c.defense.enabled = true;
        c.defense.max_failed_auth_per_minute = 5;
        c.defense.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let store = &s.state.defense.accounts;
    let (acct, _) = store
        .ensure_account(
            "gil",
            heady_shared::Tier::Pro,
            heady_shared::Classification::Public,
            0,
        )
        .await
        .unwrap();
    let good = store
        .create_key(&acct.id, Default::default(), 0)
        .await
        .unwrap()
        .key;
    let get = |ip: &'static str, key: String| {
        let url = s.url("/api/account");
        async move {
            let r = client()
                .get(url)
                .header("cf-connecting-ip", ip)
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let st = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let v: Value = r.json().await.unwrap();
            (st, retry, v)
        }
    };
    // Five bad keys from one IPv6 /64 (different hosts): 401 each; the sixth: 429.
    let hosts = ["2001:db8:7:7::1", "2001:db8:7:7::2", "2001:db8:7:7:ffff::3"];
    for i in 0..5 {
        let (st, _, v) = get(hosts[i % 3], format!("hk_{:064x}", i)).await;
        assert_eq!((st, code(&v)), (401, "invalid_api_key"), "{v}");
    }
    let (st, retry, v) = get("2001:db8:7:7::9", format!("hk_{:064x}", 99)).await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_auth"), "{v}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Refused before the lookup: even a good key not yet cached from that /64.
    let (st, _, v) = get("2001:db8:7:7::1", good.clone()).await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_auth"), "{v}");
    // Another /64 and another IPv4 address are not affected.
    let (st, _, v) = get("2001:db8:7:8::1", good.clone()).await;
    assert_eq!(st, 200, "{v}");
    let (st, _, v) = get("203.0.113.5", format!("hk_{:064x}", 7)).await;
    assert_eq!((st, code(&v)), (401, "invalid_api_key"), "{v}");
    let m = s.state.metrics.encode();
    assert!(
        m.contains("heady_failed_auth_total{outcome=\"failed\"} 6"),
        "{m}"
    );
    assert!(
        m.contains("heady_failed_auth_total{outcome=\"refused\"} 2"),
        "{m}"
    );
    s.stop().await;
}

#[test]
fn the_cli_switches_the_semantic_cache_on_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_heady-origin"))
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .env("HEADY_LOG", "warn")
            .output()
            .unwrap()
    };
    let show = || {
        let out = run(&["accounts", "show", "dee", "--json"]);
        assert!(out.status.success(), "{out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["account_keys"]["account"]["semantic_cache"].clone()
    };
    let out = run(&["accounts", "create", "--name", "dee"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(show(), json!(false), "off by default");
    let out = run(&["accounts", "set-semantic-cache", "dee", "on"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SEMANTIC_CACHE") && text.contains(" on "),
        "{text}"
    );
    assert_eq!(show(), json!(true));
    let out = run(&["accounts", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" on "),
        "{out:?}"
    );
    // Anything but on or off is a usage error naming the argument; nothing changes.
    let out = run(&["accounts", "set-semantic-cache", "dee", "yes"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("'yes'") && err.contains("on|off"), "{err}");
    assert_eq!(show(), json!(true));
    let out = run(&["accounts", "set-semantic-cache", "dee", "off"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(show(), json!(false));
    let out = run(&["accounts", "set-semantic-cache", "nobody", "on"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// The identity a request is given, as the defense stage builds it.
async fn identity_of(
    s: &TestServer,
    headers: http::HeaderMap,
    body: &[u8],
) -> heady_origin::defense::Identity {
    let uri: http::Uri = "/api/identity".parse().unwrap();
    s.state
        .defense
        .identify(heady_origin::defense::Presented {
            method: &http::Method::POST,
            uri: &uri,
            headers: &headers,
            body,
            peer: "127.0.0.1".parse().unwrap(),
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_semantic_cache_switch_reaches_the_identity_of_the_accounts_callers() {
    const EDGE_KEY: &str = "an edge key for the semantic cache test";
    let s = TestServer::start(|c| {
        c.defense.enabled = true;
        c.defense.edge_key = Some(heady_origin::config::Secret(EDGE_KEY.into()));
        c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac;
    })
    .await;
    let store = &s.state.defense.accounts;
    let (acct, _) = store
        .ensure_account(
            "sem",
            heady_shared::Tier::Pro,
            heady_shared::Classification::Internal,
            0,
        )
        .await
        .unwrap();
    let key = store
        .create_key(&acct.id, Default::default(), 0)
        .await
        .unwrap()
        .key;
    let bearer = || {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        h
    };
    // The edge's word for the account, with or without the caller's key passed on.
    let subject = heady_shared::Subject::account(&acct.id).to_string();
    let nonce = std::sync::atomic::AtomicU32::new(0);
    let vouched = |with_key: bool| {
        let n = nonce.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = edge_signed(
            &s.base,
            "/api/identity",
            b"{}",
            &subject,
            heady_shared::Tier::Pro,
            EDGE_KEY,
            &format!("semantic-cache-{n}"),
        )
        .build()
        .unwrap();
        let mut h = req.headers().clone();
        if with_key {
            h.extend(bearer());
        }
        h
    };

    let who = identity_of(&s, bearer(), b"").await;
    assert_eq!(who.account(), Some(acct.id.clone()));
    assert!(!who.semantic_cache, "off by default");
    let on = heady_origin::accounts::AccountChange {
        semantic_cache: Some(true),
        ..Default::default()
    };
    store.update_account(&acct.id, &on).await.unwrap();
    // At once, although the key's lookup was cached.
    assert!(identity_of(&s, bearer(), b"").await.semantic_cache);
    let through_edge = identity_of(&s, vouched(true), b"{}").await;
    assert!(through_edge.via_edge && through_edge.semantic_cache);
    // Only the edge's word (no key to look the account up by): off.
    let edge_only = identity_of(&s, vouched(false), b"{}").await;
    assert_eq!(edge_only.account(), Some(acct.id.clone()));
    assert!(!edge_only.semantic_cache);
    // Anonymous callers: off.
    assert!(
        !identity_of(&s, http::HeaderMap::new(), b"")
            .await
            .semantic_cache
    );
    let off = heady_origin::accounts::AccountChange {
        semantic_cache: Some(false),
        ..Default::default()
    };
    store.update_account(&acct.id, &off).await.unwrap();
    assert!(!identity_of(&s, bearer(), b"").await.semantic_cache);
    s.stop().await;
}
