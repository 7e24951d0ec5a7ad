//! The OpenAPI document as a real origin serves it: valid OpenAPI 3.1 by openapi-spec-validator,
//! the answers of key routes valid against it (jsonschema), the reference page at `/` on the
//! API properties only, and bad input refused in JSON.

mod common;

use common::fake_provider::{Behavior, FakeProvider};
use common::{client, new_key, Answer, TestServer};
use heady_shared::{Classification, Tier};
use serde_json::Value;
use std::time::Duration;

async fn daemon() -> (TestServer, FakeProvider) {
    let fake = FakeProvider::start(Behavior::default()).await;
    let base_url = fake.base_url.clone();
    let s = TestServer::start(move |c| {
        c.defense.enabled = true;
        c.providers = vec![common::openai_provider("fake", &base_url)];
    })
    .await;
    (s, fake)
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_and_the_answers_match_it() {
    let py = common::python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (it creates the venv with openapi-spec-validator)",
        py.display()
    );
    let (s, _fake) = daemon().await;
    let (account_key, _) = new_key(
        &s.state,
        "api-user",
        Tier::Enterprise,
        Classification::Internal,
    )
    .await;
    let (operator_key, _) = new_key(
        &s.state,
        "api-ops",
        Tier::Enterprise,
        Classification::Restricted,
    )
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/openapi_check.py");
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&py)
            .arg(script)
            .arg(&s.base)
            .arg(&account_key)
            .arg(&operator_key)
            .output(),
    )
    .await
    .expect("the check finished within 120 s")
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the origin and its document disagree:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["openapi"], "3.1.0");
    let checked = v["checked"].as_array().unwrap();
    assert!(checked.len() >= 30, "{v}");
    for route in [
        "POST /v1/chat/completions 200",
        "POST /v1/embeddings 200",
        "POST /api/memory/vectors 200",
        "POST /api/memory/search 200",
        "POST /api/conductor/route 200",
        "GET /api/account 200",
        "GET /api/account/usage 200",
        "POST /api/admin/accounts 201",
        "POST /api/admin/accounts/{id}/keys 201",
        "POST /api/billing/checkout 503",
    ] {
        assert!(
            checked.iter().any(|c| c == route),
            "{route} not checked: {v}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn the_document_is_public_cacheable_json_and_the_cli_prints_the_same() {
    let (s, _fake) = daemon().await;
    let a = Answer::of(client().get(s.url("/openapi.json"))).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.header("content-type"), "application/json");
    assert!(
        a.header("cache-control").starts_with("public"),
        "{}",
        a.header("cache-control")
    );
    assert_eq!(a.body["openapi"], "3.1.0");
    assert!(a.body["paths"]["/v1/chat/completions"]["post"].is_object());
    // Anonymous callers are not refused, nor counted by the API limiter.
    assert!(a.header("ratelimit-policy").is_empty());
    let head = Answer::of(client().head(s.url("/openapi.json"))).await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());

    let bin = env!("CARGO_BIN_EXE_heady-origin");
    let printed = std::process::Command::new(bin)
        .arg("openapi")
        .output()
        .unwrap();
    assert!(printed.status.success());
    let printed: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(
        printed, a.body,
        "heady-origin openapi prints what /openapi.json serves"
    );
    s.stop().await;
}

#[tokio::test]
async fn the_reference_page_is_static_html_on_api_properties_only() {
    let (s, _fake) = daemon().await;
    // The daemon asked directly, and the API properties by Host.
    for host in [None, Some("headyapi.com"), Some("HEADYMCP.com:443")] {
        let mut req = client().get(s.url("/"));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let a = Answer::of(req).await;
        assert_eq!(a.status, 200, "{host:?}: {}", a.text);
        assert_eq!(a.header("content-type"), "text/html; charset=utf-8");
        let csp = a.header("content-security-policy");
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(a.header("x-content-type-options"), "nosniff");
        assert!(!a.text.to_ascii_lowercase().contains("<script"));
        assert!(a.text.contains("href=\"/openapi.json\""));
        assert!(a.text.contains("href=\"/reference.css\""));
        assert!(a.text.contains("<code>/v1/chat/completions</code>"));
        assert!(a.text.contains("Bearer $HEADY_KEY"));
    }
    let css = Answer::of(client().get(s.url("/reference.css"))).await;
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    // Other origin-served properties have nothing at `/`.
    for host in ["admin.headysystems.com", "discord.headysystems.com"] {
        let a = Answer::of(client().get(s.url("/")).header("host", host)).await;
        assert_eq!(a.status, 404, "{host}: {}", a.text);
        assert_eq!(a.body["error"]["code"], "not_found", "{host}");
    }
    s.stop().await;
}

#[tokio::test]
async fn the_edge_s_vouched_host_decides_not_the_transport_host() {
    let key = "openapi-test-edge-key-0123456789abcdef-0123456789";
    let s = TestServer::start(|c| {
        c.defense.enabled = true;
        c.defense.edge_key = Some(heady_origin::config::Secret(key.into()));
        c.defense.tunnel_auth = heady_shared::tunnel::TunnelAuth::Hmac;
    })
    .await;
    // The transport Host names the API property; the edge vouches for another.
    for (i, (vouched, want)) in [("headyapi.com", 200), ("admin.headysystems.com", 404)]
        .into_iter()
        .enumerate()
    {
        let call = common::EdgeCall {
            method: "GET",
            host: vouched,
            subject: "ip:198.51.100.7",
            tier: Tier::Free,
            nonce: &format!("openapi-page-nonce-{i:04}"),
        };
        let req = common::edge_request(call, &s.base, "/", b"", key).header("host", "headyapi.com");
        let a = Answer::of(req).await;
        assert_eq!(a.status, want, "{vouched}: {}", a.text);
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_methods_are_refused_in_json_naming_the_allowed_ones() {
    let (s, _fake) = daemon().await;
    for path in ["/openapi.json", "/", "/reference.css"] {
        let a = Answer::of(client().post(s.url(path)).body("{}")).await;
        assert_eq!(a.status, 405, "{path}: {}", a.text);
        assert_eq!(a.body["error"]["code"], "method_not_allowed", "{path}");
        assert_eq!(a.header("allow"), "GET", "{path}");
    }
    let a = Answer::of(client().get(s.url("/openapi.yaml"))).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["error"]["code"], "not_found");
    s.stop().await;
}
