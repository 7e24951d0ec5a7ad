//! Stage 0, channel entry: where the request came from, its deadline, its seed.

use super::{Job, Pipeline, Stage, StageFuture};
use crate::error::ApiError;
use http::StatusCode;

pub struct Entry;

pub const DEADLINE_HEADER: &str = "x-heady-deadline-ms";

impl Stage for Entry {
    fn number(&self) -> usize {
        0
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if let Some(ct) = job.headers.get(http::header::CONTENT_TYPE) {
                let ct = ct.to_str().unwrap_or("");
                let essence = ct.split(';').next().unwrap_or("").trim();
                if !essence.eq_ignore_ascii_case("application/json") {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_media_type",
                        format!("Content-Type must be application/json (got {ct:?})"),
                    ));
                }
            }
            job.deadline_ms = match job.headers.get(DEADLINE_HEADER) {
                None => p.config.deadline_ms,
                Some(v) => v
                    .to_str()
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .filter(|ms| (1..=3_600_000).contains(ms))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "{DEADLINE_HEADER} must be a whole number of milliseconds between 1 and 3600000"
                        ))
                    })?,
            };
            job.seed = p.next_seed();
            Ok(())
        })
    }
}
