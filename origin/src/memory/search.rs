//! The served search: the HNSW graph's best matches merged with an exact scan of the rows
//! still queued for it, so an acknowledged insert is found before the indexer reaches it.

use super::index::Hit;
use super::pending::PendingChunk;
use std::collections::HashSet;
use std::sync::Arc;

/// Merges the best matches among `queued` (exact cosine distance) into `hits`, which is sorted
/// by distance, keeping the best `top_k`. Only rows of `owner` count (all rows when `None`),
/// and of those only the ones `alive` still knows (a row deleted while queued is skipped). A
/// key already in `hits` is not added twice.
pub fn merge_queued(
    query: &[f32],
    top_k: usize,
    queued: &[Arc<PendingChunk>],
    owner: Option<u32>,
    alive: &dyn Fn(u64) -> bool,
    hits: &mut Vec<Hit>,
) {
    if queued.is_empty() || top_k == 0 {
        hits.truncate(top_k);
        return;
    }
    let dim = query.len();
    let qn = query.iter().map(|x| x * x).sum::<f32>().sqrt();
    let q_inv = if qn > 0.0 { 1.0 / qn } else { 0.0 };
    let mut seen: HashSet<u64> = hits.iter().map(|h| h.key).collect();
    for c in queued {
        for (((key, v), inv_norm), o) in c
            .keys
            .iter()
            .zip(c.vectors.chunks_exact(dim))
            .zip(&c.inv_norms)
            .zip(&c.owners)
        {
            if owner.is_some_and(|want| want != *o) {
                continue;
            }
            let distance = 1.0 - dot(v, query) * q_inv * inv_norm;
            if hits.len() < top_k || distance < hits[hits.len() - 1].distance {
                if seen.contains(key) || !alive(*key) {
                    continue;
                }
                seen.insert(*key);
                let pos = hits.partition_point(|h| h.distance <= distance);
                hits.insert(
                    pos,
                    Hit {
                        key: *key,
                        distance,
                    },
                );
                if hits.len() > top_k {
                    if let Some(dropped) = hits.pop() {
                        seen.remove(&dropped.key);
                    }
                }
            }
        }
    }
}

/// Dot product with eight independent sums, which the compiler turns into SIMD (a single
/// running sum cannot be reordered, so it stays scalar).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
        let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (n(a) * n(b))
    }

    fn queue(rows: &[(u64, Vec<f32>)], per_chunk: usize) -> Vec<Arc<PendingChunk>> {
        rows.chunks(per_chunk)
            .map(|part| {
                let mut c = PendingChunk::with_capacity(part.len(), part[0].1.len());
                for (k, v) in part {
                    c.push(*k, (*k % 3) as u32, v);
                }
                Arc::new(c)
            })
            .collect()
    }

    fn keys(hits: &[Hit]) -> Vec<u64> {
        hits.iter().map(|h| h.key).collect()
    }

    /// Whatever split between graph and queue, the merge returns the exact top k of the union.
    #[test]
    fn the_merge_is_the_exact_top_k_of_graph_hits_and_queued_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let dim = 19; // not a multiple of 8: the dot product's tail counts
        for round in 0..50 {
            let rows: Vec<(u64, Vec<f32>)> = (0..200u64)
                .map(|k| (k, (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()))
                .collect();
            let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let top_k = 1 + round % 12;
            let mut all: Vec<(u64, f32)> = rows
                .iter()
                .map(|(k, v)| (*k, cosine_distance(v, &query)))
                .collect();
            all.sort_by(|a, b| a.1.total_cmp(&b.1));
            // The graph answered for the first half (its own best top_k); the rest is queued.
            let split = rng.random_range(0..rows.len());
            let mut in_graph: Vec<(u64, f32)> = all
                .iter()
                .filter(|(k, _)| (*k as usize) < split)
                .copied()
                .collect();
            in_graph.truncate(top_k);
            let mut hits: Vec<Hit> = in_graph
                .iter()
                .map(|&(key, distance)| Hit { key, distance })
                .collect();
            merge_queued(
                &query,
                top_k,
                &queue(&rows[split..], 7),
                None,
                &|_| true,
                &mut hits,
            );
            let want: Vec<u64> = all.iter().take(top_k).map(|(k, _)| *k).collect();
            assert_eq!(keys(&hits), want, "round {round}, split {split}");
            for (h, (_, d)) in hits.iter().zip(&all) {
                assert!((h.distance - d).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn a_row_both_in_the_graph_and_queued_is_returned_once() {
        let rows = vec![(1, vec![1.0, 0.0]), (2, vec![0.0, 1.0])];
        let mut hits = vec![Hit {
            key: 1,
            distance: 0.0,
        }];
        merge_queued(&[1.0, 0.0], 5, &queue(&rows, 1), None, &|_| true, &mut hits);
        assert_eq!(keys(&hits), vec![1, 2]);
    }

    #[test]
    fn a_zero_vector_matches_nothing_and_an_empty_queue_changes_nothing() {
        let rows = vec![(1, vec![0.0, 0.0]), (2, vec![1.0, 1.0])];
        let mut hits = Vec::new();
        merge_queued(&[1.0, 1.0], 2, &queue(&rows, 2), None, &|_| true, &mut hits);
        assert_eq!(keys(&hits), vec![2, 1]);
        assert_eq!(hits[1].distance, 1.0);
        let mut hits = vec![Hit {
            key: 9,
            distance: 0.5,
        }];
        merge_queued(&[1.0, 1.0], 3, &[], None, &|_| true, &mut hits);
        assert_eq!(keys(&hits), vec![9]);
    }

    /// Queued rows of other owners, and rows deleted while queued, are never merged in.
    #[test]
    fn the_merge_keeps_only_the_owners_live_rows() {
        // Owners are key % 3 (see `queue`).
        let rows: Vec<(u64, Vec<f32>)> = (0..30u64)
            .map(|k| (k, vec![1.0, k as f32 * 0.01]))
            .collect();
        let q = queue(&rows, 4);
        let mut hits = Vec::new();
        merge_queued(&[1.0, 0.0], 30, &q, Some(1), &|k| k != 4, &mut hits);
        let got = keys(&hits);
        assert!(got.iter().all(|k| k % 3 == 1), "{got:?}");
        assert!(!got.contains(&4), "a deleted row");
        assert_eq!(got.len(), 9);
        let mut hits = Vec::new();
        merge_queued(&[1.0, 0.0], 3, &q, Some(2), &|_| true, &mut hits);
        assert_eq!(
            keys(&hits),
            vec![2, 5, 8],
            "the owner's top 3, not the global one"
        );
    }

    #[test]
    fn dot_matches_the_plain_sum() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.1).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-3);
    }
}
