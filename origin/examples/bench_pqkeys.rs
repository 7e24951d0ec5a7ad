//! What a PQC API key costs per request at the origin, against a bearer key in the same run:
//!
//!   cargo run --release -p heady-origin --example bench_pqkeys [-- --n 2000]
//!
//! Both go through `Defense::identify` (the authenticate step of every request) on one
//! DuckDB-backed origin with in-process replay store, keys cached as after the first request:
//! a bearer key is a cache hit; a signed request is a cache hit for its key plus the RFC 9421
//! work (parse Signature-Input and Signature, `created`, Content-Digest of a 1 kB body, the
//! signature base), the ML-DSA-65 verification, and the replay check. Each signed request is
//! a new signature (signing is the client's cost and happens before the clock starts).
//! Prints p50/p99 and the ratio of the two, then the pieces of the PQC path alone.

mod common;

use heady_origin::config::{Config, Overrides};
use heady_origin::defense::{Defense, Presented};
use heady_shared::http_sig::{self, SigningKey};
use heady_shared::{Classification, Tier};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AUTHORITY: &str = "api.heady.test";
const PATH: &str = "/api/conductor/route";

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn summary(mut lat: Vec<f64>) -> (f64, f64) {
    lat.sort_by(f64::total_cmp);
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = common::arg("--n", 2_000);
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::load(None, &[], &Overrides::default()).unwrap();
    let db = heady_origin::db::Database::open(
        dir.path(),
        &heady_origin::db::DbConfig::from(&cfg.memory),
        Default::default(),
    )
    .unwrap();
    let accounts = Arc::new(
        heady_origin::accounts::AccountStore::connect(
            None,
            Some(db),
            Duration::from_secs(3600),
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap(),
    );
    let (a, _) = accounts
        .ensure_account("bench", Tier::Enterprise, Classification::Internal, 1)
        .await
        .unwrap();
    let bearer = accounts
        .create_key(&a.id, Default::default(), 1)
        .await
        .unwrap()
        .key;
    let key = SigningKey::from_seed(rand::random());
    accounts
        .register_pq_key(&a.id, key.public_key(), None, 1)
        .await
        .unwrap();
    let defense = Arc::new(
        Defense::new(
            &cfg.defense,
            accounts,
            None,
            Arc::new(heady_origin::metrics::Metrics::default()),
            heady_origin::lifecycle::Background::new(),
        )
        .unwrap(),
    );

    let body: Vec<u8> = format!(
        "{{\"action\":\"code\",\"input\":\"{}\"}}",
        "x".repeat(1_000)
    )
    .into_bytes();
    let method = http::Method::POST;
    let uri: http::Uri = PATH.parse().unwrap();
    let peer = "127.0.0.1".parse().unwrap();
    let mut bearer_headers = http::HeaderMap::new();
    bearer_headers.insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    bearer_headers.insert("host", AUTHORITY.parse().unwrap());
    let req = http_sig::Request {
        method: "POST",
        authority: AUTHORITY,
        path: PATH,
        query: None,
    };
    eprintln!("signing {n} requests (the client's cost, not measured)...");
    let t = Instant::now();
    let signed: Vec<http::HeaderMap> = (0..n)
        .map(|_| {
            let mut h = http::HeaderMap::new();
            h.insert("host", AUTHORITY.parse().unwrap());
            for (k, v) in http_sig::sign_request(&key, &req, &body, now(), &rand::random()) {
                h.insert(k, v.parse().unwrap());
            }
            h
        })
        .collect();
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    let identify = |headers: &http::HeaderMap| {
        let d = defense.clone();
        let headers = headers.clone();
        let (uri, method, body) = (uri.clone(), method.clone(), body.clone());
        async move {
            d.identify(Presented {
                method: &method,
                uri: &uri,
                headers: &headers,
                body: &body,
                peer,
            })
            .await
        }
    };
    // Warm both caches.
    identify(&bearer_headers).await.unwrap();
    identify(&signed[0]).await.unwrap();

    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let who = identify(&bearer_headers).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(who.tier, Tier::Enterprise);
    }
    let (b50, b99) = summary(lat);
    let mut lat = Vec::with_capacity(n);
    for h in &signed[1..] {
        let t = Instant::now();
        let who = identify(h).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(who.tier, Tier::Enterprise);
    }
    let (p50, p99) = summary(lat);

    // The PQC path's pieces, on the same signatures.
    let field = |h: &http::HeaderMap, name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut prep = Vec::with_capacity(n);
    let mut verify = Vec::with_capacity(n);
    for h in &signed {
        let t = Instant::now();
        let (sig, base) = http_sig::prepare(
            &field(h, "signature-input").unwrap(),
            field(h, "signature").as_deref(),
            &req,
            &body,
            &|name| field(h, name),
            now(),
        )
        .unwrap();
        prep.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        key.public_key()
            .verify(base.as_bytes(), &sig.signature)
            .unwrap();
        verify.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let (prep50, _) = summary(prep);
    let (ver50, ver99) = summary(verify);

    println!("# Defense::identify per request, {n} requests each, 1 task, 1 kB body");
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "path", "p50 us", "p99 us", "p50 ratio"
    );
    println!(
        "{:<52} {:>10.2} {:>10.2} {:>9.2}x",
        "bearer key, cached lookup (baseline)", b50, b99, 1.0
    );
    println!(
        "{:<52} {:>10.2} {:>10.2} {:>9.1}x",
        "ML-DSA-65 signed request (RFC 9421), key cached",
        p50,
        p99,
        p50 / b50
    );
    println!("# pieces of the signed path");
    println!(
        "{:<52} {:>10.2}",
        "parse + created + Content-Digest + signature base", prep50
    );
    println!("{:<52} {:>10.2} {:>10.2}", "ML-DSA-65 verify", ver50, ver99);
    println!(
        "{:<52} {:>10.2}",
        "(client) ML-DSA-65 sign + headers, mean", sign_us
    );
}
