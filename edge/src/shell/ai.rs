//! Light work at the edge: Workers AI (`AI`) for chat and embeddings, Vectorize for search.

use super::entry::Call;
use super::{respond, vectorize};
use crate::conductor::{self, ChatMessage, EdgeJob};
use heady_shared::embedding::{DEFAULT_DIMENSIONS, DEFAULT_MODEL as EMBEDDING_MODEL};
use heady_shared::{ApiError, ErrorCode, GroupTable};
use serde::Serialize;
use serde_json::{json, Value};
use worker::{console_error, Response};

#[derive(Serialize)]
struct ChatInput<'a> {
    messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct EmbedInput<'a> {
    text: &'a [String],
}

/// The platform's own error text goes to the Worker's log; the client learns which service
/// failed.
fn ai_failed(what: &str, detail: impl std::fmt::Display) -> ApiError {
    console_error!("{what} failed: {detail}");
    ApiError::new(
        ErrorCode::EdgeAiFailed,
        format!("{what} failed at the edge; retry shortly"),
    )
}

async fn embed(call: &Call, texts: &[String]) -> Result<Vec<Vec<f64>>, ApiError> {
    let ai = call
        .env
        .ai("AI")
        .map_err(|e| ai_failed("Workers AI binding", e))?;
    let answer: Value = ai
        .run(EMBEDDING_MODEL, EmbedInput { text: texts })
        .await
        .map_err(|e| ai_failed(EMBEDDING_MODEL, e))?;
    conductor::embedding_output(&answer, texts.len()).map_err(|e| ai_failed(EMBEDDING_MODEL, e))
}

/// `owner`: the account whose Vectorize namespace a search reads (`defense::memory_owner`).
async fn execute(call: &Call, job: EdgeJob, owner: Option<&str>) -> Result<Value, ApiError> {
    match job {
        EdgeJob::Chat {
            messages,
            max_tokens,
        } => {
            let model = call
                .env
                .var("AI_CHAT_MODEL")
                .map(|v| v.to_string())
                .ok()
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| conductor::DEFAULT_CHAT_MODEL.to_owned());
            let ai = call
                .env
                .ai("AI")
                .map_err(|e| ai_failed("Workers AI binding", e))?;
            let answer: Value = ai
                .run(
                    &model,
                    ChatInput {
                        messages: &messages,
                        max_tokens,
                    },
                )
                .await
                .map_err(|e| ai_failed(&model, e))?;
            let text = conductor::chat_output(&answer).map_err(|e| ai_failed(&model, e))?;
            Ok(json!({ "model": model, "response": text }))
        }
        EdgeJob::Embed { texts } => {
            let vectors = embed(call, &texts).await?;
            Ok(json!({
                "model": EMBEDDING_MODEL,
                "dimensions": DEFAULT_DIMENSIONS,
                "embeddings": vectors,
            }))
        }
        EdgeJob::Search {
            embedding,
            text,
            top_k,
        } => {
            let vector: Vec<f32> = match (embedding, text) {
                (Some(v), _) => v,
                (None, Some(t)) => embed(call, &[t])
                    .await?
                    .into_iter()
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| x as f32)
                    .collect(),
                (None, None) => return Err(ApiError::bad_request("nothing to search for")),
            };
            let namespace = owner.ok_or_else(|| {
                ApiError::new(
                    ErrorCode::MemoryUnavailable,
                    "anonymous callers have no memory: send an API key",
                )
            })?;
            let index = vectorize::binding(&call.env)
                .ok_or_else(|| ai_failed("Vectorize", "the VECTORIZE binding is missing"))?;
            let answer = vectorize::query_index(&index, &vector, top_k, namespace)
                .await
                .map_err(|e| ai_failed("Vectorize query", e))?;
            let matches = conductor::vectorize_output(&answer)
                .map_err(|e| ai_failed("Vectorize query", e))?;
            Ok(json!({ "index": "vectorize", "matches": matches }))
        }
    }
}

/// Runs `job` and answers `{"action", "group", "served_by": "edge", ...result}`.
pub async fn run(
    call: &Call,
    action: &str,
    job: EdgeJob,
    owner: Option<&str>,
    rate: &[(&'static str, String)],
) -> Response {
    let group = GroupTable::default()
        .route(action)
        .map(|r| r.group)
        .unwrap_or_default();
    match execute(call, job, owner).await {
        Ok(mut result) => {
            result["action"] = json!(action);
            result["group"] = json!(group);
            result["served_by"] = json!("edge");
            let mut extra = rate.to_vec();
            extra.push(("x-heady-served-by", "edge".to_owned()));
            respond::json(200, &result, &extra)
        }
        Err(e) => respond::error(&e, rate),
    }
}
