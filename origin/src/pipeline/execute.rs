//! Stage 3, execute: one provider call per pass, under the admission bound (default 6 at once,
//! a queue ordered by service-group weight, 503 `overloaded` + Retry-After past the wait).

use super::admission::Refused;
use super::{Attempt, Job, Pipeline, Stage, StageFuture};
use crate::error::ApiError;
use crate::providers::ChatCall;
use heady_shared::breaker::Admit;
use http::StatusCode;
use std::time::{Duration, Instant};

pub struct Execute;

impl Stage for Execute {
    fn number(&self) -> usize {
        3
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            job.reply = None;
            // The next candidate whose breaker lets a call through.
            let mut picked = None;
            while let Some(i) = job.candidates.pop_front() {
                match p.lock_health(i).breaker.admit(p.now_ms()) {
                    Admit::Yes => picked = Some((i, false)),
                    Admit::Probe => picked = Some((i, true)),
                    Admit::No { .. } => continue,
                }
                break;
            }
            let Some((i, probe)) = picked else {
                return Err(all_failed(job));
            };
            let weight = job.route.as_ref().map(|r| r.weight).unwrap_or(1.0);
            let wait = Duration::from_millis(p.config.queue_max_wait_ms);
            let permit = match p.admission.acquire(weight, wait).await {
                Ok(permit) => permit,
                Err(why) => {
                    if probe {
                        // Give the probe back: this call never reached the provider.
                        p.lock_health(i).breaker.cancel_probe();
                    }
                    p.metrics.refused("overloaded");
                    job.retry_after_secs = Some((p.config.queue_max_wait_ms / 1000).max(1));
                    let detail = match why {
                        Refused::QueueFull => format!(
                            "{} requests are already waiting (pipeline.queue_max_len)",
                            p.config.queue_max_len
                        ),
                        Refused::TimedOut => format!(
                            "no provider slot came free within {} ms (pipeline.queue_max_wait_ms)",
                            p.config.queue_max_wait_ms
                        ),
                    };
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "overloaded",
                        format!(
                            "all {} provider slots are busy: {detail}",
                            p.config.max_concurrency
                        ),
                    ));
                }
            };
            let req = job
                .request
                .as_ref()
                .ok_or_else(|| ApiError::internal("execute before ingest"))?;
            let call = ChatCall {
                body: req.body.clone(),
            };
            let entry = &p.providers[i];
            let t = Instant::now();
            let mut attempt = Attempt {
                provider: entry.config.name.clone(),
                index: i,
                ms: 0.0,
                outcome: "ok".into(),
                critique: None,
                ok: true,
                client_error: false,
                probe,
                recorded: false,
            };
            if req.stream {
                match entry.client.chat_stream(&call).await {
                    Ok(source) => {
                        job.source = Some(source);
                        job.permit = Some(permit);
                    }
                    Err(e) => attempt.fail(&e),
                }
            } else {
                match entry.client.chat(&call).await {
                    Ok(reply) => job.reply = Some(reply),
                    Err(e) => attempt.fail(&e),
                }
                drop(permit);
            }
            attempt.ms = t.elapsed().as_secs_f64() * 1e3;
            job.attempts.push(attempt);
            Ok(())
        })
    }
}

impl Attempt {
    fn fail(&mut self, e: &crate::providers::ProviderError) {
        self.ok = false;
        self.client_error = e.is_client_error();
        self.outcome = format!("error: {e}");
    }
}

/// Every candidate was tried (or skipped by its breaker).
pub fn all_failed(job: &Job) -> ApiError {
    if job.attempts.is_empty() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "providers_unavailable",
            "every provider for this request has an open circuit breaker",
        );
    }
    let what: Vec<String> = job
        .attempts
        .iter()
        .map(|a| format!("{}: {}", a.provider, a.outcome))
        .collect();
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "upstream_failed",
        format!("no provider answered: {}", what.join("; ")),
    )
}
