//! What the pipeline knows about each provider: its circuit breaker, a window of recent
//! outcomes (the plan stage's Monte Carlo input) and drift detectors (the monitor's).

use super::config::PipelineConfig;
use heady_shared::breaker::CircuitBreaker;
use heady_shared::drift::{Drift, PageHinkley};
use serde::Serialize;
use std::collections::VecDeque;

pub struct ProviderHealth {
    pub breaker: CircuitBreaker,
    /// `(at_ms, success, latency_ms)`, oldest first.
    pub recent: VecDeque<(u64, bool, f64)>,
    window: usize,
    max_age_ms: u64,
    pub latency_drift: PageHinkley,
    pub quality_drift: PageHinkley,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub drifts: VecDeque<DriftEvent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftEvent {
    pub signal: &'static str,
    pub drift: Drift,
    pub at_ms: u64,
}

impl ProviderHealth {
    pub fn new(cfg: &PipelineConfig) -> Self {
        ProviderHealth {
            breaker: CircuitBreaker::new(cfg.breaker),
            recent: VecDeque::new(),
            window: cfg.readiness.window,
            max_age_ms: cfg.readiness.max_age_ms,
            latency_drift: PageHinkley::new(cfg.drift.latency),
            quality_drift: PageHinkley::new(cfg.drift.quality),
            calls: 0,
            failures: 0,
            last_error: None,
            drifts: VecDeque::new(),
        }
    }

    pub fn observe(&mut self, now_ms: u64, ok: bool, ms: f64) {
        self.calls += 1;
        if !ok {
            self.failures += 1;
        }
        self.recent.push_back((now_ms, ok, ms));
        while self.recent.len() > self.window {
            self.recent.pop_front();
        }
    }

    /// Outcomes young enough to count. Old ones age out, so a provider refused for being
    /// slow is tried again once its record is stale (refusals add no new outcomes).
    pub fn history(&self, now_ms: u64) -> Vec<(bool, f64)> {
        self.recent
            .iter()
            .filter(|(at, _, _)| now_ms.saturating_sub(*at) <= self.max_age_ms)
            .map(|(_, ok, ms)| (*ok, *ms))
            .collect()
    }

    /// The median latency of recent successful calls: what another call is expected to take.
    pub fn expected_ms(&self) -> Option<f64> {
        let mut ok: Vec<f64> = self
            .recent
            .iter()
            .filter(|(_, ok, _)| *ok)
            .map(|(_, _, ms)| *ms)
            .collect();
        if ok.is_empty() {
            return None;
        }
        ok.sort_by(f64::total_cmp);
        Some(ok[ok.len() / 2])
    }

    pub fn recent_success_rate(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let ok = self.recent.iter().filter(|(_, ok, _)| *ok).count();
        Some(ok as f64 / self.recent.len() as f64)
    }

    /// Keeps the alarm; true when it should be logged (at most one warning per signal and
    /// provider every 10 s: under a load swing the detector may fire again and again).
    pub fn note_drift(&mut self, signal: &'static str, drift: Drift, at_ms: u64) -> bool {
        let quiet = self
            .drifts
            .iter()
            .rev()
            .find(|e| e.signal == signal)
            .is_some_and(|e| at_ms.saturating_sub(e.at_ms) < 10_000);
        self.drifts.push_back(DriftEvent {
            signal,
            drift,
            at_ms,
        });
        while self.drifts.len() > 16 {
            self.drifts.pop_front();
        }
        !quiet
    }
}
