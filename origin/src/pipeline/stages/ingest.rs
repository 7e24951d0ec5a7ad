//! Stage 1, ingest: validate the payload (size is bounded by the server; here roles, model,
//! parameters — a 4xx naming the field), route the action, place it in a zone, recall earlier
//! turns of the session and store the user's turn (with a compensation to undo it).

use super::entry::Entered;
use super::Compensation;
use crate::error::{Error, ErrorCode};
use crate::memory::{id_of, new_key, MemoryError, NewRow, Scope};
use crate::pipeline::admission::Claimant;
use crate::pipeline::{Inbound, Ledger, MemoryAccess, Pipeline, Surface};
use crate::providers::config::Feature;
use crate::rt::blocking;
use heady_shared::critique::ToolChoice;
use heady_shared::{AccountId, Tier};
use heady_shared::{Route, Zone};
use serde_json::{json, Map, Value};

/// Validated request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The OpenAI request body sent upstream (our own fields removed).
    pub body: serde_json::Map<String, serde_json::Value>,
    pub model: Option<String>,
    pub stream: bool,
    /// The client asked for the stream's usage chunk (`stream_options.include_usage`).
    pub client_usage: bool,
    pub json_expected: bool,
    /// Text of the last user message (memory, zone, critique context).
    pub last_user_text: String,
    /// What the request needs of a provider beyond plain chat (the router skips providers
    /// without it).
    pub needs: Vec<Feature>,
    /// Names of the function tools the request declares.
    pub tools: Vec<String>,
    /// What `tool_choice` asks for.
    pub tool_choice: ToolChoiceAsked,
    /// The request's `heady.cache` parameter (taken out of the body).
    pub cache: heady_shared::cache::Param,
    /// The request's `Cache-Control` directives.
    pub cache_directives: heady_shared::cache::Directives,
}

/// `tool_choice`, owned (the critique borrows it as `heady_shared::critique::ToolChoice`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoiceAsked {
    #[default]
    Auto,
    None,
    Required,
    Named(String),
}

impl ToolChoiceAsked {
    pub fn as_critique(&self) -> ToolChoice<'_> {
        match self {
            ToolChoiceAsked::Auto => ToolChoice::Auto,
            ToolChoiceAsked::None => ToolChoice::None,
            ToolChoiceAsked::Required => ToolChoice::Required,
            ToolChoiceAsked::Named(n) => ToolChoice::Named(n),
        }
    }
}

/// What ingest hands on.
pub struct Ingested {
    pub chat: ChatRequest,
    pub session_id: Option<String>,
    /// The action's service group.
    pub route: Route,
    pub zone: Option<Zone>,
    pub embedding: Option<Vec<f32>>,
    /// Earlier turns put in front of the messages.
    pub recalled: usize,
    /// Who the provider slot is for, and its tier's share of the slots.
    pub claimant: Claimant,
}

pub const SESSION_HEADER: &str = "x-heady-session-id";
const ROLES: [&str; 5] = ["system", "developer", "user", "assistant", "tool"];

pub use crate::providers::content_text;

fn bad(field: &str, message: impl std::fmt::Display) -> Error {
    Error::bad_request(format!("{field}: {message}"))
}

fn number_in(body: &Map<String, Value>, field: &str, lo: f64, hi: f64) -> Result<(), Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if x >= lo && x <= hi => Ok(()),
            _ => Err(bad(
                field,
                format!("must be a number between {lo} and {hi}"),
            )),
        },
    }
}

fn count_in(body: &Map<String, Value>, field: &str, lo: u64, hi: u64) -> Result<(), Error> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_u64() {
            Some(x) if x >= lo && x <= hi => Ok(()),
            _ => Err(bad(
                field,
                format!("must be a whole number between {lo} and {hi}"),
            )),
        },
    }
}

/// Checks an OpenAI chat request (plus Heady's `message`/`input`/`session_id` on /api routes).
pub fn validate(
    surface: &Surface,
    raw: &[u8],
    max_messages: usize,
) -> Result<(ChatRequest, Option<String>), Error> {
    let value: Value = crate::error::parse_json(raw)?;
    let Value::Object(mut body) = value else {
        return Err(Error::invalid_json("the body must be a JSON object"));
    };
    let mut session = None;
    if *surface != Surface::OpenAi {
        for shortcut in ["message", "input"] {
            if let Some(v) = body.remove(shortcut) {
                let Value::String(text) = v else {
                    return Err(bad(shortcut, "must be a string"));
                };
                if body.contains_key("messages") {
                    return Err(bad(
                        shortcut,
                        "give either messages or message/input, not both",
                    ));
                }
                body.insert(
                    "messages".into(),
                    json!([{"role": "user", "content": text}]),
                );
            }
        }
    }
    let cache = heady_options(body.remove("heady"))?;
    if let Some(v) = body.remove("session_id") {
        match v {
            Value::String(s) => session = Some(s),
            Value::Null => {}
            _ => return Err(bad("session_id", "must be a string")),
        }
    }
    let messages = match body.get("messages") {
        Some(Value::Array(m)) => m,
        Some(_) => return Err(bad("messages", "must be an array of messages")),
        None => {
            return Err(bad(
                "messages",
                if *surface == Surface::OpenAi {
                    "required"
                } else {
                    "required (or give \"message\": \"...\")"
                },
            ))
        }
    };
    if messages.is_empty() {
        return Err(bad("messages", "must not be empty"));
    }
    if messages.len() > max_messages {
        return Err(bad(
            "messages",
            format!("at most {max_messages} messages (pipeline.max_messages)"),
        ));
    }
    let mut last_user_text = String::new();
    let mut needs = Vec::new();
    let mut need = |f: Feature| {
        if !needs.contains(&f) {
            needs.push(f);
        }
    };
    for (i, m) in messages.iter().enumerate() {
        let Some(m) = m.as_object() else {
            return Err(bad(&format!("messages[{i}]"), "must be an object"));
        };
        let role = m
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(&format!("messages[{i}].role"), "required, a string"))?;
        if !ROLES.contains(&role) {
            return Err(bad(
                &format!("messages[{i}].role"),
                format!("must be one of {} (got {role:?})", ROLES.join(", ")),
            ));
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                for (k, part) in parts.iter().enumerate() {
                    let kind = part.get("type").and_then(Value::as_str).ok_or_else(|| {
                        bad(
                            &format!("messages[{i}].content[{k}].type"),
                            "required, a string",
                        )
                    })?;
                    if matches!(kind, "image_url" | "input_image" | "image") {
                        need(Feature::Images);
                    }
                }
            }
            None | Some(Value::Null) if role == "assistant" => {}
            _ => {
                return Err(bad(
                    &format!("messages[{i}].content"),
                    "must be a string or an array of content parts",
                ))
            }
        }
        match m.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) if role == "assistant" => {
                need(Feature::Tools);
                for (k, c) in calls.iter().enumerate() {
                    let field = format!("messages[{i}].tool_calls[{k}]");
                    if c.get("id").and_then(Value::as_str).is_none() {
                        return Err(bad(&format!("{field}.id"), "required, a string"));
                    }
                    if c.pointer("/function/name")
                        .and_then(Value::as_str)
                        .is_none()
                    {
                        return Err(bad(&format!("{field}.function.name"), "required, a string"));
                    }
                    if !c
                        .pointer("/function/arguments")
                        .is_some_and(Value::is_string)
                    {
                        return Err(bad(
                            &format!("{field}.function.arguments"),
                            "required, a string (the arguments as JSON text)",
                        ));
                    }
                }
            }
            Some(_) if role == "assistant" => {
                return Err(bad(
                    &format!("messages[{i}].tool_calls"),
                    "must be an array",
                ))
            }
            Some(_) => {
                return Err(bad(
                    &format!("messages[{i}].tool_calls"),
                    "only assistant messages carry tool calls",
                ))
            }
        }
        if role == "tool" {
            need(Feature::Tools);
            if m.get("tool_call_id").and_then(Value::as_str).is_none() {
                return Err(bad(
                    &format!("messages[{i}].tool_call_id"),
                    "required for role \"tool\", a string: the id of the call it answers",
                ));
            }
        }
        if role == "user" {
            last_user_text = content_text(m.get("content"));
        }
    }
    let model = match body.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        None | Some(Value::Null) if *surface != Surface::OpenAi => None,
        None => {
            return Err(bad(
                "model",
                "required (use \"heady\" to let the brain router choose)",
            ))
        }
        _ => return Err(bad("model", "must be a non-empty string")),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        _ => return Err(bad("stream", "must be true or false")),
    };
    number_in(&body, "temperature", 0.0, 2.0)?;
    number_in(&body, "top_p", 0.0, 1.0)?;
    number_in(&body, "frequency_penalty", -2.0, 2.0)?;
    number_in(&body, "presence_penalty", -2.0, 2.0)?;
    count_in(&body, "max_tokens", 1, 1_000_000)?;
    count_in(&body, "max_completion_tokens", 1, 1_000_000)?;
    count_in(&body, "n", 1, 128)?;
    if body.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        need(Feature::MultipleChoices);
    }
    count_in(&body, "top_logprobs", 0, 20)?;
    number_in(&body, "seed", i64::MIN as f64, i64::MAX as f64)?;
    match body.get("logprobs") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        _ => return Err(bad("logprobs", "must be true or false")),
    }
    match body.get("stop") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(Value::Array(a)) if a.len() <= 4 && a.iter().all(Value::is_string) => {}
        _ => {
            return Err(bad(
                "stop",
                "must be a string or an array of up to 4 strings",
            ))
        }
    }
    let tools = declared_tools(&body)?;
    if !tools.is_empty() {
        need(Feature::Tools);
    }
    let tool_choice = tool_choice_of(&body, &tools)?;
    match body.get("parallel_tool_calls") {
        None | Some(Value::Null) | Some(Value::Bool(_)) => {}
        _ => return Err(bad("parallel_tool_calls", "must be true or false")),
    }
    let mut client_usage = false;
    if let Some(so) = body.get("stream_options") {
        if !(so.is_object() || so.is_null()) {
            return Err(bad("stream_options", "must be an object"));
        }
        client_usage = match so.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("stream_options.include_usage", "must be true or false")),
        };
    }
    let json_expected = match body.get("response_format") {
        None | Some(Value::Null) => false,
        Some(Value::Object(rf)) => match rf.get("type").and_then(Value::as_str) {
            Some("text") => false,
            Some("json_object") => true,
            Some("json_schema") => {
                if !rf.get("json_schema").is_some_and(Value::is_object) {
                    return Err(bad(
                        "response_format.json_schema",
                        "required for type json_schema, an object with name and schema",
                    ));
                }
                need(Feature::JsonSchema);
                true
            }
            _ => {
                return Err(bad(
                    "response_format.type",
                    "must be text, json_object or json_schema",
                ))
            }
        },
        _ => return Err(bad("response_format", "must be an object")),
    };
    Ok((
        ChatRequest {
            body,
            model,
            stream,
            client_usage,
            json_expected,
            last_user_text,
            needs,
            tools,
            tool_choice,
            cache,
            cache_directives: Default::default(),
        },
        session,
    ))
}

/// Heady's own request options, `"heady": {"cache": ...}` (OpenAI clients send it with
/// `extra_body`); never sent to a provider.
fn heady_options(v: Option<Value>) -> Result<heady_shared::cache::Param, Error> {
    let m = match v {
        None | Some(Value::Null) => return Ok(Default::default()),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(bad(
                "heady",
                "must be an object, e.g. {\"cache\": {\"ttl\": 60}}",
            ))
        }
    };
    let mut cache = heady_shared::cache::Param::default();
    for (k, v) in m {
        match k.as_str() {
            "cache" => {
                cache = heady_shared::cache::Param::parse(&v).map_err(|e| bad("heady.cache", e))?
            }
            other => {
                return Err(bad(
                    &format!("heady.{other}"),
                    "unknown option (heady.cache is known)",
                ))
            }
        }
    }
    Ok(cache)
}

/// The names of the function tools in `tools`, checked as OpenAI checks them.
fn declared_tools(body: &Map<String, Value>) -> Result<Vec<String>, Error> {
    let list = match body.get("tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad("tools", "must be an array of tools")),
    };
    if list.len() > 128 {
        return Err(bad("tools", "at most 128 tools"));
    }
    let mut names = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(bad(
                    &format!("tools[{i}].type"),
                    format!("only \"function\" tools are supported (got {other:?})"),
                ))
            }
            None => return Err(bad(&format!("tools[{i}].type"), "required: \"function\"")),
        }
        let name = t
            .pointer("/function/name")
            .and_then(Value::as_str)
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            })
            .ok_or_else(|| {
                bad(
                    &format!("tools[{i}].function.name"),
                    "required: 1-64 characters of a-z, A-Z, 0-9, _ and -",
                )
            })?;
        if let Some(p) = t.pointer("/function/parameters") {
            if !p.is_object() {
                return Err(bad(
                    &format!("tools[{i}].function.parameters"),
                    "must be a JSON Schema object",
                ));
            }
        }
        if names.iter().any(|n| n == name) {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                format!("{name:?} is declared twice"),
            ));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

fn tool_choice_of(body: &Map<String, Value>, tools: &[String]) -> Result<ToolChoiceAsked, Error> {
    let choice = match body.get("tool_choice") {
        None | Some(Value::Null) => ToolChoiceAsked::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoiceAsked::Auto,
            "none" => ToolChoiceAsked::None,
            "required" => ToolChoiceAsked::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!("must be none, auto, required or a function (got {other:?})"),
                ))
            }
        },
        Some(v @ Value::Object(_)) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice.function.name", "required, a string"))?;
            if !tools.iter().any(|t| t == name) {
                return Err(bad(
                    "tool_choice.function.name",
                    format!("{name:?} is not one of the declared tools"),
                ));
            }
            ToolChoiceAsked::Named(name.to_string())
        }
        Some(_) => return Err(bad("tool_choice", "must be a string or an object")),
    };
    if tools.is_empty() && matches!(choice, ToolChoiceAsked::Required) {
        return Err(bad("tool_choice", "\"required\" needs tools"));
    }
    Ok(choice)
}

fn check_session(s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(bad(
            "session_id",
            "must be 1-128 characters without control characters",
        ));
    }
    Ok(())
}

pub async fn run(
    p: &Pipeline,
    inbound: &Inbound,
    // Ingest runs after entry has accepted the request; it needs nothing else from it.
    _entered: &Entered,
    ledger: &mut Ledger,
) -> Result<Ingested, Error> {
    let (mut req, body_session) = validate(&inbound.surface, &inbound.body, p.config.max_messages)?;
    let header_session = match inbound.headers.get(SESSION_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad(SESSION_HEADER, "must be visible ASCII"))?
                .to_string(),
        ),
        None => None,
    };
    if let Some(v) = inbound.headers.get(http::header::CACHE_CONTROL) {
        let text = v
            .to_str()
            .map_err(|_| bad("Cache-Control", "must be visible ASCII"))?;
        req.cache_directives =
            heady_shared::cache::Directives::parse(text).map_err(|e| bad("Cache-Control", e))?;
    }
    let session = body_session.or(header_session);
    if let Some(s) = &session {
        check_session(s)?;
    }
    let tier = inbound.meter.payer.tier;
    if let Some(cap) = p.config.max_tokens_of(tier) {
        cap_max_tokens(&mut req.body, tier, cap)?;
    }
    let action = &inbound.action;
    let route = p.conductor.table().route(action).map_err(|e| {
        Error::new(
            ErrorCode::UnknownAction,
            format!("{e}; GET /api/conductor/groups lists the actions"),
        )
    })?;
    if inbound.surface == Surface::Action {
        // The action travels to the model as the task it is asked to do.
        if let Some(Value::Array(ms)) = req.body.get_mut("messages") {
            ms.insert(0, json!({"role": "system", "content": format!("Task: {} (Heady service group {}).", action, route.group)}));
        }
    }
    let recall_k = match inbound.surface {
        Surface::OpenAi => p.config.memory.v1_recall_top_k,
        _ => p.config.memory.recall_top_k,
    };
    // Anonymous callers have no memory: their session id is kept for the answer only.
    let (owner, max_rows) = match &inbound.memory {
        MemoryAccess::Account { owner, max_rows } => (Some(owner), *max_rows),
        MemoryAccess::Anonymous => (None, None),
    };
    let use_memory =
        owner.is_some() && session.is_some() && (p.config.memory.store || recall_k > 0);
    let local_embedder = p.embedder.name() == "lexical";
    let mut embedding = None;
    if (use_memory || local_embedder) && !req.last_user_text.trim().is_empty() {
        let text = vec![req.last_user_text.clone()];
        match p.embedder.embed(&text).await {
            Ok(mut v) => embedding = v.pop(),
            Err(e) if use_memory => {
                return Err(Error::new(ErrorCode::EmbedderFailed, e.to_string()))
            }
            Err(_) => {}
        }
    }
    let decision = p
        .conductor
        .decide(action, embedding.as_deref())
        .map_err(|e| Error::new(ErrorCode::UnknownAction, e.to_string()))?;
    let mut recalled = 0;
    if let (Some(owner), Some(s), Some(q)) = (owner, &session, &embedding) {
        if recall_k > 0 {
            let (memory, q, s2, o) = (p.memory.clone(), q.clone(), s.clone(), owner.clone());
            let hits = blocking(move || {
                memory.search_blocking(&Scope::Owner(&o), &q, recall_k, Some(&s2))
            })
            .await?
            .map_err(|e| Error::internal(format!("memory recall: {e}")))?
            .0;
            if !hits.is_empty() {
                let lines: Vec<String> = hits
                    .iter()
                    .map(|h| format!("- {}: {}", h.role, h.content))
                    .collect();
                let note = format!(
                    "Relevant earlier turns of this conversation (most relevant first):\n{}",
                    lines.join("\n")
                );
                if let Some(Value::Array(ms)) = req.body.get_mut("messages") {
                    ms.insert(0, json!({"role": "system", "content": note}));
                }
                recalled = hits.len();
            }
        }
        if p.config.memory.store && !req.last_user_text.trim().is_empty() {
            let row = turn_row(
                owner,
                "user",
                &req.last_user_text,
                q.clone(),
                s,
                &inbound.request_id,
            );
            let id = id_of(row.key);
            let memory = p.memory.clone();
            blocking(move || memory.insert_blocking(&[row], max_rows))
                .await?
                .map_err(|e| match e {
                    MemoryError::Quota { .. } => {
                        Error::forbidden(ErrorCode::QuotaExceeded, e.to_string())
                    }
                    e => Error::internal(format!("memory write: {e}")),
                })?;
            ledger.compensations.push(Compensation::DeleteMemoryRows {
                owner: owner.clone(),
                ids: vec![id.clone()],
            });
            ledger.stored.push(id);
        }
    }
    Ok(Ingested {
        chat: req,
        session_id: session,
        route,
        zone: decision.zone,
        embedding,
        recalled,
        claimant: Claimant {
            subject: inbound.meter.payer.subject.as_str().into(),
            share: p.config.share_of(tier),
        },
    })
}

/// The tier's cap on completion tokens: a request asking for more is refused, one asking for
/// nothing gets `max_tokens` = the cap (so no provider default runs past it).
fn cap_max_tokens(body: &mut Map<String, Value>, tier: Tier, cap: u64) -> Result<(), Error> {
    let mut asked = false;
    for field in ["max_tokens", "max_completion_tokens"] {
        match body.get(field).and_then(Value::as_u64) {
            Some(n) if n > cap => {
                return Err(bad(
                    field,
                    format!(
                    "{n} is more than the {tier} tier allows ({cap}, pipeline.max_tokens.{tier})"
                ),
                ))
            }
            Some(_) => asked = true,
            None => {}
        }
    }
    if !asked {
        body.insert("max_tokens".into(), json!(cap));
    }
    Ok(())
}

/// A conversation turn as a memory row of `owner`.
pub fn turn_row(
    owner: &AccountId,
    role: &str,
    content: &str,
    embedding: Vec<f32>,
    session: &str,
    request_id: &str,
) -> NewRow {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    NewRow {
        owner: owner.clone(),
        key: new_key(),
        ts,
        role: role.to_string(),
        content: content.to_string(),
        embedding,
        token_count: content.split_whitespace().count().min(i32::MAX as usize) as i32,
        session_id: Some(session.to_string()),
        metadata: Some(json!({"request_id": request_id, "source": "pipeline"}).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(surface: Surface, body: &str) -> String {
        validate(&surface, body.as_bytes(), 8).unwrap_err().message
    }

    #[test]
    fn errors_name_the_field() {
        assert!(err(
            Surface::OpenAi,
            r#"{"messages":[{"role":"user","content":"hi"}]}"#
        )
        .starts_with("model:"));
        assert!(err(Surface::OpenAi, r#"{"model":"m","messages":[]}"#).starts_with("messages:"));
        assert!(err(
            Surface::OpenAi,
            r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#
        )
        .starts_with("messages[0].role:"));
        assert!(err(
            Surface::OpenAi,
            r#"{"model":"m","messages":[{"role":"user","content":5}]}"#
        )
        .starts_with("messages[0].content:"));
        assert!(err(
            Surface::OpenAi,
            r#"{"model":"m","temperature":9,"messages":[{"role":"user","content":"x"}]}"#
        )
        .starts_with("temperature:"));
        assert!(err(
            Surface::OpenAi,
            r#"{"model":"m","n":200,"messages":[{"role":"user","content":"x"}]}"#
        )
        .starts_with("n:"));
        assert!(err(
            Surface::OpenAi,
            r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"x"}]}"#
        )
        .starts_with("stream:"));
        assert!(err(Surface::Brain, r#"{"message":5}"#).starts_with("message:"));
        let many = format!(
            r#"{{"model":"m","messages":[{}]}}"#,
            [r#"{"role":"user","content":"x"}"#; 9].join(",")
        );
        assert!(err(Surface::OpenAi, &many).starts_with("messages:"));
    }

    #[test]
    fn tools_and_what_a_request_needs() {
        let (r, _) = validate(
            &Surface::OpenAi,
            br#"{"model":"m","n":2,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"required","response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}},"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"}]}"#,
            8,
        )
        .unwrap();
        let mut needs = r.needs.clone();
        needs.sort();
        assert_eq!(
            needs,
            vec![
                Feature::Tools,
                Feature::JsonSchema,
                Feature::Images,
                Feature::MultipleChoices
            ]
        );
        assert_eq!(r.tools, vec!["get_weather".to_string()]);
        assert_eq!(r.tool_choice, ToolChoiceAsked::Required);
        assert_eq!(r.last_user_text, "hi");
        let e = |body: &str| err(Surface::OpenAi, body);
        assert!(e(r#"{"model":"m","tools":[{"type":"function","function":{}}],"messages":[{"role":"user","content":"x"}]}"#).starts_with("tools[0].function.name:"));
        assert!(e(r#"{"model":"m","tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":{"type":"function","function":{"name":"b"}},"messages":[{"role":"user","content":"x"}]}"#).starts_with("tool_choice.function.name:"));
        assert!(
            e(r#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#)
                .starts_with("messages[0].tool_call_id:")
        );
        assert!(e(r#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","function":{"name":"a","arguments":{}}}]}]}"#).starts_with("messages[0].tool_calls[0].function.arguments:"));
        assert!(
            e(r#"{"model":"m","stop":[1],"messages":[{"role":"user","content":"x"}]}"#)
                .starts_with("stop:")
        );
    }

    #[test]
    fn brain_shortcut_and_session() {
        let (r, s) = validate(
            &Surface::Brain,
            br#"{"message":"hello","session_id":"s1"}"#,
            8,
        )
        .unwrap();
        assert_eq!(r.last_user_text, "hello");
        assert_eq!(s.as_deref(), Some("s1"));
        assert!(!r.body.contains_key("session_id"));
        assert!(r.model.is_none());
    }
}
