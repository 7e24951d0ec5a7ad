//! The OpenAPI 3.1 document of every operation the origin answers, built from the code: each
//! route's method, path and policy (classification, tier feature, key, limiter) come from the
//! route table (`routes::operation_list`), its description (summary, parameters, bodies,
//! answers, an example) from [`operations`] beside it here. A unit test fails when the two
//! differ. Served at `/openapi.json`, rendered as HTML at `/` on the API properties
//! ([`reference`](super::reference)), printed by `heady-origin openapi`.

use super::reference;
use super::routes;
use crate::api::{Ctx, Reply};
use crate::app::App;
use crate::defense::RoutePolicy;
use crate::error::{Error, ErrorCode};
use heady_shared::properties::Kind;
use heady_shared::{Classification, Feature};
use http::Method;
use serde_json::{json, Map, Value};
use std::sync::{Arc, OnceLock};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// The rendered reference's stylesheet (same origin: the pages' CSP allows no inline style).
pub const STYLESHEET_PATH: &str = "/reference.css";
/// The public API host the examples use.
pub const SERVER: &str = "https://headyapi.com";

/// The tags, in the order the reference lists them: (name, description).
pub const TAGS: [(&str, &str); 12] = [
    (
        "openai",
        "The OpenAI-compatible API: any OpenAI SDK works with base URL `https://headyapi.com/v1`.",
    ),
    (
        "brain",
        "Chat through the HCFP pipeline, conductor actions, provider health.",
    ),
    (
        "memory",
        "The caller's account's vector memory (DuckDB, HNSW search): anonymous callers have none.",
    ),
    (
        "conductor",
        "The service groups and the routing decision for an action.",
    ),
    ("account", "The caller's own account and its usage."),
    (
        "billing",
        "Stripe Checkout, the Billing Portal, and Stripe's webhook.",
    ),
    (
        "admin",
        "Operators only: a key with RESTRICTED clearance manages accounts and keys.",
    ),
    (
        "mcp",
        "The Model Context Protocol server (Streamable HTTP), for MCP clients.",
    ),
    (
        "discord",
        "Heady for Discord on discord.headysystems.com: Discord's interactions endpoint and the sign-in that links a Discord user to an account (docs/discord.md).",
    ),
    (
        "edge",
        "What the Heady edge asks the origin: who a key is, a PQC key's holder, the tunnel handshake.",
    ),
    ("operations", "Liveness, readiness and Prometheus metrics."),
    (
        "reference",
        "This reference: the OpenAPI document and its rendered page.",
    ),
];

/// One operation's description; the route table has its policy.
pub(crate) struct Op {
    pub method: Method,
    pub path: &'static str,
    pub id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    /// Path parameters (name, description), then query parameters (full objects).
    pub path_params: Vec<(&'static str, &'static str, &'static str)>,
    pub query: Vec<Value>,
    pub body: Option<Value>,
    /// Success answers: (status, response object).
    pub ok: Vec<(&'static str, Value)>,
    /// Error statuses this route sends besides those its policy and body imply.
    pub errors: &'static [u16],
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// A required JSON body of schema `name`, with an example a test sends to a real origin.
fn json_body(name: &str, example: Value) -> Option<Value> {
    Some(json!({
        "required": true,
        "content": {"application/json": {"schema": schema(name), "example": example}}
    }))
}

fn json_answer(description: &str, name: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": schema(name)}}
    })
}

/// A chat answer: JSON, or server-sent events with `"stream": true`.
fn chat_answer() -> Value {
    json!({
        "description": "The completion (`chat.completion` plus a `heady` object), or with `\"stream\": true` server-sent `chat.completion.chunk` events ending `data: [DONE]`. Headers: `X-Heady-Provider`, `X-Heady-Group`, `X-Heady-Cache`, `Server-Timing`.",
        "content": {
            "application/json": {"schema": schema("ChatCompletion")},
            "text/event-stream": {"schema": {"type": "string"}}
        }
    })
}

fn query(name: &str, description: &str, schema: Value, required: bool) -> Value {
    json!({"name": name, "in": "query", "required": required, "description": description, "schema": schema})
}

/// Every operation's description. The parity test holds this list and the route table equal.
pub(crate) fn operations() -> Vec<Op> {
    use Method as M;
    let op = |method: Method,
              path: &'static str,
              id: &'static str,
              tag: &'static str,
              summary: &'static str,
              description: &'static str| Op {
        method,
        path,
        id,
        tag,
        summary,
        description,
        path_params: Vec::new(),
        query: Vec::new(),
        body: None,
        ok: Vec::new(),
        errors: &[],
    };
    let account_id = (
        "id",
        "The account's id (`acct_` and 24 characters).",
        "acct_3kq7x2c4m5n6p7r2s3t4u5v6",
    );
    let chat_example =
        json!({"model": "heady", "messages": [{"role": "user", "content": "Say hello"}]});
    vec![
        // openai
        Op {
            body: json_body("ChatCompletionRequest", chat_example),
            ok: vec![("200", chat_answer())],
            errors: &[404, 422, 502, 503],
            ..op(M::POST, "/v1/chat/completions", "createChatCompletion", "openai", "Create a chat completion",
                "OpenAI's chat completions through the HCFP pipeline: the conductor picks the service group, the brain router a provider (with fallback and retries). `model` `heady` lets the router choose; a provider's model pins it. Fields Heady does not check are passed on to the provider unchanged; `heady` (Heady's own options) is taken out.")
        },
        Op {
            body: json_body("EmbeddingsRequest", json!({"model": "heady", "input": ["hello"]})),
            ok: vec![("200", json_answer("OpenAI's `list` of embeddings.", "EmbeddingsResponse"))],
            errors: &[404, 422, 502],
            ..op(M::POST, "/v1/embeddings", "createEmbeddings", "openai", "Create embeddings",
                "Embeddings from the configured embedder: a string, strings, a token array or token arrays (up to 2,048 inputs).")
        },
        Op {
            ok: vec![("200", json_answer("`heady` and each configured provider's model.", "ModelList"))],
            ..op(M::GET, "/v1/models", "listModels", "openai", "List models", "The models a request may name.")
        },
        // brain
        Op {
            body: json_body("BrainChatRequest", json!({"message": "My name is Ada.", "session_id": "s1"})),
            ok: vec![("200", chat_answer())],
            errors: &[404, 422, 502, 503],
            ..op(M::POST, "/api/brain/chat", "brainChat", "brain", "Chat (the seed's route)",
                "An OpenAI chat request, or `{message, session_id?, stream?}`; with a session, the account's earlier turns are recalled from memory.")
        },
        Op {
            path_params: vec![("action", "A conductor action (`GET /api/conductor/groups` lists them).", "pr_review")],
            body: json_body("ActionRequest", json!({"input": "fn main() {}"})),
            ok: vec![("200", chat_answer())],
            errors: &[404, 422, 502, 503],
            ..op(M::POST, routes::ACTION_ROUTE, "runAction", "brain", "Run a conductor action",
                "Any action of the service-group table, dispatched to its group's providers. Free callers may run `chat`, `complete`, `search` and `analyze`; the other actions need Pro (403 `upgrade_required`). An unknown action is 404 `unknown_action`.")
        },
        Op {
            ok: vec![("200", json_answer("Per provider: breaker state, calls, recent success rate, last error, drift; learned paths; concurrency.", "Providers"))],
            ..op(M::GET, "/api/brain/providers", "listProviders", "brain", "Provider health", "The brain router's view of its providers.")
        },
        // memory
        Op {
            body: json_body("MemoryInsert", json!({"content": "How do I reset my password?", "role": "user", "session_id": "s1", "metadata": {"lang": "en"}})),
            ok: vec![("200", json_answer("The new row's id, or the batch's ids in order.", "MemoryInserted"))],
            errors: &[413, 422, 502],
            ..op(M::POST, "/api/memory/vectors", "insertVector", "memory", "Store rows (insertVector)",
                "One row, or `{items: [...]}` (all or nothing, up to `memory.max_batch`). The configured embedder computes an embedding when none is given; an embedding is `memory.dim` finite numbers, or the base64 of their little-endian float32 bytes.")
        },
        Op {
            body: json_body("MemorySearch", json!({"text": "password reset", "top_k": 5})),
            ok: vec![("200", json_answer("The nearest rows by cosine, best first, and how they were found (`exact` or `hnsw`).", "MemorySearchAnswer"))],
            errors: &[422, 502],
            ..op(M::POST, "/api/memory/search", "similaritySearch", "memory", "Search rows (similaritySearch)",
                "By `text` (embedded) or by `embedding`, among the account's rows; optionally one session. Operators (RESTRICTED) may search `all_owners` or one named `owner`; such searches are logged.")
        },
        Op {
            body: json_body("ZoneRequest", json!({"text": "password reset"})),
            ok: vec![("200", json_answer("The octant of the text's embedding and its coordinates.", "Zone"))],
            errors: &[502],
            ..op(M::POST, "/api/memory/zone", "getZoneForQuery", "memory", "Vector zone of a text (getZoneForQuery)", "Reads and stores no rows.")
        },
        Op {
            ok: vec![("200", json_answer("The account's totals and the index's state.", "MemoryStats"))],
            ..op(M::GET, "/api/memory/stats", "getStats", "memory", "Memory statistics (getStats)",
                "The account's rows, sessions, first and last timestamps; the dimension, the index's kind and state (its size and memory for RESTRICTED callers only), the embedder.")
        },
        Op {
            ok: vec![("200", json_answer("The account's sessions, latest first.", "MemorySessions"))],
            ..op(M::GET, "/api/memory/sessions", "listSessions", "memory", "List sessions", "The account's sessions with their row counts and time range.")
        },
        Op {
            path_params: vec![("id", "The session id.", "s1")],
            ok: vec![("200", json_answer("The session and how many rows were deleted.", "SessionDeleted"))],
            ..op(M::DELETE, "/api/memory/sessions/{id}", "deleteSession", "memory", "Delete a session", "Deletes the session's rows; 404 when the account has no such session.")
        },
        Op {
            query: vec![query("confirm", "Must be `true`: this deletes every row of the account.", json!({"type": "string", "enum": ["true"]}), true)],
            ok: vec![("200", json_answer("How many rows were deleted.", "Deleted"))],
            errors: &[400],
            ..op(M::DELETE, "/api/memory", "deleteMemory", "memory", "Delete all of the account's memory", "Every row of the account; 400 without `confirm=true`.")
        },
        // conductor
        Op {
            ok: vec![("200", json_answer("The groups with their weights, concurrency shares and actions.", "Groups"))],
            ..op(M::GET, "/api/conductor/groups", "listGroups", "conductor", "List service groups", "The task router's table.")
        },
        Op {
            body: json_body("RouteRequest", json!({"action": "pr_review", "text": "review this diff"})),
            ok: vec![("200", json_answer("The group, its weight, the reason, the zone (with `text`) and the layers consulted.", "Decision"))],
            errors: &[502],
            ..op(M::POST, "/api/conductor/route", "routeAction", "conductor", "Route an action",
                "What the conductor would do with an action, without running it; an unknown action is 400 `unknown_action`.")
        },
        // account
        Op {
            ok: vec![("200", json_answer("The key's account.", "MyAccount"))],
            ..op(M::GET, "/api/account", "getAccount", "account", "The caller's account", "Any valid key; anonymous callers get 401.")
        },
        Op {
            body: json_body("AccountSelfChange", json!({"semantic_cache": true})),
            ok: vec![("200", json_answer("The account as changed.", "MyAccount"))],
            ..op(M::PATCH, "/api/account", "updateAccount", "account", "Change the caller's account",
                "Opts the account in to or out of the semantic cache; any other field is 400.")
        },
        Op {
            query: vec![
                query("from", "First UTC day (`YYYY-MM-DD`); default the first of this month.", json!({"type": "string", "format": "date"}), false),
                query("to", "Last UTC day, included (at most 366 days after `from`); default today.", json!({"type": "string", "format": "date"}), false),
                query("account", "Another account's id: RESTRICTED keys only.", json!({"type": "string"}), false),
            ],
            ok: vec![("200", json_answer("Usage by day and model, by model, and in total.", "UsageReport"))],
            errors: &[400],
            ..op(M::GET, "/api/account/usage", "getUsage", "account", "The account's usage",
                "Requests and tokens per UTC day and model (the provider's counts, or a tokenizer's estimate).")
        },
        // billing
        Op {
            body: json_body("CheckoutRequest", json!({"tier": "pro"})),
            ok: vec![("200", json_answer("The Stripe Checkout Session: send the user to `url`.", "StripeSession"))],
            errors: &[409, 502, 503],
            ..op(M::POST, "/api/billing/checkout", "createCheckout", "billing", "Buy a tier",
                "A Stripe Checkout Session for the account; 409 when its subscription is live; 503 `billing_not_configured` without `[billing]`.")
        },
        Op {
            ok: vec![("200", json_answer("The Billing Portal session: send the user to `url`.", "StripeSession"))],
            errors: &[409, 502, 503],
            ..op(M::POST, "/api/billing/portal", "createPortal", "billing", "Manage the subscription",
                "A Stripe Billing Portal session; 409 before the account has a Stripe customer.")
        },
        Op {
            body: Some(json!({
                "required": true,
                "description": "A Stripe event, signed with `Stripe-Signature`.",
                "content": {"application/json": {"schema": schema("StripeEvent")}}
            })),
            ok: vec![("200", json_answer("What the event did.", "WebhookAnswer"))],
            errors: &[503],
            ..op(M::POST, "/api/billing/webhook", "stripeWebhook", "billing", "Stripe's webhook",
                "Verified exactly as Stripe's libraries do (400 `invalid_signature`), idempotent by event id, order-safe. Not rate limited per address; bad signatures count as failed authentication.")
        },
        // admin
        Op {
            ok: vec![("200", json_answer("Every account.", "AccountList"))],
            ..op(M::GET, "/api/admin/accounts", "listAccounts", "admin", "List accounts", "")
        },
        Op {
            body: json_body("NewAccount", json!({"name": "carol", "tier": "pro", "clearance": "internal"})),
            ok: vec![("201", json_answer("The new account.", "Account"))],
            errors: &[409],
            ..op(M::POST, "/api/admin/accounts", "createAccount", "admin", "Create an account", "A taken name is 409.")
        },
        Op {
            path_params: vec![account_id],
            ok: vec![("200", json_answer("The account and its keys.", "AccountWithKeys"))],
            ..op(M::GET, "/api/admin/accounts/{id}", "getAdminAccount", "admin", "Show an account", "")
        },
        Op {
            path_params: vec![account_id],
            body: json_body("AccountChange", json!({"tier": "enterprise"})),
            ok: vec![("200", json_answer("The account as changed.", "Account"))],
            ..op(M::PATCH, "/api/admin/accounts/{id}", "changeAccount", "admin", "Change an account",
                "Tier, clearance, status (`active`, `disabled`) or the semantic-cache opt-in.")
        },
        Op {
            path_params: vec![account_id],
            ok: vec![("200", json_answer("The account's keys (never their secrets).", "KeyList"))],
            ..op(M::GET, "/api/admin/accounts/{id}/keys", "listKeys", "admin", "List an account's keys", "")
        },
        Op {
            path_params: vec![account_id],
            body: json_body("NewKey", json!({"label": "ci", "expires": "30d", "models": ["llama3.2"]})),
            ok: vec![("201", json_answer("The key with its secret, shown this once.", "CreatedKey"))],
            ..op(M::POST, "/api/admin/accounts/{id}/keys", "createKey", "admin", "Mint an API key",
                "A bearer key `hk_...`; optional expiry (`30d`, `12h`, or an RFC 3339 time) and model allowlist.")
        },
        Op {
            path_params: vec![account_id],
            body: json_body("NewPqKey", json!({"public_key": "<base64 of the 1,952-byte ML-DSA-65 public key>", "label": "signer"})),
            ok: vec![("201", json_answer("The key record; `id` is the `keyid` to sign with.", "KeyRecord"))],
            ..op(M::POST, "/api/admin/accounts/{id}/pq-keys", "registerPqKey", "admin", "Register a PQC API key",
                "An ML-DSA-65 public key whose signatures (RFC 9421) authenticate the account's requests; Enterprise accounts only (403 `upgrade_required`).")
        },
        Op {
            path_params: vec![("id", "The key's public id (16 hex digits).", "3f9c0a7d12e4b856")],
            ok: vec![("200", json_answer("The key record with `revoked_at`.", "KeyRecord"))],
            ..op(M::DELETE, "/api/admin/keys/{id}", "revokeKey", "admin", "Revoke a key", "")
        },
        // mcp
        Op {
            body: Some(json!({
                "required": true,
                "content": {"application/json": {
                    "schema": schema("JsonRpcMessage"),
                    "example": {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "1"}}}
                }}
            })),
            ok: vec![
                ("200", json!({
                    "description": "The JSON-RPC answer; `initialize` opens a session and answers `Mcp-Session-Id`.",
                    "content": {"application/json": {"schema": schema("JsonRpcMessage")}}
                })),
                ("202", json!({"description": "A notification or a response was accepted."})),
            ],
            ..op(M::POST, "/mcp", "mcpPost", "mcp", "Send an MCP message",
                "One JSON-RPC message of the Model Context Protocol; the tools call the routes of this API as the key's account. `GET /mcp` is 405.")
        },
        Op {
            ok: vec![("204", json!({"description": "The session ended."}))],
            ..op(M::DELETE, "/mcp", "mcpDelete", "mcp", "End an MCP session",
                "With `Mcp-Session-Id`; 404 when the account has no such session.")
        },
        // discord
        Op {
            body: Some(json!({
                "required": true,
                "description": "A Discord interaction, signed by Discord: `X-Signature-Ed25519` over `X-Signature-Timestamp` followed by this body.",
                "content": {"application/json": {"schema": {"type": "object", "required": ["type"]}, "example": {"type": 1, "id": "1", "application_id": "123456789012345678", "token": "t", "version": 1}}}
            })),
            ok: vec![("200", json!({
                "description": "The interaction response: `{\"type\":1}` to a PING, `{\"type\":5}` (deferred; the answer follows through Discord's webhook) to `/ask`, `{\"type\":4,...}` (a message) to `/search`.",
                "content": {"application/json": {"schema": {"type": "object", "required": ["type"], "properties": {"type": {"type": "integer"}}}}}
            }))],
            errors: &[400, 401, 503],
            ..op(M::POST, "/discord/interactions", "discordInteraction", "discord", "Discord's interactions endpoint",
                "For Discord only. The signature is checked before anything else (401 `invalid_discord_signature` when it is missing, malformed, more than 300 s old or does not verify); slash commands `/ask` and `/search` run as the Discord user's linked account, or anonymously.")
        },
        Op {
            ok: vec![
                ("200", json!({"description": "A form where the user pastes a Heady API key (HTML, no scripts).", "content": {"text/html": {"schema": {"type": "string"}}}})),
                ("303", json!({"description": "With `Authorization: Bearer hk_...`: to Discord's authorize URL (`identify` scope) with a fresh `state` and the cookie binding it to this browser."})),
            ],
            errors: &[401, 503],
            ..op(M::GET, "/discord/login", "discordLoginPage", "discord", "Link a Discord user: start",
                "The page where a Heady account's owner starts linking their Discord user.")
        },
        Op {
            body: Some(json!({
                "required": true,
                "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["key"], "properties": {"key": {"type": "string", "description": "A Heady API key (`hk_...`)."}}}}}
            })),
            ok: vec![("303", json!({"description": "To Discord's authorize URL with a fresh `state` (single use, ten minutes) and the cookie that binds it to this browser."}))],
            errors: &[400, 401, 415, 503],
            ..op(M::POST, "/discord/login", "discordLogin", "discord", "Link a Discord user: the key",
                "The key is checked as the defense checks one (failed attempts count per address); it never appears in a URL or a log.")
        },
        Op {
            query: vec![
                query("code", "Discord's authorization code.", json!({"type": "string"}), false),
                query("state", "The `state` this server issued.", json!({"type": "string"}), false),
                query("error", "Discord's error (`access_denied` when the user declined).", json!({"type": "string"}), false),
            ],
            ok: vec![("200", json!({"description": "Linked: a page naming the Discord user.", "content": {"text/html": {"schema": {"type": "string"}}}}))],
            errors: &[400, 403, 502, 503],
            ..op(M::GET, "/discord/callback", "discordCallback", "discord", "Link a Discord user: Discord's redirect",
                "The state must be unused, at most ten minutes old, and come back to the browser that got its cookie; the code is exchanged, the Discord user read and linked to the account. Discord's access token is not kept.")
        },
        Op {
            ok: vec![("200", json_answer("Whether a Discord user was linked and is no longer.", "DiscordUnlinked"))],
            ..op(M::DELETE, "/api/account/discord", "unlinkDiscord", "account", "Unlink the account's Discord user",
                "The linked Discord user's commands run anonymously from now on.")
        },
        // edge
        Op {
            ok: vec![("200", json_answer("Who the origin takes the caller to be; `ttl_secs`: how long the edge may use the answer.", "IdentityAnswer"))],
            ..op(M::GET, "/api/identity", "getIdentity", "edge", "Who am I",
                "The edge asks this on a session-cache miss; any client may.")
        },
        Op {
            path_params: vec![("keyid", "The PQC API key's id.", "0123456789abcdef")],
            ok: vec![("200", json_answer("The key's account as the identity answer, plus its public key.", "PqKeyAnswer"))],
            ..op(M::GET, "/api/identity/pq-keys/{keyid}", "getPqKeyHolder", "edge", "A PQC API key's holder",
                "The edge's own lookup: answered only to a request the edge signed (401 `edge_required` otherwise); the edge passes no client's request here.")
        },
        Op {
            body: Some(json!({
                "required": true,
                "description": "The edge's hello.",
                "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}
            })),
            ok: vec![("200", json!({
                "description": "The origin's welcome, carrying a session ticket.",
                "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}
            }))],
            ..op(M::POST, "/api/tunnel/handshake", "tunnelHandshake", "edge", "Tunnel session handshake",
                "The post-quantum hybrid handshake that opens an edge session (X-Wing, ML-DSA-65 + Ed25519); authenticated by its own signatures, so it needs no edge signature and is not rate limited. Refusals are the `tunnel_*` codes.")
        },
        // operations
        Op {
            ok: vec![("200", json_answer("Always, while the daemon runs.", "Health"))],
            ..op(M::GET, "/health", "health", "operations", "Liveness", "")
        },
        Op {
            ok: vec![
                ("200", json_answer("Every dependency answers.", "Ready")),
                ("503", json_answer("A dependency is down: `checks` says which.", "Ready")),
            ],
            ..op(M::GET, "/ready", "ready", "operations", "Readiness",
                "DuckDB, and Redis and PostgreSQL when configured.")
        },
        Op {
            ok: vec![("200", json!({
                "description": "Prometheus metrics (OpenMetrics text).",
                "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}
            }))],
            ..op(M::GET, "/metrics", "metrics", "operations", "Metrics", "")
        },
        // reference
        Op {
            ok: vec![
                ("200", json!({
                    "description": "This reference, rendered from the document (HTML, no scripts).",
                    "content": {"text/html": {"schema": {"type": "string"}}}
                })),
                ("404", json!({"description": "On a property that is not an API property (admin, Discord): nothing is served at `/`.", "content": {"application/json": {"schema": schema("ErrorBody")}}})),
            ],
            ..op(M::GET, "/", "reference", "reference", "The API reference",
                "On an API property (headyapi.com, headymcp.com) and on the daemon itself.")
        },
        Op {
            ok: vec![("200", json!({
                "description": "This document.",
                "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "info", "paths"]}}}
            }))],
            ..op(M::GET, DOCUMENT_PATH, "openapiDocument", "reference", "The OpenAPI document", "OpenAPI 3.1, generated from the origin's route table.")
        },
        Op {
            ok: vec![("200", json!({
                "description": "The reference page's stylesheet.",
                "content": {"text/css": {"schema": {"type": "string"}}}
            }))],
            ..op(M::GET, STYLESHEET_PATH, "referenceStylesheet", "reference", "The reference's stylesheet", "")
        },
    ]
}

/// The reusable schemas: request and answer bodies as the handlers read and write them.
fn schemas() -> Value {
    let codes: Vec<String> = ErrorCode::ALL.iter().map(|c| c.to_string()).collect();
    let tier = json!({"type": "string", "enum": ["free", "pro", "enterprise"]});
    let class =
        json!({"type": "string", "enum": ["PUBLIC", "INTERNAL", "PROPRIETARY", "RESTRICTED"]});
    let int = json!({"type": "integer"});
    let opt_int = json!({"type": ["integer", "null"]});
    let string = json!({"type": "string"});
    let embedding = json!({
        "description": "`memory.dim` finite numbers, not all zero; or the base64 of their little-endian float32 bytes.",
        "oneOf": [{"type": "array", "items": {"type": "number"}, "minItems": 1}, {"type": "string", "contentEncoding": "base64"}]
    });
    let usage_line = json!({
        "type": "object",
        "required": ["requests", "prompt_tokens", "completion_tokens", "total_tokens", "estimated", "estimated_requests"],
        "properties": {
            "day": {"type": "string", "format": "date"}, "model": string,
            "requests": int, "prompt_tokens": int, "completion_tokens": int, "total_tokens": int,
            "estimated": {"type": "boolean", "description": "Some of it was counted by a tokenizer (the provider reported no usage)."},
            "estimated_requests": int
        }
    });
    let memory_item = json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["content"],
        "properties": {
            "content": {"type": "string", "minLength": 1},
            "embedding": embedding,
            "role": {"type": "string", "enum": ["user", "assistant", "system", "tool"], "default": "user"},
            "session_id": string,
            "metadata": {"type": "object"},
            "token_count": {"type": "integer", "minimum": 0}
        }
    });
    let message = json!({
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
            "content": {"description": "A string, or content parts (text, image_url, input_audio, file).", "type": ["string", "array", "null"]},
            "name": string,
            "tool_calls": {"type": "array"},
            "tool_call_id": string
        }
    });
    json!({
        "ErrorBody": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": schema("ApiError")},
            "description": "Every error, at the origin and at the edge."
        },
        "ApiError": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": codes, "description": "Stable and machine-readable (`heady_shared::ErrorCode`)."},
                "message": {"type": "string", "description": "What to change; a bad field is named."},
                "retry_after": {"type": "integer", "minimum": 0, "description": "Seconds; also sent as `Retry-After`."},
                "request_id": {"type": "string", "description": "The request's id (`X-Request-Id`): quote it when reporting a failure."},
                "type": {"type": "string", "description": "A provider's refusal passed on: its error type."},
                "param": {"type": "string", "description": "A provider's refusal passed on: the field at fault."},
                "upstream_code": {"type": "string", "description": "A provider's refusal passed on: its own code."}
            }
        },
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "description": "OpenAI's chat request. Checked: the fields below; other OpenAI parameters pass on unchanged.",
            "properties": {
                "model": {"type": "string", "description": "`heady` lets the router choose; a provider's model pins it."},
                "messages": {"type": "array", "items": message, "minItems": 1},
                "stream": {"type": "boolean"},
                "stream_options": {"type": "object"},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "top_p": {"type": "number", "minimum": 0, "maximum": 1},
                "max_tokens": {"type": "integer", "minimum": 1},
                "max_completion_tokens": {"type": "integer", "minimum": 1},
                "n": {"type": "integer", "minimum": 1, "maximum": 128},
                "stop": {"type": ["string", "array", "null"]},
                "tools": {"type": "array", "items": {"type": "object"}},
                "tool_choice": {"type": ["string", "object"]},
                "response_format": {"type": "object"},
                "heady": {"type": "object", "description": "Heady's own options (`{\"cache\": ...}`); never passed on."}
            }
        },
        "ChatCompletion": {
            "type": "object",
            "required": ["object", "choices"],
            "properties": {
                "id": string,
                "object": {"const": "chat.completion"},
                "created": int,
                "model": string,
                "choices": {"type": "array", "items": {
                    "type": "object",
                    "required": ["index", "message"],
                    "properties": {"index": int, "message": message, "finish_reason": {"type": ["string", "null"]}}
                }},
                "usage": {"type": "object"},
                "heady": {"type": "object", "description": "The action, group, zone, provider, plan, attempts, memory and stage timings."}
            }
        },
        "BrainChatRequest": {
            "oneOf": [
                schema("ChatCompletionRequest"),
                {
                    "type": "object",
                    "required": ["message"],
                    "properties": {"message": {"type": "string", "minLength": 1}, "session_id": string, "stream": {"type": "boolean"}}
                }
            ]
        },
        "ActionRequest": {
            "type": "object",
            "description": "`input`, `message` or `messages` (an OpenAI chat request), with `session_id` and `stream`.",
            "properties": {"input": string, "message": string, "messages": {"type": "array", "items": message}, "session_id": string, "stream": {"type": "boolean"}}
        },
        "EmbeddingsRequest": {
            "type": "object",
            "required": ["input"],
            "properties": {
                "input": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
                    {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                    {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}, "minItems": 1, "maxItems": 2048}
                ]},
                "model": {"type": "string", "description": "`heady` or `heady-embed` name the configured embedder."},
                "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
                "encoding_format": {"type": "string", "enum": ["float", "base64"]},
                "user": string
            }
        },
        "EmbeddingsResponse": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {
                    "type": "object",
                    "required": ["object", "index", "embedding"],
                    "properties": {
                        "object": {"const": "embedding"},
                        "index": int,
                        "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string", "contentEncoding": "base64"}]}
                    }
                }},
                "model": string,
                "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"], "properties": {"prompt_tokens": int, "total_tokens": int}}
            }
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "object", "created", "owned_by"],
                    "properties": {"id": string, "object": {"const": "model"}, "created": int, "owned_by": string}
                }}
            }
        },
        "Providers": {"type": "object", "description": "The brain router's state: providers, learned paths, concurrency."},
        "MemoryItem": memory_item,
        "MemoryInsert": {
            "oneOf": [
                schema("MemoryItem"),
                {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["items"],
                    "properties": {"items": {"type": "array", "items": schema("MemoryItem"), "minItems": 1}}
                }
            ]
        },
        "MemoryInserted": {
            "oneOf": [
                {"type": "object", "required": ["id"], "properties": {"id": string}, "additionalProperties": false},
                {"type": "object", "required": ["ids"], "properties": {"ids": {"type": "array", "items": string}}, "additionalProperties": false}
            ]
        },
        "MemorySearch": {
            "type": "object",
            "additionalProperties": false,
            "description": "`text` or `embedding`, not both.",
            "properties": {
                "text": {"type": "string", "minLength": 1},
                "embedding": embedding,
                "top_k": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10},
                "session_id": string,
                "all_owners": {"type": "boolean", "description": "RESTRICTED keys: search every account."},
                "owner": {"type": "string", "description": "RESTRICTED keys: search this account."}
            }
        },
        "MemorySearchAnswer": {
            "type": "object",
            "required": ["results", "search"],
            "properties": {
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "score", "content", "role", "ts", "session_id", "metadata"],
                    "properties": {
                        "id": string, "score": {"type": "number"}, "content": string, "role": string,
                        "ts": {"type": "integer", "description": "Unix milliseconds."},
                        "session_id": {"type": ["string", "null"]},
                        "metadata": {"type": ["object", "null"]},
                        "owner": {"type": "string", "description": "Only in an operator's search across owners."}
                    }
                }},
                "search": {"type": "string", "enum": ["exact", "hnsw"]}
            }
        },
        "ZoneRequest": {
            "type": "object", "additionalProperties": false, "required": ["text"],
            "properties": {"text": {"type": "string", "minLength": 1}}
        },
        "Zone": {
            "type": "object",
            "required": ["zone", "coordinates"],
            "properties": {
                "zone": {"type": "integer", "minimum": 0, "maximum": 7},
                "coordinates": {"type": "object", "required": ["x", "y", "z"], "properties": {"x": {"type": "number"}, "y": {"type": "number"}, "z": {"type": "number"}}}
            }
        },
        "MemoryStats": {
            "type": "object",
            "required": ["total_vectors", "sessions", "first_ts", "last_ts", "dim", "index", "embedder"],
            "properties": {
                "total_vectors": int, "sessions": int, "first_ts": opt_int, "last_ts": opt_int, "dim": int,
                "index": {"type": "object", "required": ["kind", "state", "pending"], "properties": {
                    "kind": string, "state": string, "pending": int,
                    "size": {"type": "integer", "description": "RESTRICTED callers only."},
                    "memory_bytes": {"type": "integer", "description": "RESTRICTED callers only."}
                }},
                "embedder": string
            }
        },
        "MemorySessions": {
            "type": "object",
            "required": ["sessions"],
            "properties": {"sessions": {"type": "array", "items": {
                "type": "object",
                "required": ["session_id", "rows", "first_ts", "last_ts"],
                "properties": {"session_id": string, "rows": int, "first_ts": int, "last_ts": int}
            }}}
        },
        "SessionDeleted": {"type": "object", "required": ["session_id", "deleted"], "properties": {"session_id": string, "deleted": int}},
        "Deleted": {"type": "object", "required": ["deleted"], "properties": {"deleted": int}},
        "Groups": {
            "type": "object",
            "required": ["groups"],
            "properties": {"groups": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "weight", "share", "actions"],
                "properties": {"name": string, "weight": {"type": "number"}, "share": {"type": "number"}, "actions": {"type": "array", "items": string}}
            }}}
        },
        "RouteRequest": {
            "type": "object", "additionalProperties": false, "required": ["action"],
            "properties": {"action": {"type": "string", "minLength": 1}, "text": {"type": "string", "minLength": 1}}
        },
        "Decision": {
            "type": "object",
            "required": ["action", "group", "weight", "reason", "layers"],
            "properties": {
                "action": string, "group": string, "weight": {"type": "number"}, "reason": string,
                "zone": schema("Zone"),
                "layers": {"type": "array", "items": {"type": "object", "required": ["layer", "result"], "properties": {"layer": string, "result": string}}}
            }
        },
        "DiscordUnlinked": {
            "type": "object",
            "required": ["unlinked"],
            "properties": {"unlinked": {"type": "boolean"}}
        },
        "MyAccount": {
            "type": "object",
            "required": ["id", "name", "tier", "clearance", "subscription", "semantic_cache"],
            "properties": {
                "id": string, "name": string, "tier": tier, "clearance": class,
                "subscription": {"oneOf": [{"type": "null"}, {
                    "type": "object",
                    "required": ["status"],
                    "properties": {"status": string, "current_period_end": opt_int, "past_due_since": int}
                }]},
                "semantic_cache": {"type": "boolean"},
                "discord": {"description": "The linked Discord user, or null.", "oneOf": [{"type": "null"}, {
                    "type": "object",
                    "required": ["user_id", "username", "linked_at"],
                    "properties": {"user_id": string, "username": string, "linked_at": int}
                }]}
            }
        },
        "AccountSelfChange": {
            "type": "object", "additionalProperties": false, "required": ["semantic_cache"],
            "properties": {"semantic_cache": {"type": "boolean"}}
        },
        "UsageLine": usage_line,
        "UsageReport": {
            "type": "object",
            "required": ["account", "from", "to", "days", "models", "totals"],
            "properties": {
                "account": string, "from": {"type": "string", "format": "date"}, "to": {"type": "string", "format": "date"},
                "days": {"type": "array", "items": schema("UsageLine")},
                "models": {"type": "array", "items": schema("UsageLine")},
                "totals": schema("UsageLine")
            }
        },
        "CheckoutRequest": {
            "type": "object", "additionalProperties": false, "required": ["tier"],
            "properties": {"tier": {"type": "string", "enum": ["pro", "enterprise"]}}
        },
        "StripeSession": {"type": "object", "required": ["id", "url"], "properties": {"id": string, "url": {"type": "string", "format": "uri"}}},
        "StripeEvent": {"type": "object", "required": ["id", "type"], "properties": {"id": string, "type": string, "created": int, "data": {"type": "object"}}},
        "WebhookAnswer": {
            "type": "object",
            "required": ["received", "event", "type", "outcome", "reason"],
            "properties": {"received": {"const": true}, "event": string, "type": string, "outcome": string, "reason": {"type": ["string", "null"]}}
        },
        "Account": {
            "type": "object",
            "required": ["id", "name", "tier", "clearance", "status", "created_at", "semantic_cache"],
            "properties": {
                "id": string, "name": string, "tier": tier, "clearance": class,
                "status": {"type": "string", "enum": ["active", "disabled"]},
                "created_at": {"type": "integer", "description": "Unix seconds."},
                "semantic_cache": {"type": "boolean"},
                "stripe_customer_id": string, "stripe_subscription_id": string,
                "subscription": {"type": "object"}
            }
        },
        "AccountList": {"type": "object", "required": ["accounts"], "properties": {"accounts": {"type": "array", "items": schema("Account")}}},
        "AccountWithKeys": {
            "type": "object", "required": ["account", "keys"],
            "properties": {"account": schema("Account"), "keys": {"type": "array", "items": schema("KeyRecord")}}
        },
        "NewAccount": {
            "type": "object", "additionalProperties": false, "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "tier": {"type": "string", "description": "`free` (default), `pro` or `enterprise`."},
                "clearance": {"type": "string", "description": "`public` (default), `internal`, `proprietary` or `restricted`."}
            }
        },
        "AccountChange": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "tier": {"type": "string", "description": "`free`, `pro` or `enterprise`."},
                "clearance": {"type": "string", "description": "`public`, `internal`, `proprietary` or `restricted`."},
                "status": {"type": "string", "enum": ["active", "disabled"]},
                "semantic_cache": {"type": "boolean"}
            }
        },
        "KeyRecord": {
            "type": "object",
            "required": ["id", "account_id", "created_at", "expires_at", "models", "revoked_at", "kind"],
            "properties": {
                "id": {"type": "string", "description": "The public id: safe to log and show."},
                "account_id": string,
                "label": string,
                "created_at": int,
                "expires_at": opt_int,
                "models": {"type": ["array", "null"], "items": string},
                "revoked_at": opt_int,
                "kind": {"type": "string", "enum": ["bearer", "ml-dsa-65"]}
            }
        },
        "KeyList": {"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": schema("KeyRecord")}}},
        "CreatedKey": {
            "allOf": [
                schema("KeyRecord"),
                {"type": "object", "required": ["key"], "properties": {"key": {"type": "string", "pattern": "^hk_[0-9a-f]{64}$", "description": "The secret, shown this once."}}}
            ]
        },
        "NewKey": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "label": string,
                "expires": {"type": "string", "description": "`30d`, `12h`, `90m`, `3600s` or an RFC 3339 time."},
                "models": {"type": "array", "items": string}
            }
        },
        "NewPqKey": {
            "type": "object", "additionalProperties": false, "required": ["public_key"],
            "properties": {"public_key": {"type": "string", "contentEncoding": "base64", "description": "The 1,952-byte ML-DSA-65 public key."}, "label": string}
        },
        "JsonRpcMessage": {
            "type": "object",
            "required": ["jsonrpc"],
            "properties": {"jsonrpc": {"const": "2.0"}, "id": {"type": ["string", "integer"]}, "method": string, "params": {"type": "object"}, "result": {}, "error": {"type": "object"}}
        },
        "IdentityAnswer": {
            "type": "object",
            "required": ["subject", "tier", "clearance", "key_id", "anonymous", "limits", "features", "ttl_secs"],
            "properties": {
                "subject": {"type": "string", "description": "`user:<account id>` for a key, `ip:<address>` otherwise."},
                "tier": tier,
                "clearance": {"type": "string", "enum": ["public", "internal", "proprietary", "restricted"]},
                "key_id": {"type": ["string", "null"]},
                "anonymous": {"type": "boolean"},
                "limits": {"type": "object"},
                "features": {"type": "array", "items": {"type": "string", "enum": ["basic_chat", "search", "analyze", "all_tools", "custom_routing", "pqc_api_keys"]}},
                "ttl_secs": int
            }
        },
        "PqKeyAnswer": {
            "allOf": [
                schema("IdentityAnswer"),
                {"type": "object", "required": ["public_key"], "properties": {"public_key": {"type": "string", "contentEncoding": "base64"}}}
            ]
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "checks": {"type": "object", "required": ["duckdb", "redis", "accounts"], "properties": {"duckdb": string, "redis": string, "accounts": string}}
            }
        }
    })
}

/// The statuses an operation's policy and body imply, besides its own list.
fn error_statuses(op: &Op, policy: &RoutePolicy) -> Vec<u16> {
    let mut out = vec![401];
    if op
        .body
        .as_ref()
        .is_some_and(|b| b["content"].get("application/json").is_some())
    {
        out.extend([400, 413, 415]);
    }
    let limited = policy.limited && crate::defense::is_limited_path(op.path);
    if policy.class > Classification::Public || policy.feature.is_some() || limited {
        out.push(403);
    }
    if op.path.contains('{') {
        out.push(404);
    }
    if limited || policy.keyed {
        out.push(429);
    }
    out.extend(op.errors);
    // Server-side failures are the one `5XX` answer.
    out.retain(|s| *s < 500);
    out.sort_unstable();
    out.dedup();
    out
}

/// A key is required when the policy wants an account or a clearance above PUBLIC; else a
/// key is optional (it raises the tier and the limits).
fn needs_key(policy: &RoutePolicy) -> bool {
    policy.keyed || policy.class > Classification::Public
}

fn feature_name(f: Feature) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A curl command for the operation, with its example body and example parameters.
fn curl(op: &Op, policy: &RoutePolicy) -> String {
    let mut path = op.path.to_string();
    for (name, _, example) in &op.path_params {
        path = path.replace(&format!("{{{name}}}"), example);
    }
    let required: Vec<String> = op
        .query
        .iter()
        .filter(|q| q["required"] == true)
        .filter_map(|q| {
            let v = q["schema"]["enum"][0].as_str()?;
            Some(format!("{}={v}", q["name"].as_str()?))
        })
        .collect();
    let mut url = format!("{SERVER}{path}");
    if !required.is_empty() {
        url = format!("'{url}?{}'", required.join("&"));
    }
    let mut cmd = String::from("curl -s");
    if !(op.method == Method::GET || (op.method == Method::POST && op.body.is_some())) {
        cmd.push_str(&format!(" -X {}", op.method));
    }
    cmd.push(' ');
    cmd.push_str(&url);
    if needs_key(policy) {
        cmd.push_str(" \\\n  -H \"authorization: Bearer $HEADY_KEY\"");
    }
    if let Some(body) = &op.body {
        if let Some(example) = body["content"]["application/json"].get("example") {
            let text = serde_json::to_string(example).unwrap_or_default();
            cmd.push_str(" \\\n  -H 'content-type: application/json'");
            cmd.push_str(&format!(" \\\n  -d '{}'", text.replace('\'', "'\\''")));
        } else if body["content"].get("application/octet-stream").is_some() {
            cmd.push_str(
                " \\\n  -H 'content-type: application/octet-stream' --data-binary @hello.bin",
            );
        } else {
            cmd.push_str(" \\\n  -H 'content-type: application/json' -d @event.json");
        }
    }
    cmd
}

fn operation(op: &Op, policy: &RoutePolicy) -> Value {
    let mut params: Vec<Value> = op
        .path_params
        .iter()
        .map(|(name, description, example)| {
            json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string"}, "example": example})
        })
        .collect();
    params.extend(op.query.iter().cloned());
    let mut responses = Map::new();
    for (status, answer) in &op.ok {
        responses.insert((*status).to_string(), answer.clone());
    }
    for status in error_statuses(op, policy) {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"$ref": format!("#/components/responses/E{status}")}));
    }
    responses.insert("5XX".into(), json!({"$ref": "#/components/responses/E5XX"}));
    let security = if needs_key(policy) {
        json!([{"apiKey": []}])
    } else {
        json!([{}, {"apiKey": []}])
    };
    let mut o = json!({
        "operationId": op.id,
        "tags": [op.tag],
        "summary": op.summary,
        "security": security,
        "responses": responses,
        "x-heady-class": policy.class.to_string(),
        "x-heady-keyed": policy.keyed,
        "x-heady-rate-limited": policy.limited && crate::defense::is_limited_path(op.path),
        "x-codeSamples": [{"lang": "Shell", "label": "curl", "source": curl(op, policy)}],
    });
    if !op.description.is_empty() {
        o["description"] = json!(op.description);
    }
    if !params.is_empty() {
        o["parameters"] = Value::Array(params);
    }
    if let Some(body) = &op.body {
        o["requestBody"] = body.clone();
    }
    if let Some(f) = policy.feature {
        o["x-heady-feature"] = json!(feature_name(f));
    }
    o
}

/// One reusable error answer per status the operations use (`E400`...), and `E5XX`: the
/// codes sent with it.
fn error_responses(statuses: &std::collections::BTreeSet<u16>) -> Value {
    let mut out = Map::new();
    let list = |pick: &dyn Fn(u16) -> bool| -> String {
        ErrorCode::ALL
            .iter()
            .filter(|c| pick(c.default_status()))
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let body = json!({"application/json": {"schema": schema("ErrorBody")}});
    for &status in statuses {
        let codes = list(&|s| s == status);
        let description = match status {
            401 => format!("The key is missing, unknown, revoked or expired, or a signature does not verify: {codes}. `WWW-Authenticate: Bearer`."),
            403 => format!("The key's clearance or tier does not reach the route, or the caller is banned: {codes}."),
            429 => format!("Over a limit: {codes}; `Retry-After` and `RateLimit` headers."),
            _ if codes.is_empty() => "Refused: the operation's description says when.".to_string(),
            _ => format!("Refused: {codes}."),
        };
        out.insert(
            format!("E{status}"),
            json!({"description": description, "content": body}),
        );
    }
    out.insert(
        "E5XX".into(),
        json!({
            "description": format!("A fault on the server's side or a dependency down (the log has the details under `request_id`): {}.", list(&|s| s >= 500)),
            "content": body
        }),
    );
    Value::Object(out)
}

/// The document.
pub fn document() -> Value {
    let descriptions = operations();
    let mut paths = Map::new();
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, policy) in routes::operation_list() {
        let Some(op) = descriptions
            .iter()
            .find(|o| o.method == method && o.path == path)
        else {
            // The parity test names it; the document still lists the route.
            continue;
        };
        statuses.extend(error_statuses(op, &policy));
        let item = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        item[method.as_str().to_ascii_lowercase()] = operation(op, &policy);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Heady API",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "The Heady edge AI gateway's HTTP API: OpenAI-compatible chat and embeddings, vector memory, the conductor, accounts, billing and MCP.",
            "description": "Every route of the origin daemon, generated from its route table. Through the edge the same paths work on every property that reaches the origin (headyapi.com, headymcp.com). Errors are JSON: `{\"error\":{\"code\",\"message\",...}}` with the status that fits; every answer carries `X-Request-Id`. `/api`, `/v1` and `/mcp` answers carry `RateLimit-Policy` and `RateLimit` headers for limited tiers. Each operation's `x-heady-class` is its classification (a key's clearance must reach it), `x-heady-feature` the tier feature it needs, `x-heady-keyed` whether it answers only for an account, `x-heady-rate-limited` whether the request limiter counts it.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "servers": [{"url": SERVER}],
        "tags": TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect::<Vec<_>>(),
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "hk_<64 hex digits>",
                    "description": "An API key (`heady-origin keys create`). Enterprise accounts may instead sign requests with an ML-DSA-65 key (RFC 9421 HTTP Message Signatures)."
                }
            },
            "schemas": schemas(),
            "responses": error_responses(&statuses)
        }
    })
}

/// The document as served, built once.
pub fn document_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| serde_json::to_vec_pretty(&document()).unwrap_or_default())
}

const CACHE: &str = "public, max-age=300";

/// `GET /openapi.json`.
pub async fn document_json(_s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    Ok(Reply::bytes(200, "application/json", document_bytes()).header("cache-control", CACHE))
}

/// `GET /reference.css`.
pub async fn stylesheet(_s: Arc<App>, _c: Ctx) -> Result<Reply, Error> {
    Ok(
        Reply::bytes(200, "text/css; charset=utf-8", reference::STYLESHEET)
            .header("cache-control", CACHE),
    )
}

/// The property host a request is for: the edge's vouched `x-heady-host` on a request whose
/// signature verified, else the request's own `Host` (a client talking to the daemon itself).
fn property_host(c: &Ctx) -> String {
    let header = if c.identity.via_edge {
        heady_shared::wire::header::HOST
    } else {
        http::header::HOST.as_str()
    };
    let host = c
        .headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// `GET /`: the reference on an API property (or the daemon asked directly); other
/// properties (admin, Discord) have nothing at `/`.
pub async fn home(_s: Arc<App>, c: Ctx) -> Result<Reply, Error> {
    let host = property_host(&c);
    let kind = heady_shared::properties::committed()
        .ok()
        .and_then(|p| p.for_host(&host))
        .map(|p| p.kind);
    if kind.is_some_and(|k| k != Kind::Api) {
        return Err(Error::not_found(format!(
            "no route for {} / on {host}",
            c.method
        )));
    }
    let mut reply = Reply::bytes(200, "text/html; charset=utf-8", reference::page())
        .header("cache-control", CACHE);
    for (name, value) in heady_shared::page::SECURITY_HEADERS {
        reply = reply.header(name, value);
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn template_params(path: &str) -> BTreeSet<String> {
        path.split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn every_route_is_described_and_every_description_is_a_route() {
        let routes: BTreeSet<(String, String)> = routes::operation_list()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        let described: Vec<(String, String)> = operations()
            .iter()
            .map(|o| (o.method.to_string(), o.path.to_string()))
            .collect();
        let described_set: BTreeSet<_> = described.iter().cloned().collect();
        assert_eq!(
            described.len(),
            described_set.len(),
            "an operation is described twice"
        );
        let undocumented: Vec<_> = routes.difference(&described_set).collect();
        let stale: Vec<_> = described_set.difference(&routes).collect();
        assert!(
            undocumented.is_empty(),
            "routes without a description: {undocumented:?}"
        );
        assert!(stale.is_empty(), "descriptions without a route: {stale:?}");
        let ids: BTreeSet<&str> = operations().iter().map(|o| o.id).collect();
        assert_eq!(ids.len(), described.len(), "operationIds are unique");
    }

    #[test]
    fn the_document_lists_exactly_the_router_s_operations_with_their_policy() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut in_doc = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, o) in item.as_object().unwrap() {
                in_doc.insert((method.to_ascii_uppercase(), path.clone()));
                let declared: BTreeSet<String> = o["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .filter(|p| p["in"] == "path")
                            .map(|p| p["name"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(
                    declared,
                    template_params(path),
                    "{method} {path}: path parameters"
                );
                assert!(
                    o["responses"]
                        .as_object()
                        .unwrap()
                        .keys()
                        .any(|k| k.starts_with('2')),
                    "{method} {path}: no success answer"
                );
            }
        }
        let routes: BTreeSet<(String, String)> = routes::operation_list()
            .into_iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(in_doc, routes);
        // The policy is the table's, not a copy.
        for (method, path, policy) in routes::operation_list() {
            let o = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert_eq!(
                o["x-heady-class"],
                policy.class.to_string(),
                "{method} {path}"
            );
            assert_eq!(o["x-heady-keyed"], policy.keyed, "{method} {path}");
            let operator = policy.class == Classification::Restricted;
            assert_eq!(
                o["tags"][0] == "admin",
                operator || path.starts_with("/api/admin/"),
                "{method} {path}: operator routes are tagged admin"
            );
            assert_eq!(
                o["security"].as_array().unwrap().len() == 1,
                needs_key(&policy),
                "{method} {path}"
            );
            match policy.feature {
                Some(f) => assert_eq!(o["x-heady-feature"], feature_name(f)),
                None => assert!(o.get("x-heady-feature").is_none()),
            }
        }
        // The MCP endpoint and the edge's own routes are not forgotten.
        for (m, p) in [
            ("post", "/mcp"),
            ("delete", "/mcp"),
            ("post", "/api/tunnel/handshake"),
            ("get", "/api/identity/pq-keys/{keyid}"),
            ("post", routes::ACTION_ROUTE),
        ] {
            assert!(doc["paths"][p][m].is_object(), "{m} {p}");
        }
    }

    #[test]
    fn every_reference_resolves_and_every_tag_is_declared() {
        let doc = document();
        let text = serde_json::to_string(&doc).unwrap();
        let mut refs = 0;
        for piece in text.split("\"$ref\":\"").skip(1) {
            let target = piece.split('"').next().unwrap();
            let pointer = target.strip_prefix('#').unwrap();
            assert!(doc.pointer(pointer).is_some(), "{target} does not resolve");
            refs += 1;
        }
        assert!(refs > 50, "{refs}");
        let tags: BTreeSet<&str> = TAGS.iter().map(|(n, _)| *n).collect();
        for o in operations() {
            assert!(tags.contains(o.tag), "{}: tag {}", o.id, o.tag);
        }
        let codes = &doc["components"]["schemas"]["ApiError"]["properties"]["code"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), ErrorCode::ALL.len());
        assert!(codes.as_array().unwrap().contains(&json!("rate_limited")));
    }

    #[test]
    fn curl_examples_carry_the_key_and_the_body() {
        let doc = document();
        let chat = doc["paths"]["/v1/chat/completions"]["post"]["x-codeSamples"][0]["source"]
            .as_str()
            .unwrap();
        assert!(
            chat.starts_with("curl -s https://headyapi.com/v1/chat/completions"),
            "{chat}"
        );
        assert!(
            chat.contains("-d '{") && chat.contains("\"model\":\"heady\""),
            "{chat}"
        );
        let admin = doc["paths"]["/api/admin/keys/{id}"]["delete"]["x-codeSamples"][0]["source"]
            .as_str()
            .unwrap();
        assert!(
            admin.contains("-X DELETE https://headyapi.com/api/admin/keys/3f9c0a7d12e4b856"),
            "{admin}"
        );
        assert!(admin.contains("Bearer $HEADY_KEY"), "{admin}");
        let wipe = doc["paths"]["/api/memory"]["delete"]["x-codeSamples"][0]["source"]
            .as_str()
            .unwrap();
        assert!(
            wipe.contains("'https://headyapi.com/api/memory?confirm=true'"),
            "{wipe}"
        );
    }
}
