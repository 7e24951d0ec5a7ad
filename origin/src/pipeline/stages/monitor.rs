//! Stage 8, monitor: Page-Hinkley drift detection per provider on ln(latency) and on the
//! critique score; an alarm is a metric (`heady_pipeline_drift_events_total`) and a log event.

use super::Attempt;
use crate::pipeline::metrics::DriftLabels;
use crate::pipeline::Pipeline;
use heady_shared::drift::Direction;

pub fn watch(p: &Pipeline, attempts: &[Attempt]) {
    for a in attempts.iter().filter(|a| a.ok) {
        let now = p.now_ms();
        let mut alarms = Vec::new();
        {
            let mut h = p.lock_health(a.index);
            if let Some(d) = h.latency_drift.update(a.ms.max(0.001).ln()) {
                alarms.push(("latency", d, h.note_drift("latency", d, now)));
            }
            if let Some(c) = &a.critique {
                if let Some(d) = h.quality_drift.update(c.score) {
                    alarms.push(("quality", d, h.note_drift("quality", d, now)));
                }
            }
        }
        for (signal, d, log) in alarms {
            let direction = match d.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            };
            p.metrics
                .drift_events
                .get_or_create(&DriftLabels {
                    provider: a.provider.clone(),
                    signal,
                    direction,
                })
                .inc();
            let before = if signal == "latency" {
                d.mean_before.exp()
            } else {
                d.mean_before
            };
            if log {
                tracing::warn!(event = "drift", provider = %a.provider, signal, direction, mean_before = before, samples = d.samples, "drift detected");
            } else {
                tracing::debug!(event = "drift", provider = %a.provider, signal, direction, mean_before = before, samples = d.samples, "drift detected (repeat)");
            }
        }
    }
}
