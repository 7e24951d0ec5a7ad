//! The semantic cache's index: per owner account, one HNSW graph of prompt embeddings (the
//! same usearch index as memory, [`crate::memory::index::HnswIndex`]), each prompt pointing at
//! the exact cache entry that holds its answer. A lookup searches only the caller's graph and,
//! in it, only prompts whose request context (everything but the prompt's text) is the same;
//! an account's graph is never searched for another account.
//!
//! The index lives in this process: an origin answers by similarity from the prompts it saw
//! (the answers themselves are in the shared exact store). Blocking: call from the blocking
//! pool.

use crate::memory::config::Quantization;
use crate::memory::index::HnswIndex;
use heady_shared::AccountId;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

struct Prompt {
    context: String,
    exact_key: String,
    expires_at_ms: u64,
}

struct AccountIndex {
    graph: HnswIndex,
    prompts: Mutex<HashMap<u64, Prompt>>,
}

pub struct SemanticIndex {
    dim: usize,
    max_per_account: usize,
    accounts: Mutex<HashMap<AccountId, Arc<AccountIndex>>>,
    next_key: std::sync::atomic::AtomicU64,
}

/// A cached prompt close enough to the asked one.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub exact_key: String,
    pub similarity: f32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SemanticIndex {
    pub fn new(dim: usize, max_per_account: usize) -> SemanticIndex {
        SemanticIndex {
            dim,
            max_per_account: max_per_account.max(1),
            accounts: Mutex::new(HashMap::new()),
            next_key: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Prompts held, all accounts.
    pub fn len(&self) -> usize {
        let accounts: Vec<Arc<AccountIndex>> = lock(&self.accounts).values().cloned().collect();
        accounts.iter().map(|a| lock(&a.prompts).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn account(&self, owner: &AccountId) -> Option<Arc<AccountIndex>> {
        lock(&self.accounts).get(owner).cloned()
    }

    /// The closest live prompt of `owner` with the same `context`, if its cosine similarity to
    /// `embedding` is at least `threshold`.
    pub fn search(
        &self,
        owner: &AccountId,
        context: &str,
        embedding: &[f32],
        threshold: f32,
        now_ms: u64,
    ) -> Option<Found> {
        if embedding.len() != self.dim {
            return None;
        }
        let account = self.account(owner)?;
        let (allowed, keys): (HashSet<u64>, HashMap<u64, String>) = {
            let prompts = lock(&account.prompts);
            let live: Vec<(u64, String)> = prompts
                .iter()
                .filter(|(_, p)| p.context == context && p.expires_at_ms > now_ms)
                .map(|(k, p)| (*k, p.exact_key.clone()))
                .collect();
            (
                live.iter().map(|(k, _)| *k).collect(),
                live.into_iter().collect(),
            )
        };
        if allowed.is_empty() {
            return None;
        }
        let hits = account
            .graph
            .filtered_search(embedding, 1, &|k| allowed.contains(&k))
            .ok()?;
        let best = hits.first()?;
        let similarity = 1.0 - best.distance;
        (similarity >= threshold).then(|| Found {
            exact_key: keys.get(&best.key).cloned().unwrap_or_default(),
            similarity,
        })
    }

    /// Adds a prompt of `owner` that points at `exact_key` until `expires_at_ms`. A prompt
    /// already pointing at that key only gets the new expiry. Over the account's bound, expired
    /// prompts and then those closest to expiry are dropped.
    pub fn insert(
        &self,
        owner: &AccountId,
        context: &str,
        embedding: &[f32],
        exact_key: &str,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<(), String> {
        if embedding.len() != self.dim {
            return Err(format!(
                "the embedding has {} dimensions, the index {}",
                embedding.len(),
                self.dim
            ));
        }
        let account = {
            let mut accounts = lock(&self.accounts);
            match accounts.get(owner) {
                Some(a) => a.clone(),
                None => {
                    let graph = HnswIndex::new(self.dim, 16, 64, 64, Quantization::F32)
                        .map_err(|e| e.to_string())?;
                    let a = Arc::new(AccountIndex {
                        graph,
                        prompts: Mutex::new(HashMap::new()),
                    });
                    accounts.insert(owner.clone(), a.clone());
                    a
                }
            }
        };
        let (key, evicted) = {
            let mut prompts = lock(&account.prompts);
            if let Some(p) = prompts.values_mut().find(|p| p.exact_key == exact_key) {
                p.expires_at_ms = expires_at_ms;
                return Ok(());
            }
            let mut evicted: Vec<u64> = prompts
                .iter()
                .filter(|(_, p)| p.expires_at_ms <= now_ms)
                .map(|(k, _)| *k)
                .collect();
            let over = (prompts.len() + 1).saturating_sub(evicted.len() + self.max_per_account);
            if over > 0 {
                let mut by_expiry: Vec<(u64, u64)> = prompts
                    .iter()
                    .filter(|(_, p)| p.expires_at_ms > now_ms)
                    .map(|(k, p)| (p.expires_at_ms, *k))
                    .collect();
                by_expiry.sort_unstable();
                evicted.extend(by_expiry.into_iter().take(over).map(|(_, k)| k));
            }
            for k in &evicted {
                prompts.remove(k);
            }
            let key = self
                .next_key
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            prompts.insert(
                key,
                Prompt {
                    context: context.to_string(),
                    exact_key: exact_key.to_string(),
                    expires_at_ms,
                },
            );
            (key, evicted)
        };
        if !evicted.is_empty() {
            account.graph.remove_many(&evicted);
        }
        account
            .graph
            .add_missing(std::iter::once((key, embedding)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Forgets a prompt whose answer is gone from the exact store.
    pub fn remove(&self, owner: &AccountId, exact_key: &str) {
        let Some(account) = self.account(owner) else {
            return;
        };
        let keys: Vec<u64> = {
            let mut prompts = lock(&account.prompts);
            let keys: Vec<u64> = prompts
                .iter()
                .filter(|(_, p)| p.exact_key == exact_key)
                .map(|(k, _)| *k)
                .collect();
            keys.iter().for_each(|k| {
                prompts.remove(k);
            });
            keys
        };
        account.graph.remove_many(&keys);
    }

    /// Drops everything of `owner` (an account that opted out).
    pub fn drop_account(&self, owner: &AccountId) {
        let mut accounts = lock(&self.accounts);
        if !accounts.is_empty() {
            accounts.remove(owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn acct(n: u8) -> AccountId {
        AccountId::from_random([n; 15])
    }

    #[test]
    fn found_only_for_its_owner_its_context_and_above_the_threshold() {
        let idx = SemanticIndex::new(4, 10);
        let a = acct(1);
        let b = acct(2);
        let q = unit(&[1.0, 0.2, 0.0, 0.0]);
        idx.insert(&a, "ctx", &q, "k1", 10_000, 0).unwrap();
        let near = unit(&[1.0, 0.25, 0.0, 0.0]);
        let found = idx.search(&a, "ctx", &near, 0.95, 1).unwrap();
        assert_eq!(found.exact_key, "k1");
        assert!(found.similarity > 0.99);
        // Another account, another context, a distant prompt, an expired entry: nothing.
        assert_eq!(idx.search(&b, "ctx", &near, 0.95, 1), None);
        assert_eq!(idx.search(&a, "other", &near, 0.95, 1), None);
        assert_eq!(
            idx.search(&a, "ctx", &unit(&[0.0, 0.0, 1.0, 0.0]), 0.95, 1),
            None
        );
        assert_eq!(idx.search(&a, "ctx", &near, 0.95, 10_000), None);
        idx.remove(&a, "k1");
        assert_eq!(idx.search(&a, "ctx", &near, 0.95, 1), None);
        assert!(idx.insert(&a, "ctx", &[1.0], "k", 1, 0).is_err());
    }

    #[test]
    fn an_account_keeps_at_most_its_bound() {
        let idx = SemanticIndex::new(4, 3);
        let a = acct(1);
        for i in 0..10u64 {
            let v = unit(&[1.0, i as f32, 0.5, 0.0]);
            idx.insert(&a, "c", &v, &format!("k{i}"), 1_000 + i, 0)
                .unwrap();
        }
        assert_eq!(idx.len(), 3);
        // The newest (latest expiry) are kept.
        let v = unit(&[1.0, 9.0, 0.5, 0.0]);
        assert_eq!(idx.search(&a, "c", &v, 0.99, 0).unwrap().exact_key, "k9");
        idx.drop_account(&a);
        assert!(idx.is_empty());
    }
}
