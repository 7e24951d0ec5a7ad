//! Stage 4, recover: feed each outcome to the provider's circuit breaker and history, fall
//! back to the next provider after a failure, and on a failed request run the compensation
//! hooks that undo its side effects (the memory rows it wrote).

use super::execute::{all_failed, Call, Executed};
use super::plan::Planned;
use super::{Attempt, Compensation};
use crate::error::{Error, ErrorCode};
use crate::memory::Doomed;
use crate::pipeline::admission::Permit;
use crate::pipeline::metrics::{CallLabels, ProviderLabels};
use crate::pipeline::stream::StreamEnd;
use crate::pipeline::{Inbound, Ledger, Pipeline};
use crate::providers::{ChatReply, EventSource, ProviderError};
use crate::rt::blocking;
use heady_shared::breaker::BreakerState;

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

/// What recover hands on.
pub enum Recovered {
    /// A whole answer, for the critique.
    Reply(ChatReply),
    /// An open stream: its outcome is recorded when it ends.
    Stream(Box<dyn EventSource>, Permit),
    /// The call failed; try the next candidate.
    Fallback,
    /// The call failed transiently: wait this many ms and call the same provider again.
    Retry(u64),
    /// A critique retry failed: keep the answer we have.
    KeepBest,
}

/// Records the attempt and decides what follows it.
pub fn run(
    p: &Pipeline,
    inbound: &Inbound,
    executed: Executed,
    attempts: &mut Vec<Attempt>,
    have_best: bool,
    planned: &mut Planned,
) -> Result<Recovered, Error> {
    let Executed { mut attempt, call } = executed;
    // A stream's outcome is known at its end (`record_stream_end`); opening it succeeded.
    if !matches!(call, Call::Stream(..)) {
        attempt.recorded = true;
        let error = (!attempt.ok).then(|| attempt.outcome.clone());
        record_outcome(
            p,
            attempt.index,
            attempt.ok,
            attempt.client_error,
            attempt.ms,
            error.as_deref(),
        );
    }
    let (provider, outcome, client_error, index, retry) = (
        attempt.provider.clone(),
        attempt.outcome.clone(),
        attempt.client_error,
        attempt.index,
        attempt.retry,
    );
    attempts.push(attempt);
    if let Call::Failed(e) = &call {
        tracing::warn!(request_id = %inbound.request_id, provider = %provider, error = %e, "provider call failed");
    }
    let e = match call {
        Call::Reply(reply) => return Ok(Recovered::Reply(reply)),
        Call::Stream(source, permit) => return Ok(Recovered::Stream(source, permit)),
        Call::Failed(e) => e,
    };
    if client_error {
        return Err(rejected(&provider, &e));
    }
    if have_best {
        return Ok(Recovered::KeepBest);
    }
    // 429 and 503 (529): the same provider again after a backoff or its Retry-After, while
    // retries are left and the wait fits before the deadline; then the next provider.
    if e.status().is_some_and(heady_shared::retry::retryable) {
        let left = planned
            .deadline
            .saturating_duration_since(std::time::Instant::now())
            .as_secs_f64()
            * 1e3;
        let expected = p.lock_health(index).expected_ms().unwrap_or(0.0);
        let unit = rand::random::<f64>();
        match p
            .config
            .retry
            .backoff()
            .next(retry, e.retry_after_ms(), unit, left, expected)
        {
            heady_shared::retry::Next::RetryIn(ms) => {
                planned.retries[index] += 1;
                planned.candidates.push_front(index);
                p.metrics.retried(&provider, e.status().unwrap_or(0));
                tracing::info!(request_id = %inbound.request_id, provider = %provider, wait_ms = ms, retry = retry + 1, "provider asked to slow down or is unavailable; retrying");
                return Ok(Recovered::Retry(ms));
            }
            heady_shared::retry::Next::FallBack(why) => {
                tracing::info!(request_id = %inbound.request_id, provider = %provider, why = ?why, "not retrying this provider");
            }
        }
    }
    let calls = attempts.iter().filter(|a| a.retry == 0).count();
    if planned.candidates.is_empty() || calls >= p.config.max_attempts {
        return Err(all_failed(attempts));
    }
    p.metrics.fell_back(&provider);
    tracing::info!(request_id = %inbound.request_id, provider = %provider, error = %outcome, "provider failed; falling back");
    Ok(Recovered::Fallback)
}

/// The provider refused the request itself: the client gets the provider's status, message,
/// `type`, `param` and code, as it would from the provider (never its URL or our key: those
/// are not in an error object).
fn rejected(provider: &str, e: &ProviderError) -> Error {
    match e {
        ProviderError::Upstream { status, detail, .. } => Error::new(
            ErrorCode::UpstreamRejected,
            format!("{provider} refused the request: {}", detail.message),
        )
        .with_status(*status)
        .with_upstream(crate::error::Upstream {
            kind: detail.kind.clone(),
            param: detail.param.clone(),
            code: detail.code.clone(),
        }),
        other => Error::new(
            ErrorCode::UpstreamRejected,
            format!("{provider} refused the request: {}", other.summary()),
        ),
    }
}

/// The end of a stream: its outcome goes to the provider's breaker and history.
pub fn record_stream_end(p: &Pipeline, attempts: &mut [Attempt], end: &StreamEnd) {
    // Plain, as in `execute`: `/api/brain/providers` shows it (the stream logged the full text).
    let error = end.error.as_ref().map(|e| e.summary());
    if let Some(a) = attempts.iter_mut().rev().find(|a| a.ok && !a.recorded) {
        a.recorded = true;
        a.ms = end.ms;
        if let Some(e) = &error {
            a.ok = false;
            a.outcome = format!("error: {e}");
        }
        let (i, ok) = (a.index, a.ok);
        record_outcome(p, i, ok, false, end.ms, error.as_deref());
    }
}

/// A failed request: run its compensations (remove the memory rows it wrote).
pub async fn compensate(p: &Pipeline, inbound: &Inbound, ledger: &mut Ledger) {
    for c in std::mem::take(&mut ledger.compensations) {
        match c {
            Compensation::DeleteMemoryRows { owner, ids } => {
                let memory = p.memory.clone();
                let n = ids.len();
                let r = blocking(move || memory.delete_blocking(&owner, Doomed::Ids(&ids))).await;
                p.metrics.compensations.inc();
                match r {
                    Ok(Ok(deleted)) => {
                        ledger.stored.clear();
                        tracing::info!(request_id = %inbound.request_id, rows = deleted, "compensation: removed the memory rows of a failed request");
                    }
                    Ok(Err(e)) => {
                        tracing::error!(request_id = %inbound.request_id, rows = n, error = %e, "compensation failed: memory rows of a failed request remain")
                    }
                    Err(e) => {
                        tracing::error!(request_id = %inbound.request_id, error = %e.message, "compensation failed")
                    }
                }
            }
        }
    }
}
