//! Stage 0, channel entry: what the request is (JSON), its deadline, its seed.

use crate::error::Error;
use crate::pipeline::{Inbound, Pipeline};
use std::time::Instant;

pub const DEADLINE_HEADER: &str = "x-heady-deadline-ms";

/// What entry hands on.
pub struct Entered {
    /// Milliseconds the client gives the whole request (`x-heady-deadline-ms` or the default).
    pub deadline_ms: u64,
    /// The request's seed: fallback order and readiness sampling are reproducible from it.
    pub seed: u64,
    /// When the request entered the pipeline: the deadline counts from here.
    pub started: Instant,
}

pub fn run(p: &Pipeline, inbound: &Inbound) -> Result<Entered, Error> {
    let started = Instant::now();
    crate::error::require_json_content_type(&inbound.headers)?;
    let deadline_ms = match inbound.headers.get(DEADLINE_HEADER) {
        None => p.config.deadline_ms,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|ms| (1..=3_600_000).contains(ms))
            .ok_or_else(|| {
                Error::bad_request(format!(
                    "{DEADLINE_HEADER} must be a whole number of milliseconds between 1 and 3600000"
                ))
            })?,
    };
    Ok(Entered {
        deadline_ms,
        seed: p.next_seed(),
        started,
    })
}
