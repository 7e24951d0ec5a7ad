//! The nine stages and the order they run in. Each stage takes what the one before it
//! produced, so the order is fixed by the types: there is no way to plan before ingesting.
//!
//! ```text
//! entry(Inbound)                      -> Entered     deadline, seed
//! ingest(Inbound, Entered)            -> Ingested    validated request, route, zone, recall
//! plan(Inbound, Entered, Ingested)    -> Planned     provider order, readiness estimate
//! loop { execute(Ingested, &mut Planned) -> Executed     one provider call
//!        recover(Executed)            -> Recovered   breaker, fallback, or an answer
//!        critique(Reply)              -> Verdict     accept, or retry elsewhere }
//! optimize(attempts); finalize(Best) -> Answered; monitor(attempts)
//! ```
//! A failure runs the undo hooks (`recover::compensate`) and still teaches the pattern engine
//! (`optimize::learn`). A stream's outcome is known only at its end: see `super::stream`.

pub mod critique;
pub mod entry;
pub mod execute;
pub mod finalize;
pub mod ingest;
pub mod monitor;
pub mod optimize;
pub mod plan;
pub mod recover;

use super::admission::Permit;
use super::{Inbound, Ledger, Pipeline};
use crate::error::Error;
use crate::providers::{ChatReply, EventSource};
use heady_shared::critique::Critique;
use serde::Serialize;
use std::time::Instant;

/// The stages, in order; the discriminant is the stage number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Entry = 0,
    Ingest = 1,
    Plan = 2,
    Execute = 3,
    Recover = 4,
    Critique = 5,
    Optimize = 6,
    Finalize = 7,
    Monitor = 8,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::Entry,
        Stage::Ingest,
        Stage::Plan,
        Stage::Execute,
        Stage::Recover,
        Stage::Critique,
        Stage::Optimize,
        Stage::Finalize,
        Stage::Monitor,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Entry => "entry",
            Stage::Ingest => "ingest",
            Stage::Plan => "plan",
            Stage::Execute => "execute",
            Stage::Recover => "recover",
            Stage::Critique => "critique",
            Stage::Optimize => "optimize",
            Stage::Finalize => "finalize",
            Stage::Monitor => "monitor",
        }
    }
}

/// One provider call and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub provider: String,
    #[serde(skip)]
    pub index: usize,
    pub ms: f64,
    pub outcome: String,
    /// 1 for the first retry of this provider, 2 for the second...; 0 (not shown): its first
    /// call.
    #[serde(skip_serializing_if = "is_zero")]
    pub retry: u32,
    /// The provider's HTTP status when it answered with an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What the provider asked us to wait (`Retry-After`), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// How long the pipeline waited before this call (backoff or Retry-After), in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_ms: Option<u64>,
    /// The failure may pass if tried again (429, 503, 529, a timeout).
    #[serde(skip)]
    pub transient: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub critique: Option<Critique>,
    #[serde(skip)]
    pub ok: bool,
    /// The provider refused the request itself (4xx): says nothing about its health.
    #[serde(skip)]
    pub client_error: bool,
    /// Fed to the provider's breaker and history already.
    #[serde(skip)]
    pub recorded: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Undo actions for side effects of a request that may still fail.
#[derive(Debug, Clone)]
pub enum Compensation {
    /// Memory rows written for this request, in its caller's account.
    DeleteMemoryRows {
        owner: heady_shared::AccountId,
        ids: Vec<String>,
    },
}

/// The best whole answer so far: which attempt gave it, and its critique score.
pub struct Best {
    pub attempt: usize,
    pub reply: ChatReply,
    pub score: f64,
}

/// A stream the provider has opened; its body is still to come.
pub struct Opened {
    pub source: Box<dyn EventSource>,
    /// The provider slot, held until the stream ends.
    pub permit: Permit,
    pub provider: String,
    pub group: String,
    /// What finalize needs at the stream's end (memory, critique).
    pub ingested: ingest::Ingested,
}

/// What the stages produced for the client.
pub enum Answered {
    Json {
        body: serde_json::Value,
        provider: String,
        group: String,
    },
    Stream(Box<Opened>),
    /// A stream replayed from the response cache: every frame, `[DONE]` last.
    Replay {
        frames: Vec<bytes::Bytes>,
        provider: String,
        group: String,
    },
}

/// Runs stages 0-8 for one request.
pub(super) async fn run(
    p: &Pipeline,
    inbound: &Inbound,
    ledger: &mut Ledger,
) -> Result<Answered, Error> {
    let entered = ledger
        .trace
        .time(Stage::Entry, |_| entry::run(p, inbound))?;
    let t = Instant::now();
    let ingested = ingest::run(p, inbound, &entered, ledger).await;
    ledger.trace.add(Stage::Ingest, t);
    let ingested = ingested?;
    // The response cache, before the plan: a hit needs no provider.
    let t = Instant::now();
    let looked = crate::pipeline::caching::lookup(p, inbound, &ingested).await;
    ledger.trace.add(Stage::Plan, t);
    ledger.cache = looked.status;
    if let Some(entry) = looked.entry {
        for stage in [
            Stage::Execute,
            Stage::Recover,
            Stage::Critique,
            Stage::Optimize,
        ] {
            ledger.trace.pass(stage);
        }
        let t = Instant::now();
        let answered = finalize::cached(p, inbound, &ingested, entry, ledger).await;
        ledger.trace.add(Stage::Finalize, t);
        ledger.trace.pass(Stage::Monitor);
        return Ok(answered);
    }
    ledger.cache_plan = looked.plan;
    let mut planned = ledger.trace.time(Stage::Plan, |trace| {
        plan::run(p, inbound, &entered, &ingested, &mut trace.plan)
    })?;

    let mut best: Option<Best> = None;
    let mut critique_retried = false;
    let best = loop {
        let t = Instant::now();
        let executed = execute::run(p, &ingested, &mut planned).await;
        ledger.trace.add(Stage::Execute, t);
        let Some(executed) = executed? else {
            // Every remaining candidate is behind an open breaker.
            ledger.trace.pass(Stage::Recover);
            match best {
                Some(b) => break b,
                None => return Err(execute::all_failed(&ledger.attempts)),
            }
        };
        let t = Instant::now();
        let recovered = recover::run(
            p,
            inbound,
            executed,
            &mut ledger.attempts,
            best.is_some(),
            &mut planned,
        );
        ledger.trace.add(Stage::Recover, t);
        let reply = match recovered? {
            recover::Recovered::Fallback => {
                ledger.trace.pass(Stage::Critique);
                continue;
            }
            recover::Recovered::Retry(wait_ms) => {
                ledger.trace.pass(Stage::Critique);
                // The wait counts as recovery time: it is the backoff recover chose.
                let t = Instant::now();
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                ledger.trace.add(Stage::Recover, t);
                planned.waited_ms = Some(wait_ms);
                continue;
            }
            recover::Recovered::KeepBest => {
                ledger.trace.pass(Stage::Critique);
                match best {
                    Some(b) => break b,
                    None => return Err(execute::all_failed(&ledger.attempts)),
                }
            }
            recover::Recovered::Stream(source, permit) => {
                ledger.trace.pass(Stage::Critique);
                // Optimize and monitor learn from a stream when it ends.
                ledger.trace.pass(Stage::Optimize);
                let provider = ledger
                    .attempts
                    .last()
                    .map(|a| a.provider.clone())
                    .unwrap_or_default();
                let opened = ledger.trace.time(Stage::Finalize, |_| Opened {
                    source,
                    permit,
                    provider,
                    group: ingested.route.group.clone(),
                    ingested,
                });
                ledger.trace.pass(Stage::Monitor);
                return Ok(Answered::Stream(Box::new(opened)));
            }
            recover::Recovered::Reply(reply) => {
                if let Some(a) = ledger.attempts.last() {
                    let used =
                        crate::pipeline::metering::of_reply(p, &ingested, a.index, &reply).await;
                    ledger.used.push(used);
                }
                reply
            }
        };
        let t = Instant::now();
        let verdict = critique::run(
            p,
            inbound,
            &ingested,
            reply,
            &mut ledger.attempts,
            &mut best,
            &mut critique_retried,
            &planned,
        );
        ledger.trace.add(Stage::Critique, t);
        match (verdict, best.take()) {
            (critique::Verdict::Retry, b) => best = b,
            (critique::Verdict::Accept, Some(b)) => break b,
            (critique::Verdict::Accept, None) => return Err(Error::internal("no answer to keep")),
        }
    };
    ledger.trace.time(Stage::Optimize, |_| {
        optimize::learn(p, inbound, &ledger.attempts)
    });
    let t = Instant::now();
    let answered = finalize::run(p, inbound, &ingested, best, ledger).await;
    ledger.trace.add(Stage::Finalize, t);
    ledger
        .trace
        .time(Stage::Monitor, |_| monitor::watch(p, &ledger.attempts));
    Ok(answered)
}

/// The request failed: undo its writes and learn from its attempts.
pub(super) async fn fail(p: &Pipeline, inbound: &Inbound, ledger: &mut Ledger, _err: &Error) {
    let t = Instant::now();
    recover::compensate(p, inbound, ledger).await;
    ledger.trace.add(Stage::Recover, t);
    ledger.trace.time(Stage::Optimize, |_| {
        optimize::learn(p, inbound, &ledger.attempts)
    });
}
