//! `/api/conductor/*`: the service-group table and routing decisions.

use super::require_json;
use crate::error::{parse_json, ApiError};
use crate::server::{json_response, Body, Ctx};
use crate::state::AppState;
use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    action: String,
    text: Option<String>,
}

pub async fn groups(s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    let table = s.conductor.table();
    let total: f64 = table.groups().iter().map(|g| g.weight).sum();
    let groups: Vec<_> = table
        .groups()
        .iter()
        .map(|g| json!({"name": g.name, "weight": g.weight, "share": g.weight / total, "actions": g.actions}))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({ "groups": groups })))
}

pub async fn route(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    require_json(&c)?;
    let req: RouteRequest = parse_json(&c.body)?;
    if req.action.is_empty() {
        return Err(ApiError::bad_request("action must not be empty"));
    }
    let embedding = match req.text.as_deref() {
        Some(t) if !t.trim().is_empty() => {
            let v = s
                .embedder
                .embed(std::slice::from_ref(&t.to_string()))
                .await
                .map_err(|e| {
                    ApiError::new(StatusCode::BAD_GATEWAY, "embedder_failed", e.to_string())
                })?;
            v.into_iter().next()
        }
        Some(_) => return Err(ApiError::bad_request("text must not be empty when given")),
        None => None,
    };
    let decision = s
        .conductor
        .decide(&req.action, embedding.as_deref())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "unknown_action", e.to_string()))?;
    Ok(json_response(StatusCode::OK, &decision))
}
