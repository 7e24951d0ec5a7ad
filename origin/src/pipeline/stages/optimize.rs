//! Stage 6, optimize: every outcome goes to the pattern engine (EWMA latency and quality per
//! action and provider); the plan stage reads back the best known path.

use super::Attempt;
use crate::pipeline::{Inbound, Pipeline};

pub fn learn(p: &Pipeline, inbound: &Inbound, attempts: &[Attempt]) {
    for a in attempts.iter().filter(|a| !a.client_error) {
        let quality = if a.ok {
            a.critique.as_ref().map(|c| c.score).unwrap_or(1.0)
        } else {
            0.0
        };
        p.patterns
            .record(&inbound.action, &a.provider, a.ms, quality, a.ok);
    }
}
