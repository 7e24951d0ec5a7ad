//! The defense stage every request passes before a handler runs:
//! identify (API key, PQC-signed request, verified edge claims, or anonymous by client IP) ->
//! exact rate limit and
//! ban check (`/api`, `/v1`, `/mcp`) -> classification gate -> tier gate.
//!
//! Decisions come from `heady-shared` (tiers, classification, the sliding log); this module
//! does the I/O around them: the account store for keys, Redis for the limiter and the
//! failed-authentication count, headers for the client.

pub mod admin;
pub mod config;
pub mod edge;
pub mod failed_auth;
pub mod limiter;
pub mod nonces;
pub mod pqc;
pub mod tunnel;

use crate::accounts::{AccountStore, KeyRefusal};
use crate::error::Error;
use crate::metrics::{DefenseLabels, FailedAuthLabels, Metrics};
use config::DefenseConfig;
use edge::{EdgeRefusal, EdgeVerifier, Vouched};
use failed_auth::FailedAuth;
use heady_shared::limiter::{rate_limit_headers, LimitOutcome};
use heady_shared::sliding_log::LogPolicy;
use heady_shared::wire;
use heady_shared::{api_paths, Classification, ErrorCode, Feature, Subject, Tier};
use http::HeaderMap;
use ipnet::IpNet;
use limiter::RateLimiter;
use std::net::IpAddr;
use std::sync::Arc;

/// Who is asking, as far as the origin can tell.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// The rate-limit subject: `user:<account id>` for a key, `ip:<addr>` (IPv6: its /64)
    /// otherwise.
    pub subject: Subject,
    pub tier: Tier,
    pub clearance: Classification,
    /// The API key's public id, when a key was presented.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub client_ip: IpAddr,
    #[serde(skip)]
    pub anonymous: bool,
    /// The key's model allowlist (`None`: every model).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// The request came through the edge: its tunnel signature verified.
    #[serde(skip)]
    pub via_edge: bool,
    /// The caller's account opted in to the semantic cache (`Account::semantic_cache`): set
    /// only from a stored account, so never for an anonymous caller or one the edge alone
    /// vouches for.
    #[serde(skip)]
    pub semantic_cache: bool,
}

impl Identity {
    /// The account the caller acts for: `None` for anonymous callers, who own nothing.
    pub fn account(&self) -> Option<heady_shared::AccountId> {
        if self.anonymous {
            None
        } else {
            self.subject.account_id()
        }
    }

    /// The model a request may use: the one it names when the key allows it, the key's first
    /// allowed model when it names none (`None`: no allowlist and no model named). 403
    /// `model_not_allowed` otherwise.
    pub fn permit_model(&self, asked: Option<&str>) -> Result<Option<String>, Error> {
        crate::accounts::permitted_model(self.models.as_deref(), asked)
            .map(|m| m.map(str::to_string))
            .map_err(|m| {
                Error::forbidden(
                    ErrorCode::ModelNotAllowed,
                    format!(
                        "this API key may not use model {:?}; it may use: {}",
                        m.chars().take(200).collect::<String>(),
                        self.models.as_deref().unwrap_or_default().join(", ")
                    ),
                )
            })
    }
}

/// What a route demands, declared beside it in the route table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    pub class: Classification,
    /// A tier feature the route needs (`requireProPlan`); `None`: any tier.
    pub feature: Option<Feature>,
    /// Only for callers with an account (an API key or the edge's word for one).
    pub keyed: bool,
    /// Counted by the request limiter (every `/api`, `/v1` and `/mcp` route but the Stripe webhook,
    /// whose signature is its authentication: bad ones count as failed authentication).
    pub limited: bool,
}

impl RoutePolicy {
    pub const PUBLIC: RoutePolicy = RoutePolicy {
        class: Classification::Public,
        feature: None,
        keyed: false,
        limited: true,
    };
    pub const fn class(class: Classification) -> RoutePolicy {
        RoutePolicy {
            class,
            feature: None,
            keyed: false,
            limited: true,
        }
    }
    pub const fn unlimited(self) -> RoutePolicy {
        RoutePolicy {
            limited: false,
            ..self
        }
    }
    pub const fn keyed(self) -> RoutePolicy {
        RoutePolicy {
            keyed: true,
            ..self
        }
    }
    pub const fn needs(self, feature: Feature) -> RoutePolicy {
        RoutePolicy {
            feature: Some(feature),
            ..self
        }
    }
}

/// Paths whose requests pass the rate limiter and, with `require_edge`, must come through the
/// edge: the API paths (`heady_shared::api_paths`) but the tunnel handshake, which its own
/// signatures authenticate (and which is how the edge gets a session in the first place).
pub fn is_limited_path(path: &str) -> bool {
    api_paths::is_api_path(path) && path != api_paths::TUNNEL_HANDSHAKE
}

pub struct Defense {
    pub enabled: bool,
    pub accounts: Arc<AccountStore>,
    pub failed_auth: FailedAuth,
    pub limiter: Arc<RateLimiter>,
    trusted: Vec<IpNet>,
    ip_header: http::HeaderName,
    policies: [LogPolicy; 3],
    metrics: Arc<Metrics>,
    edge: EdgeVerifier,
    /// Edge nonces, handshake hellos and PQC signatures, each accepted once.
    nonces: Arc<nonces::NonceStore>,
    require_edge: bool,
}

/// The request as identification needs it.
pub struct Presented<'a> {
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    pub peer: IpAddr,
}

impl Defense {
    /// Builds the stage from a loaded configuration: addresses, header and ban policy were
    /// parsed and checked by `Config::load`; what can still fail here is deriving the per-tier
    /// limiter policies and the edge key's MAC.
    pub fn new(
        cfg: &DefenseConfig,
        accounts: Arc<AccountStore>,
        redis: Option<Arc<crate::redis::Redis>>,
        metrics: Arc<Metrics>,
        background: crate::lifecycle::Background,
    ) -> anyhow::Result<Defense> {
        let policy = |t: Tier| {
            LogPolicy::new(t.limits(), cfg.ban).map_err(|e| anyhow::anyhow!("defense.ban: {e}"))
        };
        let hmac = match &cfg.edge_key {
            Some(k) => Some(
                wire::HmacSha256::new(k.expose().as_bytes())
                    .map_err(|e| anyhow::anyhow!("defense.edge_key: {e}"))?,
            ),
            None => None,
        };
        let sessions = tunnel::TunnelSessions::new(&cfg.tunnel, cfg.edge_max_skew_secs)?;
        if let Some(s) = &sessions {
            tracing::info!(identity = %s.fingerprint(), policy = %cfg.tunnel_auth, "tunnel sessions: this origin's identity");
        }
        let nonces = Arc::new(nonces::NonceStore::new(
            redis.clone(),
            metrics.nonces_degraded.clone(),
            background.clone(),
        ));
        let edge = EdgeVerifier::new(
            cfg.tunnel_auth,
            hmac,
            sessions,
            cfg.edge_max_skew_secs,
            nonces.clone(),
        );
        Ok(Defense {
            enabled: cfg.enabled,
            accounts,
            failed_auth: FailedAuth::new(cfg.max_failed_auth_per_minute, redis.clone()),
            edge,
            nonces,
            require_edge: cfg.require_edge,
            limiter: Arc::new(RateLimiter::new(redis, metrics.clone(), background)),
            trusted: cfg.trusted_proxies.clone(),
            ip_header: cfg.client_ip_header.clone(),
            policies: [
                policy(Tier::Free)?,
                policy(Tier::Pro)?,
                policy(Tier::Enterprise)?,
            ],
            metrics,
        })
    }

    pub fn policy(&self, tier: Tier) -> &LogPolicy {
        match tier {
            Tier::Free => &self.policies[0],
            Tier::Pro => &self.policies[1],
            Tier::Enterprise => &self.policies[2],
        }
    }

    /// The client's address: the peer, unless the peer is a trusted proxy, in which case the
    /// right-most address in the configured header that is not itself a trusted proxy.
    pub fn client_ip(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all(&self.ip_header)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|ip| !self.is_trusted(**ip))
            .or(hops.first())
            .copied()
            .unwrap_or(peer)
    }

    /// Where edge nonces are kept now (for `/ready`): `redis`, `degraded (in-process)`,
    /// `in-process`, or `no edge key`.
    pub fn nonce_store(&self) -> &'static str {
        self.edge.store()
    }

    /// Answers a tunnel handshake hello (`POST /api/tunnel/handshake`) with a welcome.
    pub async fn tunnel_handshake(&self, hello: &[u8]) -> Result<Vec<u8>, Error> {
        use heady_shared::tunnel::HandshakeError as H;
        use tunnel::HandshakeRefusal as R;
        let now = limiter::now_ms() / 1000;
        let result = self.edge.handshake(hello, now).await;
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(R::NotConfigured) => "not_configured",
            Err(R::Replayed(_)) => "replayed",
            Err(R::Handshake(H::Malformed(_))) => "malformed",
            Err(R::Handshake(H::UnknownIdentity(_))) => "unknown_identity",
            Err(R::Handshake(H::Transcript(_))) => "bad_transcript",
            Err(R::Handshake(H::Stale(_))) => "stale",
            Err(R::Handshake(_)) => "failed",
        };
        self.metrics
            .tunnel_handshakes
            .get_or_create(&crate::metrics::OutcomeLabels { outcome })
            .inc();
        result.map_err(|e| {
            let code = match &e {
                R::NotConfigured => ErrorCode::EdgeNotConfigured,
                R::Replayed(_) => ErrorCode::TunnelHandshakeReplayed,
                R::Handshake(H::Malformed(_)) => {
                    return Error::bad_request(e.to_string());
                }
                R::Handshake(H::UnknownIdentity(_)) => ErrorCode::TunnelIdentityUnknown,
                R::Handshake(H::Transcript(_)) => ErrorCode::TunnelTranscriptInvalid,
                R::Handshake(H::Stale(_)) => ErrorCode::TunnelHandshakeStale,
                R::Handshake(H::Decapsulation | H::Signing(_)) => {
                    return Error::internal(e.to_string());
                }
            };
            Error::unauthorized(code, e.to_string())
        })
    }

    /// 429 `too_many_failed_auth` (counted) when the address `from` is over its failed
    /// authentications of the minute; `what` names them in the message.
    pub(crate) async fn throttle_failed_auth(
        &self,
        from: &str,
        now_secs: u64,
        what: &str,
    ) -> Result<(), Error> {
        let Some(secs) = self.failed_auth.check(from, now_secs).await else {
            return Ok(());
        };
        self.count("unauthenticated", Tier::Free);
        self.metrics
            .failed_auth
            .get_or_create(&FailedAuthLabels { outcome: "refused" })
            .inc();
        Err(Error::new(
            ErrorCode::TooManyFailedAuth,
            format!(
                "too many failed {what} from this address: at most {} a minute",
                self.failed_auth.max()
            ),
        )
        .with_retry_after(secs))
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Identifies the caller. A request signed by the edge is verified (401 when forged,
    /// stale or replayed) and its subject, tier, clearance and client IP are believed. A bearer
    /// API key, or a PQC API key's signature ([`pqc`]), is then checked here too (401 when
    /// malformed, unknown or revoked; 400 when both are sent) and decides subject, tier and
    /// clearance. Otherwise the caller is anonymous by client IP (Free, PUBLIC).
    pub async fn identify(self: &Arc<Self>, req: Presented<'_>) -> Result<Identity, Error> {
        let headers = req.headers;
        let mut vouched = None;
        let mut edge_host = None;
        if headers.contains_key(wire::header::SIGNATURE) {
            let verifier = &self.edge;
            let now = limiter::now_ms() / 1000;
            match verifier
                .verify(req.method.as_str(), req.uri, headers, req.body, now)
                .await
            {
                Ok(Vouched {
                    envelope,
                    client_ip,
                    subject,
                }) => {
                    edge_host = Some(envelope.host.clone());
                    vouched = Some(Identity {
                        anonymous: subject.is_anonymous(),
                        subject,
                        tier: envelope.tier,
                        clearance: envelope.clearance,
                        key_id: None,
                        client_ip,
                        models: None,
                        via_edge: true,
                        // The envelope carries no account, only its word on tier and clearance.
                        // The edge passes the caller's key or PQC signature on, and the checks
                        // below then build the identity from the stored account; a vouched
                        // subject with neither stays off rather than read the store per request.
                        semantic_cache: false,
                    })
                }
                Err(e) => {
                    self.count("unauthenticated", Tier::Free);
                    let code = match &e {
                        EdgeRefusal::Replay(_) => ErrorCode::ReplayedRequest,
                        EdgeRefusal::Subject(_) => ErrorCode::InvalidEdgeSubject,
                        EdgeRefusal::Downgrade => ErrorCode::TunnelSessionRequired,
                        EdgeRefusal::NotConfigured(..) => ErrorCode::EdgeNotConfigured,
                        EdgeRefusal::Session(tunnel::ticket::TicketError::Expired { .. }) => {
                            ErrorCode::TunnelSessionExpired
                        }
                        EdgeRefusal::Session(_) | EdgeRefusal::Unpinned(_) => {
                            ErrorCode::TunnelSessionInvalid
                        }
                        EdgeRefusal::Wire(_) | EdgeRefusal::ClientIp(_) => {
                            ErrorCode::InvalidEdgeSignature
                        }
                    };
                    return Err(Error::unauthorized(code, e.to_string()));
                }
            }
        } else if self.require_edge && self.enabled && is_limited_path(req.uri.path()) {
            self.count("unauthenticated", Tier::Free);
            return Err(Error::unauthorized(
                ErrorCode::EdgeRequired,
                "this origin serves /api, /v1 and /mcp only through the Heady edge",
            ));
        }
        let client_ip = match &vouched {
            Some(v) => v.client_ip,
            None => self.client_ip(headers, req.peer),
        };
        if pqc::is_signed(headers) {
            if headers.contains_key(http::header::AUTHORIZATION) {
                self.count("unauthenticated", Tier::Free);
                return Err(Error::new(
                    ErrorCode::ConflictingCredentials,
                    "the request carries both a bearer key (Authorization) and a PQC signature (Signature-Input): send one",
                ));
            }
            let now = limiter::now_ms() / 1000;
            return self
                .identify_signed(&req, edge_host.as_deref(), client_ip, now)
                .await;
        }
        let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
            return Ok(vouched.unwrap_or_else(|| anonymous(client_ip)));
        };
        let key = auth
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| {
                self.count("unauthenticated", Tier::Free);
                Error::unauthorized(
                    ErrorCode::InvalidAuthorization,
                    "Authorization must be \"Bearer hk_<64 hex digits>\"",
                )
            })?;
        let now = (limiter::now_ms() / 1000) as i64;
        let cached = self.accounts.cached(key, now);
        // A key known good is served at once; any other is first checked against the
        // address's failed attempts, so a flood of guesses never reaches the store.
        let from = || Subject::anonymous(client_ip).to_string();
        if !matches!(cached, Some(Ok(_))) {
            self.throttle_failed_auth(&from(), now as u64, "API keys")
                .await?;
        }
        let verdict = match cached {
            Some(v) => v,
            None => self.accounts.lookup(key, now).await.map_err(|e| {
                tracing::error!(error = %e, "API key lookup failed");
                Error::unavailable("the key store is not answering; try again shortly")
            })?,
        };
        match verdict {
            Ok(grant) => Ok(Identity {
                subject: Subject::account(&grant.account.id),
                tier: grant.account.tier,
                clearance: grant.account.clearance,
                key_id: Some(grant.key.id),
                client_ip,
                anonymous: false,
                models: grant.key.models,
                via_edge: vouched.is_some(),
                semantic_cache: grant.account.semantic_cache,
            }),
            Err(refusal) => {
                self.count("unauthenticated", Tier::Free);
                self.failed_auth.record(&from(), now as u64).await;
                self.metrics
                    .failed_auth
                    .get_or_create(&FailedAuthLabels { outcome: "failed" })
                    .inc();
                let (code, msg) = match refusal {
                    KeyRefusal::Malformed => (
                        ErrorCode::InvalidApiKey,
                        "the API key is malformed: expected hk_ followed by 64 lowercase hex digits",
                    ),
                    KeyRefusal::Unknown => (ErrorCode::InvalidApiKey, "the API key is not known"),
                    KeyRefusal::Revoked => {
                        (ErrorCode::RevokedApiKey, "the API key has been revoked")
                    }
                    KeyRefusal::Expired => (ErrorCode::KeyExpired, "the API key has expired"),
                    KeyRefusal::AccountDisabled => (
                        ErrorCode::AccountDisabled,
                        "the account this API key belongs to is disabled",
                    ),
                };
                Err(Error::unauthorized(code, msg))
            }
        }
    }

    /// The exact limiter and the ban list. `Ok`: admitted, with the RateLimit fields to add.
    pub async fn limit(&self, who: &Identity) -> Result<Vec<(&'static str, String)>, Error> {
        let policy = self.policy(who.tier);
        let outcome = self.limiter.decide(&who.subject.to_string(), policy).await;
        let headers = rate_limit_headers(who.tier.as_str(), policy.quota(), &outcome);
        match outcome {
            LimitOutcome::Allowed { .. } => {
                self.count("allowed", who.tier);
                Ok(headers)
            }
            LimitOutcome::Metered { .. } => {
                self.count("metered", who.tier);
                Ok(headers)
            }
            LimitOutcome::Limited { retry_after_ms, .. } => {
                self.count("limited", who.tier);
                let msg = format!(
                    "rate limit exceeded: the {} tier allows {} requests per {} s",
                    who.tier,
                    policy.limit().unwrap_or(0),
                    policy.window_ms() / 1000
                );
                let mut e = Error::new(ErrorCode::RateLimited, msg).with_headers(headers);
                if let Some(ms) = retry_after_ms {
                    e = e.with_retry_after(ms.div_ceil(1000));
                }
                Err(e)
            }
            LimitOutcome::Banned {
                retry_after_ms,
                newly,
                ..
            } => {
                self.count("banned", who.tier);
                if newly {
                    self.metrics.bans_imposed.inc();
                    tracing::warn!(subject = %who.subject, secs = retry_after_ms / 1000, "subject banned for abuse");
                }
                Err(Error::forbidden(
                    ErrorCode::Banned,
                    "too many requests over the limit: banned for a while",
                )
                .with_retry_after(retry_after_ms.div_ceil(1000))
                .with_headers(headers))
            }
        }
    }

    /// Classification, then tier: 401 for an anonymous caller below the route's class, 403 for
    /// a known one; 403 `upgrade_required` when the tier lacks the route's feature.
    pub fn authorize(&self, who: &Identity, route: RoutePolicy) -> Result<(), Error> {
        if route.keyed && who.account().is_none() {
            self.count("unauthenticated", who.tier);
            return Err(authentication_required("this route answers for an account"));
        }
        if !who.clearance.permits(route.class) {
            if who.anonymous {
                self.count("unauthenticated", who.tier);
                return Err(Error::unauthorized(
                    ErrorCode::AuthenticationRequired,
                    format!(
                        "this route is {}: send an API key (Authorization: Bearer hk_...)",
                        route.class
                    ),
                ));
            }
            self.count("forbidden", who.tier);
            return Err(Error::forbidden(
                ErrorCode::InsufficientClearance,
                format!(
                    "this route is {}; the key's clearance is {}",
                    route.class, who.clearance
                ),
            ));
        }
        if let Some(f) = route.feature {
            if !who.tier.allows(f) {
                self.count("upgrade_required", who.tier);
                return Err(Error::forbidden(ErrorCode::UpgradeRequired,
                    format!(
                        "this needs a plan with {} (the {} tier does not include it): upgrade to Pro",
                        serde_json::to_value(f)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        who.tier
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Tier gate for a conductor action (`/api/{action}`): Free may run only its basic actions.
    pub fn authorize_action(&self, who: &Identity, action: &str) -> Result<(), Error> {
        if who.tier.allows_action(action) {
            return Ok(());
        }
        self.count("upgrade_required", who.tier);
        Err(Error::forbidden(ErrorCode::UpgradeRequired,
            format!(
                "action {action:?} needs the Pro plan (the {} tier includes chat, complete, search and analyze)",
                who.tier
            ),
        ))
    }

    fn count(&self, outcome: &'static str, tier: Tier) {
        self.metrics
            .defense
            .get_or_create(&DefenseLabels {
                outcome,
                tier: tier.as_str(),
            })
            .inc();
    }
}

/// 401 for a caller without an account where one is needed.
pub fn authentication_required(why: &str) -> Error {
    Error::unauthorized(
        ErrorCode::AuthenticationRequired,
        format!("{why}: send an API key (Authorization: Bearer hk_...)"),
    )
}

/// An anonymous caller: Free, PUBLIC, limited by address (an IPv6 client by its /64, which
/// one host usually owns whole: `Subject::anonymous`).
pub fn anonymous(client_ip: IpAddr) -> Identity {
    let ip = client_ip.to_canonical();
    Identity {
        subject: Subject::anonymous(ip),
        tier: Tier::Free,
        clearance: Classification::Public,
        key_id: None,
        client_ip: ip,
        anonymous: true,
        models: None,
        via_edge: false,
        semantic_cache: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_their_64() {
        let a = anonymous("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = anonymous("2001:db8:1:2:bbbb::9".parse().unwrap());
        assert_eq!(a.subject, b.subject);
        assert_eq!(a.subject.to_string(), "ip:2001:db8:1:2::/64");
        assert_eq!(
            anonymous("::ffff:10.1.2.3".parse().unwrap())
                .subject
                .to_string(),
            "ip:10.1.2.3"
        );
        assert!(
            !a.semantic_cache,
            "anonymous callers never use the semantic cache"
        );
    }
}
