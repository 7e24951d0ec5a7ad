//! The response cache: answers kept per owner account, found again by an exact hash of the
//! request (in Redis when `redis_url` is set, so every origin shares them; in this process
//! otherwise) or, for accounts that opted in, by a paraphrase of the prompt (a per-account
//! HNSW index of prompt embeddings, [`semantic`]).
//!
//! Which requests may use it and for how long is decided by `heady_shared::cache`; the
//! pipeline's `caching` module looks up before the plan and stores after the critique. The
//! cache never fails a request: a Redis error is a miss (counted, logged once per outage).

pub mod config;
pub mod semantic;
pub mod store;

use crate::lifecycle::Background;
use crate::redis::{Outage, Redis};
use heady_shared::cache::{Format, Status};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use config::CacheConfig;

/// One cached answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Unix milliseconds when it was stored (`Cache-Control: max-age` is checked against it).
    pub stored_at_ms: u64,
    /// The provider that wrote it.
    pub provider: String,
    /// The `chat.completion` object, without its `heady` trace (format `json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The stream's `data:` payloads in order, without `[DONE]` (format `sse`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
    /// The first choice's text (kept in memory as the assistant's turn on a hit).
    pub text: String,
    /// Tokens the original answer used (prompt + completion): what a hit saves.
    pub tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Frame {
    pub data: String,
    /// The usage chunk: replayed only to a client that asked for it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub usage_only: bool,
}

impl Entry {
    pub fn format(&self) -> Format {
        if self.body.is_some() {
            Format::Json
        } else {
            Format::Sse
        }
    }

    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.stored_at_ms) / 1000
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: &'static str,
}

pub struct CacheMetrics {
    /// Chat requests by what the cache did (hit, semantic_hit, miss, bypass).
    pub requests: Family<ResultLabels, Counter>,
    /// Tokens the answers served from the cache had cost.
    pub saved_tokens: Counter,
    /// Answers stored, by outcome (stored, too_large, failed).
    pub stores: Family<ResultLabels, Counter>,
    /// Store failures by operation (get, set, semantic).
    pub errors: Family<OpLabels, Counter>,
    /// Entries in this process (the in-process store and the semantic indexes).
    pub local_entries: Gauge,
    pub semantic_entries: Gauge,
    /// 1 while Redis is unreachable and the cache answers misses.
    pub degraded: Gauge,
}

impl CacheMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = CacheMetrics {
            requests: Family::default(),
            saved_tokens: Counter::default(),
            stores: Family::default(),
            errors: Family::default(),
            local_entries: Gauge::default(),
            semantic_entries: Gauge::default(),
            degraded: Gauge::default(),
        };
        registry.register(
            "heady_cache_requests",
            "Chat requests by what the response cache did: hit, semantic_hit, miss, bypass",
            m.requests.clone(),
        );
        registry.register(
            "heady_cache_saved_tokens",
            "Tokens (prompt + completion) the answers served from the cache had cost",
            m.saved_tokens.clone(),
        );
        registry.register(
            "heady_cache_stores",
            "Answers offered to the cache by outcome: stored, too_large, failed",
            m.stores.clone(),
        );
        registry.register(
            "heady_cache_errors",
            "Response cache store failures by operation (get, set, semantic)",
            m.errors.clone(),
        );
        registry.register(
            "heady_cache_local_entries",
            "Entries in the in-process exact cache (used when no redis_url is set)",
            m.local_entries.clone(),
        );
        registry.register(
            "heady_cache_semantic_entries",
            "Prompts in this process's semantic cache indexes, all accounts",
            m.semantic_entries.clone(),
        );
        registry.register(
            "heady_cache_degraded",
            "1 while Redis is unreachable and the response cache answers every lookup with a miss",
            m.degraded.clone(),
        );
        m
    }

    pub fn counted(&self, status: Status) {
        self.requests
            .get_or_create(&ResultLabels {
                result: status.as_str(),
            })
            .inc();
    }

    pub fn stored(&self, outcome: &'static str) {
        self.stores
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
    }

    pub fn error(&self, op: &'static str) {
        self.errors.get_or_create(&OpLabels { op }).inc();
    }
}

/// The exact store and the semantic indexes, with their metrics.
pub struct ResponseCache {
    pub config: CacheConfig,
    store: store::Store,
    pub semantic: semantic::SemanticIndex,
    pub metrics: CacheMetrics,
}

impl ResponseCache {
    pub fn new(
        config: CacheConfig,
        redis: Option<Arc<Redis>>,
        dim: usize,
        background: Background,
        registry: &mut Registry,
    ) -> ResponseCache {
        let metrics = CacheMetrics::register(registry);
        let store = match redis {
            Some(r) => store::Store::Redis(store::RedisStore {
                outage: Outage::new("response cache", metrics.degraded.clone()),
                redis: r,
                background,
            }),
            None => store::Store::Local(store::LocalStore::new(
                config.local_max_mb.saturating_mul(1 << 20) as usize,
            )),
        };
        ResponseCache {
            semantic: semantic::SemanticIndex::new(dim, config.semantic.max_entries_per_account),
            config,
            store,
            metrics,
        }
    }

    /// Where exact entries live: `redis` or `process`.
    pub fn backend(&self) -> &'static str {
        match self.store {
            store::Store::Redis(_) => "redis",
            store::Store::Local(_) => "process",
        }
    }

    /// The entry under `key`, if it is there and whole; a store failure is a miss.
    pub async fn get(&self, key: &str) -> Option<Entry> {
        match self.store.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Entry>(&bytes) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "a response cache entry is damaged; treated as a miss");
                    self.metrics.error("get");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "response cache lookup failed; treated as a miss");
                self.metrics.error("get");
                None
            }
        }
    }

    /// Stores `entry` under `key` for `ttl_secs`. An entry over `max_entry_bytes` is not
    /// kept. Returns whether it was stored.
    pub async fn put(&self, key: &str, entry: &Entry, ttl_secs: u64) -> bool {
        let bytes = match serde_json::to_vec(entry) {
            Ok(b) => b,
            Err(_) => return false,
        };
        if bytes.len() as u64 > self.config.max_entry_bytes {
            self.metrics.stored("too_large");
            return false;
        }
        match self.store.set(key, bytes, ttl_secs).await {
            Ok(()) => {
                self.metrics.stored("stored");
                if let store::Store::Local(l) = &self.store {
                    self.metrics.local_entries.set(l.len() as i64);
                }
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "response cache store failed");
                self.metrics.stored("failed");
                self.metrics.error("set");
                false
            }
        }
    }
}
