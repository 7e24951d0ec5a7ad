//! Stage 5, self-critique: score the answer (heady-shared's checks: empty, cut off by length,
//! refusal, invalid JSON when JSON was asked for, repetition); below the threshold, retry
//! once on another provider and keep the better answer. Streams are scored after the fact
//! (their bytes are already with the client), which feeds the pattern engine and drift.

use super::ingest::Ingested;
use super::plan::Planned;
use super::{Attempt, Best};
use crate::pipeline::stream::StreamEnd;
use crate::pipeline::{Inbound, Pipeline};
use crate::providers::{ChatReply, ToolUse};
use heady_shared::critique::{score, Answer, Critique};

/// What critique decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Package the best answer so far.
    Accept,
    /// Ask another provider.
    Retry,
}

/// One choice's score: a tool call is judged as an answer (a declared tool, arguments that are
/// a JSON object, what `tool_choice` asked for), never as empty text.
pub(crate) fn critique(
    ingested: &Ingested,
    text: &str,
    finish_reason: Option<&str>,
    tool_calls: &[ToolUse],
) -> Critique {
    score(Answer {
        text,
        finish_reason,
        json_expected: ingested.chat.json_expected,
        tool_calls,
        tools: &ingested.chat.tools,
        tool_choice: ingested.chat.tool_choice.as_critique(),
    })
}

/// A whole answer's score: its worst choice (with `n` > 1, every choice must be good).
fn critique_reply(ingested: &Ingested, reply: &ChatReply) -> Critique {
    reply
        .choices
        .iter()
        .map(|c| critique(ingested, &c.text, c.finish_reason.as_deref(), &c.tool_calls))
        .min_by(|a, b| a.score.total_cmp(&b.score))
        .unwrap_or_else(|| critique(ingested, &reply.text, reply.finish_reason.as_deref(), &[]))
}

/// Scores the reply of the last attempt and keeps it when it is the best so far.
#[allow(clippy::too_many_arguments)]
pub fn run(
    p: &Pipeline,
    inbound: &Inbound,
    ingested: &Ingested,
    reply: ChatReply,
    attempts: &mut [Attempt],
    best: &mut Option<Best>,
    retried: &mut bool,
    planned: &Planned,
) -> Verdict {
    let c = critique_reply(ingested, &reply);
    let s = c.score;
    let Some(idx) = attempts.len().checked_sub(1) else {
        return Verdict::Accept;
    };
    attempts[idx].critique = Some(c);
    if best.as_ref().is_none_or(|b| s > b.score) {
        *best = Some(Best {
            attempt: idx,
            reply,
            score: s,
        });
    }
    let cfg = &p.config.critique;
    if s < cfg.threshold
        && cfg.retry
        && !*retried
        && !planned.candidates.is_empty()
        && attempts.iter().filter(|a| a.retry == 0).count() < p.config.max_attempts
    {
        *retried = true;
        p.metrics.critique_retries.inc();
        tracing::info!(request_id = %inbound.request_id, provider = %attempts[idx].provider, score = s, "low self-critique score; retrying on another provider");
        return Verdict::Retry;
    }
    Verdict::Accept
}

/// A stream that ended well is scored after the fact.
pub fn score_stream(ingested: &Ingested, attempts: &mut [Attempt], end: &StreamEnd) {
    if end.error.is_some() {
        return;
    }
    let c = critique(
        ingested,
        &end.text,
        end.finish_reason.as_deref(),
        &end.tool_calls,
    );
    if let Some(a) = attempts.iter_mut().rev().find(|a| a.ok) {
        a.critique = Some(c);
    }
}
