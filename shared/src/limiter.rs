//! Per-subject rate limiting: the sliding-window counter, auto-ban, RateLimit headers.
//!
//! The edge (KV, approximate) and the origin (Redis, authoritative) run the same decision.
//! Windows are fixed, aligned to multiples of `window_ms`; a request is admitted when
//!
//! ```text
//! prev * (window - elapsed) + (curr + cost) * window  <=  limit * window
//! ```
//!
//! i.e. the estimate `prev * (1 - elapsed/window) + curr` plus `cost` is at most `limit`,
//! multiplied through by `window` so that everything is an integer. Every intermediate value
//! stays below 2^53 (where doubles, as in JavaScript or Lua, are exact), so wasm32 and x86_64
//! reach bit-identical decisions. The edge runs this counter on KV; the origin's authoritative
//! limiter is the exact log of [`crate::sliding_log`]. Only admitted requests are counted in
//! `curr`; every attempt (admitted or not) is counted in `attempts` for the ban rule.
//!
//! [`exact`] holds an exact sliding log and [`trace`] a seeded bursty trace generator and the
//! replay that measures how often the counter disagrees with the log.

use crate::tiers::TierLimits;
use serde::{Deserialize, Serialize};

/// `limit * window_ms` must not exceed this: three such terms are summed, and the sum must stay
/// below 2^53 for the Lua script's doubles to be exact.
pub const MAX_LIMIT_TIMES_WINDOW_MS: u64 = 1 << 51;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimiterConfigError {
    #[error("window_ms must be at least 1")]
    ZeroWindow,
    #[error("limit x window_ms = {product} exceeds 2^51; the Redis script's numbers would lose precision")]
    TooLarge { product: u128 },
    #[error("ban base_ttl_secs must be at least 1 and at most max_ttl_secs")]
    BanTtl,
    #[error("ban offence_memory_secs must be at least 1")]
    OffenceMemory,
}

/// A sliding-window-counter quota: at most `limit` cost units in any `window_ms`, approximately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindow {
    limit: u32,
    window_ms: u64,
}

/// What the counter remembers about one subject. Serialisable so the edge can keep it in KV.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowState {
    /// Start of the current fixed window (a multiple of `window_ms`).
    pub window_start_ms: u64,
    /// Cost admitted in the previous fixed window.
    pub prev: u64,
    /// Cost admitted in the current fixed window.
    pub curr: u64,
    /// Cost attempted (admitted or refused) in the current fixed window; feeds the ban rule.
    pub attempts: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// `floor(limit - estimate)` after this request.
        remaining: u32,
        /// Until the current fixed window ends (the `t` of the RateLimit field).
        reset_after_ms: u64,
    },
    Deny {
        /// `floor(limit - estimate)`, never negative.
        remaining: u32,
        reset_after_ms: u64,
        /// Earliest delay after which this request would be admitted if nothing else arrives;
        /// `None` when `cost > limit` and it never will be.
        retry_after_ms: Option<u64>,
    },
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

impl WindowState {
    /// Moves the state to the fixed window containing `now_ms` and returns the time to use
    /// from here on: a clock that went backwards is held at the window start.
    pub fn roll(&mut self, window_ms: u64, now_ms: u64) -> u64 {
        let now = now_ms.max(self.window_start_ms);
        let start = now - now % window_ms;
        if start > self.window_start_ms {
            // Only the window right before the current one carries weight.
            self.prev = if start - self.window_start_ms == window_ms {
                self.curr
            } else {
                0
            };
            self.curr = 0;
            self.attempts = 0;
            self.window_start_ms = start;
        }
        now
    }
}

impl SlidingWindow {
    pub fn new(limit: u32, window_ms: u64) -> Result<Self, LimiterConfigError> {
        if window_ms == 0 {
            return Err(LimiterConfigError::ZeroWindow);
        }
        let product = u128::from(limit) * u128::from(window_ms);
        if product > u128::from(MAX_LIMIT_TIMES_WINDOW_MS) {
            return Err(LimiterConfigError::TooLarge { product });
        }
        Ok(SlidingWindow { limit, window_ms })
    }

    /// `None` for an unlimited (Enterprise) tier.
    pub fn for_tier(limits: TierLimits) -> Option<Result<Self, LimiterConfigError>> {
        let limit = limits.requests_per_window?;
        Some(Self::new(limit, u64::from(limits.window_secs) * 1000))
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// `estimate * window` for `state` at `now`; `state` must already be rolled to `now`.
    fn scaled_estimate(&self, state: &WindowState, now: u64) -> u128 {
        let w = u128::from(self.window_ms);
        let elapsed = u128::from(now - state.window_start_ms);
        u128::from(state.prev) * (w - elapsed) + u128::from(state.curr) * w
    }

    /// Whether a request of `cost` would be admitted at `now_ms`, without recording it.
    pub fn fits(&self, state: &mut WindowState, now_ms: u64, cost: u32) -> bool {
        let now = state.roll(self.window_ms, now_ms);
        cost <= self.limit
            && self.scaled_estimate(state, now) + u128::from(cost) * u128::from(self.window_ms)
                <= u128::from(self.limit) * u128::from(self.window_ms)
    }

    /// Decides a request of `cost` at `now_ms`, recording it in `state` when admitted.
    pub fn decide(&self, state: &mut WindowState, now_ms: u64, cost: u32) -> Decision {
        let now = state.roll(self.window_ms, now_ms);
        let w = u128::from(self.window_ms);
        let scaled_limit = u128::from(self.limit) * w;
        let estimate = self.scaled_estimate(state, now);
        let reset_after_ms = state.window_start_ms + self.window_ms - now;
        let scaled_cost = u128::from(cost) * w;
        if cost <= self.limit && estimate + scaled_cost <= scaled_limit {
            state.curr += u64::from(cost);
            let remaining = (scaled_limit - estimate - scaled_cost) / w;
            Decision::Allow {
                remaining: narrow(remaining),
                reset_after_ms,
            }
        } else {
            let remaining = scaled_limit.saturating_sub(estimate) / w;
            let retry_after_ms = self.retry_after(state, now, cost);
            Decision::Deny {
                remaining: narrow(remaining),
                reset_after_ms,
                retry_after_ms,
            }
        }
    }

    /// The estimate never grows while nothing arrives, so the earliest admission time is the
    /// first instant at which the inequality holds, searched in three places:
    ///   current window, elapsed e:  prev*(W - e) <= (limit - curr - cost)*W
    ///                               => e >= W - floor((limit - curr - cost)*W / prev)
    ///   next window (prev := curr, curr := 0):  e >= W - floor((limit - cost)*W / curr)
    ///   the window after that: everything has decayed, admitted at its start.
    fn retry_after(&self, state: &WindowState, now: u64, cost: u32) -> Option<u64> {
        if cost > self.limit {
            return None;
        }
        let (limit, cost, w) = (u64::from(self.limit), u64::from(cost), self.window_ms);
        let (prev, curr, start) = (state.prev, state.curr, state.window_start_ms);
        let earliest_elapsed = |room: u64, weight: u64| -> u64 {
            let q = u128::from(room) * u128::from(w) / u128::from(weight);
            u64::try_from(u128::from(w).saturating_sub(q)).unwrap_or(w)
        };
        if let Some(room) = limit.checked_sub(curr.saturating_add(cost)) {
            if prev > 0 {
                let e = earliest_elapsed(room, prev);
                if e < w && start + e > now {
                    return Some(start + e - now);
                }
            }
        }
        let next = start + w;
        let e = if curr == 0 {
            0
        } else {
            earliest_elapsed(limit - cost, curr)
        };
        Some(if e < w {
            next + e - now
        } else {
            next + w - now
        })
    }
}

fn narrow(v: u128) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Auto-ban: a subject that attempts `threshold_factor x limit` cost units inside one fixed
/// window is banned for `base_ttl_secs`, doubled for each offence still remembered, capped at
/// `max_ttl_secs`. Offences are forgotten `offence_memory_secs` after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BanPolicy {
    /// 0 disables banning.
    pub threshold_factor: u32,
    pub base_ttl_secs: u64,
    pub max_ttl_secs: u64,
    pub offence_memory_secs: u64,
}

impl Default for BanPolicy {
    fn default() -> Self {
        BanPolicy {
            threshold_factor: 3,
            base_ttl_secs: 15 * 60,
            max_ttl_secs: 24 * 60 * 60,
            offence_memory_secs: 7 * 24 * 60 * 60,
        }
    }
}

impl BanPolicy {
    pub fn validate(&self) -> Result<(), LimiterConfigError> {
        if self.base_ttl_secs == 0 || self.base_ttl_secs > self.max_ttl_secs {
            return Err(LimiterConfigError::BanTtl);
        }
        if self.offence_memory_secs == 0 {
            return Err(LimiterConfigError::OffenceMemory);
        }
        Ok(())
    }

    /// The ban to impose, in seconds, or `None` when `attempts` is below the threshold.
    pub fn ban_ttl_secs(&self, attempts: u64, limit: u32, previous_offences: u32) -> Option<u64> {
        let threshold = u64::from(self.threshold_factor) * u64::from(limit);
        if threshold == 0 || attempts < threshold {
            return None;
        }
        Some(self.ttl_for(previous_offences))
    }

    /// `min(base * 2^previous_offences, max)`, written as the loop the Lua script runs.
    pub fn ttl_for(&self, previous_offences: u32) -> u64 {
        let mut ttl = self.base_ttl_secs;
        for _ in 0..previous_offences {
            if ttl >= self.max_ttl_secs {
                break;
            }
            ttl = ttl.saturating_mul(2);
        }
        ttl.min(self.max_ttl_secs)
    }
}

/// Everything the limiter keeps about one subject: window counters, ban, offences.
/// Mirrors the three Redis keys of the Lua script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectState {
    pub window: WindowState,
    pub banned_until_ms: u64,
    pub offences: u32,
    pub offences_expire_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOutcome {
    Allowed {
        remaining: u32,
        reset_after_ms: u64,
    },
    Limited {
        remaining: u32,
        reset_after_ms: u64,
        retry_after_ms: Option<u64>,
    },
    /// `newly`: this request tripped the ban.
    Banned {
        until_ms: u64,
        retry_after_ms: u64,
        newly: bool,
    },
    /// Unlimited tier: admitted and counted.
    Metered {
        used_in_window: u64,
    },
}

impl LimitOutcome {
    pub fn is_admitted(&self) -> bool {
        matches!(
            self,
            LimitOutcome::Allowed { .. } | LimitOutcome::Metered { .. }
        )
    }
}

/// A tier's quota plus the ban policy: the whole per-request decision, as the Lua script makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectPolicy {
    window_ms: u64,
    quota: Option<SlidingWindow>,
    ban: BanPolicy,
}

impl SubjectPolicy {
    pub fn new(limits: TierLimits, ban: BanPolicy) -> Result<Self, LimiterConfigError> {
        ban.validate()?;
        let window_ms = u64::from(limits.window_secs) * 1000;
        if window_ms == 0 {
            return Err(LimiterConfigError::ZeroWindow);
        }
        let quota = SlidingWindow::for_tier(limits).transpose()?;
        Ok(SubjectPolicy {
            window_ms,
            quota,
            ban,
        })
    }

    pub fn quota(&self) -> Option<SlidingWindow> {
        self.quota
    }

    pub fn ban(&self) -> BanPolicy {
        self.ban
    }

    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Ban check, then attempts and the ban rule, then the sliding window.
    /// The step order is the Lua script's; keep both in step.
    pub fn decide(&self, state: &mut SubjectState, now_ms: u64, cost: u32) -> LimitOutcome {
        if state.banned_until_ms > now_ms {
            let until_ms = state.banned_until_ms;
            return LimitOutcome::Banned {
                until_ms,
                retry_after_ms: until_ms - now_ms,
                newly: false,
            };
        }
        let now = state.window.roll(self.window_ms, now_ms);
        state.window.attempts = state.window.attempts.saturating_add(u64::from(cost));
        let Some(quota) = self.quota else {
            state.window.curr = state.window.curr.saturating_add(u64::from(cost));
            return LimitOutcome::Metered {
                used_in_window: state.window.curr,
            };
        };
        let remembered = if state.offences_expire_at_ms > now {
            state.offences
        } else {
            0
        };
        if let Some(ttl_secs) =
            self.ban
                .ban_ttl_secs(state.window.attempts, quota.limit, remembered)
        {
            let ttl_ms = ttl_secs * 1000;
            state.banned_until_ms = now + ttl_ms;
            state.offences = remembered + 1;
            state.offences_expire_at_ms = now + self.ban.offence_memory_secs * 1000;
            state.window.attempts = 0;
            return LimitOutcome::Banned {
                until_ms: now + ttl_ms,
                retry_after_ms: ttl_ms,
                newly: true,
            };
        }
        match quota.decide(&mut state.window, now, cost) {
            Decision::Allow {
                remaining,
                reset_after_ms,
            } => LimitOutcome::Allowed {
                remaining,
                reset_after_ms,
            },
            Decision::Deny {
                remaining,
                reset_after_ms,
                retry_after_ms,
            } => LimitOutcome::Limited {
                remaining,
                reset_after_ms,
                retry_after_ms,
            },
        }
    }

    /// Response fields for `outcome` under the policy named `policy_name`
    /// (draft-ietf-httpapi-ratelimit-headers-11 `RateLimit-Policy` and `RateLimit`, plus
    /// `Retry-After` when waiting helps). An unlimited tier gets none.
    pub fn headers(
        &self,
        policy_name: &str,
        outcome: &LimitOutcome,
    ) -> Vec<(&'static str, String)> {
        rate_limit_headers(
            policy_name,
            self.quota.map(|q| (q.limit, q.window_ms)),
            outcome,
        )
    }
}

/// Response fields for `outcome` under a quota of `(limit, window_ms)` named `policy_name`
/// (draft-ietf-httpapi-ratelimit-headers-11 `RateLimit-Policy` and `RateLimit`, plus
/// `Retry-After` when waiting helps). An unlimited quota (`None`) gets none. Shared by the
/// counter ([`SubjectPolicy`]) and the exact log ([`crate::sliding_log::LogPolicy`]).
pub fn rate_limit_headers(
    policy_name: &str,
    quota: Option<(u32, u64)>,
    outcome: &LimitOutcome,
) -> Vec<(&'static str, String)> {
    let Some((limit, window_ms)) = quota else {
        return Vec::new();
    };
    let mut out = vec![(
        RATELIMIT_POLICY,
        ratelimit_policy_value(policy_name, limit, ceil_secs(window_ms)),
    )];
    let (remaining, effective_ms, retry_ms) = match *outcome {
        LimitOutcome::Allowed {
            remaining,
            reset_after_ms,
        } => (remaining, reset_after_ms, None),
        LimitOutcome::Limited {
            remaining,
            reset_after_ms,
            retry_after_ms: None,
        } => (remaining, reset_after_ms, None),
        // The draft: Retry-After should not point before the end of the effective window.
        LimitOutcome::Limited {
            remaining,
            retry_after_ms: Some(ms),
            ..
        } => (remaining, ms, Some(ms)),
        LimitOutcome::Banned { retry_after_ms, .. } => (0, retry_after_ms, Some(retry_after_ms)),
        LimitOutcome::Metered { .. } => return out,
    };
    out.push((
        RATELIMIT,
        ratelimit_value(policy_name, remaining, ceil_secs(effective_ms)),
    ));
    if let Some(ms) = retry_ms {
        out.push((RETRY_AFTER, ceil_secs(ms).to_string()));
    }
    out
}

pub const RATELIMIT_POLICY: &str = "RateLimit-Policy";
pub const RATELIMIT: &str = "RateLimit";
pub const RETRY_AFTER: &str = "Retry-After";

/// Whole seconds, rounded up: a client that waits this long is never early.
pub fn ceil_secs(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// `"name";q=<quota>;w=<window secs>` — one Quota Policy Item of `RateLimit-Policy`.
pub fn ratelimit_policy_value(name: &str, quota: u32, window_secs: u64) -> String {
    format!("{};q={quota};w={}", sf_string(name), window_secs.max(1))
}

/// `"name";r=<remaining>;t=<secs>` — one Service Limit Item of `RateLimit`.
pub fn ratelimit_value(name: &str, remaining: u32, effective_window_secs: u64) -> String {
    format!(
        "{};r={remaining};t={effective_window_secs}",
        sf_string(name)
    )
}

/// `Retry-After` as delay-seconds.
pub fn retry_after_value(retry_after_ms: u64) -> String {
    ceil_secs(retry_after_ms).to_string()
}

/// A Structured Field String (RFC 9651 §3.3.3): quotes and backslashes escaped; characters
/// outside printable ASCII, which an sf-string cannot carry, are replaced by `?`.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// An exact sliding log: the reference the counter is measured against.
pub mod exact {
    use std::collections::VecDeque;

    /// Admits a request when the cost admitted in `(now - window, now]` plus its own cost is
    /// at most `limit`. Times must not go backwards.
    #[derive(Debug, Clone)]
    pub struct ExactLog {
        limit: u64,
        window_ms: u64,
        entries: VecDeque<(u64, u64)>,
        in_window: u64,
    }

    impl ExactLog {
        pub fn new(limit: u32, window_ms: u64) -> Self {
            ExactLog {
                limit: u64::from(limit),
                window_ms,
                entries: VecDeque::new(),
                in_window: 0,
            }
        }

        fn expire(&mut self, now_ms: u64) {
            while let Some(&(at, cost)) = self.entries.front() {
                if at + self.window_ms > now_ms {
                    break;
                }
                self.entries.pop_front();
                self.in_window -= cost;
            }
        }

        /// Cost recorded in `(now - window, now]`.
        pub fn count(&mut self, now_ms: u64) -> u64 {
            self.expire(now_ms);
            self.in_window
        }

        pub fn fits(&mut self, now_ms: u64, cost: u32) -> bool {
            self.count(now_ms) + u64::from(cost) <= self.limit
        }

        pub fn record(&mut self, now_ms: u64, cost: u32) {
            self.entries.push_back((now_ms, u64::from(cost)));
            self.in_window += u64::from(cost);
        }

        pub fn decide(&mut self, now_ms: u64, cost: u32) -> bool {
            let admit = self.fits(now_ms, cost);
            if admit {
                self.record(now_ms, cost);
            }
            admit
        }
    }
}

/// A seeded, bursty request trace and the replay that measures the counter against the log.
pub mod trace {
    use super::exact::ExactLog;
    use super::{SlidingWindow, WindowState};

    /// A seeded stream over [`crate::zone::splitmix64`]: the same on every platform.
    #[derive(Debug, Clone)]
    pub struct SplitMix64(u64);

    impl SplitMix64 {
        pub fn new(seed: u64) -> Self {
            SplitMix64(seed)
        }

        pub fn next_u64(&mut self) -> u64 {
            let out = crate::zone::splitmix64(self.0);
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            out
        }

        /// Uniform in `[lo, hi]`.
        pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
            lo + self.next_u64() % (hi - lo + 1)
        }

        /// Uniform in `[0, 1)`.
        pub fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Exponentially distributed with the given mean.
        pub fn exp(&mut self, mean: f64) -> f64 {
            -mean * (1.0 - self.unit()).ln()
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ClientKind {
        /// Poisson arrivals at 0.01x to 0.3x the limit: most users.
        Quiet,
        /// Poisson arrivals at 0.5x to 1.5x the limit.
        Steady,
        /// Idle, then a burst of 0.5x to 3x the limit within 0.2 to 15 s, repeated.
        Bursty,
        /// Poisson arrivals at 2x to 8x the limit, all the time.
        Abusive,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TraceSubject {
        pub limit: u32,
        pub kind: ClientKind,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TraceEvent {
        pub at_ms: u64,
        pub subject: u32,
        pub cost: u32,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct TraceConfig {
        pub seed: u64,
        /// Subjects are added until the trace has at least this many requests.
        pub min_events: usize,
        pub duration_ms: u64,
        pub window_ms: u64,
        /// Limits drawn for subjects, e.g. Free and Pro; `(limit, weight)`.
        pub limits: Vec<(u32, u32)>,
        /// Weights of Quiet, Steady, Bursty, Abusive subjects.
        pub kind_weights: [u32; 4],
    }

    impl Default for TraceConfig {
        fn default() -> Self {
            TraceConfig {
                seed: 0x0048_4541_4459, // "HEADY"
                min_events: 1_000_000,
                duration_ms: 30 * 60 * 1000,
                window_ms: 60_000,
                limits: vec![(30, 7), (120, 3)],
                kind_weights: [40, 30, 24, 6],
            }
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Trace {
        pub window_ms: u64,
        pub subjects: Vec<TraceSubject>,
        /// Sorted by time.
        pub events: Vec<TraceEvent>,
    }

    fn pick<T: Copy>(rng: &mut SplitMix64, items: &[(T, u32)]) -> T {
        let total: u64 = items.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut x = rng.range(0, total.max(1) - 1);
        for &(item, w) in items {
            if x < u64::from(w) {
                return item;
            }
            x -= u64::from(w);
        }
        items[items.len() - 1].0
    }

    /// Generates the trace for `config`; the same config always yields the same trace on a
    /// given platform (the exponential draws use the platform's `ln`).
    pub fn bursty_trace(config: &TraceConfig) -> Trace {
        let mut rng = SplitMix64::new(config.seed);
        // An arbitrary epoch not aligned to the window, so subjects start mid-window.
        let t0 = 1_700_000_000_000 + rng.range(0, config.window_ms);
        let end = t0 + config.duration_ms;
        let w = config.window_ms as f64;
        let kinds = [
            (ClientKind::Quiet, config.kind_weights[0]),
            (ClientKind::Steady, config.kind_weights[1]),
            (ClientKind::Bursty, config.kind_weights[2]),
            (ClientKind::Abusive, config.kind_weights[3]),
        ];
        let mut subjects = Vec::new();
        let mut events = Vec::new();
        while events.len() < config.min_events {
            let id = subjects.len() as u32;
            let limit = pick(&mut rng, &config.limits);
            let kind = pick(&mut rng, &kinds);
            subjects.push(TraceSubject { limit, kind });
            let per_ms = f64::from(limit) / w;
            let mut push = |at: f64| {
                events.push(TraceEvent {
                    at_ms: at as u64,
                    subject: id,
                    cost: 1,
                })
            };
            let mut t = t0 as f64 + rng.unit() * w;
            match kind {
                ClientKind::Quiet | ClientKind::Steady | ClientKind::Abusive => {
                    let (lo, hi) = match kind {
                        ClientKind::Quiet => (0.01, 0.3),
                        ClientKind::Steady => (0.5, 1.5),
                        _ => (2.0, 8.0),
                    };
                    let mean_gap = 1.0 / (per_ms * (lo + (hi - lo) * rng.unit()));
                    loop {
                        t += rng.exp(mean_gap);
                        if t >= end as f64 {
                            break;
                        }
                        push(t);
                    }
                }
                ClientKind::Bursty => {
                    let mean_idle = 5_000.0 + 85_000.0 * rng.unit();
                    loop {
                        t += rng.exp(mean_idle);
                        let n = rng.range(u64::from(limit) / 2, 3 * u64::from(limit));
                        let span = 200.0 + 14_800.0 * rng.unit();
                        let mut burst: Vec<f64> = (0..n).map(|_| t + span * rng.unit()).collect();
                        burst.sort_by(f64::total_cmp);
                        for at in burst.into_iter().filter(|&at| at < end as f64) {
                            push(at);
                        }
                        t += span;
                        if t >= end as f64 {
                            break;
                        }
                    }
                }
            }
        }
        events.sort_by_key(|e| (e.at_ms, e.subject));
        Trace {
            window_ms: config.window_ms,
            subjects,
            events,
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum ReplayMode {
        /// Both count every request, admitted or not (Cloudflare's setting: a rate of attempts
        /// against a threshold). History never depends on decisions, so each decision is
        /// judged on equal terms: the comparison Cloudflare's 0.003% was made under.
        CountEveryRequest,
        /// The counter decides and counts only what it admits (what Heady runs); the log is fed
        /// the counter's admissions and asked, before each request, what it would decide on
        /// that history. False admits are real overshoots. False denies are overstated under
        /// sustained overload: the counter then admits about `limit - 1/2` per window, so the
        /// log sees one unit of room and would admit each refused request (one, in truth).
        SameHistory,
        /// Each counts only what it admits, on its own history; compares throughput.
        /// Disagreements include mere phase shifts (which of the requests got in).
        Independent,
    }

    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ErrorCounts {
        pub decisions: u64,
        pub counter_admits: u64,
        pub exact_admits: u64,
        /// The counter admitted what the exact log refused.
        pub false_admits: u64,
        /// The counter refused what the exact log admitted.
        pub false_denies: u64,
        /// Most cost the counter admitted within any `(t - window, t]`, in thousandths of the
        /// limit (1000 = exactly the limit). Not tracked in `CountEveryRequest`.
        pub peak_permille: u64,
    }

    impl ErrorCounts {
        pub fn add(&mut self, other: &ErrorCounts) {
            self.decisions += other.decisions;
            self.counter_admits += other.counter_admits;
            self.exact_admits += other.exact_admits;
            self.false_admits += other.false_admits;
            self.false_denies += other.false_denies;
            self.peak_permille = self.peak_permille.max(other.peak_permille);
        }

        fn tally(&mut self, counter: bool, exact: bool) {
            self.decisions += 1;
            self.counter_admits += u64::from(counter);
            self.exact_admits += u64::from(exact);
            self.false_admits += u64::from(counter && !exact);
            self.false_denies += u64::from(!counter && exact);
        }
    }

    /// Replays `trace` through the counter and the exact log; one `ErrorCounts` per subject.
    pub fn replay(trace: &Trace, mode: ReplayMode) -> Vec<ErrorCounts> {
        let windows: Vec<SlidingWindow> = trace
            .subjects
            .iter()
            .map(|s| SlidingWindow {
                limit: s.limit,
                window_ms: trace.window_ms,
            })
            .collect();
        let mut counters = vec![WindowState::default(); trace.subjects.len()];
        let mut logs: Vec<ExactLog> = trace
            .subjects
            .iter()
            .map(|s| ExactLog::new(s.limit, trace.window_ms))
            .collect();
        // The counter's own admissions, to find its peak in any sliding window.
        let mut admitted: Vec<ExactLog> = trace
            .subjects
            .iter()
            .map(|s| ExactLog::new(s.limit, trace.window_ms))
            .collect();
        let mut out = vec![ErrorCounts::default(); trace.subjects.len()];
        for ev in &trace.events {
            let i = ev.subject as usize;
            let (window, state, log) = (&windows[i], &mut counters[i], &mut logs[i]);
            let (counter, exact) = match mode {
                ReplayMode::CountEveryRequest => {
                    let counter = window.fits(state, ev.at_ms, ev.cost);
                    state.curr += u64::from(ev.cost);
                    let exact = log.fits(ev.at_ms, ev.cost);
                    log.record(ev.at_ms, ev.cost);
                    (counter, exact)
                }
                ReplayMode::SameHistory => {
                    let exact = log.fits(ev.at_ms, ev.cost);
                    let counter = window.decide(state, ev.at_ms, ev.cost).is_allow();
                    if counter {
                        log.record(ev.at_ms, ev.cost);
                    }
                    (counter, exact)
                }
                ReplayMode::Independent => (
                    window.decide(state, ev.at_ms, ev.cost).is_allow(),
                    log.decide(ev.at_ms, ev.cost),
                ),
            };
            if counter && mode != ReplayMode::CountEveryRequest {
                let peak = &mut admitted[i];
                peak.record(ev.at_ms, ev.cost);
                let permille = peak.count(ev.at_ms) * 1000 / u64::from(window.limit.max(1));
                out[i].peak_permille = out[i].peak_permille.max(permille);
            }
            out[i].tally(counter, exact);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::exact::ExactLog;
    use super::trace::{bursty_trace, replay, ClientKind, ErrorCounts, ReplayMode, TraceConfig};
    use super::*;
    use crate::tiers::Tier;
    use proptest::prelude::*;

    const MIN: u64 = 60_000;

    fn pro() -> SlidingWindow {
        SlidingWindow::new(120, MIN).unwrap()
    }

    #[test]
    fn admits_exactly_the_limit_in_a_fresh_window() {
        let w = pro();
        let mut s = WindowState::default();
        let t = 10 * MIN + 5_000;
        for i in 0..120u32 {
            assert_eq!(
                w.decide(&mut s, t, 1),
                Decision::Allow {
                    remaining: 119 - i,
                    reset_after_ms: 55_000
                }
            );
        }
        assert_eq!(
            w.decide(&mut s, t, 1),
            // Next window: prev = 120 must decay by one unit, 1/120 of a minute.
            Decision::Deny {
                remaining: 0,
                reset_after_ms: 55_000,
                retry_after_ms: Some(55_500)
            }
        );
    }

    #[test]
    fn previous_window_weighs_by_the_part_still_covered() {
        let w = SlidingWindow::new(10, 1000).unwrap();
        let mut s = WindowState {
            window_start_ms: 0,
            prev: 0,
            curr: 10,
            attempts: 10,
        };
        // 250 ms into the next window: 10 * 0.75 = 7.5 -> 2 more fit (9.5), not 3.
        assert_eq!(
            w.decide(&mut s, 1250, 1),
            Decision::Allow {
                remaining: 1,
                reset_after_ms: 750
            }
        );
        assert_eq!(
            w.decide(&mut s, 1250, 1),
            Decision::Allow {
                remaining: 0,
                reset_after_ms: 750
            }
        );
        // 7.5 + 2 = 9.5 -> a third needs prev*(1000-e) <= (10-3)*1000 -> e >= 300.
        assert_eq!(
            w.decide(&mut s, 1250, 1),
            Decision::Deny {
                remaining: 0,
                reset_after_ms: 750,
                retry_after_ms: Some(50)
            }
        );
        assert!(
            w.decide(&mut s, 1299, 1)
                == Decision::Deny {
                    remaining: 0,
                    reset_after_ms: 701,
                    retry_after_ms: Some(1)
                }
        );
        assert!(w.decide(&mut s, 1300, 1).is_allow());
        assert_eq!(
            s,
            WindowState {
                window_start_ms: 1000,
                prev: 10,
                curr: 3,
                attempts: 0
            }
        );
    }

    #[test]
    fn roll_over_handles_gaps() {
        let w = SlidingWindow::new(5, 1000).unwrap();
        let mut s = WindowState {
            window_start_ms: 3000,
            prev: 4,
            curr: 5,
            attempts: 9,
        };
        s.roll(1000, 4500);
        assert_eq!(
            s,
            WindowState {
                window_start_ms: 4000,
                prev: 5,
                curr: 0,
                attempts: 0
            }
        );
        let mut s = WindowState {
            window_start_ms: 3000,
            prev: 4,
            curr: 5,
            attempts: 9,
        };
        s.roll(1000, 5000);
        assert_eq!(
            s,
            WindowState {
                window_start_ms: 5000,
                prev: 0,
                curr: 0,
                attempts: 0
            }
        );
        let mut s = WindowState {
            window_start_ms: 3000,
            prev: 4,
            curr: 5,
            attempts: 9,
        };
        assert_eq!(
            w.decide(&mut s, 9_999_999, 5),
            Decision::Allow {
                remaining: 0,
                reset_after_ms: 1
            }
        );
    }

    #[test]
    fn clock_going_backwards_is_held_at_the_window_start() {
        let w = SlidingWindow::new(2, 1000).unwrap();
        let mut s = WindowState {
            window_start_ms: 5000,
            prev: 0,
            curr: 2,
            attempts: 2,
        };
        assert_eq!(
            w.decide(&mut s, 4000, 1),
            Decision::Deny {
                remaining: 0,
                reset_after_ms: 1000,
                retry_after_ms: Some(1500)
            }
        );
        assert_eq!(s.window_start_ms, 5000);
    }

    #[test]
    fn cost_above_the_limit_is_never_admitted() {
        let w = SlidingWindow::new(3, 1000).unwrap();
        let mut s = WindowState::default();
        assert_eq!(
            w.decide(&mut s, 0, 4),
            Decision::Deny {
                remaining: 3,
                reset_after_ms: 1000,
                retry_after_ms: None
            }
        );
    }

    #[test]
    fn config_is_validated() {
        assert_eq!(
            SlidingWindow::new(1, 0),
            Err(LimiterConfigError::ZeroWindow)
        );
        assert!(matches!(
            SlidingWindow::new(u32::MAX, 1 << 40),
            Err(LimiterConfigError::TooLarge { .. })
        ));
        assert!(SlidingWindow::for_tier(Tier::Enterprise.limits()).is_none());
        assert_eq!(
            SlidingWindow::for_tier(Tier::Free.limits()),
            Some(SlidingWindow::new(30, MIN))
        );
        let bad = BanPolicy {
            base_ttl_secs: 0,
            ..BanPolicy::default()
        };
        assert_eq!(
            SubjectPolicy::new(Tier::Pro.limits(), bad),
            Err(LimiterConfigError::BanTtl)
        );
    }

    #[test]
    fn ban_ttl_doubles_and_caps() {
        let p = BanPolicy::default();
        assert_eq!(p.ban_ttl_secs(89, 30, 0), None);
        assert_eq!(p.ban_ttl_secs(90, 30, 0), Some(900));
        assert_eq!(p.ban_ttl_secs(90, 30, 1), Some(1800));
        assert_eq!(p.ban_ttl_secs(90, 30, 4), Some(14_400));
        assert_eq!(p.ban_ttl_secs(90, 30, 7), Some(86_400));
        assert_eq!(p.ban_ttl_secs(90, 30, u32::MAX), Some(86_400));
        let off = BanPolicy {
            threshold_factor: 0,
            ..p
        };
        assert_eq!(off.ban_ttl_secs(u64::MAX, 30, 0), None);
        assert_eq!(p.ban_ttl_secs(u64::MAX, 0, 0), None);
    }

    #[test]
    fn a_free_subject_hammering_is_banned_then_banned_longer() {
        let policy = SubjectPolicy::new(Tier::Free.limits(), BanPolicy::default()).unwrap();
        let mut s = SubjectState::default();
        let t = 100 * MIN;
        let outcomes: Vec<_> = (0..90).map(|_| policy.decide(&mut s, t, 1)).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_admitted()).count(), 30);
        assert!(matches!(outcomes[30], LimitOutcome::Limited { .. }));
        assert_eq!(
            outcomes[89],
            LimitOutcome::Banned {
                until_ms: t + 900_000,
                retry_after_ms: 900_000,
                newly: true
            }
        );
        assert_eq!(
            policy.decide(&mut s, t + 1000, 1),
            LimitOutcome::Banned {
                until_ms: t + 900_000,
                retry_after_ms: 899_000,
                newly: false
            }
        );
        let t2 = t + 900_000;
        assert!(policy.decide(&mut s, t2, 1).is_admitted());
        let again: Vec<_> = (1..90).map(|_| policy.decide(&mut s, t2, 1)).collect();
        assert_eq!(
            again[88],
            LimitOutcome::Banned {
                until_ms: t2 + 1_800_000,
                retry_after_ms: 1_800_000,
                newly: true
            }
        );
        // Offences are forgotten after a week.
        let t3 = t2 + 7 * 24 * 3_600_000 + 1;
        for _ in 0..89 {
            policy.decide(&mut s, t3, 1);
        }
        assert!(matches!(
            policy.decide(&mut s, t3, 1),
            LimitOutcome::Banned {
                retry_after_ms: 900_000,
                ..
            }
        ));
    }

    #[test]
    fn enterprise_is_metered_never_limited() {
        let policy = SubjectPolicy::new(Tier::Enterprise.limits(), BanPolicy::default()).unwrap();
        let mut s = SubjectState::default();
        for i in 1..=10_000 {
            assert_eq!(
                policy.decide(&mut s, 5 * MIN, 1),
                LimitOutcome::Metered { used_in_window: i }
            );
        }
        assert_eq!(
            policy.decide(&mut s, 6 * MIN, 2),
            LimitOutcome::Metered { used_in_window: 2 }
        );
        assert!(policy
            .headers("enterprise", &LimitOutcome::Metered { used_in_window: 1 })
            .is_empty());
    }

    #[test]
    fn headers_follow_the_draft_syntax() {
        let policy = SubjectPolicy::new(Tier::Pro.limits(), BanPolicy::default()).unwrap();
        let allowed = LimitOutcome::Allowed {
            remaining: 50,
            reset_after_ms: 29_001,
        };
        assert_eq!(
            policy.headers("pro", &allowed),
            vec![
                ("RateLimit-Policy", "\"pro\";q=120;w=60".to_string()),
                ("RateLimit", "\"pro\";r=50;t=30".to_string()),
            ]
        );
        let limited = LimitOutcome::Limited {
            remaining: 0,
            reset_after_ms: 10_000,
            retry_after_ms: Some(2_500),
        };
        assert_eq!(
            policy.headers("pro", &limited),
            vec![
                ("RateLimit-Policy", "\"pro\";q=120;w=60".to_string()),
                ("RateLimit", "\"pro\";r=0;t=3".to_string()),
                ("Retry-After", "3".to_string()),
            ]
        );
        let banned = LimitOutcome::Banned {
            until_ms: 0,
            retry_after_ms: 900_000,
            newly: true,
        };
        assert_eq!(
            policy.headers("pro", &banned)[2],
            ("Retry-After", "900".to_string())
        );
        let never = LimitOutcome::Limited {
            remaining: 7,
            reset_after_ms: 999,
            retry_after_ms: None,
        };
        assert_eq!(policy.headers("pro", &never).len(), 2);
        assert_eq!(
            ratelimit_policy_value("a\"b\\c\u{e9}", 1, 0),
            "\"a\\\"b\\\\c?\";q=1;w=1"
        );
        assert_eq!(ratelimit_value("default", 50, 30), "\"default\";r=50;t=30");
        assert_eq!(retry_after_value(1), "1");
        assert_eq!(retry_after_value(60_000), "60");
    }

    #[test]
    fn exact_log_counts_the_half_open_window() {
        let mut log = ExactLog::new(2, 1000);
        assert!(log.decide(0, 1));
        assert!(log.decide(500, 1));
        assert!(!log.decide(999, 1));
        assert!(log.decide(1000, 1)); // the request at 0 left the window (now - 1000, now]
        assert!(!log.decide(1499, 1));
        assert_eq!(log.count(1500), 1);
    }

    #[test]
    fn trace_is_deterministic_and_bursty() {
        let config = TraceConfig {
            min_events: 20_000,
            ..TraceConfig::default()
        };
        let a = bursty_trace(&config);
        assert_eq!(a, bursty_trace(&config));
        assert!(a.events.len() >= 20_000);
        assert!(a.events.windows(2).all(|p| p[0].at_ms <= p[1].at_ms));
        let other = bursty_trace(&TraceConfig { seed: 7, ..config });
        assert_ne!(a.events, other.events);
    }

    #[test]
    fn counter_error_on_the_bursty_trace() {
        let trace = bursty_trace(&TraceConfig {
            min_events: 100_000,
            ..TraceConfig::default()
        });
        let total = |per: &[ErrorCounts], keep: &dyn Fn(ClientKind) -> bool| {
            let mut t = ErrorCounts::default();
            trace
                .subjects
                .iter()
                .zip(per)
                .filter(|(s, _)| keep(s.kind))
                .for_each(|(_, c)| t.add(c));
            t
        };
        let every = replay(&trace, ReplayMode::CountEveryRequest);
        let all = total(&every, &|_| true);
        assert_eq!(all.decisions, trace.events.len() as u64);
        let wrong = all.false_admits + all.false_denies;
        assert!(wrong > 0 && wrong * 20 < all.decisions, "{all:?}");
        let quiet = total(&every, &|k| k == ClientKind::Quiet);
        assert!(quiet.decisions > 0 && quiet.false_admits + quiet.false_denies == 0);

        let same = total(&replay(&trace, ReplayMode::SameHistory), &|_| true);
        assert!(same.false_admits > 0);
        assert!(
            same.peak_permille > 1000 && same.peak_permille < 2000,
            "{same:?}"
        );

        let own = total(&replay(&trace, ReplayMode::Independent), &|_| true);
        let diff = own.counter_admits.abs_diff(own.exact_admits);
        assert!(diff * 20 < own.exact_admits, "{own:?}");
    }

    fn valid_state(limit: u32, w: u64) -> impl Strategy<Value = WindowState> {
        (0u64..1000, 0..=u64::from(limit), 0..=u64::from(limit)).prop_map(move |(k, prev, curr)| {
            WindowState {
                window_start_ms: k * w,
                prev,
                curr,
                attempts: curr,
            }
        })
    }

    fn window_and_state() -> impl Strategy<Value = (SlidingWindow, WindowState)> {
        (0u32..200, 1u64..100_000).prop_flat_map(|(limit, w)| {
            let window = SlidingWindow::new(limit, w).unwrap();
            valid_state(limit, w).prop_map(move |s| (window, s))
        })
    }

    proptest! {
        #[test]
        fn never_more_than_limit_in_any_fixed_window(
            limit in 1u32..50, w in 1u64..5000,
            steps in prop::collection::vec((0u64..300, 1u32..4), 1..400),
        ) {
            let window = SlidingWindow::new(limit, w).unwrap();
            let mut s = WindowState::default();
            let mut t = 0;
            let mut per_window = std::collections::HashMap::<u64, u64>::new();
            let mut log: Vec<(u64, u64)> = Vec::new();
            for (gap, cost) in steps {
                t += gap;
                if window.decide(&mut s, t, cost).is_allow() {
                    *per_window.entry(t / w).or_default() += u64::from(cost);
                    log.push((t, u64::from(cost)));
                }
            }
            prop_assert!(per_window.values().all(|&n| n <= u64::from(limit)));
            // Any sliding window overlaps two fixed ones, so 2x is the hard ceiling.
            for &(start, _) in &log {
                let n: u64 = log.iter().filter(|&&(at, _)| at >= start && at < start + w).map(|&(_, c)| c).sum();
                prop_assert!(n <= 2 * u64::from(limit));
            }
        }

        #[test]
        fn with_an_empty_previous_window_it_is_the_exact_log(
            limit in 1u32..100, w in 2u64..100_000,
            steps in prop::collection::vec((0u64..50, 1u32..5), 1..300),
        ) {
            let window = SlidingWindow::new(limit, w).unwrap();
            let mut s = WindowState::default();
            let mut log = ExactLog::new(limit, w);
            let mut t = 5 * w;
            for (gap, cost) in steps {
                t += gap;
                if t >= 6 * w { break; }
                prop_assert_eq!(window.decide(&mut s, t, cost).is_allow(), log.decide(t, cost));
            }
        }

        #[test]
        fn steady_traffic_under_the_limit_matches_the_exact_log(
            limit in 2u32..300, w in 1000u64..120_000,
            jitter in prop::collection::vec(0u64..1000, 1..600), phase in 0u64..120_000,
        ) {
            let window = SlidingWindow::new(limit, w).unwrap();
            let spacing = (2 * w).div_ceil(u64::from(limit));
            let mut s = WindowState::default();
            let mut log = ExactLog::new(limit, w);
            let mut t = phase;
            for j in jitter {
                t += spacing + j;
                let exact = log.decide(t, 1);
                prop_assert!(exact);
                prop_assert_eq!(window.decide(&mut s, t, 1).is_allow(), exact);
            }
        }

        #[test]
        fn admission_is_monotonic_in_time_and_cost(
            (window, s) in window_and_state(), dt1 in 0u64..200_000, dt2 in 0u64..200_000,
            c1 in 0u32..250, c2 in 0u32..250,
        ) {
            let t1 = s.window_start_ms + dt1;
            let (lo_cost, hi_cost) = (c1.min(c2), c1.max(c2));
            if window.fits(&mut s.clone(), t1, hi_cost) {
                prop_assert!(window.fits(&mut s.clone(), t1 + dt2, hi_cost));
                prop_assert!(window.fits(&mut s.clone(), t1, lo_cost));
            }
        }

        #[test]
        fn retry_after_is_the_earliest_admission(
            (window, s) in window_and_state(), dt in 0u64..200_000, cost in 0u32..250,
        ) {
            let now = s.window_start_ms + dt;
            let mut after = s;
            match window.decide(&mut after, now, cost) {
                Decision::Allow { .. } => {}
                Decision::Deny { retry_after_ms: None, .. } => prop_assert!(cost > window.limit()),
                Decision::Deny { retry_after_ms: Some(r), .. } => {
                    prop_assert!(r >= 1);
                    prop_assert!(!window.fits(&mut s.clone(), now + r - 1, cost));
                    prop_assert!(window.fits(&mut s.clone(), now + r, cost));
                    prop_assert!(r <= 2 * window.window_ms());
                }
            }
        }

        #[test]
        fn remaining_is_exactly_what_still_fits(
            (window, s) in window_and_state(), dt in 0u64..200_000,
        ) {
            let now = s.window_start_ms + dt;
            let mut s = s;
            if let Decision::Allow { remaining, .. } = window.decide(&mut s, now, 1) {
                for _ in 0..remaining {
                    prop_assert!(window.decide(&mut s, now, 1).is_allow());
                }
                prop_assert!(!window.decide(&mut s, now, 1).is_allow());
            }
        }

        #[test]
        fn two_idle_windows_forget_everything(
            (window, s) in window_and_state(), dt in 0u64..1_000_000, cost in 0u32..250,
        ) {
            let idle = s.window_start_ms + 2 * window.window_ms() + dt;
            let mut s = s;
            let fresh = window.decide(&mut WindowState::default(), idle, cost);
            prop_assert_eq!(window.decide(&mut s, idle, cost), fresh);
        }

        #[test]
        fn ban_ttl_is_base_doubled_per_offence_capped(
            base in 1u64..10_000, extra in 0u64..1_000_000, offences in 0u32..100,
            factor in 1u32..10, limit in 1u32..1000, attempts in 0u64..20_000,
        ) {
            let p = BanPolicy { threshold_factor: factor, base_ttl_secs: base, max_ttl_secs: base + extra, offence_memory_secs: 1 };
            let expected = (u128::from(base) << offences.min(100)).min(u128::from(base + extra)) as u64;
            prop_assert_eq!(p.ttl_for(offences), expected);
            let banned = p.ban_ttl_secs(attempts, limit, offences);
            prop_assert_eq!(banned.is_some(), attempts >= u64::from(factor) * u64::from(limit));
        }
    }
}
