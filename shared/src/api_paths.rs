//! API paths both sides route on: what counts as an API request (defended, rate limited,
//! answered in JSON, tunnelled to the origin), and the origin routes the edge calls by name.

/// Prefix of Heady's own API.
pub const API: &str = "/api";
/// Prefix of the OpenAI-compatible API.
pub const OPENAI: &str = "/v1";
/// The Model Context Protocol endpoint (Streamable HTTP): the origin's MCP server, defended
/// and limited like the two API prefixes.
pub const MCP: &str = "/mcp";
/// `GET`: who the origin takes the caller to be ([`crate::identity::IdentityAnswer`]).
pub const IDENTITY: &str = "/api/identity";
/// `GET {PQ_KEY_IDENTITY}/{keyid}`: the account and public key of a PQC API key
/// ([`crate::identity::PqKeyAnswer`]). Asked by the edge only, to verify signed requests
/// itself: the origin answers it only to a request the edge vouches for, and the edge never
/// passes a client's request to it ([`is_edge_only`]).
pub const PQ_KEY_IDENTITY: &str = "/api/identity/pq-keys";
/// `POST`: the tunnel session handshake (a hello in, a welcome out, both
/// `application/octet-stream`; [`crate::tunnel::handshake`]). Authenticated by its own
/// signatures, so neither an edge signature nor the rate limiter applies to it.
pub const TUNNEL_HANDSHAKE: &str = "/api/tunnel/handshake";
/// `POST`: similarity search in the origin's vector memory; the edge's `search` action falls
/// back to it with the same body.
pub const MEMORY_SEARCH: &str = "/api/memory/search";

/// `POST`: Stripe's webhook. Public (its `Stripe-Signature` is its authentication) and not
/// rate limited per client address: the edge passes it through on the ban list alone, the
/// origin counts bad signatures as failed authentication.
pub const BILLING_WEBHOOK: &str = "/api/billing/webhook";

/// The origin path that answers for the PQC API key `keyid`.
pub fn pq_key_identity_path(keyid: &str) -> String {
    format!("{PQ_KEY_IDENTITY}/{keyid}")
}

/// Paths only the edge itself asks the origin: a client's request to one is not passed on.
pub fn is_edge_only(path: &str) -> bool {
    path.strip_prefix(PQ_KEY_IDENTITY)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `/api`, `/v1`, `/mcp` and everything under them.
pub fn is_api_path(path: &str) -> bool {
    [API, OPENAI, MCP].into_iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The conductor action a path names: `/api/<one segment>` (`/api/analyze`, `/api/code`).
pub fn action_of(path: &str) -> Option<&str> {
    path.strip_prefix("/api/")
        .filter(|a| !a.is_empty() && !a.contains('/'))
}

/// The origin path of a conductor action: `/api/{action}`.
pub fn action_path(action: &str) -> String {
    format!("{API}/{action}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_paths_are_the_prefixes_and_below() {
        for p in [
            "/mcp",
            "/mcp/",
            "/api",
            "/api/",
            "/api/chat",
            "/api/memory/search",
            "/v1",
            "/v1/models",
        ] {
            assert!(is_api_path(p), "{p}");
        }
        for p in [
            "/",
            "/apix",
            "/api.json",
            "/v1beta/x",
            "/v2/x",
            "/mcpx",
            "/mcp.json",
            "/health",
            "",
            "api/chat",
        ] {
            assert!(!is_api_path(p), "{p}");
        }
        assert!(is_api_path(IDENTITY) && is_api_path(MEMORY_SEARCH));
        assert!(is_api_path(BILLING_WEBHOOK) && action_of(BILLING_WEBHOOK).is_none());
    }

    #[test]
    fn the_pq_key_lookup_is_the_edge_s_own() {
        let path = pq_key_identity_path("0123456789abcdef");
        assert_eq!(path, "/api/identity/pq-keys/0123456789abcdef");
        assert!(is_api_path(&path) && action_of(&path).is_none());
        assert!(is_edge_only(&path) && is_edge_only(PQ_KEY_IDENTITY));
        for other in [
            IDENTITY,
            "/api/identity/pq-keysx",
            "/api/chat",
            "/api/identity/pq",
        ] {
            assert!(!is_edge_only(other), "{other}");
        }
    }

    #[test]
    fn actions_are_one_segment_under_api() {
        assert_eq!(action_of("/api/code"), Some("code"));
        assert_eq!(action_of("/api/memory/search"), None);
        assert_eq!(action_of("/api/"), None);
        assert_eq!(action_of("/v1/code"), None);
        assert_eq!(action_path("pr_review"), "/api/pr_review");
        assert_eq!(action_of(&action_path("pr_review")), Some("pr_review"));
    }
}
