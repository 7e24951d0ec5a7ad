//! `[defense]`: keys, limits, bans, client addresses, the operator socket, the edge key.
//! Addresses and the header name are parsed here, at load; `Defense::new` takes them as they are.

pub use super::tunnel::config::TunnelConfig;
use crate::settings::{in_range, invalid, ConfigError, KeyDoc, Ty};
pub use heady_shared::limiter::BanPolicy;
pub use heady_shared::tunnel::TunnelAuth;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The defense stage: keys, limits, bans, client addresses, the operator socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefenseConfig {
    /// Off: no rate limits, bans or classification checks (benchmarks, trusted networks only).
    pub enabled: bool,
    /// Peers (addresses or CIDR networks) whose `client_ip_header` is believed. A bare address
    /// is its /32 (/128).
    #[serde(with = "nets")]
    pub trusted_proxies: Vec<IpNet>,
    /// Header a trusted proxy puts the client address in (comma lists: right-most untrusted).
    #[serde(with = "header_name")]
    pub client_ip_header: http::HeaderName,
    /// How long a key lookup (or a miss) is cached; a revocation takes effect within it.
    pub key_cache_secs: u64,
    /// How long the edge may trust an identity answer (`ttl_secs` of `/api/identity`): a tier
    /// change reaches the edge within it. At most 60.
    pub session_ttl_secs: u64,
    /// Bad API keys one client address (IPv6: its /64) may present in a minute before it gets
    /// 429 `too_many_failed_auth`; 0 turns the limit off.
    pub max_failed_auth_per_minute: u32,
    /// Longest wait for one Redis limiter call before deciding in-process.
    pub redis_timeout_ms: u64,
    /// Auto-ban: threshold_factor x limit attempts in a window -> ban for base_ttl_secs,
    /// doubling per remembered offence up to max_ttl_secs.
    pub ban: BanPolicy,
    /// Unix socket for `heady-origin keys` / `bans` while the daemon runs (default
    /// `<data_dir>/admin.sock`; mode 0600).
    pub admin_socket: Option<PathBuf>,
    /// The secret the edge Worker signs tunnelled requests with (its `HEADY_TUNNEL_KEY`), at
    /// least 32 bytes. Without it, a request carrying an edge signature is refused.
    pub edge_key: Option<Secret>,
    /// How far an edge timestamp may be from our clock; nonces are kept for twice this.
    pub edge_max_skew_secs: u64,
    /// Refuse `/api`, `/v1` and `/mcp` requests that did not come through the edge (production).
    pub require_edge: bool,
    /// How the edge authenticates: `pq-hybrid` (sessions from the post-quantum handshake only)
    /// or `hmac` (the shared `edge_key`; sessions too where an identity is configured).
    pub tunnel_auth: TunnelAuth,
    /// `[defense.tunnel]`: identities and sessions.
    pub tunnel: TunnelConfig,
}

impl Default for DefenseConfig {
    fn default() -> Self {
        DefenseConfig {
            enabled: true,
            trusted_proxies: Vec::new(),
            client_ip_header: http::HeaderName::from_static("cf-connecting-ip"),
            key_cache_secs: 5,
            session_ttl_secs: heady_shared::identity::MAX_SESSION_TTL_SECS,
            max_failed_auth_per_minute: 20,
            redis_timeout_ms: 250,
            ban: BanPolicy::default(),
            admin_socket: None,
            edge_key: None,
            edge_max_skew_secs: heady_shared::wire::DEFAULT_MAX_SKEW_SECS,
            require_edge: false,
            tunnel_auth: TunnelAuth::PqHybrid,
            tunnel: TunnelConfig::default(),
        }
    }
}

impl DefenseConfig {
    /// The checks that span several keys or need more than a type (ranges, lengths).
    pub fn validate(&self) -> Result<(), ConfigError> {
        in_range("defense.key_cache_secs", self.key_cache_secs, 0, 3600)?;
        in_range(
            "defense.session_ttl_secs",
            self.session_ttl_secs,
            heady_shared::identity::MIN_SESSION_TTL_SECS,
            heady_shared::identity::MAX_SESSION_TTL_SECS,
        )?;
        in_range(
            "defense.max_failed_auth_per_minute",
            u64::from(self.max_failed_auth_per_minute),
            0,
            100_000,
        )?;
        in_range(
            "defense.redis_timeout_ms",
            self.redis_timeout_ms,
            10,
            10_000,
        )?;
        self.ban
            .validate()
            .map_err(|e| invalid("defense.ban", e.to_string()))?;
        if let Some(k) = &self.edge_key {
            if k.0.len() < heady_shared::wire::MIN_KEY_BYTES {
                return Err(invalid(
                    "defense.edge_key",
                    format!(
                        "must be at least {} bytes (got {}); e.g. `openssl rand -hex 32`",
                        heady_shared::wire::MIN_KEY_BYTES,
                        k.0.len()
                    ),
                ));
            }
        }
        in_range(
            "defense.edge_max_skew_secs",
            self.edge_max_skew_secs,
            1,
            3600,
        )?;
        self.tunnel.validate()?;
        match self.tunnel_auth {
            TunnelAuth::PqHybrid if self.edge_key.is_some() => {
                return Err(invalid(
                    "defense.edge_key",
                    "set, but defense.tunnel_auth is \"pq-hybrid\", which refuses HMAC-signed requests: remove the key, or set tunnel_auth = \"hmac\" while the edge moves to sessions",
                ))
            }
            TunnelAuth::PqHybrid if self.require_edge && !self.tunnel.configured() => {
                return Err(invalid(
                    "defense.require_edge",
                    "needs defense.tunnel.identity and defense.tunnel.edge_identities under tunnel_auth = \"pq-hybrid\" (HEADY_TUNNEL_IDENTITY, HEADY_TUNNEL_EDGE_IDENTITIES)",
                ))
            }
            TunnelAuth::Hmac if self.require_edge && self.edge_key.is_none() => {
                return Err(invalid(
                    "defense.require_edge",
                    "needs defense.edge_key (HEADY_TUNNEL_KEY) to verify the edge under tunnel_auth = \"hmac\"",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

pub use crate::settings::Secret;

/// `trusted_proxies`: CIDR networks or bare addresses.
mod nets {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn parse(s: &str) -> Result<IpNet, String> {
        let t = s.trim();
        t.parse::<IpNet>()
            .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| format!("not an address or CIDR network: {s:?}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| parse(s).map_err(serde::de::Error::custom))
            .collect()
    }

    pub fn serialize<S: Serializer>(v: &[IpNet], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|n| n.to_string()))
    }
}

mod header_name {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<http::HeaderName, D::Error> {
        let s = String::deserialize(d)?;
        http::HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| serde::de::Error::custom(format!("not a header name: {s:?}")))
    }

    pub fn serialize<S: Serializer>(v: &http::HeaderName, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc::new("defense.enabled", Ty::Bool, "`false` skips rate limits, bans and classification checks (benchmarks, closed networks only)")
        .aliases(&["HEADY_DEFENSE"]),
    KeyDoc::new("defense.trusted_proxies", Ty::List, "peers (addresses or CIDR networks) whose `client_ip_header` is believed, e.g. `[\"127.0.0.1\"]` when cloudflared runs on this host; env: a TOML array or a comma list")
        .aliases(&["HEADY_TRUSTED_PROXIES"]),
    KeyDoc::new("defense.client_ip_header", Ty::Str, "where a trusted proxy puts the client address (a comma list: the right-most untrusted address)"),
    KeyDoc::new("defense.key_cache_secs", Ty::Int, "API key lookups (and misses) are cached this long; without Redis, a change to a key or an account made on another origin takes effect here within it (with Redis: at once)"),
    KeyDoc::new("defense.session_ttl_secs", Ty::Int, "how long the edge may use its cached answer for an API key (tier, clearance) before asking again: a tier change (billing, an operator) reaches the edge within it (1-60)"),
    KeyDoc::new("defense.max_failed_auth_per_minute", Ty::Int, "bad API keys one client address (IPv6: its /64) may present per minute before 429 `too_many_failed_auth`; counted in Redis when set; 0: no limit"),
    KeyDoc::new("defense.redis_timeout_ms", Ty::Int, "a slower Redis limiter call is decided in-process (degraded)"),
    KeyDoc::new("defense.ban.threshold_factor", Ty::Int, "attempts >= this x the tier limit inside one window -> ban (0: never ban)"),
    KeyDoc::new("defense.ban.base_ttl_secs", Ty::Int, "first ban length, doubled for each remembered offence"),
    KeyDoc::new("defense.ban.max_ttl_secs", Ty::Int, "longest ban"),
    KeyDoc::new("defense.ban.offence_memory_secs", Ty::Int, "offences are forgotten this long after the last one"),
    KeyDoc::new("defense.admin_socket", Ty::Str, "Unix socket (mode 0600) for `keys` / `bans` while the daemon runs; unset: `<data_dir>/admin.sock`, `\"\"` disables it")
        .aliases(&["HEADY_ADMIN_SOCKET"]),
    KeyDoc::new("defense.edge_key", Ty::Str, "the secret the edge Worker signs tunnelled requests with, at least 32 bytes; never printed")
        .aliases(&["HEADY_TUNNEL_KEY"]),
    KeyDoc::new("defense.edge_max_skew_secs", Ty::Int, "edge timestamps further from this clock are refused; nonces are kept twice this"),
    KeyDoc::new("defense.require_edge", Ty::Bool, "refuse `/api`, `/v1` and `/mcp` requests not signed by the edge (needs `defense.tunnel.*` under `pq-hybrid`, `defense.edge_key` under `hmac`)")
        .aliases(&["HEADY_REQUIRE_EDGE"]),
    KeyDoc::new("defense.tunnel_auth", Ty::Str, "`pq-hybrid`: requests from the edge must carry a post-quantum hybrid session (an HMAC-only one is refused, 401 `tunnel_session_required`); `hmac`: the shared `edge_key` (sessions accepted too where an identity is configured)")
        .aliases(&["HEADY_TUNNEL_AUTH"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_may_be_bare_addresses_or_networks() {
        assert_eq!(
            nets::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        assert_eq!(
            nets::parse(" 10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(nets::parse("::1").unwrap().to_string(), "::1/128");
        assert!(nets::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret("0123456789abcdef0123456789abcdef".into());
        assert_eq!(format!("{s:?}"), "<secret, 32 bytes>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            k: Secret,
        }
        let e = toml::from_str::<T>("k = 98765432109876543210.5").unwrap_err();
        assert!(!e.message().contains("9876"), "{e}");
    }
}
