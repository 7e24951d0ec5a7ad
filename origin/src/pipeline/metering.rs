//! What a provider call used, for the request's meter: the provider's own `usage` report, or,
//! when it sent none, a tokenizer count of the messages sent and the answer (marked
//! estimated).

use super::stages::ingest::Ingested;
use super::Pipeline;
use crate::providers::ChatReply;
use crate::usage::{model_label, tokens, Used};
use serde_json::Value;

/// The model to record: the one the provider named in its answer, else its configured model,
/// else its name.
fn model_of(p: &Pipeline, provider: usize, reported: Option<&str>) -> String {
    let entry = p.providers.get(provider);
    let name = reported
        .filter(|m| !m.trim().is_empty())
        .map(str::to_string)
        .or_else(|| entry.and_then(|e| e.config.model.clone()))
        .or_else(|| entry.map(|e| e.config.name.clone()))
        .unwrap_or_default();
    model_label(&name)
}

/// Counts the prompt that was sent and the answer's text with the tokenizer.
async fn estimate(ingested: &Ingested, model: String, answer: &str) -> Used {
    let messages = ingested
        .chat
        .body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (prompt_tokens, completion_tokens) =
        tokens::chat_estimate(messages, answer.to_string()).await;
    Used {
        model,
        prompt_tokens,
        completion_tokens,
        estimated: true,
    }
}

/// A whole answer from provider number `provider`.
pub async fn of_reply(
    p: &Pipeline,
    ingested: &Ingested,
    provider: usize,
    reply: &ChatReply,
) -> Used {
    let model = model_of(p, provider, reply.json.get("model").and_then(Value::as_str));
    match reply
        .json
        .get("usage")
        .and_then(|u| Used::from_provider(&model, u))
    {
        Some(u) => u,
        None => estimate(ingested, model, &reply.text).await,
    }
}

/// A stream from provider number `provider` that ended having sent `text`, with the usage
/// chunk's report when one came.
pub async fn of_stream(
    p: &Pipeline,
    ingested: &Ingested,
    provider: usize,
    reported_model: Option<&str>,
    usage: Option<&Value>,
    text: &str,
) -> Used {
    let model = model_of(p, provider, reported_model);
    match usage.and_then(|u| Used::from_provider(&model, u)) {
        Some(u) => u,
        None => estimate(ingested, model, text).await,
    }
}
