//! The exact rate limiter: one Lua call to Redis per decision, shared by every origin; an
//! in-process log with the same algorithm while Redis is unreachable or not configured.
//!
//! Degrading never answers 500: a failed Redis call is decided locally, the limiter is marked
//! degraded (`heady_limiter_degraded` = 1, one log line), and a background probe PINGs Redis
//! until it answers, then switches back (one log line). While degraded, each process counts
//! on its own, so N processes may admit up to N times the limit.

use crate::lifecycle::Background;
use crate::metrics::Metrics;
use crate::redis::{Redis, RedisError};
use heady_shared::limiter::LimitOutcome;
use heady_shared::sliding_log::{LogPolicy, LogState};
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCRIPT: &str = include_str!("sliding_log.lua");
const SHARDS: usize = 32;
/// A shard sweeps out idle subjects when it grows past this many.
const SWEEP_AT: usize = 4096;

/// The Redis key holding one subject's limiter state (log, attempts, ban, offences). The
/// `{subject}` hash tag places everything about a subject in one Redis Cluster slot.
pub fn state_key(subject: &str) -> String {
    format!("heady:{{{subject}}}:state")
}

/// A ban as the operator CLI lists it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BanEntry {
    pub subject: String,
    pub retry_after_secs: u64,
}

pub struct RateLimiter {
    redis: Option<RedisPath>,
    local: LocalLimiter,
    metrics: Arc<Metrics>,
    background: Background,
}

struct RedisPath {
    redis: Arc<Redis>,
    script: redis::Script,
    degraded: AtomicBool,
    probing: AtomicBool,
}

impl RateLimiter {
    /// `redis = None`: the embedded default, in-process only. The recovery probe runs in
    /// `background`.
    pub fn new(redis: Option<Arc<Redis>>, metrics: Arc<Metrics>, background: Background) -> Self {
        RateLimiter {
            redis: redis.map(|redis| RedisPath {
                redis,
                script: redis::Script::new(SCRIPT),
                degraded: AtomicBool::new(false),
                probing: AtomicBool::new(false),
            }),
            local: LocalLimiter::default(),
            metrics,
            background,
        }
    }

    pub fn is_degraded(&self) -> bool {
        self.redis
            .as_ref()
            .is_some_and(|r| r.degraded.load(Ordering::Relaxed))
    }

    pub fn uses_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// One decision for `subject` under `policy`. Never fails: Redis trouble is decided locally.
    pub async fn decide(self: &Arc<Self>, subject: &str, policy: &LogPolicy) -> LimitOutcome {
        if let Some(r) = &self.redis {
            if !r.degraded.load(Ordering::Relaxed) {
                match self.decide_redis(r, subject, policy, None).await {
                    Ok(out) => return out,
                    Err(e) => self.degrade(&e),
                }
            }
        }
        self.local.decide(subject, policy, now_ms())
    }

    /// The Redis path alone, with an optional fixed clock (tests replay traces through it).
    pub async fn decide_redis_at(
        &self,
        subject: &str,
        policy: &LogPolicy,
        now_ms: Option<u64>,
    ) -> Result<LimitOutcome, RedisError> {
        let r = self
            .redis
            .as_ref()
            .ok_or_else(|| RedisError::Url("no redis configured".into()))?;
        self.decide_redis(r, subject, policy, now_ms).await
    }

    async fn decide_redis(
        &self,
        r: &RedisPath,
        subject: &str,
        policy: &LogPolicy,
        now_ms: Option<u64>,
    ) -> Result<LimitOutcome, RedisError> {
        let b = policy.ban();
        let limit: i64 = policy.limit().map_or(-1, i64::from);
        let mut inv = r.script.key(state_key(subject));
        inv.arg(limit)
            .arg(policy.window_ms())
            .arg(b.threshold_factor)
            .arg(b.base_ttl_secs)
            .arg(b.max_ttl_secs)
            .arg(b.offence_memory_secs)
            .arg(now_ms.map(|t| t.to_string()).unwrap_or_default());
        let reply: (i64, i64, i64) = r
            .redis
            .call("EVALSHA sliding_log", |mut c| async move {
                inv.invoke_async(&mut c).await
            })
            .await?;
        Ok(outcome_of(reply, now_ms.unwrap_or_else(now_ms_fn)))
    }

    fn degrade(self: &Arc<Self>, error: &RedisError) {
        let Some(r) = &self.redis else { return };
        if !r.degraded.swap(true, Ordering::AcqRel) {
            tracing::warn!(%error, "rate limiter degraded: Redis unreachable, deciding in-process until it answers again");
            self.metrics.limiter_degraded.set(1);
        }
        if !r.probing.swap(true, Ordering::AcqRel) {
            let me = self.clone();
            self.background
                .spawn("limiter recovery probe", async move { me.probe().await });
        }
    }

    /// PINGs Redis until it answers, then ends the degraded state.
    async fn probe(self: Arc<Self>) {
        let Some(r) = &self.redis else { return };
        let mut delay = Duration::from_millis(100);
        loop {
            tokio::time::sleep(delay).await;
            match r.redis.ping().await {
                Ok(_) => {
                    r.degraded.store(false, Ordering::Release);
                    r.probing.store(false, Ordering::Release);
                    self.metrics.limiter_degraded.set(0);
                    tracing::info!("rate limiter recovered: deciding in Redis again");
                    return;
                }
                Err(_) => {
                    // `ping` dropped the connection: the next one starts afresh.
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Current bans: from Redis when configured (every origin's view), else this process's.
    pub async fn bans(&self) -> Result<Vec<BanEntry>, RedisError> {
        let Some(r) = &self.redis else {
            return Ok(self.local.bans(now_ms()));
        };
        let mut conn = r.redis.connection().await?;
        let now = redis_now_ms(&mut conn).await?;
        let mut out = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("heady:{*}:state")
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| cmd_error("SCAN", e))?;
            for k in keys {
                let until: Option<u64> = redis::cmd("HGET")
                    .arg(&k)
                    .arg("bu")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| cmd_error("HGET", e))?;
                let subject = k
                    .strip_prefix("heady:{")
                    .and_then(|s| s.strip_suffix("}:state"));
                if let (Some(subject), Some(until)) = (subject, until) {
                    if until > now {
                        out.push(BanEntry {
                            subject: subject.to_string(),
                            retry_after_secs: (until - now).div_ceil(1000),
                        });
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        Ok(out)
    }

    /// Lifts a ban and forgets the subject's offences and attempts. `Ok(false)`: not banned.
    pub async fn lift(&self, subject: &str) -> Result<bool, RedisError> {
        let local = self.local.lift(subject, now_ms());
        let Some(r) = &self.redis else {
            return Ok(local);
        };
        let mut conn = r.redis.connection().await?;
        let state = state_key(subject);
        let now = redis_now_ms(&mut conn).await?;
        let until: Option<u64> = redis::cmd("HGET")
            .arg(&state)
            .arg("bu")
            .query_async(&mut conn)
            .await
            .map_err(|e| cmd_error("HGET", e))?;
        // The admission log stays: the subject is still held to its rate limit.
        let _: i64 = redis::cmd("HDEL")
            .arg(&state)
            .arg(&["bu", "n", "on", "oe"])
            .query_async(&mut conn)
            .await
            .map_err(|e| cmd_error("HDEL", e))?;
        Ok(until.is_some_and(|u| u > now) || local)
    }
}

/// Redis's clock (the one the script decides by), in ms.
async fn redis_now_ms(conn: &mut ConnectionManager) -> Result<u64, RedisError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .map_err(|e| cmd_error("TIME", e))?;
    Ok(secs * 1000 + micros / 1000)
}

fn cmd_error(command: &'static str, e: redis::RedisError) -> RedisError {
    RedisError::Command {
        command,
        message: e.to_string(),
    }
}

fn now_ms_fn() -> u64 {
    now_ms()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The script's `{code, a, b}` as the shared outcome type.
fn outcome_of((code, a, b): (i64, i64, i64), now_ms: u64) -> LimitOutcome {
    let ms = |v: i64| v.max(0) as u64;
    match code {
        0 => LimitOutcome::Allowed {
            remaining: a.clamp(0, i64::from(u32::MAX)) as u32,
            reset_after_ms: ms(b),
        },
        1 => LimitOutcome::Limited {
            remaining: 0,
            reset_after_ms: ms(b),
            retry_after_ms: (a >= 0).then_some(ms(a)),
        },
        2 => LimitOutcome::Banned {
            until_ms: now_ms + ms(a),
            retry_after_ms: ms(a),
            newly: b == 1,
        },
        _ => LimitOutcome::Metered {
            used_in_window: ms(a),
        },
    }
}

/// The in-process fallback: the shared sliding log per subject, in sharded maps.
#[derive(Default)]
pub struct LocalLimiter {
    shards: [Mutex<HashMap<String, LogState>>; SHARDS],
}

impl LocalLimiter {
    fn shard(&self, subject: &str) -> &Mutex<HashMap<String, LogState>> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(subject);
        &self.shards[(h as usize) % SHARDS]
    }

    pub fn decide(&self, subject: &str, policy: &LogPolicy, now_ms: u64) -> LimitOutcome {
        let mut map = self
            .shard(subject)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT && !map.contains_key(subject) {
            let w = policy.window_ms();
            map.retain(|_, s| !s.is_idle(w, now_ms));
        }
        let state = map.entry(subject.to_string()).or_default();
        policy.decide(state, now_ms)
    }

    fn bans(&self, now_ms: u64) -> Vec<BanEntry> {
        let mut out: Vec<BanEntry> = self
            .shards
            .iter()
            .flat_map(|s| {
                let map = s.lock().unwrap_or_else(|p| p.into_inner());
                map.iter()
                    .filter(|(_, st)| st.banned_until_ms > now_ms)
                    .map(|(k, st)| BanEntry {
                        subject: k.clone(),
                        retry_after_secs: (st.banned_until_ms - now_ms).div_ceil(1000),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
    }

    fn lift(&self, subject: &str, now_ms: u64) -> bool {
        let mut map = self
            .shard(subject)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match map.get_mut(subject) {
            Some(s) => {
                let was = s.banned_until_ms > now_ms;
                s.banned_until_ms = 0;
                s.offences = 0;
                s.offences_expire_at_ms = 0;
                s.attempts = 0;
                was
            }
            None => false,
        }
    }
}
