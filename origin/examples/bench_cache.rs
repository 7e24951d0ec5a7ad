//! What the response cache saves and what it costs, in one run on 127.0.0.1:
//!
//!   cargo run --release -p heady-origin --example bench_cache [-- --n 300 --trace 2000 --latency 20]
//!
//! A fake OpenAI-compatible provider answers after `--latency` ms (default 20). Measured one
//! request at a time over kept-alive connections, with the baselines in the same run:
//! - the provider called directly (what a client without the gateway waits);
//! - the gateway with the cache bypassed (`heady.cache: false`): pipeline + provider;
//! - an exact hit, with the entries in this process and in Redis (`--redis URL`, default the
//!   local server; skipped when it does not answer); a streamed hit;
//! - a replayed trace: `--trace` requests drawn from 500 prompts with Zipf(1.0) popularity
//!   (seeded), its hit rate and the latency of its hits and misses.
//!
//! Prints p50/p99 of each, a hit's latency added over (or saved from) the direct call, and the
//! ratios.

mod common;
#[path = "../tests/common/mod.rs"]
#[allow(unused_imports)]
mod test_support;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::time::Instant;
use test_support::fake_provider::{Behavior, FakeProvider};
use test_support::TestServer;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Figures {
    p50: f64,
    p99: f64,
}

fn figures(mut ms: Vec<f64>) -> Figures {
    ms.sort_by(f64::total_cmp);
    Figures {
        p50: pct(&ms, 0.50),
        p99: pct(&ms, 0.99),
    }
}

fn chat(prompt: &str) -> Value {
    json!({"model": "heady", "temperature": 0, "messages": [{"role": "user", "content": prompt}]})
}

/// POSTs `body` `n` times; every answer must be 200 and its `X-Heady-Cache` `expect` (when
/// given). Returns the latencies in ms.
async fn timed(
    c: &reqwest::Client,
    url: &str,
    body: &Value,
    n: usize,
    expect: Option<&str>,
) -> Vec<f64> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = c.post(url).json(body).send().await.expect("request");
        let status = r.status().as_u16();
        let cache = r
            .headers()
            .get("x-heady-cache")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let bytes = r.bytes().await.expect("body");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        if let Some(e) = expect {
            assert_eq!(cache.as_deref(), Some(e), "X-Heady-Cache");
        }
    }
    ms
}

fn row(name: &str, f: &Figures, direct: &Figures) {
    println!(
        "{name:<44} p50 {:>8.3} ms  p99 {:>8.3} ms  p50 vs direct {:>+8.3} ms ({:.3}x)",
        f.p50,
        f.p99,
        f.p50 - direct.p50,
        f.p50 / direct.p50
    );
}

async fn redis_answers(url: &str) -> bool {
    let Ok(r) = heady_origin::redis::Redis::open(url, std::time::Duration::from_millis(500)) else {
        return false;
    };
    r.ping().await.is_ok()
}

#[tokio::main]
async fn main() {
    let n = common::arg("--n", 300);
    let trace_len = common::arg("--trace", 2000);
    let latency = common::arg("--latency", 20) as u64;
    let args: Vec<String> = std::env::args().collect();
    let redis_url = args
        .iter()
        .position(|a| a == "--redis")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let fake = FakeProvider::start(Behavior {
        latency_ms: latency,
        ..Behavior::default()
    })
    .await;
    let mut fake_cfg = test_support::openai_provider("fake", &fake.base_url);
    fake_cfg.timeout_ms = 10_000;
    let cfg = fake_cfg.clone();
    let local = TestServer::start(move |c| {
        c.providers = vec![cfg];
        c.pipeline.max_concurrency = 64;
        c.pipeline.memory.store = false;
    })
    .await;
    let c = test_support::owner_client();
    let url = local.url("/v1/chat/completions");
    let prompt = chat("Say hello in five words.");
    println!(
        "response cache, provider latency {latency} ms, {n} sequential requests each (p50/p99 in ms)"
    );

    // Warm every path (connections, the provider's model list).
    timed(
        &c,
        &format!("{}/chat/completions", fake.base_url),
        &prompt,
        20,
        None,
    )
    .await;
    let mut bypass = prompt.clone();
    bypass["heady"] = json!({"cache": false});
    timed(&c, &url, &bypass, 20, Some("bypass")).await;

    let direct = figures(
        timed(
            &c,
            &format!("{}/chat/completions", fake.base_url),
            &prompt,
            n,
            None,
        )
        .await,
    );
    row("provider directly (baseline)", &direct, &direct);
    let through = figures(timed(&c, &url, &bypass, n, Some("bypass")).await);
    row("gateway, cache bypassed", &through, &direct);
    timed(&c, &url, &prompt, 1, Some("miss")).await;
    let hit = figures(timed(&c, &url, &prompt, n, Some("hit")).await);
    row("gateway, exact hit (in-process store)", &hit, &direct);
    let mut streamed = prompt.clone();
    streamed["stream"] = json!(true);
    timed(&c, &url, &streamed, 1, Some("miss")).await;
    let stream_hit = figures(timed(&c, &url, &streamed, n, Some("hit")).await);
    row(
        "gateway, streamed hit (in-process store)",
        &stream_hit,
        &direct,
    );

    if redis_answers(&redis_url).await {
        let (cfg, r) = (fake_cfg.clone(), redis_url.clone());
        let shared = TestServer::start(move |c| {
            c.providers = vec![cfg];
            c.pipeline.max_concurrency = 64;
            c.pipeline.memory.store = false;
            c.redis_url = Some(heady_origin::config::RedisUrl::parse(&r).expect("redis url"));
        })
        .await;
        let url = shared.url("/v1/chat/completions");
        // A prompt of this run only: earlier runs' entries are not hits here.
        let own = chat(&format!(
            "Say hello in five words ({}).",
            rand::random::<u64>()
        ));
        timed(&c, &url, &own, 1, Some("miss")).await;
        let hit = figures(timed(&c, &url, &own, n, Some("hit")).await);
        row("gateway, exact hit (Redis store)", &hit, &direct);
        shared.stop().await;
    } else {
        println!("(Redis at {redis_url} does not answer: the Redis store is not measured)");
    }

    // A replayed trace: Zipf(1.0) over 500 prompts, seeded.
    let prompts = 500usize;
    let weights: Vec<f64> = (1..=prompts).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let run_tag = rand::random::<u32>();
    let mut hits = Vec::new();
    let mut misses = Vec::new();
    let started = Instant::now();
    for _ in 0..trace_len {
        let mut x = rng.random::<f64>() * total;
        let mut k = 0;
        while k + 1 < prompts && x > weights[k] {
            x -= weights[k];
            k += 1;
        }
        let body = chat(&format!(
            "Question {k} of trace {run_tag}: what is {k} times 3?"
        ));
        let t = Instant::now();
        let r = c.post(&url).json(&body).send().await.expect("request");
        let cache = r
            .headers()
            .get("x-heady-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert_eq!(r.status().as_u16(), 200);
        r.bytes().await.expect("body");
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if cache == "hit" {
            hits.push(ms);
        } else {
            misses.push(ms);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = hits.len() as f64 / trace_len as f64;
    let mut all: Vec<f64> = hits.iter().chain(misses.iter()).copied().collect();
    all.sort_by(f64::total_cmp);
    println!(
        "replayed trace: {trace_len} requests over {prompts} prompts (Zipf 1.0): hit rate {:.3}, {:.0} req/s one at a time",
        rate,
        trace_len as f64 / secs
    );
    if !hits.is_empty() {
        row("  trace hits", &figures(hits), &direct);
    }
    if !misses.is_empty() {
        row("  trace misses", &figures(misses), &direct);
    }
    println!(
        "  trace, all requests: p50 {:.3} ms  p99 {:.3} ms; mean {:.3} ms vs {:.3} ms without the cache ({:.2}x faster)",
        pct(&all, 0.5),
        pct(&all, 0.99),
        all.iter().sum::<f64>() / all.len() as f64,
        through.p50,
        through.p50 / (all.iter().sum::<f64>() / all.len() as f64)
    );
    println!("provider calls in all: {}", fake.hits());
    local.stop().await;
}
