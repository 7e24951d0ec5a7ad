//! The OAuth2 `state` of sign-ins under way: random, single use, ten minutes, bound to the
//! account whose key started it and to the browser (the SHA-256 of a cookie only that browser
//! holds). In Redis when `redis_url` is set, so any origin can finish a sign-in another began;
//! in this process otherwise.

use crate::redis::{Redis, RedisError};
use heady_shared::AccountId;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a sign-in may take.
pub const STATE_TTL_SECS: u64 = 600;
/// Most sign-ins under way in one process (without Redis); the oldest go first.
const MAX_LOCAL: usize = 10_000;

/// A sign-in under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub account: AccountId,
    /// SHA-256 (hex) of the browser's cookie.
    pub browser: String,
}

impl Pending {
    fn encode(&self) -> String {
        format!("{} {}", self.account.as_str(), self.browser)
    }

    fn decode(text: &str) -> Option<Pending> {
        let (account, browser) = text.split_once(' ')?;
        Some(Pending {
            account: AccountId::parse(account).ok()?,
            browser: browser.to_string(),
        })
    }

    /// Whether `cookie` is the one this sign-in's browser was given.
    pub fn same_browser(&self, cookie: &str) -> bool {
        let hash = browser_hash(cookie);
        // Both are hashes of secrets: compare without an early exit.
        hash.len() == self.browser.len()
            && hash
                .bytes()
                .zip(self.browser.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

pub fn browser_hash(cookie: &str) -> String {
    Sha256::digest(cookie.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 32 random bytes, hex: a state or a cookie.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct States {
    redis: Option<Arc<Redis>>,
    /// state -> (sign-in, expiry in Unix seconds).
    local: Mutex<HashMap<String, (Pending, u64)>>,
}

fn redis_key(state: &str) -> String {
    format!("heady:discord:state:{state}")
}

impl States {
    pub fn new(redis: Option<Arc<Redis>>) -> States {
        States {
            redis,
            local: Mutex::new(HashMap::new()),
        }
    }

    pub fn store_name(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "in-process"
        }
    }

    pub async fn put(&self, state: &str, pending: &Pending, now: u64) -> Result<(), RedisError> {
        if let Some(r) = &self.redis {
            let (key, value) = (redis_key(state), pending.encode());
            return r
                .call("SET", |mut c| async move {
                    ::redis::cmd("SET")
                        .arg(&key)
                        .arg(&value)
                        .arg("EX")
                        .arg(STATE_TTL_SECS)
                        .query_async::<()>(&mut c)
                        .await
                })
                .await;
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        local.retain(|_, (_, expiry)| *expiry > now);
        if local.len() >= MAX_LOCAL {
            if let Some(oldest) = local
                .iter()
                .min_by_key(|(_, (_, expiry))| *expiry)
                .map(|(k, _)| k.clone())
            {
                local.remove(&oldest);
            }
        }
        local.insert(state.to_string(), (pending.clone(), now + STATE_TTL_SECS));
        Ok(())
    }

    /// The sign-in `state` names, removed so it is used at most once; `None` when unknown,
    /// used already or expired.
    pub async fn take(&self, state: &str, now: u64) -> Result<Option<Pending>, RedisError> {
        if let Some(r) = &self.redis {
            let key = redis_key(state);
            let value: Option<String> = r
                .call("GETDEL", |mut c| async move {
                    ::redis::cmd("GETDEL").arg(&key).query_async(&mut c).await
                })
                .await?;
            return Ok(value.as_deref().and_then(Pending::decode));
        }
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        Ok(local
            .remove(state)
            .filter(|(_, expiry)| *expiry > now)
            .map(|(p, _)| p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_state_is_used_once_within_its_time_by_its_browser() {
        let states = States::new(None);
        let account = AccountId::from_random([1; 15]);
        let cookie = random_token();
        let p = Pending {
            account: account.clone(),
            browser: browser_hash(&cookie),
        };
        states.put("s1", &p, 1000).await.unwrap();
        states.put("s2", &p, 1000).await.unwrap();
        let got = states.take("s1", 1001).await.unwrap().unwrap();
        assert_eq!(got.account, account);
        assert!(got.same_browser(&cookie) && !got.same_browser("another"));
        assert_eq!(states.take("s1", 1002).await.unwrap(), None, "single use");
        assert_eq!(
            states.take("s2", 1000 + STATE_TTL_SECS).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(Pending::decode(&p.encode()), Some(p));
        assert_ne!(random_token(), random_token());
    }
}
