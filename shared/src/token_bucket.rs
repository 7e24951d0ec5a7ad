//! Token limits per tier: a bucket per subject holding at most `limit` tokens, refilled
//! continuously at `limit` tokens per window (so a subject that spent nothing for a window may
//! spend `limit` at once, and one that spends steadily gets `limit` per window).
//!
//! A request is admitted on an estimate before the provider is called (its prompt plus the
//! completion it may produce) and settled after it with the real count: the difference is
//! taken or given back. The origin's Redis script `origin/src/usage/token_bucket.lua` runs the
//! same steps on one Redis hash per subject; the in-process fallback runs this code; a test
//! replays one trace through both and expects identical answers.
//!
//! The state is kept as integers so that Redis's Lua (doubles) computes it exactly: `debt` is
//! the tokens spent and not yet refilled, scaled by the window in milliseconds
//! (`tokens x window_ms`), which refills by `limit` per millisecond. The bucket is full at
//! debt 0 and empty at `limit x window_ms`. Divisions (what is left, how long to wait) are
//! made here from the debt, never in Lua.
//!
//! Steps, at `now` (milliseconds):
//! 1. refill: `debt -= limit x (now - at)` (not below 0), `at = max(at, now)`;
//! 2. reserve `cost`: admitted when `debt + min(cost, limit) x window_ms <= limit x window_ms`
//!    (a request estimated above the whole limit waits for a full bucket rather than for
//!    ever), then `debt += cost x window_ms`;
//! 3. settle `(reserved, actual)`: `debt += actual x window_ms`, then `debt -= reserved x
//!    window_ms` (not below 0). A request that used more than it reserved leaves the subject
//!    in debt, which later requests wait out.

use crate::limiter::{rate_limit_headers, LimitOutcome};

/// The largest limit and cost the bucket takes, so `limit x window_ms` and any sum of debts
/// stay exact in a double (2^53).
pub const MAX_TOKENS: u64 = 1_000_000_000;
/// The longest window: an hour.
pub const MAX_WINDOW_MS: u64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Tokens per window; `None`: unlimited.
    limit: Option<u64>,
    window_ms: u64,
}

/// What the bucket remembers about one subject (the Redis hash has the same two fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenState {
    /// Tokens spent and not yet refilled, times `window_ms`.
    pub debt: u64,
    /// When `debt` was last brought up to date (ms).
    pub at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenPolicyError {
    #[error("the window must be 1 ms to {MAX_WINDOW_MS} ms (got {0})")]
    Window(u64),
    #[error("the limit must be at most {MAX_TOKENS} tokens (got {0})")]
    Limit(u64),
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// Admitted: `reserved` tokens are held until the request is settled.
    Admitted {
        reserved: u64,
        /// Whole tokens left in the bucket after the reservation.
        remaining: u64,
        /// Until the bucket is full again.
        reset_after_ms: u64,
    },
    /// Not admitted: nothing was reserved.
    Limited {
        remaining: u64,
        /// Until the bucket holds enough for this request.
        retry_after_ms: u64,
        reset_after_ms: u64,
    },
    /// The tier has no token limit.
    Unlimited,
}

impl TokenOutcome {
    pub fn is_admitted(&self) -> bool {
        !matches!(self, TokenOutcome::Limited { .. })
    }

    /// Tokens held for the request (0 when unlimited or refused).
    pub fn reserved(&self) -> u64 {
        match self {
            TokenOutcome::Admitted { reserved, .. } => *reserved,
            _ => 0,
        }
    }
}

impl TokenPolicy {
    /// `limit`: tokens per window, `None` for unlimited.
    pub fn new(limit: Option<u64>, window_ms: u64) -> Result<TokenPolicy, TokenPolicyError> {
        if window_ms == 0 || window_ms > MAX_WINDOW_MS {
            return Err(TokenPolicyError::Window(window_ms));
        }
        if let Some(l) = limit {
            if l == 0 || l > MAX_TOKENS {
                return Err(TokenPolicyError::Limit(l));
            }
        }
        Ok(TokenPolicy { limit, window_ms })
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Step 1: brings `debt` up to `now`. Unlimited tiers keep no state.
    pub fn refill(&self, state: &mut TokenState, now_ms: u64) {
        let Some(limit) = self.limit else { return };
        if now_ms > state.at_ms {
            let refilled = limit.saturating_mul(now_ms - state.at_ms);
            state.debt = state.debt.saturating_sub(refilled);
            state.at_ms = now_ms;
        }
    }

    /// Step 2: reserves `cost` tokens at `now` when the bucket holds enough.
    pub fn reserve(&self, state: &mut TokenState, now_ms: u64, cost: u64) -> TokenOutcome {
        let Some(limit) = self.limit else {
            return TokenOutcome::Unlimited;
        };
        let cost = cost.min(MAX_TOKENS);
        self.refill(state, now_ms);
        let needed = cost.min(limit) * self.window_ms;
        let admitted = state.debt + needed <= limit * self.window_ms;
        if admitted {
            state.debt += cost * self.window_ms;
        }
        self.outcome(state.debt, cost, admitted)
    }

    /// Step 3: the request reserved `reserved` tokens and used `actual`.
    pub fn settle(&self, state: &mut TokenState, now_ms: u64, reserved: u64, actual: u64) {
        if self.limit.is_none() {
            return;
        }
        self.refill(state, now_ms);
        let (reserved, actual) = (reserved.min(MAX_TOKENS), actual.min(MAX_TOKENS));
        state.debt =
            (state.debt + actual * self.window_ms).saturating_sub(reserved * self.window_ms);
    }

    /// The outcome of a reservation of `cost` that left `debt` behind (after the reservation
    /// when `admitted`). The Redis path returns `(admitted, debt)` and answers with this.
    pub fn outcome(&self, debt: u64, cost: u64, admitted: bool) -> TokenOutcome {
        let Some(limit) = self.limit else {
            return TokenOutcome::Unlimited;
        };
        let capacity = limit * self.window_ms;
        let remaining = capacity.saturating_sub(debt) / self.window_ms;
        let reset_after_ms = debt.div_ceil(limit);
        if admitted {
            TokenOutcome::Admitted {
                reserved: cost.min(MAX_TOKENS),
                remaining,
                reset_after_ms,
            }
        } else {
            let needed = cost.min(MAX_TOKENS).min(limit) * self.window_ms;
            TokenOutcome::Limited {
                remaining,
                retry_after_ms: (debt + needed).saturating_sub(capacity).div_ceil(limit),
                reset_after_ms,
            }
        }
    }

    /// `RateLimit-Policy` and `RateLimit` for `outcome` under the policy named `name` (e.g.
    /// `"pro-tokens"`), plus `Retry-After` when refused; nothing when unlimited.
    pub fn headers(&self, name: &str, outcome: &TokenOutcome) -> Vec<(&'static str, String)> {
        let Some(limit) = self.limit else {
            return Vec::new();
        };
        let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
        let as_limit = match *outcome {
            TokenOutcome::Unlimited => return Vec::new(),
            TokenOutcome::Admitted {
                remaining,
                reset_after_ms,
                ..
            } => LimitOutcome::Allowed {
                remaining: clamp(remaining),
                reset_after_ms,
            },
            TokenOutcome::Limited {
                remaining,
                retry_after_ms,
                reset_after_ms,
            } => LimitOutcome::Limited {
                remaining: clamp(remaining),
                reset_after_ms,
                retry_after_ms: Some(retry_after_ms),
            },
        };
        rate_limit_headers(name, Some((clamp(limit), self.window_ms)), &as_limit)
    }

    /// Nothing left to remember at `now`: the in-process limiter may forget the subject.
    pub fn is_idle(&self, state: &TokenState, now_ms: u64) -> bool {
        match self.limit {
            None => true,
            Some(limit) => {
                now_ms >= state.at_ms && state.debt <= limit.saturating_mul(now_ms - state.at_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy(limit: u64) -> TokenPolicy {
        TokenPolicy::new(Some(limit), 60_000).unwrap()
    }

    #[test]
    fn a_full_bucket_admits_the_limit_then_refills_continuously() {
        let p = policy(1_000);
        let mut s = TokenState::default();
        let t = 1_000_000;
        assert!(p.reserve(&mut s, t, 600).is_admitted());
        assert!(p.reserve(&mut s, t, 400).is_admitted());
        let refused = p.reserve(&mut s, t, 100);
        // 100 tokens refill in 6 s.
        assert_eq!(
            refused,
            TokenOutcome::Limited {
                remaining: 0,
                retry_after_ms: 6_000,
                reset_after_ms: 60_000
            }
        );
        assert!(!p.reserve(&mut s, t + 5_999, 100).is_admitted());
        assert!(p.reserve(&mut s, t + 6_000, 100).is_admitted());
        // A window later everything is back.
        assert!(p.is_idle(&s, t + 66_000));
        assert_eq!(
            p.reserve(&mut s, t + 66_000, 1),
            TokenOutcome::Admitted {
                reserved: 1,
                remaining: 999,
                reset_after_ms: 60
            }
        );
    }

    #[test]
    fn settling_gives_back_or_takes_the_difference() {
        let p = policy(1_000);
        let mut s = TokenState::default();
        assert!(p.reserve(&mut s, 0, 800).is_admitted());
        // Used 200 of the 800 reserved: 800 left.
        p.settle(&mut s, 0, 800, 200);
        assert_eq!(s.debt, 200 * 60_000);
        assert!(p.reserve(&mut s, 0, 800).is_admitted());
        // Used 1,500 of 800: 1,700 spent, 700 beyond an empty bucket.
        p.settle(&mut s, 0, 800, 1_500);
        let out = p.reserve(&mut s, 0, 1);
        assert_eq!(
            out,
            TokenOutcome::Limited {
                remaining: 0,
                retry_after_ms: 42_060,
                reset_after_ms: 102_000
            }
        );
        // Giving back more than is owed leaves a full bucket, never more.
        p.settle(&mut s, 0, 100_000, 0);
        assert_eq!(s.debt, 0);
    }

    #[test]
    fn a_request_above_the_limit_waits_for_a_full_bucket() {
        let p = policy(1_000);
        let mut s = TokenState::default();
        assert!(p.reserve(&mut s, 0, 10).is_admitted());
        let out = p.reserve(&mut s, 0, 5_000);
        assert_eq!(
            out,
            TokenOutcome::Limited {
                remaining: 990,
                retry_after_ms: 600,
                reset_after_ms: 600
            }
        );
        assert!(p.reserve(&mut s, 600, 5_000).is_admitted());
        // It holds all 5,000 until settled.
        assert!(!p.reserve(&mut s, 60_600, 1).is_admitted());
    }

    #[test]
    fn headers_name_the_token_policy() {
        let p = policy(1_000);
        let mut s = TokenState::default();
        let ok = p.reserve(&mut s, 0, 250);
        assert_eq!(
            p.headers("free-tokens", &ok),
            vec![
                (
                    "RateLimit-Policy",
                    "\"free-tokens\";q=1000;w=60".to_string()
                ),
                ("RateLimit", "\"free-tokens\";r=750;t=15".to_string()),
            ]
        );
        let refused = p.reserve(&mut s, 0, 900);
        assert_eq!(
            p.headers("free-tokens", &refused),
            vec![
                (
                    "RateLimit-Policy",
                    "\"free-tokens\";q=1000;w=60".to_string()
                ),
                ("RateLimit", "\"free-tokens\";r=750;t=9".to_string()),
                ("Retry-After", "9".to_string()),
            ]
        );
        let unlimited = TokenPolicy::new(None, 60_000).unwrap();
        let out = unlimited.reserve(&mut s, 0, 1 << 40);
        assert_eq!(out, TokenOutcome::Unlimited);
        assert!(unlimited.headers("enterprise-tokens", &out).is_empty());
    }

    #[test]
    fn policies_are_checked() {
        assert_eq!(
            TokenPolicy::new(Some(1), 0),
            Err(TokenPolicyError::Window(0))
        );
        assert_eq!(
            TokenPolicy::new(Some(0), 1_000),
            Err(TokenPolicyError::Limit(0))
        );
        assert!(TokenPolicy::new(Some(MAX_TOKENS), MAX_WINDOW_MS).is_ok());
        // The largest state stays exact in a double.
        const { assert!(MAX_TOKENS * MAX_WINDOW_MS * 2 < 1 << 53) };
    }

    proptest! {
        /// Whatever the order of reservations and settlements, what was admitted in any window
        /// (settled at its real cost) never exceeds the limit plus one bucketful.
        #[test]
        fn never_more_than_a_bucket_and_a_window(
            ops in proptest::collection::vec((0u64..5_000, 0u64..400, 0u64..400), 1..300)
        ) {
            let p = policy(1_000);
            let mut s = TokenState::default();
            let mut t = 0;
            let mut spent: Vec<(u64, u64)> = Vec::new();
            for (gap, cost, actual) in ops {
                t += gap;
                if p.reserve(&mut s, t, cost).is_admitted() {
                    p.settle(&mut s, t, cost, actual.min(cost));
                    spent.push((t, actual.min(cost)));
                }
            }
            for (i, &(a, _)) in spent.iter().enumerate() {
                let in_window: u64 = spent[i..].iter().take_while(|(b, _)| *b < a + 60_000).map(|(_, n)| n).sum();
                prop_assert!(in_window <= 2_000, "{in_window} tokens in one window");
            }
        }
    }
}
