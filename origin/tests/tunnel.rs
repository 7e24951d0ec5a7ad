//! Post-quantum hybrid tunnel sessions against real daemons: the handshake endpoint and its
//! refusals (tampered transcript, unpinned identity, replayed, stale, malformed), requests
//! under a session (downgrade, expiry, tampered ticket, wrong MAC, replay), a session opened
//! at one origin used at another (two origins on one Redis), and two pinned edge identities
//! during a rotation.

mod common;

use common::{client, open_session, post_hello, session_signed, unix_now, RedisServer, TestServer};
use heady_origin::config::{Config, RedisUrl, Secret};
use heady_shared::tunnel::{Fingerprint, HelloRandomness, Identity, Initiator, Session};
use heady_shared::Tier;
use serde_json::Value;

fn edge_identity(n: u8) -> Identity {
    Identity::from_seeds([n; 32], [n ^ 0x5a; 32])
}

fn origin_identity() -> Identity {
    Identity::from_seeds([0xa1; 32], [0xa2; 32])
}

/// Defense on, the edge required, sessions only (the default policy), this origin's identity
/// and the pinned edge identities.
fn configure(c: &mut Config, origin: &Identity, edges: &[&Identity]) {
    c.defense.enabled = true;
    c.defense.require_edge = true;
    c.defense.tunnel.identity = Some(Secret(origin.to_secret_text()));
    c.defense.tunnel.edge_identities = edges.iter().map(|e| e.fingerprint().to_string()).collect();
}

const ROUTE: &str = "/api/conductor/route";
const BODY: &[u8] = br#"{"action":"code"}"#;

async fn status_code(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json::<Value>().await.unwrap_or(Value::Null))
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn error_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    code(&v).to_string()
}

fn hello(edge: &Identity, now: u64, n: u8) -> Vec<u8> {
    let mut random = [n; HelloRandomness::BYTES];
    random[0] = n.wrapping_add(unix_now() as u8);
    random[40] = (unix_now() >> 8) as u8;
    Initiator::start(edge, now, &HelloRandomness::from_bytes(&random))
        .unwrap()
        .hello()
        .to_vec()
}

fn handshakes(s: &TestServer, outcome: &str) -> u64 {
    let text = s.state.metrics.encode();
    let line = format!("heady_tunnel_handshakes_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn handshake_refusals_have_distinct_codes() {
    let (edge, origin) = (edge_identity(1), origin_identity());
    let s = TestServer::start(|c| configure(c, &origin, &[&edge])).await;
    let pinned = [origin.fingerprint()];

    let session = open_session(&s.base, &edge, &pinned).await.unwrap();
    assert_eq!(session.origin, origin.fingerprint());
    assert!(session.expires_at >= unix_now() + 3590);

    // One byte of the signed transcript changed: the edge's signature no longer covers it.
    let mut tampered = hello(&edge, unix_now(), 2);
    tampered[40] ^= 0x01;
    let (st, body) = post_hello(&s.base, &tampered).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (401, "tunnel_transcript_invalid")
    );

    // An identity the origin does not pin.
    let stranger = edge_identity(9);
    let (st, body) = post_hello(&s.base, &hello(&stranger, unix_now(), 3)).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (401, "tunnel_identity_unknown")
    );
    assert_eq!(
        open_session(&s.base, &stranger, &pinned).await.unwrap_err(),
        (401, "tunnel_identity_unknown".to_string())
    );

    // The same hello twice: answered once.
    let once = hello(&edge, unix_now(), 4);
    assert_eq!(post_hello(&s.base, &once).await.0, 200);
    let (st, body) = post_hello(&s.base, &once).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (401, "tunnel_handshake_replayed")
    );

    // Signed ten minutes ago.
    let (st, body) = post_hello(&s.base, &hello(&edge, unix_now() - 600, 5)).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (401, "tunnel_handshake_stale")
    );

    // Not a hello at all; JSON instead of bytes.
    let (st, body) = post_hello(&s.base, b"hello?").await;
    assert_eq!((st, error_code(&body).as_str()), (400, "invalid_request"));
    let r = client()
        .post(s.url("/api/tunnel/handshake"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);

    assert_eq!(handshakes(&s, "accepted"), 2);
    assert_eq!(handshakes(&s, "bad_transcript"), 1);
    assert_eq!(handshakes(&s, "unknown_identity"), 2);
    assert_eq!(handshakes(&s, "replayed"), 1);
    assert_eq!(handshakes(&s, "stale"), 1);
    assert_eq!(handshakes(&s, "malformed"), 1);
    s.stop().await;
}

#[tokio::test]
async fn requests_under_a_session_are_checked_and_hmac_is_a_downgrade() {
    let (edge, origin) = (edge_identity(1), origin_identity());
    let s = TestServer::start(|c| {
        configure(c, &origin, &[&edge]);
        c.defense.tunnel.session_secs = 3;
    })
    .await;
    let session = open_session(&s.base, &edge, &[origin.fingerprint()])
        .await
        .unwrap();
    let send = |session: &Session, nonce: &str| {
        session_signed(
            &s.base,
            ROUTE,
            BODY,
            "ip:198.51.100.7",
            Tier::Pro,
            session,
            nonce,
        )
    };

    // Under the session the edge's claims are believed (Pro: "code" is allowed, limit 120).
    let r = send(&session, "session-nonce-0001").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["ratelimit-policy"], "\"pro\";q=120;w=60");

    // The same request again.
    let (st, v) = status_code(send(&session, "session-nonce-0001")).await;
    assert_eq!((st, code(&v)), (401, "replayed_request"), "{v}");

    // The shared HMAC key instead of the session: no downgrade.
    let (st, v) = status_code(common::edge_signed(
        &s.base,
        ROUTE,
        BODY,
        "ip:198.51.100.7",
        Tier::Pro,
        "edge-test-key-0123456789abcdef0123456789abcdef",
        "hmac-nonce-00000001",
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "tunnel_session_required"), "{v}");

    // A ticket changed by one byte does not open; a MAC under another key does not verify.
    let mut forged = session.clone();
    forged.ticket[20] ^= 1;
    let (st, v) = status_code(send(&forged, "session-nonce-0002")).await;
    assert_eq!((st, code(&v)), (401, "tunnel_session_invalid"), "{v}");
    let mut wrong_key = session.clone();
    wrong_key.keys.mac_key[0] ^= 1;
    let (st, v) = status_code(send(&wrong_key, "session-nonce-0003")).await;
    assert_eq!((st, code(&v)), (401, "invalid_edge_signature"), "{v}");

    // Unsigned requests do not pass at all.
    let (st, v) = status_code(client().post(s.url(ROUTE)).body(BODY.to_vec())).await;
    assert_eq!((st, code(&v)), (401, "edge_required"), "{v}");

    // Past its 3 s the session is refused as expired; a new one works.
    tokio::time::sleep(std::time::Duration::from_millis(
        (session.expires_at + 1).saturating_sub(unix_now()) * 1000 + 100,
    ))
    .await;
    let (st, v) = status_code(send(&session, "session-nonce-0004")).await;
    assert_eq!((st, code(&v)), (401, "tunnel_session_expired"), "{v}");
    let fresh = open_session(&s.base, &edge, &[origin.fingerprint()])
        .await
        .unwrap();
    assert_ne!(fresh.keys.id, session.keys.id);
    let (st, v) = status_code(send(&fresh, "session-nonce-0005")).await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

#[tokio::test]
async fn a_session_opened_at_one_origin_is_accepted_at_another() {
    let redis = RedisServer::start();
    let (edge, origin) = (edge_identity(1), origin_identity());
    let shared = |c: &mut Config| {
        configure(c, &origin, &[&edge]);
        c.redis_url = Some(RedisUrl::parse(&redis.url()).unwrap());
    };
    let a = TestServer::start(shared).await;
    let b = TestServer::start(shared).await;
    let pinned = [origin.fingerprint()];

    let session = open_session(&a.base, &edge, &pinned).await.unwrap();
    for (i, s) in [&b, &a, &b].into_iter().enumerate() {
        let (st, v) = status_code(session_signed(
            &s.base,
            ROUTE,
            BODY,
            "ip:198.51.100.7",
            Tier::Pro,
            &session,
            &format!("cross-origin-nonce-{i:04}"),
        ))
        .await;
        assert_eq!(st, 200, "request {i}: {v}");
    }
    // A request replayed to the other origin, and a hello replayed to it, are refused.
    let (st, v) = status_code(session_signed(
        &b.base,
        ROUTE,
        BODY,
        "ip:198.51.100.7",
        Tier::Pro,
        &session,
        "cross-origin-nonce-0000",
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "replayed_request"), "{v}");
    let once = hello(&edge, unix_now(), 7);
    assert_eq!(post_hello(&a.base, &once).await.0, 200);
    let (st, body) = post_hello(&b.base, &once).await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (401, "tunnel_handshake_replayed")
    );

    // An origin of another deployment (its own identity and ticket key) does not know it.
    let other = Identity::from_seeds([0xb1; 32], [0xb2; 32]);
    let c = TestServer::start(|c| configure(c, &other, &[&edge])).await;
    let (st, v) = status_code(session_signed(
        &c.base,
        ROUTE,
        BODY,
        "ip:198.51.100.7",
        Tier::Pro,
        &session,
        "other-deployment-nonce",
    ))
    .await;
    assert_eq!((st, code(&v)), (401, "tunnel_session_invalid"), "{v}");
    // Origins with their own identities but one configured ticket key share sessions.
    let key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    let d = TestServer::start(|c| {
        configure(c, &origin, &[&edge]);
        c.defense.tunnel.ticket_key = Some(Secret(key.into()));
    })
    .await;
    let e = TestServer::start(|c| {
        configure(c, &other, &[&edge]);
        c.defense.tunnel.ticket_key = Some(Secret(key.into()));
    })
    .await;
    let at_d = open_session(&d.base, &edge, &pinned).await.unwrap();
    let (st, v) = status_code(session_signed(
        &e.base,
        ROUTE,
        BODY,
        "ip:198.51.100.7",
        Tier::Pro,
        &at_d,
        "shared-ticket-key-nonce",
    ))
    .await;
    assert_eq!(st, 200, "{v}");
    for s in [a, b, c, d, e] {
        s.stop().await;
    }
}

#[tokio::test]
async fn two_pinned_edge_identities_during_a_rotation() {
    let (old, new, origin) = (edge_identity(1), edge_identity(2), origin_identity());
    let s = TestServer::start(|c| configure(c, &origin, &[&old, &new])).await;
    let pinned = [origin.fingerprint()];
    for (i, edge) in [&old, &new].into_iter().enumerate() {
        let session = open_session(&s.base, edge, &pinned).await.unwrap();
        let (st, v) = status_code(session_signed(
            &s.base,
            ROUTE,
            BODY,
            "ip:198.51.100.7",
            Tier::Free,
            &session,
            &format!("rotation-nonce-{i:06}"),
        ))
        .await;
        assert_eq!(st, 200, "{v}");
    }
    // The edge side: a welcome from an origin identity it pins among two is accepted.
    let next_origin = Fingerprint([7; 32]);
    assert!(
        open_session(&s.base, &new, &[next_origin, origin.fingerprint()])
            .await
            .is_ok()
    );
    s.stop().await;
}

/// The Python of deploy/setup.sh's venv (or `HEADY_PYTHON`), which has dilithium-py, kyber-py
/// and PyNaCl.
fn python() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("HEADY_PYTHON") {
        return p.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    std::path::PathBuf::from(home).join(".cache/heady/venv/bin/python")
}

#[tokio::test]
async fn an_edge_written_with_other_libraries_opens_a_session() {
    // tests/peers/tunnel_edge.py: the handshake and a request from docs/tunnel.md, with
    // dilithium-py (ML-DSA-65), kyber-py (ML-KEM-768) and PyNaCl (X25519, Ed25519).
    let py = python();
    assert!(
        py.exists(),
        "{} is missing: run deploy/setup.sh (its venv has dilithium-py, kyber-py and PyNaCl)",
        py.display()
    );
    let (edge, origin) = (edge_identity(3), origin_identity());
    let s = TestServer::start(|c| configure(c, &origin, &[&edge])).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("edge.key");
    std::fs::write(&secret, edge.to_secret_text()).unwrap();
    let out = tokio::process::Command::new(&py)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/peers/tunnel_edge.py"
        ))
        .arg(&s.base)
        .arg(&secret)
        .arg(origin.fingerprint().to_string())
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
    assert_eq!(
        (v["handshake"].as_u64(), v["request"].as_u64()),
        (Some(200), Some(200)),
        "{v}"
    );
    assert_eq!(v["answer"]["group"], "coding", "{v}");
    assert_eq!(handshakes(&s, "accepted"), 1);
    s.stop().await;
}
