//! `/api/conductor/*`: the service-group table and routing decisions.

use super::require_json;
use super::{Ctx, Reply};
use crate::app::App;
use crate::error::{parse_json, Error, ErrorCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    action: String,
    text: Option<String>,
}

pub async fn groups(s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    let table = s.conductor.table();
    let total: f64 = table.groups().iter().map(|g| g.weight).sum();
    let groups: Vec<_> = table
        .groups()
        .iter()
        .map(|g| json!({"name": g.name, "weight": g.weight, "share": g.weight / total, "actions": g.actions}))
        .collect();
    Reply::ok(&json!({ "groups": groups }))
}

pub async fn route(s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    require_json(&c)?;
    let req: RouteRequest = parse_json(&c.body)?;
    if req.action.is_empty() {
        return Err(Error::bad_request("action must not be empty"));
    }
    let embedding = match req.text.as_deref() {
        Some(t) if !t.trim().is_empty() => {
            let v = s
                .embedder
                .embed(std::slice::from_ref(&t.to_string()))
                .await
                .map_err(|e| Error::new(ErrorCode::EmbedderFailed, e.to_string()))?;
            v.into_iter().next()
        }
        Some(_) => return Err(Error::bad_request("text must not be empty when given")),
        None => None,
    };
    let decision = s
        .conductor
        .decide(&req.action, embedding.as_deref())
        .map_err(|e| Error::new(ErrorCode::UnknownAction, e.to_string()).with_status(400))?;
    Reply::ok(&decision)
}
