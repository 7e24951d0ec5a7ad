//! The cost of an API key lookup on each account backend, in one process:
//!
//!   cargo run --release -p heady-origin --example bench_accounts [-- postgres://postgres@127.0.0.1:5432/postgres]
//!
//! The argument is a PostgreSQL server's maintenance database (default: the local server,
//! user postgres, trust auth); the bench creates a database of its own there and drops it.
//! 1,000 keys on each backend; each is looked up uncached (`AccountStore::lookup`: the store
//! is asked) and cached (`AccountStore::cached`: what `Defense::identify` does for a key seen
//! within `defense.key_cache_secs`), from 1 task and from 16. Prints p50/p99 and the ratios
//! to the DuckDB lookup.

use heady_origin::accounts::{AccountStore, KeyOptions};
use heady_origin::config::DatabaseUrl;
use heady_origin::db::{Database, DbConfig};
use heady_shared::{Classification, Tier};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: usize = 1_000;
const ROUNDS: usize = 5;

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

async fn fill(store: &AccountStore) -> Vec<String> {
    let (a, _) = store
        .ensure_account("bench", Tier::Pro, Classification::Internal, 1)
        .await
        .unwrap();
    let mut keys = Vec::with_capacity(KEYS);
    for _ in 0..KEYS {
        keys.push(
            store
                .create_key(&a.id, KeyOptions::default(), 1)
                .await
                .unwrap()
                .key,
        );
    }
    keys
}

/// (lookups/s, p50 us, p99 us) over `tasks` concurrent tasks sharing the keys.
async fn uncached(
    store: &Arc<AccountStore>,
    keys: &Arc<Vec<String>>,
    tasks: usize,
) -> (f64, f64, f64) {
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..tasks {
        let (s, k) = (store.clone(), keys.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for r in 0..ROUNDS {
                for (i, key) in k.iter().enumerate() {
                    if (i + r) % tasks != w {
                        continue;
                    }
                    let t = Instant::now();
                    s.lookup(key, 2).await.unwrap().unwrap();
                    lat.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat.len() as f64 / secs, pct(&lat, 0.5), pct(&lat, 0.99))
}

fn cached(store: &AccountStore, keys: &[String]) -> (f64, f64, f64) {
    let mut lat = Vec::new();
    let t = Instant::now();
    for _ in 0..ROUNDS {
        for key in keys {
            let t = Instant::now();
            store.cached(key, 2).unwrap().unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    (lat.len() as f64 / secs, pct(&lat, 0.5), pct(&lat, 0.99))
}

async fn admin(url: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a PostgreSQL server (pass its URL)");
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let admin_url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("heady_bench_{:08x}", rand::random::<u32>());
    admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
    let mut bench_url = url::Url::parse(&admin_url).unwrap();
    bench_url.set_path(&name);
    let ttl = Duration::from_secs(3600);

    let dir = tempfile::tempdir().unwrap();
    let cfg = DbConfig::from(&heady_origin::memory::config::MemoryConfig::default());
    let db = Database::open(dir.path(), &cfg, Default::default()).unwrap();
    let duck = Arc::new(
        AccountStore::connect(None, Some(db), ttl, None, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let pg_url = DatabaseUrl::parse(bench_url.as_str()).unwrap();
    let target = heady_origin::pg::PgTarget::from_url(&pg_url).unwrap();
    let pg = Arc::new(
        AccountStore::connect(Some(&target), None, ttl, None, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let duck_keys = Arc::new(fill(&duck).await);
    let pg_keys = Arc::new(fill(&pg).await);

    println!("# key lookups, {KEYS} keys x {ROUNDS} rounds per backend (bench, DuckDB and PostgreSQL share the cores)");
    println!(
        "{:<34} {:>12} {:>10} {:>10} {:>12}",
        "lookup", "per s", "p50 us", "p99 us", "p50 vs duck"
    );
    let mut base = [0.0; 2];
    for (i, tasks) in [1usize, 16].into_iter().enumerate() {
        // Warm both (connections, prepared statements) before measuring.
        uncached(&duck, &duck_keys, tasks).await;
        uncached(&pg, &pg_keys, tasks).await;
        let d = uncached(&duck, &duck_keys, tasks).await;
        let p = uncached(&pg, &pg_keys, tasks).await;
        base[i] = d.1;
        println!(
            "{:<34} {:>12.0} {:>10.1} {:>10.1} {:>11.2}x",
            format!("duckdb, uncached, {tasks} task(s)"),
            d.0,
            d.1,
            d.2,
            1.0
        );
        println!(
            "{:<34} {:>12.0} {:>10.1} {:>10.1} {:>11.2}x",
            format!("postgres, uncached, {tasks} task(s)"),
            p.0,
            p.1,
            p.2,
            p.1 / d.1
        );
    }
    for (name, store, keys) in [("duckdb", &duck, &duck_keys), ("postgres", &pg, &pg_keys)] {
        let c = cached(store, keys);
        println!(
            "{:<34} {:>12.0} {:>10.2} {:>10.2} {:>11.4}x",
            format!("{name}, cached, 1 task"),
            c.0,
            c.1,
            c.2,
            c.1 / base[0]
        );
    }
    drop(pg);
    admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
}
