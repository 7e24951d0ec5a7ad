//! The token limiter: one Lua call to Redis per reservation or settlement
//! (`token_bucket.lua`), shared by every origin; the same bucket in process when Redis is not
//! configured or not answering (then each origin counts alone, one warning is logged,
//! `heady_token_limiter_degraded` is 1, and a probe switches back once Redis answers).

use crate::lifecycle::Background;
use crate::redis::{Outage, Redis, RedisError};
use heady_shared::token_bucket::{TokenOutcome, TokenPolicy, TokenState, MAX_TOKENS};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const SCRIPT: &str = include_str!("token_bucket.lua");
const SHARDS: usize = 16;
/// A shard forgets refilled subjects when it grows past this many.
const SWEEP_AT: usize = 4096;

/// The Redis key of a subject's token bucket, in the slot of its request limiter state.
pub fn tokens_key(subject: &str) -> String {
    format!("heady:{{{subject}}}:tokens")
}

pub struct TokenLimiter {
    redis: Option<(Arc<Redis>, redis::Script)>,
    outage: Arc<Outage>,
    background: Background,
    local: [Mutex<HashMap<String, TokenState>>; SHARDS],
}

/// A reservation or a settlement, as the script takes it.
#[derive(Debug, Clone, Copy)]
enum Op {
    Reserve { cost: u64 },
    Settle { reserved: u64, actual: u64 },
}

impl TokenLimiter {
    /// `redis = None`: in-process only. `degraded` is the gauge that says Redis is not used.
    pub fn new(redis: Option<Arc<Redis>>, degraded: Gauge, background: Background) -> Self {
        TokenLimiter {
            redis: redis.map(|r| (r, redis::Script::new(SCRIPT))),
            outage: Outage::new("token limiter", degraded),
            background,
            local: Default::default(),
        }
    }

    /// `redis`, `degraded (in-process)` or `in-process` (`/ready`).
    pub fn store(&self) -> &'static str {
        match (&self.redis, self.outage.is_down()) {
            (None, _) => "in-process",
            (Some(_), true) => "degraded (in-process)",
            (Some(_), false) => "redis",
        }
    }

    /// Reserves `cost` tokens for `subject`. Never fails: Redis trouble is decided in process.
    pub async fn reserve(&self, subject: &str, policy: &TokenPolicy, cost: u64) -> TokenOutcome {
        let cost = cost.min(MAX_TOKENS);
        let op = Op::Reserve { cost };
        if let Some(r) = self.redis_path() {
            match self.call_redis(r, subject, policy, op, None).await {
                Ok((admitted, debt)) => return policy.outcome(debt, cost, admitted),
                Err(e) => self.outage.failed(&r.0, &e, &self.background),
            }
        }
        self.with_local(subject, policy, |s, now| policy.reserve(s, now, cost))
    }

    /// Settles a reservation of `reserved` tokens with the `actual` count.
    pub async fn settle(&self, subject: &str, policy: &TokenPolicy, reserved: u64, actual: u64) {
        let (reserved, actual) = (reserved.min(MAX_TOKENS), actual.min(MAX_TOKENS));
        if let Some(r) = self.redis_path() {
            let op = Op::Settle { reserved, actual };
            match self.call_redis(r, subject, policy, op, None).await {
                Ok(_) => return,
                Err(e) => self.outage.failed(&r.0, &e, &self.background),
            }
        }
        self.with_local(subject, policy, |s, now| {
            policy.settle(s, now, reserved, actual)
        })
    }

    fn redis_path(&self) -> Option<&(Arc<Redis>, redis::Script)> {
        self.redis.as_ref().filter(|_| !self.outage.is_down())
    }

    fn with_local<T>(
        &self,
        subject: &str,
        policy: &TokenPolicy,
        f: impl FnOnce(&mut TokenState, u64) -> T,
    ) -> T {
        use std::hash::BuildHasher;
        let h =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
                .hash_one(subject);
        let mut map = self.local[(h as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = crate::defense::limiter::now_ms();
        if map.len() >= SWEEP_AT && !map.contains_key(subject) {
            map.retain(|_, s| !policy.is_idle(s, now));
        }
        f(map.entry(subject.to_string()).or_default(), now)
    }

    async fn call_redis(
        &self,
        (redis, script): &(Arc<Redis>, redis::Script),
        subject: &str,
        policy: &TokenPolicy,
        op: Op,
        now_ms: Option<u64>,
    ) -> Result<(bool, u64), RedisError> {
        let limit = policy.limit().unwrap_or(MAX_TOKENS);
        let mut inv = script.key(tokens_key(subject));
        let (name, a, b) = match op {
            Op::Reserve { cost } => ("reserve", cost, 0),
            Op::Settle { reserved, actual } => ("settle", reserved, actual),
        };
        inv.arg(name)
            .arg(limit)
            .arg(policy.window_ms())
            .arg(a)
            .arg(b)
            .arg(now_ms.map(|t| t.to_string()).unwrap_or_default());
        let (admitted, debt): (i64, i64) = redis
            .call("EVALSHA token_bucket", |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok((admitted == 1, debt.max(0) as u64))
    }

    /// The Redis path alone with a fixed clock: a reservation (tests replay traces through it).
    pub async fn reserve_redis_at(
        &self,
        subject: &str,
        policy: &TokenPolicy,
        cost: u64,
        now_ms: u64,
    ) -> Result<(TokenOutcome, u64), RedisError> {
        let r = self
            .redis
            .as_ref()
            .ok_or_else(|| RedisError::Url("no redis configured".into()))?;
        let cost = cost.min(MAX_TOKENS);
        let (admitted, debt) = self
            .call_redis(r, subject, policy, Op::Reserve { cost }, Some(now_ms))
            .await?;
        Ok((policy.outcome(debt, cost, admitted), debt))
    }

    /// The Redis path alone with a fixed clock: a settlement; answers the debt left.
    pub async fn settle_redis_at(
        &self,
        subject: &str,
        policy: &TokenPolicy,
        reserved: u64,
        actual: u64,
        now_ms: u64,
    ) -> Result<u64, RedisError> {
        let r = self
            .redis
            .as_ref()
            .ok_or_else(|| RedisError::Url("no redis configured".into()))?;
        let op = Op::Settle {
            reserved: reserved.min(MAX_TOKENS),
            actual: actual.min(MAX_TOKENS),
        };
        Ok(self
            .call_redis(r, subject, policy, op, Some(now_ms))
            .await?
            .1)
    }
}
