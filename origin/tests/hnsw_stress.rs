//! Stress test of the HNSW index under the daemon's concurrent use: many threads search while
//! others add, remove, reserve past capacity, save, change efSearch, and the round ends by
//! dropping the index while searches still hold it. Every quantization, many rounds.
//!
//! Bounded in time: each quantization runs `HEADY_STRESS_ROUNDS` rounds (default 1500) or
//! `HEADY_STRESS_SECS` seconds (default 40), whichever ends first. Run it under `--release`:
//! `cargo test --release -p heady-origin --test hnsw_stress -- --nocapture`.

use heady_origin::memory::index::{HnswIndex, Quantization};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const DIM: usize = 24;
const SEARCHERS: usize = 6;
const ADDERS: usize = 2;
const PER_ADDER: usize = 64;
const BATCH: usize = 32;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vector(rng: &mut StdRng) -> Vec<f32> {
    (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// Everything one round checks: the keys a search may return, and how many searches ran.
struct Round {
    index: Arc<HnswIndex>,
    added: Vec<Vec<u64>>,
    stop: AtomicBool,
    searches: AtomicUsize,
}

fn run_round(quantization: Quantization, round: u64, dir: &std::path::Path) -> usize {
    let index = Arc::new(HnswIndex::new(DIM, 8, 32, 16, quantization).expect("index"));
    // Keys are unique per round and adder; the remover takes some of them back out.
    let added: Vec<Vec<u64>> = (0..ADDERS)
        .map(|a| {
            (0..PER_ADDER)
                .map(|i| 1 + round * 1_000_000 + (a * PER_ADDER + i) as u64)
                .collect()
        })
        .collect();
    let all: HashSet<u64> = added.iter().flatten().copied().collect();
    let r = Round {
        index,
        added,
        stop: AtomicBool::new(false),
        searches: AtomicUsize::new(0),
    };
    let start = Barrier::new(SEARCHERS + ADDERS + 3);
    let save_path = dir.join(format!("round-{quantization}-{}.usearch", round % 4));
    std::thread::scope(|s| {
        for t in 0..SEARCHERS {
            let (r, all, start) = (&r, &all, &start);
            let index = Arc::clone(&r.index);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(round * 131 + t as u64);
                start.wait();
                // The index handle is dropped by whichever thread finishes last (shutdown).
                while !r.stop.load(Ordering::Relaxed) {
                    let q = vector(&mut rng);
                    let hits = index.search(&q, 10).expect("search");
                    assert!(hits.len() <= 10, "more hits than asked for");
                    for h in &hits {
                        assert!(all.contains(&h.key), "search returned a key never added");
                        assert!(
                            h.distance.is_finite() && (-0.01..=2.01).contains(&h.distance),
                            "cosine distance out of range: {}",
                            h.distance
                        );
                    }
                    r.searches.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let adders: Vec<_> = (0..ADDERS)
            .map(|a| {
                let (r, start) = (&r, &start);
                s.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(round * 977 + a as u64);
                    let vectors: Vec<Vec<f32>> = (0..PER_ADDER).map(|_| vector(&mut rng)).collect();
                    start.wait();
                    for (keys, vs) in r.added[a].chunks(BATCH).zip(vectors.chunks(BATCH)) {
                        let items: Vec<(u64, &[f32])> = keys
                            .iter()
                            .copied()
                            .zip(vs.iter().map(|v| v.as_slice()))
                            .collect();
                        r.index.add_missing(items.into_iter()).expect("add");
                    }
                })
            })
            .collect();
        // Reserve past capacity while the others run.
        s.spawn(|| {
            start.wait();
            for _ in 0..3 {
                let extra = r.index.len() + 1500;
                r.index.ensure_capacity(extra).expect("reserve");
                std::thread::yield_now();
            }
        });
        // Remove keys that are (or are about to be) in the graph; save; change efSearch.
        s.spawn(|| {
            start.wait();
            for (i, key) in r.added[0].iter().step_by(7).enumerate() {
                let _ = r.index.remove(*key);
                if i % 3 == 0 {
                    r.index.save(&save_path).expect("save");
                }
                r.index.refresh_memory_bytes();
            }
        });
        s.spawn(|| {
            start.wait();
            for ef in [8usize, 64, 16, 128, 32].iter().cycle().take(40) {
                r.index.set_ef_search(*ef);
                std::thread::yield_now();
            }
        });
        for h in adders {
            h.join().expect("adder");
        }
        r.stop.store(true, Ordering::Relaxed);
    });
    // A saved file loads back into a fresh index of the same kind.
    let reloaded = HnswIndex::new(DIM, 8, 32, 16, quantization).expect("index");
    if save_path.exists() {
        reloaded.load(&save_path).expect("load a saved index");
    }
    r.searches.load(Ordering::Relaxed)
}

#[test]
fn searches_survive_concurrent_mutation_for_every_quantization() {
    let rounds = env_or("HEADY_STRESS_ROUNDS", 1500);
    let budget = Duration::from_secs(env_or("HEADY_STRESS_SECS", 40));
    let dir = tempfile::tempdir().expect("tempdir");
    for quantization in Quantization::ALL {
        let t = Instant::now();
        let mut done = 0;
        let mut searches = 0;
        while done < rounds && t.elapsed() < budget {
            searches += run_round(quantization, done, dir.path());
            done += 1;
        }
        eprintln!(
            "[hnsw_stress] {quantization}: {done} rounds, {searches} searches in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        // Even a short budget must have raced adds against searches many times.
        assert!(done >= 20, "{quantization}: only {done} rounds ran");
    }
}
