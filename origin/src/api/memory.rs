//! `/api/memory/*`: insertVector (single and batch), similaritySearch, getZoneForQuery, getStats.

use super::{blocking, require_json};
use crate::error::{parse_json, ApiError};
use crate::memory::embedder::EmbedError;
use crate::memory::{id_of, new_key, NewRow};
use crate::server::{json_response, Body, Ctx};
use crate::state::AppState;
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

const ROLES: [&str; 4] = ["user", "assistant", "system", "tool"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsertRequest {
    pub content: String,
    pub embedding: Option<Vec<f64>>,
    pub role: Option<String>,
    pub session_id: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub token_count: Option<u32>,
}

/// One pass over the body: either `items` (the batch form) or the fields of one item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertBody {
    items: Option<Vec<InsertRequest>>,
    content: Option<String>,
    embedding: Option<Vec<f64>>,
    role: Option<String>,
    session_id: Option<String>,
    metadata: Option<serde_json::Value>,
    token_count: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchRequest {
    embedding: Option<Vec<f64>>,
    text: Option<String>,
    top_k: Option<usize>,
    session_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ZoneRequest {
    text: String,
}

fn embed_error(e: EmbedError) -> ApiError {
    let code = match e {
        EmbedError::Dimension { .. } => "embedder_dimension",
        _ => "embedder_failed",
    };
    ApiError::new(StatusCode::BAD_GATEWAY, code, e.to_string())
}

/// Checks an embedding: right length, every value a finite f32, not all zero.
pub fn check_embedding(field: &str, v: &[f64], dim: usize) -> Result<Vec<f32>, ApiError> {
    if v.len() != dim {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_dimension",
            format!(
                "{field} has {} values; this database stores {dim}-dimensional embeddings",
                v.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(dim);
    for (i, x) in v.iter().enumerate() {
        let f = *x as f32;
        if !f.is_finite() {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_embedding",
                format!("{field}[{i}] is not a finite 32-bit float ({x})"),
            ));
        }
        out.push(f);
    }
    if out.iter().all(|x| *x == 0.0) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_embedding",
            format!("{field} is all zeros; cosine similarity is undefined for it"),
        ));
    }
    Ok(out)
}

fn check_session(field: &str, s: &str) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(format!(
            "{field} must be 1-128 characters without control characters"
        )));
    }
    Ok(())
}

/// Validates one item into a row; its embedding is filled later when it was not given.
fn validate_item(
    prefix: &str,
    it: InsertRequest,
    dim: usize,
    now: i64,
) -> Result<(NewRow, bool), ApiError> {
    if it.content.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "{prefix}content must not be empty"
        )));
    }
    let role = it.role.unwrap_or_else(|| "user".into());
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::bad_request(format!(
            "{prefix}role must be one of user, assistant, system, tool (got {role:?})"
        )));
    }
    if let Some(s) = &it.session_id {
        check_session(&format!("{prefix}session_id"), s)?;
    }
    let metadata = match it.metadata {
        None | Some(serde_json::Value::Null) => None,
        Some(v @ serde_json::Value::Object(_)) => Some(v.to_string()),
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{prefix}metadata must be a JSON object"
            )))
        }
    };
    let token_count = i32::try_from(it.token_count.unwrap_or(0))
        .map_err(|_| ApiError::bad_request(format!("{prefix}token_count is too large")))?;
    let (embedding, given) = match it.embedding {
        Some(e) => (
            check_embedding(&format!("{prefix}embedding"), &e, dim)?,
            true,
        ),
        None => (Vec::new(), false),
    };
    Ok((
        NewRow {
            key: new_key(),
            ts: now,
            role,
            content: it.content,
            embedding,
            token_count,
            session_id: it.session_id,
            metadata,
        },
        given,
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `POST /api/memory/vectors`: one item -> `{id}`, or `{items:[...]}` -> `{ids:[...]}`.
/// All-or-nothing: any invalid item rejects the whole request and nothing is stored.
pub async fn insert(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    require_json(&c)?;
    let body: InsertBody = parse_json(&c.body)?;
    let is_batch = body.items.is_some();
    let (items, prefixes): (Vec<InsertRequest>, Vec<String>) = match body.items {
        Some(items) => {
            if body.content.is_some()
                || body.embedding.is_some()
                || body.role.is_some()
                || body.session_id.is_some()
                || body.metadata.is_some()
                || body.token_count.is_some()
            {
                return Err(ApiError::bad_request(
                    "give either items (a batch) or the fields of one item, not both",
                ));
            }
            if items.is_empty() {
                return Err(ApiError::bad_request("items must not be empty"));
            }
            if items.len() > s.config.memory.max_batch {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    format!(
                        "items has {} entries; the limit is {} (memory.max_batch)",
                        items.len(),
                        s.config.memory.max_batch
                    ),
                ));
            }
            let n = items.len();
            (items, (0..n).map(|i| format!("items[{i}].")).collect())
        }
        None => {
            let content = body
                .content
                .ok_or_else(|| ApiError::bad_request("invalid request: missing field `content`"))?;
            let one = InsertRequest {
                content,
                embedding: body.embedding,
                role: body.role,
                session_id: body.session_id,
                metadata: body.metadata,
                token_count: body.token_count,
            };
            (vec![one], vec![String::new()])
        }
    };
    let dim = s.memory.dim();
    let now = now_ms();
    let mut rows = Vec::with_capacity(items.len());
    let mut to_embed = Vec::new();
    for (i, (it, prefix)) in items.into_iter().zip(prefixes).enumerate() {
        let (row, given) = validate_item(&prefix, it, dim, now)?;
        if !given {
            to_embed.push(i);
        }
        rows.push(row);
    }
    if !to_embed.is_empty() {
        let texts: Vec<String> = to_embed.iter().map(|&i| rows[i].content.clone()).collect();
        let vectors = s.embedder.embed(&texts).await.map_err(embed_error)?;
        for (&i, v) in to_embed.iter().zip(vectors) {
            if v.iter().all(|x| *x == 0.0) {
                let prefix = if is_batch {
                    format!("items[{i}].")
                } else {
                    String::new()
                };
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_embedding",
                    format!(
                        "{prefix}content has nothing the {} embedder can embed; send an embedding",
                        s.embedder.name()
                    ),
                ));
            }
            rows[i].embedding = v;
        }
    }
    let ids: Vec<String> = rows.iter().map(|r| id_of(r.key)).collect();
    let memory = s.memory.clone();
    blocking(move || memory.insert_blocking(&rows))
        .await?
        .map_err(|e| ApiError::internal(format!("could not store: {e}")))?;
    if is_batch {
        Ok(json_response(StatusCode::OK, &json!({ "ids": ids })))
    } else {
        Ok(json_response(StatusCode::OK, &json!({ "id": ids[0] })))
    }
}

/// `POST /api/memory/search`: `{embedding | text, top_k, session_id?}` -> ranked results.
pub async fn search(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    require_json(&c)?;
    let req: SearchRequest = parse_json(&c.body)?;
    let max = s.config.memory.max_top_k;
    let top_k = req.top_k.unwrap_or(10);
    if top_k == 0 || top_k > max {
        return Err(ApiError::bad_request(format!(
            "top_k must be between 1 and {max} (got {top_k})"
        )));
    }
    if let Some(sid) = &req.session_id {
        check_session("session_id", sid)?;
    }
    let query = match (req.embedding, req.text) {
        (Some(e), None) => check_embedding("embedding", &e, s.memory.dim())?,
        (None, Some(t)) => {
            if t.trim().is_empty() {
                return Err(ApiError::bad_request("text must not be empty"));
            }
            let v = s
                .embedder
                .embed(std::slice::from_ref(&t))
                .await
                .map_err(embed_error)?;
            let v = v.into_iter().next().unwrap_or_default();
            if v.iter().all(|x| *x == 0.0) {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_embedding",
                    "text has nothing to embed",
                ));
            }
            v
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either embedding or text, not both",
            ))
        }
        (None, None) => return Err(ApiError::bad_request("give embedding or text")),
    };
    let memory = s.memory.clone();
    let session = req.session_id;
    let (results, path) =
        blocking(move || memory.search_blocking(&query, top_k, session.as_deref()))
            .await?
            .map_err(|e| ApiError::internal(format!("search failed: {e}")))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "results": results, "search": path }),
    ))
}

/// `POST /api/memory/zone`: `{text}` -> `{zone, coordinates}`.
pub async fn zone(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    require_json(&c)?;
    let req: ZoneRequest = parse_json(&c.body)?;
    if req.text.trim().is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    let v = s
        .embedder
        .embed(std::slice::from_ref(&req.text))
        .await
        .map_err(embed_error)?;
    let v = v.into_iter().next().unwrap_or_default();
    let z = heady_shared::zone::zone_of(&v).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(json_response(StatusCode::OK, &z))
}

/// `GET /api/memory/stats`.
pub async fn stats(s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    let memory = s.memory.clone();
    let stats = blocking(move || memory.stats_blocking())
        .await?
        .map_err(|e| ApiError::internal(format!("stats failed: {e}")))?;
    let mut v = serde_json::to_value(&stats).map_err(|e| ApiError::internal(e.to_string()))?;
    v["embedder"] = json!(s.embedder.name());
    Ok(json_response(StatusCode::OK, &v))
}
