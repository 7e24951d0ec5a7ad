//! The exact limiter against a real Redis, beside the floor any remote limiter pays: a PING.
//!
//!   cargo run --release -p heady-origin --example bench_limiter [-- redis://127.0.0.1:6379]
//!
//! From 1 and 64 concurrent tasks: PING round trips vs limiter decisions (one EVALSHA of
//! `sliding_log.lua` each), decisions/s, p50/p99 and the ratio to PING. A quarter of the
//! subjects send far over their limit so the reject path is measured too; bans are off so
//! they stay on it. Also: Redis memory per subject for a full Pro log, and the in-process
//! fallback's decisions/s.

use heady_origin::defense::limiter::{state_key, LocalLimiter, RateLimiter};
use heady_origin::metrics::Metrics;
use heady_shared::limiter::BanPolicy;
use heady_shared::sliding_log::LogPolicy;
use heady_shared::{Tier, TierLimits};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PER_TASK_64: usize = 3_000;
const PER_TASK_1: usize = 20_000;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Run {
    per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    rejected: usize,
}

async fn run<F, Fut>(tasks: usize, per_task: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per_task);
                let mut rejected = 0;
                for i in 0..per_task {
                    let s = Instant::now();
                    if !op(t, i).await {
                        rejected += 1;
                    }
                    lat.push(s.elapsed().as_secs_f64() * 1e6);
                }
                (lat, rejected)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(tasks * per_task);
    let mut rejected = 0;
    for h in handles {
        let (l, r) = h.await.expect("task");
        all.extend(l);
        rejected += r;
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    Run {
        per_sec: all.len() as f64 / secs,
        p50_us: pct(&all, 0.5),
        p99_us: pct(&all, 0.99),
        rejected,
    }
}

fn main() -> anyhow::Result<()> {
    let url = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("HEADY_REDIS_URL").ok())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = redis::aio::ConnectionManager::new(client.clone()).await?;
        let limiter = Arc::new(RateLimiter::new(
            Some(Arc::new(heady_origin::redis::Redis::open(
                url.as_str(),
                Duration::from_secs(2),
            )?)),
            Arc::new(Metrics::default()),
            heady_origin::lifecycle::Background::new(),
        ));
        let no_ban = BanPolicy {
            threshold_factor: 0,
            ..BanPolicy::default()
        };
        let pro = Arc::new(LogPolicy::new(Tier::Pro.limits(), no_ban)?);
        let run_id: u64 = rand::random();
        println!("# exact limiter vs PING against {url} (bench and Redis share the 2 cores)");
        for (tasks, per_task) in [(1, PER_TASK_1), (64, PER_TASK_64)] {
            let c = conn.clone();
            let ping = run(tasks, per_task, move |_, _| {
                let mut c = c.clone();
                async move {
                    redis::cmd("PING").query_async::<String>(&mut c).await.is_ok()
                }
            })
            .await;
            let (l, p) = (limiter.clone(), pro.clone());
            let decide = run(tasks, per_task, move |t, i| {
                let (l, p) = (l.clone(), p.clone());
                async move {
                    // Tasks 0,4,8,.. hammer one subject each (over the limit: rejected);
                    // the rest spread over many subjects that stay under it.
                    let subject = if t % 4 == 0 {
                        format!("bench{run_id}:hot{t}")
                    } else {
                        format!("bench{run_id}:s{}", (t * 7919 + i) % 50_000)
                    };
                    l.decide(&subject, &p).await.is_admitted()
                }
            })
            .await;
            println!(
                "{tasks:>2} task(s)  PING     {:>9.0}/s  p50 {:>7.1} us  p99 {:>7.1} us",
                ping.per_sec, ping.p50_us, ping.p99_us
            );
            println!(
                "{tasks:>2} task(s)  decision {:>9.0}/s  p50 {:>7.1} us  p99 {:>7.1} us  rejected {:.1}%",
                decide.per_sec,
                decide.p50_us,
                decide.p99_us,
                100.0 * decide.rejected as f64 / (tasks * per_task) as f64
            );
            println!(
                "{tasks:>2} task(s)  ratio decision/PING: throughput {:.2}, p50 {:.2}  (targets: >= 100,000/s from 64 tasks, p50 <= 1.5x PING)",
                decide.per_sec / ping.per_sec,
                decide.p50_us / ping.p50_us
            );
            assert!(limiter.uses_redis() && !limiter.is_degraded(), "Redis failed during the run");
        }

        // Memory: one Pro subject with a full log (120 entries).
        let subject = format!("bench{run_id}:memory");
        for _ in 0..130 {
            limiter.decide(&subject, &pro).await;
        }
        let bytes: Option<i64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(state_key(&subject))
            .query_async(&mut conn)
            .await?;
        let total = bytes.unwrap_or(0);
        println!("Redis memory for one Pro subject with a full window (120 admitted): {total} bytes (MEMORY USAGE of its key)");

        // The in-process fallback, same algorithm.
        let local = Arc::new(LocalLimiter::default());
        let free = LogPolicy::new(
            TierLimits {
                requests_per_window: Some(30),
                window_secs: 60,
            },
            no_ban,
        )?;
        let n = 1_000_000u64;
        let start = Instant::now();
        let mut admitted = 0u64;
        for i in 0..n {
            if local
                .decide(&format!("s{}", i % 10_000), &free, 1_000_000 + i / 10)
                .is_admitted()
            {
                admitted += 1;
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "in-process fallback: {:.0} decisions/s on one thread ({admitted} of {n} admitted)",
            n as f64 / secs
        );

        // Leave nothing behind in a shared Redis.
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("heady:{{bench{run_id}:*"))
                .arg("COUNT")
                .arg(10_000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        anyhow::Ok(())
    })
}
