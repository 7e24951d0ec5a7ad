//! Stage 3, execute: one provider call per pass, under the admission bound (default 6 at once,
//! a queue ordered by service-group weight, 503 `overloaded` + Retry-After past the wait, and a
//! share per subject: 429 `too_many_concurrent_requests` past it).

use super::ingest::Ingested;
use super::plan::Planned;
use super::Attempt;
use crate::error::{Error, ErrorCode};
use crate::pipeline::admission::{Permit, Refused};
use crate::pipeline::Pipeline;
use crate::providers::{ChatCall, ChatReply, EventSource, ProviderError};
use heady_shared::breaker::Admit;
use std::time::{Duration, Instant};

/// What one call gave.
pub enum Call {
    Reply(ChatReply),
    /// The provider opened a stream; the slot stays taken until it ends.
    Stream(Box<dyn EventSource>, Permit),
    Failed(ProviderError),
}

/// What execute hands on.
pub struct Executed {
    pub attempt: Attempt,
    pub call: Call,
}

/// Calls the next candidate whose breaker lets a call through; `None` when no candidate is
/// left.
pub async fn run(
    p: &Pipeline,
    ingested: &Ingested,
    planned: &mut Planned,
) -> Result<Option<Executed>, Error> {
    let mut picked = None;
    while let Some(i) = planned.candidates.pop_front() {
        match p.lock_health(i).breaker.admit(p.now_ms()) {
            Admit::Yes => picked = Some((i, false)),
            Admit::Probe => picked = Some((i, true)),
            Admit::No { .. } => continue,
        }
        break;
    }
    let Some((i, probe)) = picked else {
        return Ok(None);
    };
    let wait = Duration::from_millis(p.config.queue_max_wait_ms);
    let permit = match p
        .admission
        .acquire(&ingested.claimant, ingested.route.weight, wait)
        .await
    {
        Ok(permit) => permit,
        Err(why) => {
            if probe {
                // Give the probe back: this call never reached the provider.
                p.lock_health(i).breaker.cancel_probe();
            }
            if why == Refused::SubjectBusy {
                p.metrics.refused("too_many_concurrent");
                let share = ingested.claimant.share;
                return Err(Error::new(
                    ErrorCode::TooManyConcurrentRequests,
                    format!(
                        "this caller already has {share} requests at a provider and {share} waiting, its tier's share of the {} slots (pipeline.slots_per_subject)",
                        p.config.max_concurrency
                    ),
                )
                .with_retry_after(1));
            }
            p.metrics.refused("overloaded");
            let detail = match why {
                Refused::QueueFull => format!(
                    "{} requests are already waiting (pipeline.queue_max_len)",
                    p.config.queue_max_len
                ),
                Refused::TimedOut | Refused::SubjectBusy => format!(
                    "no provider slot came free within {} ms (pipeline.queue_max_wait_ms)",
                    p.config.queue_max_wait_ms
                ),
            };
            return Err(Error::new(
                ErrorCode::Overloaded,
                format!(
                    "all {} provider slots are busy: {detail}",
                    p.config.max_concurrency
                ),
            )
            .with_retry_after((p.config.queue_max_wait_ms / 1000).max(1)));
        }
    };
    let call = ChatCall {
        body: ingested.chat.body.clone(),
    };
    let entry = &p.providers[i];
    let t = Instant::now();
    let result = if ingested.chat.stream {
        match entry.client.chat_stream(&call).await {
            Ok(source) => Call::Stream(source, permit),
            Err(e) => Call::Failed(e),
        }
    } else {
        let r = entry.client.chat(&call).await;
        drop(permit);
        match r {
            Ok(reply) => Call::Reply(reply),
            Err(e) => Call::Failed(e),
        }
    };
    let mut attempt = Attempt {
        provider: entry.config.name.clone(),
        index: i,
        ms: t.elapsed().as_secs_f64() * 1e3,
        outcome: "ok".into(),
        retry: planned.retries[i],
        status: None,
        retry_after_ms: None,
        waited_ms: planned.waited_ms.take(),
        transient: false,
        critique: None,
        ok: true,
        client_error: false,
        recorded: false,
    };
    if let Call::Failed(e) = &result {
        attempt.ok = false;
        attempt.client_error = e.is_client_error();
        attempt.status = e.status();
        attempt.retry_after_ms = e.retry_after_ms();
        attempt.transient = e.is_transient();
        // The client may see attempts (`heady.attempts`): a plain summary here, the provider's
        // own error text (URLs, account ids) only in the log (`recover`).
        attempt.outcome = format!("error: {}", e.summary());
    }
    Ok(Some(Executed {
        attempt,
        call: result,
    }))
}

/// Every candidate was tried (or skipped by its breaker). When every failure was transient
/// the client is told when to come back: 429 `upstream_rate_limited` if a provider asked us to
/// slow down, else 503 `upstream_unavailable`, with the shortest `Retry-After` a provider gave
/// (1 s when none did). Anything else is 502 `upstream_failed`.
pub fn all_failed(attempts: &[Attempt]) -> Error {
    if attempts.is_empty() {
        return Error::new(
            ErrorCode::ProvidersUnavailable,
            "every provider for this request has an open circuit breaker",
        );
    }
    let what: Vec<String> = attempts
        .iter()
        .map(|a| {
            let retry = if a.retry > 0 {
                format!(" (retry {})", a.retry)
            } else {
                String::new()
            };
            format!("{}{retry}: {}", a.provider, a.outcome)
        })
        .collect();
    let failed: Vec<&Attempt> = attempts.iter().filter(|a| !a.ok).collect();
    let message = format!("no provider answered: {}", what.join("; "));
    if !failed.is_empty() && failed.iter().all(|a| a.transient) {
        let secs = failed
            .iter()
            .filter_map(|a| a.retry_after_ms)
            .min()
            .map(|ms| ms.div_ceil(1000))
            .unwrap_or(1)
            .max(1);
        let code = if failed.iter().any(|a| a.status == Some(429)) {
            ErrorCode::UpstreamRateLimited
        } else {
            ErrorCode::UpstreamUnavailable
        };
        return Error::new(code, message).with_retry_after(secs);
    }
    Error::new(ErrorCode::UpstreamFailed, message)
}
