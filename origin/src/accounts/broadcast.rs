//! Invalidation across origins: a change to an account or a key is published on one Redis
//! channel; every origin subscribes and drops the cached lookups it affects, so a disabled
//! account or a revoked key is refused everywhere within milliseconds.
//!
//! The subscription has its own connection. When it drops, the subscriber reconnects with
//! backoff (100 ms doubling to 5 s) and clears the whole cache on resubscribing: changes
//! published meanwhile were missed. Without Redis, a change reaches other origins when their
//! cached entry expires (`defense.key_cache_secs`).

use super::AccountStore;
use crate::lifecycle::Background;
use crate::redis::{Redis, RedisError};
use futures_util::StreamExt;
use heady_shared::AccountId;
use std::sync::Arc;
use std::time::Duration;

pub const CHANNEL: &str = "heady:accounts:invalidate";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Tier, clearance or status of this account.
    Account(AccountId),
    /// This key (by its public id) was revoked or stored.
    Key(String),
}

impl std::fmt::Display for Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalidation::Account(id) => write!(f, "account:{id}"),
            Invalidation::Key(id) => write!(f, "key:{id}"),
        }
    }
}

impl std::str::FromStr for Invalidation {
    type Err = String;
    fn from_str(s: &str) -> Result<Invalidation, String> {
        match s.split_once(':') {
            Some(("account", id)) => AccountId::parse(id)
                .map(Invalidation::Account)
                .map_err(|e| e.to_string()),
            Some(("key", id)) if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Invalidation::Key(id.to_string()))
            }
            _ => Err(format!(
                "not an invalidation: {:?}",
                s.chars().take(64).collect::<String>()
            )),
        }
    }
}

/// Another way to tell the other origins of a change (the mesh's peers, `mesh::Peers`): the
/// store calls it beside the Redis publish, and it logs its own failures.
pub trait Announce: Send + Sync {
    fn announce<'a>(&'a self, inv: &'a Invalidation) -> futures_util::future::BoxFuture<'a, ()>;
}

pub async fn publish(redis: &Redis, inv: &Invalidation) -> Result<(), RedisError> {
    let msg = inv.to_string();
    redis
        .call("PUBLISH", |mut c| async move {
            ::redis::cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(msg)
                .query_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
}

/// Subscribes in `background` until shutdown.
pub fn subscribe(store: Arc<AccountStore>, redis: Arc<Redis>, background: &Background) {
    background.spawn("account invalidation", async move {
        let mut backoff = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match redis.pubsub().await {
                Ok(mut ps) => match ps.subscribe(CHANNEL).await {
                    Ok(()) => {
                        // What was published while we were away is unknown.
                        store.clear_cache();
                        if warned {
                            tracing::info!("account invalidation: subscribed again");
                        }
                        backoff = Duration::from_millis(100);
                        let mut messages = ps.on_message();
                        while let Some(msg) = messages.next().await {
                            match msg.get_payload::<String>().map_err(|e| e.to_string()).and_then(|p| p.parse::<Invalidation>()) {
                                Ok(inv) => store.drop_cached(&inv),
                                Err(e) => tracing::warn!(error = %e, "account invalidation: unreadable message ignored"),
                            }
                        }
                        tracing::warn!("account invalidation: the subscription ended; reconnecting (changes reach this origin within defense.key_cache_secs meanwhile)");
                        warned = true;
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "account invalidation: subscribing failed; retrying (changes reach this origin within defense.key_cache_secs meanwhile)");
                            warned = true;
                        }
                    }
                },
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "account invalidation: Redis unreachable; retrying (changes reach this origin within defense.key_cache_secs meanwhile)");
                        warned = true;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_junk_is_refused() {
        let a = Invalidation::Account(AccountId::from_random([3; 15]));
        assert_eq!(a.to_string().parse::<Invalidation>(), Ok(a));
        let k = Invalidation::Key("0123456789abcdef".into());
        assert_eq!(k.to_string().parse::<Invalidation>(), Ok(k));
        for bad in ["", "account:x", "key:01", "key:0123456789abcdeg", "other:1"] {
            assert!(bad.parse::<Invalidation>().is_err(), "{bad}");
        }
    }
}
