//! Stage 7, finalize: package the answer — OpenAI's `chat.completion` shape plus a `heady`
//! object (group, zone, provider, plan, attempts, stage timings) — and keep the assistant's
//! turn in memory. A stream's turn is kept when the stream ends.

use super::ingest::{turn_row, Ingested};
use super::{Answered, Best};
use crate::cache::Entry;
use crate::pipeline::caching;
use crate::pipeline::{Inbound, Ledger, MemoryAccess, Pipeline};
use crate::rt::blocking;
use serde_json::{json, Value};

/// The `heady` object: how the request was served.
pub fn heady_object(
    inbound: &Inbound,
    ingested: &Ingested,
    ledger: &Ledger,
    provider: &str,
) -> Value {
    json!({
        "request_id": inbound.request_id,
        "action": inbound.action,
        "group": ingested.route.group,
        "group_weight": ingested.route.weight,
        "zone": ingested.zone,
        "provider": provider,
        "plan": ledger.trace.plan,
        "attempts": ledger.attempts,
        "memory": match inbound.memory {
            MemoryAccess::Account { .. } => json!({"enabled": true, "session_id": ingested.session_id, "recalled": ingested.recalled, "stored": ledger.stored}),
            MemoryAccess::Anonymous => json!({"enabled": false, "reason": "anonymous"}),
        },
        "stage_ms": ledger.trace.stage_ms(),
        "cache": ledger.cache.as_str(),
    })
}

/// Stores the assistant's answer as a turn of the session (when memory is on).
pub async fn remember(
    p: &Pipeline,
    inbound: &Inbound,
    ingested: &Ingested,
    ledger: &mut Ledger,
    text: String,
) {
    let Some(session) = ingested.session_id.clone() else {
        return;
    };
    let MemoryAccess::Account { owner, max_rows } = &inbound.memory else {
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
            tracing::warn!(request_id = %inbound.request_id, error = %e, "could not embed the answer; not stored in memory");
            return;
        }
    };
    let row = turn_row(
        owner,
        "assistant",
        &text,
        embedding,
        &session,
        &inbound.request_id,
    );
    let id = crate::memory::id_of(row.key);
    let memory = p.memory.clone();
    let max_rows = *max_rows;
    match blocking(move || memory.insert_blocking(&[row], max_rows)).await {
        Ok(Ok(())) => ledger.stored.push(id),
        Ok(Err(e)) => {
            tracing::warn!(request_id = %inbound.request_id, error = %e, "could not store the answer in memory")
        }
        Err(e) => {
            tracing::warn!(request_id = %inbound.request_id, error = %e.message, "could not store the answer in memory")
        }
    }
}

/// Packages the best answer.
pub async fn run(
    p: &Pipeline,
    inbound: &Inbound,
    ingested: &Ingested,
    best: Best,
    ledger: &mut Ledger,
) -> Answered {
    let provider = ledger
        .attempts
        .get(best.attempt)
        .map(|a| a.provider.clone())
        .unwrap_or_default();
    remember(p, inbound, ingested, ledger, best.reply.text.clone()).await;
    // A miss is filled with an answer the critique accepted.
    if let Some(plan) = ledger.cache_plan.take() {
        if best.score >= p.config.critique.threshold {
            let tokens = best
                .reply
                .json
                .pointer("/usage/total_tokens")
                .and_then(Value::as_u64)
                .or_else(|| ledger.used.last().map(|u| u.total()))
                .unwrap_or(0);
            let entry = caching::json_entry(&best.reply.json, &provider, &best.reply.text, tokens);
            caching::store(p, plan, entry).await;
        }
    }
    let mut body = best.reply.json;
    if let Value::Object(m) = &mut body {
        m.insert(
            "heady".into(),
            heady_object(inbound, ingested, ledger, &provider),
        );
    }
    Answered::Json {
        body,
        provider,
        group: ingested.route.group.clone(),
    }
}

/// Answers from the response cache: the cached `chat.completion` with this request's `heady`
/// object, or the cached stream's frames. The answer is kept in memory as a fresh one is.
pub async fn cached(
    p: &Pipeline,
    inbound: &Inbound,
    ingested: &Ingested,
    mut entry: Entry,
    ledger: &mut Ledger,
) -> Answered {
    remember(p, inbound, ingested, ledger, entry.text.clone()).await;
    let group = ingested.route.group.clone();
    match entry.body.take() {
        Some(mut body) => {
            if let Value::Object(m) = &mut body {
                m.insert(
                    "heady".into(),
                    heady_object(inbound, ingested, ledger, &entry.provider),
                );
            }
            Answered::Json {
                body,
                provider: entry.provider,
                group,
            }
        }
        None => Answered::Replay {
            frames: caching::replay_frames(&entry, ingested.chat.client_usage),
            provider: entry.provider,
            group,
        },
    }
}
