//! Circuit breaker state machine, one per provider. Pure: the caller passes the time (ms).
//!
//! Closed -> Open when `consecutive_failures` calls in a row fail, or when at least
//! `min_calls` of the last `window` calls were seen and their failure rate reaches
//! `failure_rate`. Open -> HalfOpen once `cooldown_ms` has passed: one probe call is let
//! through; its success closes the breaker, its failure opens it again for another cooldown.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerPolicy {
    pub consecutive_failures: u32,
    pub failure_rate: f64,
    pub min_calls: u32,
    pub window: u32,
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_calls: 10,
            window: 20,
            cooldown_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

/// What the breaker says about one call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go ahead.
    Yes,
    /// Half-open: this call is the probe; its outcome decides.
    Probe,
    /// Open (or a probe is already out): skip this provider for `retry_in_ms`.
    No { retry_in_ms: u64 },
}

#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    policy: BreakerPolicy,
    state: BreakerState,
    opened_at_ms: u64,
    consecutive: u32,
    recent: VecDeque<bool>,
    probe_out: bool,
    opens: u64,
}

impl CircuitBreaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        CircuitBreaker {
            policy,
            state: BreakerState::Closed,
            opened_at_ms: 0,
            consecutive: 0,
            recent: VecDeque::new(),
            probe_out: false,
            opens: 0,
        }
    }

    /// The state at `now_ms` (an open breaker reads half-open once its cooldown is over).
    pub fn state(&self, now_ms: u64) -> BreakerState {
        match self.state {
            BreakerState::Open if now_ms >= self.opened_at_ms + self.policy.cooldown_ms => {
                BreakerState::HalfOpen
            }
            s => s,
        }
    }

    /// How many times it has opened since start.
    pub fn opens(&self) -> u64 {
        self.opens
    }

    /// Asks to make a call at `now_ms`. A `Probe` answer must be followed by `record`.
    pub fn admit(&mut self, now_ms: u64) -> Admit {
        match self.state(now_ms) {
            BreakerState::Closed => Admit::Yes,
            BreakerState::HalfOpen if !self.probe_out => {
                self.state = BreakerState::HalfOpen;
                self.probe_out = true;
                Admit::Probe
            }
            BreakerState::HalfOpen => Admit::No {
                retry_in_ms: self.policy.cooldown_ms.min(1_000),
            },
            BreakerState::Open => Admit::No {
                retry_in_ms: (self.opened_at_ms + self.policy.cooldown_ms).saturating_sub(now_ms),
            },
        }
    }

    /// Would `admit` let a call through at `now_ms`? (No side effect.)
    pub fn would_admit(&self, now_ms: u64) -> bool {
        match self.state(now_ms) {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => !self.probe_out,
            BreakerState::Open => false,
        }
    }

    /// A probe that was admitted but never made (the call did not happen): the next call
    /// may probe instead.
    pub fn cancel_probe(&mut self) {
        self.probe_out = false;
    }

    /// Records the outcome of a call made at or before `now_ms`.
    pub fn record(&mut self, now_ms: u64, success: bool) {
        if self.state == BreakerState::HalfOpen
            || (self.state == BreakerState::Open && self.state(now_ms) == BreakerState::HalfOpen)
        {
            self.probe_out = false;
            if success {
                self.close();
            } else {
                self.open(now_ms);
            }
            return;
        }
        if self.state == BreakerState::Open {
            // A call admitted before the breaker opened finished late: it changes nothing.
            return;
        }
        self.recent.push_back(success);
        while self.recent.len() > self.policy.window.max(1) as usize {
            self.recent.pop_front();
        }
        if success {
            self.consecutive = 0;
            return;
        }
        self.consecutive += 1;
        let failures = self.recent.iter().filter(|ok| !**ok).count() as f64;
        let seen = self.recent.len() as u32;
        let rate_trips =
            seen >= self.policy.min_calls && failures / seen as f64 >= self.policy.failure_rate;
        if self.consecutive >= self.policy.consecutive_failures || rate_trips {
            self.open(now_ms);
        }
    }

    fn open(&mut self, now_ms: u64) {
        self.state = BreakerState::Open;
        self.opened_at_ms = now_ms;
        self.opens += 1;
        self.probe_out = false;
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate: 0.5,
            min_calls: 6,
            window: 10,
            cooldown_ms: 1_000,
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_half_opens_and_closes() {
        let mut b = CircuitBreaker::new(policy());
        for t in 0..2 {
            assert_eq!(b.admit(t), Admit::Yes);
            b.record(t, false);
        }
        assert_eq!(b.state(2), BreakerState::Closed);
        b.record(2, false);
        assert_eq!(b.state(3), BreakerState::Open);
        assert_eq!(b.admit(500), Admit::No { retry_in_ms: 502 });
        assert_eq!(b.state(1_002), BreakerState::HalfOpen);
        assert_eq!(b.admit(1_002), Admit::Probe);
        assert!(
            matches!(b.admit(1_003), Admit::No { .. }),
            "one probe at a time"
        );
        b.record(1_010, true);
        assert_eq!(b.state(1_011), BreakerState::Closed);
        assert_eq!(b.admit(1_011), Admit::Yes);
        assert_eq!(b.opens(), 1);
    }

    #[test]
    fn a_failed_probe_reopens_for_a_full_cooldown() {
        let mut b = CircuitBreaker::new(policy());
        for t in 0..3 {
            b.record(t, false);
        }
        assert_eq!(b.admit(1_500), Admit::Probe);
        b.record(1_600, false);
        assert_eq!(b.state(2_599), BreakerState::Open);
        assert_eq!(b.state(2_600), BreakerState::HalfOpen);
        assert_eq!(b.opens(), 2);
    }

    #[test]
    fn opens_on_failure_rate_without_a_streak() {
        let mut b = CircuitBreaker::new(policy());
        // ok, fail, ok, fail ...: never 3 in a row, but half of the calls fail.
        for t in 0..5 {
            b.record(t, t % 2 == 0);
        }
        assert_eq!(b.state(5), BreakerState::Closed, "below min_calls");
        b.record(5, false);
        assert_eq!(b.state(6), BreakerState::Open);
    }

    proptest! {
        #[test]
        fn closed_only_with_healthy_recent_history(outcomes in proptest::collection::vec(any::<bool>(), 0..200)) {
            let mut b = CircuitBreaker::new(policy());
            let mut t = 0u64;
            for ok in outcomes {
                if !matches!(b.admit(t), Admit::No { .. }) {
                    b.record(t, ok);
                }
                t += 7;
                // Invariant: a closed breaker never holds a streak at the threshold.
                if b.state(t) == BreakerState::Closed {
                    prop_assert!(b.consecutive < policy().consecutive_failures);
                }
                // Open never lasts longer than the cooldown.
                prop_assert!(b.state(t + policy().cooldown_ms) != BreakerState::Open);
            }
        }
    }
}
