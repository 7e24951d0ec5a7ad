//! Vector memory benchmark on 100,000 clustered 384-d vectors (deterministic).
//!
//! `cargo run --release -p heady-origin --example bench_memory [-- --n 100000 --queries 500 --batch 120 --clients 4 --base64 --insert-only --search-during-insert]`
//!
//! Measures, in one run: bulk insert through the HTTP batch API; search by exact DuckDB scan
//! (`array_cosine_distance`), by DuckDB VSS HNSW through SQL (when the extension loads; set
//! HEADY_VSS_EXTENSION to its file), and by the path `/api/memory/search` serves (usearch HNSW +
//! row fetch from DuckDB): p50/p99, queries/s from 2 threads, recall@10 against exact; then the
//! start-up time of the real binary on that data (`/ready`, and the index ready).
//!
//! Rows have owners: half belong to one large account, the other half to 100 accounts of
//! equal size (`--owners`), each loaded with its own key. The per-owner part searches one
//! small and the large owner by the served path (exact scan below `memory.exact_below`, the
//! filtered graph above) and by the other path, against an exact scan of that owner's rows.

mod common;

use common::arg;
use heady_origin::app::App;
use heady_origin::config::{heady_env, Config, Overrides};
use heady_origin::memory::{MemoryStore, Scope, SearchPath};
use heady_shared::zone::splitmix64;
use heady_shared::{AccountId, Classification, Tier};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 384;
const CLUSTERS: u64 = 100;

fn uniform(seed: u64) -> f64 {
    (splitmix64(seed) >> 11) as f64 / (1u64 << 53) as f64
}

fn gaussian(seed: u64) -> f64 {
    let u1 = uniform(seed).max(1e-12);
    let u2 = uniform(seed ^ 0xABCD_EF01_2345_6789);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Vector `i` of the data set: centre of cluster `i % CLUSTERS` plus noise, unit length.
fn vector(i: u64, salt: u64) -> Vec<f32> {
    let c = i % CLUSTERS;
    let mut v: Vec<f64> = (0..DIM as u64)
        .map(|d| {
            gaussian(c * 7_919 + d * 104_729 + 1)
                + 0.6 * gaussian((i ^ salt).wrapping_mul(2_654_435_761) + d * 31 + 17)
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v.into_iter().map(|x| x as f32).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Timing {
    p50_ms: f64,
    p99_ms: f64,
}

fn timing(mut ms: Vec<f64>) -> Timing {
    ms.sort_by(|a, b| a.total_cmp(b));
    Timing {
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
    }
}

fn vector_literal(v: &[f32]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// Queries/s from `threads` threads running `f` over the queries.
fn qps(threads: usize, queries: &[Vec<f32>], f: impl Fn(&[f32]) + Sync) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            let f = &f;
            s.spawn(move || {
                for q in queries.iter().skip(k).step_by(threads) {
                    f(q);
                }
            });
        }
    });
    queries.len() as f64 / t.elapsed().as_secs_f64()
}

/// Sequential `POST /api/memory/search` requests while `go(i)` holds; latencies in ms.
async fn http_searches(
    addr: std::net::SocketAddr,
    key: String,
    go: impl Fn(usize) -> bool,
) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut ms = Vec::new();
    let mut i = 0;
    while go(i) {
        let body = serde_json::json!({"embedding": vector(i as u64 * 13 + 5, 0xBEEF), "top_k": 10});
        let t = Instant::now();
        let r = client
            .post(format!("http://{addr}/api/memory/search"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        i += 1;
    }
    ms
}

fn main() -> anyhow::Result<()> {
    let n = arg("--n", 100_000) as u64;
    let nq = arg("--queries", 500);
    let batch = arg("--batch", 120);
    let clients = arg("--clients", 4);
    let owners = arg("--owners", 100);
    // --base64: embeddings as base64 float32 (OpenAI's encoding_format "base64") instead of
    // JSON arrays of numbers.
    let base64 = std::env::args().any(|a| a == "--base64");
    let dir = tempfile::tempdir()?;
    println!("# heady vector memory benchmark: {n} clustered {DIM}-d vectors, {nq} queries");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // 1. Bulk insert through the HTTP batch API (bodies serialised before the clock starts).
    let mut cfg = Config::load(None, &heady_env(), &Overrides::default())?;
    cfg.data_dir = dir.path().to_path_buf();
    // This measures the memory path; deploy/bench-http.sh measures the defense stage.
    cfg.defense.enabled = false;
    // Row i belongs to the large owner (0) when i is even, else to small owner 1 + (i/2) % owners.
    let owner_of = |i: u64| {
        if i.is_multiple_of(2) {
            0
        } else {
            1 + (i as usize / 2) % owners
        }
    };
    let mut rows_of: Vec<Vec<u64>> = vec![Vec::new(); owners + 1];
    for i in 0..n {
        rows_of[owner_of(i)].push(i);
    }
    let bodies: Vec<(usize, Vec<u8>)> = rows_of
        .iter()
        .enumerate()
        .flat_map(|(o, rows)| rows.chunks(batch).map(move |c| (o, c.to_vec())))
        .map(|(o, chunk)| {
            let items: Vec<serde_json::Value> = chunk
                .into_iter()
                .map(|i| {
                    let v = vector(i, 0);
                    let embedding = if base64 {
                        use base64::Engine as _;
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    } else {
                        serde_json::json!(v)
                    };
                    serde_json::json!({"content": format!("row {i} in cluster {}", i % CLUSTERS), "embedding": embedding, "session_id": format!("s{}", i % 1000)})
                })
                .collect();
            (o, serde_json::to_vec(&serde_json::json!({ "items": items })).unwrap())
        })
        .collect();
    println!(
        "serialised {} batch bodies of up to {batch} (largest {} KiB); owners: 1 of {} rows, {owners} of ~{} rows",
        bodies.len(),
        bodies.iter().map(|b| b.1.len()).max().unwrap_or(0) / 1024,
        rows_of[0].len(),
        rows_of.get(1).map_or(0, Vec::len)
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (state, addr, server) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = App::open(cfg.clone())?;
        let st = state.clone();
        let server = tokio::spawn(async move {
            heady_origin::http::run(
                listener,
                st,
                async {
                    let _ = stop_rx.await;
                },
                Duration::from_secs(30),
            )
            .await
        });
        anyhow::Ok((state, addr, server))
    })?;
    // One account per owner (0 is the large one, 1..=owners the small ones), Enterprise (no
    // quota), each with a key.
    let (accounts, keys): (Vec<AccountId>, Vec<String>) = rt
        .block_on(async {
            let store = &state.defense.accounts;
            let mut out = Vec::new();
            for o in 0..=owners {
                let (a, _) = store
                    .ensure_account(
                        &format!("owner-{o}"),
                        Tier::Enterprise,
                        Classification::Internal,
                        0,
                    )
                    .await?;
                let k = store.create_key(&a.id, Default::default(), 0).await?;
                out.push((a.id, k.key));
            }
            anyhow::Ok(out)
        })?
        .into_iter()
        .unzip();
    let keys = Arc::new(keys);
    while !state.memory.index_ready() {
        std::thread::sleep(Duration::from_millis(10));
    }
    // --search-during-insert: one client searches over HTTP while the load runs (then the same
    // searches once the index has caught up, as the baseline).
    let search_during = std::env::args().any(|a| a == "--search-during-insert");
    let loading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let searcher = search_during.then(|| {
        let loading = loading.clone();
        let key = keys[0].clone();
        rt.spawn(async move {
            http_searches(addr, key, |_| {
                loading.load(std::sync::atomic::Ordering::Relaxed)
            })
            .await
        })
    });
    let t = Instant::now();
    let bodies = Arc::new(bodies);
    rt.block_on(async {
        let client = reqwest::Client::new();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, next, bodies, keys) =
                (client.clone(), next.clone(), bodies.clone(), keys.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((owner, body)) = bodies.get(i) else {
                        break;
                    };
                    let r = client
                        .post(format!("http://{addr}/api/memory/vectors"))
                        .bearer_auth(&keys[*owner])
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let insert_secs = t.elapsed().as_secs_f64();
    println!(
        "bulk insert (HTTP batch API, {clients} clients, {batch} items/request, embeddings as {}): {:.0} vectors/s ({n} in {insert_secs:.1} s)",
        if base64 { "base64 float32" } else { "JSON numbers" },
        n as f64 / insert_secs
    );
    loading.store(false, std::sync::atomic::Ordering::Relaxed);
    let memory: Arc<MemoryStore> = state.memory.clone();
    assert_eq!(memory.len(), n);
    if let Some(searcher) = searcher {
        let during = rt.block_on(searcher)?;
        assert!(
            memory.wait_indexed(Duration::from_secs(1800)),
            "indexer never caught up"
        );
        let count = during.len();
        let after = rt.block_on(http_searches(addr, keys[0].clone(), |i| i < count));
        let (d, a) = (timing(during), timing(after));
        println!(
            "search over HTTP during the load: {count} searches, p50 {:.2} ms, p99 {:.2} ms; after it (index caught up): p50 {:.2} ms, p99 {:.2} ms; ratio p50 {:.2}x, p99 {:.2}x",
            d.p50_ms, d.p99_ms, a.p50_ms, a.p99_ms, d.p50_ms / a.p50_ms, d.p99_ms / a.p99_ms
        );
    }
    if std::env::args().any(|a| a == "--insert-only") {
        return Ok(());
    }
    let backlog = memory.pending_len();
    let t = Instant::now();
    assert!(
        memory.wait_indexed(Duration::from_secs(1800)),
        "indexer never caught up"
    );
    println!(
        "HNSW indexer: {backlog} rows still queued at the last ack (searchable by brute force meanwhile), all indexed {:.1} s later; end to end {:.0} vectors/s indexed",
        t.elapsed().as_secs_f64(),
        n as f64 / (insert_secs + t.elapsed().as_secs_f64())
    );

    let queries: Vec<Vec<f32>> = (0..nq as u64).map(|q| vector(q * 7 + 3, 0xFEED)).collect();

    // 2. Exact scan in DuckDB: the ground truth and the baseline.
    let n_exact = nq.min(60);
    let mut exact_ms = Vec::new();
    let mut truth: Vec<Vec<String>> = Vec::new();
    for q in &queries[..n_exact] {
        let t = Instant::now();
        let hits = memory.exact_search_blocking(&Scope::AllOwners, q, 10, None)?;
        exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
        truth.push(hits.into_iter().map(|h| h.id).collect());
    }
    let exact_qps = qps(2, &queries[..n_exact.min(20)], |q| {
        memory
            .exact_search_blocking(&Scope::AllOwners, q, 10, None)
            .unwrap();
    });
    let exact = timing(exact_ms);
    println!("exact DuckDB scan (all owners):   p50 {:>8.3} ms  p99 {:>8.3} ms  {:>8.1} q/s (2 threads)  recall@10 1.000", exact.p50_ms, exact.p99_ms, exact_qps);

    // 3. DuckDB VSS (HNSW through SQL), in an in-memory copy: VSS persistence is experimental.
    let vss = (|| -> anyhow::Result<(Timing, f64, f64, f64)> {
        let conn = duckdb::Connection::open_in_memory_with_flags(
            duckdb::Config::default().allow_unsigned_extensions()?,
        )?;
        match std::env::var("HEADY_VSS_EXTENSION") {
            Ok(path) if !path.is_empty() => conn.execute_batch(&format!("LOAD '{path}'"))?,
            _ => conn.execute_batch("LOAD vss")?,
        }
        conn.execute_batch(&format!(
            "ATTACH '{}' AS src (READ_ONLY); CREATE TABLE v AS SELECT id, embedding FROM src.conversation_vectors; DETACH src;",
            memory.path().display()
        ))?;
        let t = Instant::now();
        conn.execute_batch("CREATE INDEX v_hnsw ON v USING HNSW (embedding) WITH (metric = 'cosine', M = 16, ef_construction = 128, ef_search = 64)")?;
        let build = t.elapsed().as_secs_f64();
        let sql = format!("SELECT id FROM v ORDER BY array_cosine_distance(embedding, CAST(? AS FLOAT[{DIM}])) LIMIT 10");
        let mut ms = Vec::new();
        let mut hits = 0usize;
        for (qi, q) in queries[..n_exact].iter().enumerate() {
            let lit = vector_literal(q);
            let t = Instant::now();
            let mut stmt = conn.prepare_cached(&sql)?;
            let ids: Vec<String> = stmt
                .query_map([lit], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            let want: HashSet<&String> = truth[qi].iter().collect();
            hits += ids.iter().filter(|i| want.contains(i)).count();
        }
        let q2 = {
            let c1 = conn.try_clone()?;
            let c2 = conn.try_clone()?;
            let conns = [std::sync::Mutex::new(c1), std::sync::Mutex::new(c2)];
            let counter = std::sync::atomic::AtomicUsize::new(0);
            qps(2, &queries[..n_exact], |q| {
                let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 2;
                let c = conns[k].lock().unwrap();
                let mut stmt = c.prepare_cached(&sql).unwrap();
                let _ids: Vec<String> = stmt
                    .query_map([vector_literal(q)], |r| r.get(0))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
            })
        };
        Ok((timing(ms), q2, hits as f64 / (10 * n_exact) as f64, build))
    })();
    match &vss {
        Ok((t, q, recall, build)) => println!(
            "DuckDB VSS via SQL:  p50 {:>8.3} ms  p99 {:>8.3} ms  {:>8.1} q/s (2 threads)  recall@10 {recall:.3}  (index build {build:.1} s)",
            t.p50_ms, t.p99_ms, q
        ),
        Err(e) => println!("DuckDB VSS via SQL:  not measured: the vss extension did not load ({e})"),
    }

    // 4. The served path across owners (an operator's all_owners search): usearch HNSW + row
    // fetch, as /api/memory/search runs it.
    let all = Scope::AllOwners;
    for q in &queries[..20] {
        memory.search_blocking(&all, q, 10, None)?;
    }
    let mut ms = Vec::new();
    let mut hits = 0usize;
    for (qi, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let (res, path) = memory.search_blocking(&all, q, 10, None)?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(path, SearchPath::Hnsw);
        if qi < n_exact {
            let want: HashSet<&String> = truth[qi].iter().collect();
            hits += res.iter().filter(|h| want.contains(&h.id)).count();
        }
    }
    let served_qps = qps(2, &queries, |q| {
        memory.search_blocking(&all, q, 10, None).unwrap();
    });
    let served = timing(ms);
    let recall = hits as f64 / (10 * n_exact) as f64;
    println!(
        "served (HNSW + row, all owners): p50 {:>8.3} ms  p99 {:>8.3} ms  {:>8.1} q/s (2 threads)  recall@10 {recall:.3}",
        served.p50_ms, served.p99_ms, served_qps
    );
    println!(
        "ratios: served p50 is {:.1}x faster than exact",
        exact.p50_ms / served.p50_ms
    );
    if let Ok((t, q, _, _)) = &vss {
        println!(
            "ratios: served p50 is {:.1}x faster than VSS via SQL; served q/s {:.1}x VSS",
            t.p50_ms / served.p50_ms,
            served_qps / q
        );
    }
    // efSearch sweep: the speed/recall trade-off of the served path on this index.
    for ef in [16usize, 24, 32, 48, 64, 96] {
        memory.set_ef_search(ef);
        let mut ms = Vec::new();
        let mut hits = 0usize;
        for (qi, q) in queries.iter().enumerate() {
            let t = Instant::now();
            let (res, _) = memory.search_blocking(&all, q, 10, None)?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            if qi < n_exact {
                let want: HashSet<&String> = truth[qi].iter().collect();
                hits += res.iter().filter(|h| want.contains(&h.id)).count();
            }
        }
        let t = timing(ms);
        println!(
            "  efSearch {ef:>3} ({}): p50 {:>7.3} ms  p99 {:>7.3} ms  recall@10 {:.3}",
            cfg.memory.hnsw_quantization,
            t.p50_ms,
            t.p99_ms,
            hits as f64 / (10 * n_exact) as f64
        );
    }
    memory.set_ef_search(cfg.memory.hnsw_ef_search);

    // 4b. One owner's search: a small owner and the large one, each by the exact scan of its
    // rows and by the graph filtered to them, against the exact top 10 of that owner's rows.
    for (label, o) in [("small owner", 1usize), ("large owner", 0)] {
        let who = accounts[o].clone();
        let scope = Scope::Owner(&who);
        let truth: Vec<HashSet<String>> = queries[..n_exact]
            .iter()
            .map(|q| {
                memory
                    .exact_search_blocking(&scope, q, 10, None)
                    .map(|h| h.into_iter().map(|h| h.id).collect())
            })
            .collect::<Result<_, _>>()?;
        for (path_label, below) in [("exact scan", u64::MAX), ("filtered HNSW", 0)] {
            memory.set_exact_below(below);
            let mut ms = Vec::new();
            let mut hits = 0usize;
            for (qi, q) in queries[..n_exact].iter().enumerate() {
                let t = Instant::now();
                let (res, _) = memory.search_blocking(&scope, q, 10, None)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                hits += res.iter().filter(|h| truth[qi].contains(&h.id)).count();
            }
            let q2 = qps(2, &queries[..n_exact], |q| {
                memory.search_blocking(&scope, q, 10, None).unwrap();
            });
            let t = timing(ms);
            let want = truth.iter().map(HashSet::len).sum::<usize>().max(1);
            println!(
                "{label} ({} rows), {path_label:<13}: p50 {:>7.3} ms  p99 {:>7.3} ms  {:>8.1} q/s (2 threads)  recall@10 {:.3}",
                rows_of[o].len(),
                t.p50_ms,
                t.p99_ms,
                q2,
                hits as f64 / want as f64
            );
        }
    }
    // 4c. The large owner's filtered walk across efSearch (the walk asks usearch for
    // `filtered_candidates` results, so its beam widens by the owner's share of the graph).
    {
        let who = accounts[0].clone();
        let scope = Scope::Owner(&who);
        let truth: Vec<HashSet<String>> = queries[..n_exact]
            .iter()
            .map(|q| {
                memory
                    .exact_search_blocking(&scope, q, 10, None)
                    .map(|h| h.into_iter().map(|h| h.id).collect())
            })
            .collect::<Result<_, _>>()?;
        memory.set_exact_below(0);
        for ef in [32usize, 64, 128, 256] {
            memory.set_ef_search(ef);
            let mut ms = Vec::new();
            let mut hits = 0usize;
            for (qi, q) in queries[..n_exact].iter().enumerate() {
                let t = Instant::now();
                let (res, _) = memory.search_blocking(&scope, q, 10, None)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                hits += res.iter().filter(|h| truth[qi].contains(&h.id)).count();
            }
            let t = timing(ms);
            let want = truth.iter().map(HashSet::len).sum::<usize>().max(1);
            println!(
                "  large owner filtered, efSearch {ef:>3} (asks {}): p50 {:>7.3} ms  p99 {:>7.3} ms  recall@10 {:.3}",
                heady_origin::memory::filtered_candidates(10, ef, rows_of[0].len() as u64, memory.len()),
                t.p50_ms,
                t.p99_ms,
                hits as f64 / want as f64
            );
        }
        memory.set_ef_search(cfg.memory.hnsw_ef_search);
    }
    memory.set_exact_below(cfg.memory.exact_below);
    println!(
        "served path per owner: exact scan below memory.exact_below = {} rows, filtered HNSW above",
        cfg.memory.exact_below
    );
    let idx = memory.index_stats();
    println!(
        "index: {} vectors, {:.1} MiB",
        idx.size,
        idx.memory_bytes as f64 / 1048576.0
    );

    // 5. Start-up of the real binary on this data (graceful stop first: checkpoint + index file).
    let _ = stop_tx.send(());
    rt.block_on(server)??;
    drop(state);
    drop(memory);
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("heady-origin"))
        .filter(|p| p.exists());
    match bin {
        None => println!("start-up: not measured (build the binary first: cargo build --release -p heady-origin)"),
        Some(bin) => {
            for (label, remove_index) in [("persisted index", false), ("no index file (rebuild)", true)] {
                if remove_index {
                    let _ = std::fs::remove_file(dir.path().join("hnsw.usearch"));
                }
                let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                let t = Instant::now();
                let mut child = std::process::Command::new(&bin)
                    .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
                    .arg(dir.path())
                    .env("HEADY_LOG", "warn")
                    .env("HEADY_DEFENSE", "off")
                    .spawn()?;
                let (ready, loaded, indexed) = rt.block_on(async {
                    let c = reqwest::Client::new();
                    let (mut ready, mut loaded) = (None, None);
                    loop {
                        if t.elapsed() > Duration::from_secs(600) || matches!(child.try_wait(), Ok(Some(_))) {
                            eprintln!("start-up: the daemon exited or timed out");
                            break (ready, loaded, None);
                        }
                        if ready.is_none() {
                            if let Ok(r) = c.get(format!("http://127.0.0.1:{port}/ready")).send().await {
                                if r.status() == 200 {
                                    ready = Some(t.elapsed().as_secs_f64());
                                }
                            }
                        } else if let Ok(r) = c.get(format!("http://127.0.0.1:{port}/api/memory/stats")).bearer_auth(&keys[0]).send().await {
                            let v: serde_json::Value = r.json().await.unwrap_or_default();
                            if v["index"]["state"] == "ready" && loaded.is_none() {
                                loaded = Some(t.elapsed().as_secs_f64());
                            }
                            if v["index"]["state"] == "ready" && v["index"]["pending"] == 0 {
                                break (ready, loaded, Some(t.elapsed().as_secs_f64()));
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
                let _ = child.wait();
                println!(
                    "start-up with {n} vectors, {label}: /ready in {:.2} s; index loaded in {:.2} s (exact DuckDB scans before); every row in the graph after {:.2} s (queued rows brute-forced until then)",
                    ready.unwrap_or(f64::NAN),
                    loaded.unwrap_or(f64::NAN),
                    indexed.unwrap_or(f64::NAN)
                );
            }
        }
    }
    Ok(())
}
