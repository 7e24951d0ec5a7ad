//! The response cache in the pipeline: looked up after ingest (the request is valid, memory
//! recall is in its messages), before the plan; a hit skips the provider stages and goes to
//! finalize. A miss carries a [`CachePlan`] to where the answer is known: finalize stores a
//! JSON answer the critique accepted, the stream pump a stream that ended cleanly.
//!
//! Entries belong to the caller's account (its id is in every key, and each account has its
//! own semantic index); anonymous callers own nothing, so they never read or fill the cache.

use super::stages::ingest::Ingested;
use super::{Inbound, Pipeline};
use crate::cache::{now_ms, Entry, Frame};
use crate::rt::blocking;
use bytes::Bytes;
use heady_shared::cache::{self as rules, Decision, Format, Status};
use heady_shared::AccountId;
use serde_json::Value;

/// Where a fresh answer goes.
#[derive(Debug, Clone)]
pub struct CachePlan {
    pub owner: AccountId,
    /// The exact entry's key.
    pub key: String,
    pub ttl_secs: u64,
    /// The semantic index's part: the request's context hash and the prompt's embedding.
    pub semantic: Option<(String, Vec<f32>)>,
}

/// What the lookup found.
pub struct Looked {
    pub status: Status,
    /// The cached answer, on a hit.
    pub entry: Option<Entry>,
    /// Where to store the fresh answer, on a miss.
    pub plan: Option<CachePlan>,
    /// Why the cache was not used (for the log).
    pub reason: Option<&'static str>,
}

impl Looked {
    fn bypass(reason: &'static str) -> Looked {
        Looked {
            status: Status::Bypass,
            entry: None,
            plan: None,
            reason: Some(reason),
        }
    }
}

/// Looks the request up: exactly, then (for an account that opted in) by the prompt's meaning.
pub async fn lookup(p: &Pipeline, inbound: &Inbound, ingested: &Ingested) -> Looked {
    let looked = look(p, inbound, ingested).await;
    p.cache.metrics.counted(looked.status);
    if let Some(e) = &looked.entry {
        p.cache.metrics.saved_tokens.inc_by(e.tokens);
    }
    looked
}

async fn look(p: &Pipeline, inbound: &Inbound, ingested: &Ingested) -> Looked {
    let Some(owner) = inbound.meter.payer.owner.clone() else {
        return Looked::bypass("anonymous");
    };
    let chat = &ingested.chat;
    let (read, max_age, ttl_secs, semantic_asked) = match rules::decide(
        &p.cache.config.policy(),
        &chat.body,
        &chat.cache_directives,
        &chat.cache,
    ) {
        Decision::Bypass(reason) => return Looked::bypass(reason),
        Decision::Use {
            read,
            max_age_secs,
            ttl_secs,
            semantic,
        } => (read, max_age_secs, ttl_secs, semantic),
    };
    let format = if chat.stream {
        Format::Sse
    } else {
        Format::Json
    };
    let key = rules::entry_key(owner.as_str(), format, &rules::request_hash(&chat.body));
    let now = now_ms();
    let fresh = |e: &Entry| e.format() == format && max_age.is_none_or(|m| e.age_secs(now) <= m);
    if read {
        if let Some(entry) = p.cache.get(&key).await {
            if fresh(&entry) {
                return Looked {
                    status: Status::Hit,
                    entry: Some(entry),
                    plan: None,
                    reason: None,
                };
            }
        }
    }
    let semantic_on = semantic_asked
        && inbound.semantic_cache
        && p.cache.config.semantic.enabled
        && last_is_user(&chat.body)
        && !chat.last_user_text.trim().is_empty();
    if !inbound.semantic_cache {
        // An account that opted out: what this process held for it goes.
        p.cache.semantic.drop_account(&owner);
    }
    let mut semantic = None;
    if semantic_on {
        let embedding = match &ingested.embedding {
            Some(e) => Some(e.clone()),
            None => match p
                .embedder
                .embed(std::slice::from_ref(&chat.last_user_text))
                .await
            {
                Ok(mut v) => v.pop(),
                Err(e) => {
                    tracing::debug!(request_id = %inbound.request_id, error = %e, "no embedding for the semantic cache");
                    p.cache.metrics.error("semantic");
                    None
                }
            },
        };
        if let Some(embedding) = embedding {
            let context = format!("{}:{}", format.as_str(), rules::context_hash(&chat.body));
            if read {
                let (cache_owner, ctx, q) = (owner.clone(), context.clone(), embedding.clone());
                let threshold = p.cache.config.semantic.threshold as f32;
                let cache = p.cache.clone();
                let found = blocking(move || {
                    cache
                        .semantic
                        .search(&cache_owner, &ctx, &q, threshold, now)
                })
                .await
                .ok()
                .flatten();
                if let Some(found) = found {
                    match p.cache.get(&found.exact_key).await {
                        Some(entry) if fresh(&entry) => {
                            tracing::debug!(request_id = %inbound.request_id, similarity = found.similarity, "semantic cache hit");
                            return Looked {
                                status: Status::SemanticHit,
                                entry: Some(entry),
                                plan: None,
                                reason: None,
                            };
                        }
                        Some(_) => {}
                        // Its answer expired: the prompt goes too.
                        None => p.cache.semantic.remove(&owner, &found.exact_key),
                    }
                }
            }
            semantic = Some((context, embedding));
        }
    }
    Looked {
        status: Status::Miss,
        entry: None,
        plan: (ttl_secs > 0).then_some(CachePlan {
            owner,
            key,
            ttl_secs,
            semantic,
        }),
        reason: None,
    }
}

fn last_is_user(body: &serde_json::Map<String, Value>) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .is_some_and(|m| m["role"] == "user")
}

/// Stores a fresh answer under its plan (and its prompt in the semantic index).
pub async fn store(p: &Pipeline, plan: CachePlan, entry: Entry) {
    if !p.cache.put(&plan.key, &entry, plan.ttl_secs).await {
        return;
    }
    if let Some((context, embedding)) = plan.semantic {
        let cache = p.cache.clone();
        let now = now_ms();
        let expires = now + plan.ttl_secs * 1000;
        let r = blocking(move || {
            let r =
                cache
                    .semantic
                    .insert(&plan.owner, &context, &embedding, &plan.key, expires, now);
            cache
                .metrics
                .semantic_entries
                .set(cache.semantic.len() as i64);
            r
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "could not add the prompt to the semantic cache");
            p.cache.metrics.error("semantic");
        }
    }
}

/// The `chat.completion` object as stored: without the `heady` trace.
pub fn json_entry(body: &Value, provider: &str, text: &str, tokens: u64) -> Entry {
    let mut body = body.clone();
    if let Value::Object(m) = &mut body {
        m.remove("heady");
    }
    Entry {
        stored_at_ms: now_ms(),
        provider: provider.to_string(),
        body: Some(body),
        frames: Vec::new(),
        text: text.to_string(),
        tokens,
    }
}

/// A stream's chunks collected for the cache, up to `max_bytes` (then given up).
#[derive(Default)]
pub struct Recorder {
    frames: Vec<Frame>,
    bytes: usize,
    max_bytes: usize,
    overflowed: bool,
}

impl Recorder {
    pub fn new(max_bytes: u64) -> Recorder {
        Recorder {
            max_bytes: max_bytes as usize,
            ..Recorder::default()
        }
    }

    pub fn push(&mut self, data: &Bytes, usage_only: bool) {
        if self.overflowed {
            return;
        }
        self.bytes += data.len() + 16;
        if self.bytes > self.max_bytes {
            self.overflowed = true;
            self.frames = Vec::new();
            return;
        }
        self.frames.push(Frame {
            data: String::from_utf8_lossy(data).into_owned(),
            usage_only,
        });
    }

    /// The entry, unless the stream outgrew the bound.
    pub fn finish(self, provider: &str, text: &str, tokens: u64) -> Option<Entry> {
        (!self.overflowed && !self.frames.is_empty()).then(|| Entry {
            stored_at_ms: now_ms(),
            provider: provider.to_string(),
            body: None,
            frames: self.frames,
            text: text.to_string(),
            tokens,
        })
    }
}

/// The SSE frames a cached stream replays to this client (the usage chunk only if it asked).
pub fn replay_frames(entry: &Entry, client_usage: bool) -> Vec<Bytes> {
    entry
        .frames
        .iter()
        .filter(|f| client_usage || !f.usage_only)
        .map(|f| Bytes::from(format!("data: {}\n\n", f.data)))
        .chain(std::iter::once(Bytes::from_static(b"data: [DONE]\n\n")))
        .collect()
}
