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
use crate::providers::{ChatReply, EventSource};
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
    planned: &Planned,
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
    let (provider, outcome, client_error) = (
        attempt.provider.clone(),
        attempt.outcome.clone(),
        attempt.client_error,
    );
    attempts.push(attempt);
    if let Call::Failed(e) = &call {
        tracing::warn!(request_id = %inbound.request_id, provider = %provider, error = %e, "provider call failed");
    }
    match call {
        Call::Reply(reply) => Ok(Recovered::Reply(reply)),
        Call::Stream(source, permit) => Ok(Recovered::Stream(source, permit)),
        Call::Failed(_) if client_error => Err(Error::new(
            ErrorCode::UpstreamRejected,
            format!(
                "{provider} refused the request: {}",
                outcome.trim_start_matches("error: ")
            ),
        )),
        Call::Failed(_) if have_best => Ok(Recovered::KeepBest),
        Call::Failed(_) => {
            if planned.candidates.is_empty() || attempts.len() >= p.config.max_attempts {
                return Err(all_failed(attempts));
            }
            tracing::info!(request_id = %inbound.request_id, provider = %provider, error = %outcome, "provider failed; falling back");
            Ok(Recovered::Fallback)
        }
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
