//! Stage 7, finalize: package the answer — OpenAI's `chat.completion` shape plus a `heady`
//! object (group, zone, provider, plan, attempts, stage timings) — and keep the assistant's
//! turn in memory. For a stream: the SSE response head (the pump sends the body).

use super::ingest::turn_row;
use super::{set_header, Job, Pipeline, Stage, StageFuture};
use crate::api::blocking;
use crate::error::ApiError;
use crate::server::{full, json_response};
use http::{Response, StatusCode};
use serde_json::{json, Value};

pub struct Finalize;

pub fn heady_object(job: &Job, provider: &str) -> Value {
    let route = job.route.as_ref();
    json!({
        "request_id": job.request_id,
        "action": job.action,
        "group": route.map(|r| r.group.clone()),
        "group_weight": route.map(|r| r.weight),
        "zone": job.zone,
        "provider": provider,
        "plan": job.plan,
        "attempts": job.attempts,
        "memory": {"session_id": job.session_id, "recalled": job.recalled, "stored": job.stored},
        "stage_ms": job.stage_ms(),
    })
}

/// Stores the assistant's answer as a turn of the session (when memory is on).
async fn remember(p: &Pipeline, job: &mut Job, text: String) {
    let Some(session) = job.session_id.clone() else {
        return;
    };
    if !p.config.memory.store || text.trim().is_empty() {
        return;
    }
    let embedding = match p.embedder.embed(std::slice::from_ref(&text)).await {
        Ok(mut v) => match v.pop() {
            Some(e) => e,
            None => return,
        },
        Err(e) => {
            tracing::warn!(request_id = %job.request_id, error = %e, "could not embed the answer; not stored in memory");
            return;
        }
    };
    let row = turn_row("assistant", &text, embedding, &session, &job.request_id);
    let id = crate::memory::id_of(row.key);
    let memory = p.memory.clone();
    match blocking(move || memory.insert_blocking(&[row])).await {
        Ok(Ok(())) => job.stored.push(id),
        Ok(Err(e)) => {
            tracing::warn!(request_id = %job.request_id, error = %e, "could not store the answer in memory")
        }
        Err(e) => {
            tracing::warn!(request_id = %job.request_id, error = %e.message, "could not store the answer in memory")
        }
    }
}

impl Stage for Finalize {
    fn number(&self) -> usize {
        7
    }

    fn run<'a>(
        &'a self,
        p: &'a Pipeline,
        job: &'a mut Job,
    ) -> StageFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let group = job
                .route
                .as_ref()
                .map(|r| r.group.clone())
                .unwrap_or_default();
            if job.source.is_some() {
                let provider = job
                    .attempts
                    .last()
                    .map(|a| a.provider.clone())
                    .unwrap_or_default();
                let mut resp = Response::new(full(bytes::Bytes::new()));
                let h = resp.headers_mut();
                set_header(h, "content-type", "text/event-stream");
                set_header(h, "cache-control", "no-cache");
                set_header(h, "x-heady-provider", &provider);
                set_header(h, "x-heady-group", &group);
                job.response = Some(resp);
                return Ok(());
            }
            let Some((idx, reply, _)) = job.best.take() else {
                return Err(ApiError::internal("no answer to package"));
            };
            let provider = job
                .attempts
                .get(idx)
                .map(|a| a.provider.clone())
                .unwrap_or_default();
            remember(p, job, reply.text.clone()).await;
            let mut body = reply.json;
            if let Value::Object(m) = &mut body {
                m.insert("heady".into(), heady_object(job, &provider));
            }
            let mut resp = json_response(StatusCode::OK, &body);
            set_header(resp.headers_mut(), "x-heady-provider", &provider);
            set_header(resp.headers_mut(), "x-heady-group", &group);
            job.response = Some(resp);
            Ok(())
        })
    }

    fn finish<'a>(&'a self, p: &'a Pipeline, job: &'a mut Job) -> StageFuture<'a, ()> {
        Box::pin(async move {
            let text = match &job.stream {
                Some(s) if s.error.is_none() => s.text.clone(),
                _ => return,
            };
            remember(p, job, text).await;
        })
    }
}
