//! Redis over TLS with a client certificate: a real redis-server with `--tls-port` and
//! `--tls-auth-clients yes`, certificates made here (rcgen), and a real origin whose limiter
//! and bans live in that Redis. Also what a wrong or missing certificate does at start and in
//! `/ready`, and the start-up errors of `[redis_tls]`.

mod common;

use common::certs::{write, Ca};
use common::{call, RedisServer, RedisTlsFiles, TestServer};
use heady_origin::config::{Config, Overrides, RedisUrl, TlsFiles};
use heady_origin::redis::Redis;
use heady_shared::{Classification, Tier};
use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;

/// A CA, a server certificate for 127.0.0.1 and localhost, a client certificate from the CA,
/// and one from another CA, as files.
struct Pki {
    dir: tempfile::TempDir,
    files: RedisTlsFiles,
    other_ca: PathBuf,
    other_cert: PathBuf,
    other_key: PathBuf,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("heady test Redis CA");
    let server = ca.server(&["127.0.0.1", "localhost"]);
    let client = ca.client("heady-origin");
    let other = Ca::new("another CA");
    let stranger = other.client("heady-origin");
    Pki {
        files: RedisTlsFiles {
            server_cert: write(d, "server.pem", &server.cert),
            server_key: write(d, "server.key", &server.key),
            ca: write(d, "ca.pem", &ca.pem),
            client_cert: write(d, "client.pem", &client.cert),
            client_key: write(d, "client.key", &client.key),
        },
        other_ca: write(d, "other-ca.pem", &other.pem),
        other_cert: write(d, "other-client.pem", &stranger.cert),
        other_key: write(d, "other-client.key", &stranger.key),
        dir,
    }
}

impl Pki {
    fn with_client_cert(&self) -> TlsFiles {
        TlsFiles {
            ca: Some(self.files.ca.clone()),
            cert: Some(self.files.client_cert.clone()),
            key: Some(self.files.client_key.clone()),
        }
    }
}

async fn origin(redis: &RedisServer, tls: TlsFiles) -> TestServer {
    let url = RedisUrl::parse(&redis.url()).unwrap();
    TestServer::start(move |c| {
        c.defense.enabled = true;
        c.defense.redis_timeout_ms = 1000;
        c.redis_url = Some(url);
        c.redis_tls = tls;
    })
    .await
}

async fn ready(s: &TestServer) -> (u16, serde_json::Value) {
    let (st, _, body) = call("GET", &s.url("/ready"), None, None).await;
    (st, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limiter_counts_in_redis_over_tls_with_a_client_certificate() {
    let pki = pki();
    let redis = RedisServer::start_tls(&pki.files, true);
    assert!(redis.url().starts_with("rediss://"));
    let s = origin(&redis, pki.with_client_cert()).await;
    let (st, body) = ready(&s).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    assert_eq!(body["checks"]["limiter"], "redis", "{body}");

    let (k, account) =
        common::new_key(&s.state, "tls-user", Tier::Pro, Classification::Public).await;
    let url = s.url("/api/conductor/route");
    let mut remaining = Vec::new();
    for _ in 0..5 {
        let (st, h, v) = call("POST", &url, Some(&k), Some(json!({"action": "code"}))).await;
        assert_eq!(st, 200, "{v}");
        remaining.push(h["ratelimit"].to_str().unwrap().to_string());
    }
    assert!(remaining[0].contains("r=119"), "{remaining:?}");
    assert!(remaining[4].contains("r=115"), "{remaining:?}");

    // The windows are in that Redis: read them over TLS with the same certificate.
    let tls = pki.with_client_cert().load("redis_tls").unwrap();
    let direct = Redis::open_tls(&redis.url(), Some(&tls), Duration::from_secs(2)).unwrap();
    let keys: Vec<String> = direct
        .call("KEYS", |mut c| async move {
            redis::cmd("KEYS")
                .arg("heady:{*}:state")
                .query_async(&mut c)
                .await
        })
        .await
        .unwrap();
    let window = heady_origin::defense::limiter::state_key(
        &heady_shared::Subject::account(&account).to_string(),
    );
    assert!(keys.contains(&window), "{window} not in {keys:?}");
    s.stop().await;
    drop(pki.dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_client_certificate_redis_is_down_with_a_clear_message() {
    let pki = pki();
    let redis = RedisServer::start_tls(&pki.files, true);
    let s = origin(
        &redis,
        TlsFiles {
            ca: Some(pki.files.ca.clone()),
            ..Default::default()
        },
    )
    .await;
    let (st, body) = ready(&s).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["checks"]["redis"], "down", "{body}");
    let e = s.state.redis_ping().await.unwrap_err().to_string();
    assert!(e.contains("client certificate"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let redis = RedisServer::start_tls(&pki.files, true);
    let s = origin(
        &redis,
        TlsFiles {
            ca: Some(pki.files.ca.clone()),
            cert: Some(pki.other_cert.clone()),
            key: Some(pki.other_key.clone()),
        },
    )
    .await;
    let (st, body) = ready(&s).await;
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["checks"]["redis"], "down", "{body}");
    let e = s.state.redis_ping().await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_certificate_from_another_ca_is_refused() {
    let pki = pki();
    let redis = RedisServer::start_tls(&pki.files, true);
    let s = origin(
        &redis,
        TlsFiles {
            ca: Some(pki.other_ca.clone()),
            cert: Some(pki.files.client_cert.clone()),
            key: Some(pki.files.client_key.clone()),
        },
    )
    .await;
    let (st, body) = ready(&s).await;
    assert_eq!(st, 503, "{body}");
    let e = s.state.redis_ping().await.unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer"), "{e}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rediss_without_a_client_certificate_works_when_the_server_asks_for_none() {
    let pki = pki();
    let redis = RedisServer::start_tls(&pki.files, false);
    let s = origin(
        &redis,
        TlsFiles {
            ca: Some(pki.files.ca.clone()),
            ..Default::default()
        },
    )
    .await;
    let (st, body) = ready(&s).await;
    assert_eq!(
        (st, body["checks"]["redis"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    s.stop().await;
}

fn load(env: &[(&str, String)]) -> Result<Config, String> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Config::load(None, &env, &Overrides::default()).map_err(|e| e.to_string())
}

#[test]
fn bad_tls_settings_stop_the_start_with_the_key_and_the_file() {
    let pki = pki();
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let url = (
        "HEADY_REDIS_URL",
        "rediss://:hunter2@127.0.0.1:6390".to_string(),
    );
    let ok = load(&[
        url.clone(),
        ("HEADY_REDIS_TLS_CA", p(&pki.files.ca)),
        ("HEADY_REDIS_TLS_CERT", p(&pki.files.client_cert)),
        ("HEADY_REDIS_TLS_KEY", p(&pki.files.client_key)),
    ])
    .unwrap();
    assert_eq!(ok.redis_tls, pki.with_client_cert());
    let shown = format!("{ok:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("PRIVATE"),
        "{shown}"
    );

    let missing = pki.dir.path().join("nowhere.pem");
    // (variables, how the error starts, what it holds)
    type Case<'a> = (Vec<(&'a str, String)>, &'a str, String);
    let cases: Vec<Case> = vec![
        (
            vec![url.clone(), ("HEADY_REDIS_TLS_CA", p(&missing))],
            "HEADY_REDIS_TLS_CA: cannot read",
            p(&missing),
        ),
        (
            vec![
                url.clone(),
                ("HEADY_REDIS_TLS_CERT", p(&pki.files.client_cert)),
            ],
            "HEADY_REDIS_TLS_CERT: ",
            "needs its private key".into(),
        ),
        (
            vec![
                url.clone(),
                ("HEADY_REDIS_TLS_KEY", p(&pki.files.client_key)),
            ],
            "HEADY_REDIS_TLS_KEY: ",
            "needs its client certificate".into(),
        ),
        (
            vec![
                url.clone(),
                ("HEADY_REDIS_TLS_CERT", p(&pki.files.client_cert)),
                ("HEADY_REDIS_TLS_KEY", p(&pki.other_key)),
            ],
            "HEADY_REDIS_TLS_KEY: ",
            format!(
                "{} does not match the certificate in {}",
                p(&pki.other_key),
                p(&pki.files.client_cert)
            ),
        ),
        (
            vec![
                url.clone(),
                ("HEADY_REDIS_TLS_CA", p(&pki.files.client_key)),
            ],
            "HEADY_REDIS_TLS_CA: ",
            "holds no PEM certificate".into(),
        ),
        (
            vec![
                url.clone(),
                ("HEADY_REDIS_TLS_CERT", p(&pki.files.client_key)),
                ("HEADY_REDIS_TLS_KEY", p(&pki.files.client_key)),
            ],
            "HEADY_REDIS_TLS_CERT: ",
            "holds no PEM certificate".into(),
        ),
        (
            vec![
                ("HEADY_REDIS_URL", "redis://127.0.0.1:6390".into()),
                ("HEADY_REDIS_TLS_CA", p(&pki.files.ca)),
            ],
            "HEADY_REDIS_URL: ",
            "rediss://".into(),
        ),
        (
            vec![("HEADY_REDIS_TLS_CA", p(&pki.files.ca))],
            "HEADY_REDIS_TLS_CA: ",
            "set redis_url".into(),
        ),
    ];
    for (env, starts, holds) in cases {
        let e = load(&env).unwrap_err();
        assert!(e.starts_with(starts) && e.contains(&holds), "{env:?}: {e}");
        assert!(!e.contains("hunter2") && !e.contains("PRIVATE KEY"), "{e}");
    }
    // A key given as its text (HEADY_REDIS_TLS_KEY_FILE=key.pem) is refused unseen.
    let e = load(&[
        url,
        ("HEADY_REDIS_TLS_CERT", p(&pki.files.client_cert)),
        ("HEADY_REDIS_TLS_KEY_FILE", p(&pki.files.client_key)),
    ])
    .unwrap_err();
    assert!(
        e.starts_with("HEADY_REDIS_TLS_KEY") && !e.contains("PRIVATE KEY"),
        "{e}"
    );
}
