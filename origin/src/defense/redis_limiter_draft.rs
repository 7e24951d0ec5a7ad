//! The origin's authoritative rate limiter: one atomic Lua script per decision in Redis.
//!
//! The script (`sliding_window.lua`) runs the integer math of
//! `heady_shared::limiter::SubjectPolicy::decide`, so the edge (KV), the in-memory fallback and
//! Redis decide alike. By default the script reads the Redis server clock, so origins whose
//! clocks disagree still share one window; `decide_at` passes a fixed time for tests.

use heady_shared::limiter::{BanPolicy, LimitOutcome, LimiterConfigError, SlidingWindow};
use heady_shared::tiers::TierLimits;
use redis::aio::ConnectionManager;
use redis::Script;

const SCRIPT: &str = include_str!("sliding_window.lua");

#[derive(Debug, thiserror::Error)]
pub enum RedisLimiterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("rate-limit subject must not be empty")]
    EmptySubject,
    #[error("rate-limit configuration: {0}")]
    Config(#[from] LimiterConfigError),
    #[error("unexpected reply from the rate-limit script: {0:?}")]
    UnexpectedReply(Vec<i64>),
}

/// The Redis keys of one subject. The `{subject}` hash tag keeps them on one cluster slot,
/// which a multi-key script requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKeys {
    /// Hash `ws p c a b` (b: banned-until, copied from `ban` so one read serves the common
    /// path); expires at the end of the window after the current one, or with the ban.
    pub window: String,
    /// Banned-until ms; expires with the ban.
    pub ban: String,
    /// Hash `n exp`; expires `offence_memory_secs` after the last offence.
    pub offences: String,
}

#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    script: Script,
    ban: BanPolicy,
    prefix: String,
}

impl RedisLimiter {
    pub fn new(conn: ConnectionManager, ban: BanPolicy) -> Result<Self, RedisLimiterError> {
        Self::with_prefix(conn, ban, "heady:")
    }

    pub fn with_prefix(
        conn: ConnectionManager,
        ban: BanPolicy,
        prefix: &str,
    ) -> Result<Self, RedisLimiterError> {
        ban.validate()?;
        Ok(RedisLimiter { conn, script: Script::new(SCRIPT), ban, prefix: prefix.to_string() })
    }

    pub fn keys(&self, subject: &str) -> SubjectKeys {
        let p = &self.prefix;
        SubjectKeys {
            window: format!("{p}rl:{{{subject}}}"),
            ban: format!("{p}ban:{{{subject}}}"),
            offences: format!("{p}off:{{{subject}}}"),
        }
    }

    /// Lifts a ban at once. The offence count stays, so a relapse is banned for longer.
    pub async fn unban(&self, subject: &str) -> Result<(), RedisLimiterError> {
        let keys = self.keys(subject);
        redis::pipe()
            .atomic()
            .del(&keys.ban)
            .hdel(&keys.window, "b")
            .query_async::<()>(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Decides one request of `cost` for `subject` on the Redis server clock.
    pub async fn decide(
        &self,
        subject: &str,
        limits: TierLimits,
        cost: u32,
    ) -> Result<LimitOutcome, RedisLimiterError> {
        self.run(subject, limits, cost, None).await
    }

    /// As [`decide`](Self::decide) at a given time (ms since the Unix epoch).
    pub async fn decide_at(
        &self,
        subject: &str,
        limits: TierLimits,
        cost: u32,
        now_ms: u64,
    ) -> Result<LimitOutcome, RedisLimiterError> {
        self.run(subject, limits, cost, Some(now_ms)).await
    }

    async fn run(
        &self,
        subject: &str,
        limits: TierLimits,
        cost: u32,
        now_ms: Option<u64>,
    ) -> Result<LimitOutcome, RedisLimiterError> {
        if subject.is_empty() {
            return Err(RedisLimiterError::EmptySubject);
        }
        let window_ms = u64::from(limits.window_secs) * 1000;
        // -1 tells the script "unlimited, metered"; a limit is validated for exact Lua math.
        let limit = match SlidingWindow::for_tier(limits).transpose()? {
            Some(quota) => i64::from(quota.limit()),
            None if window_ms == 0 => return Err(LimiterConfigError::ZeroWindow.into()),
            None => -1,
        };
        let keys = self.keys(subject);
        let now_arg = now_ms.map(|t| t.to_string()).unwrap_or_default();
        let reply: Vec<i64> = self
            .script
            .key(&keys.window)
            .key(&keys.ban)
            .key(&keys.offences)
            .arg(now_arg)
            .arg(window_ms)
            .arg(limit)
            .arg(cost)
            .arg(self.ban.threshold_factor)
            .arg(self.ban.base_ttl_secs)
            .arg(self.ban.max_ttl_secs)
            .arg(self.ban.offence_memory_secs)
            .invoke_async(&mut self.conn.clone())
            .await?;
        outcome_from_reply(&reply).ok_or(RedisLimiterError::UnexpectedReply(reply))
    }
}

/// `{code, remaining, reset_after_ms, retry_after_ms, banned_until_ms, now_ms}` from the script.
fn outcome_from_reply(reply: &[i64]) -> Option<LimitOutcome> {
    let &[code, remaining, reset, retry, banned_until, _now] = reply else { return None };
    let ms = |v: i64| u64::try_from(v).ok();
    let remaining_u32 = u32::try_from(remaining).ok();
    Some(match code {
        1 => LimitOutcome::Allowed { remaining: remaining_u32?, reset_after_ms: ms(reset)? },
        0 => LimitOutcome::Limited {
            remaining: remaining_u32?,
            reset_after_ms: ms(reset)?,
            retry_after_ms: if retry == -1 { None } else { Some(ms(retry)?) },
        },
        2 | 3 => LimitOutcome::Banned {
            until_ms: ms(banned_until)?,
            retry_after_ms: ms(retry)?,
            newly: code == 3,
        },
        4 => LimitOutcome::Metered { used_in_window: ms(remaining)? },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_outcomes() {
        assert_eq!(
            outcome_from_reply(&[1, 5, 100, 0, 0, 7]),
            Some(LimitOutcome::Allowed { remaining: 5, reset_after_ms: 100 })
        );
        assert_eq!(
            outcome_from_reply(&[0, 0, 100, -1, 0, 7]),
            Some(LimitOutcome::Limited { remaining: 0, reset_after_ms: 100, retry_after_ms: None })
        );
        assert_eq!(
            outcome_from_reply(&[3, 0, 900_000, 900_000, 901_000, 1000]),
            Some(LimitOutcome::Banned { until_ms: 901_000, retry_after_ms: 900_000, newly: true })
        );
        assert_eq!(
            outcome_from_reply(&[4, 12, 1, 0, 0, 7]),
            Some(LimitOutcome::Metered { used_in_window: 12 })
        );
        assert_eq!(outcome_from_reply(&[9, 0, 0, 0, 0, 0]), None);
        assert_eq!(outcome_from_reply(&[1, -3, 0, 0, 0, 0]), None);
        assert_eq!(outcome_from_reply(&[1, 2]), None);
    }
}
