//! The HTTP API: a table of routes, each with a name (the metrics label) and a handler.

pub mod brain;
pub mod conductor;
pub mod health;
pub mod memory;
pub mod openai;

use crate::defense::RoutePolicy;
use crate::error::ApiError;
use crate::server::{Body, Ctx};
use crate::state::AppState;
use heady_shared::Feature;
use http::{Method, Response, StatusCode};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
pub type Handler = fn(Arc<AppState>, Ctx) -> HandlerFuture;

struct RouteEntry {
    method: Method,
    path: &'static str,
    name: &'static str,
    /// Classification and tier feature; README's route table lists them.
    policy: RoutePolicy,
    handler: Handler,
}

/// What routing found for a request.
#[derive(Clone, Copy)]
pub struct Matched {
    /// The metrics label.
    pub name: &'static str,
    pub policy: RoutePolicy,
    pub handler: Handler,
}

fn routes() -> &'static [RouteEntry] {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<RouteEntry>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        use heady_shared::Classification::Internal;
        vec![
            RouteEntry {
                method: Method::GET,
                path: "/api/identity",
                name: "/api/identity",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(health::identity(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/health",
                name: "/health",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(health::health(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/ready",
                name: "/ready",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(health::ready(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/metrics",
                name: "/metrics",
                policy: RoutePolicy::class(Internal),
                handler: |s, c| Box::pin(health::metrics(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/api/memory/vectors",
                name: "/api/memory/vectors",
                policy: RoutePolicy::class(Internal).needs(Feature::AllTools),
                handler: |s, c| Box::pin(memory::insert(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/api/memory/search",
                name: "/api/memory/search",
                policy: RoutePolicy::class(Internal).needs(Feature::Search),
                handler: |s, c| Box::pin(memory::search(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/api/memory/zone",
                name: "/api/memory/zone",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(memory::zone(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/api/memory/stats",
                name: "/api/memory/stats",
                policy: RoutePolicy::class(Internal),
                handler: |s, c| Box::pin(memory::stats(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/api/conductor/groups",
                name: "/api/conductor/groups",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(conductor::groups(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/api/conductor/route",
                name: "/api/conductor/route",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(conductor::route(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/api/brain/chat",
                name: "/api/brain/chat",
                policy: RoutePolicy::PUBLIC.needs(Feature::BasicChat),
                handler: |s, c| Box::pin(brain::chat(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/api/brain/providers",
                name: "/api/brain/providers",
                policy: RoutePolicy::class(Internal),
                handler: |s, c| Box::pin(brain::providers(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/v1/chat/completions",
                name: "/v1/chat/completions",
                policy: RoutePolicy::PUBLIC.needs(Feature::BasicChat),
                handler: |s, c| Box::pin(openai::chat_completions(s, c)),
            },
            RouteEntry {
                method: Method::POST,
                path: "/v1/embeddings",
                name: "/v1/embeddings",
                policy: RoutePolicy::PUBLIC.needs(Feature::Search),
                handler: |s, c| Box::pin(openai::embeddings(s, c)),
            },
            RouteEntry {
                method: Method::GET,
                path: "/v1/models",
                name: "/v1/models",
                policy: RoutePolicy::PUBLIC,
                handler: |s, c| Box::pin(openai::models(s, c)),
            },
        ]
    })
}

/// Every route, for docs and tests: (method, path, policy).
pub fn route_list() -> Vec<(Method, &'static str, RoutePolicy)> {
    routes()
        .iter()
        .map(|r| (r.method.clone(), r.path, r.policy))
        .collect()
}

/// Finds the handler; unknown paths and wrong methods get handlers that answer 404 / 405.
pub fn route(method: &Method, path: &str) -> Matched {
    let mut path_known = false;
    for r in routes() {
        if r.path == path {
            if r.method == method || (method == Method::HEAD && r.method == Method::GET) {
                return Matched {
                    name: r.name,
                    policy: r.policy,
                    handler: r.handler,
                };
            }
            path_known = true;
        }
    }
    if path_known {
        Matched {
            name: "method_not_allowed",
            policy: RoutePolicy::PUBLIC,
            handler: |_, c| Box::pin(method_not_allowed(c)),
        }
    } else if method == Method::POST && is_action_path(path) {
        // Exact routes above win; one more segment under /api/ is a conductor action. Which
        // actions a tier may use is checked in the handler (`Defense::authorize_action`).
        Matched {
            name: "/api/{action}",
            policy: RoutePolicy::PUBLIC.needs(Feature::BasicChat),
            handler: |s, c| Box::pin(brain::action(s, c)),
        }
    } else {
        Matched {
            name: "not_found",
            policy: RoutePolicy::PUBLIC,
            handler: |_, c| Box::pin(not_found(c)),
        }
    }
}

/// `/api/<one segment>`: the conductor's actions (`/api/analyze`, `/api/code`, ...).
fn is_action_path(path: &str) -> bool {
    path.strip_prefix("/api/")
        .is_some_and(|a| !a.is_empty() && !a.contains('/'))
}

async fn not_found(c: Ctx) -> Result<Response<Body>, ApiError> {
    Err(ApiError::not_found(format!(
        "no route for {} {}",
        c.method, c.path
    )))
}

async fn method_not_allowed(c: Ctx) -> Result<Response<Body>, ApiError> {
    let allowed: Vec<&str> = routes()
        .iter()
        .filter(|r| r.path == c.path)
        .map(|r| r.method.as_str())
        .collect();
    Err(ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not accept {}; use {}",
            c.path,
            c.method,
            allowed.join(", ")
        ),
    ))
}

/// POST bodies must be JSON when the client says what they are.
pub fn require_json(c: &Ctx) -> Result<(), ApiError> {
    if let Some(ct) = c.headers.get(http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type must be application/json (got {ct:?})"),
            ));
        }
    }
    Ok(())
}

/// Runs blocking work (DuckDB, the index) off the async runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))
}
