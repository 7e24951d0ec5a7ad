//! The routes: method, path, metrics label, policy (classification and tier feature, listed
//! in docs/api.md) and handler. Unknown paths and wrong methods get 404 / 405. A path may end
//! in one `{param}` segment, which matches any one non-empty segment (the handler reads it).

use super::{discord, mcp, openapi};
use crate::api::{
    accounts, billing, brain, conductor, health, memory, openai, tunnel, usage, Ctx, Handler, Reply,
};
use crate::defense::RoutePolicy;
use crate::error::{Error, ErrorCode};
use heady_shared::Classification::{Internal, Restricted};
use heady_shared::Feature;
use http::Method;

struct RouteEntry {
    method: Method,
    path: &'static str,
    policy: RoutePolicy,
    handler: Handler,
    /// A body limit below `max_body_bytes`.
    max_body: Option<usize>,
}

/// What routing found for a request.
#[derive(Clone, Copy)]
pub struct Matched {
    /// The metrics label.
    pub name: &'static str,
    pub policy: RoutePolicy,
    pub handler: Handler,
    /// A body limit below `max_body_bytes`.
    pub max_body: Option<usize>,
}

macro_rules! route {
    ($method:ident $path:literal, $policy:expr, $handler:path) => {
        route!($method $path, $policy, $handler, None)
    };
    ($method:ident $path:literal, $policy:expr, $handler:path, $max_body:expr) => {
        RouteEntry {
            method: Method::$method,
            path: $path,
            policy: $policy,
            handler: |s, c| Box::pin($handler(s, c)),
            max_body: $max_body,
        }
    };
}

fn routes() -> &'static [RouteEntry] {
    use std::sync::OnceLock;
    static ROUTES: OnceLock<Vec<RouteEntry>> = OnceLock::new();
    let public = RoutePolicy::PUBLIC;
    let internal = RoutePolicy::class(Internal);
    let operator = RoutePolicy::class(Restricted).keyed();
    ROUTES.get_or_init(|| {
        vec![
            route!(GET "/api/identity", public, health::identity),
            route!(GET "/api/identity/pq-keys/{keyid}", public, health::pq_key),
            route!(POST "/api/tunnel/handshake", public, tunnel::handshake),
            route!(GET "/api/account", public.keyed(), accounts::me),
            route!(PATCH "/api/account", public.keyed(), accounts::update_me),
            route!(POST "/api/billing/checkout", public.keyed(), billing::checkout),
            route!(POST "/api/billing/portal", public.keyed(), billing::portal),
            route!(POST "/api/billing/webhook", public.unlimited(), billing::webhook, Some(billing::WEBHOOK_MAX_BYTES)),
            route!(GET "/api/account/usage", public.keyed(), usage::account_usage),
            route!(GET "/api/admin/accounts", operator, accounts::list),
            route!(POST "/api/admin/accounts", operator, accounts::create),
            route!(GET "/api/admin/accounts/{id}", operator, accounts::show),
            route!(PATCH "/api/admin/accounts/{id}", operator, accounts::change),
            route!(GET "/api/admin/accounts/{id}/keys", operator, accounts::keys),
            route!(POST "/api/admin/accounts/{id}/keys", operator, accounts::create_key),
            route!(POST "/api/admin/accounts/{id}/pq-keys", operator, accounts::register_pq_key),
            route!(DELETE "/api/admin/keys/{id}", operator, accounts::revoke_key),
            route!(GET "/", public, openapi::home),
            route!(GET "/openapi.json", public, openapi::document_json),
            route!(GET "/reference.css", public, openapi::stylesheet),
            route!(GET "/health", public, health::health),
            route!(GET "/ready", public, health::ready),
            route!(GET "/metrics", internal, health::metrics),
            route!(POST "/api/memory/vectors", internal.needs(Feature::AllTools), memory::insert),
            route!(POST "/api/memory/search", internal.needs(Feature::Search), memory::search),
            route!(POST "/api/memory/zone", public, memory::zone),
            route!(GET "/api/memory/stats", internal, memory::stats),
            route!(GET "/api/memory/sessions", internal, memory::sessions),
            route!(DELETE "/api/memory/sessions/{id}", internal, memory::delete_session),
            route!(DELETE "/api/memory", internal, memory::delete_all),
            route!(GET "/api/conductor/groups", public, conductor::groups),
            route!(POST "/api/conductor/route", public, conductor::route),
            route!(POST "/api/brain/chat", public.needs(Feature::BasicChat), brain::chat),
            route!(GET "/api/brain/providers", internal, brain::providers),
            route!(POST "/v1/chat/completions", public.needs(Feature::BasicChat), openai::chat_completions),
            route!(POST "/v1/embeddings", public.needs(Feature::Search), openai::embeddings),
            route!(GET "/v1/models", public, openai::models),
            // GET /mcp (a server-to-client stream) is answered 405 by `method_not_allowed`.
            route!(POST "/mcp", public.keyed(), mcp::post),
            route!(DELETE "/mcp", public.keyed(), mcp::delete),
            // The Discord property: Discord's signature authenticates an interaction, an API
            // key the sign-in; commands are limited per Discord user inside the handler.
            route!(POST "/discord/interactions", public.unlimited(), discord::interactions, Some(discord::INTERACTION_MAX_BYTES)),
            route!(GET "/discord/login", public.unlimited(), discord::login_page),
            route!(POST "/discord/login", public.unlimited(), discord::login, Some(discord::LOGIN_MAX_BYTES)),
            route!(GET "/discord/callback", public.unlimited(), discord::callback),
            route!(DELETE "/api/account/discord", public.keyed(), accounts::unlink_discord),
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

/// `POST /api/{action}`: one more segment under `/api/` names a conductor action. Matched
/// after every route of the table.
pub const ACTION_ROUTE: &str = "/api/{action}";
const ACTION_POLICY: RoutePolicy = RoutePolicy::PUBLIC.needs(Feature::BasicChat);

/// Every operation a client can call: the table's routes and the conductor action route
/// (what the OpenAPI document describes).
pub fn operation_list() -> Vec<(Method, &'static str, RoutePolicy)> {
    let mut all = route_list();
    all.push((Method::POST, ACTION_ROUTE, ACTION_POLICY));
    all
}

/// Does `path` fit `pattern`? A `{name}` segment matches any one non-empty segment.
pub fn fits(pattern: &str, path: &str) -> bool {
    if !pattern.contains('{') {
        return pattern == path;
    }
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {}
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Finds the handler for a request.
pub fn route(method: &Method, path: &str) -> Matched {
    let mut path_known = false;
    for r in routes() {
        if fits(r.path, path) {
            if r.method == method || (method == Method::HEAD && r.method == Method::GET) {
                return Matched {
                    name: r.path,
                    policy: r.policy,
                    handler: r.handler,
                    max_body: r.max_body,
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
            max_body: None,
        }
    } else if method == Method::POST && heady_shared::api_paths::action_of(path).is_some() {
        // Exact routes above win; one more segment under /api/ is a conductor action. Which
        // actions a tier may use is checked in the handler (`Defense::authorize_action`).
        Matched {
            name: ACTION_ROUTE,
            policy: ACTION_POLICY,
            handler: |s, c| Box::pin(brain::action(s, c)),
            max_body: None,
        }
    } else {
        Matched {
            name: "not_found",
            policy: RoutePolicy::PUBLIC,
            handler: |_, c| Box::pin(not_found(c)),
            max_body: None,
        }
    }
}

async fn not_found(c: Ctx) -> Result<Reply, Error> {
    Err(Error::not_found(format!(
        "no route for {} {}",
        c.method, c.path
    )))
}

async fn method_not_allowed(c: Ctx) -> Result<Reply, Error> {
    let allowed: Vec<&str> = routes()
        .iter()
        .filter(|r| fits(r.path, &c.path))
        .map(|r| r.method.as_str())
        .collect();
    Err(Error::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not accept {}; use {}",
            c.path,
            c.method,
            allowed.join(", ")
        ),
    )
    .with_headers(vec![("allow", allowed.join(", "))]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_param_segment_matches_one_segment() {
        let p = "/api/memory/sessions/{id}";
        assert!(fits(p, "/api/memory/sessions/s1"));
        assert!(fits(p, "/api/memory/sessions/a%20b"));
        assert!(!fits(p, "/api/memory/sessions/"));
        assert!(!fits(p, "/api/memory/sessions"));
        assert!(!fits(p, "/api/memory/sessions/a/b"));
        assert!(fits("/api/memory", "/api/memory"));
        assert!(!fits("/api/memory", "/api/memory/x"));
        assert_eq!(
            route(&Method::DELETE, "/api/memory/sessions/s1").name,
            "/api/memory/sessions/{id}"
        );
        assert_eq!(
            route(&Method::GET, "/api/memory/sessions/s1").name,
            "method_not_allowed"
        );
    }

    #[test]
    fn patterns_match_one_segment_per_parameter() {
        assert!(fits(
            "/api/admin/accounts/{id}",
            "/api/admin/accounts/acct_x"
        ));
        assert!(!fits("/api/admin/accounts/{id}", "/api/admin/accounts/"));
        assert!(!fits("/api/admin/accounts/{id}", "/api/admin/accounts/a/b"));
        assert!(fits(
            "/api/admin/accounts/{id}/keys",
            "/api/admin/accounts/a/keys"
        ));
        assert!(!fits(
            "/api/admin/accounts/{id}/keys",
            "/api/admin/accounts/a/key"
        ));
        assert_eq!(crate::api::segment("/api/admin/keys/0123", 3), Some("0123"));
        let m = route(&Method::PATCH, "/api/admin/accounts/acct_x");
        assert_eq!(m.name, "/api/admin/accounts/{id}");
        let m = route(&Method::PUT, "/api/admin/accounts/acct_x");
        assert_eq!(m.name, "method_not_allowed");
    }

    #[test]
    fn mcp_is_keyed_limited_and_answers_get_with_405() {
        let path = heady_shared::api_paths::MCP;
        for m in [Method::POST, Method::DELETE] {
            let r = route(&m, path);
            assert_eq!(r.name, path);
            assert!(r.policy.keyed && r.policy.limited);
        }
        assert!(crate::defense::is_limited_path(path));
        assert_eq!(route(&Method::GET, path).name, "method_not_allowed");
        // Every tool calls a route of this table.
        for t in crate::mcp::Tool::ALL {
            let (m, p) = t.route();
            assert_eq!(route(&m, p).name, p, "{}", t.name());
        }
    }

    #[test]
    fn the_discord_routes_are_public_and_bounded_and_limited_per_discord_user_inside() {
        let path = heady_shared::discord::INTERACTIONS_PATH;
        let m = route(&Method::POST, path);
        assert_eq!(m.name, path);
        assert_eq!(m.policy.class, heady_shared::Classification::Public);
        assert!(!m.policy.limited && !m.policy.keyed);
        assert_eq!(m.max_body, Some(discord::INTERACTION_MAX_BYTES));
        assert!(!crate::defense::is_limited_path(path));
        assert_eq!(route(&Method::GET, path).name, "method_not_allowed");
        for (method, path) in [
            (Method::GET, crate::discord::LOGIN_PATH),
            (Method::POST, crate::discord::LOGIN_PATH),
            (Method::GET, crate::discord::CALLBACK_PATH),
        ] {
            assert_eq!(route(&method, path).name, path);
        }
        assert!(route(&Method::DELETE, "/api/account/discord").policy.keyed);
    }

    #[test]
    fn the_stripe_webhook_is_public_unlimited_and_bounded() {
        let path = heady_shared::api_paths::BILLING_WEBHOOK;
        let m = route(&Method::POST, path);
        assert_eq!(m.name, path);
        assert_eq!(m.policy.class, heady_shared::Classification::Public);
        assert!(!m.policy.limited && !m.policy.keyed);
        assert_eq!(m.max_body, Some(crate::api::billing::WEBHOOK_MAX_BYTES));
        let checkout = route(&Method::POST, "/api/billing/checkout");
        assert!(checkout.policy.keyed && checkout.policy.limited);
        assert_eq!(checkout.max_body, None);
    }
}
