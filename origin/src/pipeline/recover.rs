//! Stage 4, recover: feed each outcome to the provider's circuit breaker and history, fall
//! back to the next provider after a failure, and on a failed request run the compensation
//! hooks that undo its side effects (the memory rows it wrote).

use super::execute::all_failed;
use super::metrics::{CallLabels, ProviderLabels};
use super::{Compensation, Job, Pipeline, Stage, StageFuture};
use crate::api::blocking;
use crate::error::ApiError;
use heady_shared::breaker::BreakerState;
use http::StatusCode;

pub struct Recover;

/// Feeds one attempt to its provider's breaker, outcome window and call counter.
pub fn record_outcome(
    p: &Pipeline,
    provider: usize,
    ok: bool,
    client_error: bool,
    ms: f64,
    error: Option<&str>,
) {
    let now = p.now_ms();
    let state = {
        let mut h = p.lock_health(provider);
        // A request the provider refused as malformed says nothing about its health.
        h.breaker.record(now, ok || client_error);
        if !client_error {
            h.observe(now, ok, ms);
        }
        if let Some(e) = error {
            h.last_error = Some(e.to_string());
        }
        h.breaker.state(now)
    };
    let name = p.providers[provider].config.name.clone();
    let outcome = if ok {
        "ok"
    } else if client_error {
        "rejected"
    } else {
        "error"
    };
    p.metrics
        .provider_calls
        .get_or_create(&CallLabels {
            provider: name.clone(),
            outcome,
        })
        .inc();
    p.metrics
        .breaker_state
        .get_or_create(&ProviderLabels { provider: name })
        .set(match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        });
}

impl Stage for Recover {
    fn number(&self) -> usize {
        4
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Some(last) = job.attempts.last_mut() else {
                return Ok(());
            };
            // A stream's outcome is known at its end (see `finish`); opening it succeeded.
            let streaming_ok = last.ok && job.source.is_some();
            if !streaming_ok {
                last.recorded = true;
                let error = (!last.ok).then(|| last.outcome.clone());
                record_outcome(
                    p,
                    last.index,
                    last.ok,
                    last.client_error,
                    last.ms,
                    error.as_deref(),
                );
            }
            let last = job.attempts.last().cloned();
            if let Some(a) = last {
                if a.client_error {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "upstream_rejected",
                        format!(
                            "{} refused the request: {}",
                            a.provider,
                            a.outcome.trim_start_matches("error: ")
                        ),
                    ));
                }
                if !a.ok {
                    if job.best.is_some() {
                        // A critique retry failed: keep the answer we have.
                        return Ok(());
                    }
                    if job.candidates.is_empty() || job.attempts.len() >= p.config.max_attempts {
                        return Err(all_failed(job));
                    }
                    tracing::info!(request_id = %job.request_id, provider = %a.provider, error = %a.outcome, "provider failed; falling back");
                    job.retry = true;
                }
            }
            Ok(())
        })
    }

    fn finish<'a>(&'a self, p: &'a Pipeline, job: &'a mut Job) -> StageFuture<'a, ()> {
        Box::pin(async move {
            let Some(outcome) = &job.stream else { return };
            let error = outcome.error.as_ref().map(|e| e.to_string());
            let ms = outcome.ms;
            if let Some(a) = job.attempts.iter_mut().rev().find(|a| a.ok && !a.recorded) {
                a.recorded = true;
                a.ms = ms;
                if let Some(e) = &error {
                    a.ok = false;
                    a.outcome = format!("error: {e}");
                }
                let (i, ok) = (a.index, a.ok);
                record_outcome(p, i, ok, false, ms, error.as_deref());
            }
        })
    }

    fn fail<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
        _err: &'a ApiError,
    ) -> StageFuture<'a, ()> {
        Box::pin(async move {
            for c in std::mem::take(&mut job.compensations) {
                match c {
                    Compensation::DeleteMemoryRows(ids) => {
                        let memory = p.memory.clone();
                        let n = ids.len();
                        let r = blocking(move || memory.delete_blocking(&ids)).await;
                        p.metrics.compensations.inc();
                        match r {
                            Ok(Ok(deleted)) => {
                                job.stored.clear();
                                tracing::info!(request_id = %job.request_id, rows = deleted, "compensation: removed the memory rows of a failed request");
                            }
                            Ok(Err(e)) => {
                                tracing::error!(request_id = %job.request_id, rows = n, error = %e, "compensation failed: memory rows of a failed request remain")
                            }
                            Err(e) => {
                                tracing::error!(request_id = %job.request_id, error = %e.message, "compensation failed")
                            }
                        }
                    }
                }
            }
        })
    }
}
