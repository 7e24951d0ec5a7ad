//! The lexical embedder (the baseline) and the local model (all-MiniLM-L6-v2) in one run:
//!
//!   deploy/setup.sh   # installs the model
//!   HEADY_EMBEDDER_MODEL_DIR=~/.cache/heady/models/all-MiniLM-L6-v2 \
//!     cargo run --release -p heady-origin --example bench_embedder [-- --secs 5 --requests 200 --reembed 2000]
//!
//! - quality on origin/tests/data/paraphrases.tsv (200 graded pairs of our domain): Spearman's
//!   rank correlation of cosine similarity with the grades, and recall@5 of paraphrase
//!   retrieval (each sentence of a pair graded 4 or 5, as a query among every sentence of the
//!   file, finds its partner in its top 5);
//! - sentences per second at batch 1 and 32 (`Embedder::embed`, the threads of
//!   `embedder.threads`' default: one per core);
//! - the p50 and p99 latency of `POST /v1/embeddings` for one sentence against a real origin
//!   (App + HTTP server on a loopback port) with each embedder;
//! - `memory reembed` of `--reembed` rows from lexical to local, its rate, and the time for
//!   100,000 rows at that rate (extrapolated unless `--reembed 100000`).

#[path = "common/mod.rs"]
mod common;

use common::arg;
use heady_origin::app::App;
use heady_origin::config::{Config, EmbedderKind};
use heady_origin::db::{Database, DbConfig};
use heady_origin::memory::embedder::{self, Embedder, LexicalEmbedder};
use heady_origin::memory::meta::{self, EmbedderRecord};
use heady_origin::memory::reembed::{self, Plan};
use heady_origin::memory::{new_key, MemoryStore, NewRow};
use heady_shared::{AccountId, Classification, Tier};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIM: usize = 384;

struct Pair {
    grade: f64,
    a: String,
    b: String,
}

fn pairs() -> Vec<Pair> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/paraphrases.tsv");
    std::fs::read_to_string(path)
        .expect("paraphrases.tsv")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Pair {
                grade: f[0].parse().expect("grade"),
                a: f[1].to_string(),
                b: f[2].to_string(),
            }
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Ranks from 1, ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            r[*k] = mean;
        }
        i = j + 1;
    }
    r
}

fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// (Spearman, recall@5, paraphrase queries).
async fn quality(e: &dyn Embedder, pairs: &[Pair]) -> (f64, f64, usize) {
    let mut sentences: Vec<String> = Vec::new();
    for p in pairs {
        for s in [&p.a, &p.b] {
            if !sentences.contains(s) {
                sentences.push(s.clone());
            }
        }
    }
    let vectors = e.embed(&sentences).await.expect("embed");
    let at = |s: &str| sentences.iter().position(|x| x == s).expect("known");
    let scores: Vec<f64> = pairs
        .iter()
        .map(|p| cosine(&vectors[at(&p.a)], &vectors[at(&p.b)]))
        .collect();
    let grades: Vec<f64> = pairs.iter().map(|p| p.grade).collect();
    let mut found = 0;
    let mut queries = 0;
    for p in pairs.iter().filter(|p| p.grade >= 4.0) {
        for (q, want) in [(&p.a, &p.b), (&p.b, &p.a)] {
            let qi = at(q);
            let mut ranked: Vec<(usize, f64)> = (0..sentences.len())
                .filter(|&i| i != qi)
                .map(|i| (i, cosine(&vectors[qi], &vectors[i])))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            queries += 1;
            if ranked.iter().take(5).any(|(i, _)| *i == at(want)) {
                found += 1;
            }
        }
    }
    let by_grade: Vec<String> = (0..=5)
        .map(|g| {
            let s: Vec<f64> = scores
                .iter()
                .zip(&grades)
                .filter(|(_, gr)| **gr == g as f64)
                .map(|(s, _)| *s)
                .collect();
            format!("{g}: {:.2}", s.iter().sum::<f64>() / s.len().max(1) as f64)
        })
        .collect();
    println!(
        "  {:<8} mean cosine by grade  {}",
        e.name(),
        by_grade.join("  ")
    );
    (
        spearman(&scores, &grades),
        found as f64 / queries as f64,
        queries,
    )
}

/// Sentences per second at `batch`, for about `secs` seconds.
async fn throughput(e: &dyn Embedder, batch: usize, secs: f64, pairs: &[Pair]) -> f64 {
    let texts: Vec<String> = pairs
        .iter()
        .cycle()
        .take(batch)
        .map(|p| p.a.clone())
        .collect();
    e.embed(&texts).await.expect("warm-up");
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed().as_secs_f64() < secs {
        e.embed(&texts).await.expect("embed");
        n += batch;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn config(dir: &std::path::Path, kind: EmbedderKind) -> Config {
    let mut cfg = Config::load(None, &[], &Default::default()).expect("config");
    cfg.data_dir = dir.to_path_buf();
    cfg.defense.enabled = false;
    cfg.embedder.kind = kind;
    cfg.embedder.model_dir = std::env::var_os("HEADY_EMBEDDER_MODEL_DIR").map(PathBuf::from);
    cfg
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

/// p50 and p99 (ms) of `/v1/embeddings` for one sentence, against a real origin.
async fn http_latency(kind: EmbedderKind, requests: usize) -> anyhow::Result<(f64, f64, String)> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), kind);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = tokio::task::spawn_blocking(move || App::open(cfg)).await??;
    let (a, _) = state
        .defense
        .accounts
        .ensure_account("bench", Tier::Enterprise, Classification::Internal, 0)
        .await?;
    let key = state
        .defense
        .accounts
        .create_key(&a.id, Default::default(), 0)
        .await?
        .key;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let server = tokio::spawn(async move {
        heady_origin::http::run(
            listener,
            st,
            async {
                let _ = stop_rx.await;
            },
            Duration::from_secs(5),
        )
        .await
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/embeddings");
    let mut lat = Vec::with_capacity(requests);
    let mut model = String::new();
    for i in 0..requests + 10 {
        let body = serde_json::json!({"input": format!("how do I rotate API key number {i}")});
        let t = Instant::now();
        let r = client
            .post(&url)
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let v: serde_json::Value = r.json().await?;
        anyhow::ensure!(status == 200, "/v1/embeddings answered {status}: {v}");
        if i >= 10 {
            lat.push(t.elapsed().as_secs_f64() * 1e3);
        }
        model = v["model"].as_str().unwrap_or_default().to_string();
    }
    let _ = stop_tx.send(());
    server.await??;
    state.shutdown().await?;
    lat.sort_by(f64::total_cmp);
    Ok((pct(&lat, 0.5), pct(&lat, 0.99), model))
}

/// Stores `n` lexical rows, then re-embeds them to `target`: (seconds, rows/s).
fn reembed_rate(
    n: usize,
    target: &dyn Embedder,
    rt: &tokio::runtime::Handle,
) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let cfg = config(dir.path(), EmbedderKind::Lexical);
    let db = Database::open(dir.path(), &DbConfig::from(&cfg.memory), Default::default())?;
    let memory = MemoryStore::open(db.clone(), &cfg.memory, None, Default::default())?;
    let lexical = LexicalEmbedder::new(DIM);
    let owner = AccountId::from_random([7; 15]);
    let texts = pairs();
    for chunk in (0..n).collect::<Vec<_>>().chunks(5_000) {
        let rows: Vec<NewRow> = chunk
            .iter()
            .map(|&i| {
                let p = &texts[i % texts.len()];
                let content = format!("{} ({i}); {}", p.a, p.b);
                NewRow {
                    owner: owner.clone(),
                    key: new_key(),
                    ts: i as i64,
                    role: "user".into(),
                    embedding: lexical.embed_one(&content),
                    content,
                    token_count: 0,
                    session_id: None,
                    metadata: None,
                }
            })
            .collect();
        memory.insert_blocking(&rows, None)?;
    }
    memory.close_blocking()?;
    drop(memory);
    meta::record(&db, &EmbedderRecord::of(&lexical))?;
    let plan = Plan {
        target,
        batch: 256,
        stop_after: None,
    };
    let start = Instant::now();
    reembed::run(&db, &plan, rt, &mut |_| {})?;
    let secs = start.elapsed().as_secs_f64();
    db.close()?;
    Ok((secs, n as f64 / secs))
}

fn main() -> anyhow::Result<()> {
    let secs = arg("--secs", 5) as f64;
    let requests = arg("--requests", 200);
    let reembed_rows = arg("--reembed", 2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = std::env::var_os("HEADY_EMBEDDER_MODEL_DIR")
        .map(PathBuf::from)
        .expect("HEADY_EMBEDDER_MODEL_DIR: the model folder deploy/setup.sh installs");
    let mut cfg = config(&dir, EmbedderKind::Local);
    cfg.embedder.model_dir = Some(dir.clone());
    let threads = embedder::local_threads(&cfg.embedder);
    let load = Instant::now();
    let local = embedder::start_local(&cfg.embedder, DIM, &dir)?;
    println!(
        "local model loaded from {} in {:.2} s; {threads} threads; load average {}",
        dir.display(),
        load.elapsed().as_secs_f64(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let lexical: Arc<dyn Embedder> = Arc::new(LexicalEmbedder::new(DIM));
    let pairs = pairs();
    rt.block_on(async {
        println!(
            "quality on {} graded pairs (tests/data/paraphrases.tsv):",
            pairs.len()
        );
        for (name, e) in [("lexical", &lexical), ("local", &local)] {
            let (rho, recall, q) = quality(e.as_ref(), &pairs).await;
            println!(
                "  {name:<8} Spearman {rho:.3}   recall@5 {recall:.3} ({q} paraphrase queries)"
            );
        }
        println!("throughput (sentences/s):");
        for (name, e) in [("lexical", &lexical), ("local", &local)] {
            let b1 = throughput(e.as_ref(), 1, secs, &pairs).await;
            let b32 = throughput(e.as_ref(), 32, secs, &pairs).await;
            println!("  {name:<8} batch 1 {b1:>10.1}   batch 32 {b32:>10.1}");
        }
        println!("POST /v1/embeddings, one sentence, {requests} requests in sequence:");
        for kind in [EmbedderKind::Lexical, EmbedderKind::Local] {
            let (p50, p99, model) = http_latency(kind, requests).await?;
            println!("  {model:<17} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms");
        }
        anyhow::Ok(())
    })?;
    let handle = rt.handle().clone();
    let (secs, rate) = reembed_rate(reembed_rows, local.as_ref(), &handle)?;
    let note = if reembed_rows >= 100_000 {
        "measured"
    } else {
        "extrapolated from this rate"
    };
    println!(
        "memory reembed lexical -> local: {reembed_rows} rows in {secs:.1} s ({rate:.0} rows/s); 100,000 rows: {:.1} min ({note})",
        100_000.0 / rate / 60.0
    );
    println!(
        "load average after: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    Ok(())
}
