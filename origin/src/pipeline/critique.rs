//! Stage 5, self-critique: score the answer (heady-shared's checks: empty, cut off by length,
//! refusal, invalid JSON when JSON was asked for, repetition); below the threshold, retry
//! once on another provider and keep the better answer. Streams are scored after the fact
//! (their bytes are already with the client), which feeds the pattern engine and drift.

use super::{Job, Pipeline, Stage, StageFuture};
use crate::error::ApiError;
use heady_shared::critique::{score, Answer, Critique};

pub struct SelfCritique;

fn critique(job: &Job, text: &str, finish_reason: Option<&str>) -> Critique {
    score(Answer {
        text,
        finish_reason,
        json_expected: job.request.as_ref().is_some_and(|r| r.json_expected),
    })
}

impl Stage for SelfCritique {
    fn number(&self) -> usize {
        5
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let Some(reply) = job.reply.take() else {
                return Ok(());
            };
            let c = critique(job, &reply.text, reply.finish_reason.as_deref());
            let s = c.score;
            let Some(attempt) = job.attempts.last_mut() else {
                return Ok(());
            };
            attempt.critique = Some(c);
            let idx = job.attempts.len() - 1;
            if job.best.as_ref().is_none_or(|(_, _, best)| s > *best) {
                job.best = Some((idx, reply, s));
            }
            let cfg = &p.config.critique;
            if s < cfg.threshold
                && cfg.retry
                && !job.critique_retried
                && !job.candidates.is_empty()
                && job.attempts.len() < p.config.max_attempts
            {
                job.critique_retried = true;
                job.retry = true;
                p.metrics.critique_retries.inc();
                tracing::info!(request_id = %job.request_id, provider = %job.attempts[idx].provider, score = s, "low self-critique score; retrying on another provider");
            }
            Ok(())
        })
    }

    fn finish<'a>(&'a self, _p: &'a Pipeline, job: &'a mut Job) -> StageFuture<'a, ()> {
        Box::pin(async move {
            let Some(out) = &job.stream else { return };
            if out.error.is_some() {
                return;
            }
            let c = critique(job, &out.text, out.finish_reason.as_deref());
            if let Some(a) = job.attempts.iter_mut().rev().find(|a| a.ok) {
                a.critique = Some(c);
            }
        })
    }
}
