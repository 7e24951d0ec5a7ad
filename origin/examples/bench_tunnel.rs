//! Tunnel sessions, natively: the cost of each handshake step (the edge's hello, the origin's
//! check and welcome, the edge's finish) and of one tunnelled request's authentication at the
//! origin under a session (open the ticket, check the MAC) beside today's shared-key HMAC,
//! measured in the same run, with the ratio.
//!
//!   cargo run --release -p heady-origin --example bench_tunnel
//!
//! The same handshake in workerd (WASM) is measured by `tests/edge/bench.mjs`.

use heady_origin::defense::tunnel::ticket::{self, TicketKey};
use heady_shared::tunnel::{accept_hello, HelloRandomness, Identity, Initiator, WelcomeRandomness};
use heady_shared::wire::{self, Envelope, HmacSha256, RequestLine, SessionMac};
use heady_shared::{Classification, Tier};
use rand::RngCore;
use std::time::Instant;

const HANDSHAKES: usize = 200;
const REQUESTS: usize = 200_000;

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn micros(total: std::time::Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1e6 / n as f64
}

fn main() {
    let edge = Identity::from_seeds(random(), random());
    let origin = Identity::from_seeds(random(), random());
    let pinned_edge = [edge.fingerprint()];
    let pinned_origin = [origin.fingerprint()];
    let ticket_key = TicketKey(random());
    let now = 1_790_000_000;

    let (mut hello_t, mut accept_t, mut welcome_t, mut finish_t) = Default::default();
    let mut session = None;
    for _ in 0..HANDSHAKES {
        let t = Instant::now();
        let initiator =
            Initiator::start(&edge, now, &HelloRandomness::from_bytes(&random())).unwrap();
        hello_t += t.elapsed();
        let t = Instant::now();
        let verified = accept_hello(initiator.hello(), &pinned_edge, now, 60).unwrap();
        accept_t += t.elapsed();
        let t = Instant::now();
        let nonce = random();
        let (welcome, _) = verified
            .respond(
                &origin,
                now + 3600,
                &WelcomeRandomness::from_bytes(&random()),
                |keys| ticket::seal(&ticket_key, nonce, keys, now + 3600, edge.fingerprint()),
            )
            .unwrap();
        welcome_t += t.elapsed();
        let t = Instant::now();
        session = Some(initiator.finish(&welcome, &pinned_origin).unwrap());
        finish_t += t.elapsed();
    }
    let session = session.expect("at least one handshake");
    let total = hello_t + accept_t + welcome_t + finish_t;
    println!("handshake ({HANDSHAKES} runs, one core), microseconds each:");
    println!(
        "  edge hello (X-Wing key pair, ML-DSA-65 + Ed25519 sign)   {:8.0}",
        micros(hello_t, HANDSHAKES)
    );
    println!(
        "  origin accept (verify both signatures)                   {:8.0}",
        micros(accept_t, HANDSHAKES)
    );
    println!(
        "  origin welcome (X-Wing encapsulate, HKDF, seal, sign)    {:8.0}",
        micros(welcome_t, HANDSHAKES)
    );
    println!(
        "  edge finish (verify both signatures, X-Wing decapsulate) {:8.0}",
        micros(finish_t, HANDSHAKES)
    );
    println!(
        "  total                                                    {:8.0}",
        micros(total, HANDSHAKES)
    );
    println!(
        "  origin side (accept + welcome): {:.0} us -> {:.0} handshakes/s per core",
        micros(accept_t + welcome_t, HANDSHAKES),
        1e6 / micros(accept_t + welcome_t, HANDSHAKES)
    );

    // One tunnelled request's authentication at the origin.
    let body = br#"{"model":"heady","messages":[{"role":"user","content":"Say hello"}]}"#;
    let line = RequestLine {
        method: "POST",
        path: "/v1/chat/completions",
        query: "",
        body_sha256: wire::body_sha256(body),
    };
    let envelope = Envelope {
        host: "headyapi.com".into(),
        subject: "user:acct_aaaaaaaaaaaaaaaaaaaaaaaa".into(),
        tier: Tier::Pro,
        clearance: Classification::Internal,
        client_ip: "203.0.113.7".into(),
        timestamp: now,
        nonce: "0123456789abcdef0123".into(),
    };
    let hmac = HmacSha256::new(b"0123456789abcdef0123456789abcdef-bench").unwrap();
    let hmac_headers = wire::sign(&hmac, &line, &envelope);
    let mac = SessionMac::new(session.keys.mac_key, session.keys.id);
    let mut session_headers = wire::sign(&mac, &line, &envelope);
    session_headers.push((wire::header::SESSION, wire::hex_encode(&session.ticket)));
    let hmac_headers: std::collections::HashMap<&str, String> = hmac_headers.into_iter().collect();
    let session_headers: std::collections::HashMap<&str, String> =
        session_headers.into_iter().collect();
    let t = Instant::now();
    for _ in 0..REQUESTS {
        let ok = wire::verify(
            &hmac,
            &line,
            |n| hmac_headers.get(n).map(String::as_str),
            now,
            60,
        );
        assert!(ok.is_ok());
    }
    let hmac_us = micros(t.elapsed(), REQUESTS);
    let t = Instant::now();
    for _ in 0..REQUESTS {
        let ticket_hex = &session_headers[wire::header::SESSION];
        let opened = ticket::open(
            std::slice::from_ref(&ticket_key),
            &wire::hex_decode(ticket_hex).unwrap(),
            now,
        )
        .unwrap();
        let mac = SessionMac::new(opened.keys.mac_key, opened.keys.id);
        let ok = wire::verify(
            &mac,
            &line,
            |n| session_headers.get(n).map(String::as_str),
            now,
            60,
        );
        assert!(ok.is_ok());
    }
    let session_us = micros(t.elapsed(), REQUESTS);
    println!("\nper tunnelled request at the origin ({REQUESTS} runs, one core):");
    println!("  HMAC-SHA256, shared key (tunnel_auth = hmac)         {hmac_us:6.2} us");
    println!("  session: open the ticket + HMAC under the session key {session_us:6.2} us");
    println!("  ratio session / hmac: {:.2}x", session_us / hmac_us);
    println!(
        "  bytes added per request: x-heady-session ({} hex characters)",
        session.ticket.len() * 2
    );
}
