//! OpenAI-compatible `/v1`: chat completions (plain and streamed) through the pipeline,
//! embeddings through the configured embedder, and the model list.

use super::require_json;
use super::{Ctx, Reply};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::memory::embedder::{EmbedApiError, EmbedError, EmbedInput, EmbedRequest};
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
    /// OpenAI's end-user id: accepted, not forwarded (the caller's account identifies it).
    #[allow(dead_code)]
    user: Option<String>,
}

const MAX_INPUTS: usize = 2_048;
/// Token ids per input at most (OpenAI's embedding models take 8,192).
const MAX_TOKENS_PER_INPUT: usize = 8_192;

/// OpenAI's four shapes of `input`: a string, strings, a token array, token arrays.
fn embed_input(input: Value) -> Result<EmbedInput, Error> {
    fn tokens(v: &[Value], field: &str) -> Result<Vec<u32>, Error> {
        if v.is_empty() || v.len() > MAX_TOKENS_PER_INPUT {
            return Err(Error::bad_request(format!(
                "{field}: 1 to {MAX_TOKENS_PER_INPUT} token ids"
            )));
        }
        v.iter()
            .enumerate()
            .map(|(j, t)| {
                t.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::bad_request(format!(
                            "{field}[{j}]: must be a token id (a whole number >= 0)"
                        ))
                    })
            })
            .collect()
    }
    let shape = "input: must be a string, an array of strings, an array of token ids or an array of arrays of token ids";
    let input = match input {
        Value::String(t) => EmbedInput::Texts(vec![t]),
        Value::Array(items) => match items.first() {
            None => {
                return Err(Error::bad_request(format!(
                    "input: 1 to {MAX_INPUTS} inputs"
                )))
            }
            Some(Value::Number(_)) => EmbedInput::Tokens(vec![tokens(&items, "input")?]),
            Some(Value::Array(_)) => EmbedInput::Tokens(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, it)| match it {
                        Value::Array(a) => tokens(a, &format!("input[{i}]")),
                        _ => Err(Error::bad_request(format!(
                            "input[{i}]: must be an array of token ids, like the others"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(Value::String(_)) => EmbedInput::Texts(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, it)| match it {
                        Value::String(t) => Ok(t),
                        _ => Err(Error::bad_request(format!(
                            "input[{i}]: must be a string, like the others"
                        ))),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(Error::bad_request(shape)),
        },
        _ => return Err(Error::bad_request(shape)),
    };
    if input.is_empty() || input.len() > MAX_INPUTS {
        return Err(Error::bad_request(format!(
            "input: 1 to {MAX_INPUTS} inputs"
        )));
    }
    if let EmbedInput::Texts(t) = &input {
        if let Some(i) = t.iter().position(|t| t.is_empty()) {
            return Err(Error::bad_request(format!("input[{i}]: must not be empty")));
        }
    }
    Ok(input)
}

fn embed_refused(e: EmbedApiError) -> Error {
    match e {
        EmbedApiError::Model { .. } => Error::new(ErrorCode::ModelNotFound, e.to_string()),
        EmbedApiError::Dimensions { .. } | EmbedApiError::Tokens(_) => {
            Error::bad_request(e.to_string())
        }
        // The embedding endpoint refused the request itself: its status and message, as the
        // chat providers' refusals are passed on.
        EmbedApiError::Failed(EmbedError::Upstream {
            status, message, ..
        }) if matches!(status, 400 | 404 | 413 | 422) => Error::new(
            ErrorCode::UpstreamRejected,
            format!("the embedding endpoint refused the request: {message}"),
        )
        .with_status(status),
        EmbedApiError::Failed(e) => Error::new(ErrorCode::EmbedderFailed, e.to_string()),
    }
}

pub async fn embeddings(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    require_json(&c)?;
    let req: EmbeddingsRequest = crate::error::parse_json(&c.body)?;
    c.identity.permit_model(req.model.as_deref())?;
    let input = embed_input(req.input)?;
    let dimensions = match req.dimensions {
        None => None,
        Some(d) if (1..=65_536).contains(&d) => Some(d as usize),
        Some(_) => {
            return Err(Error::bad_request(
                "dimensions: must be between 1 and 65536",
            ))
        }
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::bad_request(format!(
                "encoding_format: must be \"float\" or \"base64\" (got {other:?})"
            )))
        }
    };
    let bytes: usize = match &input {
        EmbedInput::Texts(t) => t.iter().map(String::len).sum(),
        EmbedInput::Tokens(t) => t.iter().map(|t| t.len() * 4).sum(),
    };
    let meter = super::begin_meter(&s, &c, || crate::usage::tokens::quick(bytes)).await?;
    let headers = meter.headers.clone();
    let request = EmbedRequest {
        input,
        model: req.model,
        dimensions,
    };
    let answer = match s.embedder.embed_api(&request).await {
        Ok(a) => a,
        Err(e) => {
            meter.finish(&[]).await;
            return super::with_headers(Err(embed_refused(e)), headers);
        }
    };
    let prompt_tokens = match (answer.prompt_tokens, &request.input) {
        (Some(n), _) => n,
        (None, EmbedInput::Tokens(t)) => t.iter().map(|t| t.len() as u64).sum(),
        (None, EmbedInput::Texts(t)) => crate::usage::tokens::inputs_estimate(t.clone()).await,
    };
    let used = crate::usage::Used {
        model: crate::usage::model_label(&answer.model),
        prompt_tokens,
        completion_tokens: 0,
        // Token arrays are counted exactly; text by the tokenizer when the provider said nothing.
        estimated: answer.prompt_tokens.is_none() && matches!(request.input, EmbedInput::Texts(_)),
    };
    let tokens = used.prompt_tokens;
    meter.finish(std::slice::from_ref(&used)).await;
    let data: Vec<Value> = answer
        .vectors
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
    super::with_headers(
        Reply::ok(
            &json!({"object": "list", "data": data, "model": answer.model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
        ),
        headers,
    )
}
