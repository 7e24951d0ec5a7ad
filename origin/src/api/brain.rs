//! `/api/brain/*` and `/api/{action}`: chat through the HCFP pipeline, and what the brain
//! router knows about its providers.

use crate::error::ApiError;
use crate::pipeline::{Job, Surface};
use crate::server::{json_response, Body, Ctx};
use crate::state::AppState;
use http::{Response, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// `POST /api/brain/chat`: the seed's route; action `chat`.
pub async fn chat(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    let job = Job::new(Surface::Brain, "chat", c.request_id, c.headers, c.body);
    Ok(s.pipeline.handle(job).await)
}

/// `POST /api/{action}`: any action of the conductor's table, routed to its service group.
pub async fn action(s: Arc<AppState>, c: Ctx) -> Result<Response<Body>, ApiError> {
    let action = c.path.strip_prefix("/api/").unwrap_or("").to_string();
    if s.conductor.table().route(&action).is_err() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!("unknown action {action:?}: no service group lists it (GET /api/conductor/groups lists the actions)"),
        ));
    }
    if s.defense.enabled {
        s.defense.authorize_action(&c.identity, &action)?;
    }
    let job = Job::new(Surface::Action, &action, c.request_id, c.headers, c.body);
    Ok(s.pipeline.handle(job).await)
}

/// `GET /api/brain/providers`: breakers, recent outcomes, drift alarms, learned paths.
pub async fn providers(s: Arc<AppState>, _c: Ctx) -> Result<Response<Body>, ApiError> {
    let p = &s.pipeline;
    let now = p.now_ms();
    let providers: Vec<_> = p
        .providers
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let h = p.lock_health(i);
            json!({
                "name": e.config.name,
                "kind": format!("{:?}", e.config.kind).to_lowercase(),
                "model": e.config.model,
                "groups": e.config.groups,
                "weight": e.config.weight,
                "priority": e.config.priority,
                "breaker": h.breaker.state(now),
                "breaker_opens": h.breaker.opens(),
                "calls": h.calls,
                "failures": h.failures,
                "recent_success_rate": h.recent_success_rate(),
                "last_error": h.last_error,
                "drift": h.drifts,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "providers": providers,
            "patterns": p.patterns.snapshot(),
            "concurrency": {"max": p.config.max_concurrency, "in_use": p.admission.in_use(), "waiting": p.admission.waiting()},
        }),
    ))
}
