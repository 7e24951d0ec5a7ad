//! Failed-authentication limiting: a client address (an IPv6 one by its /64, the anonymous
//! subject) that presented more than `defense.max_failed_auth_per_minute` bad keys in the
//! current minute gets 429 `too_many_failed_auth` before its next key is looked up.
//!
//! Fixed one-minute windows. With Redis the count is shared by every origin (`INCR` on
//! `heady:authfail:<subject>:<minute>`, expiring after two minutes); without it, or while
//! Redis fails, it is counted in this process (and Redis, once known down, is tried again at
//! most once a second rather than on every request).

use crate::redis::Redis;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const WINDOW_SECS: u64 = 60;
const LOCAL_MAX: usize = 100_000;

/// The pure rule: `count` failures so far in the window that holds `now_secs`. `Some(secs)`:
/// refuse, retry after `secs` (when the window ends).
pub fn refusal(count: u64, max: u32, now_secs: u64) -> Option<u64> {
    (max > 0 && count >= u64::from(max)).then(|| WINDOW_SECS - now_secs % WINDOW_SECS)
}

fn window(now_secs: u64) -> u64 {
    now_secs / WINDOW_SECS
}

pub struct FailedAuth {
    max: u32,
    redis: Option<Arc<Redis>>,
    /// subject -> (window, failures in it)
    local: Mutex<HashMap<String, (u64, u64)>>,
    degraded: AtomicBool,
    /// While degraded: when (ms) to try Redis again.
    retry_at_ms: AtomicU64,
}

impl FailedAuth {
    pub fn new(max: u32, redis: Option<Arc<Redis>>) -> FailedAuth {
        FailedAuth {
            max,
            redis,
            local: Mutex::new(HashMap::new()),
            degraded: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    fn redis_key(subject: &str, now_secs: u64) -> String {
        format!("heady:authfail:{{{subject}}}:{}", window(now_secs))
    }

    fn local_count(&self, subject: &str, now_secs: u64) -> u64 {
        let local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        match local.get(subject) {
            Some((w, n)) if *w == window(now_secs) => *n,
            _ => 0,
        }
    }

    fn local_add(&self, subject: &str, now_secs: u64) {
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let w = window(now_secs);
        if local.len() >= LOCAL_MAX {
            local.retain(|_, (lw, _)| *lw == w);
            if local.len() >= LOCAL_MAX {
                local.clear();
            }
        }
        let e = local.entry(subject.to_string()).or_insert((w, 0));
        if e.0 != w {
            *e = (w, 0);
        }
        e.1 += 1;
    }

    /// Redis, unless it failed less than a second ago.
    fn redis(&self) -> Option<&Arc<Redis>> {
        let r = self.redis.as_ref()?;
        if self.degraded.load(Ordering::Relaxed)
            && super::limiter::now_ms() < self.retry_at_ms.load(Ordering::Relaxed)
        {
            return None;
        }
        Some(r)
    }

    fn redis_failed(&self, e: &crate::redis::RedisError) {
        self.retry_at_ms
            .store(super::limiter::now_ms() + 1000, Ordering::Relaxed);
        if !self.degraded.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "failed-auth counting falls back to this process while Redis fails");
        }
    }

    fn redis_ok(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("failed-auth counting is shared in Redis again");
        }
    }

    /// `Some(retry_after_secs)` when `subject` is over the limit now.
    pub async fn check(&self, subject: &str, now_secs: u64) -> Option<u64> {
        if !self.enabled() {
            return None;
        }
        let mut count = self.local_count(subject, now_secs);
        if let Some(r) = self.redis() {
            let key = Self::redis_key(subject, now_secs);
            match r
                .call("GET", |mut c| async move {
                    ::redis::cmd("GET")
                        .arg(key)
                        .query_async::<Option<u64>>(&mut c)
                        .await
                })
                .await
            {
                Ok(n) => {
                    self.redis_ok();
                    count = count.max(n.unwrap_or(0));
                }
                Err(e) => self.redis_failed(&e),
            }
        }
        refusal(count, self.max, now_secs)
    }

    /// Counts one failed key for `subject`.
    pub async fn record(&self, subject: &str, now_secs: u64) {
        if !self.enabled() {
            return;
        }
        self.local_add(subject, now_secs);
        if let Some(r) = self.redis() {
            let key = Self::redis_key(subject, now_secs);
            let res = r
                .call("INCR", |mut c| async move {
                    ::redis::pipe()
                        .atomic()
                        .incr(&key, 1u64)
                        .ignore()
                        .expire(&key, (2 * WINDOW_SECS) as i64)
                        .ignore()
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
            match res {
                Ok(()) => self.redis_ok(),
                Err(e) => self.redis_failed(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_past_the_limit_until_the_minute_ends() {
        assert_eq!(refusal(19, 20, 600), None);
        assert_eq!(refusal(20, 20, 600), Some(60));
        assert_eq!(refusal(25, 20, 659), Some(1));
        assert_eq!(refusal(1000, 0, 600), None, "0 turns it off");
    }

    #[tokio::test]
    async fn counted_in_process_per_subject_and_window() {
        let f = FailedAuth::new(3, None);
        for _ in 0..3 {
            assert_eq!(f.check("ip:10.0.0.1", 120).await, None);
            f.record("ip:10.0.0.1", 120).await;
        }
        assert_eq!(f.check("ip:10.0.0.1", 130).await, Some(50));
        assert_eq!(f.check("ip:10.0.0.2", 130).await, None);
        assert_eq!(f.check("ip:10.0.0.1", 180).await, None, "a new minute");
    }
}
