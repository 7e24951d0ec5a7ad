//! Monte Carlo readiness: from a provider's recent outcomes (success and latency samples),
//! estimate the probability that a call answers within a deadline. Seeded, so a given
//! history and seed always give the same estimate.

use crate::zone::splitmix64;
use serde::Serialize;

/// A small seeded generator (SplitMix64 stream); enough for sampling, no dependency.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// P(success within the deadline).
    pub p: f64,
    /// Observations the estimate rests on.
    pub observations: usize,
    pub trials: u32,
}

/// `history` holds recent `(success, latency_ms)` outcomes. Samples `trials` calls: success with the Laplace-smoothed success rate
/// ((s + 1) / (n + 2)), latency bootstrapped from the observed latencies of successes.
/// `None` without observations: nothing to estimate from.
pub fn estimate(
    history: &[(bool, f64)],
    deadline_ms: f64,
    trials: u32,
    seed: u64,
) -> Option<Estimate> {
    if history.is_empty() || trials == 0 {
        return None;
    }
    let ok_latencies: Vec<f64> = history
        .iter()
        .filter(|(ok, l)| *ok && l.is_finite())
        .map(|(_, l)| *l)
        .collect();
    let n = history.len();
    let p_success = (ok_latencies.len() as f64 + 1.0) / (n as f64 + 2.0);
    let mut rng = SeededRng::new(seed);
    let mut hits = 0u32;
    if !ok_latencies.is_empty() {
        let k = ok_latencies.len() as u64;
        for _ in 0..trials {
            // One draw per trial: the high half decides success, the low half picks a latency.
            let r = rng.next_u64();
            if ((r >> 32) as f64) < p_success * 4_294_967_296.0
                && ok_latencies[(((r & 0xFFFF_FFFF) * k) >> 32) as usize] <= deadline_ms
            {
                hits += 1;
            }
        }
    }
    Some(Estimate {
        p: hits as f64 / trials as f64,
        observations: n,
        trials,
    })
}

/// The chance that a fallback chain finishes in time: each trial walks the chain, spending a
/// sampled latency on every failure (failures take their observed latency), until a call
/// succeeds within what is left of the deadline. Providers with no history are skipped.
pub fn estimate_chain(
    chain: &[&[(bool, f64)]],
    deadline_ms: f64,
    trials: u32,
    seed: u64,
) -> Option<Estimate> {
    let known: Vec<&[(bool, f64)]> = chain.iter().copied().filter(|h| !h.is_empty()).collect();
    if known.is_empty() || trials == 0 {
        return None;
    }
    let mut rng = SeededRng::new(seed);
    let mut hits = 0u32;
    for _ in 0..trials {
        let mut spent = 0.0;
        for h in &known {
            let (ok, latency) = h[rng.below(h.len())];
            spent += if latency.is_finite() {
                latency
            } else {
                deadline_ms
            };
            if spent > deadline_ms {
                break;
            }
            if ok {
                hits += 1;
                break;
            }
        }
    }
    Some(Estimate {
        p: hits as f64 / trials as f64,
        observations: known.iter().map(|h| h.len()).sum(),
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_reliable_provider_is_ready_slow_one_is_not() {
        let fast: Vec<(bool, f64)> = (0..50).map(|i| (true, 20.0 + i as f64)).collect();
        let slow: Vec<(bool, f64)> = (0..50).map(|i| (true, 900.0 + i as f64)).collect();
        let e = estimate(&fast, 500.0, 2_000, 1).unwrap();
        assert!(e.p > 0.9, "{e:?}");
        let e = estimate(&slow, 500.0, 2_000, 1).unwrap();
        assert_eq!(e.p, 0.0, "{e:?}");
        assert!(estimate(&[], 500.0, 2_000, 1).is_none());
    }

    #[test]
    fn failures_lower_the_estimate() {
        let mixed: Vec<(bool, f64)> = (0..100).map(|i| (i % 2 == 0, 10.0)).collect();
        let e = estimate(&mixed, 500.0, 4_000, 7).unwrap();
        assert!((e.p - 0.5).abs() < 0.05, "{e:?}");
    }

    #[test]
    fn a_chain_with_a_good_fallback_beats_its_first_member() {
        let flaky: Vec<(bool, f64)> = (0..40).map(|i| (i % 4 == 0, 50.0)).collect();
        let good: Vec<(bool, f64)> = (0..40).map(|_| (true, 100.0)).collect();
        let alone = estimate_chain(&[&flaky], 1_000.0, 2_000, 3).unwrap();
        let chain = estimate_chain(&[&flaky, &good], 1_000.0, 2_000, 3).unwrap();
        assert!(chain.p > alone.p + 0.5, "{alone:?} {chain:?}");
    }

    proptest! {
        #[test]
        fn seeded_and_bounded(
            hist in proptest::collection::vec((any::<bool>(), 0.0f64..2_000.0), 1..100),
            deadline in 0.0f64..3_000.0,
            seed in any::<u64>(),
        ) {
            let a = estimate(&hist, deadline, 500, seed).unwrap();
            let b = estimate(&hist, deadline, 500, seed).unwrap();
            prop_assert_eq!(a, b);
            prop_assert!((0.0..=1.0).contains(&a.p));
            // A later deadline never makes the estimate worse (same samples, same seed).
            let later = estimate(&hist, deadline + 1_000.0, 500, seed).unwrap();
            prop_assert!(later.p >= a.p);
        }
    }
}
