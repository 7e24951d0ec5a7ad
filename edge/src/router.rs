//! What to do with a request, decided from the property list alone (pure: no I/O).

use crate::site;
use heady_shared::api_paths::{action_of, is_api_path, is_edge_only, BILLING_WEBHOOK};
use heady_shared::discord::INTERACTIONS_PATH;
use heady_shared::properties::{Kind, Properties, Property, Serve};
use heady_shared::GroupTable;

/// Actions the edge may answer itself when the binding they need is present.
pub const EDGE_ACTIONS: [&str; 4] = ["chat", "complete", "embed", "search"];

#[derive(Debug, PartialEq, Eq)]
pub enum Plan<'a> {
    /// A file from Workers Static Assets.
    Asset {
        property: &'a Property,
        asset_path: String,
    },
    /// An external property: redirect to its address ([`Property::external_url`]: the
    /// deployment's setting, read by the shell, or the file's `url`).
    External { property: &'a Property },
    /// `/api/*`, `/v1/*` or `/mcp`: edge defense first, then the conductor or the tunnel.
    Api { property: &'a Property, api: Api },
    /// Pages of an origin-served property (admin UI, Discord sign-in): ban check, then the
    /// tunnel.
    Tunnel { property: &'a Property },
    /// `POST /discord/interactions` on the Discord property: Discord's Ed25519 signature is
    /// checked before anything else; a `PING` is answered here, the rest tunnelled.
    DiscordInteraction { property: &'a Property },
    /// Nobody serves this host (or this path on it).
    NotFound { host: String, json: bool },
    /// A method other than GET/HEAD on a static page.
    MethodNotAllowed { json: bool },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /api/{action}` for an action in the conductor's table.
    Conductor { action: String },
    /// Anything else under `/api/` or `/v1/`, and `/mcp`: tunnelled unchanged.
    Passthrough,
    /// Stripe's webhook: signed by Stripe (the origin verifies it), so tunnelled unchanged on
    /// the ban list alone, without a per-address limit that would throttle Stripe's few
    /// sending addresses.
    Webhook,
}

/// The request facts the plan depends on.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'r> {
    pub host: &'r str,
    pub method: &'r str,
    pub path: &'r str,
    pub accept: &'r str,
}

/// `Host` without port or trailing dot, lowercase.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if let Some(end) = host.strip_prefix('[').and_then(|h| h.find(']')) {
        // An IPv6 literal: "[::1]:8787" -> "[::1]".
        &host[..end + 2]
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

/// API clients get JSON, browsers HTML.
pub fn wants_json(path: &str, accept: &str) -> bool {
    if is_api_path(path) {
        return true;
    }
    let accept = accept.to_ascii_lowercase();
    accept.contains("application/json") && !accept.contains("text/html")
}

pub fn plan<'a>(
    properties: &'a Properties,
    groups: &GroupTable,
    facts: RequestFacts<'_>,
) -> Plan<'a> {
    let host = normalize_host(facts.host);
    let json = wants_json(facts.path, facts.accept);
    let Some(property) = properties.for_host(&host) else {
        return Plan::NotFound { host, json };
    };
    if property.serve == Serve::External {
        return Plan::External { property };
    }
    if property.kind == Kind::Discord
        && property.origin
        && facts.path == INTERACTIONS_PATH
        && facts.method.eq_ignore_ascii_case("POST")
    {
        return Plan::DiscordInteraction { property };
    }
    if is_api_path(facts.path) {
        // The origin answers these to the edge's own requests: no client's is passed on.
        if !property.origin || is_edge_only(facts.path) {
            return Plan::NotFound { host, json: true };
        }
        let api = match action_of(facts.path) {
            _ if facts.path == BILLING_WEBHOOK => Api::Webhook,
            Some(action)
                if facts.method.eq_ignore_ascii_case("POST") && groups.route(action).is_ok() =>
            {
                Api::Conductor {
                    action: action.to_owned(),
                }
            }
            _ => Api::Passthrough,
        };
        return Plan::Api { property, api };
    }
    match property.serve {
        Serve::Assets => {
            if !(facts.method.eq_ignore_ascii_case("GET")
                || facts.method.eq_ignore_ascii_case("HEAD"))
            {
                return Plan::MethodNotAllowed { json };
            }
            match site::asset_path(property, facts.path) {
                Some(asset_path) => Plan::Asset {
                    property,
                    asset_path,
                },
                None => Plan::NotFound { host, json },
            }
        }
        Serve::Origin => Plan::Tunnel { property },
        Serve::External => Plan::External { property },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'r>(host: &'r str, method: &'r str, path: &'r str) -> RequestFacts<'r> {
        RequestFacts {
            host,
            method,
            path,
            accept: "text/html,application/xhtml+xml",
        }
    }

    fn run(host: &str, method: &str, path: &str) -> String {
        let props = site::properties().unwrap();
        match plan(props, &GroupTable::default(), facts(host, method, path)) {
            Plan::Asset { asset_path, .. } => format!("asset {asset_path}"),
            Plan::External { property } => format!("external {}", property.name),
            Plan::Api { property, api } => format!("api {} {api:?}", property.name),
            Plan::Tunnel { property } => format!("tunnel {}", property.name),
            Plan::DiscordInteraction { property } => format!("discord {}", property.name),
            Plan::NotFound { host, json } => format!("404 {host} json={json}"),
            Plan::MethodNotAllowed { json } => format!("405 json={json}"),
        }
    }

    #[test]
    fn every_routed_property_gets_the_plan_its_kind_asks_for() {
        let props = site::properties().unwrap();
        for p in props.iter().filter(|p| p.edge) {
            let got = run(&p.hostname, "GET", "/");
            let want = match p.serve {
                Serve::Assets => format!("asset /{}/index.html", p.hostname),
                Serve::External => format!("external {}", p.name),
                Serve::Origin if p.kind == Kind::Api => format!("tunnel {}", p.name),
                Serve::Origin => format!("tunnel {}", p.name),
            };
            assert_eq!(got, want, "{}", p.hostname);
        }
    }

    #[test]
    fn discord_interactions_are_their_own_plan_on_the_discord_property_only() {
        let props = site::properties().unwrap();
        let discord = props.iter().find(|p| p.kind == Kind::Discord).unwrap();
        let host = discord.hostname.as_str();
        assert_eq!(run(host, "POST", INTERACTIONS_PATH), "discord discord");
        assert_eq!(run(host, "post", INTERACTIONS_PATH), "discord discord");
        // Other methods and paths of the property go to the origin as pages.
        assert_eq!(run(host, "GET", INTERACTIONS_PATH), "tunnel discord");
        assert_eq!(run(host, "GET", "/discord/login"), "tunnel discord");
        assert_eq!(
            run(host, "POST", "/discord/interactions/x"),
            "tunnel discord"
        );
        // Another property's path of the same name is not an interaction.
        assert_eq!(
            run("headyapi.com", "POST", INTERACTIONS_PATH),
            "tunnel headyapi"
        );
    }

    #[test]
    fn parked_and_unknown_hosts_are_not_found() {
        assert_eq!(
            run("property-15.example.invalid", "GET", "/"),
            "404 property-15.example.invalid json=false"
        );
        assert_eq!(run("evil.test", "GET", "/"), "404 evil.test json=false");
        assert_eq!(run("", "GET", "/api/chat"), "404  json=true");
    }

    #[test]
    fn hosts_compare_without_port_case_or_trailing_dot() {
        assert_eq!(normalize_host("HeadyMe.com:8787"), "headyme.com");
        assert_eq!(normalize_host("headyme.com."), "headyme.com");
        assert_eq!(normalize_host("[::1]:8787"), "[::1]");
        assert_eq!(
            run("HEADYME.COM:443", "GET", "/"),
            "asset /headyme.com/index.html"
        );
    }

    #[test]
    fn api_paths_go_to_the_conductor_or_through() {
        assert_eq!(
            run("headyapi.com", "POST", "/api/chat"),
            "api headyapi Conductor { action: \"chat\" }"
        );
        assert_eq!(
            run("headyapi.com", "POST", "/api/monte_carlo"),
            "api headyapi Conductor { action: \"monte_carlo\" }"
        );
        assert_eq!(
            run("headyapi.com", "GET", "/api/chat"),
            "api headyapi Passthrough"
        );
        assert_eq!(
            run("headyapi.com", "POST", "/api/memory/vectors"),
            "api headyapi Passthrough"
        );
        assert_eq!(
            run("headyapi.com", "POST", "/v1/chat/completions"),
            "api headyapi Passthrough"
        );
        assert_eq!(
            run("headyapi.com", "POST", "/api/billing/webhook"),
            "api headyapi Webhook"
        );
        assert_eq!(
            run("headyapi.com", "POST", "/api/billing/checkout"),
            "api headyapi Passthrough"
        );
        // The edge's own lookups at the origin are not reachable through it.
        assert_eq!(
            run(
                "headyapi.com",
                "GET",
                "/api/identity/pq-keys/0123456789abcdef"
            ),
            "404 headyapi.com json=true"
        );
        assert_eq!(
            run("headyapi.com", "GET", "/api/identity"),
            "api headyapi Passthrough"
        );
        // A static property without origin access has no API.
        assert_eq!(
            run("headyme.com", "POST", "/api/chat"),
            "404 headyme.com json=true"
        );
        // The MCP endpoint is defended like the API and tunnelled unchanged.
        for method in ["POST", "GET", "DELETE"] {
            assert_eq!(
                run("headymcp.com", method, "/mcp"),
                "api headymcp Passthrough"
            );
        }
        assert_eq!(
            run("headyme.com", "POST", "/mcp"),
            "404 headyme.com json=true"
        );
    }

    #[test]
    fn static_pages_refuse_writes_and_odd_paths() {
        assert_eq!(run("headyme.com", "POST", "/"), "405 json=false");
        assert_eq!(
            run("headyme.com", "GET", "/../x"),
            "404 headyme.com json=false"
        );
    }

    #[test]
    fn json_is_for_api_paths_and_json_only_clients() {
        assert!(wants_json("/api/x", "text/html"));
        assert!(wants_json("/", "application/json"));
        assert!(!wants_json("/", "text/html,application/json;q=0.9"));
        assert!(!wants_json("/", "*/*"));
    }
}
