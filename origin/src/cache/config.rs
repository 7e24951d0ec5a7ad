//! `[pipeline.cache]`: the response cache's defaults and bounds.

use crate::settings::{in_range, invalid, ConfigError, KeyDoc, Ty};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub enabled: bool,
    /// How long an answer is kept when the request names no TTL.
    pub default_ttl_secs: u64,
    /// The longest TTL a request may ask for.
    pub max_ttl_secs: u64,
    /// Only requests with temperature 0 or a seed, unless the client asks for caching.
    pub deterministic_only: bool,
    /// Larger answers are not kept.
    pub max_entry_bytes: u64,
    /// The in-process store's size (used when no `redis_url` is set).
    pub local_max_mb: u64,
    pub semantic: SemanticConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SemanticConfig {
    /// Accounts that opted in may be answered by similarity; false: for no one.
    pub enabled: bool,
    /// Cosine similarity of the prompts' embeddings at or above which an answer is reused.
    pub threshold: f64,
    /// Prompts kept per account; the ones closest to expiry go first.
    pub max_entries_per_account: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: true,
            default_ttl_secs: 300,
            max_ttl_secs: 86_400,
            deterministic_only: true,
            max_entry_bytes: 1 << 20,
            local_max_mb: 64,
            semantic: SemanticConfig::default(),
        }
    }
}

impl Default for SemanticConfig {
    fn default() -> Self {
        SemanticConfig {
            enabled: true,
            threshold: 0.95,
            max_entries_per_account: 10_000,
        }
    }
}

impl CacheConfig {
    pub fn policy(&self) -> heady_shared::cache::Policy {
        heady_shared::cache::Policy {
            enabled: self.enabled,
            default_ttl_secs: self.default_ttl_secs,
            max_ttl_secs: self.max_ttl_secs,
            deterministic_only: self.deterministic_only,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("pipeline.cache.{k}");
        in_range(&key("max_ttl_secs"), self.max_ttl_secs, 1, 31_536_000)?;
        in_range(
            &key("default_ttl_secs"),
            self.default_ttl_secs,
            1,
            self.max_ttl_secs,
        )?;
        in_range(
            &key("max_entry_bytes"),
            self.max_entry_bytes,
            1024,
            512 << 20,
        )?;
        in_range(&key("local_max_mb"), self.local_max_mb, 1, 1 << 20)?;
        in_range(
            &key("semantic.max_entries_per_account"),
            self.semantic.max_entries_per_account as u64,
            1,
            10_000_000,
        )?;
        let t = self.semantic.threshold;
        if !(t.is_finite() && (0.5..=1.0).contains(&t)) {
            return Err(invalid(
                &key("semantic.threshold"),
                format!("must be between 0.5 and 1 (got {t})"),
            ));
        }
        Ok(())
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("pipeline.cache.enabled", Ty::Bool, "the response cache: chat answers kept per account and served again for the same request (docs/caching.md)"),
    KeyDoc::new("pipeline.cache.default_ttl_secs", Ty::Int, "how long an answer is kept when the request names no TTL (`Cache-Control: max-age` or `heady.cache.ttl`)"),
    KeyDoc::new("pipeline.cache.max_ttl_secs", Ty::Int, "the longest TTL a request may ask for; longer ones are cut to this"),
    KeyDoc::new("pipeline.cache.deterministic_only", Ty::Bool, "cache only requests with `temperature` 0 or a `seed`, unless the client asks for caching (a TTL or `heady.cache: true`)"),
    KeyDoc::new("pipeline.cache.max_entry_bytes", Ty::Int, "larger answers (JSON or a stream's chunks) are not kept"),
    KeyDoc::new("pipeline.cache.local_max_mb", Ty::Int, "size of the in-process store used when no `redis_url` is set; the oldest entries go first"),
    KeyDoc::new("pipeline.cache.semantic.enabled", Ty::Bool, "answer by similarity for accounts that opted in (`semantic_cache` on the account); false: for no one"),
    KeyDoc::new("pipeline.cache.semantic.threshold", Ty::Float, "cosine similarity of the prompts' embeddings at or above which a cached answer is reused"),
    KeyDoc::new("pipeline.cache.semantic.max_entries_per_account", Ty::Int, "prompts kept per account in this process's semantic index; those closest to expiry go first"),
];
