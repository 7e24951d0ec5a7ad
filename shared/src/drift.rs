//! Page-Hinkley change detection (two-sided) and an exponentially weighted moving average.
//! Pure: one `update` per observation, no clock.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftPolicy {
    /// Changes smaller than this (in the signal's unit) are tolerated.
    pub delta: f64,
    /// Alarm threshold on the cumulative deviation (same unit).
    pub lambda: f64,
    /// Observations before any alarm (the mean needs a history).
    pub min_samples: u64,
}

impl Default for DriftPolicy {
    fn default() -> Self {
        DriftPolicy {
            delta: 0.005,
            lambda: 50.0,
            min_samples: 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// A detected change: which way, and the running mean before it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    pub direction: Direction,
    pub mean_before: f64,
    pub samples: u64,
}

#[derive(Debug, Clone)]
pub struct PageHinkley {
    policy: DriftPolicy,
    n: u64,
    mean: f64,
    up: f64,
    up_min: f64,
    down: f64,
    down_max: f64,
    alarms: u64,
}

impl PageHinkley {
    pub fn new(policy: DriftPolicy) -> Self {
        PageHinkley {
            policy,
            n: 0,
            mean: 0.0,
            up: 0.0,
            up_min: 0.0,
            down: 0.0,
            down_max: 0.0,
            alarms: 0,
        }
    }

    pub fn alarms(&self) -> u64 {
        self.alarms
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Adds one observation; returns a drift when the test fires, then starts afresh so
    /// the new level becomes the reference. Non-finite values are ignored.
    pub fn update(&mut self, x: f64) -> Option<Drift> {
        if !x.is_finite() {
            return None;
        }
        self.n += 1;
        self.mean += (x - self.mean) / self.n as f64;
        self.up += x - self.mean - self.policy.delta;
        self.up_min = self.up_min.min(self.up);
        self.down += x - self.mean + self.policy.delta;
        self.down_max = self.down_max.max(self.down);
        if self.n < self.policy.min_samples {
            return None;
        }
        let direction = if self.up - self.up_min > self.policy.lambda {
            Direction::Up
        } else if self.down_max - self.down > self.policy.lambda {
            Direction::Down
        } else {
            return None;
        };
        let drift = Drift {
            direction,
            mean_before: self.mean,
            samples: self.n,
        };
        self.alarms += 1;
        let (policy, alarms) = (self.policy, self.alarms);
        *self = PageHinkley::new(policy);
        self.alarms = alarms;
        Some(drift)
    }
}

/// Exponentially weighted moving average; the first observation is taken as is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    pub alpha: f64,
    pub value: Option<f64>,
    pub samples: u64,
}

impl Ewma {
    pub fn new(alpha: f64) -> Self {
        Ewma {
            alpha: alpha.clamp(f64::MIN_POSITIVE, 1.0),
            value: None,
            samples: 0,
        }
    }

    /// Restores a persisted average.
    pub fn with_value(alpha: f64, value: f64, samples: u64) -> Self {
        let mut e = Ewma::new(alpha);
        if value.is_finite() {
            e.value = Some(value);
            e.samples = samples;
        }
        e
    }

    pub fn update(&mut self, x: f64) -> f64 {
        if !x.is_finite() {
            return self.value.unwrap_or(0.0);
        }
        let v = match self.value {
            None => x,
            Some(v) => v + self.alpha * (x - v),
        };
        self.value = Some(v);
        self.samples += 1;
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> DriftPolicy {
        DriftPolicy {
            delta: 1.0,
            lambda: 100.0,
            min_samples: 10,
        }
    }

    #[test]
    fn raises_on_a_shift_up_and_not_on_noise() {
        let mut ph = PageHinkley::new(policy());
        for i in 0..200 {
            let noise = ((i * 37) % 11) as f64 - 5.0;
            assert_eq!(ph.update(20.0 + noise), None, "sample {i}");
        }
        let mut fired = None;
        for i in 0..50 {
            if let Some(d) = ph.update(80.0 + ((i * 13) % 7) as f64) {
                fired = Some((i, d));
                break;
            }
        }
        let (i, d) = fired.expect("a 20 -> 80 shift is detected");
        assert_eq!(d.direction, Direction::Up);
        assert!(i < 5, "detected after {i} samples");
        assert_eq!(ph.alarms(), 1);
    }

    #[test]
    fn raises_on_a_shift_down() {
        let mut ph = PageHinkley::new(DriftPolicy {
            delta: 0.01,
            lambda: 1.0,
            min_samples: 10,
        });
        for _ in 0..50 {
            assert_eq!(ph.update(0.9), None);
        }
        let d = (0..20).find_map(|_| ph.update(0.3)).expect("drop detected");
        assert_eq!(d.direction, Direction::Down);
    }

    #[test]
    fn ewma_follows_with_alpha() {
        let mut e = Ewma::new(0.5);
        assert_eq!(e.update(10.0), 10.0);
        assert_eq!(e.update(20.0), 15.0);
        assert_eq!(e.update(f64::NAN), 15.0);
        assert_eq!(e.samples, 2);
    }

    proptest! {
        #[test]
        fn a_constant_signal_never_alarms(x in -1e6f64..1e6, n in 1usize..500) {
            let mut ph = PageHinkley::new(policy());
            for _ in 0..n {
                prop_assert_eq!(ph.update(x), None);
            }
        }

        #[test]
        fn ewma_stays_within_the_range_seen(xs in proptest::collection::vec(-1e6f64..1e6, 1..100), alpha in 0.01f64..1.0) {
            let mut e = Ewma::new(alpha);
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
            for x in &xs {
                let v = e.update(*x);
                prop_assert!(v >= lo - 1e-6 && v <= hi + 1e-6);
            }
        }
    }
}
