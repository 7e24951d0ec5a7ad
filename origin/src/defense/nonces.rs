//! What must be accepted once across every origin: edge nonces, tunnel handshake hellos and
//! PQC request signatures. Remembered in Redis when configured (`SET NX EX`: a replay sent to
//! another origin is caught too), else in-process. When a Redis call fails the in-process set
//! takes over at once and stays in charge until a background probe finds Redis back
//! (`redis::Outage`: `heady_nonces_degraded`, one log line each way), so no request waits on a
//! Redis already known to be down.

use crate::lifecycle::Background;
use crate::redis::{Outage, Redis};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Entries kept in-process before expired ones are swept.
const LOCAL_SWEEP_AT: usize = 100_000;

pub struct NonceStore {
    redis: Option<Arc<Redis>>,
    outage: Arc<Outage>,
    background: Background,
    /// nonce -> unix second it may be forgotten.
    seen: Mutex<HashMap<String, u64>>,
}

impl NonceStore {
    pub fn new(
        redis: Option<Arc<Redis>>,
        degraded: prometheus_client::metrics::gauge::Gauge,
        background: Background,
    ) -> NonceStore {
        NonceStore {
            redis,
            outage: Outage::new("nonce check", degraded),
            background,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Where nonces are kept now: `redis`, `degraded (in-process)` or `in-process`.
    pub fn store(&self) -> &'static str {
        match &self.redis {
            None => "in-process",
            Some(_) if self.outage.is_down() => "degraded (in-process)",
            Some(_) => "redis",
        }
    }

    /// Records `nonce` for `ttl_secs`; `false` if it was seen before.
    pub async fn first_use(&self, nonce: &str, ttl_secs: u64, now_secs: u64) -> bool {
        if let Some(redis) = self.redis.as_ref().filter(|_| !self.outage.is_down()) {
            let key = format!("heady:nonce:{nonce}");
            let set = redis
                .call("SET NX nonce", |mut c| async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(1)
                        .arg("NX")
                        .arg("EX")
                        .arg(ttl_secs)
                        .query_async::<Option<String>>(&mut c)
                        .await
                })
                .await;
            match set {
                Ok(first) => {
                    // Also remember locally, so a Redis outage later still refuses it.
                    self.first_use_local(nonce, ttl_secs, now_secs);
                    return first.is_some();
                }
                Err(e) => self.outage.failed(redis, &e, &self.background),
            }
        }
        self.first_use_local(nonce, ttl_secs, now_secs)
    }

    fn first_use_local(&self, nonce: &str, ttl_secs: u64, now_secs: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > LOCAL_SWEEP_AT {
            seen.retain(|_, &mut expires| expires > now_secs);
        }
        match seen.get(nonce) {
            Some(&expires) if expires > now_secs => false,
            _ => {
                seen.insert(nonce.to_string(), now_secs + ttl_secs);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_nonces_are_refused_until_they_expire() {
        let s = NonceStore::new(None, Default::default(), Background::new());
        assert!(s.first_use("a", 10, 100).await);
        assert!(!s.first_use("a", 10, 109).await);
        assert!(s.first_use("b", 10, 109).await);
        assert!(s.first_use("a", 10, 110).await, "forgotten after its ttl");
        assert_eq!(s.store(), "in-process");
    }
}
