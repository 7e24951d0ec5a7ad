//! Usage metering: what each account used, per model and UTC day, and token limits per tier.
//!
//! - A request is charged through a [`Meter`]: before the provider is called it reserves an
//!   estimate in the subject's token bucket ([`limiter`], exact across origins through Redis);
//!   when the call is done it records what the provider reported (or a tokenizer estimate,
//!   marked so: [`tokens`]) and settles the bucket with the real count.
//! - Records are added up in memory ([`recorder`]) and written to the shared store ([`store`]:
//!   PostgreSQL when `database_url` is set, else the DuckDB file) in one batch every
//!   `usage.flush_interval_ms` and at shutdown, so no request waits on the database.
//! - Enterprise accounts' usage is also kept in per-minute meter buckets, an outbox a
//!   [`meter`] reporter sends as idempotent meter events.
//! - Anonymous callers own nothing: their tokens are limited and counted in Prometheus only.
//!
//! Every read and write of stored usage names its account.

pub mod config;
mod duck;
pub mod limiter;
pub mod meter;
mod pg;
pub mod recorder;
pub mod report;
pub mod store;
pub mod tokens;

use crate::lifecycle::Background;
use heady_shared::token_bucket::TokenOutcome;
use heady_shared::{AccountId, Tier};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::sync::Arc;

pub use config::UsageConfig;
pub use limiter::TokenLimiter;
pub use recorder::Recorder;
pub use store::UsageStore;

/// What one provider call used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Used {
    /// The model that answered (as the provider named it).
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Counted by our tokenizer because the provider reported no usage.
    pub estimated: bool,
}

impl Used {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// The provider's `usage` object (`prompt_tokens`, `completion_tokens`), when it has one
    /// with at least the prompt count.
    pub fn from_provider(model: &str, usage: &serde_json::Value) -> Option<Used> {
        let n = |k: &str| usage.get(k).and_then(serde_json::Value::as_u64);
        let prompt = n("prompt_tokens").or_else(|| n("input_tokens"))?;
        let completion = n("completion_tokens")
            .or_else(|| n("output_tokens"))
            .unwrap_or(0);
        Some(Used {
            model: model_label(model),
            prompt_tokens: prompt,
            completion_tokens: completion,
            estimated: false,
        })
    }
}

/// A model name as stored and labelled: at most 128 characters, never empty.
pub fn model_label(model: &str) -> String {
    let m: String = model.trim().chars().take(128).collect();
    if m.is_empty() {
        "unknown".into()
    } else {
        m
    }
}

/// Running totals: one account, model and day (or a sum of such).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Requests whose tokens were estimated by the tokenizer.
    pub estimated_requests: u64,
}

impl Counts {
    pub fn of(u: &Used) -> Counts {
        Counts {
            requests: 1,
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            estimated_requests: u64::from(u.estimated),
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.estimated_requests += o.estimated_requests;
    }

    pub fn total_tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// Bad input, naming the parameter.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The store failed (the text is for the log).
    #[error("usage store: {0}")]
    Store(String),
}

impl From<crate::db::DbError> for UsageError {
    fn from(e: crate::db::DbError) -> Self {
        UsageError::Store(e.to_string())
    }
}

impl From<duckdb::Error> for UsageError {
    fn from(e: duckdb::Error) -> Self {
        UsageError::Store(e.to_string())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub tier: &'static str,
    pub model: String,
    /// prompt, completion
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub tier: &'static str,
    pub model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub tier: &'static str,
    /// admitted, limited
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// ok, failed (flushes); reported, failed, no_customer (meter events)
    pub outcome: &'static str,
}

/// Usage in Prometheus: by tier and model, never by account.
#[derive(Clone)]
pub struct UsageMetrics {
    pub tokens: Family<TokenLabels, Counter>,
    pub requests: Family<ModelLabels, Counter>,
    pub estimated: Family<ModelLabels, Counter>,
    pub limits: Family<LimitLabels, Counter>,
    pub flushes: Family<OutcomeLabels, Counter>,
    pub meter_events: Family<OutcomeLabels, Counter>,
    pub limiter_degraded: Gauge,
}

impl UsageMetrics {
    pub fn register(registry: &mut Registry) -> UsageMetrics {
        let m = UsageMetrics {
            tokens: Family::default(),
            requests: Family::default(),
            estimated: Family::default(),
            limits: Family::default(),
            flushes: Family::default(),
            meter_events: Family::default(),
            limiter_degraded: Gauge::default(),
        };
        registry.register(
            "heady_usage_tokens",
            "Tokens used by chat and embedding calls, by tier, model and kind (prompt, completion)",
            m.tokens.clone(),
        );
        registry.register(
            "heady_usage_requests",
            "Provider answers counted for usage, by tier and model",
            m.requests.clone(),
        );
        registry.register(
            "heady_usage_estimated",
            "Provider answers without a usage report, counted by the tokenizer, by tier and model",
            m.estimated.clone(),
        );
        registry.register(
            "heady_token_limit_decisions",
            "Token limit decisions before a call, by tier and outcome",
            m.limits.clone(),
        );
        registry.register(
            "heady_usage_flushes",
            "Batches of recorded usage written to the store, by outcome",
            m.flushes.clone(),
        );
        registry.register(
            "heady_meter_events",
            "Meter buckets sent to the meter sink, by outcome",
            m.meter_events.clone(),
        );
        registry.register(
            "heady_token_limiter_degraded",
            "1 while Redis is unreachable and token limits are decided in-process",
            m.limiter_degraded.clone(),
        );
        m
    }

    fn observe(&self, tier: Tier, u: &Used) {
        let tier = tier.as_str();
        for (kind, n) in [
            ("prompt", u.prompt_tokens),
            ("completion", u.completion_tokens),
        ] {
            self.tokens
                .get_or_create(&TokenLabels {
                    tier,
                    model: u.model.clone(),
                    kind,
                })
                .inc_by(n);
        }
        let labels = ModelLabels {
            tier,
            model: u.model.clone(),
        };
        self.requests.get_or_create(&labels).inc();
        if u.estimated {
            self.estimated.get_or_create(&labels).inc();
        }
    }
}

/// Usage: the recorder, its store, the token limiter and their metrics.
pub struct Usage {
    pub config: UsageConfig,
    pub store: UsageStore,
    pub recorder: Recorder,
    pub limiter: Arc<TokenLimiter>,
    pub metrics: UsageMetrics,
    /// Off (`defense.enabled = false`): usage is recorded but nothing is limited.
    enforce: bool,
    background: Background,
}

/// A reservation the token limit refused.
#[derive(Debug)]
pub struct Refused {
    pub outcome: TokenOutcome,
    /// The token policy's `RateLimit` fields and `Retry-After`.
    pub headers: Vec<(&'static str, String)>,
    /// The tokens the request was estimated to need.
    pub estimate: u64,
}

/// Who a request is charged to.
#[derive(Debug, Clone)]
pub struct Payer {
    /// `None`: anonymous, nothing recorded per account.
    pub owner: Option<AccountId>,
    pub tier: Tier,
    /// The limiter subject (`user:<account>` or `ip:<address>`).
    pub subject: String,
}

impl Usage {
    pub fn new(
        config: UsageConfig,
        store: UsageStore,
        limiter: Arc<TokenLimiter>,
        metrics: UsageMetrics,
        enforce: bool,
        background: Background,
    ) -> Usage {
        Usage {
            recorder: Recorder::new(config.meter_bucket_secs as i64),
            config,
            store,
            limiter,
            metrics,
            enforce,
            background,
        }
    }

    /// `RateLimit-Policy` name of a tier's token limit.
    pub fn policy_name(tier: Tier) -> String {
        format!("{}-tokens", tier.as_str())
    }

    /// Reserves `estimate()` tokens for `payer` before a call (the estimate is made only when
    /// the tier is limited). `Err`: over the tier's limit, with the outcome, its headers and
    /// the estimate; nothing is held then.
    pub async fn begin(
        self: &Arc<Self>,
        payer: Payer,
        estimate: impl FnOnce() -> u64,
    ) -> Result<Meter, Refused> {
        let policy = self.config.policy(payer.tier);
        let (outcome, headers) = if self.enforce && policy.limit().is_some() {
            let estimate = estimate();
            let outcome = self
                .limiter
                .reserve(&payer.subject, &policy, estimate)
                .await;
            let headers = policy.headers(&Self::policy_name(payer.tier), &outcome);
            let verdict = if outcome.is_admitted() {
                "admitted"
            } else {
                "limited"
            };
            self.metrics
                .limits
                .get_or_create(&LimitLabels {
                    tier: payer.tier.as_str(),
                    outcome: verdict,
                })
                .inc();
            if !outcome.is_admitted() {
                return Err(Refused {
                    outcome,
                    headers,
                    estimate,
                });
            }
            (outcome, headers)
        } else {
            (TokenOutcome::Unlimited, Vec::new())
        };
        Ok(Meter {
            usage: Some(self.clone()),
            payer,
            reserved: outcome.reserved(),
            headers,
        })
    }

    /// Records what one request used, without a reservation (tests, tools).
    pub fn record(&self, payer: &Payer, used: &[Used], now_ms: u64) {
        for u in used {
            self.metrics.observe(payer.tier, u);
        }
        if let Some(owner) = &payer.owner {
            self.recorder
                .add(owner, payer.tier == Tier::Enterprise, used, now_ms);
        }
    }

    /// Writes what the recorder holds to the store (the flusher, the usage API, shutdown).
    /// The write runs as a task of its own, so a caller that stops waiting (a usage API
    /// request whose client left, the flusher cancelled at shutdown) never cuts a batch off
    /// half-written.
    pub async fn flush(self: &Arc<Self>) -> Result<(), UsageError> {
        let me = self.clone();
        let task = self.background.spawn_joinable(async move {
            let r = me.recorder.flush(&me.store).await;
            let outcome = if r.is_ok() { "ok" } else { "failed" };
            me.metrics
                .flushes
                .get_or_create(&OutcomeLabels { outcome })
                .inc();
            r
        });
        task.await
            .map_err(|e| UsageError::Store(format!("the flush task failed: {e}")))?
    }
}

/// Flushes every `usage.flush_interval_ms` until cancelled; the last flush is
/// `App::shutdown`'s, after every request and stream has ended.
pub async fn flush_every(usage: Arc<Usage>, token: tokio_util::sync::CancellationToken) {
    let every = std::time::Duration::from_millis(usage.config.flush_interval_ms);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match usage.flush().await {
            Ok(()) if warned => {
                warned = false;
                tracing::info!("usage store answering again: recorded usage written");
            }
            Ok(()) => {}
            Err(e) => {
                if !warned {
                    tracing::warn!(error = %e, "could not write recorded usage; kept in memory, retrying");
                    warned = true;
                }
            }
        }
    }
}

/// One request's charge: the tokens reserved before the call, settled when it ends.
/// Dropped unfinished (the client went away mid-request), the reservation is given back.
pub struct Meter {
    usage: Option<Arc<Usage>>,
    pub payer: Payer,
    reserved: u64,
    /// The token limit's `RateLimit` fields for the response (empty when unlimited).
    pub headers: Vec<(&'static str, String)>,
}

impl Meter {
    /// A meter that records nothing and limits nothing (benchmarks of the pipeline alone).
    pub fn detached(payer: Payer) -> Meter {
        Meter {
            usage: None,
            payer,
            reserved: 0,
            headers: Vec::new(),
        }
    }

    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Moves the charge out, leaving a detached meter in its place.
    pub fn take(&mut self) -> Meter {
        let payer = self.payer.clone();
        std::mem::replace(self, Meter::detached(payer))
    }

    /// The request is over: record what it used and settle the reservation with it.
    pub async fn finish(mut self, used: &[Used]) {
        let Some(usage) = self.usage.take() else {
            return;
        };
        let now = crate::defense::limiter::now_ms();
        usage.record(&self.payer, used, now);
        let actual: u64 = used.iter().map(Used::total).sum();
        let reserved = std::mem::take(&mut self.reserved);
        let policy = usage.config.policy(self.payer.tier);
        if usage.enforce && policy.limit().is_some() {
            usage
                .limiter
                .settle(&self.payer.subject, &policy, reserved, actual)
                .await;
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let (Some(usage), reserved) = (self.usage.take(), self.reserved) else {
            return;
        };
        // Outside a runtime (or once shutdown has begun) the bucket refills on its own.
        if reserved == 0 || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let subject = self.payer.subject.clone();
        let policy = usage.config.policy(self.payer.tier);
        let bg = usage.background.clone();
        bg.spawn_to_end(async move {
            usage.limiter.settle(&subject, &policy, reserved, 0).await;
        });
    }
}
