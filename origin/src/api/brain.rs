//! `/api/brain/*` and `/api/{action}`: chat through the HCFP pipeline, and what the brain
//! router knows about its providers.

use super::{pipeline_reply, Ctx, Reply};
use crate::app::App;
use crate::error::{Error, ErrorCode};
use crate::pipeline::{Inbound, MemoryAccess, Surface};
use serde_json::json;
use std::sync::Arc;

/// `POST /api/brain/chat`: the seed's route; action `chat`.
pub async fn chat(s: Arc<App>, mut c: Ctx) -> Result<Reply, Error> {
    super::apply_model_allowlist(&mut c)?;
    run_chat(&s, Surface::Brain, "chat", c).await
}

/// Reserves the request's tokens, runs it through the pipeline, and answers with the token
/// limit's headers. Shared by every chat route.
pub(super) async fn run_chat(
    s: &Arc<App>,
    surface: Surface,
    action: &str,
    c: Ctx,
) -> Result<Reply, Error> {
    let default_max = s.usage.config.default_max_tokens;
    let body = c.body.clone();
    let meter = super::begin_meter(s, &c, move || {
        crate::usage::tokens::chat_reservation(&body, default_max)
    })
    .await?;
    let headers = meter.headers.clone();
    let result = pipeline_reply(s.pipeline.run(inbound(s, surface, action, c, meter)).await);
    super::with_headers(result, headers)
}

/// `POST /api/{action}`: any action of the conductor's table, routed to its service group.
pub async fn action(s: Arc<App>, mut c: Ctx) -> Result<Reply, Error> {
    let action = heady_shared::api_paths::action_of(&c.path)
        .unwrap_or("")
        .to_string();
    if s.conductor.table().route(&action).is_err() {
        return Err(Error::new(ErrorCode::UnknownAction, format!("unknown action {action:?}: no service group lists it (GET /api/conductor/groups lists the actions)")));
    }
    if s.defense.enabled {
        s.defense.authorize_action(&c.identity, &action)?;
    }
    super::apply_model_allowlist(&mut c)?;
    run_chat(&s, Surface::Action, &action, c).await
}

pub(super) fn inbound(
    s: &App,
    surface: Surface,
    action: &str,
    c: Ctx,
    meter: crate::usage::Meter,
) -> Inbound {
    let memory = match super::memory::memory_owner(&c.identity) {
        Some(owner) => MemoryAccess::Account {
            owner,
            max_rows: s.config.memory.max_rows.of(c.identity.tier),
        },
        None => MemoryAccess::Anonymous,
    };
    Inbound {
        surface,
        action: action.to_string(),
        request_id: c.request_id,
        memory,
        headers: c.headers,
        semantic_cache: c.identity.semantic_cache,
        body: c.body,
        meter,
    }
}

/// `GET /api/brain/providers`: breakers, recent outcomes, drift alarms, learned paths.
pub async fn providers(s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
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
    Reply::ok(&json!({
        "providers": providers,
        "patterns": p.patterns.snapshot(),
        "concurrency": {"max": p.config.max_concurrency, "in_use": p.admission.in_use(), "waiting": p.admission.waiting()},
    }))
}
