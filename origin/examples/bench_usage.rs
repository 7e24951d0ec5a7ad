//! What usage metering adds to a request, in one process:
//!
//!   cargo run --release -p heady-origin --example bench_usage [-- redis://127.0.0.1:6379]
//!
//! Per request the hot path does `Usage::begin` (a token reservation) and `Meter::finish`
//! (record in memory, settle the reservation); the store is written by the flusher, once per
//! batch. Measured, from 1 and 16 tasks, with the baseline in the same run:
//! - a detached meter (records nothing: the floor of the calls themselves);
//! - begin + finish with the in-process token bucket (the embedded default);
//! - begin + finish with the token bucket in Redis (two EVALSHA round trips), beside the
//!   request limiter's one decision in Redis (what every request pays already);
//! - one flush of what 1,000 accounts recorded, to DuckDB;
//! - the tokenizer (only when a provider reports no usage) on a 1 KiB prompt.

use heady_origin::db::{Database, DbConfig};
use heady_origin::defense::limiter::RateLimiter;
use heady_origin::lifecycle::Background;
use heady_origin::metrics::Metrics;
use heady_origin::redis::Redis;
use heady_origin::usage::{
    tokens, Meter, Payer, TokenLimiter, Usage, UsageConfig, UsageMetrics, UsageStore, Used,
};
use heady_shared::limiter::BanPolicy;
use heady_shared::sliding_log::LogPolicy;
use heady_shared::{AccountId, Tier};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PER_TASK: usize = 5_000;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// Runs `op` `PER_TASK` times in each of `tasks` tasks: (ops/s, p50 us, p99 us).
async fn run<F, Fut>(tasks: usize, op: F) -> (f64, f64, f64)
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(PER_TASK);
                for i in 0..PER_TASK {
                    let s = Instant::now();
                    op(t, i).await;
                    lat.push(s.elapsed().as_secs_f64() * 1e6);
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    (all.len() as f64 / secs, pct(&all, 0.5), pct(&all, 0.99))
}

fn usage(redis: Option<Arc<Redis>>, db: Database) -> Arc<Usage> {
    let mut metrics = Metrics::default();
    let m = UsageMetrics::register(&mut metrics.registry);
    let mut config = UsageConfig::default();
    // Limits high enough that every reservation is admitted: the cost measured is the path's.
    config.token_limits.pro = 1_000_000_000;
    let store = UsageStore::open(None, Some(db), Duration::from_secs(5)).expect("store");
    let bg = Background::new();
    let limiter = Arc::new(TokenLimiter::new(
        redis,
        m.limiter_degraded.clone(),
        bg.clone(),
    ));
    Arc::new(Usage::new(config, store, limiter, m, true, bg))
}

fn payer(task: usize) -> Payer {
    let id = AccountId::from_random([task as u8 + 1; 15]);
    Payer {
        subject: format!("user:{id}"),
        owner: Some(id),
        tier: Tier::Pro,
    }
}

fn used() -> Used {
    Used {
        model: "bench-model".into(),
        prompt_tokens: 120,
        completion_tokens: 40,
        estimated: false,
    }
}

fn row(name: &str, tasks: usize, r: (f64, f64, f64), base: Option<f64>) {
    let ratio = base.map_or(String::new(), |b| {
        format!("   p50 {:.1}x the baseline", r.1 / b)
    });
    println!(
        "{name:<52} {tasks:>2} tasks {:>11.0}/s   p50 {:>7.2} us   p99 {:>7.2} us{ratio}",
        r.0, r.1, r.2
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = DbConfig::from(&heady_origin::config::MemoryConfig::default());
    let db = Database::open(dir.path(), &cfg, Default::default()).expect("database");
    let local = usage(None, db.clone());
    println!("# per request: Usage::begin + Meter::finish ({PER_TASK} per task)");
    for tasks in [1, 16] {
        let detached = run(tasks, |t, _| async move {
            Meter::detached(payer(t)).finish(&[used()]).await;
        })
        .await;
        row("detached meter (baseline)", tasks, detached, None);
        let u = local.clone();
        let r = run(tasks, move |t, _| {
            let u = u.clone();
            async move {
                let m = u.begin(payer(t), || 1_200).await.expect("admitted");
                m.finish(&[used()]).await;
            }
        })
        .await;
        row("in-process bucket + record", tasks, r, Some(detached.1));
    }
    let t = Instant::now();
    local.flush().await.expect("flush");
    println!(
        "flush of the above ({} requests, 16 accounts) to DuckDB: {:.2} ms",
        17 * PER_TASK,
        t.elapsed().as_secs_f64() * 1e3
    );
    // A batch as 1,000 active accounts leave it in one flush interval.
    for i in 0..1_000usize {
        let id = AccountId::from_random([
            (i % 251) as u8,
            (i / 251) as u8,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
            7,
        ]);
        let p = Payer {
            subject: format!("user:{id}"),
            owner: Some(id),
            tier: Tier::Enterprise,
        };
        local.record(&p, &[used()], heady_origin::defense::limiter::now_ms());
    }
    let t = Instant::now();
    local.flush().await.expect("flush");
    println!(
        "flush of 1,000 accounts' rows (and their meter buckets) to DuckDB: {:.2} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    match Redis::open(&url, Duration::from_secs(2)) {
        Ok(r) if r.ping().await.is_ok() => {
            let r = Arc::new(r);
            let remote = usage(Some(r.clone()), db.clone());
            let limiter = Arc::new(RateLimiter::new(
                Some(r.clone()),
                Arc::new(Metrics::default()),
                Background::new(),
            ));
            let policy = LogPolicy::new(
                heady_shared::TierLimits {
                    requests_per_window: Some(1_000_000),
                    window_secs: 60,
                },
                BanPolicy {
                    threshold_factor: 0,
                    ..BanPolicy::default()
                },
            )
            .expect("policy");
            println!("# with Redis at {url}");
            for tasks in [1, 16] {
                let l = limiter.clone();
                let base = run(tasks, move |t, _| {
                    let l = l.clone();
                    async move {
                        l.decide(&format!("bench-req-{t}"), &policy).await;
                    }
                })
                .await;
                row(
                    "request limiter decision (every request pays it)",
                    tasks,
                    base,
                    None,
                );
                let u = remote.clone();
                let r = run(tasks, move |t, _| {
                    let u = u.clone();
                    async move {
                        let m = u.begin(payer(t), || 1_200).await.expect("admitted");
                        m.finish(&[used()]).await;
                    }
                })
                .await;
                row(
                    "Redis bucket (reserve + settle) + record",
                    tasks,
                    r,
                    Some(base.1),
                );
            }
        }
        _ => println!("# no Redis at {url}: the Redis rows are skipped"),
    }

    let prompt = "The quick brown fox jumps over the lazy dog. ".repeat(23);
    tokens::warm_up();
    let n = 2_000;
    let t = Instant::now();
    let mut sum = 0;
    for _ in 0..n {
        sum += tokens::count(&prompt);
    }
    println!(
        "tokenizer (cl100k_base) on a {} byte prompt: {:.1} us each ({} tokens)",
        prompt.len(),
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        sum / n
    );
}
