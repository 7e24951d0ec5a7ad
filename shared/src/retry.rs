//! When to call a provider again after it answered 429 or 503: exponential backoff with full
//! jitter (the delay is uniform in `[0, min(cap, base * 2^n)]`), or the provider's own
//! `Retry-After` when it gave one, and never past the request's deadline.

/// The retry policy (`pipeline.retry`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Retries per provider before falling back to the next one.
    pub max_retries: u32,
    pub base_ms: u64,
    pub cap_ms: u64,
    /// A provider asking for a longer wait than this is not waited for: fall back at once.
    pub max_retry_after_ms: u64,
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call the same provider again after this many milliseconds.
    RetryIn(u64),
    /// Go on to the next provider: retries are used up, or the wait would not fit.
    FallBack(Why),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    RetriesUsed,
    /// The provider asked for a wait longer than `max_retry_after_ms`.
    WaitTooLong,
    /// The wait and another call would not fit before the deadline.
    Deadline,
}

impl Backoff {
    /// After the `retries_done`-th retry failed (0: the first call failed). `retry_after_ms` is
    /// the provider's `Retry-After`; `unit` a uniform draw in [0, 1) for the jitter;
    /// `time_left_ms` until the request's deadline; `call_ms` what a call is expected to take.
    pub fn next(
        &self,
        retries_done: u32,
        retry_after_ms: Option<u64>,
        unit: f64,
        time_left_ms: f64,
        call_ms: f64,
    ) -> Next {
        if retries_done >= self.max_retries {
            return Next::FallBack(Why::RetriesUsed);
        }
        let wait = match retry_after_ms {
            Some(ms) if ms > self.max_retry_after_ms => return Next::FallBack(Why::WaitTooLong),
            // The provider's wait, plus a little jitter so callers told the same do not
            // arrive together.
            Some(ms) => ms + (unit.clamp(0.0, 1.0) * (self.base_ms as f64 / 2.0)) as u64,
            None => self.jittered(retries_done, unit),
        };
        if wait as f64 + call_ms.max(0.0) > time_left_ms {
            return Next::FallBack(Why::Deadline);
        }
        Next::RetryIn(wait)
    }

    /// Full jitter: uniform in [0, min(cap, base * 2^n)].
    pub fn jittered(&self, n: u32, unit: f64) -> u64 {
        let ceiling = self
            .base_ms
            .saturating_mul(1u64.checked_shl(n.min(32)).unwrap_or(u64::MAX))
            .min(self.cap_ms);
        (unit.clamp(0.0, 1.0) * ceiling as f64) as u64
    }
}

/// Whether a provider's status is worth a retry on the same provider: it asked us to slow
/// down (429) or is briefly unavailable (503; Anthropic's 529 overloaded).
pub fn retryable(status: u16) -> bool {
    matches!(status, 429 | 503 | 529)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const B: Backoff = Backoff {
        max_retries: 2,
        base_ms: 200,
        cap_ms: 5_000,
        max_retry_after_ms: 10_000,
    };

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        assert_eq!(
            B.next(0, Some(1_000), 0.0, 30_000.0, 50.0),
            Next::RetryIn(1_000)
        );
        assert_eq!(
            B.next(0, Some(60_000), 0.0, 120_000.0, 50.0),
            Next::FallBack(Why::WaitTooLong)
        );
        assert_eq!(
            B.next(0, Some(2_000), 0.0, 1_500.0, 50.0),
            Next::FallBack(Why::Deadline)
        );
        assert_eq!(
            B.next(2, None, 0.5, 30_000.0, 50.0),
            Next::FallBack(Why::RetriesUsed)
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(B.jittered(0, 0.999_999), 199);
        assert_eq!(B.jittered(1, 0.999_999), 399);
        assert_eq!(B.jittered(3, 0.999_999), 1_599);
        assert_eq!(B.jittered(10, 0.999_999), 4_999);
        assert_eq!(B.jittered(200, 1.0), 5_000);
    }

    proptest! {
        #[test]
        fn waits_stay_within_bounds(n in 0u32..64, unit in 0.0f64..1.0, ra in proptest::option::of(0u64..20_000), left in 0.0f64..100_000.0) {
            match B.next(n, ra, unit, left, 10.0) {
                Next::RetryIn(ms) => {
                    prop_assert!(n < B.max_retries);
                    prop_assert!(ms as f64 + 10.0 <= left);
                    match ra {
                        Some(r) => prop_assert!(ms >= r && ms <= r + B.base_ms / 2),
                        None => prop_assert!(ms <= B.cap_ms),
                    }
                }
                Next::FallBack(_) => {}
            }
        }
    }
}
