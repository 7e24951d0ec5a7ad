//! One source of truth: deploy/properties.toml decides which hostnames the Worker answers
//! (wrangler.toml routes), which it tunnels to the origin (and so which the tunnel's ingress
//! must carry), and the landing pages it serves. These fail when a copy drifts.

use heady_edge::router::{self, Plan, RequestFacts};
use heady_shared::properties::Properties;
use heady_shared::GroupTable;
use heady_xtask::edge_config::{derive, load_properties, repo_root};
use std::collections::BTreeSet;

fn properties() -> Properties {
    load_properties(&repo_root()).expect("deploy/properties.toml")
}

#[test]
fn generated_routes_and_pages_are_up_to_date() {
    let (files, extra) = derive(&repo_root()).expect("derive");
    let stale: Vec<_> = files
        .iter()
        .filter(|f| f.stale)
        .map(|f| f.path.display().to_string())
        .collect();
    assert!(
        stale.is_empty() && extra.is_empty(),
        "out of date: {stale:?}, not generated: {extra:?}; run `cargo run -p heady-xtask --bin heady-edge-config -- write`"
    );
}

#[test]
fn wrangler_routes_are_exactly_the_edge_hostnames() {
    let text = std::fs::read_to_string(repo_root().join("wrangler.toml")).expect("wrangler.toml");
    let wrangler: toml::Table = toml::from_str(&text).expect("wrangler.toml parses");
    let routes = wrangler["routes"]
        .as_array()
        .expect("top-level routes list");
    let props = properties();
    let mut seen = Vec::new();
    for route in routes {
        let pattern = route["pattern"].as_str().expect("pattern");
        let custom = route.get("custom_domain").and_then(|v| v.as_bool()) == Some(true);
        let host = pattern.strip_suffix("/*").unwrap_or(pattern);
        let property = props
            .for_host(host)
            .unwrap_or_else(|| panic!("route {pattern:?} is not an edge property"));
        // Origin-reaching hosts must be zone routes (DNS -> tunnel), the rest Custom Domains.
        assert_eq!(custom, !property.origin, "{pattern}");
        assert_eq!(pattern.ends_with("/*"), property.origin, "{pattern}");
        seen.push(host.to_owned());
    }
    assert_eq!(seen, props.edge_hostnames());
    // The local environment must not inherit production routes.
    assert_eq!(
        wrangler["env"]["local"]["routes"].as_array().map(Vec::len),
        Some(0)
    );
}

#[test]
fn the_hostnames_the_worker_tunnels_are_the_tunnel_ingress_hostnames() {
    let props = properties();
    let groups = GroupTable::default();
    let mut tunnelled = BTreeSet::new();
    for host in props.edge_hostnames() {
        for (method, path) in [
            ("GET", "/"),
            ("GET", "/api/memory/stats"),
            ("POST", "/api/chat"),
        ] {
            let plan = router::plan(
                &props,
                &groups,
                RequestFacts {
                    host,
                    method,
                    path,
                    accept: "*/*",
                },
            );
            if matches!(plan, Plan::Tunnel { .. } | Plan::Api { .. }) {
                tunnelled.insert(host.to_owned());
            }
        }
    }
    let ingress: BTreeSet<String> = props
        .origin_hostnames()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(tunnelled, ingress);
    assert!(!ingress.is_empty());
}
