//! The origin's exact limiter: a sliding log per subject, plus the auto-ban rule.
//!
//! A request is admitted when fewer than `limit` requests were admitted in `(now - window, now]`.
//! Unlike the edge's sliding-window counter ([`crate::limiter::SubjectPolicy`]) this never
//! over-admits, at the price of remembering one timestamp per admitted request (at most
//! `limit` per subject). The Redis script `origin/src/defense/sliding_log.lua` runs the same
//! steps in the same order on one Redis hash (the log packed inside); the in-process
//! fallback runs this code. A test replays one trace through both and expects identical
//! decisions.
//!
//! Steps, per request at `now` (milliseconds):
//! 1. banned until later than `now` -> `Banned`;
//! 2. count the attempt in the fixed window containing `now` (admitted or not);
//! 3. unlimited tier -> `Metered` (admitted, the attempt count is the meter);
//! 4. attempts >= `threshold_factor x limit` -> ban for `BanPolicy::ttl_for(offences)`,
//!    doubling per remembered offence;
//! 5. drop log entries with `at + window <= now`; admit and log `now` when fewer than `limit`
//!    remain, else `Limited` with the time until the oldest needed entry leaves the window.

use crate::limiter::{BanPolicy, LimitOutcome, LimiterConfigError};
use crate::tiers::TierLimits;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// `None`: unlimited but metered.
    limit: Option<u32>,
    window_ms: u64,
    ban: BanPolicy,
}

/// What the log remembers about one subject (the Redis script keeps the same in three keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogState {
    /// Admission times inside the window, oldest first.
    pub admitted: VecDeque<u64>,
    pub attempts_window_start_ms: u64,
    pub attempts: u64,
    pub banned_until_ms: u64,
    pub offences: u32,
    pub offences_expire_at_ms: u64,
}

impl LogState {
    /// Nothing left worth remembering at `now`: the in-process limiter may forget the subject.
    pub fn is_idle(&self, window_ms: u64, now_ms: u64) -> bool {
        self.banned_until_ms <= now_ms
            && self.offences_expire_at_ms <= now_ms
            && self
                .admitted
                .back()
                .is_none_or(|&at| at + window_ms <= now_ms)
            && self.attempts_window_start_ms + window_ms <= now_ms
    }
}

impl LogPolicy {
    pub fn new(limits: TierLimits, ban: BanPolicy) -> Result<Self, LimiterConfigError> {
        ban.validate()?;
        let window_ms = u64::from(limits.window_secs) * 1000;
        if window_ms == 0 {
            return Err(LimiterConfigError::ZeroWindow);
        }
        Ok(LogPolicy {
            limit: limits.requests_per_window,
            window_ms,
            ban,
        })
    }

    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    pub fn ban(&self) -> BanPolicy {
        self.ban
    }

    /// `(limit, window_ms)` for [`crate::limiter::rate_limit_headers`]; `None` when unlimited.
    pub fn quota(&self) -> Option<(u32, u64)> {
        self.limit.map(|l| (l, self.window_ms))
    }

    /// Decides one request at `now_ms`, recording it in `state`.
    pub fn decide(&self, state: &mut LogState, now_ms: u64) -> LimitOutcome {
        if state.banned_until_ms > now_ms {
            return LimitOutcome::Banned {
                until_ms: state.banned_until_ms,
                retry_after_ms: state.banned_until_ms - now_ms,
                newly: false,
            };
        }
        let window_start = now_ms - now_ms % self.window_ms;
        if state.attempts_window_start_ms != window_start {
            state.attempts_window_start_ms = window_start;
            state.attempts = 0;
        }
        state.attempts += 1;
        let Some(limit) = self.limit else {
            return LimitOutcome::Metered {
                used_in_window: state.attempts,
            };
        };
        let remembered = if state.offences_expire_at_ms > now_ms {
            state.offences
        } else {
            0
        };
        if let Some(ttl_secs) = self.ban.ban_ttl_secs(state.attempts, limit, remembered) {
            let ttl_ms = ttl_secs * 1000;
            state.banned_until_ms = now_ms + ttl_ms;
            state.offences = remembered + 1;
            state.offences_expire_at_ms = now_ms + self.ban.offence_memory_secs * 1000;
            state.attempts = 0;
            return LimitOutcome::Banned {
                until_ms: now_ms + ttl_ms,
                retry_after_ms: ttl_ms,
                newly: true,
            };
        }
        while let Some(&at) = state.admitted.front() {
            if at + self.window_ms > now_ms {
                break;
            }
            state.admitted.pop_front();
        }
        let count = state.admitted.len() as u64;
        let limit64 = u64::from(limit);
        if count < limit64 {
            state.admitted.push_back(now_ms);
            // Every slot is free again one window after this, the newest admission.
            LimitOutcome::Allowed {
                remaining: (limit64 - count - 1) as u32,
                reset_after_ms: self.window_ms,
            }
        } else if limit == 0 {
            LimitOutcome::Limited {
                remaining: 0,
                reset_after_ms: self.window_ms,
                retry_after_ms: None,
            }
        } else {
            // The (count - limit)th entry must leave for one slot to open.
            let needed = state.admitted[(count - limit64) as usize];
            let wait = needed + self.window_ms - now_ms;
            LimitOutcome::Limited {
                remaining: 0,
                reset_after_ms: wait,
                retry_after_ms: Some(wait),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::exact::ExactLog;
    use crate::limiter::trace::{bursty_trace, TraceConfig};
    use crate::tiers::Tier;
    use proptest::prelude::*;

    fn no_ban() -> BanPolicy {
        BanPolicy {
            threshold_factor: 0,
            ..BanPolicy::default()
        }
    }

    #[test]
    fn admits_exactly_the_limit_in_any_window() {
        let p = LogPolicy::new(Tier::Pro.limits(), no_ban()).unwrap();
        let mut s = LogState::default();
        let admitted = (0..1000)
            .filter(|i| p.decide(&mut s, 5_000 + i).is_admitted())
            .count();
        assert_eq!(admitted, 120);
        // The first admission was at 5_000: one slot opens at 65_000, not before.
        assert!(!p.decide(&mut s, 64_999).is_admitted());
        assert!(p.decide(&mut s, 65_000).is_admitted());
        assert!(!p.decide(&mut s, 65_000).is_admitted());
    }

    #[test]
    fn limited_says_when_a_slot_opens_and_headers_follow() {
        let p = LogPolicy::new(Tier::Free.limits(), no_ban()).unwrap();
        let mut s = LogState::default();
        for i in 0..30 {
            assert!(p.decide(&mut s, 1_000 + i * 100).is_admitted());
        }
        let out = p.decide(&mut s, 10_000);
        assert_eq!(
            out,
            LimitOutcome::Limited {
                remaining: 0,
                reset_after_ms: 51_000,
                retry_after_ms: Some(51_000)
            }
        );
        let h = crate::limiter::rate_limit_headers("free", p.quota(), &out);
        assert_eq!(h[0], ("RateLimit-Policy", "\"free\";q=30;w=60".to_string()));
        assert_eq!(h[1], ("RateLimit", "\"free\";r=0;t=51".to_string()));
        assert_eq!(h[2], ("Retry-After", "51".to_string()));
    }

    #[test]
    fn bans_at_three_times_the_limit_and_doubles_for_repeat_offenders() {
        let p = LogPolicy::new(Tier::Free.limits(), BanPolicy::default()).unwrap();
        let mut s = LogState::default();
        let mut outcomes = Vec::new();
        for i in 0..90 {
            outcomes.push(p.decide(&mut s, 1_000 + i));
        }
        assert_eq!(outcomes.iter().filter(|o| o.is_admitted()).count(), 30);
        assert_eq!(
            outcomes[89],
            LimitOutcome::Banned {
                until_ms: 1_089 + 900_000,
                retry_after_ms: 900_000,
                newly: true
            }
        );
        assert!(matches!(
            p.decide(&mut s, 2_000),
            LimitOutcome::Banned { newly: false, .. }
        ));
        // After the ban, offend again: 30 minutes this time.
        let t = 1_089 + 900_000;
        let mut last = None;
        for i in 0..90 {
            last = Some(p.decide(&mut s, t + i));
        }
        assert!(matches!(
            last,
            Some(LimitOutcome::Banned {
                retry_after_ms: 1_800_000,
                newly: true,
                ..
            })
        ));
    }

    #[test]
    fn enterprise_is_metered_not_limited() {
        let p = LogPolicy::new(Tier::Enterprise.limits(), BanPolicy::default()).unwrap();
        let mut s = LogState::default();
        for i in 0..10_000u64 {
            assert!(p.decide(&mut s, i).is_admitted());
        }
        assert_eq!(
            p.decide(&mut s, 10_000),
            LimitOutcome::Metered {
                used_in_window: 10_001
            }
        );
        assert!(crate::limiter::rate_limit_headers(
            "enterprise",
            p.quota(),
            &LimitOutcome::Metered { used_in_window: 1 }
        )
        .is_empty());
    }

    #[test]
    fn agrees_with_the_reference_log_on_a_bursty_trace() {
        let trace = bursty_trace(&TraceConfig::default());
        let mut states = std::collections::HashMap::new();
        let mut checked = 0;
        for e in trace.events.iter().take(200_000) {
            let limit = trace.subjects[e.subject as usize].limit;
            let (p, s, r) = states.entry(e.subject).or_insert_with(|| {
                let limits = TierLimits {
                    requests_per_window: Some(limit),
                    window_secs: (trace.window_ms / 1000) as u32,
                };
                (
                    LogPolicy::new(limits, no_ban()).unwrap(),
                    LogState::default(),
                    ExactLog::new(limit, trace.window_ms),
                )
            });
            assert_eq!(p.decide(s, e.at_ms).is_admitted(), r.decide(e.at_ms, 1));
            checked += 1;
        }
        assert!(checked > 1000);
    }

    proptest! {
        #[test]
        fn never_more_than_limit_in_any_window(gaps in proptest::collection::vec(0u64..3_000, 1..600)) {
            let p = LogPolicy::new(Tier::Free.limits(), no_ban()).unwrap();
            let mut s = LogState::default();
            let mut t = 0;
            let mut admitted = Vec::new();
            for g in gaps {
                t += g;
                if p.decide(&mut s, t).is_admitted() {
                    admitted.push(t);
                }
            }
            for (i, &a) in admitted.iter().enumerate() {
                let in_window = admitted[i..].iter().take_while(|&&b| b < a + 60_000).count();
                prop_assert!(in_window <= 30);
            }
        }
    }
}
