//! HNSW build throughput: `HnswIndex::add_missing` (write-locked slices, every core, idle
//! priority) against a baseline in the same run: the bare usearch index filled by the same
//! number of threads with no lock and no slicing. Then search latency while a build runs.
//!
//! `cargo run --release -p heady-origin --example bench_index [-- --n 30000 --dim 384]`

mod common;

use common::arg;
use heady_origin::memory::index::{HnswIndex, Quantization};
use heady_shared::zone::splitmix64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

fn vectors(n: usize, dim: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|i| (splitmix64(i as u64) >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect()
}

fn main() {
    let n = arg("--n", 30_000);
    let dim = arg("--dim", 384);
    let threads = std::thread::available_parallelism().map_or(2, |t| t.get());
    let data = vectors(n, dim);
    let items = || {
        data.chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| (splitmix64(i as u64 + 1), v))
    };
    println!("# HNSW build: {n} x {dim}-d, f16 graph, M=16, efConstruction=128, {threads} threads");

    // Baseline: bare usearch, one contiguous share per thread, no lock.
    let options = IndexOptions {
        dimensions: dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F16,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    };
    let bare = Index::new(&options).expect("index");
    bare.reserve_capacity_and_threads(n, threads)
        .expect("reserve");
    let all: Vec<(u64, &[f32])> = items().collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for part in all.chunks(n.div_ceil(threads)) {
            let bare = &bare;
            s.spawn(move || {
                for (k, v) in part {
                    bare.add(*k, v).expect("add");
                }
            });
        }
    });
    let bare_rate = n as f64 / t.elapsed().as_secs_f64();
    println!("bare usearch, {threads} threads:        {bare_rate:>8.0} vectors/s");

    let index = HnswIndex::new(dim, 16, 128, 64, Quantization::F16).expect("index");
    let t = Instant::now();
    for chunk in all.chunks(4096) {
        index.add_missing(chunk.iter().copied()).expect("add");
    }
    let rate = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "HnswIndex::add_missing (4096 a call):  {rate:>8.0} vectors/s  ({:.2}x bare)",
        rate / bare_rate
    );

    // Searches from one thread while another build runs: the wait for a slice to end.
    let index = HnswIndex::new(dim, 16, 128, 64, Quantization::F16).expect("index");
    index
        .add_missing(all[..1000].iter().copied())
        .expect("seed");
    let done = AtomicBool::new(false);
    let mut during = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            for chunk in all[1000..].chunks(4096) {
                index.add_missing(chunk.iter().copied()).expect("add");
            }
            done.store(true, Ordering::Release);
        });
        let mut i = 0;
        while !done.load(Ordering::Acquire) {
            let q = &all[i % n].1;
            let t = Instant::now();
            index.search(q, 10).expect("search");
            during.push(t.elapsed());
            i += 7;
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let mut after = Vec::new();
    for i in 0..during.len().clamp(100, 2000) {
        let t = Instant::now();
        index.search(all[(i * 7) % n].1, 10).expect("search");
        after.push(t.elapsed());
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
    };
    let (d50, d99) = (pct(&mut during, 0.5), pct(&mut during, 0.99));
    let (a50, a99) = (pct(&mut after, 0.5), pct(&mut after, 0.99));
    println!(
        "search during a build ({} queries):  p50 {d50:.3} ms  p99 {d99:.3} ms",
        during.len()
    );
    println!("search after it:                      p50 {a50:.3} ms  p99 {a99:.3} ms  (p99 during/after {:.1}x)", d99 / a99);
}
