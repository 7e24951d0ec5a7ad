//! Where exact entries live: Redis (`SET key value EX ttl`, shared by every origin) or this
//! process (a map bounded in bytes, oldest entries out first).

use crate::lifecycle::Background;
use crate::redis::{Outage, Redis, RedisError};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub enum Store {
    Redis(RedisStore),
    Local(LocalStore),
}

/// Entries in Redis, shared by every origin.
pub struct RedisStore {
    pub redis: Arc<Redis>,
    /// While Redis is down every lookup is a miss at once (no request waits on it).
    pub outage: Arc<Outage>,
    pub background: Background,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Redis(#[from] RedisError),
    #[error("redis is unreachable (the response cache is degraded until it answers)")]
    Down,
}

impl RedisStore {
    /// One command under the outage guard: while Redis is known down, none is sent.
    async fn call<T, F, Fut>(&self, command: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(::redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        if self.outage.is_down() {
            return Err(StoreError::Down);
        }
        self.redis.call(command, f).await.map_err(|e| {
            self.outage.failed(&self.redis, &e, &self.background);
            e.into()
        })
    }
}

impl Store {
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let r = match self {
            Store::Local(l) => return Ok(l.get(key)),
            Store::Redis(r) => r,
        };
        let key = key.to_string();
        r.call("GET", |mut c| async move {
            ::redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut c)
                .await
        })
        .await
    }

    pub async fn set(&self, key: &str, value: Vec<u8>, ttl_secs: u64) -> Result<(), StoreError> {
        if ttl_secs == 0 {
            return Ok(());
        }
        let r = match self {
            Store::Local(l) => {
                l.set(key, value, Duration::from_secs(ttl_secs));
                return Ok(());
            }
            Store::Redis(r) => r,
        };
        let key = key.to_string();
        r.call("SET", |mut c| async move {
            ::redis::cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("EX")
                .arg(ttl_secs)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }
}

struct Slot {
    value: Arc<Vec<u8>>,
    expires: Instant,
    seq: u64,
}

#[derive(Default)]
struct Local {
    map: HashMap<String, Slot>,
    /// Keys in the order they were written (with the write's number: a rewritten key's old
    /// place is skipped).
    order: VecDeque<(u64, String)>,
    bytes: usize,
    seq: u64,
}

/// The in-process store: at most `max_bytes` of values; the oldest writes go first.
pub struct LocalStore {
    max_bytes: usize,
    inner: Mutex<Local>,
}

impl LocalStore {
    pub fn new(max_bytes: usize) -> LocalStore {
        LocalStore {
            max_bytes,
            inner: Mutex::new(Local::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let mut l = self.lock();
        let live = l.map.get(key).map(|s| s.expires > Instant::now())?;
        if !live {
            if let Some(s) = l.map.remove(key) {
                l.bytes -= s.value.len();
            }
            return None;
        }
        l.map.get(key).map(|s| s.value.as_ref().clone())
    }

    pub fn set(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        if value.len() > self.max_bytes {
            return;
        }
        let mut l = self.lock();
        l.seq += 1;
        let seq = l.seq;
        let size = value.len();
        if let Some(old) = l.map.insert(
            key.to_string(),
            Slot {
                value: Arc::new(value),
                expires: Instant::now() + ttl,
                seq,
            },
        ) {
            l.bytes -= old.value.len();
        }
        l.bytes += size;
        l.order.push_back((seq, key.to_string()));
        while l.bytes > self.max_bytes {
            let Some((seq, k)) = l.order.pop_front() else {
                break;
            };
            if l.map.get(&k).is_some_and(|s| s.seq == seq) {
                if let Some(s) = l.map.remove(&k) {
                    l.bytes -= s.value.len();
                }
            }
        }
        // Places of rewritten or removed keys pile up in `order`: compact now and then.
        if l.order.len() > 2 * l.map.len() + 64 {
            let Local { map, order, .. } = &mut *l;
            order.retain(|(seq, k)| map.get(k).is_some_and(|s| s.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_store_expires_and_stays_within_its_bytes() {
        let s = LocalStore::new(100);
        s.set("a", vec![1; 40], Duration::from_secs(60));
        s.set("b", vec![2; 40], Duration::from_secs(60));
        assert_eq!(s.get("a"), Some(vec![1; 40]));
        // A third entry pushes the oldest out.
        s.set("c", vec![3; 40], Duration::from_secs(60));
        assert_eq!(s.get("a"), None);
        assert!(s.get("b").is_some() && s.get("c").is_some());
        // Rewriting a key does not count it twice.
        s.set("b", vec![4; 40], Duration::from_secs(60));
        assert_eq!(s.get("b"), Some(vec![4; 40]));
        assert!(s.get("c").is_some());
        s.set("d", vec![5; 10], Duration::from_millis(0));
        assert_eq!(s.get("d"), None);
        s.set("big", vec![0; 101], Duration::from_secs(60));
        assert_eq!(s.get("big"), None);
        for _ in 0..1000 {
            s.set("k", vec![0; 10], Duration::from_secs(60));
        }
        assert!(s.lock().order.len() < 200);
    }
}
