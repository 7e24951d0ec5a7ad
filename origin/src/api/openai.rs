//! OpenAI-compatible `/v1`: chat completions (plain and streamed) through the pipeline,
//! embeddings through the configured embedder, and the model list.

use super::require_json;
use super::{Ctx, Reply};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::pipeline::Surface;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn chat_completions(s: Arc<App>, mut c: Ctx) -> Result<Reply, Error> {
    super::apply_model_allowlist(&mut c)?;
    super::brain::run_chat(&s, Surface::OpenAi, "chat", c).await
}

pub async fn models(s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    let mut data =
        vec![json!({"id": "heady", "object": "model", "created": 0, "owned_by": "heady"})];
    let mut seen = std::collections::HashSet::new();
    for e in &s.pipeline.providers {
        if let Some(m) = &e.config.model {
            if seen.insert(m.clone()) {
                data.push(
                    json!({"id": m, "object": "model", "created": 0, "owned_by": e.config.name}),
                );
            }
        }
    }
    Reply::ok(&json!({"object": "list", "data": data}))
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    model: Option<String>,
    encoding_format: Option<String>,
    dimensions: Option<u64>,
    #[allow(dead_code)]
    user: Option<String>,
}

const MAX_INPUTS: usize = 2_048;

pub async fn embeddings(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    require_json(&c)?;
    let req: EmbeddingsRequest = crate::error::parse_json(&c.body)?;
    let model = c.identity.permit_model(req.model.as_deref())?;
    let texts: Vec<String> = match req.input {
        Value::String(t) => vec![t],
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, it) in items.into_iter().enumerate() {
                match it {
                    Value::String(t) => out.push(t),
                    _ => {
                        return Err(Error::bad_request(format!(
                            "input[{i}]: must be a string (token arrays are not supported)"
                        )))
                    }
                }
            }
            out
        }
        _ => {
            return Err(Error::bad_request(
                "input: must be a string or an array of strings",
            ))
        }
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(Error::bad_request(format!(
            "input: 1 to {MAX_INPUTS} strings"
        )));
    }
    if let Some(i) = texts.iter().position(|t| t.is_empty()) {
        return Err(Error::bad_request(format!("input[{i}]: must not be empty")));
    }
    let dim = s.embedder.dim();
    if let Some(d) = req.dimensions {
        if d != dim as u64 {
            return Err(Error::bad_request(format!(
                "dimensions: this embedder produces {dim}-dimensional vectors"
            )));
        }
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "encoding_format: must be \"float\" or \"base64\" (got {other:?})"
            )))
        }
    };
    let bytes: usize = texts.iter().map(String::len).sum();
    let meter = super::begin_meter(&s, &c, || crate::usage::tokens::quick(bytes)).await?;
    let headers = meter.headers.clone();
    let embedded = match s.embedder.embed_counted(&texts).await {
        Ok(e) => e,
        Err(e) => {
            meter.finish(&[]).await;
            return super::with_headers(
                Err(Error::new(ErrorCode::EmbedderFailed, e.to_string())),
                headers,
            );
        }
    };
    let prompt_tokens = match embedded.prompt_tokens {
        Some(n) => n,
        None => crate::usage::tokens::inputs_estimate(texts).await,
    };
    let used = crate::usage::Used {
        model: crate::usage::model_label(s.embedder.model()),
        prompt_tokens,
        completion_tokens: 0,
        estimated: embedded.prompt_tokens.is_none(),
    };
    let tokens = used.prompt_tokens;
    meter.finish(std::slice::from_ref(&used)).await;
    let vectors = embedded.vectors;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let model = model.unwrap_or_else(|| s.embedder.name().to_string());
    super::with_headers(
        Reply::ok(
            &json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ),
        headers,
    )
}
