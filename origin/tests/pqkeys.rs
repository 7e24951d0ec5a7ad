//! PQC API keys (issue 15 B): requests signed with an Enterprise account's ML-DSA-65 key
//! (RFC 9421 + RFC 9530) against a real daemon: accepted, and refused with its code when a
//! byte of the body, path or query changes, when `created` is stale, when replayed (here and
//! at another origin sharing Redis), for a non-Enterprise account, and for a revoked key. The
//! CLI makes and registers keys and signs requests, and a client written with other people's
//! code (dilithium-py for ML-DSA-65, `http-message-signatures` for the signature base) is
//! accepted, and verifies what `sign-request` prints.

mod common;

use common::{client, code, unix_now, RedisServer, TestServer};
use heady_shared::http_sig::{self, SigningKey};
use heady_shared::{Classification, Tier};
use serde_json::Value;
use std::process::Command;

const ROUTE: &str = "/api/conductor/route";
const BODY: &[u8] = br#"{"action":"code"}"#;
/// The authority clients sign and send as Host (the origin checks the Host it receives).
const HOST: &str = "api.heady.test";

async fn defended(tweak: impl FnOnce(&mut heady_origin::config::Config)) -> TestServer {
    TestServer::start(|c| {
        c.defense.enabled = true;
        tweak(c)
    })
    .await
}

/// Registers a fresh key for the account `name` (made with `tier` when missing).
async fn registered(s: &TestServer, name: &str, tier: Tier, seed: u8) -> SigningKey {
    let store = &s.state.defense.accounts;
    let (a, _) = store
        .ensure_account(name, Tier::Enterprise, Classification::Internal, 0)
        .await
        .unwrap();
    let key = SigningKey::from_seed([seed; 32]);
    store
        .register_pq_key(&a.id, key.public_key(), Some("test".into()), 0)
        .await
        .unwrap();
    if tier != Tier::Enterprise {
        store
            .update_account(
                &a.id,
                &heady_origin::accounts::AccountChange {
                    tier: Some(tier),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    key
}

/// The headers signing `method path?query` with `body` at `created`.
fn headers_for(
    key: &SigningKey,
    method: &str,
    path: &str,
    query: Option<&str>,
    body: &[u8],
    created: u64,
) -> Vec<(&'static str, String)> {
    let req = http_sig::Request {
        method,
        authority: HOST,
        path,
        query,
    };
    http_sig::sign_request(key, &req, body, created, &rand::random())
}

/// Sends `method url` with `headers`, `body` and Host [`HOST`]: (status, JSON body).
async fn send(
    base: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), format!("{base}{path_and_query}"))
        .header("host", HOST)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn a_signed_request_is_accepted_and_each_change_is_refused_with_its_code() {
    let s = defended(|_| {}).await;
    let key = registered(&s, "ent", Tier::Enterprise, 1).await;
    let now = unix_now();

    // Accepted: the account is the key's, without a bearer key.
    let h = headers_for(&key, "GET", "/api/identity", Some("x=1"), b"", now);
    let (st, v) = send(&s.base, "GET", "/api/identity?x=1", &h, b"").await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["subject"].as_str().unwrap().starts_with("user:acct_"),
        "{v}"
    );
    assert_eq!(v["tier"], "enterprise", "{v}");
    assert_eq!(v["key_id"], key.public_key().key_id().as_str(), "{v}");
    let h = headers_for(&key, "POST", ROUTE, None, BODY, now);
    let (st, v) = send(&s.base, "POST", ROUTE, &h, BODY).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["group"], "coding", "{v}");

    // One changed byte of the body: Content-Digest no longer matches.
    let h = headers_for(&key, "POST", ROUTE, None, BODY, now);
    let (st, v) = send(&s.base, "POST", ROUTE, &h, br#"{"action":"coda"}"#).await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");
    // ... and a body changed together with its digest: the signature covers the digest.
    let mut h = headers_for(&key, "POST", ROUTE, None, BODY, now);
    let other = br#"{"action":"coda"}"#;
    h[0].1 = http_sig::content_digest(other);
    let (st, v) = send(&s.base, "POST", ROUTE, &h, other).await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");
    // One changed byte of the path, and of the query.
    let h = headers_for(&key, "GET", "/api/identity", Some("x=1"), b"", now);
    let (st, v) = send(&s.base, "GET", "/api/identitY?x=1", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");
    let (st, v) = send(&s.base, "GET", "/api/identity?x=2", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");
    // Signed for another authority than the Host received.
    let req = http_sig::Request {
        method: "GET",
        authority: "headyme.com",
        path: "/api/identity",
        query: None,
    };
    let h = http_sig::sign_request(&key, &req, b"", now, &[3; 32]);
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");

    // A stale `created` (and one from the future).
    let h = headers_for(&key, "GET", "/api/identity", None, b"", now - 301);
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "stale_signature"), "{v}");
    let h = headers_for(&key, "GET", "/api/identity", None, b"", now + 400);
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "stale_signature"), "{v}");

    // A replayed signature.
    let h = headers_for(&key, "GET", "/api/identity", None, b"", now);
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "replayed_request"), "{v}");

    // An unknown key, malformed headers, and both kinds of credentials at once.
    let stranger = SigningKey::from_seed([99; 32]);
    let h = headers_for(&stranger, "GET", "/api/identity", None, b"", now);
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "invalid_request_signature"), "{v}");
    let (st, v) = send(
        &s.base,
        "GET",
        "/api/identity",
        &[("signature-input", "sig1=(\"@method\"".into())],
        b"",
    )
    .await;
    assert_eq!((st, code(&v)), (400, "malformed_signature"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Signature-Input"),
        "{v}"
    );
    let mut h = headers_for(&key, "GET", "/api/identity", None, b"", now);
    h.push(("authorization", format!("Bearer {}", common::OWNER_KEY)));
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (400, "conflicting_credentials"), "{v}");
    // A body without content-digest coverage.
    let h = headers_for(&key, "GET", "/api/identity", None, b"", now);
    let (st, v) = send(&s.base, "POST", ROUTE, &h, BODY).await;
    assert_eq!((st, code(&v)), (400, "malformed_signature"), "{v}");
    s.stop().await;
}

#[tokio::test]
async fn non_enterprise_accounts_and_revoked_keys_are_refused() {
    let s = defended(|_| {}).await;
    let store = s.state.defense.accounts.clone();
    // Registration is for Enterprise accounts only.
    let (pro, _) = store
        .ensure_account("pro", Tier::Pro, Classification::Internal, 0)
        .await
        .unwrap();
    let k = SigningKey::from_seed([5; 32]);
    let e = store
        .register_pq_key(&pro.id, k.public_key(), None, 0)
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("upgrade_required"), "{e}");
    // The admin API answers 403 upgrade_required too.
    let (owner_st, _, v) = common::call(
        "POST",
        &s.url(&format!("/api/admin/accounts/{}/pq-keys", pro.id)),
        Some(common::OWNER_KEY),
        Some(serde_json::json!({"public_key": base64_of(k.public_key().as_bytes())})),
    )
    .await;
    // The test server's owner is INTERNAL: the admin API needs RESTRICTED.
    assert_eq!(owner_st, 403, "{v}");
    let (op, _) = store
        .ensure_account("op", Tier::Enterprise, Classification::Restricted, 0)
        .await
        .unwrap();
    let op_key = store
        .create_key(&op.id, Default::default(), 0)
        .await
        .unwrap()
        .key;
    let (st, _, v) = common::call(
        "POST",
        &s.url(&format!("/api/admin/accounts/{}/pq-keys", pro.id)),
        Some(&op_key),
        Some(serde_json::json!({"public_key": base64_of(k.public_key().as_bytes())})),
    )
    .await;
    assert_eq!((st, code(&v)), (403, "upgrade_required"), "{v}");
    let (st, _, v) = common::call(
        "POST",
        &s.url(&format!("/api/admin/accounts/{}/pq-keys", op.id)),
        Some(&op_key),
        Some(serde_json::json!({"public_key": "AAAA"})),
    )
    .await;
    assert_eq!((st, code(&v)), (400, "invalid_request"), "{v}");
    let (st, _, v) = common::call(
        "POST",
        &s.url(&format!("/api/admin/accounts/{}/pq-keys", op.id)),
        Some(&op_key),
        Some(serde_json::json!({"public_key": base64_of(k.public_key().as_bytes()), "label": "laptop"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["id"], k.public_key().key_id().as_str(), "{v}");
    assert_eq!(v["kind"], "ml-dsa-65", "{v}");

    // A key registered while Enterprise, on an account that is Pro now: 403 once it verifies.
    let was = registered(&s, "downgraded", Tier::Pro, 6).await;
    let h = headers_for(&was, "GET", "/api/identity", None, b"", unix_now());
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (403, "upgrade_required"), "{v}");

    // Revoked: refused at once (the cache entry is dropped).
    let key = registered(&s, "ent2", Tier::Enterprise, 7).await;
    let h = headers_for(&key, "GET", "/api/identity", None, b"", unix_now());
    assert_eq!(send(&s.base, "GET", "/api/identity", &h, b"").await.0, 200);
    store
        .revoke_key(&key.public_key().key_id(), unix_now() as i64)
        .await
        .unwrap();
    let h = headers_for(&key, "GET", "/api/identity", None, b"", unix_now());
    let (st, v) = send(&s.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!((st, code(&v)), (401, "revoked_api_key"), "{v}");
    // Listed with the bearer keys, as ml-dsa-65.
    let keys = store.keys(None).await.unwrap();
    let listed = keys
        .iter()
        .find(|r| r.id == key.public_key().key_id())
        .unwrap();
    assert_eq!(listed.kind, heady_origin::accounts::KeyKind::MlDsa65);
    assert!(listed.revoked_at.is_some());
    s.stop().await;
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn a_signature_is_accepted_once_across_origins_sharing_redis() {
    let redis = RedisServer::start();
    let url = heady_origin::config::RedisUrl::parse(&redis.url()).unwrap();
    let (u1, u2) = (url.clone(), url);
    let a = defended(move |c| c.redis_url = Some(u1)).await;
    let b = defended(move |c| c.redis_url = Some(u2)).await;
    let key = registered(&a, "ent", Tier::Enterprise, 11).await;
    assert_eq!(
        registered(&b, "ent", Tier::Enterprise, 11)
            .await
            .public_key()
            .key_id(),
        key.public_key().key_id()
    );
    let h = headers_for(&key, "POST", ROUTE, None, BODY, unix_now());
    let (st, v) = send(&a.base, "POST", ROUTE, &h, BODY).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = send(&b.base, "POST", ROUTE, &h, BODY).await;
    assert_eq!((st, code(&v)), (401, "replayed_request"), "{v}");
    // A new signature of the same request is a new request.
    let h = headers_for(&key, "POST", ROUTE, None, BODY, unix_now());
    let (st, v) = send(&b.base, "POST", ROUTE, &h, BODY).await;
    assert_eq!(st, 200, "{v}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_reaches_another_origin_at_once() {
    // Two origins on one PostgreSQL and one Redis; keys cached for a minute, so only the
    // invalidation broadcast explains a refusal within a second.
    let pg = common::FreshPg::create().await;
    let redis = RedisServer::start();
    let url = heady_origin::config::RedisUrl::parse(&redis.url()).unwrap();
    let shared = |c: &mut heady_origin::config::Config| {
        c.database_url = Some(pg.database_url());
        c.redis_url = Some(url.clone());
        c.defense.key_cache_secs = 60;
    };
    let a = defended(shared).await;
    let b = defended(shared).await;
    let key = registered(&a, "ent", Tier::Enterprise, 21).await;
    let h = headers_for(&key, "GET", "/api/identity", None, b"", unix_now());
    let (st, v) = send(&b.base, "GET", "/api/identity", &h, b"").await;
    assert_eq!(st, 200, "{v}");
    a.state
        .defense
        .accounts
        .revoke_key(&key.public_key().key_id(), unix_now() as i64)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let h = headers_for(&key, "GET", "/api/identity", None, b"", unix_now());
        let (st, v) = send(&b.base, "GET", "/api/identity", &h, b"").await;
        if (st, code(&v)) == (401, "revoked_api_key") {
            break;
        }
        assert_eq!(st, 200, "{v}");
        assert!(
            std::time::Instant::now() < deadline,
            "the other origin still accepts the revoked key"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    a.stop().await;
    b.stop().await;
}

/// The Python of deploy/setup.sh's venv (or `HEADY_PYTHON`).
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("HEADY_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/heady/venv/bin/python")
}

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/pq_client.py");

fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_heady-origin"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_keys_and_signs_and_other_libraries_agree() {
    let py = python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (its venv has dilithium-py and http-message-signatures)",
        py.display()
    );
    let s = defended(|_| {}).await;
    let store = &s.state.defense.accounts;
    store
        .ensure_account("ent", Tier::Enterprise, Classification::Internal, 0)
        .await
        .unwrap();
    store
        .ensure_account("free", Tier::Free, Classification::Public, 0)
        .await
        .unwrap();
    let dir = s.dir.path().to_path_buf();
    let work = tempfile::tempdir().unwrap();

    // keys create-pq through the running daemon's socket: mode 0600, the key id printed.
    let key_file = work.path().join("client.pem");
    let out = tokio::task::block_in_place(|| {
        cli(
            &dir,
            &[
                "keys",
                "create-pq",
                "--account",
                "ent",
                "--out",
                key_file.to_str().unwrap(),
            ],
        )
    });
    assert!(out.status.success(), "{out:?}");
    let keyid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(keyid.len(), 16, "{out:?}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pem = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        SigningKey::from_pem(&pem).unwrap().public_key().key_id(),
        keyid
    );
    // A Free account: refused, and no private key left behind.
    let refused_file = work.path().join("free.pem");
    let out = tokio::task::block_in_place(|| {
        cli(
            &dir,
            &[
                "keys",
                "create-pq",
                "--account",
                "free",
                "--out",
                refused_file.to_str().unwrap(),
            ],
        )
    });
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("upgrade_required"),
        "{out:?}"
    );
    assert!(!refused_file.exists());

    // sign-request's headers, sent with the body: accepted.
    let body_file = work.path().join("body.json");
    std::fs::write(&body_file, BODY).unwrap();
    let url = format!("http://{HOST}{ROUTE}");
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_heady-origin"))
            .args([
                "sign-request",
                "--method",
                "POST",
                "--url",
                &url,
                "--key-file",
            ])
            .arg(&key_file)
            .arg("--body-file")
            .arg(&body_file)
            .output()
            .unwrap()
    });
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let headers: Vec<(&'static str, String)> = printed
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            let k: &'static str = match k {
                "Content-Digest" => "content-digest",
                "Signature-Input" => "signature-input",
                "Signature" => "signature",
                other => panic!("unexpected header {other}"),
            };
            (k, v.to_string())
        })
        .collect();
    assert_eq!(headers.len(), 3, "{printed}");
    // Someone else's RFC 9421 verifier and ML-DSA-65 accept what sign-request printed.
    let public = SigningKey::from_pem(&pem).unwrap();
    let pk_file = work.path().join("pk.bin");
    std::fs::write(&pk_file, public.public_key().as_bytes()).unwrap();
    let headers_file = work.path().join("headers.txt");
    std::fs::write(&headers_file, &printed).unwrap();
    let out = tokio::process::Command::new(&py)
        .args([PEER, "verify", "POST", &url])
        .arg(&pk_file)
        .arg(&headers_file)
        .arg(&body_file)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (st, v) = send(&s.base, "POST", ROUTE, &headers, BODY).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["group"], "coding", "{v}");

    // A key made by dilithium-py, registered with register-pq (base64 file), signing with
    // http-message-signatures: accepted; its replay and a stale one refused.
    let out = tokio::process::Command::new(&py)
        .args([PEER, "keygen"])
        .arg(work.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = tokio::task::block_in_place(|| {
        cli(
            &dir,
            &[
                "keys",
                "register-pq",
                "--account",
                "ent",
                "--public-key-file",
                work.path().join("peer.pub.b64").to_str().unwrap(),
            ],
        )
    });
    assert!(out.status.success(), "{out:?}");
    let peer_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = tokio::process::Command::new(&py)
        .args([PEER, "send", &s.base, HOST, &peer_id])
        .arg(work.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["post"]["status"], 200, "{v}");
    assert_eq!(v["post"]["body"]["group"], "coding", "{v}");
    assert_eq!(v["get"]["status"], 200, "{v}");
    assert_eq!(v["get"]["body"]["key_id"], peer_id.as_str(), "{v}");
    assert_eq!(v["replay"]["status"], 401, "{v}");
    assert_eq!(
        v["replay"]["body"]["error"]["code"], "replayed_request",
        "{v}"
    );
    assert_eq!(
        v["stale"]["body"]["error"]["code"], "stale_signature",
        "{v}"
    );

    // keys list shows both, as ml-dsa-65.
    let out = tokio::task::block_in_place(|| cli(&dir, &["keys", "list", "--json"]));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    for id in [&keyid, &peer_id] {
        assert!(
            listed["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["id"] == id.as_str() && k["kind"] == "ml-dsa-65"),
            "{listed}"
        );
    }
    s.stop().await;
}

/// A keyid is public: bad signatures naming a good, cached key are throttled per address like
/// bad bearer keys, before any ML-DSA verification.
#[tokio::test]
async fn bad_signatures_naming_a_good_key_are_throttled() {
    let s = defended(|_| {}).await;
    let key = registered(&s, "ent-flood", Tier::Enterprise, 21).await;
    let base = s.url("");
    let good = headers_for(&key, "POST", ROUTE, None, BODY, unix_now());
    let (st, v) = send(&base, "POST", ROUTE, &good, BODY).await;
    assert_eq!(st, 200, "{v}");
    let max = s.state.config.defense.max_failed_auth_per_minute;
    for i in 0..max {
        let mut h = headers_for(&key, "POST", ROUTE, None, BODY, unix_now());
        for (k, v) in h.iter_mut() {
            if *k == "signature" {
                // Flip one base64 character inside the byte sequence.
                let at = v.find(':').unwrap() + 10;
                let c = if &v[at..at + 1] == "A" { "B" } else { "A" };
                v.replace_range(at..at + 1, c);
            }
        }
        let (st, v) = send(&base, "POST", ROUTE, &h, BODY).await;
        assert_eq!(
            (st, code(&v)),
            (401, "invalid_request_signature"),
            "attempt {i}: {v}"
        );
    }
    let fresh = headers_for(&key, "POST", ROUTE, None, BODY, unix_now());
    let (st, v) = send(&base, "POST", ROUTE, &fresh, BODY).await;
    assert_eq!((st, code(&v)), (429, "too_many_failed_auth"), "{v}");
    s.stop().await;
}

/// The edge's own lookup of a keyid (`GET /api/identity/pq-keys/{keyid}`), as the edge sends
/// it: vouched for by its tunnel signature (HMAC here) as the anonymous client.
async fn edge_lookup(base: &str, keyid: &str, edge_key: &str) -> (u16, String) {
    use heady_shared::wire;
    let path = heady_shared::api_paths::pq_key_identity_path(keyid);
    let auth = wire::HmacSha256::new(edge_key.as_bytes()).unwrap();
    let line = wire::RequestLine {
        method: "GET",
        path: &path,
        query: "",
        body_sha256: wire::body_sha256(b""),
    };
    let envelope = wire::Envelope {
        host: HOST.into(),
        subject: "ip:198.51.100.7".into(),
        tier: Tier::Free,
        clearance: Classification::Public,
        client_ip: "198.51.100.7".into(),
        timestamp: unix_now(),
        nonce: format!("lookup-{:020}", rand::random::<u64>()),
    };
    let mut req = client().get(format!("{base}{path}"));
    for (k, v) in wire::sign(&auth, &line, &envelope) {
        req = req.header(k, v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_edge_learns_a_pq_key_s_account_and_public_key_and_nobody_else_does() {
    const EDGE_KEY: &str = "an-edge-secret-of-at-least-32-bytes!!";
    let s = defended(|c| {
        c.defense.edge_key = Some(heady_origin::config::Secret(EDGE_KEY.into()));
        c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac;
    })
    .await;
    let key = registered(&s, "ent-edge", Tier::Enterprise, 21).await;
    let keyid = key.public_key().key_id();
    let path = heady_shared::api_paths::pq_key_identity_path(&keyid);

    // Not through the edge: refused, whatever the caller presents.
    let (st, v) = send(&s.base, "GET", &path, &[], b"").await;
    assert_eq!((st, code(&v)), (401, "edge_required"), "{v}");
    let h = headers_for(&key, "GET", &path, None, b"", unix_now());
    let (st, v) = send(&s.base, "GET", &path, &h, b"").await;
    assert_eq!((st, code(&v)), (401, "edge_required"), "{v}");

    // The edge: the account's session and the public key the keyid names.
    let (st, text) = edge_lookup(&s.base, &keyid, EDGE_KEY).await;
    assert_eq!(st, 200, "{text}");
    let (identity, public_key) = heady_shared::identity::PqKeyAnswer::parse(&text, &keyid).unwrap();
    assert_eq!(identity.tier, Tier::Enterprise);
    assert_eq!(identity.clearance, Classification::Internal);
    assert!(identity.subject.to_string().starts_with("user:acct_"));
    assert_eq!(public_key.as_bytes(), key.public_key().as_bytes());
    assert!(!text.contains("PRIVATE"), "{text}");

    // Unknown, malformed and revoked keyids: the codes a signed request gets.
    let unknown = SigningKey::from_seed([22; 32]).public_key().key_id();
    for (id, want) in [
        (unknown.as_str(), "invalid_request_signature"),
        ("not-a-key-id", "invalid_request_signature"),
    ] {
        let (st, text) = edge_lookup(&s.base, id, EDGE_KEY).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((st, code(&v)), (401, want), "{id}: {v}");
    }
    s.state
        .defense
        .accounts
        .revoke_key(&keyid, unix_now() as i64)
        .await
        .unwrap();
    let (st, text) = edge_lookup(&s.base, &keyid, EDGE_KEY).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((st, code(&v)), (401, "revoked_api_key"), "{v}");
    s.stop().await;
}
