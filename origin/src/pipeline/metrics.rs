//! Pipeline metrics, registered in the daemon's registry beside the HTTP ones.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub provider: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    pub provider: String,
    pub signal: &'static str,
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub provider: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub reason: &'static str,
}

pub struct PipelineMetrics {
    pub stage_seconds: Family<StageLabels, Histogram>,
    pub provider_calls: Family<CallLabels, Counter>,
    pub drift_events: Family<DriftLabels, Counter>,
    /// 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<ProviderLabels, Gauge>,
    pub refusals: Family<RefusalLabels, Counter>,
    pub compensations: Counter,
    pub critique_retries: Counter,
    /// Calls made again to the same provider after its 429 or 503.
    pub retries: Family<RetryLabels, Counter>,
    /// Requests that went on to the next provider after this one failed.
    pub fallbacks: Family<ProviderLabels, Counter>,
}

impl PipelineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let stage_seconds = Family::<StageLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        let m = PipelineMetrics {
            stage_seconds,
            provider_calls: Family::default(),
            drift_events: Family::default(),
            breaker_state: Family::default(),
            refusals: Family::default(),
            compensations: Counter::default(),
            critique_retries: Counter::default(),
            retries: Family::default(),
            fallbacks: Family::default(),
        };
        registry.register(
            "heady_pipeline_stage_seconds",
            "Time spent in each HCFP stage per request",
            m.stage_seconds.clone(),
        );
        registry.register(
            "heady_pipeline_provider_calls",
            "Provider calls by provider and outcome",
            m.provider_calls.clone(),
        );
        registry.register(
            "heady_pipeline_drift_events",
            "Page-Hinkley drift alarms by provider, signal and direction",
            m.drift_events.clone(),
        );
        registry.register(
            "heady_pipeline_breaker_state",
            "Circuit breaker per provider: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        registry.register(
            "heady_pipeline_refusals",
            "Requests refused early by reason (no_provider, unsupported_feature, not_ready, overloaded, too_many_concurrent, providers_unavailable)",
            m.refusals.clone(),
        );
        registry.register(
            "heady_pipeline_compensations",
            "Compensation hooks run for failed requests",
            m.compensations.clone(),
        );
        registry.register(
            "heady_pipeline_critique_retries",
            "Answers retried on another provider after a low self-critique score",
            m.critique_retries.clone(),
        );
        registry.register(
            "heady_pipeline_retries",
            "Provider calls retried after a 429 or 503 (529), by provider and the status that caused it",
            m.retries.clone(),
        );
        registry.register(
            "heady_pipeline_fallbacks",
            "Requests that went on to the next provider after this one failed",
            m.fallbacks.clone(),
        );
        m
    }

    pub fn retried(&self, provider: &str, status: u16) {
        self.retries
            .get_or_create(&RetryLabels {
                provider: provider.to_string(),
                status,
            })
            .inc();
    }

    pub fn fell_back(&self, provider: &str) {
        self.fallbacks
            .get_or_create(&ProviderLabels {
                provider: provider.to_string(),
            })
            .inc();
    }

    pub fn observe_stage(&self, stage: &'static str, secs: f64) {
        self.stage_seconds
            .get_or_create(&StageLabels { stage })
            .observe(secs);
    }

    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }
}
