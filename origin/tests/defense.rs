//! The defense stage against real HTTP, real DuckDB and real redis-server processes:
//! keys, classification, tier gating, exact limits (in one process and across several),
//! bans and the operator CLI, client addresses, and Redis going away and coming back.

mod common;

use common::{client, FreshPg, RedisServer, TestServer};
use heady_origin::defense::limiter::RateLimiter;
use heady_shared::limiter::{BanPolicy, LimitOutcome};
use heady_shared::sliding_log::{LogPolicy, LogState};
use heady_shared::{Classification, Tier, TierLimits};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn defended(tweak: impl FnOnce(&mut heady_origin::config::Config)) -> TestServer {
    TestServer::start(|c| {
        c.defense.enabled = true;
        tweak(c)
    })
    .await
}

fn redis_url_of(url: &str) -> heady_origin::config::RedisUrl {
    heady_origin::config::RedisUrl::parse(url).unwrap()
}

/// A key for the account named `user` (created with `tier` and `clearance`).
async fn key(s: &TestServer, user: &str, tier: Tier, clearance: Classification) -> String {
    let store = &s.state.defense.accounts;
    let (a, _) = store
        .ensure_account(user, tier, clearance, 0)
        .await
        .unwrap();
    store
        .create_key(&a.id, Default::default(), 0)
        .await
        .unwrap()
        .key
}

async fn call(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client().request(method.parse().unwrap(), url);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn walking_every_route_without_credentials_only_public_ones_answer() {
    // Each route from its own client address (through a trusted proxy), so the walk is not cut
    // short by the Free tier's request limit once there are more routes than it allows.
    let s = defended(|c| c.defense.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    let routes = heady_origin::http::routes::route_list();
    assert!(routes.len() >= 10);
    for (i, (method, path, policy)) in routes.into_iter().enumerate() {
        let mut req = client()
            .request(method.clone(), s.url(path))
            .header("cf-connecting-ip", format!("198.51.100.{}", i % 250 + 1));
        if method == http::Method::POST {
            req = req.json(&json!({}));
        }
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if heady_shared::api_paths::is_edge_only(path) {
            // Public to the edge alone: anyone else is told to come through it.
            assert_eq!((st, code(&v)), (401, "edge_required"), "{path}: {v}");
            continue;
        }
        if policy.class == Classification::Public && !policy.keyed {
            assert!(
                st != 401 && st != 403,
                "{method} {path} is PUBLIC but answered {st} {v}"
            );
        } else {
            assert_eq!(
                st, 401,
                "{method} {path} is {} but answered {v}",
                policy.class
            );
            assert_eq!(code(&v), "authentication_required", "{path}");
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn keys_clearance_and_tier_gating() {
    let s = defended(|_| {}).await;
    let free = key(&s, "fran", Tier::Free, Classification::Internal).await;
    let pro = key(&s, "pat", Tier::Pro, Classification::Internal).await;
    let pro_public = key(&s, "pia", Tier::Pro, Classification::Public).await;
    let insert = json!({"content": "hello there", "session_id": "s1"});
    let search = json!({"text": "hello", "top_k": 3});

    let (st, _, v) = call("GET", &s.url("/api/identity"), Some(&pro), None).await;
    assert_eq!(st, 200, "{v}");
    let pat = s
        .state
        .defense
        .accounts
        .account_by_name("pat")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v["subject"], format!("user:{}", pat.id));
    assert_eq!(v["tier"], "pro");
    assert_eq!(v["clearance"], "internal");

    // Free may search (a Free feature) but storing is a Pro tool.
    let (st, _, v) = call(
        "POST",
        &s.url("/api/memory/search"),
        Some(&free),
        Some(search.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _, v) = call(
        "POST",
        &s.url("/api/memory/vectors"),
        Some(&free),
        Some(insert.clone()),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "upgrade_required"), "{v}");
    let (st, _, v) = call(
        "POST",
        &s.url("/api/memory/vectors"),
        Some(&pro),
        Some(insert.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    // Pro tier, PUBLIC clearance: INTERNAL routes are out of reach.
    let (st, _, v) = call("GET", &s.url("/api/memory/stats"), Some(&pro_public), None).await;
    assert_eq!((st, code(&v)), (403, "insufficient_clearance"), "{v}");
    assert_eq!(s.state.memory.len(), 1, "only the Pro insert was stored");

    // Malformed, unknown, wrong scheme, revoked: 401 naming the problem.
    for (auth, want) in [
        ("Bearer hk_nothex".to_string(), "invalid_api_key"),
        (format!("Bearer hk_{}", "0".repeat(64)), "invalid_api_key"),
        ("Basic dXNlcjpwYXNz".to_string(), "invalid_authorization"),
    ] {
        let r = client()
            .get(s.url("/api/identity"))
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        assert!(r.headers().contains_key("www-authenticate"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(code(&v), want, "{auth}: {v}");
    }
    let id = s.state.defense.accounts.keys(Some(&pat.id)).await.unwrap()[0]
        .id
        .clone();
    s.state.defense.accounts.revoke_key(&id, 1).await.unwrap();
    let (st, _, v) = call("GET", &s.url("/api/identity"), Some(&pro), None).await;
    assert_eq!((st, code(&v)), (401, "revoked_api_key"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_free_subject_is_limited_after_30_with_ratelimit_headers() {
    let s = defended(|_| {}).await;
    let url = s.url("/api/conductor/route");
    let mut ok = 0;
    for i in 0..30 {
        let (st, h, v) = call("POST", &url, None, Some(json!({"action": "chat"}))).await;
        assert_eq!(st, 200, "request {i}: {v}");
        assert_eq!(h["ratelimit-policy"], "\"free\";q=30;w=60");
        assert_eq!(
            h["ratelimit"].to_str().unwrap().split(';').nth(1).unwrap(),
            format!("r={}", 29 - i)
        );
        ok += 1;
    }
    assert_eq!(ok, 30);
    let (st, h, v) = call("POST", &url, None, Some(json!({"action": "chat"}))).await;
    assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((55..=60).contains(&retry), "{retry}");
    assert_eq!(v["error"]["retry_after"], retry);
    assert!(h["ratelimit"].to_str().unwrap().contains("r=0"));
    // Outside /api and /v1 nothing is limited.
    let (st, _, _) = call("GET", &s.url("/health"), None, None).await;
    assert_eq!(st, 200);
    // A key is its own subject.
    let k = key(&s, "erin", Tier::Enterprise, Classification::Public).await;
    let (st, h, _) = call("POST", &url, Some(&k), Some(json!({"action": "chat"}))).await;
    assert_eq!(st, 200);
    assert!(
        !h.contains_key("ratelimit"),
        "Enterprise is metered, not limited"
    );
    let metrics = s.state.metrics.encode();
    assert!(
        metrics.contains("heady_defense_decisions_total{outcome=\"limited\",tier=\"free\"} 1"),
        "{metrics}"
    );
    s.stop().await;
}

/// Runs the CLI on a blocking thread: the in-process daemon answers its admin socket on the
/// test's runtime, which must keep running meanwhile.
fn cli_in(
    dir: &std::path::Path,
    args: &[&str],
) -> impl std::future::Future<Output = std::process::Output> + 'static {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    async move {
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_heady-origin"))
                .args(&args)
                .arg("--data-dir")
                .arg(&dir)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn abuse_is_banned_and_an_operator_lifts_it_with_the_cli() {
    abuse_case(None).await;
}

#[tokio::test]
async fn abuse_is_banned_in_redis_and_an_operator_lifts_it_with_the_cli() {
    let redis = RedisServer::start();
    abuse_case(Some(redis.url())).await;
}

async fn abuse_case(redis_url: Option<String>) {
    let s = defended(|c| c.redis_url = redis_url.map(|u| redis_url_of(&u))).await;
    let url = s.url("/api/conductor/groups");
    let mut statuses = Vec::new();
    for _ in 0..90 {
        statuses.push(call("GET", &url, None, None).await.0);
    }
    assert_eq!(statuses.iter().filter(|&&c| c == 200).count(), 30);
    assert_eq!(statuses[89], 403, "the 90th attempt (3 x 30) trips the ban");
    let (st, h, v) = call("GET", &url, None, None).await;
    assert_eq!((st, code(&v)), (403, "banned"), "{v}");
    let retry = v["error"]["retry_after"].as_u64().unwrap();
    assert!((899..=900).contains(&retry), "15 minutes: {retry}");
    assert_eq!(h["retry-after"].to_str().unwrap(), retry.to_string());

    let dir = s.dir.path().to_path_buf();
    let cli = |args: &[&str]| cli_in(&dir, args);
    let out = cli(&["bans", "list"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ip:127.0.0.1\t"), "{text}");
    let out = cli(&["bans", "lift", "ip:127.0.0.1"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lifted"));
    // No longer banned; still over the limit inside this window, so limited, not banned.
    let (st, _, v) = call("GET", &url, None, None).await;
    assert_eq!((st, code(&v)), (429, "rate_limited"), "{v}");
    assert!(
        !s.state.defense.limiter.is_degraded(),
        "every decision was made where it should be (a script error would degrade)"
    );
    s.stop().await;
}

#[tokio::test]
async fn keys_cli_through_the_socket_and_directly() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_heady-origin");
    let run = |args: &[&str]| {
        Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    // Bad arguments: exit 2 naming the argument, nothing stored.
    for (args, names) in [
        (vec!["keys", "create", "--user", "a b"], "--user"),
        (
            vec!["keys", "create", "--user", "ann", "--tier", "gold"],
            "--tier",
        ),
        (
            vec!["keys", "create", "--user", "ann", "--clearance", "secret"],
            "--clearance",
        ),
        (vec!["keys", "create"], "--account"),
        (
            vec!["keys", "create", "--user", "ann", "--account", "x"],
            "--account",
        ),
        (
            vec!["keys", "add", "--key", "hk_x", "--user", "ann"],
            "--key",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(names),
            "{args:?}: {out:?}"
        );
    }
    // No daemon: the CLI opens the database itself.
    let out = run(&[
        "keys",
        "create",
        "--user",
        "ann",
        "--tier",
        "pro",
        "--clearance",
        "internal",
    ]);
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(heady_origin::accounts::well_formed(&key), "{key}");
    // The same key stored in another origin's database, from standard input; a file that
    // holds no key: exit 2, nothing stored.
    let other = tempfile::tempdir().unwrap();
    let other_data = other.path().join("data");
    let mut child = Command::new(bin)
        .args(["keys", "add", "--user", "ann", "--data-dir"])
        .arg(&other_data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{key}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = other.path().join("key.txt");
    std::fs::write(&file, "hk_nothex\n").unwrap();
    let out = Command::new(bin)
        .args(["keys", "add", "--user", "ann", "--key-file"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&other_data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key.txt"),
        "{out:?}"
    );
    let out = Command::new(bin)
        .args(["keys", "list", "--json", "--data-dir"])
        .arg(&other_data)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1), "{v}");

    // With the daemon running, the same commands go through its socket.
    let s = TestServer::start_in(dir, |c| c.defense.enabled = true).await;
    let (st, _, v) = call("GET", &s.url("/api/identity"), Some(&key), None).await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["subject"].as_str().unwrap().starts_with("user:acct_"),
        "a key's subject is its account: {v}"
    );
    let (st, _, v) = call("GET", &s.url("/api/account"), Some(&key), None).await;
    assert_eq!((st, v["name"].as_str()), (200, Some("ann")), "{v}");
    assert_eq!(
        (v["tier"].as_str(), v["clearance"].as_str()),
        (Some("pro"), Some("INTERNAL"))
    );
    let dir = s.dir.path().to_path_buf();
    let run = |args: &[&str]| cli_in(&dir, args);
    let out = run(&["keys", "list", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // ann's key (the test server also holds the memory tests' key): its id is the first 16
    // hex digits of its hash.
    let id = heady_origin::accounts::id_of_hash(&heady_origin::accounts::hash_of(&key));
    assert!(
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == id.as_str()),
        "{v}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&key),
        "list never shows secrets"
    );
    let out = run(&["keys", "revoke", &id]).await;
    assert!(out.status.success(), "{out:?}");
    let (st, _, v) = call("GET", &s.url("/api/identity"), Some(&key), None).await;
    assert_eq!((st, code(&v)), (401, "revoked_api_key"), "{v}");
    let out = run(&["keys", "revoke", "0000000000000000"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key with id"));
    // Accounts through the socket: list, set-tier, disable, enable.
    let out = run(&["accounts", "list", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    // ann, beside the test server's own account.
    assert!(
        v["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "ann"),
        "{v}"
    );
    let out = run(&["keys", "create", "--account", "ann", "--label", "second"]).await;
    assert!(out.status.success(), "{out:?}");
    let key2 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = run(&["accounts", "set-tier", "ann", "enterprise"]).await;
    assert!(out.status.success(), "{out:?}");
    let (_, _, v) = call("GET", &s.url("/api/account"), Some(&key2), None).await;
    assert_eq!(
        v["tier"], "enterprise",
        "a tier change is seen at once: {v}"
    );
    let out = run(&["accounts", "disable", "ann"]).await;
    assert!(out.status.success(), "{out:?}");
    let (st, _, v) = call("GET", &s.url("/api/account"), Some(&key2), None).await;
    assert_eq!((st, code(&v)), (401, "account_disabled"), "{v}");
    let out = run(&["accounts", "enable", "ann"]).await;
    assert!(out.status.success(), "{out:?}");
    let (st, _, v) = call("GET", &s.url("/api/account"), Some(&key2), None).await;
    assert_eq!(st, 200, "{v}");
    let out = run(&["accounts", "show", "nobody"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_spoofed_client_address_is_ignored_unless_the_peer_is_trusted() {
    let s = defended(|_| {}).await;
    let who = |s: &TestServer, hdr: &'static str| {
        let url = s.url("/api/identity");
        async move {
            client()
                .get(url)
                .header("cf-connecting-ip", hdr)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(who(&s, "203.0.113.9").await["subject"], "ip:127.0.0.1");
    s.stop().await;
    let s = defended(|c| c.defense.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;
    assert_eq!(who(&s, "203.0.113.9").await["subject"], "ip:203.0.113.9");
    assert_eq!(who(&s, "not an address").await["subject"], "ip:127.0.0.1");
    s.stop().await;
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client().get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemon not ready at {base}");
}

#[tokio::test]
async fn exact_across_processes_sharing_one_redis() {
    let redis = RedisServer::start();
    // One account store for all three: one account, one subject.
    let pg = FreshPg::create().await;
    let bin = env!("CARGO_BIN_EXE_heady-origin");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let out = Command::new(bin)
        .args([
            "keys",
            "create",
            "--user",
            "pro-user",
            "--tier",
            "pro",
            "--data-dir",
        ])
        .arg(dirs[0].path())
        .env("HEADY_DATABASE_URL", pg.url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut daemons = Vec::new();
    let mut bases = Vec::new();
    for d in &dirs {
        let port = free_port();
        daemons.push(Daemon(
            Command::new(bin)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--data-dir",
                ])
                .arg(d.path())
                .env("HEADY_REDIS_URL", redis.url())
                .env("HEADY_DATABASE_URL", pg.url())
                .env("HEADY_MEMORY_DIM", "16")
                .env("HEADY_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        bases.push(format!("http://127.0.0.1:{port}"));
    }
    for b in &bases {
        wait_ready(b).await;
    }
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let url = format!("{}/api/conductor/route", bases[i % 3]);
        let (c, key) = (c.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth(key)
                .json(&json!({"action": "code"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut by_status = std::collections::BTreeMap::new();
    for t in tasks {
        *by_status.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(by_status.get(&200), Some(&120), "{by_status:?}");
    assert_eq!(
        by_status
            .iter()
            .filter(|(k, _)| ![200, 429, 403].contains(*k))
            .count(),
        0,
        "{by_status:?}"
    );
    drop(daemons);
}

async fn metric(s: &TestServer, name: &str) -> Option<f64> {
    s.state
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn redis_going_away_degrades_to_in_process_and_recovers() {
    let redis = RedisServer::start();
    let port = redis.port;
    let s = defended(|c| c.redis_url = Some(redis_url_of(&redis.url()))).await;
    let k = key(&s, "dana", Tier::Pro, Classification::Public).await;
    let url = s.url("/api/conductor/route");
    let body = Some(json!({"action": "code"}));
    for _ in 0..5 {
        assert_eq!(call("POST", &url, Some(&k), body.clone()).await.0, 200);
    }
    assert_eq!(metric(&s, "heady_limiter_degraded").await, Some(0.0));
    drop(redis);
    // Never a 500: decided in-process while Redis is gone.
    for i in 0..20 {
        let (st, _, v) = call("POST", &url, Some(&k), body.clone()).await;
        assert_eq!(st, 200, "request {i} with Redis down: {v}");
    }
    assert_eq!(metric(&s, "heady_limiter_degraded").await, Some(1.0));
    let _redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&s, "heady_limiter_degraded").await != Some(0.0) {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, h, _) = call("POST", &url, Some(&k), body.clone()).await;
    assert_eq!(st, 200);
    // Back on Redis, which saw only the first 5 (the fresh server saw none): 119 left.
    assert!(h["ratelimit"].to_str().unwrap().contains("r=119"), "{h:?}");
    s.stop().await;
}

#[tokio::test]
async fn the_redis_script_and_the_shared_log_decide_alike() {
    let redis = RedisServer::start();
    let limiter = Arc::new(RateLimiter::new(
        Some(Arc::new(
            heady_origin::redis::Redis::open(&redis.url(), Duration::from_secs(2)).unwrap(),
        )),
        Arc::new(heady_origin::metrics::Metrics::default()),
        heady_origin::lifecycle::Background::new(),
    ));
    let ban = BanPolicy {
        threshold_factor: 3,
        base_ttl_secs: 2,
        max_ttl_secs: 16,
        offence_memory_secs: 120,
    };
    let limits = TierLimits {
        requests_per_window: Some(5),
        window_secs: 1,
    };
    let policy = LogPolicy::new(limits, ban).unwrap();
    let unlimited = LogPolicy::new(Tier::Enterprise.limits(), ban).unwrap();
    let mut rng = heady_shared::limiter::trace::SplitMix64::new(7);
    let mut local: std::collections::HashMap<u64, LogState> = Default::default();
    let mut t = 1_700_000_000_000u64;
    let mut kinds = std::collections::BTreeMap::new();
    for _ in 0..3000 {
        // Bursts (one request every ~20 ms, enough to trip the ban) and, now and then, a pause
        // long enough for bans to end and windows to empty.
        t += if rng.range(0, 100) < 2 {
            2_500
        } else {
            rng.range(0, 40)
        };
        let subject = rng.range(0, 4);
        let p = if subject == 3 { &unlimited } else { &policy };
        let want = p.decide(local.entry(subject).or_default(), t);
        let got = limiter
            .decide_redis_at(&format!("s{subject}"), p, Some(t))
            .await
            .unwrap();
        assert_eq!(got, want, "subject {subject} at {t}");
        let kind = match want {
            LimitOutcome::Allowed { .. } => "allowed",
            LimitOutcome::Limited { .. } => "limited",
            LimitOutcome::Banned { newly: true, .. } => "banned (new)",
            LimitOutcome::Banned { .. } => "banned",
            LimitOutcome::Metered { .. } => "metered",
        };
        *kinds.entry(kind).or_insert(0) += 1;
    }
    for k in ["allowed", "limited", "banned (new)", "banned", "metered"] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "trace never hit {k}: {kinds:?}"
        );
    }
}

const EDGE_KEY: &str = "an-edge-secret-of-at-least-32-bytes!!";

/// A request as the edge Worker sends it: the envelope headers and an HMAC over the request.
/// One argument per envelope field a test varies.
#[allow(clippy::too_many_arguments)]
fn edge_signed(
    base: &str,
    path_and_query: &str,
    body: &[u8],
    subject: &str,
    tier: Tier,
    key: &str,
    nonce: &str,
    timestamp: u64,
) -> reqwest::RequestBuilder {
    use heady_shared::wire;
    let auth = wire::HmacSha256::new(key.as_bytes()).unwrap();
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let line = wire::RequestLine {
        method: "POST",
        path,
        query,
        body_sha256: wire::body_sha256(body),
    };
    let envelope = wire::Envelope {
        host: "headyapi.com".into(),
        subject: subject.into(),
        tier,
        clearance: Classification::Public,
        client_ip: "198.51.100.7".into(),
        timestamp,
        nonce: nonce.into(),
    };
    let mut req = client()
        .post(format!("{base}{path_and_query}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in wire::sign(&auth, &line, &envelope) {
        req = req.header(k, v);
    }
    req
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn edge_signed_requests_are_verified_and_replays_refused() {
    let s = defended(|c| {
        c.defense.edge_key = Some(heady_origin::config::Secret(EDGE_KEY.into()));
        c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac;
        c.defense.require_edge = true;
    })
    .await;
    let body = br#"{"action":"code"}"#;
    let route = "/api/conductor/route?via=edge";
    let send = |req: reqwest::RequestBuilder| async move {
        let r = req.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json::<Value>().await.unwrap_or(Value::Null))
    };

    // Verified: the edge's subject and tier are believed (Pro: "code" is fine, limit 120).
    let (st, v) = send(edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Pro,
        EDGE_KEY,
        "nonce-000000000001",
        now_secs(),
    ))
    .await;
    assert_eq!(st, 200, "{v}");
    let r = edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Pro,
        EDGE_KEY,
        "nonce-000000000002",
        now_secs(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"pro\";q=120;w=60");

    // The same request again: a replay.
    let (st, v) = send(edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Pro,
        EDGE_KEY,
        "nonce-000000000001",
        now_secs(),
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "replayed_request"), "{v}");

    // Tampered body, tampered query, tampered tier header, wrong key, stale, from the future.
    let tampered_body = edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Pro,
        EDGE_KEY,
        "nonce-000000000003",
        now_secs(),
    )
    .body(r#"{"action":"deploy"}"#);
    let (st, v) = send(tampered_body).await;
    assert_eq!((st, code(&v)), (401, "invalid_edge_signature"), "{v}");
    let mut forged = edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Free,
        EDGE_KEY,
        "nonce-000000000004",
        now_secs(),
    )
    .build()
    .unwrap();
    forged
        .headers_mut()
        .insert("x-heady-tier", "enterprise".parse().unwrap());
    let r = client().execute(forged).await.unwrap();
    assert_eq!(r.status(), 401);
    for (nonce, key, ts) in [
        (
            "nonce-000000000005",
            "some-other-secret-of-32-bytes-or-more",
            now_secs(),
        ),
        ("nonce-000000000006", EDGE_KEY, now_secs() - 3600),
        ("nonce-000000000007", EDGE_KEY, now_secs() + 3600),
    ] {
        let (st, v) = send(edge_signed(
            &s.base,
            route,
            body,
            "ip:198.51.100.7",
            Tier::Pro,
            key,
            nonce,
            ts,
        ))
        .await;
        assert_eq!(
            (st, code(&v)),
            (401, "invalid_edge_signature"),
            "{nonce}: {v}"
        );
    }
    let other_query = edge_signed(
        &s.base,
        route,
        body,
        "ip:198.51.100.7",
        Tier::Pro,
        EDGE_KEY,
        "nonce-000000000008",
        now_secs(),
    );
    let mut req = other_query.build().unwrap();
    *req.url_mut() = format!("{}/api/conductor/route?via=elsewhere", s.base)
        .parse()
        .unwrap();
    let r = client().execute(req).await.unwrap();
    assert_eq!(r.status(), 401);

    // Unsigned /api is refused when the edge is required; /health still answers.
    let (st, _, v) = call(
        "POST",
        &s.url("/api/conductor/route"),
        None,
        Some(json!({"action":"chat"})),
    )
    .await;
    assert_eq!((st, code(&v)), (401, "edge_required"), "{v}");
    assert_eq!(call("GET", &s.url("/health"), None, None).await.0, 200);
    s.stop().await;

    // An origin without a tunnel key refuses signed requests rather than ignoring the claims.
    let s = defended(|c| c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac).await;
    let (st, v) = send(edge_signed(
        &s.base,
        route,
        body,
        "user:x",
        Tier::Enterprise,
        EDGE_KEY,
        "nonce-000000000009",
        now_secs(),
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "edge_not_configured"), "{v}");
    s.stop().await;
    // Under the default policy, pq-hybrid, an HMAC-signed request is a downgrade.
    let s = defended(|_| {}).await;
    let (st, v) = send(edge_signed(
        &s.base,
        route,
        body,
        "user:x",
        Tier::Enterprise,
        EDGE_KEY,
        "nonce-000000000010",
        now_secs(),
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "tunnel_session_required"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn edge_vouched_ipv6_subjects_count_by_their_64_and_malformed_ones_are_refused() {
    let s = defended(|c| {
        c.defense.edge_key = Some(heady_origin::config::Secret(EDGE_KEY.into()));
        c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac;
        c.defense.require_edge = true;
    })
    .await;
    let body = br#"{"action":"chat"}"#;
    let route = "/api/conductor/route";
    let send = |subject: String, nonce: String| {
        let req = edge_signed(
            &s.base,
            route,
            body,
            &subject,
            Tier::Free,
            EDGE_KEY,
            &nonce,
            now_secs(),
        );
        async move {
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Every request from another address of one /64, spelled in full (as an edge that did not
    // normalise sent it): the origin parses each to ip:2001:db8:7:7::/64, one Free limit.
    let mut statuses = Vec::new();
    for i in 0..31u32 {
        let subject = format!("ip:2001:db8:7:7:{:x}::{:x}", i + 1, i * 7 + 1);
        let (st, v) = send(subject, format!("nonce-v6-{i:012}")).await;
        assert!(st == 200 || st == 429, "{st} {v}");
        statuses.push(st);
    }
    assert_eq!(
        statuses.iter().filter(|&&st| st == 200).count(),
        30,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    // The neighbouring /64 is another subject with its own limit.
    let (st, v) = send("ip:2001:db8:7:8::1".into(), "nonce-v6-other-0001".into()).await;
    assert_eq!(st, 200, "{v}");

    // A correctly signed envelope whose subject is not a Subject is refused, naming it.
    for (i, bad) in [
        "nokind",
        "ip:unknown",
        "key:k1",
        "user:a b",
        "ip:2001:db8::/48",
    ]
    .into_iter()
    .enumerate()
    {
        let (st, v) = send(bad.into(), format!("nonce-bad-subject-{i:04}")).await;
        assert_eq!((st, code(&v)), (401, "invalid_edge_subject"), "{bad}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("x-heady-subject"),
            "{v}"
        );
    }
    s.stop().await;
}
