//! Stage 6, optimize: every outcome goes to the pattern engine (EWMA latency and quality per
//! action and provider); the plan stage reads back the best known path.

use super::{Job, Pipeline, Stage, StageFuture};
use crate::error::ApiError;

pub struct Optimize;

fn learn(p: &Pipeline, job: &Job) {
    for a in job.attempts.iter().filter(|a| !a.client_error) {
        let quality = if a.ok {
            a.critique.as_ref().map(|c| c.score).unwrap_or(1.0)
        } else {
            0.0
        };
        p.patterns
            .record(&job.action, &a.provider, a.ms, quality, a.ok);
    }
}

impl Stage for Optimize {
    fn number(&self) -> usize {
        6
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if !job.streaming() {
                learn(p, job);
            }
            Ok(())
        })
    }

    fn finish<'a>(&'a self, p: &'a Pipeline, job: &'a mut Job) -> StageFuture<'a, ()> {
        Box::pin(async move { learn(p, job) })
    }

    fn fail<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
        _err: &'a ApiError,
    ) -> StageFuture<'a, ()> {
        Box::pin(async move { learn(p, job) })
    }
}
