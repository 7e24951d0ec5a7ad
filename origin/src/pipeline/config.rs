//! `[pipeline]`: limits and policies of the nine HCFP stages.

use crate::settings::{ConfigError, KeyDoc, Ty};
use heady_shared::breaker::BreakerPolicy;
use heady_shared::drift::DriftPolicy;
use heady_shared::Tier;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Concurrent provider calls (stage 3, execute).
    pub max_concurrency: usize,
    /// Longest a request waits for a slot before 503 `overloaded`.
    pub queue_max_wait_ms: u64,
    /// Requests waiting at most; more are refused at once.
    pub queue_max_len: usize,
    /// Default deadline the plan stage estimates against (`X-Heady-Deadline-Ms` overrides).
    pub deadline_ms: u64,
    /// Provider calls per request at most (fallbacks plus the critique retry).
    pub max_attempts: usize,
    /// Messages per request at most.
    pub max_messages: usize,
    /// Provider slots one subject may hold at once, per tier (and as many waiting); 0: up to
    /// `max_concurrency`.
    pub slots_per_subject: PerTier,
    /// Completion tokens a chat request may ask for, per tier; 0: no cap.
    pub max_tokens: PerTier,
    /// A streamed answer's whole time at most; between chunks the provider's `timeout_ms`.
    pub stream_max_secs: u64,
    pub retry: RetryConfig,
    pub readiness: ReadinessConfig,
    pub breaker: BreakerPolicy,
    pub critique: CritiqueConfig,
    pub patterns: PatternConfig,
    pub drift: DriftConfig,
    pub memory: RecallConfig,
    /// The response cache (`[pipeline.cache]`).
    pub cache: crate::cache::CacheConfig,
}

/// One number per tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTier {
    pub free: u64,
    pub pro: u64,
    pub enterprise: u64,
}

impl PerTier {
    pub fn of(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Free => self.free,
            Tier::Pro => self.pro,
            Tier::Enterprise => self.enterprise,
        }
    }
}

impl PipelineConfig {
    /// The slots a subject of `tier` may hold at once.
    pub fn share_of(&self, tier: Tier) -> usize {
        match self.slots_per_subject.of(tier) as usize {
            0 => self.max_concurrency,
            n => n.min(self.max_concurrency),
        }
    }

    /// The cap on a request's completion tokens for `tier` (`None`: no cap).
    pub fn max_tokens_of(&self, tier: Tier) -> Option<u64> {
        match self.max_tokens.of(tier) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Retries of a provider that answered 429 or 503 (529), before falling back to the next.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries per provider (0: fall back at once).
    pub max_retries: u32,
    /// Backoff: the n-th retry waits uniform in [0, min(max_ms, base_ms * 2^n)] (full jitter).
    pub base_ms: u64,
    pub max_ms: u64,
    /// A provider's `Retry-After` is waited for up to this; a longer one falls back at once.
    pub max_retry_after_ms: u64,
}

impl RetryConfig {
    pub fn backoff(&self) -> heady_shared::retry::Backoff {
        heady_shared::retry::Backoff {
            max_retries: self.max_retries,
            base_ms: self.base_ms,
            cap_ms: self.max_ms,
            max_retry_after_ms: self.max_retry_after_ms,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_retries: 2,
            base_ms: 250,
            max_ms: 4_000,
            max_retry_after_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadinessConfig {
    /// Monte Carlo trials per estimate.
    pub trials: u32,
    /// Below this P(answer within the deadline) a provider is passed over.
    pub threshold: f64,
    /// Outcomes a provider needs before its estimate counts.
    pub min_observations: usize,
    /// Recent outcomes kept per provider.
    pub window: usize,
    /// Outcomes older than this no longer count.
    pub max_age_ms: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CritiqueConfig {
    /// Answers scoring below this are retried once on another provider.
    pub threshold: f64,
    pub retry: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PatternConfig {
    /// EWMA smoothing of latency and quality per (action, provider).
    pub alpha: f64,
    /// Outcomes a path needs before the engine prefers it.
    pub min_samples: u64,
    /// How much better (score) a path must be to take the lead.
    pub margin: f64,
    /// Latency that costs as much as a perfect answer is worth (score = quality - ms/scale).
    pub latency_scale_ms: f64,
    /// How often learned paths are written to DuckDB.
    pub flush_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Page-Hinkley on ln(latency in ms) per provider.
    pub latency: DriftPolicy,
    /// Page-Hinkley on the critique score per provider.
    pub quality: DriftPolicy,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecallConfig {
    /// Store user and assistant turns of requests that carry a session id.
    pub store: bool,
    /// Earlier turns of the session added to the prompt on /api/brain/chat and /api/{action}.
    pub recall_top_k: usize,
    /// The same for /v1/chat/completions (off by default: OpenAI clients send the history).
    pub v1_recall_top_k: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_concurrency: 6,
            queue_max_wait_ms: 5_000,
            queue_max_len: 1_024,
            deadline_ms: 30_000,
            max_attempts: 3,
            max_messages: 256,
            slots_per_subject: PerTier {
                free: 2,
                pro: 4,
                enterprise: 0,
            },
            max_tokens: PerTier {
                free: 4_096,
                pro: 32_768,
                enterprise: 0,
            },
            stream_max_secs: 600,
            retry: RetryConfig::default(),
            readiness: ReadinessConfig::default(),
            breaker: BreakerPolicy::default(),
            critique: CritiqueConfig::default(),
            patterns: PatternConfig::default(),
            drift: DriftConfig::default(),
            memory: RecallConfig::default(),
            cache: crate::cache::CacheConfig::default(),
        }
    }
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            trials: 200,
            threshold: 0.2,
            min_observations: 5,
            window: 50,
            max_age_ms: 300_000,
            seed: 0x4845_4144_5950_4C4E,
        }
    }
}

impl Default for CritiqueConfig {
    fn default() -> Self {
        CritiqueConfig {
            threshold: 0.5,
            retry: true,
        }
    }
}

impl Default for PatternConfig {
    fn default() -> Self {
        PatternConfig {
            alpha: 0.2,
            min_samples: 5,
            margin: 0.05,
            latency_scale_ms: 10_000.0,
            flush_ms: 2_000,
        }
    }
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            latency: DriftPolicy {
                delta: 0.05,
                lambda: 10.0,
                min_samples: 30,
            },
            quality: DriftPolicy {
                delta: 0.02,
                lambda: 2.0,
                min_samples: 20,
            },
        }
    }
}

impl Default for RecallConfig {
    fn default() -> Self {
        RecallConfig {
            store: true,
            recall_top_k: 4,
            v1_recall_top_k: 0,
        }
    }
}

fn range(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: format!("pipeline.{key}"),
            message: format!("must be between {lo} and {hi} (got {v})"),
        })
    }
}

impl PipelineConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        range(
            "max_concurrency",
            self.max_concurrency as f64,
            1.0,
            10_000.0,
        )?;
        range(
            "queue_max_wait_ms",
            self.queue_max_wait_ms as f64,
            0.0,
            600_000.0,
        )?;
        range("queue_max_len", self.queue_max_len as f64, 0.0, 1_000_000.0)?;
        range("deadline_ms", self.deadline_ms as f64, 1.0, 3_600_000.0)?;
        range("max_attempts", self.max_attempts as f64, 1.0, 10.0)?;
        range("max_messages", self.max_messages as f64, 1.0, 100_000.0)?;
        for (tier, v) in [
            ("free", self.slots_per_subject.free),
            ("pro", self.slots_per_subject.pro),
            ("enterprise", self.slots_per_subject.enterprise),
        ] {
            range(
                &format!("slots_per_subject.{tier}"),
                v as f64,
                0.0,
                10_000.0,
            )?;
        }
        for (tier, v) in [
            ("free", self.max_tokens.free),
            ("pro", self.max_tokens.pro),
            ("enterprise", self.max_tokens.enterprise),
        ] {
            range(&format!("max_tokens.{tier}"), v as f64, 0.0, 1_000_000.0)?;
        }
        range(
            "stream_max_secs",
            self.stream_max_secs as f64,
            1.0,
            86_400.0,
        )?;
        range(
            "retry.max_retries",
            self.retry.max_retries as f64,
            0.0,
            10.0,
        )?;
        range("retry.base_ms", self.retry.base_ms as f64, 1.0, 60_000.0)?;
        range("retry.max_ms", self.retry.max_ms as f64, 1.0, 600_000.0)?;
        range(
            "retry.max_retry_after_ms",
            self.retry.max_retry_after_ms as f64,
            0.0,
            3_600_000.0,
        )?;
        let r = &self.readiness;
        range("readiness.trials", r.trials as f64, 1.0, 1_000_000.0)?;
        range("readiness.threshold", r.threshold, 0.0, 1.0)?;
        range(
            "readiness.min_observations",
            r.min_observations as f64,
            1.0,
            100_000.0,
        )?;
        range("readiness.window", r.window as f64, 1.0, 100_000.0)?;
        range(
            "readiness.max_age_ms",
            r.max_age_ms as f64,
            1.0,
            86_400_000.0,
        )?;
        let b = &self.breaker;
        range(
            "breaker.consecutive_failures",
            b.consecutive_failures as f64,
            1.0,
            10_000.0,
        )?;
        range("breaker.failure_rate", b.failure_rate, 0.01, 1.0)?;
        range("breaker.min_calls", b.min_calls as f64, 1.0, 100_000.0)?;
        range("breaker.window", b.window as f64, 1.0, 100_000.0)?;
        range(
            "breaker.cooldown_ms",
            b.cooldown_ms as f64,
            1.0,
            3_600_000.0,
        )?;
        range("critique.threshold", self.critique.threshold, 0.0, 1.0)?;
        let p = &self.patterns;
        range("patterns.alpha", p.alpha, 0.001, 1.0)?;
        range("patterns.margin", p.margin, 0.0, 1.0)?;
        range("patterns.latency_scale_ms", p.latency_scale_ms, 1.0, 1e9)?;
        range("patterns.flush_ms", p.flush_ms as f64, 10.0, 3_600_000.0)?;
        for (name, d) in [
            ("drift.latency", &self.drift.latency),
            ("drift.quality", &self.drift.quality),
        ] {
            range(&format!("{name}.delta"), d.delta, 0.0, 1e9)?;
            range(&format!("{name}.lambda"), d.lambda, 1e-9, 1e12)?;
        }
        range(
            "memory.recall_top_k",
            self.memory.recall_top_k as f64,
            0.0,
            100.0,
        )?;
        range(
            "memory.v1_recall_top_k",
            self.memory.v1_recall_top_k as f64,
            0.0,
            100.0,
        )?;
        self.cache.validate()
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("pipeline.max_concurrency", Ty::Int, "provider calls at once (stage 3, execute)"),
    KeyDoc::new("pipeline.queue_max_wait_ms", Ty::Int, "longest a request waits for a slot, then 503 `overloaded` with Retry-After"),
    KeyDoc::new("pipeline.queue_max_len", Ty::Int, "requests waiting at most; more are refused at once"),
    KeyDoc::new("pipeline.deadline_ms", Ty::Int, "deadline the plan stage estimates against (`X-Heady-Deadline-Ms` overrides per request)"),
    KeyDoc::new("pipeline.max_attempts", Ty::Int, "provider calls per request at most (fallbacks plus the critique retry)"),
    KeyDoc::new("pipeline.max_messages", Ty::Int, "messages per request at most"),
    KeyDoc::new("pipeline.slots_per_subject.free", Ty::Int, "provider slots one Free subject (an anonymous address, a key's account) may hold at once, and as many more may wait; beyond that 429 `too_many_concurrent_requests` (0: up to `max_concurrency`)"),
    KeyDoc::new("pipeline.slots_per_subject.pro", Ty::Int, "the same for Pro"),
    KeyDoc::new("pipeline.slots_per_subject.enterprise", Ty::Int, "the same for Enterprise"),
    KeyDoc::new("pipeline.max_tokens.free", Ty::Int, "completion tokens a Free chat request may ask for (`max_tokens` / `max_completion_tokens`; above: 400; absent: `max_tokens` is set to this) (0: no cap)"),
    KeyDoc::new("pipeline.max_tokens.pro", Ty::Int, "the same for Pro"),
    KeyDoc::new("pipeline.max_tokens.enterprise", Ty::Int, "the same for Enterprise"),
    KeyDoc::new("pipeline.stream_max_secs", Ty::Int, "a streamed answer's whole time at most, then it ends with an error event (between chunks the provider's `timeout_ms` applies)"),
    KeyDoc::new("pipeline.retry.max_retries", Ty::Int, "a provider that answers 429 or 503 (529) is called again this many times before the next provider is tried, within the request's deadline (0: fall back at once)"),
    KeyDoc::new("pipeline.retry.base_ms", Ty::Int, "backoff: the n-th retry waits a uniform time in [0, min(max_ms, base_ms * 2^n)] when the provider sent no Retry-After"),
    KeyDoc::new("pipeline.retry.max_ms", Ty::Int, "the backoff's cap"),
    KeyDoc::new("pipeline.retry.max_retry_after_ms", Ty::Int, "a provider's Retry-After is waited for up to this; a longer one falls back to the next provider at once"),
    KeyDoc::new("pipeline.readiness.trials", Ty::Int, "stage 2: Monte Carlo trials per estimate of P(answer within the deadline)"),
    KeyDoc::new("pipeline.readiness.threshold", Ty::Float, "below this probability a provider is passed over"),
    KeyDoc::new("pipeline.readiness.min_observations", Ty::Int, "outcomes a provider needs before its estimate counts"),
    KeyDoc::new("pipeline.readiness.window", Ty::Int, "recent outcomes kept per provider"),
    KeyDoc::new("pipeline.readiness.max_age_ms", Ty::Int, "older outcomes no longer count"),
    KeyDoc::new("pipeline.readiness.seed", Ty::Int, "seed of the sampler (estimates are reproducible)"),
    KeyDoc::new("pipeline.breaker.consecutive_failures", Ty::Int, "stage 4, per provider: this many failures in a row open the breaker"),
    KeyDoc::new("pipeline.breaker.failure_rate", Ty::Float, "so does this failure rate over the window"),
    KeyDoc::new("pipeline.breaker.min_calls", Ty::Int, "calls in the window before the rate counts"),
    KeyDoc::new("pipeline.breaker.window", Ty::Int, "recent calls the rate is measured over"),
    KeyDoc::new("pipeline.breaker.cooldown_ms", Ty::Int, "an open breaker skips the provider this long, then lets one probe call through"),
    KeyDoc::new("pipeline.critique.threshold", Ty::Float, "stage 5: answers scoring below this are retried once on another provider"),
    KeyDoc::new("pipeline.critique.retry", Ty::Bool, "whether that retry happens"),
    KeyDoc::new("pipeline.patterns.alpha", Ty::Float, "stage 6: EWMA smoothing of latency and quality per (action, provider)"),
    KeyDoc::new("pipeline.patterns.min_samples", Ty::Int, "outcomes a path needs before the pattern engine prefers it"),
    KeyDoc::new("pipeline.patterns.margin", Ty::Float, "how much better (score) a path must be to take the lead"),
    KeyDoc::new("pipeline.patterns.latency_scale_ms", Ty::Float, "latency that costs as much as a perfect answer is worth (score = quality - ms/scale)"),
    KeyDoc::new("pipeline.patterns.flush_ms", Ty::Int, "how often learned paths are written to DuckDB"),
    KeyDoc::new("pipeline.drift.latency.delta", Ty::Float, "stage 8, Page-Hinkley on ln(latency in ms) per provider: changes smaller than this are tolerated"),
    KeyDoc::new("pipeline.drift.latency.lambda", Ty::Float, "alarm threshold on the cumulative deviation"),
    KeyDoc::new("pipeline.drift.latency.min_samples", Ty::Int, "observations before any alarm"),
    KeyDoc::new("pipeline.drift.quality.delta", Ty::Float, "the same on the critique score: tolerated change"),
    KeyDoc::new("pipeline.drift.quality.lambda", Ty::Float, "alarm threshold"),
    KeyDoc::new("pipeline.drift.quality.min_samples", Ty::Int, "observations before any alarm"),
    KeyDoc::new("pipeline.memory.store", Ty::Bool, "store user and assistant turns of requests that carry a session id"),
    KeyDoc::new("pipeline.memory.recall_top_k", Ty::Int, "earlier turns of the session added to the prompt on `/api/brain/chat` and `/api/{action}`"),
    KeyDoc::new("pipeline.memory.v1_recall_top_k", Ty::Int, "the same for `/v1/chat/completions` (0: OpenAI clients send their own history)"),
];
