//! What a request leaves behind: each stage's time (for `Server-Timing`, the `heady` object
//! and the `heady_pipeline_stage_seconds` histogram) and the plan's reasoning.

use super::stages::Stage;
use serde::Serialize;
use std::time::{Duration, Instant};

/// What the plan stage decided, shown in the `heady` object and in `Server-Timing`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PlanTrace {
    pub decision: String,
    pub deadline_ms: u64,
    pub order: Vec<String>,
    pub estimates: Vec<ProviderEstimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Providers of the group skipped for lacking what the request needs ("cf: tools").
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderEstimate {
    pub provider: String,
    /// P(answer within the deadline); null until the provider has enough history.
    pub p: Option<f64>,
    pub observations: usize,
}

pub struct Trace {
    pub started: Instant,
    timings: [Duration; 9],
    ran: [bool; 9],
    pub plan: PlanTrace,
}

impl Default for Trace {
    fn default() -> Self {
        Trace {
            started: Instant::now(),
            timings: [Duration::ZERO; 9],
            ran: [false; 9],
            plan: PlanTrace::default(),
        }
    }
}

impl Trace {
    /// Adds the time since `since` to `stage`.
    pub fn add(&mut self, stage: Stage, since: Instant) {
        let i = stage as usize;
        self.timings[i] += since.elapsed();
        self.ran[i] = true;
    }

    /// Records that the request went through `stage` with nothing for it to do (a stream's
    /// optimize and monitor run when it ends), so every stage shows in `Server-Timing`.
    pub fn pass(&mut self, stage: Stage) {
        self.ran[stage as usize] = true;
    }

    /// Runs `f` as (part of) `stage`.
    pub fn time<T>(&mut self, stage: Stage, f: impl FnOnce(&mut Self) -> T) -> T {
        let t = Instant::now();
        let r = f(self);
        self.add(stage, t);
        r
    }

    pub fn time_of(&self, stage: Stage) -> Option<Duration> {
        let i = stage as usize;
        self.ran[i].then_some(self.timings[i])
    }

    /// Milliseconds per stage that ran, in stage order.
    pub fn stage_ms(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        for stage in Stage::ALL {
            if let Some(d) = self.time_of(stage) {
                let ms = (d.as_secs_f64() * 1e6).round() / 1e3;
                m.insert(stage.name().into(), serde_json::json!(ms));
            }
        }
        m
    }

    /// `Server-Timing: entry;dur=0.012, ...` with the plan's estimate as its description.
    pub fn server_timing(&self) -> String {
        use std::fmt::Write;
        // Integer formatting (ms with three decimals from whole microseconds): float
        // formatting showed up in the overhead profile.
        let mut out = String::with_capacity(256);
        for stage in Stage::ALL {
            let Some(d) = self.time_of(stage) else {
                continue;
            };
            if !out.is_empty() {
                out.push_str(", ");
            }
            let us = d.as_micros();
            let _ = write!(out, "{};dur={}.{:03}", stage.name(), us / 1000, us % 1000);
            if stage == Stage::Plan && !self.plan.decision.is_empty() {
                let _ = write!(out, ";desc=\"{}", self.plan.decision);
                if let Some(p) = self.plan.chain_p {
                    let milli = (p.clamp(0.0, 1.0) * 1000.0).round() as u32;
                    let _ = write!(out, " p={}.{:03}", milli / 1000, milli % 1000);
                }
                out.push('"');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_lists_stages_that_ran_in_order_with_the_plan_decision() {
        let mut t = Trace::default();
        let now = Instant::now();
        t.add(Stage::Monitor, now);
        t.add(Stage::Entry, now);
        t.add(Stage::Plan, now);
        t.plan.decision = "proceed".into();
        t.plan.chain_p = Some(0.9876);
        let s = t.server_timing();
        let names: Vec<&str> = s
            .split(", ")
            .map(|e| e.split(';').next().unwrap())
            .collect();
        assert_eq!(names, ["entry", "plan", "monitor"]);
        assert!(s.contains(";desc=\"proceed p=0.988\""), "{s}");
        assert_eq!(t.stage_ms().len(), 3);
        assert!(t.time_of(Stage::Execute).is_none());
    }
}
